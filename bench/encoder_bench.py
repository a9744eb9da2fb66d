"""Encoder precision benchmark: fp32 vs bf16 autocast for MiniLM and MPNet on WorldTree sentences.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/encoder_bench.py [--data ../shared/data] [--n 1000] [--threads 1]

Sentences: a seeded sample (seed 13) of `n` entries of
entailmentbank/worldtree_corpus_sentences_extended.json. For each model, the same sentences are
encoded in ABBA order (fp32, bf16, bf16, fp32) through `retrieval.encoder.SentenceTransformerEncoder`
with `autocast=False` / `autocast=True` (bf16 forced, whatever `core.models.cpu_has_bf16()` says);
reported: sentences/s (the better of the two passes) and the cosine of each bf16 vector to its fp32
vector (mean, min). The machine's native bf16 support is recorded: without it (AVX2 only) bf16 is
emulated and slower, which is why `core.models.autocast_context` leaves it off there by default.
Writes bench/results/encoder_bench.json and bench/results/encoder_bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.jsonl import atomic_write_json  # noqa: E402
from core.models import cpu_has_bf16, model_path  # noqa: E402
from retrieval.encoder import SentenceTransformerEncoder  # noqa: E402


def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": threads,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_bf16(),
            "platform": platform.platform(), "load_average_start": os.getloadavg()}


def sample_sentences(data: Path, n: int, seed: int = 13) -> list[str]:
    corpus = json.loads((data / "entailmentbank" / "worldtree_corpus_sentences_extended.json").read_text())
    texts = sorted({" ".join(str(t).split()) for t in (corpus.values() if isinstance(corpus, dict) else corpus)})
    return random.Random(seed).sample(texts, min(n, len(texts)))


def timed(enc: SentenceTransformerEncoder, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    v = enc.encode(texts, batch_size=batch_size)
    return v, time.perf_counter() - t0


def bench_model(name: str, texts: list[str], batch_size: int, passes: int) -> dict[str, Any]:
    path = model_path(name)
    fp32 = SentenceTransformerEncoder(f"{name}-fp32", path=path, autocast=False)
    bf16 = SentenceTransformerEncoder(f"{name}-bf16", path=path, autocast=True)
    fp32.encode(texts[:8]), bf16.encode(texts[:8])  # load and warm up both
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    vecs: dict[str, np.ndarray] = {}
    for mode in ("fp32", "bf16", "bf16", "fp32")[:2 * passes]:  # ABBA: drifting load hits both
        v, s = timed(fp32 if mode == "fp32" else bf16, texts, batch_size)
        times[mode].append(s)
        vecs[mode] = v
        print(f"{name} {mode}: {len(texts) / s:.1f} sentences/s", file=sys.stderr, flush=True)
    cos = (vecs["fp32"] * vecs["bf16"]).sum(1)
    sps = {m: len(texts) / min(t) for m, t in times.items()}
    return {"model": name, "path": path, "dim": int(vecs["fp32"].shape[1]), "sentences": len(texts),
            "sentences_per_s": sps, "bf16_speedup": sps["bf16"] / sps["fp32"],
            "cosine_bf16_vs_fp32": {"mean": float(cos.mean()), "min": float(cos.min()),
                                    "p01": float(np.percentile(cos, 1))},
            "seconds": times}


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Encoder precision: fp32 vs bf16 autocast", "",
             f"Up to {res['sentences']} WorldTree sentences (seeded sample; per model below), batch {res['batch_size']}, "
             f"{'ABBA order, best pass' if res['passes'] == 2 else 'one pass each (fp32, then bf16)'}, "
             f"{m['torch_threads']} torch thread(s); {m['cpu']} ({m['cores']} cores, capability "
             f"{m['cpu_capability']}, native bf16: {m['native_bf16']}); load average at start "
             f"{m['load_average_start'][0]:.1f} (shared machine: other jobs running). Command: `{res['command']}`.", "",
             "| model | fp32 sent/s | bf16 sent/s | bf16 speed-up | cosine bf16 vs fp32 (mean / min) |",
             "|---|---|---|---|---|"]
    for r in res["models"]:
        c = r["cosine_bf16_vs_fp32"]
        lines.append(f"| {r['model']} ({r['dim']}d, {r['sentences']} sentences) | {r['sentences_per_s']['fp32']:.1f} | "
                     f"{r['sentences_per_s']['bf16']:.1f} | {r['bf16_speedup']:.2f}x | {c['mean']:.6f} / {c['min']:.6f} |")
    lines += ["", "bf16 is on by default only where the CPU computes it natively (AVX512-BF16 or AMX: "
              "`core.models.cpu_has_bf16`) and on CUDA; `MICROTHEORY_BF16=0` turns it off, `=1` forces it.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="minilm,mpnet", help="names, each optionally with :N sentences (mpnet:300)")
    ap.add_argument("--passes", type=int, default=2, choices=(1, 2), help="2: ABBA order; 1: fp32 then bf16")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "encoder_bench")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from an existing .json")
    a = ap.parse_args()
    if a.markdown_only:
        a.out.with_suffix(".md").write_text(markdown(json.loads(a.out.with_suffix(".json").read_text())),
                                            encoding="utf-8")
        return
    import torch

    torch.set_num_threads(a.threads)
    texts = sample_sentences(a.data, a.n)
    res: dict[str, Any] = {"machine": machine(a.threads), "sentences": len(texts), "batch_size": a.batch_size,
                           "passes": a.passes, "command": "python bench/encoder_bench.py " + " ".join(sys.argv[1:]),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "models": []}
    for spec in a.models.split(","):
        name, _, n = spec.partition(":")
        res["models"].append(bench_model(name, texts[:int(n)] if n else texts, a.batch_size, a.passes))
    res["machine"]["load_average_end"] = os.getloadavg()
    atomic_write_json(a.out.with_suffix(".json"), res)
    a.out.with_suffix(".md").write_text(markdown(res), encoding="utf-8")
    print(markdown(res))


if __name__ == "__main__":
    main()
