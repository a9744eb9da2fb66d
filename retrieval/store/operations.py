"""The store commands as plain functions returning JSON-ready summaries (`microtheory store ...`
calls these; scripts and tests may too). Heavy work happens in the store classes; these only
read inputs, open the store the right way, and count."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.engine import Engine, is_local
from core.errors import InputError
from core.types import Fact
from retrieval.store.knowledge_store import KnowledgeStore
from retrieval.store.repair import export_facts, repair_store


@dataclass(frozen=True)
class InputSpec:
    """Input files and how to read them (retrieval.readers): format, spaCy splitting, the source
    and corpus name recorded for records that give none."""

    paths: Sequence[Path]
    fmt: str = "auto"
    split: bool = False
    source: str = "corpus"
    name: str | None = None

    def read(self) -> list[Fact]:
        """Every input parsed before any store is touched (a bad line stops with file:line)."""
        from retrieval.readers import read_sources

        facts = read_sources(self.paths, fmt=self.fmt, split=self.split, source=self.source, name=self.name)
        if not facts:
            raise InputError("the inputs hold no facts")
        return facts


@dataclass(frozen=True)
class BuildOptions:
    encoder: str | None = None
    index: str = "auto"
    force: bool = False
    batch_size: int = 64
    progress: bool = True
    engine: Engine | None = None   # where new facts are encoded (core.engine; None: here)


@dataclass(frozen=True)
class _EncodeWorker:
    """A `core.engine` worker factory: loads the encoder `name` once per worker, encodes shards of texts."""

    name: str
    batch_size: int

    def __call__(self) -> Any:
        from core.engine import cuda_present
        from retrieval.encoder import get_encoder

        enc = get_encoder(self.name)
        if cuda_present() and getattr(enc, "device", "") is None:  # a GPU worker: the model goes there
            enc.device = "cuda"  # type: ignore[attr-defined]
        return lambda texts: list(enc.encode(texts, batch_size=self.batch_size))


class ShardedEncoder:
    """The store's encoder with `encode` spread over an engine's workers (each loads the model once);
    name and dimension are the wrapped encoder's, so the manifest and the dedup rules do not change."""

    def __init__(self, base: Any, engine: Engine, batch_size: int = 64, progress: bool = True):
        self.base, self.engine, self.batch_size, self.progress = base, engine, batch_size, progress
        self.name = base.name

    @property
    def dim(self) -> int:
        return int(self.base.dim)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        rows = self.engine.map(_EncodeWorker(self.name, self.batch_size), list(texts), shard_size=self.batch_size * 4)
        if self.progress and len(texts) > self.batch_size * 4:
            from tqdm import tqdm

            rows = tqdm(rows, total=len(texts), desc=f"encoding ({self.engine.name})", unit="fact")
        out = list(rows)
        return np.stack(out).astype(np.float32) if out else np.zeros((0, self.dim), dtype=np.float32)


def _add(ks: KnowledgeStore, facts: list[Fact], options: BuildOptions) -> Any:
    """`ks.add` with the new texts encoded by `options.engine`; the FAISS index, the fact table and the
    store's save stay here, in the one writer."""
    if is_local(options.engine):
        return ks.add(facts, batch_size=options.batch_size, progress=options.progress)
    assert options.engine is not None
    base = ks.encoder
    ks.encoder = ShardedEncoder(base, options.engine, options.batch_size, options.progress)  # type: ignore[assignment]
    try:
        return ks.add(facts, batch_size=len(facts) + 1, progress=False)  # one call: the engine shards it
    finally:
        ks.encoder = base


def build_store(spec: InputSpec, out: Path, options: BuildOptions | None = None) -> dict[str, Any]:
    """Create a store at `out` from the inputs (replacing an existing store only with `force`)."""
    options = options or BuildOptions()
    t0 = time.perf_counter()
    facts = spec.read()
    with KnowledgeStore.create(out, encoder=options.encoder, index=options.index, overwrite=options.force) as ks:
        res = _add(ks, facts, options)
        info = ks.info()
    return {"store": str(out), "inputs": [str(p) for p in spec.paths], "read": len(facts), "added": res.added,
            "merged": res.merged, "count": info["count"], "encoder": info["encoder"],
            "index": info["index"]["type"], "seconds": round(time.perf_counter() - t0, 3)}


def add_to_store(store: Path, spec: InputSpec, options: BuildOptions | None = None) -> dict[str, Any]:
    """Add the inputs' facts to an existing store (duplicates merge their provenance)."""
    options = options or BuildOptions()
    t0 = time.perf_counter()
    facts = spec.read()
    with KnowledgeStore.open(store, encoder=options.encoder, writable=True) as ks:
        before = len(ks)
        res = _add(ks, facts, options)
        count = len(ks)
    return {"store": str(store), "inputs": [str(p) for p in spec.paths], "read": len(facts), "added": res.added,
            "merged": res.merged, "before": before, "count": count,
            "seconds": round(time.perf_counter() - t0, 3)}


def search_store(store: Path, queries: Sequence[str], k: int = 10, source: str | None = None,
                 encoder: str | None = None) -> list[dict[str, Any]]:
    """Top-k facts for each query: [{query, hits: [{score, id, text, source, provenance}]}]."""
    ks = KnowledgeStore.open(store, encoder=encoder)
    results = ks.search_batch(list(queries), k=k, source=source)
    return [{"query": q, "hits": [h.to_json() for h in hits]} for q, hits in zip(queries, results)]


def store_info(store: Path) -> dict[str, Any]:
    return KnowledgeStore.open(store).info()


def remove_from_store(store: Path, ids: Sequence[str]) -> dict[str, Any]:
    with KnowledgeStore.open(store, writable=True) as ks:
        unknown = [i for i in ids if i not in ks]
        removed = ks.remove(ids)
        count = len(ks)
    return {"store": str(store), "removed": removed, "unknown": unknown, "count": count}


def export_store(store: Path, out: Path, fmt: str = "jsonl") -> dict[str, Any]:
    """Facts from facts.jsonl (works on a store whose index is damaged); `problems` says what is wrong."""
    n, problems = export_facts(store, out, fmt=fmt)
    return {"store": str(store), "out": str(out), "format": fmt, "facts": n, "problems": problems}


def repair(store: Path, encoder: str | None = None, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """`repair_store` with its time."""
    t0 = time.perf_counter()
    res = repair_store(store, encoder=encoder, force=force, progress=progress).to_json()
    return {**res, "seconds": round(time.perf_counter() - t0, 3)}
