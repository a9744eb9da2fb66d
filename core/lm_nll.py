"""Continuation likelihood under a causal LM: -log p(continuation | prompt), packed, batched, cached.

One engine for every caller that asks "how likely is this text after that prompt" (the critic's
explanation likelihood, critique.likelihood; the QA ranker's option features, retrieval.option_lm).
`ContinuationNll.nll_pairs([(prompt, continuation), ...])` returns each continuation's summed
negative log-likelihood (nats) and its token count. The prompt and the continuation are tokenised
apart (the continuation after one space), so the boundary is exact.

Continuations that share a prompt are packed into one LM row after one copy of the prompt, each
attending to the prompt and to itself only (a 4D mask, positions restarting after the prompt): the
prompt is computed once. Rows are length-sorted and batched (right padding), and the LM head runs
only on the positions that predict continuation tokens. Results are cached in memory per (key
version, model, prompt, continuation) and, with `cache_path`, in an append-only JSONL file that later
processes reuse (a truncated last line from a crash is ignored). The model is the packaged
SmolLM2-135M-Instruct by default, loaded once per process through `core.models`; one torch thread by
default (the machine is usually shared).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError


@dataclass(frozen=True)
class NllConfig:
    model: str = "smollm2"          # "smollm2" (packaged), a transformers folder or a hub name
    threads: int | None = 1         # torch threads; None leaves torch's setting alone
    batch_size: int = 8
    max_tokens: int = 160           # continuation tokens scored (longer ones are truncated)
    max_prompt_tokens: int = 256    # prompt tokens kept (from the end) before the continuation
    cache_path: str | None = None   # JSONL cache shared across processes (None: memory only)
    pack_tokens: int = 384          # continuations sharing a prompt share one LM row up to this width


def cache_key(version: str, model_id: str, prompt: str, continuation: str) -> str:
    h = hashlib.sha256()
    for part in (version, model_id, prompt, continuation):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:32]


class NllCache:
    """(nll_sum, tokens) per key, in memory and optionally in an append-only JSONL file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, tuple[float, int]] = {}
        if self.path is not None and self.path.is_file():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                        self.data[obj["k"]] = (float(obj["nll"]), int(obj["n"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut by a crash: that entry is recomputed

    def get(self, key: str) -> tuple[float, int] | None:
        return self.data.get(key)

    def put(self, entries: dict[str, tuple[float, int]]) -> None:
        self.data.update(entries)
        if self.path is None or not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"k": k, "nll": round(v[0], 5), "n": v[1]}) + "\n" for k, v in entries.items()))
            f.flush()
            os.fsync(f.fileno())


