"""A small causal LM's preference among a question's options, as option-ranker features.

A signal independent of the retrieval scores: SmolLM2-135M-Instruct (the packaged model) reads each
option as the continuation of two prompts,

    Facts: <fact 1>. <fact 2>. <fact 3>.  (the "facts" pass: the facts retrieved for the question
    Question: <stem>                       sentence, shared by all options; none retrieved: no line)
    Answer: <option>

    Answer: <option>                      (the "none" pass: no question)

and the continuation's summed negative log-likelihood (nats) gives, per option (`LM_FEATURES`):

- `lm_logp_mean`, `lm_logp_sum`: log-probability of the option given the facts and the question, per
  token and summed;
- `lm_pmi`, `lm_pmi_mean`: that minus log p(option | "Answer:"), summed and per token: how much
  facts and question raise the option (PMI-style scoring discounts options that are likely anyway:
  short, frequent words).

On EntailmentBank train cross-validation (bench/train_qa_ranker.py) a third pass with the question
alone added nothing over these two and cost a third more LM time, so it is not run.

The options of one question share each prompt, so the engine (`core.lm_nll`, which packs the
continuations of one prompt into one LM row) computes each prompt once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

LM_FEATURES = ("lm_logp_mean", "lm_logp_sum", "lm_pmi", "lm_pmi_mean")
PASSES = ("facts", "none")
FACTS = 3  # retrieved facts in the facts prompt


class PairNll(Protocol):
    """What computes the features: (n, 2) total NLL and token count of each continuation given its prompt."""

    def nll_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


@dataclass(frozen=True)
class LmQuestion:
    """What the LM reads of one question: its stem, its options in order, the facts retrieved for it."""

    stem: str
    options: tuple[str, ...]
    facts: tuple[str, ...] = ()


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def prompts(stem: str, facts: Sequence[str] = ()) -> dict[str, str]:
    """The prompt of each pass; an option follows after one space. No facts: no facts line."""
    question = f"Question: {_clean(stem)}\nAnswer:"
    kept = [_clean(f).rstrip(".") + "." for f in facts[:FACTS] if _clean(f)]
    return {"facts": f"Facts: {' '.join(kept)}\n{question}" if kept else question, "none": "Answer:"}


def option_pairs(q: LmQuestion) -> list[tuple[str, str]]:
    """(prompt, option) for every pass x option, pass-major (PASSES order, then the options' order)."""
    p = prompts(q.stem, q.facts)
    return [(p[name], _clean(o)) for name in PASSES for o in q.options]


def features_from_nll(nll: np.ndarray, options: int) -> np.ndarray:
    """(options x LM_FEATURES) from the (len(PASSES) * options, 2) NLL rows of `option_pairs`."""
    x = np.asarray(nll, dtype=np.float64).reshape(len(PASSES), options, 2)
    cond, none = x[0, :, 0], x[1, :, 0]
    n = np.maximum(x[0, :, 1], 1.0)  # the option's tokens: the same after every prompt
    return np.stack([-cond / n, -cond, none - cond, (none - cond) / n], axis=1)


def lm_option_features(engine: PairNll, questions: Sequence[LmQuestion]) -> list[np.ndarray]:
    """One (options x LM_FEATURES) matrix per question, every question's passes in one engine call
    (the engine batches across questions and options)."""
    pairs = [option_pairs(q) for q in questions]
    flat = [p for ps in pairs for p in ps]
    nll = engine.nll_pairs(flat) if flat else np.zeros((0, 2))
    out, at = [], 0
    for q, ps in zip(questions, pairs):
        out.append(features_from_nll(nll[at:at + len(ps)], len(q.options)))
        at += len(ps)
    return out
