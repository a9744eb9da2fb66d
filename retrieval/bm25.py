"""A BM25 (sparse, lexical) index over facts, beside a store's dense FAISS index.

Dense MiniLM vectors find paraphrases but blur exact terms ("igneous" vs "sedimentary"); BM25 finds
the facts that share the query's rare words. `retrieval.prover` fuses the two rankings.

The index is built with the `bm25s` package from (id, text) pairs. bm25s has no incremental update,
so `add`/`remove` change the document list and mark the index stale; the next search (or `save`)
rebuilds it (about a second for the 11,471 WorldTree facts on this CPU). On disk it is one folder,
`<directory>/bm25/`: bm25s's matrices plus `docs.jsonl` (the ids and texts, so that a loaded index
can still be updated) and `bm25.json` (format version, tokenizer, parameters).

Tokens: lower-cased alphanumeric words minus English stop words, with a light plural strip
("stars" -> "star", "bodies" -> "body"), the same for documents and queries.
"""
from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError, StoreError
from core.outputs import swap_dir

DIRNAME = "bm25"
FORMAT_VERSION = 1
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    ["a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "with", "from", "and", "or", "but", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "as", "into", "than", "then", "so", "such", "can", "could", "may", "might", "will", "would", "should", "do", "does", "did", "has", "have", "had", "not", "no", "if", "which", "who", "whom", "what", "where", "how", "why", "there", "their", "they", "them", "he", "she", "his", "her", "we", "our", "you", "your", "i", "me", "my", "some", "any", "each", "every", "all", "also", "about", "following", "best", "most", "likely"]
)


def tokenize(text: str) -> list[str]:
    """BM25 tokens of one text (documents and queries alike)."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        out.append(w)
    return out


class BM25Index:
    """BM25 over (id, text) documents; ids are unique (a repeated id replaces the earlier text)."""

    def __init__(self, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = float(k1), float(b)
        self._docs: dict[str, str] = {}
        self._ids: list[str] = []
        self._model: Any = None  # bm25s.BM25, None while stale

    @classmethod
    def build(cls, docs: Iterable[tuple[str, str]], k1: float = 1.2, b: float = 0.75) -> BM25Index:
        """An index over `docs`, (id, text) pairs (e.g. `(f.id, f.text) for f in store`)."""
        ix = cls(k1, b)
        ix.add(docs)
        ix._rebuild()
        return ix

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def add(self, docs: Iterable[tuple[str, str]]) -> int:
        """Add (or replace) documents; returns how many ids were new. The index rebuilds on next use."""
        new = 0
        for doc_id, text in docs:
            if not isinstance(doc_id, str) or not doc_id:
                raise InputError(f"a BM25 document needs a non-empty string id, got {doc_id!r}")
            new += doc_id not in self._docs
            self._docs[doc_id] = str(text)
        self._model = None
        return new

    def remove(self, ids: Iterable[str]) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many were removed."""
        gone = 0
        for doc_id in ids:
            if self._docs.pop(doc_id, None) is not None:
                gone += 1
        if gone:
            self._model = None
        return gone

    def _rebuild(self) -> None:
        import bm25s

        self._ids = list(self._docs)
        model = bm25s.BM25(k1=self.k1, b=self.b)
        if self._ids:
            # An empty token list would break bm25s's vocabulary: such a fact gets a placeholder token.
            model.index([tokenize(self._docs[i]) or ["__empty__"] for i in self._ids], show_progress=False)
        self._model = model

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """The k best (id, BM25 score) for one query, best first; [] when no query word is indexed."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[tuple[str, float]]]:
        if isinstance(queries, str):
            raise TypeError("search_batch() takes a sequence of query strings")
        if k < 1:
            raise StoreError(f"k must be at least 1, got {k}")
        if self._model is None:
            self._rebuild()
        if not self._ids:
            return [[] for _ in queries]
        vocab = self._model.vocab_dict
        out: list[list[tuple[str, float]]] = []
        kk = min(k, len(self._ids))
        for q in queries:
            toks = [t for t in tokenize(q) if t in vocab]
            if not toks:
                out.append([])
                continue
            scores = self._model.get_scores(toks)
            top = np.argpartition(-scores, kk - 1)[:kk] if kk < len(scores) else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            out.append([(self._ids[int(i)], float(scores[i])) for i in top if scores[i] > 0])
        return out

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write `<directory>/bm25/` (written aside, then renamed into place); returns its path."""
        if self._model is None:
            self._rebuild()
        target = Path(directory) / DIRNAME
        tmp = Path(directory) / f".{DIRNAME}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            if self._ids:
                self._model.save(str(tmp / "model"), show_progress=False)
            with open(tmp / "docs.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps({"id": i, "text": self._docs[i]}, ensure_ascii=False) + "\n" for i in self._ids)
            meta = {"format": FORMAT_VERSION, "k1": self.k1, "b": self.b, "docs": len(self._ids),
                    "tokenizer": "retrieval.bm25.tokenize v1"}
            (tmp / "bm25.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            swap_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index | None:
        """The index saved in `<directory>/bm25/`, or None when there is none (build one instead)."""
        import bm25s

        src = Path(directory) / DIRNAME
        if not (src / "bm25.json").is_file():
            return None
        try:
            meta = json.loads((src / "bm25.json").read_text(encoding="utf-8"))
            docs = [json.loads(line) for line in (src / "docs.jsonl").read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        except (OSError, ValueError) as e:
            raise StoreError(f"unreadable BM25 index: {e}") from None
        if meta.get("format") != FORMAT_VERSION or meta.get("docs") != len(docs):
            raise StoreError(f"BM25 index {src} has format {meta.get('format')} and {len(docs)} of "
                             f"{meta.get('docs')} documents: rebuild it")
        ix = cls(meta.get("k1", 1.2), meta.get("b", 0.75))
        ix._docs = {d["id"]: d["text"] for d in docs}
        ix._ids = [d["id"] for d in docs]
        if ix._ids:
            ix._model = bm25s.BM25.load(str(src / "model"), show_progress=False)
        else:
            ix._model = None
        return ix
