"""Grounded multiple-choice QA: answer from retrieved evidence, then prove the answer from the corpus.

For a question, every option becomes a hypothesis (retrieval.hypothesis). Retrieval (hybrid dense +
BM25, over the corpus and the microtheory) runs for each hypothesis, each option's text and the
question sentence (`question_retrieval`); the learned option ranker (retrieval.ranker, fitted on
EntailmentBank train questions only) picks the answer from that evidence. Only the chosen option is
then proved (`ground_option`), and only when the ranker gives it at least the policy's confidence: the
prover scores a few premise sets (and one chained set), and the answer is *grounded* when a set passes
the grounding policy: it scores >= the policy's threshold and, when the policy sets a margin, entails
the chosen hypothesis by that margin more than any other option's hypothesis (premises that prove every
option prove none of them). The policy and its search (`prover_config_for`) ship inside the ranker,
chosen on train.
When the ranker uses them (the shipped one does), a small LM's preference among the options joins
the retrieval evidence (retrieval.option_lm: SmolLM2 reading each option after the facts retrieved for
the question); the LM is loaded once per process and run on blocks of questions (`_prefetched`).
The record gives the proof, the contrast checks and the ranker's confidence. `ranker="none"` (the
hand rule: prove every option, grounded first, then the proof score) is kept for comparison.

Each question's answer is a function of (question, prover, QAConfig) only (`answer_question`), so
question sets can be sharded across workers.

Every input question yields exactly one output record: a question that cannot be answered (no
options, an empty option, an answer key that is not one of the options) or an input line that is
not a question at all (bad bytes, bad JSON) gets a record with `error` set instead of being
dropped. `qa_files` appends each record to OUT as it is answered (a locked, headed
`core.outputs.AppendOutput`); a rerun with the same configuration skips the ids already there.
The retrieval-only baseline (the option whose hypothesis retrieves the closest fact) is computed
from the same retrieval and reported beside the answers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from retrieval.entail import content_words
from core.engine import for_rows, is_local
from core.errors import InputError, StoreError
from retrieval.hypothesis import make_hypothesis, split_stem
from retrieval.prover import Candidate, Evidence, FoundProof, ProofStep, Prover, ProverConfig
from retrieval.option_lm import FACTS, LmQuestion, lm_option_features
from retrieval.ranker import OptionRanker, QuestionRetrieval, matrix_columns, microtheory_features, option_features
from core.types import Question


@dataclass(frozen=True)
class GroundingPolicy:
    """When a premise set is the chosen option's proof: it scores >= `threshold` (None: the scorer's
    threshold) and entails the chosen option's hypothesis by at least `margin` more than any other
    option's hypothesis (None: no such check). The best `sets` passing sets are checked, best first.
    An answer the ranker gives less than `confidence` probability is not proved at all (None: every
    answer is): on train, a low-confidence pick with a passing set was right too rarely to call it grounded."""

    threshold: float | None = None
    margin: float | None = None
    sets: int = 3
    confidence: float | None = None

    def __post_init__(self) -> None:
        if self.sets < 1:
            raise InputError(f"grounding sets must be >= 1, got {self.sets}")
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            raise InputError(f"grounding confidence must be in [0, 1], got {self.confidence}")

    @classmethod
    def of_ranker(cls, ranker: OptionRanker) -> GroundingPolicy:
        g = ranker.config.get("grounding") or {}
        return cls(g.get("threshold"), g.get("margin"), int(g.get("sets", 3)), g.get("confidence"))


@dataclass(frozen=True)
class QAConfig:
    """How options are ranked. Everything here was chosen on EntailmentBank train questions, never on dev.

    `ranker` names the learned option ranker: "shipped" (retrieval/weights/qa_ranker, the default),
    "fast" (the same without the LM features, retrieval/weights/qa_ranker_fast), a folder holding a ranker.json, or "none" for the hand rule (grounded options first, then the
    proof score plus `w_retrieval` times the retrieval evidence), kept for comparison.
    """

    ranker: str = "shipped"
    w_retrieval: float = 0.0     # hand rule only: weight of retrieval evidence in an option's score
    retrieval_feature: str = "top1"  # hand rule only: "top1" best fact's cosine; "mean3" of the best three
    prefer_grounded: bool = True  # hand rule only: a grounded option beats every ungrounded one
    use_context: bool = True      # the stem's context sentences may serve as premises
    # Which proof of the chosen option counts (learned ranker only); None: the policy shipped with the
    # ranker (chosen on EntailmentBank train questions by bench/train_qa_ranker.py), its threshold
    # replaced by the prover's when the caller set one (ProverConfig.threshold, qa --threshold).
    grounding: GroundingPolicy | None = None

    def __post_init__(self) -> None:
        if self.retrieval_feature not in ("top1", "mean3"):
            raise InputError(f"unknown retrieval_feature {self.retrieval_feature!r}: use top1 or mean3")
        if not str(self.ranker).strip():
            raise InputError("ranker must be 'shipped', 'fast', 'none' or a folder holding ranker.json")


@lru_cache(maxsize=4)
def _load_ranker(spec: str) -> OptionRanker:
    return OptionRanker.load(spec)


@lru_cache(maxsize=1)
def _lm_engine() -> Any:
    """The LM behind the option LM features (SmolLM2, one torch thread), loaded once per process, and
    only when a ranker needs it."""
    from core.lm_nll import ContinuationNll

    return ContinuationNll()


def prover_config_for(ranker: str, **given: Any) -> ProverConfig:
    """The prover settings `microtheory qa` runs with: those `given` (None: unset), and for the search
    sizes left unset the search the ranker's grounding policy was chosen with (`config.grounding.search`,
    bench/train_qa_ranker.py), so the policy's threshold means on dev what it meant on train."""
    search = None if ranker == "none" else (_load_ranker(ranker).config.get("grounding") or {}).get("search")
    return ProverConfig(**{**search_sizes(search), **{k: v for k, v in given.items() if v is not None}})


