"""Batch critique of model outputs: JSONL in, exactly one JSONL record per input row out, resumable.

Input: the model-outputs JSONL of `critique.inputs` (docs/formats.md, "Model outputs and
critiques"). Output (one JSON object a line, in input order, after a header line):

    {"_header": {"kind": "critique", "version": 1, "config": {"backend": "critic", ...}}}
    {"id": "q1", "line": 1, "backend": "critic", "critique": {...Critique.to_json()...}}   # --format json
    {"id": "q1", "line": 1, "backend": "critic", "critique": "The explanation states ..."} # --format ds
    {"id": "q2", "line": 2, "backend": "critic", "error": "in.jsonl:2: missing field 'explanation'"}

A row that cannot be critiqued (bad bytes or JSON, a missing field, an unknown answer key, an
unparseable generation) gets an error record and the run goes on. The output is a
`core.outputs.AppendOutput`: locked against a second writer, refused when it is not a critique
output (a user's file) or is the input, and headed by the configuration that made it (backend,
model digest, format, advice settings and thresholds); a rerun with another configuration is
refused unless `force`. Every record is appended and flushed as soon as it is made; a rerun with
the same OUT skips the line numbers already there (a torn last line from a crash is dropped
first), so an interrupted run resumes where it stopped.

Backends come from a name -> factory registry (`BACKENDS`, a `core.registry.Registry`); the CLI's
`--backend` help is generated from it.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.engine import Engine, for_rows, is_local, parallelism, shard_size_for
from core.errors import InputError, MicrotheoryError, ModelError
from core.registry import Registry
from critique.errors import CritiqueFormatError
from critique.format import Critique, parse_ds
from critique.generative import CritiqueResult
from critique.inputs import ModelOutput, Row, iter_rows
from critique.taxonomy import LABELS, NONE

if TYPE_CHECKING:
    from critique.advice import Advisor

KIND = "critique"
FORMAT_VERSION = 1  # version 1: a header line first (files without one are from before versions)
FORMATS = ("json", "ds")


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



    def describe(self) -> dict[str, Any]:
        """The header's model identity: the critic folder and the digest of its weights."""
        from core.jsonl import path_digest
        from critique.model import DEFAULT_WEIGHTS

        path = Path(self.model or os.environ.get("MICROTHEORY_CRITIC") or DEFAULT_WEIGHTS)
        return {"model": str(self.model or "shipped critic"), "model_digest": path_digest(path)}


@dataclass(frozen=True)
class BackendOptions:
    """What every backend factory is given; a backend ignores what it does not use."""

    model: str | None = None
    batch_size: int = 32
    max_new_tokens: int | None = None
    device: str | None = None
    knowledge: Any = None   # a `Knowledge` for the checks backend's fact checks (None: no fact checks)
    fast: bool = False      # checks backend: lexical checks only (no models, no fact checks)
    lm: bool = False        # checks backend: add the SmolLM2 likelihood to the score (slow)


BackendFactory = Callable[[BackendOptions], "Backend"]

#: Critique backend name -> factory. Adding a backend: a class with `name` and `critique()` plus its
#: registration here (or `BACKENDS.register(...)` from outside the package); the CLI's --backend help
#: follows.
BACKENDS: Registry[BackendFactory] = Registry("critique backend")


@BACKENDS.register("checks", help="verifier checks + a small learned head, the default; fact checks use "
                   "--microtheory/--store")
def _checks(o: BackendOptions) -> Backend:
    from critique.head import ChecksBackend

    return ChecksBackend(head=o.model, knowledge=o.knowledge, fast=o.fast, lm=o.lm)


@BACKENDS.register("classifier", aliases=("critic",),
                   help="the end-to-end fine-tuned classifier: 3x faster, transfers worse to real outputs")
def _critic(o: BackendOptions) -> Backend:
    return CriticBackend(model=o.model, batch_size=o.batch_size, device=o.device)


@BACKENDS.register("generative", help="a causal LM with the DS prompt, default SmolLM2")
def _generative(o: BackendOptions) -> Backend:
    from critique.generative import DEFAULT_MAX_NEW_TOKENS, load_generative

    return load_generative(o.model, max_new_tokens=o.max_new_tokens or DEFAULT_MAX_NEW_TOKENS, device=o.device)


def make_backend(kind: str = "checks", model: str | None = None, **options: Any) -> Backend:
    """The backend registered as `kind` (`checks`: verifier checks + the shipped or given head;
    `classifier`: the shipped or given critic folder; `generative`: a causal LM, default SmolLM2).
    `options` are `BackendOptions` fields."""
    return BACKENDS.get(kind)(BackendOptions(model=model, **options))


