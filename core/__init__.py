"""The project-wide base that every package imports: errors, the data model, JSONL and atomic files.

`core` imports no other package of the project (layers: cli -> pipeline -> critique, microtheory
-> retrieval -> core).
"""
from __future__ import annotations

from core.errors import MicrotheoryError
from core.types import Fact, Proof, Question

__all__ = ["Fact", "MicrotheoryError", "Proof", "Question"]
