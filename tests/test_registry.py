"""Registries: the primitive, and extensibility proven from outside the package: this module
registers a strategy, a generator backend and an input reader of its own and uses each through the
library API and through the CLI."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.errors import InputError, SolverError
from core.registry import Registry
from core.types import Fact, Question
from microtheory.distill import STRATEGIES, DistillGraph, SelectionRequest, distill, select, take_in_order
from microtheory.generators import GENERATORS, BaseGenerator, Generator, SamplingParams, get_generator
from retrieval.readers import READERS, ReadOptions, read_facts

runner = CliRunner()


# ------------------------------------------------------------------------------------ the primitive
def test_register_get_names_help_and_aliases():
    reg: Registry[object] = Registry("widget")

    @reg.register("round-one", help="the first", aliases=("r1",))
    def one() -> int:
        return 1

    reg.add("square", lambda: 2)
    assert reg.get("round-one") is one and reg.get("r1") is one and reg.canonical("r1") == "round-one"
    assert reg.names() == ("round-one", "square") and list(reg) == ["round-one", "square"] and len(reg) == 2
    assert "r1" in reg and "square" in reg and "nope" not in reg and 3 not in reg
    assert reg.help() == "round-one (the first), square"
    assert reg.entry("square").help == "" and reg.entry("round-one").aliases == ("r1",)


def test_unknown_name_is_an_input_error_listing_the_known_names():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.add("b", 2)
    with pytest.raises(InputError, match=r"unknown widget 'c'; choose one of a, b"):
        reg.get("c")


def test_taken_and_malformed_names_are_refused_unless_replaced():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1, aliases=("x",))
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("b", 2, aliases=("x",))  # an alias is taken too
    for bad in ("", "Upper", "has space", "colon:name", "-lead"):
        with pytest.raises(ValueError, match="lower-case"):
            reg.add(bad, 3)
    reg.add("a", 4, replace=True)
    assert reg.get("a") == 4 and "x" not in reg  # the replaced entry's aliases go with it
    reg.unregister("a")
    assert reg.names() == ()
    with pytest.raises(InputError):
        reg.unregister("a")


def test_builtin_names_are_stable():
    # These names are written into manifests, provenance and configuration files: never rename them.
    assert STRATEGIES.names() == ("random", "usage", "qc-greedy", "qc-exact", "pc")
    assert GENERATORS.names() == ("openai", "llama-cpp", "hf", "replay", "scripted")
    assert READERS.names() == ("text", "docs", "jsonl", "eb-corpus")


def _help_text(*args: str) -> str:
    r = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return " ".join(r.output.replace("\u2502", " ").split())  # without the box's side bars


def test_cli_help_is_generated_from_the_registries():
    text = _help_text("distill", "run")
    for name in STRATEGIES:
        assert f"{name} (" in text, name
    text = _help_text("store", "build")
    for name in (*READERS, "auto"):
        assert f"{name} (" in text, name
    text = _help_text("populate")
    for name in GENERATORS:
        assert f"{name} (" in text, name


# ------------------------------------------------------------------------------------ a new strategy
MY_STRATEGY = "my-test-strategy"


def _reverse_id_order(graph: DistillGraph, request: SelectionRequest) -> tuple[list[int], dict]:
    """Facts in descending id order: nothing any built-in strategy would choose by accident."""
    order = np.argsort(np.asarray(graph.fact_ids))[::-1]
    return take_in_order(graph, order, request), {"note": "reverse ids"}


@pytest.fixture()
def my_strategy() -> Iterator[str]:
    STRATEGIES.register(MY_STRATEGY, help="facts in reverse id order (a test plug-in)")(_reverse_id_order)
    yield MY_STRATEGY
    STRATEGIES.unregister(MY_STRATEGY)


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    trees = [
        {"id": "t1", "question_id": "q1", "hypothesis": "an iron nail is attracted by a magnet",
         "sentences": {"sent1": "iron is attracted by magnets", "sent2": "a nail is made of iron"},
         "proof": "sent1 & sent2 -> hypothesis;"},
        {"id": "t2", "question_id": "q2", "hypothesis": "the sun is the closest star to earth",
         "sentences": {"sent1": "the sun is a star", "sent2": "the sun is the star nearest to earth"},
         "proof": "sent1 & sent2 -> hypothesis;"},
    ]
    src = tmp_path / "trees.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in trees))
    out = tmp_path / "store"
    r = runner.invoke(app, ["distill", "build-store", str(src), "--out", str(out), "--encoder", "hashing", "--json"])
    assert r.exit_code == 0, r.output
    return out


def test_a_strategy_registered_outside_runs_through_the_library(my_strategy: str, store: Path, tmp_path: Path):
    res = distill(store, budget=2, strategy=my_strategy, out=tmp_path / "mt")
    ids = sorted((f.id for f in res.microtheory.facts), reverse=True)
    assert list(res.selection.fact_ids) == ids and len(ids) == 2
    assert res.selection.report["note"] == "reverse ids" and res.selection.report["strategy"] == my_strategy
    assert json.loads((tmp_path / "mt" / "manifest.json").read_text())["strategy"] == my_strategy
    all_ids = sorted((json.loads(ln)["id"] for ln in (tmp_path / "mt" / "facts.jsonl").read_text().splitlines()),
                     reverse=True)
    assert all_ids == ids


def test_a_strategy_registered_outside_runs_through_the_cli(my_strategy: str, store: Path, tmp_path: Path):
    r = runner.invoke(app, ["distill", str(store), "--strategy", my_strategy, "--budget", "2", "--json"])
    assert r.exit_code == 0, r.output
    sel = json.loads(r.output)["selection"]
    assert sel["strategy"] == my_strategy and sel["note"] == "reverse ids" and sel["size"] == 2
    r = runner.invoke(app, ["distill", "compare", str(store), "--budgets", "1,2", "--json"])
    assert r.exit_code == 0, r.output
    assert {row["strategy"] for row in json.loads(r.output)} == set(STRATEGIES)  # compare runs every one
    assert my_strategy in STRATEGIES


def test_an_unknown_strategy_on_the_cli_names_the_registered_ones(store: Path):
    r = runner.invoke(app, ["distill", str(store), "--strategy", "magic", "--budget", "2"])
    assert r.exit_code == 2 and "unknown strategy 'magic'" in r.output and "qc-exact" in r.output
    r = runner.invoke(app, ["distill", "compare", str(store), "--strategies", "usage,magic", "--budgets", "1"])
    assert r.exit_code == 2 and "unknown strategy 'magic'" in r.output


@pytest.mark.parametrize("answer, match", [([0, 0], "repeated"), ([99], "out of range"), ([0, 1, 2], "over the budget")])
def test_a_misbehaving_strategy_is_caught(answer: list[int], match: str):
    from core.types import Proof
    from microtheory.distill.graph import DistillGraph

    facts = {k: Fact(k, f"fact {k}", "generated") for k in "abc"}
    g = DistillGraph.from_proofs([Proof("q1", "p1", "h", ("a", "b")), Proof("q2", "p2", "h2", ("c",))], facts)
    STRATEGIES.add("broken-test", lambda graph, request: (answer, {}))
    try:
        with pytest.raises(SolverError, match=match):
            select(g, "broken-test", budget=2)
    finally:
        STRATEGIES.unregister("broken-test")


# ------------------------------------------------------------------------------------ a new generator
CANNED = {"a magnet attracts an iron nail": "1. A magnet attracts iron.\n2. An iron nail is made of iron.",
          "plants need sunlight to grow": "1. The moon orbits the earth.\n2. Rocks are hard objects."}


class CannedGenerator(BaseGenerator):
    """Answers the prompt's statement from CANNED: a backend written outside the package."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.name = f"canned-test:{tag}"

    def _generate_one(self, prompt: str, n: int, params: SamplingParams) -> list[str]:
        from microtheory.prompts import extract_statement

        self.stats.calls += 1
        answer = CANNED.get((extract_statement(prompt) or "").rstrip("."))
        return [answer] * n if answer else []


