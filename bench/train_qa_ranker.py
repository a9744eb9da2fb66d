"""Fit the QA option ranker and choose the grounding policy on EntailmentBank TRAIN questions (never dev).

    .venv/bin/python bench/train_qa_ranker.py            # every stage; each pass resumes from its cache
    .venv/bin/python bench/train_qa_ranker.py --no-collect   # fit and choose from the caches only

1. Features (cheap: retrieval only, no entailment scoring): for every EntailmentBank train question
   (task-1 train ids joined with the ARC train file for options) over the WorldTree corpus store,
   each option's retrieval.ranker.ALL_FEATURES -> runs/qa_ranker_features_v2.jsonl; and each
   option's LM features (retrieval.option_lm.LM_FEATURES: SmolLM2-135M reading the option after the
   facts retrieved for the question sentence and the question, and after "Answer:" alone; ~1.3 s per
   question on the shared CPU) -> runs/qa_lm_features_v2.jsonl
   (`--no-lm`: retrieval features only).
2. Ranker selection on a seeded 80/20 split of the train questions: 5-fold cross-validation (by
   question) on the 80% over feature sets x within-question transforms x L2; the best CV accuracy
   wins (ties: fewer columns). The 20% is touched once, to report the choice against retrieval-only
   (and the best configuration of each feature set, by CV, on it: the with/without comparison).
3. Grounding (expensive: the entailment scorer): every train question's option as picked by a
   5-fold cross-validated ranker (never a ranker fitted on that question), with that ranker's
   probability, is proved with the largest search of the grid (COLLECT_SEARCH; every smaller search is
   a prefix of it), and its premise sets >= 0.2 are scored against the other options' hypotheses ->
   runs/qa_grounding_v4.jsonl (a question is proved again when the ranker's pick changes).
4. Grounding policy (search x proof threshold x contrast margin x least ranker confidence), chosen on
   the same 80% within a budget of scored pairs per question: the most answers grounded with >= 80% of
   grounded answers right (else the most accurate grounding); reported on the 20%. `microtheory qa`
   then proves with that search (retrieval.qa.prover_config_for) and only picks at that confidence.
5. The chosen ranker is refitted on all train questions and saved with the policy to
   retrieval/weights/qa_ranker/ (ranker.json, selection.json, MODEL_CARD.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from microtheory.datasets import DataPaths, load_eb_questions
from retrieval.option_lm import LM_FEATURES
from retrieval.ranker import (
    ALL_FEATURES,
    SHIPPED_DIR,
    TRANSFORMS,
    FitConfig,
    OptionRanker,
    accuracy,
    fit_ranker,
)

FEATURES_FILE = ROOT / "runs" / "qa_ranker_features_v2.jsonl"
GROUNDING_FILE = ROOT / "runs" / "qa_grounding_v4.jsonl"
LM_FILE = ROOT / "runs" / "qa_lm_features_v2.jsonl"
HYP = ("dense_top1", "dense_mean3", "bm25_top1", "bm25_mean3", "link", "option_cover")  # format-1 retrieval set
NEW = ("dense_mean10", "hyp_cover", "joint_cover", "opt_dense_top1", "opt_bm25_top1", "opt_link",
       "qfacts_opt_cos", "qfacts_opt_cover")
OPTION = ("option_in_stem", "option_words", "context_top1", "context_cover")
RETRIEVAL_SETS = {"hypothesis": HYP + OPTION, "all": ALL_FEATURES}
# With the option LM features (retrieval.option_lm) appended; used only when every row has them.
LM_SETS = {"hypothesis+lm": HYP + OPTION + LM_FEATURES, "all+lm": ALL_FEATURES + LM_FEATURES}
FEATURE_SETS = {**RETRIEVAL_SETS, **LM_SETS}
TRANSFORM_SETS = {"raw": ("raw",), "raw+margin": ("raw", "margin"), "raw+z": ("raw", "z"), "all": TRANSFORMS}
L2_GRID = (1.0, 10.0, 100.0, 1000.0)
# Grounding policy grid: proof threshold x contrast margin (None: no contrast check) x the ranker's
# least confidence in its pick (None: any). 0.2 is the floor: a premise set the scorer gives less than
# a one-in-five chance of entailing the hypothesis is not called a proof, whatever else holds.
THRESHOLDS = (0.2, 0.3, None, 0.45, 0.5, 0.6, 0.7, 0.8)
MARGINS = (None, -0.2, 0.0, 0.1, 0.2, 0.3, 0.4)
CONFIDENCES = (None, 0.3, 0.4, 0.5, 0.6, 0.7)
CONTRAST_SETS = 3
TARGET_GROUNDED_ACCURACY = 0.80


def _train_questions() -> list[Any]:
    _, train = load_eb_questions("train", DataPaths.default())
    train = [q for q in train if q.answer_key in q.options]
    random.Random(13).shuffle(train)  # a partial pass (they resume) is a random sample
    return train


def _done(path: Path) -> set[str]:
    return {json.loads(x)["id"] for x in path.read_text().splitlines() if x.strip()} if path.is_file() else set()


def _prover(store: str, scorer: bool, threshold: float | None = None, search: Any = None) -> Any:
    import torch

    from bench.qa_eval import ensure_store
    from retrieval.entail import OverlapScorer, load_scorer
    from retrieval.prover import Prover, ProverConfig
    from retrieval.qa import search_sizes

    torch.set_num_threads(1)
    ks = ensure_store(Path(store), DataPaths.default())
    sizes = search_sizes(None if search is None else search.__dict__)
    return Prover(ks, load_scorer(None) if scorer else OverlapScorer(), config=ProverConfig(threshold=threshold, **sizes))


def collect_features(path: Path, store: str, limit: int | None) -> None:
    """Append one feature row per train question not yet in `path` (retrieval only)."""
    from tqdm import tqdm

    from retrieval.qa import QAConfig, training_row

    todo = [q for q in _train_questions() if q.id not in _done(path)][:limit]
    if not todo:
        return
    prover = _prover(store, scorer=False)
    with open(path, "a", encoding="utf-8") as fh:
        for q in tqdm(todo, desc="train features", unit="q"):
            t0 = time.perf_counter()
            row = training_row(q, prover, QAConfig())
            row["seconds"] = round(time.perf_counter() - t0, 3)
            fh.write(json.dumps(row) + "\n")
            fh.flush()


def collect_lm_features(path: Path, store: str, limit: int | None, chunk: int = 16) -> None:
    """Append the option LM features (retrieval.option_lm) of every train question not yet in `path`,
    with the facts retrieved for its question sentence as `microtheory qa` retrieves them; chunks of
    `chunk` questions, so a kill loses one chunk."""
    from tqdm import tqdm

    from retrieval.hypothesis import split_stem
    from retrieval.option_lm import FACTS, LmQuestion, lm_option_features

    todo = [q for q in _train_questions() if q.id not in _done(path)][:limit]
    if not todo:
        return
    prover, engine = _prover(store, scorer=False), _lm_engine()
    with open(path, "a", encoding="utf-8") as fh, tqdm(total=len(todo), desc="train LM features", unit="q") as bar:
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            t0 = time.perf_counter()
            hits = prover.retrieve([split_stem(q.stem)[1] or q.stem for q in part])
            lmq = [LmQuestion(q.stem, tuple(q.options.values()),
                              tuple(c.text for c in h if c.source != "context")[:FACTS]) for q, h in zip(part, hits)]
            feats = lm_option_features(engine, lmq)
            secs = (time.perf_counter() - t0) / len(part)
            fh.writelines(json.dumps({"id": q.id, "lm": x.round(5).tolist(), "seconds": round(secs, 3)}) + "\n"
                          for q, x in zip(part, feats))
            fh.flush()
            bar.update(len(part))


def _lm_engine() -> Any:
    from core.lm_nll import ContinuationNll, NllConfig

    return ContinuationNll(NllConfig(batch_size=4, threads=1))  # the engine `microtheory qa` uses


def collect_grounding(path: Path, store: str, picks: dict[str, tuple[int, float]], limit: int | None) -> None:
    """Prove each question's cross-validated pick; record every passing set (>= the lowest threshold)
    checked against the rivals, and the ranker's confidence in the pick. A recorded question whose
    pick the current ranker no longer makes is proved again (the last record of an id counts)."""
    from tqdm import tqdm

    from retrieval.qa import GroundingPolicy, QAConfig, ground_option, question_retrieval

    done = {i: r["pick"] for i, r in _grounding_rows(path).items() if r.get("search") == COLLECT_SEARCH.__dict__}
    qs = [q for q in _train_questions() if q.id in picks and done.get(q.id) != picks[q.id][0]][:limit]
    if not qs:
        return
    # Threshold 0.99 makes the prover always chain, so that any runtime threshold can be replayed.
    prover = _prover(store, scorer=True, threshold=0.99, search=COLLECT_SEARCH)
    cfg = QAConfig()
    # Every set >= the lowest threshold is checked against the rivals, so smaller searches replay exactly.
    policy = GroundingPolicy(min(x for x in THRESHOLDS if x is not None), -1e9, 100)
    with open(path, "a", encoding="utf-8") as fh:
        for q in tqdm(qs, desc="train grounding", unit="q"):
            t0 = time.perf_counter()
            labels, hyps, r = question_retrieval(q, prover, cfg)
            pick, conf = picks[q.id]
            g = ground_option(prover, hyps, pick, r.hypothesis_hits[pick], policy, check_all=True)
            fh.write(json.dumps({"id": q.id, "pick": pick, "confidence": round(conf, 5),
                                 "correct": labels[pick] == q.answer_key, "options": len(hyps),
                                 "min_threshold": policy.threshold, "search": COLLECT_SEARCH.__dict__,
                                 "sizes": [len(x) for x in g.evidence.sets],
                                 "scores": [round(x, 5) for x in g.evidence.scores],
                                 "scored": g.evidence.scored, "checked": g.checked,
                                 "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
            fh.flush()


def _grounding_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The grounding records of `path` by question id (the last record of an id wins)."""
    if not path.is_file():
        return {}
    return {r["id"]: r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}


