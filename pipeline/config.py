"""What one run reads and how it runs: `RunConfig`, its TOML/JSON loader, and the input check that
runs before anything is written (docs/formats.md, "Run directories and configs")."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from core.errors import InputError

KNOWLEDGE_SOURCES = ("generations", "trees")
# Config keys that name input files (or eb: specs), resolved against the config file's folder.
PATH_KEYS = ("corpus", "questions", "train_questions", "generations", "trees", "heldout_trees", "model_outputs",
             "data_dir")
MODEL_KEYS = ("scorer", "encoder", "critic")


@dataclass(frozen=True)
class RunConfig:
    """What one run reads and how it runs. Paths are resolved against the config file's folder.

    `corpus`: facts JSONL, or a WorldTree-style JSON object uuid -> sentence (`include_addons`
    keeps the `ET_addon:*` rows). `questions`: questions JSONL or `eb:dev` / `eb:train`;
    `test_split` / `train_split` select records by their "split" field (None: all of them).
    `knowledge`: "generations" (populate with `generator`; "replay" replays `generations`, "auto" the
    live SmolLM2 when the llm extra is installed, else replay) or "trees" (every tree sentence, with
    its proof: `trees` is a trees file or `eb:train`). `scorer`/`encoder`/`critic`: None for the
    shipped models, "overlap"/"hashing" for the test doubles, or a path.
    """

    name: str = "run"
    corpus: str = ""
    include_addons: bool = False
    questions: str = ""
    test_split: str | None = "test"
    train_questions: str | None = None  # None: `questions` with `train_split`
    train_split: str | None = "train"
    knowledge: str = "generations"
    generations: str | None = None
    generator: str = "replay"
    trees: str | None = None
    heldout_trees: str | None = None  # gold trees of held-out questions (p-relevance); None: from `trees`
    populate_depth: int | None = None  # recursion depth of populate (None: its default)
    trees_fallback: bool = True  # populate unusable -> build the knowledge store from `trees`, said so
    model_outputs: str | None = None
    strategy: str = "qc-greedy"
    budget: int = 40
    canonicalise: bool = True  # merge mutually entailing facts first (needs the scorer)
    scorer: str | None = None
    threshold: float | None = None
    encoder: str | None = None
    critic: str | None = None
    seed: int = 0
    qa_limit: int | None = None
    data_dir: str | None = None  # root of ../shared/data for eb: specs (None: the default)

    def __post_init__(self) -> None:
        if not self.corpus:
            raise InputError("the config needs a 'corpus' (facts JSONL or a uuid -> sentence JSON)")
        if not self.questions:
            raise InputError("the config needs 'questions' (questions JSONL, or eb:dev)")
        if self.knowledge not in KNOWLEDGE_SOURCES:
            raise InputError(f"knowledge must be one of {', '.join(KNOWLEDGE_SOURCES)}, got {self.knowledge!r}")
        if self.knowledge == "trees" and not self.trees:
            raise InputError("knowledge = 'trees' needs a 'trees' file (trees JSONL or eb:train)")
        if self.knowledge == "generations" and self.generator == "replay" and not self.generations:
            raise InputError("the replay generator needs a 'generations' file")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget <= 0:
            raise InputError(f"budget must be a positive number of facts, got {self.budget!r}")
        if self.qa_limit is not None and self.qa_limit <= 0:
            raise InputError(f"qa_limit must be positive, got {self.qa_limit!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: str | Path | None = None, source: str | None = None) -> RunConfig:
        """A config from a parsed TOML/JSON document; relative paths are taken from `base`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                             source)
        d = dict(d)
        if base is not None:
            for key in PATH_KEYS:
                v = d.get(key)
                if isinstance(v, str) and v and not v.startswith("eb:") and not Path(v).is_absolute():
                    d[key] = str((Path(base) / v).resolve())
            for key in MODEL_KEYS:
                v = d.get(key)
                if isinstance(v, str) and v.startswith(("./", "../")):
                    d[key] = str((Path(base) / v).resolve())
        try:
            return cls(**d)
        except TypeError as e:
            raise InputError(f"bad config: {e}", source) from None

    def data_paths(self) -> Any:
        """Where the eb: specs are read from (`data_dir`, else $MICROTHEORY_DATA or ../shared/data)."""
        from microtheory.datasets import DataPaths

        return DataPaths(Path(self.data_dir)) if self.data_dir else DataPaths.default()

    def input_files(self) -> list[Path]:
        """Every file this run reads (eb: specs resolved to their data files), for the checks
        before a run: all must exist, and none may be the run directory or inside it."""
        from microtheory.datasets import eb_spec_files, is_eb_spec

        out: list[Path] = []
        for key in ("corpus", "questions", "train_questions", "generations", "trees", "heldout_trees",
                    "model_outputs"):
            v = getattr(self, key)
            if not v:
                continue
            out.extend(eb_spec_files(v, self.data_paths(), questions=key in ("questions", "train_questions"))
                       if is_eb_spec(v) else [Path(v)])
        return list(dict.fromkeys(out))


def check_inputs(config: RunConfig) -> list[Path]:
    """Raise InputError (exit 2) naming the first input file of `config` that does not exist, before
    any output is touched; returns the input files."""
    files = config.input_files()
    for p in files:
        if not p.exists():
            hint = " (set MICROTHEORY_DATA or data_dir to the folder of ../shared/data)" \
                if config.data_paths().root in p.parents else ""
            raise InputError(f"input file not found{hint}", str(p))
        if p.is_dir():
            raise InputError("an input is a folder; name the file", str(p))
    return files


def load_config(path: str | Path) -> RunConfig:
    """A RunConfig from a TOML or JSON file (see corpora/demo.toml)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such config file", str(p))
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (ValueError, json.JSONDecodeError) as e:  # tomllib.TOMLDecodeError is a ValueError
        raise InputError(f"cannot parse the config: {e}", str(p)) from None
    if not isinstance(data, dict):
        raise InputError("a config is one object of settings", str(p))
    data.pop("$schema", None)
    return RunConfig.from_dict(data, base=p.parent, source=str(p))


def demo_config(**overrides: Any) -> RunConfig:
    """The embedded default, corpora/demo.toml, with the settings in `overrides` that are not None
    (the `demo` command's --scorer / --encoder / --generator)."""
    from corpora import CORPORA_DIR

    cfg = load_config(CORPORA_DIR / "demo.toml")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **changes) if changes else cfg
