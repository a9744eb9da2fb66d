"""Fault suite for the commands that write resumable outputs: `critique run`, `qa`, `populate`.

For each command, four faults (issue 15):
  user_file    --out holds a user's file, or is the command's own input: refused (exit 2), untouched
  kill         kill -9 at a random point after the first record, then rerun: exactly one record per row
  concurrent   two writers started together on one output: one refused at once, no record twice
  bad_input    a non-UTF-8 byte and a malformed line in the input: error records naming file:line, run goes on
and for `populate`, the command that talks to a generator server, with the default settings:
  dead_server    connection refused: the circuit breaker stops the run (exit 6) within a minute
  silent_server  a server that accepts and never answers: the same

Every command runs as a real subprocess (`python bench/fault_suite.py child ARGS...` = the CLI with
test doubles registered: a rule-based critique backend, the overlap scorer, a hashing encoder, a
scripted generator; `FAULT_SUITE_DELAY` seconds of sleep per row so that a kill lands mid-run).
tests/test_faults.py runs the same scenarios.

    PYTHONPATH=. .venv/bin/python bench/fault_suite.py [--trials 3] [--seed 0]

writes bench/results/fault_suite.json and .md: commands x faults tried, records lost, records
duplicated, files destroyed (targets: 0).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
COMMANDS = ("critique", "qa", "populate")
FAULTS = ("user_file", "kill", "concurrent", "bad_input")
ROWS = 24
DELAY = 0.08  # seconds per row in runs that get killed or raced


# ------------------------------------------------------------------------------ the child process

def child(argv: list[str]) -> None:
    """The CLI with the suite's test doubles registered (run in a subprocess)."""
    sys.path.insert(0, str(ROOT))
    delay = float(os.environ.get("FAULT_SUITE_DELAY", "0") or 0)
    from critique import batch
    from critique.format import Critique
    from critique.generative import CritiqueResult

    class RuleBackend:
        """Sound when the predicted answer is the key, else one fixed flaw; `delay` s per record."""

        name = "rule"

        def critique(self, records: Any) -> list[Any]:
            out = []
            for r in records:
                time.sleep(delay)
                ok = r.predicted_answer == r.answer_key
                out.append(CritiqueResult(r.id, critique=Critique(
                    "None" if ok else "The answer is wrong.", "none" if ok else "incorrect_information",
                    "g", "None" if ok else "s", 5 if ok else 1, flaw_sentence_index=None if ok else 0)))
            return out

    batch.BACKENDS.add("rule", lambda o: RuleBackend(), help="test double")
    if delay:
        import retrieval.qa as qa
        from microtheory.generators.base import ScriptedGenerator

        answer = qa.answer_question
        qa.answer_question = lambda *a, **k: (time.sleep(delay), answer(*a, **k))[1]  # type: ignore[assignment]
        gen_one = ScriptedGenerator._generate_one
        ScriptedGenerator._generate_one = lambda self, *a: (time.sleep(delay), gen_one(self, *a))[1]  # type: ignore
    from cli.main import app

    app(args=argv, prog_name="microtheory")


# --------------------------------------------------------------------------------- the workspaces

@dataclass
class Workspace:
    """One command's inputs in a temporary folder, how to run it, and how to count its records."""

    command: str
    dir: Path
    input: Path
    rows: list[str]                     # the key of each input row, in order
    args: Callable[[Path, Path], list[str]]  # (input, out) -> CLI arguments
    key: str                            # the record field that names the row
    extra: dict[str, Path] = field(default_factory=dict)

    def run(self, out: Path, *, delay: float = 0.0, input: Path | None = None) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FAULT_SUITE_DELAY": str(delay), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
        return subprocess.Popen([PY, str(Path(__file__).resolve()), "child", *self.args(input or self.input, out)],
                                cwd=self.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def records(self, out: Path) -> Counter[str]:
        """Data records per row key (header skipped; a torn line is not a record)."""
        seen: Counter[str] = Counter()
        if not out.exists():
            return seen
        for raw in out.read_bytes().splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict) and "_header" not in rec and self.key in rec:
                seen[str(rec[self.key])] += 1
        return seen


def _critique_ws(d: Path) -> Workspace:
    rows = []
    for i in range(ROWS):
        rows.append({"id": f"c{i}", "question": f"Which material conducts electricity best? ({i})",
                     "options": {"A": "wood", "B": "copper"}, "answer_key": "B",
                     "explanation": "Copper is a metal. Metals conduct electricity.",
                     "predicted_answer": "B" if i % 3 else "A"})
    inp = d / "outputs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Workspace("critique", d, inp, [str(i + 1) for i in range(ROWS)],
                     lambda i, o: ["critique", "run", str(i), "--out", str(o), "--backend", "rule",
                                   "--batch-size", "1", "--json"], key="line")


