"""`--engine ray` on this machine: 2 workers vs 1 worker vs the local engine, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/ray_bench.py [--data ../shared/data] [--limit N] [--rows 60]

* store build: WorldTree corpus (entailmentbank/worldtree_corpus_sentences_extended.json, its first
  `--limit` sentences; all 11,941 by default) encoded with the packaged MiniLM, via `build_store`
  (what `microtheory store build --engine ...` calls);
* batch critique: the default critic (`checks` backend, no knowledge) over `--rows` rows of
  corpora/model_outputs.jsonl repeated (ids made unique), via `run_critique`;
* the Ray overhead on a small input (100 facts, 5 rows) and the time to start the local cluster.

Every engine uses one torch thread per worker (OMP_NUM_THREADS=1), so "2 workers" is two processes
on the two cores. Each Ray timing includes starting its actors and loading the model in each (what a
user waits for); the cluster itself is started once, before, and timed apart. The local and Ray
results are compared (same fact ids and texts, vectors within 1e-5; identical critique records).
Each configuration runs twice with the same engine: the cold run (Ray: actors start and load their
models; local: the model is already loaded after the first job) and the warm run (Ray actors kept,
`EngineConfig(keep_warm=True)`), whose throughput the ratios compare.
Writes bench/results/ray_bench.json and bench/results/ray_bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402

from core.engine import EngineConfig, LocalEngine, RayEngine, connect_ray  # noqa: E402
from core.outputs import is_header  # noqa: E402


def machine() -> dict[str, Any]:
    cpu = cpu_name()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "note": "2 CPU cores shared with other jobs (other helpers' tests and benchmarks ran meanwhile)"}


def engines() -> list[tuple[str, Any]]:
    """Ray engines keep their actors warm between the cold and the warm run, then close()."""
    return [("local", LocalEngine()), ("ray, 1 worker", RayEngine(EngineConfig(kind="ray", workers=1, keep_warm=True))),
            ("ray, 2 workers", RayEngine(EngineConfig(kind="ray", workers=2, keep_warm=True)))]


def timed(fn: Any, engine: Any) -> tuple[float, float, Any]:
    """(cold seconds, warm seconds, the warm run's result): twice with the same engine; for Ray the
    cold run starts the actors and loads the model in each, the warm one finds them ready."""
    t0 = time.perf_counter()
    fn("cold")
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = fn("warm")
    warm = time.perf_counter() - t0
    close = getattr(engine, "close", None)
    if close is not None:
        close()
    return cold, warm, res


def corpus_file(data: Path, limit: int | None, tmp: Path) -> tuple[Path, int]:
    from retrieval.readers import read_facts

    facts = read_facts(data / "entailmentbank" / "worldtree_corpus_sentences_extended.json")
    facts = facts[:limit] if limit else facts
    p = tmp / f"worldtree_{len(facts)}.jsonl"
    p.write_text("".join(json.dumps({"id": f.id, "text": f.text}) + "\n" for f in facts))
    return p, len(facts)


def store_state(path: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    from retrieval.store import KnowledgeStore

    ks = KnowledgeStore.open(path)
    return [(f.id, f.text) for f in ks], ks.vectors().copy()


def bench_store(src: Path, n: int, tmp: Path, tag: str) -> list[dict[str, Any]]:
    from retrieval.store.operations import BuildOptions, InputSpec, build_store

    rows, states = [], {}
    for name, engine in engines():
        out = tmp / f"store_{tag}_{name.replace(' ', '').replace(',', '_')}"

        def run(kind: str) -> dict[str, Any]:
            shutil.rmtree(out, ignore_errors=True)
            return build_store(InputSpec([src]), out, BuildOptions(progress=False, engine=engine))

        cold, secs, s = timed(run, engine)
        states[name] = store_state(out)
        rows.append({"engine": name, "facts": s["count"], "cold_seconds": round(cold, 2), "seconds": round(secs, 2),
                     "facts_per_s": round(s["count"] / secs, 1)})
        print(f"store {tag} {name}: cold {cold:.1f} s, warm {secs:.1f} s", file=sys.stderr, flush=True)
        shutil.rmtree(out, ignore_errors=True)
    ids0, v0 = states["local"]
    for r in rows:
        ids, v = states[r["engine"]]
        r["same_facts_as_local"] = ids == ids0
        r["max_abs_vector_diff"] = float(np.abs(v - v0).max()) if v.shape == v0.shape else None
    return rows


def critique_input(rows: int, tmp: Path) -> Path:
    base = [json.loads(x) for x in (ROOT / "corpora" / "model_outputs.jsonl").read_text().splitlines() if x.strip()]
    out = []
    for i in range(rows):
        r = dict(base[i % len(base)])
        r["id"] = f"{r['id']}-{i // len(base)}"
        out.append(json.dumps(r))
    p = tmp / f"outputs_{rows}.jsonl"
    p.write_text("\n".join(out) + "\n")
    return p


def bench_critique(inp: Path, n: int, tmp: Path, tag: str) -> list[dict[str, Any]]:
    from critique.batch import CritiqueRunConfig, run_critique

    rows, recs = [], {}
    cfg = CritiqueRunConfig(batch_size=8)
    for name, engine in engines():
        out = tmp / f"crit_{tag}_{name.replace(' ', '').replace(',', '_')}.jsonl"

        def run(kind: str) -> Any:
            out.unlink(missing_ok=True)
            return run_critique(inp, out, cfg, progress=False, engine=engine)

        cold, secs, s = timed(run, engine)
        recs[name] = [r for r in map(json.loads, out.read_text().splitlines()) if not is_header(r)]
        rows.append({"engine": name, "rows": s.rows, "errors": s.errors, "cold_seconds": round(cold, 2),
                     "seconds": round(secs, 2), "rows_per_s": round(s.rows / secs, 2)})
        print(f"critique {tag} {name}: cold {cold:.1f} s, warm {secs:.1f} s", file=sys.stderr, flush=True)
    for r in rows:
        r["same_records_as_local"] = recs[r["engine"]] == recs["local"]
        r["max_abs_number_diff"], r["same_apart_from_numbers"] = compare(recs[r["engine"]], recs["local"])
    return rows


def compare(a: Any, b: Any) -> tuple[float, bool]:
    """(largest absolute difference between numbers at the same place, whether everything else is equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return 0.0, a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)), True
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return 0.0, False
        parts = [compare(a[k], b[k]) for k in a]
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return 0.0, False
        parts = [compare(x, y) for x, y in zip(a, b)]
    else:
        return 0.0, a == b
    return max((d for d, _ in parts), default=0.0), all(ok for _, ok in parts)


