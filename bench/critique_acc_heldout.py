"""A checks head (default: the shipped one; default score and --lm score) on the held-out acceptability
sample of critique.acceptability.acceptability_split (60 seeded instances per file outside the 120 the
critic uses and outside the acceptability regressor's rows; never used for training or selection), with
SmolLM2 -NLL/token alone, the acceptability regressor alone and GPT-3 -NLL on the same rows. The
critic's numbers are of the integer 0-5 score a critique carries (`spearman_default`, `spearman_lm`);
`spearman_default_raw` is the score net's raw output and `spearman_default_clamped` the integer as
heads up to v5 decoded it (clamped into the predicted dimension's score range), for reference.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/critique_acc_heldout.py [--lm-cache LM_CACHE]
        [--head HEAD_JSON] [--out bench/results/critique_acc_heldout.json] [--via-cli]

--via-cli: also write the rows as a model-outputs JSONL (runs/acc_heldout/<file>.jsonl) and critique
them with `microtheory critique run` at its defaults (the shipped head; no knowledge), reporting the
Spearman of the scores in its output records (the number a user of the command gets) and how often
their dimension is `none` among the explanations most annotators accept / reject.

Only rows whose likelihood is in LM_CACHE (default runs/likelihood_cache.jsonl, written by
bench/likelihood_signals.py --stages heldout) are scored. The rows' checks are cached in
runs/checks_feats/acc_heldout_<file>.pkl (full checks, no knowledge: as `critique run` without
--microtheory); the regressor's output is computed for every head (cheap).
"""
import argparse
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from critique.acceptability import acceptability_split, load_acceptability  # noqa: E402
from critique.checks import Checker, ChecksConfig, with_evidence  # noqa: E402
from critique.checks_data import LM_FEATURES, lm_scorer, run_checks  # noqa: E402
from critique.checks_eval import clamped_levels, levels  # noqa: E402
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


def cli_critiques(name: str, recs: list, folder: Path) -> list[dict]:
    """`microtheory critique run` at its defaults over the rows; the critique of each output record."""
    folder.mkdir(parents=True, exist_ok=True)
    inp, out = folder / f"{name}.jsonl", folder / f"{name}.critiques.jsonl"
    inp.write_text("".join(json.dumps(r.to_json()) + "\n" for r in recs), encoding="utf-8")
    out.unlink(missing_ok=True)     # this script made it (same folder, same name)
    cli = Path(sys.executable).parent / "microtheory"
    subprocess.run([str(cli), "critique", "run", str(inp), "--out", str(out)], check=True)
    got = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        if "_header" not in d:
            got[d["line"]] = d["critique"]
    return [got[i + 1] for i in range(len(recs))]


def none_shares(dims: list[str], acc: list[float]) -> dict:
    """How often the dimension is `none` among explanations >= 80% of annotators accept and <= 40% accept."""
    yes = [d == "none" for d, a in zip(dims, acc) if a >= 0.8 - 1e-9]
    no = [d == "none" for d, a in zip(dims, acc) if a <= 0.4 + 1e-9]
    return {"n_accepted": len(yes), "n_rejected": len(no),
            "none_share_accepted": round(float(np.mean(yes)), 4) if yes else None,
            "none_share_rejected": round(float(np.mean(no)), 4) if no else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lm-cache", default="runs/likelihood_cache.jsonl")
    ap.add_argument("--head", default=None)
    ap.add_argument("--cache", default="runs/checks_feats")
    ap.add_argument("--out", default="bench/results/critique_acc_heldout.json")
    ap.add_argument("--via-cli", action="store_true", help="also run `microtheory critique run` over the rows")
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
                     "spearman_default_clamped": spearman(clamped_levels(head, g), acc),
                     "spearman_regressor_alone": spearman(reg, acc),
                     "spearman_neg_lm_nll_mean": spearman(-lm[:, 1], acc),
                     "spearman_gpt3": spearman(nll[ok], np.array(acc)[ok])}
        if a.via_cli:
            crit = cli_critiques(name, recs, Path("runs/acc_heldout"))
            out[name]["spearman_critique_run"] = spearman([c["score"] for c in crit], acc)
            out[name]["critique_run_dimensions"] = none_shares([c["dimension"] for c in crit], acc)
        print(json.dumps(out[name]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
