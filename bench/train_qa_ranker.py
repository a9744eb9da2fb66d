"""Fit the QA option ranker on EntailmentBank TRAIN questions (never dev) and ship it.

    .venv/bin/python bench/train_qa_ranker.py                 # collect (resumes), select, fit, save
    .venv/bin/python bench/train_qa_ranker.py --collect-only  # only the expensive pass

1. Features: the default prover (retrieval.prover.ProverConfig()) and the shipped scorer answer every
   EntailmentBank train question (task-1 train ids joined with the ARC train file for options) over
   the WorldTree corpus store; each question's option features (retrieval.ranker.ALL_FEATURES) are
   appended to runs/qa_ranker_features.jsonl, so the pass runs once and a rerun resumes.
2. Model selection on a seeded 80/20 split of the train questions: the L2 penalty and the feature
   set with the best held-out accuracy (ties: the simpler model).
3. The chosen setting is refitted on all train questions and saved to retrieval/weights/qa_ranker/
   (ranker.json + MODEL_CARD.md), with the held-out numbers and the baselines of the same split.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from microtheory.datasets import DataPaths, load_eb_questions  # noqa: E402
from retrieval.ranker import ALL_FEATURES, SHIPPED_DIR, FitConfig, accuracy, fit_ranker  # noqa: E402

FEATURES_FILE = ROOT / "runs" / "qa_ranker_features.jsonl"
# Candidate feature sets for model selection: proof evidence, retrieval evidence, and both.
PROOF = ("entail", "entail_logit", "entail_single", "entail_pair", "entail_triple", "entail_chain", "grounded",
         "pass_frac", "entail_top3")
RETRIEVAL = ("dense_top1", "dense_mean3", "bm25_top1", "bm25_mean3", "link", "option_cover")
OPTION = ("option_in_stem", "option_words")
FEATURE_SETS = {"all": ALL_FEATURES, "proof+retrieval": PROOF + RETRIEVAL, "retrieval+option": RETRIEVAL + OPTION,
                "proof+option": PROOF + OPTION, "compact": ("entail_logit", "grounded", "entail_top3", "dense_mean3",
                                                            "bm25_top1", "link", "option_cover")}
L2_GRID = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0)
# The recorded search: generous enough that every shipped candidate search is a replayable prefix of it.
COLLECT = dict(k=20, k_sparse=20, singles=2, pair_pool=8, max_pairs=4, triple_pool=5, max_triples=1,
               chain_seeds=1, chain_k=1, batch_size=16)


def collect(path: Path, store: str, limit: int | None) -> None:
    """Append one training row per train question not yet in `path` (the expensive pass)."""
    import torch
    from tqdm import tqdm

    from bench.qa_eval import ensure_store
    from retrieval.entail import load_scorer
    from retrieval.prover import Prover, ProverConfig
    from retrieval.qa import QAConfig, training_row

    torch.set_num_threads(1)
    done = set()
    if path.is_file():
        done = {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
    _, train = load_eb_questions("train", DataPaths.default())
    # A seeded order, so that a partial pass (it resumes) is a random sample of the train questions.
    train = [q for q in train if q.answer_key in q.options]
    random.Random(13).shuffle(train)
    train = [q for q in train if q.id not in done][:limit]
    ks = ensure_store(Path(store), DataPaths.default())
    prover = Prover(ks, load_scorer(None), config=ProverConfig(**COLLECT))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for q in tqdm(train, desc="train features", unit="q"):
            t0 = time.perf_counter()
            row = training_row(q, prover, QAConfig(ranker="none"))
            row["seconds"] = round(time.perf_counter() - t0, 3)
            fh.write(json.dumps(row) + "\n")
            fh.flush()


def load_rows(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["gold"] is not None]


def groups_of(rows: list[dict[str, Any]]) -> list[tuple[np.ndarray, int]]:
    return [(np.asarray(r["features"]), int(r["gold"])) for r in rows]


def baselines(rows: list[dict[str, Any]], thr_col: int = ALL_FEATURES.index("grounded")) -> dict[str, float]:
    """Retrieval-only and hand-rule (grounded first, then proof score) accuracy on `rows`."""
    ent = ALL_FEATURES.index("entail")
    ret = np.mean([r["retrieval_answer"] == r["gold"] for r in rows])
    hand = []
    for r in rows:
        x = np.asarray(r["features"])
        key = x[:, thr_col] * 10 + x[:, ent]  # grounded first, then the best proof score
        hand.append(int(np.argmax(key)) == r["gold"])
    return {"retrieval_only": round(float(ret), 4), "proof_rule": round(float(np.mean(hand)), 4)}


def grounded_stats(ranker: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
    g_col = ALL_FEATURES.index("grounded")
    picks = [(int(np.argmax(ranker.scores(np.asarray(r["features"])))), r) for r in rows]
    grounded = [(p == r["gold"]) for p, r in picks if r["features"][p][g_col] > 0.5]
    return {"grounded_rate": round(len(grounded) / len(rows), 4),
            "grounded_accuracy": round(float(np.mean(grounded)), 4) if grounded else None}


def select(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Seeded 80/20 split of train questions; the best (feature set, l2) by held-out accuracy."""
    order = sorted(rows, key=lambda r: r["id"])
    random.Random(seed).shuffle(order)
    cut = int(0.8 * len(order))
    fit_rows, held = order[:cut], order[cut:]
    grid = []
    for name, feats in FEATURE_SETS.items():
        for l2 in L2_GRID:
            m = fit_ranker(groups_of(fit_rows), FitConfig(tuple(feats), l2))
            grid.append({"features": name, "l2": l2, "heldout_accuracy": round(accuracy(m, groups_of(held)), 4),
                         "fit_accuracy": round(accuracy(m, groups_of(fit_rows)), 4), **grounded_stats(m, held)})
    # Best held-out accuracy; ties go to fewer features, then the stronger penalty.
    grid.sort(key=lambda g: (-g["heldout_accuracy"], len(FEATURE_SETS[g["features"]]), -g["l2"]))
    return {"seed": seed, "fit_questions": len(fit_rows), "heldout_questions": len(held), "best": grid[0],
            "grid": grid, "heldout_baselines": baselines(held)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=str(ROOT / "runs" / "worldtree_store"))
    ap.add_argument("--features", default=str(FEATURES_FILE))
    ap.add_argument("--limit", type=int, default=None, help="train questions to add in this run")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--out", default=str(SHIPPED_DIR))
    args = ap.parse_args()
    path = Path(args.features)
    t0 = time.time()
    collect(path, args.store, args.limit)
    if args.collect_only:
        return
    rows = load_rows(path)
    sel = select(rows)
    best = sel["best"]
    ranker = fit_ranker(groups_of(rows), FitConfig(tuple(FEATURE_SETS[best["features"]]), best["l2"]))
    ranker.config.update({"feature_set": best["features"], "split": "EntailmentBank task-1 train ids with ARC "
                          "train options; WorldTree corpus (11,941 sentences incl. ET_addon); never dev",
                          "prover": "retrieval.prover.ProverConfig() defaults", "scorer": "shipped"})
    ranker.metrics = {"selection": {k: v for k, v in sel.items() if k != "grid"},
                      "train_accuracy_all": round(accuracy(ranker, groups_of(rows)), 4),
                      "train_baselines_all": baselines(rows),
                      "collect_seconds_per_question": round(float(np.mean([r.get("seconds", 0) for r in rows])), 3)}
    ranker.save(args.out)
    Path(args.out, "selection.json").write_text(json.dumps(sel, indent=2) + "\n")
    print(json.dumps({"best": best, "baselines": sel["heldout_baselines"],
                      "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
                      "elapsed_s": round(time.time() - t0, 1)}, indent=2))


if __name__ == "__main__":
    main()
