"""Grounded QA: one record per question, grounded answers, error records, summary, baseline."""
from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from retrieval.prover import Prover
from retrieval.qa import QAConfig, QASummary, answer_question, run_qa, validate_question
from retrieval.store import KnowledgeStore
from core.types import Fact, Question

FACTS = [
    ("w1", "a magnet attracts iron"),
    ("w2", "iron nails are made of iron"),
    ("w3", "plants need sunlight to grow"),
    ("w4", "the moon orbits the earth"),
]


@pytest.fixture()
def prover(tmp_path: Path) -> Prover:
    ks = KnowledgeStore.create(tmp_path / "c", encoder=HashingEncoder())
    ks.add([Fact(i, t) for i, t in FACTS])
    ks.save()
    return Prover(ks, OverlapScorer(threshold=0.99))


Q_MAGNET = Question("q1", "Which of the following does a magnet attract?", {"A": "wood", "B": "iron nails",
                                                                            "C": "plastic cups"}, "B")


def test_grounded_answer_with_two_fact_proof(prover: Prover) -> None:
    rec = answer_question(Q_MAGNET, prover)
    assert rec["error"] is None and rec["answer"] == "B" and rec["correct"] is True
    assert rec["grounded"] is True
    assert set(rec["proof"]["fact_ids"]) == {"w1", "w2"}
    assert rec["proof"]["texts"] and rec["proof"]["steps"][0]["conclusion"] == "hypothesis"
    assert set(rec["options"]) == {"A", "B", "C"}
    assert rec["options"]["B"]["grounded"] and not rec["options"]["C"]["grounded"]
    assert rec["options"]["B"]["hypothesis"] == "a magnet attract iron nails"


def test_ungrounded_fallback_is_flagged(prover: Prover) -> None:
    q = Question("q2", "Which planet has rings?", {"A": "saturn", "B": "mercury"}, "A")
    rec = answer_question(q, prover)
    assert rec["grounded"] is False and rec["proof"] is None and rec["answer"] in {"A", "B"}
    assert rec["options"][rec["answer"]]["best"] is not None  # the chosen option's best attempt is still reported


@pytest.mark.parametrize("q, why", [
    (Question("e1", "Which one?", {}, None), "no answer options"),
    (Question("e2", "Which one?", {"A": "x", "B": "  "}, "A"), "option B has empty text"),
    (Question("e3", "Which one?", {"A": "x", "B": "y"}, "D"), "answer key 'D' is not among"),
    (Question("e4", "  ", {"A": "x"}, "A"), "stem is empty"),
])
def test_bad_questions_give_error_records(prover: Prover, q: Question, why: str) -> None:
    assert why in (validate_question(q) or "")
    rec = answer_question(q, prover)
    assert rec["id"] == q.id and why in rec["error"] and rec["answer"] is None


def test_run_keeps_one_record_per_question_in_order(prover: Prover) -> None:
    qs = [Q_MAGNET, Question("bad", "Which?", {}, "A"),
          Question("q3", "What do plants need to grow?", {"A": "sunlight", "B": "darkness"}, "A"),
          Question("nokey", "What orbits the earth?", {"A": "the moon", "B": "the sun"})]
    recs, summary = run_qa(qs, prover)
    assert [r["id"] for r in recs] == ["q1", "bad", "q3", "nokey"]
    s = summary.to_json()
    assert s["questions"] == 4 and s["errors"] == 1 and s["answered"] == 3 and s["error_ids"] == ["bad"]
    assert s["keyed"] == 2 and s["accuracy"] == 1.0
    assert s["grounding_rate"] == pytest.approx(sum(r["grounded"] for r in recs) / 3, abs=1e-4)
    assert s["retrieval_baseline_accuracy"] is not None and s["questions_per_s"] > 0


def test_summary_rates() -> None:
    s = QASummary()
    for correct, grounded, ret in [(True, True, "A"), (False, True, "B"), (True, False, "A"), (False, False, "A")]:
        s.add({"id": "x", "error": None, "answer": "A" if correct else "B", "answer_key": "A", "correct": correct,
               "grounded": grounded, "retrieval_answer": ret})
    s.elapsed_s = 2.0
    j = s.to_json()
    assert j["accuracy"] == 0.5 and j["grounding_rate"] == 0.5 and j["grounded_accuracy"] == 0.5
    assert j["retrieval_baseline_accuracy"] == 0.75 and j["questions_per_s"] == 2.0


