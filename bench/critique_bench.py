"""Critique benchmark (issue 12): the checks critic (full and --fast) and the old classifier on data
neither trained on, each number with its exact split; trains and (with --save-head) writes the head.

    PYTHONPATH=. HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/critique_bench.py [--threads 2]
        [--folds 3] [--n-speed 60] [--skip-old] [--no-select] [--save-head critique/weights/checks/head.json]
        [--acceptability [--acceptability-in-dim] [--by-kind]]

Reads the cached check features of `critique.checks_data` (runs/checks_feats; computed on first use),
computes fast mode's lexical checks of the same rows, and for each mode (full, fast) selects the head
config from `critique.checks_eval.GRID` by the selection checks only, then reports for the chosen one:
(a) leave-one-recipe-out dimension macro-F1: train on every flaw recipe's EntailmentBank train-tree
    examples but one (+ the real-label training rows), test on the left-out recipe's dev-tree
    examples (synthetic labels); three recipes (eb_v1, eb_alt, eb_prose);
(b) T5-11B dev proofs (tasks 1 and 2): AUROC of 5 - score for "flawed" (leaf set or steps differ from
    gold), k-fold cross-validated by dev item;
(c) acceptability: Spearman of the score with the acceptable share on the seeded instance-level dev
    split of the acceptability train CSVs (never trained on), GPT-3 -NLL on the same rows; and on the
    seeded dev split of the fine-grained judgements;
(d) rendering robustness: eb_alt drafts of dev trees, each in five renderings;
(e) speed, critiques/s: checks full (WorldTree corpus as knowledge), checks --fast (lexical), and the
    old classifier, on the same T5-11B task-1 dev explanations in the same run;
(f) with --demo: dimension accuracy on the 20 hand-labelled demo outputs (never trained or selected on);
--by-kind (head v5): the score net also reads the explanation's kind (free text vs proof with an answer
sentence) and the regressor's output on free text (`critique.checks.EXTRA_FEATURES`).
(g) with --evidence-ablation N: the chosen full config with and without the text evidence features
    (`critique.checks.evidence`, head v4; "without" = those columns zeroed, the input width unchanged),
    each over N training seeds: LORO, T5 CV AUROC, acceptability dev, robustness (mean and spread).
The selection and the reported numbers use the same held-out rows (the grid is 5 points): read them
as slightly optimistic. Writes bench/results/critique_bench.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402


def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu = cpu_name()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "cuda": torch.cuda.is_available(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in load] if load else None,
            "note": "2-core VM; other jobs of the session may share it (see the load average)"}


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
    for mode in ("checks_full", "checks_fast"):
        full = mode == "checks_full"
        checker = Checker(warm.scorer, warm.encoder, table, ChecksConfig()) if full else \
            Checker(config=ChecksConfig(fast=True))
        critic = ChecksCritic(head, checker)
        critic.predict(records[:4])          # warm-up (model loads), then a fresh text cache
        critic.checker._vec_cache.clear()
        t0 = time.perf_counter()
        critic.predict(records)
        out[mode] = round(len(records) / (time.perf_counter() - t0), 2)
    if head.lm is not None:   # full + likelihood on the first 10 (fresh LM cache: the real cost)
        critic = ChecksCritic(head, Checker(warm.scorer, warm.encoder, table, ChecksConfig(lm=True)))
        critic.predict(records[:2])
        critic._lm_scorer.cache.data.clear()
        critic.checker._vec_cache.clear()
        t0 = time.perf_counter()
        critic.predict(records[:10])
        out["checks_full_lm"] = round(10 / (time.perf_counter() - t0), 2)
    if not skip_old:
        from critique.model import load_critic

        old = load_critic(None)
        old.predict(records[:4], batch_size=4)
        t0 = time.perf_counter()
        old.predict(records, batch_size=32)
        out["old_classifier"] = round(len(records) / (time.perf_counter() - t0), 2)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return out


def demo20(head_path: str | None) -> dict[str, Any]:
    """Dimension accuracy on the 20 hand-labelled demo outputs (corpora/model_outputs.jsonl), checks
    full (no knowledge given, as `critique run` without --microtheory), checks --fast."""
    from critique.checks import Checker, ChecksConfig
    from critique.head import CheckHead, ChecksCritic
    from critique.inputs import ModelOutput

    rows = [json.loads(x) for x in (ROOT / "corpora" / "model_outputs.jsonl").read_text().splitlines() if x.strip()]
    recs = [ModelOutput(r["id"], r["question"], r["options"], r["answer_key"], r["explanation"], r["predicted_answer"])
            for r in rows]
    head = CheckHead.load(head_path)
    out: dict[str, Any] = {"n": len(rows)}
    for mode, cfg in (("checks_full", ChecksConfig()), ("checks_fast", ChecksConfig(fast=True))):
        dims = [c.dimension for c in ChecksCritic(head, Checker(config=cfg)).predict(recs)]
        out[mode] = {"correct": sum(d == r["expected_dimension"] for d, r in zip(dims, rows)),
                     "predicted": dict(sorted(Counter(dims).items()))}
    return out


def _zero_evidence(sets: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The same items with the text evidence features zeroed (what the head had before v4)."""
    import copy

    from critique.checks import BASE_GLOBAL_FEATURES, BASE_UNIT_FEATURES, RecordChecks

    out: dict[str, list[Any]] = {}
    for name, items in sets.items():
        out[name] = []
        for it in items:
            c, new = it.checks, copy.copy(it)
            g, u = c.g.copy(), c.u.copy()
            g[len(BASE_GLOBAL_FEATURES):] = 0.0
            u[:, len(BASE_UNIT_FEATURES):] = 0.0
            new.checks = RecordChecks(c.units, g, u, c.near_fact, c.supported_option, c.acceptability)
            out[name].append(new)
    return out


