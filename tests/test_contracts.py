"""Shared contract suites: every backend of a protocol runs the same checks (docs/CONTRACTS.md).

Knowledge backends (flat store, HNSW store, in memory) have theirs in tests/test_knowledge.py and
encoders in tests/test_encoder.py; here: entailment scorers, generators and critique backends. The
real models are marked slow; the test doubles run in milliseconds.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import InputError
from critique.inputs import ModelOutput
from critique.taxonomy import LABELS

# ------------------------------------------------------------------------------ entailment scorers

ITEMS = [
    (["a dog is a kind of mammal", "mammals are warm-blooded"], "a dog is warm-blooded"),
    (["the sun is a star"], "the moon is made of cheese"),
    (["plants need sunlight to make food"], "plants need sunlight"),
]


@pytest.fixture(params=["overlap", pytest.param("shipped", marks=pytest.mark.slow)])
def scorer(request: pytest.FixtureRequest) -> Any:
    from retrieval.entail import OverlapScorer, load_scorer

    return OverlapScorer() if request.param == "overlap" else load_scorer()


def test_scorer_contract(scorer: Any) -> None:
    assert 0.0 <= float(scorer.threshold) <= 1.0
    one = [scorer.score(p, h) for p, h in ITEMS]
    batch = scorer.score_batch(ITEMS)
    assert isinstance(batch, np.ndarray) and batch.shape == (len(ITEMS),)
    assert all(0.0 <= s <= 1.0 for s in one) and np.all((batch >= 0) & (batch <= 1))
    np.testing.assert_allclose(batch, one, atol=1e-3)  # batching never changes a score
    assert scorer.score_batch([]).shape == (0,)
    assert one[0] > one[1]  # a valid two-step entailment beats an unrelated premise


# -------------------------------------------------------------------------------------- generators

@pytest.fixture(params=["scripted", "openai"])
def generator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from microtheory.generators import get_generator
    from microtheory.generators.fake_server import FakeOpenAIServer

    if request.param == "scripted":
        answers = tmp_path / "answers.json"
        answers.write_text(json.dumps([f"1. premise {i}.\n2. another premise." for i in range(20)]))
        gen = get_generator(f"scripted:{answers}")
        yield gen
        gen.close()
    else:
        with FakeOpenAIServer() as srv:
            gen = get_generator(f"openai:{srv.base_url}#fake-model", timeout=5, retries=0)
            yield gen
            gen.close()


def test_generator_contract(generator: Any) -> None:
    out = generator.generate(["prove: a dog is warm-blooded", "prove: plants need light"], n=2, max_tokens=32)
    assert len(out) == 2 and all(isinstance(c, list) and 1 <= len(c) <= 2 for c in out)
    assert all(isinstance(s, str) and s for c in out for s in c)
    assert len(generator.generate("one prompt", n=1)) == 1  # a single prompt is a list of one
    with pytest.raises(InputError):
        generator.generate("x", n=0)
    assert isinstance(generator.name, str) and generator.name
    generator.close()  # closing twice is safe


# ------------------------------------------------------------------------------- critique backends

ROWS = [
    ModelOutput("r1", "Which of these is a mammal?", {"A": "a dog", "B": "a trout"}, "A",
                "A dog is a kind of mammal. So the answer is (A).", "A"),
    ModelOutput("r2", "What do plants need to make food?", {"A": "sunlight", "B": "sand"}, "A",
                "Plants need sand. The answer is B.", "B"),
    ModelOutput("r3", "Which is a star?", {"A": "the sun", "B": "the moon"}, "A", "The moon.", "B"),
]


@pytest.fixture(params=[pytest.param("checks", marks=pytest.mark.slow),
                        pytest.param("classifier", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> Any:
    from critique.batch import make_backend

    return make_backend(request.param, fast=True) if request.param == "checks" else make_backend(request.param)


def test_critique_backend_contract(backend: Any) -> None:
    from critique.batch import describe_backend

    res = backend.critique(ROWS)
    assert [r.id for r in res] == [r.id for r in ROWS]  # one result per record, in order
    for r in res:
        assert (r.critique is None) != (r.error is None)
        if r.critique is not None:
            assert r.critique.dimension in LABELS and 0 <= r.critique.score <= 5
    assert res[0].critique is not None and res[1].critique is not None
    # a sound explanation never scores below one whose answer contradicts the key
    assert res[0].critique.score >= res[1].critique.score
    d = describe_backend(backend)
    assert d["backend"] and len(d["model_digest"]) == 12
