"""Synthetic critique training data: inject one known flaw into a gold EntailmentBank explanation.

Each EntailmentBank tree (+ its ARC options and key) yields up to nine examples, one per label:
`(question, options, answer key, explanation, predicted answer) -> (dimension, flaw sentence, score)`.
The labels are synthetic (made by the recipes below, not by people); docs/critique_data.md
documents every recipe and its limits.

Rendering is randomised the same way for every label (sentence order, connectives, merged
"since A, C" sentences, answer-sentence phrasing and position, light paraphrase), so the label
cannot be read off the surface form. Every choice draws from `random.Random(f"{seed}:{tree}:{label}")`:
the same seed gives the same data whatever the order or subset of trees.
"""
from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from critique.inputs import ModelOutput, split_sentences
from critique.taxonomy import LABELS, NONE
from core.errors import InputError

VERSION = 1  # bump when a recipe changes: data built with another version is not comparable

# Score convention of the synthetic data (0 = very wrong, 5 = correct): a flawed explanation that
# still reaches the key scores higher than one that ends on a wrong option.
SCORES: dict[str, tuple[int, int]] = {  # dimension -> (score with the key predicted, with a wrong option)
    NONE: (5, 5),
    "irrelevant": (4, 4),
    "missing_information": (3, 3),
    "incomplete_reasoning": (3, 3),
    "incorrect_reasoning": (2, 1),
    "incorrect_information": (2, 1),
    "lack_justification": (2, 1),
    "inconsistent_answer": (1, 1),
    "misunderstanding": (1, 0),
}

STOP = set("""a an the of to in on at by for with from and or but if then than that this these those is are was
were be been being it its as into onto out up down over under can will would should could may might must do does
did has have had not no so such which what when where who whom how why there their they them he she his her
one two some any each all more most less least very also only about because""".split())

_ANTONYMS = [
    ("increase", "decrease"), ("increases", "decreases"), ("increased", "decreased"), ("increasing", "decreasing"),
    ("more", "less"), ("higher", "lower"), ("high", "low"), ("larger", "smaller"), ("large", "small"),
    ("hot", "cold"), ("warm", "cool"), ("warmer", "cooler"), ("absorb", "reflect"), ("absorbs", "reflects"),
    ("north", "south"), ("east", "west"), ("day", "night"), ("summer", "winter"), ("positive", "negative"),
    ("faster", "slower"), ("fast", "slow"), ("strong", "weak"), ("stronger", "weaker"), ("long", "short"),
    ("longer", "shorter"), ("living", "nonliving"), ("renewable", "nonrenewable"), ("before", "after"),
    ("above", "below"), ("gain", "lose"), ("gains", "loses"), ("attract", "repel"), ("attracts", "repels"),
    ("conductor", "insulator"), ("conductors", "insulators"), ("inherited", "learned"), ("physical", "chemical"),
    ("producers", "consumers"), ("producer", "consumer"), ("herbivore", "carnivore"), ("prey", "predator"),
    ("evaporation", "condensation"), ("melting", "freezing"), ("expand", "contract"), ("expands", "contracts"),
    ("opaque", "transparent"), ("solid", "liquid"), ("sunlight", "darkness"), ("increasing", "decreasing"),
    ("heat", "cold"), ("mass", "volume"), ("plants", "animals"), ("plant", "animal"), ("sun", "moon"),
    ("oxygen", "carbon dioxide"), ("dry", "wet"), ("rough", "smooth"), ("hard", "soft"), ("light", "heavy"),
    ("add", "remove"), ("adds", "removes"), ("top", "bottom"), ("inside", "outside"), ("always", "never"),
    ("many", "few"), ("most", "least"), ("same", "different"), ("similar", "different"), ("cause", "prevent"),
    ("causes", "prevents"), ("helps", "harms"), ("help", "harm"), ("positive", "negative"), ("mixture", "compound"),
]
_FLIP: dict[str, str] = {}
for _a, _b in _ANTONYMS:
    _FLIP.setdefault(_a, _b)
    _FLIP.setdefault(_b, _a)
_ANT_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _FLIP), key=len, reverse=True)) + r")\b")
_AUX_RE = re.compile(r"\b(is|are|was|were|can|will|should|does|do|has|have|could|would|may|must)\b( not\b)?")
_VERB_S_RE = re.compile(r"\b(causes|requires|contains|produces|uses|means|helps|needs|makes|occurs|"
                        r"reflects|absorbs|increases|decreases|provides|affects|changes|moves|protects)\b")
_KIND_RE = re.compile(r"^(?P<x>.+?) (?P<rel>is a kind of|are a kind of|is a type of|is a part of|is a source of|"
                      r"is a property of|is made of|is a measure of) (?P<y>.+)$")
_NUM_RE = re.compile(r"\b\d+(?:\.\d+)?\b")

LEAF_INTROS = ["", "", "", "", "We know that", "Recall that", "Note that", "It is known that", "Also,",
               "In addition,", "Remember that", "First,", "Consider that", "A basic fact is that"]
CONCL_CONNECTIVES = ["So", "So,", "Therefore,", "Thus,", "This means that", "It follows that", "As a result,",
                     "Hence", "Then", "Consequently,", "From this,", "That means", "", "Which means"]
MERGE_FORMS = ["Since {p}, {c}.", "Because {p}, {c}.", "{c}, because {p}.", "Given that {p}, {c}.",
               "{p}, so {c}.", "As {p}, {c}."]
ANSWER_FORMS = [
    "So the answer is ({L}) {T}.", "Therefore, the correct answer is {T}.", "The answer is {L}.",
    "Thus {T} is the best choice.", "This means the answer must be ({L}).", "Hence option {L}, {T}, is correct.",
    "{T} is therefore correct.", "So, the right option is {L}: {T}.", "The best answer is ({L}) {T}.",
    "I choose {L}.", "Answer: ({L}) {T}.", "That is why the answer is {T}.",
]
LEAD_ANSWER_FORMS = ["The answer is ({L}) {T}.", "{T} is correct.", "The correct choice is {L}.",
                     "I think the answer is {T}.", "Option {L} is right."]
CIRCULAR_FORMS = [
    "The answer is {T} because {T} is the correct option.", "{T} is right, since that is what the question asks.",
    "It is {T}, as this is the best answer.", "Clearly the answer is ({L}) {T}.", "The answer is obviously {L}.",
    "Everyone knows the answer is {T}.", "{T} fits the question best, so it is correct.",
    "This is a basic science fact.", "The question is asking about {Q}.", "This is a well known idea.",
    "Among the options, {T} makes the most sense.", "The other options are wrong.",
    "Looking at the choices, the answer is {L}.", "The correct option has to be {T}.",
]
PARAPHRASES = [(" is a kind of ", [" is a kind of ", " is a type of ", " is a form of "]),
               (" are a kind of ", [" are a kind of ", " are a type of "]),
               (" / ", [" / ", " or ", " or "]),
               (" means ", [" means ", " is when "]),
               ("if ", ["if ", "when "])]


@dataclass(frozen=True)
class FlawExample:
    """One synthetic critique example. `flaw_index` is the 0-based index of the main-flaw sentence in
    `sentences` (None for `none`); `reference` is the gold fact the flaw concerns (the removed or
    corrupted leaf), when there is one."""

    id: str
    source_id: str
    split: str
    question: str
    options: dict[str, str]
    answer_key: str
    sentences: tuple[str, ...]
    predicted_answer: str
    dimension: str
    flaw_index: int | None
    flaw_text: str
    score: int
    recipe: str
    reference: str | None = None
    version: int = VERSION

    @property
    def explanation(self) -> str:
        return " ".join(self.sentences)

    def model_output(self) -> ModelOutput:
        return ModelOutput(self.id, self.question, dict(self.options), self.answer_key, self.explanation,
                           self.predicted_answer)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["sentences"] = list(self.sentences)
        d["explanation"] = self.explanation
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FlawExample:
        d = {k: v for k, v in d.items() if k != "explanation"}
        d["sentences"] = tuple(d["sentences"])
        return cls(**d)


