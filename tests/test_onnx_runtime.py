"""The ONNX Runtime paths: cache, batching helpers, runtime names, and (slow) the real exports."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import EncoderMismatchError, ModelError
from retrieval import onnx_runtime as ox
from retrieval.encoder import DEFAULT_NAME, resolve_name, runtime_for, split_runtime, st_pooling_plan


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MICROTHEORY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models" / "onnx"


def test_length_batches_cover_every_index_once_grouped_by_length() -> None:
    lengths = [5, 1, 9, 1, 5, 3, 7]
    batches = list(ox.length_batches(lengths, 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(7))
    assert [lengths[i] for i in flat] == sorted(lengths)  # sorted by length
    assert batches[0].tolist() == [1, 3, 5]  # ties keep input order (stable)
    with pytest.raises(ValueError):
        list(ox.length_batches(lengths, 0))


def test_pad_batch_pads_to_the_longest_row() -> None:
    rows = [{"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0]},
            {"input_ids": [101, 102], "attention_mask": [1, 1], "token_type_ids": [0, 1]}]
    got = ox.pad_batch(rows, ["input_ids", "attention_mask", "token_type_ids"], pad_id=9)
    assert got["input_ids"].tolist() == [[101, 7, 102], [101, 102, 9]]
    assert got["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]  # missing mask: real tokens are 1
    assert got["token_type_ids"].tolist() == [[0, 0, 0], [0, 1, 0]]
    assert all(v.dtype == np.int64 for v in got.values())


def test_cached_model_builds_once_and_never_leaves_a_partial_entry(cache: Path) -> None:
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "model.onnx").write_bytes(b"fake")

    p1 = ox.cached_model("thing", "abc", build)
    p2 = ox.cached_model("thing", "abc", build)
    assert p1 == p2 and p1.read_bytes() == b"fake" and len(calls) == 1
    assert json.loads((p1.parent / "meta.json").read_text())["source_digest"] == "abc"
    assert ox.cached_model("thing", "other digest", build) != p1  # new sources: a new entry

    def broken(folder: Path) -> None:
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("crash mid-export")

    with pytest.raises(RuntimeError):
        ox.cached_model("thing", "xyz", broken)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []  # temp folder removed
    assert len(list(cache.iterdir())) == 2

    with pytest.raises(ModelError, match="no model.onnx"):
        ox.cached_model("thing", "empty", lambda folder: None)


def test_cached_model_concurrent_builders_end_with_one_good_copy(cache: Path) -> None:
    gate = threading.Barrier(3)
    results: list[Path] = []

    def build(folder: Path) -> None:
        gate.wait(timeout=10)  # all three build at once; two lose the rename race
        (folder / "model.onnx").write_bytes(b"same")

    threads = [threading.Thread(target=lambda: results.append(ox.cached_model("race", "d", build))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and results[0].read_bytes() == b"same"
    assert [p.name for p in cache.iterdir()] == [results[0].parent.name]


def test_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ox.THREADS_ENV, raising=False)
    assert ox.default_threads() == ox.DEFAULT_THREADS == 1
    assert ox.default_threads(3) == 3
    monkeypatch.setenv(ox.THREADS_ENV, "2")
    assert ox.default_threads() == 2
    monkeypatch.setenv(ox.THREADS_ENV, "two")
    with pytest.raises(ModelError, match=ox.THREADS_ENV):
        ox.default_threads()


def test_runtime_suffixes_and_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICROTHEORY_ENCODER", raising=False)
    monkeypatch.delenv("MICROTHEORY_ENCODER_RUNTIME", raising=False)
    assert split_runtime("minilm@INT8") == ("minilm", "int8")
    assert split_runtime("org/model@v2") == ("org/model@v2", None)  # not a runtime: part of the name
    # fp32 runtimes compute the same vectors: one identity; int8 is another encoder
    assert resolve_name("minilm@torch") == resolve_name("minilm@onnx") == resolve_name("minilm") == DEFAULT_NAME
    assert resolve_name("minilm@int8") == DEFAULT_NAME + "@int8"
    assert resolve_name(DEFAULT_NAME + "@int8") == DEFAULT_NAME + "@int8"  # a recorded name resolves to itself
    with pytest.raises(ModelError, match="int8"):
        resolve_name("hashing@int8")
    assert runtime_for(None) == "onnx" and runtime_for("minilm@torch") == "torch"
    assert runtime_for("mpnet") == "torch"  # ONNX by default only for the measured model
    monkeypatch.setenv("MICROTHEORY_ENCODER_RUNTIME", "torch")
    assert runtime_for(None) == "torch" and runtime_for("minilm@onnx") == "onnx"
    monkeypatch.setenv("MICROTHEORY_ENCODER_RUNTIME", "tpu")
    with pytest.raises(ModelError, match="MICROTHEORY_ENCODER_RUNTIME"):
        runtime_for(None)


def test_only_mean_pooled_models_are_exported(tmp_path: Path) -> None:
    from core.models import model_path

    assert st_pooling_plan(Path(model_path("minilm"))) == (256, 384)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    (tmp_path / "1_Pooling" / "config.json").write_text(
        '{"word_embedding_dimension": 8, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    with pytest.raises(ModelError, match="mean Pooling"):
        st_pooling_plan(tmp_path)
    with pytest.raises(ModelError, match="not a sentence-transformers folder"):
        st_pooling_plan(tmp_path / "1_Pooling")


def test_scorer_runtime_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.entail import DEFAULT_RUNTIME, RUNTIME_ENV, CrossEncoderScorer, scorer_runtime

    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert scorer_runtime() == DEFAULT_RUNTIME and scorer_runtime("torch") == "torch"
    monkeypatch.setenv(RUNTIME_ENV, "int8")
    assert scorer_runtime() == "int8" and CrossEncoderScorer().name.endswith("@int8")
    assert CrossEncoderScorer(untrained=True).runtime == "torch"  # a seeded random head: never exported
    assert CrossEncoderScorer(quantize=True).runtime == "torch"
    monkeypatch.setenv(RUNTIME_ENV, "gpu")
    with pytest.raises(ModelError, match="runtime"):
        scorer_runtime()


# --------------------------------------------------------------------------------------------
# Real exports (slow: the first one exports MiniLM, ~10-40 s; later runs read the cache)

TEXTS = ["Which of these is a source of light energy for plants?", "water", "The sun is a star.",
         "a much longer sentence " * 80]  # the last is truncated at MiniLM's 256 tokens


@pytest.mark.slow
def test_onnx_fp32_encoder_matches_torch() -> None:
    from core.models import model_path
    from retrieval.encoder import OnnxEncoder, SentenceTransformerEncoder, get_encoder

    ref = SentenceTransformerEncoder("ref", path=model_path("minilm"), autocast=False).encode(TEXTS)
    enc = OnnxEncoder(DEFAULT_NAME, model_path("minilm"), "fp32")
    assert enc._sess is None and enc.dim == 384  # dim known without loading anything
    got = enc.encode(TEXTS, batch_size=2)
    assert got.dtype == np.float32 and got.shape == (4, 384)
    assert np.abs(got - ref).max() < 1e-5
    assert np.abs(enc.encode(TEXTS[1:2]) - ref[1:2]).max() < 1e-5  # a batch of one
    assert enc.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        enc.encode("one string")  # type: ignore[arg-type]
    if os.environ.get("MICROTHEORY_ENCODER_RUNTIME") in (None, "", "onnx"):
        assert isinstance(get_encoder(None), OnnxEncoder)
    assert isinstance(get_encoder("minilm@torch"), SentenceTransformerEncoder)


@pytest.mark.slow
def test_onnx_int8_encoder_is_close_and_named_apart() -> None:
    from core.models import model_path
    from retrieval.encoder import OnnxEncoder, SentenceTransformerEncoder, get_encoder

    ref = SentenceTransformerEncoder("ref", path=model_path("minilm"), autocast=False).encode(TEXTS)
    enc = get_encoder("minilm@int8")
    assert isinstance(enc, OnnxEncoder) and enc.name == DEFAULT_NAME + "@int8" and enc.quant == "int8"
    got = enc.encode(TEXTS)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * ref).sum(1)
    assert cos.min() > 0.97 and np.abs(got - ref).max() > 1e-4  # close, but not the same vectors


@pytest.mark.slow
def test_store_built_with_int8_is_not_queried_with_fp32(tmp_path: Path) -> None:
    from core.types import Fact
    from retrieval.store import KnowledgeStore

    with KnowledgeStore.create(tmp_path / "s", encoder="minilm@int8", index="flat") as ks:
        ks.add([Fact("f1", "The sun is a star."), Fact("f2", "Plants need water to grow.")])
    ks = KnowledgeStore.open(tmp_path / "s")  # its own encoder: the int8 one, from the manifest
    assert ks.encoder.name == DEFAULT_NAME + "@int8"
    assert ks.search("what is the sun", k=1)[0].fact.text == "The sun is a star."
    with pytest.raises(EncoderMismatchError, match="@int8"):
        KnowledgeStore.open(tmp_path / "s", encoder="minilm")
    with pytest.raises(EncoderMismatchError):
        KnowledgeStore.open(tmp_path / "s", encoder="minilm@torch")


@pytest.mark.slow
def test_onnx_scorer_matches_torch(monkeypatch) -> None:
    from retrieval.entail import CrossEncoderScorer

    monkeypatch.setenv("MICROTHEORY_BF16", "0")   # ONNX runs fp32: compare with torch in fp32 (bf16 CPUs autocast)
    items = [(["The sun is a star.", "A star gives off light."], "The sun gives off light."),
             (["Plants need water."], "The moon is made of cheese."),
             (["an animal needs food to survive", "a rabbit is a kind of animal"], "a rabbit needs food to survive"),
             (["word " * 200], "a premise longer than max_length is truncated")]
    ref = CrossEncoderScorer(runtime="torch").logits_batch(items, batch_size=2)
    onnx = CrossEncoderScorer(runtime="onnx")
    got = onnx.logits_batch(items, batch_size=3)
    assert onnx._sess is not None and onnx._model is None  # really ran on ONNX Runtime
    assert np.abs(got - ref).max() < 1e-3
    q = CrossEncoderScorer(runtime="int8").logits_batch(items)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert np.abs(sig(q) - sig(ref)).max() < 0.15 and (np.sign(q) == np.sign(ref)).all()


def test_length_batches_cap_padded_tokens() -> None:
    lengths = [100, 10, 100, 10, 10, 100, 300]
    batches = [b.tolist() for b in ox.length_batches(lengths, 64, max_tokens=250)]
    # rows x the batch's longest row stays within 250 tokens; a row longer than the cap goes alone
    assert batches == [[1, 3, 4], [0, 2], [5], [6]]
    assert all(len(b) * max(lengths[i] for i in b) <= 250 for b in batches[:-1])
    assert [b.tolist() for b in ox.length_batches(lengths, 64, max_tokens=None)] == [[1, 3, 4, 0, 2, 5, 6]]
    assert [b.tolist() for b in ox.length_batches(lengths, 2, max_tokens=None)] == [[1, 3], [4, 0], [2, 5], [6]]


def test_fast_tokenizer_gives_transformers_ids_on_the_packaged_minilm() -> None:
    from transformers import AutoTokenizer

    from retrieval.encoder import default_model_path

    root = default_model_path()
    fast, hf = ox.fast_tokenizer(root), AutoTokenizer.from_pretrained(root)
    assert fast is not None and fast.pad_token_id == hf.pad_token_id
    a = ["The sun is a star.", "Café naïve 東京 “quotes” – ok", " ".join(["long"] * 300), "x"]
    b = ["A star is hot.", "", " ".join(["words and more"] * 80), "y z"]
    for kw in ({"max_length": 128}, {"max_length": 16}):
        want, got = hf(a, b, truncation="longest_first", **kw), fast(a, b, truncation="longest_first", **kw)
        assert all(got[k] == want[k] for k in got)                  # pairs, truncated longest-first
        want, got = hf(a, truncation="longest_first", **kw), fast(a, truncation="longest_first", **kw)
        assert all(got[k] == want[k] for k in got)                  # single texts


def test_fast_tokenizer_is_refused_for_other_tokenizers(tmp_path: Path) -> None:
    assert ox.fast_tokenizer(tmp_path) is None                     # no tokenizer files: transformers decides
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "T5Tokenizer"}')
    (tmp_path / "tokenizer.json").write_text('{"normalizer": {"type": "BertNormalizer", "lowercase": true}}')
    assert ox.fast_tokenizer(tmp_path) is None


@pytest.mark.skipif(any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")),
                    reason="a GPU machine asks torch")
def test_onnx_scoring_and_encoding_import_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = ("import sys\n"
            "from retrieval.entail import load_scorer\n"
            "from retrieval.encoder import get_encoder\n"
            "assert load_scorer().score_batch([(['plants need water to grow.', 'a cactus is a plant.'], 'a cactus needs water to grow.')])[0] > 0.5\n"
            "assert get_encoder().encode(['the sun is a star']).shape == (1, 384)\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
