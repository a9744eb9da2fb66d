"""Option ranking for grounded QA, learned on EntailmentBank *train* questions only.

Why: an option's best proof score alone answers worse than retrieval (the entailment scorer's
probabilities are not comparable across hypotheses, and the more premise sets an option tries, the
likelier one false positive). Instead every option gets a feature vector - proof scores by set
size, the grounded flag, dense and BM25 retrieval evidence, how well the retrieved facts link the
question to the option's own words - and a conditional logit (a softmax over the options of one
question, one weight per feature, L2-regularised) turns it into one probability per option.

The fitted model is a small JSON (`ranker.json`: feature names, standardisation, weights, the
training configuration and metrics) in `retrieval/weights/qa_ranker/`, shipped with the package;
`bench/train_qa_ranker.py` fits it (`fit_ranker` below) from features collected once on train
questions.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError, ModelError
from retrieval.entail import content_words
from retrieval.hypothesis import split_stem
from retrieval.prover import Evidence

SHIPPED_DIR = Path(__file__).resolve().parent / "weights" / "qa_ranker"
FILE = "ranker.json"
FORMAT_VERSION = 1

# Every feature `option_features` computes, in a fixed order. A model uses a subset, by name.
ALL_FEATURES = (
    "entail", "entail_logit", "entail_single", "entail_pair", "entail_triple", "entail_chain", "grounded",
    "pass_frac", "entail_top3", "dense_top1", "dense_mean3", "bm25_top1", "bm25_mean3", "link",
    "option_cover", "option_in_stem", "option_words",
)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def _link(prover: Any, qvec: np.ndarray | None, ovec: np.ndarray | None, ev: Evidence, top: int = 10) -> float:
    """The best retrieved fact as a bridge between question and option: max over facts of
    min(cos(fact, question sentence), cos(fact, option text)). 0 without stored vectors."""
    if qvec is None or ovec is None:
        return 0.0
    cands = [c for c in ev.candidates if c.source != "context"][:top]
    vecs = prover.vectors_of([c.id for c in cands]) if cands else None
    if vecs is None or not len(vecs):
        return 0.0
    return float(np.max(np.minimum(vecs @ qvec, vecs @ ovec)))


def _option_cover(stem: str, option: str, ev: Evidence, top: int = 5) -> float:
    """Share of the option's own content words (those not in the stem) found in the best fused facts."""
    own = content_words(option) - content_words(stem)
    if not own:
        return 0.0
    words = set().union(*(content_words(c.text) for c in ev.candidates[:top])) if ev.candidates else set()
    return len(own & words) / len(own)


PROOF_FEATURES = ALL_FEATURES[:9]


def proof_features(sizes: Sequence[int], scores: Sequence[float], chain_score: float, threshold: float) -> list[float]:
    """The PROOF_FEATURES of one option from its scored depth-1 sets (sizes, scores) and chained score."""
    sc = sorted(scores, reverse=True)
    entail = max(sc[0] if sc else 0.0, chain_score)

    def best(n: int) -> float:
        return max((x for k, x in zip(sizes, scores) if k == n), default=0.0)

    return [entail, _logit(entail), best(1), best(2), best(3), chain_score, float(entail >= threshold),
            float(np.mean([x >= threshold for x in sc])) if sc else 0.0, float(np.mean(sc[:3])) if sc else 0.0]


def evidence_features(stem: str, option: str, ev: Evidence, prover: Any, vecs: np.ndarray | None) -> list[float]:
    """The features after PROOF_FEATURES (retrieval evidence and the option's own words)."""
    dense = sorted((c.score for c in ev.candidates if c.source != "context"), reverse=True)
    bm = sorted((c.bm25 for c in ev.candidates if c.source != "context"), reverse=True)
    own = content_words(option)
    return [dense[0] if dense else 0.0, float(np.mean(dense[:3])) if dense else 0.0,
            float(np.log1p(bm[0])) if bm else 0.0, float(np.log1p(np.mean(bm[:3]))) if bm else 0.0,
            _link(prover, vecs[0] if vecs is not None else None, vecs[1] if vecs is not None else None, ev),
            _option_cover(stem, option, ev), len(own & content_words(stem)) / max(1, len(own)),
            float(np.log1p(len(option.split())))]


def option_features(stem: str, options: Sequence[str], evs: Sequence[Evidence], prover: Any,
                    threshold: float) -> np.ndarray:
    """(options x ALL_FEATURES) for one question from the prover's evidence."""
    question = split_stem(stem)[1] or stem
    vecs = prover.encode([question, *options]) if hasattr(prover, "encode") else None
    rows = []
    for n, (opt, ev) in enumerate(zip(options, evs)):
        pf = proof_features([len(s) for s in ev.sets], ev.scores, ev.chain_score, threshold)
        if ev.best is not None and ev.best.score > pf[0]:  # a decomposer's deeper proof
            pf = proof_features([len(s) for s in ev.sets], [*ev.scores, ev.best.score], ev.chain_score, threshold)
        ov = None if vecs is None else vecs[[0, n + 1]]
        rows.append(pf + evidence_features(stem, opt, ev, prover, ov))
    return np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class SearchLimits:
    """A smaller search than the one recorded: the first `singles` one-fact sets, `pairs` pairs,
    `triples` triples (in the prover's order), and up to `chain_k` chained sets of the best failing seed."""

    singles: int
    pairs: int
    triples: int
    chain_k: int


