"""Training and evaluation examples for the entailment scorer, made from entailment trees.

Recipe (docs/entailment.md):
- positives: each step's premises -> its conclusion ("step"), and all leaves -> hypothesis ("leaves",
  trees with more than one step);
- hard negatives, for each positive (only the kinds that apply):
  "drop": one needed premise removed (steps with 2+ premises);
  "swap_distractor": one premise replaced by a distractor of the same item (task 2 / dev metadata);
  "swap_neighbour": one premise replaced by its nearest WorldTree corpus sentence (MiniLM cosine
      below `max_sim`, not a sentence of the tree);
  "other_conclusion": the conclusion replaced by the nearest conclusion of another tree of the same
      split (similar topic, cosine below `max_sim`);
  "negated": the conclusion negated (spaCy: `not` after the auxiliary, or `does not` + lemma; an
      existing negation is removed);
  "reversed": the arguments of an asymmetric relation swapped (`A causes B` -> `B causes A`), or an
      antonym swapped in (`increases` -> `decreases`).
  Then up to `neg_per_pos` of the available negatives are kept per positive (seeded), and premise
  order is shuffled (seeded) so that order carries no signal.
- harder negatives (`DataConfig.harder`, recipe v2; the v1 examples are unchanged without it):
  "swapped_args": the conclusion's subject and object swapped (spaCy parse; any relation, not
      only the asymmetric list of "reversed": `the sun heats the earth` -> `the earth heats the sun`);
  "reversed_premise": one premise reversed (the same rewrite as "reversed"), conclusion kept;
  "later_conclusion": a step's premises with the conclusion of a later step that builds on it
      (a neighbour of the hypothesis that needs one more premise);
  and one premise missing from a two-premise step ("drop") is always kept.

Everything is deterministic for a given seed, trees and encoder.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microtheory.trees import EntailmentTree
from retrieval.entail_train import EntailExample

NEGATIVE_KINDS = ("drop", "swap_distractor", "swap_neighbour", "other_conclusion", "negated", "reversed")

# Relations whose arguments cannot be swapped without changing the meaning (not `means`, not `and`).
_ASYMMETRIC = (" is a kind of ", " is a part of ", " are a part of ", " are a kind of ", " causes ", " cause ",
               " contains ", " contain ", " produces ", " produce ", " requires ", " require ",
               " is made of ", " are made of ", " eats ", " eat ", " orbits ", " is a source of ",
               " is located in ", " is a property of ", " converts ", " is used for ")
_ANTONYMS = {
    "increase": "decrease", "increases": "decreases", "increased": "decreased", "increasing": "decreasing",
    "more": "less", "higher": "lower", "high": "low", "larger": "smaller", "large": "small",
    "bigger": "smaller", "big": "small", "greater": "less", "warmer": "cooler", "hotter": "colder",
    "hot": "cold", "warm": "cool", "faster": "slower", "fast": "slow", "longer": "shorter", "long": "short",
    "heavier": "lighter", "stronger": "weaker", "strong": "weak", "positive": "negative", "north": "south",
    "east": "west", "absorb": "reflect", "absorbs": "reflects", "gain": "lose", "gains": "loses",
    "above": "below", "before": "after", "most": "least", "maximum": "minimum", "easier": "harder",
    "easy": "difficult", "good": "bad", "helpful": "harmful", "positively": "negatively", "living": "nonliving",
    "renewable": "nonrenewable", "solid": "gas", "liquid": "solid", "day": "night", "summer": "winter",
    "add": "remove", "adds": "removes", "attract": "repel", "attracts": "repels", "inherited": "learned",
    "same": "different", "similar": "different", "many": "few", "always": "never", "beneficial": "harmful",
    "dark": "light", "open": "closed", "rough": "smooth", "wet": "dry", "high-pitched": "low-pitched",
}
_ANTONYMS.update({v: k for k, v in list(_ANTONYMS.items()) if v not in _ANTONYMS})
_NEGATION = re.compile(r"\b(not|never|n't|cannot|no longer)\b")
_AUX_WORDS = {"is", "are", "was", "were", "can", "could", "will", "would", "should", "may", "might", "must",
              "has", "have", "had", "does", "do", "did"}


@dataclass(frozen=True)
class DataConfig:
    """Knobs of the recipe; recorded beside the data and in the model card."""

    seed: int = 13
    neg_per_pos: int = 2
    max_sim: float = 0.9     # neighbours / other conclusions at least this similar are treated as paraphrases
    min_sim: float = 0.3     # ... and below this they are too easy to be worth a slot
    neighbours: int = 10     # corpus neighbours looked at per premise
    leaves_positive: bool = True
    harder: bool = False     # add the harder kinds (swapped_args, reversed_premise, later_conclusion)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def norm(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(" .")


# --------------------------------------------------------------------------------------------
# Rule-based rewrites of a conclusion


def get_nlp() -> Any:
    """The packaged spaCy English pipeline (parser + lemmatiser), loaded once (`core.models`)."""
    from core.models import load_spacy

    return load_spacy(disable=("ner",))


def negate(text: str, doc: Any | None = None) -> str | None:
    """The sentence with its main claim negated, or None when no rule applies.

    An existing negation is removed; else `not` goes after the first auxiliary of the root verb; else
    the root verb becomes `does not` / `do not` / `did not` + lemma.
    """
    t = " ".join(text.split())
    if _NEGATION.search(t):
        out = re.sub(r"\bcannot\b", "can", t)
        out = re.sub(r"\bdoes not\s+|\bdo not\s+|\bdid not\s+", "", out) if out == t else out
        out = re.sub(r"\s*\b(not|never|no longer)\b", "", out) if out == t else out
        out = re.sub(r"n't\b", "", out) if out == t else out
        out = " ".join(out.split())
        return out if out != t else None
    if doc is None:
        doc = get_nlp()(t)
    root = next((tok for tok in doc if tok.dep_ == "ROOT"), None)
    if root is None:
        return None
    aux = [c for c in root.children if c.dep_ in ("aux", "auxpass") and c.i < root.i]
    if root.lemma_ == "be" or root.pos_ == "AUX":
        target = root
    elif aux:
        target = aux[0]
    else:
        target = None
    words = [tok.text_with_ws for tok in doc]
    if target is not None:
        if target.lower_ not in _AUX_WORDS:
            return None
        words[target.i] = target.text + " not" + target.whitespace_
    elif root.pos_ == "VERB":
        if root.tag_ == "VBZ":
            do = "does not "
        elif root.tag_ == "VBD":
            do = "did not "
        elif root.tag_ in ("VBP", "VB"):
            do = "do not "
        else:
            return None
        words[root.i] = do + root.lemma_ + root.whitespace_
    else:
        return None
    out = "".join(words).strip()
    return out if out != t else None


def reverse(text: str, rng: random.Random) -> str | None:
    """Swap the arguments of an asymmetric relation, else swap in an antonym; None when neither applies."""
    t = " ".join(text.split())
    low = f" {t.lower()} "
    for rel in _ASYMMETRIC:
        i = low.find(rel)
        if i > 0:
            a, b = low[:i].strip(), low[i + len(rel):].strip()
            if a and b and a != b and len(b.split()) <= 12:
                return f"{b}{rel}{a}"
    words = t.split()
    slots = [i for i, w in enumerate(words) if w.lower() in _ANTONYMS]
    if slots:
        i = rng.choice(slots)
        words[i] = _ANTONYMS[words[i].lower()]
        return " ".join(words)
    return None


_SYMMETRIC = re.compile(r"\b(and|similar|same|equal|equals|both|each other|different|differ|as)\b")


def swap_arguments(text: str, doc: Any | None = None) -> str | None:
    """The root verb's subject and object (or prepositional object) swapped; None when the parse has
    no such pair or the relation reads as symmetric (`and`, `same`, `similar`, `equal`, `as`)."""
    t = " ".join(text.split())
    if _SYMMETRIC.search(t.lower()):
        return None
    if doc is None or doc.text != t:
        doc = get_nlp()(t)
    root = next((tok for tok in doc if tok.dep_ == "ROOT"), None)
    if root is None:
        return None
    subj = next((c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")), None)
    obj = next((c for c in root.children if c.dep_ in ("dobj", "attr", "oprd")), None)
    if obj is None:
        preps = [c for c in root.children if c.dep_ == "prep" and c.i > root.i]
        obj = next((g for p in preps for g in p.children if g.dep_ == "pobj"), None)
    if subj is None or obj is None:
        return None
    a = doc[subj.left_edge.i:subj.right_edge.i + 1]
    b = doc[obj.left_edge.i:obj.right_edge.i + 1]
    if not (a.end <= root.i < b.start) or len(a) > 8 or len(b) > 8 or norm(a.text) == norm(b.text):
        return None
    out = t[:a.start_char] + b.text + t[a.end_char:b.start_char] + a.text + t[b.end_char:]
    return out if norm(out) != norm(t) else None


# --------------------------------------------------------------------------------------------
# Embedding look-ups (corpus neighbours, conclusions of other trees)


class TfidfEncoder:
    """Word + bigram TF-IDF vectors (rows L2-normalised, sparse), fitted on the texts it first encodes.

    The fast default for the recipe's look-ups on a CPU: neighbours that share words are exactly
    the hard negatives an overlap-minded scorer confuses. Not an `Encoder` for stores.
    """

    name = "tfidf"

    def __init__(self) -> None:
        self._vec: Any = None

    def fit(self, texts: Sequence[str]) -> TfidfEncoder:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, stop_words="english")
        self._vec.fit(list(texts))
        return self

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> Any:
        if self._vec is None:
            self.fit(texts)
        return self._vec.transform(list(texts))  # rows are L2-normalised by default


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


class _Embeddings:
    """Normalised vectors for a fixed list of texts; dense ones cached on disk by content hash."""

    def __init__(self, encoder: Any, texts: Sequence[str], cache_dir: Path | None, tag: str):
        self.texts = list(texts)
        self.index = {norm(t): i for i, t in enumerate(self.texts)}
        key = hashlib.sha1(("\n".join(self.texts) + "|" + getattr(encoder, "name", "?")).encode()).hexdigest()[:16]
        sparse = isinstance(encoder, TfidfEncoder)
        path = cache_dir / f"{tag}-{key}.npy" if cache_dir and not sparse else None
        if path is not None and path.is_file():
            self.vecs: Any = np.load(path)
        else:
            self.vecs = encoder.encode(self.texts, batch_size=128, progress=len(self.texts) > 2000)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, self.vecs)
                tmp.replace(path)

    def rows(self, texts: Sequence[str]) -> Any:
        idx = [self.index[norm(t)] for t in texts]
        return self.vecs[idx]

    def sims(self, texts: Sequence[str], other: _Embeddings) -> np.ndarray:
        """Cosine similarities, len(texts) x len(other.texts), dense."""
        return _dense(self.rows(texts) @ other.vecs.T)


def _make_encoder(encoder: Any) -> Any:
    """"tfidf"/None -> a fresh TfidfEncoder; another name -> `get_encoder` ("minilm" = the packaged MiniLM)."""
    if encoder is None or encoder == "tfidf":
        return TfidfEncoder()
    if isinstance(encoder, str):
        from retrieval.encoder import get_encoder

        return get_encoder(None if encoder == "minilm" else encoder)
    return encoder


@dataclass(frozen=True)
class _Positive:
    tree: EntailmentTree
    ids: list[str]        # premise ids
    texts: list[str]      # premise texts
    conclusion: str
    kind: str             # "step" | "leaves"
    conclusion_id: str = ""


def _positives(trees: Sequence[EntailmentTree], cfg: DataConfig) -> list[_Positive]:
    out: list[_Positive] = []
    for t in trees:
        for s in t.steps:
            out.append(_Positive(t, list(s.premises), [t.text(p) for p in s.premises], t.text(s.conclusion),
                                 "step", s.conclusion))
        if cfg.leaves_positive and len(t.steps) > 1:
            out.append(_Positive(t, list(t.leaves), t.leaf_texts(), t.hypothesis, "leaves", "hypothesis"))
    return out


@dataclass
class _Lookups:
    """Everything the negatives look up: corpus neighbours, other trees' conclusions, spaCy parses."""

    corpus: list[str]
    tvec: _Embeddings
    concl_texts: list[str]
    concl_tree: np.ndarray
    concl_mat: Any
    neigh: dict[str, list[tuple[int, float]]]
    docs: dict[str, Any]


