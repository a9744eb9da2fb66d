"""Option ranking for grounded QA, learned on EntailmentBank *train* questions only.

Why retrieval features only: an option's best proof score ranks options worse than retrieval does
(the entailment scorer's probabilities are not comparable across hypotheses, and each premise set
tried is another chance of a false positive), and on train cross-validation the proof scores added
nothing once the retrieval evidence was in. So every option gets a vector of retrieval evidence -
dense and BM25 scores of the facts its hypothesis retrieves, of the facts the option text alone
retrieves, how the facts retrieved for the question sentence mention the option, how well one fact
links question and option, the stem's context sentences - each optionally compared within its
question (`expand`: margin over the best other option, z-score), and a conditional logit (a softmax
over the options of one question, L2-regularised) turns it into one probability per option. The
entailment scorer then only has to prove the chosen option (retrieval.qa.ground_option).

Optionally (when the fitted model lists them) a second, independent signal joins: a small LM's
preference among the options (`retrieval.option_lm.LM_FEATURES`: the option's log-probability after
the question, and its PMI against an unconditional prompt), appended after the retrieval columns.
A ranker without LM features never loads the LM.

The fitted model is a small JSON (`ranker.json`: feature names, transforms, standardisation,
weights, the grounding policy, the training configuration and metrics) in
`retrieval/weights/qa_ranker/`, shipped with the package; `bench/train_qa_ranker.py` fits it
(`fit_ranker` below) from features collected once on train questions.
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
from retrieval.option_lm import LM_FEATURES
from retrieval.prover import Candidate

SHIPPED_DIR = Path(__file__).resolve().parent / "weights" / "qa_ranker"
FILE = "ranker.json"
# Format 2: retrieval-only features, expanded within each question (see `expand`).
FORMAT_VERSION = 2
# The same fit without the LM features: ~2.4x faster answers, no SmolLM2 needed, 1.2 points lower on
# held-out train questions (bench/train_qa_ranker.py, "all" feature set); `qa --ranker fast`.
FAST_DIR = Path(__file__).resolve().parent / "weights" / "qa_ranker_fast"
NAMED = {"shipped": SHIPPED_DIR, "fast": FAST_DIR}


def ranker_dir(spec: str | Path | None) -> Path:
    """The folder of a ranker named in NAMED, or the folder given (None: shipped)."""
    return NAMED.get(str(spec), Path(spec)) if spec is not None else SHIPPED_DIR


# Every per-option feature `option_features` computes, in a fixed order. All come from retrieval
# (no entailment scoring): on EntailmentBank train questions the proof scores added nothing to the
# ranking once retrieval evidence was in (bench/train_qa_ranker.py), so the scorer only grounds the answer.
ALL_FEATURES = (
    "dense_top1", "dense_mean3", "dense_mean10", "bm25_top1", "bm25_mean3", "link", "option_cover",
    "hyp_cover", "joint_cover", "opt_dense_top1", "opt_bm25_top1", "opt_link", "qfacts_opt_cos",
    "qfacts_opt_cover", "option_in_stem", "option_words", "context_top1", "context_cover",
)
# The same retrieval evidence over the microtheory alone (when `microtheory qa --microtheory` gives one):
# the store-independent columns (option words, the stem's context) are not repeated.
MT_FEATURES = tuple(f"mt_{f}" for f in ALL_FEATURES[:14])
# Every column any ranker can read. A question's matrix holds ALL_FEATURES, then the LM features when
# the LM was run, then MT_FEATURES when a microtheory was given (`matrix_columns`).
KNOWN_FEATURES = ALL_FEATURES + LM_FEATURES + MT_FEATURES
# Within-question expansions of each feature: the value, its margin over the best other option, its z-score.
TRANSFORMS = ("raw", "margin", "z")


def matrix_columns(width: int) -> tuple[str, ...]:
    """The column names of a question's feature matrix of `width` columns (see KNOWN_FEATURES)."""
    for cols in (ALL_FEATURES, ALL_FEATURES + LM_FEATURES, ALL_FEATURES + MT_FEATURES, KNOWN_FEATURES):
        if len(cols) == width:
            return cols
    raise ModelError(f"a ranker feature matrix of {width} columns matches no known layout")


def expand(x: np.ndarray, transforms: Sequence[str] = TRANSFORMS) -> np.ndarray:
    """(options x F) -> (options x F*len(transforms)): each feature compared within its question.

    A conditional logit ignores what all options share; these make "best of the options" and "how far
    ahead" visible to a linear model."""
    x = np.asarray(x, dtype=np.float64)
    out = []
    for t in transforms:
        if t == "raw":
            out.append(x)
        elif t == "margin":
            if len(x) < 2:
                out.append(np.zeros_like(x))
                continue
            top2 = -np.sort(-x, axis=0)[:2]
            other = np.where(x >= top2[0], top2[1], top2[0])  # best of the *other* options
            out.append(x - other)
        elif t == "z":
            sd = x.std(0)
            out.append((x - x.mean(0)) / np.where(sd < 1e-9, 1.0, sd))
        else:
            raise ModelError(f"unknown feature transform {t!r}")
    return np.concatenate(out, axis=1)


