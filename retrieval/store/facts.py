"""Facts, deduplication and provenance: the part of a store that knows nothing of vectors or files.

A `FactTable` holds facts in row order (row i is vector i of the index) with two look-ups: by id
and by normalised text. `plan_add` decides, without changing anything, which incoming facts are
new, which merge their provenance into a stored (or earlier incoming) fact, and which id each one
is stored under; `apply` then commits the plan in memory. Splitting the two lets a caller encode
the new texts between them, so that a failed encode leaves the table untouched.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np

from core.errors import InputError
from core.types import FACT_SOURCES, Fact

_WS = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.,;:!?]+$")


def normalise_text(text: str) -> str:
    """The deduplication key: casefolded, whitespace collapsed, trailing punctuation stripped."""
    return _TRAILING.sub("", _WS.sub(" ", text.casefold()).strip())


def fact_id_for(text: str) -> str:
    """A stable id for a fact given without one: a hash of its normalised text."""
    return "f" + hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Hit:
    """One search result: the stored fact (with its provenance) and its cosine similarity to the query."""

    fact: Fact
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, **self.fact.to_json()}


@dataclass(frozen=True)
class AddResult:
    """What `add` did. `ids` maps each input fact's id (or its generated id) to the stored id:
    the existing fact's id when the text was a duplicate."""

    added: int
    merged: int
    ids: dict[str, str] = field(default_factory=dict)


def _prov_key(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def merge_provenance(base: list[dict[str, Any]], extra: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`base` followed by the records of `extra` it does not already hold (order kept)."""
    seen = {_prov_key(r) for r in base}
    out = list(base)
    for r in extra:
        k = _prov_key(r)
        if k not in seen:
            seen.add(k)
            out.append(dict(r))
    return out


@dataclass
class AddPlan:
    """What `FactTable.apply` will do: append `new`, merge `merges` (row -> provenance)."""

    new: list[Fact] = field(default_factory=list)
    merges: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    merged: int = 0


def _check_fact(f: Any) -> str:
    """The fact's stripped text; TypeError / InputError for what a store cannot hold."""
    if not isinstance(f, Fact):
        raise TypeError(f"add() takes Fact objects, got {type(f).__name__}")
    text = f.text.strip()
    if not text:
        raise InputError(f"fact {f.id!r} has empty text")
    if f.source not in FACT_SOURCES:
        raise InputError(f"fact {f.id!r} has source {f.source!r}; expected one of {', '.join(FACT_SOURCES)}")
    return text


class FactTable:
    """Facts in row order with look-ups by id and by normalised text."""

    def __init__(self, facts: Iterable[Fact] = ()):
        self.facts: list[Fact] = []
        self.row_of_id: dict[str, int] = {}
        self.row_of_norm: dict[str, int] = {}
        self._source_rows: dict[str, np.ndarray] = {}
        self.reset(list(facts))

    def reset(self, facts: list[Fact]) -> None:
        self.facts = facts
        self.row_of_id = {f.id: i for i, f in enumerate(facts)}
        self.row_of_norm = {normalise_text(f.text): i for i, f in enumerate(facts)}
        self._source_rows.clear()

    def __len__(self) -> int:
        return len(self.facts)

    def find_text(self, text: str) -> Fact | None:
        row = self.row_of_norm.get(normalise_text(text))
        return None if row is None else self.facts[row]

    def _free_id(self, wanted: str, text: str, taken: set[str]) -> str:
        """`wanted`, or `<wanted>#<hash>` (then `-2`, `-3`...) when a different text already uses it."""
        stored_id, n = wanted, 2
        if stored_id in self.row_of_id or stored_id in taken:
            stored_id = f"{wanted}#{fact_id_for(text)[1:9]}"
            while stored_id in self.row_of_id or stored_id in taken:
                stored_id = f"{wanted}#{fact_id_for(text)[1:9]}-{n}"
                n += 1
        return stored_id

    def plan_add(self, facts: Iterable[Fact]) -> AddPlan:
        """Validate and deduplicate `facts` against the table and each other; changes nothing.

        A fact whose normalised text is stored (or earlier in `facts`) merges its provenance. A fact
        with an empty id gets `fact_id_for(text)`; an id used by a different text becomes `<id>#<hash>`.
        """
        plan = AddPlan()
        new_norm: dict[str, int] = {}
        taken: set[str] = set()
        for f in facts:
            text = _check_fact(f)
            norm = normalise_text(text)
            in_id = f.id or fact_id_for(text)
            row = self.row_of_norm.get(norm)
            if row is not None:
                plan.merges.setdefault(row, []).extend(f.provenance)
                plan.ids[in_id] = self.facts[row].id
                plan.merged += 1
                continue
            j = new_norm.get(norm)
            if j is not None:
                old = plan.new[j]
                plan.new[j] = replace(old, provenance=merge_provenance(old.provenance, f.provenance))
                plan.ids[in_id] = old.id
                plan.merged += 1
                continue
            stored_id = self._free_id(in_id, text, taken)
            new_norm[norm] = len(plan.new)
            taken.add(stored_id)
            plan.new.append(Fact(id=stored_id, text=text, source=f.source,
                                 provenance=merge_provenance([], f.provenance)))
            plan.ids[in_id] = stored_id
        return plan

    def apply(self, plan: AddPlan) -> bool:
        """Commit a plan (cannot fail half-way); True when anything changed."""
        changed = False
        for row, prov in plan.merges.items():
            old = self.facts[row]
            merged = merge_provenance(old.provenance, prov)
            if len(merged) != len(old.provenance):
                self.facts[row] = replace(old, provenance=merged)
                changed = True
        start = len(self.facts)
        for i, f in enumerate(plan.new):
            self.facts.append(f)
            self.row_of_id[f.id] = start + i
            self.row_of_norm[normalise_text(f.text)] = start + i
        if plan.new:
            self._source_rows.clear()
            changed = True
        return changed

    def keep_rows(self, keep: np.ndarray) -> None:
        self.reset([self.facts[int(i)] for i in keep])

    def rows_of_source(self, source: str) -> np.ndarray:
        """Row numbers of the facts of one source (cached until the facts change)."""
        rows = self._source_rows.get(source)
        if rows is None:
            rows = np.array([i for i, f in enumerate(self.facts) if f.source == source], dtype=np.int64)
            self._source_rows[source] = rows
        return rows

    def source_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.facts:
            counts[f.source] = counts.get(f.source, 0) + 1
        return counts
