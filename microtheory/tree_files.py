"""Entailment-tree files: their formats (registered in `TREE_FORMATS`), which one a file is, and a
knowledge store built from them (what distillation reads).

    eb-train   EntailmentBank `angles` train JSONL: {"input", "output"} per line
    eb-dev     EntailmentBank dev JSONL with metadata: {"context", "proof", "meta", ...}
    jsonl      the project's trees JSONL: {"sentences", "proof", ...}

A new format is a function `path -> list[EntailmentTree]` plus `@TREE_FORMATS.register("name")`; it
is chosen by name (`--format name`); "auto" guesses among the built-in ones only.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from core.errors import InputError
from core.jsonl import iter_jsonl
from core.registry import Registry
from microtheory.trees import EntailmentTree


class TreeReader(Protocol):
    """Parses one tree file; a malformed record is an InputError naming file and line."""

    def __call__(self, path: str | Path, /) -> list[EntailmentTree]:
        ...


TREE_FORMATS: Registry[TreeReader] = Registry("tree format")


def tree_formats() -> tuple[str, ...]:
    """What `read_trees(fmt=...)` accepts: "auto" and every registered format."""
    return ("auto", *TREE_FORMATS.names())


def detect_tree_format(record: Mapping[str, Any]) -> str | None:
    """The built-in format whose records look like `record` (a file's first), or None."""
    keys = set(record)
    if {"input", "output"} <= keys:
        return "eb-train"
    if "sentences" in keys:
        return "jsonl"
    if {"context", "proof"} <= keys:
        return "eb-dev"
    return None


def first_record(path: str | Path) -> dict[str, Any] | None:
    """The first JSON object of a JSONL file (None when it has none)."""
    for _, obj in iter_jsonl(path):
        return obj
    return None


def read_trees(path: str | Path, fmt: str = "auto") -> list[EntailmentTree]:
    """The trees of one file in format `fmt` ("auto": guessed from the first record)."""
    if fmt == "auto":
        first = first_record(path)
        found = detect_tree_format(first) if first is not None else None
        if found is None:
            raise InputError("unknown tree format (expected EntailmentBank train/dev or project trees JSONL); "
                             f"pass --format, one of {', '.join(TREE_FORMATS)}", str(path))
        fmt = found
    return TREE_FORMATS.get(fmt)(path)


def build_store_from_trees(trees: Sequence[str | Path], out: str | Path, fmt: str = "auto",
                           encoder: str | None = None, force: bool = False, generator: str = "entailmentbank",
                           progress: bool = True) -> dict[str, Any]:
    """Create a knowledge store holding every leaf and intermediate conclusion of the trees, with their
    proofs (every file is parsed before the store is created). Returns counts."""
    from microtheory.trees_to_store import add_trees
    from retrieval.store import KnowledgeStore

    all_trees = [t for p in trees for t in read_trees(p, fmt)]
    ks = KnowledgeStore.create(out, encoder=encoder, overwrite=force)
    with ks:
        counts = add_trees(ks, all_trees, generator=generator, progress=progress)
        ks.save()
    return {"store": str(out), **counts, "count": len(ks)}


@TREE_FORMATS.register("eb-train", help="EntailmentBank angles train JSONL")
def _eb_train(path: str | Path) -> list[EntailmentTree]:
    from microtheory.datasets import read_eb_train

    return read_eb_train(path)


@TREE_FORMATS.register("eb-dev", help="EntailmentBank dev JSONL with metadata")
def _eb_dev(path: str | Path) -> list[EntailmentTree]:
    from microtheory.datasets import read_eb_dev

    return read_eb_dev(path)


@TREE_FORMATS.register("jsonl", help="the project's trees JSONL")
def _trees_jsonl(path: str | Path) -> list[EntailmentTree]:
    from microtheory.trees import read_trees_jsonl

    return read_trees_jsonl(path)
