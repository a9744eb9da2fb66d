"""`microtheory distill STORE ...`, `distill compare STORE ...`, `distill build-store TREES ... --out STORE`.

Each command parses options and calls one library function (`microtheory.distill.distill`,
`microtheory.distill.compare`, `build_store_from_trees` below). Heavy imports happen inside.
"""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from cli.common import default_group, echo_json

app = typer.Typer(
    cls=default_group("run"),
    help="Distil a knowledge store into a microtheory by graph coverage.\n\n"
    "Example: microtheory distill runs/eb_store --budget 500 --strategy qc-exact --out runs/mt500",
    no_args_is_help=True,
)


class Strategy(str, Enum):
    random = "random"
    usage = "usage"
    qc_greedy = "qc-greedy"
    qc_exact = "qc-exact"
    pc = "pc"


class TreeFormat(str, Enum):
    auto = "auto"
    eb_train = "eb-train"
    eb_dev = "eb-dev"
    jsonl = "jsonl"


def read_trees(path: Path, fmt: str = "auto") -> list[Any]:
    """Trees from an EntailmentBank angles train file, a dev file with metadata, or the project's JSONL."""
    from microtheory.datasets import read_eb_dev, read_eb_train
    from microtheory.trees import read_trees_jsonl
    from core.errors import InputError

    if fmt == "auto":
        try:
            with open(path, encoding="utf-8") as fh:
                first = next((ln for ln in fh if ln.strip()), "")
            keys = set(json.loads(first)) if first else set()
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read trees: {e}", str(path)) from None
        fmt = "eb-train" if {"input", "output"} <= keys else "jsonl" if "sentences" in keys else \
            "eb-dev" if {"context", "proof"} <= keys else ""
        if not fmt:
            raise InputError("unknown tree format (expected EntailmentBank train/dev or project trees JSONL); "
                             "pass --format", str(path))
    reader = {"eb-train": read_eb_train, "eb-dev": read_eb_dev, "jsonl": read_trees_jsonl}[fmt]
    return reader(path)


def read_corpus_texts(path: Path) -> list[str]:
    """Sentences of a general corpus: EntailmentBank/WorldTree corpus JSON (uuid -> text), facts JSONL, or text lines."""
    from retrieval.readers import read_sources

    return [f.text for f in read_sources([path])]


def build_store_from_trees(trees: list[Path], out: Path, fmt: str = "auto", encoder: str | None = None,
                           force: bool = False, generator: str = "entailmentbank", progress: bool = True) -> dict:
    """Create a knowledge store holding every leaf and intermediate conclusion of the trees, with their proofs."""
    from microtheory.trees_to_store import add_trees
    from retrieval.store import KnowledgeStore

    all_trees = [t for p in trees for t in read_trees(p, fmt)]
    ks = KnowledgeStore.create(out, encoder=encoder, overwrite=force)
    with ks:
        counts = add_trees(ks, all_trees, generator=generator, progress=progress)
        ks.save()
    return {"store": str(out), **counts, "count": len(ks)}


