"""Generator backends: one protocol (`Generator.generate`), several backends registered by name in
`GENERATORS`, one factory (`get_generator(spec)`).

    from microtheory.generators import get_generator
    gen = get_generator("openai:http://127.0.0.1:8080/v1#smollm2")
    [[a, b]] = gen.generate("Statement: ...", n=2, temperature=0.7, seed=0)

Backend modules import their heavy libraries lazily; importing this package is cheap.
"""
from __future__ import annotations

from core.errors import GeneratorError
from microtheory.generators.base import (
    GENERATORS,
    BaseGenerator,
    Generator,
    GeneratorFactory,
    GeneratorStats,
    SamplingParams,
    ScriptedGenerator,
    get_generator,
    smollm2_gguf_path,
)

__all__ = ["GENERATORS", "BaseGenerator", "Generator", "GeneratorError", "GeneratorFactory", "GeneratorStats",
           "SamplingParams", "ScriptedGenerator", "get_generator", "smollm2_gguf_path"]
