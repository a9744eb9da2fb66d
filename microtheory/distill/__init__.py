"""Distillation: canonicalise a knowledge store, build the question-proof-fact graph, select a
microtheory by a coverage strategy, measure p-relevance, and write a microtheory directory."""
from __future__ import annotations

from microtheory.distill.graph import Coverage, DistillGraph
from microtheory.distill.strategies import STRATEGIES, Selection, select

__all__ = ["STRATEGIES", "Coverage", "DistillGraph", "Selection", "select"]
