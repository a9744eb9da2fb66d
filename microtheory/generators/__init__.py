"""Generator backends: one protocol (`Generator.generate`), several backends, one factory.

    from microtheory.generators import get_generator
    gen = get_generator("openai:http://127.0.0.1:8080/v1#smollm2")
    [[a, b]] = gen.generate("Statement: ...", n=2, temperature=0.7, seed=0)

Backend modules import their heavy libraries lazily; importing this package is cheap.
"""
from __future__ import annotations

from microtheory.generators.base import (
    BaseGenerator,
    Generator,
    GeneratorStats,
    SamplingParams,
    ScriptedGenerator,
    get_generator,
    smollm2_gguf_path,
)
from core.errors import GeneratorError

__all__ = ["BaseGenerator", "Generator", "GeneratorError", "GeneratorStats", "SamplingParams", "ScriptedGenerator",
           "get_generator", "smollm2_gguf_path"]
