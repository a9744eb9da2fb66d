"""Retrieval layer: encoder, FAISS knowledge store, entailment scorer, prover and grounded QA.

Imports only `core` (layers: cli -> pipeline -> critique -> microtheory -> retrieval -> core).
"""
from __future__ import annotations

from core.errors import MicrotheoryError
from core.types import Fact, Proof, Question

__all__ = ["Fact", "MicrotheoryError", "Proof", "Question"]
