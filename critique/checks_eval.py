"""Selecting and measuring the checks head on data it was not trained or selected on.

- leave-one-recipe-out (LORO): train on every flaw recipe's **train-tree** examples but one, measure
  dimension macro-F1 on the left-out recipe's **dev-tree** examples;
- T5: AUROC of "flawed" on the T5 dev proofs, k-fold cross-validated by dev item (the item's four
  proofs are always in the same fold);
- acceptability: Spearman of the score with the acceptable share on a seeded instance-level dev split
  of the acceptability train CSVs (the head never trains on it), next to GPT-3 -NLL on the same rows;
- robustness: the same explanation in five renderings gets the same dimension.
Every training run here also uses the real-label training rows (acceptability train part, T5 rows of
the other folds) unless said otherwise.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from critique.checks_data import VARIANTS, Item, acc_base
from critique.evaluate import auroc, spearman
from critique.head import CheckHead, HeadConfig, fit_head, score_level
from critique.taxonomy import LABEL_INDEX, LABELS, NONE, score_range

NONE_I = LABEL_INDEX[NONE]


def macro_f1(y: Sequence[int], p: Sequence[int], n: int = len(LABELS)) -> float:
    y_a, p_a = np.asarray(y), np.asarray(p)
    f1s = []
    for c in range(n):
        if not (y_a == c).any():
            continue
        tp = float(((y_a == c) & (p_a == c)).sum())
        prec = tp / max((p_a == c).sum(), 1)
        rec = tp / (y_a == c).sum()
        f1s.append(0.0 if tp == 0 else 2 * prec * rec / (prec + rec))
    return float(np.mean(f1s)) if f1s else 0.0


@dataclass(frozen=True)
class Splits:
    """The fixed splits every experiment uses."""

    acc_train: list[Item]
    acc_dev: list[Item]
    t5: list[Item]
    t5_folds: dict[str, int]
    syn_train: dict[str, list[Item]]     # recipe -> train-tree items
    syn_dev: dict[str, list[Item]]       # recipe -> dev-tree items
    robust: list[Item]
    fg_train: list[Item] = ()            # fine-grained human judgements, training part
    fg_dev: list[Item] = ()              # ... seeded dev part (by instance; never trained on)
    # variant ("short", "nofacts": `critique.checks_data.VARIANTS`) -> recipe -> its dev rows, measured apart
    variant_dev: dict[str, dict[str, list[Item]]] = field(default_factory=dict)

    def real_train(self) -> list[Item]:
        """The real-label training rows every head here trains on besides the recipes (T5 aside)."""
        return list(self.acc_train) + list(self.fg_train)


def make_splits(sets: dict[str, list[Item]], seed: int = 0, acc_dev_share: float = 0.25, folds: int = 5) -> Splits:
    acc_train, acc_dev, fg_train, fg_dev = [], [], [], []
    for name in ("acc_cqa", "acc_snli", "accans_cqa", "accans_snli", "fg_cose", "fg_ecqa", "fg_esnli"):
        base = acc_base(name)    # both renderings of a row fall on the same side
        inst = sorted({it.group for it in sets.get(base, sets.get(name, []))})
        random.Random(f"{seed}:dev:{base}").shuffle(inst)
        dev = set(inst[: int(round(len(inst) * acc_dev_share))])
        tr, de = (acc_train, acc_dev) if name.startswith("acc") else (fg_train, fg_dev)
        for it in sets.get(name, []):
            (de if it.group in dev else tr).append(it)
    t5 = sets.get("t5_dev", [])
    groups = sorted({it.group for it in t5})
    random.Random(f"{seed}:t5folds").shuffle(groups)
    t5_folds = {g: i % folds for i, g in enumerate(groups)}
    recipes = sorted({k[4:].rsplit("_", 1)[0] for k in sets if k.startswith("syn_")})
    # a recipe's training rows: its full-tree rows and its variants' (`checks_data.VARIANTS`: trees cut to
    # their final step, checks against the corpus without the trees' own facts); the variants' dev rows
    # are measured apart, so that the full-tree LORO stays comparable across heads
    variant_dev = {v: {r: sets[f"{v}_{r}_dev"] for r in recipes if sets.get(f"{v}_{r}_dev")} for v in VARIANTS}
    return Splits(acc_train, acc_dev, t5, t5_folds,
                  {r: sets.get(f"syn_{r}_train", []) + [it for v in VARIANTS for it in sets.get(f"{v}_{r}_train", [])]
                   for r in recipes},
                  {r: sets.get(f"syn_{r}_dev", []) for r in recipes}, sets.get("robust_dev", []), fg_train, fg_dev,
                  {v: d for v, d in variant_dev.items() if d})


def predict(head: CheckHead, items: Sequence[Item], knowledge: bool = True, raw: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """(dimension probabilities, score) per item; knowledge=False drops the fact features (fast mode).
    The score is the integer 0-5 a critique carries (`critique.head.score_level` of the calibrated
    score), what users and every check here see; raw=True: the score net's raw output instead."""
    if not items:
        return np.zeros((0, len(LABELS))), np.zeros(0)
    g = np.stack([head.features(it.checks, knowledge) for it in items])
    s = head.score(g)
    return head.dim_probs(g), s if raw else levels(head, g, s)


