"""Selection and measurement of the checks head (critique.checks_eval) on toy items: the splits never
cut a group, LORO tests on the left-out recipe only, and the shipped head gets a fast part."""
from __future__ import annotations

import numpy as np
import pytest

from critique.checks import Checker, ChecksConfig
from critique.checks_data import Item
from critique.checks_eval import GRID, macro_f1, make_splits, measure, train_shipped
from critique.inputs import ModelOutput
from critique.taxonomy import LABEL_INDEX

OPTS = {"A": "fall", "B": "summer", "C": "winter"}
Q = "In which season do garden plants get the most sunlight?"


def _items(source: str, n: int, start: int = 0) -> list[Item]:
    """none: a 3-sentence chain; lack_justification: a bare answer; t5 / acc rows get score labels."""
    ck = Checker(config=ChecksConfig(fast=True))
    out = []
    for i in range(start, start + n):
        flawed = i % 2 == 1
        expl = "The answer is (B)." if flawed else ("Plants need sunlight to grow. Summer has the most sunlight. "
                                                    "So garden plants get the most sunlight in summer. The answer is (B).")
        rec = ModelOutput(f"{source}{i}", Q, OPTS, "B", expl, "B")
        c = ck.run([rec])[0]
        dim = LABEL_INDEX["lack_justification" if flawed else "none"]
        extra = {"record": rec}
        if source.startswith("t5"):
            extra.update(flawed=flawed, run="task1/x")
            dim = -1 if flawed else dim
        if source.startswith("acc"):
            extra.update(acceptable=0.2 if flawed else 0.9, neg_nll=float("nan"))
            dim = -1
        out.append(Item(c, dim, 1.0 if flawed else 5.0, -1, f"g{i // 2}", source, extra))
    return out


def _sets() -> dict[str, list[Item]]:
    return {"syn_r1_train": _items("syn_r1_train", 12), "syn_r1_dev": _items("syn_r1_dev", 8, 100),
            "syn_r2_train": _items("syn_r2_train", 12, 200), "syn_r2_dev": _items("syn_r2_dev", 8, 300),
            "t5_dev": _items("t5_dev", 12, 400), "acc_cqa": _items("acc_cqa", 16, 500)}