def _lookups(trees: Sequence[EntailmentTree], positives: list[_Positive], corpus: Sequence[str], enc: Any,
             cfg: DataConfig, cdir: Path | None) -> _Lookups:
    corpus_list = list(dict.fromkeys(" ".join(c.split()) for c in corpus if c.strip()))
    tree_texts = sorted({x for p in positives for x in (*p.texts, p.conclusion)})
    if isinstance(enc, TfidfEncoder):
        enc.fit(corpus_list + tree_texts)
    cvec = _Embeddings(enc, corpus_list, cdir, "corpus")
    tvec = _Embeddings(enc, tree_texts, cdir, "trees")
    # conclusions of each tree (for "other_conclusion"), matrix over all of them
    pairs = [(t.text(s.conclusion), t.id) for t in trees for s in t.steps]
    concl_texts = [c for c, _ in pairs]
    concl_mat = tvec.rows(concl_texts) if concl_texts else None
    # corpus neighbours for every premise text at once
    prem_texts = sorted({x for p in positives for x in p.texts})
    neigh: dict[str, list[tuple[int, float]]] = {}
    k = min(cfg.neighbours + 1, len(corpus_list))
    for start in range(0, len(prem_texts), 512):
        sims = tvec.sims(prem_texts[start:start + 512], cvec)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.argsort(-sims, axis=1)
        for r, row in enumerate(top):
            row = row[np.argsort(-sims[r, row])]
            neigh[prem_texts[start + r]] = [(int(j), float(sims[r, j])) for j in row]
    # spaCy parses of all conclusions, batched
    concls = sorted({p.conclusion for p in positives})
    docs = dict(zip(concls, get_nlp().pipe(concls, batch_size=256)))
    return _Lookups(corpus_list, tvec, concl_texts, np.asarray([t for _, t in pairs]), concl_mat, neigh, docs)


