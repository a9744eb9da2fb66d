"""The five stages of a run (after `inputs`): corpus store -> knowledge store -> microtheory ->
grounded QA -> critique. Each takes the typed results it depends on and returns its own
(`pipeline.results`); a stage that cannot run here raises `Skip` with the reason, never fakes a
result; a project error propagates and `pipeline.runner` records the stage as failed.
"""
from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError, MicrotheoryError
from core.types import Fact
from pipeline import run_dir as rd
from pipeline.config import RunConfig
from pipeline.results import (
    CorpusResult,
    CritiqueStageResult,
    InputsResult,
    KnowledgeResult,
    MicrotheoryResult,
    Models,
    PopulateCounts,
    QAResult,
    Skip,
    TreeCounts,
)


@dataclass(frozen=True)
class StageEnv:
    """What every stage shares: the configuration, the directory it writes into, and whether to
    show progress bars."""

    config: RunConfig
    out: Path
    progress: bool = True


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    from core.jsonl import write_jsonl

    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, records)


def _write_json(path: Path, obj: Any) -> None:
    from core.jsonl import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)


# ------------------------------------------------------------------------------------ inputs

def load_models(config: RunConfig) -> Models:
    """The encoder (an error here fails the run) and the scorer (an error here only skips the stages
    that need it)."""
    from retrieval.encoder import get_encoder

    encoder = get_encoder(config.encoder)
    try:
        from retrieval.entail import load_scorer

        return Models(encoder, load_scorer(config.scorer))
    except (ImportError, MicrotheoryError, OSError) as e:
        return Models(encoder, None, f"{type(e).__name__}: {e}")


def stage_inputs(env: StageEnv) -> InputsResult:
    """The models and the questions: held-out ones for QA, training ones for populate; refuses a
    training question that is also held out."""
    from microtheory.datasets import is_eb_spec, read_questions_spec

    config = env.config
    data = config.data_paths()
    models = load_models(config)
    test = read_questions_spec(config.questions, config.test_split, data)
    train_spec = config.train_questions or config.questions
    train = read_questions_spec(train_spec, config.train_split, data) if config.knowledge == "generations" else []
    test_ids = {q.id for q in test}
    leak = [q.id for q in train if q.id in test_ids]
    if leak:
        raise InputError(f"{len(leak)} training question(s) are also held out (e.g. {leak[0]}): "
                         "check train_split / test_split")
    if train:
        train_ids: set[str] | None = {q.id for q in train}
    elif config.train_split and not is_eb_spec(config.questions):
        train_ids = {q.id for q in read_questions_spec(config.questions, config.train_split, data)}
    else:
        train_ids = None
    return InputsResult(models, test, train, train_ids)


# ------------------------------------------------------------------------------------ corpus store

def stage_corpus(env: StageEnv, inputs: InputsResult) -> CorpusResult:
    from microtheory.datasets import read_corpus_facts
    from retrieval.store import KnowledgeStore

    facts = read_corpus_facts(env.config.corpus, include_addons=env.config.include_addons)
    ks = KnowledgeStore.create(env.out / rd.CORPUS_STORE, encoder=inputs.models.encoder)
    res = ks.add(facts, progress=env.progress)
    ks.save()
    return CorpusResult(ks, [f.text for f in facts], len(facts), len(ks), res.merged,
                        getattr(ks.encoder, "name", str(ks.encoder)), rd.CORPUS_STORE)


# ------------------------------------------------------------------------------------ knowledge store

def resolve_generator(config: RunConfig) -> tuple[str, str | None]:
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


