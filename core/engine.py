"""Where the per-row work of a batch command runs: on this machine (`local`: in this process, or in
`--workers N` processes) or on a Ray cluster (`ray`).

One abstraction for every command that maps a model over many rows (store build/add, critique,
QA, populate): `engine.map(make_worker, items, shard_size)` cuts `items` into ordered shards, runs
`worker(shard) -> one result per item` where `worker = make_worker()` is built once per worker
(the encoder, scorer or critic loaded once), and yields the results **in input order**. The caller
stays the one writer: it gets results one by one and writes them through its own output (an
`AppendOutput`, the store's lock and atomic save), so resume, dedup and provenance rules are the
same whichever engine computed the results.

* `LocalEngine`: builds the worker in this process and runs the shards one after another (what
  every command did before engines existed; `--workers 1`).
* `ProcessEngine`: `--engine local --workers N` (N > 1): N worker processes on this machine, a
  `spawn` pool (never fork a process that holds torch / ONNX Runtime thread pools), each process
  pinned to one intra-op thread (`thread_env`: two workers on two cores must not oversubscribe them)
  and building its worker once, as it starts (`make_worker` travels by pickle: a module-level class,
  as every command's recipe worker is; a lambda is refused in one line). Why not a third engine
  name: `--workers` then means the same on both engines (how many copies of the models run at once),
  a user with a multi-core laptop needs no new word, and `--workers 1` is exactly the in-process
  path. Without `--workers` the command decides (`for_rows`): the critique's full checks and `qa`
  move to 2 processes from a row count the command sets (where a second worker's start-up, models and spaCy:
  seconds, pays for itself), and only while two CPUs are idle (1-minute load average): on a busy machine
  a second process only repeats the start-up. Everything else stays in this process. A worker
  process that dies ends the run with an EngineError (exit 7): the rows before its shard are
  written, nothing after, and a rerun resumes. It is not retried (a local process dies of a signal
  or of memory, which a retry would meet again).
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

import dataclasses
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
#: An automatic local engine (`--workers` not given) moves to at most this many processes: the
#: measured case (2 cores); more with `--workers N`.
AUTO_WORKERS = 2
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
    workers: int | None = None        # local: processes (1: this one; None: the command decides);
                                      # ray: actors (default: the cluster's CPUs, at least 1)
    address: str | None = None        # ray: cluster address (default: $RAY_ADDRESS, else a local cluster)
    num_cpus: int | None = None       # ray: CPUs of a local cluster started here (default: all)
    in_flight: int = 2                # shards outstanding per worker (actor or process)
    max_retries: int = 3              # ray: restarts of a dead actor / re-runs of its shard
    concurrency: int = 1              # ray: calls one actor serves at once (populate: requests in flight)
    gpus_per_worker: float | None = None  # ray: None = 1 when CUDA is present here, else 0
    keep_warm: bool = False           # keep the workers (models loaded) for the next map with an equal
                                      # worker factory, until close(); they hold their CPUs meanwhile
    threads: int = 1                  # local processes: intra-op threads each (OMP, ONNX Runtime, torch)

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise InputError(f"unknown engine {self.kind!r}: use one of {', '.join(ENGINES)}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.in_flight < 1 or self.concurrency < 1 or self.max_retries < 0 or self.threads < 1:
            raise InputError("in_flight, concurrency and threads must be >= 1, max_retries >= 0")


def make_engine(kind: str | EngineConfig | Engine | None = "local", workers: int | None = None) -> Engine:
    """The engine for `--engine KIND --workers N` (an Engine or EngineConfig passes through): local
    without N an automatic LocalEngine (see `for_rows`), local with N = 1 this process, local with
    N > 1 a ProcessEngine, ray a RayEngine."""
    if kind is None:
        return LocalEngine()
    if isinstance(kind, EngineConfig):
        cfg = kind
    elif isinstance(kind, str):
        cfg = EngineConfig(kind=kind, workers=workers)
    else:
        return kind
    if cfg.kind == "ray":
        return RayEngine(cfg)
    if cfg.workers is None or cfg.workers == 1:
        return LocalEngine(auto=cfg.workers is None, config=cfg)
    return ProcessEngine(cfg)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def idle_cpus() -> float:
    """CPUs no other process is using, on average over the last minute: usable CPUs less the 1-minute
    load average (all usable CPUs where the OS has no load average)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(0.0, usable_cpus() - load)


