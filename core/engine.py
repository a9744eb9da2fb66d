"""Where the per-row work of a batch command runs: in this process (`local`) or on a Ray cluster (`ray`).

One abstraction for every command that maps a model over many rows (store build/add, critique,
QA, populate): `engine.map(make_worker, items, shard_size)` cuts `items` into ordered shards, runs
`worker(shard) -> one result per item` where `worker = make_worker()` is built once per worker
(the encoder, scorer or critic loaded once), and yields the results **in input order**. The caller
stays the one writer: it gets results one by one and writes them through its own output (an
`AppendOutput`, the store's lock and atomic save), so resume, dedup and provenance rules are the
same whichever engine computed the results.

* `LocalEngine`: builds the worker in this process and runs the shards one after another (what
  every command did before engines existed).
* `RayEngine`: connects to `$RAY_ADDRESS` (or `address`), else starts a local cluster with
  `num_cpus`; starts `workers` actors, each building its worker once (`make_worker` travels by
  cloudpickle), requesting a GPU each when the cluster has GPUs (Ray finds CUDA devices on its nodes). At most `in_flight` shards per actor
  are outstanding, so memory stays bounded and results come back in order. An actor that dies is
  restarted by Ray and its shard re-run (`max_retries`); a shard whose actor cannot be brought back
  is resubmitted to another one, so nothing is lost, and since only the driver writes, nothing is
  written twice. An exception raised by the worker code itself (a bad model, a project error) is
  re-raised in the driver as that exception.
"""
from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from core.errors import EngineError, InputError

T = TypeVar("T")
R = TypeVar("R")

#: A worker maps one shard (a list of items) to one result per item, in order.
Worker = Callable[[list[Any]], list[Any]]
#: Builds a worker; runs once per worker process (on a cluster: pickled with cloudpickle and sent there).
WorkerFactory = Callable[[], Worker]

ENGINES = ("local", "ray")
EXIT_ENGINE = EngineError.exit_code


class Engine(Protocol):
    name: str

    def map(self, make_worker: WorkerFactory, items: Sequence[Any], shard_size: int = 32) -> Iterator[Any]:
        """One result per item of `items`, in input order."""
        ...


