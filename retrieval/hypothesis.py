"""Question + answer option -> one declarative hypothesis, by rules (no generator needed).

The prover needs a statement to prove, not a question: "What season does he experience in August?"
+ "winter" -> "winter is the season he experience in august". The rules cover the shapes that ARC
questions take: fill-in-the-blank stems ("Rocks are classified according to"), "Which of the
following ..." (the option replaces the wh-phrase), "Which N VP?" -> "<option> is the N that VP",
"What is X?" -> "X is <option>", inverted questions with do/does/did, and why/how/where/when
questions. spaCy's tagger tells verbs, auxiliaries and nouns apart. Anything the rules do not
recognise falls back to the question sentence followed by the option, which still retrieves well.

Only the question sentence (the last one) becomes the hypothesis: context sentences in front of it
("Andy lives in the southern hemisphere.") are returned by `split_stem` so that callers may use them
as premises.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_WH = {"which", "what", "who", "whom", "whose", "where", "when", "why", "how"}
# Head nouns that only stand for "the option": "which statement ..." is answered by the option alone.
_GENERIC_NOUNS = {"statement", "statements", "one", "ones", "option", "options", "answer", "answers", "choice",
                  "choices", "following", "these", "those", "best", "sentence", "example", "description"}
_DO = {"do", "does", "did"}
_BE = {"is", "are", "was", "were"}
_MODAL = {"can", "could", "will", "would", "should", "might", "may", "must", "has", "have", "had"}
_NOUN_TAGS = {"NN", "NNS", "NNP", "NNPS", "JJ", "JJR", "JJS", "CD", "HYPH", "VBN", "VBG"}
_SENT_SPLIT = re.compile(r"(?<=[.?!])\s+(?=[\"'(]?[A-Z0-9])")
_BLANK = re.compile(r"_{2,}|\(\s*\)")


def _nlp() -> Any:
    from core.models import load_spacy

    # Only the tagger is needed: the parser is slow and, on these short questions, often wrong.
    return load_spacy(disable=("parser", "ner", "lemmatizer"))


def split_stem(stem: str) -> tuple[list[str], str]:
    """(context sentences, question sentence): the question is the last sentence with a '?', else the last."""
    sents = [s.strip() for s in _SENT_SPLIT.split(" ".join(stem.split())) if s.strip()]
    if not sents:
        return [], ""
    qi = max((i for i, s in enumerate(sents) if "?" in s), default=len(sents) - 1)
    return sents[:qi], sents[qi]


def clean_option(option: str) -> str:
    """Option text as it goes into a statement: no trailing period, lower-cased unless an acronym."""
    o = " ".join(option.split()).rstrip(" .!")
    if o and not (len(o) > 1 and o[:2].isupper()):
        o = o[0].lower() + o[1:]
    return o


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s and not (len(s) > 1 and s[:2].isupper()) else s


@dataclass(frozen=True)
class Template:
    """A question turned into a statement with one slot: `fill(option)` gives the hypothesis."""

    pattern: str  # contains "{o}" once
    rule: str     # which rule made it (for reports and tests)
    connector: str = ""  # "because" / "by": dropped from an option that already starts with it

    def fill(self, option: str) -> str:
        o = clean_option(option)
        if self.connector and o.lower().startswith(self.connector + " "):
            o = o[len(self.connector) + 1:]
        text = self.pattern.replace("{o}", o)
        return " ".join(text.split()).strip(" ,;:")


def _join(tokens: list[Any]) -> str:
    return "".join(t.text_with_ws for t in tokens).strip()


@lru_cache(maxsize=4096)
def template(stem: str) -> Template:
    """The statement template of a question stem (cached: every option of a question shares it)."""
    _, q = split_stem(stem)
    q = q.strip()
    if not q:
        return Template("{o}", "empty")
    if _BLANK.search(q):
        return Template(_lower_first(_BLANK.sub("{o}", q, count=1)).rstrip("?."), "blank")
    if not q.endswith("?") and q.split()[0].lower() not in _WH:
        # Fill-in stems: "Rocks are classified as igneous, metamorphic, or sedimentary according to"
        return Template(_lower_first(q.rstrip(".:")) + " {o}", "completion")
    toks = list(_nlp()(q.rstrip("?").strip()))
    wi = _question_word(toks)
    if wi is None:
        return Template(_lower_first(q.rstrip("?")) + " {o}", "fallback")
    prefix = _lower_first(_join(toks[:wi]))
    wh = toks[wi].lower_
    noun, j = _wh_noun(toks, wi)
    lead = (prefix + " ") if prefix else ""
    rest = toks[j:]
    if not rest:
        return Template(lead + "{o}", "wh-only")
    return _from_rest(lead, wh, noun, rest)


def _question_word(toks: list[Any]) -> int | None:
    """Index of the wh-word that asks the question. "When cold weather freezes water ..., which would
    most likely happen": the wh-word after a comma asks it; a leading when/if-clause is its condition."""
    whs = [i for i, t in enumerate(toks) if t.lower_ in _WH]
    after_comma = [i for i in whs if i > 0 and toks[i - 1].text == ","]
    if after_comma and toks[whs[0]].lower_ in {"when", "where", "how", "if"}:
        return after_comma[0]
    return whs[0] if whs else None


