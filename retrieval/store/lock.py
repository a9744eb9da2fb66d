"""The store's writer lock: `<store>.lock` beside the folder, held for a writer's whole session.

A second writer waits up to $MICROTHEORY_STORE_LOCK_TIMEOUT seconds (default 30), then fails with
StoreError. Readers take no lock. The lock file is deleted when its writer ends cleanly, and it is
deleted *while still held*: a writer that was waiting on the old file then finds it unlinked
(filelock checks the link count after locking) and locks a fresh file, so two writers can never
each hold a different file.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from core.errors import StoreError

LOCK_TIMEOUT_ENV = "MICROTHEORY_STORE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 30.0


def lock_path(store: str | os.PathLike[str]) -> Path:
    return Path(str(store) + ".lock")


def lock_timeout() -> float:
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


class WriterLock:
    """An exclusive lock on `<store>.lock`; `release()` removes the file."""

    def __init__(self, store: str | os.PathLike[str]):
        from filelock import FileLock

        self.path = lock_path(store)
        self._lock: Any = FileLock(str(self.path))

    @classmethod
    def acquire(cls, store: Path, timeout: float | None = None) -> WriterLock:
        """Take the lock on `store`, waiting up to `timeout` (default: the environment's) seconds."""
        from filelock import Timeout

        store.parent.mkdir(parents=True, exist_ok=True)
        lock = cls(store)
        wait = lock_timeout() if timeout is None else timeout
        try:
            lock._lock.acquire(timeout=wait)
        except Timeout:
            raise StoreError(
                f"store {store} is being written by another process (lock {lock.path} held); "
                f"waited {wait:g} s. Retry when it finishes (or raise ${LOCK_TIMEOUT_ENV})."
            ) from None
        return lock

    @property
    def is_locked(self) -> bool:
        return bool(self._lock.is_locked)

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        try:
            self.path.unlink(missing_ok=True)  # while held: see the module docstring
        except OSError:
            pass
        self._lock.release()


def wait_unlocked(path: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """True once no writer holds the store's lock (for scripts and tests); leaves no lock file."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            WriterLock.acquire(Path(path), timeout=0.05).release()
            return True
        except StoreError:
            if time.monotonic() > deadline:
                return False
