"""Readers for the public data in ../shared/data: EntailmentBank trees, T5 predictions, ARC questions,
the WorldTree corpus; and the project's questions JSONL.

Every reader names the file and line of a bad item. EntailmentBank ids are ARC ids: `join_questions`
attaches options and answer keys to trees.
"""
from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microtheory.trees import EntailmentTree, TreeError, build_tree
from core.errors import InputError
from core.jsonl import iter_jsonl, write_jsonl
from core.types import Fact, Question

_CONTEXT_RE = re.compile(r"(sent\d+):\s*")
_FIELD_RE = re.compile(r"\$(\w+)\$\s*=\s*")


def default_data_dir() -> Path:
    """$MICROTHEORY_DATA, else ../shared/data beside the project checkout."""
    env = os.environ.get("MICROTHEORY_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class DataPaths:
    """Where each public file lives under a data root (../shared/data by default)."""

    root: Path

    @classmethod
    def default(cls) -> DataPaths:
        return cls(default_data_dir())

    def eb_train(self, task: int = 1) -> Path:
        return self.root / "entailmentbank" / "angles" / f"task_{task}" / "train.jsonl"

    def eb_dev(self, task: int = 1) -> Path:
        return self.root / "entailmentbank" / f"task_{task}" / "dev.jsonl"

    def t5_predictions(self, task: int = 1, model: str = "T5_11B") -> Path:
        return self.root / "entailmentbank" / "predictions" / f"task{task}" / model / "dev.predictions.tsv"

    @property
    def worldtree_corpus(self) -> Path:
        return self.root / "entailmentbank" / "worldtree_corpus_sentences_extended.json"

    @property
    def arc(self) -> list[Path]:
        return [self.root / "arc" / "ARC-Easy-Train.jsonl", self.root / "arc" / "ARC-Challenge-Train.jsonl"]

    def require(self, path: Path) -> Path:
        if not path.exists():
            raise InputError(f"data file not found (set MICROTHEORY_DATA to the folder of ../shared/data): {path}")
        return path


def split_context(context: str) -> dict[str, str]:
    """`sent1: a sent2: b` -> {"sent1": "a", "sent2": "b"}."""
    parts = _CONTEXT_RE.split(context)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def parse_angles_fields(text: str) -> dict[str, str]:
    """`$question$ = ... ; $answer$ = ... ; $context$ = ...` -> {"question": ..., ...}."""
    fields: dict[str, str] = {}
    matches = list(_FIELD_RE.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        fields[m.group(1)] = text[m.end():end].strip().rstrip(";").strip()
    return fields


def read_eb_train(path: str | Path) -> list[EntailmentTree]:
    """EntailmentBank `angles` train file: `input` holds question/answer/hypothesis/context, `output` the proof."""
    trees = []
    for n, obj in iter_jsonl(path):
        item_id = str(obj.get("id", f"line{n}"))
        if "input" not in obj or "output" not in obj:
            raise TreeError(item_id, "missing 'input' or 'output'", str(path), n)
        f = parse_angles_fields(obj["input"])
        out = parse_angles_fields(obj["output"])
        for key in ("hypothesis", "context"):
            if key not in f:
                raise TreeError(item_id, f"input has no ${key}$ field", str(path), n)
        if "proof" not in out:
            raise TreeError(item_id, "output has no $proof$ field", str(path), n)
        meta = {"question": f.get("question", ""), "answer": f.get("answer", ""), "split": "train"}
        trees.append(build_tree(item_id, item_id, f["hypothesis"], split_context(f["context"]), out["proof"],
                                meta=meta, path=str(path), line=n))
    if not trees:
        raise InputError("no trees in file", str(path))
    return trees


def _literal(value: Any) -> Any:
    # The dev metadata stores dicts and lists as Python reprs inside strings.
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def read_eb_dev(path: str | Path) -> list[EntailmentTree]:
    """EntailmentBank dev JSONL with metadata; leaves keep their WorldTree uuids in meta["uuids"]."""
    trees = []
    for n, obj in iter_jsonl(path):
        item_id = str(obj.get("id", f"line{n}"))
        for key in ("hypothesis", "context", "proof"):
            if key not in obj:
                raise TreeError(item_id, f"missing field '{key}'", str(path), n)
        raw_meta = obj.get("meta") or {}
        sentences = split_context(obj["context"])
        ints = _literal(raw_meta.get("intermediate_conclusions", {})) or {}
        # Provenance keys do not follow the context numbering: match leaves to uuids by text.
        prov = _literal(raw_meta.get("worldtree_provenance", {})) or {}
        by_text = {v.get("original_text", "").strip().lower(): v.get("uuid") for v in prov.values()
                   if isinstance(v, dict)}
        uuids = {sid: by_text[t.strip().lower()] for sid, t in sentences.items() if by_text.get(t.strip().lower())}
        meta = {"question": obj.get("question", ""), "answer": obj.get("answer", ""), "split": "dev",
                "uuids": uuids, "distractors": _literal(raw_meta.get("distractors", [])) or [],
                "core_concepts": _literal(raw_meta.get("core_concepts", [])) or []}
        tree = build_tree(item_id, item_id, obj["hypothesis"], sentences, obj["proof"], meta=meta,
                          path=str(path), line=n)
        # The dev proof may omit intermediate texts: take them from the metadata.
        missing = {k: v for k, v in ints.items() if k in tree.intermediates and k not in tree.sentences}
        if missing:
            tree = EntailmentTree(tree.id, tree.question_id, tree.hypothesis, {**tree.sentences, **missing},
                                  tree.steps, tree.meta)
        trees.append(tree)
    if not trees:
        raise InputError("no trees in file", str(path))
    return trees


@dataclass(frozen=True)
class Prediction:
    """One model-predicted proof aligned with a dev item: `tree` when it parses, else `error`."""

    item_id: str
    proof: str
    tree: EntailmentTree | None
    error: str | None


def read_t5_predictions(path: str | Path, dev: list[EntailmentTree]) -> list[Prediction]:
    """The T5 prediction TSV (one `$proof$ = ...` per line, in dev order) against the matching dev file.

    Use task-1 dev trees for task-1 predictions and task-2 dev trees for task-2 ones (the `sentN`
    numbering is the context's). A predicted proof that is not a valid tree is kept with its error:
    these are real model outputs, and their flaws are the point.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    lines = [ln for ln in lines if ln.strip()]
    if len(lines) != len(dev):
        raise InputError(f"{len(lines)} predictions but {len(dev)} dev items: not aligned", str(path))
    out = []
    for n, (line, gold) in enumerate(zip(lines, dev), 1):
        proof = line.split("\t")[0].strip()
        try:
            tree = build_tree(gold.id, gold.question_id, gold.hypothesis,
                              {k: v for k, v in gold.sentences.items() if k.startswith("sent")}, proof,
                              meta={**gold.meta, "predicted": True}, path=str(path), line=n)
            out.append(Prediction(gold.id, proof, tree, None))
        except TreeError as e:
            out.append(Prediction(gold.id, proof, None, e.reason))
    return out


def read_arc(paths: Iterable[str | Path]) -> dict[str, Question]:
    """ARC question JSONL files -> {id: Question} with options and answer key."""
    questions: dict[str, Question] = {}
    for path in paths:
        for n, obj in iter_jsonl(path):
            try:
                q = obj["question"]
                options = {str(c["label"]): str(c["text"]) for c in q["choices"]}
                questions[str(obj["id"])] = Question(str(obj["id"]), str(q["stem"]), options,
                                                     str(obj.get("answerKey")) if obj.get("answerKey") else None)
            except (KeyError, TypeError) as e:
                raise InputError(f"not an ARC question (missing {e})", str(path), n) from None
    return questions


def join_questions(trees: Iterable[EntailmentTree], arc: dict[str, Question],
                   topic: str | None = None) -> list[Question]:
    """The ARC question of each tree (options, key) with the tree's gold hypothesis; missing ids are errors."""
    out = []
    for t in trees:
        q = arc.get(t.question_id)
        if q is None:
            raise InputError(f"tree {t.id}: question id {t.question_id!r} not in the ARC files")
        out.append(Question(q.id, q.stem, q.options, q.answer_key, topic or q.topic, t.hypothesis))
    return out


def read_worldtree_corpus(path: str | Path, include_addons: bool = True) -> dict[str, str]:
    """uuid -> sentence. `include_addons=False` drops the `ET_addon:*` sentences (and the dummy)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read the corpus JSON: {e}", str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected one JSON object uuid -> sentence", str(path))
    return {k: v for k, v in data.items()
            if v != "DUMMY" and (include_addons or not k.startswith("ET_addon:"))}


def read_questions_jsonl(path: str | Path) -> list[Question]:
    """The project's questions JSONL (docs/formats.md); a bad line is an InputError with file:line."""
    out = []
    for n, obj in iter_jsonl(path):
        try:
            q = Question.from_json(obj)
        except (KeyError, AttributeError, TypeError) as e:
            raise InputError(f"not a question record (missing or bad field {e})", str(path), n) from None
        out.append(q)
    if not out:
        raise InputError("no questions in file", str(path))
    return out


def write_questions_jsonl(questions: Iterable[Question], path: str | Path) -> int:
    return write_jsonl(path, (q.to_json() for q in questions))


def load_eb_questions(split: str = "dev", data: DataPaths | None = None) -> tuple[list[EntailmentTree], list[Question]]:
    """Trees of an EntailmentBank split (task 1) and their ARC questions with gold hypotheses."""
    data = data or DataPaths.default()
    if split == "train":
        trees = read_eb_train(data.require(data.eb_train()))
    elif split == "dev":
        trees = read_eb_dev(data.require(data.eb_dev()))
    else:
        raise InputError(f"unknown split {split!r}: use train or dev")
    arc = read_arc(data.require(p) for p in data.arc)
    return trees, join_questions(trees, arc)


# --- input specs: a file or an EntailmentBank split by name -----------------------------------------
# `run` configs, `populate` and `qa` name their inputs either as a file or as `eb:train` / `eb:dev`
# (the EntailmentBank split under the data root). These readers turn such a spec into records.

EB_SPECS = ("eb:train", "eb:dev")


def is_eb_spec(spec: str | Path | None) -> bool:
    return str(spec) in EB_SPECS


def eb_spec_files(spec: str, data: DataPaths | None = None, *, questions: bool = False) -> list[Path]:
    """The data files an `eb:` spec reads (its trees; with `questions`, the ARC files too)."""
    data = data or DataPaths.default()
    split = spec.split(":", 1)[1]
    if split not in ("train", "dev"):
        raise InputError(f"unknown EntailmentBank split {spec!r}: use eb:train or eb:dev")
    files = [data.eb_train() if split == "train" else data.eb_dev()]
    return files + (list(data.arc) if questions else [])


def read_corpus_facts(path: str | Path, include_addons: bool = False) -> list[Fact]:
    """A general corpus as Facts (source "corpus"): a WorldTree-style JSON object uuid -> sentence
    (`include_addons` keeps the `ET_addon:*` rows; the uuid is the fact id), or facts JSONL
    ({"id"?, "text", "provenance"?} per line)."""
    from retrieval.store import fact_id_for

    p = Path(path)
    if not p.exists():
        raise InputError("corpus file not found", str(p))
    if p.suffix.lower() == ".json":
        rows = read_worldtree_corpus(p, include_addons=include_addons)
        return [Fact(uid, text, "corpus", [{"corpus": p.stem, "uuid": uid}]) for uid, text in rows.items()]
    facts = []
    for n, obj in iter_jsonl(p):
        text = str(obj.get("text") or "").strip()
        if not text:
            raise InputError("a fact needs a non-empty 'text'", str(p), n)
        facts.append(Fact(str(obj.get("id") or fact_id_for(text)), text, "corpus",
                          list(obj.get("provenance") or [{"corpus": p.stem}])))
    if not facts:
        raise InputError("no facts in the corpus file", str(p))
    return facts


def load_question_set(spec: str | Path, split: str | None = None, data: DataPaths | None = None) -> Any:
    """Questions for `populate`, `qa` and `run`: a questions JSONL file, tolerant per row (a bad line
    stays as its InputError, see `retrieval.qa.read_question_set`), or `eb:train` / `eb:dev`
    (EntailmentBank questions with gold hypotheses; `split` is ignored: the spec names the split).

    `split`: keep only records whose "split" field equals it (e.g. "train": population must not see
    test questions); bad lines are kept, so that they are reported. Returns a `retrieval.qa.QuestionSet`.
    """
    from retrieval.qa import QuestionSet, read_question_set

    s = str(spec)
    if is_eb_spec(s):
        return QuestionSet(s, list(load_eb_questions(s.split(":", 1)[1], data)[1]))
    qset = read_question_set(s)
    if split is None:
        return qset
    keep = {str(obj.get("id")) for _, obj in iter_jsonl(s, on_error=lambda e: None) if obj.get("split") == split}
    rows = [q for q in qset.rows if isinstance(q, InputError) or q.id in keep]
    if not any(isinstance(q, Question) for q in rows):
        raise InputError(f"no questions with split {split!r}", s)
    return QuestionSet(qset.source, rows)


def read_questions_spec(spec: str | Path, split: str | None = None, data: DataPaths | None = None) -> list[Question]:
    """`load_question_set`, strict: the first bad line raises its InputError (file:line)."""
    rows = load_question_set(spec, split, data).rows
    for q in rows:
        if isinstance(q, InputError):
            raise q
    return [q for q in rows if isinstance(q, Question)]


def read_trees_spec(spec: str | Path, data: DataPaths | None = None) -> list[EntailmentTree]:
    """Entailment trees from a file (any format `microtheory.tree_files.read_trees` knows, told
    apart by its first record) or eb:train / eb:dev."""
    from microtheory.tree_files import read_trees

    s = str(spec)
    if is_eb_spec(s):
        data = data or DataPaths.default()
        return read_eb_train(data.require(data.eb_train())) if s == "eb:train" else \
            read_eb_dev(data.require(data.eb_dev()))
    return read_trees(s)
