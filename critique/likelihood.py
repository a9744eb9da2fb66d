"""How likely an explanation is under a small LM, given the question and the answer it explains.

A critic signal that needs no labels: SmolLM2-135M-Instruct (the packaged model, loaded through
`core.models`) reads a short prompt

    Question: <question>
    Answer: <answer text>
    Explanation: <explanation>

and the scorer sums the negative log-likelihood (nats) of the explanation's tokens only. Columns
(`LikelihoodScorer.features`, all of `FEATURES` by default):

- `lm_nll_sum`: NLL of the explanation given question + answer;
- `lm_nll_mean`: the same per explanation token;
- `lm_tokens`: the explanation's token count (after truncation to `max_tokens`);
- `lm_answer_gain`: NLL given the question alone minus NLL given question + answer: how much the
  answer makes the explanation more likely (positive: the explanation is about this answer);
- `lm_answer_gain_mean`: the same per token;
- optional (`context_gain=True`): `lm_context_gain(_mean)`, NLL with no question ("Explanation:"
  only) minus NLL given question + answer: how much the explanation is about this question.

Explanations that share a prompt (the same question + answer) are packed into one LM row after one
copy of the prompt, each attending to the prompt and to itself only (a 4D mask, positions restarting
after the prompt): the prompt is computed once. Rows are length-sorted and batched (right padding),
and the LM head runs only on the positions that predict explanation tokens. Scores are cached in memory per (model, prompt, explanation) and, with
`cache_path`, in an append-only JSONL file that later processes reuse (a truncated last line from a
crash is ignored). One thread by default: the machine is usually shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import ModelError

BASE_FEATURES = ("lm_nll_sum", "lm_nll_mean", "lm_tokens")
ANSWER_FEATURES = ("lm_answer_gain", "lm_answer_gain_mean")
CONTEXT_FEATURES = ("lm_context_gain", "lm_context_gain_mean")
FEATURES = BASE_FEATURES + ANSWER_FEATURES  # the default columns
PROMPT_VERSION = "qa-v1"  # part of every cache key: change it when the prompts change


class ExplainedRecord(Protocol):
    """What the scorer reads from a record (`critique.inputs.ModelOutput` has all of it)."""

    question: str
    options: dict[str, str]
    answer_key: str
    explanation: str
    predicted_answer: str


@dataclass(frozen=True)
class LikelihoodConfig:
    model: str = "smollm2"          # "smollm2" (packaged), a transformers folder or a hub name
    threads: int | None = 1         # torch threads; None leaves torch's setting alone
    batch_size: int = 8
    max_tokens: int = 160           # explanation tokens scored (longer ones are truncated)
    max_prompt_tokens: int = 256    # prompt tokens kept (from the end) before the explanation
    answer_gain: bool = True        # second pass: the prompt without the answer
    context_gain: bool = False      # third pass: no question at all
    cache_path: str | None = None   # JSONL cache shared across processes (None: memory only)
    pack_tokens: int = 384          # explanations sharing a prompt share one LM row up to this width


def answer_text(rec: ExplainedRecord) -> str:
    """The answer the explanation explains: the predicted option's text (else what was predicted,
    else the keyed option)."""
    pred = (rec.predicted_answer or "").strip()
    if pred in rec.options:
        return rec.options[pred]
    return pred or rec.options.get(rec.answer_key, rec.answer_key)


def prompts(rec: ExplainedRecord) -> dict[str, str]:
    """The three conditioning prompts; the explanation follows each after one space."""
    q = " ".join(rec.question.split())
    return {"answer": f"Question: {q}\nAnswer: {' '.join(answer_text(rec).split())}\nExplanation:",
            "question": f"Question: {q}\nExplanation:",
            "none": "Explanation:"}


def _cache_key(model_id: str, prompt: str, explanation: str) -> str:
    h = hashlib.sha256()
    for part in (PROMPT_VERSION, model_id, prompt, explanation):
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


class LikelihoodScorer:
    """`score(records) -> (n, len(features))` float64 array of explanation likelihood features.

    `backend=(tokenizer, causal_lm)` injects a model (tests); `model_id` then names it in cache keys.
    """

    def __init__(self, config: LikelihoodConfig | None = None, *, backend: tuple[Any, Any] | None = None,
                 model_id: str | None = None, **overrides: Any) -> None:
        cfg = config or LikelihoodConfig()
        self.config = LikelihoodConfig(**{**cfg.__dict__, **overrides}) if overrides else cfg
        self._backend = backend
        self.model_id = model_id or (self.config.model if backend is None else f"injected:{id(backend[1])}")
        self.cache = NllCache(self.config.cache_path)
        self.seconds = 0.0      # time spent in forward passes (speed accounting)
        self.rows_run = 0       # (prompt, explanation) pairs actually run through the LM
        self.tokens_run = 0     # LM positions computed (a prompt shared by packed explanations counts once)

    @property
    def features(self) -> tuple[str, ...]:
        return (BASE_FEATURES + (ANSWER_FEATURES if self.config.answer_gain else ())
                + (CONTEXT_FEATURES if self.config.context_gain else ()))

    @property
    def passes(self) -> tuple[str, ...]:
        return ("answer",) + (("question",) if self.config.answer_gain else ()) + (
            ("none",) if self.config.context_gain else ())

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

    def score(self, records: Sequence[ExplainedRecord], progress: bool = False) -> np.ndarray:
        """One row per record, columns `self.features` (NLLs in nats)."""
        pairs = [(prompts(r)[p], r.explanation) for r in records for p in self.passes]
        nll = self.nll_pairs(pairs, progress=progress).reshape(len(records), len(self.passes), 2)
        s, n = nll[:, 0, 0], np.maximum(nll[:, 0, 1], 1)
        cols = [s, s / n, nll[:, 0, 1]]
        for j in range(1, len(self.passes)):
            cols += [nll[:, j, 0] - s, nll[:, j, 0] / np.maximum(nll[:, j, 1], 1) - s / n]
        return np.stack(cols, axis=1) if records else np.zeros((0, len(self.features)))

    def score_dict(self, records: Sequence[ExplainedRecord], progress: bool = False) -> dict[str, np.ndarray]:
        x = self.score(records, progress=progress)
        return {f: x[:, i] for i, f in enumerate(self.features)}

    def nll_pairs(self, pairs: Sequence[tuple[str, str]], progress: bool = False) -> np.ndarray:
        """(n, 2): total NLL of each explanation given its prompt, and its token count."""
        keys = [_cache_key(self.model_id, p, e) for p, e in pairs]
        todo = {k: pr for k, pr in zip(keys, pairs) if self.cache.get(k) is None}
        if todo:
            self._run(todo, progress)
        return np.array([self.cache.get(k) for k in keys], dtype=np.float64).reshape(len(pairs), 2)

    def _encode(self, tok: Any, text: str, explanation: bool) -> list[int]:
        """Prompt and explanation are tokenised apart, so the boundary between them is exact."""
        if explanation:
            return tok.encode(" " + " ".join(text.split()), add_special_tokens=False)[: self.config.max_tokens]
        return tok.encode(text, add_special_tokens=False)[-self.config.max_prompt_tokens:]

    def _run(self, todo: dict[str, tuple[str, str]], progress: bool) -> None:
        tok, lm = self._load()
        by_prompt: dict[str, list[tuple[str, list[int]]]] = {}
        for k, (p, e) in todo.items():
            by_prompt.setdefault(p, []).append((k, self._encode(tok, e, True)))
        rows = [r for p, ex in by_prompt.items() for r in _pack(self._encode(tok, p, False), ex, self.config.pack_tokens)]
        rows.sort(key=lambda r: r.width, reverse=True)  # similar lengths share a batch: little padding
        t0 = time.perf_counter()
        bs, done = max(1, self.config.batch_size), 0
        for i in range(0, len(rows), bs):
            batch = rows[i:i + bs]
            self.cache.put(_packed_nll(lm, batch))
            self.tokens_run += sum(r.width for r in batch)
            done += sum(len(r.keys) for r in batch)
            if progress:
                print(f"  lm likelihood: {done}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        self.seconds += time.perf_counter() - t0
        self.rows_run += len(todo)


@dataclass
class _Packed:
    """One LM row: a prompt followed by several explanations that each see the prompt and themselves only."""

    prompt: list[int]
    keys: list[str]
    segments: list[list[int]]

    @property
    def width(self) -> int:
        return len(self.prompt) + sum(len(s) for s in self.segments)


def _pack(prompt: list[int], explanations: list[tuple[str, list[int]]], limit: int) -> list[_Packed]:
    """The explanations of one prompt in rows of at most `limit` tokens (one explanation at least)."""
    rows: list[_Packed] = []
    for key, ids in explanations:
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
    seg = torch.full((len(rows), width), -2, dtype=torch.long)  # -2 padding, -1 prompt, j explanation j
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
    """Sum of -log p(token) over each explanation's tokens, per cache key."""
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


__all__ = ["ANSWER_FEATURES", "BASE_FEATURES", "CONTEXT_FEATURES", "FEATURES", "LikelihoodConfig",
           "LikelihoodScorer", "NllCache", "answer_text", "prompts"]
