"""A self-contained static HTML report of a run directory (`pipeline.runner` writes the directory;
its layout and format version are in `pipeline.run_dir`).

One file, no network: CSS and the small filter script are inline, plots are base64 PNGs, proofs are
inline SVG trees (premises above, arrows down to what they entail). It reads only plain JSON/JSONL
files of the run directory, so it imports nothing from the critique stage:

    summary.json, microtheory/{facts.jsonl, report.json, *.png}, microtheory_coverage.json,
    qa/{questions,corpus,microtheory}.jsonl, model_outputs.jsonl, critiques.jsonl
"""
from __future__ import annotations

import base64
import html
import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from core.errors import InputError
from microtheory.plots import figure_png
from pipeline import run_dir as rd

REPORT_NAME = rd.REPORT
MAX_QA = 200        # questions drawn (a dev run can have thousands; the rest are counted, not drawn)
MAX_FACTS = 2000


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg})", str(path), e.lineno) from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    from core.jsonl import iter_jsonl
    from core.outputs import is_header

    return [obj for _, obj in iter_jsonl(path) if not is_header(obj)]


def e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}%"


# ------------------------------------------------------------------------------------------ plots

def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def coverage_plot(report: dict[str, Any]) -> bytes | None:
    """Question coverage against microtheory size, from report.json's coverage curve (if it has one)."""
    curve = report.get("coverage_curve") if isinstance(report, dict) else None
    if not curve:
        return None
    pts = sorted({(int(c.get("size", c.get("budget", 0))), float(c.get("question_coverage", 0.0))) for c in curve})
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=100)
    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o")
    ax.set_xlabel("microtheory size (facts)")
    ax.set_ylabel("training questions covered (%)")
    ax.set_title(f"coverage, strategy {report.get('strategy', '?')}")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def _plots(run: Path, report: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(caption, data URI) for every plot: the PNGs the distill stage wrote (microtheory/*.png,
    microtheory/plots/*.png), and a coverage curve drawn here when none of them is one."""
    mt = run / rd.MICROTHEORY
    pngs = sorted([*mt.glob("*.png"), *mt.glob("plots/*.png")]) if mt.is_dir() else []
    out = [(p.stem.replace("_", " ").replace("prelevance", "p-relevance"), _png_data_uri(p.read_bytes()))
           for p in pngs]
    if not any("coverage" in c for c, _ in out):
        for src, name in ((run / rd.MICROTHEORY_COVERAGE, rd.MICROTHEORY_COVERAGE),
                          (None, f"{rd.MICROTHEORY}/report.json")):
            doc = _read_json(src) if src is not None else report
            data = coverage_plot(doc) if isinstance(doc, dict) else None
            if data is not None:
                out.insert(0, (f"coverage (drawn from {name})", _png_data_uri(data)))
                break
    return out


# ------------------------------------------------------------------------------------------ proof trees

def proof_svg(proof: dict[str, Any], mt_ids: set[str] | frozenset[str] = frozenset()) -> str:
    """An inline SVG tree: leaves in the top row, each step's premises joined by arrows to its
    conclusion below, the hypothesis at the bottom."""
    texts: dict[str, str] = dict(zip(proof.get("fact_ids") or [], proof.get("texts") or []))
    texts.update(proof.get("intermediates") or {})
    texts["hypothesis"] = proof.get("hypothesis", "")
    steps = proof.get("steps") or [{"premises": proof.get("fact_ids") or [], "conclusion": "hypothesis",
                                    "score": proof.get("score")}]
    parents: dict[str, list[str]] = {}
    score_of: dict[str, Any] = {}
    for st in steps:
        parents.setdefault(st["conclusion"], []).extend(st.get("premises") or [])
        score_of[st["conclusion"]] = st.get("score")
    # Depth from the root; a node shared by two steps is drawn once, at its deepest level.
    depth: dict[str, int] = {}

    def visit(n: str, d: int, seen: tuple[str, ...]) -> None:
        if n in seen:
            return
        depth[n] = max(depth.get(n, 0), d)
        for c in parents.get(n, []):
            visit(c, d + 1, seen + (n,))

    visit("hypothesis", 0, ())
    levels: dict[int, list[str]] = {}
    for n, d in depth.items():
        levels.setdefault(d, []).append(n)
    max_d = max(levels) if levels else 0
    box_w, line_h, gap_x, gap_y, chars = 210, 14, 16, 44, 32
    wrapped = {n: textwrap.wrap(texts.get(n, n), chars)[:5] or [n] for n in depth}
    row_h = {d: max(len(wrapped[n]) for n in ns) * line_h + 16 for d, ns in levels.items()}
    width = max(len(ns) for ns in levels.values()) * (box_w + gap_x) + gap_x
    y_of: dict[int, int] = {}
    y = 10
    for d in range(max_d, -1, -1):  # leaves (deepest) at the top
        y_of[d] = y
        y += row_h.get(d, 30) + gap_y
    height = y - gap_y + 10
    pos: dict[str, tuple[float, float, float]] = {}
    parts: list[str] = []
    for d, ns in levels.items():
        total = len(ns) * box_w + (len(ns) - 1) * gap_x
        x0 = (width - total) / 2
        for i, n in enumerate(sorted(ns, key=lambda k: (k not in texts, k))):
            pos[n] = (x0 + i * (box_w + gap_x), y_of[d], row_h[d])
    for concl, prem in parents.items():
        if concl not in pos:
            continue
        cx, cy, _ = pos[concl]
        for p in prem:
            if p not in pos:
                continue
            px, py, ph = pos[p]
            parts.append(f'<line x1="{px + box_w / 2:.0f}" y1="{py + ph:.0f}" x2="{cx + box_w / 2:.0f}" y2="{cy:.0f}" '
                         f'class="edge" marker-end="url(#arrow)"/>')
        sc = score_of.get(concl)
        if sc is not None:
            parts.append(f'<text x="{cx + box_w / 2 + 6:.0f}" y="{cy - 6:.0f}" class="score">step {float(sc):.2f}</text>')
    for n, (x, yy, h) in pos.items():
        kind = ("hyp" if n == "hypothesis" else "int" if n in (proof.get("intermediates") or {})
                else "ctx" if n.startswith("context:") else "mt" if n in mt_ids else "leaf")
        parts.append(f'<g class="node {kind}"><title>{e(n)}</title>'
                     f'<rect x="{x:.0f}" y="{yy:.0f}" width="{box_w}" height="{h}" rx="6"/>')
        for j, line in enumerate(wrapped[n]):
            parts.append(f'<text x="{x + 8:.0f}" y="{yy + 16 + j * line_h:.0f}">{e(line)}</text>')
        parts.append("</g>")
    return (f'<svg class="proof" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="proof tree">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>'
            + "".join(parts) + "</svg>")


# ------------------------------------------------------------------------------------------ sections

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#21364f;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
main{padding:8px 28px 40px;max-width:1300px}section{background:#fff;border:1px solid #dde2e8;border-radius:8px;
padding:14px 18px;margin:16px 0}h2{margin:4px 0 10px;font-size:18px}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #e6e9ee;padding:5px 8px;text-align:left;vertical-align:top}th{background:#f0f3f6}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#1a7f37}.skipped{color:#9a6700}
.failed{color:#cf222e}.muted{color:#6a737d;font-size:12px}.plots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0}figcaption{font-size:12px;color:#6a737d}img.plot{max-width:520px;border:1px solid #e6e9ee}
details>summary{cursor:pointer}.qa{border-top:1px solid #e6e9ee;padding:10px 0}.badge{display:inline-block;
border-radius:10px;padding:0 8px;font-size:12px;margin-left:6px}.b-yes{background:#dafbe1}.b-no{background:#ffebe9}
.b-grd{background:#ddf4ff}.b-ung{background:#eee}svg.proof{display:block;margin:6px 0;max-width:100%;height:auto}
svg.proof text{font-size:12px;fill:#1d232a}svg.proof .score{fill:#57606a;font-size:11px}
svg.proof .edge{stroke:#8c959f;stroke-width:1.4}svg.proof .arrowhead{fill:#8c959f}
svg.proof rect{stroke:#8c959f;fill:#fff}svg.proof .mt rect{fill:#fff8c5;stroke:#bf8700}
svg.proof .int rect{fill:#f6f8fa}svg.proof .hyp rect{fill:#dafbe1;stroke:#1a7f37}svg.proof .ctx rect{fill:#ddf4ff}
.legend span{margin-right:12px;font-size:12px}.sw{display:inline-block;width:12px;height:12px;border:1px solid #8c959f;
vertical-align:middle;margin-right:4px}select{font-size:14px;padding:2px 6px}
"""

JS = """
(function(){
  var sel=document.getElementById('dimension-filter');
  if(!sel){return;}
  function apply(){
    var v=sel.value, shown=0;
    var rows=document.querySelectorAll('#critiques tr.critique');
    for(var i=0;i<rows.length;i++){
      var ok=(v==='all'||rows[i].getAttribute('data-dimension')===v);
      rows[i].style.display=ok?'':'none'; if(ok){shown++;}
    }
    var c=document.getElementById('critique-count'); if(c){c.textContent=shown+' shown';}
  }
  sel.addEventListener('change',apply); apply();
})();
"""


def _stages_table(summary: dict[str, Any]) -> str:
    rows = []
    for name, s in (summary.get("stages") or {}).items():
        why = s.get("reason") or s.get("note") or ""
        rows.append(f'<tr><td>{e(name)}</td><td class="{e(s.get("status"))}">{e(s.get("status"))}</td>'
                    f'<td class="num">{e(s.get("seconds"))}</td><td>{e(why)}</td></tr>')
    return ('<table><tr><th>stage</th><th>status</th><th class="num">seconds</th><th>note</th></tr>'
            + "".join(rows) + "</table>")


def _summary_section(summary: dict[str, Any]) -> str:
    sz = summary.get("sizes") or {}
    cov = summary.get("coverage") or {}
    qa = summary.get("qa") or {}
    items = [("general corpus", sz.get("corpus")), ("knowledge store facts", sz.get("knowledge_store")),
             ("knowledge store proofs", sz.get("knowledge_proofs")), ("microtheory facts", sz.get("microtheory"))]
    sizes = "".join(f'<tr><td>{e(k)}</td><td class="num">{e("–" if v is None else v)}</td></tr>' for k, v in items)
    cov_txt = ""
    if cov.get("questions_total"):
        cov_txt = (f'<p>Strategy <b>{e(cov.get("strategy"))}</b>, budget {e(cov.get("budget"))}: '
                   f'{e(cov.get("questions_covered"))} of {e(cov.get("questions_total"))} training questions '
                   f'({_pct(cov.get("question_coverage"))}) keep a complete proof, '
                   f'{e(cov.get("proofs_complete"))} of {e(cov.get("proofs_total"))} proofs.</p>')
    qa_rows = "".join(
        f'<tr><td>{e(name)}</td><td class="num">{e(r.get("questions"))}</td>'
        f'<td class="num">{_pct(r.get("grounding_rate"))}</td><td class="num">{_pct(r.get("accuracy"))} '
        f'({e(r.get("correct"))}/{e(r.get("keyed"))})</td><td class="num">{_pct(r.get("grounded_accuracy"))}</td>'
        f'<td class="num">{_pct(r.get("retrieval_baseline_accuracy"))}</td></tr>' for name, r in qa.items())
    qa_tbl = ('<table><tr><th>retrieval from</th><th class="num">questions</th><th class="num">grounded</th>'
              '<th class="num">accuracy</th><th class="num">accuracy of grounded</th>'
              '<th class="num">retrieval-only</th></tr>' + qa_rows + "</table>") if qa_rows else \
        '<p class="muted">QA did not run (see the stages).</p>'
    return (f'<section id="summary"><h2>Summary</h2><table style="width:auto">{sizes}</table>{cov_txt}'
            f'<h3>Grounded QA on held-out questions</h3>{qa_tbl}<h3>Stages</h3>{_stages_table(summary)}</section>')


def _prov_text(prov: list[dict[str, Any]]) -> str:
    qs = sorted({str(p["question_id"]) for p in prov if isinstance(p, dict) and p.get("question_id")})
    gens = sorted({str(p.get("generator")) for p in prov if isinstance(p, dict) and p.get("generator")})
    corp = sorted({str(p.get("corpus")) for p in prov if isinstance(p, dict) and p.get("corpus")})
    bits = []
    if qs:
        bits.append(f"questions: {', '.join(qs[:8])}{' …' if len(qs) > 8 else ''}")
    if gens:
        bits.append(f"generator: {', '.join(gens)}")
    if corp:
        bits.append(f"corpus: {', '.join(corp)}")
    return "; ".join(bits) or "–"


def _usage(f: dict[str, Any]) -> tuple[Any, Any]:
    u = f.get("usage")
    if isinstance(u, dict):
        return u.get("proofs"), u.get("questions")
    if isinstance(u, (int, float)):
        return u, f.get("questions")
    return f.get("proofs", f.get("uses")), f.get("questions")


def _facts_section(facts: list[dict[str, Any]], qa_uses: Counter[str], plots: list[tuple[str, str]],
                   mt_report: dict[str, Any] | None) -> str:
    figs = "".join(f'<figure><img class="plot" alt="{e(c)}" src="{u}"><figcaption>{e(c)}</figcaption></figure>'
                   for c, u in plots)
    plots_html = f'<div class="plots">{figs}</div>' if figs else '<p class="muted">No plots in this run.</p>'
    if not facts:
        return (f'<section id="microtheory"><h2>Microtheory</h2>{plots_html}'
                '<p class="muted">No microtheory in this run (see the stages).</p></section>')
    rows = []
    for f in facts[:MAX_FACTS]:
        up, uq = _usage(f)
        prov = f.get("provenance") or []
        rows.append(f'<tr class="fact"><td><code>{e(f.get("id"))}</code></td><td>{e(f.get("text"))}</td>'
                    f'<td class="num">{e("–" if up is None else up)}</td><td class="num">{e("–" if uq is None else uq)}</td>'
                    f'<td class="num">{qa_uses.get(str(f.get("id")), 0)}</td>'
                    f'<td>{e(_prov_text(prov))}<details><summary class="muted">all {len(prov)} records</summary>'
                    f'<pre class="muted">{e(json.dumps(prov, indent=1)[:4000])}</pre></details></td></tr>')
    more = f'<p class="muted">{len(facts) - MAX_FACTS} more facts not shown.</p>' if len(facts) > MAX_FACTS else ""
    strat = (mt_report or {}).get("strategy") or ((mt_report or {}).get("selection") or {}).get("strategy")
    head = f'<p>{len(facts)} facts{", strategy " + e(strat) if strat else ""}.</p>'
    return (f'<section id="microtheory"><h2>Microtheory</h2>{plots_html}{head}<table id="facts"><tr><th>id</th>'
            '<th>fact</th><th class="num">proofs using it</th><th class="num">questions using it</th>'
            '<th class="num">used in QA proofs</th><th>provenance</th></tr>' + "".join(rows) + f"</table>{more}</section>")


def _qa_section(run: Path, mt_ids: set[str]) -> str:
    questions = {str(q.get("id")): q for q in _read_jsonl(run / rd.QA_QUESTIONS)}
    with_mt = _read_jsonl(run / rd.QA_MICROTHEORY)
    alone = {str(r.get("id")): r for r in _read_jsonl(run / rd.QA_CORPUS)}
    main = with_mt or list(alone.values())
    if not main:
        return '<section id="qa"><h2>Grounded QA</h2><p class="muted">QA did not run.</p></section>'
    label = "corpus + microtheory" if with_mt else "corpus"
    legend = ('<p class="legend"><span><i class="sw" style="background:#fff"></i>corpus fact</span>'
              '<span><i class="sw" style="background:#fff8c5"></i>microtheory fact</span>'
              '<span><i class="sw" style="background:#ddf4ff"></i>question context</span>'
              '<span><i class="sw" style="background:#f6f8fa"></i>intermediate</span>'
              '<span><i class="sw" style="background:#dafbe1"></i>hypothesis</span></p>')
    blocks = []
    for r in main[:MAX_QA]:
        qid = str(r.get("id"))
        q = questions.get(qid, {})
        opts = r.get("options") or {}
        opt_txt = " ".join(f"({e(k)}) {e(v.get('text') if isinstance(v, dict) else v)}" for k, v in opts.items())
        if r.get("error"):
            blocks.append(f'<div class="qa"><b>{e(qid)}</b> <span class="failed">error: {e(r["error"])}</span></div>')
            continue
        correct = r.get("correct")
        badges = (f'<span class="badge {"b-yes" if correct else "b-no"}">{"correct" if correct else "wrong"}</span>'
                  if correct is not None else "")
        badges += (f'<span class="badge {"b-grd" if r.get("grounded") else "b-ung"}">'
                   f'{"grounded" if r.get("grounded") else "not grounded"}</span>')
        other = alone.get(qid) if with_mt else None
        cmp_txt = ""
        if other is not None and not other.get("error"):
            cmp_txt = (f'<div class="muted">corpus alone: answer {e(other.get("answer"))}, '
                       f'{"grounded" if other.get("grounded") else "not grounded"}</div>')
        proof = r.get("proof")
        if proof:
            tree = proof_svg(proof, mt_ids)
        else:
            best = (opts.get(r.get("answer")) or {}).get("best") if isinstance(opts.get(r.get("answer")), dict) else None
            tree = ('<p class="muted">No premise set passed the threshold; best attempt '
                    f'(score {e((best or {}).get("score"))}):</p>' + proof_svg(best, mt_ids)) if best else \
                '<p class="muted">No proof.</p>'
        blocks.append(f'<div class="qa" data-question="{e(qid)}"><b>{e(qid)}</b> {e(q.get("stem", ""))}'
                      f'<div>{opt_txt}</div><div>answer <b>{e(r.get("answer"))}</b>, key {e(r.get("answer_key"))}'
                      f', score {e(r.get("score"))}{badges}</div>{cmp_txt}{tree}</div>')
    more = f'<p class="muted">{len(main) - MAX_QA} more questions not drawn.</p>' if len(main) > MAX_QA else ""
    return (f'<section id="qa"><h2>Grounded QA ({e(label)})</h2>{legend}' + "".join(blocks) + f"{more}</section>")


def _critique_of(r: dict[str, Any]) -> dict[str, Any] | None:
    c = r.get("critique")
    if isinstance(c, dict):
        return c
    if "dimension" in r and "score" in r:  # a flat record
        return r
    return None


def _inputs_by_line(path: Path) -> dict[int, dict[str, Any]]:
    """Physical line number -> the model-output record (the critique records name their input line)."""
    out: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if raw.strip():
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                out[n] = obj
    return out


def _critiques_section(records: list[dict[str, Any]], facts_by_id: dict[str, str],
                       inputs: dict[int, dict[str, Any]] | None = None) -> str:
    if not records:
        return '<section id="critiques-section"><h2>Critiques</h2><p class="muted">Critique did not run.</p></section>'
    dims = sorted({str(c["dimension"]) for r in records if (c := _critique_of(r)) is not None})
    opts = '<option value="all">all dimensions</option>' + "".join(
        f'<option value="{e(d)}">{e(d)}</option>' for d in dims) + '<option value="error">errors</option>'
    rows = []
    by_id = {str(v.get("id")): v for v in (inputs or {}).values()}
    for rec in records:
        src = (inputs or {}).get(rec.get("line")) if isinstance(rec.get("line"), int) else None  # type: ignore[arg-type]
        src = src if src is not None else by_id.get(str(rec.get("id")), {})
        r = {"question": src.get("question"), "explanation": src.get("explanation"),
             "predicted_answer": src.get("predicted_answer", src.get("answer")),
             "answer_key": src.get("answer_key", src.get("answerKey")), **rec}
        c = _critique_of(r)
        dim = str(c["dimension"]) if c else "error"
        if c:
            cited = []
            for cf in c.get("cited_facts") or []:
                fid, text = (cf.get("id"), cf.get("text")) if isinstance(cf, dict) else (cf, facts_by_id.get(str(cf)))
                cited.append(f'<li><code>{e(fid)}</code> {e(text or "")}</li>')
            body = (f'<td>{e(dim)}</td><td class="num">{e(c.get("score"))}</td><td>{e(c.get("main_flaw"))}</td>'
                    f'<td><div>{e(c.get("general"))}</div><div><i>{e(c.get("specific"))}</i></div></td>'
                    f'<td>{"<ul>" + "".join(cited) + "</ul>" if cited else "–"}</td>')
        else:
            body = f'<td>error</td><td>–</td><td colspan="3" class="failed">{e(r.get("error"))}</td>'
        rows.append(f'<tr class="critique" data-dimension="{e(dim)}"><td><code>{e(r.get("id"))}</code></td>'
                    f'<td>{e(r.get("question"))}<div class="muted">{e(r.get("explanation"))}</div>'
                    + (f'<div class="muted">predicted {e(r.get("predicted_answer"))}, key {e(r.get("answer_key"))}</div>'
                       if r.get("predicted_answer") is not None else "") + '</td>'
                    f'{body}</tr>')
    counts = Counter(str(c["dimension"]) if (c := _critique_of(r)) else "error" for r in records)
    count_txt = ", ".join(f"{e(k)}: {v}" for k, v in sorted(counts.items()))
    return (f'<section id="critiques-section"><h2>Critiques</h2><p>{count_txt}</p>'
            f'<label>Dimension <select id="dimension-filter">{opts}</select></label> '
            f'<span id="critique-count" class="muted"></span>'
            '<table id="critiques"><tr><th>id</th><th>question and explanation</th><th>dimension</th>'
            '<th class="num">score</th><th>main flaw</th><th>advice</th><th>cited facts</th></tr>'
            + "".join(rows) + "</table></section>")


def build_html(run_dir: str | Path) -> str:
    """The report of `run_dir` as one HTML string."""
    run = Path(run_dir)
    rd.run_dir_version(run)  # refuses another kind of directory, or a newer format
    summary = _read_json(run / rd.SUMMARY)
    if not isinstance(summary, dict):
        raise InputError("not a run directory (no summary.json): run `microtheory run` or `microtheory demo` first",
                         str(run))
    facts = _read_jsonl(run / rd.MICROTHEORY / "facts.jsonl")
    mt_report = _read_json(run / rd.MICROTHEORY / "report.json")
    mt_ids = {str(f.get("id")) for f in facts}
    qa_uses: Counter[str] = Counter()
    for r in _read_jsonl(run / rd.QA_MICROTHEORY):
        for fid in (r.get("proof") or {}).get("fact_ids") or []:
            if fid in mt_ids:
                qa_uses[fid] += 1
    critiques = _read_jsonl(run / rd.CRITIQUES)
    title = f"microtheory run: {summary.get('name', run.name)}"
    body = (_summary_section(summary)
            + _facts_section(facts, qa_uses, _plots(run, mt_report if isinstance(mt_report, dict) else None),
                             mt_report if isinstance(mt_report, dict) else None)
            + _qa_section(run, mt_ids)
            + _critiques_section(critiques, {str(f.get("id")): str(f.get("text")) for f in facts},
                                 _inputs_by_line(run / rd.MODEL_OUTPUTS)))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{e(title)}</h1><div>status {e(summary.get('status'))}, {e(summary.get('seconds'))} s, "
            f"started {e(summary.get('started'))}</div></header><main>{body}</main>"
            f"<script>{JS}</script></body></html>\n")


def _is_our_report(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(2000)
    except OSError:
        return False
    return head.startswith("<!DOCTYPE html>") and "<title>microtheory run: " in head


def write_report(run_dir: str | Path, out: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the report (default `run_dir/report.html`, atomically) and return its path. An existing
    `out` is replaced only when it is a report this function wrote, unless `force`; never a file
    of the run directory itself."""
    from core.jsonl import atomic_write_lines

    path = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    if path.is_dir():
        raise InputError("--out is a folder; give the HTML file to write", str(path))
    # A file of the run itself is never replaced; anything else of the user's only with force.
    inside_run = Path(run_dir).resolve() in path.resolve().parents
    if path.exists() and not _is_our_report(path) and (inside_run or not force):
        raise InputError("--out exists and is not a report written by this command; give a new file"
                         + ("" if force else " (or --force to replace it)"), str(path))
    text = build_html(run_dir)
    atomic_write_lines(path, [text.rstrip("\n")])
    path.chmod(0o644)  # the temp file behind the atomic write is private; a report is for reading
    return path
