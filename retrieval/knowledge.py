"""One `Knowledge` protocol for everything searchable, and the openers that pick a backend from disk.

A `Knowledge` is a set of facts (with provenance) searchable by text and by vector: QA's prover,
critique advice, populate and the pipeline use only these methods. Backends:

    retrieval.store.KnowledgeStore   a store folder (flat or HNSW FAISS index on disk)
    retrieval.store.MemoryKnowledge  facts held in memory (a microtheory, a facts file); no folder

`open_knowledge(path)` reads the owner file / manifest and returns the right one; `open_store(path)`
insists on a store. Adding a backend: a class with these methods (run it through the contract suite
in tests/test_knowledge.py) plus, when it lives on disk, one branch in `kind_of` / `open_knowledge`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from core.errors import InputError, StoreError
from core.outputs import read_owner
from core.types import Fact, Proof
from retrieval.store import (
    FACTS,
    KIND,
    MANIFEST,
    OWNER_KIND,
    Hit,
    KnowledgeStore,
    MemoryKnowledge,
    store_exists,
)

MICROTHEORY_KIND = "microtheory"  # manifest and owner kind of a distilled microtheory directory
KINDS = ("store", "microtheory", "facts")


@runtime_checkable
class Knowledge(Protocol):
    """Facts searchable by meaning. Scores are cosines (higher is closer), hits best first.

    `encoder` embeds queries for `search`/`search_batch`; a caller that encodes itself must check
    its encoder is the same model (by `encoder.name`) before calling `search_vectors`.
    `source` restricts a search to facts of that source ("corpus", "generated", "microtheory").
    """

    encoder: Any

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Fact]: ...

    def __contains__(self, fact_id: object) -> bool: ...

    def get(self, fact_id: str, default: Any = ...) -> Fact: ...

    def search(self, query: str, k: int = 10, source: str | None = None) -> list[Hit]: ...

    def search_batch(self, queries: Sequence[str], k: int = 10, source: str | None = None) -> list[list[Hit]]: ...

    def search_vectors(self, vectors: np.ndarray, k: int = 10, source: str | None = None) -> list[list[Hit]]: ...

    def proofs(self) -> list[Proof]: ...


def kind_of(path: str | os.PathLike[str]) -> str | None:
    """What `path` holds: "store", "microtheory" (a distilled directory), "facts" (a JSONL file) or None.

    Decided by the owner file (core.outputs), else the manifest's kind (stores made before owner
    files have a store manifest; a store a killed writer left mid-swap counts as a store)."""
    p = Path(path)
    if p.is_file():
        return "facts"
    if not p.is_dir():
        return "store" if store_exists(p) else None
    owner = (read_owner(p) or {}).get("kind")
    if owner == OWNER_KIND:
        return "store"
    if owner == MICROTHEORY_KIND:
        return MICROTHEORY_KIND
    try:
        manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "store" if store_exists(p) else None
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind == MICROTHEORY_KIND:
        return MICROTHEORY_KIND
    return "store" if kind in (None, KIND) else None


def read_fact_file(path: str | os.PathLike[str], allow_empty: bool = False) -> list[Fact]:
    """The facts of a facts JSONL file (retrieval.readers' jsonl format; source defaults to
    "microtheory"). A bad line is an InputError naming file:line."""
    from retrieval.readers import read_facts

    p = Path(path)
    if allow_empty and p.is_file() and not p.read_text(encoding="utf-8", errors="replace").strip():
        return []
    return read_facts(p, fmt="jsonl", source="microtheory")


def knowledge_from_facts(facts: Iterable[Fact], encoder: Any = None, proofs: Iterable[Proof] = ()) -> MemoryKnowledge:
    """In-memory knowledge over `facts`, encoded with `encoder` (None: the default encoder)."""
    return MemoryKnowledge(facts, encoder, proofs)


def open_store(path: str | os.PathLike[str], encoder: Any = None, writable: bool = False) -> KnowledgeStore:
    """The store at `path` (`encoder` given must be the store's own). A microtheory directory or a
    facts file is refused with a pointer to `open_knowledge`."""
    kind = kind_of(path)
    if kind in (MICROTHEORY_KIND, "facts"):
        what = "a microtheory directory" if kind == MICROTHEORY_KIND else "a file"
        raise StoreError(f"{path} is {what}, not a knowledge store; build a store from its facts with "
                         "`microtheory store build`")
    return KnowledgeStore.open(path, encoder=encoder, writable=writable)


def open_knowledge(path: str | os.PathLike[str], encoder: Any = None) -> Knowledge:
    """Searchable knowledge from a store folder, a microtheory directory or a facts JSONL file.

    A store searches with the encoder it was built with (`encoder` is not used for it); facts
    without vectors (a microtheory, a file) are encoded in memory with `encoder` (None: default)."""
    p = Path(path)
    kind = kind_of(p)
    if kind == "store":
        return KnowledgeStore.open(p)
    if kind == MICROTHEORY_KIND:
        return MemoryKnowledge(read_fact_file(p / FACTS, allow_empty=True), encoder)
    if kind == "facts":
        return MemoryKnowledge(read_fact_file(p), encoder)
    if not p.exists():
        raise InputError("no such knowledge store, microtheory directory or facts file", str(p))
    raise InputError("not a knowledge store, a microtheory directory or a facts JSONL file", str(p))


def open_microtheory(path: str | os.PathLike[str], encoder: Any = None) -> Knowledge:
    """QA's `--microtheory`: whatever `open_knowledge` opens, or a folder holding one store or
    microtheory directory (a run directory), or its microtheory.jsonl / facts.jsonl."""
    p = Path(path)
    if p.is_dir() and kind_of(p) is None:
        inner = sorted((m.parent for m in p.glob(f"*/{MANIFEST}") if kind_of(m.parent) is not None),
                       key=lambda d: (kind_of(d) != "store", d.name))  # a store first: it needs no encoding
        if inner:
            return open_knowledge(inner[0], encoder)
        files = [f for f in (p / "microtheory.jsonl", p / FACTS) if f.is_file()]
        if not files:
            raise InputError("not a knowledge store, and holds no microtheory.jsonl or facts.jsonl", str(p))
        p = files[0]
    return open_knowledge(p, encoder)


__all__ = ["KINDS", "MICROTHEORY_KIND", "Hit", "Knowledge", "KnowledgeStore", "MemoryKnowledge", "kind_of",
           "knowledge_from_facts", "open_knowledge", "open_microtheory", "open_store", "read_fact_file"]
