"""The grounding experiment: does a distilled microtheory help ground dev answers in a general corpus?

- General corpus: the WorldTree sentences of worldtree_corpus_sentences_extended.json WITHOUT the
  2,930 `ET_addon:*` sentences (they stand for topical knowledge a general corpus lacks).
- Knowledge store: every sentence (leaves and intermediate conclusions) of the 1,313 EntailmentBank
  train trees (task_1), each tree one proof; leaves the corpus already holds are free.
- Test: the 187 EntailmentBank dev questions with their ARC options (task_1 dev).
- Rows: corpus alone; corpus + microtheory(strategy, n) for n in --budgets; corpus + the whole store;
  corpus + all ET_addon sentences (upper reference). Columns: grounding rate of the gold hypothesis,
  QA accuracy, accuracy of grounded answers, size.

Retrieval uses one encoder for every row; vectors are computed once per text and cached under
.cache/grounding/ (numpy .npy keyed by a hash of the texts and the encoder name). The scorer's calls
are cached across rows (the same premise set and hypothesis recur in every row).

    .venv/bin/python bench/grounding_experiment.py [--scorer overlap|DIR] [--limit 50] [--strategies ...]
    .venv/bin/python bench/grounding_experiment.py --store runs/ks_smollm2 --tag smollm2   # a populated store

Writes bench/results/grounding.{json,md,png}.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from retrieval.store import Hit
from core.types import Fact


class VectorStore:
    """A read-only in-memory store over precomputed vectors: what the prover needs to search."""

    def __init__(self, facts: list[Fact], vectors: np.ndarray, encoder: Any):
        self.facts, self.vectors, self.encoder = facts, np.ascontiguousarray(vectors, dtype=np.float32), encoder

    def __len__(self) -> int:
        return len(self.facts)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, source: str | None = None) -> list[list[Hit]]:
        if not self.facts:
            return [[] for _ in range(len(vectors))]
        sims = np.asarray(vectors, dtype=np.float32) @ self.vectors.T
        kk = min(k, len(self.facts))
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        out = []
        for r, idx in enumerate(top):
            idx = idx[np.argsort(-sims[r, idx])]
            out.append([Hit(self.facts[i], float(sims[r, i])) for i in idx])
        return out

    def search_batch(self, queries: Sequence[str], k: int = 10, source: str | None = None) -> list[list[Hit]]:
        return self.search_vectors(self.encoder.encode(list(queries)), k=k)


class CachingEncoder:
    """Wraps an encoder; each text is encoded once across all rows (options' hypotheses repeat)."""

    def __init__(self, inner: Any):
        self.inner, self.name, self.dim = inner, inner.name, getattr(inner, "dim", None)
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            vecs = np.asarray(self.inner.encode(todo, batch_size=batch_size), dtype=np.float32)
            self.cache.update(zip(todo, vecs))
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])


class CachingScorer:
    """Wraps a scorer; identical (premises, hypothesis) items are scored once across all rows."""

    def __init__(self, inner: Any):
        self.inner, self.cache, self.calls = inner, {}, 0
        self.threshold = inner.threshold

    def score(self, premises: Sequence[str], hypothesis: str) -> float:
        return float(self.score_batch([(premises, hypothesis)])[0])

    def score_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64) -> np.ndarray:
        keys = [(tuple(p), h) for p, h in items]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if todo:
            self.calls += len(todo)
            scores = self.inner.score_batch([(list(p), h) for p, h in todo], batch_size=batch_size)
            self.cache.update(zip(todo, (float(s) for s in scores)))
        return np.asarray([self.cache[k] for k in keys], dtype=np.float32)


