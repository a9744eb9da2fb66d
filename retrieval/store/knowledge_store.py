"""`KnowledgeStore`: `MemoryKnowledge` with a folder behind it, a writer lock and atomic saves.

`with KnowledgeStore.open(p, writable=True) as ks:` holds the writer lock and saves atomically when
the block exits cleanly (an exception inside the block leaves the store on disk untouched).
Readers take no lock; a reader that races a writer's swap retries (the manifest's revision tells).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from core.errors import EncoderMismatchError, InputError, StoreError
from core.jsonl import atomic_write_lines
from core.types import Fact
from retrieval.encoder import Encoder, HashingEncoder, SentenceTransformerEncoder, as_encoder, resolve_name
from retrieval.store import persistence as disk
from retrieval.store.index import VectorIndex, check_mode, index_meta
from retrieval.store.lock import WriterLock
from retrieval.store.memory import MemoryKnowledge

EXPORT_FORMATS = ("jsonl", "text")


def _known_dim(enc: Encoder) -> int | None:
    """The encoder's dimension if knowing it costs nothing (never loads a model just to check)."""
    if isinstance(enc, SentenceTransformerEncoder):
        return enc._dim
    if isinstance(enc, HashingEncoder):
        return enc.dim
    try:
        return int(enc.dim)
    except Exception:
        return None


def _resolve_encoder(p: Path, manifest: dict[str, Any], encoder: Encoder | str | None) -> Encoder:
    """The store's own encoder when `encoder` is None; the given one if it is the same model."""
    stored = manifest["encoder"]
    if encoder is None:
        enc = as_encoder(stored["name"])
    else:
        enc = as_encoder(encoder)
        asked = resolve_name(encoder) if isinstance(encoder, str) else enc.name
        if asked != stored["name"]:
            raise EncoderMismatchError(
                f"store {p} was built with encoder {stored['name']!r} (dim {stored['dim']}), "
                f"not {asked!r}: open it without --encoder, or rebuild it with the encoder you want")
    known = _known_dim(enc)
    if known is not None and stored["dim"] is not None and known != stored["dim"]:
        raise EncoderMismatchError(
            f"store {p} holds {stored['dim']}-d vectors but encoder {enc.name!r} makes {known}-d ones")
    return enc


BM25_BUILD_ON_SAVE = 200_000  # facts; larger stores build their BM25 index on first search instead


def _read_bm25(src: Path, n_facts: int) -> Any:
    """The saved BM25 index when it matches the facts, else None (then it is rebuilt on first use).

    The index is derived data: one that cannot be read (damaged, or moved by a writer's swap while
    we read it) never stops a store from opening."""
    from retrieval.bm25 import BM25Index

    try:
        ix = BM25Index.load(src)
    except (StoreError, OSError, ValueError):
        return None
    return ix if ix is not None and len(ix) == n_facts else None


