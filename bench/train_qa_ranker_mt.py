"""QA with a microtheory, measured cross-fitted on EntailmentBank TRAIN: which features, and a ranker that reads its evidence.

    .venv/bin/python bench/train_qa_ranker_mt.py               # collect (resumes) and fit
    .venv/bin/python bench/train_qa_ranker_mt.py --no-collect  # fit from the cache only

Two questions, both answered on train only: should `qa --microtheory` compute the ranker's features over
corpus + microtheory together, or over the corpus alone (step 3); and does a ranker gain from the
microtheory's own evidence as extra columns (step 4)? Why cross-fitting: the microtheory a user adds
(`microtheory qa --microtheory`; the issue's qc-greedy(1000) of the train trees) was distilled from the trees of the train questions, so a ranker
fitted on train questions with that microtheory would see each question's own gold facts in its
features and learn to trust the microtheory far more than it deserves on a new question. Instead:

1. The train questions are cut into FOLDS folds (seeded, by question id). For each fold, a
   qc-greedy(BUDGET) microtheory is distilled from the trees of the *other* folds' questions only
   (`microtheory.trees_to_store.trees_to_records` -> DistillGraph -> qc-greedy: what
   `distill build-store` + `distill run --strategy qc-greedy --budget 1000` do, without a store).
2. Each question's options get `retrieval.ranker.MT_FEATURES`: the retrieval evidence of the
   microtheory alone (the fold's, which holds none of the question's own tree), and ALL_FEATURES over
   corpus + that microtheory retrieved together (`merged`, what `qa` read before) ->
   runs/qa_mt_features_v2.jsonl. The corpus and LM features are the shipped ranker's caches
   (bench/train_qa_ranker.py), computed from the corpus alone, as `qa` computes them without a microtheory.
3. `merged_vs_corpus`: rankers fitted (CV by question) on corpus-only features answer each question
   from its corpus-only and from its merged features: which of the two `qa --microtheory` should read.
4. Ranker selection exactly as bench/train_qa_ranker.py (the same seeded 80/20 split, 5-fold CV on the
   80%, the 20% touched once), over feature sets with and without MT_FEATURES; the held-out 20% says
   whether the microtheory's evidence helps at all (the with/without table in the model card).
5. The chosen ranker is refitted on all train questions and written to runs/qa_ranker_mt/ (use it with
   `qa --microtheory M --ranker runs/qa_ranker_mt`) with the shipped ranker's grounding policy and
   search (chosen on train without a microtheory; not chosen again here).

Results (2026-12-01, 1,308 train questions, 5 folds; step 3 with the fast ranker's configuration):

| setting (corpus; fold knowledge) | corpus-only | together, duplicates boosted (before) | together, only what the corpus lacks (now) |
|---|---|---|---|
| EntailmentBank corpus; qc-greedy(1000) | 69.9% | 68.1% | 70.0% |
| general corpus (ET_addon left out); qc-greedy(1000), corpus sentences free (`--free-corpus`) | 68.2% | 68.7% | 68.7% |
| general corpus; every fact of the other folds' trees (`--budget 0`, ~5,500) | 68.2% | 70.2% | 70.3% |

(general corpus: `--store runs/worldtree_general_store --features runs/qa_ranker_features_general.jsonl
--no-lm`.) So `qa` reads corpus + microtheory together, the microtheory adding only the sentences the
corpus lacks (`Prover.retrieve`). Step 4, MT_FEATURES: EntailmentBank corpus `all+lm` CV 71.0% /
held-out 71.4% vs `all+lm+mt` 71.4% / 71.4% (a first collection: 71.0% / 71.4%); general corpus `all`
68.0% / 69.9% vs `all+mt` 67.9% / 67.9%: no gain, so no microtheory ranker ships (849 of the 998 facts
of the qc-greedy(1000) microtheory of all train trees are sentences the EntailmentBank corpus holds).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from bench.train_qa_ranker import (
    FEATURE_SETS,
    FEATURES_FILE,
    LM_FILE,
    _done,
    _train_questions,
    collect_features,
    collect_lm_features,
    fit_config,
    groups_of,
    load_rows,
    select_ranker,
    split,
)
from microtheory.datasets import DataPaths, load_eb_questions
from retrieval.ranker import (
    ALL_FEATURES,
    FAST_DIR,
    MT_FEATURES,
    SHIPPED_DIR,
    FitConfig,
    OptionRanker,
    accuracy,
    fit_ranker,
)

MT_FILE = ROOT / "runs" / "qa_mt_features_v2.jsonl"
# Not shipped: on train the microtheory's evidence added nothing (the module docstring's result).
OUT_DIR = ROOT / "runs" / "qa_ranker_mt"
FOLDS = 5
BUDGET = 1000
STRATEGY = "qc-greedy"
# The shipped ranker's feature sets, and each with the microtheory's evidence added.
SETS = {**FEATURE_SETS, **{f"{k}+mt": v + MT_FEATURES for k, v in FEATURE_SETS.items()}}


def fold_of(ids: list[str], folds: int = FOLDS, seed: int = 7) -> dict[str, int]:
    """Each question id's fold: a seeded shuffle of the sorted ids, dealt round-robin."""
    order = sorted(set(ids))
    random.Random(seed).shuffle(order)
    return {q: n % folds for n, q in enumerate(order)}


