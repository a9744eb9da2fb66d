"""Entailment trees -> knowledge-store facts and proofs (what distillation needs).

Every leaf and every intermediate conclusion of a tree becomes a Fact (source "generated") with
provenance {question_id, proof_id, role: leaf|intermediate, sid, generator}. A tree is one Proof of
its question whose leaves are the ids of its leaf facts. Texts equal after the store's normalisation
share one fact (and one id), locally here and in the store.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from microtheory.trees import EntailmentTree
from core.errors import InputError
from retrieval.store import fact_id_for, normalise_text
from core.types import Fact, Proof


def trees_to_records(trees: Iterable[EntailmentTree], generator: str = "entailmentbank",
                     source: str = "generated") -> tuple[list[Fact], list[Proof]]:
    """Facts (deduplicated on normalised text, provenance merged) and one proof per tree."""
    facts: dict[str, Fact] = {}
    proofs: list[Proof] = []
    seen_proofs: set[tuple[str, str]] = set()
    for t in trees:
        # EntailmentBank train has a few questions with two trees under one id: alternative proofs.
        proof_id, k = t.id, 2
        while (t.question_id, proof_id) in seen_proofs:
            proof_id, k = f"{t.id}#{k}", k + 1
        seen_proofs.add((t.question_id, proof_id))
        leaf_ids: list[str] = []
        for role, sids in (("leaf", t.leaves), ("intermediate", t.intermediates)):
            for sid in sids:
                text = t.sentences[sid].strip()
                if not text:
                    raise InputError(f"tree {t.id!r}: sentence {sid} is empty")
                fid = fact_id_for(text)
                prov = {"question_id": t.question_id, "proof_id": proof_id, "role": role, "sid": sid,
                        "generator": generator}
                old = facts.get(fid)
                facts[fid] = Fact(fid, text, source, [prov]) if old is None else \
                    replace(old, provenance=[*old.provenance, prov])
                if role == "leaf":
                    leaf_ids.append(fid)
        proofs.append(Proof(t.question_id, proof_id, t.hypothesis, tuple(dict.fromkeys(leaf_ids))))
    if not proofs:
        raise InputError("no trees given")
    return list(facts.values()), proofs


def add_trees(store: Any, trees: Iterable[EntailmentTree], generator: str = "entailmentbank",
              progress: bool = False) -> dict[str, int]:
    """Add the trees' facts and proofs to an open, writable KnowledgeStore; proof leaves are rewritten
    to the stored ids the store's deduplication chose. Returns counts."""
    facts, proofs = trees_to_records(trees, generator=generator)
    res = store.add(facts, progress=progress)
    mapped = [replace(p, leaves=tuple(dict.fromkeys(res.ids.get(f, f) for f in p.leaves))) for p in proofs]
    changed = store.add_proofs(mapped)
    return {"trees": len(proofs), "facts": len(facts), "facts_added": res.added, "facts_merged": res.merged,
            "proofs_added": changed}


def corpus_fact_ids(facts: Iterable[Fact], corpus_texts: Iterable[str]) -> set[str]:
    """Ids of facts whose normalised text is a corpus sentence: for the grounding experiment these
    are "free" (the general corpus already has them), so they never count against a budget."""
    norms = {normalise_text(t) for t in corpus_texts}
    return {f.id for f in facts if normalise_text(f.text) in norms}


def proofs_with_free_leaves(proofs: Iterable[Proof], free: Mapping[str, Any] | set[str]) -> list[Proof]:
    """The proofs every leaf of which is free (present in the corpus)."""
    return [p for p in proofs if all(leaf in free for leaf in p.leaves)]
