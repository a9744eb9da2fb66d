"""Prove a hypothesis from retrieved facts: find a small premise set that the entailment scorer accepts.

The search, per hypothesis:
1. retrieve the top `k` facts from the corpus store (and the microtheory store, when given; a fact
   found in both keeps its best retrieval score), plus any extra premises the caller supplies (the
   question's own context sentences);
2. build candidate premise sets: the best `singles` facts alone, pairs from the best `pair_pool`
   facts and triples from the best `triple_pool`, pruned *before* any scoring by a cheap prior
   (how much of the hypothesis's content the set covers, plus its retrieval scores), so that at most
   `max_pairs` pairs and `max_triples` triples per hypothesis reach the scorer;
3. score every candidate of every hypothesis in one `score_batch` call (the cross-encoder is the
   expensive part; one batch per question keeps it busy);
4. with a `decomposer` (hypothesis -> lists of premise sentences, e.g. a generator) and
   `max_depth > 1`, a decomposition whose step passes is accepted once each of its premises is in
   turn proved from retrieved facts; the node budget bounds how many candidates one hypothesis may
   have scored in total.

A step passes when its score reaches the threshold; a proof's score is its weakest step. Every
hypothesis gets its best-scored candidate back even when nothing passes, so that callers can still
rank options that have no proof.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from retrieval.entail import EntailmentScorer, content_words
from retrieval.knowledge import Knowledge
from core.errors import InputError, StoreError

Decomposer = Callable[[str], Sequence[Sequence[str]]]


# What the prover needs of a store is the Knowledge protocol (a KnowledgeStore or in-memory knowledge).
SearchableStore = Knowledge


@dataclass(frozen=True)
class ProverConfig:
    """Search sizes. The defaults were tuned on EntailmentBank *train* questions (bench/qa_eval.py --tune)."""

    k: int = 20             # facts retrieved per hypothesis and store
    singles: int = 5        # best facts tried alone
    pair_pool: int = 10     # best facts combined in pairs
    max_pairs: int = 12     # pairs that reach the scorer, after pruning by the prior
    triple_pool: int = 6    # best facts combined in triples
    max_triples: int = 4    # triples that reach the scorer
    max_depth: int = 1      # > 1 only matters with a decomposer
    node_budget: int = 60   # candidates scored per hypothesis, all depths together
    threshold: float | None = None  # None: the scorer's own threshold
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("k", "singles", "node_budget", "max_depth", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"prover setting {name} must be >= 1, got {getattr(self, name)}")
        for name in ("pair_pool", "max_pairs", "triple_pool", "max_triples"):
            if getattr(self, name) < 0:
                raise InputError(f"prover setting {name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Candidate:
    """A retrieved fact (or a question context sentence) with its best retrieval score."""

    id: str
    text: str
    score: float
    source: str = "corpus"


@dataclass(frozen=True)
class ProofStep:
    """`premises` (fact ids or intermediate ids) entail `conclusion` with probability `score`."""

    premises: tuple[str, ...]
    conclusion: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"premises": list(self.premises), "conclusion": self.conclusion, "score": round(self.score, 4)}


@dataclass(frozen=True)
class FoundProof:
    """A premise set for a hypothesis: the leaf facts, the steps, and the weakest step's score.

    `passed` says whether every step reached the threshold (then it is a proof; otherwise it is the
    best attempt, kept for ranking).
    """

    hypothesis: str
    fact_ids: tuple[str, ...]
    texts: tuple[str, ...]
    steps: tuple[ProofStep, ...]
    score: float
    passed: bool
    intermediates: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"hypothesis": self.hypothesis, "fact_ids": list(self.fact_ids), "texts": list(self.texts),
                "steps": [s.to_json() for s in self.steps], "score": round(self.score, 4), "passed": self.passed,
                **({"intermediates": self.intermediates} if self.intermediates else {})}


@dataclass(frozen=True)
class Evidence:
    """Everything the prover found for one hypothesis."""

    hypothesis: str
    candidates: tuple[Candidate, ...]  # retrieved facts, best first
    best: FoundProof | None            # the best-scored premise set (a proof when best.passed)
    scored: int                        # candidates the scorer saw (the node count)
    # Every depth-1 premise set that was scored (fact ids, in search order) and its score: for
    # diagnostics and for tuning search sizes offline without scoring again.
    sets: tuple[tuple[str, ...], ...] = ()
    scores: tuple[float, ...] = ()

    @property
    def proof(self) -> FoundProof | None:
        return self.best if self.best is not None and self.best.passed else None

    @property
    def retrieval_score(self) -> float:
        """Cosine of the best retrieved fact (what the retrieval-only baseline ranks by)."""
        return max((c.score for c in self.candidates if c.source != "context"), default=0.0)

    @property
    def retrieval_score3(self) -> float:
        """Mean cosine of the three best retrieved facts: steadier evidence than the single best."""
        top = sorted((c.score for c in self.candidates if c.source != "context"), reverse=True)[:3]
        return float(np.mean(top)) if top else 0.0

    @property
    def entail_score(self) -> float:
        return self.best.score if self.best is not None else 0.0


def _store_encoder(store: Any) -> Any:
    enc = getattr(store, "encoder", None)
    return enc if hasattr(enc, "encode") else None


class Prover:
    """Backward search for small premise sets over one or two knowledge stores.

    Construction is cheap; the scorer and the stores' encoder load on first use.
    """

    def __init__(self, corpus: SearchableStore, scorer: EntailmentScorer, microtheory: SearchableStore | None = None,
                 config: ProverConfig | None = None, decomposer: Decomposer | None = None, encoder: Any = None):
        if corpus is None:
            raise InputError("the prover needs a corpus store")
        self.corpus = corpus
        self.microtheory = microtheory
        self.scorer = scorer
        self.config = config or ProverConfig()
        self.decomposer = decomposer
        self._encoder = encoder
        self._checked = False
        self._vectors: dict[str, np.ndarray] = {}  # text -> vector: options' hypotheses and context repeat

    def encoder(self) -> Any:
        """The encoder that queries the stores (the given one, else the corpus store's), or None."""
        return self._encoder or _store_encoder(self.corpus)

    def encode(self, texts: Sequence[str]) -> np.ndarray | None:
        """Vectors of `texts` with a small per-prover cache; None when no encoder is available."""
        enc = self.encoder()
        if enc is None:
            return None
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
            if len(self._vectors) > 4096:
                self._vectors.clear()
            self._vectors.update(zip(todo, enc.encode(todo)))
        return np.stack([self._vectors[t] for t in texts]) if texts else None

    @property
    def threshold(self) -> float:
        return float(self.config.threshold if self.config.threshold is not None else self.scorer.threshold)

    def _check_stores(self) -> None:
        if self._checked:
            return
        if len(self.corpus) == 0 and (self.microtheory is None or len(self.microtheory) == 0):
            raise StoreError("the corpus store is empty: add facts first (microtheory store add ...)")
        self._checked = True

    # -- retrieval -----------------------------------------------------------------------------

    def _search(self, store: SearchableStore, texts: Sequence[str], vectors: np.ndarray | None) -> list[list[Any]]:
        if len(store) == 0:
            return [[] for _ in texts]
        k = self.config.k
        if vectors is not None and _store_encoder(store) is not None:
            return store.search_vectors(vectors, k=k)
        return store.search_batch(list(texts), k=k)

    def retrieve(self, hypotheses: Sequence[str]) -> list[list[Candidate]]:
        """Top facts per hypothesis from the corpus and the microtheory, merged by id, best first."""
        self._check_stores()
        if not hypotheses:
            return []
        enc = self.encoder()
        # Encode once for both stores when they share an encoder (the usual case).
        vectors = self.encode(list(hypotheses))
        per_store = [self._search(self.corpus, hypotheses, vectors)]
        if self.microtheory is not None:
            same = (_store_encoder(self.microtheory) is not None and enc is not None
                    and getattr(_store_encoder(self.microtheory), "name", None) == getattr(enc, "name", None))
            per_store.append(self._search(self.microtheory, hypotheses, vectors if same else None))
        out = []
        for i in range(len(hypotheses)):
            merged: dict[str, Candidate] = {}
            for hits in per_store:
                for h in hits[i]:
                    f = h.fact
                    prev = merged.get(f.id)
                    if prev is None or h.score > prev.score:
                        merged[f.id] = Candidate(f.id, f.text, float(h.score), f.source)
            out.append(sorted(merged.values(), key=lambda c: -c.score))
        return out

    # -- candidate premise sets --------------------------------------------------------------

    def premise_sets(self, hypothesis: str, cands: Sequence[Candidate]) -> list[tuple[int, ...]]:
        """Index tuples into `cands` to score: singles, then pruned pairs and triples (no scoring here)."""
        cfg = self.config
        hyp = content_words(hypothesis) or {""}
        words = [content_words(c.text) for c in cands]

        def prior(idx: tuple[int, ...]) -> float:
            covered = set().union(*(words[i] for i in idx)) & hyp
            # Each extra premise must add coverage, or the set is only a padded single.
            gain = len(covered) - max(len(words[i] & hyp) for i in idx)
            return len(covered) / len(hyp) + 0.5 * float(np.mean([cands[i].score for i in idx])) + (
                0.0 if gain > 0 else -1.0)

        sets: list[tuple[int, ...]] = [(i,) for i in range(min(cfg.singles, len(cands)))]
        pairs = list(itertools.combinations(range(min(cfg.pair_pool, len(cands))), 2))
        pairs.sort(key=lambda p: -prior(p))
        sets += pairs[:cfg.max_pairs]
        if cfg.max_triples and cfg.triple_pool >= 3:
            triples = list(itertools.combinations(range(min(cfg.triple_pool, len(cands))), 3))
            triples.sort(key=lambda t: -prior(t))
            sets += triples[:cfg.max_triples]
        return sets[:cfg.node_budget]

    # -- search ------------------------------------------------------------------------------

    def prove_many(self, hypotheses: Sequence[str],
                   extra: Sequence[Sequence[Candidate]] | None = None) -> list[Evidence]:
        """Evidence for each hypothesis; all depth-1 candidates are scored in one batch."""
        if any(not h or not h.strip() for h in hypotheses):
            raise InputError("a hypothesis is empty")
        retrieved = self.retrieve(hypotheses)
        if extra is not None:
            retrieved = [sorted([*r, *e], key=lambda c: -c.score) for r, e in zip(retrieved, extra)]
        plans = [self.premise_sets(h, c) for h, c in zip(hypotheses, retrieved)]
        items = [([c[i].text for i in s], h) for h, c, ss in zip(hypotheses, retrieved, plans) for s in ss]
        scores = (np.asarray(self.scorer.score_batch(items, batch_size=self.config.batch_size), dtype=np.float64)
                  if items else np.zeros(0))
        out, pos = [], 0
        thr = self.threshold
        for h, cands, ss in zip(hypotheses, retrieved, plans):
            sc = scores[pos:pos + len(ss)]
            pos += len(ss)
            best: FoundProof | None = None
            if len(ss):
                j = int(np.argmax(sc))
                chosen = [cands[i] for i in ss[j]]
                best = FoundProof(h, tuple(c.id for c in chosen), tuple(c.text for c in chosen),
                                  (ProofStep(tuple(c.id for c in chosen), "hypothesis", float(sc[j])),),
                                  float(sc[j]), bool(sc[j] >= thr))
            ev = Evidence(h, tuple(cands), best, len(ss), tuple(tuple(cands[i].id for i in s) for s in ss),
                          tuple(float(x) for x in sc))
            if (best is None or not best.passed) and self.decomposer is not None and self.config.max_depth > 1:
                ev = self._deeper(ev)
            out.append(ev)
        return out

    def prove(self, hypothesis: str) -> Evidence:
        """Evidence for one hypothesis (see `prove_many`)."""
        return self.prove_many([hypothesis])[0]

    def _deeper(self, ev: Evidence) -> Evidence:
        """Try the decomposer's premise lists: the step must pass, then each premise is proved at depth-1."""
        budget = self.config.node_budget - ev.scored
        best = ev.best
        used = ev.scored
        assert self.decomposer is not None
        for n_dec, premises in enumerate(self.decomposer(ev.hypothesis)):
            premises = [p for p in premises if p and p.strip()]
            if not premises or budget <= 0:
                continue
            step_score = float(self.scorer.score(premises, ev.hypothesis))
            budget -= 1
            used += 1
            if step_score < self.threshold:
                continue
            sub = Prover(self.corpus, self.scorer, self.microtheory,
                         ProverConfig(**{**self.config.__dict__, "max_depth": self.config.max_depth - 1,
                                         "node_budget": max(1, budget // len(premises))}),
                         self.decomposer, self._encoder).prove_many(premises)
            used += sum(s.scored for s in sub)
            budget -= sum(s.scored for s in sub)
            if any(s.proof is None for s in sub):
                continue
            ints = {f"int{n_dec + 1}.{i + 1}": p for i, p in enumerate(premises)}
            steps: list[ProofStep] = []
            ids: list[str] = []
            texts: list[str] = []
            for (iid, _), s in zip(ints.items(), sub):
                assert s.proof is not None
                steps += [ProofStep(st.premises, iid if st.conclusion == "hypothesis" else st.conclusion, st.score)
                          for st in s.proof.steps]
                for fid, t in zip(s.proof.fact_ids, s.proof.texts):
                    if fid not in ids:
                        ids.append(fid)
                        texts.append(t)
            steps.append(ProofStep(tuple(ints), "hypothesis", step_score))
            score = min(st.score for st in steps)
            cand = FoundProof(ev.hypothesis, tuple(ids), tuple(texts), tuple(steps), score, True, ints)
            if best is None or not best.passed or cand.score > best.score:
                best = cand
        return Evidence(ev.hypothesis, ev.candidates, best, used, ev.sets, ev.scores)
