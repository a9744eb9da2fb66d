"""The acceptability regressor: (question + answer, explanation) -> expected share of annotators accepting.

A cross-encoder of the same kind as the entailment scorer (`retrieval.entail.CrossEncoderScorer`:
MiniLM + LoRA + a small head, trained by `retrieval.entail_train.train` with a soft target), trained
on the human acceptability train CSVs (Wiegreffe et al., GPT-3 explanations of CommonsenseQA and
SNLI) at scale: every instance of both files except the 120 per file the checks head learns its
score from and the 60-instance held-out sample (`acceptability_split`), so that the head's own
acceptability rows and the held-out sample stay out-of-sample for it. Its output is one global
feature of the checks (`critique.checks`, full mode only).

Segment A is the question and the answer (`pair`: for SNLI the reader's rendering, premise and
hypothesis inside the question); segment B the explanation. Weights: `critique/weights/acceptability`
(adapter + config, MODEL_CARD.md beside them).
"""
from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from critique.inputs import ModelOutput

SHIPPED_DIR = Path(__file__).resolve().parent / "weights" / "acceptability"
FILES = {"acc_cqa": "commonsenseqa", "acc_snli": "snli"}
HELDOUT_SIZE = 60  # bench/critique_acc_heldout.py's sample


def acceptability_split(name: str, data_dir: Path, seed: int = 0, n_instances: int = 120, dev_share: float = 0.25,
                        heldout: int = 0, regressor_dev: int = 80) -> dict[str, list[Any]]:
    """HumanItems of one acceptability train CSV by instance, all parts disjoint and seeded:

    - "train" / "dev": the checks head's 120 instances (`checks_data._acceptability`), split as
      `checks_eval.make_splits` does;
    - "heldout": a sample of `heldout` instances from outside those 120 (never trained on);
    - "regressor_train" / "regressor_dev": every other instance, `regressor_dev` of them kept for the
      regressor's epoch / learning-rate choice.
    """
    from critique.evaluate import read_acceptability

    items, _ = read_acceptability(Path(data_dir) / "explanation_acceptability" / f"{FILES[name]}_train.csv")
    inst = sorted({it.instance for it in items})
    random.Random(f"{seed}:{name}").shuffle(inst)            # as checks_data._acceptability
    keep, rest = inst[:n_instances], inst[n_instances:]
    groups = sorted(keep)
    random.Random(f"{seed}:dev:{name}").shuffle(groups)     # as checks_eval.make_splits
    dev = set(groups[: int(round(len(groups) * dev_share))])  # noqa: RUF046 - same expression as make_splits
    rest = sorted(rest)
    random.Random(f"{seed}:heldout:{name}").shuffle(rest)
    held = set(rest[:heldout])
    # The held-out sample is always carved out first with the bench's size (60), whatever `heldout` asks,
    # so the regressor's rows never include it.
    others = sorted(rest[max(heldout, HELDOUT_SIZE):])
    random.Random(f"{seed}:regressor:{name}").shuffle(others)
    rdev, rtrain = set(others[:regressor_dev]), set(others[regressor_dev:])
    keep_set = set(keep)
    return {"train": [it for it in items if it.instance in keep_set and it.instance not in dev],
            "dev": [it for it in items if it.instance in dev],
            "heldout": [it for it in items if it.instance in held],
            "regressor_train": [it for it in items if it.instance in rtrain],
            "regressor_dev": [it for it in items if it.instance in rdev]}


def pair(r: ModelOutput) -> tuple[list[str], str]:
    """(segment A sentences, segment B): the question and the predicted answer's text; the explanation."""
    ans = r.options.get(r.predicted_answer or "", r.predicted_answer or "")
    return [r.question, f"Answer: {ans}"], r.explanation


