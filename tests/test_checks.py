"""The checks critic: units, answer detection, check features, the head, the backend (no real models:
the hashing encoder and the overlap scorer stand in)."""
from __future__ import annotations

import numpy as np
import pytest

from critique.checks import (GLOBAL_FEATURES, UNIT_FEATURES, Checker, ChecksConfig, FactTable, extend, is_answer_unit,
                             named_options, split_units, without_knowledge)
from critique.checks_data import Item
from critique.head import (CheckHead, ChecksBackend, ChecksCritic, HeadConfig, fit_head, fit_score_calibration,
                           score_level)
from critique.inputs import ModelOutput
from critique.taxonomy import LABEL_INDEX, LABELS
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer

OPTS = {"A": "fall", "B": "summer", "C": "winter"}


def _rec(expl: str, pred: str = "B", rid: str = "r") -> ModelOutput:
    return ModelOutput(rid, "In which season do garden plants get the most sunlight?", OPTS, "B", expl, pred)


def _checker(knowledge=None, fast=False) -> Checker:
    return Checker(OverlapScorer(), HashingEncoder(64), knowledge, ChecksConfig(fast=fast))


def test_split_units_leaves_role_labels_out_of_the_clean_text_but_keeps_answer_labels():
    units = split_units("Fact: a bird is an animal. Step 2: Premise 1: birds can fly. Inference: so it can fly. "
                        "Answer: (A).")
    assert [u.clean for u in units] == ["a bird is an animal.", "birds can fly.", "so it can fly.", "Answer: (A)."]
    assert units[1].text.startswith("Step 2: Premise 1:")     # the unit's own text is unchanged


def test_split_units_numbered_and_paragraph():
    units = split_units("1. Plants need sunlight. 2. Summer has the most sunlight. The answer is (B).")
    assert [u.clean for u in units] == ["Plants need sunlight.", "Summer has the most sunlight.", "The answer is (B)."]
    para = split_units("Plants need sunlight; summer has the most sunlight; so the answer is summer.")
    assert len(para) == 3 and {u.sentence for u in para} == {0}


@pytest.mark.parametrize("text,expected", [
    ("The answer is (B).", {"B"}), ("Answer: C.", {"C"}), ("So the answer is summer.", {"B"}),
    ("Summer.", {"B"}), ("I pick option A.", {"A"}), ("Plants grow in summer when days are long and warm.", set()),
])
def test_named_options_by_letter_and_text(text, expected):
    assert named_options(text, OPTS) == expected


def test_answer_unit_needs_a_cue_or_short():
    assert is_answer_unit("Therefore the answer is (B) summer.", OPTS)
    assert not is_answer_unit("Plants in a garden grow best in summer because the days are long.", OPTS)


def test_checks_shapes_and_knowledge_defaults():
    facts = FactTable.build(["f1", "f2"], ["summer has the most sunlight", "a plant requires sunlight to grow"],
                            HashingEncoder(64))
    ck = _checker(knowledge=facts)
    recs = [_rec("A plant requires sunlight to grow. Summer has the least sunlight. So the answer is (B)."),
            _rec("Winter is cold. The answer is C.", pred="C")]
    out = ck.run(recs)
    assert len(out) == 2
    for c, r in zip(out, recs):
        assert c.g.shape == (len(GLOBAL_FEATURES),) and c.u.shape == (len(c.units), len(UNIT_FEATURES))
        assert np.isfinite(c.g).all() and np.isfinite(c.u).all()
    g = out[0].named()
    assert g["has_knowledge"] == 1.0 and g["pred_is_key"] == 1.0 and g["named_is_pred"] == 1.0
    # the altered fact ("least" for "most") is the fact-check suspect
    assert out[0].u[1, UNIT_FEATURES.index("is_suspect")] == 1.0
    assert out[1].named()["pred_is_key"] == 0.0
    fast = _checker(knowledge=facts, fast=True).run(recs[:1])[0]
    g2, u2 = without_knowledge(out[0].g, out[0].u)
    # fast mode computes exactly the knowledge-free features the head is also trained on
    assert np.allclose(fast.g, g2, atol=1e-5) and np.allclose(fast.u, u2, atol=1e-5)


def _items(n: int = 60) -> list[Item]:
    ck = _checker()
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        lab = LABELS[i % 3]  # none / misunderstanding / lack_justification, made separable by length
        expl = " ".join(["Summer has the most sunlight."] * (1 + 3 * (i % 3))) + " The answer is (B)."
        c = ck.run([_rec(expl, rid=str(i))])[0]
        items.append(Item(c, LABEL_INDEX[lab], float(5 - i % 3), len(c.units) - 1 if i % 3 else -1, str(i), "syn_x",
                          {}))
    rng.shuffle(items)
    return items


