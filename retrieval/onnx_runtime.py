"""ONNX Runtime for the project's transformer models: export once, cache atomically, run length-bucketed.

The sentence encoder (`retrieval.encoder.OnnxEncoder`) and the entailment cross-encoder
(`retrieval.entail.CrossEncoderScorer(runtime="onnx")`) are exported from the very weights the
PyTorch path loads (`torch.onnx.export`, eager attention so that ONNX Runtime's BERT fusions apply),
fused by `onnxruntime.transformers.optimizer`, and optionally quantised to dynamic int8
(`onnxruntime.quantization.quantize_dynamic`, per-channel, reduced range: this AVX2 CPU has no
VNNI and full-range u8 x s8 products saturate).

- `cached_model(kind, digest, build)`: the file `<cache>/onnx/<kind>-<key>/model.onnx`, where key
  hashes the sources' digest with the export recipe and the torch / onnxruntime versions. `build`
  writes into a temporary sibling folder that is renamed into place only when complete, so a crash
  never leaves a half-written model and two processes racing both end up with one good copy.
- `session(path, threads)`: an `InferenceSession` on the CPU (CUDA when onnxruntime-gpu has it).
- `length_batches(lengths, batch_size, max_tokens)`: indices sorted by length, cut into batches of at
  most `batch_size` rows and `max_tokens` padded tokens; padding is per batch, so short sentences are
  not padded to the longest one in the input, and long rows go a few at a time (on this CPU small
  batches of long rows run faster per token: less padding, better cache use; measured below).
- `pad_batch(encodings, pad_id)`: the int64 arrays ONNX Runtime takes, padded to the batch's longest.
- `fast_tokenizer(folder)`: the folder's tokenizer.json run by the `tokenizers` library (a plain BERT
  tokenizer only: same ids as transformers' AutoTokenizer), so that the ONNX paths start without
  importing transformers and torch (~3-4 s of a command's start-up on this machine); `tokenizer(folder)`
  is it, or AutoTokenizer where it does not apply.

Thread count: `MICROTHEORY_ORT_THREADS`, else `DEFAULT_THREADS` (1). Measured on this project's
2-core machine shared with other jobs (load 8; docs/benchmarks.md "Encoder precision"): MiniLM fp32,
1 thread 48 sentences/s wall, 2 threads 43 (37 with spinning threads); at load 5, 2 threads won
(59 vs 43). One intra-op thread per process, since the cores here are shared by several processes;
MICROTHEORY_ORT_THREADS=2 on a quiet machine.
onnxruntime is imported lazily: `import retrieval.onnx_runtime` is cheap.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError

THREADS_ENV = "MICROTHEORY_ORT_THREADS"
DEFAULT_THREADS = 1
RECIPE_VERSION = 1  # bump when the export / fusion / quantisation recipe changes: old cache entries are ignored
QUANTS = ("fp32", "int8")


def available() -> bool:
    """True when onnxruntime can be imported (it is a dependency; a broken install falls back to torch)."""
    try:
        import onnxruntime  # noqa: F401
    except Exception:
        return False
    return True


def default_threads(threads: int | None = None) -> int:
    """Intra-op threads: `threads` if given, else $MICROTHEORY_ORT_THREADS, else DEFAULT_THREADS."""
    if threads:
        return max(1, int(threads))
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ModelError(f"${THREADS_ENV} must be a whole number, not {env!r}") from None
    return DEFAULT_THREADS


def sha256_of(paths: Sequence[Path], extra: str = "") -> str:
    """One digest over several files' bytes (in order) and a text: the identity of a model's sources."""
    h = hashlib.sha256(extra.encode("utf-8"))
    for p in paths:
        h.update(p.name.encode("utf-8"))
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _versions() -> str:
    import onnxruntime

    major_minor = (lambda v: ".".join(v.split("+")[0].split(".")[:2]))
    return f"recipe{RECIPE_VERSION}-torch{major_minor(_torch_version())}-ort{major_minor(onnxruntime.__version__)}"


def _torch_version() -> str:
    """torch's version from its package metadata: a cache lookup must not import torch (~2-4 s)."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        import torch

        return str(torch.__version__)


# Tokenizer classes whose tokenizer.json alone reproduces transformers' tokenizer (`fast_tokenizer`).
_PLAIN_TOKENIZERS = ("BertTokenizer", "BertTokenizerFast")


