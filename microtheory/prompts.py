"""TreeWise-style decomposition prompts, and parsing a model's answer into a premise list.

A decomposition prompt asks a language model for two or three simpler sentences that together
entail a statement. Three templates, as TreeWise samples several: `direct` (instruction only),
`fewshot` (instruction + two worked examples) and `retrieval` (the same examples, then corpus facts
retrieved for the statement, so that the model reuses wording that can be grounded). The statement is always
on the prompt's last `Statement:` line, which is how the replay backend finds it again.

`parse_premises` is deliberately forgiving of format (numbering, bullets, "Premise 1:", one line of
several sentences) and strict about content: restatements of the statement, conclusions
("Therefore ..."), preambles ("Here are ...:"), talk about the task ("This statement is ...") and
fragments are dropped.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import InputError

STATEMENT = "Statement:"

_INSTRUCTION = ("Break the statement into two or three simpler facts that are true and together prove it. "
                "Write each fact as one short sentence on its own numbered line. Write nothing else.")

# Worked examples in EntailmentBank's style; written for this file, not taken from any data split.
_EXAMPLES = (
    ("a plant needs sunlight to make food",
     ["Plants make food by photosynthesis.", "Photosynthesis requires sunlight."]),
    ("an iron nail is attracted to a magnet",
     ["An iron nail is made of iron.", "Iron is a magnetic material.",
      "Magnets attract magnetic materials."]),
)


@dataclass(frozen=True)
class PromptTemplate:
    """A decomposition prompt; `needs_facts` templates are skipped when no facts were retrieved."""

    id: str
    needs_facts: bool = False

    def render(self, hypothesis: str, facts: Sequence[str] = ()) -> str:
        hypothesis = " ".join(hypothesis.split())
        if not hypothesis:
            raise InputError("cannot build a decomposition prompt for an empty statement")
        parts = [_INSTRUCTION, ""]
        if self.id in ("fewshot", "retrieval"):  # small models need the format shown, not only described
            for h, prem in _EXAMPLES:
                parts += [f"{STATEMENT} {h}", *[f"{i}. {p}" for i, p in enumerate(prem, 1)], ""]
        if self.needs_facts:
            parts += ["Facts that may help:", *[f"- {' '.join(f.split())}" for f in facts], ""]
        parts.append(f"{STATEMENT} {hypothesis}")
        return "\n".join(parts)


TEMPLATES: dict[str, PromptTemplate] = {
    "direct": PromptTemplate("direct"),
    "fewshot": PromptTemplate("fewshot"),
    "retrieval": PromptTemplate("retrieval", needs_facts=True),
}
DEFAULT_PROMPTS = ("fewshot", "retrieval")


def get_templates(ids: Sequence[str]) -> list[PromptTemplate]:
    unknown = [i for i in ids if i not in TEMPLATES]
    if unknown:
        raise InputError(f"unknown prompt id(s) {', '.join(unknown)}; choose from {', '.join(TEMPLATES)}")
    if not ids:
        raise InputError("at least one prompt id is needed")
    return [TEMPLATES[i] for i in ids]


def build_prompts(hypothesis: str, facts: Sequence[str] = (),
                  ids: Sequence[str] = DEFAULT_PROMPTS) -> list[tuple[str, str]]:
    """(prompt id, prompt text) for each template; a facts template is left out when there are no facts."""
    return [(t.id, t.render(hypothesis, facts)) for t in get_templates(ids) if facts or not t.needs_facts]


def extract_statement(prompt: str) -> str | None:
    """The statement a decomposition prompt asks about (its last `Statement:` line), if any."""
    found = None
    for line in prompt.splitlines():
        if line.startswith(STATEMENT):
            found = line[len(STATEMENT):].strip()
    return found or None


def prompt_id_of(prompt: str) -> str | None:
    """Which template made `prompt` (for recorded generations), None for a prompt of unknown shape."""
    if _INSTRUCTION not in prompt:
        return None
    if "Facts that may help:" in prompt:
        return "retrieval"
    return "fewshot" if prompt.count(STATEMENT) > 1 else "direct"


# ------------------------------------------------------------------------------------------ parsing

_MARKER = re.compile(
    r"^\s*(?:"
    r"(?:premise|fact|sentence|sent|step|reason)\s*\d*\s*[:.)\-]"  # Premise 1: / Fact: / sent2:
    r"|\(?\d{1,2}\s*[.):\]]"                                       # 1. / 1) / (1) / 1:
    r"|\(?[a-hA-H][.)](?=\s)"                                      # a) / B.
    r"|[-*\u2022\u00b7\u2013>]+"                                   # - * • · – >
    r")\s*", re.IGNORECASE)
_INLINE_NUM = re.compile(r"\s+(?=\(?\d{1,2}[.)]\s+[A-Za-z])")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CONCLUSION = re.compile(r"^(?:therefore|thus|hence|so|in conclusion|this (?:means|shows|proves)|as a result)\b[ ,]",
                         re.IGNORECASE)
_PREAMBLE = re.compile(r"^(?:here (?:are|is)|sure|the (?:statement|facts?)|statement\s*:|facts? that)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
# Talk about the task instead of facts ("This statement is incomplete.", "The sentence is clear.").
_META = re.compile(r"\b(?:(?:this|the|your|that) (?:statement|sentence|question|fact)s?|statement is|sentence is)\b",
                   re.IGNORECASE)


def _norm(s: str) -> str:
    return " ".join(_WORD.findall(s.lower()))


def clean_sentence(s: str) -> str:
    s = s.replace("**", "").replace("__", "").strip()
    s = s.strip("\"'\u201c\u201d` ").strip()
    return " ".join(s.split())


def parse_premises(text: str, hypothesis: str | None = None, *, max_premises: int = 4,
                   min_words: int = 3, max_words: int = 40) -> list[str]:
    """A model's answer -> the list of premise sentences it proposes (possibly empty).

    Numbered/bulleted lines become one premise each; an unnumbered paragraph is split into
    sentences. Restatements of `hypothesis`, conclusions, preambles ending in ':' and fragments
    outside [min_words, max_words] are dropped; duplicates are kept once; at most `max_premises`.
    """
    if not text or not text.strip():
        return []
    text = text.replace("```", "\n")
    lines: list[str] = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        # "1. a. 2. b." on one line -> two items.
        pieces = _INLINE_NUM.split(raw) if _MARKER.match(raw) else [raw]
        lines.extend(p.strip() for p in pieces if p.strip())
    marked = [ln for ln in lines if _MARKER.match(ln)]
    items: list[str]
    if marked:
        items = [_MARKER.sub("", ln, count=1) for ln in marked]
    else:
        items = [s for ln in lines for s in _SENT_SPLIT.split(ln)]
    hyp = _norm(hypothesis) if hypothesis else None
    # Small models copy the worked examples into their answer: a copy is no premise of a statement on
    # another topic (one sharing no content word with the example's statement).
    hyp_words = {w for w in (hyp or "").split() if len(w) > 3}
    copied = {_norm(x) for h, prem in _EXAMPLES for x in (h, *prem)
              if not hyp_words & {w for w in _norm(h).split() if len(w) > 3}}
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        s = clean_sentence(item)
        if not s or s.endswith(":") or _PREAMBLE.match(s) or _CONCLUSION.match(s) or _META.search(s):
            continue
        if s.lower().startswith(STATEMENT.lower()):
            continue
        key = _norm(s)
        n_words = len(key.split())
        if n_words < min_words or n_words > max_words:
            continue
        if (hyp is not None and key == hyp) or key in copied:
            continue
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
        if len(out) >= max_premises:
            break
    return out
