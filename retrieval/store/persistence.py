"""Persistence and recovery: the store folder's files, the atomic save, and undoing a killed writer.

    manifest.json   format_version, kind, encoder {name, dim}, index {mode, type, factory, bytes, ...},
                    count, proofs, sources, files, library versions, created / updated, revision
                    (written last: a folder without it is not a store)
    facts.jsonl     one Fact per line; line i is vector i of the index (the source of truth)
    index.faiss     the FAISS index (derived: `repair` rebuilds it from facts.jsonl)
    proofs.jsonl    optional Proof records whose leaves are stored fact ids
    bm25/           optional BM25 (lexical) index over the facts (derived; retrieval.bm25)
    .microtheory-owner.json   the project's owner file (core.outputs), so that other commands
                    recognise the folder as a store

A save writes a complete folder beside the store (`.<name>.new-<pid>`) and swaps it in with
`core.outputs.swap_dir` (the old folder sits at `.<name>.old-<pid>` between the two renames). The
rename of the new folder into place is the commit point: a process killed at any instant leaves the
previous store or the new one loadable; a reader that finds only the `.old-` folder reads it, and
the next writer moves it back (`recover`). Folders named `<name>.tmp-*` / `<name>.old-*` are what
earlier versions left and are recognised too.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from core.errors import StoreError
from core.outputs import swap_dir, write_owner
from core.types import Fact, Proof
from retrieval.store.index import HNSW_EF_SEARCH, faiss_module, type_of

FORMAT_VERSION = 1
KIND = "microtheory.knowledge_store"
OWNER_KIND = "store"  # the kind in the core.outputs owner file
MANIFEST, FACTS, INDEX, PROOFS = "manifest.json", "facts.jsonl", "index.faiss", "proofs.jsonl"


class StoreDamagedError(StoreError):
    """A store whose derived files (the index) do not match its facts: `repair` fixes it."""

    def __init__(self, store: Path, what: str):
        self.store, self.what = store, what
        super().__init__(f"store {store} is damaged: {what}; rebuild the index from facts.jsonl "
                         f"with `microtheory store repair {store}`")


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    # importlib.metadata reads versions without importing the (heavy) packages.
    for dist in ("microtheory", "faiss-cpu", "numpy", "sentence-transformers", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------- finding the store

def _siblings(path: Path, prefixes: Iterable[str]) -> list[Path]:
    """Folders beside `path` whose names start with one of `prefixes`, newest first."""
    if not path.parent.is_dir():
        return []
    found = [p for p in path.parent.iterdir() if p.is_dir() and any(p.name.startswith(x) for x in prefixes)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def old_copies(path: Path) -> list[Path]:
    """Previous versions a writer's swap leaves for a moment (or for good, when it was killed)."""
    return _siblings(path, (f".{path.name}.old-", f"{path.name}.old-"))


def staging_dirs(path: Path) -> list[Path]:
    return _siblings(path, (f".{path.name}.new-", f"{path.name}.tmp-"))


def store_exists(path: str | os.PathLike[str]) -> bool:
    """True when `path` holds a store, or a killed writer left its previous version beside it."""
    p = Path(path)
    return (p / MANIFEST).is_file() or any((o / MANIFEST).is_file() for o in old_copies(p))


def is_store_dir(path: Path) -> bool:
    """A folder this project wrote as a store: its owner file says so, or (made before owner files)
    it has a store manifest. A microtheory or run directory is not one, even with a manifest."""
    from core.outputs import read_owner

    owner = read_owner(path)
    if owner is not None:
        return owner.get("kind") == OWNER_KIND
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind", KIND) == KIND


def readable_dir(path: Path) -> Path:
    """Where a reader finds the committed store: `path`, or during a writer's swap (or after a
    writer was killed mid-swap) the previous version beside it."""
    if (path / MANIFEST).is_file():
        return path
    for old in old_copies(path):
        if (old / MANIFEST).is_file():
            return old
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a knowledge store folder")
    if path.is_dir():
        raise StoreError(f"{path} is not a knowledge store (no {MANIFEST}); build one with `microtheory store build`")
    raise StoreError(f"no knowledge store at {path}; build one with `microtheory store build`")