def examples(items: Sequence[Any], kind: str = "") -> list[Any]:
    """EntailExamples with the acceptable share as soft target (label: share >= 0.5, for the threshold)."""
    from retrieval.entail_train import EntailExample

    out = []
    for it in items:
        prem, hyp = pair(it.record)
        out.append(EntailExample(tuple(prem), hyp, int(it.acceptable >= 0.5), kind or it.record.id.split("#")[0],
                                 it.instance, float(it.acceptable)))
    return out


class AcceptabilityScorer:
    """Scores records: the predicted acceptable share in [0, 1] (sigmoid of the regressor's logit).

    `path`: a directory written by `train_regressor` (None = the shipped weights). The model loads on
    first use, with the entailment scorer's runtimes (ONNX Runtime by default on CPU)."""

    def __init__(self, path: str | Path | None = None, runtime: str | None = None, num_threads: int | None = None):
        from retrieval.entail import CrossEncoderScorer

        self.path = Path(path) if path is not None else SHIPPED_DIR
        self._ce = CrossEncoderScorer(self.path, runtime=runtime, num_threads=num_threads)

    def score(self, records: Sequence[ModelOutput], batch_size: int = 64) -> np.ndarray:
        if not records:
            return np.zeros(0, np.float32)
        return self._ce.score_batch([pair(r) for r in records], batch_size=batch_size)


@functools.lru_cache(maxsize=2)
def load_acceptability(path: str | None = None) -> AcceptabilityScorer:
    """The regressor at `path` (None = shipped), cached once per process."""
    return AcceptabilityScorer(path)


def regressor_sets(data_dir: Path, seed: int = 0, regressor_dev: int = 80) -> dict[str, list[Any]]:
    """{"train", "dev"} HumanItems of both files (the regressor's rows; see `acceptability_split`)."""
    out: dict[str, list[Any]] = {"train": [], "dev": []}
    for name in FILES:
        s = acceptability_split(name, data_dir, seed=seed, regressor_dev=regressor_dev)
        out["train"] += s["regressor_train"]
        out["dev"] += s["regressor_dev"]
    return out


def dev_spearman(scorer: AcceptabilityScorer, items: Sequence[Any]) -> dict[str, float]:
    """Spearman of the regressor's score with the acceptable share, per file (instance id prefix)."""
    from critique.evaluate import spearman

    s = scorer.score([it.record for it in items])
    by: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by.setdefault(_file_of(it), []).append(i)
    acc = np.array([it.acceptable for it in items])
    return {k: float(spearman(s[idx], acc[idx])) for k, idx in sorted(by.items())}


def _file_of(it: Any) -> str:
    return "snli" if it.record.question.startswith("Premise:") else "cqa"


def train_regressor(out_dir: str | Path, config: Any, data_dir: Path, seed: int = 0, regressor_dev: int = 80,
                    progress: bool = True) -> dict[str, Any]:
    """Train the regressor into `out_dir` (`retrieval.entail_train.train` with soft targets) and
    measure it on its dev part; returns the summary (also in the config's `extra`)."""
    from dataclasses import replace

    from retrieval.entail import EntailConfig
    from retrieval.entail_train import train

    sets = regressor_sets(data_dir, seed, regressor_dev)
    tr, dv = examples(sets["train"]), examples(sets["dev"])
    meta = {"task": "acceptability regression (soft target: share of annotators accepting)",
            "rows": {"train_explanations": len(tr), "dev_explanations": len(dv),
                     "train_instances": len({e.tree_id for e in tr}), "dev_instances": len({e.tree_id for e in dv}),
                     "split": f"critique.acceptability.acceptability_split(seed={seed}, regressor_dev={regressor_dev})"}}
    res = train(tr, dv, out_dir, config, progress=progress, extra_meta=meta)
    rho = dev_spearman(AcceptabilityScorer(out_dir, runtime="torch"), sets["dev"])
    conf = EntailConfig.load(out_dir)
    extra = dict(conf.extra) | {"dev_spearman": rho}
    replace(conf, extra=extra).save(out_dir)
    return {"steps": res.steps, "seconds": res.seconds, "dev_spearman": rho, "heldout_binary": res.heldout}