def _negatives(pos: _Positive, lk: _Lookups, cfg: DataConfig, rng: random.Random,
               distractors: dict[str, list[str]] | None) -> list[EntailExample]:
    """The recipe's original six kinds (module docstring), in a fixed order of random draws."""
    t, ptexts, concl = pos.tree, pos.texts, pos.conclusion
    tree_norm = {norm(x) for x in t.sentences.values()} | {norm(t.hypothesis)}

    def ex(premises: Sequence[str], hyp: str, kind: str) -> EntailExample:
        return EntailExample(_shuffled(premises, rng), hyp, 0, kind, tree_id=t.id)

    cands: list[EntailExample] = []
    if len(ptexts) >= 2:  # drop a needed premise
        i = rng.randrange(len(ptexts))
        cands.append(ex(ptexts[:i] + ptexts[i + 1:], concl, "drop"))
    dis = (distractors or {}).get(t.id) if distractors is not None else _tree_distractors(t)
    if dis:  # swap a premise for a distractor of the same item
        i = rng.randrange(len(ptexts))
        d = rng.choice(dis)
        cands.append(ex(ptexts[:i] + [d] + ptexts[i + 1:], concl, "swap_distractor"))
    # swap a premise for its nearest corpus neighbour (hardest first: the nearest that is no paraphrase)
    order = list(range(len(ptexts)))
    rng.shuffle(order)
    for i in order:
        pick = next((j for j, s in lk.neigh.get(ptexts[i], [])
                     if cfg.min_sim <= s < cfg.max_sim and norm(lk.corpus[j]) not in tree_norm), None)
        if pick is not None:
            cands.append(ex(ptexts[:i] + [lk.corpus[pick]] + ptexts[i + 1:], concl, "swap_neighbour"))
            break
    if lk.concl_mat is not None:  # the nearest conclusion of another tree
        sims = _dense(lk.tvec.rows([concl]) @ lk.concl_mat.T)[0]
        sims[lk.concl_tree == t.id] = -1.0
        for j in np.argsort(-sims)[:20]:
            sim = float(sims[j])
            if sim < cfg.min_sim:
                break
            if sim < cfg.max_sim and norm(lk.concl_texts[j]) not in tree_norm:
                cands.append(ex(ptexts, lk.concl_texts[int(j)], "other_conclusion"))
                break
    neg = negate(concl, lk.docs.get(concl))
    if neg:
        cands.append(ex(ptexts, neg, "negated"))
    rev = reverse(concl, rng)
    if rev and norm(rev) != norm(concl):
        cands.append(ex(ptexts, rev, "reversed"))
    return cands


