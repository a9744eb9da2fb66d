"""core.outputs: the one output-safety mechanism (owned directories, locked append-only files)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from core.errors import InputError
from core.outputs import OWNER_FILE, AppendOutput, check_dir_output, read_header, read_owner, staged_dir


def test_staged_dir_creates_and_marks_owner(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_dir(out, "run", config={"a": 1}) as tmp:
        (tmp / "x.txt").write_text("hi")
        assert not out.exists()  # nothing at the target until the block ends
    assert (out / "x.txt").read_text() == "hi"
    assert read_owner(out) == {"kind": "run", "version": 1, "config": {"a": 1}}


def test_user_folder_is_never_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "p"
    (out / "src").mkdir(parents=True)
    (out / "src" / "a.py").write_text("x")
    (out / "config.json").write_text("{}")
    with pytest.raises(InputError, match="not made by this command"):
        with staged_dir(out, "run"):
            pass
    assert (out / "src" / "a.py").read_text() == "x"


def test_failed_run_leaves_previous_whole(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_dir(out, "run") as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_dir(out, "run") as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("stage failed")
    assert (out / "old.txt").read_text() == "old" and not (out / "new.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging left behind


def test_other_kind_refused_and_input_refused(tmp_path: Path) -> None:
    out = tmp_path / "mt"
    with staged_dir(out, "microtheory"):
        pass
    with pytest.raises(InputError, match="holds a microtheory"):
        check_dir_output(out, "store")
    check_dir_output(out, "store", force=True)  # --force allows it
    with pytest.raises(InputError, match="overwrite the input"):
        check_dir_output(out, "microtheory", inputs=[out / OWNER_FILE])


def test_append_output_header_resume_and_config(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    with AppendOutput(out, "critique", {"backend": "critic"}) as w:
        assert not w.resumed
        w.write({"row": 1})
    assert read_header(out) == {"kind": "critique", "version": 1, "config": {"backend": "critic"}}
    with AppendOutput(out, "critique", {"backend": "critic"}) as w:
        assert w.resumed
        w.write({"row": 2})
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r.get("row") for r in rows] == [None, 1, 2]
    with pytest.raises(InputError, match="backend differs"):
        AppendOutput(out, "critique", {"backend": "generative"}).__enter__()
    assert not out.with_name("c.jsonl.lock").exists()  # a refused run leaves no lock behind


def test_append_output_refuses_user_file_and_second_writer(tmp_path: Path) -> None:
    notes = tmp_path / "n.txt"
    notes.write_text("notes\n")
    with pytest.raises(InputError, match="not a critique output"):
        AppendOutput(notes, "critique", {}).__enter__()
    assert notes.read_text() == "notes\n"
    out = tmp_path / "c.jsonl"
    with AppendOutput(out, "critique", {}):
        with pytest.raises(InputError, match="another run is writing"):
            AppendOutput(out, "critique", {}).__enter__()


def test_append_output_drops_a_partial_last_line(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    with AppendOutput(out, "qa", {}) as w:
        w.write({"row": 1})
    with open(out, "a") as fh:
        fh.write('{"row": 2, "trunc')  # a kill in the middle of a write
    with AppendOutput(out, "qa", {}) as w:
        w.write({"row": 2})
    assert [json.loads(x).get("row") for x in out.read_text().splitlines()] == [None, 1, 2]


def _contend(out: str, marker: str, rounds: int, q: Any) -> None:
    """Enter the output `rounds` times; while holding it, own `marker` exclusively (O_EXCL)."""
    from core.errors import InputError

    overlaps = held = 0
    for _ in range(rounds):
        try:
            with AppendOutput(out, "t", {"a": 1}):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    overlaps += 1  # another writer holds the output at the same time
                    continue
                held += 1
                os.close(fd)
                os.unlink(marker)
        except InputError:
            pass
    q.put((held, overlaps))


def test_append_output_lock_is_exclusive_under_contention(tmp_path: Path) -> None:
    # The lock file is removed on release; three writers racing for it must never both hold it.
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    out, marker = str(tmp_path / "o.jsonl"), str(tmp_path / "held")
    procs = [ctx.Process(target=_contend, args=(out, marker, 60, q)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    assert sum(h for h, _ in results) > 0
    assert sum(o for _, o in results) == 0
