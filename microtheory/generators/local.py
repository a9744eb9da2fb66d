"""In-process generators: a GGUF file through llama.cpp, any causal LM through transformers.

Both load lazily on the first `generate` and are cached once per process, keyed by their load
arguments (transformers models through `core.models.load_causal_lm`, shared with the generative critic). `llama_cpp` is the optional extra `llm` (pip install -e '.[llm]'); transformers is a
core dependency and also reads GGUF files (dequantised to float32: slower than llama.cpp, but no
build step), e.g. `hf:smollm2` for the packaged SmolLM2-135M-Instruct.
"""
from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any

from microtheory.generators.base import BaseGenerator, SamplingParams
from core.errors import GeneratorError

_LOCK = threading.Lock()


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Cut `text` at the first stop string (transformers' generate has no stop strings of its own)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


@functools.lru_cache(maxsize=4)
def _load_llama(path: str, n_ctx: int, n_threads: int | None) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise GeneratorError("the llama-cpp backend needs llama-cpp-python: pip install -e '.[llm]' "
                             f"(or `make llm`; it builds from source in about 5 minutes): {e}") from None
    try:
        # n_threads_batch follows n_threads: llama.cpp's default (all cores) for prompt processing
        # is several times slower than one thread on a machine whose cores are busy.
        return Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
    except Exception as e:  # llama_cpp raises ValueError / RuntimeError with its own text
        raise GeneratorError(f"llama.cpp cannot load {path}: {type(e).__name__}: {e}") from None


class LlamaCppGenerator(BaseGenerator):
    """A GGUF model run by llama.cpp in this process. `chat` applies the model's chat template."""

    def __init__(self, model_path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None,
                 chat: bool = True, system: str | None = None, name: str | None = None):
        super().__init__()
        self.model_path = str(model_path)
        if not Path(self.model_path).is_file():
            raise GeneratorError(f"GGUF model file not found: {self.model_path}")
        self.n_ctx, self.n_threads, self.chat, self.system = n_ctx, n_threads, chat, system
        self.name = name or f"llama-cpp:{Path(self.model_path).name}"

    def _model(self) -> Any:
        with _LOCK:
            return _load_llama(self.model_path, self.n_ctx, self.n_threads)

    def _generate_one(self, prompt: str, n: int, params: SamplingParams) -> list[str]:
        llm = self._model()
        out = []
        t0 = time.monotonic()
        try:
            for i in range(n):
                p = params.for_sample(i)
                kw: dict[str, Any] = {"temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens,
                                      "stop": list(p.stop) or None}
                if p.seed is not None:
                    kw["seed"] = p.seed
                self.stats.calls += 1
                try:
                    if self.chat:
                        msgs = ([{"role": "system", "content": self.system}] if self.system else []) + \
                            [{"role": "user", "content": prompt}]
                        r = llm.create_chat_completion(messages=msgs, **kw)
                        text = r["choices"][0]["message"]["content"]
                    else:
                        r = llm.create_completion(prompt, **kw)
                        text = r["choices"][0]["text"]
                except Exception as e:
                    self.stats.failures += 1
                    raise GeneratorError(f"llama.cpp generation failed ({self.name}): {type(e).__name__}: {e}") from None
                out.append(text or "")
        finally:
            self.stats.seconds += time.monotonic() - t0
        return out


def _load_hf(model: str, gguf_file: str | None, device: str, dtype: str | None) -> tuple[Any, Any]:
    """(tokenizer, model) from `core.models` (one causal-LM loader, cached per load arguments)."""
    from core.errors import ModelError
    from core.models import load_causal_lm

    try:
        return load_causal_lm(model, gguf_file, device, dtype)  # type: ignore[no-any-return]
    except ModelError as e:
        raise GeneratorError(str(e)) from None


class HFGenerator(BaseGenerator):
    """A Hugging Face causal LM through transformers' `generate` (GPU when there is one)."""

    def __init__(self, model: str, *, gguf_file: str | None = None, device: str | None = None,
                 dtype: str | None = None, chat: bool | None = None, system: str | None = None,
                 name: str | None = None):
        super().__init__()
        self.model_name, self.gguf_file, self.dtype = model, gguf_file, dtype
        self.device = device
        self.chat, self.system = chat, system
        self.name = name or f"hf:{model}"

    def _loaded(self) -> tuple[Any, Any]:
        device = self.device
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        with _LOCK:
            return _load_hf(self.model_name, self.gguf_file, device, self.dtype)

    def _generate_one(self, prompt: str, n: int, params: SamplingParams) -> list[str]:
        import torch

        tok, lm = self._loaded()
        use_chat = self.chat if self.chat is not None else bool(getattr(tok, "chat_template", None))
        t0 = time.monotonic()
        self.stats.calls += 1
        try:
            if use_chat:
                msgs = ([{"role": "system", "content": self.system}] if self.system else []) + \
                    [{"role": "user", "content": prompt}]
                enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                              return_dict=True)
            else:
                enc = tok(prompt, return_tensors="pt")
            enc = {k: v.to(lm.device) for k, v in enc.items()}
            if params.seed is not None:
                torch.manual_seed(params.seed)
            sample = params.temperature > 0
            gkw: dict[str, Any] = {"max_new_tokens": params.max_tokens, "num_return_sequences": n,
                                   "do_sample": sample, "pad_token_id": tok.pad_token_id}
            if sample:
                gkw.update(temperature=params.temperature, top_p=params.top_p)
            with torch.no_grad():
                out = lm.generate(**enc, **gkw)
            start = enc["input_ids"].shape[1]
            texts = [tok.decode(row[start:], skip_special_tokens=True) for row in out]
        except GeneratorError:
            raise
        except Exception as e:
            self.stats.failures += 1
            raise GeneratorError(f"transformers generation failed ({self.name}): {type(e).__name__}: {e}") from None
        finally:
            self.stats.seconds += time.monotonic() - t0
        return [truncate_at_stop(t, params.stop) for t in texts]
