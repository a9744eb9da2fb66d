"""The question -> proof -> fact graph that coverage selection works on.

The public view is a networkx DiGraph (`to_networkx`); the strategies work on the same graph held
as integer arrays (CSR proof -> facts, CSC fact -> proofs), because a per-node networkx loop is far
too slow for graphs with a million incidences. Facts that are the corpus's own ("free") are kept
out of the arrays: they are always available, so they never cost budget and never block a proof.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InputError
from core.types import Fact, Proof


@dataclass(frozen=True)
class Coverage:
    """What a set of chosen facts achieves on a graph."""

    size: int
    questions_covered: int
    questions_total: int
    proofs_complete: int
    proofs_total: int

    @property
    def question_coverage(self) -> float:
        return self.questions_covered / self.questions_total if self.questions_total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "questions_covered": self.questions_covered,
                "questions_total": self.questions_total, "question_coverage": round(self.question_coverage, 6),
                "proofs_complete": self.proofs_complete, "proofs_total": self.proofs_total}


@dataclass(frozen=True)
class DistillGraph:
    """Questions, proofs and the non-free facts each proof needs, as arrays.

    `fact_ids` lists every fact that some proof uses and that is not free; `free_ids` the free
    facts proofs use (kept for reports). Proof p needs facts
    `leaf_indices[leaf_indptr[p]:leaf_indptr[p+1]]` (deduplicated, free ones dropped) and proves
    question `proof_question[p]`.
    """

    question_ids: tuple[str, ...]
    proof_ids: tuple[str, ...]
    fact_ids: tuple[str, ...]
    proof_question: np.ndarray  # int64 [P]
    leaf_indptr: np.ndarray  # int64 [P+1]
    leaf_indices: np.ndarray  # int64 [nnz]
    free_ids: frozenset[str] = frozenset()
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_proofs(cls, proofs: Iterable[Proof], facts: Mapping[str, Fact] | Iterable[Fact] | None = None,
                    free: Iterable[str] | None = None) -> DistillGraph:
        """Build from proofs. `facts` (when given) is the set of known facts: a proof that names a
        fact outside it is an InputError. Free facts are those in `free` plus facts whose source is
        "corpus"."""
        known: dict[str, Fact] | None
        if facts is None:
            known = None
        elif isinstance(facts, Mapping):
            known = dict(facts)
        else:
            known = {f.id: f for f in facts}
        free_set = set(free or ())
        if known is not None:
            free_set |= {fid for fid, f in known.items() if f.source == "corpus"}
        q_index: dict[str, int] = {}
        f_index: dict[str, int] = {}
        proof_ids: list[str] = []
        proof_q: list[int] = []
        indptr = [0]
        indices: list[int] = []
        used_free: set[str] = set()
        seen_pid: set[tuple[str, str]] = set()
        for n, p in enumerate(proofs):
            if (p.question_id, p.proof_id) in seen_pid:
                raise InputError(f"proof {p.proof_id!r} of question {p.question_id!r} occurs twice "
                                 f"(proof number {n + 1})")
            seen_pid.add((p.question_id, p.proof_id))
            row: list[int] = []
            for leaf in dict.fromkeys(p.leaves):
                if known is not None and leaf not in known:
                    raise InputError(f"proof {p.proof_id!r} (question {p.question_id!r}) uses fact {leaf!r}, "
                                     "which is not in the store: rebuild the store with its facts or drop the proof")
                if leaf in free_set:
                    used_free.add(leaf)
                    continue
                row.append(f_index.setdefault(leaf, len(f_index)))
            proof_ids.append(p.proof_id)
            proof_q.append(q_index.setdefault(p.question_id, len(q_index)))
            indices.extend(row)
            indptr.append(len(indices))
        if not proof_ids:
            raise InputError("no proofs to distil from: build the store with proofs "
                             "(`microtheory store build --trees ...` or trees_to_store)")
        return cls(question_ids=tuple(q_index), proof_ids=tuple(proof_ids), fact_ids=tuple(f_index),
                   proof_question=np.asarray(proof_q, dtype=np.int64), leaf_indptr=np.asarray(indptr, dtype=np.int64),
                   leaf_indices=np.asarray(indices, dtype=np.int64), free_ids=frozenset(used_free))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Sequence[Sequence[str]]], free: Iterable[str] = ()) -> DistillGraph:
        """A small graph by hand: {question: [[fact, ...] per proof, ...]}; proof ids are `q#i`."""
        proofs = [Proof(q, f"{q}#{i}", q, tuple(leaves)) for q, ps in spec.items() for i, leaves in enumerate(ps)]
        return cls.from_proofs(proofs, free=free)

    @classmethod
    def from_arrays(cls, n_questions: int, n_facts: int, proof_question: np.ndarray, leaf_indptr: np.ndarray,
                    leaf_indices: np.ndarray) -> DistillGraph:
        """A graph straight from integer arrays (synthetic benchmarks); ids are `q{i}`, `p{i}`, `f{i}`."""
        pq = np.asarray(proof_question, dtype=np.int64)
        ip = np.asarray(leaf_indptr, dtype=np.int64)
        ix = np.asarray(leaf_indices, dtype=np.int64)
        if len(ip) != len(pq) + 1 or ip[-1] != len(ix):
            raise InputError("leaf_indptr must have one entry per proof plus one, ending at len(leaf_indices)")
        if len(ix) and (ix.min() < 0 or ix.max() >= n_facts):
            raise InputError("leaf_indices reference a fact outside 0..n_facts-1")
        if len(pq) and (pq.min() < 0 or pq.max() >= n_questions):
            raise InputError("proof_question references a question outside 0..n_questions-1")
        return cls(question_ids=tuple(f"q{i}" for i in range(n_questions)),
                   proof_ids=tuple(f"p{i}" for i in range(len(pq))), fact_ids=tuple(f"f{i}" for i in range(n_facts)),
                   proof_question=pq, leaf_indptr=ip, leaf_indices=ix)

    # ---------------------------------------------------------------- sizes and derived arrays
    @property
    def n_questions(self) -> int:
        return len(self.question_ids)

    @property
    def n_proofs(self) -> int:
        return len(self.proof_ids)

    @property
    def n_facts(self) -> int:
        return len(self.fact_ids)

    @property
    def n_incidences(self) -> int:
        return len(self.leaf_indices)

    def proof_cost(self) -> np.ndarray:
        """Non-free leaves per proof."""
        return np.diff(self.leaf_indptr)

    def proof_rows(self) -> np.ndarray:
        """The proof index of every incidence (parallel to leaf_indices)."""
        if "rows" not in self._cache:
            self._cache["rows"] = np.repeat(np.arange(self.n_proofs, dtype=np.int64), self.proof_cost())
        return self._cache["rows"]  # type: ignore[no-any-return]

    def fact_to_proofs(self) -> tuple[np.ndarray, np.ndarray]:
        """CSC view: proofs using fact f are `indices[indptr[f]:indptr[f+1]]`."""
        if "csc" not in self._cache:
            order = np.argsort(self.leaf_indices, kind="stable")
            counts = np.bincount(self.leaf_indices, minlength=self.n_facts)
            indptr = np.zeros(self.n_facts + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            self._cache["csc"] = (indptr, self.proof_rows()[order])
        return self._cache["csc"]  # type: ignore[no-any-return]

    def question_to_proofs(self) -> tuple[np.ndarray, np.ndarray]:
        """Proofs of question q are `indices[indptr[q]:indptr[q+1]]`."""
        if "q2p" not in self._cache:
            order = np.argsort(self.proof_question, kind="stable")
            counts = np.bincount(self.proof_question, minlength=self.n_questions)
            indptr = np.zeros(self.n_questions + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            self._cache["q2p"] = (indptr, order.astype(np.int64))
        return self._cache["q2p"]  # type: ignore[no-any-return]

    def fact_proof_counts(self) -> np.ndarray:
        """Usage: how many proofs use each fact."""
        return np.bincount(self.leaf_indices, minlength=self.n_facts)

    def fact_question_counts(self) -> np.ndarray:
        """Generality: how many distinct questions use each fact."""
        if "fq" not in self._cache:
            pairs = np.unique(np.stack([self.leaf_indices, self.proof_question[self.proof_rows()]]), axis=1) \
                if self.n_incidences else np.zeros((2, 0), dtype=np.int64)
            self._cache["fq"] = np.bincount(pairs[0], minlength=self.n_facts)
        return self._cache["fq"]  # type: ignore[no-any-return]

    def free_questions(self) -> np.ndarray:
        """Questions with a proof that needs no budget at all (every leaf free)."""
        cost = self.proof_cost()
        return np.unique(self.proof_question[cost == 0])

    # ---------------------------------------------------------------- evaluation
    def indices_of(self, fact_ids: Iterable[str]) -> np.ndarray:
        idx = self._cache.get("fidx")
        if idx is None:
            idx = self._cache["fidx"] = {f: i for i, f in enumerate(self.fact_ids)}
        return np.asarray([idx[f] for f in fact_ids if f in idx], dtype=np.int64)

    def complete_proofs(self, selected: np.ndarray) -> np.ndarray:
        """Boolean [P]: every non-free leaf selected. `selected` is a bool mask [F] or fact indices."""
        mask = self._mask(selected)
        missing = np.bincount(self.proof_rows(), weights=(~mask[self.leaf_indices]).astype(np.float64),
                              minlength=self.n_proofs)
        return missing == 0

    def coverage(self, selected: np.ndarray) -> Coverage:
        """Questions with a complete proof and complete proofs for a selection (mask or indices)."""
        mask = self._mask(selected)
        complete = self.complete_proofs(mask)
        covered = np.unique(self.proof_question[complete])
        return Coverage(size=int(mask.sum()), questions_covered=len(covered), questions_total=self.n_questions,
                        proofs_complete=int(complete.sum()), proofs_total=self.n_proofs)

    def _mask(self, selected: np.ndarray) -> np.ndarray:
        sel = np.asarray(selected)
        if sel.dtype == bool and sel.shape == (self.n_facts,):
            return sel
        mask = np.zeros(self.n_facts, dtype=bool)
        mask[sel.astype(np.int64)] = True
        return mask

    # ---------------------------------------------------------------- networkx view
    def to_networkx(self) -> Any:
        """DiGraph with nodes ("q", id) -> ("p", id) -> ("f", id); free leaves are omitted (they cost nothing)."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from((("q", q) for q in self.question_ids), kind="question")
        g.add_nodes_from((("f", f) for f in self.fact_ids), kind="fact")
        for p, pid in enumerate(self.proof_ids):
            g.add_node(("p", pid), kind="proof")
            g.add_edge(("q", self.question_ids[self.proof_question[p]]), ("p", pid))
            for f in self.leaf_indices[self.leaf_indptr[p]:self.leaf_indptr[p + 1]]:
                g.add_edge(("p", pid), ("f", self.fact_ids[f]))
        return g

    @classmethod
    def from_networkx(cls, g: Any) -> DistillGraph:
        """Inverse of `to_networkx` (nodes are ("q"|"p"|"f", id) tuples)."""
        proofs = []
        for node in g.nodes:
            if node[0] != "q":
                continue
            for pnode in g.successors(node):
                leaves = tuple(f[1] for f in g.successors(pnode))
                proofs.append(Proof(node[1], pnode[1], node[1], leaves))
        return cls.from_proofs(proofs)

    def summary(self) -> dict[str, int]:
        return {"questions": self.n_questions, "proofs": self.n_proofs, "facts": self.n_facts,
                "incidences": self.n_incidences, "free_facts_used": len(self.free_ids),
                "free_questions": len(self.free_questions())}