@pytest.fixture()
def canned_backend() -> Iterator[str]:
    @GENERATORS.register("canned-test", help="canned answers (a test plug-in)")
    def make(arg: str, **options: Any) -> Generator:
        return CannedGenerator(arg or "default")

    yield "canned-test"
    GENERATORS.unregister("canned-test")


def _questions() -> list[Question]:
    return [Question(q, f"stem {q}?", {"A": "x", "B": "y"}, "A", hypothesis=h)
            for q, h in (("q1", "a magnet attracts an iron nail"), ("q2", "plants need sunlight to grow"))]


def test_a_generator_registered_outside_runs_through_the_library(canned_backend: str, tmp_path: Path):
    from microtheory.populate import PopulateConfig, populate
    from retrieval.encoder import HashingEncoder
    from retrieval.entail import OverlapScorer
    from retrieval.store import KnowledgeStore

    gen = get_generator(f"{canned_backend}:v1")
    assert isinstance(gen, CannedGenerator) and gen.name == "canned-test:v1"
    assert gen.generate("Statement: plants need sunlight to grow", n=2) == [[CANNED["plants need sunlight to grow"]] * 2]
    cfg = PopulateConfig(prompts=("direct",), samples=1, max_depth=0, save_every=1, seed=None, minimal=False)
    summary = populate(_questions(), tmp_path / "ks", f"{canned_backend}:v1", scorer=OverlapScorer(),
                       encoder=HashingEncoder(), config=cfg, progress=False)
    assert summary.proved == 1  # q2's canned premises do not entail it
    provs = [p for f in KnowledgeStore.open(tmp_path / "ks") for p in f.provenance]
    assert provs and {p["generator"] for p in provs} == {"canned-test:v1"}


