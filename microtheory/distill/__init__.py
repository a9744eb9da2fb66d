"""Distillation: canonicalise a knowledge store, build the question-proof-fact graph, select a
microtheory by a coverage strategy, measure p-relevance, and write a microtheory directory."""
from __future__ import annotations

from microtheory.distill.api import DistillResult, compare, distill
from microtheory.distill.graph import Coverage, DistillGraph
from microtheory.distill.microtheory_dir import Microtheory, read_microtheory, write_microtheory
from microtheory.distill.strategies import STRATEGIES, Selection, select

__all__ = ["STRATEGIES", "Coverage", "DistillGraph", "DistillResult", "Microtheory", "Selection", "compare",
           "distill", "read_microtheory", "select", "write_microtheory"]
