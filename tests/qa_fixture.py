"""A prover over a tiny hashed-vector store with the word-overlap scorer: the QA tests' test double."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.types import Fact
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from retrieval.prover import Prover
from retrieval.store import KnowledgeStore


def overlap_prover(folder: Path, facts: Sequence[Fact]) -> Prover:
    """A saved store of `facts` at `folder` and a prover that accepts only full word overlap."""
    ks = KnowledgeStore.create(folder, encoder=HashingEncoder())
    ks.add(list(facts))
    ks.save()
    return Prover(ks, OverlapScorer(threshold=0.99))
