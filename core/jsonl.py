"""JSONL reading with file:line errors, and atomic file writes (temp file beside, then rename)."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.errors import InputError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object is an InputError."""
    p = str(path)
    try:
        fh = open(p, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", p) from None
    with fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON ({e.msg} at column {e.colno})", p, n) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", p, n)
            yield n, obj


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
