"""A checks head (default: the shipped one; default score and --lm score) on the held-out acceptability
sample of critique.acceptability.acceptability_split (60 seeded instances per file outside the 120 the
critic uses and outside the acceptability regressor's rows; never used for training or selection), with
SmolLM2 -NLL/token alone, the acceptability regressor alone and GPT-3 -NLL on the same rows. The
critic's numbers are of the integer 0-5 score a critique carries (`spearman_default`, `spearman_lm`);
`spearman_default_raw` is the score net's raw output, for reference.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/critique_acc_heldout.py [--lm-cache LM_CACHE]
        [--head HEAD_JSON] [--out bench/results/critique_acc_heldout.json]

Only rows whose likelihood is in LM_CACHE (default runs/likelihood_cache.jsonl, written by
bench/likelihood_signals.py --stages heldout) are scored. The rows' checks are cached in
runs/checks_feats/acc_heldout_<file>.pkl (full checks, no knowledge: as `critique run` without
--microtheory); the regressor's output is computed for every head (cheap).
"""
import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from critique.acceptability import acceptability_split, load_acceptability  # noqa: E402
from critique.checks import Checker, ChecksConfig, with_evidence  # noqa: E402
from critique.checks_data import LM_FEATURES, lm_scorer, run_checks  # noqa: E402
from critique.checks_eval import levels  # noqa: E402
from critique.evaluate import spearman  # noqa: E402
from critique.head import CheckHead  # noqa: E402
from critique.likelihood import _cache_key, prompts  # noqa: E402
from microtheory.datasets import default_data_dir  # noqa: E402


def cached_checks(name: str, recs: list, cache: Path) -> list:
    path = cache / f"acc_heldout_{name}.pkl"
    got = pickle.loads(path.read_bytes()) if path.is_file() else {}
    todo = [r for r in recs if (r.id, r.explanation) not in got]
    if todo:
        for r, c in zip(todo, run_checks(Checker(config=ChecksConfig()), todo, 32, name)):
            got[(r.id, r.explanation)] = c
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_bytes(pickle.dumps(got))
        path.with_suffix(".tmp").replace(path)
    # checks cached before the text evidence features existed get them from their texts (no model)
    return [with_evidence(got[(r.id, r.explanation)], r) for r in recs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lm-cache", default="runs/likelihood_cache.jsonl")
    ap.add_argument("--head", default=None)
    ap.add_argument("--cache", default="runs/checks_feats")
    ap.add_argument("--out", default="bench/results/critique_acc_heldout.json")
    a = ap.parse_args()
    head = CheckHead.load(a.head)
    sc = lm_scorer(a.lm_cache)
    acc_model = load_acceptability()
    out = {"head": a.head or "shipped", "head_extra_features": list(head.extra_features)}
    for name in ("acc_cqa", "acc_snli"):
        items = acceptability_split(name, default_data_dir(), heldout=60)["heldout"]
        items = [it for it in items
                 if sc.cache.get(_cache_key(sc.model_id, prompts(it.record)["answer"], it.record.explanation)) is not None]
        recs = [it.record for it in items]
        lm = sc.score(recs)[:, :len(LM_FEATURES)]
        checks = cached_checks(name, recs, Path(a.cache))
        reg = acc_model.score(recs)
        for c, v in zip(checks, reg):
            c.acceptability = float(v)
        g = np.stack([head.features(c) for c in checks])
        acc = [it.acceptable for it in items]
        nll = np.array([-it.nll if it.nll is not None else np.nan for it in items])
        ok = ~np.isnan(nll)
        out[name] = {"n": len(items), "n_instances": len({it.instance for it in items}),
                     "spearman_default": spearman(levels(head, g, head.score(g)), acc),
                     "spearman_lm": spearman(levels(head, g, head.score_lm(g, lm)), acc) if head.lm is not None else None,
                     "spearman_default_raw": spearman(head.score(g), acc),
                     "spearman_regressor_alone": spearman(reg, acc),
                     "spearman_neg_lm_nll_mean": spearman(-lm[:, 1], acc),
                     "spearman_gpt3": spearman(nll[ok], np.array(acc)[ok])}
        print(json.dumps(out[name]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
