"""Train and evaluate the critic on flaw-injected EntailmentBank data (synthetic labels).

`train()` builds the train examples from the 1,313 train trees (or reads a JSONL of FlawExamples),
fine-tunes the top encoder layers and the heads, logs JSONL, checkpoints, and writes a critic
directory. `evaluate()` measures a critic on examples built the same way from the 187 dev trees.
CUDA with bf16 autocast when present, the CPU otherwise.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from critique.flaws import FlawExample, build_split, read_examples
from critique.model import (CriticConfig, Critic, Features, collate, new_net, save_critic, trainable_prefixes)
from critique.taxonomy import LABEL_INDEX, LABELS, NONE
from core.errors import InputError


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    examples_seen: int
    seconds: float
    device: str
    dev: dict[str, Any] | None


def _examples(split: str, path: str | Path | None, seed: int, data_dir: str | Path | None) -> list[FlawExample]:
    if path:
        ex = read_examples(path)
    else:
        ex = build_split(split, seed=seed, data_dir=data_dir)
    if not ex:
        raise InputError(f"no {split} examples")
    return ex


def _targets(ex: Sequence[FlawExample], feats: Sequence[Features]) -> tuple[Any, Any, Any]:
    import torch

    dim = torch.tensor([LABEL_INDEX[e.dimension] for e in ex])
    score = torch.tensor([e.score for e in ex])
    flaw = torch.tensor([e.flaw_index if e.flaw_index is not None and e.flaw_index < f.n_sent else -100
                         for e, f in zip(ex, feats)])
    return dim, score, flaw


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding: most of the CPU time is in padded tokens)."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s:s + chunk], key=lambda i: lengths[i])
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass(frozen=True)
class TrainConfig:
    """Everything a classifier-critic training run takes (the CLI's `critique train` options)."""

    out: str | Path = "runs/critic"
    base: str | None = None
    seed: int = 0
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 8e-5
    head_lr: float = 1e-3
    max_length: int = 256
    train_layers: int = 4
    max_examples: int | None = None
    max_minutes: float | None = None
    train_file: str | Path | None = None
    dev_file: str | Path | None = None
    data_dir: str | Path | None = None
    dev_limit: int | None = None
    checkpoint_every: int = 200
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    aux_features: bool = True
    init: str | Path | None = None


@dataclass
class _Run:
    """The state of one training run (what the loop and the wrap-up share)."""

    cfg: TrainConfig
    config: CriticConfig
    net: Any
    tok: Any
    examples: list[FlawExample]
    feats: list[Features]
    device: str
    out: Path
    log_f: Any
    t_start: float

    def log(self, **kw: Any) -> None:
        kw["t"] = round(time.perf_counter() - self.t_start, 1)
        self.log_f.write(json.dumps(kw) + "\n")
        self.log_f.flush()


def _setup(cfg: TrainConfig) -> _Run:
    import numpy as np
    import torch

    from critique.model import PACKAGED_BASE, Featurizer

    t_start = time.perf_counter()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev_name = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config = CriticConfig(base=cfg.base or PACKAGED_BASE, max_length=cfg.max_length, train_layers=cfg.train_layers,
                          aux_features=cfg.aux_features)
    examples = _examples("train", cfg.train_file, cfg.seed, cfg.data_dir)
    if cfg.max_examples and len(examples) > cfg.max_examples:
        examples = random.Random(cfg.seed).sample(examples, cfg.max_examples)
    net, tok = new_net(config)
    if cfg.init:
        # Warm start from an earlier critic: every stored tensor whose name and shape fit is taken over
        # (e.g. the fine-tuned encoder layers when the heads changed).
        from safetensors.torch import load_file

        own = net.state_dict()
        got = {k: v.float() for k, v in load_file(str(Path(cfg.init) / "weights.safetensors")).items()
               if k in own and own[k].shape == v.shape}
        net.load_state_dict(got, strict=False)
    prefixes = trainable_prefixes(net.encoder, cfg.train_layers)
    for name, p in net.encoder.named_parameters():
        p.requires_grad = any(name.startswith(px) for px in prefixes)
    net.to(dev_name)
    feats = Featurizer(tok, config)([e.model_output() for e in examples])
    return _Run(cfg, config, net, tok, examples, feats, dev_name, out, (out / "log.jsonl").open("a", encoding="utf-8"),
                t_start)


def _optimiser(run: _Run, total: int) -> tuple[Any, Any, int]:
    import torch

    enc_params = [p for p in run.net.encoder.parameters() if p.requires_grad]
    head_params = [p for n, p in run.net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": run.cfg.lr}, {"params": head_params, "lr": run.cfg.head_lr}],
                            weight_decay=0.01)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    return opt, sched, int(sum(p.numel() for p in enc_params + head_params))


def _loop(run: _Run, total: int) -> tuple[int, int, str]:
    """The optimisation steps; (steps, examples seen, why it stopped)."""
    import torch

    cfg = run.cfg
    dim_t, score_t, flaw_t = _targets(run.examples, run.feats)
    lengths = [len(f.input_ids) for f in run.feats]
    opt, sched, n_train = _optimiser(run, total)
    use_amp = run.device.startswith("cuda")
    run.log(event="start", examples=len(run.examples), steps=total, batch_size=cfg.batch_size, device=run.device,
            config=run.config.to_json(), seed=cfg.seed, lr=cfg.lr, init=str(cfg.init) if cfg.init else None,
            head_lr=cfg.head_lr, epochs=cfg.epochs, trainable=n_train)
    ce, ce_flaw = torch.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(ignore_index=-100)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="train critic", unit="step")
    rng = random.Random(cfg.seed)
    step, seen, stopped, ema = 0, 0, "done", None
    run.net.train()
    while step < total and stopped == "done":
        for b in _batches(lengths, cfg.batch_size, rng):
            if step >= total:
                break
            if cfg.max_minutes is not None and time.perf_counter() - run.t_start > cfg.max_minutes * 60:
                stopped = "time budget"
                break
            batch = {k: v.to(run.device) for k, v in collate([run.feats[i] for i in b], run.tok.pad_token_id).items()}
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                d, s, f = run.net(**batch)
            yd, ys, yf = dim_t[b].to(run.device), score_t[b].to(run.device), flaw_t[b].to(run.device)
            loss = ce(d, yd) + 0.5 * ce(s, ys)
            if (yf >= 0).any():
                loss = loss + 0.5 * ce_flaw(f.masked_fill(torch.isinf(f), -1e4), yf)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.net.parameters(), 1.0)
            opt.step()
            sched.step()
            step, seen = step + 1, seen + len(b)
            lv = float(loss.detach())
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.3f}")
            if step % 20 == 0 or step == 1:
                run.log(event="step", step=step, loss=round(lv, 4), loss_ema=round(ema, 4),
                        lr=sched.get_last_lr()[0], seen=seen)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_critic(run.net, run.tok, run.config, run.out / "checkpoint", extra={"step": step, "partial": True})
                run.log(event="checkpoint", step=step, path=str(run.out / "checkpoint"))
    if bar is not None:
        bar.close()
    return step, seen, stopped


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune a critic and write it to `cfg.out` (manifest.json, weights.safetensors, log.jsonl, metrics.json)."""
    run = _setup(cfg)
    total = max(1, int(math.ceil(len(run.examples) / cfg.batch_size) * cfg.epochs))
    step, seen, stopped = _loop(run, total)
    seconds = time.perf_counter() - run.t_start
    extra = {"training": {"seed": cfg.seed, "steps": step, "examples_seen": seen, "train_examples": len(run.examples),
                          "epochs_planned": cfg.epochs, "stopped": stopped, "seconds": round(seconds, 1),
                          "device": run.device, "batch_size": cfg.batch_size, "lr": cfg.lr, "head_lr": cfg.head_lr,
                          "init": str(cfg.init) if cfg.init else None,
                          "data": "synthetic flaw injection over EntailmentBank task_1 train trees (1,313)"
                          if not cfg.train_file else str(cfg.train_file)}}
    save_critic(run.net, run.tok, run.config, run.out, extra=extra)
    run.log(event="saved", step=step, seen=seen, stopped=stopped, path=str(run.out))
    dev_metrics = None
    if cfg.dev_limit != 0:
        run.net.eval()
        critic = Critic(run.net, run.tok, run.config, device=run.device)
        dev = _examples("dev", cfg.dev_file, cfg.seed, cfg.data_dir)
        if cfg.dev_limit:
            dev = dev[:cfg.dev_limit]
        dev_metrics = evaluate(critic, dev)
        (run.out / "metrics.json").write_text(json.dumps(dev_metrics, indent=2) + "\n")
        run.log(event="dev", **{k: v for k, v in dev_metrics.items() if not isinstance(v, (dict, list))})
    run.log_f.close()
    return TrainResult(run.out, step, seen, seconds, run.device, dev_metrics)


def evaluate(critic: Critic, examples: Sequence[FlawExample], batch_size: int = 32,
             progress: bool = False) -> dict[str, Any]:
    """Dimension accuracy / macro-F1, flaw-sentence accuracy (flawed gold only), score MAE, speed."""
    t0 = time.perf_counter()
    preds = critic.predict([e.model_output() for e in examples], batch_size=batch_size, progress=progress)
    secs = time.perf_counter() - t0
    n = len(examples)
    labels = list(critic.config.labels)
    conf = {g: {p: 0 for p in labels} for g in labels}
    for e, p in zip(examples, preds):
        conf[e.dimension][p.dimension] += 1
    per: dict[str, dict[str, float]] = {}
    for lab in labels:
        tp = conf[lab][lab]
        fp = sum(conf[g][lab] for g in labels) - tp
        fn = sum(conf[lab].values()) - tp
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
                    "support": tp + fn}
    present = [lab for lab in labels if per[lab]["support"]]
    flawed = [(e, p) for e, p in zip(examples, preds) if e.dimension != NONE and e.flaw_index is not None]
    flaw_hits = sum(1 for e, p in flawed if p.flaw_sentence_index == e.flaw_index)
    binary_hits = sum(1 for e, p in zip(examples, preds) if (e.dimension == NONE) == (p.dimension == NONE))
    return {
        "n": n,
        "dimension_accuracy": round(sum(conf[x][x] for x in labels) / n, 4) if n else 0.0,
        "dimension_macro_f1": round(sum(per[x]["f1"] for x in present) / len(present), 4) if present else 0.0,
        "flawed_vs_sound_accuracy": round(binary_hits / n, 4) if n else 0.0,
        "flaw_sentence_accuracy": round(flaw_hits / len(flawed), 4) if flawed else 0.0,
        "flaw_sentence_n": len(flawed),
        "score_mae": round(sum(abs(e.score - p.score) for e, p in zip(examples, preds)) / n, 4) if n else 0.0,
        "score_exact": round(sum(e.score == p.score for e, p in zip(examples, preds)) / n, 4) if n else 0.0,
        "critiques_per_second": round(n / secs, 1) if secs else 0.0,
        "per_dimension": per,
        "confusion": conf,
        "labels": labels,
        "data": "synthetic flaw injection over EntailmentBank task_1 dev trees (187)",
    }


def evaluate_dev(model: str | Path | None = None, seed: int = 0, data_dir: str | Path | None = None,
                 dev_file: str | Path | None = None, limit: int | None = None, batch_size: int = 32,
                 progress: bool = True) -> dict[str, Any]:
    """Load a critic (None -> the shipped one) and evaluate it on the injected dev set."""
    from critique.model import load_critic

    critic = load_critic(model)
    dev = _examples("dev", dev_file, seed, data_dir)
    if limit:
        dev = dev[:limit]
    res = evaluate(critic, dev, batch_size=batch_size, progress=progress)
    res["model"] = str(model) if model else "shipped (critique/weights/critic)"
    res["seed"] = seed
    return res


__all__ = ["train", "evaluate", "evaluate_dev", "TrainResult", "LABELS"]


# === The checks critic's head (critique/head.py) =======================================================

@dataclass(frozen=True)
class ChecksTrainConfig:
    """Training the checks head: where the cached check features live, the data sizes, the seed."""

    out: str = "critique/weights/checks"
    cache: str = "runs/checks_feats"
    seed: int = 0
    data_dir: str | None = None
    train_trees: int | None = None   # EntailmentBank train trees per flaw recipe (None: DataConfig's default)
    select: bool = True          # choose the head's size / regularisation on LORO + T5 CV + acceptability dev
    acceptability: bool = True   # the acceptability regressor's output, per explanation kind, as score-net inputs (as shipped)


def train_checks(cfg: ChecksTrainConfig) -> dict[str, Any]:
    """Compute (or read cached) check features, select the head on held-out signals, train it on the
    final training set and write OUT/head.json + OUT/selection.json. Returns the summary."""
    from critique.checks import EXTRA_FEATURES
    from critique.checks_data import DataConfig, attach_acceptability, lexical_sets, load_sets
    from critique.checks_eval import train_shipped

    data = DataConfig(data_dir=cfg.data_dir, cache=cfg.cache, seed=cfg.seed)
    if cfg.train_trees:
        data = replace(data, train_trees=cfg.train_trees)
    sets = load_sets(cfg=data)
    fast_sets = lexical_sets(sets, cfg.data_dir, data)
    if cfg.acceptability:
        attach_acceptability(sets, cache=cfg.cache, cfg=data)
    head, report = train_shipped(sets, fast_sets, seed=cfg.seed, do_select=cfg.select,
                                 extra_features=EXTRA_FEATURES if cfg.acceptability else ())
    rows = report["full"]["grid"]
    sizes = {k: len(v) for k, v in sets.items()}
    head.meta["selection"] = rows
    out = Path(cfg.out)
    head.save(out / "head.json")
    (out / "selection.json").write_text(json.dumps({"report": report, "chosen": head.meta["config"], "sets": sizes},
                                                   indent=2, default=str) + "\n")
    return {"out": str(out / "head.json"), "chosen": head.meta["config"], "grid": rows, "sets": sizes}
