"""The rule-based question + option -> hypothesis rewriter."""
from __future__ import annotations

import json

import pytest

from retrieval.hypothesis import clean_option, make_hypothesis, split_stem, template, token_f1


@pytest.mark.parametrize("stem, option, expected, rule", [
    ("Which event occurs on a daily cycle?", "The Sun rises and sets.",
     "the Sun rises and sets is the event that occurs on a daily cycle", "wh-noun-subject"),
    ("Which of the following is not an inherited trait of humans?", "favorite food",
     "favorite food is not an inherited trait of humans", "wh-subject"),
    ("What is a difference between mitosis and meiosis?", "the number of cells",
     "a difference between mitosis and meiosis is the number of cells", "what-be"),
    ("Rocks are classified as igneous, metamorphic, or sedimentary according to", "how they formed",
     "rocks are classified as igneous, metamorphic, or sedimentary according to how they formed", "completion"),
    ("Andy lives in the southern hemisphere. What season does he most likely experience in August?", "winter",
     "winter is the season that he most likely experience in August", "wh-noun-object"),
    ("Plants need ___ to make food.", "sunlight", "plants need sunlight to make food", "blank"),
    ("Why does the leaf of a plant look green?", "because it reflects green light",
     "the leaf of a plant look green because it reflects green light", "why"),
])
def test_rules(stem: str, option: str, expected: str, rule: str) -> None:
    assert template(stem).rule == rule
    assert make_hypothesis(stem, option) == expected


def test_options_of_one_question_share_the_template_and_differ() -> None:
    stem = "Which gas do plants take in from the air?"
    hs = {make_hypothesis(stem, o) for o in ["oxygen", "carbon dioxide", "nitrogen"]}
    assert len(hs) == 3 and all("plants" in h for h in hs)


def test_split_stem_and_clean_option() -> None:
    ctx, q = split_stem("Andy lives in the south.  It is August. What season is it?")
    assert ctx == ["Andy lives in the south.", "It is August."] and q == "What season is it?"
    assert clean_option("The Sun rises.") == "the Sun rises"
    assert clean_option("DNA strands") == "DNA strands"
    assert split_stem("") == ([], "")


def test_odd_input_never_crashes() -> None:
    assert make_hypothesis("", "water") == "water"
    assert "water" in make_hypothesis("???", "water")
    assert "water" in make_hypothesis("Tell me about it", "water")


def test_token_f1() -> None:
    assert token_f1("a b c", "a b c") == 1.0
    assert token_f1("a b", "c d") == 0.0
    assert 0 < token_f1("the sun sets", "the sun rises") < 1


@pytest.mark.data
def test_dev_gold_hypotheses_token_f1(data_dir) -> None:
    """Measured against the 187 dev gold hypotheses: the rules must beat plain concatenation."""
    rows = [json.loads(line) for line in open(data_dir / "entailmentbank/task_1/dev.jsonl")]
    ours = sum(token_f1(make_hypothesis(d["question"], d["answer"]), d["hypothesis"]) for d in rows) / len(rows)
    concat = sum(token_f1(split_stem(d["question"])[1] + " " + d["answer"], d["hypothesis"]) for d in rows) / len(rows)
    assert len(rows) == 187
    assert ours > concat and ours > 0.5