@dataclass(frozen=True)
class EngineConfig:
    """`--engine` and `--workers`, plus what a cluster run may tune."""

    kind: str = "local"
    workers: int | None = None        # ray: actors (default: the cluster's CPUs, at least 1)
    address: str | None = None        # ray: cluster address (default: $RAY_ADDRESS, else a local cluster)
    num_cpus: int | None = None       # ray: CPUs of a local cluster started here (default: all)
    in_flight: int = 2                # ray: shards outstanding per actor
    max_retries: int = 3              # ray: restarts of a dead actor / re-runs of its shard
    concurrency: int = 1              # ray: calls one actor serves at once (populate: requests in flight)
    gpus_per_worker: float | None = None  # ray: None = 1 when CUDA is present here, else 0
    keep_warm: bool = False           # ray: keep the actors (models loaded) for the next map with an equal
                                      # worker factory, until close(); they hold their CPUs meanwhile

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise InputError(f"unknown engine {self.kind!r}: use one of {', '.join(ENGINES)}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.in_flight < 1 or self.concurrency < 1 or self.max_retries < 0:
            raise InputError("in_flight and concurrency must be >= 1, max_retries >= 0")


def make_engine(kind: str | EngineConfig | Engine | None = "local", workers: int | None = None) -> Engine:
    """The engine for `--engine KIND --workers N` (an Engine or EngineConfig passes through)."""
    if kind is None:
        return LocalEngine()
    if isinstance(kind, EngineConfig):
        cfg = kind
    elif isinstance(kind, str):
        cfg = EngineConfig(kind=kind, workers=workers)
    else:
        return kind
    return LocalEngine() if cfg.kind == "local" else RayEngine(cfg)


def is_local(engine: Engine | None) -> bool:
    return engine is None or getattr(engine, "name", "local") == "local"


def shards_of(items: Sequence[Any], shard_size: int) -> list[list[Any]]:
    size = max(int(shard_size), 1)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _checked(result: Any, shard: list[Any]) -> list[Any]:
    out = list(result)
    if len(out) != len(shard):
        raise EngineError(f"a worker returned {len(out)} results for a shard of {len(shard)} items")
    return out


class LocalEngine:
    """In this process, shard after shard: the worker is built once, on the first shard."""

    name = "local"

    def map(self, make_worker: WorkerFactory, items: Sequence[Any], shard_size: int = 32) -> Iterator[Any]:
        worker: Worker | None = None
        for shard in shards_of(items, shard_size):
            if worker is None:
                worker = make_worker()
            yield from _checked(worker(shard), shard)


# ----------------------------------------------------------------------------------------- ray

def ray_env() -> dict[str, str]:
    """Environment for the workers: no usage stats, metrics or auth token, our code importable (they
    run `core`, `retrieval`, ...), one thread per worker, and the project's and Hugging Face's
    settings (MICROTHEORY_*, HF_*, TRANSFORMERS_*: offline mode, model folders) as here."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.environ.get("PYTHONPATH", "")
    passed = {k: v for k, v in os.environ.items() if k.startswith(("MICROTHEORY_", "HF_", "TRANSFORMERS_"))}
    return {**passed, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_enable_metrics_collection": "0",
            "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "PYTHONPATH": root + (os.pathsep + path if path else ""),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "TOKENIZERS_PARALLELISM": "false"}


def ray_temp_dir() -> str:
    # Ray's unix socket paths must stay short (107 bytes): a short folder under /tmp, not $TMPDIR.
    return os.environ.get("MICROTHEORY_RAY_TMP", os.path.join("/tmp", f"ray-{os.getuid()}"))


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """`ray` initialised: the running session, the cluster at `address` / $RAY_ADDRESS, or a new
    local cluster. EngineError (one line, exit 7) when Ray is missing or the cluster unreachable."""
    try:
        import ray
    except ImportError:
        raise EngineError("--engine ray needs the ray package: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    env = ray_env()
    for k, v in env.items():
        if k != "PYTHONPATH":
            os.environ.setdefault(k, v)
    if address is not None:
        _check_reachable(address)
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                                  runtime_env={"env_vars": env})
    if address is None:
        kwargs.update(num_cpus=num_cpus, _temp_dir=ray_temp_dir())
    try:
        ray.init(address=address, **kwargs)
    except (Exception, SystemExit) as e:  # ConnectionError, RuntimeError, a timed-out GCS: no cluster to run on
        raise _unreachable(address, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    return ray


def _unreachable(address: str | None, why: str) -> EngineError:
    where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
    return EngineError(f"cannot reach {where} ({why}); start one with `ray start --head` and set RAY_ADDRESS, "
                       "or unset RAY_ADDRESS to start a local one")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at host:port."""
    import socket

    hostport = address.split("://", 1)[-1]
    if hostport in ("auto", "local") or ":" not in hostport:
        return
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as e:
        raise _unreachable(address, f"{type(e).__name__}: {e}") from None


# Device files a GPU that torch could use shows (NVIDIA, ROCm, WSL): without any, torch sees no GPU.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def cuda_present() -> bool:
    """True where torch sees a CUDA device (an engine worker then puts its models there). On a machine
    with no GPU device file, False without importing torch (seconds at start-up of a CPU-only command)."""
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in _GPU_DEVICE_FILES):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


class _Slot:
    """One actor and the shards it has in flight."""

    def __init__(self, actor: Any):
        self.actor, self.busy = actor, 0


