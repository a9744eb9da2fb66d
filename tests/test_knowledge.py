"""The Knowledge protocol: one contract suite that every backend runs, the openers, and its users.

Backends: KnowledgeStore with an exact index, KnowledgeStore with HNSW (both reopened read-only
from disk), and MemoryKnowledge (a microtheory in memory, no folder). All use the HashingEncoder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from core.errors import EncoderMismatchError, InputError, StoreError
from core.outputs import OWNER_FILE, read_owner
from core.types import Fact, Proof
from retrieval.encoder import HashingEncoder
from retrieval.knowledge import Knowledge, kind_of, knowledge_from_facts, open_knowledge, open_microtheory, open_store
from retrieval.store import KnowledgeStore, MemoryKnowledge

FACTS = [
    Fact("f1", "The sun is a star.", "corpus", [{"corpus": "test", "line": 1}]),
    Fact("f2", "Plants need water and sunlight to grow.", "corpus", [{"corpus": "test", "line": 2}]),
    Fact("f3", "A thermometer measures temperature.", "corpus"),
    Fact("g1", "Water freezes at zero degrees celsius.", "generated", [{"question_id": "q1", "generator": "t"}]),
    Fact("m1", "Friction produces heat.", "microtheory"),
    Fact("dup", "the sun is a STAR", "corpus", [{"corpus": "other", "line": 9}]),  # merges into f1
]
PROOFS = [Proof("q1", "p1", "the sun gives heat", ("f1", "m1"))]
Backend = Callable[[Path], Knowledge]


def _store(index: str) -> Backend:
    def make(tmp: Path) -> Knowledge:
        with KnowledgeStore.create(tmp / f"kb-{index}", encoder=HashingEncoder(), index=index) as ks:
            ks.add(FACTS)
            ks.add_proofs(PROOFS)
        return KnowledgeStore.open(tmp / f"kb-{index}")

    return make


def _memory(tmp: Path) -> Knowledge:
    return MemoryKnowledge(FACTS, HashingEncoder(), PROOFS)


BACKENDS = {"store-flat": _store("flat"), "store-hnsw": _store("hnsw"), "memory": _memory}


@pytest.fixture(params=sorted(BACKENDS))
def knowledge(request: pytest.FixtureRequest, tmp_path: Path) -> Knowledge:
    return BACKENDS[request.param](tmp_path)


# ------------------------------------------------------------------ the contract


def test_satisfies_the_protocol(knowledge: Knowledge) -> None:
    assert isinstance(knowledge, Knowledge)
    assert knowledge.encoder.name == "hashing-384"


def test_facts_by_id_len_iter(knowledge: Knowledge) -> None:
    assert len(knowledge) == 5  # "dup" merged into f1
    assert [f.id for f in knowledge] == ["f1", "f2", "f3", "g1", "m1"]
    assert "g1" in knowledge and "dup" not in knowledge and "nope" not in knowledge
    assert knowledge.get("g1").text == "Water freezes at zero degrees celsius."
    assert knowledge.get("nope", None) is None
    with pytest.raises(KeyError):
        knowledge.get("nope")


def test_provenance_is_kept_and_merged(knowledge: Knowledge) -> None:
    assert knowledge.get("f1").provenance == [{"corpus": "test", "line": 1}, {"corpus": "other", "line": 9}]
    hit = knowledge.search("is the sun a star", k=1)[0]
    assert hit.fact.id == "f1" and hit.fact.provenance == knowledge.get("f1").provenance
    assert hit.to_json()["provenance"] == hit.fact.provenance


def test_search_top_k_and_scores(knowledge: Knowledge) -> None:
    hits = knowledge.search("is the sun a star", k=3)
    assert len(hits) == 3 and hits[0].fact.id == "f1"
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and 0.0 < scores[0] <= 1.0 + 1e-6
    assert len(knowledge.search("water", k=50)) == 5  # k beyond the size: everything, no padding
    with pytest.raises(StoreError, match="k must be"):
        knowledge.search("water", k=0)
    with pytest.raises(TypeError):
        knowledge.search(["a list"], k=1)  # type: ignore[arg-type]


def test_batch_and_vectors_agree_with_search(knowledge: Knowledge) -> None:
    qs = ["sun star", "thermometer temperature", "friction heat"]
    batch = knowledge.search_batch(qs, k=2)
    by_vec = knowledge.search_vectors(knowledge.encoder.encode(qs), k=2)
    for q, b, v in zip(qs, batch, by_vec):
        single = knowledge.search(q, k=2)
        assert [h.fact.id for h in b] == [h.fact.id for h in single] == [h.fact.id for h in v]
        assert np.allclose([h.score for h in b], [h.score for h in v], atol=1e-5)
    assert [b[0].fact.id for b in batch] == ["f1", "f3", "m1"]
    assert knowledge.search_batch([], k=3) == []


def test_source_filter(knowledge: Knowledge) -> None:
    assert [h.fact.id for h in knowledge.search("water", k=10, source="generated")] == ["g1"]
    corpus = knowledge.search("water freezes", k=10, source="corpus")
    assert {h.fact.source for h in corpus} == {"corpus"} and len(corpus) == 3
    with pytest.raises(StoreError, match="unknown source"):
        knowledge.search("x", source="bogus")


def test_wrong_vector_dimension_is_refused(knowledge: Knowledge) -> None:
    with pytest.raises(EncoderMismatchError, match="384"):
        knowledge.search_vectors(np.ones((1, 64), dtype=np.float32))


def test_proofs(knowledge: Knowledge) -> None:
    assert knowledge.proofs() == PROOFS


def test_empty_knowledge_searches_to_nothing(tmp_path: Path) -> None:
    with KnowledgeStore.create(tmp_path / "empty", encoder="hashing") as ks:
        pass
    for k in (KnowledgeStore.open(tmp_path / "empty"), MemoryKnowledge([], HashingEncoder())):
        assert isinstance(k, Knowledge) and len(k) == 0
        assert k.search("anything", k=3) == [] and k.proofs() == []


def test_memory_knowledge_needs_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    facts_file = tmp_path / "mt.jsonl"
    facts_file.write_text(json.dumps({"id": "x1", "text": "friction produces heat"}) + "\n")
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: pytest.fail("no temp folder may be made"))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: pytest.fail("no temp folder may be made"))
    monkeypatch.chdir(tmp_path)
    k = knowledge_from_facts(FACTS, HashingEncoder())
    assert k.search("friction", k=1)[0].fact.id == "m1"
    qa_mt = open_microtheory(facts_file, HashingEncoder())  # what `qa --microtheory FILE` opens
    assert isinstance(qa_mt, MemoryKnowledge) and qa_mt.search("friction", k=1)[0].fact.id == "x1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mt.jsonl"]


# ------------------------------------------------------------------ what a path holds


def _microtheory_dir(path: Path) -> Path:
    from microtheory.distill.microtheory_dir import write_microtheory

    facts = [Fact("m1", "iron nails are attracted by magnets", "corpus"), Fact("m2", "friction produces heat")]
    return write_microtheory(path, facts, {}, {"strategy": "test", "budget": 2}, {}, {})


def test_kind_of_and_open_knowledge(tmp_path: Path) -> None:
    with KnowledgeStore.create(tmp_path / "kb", encoder="hashing") as ks:
        ks.add(FACTS)
    mt = _microtheory_dir(tmp_path / "mt")
    assert (read_owner(mt) or {})["kind"] == "microtheory" and (read_owner(tmp_path / "kb") or {})["kind"] == "store"
    facts_file = tmp_path / "facts.jsonl"
    facts_file.write_text(json.dumps({"id": "x1", "text": "a magnet attracts iron"}) + "\n")
    assert [kind_of(p) for p in (tmp_path / "kb", mt, facts_file, tmp_path / "none")] == \
        ["store", "microtheory", "facts", None]

    store = open_knowledge(tmp_path / "kb", encoder=HashingEncoder(64))  # a store keeps its own encoder
    assert isinstance(store, KnowledgeStore) and store.encoder.name == "hashing-384"
    mem = open_knowledge(mt, encoder=HashingEncoder())
    assert isinstance(mem, MemoryKnowledge) and [f.id for f in mem] == ["m1", "m2"]
    assert {f.source for f in mem} == {"microtheory"}
    assert mem.search("magnets attract iron nails", k=1)[0].fact.id == "m1"
    assert [f.id for f in open_knowledge(facts_file, HashingEncoder())] == ["x1"]
    with pytest.raises(InputError, match="no such"):
        open_knowledge(tmp_path / "none")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a knowledge store"):
        open_knowledge(tmp_path / "other")


def test_open_store_refuses_a_microtheory(tmp_path: Path) -> None:
    mt = _microtheory_dir(tmp_path / "mt")
    with pytest.raises(StoreError, match="microtheory directory, not a knowledge store"):
        open_store(mt)
    with pytest.raises(StoreError, match="not a knowledge store"):
        KnowledgeStore.create(mt, encoder="hashing", overwrite=True)  # --force replaces stores only
    assert kind_of(mt) == "microtheory" and len(open_knowledge(mt, HashingEncoder())) == 2
    with KnowledgeStore.create(tmp_path / "kb", encoder="hashing") as ks:
        ks.add(FACTS)
    with pytest.raises(EncoderMismatchError):
        open_store(tmp_path / "kb", encoder="hashing-64")


def test_directories_made_before_owner_files_are_recognised(tmp_path: Path) -> None:
    with KnowledgeStore.create(tmp_path / "kb", encoder="hashing") as ks:
        ks.add(FACTS)
    (tmp_path / "kb" / OWNER_FILE).unlink()
    mt = tmp_path / "mt"
    mt.mkdir()
    (mt / "manifest.json").write_text(json.dumps({"kind": "microtheory", "format_version": 1}))
    (mt / "facts.jsonl").write_text("")
    assert kind_of(tmp_path / "kb") == "store" and kind_of(mt) == "microtheory"
    assert len(open_knowledge(mt, HashingEncoder())) == 0  # an empty microtheory is still one


def test_open_microtheory_takes_a_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _microtheory_dir(run / "microtheory")
    with KnowledgeStore.create(run / "microtheory_store", encoder="hashing") as ks:
        ks.add([Fact("s1", "iron nails are attracted by magnets", "microtheory")])
    k = open_microtheory(run, HashingEncoder())
    assert isinstance(k, KnowledgeStore)  # a store first: it needs no encoding
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "microtheory.jsonl").write_text(json.dumps({"text": "friction produces heat"}) + "\n")
    assert [f.text for f in open_microtheory(flat, HashingEncoder())] == ["friction produces heat"]


# ------------------------------------------------------------------ users of the protocol


def test_prover_and_qa_accept_any_knowledge(knowledge: Knowledge) -> None:
    from core.types import Question
    from retrieval.entail import OverlapScorer
    from retrieval.prover import Prover
    from retrieval.qa import answer_question

    q = Question("q1", "What produces heat?", {"A": "friction", "B": "a thermometer"}, "A")
    extra = MemoryKnowledge([Fact("x1", "friction between hands produces heat", "microtheory")], HashingEncoder())
    for mt in (None, extra):
        rec = answer_question(q, Prover(knowledge, OverlapScorer(threshold=0.6), microtheory=mt))
        assert rec["error"] is None and rec["answer"] == "A" and rec["grounded"] is True
        assert "m1" in rec["proof"]["fact_ids"] or "x1" in rec["proof"]["fact_ids"]


def test_advice_accepts_any_knowledge(knowledge: Knowledge) -> None:
    from critique.advice import Advisor
    from critique.format import Critique
    from critique.inputs import ModelOutput
    from retrieval.entail import OverlapScorer

    rec = ModelOutput(id="q1", question="What does a thermometer measure?",
                      options={"A": "temperature", "B": "weight"}, answer_key="A",
                      explanation="It is a tool. So the answer is (A).", predicted_answer="A")
    crit = Critique(main_flaw="x", dimension="missing_information", general="g", specific="s", score=3)
    adv = Advisor(knowledge=knowledge, scorer=OverlapScorer(),
                  hypothesis=lambda stem, option: f"a thermometer measures {option}")
    c = adv.advise(rec, crit)
    assert c.cited_facts == ("f3",) and '[f3] "A thermometer measures temperature."' in c.specific


def test_microtheory_directory_is_written_through_core_outputs(tmp_path: Path) -> None:
    from microtheory.distill.microtheory_dir import read_microtheory, write_microtheory

    facts = [Fact("m1", "friction produces heat")]
    mt = write_microtheory(tmp_path / "mt", facts, {}, {"budget": 1}, {}, {})
    assert read_microtheory(mt).facts[0].text == "friction produces heat"
    with pytest.raises(InputError, match="--force"):
        write_microtheory(mt, facts, {}, {}, {}, {}, overwrite=False)
    write_microtheory(mt, facts + [Fact("m2", "ice is cold")], {}, {}, {}, {})  # its own kind: replaced
    assert len(read_microtheory(mt)) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not made by this command"):
        write_microtheory(other, facts, {}, {}, {}, {})
    with KnowledgeStore.create(tmp_path / "kb", encoder="hashing") as ks:
        ks.add(facts)
    with pytest.raises(InputError, match="holds a store"):
        write_microtheory(tmp_path / "kb", facts, {}, {}, {}, {})
    with pytest.raises(InputError, match="overwrite the input"):
        write_microtheory(tmp_path / "kb" / "mt", facts, {}, {"store": str(tmp_path / "kb")}, {}, {})
    assert (other / "notes.txt").read_text() == "mine" and len(KnowledgeStore.open(tmp_path / "kb")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb", "mt", "other"]  # no staging left behind
