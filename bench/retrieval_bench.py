"""Gold-leaf recall@k of dense, BM25 and hybrid (RRF) retrieval on EntailmentBank dev (task 1).

    .venv/bin/python bench/retrieval_bench.py [--store runs/worldtree_store]

Corpus: the WorldTree store of bench/qa_eval.py (11,941 sentences incl. ET_addon, duplicates merged
to 11,471 facts). Gold: each dev tree's leaves with a WorldTree provenance uuid (meta
worldtree_provenance), mapped to the stored fact (by id, else by normalised text). Queries, one per
tree: the hypothesis the QA command retrieves with (retrieval.hypothesis rewrite of the question and
its correct option), and the gold EntailmentBank hypothesis as a second query set. Recall@k: the
share of gold leaves among the first k, averaged over trees. The hybrid list is the prover's own
fusion (retrieval.prover.Prover.retrieve with k dense and k BM25 hits, reciprocal rank fusion).

Writes bench/results/retrieval_bench.json and .md.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from microtheory.datasets import DataPaths, load_eb_questions
from retrieval.entail import OverlapScorer
from retrieval.hypothesis import make_hypothesis
from retrieval.prover import Prover, ProverConfig

KS = (1, 5, 10, 20, 50)
DEPTH = max(KS)


def gold_sets(trees: list[Any], store: Any) -> list[set[str]]:
    """Stored fact ids of each tree's leaves: by WorldTree uuid (dev), else by normalised text (train,
    whose leaves come without uuids)."""
    out = []
    for t in trees:
        ids = set()
        uuids = t.meta.get("uuids", {})
        for sid in t.leaves:
            uuid = uuids.get(sid)
            if uuid is not None and uuid in store:
                ids.add(uuid)
                continue
            f = store.find_text(t.sentences[sid]) if (uuid is not None or not uuids) else None
            if f is not None:
                ids.add(f.id)
        out.append(ids)
    return out


def tune_fusion(store: Any, n: int = 400) -> dict[str, Any]:
    """The fusion's BM25 weight and RRF constant with the best R@10 on a seeded sample of TRAIN trees
    (rule hypotheses of their correct options). Dev is never used here."""
    import random

    trees, qs = load_eb_questions("train", DataPaths.default())
    pairs = [(t, q) for t, q in zip(trees, qs) if q.answer_key in q.options]
    random.Random(0).shuffle(pairs)
    pairs = pairs[:n]
    gold = gold_sets([t for t, _ in pairs], store)
    queries = [make_hypothesis(q.stem, q.options[q.answer_key]) for _, q in pairs]
    grid = []
    base = Prover(store, OverlapScorer(), config=ProverConfig(k=DEPTH, k_sparse=0))
    base.encode(queries)
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        for rrf in (10.0, 60.0):
            p = Prover(store, OverlapScorer(), config=ProverConfig(k=DEPTH, k_sparse=DEPTH if w else 0, w_sparse=w or 1.0,
                                                                   rrf_k=rrf))
            p._vectors, p._bm25 = base._vectors, base._bm25
            r = recall([[c.id for c in x] for x in p.retrieve(queries)], gold)
            grid.append({"w_sparse": w, "rrf_k": rrf, **r})
            base._bm25 = p._bm25
    grid.sort(key=lambda g: (-g["R@10"], -g["R@20"]))
    return {"train_trees": len(pairs), "with_gold": sum(1 for g in gold if g), "best": grid[0], "grid": grid}


def recall(ranked: list[list[str]], gold: list[set[str]]) -> dict[str, float]:
    res = {}
    for k in KS:
        vals = [len(set(r[:k]) & g) / len(g) for r, g in zip(ranked, gold) if g]
        res[f"R@{k}"] = round(float(np.mean(vals)), 4)
    return res


def md(res: dict[str, Any]) -> str:
    lines = ["# Retrieval: gold-leaf recall@k, EntailmentBank dev (task 1), WorldTree corpus", "",
             f"Command: `{res['command']}`  ", f"Machine: {res['machine']}  ",
             f"Trees with gold leaves in the corpus: {res['trees']} of 187; gold leaves: {res['gold_leaves']}.",
             f"Hybrid: the shipped fusion (retrieval.prover.ProverConfig defaults) {res['hybrid_setting']}; "
             f"the BM25 weight and RRF constant were chosen by R@10 on {res['train_tuning']['train_trees']} "
             "TRAIN trees (never dev):", "", "| w_sparse | rrf_k | R@5 | R@10 | R@20 |", "|---|---|---|---|---|"]
    lines += [f"| {g['w_sparse']} | {g['rrf_k']:.0f} | {100 * g['R@5']:.1f} | {100 * g['R@10']:.1f} | "
              f"{100 * g['R@20']:.1f} |" for g in sorted(res["train_tuning"]["grid"],
                                                      key=lambda g: (g["w_sparse"], g["rrf_k"]))]
    lines.append("")
    for qname, table in res["results"].items():
        lines += [f"## Query: {qname}", "", "| retrieval | " + " | ".join(f"R@{k}" for k in KS) + " | ms/query |",
                  "|---" * (len(KS) + 2) + "|"]
        for name, r in table.items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * r[f'R@{k}']:.1f}" for k in KS)
                         + f" | {r['ms_per_query']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=str(ROOT / "runs" / "worldtree_store"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from bench.qa_eval import ensure_store

    ks = ensure_store(Path(args.store), DataPaths.default())
    trees, dev = load_eb_questions("dev", DataPaths.default())
    gold = gold_sets(trees, ks)
    queries = {"rule hypothesis of the correct option (what `microtheory qa` retrieves with)":
               [make_hypothesis(q.stem, q.options[q.answer_key]) for q in dev],
               "gold EntailmentBank hypothesis": [t.hypothesis for t in trees]}
    tuning = tune_fusion(ks)
    print(json.dumps(tuning["best"]), file=sys.stderr)
    dense = Prover(ks, OverlapScorer(), config=ProverConfig(k=DEPTH, k_sparse=0))
    shipped = ProverConfig()
    hybrid = Prover(ks, OverlapScorer(), config=ProverConfig(k=DEPTH, k_sparse=DEPTH, w_sparse=shipped.w_sparse,
                                                              rrf_k=shipped.rrf_k))
    hybrid.retrieve(["warm up"])  # the BM25 index builds here, not inside the timing
    results: dict[str, Any] = {}
    for qname, qs in queries.items():
        dense.encode(qs)  # encoding is shared by all three; time the search itself
        table = {}
        for name in ("dense (MiniLM, FAISS)", "BM25 (bm25s)", "hybrid (RRF of both)"):
            t0 = time.perf_counter()
            if name.startswith("dense"):
                ranked = [[c.id for c in r] for r in dense.retrieve(qs)]
            elif name.startswith("BM25"):
                ranked = [[i for i, _ in r] for r in hybrid._sparse_index(ks).search_batch(qs, k=DEPTH)]
            else:
                hybrid._vectors.update(dense._vectors)
                ranked = [[c.id for c in r] for r in hybrid.retrieve(qs)]
            ms = 1000 * (time.perf_counter() - t0) / len(qs)
            table[name] = {**recall(ranked, gold), "ms_per_query": round(ms, 2)}
        results[qname] = table
    res = {"command": "python bench/retrieval_bench.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, 1 torch thread",
           "split": "EntailmentBank task_1 dev", "trees": sum(1 for g in gold if g),
           "gold_leaves": sum(len(g) for g in gold), "results": results,
           "hybrid_setting": {"w_sparse": shipped.w_sparse, "rrf_k": shipped.rrf_k},
           "train_tuning": tuning}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "retrieval_bench.md").write_text(md(res))
    print(md(res))


if __name__ == "__main__":
    main()