def load_rows(path: Path, lm_path: Path | None = None) -> list[dict[str, Any]]:
    """The feature rows of `path`, one per question id; with `lm_path`, each row's option LM features
    (when collected) appended to its retrieval features (KNOWN_FEATURES columns) and `has_lm` set."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    # One row per question id (a few train ids occur twice in EntailmentBank): no question in two folds.
    rows = list({r["id"]: r for r in reversed(rows) if r["gold"] is not None}.values())[::-1]
    lm = {} if lm_path is None or not lm_path.is_file() else \
        {o["id"]: o["lm"] for o in (json.loads(x) for x in lm_path.read_text().splitlines() if x.strip())}
    for r in rows:
        r["has_lm"] = r["id"] in lm and len(lm[r["id"]]) == len(r["features"])
        if r["has_lm"]:
            r["features"] = [a + b for a, b in zip(r["features"], lm[r["id"]])]
    return rows


def groups_of(rows: list[dict[str, Any]]) -> list[tuple[np.ndarray, int]]:
    return [(np.asarray(r["features"]), int(r["gold"])) for r in rows]


def cv_picks(rows: list[dict[str, Any]], fit: FitConfig, folds: int = 5) -> dict[str, tuple[int, float]]:
    """Each question's pick by a ranker fitted on the other folds (by question), and its probability."""
    groups = groups_of(rows)
    picks = {}
    for k in range(folds):
        model = fit_ranker([g for n, g in enumerate(groups) if n % folds != k], fit)
        for n, (x, _) in enumerate(groups):
            if n % folds == k:
                p = model.probabilities(x)
                picks[rows[n]["id"]] = (int(np.argmax(p)), float(p.max()))
    return picks


