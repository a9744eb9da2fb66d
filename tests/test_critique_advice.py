"""General and grounded specific advice: cites given facts, never states facts from elsewhere."""
from __future__ import annotations

import json
import re

import pytest

from critique.advice import Advisor, FactIndex, load_knowledge
from critique.format import Critique
from critique.inputs import ModelOutput
from critique.taxonomy import FLAW_LABELS, general_advice
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from core.errors import InputError
from core.types import Fact
from retrieval.knowledge import Knowledge
from retrieval.store import KnowledgeStore

FACTS = [
    Fact("mt:1", "copper is a metal"),
    Fact("mt:2", "metals conduct electricity"),
    Fact("mt:3", "wood is a poor conductor of electricity and wood is not a metal"),
    Fact("mt:4", "the sun is a star"),
]
REC = ModelOutput(id="q1", question="Which material conducts electricity best?",
                  options={"A": "wood", "B": "copper", "C": "rubber"}, answer_key="B",
                  explanation="Metals conduct electricity. So the answer is (B).", predicted_answer="B")


def _advisor(facts=FACTS) -> Advisor:
    return Advisor(knowledge=FactIndex(facts, HashingEncoder()), scorer=OverlapScorer(),
                   hypothesis=lambda stem, option: f"{option} is the material that conducts electricity best")


def _crit(dim: str, idx: int | None = None, flaw: str = "x") -> Critique:
    return Critique(main_flaw=flaw if dim != "none" else "None", dimension=dim, general="g", specific="s",
                    score=3 if dim != "none" else 5, flaw_sentence_index=idx)


def _check_grounded(c: Critique, rec: ModelOutput, facts: list[Fact]) -> None:
    """Every [id] "text" cites a given fact verbatim; every other quote comes from the record."""
    by_id = {f.id: f.text for f in facts}
    cites = re.findall(r'\[([^\]]+)\] "([^"]*)"', c.specific)
    for fid, text in cites:
        assert by_id.get(fid) == text, f"cited {fid!r} {text!r} is not in the knowledge"
    assert sorted(set(c.cited_facts)) == sorted({fid for fid, _ in cites})
    rest = re.sub(r'\[[^\]]+\] "[^"]*"', "", c.specific)
    for q in re.findall(r'"([^"]*)"', rest):
        q = q.rstrip(".")
        assert q in rec.question or q in rec.explanation, f"quote {q!r} is not from the record"


def test_missing_fact_is_cited():
    c = _advisor().advise(REC, _crit("missing_information"))
    assert c.cited_facts == ("mt:1",)  # the explanation never says copper is a metal
    assert '[mt:1] "copper is a metal"' in c.specific
    assert c.general == general_advice("missing_information")
    _check_grounded(c, REC, FACTS)


def test_stated_fact_is_not_cited_as_missing():
    c = _advisor().advise(REC, _crit("missing_information"))
    assert "mt:2" not in c.cited_facts  # "metals conduct electricity" is already in the explanation


def test_false_statement_checked_against_a_fact():
    rec = ModelOutput(**{**REC.to_json(), "explanation": "Wood is a metal. Metals conduct electricity. "
                                                          "So the answer is (A).", "predicted_answer": "A"})
    facts = [Fact("mt:2", "metals conduct electricity"), Fact("mt:3", "wood is an insulator"),
             Fact("mt:4", "the sun is a star")]
    c = _advisor(facts).advise(rec, _crit("incorrect_information", idx=0))
    assert c.cited_facts[0] == "mt:3"
    assert c.specific.startswith('Check the statement "Wood is a metal." against the known fact '
                                 '[mt:3] "wood is an insulator"')
    _check_grounded(c, rec, facts)


def test_no_flaw_gives_none():
    c = _advisor().advise(REC, _crit("none"))
    assert c.specific == "None" and c.cited_facts == ()


def test_irrelevant_knowledge_gives_generic_advice_and_no_citation():
    facts = [Fact("x:1", "the sun is a star"), Fact("x:2", "owls hunt at night")]
    c = _advisor(facts).advise(REC, _crit("missing_information"))
    assert c.cited_facts == ()
    assert "sun" not in c.specific and "owl" not in c.specific
    _check_grounded(c, REC, facts)


@pytest.mark.parametrize("dim", FLAW_LABELS)
def test_without_knowledge_no_outside_fact(dim):
    c = Advisor().advise(REC, _crit(dim, idx=0))
    assert c.cited_facts == () and c.specific.strip()
    for word in ("copper is a metal", "metal", "insulator", "star"):
        assert word not in c.specific.lower() or word in (REC.question + REC.explanation).lower()
    _check_grounded(c, REC, [])


@pytest.mark.parametrize("dim", FLAW_LABELS)
def test_with_knowledge_every_dimension_stays_grounded(dim):
    c = _advisor().advise(REC, _crit(dim, idx=0))
    _check_grounded(c, REC, FACTS)


def test_keep_model_general_when_asked():
    c = _advisor().advise(REC, _crit("irrelevant", idx=0), general=False)
    assert c.general == "g"


