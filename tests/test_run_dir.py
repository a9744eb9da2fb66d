"""Output safety of `microtheory run` / `demo` (issue 15): a user's folder is never destroyed, a
run is staged and swapped in so that a failing run leaves the earlier one whole, `--force`, the
versioned manifest, and run directories written before manifests existed."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.errors import InputError
from core.outputs import OWNER_FILE, read_owner
from corpora import CORPORA_DIR
from pipeline import RunOptions, load_config, run_pipeline
from pipeline import run_dir as rd

FAST = {"encoder": "hashing", "scorer": "overlap", "qa_limit": 1, "budget": 5, "canonicalise": False,
        "model_outputs": None, "trees": None}


def _config(**kw):
    return replace(load_config(CORPORA_DIR / "demo.toml"), **{**FAST, **kw})


def _config_file(tmp_path: Path, **kw) -> Path:
    """A fast config (test doubles, no canonicalisation, one QA question) as a JSON file."""
    doc = {"name": "fast", "corpus": str(CORPORA_DIR / "science_corpus.jsonl"),
           "questions": str(CORPORA_DIR / "science_questions.jsonl"),
           "generations": str(CORPORA_DIR / "generations.jsonl"), **{k: v for k, v in FAST.items() if v is not None},
           **kw}
    p = tmp_path / "fast.json"
    p.write_text(json.dumps(doc))
    return p


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _earlier_run(path: Path) -> dict[str, str]:
    """A stand-in for an earlier run: a directory with our manifest and a file to recognise."""
    path.mkdir(parents=True)
    (path / OWNER_FILE).write_text(json.dumps({"kind": "run", "version": 1, "config": {}}))
    (path / "summary.json").write_text('{"name": "earlier"}')
    return _tree(path)


def test_user_folder_never_destroyed(tmp_path, monkeypatch):
    """The reproduction of issue 15: a folder holding a config.json and the user's sources."""
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "p"
    (p / "src").mkdir(parents=True)
    (p / "config.json").write_text("{}")
    (p / "src" / "a.py").write_text("x\n")
    before = _tree(p)
    res = CliRunner().invoke(app, ["run", str(CORPORA_DIR / "demo.toml"), "--out", "p", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "not made by this command" in res.output and "--force" in res.output
    assert _tree(p) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p"]  # no staging directory left behind
    # The same for `demo`.
    res = CliRunner().invoke(app, ["demo", "--out", "p", "--no-progress", "--encoder", "hashing"])
    assert res.exit_code == 2 and _tree(p) == before


def test_force_replaces_a_user_folder(tmp_path):
    p = tmp_path / "p"
    (p / "src").mkdir(parents=True)
    (p / "src" / "a.py").write_text("x\n")
    cfg = _config_file(tmp_path)
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(p), "--force", "--json", "--no-report"])
    assert res.exit_code == 0, res.output
    assert not (p / "src").exists() and (p / "summary.json").is_file()
    assert read_owner(p)["kind"] == "run"
    # --force never makes an input the output.
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path), "--force", "--no-progress"])
    assert res.exit_code == 2 and "overwrite the input" in res.output
    assert cfg.is_file()


def test_manifest_written_with_version(tmp_path):
    out = tmp_path / "run"
    result = run_pipeline(_config(), out, RunOptions(progress=False))
    assert result.written and result.summary["status"] == "ok"
    owner = json.loads((out / OWNER_FILE).read_text())
    assert owner["kind"] == rd.RUN_KIND == "run" and owner["version"] == rd.RUN_DIR_VERSION == 1
    assert owner["config"] == json.loads((out / "config.json").read_text())
    assert rd.run_dir_version(out) == 1
    # A rerun replaces its own run directory without --force.
    (out / "stale.txt").write_text("from the first run")
    assert run_pipeline(_config(name="second"), out, RunOptions(progress=False)).written
    assert not (out / "stale.txt").exists() and json.loads((out / "summary.json").read_text())["name"] == "second"
    # A newer format, or another kind of directory, is refused by the readers.
    (out / OWNER_FILE).write_text(json.dumps({"kind": "run", "version": 99}))
    with pytest.raises(InputError, match="version 99 is newer"):
        rd.run_dir_version(out)
    (out / OWNER_FILE).write_text(json.dumps({"kind": "store", "version": 1}))
    with pytest.raises(InputError, match="not a run directory"):
        rd.run_dir_version(out)


def test_missing_input_leaves_earlier_run_whole(tmp_path):
    out = tmp_path / "run"
    before = _earlier_run(out)
    cfg = _config_file(tmp_path, model_outputs=str(tmp_path / "missing.jsonl"))
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 2 and "missing.jsonl" in res.output and "not found" in res.output
    assert _tree(out) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["fast.json", "run"]


def test_failed_stage_leaves_earlier_run_whole(tmp_path):
    out = tmp_path / "run"
    before = _earlier_run(out)
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"text": "ok"}\n{"id": "no text"}\n')
    result = run_pipeline(_config(corpus=str(bad)), out, RunOptions(progress=False, report=True))
    assert result.summary["status"] == "failed" and not result.written and result.report is None
    assert _tree(out) == before
    res = CliRunner().invoke(app, ["run", str(_config_file(tmp_path, corpus=str(bad))), "--out", str(out)])
    assert res.exit_code == 1 and "earlier run" in res.output and "kept" in res.output
    assert _tree(out) == before


def test_crash_leaves_earlier_run_whole(tmp_path, monkeypatch):
    """An exception that is not a project error (a bug, Ctrl-C) propagates; the staging directory goes."""
    out = tmp_path / "run"
    before = _earlier_run(out)
    import retrieval.qa

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(retrieval.qa, "run_qa", boom)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_config(), out, RunOptions(progress=False))
    assert _tree(out) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]


def test_legacy_run_dir_is_ours_only_with_its_markers(tmp_path):
    """Run directories written before manifests: config.json and summary.json with a run's keys."""
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps(_config().to_json()))
    (legacy / "summary.json").write_text(json.dumps({"name": "old", "stages": {}, "seconds_per_stage": {},
                                                     "sizes": {}, "coverage": {}}))
    assert rd.is_legacy_run_dir(legacy)
    assert run_pipeline(_config(), legacy, RunOptions(progress=False)).written
    assert read_owner(legacy)["kind"] == "run"
    # A user's folder with files of the same names but not a run's contents is refused.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"lr": 0.1}')
    (mine / "summary.json").write_text('{"loss": 1.0}')
    assert not rd.is_legacy_run_dir(mine)
    with pytest.raises(InputError, match="not made by this command"):
        run_pipeline(_config(), mine, RunOptions(progress=False))
    assert (mine / "config.json").read_text() == '{"lr": 0.1}'


def test_out_is_a_file_or_an_input(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep")
    with pytest.raises(InputError, match="is a file"):
        run_pipeline(_config(), f, RunOptions(progress=False, force=True))
    assert f.read_text() == "keep"
    with pytest.raises(InputError, match="overwrite the input"):
        run_pipeline(_config(), CORPORA_DIR, RunOptions(progress=False, force=True))
