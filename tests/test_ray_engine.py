"""`--engine ray` gives the local engine's results: same critique records, same store facts and ids,
same QA answers, same populate log, on a local Ray cluster of 2 CPUs started here (no dashboard, no
network); a worker killed mid-run loses and duplicates nothing."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from core.engine import EngineConfig, RayEngine, connect_ray  # noqa: E402
from core.outputs import is_header  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local 2-CPU cluster for the module (starting one takes 10-25 s on a busy 2-core machine)."""
    if ray.is_initialized():
        ray.shutdown()
    # test doubles defined in this module travel to the workers by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    connect_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _engine(workers: int = 2, **kw) -> RayEngine:
    return RayEngine(EngineConfig(kind="ray", workers=workers, **kw))


def _records(p: Path) -> list[dict]:
    return [r for r in (json.loads(x) for x in p.read_text().splitlines() if x.strip()) if not is_header(r)]


# ------------------------------------------------------------------------------------- the engine

class _Dies:
    """Kills its own worker process the first time it sees `victim` (a marker file says it happened)."""

    def __init__(self, marker: str, victim: int):
        self.marker, self.victim = marker, victim

    def __call__(self):
        def work(shard):
            if self.victim in shard and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)  # the actor dies mid-shard, as on a lost node
            return [(x, x * x) for x in shard]
        return work


def test_ordered_map_equals_local(cluster):
    from core.engine import LocalEngine

    items = list(range(47))
    local = list(LocalEngine().map(_Dies("/nonexistent/never", -1), items, shard_size=5))
    assert list(_engine().map(_Dies("/nonexistent/never", -1), items, shard_size=5)) == local


def test_killed_worker_loses_and_duplicates_nothing(cluster, tmp_path):
    marker = tmp_path / "died"
    items = list(range(40))
    out = list(_engine(max_retries=2).map(_Dies(str(marker), victim=17), items, shard_size=4))
    assert marker.exists(), "the worker never died: the test proved nothing"
    assert out == [(x, x * x) for x in items]


def test_worker_error_comes_back_as_itself(cluster):
    from core.errors import ModelError

    def make():
        def work(shard):
            raise ModelError("the model cannot load")
        return work

    with pytest.raises(ModelError, match="the model cannot load"):
        list(_engine().map(make, [1, 2, 3], shard_size=1))


# ------------------------------------------------------------------------------------ batch critique

class _FlagWrong:
    """Critique test double: flags explanations that say 'wrong'; a batch with 'explode' fails."""

    name = "flag-wrong"

    def critique(self, records):
        from core.errors import InputError
        from critique.format import Critique
        from critique.generative import CritiqueResult

        if len(records) > 1 and any("explode" in r.explanation for r in records):
            raise InputError("cannot handle this batch")
        out = []
        for r in records:
            if "explode" in r.explanation:
                out.append(CritiqueResult(r.id, error="unparseable critique", raw="x"))
            elif "wrong" in r.explanation:
                out.append(CritiqueResult(r.id, critique=Critique("It is wrong.", "incorrect_information", "g", "s", 1,
                                                                  flaw_sentence_index=0, confidence=0.9)))
            else:
                out.append(CritiqueResult(r.id, critique=Critique("None", "none", "g", "None", 5)))
        return out


def _critique_input(tmp_path: Path, n: int = 30) -> Path:
    rows = []
    for i in range(n):
        expl = ["Copper is a metal. Metals conduct electricity.", "Copper is wrong about metals.",
                "explode now."][i % 3]
        rows.append(json.dumps({"id": f"q{i}", "question": "Which material conducts electricity best?",
                                "options": {"A": "wood", "B": "copper"}, "answer_key": "Z" if i == 7 else "B",
                                "explanation": expl, "predicted_answer": "B"}))
    rows.insert(11, "{not json")
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_critique_records_equal_local_with_grounded_advice(cluster, tmp_path):
    from critique.advice import Advisor
    from critique.batch import Scale, critique_file
    from core.types import Fact
    from retrieval.encoder import HashingEncoder
    from retrieval.entail import OverlapScorer
    from retrieval.knowledge import knowledge_from_facts

    facts = [Fact("mt:1", "copper is a metal"), Fact("mt:2", "metals conduct electricity")]
    adv = Advisor(knowledge_from_facts(facts, HashingEncoder(64)), OverlapScorer())
    inp = _critique_input(tmp_path)
    local, dist = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    critique_file(inp, local, _FlagWrong(), advisor=adv, batch_size=4, progress=False)
    s = critique_file(inp, dist, _FlagWrong(), advisor=adv, batch_size=4, progress=False, scale=Scale(_engine()))
    assert _records(dist) == _records(local)
    assert s.rows == 31 and s.written == 31 and s.errors == sum("error" in r for r in _records(local)) > 0
    assert [r["line"] for r in _records(dist)] == list(range(1, 32))
    assert local.read_text().splitlines()[0] == dist.read_text().splitlines()[0]  # same header: resume either way


