"""A small hand-written run directory for the report tests (no models, no pipeline run)."""
from __future__ import annotations

import json
from pathlib import Path

FACTS = [
    {"id": "mt-1", "text": "evaporation is when a liquid turns into a gas", "source": "microtheory",
     "provenance": [{"question_id": "q-001", "proof_id": "p1", "generator": "replay:generations.jsonl"}],
     "usage": {"proofs": 2, "questions": 2}},
    {"id": "mt-2", "text": "a <b>bold</b> claim & an ampersand", "source": "microtheory",
     "provenance": [{"question_id": "q-002", "proof_id": "p2", "generator": "replay:generations.jsonl"}],
     "usage": {"proofs": 1, "questions": 1}},
]

# A two-step proof: two leaves -> int1, int1 + a third leaf -> hypothesis.
PROOF = {
    "hypothesis": "water vapor forms when the sun heats a puddle",
    "fact_ids": ["mt-1", "sci-0002", "sci-0003"],
    "texts": ["evaporation is when a liquid turns into a gas", "the sun heats water",
              "water vapor is the gas form of water"],
    "steps": [{"premises": ["mt-1", "sci-0002"], "conclusion": "int1", "score": 0.91},
              {"premises": ["int1", "sci-0003"], "conclusion": "hypothesis", "score": 0.83}],
    "intermediates": {"int1": "the sun heating water makes it turn into a gas"},
    "score": 0.83, "passed": True,
}
PROOF1 = {"hypothesis": "a magnet attracts iron nails", "fact_ids": ["sci-0100"],
          "texts": ["magnets attract objects made of iron"],
          "steps": [{"premises": ["sci-0100"], "conclusion": "hypothesis", "score": 0.77}], "score": 0.77, "passed": True}


def _qa(qid: str, proof: dict | None, answer: str, key: str) -> dict:
    return {"id": qid, "error": None, "answer": answer, "answer_key": key, "correct": answer == key,
            "grounded": proof is not None, "score": 0.8, "proof": proof, "retrieval_answer": "A",
            "options": {"A": {"text": "yes", "best": proof}, "B": {"text": "no", "best": None}}}


CRITIQUE_INPUTS = [
    {"id": "mo-1", "question": "Which process changes liquid water into water vapor?", "options": {"A": "a", "B": "b"},
     "answer_key": "B", "explanation": "Evaporation turns liquid into gas.", "predicted_answer": "B"},
    {"id": "mo-2", "question": "What causes day and night?", "options": {"A": "a", "B": "b"},
     "answer_key": "B", "explanation": "The moon blocks the sun.", "predicted_answer": "A"},
    {"id": "mo-3", "question": "Why do nails stick to magnets?", "options": {"A": "a", "B": "b"},
     "answer_key": "A", "explanation": "Because.", "predicted_answer": "A"},
    {"id": "mo-4"},
]


def _crit(dim: str, score: int, cited: list[str] | None = None) -> dict:
    return {"main_flaw": "The moon blocks the sun." if dim != "none" else "None", "dimension": dim,
            "general": f"general advice for {dim}", "specific": f"specific advice for {dim}", "score": score,
            "flaw_sentence_index": 0 if dim != "none" else None, "confidence": 0.9, "cited_facts": cited or []}


def make_run_dir(root: Path, with_png: bool = False) -> Path:
    run = root / "run"
    (run / "microtheory").mkdir(parents=True)
    (run / "qa").mkdir()
    summary = {
        "name": "fixture", "started": "2026-01-01T00:00:00Z", "seconds": 12.5, "status": "ok",
        "sizes": {"corpus": 228, "knowledge_store": 40, "knowledge_proofs": 13, "microtheory": 2},
        "coverage": {"strategy": "qc-greedy", "budget": 2, "questions_covered": 2, "questions_total": 10,
                     "question_coverage": 0.2, "proofs_complete": 2, "proofs_total": 13},
        "qa": {"corpus": {"questions": 2, "accuracy": 0.5, "grounding_rate": 0.5, "grounded_accuracy": 1.0,
                          "retrieval_baseline_accuracy": 0.5, "correct": 1, "keyed": 2, "grounded": 1},
               "corpus+microtheory": {"questions": 2, "accuracy": 1.0, "grounding_rate": 1.0,
                                      "grounded_accuracy": 1.0, "retrieval_baseline_accuracy": 0.5, "correct": 2,
                                      "keyed": 2, "grounded": 2}},
        "critique": {"records": 4, "critiqued": 3, "errors": 1,
                     "per_dimension": {"none": 1, "incorrect_information": 1, "lack_justification": 1}},
        "stages": {"corpus_store": {"status": "ok", "seconds": 1.0},
                   "knowledge_store": {"status": "ok", "seconds": 2.0, "note": "replayed generations"},
                   "distill": {"status": "ok", "seconds": 0.3},
                   "qa": {"status": "ok", "seconds": 8.0},
                   "critique": {"status": "ok", "seconds": 1.2}},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "microtheory" / "facts.jsonl").write_text("".join(json.dumps(f) + "\n" for f in FACTS))
    report = {"strategy": "qc-greedy", "budget": 2,
              "coverage_curve": [{"budget": b, "size": b, "question_coverage": c}
                                 for b, c in ((1, 0.1), (2, 0.2), (4, 0.35), (8, 0.5))]}
    (run / "microtheory" / "report.json").write_text(json.dumps(report))
    if with_png:
        from pipeline.report import coverage_plot

        png = coverage_plot({**report, "strategy": "p-relevance stand-in"})
        assert png is not None
        (run / "microtheory" / "p_relevance.png").write_bytes(png)
    qs = [{"id": "q-101", "stem": "What happens to a puddle on a sunny day?", "options": {"A": "yes", "B": "no"},
           "answer_key": "A"},
          {"id": "q-102", "stem": "Which object does a magnet attract?", "options": {"A": "yes", "B": "no"},
           "answer_key": "A"}]
    (run / "qa" / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    with_mt = [_qa("q-101", PROOF, "A", "A"), _qa("q-102", PROOF1, "A", "A")]
    alone = [_qa("q-101", None, "B", "A"), _qa("q-102", PROOF1, "A", "A")]
    (run / "qa" / "microtheory.jsonl").write_text("".join(json.dumps(r) + "\n" for r in with_mt))
    (run / "qa" / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in alone))
    (run / "model_outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CRITIQUE_INPUTS))
    crits = [{"id": "mo-1", "line": 1, "backend": "critic", "critique": _crit("none", 5)},
             {"id": "mo-2", "line": 2, "backend": "critic", "critique": _crit("incorrect_information", 1, ["mt-1"])},
             {"id": "mo-3", "line": 3, "backend": "critic", "critique": _crit("lack_justification", 2)},
             {"id": "mo-4", "line": 4, "backend": "critic", "error": "model_outputs.jsonl:4: missing field 'question'"}]
    (run / "critiques.jsonl").write_text("".join(json.dumps(r) + "\n" for r in crits))
    return run
