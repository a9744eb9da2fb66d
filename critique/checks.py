"""Verifier checks on an explanation: evidence a critic head combines (issue 12, part 1).

Every check is computed from what the explanation says, not from how it is written, and per unit
(sentence, numbered step or "; " clause) where it can be, so the main-flaw pointer comes from evidence:

- answer consistency: which option the explanation names (by letter, "(C)", or by text), which option
  its content supports (entailment of each option's hypothesis from the content units), against the
  predicted answer and the key;
- support: does the content entail the predicted answer's hypothesis, whole and without its last
  unit; does each unit follow from the units before it (prefix entailment; the weakest is a suspect);
- fact check (needs knowledge: a microtheory, store or corpus): each unit's nearest fact by cosine,
  then P(fact entails unit) and P(fact entails the unit's negation); the strongest contradiction is
  the `incorrect_information` candidate, its fact cited in the specific advice;
- relevance and redundancy: cosine of each unit to the question + answer and to the question,
  restating the question, repetition between units, length.

Cost control: one encoder call and one entailment-scorer call per batch of records (items from all
rows batched together), cheap lexical checks first (a unit is fact-checked only when its nearest
fact is close enough), retrieval cached per unit text. `fast=True` runs the same checks with lexical
stand-ins (`LexicalEncoder`, `LexicalScorer`: no model at all) and no fact checks; the head has a
separate part trained on those features.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

import numpy as np

from core.errors import ModelError
from critique.inputs import ModelOutput, split_sentences

# --- units ----------------------------------------------------------------------------------------

_NUM_ONLY = re.compile(r"^(?:\(?\d{1,2}[.):]|step\s*\d{1,2}\s*[:.)]?)$", re.I)
_NUM_PREFIX = re.compile(r"^\s*(?:\(?\d{1,2}[.):]|step\s*\d{1,2}\s*[:.)]|[-*\u2022])\s*", re.I)
# A role label before a unit's statement ("Fact: ...", "Premise 2: ...", "Conclusion: ..."), as LM outputs
# and some proof renderings write them: left out of the unit's clean text, so that the fact check
# compares the statement itself with known facts. ("Answer: ..." stays: it marks an answer unit.)
_ROLE_PREFIX = re.compile(r"^\s*(?:fact|premise|evidence|inference|conclusion|intermediate conclusion|reasoning|"
                          r"claim|observation|rule|given)\s*\d{0,2}\s*:\s*", re.I)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""a an the of to in on at by for with from and or but if then than that this these those is are
was were be been being it its as into so such which what when where who how why there their they them can will
would should could may might must do does did has have had one some any each all also only about because not no
most more very""".split())
_CUES = frozenset("answer option choice correct right best pick choose therefore so thus hence".split())
_LETTER_REFS = (r"\(\s*([A-J1-9])\s*\)", r"\b(?:answer|option|choice)\s*(?:is|:|would be|must be)?\s*\(?([A-J1-9])\)?(?![\w'])",
                r"^\s*\(?([A-J1-9])\)?\s*(?:is|are)\s+(?:the\s+)?(?:correct|right|best)\b",
                r"\b(?:pick|choose|select)\s+(?:option\s+)?\(?([A-J1-9])\)?(?![\w'])", r"\bso\s+\(?([A-J1-9])\)?\s+is\b")


@dataclass(frozen=True)
class Unit:
    """One reasoning unit of an explanation: its text, the text without numbering, and the index of
    the `split_sentences` sentence it lies in (what a critique's flaw index refers to)."""

    text: str
    clean: str
    sentence: int


def split_units(text: str) -> list[Unit]:
    """Sentences, with numbered steps ("1. ...", "Step 2: ...") one unit each and "; " clauses split."""
    out: list[Unit] = []
    pending = ""
    for si, sent in enumerate(split_sentences(text)):
        if _NUM_ONLY.match(sent.strip()):
            pending += sent + " "  # "1." split off by the sentence splitter: glue it to its step
            continue
        full = (pending + sent).strip()
        pending = ""
        parts = [p.strip() for p in re.split(r";\s+", full) if p.strip()]
        for p in parts:
            clean = _ROLE_PREFIX.sub("", _NUM_PREFIX.sub("", p)).strip().rstrip(";").strip()
            if clean:
                out.append(Unit(p, clean, si))
    if pending.strip():
        out.append(Unit(pending.strip(), pending.strip(), max(len(split_sentences(text)) - 1, 0)))
    return out