class ContinuationNll:
    """`nll_pairs(pairs) -> (n, 2)`: summed NLL (nats) and token count of each continuation given its prompt.

    `config` is an NllConfig or any object with its fields. `backend=(tokenizer, causal_lm)` injects a
    model (tests); `model_id` then names it in cache keys. `key_version` is part of every cache key:
    callers whose prompts change bump theirs.
    """

    key_version = "nll-v1"

    def __init__(self, config: Any = None, *, backend: tuple[Any, Any] | None = None,
                 model_id: str | None = None) -> None:
        self.config = config if config is not None else NllConfig()
        self._backend = backend
        self.model_id = model_id or (self.config.model if backend is None else f"injected:{id(backend[1])}")
        self.cache = NllCache(self.config.cache_path)
        self.seconds = 0.0      # time spent in forward passes (speed accounting)
        self.rows_run = 0       # (prompt, continuation) pairs actually run through the LM
        self.tokens_run = 0     # LM positions computed (a prompt shared by packed continuations counts once)

    def _load(self) -> tuple[Any, Any]:
        if self._backend is None:
            import torch

            from core.models import load_causal_lm, smollm2_unpacked, spec_for

            if self.config.threads:
                torch.set_num_threads(self.config.threads)
            spec = spec_for(self.config.model)
            name = str(smollm2_unpacked()) if spec is not None and spec.kind == "causal-lm-gguf" else self.config.model
            self._backend = load_causal_lm(name)
        return self._backend

    def key(self, prompt: str, continuation: str) -> str:
        return cache_key(self.key_version, self.model_id, prompt, continuation)

    def nll_pairs(self, pairs: Sequence[tuple[str, str]], progress: bool = False) -> np.ndarray:
        """(n, 2): total NLL of each continuation given its prompt, and its token count."""
        keys = [self.key(p, e) for p, e in pairs]
        todo = {k: pr for k, pr in zip(keys, pairs) if self.cache.get(k) is None}
        if todo:
            self._run(todo, progress)
        return np.array([self.cache.get(k) for k in keys], dtype=np.float64).reshape(len(pairs), 2)

    def _encode(self, tok: Any, text: str, continuation: bool) -> list[int]:
        """Prompt and continuation are tokenised apart, so the boundary between them is exact."""
        if continuation:
            return tok.encode(" " + " ".join(text.split()), add_special_tokens=False)[: self.config.max_tokens]
        return tok.encode(text, add_special_tokens=False)[-self.config.max_prompt_tokens:]

    def _run(self, todo: dict[str, tuple[str, str]], progress: bool) -> None:
        tok, lm = self._load()
        by_prompt: dict[str, list[tuple[str, list[int]]]] = {}
        for k, (p, e) in todo.items():
            by_prompt.setdefault(p, []).append((k, self._encode(tok, e, True)))
        rows = [r for p, ex in by_prompt.items() for r in _pack(self._encode(tok, p, False), ex, self.config.pack_tokens)]
        t0 = time.perf_counter()
        done = 0
        for batch in _batches(rows, max(1, self.config.batch_size)):
            self.cache.put(_packed_nll(lm, batch))
            self.tokens_run += sum(r.width for r in batch)
            done += sum(len(r.keys) for r in batch)
            if progress:
                print(f"  lm likelihood: {done}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        self.seconds += time.perf_counter() - t0
        self.rows_run += len(todo)


def _batches(rows: list[_Packed], size: int, min_fill: float = 0.6) -> list[list[_Packed]]:
    """Rows longest first, at most `size` a batch; a row shorter than `min_fill` of its batch's first
    (longest) row starts a new batch, so that padding never costs more than the rows themselves
    (a question's short unconditional row beside its long facts row would double the work)."""
    out: list[list[_Packed]] = []
    for r in sorted(rows, key=lambda r: r.width, reverse=True):
        if not out or len(out[-1]) >= size or r.width < min_fill * out[-1][0].width:
            out.append([])
        out[-1].append(r)
    return out


@dataclass
class _Packed:
    """One LM row: a prompt followed by several continuations that each see the prompt and themselves only."""

    prompt: list[int]
    keys: list[str]
    segments: list[list[int]]

    @property
    def width(self) -> int:
        return len(self.prompt) + sum(len(s) for s in self.segments)


def _pack(prompt: list[int], continuations: list[tuple[str, list[int]]], limit: int) -> list[_Packed]:
    """The continuations of one prompt in rows of at most `limit` tokens (one continuation at least)."""
    rows: list[_Packed] = []
    for key, ids in continuations:
        if not rows or (rows[-1].width + len(ids) > limit and rows[-1].segments):
            rows.append(_Packed(prompt, [], []))
        rows[-1].keys.append(key)
        rows[-1].segments.append(ids)
    return rows


def _layout(rows: list[_Packed]) -> tuple[Any, Any, Any, list[tuple[int, int, int, int]]]:
    """(ids, positions, 4D additive mask, targets as (row, predicting column, token, segment))."""
    import torch

    width = max(r.width for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    seg = torch.full((len(rows), width), -2, dtype=torch.long)  # -2 padding, -1 prompt, j continuation j
    targets: list[tuple[int, int, int, int]] = []
    for i, r in enumerate(rows):
        p = len(r.prompt)
        ids[i, :p], pos[i, :p], seg[i, :p] = torch.tensor(r.prompt, dtype=torch.long), torch.arange(p), -1
        col = p
        for j, s in enumerate(r.segments):
            n = len(s)
            if n:
                ids[i, col:col + n], pos[i, col:col + n], seg[i, col:col + n] = torch.tensor(s), torch.arange(p, p + n), j
            targets += [(i, (p - 1) if t == 0 else col + t - 1, s[t], j) for t in range(n) if p > 0 or t > 0]
            col += n
    q, k = seg[:, :, None], seg[:, None, :]
    idx = torch.arange(width)
    causal = idx[None, :, None] >= idx[None, None, :]
    allowed = causal & ((k == -1) | (k == q)) & (q != -2)
    allowed |= torch.eye(width, dtype=torch.bool)[None]  # padding attends to itself (no empty softmax rows)
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return ids, pos, mask[:, None], targets


def _packed_nll(lm: Any, rows: list[_Packed]) -> dict[str, tuple[float, int]]:
    """Sum of -log p(token) over each continuation's tokens, per cache key."""
    import torch

    ids, pos, mask, targets = _layout(rows)
    sums: dict[tuple[int, int], float] = {}
    counts: dict[tuple[int, int], int] = {}
    if targets:
        t = torch.tensor(targets, dtype=torch.long)
        try:
            with torch.inference_mode():
                hidden = lm.base_model(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
                logits = lm.get_output_embeddings()(hidden[t[:, 0], t[:, 1]]).float()
                lp = logits.log_softmax(-1).gather(1, t[:, 2:3])[:, 0].numpy().astype(np.float64)
        except RuntimeError as e:
            raise ModelError(f"likelihood forward pass failed: {str(e).splitlines()[0]}") from e
        for (i, _, _, j), v in zip(targets, lp):
            sums[i, j] = sums.get((i, j), 0.0) - float(v)
            counts[i, j] = counts.get((i, j), 0) + 1
    return {key: (sums.get((i, j), 0.0), counts.get((i, j), 0))
            for i, r in enumerate(rows) for j, key in enumerate(r.keys)}


__all__ = ["ContinuationNll", "NllCache", "NllConfig", "cache_key"]
