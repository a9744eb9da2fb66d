"""Labelled check features for training and measuring the checks critic: built once, cached.

Every set is a list of `Item`s: the record's checks (`critique.checks.RecordChecks`) with what is
known about it: a dimension (synthetic recipes; `none` for T5 proofs that match gold), a 0-5 score
target (synthetic score, 5 x the human acceptable share, T5 5 = matches gold / 1 = flawed), the
flaw unit, a group (the question; splits and cross-validation never cut a group) and the source.

Sets (`SETS`), each with its exact split:
- `syn_<recipe>_train`: flaw recipe on EntailmentBank **train** trees (a seeded subset);
- `syn_<recipe>_dev`: the same recipe on EntailmentBank **dev** trees (measurement only);
- `robust_dev`: eb_alt drafts of dev trees in the five robustness renderings;
- `acc_<cqa|snli>`: human acceptability train CSVs (instances subset, seeded), split by instance
  into train / dev (`acc_dev_share`) inside the head trainer;
- `t5_dev`: the T5-11B proofs (tasks 1 and 2) on the 187 dev items, cross-validated by item.
Knowledge for fact checks: the WorldTree corpus (EntailmentBank's fact source) for EB and T5 rows; none
for acceptability rows (CommonsenseQA / SNLI have no corpus here).
"""
from __future__ import annotations

import pickle
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from critique.checks import Checker, ChecksConfig, FactTable, RecordChecks
from critique.inputs import ModelOutput
from critique.taxonomy import LABEL_INDEX, NONE


@dataclass
class Item:
    checks: RecordChecks
    dim: int            # LABEL_INDEX, -1 unknown
    score: float        # 0-5 target, nan unknown
    flaw: int           # unit index of the main flaw, -1 none / unknown
    group: str          # question / instance id
    source: str         # set name
    extra: dict[str, Any]


@dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = None
    cache: str = "runs/checks_feats"
    seed: int = 0
    train_trees: int = 40
    dev_trees: int = 25
    robust_trees: int = 5
    acc_instances: int = 120
    t5_runs: tuple[tuple[int, str], ...] = ((1, "T5_11B"), (2, "T5_11B"))
    batch: int = 32


def _corpus_table(cfg: DataConfig, checker: Checker) -> FactTable:
    from microtheory.datasets import DataPaths, read_worldtree_corpus

    cache = Path(cfg.cache) / "worldtree_vectors.npz"
    paths = DataPaths(Path(cfg.data_dir)) if cfg.data_dir else DataPaths.default()
    corpus = read_worldtree_corpus(paths.require(paths.worldtree_corpus))
    ids, texts = list(corpus), list(corpus.values())
    if cache.is_file():
        z = np.load(cache, allow_pickle=True)
        if list(z["ids"]) == ids:
            return FactTable(ids, texts, z["vectors"])
    table = FactTable.build(ids, texts, checker.encoder)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=np.array(ids, dtype=object), vectors=table.vectors)
    return table


