"""The critic measured against real signals it never trained on.

(a) Human acceptability judgements (Wiegreffe et al. 2022, `explanation_acceptability/*_train.csv`):
    Spearman correlation between the critic's score for each explanation and the share of its
    annotators (3 per instance) who found it acceptable, next to the GPT-3 likelihood baseline in the
    files (-NLL: lower NLL = more likely). The critic is trained only on flaw-injected EntailmentBank
    trees, never on these files.
(b) Real model errors: the T5-11B / T5-large proofs published with EntailmentBank for the 187 dev
    items. Each predicted proof is written out as a prose explanation (its leaf and intermediate
    sentences in proof order, then the keyed answer); label "flawed" = its leaf set or its steps
    differ from the gold tree's. AUROC of the critic's "flawed" signals (5 - score, and 1 - P(none)).
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from critique.inputs import ModelOutput
from critique.taxonomy import NONE
from core.errors import InputError

LETTERS = "ABCDEFGHIJ"
SNLI_OPTIONS = {"A": "entailment", "B": "neutral", "C": "contradiction"}
SNLI_GOLD = {"true": "A", "entailment": "A", "neither": "B", "neutral": "B", "false": "C", "contradiction": "C"}


# ----------------------------------------------------------------------------------------------
# Signals of a critic

@dataclass(frozen=True)
class Signals:
    """Per record: the predicted score, the expected score under the score head, P(dimension = none)."""

    score: np.ndarray
    expected_score: np.ndarray
    p_none: np.ndarray


def critic_signals(critic: Any, records: Sequence[ModelOutput], batch_size: int = 32,
                   progress: bool = False) -> Signals:
    """The critic's outputs as numbers (uses `Critic.logits` when present, else `predict`)."""
    if hasattr(critic, "logits") and hasattr(critic, "config"):
        outs = critic.logits(list(records), batch_size=batch_size, progress=progress)
        none_i = list(critic.config.labels).index(NONE)
        # One forward pass: decode the critiques from the same head outputs when the critic allows it.
        decode = getattr(critic, "_critique", None)
        preds = ([decode(r, *o) for r, o in zip(records, outs)] if decode is not None
                 else critic.predict(list(records), batch_size=batch_size))
        exp = np.array([float((np.arange(len(s)) * np.asarray(s, dtype=np.float64)).sum()) for _, s, _, _ in outs])
        p_none = np.array([float(d[none_i]) for d, _, _, _ in outs])
    else:
        preds = critic.predict(list(records), batch_size=batch_size)
        exp = np.array([float(c.score) for c in preds])
        p_none = np.array([(c.confidence or 1.0) if c.dimension == NONE else 1 - (c.confidence or 1.0)
                           for c in preds])
    return Signals(np.array([float(c.score) for c in preds]), exp, p_none)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's rho (ties averaged); None when either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(spearmanr(a, b).statistic)


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` for positives `labels == 1` (Mann-Whitney, ties = 1/2)."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ----------------------------------------------------------------------------------------------
# (a) Human acceptability judgements

@dataclass(frozen=True)
class HumanItem:
    """One explanation with its record, the share of annotators who accepted it, and GPT-3's NLL."""

    instance: str
    index: int          # 1..5 within the instance
    record: ModelOutput
    acceptable: float   # share of annotators who found it acceptable
    annotators: int
    nll: float | None


def split_choices(text: str) -> list[str]:
    """"a, b, c, d, or e" -> ["a", "b", "c", "d", "e"]."""
    parts = [p.strip() for p in re.split(r",\s*(?:or\s+)?|\s+or\s+(?=[^,]*$)", text.strip()) if p.strip()]
    return parts


def _float(s: str | None) -> float | None:
    try:
        return float(s) if s not in (None, "") else None
    except ValueError:
        return None


def read_acceptability(path: str | Path, limit: int | None = None) -> tuple[list[HumanItem], list[str]]:
    """(items, problems): one item per explanation; instances that cannot become records are listed."""
    p = Path(path)
    if not p.is_file():
        raise InputError("acceptability CSV not found", str(p))
    with p.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "Answer.acceptable" not in rows[0]:
        raise InputError("not an acceptability file (no 'Answer.acceptable' column)", str(p))
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[r["Input.id"]].append(r)
    items: list[HumanItem] = []
    problems: list[str] = []
    snli = "Input.premise" in rows[0]
    for n, (iid, ann) in enumerate(groups.items()):
        if limit is not None and n >= limit:
            break
        first = ann[0]
        if snli:
            question = (f'Premise: "{first["Input.premise"].strip()}" Hypothesis: "{first["Input.hypothesis"].strip()}" '
                        f"What is the relation of the hypothesis to the premise?")
            options = dict(SNLI_OPTIONS)
            key = SNLI_GOLD.get(first["Input.gold_label"].strip().lower())
        else:
            question = first["Input.question"].strip()
            choices = split_choices(first["Input.answer_choices"])
            options = {LETTERS[i]: c for i, c in enumerate(choices[:len(LETTERS)])}
            key = next((k for k, v in options.items() if v.strip().lower() == first["Input.gold_label"].strip().lower()),
                       None)
        if key is None or len(options) < 2:
            problems.append(f"{iid}: gold label {first['Input.gold_label']!r} not among the options")
            continue
        votes = [0] * 5
        for a in ann:
            for tok in (a.get("Answer.acceptable") or "").split("|"):
                if tok.strip().isdigit() and 1 <= int(tok) <= 5:
                    votes[int(tok) - 1] += 1
        for j in range(1, 6):
            expl = (first.get(f"Input.explanation_{j}") or "").strip()
            if not expl:
                problems.append(f"{iid}: explanation {j} is empty")
                continue
            rec = ModelOutput(id=f"{iid}#{j}", question=question, options=options, answer_key=key,
                              explanation=expl, predicted_answer=key)
            items.append(HumanItem(iid, j, rec, votes[j - 1] / len(ann), len(ann), _float(first.get(f"Input.nll_{j}"))))
    return items, problems


def human_correlations(items: Sequence[HumanItem], sig: Signals) -> dict[str, Any]:
    acc = [it.acceptable for it in items]
    nll_ok = [i for i, it in enumerate(items) if it.nll is not None]
    return {
        "n_explanations": len(items),
        "n_instances": len({it.instance for it in items}),
        "mean_acceptable_share": round(float(np.mean(acc)), 4) if items else None,
        "spearman_critic": spearman(sig.score, acc),
        "spearman_critic_expected_score": spearman(sig.expected_score, acc),
        "spearman_critic_p_none": spearman(sig.p_none, acc),
        "spearman_neg_nll": spearman([-items[i].nll for i in nll_ok], [acc[i] for i in nll_ok]),  # type: ignore[operator]
        "n_with_nll": len(nll_ok),
    }


def eval_human(model: str | Path | None = None, data_dir: str | Path | None = None, limit: int | None = None,
               progress: bool = False, critic: Any = None, batch_size: int = 32) -> dict[str, Any]:
    """(a) for both files; `critic` overrides loading `model` (tests pass a double)."""
    from microtheory.datasets import default_data_dir

    base = Path(data_dir) if data_dir else default_data_dir()
    if critic is None:
        from critique.model import load_critic

        critic = load_critic(model)
    out: dict[str, Any] = {"model": str(model) if model else "shipped", "split": "train files (never trained on)",
                           "datasets": {}}
    for name in ("commonsenseqa", "snli"):
        items, problems = read_acceptability(base / "explanation_acceptability" / f"{name}_train.csv", limit)
        sig = critic_signals(critic, [it.record for it in items], batch_size=batch_size, progress=progress)
        r = human_correlations(items, sig)
        r["skipped_instances"] = len([p for p in problems if "gold label" in p])
        r["score_distribution"] = {str(k): int((sig.score == k).sum()) for k in range(6)}
        out["datasets"][name] = r
    return out


# ----------------------------------------------------------------------------------------------
# (b) Real model errors: T5 proofs on EntailmentBank dev

_STEP = re.compile(r"^\s*(?P<prem>.+?)\s*->\s*(?P<concl>hypothesis|int\d+)\s*(?::\s*(?P<text>.*))?$")


def lenient_steps(proof: str) -> list[tuple[list[str], str, str | None]]:
    """Steps of a (possibly invalid) EB proof string: (premise ids, conclusion id, inline text)."""
    proof = proof.strip()
    if proof.startswith("$proof$"):
        proof = proof.split("=", 1)[1] if "=" in proof else ""
    steps = []
    for part in proof.split(";"):
        m = _STEP.match(part)
        if not m:
            continue
        prem = [p.strip() for p in m.group("prem").split("&") if re.fullmatch(r"(sent|int)\d+", p.strip())]
        steps.append((prem, m.group("concl"), (m.group("text") or "").strip() or None))
    return steps


def render_proof(proof: str, sentences: dict[str, str], hypothesis: str, answer: tuple[str, str]) -> str:
    """A predicted proof as prose: new leaves, then each conclusion, then the answer sentence."""
    out: list[str] = []
    stated: set[str] = set()
    ints: dict[str, str] = {}

    def add(text: str, lead: str = "") -> None:
        t = " ".join(text.split()).rstrip(" .")
        if t:
            out.append((lead + t[:1].lower() + t[1:]) if lead else (t[:1].upper() + t[1:]))

    for prem, concl, text in lenient_steps(proof):
        for p in prem:
            if p.startswith("sent") and p not in stated and p in sentences:
                stated.add(p)
                add(sentences[p])
        if concl == "hypothesis":
            add(hypothesis, "So, ")
        elif text:
            ints[concl] = text
            add(text, "So, ")
    if not out:
        add(hypothesis)
    return ". ".join(out) + f". So the answer is ({answer[0]}) {answer[1].strip().rstrip('.')}."


def _signatures(steps: Sequence[tuple[Sequence[str], str]]) -> tuple[frozenset[str], frozenset[frozenset[frozenset[str]]]]:
    """(leaf set, set of step signatures); a step is the set of the leaf sets under its premises."""
    under: dict[str, frozenset[str]] = {}
    sigs = set()
    leaves: set[str] = set()
    for prem, concl in steps:
        parts = []
        for p in prem:
            if p.startswith("sent"):
                leaves.add(p)
                parts.append(frozenset([p]))
            else:
                parts.append(under.get(p, frozenset([p])))
        sig = frozenset(parts)
        sigs.add(sig)
        under[concl] = frozenset().union(*parts) if parts else frozenset()
    return frozenset(leaves), frozenset(sigs)


def proof_matches(gold: Any, proof: str) -> tuple[bool, bool]:
    """(leaves match, steps match) of a predicted proof string against a gold EntailmentTree."""
    g_leaves, g_steps = _signatures([(s.premises, s.conclusion) for s in gold.steps])
    p_leaves, p_steps = _signatures([(p, c) for p, c, _ in lenient_steps(proof)])
    return g_leaves == p_leaves, g_steps == p_steps


@dataclass(frozen=True)
class T5Item:
    item_id: str
    record: ModelOutput
    flawed: int          # 1 when leaves or steps differ from gold
    leaves_match: bool
    steps_match: bool
    valid: bool          # the predicted proof is a well-formed tree


def t5_items(task: int, model: str, data_dir: str | Path | None = None) -> list[T5Item]:
    """The dev items of one T5 prediction file as critique records with their flawed labels."""
    from microtheory.datasets import DataPaths, read_arc, read_eb_dev, read_t5_predictions

    paths = DataPaths(Path(data_dir)) if data_dir else DataPaths.default()
    dev = read_eb_dev(paths.require(paths.eb_dev(task)))
    preds = read_t5_predictions(paths.require(paths.t5_predictions(task, model)), dev)
    arc = read_arc(paths.require(p) for p in paths.arc)
    out = []
    for gold, pred in zip(dev, preds):
        q = arc.get(gold.question_id)
        if q is None or q.answer_key is None:
            raise InputError(f"dev item {gold.id}: no ARC question with options and key")
        key = q.answer_key
        sents = {k: v for k, v in gold.sentences.items() if k.startswith("sent")}
        expl = render_proof(pred.proof, sents, gold.hypothesis, (key, q.options[key]))
        lm, sm = proof_matches(gold, pred.proof)
        rec = ModelOutput(id=f"{model}/task{task}/{gold.id}", question=q.stem, options=dict(q.options),
                          answer_key=key, explanation=expl, predicted_answer=key)
        out.append(T5Item(gold.id, rec, int(not (lm and sm)), lm, sm, pred.tree is not None))
    return out


def eval_t5(model: str | Path | None = None, data_dir: str | Path | None = None, progress: bool = False,
            critic: Any = None, runs: Sequence[tuple[int, str]] = ((1, "T5_11B"), (1, "T5_large"),
                                                                    (2, "T5_11B"), (2, "T5_large")),
            batch_size: int = 32) -> dict[str, Any]:
    """(b) for each (task, T5 model) prediction file, and pooled."""
    if critic is None:
        from critique.model import load_critic

        critic = load_critic(model)
    out: dict[str, Any] = {"model": str(model) if model else "shipped", "split": "EntailmentBank dev (187 items)",
                           "label": "flawed = predicted leaf set or steps differ from gold", "runs": {}}
    all_flaw: list[int] = []
    all_sig: list[Signals] = []
    for task, t5 in runs:
        items = t5_items(task, t5, data_dir)
        sig = critic_signals(critic, [it.record for it in items], batch_size=batch_size, progress=progress)
        y = [it.flawed for it in items]
        out["runs"][f"task{task}/{t5}"] = _t5_metrics(y, sig, items)
        all_flaw += y
        all_sig.append(sig)
    pooled = Signals(*(np.concatenate([getattr(s, f) for s in all_sig]) for f in ("score", "expected_score", "p_none")))
    out["pooled"] = _t5_metrics(all_flaw, pooled, None)
    return out


def _t5_metrics(y: Sequence[int], sig: Signals, items: Sequence[T5Item] | None) -> dict[str, Any]:
    y_arr = np.asarray(y)
    r: dict[str, Any] = {
        "n": len(y), "n_flawed": int(y_arr.sum()), "n_match": int(len(y) - y_arr.sum()),
        "auroc_score": auroc(5 - sig.score, y),
        "auroc_expected_score": auroc(5 - sig.expected_score, y),
        "auroc_p_flawed": auroc(1 - sig.p_none, y),
        "share_flagged_flawed": {"flawed": _share(sig.p_none < 0.5, y_arr == 1),
                                 "match": _share(sig.p_none < 0.5, y_arr == 0)},
        "mean_score": {"flawed": _mean(sig.score[y_arr == 1]), "match": _mean(sig.score[y_arr == 0])},
    }
    if items is not None:
        r["n_invalid_trees"] = sum(1 for it in items if not it.valid)
        r["n_leaves_differ"] = sum(1 for it in items if not it.leaves_match)
        # A stricter-to-satisfy label: only a wrong leaf set counts as flawed (step structure ignored).
        r["auroc_score_leaves_label"] = auroc(5 - sig.score, [int(not it.leaves_match) for it in items])
        r["auroc_p_flawed_leaves_label"] = auroc(1 - sig.p_none, [int(not it.leaves_match) for it in items])
    return r


def _share(flag: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(flag[mask].mean()), 4) if mask.any() else None


def _mean(x: np.ndarray) -> float | None:
    return round(float(x.mean()), 4) if len(x) else None

