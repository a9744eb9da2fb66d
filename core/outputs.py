"""Output safety, one mechanism for every command that writes.

Two kinds of output:

* **Directories** (stores, microtheories, run directories, QA output folders). A directory the
  project made carries an owner file, `.microtheory-owner.json` (kind + version + the configuration
  that made it). A command replaces only a directory of its own kind, or an empty one, and never
  one of its inputs; anything else needs `force=True` (the CLI's `--force`). The new content is
  written into a staging directory beside the target and swapped in at the end, so a failing run
  leaves the previous one whole: `with staged_dir(out, kind) as tmp: ...write into tmp...`.
  `swap_dir` is the one directory-swap primitive (stores and microtheory directories use it too).

* **Append-only JSONL files** (critique, QA, populate logs) that resume. `AppendOutput` takes an
  exclusive lock (a second writer fails at once with a clear message), writes a header record
  `{"_header": {kind, version, config}}` as the first line of a new file, and on resume refuses a
  file whose header names another kind or configuration. Readers skip the header with
  `is_header()`. A file without a header (written before headers existed, or not ours) is
  refused; `force=True` starts it afresh.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from core.errors import InputError

OWNER_FILE = ".microtheory-owner.json"
HEADER_KEY = "_header"


# ---------------------------------------------------------------------------------- shared checks

def _same_or_inside(a: Path, b: Path) -> bool:
    """True when a and b are the same path or one holds the other (resolved, links followed)."""
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def refuse_input_as_output(out: str | Path, inputs: Sequence[str | Path | None]) -> None:
    """An output that is (or holds, or lies inside) one of the inputs would destroy it: refuse."""
    for src in inputs:
        if src is None or str(src) == "":
            continue
        if Path(src).exists() and _same_or_inside(Path(out), Path(src)):
            raise InputError(f"the output would overwrite the input {src}; choose another --out", str(out))


def config_mismatch(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The configuration keys whose values differ (sorted), for a one-line error."""
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


# ------------------------------------------------------------------------------------ directories

def read_owner(path: str | Path) -> dict[str, Any] | None:
    """The owner record of a directory the project made, or None."""
    f = Path(path) / OWNER_FILE
    try:
        obj = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def write_owner(path: str | Path, kind: str, version: int = 1, config: dict[str, Any] | None = None) -> None:
    rec = {"kind": kind, "version": version, "config": config or {}}
    (Path(path) / OWNER_FILE).write_text(json.dumps(rec, indent=2, default=str) + "\n", encoding="utf-8")


def check_dir_output(out: str | Path, kind: str, *, force: bool = False,
                     inputs: Sequence[str | Path | None] = (), also_mine: Sequence[str] = ()) -> None:
    """Raise InputError (exit 2) unless `out` may be (re)written by a command that makes `kind`.

    Allowed: a path that does not exist, an empty directory, a directory whose owner file names
    `kind`, or one that `also_mine(path)`-style legacy markers prove ours (file names that only
    this project writes, for directories made before owner files existed). `force` allows any
    directory, but never a file and never one of the inputs.
    """
    p = Path(out)
    refuse_input_as_output(p, inputs)
    if not p.exists():
        return
    if not p.is_dir():
        raise InputError(f"--out is a file, not a {kind} directory; give a new path", str(p))
    if force or not any(p.iterdir()):
        return
    owner = read_owner(p)
    if owner is not None:
        if owner.get("kind") == kind:
            return
        raise InputError(f"--out holds a {owner.get('kind')}, not a {kind}; give another --out "
                         "(or --force to replace it)", str(p))
    if also_mine and all((p / name).exists() for name in also_mine):
        return
    raise InputError(f"--out exists and was not made by this command (no {OWNER_FILE}); give a new or "
                     "empty --out, or --force to replace it", str(p))