def _questions(n: int) -> list[dict[str, Any]]:
    hyps = ["a magnet attracts an iron nail", "plants need sunlight to grow", "water freezes when it is cold"]
    return [{"id": f"q{i}", "stem": f"Which statement is true ({i})?",
             "options": {"A": hyps[i % 3].split()[-1], "B": "stone"}, "answer_key": "A",
             "hypothesis": hyps[i % 3]} for i in range(n)]


def _qa_ws(d: Path) -> Workspace:
    from core.types import Fact
    from retrieval.store import KnowledgeStore

    corpus = d / "corpus"
    with KnowledgeStore.create(corpus, encoder="hashing") as ks:
        ks.add([Fact("w1", "a magnet attracts iron"), Fact("w2", "iron nails are made of iron"),
                Fact("w3", "plants need sunlight to grow"), Fact("w4", "water freezes when it is cold")])
    inp = d / "questions.jsonl"
    inp.write_text("".join(json.dumps(q) + "\n" for q in _questions(ROWS)), encoding="utf-8")
    return Workspace("qa", d, inp, [f"q{i}" for i in range(ROWS)],
                     lambda i, o: ["qa", "-c", str(corpus), "-q", str(i), "-o", str(o), "--scorer", "overlap",
                                   "--json", "--no-progress"], key="id", extra={"corpus": corpus})


def _populate_ws(d: Path) -> Workspace:
    inp = d / "questions.jsonl"
    inp.write_text("".join(json.dumps(q) + "\n" for q in _questions(ROWS)), encoding="utf-8")
    script = d / "script.json"
    script.write_text(json.dumps(["1. A magnet attracts iron.\n2. An iron nail is made of iron.",
                                  "1. Plants need sunlight.\n2. Plants grow with sunlight."]), encoding="utf-8")
    store = d / "ks"
    return Workspace("populate", d, inp, [f"q{i}" for i in range(ROWS)],
                     lambda i, o: ["populate", "-q", str(i), "-s", str(store), "-g", f"scripted:{script}",
                                   "--scorer", "overlap", "--encoder", "hashing", "--prompts", "direct",
                                   "--max-depth", "0", "--no-minimal", "-n", "1", "--save-every", "1",
                                   "--log", str(o), "--json", "--no-progress"],
                     key="question_id", extra={"store": store})


WORKSPACES = {"critique": _critique_ws, "qa": _qa_ws, "populate": _populate_ws}


# ---------------------------------------------------------------------------------- the scenarios

@dataclass
class Result:
    command: str
    fault: str
    trial: int
    ok: bool = True
    rows: int = 0
    records_lost: int = 0
    records_duplicated: int = 0
    files_destroyed: int = 0
    notes: list[str] = field(default_factory=list)

    def check(self, cond: bool, note: str) -> None:
        if not cond:
            self.ok = False
            self.notes.append(note)


