"""The Digital Socrates flaw dimensions (BACKGROUND.md section 3) plus `none`: one table everything reads.

Each row holds the dimension's id, what it means, the 0-5 score range typical of that dimension
(the classifier critic, `critique.model`, decodes its score within it; the checks critic's score is
its own calibrated estimate and may fall outside it, `critique.head`), the general (answer-agnostic) advice, the specific-advice template (`{s}` = the flawed
sentence, `{pred}` = the predicted label, `{fact}` = a cited fact when a check found one), and the
names of the flaw-injection recipes (`critique.flaws.RECIPES`) that make synthetic examples of it.

The order of `LABELS` is the class order of the critics' dimension heads: never reorder it
(shipped weights depend on it); add new labels at the end only.
"""
from __future__ import annotations

from dataclasses import dataclass

NONE = "none"


@dataclass(frozen=True)
class Dimension:
    """One flaw dimension: its id, what it means, and advice that does not give the answer away."""

    id: str
    description: str
    advice: str
    score_range: tuple[int, int] = (0, 4)     # inclusive, typical; a sound explanation scores 4-5
    specific: str = ""                        # template: {s} flawed sentence, {pred} label, {fact} cited fact
    specific_with_fact: str = ""              # used instead when a check cites a fact
    recipes: tuple[str, ...] = ()             # flaw recipes (critique.flaws.RECIPES) that inject it


_ALL_RECIPES = ("eb_v1", "eb_alt", "eb_prose", "eb_merged")

DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(NONE, "no significant flaw: the explanation is correct and supports the keyed answer",
              "The explanation is sound; keep stating each fact and how it leads to the answer.",
              (4, 5), "None", "None", _ALL_RECIPES),
    Dimension("misunderstanding", "misreads the question or the answer options",
              "Reread the question and every option carefully, and make sure the reasoning answers "
              "exactly what is being asked.", (0, 2),
              "The statement \"{s}\" does not address what this question asks; reread the question "
              "and the options, and reason about them instead.", "", _ALL_RECIPES),
    Dimension("lack_justification", "states an answer without informative justification",
              "Do not just assert the answer or restate the question: give the facts that support it "
              "and show how they lead to the choice.", (0, 3),
              "The explanation asserts \"{s}\" without facts that support it; state the facts "
              "about the question's subject that lead to an option.", "", _ALL_RECIPES),
    Dimension("incorrect_information", "states a false fact",
              "Check each stated fact against reliable knowledge; a single false premise can lead the "
              "whole argument astray.", (0, 3),
              "Check \"{s}\": it is not true as stated, and the argument depends on it.",
              "Check \"{s}\" against the known fact {fact}: they disagree, and the argument depends on it.",
              _ALL_RECIPES),
    Dimension("missing_information", "leaves out a crucial fact or perspective",
              "Make sure every fact the conclusion depends on is stated; the argument has a gap that a "
              "key piece of knowledge should fill.", (2, 4),
              "The step \"{s}\" relies on a fact the explanation never states; add that fact.",
              "The step \"{s}\" relies on a fact the explanation never states, such as {fact}.", _ALL_RECIPES),
    Dimension("incorrect_reasoning", "makes an invalid step in the reasoning",
              "Check that each conclusion really follows from the statements before it; one step draws "
              "a conclusion the premises do not support.", (0, 3),
              "\"{s}\" does not follow from the statements before it; redo that step.", "", _ALL_RECIPES),
    Dimension("incomplete_reasoning", "the reasoning stops short of the answer",
              "Carry the reasoning through to the end: connect the last conclusion explicitly to the "
              "option you choose.", (2, 4),
              "The reasoning stops at \"{s}\"; carry it through to the option it supports.", "", _ALL_RECIPES),
    Dimension("inconsistent_answer", "the answer given does not match the explanation's conclusion",
              "Make sure the option you pick is the one your own reasoning arrives at.", (0, 2),
              "The explanation's reasoning does not lead to the chosen answer ({pred}); pick the "
              "option that the conclusion actually supports.", "", _ALL_RECIPES),
    Dimension("irrelevant", "includes irrelevant or redundant facts or reasoning",
              "Keep to the facts that bear on the question; unrelated statements distract from the "
              "argument.", (3, 4),
              "\"{s}\" does not help answer this question; leave it out and keep to the relevant facts.", "",
              _ALL_RECIPES),
)

BY_ID: dict[str, Dimension] = {d.id: d for d in DIMENSIONS}
LABELS: tuple[str, ...] = tuple(d.id for d in DIMENSIONS)
FLAW_LABELS: tuple[str, ...] = tuple(x for x in LABELS if x != NONE)
LABEL_INDEX: dict[str, int] = {x: i for i, x in enumerate(LABELS)}


def general_advice(dimension: str) -> str:
    """The general (answer-agnostic) advice for a dimension id; KeyError for an unknown id."""
    return BY_ID[dimension].advice


def score_range(dimension: str) -> tuple[int, int]:
    """The inclusive 0-5 score range typical of this dimension (the classifier critic decodes within it)."""
    return BY_ID[dimension].score_range


def specific_advice(dimension: str, sentence: str, pred: str, fact: str | None = None) -> str:
    """The template advice for a dimension quoting its flawed sentence (and a cited fact when given)."""
    d = BY_ID[dimension]
    if d.id == NONE:
        return "None"
    tpl = d.specific_with_fact if (fact and d.specific_with_fact) else d.specific
    return tpl.format(s=" ".join(sentence.split()).rstrip("."), pred=pred, fact=fact or "")
