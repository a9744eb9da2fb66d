"""One typed result per stage of a run. Each carries what later stages need (open stores, the
questions, the microtheory's facts) and `record()`: the stage's entry in summary.json."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.types import Fact, Question


class Skip(Exception):
    """A stage cannot run here (code not landed, shipped weights absent, an upstream stage missing)."""


@dataclass
class Models:
    """The encoder every store of the run uses, and the entailment scorer (None when it cannot be
    loaded: `scorer_error` says why, and the stages that need it are skipped)."""

    encoder: Any
    scorer: Any | None = None
    scorer_error: str | None = None


@dataclass
class InputsResult:
    models: Models
    test_questions: list[Question]
    train_questions: list[Question]
    # Ids of the training questions, when known: only their trees may enter the knowledge store.
    train_ids: set[str] | None = None

    def record(self) -> dict[str, Any]:
        scorer = self.models.scorer
        rec: dict[str, Any] = {"test_questions": len(self.test_questions), "train_questions": len(self.train_questions),
                               "encoder": getattr(self.models.encoder, "name", "?"),
                               "scorer": type(scorer).__name__ if scorer is not None else None}
        if scorer is None:
            rec["scorer_error"] = self.models.scorer_error
        return rec


@dataclass
class CorpusResult:
    store: Any = field(repr=False)  # the open KnowledgeStore of the general corpus
    texts: list[str] = field(repr=False)
    facts_read: int
    facts: int
    merged_duplicates: int
    encoder: str
    path: str

    def record(self) -> dict[str, Any]:
        return {"facts_read": self.facts_read, "facts": self.facts, "merged_duplicates": self.merged_duplicates,
                "encoder": self.encoder, "path": self.path}


@dataclass
class TreeCounts:
    """How the trees went into the knowledge store (`microtheory.trees_to_store.add_trees`)."""

    trees_file: str
    trees: int
    facts_added: int
    facts_merged: int
    proofs_added: int


@dataclass
class PopulateCounts:
    """What populate did (`microtheory.populate.PopulateSummary`, the numbers a run reports)."""

    generator: str
    questions: int
    proved: int
    unproved: int
    failed: int
    sentences_kept: int
    sentences_rejected: int
    candidates: int
    accepted_candidates: int
    log: str


@dataclass
class KnowledgeResult:
    """The knowledge store, made from trees (`trees`) or by populate (`populated`)."""

    store: Any = field(repr=False)
    facts: int
    proofs: int
    path: str
    trees: TreeCounts | None = None
    populated: PopulateCounts | None = None
    note: str | None = None

    @property
    def source(self) -> str:
        return "trees" if self.trees is not None else "generations"

    def record(self) -> dict[str, Any]:
        if self.trees is not None:
            t = self.trees
            rec: dict[str, Any] = {"source": "trees", "trees_file": t.trees_file, "trees": t.trees,
                                   "facts": self.facts, "facts_added": t.facts_added, "facts_merged": t.facts_merged,
                                   "proofs_added": t.proofs_added, "proofs": self.proofs, "path": self.path}
        else:
            p = self.populated
            assert p is not None
            rec = {"source": "generations", "generator": p.generator, "facts": self.facts, "proofs": self.proofs,
                   "questions": p.questions, "proved": p.proved, "unproved": p.unproved, "failed": p.failed,
                   "sentences_kept": p.sentences_kept, "sentences_rejected": p.sentences_rejected,
                   "candidates": p.candidates, "accepted_candidates": p.accepted_candidates, "path": self.path,
                   "log": p.log}
        if self.note:
            rec["note"] = self.note
        return rec


@dataclass
class MicrotheoryResult:
    """The distilled microtheory and its coverage of the training questions."""

    facts: list[Fact] = field(repr=False)  # source "microtheory", with provenance
    strategy: str
    budget: int
    questions_covered: int | None
    questions_total: int | None
    question_coverage: float | None
    proofs_complete: int | None
    proofs_total: int | None
    graph: dict[str, Any] | None
    canonicalised: bool
    merged: int
    heldout_trees: int
    heldout_source: str | None
    path: str
    note: str | None = None

    def record(self) -> dict[str, Any]:
        rec = {"strategy": self.strategy, "budget": self.budget, "size": len(self.facts),
               "questions_covered": self.questions_covered, "questions_total": self.questions_total,
               "question_coverage": self.question_coverage, "proofs_complete": self.proofs_complete,
               "proofs_total": self.proofs_total, "graph": self.graph, "canonicalised": self.canonicalised,
               "merged": self.merged, "heldout_trees": self.heldout_trees, "heldout_source": self.heldout_source,
               "path": self.path}
        if self.note:
            rec["note"] = self.note
        return rec


@dataclass
class QAResult:
    """Grounded QA on the held-out questions: `corpus` with the corpus alone, `with_microtheory`
    with the microtheory added (None when there was no microtheory to add)."""

    questions: int
    threshold: float
    corpus: dict[str, Any]
    with_microtheory: dict[str, Any] | None = None
    microtheory_facts_used: int | None = None
    path: str = "qa"
    note: str | None = None

    def record(self) -> dict[str, Any]:
        runs: dict[str, Any] = {"corpus": self.corpus}
        if self.with_microtheory is not None:
            runs["corpus+microtheory"] = self.with_microtheory
            runs["microtheory_facts_used"] = self.microtheory_facts_used
        rec: dict[str, Any] = {"questions": self.questions, "threshold": self.threshold, "runs": runs,
                               "path": self.path}
        if self.note:
            rec["note"] = self.note
        return rec


@dataclass
class CritiqueStageResult:
    """The batch critique of the model outputs, with advice grounded in the microtheory when there is one."""

    records: int
    counts: dict[str, Any]  # `pipeline.summary.critique_counts`: per_dimension, critiqued, errors, ...
    grounded: bool
    with_cited_facts: int
    backend: str
    batch_seconds: float
    input: str
    path: str
    note: str | None = None

    def record(self) -> dict[str, Any]:
        rec = {"records": self.records, **self.counts, "grounded": self.grounded,
               "with_cited_facts": self.with_cited_facts, "backend": self.backend, "input": self.input,
               "path": self.path, "batch_seconds": self.batch_seconds}
        if self.note:
            rec["note"] = self.note
        return rec
