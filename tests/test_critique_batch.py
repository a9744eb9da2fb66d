"""Batch critique: one record per row, error records, resume, formats, the CLI default command."""
from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from typer.testing import CliRunner

from critique import batch
from critique.advice import Advisor, FactIndex
from critique.batch import critique_file, read_done
from critique.format import Critique, parse_ds
from critique.generative import CritiqueResult
from critique.inputs import ModelOutput
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from core.errors import InputError, ModelError
from core.outputs import is_header, read_header
from core.types import Fact


class FakeBackend:
    """Flags explanations containing 'wrong'; counts calls; 'explode' fails the batch it is in."""

    name = "fake"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def critique(self, records: Sequence[ModelOutput]) -> list[CritiqueResult]:
        if len(records) > 1 and any("explode" in r.explanation for r in records):
            raise InputError("cannot handle this batch")
        out = []
        for r in records:
            self.seen.append(r.id)
            if "explode" in r.explanation:
                out.append(CritiqueResult(r.id, error="unparseable critique from the language model: x", raw="x"))
            elif "wrong" in r.explanation:
                out.append(CritiqueResult(r.id, critique=Critique("It is wrong.", "incorrect_information", "g", "s",
                                                                  1, flaw_sentence_index=0, confidence=0.9)))
            else:
                out.append(CritiqueResult(r.id, critique=Critique("None", "none", "g", "None", 5)))
        return out


def _row(i: int, **kw) -> dict:
    d = {"id": f"q{i}", "question": "Which material conducts electricity best?",
         "options": {"A": "wood", "B": "copper"}, "answer_key": "B",
         "explanation": "Copper is a metal. Metals conduct electricity.", "predicted_answer": "B"}
    d.update(kw)
    return d


@pytest.fixture
def inp(tmp_path):
    rows = [_row(1), _row(2, explanation="Copper is wrong about metals."), _row(3, answer_key="Z"),
            _row(4, explanation=None), _row(5, explanation="explode now."), _row(6)]
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "{not json")
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def _read(p):
    """The data records of a critique output (its header line skipped)."""
    return [r for r in (json.loads(x) for x in p.read_text().splitlines() if x.strip()) if not is_header(r)]


def test_one_record_per_row_with_errors(inp, tmp_path):
    out = tmp_path / "out.jsonl"
    s = critique_file(inp, out, FakeBackend(), batch_size=3, progress=False)
    recs = _read(out)
    assert [r["line"] for r in recs] == [1, 2, 3, 4, 5, 6, 7]
    assert s.rows == 7 and s.written == 7 and s.skipped == 0
    by = {r["line"]: r for r in recs}
    assert by[1]["critique"]["dimension"] == "none"
    assert by[2]["critique"]["dimension"] == "incorrect_information"
    assert "unknown answer key 'Z'" in by[3]["error"] and by[3]["id"] == "q3"
    assert "not valid JSON" in by[4]["error"]
    assert "missing field 'explanation'" in by[5]["error"]
    assert by[6]["error"].startswith("unparseable critique") and by[6]["raw"] == "x"
    assert by[7]["critique"]["score"] == 5
    assert s.errors == 4 and s.per_dimension["none"] == 2 and s.per_dimension["incorrect_information"] == 1
    assert s.mean_score == pytest.approx((5 + 1 + 5) / 3, abs=1e-3)
    assert s.share_flawed == pytest.approx(1 / 3, abs=1e-3)


def test_resume_skips_done_rows_and_drops_torn_line(inp, tmp_path):
    out = tmp_path / "out.jsonl"
    critique_file(inp, out, FakeBackend(), progress=False)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:15])  # header, two records, crash while writing the third
    be = FakeBackend()
    s = critique_file(inp, out, be, progress=False)
    assert s.skipped == 2 and s.written == 5
    assert "q1" not in be.seen and "q2" not in be.seen and "q7" not in be.seen and "q6" in be.seen
    recs = _read(out)
    assert [r["line"] for r in recs] == [1, 2, 3, 4, 5, 6, 7]
    s2 = critique_file(inp, out, FakeBackend(), progress=False)
    assert s2.written == 0 and s2.skipped == 7 and len(_read(out)) == 7


def test_out_from_another_input_is_refused(inp, tmp_path):
    out = tmp_path / "out.jsonl"
    critique_file(inp, out, FakeBackend(), progress=False)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(_row(9)) + "\n")
    with pytest.raises(InputError, match="written for another input"):
        critique_file(other, out, FakeBackend(), progress=False)


def test_header_records_the_configuration(inp, tmp_path):
    out = tmp_path / "out.jsonl"
    critique_file(inp, out, FakeBackend(), fmt="ds", progress=False)
    h = read_header(out)
    assert h["kind"] == "critique" and h["version"] == 1
    assert h["config"] == {"backend": "fake", "format": "ds", "advice": None}


def test_rerun_with_another_configuration_is_refused_unless_force(inp, tmp_path):
    out = tmp_path / "out.jsonl"
    critique_file(inp, out, FakeBackend(), fmt="json", progress=False)
    before = out.read_bytes()
    with pytest.raises(InputError, match="another configuration .*format"):
        critique_file(inp, out, FakeBackend(), fmt="ds", progress=False)
    assert out.read_bytes() == before
    s = critique_file(inp, out, FakeBackend(), fmt="ds", progress=False, force=True)
    assert s.written == 7 and read_header(out)["config"]["format"] == "ds" and len(_read(out)) == 7