def search_sizes(search: dict[str, Any] | None) -> dict[str, int]:
    """The ProverConfig sizes of a grounding policy's search ({"pairs", "triples", "chain"}; None: {})."""
    if not search:
        return {}
    return {"max_pairs": int(search["pairs"]), "max_triples": int(search["triples"]), "chain_k": int(bool(search["chain"]))}


def ranker_features(q: Question, r: QuestionRetrieval, prover: Prover, ranker: OptionRanker,
                    config: QAConfig) -> np.ndarray:
    """The matrix `ranker` reads for one question (columns: retrieval.ranker.matrix_columns): the
    retrieval features of every option from `r` (corpus and microtheory together: the microtheory adds
    only the sentences the corpus lacks, `Prover.retrieve`); the LM features (one batched LM call for
    all options and passes, its facts those retrieved for the question sentence) when the ranker uses
    them; and the same retrieval evidence over the microtheory alone when it uses that.

    Why together: on train, cross-fitted (bench/train_qa_ranker_mt.py, `merged_vs_corpus`), rankers
    fitted on corpus-only features answered better from features over corpus + a fold microtheory of
    the other questions' trees than from the corpus's alone: +0.2 points (EntailmentBank corpus,
    qc-greedy(1000)), +0.5 (general WorldTree corpus, qc-greedy(1000)), +2.1 (general corpus, the whole
    train store)."""
    parts = [option_features(r, prover)]
    if ranker.needs_lm:
        facts = tuple(c.text for c in r.question_hits if c.source != "context")[:FACTS]
        parts.append(lm_option_features(_lm_engine(), [LmQuestion(q.stem, r.options, facts)])[0])
    if ranker.needs_microtheory:
        if prover.microtheory is None:
            raise InputError("this option ranker reads a microtheory's evidence: give one (qa --microtheory)")
        mp = prover.over(prover.microtheory)
        parts.append(microtheory_features(question_retrieval(q, mp, config)[2], mp))
    return np.hstack(parts)


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


def _hand_rule_scores(evs: Sequence[Evidence], config: QAConfig) -> tuple[np.ndarray, np.ndarray]:
    """(scores, pool): proof score + w_retrieval * retrieval evidence; grounded options first if preferred."""
    ret = [e.retrieval_score if config.retrieval_feature == "top1" else e.retrieval_score3 for e in evs]
    scores = np.asarray([e.entail_score + config.w_retrieval * r for e, r in zip(evs, ret)])
    grounded = np.asarray([e.proof is not None for e in evs])
    pool = np.flatnonzero(grounded) if (config.prefer_grounded and grounded.any()) else np.arange(len(evs))
    return scores, pool


