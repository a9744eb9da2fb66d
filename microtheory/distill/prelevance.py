"""p-relevance: how well a microtheory covers a topic (working definition, BACKGROUND.md section 1.5).

A fact is p-relevant if a random held-out question of the topic uses it (in some proof) with
probability >= p, estimated as the share of held-out questions whose proofs use it. coverage(p) is
the share of p-relevant facts the microtheory holds. As a study: subsample N training questions
(seeded, repeated), distil a microtheory from their proofs (or keep all their facts when no budget
is given), and report coverage(p) per N, next to the chance that a p-relevant fact appears at least
once in N questions, 1 - (1 - p)^N. Facts are matched by key (normalised text after canonicalisation):
the caller maps both sides to the same keys.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from microtheory.distill.graph import DistillGraph
from microtheory.distill.strategies import select
from microtheory.plots import figure_png
from core.errors import InputError
from core.types import Proof

DEFAULT_PS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1)


def heldout_usage(heldout: Sequence[Iterable[str]]) -> dict[str, float]:
    """Fact key -> share of held-out questions that use it. `heldout` holds one key set per question
    (the union over that question's proofs)."""
    if not heldout:
        raise InputError("p-relevance needs at least one held-out question with a proof")
    counts: dict[str, int] = {}
    for keys in heldout:
        for k in set(keys):
            counts[k] = counts.get(k, 0) + 1
    n = len(heldout)
    return {k: c / n for k, c in counts.items()}


def coverage_curve(held: Iterable[str], usage: dict[str, float], ps: Sequence[float] = DEFAULT_PS) -> list[dict]:
    """coverage(p) for each p: relevant = facts with usage >= p, held = those in `held`."""
    have = set(held)
    out = []
    for p in ps:
        rel = [k for k, u in usage.items() if u >= p - 1e-12]
        hit = sum(1 for k in rel if k in have)
        out.append({"p": p, "relevant": len(rel), "held": hit, "coverage": hit / len(rel) if rel else None})
    return out


def prelevance_study(train_proofs: Sequence[Proof], heldout: Sequence[Iterable[str]], ns: Sequence[int],
                     ps: Sequence[float] = DEFAULT_PS, seeds: Sequence[int] = (0, 1, 2),
                     strategy: str = "qc-greedy", budget: int | None = None, time_limit: float = 30.0,
                     free: Iterable[str] = ()) -> dict[str, Any]:
    """coverage(p) against the number N of training questions; proofs' leaves and held-out sets are keys."""
    heldout = [set(h) for h in heldout]
    usage = heldout_usage(heldout)
    free_set = set(free)
    qids = sorted({p.question_id for p in train_proofs})
    by_q: dict[str, list[Proof]] = {}
    for p in train_proofs:
        by_q.setdefault(p.question_id, []).append(p)
    runs: list[dict[str, Any]] = []
    for n in ns:
        if n <= 0:
            raise InputError(f"N must be positive, got {n}")
        n_eff = min(n, len(qids))
        for seed in seeds:
            rng = np.random.default_rng(seed)
            pick = [qids[i] for i in sorted(rng.choice(len(qids), size=n_eff, replace=False))]
            proofs = [p for q in pick for p in by_q[q]]
            facts = {leaf for p in proofs for leaf in p.leaves} | free_set
            if budget is None:
                held = facts
                size = len(facts - free_set)
            else:
                g = DistillGraph.from_proofs(proofs, free=free_set)
                sel = select(g, strategy, budget=budget, seed=seed, time_limit=time_limit)
                held = set(sel.fact_ids) | free_set
                size = len(sel)
            runs.append({"N": n_eff, "seed": seed, "size": size, "curve": coverage_curve(held, usage, ps)})
    mean = []
    for n in sorted({int(r["N"]) for r in runs}):
        rs = [r for r in runs if r["N"] == n]
        row: dict[str, Any] = {"N": n, "size": float(np.mean([r["size"] for r in rs])), "coverage": [], "std": [],
                               "chance_seen": [1 - (1 - p) ** n for p in ps]}
        for i in range(len(ps)):
            vals = [r["curve"][i]["coverage"] for r in rs if r["curve"][i]["coverage"] is not None]
            row["coverage"].append(float(np.mean(vals)) if vals else None)
            row["std"].append(float(np.std(vals)) if vals else None)
        mean.append(row)
    return {"definition": "coverage(p) = share of facts used by >= p of held-out questions that the microtheory holds",
            "ps": list(ps), "heldout_questions": len(heldout),
            "relevant_per_p": {str(p): c["relevant"] for p, c in zip(ps, coverage_curve((), usage, ps))},
            "strategy": strategy if budget is not None else "all facts of the N questions", "budget": budget,
            "seeds": list(seeds), "runs": runs, "mean": mean}


def plot_prelevance(study: dict[str, Any]) -> bytes:
    """PNG: coverage(p) against N, one line per p (dashed: the chance 1-(1-p)^N of seeing the fact)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ns = [r["N"] for r in study["mean"]]
    for i, p in enumerate(study["ps"]):
        ys = [r["coverage"][i] for r in study["mean"]]
        if all(y is None for y in ys):
            continue
        line, = ax.plot(ns, [np.nan if y is None else y for y in ys], marker="o", label=f"p={p:g}")
        ax.plot(ns, [r["chance_seen"][i] for r in study["mean"]], linestyle="--", color=line.get_color(), alpha=0.5)
    ax.set_xlabel("training questions N")
    ax.set_ylabel("coverage(p): share of p-relevant facts held")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"p-relevance ({study['strategy']}" + (f", n={study['budget']}" if study["budget"] else "") + ")")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)