def _harder_negatives(pos: _Positive, lk: _Lookups, rng: random.Random) -> list[EntailExample]:
    """The kinds added for the stronger scorer (`DataConfig.harder`): see the module docstring."""
    t, ptexts, concl = pos.tree, pos.texts, pos.conclusion
    out: list[EntailExample] = []
    swapped = swap_arguments(concl, lk.docs.get(concl))
    if swapped and norm(swapped) != norm(concl):
        out.append(EntailExample(_shuffled(ptexts, rng), swapped, 0, "swapped_args", tree_id=t.id))
    order = list(range(len(ptexts)))
    rng.shuffle(order)
    for i in order:
        rev = reverse(ptexts[i], rng)
        if rev and norm(rev) != norm(ptexts[i]):
            out.append(EntailExample(_shuffled(ptexts[:i] + [rev] + ptexts[i + 1:], rng), concl, 0,
                                     "reversed_premise", tree_id=t.id))
            break
    later = descendant_conclusions(t, pos.conclusion_id) if pos.kind == "step" else []
    later = [c for c in later if norm(c) != norm(concl) and norm(c) not in {norm(p) for p in ptexts}]
    if later:
        out.append(EntailExample(_shuffled(ptexts, rng), rng.choice(later), 0, "later_conclusion", tree_id=t.id))
    return out


