"""The BM25 index: lexical ranking, add/remove, save/load beside a store, bad input."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError, StoreError
from retrieval.bm25 import BM25Index, tokenize

DOCS = [
    ("d1", "igneous rocks form when magma cools"),
    ("d2", "sedimentary rocks form from layers of sediment"),
    ("d3", "a magnet attracts iron nails"),
    ("d4", "plants need sunlight to make food"),
]


def test_tokenize_drops_stop_words_and_plurals() -> None:
    assert tokenize("The rocks are Formed by bodies of MAGMA.") == ["rock", "formed", "body", "magma"]
    assert tokenize("glass is a gas") == ["glass", "gas"]  # -ss and -as/-is words keep their s


def test_rare_word_ranks_its_document_first() -> None:
    ix = BM25Index.build(DOCS)
    hits = ix.search("which rocks come from magma", k=4)
    assert hits[0][0] == "d1" and hits[0][1] > 0
    assert {h[0] for h in hits} <= {"d1", "d2"}  # documents without a query word are not returned
    assert ix.search("the of and", k=3) == []  # stop words only


def test_add_replace_and_remove_rebuild_on_use() -> None:
    ix = BM25Index.build(DOCS)
    assert ix.add([("d5", "volcanoes erupt magma"), ("d1", "basalt is dark")]) == 1
    assert len(ix) == 5 and ix.search("basalt")[0][0] == "d1"
    assert ix.search("igneous") == []  # d1's old text is gone
    assert ix.remove(["d5", "nope"]) == 1 and "d5" not in ix
    assert all(h[0] != "d5" for h in ix.search("volcanoes erupt magma", k=5))


def test_save_load_roundtrip(tmp_path: Path) -> None:
    ix = BM25Index.build(DOCS, k1=1.5, b=0.6)
    where = ix.save(tmp_path)
    assert where == tmp_path / "bm25" and (where / "bm25.json").is_file()
    back = BM25Index.load(tmp_path)
    assert back is not None and len(back) == 4 and (back.k1, back.b) == (1.5, 0.6)
    assert back.search_batch(["magnet iron", "sunlight"], k=2) == ix.search_batch(["magnet iron", "sunlight"], k=2)
    back.add([("d9", "iron rusts in water")])  # a loaded index can still be updated
    assert back.search("rusts")[0][0] == "d9"
    ix.save(tmp_path)  # saving again replaces the folder whole
    assert len(BM25Index.load(tmp_path)) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bm25")]


def test_missing_empty_and_bad(tmp_path: Path) -> None:
    assert BM25Index.load(tmp_path) is None
    empty = BM25Index.build([])
    assert empty.search_batch(["anything"], k=3) == [[]]
    empty.save(tmp_path / "e")
    assert len(BM25Index.load(tmp_path / "e")) == 0
    with pytest.raises(InputError, match="non-empty string id"):
        BM25Index.build([("", "text")])
    with pytest.raises(StoreError, match="k must be"):
        BM25Index.build(DOCS).search("magma", k=0)
    (tmp_path / "bm25" / "x").mkdir(parents=True)
    (tmp_path / "bm25" / "bm25.json").write_text('{"format": 99, "docs": 0}')
    (tmp_path / "bm25" / "docs.jsonl").write_text("")
    with pytest.raises(StoreError, match="rebuild"):
        BM25Index.load(tmp_path)


def test_store_keeps_its_bm25_index_in_step(tmp_path: Path) -> None:
    from core.types import Fact
    from retrieval.encoder import HashingEncoder
    from retrieval.store import KnowledgeStore

    ks = KnowledgeStore.create(tmp_path / "s", encoder=HashingEncoder())
    ks.add([Fact(i, t) for i, t in DOCS])
    assert ks.bm25.search("magma")[0][0] == "d1"
    ks.add([Fact("d5", "volcanoes erupt hot magma")])
    assert "d5" in ks.bm25  # add updates the index already built
    ks.remove(["d1"])
    assert "d1" not in ks.bm25 and ks.bm25.search("igneous") == []
    ks.save()
    ks.close()
    assert (tmp_path / "s" / "bm25" / "bm25.json").is_file()
    back = KnowledgeStore.open(tmp_path / "s")
    assert back._bm25 is not None and len(back.bm25) == 4  # loaded from bm25/, not rebuilt
    assert back.bm25.search("volcanoes")[0][0] == "d5"
    back.close()
    # A store whose bm25/ does not match its facts (written by another version) rebuilds it on use.
    w = KnowledgeStore.open(tmp_path / "s", writable=True)
    w.add([Fact("d6", "the moon orbits the earth")])
    w._bm25 = None
    w.save()  # small stores build it on save
    w.close()
    assert len(BM25Index.load(tmp_path / "s")) == 5