def test_user_file_and_input_as_out_are_refused(inp, tmp_path):
    notes = tmp_path / "n.txt"
    notes.write_text("notes\n")
    with pytest.raises(InputError, match="not a critique output"):
        critique_file(inp, notes, FakeBackend(), progress=False)
    assert notes.read_text() == "notes\n"
    before = inp.read_bytes()
    with pytest.raises(InputError, match="overwrite the input"):
        critique_file(inp, inp, FakeBackend(), progress=False)
    assert inp.read_bytes() == before


def test_second_writer_fails_at_once(inp, tmp_path):
    from core.outputs import AppendOutput

    out = tmp_path / "out.jsonl"
    with AppendOutput(out, "critique", {"backend": "fake", "format": "json", "advice": None}):
        with pytest.raises(InputError, match="another run is writing"):
            critique_file(inp, out, FakeBackend(), progress=False)
    assert critique_file(inp, out, FakeBackend(), progress=False).written == 7


def test_bad_byte_is_an_error_record(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_bytes(json.dumps(_row(1)).encode() + b"\n" + b'{"id": "q2", "question": "caf\xe9"}\n'
                  + json.dumps(_row(3)).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    s = critique_file(p, out, FakeBackend(), progress=False)
    recs = _read(out)
    assert [r["line"] for r in recs] == [1, 2, 3] and s.errors == 1
    assert "in.jsonl:2: not UTF-8" in recs[1]["error"] and "critique" in recs[2]


def test_backend_registry_and_describe(tmp_path):
    assert batch.BACKENDS.names()[:3] == ("checks", "classifier", "generative")
    assert batch.BACKENDS.canonical("critic") == "classifier"  # the old name still works
    batch.BACKENDS.add("fake-test", lambda o: FakeBackend(), help="a test double")  # as from outside the package
    try:
        assert isinstance(batch.make_backend("fake-test"), FakeBackend)
    finally:
        batch.BACKENDS.unregister("fake-test")
    d = batch.describe_backend(batch.make_backend("critic"))
    assert d["backend"] == "critic" and len(d["model_digest"]) == 12
    d = batch.describe_backend(batch.make_backend("checks", fast=True))
    assert d["backend"] == "checks" and d["mode"].startswith("fast") and len(d["model_digest"]) == 12


def test_read_done_rejects_foreign_file(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n{"b": 2}\n')
    with pytest.raises(InputError, match="not a critique output record"):
        read_done(p)


def test_ds_format_is_parseable(inp, tmp_path):
    out = tmp_path / "out.jsonl"
    critique_file(inp, out, FakeBackend(), fmt="ds", progress=False)
    recs = [r for r in _read(out) if "critique" in r]
    assert len(recs) == 3
    assert parse_ds(recs[1]["critique"]).dimension == "incorrect_information"


def test_model_error_stops_the_run_and_rerun_resumes(inp, tmp_path):
    class Broken(FakeBackend):
        def critique(self, records):
            raise ModelError("weights missing")

    out = tmp_path / "out.jsonl"
    with pytest.raises(ModelError):
        critique_file(inp, out, Broken(), batch_size=100, progress=False)
    assert not out.exists() or len(_read(out)) == 0  # nothing half-written for unreached rows (a header at most)
    s = critique_file(inp, out, FakeBackend(), progress=False)
    assert s.written == 7


def test_grounded_advice_is_applied(inp, tmp_path):
    facts = [Fact("mt:1", "copper conducts electricity"), Fact("mt:2", "the sun is a star")]
    adv = Advisor(FactIndex(facts, HashingEncoder()), OverlapScorer(),
                  hypothesis=lambda s, o: f"{o} is the material that conducts electricity best")
    out = tmp_path / "out.jsonl"
    critique_file(inp, out, FakeBackend(), advisor=adv, progress=False)
    by = {r["line"]: r for r in _read(out)}
    crit = by[2]["critique"]
    assert crit["cited_facts"] and set(crit["cited_facts"]) <= {"mt:1", "mt:2"}
    assert crit["general"] == "g"  # the backend's general advice is kept
    assert by[1]["critique"]["specific"] == "None"


def test_unknown_format_and_backend(inp, tmp_path):
    with pytest.raises(InputError, match="unknown format"):
        critique_file(inp, tmp_path / "o.jsonl", FakeBackend(), fmt="xml", progress=False)
    with pytest.raises(InputError, match="unknown critique backend .oracle.; choose one of checks, classifier, generative"):
        batch.make_backend("oracle")


def test_cli_default_command(inp, tmp_path, monkeypatch):
    from cli.main import app

    monkeypatch.setattr(batch, "make_backend", lambda *a, **k: FakeBackend())
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(app, ["critique", str(inp), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["rows"] == 7 and summary["errors"] == 4 and summary["per_dimension"]["none"] == 2
    r = CliRunner().invoke(app, ["critique", str(inp), "--out", str(out)])
    assert r.exit_code == 0 and "7 already done" in r.output and "share flawed 33.3%" in r.output
    r = CliRunner().invoke(app, ["critique", str(tmp_path / "missing.jsonl"), "--out", str(out)])
    assert r.exit_code != 0 and "input file not found" in r.output
    notes = tmp_path / "n.txt"
    notes.write_text("notes\n")
    r = CliRunner().invoke(app, ["critique", str(inp), "--out", str(notes)])
    assert r.exit_code == 2 and "not a critique output" in r.output and notes.read_text() == "notes\n"
    r = CliRunner().invoke(app, ["critique", str(inp), "--out", str(out), "--format", "ds"])
    assert r.exit_code == 2 and "another configuration" in r.output
    monkeypatch.undo()  # the real backend registry from here
    r = CliRunner().invoke(app, ["critique", str(inp), "--out", str(tmp_path / "o2.jsonl"), "--backend", "oracle"])
    assert r.exit_code == 2 and "checks, classifier" in r.output