def revision(src: Path) -> Any:
    """The manifest's revision token (a new one per save), or None if it cannot be read now."""
    try:
        m = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
        return (m.get("revision"), m.get("updated")) if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def recover(path: Path) -> None:
    """Under the writer lock: undo what a killed writer left. Before the commit rename the old
    version is still the store, so it is moved back; unfinished staging folders are deleted."""
    if not (path / MANIFEST).is_file():
        for old in old_copies(path):
            if (old / MANIFEST).is_file():
                if path.exists():  # an empty / partial folder where the store should be
                    if path.is_dir() and not any(path.iterdir()):
                        path.rmdir()
                    else:
                        break
                os.rename(old, path)
                fsync_dir(path.parent)
                break
    for p in staging_dirs(path) + old_copies(path):
        shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- reading

def read_manifest(src: Path) -> dict[str, Any]:
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
        raise StoreError(f"store {src} has format version {version}, newer than this microtheory reads "
                         f"({FORMAT_VERSION}); upgrade microtheory to open it")
    for key in ("encoder", "index"):
        if not isinstance(manifest.get(key), dict):
            raise StoreError(f"{mpath}: missing '{key}' section")
    return manifest


def _read_records(path: Path, what: str) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield lineno, json.loads(line)
                    except ValueError as e:
                        raise StoreError(f"{path}:{lineno}: corrupt {what} record ({e})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read {path}: {e}") from e


def _read_typed(path: Path, kind: str, from_json: Any) -> list[Any]:
    """Records of a store file as `from_json` objects; a corrupt line is a StoreError naming file:line."""
    out = []
    for lineno, rec in _read_records(path, kind):
        try:
            out.append(from_json(rec))
        except (KeyError, TypeError, AttributeError) as e:
            raise StoreError(f"{path}:{lineno}: corrupt {kind} record ({e!r})") from e
    return out


def read_facts(src: Path) -> list[Fact]:
    """The facts of a store folder, in row order."""
    return _read_typed(src / FACTS, "fact", Fact.from_json)


def read_proofs(src: Path) -> list[Proof]:
    ppath = src / PROOFS
    return _read_typed(ppath, "proof", Proof.from_json) if ppath.is_file() else []


def read_index(src: Path, manifest: dict[str, Any], n_facts: int) -> Any:
    """The FAISS index of a store folder, checked against the manifest and the facts.
    Anything wrong is a one-line StoreDamagedError (never FAISS's own multi-line message)."""
    ipath = src / INDEX
    try:
        size, want = ipath.stat().st_size, manifest["index"].get("bytes")
    except OSError:
        raise StoreDamagedError(src, f"{INDEX} is missing") from None
    if isinstance(want, int) and size != want:
        raise StoreDamagedError(src, f"{INDEX} has {size} bytes, the manifest says {want} (truncated or overwritten)")
    try:
        index = faiss_module().read_index(str(ipath))
    except Exception:  # faiss raises RuntimeError with a C++ traceback-like message
        raise StoreDamagedError(src, f"{INDEX} cannot be read as a FAISS index") from None
    if index.ntotal != n_facts:
        raise StoreDamagedError(src, f"{INDEX} holds {index.ntotal} vectors but {FACTS} holds {n_facts} facts "
                                     "(the files are inconsistent)")
    dim = manifest["encoder"].get("dim")
    if dim is not None and index.d != dim:
        raise StoreDamagedError(src, f"index dimension {index.d}, the manifest says {dim} (inconsistent)")
    if type_of(index) == "hnsw":
        index.hnsw.efSearch = int(manifest["index"].get("efSearch", HNSW_EF_SEARCH))
    return index


# ----------------------------------------------------------------------------- writing

def fsync_dir(path: Path) -> None:
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


def _jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")


def write_store(path: Path, facts: list[Fact], proofs: list[Proof], raw_index: Any,
                manifest: dict[str, Any], bm25: Any = None) -> None:
    """Write the whole store into a staging folder beside `path`, then swap it in (module docstring).
    Sets manifest["index"]["bytes"]. The caller holds the writer lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write_file(staging / FACTS, _jsonl(f.to_json() for f in facts))
        if proofs:
            _write_file(staging / PROOFS, _jsonl(p.to_json() for p in proofs))
        faiss_module().write_index(raw_index, str(staging / INDEX))
        with open(staging / INDEX, "rb") as fh:
            os.fsync(fh.fileno())
        manifest["index"]["bytes"] = (staging / INDEX).stat().st_size
        if bm25 is not None:
            bm25.save(staging)
        write_owner(staging, OWNER_KIND, FORMAT_VERSION)
        # The manifest goes last: a folder with a manifest is a complete store.
        _write_file(staging / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
        fsync_dir(staging)
        swap_dir(staging, path)  # the commit point
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
