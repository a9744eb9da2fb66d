"""What makes full-mode critique fast must not change what it says: batched checks equal row-by-row
checks, the microtheory's facts are not encoded twice, and a whole `critique run` with knowledge
scores each distinct scorer pair once (the hashing encoder and the overlap scorer stand in for the models)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.types import Fact
from critique.advice import Advisor
from critique.batch import critique_file
from critique.checks import Checker, ChecksConfig, FactTable, as_fact_source
from critique.inputs import ModelOutput
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from retrieval.knowledge import knowledge_from_facts

OPTS = {"A": "fall", "B": "summer", "C": "winter"}
FACTS = [Fact("f1", "summer has the most sunlight"), Fact("f2", "a plant requires sunlight to grow"),
         Fact("f3", "winter is the coldest season")]
EXPLS = ["A plant requires sunlight to grow. Summer has the least sunlight. So the answer is (B).",
         "Winter is the warmest season. The answer is C.",
         "1. Plants need light. 2. Summer has the most sunlight. 3. So (B).",
         "Summer has the most sunlight. The answer is (B)."]


def _rec(i: int) -> ModelOutput:
    return ModelOutput(f"r{i}", "In which season do garden plants get the most sunlight?", OPTS, "B",
                       EXPLS[i % len(EXPLS)], "C" if i % 4 == 1 else "B")


class CountingEncoder(HashingEncoder):
    def __init__(self, dim: int = 64):
        super().__init__(dim)
        self.texts = 0

    def encode(self, texts, batch_size=64):
        self.texts += len(texts)
        return super().encode(texts, batch_size)


class CountingScorer(OverlapScorer):
    def __init__(self) -> None:
        self.items: list[tuple[tuple[str, ...], str]] = []

    def score_batch(self, items, batch_size=64):
        self.items += [(tuple(p), h) for p, h in items]
        return super().score_batch(items, batch_size)


def test_batched_checks_equal_row_by_row_checks():
    enc = HashingEncoder(64)
    kn = knowledge_from_facts(FACTS, enc)
    recs = [_rec(i) for i in range(8)]
    batched = Checker(OverlapScorer(), enc, kn, ChecksConfig()).run(recs)
    one = Checker(OverlapScorer(), enc, kn, ChecksConfig())
    single = [one.run([r])[0] for r in recs]
    for a, b in zip(batched, single):
        assert np.allclose(a.g, b.g, atol=1e-6) and np.allclose(a.u, b.u, atol=1e-6)
        assert a.near_fact == b.near_fact and a.supported_option == b.supported_option
    assert any(c.named()["fact_contra"] > 0 or c.named()["fact_entail"] < 1 for c in batched)  # facts were checked


def test_checks_reuse_the_microtheory_vectors_instead_of_encoding_the_facts_again():
    enc = CountingEncoder()
    kn = knowledge_from_facts(FACTS, enc)
    encoded = enc.texts
    src = as_fact_source(kn, enc)
    assert enc.texts == encoded                       # not encoded a second time
    fresh = FactTable.build([f.id for f in FACTS], [f.text for f in FACTS], HashingEncoder(64))
    assert isinstance(src, FactTable) and src.ids == fresh.ids and src.texts == fresh.texts
    assert np.allclose(src.vectors, fresh.vectors, atol=1e-6)
    other = CountingEncoder(32)                       # another encoder: its own vectors, encoded afresh
    assert as_fact_source(kn, other).vectors.shape == (3, 32) and other.texts == 3


def _run(tmp_path: Path, name: str, batch_size: int) -> tuple[list[dict], CountingScorer]:
    from critique.head import CheckHead, ChecksBackend, ChecksCritic

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(_rec(i).to_json()) + "\n" for i in range(8)))
    enc, scorer = HashingEncoder(64), CountingScorer()
    kn = knowledge_from_facts(FACTS, enc)
    backend = ChecksBackend(knowledge=kn)
    backend._critic = ChecksCritic(CheckHead.load(), Checker(scorer, enc, kn, ChecksConfig()))
    adv = Advisor(knowledge=kn, scorer=scorer, hypothesis=lambda stem, option: f"{option} has the most sunlight")
    out = tmp_path / name
    summary = critique_file(inp, out, backend, advisor=adv, progress=False, batch_size=batch_size)
    assert summary.written == 8 and summary.errors == 0
    return [json.loads(x) for x in out.read_text().splitlines()[1:]], scorer


def test_a_run_with_knowledge_in_batches_writes_what_row_by_row_writes(tmp_path: Path):
    batched, sc_b = _run(tmp_path, "batched.jsonl", 8)
    single, sc_1 = _run(tmp_path, "single.jsonl", 1)
    assert batched == single
    assert any(r["critique"]["cited_facts"] for r in batched)     # the advice was grounded in the facts
    assert sorted(sc_b.items) == sorted(sc_1.items)             # the same pairs, only grouped differently