def descendant_conclusions(tree: EntailmentTree, conclusion_id: str) -> list[str]:
    """Texts of the conclusions that build on `conclusion_id` (directly or through other steps).

    A step's premises entail its conclusion but not these: each needs at least one more premise.
    """
    found: list[str] = []
    frontier = {conclusion_id}
    while frontier:
        nxt = {s.conclusion for s in tree.steps if frontier & set(s.premises)}
        nxt -= {conclusion_id, *found}
        found.extend(sorted(nxt))
        frontier = nxt
    return [tree.text(c) for c in found]


def build_examples(trees: Sequence[EntailmentTree], corpus: Sequence[str], encoder: Any = None,
                   config: DataConfig | None = None, cache_dir: str | Path | None = None,
                   distractors: dict[str, list[str]] | None = None) -> list[EntailExample]:
    """Positives and hard negatives (module docstring) for `trees`; `corpus` supplies neighbours.

    `encoder`: "tfidf" (default, fast on a CPU), "minilm" / None-like names for the packaged MiniLM
    (`retrieval.encoder.get_encoder`), or any object with `encode(texts) -> normalised rows`.
    `distractors`: tree id -> distractor sentences; default: the tree's unused sentences plus
    `meta["distractors"]` ids (EntailmentBank task 2 files).
    """
    cfg = config or DataConfig()
    rng = random.Random(cfg.seed)
    positives = _positives(trees, cfg)
    lk = _lookups(trees, positives, corpus, _make_encoder(encoder), cfg, Path(cache_dir) if cache_dir else None)
    out: list[EntailExample] = []
    for pos in positives:
        out.append(EntailExample(_shuffled(pos.texts, rng), pos.conclusion, 1, pos.kind, tree_id=pos.tree.id))
        cands = _negatives(pos, lk, cfg, rng, distractors)
        if not cfg.harder:
            rng.shuffle(cands)
            out.extend(cands[:cfg.neg_per_pos])
            continue
        cands += _harder_negatives(pos, lk, rng)
        # One premise missing from a two-premise step is always kept: the scorer must see it every time.
        must = [c for c in cands if c.kind == "drop" and len(pos.texts) == 2][:1]
        rest = [c for c in cands if c not in must]
        rng.shuffle(rest)
        out.extend((must + rest)[:cfg.neg_per_pos])
    return out