def levels(head: CheckHead, g: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """The integer 0-5 scores critiques carry, from the head's raw scores of the input rows `g`."""
    return np.array([score_level(v) for v in head.calibrated(g, raw)], np.float64)


def clamped_levels(head: CheckHead, g: np.ndarray) -> np.ndarray:
    """The integer scores as heads up to v5 decoded them (kept to measure against): the raw score
    rounded, then clamped into the predicted dimension's typical range (`critique.taxonomy`)."""
    out = []
    for d, x in zip(head.dim_probs(g).argmax(1), head.score(g)):
        lo, hi = score_range(LABELS[d])
        out.append(min(max(round(x), lo), hi))
    return np.array(out, np.float64)


def _fit(train: list[Item], cfg: HeadConfig) -> CheckHead:
    return fit_head(train, cfg)


def loro(sp: Splits, cfg: HeadConfig, use_real: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for held in sp.syn_dev:
        train = [it for r, its in sp.syn_train.items() if r != held for it in its]
        if use_real:
            train += sp.real_train() + sp.t5
        head = _fit(train, cfg)
        dev = sp.syn_dev[held]
        probs, _ = predict(head, dev)
        bare, _ = predict(head, dev, knowledge=False)    # as `critique run` without --microtheory checks them
        out[held] = {"macro_f1": round(macro_f1([it.dim for it in dev], probs.argmax(1)), 4), "n": len(dev),
                     "macro_f1_without_knowledge": round(macro_f1([it.dim for it in dev], bare.argmax(1)), 4),
                     "train_recipes": [r for r in sp.syn_train if r != held],
                     "per_dimension_f1": _per_dim(dev, probs.argmax(1))}
        for var, by_recipe in sp.variant_dev.items():
            items = by_recipe.get(held)
            if items:
                vp = predict(head, items)[0].argmax(1)
                out[held].update({f"macro_f1_{var}": round(macro_f1([it.dim for it in items], vp), 4),
                                  f"n_{var}": len(items), f"per_dimension_f1_{var}": _per_dim(items, vp)})
    folds = [v for v in out.values() if isinstance(v, dict)]
    if out:
        out["mean_macro_f1_without_knowledge"] = round(float(np.mean([v["macro_f1_without_knowledge"]
                                                                       for v in folds])), 4)
    for var in sp.variant_dev:
        got = [v[f"macro_f1_{var}"] for v in folds if f"macro_f1_{var}" in v]
        if got:
            out[f"mean_macro_f1_{var}"] = round(float(np.mean(got)), 4)
    out["mean_macro_f1"] = round(float(np.mean([v["macro_f1"] for v in folds])), 4) if folds else None
    return out


def _per_dim(items: Sequence[Item], pred: np.ndarray) -> dict[str, float]:
    y = np.array([it.dim for it in items])
    return {lab: round(_f1_one(y, pred, c), 4) for c, lab in enumerate(LABELS) if (y == c).any()}


def _f1_one(y: np.ndarray, p: np.ndarray, c: int) -> float:
    tp = float(((y == c) & (p == c)).sum())
    if tp == 0:
        return 0.0
    prec, rec = tp / (p == c).sum(), tp / (y == c).sum()
    return 2 * prec * rec / (prec + rec)


def t5_cv(sp: Splits, cfg: HeadConfig) -> dict[str, Any]:
    """Out-of-fold predictions for every T5 row: trained on synthetic + acceptability train + other folds."""
    n_folds = max(sp.t5_folds.values()) + 1 if sp.t5_folds else 0
    base = [it for its in sp.syn_train.values() for it in its] + sp.real_train()
    score = np.zeros(len(sp.t5))
    raw = np.zeros(len(sp.t5))
    bare = np.zeros(len(sp.t5))     # the same rows checked without knowledge (`critique run` without --microtheory)
    p_none = np.zeros(len(sp.t5))
    for k in range(n_folds):
        test = [i for i, it in enumerate(sp.t5) if sp.t5_folds[it.group] == k]
        head = _fit(base + [it for it in sp.t5 if sp.t5_folds[it.group] != k], cfg)
        probs, s = predict(head, [sp.t5[i] for i in test])
        score[test], p_none[test] = s, probs[:, NONE_I]
        raw[test] = predict(head, [sp.t5[i] for i in test], raw=True)[1]
        bare[test] = predict(head, [sp.t5[i] for i in test], knowledge=False)[1]
    y = np.array([it.extra["flawed"] for it in sp.t5])
    runs = sorted({it.extra["run"] for it in sp.t5})
    per_run = {r: round(auroc(-score[m], y[m]) or 0, 4) for r in runs
               for m in [np.array([it.extra["run"] == r for it in sp.t5])]}
    return {"n": len(y), "n_flawed": int(y.sum()), "folds": n_folds,
            "auroc_5_minus_score": round(auroc(-score, y) or 0, 4),
            "auroc_5_minus_raw_score": round(auroc(-raw, y) or 0, 4),
            "auroc_5_minus_score_without_knowledge": round(auroc(-bare, y) or 0, 4),
            "auroc_1_minus_p_none": round(auroc(-p_none, y) or 0, 4), "auroc_by_run_5_minus_score": per_run}


def t5_without_t5(sp: Splits, cfg: HeadConfig) -> dict[str, Any]:
    """T5 AUROC of a head that never saw a T5 row (synthetic + acceptability train only)."""
    head = _fit([it for its in sp.syn_train.values() for it in its] + sp.real_train(), cfg)
    probs, s = predict(head, sp.t5)
    y = np.array([it.extra["flawed"] for it in sp.t5])
    return {"auroc_5_minus_score": round(auroc(-s, y) or 0, 4),
            "auroc_1_minus_p_none": round(auroc(-probs[:, NONE_I], y) or 0, 4)}


def acceptability(head: CheckHead, sp: Splits) -> dict[str, Any]:
    out = {}
    for name in ("acc_cqa", "acc_snli"):
        dev = [it for it in sp.acc_dev if it.source == name]
        if not dev:
            continue
        _, s = predict(head, dev)
        acc = [it.extra["acceptable"] for it in dev]
        nll = np.array([it.extra["neg_nll"] for it in dev])
        ok = ~np.isnan(nll)
        out[name] = {"n_explanations": len(dev), "n_instances": len({it.group for it in dev}),
                     "spearman_checks_score": _r(spearman(s, acc)),
                     "spearman_checks_raw_score": _r(spearman(predict(head, dev, raw=True)[1], acc)),
                     "spearman_gpt3_neg_nll": _r(spearman(nll[ok], np.array(acc)[ok])), "n_with_nll": int(ok.sum())}
    return out


def fine_grained(head: CheckHead, sp: Splits) -> dict[str, Any]:
    """Spearman of the score with the fine-grained dev judgements (accepting share, factual share)."""
    out = {}
    for name in ("fg_cose", "fg_ecqa", "fg_esnli"):
        dev = [it for it in sp.fg_dev if it.source == name]
        if not dev:
            continue
        _, s = predict(head, dev)
        row = {"n": len(dev)}
        for attr in ("acceptable", "factual", "supports"):
            v = np.array([it.extra[attr] for it in dev])
            ok = ~np.isnan(v)
            row[f"spearman_{attr}"] = _r(spearman(s[ok], v[ok])) if ok.sum() > 2 else None
        out[name] = row
    return out


def none_detection(head: CheckHead, sp: Splits) -> dict[str, Any]:
    """On human-judged dev rows (acceptability, fine-grained; never trained on): does the dimension say
    `none` for explanations most annotators accept (share >= NONE_ACCEPTED) and a flaw for those most
    reject (<= NONE_REJECTED)? AUROC of P(none) for "accepted" over all rows, and the share predicted
    `none` in each group."""
    from critique.head import NONE_ACCEPTED, NONE_REJECTED

    out = {}
    for name, items in (("acc_dev", [it for it in sp.acc_dev if it.source.startswith("acc_")]),
                        ("acc_dev_answered", [it for it in sp.acc_dev if it.source.startswith("accans_")]),
                        ("fg_dev", list(sp.fg_dev))):
        if not items:
            continue
        probs, _ = predict(head, items)
        share = np.array([it.extra.get("acceptable", it.score / 5.0) for it in items], float)
        yes, no = share >= NONE_ACCEPTED - 1e-9, share <= NONE_REJECTED + 1e-9
        pred = probs.argmax(1) == NONE_I
        out[name] = {"n": len(items), "n_accepted": int(yes.sum()), "n_rejected": int(no.sum()),
                     "auroc_p_none_accepted": _r(auroc(probs[:, NONE_I], yes.astype(int))),
                     "none_share_accepted": _r(float(pred[yes].mean())) if yes.any() else None,
                     "none_share_rejected": _r(float(pred[no].mean())) if no.any() else None}
    return out


def robustness(head: CheckHead, items: Sequence[Item]) -> dict[str, Any]:
    if not items:
        return {}
    probs, _ = predict(head, items)
    pred = probs.argmax(1)
    groups: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.extra["robust_group"], []).append(int(pred[i]))
    same = [len(set(v)) == 1 for v in groups.values()]
    pair = [np.mean([x == v[0] for x in v[1:]]) for v in groups.values()]
    major = [max(v.count(x) for x in v) / len(v) for v in groups.values()]
    return {"groups": len(groups), "all_five_same": round(float(np.mean(same)), 4),
            "renderings_with_group_majority": round(float(np.mean(major)), 4),
            "agree_with_first_rendering": round(float(np.mean(pair)), 4),
            "macro_f1_over_renderings": round(macro_f1([it.dim for it in items], pred), 4)}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def final_train_set(sp: Splits) -> list[Item]:
    """What the shipped head trains on: all recipes' train-tree items, the acceptability train part
    and every T5 row (T5 numbers are therefore reported cross-validated)."""
    return [it for its in sp.syn_train.values() for it in its] + sp.real_train() + sp.t5


def measure(sp: Splits, cfg: HeadConfig) -> dict[str, Any]:
    """Every selection check for one head config: LORO, T5 CV, and (for the head trained on the final
    training set) acceptability dev, fine-grained dev and robustness; plus the selection value."""
    lo = loro(sp, cfg)
    t5 = t5_cv(sp, cfg)
    head = _fit(final_train_set(sp), cfg)
    acc = acceptability(head, sp)
    sp_mean = float(np.mean([v["spearman_checks_score"] or 0 for v in acc.values()])) if acc else 0.0
    return {"loro": lo, "t5_cv": t5, "acceptability": acc, "fine_grained": fine_grained(head, sp),
            "none_detection": none_detection(head, sp), "robustness": robustness(head, sp.robust),
            "selection_value": round(float(np.mean([_loro_value(lo), t5["auroc_5_minus_score"], sp_mean])), 4)}


def _loro_value(lo: dict[str, Any]) -> float:
    """LORO's part of the selection value: the mean of the full-tree mean and each variant's mean
    (`checks_data.VARIANTS`) that has dev rows (real outputs come short and long, checked against
    knowledge that may not hold their sentences)."""
    vals = [lo["mean_macro_f1"] or 0.0] + [lo[f"mean_macro_f1_{v}"] for v in VARIANTS if f"mean_macro_f1_{v}" in lo]
    return float(np.mean(vals))


# Real-label score sources only: synthetic scores (a recipe's convention) hurt the T5 and acceptability
# checks (measured: runs/ notes in the model card); dimensions from recipes and T5 only (the
# fine-grained attribute -> dimension priors lowered LORO).
_REAL = {"syn": 0.0, "acc": 1.0, "t5": 1.0, "fg": 1.0}
# Head v8: every point also learns `none` vs "a flaw" from the acceptability train rows
# (HeadConfig.none_from_acceptability; weight 1.0 and 3.0 were compared on the dev rows, model card).
_NONE_W = 1.0
GRID = tuple(replace(c, none_from_acceptability=_NONE_W) for c in (
    HeadConfig(hidden=0, weight_decay=1e-3, epochs=200, score_weight=_REAL, dim_sources=("syn", "t5")),
    HeadConfig(hidden=16, weight_decay=1e-2, epochs=200, score_weight=_REAL, dim_sources=("syn", "t5")),
    HeadConfig(hidden=32, weight_decay=1e-2, epochs=400, score_weight=_REAL, dim_sources=("syn", "t5")),
    HeadConfig(hidden=0, weight_decay=1e-3, epochs=200, score_weight={**_REAL, "fg": 0.0}, dim_sources=("syn", "t5")),
    # head v5: the same dimension net as the point above, a more regularised score net (its inputs
    # grew by the explanation-kind features, `critique.checks.EXTRA_FEATURES`)
    HeadConfig(hidden=0, weight_decay=1e-3, epochs=200, score_weight={**_REAL, "fg": 0.0}, dim_sources=("syn", "t5"),
               score_weight_decay=1e-2)))


def config_summary(cfg: HeadConfig) -> dict[str, Any]:
    return {"hidden": cfg.hidden, "weight_decay": cfg.weight_decay, "score_weight_decay": cfg.score_weight_decay,
            "epochs": cfg.epochs, "score_weight": dict(cfg.score_weight), "dim_sources": list(cfg.dim_sources),
            "extra_features": list(cfg.extra_features), "extra_in_dim": cfg.extra_in_dim,
            "none_from_acceptability": cfg.none_from_acceptability}


def select(sp: Splits, grid: Sequence[HeadConfig] = GRID) -> tuple[int, list[dict[str, Any]]]:
    """(index of the grid point with the best selection value, every point's measurements): the mean of
    LORO macro-F1, T5 CV AUROC and mean acceptability dev Spearman; nothing else is looked at."""
    rows = [{"config": config_summary(cfg), **measure(sp, cfg)} for cfg in grid]
    best = max(range(len(grid)), key=lambda i: rows[i]["selection_value"])
    return best, rows


def with_seed(cfg: HeadConfig, seed: int) -> HeadConfig:
    return replace(cfg, seed=seed)


def train_shipped(sets: dict[str, list[Item]], fast_sets: dict[str, list[Item]], seed: int = 0, folds: int = 5,
                  do_select: bool = True, extra_features: tuple[str, ...] = (), extra_in_dim: bool = False
                  ) -> tuple[CheckHead, dict[str, Any]]:
    """The head that ships and its measurements: for the full checks (`sets`) and for fast mode's
    lexical checks (`fast_sets`, `critique.checks_data.lexical_sets`) separately, the GRID point chosen
    by `select` (or GRID[0]), trained on `final_train_set`; the fast part goes into `head.fast`.
    `extra_features` (full part only): e.g. (ACC_FEATURE,), which every full item must carry
    (`critique.checks_data.attach_acceptability`)."""
    report: dict[str, Any] = {}
    parts = []
    for mode, s in (("full", sets), ("fast", fast_sets)):
        sp = make_splits(s, seed=seed, folds=folds)
        grid = [replace(c, extra_features=extra_features if mode == "full" else (), extra_in_dim=extra_in_dim)
                for c in GRID]
        if do_select:
            best, rows = select(sp, grid)
        else:
            best, rows = 0, [{"config": config_summary(grid[0]), **measure(sp, grid[0])}]
        report[mode] = {"chosen": rows[best if do_select else 0], "grid": rows}
        parts.append(fit_head(final_train_set(sp), grid[best]))
        if mode == "full":
            full_sp, full_cfg = sp, grid[best]
    head, head.fast = parts
    if any("lm" in it.extra for it in full_sp.t5) and any("lm" in it.extra for it in full_sp.acc_dev):
        from critique.head import fit_lm_offset

        w, rows = lm_select(full_sp, full_cfg)
        stats = np.stack([it.extra["lm"] for its in (full_sp.t5, full_sp.acc_train, full_sp.acc_dev)
                          for it in its if "lm" in it.extra])
        fit_lm_offset(head, stats, w)
        report["lm"] = {"chosen_weight": w, "grid": rows}
    head.meta.update({"trained_on": "syn_*_train and short_*_train (all recipes, EntailmentBank train trees, full "
                                    "and cut to their final step), acceptability and "
                                    "fine-grained train parts (dev parts kept apart), all T5-11B dev rows "
                                    "(T5 numbers are CV)", "sets": {k: len(v) for k, v in sets.items()},
                      "chosen_full": report["full"]["chosen"]["config"], "chosen_fast": report["fast"]["chosen"]["config"]})
    return head, report


LM_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0)


