"""Grounded multiple-choice QA: prove each answer option from the corpus (and a microtheory).

For a question, every option becomes a hypothesis (retrieval.hypothesis); the prover looks for a
premise set that entails it. An option is *grounded* when it has a proof. The answer is the grounded
option with the best score; when no option is grounded, the best-scoring option, flagged ungrounded.
An option's score is its best premise set's entailment score plus `w_retrieval` times the cosine of
its best retrieved fact (0 by default: the proof score alone, as the design says; a positive weight
is tuned on train questions only).

Every input question yields exactly one output record: a question that cannot be answered (no
options, an empty option, an answer key that is not one of the options) gets a record with `error`
set instead of being dropped. The retrieval-only baseline (the option whose hypothesis retrieves
the closest fact) is computed from the same retrieval and reported beside the prover's answers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from retrieval.entail import content_words
from core.errors import InputError
from retrieval.hypothesis import make_hypothesis, split_stem
from retrieval.prover import Candidate, Evidence, Prover, ProverConfig
from core.types import Question


@dataclass(frozen=True)
class QAConfig:
    """How options are ranked. Tuned on EntailmentBank train questions, never on dev."""

    w_retrieval: float = 0.0     # weight of retrieval evidence in an option's score
    retrieval_feature: str = "top1"  # "top1": best fact's cosine; "mean3": mean of the best three
    prefer_grounded: bool = True  # a grounded option beats every ungrounded one
    use_context: bool = True      # the stem's context sentences may serve as premises

    def __post_init__(self) -> None:
        if self.retrieval_feature not in ("top1", "mean3"):
            raise InputError(f"unknown retrieval_feature {self.retrieval_feature!r}: use top1 or mean3")


def validate_question(q: Question) -> str | None:
    """Why `q` cannot be answered, or None when it can."""
    if not q.options:
        return "question has no answer options"
    empty = [k for k, v in q.options.items() if not str(v).strip()]
    if empty:
        return f"option {', '.join(empty)} has empty text"
    if not str(q.stem).strip():
        return "question stem is empty"
    if q.answer_key is not None and q.answer_key not in q.options:
        return f"answer key {q.answer_key!r} is not among the options {sorted(q.options)}"
    return None


def _context_candidates(prover: Prover, stem: str, hypotheses: Sequence[str]) -> list[list[Candidate]]:
    """The stem's context sentences as premises, scored against each hypothesis like retrieved facts."""
    ctx, _ = split_stem(stem)
    ctx = [c for c in ctx if len(content_words(c)) >= 2]
    if not ctx:
        return [[] for _ in hypotheses]
    hv, cv = prover.encode(list(hypotheses)), prover.encode(ctx)
    if hv is not None and cv is not None:
        sims = hv @ cv.T
    else:  # no encoder to hand: the share of the hypothesis's content words that the sentence has
        sims = np.asarray([[len(content_words(c) & content_words(h)) / max(1, len(content_words(h)))
                            for c in ctx] for h in hypotheses])
    return [[Candidate(f"context:{j + 1}", c, float(sims[i, j]), "context") for j, c in enumerate(ctx)]
            for i in range(len(hypotheses))]


def _error_record(q: Question, error: str) -> dict[str, Any]:
    return {"id": q.id, "error": error, "answer": None, "answer_key": q.answer_key, "correct": None,
            "grounded": False, "score": None, "proof": None, "retrieval_answer": None, "options": {}}


def answer_question(q: Question, prover: Prover, config: QAConfig | None = None) -> dict[str, Any]:
    """One JSONL record: the answer, whether it is grounded, its proof, and every option's scores."""
    config = config or QAConfig()
    err = validate_question(q)
    if err is not None:
        return _error_record(q, err)
    labels = list(q.options)
    hyps = [make_hypothesis(q.stem, q.options[k]) for k in labels]
    if config.use_context:
        # One encoder call for the options' hypotheses and the stem's context sentences together.
        prover.encode([*hyps, *split_stem(q.stem)[0]])
    extra = _context_candidates(prover, q.stem, hyps) if config.use_context else None
    evs: list[Evidence] = prover.prove_many(hyps, extra)
    ret = [e.retrieval_score if config.retrieval_feature == "top1" else e.retrieval_score3 for e in evs]
    scores = np.asarray([e.entail_score + config.w_retrieval * r for e, r in zip(evs, ret)])
    grounded = np.asarray([e.proof is not None for e in evs])
    pool = np.flatnonzero(grounded) if (config.prefer_grounded and grounded.any()) else np.arange(len(evs))
    best = int(pool[np.argmax(scores[pool])])
    ret_best = int(np.argmax([e.retrieval_score for e in evs]))
    answer = labels[best]
    proof = evs[best].proof
    return {
        "id": q.id, "error": None, "answer": answer, "answer_key": q.answer_key,
        "correct": (answer == q.answer_key) if q.answer_key is not None else None,
        "grounded": bool(grounded[best]), "score": round(float(scores[best]), 4),
        "proof": proof.to_json() if proof is not None else None,
        "retrieval_answer": labels[ret_best],
        "options": {k: {"text": q.options[k], "hypothesis": h, "grounded": bool(g), "score": round(float(s), 4),
                        "entail_score": round(e.entail_score, 4), "retrieval_score": round(e.retrieval_score, 4),
                        "best": e.best.to_json() if e.best is not None else None}
                    for k, h, e, s, g in zip(labels, hyps, evs, scores, grounded)},
    }


