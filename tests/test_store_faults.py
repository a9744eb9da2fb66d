"""Bad input and faults: nothing lost. Real SIGKILLs of a writer subprocess, a real second writer."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.errors import EncoderMismatchError, InputError, StoreError
from retrieval.readers import read_facts
from retrieval.store import KnowledgeStore
from core.types import Fact

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

BASE = [Fact(f"b{i}", f"base fact number {i} about rocks and water") for i in range(50)]


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    p = tmp_path / "kb"
    with KnowledgeStore.create(p, encoder="hashing") as ks:
        ks.add(BASE)
    return p


def snapshot(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def assert_intact(p: Path, count: int) -> None:
    ks = KnowledgeStore.open(p)
    assert len(ks) == count
    assert ks.search("base fact number 7 about rocks and water", k=1)[0].fact.id == "b7"


# ------------------------------------------------------------------ bad input


def test_malformed_jsonl_line_stops_build_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine one"}\n\n{"text": "fine two", "source": "corpus"}\n{"text": 5}\n')
    out = tmp_path / "kb"
    r = runner.invoke(app, ["store", "build", str(bad), "--out", str(out), "--encoder", "hashing"])
    assert r.exit_code == InputError.exit_code
    assert f"{bad}:4: missing 'text'" in r.output
    assert not out.exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"text": "x", "source": "wikipedia"}', "unknown source"),
        ('{"text": "x", "provenance": "a string"}', "'provenance' must be a list"),
        ('{"text": "x", "id": [1]}', "'id' must be"),
    ],
)
def test_malformed_jsonl_messages(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "f.jsonl"
    f.write_text('{"text": "ok"}\n' + line + "\n")
    with pytest.raises(InputError) as e:
        read_facts(f)
    assert str(e.value).startswith(f"{f}:2: ") and message in str(e.value)
    assert e.value.line == 2


def test_malformed_add_leaves_store_byte_identical(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    bad = tmp_path / "more.jsonl"
    bad.write_text('{"text": "a new fact"}\n{"text": "another", "source": "nope"}\n')
    r = runner.invoke(app, ["store", "add", str(store), str(bad)])
    assert r.exit_code == 2 and f"{bad}:2:" in r.output
    assert snapshot(store) == before


def test_invalid_utf8_line_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_bytes(b"good line\n\xff\xfe bad bytes\n")
    with pytest.raises(InputError, match=r"t\.txt:2: not UTF-8"):
        read_facts(f)


def test_empty_input_is_an_error(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    for name, content in [("empty.txt", ""), ("blank.txt", "\n  \n"), ("empty.jsonl", "\n")]:
        f = tmp_path / name
        f.write_text(content)
        with pytest.raises(InputError, match="no facts found"):
            read_facts(f)
        r = runner.invoke(app, ["store", "add", str(store), str(f)])
        assert r.exit_code == 2 and "no facts found" in r.output
    assert snapshot(store) == before
    r = runner.invoke(app, ["store", "build", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no such file" in r.output


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "facts.txt"
    f.write_text("a fact\n")
    with pytest.raises(InputError, match="unknown format"):
        read_facts(f, fmt="xml")
    r = runner.invoke(app, ["store", "build", str(f), "--out", str(tmp_path / "kb"), "--format", "xml"])
    assert r.exit_code == 2 and not (tmp_path / "kb").exists()
    arr = tmp_path / "facts.dat"
    arr.write_text('["a", "b"]')
    with pytest.raises(InputError, match="JSON array"):
        read_facts(arr)


# ------------------------------------------------------------------ stores we must refuse


def test_newer_format_version_is_refused_and_untouched(store: Path) -> None:
    m = json.loads((store / "manifest.json").read_text())
    m["format_version"] = 99
    (store / "manifest.json").write_text(json.dumps(m))
    before = snapshot(store)
    with pytest.raises(StoreError, match="format version 99"):
        KnowledgeStore.open(store)
    with pytest.raises(StoreError, match="format version 99"):
        KnowledgeStore.open(store, writable=True)
    r = runner.invoke(app, ["store", "search", str(store), "rocks"])
    assert r.exit_code == StoreError.exit_code and "format version 99" in r.output
    assert snapshot(store) == before


def test_encoder_mismatch_from_cli(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    r = runner.invoke(app, ["store", "search", str(store), "rocks", "--encoder", "hashing-128"])
    assert r.exit_code == EncoderMismatchError.exit_code and "hashing-384" in r.output
    f = tmp_path / "more.txt"
    f.write_text("a new fact\n")
    r = runner.invoke(app, ["store", "add", str(store), str(f), "--encoder", "hashing-128"])
    assert r.exit_code == EncoderMismatchError.exit_code
    assert snapshot(store) == before


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no knowledge store"):
        KnowledgeStore.open(tmp_path / "nothing")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match="not a knowledge store"):
        KnowledgeStore.open(tmp_path / "dir")


def test_inconsistent_store_is_reported(store: Path) -> None:
    lines = (store / "facts.jsonl").read_text().splitlines()
    (store / "facts.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(StoreError, match="inconsistent"):
        KnowledgeStore.open(store)


# ------------------------------------------------------------------ real kills

CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from retrieval import store as S
    from retrieval.encoder import HashingEncoder
    from core.types import Fact

    mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class SlowEncoder(HashingEncoder):
        name = "hashing-384"
        def encode(self, texts, batch_size=64, progress=False):
            if mode == "encode":
                print("ENCODING", flush=True)
                time.sleep(30)
            return super().encode(texts, batch_size, progress)

    if mode == "write":  # stall after the facts file is written, before index and manifest
        from retrieval.store import persistence as P
        real = P._write_file
        def slow(p, data):
            real(p, data)
            if p.name == "facts.jsonl":
                print("WRITING", flush=True)
                time.sleep(30)
        P._write_file = slow
    if mode == "swap":  # stall between moving the old store away and moving the new one in
        real_rename = os.rename
        def slow_rename(a, b):
            real_rename(a, b)
            if ".old-" in str(b):
                print("SWAPPING", flush=True)
                time.sleep(30)
        os.rename = slow_rename

    enc = SlowEncoder()
    with S.KnowledgeStore.open(path, encoder=enc, writable=True) as ks:
        print("LOCKED", flush=True)
        if mode == "hold":
            time.sleep(float(sys.argv[4]))
        ks.add([Fact("", f"new fact {{i}} with words {{i % 97}} and {{i % 13}}") for i in range(n)],
               batch_size=512)
        print("SAVING", flush=True)
    print("DONE", flush=True)
    """
)


