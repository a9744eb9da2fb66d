"""The embedded default corpora (corpora/): shapes, counts, cross-references and the designed gaps.

These files feed `make demo`; a broken line here breaks the demo, so every file is checked
line by line against the formats in docs/CONTRACTS.md, and the cross-file promises that
docs/corpora.md makes (tree leaves reuse corpus text, the listed facts are really missing, ...)
are checked too.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from corpora import CORPORA_DIR
from core.types import Fact, Question

CORPUS = CORPORA_DIR / "science_corpus.jsonl"
QUESTIONS = CORPORA_DIR / "science_questions.jsonl"
TREES = CORPORA_DIR / "science_trees.jsonl"
GENERATIONS = CORPORA_DIR / "generations.jsonl"
MODEL_OUTPUTS = CORPORA_DIR / "model_outputs.jsonl"
DOC = Path(__file__).resolve().parent.parent / "docs" / "corpora.md"

# BACKGROUND.md section 3: the eight Digital Socrates dimension ids.
DIMENSIONS = ("misunderstanding", "lack_justification", "incorrect_information", "missing_information",
              "incorrect_reasoning", "incomplete_reasoning", "inconsistent_answer", "irrelevant")
LABELS = ("A", "B", "C", "D")
STEP = re.compile(r"^\s*((?:sent|int)\d+(?:\s*&\s*(?:sent|int)\d+)*)\s*->\s*(int\d+|hypothesis)\s*$")


def rows(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path.name}:{n}: blank line"
        obj = json.loads(line)
        assert isinstance(obj, dict), f"{path.name}:{n}: not a JSON object"
        out.append(obj)
    return out


def norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


# --- shape checkers: return a list of problems, so that a test can show they do catch bad records ---

def fact_problems(d: dict[str, Any]) -> list[str]:
    p = []
    if set(d) != {"id", "text", "source", "provenance"}:
        p.append(f"fields {sorted(d)}")
    if not re.fullmatch(r"sci-\d{4}", str(d.get("id", ""))):
        p.append(f"id {d.get('id')!r}")
    if not isinstance(d.get("text"), str) or len(d["text"].split()) < 3:
        p.append("text is not a sentence")
    elif d["text"] != d["text"].strip() or d["text"].endswith("."):
        p.append("text has stray whitespace or a final period")
    if d.get("source") != "corpus":
        p.append(f"source {d.get('source')!r}")
    prov = d.get("provenance")
    if not (isinstance(prov, list) and len(prov) == 1 and prov[0].get("corpus") == "microtheory-science"
            and isinstance(prov[0].get("topic"), str)):
        p.append(f"provenance {prov!r}")
    return p


def question_problems(d: dict[str, Any]) -> list[str]:
    p = []
    if set(d) != {"id", "stem", "options", "answer_key", "topic", "hypothesis", "split"}:
        p.append(f"fields {sorted(d)}")
    if not re.fullmatch(r"q-\d{3}", str(d.get("id", ""))):
        p.append(f"id {d.get('id')!r}")
    opts = d.get("options")
    if not isinstance(opts, dict) or tuple(opts) != LABELS:
        p.append(f"options must be A-D, got {opts!r}")
    elif len({norm(v) for v in opts.values()}) != 4 or not all(v.strip() for v in opts.values()):
        p.append("options are empty or repeated")
    if not isinstance(opts, dict) or d.get("answer_key") not in opts:
        p.append(f"answer key {d.get('answer_key')!r} is not an option")
    if d.get("split") not in ("train", "test"):
        p.append(f"split {d.get('split')!r}")
    if not str(d.get("stem", "")).strip().endswith("?"):
        p.append("stem is not a question")
    if not str(d.get("hypothesis", "")).strip():
        p.append("empty hypothesis")
    return p


def tree_problems(d: dict[str, Any]) -> list[str]:
    p = []
    if not set(d) <= {"id", "question_id", "hypothesis", "sentences", "proof", "meta"}:
        p.append(f"fields {sorted(d)}")
    sents = d.get("sentences") or {}
    if not all(re.fullmatch(r"(sent|int)\d+", k) for k in sents):
        p.append(f"sentence ids {sorted(sents)}")
    steps = [s for s in str(d.get("proof", "")).split(";") if s.strip()]
    if not steps:
        p.append("empty proof")
    concluded: list[str] = []
    used: set[str] = set()
    for s in steps:
        m = STEP.match(s)
        if not m:
            p.append(f"bad step {s.strip()!r}")
            continue
        premises = [x.strip() for x in m.group(1).split("&")]
        for x in premises:
            if x not in sents:
                p.append(f"{x} is not one of this tree's sentences")
            if x.startswith("int") and x not in concluded:
                p.append(f"{x} used before a step concludes it")
        used.update(premises)
        concluded.append(m.group(2))
    if not concluded or concluded[-1] != "hypothesis" or concluded.count("hypothesis") != 1:
        p.append("the proof must end in exactly one step concluding 'hypothesis'")
    if set(sents) - used:
        p.append(f"sentences no step uses: {sorted(set(sents) - used)}")
    leaves = [k for k in sents if k.startswith("sent")]
    if not 2 <= len(leaves) <= 4 or not 1 <= len(steps) <= 3:
        p.append(f"{len(leaves)} leaves / {len(steps)} steps (want 2-4 / 1-3)")
    return p


# --- fixtures ---

@pytest.fixture(scope="module")
def facts() -> list[dict[str, Any]]:
    return rows(CORPUS)


@pytest.fixture(scope="module")
def questions() -> list[dict[str, Any]]:
    return rows(QUESTIONS)


@pytest.fixture(scope="module")
def qmap(questions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in questions}


@pytest.fixture(scope="module")
def trees() -> list[dict[str, Any]]:
    return rows(TREES)


@pytest.fixture(scope="module")
def corpus_texts(facts: list[dict[str, Any]]) -> set[str]:
    return {f["text"] for f in facts}


# --- corpus ---

def test_corpus_counts_shape_and_unique(facts: list[dict[str, Any]]) -> None:
    assert len(facts) >= 180
    for n, d in enumerate(facts, 1):
        assert fact_problems(d) == [], f"science_corpus.jsonl:{n}: {fact_problems(d)}"
        Fact.from_json(d)
    assert [f["id"] for f in facts] == [f"sci-{i:04d}" for i in range(1, len(facts) + 1)]
    # each topic is one contiguous block of ids (docs/corpora.md gives the ranges)
    order = [f["provenance"][0]["topic"] for f in facts]
    assert [t for i, t in enumerate(order) if i == 0 or t != order[i - 1]] == list(dict.fromkeys(order))
    dup = [t for t, c in Counter(norm(f["text"]) for f in facts).items() if c > 1]
    assert dup == [], f"duplicate facts (after normalisation): {dup}"
    topics = Counter(f["provenance"][0]["topic"] for f in facts)
    assert len(topics) >= 3 and min(topics.values()) >= 30, topics


def test_checkers_catch_bad_records(facts: list[dict[str, Any]], questions: list[dict[str, Any]],
                                    trees: list[dict[str, Any]]) -> None:
    """The shape checks above are not vacuous: each rejects a broken copy of a real record."""
    assert fact_problems({**facts[0], "source": "generated"})
    assert fact_problems({**facts[0], "id": "x1"})
    assert question_problems({**questions[0], "answer_key": "E"})
    assert question_problems({**questions[0], "options": {"A": "x", "B": "x", "C": "y", "D": "z"}})
    t = trees[0]
    assert tree_problems({**t, "proof": t["proof"].replace("hypothesis", "int9")})
    assert tree_problems({**t, "proof": "sent1 & sent99 -> hypothesis;"})
    assert tree_problems({**t, "sentences": {**t["sentences"], "sent9": "an unused sentence"}})


# --- questions ---

def test_questions_counts_shape_keys(questions: list[dict[str, Any]], facts: list[dict[str, Any]]) -> None:
    assert len(questions) >= 36
    for n, d in enumerate(questions, 1):
        assert question_problems(d) == [], f"science_questions.jsonl:{n}: {question_problems(d)}"
        Question.from_json(d)
    assert len({q["id"] for q in questions}) == len(questions)
    keys = Counter(q["answer_key"] for q in questions)
    assert set(keys) == set(LABELS) and min(keys.values()) >= len(questions) // 5, keys
    assert {q["topic"] for q in questions} <= {f["provenance"][0]["topic"] for f in facts}
    splits = Counter(q["split"] for q in questions)
    assert splits["train"] >= 20 and splits["test"] >= 10, splits


def test_questions_read_by_project_reader() -> None:
    from microtheory.datasets import read_questions_jsonl

    qs = read_questions_jsonl(QUESTIONS)
    assert len(qs) >= 36 and all(q.answer_key in q.options for q in qs)


def test_corpus_read_by_the_registered_reader(facts: list[dict[str, Any]]) -> None:
    """`store build corpora/science_corpus.jsonl` guesses the jsonl reader and keeps ids, texts and sources."""
    from retrieval.readers import detect_format, read_facts

    assert detect_format(CORPUS) == "jsonl"
    read = read_facts(CORPUS)
    assert [(f.id, f.text, f.source) for f in read] == [(d["id"], d["text"], d["source"]) for d in facts]


# --- trees ---

def test_trees_shape_and_links(trees: list[dict[str, Any]], qmap: dict[str, dict[str, Any]]) -> None:
    assert len(trees) >= 24
    for n, d in enumerate(trees, 1):
        assert tree_problems(d) == [], f"science_trees.jsonl:{n}: {tree_problems(d)}"
        q = qmap.get(d["question_id"])
        assert q is not None, f"science_trees.jsonl:{n}: unknown question {d['question_id']}"
        assert d["hypothesis"] == q["hypothesis"], f"science_trees.jsonl:{n}: hypothesis differs from the question's"
        assert d["id"] == "tree-" + d["question_id"]
    assert len({t["id"] for t in trees}) == len(trees)


def test_trees_parse_with_project_reader(trees: list[dict[str, Any]]) -> None:
    from microtheory.trees import read_trees_jsonl

    parsed = read_trees_jsonl(TREES)
    assert len(parsed) == len(trees)
    for t in parsed:
        assert t.steps[-1].conclusion == "hypothesis"
        assert 2 <= len(t.leaves) <= 4
        for premises, conclusion in t.step_texts():
            assert conclusion and all(premises)


def test_trees_and_their_replay_are_read_through_the_tree_format_registry(trees: list[dict[str, Any]]) -> None:
    from microtheory.generators.replay import read_recorded
    from microtheory.tree_files import detect_tree_format, read_trees

    assert detect_tree_format(trees[0]) == "jsonl"
    assert [t.id for t in read_trees(TREES)] == [d["id"] for d in trees]
    recs = read_recorded(TREES)  # every step of every tree is a recorded decomposition
    assert len(recs) == sum(len(d["proof"].strip().rstrip(";").split(";")) for d in trees)
    assert {r.generator for r in recs} == {f"trees:{TREES.name}"}


def test_every_train_question_has_a_tree_and_some_test_questions_do(
        trees: list[dict[str, Any]], questions: list[dict[str, Any]]) -> None:
    with_tree = {t["question_id"] for t in trees}
    train = {q["id"] for q in questions if q["split"] == "train"}
    test = {q["id"] for q in questions if q["split"] == "test"}
    assert train <= with_tree, f"train questions without a tree: {sorted(train - with_tree)}"
    assert len(test & with_tree) >= 6, "held-out p-relevance needs test questions with trees"
    assert test - with_tree, "some test questions have no tree (grounded QA on the corpus alone)"


def test_leaves_reuse_corpus_text_except_the_declared_gaps(trees: list[dict[str, Any]],
                                                           corpus_texts: set[str]) -> None:
    norm_corpus = {norm(t) for t in corpus_texts}
    with_gap = 0
    for t in trees:
        gaps = set((t.get("meta") or {}).get("not_in_corpus", []))
        leaves = {k: v for k, v in t["sentences"].items() if k.startswith("sent")}
        assert gaps <= set(leaves), f"{t['id']}: not_in_corpus names a non-leaf"
        for k, text in leaves.items():
            if k in gaps:
                assert norm(text) not in norm_corpus, f"{t['id']} {k} is declared missing but is in the corpus"
            else:
                assert text in corpus_texts, f"{t['id']} {k} is not verbatim corpus text: {text!r}"
        with_gap += bool(gaps)
    # about a third of the trees need knowledge the corpus lacks (the microtheory's job)
    assert len(trees) // 4 <= with_gap <= len(trees) // 2 + 1, with_gap


def test_gaps_are_learnable_and_leaves_are_shared(trees: list[dict[str, Any]], qmap: dict[str, dict[str, Any]]) -> None:
    split_of_gap: dict[str, set[str]] = {}
    leaf_use: Counter[str] = Counter()
    for t in trees:
        gaps = set((t.get("meta") or {}).get("not_in_corpus", []))
        for k, text in t["sentences"].items():
            if k.startswith("sent"):
                leaf_use[text] += 1
                if k in gaps:
                    split_of_gap.setdefault(text, set()).add(qmap[t["question_id"]]["split"])
    # a gap that train trees fill and test trees need: distillation from train can help held-out QA
    learnable = [g for g, s in split_of_gap.items() if s == {"train", "test"}]
    assert len(learnable) >= 3, learnable
    shared = [x for x, c in leaf_use.items() if c >= 2]
    assert len(shared) >= 10 and max(leaf_use.values()) >= 3, leaf_use.most_common(5)


def test_tree_hypotheses_are_not_corpus_facts(trees: list[dict[str, Any]], corpus_texts: set[str]) -> None:
    """A tree whose hypothesis is itself a corpus sentence would prove nothing about composition."""
    norm_corpus = {norm(t) for t in corpus_texts}
    trivial = [t["id"] for t in trees if norm(t["hypothesis"]) in norm_corpus]
    assert trivial == []


# --- replayed generations ---

def test_generations(qmap: dict[str, dict[str, Any]]) -> None:
    gens = rows(GENERATIONS)
    assert len({g["id"] for g in gens}) == len(gens)
    notes = Counter()
    by_q: dict[str, list[str]] = {}
    for n, g in enumerate(gens, 1):
        assert set(g) == {"id", "question_id", "hypothesis", "generator", "prompt_id", "premises", "note"}, n
        q = qmap.get(g["question_id"])
        assert q is not None and q["split"] == "train", f"generations.jsonl:{n}: not a train question"
        assert g["hypothesis"] == q["hypothesis"], f"generations.jsonl:{n}"
        assert g["generator"] == "recorded:example" and g["prompt_id"] == "decompose"
        assert isinstance(g["premises"], list) and 2 <= len(g["premises"]) <= 4
        assert all(isinstance(p, str) and p.strip() for p in g["premises"])
        assert g["note"] in ("sound", "false", "irrelevant"), f"generations.jsonl:{n}: note {g['note']!r}"
        notes[g["note"]] += 1
        by_q.setdefault(g["question_id"], []).append(g["note"])
    train = {k for k, q in qmap.items() if q["split"] == "train"}
    assert set(by_q) == train
    assert all(1 <= len(v) <= 3 and "sound" in v for v in by_q.values())
    assert notes["false"] >= 8 and notes["irrelevant"] >= 5, notes


STOP = set("a an the of is are in on to and or for it its that this with by from as at be into than then each when".split())


def content_words(s: str) -> set[str]:
    return {w for w in norm(s).split() if w not in STOP}


def test_sound_generations_fill_the_corpus_gaps(trees: list[dict[str, Any]], corpus_texts: set[str]) -> None:
    """A train tree's missing leaf is (paraphrased) in its sound generation: that is how the KS learns it."""
    gens = rows(GENERATIONS)
    norm_corpus = {norm(t) for t in corpus_texts}
    sound = {g["question_id"]: g["premises"] for g in gens if g["note"] == "sound"}
    checked = 0
    for t in trees:
        for k in (t.get("meta") or {}).get("not_in_corpus", []):
            if t["question_id"] not in sound:
                continue
            gap = content_words(t["sentences"][k])
            best = max(sound[t["question_id"]], key=lambda p: len(gap & content_words(p)))
            assert len(gap & content_words(best)) >= len(gap) / 2, f"{t['question_id']}: no premise says {gap}"
            assert norm(best) not in norm_corpus
            checked += 1
    assert checked >= 6


