"""Does SmolLM2's likelihood of an explanation track human acceptability and T5 proof flaws?

    HF_HUB_OFFLINE=1 .venv/bin/python bench/likelihood_signals.py [--stages dev,t5,train,heldout]
        [--threads 1] [--heldout-instances 60] [--cache runs/likelihood_cache.jsonl]

Signals (`critique.likelihood`, SmolLM2-135M-Instruct fp32 through transformers), oriented so that
higher = better: `neg_nll_sum`, `neg_nll_mean`, `neg_tokens`, `answer_gain`, `answer_gain_mean`, and
minus the word count. Measured on:

- **acc dev** (stage `dev`): the checks critic's seeded acceptability dev split, reproduced exactly
  (`critique.checks_data._acceptability` keeps 120 seeded instances per file; `make_splits` puts 25%
  of them, 30 instances = 150 explanations per file, in dev). Spearman with the share of annotators
  who accepted the explanation, next to the GPT-3 -NLL stored in the files, CQA and SNLI apart.
- **t5** (stage `t5`): the T5-11B dev proofs (tasks 1 and 2, 374 rows) rendered as explanations;
  AUROC of minus each signal for "flawed" (leaves or steps differ from gold).
- **combination** (stage `train`): ridge regression (standardised features, alpha 1, not tuned) on
  [likelihood signals, word count] fitted on the acceptability **train** part of the same split (90
  instances per file), pooled and per file; reported on acc dev.
- **acc held-out** (stage `heldout`): a seeded sample of instances outside the 120 the critic ever
  uses (never trained or selected on by anyone): a larger check of the single signals and the ridge.

Speed: explanations/s of the scorer's forward passes (per stage, from the run that computed it: reruns read the
`--cache` and keep those timings) (each explanation costs one pass per prompt:
2 by default), on this 2-core CPU shared with other jobs, 1 torch thread.
Writes bench/results/likelihood_signals.json and .md (after every stage).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from critique.evaluate import auroc, spearman
from critique.likelihood import LikelihoodConfig, LikelihoodScorer

FILES = {"acc_cqa": "commonsenseqa", "acc_snli": "snli"}
SIGNALS = ("neg_nll_sum", "neg_nll_mean", "neg_tokens", "answer_gain", "answer_gain_mean", "neg_words")


def acceptability_split(name: str, data_dir: Path, seed: int = 0, n_instances: int = 120, dev_share: float = 0.25,
                        heldout: int = 0) -> dict[str, list[Any]]:
    """{"train", "dev", "heldout"} HumanItems: the critic's seeded split (checks_data + make_splits) and
    a seeded sample of `heldout` instances from outside the 120 kept ones (critique.acceptability, which
    also names the acceptability regressor's rows: every other instance)."""
    from critique.acceptability import acceptability_split as split

    s = split(name, data_dir, seed, n_instances, dev_share, heldout)
    return {k: s[k] for k in ("train", "dev", "heldout")}


def signals(scorer: LikelihoodScorer, records: list[Any]) -> dict[str, np.ndarray]:
    x = scorer.score_dict(records, progress=True)
    return {"neg_nll_sum": -x["lm_nll_sum"], "neg_nll_mean": -x["lm_nll_mean"], "neg_tokens": -x["lm_tokens"],
            "answer_gain": x["lm_answer_gain"], "answer_gain_mean": x["lm_answer_gain_mean"],
            "neg_words": -np.array([len(r.explanation.split()) for r in records], dtype=np.float64),
            # what one pass without the answer would give (reported only; not a ridge input)
            "neg_nll_mean_question_only": -(x["lm_nll_mean"] + x["lm_answer_gain_mean"])}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def acc_rows(scorer: LikelihoodScorer, items: list[Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return signals(scorer, [it.record for it in items]), np.array([it.acceptable for it in items])


def correlations(sig: dict[str, np.ndarray], acc: np.ndarray, items: list[Any]) -> dict[str, Any]:
    nll = np.array([-it.nll if it.nll is not None else np.nan for it in items])
    ok = ~np.isnan(nll)
    out: dict[str, Any] = {"n_explanations": len(items), "n_instances": len({it.instance for it in items})}
    out.update({f"spearman_{k}": _r(spearman(v, acc)) for k, v in sig.items()})
    out["spearman_gpt3_neg_nll"] = _r(spearman(nll[ok], acc[ok]))
    out["n_with_gpt3_nll"] = int(ok.sum())
    out["ci90_by_instance"] = {"neg_nll_mean": bootstrap(sig["neg_nll_mean"], acc, items),
                               "gpt3_neg_nll": bootstrap(nll, acc, items)}
    return out


def bootstrap(x: np.ndarray, acc: np.ndarray, items: list[Any], n: int = 1000, seed: int = 0) -> list[float]:
    """90% interval of the Spearman, resampling instances (their five explanations stay together)."""
    inst = sorted({it.instance for it in items})
    rows = {i: np.array([k for k, it in enumerate(items) if it.instance == i]) for i in inst}
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = np.concatenate([rows[inst[j]] for j in rng.integers(0, len(inst), len(inst))])
        ok = idx[~np.isnan(x[idx])]
        v = spearman(x[ok], acc[ok])
        if v is not None:
            vals.append(v)
    return [round(float(np.quantile(vals, 0.05)), 3), round(float(np.quantile(vals, 0.95)), 3)]


def matrix(sig: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([sig[k] for k in SIGNALS], axis=1)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, weights incl. bias) of ridge on standardised features; alpha fixed, not tuned."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    reg = alpha * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(z.T @ z + reg, z.T @ y)
    return mu, sd, w


def predict_ridge(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    mu, sd, w = model
    return np.hstack([(x - mu) / sd, np.ones((len(x), 1))]) @ w


def stage_t5(scorer: LikelihoodScorer, data_dir: Path, res: dict[str, Any]) -> None:
    from critique.evaluate import t5_items

    items = t5_items(1, "T5_11B", data_dir) + t5_items(2, "T5_11B", data_dir)
    sig = signals(scorer, [it.record for it in items])
    y = np.array([it.flawed for it in items])
    res["t5"] = {"n": len(items), "n_flawed": int(y.sum()), "runs": ["task1/T5_11B", "task2/T5_11B"],
                 **{f"auroc_flawed_minus_{k}": _r(auroc(-v, y)) for k, v in sig.items()}}


def stage_combination(scorer: LikelihoodScorer, splits: dict[str, dict[str, list[Any]]], res: dict[str, Any],
                      parts: tuple[str, ...]) -> None:
    """Ridge on SIGNALS fitted on the acceptability train part only; Spearman on `parts`."""
    data = {n: {p: acc_rows(scorer, sp[p]) for p in ("train",) + parts} for n, sp in splits.items()}
    pooled = fit_ridge(np.vstack([matrix(d["train"][0]) for d in data.values()]),
                       np.concatenate([d["train"][1] for d in data.values()]))
    out: dict[str, Any] = {"features": list(SIGNALS), "alpha": 1.0, "fitted_on": "acc train part (both files)",
                           "pooled_weights_standardised": dict(zip(SIGNALS + ("bias",), np.round(pooled[2], 4)))}
    for n, d in data.items():
        own = fit_ridge(matrix(d["train"][0]), d["train"][1])
        for p in parts:
            x, y = matrix(d[p][0]), d[p][1]
            out.setdefault(p, {})[n] = {"ridge_pooled": _r(spearman(predict_ridge(pooled, x), y)),
                                        "ridge_per_file": _r(spearman(predict_ridge(own, x), y)), "n": len(y)}
    res["combination"] = out


def _speed(res: dict[str, Any], stage: str, scorer: LikelihoodScorer, t0: float, rows0: int, s0: float) -> None:
    """Wall time of the stage and the scorer's own forward time for the pairs it actually ran (not cached)."""
    rows, fwd = scorer.rows_run - rows0, scorer.seconds - s0
    if not rows and stage in res.get("timing", {}):
        return  # all cached this time: keep the timing of the run that computed it
    res.setdefault("timing", {})[stage] = {
        "wall_s": round(time.perf_counter() - t0, 1), "forward_s": round(fwd, 1), "pairs_run": rows,
        "explanations_per_s": round(rows / len(scorer.passes) / fwd, 2) if rows else None}


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Likelihood signals (SmolLM2-135M-Instruct) vs human acceptability and T5 flaws", "",
             f"Command: `{res['command']}`; {res['machine']}.", "",
             ("Signals are oriented higher = better. `answer_gain` = NLL(explanation | question) - "
              "NLL(explanation | question + answer)."), ""]
    for part, title in (("acc_dev", "Acceptability dev split (the critic's seeded dev: 30 instances per file)"),
                        ("acc_heldout", "Acceptability held-out sample (instances the critic never uses)")):
        if part not in res:
            continue
        d = res[part]
        names = list(d)
        lines += [f"## {title}: Spearman with the acceptable share", "",
                  "| signal | " + " | ".join(f"{n} (n={d[n]['n_explanations']})" for n in names) + " |",
                  "|---|" + "---|" * len(names)]
        keys = [k for k in d[names[0]] if k.startswith("spearman_")]
        lines += [f"| {k[9:]} | " + " | ".join(str(d[n][k]) for n in names) + " |" for k in keys]
        lines += [f"| 90% CI {k} (bootstrap over instances) | " + " | ".join(
            str(d[n].get("ci90_by_instance", {}).get(k)) for n in names) + " |" for k in ("neg_nll_mean", "gpt3_neg_nll")]
        comb = res.get("combination", {}).get(part[4:])
        if comb:
            for kind in ("ridge_pooled", "ridge_per_file"):
                lines.append(f"| {kind} (fit on acc train part) | " + " | ".join(str(comb[n][kind]) for n in names) + " |")
        lines.append("")
    if "t5" in res:
        t = res["t5"]
        lines += [f"## T5-11B dev proofs ({t['n']} rows, {t['n_flawed']} flawed): AUROC of minus the signal for flawed",
                  "", "| signal | AUROC |", "|---|---|"]
        lines += [f"| {k[len('auroc_flawed_minus_'):]} | {v} |" for k, v in t.items() if k.startswith("auroc_flawed_minus_")]
        lines.append("")
    if "combination" in res:
        lines += ["Ridge weights (pooled, standardised features): "
                  + ", ".join(f"{k} {v}" for k, v in res["combination"]["pooled_weights_standardised"].items()), ""]
    lines += ["## Speed", "", "| stage | pairs run | forward s | explanations/s | wall s |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['pairs_run']} | {v['forward_s']} | {v['explanations_per_s']} | {v['wall_s']} |"
              for k, v in res.get("timing", {}).items()]
    return "\n".join(lines)


def write(res: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(res) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--stages", default="dev,t5,train,heldout")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--heldout-instances", type=int, default=60, help="per file, outside the critic's 120")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "likelihood_cache.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "likelihood_signals"))
    a = ap.parse_args()
    from bench.critique_bench import machine
    from microtheory.datasets import default_data_dir

    data_dir = Path(a.data) if a.data else default_data_dir()
    scorer = LikelihoodScorer(LikelihoodConfig(threads=a.threads, batch_size=a.batch_size, cache_path=a.cache))
    stages = a.stages.split(",")
    out = Path(a.out)
    res: dict[str, Any] = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    m = machine(a.threads)
    res.update({"command": "python " + " ".join(sys.argv), "model": "SmolLM2-135M-Instruct (fp32, transformers)",
                "machine": f"{m['cpu']}, {a.threads} torch thread(s), shared with other jobs"})
    splits = {n: acceptability_split(n, data_dir, heldout=a.heldout_instances) for n in FILES}
    for st in stages:
        t0, r0, s0 = time.perf_counter(), scorer.rows_run, scorer.seconds
        if st in ("dev", "heldout"):
            for name, sp in splits.items():
                sig, acc = acc_rows(scorer, sp[st])
                res.setdefault(f"acc_{st}", {})[name] = correlations(sig, acc, sp[st])
        elif st == "t5":
            stage_t5(scorer, data_dir, res)
        elif st == "train":
            stage_combination(scorer, splits, res, tuple(p for p in ("dev", "heldout") if p in stages))
        _speed(res, st, scorer, t0, r0, s0)
        write(res, out)
        print(markdown(res), flush=True)


if __name__ == "__main__":
    main()