@app.command("run")
def run_cmd(
    store: Path = typer.Argument(..., help="Knowledge store folder (with proofs)."),
    budget: int | None = typer.Option(None, "--budget", "-n", help="Number of facts to keep."),
    target: float | None = typer.Option(None, "--target", help="Instead of a budget: question coverage to reach (0-1]."),
    strategy: Strategy = typer.Option(Strategy.qc_greedy, "--strategy", "-s", help="Selection strategy."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Microtheory directory to write."),
    seed: int = typer.Option(0, "--seed", help="Seed (random strategy, p-relevance subsamples)."),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds for qc-exact's solver."),
    fill: bool = typer.Option(False, "--fill", help="Spend budget a strategy leaves unused on the most-used facts."),
    canonicalise: bool = typer.Option(False, "--canonicalise", help="Merge mutually entailing facts first."),
    scorer: str | None = typer.Option(None, "--scorer", help="Entailment scorer folder or 'overlap' (default: shipped)."),
    encoder: str | None = typer.Option(None, "--encoder", help="Encoder for canonicalisation candidates."),
    sim_threshold: float = typer.Option(0.9, "--sim-threshold", help="Cosine threshold for merge candidates."),
    corpus: Path | None = typer.Option(None, "--corpus", help="General corpus file: facts it holds are free."),
    heldout: Path | None = typer.Option(None, "--heldout", help="Held-out trees for the p-relevance study."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Select a microtheory from a store's proofs.

    Example: microtheory distill runs/eb_store --budget 500 --strategy qc-exact --out runs/mt500
    """
    from microtheory.distill import distill

    sc = enc = None
    if canonicalise:
        from retrieval.encoder import get_encoder
        from retrieval.entail import load_scorer

        sc, enc = load_scorer(scorer), get_encoder(encoder)
    res = distill(store, budget=budget, strategy=strategy.value, out=out, target=target, seed=seed,
                  time_limit=time_limit, fill=fill, canonical=canonicalise, scorer=sc, encoder=enc,
                  sim_threshold=sim_threshold, corpus_texts=read_corpus_texts(corpus) if corpus else None,
                  heldout=read_trees(heldout) if heldout else None, overwrite=force or out is None)
    r = res.selection.report
    if json_out:
        echo_json({"out": str(res.out) if res.out else None, **res.report})
        return
    extra = f", gap {r['gap']}" + (" (time limit reached)" if r.get("timed_out") else "") if "gap" in r else ""
    typer.echo(f"{strategy.value}: {r['size']} facts cover {r['questions_covered']}/{r['questions_total']} questions "
               f"({100 * r['question_coverage']:.1f}%), {r['proofs_complete']}/{r['proofs_total']} proofs complete, "
               f"{r['time_s']:.2f} s{extra}")
    if "canonicalisation" in res.report:
        c = res.report["canonicalisation"]
        typer.echo(f"canonicalisation: {c['facts_merged']} facts merged into {c['groups_merged']} groups "
                   f"({c['candidates']} candidates, {c['confirmed_pairs']} confirmed both ways)")
    if res.out:
        typer.echo(f"wrote {res.out}")


@app.command("compare")
def compare_cmd(
    store: Path = typer.Argument(..., help="Knowledge store folder (with proofs)."),
    budgets: str = typer.Option("100,250,500,1000,2000", "--budgets", help="Comma-separated budgets."),
    strategies: str = typer.Option(",".join(s.value for s in Strategy), "--strategies", help="Comma-separated strategies."),
    seed: int = typer.Option(0, "--seed"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds for qc-exact's solver per budget."),
    corpus: Path | None = typer.Option(None, "--corpus", help="General corpus file: facts it holds are free."),
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Run every strategy at several budgets and print a table.

    Example: microtheory distill compare runs/eb_store --budgets 100,250,500
    """
    from microtheory.distill import compare
    from core.errors import InputError

    try:
        ns = [int(x) for x in budgets.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--budgets must be comma-separated integers, got {budgets!r}") from None
    rows = compare(store, ns, [s.strip() for s in strategies.split(",") if s.strip()], seed=seed,
                   time_limit=time_limit, corpus_texts=read_corpus_texts(corpus) if corpus else None)
    if json_out:
        echo_json(rows)
        return
    typer.echo(f"{'budget':>7} {'strategy':<10} {'size':>6} {'questions':>10} {'coverage':>9} {'proofs':>7} {'time s':>7}  note")
    for r in rows:
        note = ""
        if "gap" in r:
            note = f"gap {r['gap']}" + (" TIME LIMIT" if r.get("timed_out") else "")
        typer.echo(f"{r['budget']:>7} {r['strategy']:<10} {r['size']:>6} {r['questions_covered']:>10} "
                   f"{100 * r['question_coverage']:>8.1f}% {r['proofs_complete']:>7} {r['time_s']:>7.2f}  {note}")


@app.command("build-store")
def build_store_cmd(
    trees: list[Path] = typer.Argument(..., help="Tree files (EntailmentBank train/dev or project trees JSONL)."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder to create."),
    fmt: TreeFormat = typer.Option(TreeFormat.auto, "--format", "-f", help="Tree file format."),
    encoder: str | None = typer.Option(None, "--encoder", "-e", help="Encoder name or folder, or 'hashing'."),
    generator: str = typer.Option("entailmentbank", "--generator", help="Generator name recorded in provenance."),
    force: bool = typer.Option(False, "--force", help="Replace an existing store."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Build a knowledge store from entailment trees: every leaf and intermediate is a fact, each tree a proof.

    Example: microtheory distill build-store ../shared/data/entailmentbank/angles/task_1/train.jsonl --out runs/eb_store
    """
    summary = build_store_from_trees(trees, out, fmt=fmt.value, encoder=encoder, force=force, generator=generator,
                                     progress=not json_out)
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"built {summary['store']}: {summary['count']} facts from {summary['trees']} trees "
                   f"({summary['facts_merged']} duplicate texts merged), {summary['proofs_added']} proofs")
