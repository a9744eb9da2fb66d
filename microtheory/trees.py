"""Entailment trees: the data model, the EntailmentBank proof syntax, and the project's JSONL form.

A tree proves `hypothesis` from leaf sentences (`sentN`) through intermediate conclusions (`intN`).
The proof syntax is EntailmentBank's: `sent1 & sent3 -> int1: <text>; int1 & sent2 -> hypothesis;`.
Malformed proofs are rejected with the item id and the reason (TreeError), never repaired silently.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.jsonl import iter_jsonl, write_jsonl

HYPOTHESIS = "hypothesis"
_STEP_RE = re.compile(r"^\s*(?P<premises>[^>]+?)\s*->\s*(?P<conclusion>[A-Za-z]+\d*)\s*(?::\s*(?P<text>.*?))?\s*$")
_ID_RE = re.compile(r"^(sent|int)\d+$")


class TreeError(InputError):
    """A proof that cannot be a tree: unknown ids, a cycle, an empty step, no final hypothesis step."""

    def __init__(self, item_id: str, reason: str, path: str | None = None, line: int | None = None):
        self.item_id = item_id
        super().__init__(f"item {item_id}: {reason}", path, line)


@dataclass(frozen=True)
class Step:
    """One inference: the premises (sentence ids) entail the conclusion (`intN` or `hypothesis`)."""

    premises: tuple[str, ...]
    conclusion: str


@dataclass(frozen=True)
class EntailmentTree:
    """A proof of `hypothesis`. `sentences` holds the leaf (`sentN`) and intermediate (`intN`) texts.

    `sentences` may hold leaves no step uses (EntailmentBank task 2 distractors); `leaves` are the
    ones the proof actually uses. `meta` carries reader-specific extras (question text, answer,
    WorldTree uuids of leaves as {"uuids": {sentN: uuid}}, ...).
    """

    id: str
    question_id: str
    hypothesis: str
    sentences: dict[str, str]
    steps: tuple[Step, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def leaves(self) -> tuple[str, ...]:
        """Leaf ids used by the proof, in order of first use."""
        seen: dict[str, None] = {}
        for step in self.steps:
            for p in step.premises:
                if p.startswith("sent"):
                    seen.setdefault(p, None)
        return tuple(seen)

    @property
    def intermediates(self) -> tuple[str, ...]:
        return tuple(s.conclusion for s in self.steps if s.conclusion != HYPOTHESIS)

    def text(self, sid: str) -> str:
        return self.hypothesis if sid == HYPOTHESIS else self.sentences[sid]

    def leaf_texts(self) -> list[str]:
        return [self.sentences[s] for s in self.leaves]

    def step_texts(self) -> list[tuple[list[str], str]]:
        """Each step as (premise texts, conclusion text): what an entailment scorer judges."""
        return [([self.text(p) for p in s.premises], self.text(s.conclusion)) for s in self.steps]

    def proof_string(self, with_text: bool = True) -> str:
        parts = []
        for s in self.steps:
            head = " & ".join(s.premises) + " -> " + s.conclusion
            if with_text and s.conclusion != HYPOTHESIS:
                head += ": " + self.sentences[s.conclusion]
            parts.append(head + ";")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The project's JSONL tree record (docs/formats.md)."""
        d: dict[str, Any] = {"id": self.id, "question_id": self.question_id, "hypothesis": self.hypothesis,
                             "sentences": dict(self.sentences), "proof": self.proof_string(with_text=False)}
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | None = None, line: int | None = None) -> EntailmentTree:
        item_id = str(d.get("id") or d.get("question_id") or "?")
        for key in ("hypothesis", "sentences", "proof"):
            if key not in d:
                raise TreeError(item_id, f"missing field '{key}'", path, line)
        if not isinstance(d["sentences"], dict):
            raise TreeError(item_id, "'sentences' must be an object {sentN: text}", path, line)
        return build_tree(item_id, str(d.get("question_id") or item_id), str(d["hypothesis"]),
                          {str(k): str(v) for k, v in d["sentences"].items()}, str(d["proof"]),
                          meta=dict(d.get("meta") or {}), path=path, line=line)


