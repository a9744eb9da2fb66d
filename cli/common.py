"""What every command shares: error handling, groups with a default command, JSON output, and
option help generated from the library's registries (so the CLI never copies a list of names)."""
from __future__ import annotations

import json
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from core.errors import MicrotheoryError
from core.registry import Registry


class ErrorHandlingGroup(TyperGroup):
    # typer bundles its own click: raise typer.Exit, which it recognises, not click's Exit.
    """Top-level group: a project error becomes one line on stderr and its exit code, no traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MicrotheoryError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


class DefaultCommandGroup(TyperGroup):
    """A group that runs `default_command` when the first argument is not one of its commands.

    Lets `microtheory critique INPUT ...` and `microtheory critique train ...` live side by side.
    """

    default_command: str = ""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and self.default_command and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # A group whose only argument is an option (e.g. `critique --out x in.jsonl`) still goes to the default.
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h") and self.default_command:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def default_group(command: str) -> type[DefaultCommandGroup]:
    """A DefaultCommandGroup class whose default command is `command` (for `typer.Typer(cls=...)`)."""
    return type(f"DefaultGroup_{command}", (DefaultCommandGroup,), {"default_command": command})


def echo_json(obj: Any) -> None:
    """Print one JSON document to stdout (for `--json`: scripts read this, so nothing else goes to stdout)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def registry_help(lead: str, registry: Registry[Any], extra: tuple[str, ...] = ()) -> str:
    """Help for an option whose value is a name in `registry`: `lead`, then every registered name with
    its one-line help (as registered when the command module loaded), then `extra` choices such as
    "auto (guessed)". The library checks the name when the command runs, so an entry registered later
    is accepted too."""
    return f"{lead}: " + ", ".join((registry.help(), *extra)) + "."


ENGINE_HELP = ("Where the work runs: local (this machine: this process, or --workers N processes) or ray (the "
               "cluster at $RAY_ADDRESS, else a local Ray cluster; see docs/scaling.md). Results and output are "
               "the same; this process writes them.")
WORKERS_HELP = ("Workers running at once, each loading the models once. local: processes on this machine, one "
                "thread each (1: this process; default: the command decides: critique's full checks use 2 "
                "processes from 32 rows when two CPUs are idle, everything else this process); ray: actors "
                "(default: one per CPU of the cluster).")


def engine_option() -> Any:
    return typer.Option("local", "--engine", help=ENGINE_HELP, metavar="local|ray")


def workers_option() -> Any:
    return typer.Option(None, "--workers", help=WORKERS_HELP)
