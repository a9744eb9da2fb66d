"""critique.likelihood: explanation NLL under a causal LM, batched and cached.

Fast tests use a tiny random Llama and a character tokenizer (a test double); the real SmolLM2 test
is slow-marked.
"""
from __future__ import annotations

import numpy as np
import pytest

from critique.inputs import ModelOutput
from critique.likelihood import FEATURES, LikelihoodConfig, LikelihoodScorer, answer_text, prompts
from tiny_lm import tiny_backend


@pytest.fixture(scope="module")
def backend():
    return tiny_backend()


def rec(expl: str, q: str = "Which gas do plants take in?", pred: str = "B") -> ModelOutput:
    return ModelOutput(id="x", question=q, options={"A": "oxygen", "B": "carbon dioxide"}, answer_key="B",
                       explanation=expl, predicted_answer=pred)


RECORDS = [rec("Plants take in carbon dioxide for photosynthesis."), rec("Because."),
           rec("Leaves absorb CO2 from the air and release oxygen, so the answer is carbon dioxide.", pred="A"),
           rec("x", q="Short?")]


def brute_nll(backend, prompt: str, expl: str) -> tuple[float, int]:
    """Unbatched reference: full logits of one sequence, summed over the explanation's tokens."""
    import torch

    tok, lm = backend
    p = tok.encode(prompt)
    e = tok.encode(" " + expl)
    ids = torch.tensor([p + e])
    with torch.inference_mode():
        lp = lm(ids).logits[0].log_softmax(-1)
    return float(-sum(lp[t - 1, ids[0, t]] for t in range(len(p), len(p) + len(e)))), len(e)


def test_batched_scores_match_an_unbatched_reference(backend):
    sc = LikelihoodScorer(backend=backend, batch_size=3, threads=None)
    x = sc.score(RECORDS)
    assert x.shape == (len(RECORDS), len(FEATURES)) and sc.features == FEATURES
    for i, r in enumerate(RECORDS):
        ref, n = brute_nll(backend, prompts(r)["answer"], r.explanation)
        assert x[i, 0] == pytest.approx(ref, rel=1e-4, abs=1e-3)
        assert x[i, 2] == n
        assert x[i, 1] == pytest.approx(ref / n, rel=1e-4)
        q_ref, qn = brute_nll(backend, prompts(r)["question"], r.explanation)
        assert x[i, 3] == pytest.approx(q_ref - ref, rel=1e-3, abs=1e-3)
        assert x[i, 4] == pytest.approx(q_ref / qn - ref / n, rel=1e-3, abs=1e-3)


def test_batch_size_does_not_change_scores(backend):
    a = LikelihoodScorer(backend=backend, batch_size=1, threads=None).score(RECORDS)
    b = LikelihoodScorer(backend=backend, batch_size=8, threads=None).score(RECORDS)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_packing_explanations_of_one_prompt_changes_cost_not_scores(backend):
    many = [rec(e) for e in ("Plants need CO2.", "Photosynthesis uses carbon dioxide and water.", "Leaves.",
                             "Carbon dioxide enters through stomata in the leaves.")] + RECORDS
    packed = LikelihoodScorer(backend=backend, threads=None, batch_size=2)
    alone = LikelihoodScorer(backend=backend, threads=None, batch_size=2, pack_tokens=1)  # one explanation a row
    np.testing.assert_allclose(packed.score(many), alone.score(many), rtol=1e-4, atol=1e-3)
    assert packed.tokens_run < 0.8 * alone.tokens_run