def _option_record(text: str, hyp: str, ev: Evidence, score: float, prob: float | None,
                   feats: np.ndarray | None) -> dict[str, Any]:
    rec = {"text": text, "hypothesis": hyp, "grounded": ev.proof is not None, "score": round(float(score), 4),
           "entail_score": round(ev.entail_score, 4), "retrieval_score": round(ev.retrieval_score, 4),
           "bm25_score": round(ev.bm25_score, 4), "best": ev.best.to_json() if ev.best is not None else None}
    if prob is not None:
        rec["probability"] = round(float(prob), 4)
    if feats is not None:
        rec["features"] = {k: round(float(v), 4) for k, v in zip(matrix_columns(len(feats)), feats)}
    return rec


def question_evidence(q: Question, prover: Prover, config: QAConfig) -> tuple[list[str], list[str], list[Evidence]]:
    """(option labels, their hypotheses, the prover's evidence for each): what every ranking rule starts from."""
    labels = list(q.options)
    hyps = [make_hypothesis(q.stem, q.options[k]) for k in labels]
    if config.use_context:
        # One encoder call for the options' hypotheses and the stem's context sentences together.
        prover.encode([*hyps, *split_stem(q.stem)[0]])
    extra = _context_candidates(prover, q.stem, hyps) if config.use_context else None
    return labels, hyps, prover.prove_many(hyps, extra)


def question_retrieval(q: Question, prover: Prover, config: QAConfig) -> tuple[list[str], list[str], QuestionRetrieval]:
    """(option labels, their hypotheses, what retrieval found): all the option ranker needs; no scoring."""
    labels = list(q.options)
    opts = [q.options[k] for k in labels]
    hyps = [make_hypothesis(q.stem, o) for o in opts]
    ctx, question = split_stem(q.stem)
    # One encoder call for everything this question retrieves with.
    prover.encode([*hyps, *ctx, question or q.stem, *opts])
    extra = _context_candidates(prover, q.stem, hyps) if config.use_context else None
    gathered = prover.gather(hyps, extra)
    side = prover.retrieve([question or q.stem, *opts])
    r = QuestionRetrieval(q.stem, tuple(opts), tuple(tuple(g) for g in gathered), tuple(tuple(x) for x in side[1:]),
                          tuple(side[0]))
    return labels, hyps, r


@dataclass(frozen=True)
class Grounding:
    """The proof search for the chosen option: its evidence, the accepted proof (or None), and every
    premise set checked against the other options (score, best score for another option, fact ids)."""

    evidence: Evidence
    proof: FoundProof | None
    checked: list[dict[str, Any]]


def _passing_sets(ev: Evidence, threshold: float, chain_below: float) -> list[FoundProof]:
    """Premise sets scoring >= threshold, best first: depth-1 sets, and the chained set when no depth-1
    set reached `chain_below` (the prover only chains then)."""
    text = {c.id: c.text for c in ev.candidates}
    sets = [FoundProof(ev.hypothesis, ids, tuple(text[i] for i in ids), (ProofStep(ids, "hypothesis", sc),), sc, True)
            for ids, sc in zip(ev.sets, ev.scores) if sc >= threshold]
    if ev.best is not None and ev.best.chain and ev.best.score >= threshold and max(ev.scores, default=0.0) < chain_below:
        sets.append(FoundProof(ev.hypothesis, ev.best.fact_ids, ev.best.texts, ev.best.steps, ev.best.score, True,
                               chain=ev.best.chain))
    return sorted(sets, key=lambda f: -f.score)