def lm_select(sp: Splits, cfg: HeadConfig, weights: Sequence[float] = LM_WEIGHTS) -> tuple[float, list[dict[str, Any]]]:
    """The likelihood part's weight chosen by the selection checks (items with extra['lm'] only): T5 CV
    AUROC and acceptability dev Spearman of the combined score, next to -lm_nll_mean alone on the same
    rows. The spread of the features comes from every row that has them (no labels used)."""
    from critique.checks_data import LM_FEATURES
    from critique.head import fit_lm_offset

    mean_i = LM_FEATURES.index("lm_nll_mean")
    stats = np.stack([it.extra["lm"] for its in (sp.t5, sp.acc_train, sp.acc_dev) for it in its if "lm" in it.extra])
    t5 = [it for it in sp.t5 if "lm" in it.extra]
    y = np.array([it.extra["flawed"] for it in t5])
    n_folds = max(sp.t5_folds.values()) + 1
    base = [it for its in sp.syn_train.values() for it in its] + sp.real_train()
    fold_heads = [_fit(base + [it for it in sp.t5 if sp.t5_folds[it.group] != k], cfg) for k in range(n_folds)]
    final = _fit(final_train_set(sp), cfg)
    rows = []
    for w in weights:
        score = np.zeros(len(t5))
        for k in range(n_folds):
            test = [i for i, it in enumerate(t5) if sp.t5_folds[it.group] == k]
            head = fit_lm_offset(fold_heads[k], stats, w)
            if test:
                g = np.stack([head.features(t5[i].checks) for i in test])
                score[test] = levels(head, g, head.score_lm(g, np.stack([t5[i].extra["lm"] for i in test])))
        row: dict[str, Any] = {"weight": w, "t5_cv_n": len(t5), "t5_cv_auroc": _r(auroc(-score, y)),
                               "t5_auroc_lm_nll_mean_alone": _r(auroc(np.array([it.extra["lm"][mean_i] for it in t5]), y))}
        head = fit_lm_offset(final, stats, w)
        for name in ("acc_cqa", "acc_snli"):
            dev = [it for it in sp.acc_dev if it.source == name and "lm" in it.extra]
            if dev:
                g = np.stack([head.features(it.checks) for it in dev])
                acc = [it.extra["acceptable"] for it in dev]
                nll = np.array([it.extra["neg_nll"] for it in dev])
                ok = ~np.isnan(nll)
                s = levels(head, g, head.score_lm(g, np.stack([it.extra["lm"] for it in dev])))
                row[name] = {"n": len(dev), "spearman": _r(spearman(s, acc)),
                             "spearman_neg_lm_nll_mean_alone": _r(spearman(-np.array([it.extra["lm"][mean_i] for it in dev]), acc)),
                             "spearman_gpt3_neg_nll": _r(spearman(nll[ok], np.array(acc)[ok]))}
        accs = [row[n]["spearman"] or 0 for n in ("acc_cqa", "acc_snli") if n in row]
        row["value_t5_acc"] = round(float(np.mean([row["t5_cv_auroc"] or 0, float(np.mean(accs)) if accs else 0])), 4)
        rows.append(row)
    best = max(rows, key=lambda r: r["value_t5_acc"])
    return best["weight"], rows
