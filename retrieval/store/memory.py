"""Facts + vectors + proofs in memory: a searchable knowledge with no folder behind it.

`MemoryKnowledge` is the in-memory `retrieval.knowledge.Knowledge` (a microtheory, a facts file)
and the engine under `KnowledgeStore`, which adds only persistence and the writer lock. Both
deduplicate the same way (`retrieval.store.facts`) and search the same FAISS index
(`retrieval.store.index`), so one contract test suite covers both.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from core.errors import EncoderMismatchError, StoreError
from core.types import FACT_SOURCES, Fact, Proof
from retrieval.encoder import Encoder, as_encoder
from retrieval.store.facts import AddResult, FactTable, Hit
from retrieval.store.index import VectorIndex, check_mode, wanted_type

_MISSING: Any = object()


class MemoryKnowledge:
    """Facts searchable by meaning, held in memory (exact FAISS index unless told otherwise).

    `MemoryKnowledge(facts, encoder)` encodes the facts at once; duplicates (same normalised text)
    merge their provenance, as in a store.
    """

    def __init__(self, facts: Iterable[Fact] = (), encoder: Encoder | str | None = None,
                 proofs: Iterable[Proof] = (), index: str = "flat"):
        self.encoder: Encoder = as_encoder(encoder)
        self._table = FactTable()
        self._vindex: VectorIndex | None = None
        self._mode = check_mode(index)
        self._dim_value: int | None = None
        self._proofs: dict[tuple[str, str], Proof] = {}
        self._bm25: Any = None  # retrieval.bm25.BM25Index, built on first use, then kept in step
        self._dirty = False
        self.label = "in-memory knowledge"  # how messages name it
        facts = list(facts)
        if facts:
            self.add(facts)
        proofs = list(proofs)
        if proofs:
            self.add_proofs(proofs)
        self._dirty = False

    # ----------------------------------------------------------------- facts

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[Fact]:
        return iter(list(self._table.facts))

    def __contains__(self, fact_id: object) -> bool:
        return fact_id in self._table.row_of_id

    def get(self, fact_id: str, default: Any = _MISSING) -> Fact:
        """The fact with this id; KeyError if absent (unless a default is given)."""
        row = self._table.row_of_id.get(fact_id)
        if row is None:
            if default is not _MISSING:
                return default  # type: ignore[no-any-return]
            raise KeyError(f"no fact with id {fact_id!r} in {self.label}")
        return self._table.facts[row]

    def find_text(self, text: str) -> Fact | None:
        """The fact whose normalised text equals that of `text`, if any."""
        return self._table.find_text(text)

    def _require_writable(self) -> None:
        """Memory is always writable; a store opened read-only overrides this."""

    def add(self, facts: Iterable[Fact], batch_size: int = 256, progress: bool = False) -> AddResult:
        """Add facts, encoding the new texts in batches (see `FactTable.plan_add` for ids and merging).
        Nothing changes if validation or encoding fails."""
        self._require_writable()
        plan = self._table.plan_add(facts)
        vectors = self._encode_chunked([f.text for f in plan.new], batch_size, progress) if plan.new else None
        # Below only memory changes and nothing can fail half-way on bad input.
        if self._table.apply(plan):
            self._dirty = True
        if vectors is not None:
            self._ensure_index().add(vectors)
        if self._bm25 is not None and plan.new:
            self._bm25.add((f.id, f.text) for f in plan.new)
        return AddResult(added=len(plan.new), merged=plan.merged, ids=plan.ids)

    def remove(self, ids: Iterable[str]) -> int:
        """Remove facts by id (unknown ids are ignored); returns how many were removed. Proofs that
        used a removed fact as a leaf are dropped too: they no longer prove anything from here."""
        self._require_writable()
        rows = {self._table.row_of_id[i] for i in ids if i in self._table.row_of_id}
        if not rows:
            return 0
        removed_ids = {self._table.facts[r].id for r in rows}
        keep = np.array([i for i in range(len(self._table)) if i not in rows], dtype=np.int64)
        vectors = self.vectors()[keep] if len(keep) else np.zeros((0, self._dim()), dtype=np.float32)
        self._table.keep_rows(keep)
        self._ensure_index().rebuild(np.ascontiguousarray(vectors))
        self._proofs = {k: p for k, p in self._proofs.items() if not removed_ids.intersection(p.leaves)}
        if self._bm25 is not None:
            self._bm25.remove(removed_ids)
        self._dirty = True
        return len(rows)

    # ----------------------------------------------------------------- vectors and the index

    def _dim(self) -> int:
        if self._dim_value is None:
            self._dim_value = int(self.encoder.dim)
        return self._dim_value

    def _ensure_index(self) -> VectorIndex:
        if self._vindex is None:
            self._vindex = VectorIndex(self._dim(), self._mode)
        return self._vindex

    @property
    def _index(self) -> Any:
        """The FAISS index itself (benchmarks tune and time it directly)."""
        return self._ensure_index().raw

    @property
    def index_type(self) -> str:
        return self._vindex.type if self._vindex is not None else wanted_type(self._mode, len(self))

    @property
    def bm25(self) -> Any:
        """The BM25 (lexical) index over the facts, beside the vector index: built on first use, then
        updated by add/remove; a store saves it in `bm25/` (retrieval.bm25)."""
        if self._bm25 is None:
            from retrieval.bm25 import BM25Index

            self._bm25 = BM25Index.build((f.id, f.text) for f in self._table.facts)
        return self._bm25

    def vectors(self) -> np.ndarray:
        """All vectors, row i = fact i (read back from the index, never re-encoded)."""
        return self._ensure_index().vectors()

    def reindex(self, index: str | None = None) -> None:
        """Rebuild the index (optionally switching type: "auto", "flat", "hnsw") without re-encoding."""
        self._require_writable()
        if index is not None:
            self._mode = check_mode(index)
        vindex = self._ensure_index()
        vindex.rebuild(vindex.vectors(), mode=self._mode)
        self._dirty = True

    def _encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        vecs = np.ascontiguousarray(self.encoder.encode(texts, batch_size=batch_size), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise EncoderMismatchError(f"encoder {self.encoder.name!r} returned shape {vecs.shape} "
                                       f"for {len(texts)} texts")
        if self._dim_value is not None and vecs.shape[1] != self._dim_value:
            raise EncoderMismatchError(f"{self.label} holds {self._dim_value}-d vectors but encoder "
                                       f"{self.encoder.name!r} makes {vecs.shape[1]}-d ones")
        return vecs

    def _encode_chunked(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        chunk = max(batch_size, 1) * 8
        if len(texts) <= chunk or not progress:
            return self._encode(texts, batch_size=batch_size)
        from tqdm import tqdm

        parts = []
        with tqdm(total=len(texts), desc="encoding", unit="fact", file=sys.stderr) as bar:
            for i in range(0, len(texts), chunk):
                parts.append(self._encode(texts[i:i + chunk], batch_size=batch_size))
                bar.update(len(parts[-1]))
        return np.concatenate(parts)

    # ----------------------------------------------------------------- search

    def search(self, query: str, k: int = 10, source: str | None = None) -> list[Hit]:
        """The k facts closest to `query` (cosine), best first; only facts of `source` if given."""
        if not isinstance(query, str):
            raise TypeError("search() takes one query string; use search_batch() for several")
        return self.search_batch([query], k=k, source=source)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, source: str | None = None,
                     batch_size: int = 64) -> list[list[Hit]]:
        """`search` for several queries, encoded together."""
        if isinstance(queries, str):
            raise TypeError("search_batch() takes a sequence of query strings")
        if not len(queries):
            return []
        return self.search_vectors(self._encode(list(queries), batch_size=batch_size), k=k, source=source)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, source: str | None = None) -> list[list[Hit]]:
        """Search with already-encoded (normalised) query vectors of this knowledge's dimension."""
        vectors = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        dim = self._dim_value if self._dim_value is not None else (self._vindex.dim if self._vindex else None)
        if vectors.ndim != 2 or (dim is not None and vectors.shape[1] != dim):
            raise EncoderMismatchError(f"query vectors have shape {vectors.shape}; {self.label} holds "
                                       f"{dim}-d vectors from encoder {self.encoder.name!r}")
        if k < 1:
            raise StoreError(f"k must be at least 1, got {k}")
        if source is not None and source not in FACT_SOURCES:
            raise StoreError(f"unknown source {source!r}; expected one of {', '.join(FACT_SOURCES)}")
        empty: list[list[Hit]] = [[] for _ in range(len(vectors))]
        if len(self) == 0 or len(vectors) == 0:
            return empty
        subset = None
        limit = len(self)
        if source is not None:
            rows = self._table.rows_of_source(source)
            if len(rows) == 0:
                return empty
            subset, limit = (source, rows), len(rows)
        scores, rows_found = self._ensure_index().search(vectors, min(k, limit), subset)
        facts = self._table.facts
        return [[Hit(facts[int(r)], float(s)) for s, r in zip(srow, rrow) if r >= 0]
                for srow, rrow in zip(scores, rows_found)]

    # ----------------------------------------------------------------- proofs

    def add_proofs(self, proofs: Iterable[Proof]) -> int:
        """Keep proofs (keyed by question_id + proof_id; a repeat replaces). Leaves must be fact ids
        held here (those AddResult.ids returned). Returns how many records were new or changed."""
        self._require_writable()
        staged: dict[tuple[str, str], Proof] = {}
        for p in proofs:
            missing = [leaf for leaf in p.leaves if leaf not in self._table.row_of_id]
            if missing:
                raise StoreError(f"proof {p.proof_id!r} of question {p.question_id!r}: leaves {missing[:3]} "
                                 f"are not facts in {self.label}; add the facts first and use the stored ids")
            staged[(p.question_id, p.proof_id)] = p
        changed = sum(1 for key, p in staged.items() if self._proofs.get(key) != p)
        self._proofs.update(staged)
        if changed:
            self._dirty = True
        return changed

    def proofs(self) -> list[Proof]:
        return list(self._proofs.values())

    def __repr__(self) -> str:
        return f"MemoryKnowledge(facts={len(self)}, encoder={self.encoder.name!r}, index={self.index_type!r})"
