"""Model outputs to critique: the record and a forgiving-per-row JSONL reader.

Schema (one JSON object a line; docs/critique_data.md documents it):
    {"id": "q1", "question": "Which ...?", "options": {"A": "...", "B": "..."}, "answer_key": "B",
     "explanation": "...", "predicted_answer": "B"}
Digital Socrates field names are accepted too: `question` with the options inline
("Which ...? (A) sand (B) clay"), `answer` for `predicted_answer`, `answerKey` for `answer_key`,
and options as a list of {"label", "text"} (ARC style). A bad row becomes an `InputError`
for that row (file:line: what is wrong); reading goes on.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError

_INLINE = re.compile(r"\(([A-Z]|[1-9])\)\s*")


@dataclass(frozen=True)
class ModelOutput:
    """One student model's answer to a multiple-choice question, with its explanation.

    `predicted_answer` is an option label (normalised from "(B)", "B." or the option's text when
    those match an option); it stays as given when it matches no option.
    """

    id: str
    question: str
    options: dict[str, str]
    answer_key: str
    explanation: str
    predicted_answer: str

    @property
    def predicted_label(self) -> str | None:
        return self.predicted_answer if self.predicted_answer in self.options else None

    def question_with_options(self) -> str:
        """The question with its options inline, as the DS prompt writes it."""
        return self.question + " " + " ".join(f"({k}) {v}" for k, v in self.options.items())

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "options": dict(self.options),
                "answer_key": self.answer_key, "explanation": self.explanation,
                "predicted_answer": self.predicted_answer}


@dataclass(frozen=True)
class Row:
    """One input line: its record, or the error that kept it from being one."""

    line: int
    id: str
    record: ModelOutput | None = None
    error: InputError | None = None


def split_inline_options(question: str) -> tuple[str, dict[str, str]]:
    """"Stem? (A) x (B) y" -> ("Stem?", {"A": "x", "B": "y"}); no inline options -> (question, {})."""
    parts = _INLINE.split(question)
    if len(parts) < 5:  # need at least two options
        return question.strip(), {}
    stem, rest = parts[0].strip(), parts[1:]
    options = {rest[i]: rest[i + 1].strip() for i in range(0, len(rest) - 1, 2)}
    return stem, options


_ABBREV = {"e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "dr.", "st.", "approx.", "no.", "fig."}
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Explanation text -> sentences: split after . ! ? and whitespace, not after common abbreviations
    or initials ("U.S."). The critic's flaw head points at these sentences, so training data is built
    to split back exactly with this function."""
    text = " ".join(text.split())
    if not text:
        return []
    out: list[str] = []
    start = 0
    for m in _SPLIT.finditer(text):
        piece = text[start:m.start()].strip()
        last = piece.rsplit(" ", 1)[-1].lower()
        if last in _ABBREV or re.fullmatch(r"(?:[a-z]\.)+", last):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def _resolve_label(raw: Any, options: dict[str, str]) -> str | None:
    if raw is None:
        return None
    s = str(raw).strip()
    if s in options:
        return s
    m = re.fullmatch(r"\(?([A-Za-z0-9])[).:]?(?:\s+.*)?", s)
    if m and m.group(1).upper() in options:
        return m.group(1).upper()
    by_text = {_norm(v): k for k, v in options.items()}
    return by_text.get(_norm(s))


def parse_model_output(d: Any, path: str | None = None, line: int | None = None) -> ModelOutput:
    """One JSON object -> ModelOutput; InputError(path, line) naming the missing or bad field."""
    def err(msg: str) -> InputError:
        return InputError(msg, path, line)

    if not isinstance(d, dict):
        raise err(f"expected a JSON object, got {type(d).__name__}")
    rid = str(d.get("id") if d.get("id") is not None else f"line{line}")
    question = d.get("question", d.get("stem"))
    if isinstance(question, dict):  # ARC style {"stem", "choices"}
        d = {**d, "options": d.get("options") or question.get("choices"), "question": question.get("stem")}
        question = question.get("stem")
    if not isinstance(question, str) or not question.strip():
        raise err("missing field 'question'")
    options_raw = d.get("options", d.get("choices"))
    options: dict[str, str]
    if isinstance(options_raw, dict):
        options = {str(k).strip(): str(v).strip() for k, v in options_raw.items()}
    elif isinstance(options_raw, list):
        try:
            options = {str(o["label"]).strip(): str(o["text"]).strip() for o in options_raw}
        except (TypeError, KeyError):
            raise err("'options' as a list must hold {\"label\", \"text\"} objects") from None
    elif options_raw is None:
        question, options = split_inline_options(question)
    else:
        raise err(f"'options' must be an object label -> text, got {type(options_raw).__name__}")
    if len(options) < 2:
        raise err("missing field 'options' (give an object {\"A\": ..., \"B\": ...} or inline '(A) ... (B) ...')")
    explanation = d.get("explanation")
    if not isinstance(explanation, str) or not explanation.strip():
        raise err("missing field 'explanation'")
    key_raw = d.get("answer_key", d.get("answerKey"))
    if key_raw is None or str(key_raw).strip() == "":
        raise err("missing field 'answer_key'")
    key = _resolve_label(key_raw, options)
    if key is None:
        raise err(f"unknown answer key {key_raw!r}: options are {', '.join(options)}")
    pred_raw = d.get("predicted_answer", d.get("answer"))
    if pred_raw is None or str(pred_raw).strip() == "":
        raise err("missing field 'predicted_answer'")
    pred = _resolve_label(pred_raw, options) or str(pred_raw).strip()
    return ModelOutput(id=rid, question=question.strip(), options=options, answer_key=key,
                       explanation=explanation.strip(), predicted_answer=pred)


def iter_rows(path: str | Path) -> Iterator[Row]:
    """Every non-blank line of a JSONL file as a Row (record or per-row error), in file order.

    A line that is not UTF-8, not JSON or lacks a field is a Row with its `file:line` error;
    reading goes on. Only a missing or unreadable file raises."""
    from core.jsonl import iter_jsonl

    p = Path(path)
    if not p.exists():
        raise InputError("input file not found", str(p))
    bad: list[InputError] = []  # filled by iter_jsonl before it yields the next good line
    for n, d in iter_jsonl(p, on_error=bad.append):
        yield from (Row(e.line or 0, f"line{e.line}", error=e) for e in bad)
        bad.clear()
        rid = str(d.get("id")) if d.get("id") is not None else f"line{n}"
        try:
            yield Row(n, rid, record=parse_model_output(d, str(p), n))
        except InputError as e:
            yield Row(n, rid, error=e)
    yield from (Row(e.line or 0, f"line{e.line}", error=e) for e in bad)


def read_model_outputs(path: str | Path) -> list[ModelOutput]:
    """All records of a JSONL file; the first bad row raises its InputError (use iter_rows to go on)."""
    out = []
    for row in iter_rows(path):
        if row.error is not None:
            raise row.error
        assert row.record is not None
        out.append(row.record)
    return out