def for_rows(engine: Engine | None, rows: int, min_rows: int | None) -> Engine:
    """The engine to run `rows` rows on. An automatic local engine (`--engine local` without
    `--workers`) becomes min(AUTO_WORKERS, idle CPUs) processes when `rows >= min_rows` (the command's
    break-even, estimated: below it a second worker's start-up costs more than it saves) and at least
    two CPUs are idle (on a busy machine a second process only repeats the start-up: measured slower);
    else it stays in this process, as does `min_rows=None` (not measured for this work). Any other
    engine is returned as it is."""
    if engine is None:
        return LocalEngine()
    if not getattr(engine, "auto", False) or min_rows is None or rows < min_rows:
        return engine
    n = min(AUTO_WORKERS, int(idle_cpus() + 0.5))
    if n < 2:
        return engine
    return ProcessEngine(dataclasses.replace(engine.config, workers=n))  # type: ignore[attr-defined]


def parallelism(engine: Engine | None) -> int | None:
    """How many workers run shards at once (1 in process; None when only the cluster knows)."""
    if engine is None or is_local(engine):
        return 1
    return getattr(getattr(engine, "config", None), "workers", None)


def shard_size_for(engine: Engine | None, items: int, batch_size: int, per_worker: int = 4) -> int:
    """`batch_size`, but small enough that each of the engine's workers gets about `per_worker`
    shards, so the last shards do not leave workers idle (at least 1)."""
    n = parallelism(engine)
    if not n or n <= 1:
        return batch_size
    return max(1, min(batch_size, -(-items // (n * per_worker))))


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
    """In this process, shard after shard: the worker is built once, on the first shard. `auto`: made
    for `--engine local` without `--workers`, so a command may move it to processes (`for_rows`)."""

    name = "local"

    def __init__(self, auto: bool = False, config: EngineConfig | None = None):
        self.auto, self.config = auto, config or EngineConfig()

    def map(self, make_worker: WorkerFactory, items: Sequence[Any], shard_size: int = 32) -> Iterator[Any]:
        worker: Worker | None = None
        for shard in shards_of(items, shard_size):
            if worker is None:
                worker = make_worker()
            yield from _checked(worker(shard), shard)


class _InOrder:
    """Shards handed out in order, at most `window` ahead of the next one to yield, and their results
    yielded in shard order whatever order they finish in (the ordering both pool engines share)."""

    def __init__(self, n_shards: int, window: int):
        self.todo: deque[int] = deque(range(n_shards))
        self.done: dict[int, list[Any]] = {}
        self.n, self.next, self.window = n_shards, 0, window

    @property
    def finished(self) -> bool:
        return self.next >= self.n

    def can_submit(self) -> bool:
        return bool(self.todo) and self.todo[0] < self.next + self.window

    def take(self) -> int:
        return self.todo.popleft()

    def again(self, i: int) -> None:
        self.todo.appendleft(i)

    def finish(self, i: int, results: list[Any]) -> None:
        self.done[i] = results

    def ready(self) -> Iterator[Any]:
        while self.next in self.done:
            yield from self.done.pop(self.next)
            self.next += 1


class _PoolEngine:
    """What the process and Ray engines share: shards, a pool built from the worker factory (kept
    warm for an equal factory when asked), closed after an error or an abandoned run."""

    name = "pool"

    def __init__(self, config: EngineConfig):
        self.config = config
        self._factory: WorkerFactory | None = None

    def map(self, make_worker: WorkerFactory, items: Sequence[Any], shard_size: int = 32) -> Iterator[Any]:
        shards = shards_of(items, shard_size)
        if not shards:
            return
        self._ready(make_worker)
        ok = False
        try:
            yield from self._ordered(shards)
            ok = True
        finally:
            # After an error or an abandoned run the workers may be mid-shard: never reuse them. Warm
            # workers hold their CPUs (and GPUs) until close(), so they are kept only when asked.
            if not ok or not self.config.keep_warm:
                self.close()

    def start(self, make_worker: WorkerFactory) -> None:
        """Start the workers now, each building its worker, while the caller does other work (loads
        its own copy for the output header, reads its input); a map with an equal factory uses them.
        The caller closes the engine when it never gets to that map."""
        self._ready(make_worker)
        self._prime()

    def _ready(self, make_worker: WorkerFactory) -> None:
        if not (self._factory is not None and self._factory == make_worker and self._warm()):
            self.close()
            self._start(make_worker)
            self._factory = make_worker

    def _prime(self) -> None:
        """Have every worker build its worker before the first shard (where the pool can)."""

    def _warm(self) -> bool:
        """The pool of the previous map (or of `start`) is up and idle (its models are loaded)."""
        raise NotImplementedError

    def _start(self, make_worker: WorkerFactory) -> None:
        raise NotImplementedError

    def _ordered(self, shards: list[list[Any]]) -> Iterator[Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------- local processes

#: In a worker process: the pickled factory until a build succeeds, then the worker built from it.
_PROCESS_WORKER: dict[str, Any] = {}


def thread_env(threads: int = 1) -> dict[str, str]:
    """Environment that pins a process to `threads` intra-op threads: OpenMP and BLAS (numpy, torch),
    ONNX Runtime (the project's sessions read MICROTHEORY_ORT_THREADS) and the tokenizers' pool."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "MICROTHEORY_ORT_THREADS": n, "TOKENIZERS_PARALLELISM": "false"}


def _process_init(payload: bytes, threads: int) -> None:
    """Runs first in each worker process, before the factory's modules are imported (it arrives
    pickled): one intra-op thread, Ctrl-C left to the driver (which stops the pool)."""
    import signal

    os.environ.update(thread_env(threads))
    if "torch" in sys.modules:  # already imported by the spawned __main__: set its pool directly
        sys.modules["torch"].set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _PROCESS_WORKER.clear()
    _PROCESS_WORKER["payload"] = payload
    try:  # build now, before any shard arrives (a pool started early loads its models meanwhile)
        _build_process_worker()
    except Exception:  # noqa: BLE001, S110 - an initializer that raises breaks the pool: the first
        pass           # shard builds again and its error reaches the driver as itself


def _build_process_worker() -> Any:
    """This process's worker, built once from the pickled factory (kept until a build succeeds)."""
    import pickle

    if "worker" not in _PROCESS_WORKER:
        _PROCESS_WORKER["worker"] = pickle.loads(_PROCESS_WORKER["payload"])()
        del _PROCESS_WORKER["payload"]
    return _PROCESS_WORKER["worker"]


def _process_shard(shard: list[Any]) -> list[Any]:
    """One shard in a worker process (an empty one only makes the pool start its processes)."""
    import pickle

    try:
        return list(_build_process_worker()(shard)) if shard else []
    except Exception as e:
        try:  # the driver gets this exception itself when it survives pickling (project errors do)
            pickle.loads(pickle.dumps(e))
        except Exception:  # noqa: BLE001 - any failure to travel: the message travels instead
            raise EngineError(f"a worker failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
        raise


class ProcessEngine(_PoolEngine):
    """`--engine local --workers N`: an ordered map over N spawned worker processes (see the module doc)."""

    name = "process"

    def __init__(self, config: EngineConfig | None = None):
        super().__init__(config or EngineConfig(workers=AUTO_WORKERS))
        self._executor: Any = None

    @property
    def workers(self) -> int:
        return max(1, self.config.workers or AUTO_WORKERS)

    def _warm(self) -> bool:
        return self._executor is not None

    def _start(self, make_worker: WorkerFactory) -> None:
        import multiprocessing
        import pickle
        from concurrent.futures import ProcessPoolExecutor

        try:
            payload = pickle.dumps(make_worker)
        except Exception as e:  # noqa: BLE001 - pickling raises several kinds (PicklingError, TypeError, ...)
            raise EngineError(f"--workers {self.workers}: the worker cannot be sent to a process "
                              f"({type(e).__name__}: {e}); use --workers 1") from None
        self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_process_init, initargs=(payload, self.config.threads))

    def _prime(self) -> None:
        # The pool spawns a process per task while none is idle; each builds its worker as it starts.
        for _ in range(self.workers):
            self._executor.submit(_process_shard, [])

    def _ordered(self, shards: list[list[Any]]) -> Iterator[Any]:
        from concurrent.futures.process import BrokenProcessPool

        order = _InOrder(len(shards), self.workers * self.config.in_flight)
        try:
            yield from self._in_order(shards, order)
        except BrokenProcessPool:
            raise EngineError(f"a worker process died (killed, or out of memory) before shard {order.next + 1} of "
                              f"{len(shards)} was done; the rows before it are written, nothing after: rerun to "
                              "resume (or use --workers 1)") from None

    def _in_order(self, shards: list[list[Any]], order: _InOrder) -> Iterator[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        running: dict[Any, int] = {}
        while not order.finished:
            while order.can_submit():
                i = order.take()
                running[self._executor.submit(_process_shard, shards[i])] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=running.__getitem__):
                i = running.pop(fut)
                order.finish(i, _checked(fut.result(), shards[i]))
            yield from order.ready()

    def close(self) -> None:
        """Stop the worker processes now (a shard they are running is abandoned: only the driver writes)."""
        ex, self._executor, self._factory = self._executor, None, None
        if ex is None:
            return
        procs = list((getattr(ex, "_processes", None) or {}).values())  # no public way to stop running workers
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)


# ----------------------------------------------------------------------------------------- ray cluster

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
    with no GPU device file, False without touching torch: importing it costs seconds at start-up, and
    where another thread is importing it (spaCy's background load) `import torch` would wait for that
    import to finish (3 s of the critic's first batch on 2 cores)."""
    if not any(os.path.exists(p) for p in _GPU_DEVICE_FILES):
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


class RayEngine(_PoolEngine):
    """An ordered actor-pool map on a Ray cluster (see the module doc)."""

    name = "ray"

    def __init__(self, config: EngineConfig | None = None):
        super().__init__(config or EngineConfig(kind="ray"))
        self._ray: Any = None
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

    def _warm(self) -> bool:
        for s in self._slots:
            s.busy = 0
        return bool(self._slots)

    def _start(self, make_worker: WorkerFactory) -> None:
        self._slots = self._actors(make_worker, self.n_workers())

    def close(self) -> None:
        """Stop this engine's actors (the cluster stays up)."""
        for s in self._slots:
            try:
                self._ray.kill(s.actor, no_restart=True)
            except Exception:
                pass
        self._slots, self._factory = [], None

    def _ordered(self, shards: list[list[Any]]) -> Iterator[Any]:
        """Submit shards to the least busy actor, at most `in_flight` each and never more than the
        window ahead of the next shard to yield; yield results in shard order."""
        ray, slots = self._ray, self._slots
        order = _InOrder(len(shards), len(slots) * self.config.in_flight)
        refs: dict[Any, tuple[int, _Slot]] = {}
        attempts = [0] * len(shards)
        while not order.finished:
            while order.can_submit():
                slot = min(slots, key=lambda s: s.busy)
                if slot.busy >= self.config.in_flight:
                    break
                i = order.take()
                refs[slot.actor.run.remote(shards[i])] = (i, slot)
                slot.busy += 1
            ready, _ = ray.wait(list(refs), num_returns=1)
            i, slot = refs.pop(ready[0])
            slot.busy = max(0, slot.busy - 1)  # a replaced actor's old shards come back failed
            try:
                order.finish(i, _checked(ray.get(ready[0]), shards[i]))
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as e:
                attempts[i] += 1
                if attempts[i] > self.config.max_retries:
                    raise EngineError(f"shard {i} failed on {attempts[i]} workers (last: {type(e).__name__}); "
                                      "nothing of it was written, rerun to resume") from None
                self._replace_dead(slot)
                order.again(i)
            except ray.exceptions.RayTaskError as e:  # the worker code raised: that error, here
                raise _cause(e) from None
            yield from order.ready()

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


__all__ = ["AUTO_WORKERS", "ENGINES", "EXIT_ENGINE", "Engine", "EngineConfig", "EngineError", "LocalEngine",
           "ProcessEngine", "RayEngine", "Worker", "WorkerFactory", "connect_ray", "cuda_present", "for_rows",
           "idle_cpus", "is_local", "make_engine", "parallelism", "shard_size_for", "shards_of", "thread_env", "usable_cpus"]