def parse_proof(proof: str, item_id: str = "?", path: str | None = None,
                line: int | None = None) -> tuple[list[Step], dict[str, str]]:
    """Parse `sent1 & sent2 -> int1: text; int1 & sent3 -> hypothesis;` into steps and inline int texts."""
    proof = proof.strip()
    if proof.startswith("$proof$"):
        proof = proof[len("$proof$"):].lstrip(" =")
    steps: list[Step] = []
    texts: dict[str, str] = {}
    for raw in proof.split(";"):
        if not raw.strip():
            continue
        m = _STEP_RE.match(raw)
        if not m:
            raise TreeError(item_id, f"cannot parse proof step {raw.strip()!r}", path, line)
        premises = tuple(p.strip() for p in m.group("premises").split("&"))
        if not premises or any(not p for p in premises):
            raise TreeError(item_id, f"step {raw.strip()!r} has an empty premise", path, line)
        conclusion = m.group("conclusion")
        if conclusion != HYPOTHESIS and not conclusion.startswith("int"):
            raise TreeError(item_id, f"step concludes {conclusion!r}: conclusions must be intN or hypothesis",
                            path, line)
        if m.group("text"):
            texts[conclusion] = m.group("text").strip()
        steps.append(Step(premises, conclusion))
    return steps, texts


def build_tree(item_id: str, question_id: str, hypothesis: str, sentences: dict[str, str], proof: str,
               meta: dict[str, Any] | None = None, path: str | None = None,
               line: int | None = None) -> EntailmentTree:
    """Parse and validate a proof against its sentences; raise TreeError naming the item and the reason."""
    steps, inline = parse_proof(proof, item_id, path, line)
    sentences = dict(sentences)
    for k, v in inline.items():
        sentences.setdefault(k, v)
    validate(item_id, hypothesis, sentences, steps, path, line)
    return EntailmentTree(item_id, question_id, hypothesis, sentences, tuple(steps), meta or {})


def validate(item_id: str, hypothesis: str, sentences: dict[str, str], steps: list[Step],
             path: str | None = None, line: int | None = None) -> None:
    def fail(reason: str) -> None:
        raise TreeError(item_id, reason, path, line)

    if not hypothesis.strip():
        fail("empty hypothesis")
    if not steps:
        fail("the proof has no steps")
    concluded: dict[str, Step] = {}
    for s in steps:
        if not s.premises:
            fail(f"a step concluding {s.conclusion} has no premises")
        if s.conclusion in concluded:
            fail(f"{s.conclusion} is concluded by two steps")
        concluded[s.conclusion] = s
    if HYPOTHESIS not in concluded:
        fail("no final step concludes 'hypothesis'")
    if steps[-1].conclusion != HYPOTHESIS:
        fail("the last step must conclude 'hypothesis'")
    for s in steps:
        for p in s.premises:
            if p == HYPOTHESIS:
                fail("'hypothesis' is used as a premise")
            if not _ID_RE.match(p):
                fail(f"unknown sentence id {p!r}")
            if p.startswith("sent") and p not in sentences:
                fail(f"unknown sentence id {p!r} (not in the context)")
            if p.startswith("int") and p not in concluded:
                fail(f"{p} is used but no step concludes it")
        if s.conclusion != HYPOTHESIS and not sentences.get(s.conclusion, "").strip():
            fail(f"{s.conclusion} has no text")
    # Cycles: walk from the hypothesis through intermediate premises.
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for p in concluded[node].premises:
            if p in concluded:
                if state.get(p) == 1:
                    fail(f"cycle through {p}")
                if p not in state:
                    visit(p)
        state[node] = 2

    visit(HYPOTHESIS)


# --- the project's JSONL trees -------------------------------------------------------------------

def read_trees_jsonl(path: str | Path) -> list[EntailmentTree]:
    trees = [EntailmentTree.from_json(obj, str(path), n) for n, obj in iter_jsonl(path)]
    if not trees:
        raise InputError("no trees in file", str(path))
    return trees


def write_trees_jsonl(trees: Iterable[EntailmentTree], path: str | Path) -> int:
    """Write atomically (temp file, then rename); returns the number written."""
    return write_jsonl(path, (t.to_json() for t in trees))