def ground_option(prover: Prover, hyps: Sequence[str], chosen: int, gathered: Sequence[Candidate],
                  policy: GroundingPolicy, check_all: bool = False) -> Grounding:
    """Prove hypothesis `chosen` from its gathered candidates. A passing set is accepted when it entails
    this hypothesis by the policy's margin more than any other option's: premises that prove every option
    equally well ground none of them. Passing sets are checked best first, one scorer call each, until
    one is accepted (`check_all`: every one, as the training collection needs)."""
    ev = prover.prove_many([hyps[chosen]], gathered=[gathered])[0]
    thr = prover.threshold if policy.threshold is None else policy.threshold
    passing = _passing_sets(ev, thr, prover.threshold)
    others = [h for n, h in enumerate(hyps) if n != chosen]
    if policy.margin is None or not others:
        return Grounding(ev, passing[0] if passing else None, [])
    checked, proof = [], None
    for f in passing[:policy.sets]:
        rival = float(max(prover.scorer.score_batch([(list(f.texts), h) for h in others],
                                                    batch_size=prover.config.batch_size)))
        checked.append({"fact_ids": list(f.fact_ids), "score": round(f.score, 5), "rival": round(rival, 5),
                        "chained": f.chain is not None,
                        "set": None if f.chain is not None else ev.sets.index(tuple(f.fact_ids))})
        if proof is None and f.score - rival >= policy.margin:
            proof = f
            if not check_all:
                break
    return Grounding(ev, proof, checked)


def training_row(q: Question, prover: Prover, config: QAConfig | None = None) -> dict[str, Any]:
    """What the option ranker learns from, for one keyed question: every option's ALL_FEATURES row,
    the correct option's index, and the retrieval-only answer (for baselines). No entailment scoring."""
    config = config or QAConfig()
    labels, _, r = question_retrieval(q, prover, config)
    feats = option_features(r, prover)
    return {"id": q.id, "labels": labels, "key": q.answer_key, "gold": labels.index(q.answer_key)
            if q.answer_key in labels else None, "features": feats.round(5).tolist(),
            "retrieval_answer": _retrieval_answer(r)}


def _retrieval_answer(r: QuestionRetrieval) -> int:
    """The retrieval-only baseline: the option whose hypothesis retrieved the closest fact."""
    return int(np.argmax([max((c.score for c in hits if c.source != "context"), default=0.0)
                          for hits in r.hypothesis_hits]))


def _ranked_answer(q: Question, prover: Prover, config: QAConfig) -> dict[str, Any]:
    """The learned ranker picks from retrieval evidence; then only the chosen option is proved."""
    labels, hyps, r = question_retrieval(q, prover, config)
    ranker = _load_ranker(config.ranker)
    feats = ranker_features(q, r, prover, ranker, config)
    scores, probs = ranker.scores(feats), ranker.probabilities(feats)
    best = int(np.argmax(scores))
    policy = config.grounding or GroundingPolicy.of_ranker(ranker)
    if config.grounding is None and prover.config.threshold is not None:
        # A threshold the caller set (qa --threshold) wins over the one shipped in the ranker's policy.
        policy = replace(policy, threshold=prover.config.threshold)
    searched = policy.confidence is None or bool(probs[best] >= policy.confidence)
    g = ground_option(prover, hyps, best, r.hypothesis_hits[best], policy) if searched else \
        Grounding(Evidence(hyps[best], tuple(r.hypothesis_hits[best]), None, 0), None, [])
    evs = [g.evidence if n == best else Evidence(h, r.hypothesis_hits[n], None, 0) for n, h in enumerate(hyps)]
    rec = _answer_record(q, labels, hyps, evs, scores, probs, feats, best, _retrieval_answer(r))
    rec["grounded"] = g.proof is not None
    rec["proof_searched"] = searched  # False: the ranker's confidence is below the policy's, no proof sought
    rec["proof"] = g.proof.to_json() if g.proof is not None else None
    rec["options"][labels[best]]["grounded"] = rec["grounded"]
    if g.checked:
        rec["proof_checks"] = g.checked
    return rec


def _answer_record(q: Question, labels: list[str], hyps: list[str], evs: Sequence[Evidence], scores: np.ndarray,
                   probs: np.ndarray | None, feats: np.ndarray | None, best: int, ret_best: int) -> dict[str, Any]:
    answer = labels[best]
    proof = evs[best].proof
    return {
        "id": q.id, "error": None, "answer": answer, "answer_key": q.answer_key,
        "correct": (answer == q.answer_key) if q.answer_key is not None else None,
        "grounded": proof is not None, "score": round(float(scores[best]), 4),
        "confidence": round(float(probs[best]), 4) if probs is not None else None,
        "proof": proof.to_json() if proof is not None else None,
        "retrieval_answer": labels[ret_best],
        "options": {k: _option_record(q.options[k], h, e, s, probs[i] if probs is not None else None,
                                      feats[i] if feats is not None else None)
                    for i, (k, h, e, s) in enumerate(zip(labels, hyps, evs, scores))},
    }