class FastTokenizer:
    """A model folder's tokenizer.json run by the `tokenizers` library itself: the ids, type ids and
    attention masks the ONNX sessions take, truncated as transformers' `tok(a, [b], truncation=
    "longest_first", max_length=n)` truncates, without importing transformers (and with it torch,
    seconds at start-up). Same ids as AutoTokenizer on the project's MiniLM (tested)."""

    def __init__(self, backend: Any, pad_token_id: int):
        self._tok = backend
        self.pad_token_id = pad_token_id
        self._max_length: int | None = None
        backend.no_padding()

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None, truncation: str = "longest_first",
                 max_length: int | None = None) -> dict[str, list[list[int]]]:
        if truncation != "longest_first" or max_length is None:
            raise ValueError("FastTokenizer truncates longest_first to a max_length only")
        if max_length != self._max_length:
            self._tok.enable_truncation(max_length, strategy="longest_first")
            self._max_length = max_length
        encs = self._tok.encode_batch(list(zip(texts, pairs)) if pairs is not None else list(texts))
        return {"input_ids": [e.ids for e in encs], "token_type_ids": [e.type_ids for e in encs],
                "attention_mask": [e.attention_mask for e in encs]}


def fast_tokenizer(folder: str | Path) -> FastTokenizer | None:
    """`FastTokenizer` of `folder` when it holds a tokenizer.json of a plain BERT tokenizer (nothing
    added beside it); None otherwise (the caller then loads transformers' AutoTokenizer)."""
    root = Path(folder)
    try:
        conf = json.loads((root / "tokenizer_config.json").read_text(encoding="utf-8"))
        spec = json.loads((root / "tokenizer.json").read_text(encoding="utf-8"))
        norm = spec.get("normalizer") or {}
        if conf.get("tokenizer_class") not in _PLAIN_TOKENIZERS or (root / "added_tokens.json").exists() or \
                norm.get("type") != "BertNormalizer" or norm.get("lowercase") != conf.get("do_lower_case", True) or \
                norm.get("strip_accents") != conf.get("strip_accents"):
            return None
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(json.dumps(spec))
    except Exception:  # noqa: BLE001 - no tokenizer.json, an odd one, or no tokenizers library: use transformers
        return None
    pad = (spec.get("padding") or {}).get("pad_id")
    if pad is None:
        pad = backend.token_to_id(str(conf.get("pad_token") or "[PAD]"))
    return FastTokenizer(backend, int(pad or 0))


def tokenizer(folder: str | Path) -> Any:
    """The tokenizer the ONNX sessions take for `folder`: `fast_tokenizer` when it can, else
    transformers' AutoTokenizer (imports transformers: seconds)."""
    fast = fast_tokenizer(folder)
    if fast is not None:
        return fast
    from transformers import AutoTokenizer

    from core.models import quiet_transformers

    quiet_transformers()
    return AutoTokenizer.from_pretrained(str(folder))


def cache_root() -> Path:
    from core.models import cache_dir

    return cache_dir() / "onnx"


