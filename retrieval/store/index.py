"""Index policy: which FAISS index holds the vectors (exact or HNSW), switching, reindexing, search.

Both index types keep the normalised vectors themselves, so re-indexing, switching type or removing
facts never re-encodes a text: the vectors are read back with `reconstruct_n`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import StoreError

# Exact search costs O(n) per query; at 50,000 x 384 floats that is ~1-2 ms on one core, beyond it
# HNSW keeps queries sub-millisecond at a measured recall@10 (bench/results/store_bench.md).
HNSW_THRESHOLD = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
INDEX_MODES = ("auto", "flat", "hnsw")


def faiss_module() -> Any:
    import faiss

    return faiss


def check_mode(mode: str) -> str:
    if mode not in INDEX_MODES:
        raise StoreError(f"unknown index type {mode!r}; choose one of {', '.join(INDEX_MODES)}")
    return mode


def wanted_type(mode: str, n: int) -> str:
    """The index type for `n` facts under `mode` ("auto": exact below HNSW_THRESHOLD, HNSW above)."""
    if mode == "auto":
        return "hnsw" if n >= HNSW_THRESHOLD else "flat"
    return mode


def index_meta(kind: str) -> dict[str, Any]:
    """The manifest's description of an index of this type."""
    if kind == "hnsw":
        return {"type": "hnsw", "factory": f"HNSW{HNSW_M},Flat", "M": HNSW_M,
                "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH,
                "threshold": HNSW_THRESHOLD}
    return {"type": "flat", "factory": "Flat", "threshold": HNSW_THRESHOLD}


def _new_faiss_index(kind: str, dim: int) -> Any:
    faiss = faiss_module()
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    return faiss.IndexFlatIP(dim)


def type_of(index: Any) -> str:
    return "hnsw" if hasattr(index, "hnsw") else "flat"


class VectorIndex:
    """A FAISS inner-product index over normalised vectors that follows an index mode.

    `mode` "auto" switches between exact and HNSW as the count crosses HNSW_THRESHOLD; "flat" and
    "hnsw" fix the type. `raw` is the FAISS index itself (what persistence writes).
    """

    def __init__(self, dim: int, mode: str = "auto", raw: Any = None):
        self.dim = int(dim)
        self.mode = check_mode(mode)
        self.raw = raw if raw is not None else _new_faiss_index(wanted_type(self.mode, 0), self.dim)
        self._selectors: dict[str, tuple[Any, np.ndarray]] = {}

    @property
    def type(self) -> str:
        return type_of(self.raw)

    @property
    def ntotal(self) -> int:
        return int(self.raw.ntotal)

    def vectors(self) -> np.ndarray:
        """All stored vectors, row i = fact i (read back from the index, never re-encoded)."""
        if self.raw.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self.raw.reconstruct_n(0, self.raw.ntotal), dtype=np.float32)

    def rebuild(self, vectors: np.ndarray, mode: str | None = None) -> None:
        """A fresh index of the type the count (and `mode`, when given) calls for."""
        if mode is not None:
            self.mode = check_mode(mode)
        index = _new_faiss_index(wanted_type(self.mode, len(vectors)), self.dim)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.raw = index
        self.forget_selectors()

    def add(self, vectors: np.ndarray) -> None:
        """Append rows; switches the index type when the new count calls for another one."""
        if wanted_type(self.mode, self.ntotal + len(vectors)) != self.type:
            old = self.vectors()
            self.rebuild(np.concatenate([old, vectors]) if len(old) else vectors)
        else:
            self.raw.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self.forget_selectors()

    def forget_selectors(self) -> None:
        self._selectors.clear()

    def _params(self, key: str, rows: np.ndarray, k: int) -> Any:
        """FAISS search parameters restricting the search to `rows` (cached per key)."""
        faiss = faiss_module()
        hit = self._selectors.get(key)
        if hit is None:
            # The selector keeps a pointer into `rows`: cache both together so `rows` outlives it.
            hit = (faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows)), rows)
            self._selectors[key] = hit
        if self.type == "hnsw":
            return faiss.SearchParametersHNSW(sel=hit[0], efSearch=max(int(self.raw.hnsw.efSearch), k))
        return faiss.SearchParameters(sel=hit[0])

    def search(self, vectors: np.ndarray, k: int,
               subset: tuple[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k nearest rows per query, best first; rows -1 pad a short result.
        `subset` (a cache key, row numbers) restricts the search to those rows."""
        if subset is None:
            return self.raw.search(vectors, k)  # type: ignore[no-any-return]
        return self.raw.search(vectors, k, params=self._params(subset[0], subset[1], k))  # type: ignore[no-any-return]