def swap_dir(new: Path, target: Path) -> None:
    """Put the finished directory `new` at `target`, replacing what was there, in two renames.

    Between the renames the old content sits at `<target>.old-<pid>`; a crash there leaves both
    whole and the next run of the same command cleans up (see `staged_dir`).
    """
    new, target = Path(new), Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def _clean_leftovers(target: Path) -> None:
    for p in target.parent.glob(f".{target.name}.*-*"):
        if p.is_dir() and (p.name.split("-")[-1]).isdigit():
            pid = int(p.name.split("-")[-1])
            if pid != os.getpid() and not _alive(pid):
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def staged_dir(out: str | Path, kind: str, *, force: bool = False, inputs: Sequence[str | Path | None] = (),
               version: int = 1, config: dict[str, Any] | None = None,
               also_mine: Sequence[str] = ()) -> Iterator[Path]:
    """Check `out`, yield an empty staging directory beside it, and swap it in when the block ends
    without an exception (the owner file is written first). On an exception the staging directory
    is removed and `out` is left exactly as it was."""
    target = Path(out)
    check_dir_output(target, kind, force=force, inputs=inputs, also_mine=also_mine)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(target)
    # our pid in the name lets a later run tell a dead run's leftovers from a live one's
    staging = target.with_name(f".{target.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        write_owner(staging, kind, version, config)
        swap_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- append-only outputs

def is_header(obj: Any) -> bool:
    return isinstance(obj, dict) and HEADER_KEY in obj


def read_header(path: str | Path) -> dict[str, Any] | None:
    """The header of an append-only output, None when the file is missing, empty or has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except OSError:
        return None
    try:
        obj = json.loads(first)
    except ValueError:
        return None
    return obj[HEADER_KEY] if is_header(obj) and isinstance(obj[HEADER_KEY], dict) else None


class AppendOutput:
    """An exclusively locked JSONL output with a configuration header; use as a context manager.

    On enter: refuses an output that is one of `inputs`; takes `<out>.lock` without waiting (a
    second writer gets a clear InputError); for an existing non-empty file checks its header:
    same kind and configuration resumes (append), anything else is refused unless `force`
    (then the file is started afresh). `resumed` tells which happened. The lock file is removed
    when the writer ends.
    """

    def __init__(self, out: str | Path, kind: str, config: dict[str, Any], *, version: int = 1,
                 force: bool = False, inputs: Sequence[str | Path | None] = ()):
        self.path, self.kind, self.version, self.force = Path(out), kind, version, force
        # compared with the header read back from JSON, so normalise it the same way (tuples -> lists)
        self.config = json.loads(json.dumps(config, default=str))
        self.inputs = inputs
        self.resumed = False
        self._lock: Any = None
        self._fh: IO[str] | None = None

    def __enter__(self) -> AppendOutput:
        from filelock import FileLock, Timeout

        refuse_input_as_output(self.path, self.inputs)
        if self.path.exists() and self.path.is_dir():
            raise InputError("--out is a directory; give a file path", str(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = FileLock(str(lock_path))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise InputError("another run is writing this output now (it holds the .lock file); wait for "
                             "it to finish or choose another --out", str(self.path)) from None
        try:
            self._open()
        except BaseException:
            self._release()
            raise
        return self

    def _open(self) -> None:
        nonempty = self.path.exists() and self.path.stat().st_size > 0
        if nonempty:
            header = read_header(self.path)
            if header is None:
                if not self.force:
                    raise InputError(f"--out exists and is not a {self.kind} output of this tool (no header "
                                     "line); choose another --out, or --force to replace it", str(self.path))
                nonempty = False
            elif header.get("kind") != self.kind:
                if not self.force:
                    raise InputError(f"--out is a {header.get('kind')} output, not {self.kind}; choose another "
                                     "--out, or --force to replace it", str(self.path))
                nonempty = False
            else:
                diff = config_mismatch(header.get("config") or {}, self.config)
                if diff and not self.force:
                    verb = "differ" if len(diff) > 1 else "differs"
                    raise InputError(f"this output was made with another configuration ({', '.join(diff)} {verb}); "
                                     "resume with the same settings, choose a new output, or --force to start it "
                                     "afresh", str(self.path))
                if diff:
                    nonempty = False
        self.resumed = nonempty
        if nonempty:
            self._repair_tail()
            self._fh = open(self.path, "a", encoding="utf-8")
        else:
            self._fh = open(self.path, "w", encoding="utf-8")
            self.write({HEADER_KEY: {"kind": self.kind, "version": self.version, "config": self.config}})

    def _repair_tail(self) -> None:
        """A kill mid-write can leave a last line without its newline: drop that partial line."""
        with open(self.path, "rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            cut = data.rfind(b"\n") + 1
            fh.truncate(cut)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to the OS, so a kill loses at most the line being written."""
        assert self._fh is not None, "AppendOutput used outside its with-block"
        self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()

    def _release(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            # Unlink while still held (as the store's lock does): a writer that opened the old file
            # and locks it after us finds it unlinked (filelock checks the link count) and retries on
            # a fresh file, so two writers never each hold a different lock file.
            Path(self._lock.lock_file).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def __exit__(self, *exc: Any) -> None:
        self._release()
