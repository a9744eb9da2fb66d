"""`distill()`: knowledge store in, microtheory (directory) out. The CLI calls this and nothing else."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.types import Fact, Proof
from microtheory.distill.graph import DistillGraph
from microtheory.distill.microtheory_dir import Microtheory, write_microtheory
from microtheory.distill.strategies import STRATEGIES, Selection, select


@dataclass(frozen=True)
class DistillConfig:
    """How to distil: a registered strategy with a budget (facts) or a target (question coverage),
    and the optional steps. Plain values only (it goes into manifests and run configurations);
    models and data are `distill`'s other arguments."""

    strategy: str = "qc-greedy"
    budget: int | None = None
    target: float | None = None
    seed: int = 0  # the random strategy and the p-relevance subsamples
    time_limit: float = 60.0  # seconds for qc-exact's solver
    fill: bool = False  # spend budget a strategy leaves unused on the most-used facts
    canonical: bool = False  # merge mutually entailing facts first (needs a scorer)
    sim_threshold: float = 0.9  # cosine threshold for canonicalisation candidates
    prelevance_ns: Sequence[int] | None = None  # numbers of training questions in the p-relevance study
    prelevance_seeds: Sequence[int] = (0, 1, 2)
    overwrite: bool = True  # replace an existing microtheory directory at `out`

    def manifest(self, store_path: str) -> dict[str, Any]:
        """What the microtheory's manifest.json records about how it was made."""
        return {"strategy": self.strategy, "budget": self.budget, "target": self.target, "seed": self.seed,
                "store": store_path, "canonicalised": self.canonical}


@dataclass(frozen=True)
class DistillResult:
    microtheory: Microtheory
    selection: Selection
    report: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None

    def summary_lines(self) -> list[str]:
        """What the selection achieved, in words (the CLI prints these)."""
        r = self.selection.report
        extra = ""
        if "gap" in r:
            extra = f", gap {r['gap']}" + (" (time limit reached)" if r.get("timed_out") else "")
        lines = [(f"{self.selection.strategy}: {r['size']} facts cover {r['questions_covered']}/"
                  f"{r['questions_total']} questions ({100 * r['question_coverage']:.1f}%), "
                  f"{r['proofs_complete']}/{r['proofs_total']} proofs complete, {r['time_s']:.2f} s{extra}")]
        if "canonicalisation" in self.report:
            c = self.report["canonicalisation"]
            lines.append(f"canonicalisation: {c['facts_merged']} facts merged into {c['groups_merged']} groups "
                         f"({c['candidates']} candidates, {c['confirmed_pairs']} confirmed both ways)")
        if self.out:
            lines.append(f"wrote {self.out}")
        return lines


def load_store_contents(store: Any) -> tuple[dict[str, Fact], list[Proof], str]:
    """Facts and proofs of a KnowledgeStore (or a path to one); errors for an empty store."""
    if isinstance(store, (str, Path)):
        from retrieval.store import KnowledgeStore

        path = str(store)
        ks = KnowledgeStore.open(store)
    else:
        ks, path = store, str(getattr(store, "path", "<store>"))
    facts = {f.id: f for f in ks}
    if not facts:
        raise InputError("the knowledge store is empty: add trees first (`microtheory distill build-store`)", path)
    proofs = ks.proofs()
    if not proofs:
        raise InputError("the knowledge store has facts but no proofs: distillation needs proofs "
                         "(build it from trees: `microtheory distill build-store TREES --out STORE`)", path)
    return facts, proofs, path