def run_checks(checker: Checker, records: Sequence[ModelOutput], batch: int, label: str = "") -> list[RecordChecks]:
    out: list[RecordChecks] = []
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        out += checker.run(records[i:i + batch])
        print(f"  {label}: {len(out)}/{len(records)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def _flaw_items(examples: Sequence[Any], checks: Sequence[RecordChecks], source: str) -> list[Item]:
    return [Item(c, LABEL_INDEX[e.dimension], float(e.score), -1 if e.flaw_index is None else e.flaw_index,
                 e.source_id, source, {"recipe": e.recipe, "id": e.id}) for e, c in zip(examples, checks)]


def _trees(split: str, n: int, seed: int, cfg: DataConfig) -> tuple[list[Any], list[Any]]:
    from microtheory.datasets import DataPaths, load_eb_questions

    paths = DataPaths(Path(cfg.data_dir)) if cfg.data_dir else DataPaths.default()
    trees, qs = load_eb_questions(split, paths)
    idx = list(range(len(trees)))
    random.Random(f"{seed}:{split}").shuffle(idx)
    return [trees[i] for i in idx[:n]], [qs[i] for i in idx[:n]]


def build_set(name: str, cfg: DataConfig, checker: Checker) -> list[Item]:
    """One named set (see the module doc), computed now."""
    from critique import flaws

    if name.startswith("syn_"):
        recipe, split = name[4:].rsplit("_", 1)
        # Other-tree material (distractors, other chains) comes from the same subset: same split only.
        trees, qs = _trees(split, cfg.train_trees if split == "train" else cfg.dev_trees, cfg.seed, cfg)
        ex = flaws.build_recipe(recipe, trees, qs, seed=cfg.seed, split=split)
        return _flaw_items(ex, run_checks(checker, [e.model_output() for e in ex], cfg.batch, name), name)
    if name == "robust_dev":
        trees, qs = _trees("dev", cfg.robust_trees, cfg.seed + 1, cfg)
        groups = flaws.robustness_set(trees, qs, seed=cfg.seed)
        ex = [e for g in groups for e in g]
        items = _flaw_items(ex, run_checks(checker, [e.model_output() for e in ex], cfg.batch, name), name)
        for i, it in enumerate(items):
            it.extra["robust_group"] = i // 5
        return items
    if name.startswith("acc_"):
        return _acceptability(name, cfg, checker)
    if name == "t5_dev":
        return _t5(cfg, checker)
    raise KeyError(name)


def _acceptability(name: str, cfg: DataConfig, checker: Checker) -> list[Item]:
    from critique.evaluate import read_acceptability
    from microtheory.datasets import default_data_dir

    base = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    file = {"acc_cqa": "commonsenseqa", "acc_snli": "snli"}[name]
    items, _ = read_acceptability(base / "explanation_acceptability" / f"{file}_train.csv")
    inst = sorted({it.instance for it in items})
    random.Random(f"{cfg.seed}:{name}").shuffle(inst)
    keep = set(inst[: cfg.acc_instances])
    items = [it for it in items if it.instance in keep]
    checks = run_checks(checker, [it.record for it in items], cfg.batch, name)
    return [Item(c, -1, 5.0 * it.acceptable, -1, it.instance, name,
                 {"acceptable": it.acceptable, "neg_nll": -it.nll if it.nll is not None else float("nan")})
            for it, c in zip(items, checks)]


def _t5(cfg: DataConfig, checker: Checker) -> list[Item]:
    from critique.evaluate import t5_items

    out: list[Item] = []
    for task, model in cfg.t5_runs:
        items = t5_items(task, model, cfg.data_dir)
        checks = run_checks(checker, [it.record for it in items], cfg.batch, f"t5 task{task} {model}")
        out += [Item(c, LABEL_INDEX[NONE] if not it.flawed else -1, 1.0 if it.flawed else 5.0, -1, it.item_id,
                     "t5_dev", {"flawed": it.flawed, "run": f"task{task}/{model}"}) for it, c in zip(items, checks)]
    return out


SETS = ("acc_cqa", "acc_snli", "syn_eb_alt_train", "syn_eb_v1_train", "t5_dev", "syn_eb_v1_dev", "syn_eb_alt_dev",
        "robust_dev")


def load_sets(names: Sequence[str] = SETS, cfg: DataConfig | None = None, checker: Checker | None = None
              ) -> dict[str, list[Item]]:
    """Each named set from the cache (runs/checks_feats/<name>.pkl), computing the missing ones."""
    cfg = cfg or DataConfig()
    out: dict[str, list[Item]] = {}
    for name in names:
        path = Path(cfg.cache) / f"{name}.pkl"
        if path.is_file():
            out[name] = pickle.loads(path.read_bytes())
            continue
        if checker is None:
            checker = Checker(config=ChecksConfig())
        knows = not name.startswith("acc_")
        if knows and checker._knowledge is None:
            checker._knowledge = _corpus_table(cfg, checker)
            checker._facts = None
        ck = checker if knows else Checker(checker._scorer, checker._encoder, None, ChecksConfig(fast=True))
        ck._vec_cache = checker._vec_cache
        t0 = time.perf_counter()
        out[name] = build_set(name, cfg, ck)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(out[name]))
        tmp.replace(path)
        print(f"{name}: {len(out[name])} items, {time.perf_counter() - t0:.0f} s", flush=True)
    return out