def test_a_generator_registered_outside_runs_through_the_cli(canned_backend: str, tmp_path: Path):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q.to_json()) + "\n" for q in _questions()))
    r = runner.invoke(app, ["populate", "--questions", str(qfile), "--store", str(tmp_path / "ks"),
                            "--generator", f"{canned_backend}:cli", "--scorer", "overlap", "--encoder", "hashing",
                            "--prompts", "direct", "--max-depth", "0", "--no-minimal", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["proved"], out["unproved"]) == (1, 1) and out["sentences_added"] == 2


def test_generator_specs_name_the_registered_backends():
    with pytest.raises(InputError, match="unknown generator backend 'nope'.*replay"):
        get_generator("nope:x")
    with pytest.raises(InputError, match="no backend prefix.*openai"):
        get_generator("gpt")


# ------------------------------------------------------------------------------------ a new reader
@pytest.fixture()
def tsv_reader() -> Iterator[str]:
    @READERS.register("tsv-test", help="id<TAB>text lines (a test plug-in)")
    def read_tsv(path: Path, options: ReadOptions) -> list[Fact]:
        facts = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fid, sep, text = line.partition("\t")
            if not sep:
                raise InputError("expected id<TAB>text", str(path), n)
            facts.append(Fact(fid, text, options.source, [{"corpus": options.name or path.stem, "line": n}]))
        return facts

    yield "tsv-test"
    READERS.unregister("tsv-test")


def test_a_reader_registered_outside_runs_through_the_library_and_the_cli(tsv_reader: str, tmp_path: Path):
    f = tmp_path / "facts.tsv"
    f.write_text("f1\tiron is a metal\nf2\tthe sun is a star\n")
    facts = read_facts(f, fmt=tsv_reader, name="mine")
    assert [(x.id, x.text, x.provenance[0]["corpus"]) for x in facts] == [("f1", "iron is a metal", "mine"),
                                                                          ("f2", "the sun is a star", "mine")]
    r = runner.invoke(app, ["store", "build", str(f), "--format", tsv_reader, "--encoder", "hashing",
                            "--out", str(tmp_path / "ks"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 2
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n")
    r = runner.invoke(app, ["store", "build", str(bad), "--format", tsv_reader, "--encoder", "hashing",
                            "--out", str(tmp_path / "ks2")])
    assert r.exit_code == 2 and "bad.tsv:1:" in r.output and not (tmp_path / "ks2").exists()
    with pytest.raises(InputError, match="unknown format 'xml'; choose one of auto, text.*tsv-test"):
        read_facts(f, fmt="xml")
