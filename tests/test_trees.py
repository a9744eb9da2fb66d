from __future__ import annotations

import json

import pytest

from microtheory.datasets import (
    DataPaths,
    load_eb_questions,
    parse_angles_fields,
    read_eb_dev,
    read_eb_train,
    read_questions_jsonl,
    read_t5_predictions,
    read_worldtree_corpus,
    split_context,
)
from microtheory.trees import EntailmentTree, TreeError, build_tree, read_trees_jsonl, write_trees_jsonl
from core.errors import InputError

SENTS = {"sent1": "leo is a kind of constellation", "sent2": "earth orbits the sun causes stars to move",
         "sent3": "a constellation contains stars"}
HYP = "earth orbiting the sun causes leo to move"


def test_parse_multi_step_proof_with_inline_intermediate():
    t = build_tree("q1", "q1", HYP, SENTS, "sent1 & sent3 -> int1: leo contains stars; int1 & sent2 -> hypothesis; ")
    assert t.leaves == ("sent1", "sent3", "sent2")
    assert t.intermediates == ("int1",)
    assert t.sentences["int1"] == "leo contains stars"
    assert t.step_texts()[1] == (["leo contains stars", SENTS["sent2"]], HYP)
    assert t.proof_string() == "sent1 & sent3 -> int1: leo contains stars; int1 & sent2 -> hypothesis;"


@pytest.mark.parametrize("proof, reason", [
    ("sent1 & sent9 -> hypothesis;", "unknown sentence id 'sent9'"),
    ("sent1 & sent2 -> int1: x;", "no final step concludes 'hypothesis'"),
    ("int2 & sent1 -> int1: a; int1 -> int2: b; int2 -> hypothesis;", "cycle"),
    (" -> hypothesis;", "cannot parse"),
    ("sent1 & & sent2 -> hypothesis;", "empty premise"),
    ("int1 & sent2 -> hypothesis;", "int1 is used but no step concludes it"),
    ("sent1 -> hypothesis; sent2 -> int1: x;", "last step must conclude"),
])
def test_malformed_proofs_are_rejected_with_item_and_reason(proof, reason):
    with pytest.raises(TreeError) as e:
        build_tree("item-7", "item-7", HYP, SENTS, proof)
    assert "item item-7" in str(e.value) and reason in str(e.value)


def test_project_jsonl_round_trip_and_errors(tmp_path):
    t = build_tree("t1", "q1", HYP, SENTS, "sent1 & sent3 -> int1: leo contains stars; int1 & sent2 -> hypothesis;")
    path = tmp_path / "trees.jsonl"
    assert write_trees_jsonl([t, t], path) == 2
    back = read_trees_jsonl(path)
    assert back[0] == t
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(t.to_json()) + "\n" + json.dumps({**t.to_json(), "proof": "sent1 -> int1: x;"}) + "\n")
    with pytest.raises(TreeError, match=r"bad.jsonl:2: item t1: no final step"):
        read_trees_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: not valid JSON"):
        read_trees_jsonl(bad)


def test_angles_fields_and_context():
    f = parse_angles_fields("$proof$ ; $question$ = Why? ; $answer$ = Because. ; $hypothesis$ = h ; "
                            "$context$ = sent1: a b sent2: c")
    assert f["question"] == "Why?" and f["answer"] == "Because." and f["hypothesis"] == "h"
    assert split_context(f["context"]) == {"sent1": "a b", "sent2": "c"}


def test_questions_jsonl_bad_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"id": "a", "stem": "s?", "options": {"A": "x"}, "answer_key": "A"}\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"q.jsonl:2: not a question record"):
        read_questions_jsonl(p)


@pytest.mark.data
def test_entailmentbank_readers_on_real_data(data_dir):
    d = DataPaths(data_dir)
    train = read_eb_train(d.eb_train())
    dev = read_eb_dev(d.eb_dev())
    assert len(train) == 1313 and len(dev) == 187
    assert all(t.steps[-1].conclusion == "hypothesis" for t in train + dev)
    # every intermediate conclusion has its text (dev proofs take them from the metadata)
    assert all(t.sentences[i] for t in dev for i in t.intermediates)
    # most dev leaves are tied to WorldTree uuids
    assert sum(len(t.meta["uuids"]) for t in dev) > 0.5 * sum(len(t.leaves) for t in dev)
    _, questions = load_eb_questions("dev", d)
    assert all(q.answer_key in q.options and q.hypothesis for q in questions)
    preds = read_t5_predictions(d.t5_predictions(2, "T5_large"), read_eb_dev(d.eb_dev(2)))
    assert len(preds) == 187 and sum(p.error is not None for p in preds) >= 1
    corpus = read_worldtree_corpus(d.worldtree_corpus, include_addons=False)
    assert len(corpus) == 9011 and not any(k.startswith("ET_addon") for k in corpus)