def test_head_learns_separable_toy_and_round_trips(tmp_path):
    items = _items()
    head = fit_head(items, HeadConfig(hidden=0, epochs=200))
    g = np.stack([extend(it.checks.g, it.checks.u) for it in items])
    acc = (head.dim_probs(g).argmax(1) == np.array([it.dim for it in items])).mean()
    assert acc > 0.9
    p = head.save(tmp_path / "head.json")
    again = CheckHead.load(p)
    assert np.allclose(again.dim_probs(g), head.dim_probs(g)) and np.allclose(again.score(g), head.score(g))


def test_score_level_rounds_half_up_into_0_to_5():
    assert [score_level(v) for v in (-3.0, 0.49, 0.5, 2.5, 4.49, 9.0)] == [0, 0, 1, 3, 4, 5]


def test_score_calibration_gives_each_kind_its_targets_spread(tmp_path):
    head = fit_head(_items(30), HeadConfig(hidden=0, epochs=20))
    rng = np.random.default_rng(0)
    g = rng.normal(size=(80, len(head.g_mean)))
    g[:, GLOBAL_FEATURES.index("has_answer_unit")] = np.repeat([1.0, 0.0], 40)
    raw = 2.0 + 0.3 * np.tanh(g[:, 0])                     # a shrunk score net ...
    target = np.clip(2.5 + 1.5 * np.tanh(g[:, 0]) + rng.normal(0, 0.3, 80), 0, 5)   # ... of wider targets
    target[40:] -= 1.0                                       # free text rated lower than proofs
    head.score = lambda x: 2.0 + 0.3 * np.tanh(np.atleast_2d(x)[:, 0])
    head.score_cal = fit_score_calibration(head, g, target)
    assert set(head.score_cal) == {"proof", "free_text"}
    cal = head.calibrated(g, raw)
    for rows in (slice(0, 40), slice(40, 80)):
        assert abs(cal[rows].mean() - target[rows].mean()) < 0.2
        assert cal[rows].std() > 3 * raw[rows].std()        # stretched to the targets' spread
        assert np.array_equal(np.argsort(cal[rows]), np.argsort(raw[rows]))   # the order within a kind kept
    assert 0.0 <= cal.min() and cal.max() <= 5.0
    again = CheckHead.from_json(head.to_json())
    assert np.allclose(again.calibrated(g, raw), cal)
    again.score_cal = None                                   # an old head: the raw score, clipped
    assert np.allclose(again.calibrated(g, raw), raw)


def test_critic_and_backend_one_result_per_record(tmp_path):
    from critique.head import fit_head_pair

    head = fit_head_pair(_items(), _items(), HeadConfig(hidden=0, epochs=100))
    head.save(tmp_path / "head.json")
    critic = ChecksCritic(head, _checker())
    recs = [_rec("Summer has the most sunlight. The answer is (B).", rid="a"), _rec("Winter.", pred="C", rid="b")]
    crits = critic.predict(recs)
    assert len(crits) == 2
    for c in crits:
        assert 0 <= c.score <= 5 and isinstance(c.score, int)
        if c.flawed:
            assert c.flaw_sentence_index is not None and c.main_flaw.strip()
    be = ChecksBackend(head=str(tmp_path / "head.json"), fast=True)
    be._critic = ChecksCritic(CheckHead.load(tmp_path / "head.json"), _checker(fast=True))
    res = be.critique(recs)
    assert [r.id for r in res] == ["a", "b"] and all(r.critique is not None for r in res)


def test_head_rejects_other_features(tmp_path):
    from core.errors import ModelError

    head = fit_head(_items(30), HeadConfig(hidden=0, epochs=20))
    d = head.to_json()
    d["global_features"] = d["global_features"][:-1]
    import json

    (tmp_path / "h.json").write_text(json.dumps(d))
    with pytest.raises(ModelError):
        CheckHead.load(tmp_path / "h.json")


def test_fact_checks_with_project_knowledge_and_a_store_like_searcher():
    from core.types import Fact
    from critique.checks import SearchKnowledge, as_fact_source
    from retrieval.knowledge import knowledge_from_facts

    facts = [Fact("f1", "summer has the most sunlight"), Fact("f2", "a plant requires sunlight to grow")]
    enc = HashingEncoder(64)
    src = as_fact_source(knowledge_from_facts(facts, enc), enc)
    assert isinstance(src, FactTable) and src.ids == ["f1", "f2"]

    class Store:  # returns (Fact, score) pairs one query at a time, as older knowledge did
        def search(self, query, k=10):
            return [(facts[0], 0.9)]

    s = SearchKnowledge(Store())
    assert s.top1_many(["x", "y", "x"]) == [("f1", facts[0].text, 0.9)] * 3
    out = _checker(knowledge=s).run([_rec("Summer has the least sunlight. The answer is (B).")])[0]
    assert out.near_fact[0] == ("f1", facts[0].text)


