"""The acceptability regressor alone (critique.acceptability), on rows it never trained or was selected on:

- the held-out acceptability sample (60 seeded instances per file, critique.acceptability.acceptability_split;
  ~300 explanations each): Spearman with the acceptable share, GPT-3 -NLL on the same rows;
- the checks head's 120 acceptability instances per file (its train + dev parts; outside the regressor's rows);
- the T5-11B dev proofs (tasks 1 and 2, critique.evaluate.t5_items): AUROC of -score for "flawed".

    PYTHONPATH=. HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/acceptability_eval.py [--model DIR]
        [--out bench/results/acceptability_regressor.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from critique.acceptability import AcceptabilityScorer, acceptability_split  # noqa: E402
from critique.evaluate import auroc, spearman, t5_items  # noqa: E402
from microtheory.datasets import default_data_dir  # noqa: E402


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def human(sc: AcceptabilityScorer, items: list) -> dict:
    s = sc.score([it.record for it in items])
    acc = np.array([it.acceptable for it in items])
    nll = np.array([-it.nll if it.nll is not None else np.nan for it in items])
    ok = ~np.isnan(nll)
    return {"n": len(items), "n_instances": len({it.instance for it in items}), "spearman_regressor": _r(spearman(s, acc)),
            "spearman_gpt3_neg_nll": _r(spearman(nll[ok], acc[ok])), "n_with_nll": int(ok.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="regressor folder (default: shipped)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/acceptability_regressor.json")
    a = ap.parse_args()
    sc = AcceptabilityScorer(a.model, num_threads=a.threads)
    out: dict = {"model": a.model or "shipped", "command": "python bench/acceptability_eval.py " + " ".join(sys.argv[1:])}
    for name in ("acc_cqa", "acc_snli"):
        s = acceptability_split(name, default_data_dir(), heldout=60)
        out[name] = {"heldout": human(sc, s["heldout"]), "head_rows_120": human(sc, s["train"] + s["dev"])}
        print(name, json.dumps(out[name]), flush=True)
    t5 = [it for task in (1, 2) for it in t5_items(task, "T5_11B")]
    t0 = time.perf_counter()
    s = sc.score([it.record for it in t5])
    dt = time.perf_counter() - t0
    y = np.array([it.flawed for it in t5])
    out["t5_dev"] = {"n": len(t5), "n_flawed": int(y.sum()), "auroc_neg_score": _r(auroc(-s, y)),
                     "by_task": {f"task{k}": _r(auroc(-s[m], y[m])) for k in (1, 2)
                                 for m in [np.array([f"/task{k}/" in it.record.id for it in t5])]},
                     "explanations_per_s": round(len(t5) / dt, 1)}
    print("t5", json.dumps(out["t5_dev"]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
