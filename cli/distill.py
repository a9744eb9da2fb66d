"""`microtheory distill STORE ...`, `distill compare STORE ...`, `distill build-store TREES ... --out STORE`.

Each command parses options and calls one library function (`microtheory.distill.distill`,
`microtheory.distill.compare`, `microtheory.tree_files.build_store_from_trees`). Choices and their
help come from the library's registries (`STRATEGIES`, `TREE_FORMATS`), imported when this module loads;
other heavy imports happen inside the commands.
"""
from __future__ import annotations

from pathlib import Path

import typer

from cli.common import default_group, echo_json, registry_help
from microtheory.distill.strategies import STRATEGIES
from microtheory.tree_files import TREE_FORMATS

app = typer.Typer(
    cls=default_group("run"),
    help="Distil a knowledge store into a microtheory by graph coverage.\n\n"
    "Example: microtheory distill runs/eb_store --budget 500 --strategy qc-exact --out runs/mt500",
    no_args_is_help=True,
)


def read_corpus_texts(path: Path) -> list[str]:
    """Sentences of a general corpus: EntailmentBank/WorldTree corpus JSON (uuid -> text), facts JSONL, or text lines."""
    from retrieval.readers import read_sources

    return [f.text for f in read_sources([path])]


@app.command("run")
def run_cmd(
    store: Path = typer.Argument(..., help="Knowledge store folder (with proofs)."),
    budget: int | None = typer.Option(None, "--budget", "-n", help="Number of facts to keep."),
    target: float | None = typer.Option(None, "--target", help="Instead of a budget: question coverage to reach (0-1]."),
    strategy: str = typer.Option("qc-greedy", "--strategy", "-s", metavar="NAME",
                                 help=registry_help("Selection strategy", STRATEGIES)),
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
    from microtheory.distill import DistillConfig, distill
    from microtheory.tree_files import read_trees

    sc = enc = None
    if canonicalise:
        from retrieval.encoder import get_encoder
        from retrieval.entail import load_scorer

        sc, enc = load_scorer(scorer), get_encoder(encoder)
    config = DistillConfig(strategy=strategy, budget=budget, target=target, seed=seed, time_limit=time_limit,
                           fill=fill, canonical=canonicalise, sim_threshold=sim_threshold,
                           overwrite=force or out is None)
    res = distill(store, config, out=out, scorer=sc, encoder=enc,
                  corpus_texts=read_corpus_texts(corpus) if corpus else None,
                  heldout=read_trees(heldout) if heldout else None)
    if json_out:
        echo_json({"out": str(res.out) if res.out else None, **res.report})
        return
    for line in res.summary_lines():
        typer.echo(line)


@app.command("compare")
def compare_cmd(
    store: Path = typer.Argument(..., help="Knowledge store folder (with proofs)."),
    budgets: str = typer.Option("100,250,500,1000,2000", "--budgets", help="Comma-separated budgets."),
    strategies: str | None = typer.Option(None, "--strategies", metavar="NAMES",
                                          help=registry_help("Comma-separated strategies (default: all)", STRATEGIES)),
    seed: int = typer.Option(0, "--seed"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds for qc-exact's solver per budget."),
    corpus: Path | None = typer.Option(None, "--corpus", help="General corpus file: facts it holds are free."),
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Run every strategy at several budgets and print a table.

    Example: microtheory distill compare runs/eb_store --budgets 100,250,500
    """
    from core.errors import InputError
    from microtheory.distill import compare

    try:
        ns = [int(x) for x in budgets.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--budgets must be comma-separated integers, got {budgets!r}") from None
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    rows = compare(store, ns, names, seed=seed, time_limit=time_limit,
                   corpus_texts=read_corpus_texts(corpus) if corpus else None)
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
    fmt: str = typer.Option("auto", "--format", "-f", metavar="NAME",
                            help=registry_help("Tree file format", TREE_FORMATS, ("auto (guessed from the first record)",))),
    encoder: str | None = typer.Option(None, "--encoder", "-e", help="Encoder name or folder, or 'hashing'."),
    generator: str = typer.Option("entailmentbank", "--generator", help="Generator name recorded in provenance."),
    force: bool = typer.Option(False, "--force", help="Replace an existing store."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Build a knowledge store from entailment trees: every leaf and intermediate is a fact, each tree a proof.

    Example: microtheory distill build-store ../shared/data/entailmentbank/angles/task_1/train.jsonl --out runs/eb_store
    """
    from microtheory.tree_files import build_store_from_trees

    summary = build_store_from_trees(trees, out, fmt=fmt, encoder=encoder, force=force, generator=generator,
                                     progress=not json_out)
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"built {summary['store']}: {summary['count']} facts from {summary['trees']} trees "
                   f"({summary['facts_merged']} duplicate texts merged), {summary['proofs_added']} proofs")
