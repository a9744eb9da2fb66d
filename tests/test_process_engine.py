"""`--engine local --workers N`: the process engine (core.engine.ProcessEngine) and batch critique on it.

Worker processes are spawned (each imports this module to unpickle the test doubles below), so a test
here takes a second or two, not minutes: nothing loads a model."""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.engine import (
    EngineConfig,
    EngineError,
    LocalEngine,
    ProcessEngine,
    RayEngine,
    for_rows,
    make_engine,
    parallelism,
    shard_size_for,
)
from core.errors import InputError, ModelError
from core.outputs import is_header


def _engine(workers: int = 2, **kw) -> ProcessEngine:
    return ProcessEngine(EngineConfig(workers=workers, **kw))


@dataclass(frozen=True)
class _Square:
    """A worker factory that notes each build (one line per build, the process id) in `log`; the worker
    returns (x squared, its pid, its OMP_NUM_THREADS) and, on `fail_on`, raises or dies as `how` says."""

    log: str
    fail_on: int = -1
    how: str = ""

    def __call__(self):
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()}\n")

        def work(shard):
            if self.fail_on in shard:
                if self.how == "model":
                    raise ModelError("the model cannot load")
                if self.how == "input":
                    raise InputError("bad row", "in.jsonl", 7)
                if self.how == "unpicklable":
                    raise _Unpicklable("needs two arguments", 2)
                if self.how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
            return [(x * x, os.getpid(), os.environ.get("OMP_NUM_THREADS")) for x in shard]
        return work


class _Unpicklable(Exception):
    def __init__(self, message: str, code: int):  # pickling re-calls __init__ with one argument: fails
        super().__init__(message)
        self.code = code


