"""Critique benchmark (issue 12): the checks critic and the old classifier on data neither trained nor
selected on, each number with its exact split.

    PYTHONPATH=. HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/critique_bench.py [--threads 2]
        [--n-speed 60] [--skip-old] [--head critique/weights/checks/head.json]

Reads the cached check features of `critique.checks_data` (runs/checks_feats; computed on first use)
and measures:
(a) leave-one-recipe-out dimension macro-F1: train the head on every flaw recipe's EntailmentBank
    train-tree examples but one (+ the real-label training rows), test on the left-out recipe's
    dev-tree examples (synthetic labels);
(b) T5-11B dev proofs (tasks 1 and 2): AUROC of 5 - score for "flawed" (leaf set or steps differ from
    gold), 5-fold cross-validated by dev item; and for a head that never saw a T5 row;
(c) acceptability: Spearman of the score with the acceptable share on the seeded instance-level dev
    split of the acceptability train CSVs (never trained on), GPT-3 -NLL on the same rows;
(d) rendering robustness: eb_alt drafts of dev trees, each in five renderings: share of drafts whose
    five renderings get one dimension;
(e) speed, critiques/s: checks full (WorldTree corpus as knowledge), checks --fast, and the old
    classifier, on the same T5-11B task-1 dev explanations in the same run.
The old classifier (critique/weights/critic) is measured on the same rows for (a)-(d).
Writes bench/results/critique_bench.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "cuda": torch.cuda.is_available(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in load] if load else None,
            "note": "2-core VM shared with other jobs (6 other helpers) during this run"}


def old_classifier(sp: Any, sets: dict[str, Any]) -> dict[str, Any]:
    """The shipped classifier on the same evaluation rows (it was trained on eb_v1 train trees)."""
    from critique.checks_eval import NONE_I, macro_f1
    from critique.evaluate import auroc, critic_signals, spearman
    from critique.model import load_critic
    from critique.taxonomy import LABEL_INDEX

    critic = load_critic(None)
    out: dict[str, Any] = {}

    def recs(items: list[Any]) -> list[Any]:
        return [it.extra["record"] for it in items]

    for recipe, items in sp.syn_dev.items():
        pred = [LABEL_INDEX[c.dimension] for c in critic.predict(recs(items))]
        out[f"macro_f1_{recipe}_dev"] = round(macro_f1([it.dim for it in items], pred), 4)
    if sp.robust:
        pred = [LABEL_INDEX[c.dimension] for c in critic.predict(recs(sp.robust))]
        groups: dict[int, set[int]] = {}
        for it, p in zip(sp.robust, pred):
            groups.setdefault(it.extra["robust_group"], set()).add(p)
        out["robust_all_five_same"] = round(float(np.mean([len(v) == 1 for v in groups.values()])), 4)
        out["robust_majority"] = _robust_majority(sp.robust, pred)
    sig = critic_signals(critic, recs(sp.t5))
    y = [it.extra["flawed"] for it in sp.t5]
    out["t5_auroc_5_minus_score"] = round(auroc(5 - sig.score, y) or 0, 4)
    out["t5_auroc_5_minus_expected_score"] = round(auroc(5 - sig.expected_score, y) or 0, 4)
    for name in ("acc_cqa", "acc_snli"):
        dev = [it for it in sp.acc_dev if it.source == name]
        s = critic_signals(critic, recs(dev))
        out[f"{name}_dev_spearman_expected_score"] = round(
            spearman(s.expected_score, [it.extra["acceptable"] for it in dev]) or 0, 4)
    del NONE_I
    return out


def speed(n: int, head_path: str | None, data_dir: str | None, skip_old: bool) -> dict[str, Any]:
    from critique.checks import Checker, ChecksConfig
    from critique.checks_data import DataConfig, _corpus_table
    from critique.evaluate import t5_items
    from critique.head import CheckHead, ChecksCritic

    records = [it.record for it in t5_items(1, "T5_11B", data_dir)][:n]
    head = CheckHead.load(head_path)
    out: dict[str, Any] = {"n": len(records), "inputs": "T5-11B task-1 dev explanations (first n)"}
    warm = Checker()
    table = _corpus_table(DataConfig(data_dir=data_dir), warm)   # corpus vectors cached: not timed
    for mode, cfg, know in (("checks_full", ChecksConfig(), table), ("checks_fast", ChecksConfig(fast=True), None)):
        critic = ChecksCritic(head, Checker(warm.scorer, warm.encoder, know, cfg))
        critic.predict(records[:4])          # warm-up (model loads), then a fresh text cache
        critic.checker._vec_cache.clear()
        t0 = time.perf_counter()
        critic.predict(records)
        out[mode] = round(len(records) / (time.perf_counter() - t0), 2)
    if not skip_old:
        from critique.model import load_critic

        old = load_critic(None)
        old.predict(records[:4], batch_size=4)
        t0 = time.perf_counter()
        old.predict(records, batch_size=32)
        out["old_classifier"] = round(len(records) / (time.perf_counter() - t0), 2)
    return out


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    L = ["# Critique benchmark: the checks critic (issue 12)", "",
         f"Command: `{res['command']}`; {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
         f"load average at start {m['load_average_at_start']} ({m['note']}). Head: `{res['head']}` "
         f"(config {res.get('head_config')}).", ""]
    lo = res["loro"]
    L += ["## (a) Leave-one-recipe-out dimension macro-F1 (synthetic labels; test = left-out recipe on dev trees)",
          "", "| left out | n | checks head | checks head, synthetic only | old classifier |", "|---|---|---|---|---|"]
    for r, v in lo["with_real"].items():
        if r == "mean_macro_f1":
            continue
        L.append(f"| {r} | {v['n']} | {v['macro_f1']} | {lo.get('synthetic_only', {}).get(r, {}).get('macro_f1', 'not run')} | "
                 f"{res.get('old', {}).get(f'macro_f1_{r}_dev', 'n/a')} |")
    L += [f"| mean | | **{lo['with_real']['mean_macro_f1']}** | {lo.get('synthetic_only', {}).get('mean_macro_f1', 'not run')} | |", "",
          "Per dimension F1 (left-out recipe): " + "; ".join(
              f"{r}: " + ", ".join(f"{k} {x}" for k, x in v["per_dimension_f1"].items())
              for r, v in lo["with_real"].items() if r != "mean_macro_f1"), ""]
    t5 = res["t5"]
    L += ["## (b) T5-11B dev proofs (tasks 1+2): AUROC of flawed", "",
          f"n = {t5['cv']['n']} ({t5['cv']['n_flawed']} flawed). {t5['cv']['folds']}-fold CV by dev item: 5 - score "
          f"**{t5['cv']['auroc_5_minus_score']}**, 1 - P(none) {t5['cv']['auroc_1_minus_p_none']}; by run "
          f"{t5['cv']['auroc_by_run_5_minus_score']}. Head never trained on T5: 5 - score "
          f"{t5.get('no_t5', {}).get('auroc_5_minus_score', 'not run')}. Old classifier on the same rows: 5 - score "
          f"{res.get('old', {}).get('t5_auroc_5_minus_score', 'n/a')}, 5 - expected score "
          f"{res.get('old', {}).get('t5_auroc_5_minus_expected_score', 'n/a')}.", ""]
    L += ["## (c) Acceptability dev split (seeded, by instance; never trained on)", "",
          "| file | explanations (instances) | checks score | GPT-3 -NLL | old classifier (expected score) |",
          "|---|---|---|---|---|"]
    for name, v in res["acceptability"].items():
        L.append(f"| {name} | {v['n_explanations']} ({v['n_instances']}) | **{v['spearman_checks_score']}** | "
                 f"{v['spearman_gpt3_neg_nll']} | {res.get('old', {}).get(f'{name}_dev_spearman_expected_score', 'n/a')} |")
    rb = res["robustness"]
    L += ["", "## (d) Rendering robustness (eb_alt drafts of dev trees, five renderings each)", "",
          f"Groups: {rb.get('groups')}. Renderings that get their group's majority dimension: "
          f"**{rb.get('renderings_with_group_majority')}** (fast mode "
          f"{res.get('robustness_fast', {}).get('renderings_with_group_majority')}); groups whose five renderings "
          f"all get one dimension: {rb.get('all_five_same')} (fast mode "
          f"{res.get('robustness_fast', {}).get('all_five_same')}); agreement with the first rendering "
          f"{rb.get('agree_with_first_rendering')}. Old classifier: all-five-same "
          f"{res.get('old', {}).get('robust_all_five_same', 'n/a')}, majority "
          f"{res.get('old', {}).get('robust_majority', 'n/a')}.", ""]
    sp = res.get("speed", {})
    L += ["## (e) Speed (critiques/s, same run, same inputs)", "",
          f"{sp.get('inputs')}, n = {sp.get('n')}: checks full (WorldTree corpus as knowledge) "
          f"**{sp.get('checks_full')}**, checks --fast **{sp.get('checks_fast')}**, old classifier "
          f"{sp.get('old_classifier', 'n/a')}. Shared, heavily loaded 2-core VM: see the load average above.", ""]
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", default=None, help="checks head.json (default: the shipped one)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-speed", type=int, default=60)
    ap.add_argument("--skip-old", action="store_true", help="do not run the old classifier on (a)-(d)")
    ap.add_argument("--folds", type=int, default=5, help="T5 cross-validation folds")
    ap.add_argument("--ablations", action="store_true", help="also: LORO without real rows, T5 without T5 rows")
    ap.add_argument("--save-head", default=None, help="write the final head here (what ships)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "critique_bench"))
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from critique.checks_data import DataConfig, load_sets
    from critique.checks_eval import (acceptability, final_train_set, loro, make_splits, predict, robustness,
                                      t5_cv, t5_without_t5)
    from critique.head import CheckHead, HeadConfig, fit_head

    res: dict[str, Any] = {"command": "python bench/critique_bench.py " + " ".join(sys.argv[1:]),
                           "machine": machine(a.threads), "head": a.head or "critique/weights/checks/head.json"}
    sets = load_sets(cfg=DataConfig(data_dir=a.data))
    sp = make_splits(sets, folds=a.folds)
    cfg = HeadConfig()
    res["head_config"] = {"hidden": cfg.hidden, "weight_decay": cfg.weight_decay, "epochs": cfg.epochs}
    res["sets"] = {k: len(v) for k, v in sets.items()}
    res["loro"] = {"with_real": loro(sp, cfg)}
    if a.ablations:
        res["loro"]["synthetic_only"] = loro(sp, cfg, use_real=False)
    res["t5"] = {"cv": t5_cv(sp, cfg)}
    if a.ablations:
        res["t5"]["no_t5"] = t5_without_t5(sp, cfg)
    head = fit_head(final_train_set(sp), cfg)   # the shipped head: this training set and config
    if a.save_head:
        head.meta.update({"sets": res["sets"], "acc_train": len(sp.acc_train), "acc_dev": len(sp.acc_dev),
                          "trained_on": "syn_*_train (both recipes), acceptability train part, all T5-11B dev rows"})
        head.save(a.save_head)
    res["acceptability"] = acceptability(head, sp)
    res["robustness"] = robustness(head, sp.robust)
    fast_probs, _ = predict(head, sp.robust, knowledge=False)
    res["robustness_fast"] = {**_robust_from(sp.robust, fast_probs.argmax(1)),
                              "renderings_with_group_majority": _robust_majority(sp.robust, fast_probs.argmax(1))}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    if not a.skip_old:
        from critique.checks_data import attach_records

        attach_records(sets, a.data)
        res["old"] = old_classifier(sp, sets)
    res["speed"] = speed(a.n_speed, a.save_head or a.head, a.data, False)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(res) + "\n")
    print(markdown(res))


def _robust_from(items: list[Any], pred: np.ndarray) -> dict[str, Any]:
    groups: dict[int, set[int]] = {}
    for it, p in zip(items, pred):
        groups.setdefault(it.extra["robust_group"], set()).add(int(p))
    return {"all_five_same": round(float(np.mean([len(v) == 1 for v in groups.values()])), 4) if groups else None}


def _robust_majority(items: list[Any], pred: Any) -> float | None:
    groups: dict[int, list[int]] = {}
    for it, p in zip(items, pred):
        groups.setdefault(it.extra["robust_group"], []).append(int(p))
    return round(float(np.mean([max(v.count(x) for x in v) / len(v) for v in groups.values()])), 4) if groups else None


if __name__ == "__main__":
    main()
