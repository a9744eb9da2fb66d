"""Labelled check features for training and measuring the checks critic: built once, cached.

Every set is a list of `Item`s: the record's checks (`critique.checks.RecordChecks`) with what is
known about it: a dimension (synthetic recipes; `none` for T5 proofs that match gold), a 0-5 score
target (synthetic score, 5 x the human acceptable share, T5 5 = matches gold / 1 = flawed), the
flaw unit, a group (the question; splits and cross-validation never cut a group) and the source.

Sets (`SETS`), each with its exact split:
- `syn_<recipe>_train`: flaw recipe on EntailmentBank **train** trees (a seeded subset);
- `syn_<recipe>_dev`: the same recipe on EntailmentBank **dev** trees (measurement only);
- `short_<recipe>_<train|dev>`: the recipe on the next trees of the same seeded order, each cut to its
  final step (`critique.flaws.last_step`): short explanations, which real model outputs mostly are;
- `nofacts_<recipe>_<train|dev>`: the `syn_` set's examples checked against the corpus **without** the
  facts of the set's own trees (`_corpus_table(exclude=...)`): knowledge that holds facts like the
  explanation's but not its own sentences, as a small microtheory or an LM's own wording meets it;
- `robust_dev`: eb_alt drafts of dev trees in the five robustness renderings;
- `acc_<cqa|snli>`: human acceptability train CSVs (instances subset, seeded), split by instance
  into train / dev (`acc_dev_share`) inside the head trainer;
- `t5_dev`: the T5-11B proofs (tasks 1 and 2) on the 187 dev items, cross-validated by item;
- `fg_<cose|ecqa|esnli>`: the fine-grained human judgements (one item per explanation, the annotators'
  shares per attribute), split by instance like the acceptability sets.
Knowledge for fact checks: the WorldTree corpus (EntailmentBank's fact source) for EB and T5 rows; none
for acceptability and fine-grained rows (CommonsenseQA / SNLI have no corpus here).
`lexical_sets` recomputes the same items with fast mode's lexical checks; `attach_lm` adds the
likelihood features (critique.likelihood) from its cache.
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
    train_trees: int = 480   # per recipe; LORO macro-F1 0.480 with 40 (3 recipes), 0.516-0.538 with 160-480 (session 10)
    dev_trees: int = 25
    # `short_<recipe>_<split>` sets: the recipe on other trees (the next ones of the same seeded order,
    # so never the full sets' trees) cut to their final step (`critique.flaws.last_step`)
    short_train_trees: int = 240
    short_dev_trees: int = 25
    robust_trees: int = 5
    acc_instances: int = 120
    t5_runs: tuple[tuple[int, str], ...] = ((1, "T5_11B"), (2, "T5_11B"))
    batch: int = 32

    def cache_file(self, name: str) -> Path:
        """Where set `name` is cached: a recipe set's file names its tree count, so that sets built
        from another number of trees are never read back as these."""
        if name.startswith(RECIPE_PREFIXES):
            return Path(self.cache) / f"{name}_{len(recipe_trees(name, self, load=False)[2])}trees.pkl"
        return Path(self.cache) / f"{name}.pkl"


# Recipe set families: the recipe on full trees (`syn_`), on other trees cut to their final step
# (`short_`), and the `syn_` examples checked against the corpus without their own facts (`nofacts_`).
# Each family's train rows train with their recipe; its dev rows are measured apart.
RECIPE_PREFIXES = ("syn_", "short_", "nofacts_")
VARIANTS = ("short", "nofacts")


def recipe_trees(name: str, cfg: DataConfig, load: bool = True) -> tuple[str, str, list[Any], list[Any]]:
    """(recipe, split, trees, questions) of a recipe set `syn_<recipe>_<split>` or `nofacts_...` (the
    first trees of the split's seeded order) or `short_<recipe>_<split>` (the next ones, cut to their
    final step). With load=False the tree lists are placeholders of the right length (no data read)."""
    from critique.flaws import last_step

    prefix, rest = name.split("_", 1)
    recipe, split = rest.rsplit("_", 1)
    full = cfg.train_trees if split == "train" else cfg.dev_trees
    if prefix in ("syn", "nofacts"):
        start, n = 0, full
    else:
        start, n = full, cfg.short_train_trees if split == "train" else cfg.short_dev_trees
    if not load:
        return recipe, split, [None] * n, [None] * n
    trees, qs = _trees(split, start + n, cfg.seed, cfg)
    trees, qs = trees[start:], qs[start:]
    return recipe, split, [last_step(t) for t in trees] if prefix == "short" else trees, qs


def _corpus_table(cfg: DataConfig, checker: Checker, exclude: Sequence[str] = ()) -> FactTable:
    """The WorldTree corpus as a FactTable (vectors cached); `exclude`: texts whose corpus sentences are
    left out (compared lower-cased, spaces collapsed)."""
    from microtheory.datasets import DataPaths, read_worldtree_corpus

    cache = Path(cfg.cache) / "worldtree_vectors.npz"
    paths = DataPaths(Path(cfg.data_dir)) if cfg.data_dir else DataPaths.default()
    corpus = read_worldtree_corpus(paths.require(paths.worldtree_corpus))
    ids, texts = list(corpus), list(corpus.values())
    table = None
    if cache.is_file():
        z = np.load(cache, allow_pickle=True)
        if list(z["ids"]) == ids:
            table = FactTable(ids, texts, z["vectors"])
    if table is None:
        table = FactTable.build(ids, texts, checker.encoder)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, ids=np.array(ids, dtype=object), vectors=table.vectors)
    if not exclude:
        return table
    drop = {_fact_key(t) for t in exclude}
    keep = [i for i, t in enumerate(texts) if _fact_key(t) not in drop]
    return FactTable([ids[i] for i in keep], [texts[i] for i in keep], table.vectors[keep])


def _fact_key(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


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

    if name.startswith(RECIPE_PREFIXES):
        # Other-tree material (distractors, other chains) comes from the same subset: same split only.
        recipe, split, trees, qs = recipe_trees(name, cfg)
        ex = flaws.build_recipe(recipe, trees, qs, seed=cfg.seed, split=split)
        if name.startswith("nofacts_"):
            own = [t for tree in trees for t in tree.sentences.values()]
            cache = checker._vec_cache
            checker = Checker(checker.scorer, checker.encoder, _corpus_table(cfg, checker, exclude=own),
                              checker.config)
            checker._vec_cache = cache
        return _flaw_items(ex, run_checks(checker, [e.model_output() for e in ex], cfg.batch, name), name)
    if name == "robust_dev":
        trees, qs = _trees("dev", cfg.robust_trees, cfg.seed + 1, cfg)
        groups = flaws.robustness_set(trees, qs, seed=cfg.seed)
        ex = [e for g in groups for e in g]
        items = _flaw_items(ex, run_checks(checker, [e.model_output() for e in ex], cfg.batch, name), name)
        for i, it in enumerate(items):
            it.extra["robust_group"] = i // 5
        return items
    if name.startswith(("acc_", "accans_")):
        return _acceptability(name, cfg, checker)
    if name == "t5_dev":
        return _t5(cfg, checker)
    if name.startswith("fg_"):
        return _fine_grained(name, cfg, checker)
    raise KeyError(name)


def answered(rec: ModelOutput) -> ModelOutput:
    """The same explanation closed by a sentence naming its predicted option ("The answer is (B) X."):
    the human-judged free-text rows in a second rendering, as proofs and many LM outputs end."""
    from dataclasses import replace as _replace

    opt = rec.options.get(rec.predicted_answer)
    tail = f"The answer is ({rec.predicted_answer}) {opt}." if opt else f"The answer is {rec.predicted_answer}."
    text = rec.explanation.rstrip()
    text = text if text.endswith((".", "!", "?")) else text + "."
    return _replace(rec, id=f"{rec.id}#answered", explanation=f"{text} {tail}")


def acc_base(name: str) -> str:
    """The acceptability set an `accans_` set renders again (`acc_cqa` for `accans_cqa`); other names as given."""
    return name.replace("accans_", "acc_", 1) if name.startswith("accans_") else name


def _acceptability(name: str, cfg: DataConfig, checker: Checker) -> list[Item]:
    """`acc_<file>`: the seeded instances of an acceptability train CSV, score target 5 x the accepting
    share. `accans_<file>`: the same rows `answered`, for the dimension net's `none` labels only (no
    score target: the score net trains on each explanation once)."""
    from critique.acceptability import FILES
    from critique.evaluate import read_acceptability
    from microtheory.datasets import default_data_dir

    base_name = acc_base(name)
    base = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    file = FILES[base_name]
    items, _ = read_acceptability(base / "explanation_acceptability" / f"{file}_train.csv")
    inst = sorted({it.instance for it in items})
    random.Random(f"{cfg.seed}:{base_name}").shuffle(inst)
    keep = set(inst[: cfg.acc_instances])
    items = [it for it in items if it.instance in keep]
    rendered = name != base_name
    recs = [answered(it.record) if rendered else it.record for it in items]
    checks = run_checks(checker, recs, cfg.batch, name)
    return [Item(c, -1, float("nan") if rendered else 5.0 * it.acceptable, -1, it.instance, name,
                 {"acceptable": it.acceptable, "neg_nll": -it.nll if it.nll is not None else float("nan")})
            for it, c in zip(items, checks)]


FINE_GRAINED = {"fg_cose": "commonsenseqa_cose", "fg_ecqa": "commonsenseqa_ecqa", "fg_esnli": "snli_esnli"}
# Majority judgement -> the dimension a critic should give (README of the data: factuality ->
# incorrect_information, supports_label / new_info -> lack_justification, amount_info -> missing_information).
FG_ATTRIBUTES = ("factual", "supports", "new_info", "enough_info", "acceptable")


@dataclass(frozen=True)
class FineGrained:
    """One human-written explanation with its annotators' per-attribute judgements (shares in 0..1,
    nan where no annotator answered)."""

    record: ModelOutput
    instance: str
    attrs: dict[str, float]

    def dimension(self) -> int:
        """A dimension from the majority judgements, -1 when they are mixed (a prior, not a gold label)."""
        a = self.attrs
        if a["factual"] < 0.34:
            return LABEL_INDEX["incorrect_information"]
        if a["supports"] < 0.34 or a["new_info"] < 0.34:
            return LABEL_INDEX["lack_justification"]
        if a["enough_info"] < 0.34:
            return LABEL_INDEX["missing_information"]
        if min(a["factual"], a["supports"], a["new_info"]) > 0.66 and not a["enough_info"] < 0.66:
            return LABEL_INDEX[NONE]
        return -1

    def score(self) -> float:
        """0-5 target: 5 x the accepting share where asked, else the mean of the other judgements."""
        a = self.attrs
        if not np.isnan(a["acceptable"]):
            return 5.0 * a["acceptable"]
        parts = [a[k] for k in ("factual", "supports", "new_info", "enough_info") if not np.isnan(a[k])]
        return 5.0 * float(np.mean(parts)) if parts else float("nan")


def _share(vals: Sequence[str], good: Any, skip: Sequence[str] = ("", "-9")) -> float:
    v = [x.strip() for x in vals if x.strip() not in skip]
    return float(np.mean([good(x) for x in v])) if v else float("nan")


def _fg_attributes(ann: Sequence[dict[str, str]]) -> dict[str, float]:
    def col(c: str) -> list[str]:
        return [a.get(c) or "" for a in ann]

    return {"factual": _share(col("Answer.generality_factuality"), lambda x: float(x) > 0),
            "supports": _share(col("Answer.supports_label"), lambda x: float(x) > 0),
            "new_info": _share(col("Answer.new_info"), lambda x: float(x) > 0),
            "enough_info": _share(col("Answer.amount_info"), lambda x: float(x) >= 0),
            "acceptable": _share(col("Answer.acceptable"), lambda x: float(x) > 0)}


def read_fine_grained(path: str | Path) -> list[FineGrained]:
    """The fine-grained judgement CSV (3 annotator rows per explanation) as one item per explanation."""
    import csv
    from collections import defaultdict

    from core.errors import InputError
    from critique.evaluate import LETTERS, SNLI_GOLD, SNLI_OPTIONS, split_choices

    p = Path(path)
    if not p.is_file():
        raise InputError("fine-grained judgement CSV not found", str(p))
    with p.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "Answer.generality_factuality" not in rows[0]:
        raise InputError("not a fine-grained judgement file (no 'Answer.generality_factuality' column)", str(p))
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[(r["Input.id"], r["Input.explanation"])].append(r)
    out: list[FineGrained] = []
    for n, ((iid, expl), ann) in enumerate(groups.items()):
        first = ann[0]
        if "Input.premise" in first:
            question = (f'Premise: "{first["Input.premise"].strip()}" Hypothesis: "{first["Input.hypothesis"].strip()}" '
                        f"What is the relation of the hypothesis to the premise?")
            options, key = dict(SNLI_OPTIONS), SNLI_GOLD.get(first["Input.gold_label"].strip().lower())
        else:
            question = first["Input.question"].strip()
            choices = split_choices(first["Input.answer_choices"])
            options = {LETTERS[i]: c for i, c in enumerate(choices[:len(LETTERS)])}
            key = next((k for k, v in options.items() if v.strip().lower() == first["Input.gold_label"].strip().lower()),
                       None)
        if key is None or len(options) < 2 or not expl.strip():
            continue
        attrs = _fg_attributes(ann)
        rec = ModelOutput(id=f"{iid}#fg{n}", question=question, options=options, answer_key=key,
                          explanation=expl.strip(), predicted_answer=key)
        out.append(FineGrained(rec, iid, attrs))
    return out


def _fine_grained(name: str, cfg: DataConfig, checker: Checker) -> list[Item]:
    from microtheory.datasets import default_data_dir

    base = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    fg = read_fine_grained(base / "explanation_acceptability" / "fine_grained" / f"{FINE_GRAINED[name]}.csv")
    checks = run_checks(checker, [f.record for f in fg], cfg.batch, name)
    return [Item(c, f.dimension(), f.score(), -1, f.instance, name, {**f.attrs, "record": f.record})
            for f, c in zip(fg, checks)]


def _t5(cfg: DataConfig, checker: Checker) -> list[Item]:
    from critique.evaluate import t5_items

    out: list[Item] = []
    for task, model in cfg.t5_runs:
        items = t5_items(task, model, cfg.data_dir)
        checks = run_checks(checker, [it.record for it in items], cfg.batch, f"t5 task{task} {model}")
        out += [Item(c, LABEL_INDEX[NONE] if not it.flawed else -1, 1.0 if it.flawed else 5.0, -1, it.item_id,
                     "t5_dev", {"flawed": it.flawed, "run": f"task{task}/{model}"}) for it, c in zip(items, checks)]
    return out


RECIPE_NAMES = ("eb_v1", "eb_alt", "eb_prose", "eb_merged")
SETS = ("acc_cqa", "acc_snli", "syn_eb_alt_train", "syn_eb_v1_train", "t5_dev", "syn_eb_v1_dev", "syn_eb_alt_dev",
        "robust_dev", "fg_cose", "fg_ecqa", "fg_esnli", "syn_eb_prose_train", "syn_eb_prose_dev",
        "syn_eb_merged_train", "syn_eb_merged_dev", "accans_cqa", "accans_snli",
        *(f"short_{r}_{split}" for r in RECIPE_NAMES for split in ("train", "dev")),
        # measured, not trained on: training on nofacts_<recipe>_train too lowered LORO (full trees 0.536 ->
        # 0.527, short 0.649 -> 0.619) for +0.012 on these rows (session 11, docs/critique_data.md)
        *(f"nofacts_{r}_dev" for r in RECIPE_NAMES))


def attach_records(sets: dict[str, list[Any]], data_dir: str | None = None, cfg: DataConfig | None = None) -> None:
    """Put each item's ModelOutput in item.extra['record'] (rebuilt the same way the sets were: pass the
    DataConfig they were built with when it is not the default one)."""
    from critique import flaws
    from critique.evaluate import read_acceptability, t5_items
    from microtheory.datasets import default_data_dir

    cfg = cfg or DataConfig(data_dir=data_dir)
    data_dir = cfg.data_dir
    for name, items in sets.items():
        if items and "record" in items[0].extra:
            continue
        if name.startswith(RECIPE_PREFIXES):
            recipe, split, trees, qs = recipe_trees(name, cfg)
            by_id = {e.id: e for e in flaws.build_recipe(recipe, trees, qs, seed=cfg.seed, split=split)}
            for it in items:
                it.extra["record"] = by_id[it.extra["id"]].model_output()
        elif name == "robust_dev":
            trees, qs = _trees("dev", cfg.robust_trees, cfg.seed + 1, cfg)
            ex = [e for g in flaws.robustness_set(trees, qs, seed=cfg.seed) for e in g]
            for it, e in zip(items, ex):
                it.extra["record"] = e.model_output()
        elif name == "t5_dev":
            recs = {}
            for task, model in cfg.t5_runs:
                for t in t5_items(task, model, data_dir):
                    recs[(f"task{task}/{model}", t.item_id)] = t.record
            for it in items:
                it.extra["record"] = recs[(it.extra["run"], it.group)]
        elif name.startswith(("acc_", "accans_")):
            base = Path(data_dir) if data_dir else default_data_dir()
            from critique.acceptability import FILES

            file = FILES[acc_base(name)]
            got = {(h.instance, h.record.id): h.record for h in
                   read_acceptability(base / "explanation_acceptability" / f"{file}_train.csv")[0]}
            by_inst: dict[str, list[Any]] = {}
            for (inst, _), r in got.items():
                by_inst.setdefault(inst, []).append(r)
            seen: dict[str, int] = {}
            for it in items:
                k = seen.get(it.group, 0)
                rec = by_inst[it.group][k]
                it.extra["record"] = answered(rec) if name.startswith("accans_") else rec
                seen[it.group] = k + 1


def lexical_sets(sets: dict[str, list[Item]], data_dir: str | None = None, cfg: DataConfig | None = None
                 ) -> dict[str, list[Item]]:
    """The same items with fast mode's checks (lexical, no models, no knowledge): what the head's
    `fast` part trains and is measured on. Cheap (hundreds of records a second), so not cached."""
    from dataclasses import replace as _replace

    attach_records(sets, data_dir, cfg)
    checker = Checker(config=ChecksConfig(fast=True))
    out: dict[str, list[Item]] = {}
    for name, items in sets.items():
        if name.startswith("nofacts_"):   # fast mode has no fact checks: these would repeat the syn_ rows
            continue
        checks = checker.run([it.extra["record"] for it in items])
        out[name] = [_replace(it, checks=c) for it, c in zip(items, checks)]
    return out


# The likelihood signal (critique.likelihood, SmolLM2-135M): the answer pass only (half the cost of
# the answer-gain pass, which was the weaker signal on acceptability dev, bench/results/likelihood_signals.md).
LM_FEATURES = ("lm_nll_sum", "lm_nll_mean", "lm_tokens")


def lm_scorer(cache_path: str | None = "runs/likelihood_cache.jsonl") -> Any:
    from critique.likelihood import LikelihoodConfig, LikelihoodScorer

    return LikelihoodScorer(LikelihoodConfig(answer_gain=False, cache_path=cache_path))


def attach_lm(sets: dict[str, list[Item]], scorer: Any, prefixes: Sequence[str] = ("acc_", "t5_"),
              compute: bool = False) -> dict[str, int]:
    """Put the likelihood features in item.extra['lm'] for the named kinds of sets. compute=False uses
    only what the scorer's cache holds (an LM pass is ~1 explanation/s on the busy machine); returns
    how many items of each set got them."""
    from critique.likelihood import _cache_key, prompts

    got: dict[str, int] = {}
    for name, items in sets.items():
        if not name.startswith(tuple(prefixes)):
            continue
        recs = [it.extra["record"] for it in items]
        if not compute:
            keep = [i for i, r in enumerate(recs)
                    if scorer.cache.get(_cache_key(scorer.model_id, prompts(r)["answer"], r.explanation)) is not None]
        else:
            keep = list(range(len(recs)))
        x = scorer.score([recs[i] for i in keep]) if keep else np.zeros((0, len(LM_FEATURES)))
        for i, row in zip(keep, x):
            items[i].extra["lm"] = row[: len(LM_FEATURES)].astype(np.float64)
        got[name] = len(keep)
    return got


def load_sets(names: Sequence[str] = SETS, cfg: DataConfig | None = None, checker: Checker | None = None
              ) -> dict[str, list[Item]]:
    """Each named set from the cache (`DataConfig.cache_file`), computing the missing ones."""
    cfg = cfg or DataConfig()
    out: dict[str, list[Item]] = {}
    for name in names:
        path = cfg.cache_file(name)
        if path.is_file():
            out[name] = pickle.loads(path.read_bytes())
            continue
        if checker is None:
            checker = Checker(config=ChecksConfig())
        knows = not name.startswith(("acc_", "accans_", "fg_"))
        if knows and checker._knowledge is None:
            checker._knowledge = _corpus_table(cfg, checker)
            checker._facts = None
        # Human-judged rows are checked as `critique run` without --microtheory checks them: full checks,
        # no knowledge. (The models come from the properties, so they load here: a Checker given no
        # scorer in fast mode would fall back to the lexical one and cache 512-d lexical vectors.)
        ck = checker if knows else Checker(checker.scorer, checker.encoder, None, ChecksConfig())
        ck._vec_cache = checker._vec_cache
        t0 = time.perf_counter()
        out[name] = build_set(name, cfg, ck)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(out[name]))
        tmp.replace(path)
        print(f"{name}: {len(out[name])} items, {time.perf_counter() - t0:.0f} s", flush=True)
    attach_evidence(out, cfg.data_dir, cfg)
    return out


def attach_evidence(sets: dict[str, list[Item]], data_dir: str | None = None, cfg: DataConfig | None = None) -> None:
    """Give items cached before the text evidence features existed (`critique.checks.evidence`) those
    features, in place, from their records' texts and stored nearest facts (no model; a few seconds)."""
    from critique.checks import GLOBAL_FEATURES, with_evidence

    old = {k: v for k, v in sets.items() if any(it.checks.g.shape[-1] != len(GLOBAL_FEATURES) for it in v)}
    if not old:
        return
    attach_records(old, data_dir, cfg)
    for items in old.values():
        for it in items:
            it.checks = with_evidence(it.checks, it.extra["record"])


