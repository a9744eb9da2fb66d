"""Entry point: `microtheory --help` lists every command group."""
from __future__ import annotations

import typer

from cli.common import ErrorHandlingGroup

app = typer.Typer(
    cls=ErrorHandlingGroup,
    help="Distil what a language model knows about a topic into a small, verifiable microtheory, "
    "ground QA answers in it, and critique model explanations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here so that `microtheory --help` stays cheap: command modules import heavy
    # libraries only inside their command functions.
    from cli import critique, distill, entail, populate, qa, report, run, store

    app.add_typer(store.app, name="store")
    app.add_typer(distill.app, name="distill")
    app.add_typer(critique.app, name="critique")
    app.add_typer(entail.app, name="entail")
    app.command("populate")(populate.populate_cmd)
    app.command("qa")(qa.qa)
    app.command("demo")(run.demo)
    app.command("run")(run.run)
    app.command("report")(report.report)

_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