def write_facts_export(facts: Iterable[Fact], out: str | os.PathLike[str], fmt: str = "jsonl") -> int:
    """Facts as facts JSONL ("jsonl") or one sentence a line ("text"), replacing `out` atomically."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose jsonl or text")
    return atomic_write_lines(Path(out), (json.dumps(f.to_json(), ensure_ascii=False) if fmt == "jsonl" else f.text
                                    for f in facts))


class KnowledgeStore(MemoryKnowledge):
    """Facts + FAISS index + manifest in one directory. Use `create`, `open` or `open_or_create`."""

    def __init__(self, path: Path, encoder: Encoder, manifest: dict[str, Any], writable: bool,
                 lock: WriterLock | None):
        super().__init__(encoder=encoder, index=manifest["index"].get("mode", "auto"))
        self.path = path
        self.label = f"store {path}"
        self._manifest = manifest
        self._writable = writable
        self._lock = lock
        self._dim_value = manifest["encoder"].get("dim")

    # ----------------------------------------------------------------- open / create

    @classmethod
    def create(cls, path: str | os.PathLike[str], encoder: Encoder | str | None = None, index: str = "auto",
               overwrite: bool = False) -> KnowledgeStore:
        """A new, empty, writable store at `path` (written on `save()` or on leaving a `with` block).

        An existing store there is refused unless `overwrite`; even then it stays intact on disk
        until the new store is saved. `index`: "auto" (exact below HNSW_THRESHOLD facts, HNSW
        above), "flat" (always exact) or "hnsw".
        """
        check_mode(index)
        p = Path(path)
        enc = as_encoder(encoder)
        lock = WriterLock.acquire(p)
        try:
            disk.recover(p)
            return cls._create_locked(p, enc, index, overwrite, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _create_locked(cls, p: Path, enc: Encoder, index: str, overwrite: bool, lock: WriterLock) -> KnowledgeStore:
        if p.exists():
            if not p.is_dir():
                raise StoreError(f"{p} exists and is a file, not a knowledge store folder")
            if any(p.iterdir()):
                if not disk.is_store_dir(p):
                    raise StoreError(f"refusing to overwrite {p}: it is not empty and not a knowledge store")
                if not overwrite:
                    raise StoreError(f"a knowledge store already exists at {p}; use --force to replace it, "
                                     "or `store add` to add to it")
        stamp = disk.now()
        manifest = {"format_version": disk.FORMAT_VERSION, "kind": disk.KIND,
                    "encoder": {"name": enc.name, "dim": None},
                    "index": {"mode": index, "type": None, "factory": None, "metric": "inner_product"},
                    "count": 0, "created": stamp, "updated": stamp}
        ks = cls(p, enc, manifest, writable=True, lock=lock)
        ks._dirty = True
        return ks

    @classmethod
    def open(cls, path: str | os.PathLike[str], encoder: Encoder | str | None = None,
             writable: bool = False) -> KnowledgeStore:
        """Load the store at `path`. `encoder` None uses the store's own; another raises EncoderMismatchError."""
        p = Path(path)
        if writable:
            lock = WriterLock.acquire(p)
            try:
                disk.recover(p)
                return cls._open_from(p, disk.readable_dir(p), encoder, lock)
            except BaseException:
                lock.release()
                raise
        return cls._open_reader(p, encoder)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str], encoder: Encoder | str | None = None,
                       index: str = "auto") -> KnowledgeStore:
        """The store at `path` opened for writing (its own encoder), or a new one with `encoder`."""
        p = Path(path)
        lock = WriterLock.acquire(p)
        try:
            disk.recover(p)
            if (p / disk.MANIFEST).is_file():
                return cls._open_from(p, p, None, lock)
            return cls._create_locked(p, as_encoder(encoder), check_mode(index), False, lock)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """True when `path` holds a store (or a killed writer's previous version, which `open` restores)."""
        return disk.store_exists(path)

    @classmethod
    def _open_reader(cls, p: Path, encoder: Encoder | str | None) -> KnowledgeStore:
        # A reader takes no lock, so a writer may swap the folder mid-read (facts from one version,
        # index from the next): the manifest's revision, read before and after, tells, and the read
        # is retried.
        for attempt in range(50):
            src = disk.readable_dir(p)
            rev = disk.revision(src)
            try:
                ks = cls._open_from(p, src, encoder, None)
                mine = (ks._manifest.get("revision"), ks._manifest.get("updated"))
                if mine == rev and disk.revision(src) == rev:
                    return ks
            except (StoreError, OSError):
                # An old copy is deleted by the writer that made it, so an error there means "moved
                # on": retry. At the store's own path, an unchanged revision means a real error.
                if attempt == 49 or (src == p and rev is not None and disk.revision(src) == rev):
                    raise
            time.sleep(0.02)
        raise StoreError(f"store {p} kept changing while being read; try again")

    @classmethod
    def _open_from(cls, p: Path, src: Path, encoder: Encoder | str | None, lock: WriterLock | None) -> KnowledgeStore:
        """Read one committed store folder `src` (which is `p`, or its old copy mid-swap)."""
        manifest = disk.read_manifest(src)
        enc = _resolve_encoder(p, manifest, encoder)
        ks = cls(p, enc, manifest, writable=lock is not None, lock=lock)
        facts = disk.read_facts(src)
        raw = disk.read_index(src, manifest, len(facts))
        ks._vindex = VectorIndex(raw.d, ks._mode, raw)
        ks._dim_value = int(raw.d)
        ks._table.reset(facts)
        ks._proofs = {(pr.question_id, pr.proof_id): pr for pr in disk.read_proofs(src)}
        ks._bm25 = _read_bm25(src, len(facts))
        return ks

    # ----------------------------------------------------------------- save / close

    def _require_writable(self) -> None:
        if not self._writable:
            raise StoreError(f"store {self.path} is open read-only; open it with writable=True to change it")

    def _refresh_manifest(self) -> None:
        m = self._manifest
        m["format_version"] = disk.FORMAT_VERSION
        m["encoder"]["dim"] = self._dim()
        m["index"]["mode"] = self._mode
        m["index"].update(index_meta(self.index_type))
        m["count"] = len(self)
        m["proofs"] = len(self._proofs)
        m["sources"] = self._table.source_counts()
        m["files"] = {"facts": disk.FACTS, "index": disk.INDEX, **({"proofs": disk.PROOFS} if self._proofs else {})}
        m["library_versions"] = disk.library_versions()
        m["updated"] = disk.now()
        m["revision"] = uuid.uuid4().hex  # lets lock-free readers notice a swap mid-read

    def save(self) -> None:
        """Write the whole store aside, then swap it in (see `persistence`). Needs the lock."""
        self._require_writable()
        if self._lock is None or not self._lock.is_locked:
            raise StoreError(f"store {self.path} was closed; open it again to write")
        raw = self._ensure_index().raw
        self._refresh_manifest()
        # The BM25 index goes along when it is in memory, or is cheap to build (it is derived data).
        bm25 = self.bm25 if (self._bm25 is not None or len(self) <= BM25_BUILD_ON_SAVE) else None
        disk.write_store(self.path, self._table.facts, self.proofs(), raw, self._manifest, bm25=bm25)
        self._dirty = False

    def close(self) -> None:
        """Release the writer lock and remove its file (unsaved changes are dropped)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> KnowledgeStore:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None and self._writable and self._dirty:
                self.save()
        finally:
            self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ----------------------------------------------------------------- info / export

    def info(self) -> dict[str, Any]:
        """The manifest as it would be saved now, plus the path and on-disk size."""
        m = json.loads(json.dumps(self._manifest))
        m["count"] = len(self)
        m["proofs"] = len(self._proofs)
        m["sources"] = self._table.source_counts()
        if self._dim_value is not None:
            m["encoder"]["dim"] = self._dim_value
        if self._vindex is not None:
            m["index"].update(index_meta(self._vindex.type))
        m["index"]["type"] = self.index_type
        m["index"]["mode"] = self._mode
        m["path"] = str(self.path)
        m["size_bytes"] = sum(p.stat().st_size for p in self.path.glob("*") if p.is_file()) if self.path.is_dir() else 0
        m["unsaved_changes"] = self._dirty
        return m

    def export(self, path: str | os.PathLike[str], fmt: str = "jsonl") -> int:
        """Write the facts as facts JSONL ("jsonl") or one sentence per line ("text"); returns the count.
        The file is replaced atomically."""
        return write_facts_export(self._table.facts, path, fmt)

    def __repr__(self) -> str:
        return (f"KnowledgeStore({str(self.path)!r}, facts={len(self)}, encoder={self.encoder.name!r}, "
                f"index={self.index_type!r}{', writable' if self._writable else ''})")
