"""`microtheory store build|add|search|info|remove|export|repair`: the FAISS knowledge store from the shell.

Each command parses its options and calls one plain function below (`build_store`, `add_to_store`,
...), which scripts and tests may call directly. Heavy imports happen inside the functions.
"""
from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer

from cli.common import echo_json, registry_help
from retrieval.readers import READERS

app = typer.Typer(
    help="Build, search and maintain knowledge stores (sentences + provenance in a FAISS index).\n\n"
    "Example: microtheory store build corpora/science_corpus.jsonl --out runs/science && "
    "microtheory store search runs/science 'what makes water evaporate'",
    no_args_is_help=True,
)


class Source(str, Enum):
    corpus = "corpus"
    generated = "generated"
    microtheory = "microtheory"


class IndexType(str, Enum):
    auto = "auto"
    flat = "flat"
    hnsw = "hnsw"


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    text = "text"


# --------------------------------------------------------------------------- plain functions


def facts_from_inputs(
    inputs: Sequence[Path],
    fmt: str = "auto",
    split: bool = False,
    source: str = "corpus",
    name: str | None = None,
) -> list[Any]:
    """Every input file turned into Facts, all parsed before any store is touched (a bad line stops
    the run with file:line and nothing is written). New input kinds (e.g. entailment trees) hook in here."""
    from core.errors import InputError
    from retrieval.readers import read_sources

    facts = read_sources(inputs, fmt=fmt, split=split, source=source, name=name)
    if not facts:
        raise InputError("the inputs hold no facts")
    return facts


