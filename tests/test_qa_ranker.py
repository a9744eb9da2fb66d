"""The learned QA option ranker: within-question features, fitting, save/load, use in answer_question,
and the grounding policy (threshold + contrast check) of the chosen option."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError, ModelError
from core.types import Fact, Question
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from retrieval.prover import Prover
from retrieval.qa import GroundingPolicy, QAConfig, answer_question, training_row
from retrieval.ranker import (
    ALL_FEATURES,
    SHIPPED_DIR,
    FitConfig,
    OptionRanker,
    accuracy,
    expand,
    expanded_names,
    fit_ranker,
)
from retrieval.store import KnowledgeStore
from qa_fixture import overlap_prover

LINK = ALL_FEATURES.index("link")


def synthetic(n: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Questions whose correct option has the highest 'link' (plus noise in every other feature)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=(4, len(ALL_FEATURES)))
        y = int(rng.integers(4))
        x[y, LINK] += 3.0
        out.append((x, y))
    return out


def test_expand_compares_each_option_with_the_others() -> None:
    x = np.asarray([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
    e = expand(x, ("raw", "margin", "z"))
    assert e.shape == (3, 6) and np.allclose(e[:, :2], x)
    assert np.allclose(e[:, 2], [-2.0, 1.0, -1.0])  # value minus the best *other* option's
    assert np.allclose(e[:, 3], 0.0)                # a feature all options share carries nothing
    assert np.allclose(e[:, 4], (x[:, 0] - 2.0) / x[:, 0].std()) and np.allclose(e[:, 5], 0.0)
    assert np.allclose(expand(x[:1], ("margin",)), 0.0)  # one option: no margin
    assert expanded_names(["a", "b"], ("raw", "z")) == ["a", "b", "a:z", "b:z"]
    with pytest.raises(ModelError, match="transform"):
        expand(x, ("log",))


@pytest.mark.parametrize("transforms", [("raw",), ("raw", "margin", "z")])
def test_fit_learns_the_informative_feature_and_roundtrips(tmp_path: Path, transforms: tuple[str, ...]) -> None:
    train, test = synthetic(300), synthetic(200, seed=1)
    m = fit_ranker(train, FitConfig(ALL_FEATURES, l2=1.0, transforms=transforms))
    assert accuracy(m, test) > 0.9
    assert len(m.weights) == len(ALL_FEATURES) * len(transforms)
    w = dict(zip(expanded_names(m.features, m.transforms), m.weights))
    if transforms == ("raw",):
        assert w["link"] > 1.0 and max(abs(v) for k, v in w.items() if k != "link") < 0.5
    # Without its link columns the model is no better than chance: it learned from the informative one.
    cut = type(m)(m.features, m.mean, m.std, np.where([k.split(":")[0] == "link" for k in w], 0.0, m.weights),
                  transforms=m.transforms)
    assert accuracy(cut, test) < 0.45
    p = m.probabilities(test[0][0])
    assert p.shape == (4,) and p.sum() == pytest.approx(1.0)
    m.save(tmp_path)
    back = OptionRanker.load(tmp_path)
    assert back.transforms == tuple(transforms)
    assert np.allclose(back.scores(test[0][0]), m.scores(test[0][0]), atol=1e-4)
    # A stronger penalty shrinks the weights; a feature subset uses only its columns.
    strong = fit_ranker(train, FitConfig(ALL_FEATURES, l2=1000.0, transforms=transforms))
    assert np.abs(strong.weights).sum() < np.abs(m.weights).sum()
    sub = fit_ranker(train, FitConfig(("link", "dense_top1"), l2=1.0, transforms=transforms))
    assert sub.scores(test[0][0]).shape == (4,) and accuracy(sub, test) > 0.9


def test_load_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        OptionRanker.load(tmp_path)
    (tmp_path / "ranker.json").write_text(json.dumps({"format": 2, "kind": "other"}))
    with pytest.raises(ModelError, match="not a QA option ranker"):
        OptionRanker.load(tmp_path)
    # A format-1 ranker (proof features) is refused with a hint, not misread.
    (tmp_path / "ranker.json").write_text(json.dumps({"format": 1, "kind": "qa-option-ranker"}))
    with pytest.raises(ModelError, match="retrain"):
        OptionRanker.load(tmp_path)
    base = {"format": 2, "kind": "qa-option-ranker", "features": ["x"], "mean": [0], "std": [1], "weights": [1]}
    (tmp_path / "ranker.json").write_text(json.dumps(base))
    with pytest.raises(ModelError, match="does not compute"):
        OptionRanker.load(tmp_path)
    (tmp_path / "ranker.json").write_text(json.dumps({**base, "features": ["link"], "transforms": ["raw", "z"]}))
    with pytest.raises(ModelError, match="do not match"):
        OptionRanker.load(tmp_path)


FACTS = [Fact("w1", "a magnet attracts iron"), Fact("w2", "iron nails are made of iron"),
         Fact("w3", "plants need sunlight to grow")]


@pytest.fixture()
def prover(tmp_path: Path) -> Prover:
    return overlap_prover(tmp_path / "c", FACTS)


Q = Question("q1", "Which of the following does a magnet attract?", {"A": "wood", "B": "iron nails"}, "B")


def _ranker(tmp_path: Path, sign: float, grounding: dict | None = None) -> str:
    d = tmp_path / f"r{sign}"
    OptionRanker(["option_words"], np.zeros(1), np.ones(1), np.asarray([sign]),
                 config={"grounding": grounding or {}}).save(d)
    return str(d)


def test_answer_question_uses_the_ranker(tmp_path: Path, prover: Prover) -> None:
    row = training_row(Q, prover)
    assert row["gold"] == 1 and len(row["features"]) == 2 and len(row["features"][0]) == len(ALL_FEATURES)
    # A ranker that only likes long options picks "iron nails" for that reason; one that dislikes them, "wood".
    for sign, want in ((1.0, "B"), (-1.0, "A")):
        rec = answer_question(Q, prover, QAConfig(ranker=_ranker(tmp_path, sign)))
        assert rec["answer"] == want
        assert rec["confidence"] == rec["options"][want]["probability"] > 0.5
        assert set(rec["options"]["A"]["features"]) == set(ALL_FEATURES)
        assert rec["grounded"] == (rec["proof"] is not None) == rec["options"][want]["grounded"]
    # Only the chosen option is proved: "iron nails" from w1 + w2; "wood" has no proof.
    b = answer_question(Q, prover, QAConfig(ranker=_ranker(tmp_path, 1.0)))
    assert b["grounded"] and set(b["proof"]["fact_ids"]) == {"w1", "w2"} and b["options"]["A"]["best"] is None
    assert not answer_question(Q, prover, QAConfig(ranker=_ranker(tmp_path, -1.0)))["grounded"]
    hand = answer_question(Q, prover, QAConfig(ranker="none"))
    assert hand["answer"] == "B" and hand["confidence"] is None and "features" not in hand["options"]["A"]


def test_contrast_check_rejects_a_proof_that_proves_every_option(tmp_path: Path) -> None:
    # Every option's hypothesis is covered by the same two facts: the premises prove them all equally.
    ks = KnowledgeStore.create(tmp_path / "c2", encoder=HashingEncoder())
    ks.add([Fact("f1", "a magnet attracts iron and steel"), Fact("f2", "nails and pins are made of iron or steel")])
    ks.save()
    prover = Prover(ks, OverlapScorer(threshold=0.6))
    q = Question("q", "Which of the following does a magnet attract?", {"A": "iron nails", "B": "steel pins"}, "A")
    ranker = _ranker(tmp_path, 0.0)
    loose = answer_question(q, prover, QAConfig(ranker=ranker, grounding=GroundingPolicy(margin=None)))
    assert loose["grounded"]
    strict = answer_question(q, prover, QAConfig(ranker=ranker, grounding=GroundingPolicy(margin=0.2)))
    assert not strict["grounded"] and strict["proof"] is None
    checks = strict["proof_checks"]
    assert checks and all(c["score"] - c["rival"] < 0.2 for c in checks)
    # The policy shipped inside a ranker is used when the config gives none.
    assert not answer_question(q, prover, QAConfig(ranker=_ranker(tmp_path, 0.5, {"margin": 0.2})))["grounded"]


def test_shipped_ranker_is_complete() -> None:
    m = OptionRanker.load()
    assert m.features and len(m.weights) == len(m.features) * len(m.transforms) and np.all(m.std > 0)
    assert m.config.get("split", "").startswith("EntailmentBank task-1 train") and "dev" in m.config["split"]
    assert (SHIPPED_DIR / "MODEL_CARD.md").is_file()


def test_qa_proves_with_the_search_the_grounding_policy_was_chosen_with(tmp_path: Path) -> None:
    from retrieval.qa import prover_config_for

    for name in ("shipped", "fast"):
        search, cfg = OptionRanker.load(name).config["grounding"]["search"], prover_config_for(name)
        assert (cfg.singles, cfg.max_pairs, cfg.max_triples, cfg.chain_k) == (
            1, search["pairs"], search["triples"], int(search["chain"]))
    ranker = _ranker(tmp_path, 1.0, {"search": {"pairs": 7, "triples": 3, "chain": False}})
    cfg = prover_config_for(ranker, max_triples=1, threshold=0.4, k=None)
    # What the caller sets wins; the rest of the search is the policy's; the rest of the config the default.
    assert (cfg.max_pairs, cfg.max_triples, cfg.chain_k, cfg.threshold, cfg.k) == (7, 1, 0, 0.4, 20)
    assert prover_config_for("none").max_pairs == 2  # the hand rule has no policy: the prover's defaults


def test_contrast_checks_stop_at_the_first_accepted_set(tmp_path: Path) -> None:
    from retrieval.qa import ground_option, question_retrieval

    ks = KnowledgeStore.create(tmp_path / "c3", encoder=HashingEncoder())
    ks.add([Fact("m1", "a magnet attracts iron"), Fact("m2", "iron nails are made of iron"),
            Fact("m3", "nails made of iron are iron nails"), Fact("m4", "magnets attract iron nails")])
    ks.save()
    prover = Prover(ks, OverlapScorer(threshold=0.5))
    _, hyps, r = question_retrieval(Q, prover, QAConfig())
    policy = GroundingPolicy(margin=0.0, sets=5)
    every = ground_option(prover, hyps, 1, r.hypothesis_hits[1], policy, check_all=True)
    first = ground_option(prover, hyps, 1, r.hypothesis_hits[1], policy)
    assert len(every.checked) > 1 and len(first.checked) == 1
    # The same proof either way: checking stops only once one set is accepted.
    assert first.proof is not None and first.proof == every.proof


def test_grounding_replay_of_a_smaller_search_and_policy() -> None:
    """bench/train_qa_ranker.py chooses the policy by replaying recorded searches: the same rules as
    qa.ground_option (threshold, contrast margin, chained set only when no depth-1 set passed)."""
    from bench.train_qa_ranker import CONTRAST_SETS, Policy, Search, _kept, grounded

    row = {"options": 4, "confidence": 0.6, "sizes": [1, 2, 2, 2, 3], "scores": [0.01, 0.2, 0.5, 0.35, 0.1],
           "checked": [{"score": 0.5, "rival": 0.45, "chained": False, "set": 2},
                       {"score": 0.45, "rival": 0.1, "chained": True, "set": None},
                       {"score": 0.35, "rival": 0.0, "chained": False, "set": 3}]}
    assert _kept(row, Search(pairs=2, triples=0, chain=False)) == [0, 1, 2]
    assert CONTRAST_SETS >= 2
    full = Search(pairs=3, triples=1, chain=True)
    # No contrast check: the best set passes; the cost is the 5 sets + the chained one (0.5 < 0.6: it was tried).
    assert grounded(row, Policy(0.3, None), 0.6, full) == (True, 6)
    # Margin 0.1: set 2 fails (0.05 above its rival), the chained set is accepted; 3 checks x 3 rivals scored.
    assert grounded(row, Policy(0.3, 0.1), 0.6, full) == (True, 6 + 3 * 3)
    # The prover chains only when no depth-1 set reached its threshold: at 0.4 the chain is never tried.
    assert grounded(row, Policy(0.3, 0.1), 0.4, full)[0] is True  # set 3 (0.35, rival 0.0) still passes
    assert grounded(row, Policy(0.4, 0.1), 0.4, full)[0] is False  # only set 2 is >= 0.4, and it fails the contrast
    # A smaller search without set 2 (one pair) and no chain: nothing reaches 0.3.
    assert grounded(row, Policy(0.3, None), 0.6, Search(pairs=1, triples=0, chain=False)) == (False, 2)
    # A pick the ranker is less sure of than the policy asks is never proved: not grounded, nothing scored.
    assert grounded(row, Policy(0.3, None, confidence=0.6), 0.6, full) == (True, 6)
    assert grounded(row, Policy(0.3, None, confidence=0.7), 0.6, full) == (False, 0)


def test_an_explicit_prover_threshold_wins_over_the_shipped_policy(tmp_path: Path) -> None:
    from retrieval.prover import ProverConfig

    ks = KnowledgeStore.create(tmp_path / "c4", encoder=HashingEncoder())
    ks.add(FACTS)
    ks.save()
    ranker = _ranker(tmp_path, 1.0, {"threshold": 0.5, "margin": None})
    q = QAConfig(ranker=ranker)
    # Overlap 1.0 for "iron nails" from w1 + w2: grounded at the policy's 0.5 ...
    assert answer_question(Q, Prover(ks, OverlapScorer(threshold=0.99)), q)["grounded"]
    # ... and not at an explicit threshold above any score.
    strict = Prover(ks, OverlapScorer(threshold=0.99), config=ProverConfig(threshold=1.01))
    assert not answer_question(Q, strict, q)["grounded"]


def test_a_pick_below_the_policy_confidence_is_not_proved(tmp_path: Path, prover: Prover) -> None:
    # The long-option ranker picks "iron nails" (provable from w1 + w2) with probability p < 1.
    ranker = _ranker(tmp_path, 1.0)
    p = answer_question(Q, prover, QAConfig(ranker=ranker))["confidence"]
    sure = answer_question(Q, prover, QAConfig(ranker=ranker, grounding=GroundingPolicy(confidence=p - 0.01)))
    assert sure["grounded"] and sure["proof_searched"]
    unsure = answer_question(Q, prover, QAConfig(ranker=ranker, grounding=GroundingPolicy(confidence=min(1.0, p + 0.01))))
    assert unsure["answer"] == sure["answer"] and not unsure["grounded"] and unsure["proof"] is None
    assert unsure["proof_searched"] is False and unsure["options"]["B"]["best"] is None
    # The policy a ranker ships carries its confidence; an out-of-range one is an input error.
    assert GroundingPolicy.of_ranker(OptionRanker.load(_ranker(tmp_path, 2.0, {"confidence": 0.4}))).confidence == 0.4
    with pytest.raises(InputError):
        GroundingPolicy(confidence=1.5)