def content_words(text: str) -> set[str]:
    return {w[:7] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def _norm(s: str) -> str:
    return " ".join(_WORD.findall(s.lower()))


def named_options(unit: str, options: dict[str, str]) -> set[str]:
    """Option labels a unit names as the answer: by letter ("(C)", "answer is C") or by text (a short
    unit that is mostly an option's text, or an answer cue plus the option's full text)."""
    found: set[str] = set()
    for pat in _LETTER_REFS:
        for m in re.finditer(pat, unit, re.I):
            lab = m.group(1).upper()
            if lab in options:
                found.add(lab)
    low = _norm(unit)
    words = set(low.split())
    cue = bool(words & _CUES)
    for k, v in options.items():
        nv = _norm(v)
        if not nv or f" {nv} " not in f" {low} ":
            continue
        rest = content_words(low) - content_words(nv) - _CUES
        if cue or len(rest) <= 1:
            found.add(k)
    return found


def is_answer_unit(unit: str, options: dict[str, str]) -> bool:
    """A unit whose job is to name the answer (it names an option and is short or has an answer cue)."""
    named = named_options(unit, options)
    if not named:
        return False
    words = set(_norm(unit).split())
    opt_words = set().union(*(content_words(options[k]) for k in named))
    return bool(words & {"answer", "option", "choice", "correct", "pick", "choose"}) or \
        len(content_words(unit) - opt_words - _CUES) <= 2


def cheap_hypothesis(question: str, option: str) -> str:
    """Question + option as one string for the entailment scorer (its last sentence: the actual ask)."""
    parts = re.split(r"(?<=[.?!])\s+", " ".join(question.split()))
    last = parts[-1] if parts else question
    if re.search(r"_{2,}", last):
        return re.sub(r"_{2,}", option.strip(), last)
    return f"{last.rstrip()} {option.strip()}"


# --- negation for contradiction checks -----------------------------------------------------------

_AUX = re.compile(r"\b(is|are|was|were|can|will|should|does|do|has|have|could|would|may|must)\b( not\b)?", re.I)
_VERB_S = re.compile(r"\b([a-z]{3,}s)\b")


def negated(s: str) -> str:
    """A statement's negation (for 'does a fact entail its opposite?'); crude but style-independent."""
    m = _AUX.search(s)
    if m:
        if m.group(2):
            return s[:m.start()] + m.group(1) + s[m.end():]
        rep = "cannot" if m.group(1).lower() == "can" else m.group(1) + " not"
        return s[:m.start()] + rep + s[m.end():]
    return "it is not true that " + s[:1].lower() + s[1:]


# --- the lexical backends of fast mode -------------------------------------------------------------

class LexicalEncoder:
    """Hashed bag of content words (stop words out, words cut to 7 letters, as `content_words`):
    the cosines of fast mode. No model, thousands of texts a second; it sees shared words only."""

    def __init__(self, dim: int = 512):
        self.dim = dim
        self.name = f"lexical-{dim}"
        self._slots: dict[str, int] = {}

    def _slot(self, w: str) -> int:
        j = self._slots.get(w)
        if j is None:
            j = int.from_bytes(hashlib.blake2b(w.encode("utf-8"), digest_size=4).digest(), "little") % self.dim
            if len(self._slots) < 200_000:
                self._slots[w] = j
        return j

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in content_words(t):
                out[i, self._slot(w)] = 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-9)


class LexicalScorer:
    """Share of the hypothesis's content words found in the premises (fast mode's "entailment")."""

    name = "lexical-overlap"

    def score_batch(self, items: Sequence[tuple[Sequence[str], str]], batch_size: int = 64) -> np.ndarray:
        out = np.zeros(len(items), np.float32)
        for i, (prem, hyp) in enumerate(items):
            h = content_words(hyp)
            p = set().union(*(content_words(x) for x in prem)) if prem else set()
            out[i] = len(h & p) / len(h) if h else 1.0
        return out


# --- knowledge for fact checks ---------------------------------------------------------------------