def _shuffled(items: Sequence[str], rng: random.Random) -> tuple[str, ...]:
    xs = list(items)
    rng.shuffle(xs)
    return tuple(xs)


def _tree_distractors(t: EntailmentTree) -> list[str]:
    used = set(t.leaves)
    dis = [txt for sid, txt in t.sentences.items() if sid.startswith("sent") and sid not in used]
    return dis


def split_by_tree(examples: Sequence[EntailExample], held_out: float, seed: int) -> tuple[list[EntailExample],
                                                                                           list[EntailExample]]:
    """(train, held-out) with whole trees on one side (a hash of tree id and seed decides)."""
    def side(tid: str) -> bool:
        h = int(hashlib.sha1(f"{seed}:{tid}".encode()).hexdigest()[:8], 16)
        return h / 0xFFFFFFFF < held_out

    a = [e for e in examples if not side(e.tree_id)]
    b = [e for e in examples if side(e.tree_id)]
    return a, b


def load_split_examples(split: str, data_dir: str | Path | None = None, config: DataConfig | None = None,
                        encoder: Any = None, cache_dir: str | Path | None = None) -> list[EntailExample]:
    """Examples from the EntailmentBank `train` (angles task 1, distractors from task 2) or `dev` (task 1) trees."""
    from microtheory.datasets import DataPaths, read_eb_dev, read_eb_train, read_worldtree_corpus

    paths = DataPaths(Path(data_dir)) if data_dir else DataPaths.default()
    corpus = list(read_worldtree_corpus(paths.require(paths.worldtree_corpus)).values())
    if split == "train":
        trees = read_eb_train(paths.require(paths.eb_train(1)))
        distractors: dict[str, list[str]] = {}
        t2 = paths.eb_train(2)
        if t2.exists():
            for t in read_eb_train(t2):
                distractors[t.id] = _tree_distractors(t)
    elif split == "dev":
        trees = read_eb_dev(paths.require(paths.eb_dev(1)))
        distractors = {}
        t2 = paths.eb_dev(2)
        if t2.exists():
            for t in read_eb_dev(t2):
                distractors[t.id] = _tree_distractors(t)
    else:
        from core.errors import InputError

        raise InputError(f"unknown split {split!r}: use 'train' or 'dev'")
    return build_examples(trees, corpus, encoder=encoder, config=config, cache_dir=cache_dir,
                          distractors=distractors)


# --------------------------------------------------------------------------------------------
# The two pipelines the CLI runs


def _subsample(examples: list[EntailExample], n: int | None, seed: int) -> list[EntailExample]:
    if n is None or n >= len(examples):
        return examples
    rng = random.Random(seed)
    idx = sorted(rng.sample(range(len(examples)), n))
    return [examples[i] for i in idx]


