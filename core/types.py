"""The shared data model: frozen dataclasses that serialise to plain JSON.

`Fact`, `Question` and `Proof` live here (not in `microtheory`) because the store and the prover
need them and `retrieval` must not import the packages above it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FACT_SOURCES = ("corpus", "generated", "microtheory")


@dataclass(frozen=True)
class Fact:
    """A sentence with where it came from.

    `source` is one of FACT_SOURCES. `provenance` is a list of records such as
    {"corpus": "worldtree", "uuid": ...} or {"question_id": ..., "proof_id": ..., "generator": ...};
    deduplication in the store merges these lists instead of adding a second copy of the text.
    """

    id: str
    text: str
    source: str = "corpus"
    provenance: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Fact:
        return cls(id=str(d["id"]), text=str(d["text"]), source=str(d.get("source", "corpus")),
                   provenance=list(d.get("provenance") or []))


@dataclass(frozen=True)
class Question:
    """A multiple-choice question. `options` maps label ("A") to option text."""

    id: str
    stem: str
    options: dict[str, str]
    answer_key: str | None = None
    topic: str | None = None
    hypothesis: str | None = None  # the gold hypothesis (question + answer as a statement), when known

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Question:
        return cls(id=str(d["id"]), stem=str(d["stem"]), options={str(k): str(v) for k, v in d["options"].items()},
                   answer_key=d.get("answer_key"), topic=d.get("topic"), hypothesis=d.get("hypothesis"))


@dataclass(frozen=True)
class Proof:
    """What coverage needs of a proof: the question it proves and the fact ids of its leaves."""

    question_id: str
    proof_id: str
    hypothesis: str
    leaves: tuple[str, ...]
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["leaves"] = list(self.leaves)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Proof:
        return cls(question_id=str(d["question_id"]), proof_id=str(d["proof_id"]), hypothesis=str(d["hypothesis"]),
                   leaves=tuple(d["leaves"]), score=d.get("score"))
