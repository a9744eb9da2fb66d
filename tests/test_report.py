"""The HTML report from a small hand-written run directory: facts, one SVG tree per proof, the
dimension filter, embedded plots, escaping, and no network references."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from report_fixture import CRITIQUE_INPUTS, FACTS, make_run_dir
from typer.testing import CliRunner

from cli.main import app
from core.errors import InputError
from pipeline.report import build_html, proof_svg, write_report


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> Collect:
    p = Collect()
    p.feed(text)
    return p


@pytest.fixture()
def run(tmp_path):
    return make_run_dir(tmp_path)


def test_facts_usage_and_provenance(run):
    html = build_html(run)
    assert "evaporation is when a liquid turns into a gas" in html
    # Text is escaped, never injected as markup.
    assert "a &lt;b&gt;bold&lt;/b&gt; claim &amp; an ampersand" in html and "<b>bold</b>" not in html
    rows = re.findall(r'<tr class="fact">(.*?)</tr>', html, re.DOTALL)
    assert len(rows) == len(FACTS)
    assert ">2</td>" in rows[0] and "q-001" in rows[0] and "replay:generations.jsonl" in rows[0]
    # mt-1 is a leaf of one QA proof with the microtheory.
    cells = re.findall(r'<td class="num">(\d+)</td>', rows[0])
    assert cells == ["2", "2", "1"]


def test_one_tree_per_proof(run):
    html = build_html(run)
    svgs = re.findall(r"<svg class=\"proof\".*?</svg>", html, re.DOTALL)
    assert len(svgs) == 2  # two answered questions, each with a proof
    two_step = next(s for s in svgs if "int1" in s)
    # 3 leaves + 1 intermediate + the hypothesis; 4 premise -> conclusion edges.
    assert two_step.count("<rect") == 5
    assert two_step.count("<line") == 4
    assert 'class="node mt"' in two_step and 'class="node hyp"' in two_step and 'class="node int"' in two_step
    assert "step 0.91" in two_step and "step 0.83" in two_step
    # The corpus-alone answer is shown beside it.
    assert "corpus alone: answer B, not grounded" in html


def test_tree_layout_leaves_above_conclusion():
    from report_fixture import PROOF

    svg = proof_svg(PROOF, {"mt-1"})
    ys = {m.group(1): float(m.group(2)) for m in
          re.finditer(r"<title>([^<]+)</title><rect x=\"[\d.]+\" y=\"([\d.]+)\"", svg)}
    assert ys["mt-1"] < ys["int1"] < ys["hypothesis"]
    assert ys["sci-0003"] < ys["hypothesis"]


def test_dimension_filter_and_critiques(run):
    html = build_html(run)
    p = _parse(html)
    selects = [a for t, a in p.tags if t == "select"]
    assert [s.get("id") for s in selects] == ["dimension-filter"]
    options = [a.get("value") for t, a in p.tags if t == "option"]
    assert options == ["all", "incorrect_information", "lack_justification", "none", "error"]
    rows = [a.get("data-dimension") for t, a in p.tags if t == "tr" and a.get("class") == "critique"]
    assert sorted(rows) == sorted(["none", "incorrect_information", "lack_justification", "error"])
    assert "getElementById('dimension-filter')" in html
    # The question and explanation come from the copied input; cited facts show their text.
    assert CRITIQUE_INPUTS[1]["explanation"] in html
    crit_row = re.search(r'<tr class="critique" data-dimension="incorrect_information">(.*?)</tr>', html, re.DOTALL)
    assert crit_row and "mt-1" in crit_row.group(1) and "evaporation is when a liquid" in crit_row.group(1)
    assert "missing field" in html


def test_plots_embedded_and_self_contained(tmp_path):
    run = make_run_dir(tmp_path, with_png=True)
    html = build_html(run)
    p = _parse(html)
    imgs = [a for t, a in p.tags if t == "img"]
    # The PNG written beside the microtheory, plus the coverage plot drawn from report.json.
    assert len(imgs) == 2
    assert all((a.get("src") or "").startswith("data:image/png;base64,") for a in imgs)
    for t, a in p.tags:
        for attr in ("src", "href"):
            v = a.get(attr) or ""
            assert not v.startswith(("http:", "https:", "//")), (t, attr, v)
    assert "<link" not in html and "@import" not in html


def test_write_report_and_cli(run):
    path = write_report(run)
    assert path == run / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(run / "r2.html")])
    assert res.exit_code == 0, res.output
    assert (run / "r2.html").is_file()
    res = CliRunner().invoke(app, ["report", "--help"])
    assert "Example" in res.output


def test_not_a_run_dir(tmp_path):
    with pytest.raises(InputError, match="not a run directory"):
        build_html(tmp_path)
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code != 0 and "not a run directory" in res.output


def test_partial_run_still_renders(tmp_path):
    run = make_run_dir(tmp_path)
    for p in (run / "critiques.jsonl", run / "qa" / "microtheory.jsonl", run / "microtheory" / "facts.jsonl"):
        p.unlink()
    html = build_html(run)
    assert "Critique did not run" in html and "No microtheory in this run" in html
    assert "Grounded QA (corpus)" in html  # falls back to the corpus-only answers


def test_report_out_never_replaces_a_users_file(run, tmp_path):
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my notes</p>")
    with pytest.raises(InputError, match="not a report written by this command"):
        write_report(run, notes)
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(notes)])
    assert res.exit_code == 2 and "--force" in res.output and notes.read_text() == "<p>my notes</p>"
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(notes), "--force"])
    assert res.exit_code == 0 and notes.read_text().startswith("<!DOCTYPE html>")
    # A report it wrote is replaced without --force; a file of the run itself never, even with it.
    assert write_report(run, notes) == notes
    with pytest.raises(InputError):
        write_report(run, run / "summary.json", force=True)
    assert (run / "summary.json").read_text().startswith("{")


def test_report_reads_only_run_directories_it_knows(run):
    import json

    from core.outputs import OWNER_FILE

    (run / OWNER_FILE).write_text(json.dumps({"kind": "run", "version": 1}))
    assert "<svg" in build_html(run)
    (run / OWNER_FILE).write_text(json.dumps({"kind": "run", "version": 2}))
    with pytest.raises(InputError, match="newer than this code reads"):
        build_html(run)
    (run / OWNER_FILE).write_text(json.dumps({"kind": "microtheory", "version": 1}))
    with pytest.raises(InputError, match="not a run directory"):
        build_html(run)
