"""Replay recorded generations: population, distillation and critique without a live model.

Sources, detected per file from its first record:

- the project's generations JSONL: {"question_id", "hypothesis", "generator", "prompt_id", "premises": [...]}
  (one proposed premise set for `hypothesis` per line; `corpora/generations.jsonl` is one);
- trees, in the project's JSONL form ({"sentences", "proof", ...}), EntailmentBank `angles` train
  ({"input", "output"}) or EntailmentBank dev ({"context", "proof", "meta"}): every step of a tree
  becomes a recorded decomposition of its conclusion (hypothesis -> premises, intN -> premises),
  so that a recursive search can replay a whole tree.

`generate` finds the statement on the prompt's `Statement:` line (or takes the whole prompt as the
statement) and answers with up to n recorded premise sets, as numbered lists, the way a model would.
An unknown statement gets no candidates.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.jsonl import iter_jsonl
from microtheory.generators.base import BaseGenerator, SamplingParams
from microtheory.prompts import extract_statement, prompt_id_of
from microtheory.tree_files import TREE_FORMATS, detect_tree_format, first_record


def statement_key(text: str) -> str:
    """How replay matches statements: casefolded words, no punctuation."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@dataclass(frozen=True)
class Recorded:
    """One recorded decomposition: `premises` entail `statement`."""

    statement: str
    premises: tuple[str, ...]
    question_id: str | None = None
    generator: str | None = None
    prompt_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _from_generations(path: Path) -> Iterator[Recorded]:
    for n, obj in iter_jsonl(path):
        prem = obj.get("premises")
        hyp = obj.get("hypothesis")
        if not isinstance(hyp, str) or not hyp.strip():
            raise InputError("generation record without a 'hypothesis' string", str(path), n)
        if not isinstance(prem, list) or not all(isinstance(p, str) for p in prem):
            raise InputError("'premises' must be a list of strings", str(path), n)
        yield Recorded(hyp, tuple(p for p in prem if p.strip()), obj.get("question_id"),
                       obj.get("generator"), obj.get("prompt_id"), {"raw": obj["raw"]} if "raw" in obj else {})


def _from_trees(trees: Sequence[Any], source: str) -> Iterator[Recorded]:
    for t in trees:
        for premises, conclusion in t.step_texts():
            yield Recorded(conclusion, tuple(premises), t.question_id, source, "tree")


def read_recorded(path: str | Path) -> list[Recorded]:
    """All recorded decompositions in one file (format detected from its first record)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("replay file not found", str(p))
    first = first_record(p)
    if first is None:
        raise InputError("replay file is empty", str(p))
    if "premises" in first:
        return list(_from_generations(p))
    fmt = detect_tree_format(first)
    if fmt is None:
        raise InputError("not a replayable file: expected generation records (with 'premises') or entailment "
                         f"trees (project JSONL or EntailmentBank); first record has keys {sorted(first)[:8]}",
                         str(p), 1)
    source = f"trees:{p.name}" if fmt == "jsonl" else f"entailmentbank:{p.name}"
    return list(_from_trees(TREE_FORMATS.get(fmt)(p), source))


class ReplayGenerator(BaseGenerator):
    """Answers decomposition prompts with recorded premise sets instead of sampling a model."""

    def __init__(self, paths: str | Path | Sequence[str | Path], *, name: str | None = None):
        super().__init__()
        self.paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        if not self.paths:
            raise InputError("replay needs at least one file")
        self.name = name or "replay:" + ",".join(p.name for p in self.paths)
        self._index: dict[str, list[Recorded]] | None = None

    def _load(self) -> dict[str, list[Recorded]]:
        if self._index is None:
            index: dict[str, list[Recorded]] = {}
            for p in self.paths:
                for r in read_recorded(p):
                    sets = index.setdefault(statement_key(r.statement), [])
                    # Recorded raw answers replay one for one (junk included); premise sets once each.
                    if "raw" in r.extra or all(statement_key(" ".join(r.premises)) != statement_key(" ".join(s.premises))
                                               for s in sets):
                        sets.append(r)
            self._index = index
        return self._index

    def lookup(self, statement: str) -> list[Recorded]:
        """The recorded decompositions of `statement` (in file order)."""
        return list(self._load().get(statement_key(statement), []))

    def statements(self) -> list[str]:
        return [recs[0].statement for recs in self._load().values()]

    def sentences(self) -> list[str]:
        """Every distinct premise sentence recorded, in first-seen order."""
        seen: dict[str, str] = {}
        for recs in self._load().values():
            for r in recs:
                for s in r.premises:
                    seen.setdefault(statement_key(s), s)
        return list(seen.values())

    def _generate_one(self, prompt: str, n: int, params: SamplingParams) -> list[str]:
        self.stats.calls += 1
        statement = extract_statement(prompt) or prompt
        recs = self.lookup(statement)
        pid = prompt_id_of(prompt)
        if any(r.prompt_id == pid for r in recs):
            # Answers recorded for this very prompt: replay those (a live run's record).
            recs = [r for r in recs if r.prompt_id == pid]
        return [r.extra["raw"] if "raw" in r.extra else "\n".join(f"{i}. {p}" for i, p in enumerate(r.premises, 1))
                for r in recs[:n]]


def write_generations(records: Sequence[Recorded], path: str | Path) -> int:
    """Write recorded decompositions as the project's generations JSONL (atomically)."""
    from core.jsonl import write_jsonl

    return write_jsonl(path, ({"question_id": r.question_id, "hypothesis": r.statement, "generator": r.generator,
                               "prompt_id": r.prompt_id, "premises": list(r.premises)} for r in records))


class RecordingGenerator(BaseGenerator):
    """Wraps a generator and appends every answer to a generations JSONL that `replay:` reads back.

    Lets an expensive live run be re-scored later (another scorer, threshold or store) without
    sampling the model again. Each line: {"hypothesis" (the prompt's statement), "generator",
    "prompt_id", "raw", "premises" (parsed; [] when nothing parsed)}; appended and flushed per prompt.
    """

    def __init__(self, inner: Any, path: str | Path, *, question_id: str | None = None):
        super().__init__()
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = str(getattr(inner, "name", type(inner).__name__))
        self.question_id = question_id
        self.stats = getattr(inner, "stats", self.stats)

    def generate(self, prompts: Sequence[str] | str, n: int = 1, **kw: Any) -> list[list[str]]:
        from microtheory.prompts import parse_premises, prompt_id_of

        plist = [prompts] if isinstance(prompts, str) else list(prompts)
        out = self.inner.generate(plist, n, **kw)
        with open(self.path, "a", encoding="utf-8") as fh:
            for prompt, cands in zip(plist, out):
                statement = extract_statement(prompt) or prompt
                for text in cands:
                    fh.write(json.dumps({"question_id": self.question_id, "hypothesis": statement,
                                         "generator": self.name, "prompt_id": prompt_id_of(prompt), "raw": text,
                                         "premises": parse_premises(text, statement)}, ensure_ascii=False) + "\n")
            fh.flush()
        return out