def _trees_into_store(env: StageEnv, inputs: InputsResult, note: str | None = None) -> KnowledgeResult:
    from microtheory.datasets import is_eb_spec, read_trees_spec
    from microtheory.trees_to_store import add_trees
    from retrieval.store import KnowledgeStore

    spec = env.config.trees
    assert spec
    trees = read_trees_spec(spec, env.config.data_paths())
    if inputs.train_ids is not None and not is_eb_spec(spec):
        # Only trees of training questions: the held-out questions must not leak into the microtheory.
        trees = [t for t in trees if t.question_id in inputs.train_ids]
        if not trees:
            raise InputError("no tree belongs to a training question", spec)
    ks = KnowledgeStore.create(env.out / rd.KNOWLEDGE_STORE, encoder=inputs.models.encoder)
    generator = "entailmentbank" if is_eb_spec(spec) else Path(spec).stem
    counts = add_trees(ks, trees, generator=generator, progress=env.progress)
    ks.save()
    tc = TreeCounts(spec, counts["trees"], counts["facts_added"], counts["facts_merged"], counts["proofs_added"])
    return KnowledgeResult(ks, len(ks), len(ks.proofs()), rd.KNOWLEDGE_STORE, trees=tc, note=note)


def _populate_into_store(env: StageEnv, inputs: InputsResult, corpus: CorpusResult) -> KnowledgeResult:
    from microtheory.populate import PopulateConfig, populate
    from retrieval.store import KnowledgeStore

    config = env.config
    spec, note = resolve_generator(config)
    depth: dict[str, Any] = {} if config.populate_depth is None else {"max_depth": config.populate_depth}
    s = populate(inputs.train_questions, env.out / rd.KNOWLEDGE_STORE, spec, scorer=inputs.models.scorer,
                 encoder=inputs.models.encoder,
                 config=PopulateConfig(seed=config.seed, threshold=config.threshold, **depth),
                 corpus=corpus.store, progress=env.progress)
    ks = KnowledgeStore.open(env.out / rd.KNOWLEDGE_STORE)
    counts = PopulateCounts(spec, s.questions, s.proved, s.unproved, s.failed, s.sentences_kept,
                            s.sentences_rejected, s.candidates, s.accepted_candidates, Path(s.log).name)
    return KnowledgeResult(ks, len(ks), len(ks.proofs()), rd.KNOWLEDGE_STORE, populated=counts, note=note)


def stage_knowledge(env: StageEnv, inputs: InputsResult, corpus: CorpusResult) -> KnowledgeResult:
    """The knowledge store: every tree sentence with its proof, or populate with the generator
    (falling back to the trees, said so, when populate cannot run here)."""
    config = env.config
    if config.knowledge == "trees":
        return _trees_into_store(env, inputs)
    why_not: str | None = None
    try:
        import microtheory.populate  # noqa: F401
    except ImportError as e:
        why_not = f"populate is not importable ({e})"
    if why_not is None and inputs.models.scorer is None:
        why_not = f"no entailment scorer ({inputs.models.scorer_error})"
    if why_not is None:
        return _populate_into_store(env, inputs, corpus)
    if config.trees and config.trees_fallback:
        return _trees_into_store(env, inputs, f"populate not usable: {why_not}; built the knowledge store "
                                              "from the trees instead")
    raise Skip(why_not)


# ------------------------------------------------------------------------------------ distill

def heldout_trees(config: RunConfig, inputs: InputsResult) -> tuple[list[Any], str | None]:
    """Gold trees of held-out questions for the p-relevance study: `heldout_trees`, else the trees of
    the held-out questions found in `trees`."""
    from microtheory.datasets import is_eb_spec, read_trees_spec

    spec = config.heldout_trees
    test_ids = {q.id for q in inputs.test_questions}
    if spec:
        trees = read_trees_spec(spec, config.data_paths())
        return ([t for t in trees if t.question_id in test_ids] or trees), spec
    if config.trees and not is_eb_spec(config.trees):
        trees = [t for t in read_trees_spec(config.trees, config.data_paths()) if t.question_id in test_ids]
        return trees, (config.trees if trees else None)
    return [], None


