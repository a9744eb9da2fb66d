"""Trees -> store -> distill -> microtheory directory, canonicalisation, p-relevance and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.errors import InputError
from core.types import Fact, Proof
from microtheory.distill import DistillConfig, DistillGraph, distill, read_microtheory
from microtheory.distill.canonicalise import canonicalise, simple_key
from microtheory.distill.prelevance import coverage_curve, heldout_usage, plot_prelevance, prelevance_study
from microtheory.trees import EntailmentTree, read_trees_jsonl
from microtheory.trees_to_store import corpus_fact_ids, trees_to_records
from retrieval.entail import OverlapScorer

TREES = [
    {"id": "t1", "question_id": "q1", "hypothesis": "an iron nail is attracted by a magnet",
     "sentences": {"sent1": "iron is attracted by magnets", "sent2": "a nail is made of iron",
                   "int1": "an iron nail is made of a magnetic material"},
     "proof": "sent1 & sent2 -> int1; int1 & sent1 -> hypothesis;"},
    {"id": "t2", "question_id": "q2", "hypothesis": "a paper clip is attracted by a magnet",
     "sentences": {"sent1": "Iron is attracted by magnets.", "sent2": "a paper clip is made of iron"},
     "proof": "sent1 & sent2 -> hypothesis;"},
    {"id": "t3", "question_id": "q3", "hypothesis": "the sun is the closest star to earth",
     "sentences": {"sent1": "the sun is a star", "sent2": "the sun is the star nearest to earth",
                   "sent3": "earth orbits the sun"},
     "proof": "sent1 & sent2 & sent3 -> hypothesis;"},
]


@pytest.fixture()
def trees_file(tmp_path: Path) -> Path:
    p = tmp_path / "trees.jsonl"
    p.write_text("".join(json.dumps(t) + "\n" for t in TREES))
    return p


@pytest.fixture()
def store(tmp_path: Path, trees_file: Path) -> Path:
    out = tmp_path / "store"
    r = CliRunner().invoke(app, ["distill", "build-store", str(trees_file), "--out", str(out), "--encoder", "hashing",
                                 "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    # 2 + 2 + 3 leaves + 1 intermediate, "iron is attracted by magnets" shared by t1 and t2
    assert summary["trees"] == 3 and summary["count"] == 7 and summary["proofs_added"] == 3
    return out


def test_trees_to_records_dedups_and_keeps_provenance(trees_file: Path):
    facts, proofs = trees_to_records(read_trees_jsonl(trees_file))
    by_text = {f.text.lower().rstrip("."): f for f in facts}
    shared = by_text["iron is attracted by magnets"]
    assert {(p["question_id"], p["role"]) for p in shared.provenance} == {("q1", "leaf"), ("q2", "leaf")}
    inter = by_text["an iron nail is made of a magnetic material"]
    assert inter.provenance[0]["role"] == "intermediate"
    assert [len(p.leaves) for p in proofs] == [2, 2, 3]
    assert proofs[0].leaves[0] == proofs[1].leaves[0] == shared.id
    assert inter.id not in proofs[0].leaves  # a tree's proof is its leaves only
    free = corpus_fact_ids(facts, ["The sun is a star."])
    assert free == {by_text["the sun is a star"].id}


def test_distill_writes_a_readable_directory(store: Path, tmp_path: Path):
    res = distill(store, budget=3, strategy="qc-exact", out=tmp_path / "mt")
    assert res.selection.report["questions_covered"] == 2  # q1 and q2 share a fact: 3 facts cover both
    mt = read_microtheory(tmp_path / "mt")
    assert len(mt) == 3 and mt.manifest["strategy"] == "qc-exact" and mt.manifest["size"] == 3
    assert all(f.source == "microtheory" for f in mt.facts)
    shared = [f for f in mt.facts if f.text.lower().startswith("iron is attracted")]
    assert shared and mt.usage[shared[0].id] == {"proofs": 2, "questions": 2}
    assert mt.report["selection"]["optimal"] is True and mt.merge_map == {}


def test_distill_config_and_keyword_options_agree(store: Path, tmp_path: Path):
    cfg = DistillConfig(strategy="qc-exact", budget=3, overwrite=False)
    a = distill(store, cfg, out=tmp_path / "mt")
    b = distill(store, budget=3, strategy="qc-exact")  # keyword options: the same DistillConfig fields
    assert a.selection.fact_ids == b.selection.fact_ids
    assert read_microtheory(tmp_path / "mt").manifest["budget"] == 3
    with pytest.raises(InputError, match="exists"):
        distill(store, cfg, out=tmp_path / "mt")  # overwrite=False keeps what is there
    c = distill(store, cfg, budget=1)  # an option overrides the config's field
    assert c.selection.report["budget"] == 1 and c.microtheory.manifest["budget"] == 1 and cfg.budget == 3
    with pytest.raises(TypeError):
        distill(store, 3)  # type: ignore[arg-type]  # the old positional budget is refused, not misread
    with pytest.raises(TypeError):
        distill(store, budgett=3)  # a misspelt option is not silently ignored
    with pytest.raises(InputError, match="unknown strategy 'magic'; choose one of random"):
        distill(store, budget=3, strategy="magic")


def test_tree_files_detect_their_format(trees_file: Path, tmp_path: Path):
    from microtheory.tree_files import TREE_FORMATS, read_trees, tree_formats

    assert tree_formats() == ("auto", *TREE_FORMATS.names())
    assert [t.id for t in read_trees(trees_file)] == [t.id for t in read_trees(trees_file, "jsonl")] == ["t1", "t2", "t3"]
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"foo": 1}\n')
    with pytest.raises(InputError, match="unknown tree format"):
        read_trees(odd)
    with pytest.raises(InputError, match="unknown tree format 'xml'; choose one of eb-train, eb-dev, jsonl"):
        read_trees(trees_file, "xml")
    r = CliRunner().invoke(app, ["distill", "build-store", str(odd), "--out", str(tmp_path / "s"), "--format", "jsonl"])
    assert r.exit_code == 2 and "odd.jsonl" in r.output and not (tmp_path / "s").exists()


def test_corpus_facts_are_free(store: Path):
    res = distill(store, budget=1, strategy="qc-exact", corpus_texts=["a paper clip is made of iron"])
    assert res.report["graph"]["free_facts_used"] == 1
    # with the corpus holding one leaf of q2, one fact completes q2
    assert res.selection.report["questions_covered"] == 1 and len(res.microtheory) == 1


def test_bad_store_input(tmp_path: Path):
    from retrieval.store import KnowledgeStore

    empty = tmp_path / "empty"
    with KnowledgeStore.create(empty, encoder="hashing") as ks:
        ks.save()
    with pytest.raises(InputError, match="empty"):
        distill(empty, budget=3)
    with KnowledgeStore.create(tmp_path / "noproofs", encoder="hashing") as ks:
        ks.add([Fact("a", "some fact", "generated")])
    with pytest.raises(InputError, match="no proofs"):
        distill(tmp_path / "noproofs", budget=3)


def test_canonicalise_merges_only_mutual_entailment():
    facts = [Fact("a", "the sun is a star", "generated"), Fact("b", "The sun is a star!", "generated"),
             Fact("c", "the sun is a big star", "generated"), Fact("d", "a star is the sun", "corpus")]
    proofs = [Proof("q1", "p1", "h", ("a",)), Proof("q2", "p2", "h", ("b", "c")), Proof("q3", "p3", "h", ("a", "d"))]

    def keyfn(texts):
        return [simple_key(t) for t in texts]

    res = canonicalise(facts, proofs, OverlapScorer(threshold=0.99), keyfn=keyfn)
    # a/b share a key and entail each other; c entails a but not back; d has other words order but the
    # overlap double sees the same content words, and d is free, so d becomes the representative
    assert res.merge_map.get("b") in {"a", "d"} and "c" not in res.merge_map
    assert res.report["facts_merged"] == len(res.merge_map) >= 1
    rewritten = {p.proof_id: p.leaves for p in res.proofs}
    assert "b" not in rewritten["p2"]


def test_canonicalise_with_embedding_candidates():
    from retrieval.encoder import HashingEncoder

    facts = [Fact("a", "plants need sunlight to grow", "generated"),
             Fact("b", "plants need sunlight to grow .", "generated"),
             Fact("c", "animals need food to survive", "generated")]
    proofs = [Proof("q1", "p1", "h", ("a", "c")), Proof("q2", "p2", "h", ("b",))]
    res = canonicalise(facts, proofs, OverlapScorer(), encoder=HashingEncoder(), sim_threshold=0.8,
                       keyfn=lambda ts: ["" for _ in ts])
    assert res.merge_map == {"b": "a"} and res.report["candidates_embedding"] >= 1
    assert res.proofs[1].leaves == ("a",)


def test_prelevance_curve_and_plot(tmp_path: Path):
    usage = heldout_usage([{"x", "y"}, {"x"}, {"z"}, {"x", "z"}])
    assert usage == {"x": 0.75, "y": 0.25, "z": 0.5}
    curve = coverage_curve({"x"}, usage, ps=(0.25, 0.5, 0.75))
    assert [c["coverage"] for c in curve] == [pytest.approx(1 / 3), 0.5, 1.0]
    train = [Proof(f"q{i}", f"p{i}", "h", ("x", f"u{i}")) for i in range(10)] + [Proof("q10", "p10", "h", ("z",))]
    study = prelevance_study(train, [{"x", "z"}, {"x"}], ns=[2, 11], seeds=(0, 1), ps=(0.5, 1.0))
    full = study["mean"][-1]
    assert full["N"] == 11 and full["coverage"] == [1.0, 1.0]
    png = plot_prelevance(study)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError):
        heldout_usage([])


def test_distill_with_heldout_writes_prelevance_plot(store: Path, tmp_path: Path):
    held = [EntailmentTree.from_json(TREES[0])]
    res = distill(store, budget=2, strategy="qc-greedy", out=tmp_path / "mt", heldout=held, prelevance_ns=[1, 3])
    assert (tmp_path / "mt" / "plots" / "prelevance.png").is_file()
    assert res.report["prelevance"]["heldout_questions"] == 1


def test_cli_run_and_compare(store: Path, tmp_path: Path):
    runner = CliRunner()
    r = runner.invoke(app, ["distill", str(store), "--budget", "3", "--strategy", "qc-exact", "--out",
                            str(tmp_path / "mt")])
    assert r.exit_code == 0, r.output
    assert "cover 2/3 questions" in r.output and (tmp_path / "mt" / "facts.jsonl").is_file()
    r = runner.invoke(app, ["distill", "compare", str(store), "--budgets", "1,3", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 10 and {row["strategy"] for row in rows} == {"random", "usage", "qc-greedy", "qc-exact", "pc"}
    r = runner.invoke(app, ["distill", "compare", str(store), "--budgets", "1,3"])
    assert r.exit_code == 0 and "qc-exact" in r.output
    # InputError -> one "error:" line and a non-zero exit (the exit code itself is cli.common's business)
    r = runner.invoke(app, ["distill", str(store), "--budget", "0"])
    assert r.exit_code != 0 and "error: budget must be a positive" in r.output
    r = runner.invoke(app, ["distill", "compare", str(store), "--budgets", "x"])
    assert r.exit_code != 0 and "--budgets" in r.output


def test_graph_from_store_rejects_unknown_leaf(store: Path):
    from retrieval.store import KnowledgeStore

    ks = KnowledgeStore.open(store)
    facts = {f.id: f for f in ks}
    bad = [*ks.proofs(), Proof("q9", "p9", "h", ("no-such-fact",))]
    with pytest.raises(InputError, match="no-such-fact"):
        DistillGraph.from_proofs(bad, facts)
