"""`--engine ray` gives the local engine's results: same critique records, same store facts and ids,
same QA answers, same populate log, on a local Ray cluster of 2 CPUs started here (no dashboard, no
network); a worker killed mid-run loses and duplicates nothing."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from core.engine import EngineConfig, RayEngine, connect_ray  # noqa: E402
from core.outputs import is_header  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local 2-CPU cluster for the module (starting one takes 10-25 s on a busy 2-core machine)."""
    if ray.is_initialized():
        ray.shutdown()
    # test doubles defined in this module travel to the workers by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    connect_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _engine(workers: int = 2, **kw) -> RayEngine:
    return RayEngine(EngineConfig(kind="ray", workers=workers, **kw))


def _records(p: Path) -> list[dict]:
    return [r for r in (json.loads(x) for x in p.read_text().splitlines() if x.strip()) if not is_header(r)]


# ------------------------------------------------------------------------------------- the engine

class _Dies:
    """Kills its own worker process the first time it sees `victim` (a marker file says it happened)."""

    def __init__(self, marker: str, victim: int):
        self.marker, self.victim = marker, victim

    def __call__(self):
        def work(shard):
            if self.victim in shard and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)  # the actor dies mid-shard, as on a lost node
            return [(x, x * x) for x in shard]
        return work


def test_ordered_map_equals_local(cluster):
    from core.engine import LocalEngine

    items = list(range(47))
    local = list(LocalEngine().map(_Dies("/nonexistent/never", -1), items, shard_size=5))
    assert list(_engine().map(_Dies("/nonexistent/never", -1), items, shard_size=5)) == local


def test_killed_worker_loses_and_duplicates_nothing(cluster, tmp_path):
    marker = tmp_path / "died"
    items = list(range(40))
    out = list(_engine(max_retries=2).map(_Dies(str(marker), victim=17), items, shard_size=4))
    assert marker.exists(), "the worker never died: the test proved nothing"
    assert out == [(x, x * x) for x in items]


def test_worker_error_comes_back_as_itself(cluster):
    from core.errors import ModelError

    def make():
        def work(shard):
            raise ModelError("the model cannot load")
        return work

    with pytest.raises(ModelError, match="the model cannot load"):
        list(_engine().map(make, [1, 2, 3], shard_size=1))