def fold_microtheories(trees: list[Any], folds: dict[str, int], n_folds: int = FOLDS,
                       budget: int = BUDGET, corpus_texts: Iterable[str] = ()) -> list[list[Any]]:
    """For each fold, the facts of a qc-greedy(`budget`) microtheory of the `trees` of the questions in
    the other folds (a tree whose question is in no fold counts for every fold). Facts whose text is in
    `corpus_texts` are free (`distill run --corpus`): never counted, never part of the microtheory.
    `budget` 0: every fact (leaf or conclusion) of those trees, undistilled (the "whole store" row of
    bench/grounding_experiment.py)."""
    from microtheory.distill.graph import DistillGraph
    from microtheory.distill.strategies import select
    from microtheory.trees_to_store import corpus_fact_ids, trees_to_records

    facts, proofs = trees_to_records(trees)
    by_id = {f.id: f for f in facts}
    free = corpus_fact_ids(facts, corpus_texts)
    out = []
    for k in range(n_folds):
        if budget == 0:
            out.append([f for f in facts if any(folds.get(p["question_id"], -1) != k for p in f.provenance)])
            continue
        kept = [p for p in proofs if folds.get(p.question_id, -1) != k]
        sel = select(DistillGraph.from_proofs(kept, by_id, free=free), STRATEGY, budget=budget)
        out.append([by_id[i] for i in sel.fact_ids])
    return out


