from __future__ import annotations

import json
from pathlib import Path

import pytest

from critique.flaws import build_examples, write_examples
from critique.format import Critique, parse_ds
from critique.inputs import ModelOutput
from critique.model import (DEFAULT_WEIGHTS, Critic, CriticConfig, Featurizer, _build_net, load_critic, load_net,
                            resolve_base, save_critic)
from critique.taxonomy import LABELS
from tests.test_critique_flaws import _toy

RECORDS = [
    ModelOutput("r1", "Which object is attracted to a magnet?", {"A": "a wooden block", "B": "an iron nail"}, "B",
                "Iron is a kind of metal. Metals are attracted to magnets. So the answer is (B) an iron nail.", "B"),
    ModelOutput("r2", "Which season has the most sunlight?", {"A": "winter", "B": "summer"}, "B",
                "Winter is cold. The answer is A.", "A"),
]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer random BERT with the packaged MiniLM's tokenizer, saved like a hub model (no download)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(resolve_base(None))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("tiny_bert")
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_featurizer_marks_sentences_and_truncates(tiny_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    f = Featurizer(tok, CriticConfig(base=str(tiny_base), max_length=40, max_context=20))(RECORDS)
    a = f[0]
    assert len(a.input_ids) <= 40 and a.input_ids[0] == tok.cls_token_id and a.input_ids[-1] == tok.sep_token_id
    assert a.sentences[0] == "Iron is a kind of metal." and len(a.sentences) == 3
    ids = [i for i in a.sent_ids if i >= 0]
    assert ids == sorted(ids) and ids[0] == 0 and a.n_sent == max(ids) + 1
    assert len(a.input_ids) == len(a.token_type_ids) == len(a.sent_ids)
    full = Featurizer(tok, CriticConfig(base=str(tiny_base), max_length=256))(RECORDS)[0]
    assert full.n_sent == 3 and tok.decode([t for t, s in zip(full.input_ids, full.sent_ids) if s == 1]) == \
        "metals are attracted to magnets."


def test_predict_gives_valid_critiques(tiny_base):
    from transformers import AutoModel, AutoTokenizer

    config = CriticConfig(base=str(tiny_base))
    net = _build_net(AutoModel.from_pretrained(tiny_base), len(LABELS))
    critic = Critic(net, AutoTokenizer.from_pretrained(tiny_base), config, device="cpu")
    out = critic.predict(RECORDS * 3, batch_size=4)
    assert len(out) == 6 and all(isinstance(c, Critique) for c in out)
    for c in out:
        assert parse_ds(c.to_ds()).dimension == c.dimension
        if c.dimension == "none":
            assert c.score >= 4 and c.flaw_sentence_index is None
        else:
            assert c.score <= 4 and c.flaw_sentence_index is not None and c.main_flaw != "None"
    # Same input, same output, whatever the batch composition (sorting by length, padding).
    again = critic.predict(RECORDS, batch_size=1)
    for a, b in zip(out[:2], again):
        assert (a.dimension, a.score, a.flaw_sentence_index) == (b.dimension, b.score, b.flaw_sentence_index)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)