def distill(store: Any, config: DistillConfig | None = None, *, out: str | Path | None = None, scorer: Any = None,
            encoder: Any = None, keyfn: Any = None, free: Iterable[str] = (),
            corpus_texts: Iterable[str] | None = None, heldout: Sequence[Any] | None = None,
            **options: Any) -> DistillResult:
    """Select a microtheory from a knowledge store's proofs and (with `out`) write its directory.

    `store`: a KnowledgeStore or its path. `config` says how (`options` are DistillConfig fields that
    override it, e.g. `distill(store, budget=500, strategy="qc-exact")`). Free facts (never counted
    against the budget): the store's corpus facts, the ids in `free`, and facts whose text is in
    `corpus_texts`. `config.canonical` merges mutually entailing facts first (needs `scorer`;
    `encoder` adds embedding candidates, `keyfn` groups texts for the lexical candidates).
    `heldout`: EntailmentTrees of held-out questions for the p-relevance study.
    """
    if config is not None and not isinstance(config, DistillConfig):
        raise TypeError(f"config must be a DistillConfig, got {type(config).__name__} (pass budget=... by name)")
    cfg = dataclasses.replace(config or DistillConfig(), **options)
    STRATEGIES.get(cfg.strategy)  # an unknown name fails before the store is read
    t0 = time.perf_counter()
    facts, proofs, store_path = load_store_contents(store)
    free_ids = _free_ids(facts, free, corpus_texts)
    report: dict[str, Any] = {"store": store_path, "store_facts": len(facts), "store_proofs": len(proofs)}
    merge_map: dict[str, str] = {}
    if cfg.canonical:
        if scorer is None:
            raise InputError("canonicalisation needs an entailment scorer (scorer=load_scorer(...))")
        from microtheory.distill.canonicalise import canonicalise

        can = canonicalise(list(facts.values()), proofs, scorer, encoder=encoder, sim_threshold=cfg.sim_threshold,
                           keyfn=keyfn, free=free_ids)
        proofs, merge_map = can.proofs, can.merge_map
        report["canonicalisation"] = can.report
    graph = DistillGraph.from_proofs(proofs, facts, free=free_ids)
    report["graph"] = graph.summary()
    sel = select(graph, cfg.strategy, budget=cfg.budget, target=cfg.target, seed=cfg.seed,
                 time_limit=cfg.time_limit, fill=cfg.fill)
    report["selection"] = sel.report
    uses_p, uses_q = graph.fact_proof_counts(), graph.fact_question_counts()
    usage = {graph.fact_ids[i]: {"proofs": int(uses_p[i]), "questions": int(uses_q[i])} for i in sel.fact_indices}
    chosen = [facts[fid] for fid in sel.fact_ids]
    plots: dict[str, bytes] = {}
    if heldout:
        from microtheory.distill.prelevance import plot_prelevance

        report["prelevance"] = _prelevance(cfg, facts, proofs, merge_map, free_ids, heldout)
        plots["prelevance.png"] = plot_prelevance(report["prelevance"])
    report["seconds"] = round(time.perf_counter() - t0, 3)
    manifest = cfg.manifest(store_path)
    mt = Microtheory(chosen, {"kind": "microtheory", **manifest, "size": len(chosen)}, report, merge_map, usage)
    out_path = None
    if out is not None:
        out_path = write_microtheory(out, chosen, usage, manifest, report, merge_map, plots,
                                     overwrite=cfg.overwrite)
    return DistillResult(mt, sel, report, out_path)


def _free_ids(facts: dict[str, Fact], free: Iterable[str], corpus_texts: Iterable[str] | None) -> set[str]:
    """Ids of the facts that cost nothing: those in `free` and those whose text the corpus holds."""
    free_ids = set(free)
    if corpus_texts is not None:
        from microtheory.trees_to_store import corpus_fact_ids

        free_ids |= corpus_fact_ids(facts.values(), corpus_texts)
    return free_ids


def _prelevance(cfg: DistillConfig, facts: dict[str, Fact], proofs: Sequence[Proof], merge_map: dict[str, str],
                free_ids: set[str], heldout: Sequence[Any]) -> dict[str, Any]:
    """The p-relevance study on the (canonicalised) proofs, facts keyed by normalised text so that
    held-out trees, which have no store ids, can be matched."""
    from microtheory.distill.prelevance import prelevance_study
    from retrieval.store import normalise_text

    def key(fid: str) -> str:
        return normalise_text(facts[merge_map.get(fid, fid)].text)

    alias = {normalise_text(facts[a].text): normalise_text(facts[b].text) for a, b in merge_map.items()}
    train = [Proof(p.question_id, p.proof_id, p.hypothesis, tuple(key(x) for x in p.leaves)) for p in proofs]
    held_sets = []
    for t in heldout:
        ks = {normalise_text(t.sentences[s]) for s in t.leaves}
        held_sets.append({alias.get(k, k) for k in ks})
    n_q = len({p.question_id for p in proofs})
    ns = list(cfg.prelevance_ns or sorted({n for n in (100, 250, 500, 1000) if n < n_q} | {n_q}))
    return prelevance_study(train, held_sets, ns, seeds=cfg.prelevance_seeds, strategy=cfg.strategy,
                            budget=cfg.budget, time_limit=cfg.time_limit,
                            free={key(f) for f in free_ids if f in facts})


def compare(store: Any, budgets: Sequence[int], strategies: Sequence[str] | None = None, seed: int = 0,
            time_limit: float = 60.0, free: Iterable[str] = (), corpus_texts: Iterable[str] | None = None,
            fill: bool = False) -> list[dict[str, Any]]:
    """Every strategy (default: every registered one) at every budget on one graph: one report row each."""
    if not budgets:
        raise InputError("give at least one budget")
    names = list(STRATEGIES.names() if strategies is None else strategies)
    for s in names:
        STRATEGIES.get(s)  # an unknown name fails before the store is read
    facts, proofs, _ = load_store_contents(store)
    graph = DistillGraph.from_proofs(proofs, facts, free=_free_ids(facts, free, corpus_texts))
    return [select(graph, s, budget=n, seed=seed, time_limit=time_limit, fill=fill).report
            for n in budgets for s in names]