def build_store(
    inputs: Sequence[Path],
    out: Path,
    fmt: str = "auto",
    split: bool = False,
    encoder: str | None = None,
    source: str = "corpus",
    name: str | None = None,
    force: bool = False,
    index: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Create a store at `out` from the inputs (replacing an existing store only with `force`)."""
    from retrieval.store import KnowledgeStore

    t0 = time.perf_counter()
    facts = facts_from_inputs(inputs, fmt=fmt, split=split, source=source, name=name)
    with KnowledgeStore.create(out, encoder=encoder, index=index, overwrite=force) as ks:
        res = ks.add(facts, batch_size=batch_size, progress=progress)
        info = ks.info()
    return {"store": str(out), "inputs": [str(p) for p in inputs], "read": len(facts), "added": res.added,
            "merged": res.merged, "count": info["count"], "encoder": info["encoder"],
            "index": info["index"]["type"], "seconds": round(time.perf_counter() - t0, 3)}


def add_to_store(
    store: Path,
    inputs: Sequence[Path],
    fmt: str = "auto",
    split: bool = False,
    encoder: str | None = None,
    source: str = "corpus",
    name: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Add the inputs' facts to an existing store (duplicates merge their provenance)."""
    from retrieval.store import KnowledgeStore

    t0 = time.perf_counter()
    facts = facts_from_inputs(inputs, fmt=fmt, split=split, source=source, name=name)
    with KnowledgeStore.open(store, encoder=encoder, writable=True) as ks:
        before = len(ks)
        res = ks.add(facts, batch_size=batch_size, progress=progress)
        count = len(ks)
    return {"store": str(store), "inputs": [str(p) for p in inputs], "read": len(facts), "added": res.added,
            "merged": res.merged, "before": before, "count": count,
            "seconds": round(time.perf_counter() - t0, 3)}


def search_store(
    store: Path, queries: Sequence[str], k: int = 10, source: str | None = None, encoder: str | None = None
) -> list[dict[str, Any]]:
    """Top-k facts for each query: [{query, hits: [{score, id, text, source, provenance}]}]."""
    from retrieval.store import KnowledgeStore

    ks = KnowledgeStore.open(store, encoder=encoder)
    results = ks.search_batch(list(queries), k=k, source=source)
    return [{"query": q, "hits": [h.to_json() for h in hits]} for q, hits in zip(queries, results)]


def store_info(store: Path) -> dict[str, Any]:
    from retrieval.store import KnowledgeStore

    return KnowledgeStore.open(store).info()


def remove_from_store(store: Path, ids: Sequence[str]) -> dict[str, Any]:
    from retrieval.store import KnowledgeStore

    with KnowledgeStore.open(store, writable=True) as ks:
        unknown = [i for i in ids if i not in ks]
        removed = ks.remove(ids)
        count = len(ks)
    return {"store": str(store), "removed": removed, "unknown": unknown, "count": count}


def export_store(store: Path, out: Path, fmt: str = "jsonl") -> dict[str, Any]:
    """Facts from facts.jsonl (works on a store whose index is damaged); `problems` says what is wrong."""
    from retrieval.store import export_facts

    n, problems = export_facts(store, out, fmt=fmt)
    return {"store": str(store), "out": str(out), "format": fmt, "facts": n, "problems": problems}


def repair(store: Path, encoder: str | None = None, force: bool = False, progress: bool = True) -> dict[str, Any]:
    from retrieval.store import repair_store

    t0 = time.perf_counter()
    res = repair_store(store, encoder=encoder, force=force, progress=progress).to_json()
    return {**res, "seconds": round(time.perf_counter() - t0, 3)}


# --------------------------------------------------------------------------- commands

_FORMAT_HELP = registry_help("Input format", READERS, ("auto (guessed from the extension and content)",))


@app.command("build")
def build_cmd(
    inputs: List[Path] = typer.Argument(..., help="Input files (text, docs, facts JSONL, EB corpus JSON)."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder to create."),
    fmt: str = typer.Option("auto", "--format", "-f", metavar="NAME", help=_FORMAT_HELP),
    split: bool = typer.Option(False, "--split", help="Split texts into sentences with spaCy."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e",
                                          help="Sentence-transformers model name or folder, or 'hashing' "
                                               "(default: $MICROTHEORY_ENCODER or the packaged MiniLM)."),
    source: Source = typer.Option(Source.corpus, "--source", help="Source of facts that name none."),
    name: Optional[str] = typer.Option(None, "--name", help="Corpus name recorded in provenance (default: file stem)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing store at --out."),
    index: IndexType = typer.Option(IndexType.auto, "--index",
                                    help="auto: exact below 50,000 facts, HNSW above; flat; hnsw."),
    batch_size: int = typer.Option(64, "--batch-size", help="Encoder batch size."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Build a store from input files.

    Example: microtheory store build ../shared/data/entailmentbank/worldtree_corpus_sentences_extended.json --out runs/worldtree
    """
    summary = build_store(inputs, out, fmt=fmt, split=split, encoder=encoder, source=source.value,
                          name=name, force=force, index=index.value, batch_size=batch_size, progress=not json_out)
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"built {summary['store']}: {summary['count']} facts ({summary['added']} added, "
                   f"{summary['merged']} duplicates merged) from {summary['read']} read in "
                   f"{summary['seconds']:.1f} s; encoder {summary['encoder']['name']} "
                   f"({summary['encoder']['dim']}-d), index {summary['index']}")


@app.command("add")
def add_cmd(
    store: Path = typer.Argument(..., help="Existing store folder."),
    inputs: List[Path] = typer.Argument(..., help="Input files to add."),
    fmt: str = typer.Option("auto", "--format", "-f", metavar="NAME", help=_FORMAT_HELP),
    split: bool = typer.Option(False, "--split", help="Split texts into sentences with spaCy."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Must be the store's encoder (default: it)."),
    source: Source = typer.Option(Source.corpus, "--source", help="Source of facts that name none."),
    name: Optional[str] = typer.Option(None, "--name", help="Corpus name recorded in provenance."),
    batch_size: int = typer.Option(64, "--batch-size", help="Encoder batch size."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Add facts to a store; a sentence already stored merges its provenance instead of adding a copy.

    Example: microtheory store add runs/science generated.jsonl --source generated
    """
    s = add_to_store(store, inputs, fmt=fmt, split=split, encoder=encoder, source=source.value, name=name,
                     batch_size=batch_size, progress=not json_out)
    if json_out:
        echo_json(s)
    else:
        typer.echo(f"{s['store']}: {s['added']} added, {s['merged']} duplicates merged; "
                   f"{s['before']} -> {s['count']} facts")


@app.command("search")
def search_cmd(
    store: Path = typer.Argument(..., help="Store folder."),
    queries: List[str] = typer.Argument(..., help="One or more query texts."),
    k: int = typer.Option(10, "-k", "--k", help="Results per query."),
    source: Optional[Source] = typer.Option(None, "--source", help="Only facts of this source."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Must be the store's encoder (default: it)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON: [{query, hits: [...]}]."),
) -> None:
    """Search a store by meaning.

    Example: microtheory store search runs/science "why do puddles disappear" -k 5 --source corpus
    """
    results = search_store(store, queries, k=k, source=source.value if source else None, encoder=encoder)
    if json_out:
        echo_json(results)
        return
    for r in results:
        typer.echo(f"query: {r['query']}")
        if not r["hits"]:
            typer.echo("  (no results)")
        for i, h in enumerate(r["hits"], 1):
            typer.echo(f"  {i:>2}. {h['score']:.3f}  {h['text']}  [{h['id']}, {h['source']}]")


@app.command("info")
def info_cmd(
    store: Path = typer.Argument(..., help="Store folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Show a store's manifest: count, encoder, index, sources, versions.

    Example: microtheory store info runs/science --json
    """
    info = store_info(store)
    if json_out:
        echo_json(info)
        return
    typer.echo(f"store:    {info['path']}")
    typer.echo(f"facts:    {info['count']}  ({', '.join(f'{k} {v}' for k, v in info['sources'].items()) or 'none'})")
    typer.echo(f"proofs:   {info['proofs']}")
    typer.echo(f"encoder:  {info['encoder']['name']} ({info['encoder']['dim']}-d)")
    typer.echo(f"index:    {info['index']['type']} ({info['index']['factory']}; mode {info['index']['mode']})")
    typer.echo(f"format:   version {info['format_version']}; created {info['created']}, updated {info['updated']}")
    typer.echo(f"size:     {info['size_bytes'] / 1e6:.2f} MB")


@app.command("remove")
def remove_cmd(
    store: Path = typer.Argument(..., help="Store folder."),
    ids: List[str] = typer.Argument(..., help="Fact ids to remove."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Remove facts by id (and proofs that used them).

    Example: microtheory store remove runs/science sci-0001 sci-0002
    """
    s = remove_from_store(store, ids)
    if json_out:
        echo_json(s)
        return
    typer.echo(f"{s['store']}: removed {s['removed']}; {s['count']} facts left")
    if s["unknown"]:
        typer.echo(f"not in the store: {', '.join(s['unknown'])}", err=True)


@app.command("export")
def export_cmd(
    store: Path = typer.Argument(..., help="Store folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file."),
    fmt: ExportFormat = typer.Option(ExportFormat.jsonl, "--format", "-f",
                                     help="jsonl (facts JSONL with provenance) or text (a sentence a line)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write a store's facts to a file.

    Example: microtheory store export runs/science --out science_facts.jsonl
    """
    s = export_store(store, out, fmt=fmt.value)
    if json_out:
        echo_json(s)
    else:
        typer.echo(f"wrote {s['facts']} facts to {s['out']} ({s['format']})")
    if s["problems"]:
        typer.echo(f"warning: store {store} is damaged ({'; '.join(s['problems'])}); the facts were exported "
                   f"from facts.jsonl. Rebuild the index with `microtheory store repair {store}`", err=True)


@app.command("repair")
def repair_cmd(
    store: Path = typer.Argument(..., help="Store folder."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e",
                                          help="Only when manifest.json is lost: the encoder the store was built with."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the store looks healthy."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Rebuild a store's index and manifest from its facts.jsonl (re-encoding every fact).

    Run it when info, search or export says the store is damaged (e.g. a truncated index.faiss).
    Example: microtheory store repair runs/science
    """
    s = repair(store, encoder=encoder, force=force, progress=not json_out)
    if json_out:
        echo_json(s)
    elif not s["repaired"]:
        typer.echo(f"{store}: healthy, nothing to repair (--force rebuilds the index anyway)")
    else:
        found = "; ".join(s["problems"]) or "none (forced)"
        typer.echo(f"repaired {store}: index rebuilt from {s['facts']} facts with {s['encoder']} in "
                   f"{s['seconds']:.1f} s; problems found: {found}")
        if s["proofs_dropped"]:
            typer.echo(f"dropped {s['proofs_dropped']} proof records that were unreadable or cite missing facts",
                       err=True)
