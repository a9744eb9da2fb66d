"""Fill a knowledge store with model-generated sentences that provably entail training answers.

For each training question: form the hypothesis (the gold one when given, else question + keyed
answer), ask the generator for premise sets that entail it (several prompts x several samples, as
TreeWise does: a few-shot decomposition, and one conditioned on facts retrieved from the store),
merge paraphrases (encoder cosine >= 0.9), drop circular candidates (a premise that restates the
statement), keep only candidates the entailment scorer accepts, prune each to a minimal set (a
premise the others entail the statement without is dropped; a set that one premise alone entails
is a restatement, rejected), and recurse on premises that no stored fact entails, within a depth
limit and a per-question node budget. Every sentence of an
accepted proof goes into the store with provenance (question, proof, generator, prompt id,
scores), and the proof itself via `add_proofs`.

Runs are resumable: a JSONL log beside the store (`<store>.populate.jsonl`) has one status record
per question attempt (`proved`, `unproved`, `failed` with its reason, or `invalid` for an input line
that is not a question). The log is a `core.outputs.AppendOutput`: locked against a second run,
headed by the configuration (generator, scorer digest, threshold, search settings), and a rerun
with another configuration is refused unless `force`. Log records are written only after the store
save that holds their facts, so the log never claims more than the store has; a rerun skips
questions already proved or unproved and retries the failed ones. A generator fault (time-out,
empty or malformed output) fails that question only; the run goes on. A generator that gives up
for good (`stop_run`, the openai circuit breaker) stops the run: what is done is saved, the
question in hand is not logged, and the rerun goes on from there.
"""
from __future__ import annotations

import hashlib
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microtheory.generators.base import Generator, get_generator
from microtheory.prompts import DEFAULT_PROMPTS, build_prompts, get_templates, parse_premises
from core.engine import is_local
from core.errors import GeneratorError, InputError, MicrotheoryError
from core.types import Fact, Proof, Question

if TYPE_CHECKING:
    from retrieval.qa import QuestionSet

LOG_SUFFIX = ".populate.jsonl"
DONE_STATUSES = ("proved", "unproved", "invalid")  # "invalid": a bad input line, logged once


@dataclass(frozen=True)
class PopulateConfig:
    """Search and sampling settings. Defaults are sized for a small local model on a CPU."""

    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    samples: int = 3                 # candidates per prompt per expanded statement
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 96
    seed: int | None = 0
    max_depth: int = 1               # 0: decompose the hypothesis only; d: premises down to depth d
    node_budget: int = 6             # statements sent to the generator per question
    max_proofs: int = 3              # accepted decompositions of the hypothesis kept per question
    threshold: float | None = None   # None: the scorer's own threshold
    paraphrase_threshold: float = 0.9
    minimal: bool = True             # prune accepted sets to premises the entailment needs (see _minimise)
    retrieve_k: int = 5              # facts shown to the retrieval prompt
    ground_k: int = 3                # stored facts tried as single-fact proofs of a premise
    min_premises: int = 2
    max_premises: int = 4
    save_every: int = 10             # questions between store saves (and log flushes)
    max_consecutive_failures: int = 20  # stop early when the generator is clearly gone; 0 = never

    def __post_init__(self) -> None:
        get_templates(self.prompts)
        for name in ("samples", "node_budget", "max_proofs", "min_premises", "save_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_depth < 0:
            raise InputError(f"max_depth must be >= 0, got {self.max_depth}")
        if self.max_premises < self.min_premises:
            raise InputError("max_premises must be >= min_premises")
        if not 0 < self.paraphrase_threshold <= 1:
            raise InputError("paraphrase_threshold must be in (0, 1]")


@dataclass
class Node:
    """A statement in a proof tree: a leaf (no children) or proved by `children` with `score`."""

    text: str
    score: float = 1.0
    prompt_id: str | None = None
    children: list[Node] = field(default_factory=list)
    fact_id: str | None = None       # grounded: a stored corpus fact that alone entails `text`
    fact: Fact | None = None         # that fact (copied into the store when it came from another corpus)

    def walk(self, depth: int = 0) -> Iterable[tuple[Node, int]]:
        yield self, depth
        for c in self.children:
            yield from c.walk(depth + 1)

    def leaves(self) -> list[Node]:
        return [n for n, _ in self.walk() if not n.children]

    def weakest(self) -> float:
        scores = [n.score for n, _ in self.walk() if n.children]
        grounded = [n.score for n in self.leaves() if n.fact_id is not None]
        return float(min(scores + grounded)) if scores or grounded else 1.0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text}
        if self.children:
            d.update(score=round(self.score, 4), prompt_id=self.prompt_id, premises=[c.to_json() for c in self.children])
        if self.fact_id:
            d.update(fact_id=self.fact_id, score=round(self.score, 4))
            if self.fact is not None:
                d["fact_text"] = self.fact.text
        return d


