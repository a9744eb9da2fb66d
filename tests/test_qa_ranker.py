"""The learned QA option ranker: fitting, save/load, replay of smaller searches, use in answer_question."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelError
from core.types import Fact, Question
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from retrieval.prover import Prover
from retrieval.qa import QAConfig, answer_question, training_row
from retrieval.ranker import (
    ALL_FEATURES,
    PROOF_FEATURES,
    SHIPPED_DIR,
    FitConfig,
    OptionRanker,
    SearchLimits,
    accuracy,
    fit_ranker,
    proof_features,
    replay_features,
)
from retrieval.store import KnowledgeStore

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


def test_fit_learns_the_informative_feature_and_roundtrips(tmp_path: Path) -> None:
    train, test = synthetic(300), synthetic(200, seed=1)
    m = fit_ranker(train, FitConfig(ALL_FEATURES, l2=1.0))
    assert accuracy(m, test) > 0.9
    w = dict(zip(m.features, m.weights))
    assert w["link"] > 1.0 and all(abs(v) < 0.5 for k, v in w.items() if k != "link")
    p = m.probabilities(test[0][0])
    assert p.shape == (4,) and p.sum() == pytest.approx(1.0)
    m.save(tmp_path)
    back = OptionRanker.load(tmp_path)
    assert np.allclose(back.scores(test[0][0]), m.scores(test[0][0]), atol=1e-4)
    # A stronger penalty shrinks the weights; a feature subset uses only its columns.
    assert np.abs(fit_ranker(train, FitConfig(ALL_FEATURES, l2=1000.0)).weights).sum() < np.abs(m.weights).sum()
    sub = fit_ranker(train, FitConfig(("link", "dense_top1"), l2=1.0))
    assert sub.scores(test[0][0]).shape == (4,) and accuracy(sub, test) > 0.9


def test_load_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        OptionRanker.load(tmp_path)
    (tmp_path / "ranker.json").write_text(json.dumps({"format": 1, "kind": "other"}))
    with pytest.raises(ModelError, match="not a QA option ranker"):
        OptionRanker.load(tmp_path)
    (tmp_path / "ranker.json").write_text(json.dumps({"format": 1, "kind": "qa-option-ranker", "features": ["x"],
                                                      "mean": [0], "std": [1], "weights": [1]}))
    with pytest.raises(ModelError, match="does not compute"):
        OptionRanker.load(tmp_path)


def test_proof_features_and_replay_of_a_smaller_search() -> None:
    thr = 0.5
    pf = proof_features([1, 1, 2, 3], [0.1, 0.2, 0.4, 0.7], 0.0, thr)
    f = dict(zip(PROOF_FEATURES, pf))
    assert f["entail"] == 0.7 and f["grounded"] == 1.0 and f["entail_pair"] == 0.4 and f["pass_frac"] == 0.25
    row = {"threshold": thr, "features": [pf + [0.0] * (len(ALL_FEATURES) - len(pf))],
           "search": [{"sizes": [1, 1, 2, 3], "scores": [0.1, 0.2, 0.4, 0.7], "chained": [[2, 0.6], [2, 0.3]]}]}
    full = replay_features(row, SearchLimits(5, 5, 5, 2))
    assert np.allclose(full[0], row["features"][0])
    small = dict(zip(ALL_FEATURES, replay_features(row, SearchLimits(1, 1, 0, 1))[0]))
    # Without the triple nothing passes; the best failing set (the pair, index 2) was chained to 0.6.
    assert small["entail_triple"] == 0.0 and small["entail_chain"] == 0.6 and small["entail"] == 0.6
    assert small["grounded"] == 1.0
    assert dict(zip(ALL_FEATURES, replay_features(row, SearchLimits(1, 0, 0, 1))[0]))["entail_chain"] == 0.0


@pytest.fixture()
def prover(tmp_path: Path) -> Prover:
    ks = KnowledgeStore.create(tmp_path / "c", encoder=HashingEncoder())
    ks.add([Fact("w1", "a magnet attracts iron"), Fact("w2", "iron nails are made of iron"),
            Fact("w3", "plants need sunlight to grow")])
    ks.save()
    return Prover(ks, OverlapScorer(threshold=0.99))


Q = Question("q1", "Which of the following does a magnet attract?", {"A": "wood", "B": "iron nails"}, "B")


def test_answer_question_uses_the_ranker(tmp_path: Path, prover: Prover) -> None:
    row = training_row(Q, prover)
    assert row["gold"] == 1 and len(row["features"]) == 2 and len(row["search"]) == 2
    # A ranker that only likes long options picks "iron nails" for that reason; one that dislikes them, "wood".
    for sign, want in ((1.0, "B"), (-1.0, "A")):
        OptionRanker(["option_words"], np.zeros(1), np.ones(1), np.asarray([sign])).save(tmp_path / str(sign))
        rec = answer_question(Q, prover, QAConfig(ranker=str(tmp_path / str(sign))))
        assert rec["answer"] == want
        assert rec["confidence"] == rec["options"][want]["probability"] > 0.5
        assert set(rec["options"]["A"]["features"]) == set(ALL_FEATURES)
        assert rec["grounded"] == (rec["proof"] is not None) == rec["options"][want]["grounded"]
    hand = answer_question(Q, prover, QAConfig(ranker="none"))
    assert hand["answer"] == "B" and hand["confidence"] is None and "features" not in hand["options"]["A"]


def test_shipped_ranker_is_complete() -> None:
    m = OptionRanker.load()
    assert m.features and len(m.weights) == len(m.features) and np.all(m.std > 0)
    assert m.config.get("split", "").startswith("EntailmentBank task-1 train") and "dev" in m.config["split"]
    assert (SHIPPED_DIR / "MODEL_CARD.md").is_file()


def test_shipped_search_is_the_one_the_ranker_was_trained_with() -> None:
    from retrieval.prover import ProverConfig

    search, cfg = OptionRanker.load().config["search"], ProverConfig()
    assert (cfg.singles, cfg.max_pairs, cfg.max_triples, cfg.chain_k) == (
        search["singles"], search["pairs"], search["triples"], search["chain_k"])
