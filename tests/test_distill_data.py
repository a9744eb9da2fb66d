"""Distillation on the real EntailmentBank train trees, the spaCy lemma keys, and the grounding bench helpers."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from microtheory.distill import DistillGraph, select
from retrieval.entail import OverlapScorer
from core.types import Fact

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.data
@pytest.mark.slow
def test_train_graph_exact_beats_greedy_and_baselines(data_dir: Path):
    from microtheory.datasets import read_eb_train
    from microtheory.trees_to_store import trees_to_records

    trees = read_eb_train(data_dir / "entailmentbank" / "angles" / "task_1" / "train.jsonl")
    facts, proofs = trees_to_records(trees)
    g = DistillGraph.from_proofs(proofs, facts)
    assert g.n_proofs == 1313 and g.n_questions < 1313  # a few questions have two trees
    roles = {p["role"] for f in facts for p in f.provenance}
    assert roles == {"leaf", "intermediate"}
    n = 500
    ex = select(g, "qc-exact", budget=n, time_limit=60)
    gr = select(g, "qc-greedy", budget=n)
    us = select(g, "usage", budget=n)
    rd = select(g, "random", budget=n, seed=0)
    assert ex.report["optimal"] is True
    assert ex.report["questions_covered"] >= gr.report["questions_covered"] >= 0.95 * ex.report["questions_covered"]
    assert gr.report["questions_covered"] > us.report["questions_covered"] > rd.report["questions_covered"]


@pytest.mark.slow
def test_spacy_lemma_keys_group_inflections():
    from microtheory.distill.canonicalise import lemma_keys

    keys = lemma_keys(["Plants need sunlight.", "a plant needs sunlight", "animals eat plants"])
    assert keys[0] == keys[1] != keys[2]


def test_grounding_helpers_search_and_cache():
    sys.path.insert(0, str(ROOT / "bench"))
    from grounding_experiment import CachingScorer, VectorStore

    from retrieval.encoder import HashingEncoder

    enc = HashingEncoder()
    facts = [Fact("a", "iron is attracted by magnets"), Fact("b", "the sun is a star"), Fact("c", "plants need water")]
    vs = VectorStore(facts, enc.encode([f.text for f in facts]), enc)
    hits = vs.search_batch(["magnets attract iron nails"], k=2)[0]
    assert len(hits) == 2 and hits[0].fact.id == "a" and hits[0].score >= hits[1].score
    sc = CachingScorer(OverlapScorer())
    items = [(["the sun is a star"], "the sun is a star"), (["plants need water"], "the sun is a star")]
    first = sc.score_batch(items + items)
    assert sc.calls == 2 and np.allclose(first[:2], first[2:])
    sc.score_batch(items)
    assert sc.calls == 2
