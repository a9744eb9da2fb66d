"""The shipped checks head (default score and --lm score) on the held-out acceptability sample of
bench/likelihood_signals.py (60 seeded instances per file outside the 120 the critic uses; never used
for training or selection), with SmolLM2 -NLL/token alone and GPT-3 -NLL on the same rows.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/critique_acc_heldout.py [LM_CACHE]

Only rows whose likelihood is in LM_CACHE (default runs/likelihood_cache.jsonl, written by
bench/likelihood_signals.py --stages heldout) are scored. Writes bench/results/critique_acc_heldout.json.
"""
import json
import sys

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, "bench")
from pathlib import Path

from likelihood_signals import acceptability_split

from critique.checks import Checker, ChecksConfig, extend
from critique.checks_data import LM_FEATURES, lm_scorer, run_checks
from critique.evaluate import spearman
from critique.head import CheckHead
from microtheory.datasets import default_data_dir

head = CheckHead.load()
sc = lm_scorer(sys.argv[1] if len(sys.argv) > 1 else "runs/likelihood_cache.jsonl")
from critique.likelihood import _cache_key, prompts

ck = Checker(config=ChecksConfig())
out = {}
for name in ("acc_cqa", "acc_snli"):
    items = acceptability_split(name, default_data_dir(), heldout=60)["heldout"]
    items = [it for it in items if sc.cache.get(_cache_key(sc.model_id, prompts(it.record)["answer"], it.record.explanation)) is not None]
    recs = [it.record for it in items]
    lm = sc.score(recs)[:, :len(LM_FEATURES)]
    checks = run_checks(ck, recs, 32, name)
    g = np.stack([extend(c.g, c.u) for c in checks])
    acc = [it.acceptable for it in items]
    nll = np.array([-it.nll if it.nll is not None else np.nan for it in items]); ok = ~np.isnan(nll)
    out[name] = {"n": len(items), "n_instances": len({it.instance for it in items}),
                 "spearman_default": spearman(head.score(g), acc), "spearman_lm": spearman(head.score_lm(g, lm), acc),
                 "spearman_neg_lm_nll_mean": spearman(-lm[:, 1], acc), "spearman_gpt3": spearman(nll[ok], np.array(acc)[ok])}
    print(json.dumps(out[name]), flush=True)
Path("bench/results/critique_acc_heldout.json").write_text(json.dumps(out, indent=2) + "\n")