def _finish(p: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out + err


def _count(ws: Workspace, out: Path, res: Result) -> None:
    seen = ws.records(out)
    res.rows = len(ws.rows)
    res.records_lost = sum(1 for k in ws.rows if seen[k] == 0)
    res.records_duplicated = sum(c - 1 for c in seen.values() if c > 1)
    res.check(res.records_lost == 0, f"{res.records_lost} rows without a record")
    res.check(res.records_duplicated == 0, f"{res.records_duplicated} duplicate records")


def user_file(ws: Workspace, res: Result, rng: random.Random) -> None:
    notes = ws.dir / "notes.txt"
    notes.write_text("my notes\n", encoding="utf-8")
    before_input = ws.input.read_bytes()
    for target, label in ((notes, "user file"), (ws.input, "the input")):
        before = target.read_bytes()
        code, text = _finish(ws.run(target))
        res.check(code == 2, f"--out = {label}: exit {code}, expected 2: {text[-300:]}")
        if target.read_bytes() != before:
            res.files_destroyed += 1
            res.check(False, f"--out = {label} was changed")
    if "store" in ws.extra:  # populate also writes a store: a user's folder there is not touched
        mine = ws.extra["store"]
        mine.mkdir()
        (mine / "a.txt").write_text("mine\n", encoding="utf-8")
        code, text = _finish(ws.run(ws.dir / "log.jsonl"))
        res.check(code != 0, "--store = a user folder was accepted")
        if (mine / "a.txt").read_text(encoding="utf-8") != "mine\n" or len(list(mine.iterdir())) != 1:
            res.files_destroyed += 1
            res.check(False, "the user folder at --store was changed")
    res.check(ws.input.read_bytes() == before_input, "the input changed")


def _wait_for_first_record(ws: Workspace, out: Path, p: subprocess.Popen[str], limit: float = 120) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and p.poll() is None:
        if sum(ws.records(out).values()) > 0:
            return True
        time.sleep(0.05)
    return False


def kill(ws: Workspace, res: Result, rng: random.Random) -> None:
    out = ws.dir / f"out-kill-{res.trial}.jsonl"
    p = ws.run(out, delay=DELAY)
    started = _wait_for_first_record(ws, out, p)
    time.sleep(rng.uniform(0, DELAY * ROWS * 0.7))
    killed = p.poll() is None
    if killed:
        os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    done_before = sum(ws.records(out).values())
    res.notes.append(f"killed after {done_before} of {len(ws.rows)} records" if killed and started
                     else "the run ended before the kill")
    p = ws.run(out)
    stdout, stderr = p.communicate(timeout=180)
    res.check(p.returncode == 0, f"rerun exit {p.returncode}: {(stdout + stderr)[-300:]}")
    try:
        skipped = int(json.loads(stdout).get("skipped", -1))
    except ValueError:
        skipped = -1
    res.check(skipped >= done_before, f"the rerun skipped {skipped} rows, {done_before} were done: not resumed")
    _count(ws, out, res)


def concurrent(ws: Workspace, res: Result, rng: random.Random) -> None:
    out = ws.dir / f"out-race-{res.trial}.jsonl"
    a, b = ws.run(out, delay=DELAY), ws.run(out, delay=DELAY)
    (ca, ta), (cb, tb) = _finish(a), _finish(b)
    codes = sorted([ca, cb])
    refused = [t for c, t in ((ca, ta), (cb, tb)) if c == 2]
    res.check(codes in ([0, 0], [0, 2]), f"exit codes {codes}")
    res.check(all("another run is writing" in t for t in refused), "the refused writer's message is unclear")
    res.notes.append("one writer refused at once" if refused else "the writers ran one after the other")
    _count(ws, out, res)


def bad_input(ws: Workspace, res: Result, rng: random.Random) -> None:
    lines = ws.input.read_bytes().splitlines(keepends=True)
    bad = ws.dir / "bad.jsonl"
    at = sorted(rng.sample(range(1, len(lines)), 2))
    lines.insert(at[0], b'{"id": "bad-byte", "question": "caf\xe9 au lait?"}\n')
    lines.insert(at[1] + 1, b"{not json\n")
    bad.write_bytes(b"".join(lines))
    out = ws.dir / "out-bad.jsonl"
    code, text = _finish(ws.run(out, input=bad))
    res.check(code == 0, f"exit {code}: {text[-300:]}")
    bad_lines = [at[0] + 1, at[1] + 2]
    keys = [str(n) if ws.key == "line" else f"line{n}" for n in bad_lines]
    good = [k for k in ws.rows] if ws.key != "line" else \
        [str(n) for n in range(1, len(lines) + 1) if n not in bad_lines]
    ws_bad = Workspace(ws.command, ws.dir, bad, good + keys, ws.args, ws.key)
    _count(ws_bad, out, res)
    texts = [json.loads(x) for x in out.read_bytes().splitlines() if x.strip()]
    errors = " ".join(str(r.get("error") or r.get("reason") or "") for r in texts)
    for n in bad_lines:
        res.check(f"bad.jsonl:{n}:" in errors, f"no error record naming bad.jsonl:{n}")


# ------------------------------------------------------------------- the generator's server faults

def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connection refused)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (bounded: closes everything on exit)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for c in self.conns:
            c.close()
        self.sock.close()


def server_fault(ws: Workspace, res: Result, kind: str) -> None:
    """populate with the default time-outs and breaker against a dead or a silent server: it must stop
    within a minute (exit 6, a message saying what to do) and mark no question failed (resumable)."""
    log = ws.dir / f"log-{kind}.jsonl"

    def args(url: str) -> list[str]:
        return ["populate", "-q", str(ws.input), "-s", str(ws.dir / f"ks-{kind}"), "-g", f"openai:{url}#m",
                "--scorer", "overlap", "--encoder", "hashing", "--prompts", "direct", "--max-depth", "0",
                "--log", str(log), "--no-progress"]

    t0 = time.monotonic()
    if kind == "dead":
        p = Workspace(ws.command, ws.dir, ws.input, ws.rows, lambda i, o: args(f"http://127.0.0.1:{dead_port()}/v1"),
                      ws.key).run(log)
        code, text = _finish(p)
    else:
        with SilentServer() as srv:
            p = Workspace(ws.command, ws.dir, ws.input, ws.rows, lambda i, o: args(f"http://127.0.0.1:{srv.port}/v1"),
                          ws.key).run(log)
            code, text = _finish(p)
    secs = time.monotonic() - t0
    res.notes.append(f"stopped after {secs:.1f} s (process start included)")
    res.check(code == 6 and "stopping the run" in text, f"exit {code}: {text[-300:]}")
    res.check(secs < 60, f"took {secs:.0f} s")
    res.check(sum(ws.records(log).values()) == 0, "questions were marked failed: the rerun would skip nothing, "
                                                  "but the log claims attempts")


