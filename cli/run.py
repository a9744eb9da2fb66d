"""`microtheory demo` and `microtheory run CONFIG`: the main job end to end, then the HTML report
(`pipeline.run_pipeline` does the work)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.common import echo_json

DEMO_OUT = Path("runs") / "demo"
FORCE_HELP = "Replace --out even when it is not a run directory (never one of the inputs)."


def _finish(result: Any, json_out: bool) -> None:
    from pipeline import summary_lines

    summary, report = result.summary, result.report
    if json_out:
        echo_json({**summary, "run_dir": str(result.out), "written": result.written,
                   "report": str(report) if report else None})
    else:
        for line in summary_lines(summary):
            typer.echo(line)
        if result.written:
            typer.echo(f"run directory: {result.out}")
        else:
            typer.echo(f"a stage failed: the earlier run in {result.out} was kept as it was (fix the cause and rerun)")
        if report is not None:
            typer.echo(f"report: {report.resolve()}  (open it in a browser)")
    if summary["status"] == "failed":
        raise typer.Exit(1)


def _options(force: bool, json_out: bool, no_report: bool, no_progress: bool, config: Path | None = None) -> Any:
    from pipeline import RunOptions

    return RunOptions(force=force, progress=not no_progress and not json_out, report=not no_report,
                      config_path=config)


def demo(
    out: Path = typer.Option(DEMO_OUT, "--out", "-o", help="Run directory (replaced when it is one)."),
    scorer: str | None = typer.Option(None, "--scorer", help="Scorer folder, or 'overlap' (default: shipped)."),
    encoder: str | None = typer.Option(None, "--encoder", help="Encoder name or path, or 'hashing'."),
    generator: str | None = typer.Option(None, "--generator",
                                            help="Generator spec: replay (default), auto, smollm2, openai:URL#MODEL."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress output."),
) -> None:
    """Run the whole pipeline on the embedded science corpus (corpora/demo.toml) into runs/demo:
    corpus store, knowledge store from replayed generations, microtheory, grounded QA on the held-out
    questions with and without it, critique of example explanations, and the HTML report.

    Example: microtheory demo
    """
    from pipeline import demo_config, run_pipeline

    cfg = demo_config(scorer=scorer, encoder=encoder, generator=generator)
    _finish(run_pipeline(cfg, out, _options(force, json_out, no_report, no_progress)), json_out)


def run(
    config: Path = typer.Argument(..., help="Run config, TOML or JSON (see corpora/demo.toml)."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                       help="Run directory (default: runs/<name>; replaced when it is one)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress output."),
) -> None:
    """Run the whole pipeline on your own data, described by a small config file: corpus, questions,
    trees or generations, model outputs, generator, strategy, budget, scorer threshold. The run is
    written beside --out and swapped in at the end: a failing run leaves an earlier one whole.

    Example: microtheory run docs/entailmentbank.toml --out runs/eb
    """
    from pipeline import load_config, run_pipeline

    cfg = load_config(config)
    target = out if out is not None else Path("runs") / cfg.name
    _finish(run_pipeline(cfg, target, _options(force, json_out, no_report, no_progress, config)), json_out)