def test_cache_in_memory_and_on_disk(backend, tmp_path):
    path = tmp_path / "lm_cache.jsonl"
    sc = LikelihoodScorer(backend=backend, model_id="tiny", cache_path=str(path), threads=None)
    x = sc.score(RECORDS)
    assert sc.rows_run == 2 * len(RECORDS)
    sc.score(RECORDS[:2])
    assert sc.rows_run == 2 * len(RECORDS)          # nothing recomputed
    with path.open("a", encoding="utf-8") as f:
        f.write('{"k": "cut by a cra')             # a crash mid-line must not break the next reader
    again = LikelihoodScorer(backend=backend, model_id="tiny", cache_path=str(path), threads=None)
    np.testing.assert_allclose(again.score(RECORDS), x, rtol=1e-4, atol=1e-4)  # stored to 1e-5 nats
    assert again.rows_run == 0
    other = LikelihoodScorer(backend=backend, model_id="another-model", cache_path=str(path), threads=None)
    other.score(RECORDS[:1])
    assert other.rows_run == 2                      # keys include the model: no cross-model reuse


def test_options_change_the_columns_and_truncate(backend):
    only = LikelihoodScorer(backend=backend, answer_gain=False, threads=None, max_tokens=5)
    x = only.score(RECORDS)
    assert only.features == ("lm_nll_sum", "lm_nll_mean", "lm_tokens") and x.shape == (4, 3)
    assert x[:, 2].max() == 5 and x[3, 2] == 2     # " x" is two characters
    full = LikelihoodScorer(backend=backend, context_gain=True, threads=None)
    assert full.score(RECORDS).shape == (4, 7) and full.features[-1] == "lm_context_gain_mean"
    assert LikelihoodScorer(backend=backend, threads=None).score([]).shape == (0, len(FEATURES))


def test_answer_text_and_prompts():
    assert answer_text(rec("e", pred="A")) == "oxygen"
    assert answer_text(rec("e", pred="glucose")) == "glucose"
    assert answer_text(rec("e", pred="")) == "carbon dioxide"
    p = prompts(rec("e", q="Which  gas\n do plants take in?"))
    assert p["answer"] == "Question: Which gas do plants take in?\nAnswer: carbon dioxide\nExplanation:"
    assert "Answer" not in p["question"] and p["none"] == "Explanation:"


def test_config_defaults_are_frugal():
    cfg = LikelihoodConfig()
    assert cfg.threads == 1 and cfg.model == "smollm2" and cfg.answer_gain and not cfg.context_gain


@pytest.mark.slow
def test_real_smollm2_prefers_a_fitting_explanation():
    sc = LikelihoodScorer()
    good = rec("Plants take in carbon dioxide from the air and use it in photosynthesis.")
    scrambled = rec("photosynthesis it the in air and from use carbon Plants dioxide take.")
    x = sc.score([good, scrambled])
    assert x[0, 1] < x[1, 1] - 0.5                 # per-token NLL: fluent and on topic beats scrambled
    assert x[0, 3] > 0                              # naming the answer makes this explanation likelier


class _NoChecks:
    """Stands in for critique.checks.Checker: the split does not depend on the checks."""

    def run(self, records):
        return [None] * len(records)


@pytest.mark.data
def test_bench_split_is_the_critics_acceptability_dev_split(data_dir):
    """bench/likelihood_signals.py reports on the same rows the checks critic is measured on."""
    from bench.likelihood_signals import acceptability_split
    from critique.checks_data import DataConfig, _acceptability
    from critique.checks_eval import make_splits

    cfg = DataConfig(data_dir=str(data_dir))
    sets = {n: _acceptability(n, cfg, _NoChecks()) for n in ("acc_cqa", "acc_snli")}
    sp = make_splits(sets)
    for name, items in sets.items():
        mine = acceptability_split(name, data_dir, heldout=10)
        assert [it.instance for it in mine["dev"]] == [it.group for it in sp.acc_dev if it.source == name]
        assert [it.acceptable for it in mine["train"]] == [it.extra["acceptable"] for it in sp.acc_train
                                                            if it.source == name]
        assert not {it.instance for it in mine["heldout"]} & {it.group for it in items}
        assert len({it.instance for it in mine["heldout"]}) == 10
