"""The checks critic: a small learned head over `critique.checks` features (issue 12, part 2).

Three parts, all tiny and stored as one JSON file (`head.json`, a few kB):
- dimension: a one-hidden-layer MLP (or logistic regression, `hidden=0`) on the standardised
  global check features -> 9 classes in taxonomy order;
- score: the same kind of network -> sigmoid x 5, trained on the sources `HeadConfig.score_weight`
  names (shipped: 5 x the human acceptable share, the fine-grained judgements, T5 flawed = 1 /
  matching = 5; not the recipes' synthetic scores). Its output is shrunk towards the mean (a weak
  regressor), so per explanation kind (proof with an answer sentence / free text) an affine map fitted
  on its training rows gives it the targets' mean and spread before rounding to 0-5 (`score_cal`). The
  score does not depend on the predicted dimension: clamping it into the dimension's range (v5 and
  earlier) cost most of its ranking power (T5 CV AUROC 0.822 raw -> 0.724 clamped; model card);
- flaw unit: per dimension, a linear scorer over the standardised unit features; softmax over the
  explanation's units picks the main flaw;
- `fast`: the same three parts again, trained on fast mode's lexical checks of the same rows
  (`critique.checks.ChecksConfig(fast=True)`), used when the checker runs in fast mode.
`ChecksCritic` runs the checks and the head and writes `critique.format.Critique`s;
`ChecksBackend` is the batch-runner backend (`critique(records) -> list[CritiqueResult]`).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from critique.checks import (ACC_BY_KIND_FEATURE, ACC_FEATURE, DERIVED_FEATURES, EXTRA_FEATURES, GLOBAL_FEATURES,
                             UNIT_FEATURES, Checker, ChecksConfig, RecordChecks, head_input, without_knowledge)
from critique.checks_data import LM_FEATURES
from critique.format import NO_FLAW, Critique
from critique.inputs import ModelOutput
from critique.taxonomy import LABELS, NONE, general_advice, specific_advice
from core.errors import ModelError

FORMAT = "microtheory-checks-head"
FORMAT_VERSION = 2   # 2: optional "fast_head" (fast mode's lexical checks), more derived features
DEFAULT_HEAD = Path(__file__).resolve().parent / "weights" / "checks" / "head.json"
NONE_INDEX = LABELS.index(NONE)


@dataclass(frozen=True)
class HeadConfig:
    """Training settings of the head (all small: it trains in seconds on a CPU)."""

    hidden: int = 0
    weight_decay: float = 1e-3
    epochs: int = 200
    lr: float = 0.01
    seed: int = 0
    # Score-loss weight of each source kind ("syn" synthetic recipes, "acc" acceptability shares,
    # "fg" fine-grained human judgements, "t5" T5 proofs vs gold); 0 leaves a kind out of the score net.
    score_weight: dict[str, float] = field(default_factory=lambda: {"syn": 1.0, "acc": 1.0, "t5": 1.0, "fg": 1.0})
    score_weight_decay: float | None = None   # None: weight_decay
    dim_sources: tuple[str, ...] = ("syn", "t5", "fg")   # kinds whose dimension labels train the dimension net
    drop_knowledge_copies: bool = True   # train on each knowledge row also without its fact features (fast mode)
    # Optional global features after the derived ones (`critique.checks.head_input`, EXTRA_FEATURES): (),
    # (ACC_FEATURE,), the acceptability regressor's output, or all of EXTRA_FEATURES, that output with
    # the explanation's kind and their product (head v5). Full mode only; the fast part never reads them.
    extra_features: tuple[str, ...] = ()
    # Whether the dimension net reads them too (else the score net only). Off: with the acceptability
    # feature in the dimension net, leave-one-recipe-out macro-F1 fell 0.474 -> 0.449 (model card).
    extra_in_dim: bool = False
    # Human acceptability rows as partial dimension labels (head v8): an explanation at least
    # NONE_ACCEPTED of the annotators accept counts as `none`, one at most NONE_REJECTED accept as "some
    # flaw" (which one is unknown: the loss is -log(1 - P(none))); this weight scales that loss against
    # the recipes' and T5's labels. 0: the dimension net never sees a free-text explanation, and called
    # every one of them flawed (0 of 300 acceptability dev rows `none`, head v7).
    none_from_acceptability: float = 0.0


# --- tiny numpy networks -------------------------------------------------------------------------------

def _mlp(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    if "w1" in params:
        x = np.tanh(x @ params["w1"] + params["b1"])
    return x @ params["w2"] + params["b2"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@dataclass
class CheckHead:
    """The learned head: standardisation, dimension net, score net, per-dimension unit scorers."""

    g_mean: np.ndarray
    g_std: np.ndarray
    u_mean: np.ndarray
    u_std: np.ndarray
    dim_net: dict[str, np.ndarray]
    score_net: dict[str, np.ndarray]
    unit_w: np.ndarray          # (n_labels, n_unit_features + 1)
    meta: dict[str, Any] = field(default_factory=dict)
    fast: CheckHead | None = None   # the part that reads fast mode's lexical checks
    lm: dict[str, Any] | None = None   # optional likelihood part of the score ("mean", "std", "weight")
    extra_features: tuple[str, ...] = ()   # optional features it reads after the derived ones (HeadConfig)
    # per explanation kind ("proof", "free_text"): [raw mean, raw std, target mean, target std] on the
    # score net's training rows; None: the raw score is the score (heads before v6)
    score_cal: dict[str, list[float]] | None = None

    def features(self, c: RecordChecks, knowledge: bool = True) -> np.ndarray:
        """The input row this head reads for one record's checks."""
        return head_input(c, self.extra_features, knowledge)

    def _g(self, g: np.ndarray) -> np.ndarray:
        return (g - self.g_mean) / self.g_std

    def dim_probs(self, g: np.ndarray) -> np.ndarray:
        return _softmax(_mlp(self.dim_net, self._g(np.atleast_2d(g))))

    def score(self, g: np.ndarray) -> np.ndarray:
        z = _mlp(self.score_net, self._g(np.atleast_2d(g)))[:, 0]
        return 5.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def score_lm(self, g: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """The score from the checks and the likelihood features (`critique.checks_data.LM_FEATURES`)."""
        if self.lm is None:
            raise ModelError("this checks head has no likelihood score part; retrain it with LM features")
        i = LM_FEATURES.index("lm_nll_mean")
        z = _mlp(self.score_net, self._g(np.atleast_2d(g)))[:, 0]
        fluent = -(np.atleast_2d(lm)[:, i] - self.lm["mean"][i]) / self.lm["std"][i]
        z = z + self.lm["weight"] * fluent
        return 5.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def calibrated(self, g: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The raw 0-5 score stretched, per explanation kind, to its targets' mean and spread; in 0-5."""
        raw = np.asarray(raw, np.float64)
        if not self.score_cal:
            return np.clip(raw, 0.0, 5.0)
        out = raw.copy()
        for kind, rows in _kinds(np.atleast_2d(g)).items():
            if kind in self.score_cal and rows.any():
                rm, rs, tm, ts = self.score_cal[kind]
                out[rows] = tm + (raw[rows] - rm) * ts / rs
        return np.clip(out, 0.0, 5.0)

    def unit_probs(self, u: np.ndarray, dim: int) -> np.ndarray:
        x = (u - self.u_mean) / self.u_std
        return _softmax(x @ self.unit_w[dim, :-1] + self.unit_w[dim, -1])

    def to_json(self) -> dict[str, Any]:
        arr = {k: v.tolist() for k, v in (("g_mean", self.g_mean), ("g_std", self.g_std), ("u_mean", self.u_mean),
                                            ("u_std", self.u_std), ("unit_w", self.unit_w))}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "labels": list(LABELS),
                "global_features": _feature_names(self.extra_features), "unit_features": list(UNIT_FEATURES), **arr,
                "dim_net": {k: v.tolist() for k, v in self.dim_net.items()},
                "score_net": {k: v.tolist() for k, v in self.score_net.items()}, "meta": self.meta,
                **({"fast_head": self.fast.to_json()} if self.fast is not None else {}),
                **({"score_calibration": self.score_cal} if self.score_cal else {}),
                **({"lm_score": {"features": list(LM_FEATURES), "mean": self.lm["mean"].tolist(),
                                 "std": self.lm["std"].tolist(), "weight": self.lm["weight"]}} if self.lm else {})}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "head") -> CheckHead:
        if d.get("format") != FORMAT or not 1 <= int(d.get("format_version", 0)) <= FORMAT_VERSION:
            raise ModelError(f"{where}: not a checks head this library reads (format {d.get('format')!r})")
        extra = tuple(d.get("global_features", [])[len(GLOBAL_FEATURES) + len(DERIVED_FEATURES):])
        if set(extra) - set(EXTRA_FEATURES) or d.get("global_features") != _feature_names(extra) \
                or d.get("unit_features") != list(UNIT_FEATURES):
            raise ModelError(f"{where}: trained on other check features than critique.checks computes; retrain it")
        a = {k: np.asarray(d[k], dtype=np.float64) for k in ("g_mean", "g_std", "u_mean", "u_std", "unit_w")}
        fast = cls.from_json(d["fast_head"], f"{where} (fast part)") if d.get("fast_head") else None
        lm = None
        if d.get("lm_score"):
            if d["lm_score"].get("features") != list(LM_FEATURES):
                raise ModelError(f"{where}: likelihood part trained on other LM features; retrain it")
            lm = {"mean": np.asarray(d["lm_score"]["mean"]), "std": np.asarray(d["lm_score"]["std"]),
                  "weight": float(d["lm_score"]["weight"])}
        return cls(dim_net={k: np.asarray(v) for k, v in d["dim_net"].items()},
                   score_net={k: np.asarray(v) for k, v in d["score_net"].items()}, meta=d.get("meta", {}),
                   fast=fast, lm=lm, extra_features=extra, score_cal=d.get("score_calibration"), **a)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()) + "\n", encoding="utf-8")
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path | None = None) -> CheckHead:
        p = Path(path) if path else DEFAULT_HEAD
        if p.is_dir():
            p = p / "head.json"
        if not p.is_file():
            raise ModelError(f"no checks head at {p} (train one with `microtheory critique train --backend checks`)")
        try:
            return cls.from_json(json.loads(p.read_text(encoding="utf-8")), str(p))
        except (ValueError, KeyError) as e:
            raise ModelError(f"{p}: unreadable checks head ({e})") from None