def answer_question(q: Question, prover: Prover, config: QAConfig | None = None) -> dict[str, Any]:
    """One JSONL record: the answer, whether it is grounded, its proof, and every option's scores.

    With the learned ranker (the default) the answer is the option it scores highest from retrieval
    evidence, and only that option is proved: it is grounded when a premise set passes the threshold
    and the contrast check (`ground_option`). `confidence` is the ranker's probability of it. With
    `ranker="none"` every option is proved and the hand rule picks."""
    config = config or QAConfig()
    err = validate_question(q)
    if err is not None:
        return _error_record(q, err)
    if config.ranker != "none":
        return _ranked_answer(q, prover, config)
    labels, hyps, evs = question_evidence(q, prover, config)
    scores, pool = _hand_rule_scores(evs, config)
    best = int(pool[np.argmax(scores[pool])])
    ret_best = int(np.argmax([e.retrieval_score for e in evs]))
    return _answer_record(q, labels, hyps, evs, scores, None, None, best, ret_best)


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
    skipped: int = 0      # questions already answered in the output (a resumed run)
    written: int = 0      # records this run wrote

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
                "questions_per_s": round((self.written or self.questions) / self.elapsed_s, 3)
                if self.elapsed_s > 0 else None,
                "error_ids": self.error_ids, "skipped": self.skipped, "written": self.written}


def _bad_line_record(err: InputError) -> dict[str, Any]:
    """The record of an input line that is not a question at all (bad bytes, bad JSON)."""
    return {**_error_record(Question(f"line{err.line}", "", {}, None), str(err)), "line": err.line}


LM_BLOCK = 8  # questions whose LM features are computed in one batched call


def _prefetched(questions: Iterable[Question | InputError], prover: Prover, config: QAConfig,
                summary: QASummary) -> Iterator[Question | InputError]:
    """`questions` as they come; when the ranker uses the LM, each block of LM_BLOCK questions first
    has its LM features computed in one batched call (the engine caches them, so answering finds
    them ready): batched rows run ~1.5x faster than one question's two rows. Time goes to `summary`."""
    if config.ranker == "none" or not _load_ranker(config.ranker).needs_lm:
        yield from questions
        return
    it = iter(questions)
    while block := list(islice(it, LM_BLOCK)):
        t0 = time.perf_counter()
        ok = [q for q in block if isinstance(q, Question) and validate_question(q) is None]
        hits = prover.retrieve([split_stem(q.stem)[1] or q.stem for q in ok]) if ok else []
        lm_option_features(_lm_engine(), [LmQuestion(q.stem, tuple(q.options.values()),
                                                     tuple(c.text for c in h if c.source != "context")[:FACTS])
                                          for q, h in zip(ok, hits)])
        summary.elapsed_s += time.perf_counter() - t0
        yield from block


def iter_answers(questions: Iterable[Question | InputError], prover: Prover, config: QAConfig | None = None,
                 summary: QASummary | None = None) -> Iterator[dict[str, Any]]:
    """Answer questions one by one, adding each record to `summary` (timing included). An InputError
    in `questions` (a bad input line, see `read_question_set`) yields its error record."""
    summary = summary if summary is not None else QASummary()
    for q in _prefetched(questions, prover, config or QAConfig(), summary):
        t0 = time.perf_counter()
        if isinstance(q, InputError):
            rec = _bad_line_record(q)
        else:
            try:
                rec = answer_question(q, prover, config)
            except InputError as e:
                # A question the rewriter or the scorer rejects is that question's error, not the run's.
                rec = _error_record(q, str(e))
        summary.elapsed_s += time.perf_counter() - t0
        summary.add(rec)
        yield rec


def run_qa(questions: Sequence[Question | InputError], prover: Prover, config: QAConfig | None = None,
           progress: bool = False) -> tuple[list[dict[str, Any]], QASummary]:
    """All records (one per question, in input order) and the summary."""
    summary = QASummary()
    it: Iterable[Question | InputError] = questions
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


