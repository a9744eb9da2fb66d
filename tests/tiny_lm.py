"""A tiny random causal LM and a one-token-per-character tokenizer: test doubles for the LM engines
(core.lm_nll, critique.likelihood, retrieval.option_lm) that need no packaged model."""
from __future__ import annotations

from typing import Any


class CharTokenizer:
    """One token per character (ids 2..65): enough to test batching and token bookkeeping."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [2 + ord(c) % 64 for c in text]


def tiny_backend() -> tuple[CharTokenizer, Any]:
    """(tokenizer, 2-layer Llama with random seeded weights), in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=66, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    return CharTokenizer(), LlamaForCausalLM(cfg).eval()