def curve_budgets(budget: int, n_facts: int) -> list[int]:
    """The budgets of the coverage curve: eight points up to twice the budget, and the budget."""
    top = max(1, min(n_facts, budget * 2))
    pts = {max(1, round(top * k / 8)) for k in range(1, 9)} | {budget}
    return sorted(pts)


def stage_distill(env: StageEnv, inputs: InputsResult, corpus: CorpusResult,
                  knowledge: KnowledgeResult) -> MicrotheoryResult:
    """Distil the microtheory (facts the corpus has are free), and its coverage curve."""
    try:
        from microtheory.distill import compare, distill
    except ImportError as e:
        raise Skip(f"distillation is not importable ({e})") from None
    config, ks, scorer = env.config, knowledge.store, inputs.models.scorer
    if not ks.proofs():
        raise Skip("the knowledge store holds no proofs to distil from (no question was proved)")
    notes = []
    canonical = config.canonicalise and scorer is not None
    if config.canonicalise and not canonical:
        notes.append("no entailment scorer: facts not canonicalised")
    heldout, heldout_src = heldout_trees(config, inputs)
    if not heldout:
        notes.append("no held-out trees: no p-relevance study")
    res = distill(ks, budget=config.budget, strategy=config.strategy, out=env.out / rd.MICROTHEORY, seed=config.seed,
                  canonical=canonical, scorer=scorer if canonical else None,
                  encoder=ks.encoder if canonical else None, corpus_texts=corpus.texts, heldout=heldout or None)
    # Coverage as the budget grows (same strategy, same graph): the curve the report plots.
    n_cand = int((res.report.get("graph") or {}).get("facts", config.budget * 2) or 1)
    curve = compare(ks, curve_budgets(config.budget, n_cand), strategies=[config.strategy], seed=config.seed,
                    corpus_texts=corpus.texts)
    _write_json(env.out / rd.MICROTHEORY_COVERAGE, {"strategy": config.strategy, "coverage_curve": curve})
    cov = res.selection.report
    facts = [Fact(f.id, f.text, "microtheory", list(f.provenance or [])) for f in res.microtheory.facts]
    return MicrotheoryResult(facts, config.strategy, config.budget, cov.get("questions_covered"),
                             cov.get("questions_total"), cov.get("question_coverage"), cov.get("proofs_complete"),
                             cov.get("proofs_total"), res.report.get("graph"), canonical,
                             len(res.microtheory.merge_map), len(heldout), heldout_src, rd.MICROTHEORY,
                             "; ".join(notes) or None)


# ------------------------------------------------------------------------------------ QA

def _microtheory_store(env: StageEnv, corpus: CorpusResult, mt: MicrotheoryResult) -> Any:
    from retrieval.store import KnowledgeStore

    store = KnowledgeStore.create(env.out / rd.MICROTHEORY_STORE, encoder=corpus.store.encoder)
    store.add(mt.facts)
    store.save()
    return store


def stage_qa(env: StageEnv, inputs: InputsResult, corpus: CorpusResult, mt: MicrotheoryResult | None) -> QAResult:
    """Grounded QA on the held-out questions with the corpus alone, then with the microtheory added."""
    try:
        from retrieval.prover import Prover
        from retrieval.qa import prover_config_for, run_qa
    except ImportError as e:
        raise Skip(f"grounded QA is not importable ({e})") from None
    scorer = inputs.models.scorer
    if scorer is None:
        raise Skip(f"no entailment scorer ({inputs.models.scorer_error})")
    qs = inputs.test_questions[: env.config.qa_limit] if env.config.qa_limit is not None else inputs.test_questions
    pcfg = prover_config_for("shipped", threshold=env.config.threshold)  # the search `microtheory qa` uses
    # The held-out questions beside the answers, so that the report can show their stems.
    _write_jsonl(env.out / rd.QA_QUESTIONS, [q.to_json() for q in qs])
    alone = Prover(corpus.store, scorer, config=pcfg)
    rec, summary = run_qa(qs, alone, progress=env.progress)
    _write_jsonl(env.out / rd.QA_CORPUS, rec)
    result = QAResult(len(qs), round(float(alone.threshold), 4), summary.to_json(), path=rd.QA_DIR)
    if mt is None:
        result.note = "no microtheory: QA on the corpus only"
    elif not mt.facts:
        result.note = ("the microtheory is empty (every fact the proofs need is already in the corpus): "
                       "QA with it would be the corpus run")
    else:
        store = _microtheory_store(env, corpus, mt)
        try:
            rec2, summary2 = run_qa(qs, Prover(corpus.store, scorer, microtheory=store, config=pcfg),
                                    progress=env.progress)
        finally:
            store.close()
        _write_jsonl(env.out / rd.QA_MICROTHEORY, rec2)
        used = Counter(fid for r in rec2 if r.get("proof") for fid in r["proof"].get("fact_ids", ()))
        result.with_microtheory = summary2.to_json()
        result.microtheory_facts_used = sum(1 for f in mt.facts if used.get(f.id))
    return result