def collect_mt_features(path: Path, store: str, limit: int | None, free_corpus: bool = False,
                        budget: int = BUDGET) -> None:
    """Append MT_FEATURES rows (each question with its fold's microtheory) for train questions not in
    `path`; `free_corpus`: the store's sentences are free in the fold distillations."""
    from tqdm import tqdm

    from bench.train_qa_ranker import _prover
    from retrieval.knowledge import knowledge_from_facts
    from retrieval.prover import Prover
    from retrieval.qa import QAConfig, question_retrieval
    from retrieval.ranker import microtheory_features, option_features

    questions = _train_questions()
    folds = fold_of([q.id for q in questions])
    done = _done(path)
    todo = [q for q in questions if q.id not in done][:limit]
    if not todo:
        return
    corpus = _prover(store, scorer=False)
    t0 = time.perf_counter()
    texts = [f.text for f in corpus.corpus] if free_corpus else []
    mts = fold_microtheories(load_eb_questions("train", DataPaths.default())[0], folds, budget=budget,
                             corpus_texts=texts)
    print(f"{FOLDS} fold microtheories ({[len(m) for m in mts]} facts) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    with open(path, "a", encoding="utf-8") as fh:
        for k in range(FOLDS):
            part = [q for q in todo if folds[q.id] == k]
            if not part:
                continue
            # A prover over the fold's microtheory alone, with the corpus store's encoder and settings;
            # and one over corpus + microtheory together (what `qa` read before its features were the
            # corpus's alone).
            knowledge = knowledge_from_facts(mts[k], corpus.encoder())
            mp = corpus.over(knowledge)
            both = Prover(corpus.corpus, corpus.scorer, knowledge, corpus.config, encoder=corpus.encoder())
            for q in tqdm(part, desc=f"fold {k} microtheory features", unit="q"):
                t1 = time.perf_counter()
                x = microtheory_features(question_retrieval(q, mp, QAConfig())[2], mp)
                merged = option_features(question_retrieval(q, both, QAConfig())[2], both)
                fh.write(json.dumps({"id": q.id, "fold": k, "microtheory_facts": len(mts[k]),
                                     "mt": x.round(5).tolist(), "merged": merged.round(5).tolist(),
                                     "seconds": round(time.perf_counter() - t1, 3)}) + "\n")
                fh.flush()


def with_mt(rows: list[dict[str, Any]], path: Path, lm: bool = True) -> list[dict[str, Any]]:
    """`rows` (corpus features, and the LM's when `lm`) that have MT features, with those appended
    (the retrieval.ranker.matrix_columns layout)."""
    mt = {o["id"]: o["mt"] for o in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}
    out = []
    for r in rows:
        m = mt.get(r["id"])
        if (r.get("has_lm") or not lm) and m is not None and len(m) == len(r["features"]):
            out.append({**r, "features": [a + b for a, b in zip(r["features"], m)]})
    return out


def merged_vs_corpus(rows: list[dict[str, Any]], path: Path, fit: Any, folds: int = 5) -> dict[str, Any]:
    """Cross-validated accuracy (by question) of rankers fitted on corpus-only retrieval features, each
    question answered from its corpus-only features and from its features over corpus + its fold's
    microtheory (`merged`): which of the two `qa --microtheory` should feed the ranker. `fit` must read
    ALL_FEATURES columns only (the merged features hold no LM columns)."""
    merged = {o["id"]: o.get("merged") for o in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}
    rows = [r for r in rows if merged.get(r["id"]) is not None]
    plain = [(np.asarray(r["features"])[:, :len(ALL_FEATURES)], int(r["gold"])) for r in rows]
    both = [(np.asarray(merged[r["id"]]), int(r["gold"])) for r in rows]
    right = {"corpus": 0, "merged": 0}
    for k in range(folds):
        model = fit_ranker([g for n, g in enumerate(plain) if n % folds != k], fit)
        for n in range(k, len(rows), folds):
            right["corpus"] += int(np.argmax(model.scores(plain[n][0])) == plain[n][1])
            right["merged"] += int(np.argmax(model.scores(both[n][0])) == both[n][1])
    return {"questions": len(rows), "features": list(fit.features), "transforms": list(fit.transforms),
            "cv_accuracy_corpus_features": round(right["corpus"] / len(rows), 4),
            "cv_accuracy_merged_features": round(right["merged"] / len(rows), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=str(ROOT / "runs" / "worldtree_store"))
    ap.add_argument("--features", default=str(FEATURES_FILE))
    ap.add_argument("--lm-features", default=str(LM_FILE))
    ap.add_argument("--mt-features", default=str(MT_FILE))
    ap.add_argument("--no-lm", action="store_true", help="retrieval feature sets only (no LM features)")
    ap.add_argument("--free-corpus", action="store_true",
                    help="the store's sentences are free in the fold distillations (as `distill run --corpus` "
                         "and bench/grounding_experiment.py): the microtheories hold only what the corpus lacks")
    ap.add_argument("--budget", type=int, default=BUDGET,
                    help="facts per fold microtheory (qc-greedy); 0: every fact of the other folds' trees")
    ap.add_argument("--limit", type=int, default=None, help="questions to add to the cache in this run")
    ap.add_argument("--no-collect", action="store_true", help="fit from the cache as it is")
    ap.add_argument("--out", default=str(OUT_DIR), help="where the fitted ranker goes (qa --ranker OUT)")
    args = ap.parse_args()
    mt_path, feats_path = Path(args.mt_features), Path(args.features)
    lm_path = None if args.no_lm else Path(args.lm_features)
    if not args.no_collect:
        # The corpus (and LM) features of the store given, when its caches are not complete yet.
        collect_features(feats_path, args.store, args.limit)
        if lm_path is not None:
            collect_lm_features(lm_path, args.store, args.limit)
        collect_mt_features(mt_path, args.store, args.limit, args.free_corpus, args.budget)
    # Corpus-only vs corpus + microtheory features under the shipped fast ranker's configuration.
    fast = OptionRanker.load(FAST_DIR)
    merged_check = merged_vs_corpus(load_rows(feats_path, None), mt_path,
                                    FitConfig(tuple(fast.features), fast.config["l2"], tuple(fast.transforms)))
    print(json.dumps({"merged_vs_corpus": merged_check}), file=sys.stderr)
    rows = with_mt(load_rows(feats_path, lm_path), mt_path, lm=lm_path is not None)
    sets = {k: v for k, v in SETS.items() if lm_path is not None or "lm" not in k}
    fit_rows, held = split(rows)
    sel = select_ranker(fit_rows, held, sets)
    sel.update(questions=len(rows), heldout_questions=len(held), merged_vs_corpus=merged_check)
    fit = fit_config(sel["best"], sets)
    ranker = fit_ranker(groups_of(rows), fit)
    shipped = OptionRanker.load(SHIPPED_DIR)
    ranker.config.update({
        "feature_set": sel["best"]["features"], "transforms_set": sel["best"]["transforms"],
        "columns": list(ranker.to_json()["columns"]), "grounding": shipped.config.get("grounding"),
        "grounding_from": "the shipped ranker's policy (chosen on train without a microtheory)",
        "microtheory": {"folds": FOLDS, "strategy": STRATEGY, "budget": BUDGET,
                        "of": "EntailmentBank task-1 train trees of the other folds' questions"},
        "split": "EntailmentBank task-1 train ids with ARC train options; WorldTree corpus; never dev",
        "scorer": "shipped"})
    ranker.metrics = {"selection": {k: v for k, v in sel.items() if k != "grid"},
                      "train_all_accuracy": round(accuracy(ranker, groups_of(rows)), 4)}
    ranker.save(args.out)
    Path(args.out, "selection.json").write_text(json.dumps({"ranker": sel}, indent=2) + "\n")
    Path(args.out, "MODEL_CARD.md").write_text(model_card(ranker, sel, "python bench/train_qa_ranker_mt.py "
                                                          + " ".join(sys.argv[1:])))
    print(json.dumps({"ranker": sel["best"], "heldout": sel["heldout"], "heldout_by_set": sel["heldout_by_set"]},
                     indent=2))


def model_card(ranker: OptionRanker, sel: dict[str, Any], command: str) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    best, held = sel["best"], sel["heldout"]
    by_set = "\n".join(f"| {k} | {g['transforms']} | {g['l2']:g} | {pct(g['cv_accuracy'])} | {pct(g['heldout_accuracy'])} |"
                       for k, g in sel["heldout_by_set"].items())
    top = sorted(zip(ranker.config["columns"], ranker.weights), key=lambda t: -abs(t[1]))[:12]
    weights = "\n".join(f"| {f} | {w:+.3f} |" for f, w in top)
    g = ranker.config.get("grounding") or {}
    return f"""# QA option ranker with a microtheory (`runs/qa_ranker_mt/ranker.json`, not shipped)

What: the shipped ranker's conditional logit (retrieval/weights/qa_ranker/MODEL_CARD.md) with the
microtheory's own retrieval evidence added (`retrieval.ranker.MT_FEATURES`: the dense, BM25, link and
cover features of ALL_FEATURES computed over the microtheory alone). Fitted with the other columns
computed over the corpus alone; `qa` computes them over corpus + microtheory (which on train answered
as well or better: the script's step 3). Use it with `microtheory qa --microtheory M --ranker DIR`; without a microtheory it cannot run. The microtheory also joins the proof search, as with any ranker.

Data: {sel['questions']} EntailmentBank task-1 **train** questions. Cross-fitted: {FOLDS} seeded folds by
question; each question's microtheory features come from a {STRATEGY}({BUDGET}) microtheory of the
train trees of the other folds' questions, so no question sees its own tree (a microtheory of all
train trees, as users add, holds the gold facts of every train question). Dev never used.

Command: `{command}` (caches: runs/qa_ranker_features_v2.jsonl, runs/qa_lm_features_v2.jsonl,
runs/{MT_FILE.name}).

Selection (same seeded 80/20 split as the shipped ranker; 5-fold CV on the 80%): features
`{best['features']}`, transforms `{best['transforms']}`, L2 {best['l2']:g}, CV accuracy {pct(best['cv_accuracy'])}.
On the held-out 20% ({sel['heldout_questions']} questions): **{pct(held['accuracy'])}** vs retrieval-only
{pct(held['retrieval_only'])}.

With and without the microtheory's evidence, same splits (best configuration of each feature set by
CV, fitted on the 80%, scored once on the held-out 20%):

| features | transforms | L2 | CV accuracy (80%) | held-out 20% |
|---|---|---|---|---|
{by_set}

Grounding policy: the shipped ranker's (threshold {g.get('threshold')}, margin {g.get('margin')},
least confidence {g.get('confidence')}, search {g.get('search')}), chosen on train without a
microtheory; not chosen again with one.

Largest weights (standardised columns; positive favours the option):

| column | weight |
|---|---|
{weights}

Limits: fitted with microtheories of {BUDGET} facts distilled from EntailmentBank train trees; a
microtheory of another size, topic or origin changes what its features mean (the corpus-only
`--ranker shipped` does not depend on it).
"""


if __name__ == "__main__":
    main()
