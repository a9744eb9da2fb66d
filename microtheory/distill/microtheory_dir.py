"""The microtheory directory: what `microtheory distill` writes and what QA / critique read.

    DIR/manifest.json     {"kind": "microtheory", "format_version": 1, "strategy", "budget", "target", "size",
                           "store", "created", "library"}
    DIR/facts.jsonl       one fact a line: {"id", "text", "source": "microtheory", "origin", "provenance",
                           "usage": {"proofs", "questions"}}
    DIR/merge_map.json    {merged fact id: canonical representative id}
    DIR/report.json       the selection report (+ canonicalisation, graph summary, p-relevance)
    DIR/plots/*.png       p-relevance / coverage plots, when made
    DIR/.microtheory-owner.json  core.outputs' owner file (kind "microtheory")

Written through core.outputs.staged_dir: staged beside the target and swapped in, so a reader never
sees half a directory and a failed write leaves the previous one whole.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.outputs import staged_dir
from core.types import Fact
from retrieval.knowledge import MICROTHEORY_KIND

FORMAT_VERSION = 1
KIND = MICROTHEORY_KIND  # manifest kind and core.outputs owner kind
# A directory written before owner files existed is ours when it has all of these (a store has no merge map).
_LEGACY_FILES = ("manifest.json", "facts.jsonl", "merge_map.json", "report.json")


@dataclass(frozen=True)
class Microtheory:
    """A distilled set of facts with the run's manifest, report and merge map."""

    facts: list[Fact]
    manifest: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    merge_map: dict[str, str] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.facts)

    def texts(self) -> list[str]:
        return [f.text for f in self.facts]


def _write_files(tmp: Path, facts: list[Fact], usage: dict[str, dict[str, int]], manifest: dict[str, Any],
                 report: dict[str, Any], merge_map: dict[str, str], plots: dict[str, bytes] | None) -> None:
    man = {"kind": KIND, "format_version": FORMAT_VERSION, **manifest, "size": len(facts),
           "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}
    man.setdefault("library", _version())
    (tmp / "manifest.json").write_text(json.dumps(man, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(tmp / "facts.jsonl", "w", encoding="utf-8") as fh:
        for f in facts:
            rec = {"id": f.id, "text": f.text, "source": "microtheory", "origin": f.source,
                   "provenance": f.provenance, "usage": usage.get(f.id, {"proofs": 0, "questions": 0})}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    (tmp / "merge_map.json").write_text(json.dumps(merge_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
                                     encoding="utf-8")
    if plots:
        (tmp / "plots").mkdir()
        for name, data in plots.items():
            (tmp / "plots" / name).write_bytes(data)


def write_microtheory(out: str | Path, facts: list[Fact], usage: dict[str, dict[str, int]],
                      manifest: dict[str, Any], report: dict[str, Any], merge_map: dict[str, str],
                      plots: dict[str, bytes] | None = None, overwrite: bool = True) -> Path:
    """Write the directory through `core.outputs.staged_dir` (staged beside, swapped in, owner file).
    `facts` keep their store source as "origin"; `plots` maps a file name to PNG bytes.

    Replaces only a microtheory directory (and only with `overwrite`); a folder of another kind, or
    the input store named in `manifest["store"]`, is refused."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError("exists; give --force to replace it", str(out))
    store = manifest.get("store")
    with staged_dir(out, KIND, inputs=[store] if isinstance(store, (str, Path)) else [], version=FORMAT_VERSION,
                    also_mine=_LEGACY_FILES) as tmp:
        _write_files(tmp, facts, usage, manifest, report, merge_map, plots)
    return out


def read_microtheory(path: str | Path) -> Microtheory:
    """Read a microtheory directory; refuses a newer format version and malformed lines (file:line)."""
    path = Path(path)
    man_path = path / "manifest.json"
    if not man_path.is_file():
        raise InputError("not a microtheory directory (no manifest.json)", str(path))
    try:
        manifest = json.loads(man_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"manifest is not JSON: {e}", str(man_path)) from None
    if manifest.get("kind") != KIND:
        raise InputError(f"manifest kind is {manifest.get('kind')!r}, expected {KIND!r}", str(man_path))
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"format version {manifest['format_version']} is newer than this library reads "
                         f"({FORMAT_VERSION}); upgrade microtheory", str(man_path))
    facts: list[Fact] = []
    usage: dict[str, dict[str, int]] = {}
    fpath = path / "facts.jsonl"
    with open(fpath, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                facts.append(Fact(str(d["id"]), str(d["text"]), "microtheory", list(d.get("provenance") or [])))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InputError(f"bad fact record ({e.__class__.__name__}: {e})", str(fpath), n) from None
            usage[facts[-1].id] = dict(d.get("usage") or {})
    report = _read_json(path / "report.json", {})
    merge_map = _read_json(path / "merge_map.json", {})
    return Microtheory(facts, manifest, report, merge_map, usage)


def _read_json(p: Path, default: Any) -> Any:
    if not p.is_file():
        return default
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON: {e}", str(p)) from None


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"microtheory {version('microtheory')}"
    except Exception:  # pragma: no cover - running from a source tree without install metadata
        return "microtheory (source)"
