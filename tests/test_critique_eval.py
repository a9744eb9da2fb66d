"""Evaluations against human judgements and real T5 errors: metrics, data mapping, with a critic double."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from critique.evaluate import (
    Signals,
    auroc,
    critic_signals,
    eval_human,
    human_correlations,
    lenient_steps,
    proof_matches,
    read_acceptability,
    render_proof,
    spearman,
    split_choices,
    t5_items,
)
from critique.format import Critique
from microtheory.trees import build_tree


class LengthCritic:
    """A critic double: longer explanations score higher (no `logits`: exercises the predict path)."""

    def predict(self, records, batch_size=32):
        out = []
        for r in records:
            n = len(r.explanation.split())
            score = min(5, n // 4)
            dim = "none" if score >= 4 else "lack_justification"
            out.append(Critique("None" if dim == "none" else "x", dim, "g", "None" if dim == "none" else "s",
                                score if dim != "none" else max(score, 4), confidence=0.8))
        return out


def test_auroc_and_spearman():
    assert auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    assert auroc([1, 2], [1, 1]) is None
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) is None


def test_split_choices():
    assert split_choices("literature book, bookshelf, poetry book, book of poetry, or book store") == [
        "literature book", "bookshelf", "poetry book", "book of poetry", "book store"]
    assert split_choices("rock or roll") == ["rock", "roll"]


def _write_csv(path, rows, snli=False):
    cols = ["Input.id", "Input.premise", "Input.hypothesis"] if snli else ["Input.id", "Input.question",
                                                                           "Input.answer_choices"]
    cols += ["Input.gold_label"] + [f"Input.explanation_{j}" for j in range(1, 6)] + \
        [f"Input.nll_{j}" for j in range(1, 6)] + ["Answer.acceptable"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _cqa_rows(iid, acc_votes, gold="book store"):
    base = {"Input.id": iid, "Input.question": "Where can you buy poems?",
            "Input.answer_choices": "shelf, poetry book, or book store", "Input.gold_label": gold}
    for j in range(1, 6):
        base[f"Input.explanation_{j}"] = " ".join(["word"] * (4 * j))  # longer = better for LengthCritic
        base[f"Input.nll_{j}"] = str(6 - j)  # lower NLL for longer: the baseline also ranks them right
    return [{**base, "Answer.acceptable": v} for v in acc_votes]


def test_read_acceptability_shares_and_mapping(tmp_path):
    p = tmp_path / "commonsenseqa_train.csv"
    _write_csv(p, _cqa_rows("i1", ["4|5", "3|4|5", "5"]) + _cqa_rows("i2", ["", "", ""], gold="moon"))
    items, problems = read_acceptability(p)
    assert len(items) == 5 and len(problems) == 1 and "gold label 'moon'" in problems[0]
    shares = [it.acceptable for it in items]
    assert shares == pytest.approx([0, 0, 1 / 3, 2 / 3, 1])
    r = items[0].record
    assert r.options == {"A": "shelf", "B": "poetry book", "C": "book store"}
    assert r.answer_key == "C" and r.predicted_answer == "C"
    assert items[4].nll == 1.0


def test_read_acceptability_snli(tmp_path):
    p = tmp_path / "snli_train.csv"
    rows = []
    for v in ["1", "1|2", ""]:
        d = {"Input.id": "s1", "Input.premise": "A dog runs.", "Input.hypothesis": "An animal moves.",
             "Input.gold_label": "TRUE", "Answer.acceptable": v}
        d.update({f"Input.explanation_{j}": f"e{j}" for j in range(1, 6)})
        d.update({f"Input.nll_{j}": "1.0" for j in range(1, 6)})
        rows.append(d)
    _write_csv(p, rows, snli=True)
    items, _ = read_acceptability(p)
    assert items[0].record.options == {"A": "entailment", "B": "neutral", "C": "contradiction"}
    assert items[0].record.answer_key == "A" and "A dog runs." in items[0].record.question
    assert items[0].acceptable == pytest.approx(2 / 3) and items[1].acceptable == pytest.approx(1 / 3)


def test_eval_human_with_double(tmp_path):
    d = tmp_path / "explanation_acceptability"
    d.mkdir()
    _write_csv(d / "commonsenseqa_train.csv", _cqa_rows("i1", ["4|5", "3|4|5", "5"]) +
               _cqa_rows("i2", ["5", "4|5", "2|3|4|5"]))
    rows = []
    for v in ["1", "1|2", ""]:
        r = {"Input.id": "s1", "Input.premise": "p", "Input.hypothesis": "h", "Input.gold_label": "neither",
             "Answer.acceptable": v}
        r.update({f"Input.explanation_{j}": " ".join(["w"] * (20 - 4 * j)) for j in range(1, 6)})
        r.update({f"Input.nll_{j}": str(j) for j in range(1, 6)})
        rows.append(r)
    _write_csv(d / "snli_train.csv", rows, snli=True)
    res = eval_human(data_dir=tmp_path, critic=LengthCritic())
    cqa, snli = res["datasets"]["commonsenseqa"], res["datasets"]["snli"]
    assert cqa["n_explanations"] == 10 and cqa["spearman_critic"] > 0.8 and cqa["spearman_neg_nll"] > 0.8
    assert snli["spearman_critic"] > 0.8  # shorter explanations were accepted more here: the double agrees


def test_critic_signals_predict_path():
    from critique.inputs import ModelOutput

    recs = [ModelOutput(f"r{i}", "q?", {"A": "a", "B": "b"}, "A", " ".join(["w"] * (4 * i + 1)), "A")
            for i in range(6)]
    sig = critic_signals(LengthCritic(), recs)
    assert list(sig.score) == [0, 1, 2, 3, 4, 5]
    assert sig.p_none[0] == pytest.approx(0.2) and sig.p_none[5] == pytest.approx(0.8)
    r = human_correlations([], Signals(np.array([]), np.array([]), np.array([])))
    assert r["n_explanations"] == 0


GOLD = build_tree("t1", "t1", "copper conducts electricity",
                  {"sent1": "copper is a metal", "sent2": "metals conduct electricity", "sent3": "the sun is a star"},
                  "sent1 & sent2 -> hypothesis;")


def test_proof_matching_and_rendering():
    assert proof_matches(GOLD, "$proof$ = sent2 & sent1 -> hypothesis;") == (True, True)
    assert proof_matches(GOLD, "$proof$ = sent1 & sent3 -> hypothesis;") == (False, False)
    assert proof_matches(GOLD, "sent1 -> int1: copper is a conductor; int1 & sent2 -> hypothesis;") == (True, False)
    assert lenient_steps("$proof$ = sent1 & -> ; garbage; sent2 -> hypothesis;") == [(["sent2"], "hypothesis", None)]
    text = render_proof("$proof$ = sent1 -> int1: copper can conduct; int1 & sent2 -> hypothesis;",
                        GOLD.sentences, GOLD.hypothesis, ("B", "copper."))
    assert text == ("Copper is a metal. So, copper can conduct. Metals conduct electricity. "
                    "So, copper conducts electricity. So the answer is (B) copper.")


@pytest.mark.data
def test_t5_items_on_real_data(data_dir):
    items = t5_items(2, "T5_large", data_dir)
    assert len(items) == 187
    n_flawed = sum(it.flawed for it in items)
    assert 0 < n_flawed < 187  # real predictions: some match gold, many do not
    assert all(it.record.predicted_answer == it.record.answer_key for it in items)
    assert all(it.record.explanation.endswith(".") for it in items)


def test_cli_eval_human(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    import critique.model
    from cli.main import app

    d = tmp_path / "explanation_acceptability"
    d.mkdir()
    _write_csv(d / "commonsenseqa_train.csv", _cqa_rows("i1", ["4|5", "3|4|5", "5"]))
    rows = []
    for v in ["1", "1|2", ""]:
        r = {"Input.id": "s1", "Input.premise": "p", "Input.hypothesis": "h", "Input.gold_label": "FALSE",
             "Answer.acceptable": v}
        r.update({f"Input.explanation_{j}": " ".join(["w"] * (4 * j)) for j in range(1, 6)})
        r.update({f"Input.nll_{j}": str(j) for j in range(1, 6)})
        rows.append(r)
    _write_csv(d / "snli_train.csv", rows, snli=True)
    monkeypatch.setattr(critique.model, "load_critic", lambda *a, **k: LengthCritic())
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, ["critique", "eval-human", "--data-dir", str(tmp_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "commonsenseqa: n=5 explanations" in r.output
    res = json.loads(out.read_text())
    assert res["datasets"]["snli"]["spearman_critic"] < 0  # longer explanations were accepted less here


def test_acceptability_signal_correlations_respect_the_split():
    """bench/acceptability_signals.py: each split is measured on its own rows, and the rank average
    of several signals follows them (a signal that tracks the labels on one split and opposes them on
    the other must show both)."""
    from bench.acceptability_signals import COMBINATION, correlations, rank_average

    acc = np.arange(20, dtype=float)
    explore = np.arange(20) < 10
    follows_then_opposes = np.where(explore, acc, -acc)
    sig = {name: follows_then_opposes.copy() for name in COMBINATION}
    sig["gpt3_neg_nll"] = np.where(np.arange(20) % 2 == 0, acc, np.nan)  # missing values are left out
    ex, held = correlations(sig, acc, explore), correlations(sig, acc, ~explore)
    assert ex["support"] == pytest.approx(1.0) and held["support"] == pytest.approx(-1.0)
    combo = next(k for k in ex if k.startswith("rank_average"))
    assert ex[combo] == pytest.approx(1.0) and held[combo] == pytest.approx(-1.0)
    assert held["gpt3_neg_nll"] == pytest.approx(1.0)
    r = rank_average(sig, COMBINATION, explore)
    assert r.shape == (10,) and r.max() == pytest.approx(len(COMBINATION))
