"""`microtheory store ...` through typer's CliRunner against cli.main.app (hashing encoder)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.errors import StoreError
from retrieval.readers import detect_format, read_facts
from retrieval.store import KnowledgeStore

runner = CliRunner()


def run(*args: str) -> object:
    r = runner.invoke(app, ["store", *args])
    return r


def run_json(*args: str) -> object:
    r = runner.invoke(app, ["store", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "facts.txt"
    text.write_text("The sun is a star.\n\nPlants need water to grow.\nthe sun is a star\n")
    jsonl = tmp_path / "gen.jsonl"
    jsonl.write_text(
        '{"id": "g1", "text": "Water boils at 100 degrees celsius.", "source": "generated", '
        '"provenance": [{"question_id": "q1", "generator": "smollm2"}]}\n'
        '{"text": "Plants need water to grow", "provenance": [{"question_id": "q2"}]}\n'
    )
    eb = tmp_path / "worldtree_mini.json"
    eb.write_text(json.dumps({"ET_addon:0": "DUMMY", "uuid-1": "a thermometer measures temperature",
                              "uuid-2": "friction  produces heat", "uuid-3": "The sun is a star"}))
    return {"text": text, "jsonl": jsonl, "eb": eb}


@pytest.fixture(autouse=True)
def hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROTHEORY_ENCODER", "hashing")


def test_build_from_text_with_json_summary(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kb"
    s = run_json("build", str(inputs["text"]), "--out", str(out))
    assert (s["read"], s["added"], s["merged"], s["count"]) == (3, 2, 1, 2)
    assert s["encoder"] == {"name": "hashing-384", "dim": 384} and s["index"] == "flat"
    sun = KnowledgeStore.open(out).find_text("the sun is a star")
    assert sun is not None and [p["line"] for p in sun.provenance] == [1, 4]
    assert sun.provenance[0]["corpus"] == "facts" and sun.provenance[0]["file"] == "facts.txt"


def test_build_several_formats_and_search(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kb"
    r = run("build", str(inputs["text"]), str(inputs["jsonl"]), str(inputs["eb"]), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "built" in r.output and "5 facts" in r.output
    ks = KnowledgeStore.open(out)
    assert len(ks) == 5  # sun, plants, boils, thermometer, friction
    assert ks.get("g1").source == "generated"
    assert ks.get("uuid-1").provenance == [{"corpus": "worldtree", "uuid": "uuid-1"}]
    assert ks.get("uuid-2").text == "friction produces heat"
    assert "ET_addon:0" not in ks  # the corpus file's DUMMY placeholder is skipped
    plants = ks.find_text("plants need water to grow")
    assert plants is not None and {"question_id": "q2"} in plants.provenance and len(plants.provenance) == 2

    res = run_json("search", str(out), "water boils", "thermometer temperature", "-k", "2")
    assert [r["query"] for r in res] == ["water boils", "thermometer temperature"]
    assert res[0]["hits"][0]["id"] == "g1" and len(res[0]["hits"]) == 2
    assert res[1]["hits"][0]["id"] == "uuid-1" and res[1]["hits"][0]["provenance"][0]["uuid"] == "uuid-1"
    assert res[0]["hits"][0]["score"] >= res[0]["hits"][1]["score"]
    only = run_json("search", str(out), "water", "--source", "generated")
    assert [h["id"] for h in only[0]["hits"]] == ["g1"]
    human = run("search", str(out), "water boils", "-k", "1")
    assert human.exit_code == 0 and "Water boils at 100 degrees celsius." in human.output and "[g1, generated]" in human.output


def test_add_merges_and_sets_source(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kb"
    run_json("build", str(inputs["text"]), "--out", str(out))
    more = tmp_path / "more.txt"
    more.write_text("Magnets attract iron.\nThe sun is a star!\n")
    s = run_json("add", str(out), str(more), "--source", "generated", "--name", "gen-run-1")
    assert (s["added"], s["merged"], s["before"], s["count"]) == (1, 1, 2, 3)
    ks = KnowledgeStore.open(out)
    magnets = ks.find_text("magnets attract iron")
    assert magnets is not None and magnets.source == "generated"
    assert magnets.provenance == [{"corpus": "gen-run-1", "file": "more.txt", "line": 1}]
    sun = ks.find_text("the sun is a star")
    assert sun is not None and sun.source == "corpus" and len(sun.provenance) == 3


def test_info_remove_export(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kb"
    run_json("build", str(inputs["eb"]), "--out", str(out))
    info = run_json("info", str(out))
    assert info["count"] == 3 and info["format_version"] == 1 and info["sources"] == {"corpus": 3}
    human = run("info", str(out))
    assert human.exit_code == 0 and "hashing-384 (384-d)" in human.output
    s = run_json("remove", str(out), "uuid-2", "nope")
    assert s["removed"] == 1 and s["unknown"] == ["nope"] and s["count"] == 2
    r = run("export", str(out), "--out", str(tmp_path / "facts.jsonl"))
    assert r.exit_code == 0 and "wrote 2 facts" in r.output
    rows = [json.loads(x) for x in (tmp_path / "facts.jsonl").read_text().splitlines()]
    assert [x["id"] for x in rows] == ["uuid-1", "uuid-3"]
    # The export is itself a valid input: rebuilding from it gives the same facts.
    run_json("build", str(tmp_path / "facts.jsonl"), "--out", str(tmp_path / "kb2"))
    assert list(KnowledgeStore.open(tmp_path / "kb2")) == list(KnowledgeStore.open(out))
    run("export", str(out), "--out", str(tmp_path / "facts.txt"), "--format", "text")
    assert (tmp_path / "facts.txt").read_text() == "a thermometer measures temperature\nThe sun is a star\n"


def test_build_refuses_existing_store_without_force(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kb"
    run_json("build", str(inputs["text"]), "--out", str(out))
    r = run("build", str(inputs["eb"]), "--out", str(out))
    assert r.exit_code == StoreError.exit_code and "--force" in r.output
    assert len(KnowledgeStore.open(out)) == 2
    s = run_json("build", str(inputs["eb"]), "--out", str(out), "--force", "--index", "hnsw")
    assert s["count"] == 3 and s["index"] == "hnsw"


def test_split_documents_with_spacy(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("The sun is a star. It gives off light and heat.\nPlants use sunlight to make food.\n\n"
                   "Ice melts when it is heated. Water boils at 100 degrees.\n")
    out = tmp_path / "kb"
    s = run_json("build", str(doc), "--out", str(out), "--split")
    assert s["count"] == 5
    texts = [f.text for f in KnowledgeStore.open(out)]
    assert texts[0] == "The sun is a star." and "Plants use sunlight to make food." in texts
    assert [f.provenance[0]["line"] for f in KnowledgeStore.open(out)] == [1, 1, 1, 4, 4]


def test_format_detection(inputs: dict[str, Path], tmp_path: Path) -> None:
    assert detect_format(inputs["text"]) == "text"
    assert detect_format(inputs["text"], split=True) == "docs"
    assert detect_format(inputs["jsonl"]) == "jsonl"
    assert detect_format(inputs["eb"]) == "eb-corpus"
    noext = tmp_path / "facts"
    noext.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert detect_format(noext) == "jsonl"
    one = tmp_path / "one"
    one.write_text('{"text": "only one record"}\n')
    assert detect_format(one) == "jsonl" and read_facts(one)[0].text == "only one record"
    plain = tmp_path / "plain"
    plain.write_text("just a sentence\n")
    assert detect_format(plain) == "text"


def test_help_texts_have_examples() -> None:
    r = runner.invoke(app, ["store", "--help"])
    assert r.exit_code == 0
    for cmd in ("build", "add", "search", "info", "remove", "export", "repair"):
        assert cmd in r.output
        h = runner.invoke(app, ["store", cmd, "--help"])
        assert h.exit_code == 0 and "Example" in h.output, cmd


def test_repair_json_and_the_issue_reproduction(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Issue 15 item 4: `truncate -s 1000000 S/index.faiss; microtheory store export S --out f.jsonl`."""
    out = tmp_path / "S"
    run_json("build", str(inputs["text"]), str(inputs["eb"]), "--out", str(out))
    s = run_json("repair", str(out))
    assert s["repaired"] is False and s["problems"] == []
    import os

    os.truncate(out / "index.faiss", 1_000_000)  # grows this small index with zeros: still detected
    r = run("info", str(out))
    assert r.exit_code == StoreError.exit_code and "store repair" in r.output
    r = run("export", str(out), "--out", str(tmp_path / "f.jsonl"))
    assert r.exit_code == 0 and len((tmp_path / "f.jsonl").read_text().splitlines()) == 4
    s = run_json("repair", str(out))
    assert s["repaired"] is True and s["facts"] == 4 and s["encoder"] == "hashing-384"
    assert "index.faiss has 1000000 bytes" in s["problems"][0]
    assert run_json("info", str(out))["count"] == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("S", ".S"))) == ["S"]
