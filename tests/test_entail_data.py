"""Training examples for the entailment scorer: the recipe on hand-made trees, and on the real data."""
from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest

from microtheory.entail_data import (DataConfig, TfidfEncoder, build_examples, descendant_conclusions, negate, reverse,
                                     split_by_tree, swap_arguments)
from microtheory.trees import EntailmentTree, Step
from retrieval.encoder import HashingEncoder

TREES = [
    EntailmentTree(
        "q1", "q1", "the sun emits light",
        {"sent1": "the sun is a kind of star", "sent2": "stars emit light", "sent3": "a circle is a kind of shape"},
        (Step(("sent1", "sent2"), "hypothesis"),)),
    EntailmentTree(
        "q2", "q2", "a dog is warm-blooded",
        {"sent1": "a dog is a kind of mammal", "sent2": "mammals are warm-blooded animals",
         "sent3": "an animal is a kind of organism", "int1": "a dog is a warm-blooded animal"},
        (Step(("sent1", "sent2"), "int1"), Step(("int1", "sent3"), "hypothesis"))),
    EntailmentTree(
        "q3", "q3", "a cat is warm-blooded",
        {"sent1": "a cat is a kind of mammal", "sent2": "mammals are warm-blooded"},
        (Step(("sent1", "sent2"), "hypothesis"),)),
]
CORPUS = ["the moon is a kind of satellite", "stars emit heat", "a planet is a kind of celestial body",
          "a dog is a kind of pet", "mammals have fur", "a cat is a kind of animal", "the sun is a kind of star",
          "reptiles are cold-blooded", "light travels fast"]


def test_negate_rules() -> None:
    assert negate("a dog is a kind of mammal") == "a dog is not a kind of mammal"
    assert negate("the earth rotating causes day and night") == "the earth rotating does not cause day and night"
    assert negate("plants can make food") == "plants can not make food"
    assert negate("a dog is not a cat") == "a dog is a cat"
    assert negate("the plant did not grow") == "the plant grow" or negate("the plant did not grow") == "the plant grew"


def test_reverse_rules() -> None:
    rng = random.Random(0)
    assert reverse("heat causes melting", rng) == "melting causes heat"
    assert reverse("a dog is a kind of mammal", rng) == "a mammal is a kind of a dog" or \
        reverse("a dog is a kind of mammal", rng) == "mammal is a kind of a dog"
    assert reverse("the temperature will increase", rng) == "the temperature will decrease"
    assert reverse("the sky looks blue", rng) is None


def _kinds(ex: list) -> collections.Counter:
    return collections.Counter((e.kind, e.label) for e in ex)


@pytest.mark.parametrize("encoder", ["tfidf", HashingEncoder()])
def test_recipe_on_hand_made_trees(encoder: object) -> None:
    cfg = DataConfig(seed=1, neg_per_pos=6, min_sim=0.0)
    ex = build_examples(TREES, CORPUS, encoder=encoder, config=cfg)
    k = _kinds(ex)
    # positives: 4 steps, plus leaves -> hypothesis for the one tree with two steps
    assert k[("step", 1)] == 4 and k[("leaves", 1)] == 1
    assert sum(n for (kind, label), n in k.items() if label == 0) > 0
    assert {kind for kind, label in k if label == 0} <= {"drop", "swap_distractor", "swap_neighbour",
                                                        "other_conclusion", "negated", "reversed"}
    positives = {(frozenset(e.premises), e.hypothesis) for e in ex if e.label == 1}
    for e in ex:
        if e.label == 0:
            assert (frozenset(e.premises), e.hypothesis) not in positives
        if e.kind == "drop":
            assert len(e.premises) >= 1
        if e.kind == "swap_neighbour":
            tree = next(t for t in TREES if t.id == e.tree_id)
            assert any(p in CORPUS and p not in tree.sentences.values() for p in e.premises)
        if e.kind == "other_conclusion":
            tree = next(t for t in TREES if t.id == e.tree_id)
            assert e.hypothesis not in tree.sentences.values() and e.hypothesis != tree.hypothesis
        if e.kind == "swap_distractor":
            assert "a circle is a kind of shape" in e.premises or "an animal is a kind of organism" in e.premises


