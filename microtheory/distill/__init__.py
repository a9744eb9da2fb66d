"""Distillation: canonicalise a knowledge store, build the question-proof-fact graph, select a
microtheory by a registered coverage strategy, measure p-relevance, and write a microtheory directory."""
from __future__ import annotations

from microtheory.distill.api import DistillConfig, DistillResult, compare, distill
from microtheory.distill.graph import Coverage, DistillGraph
from microtheory.distill.microtheory_dir import Microtheory, read_microtheory, write_microtheory
from microtheory.distill.strategies import (
    STRATEGIES,
    Selection,
    SelectionRequest,
    Strategy,
    select,
    take_in_order,
)

__all__ = ["STRATEGIES", "Coverage", "DistillConfig", "DistillGraph", "DistillResult", "Microtheory", "Selection",
           "SelectionRequest", "Strategy", "compare", "distill", "read_microtheory", "select", "take_in_order",
           "write_microtheory"]