def run_train(out_dir: str | Path, data_dir: str | Path | None = None, train_config: Any = None,
              data_config: DataConfig | None = None, heldout_fraction: float = 0.1,
              max_examples: int | None = None, resume: bool = False, cache_dir: str | Path | None = None,
              progress: bool = True, stop: Any = None) -> Any:
    """Build train examples from the EntailmentBank train trees, hold out whole trees, train, save.

    The held-out slice (and the exact examples) are written to `out_dir` so that `run_eval`
    can choose baseline thresholds on the same held-out train examples. `stop` (a
    `retrieval.entail_train.TrainStop`) ends this session early with a checkpoint.
    """
    from retrieval.entail_train import TrainConfig, train, write_examples

    tcfg = train_config or TrainConfig()
    dcfg = data_config or DataConfig(seed=tcfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else out / "cache"
    examples = load_split_examples("train", data_dir, dcfg, cache_dir=cache)
    tr, held = split_by_tree(examples, heldout_fraction, dcfg.seed)
    tr = _subsample(tr, max_examples, dcfg.seed)
    write_examples(out / "train_examples.jsonl", tr)
    write_examples(out / "heldout_examples.jsonl", held)
    meta = {"data": {"recipe": dcfg.to_json(), "source": "EntailmentBank angles task_1 train trees "
                     "(distractors from task_2 train), WorldTree corpus neighbours",
                     "train_examples": len(tr), "train_positives": sum(e.label for e in tr),
                     "heldout_examples": len(held), "heldout_fraction": heldout_fraction,
                     "max_examples": max_examples}}
    return train(tr, held, out, tcfg, resume=resume, progress=progress, extra_meta=meta, stop=stop)


def run_eval(scorer_path: str | Path | None = None, data_dir: str | Path | None = None,
             heldout_path: str | Path | None = None, data_config: DataConfig | None = None,
             cache_dir: str | Path | None = None, max_dev: int | None = None,
             baselines: bool = True, int8: bool = False, log: Any = None,
             compare: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """The trained scorer vs embedding cosine vs the untrained cross-encoder on dev-tree examples.

    `int8=True` adds the same scorer with dynamic int8 linear layers (CPU speed-up) at the same threshold.
    `compare`: more trained scorers (label -> folder), each at its own threshold, on the same examples.
    A scorer may be "cascade:DIR" (`retrieval.entail.CascadeScorer`: the shipped scorer prunes for
    the one at DIR); its result says how many pairs each stage scored (`stages`).
    Baseline thresholds are chosen on held-out TRAIN examples (`heldout_path`, default: the ones
    written next to the scorer by training, else rebuilt from the train trees); dev is never tuned on.
    """
    from retrieval.entail import ALIASES, CASCADE_PREFIX, SHIPPED_DIR, CrossEncoderScorer, load_scorer
    from retrieval.entail_train import CosineScorer, evaluate, read_examples

    dcfg = data_config or DataConfig()
    spec = str(scorer_path) if scorer_path else str(SHIPPED_DIR)
    inner = spec[len(CASCADE_PREFIX):] if spec.startswith(CASCADE_PREFIX) else spec
    path = Path(ALIASES.get(inner, inner))
    dev = load_split_examples("dev", data_dir, dcfg, cache_dir=cache_dir)
    dev = _subsample(dev, max_dev, dcfg.seed)
    hp = Path(heldout_path) if heldout_path else path / "heldout_examples.jsonl"
    if hp.is_file():
        held = read_examples(hp)
    else:
        _, held = split_by_tree(load_split_examples("train", data_dir, dcfg, cache_dir=cache_dir), 0.1, dcfg.seed)
    systems: dict[str, Any] = {"cross-encoder (trained)": load_scorer(spec)}
    if int8:
        systems["cross-encoder (trained, int8)"] = CrossEncoderScorer(path, quantize=True)
    for label, other in (compare or {}).items():
        systems[label] = load_scorer(str(other))
    retune: list[str] = []
    if baselines:
        systems["embedding cosine (MiniLM)"] = CosineScorer()
        systems["cross-encoder (untrained)"] = CrossEncoderScorer(untrained=True)
        retune = ["embedding cosine (MiniLM)", "cross-encoder (untrained)"]
    res = evaluate(systems, held, dev, retune=retune, log=log)
    for name, sc in systems.items():
        if isinstance(getattr(sc, "counts", None), dict):
            res["systems"][name]["stages"] = dict(sc.counts)
    res["scorer"] = spec
    res["dev_source"] = "EntailmentBank task_1 dev trees (distractors from task_2 dev), recipe seed " \
        f"{dcfg.seed}" + (f", subsample of {max_dev}" if max_dev else "")
    res["recipe"] = dcfg.to_json()
    return res
