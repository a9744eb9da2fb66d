"""The run directory: its layout (every file name the stages write and the report reads is named
here, nowhere else), its versioned manifest, and how a run is written into it safely.

    .microtheory-owner.json  the manifest: {"kind": "run", "version": 1, "config": {...}}
    config.json              the resolved configuration
    summary.json             sizes, coverage, QA, critique counts, per stage status/reason/seconds
    corpus_store/            the general corpus as a knowledge store
    knowledge_store/         generated (or tree) sentences with their proofs
    knowledge_store.populate.jsonl   populate's per-question log (knowledge = "generations")
    microtheory/             manifest.json, facts.jsonl (usage counts, provenance), report.json, plots
    microtheory_coverage.json  coverage as the budget grows (the report's curve)
    microtheory_store/       the microtheory as a knowledge store (QA retrieves from it)
    qa/questions.jsonl       the held-out questions
    qa/corpus.jsonl          one QA record per held-out question, corpus only
    qa/microtheory.jsonl     the same with the microtheory added to retrieval
    model_outputs.jsonl      a copy of the critiqued input
    critiques.jsonl          one record per model output: the critique or an error
    report.html              the static report (`pipeline.report`)

A run is written into a staging directory beside `--out` and swapped in when it ends
(`core.outputs.staged_dir`): a run that raises, or whose stage failed while an earlier run is
there, leaves that earlier run whole. Only a run directory (its manifest says kind "run", or a
run directory written before manifests existed, recognised by its config.json and summary.json)
is replaced without `force`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.outputs import read_owner, staged_dir

RUN_KIND = "run"
RUN_DIR_VERSION = 1

CONFIG = "config.json"
SUMMARY = "summary.json"
REPORT = "report.html"
CORPUS_STORE = "corpus_store"
KNOWLEDGE_STORE = "knowledge_store"
MICROTHEORY = "microtheory"
MICROTHEORY_COVERAGE = "microtheory_coverage.json"
MICROTHEORY_STORE = "microtheory_store"
QA_DIR = "qa"
QA_QUESTIONS = "qa/questions.jsonl"
QA_CORPUS = "qa/corpus.jsonl"
QA_MICROTHEORY = "qa/microtheory.jsonl"
MODEL_OUTPUTS = "model_outputs.jsonl"
CRITIQUES = "critiques.jsonl"

# Keys only this project's run directories have in these two files (for directories made before
# the manifest existed).
_LEGACY_SUMMARY_KEYS = ("stages", "seconds_per_stage", "sizes", "coverage")
_LEGACY_CONFIG_KEYS = ("corpus", "questions", "knowledge", "strategy", "budget")


def _json_keys(path: Path) -> set[str]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return set(obj) if isinstance(obj, dict) else set()


def is_legacy_run_dir(path: str | Path) -> bool:
    """A run directory written before manifests existed: config.json and summary.json both hold the
    keys only a run writes. A user's folder that merely has a config.json is not one."""
    p = Path(path)
    return set(_LEGACY_SUMMARY_KEYS) <= _json_keys(p / SUMMARY) and set(_LEGACY_CONFIG_KEYS) <= _json_keys(p / CONFIG)


def run_dir_version(path: str | Path) -> int:
    """The format version of a run directory: its manifest's, or 1 for one made before manifests.
    Raises InputError for a directory that is another kind, or newer than this code reads."""
    p = Path(path)
    owner = read_owner(p)
    if owner is None:
        return 1
    if owner.get("kind") != RUN_KIND:
        raise InputError(f"not a run directory (its manifest says it is a {owner.get('kind')})", str(p))
    version = owner.get("version")
    if not isinstance(version, int) or version > RUN_DIR_VERSION:
        raise InputError(f"run directory format version {version!r} is newer than this code reads "
                         f"({RUN_DIR_VERSION}); upgrade microtheory", str(p))
    return version


def has_content(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and any(p.iterdir())


@contextmanager
def staged_run_dir(out: str | Path, config: dict[str, Any], *, force: bool = False,
                   inputs: Sequence[str | Path | None] = ()) -> Iterator[Path]:
    """Check `out` and yield an empty staging directory beside it; when the block ends without an
    exception the staging directory gets the manifest and replaces `out`. Refused (InputError,
    exit 2): an `out` that is a file, one of `inputs` or holds one, or a non-empty directory that
    is not a run directory, unless `force` (never a file or an input)."""
    target = Path(out)
    legacy = (CONFIG, SUMMARY) if target.is_dir() and read_owner(target) is None and is_legacy_run_dir(target) else ()
    with staged_dir(target, RUN_KIND, force=force, inputs=inputs, version=RUN_DIR_VERSION, config=config,
                    also_mine=legacy) as staging:
        yield staging
        relocate_recorded_paths(staging, target)


def relocate_recorded_paths(staging: Path, target: Path) -> None:
    """Rewrite the staging directory's path to the final one in the run's small JSON files.

    Stages record where they wrote (e.g. the microtheory manifest names its knowledge store); they
    wrote into the staging directory, which is renamed to `target` when the run ends."""
    pairs = [(str(staging.resolve()), str(target.resolve())), (str(staging), str(target))]
    pairs = [(json.dumps(a)[1:-1], json.dumps(b)[1:-1]) for a, b in pairs if a != b]
    for f in staging.rglob("*.json"):
        if not f.is_file() or f.stat().st_size > 5_000_000:
            continue
        text = f.read_text(encoding="utf-8")
        new = text
        for a, b in pairs:
            new = new.replace(a, b)
        if new != text:
            f.write_text(new, encoding="utf-8")
