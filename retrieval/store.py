"""The FAISS knowledge store: sentences with provenance, searchable by meaning.

A store is a directory:

    manifest.json   format_version, encoder {name, dim}, index {type, factory, ...}, count,
                    sources, library versions, created / updated (written last: a folder without
                    it is not a store)
    facts.jsonl     one Fact per line; line i is vector i of the index (the id map: row <-> fact id)
    index.faiss     IndexFlatIP (exact) below HNSW_THRESHOLD facts, IndexHNSWFlat above; both keep
                    the normalised vectors, so re-indexing or removing never re-encodes
    proofs.jsonl    optional Proof records whose leaves are stored fact ids

Saving writes a complete new directory beside the store (`<name>.tmp-XXXX`), then swaps it in by
two renames (`<name>` -> `<name>.old-XXXX`, tmp -> `<name>`) and deletes the old one. The rename
of the new folder into place is the commit point: a process killed at any instant leaves either the
previous store or the new one loadable; a writer that finds only `<name>.old-XXXX` rolls it back.
Writers hold a file lock on `<name>.lock` (`open(writable=True)`, `create`) for their whole session;
a second writer waits up to LOCK_TIMEOUT seconds, then fails with StoreError. Readers take no lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from retrieval.encoder import Encoder, HashingEncoder, SentenceTransformerEncoder, as_encoder, resolve_name
from core.errors import EncoderMismatchError, InputError, StoreError
from core.types import FACT_SOURCES, Fact, Proof

FORMAT_VERSION = 1
KIND = "microtheory.knowledge_store"
# Exact search costs O(n) per query; at 50,000 x 384 floats that is ~1-2 ms on one core, beyond it
# HNSW keeps queries sub-millisecond at a measured recall@10 (bench/results/store_bench.md).
HNSW_THRESHOLD = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
INDEX_MODES = ("auto", "flat", "hnsw")
LOCK_TIMEOUT_ENV = "MICROTHEORY_STORE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 30.0

MANIFEST, FACTS, INDEX, PROOFS = "manifest.json", "facts.jsonl", "index.faiss", "proofs.jsonl"

_WS = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.,;:!?]+$")


def normalise_text(text: str) -> str:
    """The deduplication key: casefolded, whitespace collapsed, trailing punctuation stripped."""
    return _TRAILING.sub("", _WS.sub(" ", text.casefold()).strip())


def fact_id_for(text: str) -> str:
    """A stable id for a fact given without one: a hash of its normalised text."""
    return "f" + hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Hit:
    """One search result: the stored fact and its cosine similarity to the query."""

    fact: Fact
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, **self.fact.to_json()}


@dataclass(frozen=True)
class AddResult:
    """What `add` did. `ids` maps each input fact's id (or its generated id) to the stored id:
    the existing fact's id when the text was a duplicate."""

    added: int
    merged: int
    ids: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _prov_key(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def _merge_provenance(base: list[dict[str, Any]], extra: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {_prov_key(r) for r in base}
    out = list(base)
    for r in extra:
        k = _prov_key(r)
        if k not in seen:
            seen.add(k)
            out.append(dict(r))
    return out


def _lock_timeout() -> float:
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    # importlib.metadata reads versions without importing the (heavy) packages.
    for dist in ("microtheory", "faiss-cpu", "numpy", "sentence-transformers", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _faiss() -> Any:
    import faiss

    return faiss


def _leftovers(path: Path, kind: str) -> list[Path]:
    if not path.parent.is_dir():
        return []
    prefix = f"{path.name}.{kind}-"
    found = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _readable_dir(path: Path) -> Path:
    """Where a reader finds the committed store: `path`, or during a writer's swap (or after a
    writer was killed mid-swap) the previous version left at `<name>.old-XXXX`."""
    if (path / MANIFEST).is_file():
        return path
    for old in _leftovers(path, "old"):
        if (old / MANIFEST).is_file():
            return old
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a knowledge store folder")
    if path.is_dir():
        raise StoreError(f"{path} is not a knowledge store (no {MANIFEST}); build one with `microtheory store build`")
    raise StoreError(f"no knowledge store at {path}; build one with `microtheory store build`")


def _revision(src: Path) -> Any:
    """The manifest's revision token (a new one per save), or None if it cannot be read now."""
    try:
        m = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
        return (m.get("revision"), m.get("updated")) if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def _recover(path: Path) -> None:
    """Under the writer lock: undo what a killed writer left. Before the commit rename the old
    version is still the store, so it is moved back; unfinished temp folders are deleted."""
    if not (path / MANIFEST).is_file():
        for old in _leftovers(path, "old"):
            if (old / MANIFEST).is_file():
                if path.exists():  # an empty / partial folder where the store should be
                    if path.is_dir() and not any(path.iterdir()):
                        path.rmdir()
                    else:
                        break
                os.rename(old, path)
                _fsync_dir(path.parent)
                break
    for p in _leftovers(path, "tmp") + _leftovers(path, "old"):
        shutil.rmtree(p, ignore_errors=True)


class KnowledgeStore:
    """Facts + FAISS index + manifest in one directory. Use `create` or `open`, not the constructor.

    `with KnowledgeStore.open(p, writable=True) as ks:` holds the writer lock and saves atomically
    when the block exits cleanly (an exception inside the block leaves the store on disk untouched).
    """

    def __init__(self, path: Path, encoder: Encoder, manifest: dict[str, Any], writable: bool, lock: Any):
        self.path = path
        self.encoder = encoder
        self._manifest = manifest
        self._writable = writable
        self._lock = lock
        self._mode: str = manifest["index"].get("mode", "auto")
        self._facts: list[Fact] = []
        self._row_of_id: dict[str, int] = {}
        self._row_of_norm: dict[str, int] = {}
        self._index: Any = None
        self._proofs: dict[tuple[str, str], Proof] = {}
        self._selectors: dict[str, Any] = {}
        self._dirty = False

    # ----------------------------------------------------------------- open / create / save

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        encoder: Encoder | str | None = None,
        index: str = "auto",
        overwrite: bool = False,
    ) -> KnowledgeStore:
        """A new, empty, writable store at `path` (written on `save()` or on leaving a `with` block).

        An existing store there is refused unless `overwrite`; even then it stays intact on disk
        until the new store is saved. `index`: "auto" (exact below HNSW_THRESHOLD facts, HNSW
        above), "flat" (always exact) or "hnsw".
        """
        if index not in INDEX_MODES:
            raise StoreError(f"unknown index type {index!r}; choose one of {', '.join(INDEX_MODES)}")
        p = Path(path)
        enc = as_encoder(encoder)
        lock = cls._acquire(p)
        try:
            _recover(p)
            if p.exists():
                if not p.is_dir():
                    raise StoreError(f"{p} exists and is a file, not a knowledge store folder")
                is_store = (p / MANIFEST).is_file()
                if any(p.iterdir()):
                    if not is_store:
                        raise StoreError(f"refusing to overwrite {p}: it is not empty and not a knowledge store")
                    if not overwrite:
                        raise StoreError(f"a knowledge store already exists at {p}; use --force (overwrite=True) "
                                         "to replace it, or `store add` to add to it")
            now = _now()
            manifest = {
                "format_version": FORMAT_VERSION,
                "kind": KIND,
                "encoder": {"name": enc.name, "dim": None},
                "index": {"mode": index, "type": None, "factory": None, "metric": "inner_product"},
                "count": 0,
                "created": now,
                "updated": now,
            }
            ks = cls(p, enc, manifest, writable=True, lock=lock)
            ks._dirty = True
            return ks
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], encoder: Encoder | str | None = None, writable: bool = False
    ) -> KnowledgeStore:
        """Load the store at `path`. `encoder` None uses the store's own; another raises EncoderMismatchError."""
        p = Path(path)
        lock = cls._acquire(p) if writable else None
        try:
            if writable:
                _recover(p)
                return cls._open_from(p, _readable_dir(p), encoder, writable, lock)
            # A reader takes no lock, so a writer may swap the folder mid-read (facts from one
            # version, index from the next): the manifest's revision, read before and after,
            # tells, and the read is retried.
            for attempt in range(50):
                src = _readable_dir(p)
                rev = _revision(src)
                try:
                    ks = cls._open_from(p, src, encoder, writable, lock)
                    mine = (ks._manifest.get("revision"), ks._manifest.get("updated"))
                    if mine == rev and _revision(src) == rev:
                        return ks
                except StoreError:
                    if attempt == 49 or (rev is not None and _revision(src) == rev):
                        raise  # the store did not change under us: a real error
                time.sleep(0.02)
            raise StoreError(f"store {p} kept changing while being read; try again")
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _open_from(cls, p: Path, src: Path, encoder: Encoder | str | None, writable: bool,
                   lock: Any) -> KnowledgeStore:
        """Read one committed store folder `src` (which is `p`, or its `.old-` copy mid-swap)."""
        manifest = cls._read_manifest(src)
        stored = manifest["encoder"]
        if encoder is None:
            enc = as_encoder(stored["name"])
        else:
            enc = as_encoder(encoder)
            asked = resolve_name(encoder) if isinstance(encoder, str) else enc.name
            if asked != stored["name"]:
                raise EncoderMismatchError(
                    f"store {p} was built with encoder {stored['name']!r} (dim {stored['dim']}), "
                    f"not {asked!r}: open it without --encoder, or rebuild it with the encoder you want"
                )
        known = _known_dim(enc)
        if known is not None and stored["dim"] is not None and known != stored["dim"]:
            raise EncoderMismatchError(
                f"store {p} holds {stored['dim']}-d vectors but encoder {enc.name!r} makes {known}-d ones"
            )
        ks = cls(p, enc, manifest, writable=writable, lock=lock)
        ks._load(src)
        return ks

    @staticmethod
    def _acquire(path: Path) -> Any:
        from filelock import FileLock, Timeout

        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = str(path) + ".lock"
        lock = FileLock(lock_path)
        timeout = _lock_timeout()
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise StoreError(
                f"store {path} is being written by another process (lock {lock_path} held); "
                f"waited {timeout:g} s. Retry when it finishes (or raise ${LOCK_TIMEOUT_ENV})."
            ) from None
        return lock

    @staticmethod
    def _read_manifest(src: Path) -> dict[str, Any]:
        mpath = src / MANIFEST
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot read {mpath}: {e}") from e
        if not isinstance(manifest, dict) or manifest.get("kind", KIND) != KIND:
            raise StoreError(f"{mpath} is not a knowledge store manifest")
        version = manifest.get("format_version")
        if not isinstance(version, int):
            raise StoreError(f"{mpath}: format_version missing or not an integer")
        if version > FORMAT_VERSION:
            raise StoreError(
                f"store {src} has format version {version}, newer than this microtheory reads "
                f"({FORMAT_VERSION}); upgrade microtheory to open it"
            )
        for key in ("encoder", "index"):
            if not isinstance(manifest.get(key), dict):
                raise StoreError(f"{mpath}: missing '{key}' section")
        return manifest

    def _load(self, src: Path) -> None:
        fpath = src / FACTS
        facts: list[Fact] = []
        try:
            with open(fpath, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        facts.append(Fact.from_json(json.loads(line)))
                    except (ValueError, KeyError, TypeError) as e:
                        raise StoreError(f"{fpath}:{lineno}: corrupt fact record ({e})") from e
        except OSError as e:
            raise StoreError(f"cannot read {fpath}: {e}") from e
        ipath = src / INDEX
        try:
            index = _faiss().read_index(str(ipath))
        except Exception as e:  # faiss raises RuntimeError with a C++ message
            raise StoreError(f"cannot read the FAISS index {ipath}: {e}") from e
        if index.ntotal != len(facts):
            raise StoreError(f"store {src} is inconsistent: {ipath.name} holds {index.ntotal} vectors "
                             f"but {fpath.name} holds {len(facts)} facts")
        dim = self._manifest["encoder"]["dim"]
        if dim is not None and index.d != dim:
            raise StoreError(f"store {src} is inconsistent: index dimension {index.d}, manifest says {dim}")
        if self._manifest["index"].get("type") == "hnsw":
            index.hnsw.efSearch = int(self._manifest["index"].get("efSearch", HNSW_EF_SEARCH))
        self._index = index
        self._set_facts(facts)
        ppath = src / PROOFS
        if ppath.is_file():
            with open(ppath, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            pr = Proof.from_json(json.loads(line))
                        except (ValueError, KeyError, TypeError) as e:
                            raise StoreError(f"{ppath}:{lineno}: corrupt proof record ({e})") from e
                        self._proofs[(pr.question_id, pr.proof_id)] = pr

    def _set_facts(self, facts: list[Fact]) -> None:
        self._facts = facts
        self._row_of_id = {f.id: i for i, f in enumerate(facts)}
        self._row_of_norm = {normalise_text(f.text): i for i, f in enumerate(facts)}
        self._selectors.clear()

    def _require_writable(self) -> None:
        if not self._writable:
            raise StoreError(f"store {self.path} is open read-only; open it with writable=True to change it")

    def save(self) -> None:
        """Write the whole store aside, then swap it in (see the module docstring). Needs the lock."""
        self._require_writable()
        if self._lock is None or not self._lock.is_locked:
            raise StoreError(f"store {self.path} was closed; open it again to write")
        index = self._ensure_index()
        self._refresh_manifest()
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f"{self.path.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            lines = [json.dumps(f.to_json(), ensure_ascii=False) for f in self._facts]
            _write_file(tmp / FACTS, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
            if self._proofs:
                plines = [json.dumps(p.to_json(), ensure_ascii=False) for p in self._proofs.values()]
                _write_file(tmp / PROOFS, ("\n".join(plines) + "\n").encode("utf-8"))
            _faiss().write_index(index, str(tmp / INDEX))
            with open(tmp / INDEX, "rb") as fh:
                os.fsync(fh.fileno())
            # The manifest goes last: a folder with a manifest is a complete store.
            _write_file(tmp / MANIFEST, (json.dumps(self._manifest, indent=2, ensure_ascii=False) + "\n").encode())
            _fsync_dir(tmp)
            if self.path.exists():
                old = parent / f"{self.path.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(self.path, old)
                os.rename(tmp, self.path)  # the commit point
                _fsync_dir(parent)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, self.path)
                _fsync_dir(parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._dirty = False

    def close(self) -> None:
        """Release the writer lock (unsaved changes are dropped)."""
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

    # ----------------------------------------------------------------- the index

    def _dim(self) -> int:
        dim = self._manifest["encoder"]["dim"]
        if dim is None:
            dim = int(self.encoder.dim)
            self._manifest["encoder"]["dim"] = dim
        return int(dim)

    def _wanted_type(self, n: int) -> str:
        if self._mode == "auto":
            return "hnsw" if n >= HNSW_THRESHOLD else "flat"
        return self._mode

    def _new_index(self, kind: str) -> Any:
        faiss = _faiss()
        dim = self._dim()
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            index = faiss.IndexFlatIP(dim)
        self._manifest["index"].update(self._index_meta(kind))
        return index

    @staticmethod
    def _index_meta(kind: str) -> dict[str, Any]:
        if kind == "hnsw":
            return {"type": "hnsw", "factory": f"HNSW{HNSW_M},Flat", "M": HNSW_M,
                    "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH,
                    "threshold": HNSW_THRESHOLD}
        return {"type": "flat", "factory": "Flat", "threshold": HNSW_THRESHOLD}

    def _ensure_index(self) -> Any:
        if self._index is None:
            self._index = self._new_index(self._wanted_type(0))
        return self._index

    def vectors(self) -> np.ndarray:
        """All stored vectors, row i = fact i (read back from the index, never re-encoded)."""
        index = self._ensure_index()
        if index.ntotal == 0:
            return np.zeros((0, self._dim()), dtype=np.float32)
        return np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)

    def _rebuild(self, vectors: np.ndarray) -> None:
        """A fresh index of the type the current size calls for, from already-computed vectors."""
        index = self._new_index(self._wanted_type(len(vectors)))
        if len(vectors):
            index.add(vectors)
        self._index = index
        self._selectors.clear()

    def reindex(self, index: str | None = None) -> None:
        """Rebuild the index (optionally switching type: "auto", "flat", "hnsw") without re-encoding."""
        self._require_writable()
        if index is not None:
            if index not in INDEX_MODES:
                raise StoreError(f"unknown index type {index!r}; choose one of {', '.join(INDEX_MODES)}")
            self._mode = index
            self._manifest["index"]["mode"] = index
        self._rebuild(self.vectors())
        self._dirty = True

    @property
    def index_type(self) -> str:
        return self._manifest["index"].get("type") or self._wanted_type(len(self._facts))

    # ----------------------------------------------------------------- facts

    def __len__(self) -> int:
        return len(self._facts)

    def __iter__(self) -> Iterator[Fact]:
        return iter(list(self._facts))

    def __contains__(self, fact_id: object) -> bool:
        return fact_id in self._row_of_id

    _MISSING: Any = object()

    def get(self, fact_id: str, default: Any = _MISSING) -> Fact:
        """The stored fact with this id; KeyError if absent (unless a default is given)."""
        row = self._row_of_id.get(fact_id)
        if row is None:
            if default is not KnowledgeStore._MISSING:
                return default  # type: ignore[no-any-return]
            raise KeyError(f"no fact with id {fact_id!r} in store {self.path}")
        return self._facts[row]

    def find_text(self, text: str) -> Fact | None:
        """The stored fact whose normalised text equals that of `text`, if any."""
        row = self._row_of_norm.get(normalise_text(text))
        return None if row is None else self._facts[row]

    def _encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        vecs = self.encoder.encode(texts, batch_size=batch_size, progress=progress)
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        dim = self._manifest["encoder"]["dim"]
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise EncoderMismatchError(f"encoder {self.encoder.name!r} returned shape {vecs.shape} "
                                       f"for {len(texts)} texts")
        if dim is not None and vecs.shape[1] != dim:
            raise EncoderMismatchError(f"store {self.path} holds {dim}-d vectors but encoder "
                                       f"{self.encoder.name!r} makes {vecs.shape[1]}-d ones")
        return vecs

    def add(self, facts: Iterable[Fact], batch_size: int = 256, progress: bool = False) -> AddResult:
        """Add facts, encoding in batches. A fact whose normalised text is already stored (or earlier
        in this call) is merged: its provenance records join the stored fact's, no vector is added.

        A fact with an empty id gets `fact_id_for(text)`; an id already used by a different text is
        stored as `<id>#<hash>`. `ids` in the result maps input ids to stored ids. Nothing changes
        (in memory or on disk) if encoding fails.
        """
        self._require_writable()
        new: list[Fact] = []
        new_norm: dict[str, int] = {}
        new_ids: set[str] = set()
        merges: dict[int, list[dict[str, Any]]] = {}  # existing row -> provenance to merge
        ids: dict[str, str] = {}
        merged = 0
        for f in facts:
            if not isinstance(f, Fact):
                raise TypeError(f"add() takes Fact objects, got {type(f).__name__}")
            text = f.text.strip()
            if not text:
                raise InputError(f"fact {f.id!r} has empty text")
            if f.source not in FACT_SOURCES:
                raise InputError(f"fact {f.id!r} has source {f.source!r}; expected one of {', '.join(FACT_SOURCES)}")
            norm = normalise_text(text)
            in_id = f.id or fact_id_for(text)
            row = self._row_of_norm.get(norm)
            if row is not None:
                merges.setdefault(row, []).extend(f.provenance)
                ids[in_id] = self._facts[row].id
                merged += 1
                continue
            j = new_norm.get(norm)
            if j is not None:
                new[j] = replace(new[j], provenance=_merge_provenance(new[j].provenance, f.provenance))
                ids[in_id] = new[j].id
                merged += 1
                continue
            stored_id = in_id
            if stored_id in self._row_of_id or stored_id in new_ids:
                stored_id = f"{in_id}#{fact_id_for(text)[1:9]}"
                n = 2
                while stored_id in self._row_of_id or stored_id in new_ids:
                    stored_id = f"{in_id}#{fact_id_for(text)[1:9]}-{n}"
                    n += 1
            new_norm[norm] = len(new)
            new_ids.add(stored_id)
            new.append(Fact(id=stored_id, text=text, source=f.source,
                            provenance=_merge_provenance([], f.provenance)))
            ids[in_id] = stored_id
        vectors = self._encode_chunked([f.text for f in new], batch_size, progress) if new else None

        # Everything below only mutates memory and cannot fail half-way on bad input.
        for row, prov in merges.items():
            old = self._facts[row]
            merged_prov = _merge_provenance(old.provenance, prov)
            if len(merged_prov) != len(old.provenance):
                self._facts[row] = replace(old, provenance=merged_prov)
                self._dirty = True
        if new:
            assert vectors is not None
            index = self._ensure_index()
            start = len(self._facts)
            wanted = self._wanted_type(start + len(new))
            for i, f in enumerate(new):
                self._facts.append(f)
                self._row_of_id[f.id] = start + i
                self._row_of_norm[normalise_text(f.text)] = start + i
            if wanted != self._manifest["index"].get("type"):
                self._rebuild(np.concatenate([self.vectors(), vectors]) if index.ntotal else vectors)
            else:
                index.add(vectors)
            self._selectors.clear()
            self._dirty = True
        return AddResult(added=len(new), merged=merged, ids=ids)

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

    def remove(self, ids: Iterable[str]) -> int:
        """Remove facts by id (unknown ids are ignored); returns how many were removed. Proofs that
        used a removed fact as a leaf are dropped too: they no longer prove anything from this store."""
        self._require_writable()
        rows = {self._row_of_id[i] for i in ids if i in self._row_of_id}
        if not rows:
            return 0
        removed_ids = {self._facts[r].id for r in rows}
        keep = np.array([i for i in range(len(self._facts)) if i not in rows], dtype=np.int64)
        vectors = self.vectors()[keep] if len(keep) else np.zeros((0, self._dim()), dtype=np.float32)
        self._set_facts([self._facts[i] for i in keep])
        self._rebuild(np.ascontiguousarray(vectors))
        self._proofs = {k: p for k, p in self._proofs.items() if not removed_ids.intersection(p.leaves)}
        self._dirty = True
        return len(rows)

    # ----------------------------------------------------------------- search

    def search(self, query: str, k: int = 10, source: str | None = None) -> list[Hit]:
        """The k facts closest to `query` (cosine), best first; only facts of `source` if given."""
        if not isinstance(query, str):
            raise TypeError("search() takes one query string; use search_batch() for several")
        return self.search_batch([query], k=k, source=source)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, source: str | None = None,
                     batch_size: int = 64) -> list[list[Hit]]:
        if isinstance(queries, str):
            raise TypeError("search_batch() takes a sequence of query strings")
        if not len(queries):
            return []
        return self.search_vectors(self._encode(list(queries), batch_size=batch_size), k=k, source=source)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, source: str | None = None) -> list[list[Hit]]:
        """Search with already-encoded (normalised) query vectors of the store's dimension."""
        vectors = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        dim = self._manifest["encoder"]["dim"] or (self._index.d if self._index is not None else None)
        if vectors.ndim != 2 or (dim is not None and vectors.shape[1] != dim):
            raise EncoderMismatchError(f"query vectors have shape {vectors.shape}; store {self.path} "
                                       f"holds {dim}-d vectors from encoder {self._manifest['encoder']['name']!r}")
        if k < 1:
            raise StoreError(f"k must be at least 1, got {k}")
        if source is not None and source not in FACT_SOURCES:
            raise StoreError(f"unknown source {source!r}; expected one of {', '.join(FACT_SOURCES)}")
        n = len(self._facts)
        if n == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        index = self._ensure_index()
        params = None
        limit = n
        if source is not None:
            sel, limit = self._selector(source)
            if limit == 0:
                return [[] for _ in range(len(vectors))]
            faiss = _faiss()
            if self.index_type == "hnsw":
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(HNSW_EF_SEARCH, k))
            else:
                params = faiss.SearchParameters(sel=sel)
        kk = min(k, limit)
        scores, rows = index.search(vectors, kk, params=params) if params is not None else index.search(vectors, kk)
        out: list[list[Hit]] = []
        for srow, rrow in zip(scores, rows):
            out.append([Hit(self._facts[int(r)], float(s)) for s, r in zip(srow, rrow) if r >= 0])
        return out

    def _selector(self, source: str) -> tuple[Any, int]:
        hit = self._selectors.get(source)
        if hit is None:
            faiss = _faiss()
            rows = np.array([i for i, f in enumerate(self._facts) if f.source == source], dtype=np.int64)
            # The selector keeps a pointer into `rows`: cache both together so `rows` outlives it.
            sel = faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows)) if len(rows) else None
            hit = (sel, len(rows), rows)
            self._selectors[source] = hit
        return hit[0], hit[1]

    # ----------------------------------------------------------------- proofs

    def add_proofs(self, proofs: Iterable[Proof]) -> int:
        """Store proofs (keyed by question_id + proof_id; a repeat replaces). Leaves must be stored
        fact ids (those AddResult.ids returned). Returns how many records were new or changed."""
        self._require_writable()
        staged: dict[tuple[str, str], Proof] = {}
        for p in proofs:
            missing = [leaf for leaf in p.leaves if leaf not in self._row_of_id]
            if missing:
                raise StoreError(f"proof {p.proof_id!r} of question {p.question_id!r}: leaves {missing[:3]} "
                                 "are not facts in this store; add the facts first and use the stored ids")
            staged[(p.question_id, p.proof_id)] = p
        changed = sum(1 for key, p in staged.items() if self._proofs.get(key) != p)
        self._proofs.update(staged)
        if changed:
            self._dirty = True
        return changed

    def proofs(self) -> list[Proof]:
        return list(self._proofs.values())

    # ----------------------------------------------------------------- info / export

    def _refresh_manifest(self) -> None:
        m = self._manifest
        m["format_version"] = FORMAT_VERSION
        m["encoder"]["dim"] = self._dim()
        m["index"]["mode"] = self._mode
        m["index"].update(self._index_meta(self.index_type))
        m["count"] = len(self._facts)
        m["proofs"] = len(self._proofs)
        m["sources"] = self._source_counts()
        m["files"] = {"facts": FACTS, "index": INDEX, **({"proofs": PROOFS} if self._proofs else {})}
        m["library_versions"] = _library_versions()
        m["updated"] = _now()
        m["revision"] = uuid.uuid4().hex  # lets lock-free readers notice a swap mid-read

    def _source_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self._facts:
            counts[f.source] = counts.get(f.source, 0) + 1
        return counts

    def info(self) -> dict[str, Any]:
        """The manifest as it would be saved now, plus the path and on-disk size."""
        m = json.loads(json.dumps(self._manifest))
        m["count"] = len(self._facts)
        m["proofs"] = len(self._proofs)
        m["sources"] = self._source_counts()
        m["index"]["type"] = self.index_type
        m["index"]["mode"] = self._mode
        m["path"] = str(self.path)
        m["size_bytes"] = sum(p.stat().st_size for p in self.path.glob("*") if p.is_file()) if self.path.is_dir() else 0
        m["unsaved_changes"] = self._dirty
        return m

    def export(self, path: str | os.PathLike[str], fmt: str = "jsonl") -> int:
        """Write the facts as facts JSONL ("jsonl") or one sentence per line ("text"); returns the count.
        The file is replaced atomically."""
        if fmt not in ("jsonl", "text"):
            raise InputError(f"unknown export format {fmt!r}; choose jsonl or text")
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                for f in self._facts:
                    fh.write((json.dumps(f.to_json(), ensure_ascii=False) if fmt == "jsonl" else f.text) + "\n")
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                tmp.unlink()
        return len(self._facts)

    def __repr__(self) -> str:
        return (f"KnowledgeStore({str(self.path)!r}, facts={len(self)}, encoder={self.encoder.name!r}, "
                f"index={self.index_type!r}{', writable' if self._writable else ''})")


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


def wait_unlocked(path: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """True once no writer holds the store's lock (for scripts and tests)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path) + ".lock")
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire(timeout=0.05)
            lock.release()
            return True
        except Timeout:
            if time.monotonic() > deadline:
                return False


__all__ = [
    "FORMAT_VERSION",
    "HNSW_THRESHOLD",
    "AddResult",
    "Hit",
    "KnowledgeStore",
    "fact_id_for",
    "normalise_text",
]
