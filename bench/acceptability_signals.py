"""Which cheap signals track human acceptability of explanations, next to the critic's score?

    HF_HUB_OFFLINE=1 .venv/bin/python bench/acceptability_signals.py [--model runs/critic] [--threads 2]
                     [--explore 200] [--limit N]

A diagnostic for the critic's weakest result: its score barely tracks the human acceptability
judgements of Wiegreffe et al. 2022 (`explanation_acceptability/*_train.csv`; never trained on).
For every explanation it computes, besides the critic's expected score and P(none):

- support: P(question + explanation sentences entail "answer hypothesis") from the shipped
  entailment scorer (`retrieval/weights/entail`), the hypothesis made from the question and the
  keyed answer by `retrieval.hypothesis.make_hypothesis`;
- relevance: MiniLM cosine between the explanation and "question + keyed answer";
- brevity: minus the explanation's word count;
- the GPT-3 -NLL baseline stored in the files.

It reports the Spearman correlation of each with the share of annotators who found the explanation
acceptable, and of one unweighted rank average (critic expected score + support + relevance +
brevity). That combination was chosen by looking at the first `--explore` instances of each file
(the exploration split), so it is reported on the remaining instances (the held-out split) only; the
single signals are reported on both. Nothing here is fitted to the human labels.

Writes bench/results/acceptability_signals.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.critique_bench import machine
from critique.evaluate import critic_signals, read_acceptability, spearman
from critique.inputs import split_sentences
from retrieval.hypothesis import make_hypothesis

COMBINATION = ("critic_expected_score", "support", "relevance", "brevity")


def signals(items: list[Any], critic: Any, scorer: Any, encoder: Any) -> dict[str, np.ndarray]:
    recs = [it.record for it in items]
    answers = [r.options[r.answer_key] for r in recs]
    hyps = [make_hypothesis(r.question, a) for r, a in zip(recs, answers)]
    premises = [[r.question] + (split_sentences(r.explanation) or [r.explanation]) for r in recs]
    support = scorer.score_batch(list(zip(premises, hyps)), progress=True)
    e_expl = encoder.encode([r.explanation for r in recs], normalize_embeddings=True, batch_size=64)
    e_qa = encoder.encode([f"{r.question} {a}" for r, a in zip(recs, answers)], normalize_embeddings=True,
                          batch_size=64)
    sig = critic_signals(critic, recs, progress=True)
    return {
        "critic_score": sig.score,
        "critic_expected_score": sig.expected_score,
        "critic_p_none": sig.p_none,
        "support": np.asarray(support, dtype=np.float64),
        "relevance": (e_expl * e_qa).sum(axis=1).astype(np.float64),
        "brevity": -np.array([len(r.explanation.split()) for r in recs], dtype=np.float64),
        "gpt3_neg_nll": np.array([-it.nll if it.nll is not None else np.nan for it in items]),
    }


def rank_average(sig: dict[str, np.ndarray], names: tuple[str, ...], mask: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return sum(rankdata(sig[n][mask]) / mask.sum() for n in names)  # type: ignore[return-value]


def correlations(sig: dict[str, np.ndarray], acc: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, x in sig.items():
        ok = mask & ~np.isnan(x)
        out[name] = spearman(x[ok], acc[ok])
    out["rank_average(" + "+".join(COMBINATION) + ")"] = spearman(rank_average(sig, COMBINATION, mask), acc[mask])
    return {k: (round(v, 4) if v is not None else None) for k, v in out.items()}


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Signals of human acceptability (Spearman with the acceptable share)", "",
             f"Command: `{res['command']}`; {res['machine']['cpu']}, {res['machine']['torch_threads']} threads; "
             f"{res['seconds']:.0f} s.", "",
             f"Exploration split: the first {res['explore']} instances of each file; held-out: the rest. "
             "The rank average was chosen on the exploration split; only its held-out value is a measurement.", ""]
    for name, d in res["datasets"].items():
        lines += [f"## {name} ({d['n_explore']} + {d['n_heldout']} explanations)", "",
                  "| signal | exploration | held-out |", "|---|---|---|"]
        for k in d["heldout"]:
            ex = d["exploration"].get(k)
            lines.append(f"| {k} | {ex if ex is not None else '-'} | {d['heldout'][k]} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="critic folder (default: the shipped weights)")
    ap.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--explore", type=int, default=200, help="instances per file in the exploration split")
    ap.add_argument("--limit", type=int, default=None, help="read only the first N instances per file")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "acceptability_signals"))
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer

    from critique.model import load_critic
    from microtheory.datasets import default_data_dir
    from retrieval.encoder import default_model_path
    from retrieval.entail import CrossEncoderScorer

    base = Path(a.data) if a.data else default_data_dir()
    critic, scorer = load_critic(a.model), CrossEncoderScorer()
    encoder = SentenceTransformer(default_model_path(), device="cpu")
    t0 = time.perf_counter()
    res: dict[str, Any] = {"command": "python " + " ".join(sys.argv), "machine": machine(a.threads),
                           "explore": a.explore, "model": a.model or "shipped", "datasets": {}}
    for name in ("commonsenseqa", "snli"):
        items, _ = read_acceptability(base / "explanation_acceptability" / f"{name}_train.csv", a.limit)
        sig = signals(items, critic, scorer, encoder)
        acc = np.array([it.acceptable for it in items])
        order = {iid: n for n, iid in enumerate(dict.fromkeys(it.instance for it in items))}
        explore = np.array([order[it.instance] < a.explore for it in items])
        res["datasets"][name] = {
            "n_explore": int(explore.sum()), "n_heldout": int((~explore).sum()),
            "exploration": correlations(sig, acc, explore), "heldout": correlations(sig, acc, ~explore)}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(res) + "\n", encoding="utf-8")
    print(markdown(res))


if __name__ == "__main__":
    main()
