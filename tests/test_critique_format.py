from __future__ import annotations

import json

import pytest

from critique.errors import CritiqueFormatError
from critique.format import Critique, parse_ds
from critique.taxonomy import FLAW_LABELS, LABELS, general_advice
from core.errors import MicrotheoryError

EXPECTED = (
    "The explanation states or suggests the following:\n"
    "* Main flaw (standalone statement): \"Plants get their food from the soil.\"\n"
    "* Dimension: incorrect_information\n"
    "\n"
    "Consider these points for revising the explanation:\n"
    "* General: Check each stated fact.\n"
    "* Specific: Plants make food by photosynthesis.\n"
    "\n"
    "Explanation score: 1"
)


def make(**kw) -> Critique:
    d = dict(main_flaw="Plants get their food from the soil.", dimension="incorrect_information",
             general="Check each stated fact.", specific="Plants make food by photosynthesis.", score=1)
    d.update(kw)
    return Critique(**d)


def test_taxonomy_has_eight_dimensions_plus_none():
    assert len(FLAW_LABELS) == 8 and LABELS[0] == "none" and len(set(LABELS)) == 9
    assert "inconsistent_answer" in LABELS and general_advice("irrelevant")


def test_render_exact_block():
    assert make().to_ds() == EXPECTED


def test_roundtrip_text_and_json():
    c = make(flaw_sentence_index=2, confidence=0.9, cited_facts=("a fact",))
    back = parse_ds(c.to_ds())
    assert (back.main_flaw, back.dimension, back.general, back.specific, back.score) == (
        c.main_flaw, c.dimension, c.general, c.specific, c.score)
    j = json.loads(json.dumps(c.to_json()))
    assert Critique.from_json(j) == c


def test_no_flaw_renders_none():
    c = Critique(main_flaw="None", dimension="none", general="Fine.", specific="None", score=5)
    text = c.to_ds()
    assert '* Main flaw (standalone statement): "None"' in text and "* Specific: None" in text
    assert parse_ds(text).dimension == "none" and not parse_ds(text).flawed


def test_parse_tolerates_preamble_case_and_spaces():
    text = "Sure, here is my critique.\n\n" + EXPECTED.replace("incorrect_information", "Incorrect information")
    c = parse_ds(text)
    assert c.dimension == "incorrect_information" and c.score == 1


@pytest.mark.parametrize("field", ["Main flaw (standalone statement)", "Dimension", "General", "Specific",
                                   "Explanation score"])
def test_missing_field_is_named(field):
    text = "\n".join(line for line in EXPECTED.splitlines() if field + ":" not in line)
    with pytest.raises(CritiqueFormatError, match=r"missing field\(s\): " + field.replace("(", r"\(").replace(")", r"\)")):
        parse_ds(text)


@pytest.mark.parametrize("bad", ["6", "-1", "3.5", "three", "", "4/5"])
def test_bad_score_is_an_error_never_a_default(bad):
    with pytest.raises(CritiqueFormatError, match="score"):
        parse_ds(EXPECTED.replace("Explanation score: 1", f"Explanation score: {bad}"))


def test_unknown_dimension():
    with pytest.raises(CritiqueFormatError, match="unknown dimension 'wrong_math'"):
        parse_ds(EXPECTED.replace("incorrect_information", "wrong_math"))


def test_duplicate_field():
    with pytest.raises(CritiqueFormatError, match="more than once"):
        parse_ds(EXPECTED + "\nExplanation score: 4")


def test_record_validates():
    with pytest.raises(CritiqueFormatError):
        make(score=7)
    with pytest.raises(CritiqueFormatError):
        make(score=True)
    with pytest.raises(CritiqueFormatError):
        make(dimension="bogus")
    with pytest.raises(CritiqueFormatError, match="missing field"):
        Critique.from_json({"dimension": "none"})
    assert issubclass(CritiqueFormatError, MicrotheoryError)


def test_multiline_value_continues():
    text = EXPECTED.replace("* General: Check each stated fact.", "* General: Check each\nstated fact.")
    assert parse_ds(text).general == "Check each stated fact."


# --- critique/inputs.py -------------------------------------------------------------------------

from critique.inputs import iter_rows, parse_model_output, read_model_outputs, split_inline_options  # noqa: E402
from core.errors import InputError  # noqa: E402


def test_split_inline_options():
    stem, opts = split_inline_options("Which is a metal? (A) wood (B) iron (C) glass")
    assert stem == "Which is a metal?" and opts == {"A": "wood", "B": "iron", "C": "glass"}
    assert split_inline_options("No options here") == ("No options here", {})


def test_reader_accepts_both_schemas_and_reports_bad_rows(tmp_path):
    rows = [
        {"id": "a", "question": "Which is a metal?", "options": {"A": "wood", "B": "iron"}, "answer_key": "B",
         "explanation": "Iron is a metal.", "predicted_answer": "B"},
        {"id": "b", "question": "Which is a metal? (A) wood (B) iron", "answerKey": "B",
         "explanation": "Iron is a metal.", "answer": "(B) iron"},
        {"id": "c", "question": "Which is a metal?", "options": {"A": "wood", "B": "iron"}, "answer_key": "E",
         "explanation": "x", "predicted_answer": "B"},
        {"id": "d", "question": "Which is a metal?", "options": {"A": "wood", "B": "iron"}, "answer_key": "A",
         "predicted_answer": "B"},
    ]
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    got = list(iter_rows(p))
    assert [r.id for r in got] == ["a", "b", "c", "d", "line5"]
    assert got[0].record and got[0].record.predicted_label == "B"
    assert got[1].record and got[1].record.options == {"A": "wood", "B": "iron"}
    assert got[1].record.answer_key == "B" and got[1].record.predicted_answer == "B"
    assert got[2].error and "unknown answer key 'E'" in str(got[2].error) and str(got[2].error).startswith(str(p) + ":3:")
    assert got[3].error and "missing field 'explanation'" in str(got[3].error)
    assert got[4].error and "not valid JSON" in str(got[4].error)
    with pytest.raises(InputError, match=":3:"):
        read_model_outputs(p)


def test_predicted_answer_by_text():
    r = parse_model_output({"question": "Q (A) red (B) blue", "answer_key": "A", "explanation": "e",
                            "predicted_answer": "Blue"})
    assert r.predicted_answer == "B" and r.question_with_options() == "Q (A) red (B) blue"
