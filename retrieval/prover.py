"""Prove a hypothesis from retrieved facts: find a small premise set that the entailment scorer accepts.

The search, per hypothesis:
1. retrieve facts from the corpus store (and the microtheory store, when given; a fact found in
   both keeps its best scores), plus any extra premises the caller supplies (the question's own
   context sentences). Retrieval is hybrid: the top `k` facts by dense cosine and the top
   `k_sparse` by BM25 (retrieval.bm25), fused by reciprocal rank (RRF): a fact ranked well by
   either list comes early. Every candidate keeps its cosine (computed from the stored vector when
   only BM25 found it) and its BM25 score, so rankers can use both;
2. build candidate premise sets: the best `singles` facts alone, pairs from the best `pair_pool`
   facts and triples from the best `triple_pool`, pruned *before* any scoring by a cheap prior
   (how much of the hypothesis's content the set covers, plus its retrieval scores), so that at most
   `max_pairs` pairs and `max_triples` triples per hypothesis reach the scorer;
3. score every candidate of every hypothesis in one `score_batch` call (the cross-encoder is the
   expensive part; one batch per question keeps it busy);
4. chaining, when `max_depth > 1` and no depth-1 set passed: the best `chain_seeds` premise sets
   are extended by a second search for what they leave unexplained (the hypothesis's content words
   that no premise has, queried against BM25 and the dense index); each of the `chain_k` best new
   facts joins the seed set, and the extended sets of all hypotheses are scored in one more batch.
   The proof record keeps the search tree: `chain` names the seed set, its score, the unexplained
   words and the fact that was added;
5. with a `decomposer` (hypothesis -> lists of premise sentences, e.g. a generator) and
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
from retrieval.store.facts import normalise_text
from core.errors import InputError, StoreError

Decomposer = Callable[[str], Sequence[Sequence[str]]]


# What the prover needs of a store is the Knowledge protocol (a KnowledgeStore or in-memory knowledge).
SearchableStore = Knowledge


@dataclass(frozen=True)
class ProverConfig:
    """Search sizes. The defaults are the search `microtheory qa` proves its chosen option with; its
    grounding policy (retrieval/weights/qa_ranker, bench/train_qa_ranker.py) was chosen on
    EntailmentBank *train* questions with exactly this search: change them together."""

    k: int = 20             # facts retrieved per hypothesis and store by dense cosine
    k_sparse: int = 20      # facts retrieved per hypothesis and store by BM25 (0: dense only)
    # Fusion: 1/(rrf_k + rank) from the dense list plus w_sparse/(rrf_k + rank) from the BM25 list;
    # both chosen by gold-leaf recall@10 on 400 train trees (bench/retrieval_bench.py), never dev.
    rrf_k: float = 10.0
    w_sparse: float = 0.5
    # Singles: the shipped scorer almost never accepts one fact alone (train: best single ~0.001).
    singles: int = 1        # best facts tried alone
    pair_pool: int = 8      # best facts combined in pairs
    max_pairs: int = 2      # pairs that reach the scorer, after pruning by the prior
    triple_pool: int = 5    # best facts combined in triples
    max_triples: int = 2    # triples that reach the scorer
    max_depth: int = 2      # > 1: chain (extend failing sets by a second search); decomposer depth
    chain_seeds: int = 1    # failing premise sets extended per hypothesis
    chain_k: int = 1        # new facts tried per seed set (0: no chaining)
    node_budget: int = 60   # candidates scored per hypothesis, all depths together
    threshold: float | None = None  # None: the scorer's own threshold
    batch_size: int = 16    # premise sets per scorer batch (sorted by length: small batches pad less)

    def __post_init__(self) -> None:
        for name in ("k", "singles", "node_budget", "max_depth", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"prover setting {name} must be >= 1, got {getattr(self, name)}")
        for name in ("pair_pool", "max_pairs", "triple_pool", "max_triples", "k_sparse", "chain_seeds", "chain_k"):
            if getattr(self, name) < 0:
                raise InputError(f"prover setting {name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Candidate:
    """A retrieved fact (or a question context sentence): its cosine to the hypothesis (`score`),
    its BM25 score (0 when BM25 did not retrieve it) and its fused (RRF) rank score."""

    id: str
    text: str
    score: float
    source: str = "corpus"
    bm25: float = 0.0
    fused: float = 0.0


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
    # How a chained set was found: {"seed": fact ids, "seed_score", "unexplained": words, "added": fact id}
    chain: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"hypothesis": self.hypothesis, "fact_ids": list(self.fact_ids), "texts": list(self.texts),
                "steps": [s.to_json() for s in self.steps], "score": round(self.score, 4), "passed": self.passed,
                **({"intermediates": self.intermediates} if self.intermediates else {}),
                **({"chain": self.chain} if self.chain else {})}


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
    chain_score: float = 0.0  # best score of a chained (extended) set; 0 when none was tried
    # Every chained set scored: (index in `sets` of the seed it extends, its score), for offline replay.
    chained: tuple[tuple[int, float], ...] = ()

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
    def bm25_score(self) -> float:
        """BM25 score of the best lexical match among the retrieved facts."""
        return max((c.bm25 for c in self.candidates if c.source != "context"), default=0.0)

    @property
    def entail_score(self) -> float:
        return self.best.score if self.best is not None else 0.0

    def best_of_size(self, size: int) -> float:
        """The best depth-1 score among premise sets of `size` facts (0 when none was scored)."""
        return max((sc for st, sc in zip(self.sets, self.scores) if len(st) == size), default=0.0)


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
        self._bm25: dict[Any, Any] = {}  # id(store) -> BM25 index built here; ("facts", id(store)) -> facts
        self._fact_vecs: dict[int, tuple[dict[str, int], np.ndarray] | None] = {}  # id(store) -> (row of id, vectors)

    def over(self, store: SearchableStore) -> Prover:
        """A prover over `store` alone (one of this prover's stores) with this one's scorer, config,
        encoder and caches (keyed by store): the evidence of each store apart, without encoding twice."""
        p = Prover(store, self.scorer, None, self.config, self.decomposer, self.encoder())
        p._vectors, p._bm25, p._fact_vecs = self._vectors, self._bm25, self._fact_vecs
        return p

    def encoder(self) -> Any:
        """The encoder that queries the stores (the given one, else the corpus store's), or None."""
        return self._encoder or _store_encoder(self.corpus)

    def encode(self, texts: Sequence[str]) -> np.ndarray | None:
        """Vectors of `texts` with a small per-prover cache; None when no encoder is available."""
        enc = self.encoder()
        if enc is None:
            return None
        if len(self._vectors) > 4096:  # bounded; cleared before the lookup, never between it and its use
            self._vectors.clear()
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
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

    def _sparse_index(self, store: SearchableStore) -> Any:
        """The store's BM25 index (kept beside its FAISS index), else one built here from its facts;
        None for a store whose facts cannot be listed (then retrieval is dense only)."""
        own = getattr(store, "bm25", None)
        if own is not None and hasattr(own, "search_batch"):
            return own
        key = id(store)
        if key not in self._bm25:
            from retrieval.bm25 import BM25Index

            facts = self._facts_of(store)
            self._bm25[key] = None if facts is None else BM25Index.build((f.id, f.text) for f in facts.values())
        return self._bm25[key]

    def _facts_of(self, store: SearchableStore) -> dict[str, Any] | None:
        """id -> Fact of every fact in `store` (read once), or None when the store cannot list them."""
        key = ("facts", id(store))
        if key not in self._bm25:
            listed = getattr(store, "facts", None)  # an in-memory store may list its facts instead
            try:
                facts = list(store) if hasattr(store, "__iter__") else list(listed) if listed is not None else None
            except TypeError:
                facts = None
            self._bm25[key] = None if facts is None else {f.id: f for f in facts}
        return self._bm25[key]

    def _stored_vectors(self, store: SearchableStore) -> tuple[dict[str, int], np.ndarray] | None:
        """(row of each fact id, all stored vectors), read once; None for a store without `vectors()`."""
        key = id(store)
        if key not in self._fact_vecs:
            v = getattr(store, "vectors", None)
            vecs = v() if callable(v) else v
            facts = self._facts_of(store)
            ok = vecs is not None and facts is not None and len(facts) == len(vecs)
            # Row i of the vectors is the i-th listed fact (dicts keep the listing order).
            self._fact_vecs[key] = ({fid: i for i, fid in enumerate(facts)}, np.asarray(vecs)) if ok else None
        return self._fact_vecs[key]

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray | None:
        """Stored vectors of fact ids (corpus first, then the microtheory); a zero row for an id that
        neither store holds (a context sentence). None when the corpus keeps no vectors."""
        tables = [t for t in (self._stored_vectors(s) for s in (self.corpus, self.microtheory) if s is not None) if t]
        if not tables:
            return None
        out = np.zeros((len(ids), tables[0][1].shape[1]), dtype=np.float32)
        for n, fid in enumerate(ids):
            for rows, vecs in tables:
                if fid in rows and vecs.shape[1] == out.shape[1]:
                    out[n] = vecs[rows[fid]]
                    break
        return out

    def _hybrid(self, store: SearchableStore, texts: Sequence[str], vectors: np.ndarray | None,
                same_space: bool) -> list[dict[str, Candidate]]:
        """Dense top-k and BM25 top-k of one store, fused by reciprocal rank, per query: id -> Candidate."""
        cfg = self.config
        dense = self._search(store, texts, vectors if same_space else None)
        index = self._sparse_index(store) if cfg.k_sparse and len(store) else None
        sparse = index.search_batch(list(texts), k=cfg.k_sparse) if index is not None else [[] for _ in texts]
        stored = self._stored_vectors(store) if (same_space and vectors is not None) else None
        out = []
        for i in range(len(texts)):
            found: dict[str, Candidate] = {}
            for r, h in enumerate(dense[i]):
                found[h.fact.id] = Candidate(h.fact.id, h.fact.text, float(h.score), h.fact.source,
                                             fused=1.0 / (cfg.rrf_k + r + 1))
            for r, (fid, bm) in enumerate(sparse[i]):
                c = found.get(fid)
                if c is None:
                    f = store.get(fid) if hasattr(store, "get") else self._facts_of(store)[fid]  # type: ignore
                    cos = float(vectors[i] @ stored[1][stored[0][fid]]) if stored and fid in stored[0] else 0.0
                    c = Candidate(fid, f.text, cos, f.source)
                found[fid] = Candidate(c.id, c.text, c.score, c.source, bm,
                                       c.fused + cfg.w_sparse / (cfg.rrf_k + r + 1))
            out.append(found)
        return out

    def retrieve(self, hypotheses: Sequence[str]) -> list[list[Candidate]]:
        """Fused dense + BM25 hits per hypothesis from the corpus and the microtheory, best fused rank
        first. A microtheory sentence the corpus also holds (normalised text) is the corpus's: its
        microtheory hit is dropped, so the microtheory adds only what the corpus lacks and the corpus's
        own ranking is left as it was (a microtheory distilled from trees whose leaves are corpus
        sentences holds many, under other ids)."""
        self._check_stores()
        if not hypotheses:
            return []
        enc = self.encoder()
        # Encode once for both stores when they share an encoder (the usual case).
        vectors = self.encode(list(hypotheses))
        per_store = [self._hybrid(self.corpus, hypotheses, vectors, _store_encoder(self.corpus) is not None)]
        if self.microtheory is not None:
            same = (_store_encoder(self.microtheory) is not None and enc is not None
                    and getattr(_store_encoder(self.microtheory), "name", None) == getattr(enc, "name", None))
            known = self._corpus_texts()
            per_store.append([{k: c for k, c in found.items() if normalise_text(c.text) not in known}
                              for found in self._hybrid(self.microtheory, hypotheses, vectors, same)])
        out = []
        for i in range(len(hypotheses)):
            merged: dict[str, Candidate] = {}
            for found in per_store:
                merged.update({k: c for k, c in found[i].items() if k not in merged})
            out.append(sorted(merged.values(), key=lambda c: (-c.fused, -c.score)))
        return out

    def _corpus_texts(self) -> frozenset[str]:
        """Normalised texts of every corpus fact, read once (empty when the corpus cannot list them)."""
        key = ("texts", id(self.corpus))
        if key not in self._bm25:
            facts = self._facts_of(self.corpus)
            self._bm25[key] = frozenset(normalise_text(f.text) for f in facts.values()) if facts else frozenset()
        return self._bm25[key]

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

    def gather(self, hypotheses: Sequence[str],
               extra: Sequence[Sequence[Candidate]] | None = None) -> list[list[Candidate]]:
        """The candidates `prove_many` works from: retrieved facts plus the caller's extra premises."""
        if any(not h or not h.strip() for h in hypotheses):
            raise InputError("a hypothesis is empty")
        retrieved = self.retrieve(hypotheses)
        if extra is not None:
            # The question's own context sentences rank as if first in one list: they are about this question.
            top = 1.0 / (self.config.rrf_k + 1)
            retrieved = [sorted([*r, *(Candidate(c.id, c.text, c.score, c.source, c.bm25, max(c.fused, top))
                                      for c in e)], key=lambda c: (-c.fused, -c.score))
                         for r, e in zip(retrieved, extra)]
        return retrieved

    def prove_many(self, hypotheses: Sequence[str], extra: Sequence[Sequence[Candidate]] | None = None,
                   gathered: Sequence[Sequence[Candidate]] | None = None) -> list[Evidence]:
        """Evidence for each hypothesis; all depth-1 candidates are scored in one batch, the chained
        extensions of the sets that failed in one more. `gathered`: candidates from an earlier
        `gather` call for the same hypotheses (then nothing is retrieved again)."""
        if gathered is not None and any(not h or not h.strip() for h in hypotheses):
            raise InputError("a hypothesis is empty")
        retrieved = [list(g) for g in gathered] if gathered is not None else self.gather(hypotheses, extra)
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
            out.append(Evidence(h, tuple(cands), best, len(ss), tuple(tuple(cands[i].id for i in s) for s in ss),
                                tuple(float(x) for x in sc)))
        if self.config.max_depth > 1 and self.config.chain_seeds and self.config.chain_k:
            out = self._chain(out)
        if self.decomposer is not None and self.config.max_depth > 1:
            out = [self._deeper(ev) if ev.proof is None else ev for ev in out]
        return out

    def _chain_plans(self, evs: Sequence[Evidence]) -> list[tuple[int, tuple[str, ...], float, list[str], str]]:
        """(evidence index, seed fact ids, seed score, unexplained words, residual query) per seed to extend."""
        plans = []
        for n, ev in enumerate(evs):
            if ev.proof is not None or not ev.sets:
                continue
            text_of = {c.id: c.text for c in ev.candidates}
            for j in np.argsort(-np.asarray(ev.scores), kind="stable")[:self.config.chain_seeds]:
                seed = ev.sets[int(j)]
                covered = set().union(*(content_words(text_of[i]) for i in seed))
                missing = sorted(content_words(ev.hypothesis) - covered)
                if missing:
                    plans.append((n, int(j), float(ev.scores[int(j)]), missing, " ".join(missing)))
        return plans

    def _chain(self, evs: list[Evidence]) -> list[Evidence]:
        """Extend the best failing sets with facts found for what they leave unexplained (one batch)."""
        plans = self._chain_plans(evs)
        if not plans:
            return evs
        found = self.retrieve([q for *_, q in plans])
        items, meta = [], []
        for (n, j, seed_score, missing, _), cands in zip(plans, found):
            seed = evs[n].sets[j]
            text_of = {c.id: c.text for c in evs[n].candidates}
            new = [c for c in cands if c.id not in seed and c.source != "context"][:self.config.chain_k]
            for c in new:
                items.append(([text_of[i] for i in seed] + [c.text], evs[n].hypothesis))
                meta.append((n, j, seed_score, missing, c))
        if not items:
            return evs
        scores = np.asarray(self.scorer.score_batch(items, batch_size=self.config.batch_size), dtype=np.float64)
        out = list(evs)
        for (n, j, seed_score, missing, c), sc, (texts, h) in zip(meta, scores, items):
            ev = out[n]
            seed = ev.sets[j]
            ids = (*seed, c.id)
            best = ev.best
            if best is None or float(sc) > best.score:
                chain = {"seed": list(seed), "seed_score": round(seed_score, 4), "unexplained": missing, "added": c.id}
                best = FoundProof(h, ids, tuple(texts), (ProofStep(ids, "hypothesis", float(sc)),), float(sc),
                                  bool(sc >= self.threshold), chain=chain)
            # The added fact stays out of `candidates`: its cosine was taken against the residual query.
            out[n] = Evidence(ev.hypothesis, ev.candidates, best, ev.scored + 1, ev.sets, ev.scores,
                              max(ev.chain_score, float(sc)), (*ev.chained, (j, float(sc))))
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
        return Evidence(ev.hypothesis, ev.candidates, best, used, ev.sets, ev.scores, ev.chain_score, ev.chained)
