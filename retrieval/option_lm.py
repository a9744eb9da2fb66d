"""A small causal LM's preference among a question's options, as option-ranker features.

Independent of retrieval: SmolLM2-135M-Instruct (the packaged model) reads each option as the
continuation of a cloze prompt and of an unconditional one,

    Question: <stem>            (the "question" pass)
    Answer: <option>

    Answer: <option>            (the "none" pass)

and the continuation's summed negative log-likelihood (nats) gives, per option (`LM_FEATURES`):

- `lm_logp_mean`, `lm_logp_sum`: log-probability of the option given the question, per token and summed;
- `lm_pmi`, `lm_pmi_mean`: log p(option | question) - log p(option | "Answer:"), summed and per token:
  how much the question raises the option (PMI-style scoring discounts options that are likely
  anyway: short, frequent words).

The options of one question share each prompt, so an NLL engine that packs continuations of one
prompt into one LM row (`core.lm_nll`) computes the prompt once per pass.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

LM_FEATURES = ("lm_logp_mean", "lm_logp_sum", "lm_pmi", "lm_pmi_mean")
PASSES = ("question", "none")


class PairNll(Protocol):
    """What computes the features: (n, 2) total NLL and token count of each continuation given its prompt."""

    def nll_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def prompts(stem: str) -> dict[str, str]:
    """The prompt of each pass; an option follows after one space."""
    return {"question": f"Question: {_clean(stem)}\nAnswer:", "none": "Answer:"}


def option_pairs(stem: str, options: Sequence[str]) -> list[tuple[str, str]]:
    """(prompt, option) for every pass x option, pass-major (PASSES order, then the options' order)."""
    p = prompts(stem)
    return [(p[name], _clean(o)) for name in PASSES for o in options]


def features_from_nll(nll: np.ndarray, options: int) -> np.ndarray:
    """(options x LM_FEATURES) from the (len(PASSES) * options, 2) NLL rows of `option_pairs`."""
    x = np.asarray(nll, dtype=np.float64).reshape(len(PASSES), options, 2)
    cond, none = x[0, :, 0], x[1, :, 0]
    n = np.maximum(x[0, :, 1], 1.0)
    return np.stack([-cond / n, -cond, none - cond, (none - cond) / n], axis=1)


def lm_option_features(engine: PairNll, questions: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
    """One (options x LM_FEATURES) matrix per (stem, options), every question's passes in one engine call
    (the engine batches across questions and options)."""
    pairs = [option_pairs(stem, opts) for stem, opts in questions]
    flat = [p for ps in pairs for p in ps]
    nll = engine.nll_pairs(flat) if flat else np.zeros((0, 2))
    out, at = [], 0
    for (_, opts), ps in zip(questions, pairs):
        out.append(features_from_nll(nll[at:at + len(ps)], len(opts)))
        at += len(ps)
    return out