def _wh_noun(toks: list[Any], wi: int) -> tuple[list[Any], int]:
    """(the wh-phrase's own noun tokens, index of the first token after the wh-phrase)."""
    wh = toks[wi].lower_
    j = wi + 1
    noun: list[Any] = []
    # "which of the following / of these (N)" : the option replaces the whole phrase.
    if j + 1 < len(toks) and toks[j].lower_ == "of" and toks[j + 1].lower_ in {"the", "these", "those"}:
        j += 2
        while j < len(toks) and toks[j].lower_ in {"following", "choices", "options", "statements", "answers"}:
            j += 1
    # the wh-phrase's own noun: "which event", "what property of the ice"
    if wh in {"which", "what", "whose"}:
        while j < len(toks) and toks[j].tag_ in _NOUN_TAGS and toks[j].lower_ not in _BE | _DO | _MODAL:
            noun.append(toks[j])
            j += 1
        if noun and j + 2 < len(toks) and toks[j].lower_ == "of" and toks[j + 1].tag_ in {"DT", "PRP$", "NN", "NNS"}:
            k = j + 1
            while k < len(toks) and toks[k].tag_ in _NOUN_TAGS | {"DT", "PRP$"}:
                k += 1
            noun, j = toks[wi + 1:k], k
        # An adjective or participle alone is no noun ("which best describes"): keep it in the rest.
        while noun and noun[-1].tag_ not in {"NN", "NNS", "NNP", "NNPS", "CD"}:
            j -= 1
            noun.pop()
    return noun, j


def _from_rest(lead: str, wh: str, noun: list[Any], rest: list[Any]) -> Template:
    """The template from what follows the wh-phrase: inverted (do/modal/be + subject) or wh-as-subject."""
    noun_text = _join(noun).lower()
    generic = not noun or noun_text.split()[-1] in _GENERIC_NOUNS
    first = rest[0].lower_
    after = rest[1:]
    subj_follows = bool(after) and after[0].tag_ not in {"RB", "VB", "VBN", "VBG", "VBD", "VBZ", "VBP", "JJ", "JJR"}
    if (first in _DO or first in _MODAL) and subj_follows:
        return _inverted(lead, wh, noun_text if noun and not generic else "", rest)
    if first in _BE and subj_follows and wh in {"what", "how", "who", "where", "when"} and not noun:
        body = _join(after)
        if wh == "how":
            # "How is the structure of an atom best described" -> "... is best described as <o>"
            return Template(lead + body.replace(" best described", "") + " " + first + " best described as {o}"
                            if body.endswith("best described") else lead + body + " " + first + " {o}", "how-be")
        if wh in {"where", "when"}:
            return Template(lead + body + " " + first + " " + ("in" if wh == "where" else "when") + " {o}", wh)
        # "What is a difference between mitosis and meiosis" -> "a difference between ... is <o>"
        return Template(lead + body + " " + first + " {o}", "what-be")
    if wh == "why" and first in _BE | _MODAL and subj_follows:
        # "why is it safer to ..." -> "it is safer to ... because <o>"
        return Template(lead + _join(after) + " because {o}", "why", connector="because")
    rest_text = _join(rest)
    if wh in {"why", "how", "where", "when"}:
        return Template(lead + rest_text + " {o}", wh + "-fallback")
    # The wh-phrase is the subject: "which of the following is ...", "which event occurs ...".
    if noun and not generic:
        return Template(lead + "{o} is the " + noun_text + " that " + rest_text, "wh-noun-subject")
    return Template(lead + "{o} " + rest_text, "wh-subject")


def _inverted(lead: str, wh: str, noun_text: str, rest: list[Any]) -> Template:
    """"which tool would a student use", "why do plants need light": do/modal before the subject.
    `noun_text` is the wh-phrase's specific noun ("" when none or generic)."""
    after = rest[1:]
    vi = next((i for i, t in enumerate(after) if t.tag_.startswith("VB")), None)
    if rest[0].lower_ in _MODAL and vi is not None:
        # "which tool would a student use" -> "a student would use"
        after = [*after[:vi], rest[0], *after[vi:]]
        vi += 1
    body = _join(after)
    if wh in {"which", "what", "whose"}:
        if noun_text:
            return Template(lead + "{o} is the " + noun_text + " that " + body, "wh-noun-object")
        # bare "what do plants need to make food": the option goes after the first verb
        if vi is not None:
            return Template(lead + _join(after[:vi + 1]) + " {o} " + _join(after[vi + 1:]), "wh-object")
        return Template(lead + body + " {o}", "wh-object")
    if wh == "why":
        return Template(lead + body + " because {o}", "why", connector="because")
    if wh == "how":
        return Template(lead + body + " by {o}", "how", connector="by")
    return Template(lead + body + " {o}", wh)  # where / when / who(m)


def make_hypothesis(stem: str, option: str) -> str:
    """A declarative statement saying that `option` answers the question in `stem` (lower-cased)."""
    text = template(stem).fill(option)
    return text[:1].lower() + text[1:] if text else clean_option(option)


def token_f1(pred: str, gold: str) -> float:
    """Bag-of-words F1 between two sentences (lower-cased word tokens), for measuring the rewriter."""
    p = re.findall(r"\w+", pred.lower())
    g = re.findall(r"\w+", gold.lower())
    if not p or not g:
        return 0.0
    from collections import Counter

    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)
