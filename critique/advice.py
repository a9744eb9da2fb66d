"""Advice for a critique: general (per dimension) and specific, grounded in given knowledge.

General advice comes from the taxonomy and never depends on the question. Specific advice:

- With knowledge (a microtheory directory or a knowledge store): facts are retrieved for the
  question's hypothesis (question + keyed answer as a statement) and for the flawed sentence. The
  entailment scorer then finds (a) the fact the explanation *misses*: relevant to the correct answer
  (adding it to the explanation raises the entailment score of the hypothesis most) and not already
  stated by the explanation (the explanation does not entail it); and (b) for a statement flagged as
  false or invalid, the closest fact that does *not* support it, to check it against. Cited facts
  appear verbatim with their ids, in `specific` and in `cited_facts`.
- Without knowledge: guidance built only from the question, the options and the explanation's own
  sentences.

Invariant (tested): the specific advice states no fact that is not in the given knowledge. Its
text is fixed template wording, quotes of the question / options / explanation, and verbatim facts.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from critique.format import NO_FLAW, Critique
from critique.inputs import ModelOutput, split_sentences
from critique.taxonomy import NONE, general_advice
from retrieval.entail import EntailmentScorer, content_words
from core.errors import InputError
from core.types import Fact
from retrieval.knowledge import Knowledge, knowledge_from_facts, open_microtheory, open_store

MAX_QUOTE = 200  # characters of a quoted sentence in advice


# The old name of in-memory knowledge over a list of facts (cli/pipeline.py and tests use it).
FactIndex = knowledge_from_facts


def load_knowledge(microtheory: str | Path | None = None, store: str | Path | None = None,
                   encoder: Any = None) -> Knowledge | None:
    """Knowledge from a microtheory (what QA's --microtheory takes: a microtheory directory, a facts
    JSONL file, a store, or a folder holding one) or a store directory (not both); None when neither.
    `encoder` embeds a microtheory's facts; a store given as `store` must have been built with it."""
    if microtheory is not None and store is not None:
        raise InputError("give either a microtheory or a store, not both")
    if microtheory is not None:
        return open_microtheory(microtheory, encoder)
    if store is not None:
        return open_store(store, encoder=encoder)
    return None


def default_hypothesis(stem: str, option: str) -> str:
    """Question + answer as one statement (spaCy rules; a plain join when they are unavailable)."""
    try:
        from retrieval.hypothesis import make_hypothesis

        return make_hypothesis(stem, option)
    except Exception:  # noqa: BLE001 - the rewriter is a convenience: retrieval works on the plain join
        return f"{stem.strip()} {option.strip()}"


def _quote(s: str) -> str:
    s = " ".join(s.split())
    return '"' + (s if len(s) <= MAX_QUOTE else s[:MAX_QUOTE - 3].rstrip() + "...") + '"'


def _cite(f: Fact) -> str:
    return f'[{f.id}] "{" ".join(f.text.split())}"'