def test_critique_rerun_resumes_where_a_partial_output_stopped(cluster, tmp_path):
    from critique.batch import Scale, critique_file

    inp = _critique_input(tmp_path)
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    critique_file(inp, full, _FlagWrong(), batch_size=4, progress=False)
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:13]) + lines[13][:20])  # killed mid-line after 12 records
    s = critique_file(inp, part, _FlagWrong(), batch_size=4, progress=False, scale=Scale(_engine()))
    assert s.skipped == 12 and s.written == 19
    assert _records(part) == _records(full)


# ------------------------------------------------------------------------------------------- stores

def _store_state(path: Path):
    from retrieval.store import KnowledgeStore

    ks = KnowledgeStore.open(path)
    return [f.to_json() for f in ks], ks.vectors().copy(), ks.info()["encoder"]


def test_store_build_and_add_equal_local(cluster, tmp_path):
    import numpy as np

    from retrieval.store.operations import BuildOptions, InputSpec, add_to_store, build_store

    corpus = Path(__file__).resolve().parent.parent / "corpora" / "science_corpus.jsonl"
    extra = tmp_path / "extra.jsonl"  # new sentences and duplicates of stored ones (provenance merges)
    extra.write_text("\n".join(json.dumps({"text": t}) for t in
                               ["a solid has a definite shape and a definite volume", "copper conducts heat",
                                "ice is the solid form of water", "copper conducts heat"]) + "\n")
    states = []
    warm = _engine(keep_warm=True)  # build and add share the actors (an equal worker factory): a warm pool
    for kind, engine in (("local", None), ("ray", warm)):
        out = tmp_path / kind
        opts = BuildOptions(encoder="hashing-64", batch_size=16, progress=False, engine=engine)
        built = build_store(InputSpec([corpus]), out, opts)
        pool = list(warm._slots)
        added = add_to_store(out, InputSpec([extra], name="extra"), opts)
        states.append((built["count"], added["added"], added["merged"], _store_state(out)))
    assert warm._slots == pool and len(pool) == 2, "the add reused the build's actors"
    warm.close()
    (n0, a0, m0, (facts0, vec0, enc0)), (n1, a1, m1, (facts1, vec1, enc1)) = states
    assert (n1, a1, m1) == (n0, a0, m0) and a0 == 2 and m0 == 2
    assert facts1 == facts0 and enc1 == enc0
    assert np.array_equal(vec1, vec0)


# ----------------------------------------------------------------------------------------- populate

_PREMISES = {
    "a magnet attracts an iron nail": "1. A magnet attracts iron.\n2. An iron nail is made of iron.",
    "plants need sunlight to grow": "1. Plants need energy to grow.\n2. Sunlight gives plants energy.",
    "metals conduct electricity": "1. Metals have free electrons.\n2. Free electrons conduct electricity.",
}


def _reply(prompt: str, i: int) -> str:
    from microtheory.prompts import extract_statement

    s = (extract_statement(prompt) or "").rstrip(".")
    return _PREMISES.get(s, "1. Cats are mammals.\n2. Dogs bark loudly at night.")


