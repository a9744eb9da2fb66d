from __future__ import annotations

import statistics
from collections import Counter

import pytest

from critique.flaws import (SCORES, FlawExample, build_examples, build_split, flip_antonym, negate, read_examples,
                            write_examples)
from critique.inputs import split_sentences
from critique.taxonomy import LABELS
from microtheory.trees import build_tree
from core.types import Question

import random


def _toy() -> tuple[list, list[Question]]:
    trees, qs = [], []
    specs = [
        ("q1", {"sent1": "a plant requires sunlight to grow", "sent2": "summer has the most sunlight",
                "sent3": "a garden contains plants"},
         "sent3 & sent1 -> int1: the plants in a garden require sunlight to grow; int1 & sent2 -> hypothesis;",
         "the plants in a garden receive the most sunlight for growing in summer",
         "In which season do garden plants get the most energy from the Sun?", {"A": "fall", "B": "summer", "C": "winter"}, "B"),
        ("q2", {"sent1": "iron is a kind of metal", "sent2": "metals are attracted to magnets",
                "sent3": "a nail is made of iron"},
         "sent1 & sent3 -> int1: a nail is made of metal; int1 & sent2 -> hypothesis;",
         "an iron nail is attracted to a magnet", "Which object is attracted to a magnet?",
         {"A": "a wooden block", "B": "a glass marble", "C": "an iron nail"}, "C"),
        ("q3", {"sent1": "water is a kind of liquid", "sent2": "heating a liquid increases its temperature",
                "sent3": "boiling means a liquid changes to a gas"},
         "sent1 & sent2 -> int1: heating water increases its temperature; int1 & sent3 -> hypothesis;",
         "heating water to a high temperature can cause it to boil", "What happens when water is heated a lot?",
         {"A": "it freezes", "B": "it boils", "C": "it melts"}, "B"),
    ]
    for qid, sents, proof, hyp, stem, opts, key in specs:
        trees.append(build_tree(qid, qid, hyp, sents, proof))
        qs.append(Question(qid, stem, opts, key))
    return trees, qs


def test_all_nine_labels_and_consistent_targets():
    trees, qs = _toy()
    ex = build_examples(trees, qs, seed=3)
    assert set(e.dimension for e in ex) == set(LABELS)
    for e in ex:
        assert split_sentences(e.explanation) == list(e.sentences)
        if e.dimension == "none":
            assert e.flaw_index is None and e.score == 5 and e.predicted_answer == e.answer_key
        else:
            assert 0 <= e.flaw_index < len(e.sentences) and e.flaw_text == e.sentences[e.flaw_index]
            assert e.score in SCORES[e.dimension]
        if e.dimension == "inconsistent_answer":
            assert e.predicted_answer != e.answer_key
        if e.dimension == "incorrect_information":
            assert e.reference and e.reference not in e.explanation.lower()


def test_seeded_reproducible_and_order_independent():
    trees, qs = _toy()
    a = build_examples(trees, qs, seed=7)
    b = build_examples(trees, qs, seed=7)
    assert [x.to_json() for x in a] == [x.to_json() for x in b]
    c = build_examples(trees, qs, seed=8)
    assert [x.explanation for x in a] != [x.explanation for x in c]


def test_jsonl_roundtrip(tmp_path):
    trees, qs = _toy()
    ex = build_examples(trees, qs, seed=1)
    p = tmp_path / "ex.jsonl"
    assert write_examples(p, ex) == len(ex)
    back = read_examples(p)
    assert back == ex and isinstance(back[0], FlawExample)


def test_corruptions():
    assert negate("iron is a kind of metal") == "iron is not a kind of metal"
    assert negate("a plant can grow") == "a plant cannot grow"
    assert negate("iron is not a metal") == "iron is a metal"
    assert flip_antonym("heating increases temperature", random.Random(0)) == "heating decreases temperature"


