"""Store recovery: find what is wrong with a store folder, and rebuild its derived files.

`facts.jsonl` is the source of truth; the index (and the manifest's counts) derive from it and the
manifest's encoder. `diagnose` lists problems without changing anything; `repair_store` re-encodes
the facts and writes a fresh index and manifest through the normal atomic save. A facts file that
cannot be read is not repairable here: the error names its file and line.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import StoreError
from core.types import Proof
from retrieval.encoder import Encoder, as_encoder
from retrieval.store import persistence as disk
from retrieval.store.index import VectorIndex
from retrieval.store.knowledge_store import KnowledgeStore, _resolve_encoder
from retrieval.store.lock import WriterLock


@dataclass
class RepairResult:
    store: str
    problems: list[str] = field(default_factory=list)
    repaired: bool = False
    facts: int = 0
    proofs_kept: int = 0
    proofs_dropped: int = 0
    encoder: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def diagnose(path: str | os.PathLike[str]) -> list[str]:
    """What is wrong with the store at `path`, one short phrase per problem (empty: healthy).
    Raises StoreError when `path` is no store or its facts cannot be read (nothing to rebuild from)."""
    src = disk.readable_dir(Path(path))
    manifest = disk.read_manifest(src)
    facts = disk.read_facts(src)
    problems = []
    try:
        disk.read_index(src, manifest, len(facts))
    except disk.StoreDamagedError as e:
        problems.append(e.what)
    try:
        disk.read_proofs(src)
    except StoreError as e:
        problems.append(str(e))
    return problems


def _tolerant_proofs(src: Path, fact_ids: set[str]) -> tuple[list[Proof], int]:
    """The readable proofs whose leaves are all stored facts, and how many lines were dropped."""
    ppath = src / disk.PROOFS
    if not ppath.is_file():
        return [], 0
    kept, dropped = [], 0
    with open(ppath, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                p = Proof.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError):
                dropped += 1
                continue
            if set(p.leaves) <= fact_ids:
                kept.append(p)
            else:
                dropped += 1
    return kept, dropped


def _manifest_for_repair(p: Path, encoder: Encoder | str | None) -> dict[str, Any]:
    """The store's manifest; when it cannot be read, a fresh one for `encoder` (which must be given)."""
    try:
        return disk.read_manifest(p)
    except StoreError as e:
        if "newer than this microtheory reads" in str(e) or encoder is None:
            raise StoreError(f"{e}; to rebuild it anyway give the encoder it was built with "
                             "(`microtheory store repair STORE --encoder NAME`)") from None
    enc = as_encoder(encoder)
    stamp = disk.now()
    return {"format_version": disk.FORMAT_VERSION, "kind": disk.KIND, "encoder": {"name": enc.name, "dim": None},
            "index": {"mode": "auto", "type": None, "factory": None, "metric": "inner_product"},
            "count": 0, "created": stamp, "updated": stamp}


def _rebuild(p: Path, lock: WriterLock, encoder: Encoder | str | None, result: RepairResult,
             batch_size: int, progress: bool) -> None:
    manifest = _manifest_for_repair(p, encoder)
    enc = _resolve_encoder(p, manifest, encoder if encoder is not None else None)
    facts = disk.read_facts(p)
    ks = KnowledgeStore(p, enc, manifest, writable=True, lock=lock)
    ks._table.reset(facts)
    vectors = ks._encode_chunked([f.text for f in facts], batch_size, progress) if facts else None
    dim = int(vectors.shape[1]) if vectors is not None else ks._dim()
    ks._dim_value = dim
    ks._vindex = VectorIndex(dim, ks._mode)
    if vectors is not None:
        ks._vindex.rebuild(vectors)
    proofs, dropped = _tolerant_proofs(p, {f.id for f in facts})
    ks._proofs = {(q.question_id, q.proof_id): q for q in proofs}
    ks.save()
    result.repaired, result.facts, result.encoder = True, len(facts), enc.name
    result.proofs_kept, result.proofs_dropped = len(proofs), dropped


def repair_store(path: str | os.PathLike[str], encoder: Encoder | str | None = None, force: bool = False,
                 batch_size: int = 64, progress: bool = False) -> RepairResult:
    """Rebuild the index and manifest of the store at `path` from facts.jsonl (re-encoding every fact
    with the manifest's encoder, or `encoder` when the manifest is lost). A healthy store is left as
    it is unless `force`. Proof records that cannot be read, or cite facts that are gone, are dropped."""
    p = Path(path)
    lock = WriterLock.acquire(p)
    try:
        disk.recover(p)  # a killed writer's leftovers first: that alone may be the whole repair
        result = RepairResult(store=str(p))
        if not (p / disk.FACTS).is_file():
            raise StoreError(f"{p} has no {disk.FACTS}: there is nothing to rebuild the store from "
                             "(restore the folder from a backup, or build the store again)")
        try:
            result.problems = diagnose(p)
        except StoreError as e:
            if disk.FACTS in str(e) and "corrupt" in str(e):
                raise  # the facts themselves are damaged: rebuilding from them would lose lines
            result.problems = [str(e)]
        if result.problems or force:
            _rebuild(p, lock, encoder, result, batch_size, progress)
        return result
    finally:
        lock.release()


def export_facts(path: str | os.PathLike[str], out: str | os.PathLike[str],
                 fmt: str = "jsonl") -> tuple[int, list[str]]:
    """Write the store's facts from facts.jsonl alone (no index needed, so a damaged store still
    exports); returns (count, what `diagnose` finds wrong with the store)."""
    from core.outputs import refuse_input_as_output
    from retrieval.store.knowledge_store import write_facts_export

    p = Path(path)
    refuse_input_as_output(Path(out), [p])
    src = disk.readable_dir(p)
    disk.read_manifest(src)
    n = write_facts_export(disk.read_facts(src), out, fmt)
    try:
        problems = diagnose(p)
    except StoreError as e:  # the store changed or vanished after the export: report, do not fail
        problems = [str(e)]
    return n, problems