@dataclass(frozen=True)
class QuestionSet:
    """Questions in input order, a bad input line standing as its InputError (naming file:line),
    and where they came from (a path or a spec like `eb:dev`; recorded in the output header)."""

    source: str
    rows: list[Question | InputError]

    @property
    def questions(self) -> list[Question]:
        return [q for q in self.rows if isinstance(q, Question)]


def read_question_set(path: str | Path) -> QuestionSet:
    """Questions JSONL (docs/formats.md; ARC records too), tolerant per row: a line that is not UTF-8
    or not JSON stays as its InputError (an error record when answered); a record with missing or
    bad fields becomes a question that `validate_question` explains. Only an empty or unreadable
    file raises."""
    from core.jsonl import iter_jsonl

    rows: list[Question | InputError] = []
    for n, obj in iter_jsonl(path, on_error=rows.append):
        rows.append(_question_from_record(obj, n))
    if not rows:
        raise InputError("no questions in file", str(path))
    return QuestionSet(str(path), rows)


def read_questions(path: str | Path) -> list[Question]:
    """Questions JSONL, strict: the first bad line raises its InputError (file:line)."""
    qs = read_question_set(path).rows
    for q in qs:
        if isinstance(q, InputError):
            raise q
    return [q for q in qs if isinstance(q, Question)]


from retrieval.knowledge import open_microtheory  # noqa: E402 - moved there; qa_files uses it


QA_KIND = "qa"
QA_FORMAT_VERSION = 1  # version 1: a header line first, records appended as answered
# Without --workers, `qa` answers on two worker processes (core.engine.for_rows: only while two CPUs are
# idle) from this many questions to answer. Measured on the idle 2-core machine, 187 dev questions:
# 122.0 s on 2 processes vs 201.8 s on 1 (same records); a second worker's start-up (encoder, scorer,
# SmolLM2) costs ~15 s, about 30 questions' gain: the break-even is an estimate, not a measurement.
QA_AUTO_MIN_ROWS = 32


def qa_header(questions: QuestionSet, corpus: str | Path, microtheory: str | Path | None, prover: Prover,
              config: QAConfig) -> dict[str, Any]:
    """Everything that changes an answer record; a rerun with another one is refused (or --force)."""
    from dataclasses import asdict

    from core.jsonl import jsonable, model_identity, path_digest
    from retrieval.ranker import FILE, ranker_dir

    ranker_file = None if config.ranker == "none" else ranker_dir(config.ranker) / FILE
    lm = None if config.ranker == "none" or not _load_ranker(config.ranker).needs_lm else _lm_engine().model_id
    return jsonable({"questions": questions.source, "corpus": str(corpus),
                     "ranker_digest": path_digest(ranker_file), "option_lm": lm,
                     "microtheory": None if microtheory is None else str(microtheory),
                     **model_identity(prover.scorer, "scorer"), "threshold": prover.threshold,
                     "prover": asdict(prover.config) if prover.config is not None else None, "qa": asdict(config)})


def read_answered(out: str | Path) -> set[str]:
    """Ids of the questions already answered in an existing QA output (header skipped)."""
    from core.jsonl import iter_jsonl

    if not Path(out).exists():
        return set()
    done: set[str] = set()
    for n, rec in iter_jsonl(out):
        if "id" not in rec:
            raise InputError("not a QA output record (no 'id'); use another --out", str(out), n)
        done.add(str(rec["id"]))
    return done


def _summarise_out(out: Path, ids: set[str], summary: QASummary) -> QASummary:
    """Totals over the records of `out` for this input's ids (this run's and earlier runs')."""
    from core.jsonl import iter_jsonl

    total = QASummary(elapsed_s=summary.elapsed_s, skipped=summary.skipped, written=summary.written)
    for _, rec in iter_jsonl(out):
        if str(rec.get("id")) in ids:
            total.add(rec)
    return total