def describe_backend(backend: Backend) -> dict[str, Any]:
    """The backend's part of the output header: name, model and model digest (where known)."""
    from core.jsonl import path_digest

    out: dict[str, Any] = {"backend": str(getattr(backend, "name", type(backend).__name__))}
    describe = getattr(backend, "describe", None)
    if callable(describe):
        out.update(describe())
    lm = getattr(backend, "lm", None)  # the generative critic: its language model and token budget
    if lm is not None and not callable(describe):
        model, gguf = str(getattr(lm, "model", "?")), getattr(lm, "gguf_file", None)
        out.update(model=model + (f"/{gguf}" if gguf else ""),
                   model_digest=path_digest(Path(model) / gguf if gguf else model),
                   max_new_tokens=getattr(backend, "max_new_tokens", None))
    return out


def advice_config(advisor: Advisor | None, knowledge: str | None = None) -> dict[str, Any] | None:
    """The advice part of the header: knowledge source, scorer identity and thresholds."""
    if advisor is None:
        return None
    from core.jsonl import model_identity

    sc = advisor.scorer
    scorer = model_identity(sc, "scorer") if sc is not None else {"scorer": "shipped", "scorer_digest": None}
    return {"knowledge": knowledge or type(advisor.knowledge).__name__, **scorer,
            "threshold": advisor.threshold if advisor.threshold is not None else getattr(sc, "threshold", None),
            "k": advisor.k, "min_similarity": advisor.min_similarity, "max_scored": advisor.max_scored}


def header_config(backend: Backend, fmt: str, advisor: Advisor | None = None,
                  knowledge: str | None = None) -> dict[str, Any]:
    """Everything that changes what a critique record says: resuming with another one is refused."""
    return {**describe_backend(backend), "format": fmt, "advice": advice_config(advisor, knowledge)}


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
    """line -> id of the records already in OUT (its header skipped). A line that is not a critique
    record means OUT is not a critique output: refused. (A torn last line from a crash has been cut
    off by `AppendOutput` before this reads.)"""
    from core.jsonl import iter_jsonl

    done: dict[int, str] = {}
    if not Path(out).exists():
        return done
    for n, rec in iter_jsonl(out):
        try:
            done[int(rec["line"])] = str(rec["id"])
        except (KeyError, TypeError, ValueError):
            raise InputError("not a critique output record (no 'id' / 'line'); use another --out",
                             str(out), n) from None
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
    """(count per dimension, scores, errors) over the records of OUT (its header skipped)."""
    from core.jsonl import iter_jsonl

    dims: Counter[str] = Counter()
    scores: list[int] = []
    errors = 0
    if not Path(out).exists():
        return dims, scores, errors
    for _, rec in iter_jsonl(out):
        c = rec.get("critique")
        try:
            crit = None if c is None else parse_ds(c) if isinstance(c, str) else Critique.from_json(c)
        except CritiqueFormatError:
            crit = None
        if crit is None:
            errors += 1
            continue
        dims[crit.dimension] += 1
        scores.append(crit.score)
    return dims, scores, errors


def _check_same_input(done: dict[int, str], rows: list[Row], out: Path, input_path: str | Path) -> None:
    by_line = {r.line: r for r in rows}
    for line, rid in done.items():
        if line not in by_line or by_line[line].id != rid:
            got = by_line[line].id if line in by_line else "no row"
            raise InputError(f"{out} holds line {line} with id {rid!r} but the input has {got!r}: it was written "
                             f"for another input; use another --out", str(input_path))


def _critique_rows(pending: list[Row], backend: Backend, advisor: Advisor | None, fmt: str,
                   batch_size: int) -> list[dict[str, Any]]:
    """Critique `pending` in batches: one record per row, in input order (one shard of a run)."""
    out: list[dict[str, Any]] = []
    if advisor is not None and pending:
        getattr(advisor, "prepare", lambda: None)()   # its models load in the background while the backend runs
    for start in range(0, len(pending), batch_size):
        chunk = pending[start:start + batch_size]
        good = [r for r in chunk if r.record is not None]
        results = {r.line: res for r, res in zip(good, _run(backend, [r.record for r in good if r.record]))}
        if advisor is not None:
            results.update(_advise(advisor, [(r, results[r.line]) for r in good]))
        for row in chunk:
            if row.error is not None:
                out.append(_record(row, backend.name, fmt, error=str(row.error)))
                continue
            out.append(_record(row, backend.name, fmt, results[row.line]))
    return out