def test_generations_replay() -> None:
    """The replay generator (the demo's default generator) reads the file, one record per line."""
    replay = pytest.importorskip("microtheory.generators.replay")
    recs = replay.read_recorded(GENERATIONS)
    assert len(recs) == len(rows(GENERATIONS))
    assert all(len(r.premises) >= 2 for r in recs)


# --- model outputs for critique ---

def test_model_outputs(qmap: dict[str, dict[str, Any]]) -> None:
    from critique.inputs import read_model_outputs
    from critique.taxonomy import FLAW_LABELS

    assert set(FLAW_LABELS) == set(DIMENSIONS)
    outs = rows(MODEL_OUTPUTS)
    assert len(outs) >= 16
    assert len({o["id"] for o in outs}) == len(outs)
    dims = Counter()
    for n, o in enumerate(outs, 1):
        assert {"id", "question", "options", "answer_key", "explanation", "predicted_answer",
                "expected_dimension"} <= set(o), n
        assert o["answer_key"] in o["options"] and o["predicted_answer"] in o["options"], n
        assert o["expected_dimension"] in DIMENSIONS + ("none",), f"model_outputs.jsonl:{n}"
        q = qmap[o["question_id"]]
        assert (o["question"], o["options"], o["answer_key"]) == (q["stem"], q["options"], q["answer_key"]), n
        # the explanation names its chosen letter last, as "(X)"; a sound one picks the key
        assert re.findall(r"\(([A-D])\)", o["explanation"])[-1] == o["predicted_answer"], n
        if o["expected_dimension"] == "none":
            assert o["predicted_answer"] == o["answer_key"], n
        dims[o["expected_dimension"]] += 1
    assert set(DIMENSIONS) <= set(dims), f"dimensions never exemplified: {set(DIMENSIONS) - set(dims)}"
    assert dims["none"] >= 2
    assert len(read_model_outputs(MODEL_OUTPUTS)) == len(outs)