def test_a_negated_known_fact_is_not_read_as_restating_it():
    """Negation words are stop words: without the polarity term a unit that negates a known fact had
    fact_diff 0, counted as an exact restatement and was never the fact check's suspect."""
    from core.types import Fact
    from critique.checks import fact_diff
    from retrieval.knowledge import knowledge_from_facts

    assert fact_diff("So, summer has the most sunlight.", "summer has the most sunlight") == 0
    assert fact_diff("Summer does not have the most sunlight.", "summer has the most sunlight") == 1
    assert fact_diff("No plant requires sunlight.", "a plant does not require sunlight") == 0   # both negated
    enc = HashingEncoder(64)
    kn = knowledge_from_facts([Fact("f1", "summer has the most sunlight")], enc)
    out = _checker(knowledge=kn).run([_rec("Summer does not have the most sunlight. The answer is (B).")])[0]
    assert out.u[0, UNIT_FEATURES.index("fact_exact")] == 0.0 and out.u[0, UNIT_FEATURES.index("is_suspect")] == 1.0
    assert out.g[GLOBAL_FEATURES.index("fact_exact_share")] == 0.0
    same = _checker(knowledge=kn).run([_rec("Summer has the most sunlight. The answer is (B).")])[0]
    assert same.u[0, UNIT_FEATURES.index("fact_exact")] == 1.0


# --- fast mode (lexical checks), the head's fast part, derived features, fine-grained judgements ---------

def test_fast_mode_uses_no_models_and_is_deterministic():
    from critique.checks import DERIVED_FEATURES, LexicalEncoder, LexicalScorer

    ck = Checker(config=ChecksConfig(fast=True))
    assert isinstance(ck.encoder, LexicalEncoder) and isinstance(ck.scorer, LexicalScorer)
    recs = [_rec("Plants need sunlight. Summer has the most sunlight. The answer is (B)."), _rec("Winter.", pred="C")]
    a, b = ck.run(recs), Checker(config=ChecksConfig(fast=True)).run(recs)
    assert all(np.array_equal(x.g, y.g) and np.array_equal(x.u, y.u) for x, y in zip(a, b))
    x = extend(a[0].g, a[0].u)
    assert x.shape == (len(GLOBAL_FEATURES) + len(DERIVED_FEATURES),) and np.isfinite(x).all()
    v = LexicalEncoder(64).encode(["summer sunlight", "the summer has sunlight", "iron nail"])
    assert v[0] @ v[1] > 0.99 and abs(v[0] @ v[2]) < 0.5   # stop words do not count
    s = LexicalScorer().score_batch([(["summer has the most sunlight"], "summer sunlight"), (["iron"], "summer")])
    assert s[0] == 1.0 and s[1] == 0.0


def test_size_features_grow_with_the_explanation():
    from critique.checks import DERIVED_FEATURES

    ck = Checker(config=ChecksConfig(fast=True))
    short, long_ = ck.run([_rec("Summer has the most sunlight. The answer is (B)."),
                           _rec(" ".join(["Summer has the most sunlight."] * 12) + " The answer is (B).")])
    i = len(GLOBAL_FEATURES) + DERIVED_FEATURES.index("log_units")
    j = len(GLOBAL_FEATURES) + DERIVED_FEATURES.index("redund_share_high")
    xs, xl = extend(short.g, short.u), extend(long_.g, long_.u)
    assert xl[i] > xs[i] + 1.0 and xl[j] > 0.9 and xs[j] == 0.0   # 12 copies: uncapped size, redundant units


def test_head_fast_part_round_trips_and_is_required_in_fast_mode(tmp_path):
    from core.errors import ModelError
    from critique.head import fit_head_pair

    items = _items(30)
    head = fit_head_pair(items, items, HeadConfig(hidden=0, epochs=30))
    p = head.save(tmp_path / "head.json")
    again = CheckHead.load(p)
    assert again.fast is not None
    g = np.stack([extend(it.checks.g, it.checks.u) for it in items])
    assert np.allclose(again.fast.dim_probs(g), head.fast.dim_probs(g))
    critic = ChecksCritic(again, _checker(fast=True))
    assert critic.head is again.fast
    with pytest.raises(ModelError, match="no fast part"):
        ChecksCritic(fit_head(items, HeadConfig(hidden=0, epochs=5)), _checker(fast=True))


def test_score_weight_zero_leaves_a_source_out_and_dim_sources_filter():
    items = _items(30)
    for it in items[:10]:
        it.source = "acc_cqa"
    cfg = HeadConfig(hidden=0, epochs=30, score_weight={"syn": 0.0, "acc": 1.0, "t5": 1.0, "fg": 1.0},
                     dim_sources=("t5",))
    head = fit_head(items, cfg)
    assert head.meta["n_score_labelled"] == 10 and head.meta["n_dim_labelled"] == 0


