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

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from critique.format import NO_FLAW, Critique
from critique.inputs import ModelOutput, split_sentences
from critique.taxonomy import NONE, general_advice
from retrieval.entail import EntailmentScorer, content_words
from core.errors import InputError
from core.types import Fact
from retrieval.knowledge import Knowledge, knowledge_from_facts, open_microtheory, open_store

MAX_QUOTE = 200  # characters of a quoted sentence in advice
# Dimensions whose flagged statement is checked against the closest known facts.
_CHECKED_DIMENSIONS = ("incorrect_information", "incorrect_reasoning", "misunderstanding")


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
    loading = _HYPOTHESIS_PRELOAD
    if loading is not None and loading is not threading.current_thread():
        loading.join()   # spaCy is being loaded in the background (`preload_hypothesis`): load it once
    try:
        from retrieval.hypothesis import make_hypothesis

        return make_hypothesis(stem, option)
    except Exception:  # noqa: BLE001 - the rewriter is a convenience: retrieval works on the plain join
        return plain_hypothesis(stem, option)


_HYPOTHESIS_PRELOAD: threading.Thread | None = None
_PRELOAD_LOCK = threading.Lock()


def preload_hypothesis() -> None:
    """Start loading what `default_hypothesis` needs (spaCy: a few seconds) in a background thread,
    once per process, so that it overlaps the checks' model passes (ONNX Runtime releases the GIL)
    instead of adding to the first advice; `default_hypothesis` waits for it."""
    global _HYPOTHESIS_PRELOAD
    with _PRELOAD_LOCK:
        if _HYPOTHESIS_PRELOAD is None:
            _HYPOTHESIS_PRELOAD = threading.Thread(target=default_hypothesis, args=("What is it?", "it"),
                                                   name="preload-spacy", daemon=True)
            _HYPOTHESIS_PRELOAD.start()