@dataclass
class _Candidate:
    premises: list[str]
    prompt_id: str
    score: float = 0.0


@dataclass
class QuestionResult:
    """What the search did for one question (before anything is stored)."""

    question_id: str
    hypothesis: str
    status: str                      # proved | unproved | failed
    reason: str | None = None
    proofs: list[Node] = field(default_factory=list)
    candidates: int = 0              # distinct premise sets after paraphrase merging
    accepted: int = 0
    rejected_sentences: set[str] = field(default_factory=set)
    outputs: int = 0                 # raw generator answers
    empty_outputs: int = 0
    unparsed_outputs: int = 0
    nodes: int = 0
    generator_calls: int = 0
    seconds: float | None = None     # set by an engine worker: the search time where it ran


@dataclass
class PopulateSummary:
    """The run's totals; `to_json` is what `microtheory populate --json` prints."""

    questions: int = 0
    skipped: int = 0
    attempted: int = 0
    proved: int = 0
    unproved: int = 0
    failed: int = 0
    invalid: int = 0                 # input lines that are not questions (bad bytes, bad JSON)
    proofs: int = 0
    sentences_added: int = 0         # new facts in the store
    sentences_merged: int = 0        # proof sentences already in the store (provenance merged)
    sentences_kept: int = 0          # distinct generated sentences of accepted proofs
    sentences_rejected: int = 0      # distinct proposed sentences only in candidates the scorer rejected
    grounded_leaves: int = 0         # proof leaves that are existing corpus facts
    candidates: int = 0
    accepted_candidates: int = 0
    generator_calls: int = 0
    seconds: float = 0.0
    aborted: str | None = None
    store: str = ""
    log: str = ""
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def proved_share(self) -> float:
        return self.proved / self.attempted if self.attempted else 0.0

    @property
    def questions_per_min(self) -> float:
        return 60.0 * self.attempted / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        d["seconds"] = round(self.seconds, 2)
        d["proved_share"] = round(self.proved_share, 4)
        d["questions_per_min"] = round(self.questions_per_min, 2)
        return d

    def lines(self) -> list[str]:
        out = [f"questions: {self.questions} ({self.skipped} already done, {self.attempted} attempted)",
               f"proved: {self.proved} ({100 * self.proved_share:.1f}% of attempted), unproved: {self.unproved}, "
               f"failed: {self.failed}" + (f", invalid input lines: {self.invalid}" if self.invalid else ""),
               f"proofs stored: {self.proofs}; sentences kept: {self.sentences_kept} "
               f"({self.sentences_added} new in the store, {self.sentences_merged} already there); "
               f"rejected by the scorer: {self.sentences_rejected}; leaves grounded in corpus facts: "
               f"{self.grounded_leaves}",
               f"candidate premise sets: {self.candidates}, accepted: {self.accepted_candidates}",
               f"generator calls: {self.generator_calls}; time: {self.seconds:.1f} s "
               f"({self.questions_per_min:.2f} questions/min)",
               f"store: {self.store}; log: {self.log}"]
        if self.failures:
            out.append("failure reasons: " + "; ".join(f"{k} x{v}" for k, v in sorted(self.failures.items())))
        if self.aborted:
            out.append(f"stopped early: {self.aborted}")
        return out


def hypothesis_for(q: Question) -> str:
    """The gold hypothesis when the question carries one, else one made from stem + keyed option."""
    if q.hypothesis and q.hypothesis.strip():
        return q.hypothesis.strip()
    if not q.answer_key or q.answer_key not in q.options:
        raise InputError(f"question {q.id}: no hypothesis and no valid answer key to make one")
    from retrieval.hypothesis import make_hypothesis

    return make_hypothesis(q.stem, q.options[q.answer_key])


def _calls(gen: Generator) -> int:
    stats = getattr(gen, "stats", None)
    return int(getattr(stats, "calls", 0)) if stats is not None else 0