def test_load_knowledge_from_a_folder_a_file_and_a_store(tmp_path):
    d = tmp_path / "mt"
    d.mkdir()
    (d / "facts.jsonl").write_text("\n".join(json.dumps(x) for x in [
        {"id": "f1", "text": "copper is a metal"}, {"text": "metals conduct electricity"}]) + "\n")
    for where in (d, d / "facts.jsonl"):
        k = load_knowledge(microtheory=where, encoder=HashingEncoder())
        assert isinstance(k, Knowledge) and len(k) == 2
        assert k.search("copper metal", k=1)[0].fact.id == "f1"
    with KnowledgeStore.create(tmp_path / "kb", encoder="hashing") as ks:
        ks.add([Fact("s1", "copper is a metal")])
    k = load_knowledge(store=tmp_path / "kb")
    assert isinstance(k, KnowledgeStore) and k.search("copper", k=1)[0].fact.id == "s1"
    assert load_knowledge() is None
    with pytest.raises(InputError, match="not both"):
        load_knowledge(microtheory=d, store=d)
    with pytest.raises(InputError, match="no such"):
        load_knowledge(microtheory=tmp_path / "nothing" / "facts.jsonl")
    (d / "facts.jsonl").write_text('{"id": "f1"}\n')
    with pytest.raises(InputError, match=r"facts.jsonl:1: missing 'text'"):
        load_knowledge(microtheory=d)


def _four_rows() -> list[ModelOutput]:
    """REC and a second row with a false sentence, twice each: a batch with repeated rows."""
    rec2 = ModelOutput(**{**REC.to_json(), "id": "q2", "explanation": "Wood is a metal. So the answer is (A).",
                          "predicted_answer": "A"})
    return [REC, rec2, REC, rec2]


def test_batch_advice_equals_row_by_row():
    recs = _four_rows()
    crits = [_crit("missing_information"), _crit("incorrect_information", idx=0), _crit("none"),
             _crit("inconsistent_answer", idx=0)]
    adv = _advisor()
    assert adv.advise_batch(recs, crits) == [adv.advise(r, c) for r, c in zip(recs, crits)]
    assert any(c.cited_facts for c in adv.advise_batch(recs, crits))   # the batch did ground something


def test_scored_candidates_are_capped():
    class Counting(OverlapScorer):
        pairs = 0

        def score_batch(self, items, batch_size=64):
            Counting.pairs += len(items)
            return super().score_batch(items, batch_size)

    facts = [Fact(f"m:{i}", f"copper wire number {i} conducts electricity") for i in range(12)]
    adv = Advisor(knowledge=FactIndex(facts, HashingEncoder()), scorer=Counting(), k=12, max_scored=3,
                  hypothesis=lambda stem, option: f"{option} conducts electricity best")
    adv.advise(REC, _crit("missing_information"))
    assert Counting.pairs == 2 * 3 + 1   # stated? and explanation + fact for 3 candidates, plus the explanation alone


def test_fast_critic_with_a_microtheory_loads_no_model(tmp_path):
    from critique.advice import plain_hypothesis
    from critique.batch import CritiqueRunConfig, build_critic

    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps({"id": f.id, "text": f.text}) + "\n" for f in FACTS))
    _, adv = build_critic(CritiqueRunConfig(fast=True, microtheory=facts))
    assert isinstance(adv.scorer, OverlapScorer) and adv.hypothesis is plain_hypothesis
    assert adv.knowledge.search("copper metal", k=1)[0].fact.id == "mt:1"
    c = adv.advise(REC, _crit("missing_information"))
    _check_grounded(c, REC, FACTS)


def test_batch_advice_retrieves_every_row_in_one_search_call():
    class CountingKnowledge:
        """The advisor's knowledge, counting searches (one `search_batch` call expected per batch)."""

        def __init__(self, inner: Knowledge):
            self.inner, self.batch_calls, self.single_calls = inner, 0, 0

        def search(self, q, k=10):
            self.single_calls += 1
            return self.inner.search(q, k=k)

        def search_batch(self, qs, k=10):
            self.batch_calls += 1
            return self.inner.search_batch(qs, k=k)

    recs = _four_rows()
    crits = [_crit("missing_information"), _crit("incorrect_information", idx=0), _crit("none"),
             _crit("incorrect_reasoning", idx=0)]
    counted = _advisor()
    counted.knowledge = CountingKnowledge(counted.knowledge)
    got = counted.advise_batch(recs, crits)
    assert (counted.knowledge.batch_calls, counted.knowledge.single_calls) == (1, 0)
    assert got == [_advisor().advise(r, c) for r, c in zip(recs, crits)]   # what row-by-row searching gives


def test_spacy_preload_runs_once_and_the_hypothesis_waits_for_it(monkeypatch):
    import threading
    import time

    import critique.advice as advice
    import retrieval.hypothesis as hyp

    calls: list[str] = []

    def slow(stem, option):
        calls.append(threading.current_thread().name)
        time.sleep(0.2)   # a slow first load
        return f"{option} answers {stem}"

    monkeypatch.setattr(hyp, "make_hypothesis", slow)
    monkeypatch.setattr(advice, "_HYPOTHESIS_PRELOAD", None)
    Advisor(knowledge=None).prepare()               # no knowledge: nothing to preload
    _advisor().prepare()                            # its own hypothesis: nothing to preload
    assert advice._HYPOTHESIS_PRELOAD is None
    adv = Advisor(knowledge=FactIndex(FACTS, HashingEncoder()), scorer=OverlapScorer())
    adv.prepare()
    adv.prepare()                                   # once per process
    assert advice.default_hypothesis("Q?", "x") == "x answers Q?"   # waited for the preload, then ran
    assert calls == ["preload-spacy", "MainThread"]
    assert not advice._HYPOTHESIS_PRELOAD.is_alive()