def plain_hypothesis(stem: str, option: str) -> str:
    """Question + answer joined as they are: fast mode's query (no spaCy to load; word overlap does
    not need a well-formed statement)."""
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
    # Candidate facts scored per query kind (each costs two scorer calls). Measured with batching across
    # rows on 60 T5 dev explanations and the demo microtheory: the same cited facts on 59/60 rows as
    # scoring every retrieved fact one row at a time, whole command 64.6 -> 50.6 s.
    max_scored: int = 5
    threshold: float | None = None  # entailment cut-off; None: the scorer's own

    def _scorer(self) -> EntailmentScorer:
        if self.scorer is None:
            from retrieval.entail import load_scorer

            self.scorer = load_scorer()
        return self.scorer

    def prepare(self) -> None:
        """Before a run: start loading, in the background, what grounded advice will need (the
        hypothesis rewriter's spaCy pipeline), so that it overlaps the critic's own work."""
        if self.knowledge is not None and self.hypothesis is default_hypothesis:
            preload_hypothesis()

    def advise(self, record: ModelOutput, critique: Critique, general: bool = True) -> Critique:
        """The critique with general advice from the taxonomy (when `general`) and specific advice."""
        return self.advise_batch([record], [critique], general)[0]

    def advise_batch(self, records: Sequence[ModelOutput], critiques: Sequence[Critique],
                     general: bool = True) -> list[Critique]:
        """`advise` for many rows, with one entailment-scoring call for all of them (the scorer sorts
        the pairs by length, so a batch of rows costs much less than its rows one by one)."""
        out: list[Critique | None] = []
        todo: list[tuple[int, ModelOutput, str, list[str], str | None]] = []
        for record, critique in zip(records, critiques, strict=True):
            gen = general_advice(critique.dimension) if general else critique.general
            if critique.dimension == NONE:
                out.append(replace(critique, general=gen, specific=NO_FLAW, cited_facts=()))
                continue
            sentences = split_sentences(record.explanation)
            flaw = None
            if critique.flaw_sentence_index is not None and critique.flaw_sentence_index < len(sentences):
                flaw = sentences[critique.flaw_sentence_index]
            elif critique.main_flaw.strip() and critique.main_flaw != NO_FLAW:
                flaw = critique.main_flaw
            generic = replace(critique, general=gen, specific=self.generic(record, critique.dimension, flaw),
                              cited_facts=())
            out.append(generic)
            if self.knowledge is not None:
                todo.append((len(out) - 1, record, critique.dimension, sentences, flaw))
        plans = self._plans(todo)
        if plans:
            pairs = [pair for _, plan in plans for pair in plan.pairs()]
            scores = self._scorer().score_batch(pairs) if pairs else np.zeros(0, np.float32)
            at = 0
            for i, plan in plans:
                n = len(plan.pairs())
                specific, cited = plan.finish(scores[at:at + n], self._threshold())
                at += n
                if cited:
                    out[i] = replace(out[i], specific=specific, cited_facts=tuple(f.id for f in cited))  # type: ignore[arg-type]
        return out  # type: ignore[return-value]

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

    def _plans(self, todo: Sequence[tuple[int, ModelOutput, str, list[str], str | None]]) -> list[tuple[int, _Plan]]:
        """`_plan` for each (output slot, record, dimension, sentences, flaw), with the retrieval of all
        rows' queries in one `search_batch` (one encoder call instead of two or three per row)."""
        if not todo:
            return []
        hyps = [self.hypothesis(r.question, r.options.get(r.answer_key, "")) for _, r, _, _, _ in todo]
        queries = [q for (_, r, dim, _, flaw), hyp in zip(todo, hyps) for q in self._queries(r, dim, flaw, hyp)]
        hits = self._search_many(queries)
        return [(i, self._plan(r, dim, sents, flaw, hyp=hyp, hits=hits))
                for (i, r, dim, sents, flaw), hyp in zip(todo, hyps)]

    @staticmethod
    def _queries(record: ModelOutput, dimension: str, flaw: str | None, hyp: str) -> list[str]:
        """The retrieval queries `_plan` makes for a row (the flagged statement's, then the answer's)."""
        flagged = [flaw] if flaw and dimension in _CHECKED_DIMENSIONS else []
        return [*flagged, hyp, record.question + " " + record.options.get(record.answer_key, "")]

    def _search_many(self, queries: Sequence[str]) -> dict[str, list[Any]]:
        """query -> the knowledge's top `k` hits, each distinct query searched once, all in one call."""
        assert self.knowledge is not None
        uniq = list(dict.fromkeys(queries))
        if not uniq or not hasattr(self.knowledge, "search_batch"):   # `_candidates` then searches one by one
            return {}
        return dict(zip(uniq, self.knowledge.search_batch(uniq, k=self.k)))

    def _candidates(self, queries: Sequence[str], hits: dict[str, list[Any]] | None = None) -> list[tuple[Fact, float]]:
        assert self.knowledge is not None
        best: dict[str, tuple[Fact, float]] = {}
        for q in queries:
            for hit in (hits[q] if hits is not None and q in hits else self.knowledge.search(q, k=self.k)):
                f, s = hit.fact, float(hit.score)
                if f.id not in best or s > best[f.id][1]:
                    best[f.id] = (f, s)
        return sorted(best.values(), key=lambda x: -x[1])

    def _threshold(self) -> float:
        return self.threshold if self.threshold is not None else float(self._scorer().threshold)

    def grounded(self, record: ModelOutput, dimension: str, sentences: Sequence[str],
                 flaw: str | None) -> tuple[str, list[Fact]]:
        """(advice text, cited facts); no cited facts when the knowledge has nothing relevant."""
        plan = self._plan(record, dimension, sentences, flaw)
        pairs = plan.pairs()
        scores = self._scorer().score_batch(pairs) if pairs else np.zeros(0, np.float32)
        return plan.finish(scores, self._threshold())

    def _plan(self, record: ModelOutput, dimension: str, sentences: Sequence[str], flaw: str | None,
              hyp: str | None = None, hits: dict[str, list[Any]] | None = None) -> _Plan:
        """What to score for one row: retrieval and the cheap lexical filters, before any scorer call.
        `hyp` / `hits`: the row's hypothesis and its queries' hits when already made (`_plans`)."""
        key_text = record.options.get(record.answer_key, "")
        hyp = hyp if hyp is not None else self.hypothesis(record.question, key_text)
        near: list[Fact] = []
        # (b) A statement flagged as false / invalid: facts about the same things, to check it against.
        if flaw and dimension in _CHECKED_DIMENSIONS:
            cands = [(f, s) for f, s in self._candidates([flaw], hits) if s >= self.min_similarity]
            fw = content_words(flaw)
            shared = {f.id: len(content_words(f.text) & fw) for f, _ in cands}
            # Most shared content words first, then cosine.
            near = [f for f, _ in sorted([(f, s) for f, s in cands if shared[f.id] >= max(1, len(fw) // 3)],
                                         key=lambda x: (-shared[x[0].id], -x[1]))][: self.max_scored]
        # (a) Candidates for the relevant fact the explanation misses: about the question's topic
        # (an embedding-only neighbour about something else is dropped before it costs a scorer call).
        topic = content_words(hyp) | content_words(record.question) | content_words(key_text)
        missing = [(f, s) for f, s in self._candidates([hyp, record.question + " " + key_text], hits)
                   if s >= self.min_similarity and content_words(f.text) & topic][: self.max_scored]
        return _Plan(flaw, hyp, list(sentences) or [record.explanation], near, missing,
                     inconsistent=dimension == "inconsistent_answer")



@dataclass
class _Plan:
    """One row's grounded advice between retrieval and scoring: the scorer pairs it needs, then the text."""

    flaw: str | None
    hyp: str
    expl: list[str]
    near: list[Fact]                      # (b) facts to check the flagged statement against
    missing: list[tuple[Fact, float]]     # (a) candidates for the missed fact, with their cosine
    inconsistent: bool = False

    def pairs(self) -> list[tuple[list[str], str]]:
        """(premises, hypothesis): each near fact vs the flaw; each candidate stated by the
        explanation?; the explanation alone vs the hypothesis; the explanation + each candidate."""
        return ([([f.text], self.flaw or "") for f in self.near]
                + [(self.expl, f.text) for f, _ in self.missing]
                + ([(self.expl, self.hyp)] if self.missing else [])
                + [([*self.expl, f.text], self.hyp) for f, _ in self.missing])

    def finish(self, scores: np.ndarray, threshold: float) -> tuple[str, list[Fact]]:
        """(advice text, cited facts) from the scores of `pairs()`, in order."""
        parts: list[str] = []
        cited: list[Fact] = []
        n, m = len(self.near), len(self.missing)
        for f, p in zip(self.near, scores[:n]):
            if p < threshold:   # the closest fact that does not support the statement
                parts.append(f"Check the statement {_quote(self.flaw or '')} against the known fact {_cite(f)}.")
                cited.append(f)
                break
        if m:
            stated, base, with_f = scores[n:n + m], float(scores[n + m]), scores[n + m + 1:n + 2 * m + 1]
            # Relevance to the correct answer: how much the fact raises P(explanation + fact |= hypothesis);
            # a fact the explanation already states, or the one cited above, is not "missed".
            ranked = sorted(((round(float(w) - base, 4), s, f) for (f, s), st, w in zip(self.missing, stated, with_f)
                             if st < threshold and f not in cited), key=lambda x: (-x[0], -x[1]))
            if ranked:
                f = ranked[0][2]
                parts.append(f"The explanation does not use the known fact {_cite(f)}; consider how it bears "
                             f"on the question.")
                cited.append(f)
        if self.inconsistent and parts:
            parts.insert(0, "Make the chosen option match the conclusion of the reasoning.")
        return " ".join(parts), cited
