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
from dataclasses import dataclass
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


def train(out: str | Path, base: str | None = None, seed: int = 0, epochs: float = 1.0, batch_size: int = 16,
          lr: float = 8e-5, head_lr: float = 1e-3, max_length: int = 256, train_layers: int = 4,
          max_examples: int | None = None, max_minutes: float | None = None, train_file: str | Path | None = None,
          dev_file: str | Path | None = None, data_dir: str | Path | None = None, dev_limit: int | None = None,
          checkpoint_every: int = 200, device: str | None = None, threads: int | None = None,
          progress: bool = True, aux_features: bool = True, init: str | Path | None = None) -> TrainResult:
    """Fine-tune a critic and write it to `out` (manifest.json, weights.safetensors, log.jsonl, metrics.json)."""
    import numpy as np
    import torch

    from critique.model import PACKAGED_BASE

    t_start = time.perf_counter()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    dev_name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_f = (out / "log.jsonl").open("a", encoding="utf-8")

    def log(**kw: Any) -> None:
        kw["t"] = round(time.perf_counter() - t_start, 1)
        log_f.write(json.dumps(kw) + "\n")
        log_f.flush()

    config = CriticConfig(base=base or PACKAGED_BASE, max_length=max_length, train_layers=train_layers,
                          aux_features=aux_features)
    examples = _examples("train", train_file, seed, data_dir)
    rng = random.Random(seed)
    if max_examples and len(examples) > max_examples:
        examples = rng.sample(examples, max_examples)
    net, tok = new_net(config)
    if init:
        # Warm start from an earlier critic: every stored tensor whose name and shape fit is taken over
        # (e.g. the fine-tuned encoder layers when the heads changed).
        from safetensors.torch import load_file

        own = net.state_dict()
        got = {k: v.float() for k, v in load_file(str(Path(init) / "weights.safetensors")).items()
               if k in own and own[k].shape == v.shape}
        net.load_state_dict(got, strict=False)
    prefixes = trainable_prefixes(net.encoder, train_layers)
    for name, p in net.encoder.named_parameters():
        p.requires_grad = any(name.startswith(px) for px in prefixes)
    net.to(dev_name)
    from critique.model import Featurizer

    feats = Featurizer(tok, config)([e.model_output() for e in examples])
    dim_t, score_t, flaw_t = _targets(examples, feats)
    lengths = [len(f.input_ids) for f in feats]
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total = max(1, int(steps_per_epoch * epochs))
    enc_params = [p for p in net.encoder.parameters() if p.requires_grad]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": lr}, {"params": head_params, "lr": head_lr}],
                            weight_decay=0.01)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    use_amp = dev_name.startswith("cuda")
    log(event="start", examples=len(examples), steps=total, batch_size=batch_size, device=dev_name,
        config=config.to_json(), seed=seed, lr=lr, init=str(init) if init else None, head_lr=head_lr, epochs=epochs,
        trainable=int(sum(p.numel() for p in enc_params + head_params)))
    ce = torch.nn.CrossEntropyLoss()
    ce_flaw = torch.nn.CrossEntropyLoss(ignore_index=-100)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="train critic", unit="step")
    step, seen, stopped = 0, 0, "done"
    net.train()
    ema: float | None = None
    while step < total:
        for b in _batches(lengths, batch_size, rng):
            if step >= total:
                break
            if max_minutes is not None and time.perf_counter() - t_start > max_minutes * 60:
                stopped = "time budget"
                break
            batch = {k: v.to(dev_name) for k, v in collate([feats[i] for i in b], tok.pad_token_id).items()}
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                d, s, f = net(**batch)
            yd, ys, yf = dim_t[b].to(dev_name), score_t[b].to(dev_name), flaw_t[b].to(dev_name)
            loss = ce(d, yd) + 0.5 * ce(s, ys)
            if (yf >= 0).any():
                f = f.masked_fill(torch.isinf(f), -1e4)
                loss = loss + 0.5 * ce_flaw(f, yf)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            seen += len(b)
            lv = float(loss.detach())
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.3f}")
            if step % 20 == 0 or step == 1:
                log(event="step", step=step, loss=round(lv, 4), loss_ema=round(ema, 4),
                    lr=sched.get_last_lr()[0], seen=seen)
            if checkpoint_every and step % checkpoint_every == 0:
                save_critic(net, tok, config, out / "checkpoint", extra={"step": step, "partial": True})
                log(event="checkpoint", step=step, path=str(out / "checkpoint"))
        else:
            continue
        break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t_start
    extra = {"training": {"seed": seed, "steps": step, "examples_seen": seen, "train_examples": len(examples),
                          "epochs_planned": epochs, "stopped": stopped, "seconds": round(seconds, 1),
                          "device": dev_name, "batch_size": batch_size, "lr": lr, "head_lr": head_lr,
                          "init": str(init) if init else None,
                          "data": "synthetic flaw injection over EntailmentBank task_1 train trees (1,313)"
                          if not train_file else str(train_file)}}
    save_critic(net, tok, config, out, extra=extra)
    log(event="saved", step=step, seen=seen, stopped=stopped, path=str(out))
    dev_metrics = None
    if dev_limit != 0:
        net.eval()
        critic = Critic(net, tok, config, device=dev_name)
        dev = _examples("dev", dev_file, seed, data_dir)
        if dev_limit:
            dev = dev[:dev_limit]
        dev_metrics = evaluate(critic, dev)
        (out / "metrics.json").write_text(json.dumps(dev_metrics, indent=2) + "\n")
        log(event="dev", **{k: v for k, v in dev_metrics.items() if not isinstance(v, (dict, list))})
    log_f.close()
    return TrainResult(out, step, seen, seconds, dev_name, dev_metrics)


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