def cached_vectors(encoder: Any, texts: list[str], cache: Path, known: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Vectors for texts: from `known` (normalised text -> vector, e.g. an existing corpus store built
    with the same encoder), else encoded once and cached on disk."""
    from retrieval.store import normalise_text

    h = hashlib.sha256((encoder.name + "\n" + "\n".join(texts)).encode()).hexdigest()[:16]
    p = cache / f"vec-{h}.npy"
    if p.is_file():
        return np.load(p)
    known = known or {}
    keys = [normalise_text(t) for t in texts]
    todo = [i for i, k in enumerate(keys) if k not in known]
    dim = next(iter(known.values())).shape[0] if known else None
    new = np.asarray(encoder.encode([texts[i] for i in todo], batch_size=128, progress=True), dtype=np.float32) \
        if todo else np.zeros((0, dim or 1), dtype=np.float32)
    v = np.zeros((len(texts), new.shape[1] if todo else dim), dtype=np.float32)
    for j, i in enumerate(todo):
        v[i] = new[j]
    for i, k in enumerate(keys):
        if k in known:
            v[i] = known[k]
    print(f"vectors: {len(texts) - len(todo)} reused, {len(todo)} encoded", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(p, v)
    return v


def known_vectors(store_dir: Path | None, encoder_name: str) -> dict[str, np.ndarray]:
    """normalised text -> vector from an existing store made with the same encoder (saves re-encoding)."""
    if store_dir is None or not (store_dir / "manifest.json").is_file():
        return {}
    from retrieval.store import KnowledgeStore, normalise_text

    ks = KnowledgeStore.open(store_dir)
    if ks.info().get("encoder", {}).get("name") != encoder_name:
        return {}
    vecs = ks.vectors()
    return {normalise_text(f.text): vecs[i] for i, f in enumerate(ks)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from microtheory.datasets import DataPaths, load_eb_questions, read_eb_train, read_worldtree_corpus
    from microtheory.distill import DistillGraph, select
    from microtheory.trees_to_store import corpus_fact_ids, trees_to_records
    from retrieval.encoder import get_encoder
    from retrieval.entail import OverlapScorer, load_scorer
    from retrieval.prover import Prover, ProverConfig
    from retrieval.qa import QASummary, answer_question

    data = DataPaths(args.data)
    cache = ROOT / ".cache" / "grounding"
    t_start = time.perf_counter()
    full = read_worldtree_corpus(data.worldtree_corpus, include_addons=True)
    general = {k: v for k, v in full.items() if not k.startswith("ET_addon:")}
    addons = {k: v for k, v in full.items() if k.startswith("ET_addon:")}
    if args.store is None:
        facts, proofs = trees_to_records(read_eb_train(data.eb_train()))
        store_desc = "the EntailmentBank train trees"
    else:  # e.g. a store filled by `microtheory populate`: its generated sentences and accepted proofs
        from microtheory.distill.api import load_store_contents

        by_id, proofs, _ = load_store_contents(args.store)
        facts = list(by_id.values())  # corpus facts a proof used were copied in: free, as below
        store_desc = f"the knowledge store {args.store}"
    free = corpus_fact_ids(facts, general.values())
    graph = DistillGraph.from_proofs(proofs, facts, free=free)
    dev_trees, dev_qs = load_eb_questions("dev", data)
    gold = {t.question_id: t.hypothesis for t in dev_trees}
    qs = [q for q in dev_qs if q.id in gold][: args.limit or None]
    enc = CachingEncoder(get_encoder(args.encoder))
    corpus_facts = [Fact(k, v, "corpus") for k, v in general.items()]
    addon_facts = [Fact(k, v, "corpus") for k, v in addons.items()]
    known = known_vectors(args.vectors_from, enc.name)
    cvec = cached_vectors(enc, [f.text for f in corpus_facts], cache, known)
    svec = cached_vectors(enc, [f.text for f in facts], cache, known)
    avec = cached_vectors(enc, [f.text for f in addon_facts], cache, known)
    s_index = {f.id: i for i, f in enumerate(facts)}
    corpus = VectorStore(corpus_facts, cvec, enc)
    base = OverlapScorer() if args.scorer == "overlap" or args.no_prover else load_scorer(args.scorer)
    scorer = CachingScorer(base)
    cfg = ProverConfig(threshold=args.threshold)

    from retrieval.store import normalise_text

    corpus_keys = {normalise_text(t) for t in general.values()}
    dev_by_q = {t.question_id: t for t in dev_trees}
    dev_leaf_keys = {q.id: {normalise_text(dev_by_q[q.id].sentences[s]) for s in dev_by_q[q.id].leaves} for q in qs}

    def evaluate(name: str, strategy: str | None, n: int | None, mt: VectorStore | None, extra: dict) -> dict:
        t0 = time.perf_counter()
        have = corpus_keys | ({normalise_text(f.text) for f in mt.facts} if mt is not None else set())
        # Oracle grounding: every gold leaf of the dev tree is in corpus + microtheory (no prover involved).
        leaves_ok = sum(dev_leaf_keys[q.id] <= have for q in qs) / len(qs)
        if args.no_prover:
            row = {"row": name, "strategy": strategy, "n": n, "size": len(mt) if mt is not None else 0,
                   "gold_leaves_available": leaves_ok, "gold_grounding_rate": None, "qa_accuracy": None,
                   "grounding_rate": None, "grounded_accuracy": None, **extra}
            print(json.dumps(row), flush=True)
            return row
        prover = Prover(corpus, scorer, microtheory=mt, config=cfg, encoder=enc)
        evs = prover.prove_many([gold[q.id] for q in qs])
        grounded_gold = sum(e.proof is not None for e in evs)
        summ = QASummary()
        for q in qs:
            summ.add(answer_question(q, prover))
        s = summ.to_json()
        row = {"row": name, "strategy": strategy, "n": n, "size": len(mt) if mt is not None else 0,
               "gold_leaves_available": leaves_ok, "gold_grounding_rate": grounded_gold / len(qs), "qa_accuracy": s["accuracy"],
               "grounding_rate": s["grounding_rate"], "grounded_accuracy": s["grounded_accuracy"],
               "seconds": round(time.perf_counter() - t0, 1), **extra}
        print(json.dumps(row), flush=True)
        return row

    # Encode every text the prover will query, once, in large batches.
    from retrieval.hypothesis import make_hypothesis, split_stem

    texts = [gold[q.id] for q in qs] + [make_hypothesis(q.stem, o) for q in qs for o in q.options.values()] \
        + [c for q in qs for c in split_stem(q.stem)[0]]
    if not args.no_prover:
        enc.encode(list(dict.fromkeys(texts)), batch_size=128)
    rows = [evaluate("corpus alone", None, None, None, {})]
    for n in args.budgets:
        for strat in args.strategies:
            sel = select(graph, strat, budget=n, seed=args.seed, time_limit=args.time_limit, fill=args.fill)
            mt_facts = [facts[s_index[fid]] for fid in sel.fact_ids]
            mt = VectorStore([Fact(f.id, f.text, "microtheory") for f in mt_facts],
                             svec[[s_index[f.id] for f in mt_facts]], enc)
            rows.append(evaluate(f"corpus + {strat}({n})", strat, n, mt,
                                 {"train_questions_covered": sel.report["questions_covered"],
                                  "solver_status": sel.report.get("status")}))
    whole = VectorStore([Fact(f.id, f.text, "microtheory") for f in facts], svec, enc)
    rows.append(evaluate("corpus + whole store", "all", len(facts), whole, {}))
    rows.append(evaluate("corpus + all ET_addon (reference)", "addons", len(addon_facts),
                         VectorStore(addon_facts, avec, enc), {}))
    return {"setup": {"general_corpus": len(general), "addons_left_out": len(addons), "store": store_desc,
                      "store_facts": len(facts),
                      "store_proofs": len(proofs), "free_store_facts": len(free), "graph": graph.summary(),
                      "dev_questions": len(qs), "scorer": args.scorer or "shipped", "encoder": enc.name,
                      "prover": cfg.__dict__, "fill": args.fill, "seed": args.seed,
                      "scorer_calls": scorer.calls},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
            "seconds": round(time.perf_counter() - t_start, 1), "rows": rows}


def markdown(res: dict[str, Any]) -> str:
    s = res["setup"]
    lines = ["# Grounding experiment", "",
             f"General corpus: {s['general_corpus']} WorldTree sentences (the {s['addons_left_out']} ET_addon "
             f"sentences left out). Knowledge store: {s['store_facts']} sentences of {s.get('store', 'the EntailmentBank train trees')}, "
             f"{s['store_proofs']} proofs ({s['free_store_facts']} store sentences are already in the corpus: free). "
             f"Test: {s['dev_questions']} EntailmentBank dev questions (task_1 dev, ARC options). "
             f"Scorer: {s['scorer']} (threshold {s['prover'].get('threshold') or 'its own'}); encoder: {s['encoder']}; fill={s['fill']}. Run took {res['seconds']} s.", "",
             "Columns: *gold leaves available* = share of dev questions whose every gold leaf (normalised text) is in "
             "corpus + microtheory (oracle, no prover); *gold grounded* = the prover proves the gold hypothesis; "
             "*QA accuracy*, *answers grounded* and *grounded accuracy* = the prover over the ARC options.", "",
             "| row | size | gold leaves available | gold grounded | QA accuracy | answers grounded | grounded accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def pct(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    for r in res["rows"]:
        lines.append(f"| {r['row']} | {r['size']} | {pct(r.get('gold_leaves_available'))} | {pct(r['gold_grounding_rate'])} | {pct(r['qa_accuracy'])} | "
                     f"{pct(r['grounding_rate'])} | {pct(r['grounded_accuracy'])} |")
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any]) -> bytes:
    from microtheory.plots import figure_png

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    rows = res["rows"]
    metric = "gold_grounding_rate" if rows[0].get("gold_grounding_rate") is not None else "gold_leaves_available"
    strats = sorted({r["strategy"] for r in rows if r["n"] is not None and r["strategy"] not in ("all", "addons")})
    for s in strats:
        rs = sorted((r for r in rows if r["strategy"] == s), key=lambda r: r["n"])
        ax.plot([r["n"] for r in rs], [100 * r[metric] for r in rs], marker="o", label=s)
    for r, style in ((rows[0], ":"), (next(r for r in rows if r["strategy"] == "all"), "--"),
                     (next(r for r in rows if r["strategy"] == "addons"), "-.")):
        ax.axhline(100 * r[metric], linestyle=style, color="grey", label=r["row"])
    ax.set_xscale("log")
    ax.set_xlabel("microtheory size n")
    ax.set_ylabel("dev gold hypotheses grounded (%)" if metric == "gold_grounding_rate"
                  else "dev questions with every gold leaf available (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MICROTHEORY_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--scorer", default=None, help="scorer folder, or 'overlap' (default: the shipped scorer)")
    ap.add_argument("--encoder", default=None)
    ap.add_argument("--store", type=Path, default=None,
                    help="a knowledge store with proofs (e.g. from `microtheory populate`) instead of the train trees")
    ap.add_argument("--vectors-from", type=Path, default=ROOT / ".cache" / "worldtree_store",
                    help="an existing store built with the same encoder: its vectors are reused")
    ap.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=[100, 250, 500, 1000, 2000])
    from microtheory.distill import STRATEGIES

    ap.add_argument("--strategies", type=lambda s: s.split(","), default=list(STRATEGIES),
                    help=f"comma-separated; registered: {', '.join(STRATEGIES)}")
    ap.add_argument("--threshold", type=float, default=None, help="entailment threshold (default: the scorer's own)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N dev questions (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--fill", action="store_true")
    ap.add_argument("--no-prover", action="store_true", help="only the oracle column (seconds, no scorer)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix for the result files")
    a = ap.parse_args()
    res = run(a)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = "grounding" + (f"_{a.tag}" if a.tag else "")
    (a.out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (a.out / f"{stem}.md").write_text(markdown(res))
    (a.out / f"{stem}.png").write_bytes(plot(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