def expanded_names(features: Sequence[str], transforms: Sequence[str]) -> list[str]:
    return [f if t == "raw" else f"{f}:{t}" for t in transforms for f in features]


@dataclass(frozen=True)
class QuestionRetrieval:
    """What retrieval found for one question: per option, the fused hits of its hypothesis and of its
    text alone, and the fused hits of the question sentence (shared by the options)."""

    stem: str
    options: tuple[str, ...]
    hypothesis_hits: tuple[tuple[Candidate, ...], ...]
    option_hits: tuple[tuple[Candidate, ...], ...]
    question_hits: tuple[Candidate, ...]


def _facts(cands: Sequence[Candidate], top: int) -> list[Candidate]:
    return [c for c in cands if c.source != "context"][:top]


def _bridge(prover: Any, cands: Sequence[Candidate], qvec: np.ndarray | None, ovec: np.ndarray | None) -> float:
    """The best fact as a bridge between question and option: max of min(cos(fact, question), cos(fact, option))."""
    if qvec is None or ovec is None or not cands:
        return 0.0
    vecs = prover.vectors_of([c.id for c in cands])
    if vecs is None or not len(vecs):
        return 0.0
    return float(np.max(np.minimum(vecs @ qvec, vecs @ ovec)))


def _cover(words: set[str], cands: Sequence[Candidate]) -> float:
    """Share of `words` found in the texts of `cands`."""
    if not words:
        return 0.0
    found = set().union(*(content_words(c.text) for c in cands)) if cands else set()
    return len(words & found) / len(words)


def _joint_cover(qwords: set[str], own: set[str], cands: Sequence[Candidate]) -> float:
    """Max over facts of min(share of question words, share of the option's own words) it holds."""
    if not qwords or not own:
        return 0.0
    best = 0.0
    for c in cands:
        w = content_words(c.text)
        best = max(best, min(len(w & qwords) / len(qwords), len(w & own) / len(own)))
    return best


def _option_row(r: QuestionRetrieval, n: int, prover: Any, vecs: np.ndarray | None) -> list[float]:
    stem_words = content_words(r.stem)
    question = split_stem(r.stem)[1] or r.stem
    opt = r.options[n]
    own = content_words(opt) - stem_words or content_words(opt)
    hyp = _facts(r.hypothesis_hits[n], 10)
    dense = sorted((c.score for c in hyp), reverse=True)
    bm = sorted((c.bm25 for c in hyp), reverse=True)
    ctx = [c for c in r.hypothesis_hits[n] if c.source == "context"]
    ohits = _facts(r.option_hits[n], 10)
    qhits = _facts(r.question_hits, 10)
    qvec = vecs[0] if vecs is not None else None
    ovec = vecs[n + 1] if vecs is not None else None
    qcos = 0.0
    if ovec is not None and qhits:
        fv = prover.vectors_of([c.id for c in qhits])
        qcos = float(np.max(fv @ ovec)) if fv is not None and len(fv) else 0.0
    hyp_words = content_words(question) | content_words(opt)
    return [
        dense[0] if dense else 0.0, float(np.mean(dense[:3])) if dense else 0.0,
        float(np.mean(dense[:10])) if dense else 0.0,
        float(np.log1p(bm[0])) if bm else 0.0, float(np.log1p(np.mean(bm[:3]))) if bm else 0.0,
        _bridge(prover, hyp, qvec, ovec), _cover(own, hyp[:5]), _cover(hyp_words, hyp[:5]),
        _joint_cover(content_words(question) - content_words(opt), own, hyp),
        max((c.score for c in ohits), default=0.0), float(np.log1p(max((c.bm25 for c in ohits), default=0.0))),
        _bridge(prover, ohits, qvec, ovec), qcos, _cover(own, qhits),
        len(content_words(opt) & stem_words) / max(1, len(content_words(opt))),
        float(np.log1p(len(opt.split()))),
        # The question's own context sentences (candidates of source "context"), when there are any.
        max((c.score for c in ctx), default=0.0), _cover(content_words(opt), ctx),
    ]


