"""KnowledgeStore behaviour with the hashing encoder (milliseconds, no model)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from core.outputs import OWNER_FILE, read_owner
from retrieval import store as store_mod
from retrieval.store import index as index_mod
from retrieval.encoder import HashingEncoder
from core.errors import EncoderMismatchError, InputError, StoreError
from retrieval.store import KnowledgeStore, fact_id_for, normalise_text
from core.types import Fact, Proof

FACTS = [
    Fact("f1", "The sun is a star.", "corpus", [{"corpus": "test", "line": 1}]),
    Fact("f2", "Plants need water and sunlight to grow.", "corpus", [{"corpus": "test", "line": 2}]),
    Fact("f3", "A thermometer measures temperature.", "corpus"),
    Fact("g1", "Water freezes at zero degrees celsius.", "generated", [{"question_id": "q1", "generator": "t"}]),
    Fact("m1", "Friction produces heat.", "microtheory"),
]


class CountingEncoder(HashingEncoder):
    def __init__(self) -> None:
        super().__init__(384)
        self.calls = 0
        self.texts = 0

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return super().encode(texts, batch_size, progress)


@pytest.fixture()
def built(tmp_path: Path) -> Path:
    p = tmp_path / "kb"
    with KnowledgeStore.create(p, encoder="hashing") as ks:
        ks.add(FACTS)
    return p


def test_normalise_text() -> None:
    assert normalise_text("  The  Sun\tis a STAR. ") == "the sun is a star"
    assert normalise_text("Is it?!") == "is it"
    assert fact_id_for("The sun is a star.") == fact_id_for("the sun  is a star")
    assert fact_id_for("a") != fact_id_for("b")


def test_roundtrip_files_and_manifest(built: Path) -> None:
    assert {p.name for p in built.iterdir()} == {"manifest.json", "facts.jsonl", "index.faiss", "bm25", OWNER_FILE}
    assert read_owner(built) == {"kind": "store", "version": 1, "config": {}}
    assert not (built.parent / "kb.lock").exists()  # the writer removed its lock file
    m = json.loads((built / "manifest.json").read_text())
    assert m["format_version"] == store_mod.FORMAT_VERSION
    assert m["encoder"] == {"name": "hashing-384", "dim": 384}
    assert m["index"]["type"] == "flat" and m["index"]["factory"] == "Flat"
    assert m["count"] == 5 and m["sources"] == {"corpus": 3, "generated": 1, "microtheory": 1}
    assert "faiss-cpu" in m["library_versions"] and m["created"] and m["updated"]
    ks = KnowledgeStore.open(built)
    assert len(ks) == 5 and [f.id for f in ks] == ["f1", "f2", "f3", "g1", "m1"]
    assert ks.get("g1").provenance == [{"question_id": "q1", "generator": "t"}]
    assert "f2" in ks and "nope" not in ks
    with pytest.raises(KeyError):
        ks.get("nope")
    assert ks.get("nope", None) is None


def test_search_ranks_and_scores(built: Path) -> None:
    ks = KnowledgeStore.open(built)
    hits = ks.search("is the sun a star", k=3)
    assert len(hits) == 3 and hits[0].fact.id == "f1"
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert 0.0 < hits[0].score <= 1.0 + 1e-6
    assert len(ks.search("water", k=50)) == 5  # k beyond the store size: all, no padding


def test_search_filter_by_source(built: Path) -> None:
    ks = KnowledgeStore.open(built)
    gen = ks.search("water", k=10, source="generated")
    assert [h.fact.id for h in gen] == ["g1"]
    corpus = ks.search("water freezes", k=10, source="corpus")
    assert {h.fact.source for h in corpus} == {"corpus"} and len(corpus) == 3
    with pytest.raises(StoreError):
        ks.search("x", source="bogus")


def test_search_batch_matches_single(built: Path) -> None:
    ks = KnowledgeStore.open(built)
    qs = ["sun star", "thermometer temperature", "friction heat"]
    batch = ks.search_batch(qs, k=2)
    for q, hits in zip(qs, batch):
        single = ks.search(q, k=2)
        assert [h.fact.id for h in hits] == [h.fact.id for h in single]
    assert [b[0].fact.id for b in batch] == ["f1", "f3", "m1"]


def test_flat_index_is_exact_against_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(words, size=8)) + f" u{i}" for i in range(400)]
    with KnowledgeStore.create(tmp_path / "kb", encoder="hashing") as ks:
        ks.add([Fact("", t) for t in texts])
        queries = [" ".join(rng.choice(words, size=4)) for _ in range(30)]
        qv = HashingEncoder().encode(queries)
        ref = qv @ ks.vectors().T
        for row, hits in zip(ref, ks.search_vectors(qv, k=10)):
            want = np.sort(row)[::-1][:10]
            assert np.allclose([h.score for h in hits], want, atol=1e-5)
            texts_by_score = {h.fact.text for h in hits}
            strict = {texts[i] for i in np.argsort(-row)[:10] if row[i] > want[-1] + 1e-5}
            assert strict <= texts_by_score  # ties at the 10th score may go either way


def test_dedup_merges_provenance_and_returns_existing_id(built: Path) -> None:
    with KnowledgeStore.open(built, writable=True) as ks:
        r = ks.add([
            Fact("x9", "the sun   is a STAR", "corpus", [{"corpus": "other", "line": 7}]),
            Fact("x10", "The sun is a star!", "corpus", [{"corpus": "test", "line": 1}]),  # same record again
            Fact("new", "Magnets attract iron.", "corpus", [{"a": 1}]),
            Fact("new2", "magnets attract iron", "corpus", [{"a": 1}, {"b": 2}]),  # dup within the batch
        ])
        assert (r.added, r.merged) == (1, 3)
        assert r.ids == {"x9": "f1", "x10": "f1", "new": "new", "new2": "new"}
    ks = KnowledgeStore.open(built)
    assert len(ks) == 6
    assert ks.get("f1").provenance == [{"corpus": "test", "line": 1}, {"corpus": "other", "line": 7}]
    assert ks.get("new").provenance == [{"a": 1}, {"b": 2}]
    assert ks.find_text("MAGNETS attract iron.") == ks.get("new")


def test_missing_ids_are_stable_and_collisions_renamed(tmp_path: Path) -> None:
    with KnowledgeStore.create(tmp_path / "kb", encoder="hashing") as ks:
        r = ks.add([Fact("", "Ice is frozen water."), Fact("sent1", "Rocks are hard."),
                    Fact("sent1", "Metals conduct electricity.")])
        stable = fact_id_for("Ice is frozen water.")
        assert stable in ks and r.added == 3
        ids = [f.id for f in ks]
        assert ids[1] == "sent1" and ids[2].startswith("sent1#") and len(set(ids)) == 3
        assert r.ids["sent1"] == ids[2]  # a repeated input id maps to its last use


def test_add_rejects_bad_facts_without_changing_anything(built: Path) -> None:
    with KnowledgeStore.open(built, writable=True) as ks:
        with pytest.raises(InputError, match="empty text"):
            ks.add([Fact("ok", "A fine sentence."), Fact("bad", "   ")])
        with pytest.raises(InputError, match="source"):
            ks.add([Fact("bad", "text", source="weird")])
        assert len(ks) == 5 and "ok" not in ks


def test_remove_rebuilds_without_reencoding(tmp_path: Path) -> None:
    enc = CountingEncoder()
    p = tmp_path / "kb"
    with KnowledgeStore.create(p, encoder=enc) as ks:
        ks.add(FACTS)
    calls = enc.calls
    with KnowledgeStore.open(p, encoder=enc, writable=True) as ks:
        assert ks.remove(["f1", "unknown", "g1"]) == 2
        assert ks.remove(["unknown"]) == 0
        assert enc.calls == calls
    ks = KnowledgeStore.open(p, encoder=enc)
    assert [f.id for f in ks] == ["f2", "f3", "m1"]
    assert ks.search("thermometer", k=1)[0].fact.id == "f3"
    assert ks.search("sun star", k=5, source="generated") == []


def test_proofs_persist_validate_and_follow_removal(built: Path) -> None:
    with KnowledgeStore.open(built, writable=True) as ks:
        assert ks.add_proofs([Proof("q1", "p1", "h1", ("f1", "f2")), Proof("q2", "p1", "h2", ("f3",))]) == 2
        assert ks.add_proofs([Proof("q1", "p1", "h1", ("f1", "f2"))]) == 0  # same record: no change
        with pytest.raises(StoreError, match="are not facts in store"):
            ks.add_proofs([Proof("q3", "p1", "h3", ("f1", "ghost"))])
    ks = KnowledgeStore.open(built)
    assert {(p.question_id, p.leaves) for p in ks.proofs()} == {("q1", ("f1", "f2")), ("q2", ("f3",))}
    assert (built / "proofs.jsonl").is_file()
    with KnowledgeStore.open(built, writable=True) as ks:
        ks.remove(["f2"])
    assert [p.question_id for p in KnowledgeStore.open(built).proofs()] == ["q2"]


def test_export_jsonl_and_text(built: Path, tmp_path: Path) -> None:
    ks = KnowledgeStore.open(built)
    assert ks.export(tmp_path / "out.jsonl") == 5
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [Fact.from_json(r) for r in rows] == list(ks)
    ks.export(tmp_path / "out.txt", fmt="text")
    assert (tmp_path / "out.txt").read_text().splitlines()[0] == "The sun is a star."
    with pytest.raises(InputError):
        ks.export(tmp_path / "x", fmt="xml")


def test_info(built: Path) -> None:
    info = KnowledgeStore.open(built).info()
    assert info["count"] == 5 and info["encoder"]["dim"] == 384 and info["index"]["type"] == "flat"
    assert info["size_bytes"] > 0 and info["path"] == str(built) and info["unsaved_changes"] is False


def test_read_only_store_refuses_writes(built: Path) -> None:
    ks = KnowledgeStore.open(built)
    with pytest.raises(StoreError, match="read-only"):
        ks.add([Fact("z", "zzz")])
    with pytest.raises(StoreError, match="read-only"):
        ks.save()


def test_create_refuses_existing_unless_overwrite(built: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="already exists"):
        KnowledgeStore.create(built, encoder="hashing")
    other = tmp_path / "notastore"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a knowledge store"):
        KnowledgeStore.create(other, encoder="hashing", overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"
    with KnowledgeStore.create(built, encoder="hashing", overwrite=True) as ks:
        ks.add([Fact("only", "Only fact.")])
    assert [f.id for f in KnowledgeStore.open(built)] == ["only"]


def test_exception_inside_with_leaves_disk_untouched(built: Path) -> None:
    before = (built / "facts.jsonl").read_bytes()
    with pytest.raises(RuntimeError):
        with KnowledgeStore.open(built, writable=True) as ks:
            ks.add([Fact("n", "A new fact.")])
            raise RuntimeError("boom")
    assert (built / "facts.jsonl").read_bytes() == before
    assert len(KnowledgeStore.open(built)) == 5


def test_encoder_mismatch_by_name_and_dimension(built: Path) -> None:
    with pytest.raises(EncoderMismatchError, match="hashing-384"):
        KnowledgeStore.open(built, encoder="hashing-64")
    with pytest.raises(EncoderMismatchError):
        KnowledgeStore.open(built, encoder=HashingEncoder(64))
    ks = KnowledgeStore.open(built, encoder="hashing")  # same name: fine
    with pytest.raises(EncoderMismatchError, match="384"):
        ks.search_vectors(np.ones((1, 64), dtype=np.float32))


def test_forced_hnsw_index(tmp_path: Path) -> None:
    p = tmp_path / "kb"
    texts = [f"fact number {i} about topic {i % 17} and item {i % 5}" for i in range(300)]
    with KnowledgeStore.create(p, encoder="hashing", index="hnsw") as ks:
        ks.add([Fact("", t) for t in texts])
    ks = KnowledgeStore.open(p)
    assert ks.index_type == "hnsw" and ks.info()["index"]["factory"] == "HNSW32,Flat"
    assert ks.search("fact number 123 about topic 4 and item 3", k=1)[0].fact.text == texts[123]
    with KnowledgeStore.open(p, writable=True) as w:
        w.remove([ks.find_text(texts[0]).id])  # type: ignore[union-attr]
        w.add([Fact("gen", "a generated one", "generated")])
    ks = KnowledgeStore.open(p)
    assert len(ks) == 300 and ks.search("generated", k=3, source="generated")[0].fact.id == "gen"


def test_auto_index_switches_at_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_mod, "HNSW_THRESHOLD", 50)
    p = tmp_path / "kb"
    with KnowledgeStore.create(p, encoder="hashing") as ks:
        ks.add([Fact("", f"sentence {i} alpha") for i in range(40)])
        assert ks.index_type == "flat"
        ks.add([Fact("", f"sentence {i} beta") for i in range(40, 60)])
        assert ks.index_type == "hnsw" and ks._index.ntotal == 60
    assert json.loads((p / "manifest.json").read_text())["index"]["type"] == "hnsw"
    with KnowledgeStore.open(p, writable=True) as ks:
        ks.remove([f.id for f in list(ks)[:20]])
        assert ks.index_type == "flat"
    with KnowledgeStore.open(p, writable=True) as ks:
        ks.reindex("hnsw")
    assert KnowledgeStore.open(p).index_type == "hnsw"


@pytest.mark.data
def test_reads_the_real_entailmentbank_corpus(data_dir: Path) -> None:
    from retrieval.readers import read_facts

    facts = read_facts(data_dir / "entailmentbank" / "worldtree_corpus_sentences_extended.json")
    assert len(facts) == 11940  # 11,941 entries less the DUMMY placeholder
    assert len({f.id for f in facts}) == len(facts)
    assert all(f.provenance == [{"corpus": "worldtree", "uuid": f.id}] for f in facts[:100])
    assert len({normalise_text(f.text) for f in facts}) == 11471  # what the store keeps after dedup


@pytest.mark.slow
def test_real_minilm_store_finds_paraphrases(tmp_path: Path) -> None:
    facts = [Fact("evap", "evaporation means a liquid changes into a gas"),
             Fact("sun", "the sun is the source of light for plants"),
             Fact("mag", "a magnet attracts objects made of iron"),
             Fact("therm", "a thermometer is used to measure temperature"),
             Fact("grav", "gravity pulls objects toward the earth")]
    with KnowledgeStore.create(tmp_path / "kb") as ks:
        ks.add(facts)
    ks = KnowledgeStore.open(tmp_path / "kb")
    assert ks.info()["encoder"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "dim": 384}
    queries = ["why does a puddle dry up on a sunny day", "which tool tells how hot the air is",
               "what makes a dropped ball fall down", "what sticks to a magnet"]
    assert [hits[0].fact.id for hits in ks.search_batch(queries, k=1)] == ["evap", "therm", "grav", "mag"]


def test_open_or_create_and_exists(tmp_path: Path) -> None:
    p = tmp_path / "kb"
    assert not KnowledgeStore.exists(p)
    with KnowledgeStore.open_or_create(p, encoder="hashing") as ks:
        ks.add(FACTS[:2])
    assert KnowledgeStore.exists(p)
    with KnowledgeStore.open_or_create(p, encoder="hashing-64") as ks:  # an existing store keeps its encoder
        assert ks.encoder.name == "hashing-384" and len(ks) == 2
        ks.add(FACTS[2:])
    assert len(KnowledgeStore.open(p)) == 5
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(StoreError, match="not a knowledge store"):
        KnowledgeStore.open_or_create(tmp_path / "notes", encoder="hashing")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"


def test_other_commands_recognise_a_store_by_its_owner_file(built: Path) -> None:
    from core.outputs import check_dir_output

    check_dir_output(built, "store")  # a command that makes stores may replace it
    with pytest.raises(InputError, match="holds a store"):
        check_dir_output(built, "run")
