"""The `Critique` record and the Digital Socrates (DS) text format (BACKGROUND.md section 3).

`Critique.to_ds()` renders the exact DS block; `parse_ds(text)` reads it back strictly: a missing
field, an unknown dimension or a score that is not an integer 0-5 raises `CritiqueFormatError`
naming the field. A score is never defaulted: a critique without one is not a critique.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from critique.errors import CritiqueFormatError
from critique.taxonomy import LABELS, NONE

NO_FLAW = "None"  # DS writes the main flaw and the specific advice as the string "None" when there is no flaw

HEADER = "The explanation states or suggests the following:"
REVISE = "Consider these points for revising the explanation:"

_FIELDS = {  # name in the record -> label in the DS block
    "main_flaw": "Main flaw (standalone statement)",
    "dimension": "Dimension",
    "general": "General",
    "specific": "Specific",
}
SCORE_LABEL = "Explanation score"


@dataclass(frozen=True)
class Critique:
    """One critique of one explanation.

    `dimension` is a taxonomy id (`none` for a sound explanation); `score` an integer 0 (very wrong)
    to 5 (completely correct); `flaw_sentence_index` the 0-based index of the explanation sentence
    that holds the main flaw (None when there is none or it is not a sentence of the explanation);
    `confidence` the model's probability for `dimension` (None for parsed text); `cited_facts` the
    knowledge facts the specific advice cites (grounded advice only).
    """

    main_flaw: str
    dimension: str
    general: str
    specific: str
    score: int
    flaw_sentence_index: int | None = None
    confidence: float | None = None
    cited_facts: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.dimension not in LABELS:
            raise CritiqueFormatError(f"unknown dimension {self.dimension!r}; expected one of {', '.join(LABELS)}")
        _check_score(self.score)
        for name in ("main_flaw", "general", "specific"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise CritiqueFormatError(f"field {name!r} must be a non-empty string, got {v!r}")
        if self.flaw_sentence_index is not None and (
                isinstance(self.flaw_sentence_index, bool) or not isinstance(self.flaw_sentence_index, int)
                or self.flaw_sentence_index < 0):
            raise CritiqueFormatError(f"flaw_sentence_index must be a non-negative integer or None, "
                                      f"got {self.flaw_sentence_index!r}")
        if not isinstance(self.cited_facts, tuple):
            object.__setattr__(self, "cited_facts", tuple(self.cited_facts))

    @property
    def flawed(self) -> bool:
        return self.dimension != NONE

    def to_ds(self) -> str:
        """The exact Digital Socrates text block."""
        flaw = self.main_flaw.replace("\n", " ").strip()
        return (
            f"{HEADER}\n"
            f"* {_FIELDS['main_flaw']}: \"{flaw}\"\n"
            f"* {_FIELDS['dimension']}: {self.dimension}\n"
            f"\n"
            f"{REVISE}\n"
            f"* {_FIELDS['general']}: {_one_line(self.general)}\n"
            f"* {_FIELDS['specific']}: {_one_line(self.specific)}\n"
            f"\n"
            f"{SCORE_LABEL}: {self.score}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "main_flaw": self.main_flaw, "dimension": self.dimension, "general": self.general,
            "specific": self.specific, "score": self.score, "flaw_sentence_index": self.flaw_sentence_index,
            "confidence": self.confidence, "cited_facts": list(self.cited_facts),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Critique:
        """Strict inverse of `to_json`: the five DS fields are required."""
        if not isinstance(d, dict):
            raise CritiqueFormatError(f"a critique must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("main_flaw", "dimension", "general", "specific", "score") if k not in d]
        if missing:
            raise CritiqueFormatError(f"critique is missing field(s): {', '.join(missing)}")
        conf = d.get("confidence")
        return cls(main_flaw=d["main_flaw"], dimension=d["dimension"], general=d["general"],
                   specific=d["specific"], score=d["score"], flaw_sentence_index=d.get("flaw_sentence_index"),
                   confidence=None if conf is None else float(conf),
                   cited_facts=tuple(d.get("cited_facts") or ()))


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _check_score(score: Any) -> None:
    if isinstance(score, bool) or not isinstance(score, int):
        raise CritiqueFormatError(f"explanation score must be an integer 0-5, got {score!r}")
    if not 0 <= score <= 5:
        raise CritiqueFormatError(f"explanation score must be between 0 and 5, got {score}")


def normalise_dimension(raw: str) -> str:
    """A dimension as a DS model may write it ("Incorrect information", "incorrect_information") -> its id.

    Only case, spaces and hyphens are forgiven; anything else not in the taxonomy is an error.
    """
    key = re.sub(r"[\s\-]+", "_", raw.strip().strip(".\"'*`").strip().lower())
    if key in LABELS:
        return key
    raise CritiqueFormatError(f"unknown dimension {raw.strip()!r}; expected one of {', '.join(LABELS)}")


_LINE = re.compile(r"^\s*(?:[*\-\u2022]\s*)?(?P<label>[A-Za-z][A-Za-z ()]*?)\s*:\s*(?P<value>.*)$")
_KNOWN = {v.lower(): k for k, v in _FIELDS.items()} | {SCORE_LABEL.lower(): "score"}


def parse_ds(text: str) -> Critique:
    """Parse one Digital Socrates critique block strictly.

    Text before the block (a chat preamble) is ignored; every field must be present exactly once.
    A value may continue on following lines until the next field, header or blank line.
    """
    if not isinstance(text, str) or not text.strip():
        raise CritiqueFormatError("empty critique text")
    values: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped in (HEADER, REVISE):
            current = None
            continue
        m = _LINE.match(line)
        name = _KNOWN.get(m.group("label").strip().lower()) if m else None
        if name is not None and m is not None:
            if name in values:
                raise CritiqueFormatError(f"field {_label(name)!r} appears more than once")
            values[name] = m.group("value").strip()
            current = name
        elif current is not None and current != "score":
            values[current] += " " + stripped
    missing = [_label(k) for k in ("main_flaw", "dimension", "general", "specific", "score") if k not in values]
    if missing:
        raise CritiqueFormatError(f"critique is missing field(s): {', '.join(missing)}")
    score_raw = values["score"].strip().rstrip(".").strip()
    m = re.fullmatch(r"[+-]?\d+", score_raw)
    if not m:
        raise CritiqueFormatError(f"explanation score must be an integer 0-5, got {values['score']!r}")
    score = int(score_raw)
    _check_score(score)
    dimension = normalise_dimension(values["dimension"]) if values["dimension"].strip() else ""
    if not dimension:
        raise CritiqueFormatError("field 'Dimension' is empty")
    main_flaw = _unquote(values["main_flaw"])
    for name in ("main_flaw", "general", "specific"):
        if not _unquote(values[name]):
            raise CritiqueFormatError(f"field {_label(name)!r} is empty")
    return Critique(main_flaw=main_flaw, dimension=dimension, general=values["general"],
                    specific=_unquote(values["specific"]) if values["specific"].strip('"') == NO_FLAW
                    else values["specific"], score=score)


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'\u201c":
        return s[1:-1].strip()
    if len(s) >= 2 and s[0] == "\u201c" and s[-1] == "\u201d":
        return s[1:-1].strip()
    return s


def _label(name: str) -> str:
    return SCORE_LABEL if name == "score" else _FIELDS[name]