def _builds(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


# ------------------------------------------------------------------------------------------ the engine

def test_results_in_input_order_each_process_builds_its_worker_once(tmp_path):
    log = tmp_path / "builds"
    out = list(_engine().map(_Square(str(log)), list(range(50)), shard_size=3))
    assert [o[0] for o in out] == [x * x for x in range(50)]
    pids = {o[1] for o in out}
    assert os.getpid() not in pids and len(pids) <= 2
    builds = _builds(log)
    assert len(builds) == len(set(builds)) <= 2, "one build per worker process"
    assert {str(p) for p in pids} <= set(builds)
    assert {o[2] for o in out} == {"1"}, "each worker pinned to one intra-op thread"


def test_a_warm_pool_is_reused_for_an_equal_factory(tmp_path):
    log = tmp_path / "builds"
    eng = _engine(keep_warm=True)
    try:
        a = list(eng.map(_Square(str(log)), list(range(20)), shard_size=2))
        b = list(eng.map(_Square(str(log)), list(range(20, 40)), shard_size=2))
    finally:
        eng.close()
    assert [o[0] for o in a + b] == [x * x for x in range(40)]
    builds = _builds(log)
    assert len(builds) == len(set(builds)) <= 2, "the second map built nothing again"
    assert {str(o[1]) for o in a + b} <= set(builds)
    assert eng._executor is None


def test_started_workers_build_before_the_map_and_serve_it(tmp_path):
    log = tmp_path / "builds"
    eng = _engine()
    eng.start(_Square(str(log)))
    deadline = time.monotonic() + 60
    while len(_builds(log)) < 2 and time.monotonic() < deadline:  # both build with no shard sent yet
        time.sleep(0.05)
    out = list(eng.map(_Square(str(log)), list(range(30)), shard_size=2))
    assert [o[0] for o in out] == [x * x for x in range(30)]
    builds = _builds(log)
    assert len(builds) == len(set(builds)) == 2, "both processes built in start(), once each"
    assert {str(o[1]) for o in out} <= set(builds)


@dataclass(frozen=True)
class _BrokenModel:
    def __call__(self):
        raise ModelError("no weights at /nowhere")


def test_a_build_that_fails_in_start_is_the_error_of_the_first_shard():
    eng = _engine()
    eng.start(_BrokenModel())  # does not raise: the workers build in the background
    with pytest.raises(ModelError, match="no weights at /nowhere"):
        list(eng.map(_BrokenModel(), [1, 2, 3], shard_size=1))
    assert eng._executor is None


def test_nothing_to_do_starts_nothing(tmp_path):
    log = tmp_path / "builds"
    eng = _engine()
    assert list(eng.map(_Square(str(log)), [], shard_size=3)) == []
    assert eng._executor is None and not log.exists()


@pytest.mark.parametrize("how,error,match", [("model", ModelError, "the model cannot load"),
                                             ("input", InputError, "in.jsonl:7: bad row"),
                                             ("unpicklable", EngineError, "_Unpicklable: needs two arguments")])
def test_a_worker_error_reaches_the_driver_as_itself(tmp_path, how, error, match):
    eng = _engine()
    with pytest.raises(error, match=match) as e:
        list(eng.map(_Square(str(tmp_path / "b"), fail_on=13, how=how), list(range(30)), shard_size=4))
    assert e.value.exit_code == error.exit_code
    if how == "input":
        assert (e.value.path, e.value.line) == ("in.jsonl", 7)
    assert eng._executor is None, "the pool is stopped after an error"


def test_a_killed_worker_is_one_clear_error_and_nothing_after_it_is_yielded(tmp_path):
    got = []
    with pytest.raises(EngineError, match="a worker process died .* rerun to resume") as e:
        for x in _engine().map(_Square(str(tmp_path / "b"), fail_on=17, how="kill"), list(range(40)), shard_size=4):
            got.append(x[0])
    assert e.value.exit_code == 7
    assert got == [x * x for x in range(len(got))] and len(got) <= 16, "an in-order prefix, before shard 4"


def test_a_factory_that_cannot_travel_is_one_clear_error():
    with pytest.raises(EngineError, match="cannot be sent to a process.*--workers 1"):
        list(_engine().map(lambda: (lambda shard: shard), [1, 2, 3]))


# ------------------------------------------------------------------------------ choosing the engine

def test_make_engine_local_workers(monkeypatch):
    auto, one, two = make_engine("local"), make_engine("local", 1), make_engine("local", 2)
    assert isinstance(auto, LocalEngine) and auto.auto
    assert isinstance(one, LocalEngine) and not one.auto
    assert isinstance(two, ProcessEngine) and two.workers == 2 and two.name == "process"
    assert isinstance(make_engine("ray", 2), RayEngine)
    monkeypatch.setattr("core.engine.usable_cpus", lambda: 2)
    monkeypatch.setattr("os.getloadavg", lambda: (0.3, 0.2, 0.1))
    assert isinstance(for_rows(auto, 24, 24), ProcessEngine) and for_rows(auto, 24, 24).workers == 2
    assert for_rows(auto, 23, 24) is auto and for_rows(auto, 1000, None) is auto
    assert for_rows(one, 1000, 24) is one and for_rows(two, 1, 24) is two
    monkeypatch.setattr("os.getloadavg", lambda: (0.8, 0.2, 0.1))
    assert for_rows(auto, 1000, 24) is auto, "a core busy with other work: no second process"
    monkeypatch.setattr("core.engine.usable_cpus", lambda: 16)
    assert for_rows(auto, 1000, 24).workers == 2, "at most AUTO_WORKERS"
    monkeypatch.setattr("core.engine.usable_cpus", lambda: 1)
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    assert for_rows(auto, 1000, 24) is auto, "one CPU: no second process"


def test_shards_shrink_so_every_worker_gets_several():
    assert shard_size_for(LocalEngine(), 60, 32) == 32
    assert parallelism(_engine(2)) == 2 and shard_size_for(_engine(2), 60, 32) == 8
    assert shard_size_for(_engine(2), 1000, 32) == 32 and shard_size_for(_engine(2), 3, 32) == 1


# ---------------------------------------------------------------------------------- batch critique

_FACTS = ["copper is a metal", "metals conduct electricity", "wood is an electrical insulator",
          "evaporation changes a liquid into a gas"]


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    """The demo model outputs plus a bad JSON line and an unknown answer key (error records), and a
    facts file as the microtheory."""
    rows = (Path(__file__).resolve().parent.parent / "corpora" / "model_outputs.jsonl").read_text().splitlines()
    bad_key = json.loads(rows[3])
    bad_key.update(id="bad-key", answer_key="Z")
    rows[5:5] = ["{not json", json.dumps(bad_key)]
    inp, facts = tmp_path / "in.jsonl", tmp_path / "facts.jsonl"
    inp.write_text("\n".join(rows) + "\n")
    facts.write_text("".join(json.dumps({"id": f"mt:{i}", "text": t}) + "\n" for i, t in enumerate(_FACTS)))
    return inp, facts


def _records(p: Path) -> list[dict]:
    return [r for r in (json.loads(x) for x in p.read_text().splitlines() if x.strip()) if not is_header(r)]


def test_critique_on_two_processes_writes_the_records_of_one(tmp_path):
    from critique.batch import CritiqueRunConfig, run_critique

    inp, facts = _inputs(tmp_path)
    cfg = CritiqueRunConfig(fast=True, microtheory=str(facts), batch_size=4)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    s1 = run_critique(inp, one, cfg, progress=False, engine=make_engine("local", 1))
    s2 = run_critique(inp, two, cfg, progress=False, engine=make_engine("local", 2))
    assert _records(two) == _records(one) and len(_records(one)) == s1.rows == 22
    assert [r["line"] for r in _records(two)] == list(range(1, 23))
    assert s2.errors == s1.errors == 2 and s2.written == 22
    assert one.read_text().splitlines()[0] == two.read_text().splitlines()[0], "same header: resume either way"


def test_critique_on_processes_resumes_a_partial_output(tmp_path):
    from critique.batch import CritiqueRunConfig, run_critique

    inp, facts = _inputs(tmp_path)
    cfg = CritiqueRunConfig(fast=True, microtheory=str(facts), batch_size=4)
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    run_critique(inp, full, cfg, progress=False, engine=make_engine("local", 1))
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:10]) + lines[10][:25])  # killed mid-line after 9 records
    s = run_critique(inp, part, cfg, progress=False, engine=make_engine("local", 2))
    assert s.skipped == 9 and s.written == 13
    assert _records(part) == _records(full)


