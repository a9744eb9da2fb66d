"""Population: search, verification, storage with provenance, resumability and faults.

Fast: ScriptedGenerator / the fake OpenAI server, OverlapScorer, HashingEncoder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from microtheory.generators import GeneratorError, ScriptedGenerator
from microtheory.generators.fake_server import FakeOpenAIServer
from microtheory.generators.openai import OpenAIGenerator
from microtheory.populate import (PopulateConfig, PopulateOptions, ProofSearch, default_log_path, populate,
                                  read_log)
from microtheory.prompts import extract_statement
from retrieval.encoder import HashingEncoder
from retrieval.entail import OverlapScorer
from retrieval.store import KnowledgeStore
from core.types import Fact, Question

HYPS = {
    "q1": "a magnet attracts an iron nail",
    "q2": "plants need sunlight to grow",
    "q3": "water freezes below zero degrees",
}
# Per statement: what the "model" proposes. The overlap scorer accepts a set that covers >= 75% of
# the statement's content words.
ANSWERS = {
    "a magnet attracts an iron nail": [
        "1. A magnet attracts iron.\n2. An iron nail is made of iron.",       # accepted
        "1. a magnet attracts iron\n2. an iron nail is made of iron!",        # paraphrase of the first
        "1. Cats are mammals.\n2. Dogs bark loudly at night.",                # rejected
    ],
    "plants need sunlight to grow": [
        "1. Plants need energy to grow.\n2. Sunlight gives plants energy.",
        "1. The moon orbits the earth.\n2. Rocks are hard objects.",
    ],
    "water freezes below zero degrees": [
        "1. Liquids are wet things.\n2. Ice is cold stuff.",                  # nothing acceptable
    ],
    # depth 1: a premise of q1 decomposed further
    "An iron nail is made of iron.": [
        "1. A nail is made of metal.\n2. Iron nail is metal made of iron.",
    ],
}


def reply(prompt: str, i: int) -> str:
    s = extract_statement(prompt) or ""
    options = ANSWERS.get(s) or ANSWERS.get(s.rstrip(".")) or []
    return options[i % len(options)] if options else "I don't know."


def questions(ids=("q1", "q2", "q3")) -> list[Question]:
    return [Question(q, f"stem {q}?", {"A": "x", "B": "y"}, "A", hypothesis=HYPS[q]) for q in ids]


def cfg(**kw) -> PopulateConfig:
    # The overlap double scores a set by word coverage, so one premise alone often "entails" these
    # short statements: minimal-set pruning is off here and tested with a set-aware double below.
    base = dict(prompts=("direct",), samples=3, max_depth=0, node_budget=4, save_every=1, seed=None, minimal=False)
    base.update(kw)
    return PopulateConfig(**base)


def run(tmp_path: Path, gen, qs=None, **kw):
    c = kw.pop("config", None) or cfg()
    opts = PopulateOptions(**kw)
    return populate(qs or questions(), tmp_path / "ks", gen, scorer=OverlapScorer(), encoder=HashingEncoder(),
                    config=c, options=opts, progress=False)


def test_populate_keeps_only_accepted_sentences_with_provenance(tmp_path):
    gen = ScriptedGenerator(reply)
    s = run(tmp_path, gen)
    assert (s.attempted, s.proved, s.unproved, s.failed) == (3, 2, 1, 0)
    ks = KnowledgeStore.open(tmp_path / "ks")
    texts = {f.text for f in ks}
    assert texts == {"A magnet attracts iron.", "An iron nail is made of iron.", "Plants need energy to grow.",
                     "Sunlight gives plants energy."}
    assert s.sentences_added == 4 and s.sentences_kept == 4
    # Rejected: the cat/dog set, the moon/rocks set and the liquids/ice set, never stored.
    assert s.sentences_rejected == 6
    f = ks.find_text("A magnet attracts iron.")
    assert f.source == "generated"
    [prov] = f.provenance
    assert prov["question_id"] == "q1" and prov["prompt_id"] == "direct" and prov["generator"] == "scripted"
    assert prov["step_score"] >= 0.75 and prov["role"] == "leaf" and prov["proof_id"].startswith("gen-")
    proofs = {p.question_id: p for p in ks.proofs()}
    assert set(proofs) == {"q1", "q2"}
    assert {ks.get(i).text for i in proofs["q1"].leaves} == {"A magnet attracts iron.", "An iron nail is made of iron."}
    assert proofs["q1"].score >= 0.75
    log = read_log(default_log_path(tmp_path / "ks"))
    assert log["q3"]["status"] == "unproved" and log["q1"]["status"] == "proved"
    assert log["q1"]["candidates"] == 2  # the paraphrase was merged into the first set
    assert log["q1"]["trees"][0]["premises"][0]["text"] == "A magnet attracts iron."


def test_recursion_decomposes_a_premise_within_depth_and_budget(tmp_path):
    s = run(tmp_path, ScriptedGenerator(reply), qs=questions(("q1",)), config=cfg(max_depth=1, node_budget=4))
    assert s.proved == 1
    ks = KnowledgeStore.open(tmp_path / "ks")
    [proof] = ks.proofs()
    leaves = {ks.get(i).text for i in proof.leaves}
    # "An iron nail is made of iron." was proved by two deeper premises: it is now an intermediate.
    assert leaves == {"A magnet attracts iron.", "A nail is made of metal.", "Iron nail is metal made of iron."}
    inter = ks.find_text("An iron nail is made of iron.")
    assert inter.provenance[0]["role"] == "intermediate"
    # Budget 1: only the hypothesis is expanded, nothing deeper.
    s2 = populate(questions(("q1",)), tmp_path / "ks2", ScriptedGenerator(reply), scorer=OverlapScorer(),
                  encoder=HashingEncoder(), config=cfg(max_depth=3, node_budget=1), progress=False)
    ks2 = KnowledgeStore.open(tmp_path / "ks2")
    assert s2.proved == 1 and ks2.find_text("A nail is made of metal.") is None


def test_a_stored_fact_that_entails_a_premise_grounds_it(tmp_path):
    path = tmp_path / "ks"
    with KnowledgeStore.create(path, encoder=HashingEncoder()) as ks:
        ks.add([Fact("wt1", "a magnet always attracts iron", "corpus")])
    s = populate(questions(("q1",)), path, ScriptedGenerator(reply), scorer=OverlapScorer(), config=cfg(),
                 progress=False)
    assert s.proved == 1
    ks = KnowledgeStore.open(path)
    [proof] = ks.proofs()
    assert "wt1" in proof.leaves  # the corpus fact, not a new generated copy
    assert ks.find_text("A magnet attracts iron.") is None


def test_circular_candidates_are_rejected(tmp_path):
    gen = ScriptedGenerator(["1. A magnet attracts an iron nail!\n2. Magnets are objects made of metal."])
    s = run(tmp_path, gen, qs=questions(("q1",)))
    assert s.proved == 0 and s.unproved == 1


class NeedsBoth:
    """Entailment double: a set entails the statement when it holds both premises of NEEDED, or
    when any premise says "restate" (a stand-in for a paraphrase of the statement)."""

    threshold = 0.5
    NEEDED = {"A magnet attracts iron.", "An iron nail is made of iron."}

    def score_batch(self, items, batch_size=64):
        return np.asarray([0.9 if self.NEEDED <= set(p) else (0.8 if "restate" in " ".join(p) else 0.1)
                           for p, _ in items])


def test_minimal_pruning_drops_padding_and_rejects_restatements(tmp_path):
    padded = "1. A magnet attracts iron.\n2. Cats are mammals.\n3. An iron nail is made of iron."
    restated = "1. I restate that magnets pull iron nails.\n2. Dogs bark loudly at night."
    qs = questions(("q1",))
    s = populate(qs, tmp_path / "ks", ScriptedGenerator([padded, restated]), scorer=NeedsBoth(),
                 encoder=HashingEncoder(), config=cfg(minimal=True, samples=2), progress=False)
    assert s.proved == 1
    ks = KnowledgeStore.open(tmp_path / "ks")
    # The padding premise is dropped (the other two entail without it); the restatement set, which
    # one premise alone "entails", is rejected whole.
    assert {f.text for f in ks} == NeedsBoth.NEEDED
    assert s.sentences_rejected == 3
    # Without pruning the padded set is stored as generated, and so is the restatement.
    s2 = populate(qs, tmp_path / "ks2", ScriptedGenerator([padded, restated]), scorer=NeedsBoth(),
                  encoder=HashingEncoder(), config=cfg(minimal=False, samples=2), progress=False)
    assert s2.sentences_kept == 5


@pytest.mark.parametrize("responses,reason", [
    ([""], "empty output"),
    (["Sure! Here you go:"], "malformed generator output"),
    ([GeneratorError("server at x timed out")], "timed out"),
])
def test_generator_faults_fail_the_question_and_the_run_goes_on(tmp_path, responses, reason):
    def flaky(prompt, i):
        if extract_statement(prompt) == HYPS["q2"]:
            r = responses[0]
            if isinstance(r, BaseException):
                raise r
            return r
        return reply(prompt, i)

    s = run(tmp_path, ScriptedGenerator(flaky))
    assert (s.proved, s.failed, s.unproved) == (1, 1, 1)
    log = read_log(default_log_path(tmp_path / "ks"))
    assert log["q2"]["status"] == "failed" and reason in log["q2"]["reason"]


def test_rerun_skips_done_and_retries_only_failed(tmp_path):
    calls: list[str] = []
    broken = {"on": True}

    def gen_fn(prompt, i):
        s = extract_statement(prompt)
        calls.append(s)
        if broken["on"] and s == HYPS["q2"]:
            raise GeneratorError("connection refused")
        return reply(prompt, i)

    s1 = run(tmp_path, ScriptedGenerator(gen_fn))
    assert (s1.proved, s1.failed, s1.unproved) == (1, 1, 1)
    broken["on"] = False
    calls.clear()
    s2 = run(tmp_path, ScriptedGenerator(gen_fn))
    assert s2.skipped == 2 and s2.attempted == 1 and s2.proved == 1
    assert set(calls) == {HYPS["q2"]}
    ks = KnowledgeStore.open(tmp_path / "ks")
    assert {p.question_id for p in ks.proofs()} == {"q1", "q2"}
    assert ks.find_text("A magnet attracts iron.") is not None  # the first run's facts survived
    # --retry-unproved redoes q3 too, and nothing is duplicated on a third run.
    s3 = run(tmp_path, ScriptedGenerator(gen_fn), retry_unproved=True)
    assert s3.attempted == 1 and s3.unproved == 1
    assert len(KnowledgeStore.open(tmp_path / "ks").proofs()) == 2


def test_server_stopping_mid_run_fails_remaining_questions_then_rerun_completes(tmp_path):
    seen = {"n": 0}
    srv = FakeOpenAIServer(reply=reply).start()
    gen = OpenAIGenerator(srv.base_url, "fake", retries=1, backoff=0.01, timeout=2)

    def stop_after_first(rec):
        seen["n"] += 1
        if seen["n"] == 1:
            srv.stop()

    s1 = run(tmp_path, gen, on_question=stop_after_first)
    # q2 fails (two attempts); q3's attempts open the circuit breaker (4 failures in a row): the run stops
    assert (s1.proved, s1.failed) == (1, 1) and "stopping the run" in s1.aborted
    log = read_log(default_log_path(tmp_path / "ks"))
    assert "Is it running" in log["q2"]["reason"] and "q3" not in log
    assert len(KnowledgeStore.open(tmp_path / "ks").proofs()) == 1
    srv.start()
    try:
        s2 = run(tmp_path, gen)
    finally:
        srv.stop()
    assert s2.skipped == 1 and s2.attempted == 2 and (s2.proved, s2.unproved) == (1, 1)
    assert {p.question_id for p in KnowledgeStore.open(tmp_path / "ks").proofs()} == {"q1", "q2"}


def test_consecutive_failures_stop_the_run_early(tmp_path):
    gen = ScriptedGenerator(lambda p, i: (_ for _ in ()).throw(GeneratorError("down")))
    s = run(tmp_path, gen, config=cfg(max_consecutive_failures=2))
    assert s.attempted == 2 and s.failed == 2 and "2 questions failed in a row" in s.aborted


def test_interrupt_keeps_completed_questions(tmp_path):
    def interrupt(rec):
        if rec["question_id"] == "q2":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, ScriptedGenerator(reply), config=cfg(save_every=100), on_question=interrupt)
    log = read_log(default_log_path(tmp_path / "ks"))
    assert set(log) == {"q1", "q2"}
    assert {p.question_id for p in KnowledgeStore.open(tmp_path / "ks").proofs()} == {"q1", "q2"}
    s = run(tmp_path, ScriptedGenerator(reply))
    assert s.skipped == 2 and s.attempted == 1


def test_hypothesis_made_from_question_when_missing(tmp_path):
    q = Question("qx", "What does a magnet attract?", {"A": "an iron nail", "B": "wood"}, "A")
    seen = []
    gen = ScriptedGenerator(lambda p, i: seen.append(extract_statement(p)) or "1. x y z\n2. u v w")
    s = run(tmp_path, gen, qs=[q])
    assert s.attempted == 1 and seen and "iron nail" in seen[0]
    bad = Question("qy", "What?", {"A": "a"}, None)
    s = run(tmp_path / "b", ScriptedGenerator(reply), qs=[bad])
    assert s.failed == 1


def test_proof_search_seeds_are_deterministic():
    seeds = []

    class Rec(ScriptedGenerator):
        def generate(self, prompts, n=1, **kw):
            seeds.append(kw["seed"])
            return super().generate(prompts, n, **kw)

    search = ProofSearch(Rec(reply), OverlapScorer(), HashingEncoder(), None, cfg(seed=7))
    a = search.prove("q1", HYPS["q1"])
    search.prove("q1", HYPS["q1"])
    assert a.status == "proved" and seeds[0] == seeds[1] and seeds[0] is not None


def test_cli_populate_with_replay(tmp_path):
    from cli.main import app

    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps(q.to_json()) for q in questions()) + "\n")
    gfile = tmp_path / "gen.jsonl"
    gfile.write_text("\n".join(json.dumps({"question_id": "q", "hypothesis": h, "generator": "m", "prompt_id": "p",
                                           "premises": parse}) for h, parse in [
        (HYPS["q1"], ["A magnet attracts iron.", "An iron nail is made of iron."]),
        (HYPS["q2"], ["The moon orbits the earth.", "Rocks are hard objects."]),
    ]) + "\n")
    runner = CliRunner()
    args = ["populate", "--questions", str(qfile), "--store", str(tmp_path / "ks"), "--generator", f"replay:{gfile}",
            "--scorer", "overlap", "--encoder", "hashing", "--prompts", "direct", "--max-depth", "0", "--no-minimal",
            "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["proved"], out["unproved"], out["failed"]) == (1, 1, 1)  # q3: replay has nothing -> failed
    assert out["sentences_added"] == 2 and out["sentences_rejected"] == 2
    r = runner.invoke(app, args[:-1])
    assert r.exit_code == 0 and "1 attempted" in r.output
    r = runner.invoke(app, ["populate", "--questions", str(tmp_path / "nope.jsonl"), "--store", str(tmp_path / "k"),
                            "--generator", f"replay:{gfile}", "--scorer", "overlap"])
    # An InputError: one line naming the file, non-zero exit (2 once cli.common raises typer's Exit).
    assert r.exit_code != 0 and "nope.jsonl" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["populate", "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "Example" in r.output
    assert "…" not in r.output and "--max-failures" in r.output and "--breaker-seconds" in r.output  # nothing cut


def test_grounding_in_a_separate_corpus_copies_the_fact(tmp_path):
    corpus = tmp_path / "corpus"
    with KnowledgeStore.create(corpus, encoder=HashingEncoder()) as ks:
        ks.add([Fact("wt1", "a magnet always attracts iron", "corpus", [{"corpus": "test"}]),
                Fact("wt2", "bananas are yellow fruit", "corpus")])
    s = populate(questions(("q1",)), tmp_path / "ks", ScriptedGenerator(reply), scorer=OverlapScorer(),
                 encoder=HashingEncoder(), config=cfg(), corpus=corpus, progress=False)
    assert s.proved == 1 and s.grounded_leaves == 1
    ks = KnowledgeStore.open(tmp_path / "ks")
    assert {f.id for f in ks if f.source == "corpus"} == {"wt1"}  # only the fact a proof uses
    [proof] = ks.proofs()
    assert "wt1" in proof.leaves and ks.get("wt1").provenance == [{"corpus": "test"}]


def test_load_questions_split_filter(tmp_path):
    from microtheory.datasets import read_questions_spec as load_questions

    f = tmp_path / "q.jsonl"
    rows = [dict(q.to_json(), split=sp) for q, sp in zip(questions(), ["train", "test", "train"])]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [q.id for q in load_questions(f, split="train")] == ["q1", "q3"]
    assert len(load_questions(f)) == 3
    from core.errors import InputError

    with pytest.raises(InputError, match="no questions with split"):
        load_questions(f, split="dev")


def test_recorded_live_run_replays_to_the_same_result(tmp_path):
    from microtheory.generators.replay import RecordingGenerator, ReplayGenerator

    rec = tmp_path / "rec.jsonl"
    live = run(tmp_path / "a", RecordingGenerator(ScriptedGenerator(reply), rec))
    lines = [json.loads(x) for x in rec.read_text().splitlines()]
    assert len(lines) == 3 * 3 and {r["prompt_id"] for r in lines} == {"direct"}
    assert lines[0]["raw"] and lines[0]["premises"] == ["A magnet attracts iron.", "An iron nail is made of iron."]
    again = run(tmp_path / "b", ReplayGenerator(rec))
    for key in ("proved", "unproved", "failed", "sentences_added", "sentences_rejected", "candidates"):
        assert getattr(again, key) == getattr(live, key), key


def test_bad_input_lines_are_logged_invalid_once_and_the_run_goes_on(tmp_path):
    from microtheory.datasets import load_question_set

    f = tmp_path / "q.jsonl"
    good = [json.dumps(q.to_json()) for q in questions()]
    f.write_bytes(("\n".join(good[:2]) + "\n{oops\n").encode() + b'{"id": "x", "stem": "\xff"}\n'
                  + (good[2] + "\n").encode())
    qset = load_question_set(f)
    s = run(tmp_path, ScriptedGenerator(reply), qs=qset)
    assert (s.proved, s.unproved, s.invalid, s.attempted) == (2, 1, 2, 3)
    assert "invalid input lines: 2" in "\n".join(s.lines())
    log = read_log(default_log_path(tmp_path / "ks"))
    assert log["line3"]["status"] == "invalid" and "q.jsonl:3: not valid JSON" in log["line3"]["reason"]
    assert "q.jsonl:4: not UTF-8" in log["line4"]["reason"]
    s2 = run(tmp_path, ScriptedGenerator(reply), qs=qset)
    assert s2.skipped == 5 and s2.attempted == 0 and s2.invalid == 0


def test_log_header_keys_resume_by_configuration(tmp_path):
    from core.errors import InputError
    from core.outputs import read_header

    run(tmp_path, ScriptedGenerator(reply))
    log = default_log_path(tmp_path / "ks")
    h = read_header(log)
    assert h["kind"] == "populate" and h["config"]["generator"] == "scripted"
    assert h["config"]["scorer"] == "overlap" and h["config"]["threshold"] == 0.75
    assert h["config"]["search"]["prompts"] == ["direct"] and "save_every" not in h["config"]["search"]
    before = log.read_bytes()
    with pytest.raises(InputError, match=r"another configuration \(search differs\)"):
        run(tmp_path, ScriptedGenerator(reply), config=cfg(samples=2))
    assert log.read_bytes() == before
    # operational settings (save_every, the failure limit) are not part of the configuration
    assert run(tmp_path, ScriptedGenerator(reply), config=cfg(save_every=5)).skipped == 3
    s = run(tmp_path, ScriptedGenerator(reply), config=cfg(samples=2), force=True)
    assert s.skipped == 0 and s.attempted == 3 and read_header(log)["config"]["search"]["samples"] == 2
    # the store's facts survived --force and were merged, not duplicated
    ks = KnowledgeStore.open(tmp_path / "ks")
    assert len([f for f in ks if f.text == "A magnet attracts iron."]) == 1


def test_user_file_as_log_is_refused_and_kept(tmp_path):
    from core.errors import InputError

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(InputError, match="not a populate output"):
        run(tmp_path, ScriptedGenerator(reply), log_path=notes)
    assert notes.read_text() == "my notes\n"
