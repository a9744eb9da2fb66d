"""The FAISS knowledge store: sentences with provenance, searchable by meaning.

Split by concern:

    facts.py           deduplication and provenance (FactTable, normalise_text, fact_id_for, Hit, AddResult)
    index.py           index policy: exact below HNSW_THRESHOLD facts, HNSW above; reindexing; search
    memory.py          MemoryKnowledge: facts + index + proofs in memory (no folder)
    persistence.py     the folder's files, atomic save through core.outputs.swap_dir, recovery
    lock.py            the writer lock beside the folder (removed when the writer ends)
    knowledge_store.py KnowledgeStore: MemoryKnowledge + persistence + lock
    repair.py          diagnose a damaged store; rebuild its index from facts.jsonl

Readers take no lock; writers hold `<store>.lock` for their session. See `persistence` for the
folder layout and `retrieval.knowledge` for the `Knowledge` protocol that every backend satisfies.
"""
from __future__ import annotations

from retrieval.store.facts import AddResult, FactTable, Hit, fact_id_for, merge_provenance, normalise_text
from retrieval.store.index import HNSW_EF_SEARCH, HNSW_M, HNSW_THRESHOLD, INDEX_MODES, VectorIndex
from retrieval.store.knowledge_store import KnowledgeStore, write_facts_export
from retrieval.store.lock import DEFAULT_LOCK_TIMEOUT, LOCK_TIMEOUT_ENV, WriterLock, wait_unlocked
from retrieval.store.memory import MemoryKnowledge
from retrieval.store.persistence import (
                                         FACTS,
                                         FORMAT_VERSION,
                                         INDEX,
                                         KIND,
                                         MANIFEST,
                                         OWNER_KIND,
                                         PROOFS,
                                         StoreDamagedError,
                                         store_exists,
)
from retrieval.store.repair import RepairResult, diagnose, export_facts, repair_store

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "FACTS",
    "FORMAT_VERSION",
    "HNSW_EF_SEARCH",
    "HNSW_M",
    "HNSW_THRESHOLD",
    "INDEX",
    "INDEX_MODES",
    "KIND",
    "LOCK_TIMEOUT_ENV",
    "MANIFEST",
    "OWNER_KIND",
    "PROOFS",
    "AddResult",
    "FactTable",
    "Hit",
    "KnowledgeStore",
    "MemoryKnowledge",
    "RepairResult",
    "StoreDamagedError",
    "VectorIndex",
    "WriterLock",
    "diagnose",
    "export_facts",
    "fact_id_for",
    "merge_provenance",
    "normalise_text",
    "repair_store",
    "store_exists",
    "wait_unlocked",
    "write_facts_export",
]
