"""QA with a microtheory: it adds only the sentences the corpus lacks (to retrieval, the ranker's features
and the proofs), a ranker may read its own evidence (MT_FEATURES), and the cross-fitted training never
lets a question's fold microtheory hold its own tree."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from qa_fixture import overlap_prover

from core.errors import InputError, ModelError
from core.types import Fact, Question
from microtheory.trees import EntailmentTree, Step
from retrieval.hypothesis import make_hypothesis
from retrieval.knowledge import knowledge_from_facts
from retrieval.prover import Prover
from retrieval.qa import QAConfig, answer_question
from retrieval.ranker import (
    ALL_FEATURES,
    KNOWN_FEATURES,
    LM_FEATURES,
    MT_FEATURES,
    OptionRanker,
    matrix_columns,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.train_qa_ranker_mt import fold_microtheories, fold_of

CORPUS = [Fact("c1", "a magnet attracts iron", "corpus"), Fact("c2", "wood is not magnetic", "corpus"),
          Fact("c3", "nails are made of iron", "corpus")]
# The microtheory holds a fact about the wrong option only, so a ranker reading it picks that option.
MT = [Fact("m1", "a magnet attracts wood blocks strongly", "microtheory")]
Q = Question("q1", "Which object will a magnet attract?", {"A": "wood", "B": "iron nails"}, "B")


def _ranker(tmp_path: Path, features: list[str], weights: list[float]) -> str:
    d = tmp_path / "_".join(f.replace(":", "_") for f in features)
    n = len(features)
    OptionRanker(features, np.zeros(n), np.ones(n), np.asarray(weights)).save(d)
    return str(d)


def test_matrix_layouts_are_named_by_width() -> None:
    assert matrix_columns(len(ALL_FEATURES)) == ALL_FEATURES
    assert matrix_columns(len(ALL_FEATURES) + len(LM_FEATURES)) == ALL_FEATURES + LM_FEATURES
    assert matrix_columns(len(ALL_FEATURES) + len(MT_FEATURES)) == ALL_FEATURES + MT_FEATURES
    assert matrix_columns(len(KNOWN_FEATURES)) == KNOWN_FEATURES
    with pytest.raises(ModelError, match="no known layout"):
        matrix_columns(len(ALL_FEATURES) + 1)
    assert all(f"mt_{f}" in MT_FEATURES for f in ("dense_top1", "bm25_top1", "link", "hyp_cover"))


def test_a_microtheory_adds_only_what_the_corpus_lacks(tmp_path: Path) -> None:
    plain = overlap_prover(tmp_path / "a", CORPUS)
    cfg = QAConfig(ranker=_ranker(tmp_path, ["option_words"], [1.0]))  # picks B (two words)
    without = answer_question(Q, plain, cfg)
    # A microtheory holding only a corpus sentence (under its own id) changes nothing at all.
    same = knowledge_from_facts([Fact("m9", "A magnet attracts iron.", "microtheory")], plain.encoder())
    dup = answer_question(Q, Prover(plain.corpus, plain.scorer, same, plain.config), cfg)
    for label in Q.options:
        assert dup["options"][label]["features"] == without["options"][label]["features"]
    # One stating the right option's hypothesis joins its evidence and proves it.
    proof_fact = Fact("m2", make_hypothesis(Q.stem, Q.options["B"]), "microtheory")
    mt = knowledge_from_facts([*MT, proof_fact], plain.encoder())
    with_mt = answer_question(Q, Prover(plain.corpus, plain.scorer, mt, plain.config), cfg)
    assert with_mt["options"]["B"]["features"]["dense_top1"] > without["options"]["B"]["features"]["dense_top1"]
    assert with_mt["answer"] == "B" and with_mt["grounded"] and "m2" in with_mt["proof"]["fact_ids"]
    assert not without["grounded"]


def test_a_microtheory_ranker_reads_the_microtheory_and_needs_one(tmp_path: Path) -> None:
    plain = overlap_prover(tmp_path / "a", CORPUS)
    mt = knowledge_from_facts(MT, plain.encoder())
    path = _ranker(tmp_path, ["mt_option_cover"], [5.0])
    assert OptionRanker.load(path).needs_microtheory and not OptionRanker.load(path).needs_lm
    rec = answer_question(Q, Prover(plain.corpus, plain.scorer, mt, plain.config), QAConfig(ranker=path))
    feats = rec["options"]["A"]["features"]
    assert set(feats) == set(ALL_FEATURES + MT_FEATURES)
    assert feats["mt_option_cover"] == 1.0 and rec["options"]["B"]["features"]["mt_option_cover"] == 0.0
    assert rec["answer"] == "A"  # the microtheory's evidence decided, against the corpus
    # Without a microtheory such a ranker cannot run: the question's error says what is missing.
    with pytest.raises(InputError, match="--microtheory"):
        answer_question(Q, plain, QAConfig(ranker=path))


def _tree(qid: str, leaves: list[str]) -> EntailmentTree:
    sents = {f"sent{i + 1}": t for i, t in enumerate(leaves)}
    return EntailmentTree(qid, qid, f"hypothesis of {qid}", sents, (Step(tuple(sents), "hypothesis"),))


def test_a_fold_microtheory_never_holds_a_fact_only_its_own_questions_use() -> None:
    trees = [_tree(f"q{i}", [f"shared fact {i % 2}", f"own fact of q{i}"]) for i in range(10)]
    folds = fold_of([t.question_id for t in trees], folds=5)
    assert fold_of(list(reversed(list(folds))), folds=5) == folds  # seeded: the same however listed
    assert sorted(np.bincount(list(folds.values()))) == [2] * 5
    mts = fold_microtheories(trees, folds, n_folds=5, budget=100)
    for k, facts in enumerate(mts):
        texts = {f.text for f in facts}
        for t in trees:
            own = f"own fact of {t.question_id}"
            assert (own in texts) == (folds[t.question_id] != k)


def test_a_sentence_both_stores_hold_is_one_candidate_the_corpus_s(tmp_path: Path) -> None:
    plain = overlap_prover(tmp_path / "a", CORPUS)
    # The microtheory holds a corpus sentence under its own id (as one distilled from trees does).
    mt = knowledge_from_facts([Fact("m9", "A magnet attracts iron.", "microtheory"), *MT], plain.encoder())
    hits = Prover(plain.corpus, plain.scorer, mt, plain.config).retrieve(["a magnet attracts iron"])[0]
    texts = [c.text.lower().rstrip(".") for c in hits]
    assert texts.count("a magnet attracts iron") == 1
    assert [c.id for c in hits if c.text.lower().rstrip(".") == "a magnet attracts iron"] == ["c1"]
    assert "m1" in {c.id for c in hits}  # the microtheory's own sentence is still found


def test_fold_microtheories_leave_out_what_the_corpus_holds() -> None:
    trees = [_tree(f"q{i}", [f"shared fact {i % 2}", f"own fact of q{i}"]) for i in range(10)]
    folds = fold_of([t.question_id for t in trees], folds=5)
    with_shared = fold_microtheories(trees, folds, n_folds=5, budget=100)
    free = fold_microtheories(trees, folds, n_folds=5, budget=100, corpus_texts=["Shared fact 0."])
    assert all("shared fact 0" in {f.text for f in m} for m in with_shared)
    assert all("shared fact 0" not in {f.text for f in m} and "shared fact 1" in {f.text for f in m} for m in free)