def test_recipe_is_seeded_and_caps_negatives() -> None:
    a = build_examples(TREES, CORPUS, encoder="tfidf", config=DataConfig(seed=5, neg_per_pos=1))
    b = build_examples(TREES, CORPUS, encoder="tfidf", config=DataConfig(seed=5, neg_per_pos=1))
    c = build_examples(TREES, CORPUS, encoder="tfidf", config=DataConfig(seed=6, neg_per_pos=1))
    assert a == b
    assert a != c
    assert sum(e.label == 0 for e in a) <= sum(e.label == 1 for e in a)


def test_swap_arguments_rule() -> None:
    assert swap_arguments("the sun heats the earth") == "the earth heats the sun"
    assert swap_arguments("the earth revolves around the sun") == "the sun revolves around the earth"
    assert swap_arguments("a bat and a bird both fly") is None  # symmetric-looking: left alone
    assert swap_arguments("plants grow") is None  # no object


def test_descendant_conclusions_need_one_more_premise() -> None:
    tree = TREES[1]  # sent1 + sent2 -> int1; int1 + sent3 -> hypothesis
    assert descendant_conclusions(tree, "int1") == ["a dog is warm-blooded"]
    assert descendant_conclusions(tree, "hypothesis") == []


def test_harder_recipe_adds_its_kinds_and_keeps_every_two_premise_drop() -> None:
    ex = build_examples(TREES, CORPUS, encoder="tfidf", config=DataConfig(seed=1, neg_per_pos=20, min_sim=0.0,
                                                                          harder=True))
    kinds = {e.kind for e in ex if e.label == 0}
    assert {"later_conclusion", "reversed_premise", "swapped_args"} <= kinds
    later = [e for e in ex if e.kind == "later_conclusion"]
    assert later and all(e.hypothesis == "a dog is warm-blooded" and e.tree_id == "q2" for e in later)
    # every step here has two premises: with one negative per positive, it is always the missing premise
    one = build_examples(TREES, CORPUS, encoder="tfidf", config=DataConfig(seed=1, neg_per_pos=1, harder=True))
    steps = [e for e in one if e.kind == "step"]
    assert sum(e.kind == "drop" for e in one) == len(steps)
    positives = {(frozenset(e.premises), e.hypothesis) for e in ex if e.label == 1}
    assert all((frozenset(e.premises), e.hypothesis) not in positives for e in ex if e.label == 0)
    # without `harder` the recipe is the original one (no new kinds)
    v1 = build_examples(TREES, CORPUS, encoder="tfidf", config=DataConfig(seed=1, neg_per_pos=6, min_sim=0.0))
    assert not {e.kind for e in v1} & {"swapped_args", "reversed_premise", "later_conclusion"}


def test_split_by_tree_keeps_trees_whole() -> None:
    ex = build_examples(TREES, CORPUS, encoder="tfidf", config=DataConfig(seed=1))
    tr, held = split_by_tree(ex, 0.5, seed=2)
    assert len(tr) + len(held) == len(ex)
    assert not ({e.tree_id for e in tr} & {e.tree_id for e in held})


@pytest.mark.data
@pytest.mark.slow
def test_dev_examples_from_the_real_trees(data_dir: Path, tmp_path: Path) -> None:
    from microtheory.entail_data import load_split_examples

    ex = load_split_examples("dev", data_dir, DataConfig(seed=13), encoder=TfidfEncoder())
    k = _kinds(ex)
    n_pos = sum(e.label for e in ex)
    assert 600 < n_pos < 1000  # 187 dev trees: their steps plus leaves -> hypothesis
    for kind in ("drop", "swap_distractor", "swap_neighbour", "other_conclusion", "negated", "reversed"):
        assert k[(kind, 0)] > 20, kind
    assert {e.tree_id for e in ex} and all(e.hypothesis for e in ex)
