"""Canonicalisation: merge facts that say the same thing, and rewrite proofs to one representative.

Candidates are pairs of facts whose embeddings are neighbours above a cosine threshold, plus pairs
with identical lemma keys (spaCy lemmas of the content words, in order). A candidate pair is merged
only when the entailment scorer says each entails the other (both scores >= the scorer's threshold).
Merged groups are the connected components of confirmed pairs; the representative is a free
(corpus) fact if the group has one (so that proofs through it stay free), else the fact used by the
most proofs, then the shorter text, then the smaller id.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.types import Fact, Proof

_PUNCT = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class CanonicalResult:
    """Rewritten proofs, the merge map (merged id -> representative id) and counts."""

    proofs: list[Proof]
    merge_map: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)


def lemma_keys(texts: Sequence[str], nlp: Any | None = None) -> list[str]:
    """A normalised key per text: lemmas of non-stop, non-punctuation tokens, in order.

    With `nlp=None` the packaged spaCy pipeline loads (lazily, once); pass `nlp=False`-like callables
    for tests: any callable text -> key is accepted via `keyfn` in `canonicalise`."""
    if nlp is None:
        nlp = _spacy()
    keys = []
    for doc in nlp.pipe(texts, batch_size=256):
        toks = [t.lemma_.lower() for t in doc if not (t.is_punct or t.is_space or t.is_stop)]
        keys.append(" ".join(toks))
    return keys


def _spacy() -> Any:
    from core.models import load_spacy

    return load_spacy(disable=("ner", "parser"))


def simple_key(text: str) -> str:
    """A model-free key (lowercase words without punctuation): the fallback and the test double."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def neighbour_pairs(vectors: np.ndarray, threshold: float, k: int = 10, block: int = 2048) -> set[tuple[int, int]]:
    """Pairs (i < j) whose cosine similarity is >= threshold among each row's k nearest (rows L2-normalised)."""
    n = len(vectors)
    pairs: set[tuple[int, int]] = set()
    if n < 2:
        return pairs
    kk = min(k + 1, n)
    for s in range(0, n, block):
        sims = vectors[s:s + block] @ vectors.T
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        for r in range(len(top)):
            i = s + r
            for j in top[r]:
                j = int(j)
                if j != i and sims[r, j] >= threshold:
                    pairs.add((min(i, j), max(i, j)))
    return pairs


def canonicalise(facts: Sequence[Fact], proofs: Sequence[Proof], scorer: Any, encoder: Any | None = None,
                 sim_threshold: float = 0.9, k: int = 10, keyfn: Callable[[Sequence[str]], list[str]] | None = None,
                 free: Iterable[str] = (), batch_size: int = 64) -> CanonicalResult:
    """Merge mutually entailing facts among those the proofs use; return rewritten proofs and the map.

    `encoder` (retrieval.encoder.Encoder) finds embedding neighbours; None skips that source of
    candidates. `keyfn` maps texts to lemma keys (default: spaCy lemmas). `scorer` confirms each
    candidate in both directions.
    """
    used = list(dict.fromkeys(leaf for p in proofs for leaf in p.leaves))
    by_id = {f.id: f for f in facts}
    items = [by_id[i] for i in used if i in by_id]
    texts = [f.text for f in items]
    free_set = set(free) | {f.id for f in items if f.source == "corpus"}
    cands: set[tuple[int, int]] = set()
    n_emb = n_key = 0
    if encoder is not None and len(items) > 1:
        vecs = np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)
        emb = neighbour_pairs(vecs, sim_threshold, k=k)
        n_emb = len(emb)
        cands |= emb
    keys = (keyfn or lemma_keys)(texts) if items else []
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                pair = (members[a], members[b])
                n_key += pair not in cands
                cands.add(pair)
    ordered = sorted(cands)
    batch = [([texts[i]], texts[j]) for i, j in ordered] + [([texts[j]], texts[i]) for i, j in ordered]
    scores = np.asarray(scorer.score_batch(batch), dtype=np.float64) if batch else np.zeros(0)
    thr = float(getattr(scorer, "threshold", 0.5))
    m = len(ordered)
    parent = list(range(len(items)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    confirmed = 0
    for n, (i, j) in enumerate(ordered):
        if scores[n] >= thr and scores[m + n] >= thr:
            confirmed += 1
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[ri] = rj
    uses: dict[str, int] = {}
    for p in proofs:
        for leaf in set(p.leaves):
            uses[leaf] = uses.get(leaf, 0) + 1
    clusters: dict[int, list[int]] = {}
    for i in range(len(items)):
        clusters.setdefault(find(i), []).append(i)
    merge_map: dict[str, str] = {}
    for members in clusters.values():
        if len(members) < 2:
            continue
        rep = min(members, key=lambda i: (items[i].id not in free_set, -uses.get(items[i].id, 0),
                                          len(texts[i]), items[i].id))
        for i in members:
            if i != rep:
                merge_map[items[i].id] = items[rep].id
    new_proofs = [replace(p, leaves=tuple(dict.fromkeys(merge_map.get(x, x) for x in p.leaves)))
                  if any(x in merge_map for x in p.leaves) else p for p in proofs]
    report = {"facts_considered": len(items), "candidates": m, "candidates_embedding": n_emb,
              "candidates_lemma_only": n_key, "confirmed_pairs": confirmed,
              "groups_merged": sum(1 for c in clusters.values() if len(c) > 1), "facts_merged": len(merge_map),
              "proofs_rewritten": sum(1 for a, b in zip(proofs, new_proofs) if a is not b),
              "sim_threshold": sim_threshold, "scorer_threshold": thr}
    return CanonicalResult(new_proofs, merge_map, report)
