"""Retrieval layer: encoder, FAISS knowledge store, entailment scorer, prover and grounded QA.

Imports neither `microtheory` nor `critique` (dependencies point one way:
cli -> critique, microtheory -> retrieval).
"""
from __future__ import annotations

from core.errors import MicrotheoryError
from core.types import Fact, Proof, Question

__all__ = ["Fact", "MicrotheoryError", "Proof", "Question"]