@dataclass
class Advisor:
    """Fills `general` and `specific` of a critique for its record.

    `knowledge` None gives knowledge-free guidance. `scorer` defaults to the shipped entailment
    scorer (loaded only when knowledge is given). `k` facts are retrieved per query.
    """

    knowledge: Knowledge | None = None
    scorer: EntailmentScorer | None = None
    k: int = 8
    hypothesis: Callable[[str, str], str] = default_hypothesis
    min_similarity: float = 0.2  # a fact below this cosine to every query is not considered relevant

    def _scorer(self) -> EntailmentScorer:
        if self.scorer is None:
            from retrieval.entail import load_scorer

            self.scorer = load_scorer()
        return self.scorer

    def advise(self, record: ModelOutput, critique: Critique, general: bool = True) -> Critique:
        """The critique with general advice from the taxonomy (when `general`) and specific advice."""
        gen = general_advice(critique.dimension) if general else critique.general
        if critique.dimension == NONE:
            return replace(critique, general=gen, specific=NO_FLAW, cited_facts=())
        sentences = split_sentences(record.explanation)
        flaw = None
        if critique.flaw_sentence_index is not None and critique.flaw_sentence_index < len(sentences):
            flaw = sentences[critique.flaw_sentence_index]
        elif critique.main_flaw.strip() and critique.main_flaw != NO_FLAW:
            flaw = critique.main_flaw
        generic = self.generic(record, critique.dimension, flaw)
        if self.knowledge is None:
            return replace(critique, general=gen, specific=generic, cited_facts=())
        specific, cited = self.grounded(record, critique.dimension, sentences, flaw)
        if not cited:
            return replace(critique, general=gen, specific=generic, cited_facts=())
        return replace(critique, general=gen, specific=specific, cited_facts=tuple(f.id for f in cited))

    # -- knowledge-free -----------------------------------------------------------------------------

    @staticmethod
    def generic(record: ModelOutput, dimension: str, flaw: str | None) -> str:
        """Guidance from the question, options and explanation only (states no outside fact)."""
        q = _quote(record.question)
        opts = ", ".join(f"({k}) {v}" for k, v in record.options.items())
        pred = record.predicted_answer
        pred_txt = f"({pred}) {record.options[pred]}" if pred in record.options else repr(pred)
        fq = _quote(flaw) if flaw else None
        if dimension == "misunderstanding":
            return f"Reread the question {q} and weigh each option ({opts}) against exactly what it asks."
        if dimension == "lack_justification":
            return (f"Explain which facts make your choice answer {q} better than the other options "
                    f"({opts}), instead of asserting it.")
        if dimension == "incorrect_information":
            return f"Verify the statement {fq} before relying on it." if fq else \
                f"Verify each fact the explanation uses to answer {q}."
        if dimension == "missing_information":
            return f"State the fact that connects your reasoning to the question {q}; the argument has a gap."
        if dimension == "incorrect_reasoning":
            return f"Check whether {fq} really follows from the statements before it." if fq else \
                "Check that each conclusion follows from the statements before it."
        if dimension == "incomplete_reasoning":
            return f"Finish the argument: say which option ({opts}) your last conclusion supports, and why."
        if dimension == "inconsistent_answer":
            return (f"Your reasoning does not lead to your chosen answer {pred_txt}; choose the option "
                    f"that your own conclusion supports.")
        if dimension == "irrelevant":
            return f"Leave out {fq}: it does not help answer {q}." if fq else \
                f"Keep only the statements that help answer {q}."
        return f"Revise the explanation so that it answers {q}."

    # -- grounded -----------------------------------------------------------------------------------

    def _candidates(self, queries: Sequence[str]) -> list[tuple[Fact, float]]:
        assert self.knowledge is not None
        best: dict[str, tuple[Fact, float]] = {}
        for q in queries:
            for hit in self.knowledge.search(q, k=self.k):
                f, s = hit.fact, float(hit.score)
                if f.id not in best or s > best[f.id][1]:
                    best[f.id] = (f, s)
        return sorted(best.values(), key=lambda x: -x[1])

    def grounded(self, record: ModelOutput, dimension: str, sentences: Sequence[str],
                 flaw: str | None) -> tuple[str, list[Fact]]:
        """(advice text, cited facts); no cited facts when the knowledge has nothing relevant."""
        scorer = self._scorer()
        key_text = record.options.get(record.answer_key, "")
        hyp = self.hypothesis(record.question, key_text)
        parts: list[str] = []
        cited: list[Fact] = []

        # (b) A statement flagged as false / invalid: the closest fact that does not support it.
        if flaw and dimension in ("incorrect_information", "incorrect_reasoning", "misunderstanding"):
            near = [(f, s) for f, s in self._candidates([flaw]) if s >= self.min_similarity]
            fw = content_words(flaw)
            shared = {f.id: len(content_words(f.text) & fw) for f, _ in near}
            # About the same things as the statement: most shared content words first, then cosine.
            near = sorted([(f, s) for f, s in near if shared[f.id] >= max(1, len(fw) // 3)],
                          key=lambda x: (-shared[x[0].id], -x[1]))
            if near:
                sup = scorer.score_batch([([f.text], flaw) for f, _ in near])
                for (f, _), p in zip(near, sup):
                    if p < scorer.threshold:
                        parts.append(f"Check the statement {_quote(flaw)} against the known fact {_cite(f)}.")
                        cited.append(f)
                        break

        # (a) The relevant fact the explanation misses.
        cands = [(f, s) for f, s in self._candidates([hyp, record.question + " " + key_text])
                 if s >= self.min_similarity and f not in cited]
        if cands:
            expl = list(sentences) or [record.explanation]
            stated = scorer.score_batch([(expl, f.text) for f, _ in cands])
            base = float(scorer.score(expl, hyp))
            with_f = scorer.score_batch([([*expl, f.text], hyp) for f, _ in cands])
            topic = content_words(hyp) | content_words(record.question) | content_words(key_text)
            ranked = []
            for (f, s), st, w in zip(cands, stated, with_f):
                if st >= scorer.threshold:
                    continue  # the explanation already states it
                if not content_words(f.text) & topic:
                    continue  # a near neighbour by embedding only, about something else
                # Relevance to the correct answer: how much the fact raises P(explanation + fact |= hypothesis).
                ranked.append((round(float(w) - base, 4), s, f))
            ranked.sort(key=lambda x: (-x[0], -x[1]))
            if ranked:
                f = ranked[0][2]
                parts.append(f"The explanation does not use the known fact {_cite(f)}; consider how it bears "
                             f"on the question.")
                cited.append(f)
        if dimension == "inconsistent_answer" and parts:
            parts.insert(0, "Make the chosen option match the conclusion of the reasoning.")
        return " ".join(parts), cited
