"""JSONL reading with file:line errors, atomic file writes (temp file beside, then rename), and
content digests of model files (what a resumable output's header records as the model it used)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from core.errors import InputError

#: Called with the InputError of a bad line (naming file:line); reading then goes on with the next line.
OnError = Callable[[InputError], None]


def _parse_line(raw: bytes, path: str, n: int) -> dict[str, Any]:
    """One raw line -> its JSON object, or an InputError naming path:n and what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                         "re-save the file as UTF-8", path, n) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at column {e.colno})", path, n) from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, n)
    return obj


def iter_jsonl(path: str | Path, on_error: OnError | None = None, *,
               skip_header: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file.

    A line that is not UTF-8, not JSON or not a JSON object is an InputError naming `file:line`:
    raised when `on_error` is None, else passed to `on_error` and reading goes on (per-row
    tolerance: the caller turns it into an error record). The header record of an append-only
    output (`core.outputs`, `{"_header": ...}` on the first line) is skipped unless `skip_header`
    is False, so every reader of those outputs reads data records only. A missing or unreadable
    file is always an InputError.
    """
    from core.outputs import is_header  # core.outputs may use this module: import late

    p = str(path)
    try:
        fh = open(p, "rb")
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", p) from None
    first = True
    with fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = _parse_line(raw, p, n)
            except InputError as e:
                if on_error is None:
                    raise
                on_error(e)
                first = False
                continue
            if first and skip_header and is_header(obj):
                first = False
                continue
            first = False
            yield n, obj


_DIGESTS: dict[tuple[str, int, int], str] = {}
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx")


def path_digest(path: str | Path | None, length: int = 12) -> str | None:
    """First `length` hex digits of the sha256 of a model's weights: the file itself, or for a folder
    its weight file (.safetensors, .gguf, .bin, ...; several, or every file when it has none: a digest
    over their names and digests).
    None when `path` is None or does not exist (a hub name, "overlap"): then the name is the identity.
    Cached per process by (path, size, mtime): hashing 20 MB takes a tenth of a second, not nothing."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return None
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)
    if not files and p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
    h = hashlib.sha256()
    key = ("", 0, 0)
    for f in files:
        st = f.stat()
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _DIGESTS:
            fh = hashlib.sha256()
            with open(f, "rb") as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    fh.update(block)
            _DIGESTS[key] = fh.hexdigest()
        h.update(f.name.encode("utf-8") + b"\0" + _DIGESTS[key].encode("ascii"))
    # one weights file (the usual case): its own sha256, so `sha256sum FILE` can check the header
    return (_DIGESTS[key] if len(files) == 1 else h.hexdigest())[:length]


def jsonable(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples become lists, paths strings): an output header is
    compared with the one read from the file, so it must be built in this form."""
    return json.loads(json.dumps(obj, ensure_ascii=False, default=str))


def model_identity(model: Any, role: str) -> dict[str, Any]:
    """What a resumable output's header says about a model object (scorer, encoder, critic):
    `{role}` its name, `{role}_digest` the digest of its weights when it names a local path."""
    name = getattr(model, "name", None) or type(model).__name__
    return {role: str(name), f"{role}_digest": path_digest(getattr(model, "path", None))}


def atomic_write_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Write lines to `path` so that a crash leaves either the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line.rstrip("\n") + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_lines(path, [json.dumps(obj, ensure_ascii=False, indent=2, default=str)])


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    return atomic_write_lines(path, (json.dumps(r, ensure_ascii=False) for r in records))