def attach_acceptability(sets: dict[str, list[Item]], scorer: Any = None, cache: str | Path | None = "runs/checks_feats",
                         data_dir: str | None = None, cfg: DataConfig | None = None) -> dict[str, int]:
    """Set `item.checks.acceptability` (critique.checks.ACC_FEATURE: the acceptability regressor's
    output) for every item, in place. The cached feature vectors predate it, so it is computed apart
    and cached beside them: <cache>/acceptability_<adapter digest>/<set>.json, keyed by record id and
    explanation. Returns how many items of each set were computed now (not read from the cache)."""
    import hashlib
    import json

    from core.jsonl import atomic_write_json, path_digest
    from critique.acceptability import load_acceptability

    scorer = scorer or load_acceptability()
    attach_records(sets, data_dir, cfg)
    folder = Path(cache) / f"acceptability_{path_digest(scorer.path)}" if cache else None
    computed: dict[str, int] = {}
    for name, items in sets.items():
        keys = [f"{it.extra['record'].id}\t{hashlib.sha1(it.extra['record'].explanation.encode()).hexdigest()[:16]}"
                for it in items]
        # nofacts_ sets hold the syn_ sets' records (checked against other knowledge): same values
        path = folder / f"{name.replace('nofacts_', 'syn_', 1)}.json" if folder else None
        known: dict[str, float] = json.loads(path.read_text()) if path and path.is_file() else {}
        todo = [i for i, k in enumerate(keys) if k not in known]
        if todo:
            vals = scorer.score([items[i].extra["record"] for i in todo])
            known.update({keys[i]: float(v) for i, v in zip(todo, vals)})
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(path, known)
        for it, k in zip(items, keys):
            it.checks.acceptability = known[k]
        computed[name] = len(todo)
    return computed
