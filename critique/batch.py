"""Batch critique of model outputs: JSONL in, exactly one JSONL record per input row out, resumable.

Input: the model-outputs JSONL of `critique.inputs` (docs/formats.md, "Model outputs and
critiques"). Output (one JSON object a line, in input order):

    {"id": "q1", "line": 1, "backend": "critic", "critique": {...Critique.to_json()...}}   # --format json
    {"id": "q1", "line": 1, "backend": "critic", "critique": "The explanation states ..."} # --format ds
    {"id": "q2", "line": 2, "backend": "critic", "error": "in.jsonl:2: missing field 'explanation'"}

A row that cannot be critiqued (bad JSON, a missing field, an unknown answer key, an unparseable
generation) gets an error record and the run goes on. Every record is appended and flushed as soon
as it is made; a rerun with the same OUT reads the line numbers already there and skips them (a
torn last line from a crash is dropped first), so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from critique.advice import Advisor
from critique.errors import CritiqueFormatError
from critique.format import Critique, parse_ds
from critique.generative import CritiqueResult
from critique.inputs import ModelOutput, Row, iter_rows
from critique.taxonomy import LABELS, NONE
from core.errors import InputError, MicrotheoryError, ModelError

FORMATS = ("json", "ds")
BACKENDS = ("critic", "generative")


class Backend(Protocol):
    """Anything that critiques a batch of records: one CritiqueResult per record, in order."""

    name: str

    def critique(self, records: Sequence[ModelOutput]) -> list[CritiqueResult]:
        ...


@dataclass
class CriticBackend:
    """The fine-tuned critic (`critique.model.load_critic`) as a backend; loads on first use."""

    model: str | None = None
    batch_size: int = 32
    device: str | None = None
    name: str = "critic"
    _critic: Any = field(default=None, repr=False)

    def critique(self, records: Sequence[ModelOutput]) -> list[CritiqueResult]:
        if self._critic is None:
            from critique.model import load_critic

            self._critic = load_critic(self.model, device=self.device)
        crits = self._critic.predict(list(records), batch_size=self.batch_size)
        return [CritiqueResult(r.id, critique=c) for r, c in zip(records, crits)]


def make_backend(kind: str = "critic", model: str | None = None, batch_size: int = 32,
                 max_new_tokens: int | None = None, device: str | None = None) -> Backend:
    """`critic` (the shipped or given critic folder) or `generative` (a causal LM; default SmolLM2)."""
    if kind == "critic":
        return CriticBackend(model=model, batch_size=batch_size, device=device)
    if kind == "generative":
        from critique.generative import DEFAULT_MAX_NEW_TOKENS, load_generative

        return load_generative(model, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS, device=device)
    raise InputError(f"unknown backend {kind!r}: use one of {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class BatchSummary:
    """What a run did, and the totals over everything in OUT (this run and earlier ones)."""

    out: str
    rows: int            # input rows
    written: int         # records this run wrote
    skipped: int         # rows already in OUT
    errors: int          # error records in OUT
    per_dimension: dict[str, int]
    mean_score: float | None
    share_flawed: float | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"out": self.out, "rows": self.rows, "written": self.written, "skipped": self.skipped,
                "errors": self.errors, "per_dimension": self.per_dimension, "mean_score": self.mean_score,
                "share_flawed": self.share_flawed, "seconds": round(self.seconds, 2)}


def read_done(out: Path) -> dict[int, str]:
    """line -> id of the records already in OUT; a torn (unparseable) last line is cut off."""
    if not out.exists():
        return {}
    data = out.read_bytes()
    done: dict[int, str] = {}
    good_end = 0
    pos = 0
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        end = pos + len(raw) + (1 if i < len(lines) - 1 else 0)
        if raw.strip():
            try:
                rec = json.loads(raw)
                done[int(rec["line"])] = str(rec["id"])
            except (ValueError, KeyError, TypeError):
                if i >= len(lines) - 2 and not data[end:].strip():
                    break  # the torn tail of an interrupted run: cut it off below
                raise InputError("not a critique output record (no 'id' / 'line'); use another --out",
                                 str(out), i + 1) from None
        pos = end
        good_end = end
    if good_end < len(data):
        with out.open("r+b") as f:
            f.truncate(good_end)
    if data[:good_end] and not data[:good_end].endswith(b"\n"):
        with out.open("ab") as f:
            f.write(b"\n")
    return done


def _record(row: Row, backend: str, fmt: str, res: CritiqueResult | None = None,
            error: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": row.id, "line": row.line, "backend": backend}
    if res is not None and res.critique is not None:
        rec["critique"] = res.critique.to_ds() if fmt == "ds" else res.critique.to_json()
    else:
        rec["error"] = error or (res.error if res is not None else None) or "no critique"
        if res is not None and res.raw is not None:
            rec["raw"] = res.raw
    return rec


def summarise(out: Path) -> tuple[Counter[str], list[int], int]:
    """(count per dimension, scores, errors) over the records of OUT."""
    dims: Counter[str] = Counter()
    scores: list[int] = []
    errors = 0
    if not out.exists():
        return dims, scores, errors
    for raw in out.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        rec = json.loads(raw)
        c = rec.get("critique")
        if c is None:
            errors += 1
            continue
        try:
            crit = parse_ds(c) if isinstance(c, str) else Critique.from_json(c)
        except CritiqueFormatError:
            errors += 1
            continue
        dims[crit.dimension] += 1
        scores.append(crit.score)
    return dims, scores, errors


def critique_file(input_path: str | Path, out: str | Path, backend: Backend, advisor: Advisor | None = None,
                  fmt: str = "json", batch_size: int = 32, progress: bool = True) -> BatchSummary:
    """Critique every row of `input_path` into `out` (JSONL), skipping rows already there."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    out_p = Path(out)
    rows = list(iter_rows(input_path))
    if not rows:
        raise InputError("no rows in input file", str(input_path))
    done = read_done(out_p)
    by_line = {r.line: r for r in rows}
    for line, rid in done.items():
        if line not in by_line or by_line[line].id != rid:
            got = by_line[line].id if line in by_line else "no row"
            raise InputError(f"{out_p} holds line {line} with id {rid!r} but the input has {got!r}: it was written "
                             f"for another input; use another --out", str(input_path))
    pending = [r for r in rows if r.line not in done]
    out_p.parent.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress and pending:
        from tqdm import tqdm

        bar = tqdm(total=len(pending), desc=f"critique ({backend.name})", unit="row")
    written = 0
    with out_p.open("a", encoding="utf-8") as f:
        def emit(rec: dict[str, Any]) -> None:
            nonlocal written
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            written += 1
            if bar is not None:
                bar.update(1)

        for start in range(0, len(pending), batch_size):
            chunk = pending[start:start + batch_size]
            good = [r for r in chunk if r.record is not None]
            results = {r.line: res for r, res in zip(good, _run(backend, [r.record for r in good if r.record]))}
            for row in chunk:  # input order
                if row.error is not None:
                    emit(_record(row, backend.name, fmt, error=str(row.error)))
                    continue
                res = results[row.line]
                if res.critique is not None and advisor is not None and row.record is not None:
                    try:
                        res = CritiqueResult(res.id, critique=advisor.advise(row.record, res.critique, general=False),
                                             raw=res.raw)
                    except MicrotheoryError as e:
                        res = CritiqueResult(res.id, error=f"advice failed: {e}", raw=res.raw)
                emit(_record(row, backend.name, fmt, res))
    if bar is not None:
        bar.close()
    dims, scores, errors = summarise(out_p)
    n_ok = sum(dims.values())
    return BatchSummary(
        out=str(out_p), rows=len(rows), written=written, skipped=len(rows) - len(pending), errors=errors,
        per_dimension={lab: dims.get(lab, 0) for lab in LABELS},
        mean_score=round(sum(scores) / len(scores), 3) if scores else None,
        share_flawed=round(1 - dims.get(NONE, 0) / n_ok, 3) if n_ok else None,
        seconds=time.perf_counter() - t0)


def _run(backend: Backend, records: list[ModelOutput]) -> list[CritiqueResult]:
    """The backend on a batch; when the batch fails on its input, each record alone, so one bad row
    costs one record. A ModelError (the model cannot load or run) stops the run: nothing is written
    for the rows it did not reach, and a rerun resumes there."""
    if not records:
        return []
    try:
        res = backend.critique(records)
        if len(res) == len(records):
            return res
    except ModelError:
        raise
    except MicrotheoryError:
        pass
    out = []
    for r in records:
        try:
            one = backend.critique([r])
            out.append(one[0] if len(one) == 1 else CritiqueResult(r.id, error="backend returned no critique"))
        except ModelError:
            raise
        except MicrotheoryError as e:
            out.append(CritiqueResult(r.id, error=f"{type(e).__name__}: {e}"))
    return out