def _short_reason(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg if len(msg) <= 300 else msg[:300] + "..."


class ProofSearch:
    """Backward-chaining decomposition search for one store, generator, scorer and encoder."""

    def __init__(self, generator: Generator, scorer: Any, encoder: Any, store: Any | None,
                 config: PopulateConfig, corpus: Any | None = None):
        """`corpus` (a store) is where facts for the retrieval prompt and for grounding come from;
        None: the store being populated."""
        self.gen, self.scorer, self.encoder, self.store, self.cfg = generator, scorer, encoder, store, config
        self.corpus = corpus if corpus is not None else store
        self.threshold = float(config.threshold if config.threshold is not None else scorer.threshold)

    # -------------------------------------------------------------------------- pieces

    def _retrieve(self, texts: Sequence[str], k: int) -> list[list[Any]]:
        if self.corpus is None or k < 1 or len(self.corpus) == 0:
            return [[] for _ in texts]
        return self.corpus.search_batch(list(texts), k=k)

    def _ground(self, premises: Sequence[str]) -> list[tuple[Fact, float] | None]:
        """For each premise, a corpus fact that alone entails it (the fact, score), if any."""
        hits = self._retrieve(premises, self.cfg.ground_k)
        items, owners = [], []
        for i, (p, hs) in enumerate(zip(premises, hits)):
            for h in hs:
                items.append(([h.fact.text], p))
                owners.append((i, h.fact))
        out: list[tuple[Fact, float] | None] = [None] * len(premises)
        if not items:
            return out
        scores = self.scorer.score_batch(items)
        for (i, fact), s in zip(owners, scores):
            s = float(s)
            if s >= self.threshold and (out[i] is None or s > out[i][1]):  # type: ignore[index]
                out[i] = (fact, s)
        return out

    def _merge_paraphrases(self, statement: str, cands: list[_Candidate], res: QuestionResult) -> list[_Candidate]:
        """Map paraphrases (cosine >= threshold) to the first-seen wording; drop duplicate and circular sets."""
        sentences: list[str] = []
        index: dict[str, int] = {}
        for c in cands:
            for p in c.premises:
                if p not in index:
                    index[p] = len(sentences)
                    sentences.append(p)
        if not sentences:
            return []
        vecs = np.asarray(self.encoder.encode([statement, *sentences]), dtype=np.float32)
        hyp_vec, vecs = vecs[0], vecs[1:]
        canon = list(range(len(sentences)))
        for i in range(len(sentences)):
            for j in range(i):
                if canon[j] == j and float(vecs[i] @ vecs[j]) >= self.cfg.paraphrase_threshold:
                    canon[i] = j
                    break
        circular = {i for i in range(len(sentences)) if float(vecs[i] @ hyp_vec) >= self.cfg.paraphrase_threshold}
        out: list[_Candidate] = []
        seen: set[frozenset[int]] = set()
        for c in cands:
            ids: list[int] = []
            for p in c.premises:
                j = canon[index[p]]
                if j not in ids:
                    ids.append(j)
            if len(ids) < self.cfg.min_premises:
                continue
            if any(i in circular for i in ids):
                # "X because X": any scorer accepts it, and it adds nothing.
                res.rejected_sentences.update(sentences[i] for i in ids if i not in circular)
                continue
            key = frozenset(ids)
            if key in seen:
                continue
            seen.add(key)
            out.append(_Candidate([sentences[i] for i in ids], c.prompt_id))
        return out

    def expand(self, statement: str, res: QuestionResult, depth: int) -> list[_Candidate]:
        """Accepted decompositions of `statement`, best first; [] when the budget is spent."""
        if res.nodes >= self.cfg.node_budget:
            return []
        res.nodes += 1
        facts = [h.fact.text for h in self._retrieve([statement], self.cfg.retrieve_k)[0]] \
            if "retrieval" in self.cfg.prompts else []
        prompts = build_prompts(statement, facts, self.cfg.prompts)
        seed = None
        if self.cfg.seed is not None:
            seed = (self.cfg.seed * 1_000_003 + zlib.crc32(statement.encode("utf-8"))) % (2 ** 31 - 1 - 1000)
        before = _calls(self.gen)
        try:
            answers = self.gen.generate([p for _, p in prompts], n=self.cfg.samples, temperature=self.cfg.temperature,
                                        top_p=self.cfg.top_p, max_tokens=self.cfg.max_tokens, seed=seed)
        finally:
            after = _calls(self.gen)
            res.generator_calls += (after - before) if after > before else len(prompts)
        if len(answers) != len(prompts):
            raise GeneratorError(f"generator {getattr(self.gen, 'name', '?')} answered {len(answers)} of "
                                 f"{len(prompts)} prompts")
        cands: list[_Candidate] = []
        for (pid, _), outs in zip(prompts, answers):
            for text in outs:
                res.outputs += 1
                if not isinstance(text, str) or not text.strip():
                    res.empty_outputs += 1
                    continue
                prem = parse_premises(text, statement, max_premises=self.cfg.max_premises)
                if not prem:
                    res.unparsed_outputs += 1
                    continue
                cands.append(_Candidate(prem, pid))
        cands = self._merge_paraphrases(statement, cands, res)
        res.candidates += len(cands)
        if not cands:
            return []
        scores = self.scorer.score_batch([(c.premises, statement) for c in cands])
        accepted = []
        for c, s in zip(cands, scores):
            c.score = float(s)
            if c.score >= self.threshold:
                accepted.append(c)
            else:
                res.rejected_sentences.update(c.premises)
        if self.cfg.minimal:
            accepted = self._minimise(statement, accepted, res)
        res.accepted += len(accepted)
        accepted.sort(key=lambda c: -c.score)
        return accepted

    def _minimise(self, statement: str, accepted: list[_Candidate], res: QuestionResult) -> list[_Candidate]:
        """Prune accepted sets to what the entailment needs, and drop restatements.

        A small model pads a sound premise with loosely related (often false) sentences, and
        paraphrases the statement as one of its premises; the set still entails the statement, so
        the threshold alone lets both into the store. Leave-one-out: while some premise can be
        dropped with the rest still above the threshold, drop the one whose removal scores best. A set
        pruned to a single premise is that premise restating the statement: rejected (the cosine cut
        in _merge_paraphrases catches only close wordings)."""
        out: list[_Candidate] = []
        for c in accepted:
            prem = list(c.premises)
            while len(prem) > 1:
                subsets = [prem[:i] + prem[i + 1:] for i in range(len(prem))]
                sc = np.asarray(self.scorer.score_batch([(sub, statement) for sub in subsets]), dtype=np.float64)
                best = int(sc.argmax())
                if sc[best] < self.threshold:
                    break
                res.rejected_sentences.add(prem[best])
                prem, c.score = subsets[best], float(sc[best])
            if len(prem) < self.cfg.min_premises:
                res.rejected_sentences.update(prem)
                continue
            c.premises = prem
            out.append(c)
        # Pruning can make two candidates the same set: keep the first (best-scored order comes later).
        unique: dict[frozenset[str], _Candidate] = {}
        for c in out:
            unique.setdefault(frozenset(c.premises), c)
        return list(unique.values())

    def _prove_premises(self, premises: list[str], res: QuestionResult, depth: int) -> list[Node]:
        grounded = self._ground(premises)
        nodes = []
        for p, g in zip(premises, grounded):
            if g is not None:
                nodes.append(Node(p, score=g[1], fact_id=g[0].id, fact=g[0]))
                continue
            node = Node(p)
            if depth <= self.cfg.max_depth:
                sub = self.expand(p, res, depth)
                if sub:
                    best = sub[0]
                    node = Node(p, best.score, best.prompt_id, self._prove_premises(best.premises, res, depth + 1))
            nodes.append(node)
        return nodes

    def prove(self, question_id: str, hypothesis: str) -> QuestionResult:
        """Search for up to `max_proofs` accepted proofs of `hypothesis`; GeneratorError fails the question."""
        res = QuestionResult(question_id, hypothesis, "unproved")
        try:
            top = self.expand(hypothesis, res, 0)
            if res.outputs == 0:
                return _failed(res, "generator returned no candidates")
            if res.empty_outputs == res.outputs:
                return _failed(res, f"generator returned empty output ({res.outputs} answers)")
            if res.empty_outputs + res.unparsed_outputs == res.outputs:
                return _failed(res, f"malformed generator output: no premise list in any of {res.outputs} answers")
            for cand in top[: self.cfg.max_proofs]:
                res.proofs.append(Node(hypothesis, cand.score, cand.prompt_id,
                                       self._prove_premises(cand.premises, res, 1)))
        except GeneratorError as e:
            if getattr(e, "stop_run", False):  # the generator is gone (circuit breaker): stop the run
                raise
            return _failed(res, _short_reason(e))
        kept = {n.text for proof in res.proofs for n, d in proof.walk() if d > 0}
        res.rejected_sentences -= kept
        if res.proofs:
            res.status = "proved"
        return res


def _failed(res: QuestionResult, reason: str) -> QuestionResult:
    res.status, res.reason, res.proofs = "failed", reason, []
    return res


def proof_id_for(proof: Node) -> str:
    """Content-addressed: the same proof found again (a rerun) replaces itself instead of piling up."""
    leaves = sorted(" ".join(n.text.lower().split()) for n in proof.leaves())
    return "gen-" + hashlib.blake2b("\n".join(leaves).encode("utf-8"), digest_size=6).hexdigest()


def store_result(store: Any, res: QuestionResult, generator_name: str) -> dict[str, Any]:
    """Add the sentences and proofs of one proved question to `store` (in memory); returns counts."""
    from retrieval.store import fact_id_for

    facts: list[Fact] = []
    copies: list[Fact] = []
    plans: list[tuple[Node, str, list[tuple[Node, str]]]] = []
    for proof in res.proofs:
        pid = proof_id_for(proof)
        leaf_refs: list[tuple[Node, str]] = []
        for node, depth in proof.walk():
            if depth == 0:
                continue
            if node.fact_id is not None:
                if node.fact_id not in store and node.fact is not None:
                    copies.append(node.fact)  # grounded in a separate corpus: the proof needs it stored
                leaf_refs.append((node, node.fact_id))
                continue
            parent_score = _parent_score(proof, node)
            prov = {"question_id": res.question_id, "proof_id": pid, "generator": generator_name,
                    "prompt_id": _parent_prompt(proof, node), "role": "intermediate" if node.children else "leaf",
                    "depth": depth, "step_score": round(parent_score, 4), "proof_score": round(proof.weakest(), 4)}
            if node.children:
                prov["proved_by_score"] = round(node.score, 4)
            in_id = fact_id_for(node.text)
            facts.append(Fact(id=in_id, text=node.text, source="generated", provenance=[prov]))
            if not node.children:
                leaf_refs.append((node, in_id))
        plans.append((proof, pid, leaf_refs))
    copied = store.add(copies) if copies else None
    added = store.add(facts) if facts else None
    ids = {**(copied.ids if copied is not None else {}), **(added.ids if added is not None else {})}
    proofs = []
    for proof, pid, leaf_refs in plans:
        leaves: list[str] = []
        for node, ref in leaf_refs:
            sid = ids.get(ref, ref)
            if sid not in leaves:
                leaves.append(sid)
        proofs.append(Proof(question_id=res.question_id, proof_id=pid, hypothesis=res.hypothesis,
                            leaves=tuple(leaves), score=round(proof.weakest(), 4)))
    store.add_proofs(proofs)
    return {"proof_ids": [p.proof_id for p in proofs], "added": added.added if added else 0,
            "merged": added.merged if added else 0, "corpus_copied": copied.added if copied else 0}


def _parent_of(root: Node, target: Node) -> Node | None:
    for node, _ in root.walk():
        if any(c is target for c in node.children):
            return node
    return None


def _parent_score(root: Node, node: Node) -> float:
    parent = _parent_of(root, node)
    return parent.score if parent is not None else 1.0


def _parent_prompt(root: Node, node: Node) -> str | None:
    parent = _parent_of(root, node)
    return parent.prompt_id if parent is not None else None


# ------------------------------------------------------------------------------------------ the log

def default_log_path(store_path: str | Path) -> Path:
    """Beside the store, not inside it: a store save swaps the whole folder."""
    p = Path(store_path)
    return p.with_name(p.name + LOG_SUFFIX)


def read_log(path: str | Path) -> dict[str, dict[str, Any]]:
    """question id -> its latest log record (header skipped; a torn or unreadable line from a crash
    is ignored: that question is simply redone)."""
    from core.jsonl import iter_jsonl

    latest: dict[str, dict[str, Any]] = {}
    if not Path(path).is_file():
        return latest
    for _, rec in iter_jsonl(path, on_error=lambda e: None):
        if "question_id" in rec:
            latest[str(rec["question_id"])] = rec
    return latest


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# ------------------------------------------------------------------------------------------ the run

LOG_KIND = "populate"
LOG_VERSION = 1  # version 1: a header line with the configuration first; status "invalid" for bad lines


@dataclass(frozen=True)
class PopulateOptions:
    """How one run goes, beyond the search settings (`PopulateConfig`): none changes a proof."""

    log_path: str | Path | None = None    # None: `<store>.populate.jsonl`
    retry_unproved: bool = False          # also redo questions logged as unproved
    limit: int | None = None              # attempt at most this many questions in this run
    force: bool = False                   # restart a log made with another configuration
    on_question: Callable[[dict[str, Any]], None] | None = None  # called with each log record
    engine: Any = None                    # core.engine Engine (None: this process); see `populate`
    concurrency: int = 4                  # engine workers: questions in flight per worker (threads)
    make_generator: Callable[[], Generator] | None = None  # engine workers: builds a generator (None: a copy)


@dataclass(frozen=True)
class GeneratorSettings:
    """How the CLI builds a generator: fault settings for the openai backend, and recording."""

    timeout: float = 30.0            # seconds one HTTP request may take
    retries: int = 3                 # retries per request (exponential backoff with jitter)
    request_budget: float = 60.0     # seconds one request may take with all its retries
    breaker: int = 4                 # failed attempts in a row that stop the run (0: never)
    breaker_seconds: float = 45.0    # ...or seconds without an answer
    record: str | Path | None = None  # append every answer to this JSONL (replay:FILE later)

    def make(self, spec: str) -> Generator:
        options: dict[str, Any] = {}
        if spec.split(":", 1)[0] == "openai":
            from microtheory.generators.openai import FaultPolicy

            options["policy"] = FaultPolicy(timeout=self.timeout, retries=self.retries,
                                            request_budget=self.request_budget, breaker=self.breaker,
                                            breaker_seconds=self.breaker_seconds)
        gen = get_generator(spec, **options)
        if self.record is not None:
            from microtheory.generators.replay import RecordingGenerator

            gen = RecordingGenerator(gen, self.record)
        return gen


def log_config(gen: Generator, scorer: Any, cfg: PopulateConfig, corpus: Any) -> dict[str, Any]:
    """The log header: everything that changes which proofs a question gets. A rerun with another
    generator, model, scorer, threshold or search setting is refused (resume would mix them)."""
    from dataclasses import asdict

    from core.jsonl import jsonable, model_identity, path_digest

    search = {k: v for k, v in asdict(cfg).items() if k not in ("save_every", "max_consecutive_failures")}
    threshold = cfg.threshold if cfg.threshold is not None else getattr(scorer, "threshold", None)
    corpus_id = None if corpus is None else str(corpus if isinstance(corpus, (str, Path)) else
                                                getattr(corpus, "path", type(corpus).__name__))
    return jsonable({"generator": str(getattr(gen, "name", type(gen).__name__)),
                     "generator_digest": path_digest(_generator_weights(gen)), **model_identity(scorer, "scorer"),
                     "threshold": threshold, "corpus": corpus_id, "search": search})


def _generator_weights(gen: Any) -> str | Path | None:
    """The local weights file of an in-process generator (llama-cpp, hf with a GGUF), else None
    (a server's model is named in the generator spec)."""
    gen = getattr(gen, "inner", gen)  # a RecordingGenerator records what its inner generator says
    if getattr(gen, "model_path", None):
        return gen.model_path
    name, gguf = getattr(gen, "model_name", None), getattr(gen, "gguf_file", None)
    return (Path(name) / gguf if gguf else name) if name else None


def _open_store(store_path: Path, encoder: Any) -> Any:
    from retrieval.store import KnowledgeStore

    return KnowledgeStore.open_or_create(store_path, encoder=encoder)


def _check_unique_ids(rows: Sequence[Question | InputError]) -> None:
    seen: set[str] = set()
    for q in rows:
        if isinstance(q, Question):
            if q.id in seen:
                raise InputError(f"question id {q.id!r} appears more than once in the input")
            seen.add(q.id)


def _row_id(q: Question | InputError) -> str:
    return q.id if isinstance(q, Question) else f"line{q.line}"


@contextmanager
def _open_log(log: Path, header: dict[str, Any], force: bool, inputs: list[Any]) -> Iterator[Any]:
    """The log as a locked, headed AppendOutput; its refusals speak of the log, not of an --out."""
    from core.outputs import AppendOutput

    sink = AppendOutput(log, LOG_KIND, header, version=LOG_VERSION, force=force, inputs=inputs)
    try:
        sink.__enter__()
    except InputError as e:
        reason = e.reason.replace("another --out", "another --log").replace("a new --out", "a new --log")
        raise InputError(reason.replace("--out", "the populate log"), e.path, e.line) from None
    try:
        yield sink
    finally:
        sink.__exit__(None, None, None)


def populate(
    questions: Sequence[Question | InputError] | QuestionSet,
    store_path: str | Path,
    generator: Generator | str,
    *,
    scorer: Any | str | None = None,
    encoder: Any | str | None = None,
    config: PopulateConfig | None = None,
    corpus: str | Path | Any | None = None,
    options: PopulateOptions | None = None,
    progress: bool = True,
) -> PopulateSummary:
    """Populate the store at `store_path` (created when missing) from `questions`; see the module doc.

    `questions`: Questions, or rows of `microtheory.datasets.load_question_set` where a bad input line is its InputError
    (logged with status `invalid`). `scorer`: an EntailmentScorer, a path for `load_scorer`,
    "overlap", or None (the shipped one). `encoder`: only used when the store is created.
    `corpus`: a store (or its path, opened read-only) to retrieve prompt and grounding facts from;
    None: the store being populated. Corpus facts that ground a proof are copied into the store.
    """
    from retrieval.entail import load_scorer
    from retrieval.store import KnowledgeStore

    cfg, opts = config or PopulateConfig(), options or PopulateOptions()
    if opts.concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {opts.concurrency}")
    rows = list(questions.rows if hasattr(questions, "rows") else questions)
    gen = get_generator(generator) if isinstance(generator, str) else generator
    sc = load_scorer(scorer) if scorer is None or isinstance(scorer, str) else scorer
    store_path = Path(store_path)
    log = Path(opts.log_path) if opts.log_path is not None else default_log_path(store_path)
    _check_unique_ids(rows)
    header = log_config(gen, sc, cfg, corpus)
    source = getattr(questions, "source", None)
    with _open_log(log, header, opts.force, [source if source and Path(source).exists() else None,
                                             store_path]) as sink:
        done = read_log(log)
        skip = set(DONE_STATUSES if not opts.retry_unproved else ("proved", "invalid"))
        todo = [q for q in rows if done.get(_row_id(q), {}).get("status") not in skip]
        summary = PopulateSummary(questions=len(rows), skipped=len(rows) - len(todo), store=str(store_path),
                                  log=str(log))
        if opts.limit is not None:
            todo = todo[: max(opts.limit, 0)]
        snapshot = KnowledgeStore.exists(store_path)  # what engine workers retrieve from when no corpus is given
        store = _open_store(store_path, encoder)
        corpus_store = KnowledgeStore.open(corpus) if isinstance(corpus, (str, Path)) else corpus
        run = _Run(ProofSearch(gen, sc, store.encoder, store, cfg, corpus=corpus_store), store, sink, summary,
                   opts.on_question)
        results = None
        if not is_local(opts.engine):
            worker = _ProveWorker(opts.make_generator or gen, scorer if scorer is None or isinstance(scorer, str)
                                  else sc, store.encoder.name, cfg, _corpus_for_workers(corpus, store_path, snapshot),
                                  opts.concurrency)
            results = opts.engine.map(worker, todo, shard_size=opts.concurrency * 2)
        run.run(todo, progress, results)
    return summary


def _corpus_for_workers(corpus: Any, store_path: Path, snapshot: bool) -> Any:
    """Engine workers cannot see the store growing in this process: they retrieve from `--corpus`, or
    else from the store as saved when the run started (None for a new store)."""
    if corpus is None:
        return str(store_path) if snapshot else None
    return str(corpus) if isinstance(corpus, (str, Path)) else corpus


def prove_question(search: ProofSearch, q: Question | InputError) -> QuestionResult | MicrotheoryError:
    """One question's search (no storing): its result, or the error of a generator that gave up for
    good (`stop_run`: the run must stop and this question stays unlogged)."""
    t0 = time.monotonic()
    if isinstance(q, InputError):
        return QuestionResult(_row_id(q), "", "invalid", reason=str(q))
    try:
        res = search.prove(q.id, hypothesis_for(q))
    except MicrotheoryError as e:
        if getattr(e, "stop_run", False):  # the generator gave up for good (circuit breaker open)
            return e
        res = QuestionResult(q.id, "", "failed", reason=_short_reason(e))
    res.seconds = time.monotonic() - t0
    return res


@dataclass(frozen=True)
class _ProveWorker:
    """A `core.engine` worker factory: per worker, one scorer (its calls from concurrent questions
    batched together), one encoder and corpus; per thread, its own generator and search. A shard's
    questions are proved `concurrency` at a time (requests in flight against the server)."""

    generator: Any          # a Generator (each thread proves with its own copy) or a factory of one
    scorer: Any             # a spec for load_scorer, or a scorer object
    encoder: str
    cfg: PopulateConfig
    corpus: Any = None      # a store path (opened read-only here) or a Knowledge
    concurrency: int = 4

    def __call__(self) -> Callable[[list[Any]], list[Any]]:
        import copy
        import threading
        from concurrent.futures import ThreadPoolExecutor

        from retrieval.encoder import get_encoder
        from retrieval.entail import load_scorer
        from retrieval.store import KnowledgeStore

        sc = load_scorer(self.scorer) if self.scorer is None or isinstance(self.scorer, str) else self.scorer
        scorer, enc = BatchingScorer(sc, self.concurrency), get_encoder(self.encoder)
        corpus = KnowledgeStore.open(self.corpus) if isinstance(self.corpus, str) else self.corpus
        local, pool = threading.local(), ThreadPoolExecutor(self.concurrency)

        def one(q: Any) -> Any:
            if getattr(local, "search", None) is None:
                gen = copy.deepcopy(self.generator) if hasattr(self.generator, "generate") else self.generator()
                local.search = ProofSearch(gen, scorer, enc, None, self.cfg, corpus=corpus)
            return prove_question(local.search, q)

        return lambda shard: list(pool.map(one, shard))


class BatchingScorer:
    """A scorer shared by concurrent searches: `score_batch` calls that arrive together run as one
    call of the wrapped scorer (one forward pass instead of one per question). The first caller
    waits until every busy thread has asked, or a few milliseconds, then scores for all."""

    def __init__(self, inner: Any, expect: int = 4, wait_s: float = 0.005):
        import threading

        self.inner, self.expect, self.wait_s = inner, max(1, expect), wait_s
        self._cv = threading.Condition()
        self._queue: list[tuple[list[Any], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:  # threshold, name, digest...: the wrapped scorer's
        return getattr(self.inner, name)

    def score_batch(self, items: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        slot: dict[str, Any] = {}
        with self._cv:
            self._queue.append((list(items), slot))
            leader = len(self._queue) == 1
            if leader:
                self._cv.wait_for(lambda: len(self._queue) >= self.expect, timeout=self.wait_s)
                batch, self._queue = self._queue, []
        if leader:
            self._score_all(batch)
        with self._cv:
            self._cv.wait_for(lambda: "out" in slot or "error" in slot)
        if "error" in slot:
            raise slot["error"]
        return slot["out"]

    def _score_all(self, batch: list[tuple[list[Any], dict[str, Any]]]) -> None:
        flat = [it for items, _ in batch for it in items]
        try:
            scores = np.asarray(self.inner.score_batch(flat), dtype=np.float64) if flat else np.zeros(0)
            err = None
        except Exception as e:  # every waiting question gets the error, as if it had called alone
            scores, err = np.zeros(0), e
        with self._cv:
            at = 0
            for items, slot in batch:
                if err is not None:
                    slot["error"] = err
                else:
                    slot["out"] = scores[at:at + len(items)]
                at += len(items)
            self._cv.notify_all()


class _Run:
    """One populate run over its to-do list: prove, store, log (after the save that holds the facts)."""

    def __init__(self, search: ProofSearch, store: Any, sink: Any, summary: PopulateSummary,
                 on_question: Callable[[dict[str, Any]], None] | None):
        self.search, self.store, self.sink, self.summary = search, store, sink, summary
        self.cfg = search.cfg
        self.on_question = on_question
        self.gen_name = str(getattr(search.gen, "name", type(search.gen).__name__))
        self.pending: list[dict[str, Any]] = []
        self.kept: set[str] = set()
        self.consecutive = 0

    def flush(self) -> None:
        self.store.save()
        for rec in self.pending:
            self.sink.write(rec)
        self.pending.clear()

    def run(self, todo: list[Question | InputError], progress: bool, results: Iterable[Any] | None = None) -> None:
        """`results`: each question's `prove_question` outcome from an engine, in todo order (None: prove here)."""
        t0 = time.monotonic()
        proved = iter(results) if results is not None else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="populate", unit="q", file=sys.stderr, dynamic_ncols=True)
        try:
            for i, q in enumerate(todo, 1):
                stop = self.attempt(q, next(proved) if proved is not None else None)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(proved=self.summary.proved, failed=self.summary.failed, refresh=False)
                if i % self.cfg.save_every == 0:
                    self.flush()
                if stop:
                    break
            self.flush()
        except BaseException:
            # Interrupted (Ctrl-C) or a store error: keep what is complete. Questions whose records are
            # pending were added in memory; saving them now loses nothing and the log stays truthful.
            try:
                self.flush()
            finally:
                self.store.close()
            raise
        finally:
            if bar is not None:
                bar.close()
            close = getattr(proved, "close", None)
            if close is not None:  # an engine stops its workers
                close()
            self.summary.seconds = time.monotonic() - t0
            self.summary.sentences_kept = len(self.kept)
        self.store.close()

    def attempt(self, q: Question | InputError, proved: QuestionResult | MicrotheoryError | None = None) -> bool:
        """Prove (unless an engine did: `proved`), store and log one question; True when the run must stop."""
        tq = time.monotonic()
        res = proved if proved is not None else prove_question(self.search, q)
        if isinstance(res, MicrotheoryError):  # not this question's fault: leave it to the rerun, log nothing
            self.summary.aborted = f"{res} Questions done so far are kept and skipped then."
            return True
        rec = self.record(res, tq)
        self.pending.append(rec)
        self.account(res)
        if self.on_question is not None:
            self.on_question(rec)
        limit = self.cfg.max_consecutive_failures
        if limit and self.consecutive >= limit:
            self.summary.aborted = (f"{self.consecutive} questions failed in a row (last: {res.reason}); the rest "
                                    "were not attempted. Fix the generator and rerun: done questions are skipped.")
            return True
        return False

    def record(self, res: QuestionResult, tq: float) -> dict[str, Any]:
        """The log record of one attempt (storing a proved question's facts and proofs first)."""
        rec: dict[str, Any] = {"question_id": res.question_id, "status": res.status, "reason": res.reason,
                               "hypothesis": res.hypothesis, "generator": self.gen_name}
        if res.status == "proved":
            stored = store_result(self.store, res, self.gen_name)
            rec.update(proofs=len(res.proofs), proof_ids=stored["proof_ids"],
                       proof_scores=[round(p.weakest(), 4) for p in res.proofs],
                       sentences_added=stored["added"], sentences_merged=stored["merged"],
                       corpus_facts_copied=stored["corpus_copied"])
            self.summary.sentences_added += stored["added"]
            self.summary.sentences_merged += stored["merged"]
        rec.update(candidates=res.candidates, accepted=res.accepted, rejected=len(res.rejected_sentences),
                   outputs=res.outputs, empty_outputs=res.empty_outputs, unparsed_outputs=res.unparsed_outputs,
                   nodes=res.nodes, generator_calls=res.generator_calls,
                   seconds=round(res.seconds if res.seconds is not None else time.monotonic() - tq, 3),
                   time=_now())
        if res.status == "proved":
            rec["trees"] = [p.to_json() for p in res.proofs]
        return rec

    def account(self, res: QuestionResult) -> None:
        s = self.summary
        if res.status == "invalid":  # a bad input line: reported, not a question attempted
            s.invalid += 1
            return
        s.attempted += 1
        s.candidates += res.candidates
        s.accepted_candidates += res.accepted
        s.sentences_rejected += len(res.rejected_sentences)
        s.generator_calls += res.generator_calls
        setattr(s, res.status, getattr(s, res.status) + 1)
        if res.status == "proved":
            s.proofs += len(res.proofs)
            s.grounded_leaves += sum(1 for p in res.proofs for n in p.leaves() if n.fact_id is not None)
            for proof in res.proofs:
                self.kept.update(n.text.lower() for n, d in proof.walk() if d > 0 and n.fact_id is None)
        if res.status == "failed":
            key = (res.reason or "unknown reason").split(":")[0][:80]
            s.failures[key] = s.failures.get(key, 0) + 1
            self.consecutive += 1
        else:
            self.consecutive = 0