SCENARIOS: dict[str, Callable[[Workspace, Result, random.Random], None]] = {
    "user_file": user_file, "kill": kill, "concurrent": concurrent, "bad_input": bad_input,
    "dead_server": lambda ws, res, rng: server_fault(ws, res, "dead"),
    "silent_server": lambda ws, res, rng: server_fault(ws, res, "silent")}
SERVER_FAULTS = ("dead_server", "silent_server")  # populate only: the command that talks to a server


def run_scenario(command: str, fault: str, trial: int = 0, seed: int = 0, base: Path | None = None) -> Result:
    """One command x fault in a fresh temporary folder (under `base` when given)."""
    rng = random.Random(f"{seed}-{command}-{fault}-{trial}")
    res = Result(command, fault, trial)
    with tempfile.TemporaryDirectory(prefix=f"faults-{command}-{fault}-", dir=base) as tmp:
        ws = WORKSPACES[command](Path(tmp))
        SCENARIOS[fault](ws, res, rng)
    return res


# ------------------------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3, help="kill trials per command (random kill points)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fault_suite")
    args = ap.parse_args()
    t0 = time.monotonic()
    results = []
    plan = [(c, f) for c in COMMANDS for f in FAULTS] + [("populate", f) for f in SERVER_FAULTS]
    for command, fault in plan:
        for trial in range(args.trials if fault == "kill" else 1):
            r = run_scenario(command, fault, trial, args.seed)
            print(f"{command:9s} {fault:11s} trial {trial}: {'ok' if r.ok else 'FAILED'}  {'; '.join(r.notes)}",
                  flush=True)
            results.append(r)
    summary = {
        "commands": list(COMMANDS), "faults": list(FAULTS), "server_faults": list(SERVER_FAULTS),
        "scenarios_tried": len(results),
        "scenarios_passed": sum(r.ok for r in results),
        "records_lost": sum(r.records_lost for r in results),
        "records_duplicated": sum(r.records_duplicated for r in results),
        "files_destroyed": sum(r.files_destroyed for r in results),
        "rows_per_input": ROWS, "seconds": round(time.monotonic() - t0, 1), "seed": args.seed,
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, shared with other jobs",
        "command": f"PYTHONPATH=. python bench/fault_suite.py --trials {args.trials} --seed {args.seed}",
        "results": [asdict(r) for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(_markdown(summary), encoding="utf-8")
    print(f"{summary['scenarios_passed']}/{summary['scenarios_tried']} scenarios passed; records lost "
          f"{summary['records_lost']}, duplicated {summary['records_duplicated']}, files destroyed "
          f"{summary['files_destroyed']} ({summary['seconds']} s)")


def _markdown(s: dict[str, Any]) -> str:
    lines = ["# Fault suite: critique run, qa, populate", "",
             f"`{s['command']}` ({s['machine']}; {s['seconds']} s). Inputs of {s['rows_per_input']} rows; test "
             "doubles (rule critic, overlap scorer, hashing encoder, scripted generator) in real subprocesses.", "",
             f"- scenarios tried (commands x faults, kill repeated): **{s['scenarios_tried']}**, passed "
             f"**{s['scenarios_passed']}**",
             f"- records lost: **{s['records_lost']}** (target 0); records duplicated: "
             f"**{s['records_duplicated']}** (target 0); files destroyed: **{s['files_destroyed']}** (target 0)", "",
             "| command | fault | trial | ok | lost | duplicated | destroyed | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in s["results"]:
        lines.append(f"| {r['command']} | {r['fault']} | {r['trial']} | {'yes' if r['ok'] else 'NO'} | "
                     f"{r['records_lost']} | {r['records_duplicated']} | {r['files_destroyed']} | "
                     f"{'; '.join(r['notes'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2:])
    else:
        sys.path.insert(0, str(ROOT))
        main()