def qa_files(corpus: str | Path, questions: str | Path | QuestionSet, out: str | Path,
             microtheory: str | Path | None = None, scorer: str | None = None, config: QAConfig | None = None,
             prover_config: ProverConfig | None = None, progress: bool = False,
             force: bool = False, engine: Any = None) -> QASummary:
    """`microtheory qa`: answer every question (a JSONL path or a QuestionSet), one record per question.

    Records are appended to `out` (a `core.outputs.AppendOutput`: locked, headed by the configuration,
    a user's file or an input refused) as each question is answered; a rerun skips the ids already
    there, so a killed run resumes. A bad input line is an error record; the run goes on.
    `engine` (core.engine; None: here) answers the questions; this process writes OUT in input order.
    """
    from core.outputs import AppendOutput
    from retrieval.entail import load_scorer
    from retrieval.store import KnowledgeStore

    qset = questions if isinstance(questions, QuestionSet) else read_question_set(questions)
    config = config or QAConfig()
    if microtheory is None and config.ranker != "none" and _load_ranker(config.ranker).needs_microtheory:
        raise InputError(f"the option ranker {config.ranker!r} reads a microtheory's evidence: give one "
                         "(--microtheory) or choose another ranker (--ranker shipped)")
    ks = KnowledgeStore.open(corpus)
    mt = open_microtheory(microtheory, ks.encoder) if microtheory is not None else None
    prover = Prover(ks, load_scorer(scorer), microtheory=mt, config=prover_config)
    # Load the models before the clock starts: questions/s measures answering, not loading.
    prover.encode(["warm up"])
    prover.scorer.score(["warm up"], "warm up")
    if config.ranker != "none" and _load_ranker(config.ranker).needs_lm:
        _lm_engine().nll_pairs([("Answer:", "warm up")])
    if len(ks) == 0 and (mt is None or len(mt) == 0):  # before OUT is opened: nothing is written
        raise StoreError("the corpus store is empty: add facts first (microtheory store add ...)", )
    inputs = [qset.source, corpus, microtheory]
    header = qa_header(qset, corpus, microtheory, prover, config)
    with AppendOutput(out, QA_KIND, header, version=QA_FORMAT_VERSION, force=force, inputs=inputs) as sink:
        done = read_answered(out)
        ids = {_row_id(q) for q in qset.rows}
        todo = [q for q in qset.rows if _row_id(q) not in done]
        summary = QASummary(skipped=len(qset.rows) - len(todo))
        engine = for_rows(engine, len(todo), QA_AUTO_MIN_ROWS)
        it: Iterable[Question | InputError] = todo
        if progress and todo and is_local(engine):  # engine_answers draws its own bar
            from tqdm import tqdm

            it = tqdm(todo, desc="qa", unit="q")
        answers = iter_answers(it, prover, config, summary) if is_local(engine) else \
            engine_answers(engine, todo, QAWorker(str(corpus), microtheory, scorer, config, prover_config),
                           summary, progress)
        for rec in answers:
            sink.write(rec)
            summary.written += 1
    return _summarise_out(Path(out), ids, summary)


def _row_id(q: Question | InputError) -> str:
    return f"line{q.line}" if isinstance(q, InputError) else q.id


@dataclass(frozen=True)
class QAWorker:
    """A `core.engine` worker factory: opens the corpus (and microtheory) and loads the scorer once per
    worker, then answers shards of questions exactly as `qa_files` does here."""

    corpus: str
    microtheory: str | Path | None
    scorer: str | None
    config: QAConfig
    prover_config: ProverConfig | None

    def __call__(self) -> Any:
        from retrieval.entail import load_scorer
        from retrieval.store import KnowledgeStore

        ks = KnowledgeStore.open(self.corpus)
        mt = open_microtheory(self.microtheory, ks.encoder) if self.microtheory is not None else None
        prover = Prover(ks, load_scorer(self.scorer), microtheory=mt, config=self.prover_config)
        return lambda shard: list(iter_answers(shard, prover, self.config))


def engine_answers(engine: Any, todo: list[Question | InputError], worker: QAWorker, summary: QASummary,
                   progress: bool) -> Iterator[dict[str, Any]]:
    """The records of `todo` answered by `engine`'s workers, in input order, added to `summary`."""
    t0 = time.perf_counter()
    recs: Iterable[dict[str, Any]] = engine.map(worker, todo, shard_size=8)
    if progress and todo:
        from tqdm import tqdm

        recs = tqdm(recs, total=len(todo), desc=f"qa ({engine.name})", unit="q")
    for rec in recs:
        summary.add(rec)
        summary.elapsed_s = time.perf_counter() - t0
        yield rec
