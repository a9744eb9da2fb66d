"""How likely an explanation is under a small LM, given the question and the answer it explains.

A critic signal that needs no labels: SmolLM2-135M-Instruct (the packaged model, loaded through
`core.models`) reads a short prompt

    Question: <question>
    Answer: <answer text>
    Explanation: <explanation>

and the scorer sums the negative log-likelihood (nats) of the explanation's tokens only. Columns
(`LikelihoodScorer.features`, all of `FEATURES` by default):

- `lm_nll_sum`: NLL of the explanation given question + answer;
- `lm_nll_mean`: the same per explanation token;
- `lm_tokens`: the explanation's token count (after truncation to `max_tokens`);
- `lm_answer_gain`: NLL given the question alone minus NLL given question + answer: how much the
  answer makes the explanation more likely (positive: the explanation is about this answer);
- `lm_answer_gain_mean`: the same per token;
- optional (`context_gain=True`): `lm_context_gain(_mean)`, NLL with no question ("Explanation:"
  only) minus NLL given question + answer: how much the explanation is about this question.

The NLLs come from `core.lm_nll.ContinuationNll` (shared with the QA ranker's option features):
explanations that share a prompt (the same question + answer) are packed into one LM row after one
copy of the prompt, rows are length-sorted and batched, and scores are cached in memory per
(prompt version, model, prompt, explanation) and, with `cache_path`, in an append-only JSONL file
that later processes reuse. One thread by default: the machine is usually shared.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.lm_nll import ContinuationNll, NllCache, NllConfig, cache_key

BASE_FEATURES = ("lm_nll_sum", "lm_nll_mean", "lm_tokens")
ANSWER_FEATURES = ("lm_answer_gain", "lm_answer_gain_mean")
CONTEXT_FEATURES = ("lm_context_gain", "lm_context_gain_mean")
FEATURES = BASE_FEATURES + ANSWER_FEATURES  # the default columns
PROMPT_VERSION = "qa-v1"  # part of every cache key: change it when the prompts change


class ExplainedRecord(Protocol):
    """What the scorer reads from a record (`critique.inputs.ModelOutput` has all of it)."""

    question: str
    options: dict[str, str]
    answer_key: str
    explanation: str
    predicted_answer: str


@dataclass(frozen=True)
class LikelihoodConfig(NllConfig):
    """The engine's settings (core.lm_nll.NllConfig; here the continuation is the explanation) and
    which extra passes run."""

    answer_gain: bool = True        # second pass: the prompt without the answer
    context_gain: bool = False      # third pass: no question at all


def answer_text(rec: ExplainedRecord) -> str:
    """The answer the explanation explains: the predicted option's text (else what was predicted,
    else the keyed option)."""
    pred = (rec.predicted_answer or "").strip()
    if pred in rec.options:
        return rec.options[pred]
    return pred or rec.options.get(rec.answer_key, rec.answer_key)


def prompts(rec: ExplainedRecord) -> dict[str, str]:
    """The three conditioning prompts; the explanation follows each after one space."""
    q = " ".join(rec.question.split())
    return {"answer": f"Question: {q}\nAnswer: {' '.join(answer_text(rec).split())}\nExplanation:",
            "question": f"Question: {q}\nExplanation:",
            "none": "Explanation:"}


def _cache_key(model_id: str, prompt: str, explanation: str) -> str:
    return cache_key(PROMPT_VERSION, model_id, prompt, explanation)


class LikelihoodScorer(ContinuationNll):
    """`score(records) -> (n, len(features))` float64 array of explanation likelihood features.

    `backend=(tokenizer, causal_lm)` injects a model (tests); `model_id` then names it in cache keys.
    """

    key_version = PROMPT_VERSION
    config: LikelihoodConfig

    def __init__(self, config: LikelihoodConfig | None = None, *, backend: tuple[Any, Any] | None = None,
                 model_id: str | None = None, **overrides: Any) -> None:
        cfg = config or LikelihoodConfig()
        super().__init__(LikelihoodConfig(**{**cfg.__dict__, **overrides}) if overrides else cfg,
                         backend=backend, model_id=model_id)

    @property
    def features(self) -> tuple[str, ...]:
        return (BASE_FEATURES + (ANSWER_FEATURES if self.config.answer_gain else ())
                + (CONTEXT_FEATURES if self.config.context_gain else ()))

    @property
    def passes(self) -> tuple[str, ...]:
        return ("answer",) + (("question",) if self.config.answer_gain else ()) + (
            ("none",) if self.config.context_gain else ())

    def score(self, records: Sequence[ExplainedRecord], progress: bool = False) -> np.ndarray:
        """One row per record, columns `self.features` (NLLs in nats)."""
        pairs = [(prompts(r)[p], r.explanation) for r in records for p in self.passes]
        nll = self.nll_pairs(pairs, progress=progress).reshape(len(records), len(self.passes), 2)
        s, n = nll[:, 0, 0], np.maximum(nll[:, 0, 1], 1)
        cols = [s, s / n, nll[:, 0, 1]]
        for j in range(1, len(self.passes)):
            cols += [nll[:, j, 0] - s, nll[:, j, 0] / np.maximum(nll[:, j, 1], 1) - s / n]
        return np.stack(cols, axis=1) if records else np.zeros((0, len(self.features)))

    def score_dict(self, records: Sequence[ExplainedRecord], progress: bool = False) -> dict[str, np.ndarray]:
        x = self.score(records, progress=progress)
        return {f: x[:, i] for i, f in enumerate(self.features)}


__all__ = ["ANSWER_FEATURES", "BASE_FEATURES", "CONTEXT_FEATURES", "FEATURES", "LikelihoodConfig",
           "LikelihoodScorer", "NllCache", "answer_text", "prompts"]