def evidence_ablation(sets: dict[str, list[Any]], cfg: Any, seeds: int, folds: int) -> dict[str, Any]:
    """(g): the full config `cfg` with and without the evidence features, `seeds` training seeds each."""
    from critique.checks_eval import make_splits, measure

    out: dict[str, Any] = {"seeds": seeds, "config": str(cfg)}
    for variant, s in (("without", _zero_evidence(sets)), ("with", sets)):
        sp = make_splits(s, folds=folds)
        rows, per_dim = [], {}
        for seed in range(seeds):
            m = measure(sp, replace(cfg, seed=seed))
            acc = m["acceptability"]
            for r in sp.syn_dev:
                for dim, f1 in m["loro"][r]["per_dimension_f1"].items():
                    per_dim.setdefault(dim, []).append(f1)
            rows.append([m["loro"]["mean_macro_f1"], *(m["loro"][r]["macro_f1"] for r in sorted(sp.syn_dev)),
                         m["t5_cv"]["auroc_5_minus_score"], acc["acc_cqa"]["spearman_checks_score"],
                         acc["acc_snli"]["spearman_checks_score"], m["robustness"]["renderings_with_group_majority"],
                         m["selection_value"]])
        keys = ["loro", *(f"loro_{r}" for r in sorted(sp.syn_dev)), "t5_cv_auroc", "cqa_dev", "snli_dev",
                "robust_majority", "selection_value"]
        arr = np.array(rows, float)
        out[variant] = {k: {"mean": round(float(arr[:, j].mean()), 4), "sd": round(float(arr[:, j].std()), 4),
                            "seed0": round(float(arr[0, j]), 4)} for j, k in enumerate(keys)}
        out[variant]["loro_per_dimension_f1_mean"] = {d: round(float(np.mean(v)), 4) for d, v in per_dim.items()}
    return out


def _ablation_md(ab: dict[str, Any]) -> list[str]:
    L = [f"## (g) Text evidence features (head v4) on and off, chosen full config, {ab['seeds']} training seeds", "",
         "| check | without (zeroed) mean +- sd | with mean +- sd | seed 0 without / with |", "|---|---|---|---|"]
    for k, w in ab["without"].items():
        if k == "loro_per_dimension_f1_mean":
            continue
        v = ab["with"][k]
        L.append(f"| {k} | {w['mean']} +- {w['sd']} | **{v['mean']}** +- {v['sd']} | {w['seed0']} / {v['seed0']} |")
    w, v = ab["without"]["loro_per_dimension_f1_mean"], ab["with"]["loro_per_dimension_f1_mean"]
    return L + ["", "LORO F1 per dimension (mean over the left-out recipes and seeds), without -> with: "
                + ", ".join(f"{d} {w[d]} -> {v[d]}" for d in w), ""]