def test_retrieval_weight_changes_ranking_only_among_pool(prover: Prover) -> None:
    q = Question("q4", "Which object orbits the earth?", {"A": "the moon", "B": "a magnet"}, "A")
    a = answer_question(q, prover, QAConfig(ranker="none", w_retrieval=0.0))
    b = answer_question(q, prover, QAConfig(ranker="none", w_retrieval=1.0))
    ob = b["options"]["A"]
    assert ob["score"] == pytest.approx(ob["entail_score"] + ob["retrieval_score"], abs=2e-4)
    assert a["options"]["A"]["score"] == a["options"]["A"]["entail_score"]


def test_context_sentences_serve_as_premises(prover: Prover) -> None:
    q = Question("q5", "Tom has a red ball. What color is the ball that Tom has?", {"A": "red", "B": "blue"}, "A")
    # The hand rule proves every option: the context sentence is A's premise.
    rec = answer_question(q, prover, QAConfig(ranker="none"))
    assert rec["answer"] == "A"
    ids = rec["options"]["A"]["best"]["fact_ids"]
    assert "context:1" in ids
    off = answer_question(q, prover, QAConfig(ranker="none", use_context=False))
    assert "context:1" not in (off["options"]["A"]["best"] or {}).get("fact_ids", [])
    # The learned ranker sees the context through its features.
    feats = answer_question(q, prover)["options"]
    assert feats["A"]["features"]["context_cover"] == 1.0 and feats["B"]["features"]["context_cover"] == 0.0
    assert feats["A"]["features"]["context_top1"] > 0
    no_ctx = answer_question(q, prover, QAConfig(use_context=False))["options"]["A"]["features"]
    assert no_ctx["context_top1"] == 0.0


def test_empty_corpus_is_a_clear_error(tmp_path: Path) -> None:
    from core.errors import StoreError

    ks = KnowledgeStore.create(tmp_path / "e", encoder=HashingEncoder())
    with pytest.raises(StoreError, match="empty"):
        run_qa([Q_MAGNET], Prover(ks, OverlapScorer()))


def test_bad_config_is_a_run_error() -> None:
    from core.errors import InputError

    with pytest.raises(InputError, match="retrieval_feature"):
        QAConfig(retrieval_feature="best")


def test_open_microtheory_reads_a_distilled_microtheory_directory(tmp_path: Path) -> None:
    # A distill output folder has a manifest of kind "microtheory" (not a store): its facts.jsonl is used.
    import json

    from retrieval.qa import open_microtheory

    mt = tmp_path / "mt"
    mt.mkdir()
    (mt / "manifest.json").write_text(json.dumps({"kind": "microtheory", "format_version": 1}))
    (mt / "facts.jsonl").write_text(json.dumps({"id": "m1", "text": "iron nails are attracted by magnets"}) + "\n")
    ks = open_microtheory(mt, HashingEncoder())
    assert [f.id for f in ks] == ["m1"] and next(iter(ks)).source == "microtheory"


# ---------------------------------------------------------------- reading questions, streaming records


def test_read_question_set_keeps_bad_lines_as_errors(tmp_path: Path) -> None:
    import json

    from core.errors import InputError
    from retrieval.qa import read_question_set, read_questions

    p = tmp_path / "q.jsonl"
    p.write_bytes(json.dumps({"id": "a", "stem": "s?", "options": {"A": "x", "B": "y"}}).encode() + b"\n\n"
                  + b"[1, 2]\n" + b'{"id": "b", "stem": "caf\xe9"}\n'
                  + json.dumps({"question": {"stem": "arc?", "choices": [{"label": "A", "text": "x"}]},
                                "answerKey": "A"}).encode() + b"\n")
    qset = read_question_set(p)
    kinds = [type(r).__name__ for r in qset.rows]
    assert kinds == ["Question", "InputError", "InputError", "Question"] and qset.source == str(p)
    assert str(qset.rows[1]).startswith(f"{p}:3: expected a JSON object") and qset.rows[2].line == 4
    assert qset.rows[3].id == "line5" and qset.rows[3].options == {"A": "x"}
    with pytest.raises(InputError, match=":3: expected a JSON object"):
        read_questions(p)


def test_bad_line_rows_become_error_records(prover: Prover) -> None:
    from core.errors import InputError

    records, summary = run_qa([Q_MAGNET, InputError("not valid JSON", "q.jsonl", 2)], prover)
    assert [r["id"] for r in records] == ["q1", "line2"]
    assert records[1]["error"] == "q.jsonl:2: not valid JSON" and records[1]["line"] == 2
    assert summary.errors == 1 and summary.answered == 1