def _advise(advisor: Advisor, done: list[tuple[Row, CritiqueResult]]) -> dict[int, CritiqueResult]:
    """Specific advice for a batch's critiques in one advisor call; when that call fails, row by row,
    so a row whose advice cannot be made gets an error record and the others keep theirs."""
    todo = [(row, res) for row, res in done if res.critique is not None and row.record is not None]
    try:
        crits = advisor.advise_batch([r.record for r, _ in todo], [res.critique for _, res in todo],  # type: ignore[misc]
                                     general=False)
        return {row.line: CritiqueResult(res.id, critique=c, raw=res.raw) for (row, res), c in zip(todo, crits)}
    except MicrotheoryError:
        pass
    out = {}
    for row, res in todo:
        try:
            out[row.line] = CritiqueResult(res.id, critique=advisor.advise(row.record, res.critique, general=False),  # type: ignore[arg-type]
                                           raw=res.raw)
        except MicrotheoryError as e:
            out[row.line] = CritiqueResult(res.id, error=f"advice failed: {e}", raw=res.raw)
    return out


#: Full checks (models loaded: encoder, scorer, spaCy): from this many rows to critique, an automatic
#: local engine (`critique run` without `--workers`) runs them in 2 processes when two CPUs are idle
#: (`core.engine.for_rows`); None: never. Idle, 60 rows: 22.0 s on 2 processes vs 26.3 s on 1; busy,
#: 2 processes lost at every size (docs/benchmarks.md). The break-even is estimated from the parts: a row ~0.3 s, the second process ~3-5 s more on the critical path (spawn, a second
#: critic build, 3 processes on 2 cores while starting) -> break-even ~20-33 rows. `--fast` (~3 ms a
#: row, 1.3 s start-up) never pays for a second start-up here.
AUTO_PROCESS_MIN_ROWS: int | None = 32


@dataclass(frozen=True)
class Scale:
    """How `critique_file` spreads its rows: an engine (`core.engine`), and for workers outside this
    process the recipe each builds its own backend and advisor from (loaded once per worker). Without a
    recipe the backend and advisor objects themselves are sent to the workers (they must pickle)."""

    engine: Engine
    recipe: CritiqueRunConfig | None = None


@dataclass(frozen=True)
class _ShardWorker:
    """A worker factory for `core.engine`: builds (or takes) the backend and advisor, critiques shards."""

    fmt: str
    batch_size: int
    recipe: CritiqueRunConfig | None = None
    built: tuple[Any, Any] | None = None   # (backend, advisor) when there is no recipe

    def __call__(self) -> Callable[[list[Row]], list[dict[str, Any]]]:
        backend, advisor = self.built if self.built is not None else build_critic(self.recipe)  # type: ignore[arg-type]
        if self.built is None and advisor is not None:  # a worker process: spaCy loads before its first rows
            getattr(advisor, "prepare", lambda: None)()
        return lambda shard: _critique_rows(shard, backend, advisor, self.fmt, self.batch_size)


def _shard_worker(backend: Backend, advisor: Advisor | None, fmt: str, batch_size: int,
                  scale: Scale | None) -> tuple[Engine, _ShardWorker]:
    from core.engine import LocalEngine

    if scale is None or is_local(scale.engine) or scale.recipe is None:
        engine = scale.engine if scale is not None else LocalEngine()
        return engine, _ShardWorker(fmt, batch_size, built=(backend, advisor))
    return scale.engine, _ShardWorker(fmt, batch_size, recipe=scale.recipe)


def critique_file(input_path: str | Path, out: str | Path, backend: Backend, advisor: Advisor | None = None,
                  fmt: str = "json", batch_size: int = 32, progress: bool = True, *, force: bool = False,
                  config: dict[str, Any] | None = None, scale: Scale | None = None) -> BatchSummary:
    """Critique every row of `input_path` into `out` (JSONL), skipping rows already there.

    `config`: extra header entries (e.g. the knowledge path) over `header_config(backend, fmt, advisor)`.
    `force`: start `out` afresh when it is not a critique output of this configuration.
    `scale`: where the rows are critiqued (default: here); this process alone writes OUT, in input order.
    """
    from core.jsonl import jsonable
    from core.outputs import AppendOutput

    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    out_p = Path(out)
    rows = list(iter_rows(input_path))
    if not rows:
        raise InputError("no rows in input file", str(input_path))
    header = jsonable({**header_config(backend, fmt, advisor), **(config or {})})
    written = 0
    with AppendOutput(out_p, KIND, header, version=FORMAT_VERSION, force=force, inputs=[input_path]) as sink:
        done = read_done(out_p)
        _check_same_input(done, rows, out_p, input_path)
        pending = [r for r in rows if r.line not in done]
        engine, worker = _shard_worker(backend, advisor, fmt, batch_size, scale)
        bar = None
        if progress and pending:
            from tqdm import tqdm

            n = parallelism(engine)
            where = "" if n == 1 else f", {n} {engine.name} workers" if n else f", {engine.name}"
            bar = tqdm(total=len(pending), desc=f"critique ({backend.name}{where})", unit="row")

        def emit(rec: dict[str, Any]) -> None:
            nonlocal written
            sink.write(rec)
            written += 1
            if bar is not None:
                bar.update(1)

        try:
            for rec in engine.map(worker, pending, shard_size=shard_size_for(engine, len(pending), batch_size)):
                emit(rec)
        finally:
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