def cached_model(kind: str, digest: str, build: Callable[[Path], None]) -> Path:
    """`<cache>/onnx/<kind>-<key>/model.onnx`, built by `build(folder)` on first use.

    `build` must write `folder/model.onnx` (and anything else it wants) into the empty folder it is
    given; the folder becomes the cache entry only after `build` returns, by one rename.
    """
    key = hashlib.sha256(f"{kind}|{digest}|{_versions()}".encode()).hexdigest()[:16]
    target = cache_root() / f"{kind}-{key}"
    if (target / "model.onnx").is_file():
        return target / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        build(tmp)
        if not (tmp / "model.onnx").is_file():
            raise ModelError(f"ONNX export of {kind} wrote no model.onnx")
        (tmp / "meta.json").write_text(json.dumps({"kind": kind, "source_digest": digest, "versions": _versions()},
                                                  indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache entry is an ordinary folder
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.onnx").is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "model.onnx"


def export(module: Any, sample: dict[str, Any], out: Path, output_name: str) -> None:
    """`torch.onnx.export` of `module(**sample)` with batch and sequence axes dynamic (opset 17)."""
    import inspect
    import warnings

    import torch

    params = list(inspect.signature(module.forward).parameters)
    names = sorted(sample, key=params.index)  # positional order of forward(), not the tokenizer's dict order
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output_name] = {0: "batch"}
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-bool conditions on shapes
        torch.onnx.export(module, tuple(sample[n] for n in names), str(out), input_names=names,
                          output_names=[output_name], dynamic_axes=axes, opset_version=17, dynamo=False)


def optimize_bert(src: Path, dst: Path, num_heads: int, hidden: int) -> None:
    """ONNX Runtime's BERT fusions (attention, embedding + LayerNorm, skip-LayerNorm, bias-GELU)."""
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden,
                                     opt_level=1)
    model.save_model_to_file(str(dst))


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 weights (per output channel, reduced range), activations quantised per batch."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # quantiser's info chatter
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def build_model_file(module: Any, sample: dict[str, Any], output_name: str, hf_config: Any, quant: str,
                     tmp: Path) -> Path:
    """Export -> BERT fusions (for BERT-type models) -> int8 if asked, as `tmp/model.onnx`."""
    src = tmp / "exported.onnx"
    export(module, sample, src, output_name)
    if hf_config.model_type == "bert":
        optimize_bert(src, tmp / "fused.onnx", hf_config.num_attention_heads, hf_config.hidden_size)
        src = tmp / "fused.onnx"
    if quant == "int8":
        quantize_int8(src, tmp / "model.onnx")
    else:
        os.replace(src, tmp / "model.onnx")
    for junk in ("exported.onnx", "fused.onnx"):
        (tmp / junk).unlink(missing_ok=True)
    return tmp / "model.onnx"


def session(path: Path, threads: int | None = None) -> Any:
    """An InferenceSession for `path` with `default_threads(threads)` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = default_threads(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads sleep instead of spinning: with 2 threads at load 8, spinning cost 15% (37 vs 43 sent/s).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:
        raise ModelError(f"cannot load the ONNX model {path}: {type(e).__name__}: {str(e).splitlines()[0]} "
                         f"(delete {path.parent} to rebuild it)") from e


# Padded tokens per batch (rows x the batch's longest row). Measured on the 2-core CPU with the
# scorer pairs and encoder texts of a 60-row `critique run --microtheory` (bench/speed_bench.py):
# process CPU seconds for the scorer pairs 16.4-17.2 with 64-row batches, 14.8-15.1 at 2048 tokens,
# 13.1-13.2 at 512, 12.9 at 256; encoder texts 5.5-5.9 -> 4.1-4.4 at 512. Scores differ by < 1e-7.
MAX_BATCH_TOKENS = 512


def length_batches(lengths: Sequence[int], batch_size: int,
                   max_tokens: int | None = MAX_BATCH_TOKENS) -> Iterator[np.ndarray]:
    """Index arrays grouped by similar length (stable: ties keep input order), each of at most
    `batch_size` rows and, past its first row, at most `max_tokens` padded tokens (None: no cap)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lens, kind="stable")
    start = 0
    while start < len(order):
        end = start + 1
        # Ascending order: the row joining is the batch's longest, so the batch pads to its length.
        while end < len(order) and end - start < batch_size and \
                (max_tokens is None or (end - start + 1) * int(lens[order[end]]) <= max_tokens):
            end += 1
        yield order[start:end]
        start = end


def pad_batch(encodings: Sequence[dict[str, list[int]]], names: Sequence[str], pad_id: int) -> dict[str, np.ndarray]:
    """int64 arrays (batch, longest) for the inputs `names`; ids padded with `pad_id`, the rest with 0."""
    width = max(len(e["input_ids"]) for e in encodings)
    out: dict[str, np.ndarray] = {}
    for name in names:
        arr = np.full((len(encodings), width), pad_id if name == "input_ids" else 0, dtype=np.int64)
        for i, e in enumerate(encodings):
            row = e.get(name)
            if row is None and name == "attention_mask":
                row = [1] * len(e["input_ids"])
            if row is not None:
                arr[i, :len(row)] = row
        out[name] = arr
    return out


__all__ = ["DEFAULT_THREADS", "FastTokenizer", "MAX_BATCH_TOKENS", "QUANTS", "THREADS_ENV", "available", "cached_model", "default_threads", "export",
           "fast_tokenizer", "length_batches", "tokenizer", "optimize_bert", "pad_batch", "quantize_int8", "session", "sha256_of"]
