"""The acceptability regressor (critique.acceptability) and its feature in the checks critic: the
split's parts are disjoint, soft targets round-trip and train, the shipped weights load offline and
score deterministically in [0, 1], and the head reads the feature only when it was trained with it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError, ModelError
from critique.acceptability import SHIPPED_DIR, AcceptabilityScorer, examples, pair
from critique.checks import (ACC_BY_KIND_FEATURE, ACC_FEATURE, DERIVED_FEATURES, EXTRA_FEATURES, FREE_TEXT_FEATURE,
                             GLOBAL_FEATURES, Checker, ChecksConfig, head_input)
from critique.checks_data import Item, attach_acceptability
from critique.head import CheckHead, ChecksCritic, HeadConfig, fit_head, fit_head_pair
from critique.inputs import ModelOutput
from critique.taxonomy import LABEL_INDEX
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from retrieval.entail_train import EntailExample

OPTS = {"A": "fall", "B": "summer", "C": "winter"}
Q = "In which season do garden plants get the most sunlight?"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HAS_DATA = (DATA / "explanation_acceptability" / "snli_train.csv").is_file()


def _rec(expl: str, rid: str = "r") -> ModelOutput:
    return ModelOutput(rid, Q, OPTS, "B", expl, "B")


class CountingScorer:
    """Stands in for the regressor: share of words in 'summer sunlight', and counts its calls."""

    path = Path("fake-regressor")

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, records, batch_size: int = 64) -> np.ndarray:
        self.calls.append(len(records))
        return np.array([min(1.0, sum(w.strip(".").lower() in {"summer", "sunlight"} for w in r.explanation.split()) / 3)
                         for r in records], np.float32)


def test_pair_and_examples_carry_the_share_as_soft_target():
    class H:  # a HumanItem's fields that examples() reads
        def __init__(self, share: float, i: int):
            self.record, self.acceptable, self.instance = _rec("Summer is sunny.", f"q{i}#1"), share, f"q{i}"

    prem, hyp = pair(_rec("Summer is sunny."))
    assert prem == [Q, "Answer: summer"] and hyp == "Summer is sunny."
    ex = examples([H(0.8, 1), H(0.2, 2)])
    assert [e.target for e in ex] == [0.8, 0.2] and [e.label for e in ex] == [1, 0]
    assert ex[0].tree_id == "q1" and ex[0].premises == (Q, "Answer: summer")


def test_entail_example_target_round_trips_and_plain_examples_are_unchanged():
    plain = EntailExample(("a",), "b", 1)
    assert "target" not in plain.to_json()   # the entailment data files stay as they were
    soft = EntailExample(("a",), "b", 0, target=0.25)
    assert EntailExample.from_json(soft.to_json()) == soft
    with pytest.raises(InputError):
        EntailExample.from_json({"premises": ["a"], "hypothesis": "b", "label": 0, "target": 1.5})


def test_head_input_appends_the_feature_only_when_asked():
    c = Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig()).run([_rec("Summer has sunlight.")])[0]
    base = head_input(c)
    assert base.shape == (len(GLOBAL_FEATURES) + len(DERIVED_FEATURES),)
    with pytest.raises(ModelError):
        head_input(c, (ACC_FEATURE,))
    c.acceptability = 0.7
    x = head_input(c, (ACC_FEATURE,))
    assert x.shape == (base.shape[0] + 1,) and x[-1] == pytest.approx(0.7) and np.array_equal(x[:-1], base)


FREE = "Plants grow best when the days are long and warm."
PROOF = FREE + " The answer is (B) summer."


def test_kind_features_split_the_regressor_by_explanation_kind():
    free, proof = Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig()).run([_rec(FREE, "f"), _rec(PROOF, "p")])
    n = len(GLOBAL_FEATURES) + len(DERIVED_FEATURES)
    for c in (free, proof):
        c.acceptability = 0.6
    assert head_input(free, EXTRA_FEATURES)[n:] == pytest.approx([0.6, 1.0, 0.6])   # free text: the product is on
    assert head_input(proof, EXTRA_FEATURES)[n:] == pytest.approx([0.6, 0.0, 0.0])  # answer unit: a proof
    assert head_input(free, (FREE_TEXT_FEATURE, ACC_FEATURE))[n:] == pytest.approx([1.0, 0.6])   # in the order asked
    with pytest.raises(ModelError):
        head_input(free, ("not_a_feature",))
    free.acceptability = None
    assert head_input(free, (FREE_TEXT_FEATURE,))[n:] == pytest.approx([1.0])   # needs no regressor
    with pytest.raises(ModelError):
        head_input(free, (ACC_BY_KIND_FEATURE,))


def test_kind_features_give_the_score_one_regressor_weight_per_kind(tmp_path):
    """Score labels follow the regressor on free text and run against it on proofs: one regressor weight
    (ACC_FEATURE alone) cannot fit both kinds; one per kind (EXTRA_FEATURES) can."""
    ck = Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig())
    items = []
    for i in range(60):
        proof = i % 2 == 1
        c = ck.run([_rec(PROOF if proof else FREE, str(i))])[0]
        c.acceptability = (i // 2 % 5) / 4
        target = 5.0 * (1 - c.acceptability if proof else c.acceptability)
        items.append(Item(c, LABEL_INDEX["none"], target, -1, str(i), "t5_dev" if proof else "acc_cqa", {}))
    y = [it.score for it in items]

    def fit(extra: tuple[str, ...]) -> tuple[CheckHead, np.ndarray, float]:
        head = fit_head(items, HeadConfig(hidden=0, epochs=300, extra_features=extra))
        x = np.stack([head.features(it.checks) for it in items])
        return head, x, float(np.corrcoef(head.score(x), y)[0, 1])

    _, _, flat = fit((ACC_FEATURE,))
    head, x, by_kind = fit(EXTRA_FEATURES)
    assert by_kind > 0.95 and flat < 0.5, (by_kind, flat)
    again = CheckHead.load(head.save(tmp_path / "head.json"))
    assert again.extra_features == EXTRA_FEATURES and np.allclose(again.score(x), head.score(x))
    assert ChecksCritic(again, Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig())).checker.config.acceptability


def _items(n: int = 40) -> list[Item]:
    """Score labels follow the feature only: the head can learn them only through ACC_FEATURE."""
    ck = Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig())
    out = []
    for i in range(n):
        c = ck.run([_rec("Summer has the most sunlight. The answer is (B).", str(i))])[0]
        c.acceptability = (i % 5) / 4
        out.append(Item(c, LABEL_INDEX["none"] if i % 2 else LABEL_INDEX["lack_justification"],
                        5.0 * (i % 5) / 4, -1, str(i), "acc_cqa", {}))
    return out


def test_head_with_the_feature_learns_it_round_trips_and_turns_it_on(tmp_path):
    items = _items()
    cfg = HeadConfig(hidden=0, epochs=200, extra_features=(ACC_FEATURE,))
    head = fit_head_pair(items, items, cfg)
    assert head.extra_features == (ACC_FEATURE,) and head.fast.extra_features == ()
    x = np.stack([head.features(it.checks) for it in items])
    s = head.score(x)
    assert np.corrcoef(s, [it.score for it in items])[0, 1] > 0.9
    without = fit_head(items, HeadConfig(hidden=0, epochs=200))
    assert np.ptp(without.score(np.stack([without.features(it.checks) for it in items]))) < 1e-6  # same checks
    again = CheckHead.load(head.save(tmp_path / "head.json"))
    assert again.extra_features == (ACC_FEATURE,) and np.allclose(again.score(x), s)
    d = json.loads((tmp_path / "head.json").read_text())
    d["global_features"][-1] = "something_else"
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ModelError):
        CheckHead.load(tmp_path / "bad.json")
    # the critic switches the feature on and computes it once per batch of records
    checker = Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig())
    fake = CountingScorer()
    checker._acc = fake
    critic = ChecksCritic(again, checker)
    assert checker.config.acceptability
    crits = critic.predict([_rec("Summer sunlight summer.", "a"), _rec("Winter is cold.", "b"), _rec("Fall.", "c")])
    assert len(crits) == 3 and fake.calls == [3]
    assert crits[0].score >= crits[1].score
    # fast mode never loads the regressor
    fast = ChecksCritic(again, Checker(config=ChecksConfig(fast=True)))
    fast.checker._acc = fake
    fast.predict([_rec("Summer.", "d")])
    assert fake.calls == [3] and not fast.checker.config.acceptability


def test_attach_acceptability_caches_by_record(tmp_path):
    items = _items(6)
    for it in items:
        it.checks.acceptability = None
        it.extra["record"] = _rec("Summer sunlight." if int(it.group) % 2 else "Cold.", f"id{it.group}")
    fake = CountingScorer()
    assert attach_acceptability({"acc_x": items}, fake, tmp_path) == {"acc_x": 6}
    vals = [it.checks.acceptability for it in items]
    assert vals[1] > vals[0] and all(v is not None for v in vals)
    for it in items:
        it.checks.acceptability = None
    assert attach_acceptability({"acc_x": items}, fake, tmp_path) == {"acc_x": 0}
    assert [it.checks.acceptability for it in items] == vals and fake.calls == [6]


@pytest.mark.data
@pytest.mark.skipif(not HAS_DATA, reason="no ../shared/data acceptability files")
def test_split_parts_are_disjoint_and_the_bench_split_is_the_same():
    import sys

    from critique.acceptability import acceptability_split

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from likelihood_signals import acceptability_split as bench_split

    for name in ("acc_cqa", "acc_snli"):
        s = acceptability_split(name, DATA, heldout=60)
        inst = {k: {it.instance for it in v} for k, v in s.items()}
        assert len(inst["train"] | inst["dev"]) == 120 and len(inst["heldout"]) == 60 and len(inst["regressor_dev"]) == 80
        keys = list(inst)
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                assert not inst[a] & inst[b], (name, a, b)
        # the regressor's rows do not depend on how large a held-out sample the caller asks for
        assert {it.instance for it in acceptability_split(name, DATA)["regressor_train"]} == inst["regressor_train"]
        old = bench_split(name, DATA, heldout=60)
        assert all([it.record.id for it in old[k]] == [it.record.id for it in s[k]] for k in old)


@pytest.mark.skipif(not (SHIPPED_DIR / "adapter.safetensors").is_file(), reason="no shipped regressor")
def test_shipped_regressor_loads_offline_and_scores_in_unit_interval_deterministically():
    sc = AcceptabilityScorer(runtime="torch", num_threads=1)
    recs = [_rec("Summer has the most sunlight because the sun is highest then.", "a"), _rec("asdf qwer.", "b"),
            _rec("Plants need light.", "c")]
    s = sc.score(recs)
    assert s.shape == (3,) and s.dtype == np.float32 and np.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()
    again = sc.score(recs[::-1])
    assert np.allclose(again[::-1], s, atol=1e-5)   # batch order does not matter
    assert sc.score([]).shape == (0,)


@pytest.mark.slow
def test_a_tiny_soft_target_training_run_lowers_the_loss(tmp_path):
    from retrieval.entail_train import TrainConfig, train

    ex = [EntailExample((Q, "Answer: summer"), e, int(t >= 0.5), target=t) for e, t in
          [("Summer has the most sunlight.", 0.9), ("Bananas are yellow.", 0.1), ("The sun is high in summer.", 0.8),
           ("I like cars.", 0.0)]]
    cfg = TrainConfig(epochs=12, batch_size=4, lr=2e-3, warmup=0.0, num_threads=1, log_every=1, checkpoint_every=1000)
    train(ex, ex, tmp_path, cfg, progress=False)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "train_log.jsonl").read_text().splitlines()
              if '"loss"' in x]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])


def test_backend_header_names_the_regressor_in_full_mode_only():
    from critique.head import DEFAULT_HEAD, ChecksBackend

    uses = ACC_FEATURE in CheckHead.load(DEFAULT_HEAD).extra_features
    assert ("acceptability_digest" in ChecksBackend().describe()) == uses
    assert "acceptability_digest" not in ChecksBackend(fast=True).describe()