def _feature_names(extra: Sequence[str]) -> list[str]:
    return list(GLOBAL_FEATURES) + list(DERIVED_FEATURES) + list(extra)


_ANSWER_UNIT = GLOBAL_FEATURES.index("has_answer_unit")


def _kinds(g: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks of the two explanation kinds the score is calibrated for (head input rows `g`)."""
    proof = g[:, _ANSWER_UNIT] > 0.5
    return {"proof": proof, "free_text": ~proof}


def fit_score_calibration(head: CheckHead, g: np.ndarray, target: np.ndarray, min_rows: int = 20
                          ) -> dict[str, list[float]]:
    """Per kind with >= `min_rows` rows: the mean and spread of the head's raw score on `g` and of the
    0-5 `target` (the score net's own training rows), for `CheckHead.calibrated`."""
    raw = head.score(g)
    out = {}
    for kind, rows in _kinds(g).items():
        if rows.sum() >= min_rows and raw[rows].std() > 1e-6 and target[rows].std() > 1e-6:
            out[kind] = [float(raw[rows].mean()), float(raw[rows].std()),
                         float(target[rows].mean()), float(target[rows].std())]
    return out


# --- training --------------------------------------------------------------------------------------------

@dataclass
class TrainRows:
    """Arrays for the head: global features, dimension (-1 unknown), score target (nan unknown),
    score weight, units per row, flaw unit (-1 none)."""

    g: np.ndarray
    dim: np.ndarray
    score: np.ndarray
    weight: np.ndarray
    units: list[np.ndarray]
    flaw: np.ndarray
    kind: np.ndarray | None = None    # source kind per row (`source_kind`)
    share: np.ndarray | None = None   # human accepting share per row (nan: not human-judged)


def source_kind(source: str) -> str:
    """The kind of a training set by its name (see `critique.checks_data.SETS`)."""
    for kind in ("accans", "acc", "t5", "fg"):   # accans: acceptability rows closed by an answer sentence
        if source.startswith(kind):
            return kind
    return "syn"


def rows_from_items(items: Sequence[Any], cfg: HeadConfig) -> TrainRows:
    g, dim, score, w, units, flaw, kinds, shares = [], [], [], [], [], [], [], []
    for it in items:
        kind = source_kind(it.source)
        copies = [(it.checks.g, it.checks.u)]
        if cfg.drop_knowledge_copies and it.checks.g[GLOBAL_FEATURES.index("has_knowledge")] > 0:
            copies.append(without_knowledge(it.checks.g, it.checks.u))
        for cg, cu in copies:
            g.append(head_input(RecordChecks(it.checks.units, cg, cu, acceptability=it.checks.acceptability),
                                cfg.extra_features))
            dim.append(it.dim if kind in cfg.dim_sources else -1)
            score.append(it.score)
            w.append(cfg.score_weight.get(kind, 1.0))
            units.append(cu)
            flaw.append(it.flaw)
            kinds.append(kind)
            shares.append(float(it.extra.get("acceptable", np.nan)) if kind in ("acc", "accans") else np.nan)
    return TrainRows(np.array(g, np.float64), np.array(dim), np.array(score, np.float64), np.array(w, np.float64),
                     units, np.array(flaw), np.array(kinds), np.array(shares, np.float64))


def _init(n_in: int, n_out: int, hidden: int, rng: np.random.Generator) -> dict[str, Any]:
    import torch

    p: dict[str, Any] = {}
    if hidden:
        p["w1"] = torch.tensor(rng.normal(0, 1 / math.sqrt(n_in), (n_in, hidden)), requires_grad=True)
        p["b1"] = torch.zeros(hidden, dtype=torch.float64, requires_grad=True)
        n_in = hidden
    p["w2"] = torch.tensor(rng.normal(0, 1 / math.sqrt(n_in), (n_in, n_out)), requires_grad=True)
    p["b2"] = torch.zeros(n_out, dtype=torch.float64, requires_grad=True)
    return p


def _fit_net(x: np.ndarray, loss_fn: Any, n_out: int, cfg: HeadConfig, weight_decay: float | None = None
             ) -> dict[str, np.ndarray]:
    """Full-batch Adam on a tiny net; `loss_fn(outputs) -> loss`."""
    import torch

    p = _init(x.shape[1], n_out, cfg.hidden, np.random.default_rng(cfg.seed))
    xt = torch.tensor(x)
    wd = cfg.weight_decay if weight_decay is None else weight_decay
    opt = torch.optim.Adam(list(p.values()), lr=cfg.lr, weight_decay=wd)
    for _ in range(cfg.epochs):
        h = torch.tanh(xt @ p["w1"] + p["b1"]) if "w1" in p else xt
        loss = loss_fn(h @ p["w2"] + p["b2"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().numpy() for k, v in p.items()}


def fit_head(items: Sequence[Any], cfg: HeadConfig | None = None) -> CheckHead:
    """Train the head on labelled check items (`critique.checks_data.Item`). One torch thread: the nets
    are tiny, and on a busy 2-core machine two threads made a fit 30x slower (measured: 28 s vs 0.9 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_head(items, cfg or HeadConfig())
    finally:
        torch.set_num_threads(threads)


def _fit_head(items: Sequence[Any], cfg: HeadConfig) -> CheckHead:
    import torch

    torch.manual_seed(cfg.seed)
    r = rows_from_items(items, cfg)
    g_mean, g_std = r.g.mean(0), r.g.std(0) + 1e-6
    all_u = np.concatenate(r.units)
    u_mean, u_std = all_u.mean(0), all_u.std(0) + 1e-6
    x = (r.g - g_mean) / g_std
    lab = r.dim >= 0
    counts = np.bincount(r.dim[lab], minlength=len(LABELS)).astype(float)
    cw = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(LABELS), 0.0))
    n_dim_in = x.shape[1] if cfg.extra_in_dim else x.shape[1] - len(cfg.extra_features)
    accepted, rejected = acceptability_none_labels(r) if cfg.none_from_acceptability else (lab & False, lab & False)
    rows = lab | accepted | rejected
    yd = torch.tensor(r.dim[rows])
    full, acc_yes, acc_no = (torch.tensor(m[rows]) for m in (lab, accepted, rejected))
    n_partial = max(int(accepted.sum() + rejected.sum()), 1)

    def dim_loss(o: Any) -> Any:
        loss = torch.nn.functional.cross_entropy(o[full], yd[full], weight=cw)
        if not cfg.none_from_acceptability:
            return loss
        log_none = torch.log_softmax(o, 1)[:, NONE_INDEX]
        partial = -log_none[acc_yes].sum() - torch.log1p(-log_none[acc_no].exp().clamp(max=1 - 1e-6)).sum()
        return loss + cfg.none_from_acceptability * partial / n_partial

    dim_net = _fit_net(x[rows][:, :n_dim_in], dim_loss, len(LABELS), cfg)
    dim_net = _zero_pad_inputs(dim_net, x.shape[1])
    sc = ~np.isnan(r.score) & (r.weight > 0)
    ys, ws = torch.tensor(r.score[sc] / 5.0), torch.tensor(_balanced(r.weight[sc], r, sc))
    score_net = _fit_net(x[sc], lambda o: (ws * (torch.sigmoid(o[:, 0]) - ys) ** 2).sum() / ws.sum(), 1, cfg,
                         cfg.score_weight_decay)
    unit_w = _fit_units(r, u_mean, u_std, cfg)
    head = CheckHead(g_mean, g_std, u_mean, u_std, dim_net, score_net, unit_w,
                     {"config": asdict(cfg), "n_rows": int(len(r.g)), "n_dim_labelled": int(lab.sum()),
                      "n_score_labelled": int(sc.sum())}, extra_features=tuple(cfg.extra_features))
    head.score_cal = fit_score_calibration(head, r.g[sc], r.score[sc]) or None
    return head


NONE_ACCEPTED, NONE_REJECTED = 0.8, 0.4   # accepting shares for `none` / "some flaw" (HeadConfig.none_from_acceptability)


def acceptability_none_labels(r: TrainRows) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, rejected) masks over the rows: human acceptability rows, in either rendering (not T5,
    not the recipes), whose accepting share is >= NONE_ACCEPTED / <= NONE_REJECTED."""
    acc = np.isin(r.kind, ("acc", "accans")) & ~np.isnan(r.share) & (r.dim < 0)
    return acc & (r.share >= NONE_ACCEPTED - 1e-9), acc & (r.share <= NONE_REJECTED + 1e-9)


def _zero_pad_inputs(net: dict[str, np.ndarray], n_in: int) -> dict[str, np.ndarray]:
    """The same net over `n_in` inputs: the extra (last) inputs get zero weights, so it ignores them."""
    first = "w1" if "w1" in net else "w2"
    w = net[first]
    return {**net, first: np.vstack([w, np.zeros((n_in - w.shape[0], w.shape[1]))])}


def fit_lm_offset(head: CheckHead, lm_rows: np.ndarray, weight: float) -> CheckHead:
    """Add the likelihood part: the score's logit moves by `weight` x the standardised -NLL per token
    (SmolLM2 given question + answer). `lm_rows`: likelihood features of unlabelled rows (their mean and
    spread only); `weight` is chosen by the selection checks (`critique.checks_eval.lm_select`). No
    labelled rows with likelihood features are needed (they cost an LM pass each)."""
    lm_rows = np.atleast_2d(np.asarray(lm_rows, np.float64))
    head.lm = {"mean": lm_rows.mean(0), "std": lm_rows.std(0) + 1e-6, "weight": float(weight)}
    head.meta["n_lm_stat_rows"] = int(len(lm_rows))
    return head


def fit_head_pair(items: Sequence[Any], fast_items: Sequence[Any], cfg: HeadConfig | None = None,
                  fast_cfg: HeadConfig | None = None) -> CheckHead:
    """The shipped kind of head: trained on the full checks of `items`, with a `fast` part trained on
    fast mode's lexical checks of the same rows (`critique.checks_data.lexical_sets`)."""
    from dataclasses import replace

    head = fit_head(items, cfg)
    head.fast = fit_head(fast_items, replace(fast_cfg or cfg, extra_features=()))
    return head


def _balanced(w: np.ndarray, r: TrainRows, mask: np.ndarray) -> np.ndarray:
    """Weights so each score source (by its configured weight value) counts as much as its weight says."""
    out = w.copy()
    for v in np.unique(w):
        sel = w == v
        out[sel] = v / sel.sum()
    return out * len(out)


def _fit_units(r: TrainRows, u_mean: np.ndarray, u_std: np.ndarray, cfg: HeadConfig) -> np.ndarray:
    """Per dimension: a linear unit scorer trained by softmax over each flawed example's units."""
    import torch

    n_f = len(UNIT_FEATURES)
    w = torch.zeros((len(LABELS), n_f + 1), dtype=torch.float64, requires_grad=True)
    keep = [i for i, (u, d, f) in enumerate(zip(r.units, r.dim, r.flaw)) if d >= 0 and 0 <= f < len(u) and len(u) > 1]
    if not keep:
        return np.zeros((len(LABELS), n_f + 1))
    n_max = max(len(r.units[i]) for i in keep)
    x = np.zeros((len(keep), n_max, n_f))
    mask = np.zeros((len(keep), n_max), bool)
    for j, i in enumerate(keep):
        x[j, :len(r.units[i])] = (r.units[i] - u_mean) / u_std
        mask[j, :len(r.units[i])] = True
    xt, mt = torch.tensor(x), torch.tensor(mask)
    d, f = torch.tensor(r.dim[keep]), torch.tensor(r.flaw[keep])
    opt = torch.optim.Adam([w], lr=0.05, weight_decay=cfg.weight_decay)
    for _ in range(60):
        wd = w[d]                                                     # B F+1
        logits = torch.einsum("buf,bf->bu", xt, wd[:, :-1]) + wd[:, -1:]
        loss = torch.nn.functional.cross_entropy(logits.masked_fill(~mt, -1e9), f)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().numpy()


# --- the critic ------------------------------------------------------------------------------------------

def score_level(value: float) -> int:
    """The integer 0-5 a critique carries: the calibrated score rounded half up."""
    return int(min(max(math.floor(value + 0.5), 0), 5))


# The most a critique scores an explanation whose predicted option is not the known key. The score net
# learns from real labels only (acceptability, T5 proofs), and every one of those rows predicts the key,
# so left alone it scored wrong-answer explanations like sound ones (session 11: all 9 in the demo outputs 3-5);
# the synthetic convention (critique.flaws.SCORES) scores them 0-3.
WRONG_ANSWER_MAX_SCORE = 2


class ChecksCritic:
    """Checks + head -> one Critique per record. `fast` skips the fact checks."""

    def __init__(self, head: CheckHead | None = None, checker: Checker | None = None):
        head = head or CheckHead.load()
        self.checker = checker or Checker()
        if self.checker.config.fast:
            if head.fast is None:
                raise ModelError("this checks head has no fast part (fast mode reads lexical checks); retrain it "
                                 "with `microtheory critique train --backend checks`")
            head = head.fast
        self.use_lm = self.checker.config.lm and not self.checker.config.fast
        if {ACC_FEATURE, ACC_BY_KIND_FEATURE} & set(head.extra_features) and not self.checker.config.acceptability:
            from dataclasses import replace

            self.checker.config = replace(self.checker.config, acceptability=True)
        if self.use_lm and head.lm is None:
            raise ModelError("this checks head has no likelihood score part (needed with lm=True)")
        self.head = head
        self._lm_scorer: Any = None

    def predict(self, records: Sequence[ModelOutput]) -> list[Critique]:
        records = list(records)
        lm: list[Any] = [None] * len(records)
        if self.use_lm and records:
            if self._lm_scorer is None:
                from critique.checks_data import lm_scorer

                self._lm_scorer = lm_scorer(None)
            lm = list(self._lm_scorer.score(records)[:, :len(LM_FEATURES)])
        return [self.critique_one(r, c, v) for r, c, v in zip(records, self.checker.run(records), lm)]

    def critique_one(self, r: ModelOutput, c: RecordChecks, lm: np.ndarray | None = None) -> Critique:
        x = self.head.features(c)
        probs = self.head.dim_probs(x)[0]
        wrong = r.answer_key is not None and r.predicted_answer != r.answer_key
        if wrong:   # an explanation ending on an option other than the known key has a flaw
            probs = probs.copy()
            probs[NONE_INDEX] = 0.0
        di = int(probs.argmax())
        dim = LABELS[di]
        raw = self.head.score_lm(x, lm) if lm is not None else self.head.score(x)
        score = score_level(float(self.head.calibrated(np.atleast_2d(x), raw)[0]))
        if wrong:
            score = min(score, WRONG_ANSWER_MAX_SCORE)
        if dim == NONE:
            return Critique(NO_FLAW, NONE, general_advice(NONE), NO_FLAW, score, None, float(probs[di]))
        ui = int(self.head.unit_probs(c.u, di).argmax()) if len(c.units) else 0
        unit = c.units[ui]
        fact = c.near_fact[ui] if dim == "incorrect_information" and ui < len(c.near_fact) else None
        cite = f'[{fact[0]}] "{fact[1]}"' if fact else None
        specific = specific_advice(dim, unit.clean, r.predicted_answer, cite)
        return Critique(unit.text, dim, general_advice(dim), specific, score, unit.sentence, float(probs[di]),
                        (fact[0],) if fact else ())


@dataclass
class ChecksBackend:
    """The batch-runner backend: `critique(records) -> list[CritiqueResult]`. Loads on first use.

    `head`: a head.json (None = shipped); `knowledge`: what `critique.advice.load_knowledge` returns
    (a microtheory or store) for the fact checks; `fast`: no fact checks."""

    head: str | None = None
    knowledge: Any = None
    fast: bool = False
    lm: bool = False        # score with the likelihood part (a SmolLM2 pass per record; slow)
    name: str = "checks"
    _critic: ChecksCritic | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """The backend's part of an output header: the head file and its digest, the mode."""
        from core.jsonl import path_digest

        path = Path(self.head) if self.head else DEFAULT_HEAD
        out = {"model": str(self.head or "shipped checks head"), "model_digest": path_digest(path),
               "mode": "fast (lexical checks: no models, no fact checks)" if self.fast else
               "full + likelihood" if self.lm else "full"}
        if not self.fast and path.is_file() and f'"{ACC_FEATURE}"' in path.read_text(encoding="utf-8"):
            from critique.acceptability import SHIPPED_DIR

            out["acceptability_digest"] = path_digest(SHIPPED_DIR)   # the regressor the head reads
        return out

    def critique(self, records: Sequence[ModelOutput]) -> list[Any]:
        from critique.generative import CritiqueResult

        if self._critic is None:
            self._critic = ChecksCritic(CheckHead.load(self.head),
                                        Checker(knowledge=self.knowledge, config=ChecksConfig(fast=self.fast, lm=self.lm)))
        crits = self._critic.predict(list(records))
        return [CritiqueResult(r.id, critique=c) for r, c in zip(records, crits)]