def test_tiny_training_run_saves_loads_and_logs(tiny_base, tmp_path):
    from critique.train import TrainConfig, train

    trees, qs = _toy()
    ex = build_examples(trees, qs, seed=0)
    write_examples(tmp_path / "train.jsonl", ex)
    res = train(TrainConfig(tmp_path / "critic", base=str(tiny_base), seed=0, epochs=2, batch_size=8, train_layers=1,
                            train_file=tmp_path / "train.jsonl", dev_file=tmp_path / "train.jsonl", checkpoint_every=2,
                            progress=False, lr=1e-3))
    assert res.steps == 2 * ((len(ex) + 7) // 8)
    log = [json.loads(x) for x in (tmp_path / "critic" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and any(r["event"] == "checkpoint" for r in log) and log[-1]["event"] == "dev"
    assert res.dev and res.dev["n"] == len(ex) and 0 <= res.dev["dimension_macro_f1"] <= 1
    manifest = json.loads((tmp_path / "critic" / "manifest.json").read_text())
    assert manifest["training"]["steps"] == res.steps and manifest["config"]["train_layers"] == 1
    # Only the top layer and the heads are stored; the bottom layer comes from the base.
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "critic" / "weights.safetensors")).keys()
    assert any(k.startswith("encoder.encoder.layer.1.") for k in keys)
    assert not any(k.startswith("encoder.encoder.layer.0.") or "embeddings" in k for k in keys)
    net, tok, config, _ = load_net(tmp_path / "critic")
    c1 = Critic(net, tok, config, device="cpu").predict(RECORDS)
    assert load_critic(tmp_path / "critic") is load_critic(tmp_path / "critic")  # cached per process
    c2 = load_critic(tmp_path / "critic").predict(RECORDS)
    assert [c.dimension for c in c1] == [c.dimension for c in c2]


def test_missing_critic_is_a_model_error(tmp_path):
    from core.errors import ModelError

    with pytest.raises(ModelError, match="no critic at"):
        load_critic(tmp_path / "nothing")


def test_save_rejects_nothing_and_roundtrips_fp16(tiny_base, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    config = CriticConfig(base=str(tiny_base), train_layers=1)
    net = _build_net(AutoModel.from_pretrained(tiny_base), len(LABELS))
    save_critic(net, AutoTokenizer.from_pretrained(tiny_base), config, tmp_path / "c")
    net2, _, config2, manifest = load_net(tmp_path / "c")
    assert config2 == config and manifest["dtype"] == "float16"
    w1 = net.dim_head.weight.detach()
    assert (net2.dim_head.weight.detach() - w1).abs().max() < 1e-2


@pytest.mark.slow
def test_shipped_weights_load_and_predict_offline():
    if not (DEFAULT_WEIGHTS / "manifest.json").exists():
        pytest.fail(f"no shipped critic at {DEFAULT_WEIGHTS}")
    size = sum(p.stat().st_size for p in DEFAULT_WEIGHTS.iterdir())
    assert size <= 20 * 1024 * 1024
    critic = load_critic()
    out = critic.predict(RECORDS)
    assert len(out) == 2 and all(0 <= c.score <= 5 and c.dimension in LABELS for c in out)


def test_cli_train_and_eval(tiny_base, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    trees, qs = _toy()
    write_examples(tmp_path / "ex.jsonl", build_examples(trees, qs, seed=0))
    runner = CliRunner()
    r = runner.invoke(app, ["critique", "train", "--out", str(tmp_path / "c"), "--base", str(tiny_base),
                            "--train-file", str(tmp_path / "ex.jsonl"), "--dev-limit", "0", "--train-layers", "1",
                            "--batch-size", "8", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"] > 0
    r = runner.invoke(app, ["critique", "eval", "--model", str(tmp_path / "c"), "--dev-file", str(tmp_path / "ex.jsonl"),
                            "--out", str(tmp_path / "eval.json")])
    assert r.exit_code == 0, r.output
    assert "macro-F1" in r.stdout and "flaw-sentence accuracy" in r.stdout
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["n"] == len(read_examples_count(tmp_path / "ex.jsonl")) and "confusion" in res
    r = runner.invoke(app, ["critique", "eval", "--model", str(tmp_path / "missing")])
    assert r.exit_code != 0 and "no critic at" in r.output  # 4 (ModelError) once cli.common raises typer.Exit


def read_examples_count(path: Path) -> list[str]:
    return [x for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.data
def test_cli_data_command(data_dir, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    r = CliRunner().invoke(app, ["critique", "data", "--split", "dev", "--out", str(tmp_path / "dev.jsonl"),
                                 "--data-dir", str(data_dir), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["n"] > 1400 and len(summary["per_dimension"]) == 9


def test_aux_features_reflect_the_record():
    from critique.model import N_GLOBAL, N_SENT, aux_features

    r = RECORDS[0]
    g, per = aux_features(r, ["Iron is a kind of metal.", "Metals are attracted to magnets.",
                              "So the answer is (B) an iron nail."])
    assert len(g) == N_GLOBAL and len(per) == 3 and all(len(p) == N_SENT for p in per)
    assert g[0] == 1.0 and g[6] == 1.0  # predicted = key; the key option's words all appear
    assert per[2][0] == 1.0 and per[2][4] == 1.0 and per[0][0] == 0.0  # last sentence names an option
    g2, _ = aux_features(RECORDS[1], ["Winter is cold.", "The answer is A."])
    assert g2[0] == 0.0 and g2[7] == 1.0  # a wrong option predicted, and talked about
