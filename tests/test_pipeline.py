"""The main job end to end on the embedded corpora with test doubles (hashing encoder, overlap scorer,
a rule-based critic backend): run directory contents, the consistency of the summary numbers, and
the typed result of each stage. Output safety of the run directory: tests/test_run_dir.py."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.errors import InputError
from corpora import CORPORA_DIR
from pipeline import RunConfig, RunOptions, load_config, run_pipeline, summary_lines
from pipeline import results as res
from pipeline.stages import (
    StageEnv,
    stage_corpus,
    stage_critique,
    stage_distill,
    stage_inputs,
    stage_knowledge,
    stage_qa,
)

QA_LIMIT = 4


def _lines(p: Path) -> list[dict]:
    """Data records (the header line of an append-only output skipped)."""
    return [r for r in (json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip())
            if "_header" not in r]


class RuleCritic:
    """Test double for a critique backend: sound when the predicted answer is the key, else one fixed
    dimension chosen from the explanation's length (so that more than one dimension occurs)."""

    name = "rule"

    def critique(self, records):
        from critique.format import NO_FLAW, Critique
        from critique.generative import CritiqueResult
        from critique.taxonomy import general_advice

        out = []
        for r in records:
            if r.predicted_answer == r.answer_key:
                c = Critique(NO_FLAW, "none", general_advice("none"), NO_FLAW, 5)
            else:
                dim = "incorrect_information" if len(r.explanation) % 2 else "incorrect_reasoning"
                c = Critique(r.explanation.split(".")[0], dim, general_advice(dim), "check it", 1, 0)
            out.append(CritiqueResult(r.id, critique=c))
        return out


def _config(**kw) -> RunConfig:
    cfg = load_config(CORPORA_DIR / "demo.toml")
    return replace(cfg, **{"encoder": "hashing", "scorer": "overlap", "qa_limit": QA_LIMIT, "budget": 12, **kw})


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "demo"
    result = run_pipeline(_config(), out, RunOptions(progress=False, critic_backend=RuleCritic()))
    assert result.written and result.out == out and result.report is None
    return out, result.summary


def test_run_dir_contents(demo_run):
    out, summary = demo_run
    for rel in ("config.json", "summary.json", "corpus_store/manifest.json", "knowledge_store/manifest.json",
                "microtheory/facts.jsonl", "microtheory/report.json", "microtheory/manifest.json",
                "microtheory/merge_map.json", "microtheory/plots/prelevance.png", "microtheory_coverage.json",
                "microtheory_store/manifest.json",
                "qa/questions.jsonl", "qa/corpus.jsonl", "qa/microtheory.jsonl", "critiques.jsonl",
                "model_outputs.jsonl", ".microtheory-owner.json"):
        assert (out / rel).is_file(), rel
    # Nothing is left beside the run directory (the staging directory was swapped in).
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo"]
    # Paths recorded while the run was written into its staging directory name the final one.
    assert json.loads((out / "microtheory" / "manifest.json").read_text())["store"].endswith("demo/knowledge_store")
    assert json.loads((out / "summary.json").read_text()) == summary
    assert json.loads((out / "config.json").read_text())["scorer"] == "overlap"
    assert summary["status"] == "ok"
    assert [s for s in summary["stages"]] == ["inputs", "corpus_store", "knowledge_store", "distill", "qa", "critique"]
    assert all(s["status"] == "ok" for s in summary["stages"].values()), summary["stages"]
    assert all(isinstance(v, float) and v >= 0 for v in summary["seconds_per_stage"].values())


def test_sizes_and_coverage_consistent(demo_run):
    out, summary = demo_run
    corpus_texts = {json.loads(x)["text"].strip().lower() for x in (CORPORA_DIR / "science_corpus.jsonl").open()}
    assert summary["sizes"]["corpus"] == len(corpus_texts) == 228
    facts = _lines(out / "microtheory" / "facts.jsonl")
    assert summary["sizes"]["microtheory"] == len(facts) <= 12
    assert len({f["id"] for f in facts}) == len(facts)
    # Microtheory facts come from the knowledge store and carry usage counts and provenance.
    store_ids = {json.loads(x)["id"] for x in (out / "knowledge_store" / "facts.jsonl").open()} \
        if (out / "knowledge_store" / "facts.jsonl").is_file() else None
    for f in facts:
        assert f["usage"]["proofs"] >= 1 and f["usage"]["questions"] >= 1
        assert f["provenance"]
        if store_ids is not None:
            assert f["id"] in store_ids
    cov = summary["coverage"]
    assert 0 < cov["questions_covered"] <= cov["questions_total"] <= 24
    assert cov["question_coverage"] == pytest.approx(cov["questions_covered"] / cov["questions_total"], abs=1e-4)
    assert summary["sizes"]["knowledge_proofs"] == cov["proofs_total"]
    d = summary["stages"]["distill"]
    assert d["canonicalised"] is True and d["heldout_trees"] == 8  # the test questions' gold trees
    curve = json.loads((out / "microtheory_coverage.json").read_text())["coverage_curve"]
    sizes = [c["size"] for c in curve]
    covs = [c["question_coverage"] for c in curve]
    assert sizes == sorted(sizes) and covs == sorted(covs) and 12 in [c["budget"] for c in curve]
    report = (out / "report.html").read_text() if (out / "report.html").exists() else None
    assert report is None  # run_pipeline itself writes no report; the CLI does