# --- docs stay in step with the data ---

def test_docs_list_every_declared_gap(trees: list[dict[str, Any]]) -> None:
    if not DOC.exists():
        pytest.fail("docs/corpora.md is missing")
    doc = DOC.read_text(encoding="utf-8")
    for t in trees:
        for k in (t.get("meta") or {}).get("not_in_corpus", []):
            assert t["sentences"][k] in doc, f"docs/corpora.md does not list the gap {t['sentences'][k]!r}"


@pytest.mark.slow
def test_tree_leaves_are_retrievable_with_the_default_encoder(trees: list[dict[str, Any]],
                                                               facts: list[dict[str, Any]]) -> None:
    """Querying the corpus with a tree's hypothesis finds most of its in-corpus leaves in the top 10.

    Measured with the packaged MiniLM: 74 of 82 in-corpus leaves (0.90) at k=10; a floor of 0.8 keeps
    later edits from making the corpus unusable for retrieval-based proof search.
    """
    import numpy as np

    from retrieval.encoder import get_encoder

    enc = get_encoder(None)
    texts = [f["text"] for f in facts]
    sims = enc.encode([t["hypothesis"] for t in trees]) @ enc.encode(texts).T
    hit = total = 0
    for row, t in zip(sims, trees):
        gaps = set((t.get("meta") or {}).get("not_in_corpus", []))
        top = {texts[j] for j in np.argsort(-row)[:10]}
        for sid, text in t["sentences"].items():
            if sid.startswith("sent") and sid not in gaps:
                total += 1
                hit += text in top
    assert hit / total >= 0.8, f"leaf recall@10 {hit}/{total}"