def test_the_full_checks_move_to_processes_by_default_and_fast_stays(monkeypatch, tmp_path):
    """Without --workers, `critique run` hands its full checks to min(2, CPUs) processes once the rows
    to do reach AUTO_PROCESS_MIN_ROWS (a partial OUT's records do not count); --fast and --workers 1 stay."""
    from critique import batch

    monkeypatch.setattr("core.engine.idle_cpus", lambda: 2.0)
    full, fast, n = batch.CritiqueRunConfig(), batch.CritiqueRunConfig(fast=True), batch.AUTO_PROCESS_MIN_ROWS
    assert batch.critique_engine(make_engine("local"), full, n).name == "process"
    assert batch.critique_engine(make_engine("local"), full, n - 1).name == "local"
    assert batch.critique_engine(make_engine("local"), fast, 10 * n).name == "local"
    assert batch.critique_engine(make_engine("local", 1), full, 10 * n).name == "local"
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("{}\n\n" * 30)
    assert batch._rows_to_do(inp, out) == 30
    out.write_text('{"_header": {}}\n' + '{"id": "x", "line": 1}\n' * 10)
    assert batch._rows_to_do(inp, out) == 20


def test_started_workers_stop_when_the_run_fails_before_its_rows(tmp_path, monkeypatch):
    """`critique run` starts its worker processes before building its own critic; an input error after
    that (here: OUT is a user's file) stops them, and writes nothing."""
    from critique.batch import CritiqueRunConfig, run_critique

    inp, facts = _inputs(tmp_path)
    out = tmp_path / "mine.jsonl"
    out.write_text('{"my": "data"}\n')
    eng = make_engine("local", 2)
    with pytest.raises(InputError):
        run_critique(inp, out, CritiqueRunConfig(fast=True, microtheory=str(facts)), progress=False, engine=eng)
    assert eng._executor is None and out.read_text() == '{"my": "data"}\n'