@pytest.mark.data
@pytest.mark.slow
def test_dev_build_balanced_and_lengths_overlap(data_dir):
    ex = build_split("dev", seed=0, data_dir=data_dir)
    counts = Counter(e.dimension for e in ex)
    assert set(counts) == set(LABELS) and min(counts.values()) >= 140  # of 187 dev trees
    words = {lab: [len(e.explanation.split()) for e in ex if e.dimension == lab] for lab in LABELS}
    # Explanation length must not give the label away: every label's interquartile range overlaps
    # that of sound explanations (lack_justification is short by nature: documented as a limit).
    def iqr(v: list[int]) -> tuple[int, int]:
        v = sorted(v)
        return v[len(v) // 4], v[3 * len(v) // 4]

    lo, hi = iqr(words["none"])
    for lab in LABELS:
        if lab != "lack_justification":
            a, b = iqr(words[lab])
            assert a < hi and b > lo, (lab, (a, b), (lo, hi))
            assert 0.6 < statistics.median(words[lab]) / statistics.median(words["none"]) < 1.5, lab
    # The answer sentence is phrased in many ways.
    last = Counter(e.sentences[-1].split(" ")[0] for e in ex if e.dimension == "none")
    assert len(last) >= 10


# --- the recipe registry, eb_alt and the renderings -----------------------------------------------------

def test_recipe_registry_and_eb_alt_labels():
    from critique.checks import split_units
    from critique.flaws import RECIPES, build_recipe

    assert {"eb_v1", "eb_alt"} <= set(RECIPES)
    trees, qs = _toy()
    ex = build_recipe("eb_alt", trees, qs, seed=1)
    assert {e.dimension for e in ex} >= {"none", "incomplete_reasoning", "inconsistent_answer", "lack_justification"}
    for e in ex:
        assert e.recipe.startswith("eb_alt/")
        units = split_units(e.explanation)
        assert len(units) == len(e.sentences)  # the flaw index means the same unit at training and prediction
        if e.dimension == "none":
            assert e.flaw_index is None and e.predicted_answer == e.answer_key
        else:
            assert 0 <= e.flaw_index < len(units)
        if e.dimension == "inconsistent_answer":
            assert e.predicted_answer != e.answer_key
    with pytest.raises(Exception):
        build_recipe("no_such_recipe", trees, qs)


def test_robustness_set_five_renderings_of_one_draft():
    from critique.flaws import ROBUSTNESS_RENDERINGS, robustness_set

    trees, qs = _toy()
    groups = robustness_set(trees, qs, seed=0)
    assert groups and all(len(g) == len(ROBUSTNESS_RENDERINGS) for g in groups)
    for g in groups:
        assert len({e.dimension for e in g}) == 1 and len({e.predicted_answer for e in g}) == 1
        assert len({e.explanation for e in g}) >= 4  # really rendered differently
    texts = [e.explanation for e in groups[0]]
    assert any(t.startswith("1. ") for t in texts) and any(";" in t for t in texts)


# --- eb_v1's per-label steps ------------------------------------------------------------------------------

def test_eb_v1_has_one_step_per_label_and_rejects_unknown_labels():
    from critique.flaws import _V1_STEPS, _pools, build_one

    assert set(_V1_STEPS) | {"lack_justification"} == set(LABELS)
    trees, qs = _toy()
    with pytest.raises(ValueError, match="unknown label"):
        build_one(trees[0], qs[0], "no_such_label", _pools(trees), 0, "train")


def test_toy_build_is_pinned():
    """The toy data of both recipes for one seed, pinned: a refactor must not change a single record.
    A deliberate recipe change updates this fingerprint and bumps critique.flaws.VERSION."""
    import hashlib
    import json

    from critique.flaws import VERSION, build_recipe

    trees, qs = _toy()
    h = hashlib.sha256()
    for name in ("eb_v1", "eb_alt"):
        for ex in build_recipe(name, trees, qs, seed=3):
            h.update(json.dumps(ex.to_json(), sort_keys=True).encode())
    assert (VERSION, h.hexdigest()[:16]) == (1, "37f311202262ad2d")


def _check_recipe_examples(ex: list, name: str) -> None:
    """What every recipe's examples must satisfy: named after it, units that split back exactly, `none`
    unflawed with the key predicted, every other label pointing at one of its units."""
    from critique.checks import split_units

    for e in ex:
        assert e.recipe.startswith(f"{name}/")
        assert len(split_units(e.explanation)) == len(e.sentences), e.sentences
        if e.dimension == "none":
            assert e.flaw_index is None and e.predicted_answer == e.answer_key
        else:
            assert 0 <= e.flaw_index < len(e.sentences)


def test_eb_prose_third_recipe_splits_back_and_differs_from_the_others():
    from critique.flaws import RECIPES, build_recipe

    assert {"eb_v1", "eb_alt", "eb_prose"} <= set(RECIPES)
    trees, qs = _toy()
    ex = []
    for seed in range(4):
        ex += build_recipe("eb_prose", trees, qs, seed=seed)
    assert {e.dimension for e in ex} >= {"none", "incomplete_reasoning", "inconsistent_answer", "lack_justification",
                                         "irrelevant", "misunderstanding"}
    _check_recipe_examples(ex, "eb_prose")
    for e in ex:
        if e.dimension == "inconsistent_answer":
            # stated first, against the key
            assert e.predicted_answer != e.answer_key and e.flaw_index == 0
    alt = {e.explanation for s in range(4) for e in build_recipe("eb_alt", trees, qs, seed=s)}
    assert not alt & {e.explanation for e in ex}
    assert any(e.explanation.startswith("Step 1:") or " Step 1:" in e.explanation for e in ex) or \
        any(e.explanation.lstrip().startswith("- ") for e in ex) or len(ex) < 20


def test_eb_prose_is_seeded():
    from critique.flaws import build_recipe

    trees, qs = _toy()
    a = [e.to_json() for e in build_recipe("eb_prose", trees, qs, seed=5)]
    assert a == [e.to_json() for e in build_recipe("eb_prose", trees, qs, seed=5)]


def test_eb_merged_fourth_recipe_splits_back_points_at_its_flaw_and_differs_from_the_others():
    from critique.flaws import RECIPES, build_recipe

    assert "eb_merged" in RECIPES
    trees, qs = _toy()
    ex = [e for seed in range(4) for e in build_recipe("eb_merged", trees, qs, seed=seed)]
    assert {e.dimension for e in ex} >= {"none", "missing_information", "inconsistent_answer", "lack_justification",
                                         "irrelevant", "misunderstanding"}
    _check_recipe_examples(ex, "eb_merged")
    for e in ex:
        if e.dimension == "inconsistent_answer":
            # a wrong option named by letter only, in the closing sentence
            assert e.predicted_answer != e.answer_key and e.flaw_index == len(e.sentences) - 1
            assert e.options[e.predicted_answer] not in e.sentences[-1]
        if e.dimension in ("missing_information", "incorrect_information"):
            assert e.reference in {t.id: t for t in trees}[e.source_id].sentences.values()
            assert e.reference.lower() not in e.explanation.lower()
    others = {e.explanation for name in ("eb_v1", "eb_alt", "eb_prose") for s in range(4)
              for e in build_recipe(name, trees, qs, seed=s)}
    assert not others & {e.explanation for e in ex}
    a = [e.to_json() for e in build_recipe("eb_merged", trees, qs, seed=5)]
    assert a == [e.to_json() for e in build_recipe("eb_merged", trees, qs, seed=5)]


def test_eb_merged_operations_change_what_they_say():
    import random

    from critique.flaws import _merged_steps, _merged_units, _reversed_roles

    assert _reversed_roles("a bird is a kind of animal") == "animal is a kind of a bird"
    assert _reversed_roles("the weather is nice") is None
    trees, _ = _toy()
    t = trees[0]
    steps = _merged_steps(t, cut_last=True)
    assert all(st.concl is None or st.concl[0] != "hypothesis" for st in steps)
    units, where = _merged_units(_merged_steps(t), "labelled", random.Random(0))
    assert units[where["hypothesis"]].startswith("Inference:")
    assert all(units[where[s]].startswith("Fact:") for s in t.leaves)
