"""The prover: retrieval, candidate premise sets, one-batch scoring, weakest-step scores, depth 2."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from core.errors import InputError, StoreError
from retrieval.prover import Candidate, Prover, ProverConfig
from retrieval.store import KnowledgeStore
from core.types import Fact

FACTS = [
    ("f1", "the sun is a kind of star"),
    ("f2", "a star produces light and heat"),
    ("f3", "gravity causes objects to fall toward the ground"),
    ("f4", "a magnet attracts iron nails"),
    ("f5", "plants need sunlight to make food"),
    ("f6", "evaporation is when liquid water changes into water vapor"),
]


def make_store(path: Path, facts=FACTS, source: str = "corpus") -> KnowledgeStore:
    ks = KnowledgeStore.create(path, encoder=HashingEncoder())
    ks.add([Fact(i, t, source) for i, t in facts])
    ks.save()
    return ks


class CountingScorer(OverlapScorer):
    """OverlapScorer that records its batches, to check batching and the node budget."""

    def __init__(self, threshold: float = 0.75):
        super().__init__(threshold=threshold)
        self.batches: list[int] = []
        self.singles = 0

    def score_batch(self, items, batch_size=64):
        self.batches.append(len(items))
        return super().score_batch(items, batch_size)

    def score(self, premises, hypothesis):
        self.singles += 1
        return super().score(premises, hypothesis)


@pytest.fixture()
def store(tmp_path: Path) -> KnowledgeStore:
    return make_store(tmp_path / "corpus")


def test_single_fact_proof(store: KnowledgeStore) -> None:
    ev = Prover(store, OverlapScorer()).prove("a magnet attracts iron nails")
    assert ev.proof is not None and ev.proof.fact_ids == ("f4",)
    assert ev.proof.score == pytest.approx(1.0) and ev.proof.passed
    assert ev.candidates[0].id == "f4" and ev.retrieval_score > 0.9


def test_two_premise_proof_needs_both(store: KnowledgeStore) -> None:
    # Neither f1 nor f2 covers "sun ... produces light"; together they do.
    ev = Prover(store, OverlapScorer(threshold=0.99)).prove("the sun produces light and heat as a star")
    assert ev.proof is not None
    assert set(ev.proof.fact_ids) == {"f1", "f2"}
    assert len(ev.proof.steps) == 1 and ev.proof.steps[0].conclusion == "hypothesis"


def test_no_proof_keeps_best_attempt(store: KnowledgeStore) -> None:
    ev = Prover(store, OverlapScorer(threshold=0.99)).prove("volcanoes erupt lava near tectonic plates")
    assert ev.proof is None
    assert ev.best is not None and not ev.best.passed and ev.best.score < 0.99


def test_all_hypotheses_scored_in_one_batch_within_budget(store: KnowledgeStore) -> None:
    sc = CountingScorer()
    cfg = ProverConfig(k=6, singles=3, pair_pool=6, max_pairs=4, triple_pool=4, max_triples=2, node_budget=8)
    evs = Prover(store, sc, config=cfg).prove_many(["the sun is a star", "plants need sunlight", "gravity"])
    assert len(sc.batches) == 1
    assert sc.batches[0] == sum(e.scored for e in evs) and all(e.scored <= 8 for e in evs)
    assert all(e.scored == 8 for e in evs)  # 3 singles + 4 pairs + 2 triples, cut to the budget of 8


def test_pairs_pruned_by_coverage_prior(store: KnowledgeStore) -> None:
    p = Prover(store, OverlapScorer(), config=ProverConfig(singles=1, pair_pool=6, max_pairs=1, max_triples=0))
    cands = p.retrieve(["the sun produces light as a star"])[0]
    sets = p.premise_sets("the sun produces light as a star", cands)
    pair = [s for s in sets if len(s) == 2][0]
    assert {cands[i].id for i in pair} == {"f1", "f2"}


def test_microtheory_store_is_searched_and_merged(tmp_path: Path, store: KnowledgeStore) -> None:
    mt = make_store(tmp_path / "mt", [("m1", "a compass needle points north because of a magnet")], "microtheory")
    ev = Prover(store, OverlapScorer(), microtheory=mt).prove("a compass needle points north because of a magnet")
    assert ev.proof is not None and ev.proof.fact_ids == ("m1",)
    assert any(c.id == "f4" for c in ev.candidates)  # the corpus is still searched


def test_extra_context_premises(store: KnowledgeStore) -> None:
    extra = [[Candidate("context:1", "andy lives in the southern hemisphere", 0.9, "context")]]
    ev = Prover(store, OverlapScorer(threshold=0.99)).prove_many(["andy lives in the southern hemisphere"], extra)[0]
    assert ev.proof is not None and ev.proof.fact_ids == ("context:1",)
    assert ev.retrieval_score < 0.9  # context sentences do not count as retrieval evidence


def test_depth_two_with_decomposer(store: KnowledgeStore) -> None:
    hyp = "the sun warms the earth"

    def decompose(h: str) -> Sequence[Sequence[str]]:
        return [["the sun is a star", "heat warms the earth"]] if h == hyp else []

    def decompose2(h: str) -> Sequence[Sequence[str]]:
        return [["the sun is a star", "a star produces heat"]] if h == hyp else []

    class Judge(OverlapScorer):
        def score(self, premises, hypothesis):  # the decomposition step itself is judged valid
            ok = hypothesis == hyp and any(list(premises) == d for d in decompose(hyp) + decompose2(hyp))
            return 1.0 if ok else super().score(premises, hypothesis)

    shallow = Prover(store, Judge(threshold=0.99)).prove(hyp)
    assert shallow.proof is None
    # "heat warms the earth" is not provable from the store: the decomposition must fail.
    assert Prover(store, Judge(threshold=0.99), config=ProverConfig(max_depth=2),
                  decomposer=decompose).prove(hyp).proof is None

    ev = Prover(store, Judge(threshold=0.99), config=ProverConfig(max_depth=2), decomposer=decompose2).prove(hyp)
    assert ev.proof is not None and set(ev.proof.fact_ids) == {"f1", "f2"}
    assert len(ev.proof.steps) == 3 and ev.proof.steps[-1].conclusion == "hypothesis"
    assert ev.proof.score == pytest.approx(min(s.score for s in ev.proof.steps))
    assert set(ev.proof.intermediates.values()) == {"the sun is a star", "a star produces heat"}


def test_bad_input(tmp_path: Path, store: KnowledgeStore) -> None:
    empty = KnowledgeStore.create(tmp_path / "empty", encoder=HashingEncoder())
    with pytest.raises(StoreError, match="empty"):
        Prover(empty, OverlapScorer()).prove("anything")
    with pytest.raises(InputError, match="empty"):
        Prover(store, OverlapScorer()).prove("  ")
    with pytest.raises(InputError, match="k must be"):
        ProverConfig(k=0)


def test_proof_json_roundtrip_fields(store: KnowledgeStore) -> None:
    ev = Prover(store, OverlapScorer()).prove("a magnet attracts iron nails")
    d = ev.proof.to_json()
    assert d["fact_ids"] == ["f4"] and d["texts"] == ["a magnet attracts iron nails"] and d["passed"] is True
    assert isinstance(np.float64(d["score"]), np.floating)