def _mode_md(name: str, r: dict[str, Any], old: dict[str, Any]) -> list[str]:
    c = r["chosen"]
    lo, t5, acc, rb = c["loro"], c["t5_cv"], c["acceptability"], c["robustness"]
    L = [f"## {name}: chosen config {c['config']} (selection value {c['selection_value']})", "",
         "Grid (selection value = mean of LORO macro-F1 (the mean of the full-tree, short-tree and without-own-facts means), T5 CV AUROC, mean acceptability dev Spearman):", "",
         "| config | LORO mean (full trees / short trees / without own facts) | T5 CV AUROC | CQA dev | SNLI dev | value |",
         "|---|---|---|---|---|---|"]
    for g in r["grid"]:
        a = g["acceptability"]
        swd = g["config"].get("score_weight_decay")
        L.append(f"| {g['config']['hidden']} hidden, wd {g['config']['weight_decay']}"
                 f"{f' (score net {swd})' if swd is not None else ''}, score sources "
                 f"{ {k: v for k, v in g['config']['score_weight'].items() if v} } | {g['loro']['mean_macro_f1']} / "
                 f"{g['loro'].get('mean_macro_f1_short', 'n/a')} / {g['loro'].get('mean_macro_f1_nofacts', 'n/a')} | "
                 f"{g['t5_cv']['auroc_5_minus_score']} | {a.get('acc_cqa', {}).get('spearman_checks_score')} | "
                 f"{a.get('acc_snli', {}).get('spearman_checks_score')} | {g['selection_value']} |")
    L += ["", "(a) Leave-one-recipe-out dimension macro-F1 (synthetic labels; test = left-out recipe on dev trees; "
          "short: the left-out recipe on other dev trees cut to their final step; nofacts: the full-tree dev rows "
          "checked against the corpus without their trees' own facts):", "",
          "| left out | n | macro-F1 | n short | macro-F1 short | macro-F1 nofacts | old classifier |",
          "|---|---|---|---|---|---|---|"]
    for rec, v in lo.items():
        if isinstance(v, dict):
            L.append(f"| {rec} | {v['n']} | {v['macro_f1']} | {v.get('n_short', 'n/a')} | {v.get('macro_f1_short', 'n/a')} "
                     f"| {v.get('macro_f1_nofacts', 'n/a')} | {old.get(f'macro_f1_{rec}_dev', 'n/a')} |")
    L += [f"| mean | | **{lo['mean_macro_f1']}** (checked without knowledge, as `critique run` without "
          f"--microtheory: {lo.get('mean_macro_f1_without_knowledge', 'n/a')}) | | **{lo.get('mean_macro_f1_short', 'n/a')}** "
          f"| **{lo.get('mean_macro_f1_nofacts', 'n/a')}** | |", "", "Per dimension F1: " + "; ".join(
        f"{rec}: " + ", ".join(f"{k} {x}" for k, x in v["per_dimension_f1"].items())
        for rec, v in lo.items() if isinstance(v, dict)), ""]
    for var in ("short", "nofacts"):
        L += [f"Per dimension F1, {var}: " + "; ".join(
            f"{rec}: " + ", ".join(f"{k} {x}" for k, x in v.get(f"per_dimension_f1_{var}", {}).items())
            for rec, v in lo.items() if isinstance(v, dict)), ""]
    L += [
          f"(b) T5-11B dev proofs, n = {t5['n']} ({t5['n_flawed']} flawed), {t5['folds']}-fold CV by dev item: "
          f"AUROC 5 - score **{t5['auroc_5_minus_score']}** (the integer score critiques carry; raw score "
          f"{t5.get('auroc_5_minus_raw_score', 'n/a')}; checked without knowledge, as `critique run` without "
          f"--microtheory: {t5.get('auroc_5_minus_score_without_knowledge', 'n/a')}), 1 - P(none) "
          f"{t5['auroc_1_minus_p_none']}; by run "
          f"{t5['auroc_by_run_5_minus_score']}. Old classifier: 5 - score {old.get('t5_auroc_5_minus_score', 'n/a')}, "
          f"5 - expected score {old.get('t5_auroc_5_minus_expected_score', 'n/a')}.", "",
          "(c) Acceptability dev split (seeded, by instance; never trained on); checks score = the integer a "
          "critique carries (the score net's raw output in brackets):", "",
          "| file | explanations (instances) | checks score | GPT-3 -NLL | old classifier (expected score) |",
          "|---|---|---|---|---|"]
    for fname, v in acc.items():
        L.append(f"| {fname} | {v['n_explanations']} ({v['n_instances']}) | **{v['spearman_checks_score']}** "
                 f"(raw {v.get('spearman_checks_raw_score', 'n/a')}) | "
                 f"{v['spearman_gpt3_neg_nll']} | {old.get(f'{fname}_dev_spearman_expected_score', 'n/a')} |")
    L += ["", "Fine-grained judgements, seeded dev split (human-written explanations): " + "; ".join(
        f"{k} (n {v['n']}): Spearman with accepting share {v['spearman_acceptable']}, factual share "
        f"{v['spearman_factual']}, supports share {v['spearman_supports']}" for k, v in c["fine_grained"].items()), "",
          "Does the dimension say `none` for explanations most annotators accept (>= 80%) and a flaw for those most "
          "reject (<= 40%)? (dev splits, never trained on): " + "; ".join(
              f"{k} (n {v['n']}, {v['n_accepted']} accepted, {v['n_rejected']} rejected): AUROC of P(none) "
              f"{v['auroc_p_none_accepted']}, predicted `none` for {v['none_share_accepted']} of the accepted and "
              f"{v['none_share_rejected']} of the rejected" for k, v in c.get("none_detection", {}).items()), "",
          f"(d) Rendering robustness, {rb.get('groups')} groups x 5 renderings: renderings with their group's majority "
          f"dimension **{rb.get('renderings_with_group_majority')}**, groups all five the same {rb.get('all_five_same')} "
          f"(old classifier: majority {old.get('robust_majority', 'n/a')}, all five {old.get('robust_all_five_same', 'n/a')}).", ""]
    return L


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    L = ["# Critique benchmark: the checks critic (issue 12)", "",
         f"Command: `{res['command']}`; {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
         f"load average at start {m['load_average_at_start']} ({m['note']}). Head written: `{res['head']}`. "
         f"Sets: {res['sets']}.", ""]
    old = res.get("old", {})
    L += _mode_md("Full checks (default)", res["full"], old)
    L += _mode_md("--fast (lexical checks, no models, no fact checks)", res["fast"], {})
    sp = res.get("speed", {})
    L += ["## (e) Speed (critiques/s, same run, same inputs)", "",
          f"{sp.get('inputs')}, n = {sp.get('n')}: checks full (neural checks + WorldTree corpus as knowledge) "
          f"**{sp.get('checks_full')}**, checks --fast (lexical) **{sp.get('checks_fast')}**, full + likelihood "
          f"(first 10) {sp.get('checks_full_lm', 'n/a')}, old classifier "
          f"{sp.get('old_classifier', 'n/a')}. Load average after: {sp.get('load_average_after')} "
          "(shared 2-core VM: only the ratios within one run compare).", ""]
    if "lm" in res:
        L += [f"## Full checks + likelihood (`lm=True`; SmolLM2-135M -NLL per token added to the score's logit; "
              f"weight chosen {res['lm']['chosen_weight']})", "",
              f"Rows with likelihood features (from the cache): {res.get('lm_rows')}.", "",
              "| weight | T5 CV AUROC (n) | CQA dev Spearman | SNLI dev Spearman | -NLL/token alone CQA / SNLI | GPT-3 -NLL CQA / SNLI |",
              "|---|---|---|---|---|---|"]
        for r in res["lm"]["grid"]:
            c, n = r.get("acc_cqa", {}), r.get("acc_snli", {})
            L.append(f"| {r['weight']} | {r['t5_cv_auroc']} ({r['t5_cv_n']}) | {c.get('spearman')} | {n.get('spearman')} | "
                     f"{c.get('spearman_neg_lm_nll_mean_alone')} / {n.get('spearman_neg_lm_nll_mean_alone')} | "
                     f"{c.get('spearman_gpt3_neg_nll')} / {n.get('spearman_gpt3_neg_nll')} |")
        L.append("")
    if "evidence_ablation" in res:
        L += _ablation_md(res["evidence_ablation"])
    if "demo20" in res:
        d = res["demo20"]
        L += ["## (f) The 20 hand-labelled demo outputs (never trained or selected on)", "",
              f"Dimension right: checks full (no knowledge) {d['checks_full']['correct']}/{d['n']} "
              f"(predicted {d['checks_full']['predicted']}); --fast {d['checks_fast']['correct']}/{d['n']} "
              f"(predicted {d['checks_fast']['predicted']}).", ""]
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--train-trees", type=int, default=None,
                    help="EntailmentBank train trees per flaw recipe (default: DataConfig's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-speed", type=int, default=60)
    ap.add_argument("--skip-old", action="store_true", help="do not run the old classifier")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--demo", action="store_true", help="also the 20 hand-labelled demo outputs (measure once, at the end)")
    ap.add_argument("--folds", type=int, default=5, help="T5 cross-validation folds")
    ap.add_argument("--no-select", action="store_true", help="use GRID[0] instead of selecting")
    ap.add_argument("--save-head", default=None, help="write the trained head here (what ships)")
    ap.add_argument("--lm-cache", default=None, help="likelihood cache (critique.likelihood JSONL): fit and "
                    "measure the likelihood part on the rows it holds")
    ap.add_argument("--acceptability", action="store_true", help="give the full head the acceptability "
                    "regressor's output (critique.acceptability, shipped weights) as one more global feature")
    ap.add_argument("--acceptability-in-dim", action="store_true", help="with --acceptability: the dimension "
                    "net reads the feature too (default: the score net only)")
    ap.add_argument("--by-kind", action="store_true", help="with --acceptability: the score net also reads the "
                    "explanation's kind and the regressor's output on free text (critique.checks.EXTRA_FEATURES)")
    ap.add_argument("--evidence-ablation", type=int, default=0, metavar="N", help="also measure the chosen full "
                    "config with and without the text evidence features over N training seeds (g)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "critique_bench"))
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from critique.checks_data import DataConfig, attach_lm, attach_records, lexical_sets, lm_scorer, load_sets
    from critique.checks_eval import make_splits, train_shipped

    res: dict[str, Any] = {"command": "python bench/critique_bench.py " + " ".join(sys.argv[1:]),
                           "machine": machine(a.threads), "head": a.save_head or "(not saved)"}
    data = DataConfig(data_dir=a.data)
    if a.train_trees:
        data = replace(data, train_trees=a.train_trees)
    res["train_trees"] = data.train_trees
    sets = load_sets(cfg=data)
    res["sets"] = {k: len(v) for k, v in sets.items()}
    if a.lm_cache:   # likelihood features from the cache only (an LM pass is ~1 explanation/s here)
        attach_records(sets, a.data, data)
        res["lm_rows"] = attach_lm(sets, lm_scorer(a.lm_cache))
    extra: tuple[str, ...] = ()
    if a.acceptability:   # computed once per set and regressor, cached beside the check features
        from critique.checks import ACC_FEATURE, EXTRA_FEATURES
        from critique.checks_data import attach_acceptability

        res["acceptability_computed_now"] = attach_acceptability(sets, cfg=data)
        extra = EXTRA_FEATURES if a.by_kind else (ACC_FEATURE,)
    head, report = train_shipped(sets, lexical_sets(sets, a.data, data), folds=a.folds, do_select=not a.no_select,
                                 extra_features=extra, extra_in_dim=a.acceptability_in_dim)
    res.update(report)
    if a.evidence_ablation:
        res["evidence_ablation"] = evidence_ablation(sets, _chosen_full(report, extra, a.acceptability_in_dim),
                                                     a.evidence_ablation, a.folds)
    if a.save_head:
        head.save(a.save_head)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    if not a.skip_old:
        attach_records(sets, a.data, data)
        res["old"] = old_classifier(make_splits(sets, folds=a.folds), sets)
    head_path = a.save_head or str(out.with_suffix(".head.json"))
    if not a.save_head:
        head.save(head_path)
    if not a.skip_speed:
        res["speed"] = speed(a.n_speed, head_path, a.data, a.skip_old)
    if a.demo:
        res["demo20"] = demo20(head_path)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(res) + "\n")
    print(markdown(res))


def _chosen_full(report: dict[str, Any], extra: tuple[str, ...], in_dim: bool) -> Any:
    """The HeadConfig `train_shipped` chose for the full part (its report holds the summary only)."""
    from critique.checks_eval import GRID, config_summary

    grid = [replace(c, extra_features=extra, extra_in_dim=in_dim) for c in GRID]
    return next(c for c in grid if config_summary(c) == report["full"]["chosen"]["config"])


def _robust_majority(items: list[Any], pred: Any) -> float | None:
    groups: dict[int, list[int]] = {}
    for it, p in zip(items, pred):
        groups.setdefault(it.extra["robust_group"], []).append(int(p))
    return round(float(np.mean([max(v.count(x) for x in v) / len(v) for v in groups.values()])), 4) if groups else None


if __name__ == "__main__":
    main()
