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


def test_hybrid_retrieval_adds_bm25_hits_with_their_cosines(store: KnowledgeStore) -> None:
    hyp = "a magnet attracts iron nails"
    dense = Prover(store, OverlapScorer(), config=ProverConfig(k=1, k_sparse=0)).retrieve([hyp])[0]
    assert [c.id for c in dense] == ["f4"] and dense[0].bm25 == 0.0
    hybrid = Prover(store, OverlapScorer(), config=ProverConfig(k=1, k_sparse=3)).retrieve([hyp + " sunlight"])[0]
    ids = [c.id for c in hybrid]
    assert ids[0] == "f4" and "f5" in ids  # "sunlight" only BM25 brought in
    f5 = next(c for c in hybrid if c.id == "f5")
    assert f5.bm25 > 0 and f5.fused > 0
    full = {h.fact.id: h.score for h in store.search(hyp + " sunlight", k=6)}
    assert f5.score == pytest.approx(full["f5"], abs=1e-5)  # the cosine, read from the stored vector
    assert hybrid[0].fused > f5.fused  # found by both lists, so ranked above a BM25-only hit


def test_store_bm25_index_is_used_when_the_store_keeps_one(store: KnowledgeStore) -> None:
    from retrieval.bm25 import BM25Index

    class WithIndex:
        def __init__(self, ks):
            self.ks, self.bm25 = ks, BM25Index.build([("f3", "gravity causes objects to fall toward the ground")])

        def __getattr__(self, name):
            return getattr(self.ks, name)

        def __len__(self):
            return len(self.ks)

        def __iter__(self):
            return iter(self.ks)

    p = Prover(WithIndex(store), OverlapScorer(), config=ProverConfig(k=1, k_sparse=5))
    assert {c.id for c in p.retrieve(["magnet gravity"])[0]} <= {"f3", "f4"}
    assert not [k for k in p._bm25 if isinstance(k, int)]  # no index built: the store's own answered


def test_chaining_extends_a_failing_set_with_what_it_leaves_unexplained(store: KnowledgeStore) -> None:
    hyp = "the sun produces light and heat as a star"
    cfg = dict(k=2, k_sparse=0, singles=1, pair_pool=0, max_pairs=0, triple_pool=0, max_triples=0)
    flat = Prover(store, OverlapScorer(threshold=0.99), config=ProverConfig(max_depth=1, **cfg)).prove(hyp)
    assert flat.proof is None and flat.chain_score == 0.0
    sc = CountingScorer(threshold=0.99)
    ev = Prover(store, sc, config=ProverConfig(max_depth=2, chain_seeds=1, chain_k=1, **cfg)).prove(hyp)
    assert len(sc.batches) == 2  # depth 1, then all chained sets in one more batch
    assert ev.proof is not None and set(ev.proof.fact_ids) == {"f1", "f2"}
    chain = ev.proof.chain
    assert chain is not None and chain["added"] in {"f1", "f2"} and chain["seed"] != [chain["added"]]
    assert set(chain["unexplained"]) <= {"produce", "light", "heat", "sun", "star"} and chain["unexplained"]
    assert ev.proof.to_json()["chain"] == chain and ev.scored == flat.scored + 1
    assert ev.chain_score == pytest.approx(ev.proof.score) and ev.chained[0][0] == 0


def test_encode_cache_overflow_keeps_the_texts_of_the_call(tmp_path: Path) -> None:
    # A full cache is cleared before the lookup: texts cached earlier in the same call are not lost.
    store = KnowledgeStore.create(tmp_path / "ov", encoder=HashingEncoder())
    store.add([Fact("a", "the sun is a star")])
    p = Prover(store, OverlapScorer())
    p.encode(["the sun"])
    p._vectors.update({f"filler {i}": np.zeros(1) for i in range(4100)})
    out = p.encode(["the sun", "a new text"])
    assert out is not None and out.shape[0] == 2 and np.linalg.norm(out[0]) > 0