class RayEngine:
    """An ordered actor-pool map on a Ray cluster (see the module doc)."""

    name = "ray"

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig(kind="ray")
        self._ray: Any = None
        self._factory: WorkerFactory | None = None
        self._slots: list[_Slot] = []

    def connect(self) -> Any:
        if self._ray is None:
            self._ray = connect_ray(self.config.address, self.config.num_cpus)
        return self._ray

    def gpus_per_worker(self) -> float:
        """The configured share, else 1 GPU per actor when the cluster has GPUs (CUDA on its nodes)."""
        if self.config.gpus_per_worker is not None:
            return self.config.gpus_per_worker
        return 1.0 if self.connect().cluster_resources().get("GPU", 0) >= 1 else 0.0

    def n_workers(self) -> int:
        """`workers`, else one per GPU of the cluster when it has GPUs, else one per CPU."""
        ray = self.connect()
        if self.config.workers is not None:
            return self.config.workers
        res = ray.cluster_resources()
        return max(1, int(res.get("GPU", 0)) if self.gpus_per_worker() else int(res.get("CPU", 1)))

    def _actors(self, make_worker: WorkerFactory, n: int) -> list[_Slot]:
        ray = self.connect()
        cfg = self.config
        gpus = self.gpus_per_worker()
        cls = ray.remote(_ShardActor).options(
            num_cpus=1, num_gpus=gpus, max_restarts=cfg.max_retries, max_task_retries=cfg.max_retries,
            max_concurrency=cfg.concurrency)
        return [_Slot(cls.remote(make_worker)) for _ in range(n)]

    def map(self, make_worker: WorkerFactory, items: Sequence[Any], shard_size: int = 32) -> Iterator[Any]:
        shards = shards_of(items, shard_size)
        if not shards:
            return
        slots = self._pool(make_worker)
        ok = False
        try:
            yield from self._ordered(slots, shards)
            ok = True
        finally:
            # After an error or an abandoned run the actors may be mid-shard: never reuse them. Warm
            # actors hold their CPUs (and GPUs) until close(), so they are kept only when asked.
            if not ok or not self.config.keep_warm:
                self.close()

    def _pool(self, make_worker: WorkerFactory) -> list[_Slot]:
        """The actors of the previous map when it used an equal worker factory (their models are
        loaded: a warm pool), else new ones."""
        if self._slots and self._factory == make_worker:
            for s in self._slots:
                s.busy = 0
            return self._slots
        self.close()
        self._factory = make_worker
        self._slots = self._actors(make_worker, self.n_workers())
        return self._slots

    def close(self) -> None:
        """Stop this engine's actors (the cluster stays up)."""
        for s in self._slots:
            try:
                self._ray.kill(s.actor, no_restart=True)
            except Exception:
                pass
        self._slots, self._factory = [], None

    def _ordered(self, slots: list[_Slot], shards: list[list[Any]]) -> Iterator[Any]:
        """Submit shards to the least busy actor, at most `in_flight` each and never more than the
        window ahead of the next shard to yield; yield results in shard order."""
        ray = self._ray
        todo = deque(range(len(shards)))
        refs: dict[Any, tuple[int, _Slot]] = {}
        attempts = [0] * len(shards)
        done: dict[int, list[Any]] = {}
        nxt, window = 0, len(slots) * self.config.in_flight
        while nxt < len(shards):
            while todo and todo[0] < nxt + window:
                slot = min(slots, key=lambda s: s.busy)
                if slot.busy >= self.config.in_flight:
                    break
                i = todo.popleft()
                refs[slot.actor.run.remote(shards[i])] = (i, slot)
                slot.busy += 1
            ready, _ = ray.wait(list(refs), num_returns=1)
            i, slot = refs.pop(ready[0])
            slot.busy = max(0, slot.busy - 1)  # a replaced actor's old shards come back failed
            try:
                done[i] = _checked(ray.get(ready[0]), shards[i])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as e:
                attempts[i] += 1
                if attempts[i] > self.config.max_retries:
                    raise EngineError(f"shard {i} failed on {attempts[i]} workers (last: {type(e).__name__}); "
                                      "nothing of it was written, rerun to resume") from None
                self._replace_dead(slot)
                todo.appendleft(i)
            except ray.exceptions.RayTaskError as e:  # the worker code raised: that error, here
                raise _cause(e) from None
            while nxt in done:
                yield from done.pop(nxt)
                nxt += 1

    def _replace_dead(self, slot: _Slot) -> None:
        """Ray restarts a dead actor `max_retries` times; past that, a fresh actor takes its place."""
        try:
            self._ray.get(slot.actor.ping.remote(), timeout=60)
        except Exception:
            assert self._factory is not None
            fresh = self._actors(self._factory, 1)[0]
            slot.actor, slot.busy = fresh.actor, 0


def _cause(e: Any) -> BaseException:
    """The user exception inside a RayTaskError (a MicrotheoryError keeps its class and exit code)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    return EngineError(" ".join(str(e).split())[:500])


class _ShardActor:
    """A Ray actor holding one worker (built on its first shard, again after a restart)."""

    def __init__(self, make_worker: WorkerFactory):
        import threading

        self._make, self._worker = make_worker, None
        self._lock = threading.Lock()  # a threaded actor (concurrency > 1) builds its worker once

    def ping(self) -> int:
        return os.getpid()

    def run(self, shard: list[Any]) -> list[Any]:
        with self._lock:
            if self._worker is None:
                self._worker = self._make()
        return list(self._worker(shard))


__all__ = ["ENGINES", "EXIT_ENGINE", "Engine", "EngineConfig", "EngineError", "LocalEngine", "RayEngine",
           "Worker", "WorkerFactory", "connect_ray", "cuda_present", "is_local", "make_engine", "shards_of"]
