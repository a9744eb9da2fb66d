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
    from cli import store

    app.add_typer(store.app, name="store")
    from cli import distill

    app.add_typer(distill.app, name="distill")
    from cli import critique

    app.add_typer(critique.app, name="critique")
    from cli import entail

    app.add_typer(entail.app, name="entail")
    from cli import populate

    app.command("populate")(populate.populate_cmd)
    from cli import qa

    app.command("qa")(qa.qa)
    from cli import report, run

    app.command("demo")(run.demo)
    app.command("run")(run.run)
    app.command("report")(report.report)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