# ------------------------------------------------------------------------------------ critique

def _critic_backend(config: RunConfig, knowledge: Any) -> Any:
    """The default checks critic (fact checks against `knowledge`), or the classifier critic folder
    that `critic = 'DIR'` (or $MICROTHEORY_CRITIC) names."""
    from critique import head
    from critique.batch import make_backend

    if config.critic is not None or os.environ.get("MICROTHEORY_CRITIC"):
        return make_backend("classifier", config.critic)
    if not Path(head.DEFAULT_HEAD).is_file():
        raise Skip(f"no checks head shipped ({head.DEFAULT_HEAD} is missing); set critic = 'DIR' to a folder "
                   "written by `microtheory critique train`")
    return make_backend("checks", knowledge=knowledge)


def stage_critique(env: StageEnv, inputs: InputsResult, mt: MicrotheoryResult | None,
                   backend: Any = None) -> CritiqueStageResult:
    """Critique the model outputs; the advice cites microtheory facts when there is a microtheory.
    `backend`: a `critique.batch.Backend` to use instead of the configured critic (tests)."""
    from pipeline.summary import critique_counts

    if not env.config.model_outputs:
        raise Skip("no model_outputs file in the config")
    try:
        from critique.advice import Advisor
        from critique.batch import critique_file
        from retrieval.knowledge import knowledge_from_facts
    except ImportError as e:
        raise Skip(f"batch critique is not importable ({e})") from None
    # The input beside its critiques, so that the report can show each question and explanation.
    src = Path(env.config.model_outputs)
    if not src.is_file():
        raise InputError("model outputs file not found", str(src))
    shutil.copyfile(src, env.out / rd.MODEL_OUTPUTS)
    scorer = inputs.models.scorer
    knowledge = knowledge_from_facts(mt.facts, inputs.models.encoder) if mt is not None and mt.facts else None
    backend = backend if backend is not None else _critic_backend(env.config, knowledge)
    advisor = Advisor(knowledge=knowledge, scorer=scorer) if (knowledge is None or scorer) else Advisor(knowledge=None)
    summary = critique_file(env.out / rd.MODEL_OUTPUTS, env.out / rd.CRITIQUES, backend, advisor=advisor,
                            progress=env.progress)
    from core.jsonl import iter_jsonl
    from core.outputs import is_header

    records = [obj for _, obj in iter_jsonl(env.out / rd.CRITIQUES) if not is_header(obj)]
    cited = sum(1 for r in records if isinstance(r.get("critique"), dict) and r["critique"].get("cited_facts"))
    return CritiqueStageResult(len(records), critique_counts(records), knowledge is not None, cited,
                               getattr(backend, "name", type(backend).__name__), round(summary.seconds, 2),
                               rd.MODEL_OUTPUTS, rd.CRITIQUES,
                               "no microtheory: advice without knowledge" if knowledge is None else None)