def split(rows: list[dict[str, Any]], seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    order = sorted(rows, key=lambda r: r["id"])
    random.Random(seed).shuffle(order)
    cut = int(0.8 * len(order))
    return order[:cut], order[cut:]


def feature_sets(rows: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """The feature sets the rows allow: the LM sets only when every row has the LM features."""
    return FEATURE_SETS if rows and all(r.get("has_lm") for r in rows) else RETRIEVAL_SETS


def select_ranker(fit_rows: list[dict[str, Any]], held: list[dict[str, Any]],
                  sets: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """5-fold CV on `fit_rows` over feature sets x transforms x L2; the best is reported on `held`.
    For the comparison with and without a signal, the best configuration of each feature set (by CV)
    is reported on `held` too (`heldout_by_set`); only the overall best is shipped."""
    grid: list[dict[str, Any]] = []
    sets = sets or feature_sets(fit_rows + held)
    for fname, feats in sets.items():
        for tname, trans in TRANSFORM_SETS.items():
            for l2 in L2_GRID:
                fit = FitConfig(tuple(feats), l2, tuple(trans))
                picks = cv_picks(fit_rows, fit)
                acc = float(np.mean([picks[r["id"]][0] == r["gold"] for r in fit_rows]))
                grid.append({"features": fname, "transforms": tname, "l2": l2, "cv_accuracy": round(acc, 4),
                             "columns": len(feats) * len(trans)})
    best = max(grid, key=lambda g: (g["cv_accuracy"], -g["columns"]))
    model = fit_ranker(groups_of(fit_rows), fit_config(best, sets))
    grid.sort(key=lambda g: -g["cv_accuracy"])
    by_set = {}
    for g in grid:
        if g["features"] not in by_set:
            m = fit_ranker(groups_of(fit_rows), fit_config(g, sets))
            by_set[g["features"]] = {**g, "heldout_accuracy": round(accuracy(m, groups_of(held)), 4)}
    return {"best": best, "grid": grid, "heldout_by_set": by_set,
            "heldout": {"accuracy": round(accuracy(model, groups_of(held)), 4),
                        "retrieval_only": round(float(np.mean([r["retrieval_answer"] == r["gold"] for r in held])), 4)},
            "cv_retrieval_only": round(float(np.mean([r["retrieval_answer"] == r["gold"] for r in fit_rows])), 4)}


def fit_config(best: dict[str, Any], sets: dict[str, tuple[str, ...]] | None = None) -> FitConfig:
    return FitConfig(tuple((sets or FEATURE_SETS)[best["features"]]), best["l2"],
                     tuple(TRANSFORM_SETS[best["transforms"]]))


@dataclass(frozen=True)
class Search:
    """A prefix of the collected proof search (one single always): `pairs` pairs, `triples` triples,
    and the chained set when `chain`. ProverConfig(max_pairs=pairs, max_triples=triples, chain_k=int(chain))."""

    pairs: int
    triples: int
    chain: bool


SEARCHES = [Search(p, t, c) for p in (2, 4, 6, 10) for t in (0, 1, 2, 4, 6) for c in (False, True)]
# The search the grounding records are collected with: every search of the grid is a prefix of it.
COLLECT_SEARCH = Search(pairs=10, triples=6, chain=True)


def _kept(row: dict[str, Any], search: Search) -> list[int]:
    cap, seen, keep = {1: 1, 2: search.pairs, 3: search.triples}, {1: 0, 2: 0, 3: 0}, []
    for i, k in enumerate(row["sizes"]):
        if seen[k] < cap[k]:
            keep.append(i)
        seen[k] += 1
    return keep


def grounded(row: dict[str, Any], policy: Policy, chain_below: float, search: Search) -> tuple[bool, int]:
    """(whether `policy` accepts a proof for this recorded question, as qa.ground_option would with
    that search; premise sets + contrast pairs it scores: none when the ranker's confidence is below
    the policy's, since the proof search is then skipped)."""
    if policy.confidence is not None and row["confidence"] < policy.confidence:
        return False, 0
    keep = set(_kept(row, search))
    scores = row["scores"]
    d1 = max((scores[i] for i in keep), default=0.0)
    full_best = int(np.argmax(scores)) if scores else -1
    # The prover chains the best failing set only when no set reached its threshold.
    chain = search.chain and full_best in keep and d1 < chain_below
    sets = [c for c in row["checked"] if c["score"] >= policy.threshold
            and ((c["set"] in keep) if not c["chained"] else chain)][:CONTRAST_SETS]
    cost = len(keep) + int(chain) + (len(sets) * (row.get("options", 4) - 1) if policy.margin is not None else 0)
    if policy.margin is None:
        return bool(sets), cost
    return any(c["score"] - c["rival"] >= policy.margin for c in sets), cost


@dataclass(frozen=True)
class Policy:
    """A grounding policy as replayed here (qa.GroundingPolicy): proof threshold, contrast margin
    (None: no contrast check), least ranker confidence (None: any)."""

    threshold: float
    margin: float | None
    confidence: float | None = None


def policy_stats(rows: list[dict[str, Any]], policy: Policy, chain_below: float, search: Search) -> dict[str, Any]:
    res = [grounded(r, policy, chain_below, search) for r in rows]
    g = [r["correct"] for r, (ok, _) in zip(rows, res) if ok]
    return {"accuracy": round(float(np.mean([r["correct"] for r in rows])), 4) if rows else None,
            "grounded_rate": round(len(g) / len(rows), 4) if rows else None,
            "grounded_accuracy": round(float(np.mean(g)), 4) if g else None,
            "pairs_per_question": round(float(np.mean([c for _, c in res])), 2) if rows else None}


def select_policy(fit_rows: list[dict[str, Any]], held: list[dict[str, Any]], scorer_threshold: float,
                  max_pairs: float) -> dict[str, Any]:
    """The policy and search grounding the most answers at >= TARGET_GROUNDED_ACCURACY on `fit_rows`
    within `max_pairs` scored pairs per question (else the most accurate grounding); reported on `held`."""
    grid = []
    for search in SEARCHES:
        for t in THRESHOLDS:
            for m in MARGINS:
                for c in CONFIDENCES:
                    pol = Policy(scorer_threshold if t is None else t, m, c)
                    grid.append({"threshold": t, "margin": m, "confidence": c, "search": search.__dict__,
                                 **policy_stats(fit_rows, pol, scorer_threshold, search)})
    cheap = [g for g in grid if g["pairs_per_question"] <= max_pairs]
    ok = [g for g in cheap if (g["grounded_accuracy"] or 0) >= TARGET_GROUNDED_ACCURACY]
    best = max(ok, key=lambda g: (g["grounded_rate"], -g["pairs_per_question"])) if ok else \
        max(cheap, key=lambda g: (g["grounded_accuracy"] or 0))
    pol = Policy(scorer_threshold if best["threshold"] is None else best["threshold"], best["margin"], best["confidence"])
    return {"best": best, "grid": grid, "max_pairs": max_pairs,
            "heldout": policy_stats(held, pol, scorer_threshold, Search(**best["search"])),
            "questions": len(fit_rows) + len(held),
            "seconds_per_question": round(float(np.mean([r["seconds"] for r in fit_rows + held])), 3)}


def trim_policy_grid(pol: dict[str, Any] | None, keep: int = 40) -> dict[str, Any] | None:
    """The policy selection as shipped: every policy of the chosen search, and the `keep` policies of
    other searches that ground most at >= TARGET_GROUNDED_ACCURACY (the full grid has ~900 rows)."""
    if pol is None:
        return None
    chosen = [g for g in pol["grid"] if g["search"] == pol["best"]["search"]]
    other = sorted((g for g in pol["grid"] if g["search"] != pol["best"]["search"]
                    and (g["grounded_accuracy"] or 0) >= TARGET_GROUNDED_ACCURACY),
                   key=lambda g: -g["grounded_rate"])[:keep]
    return {**pol, "grid": chosen + other, "grid_size": len(pol["grid"])}


def model_card(ranker: OptionRanker, sel: dict[str, Any], pol: dict[str, Any] | None, command: str) -> str:
    """MODEL_CARD.md of the shipped ranker: data, command, selection, held-out numbers, weights (the
    one dev run is added by hand afterwards: dev never feeds this script)."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    best, held = sel["best"], sel["heldout"]
    top = sorted(zip(ranker.config["columns"], ranker.weights), key=lambda t: -abs(t[1]))[:12]
    weights = "\n".join(f"| {f} | {w:+.3f} |" for f, w in top)
    grid = "\n".join(f"| {g['features']} | {g['transforms']} | {g['l2']:g} | {pct(g['cv_accuracy'])} |"
                     for g in sel["grid"][:8])
    by_set = "\n".join(f"| {k} | {g['transforms']} | {g['l2']:g} | {pct(g['cv_accuracy'])} | {pct(g['heldout_accuracy'])} |"
                       for k, g in sel.get("heldout_by_set", {}).items())
    lm = ("\n\nWith the option LM features (`retrieval.option_lm.LM_FEATURES`): SmolLM2-135M-Instruct's "
          "log-probability of each option after the three facts retrieved for the question sentence and the "
          "question, and its PMI against \"Answer:\" alone; `microtheory qa` then loads the LM once and "
          "runs it on every question's options (one packed, batched call).") if ranker.needs_lm else ""
    ground = "(grounding not collected)"
    if pol is not None:
        b, h = pol["best"], pol["heldout"]
        ground = (f"Policy chosen on the questions of the 80% among the {pol['questions']} with grounding collected; proof threshold "
                  f"{b['threshold'] if b['threshold'] is not None else 'the scorer threshold'}, contrast margin "
                  f"{b['margin']}, least ranker confidence {b.get('confidence')}: {pct(b['grounded_rate'])} grounded at {pct(b['grounded_accuracy'])} on the 80% "
                  f"(picks of the cross-validated ranker); on the held-out 20%: {pct(h['grounded_rate'])} "
                  f"grounded at {pct(h['grounded_accuracy'])}. Proof search + contrast check cost "
                  f"{pol['seconds_per_question']} s per question here (shared 2-core CPU).")
    return f"""# QA option ranker (`retrieval/weights/qa_ranker/ranker.json`, format 2)

What: a conditional logit (softmax over a question's options) over retrieval features of each option
(`retrieval.ranker.ALL_FEATURES`: dense and BM25 evidence for the option's hypothesis, for the option
text alone, and for the question sentence and the stem's context sentences), each also compared
within its question when `transforms` says so (margin over the best other option, z-score). `microtheory qa` uses it by default. No entailment score
is a feature: proof features added nothing on train CV (format 1 kept them; see docs/benchmarks.md).
The ranker also carries the grounding policy (`config.grounding`): which proof of the chosen
option counts.{lm}

Data: the {sel['questions']} EntailmentBank task-1 **train** questions (train ids joined with the ARC
train files for options and keys); corpus: the WorldTree store (11,941 sentences incl. ET_addon,
11,471 facts). Dev and test questions were never used. Hypotheses: the rule rewriter, as at answer time.

Command: `{command}` (caches: runs/qa_ranker_features_v2.jsonl, runs/qa_lm_features_v2.jsonl,
runs/{GROUNDING_FILE.name}).

Selection: seeded 80/20 split by question; 5-fold cross-validation by question on the 80% over
feature sets x transforms x L2; best: features `{best['features']}`, transforms `{best['transforms']}`,
L2 {best['l2']:g}, CV accuracy {pct(best['cv_accuracy'])} (retrieval-only on the same questions
{pct(sel['cv_retrieval_only'])}).

| features | transforms | L2 | CV accuracy (80% of train) |
|---|---|---|---|
{grid}

On the held-out 20% of train ({sel['heldout_questions']} questions; fitted on the 80%): **{pct(held['accuracy'])}**
vs retrieval-only {pct(held['retrieval_only'])}.

With and without a signal, on the same splits (the best configuration of each feature set by CV,
then fitted on the 80% and scored on the held-out 20%; only the overall best by CV is shipped):

| features | transforms | L2 | CV accuracy (80%) | held-out 20% |
|---|---|---|---|---|
{by_set}

Grounding: {ground}

The shipped model is refitted on all {sel['questions']} train questions. Feature cost
{sel['seconds_per_question']} s per question (retrieval only, shared 2-core CPU).

Largest weights (standardised columns; positive favours the option):

| column | weight |
|---|---|
{weights}

Limits: features come from the shipped MiniLM encoder and the store's BM25; the policy from the shipped
MiniLM scorer (`--scorer` changes what a proof score means: choose its policy again). Grounded
means the chosen option has a premise set that passes the policy; the ranker may choose an
option without one.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=str(ROOT / "runs" / "worldtree_store"))
    ap.add_argument("--features", default=str(FEATURES_FILE))
    ap.add_argument("--grounding", default=str(GROUNDING_FILE))
    ap.add_argument("--lm-features", default=str(LM_FILE), help="option LM features cache (retrieval.option_lm)")
    ap.add_argument("--no-lm", action="store_true", help="retrieval features only (no LM feature sets)")
    ap.add_argument("--limit", type=int, default=None, help="questions to add to each cache in this run")
    ap.add_argument("--no-collect", action="store_true", help="fit and choose from the caches as they are")
    ap.add_argument("--max-pairs", type=float, default=12.0,
                    help="speed budget: premise sets + contrast pairs scored per question, on average")
    ap.add_argument("--out", default=str(SHIPPED_DIR))
    args = ap.parse_args()
    feats_path, ground_path = Path(args.features), Path(args.grounding)
    lm_path = None if args.no_lm else Path(args.lm_features)
    if not args.no_collect:
        collect_features(feats_path, args.store, args.limit)
        if lm_path is not None:
            collect_lm_features(lm_path, args.store, args.limit)
    rows = load_rows(feats_path, lm_path)
    fit_rows, held = split(rows)
    sel = select_ranker(fit_rows, held)
    sel.update(questions=len(rows), heldout_questions=len(held),
               seconds_per_question=round(float(np.mean([r.get("seconds", 0) for r in rows[1:]])), 3))
    fit = fit_config(sel["best"])
    picks = cv_picks(rows, fit)
    if not args.no_collect:
        collect_grounding(ground_path, args.store, picks, args.limit)
    pol = None
    # Only records of the picks this ranker makes, collected with the whole search down to the lowest
    # threshold of the grid.
    floor = min(x for x in THRESHOLDS if x is not None)
    g = {i: {**r, "confidence": picks[i][1]} for i, r in _grounding_rows(ground_path).items()
         if i in picks and r["pick"] == picks[i][0] and r.get("min_threshold", 0.3) <= floor
         and r.get("search") == COLLECT_SEARCH.__dict__}
    if g:
        from retrieval.entail import load_scorer

        fit_ids, held_ids = {r["id"] for r in fit_rows}, {r["id"] for r in held}
        pol = select_policy([g[i] for i in g if i in fit_ids], [g[i] for i in g if i in held_ids],
                            float(load_scorer(None).threshold), args.max_pairs)
    ranker = fit_ranker(groups_of(rows), fit)
    ranker.config.update({"feature_set": sel["best"]["features"], "transforms_set": sel["best"]["transforms"],
                          "columns": list(ranker.to_json()["columns"]),
                          "grounding": {"threshold": pol["best"]["threshold"], "margin": pol["best"]["margin"],
                                        "confidence": pol["best"]["confidence"],
                                        "sets": CONTRAST_SETS, "search": pol["best"]["search"]}
                          if pol else {"threshold": None, "margin": None},
                          "split": "EntailmentBank task-1 train ids with ARC train options; WorldTree corpus "
                                   "(11,941 sentences incl. ET_addon); never dev", "scorer": "shipped"})
    ranker.metrics = {"selection": {k: v for k, v in sel.items() if k != "grid"},
                      "grounding": {k: v for k, v in pol.items() if k != "grid"} if pol else None,
                      "train_all_accuracy": round(accuracy(ranker, groups_of(rows)), 4)}
    ranker.save(args.out)
    Path(args.out, "MODEL_CARD.md").write_text(model_card(ranker, sel, pol, "python bench/train_qa_ranker.py "
                                                          + " ".join(sys.argv[1:])))
    Path(args.out, "selection.json").write_text(json.dumps({"ranker": sel, "grounding": trim_policy_grid(pol)},
                                                           indent=2) + "\n")
    print(json.dumps({"ranker": sel["best"], "heldout": sel["heldout"],
                      "grounding": pol and {"best": pol["best"], "heldout": pol["heldout"]},
                      "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)"}, indent=2))


if __name__ == "__main__":
    main()
