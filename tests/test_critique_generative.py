"""The generative (DS-style causal LM) backend: prompt, strict parsing, and one real small-model run."""
from __future__ import annotations

from collections.abc import Sequence

import pytest

from critique.format import Critique
from critique.generative import (
    DS_PROMPT,
    PLACEHOLDERS,
    CritiqueResult,
    GenerativeCritic,
    fill_prompt,
    load_generative,
    locate_flaw,
    parse_generation,
)
from critique.inputs import ModelOutput
from core.errors import ModelError

REC = ModelOutput(id="q1", question="Which material conducts electricity best?",
                  options={"A": "wood", "B": "copper", "C": "rubber"}, answer_key="B",
                  explanation="Wood is a metal. Metals conduct electricity. So the answer is wood.",
                  predicted_answer="A")

GOOD = """Sure, here is my critique.
The explanation states or suggests the following:
* Main flaw (standalone statement): "Wood is a metal."
* Dimension: incorrect_information

Consider these points for revising the explanation:
* General: Check each stated fact.
* Specific: Think about which of the materials is a metal.

Explanation score: 1"""


class FakeLM:
    """Returns canned texts and records the prompts it was given."""

    def __init__(self, texts: list[str]):
        self.texts, self.prompts = texts, []

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        self.prompts.extend(prompts)
        self.max_new_tokens = max_new_tokens
        return [self.texts[i % len(self.texts)] for i in range(len(prompts))]


def test_prompt_has_placeholders_and_dimensions():
    for p in PLACEHOLDERS:
        assert f"[[{p}]]" in DS_PROMPT
    for dim in ("misunderstanding", "lack_justification", "incorrect_information", "missing_information",
                "incorrect_reasoning", "incomplete_reasoning", "inconsistent_answer", "irrelevant"):
        assert dim in DS_PROMPT
    assert "Explanation score:" in DS_PROMPT


def test_fill_prompt_substitutes_once():
    rec = ModelOutput(**{**REC.to_json(), "explanation": "I think [[ANSWERKEY]] is right."})
    text = fill_prompt(DS_PROMPT, rec)
    assert "(A) wood (B) copper (C) rubber" in text
    assert "I think [[ANSWERKEY]] is right." in text  # student text is never substituted again
    assert "Answer key: (B)" in text and "Student predicted answer: (A)" in text
    assert "[[QUESTION]]" not in text and "[[EXPLANATION]]" not in text


def test_fill_prompt_rejects_template_without_placeholder():
    with pytest.raises(ModelError, match=r"\[\[ANSWERKEY\]\]"):
        fill_prompt("Q: [[QUESTION]] E: [[EXPLANATION]] P: [[PREDICTEDANSWER]]", REC)


def test_good_generation_parses_and_locates_flaw():
    lm = FakeLM([GOOD])
    critic = GenerativeCritic(lm=lm, max_new_tokens=77)
    [res] = critic.critique([REC])
    assert res.ok and isinstance(res.critique, Critique)
    assert res.critique.dimension == "incorrect_information" and res.critique.score == 1
    assert res.critique.flaw_sentence_index == 0
    assert lm.max_new_tokens == 77 and "Wood is a metal." in lm.prompts[0]


@pytest.mark.parametrize("bad, why", [
    (GOOD.replace("Explanation score: 1", ""), "Explanation score"),
    (GOOD.replace("Explanation score: 1", "Explanation score: 7"), "between 0 and 5"),
    (GOOD.replace("Explanation score: 1", "Explanation score: good"), "integer"),
    (GOOD.replace("incorrect_information", "bad_vibes"), "unknown dimension"),
    ("I cannot critique this.", "missing field"),
    ("", "empty"),
])
def test_bad_generation_is_an_error_never_a_default(bad, why):
    res = parse_generation(REC, bad)
    assert not res.ok and res.critique is None
    assert why in (res.error or "") and res.raw == bad


def test_one_result_per_record_in_order():
    lm = FakeLM([GOOD, "garbage"])
    recs = [ModelOutput(**{**REC.to_json(), "id": f"q{i}"}) for i in range(4)]
    res = GenerativeCritic(lm=lm).critique(recs)
    assert [r.id for r in res] == ["q0", "q1", "q2", "q3"]
    assert [r.ok for r in res] == [True, False, True, False]


def test_lm_returning_wrong_count_is_model_error():
    class Short(FakeLM):
        def generate(self, prompts, max_new_tokens):
            return ["x"]

    with pytest.raises(ModelError, match="returned 1 texts for 2 prompts"):
        GenerativeCritic(lm=Short([])).critique([REC, REC])


def test_locate_flaw():
    assert locate_flaw("Metals conduct electricity", REC.explanation) == 1
    assert locate_flaw("None", REC.explanation) is None
    assert locate_flaw("zebras fly south", REC.explanation) is None


def test_load_generative_is_lazy_and_checks_args(tmp_path):
    g = load_generative("no/such-model")  # nothing loads yet
    assert g.name == "generative:no/such-model"
    with pytest.raises(ModelError):
        load_generative(max_new_tokens=0)
    t = tmp_path / "p.txt"
    t.write_text("[[QUESTION]] [[EXPLANATION]] [[PREDICTEDANSWER]] [[ANSWERKEY]]")
    assert load_generative(template=t).template.startswith("[[QUESTION]]")


def test_unknown_model_fails_with_model_error():
    g = load_generative("/nonexistent/model/dir", max_new_tokens=4)
    with pytest.raises(ModelError, match="cannot load causal LM"):
        g.critique([REC])


@pytest.mark.slow
def test_smollm2_output_is_a_critique_or_a_clear_error():
    g = load_generative(None, max_new_tokens=160)
    [res] = g.critique([REC])
    assert isinstance(res, CritiqueResult) and res.raw is not None
    if res.ok:
        assert res.critique is not None and 0 <= res.critique.score <= 5
    else:
        assert res.error and res.error.startswith("unparseable critique from the language model:")
