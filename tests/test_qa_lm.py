"""The option LM features of the QA ranker (retrieval.option_lm) and their engine (core.lm_nll):
finite, ordered with the options, one batched LM call per question, and never computed (nor the LM
loaded) for a ranker that does not use them."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from qa_fixture import overlap_prover
from tiny_lm import tiny_backend

from core.errors import ModelError
from core.lm_nll import ContinuationNll, NllConfig
from core.types import Fact, Question
from retrieval import qa as qa_mod
from retrieval.option_lm import (
    LM_FEATURES,
    PASSES,
    LmQuestion,
    features_from_nll,
    lm_option_features,
    option_pairs,
)
from retrieval.prover import Prover
from retrieval.qa import QAConfig, answer_question
from retrieval.ranker import ALL_FEATURES, OptionRanker


@pytest.fixture(scope="module")
def backend():
    return tiny_backend()


class FakeEngine:
    """NLL = a per-option table after facts and question, 10 with no question; counts its calls."""

    def __init__(self, nll: dict[str, float]) -> None:
        self.nll, self.calls = nll, []

    def nll_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        self.calls.append(list(pairs))
        return np.asarray([[10.0 if p == "Answer:" else self.nll[o], 2.0] for p, o in pairs])


def test_features_are_the_option_logprob_and_its_pmi() -> None:
    # Two options (2 tokens each): NLL 2 and 6 after facts and question, 5 and 5 alone.
    x = features_from_nll(np.asarray([[2.0, 2], [6.0, 2], [5.0, 2], [5.0, 2]]), 2)
    assert x.shape == (2, len(LM_FEATURES))
    got = dict(zip(LM_FEATURES, x.T))
    assert np.allclose(got["lm_logp_sum"], [-2, -6]) and np.allclose(got["lm_logp_mean"], [-1, -3])
    assert np.allclose(got["lm_pmi"], [3, -1]) and np.allclose(got["lm_pmi_mean"], [1.5, -0.5])
    q = LmQuestion("Why  is the sky\nblue?", ("light  scattering", "paint"), ("blue light scatters most.", "sky"))
    pairs = option_pairs(q)
    facts_prompt = "Facts: blue light scatters most. sky.\nQuestion: Why is the sky blue?\nAnswer:"
    assert len(pairs) == 2 * len(PASSES) and pairs[0] == (facts_prompt, "light scattering")
    assert pairs[1] == (facts_prompt, "paint") and pairs[3] == ("Answer:", "paint")
    # No facts retrieved: no facts line.
    assert option_pairs(LmQuestion("Why?", ("a",)))[0] == ("Question: Why?\nAnswer:", "a")


def test_one_engine_call_for_all_questions_rows_in_option_order() -> None:
    eng = FakeEngine({"wood": 8.0, "iron nails": 2.0, "sun": 1.0, "moon": 3.0, "rain": 2.0})
    out = lm_option_features(eng, [LmQuestion("Q1?", ("wood", "iron nails"), ("f",)),
                                   LmQuestion("Q2?", ("sun", "moon", "rain"), ("g",))])
    assert len(eng.calls) == 1 and [x.shape for x in out] == [(2, 4), (3, 4)]
    assert np.allclose(out[0][:, 1], [-8, -2]) and np.allclose(out[1][:, 1], [-1, -3, -2])
    assert np.allclose(out[1][:, LM_FEATURES.index("lm_pmi")], [9, 7, 8])
    assert lm_option_features(eng, []) == []


def test_real_engine_features_are_finite_and_follow_the_options(backend) -> None:
    eng = ContinuationNll(NllConfig(threads=None, batch_size=3), backend=backend)
    opts = ["carbon dioxide", "oxygen", "a rock", "water vapour"]
    facts = ("plants take in carbon dioxide", "animals breathe oxygen")
    a = lm_option_features(eng, [LmQuestion("Which gas do plants take in?", tuple(opts), facts)])[0]
    assert a.shape == (4, len(LM_FEATURES)) and np.isfinite(a).all()
    assert len(set(a[:, 1].round(6))) == 4  # distinct options, distinct scores
    fresh = ContinuationNll(NllConfig(threads=None, batch_size=1, pack_tokens=1), backend=backend)
    b = lm_option_features(fresh, [LmQuestion("Which gas do plants take in?", tuple(opts[::-1]), facts)])[0]
    np.testing.assert_allclose(b[::-1], a, rtol=1e-4, atol=1e-3)  # option order and packing change nothing
    # The critic's scorer keys its cache with its own prompt version: the two never share entries.
    from critique.likelihood import LikelihoodScorer

    assert LikelihoodScorer(backend=backend).key("p", "c") != ContinuationNll(backend=backend).key("p", "c")


FACTS = [Fact("w1", "a magnet attracts iron"), Fact("w2", "iron nails are made of iron")]
Q = Question("q1", "Which of the following does a magnet attract?", {"A": "wood", "B": "iron nails"}, "B")


@pytest.fixture()
def prover(tmp_path: Path) -> Prover:
    return overlap_prover(tmp_path / "c", FACTS)


def _save(tmp_path: Path, features: list[str], weights: list[float]) -> str:
    d = tmp_path / "_".join(features)
    n = len(features)
    OptionRanker(features, np.zeros(n), np.ones(n), np.asarray(weights)).save(d)
    return str(d)


def test_a_ranker_without_lm_features_never_loads_the_lm(tmp_path: Path, prover: Prover, monkeypatch) -> None:
    def refuse() -> None:
        raise AssertionError("the LM was loaded for a ranker that does not use it")

    monkeypatch.setattr(qa_mod, "_lm_engine", refuse)
    rec = answer_question(Q, prover, QAConfig(ranker=_save(tmp_path, ["option_words"], [1.0])))
    assert rec["answer"] == "B" and set(rec["options"]["A"]["features"]) == set(ALL_FEATURES)
    assert not OptionRanker.load(_save(tmp_path, ["option_words"], [1.0])).needs_lm


def test_the_fast_ranker_is_the_shipped_fit_without_the_lm(prover: Prover, monkeypatch) -> None:
    fast, shipped = OptionRanker.load("fast"), OptionRanker.load("shipped")
    assert shipped.needs_lm and not fast.needs_lm
    assert set(fast.features) == set(shipped.features) - set(LM_FEATURES)
    # Each carries the grounding policy chosen on train for its own picks, with the search it was chosen with.
    for r in (fast, shipped):
        assert {"threshold", "margin", "search"} <= set(r.config["grounding"])

    def refuse() -> None:
        raise AssertionError("the fast ranker loaded the LM")

    monkeypatch.setattr(qa_mod, "_lm_engine", refuse)
    rec = answer_question(Q, prover, QAConfig(ranker="fast"))
    assert rec["answer"] in Q.options


def test_a_ranker_with_lm_features_runs_the_lm_once_per_question(tmp_path: Path, prover: Prover,
                                                                  monkeypatch) -> None:
    # The fake LM prefers "wood"; a ranker reading only lm_logp_sum follows it, whatever retrieval says.
    eng = FakeEngine({"wood": 1.0, "iron nails": 9.0})
    monkeypatch.setattr(qa_mod, "_lm_engine", lambda: eng)
    path = _save(tmp_path, ["option_words", "lm_logp_sum"], [0.0, 1.0])
    assert OptionRanker.load(path).needs_lm
    rec = answer_question(Q, prover, QAConfig(ranker=path))
    assert rec["answer"] == "A" and len(eng.calls) == 1 and len(eng.calls[0]) == 2 * len(PASSES)
    assert any(p.startswith("Facts: a magnet attracts iron.") for p, _ in eng.calls[0])  # the question's facts
    assert set(rec["options"]["A"]["features"]) == set(ALL_FEATURES + LM_FEATURES)
    assert rec["options"]["A"]["features"]["lm_logp_sum"] == -1.0
    # A matrix without the LM columns cannot feed such a ranker: a clear error, not a misread column.
    with pytest.raises(ModelError, match="needs features"):
        OptionRanker.load(path).scores(np.zeros((2, len(ALL_FEATURES))))


def test_a_run_computes_the_lm_features_of_a_block_of_questions_at_once(tmp_path: Path, prover: Prover,
                                                                        backend, monkeypatch) -> None:
    from retrieval.qa import run_qa

    eng = ContinuationNll(NllConfig(threads=None), backend=backend)
    runs = []
    real_run = eng._run
    monkeypatch.setattr(eng, "_run", lambda todo, progress: (runs.append(len(todo)), real_run(todo, progress)))
    monkeypatch.setattr(qa_mod, "_lm_engine", lambda: eng)
    qs = [Q, Question("q2", "What does a magnet attract?", {"A": "iron", "B": "glass", "C": "paper"}, "A"),
          Question("bad", "Which?", {}, "A")]
    recs, _ = run_qa(qs, prover, QAConfig(ranker=_save(tmp_path, ["lm_pmi"], [1.0])))
    assert [r["id"] for r in recs] == ["q1", "q2", "bad"] and recs[2]["error"]
    # One LM call for the block (2 + 3 options, two passes each); answering found every pair cached.
    assert runs == [2 * (2 + 3)]
    for r, q in zip(recs[:2], qs[:2]):
        alone = lm_option_features(ContinuationNll(NllConfig(threads=None), backend=backend),
                                   [LmQuestion(q.stem, tuple(q.options.values()), ("a magnet attracts iron",
                                                                                   "iron nails are made of iron"))])[0]
        got = [r["options"][k]["features"]["lm_pmi"] for k in q.options]
        np.testing.assert_allclose(got, alone[:, 2], atol=1e-3)


def test_the_shipped_ranker_reads_the_real_lm_and_its_features_are_finite(prover: Prover) -> None:
    shipped = OptionRanker.load()
    assert shipped.needs_lm and set(LM_FEATURES) <= set(shipped.features)
    rec = answer_question(Q, prover)
    lm = np.asarray([[o["features"][f] for f in LM_FEATURES] for o in rec["options"].values()])
    assert lm.shape == (2, len(LM_FEATURES)) and np.isfinite(lm).all()
    assert (lm[:, LM_FEATURES.index("lm_logp_sum")] < 0).all() and len(set(lm[:, 1])) == 2