@dataclass
class QASummary:
    """Counts and rates over one run. Accuracy counts questions with a usable answer key."""

    questions: int = 0
    errors: int = 0
    answered: int = 0
    keyed: int = 0
    correct: int = 0
    grounded: int = 0
    grounded_keyed: int = 0
    grounded_correct: int = 0
    retrieval_correct: int = 0
    elapsed_s: float = 0.0
    error_ids: list[str] = field(default_factory=list)

    def add(self, rec: dict[str, Any]) -> None:
        self.questions += 1
        if rec.get("error"):
            self.errors += 1
            if len(self.error_ids) < 50:
                self.error_ids.append(rec["id"])
            return
        self.answered += 1
        self.grounded += bool(rec["grounded"])
        if rec["correct"] is not None:
            self.keyed += 1
            self.correct += bool(rec["correct"])
            self.retrieval_correct += rec["retrieval_answer"] == rec["answer_key"]
            if rec["grounded"]:
                self.grounded_keyed += 1
                self.grounded_correct += bool(rec["correct"])

    def to_json(self) -> dict[str, Any]:
        def rate(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {"questions": self.questions, "errors": self.errors, "answered": self.answered,
                "accuracy": rate(self.correct, self.keyed), "grounding_rate": rate(self.grounded, self.answered),
                "grounded_accuracy": rate(self.grounded_correct, self.grounded_keyed),
                "retrieval_baseline_accuracy": rate(self.retrieval_correct, self.keyed),
                "correct": self.correct, "keyed": self.keyed, "grounded": self.grounded,
                "elapsed_s": round(self.elapsed_s, 2),
                "questions_per_s": round(self.questions / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
                "error_ids": self.error_ids}


def iter_answers(questions: Iterable[Question], prover: Prover, config: QAConfig | None = None,
                 summary: QASummary | None = None) -> Iterator[dict[str, Any]]:
    """Answer questions one by one, adding each record to `summary` (timing included)."""
    summary = summary if summary is not None else QASummary()
    for q in questions:
        t0 = time.perf_counter()
        try:
            rec = answer_question(q, prover, config)
        except InputError as e:
            # A question the rewriter or the scorer rejects is that question's error, not the run's.
            rec = _error_record(q, str(e))
        summary.elapsed_s += time.perf_counter() - t0
        summary.add(rec)
        yield rec


def run_qa(questions: Sequence[Question], prover: Prover, config: QAConfig | None = None,
           progress: bool = False) -> tuple[list[dict[str, Any]], QASummary]:
    """All records (one per question, in input order) and the summary."""
    summary = QASummary()
    it: Iterable[Question] = questions
    if progress:
        from tqdm import tqdm

        it = tqdm(questions, desc="qa", unit="q")
    records = list(iter_answers(it, prover, config, summary))
    return records, summary


def _question_from_record(obj: dict[str, Any], n: int) -> Question:
    """A Question from a project JSONL record (or an ARC record); bad fields become an unanswerable question
    that `validate_question` explains, so that the line still gets its own error record."""
    qid = str(obj.get("id") or f"line{n}")
    stem: Any = obj.get("stem", "")
    options: Any = obj.get("options")
    if isinstance(obj.get("question"), dict):  # ARC: {"question": {"stem", "choices": [{label, text}]}, "answerKey"}
        stem, options = obj["question"].get("stem", ""), obj["question"].get("choices")
    if isinstance(options, list):
        options = {str(c.get("label", i)): c.get("text", "") for i, c in enumerate(options) if isinstance(c, dict)}
    if not isinstance(options, dict):
        options = {}
    key = obj.get("answer_key", obj.get("answerKey"))
    return Question(qid, str(stem or ""), {str(k): "" if v is None else str(v) for k, v in options.items()},
                    None if key is None else str(key), obj.get("topic"), obj.get("hypothesis"))


def read_questions(path: str | Path) -> list[Question]:
    """Questions JSONL (docs/formats.md; ARC records too). A line that is not JSON is an InputError with
    file:line; a record with missing or bad fields is kept, and answered with an error record."""
    from core.jsonl import iter_jsonl

    qs = [_question_from_record(obj, n) for n, obj in iter_jsonl(path)]
    if not qs:
        raise InputError("no questions in file", str(path))
    return qs


from retrieval.knowledge import open_microtheory  # noqa: E402 - moved there; qa_files uses it


def qa_files(corpus: str | Path, questions: str | Path, out: str | Path, microtheory: str | Path | None = None,
             scorer: str | None = None, config: QAConfig | None = None, prover_config: ProverConfig | None = None,
             progress: bool = False) -> QASummary:
    """`microtheory qa`: answer every question of a JSONL file, write one record per question to `out`."""
    from retrieval.entail import load_scorer
    from core.jsonl import write_jsonl
    from retrieval.store import KnowledgeStore

    qs = read_questions(questions)
    ks = KnowledgeStore.open(corpus)
    mt = open_microtheory(microtheory, ks.encoder) if microtheory is not None else None
    prover = Prover(ks, load_scorer(scorer), microtheory=mt, config=prover_config)
    # Load the models before the clock starts: questions/s measures answering, not loading.
    prover.encode(["warm up"])
    prover.scorer.score(["warm up"], "warm up")
    records, summary = run_qa(qs, prover, config, progress=progress)
    write_jsonl(out, records)
    return summary