def replay_features(row: dict[str, Any], limits: SearchLimits) -> np.ndarray:
    """The ALL_FEATURES matrix a smaller search would have given, from a training row's recorded search."""
    thr = float(row["threshold"])
    out = []
    for feats, srch in zip(row["features"], row["search"]):
        cap = {1: limits.singles, 2: limits.pairs, 3: limits.triples}
        seen = {1: 0, 2: 0, 3: 0}
        keep = []
        for i, k in enumerate(srch["sizes"]):
            if seen[k] < cap[k]:
                keep.append(i)
            seen[k] += 1
        sizes = [srch["sizes"][i] for i in keep]
        scores = [srch["scores"][i] for i in keep]
        chain = 0.0
        if keep and max(scores) < thr and limits.chain_k:
            seed = keep[int(np.argmax(scores))]
            ext = [x for j, x in srch["chained"] if j == seed][:limits.chain_k]
            chain = max(ext, default=0.0)
        out.append(proof_features(sizes, scores, chain, thr) + list(feats[len(PROOF_FEATURES):]))
    return np.asarray(out, dtype=np.float64)


@dataclass
class OptionRanker:
    """A conditional logit over options: score = ((x - mean) / std) @ weights, softmax per question."""

    features: list[str]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def _columns(self, x: np.ndarray) -> np.ndarray:
        idx = [ALL_FEATURES.index(f) for f in self.features]
        return np.asarray(x, dtype=np.float64)[:, idx]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """One score per option (rows of `x`, the ALL_FEATURES matrix of one question)."""
        return ((self._columns(x) - self.mean) / self.std) @ self.weights

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        s = self.scores(x)
        e = np.exp(s - s.max())
        return e / e.sum()

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "kind": "qa-option-ranker", "features": self.features,
                "mean": self.mean.round(6).tolist(), "std": self.std.round(6).tolist(),
                "weights": self.weights.round(6).tolist(), "config": self.config, "metrics": self.metrics}

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (FILE + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(d / FILE)
        return d / FILE

    @classmethod
    def load(cls, directory: str | Path | None = None) -> OptionRanker:
        """The ranker in `directory` (default: the shipped one)."""
        f = Path(directory or SHIPPED_DIR) / FILE
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the QA option ranker {f}: {e}") from None
        if obj.get("format") != FORMAT_VERSION or obj.get("kind") != "qa-option-ranker":
            raise ModelError(f"{f} is not a QA option ranker of format {FORMAT_VERSION}")
        unknown = [x for x in obj["features"] if x not in ALL_FEATURES]
        if unknown:
            raise ModelError(f"{f} uses features this version does not compute: {unknown}")
        return cls(list(obj["features"]), np.asarray(obj["mean"]), np.asarray(obj["std"]),
                   np.asarray(obj["weights"]), obj.get("config", {}), obj.get("metrics", {}))


# -- fitting ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitConfig:
    features: tuple[str, ...] = ALL_FEATURES
    l2: float = 1.0  # penalty on the squared weights (standardised features), summed, per question


def _stack(groups: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Questions padded to one array: (Q x options x F), the option mask, the correct indices."""
    width = max(len(x) for x, _ in groups)
    f = groups[0][0].shape[1]
    xs = np.zeros((len(groups), width, f))
    mask = np.zeros((len(groups), width), dtype=bool)
    for n, (x, _) in enumerate(groups):
        xs[n, :len(x)] = x
        mask[n, :len(x)] = True
    return xs, mask, np.asarray([y for _, y in groups])


def _nll(w: np.ndarray, xs: np.ndarray, mask: np.ndarray, y: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of the correct options, plus penalty/2 * |w|^2; and its gradient."""
    s = np.where(mask, xs @ w, -np.inf)
    s = s - s.max(1, keepdims=True)
    e = np.exp(s)
    p = e / e.sum(1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(e.sum(1)) - s[rows, y]))
    grad = np.einsum("qo,qof->f", p, xs) / len(y) - xs[rows, y].mean(0)
    return loss + 0.5 * penalty * float(w @ w), grad + penalty * w


def fit_ranker(groups: Sequence[tuple[np.ndarray, int]], config: FitConfig = FitConfig()) -> OptionRanker:
    """Fit on questions given as (ALL_FEATURES matrix, index of the correct option)."""
    from scipy.optimize import minimize

    if not groups:
        raise InputError("no training questions for the option ranker")
    idx = [ALL_FEATURES.index(f) for f in config.features]
    allx = np.concatenate([x[:, idx] for x, _ in groups])
    mean, std = allx.mean(0), allx.std(0)
    std[std < 1e-9] = 1.0
    xs, mask, y = _stack([((x[:, idx] - mean) / std, yy) for x, yy in groups])
    # l2 is the penalty of a summed likelihood: divided by the question count for the mean.
    res = minimize(_nll, np.zeros(len(idx)), args=(xs, mask, y, config.l2 / len(groups)), jac=True,
                   method="L-BFGS-B")
    return OptionRanker(list(config.features), mean, std, res.x,
                        {"l2": config.l2, "questions": len(groups), "converged": bool(res.success)})


def accuracy(ranker: OptionRanker, groups: Sequence[tuple[np.ndarray, int]]) -> float:
    return float(np.mean([int(np.argmax(ranker.scores(x))) == y for x, y in groups])) if groups else 0.0
