"""`run_pipeline(config, out, options)`: check the inputs, run every stage into a staging directory
beside `out`, record each stage's status, write summary.json (and the report), and swap the new
run directory in (`pipeline.run_dir`).

A stage whose code or shipped weights are not available is recorded as `skipped` with the reason,
never faked; a stage that raises a project error is `failed` with the message, and the stages
that depend on it are skipped. A run with a failed stage never replaces an earlier run at `out`:
that one is kept whole and the result says so (`RunResult.written` is False).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from core.errors import MicrotheoryError
from pipeline import run_dir as rd
from pipeline.config import RunConfig, check_inputs
from pipeline.results import Skip
from pipeline.stages import (
    StageEnv,
    stage_corpus,
    stage_critique,
    stage_distill,
    stage_inputs,
    stage_knowledge,
    stage_qa,
)
from pipeline.summary import build_summary

STAGES = ("inputs", "corpus_store", "knowledge_store", "distill", "qa", "critique")
T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what: that is the RunConfig). `force`: replace an `out` that is not a run
    directory. `report`: write report.html into the run. `critic_backend`: a
    `critique.batch.Backend` to use instead of the configured critic (tests). `config_path`: the
    config file, which must not be `out` or inside it."""

    force: bool = False
    progress: bool = True
    report: bool = False
    critic_backend: Any = None
    config_path: str | Path | None = None


@dataclass
class RunResult:
    """`summary` (also in `out/summary.json` when `written`); `written` is False when a stage failed
    and the earlier run at `out` was kept; `report`: the report's path when one was written."""

    summary: dict[str, Any]
    out: Path
    written: bool
    report: Path | None = None


@dataclass
class StageLog:
    """Status, reason, seconds and details of every stage, in run order."""

    progress: bool = True
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[[], T]) -> T | None:
        """Run one stage; its typed result, or None when it was skipped or failed."""
        self.say(f"[{name}] ...")
        t0 = time.perf_counter()
        result: Any = None
        rec: dict[str, Any]
        try:
            result = fn()
            rec = {"status": "ok", **result.record()}
        except Skip as e:
            rec = {"status": "skipped", "reason": str(e)}
        except MicrotheoryError as e:
            rec = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        self.stages[name] = rec
        tail = "" if rec["status"] == "ok" else f": {rec['reason']}"
        self.say(f"[{name}] {rec['status']} in {rec['seconds']:.1f} s{tail}")
        return result if rec["status"] == "ok" else None

    def say(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)


def _need(result: T | None, stage: str) -> T:
    if result is None:
        raise Skip(f"needs the {stage} stage, which did not run")
    return result


def _close(*results: Any) -> None:
    for r in results:
        store = getattr(r, "store", None)
        if store is not None and hasattr(store, "close"):
            store.close()


def run_stages(env: StageEnv, critic_backend: Any = None) -> dict[str, dict[str, Any]]:
    """Every stage in order into `env.out`; the stage records (status, reason, seconds, details)."""
    log = StageLog(progress=env.progress)
    inputs = log.run("inputs", lambda: stage_inputs(env))
    if inputs is None:
        return log.stages
    corpus = knowledge = None
    try:
        corpus = log.run("corpus_store", lambda: stage_corpus(env, inputs))
        knowledge = log.run("knowledge_store", lambda: stage_knowledge(env, inputs, _need(corpus, "corpus_store")))
        mt = log.run("distill", lambda: stage_distill(env, inputs, _need(corpus, "corpus_store"),
                                                      _need(knowledge, "knowledge_store")))
        log.run("qa", lambda: stage_qa(env, inputs, _need(corpus, "corpus_store"), mt))
        log.run("critique", lambda: stage_critique(env, inputs, mt, critic_backend))
    finally:
        _close(corpus, knowledge)
    return log.stages


class _KeepEarlierRun(Exception):
    """Raised inside the staging block so that a failed run is discarded and the earlier one kept."""

    def __init__(self, summary: dict[str, Any]):
        super().__init__("a stage failed")
        self.summary = summary


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_pipeline(config: RunConfig, out_dir: str | Path, options: RunOptions | None = None) -> RunResult:
    """Run every stage on `config`'s data into the run directory `out_dir` (see `pipeline.run_dir`).

    Before anything is written: every input file must exist, and `out_dir` must be new, empty, a
    run directory, or (with `options.force`) any folder that is not an input (InputError, exit 2)."""
    from core.jsonl import atomic_write_json

    opts = options or RunOptions()
    target = Path(out_dir)
    inputs = [*check_inputs(config), opts.config_path]
    t0, started = time.perf_counter(), _now()
    try:
        with rd.staged_run_dir(target, config.to_json(), force=opts.force, inputs=inputs) as staging:
            atomic_write_json(staging / rd.CONFIG, config.to_json())
            stages = run_stages(StageEnv(config, staging, opts.progress), opts.critic_backend)
            summary = build_summary(config.name, stages, started, time.perf_counter() - t0)
            atomic_write_json(staging / rd.SUMMARY, summary)
            if summary["status"] == "failed" and rd.has_content(target):
                raise _KeepEarlierRun(summary)
            if opts.report:
                from pipeline.report import write_report

                write_report(staging)
    except _KeepEarlierRun as e:
        return RunResult(e.summary, target, written=False)
    return RunResult(summary, target, written=True, report=(target / rd.REPORT) if opts.report else None)