@pytest.mark.slow
def test_full_checks_with_knowledge_on_two_processes_equal_this_process(tmp_path):
    """The default `critique run` (models loaded, grounded advice) on 2 worker processes vs in process."""
    from bench.speed_bench import _same_record  # floats within 1e-4: batches pad to their longest input
    from critique.batch import CritiqueRunConfig, run_critique

    inp, facts = _inputs(tmp_path)
    cfg = CritiqueRunConfig(microtheory=str(facts), batch_size=4)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run_critique(inp, one, cfg, progress=False, engine=make_engine("local", 1))
    run_critique(inp, two, cfg, progress=False, engine=make_engine("local", 2))
    a, b = _records(one), _records(two)
    assert len(a) == len(b) == 22 and sum("critique" in r for r in a) == 20
    assert all(_same_record(x, y) for x, y in zip(a, b)), [(x, y) for x, y in zip(a, b) if not _same_record(x, y)][:1]


# ------------------------------------------------------------------ the other batch commands, unchanged

def test_store_build_and_qa_on_two_processes_equal_this_process(tmp_path):
    """`--workers 2` reaches store build and QA through their existing engine workers (no change there)."""
    import numpy as np

    from retrieval.qa import QAConfig, qa_files
    from retrieval.store import KnowledgeStore
    from retrieval.store.operations import BuildOptions, InputSpec, build_store

    root = Path(__file__).resolve().parent.parent / "corpora"
    stores = {}
    for w in (1, 2):
        out = tmp_path / f"store{w}"
        build_store(InputSpec([root / "science_corpus.jsonl"]), out,
                    BuildOptions(encoder="hashing-64", batch_size=16, progress=False, engine=make_engine("local", w)))
        ks = KnowledgeStore.open(out)
        stores[w] = ([f.to_json() for f in ks], ks.vectors().copy())
    assert stores[2][0] == stores[1][0] and np.array_equal(stores[2][1], stores[1][1])
    qs = tmp_path / "q.jsonl"
    lines = (root / "science_questions.jsonl").read_text().splitlines()[:10]
    lines.insert(4, "{not json")
    qs.write_text("\n".join(lines) + "\n")
    one, two = tmp_path / "qa1.jsonl", tmp_path / "qa2.jsonl"
    cfg = QAConfig(ranker="none")  # the hand rule: no ranker models to load in three processes
    s1 = qa_files(tmp_path / "store1", qs, one, scorer="overlap", config=cfg, engine=make_engine("local", 1))
    s2 = qa_files(tmp_path / "store1", qs, two, scorer="overlap", config=cfg, engine=make_engine("local", 2))
    assert _records(two) == _records(one) and len(_records(one)) == 11
    assert (s2.answered, s2.errors, s2.correct) == (s1.answered, s1.errors, s1.correct) and s2.errors == 1


def test_qa_without_workers_moves_to_two_processes_on_an_idle_machine(tmp_path, monkeypatch):
    """`qa` without --workers: enough questions and two idle CPUs -> two worker processes, same records."""
    import core.engine as engine_mod
    from retrieval import qa as qa_mod
    from retrieval.store.operations import BuildOptions, InputSpec, build_store

    root = Path(__file__).resolve().parent.parent / "corpora"
    build_store(InputSpec([root / "science_corpus.jsonl"]), tmp_path / "s",
                BuildOptions(encoder="hashing-64", batch_size=16, progress=False))
    qs = tmp_path / "q.jsonl"
    qs.write_text("\n".join((root / "science_questions.jsonl").read_text().splitlines()[:6]) + "\n")
    cfg = qa_mod.QAConfig(ranker="none")
    one = tmp_path / "qa1.jsonl"
    qa_mod.qa_files(tmp_path / "s", qs, one, scorer="overlap", config=cfg, engine=make_engine("local", 1))
    used = []
    real_map = ProcessEngine.map

    def spy(self, *a, **k):
        used.append(self.name)
        return real_map(self, *a, **k)

    monkeypatch.setattr(ProcessEngine, "map", spy)
    monkeypatch.setattr(engine_mod, "idle_cpus", lambda: 2.0)
    monkeypatch.setattr(engine_mod, "usable_cpus", lambda: 2)
    monkeypatch.setattr(qa_mod, "QA_AUTO_MIN_ROWS", 3)
    auto = tmp_path / "qa_auto.jsonl"
    qa_mod.qa_files(tmp_path / "s", qs, auto, scorer="overlap", config=cfg, engine=make_engine("local", None))
    assert used == ["process"] and _records(auto) == _records(one) and len(_records(one)) == 6
