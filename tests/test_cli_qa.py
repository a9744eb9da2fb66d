"""`microtheory qa` through typer's CliRunner: output records, summary, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from retrieval.encoder import HashingEncoder
from retrieval.store import KnowledgeStore
from core.types import Fact

runner = CliRunner()


def records(path: Path) -> list[dict]:
    """The answer records of a QA output (its header line skipped)."""
    return [r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip()) if "_header" not in r]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    p = tmp_path / "corpus"
    ks = KnowledgeStore.create(p, encoder=HashingEncoder())
    ks.add([Fact("w1", "a magnet attracts iron"), Fact("w2", "iron nails are made of iron"),
            Fact("w3", "plants need sunlight to grow")])
    ks.save()
    ks.close()
    return p


def write_questions(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"id": "q1", "stem": "What do plants need to grow?", "options": {"A": "sunlight", "B": "darkness"},
        "answer_key": "A"}


def test_qa_writes_one_record_per_question(tmp_path: Path, corpus: Path) -> None:
    qs = write_questions(tmp_path / "q.jsonl", [
        GOOD,
        {"id": "q2", "stem": "Which of the following does a magnet attract?",
         "options": {"A": "wood", "B": "iron nails"}, "answer_key": "B"},
        {"id": "noopts", "stem": "Which one?"},
        {"id": "badkey", "stem": "Which one?", "options": {"A": "x"}, "answer_key": "C"},
        {"id": "empty", "stem": "Which one?", "options": {"A": "x", "B": ""}, "answer_key": "A"},
    ])
    out = tmp_path / "a.jsonl"
    r = runner.invoke(app, ["qa", "--corpus", str(corpus), "--questions", str(qs), "--out", str(out),
                            "--scorer", "overlap", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    recs = records(out)
    assert [x["id"] for x in recs] == ["q1", "q2", "noopts", "badkey", "empty"]
    assert s["questions"] == 5 and s["errors"] == 3 and s["accuracy"] == 1.0
    assert recs[0]["grounded"] and recs[0]["proof"]["fact_ids"] == ["w3"]
    assert "no answer options" in recs[2]["error"] and "not among" in recs[3]["error"] and "empty" in recs[4]["error"]


def test_qa_table_and_microtheory_jsonl(tmp_path: Path, corpus: Path) -> None:
    mt = tmp_path / "mt.jsonl"
    mt.write_text(json.dumps({"id": "m1", "text": "a compass points north"}) + "\n")
    qs = write_questions(tmp_path / "q.jsonl", [
        {"id": "c1", "stem": "Where does a compass point?", "options": {"A": "north", "B": "down"}, "answer_key": "A"}])
    out = tmp_path / "a.jsonl"
    r = runner.invoke(app, ["qa", "-c", str(corpus), "-q", str(qs), "-o", str(out), "-m", str(mt),
                            "--scorer", "overlap", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "grounding rate" in r.output and "retrieval-only" in r.output
    (rec,) = records(out)
    assert rec["answer"] == "A" and rec["proof"]["fact_ids"] == ["m1"]


def test_qa_bad_line_is_an_error_record_and_empty_store_a_clear_error(tmp_path: Path, corpus: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes((json.dumps(GOOD) + "\n{not json\n").encode() + b'{"id": "x", "stem": "caf\xe9"}\n')
    out = tmp_path / "o.jsonl"
    r = runner.invoke(app, ["qa", "-c", str(corpus), "-q", str(bad), "-o", str(out), "--scorer", "overlap", "--json"])
    assert r.exit_code == 0, r.output
    recs = records(out)
    assert [x["id"] for x in recs] == ["q1", "line2", "line3"]
    assert "bad.jsonl:2: not valid JSON" in recs[1]["error"] and "bad.jsonl:3: not UTF-8" in recs[2]["error"]
    assert json.loads(r.stdout)["errors"] == 2
    empty = KnowledgeStore.create(tmp_path / "empty", encoder=HashingEncoder())
    empty.save()
    empty.close()
    good = write_questions(tmp_path / "g.jsonl", [GOOD])
    r = runner.invoke(app, ["qa", "-c", str(tmp_path / "empty"), "-q", str(good), "-o", str(tmp_path / "o2.jsonl"),
                            "--scorer", "overlap"])
    assert r.exit_code != 0 and "empty" in r.output
    assert not (tmp_path / "o2.jsonl").exists()


def test_qa_resumes_refuses_user_files_and_other_configs(tmp_path: Path, corpus: Path) -> None:
    qs = write_questions(tmp_path / "q.jsonl", [GOOD, {**GOOD, "id": "q2"}, {**GOOD, "id": "q3"}])
    out = tmp_path / "a.jsonl"
    base = ["qa", "-c", str(corpus), "-q", str(qs), "-o", str(out), "--scorer", "overlap", "--json"]
    r = runner.invoke(app, base)
    assert r.exit_code == 0 and json.loads(r.stdout)["written"] == 3
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:20])  # killed while writing the second record
    r = runner.invoke(app, base)
    s = json.loads(r.stdout)
    assert s["written"] == 2 and s["skipped"] == 1 and s["questions"] == 3
    assert [x["id"] for x in records(out)] == ["q1", "q2", "q3"]
    r = runner.invoke(app, base + ["--k", "3"])
    assert r.exit_code == 2 and "another configuration" in r.output and "prover" in r.output
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    r = runner.invoke(app, ["qa", "-c", str(corpus), "-q", str(qs), "-o", str(notes), "--scorer", "overlap"])
    assert r.exit_code == 2 and notes.read_text() == "my notes\n"
    r = runner.invoke(app, ["qa", "-c", str(corpus), "-q", str(qs), "-o", str(qs), "--scorer", "overlap"])
    assert r.exit_code == 2 and "overwrite the input" in r.output


def test_qa_ranker_option_and_its_digest_in_the_header(tmp_path: Path, corpus: Path) -> None:
    from core.outputs import read_header

    qs = write_questions(tmp_path / "q.jsonl", [GOOD])
    out, out_none = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    base = ["qa", "-c", str(corpus), "-q", str(qs), "--scorer", "overlap", "--json"]
    assert runner.invoke(app, base + ["-o", str(out)]).exit_code == 0
    assert len(read_header(out)["config"]["ranker_digest"]) == 12  # which ranker made the answers
    r = runner.invoke(app, base + ["-o", str(out_none), "--ranker", "none"])
    assert r.exit_code == 0 and read_header(out_none)["config"]["ranker_digest"] is None
    assert records(out_none)[0]["answer"] == "A"
    r = runner.invoke(app, base + ["-o", str(out), "--ranker", "none"])  # another ranker: refused
    assert r.exit_code == 2 and "another configuration" in r.output


def test_qa_help_has_example() -> None:
    r = runner.invoke(app, ["qa", "--help"])
    assert r.exit_code == 0 and "Example" in r.output and "--microtheory" in r.output


@pytest.mark.data
def test_qa_accepts_eb_dev_like_run_and_populate(data_dir: Path) -> None:
    from microtheory.datasets import load_question_set

    qset = load_question_set("eb:dev")
    assert qset.source == "eb:dev" and len(qset.questions) == len(qset.rows) > 100
    assert all(q.hypothesis for q in qset.questions)
