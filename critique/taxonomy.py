"""The Digital Socrates flaw dimensions (BACKGROUND.md section 3) plus `none`, with general advice.

The order of `LABELS` is the class order of the critic's dimension head: never reorder it
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


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(NONE, "no significant flaw: the explanation is correct and supports the keyed answer",
              "The explanation is sound; keep stating each fact and how it leads to the answer."),
    Dimension("misunderstanding", "misreads the question or the answer options",
              "Reread the question and every option carefully, and make sure the reasoning answers "
              "exactly what is being asked."),
    Dimension("lack_justification", "states an answer without informative justification",
              "Do not just assert the answer or restate the question: give the facts that support it "
              "and show how they lead to the choice."),
    Dimension("incorrect_information", "states a false fact",
              "Check each stated fact against reliable knowledge; a single false premise can lead the "
              "whole argument astray."),
    Dimension("missing_information", "leaves out a crucial fact or perspective",
              "Make sure every fact the conclusion depends on is stated; the argument has a gap that a "
              "key piece of knowledge should fill."),
    Dimension("incorrect_reasoning", "makes an invalid step in the reasoning",
              "Check that each conclusion really follows from the statements before it; one step draws "
              "a conclusion the premises do not support."),
    Dimension("incomplete_reasoning", "the reasoning stops short of the answer",
              "Carry the reasoning through to the end: connect the last conclusion explicitly to the "
              "option you choose."),
    Dimension("inconsistent_answer", "the answer given does not match the explanation's conclusion",
              "Make sure the option you pick is the one your own reasoning arrives at."),
    Dimension("irrelevant", "includes irrelevant or redundant facts or reasoning",
              "Keep to the facts that bear on the question; unrelated statements distract from the "
              "argument."),
)

BY_ID: dict[str, Dimension] = {d.id: d for d in DIMENSIONS}
LABELS: tuple[str, ...] = tuple(d.id for d in DIMENSIONS)
FLAW_LABELS: tuple[str, ...] = tuple(x for x in LABELS if x != NONE)
LABEL_INDEX: dict[str, int] = {x: i for i, x in enumerate(LABELS)}


def general_advice(dimension: str) -> str:
    """The general (answer-agnostic) advice for a dimension id; KeyError for an unknown id."""
    return BY_ID[dimension].advice