def test_no_held_out_question_in_knowledge(demo_run):
    out, _ = demo_run
    test_ids = {json.loads(x)["id"] for x in (CORPORA_DIR / "science_questions.jsonl").open()
                if json.loads(x)["split"] == "test"}
    proofs = _lines(out / "knowledge_store" / "proofs.jsonl")
    assert proofs and not ({p["question_id"] for p in proofs} & test_ids)


def test_qa_numbers_match_records(demo_run):
    out, summary = demo_run
    qs = _lines(out / "qa" / "questions.jsonl")
    assert len(qs) == QA_LIMIT
    for name, fname in (("corpus", "corpus.jsonl"), ("corpus+microtheory", "microtheory.jsonl")):
        recs = _lines(out / "qa" / fname)
        assert [r["id"] for r in recs] == [q["id"] for q in qs]
        s = summary["qa"][name]
        assert s["questions"] == len(recs)
        assert s["correct"] == sum(1 for r in recs if r["correct"])
        assert s["grounded"] == sum(1 for r in recs if r["grounded"])
        assert s["accuracy"] == pytest.approx(s["correct"] / s["keyed"], abs=1e-4)
        for r in recs:  # a grounded answer has a proof whose step passed
            assert (r["proof"] is not None) == r["grounded"]


def test_critique_counts_match_records(demo_run):
    out, summary = demo_run
    recs = _lines(out / "critiques.jsonl")
    inputs = _lines(CORPORA_DIR / "model_outputs.jsonl")
    assert len(recs) == len(inputs) == summary["critique"]["records"]
    dims = Counter(r["critique"]["dimension"] for r in recs if isinstance(r.get("critique"), dict))
    assert summary["critique"]["per_dimension"] == dict(dims)
    expected_none = sum(1 for r in inputs if r["predicted_answer"] == r["answer_key"])
    assert dims["none"] == expected_none
    assert summary["critique"]["grounded"] is True
    lines = "\n".join(summary_lines(summary))
    assert "critique:" in lines and "QA corpus+microtheory" in lines


def test_missing_stage_is_skipped_not_faked(tmp_path, monkeypatch):
    monkeypatch.delenv("MICROTHEORY_CRITIC", raising=False)
    from critique import head

    monkeypatch.setattr(head, "DEFAULT_HEAD", tmp_path / "no-head.json")
    cfg = _config(qa_limit=1, knowledge="trees", canonicalise=False)
    summary = run_pipeline(cfg, tmp_path / "r", RunOptions(progress=False)).summary
    crit = summary["stages"]["critique"]
    assert crit["status"] == "skipped" and "no checks head" in crit["reason"]
    assert summary["critique"] is None and not (tmp_path / "r" / "critiques.jsonl").exists()
    ks = summary["stages"]["knowledge_store"]
    assert ks["status"] == "ok" and ks["source"] == "trees"
    # Only the trees of training questions enter the store.
    test_ids = {json.loads(x)["id"] for x in (CORPORA_DIR / "science_questions.jsonl").open()
                if json.loads(x)["split"] == "test"}
    proofs = _lines(tmp_path / "r" / "knowledge_store" / "proofs.jsonl")
    assert len(proofs) == 24 and not ({p["question_id"] for p in proofs} & test_ids)


def test_failed_stage_is_reported(tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"text": "a fact"}\n{"id": "x"}\n')
    cfg = _config(corpus=str(bad), model_outputs=None, canonicalise=False)
    result = run_pipeline(cfg, tmp_path / "r", RunOptions(progress=False))
    summary = result.summary
    assert result.written  # nothing was there before: the failed run is kept to be read
    assert summary["status"] == "failed"
    assert summary["stages"]["corpus_store"]["status"] == "failed"
    assert "corpus.jsonl:2" in summary["stages"]["corpus_store"]["reason"]
    assert summary["stages"]["qa"]["status"] == "skipped"
    assert "needs the corpus_store stage" in summary["stages"]["qa"]["reason"]
    assert "sizes: corpus -, knowledge store -" in "\n".join(summary_lines(summary))