def option_features(r: QuestionRetrieval, prover: Any) -> np.ndarray:
    """(options x ALL_FEATURES) for one question from what retrieval found (no entailment scoring)."""
    question = split_stem(r.stem)[1] or r.stem
    vecs = prover.encode([question, *r.options]) if hasattr(prover, "encode") else None
    return np.asarray([_option_row(r, n, prover, vecs) for n in range(len(r.options))], dtype=np.float64)


def microtheory_features(r: QuestionRetrieval, microtheory_prover: Any) -> np.ndarray:
    """(options x MT_FEATURES): what retrieval over the microtheory alone found (`r`, from a prover over
    that store only), as the first ALL_FEATURES columns are computed over the corpus."""
    return option_features(r, microtheory_prover)[:, :len(MT_FEATURES)]


@dataclass
class OptionRanker:
    """A conditional logit over options: score = ((expand(x) - mean) / std) @ weights, softmax per question."""

    features: list[str]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    transforms: tuple[str, ...] = ("raw",)

    @property
    def needs_lm(self) -> bool:
        """Whether the features include the LM's (retrieval.option_lm): the LM must then be run."""
        return any(f in LM_FEATURES for f in self.features)

    @property
    def needs_microtheory(self) -> bool:
        """Whether the features include the microtheory's (MT_FEATURES): `qa` must then be given one."""
        return any(f in MT_FEATURES for f in self.features)

    def design(self, x: np.ndarray) -> np.ndarray:
        """The model's input columns from one question's matrix (its layout: `matrix_columns`)."""
        x = np.asarray(x, dtype=np.float64)
        names = matrix_columns(x.shape[1])
        missing = [f for f in self.features if f not in names]
        if missing:
            raise ModelError(f"the ranker needs features {missing} but got {x.shape[1]} columns")
        return expand(x[:, [names.index(f) for f in self.features]], self.transforms)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """One score per option (rows of `x`, one question's feature matrix)."""
        return ((self.design(x) - self.mean) / self.std) @ self.weights

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        s = self.scores(x)
        e = np.exp(s - s.max())
        return e / e.sum()

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "kind": "qa-option-ranker", "features": self.features,
                "transforms": list(self.transforms), "columns": expanded_names(self.features, self.transforms),
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
        f = ranker_dir(directory) / FILE
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the QA option ranker {f}: {e}") from None
        if obj.get("format") != FORMAT_VERSION or obj.get("kind") != "qa-option-ranker":
            raise ModelError(f"{f} is not a QA option ranker of format {FORMAT_VERSION} (retrain it with "
                             "bench/train_qa_ranker.py)")
        unknown = [x for x in obj["features"] if x not in KNOWN_FEATURES]
        if unknown:
            raise ModelError(f"{f} uses features this version does not compute: {unknown}")
        transforms = tuple(obj.get("transforms", ("raw",)))
        bad = [t for t in transforms if t not in TRANSFORMS]
        width = len(obj["features"]) * len(transforms)
        if bad or not len(obj["weights"]) == len(obj["mean"]) == len(obj["std"]) == width:
            raise ModelError(f"{f}: transforms {transforms} and weights do not match its features")
        return cls(list(obj["features"]), np.asarray(obj["mean"]), np.asarray(obj["std"]),
                   np.asarray(obj["weights"]), obj.get("config", {}), obj.get("metrics", {}), transforms)


# -- fitting ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitConfig:
    features: tuple[str, ...] = ALL_FEATURES
    l2: float = 1.0  # penalty on the squared weights (standardised columns), summed, per question
    transforms: tuple[str, ...] = TRANSFORMS


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
    """Fit on questions given as (feature matrix (`matrix_columns`), index of the correct option)."""
    from scipy.optimize import minimize

    if not groups:
        raise InputError("no training questions for the option ranker")
    shell = OptionRanker(list(config.features), np.zeros(0), np.ones(0), np.zeros(0),
                         transforms=tuple(config.transforms))
    designed = [(shell.design(x), y) for x, y in groups]
    allx = np.concatenate([x for x, _ in designed])
    mean, std = allx.mean(0), allx.std(0)
    std[std < 1e-9] = 1.0
    xs, mask, y = _stack([((x - mean) / std, yy) for x, yy in designed])
    # l2 is the penalty of a summed likelihood: divided by the question count for the mean.
    res = minimize(_nll, np.zeros(allx.shape[1]), args=(xs, mask, y, config.l2 / len(groups)), jac=True,
                   method="L-BFGS-B")
    return OptionRanker(list(config.features), mean, std, res.x,
                        {"l2": config.l2, "questions": len(groups), "converged": bool(res.success)},
                        transforms=tuple(config.transforms))


def accuracy(ranker: OptionRanker, groups: Sequence[tuple[np.ndarray, int]]) -> float:
    return float(np.mean([int(np.argmax(ranker.scores(x))) == y for x, y in groups])) if groups else 0.0
