"""How the checks critic turns its raw score into the integer 0-5 a critique carries (head v6).

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/critique_score_decoding.py [--folds 3]

The head's score net outputs a raw 0-5 value; users (and the maintainers' held-out checks) see only
the integer in the critique. Up to v5 it was rounded and clamped into the predicted dimension's range
(`critique.taxonomy`: none 4-5, misunderstanding 0-2, ...), while every check measured the raw value.
This bench measures, for the shipped head configuration (`critique/weights/checks/head.json` meta),
on the critic's own selection rows (`critique.checks_data` caches, `critique.checks_eval` splits):

- T5-11B dev proofs: AUROC of 5 - integer for "flawed", cross-validated by dev item;
- acceptability dev split (CQA, SNLI; never trained on): Spearman of the integer with the accepting share;
- leave-one-recipe-out dimension macro-F1 (schemes that also change the dimension);

for each scheme: `raw` (no integer: the reference), `clamp` (v5), `round`, `stretch` (per explanation
kind, an affine map giving the raw score its training targets' mean and spread, then rounded: v6),
`quantile` (per kind, the training rows' sextiles), and two ways of making the dimension agree with
the score: `stretch+cap` (none -> at least 4, a flaw -> at most 4) and `stretch+five_is_none` (5 ->
dimension none). Calibrations are fitted on each fold's training rows that train the score net.
Writes bench/results/critique_score_decoding.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from critique.checks import GLOBAL_FEATURES  # noqa: E402
from critique.checks_data import SETS, attach_acceptability, load_sets  # noqa: E402
from critique.checks_eval import _fit, clamped_levels, final_train_set, levels, macro_f1, make_splits  # noqa: E402
from critique.evaluate import auroc, spearman  # noqa: E402
from critique.head import DEFAULT_HEAD, CheckHead, HeadConfig, score_level  # noqa: E402
from critique.taxonomy import LABELS, NONE  # noqa: E402

NONE_I = LABELS.index(NONE)
ANSWER_UNIT = GLOBAL_FEATURES.index("has_answer_unit")


def _kind(g: np.ndarray) -> np.ndarray:
    return (g[:, ANSWER_UNIT] > 0.5).astype(int)      # 1 proof (closes by naming the answer), 0 free text


def _quantiles(head: CheckHead, train: list) -> dict[int, np.ndarray]:
    rows = [it for it in train if not np.isnan(it.score) and it.source.startswith(("acc_", "t5"))]
    g = np.stack([head.features(it.checks) for it in rows])
    raw, k = head.score(g), _kind(g)
    return {kk: np.quantile(raw[k == kk], [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]) for kk in (0, 1) if (k == kk).any()}


def decode(scheme: str, head: CheckHead, g: np.ndarray, quant: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(dimension index, score) per row under one scheme."""
    probs, raw = head.dim_probs(g), head.score(g)
    dim = probs.argmax(1)
    if scheme == "raw":
        return dim, raw
    if scheme == "clamp":
        return dim, clamped_levels(head, g)
    if scheme == "round":
        return dim, np.array([score_level(x) for x in raw], float)
    if scheme == "quantile":
        k = _kind(g)
        return dim, np.array([float(np.searchsorted(quant[kk], x)) for kk, x in zip(k, raw)])
    s = levels(head, g, raw)     # stretch (v6)
    if scheme.endswith("+cap"):
        s = np.where(dim == NONE_I, np.maximum(s, 4), np.minimum(s, 4))
    if scheme.endswith("+five_is_none"):
        dim = np.where(s == 5, NONE_I, dim)
    return dim, s


SCHEMES = ("raw", "clamp", "round", "stretch", "quantile", "stretch+cap", "stretch+five_is_none")


def run(folds: int) -> dict[str, Any]:
    sets = load_sets(SETS)
    attach_acceptability(sets)
    sp = make_splits(sets, folds=folds)
    m = json.loads(DEFAULT_HEAD.read_text(encoding="utf-8"))["meta"]["config"]
    cfg = HeadConfig(**{**m, "dim_sources": tuple(m["dim_sources"]), "extra_features": tuple(m["extra_features"])})
    res: dict[str, Any] = {s: {} for s in SCHEMES}

    def each(head: CheckHead, train: list, items: list, fn: Callable[[str, np.ndarray, np.ndarray], None]) -> None:
        g, quant = np.stack([head.features(it.checks) for it in items]), _quantiles(head, train)
        for s in SCHEMES:
            fn(s, *decode(s, head, g, quant))

    for held, dev in sp.syn_dev.items():
        train = [it for r, its in sp.syn_train.items() if r != held for it in its] + sp.real_train() + sp.t5
        each(_fit(train, cfg), train, dev, lambda s, d, _: res[s].setdefault("loro", []).append(
            macro_f1([it.dim for it in dev], d)))
    y = np.array([it.extra["flawed"] for it in sp.t5])
    t5 = {s: np.zeros(len(y)) for s in SCHEMES}
    base = [it for its in sp.syn_train.values() for it in its] + sp.real_train()
    for k in range(folds):
        test = [i for i, it in enumerate(sp.t5) if sp.t5_folds[it.group] == k]
        train = base + [it for it in sp.t5 if sp.t5_folds[it.group] != k]

        def put(s: str, _: np.ndarray, sc: np.ndarray, test: list = test) -> None:
            t5[s][test] = sc
        each(_fit(train, cfg), train, [sp.t5[i] for i in test], put)
    for s in SCHEMES:
        res[s]["t5_cv_auroc"] = round(auroc(-t5[s], y) or 0, 4)
        res[s]["loro"] = round(float(np.mean(res[s]["loro"])), 4)
    train = final_train_set(sp)
    head = _fit(train, cfg)
    for name in ("acc_cqa", "acc_snli"):
        dev = [it for it in sp.acc_dev if it.source == name]
        acc = [it.extra["acceptable"] for it in dev]

        def put_acc(s: str, _: np.ndarray, sc: np.ndarray, name: str = name, acc: list = acc) -> None:
            res[s][name] = round(spearman(sc, acc) or 0, 4)
            if s != "raw":
                res[s][f"{name}_levels"] = np.bincount(sc.astype(int), minlength=6).tolist()
        each(head, train, dev, put_acc)
    return {"command": "python bench/critique_score_decoding.py " + " ".join(sys.argv[1:]), "folds": folds,
            "head_config": m, "schemes": res}


def markdown(r: dict[str, Any]) -> str:
    L = ["# Checks critic: raw score -> the integer a critique carries", "",
         f"Command: `{r['command']}`. The shipped head's configuration; T5 {r['folds']}-fold CV by item; acceptability "
         "dev split (150 explanations per file, never trained on); LORO on the synthetic recipes. "
         "Levels: how many dev explanations got 0..5.", "",
         "| scheme | T5 CV AUROC | CQA dev | SNLI dev | LORO macro-F1 | CQA levels | SNLI levels |", "|---|---|---|---|---|---|---|"]
    for s, v in r["schemes"].items():
        L.append(f"| {s} | {v['t5_cv_auroc']} | {v['acc_cqa']} | {v['acc_snli']} | {v['loro']} | "
                 f"{v.get('acc_cqa_levels', '-')} | {v.get('acc_snli_levels', '-')} |")
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "critique_score_decoding"))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    r = run(a.folds)
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(r), encoding="utf-8")
    print(markdown(r))


if __name__ == "__main__":
    main()