# --- text helpers ---------------------------------------------------------------------------------

def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _clean(s: str) -> str:
    s = " ".join(s.strip().rstrip(".").split())
    return s.replace(" 's", "'s").replace(" ,", ",")


def _words(s: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", s.lower()) if w not in STOP and len(w) > 2}


def _paraphrase(s: str, rng: random.Random) -> str:
    for old, news in PARAPHRASES:
        if old in s and rng.random() < 0.5:
            s = s.replace(old, rng.choice(news))
    return s


def negate(s: str) -> str | None:
    """Flip the polarity of the first auxiliary or common verb; None when there is none."""
    m = _AUX_RE.search(s)
    if m:
        if m.group(2):  # "is not" -> "is"
            return s[:m.start()] + m.group(1) + s[m.end():]
        aux = m.group(1)
        rep = "cannot" if aux == "can" else aux + " not"
        return s[:m.start()] + rep + s[m.end():]
    m = _VERB_S_RE.search(s)
    if m:
        return s[:m.start()] + "does not " + m.group(1)[:-1] + s[m.end():]
    return None


def flip_antonym(s: str, rng: random.Random) -> str | None:
    hits = list(_ANT_RE.finditer(s))
    if not hits:
        return None
    m = rng.choice(hits)
    return s[:m.start()] + _FLIP[m.group(1)] + s[m.end():]


def swap_number(s: str, rng: random.Random) -> str | None:
    hits = list(_NUM_RE.finditer(s))
    if not hits:
        return None
    m = rng.choice(hits)
    v = float(m.group(0))
    new = rng.choice([v * 2, v / 2, v + 10, max(v - 1, 0) if v > 1 else v + 3, v * 10])
    text = str(int(new)) if new == int(new) else f"{new:g}"
    if text == m.group(0):
        return None
    return s[:m.start()] + text + s[m.end():]


def swap_kind(s: str, pool: Sequence[str], rng: random.Random) -> str | None:
    """"x is a kind of y" -> "x is a kind of z" with z the object of another such fact."""
    m = _KIND_RE.match(s)
    if not m or not pool:
        return None
    for _ in range(8):
        z = rng.choice(pool)
        if z != m.group("y") and not (_words(z) & _words(m.group("y"))) and not (_words(z) & _words(m.group("x"))):
            return f"{m.group('x')} {m.group('rel')} {z}"
    return None


def converse(s: str) -> str | None:
    m = _KIND_RE.match(s)
    if not m or m.group("rel") not in ("is a kind of", "are a kind of"):
        return None
    return f"{m.group('y')} is a kind of {m.group('x')}"


# --- rendering a tree as prose ----------------------------------------------------------------------

@dataclass
class _Unit:
    """One item of reasoning before it becomes (part of) a sentence."""

    item: str   # sentN / intN / hypothesis / extraN / answer
    text: str
    kind: str   # leaf | concl | answer


@dataclass
class _Plan:
    """What to change when rendering a tree."""

    replace: dict[str, str] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    extras: list[str] = field(default_factory=list)
    answer: tuple[str, str] | None = None       # (label, text) the explanation states, None = no answer sentence
    answer_forms: Sequence[str] = tuple(ANSWER_FORMS)
    compact_ok: bool = True


def _order_units(tree: Any, plan: _Plan, rng: random.Random) -> list[list[_Unit]]:
    """Groups of units (a step's new leaves + its conclusion); style chosen at random."""
    style = rng.choices(["interleaved", "leaves_first", "compact"], weights=[5, 3, 2 if plan.compact_ok else 0])[0]
    stated: set[str] = set()
    groups: list[list[_Unit]] = []
    for step in tree.steps:
        new = [p for p in step.premises if p.startswith("sent") and p not in stated]
        rng.shuffle(new)
        stated.update(new)
        g = [_Unit(p, plan.replace.get(p, tree.sentences[p]), "leaf") for p in new if p not in plan.drop]
        c = step.conclusion
        if c not in plan.drop and not (style == "compact" and c != "hypothesis"):
            g.append(_Unit(c, plan.replace.get(c, tree.text(c)), "concl"))
        groups.append(g)
    if style == "leaves_first":
        leaves = [u for g in groups for u in g if u.kind == "leaf"]
        rng.shuffle(leaves)
        groups = [[u] for u in leaves] + [[u] for g in groups for u in g if u.kind == "concl"]
    return [g for g in groups if g]


def _sentence(units: list[_Unit], rng: random.Random, qa: dict[str, str]) -> str:
    if len(units) == 1:
        u = units[0]
        if u.kind == "answer":
            return _cap(u.text)
        text = _clean(_paraphrase(u.text, rng))
        lead = rng.choice(LEAF_INTROS if u.kind == "leaf" else CONCL_CONNECTIVES)
        return _cap(f"{lead} {text}".strip()) + "."
    premises = [_clean(_paraphrase(u.text, rng)) for u in units[:-1]]
    p = premises[0] if len(premises) == 1 else ", ".join(premises[:-1]) + " and " + premises[-1]
    c = _clean(_paraphrase(units[-1].text, rng))
    return _cap(rng.choice(MERGE_FORMS).format(p=p, c=c))


def render(tree: Any, plan: _Plan, rng: random.Random, qa: dict[str, str]) -> tuple[list[str], dict[str, int]]:
    """Sentences of the explanation and item -> sentence index."""
    groups = _order_units(tree, plan, rng)
    # Distractors go between groups, never inside a step's "since A, C".
    for text in plan.extras:
        groups.insert(rng.randint(0, len(groups)), [_Unit(f"extra{len(groups)}", text, "leaf")])
    answer_first = plan.answer is not None and rng.random() < 0.15
    sentences: list[str] = []
    where: dict[str, int] = {}

    def emit(units: list[_Unit]) -> None:
        for u in units:
            where[u.item] = len(sentences)
        sentences.append(_sentence(units, rng, qa))

    if plan.answer is not None:
        label, text = plan.answer
        forms = LEAD_ANSWER_FORMS if answer_first else plan.answer_forms
        ans = _Unit("answer", rng.choice(forms).format(L=label, T=_clean(text), Q=qa.get("q", "")), "answer")
        if answer_first:
            emit([ans])
    for g in groups:
        # Merge a step's leaves into its conclusion now and then ("Since A and B, C.").
        if len(g) >= 2 and g[-1].kind == "concl" and len(g) <= 3 and rng.random() < 0.3:
            emit(g)
        else:
            for u in g:
                emit([u])
    if plan.answer is not None and not answer_first:
        emit([ans])
    return sentences, where


# --- the recipes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Pools:
    """Material from the same split's other trees (never the other split: no train/dev leakage)."""

    trees: list[Any]
    kinds: list[str]
    leaves: list[tuple[str, str]]   # (tree id, leaf text)
    concls: list[tuple[str, str]]   # (tree id, conclusion text)


def _pools(trees: Sequence[Any]) -> _Pools:
    kinds, leaves, concls = [], [], []
    for t in trees:
        for sid in t.leaves:
            text = t.sentences[sid]
            leaves.append((t.id, text))
            m = _KIND_RE.match(text)
            if m and m.group("rel") in ("is a kind of", "are a kind of"):
                kinds.append(m.group("y"))
        for s in t.steps:
            concls.append((t.id, t.text(s.conclusion)))
    return _Pools(list(trees), sorted(set(kinds)), leaves, concls)


def _related(pool: Sequence[tuple[str, str]], tree: Any, anchor: set[str], rng: random.Random,
             k: int = 40) -> list[str]:
    """Texts of other trees, the ones sharing most words with `anchor` first (plausible but off-topic)."""
    cands = [rng.choice(pool) for _ in range(k)]
    cands = [(tid, t) for tid, t in cands if tid != tree.id and t not in tree.sentences.values()]
    cands.sort(key=lambda x: -len(_words(x[1]) & anchor))
    return [t for _, t in cands]


def _wrong_option(q: Any, rng: random.Random) -> str:
    return rng.choice(sorted(k for k in q.options if k != q.answer_key))


def _corrupt_fact(text: str, pools: _Pools, rng: random.Random) -> tuple[str, str] | None:
    methods = ["antonym", "negation", "kind_swap", "number"]
    rng.shuffle(methods)
    for m in methods:
        new = {"antonym": lambda: flip_antonym(text, rng), "negation": lambda: negate(text),
               "kind_swap": lambda: swap_kind(text, pools.kinds, rng),
               "number": lambda: swap_number(text, rng)}[m]()
        if new and new != text:
            return new, m
    return None


@dataclass
class _V1Draft:
    """eb_v1's choices for one (tree, label) before rendering: the tree to render (another tree for
    `misunderstanding`), the render plan, the predicted option, the flawed item, the gold reference."""

    tree: Any
    plan: _Plan
    pred: str
    recipe: str
    flaw_item: str | None = None   # an item of `render`'s map, or "last" / "extra" / "answer"
    reference: str | None = None


# Each eb_v1 step edits the draft for its label; False = the recipe does not apply to this tree.
# Every step draws from `rng` in a fixed order: the same seed gives the same data.

def _v1_none(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    return True


def _v1_misunderstanding(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    """A reasoning chain for a different (but lexically close) question."""
    anchor = _words(q.stem) | _words(q.options[q.answer_key])
    cands = [t for t in (rng.choice(pools.trees) for _ in range(30)) if t.id != d.tree.id]
    cands.sort(key=lambda t: -len(_words(t.hypothesis) & anchor))
    other = cands[0]
    d.pred = q.answer_key if rng.random() < 0.2 else _wrong_option(q, rng)
    d.plan.answer = (d.pred, q.options[d.pred]) if rng.random() > 0.15 else None
    d.tree = other
    d.flaw_item, d.recipe = "hypothesis", "misunderstanding/other_tree_chain"
    return True


def _v1_incorrect_information(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    """A corrupted leaf fact (antonym, negation, kind swap or number swap)."""
    tree = d.tree
    leaves = list(tree.leaves)
    rng.shuffle(leaves)
    for sid in leaves:
        got = _corrupt_fact(tree.sentences[sid], pools, rng)
        if got:
            d.plan.replace[sid] = got[0]
            d.flaw_item, d.reference, d.recipe = sid, tree.sentences[sid], f"incorrect_information/{got[1]}"
            break
    else:
        return False
    if rng.random() < 0.3:
        d.pred = _wrong_option(q, rng)
        d.plan.answer = (d.pred, q.options[d.pred])
    return True


def _v1_missing_information(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    """The crucial leaf (sharing most words with the answer and hypothesis) is dropped."""
    tree = d.tree
    if len(tree.leaves) < 2:
        return False
    anchor = _words(q.options[q.answer_key]) | _words(tree.hypothesis)
    leaves = sorted(tree.leaves, key=lambda s: (-len(_words(tree.sentences[s]) & anchor), rng.random()))
    sid = leaves[0] if rng.random() < 0.7 else rng.choice(leaves)
    d.plan.drop.add(sid)
    d.reference = tree.sentences[sid]
    # The flaw shows where the missing fact was needed: the conclusion of the step that used it.
    d.flaw_item = next(s for s in tree.steps if sid in s.premises).conclusion
    d.plan.compact_ok = False
    d.recipe = "missing_information/leaf_removed"
    return True


def _bad_conclusion(text: str, tree: Any, pools: _Pools, rng: random.Random) -> tuple[str, str] | None:
    """(a wrong version of a conclusion, how it was made), trying the methods in random order."""
    methods = ["antonym", "negation", "converse", "non_sequitur"]
    rng.shuffle(methods)
    for m in methods:
        if m == "antonym":
            new = flip_antonym(text, rng)
        elif m == "negation":
            new = negate(text)
        elif m == "converse":
            new = converse(text)
        else:
            others = _related(pools.concls, tree, _words(text), rng)
            new = others[0] if others else None
        if new and new != text:
            return new, m
    return None


def _v1_incorrect_reasoning(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    """An intermediate conclusion (or the hypothesis) that does not follow."""
    tree = d.tree
    tid = rng.choice(list(tree.intermediates) or ["hypothesis"])
    text = tree.text(tid)
    got = _bad_conclusion(text, tree, pools, rng)
    if got is None:
        return False
    d.plan.replace[tid] = got[0]
    d.plan.compact_ok = tid == "hypothesis"
    d.flaw_item, d.reference, d.recipe = tid, text, f"incorrect_reasoning/{got[1]}"
    if tid == "hypothesis" and rng.random() < 0.4:
        d.pred = _wrong_option(q, rng)
        d.plan.answer = (d.pred, q.options[d.pred])
    return True


def _v1_incomplete_reasoning(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    """The chain stops before the hypothesis (and sometimes before the step before it)."""
    plan = d.plan
    plan.drop.add("hypothesis")
    if len(d.tree.steps) >= 2 and rng.random() < 0.5:
        plan.drop.add(d.tree.steps[-2].conclusion)
    plan.compact_ok = False
    if rng.random() < 0.5:
        plan.answer = None
    d.flaw_item = "last"
    d.recipe = "incomplete_reasoning/stops_early" + ("" if plan.answer else "_no_answer")
    return True


def _v1_inconsistent_answer(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    """The chosen label is a wrong option while the chain supports the key."""
    d.pred = _wrong_option(q, rng)
    r = rng.random()
    if r < 0.6:
        d.plan.answer = (d.pred, q.options[d.pred])
        d.recipe, d.flaw_item = "inconsistent_answer/wrong_option_stated", "answer"
    elif r < 0.8:
        d.plan.answer = (q.answer_key, q.options[q.answer_key])  # the text concludes the key, the label is another
        d.recipe, d.flaw_item = "inconsistent_answer/label_differs", "answer"
    else:
        d.plan.answer = None
        d.recipe, d.flaw_item = "inconsistent_answer/no_answer_sentence", "hypothesis"
    return True


def _v1_irrelevant(d: _V1Draft, q: Any, pools: _Pools, rng: random.Random) -> bool:
    """One to three off-topic leaves of other trees inserted between steps."""
    anchor = _words(q.stem) | _words(d.tree.hypothesis)
    extras = _related(pools.leaves, d.tree, anchor, rng)[: rng.choice([1, 1, 2, 3])]
    if not extras:
        return False
    d.plan.extras = extras
    d.flaw_item = "extra"
    d.recipe = f"irrelevant/{len(extras)}_distractors"
    return True


_V1_STEPS: dict[str, Any] = {  # label -> step (lack_justification is not rendered from a tree: _v1_circular)
    NONE: _v1_none,
    "misunderstanding": _v1_misunderstanding,
    "incorrect_information": _v1_incorrect_information,
    "missing_information": _v1_missing_information,
    "incorrect_reasoning": _v1_incorrect_reasoning,
    "incomplete_reasoning": _v1_incomplete_reasoning,
    "inconsistent_answer": _v1_inconsistent_answer,
    "irrelevant": _v1_irrelevant,
}


def _v1_circular(tree: Any, q: Any, split: str, rng: random.Random, qa: dict[str, str]) -> FlawExample | None:
    """lack_justification: circular or empty sentences (no facts), sometimes with an answer sentence."""
    key = q.answer_key
    pred = key if rng.random() < 0.7 else _wrong_option(q, rng)
    n = rng.choice([1, 1, 2, 2, 3, 4])
    forms = rng.sample(CIRCULAR_FORMS, k=n)
    if rng.random() < 0.5:  # restate the answer as a statement (the hypothesis), which is circular
        forms[0] = _cap(_clean(tree.hypothesis)) + "." if pred == key else forms[0]
    sentences = [f.format(L=pred, T=_clean(q.options[pred]), Q=qa["q"]) for f in forms]
    if rng.random() < 0.6:
        sentences.append(rng.choice(ANSWER_FORMS).format(L=pred, T=_clean(q.options[pred])))
    rng.shuffle(sentences)
    sentences = [_cap(s) for s in sentences]
    return _example(tree, q, "lack_justification", split, sentences, pred, len(sentences) - 1, None,
                    "lack_justification/circular")


def _v1_flaw_index(flaw_item: str | None, sentences: list[str], where: dict[str, int]) -> int | None:
    """The rendered sentence of the flawed item."""
    if flaw_item is None:
        return None
    if flaw_item == "last":
        return len(sentences) - 1
    if flaw_item == "extra":
        return min(v for k, v in where.items() if k.startswith("extra"))
    if flaw_item == "answer" and "answer" not in where:
        return len(sentences) - 1
    idx = where.get(flaw_item)
    if idx is None:  # the item was merged away or dropped: the conclusion that closes the chain
        idx = where.get("hypothesis", len(sentences) - 1)
    return idx


def build_one(tree: Any, q: Any, label: str, pools: _Pools, seed: int, split: str) -> FlawExample | None:
    """The example of one label for one tree, or None when the recipe does not apply to this tree."""
    rng = random.Random(f"{seed}:{tree.id}:{label}")
    key = q.answer_key
    last = re.split(r"(?<=[.?!])\s+", q.stem.strip())[-1]
    qa = {"q": re.sub(r"[.?!]", "", _clean(last)).lower()}
    plan = _Plan(answer=(key, q.options[key]) if rng.random() > 0.15 else None)
    if label == "lack_justification":
        return _v1_circular(tree, q, split, rng, qa)
    step = _V1_STEPS.get(label)
    if step is None:
        raise ValueError(f"unknown label {label!r}")
    d = _V1Draft(tree, plan, pred=key, recipe=label)
    if not step(d, q, pools, rng):
        return None
    sentences, where = render(d.tree, d.plan, rng, qa)
    idx = _v1_flaw_index(d.flaw_item, sentences, where)
    return _example(d.tree, q, label, split, sentences, d.pred, idx, d.reference, d.recipe)


def _example(tree: Any, q: Any, label: str, split: str, sentences: list[str], pred: str, idx: int | None,
             reference: str | None, recipe: str) -> FlawExample | None:
    # The critic re-splits the explanation text at inference: keep only examples whose sentences
    # split back exactly, so the flaw index means the same thing at training and prediction time.
    explanation = " ".join(sentences)
    if split_sentences(explanation) != sentences:
        return None
    dim = label
    with_key, wrong = SCORES[dim]
    score = with_key if pred == q.answer_key else wrong
    return FlawExample(
        id=f"{q.id}:{label}", source_id=q.id, split=split, question=q.stem, options=dict(q.options),
        answer_key=q.answer_key, sentences=tuple(sentences), predicted_answer=pred, dimension=dim,
        flaw_index=idx, flaw_text=sentences[idx] if idx is not None else "None", score=score, recipe=recipe,
        reference=reference)


def _usable(q: Any) -> bool:
    """A question the recipes can use: its key is one of its options and it has a wrong option."""
    return q.answer_key in q.options and len(q.options) >= 2


def _run_recipe(fn: RecipeFn, trees: Sequence[Any], questions: Sequence[Any], seed: int, split: str,
                labels: Iterable[str]) -> list[FlawExample]:
    """`fn(tree, question, label, pools, seed, split)` for every usable question and label; Nones dropped."""
    pools = _pools(trees)
    out = []
    for t, q in zip(trees, questions):
        if not _usable(q):
            continue
        for label in labels:
            ex = fn(t, q, label, pools, seed, split)
            if ex is not None:
                out.append(ex)
    return out


def build_examples(trees: Sequence[Any], questions: Sequence[Any], seed: int = 0, split: str = "train",
                   labels: Iterable[str] = LABELS) -> list[FlawExample]:
    """One example per (tree, label) where the recipe applies; `questions[i]` is the question of `trees[i]`.

    Trees and questions come from `microtheory.datasets.load_eb_questions(split)`. Other-tree
    material (distractors, chains for other questions, swapped objects) is drawn from `trees` only.
    """
    if len(trees) != len(questions):
        raise InputError(f"{len(trees)} trees but {len(questions)} questions: not aligned")
    labels = list(labels)
    unknown = [x for x in labels if x not in LABELS]
    if unknown:
        raise InputError(f"unknown label(s) {unknown}; expected {', '.join(LABELS)}")
    return _run_recipe(build_one, trees, questions, seed, split, labels)


def build_split(split: str, seed: int = 0, data_dir: str | Path | None = None) -> list[FlawExample]:
    """All examples of an EntailmentBank split (train: 1,313 trees, dev: 187) with ARC options."""
    from microtheory.datasets import DataPaths, load_eb_questions

    data = DataPaths(Path(data_dir)) if data_dir else DataPaths.default()
    trees, questions = load_eb_questions(split, data)
    return build_examples(trees, questions, seed=seed, split=split)


def write_examples(path: str | Path, examples: Iterable[FlawExample]) -> int:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = p.with_suffix(p.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(p)
    return n


def read_examples(path: str | Path) -> list[FlawExample]:
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(FlawExample.from_json(json.loads(line)))
                except (json.JSONDecodeError, TypeError, KeyError) as e:
                    raise InputError(f"not a flaw example ({e})", str(path), n) from None
    return out


# === Recipe registry ==================================================================================
# A recipe: (tree, question, label, pools, seed, split) -> FlawExample | None. Recipes are written
# independently of one another (different operations, different renderers) so that a critic can be
# selected by leave-one-recipe-out: trained on all recipes but one, tested on the one left out.

RecipeFn = Any  # Callable[[Any, Any, str, _Pools, int, str], FlawExample | None]
RECIPES: dict[str, RecipeFn] = {}


def recipe(name: str) -> Any:
    """Decorator: register a flaw recipe under `name` (adding a recipe touches this file only)."""
    def deco(fn: RecipeFn) -> RecipeFn:
        RECIPES[name] = fn
        return fn
    return deco


RECIPES["eb_v1"] = build_one  # the original recipe above: corrupt / drop / add to a rendered gold tree


# --- renderings: how an explanation names its answer and lays out its steps ---------------------------

def _answer_letter_paren(label: str, text: str, rng: random.Random) -> str:
    return rng.choice(["The answer is ({L}).", "So the answer is ({L}).", "Answer: ({L})."]).format(L=label)


def _answer_letter(label: str, text: str, rng: random.Random) -> str:
    return rng.choice(["The answer is {L}.", "I pick option {L}.", "Answer: {L}.", "So {L} is correct."]).format(L=label)


def _answer_text(label: str, text: str, rng: random.Random) -> str:
    return rng.choice(["So the answer is {T}.", "Therefore, {T}.", "That makes {T} the right choice.",
                       "Thus the best answer is {T}."]).format(T=_clean(text))


def _answer_both(label: str, text: str, rng: random.Random) -> str:
    return rng.choice(["The answer is ({L}) {T}.", "Therefore the correct option is {L}, {T}.",
                       "So ({L}) {T} is correct."]).format(L=label, T=_clean(text))


ANSWER_STYLES: dict[str, Any] = {"letter_paren": _answer_letter_paren, "letter": _answer_letter,
                                 "text": _answer_text, "both": _answer_both}
LAYOUTS = ("sentences", "numbered", "paragraph")


@dataclass(frozen=True)
class Rendering:
    """One way to write an explanation: how the answer is named (None = no closing sentence) and the layout."""

    answer: str | None = "both"
    layout: str = "sentences"

    @property
    def name(self) -> str:
        return f"{self.answer or 'no_answer'}/{self.layout}"


# The five renderings of the robustness set: the same explanation must get the same dimension in each.
ROBUSTNESS_RENDERINGS = (Rendering("both", "sentences"), Rendering("letter_paren", "numbered"),
                         Rendering("text", "paragraph"), Rendering(None, "sentences"),
                         Rendering("letter", "sentences"))


def random_rendering(rng: random.Random) -> Rendering:
    ans = rng.choice([*ANSWER_STYLES, None])
    return Rendering(ans, rng.choices(LAYOUTS, weights=[5, 2, 2])[0])


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s and not (len(s) > 1 and s[1].isupper()) else s


def lay_out(body: Sequence[str], answer: str | None, layout: str) -> tuple[list[str], int | None]:
    """(units, index of the answer unit): the body sentences and answer sentence in one layout.

    Units are what `critique.checks.split_units` gives back for the joined text: numbered steps
    ("1. ...") are one unit each, a paragraph's "; "-joined clauses are one unit each."""
    body = [_cap(_clean(s)) for s in body if _clean(s)]
    if layout == "numbered":
        units = [f"{i}. {s}." for i, s in enumerate(body, 1)]
    elif layout == "paragraph":
        clauses = [body[0]] + [_lower_first(s) for s in body[1:]] if body else []
        units = [c + ";" for c in clauses]
        if units and answer is None:
            units[-1] = units[-1][:-1] + "."
    else:
        units = [s + "." for s in body]
    if answer is None:
        return units, None
    units.append(answer if layout != "paragraph" else answer)
    return units, len(units) - 1


def render_draft(draft: Draft, rendering: Rendering, rng: random.Random) -> tuple[list[str], int | None]:
    """(units, flaw unit index) of a draft in one rendering."""
    ans = None
    if rendering.answer is not None and draft.stated is not None:
        ans = ANSWER_STYLES[rendering.answer](draft.stated[0], draft.stated[1], rng)
    units, ans_i = lay_out(draft.body, ans, rendering.layout)
    if draft.flaw is None:
        return units, None
    if draft.flaw == ANSWER:
        return units, ans_i if ans_i is not None else len(units) - 1
    return units, min(draft.flaw, len(units) - 1)


ANSWER = -1  # Draft.flaw for "the answer sentence"


@dataclass(frozen=True)
class Draft:
    """A recipe's output before rendering: body sentences, which one is flawed (ANSWER = the answer
    sentence), the predicted label, the option the explanation states (None = it names none)."""

    label: str
    body: tuple[str, ...]
    flaw: int | None
    pred: str
    stated: tuple[str, str] | None
    recipe: str
    reference: str | None = None


def finish(draft: Draft, tree: Any, q: Any, split: str, rendering: Rendering, rng: random.Random) -> FlawExample:
    units, idx = render_draft(draft, rendering, rng)
    with_key, wrong = SCORES[draft.label]
    return FlawExample(
        id=f"{q.id}:{draft.label}:{draft.recipe.split('/')[0]}:{rendering.name}", source_id=q.id, split=split,
        question=q.stem, options=dict(q.options), answer_key=q.answer_key, sentences=tuple(units),
        predicted_answer=draft.pred, dimension=draft.label, flaw_index=idx,
        flaw_text=units[idx] if idx is not None else "None",
        score=with_key if draft.pred == q.answer_key else wrong, recipe=f"{draft.recipe} [{rendering.name}]",
        reference=draft.reference)


# --- an independent recipe: eb_alt ----------------------------------------------------------------------
# Written apart from eb_v1: other operations (option-text swaps, wrong final conclusions, leaves
# without conclusions, WorldTree-like distractors, question restatements) and the renderer above.

def _key_words_swap(text: str, key_text: str, wrong_text: str) -> str | None:
    """Put a wrong option's text where a fact mentions the keyed option."""
    k = _clean(key_text).lower()
    if k and k in text.lower():
        i = text.lower().index(k)
        return text[:i] + _clean(wrong_text) + text[i + len(k):]
    return None


def _swap_words(a: str, b: str, rng: random.Random) -> str | None:
    """Replace one content word of `a` by a content word of `b` that `a` lacks (a plausible false fact)."""
    wa = [w for w in re.findall(r"[a-z]+", a) if w not in STOP and len(w) > 3]
    wb = sorted(_words(b) - _words(a))
    wb = [w for w in wb if len(w) > 3]
    if not wa or not wb:
        return None
    old, new = rng.choice(wa), rng.choice(wb)
    return re.sub(rf"\b{re.escape(old)}\b", new, a, count=1)


def _steps_body(tree: Any, replace: dict[str, str] | None = None, drop: set[str] | None = None,
                conclusions: bool = True) -> tuple[list[str], dict[str, int]]:
    """Each step's new leaves, then its conclusion, in proof order; item -> body index."""
    replace, drop = replace or {}, drop or set()
    body: list[str] = []
    where: dict[str, int] = {}
    seen: set[str] = set()
    for st in tree.steps:
        for p in st.premises:
            if p.startswith("sent") and p not in seen and p not in drop:
                seen.add(p)
                where[p] = len(body)
                body.append(replace.get(p, tree.sentences[p]))
        c = st.conclusion
        if conclusions and c not in drop:
            where[c] = len(body)
            text = replace.get(c, tree.text(c))
            body.append(text if c != "hypothesis" or c in replace else text)
    return body, where


def _alt_draft(tree: Any, q: Any, label: str, pools: _Pools, rng: random.Random) -> Draft | None:
    key, key_text = q.answer_key, q.options[q.answer_key]
    wrong = _wrong_option(q, rng)
    show_key = (key, key_text)
    if label == NONE:
        body, _ = _steps_body(tree)
        return Draft(label, tuple(body), None, key, show_key, "eb_alt/gold_steps")
    if label == "incorrect_information":
        leaves = list(tree.leaves)
        rng.shuffle(leaves)
        for sid in leaves:
            old = tree.sentences[sid]
            new = _key_words_swap(old, key_text, q.options[wrong])
            how = "option_swap"
            if new is None:
                other = rng.choice(pools.leaves)[1]
                new, how = _swap_words(old, other, rng), "word_swap"
            if new and new != old:
                body, where = _steps_body(tree, replace={sid: new})
                return Draft(label, tuple(body), where[sid], key, show_key, f"eb_alt/{how}", old)
        return None
    if label == "missing_information":
        leaves = [s for s in tree.leaves]
        if len(leaves) < 2:
            return None
        sid = rng.choice(leaves)
        body, where = _steps_body(tree, drop={sid})
        step = next(s for s in tree.steps if sid in s.premises)
        return Draft(label, tuple(body), where.get(step.conclusion, len(body) - 1), key, show_key,
                     "eb_alt/random_leaf_removed", tree.sentences[sid])
    if label == "incorrect_reasoning":
        # Right facts, wrong conclusion: the final step concludes a wrong option.
        hyp = _key_words_swap(tree.hypothesis, key_text, q.options[wrong])
        if hyp is None:
            ints = list(tree.intermediates)
            if not ints:
                return None
            tid = rng.choice(ints)
            other = rng.choice(pools.concls)[1]
            new = _swap_words(tree.text(tid), other, rng)
            if not new:
                return None
            body, where = _steps_body(tree, replace={tid: new})
            return Draft(label, tuple(body), where[tid], key, show_key, "eb_alt/intermediate_word_swap",
                         tree.text(tid))
        body, where = _steps_body(tree, replace={"hypothesis": hyp})
        return Draft(label, tuple(body), where["hypothesis"], wrong, (wrong, q.options[wrong]),
                     "eb_alt/wrong_final_conclusion", tree.hypothesis)
    if label == "incomplete_reasoning":
        body, _ = _steps_body(tree, conclusions=False)
        return Draft(label, tuple(body), len(body) - 1, key, show_key if rng.random() < 0.7 else None,
                     "eb_alt/leaves_only")
    if label == "inconsistent_answer":
        body, _ = _steps_body(tree)
        return Draft(label, tuple(body), ANSWER, wrong, (wrong, q.options[wrong]), "eb_alt/answer_flipped")
    return _alt_draft_rest(tree, q, label, pools, rng, wrong)


def _alt_draft_rest(tree: Any, q: Any, label: str, pools: _Pools, rng: random.Random, wrong: str) -> Draft | None:
    """eb_alt's irrelevant, lack_justification and misunderstanding drafts."""
    key = q.answer_key
    show_key = (key, q.options[key])
    if label == "irrelevant":
        body, _ = _steps_body(tree)
        qw = _words(q.stem)
        cands = [t for tid, t in (rng.choice(pools.leaves) for _ in range(60))
                 if tid != tree.id and len(_words(t) & qw) >= 1]
        if not cands:
            return None
        at = rng.randint(0, max(len(body) - 1, 0))
        body.insert(at, cands[0])
        return Draft(label, tuple(body), at, key, show_key, "eb_alt/one_off_topic_fact")
    if label == "lack_justification":
        pred = key if rng.random() < 0.6 else wrong
        stem = _clean(re.split(r"(?<=[.?!])\s+", q.stem.strip())[-1]).rstrip("?")
        body = [rng.choice([f"The question asks {stem.lower()}", f"We need to find {stem.lower()}",
                            f"{_clean(q.options[pred])} is what fits here",
                            f"This is about {stem.lower()}"])]
        if rng.random() < 0.5:
            body.append(rng.choice(["It is the most reasonable option", "The others do not fit",
                                    "This is common knowledge"]))
        return Draft(label, tuple(body), 0, pred, (pred, q.options[pred]), "eb_alt/restates_question")
    if label == "misunderstanding":
        anchor = set().union(*(_words(v) for v in q.options.values()))
        cands = [t for t in (rng.choice(pools.trees) for _ in range(30)) if t.id != tree.id]
        cands.sort(key=lambda t: -len(_words(" ".join(t.leaf_texts())) & anchor))
        other = cands[0]
        body, where = _steps_body(other)
        pred = max(sorted(q.options), key=lambda k: len(_words(q.options[k]) & _words(other.hypothesis)))
        return Draft(label, tuple(body), where["hypothesis"], pred, (pred, q.options[pred]),
                     "eb_alt/reasons_about_other_question")
    raise ValueError(f"unknown label {label!r}")


@recipe("eb_alt")
def build_alt(tree: Any, q: Any, label: str, pools: _Pools, seed: int, split: str,
              rendering: Rendering | None = None) -> FlawExample | None:
    """The eb_alt example of one label for one tree in a random (or the given) rendering."""
    rng = random.Random(f"alt:{seed}:{tree.id}:{label}")
    draft = _alt_draft(tree, q, label, pools, rng)
    if draft is None:
        return None
    return finish(draft, tree, q, split, rendering or random_rendering(rng), rng)


# --- a third independent recipe: eb_prose ---------------------------------------------------------------
# Written apart from eb_v1 and eb_alt, for leave-one-recipe-out with three folds: other operations
# (a subject swapped between two facts, a whole step's facts dropped, two words of a conclusion
# swapped, the proof cut halfway, a wrong answer stated first, facts of a random tree appended, a bare
# claim with a hedge, half of another chain) and its own renderer, closer to a chat model's prose:
# an optional opener, "First," / "Next," connectives, "Step N:" or "- " bullets, the answer first or last.

PROSE_OPENERS = ["Let's think step by step.", "Here is my reasoning.", "To answer this, consider the facts.",
                 "Let me explain."]
PROSE_CONNECTIVES = ["First, ", "Next, ", "Also, ", "In addition, ", "Then ", ""]
PROSE_CONCLUDERS = ["This means that ", "So ", "Because of this, ", "It follows that ", "Hence "]
PROSE_LAYOUTS = ("sentences", "steps", "bullets")
_SUBJ_RE = re.compile(r"^(?P<s>[a-z][a-z ]{2,40}?) (?P<v>is|are|can|has|have|causes|requires|means|contains) ", re.I)


def _prose_units(body: Sequence[tuple[str, bool]], rng: random.Random, layout: str) -> list[str]:
    """Body items (text, is_conclusion) as units in one layout, with LM-like connectives."""
    out = []
    for i, (text, concl) in enumerate(body):
        t = _clean(text)
        lead = rng.choice(PROSE_CONCLUDERS) if concl else (rng.choice(PROSE_CONNECTIVES) if i < 3 else "")
        t = _cap(lead + (t if t.startswith("I ") else _lower_first(t))) if lead else _cap(t)
        out.append(f"Step {i + 1}: {t}." if layout == "steps" else f"- {t}." if layout == "bullets" else t + ".")
    return out


def _prose_answer(label: str, text: str, rng: random.Random, first: bool) -> str:
    # (an answer stated first never ends in a bare letter: "is A. Step 1" would not split back into units)
    forms = (["The answer is {T} ({L}).", "My answer is {T}.", "{T} is the answer."] if first else
             ["Therefore, the answer is {T} ({L}).", "The correct answer is {L}: {T}.", "So I choose {T}.",
              "Final answer: {L}."])
    return _cap(rng.choice(forms).format(L=label, T=_clean(text)))


def _prose_body(tree: Any, drop: set[str] | None = None, replace: dict[str, str] | None = None,
                stop_after: int | None = None) -> tuple[list[tuple[str, bool]], dict[str, int]]:
    drop, replace = drop or set(), replace or {}
    body: list[tuple[str, bool]] = []
    where: dict[str, int] = {}
    for n, st in enumerate(tree.steps):
        if stop_after is not None and n >= stop_after:
            break
        for sid in st.premises:
            if sid.startswith("sent") and sid not in where and sid not in drop:
                where[sid] = len(body)
                body.append((replace.get(sid, tree.sentences[sid]), False))
        where[st.conclusion] = len(body)
        body.append((replace.get(st.conclusion, tree.text(st.conclusion)), True))
    return body, where


def _prose_draft(tree: Any, q: Any, label: str, pools: _Pools, rng: random.Random
                 ) -> tuple[list[tuple[str, bool]], int | None, str, bool, str] | None:
    """(body, flaw body index or ANSWER, predicted label, answer stated first?, operation)."""
    key, wrong = q.answer_key, _wrong_option(q, rng)
    if label == NONE:
        return _prose_body(tree)[0], None, key, False, "gold"
    if label == "incorrect_information":
        leaves = [x for x in tree.leaves if _SUBJ_RE.match(tree.sentences[x])]
        if len(leaves) < 2:
            return None
        a, b = rng.sample(leaves, 2)
        ma, mb = _SUBJ_RE.match(tree.sentences[a]), _SUBJ_RE.match(tree.sentences[b])
        if ma.group("s").lower() == mb.group("s").lower():
            return None
        new = mb.group("s") + tree.sentences[a][len(ma.group("s")):]
        body, where = _prose_body(tree, replace={a: new})
        return body, where[a], key if rng.random() < 0.7 else wrong, False, "subject_swap"
    if label == "missing_information":
        steps = [st for st in tree.steps if any(p.startswith("sent") for p in st.premises)]
        if len(tree.steps) < 2 or not steps:
            return None
        st = rng.choice(steps)
        body, where = _prose_body(tree, drop={p for p in st.premises if p.startswith("sent")})
        return body, where[st.conclusion], key, False, "step_facts_dropped"
    if label == "incorrect_reasoning":
        sid = rng.choice(list(tree.intermediates) or ["hypothesis"])
        words = [w for w in re.findall(r"[A-Za-z]+", tree.text(sid)) if w.lower() not in STOP and len(w) > 3]
        if len(set(words)) < 2 or words[0].lower() == words[-1].lower():
            return None
        a, b = words[0], words[-1]
        new = re.sub(rf"\b{a}\b|\b{b}\b", lambda m: b if m.group(0) == a else a, tree.text(sid))
        body, where = _prose_body(tree, replace={sid: new})
        return body, where[sid], key if sid != "hypothesis" else wrong, False, "conclusion_words_swapped"
    return _prose_draft_rest(tree, q, label, pools, rng, wrong)


def _prose_draft_rest(tree: Any, q: Any, label: str, pools: _Pools, rng: random.Random, wrong: str
                      ) -> tuple[list[tuple[str, bool]], int | None, str, bool, str] | None:
    key = q.answer_key
    if label == "incomplete_reasoning":
        n = len(tree.steps)
        body, _ = _prose_body(tree, stop_after=max(n // 2, 1)) if n > 1 else (
            [(tree.sentences[x], False) for x in tree.leaves], {})
        if n == 1 or len(body) < 1:
            body = [(tree.sentences[x], False) for x in tree.leaves]
        return body, len(body) - 1, key, False, "proof_cut_halfway"
    if label == "inconsistent_answer":
        return _prose_body(tree)[0], ANSWER, wrong, True, "wrong_answer_stated_first"
    if label == "irrelevant":
        other = rng.choice([t for t in pools.trees if t.id != tree.id] or [tree])
        if other.id == tree.id:
            return None
        extra = [(x, False) for x in other.leaf_texts()[:2]]
        body = _prose_body(tree)[0]
        return body + extra, len(body), key, False, "random_tree_facts_appended"
    if label == "lack_justification":
        pred = key if rng.random() < 0.6 else wrong
        claim = rng.choice([tree.hypothesis, f"{_clean(q.options[pred])} fits best"])
        hedge = rng.choice(["I am fairly confident about this", "This seems right to me",
                            "That is generally true"])
        return [(claim, False), (hedge, False)], 0, pred, rng.random() < 0.5, "bare_claim_with_hedge"
    if label == "misunderstanding":
        qw = _words(q.stem)
        cands = [t for t in (rng.choice(pools.trees) for _ in range(30)) if t.id != tree.id]
        if not cands:
            return None
        other = max(cands, key=lambda t: len(_words(t.hypothesis) & qw))
        leaves = [(x, False) for x in other.leaf_texts()[:2]]
        body = leaves + [(other.hypothesis, True)]
        return body, len(body) - 1, wrong, False, "half_of_another_chain"
    raise ValueError(f"unknown label {label!r}")


@recipe("eb_prose")
def build_prose(tree: Any, q: Any, label: str, pools: _Pools, seed: int, split: str) -> FlawExample | None:
    """The eb_prose example of one label for one tree."""
    rng = random.Random(f"prose:{seed}:{tree.id}:{label}")
    d = _prose_draft(tree, q, label, pools, rng)
    if d is None:
        return None
    body, flaw, pred, first, op = d
    layout = rng.choices(PROSE_LAYOUTS, weights=[4, 2, 2])[0]
    units = _prose_units(body, rng, layout)
    offset = 0
    if layout == "sentences" and rng.random() < 0.4:
        units.insert(0, rng.choice(PROSE_OPENERS))
        offset = 1
    ans = _prose_answer(pred, q.options[pred], rng, first) if rng.random() < 0.85 or first else None
    ans_i = None
    if ans and first:
        units.insert(0, ans)
        offset, ans_i = offset + 1, 0
    elif ans:
        units.append(ans)
        ans_i = len(units) - 1
    idx = None if flaw is None else (ans_i if ans_i is not None else len(units) - 1) if flaw == ANSWER else flaw + offset
    return recipe_example("eb_prose", q, label, split, units, pred, idx, f"{op} [{layout}]")


def recipe_example(name: str, q: Any, label: str, split: str, units: Sequence[str], pred: str, idx: int | None,
                   how: str, reference: str | None = None) -> FlawExample:
    """A recipe's example of `label` for question `q` (id `<question>:<label>:<recipe name>`): its units,
    predicted option, flaw unit (None for `none`), operation and rendering (`how`), the gold text the
    flaw concerns; the score follows SCORES."""
    with_key, wrong = SCORES[label]
    return FlawExample(id=f"{q.id}:{label}:{name}", source_id=q.id, split=split, question=q.stem,
                       options=dict(q.options), answer_key=q.answer_key, sentences=tuple(units),
                       predicted_answer=pred, dimension=label, flaw_index=idx,
                       flaw_text=units[idx] if idx is not None else "None",
                       score=with_key if pred == q.answer_key else wrong, recipe=f"{name}/{how}", reference=reference)


def build_recipe(recipe_name: str, trees: Sequence[Any], questions: Sequence[Any], seed: int = 0,
                 split: str = "train", labels: Iterable[str] = LABELS) -> list[FlawExample]:
    """One example per (tree, label) from the named recipe (see RECIPES)."""
    if recipe_name not in RECIPES:
        raise InputError(f"unknown flaw recipe {recipe_name!r}: use one of {', '.join(RECIPES)}")
    if recipe_name == "eb_v1":
        return build_examples(trees, questions, seed=seed, split=split, labels=labels)
    return _run_recipe(RECIPES[recipe_name], trees, questions, seed, split, labels)


def last_step(tree: Any) -> Any:
    """The tree cut to its final step: the premises that entail the hypothesis become its leaves (an
    intermediate premise becomes a leaf `sent_<intN>` with the intermediate's text). The recipes run on
    such trees give the short explanations real model outputs mostly are (two or three sentences and an
    answer); on full trees every label but lack_justification is long, so length alone would tell a head
    "unjustified" (docs/critique_data.md, "Short explanations")."""
    from dataclasses import replace as _replace

    from microtheory.trees import HYPOTHESIS, Step

    if len(tree.steps) <= 1:
        return tree
    final = next(s for s in tree.steps if s.conclusion == HYPOTHESIS)
    ids = {p: p if p.startswith("sent") else f"sent_{p}" for p in final.premises}
    return _replace(tree, sentences={ids[p]: tree.sentences[p] for p in final.premises},
                    steps=(Step(tuple(ids[p] for p in final.premises), HYPOTHESIS),))


def robustness_set(trees: Sequence[Any], questions: Sequence[Any], seed: int = 0,
                   split: str = "dev") -> list[list[FlawExample]]:
    """For each (tree, label) of eb_alt: the same draft in the five ROBUSTNESS_RENDERINGS."""
    pools = _pools(trees)
    groups = []
    for t, q in zip(trees, questions):
        if not _usable(q):
            continue
        for label in LABELS:
            rng = random.Random(f"robust:{seed}:{t.id}:{label}")
            draft = _alt_draft(t, q, label, pools, rng)
            if draft is not None:
                groups.append([finish(draft, t, q, split, r, random.Random(f"{seed}:{t.id}:{r.name}"))
                               for r in ROBUSTNESS_RENDERINGS])
    return groups


# --- a fourth independent recipe: eb_merged ---------------------------------------------------------------
# Written apart from the other three, so that leave-one-recipe-out trains on three recipes: other
# operations (one fact's predicate transplanted from another tree's fact with the same verb, the leaf
# that alone supplies the hypothesis' words dropped, a conclusion's roles reversed, the last step left
# out, a wrong option named by letter only, a fact about a wrong option inserted, the chain of another
# question that fits a wrong option, a circular claim) and its own renderer: each step's facts and
# conclusion in one sentence ("Since A and B, C."), or labelled lines ("Fact: A." / "Inference: C.").

MERGED_FORMS = ["Since {p}, {c}.", "Because {p}, {c}.", "{P}, and therefore {c}.", "If {p}, then {c}.",
                "Given that {p}, it follows that {c}.", "{P}, which means {c}."]
MERGED_JOINS = [" and ", ", and ", " and also "]
MERGED_ONLY_CONCL = ["Putting these together, {c}.", "Combining the above, {c}.", "From this, {c}.",
                     "Taken together, {c}."]
MERGED_ANSWERS = ["Answer: {T}.", "Hence I would go with {T} ({L}).", "Correct option: {L}.",
                  "The option that fits is {L}, {T}.", "My final choice is {T}."]
MERGED_LAYOUTS = ("merged", "labelled")
_ROLE_RE = re.compile(r"^(?P<x>[a-z][a-z' ]{2,60}?) (?P<v>is a kind of|are a kind of|is a type of|are a type of|"
                      r"is a part of|are a part of|is a source of|is made of|are made of|is a property of|"
                      r"can cause|causes|cause|produces|produce|requires|require|contains|contain|eats|eat|"
                      r"absorbs|reflects|protects|helps|uses|use|needs|need|converts|transfers|orbits|has|have) "
                      r"(?P<y>[a-z][a-z' ]{2,60})$", re.I)


@dataclass
class _MStep:
    leaves: list[tuple[str, str]]        # (item, text) introduced by this step
    concl: tuple[str, str] | None        # (item, text); None = left out


def _merged_steps(tree: Any, replace: dict[str, str] | None = None, drop: set[str] | None = None,
                  cut_last: bool = False) -> list[_MStep]:
    replace, drop = replace or {}, drop or set()
    out: list[_MStep] = []
    seen: set[str] = set()
    for n, st in enumerate(tree.steps):
        leaves = []
        for p in st.premises:
            if p.startswith("sent") and p not in seen and p not in drop:
                seen.add(p)
                leaves.append((p, replace.get(p, tree.sentences[p])))
        last = n == len(tree.steps) - 1
        concl = None if cut_last and last else (st.conclusion, replace.get(st.conclusion, tree.text(st.conclusion)))
        if leaves or concl:
            out.append(_MStep(leaves, concl))
    return out


def _merged_units(steps: Sequence[_MStep], layout: str, rng: random.Random) -> tuple[list[str], dict[str, int]]:
    """(units, item -> unit index) of the steps in one layout."""
    units: list[str] = []
    where: dict[str, int] = {}
    for st in steps:
        if layout == "labelled":
            for item, text in st.leaves:
                where[item] = len(units)
                units.append(f"Fact: {_clean(text)}.")
            if st.concl:
                where[st.concl[0]] = len(units)
                units.append(f"Inference: {_clean(st.concl[1])}.")
            continue
        for item, _ in st.leaves:
            where[item] = len(units)
        if st.concl:
            where[st.concl[0]] = len(units)
        p = rng.choice(MERGED_JOINS).join(_clean(t) for _, t in st.leaves)
        c = _lower_first(_clean(st.concl[1])) if st.concl else ""
        if p and c:
            form = rng.choice(MERGED_FORMS)
            units.append(_cap(form.format(p=_lower_first(p), P=_cap(p), c=c)))
        elif c:
            units.append(rng.choice(MERGED_ONLY_CONCL).format(c=c))
        else:
            units.append(_cap(p) + ".")
    return units, where


def _transplant(text: str, pools: _Pools, tree: Any, rng: random.Random) -> str | None:
    """The fact's subject with the predicate of another tree's fact that has the same verb."""
    m = _SUBJ_RE.match(text)
    if not m:
        return None
    for _ in range(80):
        tid, other = rng.choice(pools.leaves)
        mo = _SUBJ_RE.match(other)
        if tid != tree.id and mo and mo.group("v") == m.group("v") and \
                mo.group("s").lower() != m.group("s").lower():
            new = m.group("s") + other[len(mo.group("s")):]
            if _words(new) - _words(text):
                return new
    return None


def _reversed_roles(text: str) -> str | None:
    m = _ROLE_RE.match(_clean(text))
    if not m or m.group("x").lower() == m.group("y").lower():
        return None
    return f"{m.group('y')} {m.group('v')} {m.group('x')}"


def _merged_draft(tree: Any, q: Any, label: str, pools: _Pools, rng: random.Random
                  ) -> tuple[list[_MStep], str | None, str, str, str | None] | None:
    """(steps, flawed item or "answer" or an extra's item, predicted label, operation, the gold text the
    flaw concerns (the corrupted or dropped fact, the reversed conclusion) or None)."""
    key, wrong = q.answer_key, _wrong_option(q, rng)
    if label == NONE:
        return _merged_steps(tree), None, key, "gold", None
    if label == "incorrect_information":
        for sid in rng.sample(list(tree.leaves), len(tree.leaves)):
            new = _transplant(tree.sentences[sid], pools, tree, rng)
            if new:
                return _merged_steps(tree, replace={sid: new}), sid, key if rng.random() < 0.75 else wrong, \
                    "predicate_transplant", tree.sentences[sid]
        return None
    if label == "missing_information":
        if len(tree.leaves) < 2:
            return None
        hyp = _words(tree.hypothesis)

        def unique(sid: str) -> int:
            others = set().union(*(_words(tree.sentences[o]) for o in tree.leaves if o != sid))
            return len((_words(tree.sentences[sid]) & hyp) - others)
        sid = max(tree.leaves, key=lambda s: (unique(s), rng.random()))
        step = next(s for s in tree.steps if sid in s.premises)
        return _merged_steps(tree, drop={sid}), step.conclusion, key, "unique_support_leaf_dropped", tree.sentences[sid]
    if label == "incorrect_reasoning":
        cids = rng.sample([*tree.intermediates, "hypothesis"], len(tree.intermediates) + 1)
        for how, op in (("roles_reversed", _reversed_roles), ("conclusion_negated", negate)):
            for cid in cids:
                new = op(tree.text(cid))
                if new and new != tree.text(cid):
                    pred = key if cid != "hypothesis" or rng.random() < 0.6 else wrong
                    return _merged_steps(tree, replace={cid: new}), cid, pred, how, tree.text(cid)
        return None
    if label == "incomplete_reasoning":
        if len(tree.steps) < 2:
            return None
        steps = _merged_steps(tree, cut_last=True)
        last = steps[-1].leaves[-1][0] if steps[-1].leaves else steps[-1].concl[0]
        return steps, last, key, "last_step_left_out", tree.hypothesis
    if label == "inconsistent_answer":
        return _merged_steps(tree), "answer", wrong, "wrong_letter_named", None
    if label == "irrelevant":
        anchor = _words(q.options[wrong]) | _words(q.stem)
        cands = _related(pools.leaves, tree, anchor, rng)
        if not cands:
            return None
        steps = _merged_steps(tree)
        at = rng.randint(0, len(steps) - 1)
        steps.insert(at, _MStep([("extra", cands[0])], None))
        return steps, "extra", key, "wrong_option_fact_inserted", None
    if label == "misunderstanding":
        cands = [t for t in (rng.choice(pools.trees) for _ in range(30)) if t.id != tree.id]
        if not cands:
            return None
        other = max(cands, key=lambda t: len(_words(t.hypothesis) & _words(q.options[wrong])))
        return _merged_steps(other), "hypothesis", wrong, "chain_fitting_a_wrong_option", None
    if label == "lack_justification":
        pred = key if rng.random() < 0.5 else wrong
        t = _clean(q.options[pred])
        claim = rng.choice([f"{t} is correct because it is the right answer",
                            f"It must be {t}, since none of the other options works",
                            f"Based on general knowledge, {t} is true"])
        return [_MStep([("claim", claim)], None)], "claim", pred, "circular_claim", None
    raise ValueError(f"unknown label {label!r}")


@recipe("eb_merged")
def build_merged(tree: Any, q: Any, label: str, pools: _Pools, seed: int, split: str) -> FlawExample | None:
    """The eb_merged example of one label for one tree."""
    rng = random.Random(f"merged:{seed}:{tree.id}:{label}")
    d = _merged_draft(tree, q, label, pools, rng)
    if d is None:
        return None
    steps, flaw, pred, op, ref = d
    layout = rng.choice(MERGED_LAYOUTS) if label != "lack_justification" else "merged"
    units, where = _merged_units(steps, layout, rng)
    style = "none" if label not in ("inconsistent_answer", "lack_justification") and rng.random() < 0.2 else \
        "letter" if label == "inconsistent_answer" else "any"
    if style == "letter":
        units.append(rng.choice(["Correct option: {L}.", "So I pick {L}."]).format(L=pred))
    elif style == "any":
        units.append(rng.choice(MERGED_ANSWERS).format(L=pred, T=_clean(q.options[pred])))
    from critique.checks import split_units

    if len(split_units(" ".join(units))) != len(units):   # a fact the unit splitter cuts ("0 / -459 / ...")
        return None
    idx = None if flaw is None else len(units) - 1 if flaw == "answer" else where[flaw]
    return recipe_example("eb_merged", q, label, split, units, pred, idx, f"{op} [{layout}/{style}]", ref)
