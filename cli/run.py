"""`microtheory demo` and `microtheory run CONFIG`: the main job end to end, then the HTML report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.common import echo_json

DEMO_OUT = Path("runs") / "demo"


def _finish(summary: dict, out: Path, json_out: bool, report: bool) -> None:
    from cli.pipeline import summary_lines

    report_path = None
    if report:
        from microtheory.report import write_report

        report_path = write_report(out)
    if json_out:
        echo_json({**summary, "run_dir": str(out), "report": str(report_path) if report_path else None})
    else:
        for line in summary_lines(summary):
            typer.echo(line)
        typer.echo(f"run directory: {out}")
        if report_path is not None:
            typer.echo(f"report: {report_path.resolve()}  (open it in a browser)")
    if summary["status"] == "failed":
        raise typer.Exit(1)


def demo(
    out: Path = typer.Option(DEMO_OUT, "--out", "-o", help="Run directory (replaced when it is one)."),
    scorer: str | None = typer.Option(None, "--scorer", help="Scorer folder, or 'overlap' (default: shipped)."),
    encoder: str | None = typer.Option(None, "--encoder", help="Encoder name or path, or 'hashing'."),
    generator: str | None = typer.Option(None, "--generator",
                                            help="Generator spec: replay (default), auto, smollm2, openai:URL#MODEL."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress output."),
) -> None:
    """Run the whole pipeline on the embedded science corpus (corpora/demo.toml) into runs/demo:
    corpus store, knowledge store from replayed generations, microtheory, grounded QA on the held-out
    questions with and without it, critique of example explanations, and the HTML report.

    Example: microtheory demo
    """
    from dataclasses import replace

    from cli.pipeline import demo_config, run_pipeline

    cfg = demo_config()
    changes: dict[str, Any] = {k: v for k, v in (("scorer", scorer), ("encoder", encoder), ("generator", generator)) if v}
    if changes:
        cfg = replace(cfg, **changes)
    summary = run_pipeline(cfg, out, progress=not no_progress and not json_out)
    _finish(summary, out, json_out, not no_report)


def run(
    config: Path = typer.Argument(..., help="Run config, TOML or JSON (see corpora/demo.toml)."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                       help="Run directory (default: runs/<name>; replaced when it is one)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress output."),
) -> None:
    """Run the whole pipeline on your own data, described by a small config file: corpus, questions,
    trees or generations, model outputs, generator, strategy, budget, scorer threshold.

    Example: microtheory run docs/entailmentbank.toml --out runs/eb
    """
    from cli.pipeline import load_config, run_pipeline

    cfg = load_config(config)
    target = out if out is not None else Path("runs") / cfg.name
    summary = run_pipeline(cfg, target, progress=not no_progress and not json_out)
    _finish(summary, target, json_out, not no_report)