def test_macro_f1_counts_present_classes_only():
    assert macro_f1([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    assert macro_f1([0, 0, 1, 1], [0, 0, 0, 0]) == np.mean([2 * 0.5 * 1 / 1.5, 0.0])


def test_splits_keep_groups_together_and_loro_leaves_the_recipe_out():
    sp = make_splits(_sets(), folds=3)
    assert set(sp.syn_train) == {"r1", "r2"} and set(sp.syn_dev) == {"r1", "r2"}
    dev_groups = {it.group for it in sp.acc_dev}
    assert dev_groups and not dev_groups & {it.group for it in sp.acc_train}
    assert {sp.t5_folds[it.group] for it in sp.t5} == {0, 1, 2}
    m = measure(sp, GRID[0])
    assert set(m["loro"]) == {"r1", "r2", "mean_macro_f1", "mean_macro_f1_without_knowledge"}
    assert m["loro"]["r1"]["train_recipes"] == ["r2"] and m["loro"]["r1"]["n"] == 8
    assert m["loro"]["mean_macro_f1"] > 0.9          # the toy classes are separable by any recipe
    assert m["t5_cv"]["n"] == 12 and m["t5_cv"]["auroc_5_minus_score"] > 0.9
    assert m["acceptability"]["acc_cqa"]["spearman_checks_score"] > 0.5


def test_train_shipped_selects_per_mode_and_adds_the_fast_part():
    sets = _sets()
    head, rep = train_shipped(sets, sets, folds=3, do_select=False)
    assert head.fast is not None and set(rep) == {"full", "fast"}
    assert rep["full"]["chosen"]["config"]["hidden"] == GRID[0].hidden
    assert head.meta["chosen_fast"] == rep["fast"]["chosen"]["config"]


@pytest.mark.slow
def test_train_checks_writes_a_loadable_head_with_a_fast_part(tmp_path):
    """`critique train --backend checks` end to end on toy cached sets (no models, no data files)."""
    import json
    import pickle

    from critique.checks_data import SETS, DataConfig
    from critique.head import CheckHead
    from critique.train import ChecksTrainConfig, train_checks

    cache = tmp_path / "feats"
    cache.mkdir()
    toy = _sets()
    for i, name in enumerate(SETS):
        kind = "acc_cqa" if name.startswith(("acc", "fg")) else "t5_dev" if name.startswith("t5") else name
        items = toy.get(name) or _items(kind, 8, 1000 + 100 * i)
        for it in items:
            it.source = name
            it.extra.setdefault("robust_group", 0)
            if name.startswith("fg"):
                it.extra.update(factual=1.0, supports=it.extra["acceptable"])
        DataConfig(cache=str(cache)).cache_file(name).write_bytes(pickle.dumps(items))
    out = tmp_path / "head"
    summary = train_checks(ChecksTrainConfig(out=str(out), cache=str(cache)))
    head = CheckHead.load(out / "head.json")
    assert head.fast is not None and head.lm is None
    from critique.checks import EXTRA_FEATURES
    # as shipped: the regressor feeds the score, with the explanation's kind (head v5)
    assert tuple(head.meta["config"].get("extra_features", ())) == EXTRA_FEATURES == head.extra_features
    sel = json.loads((out / "selection.json").read_text())
    assert len(sel["report"]["full"]["grid"]) == len(GRID) and summary["out"].endswith("head.json")


def test_load_sets_checks_human_rows_with_the_full_models_not_the_lexical_ones(tmp_path, monkeypatch):
    """Regression: building the cache from scratch, the acceptability rows (no knowledge) were checked
    by a fast-mode Checker given no models, i.e. lexical ones, whose 512-d vectors then crashed the
    next set's full checks through the shared text cache."""
    from critique import checks_data
    from retrieval.encoder import HashingEncoder
    from retrieval.entail import OverlapScorer

    seen = {}

    def fake_build(name, cfg, ck):
        seen[name] = (ck.scorer, ck.encoder, ck.config.fast, ck._knowledge is not None)
        return []

    monkeypatch.setattr(checks_data, "build_set", fake_build)
    monkeypatch.setattr(checks_data, "_corpus_table", lambda cfg, checker: object())
    scorer, encoder = OverlapScorer(), HashingEncoder(64)
    full = Checker(config=ChecksConfig())
    full._scorer, full._encoder = scorer, encoder        # what the properties load on first use
    checks_data.load_sets(("acc_cqa", "t5_dev"), checks_data.DataConfig(cache=str(tmp_path)), full)
    assert seen["acc_cqa"] == (scorer, encoder, False, False)    # full checks, no knowledge
    assert seen["t5_dev"][:3] == (scorer, encoder, False) and seen["t5_dev"][3]


def test_recipe_sets_are_cached_per_tree_count():
    """A set built from 40 trees must never be read back as the 480-tree one (or the other way round)."""
    from critique.checks_data import DataConfig

    a, b = DataConfig(cache="c", train_trees=40), DataConfig(cache="c", train_trees=480)
    assert a.cache_file("syn_eb_v1_train") != b.cache_file("syn_eb_v1_train")
    assert a.cache_file("syn_eb_v1_dev") == b.cache_file("syn_eb_v1_dev")     # same dev trees
    assert a.cache_file("t5_dev").name == "t5_dev.pkl"


def test_acceptability_rows_teach_the_dimension_net_none_only_when_asked():
    """Head v8: with no `none` among the recipe labels, only the accepted acceptability rows can teach
    the dimension net to say `none` for a sound free-text explanation."""
    from dataclasses import replace

    from critique.checks_eval import predict
    from critique.head import HeadConfig, acceptability_none_labels, fit_head, rows_from_items

    syn = _items("syn_r1_train", 16)
    for it in syn:      # recipe rows: two flaw classes, never `none`
        it.dim = LABEL_INDEX["lack_justification" if it.dim != LABEL_INDEX["none"] else "incomplete_reasoning"]
    acc = _items("acc_cqa", 16, 500)      # shares 0.9 (the chain) / 0.2 (the bare answer), no dimension
    cfg = HeadConfig(dim_sources=("syn",), epochs=150)
    yes, no = acceptability_none_labels(rows_from_items(syn + acc, replace(cfg, none_from_acceptability=1.0)))
    assert yes.sum() == 8 and no.sum() == 8
    none = LABEL_INDEX["none"]
    good = [it for it in acc if it.extra["acceptable"] > 0.5]
    off = predict(fit_head(syn + acc, cfg), good)[0][:, none]
    on_head = fit_head(syn + acc, replace(cfg, none_from_acceptability=1.0))
    on = predict(on_head, good)[0][:, none]
    bad = predict(on_head, [it for it in acc if it.extra["acceptable"] < 0.5])[0][:, none]
    assert off.max() < 0.2 < on.mean() and on.mean() > bad.mean() + 0.3


def test_answered_rendering_of_human_rows_labels_none_but_trains_no_score_and_splits_with_its_row():
    from critique.checks_data import answered
    from critique.head import HeadConfig, acceptability_none_labels, rows_from_items

    acc = _items("acc_cqa", 8, 500)
    ans = _items("accans_cqa", 8, 500)
    for it in ans:
        it.score = float("nan")
        it.extra["record"] = answered(it.extra["record"])
    rec = ans[0].extra["record"]
    assert rec.explanation.endswith("The answer is (B) summer.") and rec.id.endswith("#answered")
    r = rows_from_items(acc + ans, HeadConfig(dim_sources=("syn",)))
    yes, no = acceptability_none_labels(r)
    assert yes.sum() == 8 and no.sum() == 8          # both renderings carry the partial labels
    assert np.isnan(r.score[list(r.kind).index("accans")])   # ... and only the plain one a score target
    sp = make_splits({"acc_cqa": acc, "accans_cqa": ans, **{k: v for k, v in _sets().items() if k != "acc_cqa"}})
    dev = {it.group for it in sp.acc_dev if it.source == "acc_cqa"}
    assert dev == {it.group for it in sp.acc_dev if it.source == "accans_cqa"}


def test_variant_recipe_sets_train_with_their_recipe_and_are_measured_apart():
    """`short_`/`nofacts_<recipe>_train` rows join their recipe's training rows (so LORO leaves them out
    with it); their dev rows are measured apart (macro_f1_<variant>), the full-tree LORO unchanged."""
    sets = _sets()
    sets["short_r1_train"] = _items("short_r1_train", 6, 600)
    sets["short_r1_dev"] = _items("short_r1_dev", 4, 700)
    sets["nofacts_r2_train"] = _items("nofacts_r2_train", 4, 800)
    sets["nofacts_r2_dev"] = _items("nofacts_r2_dev", 6, 900)
    sp = make_splits(sets, folds=3)
    assert len(sp.syn_train["r1"]) == 18 and len(sp.syn_dev["r1"]) == 8 and len(sp.syn_train["r2"]) == 16
    assert set(sp.variant_dev) == {"short", "nofacts"} and len(sp.variant_dev["short"]["r1"]) == 4
    assert set(sp.variant_dev["nofacts"]) == {"r2"}
    m = measure(sp, GRID[0])
    assert m["loro"]["r1"]["n_short"] == 4 and "macro_f1_short" not in m["loro"]["r2"]
    assert m["loro"]["mean_macro_f1_short"] == m["loro"]["r1"]["macro_f1_short"]
    assert m["loro"]["r2"]["n_nofacts"] == 6 and "macro_f1_nofacts" not in m["loro"]["r1"]
    # the r2 fold trains on r1's rows, short ones included; r1's fold on r2's only
    assert m["loro"]["r2"]["train_recipes"] == ["r1"]


def test_short_sets_use_other_trees_than_the_full_ones(monkeypatch):
    """A short set's trees follow the full set's in the same seeded order (never the same trees) and
    are cut to their final step; its cache file names its own tree count."""
    from microtheory.trees import EntailmentTree, Step
    from critique import checks_data
    from critique.checks_data import DataConfig, recipe_trees

    def tree(i: int) -> EntailmentTree:
        return EntailmentTree(f"t{i}", f"q{i}", "h", {"sent1": "a", "sent2": "b", "sent3": "c", "int1": "ab"},
                              (Step(("sent1", "sent2"), "int1"), Step(("int1", "sent3"), "hypothesis")))

    monkeypatch.setattr(checks_data, "_trees", lambda split, n, seed, cfg: ([tree(i) for i in range(n)],
                                                                             [f"q{i}" for i in range(n)]))
    cfg = DataConfig(cache="c", train_trees=3, short_train_trees=2)
    _, _, full, _ = recipe_trees("syn_eb_v1_train", cfg)
    recipe, split, short, qs = recipe_trees("short_eb_v1_train", cfg)
    assert (recipe, split) == ("eb_v1", "train") and qs == ["q3", "q4"]
    assert [t.id for t in full] == ["t0", "t1", "t2"] and [t.id for t in short] == ["t3", "t4"]
    assert [len(t.steps) for t in short] == [1, 1] and short[0].leaves == ("sent_int1", "sent3")
    assert short[0].sentences["sent_int1"] == "ab"
    assert cfg.cache_file("short_eb_v1_train").name == "short_eb_v1_train_2trees.pkl"


def test_nofacts_knowledge_leaves_the_trees_own_facts_out(monkeypatch, tmp_path):
    """The corpus a `nofacts_` set is checked against lacks exactly the given texts (case, spacing and a
    final period aside), with the other facts' vectors unchanged."""
    import json

    from critique import checks_data
    from critique.checks_data import DataConfig, _corpus_table
    from retrieval.encoder import HashingEncoder

    corpus = {"u1": "A dog is a mammal.", "u2": "mammals are warm-blooded", "u3": "the sun is a star"}
    (tmp_path / "wt.json").write_text(json.dumps(corpus))

    class Paths:
        worldtree_corpus = "x"

        def require(self, _):
            return tmp_path / "wt.json"

    monkeypatch.setattr("microtheory.datasets.DataPaths.default", staticmethod(lambda: Paths()))
    monkeypatch.setattr("microtheory.datasets.read_worldtree_corpus", lambda p: json.loads(p.read_text()))
    ck = Checker(config=ChecksConfig(fast=True))
    ck._encoder = HashingEncoder(32)
    cfg = DataConfig(cache=str(tmp_path / "cache"))
    full = _corpus_table(cfg, ck)
    part = _corpus_table(cfg, ck, exclude=["a  dog is a mammal", "The sun is a star."])
    assert full.ids == ["u1", "u2", "u3"] and part.ids == ["u2"] and part.texts == ["mammals are warm-blooded"]
    assert np.allclose(part.vectors[0], full.vectors[1])
    assert checks_data.DataConfig().cache_file("nofacts_eb_v1_train").name == "nofacts_eb_v1_train_480trees.pkl"
