"""The checks' text evidence features (head v4): an altered fact, a contradicted unit, the final
conclusion against the predicted option, and the same features at run time as in training (cached
checks upgraded by `with_evidence`). No real models: the hashing encoder and the overlap scorer."""
from __future__ import annotations

import numpy as np

from critique.checks import (BASE_GLOBAL_FEATURES, BASE_UNIT_FEATURES, GLOBAL_FEATURES, UNIT_FEATURES, Checker,
                             ChecksConfig, FactTable, RecordChecks, inverted_share, with_evidence, without_knowledge)
from critique.inputs import ModelOutput
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer

OPTS = {"A": "fall", "B": "summer", "C": "winter"}
FACTS = ["summer has the most sunlight", "a plant requires sunlight to grow", "a rose is a kind of plant",
         "the earth has 1 moon"]


def _rec(expl: str, pred: str = "B", rid: str = "r") -> ModelOutput:
    return ModelOutput(rid, "In which season do garden plants get the most sunlight?", OPTS, "B", expl, pred)


def _checker(fast: bool = False) -> Checker:
    enc = HashingEncoder(64)
    facts = None if fast else FactTable.build([f"f{i}" for i in range(len(FACTS))], FACTS, enc)
    return Checker(OverlapScorer(), enc, facts, ChecksConfig(fast=fast))


def _unit(c: RecordChecks, i: int, name: str) -> float:
    return float(c.u[i, UNIT_FEATURES.index(name)])


def test_altered_fact_negation_swap_and_number_are_flagged_restatements_are_not():
    recs = [_rec("Recall that a plant requires sunlight to grow. Summer has the most sunlight. The answer is (B)."),
            _rec("A plant does not require sunlight to grow. Summer has the most sunlight. The answer is (B)."),
            _rec("A plant is a kind of rose. Summer has the most sunlight. The answer is (B)."),
            _rec("The earth has 2 moons. Summer has the most sunlight. The answer is (B)."),
            _rec("A plant requires gravel to grow. Summer has the most sunlight. The answer is (B).")]
    out = _checker().run(recs)
    assert [_unit(c, 0, "altered_vs_fact") for c in out] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert all(_unit(c, 1, "altered_vs_fact") == 0.0 for c in out)   # a fact restated word for word
    assert out[1].named()["altered_vs_fact_any"] == 1.0 and out[0].named()["altered_vs_fact_any"] == 0.0
    # a replaced word that the rest of the explanation mentions is how conclusions restate premises
    ok = _checker().run([_rec("Gravel is a kind of soil. A plant requires gravel to grow. The answer is (B).")])[0]
    assert _unit(ok, 1, "altered_vs_fact") == 0.0


def test_contradicted_unit_and_final_conclusion_against_the_answer():
    c = _checker(fast=True).run([
        _rec("Plants get the most sunlight in summer. Plants do not get the most sunlight in summer. The answer is (B)."),
        _rec("Days are longest in summer. So garden plants get the most sunlight in summer. The answer is (C).", pred="C"),
        _rec("Days are longest in summer. So garden plants get the most sunlight in summer. The answer is (B).")])
    assert c[0].named()["contra_vs_context_max"] == 1.0 and _unit(c[0], 1, "contra_vs_context") == 1.0
    assert c[1].named()["contra_vs_context_max"] == 0.0
    assert c[1].named()["final_names_pred"] == 0.0 and c[1].named()["final_names_other"] == 1.0   # names B, answers C
    assert c[2].named()["final_names_pred"] == 1.0 and c[2].named()["final_names_other"] == -1.0


def test_inverted_share():
    assert inverted_share(("rose", "kind", "plant"), ("plant", "kind", "rose")) == 1.0
    assert inverted_share(("rose", "kind", "plant"), ("rose", "kind", "plant")) == 0.0
    assert inverted_share(("rose",), ("rose",)) == 0.0


def test_cached_checks_get_the_same_evidence_as_run_time():
    """Training upgrades checks cached before v4 (base features only) with `with_evidence`; the critic
    computes the features in `Checker.run`: both must give the same vectors for the same record."""
    recs = [_rec("A plant does not require sunlight to grow. Summer has the most sunlight. So (B)."),
            _rec("1. The earth has 2 moons. 2. Winter is cold; summer is warm. The answer is winter.", pred="C"),
            _rec("Summer."), _rec("A plant is a kind of rose. Garden plants need sun. Therefore summer.")]
    for fast in (False, True):
        for r, c in zip(recs, _checker(fast).run(recs)):
            assert c.g.shape == (len(GLOBAL_FEATURES),) and c.u.shape == (len(c.units), len(UNIT_FEATURES))
            old = RecordChecks(c.units, c.g[:len(BASE_GLOBAL_FEATURES)], c.u[:, :len(BASE_UNIT_FEATURES)],
                               c.near_fact, c.supported_option)
            new = with_evidence(old, r)
            assert np.array_equal(new.g, c.g) and np.array_equal(new.u, c.u)
            assert with_evidence(c, r) is c   # already current: unchanged


def test_fast_mode_equals_full_without_knowledge_for_the_evidence():
    rec = _rec("A plant does not require sunlight to grow. Summer has the most sunlight. The answer is (B).")
    full, fast = _checker().run([rec])[0], _checker(fast=True).run([rec])[0]
    g, u = without_knowledge(full.g, full.u)
    k = len(BASE_GLOBAL_FEATURES)
    assert full.named()["altered_vs_fact_any"] == 1.0
    assert np.allclose(g[k:], fast.g[k:]) and np.allclose(u[:, len(BASE_UNIT_FEATURES):], fast.u[:, len(BASE_UNIT_FEATURES):])