def ratio(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    by = {r["engine"]: r[key] for r in rows}
    return {"2 workers / 1 worker": round(by["ray, 2 workers"] / by["ray, 1 worker"], 2),
            "2 workers / local": round(by["ray, 2 workers"] / by["local"], 2)}


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Ray engine benchmark (`bench/ray_bench.py`)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; {m['note']}. Load average "
             f"before {m['load_before']}, after {m['load_after']}. One torch thread per worker. Ray timings "
             "include starting the actors and loading the model in each; the local cluster was started once, "
             f"before, in {res['cluster_start_s']} s.", "",
             f"Command: `{res['command']}`", ""]
    for title, key, unit in (("Store build", "store", "facts_per_s"), ("Batch critique", "critique", "rows_per_s")):
        sec = res[key]
        lines += [f"## {title}: {sec['what']}", "",
                  f"| engine | cold run s (actors start, models load) | warm run s | {unit} (warm) | same result as local |",
                  "|---|---|---|---|---|"]
        for r in sec["rows"]:
            same = r.get("same_facts_as_local", r.get("same_records_as_local"))
            extra = f" (max vector diff {r['max_abs_vector_diff']:.1e})" if r.get("max_abs_vector_diff") else ""
            if r.get("max_abs_number_diff"):
                extra = (f" (every field equal but numbers, which differ by at most {r['max_abs_number_diff']:.1e})"
                         if r["same_apart_from_numbers"] else " (fields differ)")
            lines.append(f"| {r['engine']} | {r['cold_seconds']} | {r['seconds']} | {r[unit]} | {same}{extra} |")
        lines += ["", f"Warm throughput ratios: {sec['ratios']}", ""]
        if sec.get("command"):
            lines += [f"(This section rerun alone: `{sec['command']}`, load average before/after {sec['load']}.)", ""]
    lines += ["## Reading these numbers", "",
              "- The machine's two cores were saturated by other jobs (load average 8-11) during the whole run, "
              "so a second worker had no idle core: the 2-vs-1-worker ratios measure contention, not what Ray "
              "scales to. We had no idle or larger machine to measure on.",
              "- Store build, warm: the encoder has no cache, so the warm runs encode everything again; local "
              "and Ray are within noise of each other (the Ray overhead per 3,000 facts is small once the actors "
              "run), and Ray's cold runs pay 30-60 s to start the actors and load MiniLM in each.",
              "- Batch critique, warm: the 60 rows are 20 distinct explanations repeated, and a warm Ray actor "
              "keeps its critic, whose embedding cache (critique.checks, per backend) already holds every text from the cold run; the "
              "local engine builds its critic per run. So the warm critique numbers measure cache hits, not "
              "critic throughput: compare the cold column (local 1x critic load in this process vs actors "
              "started and critics loaded on the busy cores).",
              "- Equality: every store is identical to the local one (vectors within 1.2e-7); critique records "
              "are identical with one worker and equal up to float rounding with two (a probability differing "
              "by < 1e-9 where a cached embedding was computed in another batch: batched inference pads per batch).",
              ""]
    lines += ["## Ray overhead on a small input", "", "| job | local s (cold / warm) | ray 1 worker s (cold / warm) | "
              "ray 2 workers s (cold / warm) |", "|---|---|---|---|"]
    for job, rows in res["small"].items():
        by = {r["engine"]: f"{r['cold_seconds']} / {r['seconds']}" for r in rows}
        lines.append(f"| {job} | {by['local']} | {by['ray, 1 worker']} | {by['ray, 2 workers']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=None, help="First N WorldTree sentences (default: all).")
    ap.add_argument("--rows", type=int, default=60, help="Critique rows.")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray_bench")
    ap.add_argument("--md-only", action="store_true", help="Rewrite the .md from the .json of an earlier run.")
    ap.add_argument("--only-critique", action="store_true",
                    help="Rerun the batch critique only, replacing that section of the earlier .json.")
    args = ap.parse_args()
    if args.md_only:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.with_suffix(".json").read_text())))
        return
    res: dict[str, Any] = {"machine": machine(), "command": "python bench/ray_bench.py " + " ".join(sys.argv[1:])}
    t0 = time.perf_counter()
    connect_ray(num_cpus=2)
    res["cluster_start_s"] = round(time.perf_counter() - t0, 1)
    print(f"cluster started in {res['cluster_start_s']} s", file=sys.stderr, flush=True)
    if args.only_critique:
        return rerun_critique(args, res)
    with tempfile.TemporaryDirectory(prefix="ray_bench_") as d:
        tmp = Path(d)
        src, n = corpus_file(args.data, args.limit, tmp)
        small_src, _ = corpus_file(args.data, 100, tmp)
        res["small"] = {"store build, 100 facts": bench_store(small_src, 100, tmp, "small"),
                        "critique, 5 rows": bench_critique(critique_input(5, tmp), 5, tmp, "small")}
        store_rows = bench_store(src, n, tmp, "big")
        res["store"] = {"what": f"{n} WorldTree sentences, MiniLM", "rows": store_rows,
                        "ratios": ratio(store_rows, "facts_per_s")}
        crit_rows = bench_critique(critique_input(args.rows, tmp), args.rows, tmp, "big")
        res["critique"] = {"what": f"{args.rows} rows of corpora/model_outputs.jsonl (repeated), checks critic",
                           "rows": crit_rows, "ratios": ratio(crit_rows, "rows_per_s")}
    res["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


def rerun_critique(args: Any, fresh: dict[str, Any]) -> None:
    """The critique section again (its machine load and command recorded beside it), the rest kept."""
    res = json.loads(args.out.with_suffix(".json").read_text())
    with tempfile.TemporaryDirectory(prefix="ray_bench_") as d:
        rows = bench_critique(critique_input(args.rows, Path(d)), args.rows, Path(d), "big")
    res["critique"] = {"what": f"{args.rows} rows of corpora/model_outputs.jsonl (repeated), checks critic",
                       "rows": rows, "ratios": ratio(rows, "rows_per_s"), "command": fresh["command"],
                       "load": [fresh["machine"]["load_before"], [round(x, 2) for x in os.getloadavg()]]}
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
