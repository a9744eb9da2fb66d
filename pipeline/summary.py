"""The run's summary.json (headline numbers drawn from the stage records, nothing computed twice)
and the short human summary the CLI prints."""
from __future__ import annotations

from collections import Counter
from typing import Any

QA_KEYS = ("questions", "accuracy", "grounding_rate", "grounded_accuracy", "retrieval_baseline_accuracy",
           "correct", "keyed", "grounded")
COVERAGE_KEYS = ("strategy", "budget", "questions_covered", "questions_total", "question_coverage",
                 "proofs_complete", "proofs_total")
CRITIQUE_KEYS = ("records", "critiqued", "errors", "per_dimension", "mean_score", "flawed_share", "grounded")


def critique_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Count per dimension, mean score, share flawed, errors: from critique records."""
    crits = [r["critique"] for r in records if isinstance(r.get("critique"), dict)]
    dims = Counter(c["dimension"] for c in crits)
    return {"per_dimension": dict(sorted(dims.items())), "critiqued": len(crits),
            "errors": sum(1 for r in records if not isinstance(r.get("critique"), dict)),
            "mean_score": round(sum(c["score"] for c in crits) / len(crits), 3) if crits else None,
            "flawed_share": round(sum(1 for c in crits if c["dimension"] != "none") / len(crits), 4) if crits else None}


def build_summary(name: str, stages: dict[str, dict[str, Any]], started: str, seconds: float) -> dict[str, Any]:
    """summary.json of a run named `name` from its stage records (status, reason, seconds, details)."""
    def get(stage: str, key: str) -> Any:
        s = stages.get(stage) or {}
        return s.get(key) if s.get("status") == "ok" else None

    qa_runs = get("qa", "runs") or {}
    crit = stages.get("critique") or {}
    return {
        "name": name, "started": started, "seconds": round(seconds, 2),
        "status": "failed" if any(s.get("status") == "failed" for s in stages.values()) else "ok",
        "sizes": {"corpus": get("corpus_store", "facts"), "knowledge_store": get("knowledge_store", "facts"),
                  "knowledge_proofs": get("knowledge_store", "proofs"), "microtheory": get("distill", "size")},
        "coverage": {k: get("distill", k) for k in COVERAGE_KEYS},
        "qa": {run: {k: r.get(k) for k in QA_KEYS} for run, r in qa_runs.items() if isinstance(r, dict)},
        "critique": ({k: crit.get(k) for k in CRITIQUE_KEYS} if crit.get("status") == "ok" else None),
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
    out.append(f"sizes: corpus {_n(sz['corpus'])}, knowledge store {_n(sz['knowledge_store'])} facts / "
               f"{_n(sz['knowledge_proofs'])} proofs, microtheory {_n(sz['microtheory'])}")
    cov = summary["coverage"]
    if cov.get("questions_total"):
        out.append(f"coverage ({cov['strategy']}, budget {cov['budget']}): {cov['questions_covered']}/"
                   f"{cov['questions_total']} training questions (of those with a proof in the store) keep a "
                   f"complete proof, {cov['proofs_complete']}/{cov['proofs_total']} proofs")
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


def _n(x: Any) -> str:
    # A size of a stage that did not run: a dash, not Python's "None".
    return "-" if x is None else str(x)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"