def test_populate_equals_local_against_a_server(cluster, tmp_path):
    """Many questions in flight against an OpenAI-compatible server; same store facts, proofs and log."""
    from core.types import Question
    from microtheory.generators.fake_server import FakeOpenAIServer
    from microtheory.populate import GeneratorSettings, PopulateConfig, PopulateOptions, populate, read_log
    from retrieval.entail import OverlapScorer
    from retrieval.store import KnowledgeStore
    from retrieval.store.operations import BuildOptions, InputSpec, build_store

    corpus = tmp_path / "corpus"
    build_store(InputSpec([Path(__file__).resolve().parent.parent / "corpora" / "science_corpus.jsonl"]), corpus,
                BuildOptions(encoder="hashing-64", progress=False))
    hyps = list(_PREMISES) + ["the moon is made of cheese"]
    qs = [Question(f"q{i}", f"stem {i}?", {"A": "x", "B": "y"}, "A", hypothesis=hyps[i % len(hyps)])
          for i in range(12)]
    cfg = PopulateConfig(prompts=("direct",), samples=2, max_depth=0, node_budget=3, save_every=3, seed=None,
                         minimal=False)
    with FakeOpenAIServer(reply=_reply) as srv:
        spec = f"openai:{srv.base_url}#fake"
        http = GeneratorSettings(timeout=10, retries=1)
        outs = []
        for kind, engine in (("local", None), ("ray", _engine(concurrency=3))):
            store = tmp_path / kind
            opts = PopulateOptions(engine=engine, concurrency=3, make_generator=lambda: http.make(spec))
            s = populate(qs, store, http.make(spec), scorer=OverlapScorer(), encoder="hashing-64", config=cfg,
                         corpus=corpus, options=opts, progress=False)
            ks = KnowledgeStore.open(store)
            log = read_log(tmp_path / f"{kind}.populate.jsonl")
            keep = ("status", "proof_ids", "proof_scores", "trees", "candidates", "accepted", "generator_calls")
            outs.append((s.proved, s.unproved, s.failed, sorted((f.id, f.text) for f in ks),
                         sorted((p.question_id, p.proof_id, p.leaves) for p in ks.proofs()),
                         {q: {k: r.get(k) for k in keep} for q, r in log.items()}))
    assert outs[1] == outs[0]
    assert outs[0][0] > 0 and outs[0][1] > 0 and outs[0][3]  # some proved, some not: both paths compared


# ----------------------------------------------------------------------------------------------- qa

def test_qa_answers_equal_local(cluster, tmp_path):
    from retrieval.qa import qa_files
    from retrieval.store.operations import BuildOptions, InputSpec, build_store

    root = Path(__file__).resolve().parent.parent / "corpora"
    corpus = tmp_path / "corpus"
    build_store(InputSpec([root / "science_corpus.jsonl"]), corpus, BuildOptions(encoder="hashing-64", progress=False))
    qs = tmp_path / "q.jsonl"
    lines = (root / "science_questions.jsonl").read_text().splitlines()[:10]
    lines.insert(4, "{not json")  # a bad line: an error record in both
    qs.write_text("\n".join(lines) + "\n")
    local, dist = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    s0 = qa_files(corpus, qs, local, scorer="overlap")
    s1 = qa_files(corpus, qs, dist, scorer="overlap", engine=_engine())
    assert _records(dist) == _records(local) and len(_records(local)) == 11
    assert (s1.answered, s1.errors, s1.correct, s1.grounded) == (s0.answered, s0.errors, s0.correct, s0.grounded)
    assert s1.errors == 1
    again = qa_files(corpus, qs, dist, scorer="overlap", engine=_engine())  # a rerun resumes: nothing to do
    assert again.skipped == 11 and again.written == 0


def test_cli_store_build_with_ray_engine(cluster, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    corpus = Path(__file__).resolve().parent.parent / "corpora" / "science_corpus.jsonl"
    outs = {}
    for kind in ("local", "ray"):
        res = CliRunner().invoke(app, ["store", "build", str(corpus), "--out", str(tmp_path / kind), "-e", "hashing-64",
                                       "--engine", kind, "--workers", "2", "--json"])
        assert res.exit_code == 0, res.output
        outs[kind] = json.loads(res.output)
    assert outs["ray"]["count"] == outs["local"]["count"] == 228
    assert _store_state(tmp_path / "ray")[0] == _store_state(tmp_path / "local")[0]


class _DiesOnce(_FlagWrong):
    """The critique double whose worker process dies the first time it meets row `victim`."""

    def __init__(self, marker: str, victim: str):
        self.marker, self.victim = marker, victim

    def critique(self, records):
        if any(r.id == self.victim for r in records) and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return super().critique(records)


def test_critique_survives_a_killed_worker(cluster, tmp_path):
    """A real job: a worker dies mid-run; OUT still holds exactly one record per row, in order, equal to local."""
    from critique.batch import Scale, critique_file

    inp = _critique_input(tmp_path)
    local, dist, marker = tmp_path / "local.jsonl", tmp_path / "ray.jsonl", tmp_path / "died"
    critique_file(inp, local, _FlagWrong(), batch_size=4, progress=False)
    s = critique_file(inp, dist, _DiesOnce(str(marker), "q20"), batch_size=4, progress=False,
                      scale=Scale(_engine(max_retries=2)))
    assert marker.exists(), "no worker died: the test proved nothing"
    assert s.written == 31 and _records(dist) == _records(local)
