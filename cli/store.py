"""`microtheory store build|add|search|info|remove|export|repair`: the FAISS knowledge store from the shell.

Each command parses its options and calls one plain function of `retrieval.store.operations`
(`build_store`, `add_to_store`, ...), which scripts and tests may call directly. Heavy imports
happen inside the commands.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from cli.common import echo_json, engine_option, registry_help, workers_option
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
    engine: str = engine_option(),
    workers: Optional[int] = workers_option(),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Build a store from input files (`--engine ray`: encoded by worker actors, indexed and saved here).

    Example: microtheory store build ../shared/data/entailmentbank/worldtree_corpus_sentences_extended.json --out runs/worldtree
    """
    from core.engine import make_engine
    from retrieval.store.operations import BuildOptions, InputSpec, build_store

    summary = build_store(InputSpec(inputs, fmt, split, source.value, name), out,
                          BuildOptions(encoder, index.value, force, batch_size, progress=not json_out,
                                       engine=make_engine(engine, workers)))
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
    engine: str = engine_option(),
    workers: Optional[int] = workers_option(),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Add facts to a store; a sentence already stored merges its provenance instead of adding a copy.

    Example: microtheory store add runs/science generated.jsonl --source generated
    """
    from core.engine import make_engine
    from retrieval.store.operations import BuildOptions, InputSpec, add_to_store

    s = add_to_store(store, InputSpec(inputs, fmt, split, source.value, name),
                     BuildOptions(encoder, batch_size=batch_size, progress=not json_out,
                                  engine=make_engine(engine, workers)))
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
    from retrieval.store.operations import search_store

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
    from retrieval.store.operations import store_info

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
    from retrieval.store.operations import remove_from_store

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
    from retrieval.store.operations import export_store

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
    from retrieval.store.operations import repair

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