@dataclass
class FactTable:
    """Facts with unit-normalised embeddings, searched in batch by cosine (a matrix product)."""

    ids: list[str]
    texts: list[str]
    vectors: np.ndarray

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str], encoder: Any) -> FactTable:
        return cls(list(ids), list(texts), encoder.encode(list(texts)).astype(np.float32))

    def top(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(indices, cosines), each (n_queries, k), best first."""
        if not len(self.texts) or not len(queries):
            return np.zeros((len(queries), 0), int), np.zeros((len(queries), 0), np.float32)
        sims = queries @ self.vectors.T
        k = min(k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(sims, idx, 1)
        order = np.argsort(-part, axis=1)
        return np.take_along_axis(idx, order, 1), np.take_along_axis(part, order, 1)


@dataclass
class SearchKnowledge:
    """Knowledge searched through its own index (a store): nearest fact per text, cached per text.
    Takes `search_batch(texts, k)` / `search(text, k)` results as `Hit`s or (Fact, score) pairs."""

    knowledge: Any
    cache: dict[str, tuple[str, str, float] | None] = field(default_factory=dict)

    def top1_many(self, texts: Sequence[str]) -> list[tuple[str, str, float] | None]:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            if hasattr(self.knowledge, "search_batch"):
                results = self.knowledge.search_batch(todo, k=1)
            else:
                results = [self.knowledge.search(t, k=1) for t in todo]
            for t, hits in zip(todo, results):
                self.cache[t] = _hit(hits[0]) if hits else None
        return [self.cache[t] for t in texts]


def _hit(h: Any) -> tuple[str, str, float]:
    f, s = (h.fact, h.score) if hasattr(h, "fact") else h
    return f.id, f.text, float(s)


def as_fact_source(knowledge: Any, encoder: Any) -> FactTable | SearchKnowledge | None:
    """In-memory facts (a microtheory, a facts file) -> a FactTable encoded with the checks' encoder;
    a store (its own index) -> a cached searcher; None -> None."""
    if knowledge is None or isinstance(knowledge, (FactTable, SearchKnowledge)):
        return knowledge
    facts = getattr(knowledge, "facts", None)
    if facts is None and type(knowledge).__name__ != "KnowledgeStore" and hasattr(knowledge, "__iter__"):
        facts = list(knowledge)
    if facts is not None:
        vectors = _own_vectors(knowledge, encoder, len(facts))
        if vectors is not None:
            return FactTable([f.id for f in facts], [f.text for f in facts], vectors)
        return FactTable.build([f.id for f in facts], [f.text for f in facts], encoder)
    return SearchKnowledge(knowledge)


def _own_vectors(knowledge: Any, encoder: Any, n: int) -> np.ndarray | None:
    """In-memory knowledge's own fact vectors (row i = fact i of its iteration) when its encoder is the
    checks' encoder (same name): the facts are not encoded a second time. None otherwise."""
    vectors, own = getattr(knowledge, "vectors", None), getattr(knowledge, "encoder", None)
    if getattr(knowledge, "facts", None) is not None or not callable(vectors) or own is None or \
            getattr(own, "name", None) != getattr(encoder, "name", None):
        return None
    v = np.asarray(vectors(), dtype=np.float32)
    return v if v.ndim == 2 and v.shape[0] == n else None


# --- the checks ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChecksConfig:
    """How much checking to do. `fast`: no models at all (lexical cosines and overlap instead of the
    sentence encoder and the cross-encoder) and no fact checks; a head's `fast` part reads these."""

    fast: bool = False
    max_units: int = 10           # units beyond this are checked lexically only
    max_prefix: int = 2           # prefix-entailment checks for the last this many content units (the conclusions)
    # Entailment of each option's "question + option" string from the content. Off by default: the shipped
    # scorer, trained on EntailmentBank step hypotheses, gives such strings ~0.01 even for gold explanations
    # (measured), and they cost 2-3 cross-encoder calls a record; option support then comes from cosines.
    entail_options: bool = False
    # Score with the head's likelihood part: one SmolLM2-135M pass per explanation (critique.likelihood),
    # ~1 explanation/s on a busy 2-core CPU, so off by default; full mode only.
    lm: bool = False
    min_fact_sim: float = 0.5     # prune: a unit whose nearest fact is further than this is not fact-checked
    batch_size: int = 64
    # The acceptability regressor's predicted accepting share (critique.acceptability): one MiniLM
    # cross-encoder pass per record, batched across the records of a call; full mode only. Switched on
    # by the critic when its head reads it (`ACC_FEATURE`).
    acceptability: bool = False


BASE_GLOBAL_FEATURES = (
    "pred_is_key", "names_option", "named_is_pred", "named_is_key", "named_other", "n_named",
    "cos_pred_is_max", "cos_margin", "cos_expl_pred", "cos_expl_key", "cos_best_other_minus_pred",
    "cover_pred", "cover_key", "cover_question", "novel_words", "restates_question",
    "prefix_min", "prefix_mean", "prefix_last", "rel_min", "rel_mean", "redund_max",
    "n_units", "n_content", "log_words", "has_answer_unit", "answer_unit_last",
    "has_knowledge", "fact_entail", "fact_contra", "fact_exact_share", "fact_sim_min", "fact_suspect_sim",
)
ACC_FEATURE = "acceptability"   # the regressor's output: an optional global feature after DERIVED_FEATURES
# The explanation's kind (head v5), so that the score net can weigh the regressor per kind: the
# regressor was trained on free-text explanations (CommonsenseQA, SNLI) and tracks their human
# acceptability, while on EntailmentBank-style proofs it is weak (AUROC 0.59 on the T5 proofs). Proofs
# close with a unit whose job is to name the answer (`is_answer_unit`: "So the answer is (A) ..."; every
# T5 row, 82% of the recipes' rows), free-text explanations rarely have one (1% of the CommonsenseQA
# acceptability rows, none of SNLI's): FREE_TEXT_FEATURE = 1 - has_answer_unit, and ACC_BY_KIND_FEATURE
# = the regressor's output on free text, 0 otherwise (an interaction term: the linear score net then has
# one regressor weight per kind). A free-text explanation that ends by naming its answer counts as a proof.
FREE_TEXT_FEATURE = "free_text"
ACC_BY_KIND_FEATURE = "acceptability_x_free_text"
EXTRA_FEATURES = (ACC_FEATURE, FREE_TEXT_FEATURE, ACC_BY_KIND_FEATURE)   # what a head's extra_features may name
BASE_UNIT_FEATURES = (
    "position", "is_first", "is_last", "is_answer", "prefix_entail", "prefix_low", "rel_qa", "rel_q",
    "rel_low", "redund", "overlap_q", "names_option", "fact_entail", "fact_contra", "fact_sim", "fact_diff",
    "fact_exact", "log_words", "is_weakest_prefix", "is_least_relevant", "is_suspect",
)
# Text evidence (`evidence`, head v4), from texts alone (no model), so cached checks get it from their
# stored units and nearest facts (`with_evidence`):
# - altered_vs_fact: a unit restates its nearest known fact with its polarity flipped, its numbers or its
#   word order changed (swapped arguments), or a word or two replaced by one nothing else in the
#   explanation mentions (a gold conclusion also differs from a fact in a word or two, but its words come
#   from its premises);
# - contra_vs_context: a unit restates another unit of the explanation with the polarity flipped or the
#   word order inverted;
# - ungrounded: content words no other unit, the question or the options mention;
# - final_names_pred / _other: does the last non-answer unit (the final conclusion) name the predicted
#   option, or another one more?
EVIDENCE_UNIT_FEATURES = ("altered_vs_fact", "contra_vs_context", "ungrounded_share")
EVIDENCE_GLOBAL_FEATURES = ("altered_vs_fact_any", "contra_vs_context_max", "ungrounded_max", "ungrounded_share_all",
                            "final_names_pred", "final_names_other")
GLOBAL_FEATURES = BASE_GLOBAL_FEATURES + EVIDENCE_GLOBAL_FEATURES
UNIT_FEATURES = BASE_UNIT_FEATURES + EVIDENCE_UNIT_FEATURES


@dataclass
class RecordChecks:
    """The checks of one record: global features, per-unit features, units, and the cited fact candidate."""

    units: list[Unit]
    g: np.ndarray                       # len(GLOBAL_FEATURES)
    u: np.ndarray                       # (n_units, len(UNIT_FEATURES))
    near_fact: list[tuple[str, str] | None] = field(default_factory=list)   # per unit: nearest (fact id, text)
    supported_option: str | None = None
    # ACC_FEATURE (ChecksConfig.acceptability); None when not computed (fast mode, or off). Kept out of
    # `g` so that feature vectors computed before it existed stay valid.
    acceptability: float | None = None

    def named(self) -> dict[str, float]:
        return dict(zip(GLOBAL_FEATURES, map(float, self.g)))


@dataclass
class _Prep:
    """What one record needs before the expensive calls."""

    rec: ModelOutput
    units: list[Unit]
    content: list[int]          # indices of non-answer units (all when every unit names the answer)
    answer_units: list[int]
    named: set[str]
    hyps: dict[str, str]


def _prepare(r: ModelOutput, cfg: ChecksConfig) -> _Prep:
    units = split_units(r.explanation) or [Unit(r.explanation, r.explanation, 0)]
    ans = [i for i, u in enumerate(units) if is_answer_unit(u.clean, r.options)]
    content = [i for i in range(len(units)) if i not in ans] or list(range(len(units)))
    named: set[str] = set()
    for i in ans:
        named |= named_options(units[i].clean, r.options)
    hyps = {k: cheap_hypothesis(r.question, v) for k, v in r.options.items()}
    return _Prep(r, units, content[: cfg.max_units], ans, named, hyps)


class Checker:
    """Runs the checks over batches of records. `scorer`/`encoder` default to the shipped ones."""

    def __init__(self, scorer: Any = None, encoder: Any = None, knowledge: Any = None,
                 config: ChecksConfig | None = None):
        self.config = config or ChecksConfig()
        self._scorer = scorer
        self._encoder = encoder
        self._knowledge = knowledge
        self._facts: FactTable | SearchKnowledge | None = None
        self._vec_cache: dict[str, np.ndarray] = {}
        self._acc: Any = None   # the acceptability regressor, loaded on first use

    @property
    def scorer(self) -> Any:
        if self._scorer is None and self.config.fast:
            self._scorer = LexicalScorer()
        if self._scorer is None:
            from retrieval.entail import load_scorer

            self._scorer = load_scorer()
        return self._scorer

    @property
    def encoder(self) -> Any:
        if self._encoder is None and self.config.fast:
            self._encoder = LexicalEncoder()
        if self._encoder is None:
            from retrieval.encoder import get_encoder

            self._encoder = get_encoder()
        return self._encoder

    @property
    def facts(self) -> FactTable | SearchKnowledge | None:
        if self._facts is None and self._knowledge is not None and not self.config.fast:
            self._facts = as_fact_source(self._knowledge, self.encoder)
        return self._facts

    def run(self, records: Sequence[ModelOutput]) -> list[RecordChecks]:
        """The checks of each record, in order (one encoder pass and one scorer pass for the batch)."""
        preps = [_prepare(r, self.config) for r in records]
        emb = self._embed(preps)
        fact_hits = self._retrieve(preps, emb)
        items, where = self._scorer_items(preps, emb, fact_hits)
        probs = self.scorer.score_batch(items, batch_size=self.config.batch_size) if items else np.zeros(0)
        got = {key: float(probs[i]) for key, i in where.items()}
        out = [_assemble(p, emb[n], fact_hits.get(n, {}), got, n, self.facts is not None)
               for n, p in enumerate(preps)]
        if self.config.acceptability and not self.config.fast and out:
            for c, v in zip(out, self.acceptability_scorer.score(records, batch_size=self.config.batch_size)):
                c.acceptability = float(v)
        return out

    @property
    def acceptability_scorer(self) -> Any:
        if self._acc is None:
            from critique.acceptability import load_acceptability

            self._acc = load_acceptability()
        return self._acc

    def _embed(self, preps: Sequence[_Prep]) -> list[dict[str, Any]]:
        """Unit, question and option vectors (texts embedded once per batch, cached across batches);
        the content vector is the normalised mean of the content units'."""
        need = {t for p in preps for t in [u.clean for u in p.units] + [p.rec.question, *p.rec.options.values()]}
        new = [t for t in need if t not in self._vec_cache]
        if new:
            for t, v in zip(new, self.encoder.encode(new, batch_size=self.config.batch_size)):
                self._vec_cache[t] = v
        if len(self._vec_cache) > 200_000:
            self._vec_cache.clear()
        out = []
        for p in preps:
            units = np.stack([self._vec_cache[u.clean] for u in p.units])
            c = units[p.content].mean(0)
            out.append({"units": units, "question": self._vec_cache[p.rec.question],
                        "content": c / max(float(np.linalg.norm(c)), 1e-9),
                        "options": {k: self._vec_cache[v] for k, v in p.rec.options.items()}})
        return out

    def _retrieve(self, preps: Sequence[_Prep], emb: Sequence[dict[str, Any]]) -> dict[int, dict[int, tuple]]:
        """record -> unit -> (fact id, fact text, cosine) of the nearest fact, for content units."""
        src = self.facts
        if src is None:
            return {}
        out: dict[int, dict[int, tuple]] = {}
        if isinstance(src, FactTable):
            rows = [(n, i) for n, p in enumerate(preps) for i in p.content]
            if not rows:
                return {}
            q = np.stack([emb[n]["units"][i] for n, i in rows])
            idx, sims = src.top(q, 1)
            for (n, i), ix, s in zip(rows, idx, sims):
                if len(ix):
                    out.setdefault(n, {})[i] = (src.ids[ix[0]], src.texts[ix[0]], float(s[0]))
            return out
        rows = [(n, i) for n, p in enumerate(preps) for i in p.content]
        for (n, i), hit in zip(rows, src.top1_many([preps[n].units[i].clean for n, i in rows])):
            if hit is not None:
                out.setdefault(n, {})[i] = hit
        return out

    def _scorer_items(self, preps: Sequence[_Prep], emb: Sequence[dict[str, Any]],
                      fact_hits: dict[int, dict[int, tuple]]) -> tuple[list[tuple[list[str], str]], dict[tuple, int]]:
        items: list[tuple[list[str], str]] = []
        where: dict[tuple, int] = {}

        def add(key: tuple, premises: list[str], hyp: str) -> None:
            if key not in where and premises and hyp.strip():
                where[key] = len(items)
                items.append((premises, hyp))

        for n, p in enumerate(preps):
            r, content = p.rec, [p.units[i].clean for i in p.content]
            pred = r.predicted_answer if r.predicted_answer in r.options else None
            sims = {k: float(emb[n]["content"] @ v) for k, v in emb[n]["options"].items()}
            others = sorted((k for k in r.options if k != pred), key=lambda k: -sims[k])
            if self.config.entail_options:
                for k in sorted({pred, r.answer_key, *(others[:1])} - {None}):
                    add((n, "opt", k), content, p.hyps[k])
            for j in range(max(1, len(content) - self.config.max_prefix), len(content)):
                add((n, "prefix", p.content[j]), content[:j], content[j])
            sus = _suspect(p, fact_hits.get(n, {}), self.config.min_fact_sim)
            if sus is not None:
                ftext = fact_hits[n][sus][1]
                add((n, "fent", sus), [ftext], p.units[sus].clean)
                add((n, "fcon", sus), [ftext], negated(p.units[sus].clean))
        return items, where


def fact_diff(unit: str, fact: str) -> int:
    """Content words in one but not the other, plus one when exactly one of the two is negated: 0 for a
    fact restated, 1-3 for a fact altered. (Negation words are stop words, so without the polarity
    term "x is not y" read as restating the known fact "x is y": counted exact, never fact-checked.)"""
    u = _strip_lead(unit)
    return len(content_words(u) ^ content_words(fact)) + int(_Statement.of(u).polarity != _Statement.of(fact).polarity)


_LEAD = re.compile(r"^(?:so|thus|therefore|hence|then|also|and|because|since|as a result|this means that|"
                   r"we know that|recall that|note that|it follows that|in addition|first|consequently),?\s+", re.I)


def _strip_lead(s: str) -> str:
    return _LEAD.sub("", s.strip())


def _suspect(p: _Prep, hits: dict[int, tuple], min_sim: float) -> int | None:
    """The content unit most like an altered fact: close to a known fact but not the same words."""
    best, arg = 0.0, None
    for i, (_, ftext, sim) in hits.items():
        d = fact_diff(p.units[i].clean, ftext)
        if sim >= min_sim and d > 0:
            v = sim / (1 + 0.3 * max(d - 1, 0))
            if v > best:
                best, arg = v, i
    return arg


def _cover(part: set[str], whole: set[str]) -> float:
    return len(part & whole) / len(part) if part else 0.0


def _assemble(p: _Prep, e: dict[str, Any], hits: dict[int, tuple], got: dict[tuple, float], n: int,
              has_knowledge: bool) -> RecordChecks:
    r = p.rec
    units, nu = p.units, len(p.units)
    pred = r.predicted_answer if r.predicted_answer in r.options else None
    sims = {k: float(e["content"] @ v) for k, v in e["options"].items()}
    opt_sup = {k: got[(n, "opt", k)] for k in r.options if (n, "opt", k) in got}
    supported = max(opt_sup or sims, key=lambda k: (opt_sup or sims)[k]) if (opt_sup or sims) else None
    qa = e["options"].get(pred) if pred else e["question"]
    rel_qa = e["units"] @ qa
    rel_q = e["units"] @ e["question"]
    uu = e["units"] @ e["units"].T if nu > 1 else np.zeros((1, 1))
    np.fill_diagonal(uu, -1.0)
    redund = uu.max(1) if nu > 1 else np.zeros(1)
    prefix = np.array([got.get((n, "prefix", i), np.nan) for i in range(nu)])
    fent = np.array([got.get((n, "fent", i), np.nan) for i in range(nu)])
    fcon = np.array([got.get((n, "fcon", i), np.nan) for i in range(nu)])
    fsim = np.array([hits[i][2] if i in hits else 0.0 for i in range(nu)], float)
    qw = content_words(r.question)
    ow = set().union(*(content_words(v) for v in r.options.values())) if r.options else set()
    ew = set().union(*(content_words(units[i].clean) for i in p.content))
    n_words = len(r.explanation.split())
    content_mask = np.zeros(nu, bool)
    content_mask[p.content] = True
    pre_c = prefix[content_mask & ~np.isnan(prefix)]
    rel_c = rel_qa[content_mask]
    checked = ~np.isnan(fent)
    diff = np.array([fact_diff(units[i].clean, hits[i][1]) if i in hits else 9 for i in range(nu)], float)
    exact = (diff == 0) & (fsim >= 0.8)
    sus = int(np.flatnonzero(checked)[0]) if checked.any() else -1
    g = [
        float(pred == r.answer_key), float(bool(p.named)), float(pred in p.named), float(r.answer_key in p.named),
        float(bool(p.named - {pred})), float(len(p.named)),
        float(bool(sims) and pred == max(sims, key=lambda k: sims[k])),
        (sims.get(pred, 0.0) - max((v for k, v in sims.items() if k != pred), default=0.0)) if pred else 0.0,
        sims.get(pred, 0.0) if pred else 0.0, sims.get(r.answer_key, 0.0),
        max((v for k, v in sims.items() if k != pred), default=0.0) - (sims.get(pred, 0.0) if pred else 0.0),
        _cover(content_words(r.options.get(pred, "")) if pred else set(), ew),
        _cover(content_words(r.options.get(r.answer_key, "")), ew), _cover(qw, ew),
        1.0 - _cover(ew, qw | ow) if ew else 0.0,
        float(max(_jaccard(content_words(units[i].clean), qw) for i in p.content)),
        float(pre_c.min()) if len(pre_c) else 1.0, float(pre_c.mean()) if len(pre_c) else 1.0,
        float(pre_c[-1]) if len(pre_c) else 1.0,
        float(rel_c.min()), float(rel_c.mean()), float(redund.max()),
        min(nu, 15) / 5.0, min(len(p.content), 15) / 5.0, float(np.log1p(n_words)),
        float(bool(p.answer_units)), float(bool(p.answer_units) and p.answer_units[-1] == nu - 1),
        float(has_knowledge),
        _nz(fent[sus], 1.0) if sus >= 0 else 1.0, _nz(fcon[sus], 0.0) if sus >= 0 else 0.0,
        float(exact[content_mask].mean()) if has_knowledge else 0.0,
        float(fsim[content_mask].min()) if has_knowledge else 0.0,
        float(fsim[sus]) if sus >= 0 else 0.0,
    ]
    weakest = int(np.nanargmin(np.where(content_mask, prefix, np.nan))) if len(pre_c) else -1
    least_rel = int(np.argmin(np.where(content_mask, rel_qa, 9.0)))
    u = np.zeros((nu, len(BASE_UNIT_FEATURES)), np.float32)
    for i in range(nu):
        u[i] = [i / max(nu - 1, 1), float(i == 0), float(i == nu - 1), float(i in p.answer_units),
                _nz(prefix[i], 1.0), float(_nz(prefix[i], 1.0) < 0.5), float(rel_qa[i]), float(rel_q[i]),
                float(rel_qa[i] < rel_c.mean() - 0.1), float(redund[i]),
                _jaccard(content_words(units[i].clean), qw), float(bool(named_options(units[i].clean, r.options))),
                _nz(fent[i], 0.5), _nz(fcon[i], 0.0), float(fsim[i]), min(float(diff[i]), 9.0) / 3.0,
                float(exact[i]), float(np.log1p(len(units[i].clean.split()))), float(i == weakest),
                float(i == least_rel), float(i == sus)]
    facts = [(hits[i][0], hits[i][1]) if i in hits else None for i in range(nu)]
    ev_g, ev_u = evidence(p, facts)
    return RecordChecks(units, np.concatenate([np.array(g, np.float32), ev_g]), np.hstack([u, ev_u]), facts, supported)


# --- text evidence: polarity, argument order, numbers, grounding (no model) -------------------------------

_NEG = frozenset("not no never none nothing nobody neither nor without".split())
_TOKEN = re.compile(r"[a-z0-9]+")
_SYNONYMS = {"type": "kind", "sort": "kind"}   # "x is a type (form) of y" restates "x is a kind of y"
_MATCH = 0.5        # content-word Jaccard from which two statements are "the same statement, maybe altered"
_SMALL_EDIT = 4     # content words changed (both sides, fact parts left out included) for "a small edit"


@dataclass(frozen=True)
class _Statement:
    """A statement as the evidence checks compare it: content words in order (cut to 7 letters,
    numbers kept whatever their length), their set, polarity (negation words mod 2), numbers."""

    seq: tuple[str, ...]
    words: frozenset[str]
    polarity: int
    numbers: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Statement:
        low = _strip_lead(text).lower().replace("n't", " not").replace("cannot", "can not").replace(" form of ", " kind of ")
        toks = _TOKEN.findall(low)
        seq = tuple(_stem(t) for t in toks if t[0].isdigit() or (t not in _STOP and len(t) > 2))
        return cls(seq, frozenset(seq), sum(t in _NEG for t in toks) % 2,
                   frozenset(t for t in toks if t[0].isdigit()))


def _stem(w: str) -> str:
    """A word as the evidence checks compare it: synonyms merged, plural "s" off, cut to 7 letters."""
    w = _SYNONYMS.get(w, w)
    return (w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)[:7]


def _jac(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def inverted_share(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of the pairs of words that occur once in each statement whose order differs between
    them: 1.0 for "x is a kind of y" vs "y is a kind of x", 0.0 for the same order."""
    once = [w for w in a if a.count(w) == 1 and b.count(w) == 1]
    pb = {w: b.index(w) for w in once}
    pairs = [(x, y) for i, x in enumerate(once) for y in once[i + 1:]]
    return sum(pb[x] > pb[y] for x, y in pairs) / len(pairs) if pairs else 0.0


@dataclass(frozen=True)
class _Diff:
    """How a statement differs from a reference that is "the same statement" (or None when it is not)."""

    polarity: bool
    numbers: bool
    inverted: float
    changed: int             # content words edited inside the aligned span + reference words left out
    inserted: frozenset[str]  # the statement's words inside the aligned span that the reference lacks
    removed: frozenset[str]   # the reference's words the statement lacks


def _diff(s: _Statement, ref: _Statement | None) -> _Diff | None:
    if ref is None or _jac(s.words, ref.words) < _MATCH:
        return None
    blocks = [m for m in SequenceMatcher(None, s.seq, ref.seq, autojunk=False).get_matching_blocks() if m.size]
    matched = sum(m.size for m in blocks)
    a0, a1 = blocks[0].a, blocks[-1].a + blocks[-1].size    # the aligned spans; the statement's words before
    b0, b1 = blocks[0].b, blocks[-1].b + blocks[-1].size    # or after its span are an intro or an extension,
    if b0:                                                   # unless the reference's words there are missing:
        a0, changed = 0, a0 + b0                             # then they replace those (an edit at the edge)
    else:
        changed = 0
    if b1 < len(ref.seq):
        changed, a1 = changed + (len(s.seq) - a1) + (len(ref.seq) - b1), len(s.seq)
    changed += (blocks[-1].a + blocks[-1].size - blocks[0].a - matched) + (b1 - b0 - matched)
    return _Diff(s.polarity != ref.polarity, bool(s.numbers and ref.numbers and s.numbers != ref.numbers),
                 inverted_share(s.seq, ref.seq), changed, frozenset(s.seq[a0:a1]) - ref.words, ref.words - s.words)


def _unsupported_edit(d: _Diff | None, elsewhere: set[str]) -> bool:
    """A small substitution (a word or two of the reference replaced by others) that brings in a word
    nothing else mentions: how a true statement is made false, not how a conclusion restates its
    premises (its new words come from the other premises, and it often only adds or leaves out words)."""
    return d is not None and 1 <= d.changed <= _SMALL_EDIT and bool(d.removed) and bool(d.inserted - elsewhere)


def evidence(p: _Prep, facts: Sequence[tuple[str, str] | None]) -> tuple[np.ndarray, np.ndarray]:
    """EVIDENCE_GLOBAL_FEATURES and (per unit) EVIDENCE_UNIT_FEATURES of one record, from its texts and
    each unit's nearest known fact (None: none retrieved). Content units only; answer units get zeros."""
    st = [_Statement.of(u.clean) for u in p.units]
    asked = _Statement.of(p.rec.question).words.union(*(_Statement.of(v).words for v in p.rec.options.values()))
    u = np.zeros((len(p.units), len(EVIDENCE_UNIT_FEATURES)), np.float32)
    lone_all, words_all = 0, 0
    for i in p.content:
        said = set().union(*(st[j].words for j in range(len(p.units)) if j != i))   # what the rest says
        fact = _Statement.of(facts[i][1]) if i < len(facts) and facts[i] is not None else None
        fd = _diff(st[i], fact)
        near = max((j for j in p.content if j != i), key=lambda j: (_jac(st[i].words, st[j].words), -abs(i - j)),
                   default=None)
        cd = _diff(st[i], st[near]) if near is not None else None
        lone = len(st[i].words - said - asked)
        lone_all, words_all = lone_all + lone, words_all + len(st[i].words)
        u[i] = [float(fd is not None and fd.changed <= _SMALL_EDIT and (fd.polarity or fd.numbers or fd.inverted > 0
                                                                        or _unsupported_edit(fd, said))),
                max(float(cd.polarity), cd.inverted) if cd else 0.0,
                lone / len(st[i].words) if st[i].words else 0.0]
    c = u[p.content] if p.content else np.zeros((1, u.shape[1]), np.float32)
    g = [float(c[:, 0].max()), float(c[:, 1].max()), float(c[:, 2].max()),
         lone_all / words_all if words_all else 0.0, *_final_names(p, st)]
    return np.array(g, np.float32), u


def _final_names(p: _Prep, st: Sequence[_Statement]) -> tuple[float, float]:
    """(share of the predicted option's own words in the explanation's last non-answer unit, the most
    any other option has there minus that): does the final conclusion name what the answer says?"""
    body = [i for i in range(len(p.units)) if i not in p.answer_units]
    pred = p.rec.predicted_answer
    if not body or pred not in p.rec.options:
        return 0.0, 0.0
    words = {k: _Statement.of(v).words for k, v in p.rec.options.items()}
    own = {k: w - frozenset().union(*(x for j, x in words.items() if j != k)) for k, w in words.items()}
    last = st[body[-1]].words
    cover = {k: len(w & last) / len(w) if w else 0.0 for k, w in own.items()}
    return cover[pred], max((v for k, v in cover.items() if k != pred), default=0.0) - cover[pred]


def with_evidence(c: RecordChecks, record: ModelOutput, config: ChecksConfig | None = None) -> RecordChecks:
    """Checks computed before the evidence features existed (base features only), with them added
    from the record's texts and the stored nearest facts: what `Checker.run` computes now."""
    if c.g.shape[-1] == len(GLOBAL_FEATURES) and c.u.shape[-1] == len(UNIT_FEATURES):
        return c
    p = _prepare(record, config or ChecksConfig())
    if [x.clean for x in p.units] != [x.clean for x in c.units]:
        raise ModelError(f"record {record.id}: its units differ from the cached checks' units")
    ev_g, ev_u = evidence(p, c.near_fact)
    return RecordChecks(c.units, np.concatenate([c.g[:len(BASE_GLOBAL_FEATURES)], ev_g]),
                        np.hstack([c.u[:, :len(BASE_UNIT_FEATURES)], ev_u]), c.near_fact, c.supported_option,
                        c.acceptability)


def _nz(x: float, default: float) -> float:
    return default if np.isnan(x) else float(x)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


KNOWLEDGE_DEFAULTS_G = {"has_knowledge": 0.0, "fact_entail": 1.0, "fact_contra": 0.0, "fact_exact_share": 0.0,
                        "fact_sim_min": 0.0, "fact_suspect_sim": 0.0, "altered_vs_fact_any": 0.0}
KNOWLEDGE_DEFAULTS_U = {"fact_entail": 0.5, "fact_contra": 0.0, "fact_sim": 0.0, "fact_diff": 3.0, "fact_exact": 0.0,
                        "is_suspect": 0.0, "altered_vs_fact": 0.0}


def without_knowledge(g: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The features a record would have had with no knowledge given (what `fast` mode computes);
    used to train one head for both modes."""
    g, u = g.copy(), u.copy()
    for k, v in KNOWLEDGE_DEFAULTS_G.items():
        g[..., GLOBAL_FEATURES.index(k)] = v
    for k, v in KNOWLEDGE_DEFAULTS_U.items():
        u[..., UNIT_FEATURES.index(k)] = v
    return g, u


# Features the head derives from the per-unit checks (so they need no new check pass): the fact check's
# "altered fact" signal is a unit very close to a known fact that differs from it in one or two content
# words; conclusions are near facts too but differ in more words. Size features are uncapped and logged
# (real flawed proofs are longer and repeat themselves); "relative" features compare a unit with the
# rest of its own record, which transfers across writing styles better than absolute levels.
DERIVED_FEATURES = ("altered_fact_sim", "altered_fact_count", "near_nonexact_max_sim", "prefix_first_conclusion",
                    "log_units", "log_content_units", "log_total_words", "words_per_unit", "redund_mean",
                    "redund_share_high", "rel_spread", "rel_min_minus_mean", "prefix_low_share",
                    "overlap_q_max", "overlap_q_mean", "named_unit_share", "answer_units")


def unit_altered(u: np.ndarray) -> np.ndarray:
    """Per unit: its nearest fact's cosine when it differs from that fact in 1-2 content words, else 0."""
    sim = u[:, UNIT_FEATURES.index("fact_sim")]
    diff = np.rint(u[:, UNIT_FEATURES.index("fact_diff")] * 3)
    return np.where((diff >= 1) & (diff <= 2), sim, 0.0)


def _col(u: np.ndarray, name: str) -> np.ndarray:
    return u[:, UNIT_FEATURES.index(name)]


def head_input(c: RecordChecks, extra: Sequence[str] = (), knowledge: bool = True) -> np.ndarray:
    """What a head reads for one record: `extend` of its checks (knowledge=False: as without knowledge),
    then the optional features `extra` names, in that order (`EXTRA_FEATURES`)."""
    g, u = (c.g, c.u) if knowledge else without_knowledge(c.g, c.u)
    x = extend(g, u)
    if not extra:
        return x
    free = 1.0 - float(g[GLOBAL_FEATURES.index("has_answer_unit")])
    vals = []
    for name in extra:
        if name == FREE_TEXT_FEATURE:
            vals.append(free)
            continue
        if name not in (ACC_FEATURE, ACC_BY_KIND_FEATURE):
            raise ModelError(f"unknown head feature {name!r} (known: {', '.join(EXTRA_FEATURES)})")
        if c.acceptability is None:
            raise ModelError("this head reads the acceptability feature, and these checks lack it "
                             "(ChecksConfig(acceptability=True), full mode)")
        vals.append(float(c.acceptability) * (free if name == ACC_BY_KIND_FEATURE else 1.0))
    return np.append(x, np.asarray(vals, dtype=x.dtype))


def extend(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Global features + DERIVED_FEATURES for one record (what the head reads)."""
    if not len(u):
        u = np.zeros((1, len(UNIT_FEATURES)), np.float32)
    alt = unit_altered(u)
    sim, exact = _col(u, "fact_sim"), _col(u, "fact_exact")
    pre = _col(u, "prefix_entail")[1:] if len(u) > 1 else np.ones(1)
    content = _col(u, "is_answer") < 0.5
    if not content.any():
        content = np.ones(len(u), bool)
    words = np.expm1(_col(u, "log_words"))
    red, rel, ovq = _col(u, "redund")[content], _col(u, "rel_qa")[content], _col(u, "overlap_q")[content]
    d = [float(alt.max()), float((alt >= 0.85).sum()) / 3.0, float(np.where(exact > 0, 0.0, sim).max()),
         float(pre[0]),
         float(np.log1p(len(u))), float(np.log1p(content.sum())), float(np.log1p(words.sum())),
         float(words[content].mean()) / 10.0, float(red.mean()) if len(u) > 1 else 0.0,
         float((red > 0.8).mean()) if len(u) > 1 else 0.0, float(rel.max() - rel.min()),
         float(rel.min() - rel.mean()), float(_col(u, "prefix_low")[content].mean()),
         float(ovq.max()), float(ovq.mean()), float(_col(u, "names_option").mean()),
         float((~content).sum())]
    return np.concatenate([g, np.array(d, dtype=g.dtype)])
