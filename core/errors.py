"""One exception base for the whole project, one subclass per stage.

Library code raises these with a message that says what is wrong and what to do; only the CLI
turns them into an exit code and one clear line on stderr.
"""
from __future__ import annotations


class MicrotheoryError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = 1


class InputError(MicrotheoryError):
    """Bad user input: a malformed file line, an unknown format, an empty input."""

    exit_code = 2

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path, self.line, self.reason = path, line, message
        where = f"{path}:{line}: " if path is not None and line is not None else (f"{path}: " if path else "")
        super().__init__(where + message)


class StoreError(MicrotheoryError):
    """A knowledge store that cannot be opened, written or queried as asked."""

    exit_code = 3


class EncoderMismatchError(StoreError):
    """A query or add with an encoder (or dimension) other than the store's own."""


class ModelError(MicrotheoryError):
    """A model (encoder, scorer, critic, generator) that cannot be loaded or run."""

    exit_code = 4


class GeneratorError(ModelError):
    """A generator backend that failed, timed out or answered badly."""


class SolverError(MicrotheoryError):
    """A selection strategy that cannot solve the instance it was given."""

    exit_code = 5


class EngineError(MicrotheoryError):
    """The compute engine cannot run the job: Ray missing, cluster unreachable, workers lost for good."""

    exit_code = 7