def test_read_fine_grained_groups_annotators(tmp_path):
    from critique.checks_data import read_fine_grained

    cols = ("Input.id,Input.question,Input.answer_choices,Input.gold_label,Input.explanation,"
            "Answer.generality_factuality,Answer.grammar,Answer.new_info,Answer.supports_label,Answer.amount_info,"
            "Answer.acceptable")
    rows = ['q1,Where is a fish?,"sea, sky, or tree",sea,Fish live in water.,1,1,1,1,0,1',
            'q1,Where is a fish?,"sea, sky, or tree",sea,Fish live in water.,1,1,1,1,0,1',
            'q1,Where is a fish?,"sea, sky, or tree",sea,Fish live in water.,-1,1,1,-1,,-1',
            'q2,Where is a bird?,"sea, sky, or tree",sky,birds are sky.,-1,-1,-1,-1,-1,-1']
    p = tmp_path / "fg.csv"
    p.write_text(cols + "\n" + "\n".join(rows) + "\n")
    fg = read_fine_grained(p)
    assert len(fg) == 2 and fg[0].record.answer_key == "A" and fg[1].record.answer_key == "B"
    assert fg[0].attrs["factual"] == pytest.approx(2 / 3) and fg[0].score() == pytest.approx(5 * 2 / 3)
    assert LABELS[fg[0].dimension()] == "none" and LABELS[fg[1].dimension()] == "incorrect_information"
    from core.errors import InputError
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError):
        read_fine_grained(tmp_path / "bad.csv")


def test_likelihood_part_round_trips_and_moves_the_score(tmp_path):
    from critique.checks_data import LM_FEATURES
    from critique.head import fit_head_pair, fit_lm_offset

    items = _items(30)
    head = fit_head_pair(items, items, HeadConfig(hidden=0, epochs=30))
    stats = np.array([[50.0, 2.0, 25.0], [80.0, 4.0, 20.0], [30.0, 3.0, 10.0]])
    fit_lm_offset(head, stats, 1.0)
    again = CheckHead.load(head.save(tmp_path / "head.json"))
    g = extend(items[0].checks.g, items[0].checks.u)
    fluent, clumsy = np.array([40.0, 1.5, 20.0]), np.array([90.0, 5.0, 20.0])
    assert again.score_lm(g, fluent)[0] > again.score_lm(g, clumsy)[0]   # lower NLL per token: higher score
    assert np.allclose(again.score_lm(g, fluent), head.score_lm(g, fluent))
    assert len(LM_FEATURES) == stats.shape[1]

    class FakeLM:
        def score(self, records):
            return np.tile(fluent, (len(records), 1))

    critic = ChecksCritic(again, Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig(lm=True)))
    critic._lm_scorer = FakeLM()
    out = critic.predict([_rec("Summer has the most sunlight. The answer is (B).")])
    assert len(out) == 1
    from core.errors import ModelError
    with pytest.raises(ModelError, match="likelihood"):
        ChecksCritic(fit_head(items, HeadConfig(hidden=0, epochs=5)),
                     Checker(OverlapScorer(), HashingEncoder(64), None, ChecksConfig(lm=True)))


def test_an_explanation_ending_on_a_wrong_option_is_never_none_and_scores_at_most_2():
    """The score net learns from real labels only, all of which predict the key: a head that says
    `none` / 5 for everything must still flag an explanation whose predicted option is not the key."""
    from critique.head import NONE_INDEX, WRONG_ANSWER_MAX_SCORE

    head = fit_head(_items(), HeadConfig(hidden=0, epochs=50))
    for net in (head.dim_net, head.score_net):
        net["w2"] = net["w2"] * 0
    head.dim_net["b2"] = np.where(np.arange(len(LABELS)) == NONE_INDEX, 50.0, 0.0)
    head.score_net["b2"] = head.score_net["b2"] * 0 + 50.0
    head.score_cal = None
    critic = ChecksCritic(head, _checker())
    expl = "Plants need sunlight to grow. Summer has the most sunlight. The answer is (B)."
    right, wrong = critic.predict([_rec(expl, pred="B"), _rec(expl.replace("(B)", "(C)"), pred="C")])
    assert right.dimension == "none" and right.score == 5
    assert wrong.dimension != "none" and wrong.score == WRONG_ANSWER_MAX_SCORE == 2
    # no key given: nothing to compare with, the head decides alone
    nokey = ModelOutput("n", "In which season do garden plants get the most sunlight?", OPTS, None, expl, "C")
    assert critic.predict([nokey])[0].dimension == "none"
