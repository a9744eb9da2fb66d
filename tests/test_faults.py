"""Fault suite (issue 15): for each writing command (critique run, qa, populate) a user's file as
--out, kill -9 mid-run and rerun, two concurrent writers, bad bytes and lines in the input; and the
generator against a dead and a silent server. The command scenarios are those of
bench/fault_suite.py (real subprocesses, test doubles); they are slow on a shared 2-core machine."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fault_suite import COMMANDS, FAULTS, SERVER_FAULTS, SilentServer, run_scenario  # noqa: E402
from bench.fault_suite import dead_port as _dead_port  # noqa: E402
from cli.main import app  # noqa: E402
from core.errors import GeneratorError  # noqa: E402
from microtheory.generators.fake_server import FakeOpenAIServer  # noqa: E402
from microtheory.generators.openai import OpenAIGenerator, ServerUnavailable  # noqa: E402

runner = CliRunner()


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_command_survives_fault(command: str, fault: str, tmp_path: Path) -> None:
    res = run_scenario(command, fault, trial=0, seed=1, base=tmp_path)
    assert res.ok, res.notes
    assert res.records_lost == 0 and res.records_duplicated == 0 and res.files_destroyed == 0


# ------------------------------------------------------------------ generator against dead / silent servers


def _questions(tmp_path: Path, n: int = 5) -> Path:
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps({"id": f"q{i}", "stem": "s?", "options": {"A": "a", "B": "b"},
                                     "answer_key": "A", "hypothesis": "a magnet attracts an iron nail"}) + "\n"
                         for i in range(n)))
    return q


def _populate(tmp_path: Path, url: str, *extra: str):
    args = ["populate", "-q", str(_questions(tmp_path)), "-s", str(tmp_path / "ks"), "-g", f"openai:{url}#m",
            "--scorer", "overlap", "--encoder", "hashing", "--prompts", "direct", "--max-depth", "0",
            "--no-minimal", "-n", "1", "--no-progress", *extra]
    t0 = time.monotonic()
    r = runner.invoke(app, args)
    return r, time.monotonic() - t0


def test_breaker_stops_a_dead_server_at_once_and_the_rerun_resumes(tmp_path: Path) -> None:
    r, secs = _populate(tmp_path, f"http://127.0.0.1:{_dead_port()}/v1")
    assert r.exit_code == 6 and secs < 20, (secs, r.output)
    assert "failed 4 times in a row" in r.output and "rerun" in r.output and "0 attempted" in r.output
    log = tmp_path / "ks.populate.jsonl"
    assert len(log.read_text().splitlines()) == 1  # the header only: no question was marked failed
    with FakeOpenAIServer(reply=lambda p, i: "1. A magnet attracts iron.\n2. An iron nail is made of iron.") as srv:
        args = ["populate", "-q", str(tmp_path / "q.jsonl"), "-s", str(tmp_path / "ks"), "-g", f"openai:{srv.base_url}#m",
                "--scorer", "overlap", "--encoder", "hashing", "--prompts", "direct", "--max-depth", "0",
                "--no-minimal", "-n", "1", "--no-progress", "--json"]
        # another server is another configuration: refused unless --force
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "another configuration" in r.output and "generator" in r.output
        r = runner.invoke(app, args + ["--force"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["proved"] == 5


def test_breaker_stops_a_silent_server_within_its_time_limit(tmp_path: Path) -> None:
    with SilentServer() as srv:
        r, secs = _populate(tmp_path, f"http://127.0.0.1:{srv.port}/v1", "--timeout", "0.6",
                            "--breaker-seconds", "1.5")
    assert r.exit_code == 6 and 1.4 < secs < 15, (secs, r.output)
    assert "no answer" in r.output and "stopping the run" in r.output


def test_request_budget_bounds_one_request(tmp_path: Path) -> None:
    with SilentServer() as srv:
        g = OpenAIGenerator(f"http://127.0.0.1:{srv.port}/v1", "m", timeout=0.4, retries=10, backoff=0.01,
                            request_budget=1.0, breaker=0)
        t0 = time.monotonic()
        with pytest.raises(GeneratorError, match="failed after") as e:
            g.generate("p")
        assert not isinstance(e.value, ServerUnavailable) and time.monotonic() - t0 < 2.5


@pytest.mark.slow
@pytest.mark.parametrize("fault", SERVER_FAULTS)
def test_defaults_finish_within_a_minute(tmp_path: Path, fault: str) -> None:
    res = run_scenario("populate", fault, base=tmp_path)
    assert res.ok, res.notes
