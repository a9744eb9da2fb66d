"""core.engine without a cluster: the local engine, shards, configuration errors, the CLI's --engine check."""
from __future__ import annotations

import pytest

from core.engine import EngineConfig, EngineError, LocalEngine, RayEngine, is_local, make_engine, shards_of
from core.errors import InputError


def _double_worker():
    built.append(1)
    return lambda shard: [x * 2 for x in shard]


built: list[int] = []


def test_local_engine_keeps_order_and_builds_worker_once():
    built.clear()
    out = list(LocalEngine().map(_double_worker, list(range(10)), shard_size=3))
    assert out == [x * 2 for x in range(10)]
    assert built == [1]


def test_local_engine_on_nothing_builds_nothing():
    built.clear()
    assert list(LocalEngine().map(_double_worker, [], shard_size=3)) == []
    assert built == []


def test_worker_returning_wrong_count_is_an_error():
    with pytest.raises(EngineError, match="2 results for a shard of 3"):
        list(LocalEngine().map(lambda: (lambda shard: shard[:2]), [1, 2, 3], shard_size=3))


def test_shards_cover_items_in_order():
    assert shards_of([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert shards_of([1, 2], 0) == [[1], [2]]


def test_make_engine_kinds_and_bad_options():
    assert is_local(make_engine("local")) and is_local(None) and is_local(make_engine(None))
    ray = make_engine("ray", workers=2)
    assert isinstance(ray, RayEngine) and ray.config.workers == 2 and not is_local(ray)
    with pytest.raises(InputError, match="unknown engine 'spark'"):
        make_engine("spark")
    with pytest.raises(InputError, match="--workers must be at least 1"):
        EngineConfig(kind="ray", workers=0)


def test_unreachable_cluster_is_one_clear_error(monkeypatch):
    """A RAY_ADDRESS where no cluster listens: EngineError (exit 7) naming the address, no traceback."""
    pytest.importorskip("ray")
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    eng = make_engine("ray", workers=1)
    with pytest.raises(EngineError, match="cannot reach the Ray cluster at 127.0.0.1:1") as e:
        list(eng.map(_double_worker, [1, 2]))
    assert e.value.exit_code == 7
    assert "ray start --head" in str(e.value)


def test_cli_rejects_an_unknown_engine_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    src = tmp_path / "f.jsonl"
    src.write_text('{"text": "water boils at 100 degrees"}\n')
    res = CliRunner().invoke(app, ["store", "build", str(src), "--out", str(tmp_path / "s"), "-e", "hashing",
                                   "--engine", "spark"])
    assert res.exit_code == 2, res.output
    assert "unknown engine 'spark'" in res.output and not (tmp_path / "s").exists()


def test_batching_scorer_scores_concurrent_questions_in_one_call():
    """populate's engine workers share one scorer: calls from questions in flight together run as one batch,
    each caller getting exactly its own scores; an error reaches every caller of that batch."""
    import threading

    import numpy as np

    from microtheory.populate import BatchingScorer

    class Counting:
        threshold = 0.5

        def __init__(self):
            self.calls: list[int] = []

        def score_batch(self, items, batch_size=64):
            self.calls.append(len(items))
            if any(h == "boom" for _, h in items):
                raise RuntimeError("scorer failed")
            return np.asarray([float(len(h)) for _, h in items])

    inner = Counting()
    sc = BatchingScorer(inner, expect=4, wait_s=2.0)
    got: dict[int, list[float]] = {}

    def ask(i: int) -> None:
        got[i] = sc.score_batch([(["p"], "x" * (i + 1))] * (i + 1)).tolist()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {i: [float(i + 1)] * (i + 1) for i in range(4)}
    assert inner.calls == [10]  # 1+2+3+4 items, one call
    assert sc.threshold == 0.5  # the wrapped scorer's attributes show through
    with pytest.raises(RuntimeError, match="scorer failed"):
        BatchingScorer(inner, expect=1).score_batch([(["p"], "boom")])