def test_stages_return_typed_results(tmp_path):
    """Each stage returns its own result type; `record()` is its entry in summary.json."""
    cfg = _config(trees=None, canonicalise=False, qa_limit=2, budget=5)
    env = StageEnv(cfg, tmp_path, progress=False)
    inputs = stage_inputs(env)
    assert isinstance(inputs, res.InputsResult) and isinstance(inputs.models, res.Models)
    assert len(inputs.test_questions) == 16 and len(inputs.train_questions) == 24
    assert inputs.record() == {"test_questions": 16, "train_questions": 24, "encoder": inputs.models.encoder.name,
                               "scorer": type(inputs.models.scorer).__name__}
    corpus = stage_corpus(env, inputs)
    assert isinstance(corpus, res.CorpusResult) and corpus.facts == len(corpus.store) == 228
    assert corpus.record()["path"] == "corpus_store" and len(corpus.texts) == corpus.facts_read
    knowledge = stage_knowledge(env, inputs, corpus)
    assert isinstance(knowledge, res.KnowledgeResult) and knowledge.source == "generations"
    assert isinstance(knowledge.populated, res.PopulateCounts) and knowledge.trees is None
    rec = knowledge.record()
    assert rec["source"] == "generations" and rec["proofs"] == knowledge.proofs == len(knowledge.store.proofs()) > 0
    mt = stage_distill(env, inputs, corpus, knowledge)
    assert isinstance(mt, res.MicrotheoryResult) and 0 < len(mt.facts) <= 5
    assert all(f.source == "microtheory" and f.provenance for f in mt.facts)
    assert mt.record()["size"] == len(mt.facts) and "p-relevance" in (mt.note or "")
    qa = stage_qa(env, inputs, corpus, mt)
    assert isinstance(qa, res.QAResult) and qa.questions == 2 and qa.with_microtheory is not None
    assert set(qa.record()["runs"]) == {"corpus", "corpus+microtheory", "microtheory_facts_used"}
    crit = stage_critique(env, inputs, mt, RuleCritic())
    assert isinstance(crit, res.CritiqueStageResult) and crit.grounded and crit.records == 20
    assert crit.record()["per_dimension"] == crit.counts["per_dimension"]
    for r in (corpus, knowledge):
        r.store.close()
    # Without a microtheory QA runs on the corpus alone and says so.
    qa2 = stage_qa(StageEnv(cfg, tmp_path / "b", progress=False), inputs, corpus, None)
    assert qa2.with_microtheory is None and "no microtheory" in qa2.record()["note"]


def test_config_errors(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('corpus = "a.jsonl"\nquestions = "q.jsonl"\nbugdet = 3\ngenerations = "g.jsonl"\n')
    with pytest.raises(InputError, match="unknown config key.*bugdet"):
        load_config(bad)
    bad.write_text('corpus = "a.jsonl"\nquestions = "q.jsonl"\nbudget = 0\ngenerations = "g.jsonl"\n')
    with pytest.raises(InputError, match="budget"):
        load_config(bad)
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"corpus": "data/a.jsonl", "questions": "eb:dev", "knowledge": "trees",
                                "trees": "eb:train"}))
    cfg = load_config(good)
    assert cfg.corpus == str((tmp_path / "data" / "a.jsonl").resolve()) and cfg.questions == "eb:dev"


def test_entailmentbank_config_parses():
    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "docs" / "entailmentbank.toml")
    assert cfg.knowledge == "trees" and cfg.trees == "eb:train" and cfg.questions == "eb:dev"
    assert cfg.corpus.endswith("worldtree_corpus_sentences_extended.json") and cfg.include_addons is False


def test_cli_run_writes_report(tmp_path):
    cfg = {"name": "tiny", "corpus": str(CORPORA_DIR / "science_corpus.jsonl"),
           "questions": str(CORPORA_DIR / "science_questions.jsonl"), "knowledge": "trees",
           "trees": str(CORPORA_DIR / "science_trees.jsonl"), "encoder": "hashing", "scorer": "overlap",
           "qa_limit": 3, "budget": 5, "canonicalise": False}  # q-009 is grounded: a proof is drawn
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(cfg))
    res = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "out"), "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["name"] == "tiny" and doc["sizes"]["microtheory"] <= 5
    assert doc["written"] is True and doc["run_dir"] == str(tmp_path / "out")
    assert Path(doc["report"]).is_file() and "<svg" in Path(doc["report"]).read_text()
    res = CliRunner().invoke(app, ["run", "--help"])
    assert res.exit_code == 0 and "Example" in res.output


