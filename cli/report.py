"""`microtheory report RUN_DIR`: write the self-contained HTML report of a run directory."""
from __future__ import annotations

from pathlib import Path

import typer


def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `microtheory run` or `demo`."),
    out: Path | None = typer.Option(None, "--out", "-o", help="HTML file (default: RUN_DIR/report.html)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out that is not a report."),
) -> None:
    """Write a static HTML report (no network needed to view it): the microtheory's facts with usage and
    provenance, coverage plots, grounded QA with each proof drawn as a tree, and the critiques,
    filterable by dimension.

    Example: microtheory report runs/demo
    """
    from pipeline.report import write_report

    path = write_report(run_dir, out, force=force)
    typer.echo(f"report: {path.resolve()}")
