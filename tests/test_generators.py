"""Generator backends: the protocol, spec parsing, prompts and parsing, the OpenAI client against a
fake in-process server (retries, time-outs, malformed answers, a server that stops), and replay."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from microtheory.generators import (
    Generator,
    GeneratorError,
    ScriptedGenerator,
    get_generator,
    smollm2_gguf_path,
)
from microtheory.generators.fake_server import FakeOpenAIServer
from microtheory.generators.openai import OpenAIGenerator
from microtheory.generators.replay import ReplayGenerator, read_recorded
from microtheory.prompts import build_prompts, extract_statement, parse_premises
from core.errors import InputError

# ------------------------------------------------------------------------------------ prompts


def test_prompts_carry_the_statement_last_and_facts_only_when_given():
    h = "a magnet attracts an iron nail"
    ps = dict(build_prompts(h, facts=[], ids=("direct", "fewshot", "retrieval")))
    assert set(ps) == {"direct", "fewshot"}  # no facts -> no retrieval prompt
    ps = dict(build_prompts(h, facts=["iron is magnetic", "magnets attract magnetic objects"],
                            ids=("direct", "fewshot", "retrieval")))
    assert "- iron is magnetic" in ps["retrieval"]
    for p in ps.values():
        assert extract_statement(p) == h  # the few-shot examples' statements come earlier
    assert ps["fewshot"].count("Statement:") == 3
    with pytest.raises(InputError):
        build_prompts(h, ids=("nope",))
    with pytest.raises(InputError):
        build_prompts("  ")


@pytest.mark.parametrize("text,expected", [
    ("1. Iron is a metal.\n2. Magnets attract iron.", ["Iron is a metal.", "Magnets attract iron."]),
    ("- iron is a metal\n* magnets attract iron\n\u2022 a nail is made of iron",
     ["iron is a metal", "magnets attract iron", "a nail is made of iron"]),
    ("Here are the facts:\n(1) Iron is a metal.\n2) **Magnets attract iron.**\nTherefore, a magnet attracts a nail.",
     ["Iron is a metal.", "Magnets attract iron."]),
    ("Premise 1: iron is a metal\nPremise 2: magnets attract iron", ["iron is a metal", "magnets attract iron"]),
    ("1. Iron is a metal. 2. Magnets attract iron.", ["Iron is a metal.", "Magnets attract iron."]),
    ("Iron is a metal. Magnets attract iron. So a magnet attracts a nail.",
     ["Iron is a metal.", "Magnets attract iron."]),
    ("", []),
    ("   \n ", []),
    ("ok", []),  # a fragment is not a premise
])
def test_parse_premises_formats(text, expected):
    assert parse_premises(text, "a magnet attracts a nail") == expected


def test_parse_premises_drops_restatement_duplicates_and_caps():
    h = "a magnet attracts an iron nail"
    text = "1. A magnet attracts an iron nail.\n2. Iron is a metal.\n3. iron is a metal\n4. a b c d\n5. e f g h\n6. i j k l"
    out = parse_premises(text, h, max_premises=3)
    assert out == ["Iron is a metal.", "a b c d", "e f g h"]


# ------------------------------------------------------------------------------------ factory / protocol


def test_get_generator_specs(tmp_path, monkeypatch):
    g = get_generator("openai:http://127.0.0.1:9/v1#m1")
    assert isinstance(g, OpenAIGenerator) and g.base_url == "http://127.0.0.1:9/v1" and g.model == "m1"
    monkeypatch.setenv("MICROTHEORY_OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("MICROTHEORY_OPENAI_MODEL", "envmodel")
    g = get_generator("openai:")
    assert g.base_url == "http://127.0.0.1:9/v1" and g.model == "envmodel"
    monkeypatch.delenv("MICROTHEORY_OPENAI_BASE_URL")
    with pytest.raises(InputError, match="MICROTHEORY_OPENAI_BASE_URL"):
        get_generator("openai:")
    with pytest.raises(InputError, match="backend"):
        get_generator("nonsense")
    with pytest.raises(InputError, match="unknown generator backend"):
        get_generator("foo:bar")
    with pytest.raises(InputError, match="http"):
        get_generator("openai:ftp://x#m")
    answers = tmp_path / "a.json"
    answers.write_text(json.dumps(["1. x y z\n2. u v w"]))
    s = get_generator(f"scripted:{answers}")
    assert s.generate("p", n=2) == [["1. x y z\n2. u v w"] * 2]
    passthrough = ScriptedGenerator(["a"])
    assert get_generator(passthrough) is passthrough
    assert isinstance(passthrough, Generator)


def test_spec_aliases_shorthands_and_case_reach_the_same_backends():
    from microtheory.generators import GENERATORS
    from microtheory.generators.local import HFGenerator, LlamaCppGenerator

    assert isinstance(get_generator("OpenAI:http://127.0.0.1:9/v1#m"), OpenAIGenerator)
    assert isinstance(get_generator("transformers:some/model"), HFGenerator)
    for spec in ("smollm2", "llama-cpp", "gguf:smollm2", "llamacpp:"):
        g = get_generator(spec)
        assert isinstance(g, LlamaCppGenerator) and g.name == "llama-cpp:SmolLM2-135M-Instruct.Q4_1.gguf", spec
    assert GENERATORS.canonical("gguf") == "llama-cpp" and "transformers" not in GENERATORS.names()
    with pytest.raises(InputError, match="replay: needs at least one file"):
        get_generator("replay")  # a bare name is NAME: with an empty argument


def test_smollm2_gguf_is_found_without_importing_the_package():
    p = smollm2_gguf_path()
    assert p.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and p.stat().st_size > 50_000_000


def test_hf_spec_builds_without_loading():
    from microtheory.generators.local import HFGenerator

    g = get_generator("hf:smollm2")
    assert isinstance(g, HFGenerator) and g.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    g = get_generator("hf:some/model#file.gguf")
    assert g.model_name == "some/model" and g.gguf_file == "file.gguf"


def test_scripted_generator_checks_arguments_and_shapes():
    g = ScriptedGenerator(["a", "b", "c"])
    assert g.generate(["p1", "p2"], n=2) == [["a", "b"], ["c", "a"]]
    assert g.generate("p", n=1) == [["b"]]
    with pytest.raises(InputError):
        g.generate("p", n=0)
    with pytest.raises(InputError):
        g.generate("p", top_p=0)
    g = ScriptedGenerator(lambda prompt, i: f"{extract_statement(prompt)}-{i}")
    assert g.generate("Statement: x", n=2) == [["x-0", "x-1"]]


# ------------------------------------------------------------------------------------ openai client


def _gen(srv: FakeOpenAIServer, **kw) -> OpenAIGenerator:
    kw.setdefault("retries", 2)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    return OpenAIGenerator(srv.base_url, kw.pop("model", "fake-model"), **kw)


def test_openai_chat_and_completions_with_sampling_options():
    with FakeOpenAIServer(reply=lambda p, i: f"answer {i} to {p[-3:]}") as srv:
        g = _gen(srv, api_key="sk-test")
        out = g.generate(["aaa", "bbb"], n=2, temperature=0.3, top_p=0.9, max_tokens=17, seed=5, stop=["\n\n"])
        assert out == [["answer 5 to aaa", "answer 6 to aaa"], ["answer 5 to bbb", "answer 6 to bbb"]]
        req = srv.requests[0]
        assert req["messages"][-1] == {"role": "user", "content": "aaa"}
        assert (req["temperature"], req["top_p"], req["max_tokens"], req["seed"], req["n"], req["stop"]) == \
            (0.3, 0.9, 17, 5, 2, ["\n\n"])
        assert srv.headers[0].get("Authorization") == "Bearer sk-test"
        assert g.stats.calls == 2 and g.stats.candidates == 4
        c = _gen(srv, endpoint="completions")
        assert c.generate("zzz", n=1) == [["answer 0 to zzz"]]
        assert srv.requests[-1]["prompt"] == "zzz"


def test_openai_server_that_ignores_n_is_asked_again_with_new_seeds():
    with FakeOpenAIServer(reply=lambda p, i: f"s{i}", honour_n=False) as srv:
        g = _gen(srv)
        assert g.generate("p", n=3, seed=10) == [["s10", "s11", "s12"]]
        assert [r["seed"] for r in srv.requests] == [10, 11, 12]
        # Learned: later prompts go one sample per request from the start.
        g.generate("q", n=2, seed=0)
        assert [r["n"] for r in srv.requests[3:]] == [1, 1]


def test_openai_model_is_discovered_from_models_endpoint():
    with FakeOpenAIServer(model="served-model") as srv:
        g = OpenAIGenerator(srv.base_url, None, retries=0)
        g.generate("p")
        assert srv.requests[0]["model"] == "served-model" and g.name.endswith("#served-model")


def test_openai_retries_transient_errors_with_backoff(monkeypatch):
    import microtheory.generators.openai as oa

    waits: list[float] = []
    monkeypatch.setattr(oa.time, "sleep", waits.append)
    with FakeOpenAIServer() as srv:
        srv.faults = ["503", "429", "drop"]
        g = _gen(srv, retries=3, backoff=0.05, breaker=0)
        out = g.generate("p", n=1)
        assert len(out[0]) == 1 and out[0][0].startswith("1.")
        assert g.stats.retries == 3
    # exponential backoff with full jitter: wait i is random in [0, 0.05 * 2**i]
    assert len(waits) == 3 and all(0 <= w <= 0.05 * 2 ** i for i, w in enumerate(waits))
    assert len(set(waits)) == 3


def test_openai_gives_up_with_a_clear_error_after_retries():
    with FakeOpenAIServer() as srv:
        srv.faults = ["503"] * 5
        g = _gen(srv, retries=2)
        with pytest.raises(GeneratorError, match=r"failed after 3 attempts: HTTP 503"):
            g.generate("p")
        assert len(srv.requests) == 3 and g.stats.failures == 1


def test_openai_timeout():
    with FakeOpenAIServer(slow_seconds=1.0) as srv:
        srv.faults = ["slow", "slow"]
        g = _gen(srv, timeout=0.2, retries=1)
        with pytest.raises(GeneratorError, match=r"within 0.2 s"):
            g.generate("p")


@pytest.mark.parametrize("fault,match", [
    ("malformed", "malformed answer .*not JSON"),
    ("no-choices", "no 'choices' list"),
    ("400", r"rejected the request: HTTP 400.*scripted 400.*base URL"),
])
def test_openai_bad_answers_fail_fast(fault, match):
    with FakeOpenAIServer() as srv:
        srv.faults = [fault]
        g = _gen(srv, retries=3)
        with pytest.raises(GeneratorError, match=match):
            g.generate("p")
        assert len(srv.requests) == 1  # not retried: a bad answer does not get better


def test_openai_empty_content_is_returned_as_empty_text():
    with FakeOpenAIServer() as srv:
        srv.faults = ["empty"]
        assert _gen(srv).generate("p", n=1) == [[""]]


def test_openai_server_down_and_stopping_mid_run():
    srv = FakeOpenAIServer().start()
    g = _gen(srv, retries=1)
    assert g.health()
    assert len(g.generate("p")[0]) == 1
    srv.stop()
    assert not g.health()
    with pytest.raises(GeneratorError, match=r"cannot connect.*Is it running"):
        g.generate("p")
    srv.start()  # same port: the client recovers without being rebuilt
    try:
        assert len(g.generate("p")[0]) == 1
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------ replay


def test_replay_generations_jsonl(tmp_path: Path):
    f = tmp_path / "gen.jsonl"
    recs = [{"question_id": "q1", "hypothesis": "A nail is attracted to a magnet.", "generator": "m", "prompt_id": "fewshot",
             "premises": ["a nail is made of iron", "magnets attract iron"]},
            {"question_id": "q1", "hypothesis": "a nail is attracted to a magnet", "generator": "m", "prompt_id": "direct",
             "premises": ["iron is magnetic", "a nail is iron"]}]
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    g = get_generator(f"replay:{f}")
    assert isinstance(g, ReplayGenerator)
    prompts = dict(build_prompts("a nail is attracted to a magnet", ids=("fewshot", "direct")))
    # Records made by the same prompt template are replayed for that template only...
    [cands] = g.generate(prompts["fewshot"], n=5)
    assert [parse_premises(c) for c in cands] == [["a nail is made of iron", "magnets attract iron"]]
    [cands] = g.generate(prompts["direct"], n=5)
    assert [parse_premises(c) for c in cands] == [["iron is magnetic", "a nail is iron"]]
    # ... and a prompt of another shape gets every recorded set.
    [cands] = g.generate("Statement: a nail is attracted to a magnet", n=5)
    assert [parse_premises(c) for c in cands] == [["a nail is made of iron", "magnets attract iron"],
                                                 ["iron is magnetic", "a nail is iron"]]
    assert g.generate("Statement: something never recorded", n=2) == [[]]
    assert set(g.sentences()) == {"a nail is made of iron", "magnets attract iron", "iron is magnetic", "a nail is iron"}


def test_replay_project_trees_recurse(tmp_path: Path):
    tree = {"id": "t1", "question_id": "q1", "hypothesis": "the nail is attracted by the magnet",
            "sentences": {"sent1": "the nail is made of iron", "sent2": "iron is magnetic",
                          "sent3": "magnets attract magnetic objects", "int1": "the nail is magnetic"},
            "proof": "sent1 & sent2 -> int1; int1 & sent3 -> hypothesis;"}
    f = tmp_path / "trees.jsonl"
    f.write_text(json.dumps(tree) + "\n")
    g = ReplayGenerator(f)
    assert [r.premises for r in g.lookup("The nail is attracted by the magnet.")] == \
        [("the nail is magnetic", "magnets attract magnetic objects")]
    assert [r.premises for r in g.lookup("the nail is magnetic")] == [("the nail is made of iron", "iron is magnetic")]


def test_replay_bad_files(tmp_path: Path):
    with pytest.raises(InputError, match="not found"):
        read_recorded(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n')
    with pytest.raises(InputError, match="not a replayable file"):
        read_recorded(bad)
    bad.write_text('{"hypothesis": "h h h", "premises": "not a list"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: 'premises' must be a list"):
        read_recorded(bad)


@pytest.mark.data
def test_replay_entailmentbank_files(data_dir: Path):
    dev = ReplayGenerator(data_dir / "entailmentbank" / "task_1" / "dev.jsonl")
    train = ReplayGenerator(data_dir / "entailmentbank" / "angles" / "task_1" / "train.jsonl")
    assert len(dev.statements()) >= 187 and len(train.statements()) >= 1313
    h = "the sun rising and setting is the event that occurs once per day"
    [cands] = dev.generate(build_prompts(h, ids=("direct",))[0][1], n=3)
    assert cands and len(parse_premises(cands[0])) >= 2


def test_parse_premises_drops_talk_about_the_task():
    text = "1. This statement is incomplete.\n2. The sentence is clear and well written.\n3. Iron is a metal."
    assert parse_premises(text) == ["Iron is a metal."]


def test_parse_premises_drops_copies_of_the_worked_examples():
    text = "1. An iron nail is attracted to a magnet.\n2. Magnets attract magnetic materials.\n3. Rocks are hard."
    assert parse_premises(text, "rocks can scratch glass") == ["Rocks are hard."]