@pytest.mark.data
@pytest.mark.slow
def test_entailmentbank_config_runs(tmp_path, data_dir, monkeypatch):
    """docs/entailmentbank.toml on the real data (test doubles for the models, 3 dev questions)."""
    monkeypatch.setenv("MICROTHEORY_DATA", str(data_dir))
    root = Path(__file__).resolve().parent.parent
    cfg = replace(load_config(root / "docs" / "entailmentbank.toml"), encoder="hashing", scorer="overlap",
                  qa_limit=3, model_outputs=None, data_dir=str(data_dir),
                  corpus=str(data_dir / "entailmentbank" / "worldtree_corpus_sentences_extended.json"))
    summary = run_pipeline(cfg, tmp_path / "eb", RunOptions(progress=False)).summary
    st = summary["stages"]
    assert all(st[k]["status"] == "ok" for k in ("corpus_store", "knowledge_store", "distill", "qa")), st
    # WorldTree without the ET_addon rows; every train tree stored as one proof.
    assert 8_900 < summary["sizes"]["corpus"] < 9_012
    assert summary["sizes"]["knowledge_proofs"] == 1313
    assert summary["sizes"]["microtheory"] <= 1000
    assert summary["qa"]["corpus"]["questions"] == 3


def test_generator_resolution(monkeypatch):
    import importlib.util

    from pipeline.stages import resolve_generator

    cfg = _config()
    assert resolve_generator(cfg) == (f"replay:{cfg.generations}", None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    spec, note = resolve_generator(replace(cfg, generator="auto"))
    assert spec == f"replay:{cfg.generations}" and "not installed" in note
    with pytest.raises(res.Skip, match="llm extra"):
        resolve_generator(replace(cfg, generator="auto", generations=None))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "llama_cpp" else None)
    assert resolve_generator(replace(cfg, generator="auto")) == ("llama-cpp:smollm2", None)
    assert resolve_generator(replace(cfg, generator="openai:http://x/v1#m"))[0] == "openai:http://x/v1#m"


def test_input_readers_and_check(tmp_path):
    """The readers a run config names its inputs with (microtheory.datasets), and the input check."""
    from microtheory.datasets import (
        DataPaths,
        eb_spec_files,
        read_corpus_facts,
        read_questions_spec,
        read_trees_spec,
    )
    from pipeline import check_inputs

    assert len(read_trees_spec(CORPORA_DIR / "science_trees.jsonl")) == 32
    eb_train = tmp_path / "train.jsonl"
    eb_train.write_text(json.dumps({"id": "q1", "input": "$hypothesis$ = h ; $context$ = sent1: a sent2: b",
                                    "output": "$proof$ = sent1 & sent2 -> hypothesis;"}) + "\n")
    (tree,) = read_trees_spec(eb_train)  # the format is told from the first record
    assert tree.hypothesis == "h" and set(tree.leaves) == {"sent1", "sent2"}
    with pytest.raises(InputError, match="data file not found"):
        read_trees_spec("eb:train", DataPaths(tmp_path / "nodata"))
    test = read_questions_spec(CORPORA_DIR / "science_questions.jsonl", "test")
    assert len(test) == 16 and len(read_questions_spec(CORPORA_DIR / "science_questions.jsonl")) == 40
    with pytest.raises(InputError, match="no questions with split 'dev'"):
        read_questions_spec(CORPORA_DIR / "science_questions.jsonl", "dev")
    facts = read_corpus_facts(CORPORA_DIR / "science_corpus.jsonl")
    assert len(facts) == 228 and all(f.source == "corpus" for f in facts)
    data = DataPaths(tmp_path / "nodata")
    assert eb_spec_files("eb:dev", data, questions=True) == [data.eb_dev(), *data.arc]
    # Every named input is checked before anything is written, eb: specs included.
    with pytest.raises(InputError, match="input file not found.*MICROTHEORY_DATA"):
        check_inputs(_config(questions="eb:dev", data_dir=str(tmp_path / "nodata")))
    with pytest.raises(InputError, match="gone.jsonl"):
        check_inputs(_config(trees=str(tmp_path / "gone.jsonl")))
    assert Path(_config().corpus) in check_inputs(_config())