@dataclass(frozen=True)
class CritiqueRunConfig:
    """`microtheory critique run`: everything but the input and output paths."""

    backend: str = "checks"
    model: str | None = None
    fast: bool = False
    lm: bool = False
    fmt: str = "json"
    batch_size: int = 32
    max_new_tokens: int = 512
    microtheory: str | Path | None = None   # knowledge to ground specific advice in (one of the two)
    store: str | Path | None = None
    scorer: str | None = None
    force: bool = False


def build_critic(cfg: CritiqueRunConfig) -> tuple[Backend, Advisor | None]:
    """The backend of `cfg` and, when it names knowledge, the advisor that grounds advice in it."""
    from critique.advice import Advisor, load_knowledge, plain_hypothesis
    from retrieval.encoder import HashingEncoder

    lexical = cfg.fast and BACKENDS.canonical(cfg.backend) == "checks"
    # Fast mode loads no model: a microtheory's facts are searched by shared words (a store still
    # searches with its own encoder) and advice is grounded by word overlap instead of entailment.
    encoder = HashingEncoder() if lexical else None
    knowledge = load_knowledge(microtheory=cfg.microtheory, store=cfg.store, encoder=encoder)
    be = make_backend(cfg.backend, model=cfg.model, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                      knowledge=knowledge, fast=cfg.fast, lm=cfg.lm)
    advisor = None
    if knowledge is not None:
        from retrieval.entail import OverlapScorer, load_scorer

        advisor = (Advisor(knowledge=knowledge, scorer=OverlapScorer(), hypothesis=plain_hypothesis) if lexical
                   else Advisor(knowledge=knowledge, scorer=load_scorer(cfg.scorer)))
    return be, advisor


def run_critique(input_path: str | Path, out: str | Path, cfg: CritiqueRunConfig,
                 progress: bool = True, engine: Engine | None = None) -> BatchSummary:
    """Build the backend and (with knowledge) the advisor of `cfg`, and critique `input_path` into `out`;
    `engine` (default: this process) runs the rows, each of its workers building its own backend. An
    automatic local engine (`make_engine("local")`, no `--workers`) moves the full checks to worker
    processes from `AUTO_PROCESS_MIN_ROWS` rows to do; other backends and `--fast` stay here. Worker
    processes are started first, so they load their models while this process builds the header's."""
    generative = BACKENDS.canonical(cfg.backend) == "generative"
    batch_size = 4 if generative else cfg.batch_size  # a generative backend decodes a few rows at a time
    engine = critique_engine(engine, cfg, _rows_to_do(input_path, out)) if engine is not None else None
    start = getattr(engine, "start", None)
    if start is not None and not is_local(engine):
        start(_ShardWorker(cfg.fmt, batch_size, recipe=cfg))
    ok = False
    try:
        be, advisor = build_critic(cfg)
        source = cfg.microtheory or cfg.store
        extra = {"advice": advice_config(advisor, str(source))} if advisor is not None else None
        summary = critique_file(input_path, out, be, advisor=advisor, fmt=cfg.fmt, batch_size=batch_size,
                                progress=progress, force=cfg.force, config=extra,
                                scale=Scale(engine, cfg) if engine is not None else None)
        ok = True
        return summary
    finally:  # workers started above that never got rows (an error, nothing left to do) stop here
        if not ok or not getattr(getattr(engine, "config", None), "keep_warm", False):
            getattr(engine, "close", lambda: None)()


def critique_engine(engine: Engine, cfg: CritiqueRunConfig, rows: int) -> Engine:
    """The engine `critique run` uses for about `rows` rows: an automatic local engine (no `--workers`)
    becomes worker processes for the full checks from AUTO_PROCESS_MIN_ROWS rows; else `engine`."""
    full_checks = BACKENDS.canonical(cfg.backend) == "checks" and not cfg.fast
    return for_rows(engine, rows, AUTO_PROCESS_MIN_ROWS if full_checks else None)


def _rows_to_do(input_path: str | Path, out: str | Path) -> int:
    """About how many rows a run will critique (the input's non-blank lines less OUT's records), read
    before the models load; the exact count is known once OUT is opened and checked."""
    def lines(p: Path) -> int:
        with p.open("rb") as fh:
            return sum(1 for line in fh if line.strip())

    inp, done = Path(input_path), Path(out)
    n = lines(inp) if inp.is_file() else 0
    return max(0, n - max(0, lines(done) - 1)) if done.is_file() else n


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