def start_child(tmp_path: Path, mode: str, store: Path, n: int, *extra: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    return subprocess.Popen([sys.executable, str(script), mode, str(store), str(n), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if marker in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode} before {marker}: {proc.stderr.read()}")  # type: ignore[union-attr]
    raise AssertionError(f"no {marker} from child within {timeout} s")


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("mode, marker", [("encode", "ENCODING"), ("write", "WRITING"), ("swap", "SWAPPING")])
def test_sigkill_mid_add_leaves_previous_store(store: Path, tmp_path: Path, mode: str, marker: str) -> None:
    before = snapshot(store)
    proc = start_child(tmp_path, mode, store, 3000)
    try:
        wait_for(proc, marker)
    finally:
        kill(proc)
    leftovers = sorted(p.name for p in store.parent.iterdir() if p.name.startswith((".kb.", "kb.")))
    if mode == "swap":
        assert not store.exists() and any(".old-" in n for n in leftovers)
    # A reader (no lock, no repair) already sees the previous store, byte for byte.
    assert_intact(store, len(BASE))
    # A writer repairs: the previous store back in place, the temp folders gone.
    with KnowledgeStore.open(store, writable=True) as ks:
        assert len(ks) == len(BASE)
    assert snapshot(store) == before
    assert [p.name for p in store.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []
    # And the store still takes writes.
    with KnowledgeStore.open(store, writable=True) as ks:
        ks.add([Fact("after", "a fact added after the crash")])
    assert_intact(store, len(BASE) + 1)


@pytest.mark.slow
def test_sigkill_at_random_instants(store: Path, tmp_path: Path) -> None:
    """Kill a real add+save of 20,000 facts at random moments: the store is always the old or the new one."""
    rng = random.Random(7)
    seen = set()
    for _ in range(6):
        proc = start_child(tmp_path, "plain", store, 20000)
        wait_for(proc, "LOCKED")
        time.sleep(rng.uniform(0.0, 2.0))
        if proc.poll() is None:
            kill(proc)
        else:
            proc.wait()
        with KnowledgeStore.open(store, writable=True) as ks:  # repairs if needed
            n = len(ks)
            assert n in (len(BASE), len(BASE) + 20000)
            assert ks._index.ntotal == n
            seen.add(n)
            if n != len(BASE):
                ks.remove([f.id for f in ks if f.id not in {b.id for b in BASE}])
        assert_intact(store, len(BASE))
    assert len(BASE) in seen


# ------------------------------------------------------------------ two writers


def test_second_writer_fails_clearly_then_waits(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = start_child(tmp_path, "hold", store, 5, "3")
    try:
        wait_for(proc, "LOCKED")
        monkeypatch.setenv("MICROTHEORY_STORE_LOCK_TIMEOUT", "0.3")
        t = time.monotonic()
        with pytest.raises(StoreError, match="being written by another process"):
            KnowledgeStore.open(store, writable=True)
        assert time.monotonic() - t < 3
        r = runner.invoke(app, ["store", "remove", str(store), "b1"])
        assert r.exit_code == StoreError.exit_code and "being written" in r.output
        assert len(KnowledgeStore.open(store)) == len(BASE)  # readers are never blocked
        # With a longer timeout the second writer waits for the first and sees its facts.
        monkeypatch.setenv("MICROTHEORY_STORE_LOCK_TIMEOUT", "60")
        with KnowledgeStore.open(store, writable=True) as ks:
            assert len(ks) == len(BASE) + 5
            ks.remove(["b1"])
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            kill(proc)
    ks = KnowledgeStore.open(store)
    assert len(ks) == len(BASE) + 4 and "b1" not in ks


# ------------------------------------------------------------------ readers during writes


def test_readers_never_fail_while_a_writer_swaps(store: Path) -> None:
    """Readers take no lock: while a writer commits 15 times, every open sees a whole store."""
    import threading

    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(15):
                with KnowledgeStore.open(store, writable=True) as ks:
                    ks.add([Fact(f"w{i}", f"writer fact {i} on minerals")])
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
        finally:
            done.set()

    # Warm up in this thread first: a module imported lazily by both threads at once can hit
    # CPython 3.11's "AST constructor recursion depth mismatch" SystemError (a compile race in
    # the interpreter, not in the store), seen once under load.
    with KnowledgeStore.open(store, writable=True) as ks:
        ks.add([Fact("warm", "a warm-up fact on rocks")])
    KnowledgeStore.open(store)
    t = threading.Thread(target=writer)
    t.start()
    counts = []
    while not done.is_set():
        ks = KnowledgeStore.open(store)
        assert ks._index.ntotal == len(ks)
        counts.append(len(ks))
    t.join()
    assert not errors
    assert counts == sorted(counts) and len(counts) > 1
    assert len(KnowledgeStore.open(store)) == len(BASE) + 16


# ------------------------------------------------------------------ damaged stores and repair


def _drop_recorded_size(p: Path) -> None:
    """A store saved before the manifest recorded the index size."""
    m = json.loads((p / "manifest.json").read_text())
    del m["index"]["bytes"]
    (p / "manifest.json").write_text(json.dumps(m))


def _truncate(p: Path) -> None:
    os.truncate(p / "index.faiss", 1000)


def _truncate_old_store(p: Path) -> None:
    _drop_recorded_size(p)
    _truncate(p)


def _garbage(p: Path) -> None:
    _drop_recorded_size(p)
    (p / "index.faiss").write_bytes(b"\x00not a faiss index" * 100)


def _delete(p: Path) -> None:
    (p / "index.faiss").unlink()


def _one_fact_more(p: Path) -> None:
    with open(p / "facts.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "extra", "text": "a fact added by hand"}) + "\n")


DAMAGE = {"truncated": (_truncate, "truncated"), "truncated-old-store": (_truncate_old_store, "cannot be read"),
          "garbage": (_garbage, "cannot be read"), "deleted": (_delete, "missing"),
          "facts-edited": (_one_fact_more, "inconsistent")}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_index_says_repair_and_repair_fixes_it(store: Path, tmp_path: Path, damage: str) -> None:
    hurt, phrase = DAMAGE[damage]
    hurt(store)
    def facts() -> list[Fact]:
        return [Fact.from_json(json.loads(x)) for x in (store / "facts.jsonl").read_text().splitlines()]

    facts_before = facts()
    for args in (["info", str(store)], ["search", str(store), "rocks"]):
        r = runner.invoke(app, ["store", *args])
        assert r.exit_code == StoreError.exit_code, r.output
        assert r.output.count("\n") == 1 and phrase in r.output  # one line
        assert f"microtheory store repair {store}" in r.output
        assert not any(m in r.output for m in ("Error in", ".cpp", "faiss/", "Traceback"))  # no raw FAISS message
    r = runner.invoke(app, ["store", "export", str(store), "--out", str(tmp_path / "out.jsonl")])
    n = len(BASE) + (damage == "facts-edited")
    assert r.exit_code == 0 and f"wrote {n} facts" in r.output and "store repair" in r.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == n
    r = runner.invoke(app, ["store", "repair", str(store)])
    assert r.exit_code == 0 and "repaired" in r.output, r.output
    assert facts() == facts_before  # the source of truth is kept as it was
    assert_intact(store, n)
    r = runner.invoke(app, ["store", "repair", str(store)])
    assert r.exit_code == 0 and "healthy" in r.output
    assert not Path(str(store) + ".lock").exists()


def test_repair_leaves_a_healthy_store_alone_unless_forced(store: Path) -> None:
    from retrieval.store import repair_store

    before = snapshot(store)
    res = repair_store(store)
    assert not res.repaired and res.problems == [] and snapshot(store) == before
    res = repair_store(store, force=True)
    assert res.repaired and res.facts == len(BASE)
    assert (store / "facts.jsonl").read_bytes() == before["facts.jsonl"]
    assert_intact(store, len(BASE))


def test_repair_keeps_proofs_and_drops_unreadable_ones(store: Path) -> None:
    from core.types import Proof
    from retrieval.store import repair_store

    with KnowledgeStore.open(store, writable=True) as ks:
        ks.add_proofs([Proof("q1", "p1", "h", ("b1", "b2")), Proof("q2", "p1", "h", ("b3",))])
    with open(store / "proofs.jsonl", "a") as fh:
        fh.write("{broken\n")
    _truncate(store)
    res = repair_store(store)
    assert res.repaired and (res.proofs_kept, res.proofs_dropped) == (2, 1)
    assert {p.question_id for p in KnowledgeStore.open(store).proofs()} == {"q1", "q2"}


def test_repair_refuses_corrupt_facts_and_changes_nothing(store: Path) -> None:
    with open(store / "facts.jsonl", "a") as fh:
        fh.write("{not json\n")
    before = snapshot(store)
    r = runner.invoke(app, ["store", "repair", str(store)])
    assert r.exit_code == StoreError.exit_code and f"facts.jsonl:{len(BASE) + 1}: corrupt" in r.output
    assert snapshot(store) == before


def test_repair_without_manifest_needs_the_encoder(store: Path) -> None:
    (store / "manifest.json").unlink()
    _delete(store)
    r = runner.invoke(app, ["store", "repair", str(store)])
    assert r.exit_code == StoreError.exit_code and "--encoder" in r.output
    r = runner.invoke(app, ["store", "repair", str(store), "--encoder", "hashing"])
    assert r.exit_code == 0, r.output
    assert_intact(store, len(BASE))


def test_export_refuses_to_write_into_the_store(store: Path) -> None:
    before = snapshot(store)
    r = runner.invoke(app, ["store", "export", str(store), "--out", str(store / "facts.jsonl")])
    assert r.exit_code == InputError.exit_code and snapshot(store) == before


# ------------------------------------------------------------------ lock files


def test_lock_file_is_removed_when_a_writer_ends(store: Path) -> None:
    lock = Path(str(store) + ".lock")
    with KnowledgeStore.open(store, writable=True) as ks:
        assert lock.exists()
        ks.add([Fact("n1", "a new fact")])
    assert not lock.exists()
    with pytest.raises(RuntimeError):
        with KnowledgeStore.open(store, writable=True):
            raise RuntimeError("boom")
    assert not lock.exists()
    with pytest.raises(StoreError, match="already exists"):
        KnowledgeStore.create(store, encoder="hashing")
    assert not lock.exists()
    from retrieval.store import wait_unlocked

    assert wait_unlocked(store, timeout=1) and not lock.exists()
    assert [p.name for p in store.parent.iterdir() if p.name.endswith(".lock")] == []


def test_leftovers_of_earlier_versions_are_recovered(store: Path) -> None:
    """Before the swap moved to core.outputs, a killed writer left `<name>.old-XXXX` (no dot)."""
    before = snapshot(store)
    legacy = store.with_name("kb.old-1a2b3c4d")
    os.rename(store, legacy)
    store.with_name("kb.tmp-deadbeef").mkdir()
    assert_intact(store, len(BASE))  # a reader finds the old copy
    with KnowledgeStore.open(store, writable=True) as ks:
        assert len(ks) == len(BASE)
    assert snapshot(store) == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["kb"]
