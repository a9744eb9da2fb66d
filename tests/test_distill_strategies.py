"""Selection strategies on small hand-built graphs whose optimum is known or brute-forced."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from microtheory.distill import DistillGraph, select
from microtheory.distill.strategies import STRATEGIES, usage_order
from core.errors import InputError
from core.types import Fact, Proof


def brute_force_qc(g: DistillGraph, n: int) -> int:
    """Most questions any n facts can cover (exhaustive; tiny graphs only)."""
    best = 0
    for combo in combinations(range(g.n_facts), min(n, g.n_facts)):
        best = max(best, g.coverage(np.asarray(combo)).questions_covered)
    return best


def random_graph(seed: int, n_q: int = 8, n_f: int = 9, max_proofs: int = 3) -> DistillGraph:
    rng = np.random.default_rng(seed)
    spec = {}
    for q in range(n_q):
        spec[f"q{q}"] = [[f"f{int(x)}" for x in rng.choice(n_f, size=rng.integers(1, 4), replace=False)]
                         for _ in range(rng.integers(1, max_proofs + 1))]
    return DistillGraph.from_dict(spec)


# A trap for greedy without lookahead: the single-fact proofs look cheapest, but {a, b} covers 3.
TRAP = {"q1": [["a", "b"]], "q2": [["a", "b"]], "q3": [["b", "a"]], "q4": [["d"]], "q5": [["e"]]}


def test_lookahead_prefers_the_proof_that_covers_more_questions():
    g = DistillGraph.from_dict(TRAP)
    sel = select(g, "qc-greedy", budget=2)
    assert set(sel.fact_ids) == {"a", "b"}
    assert sel.report["questions_covered"] == 3
    ex = select(g, "qc-exact", budget=2)
    assert ex.report["questions_covered"] == 3 and ex.report["optimal"] is True


def test_lookahead_counts_proofs_completed_as_subsets():
    # Adding {a, b, c} for q1 also completes q2 {a}, q3 {b} and q4 {c}: 4 questions for 3 facts beats
    # the cheaper-looking proofs {x}, {y}, {z} of one question each.
    spec = {"q1": [["a", "b", "c"]], "q2": [["a", "x1"], ["a"]], "q3": [["b"]], "q4": [["c"]],
            "q5": [["x"]], "q6": [["y"]], "q7": [["z"]]}
    g = DistillGraph.from_dict(spec)
    sel = select(g, "qc-greedy", budget=3)
    assert sel.report["questions_covered"] == 4 == brute_force_qc(g, 3)


@pytest.mark.parametrize("seed", range(12))
def test_exact_matches_brute_force_and_greedy_is_close(seed):
    g = random_graph(seed)
    for n in (2, 4):
        opt = brute_force_qc(g, n)
        ex = select(g, "qc-exact", budget=n)
        assert ex.report["questions_covered"] == opt
        assert len(ex) <= n
        gr = select(g, "qc-greedy", budget=n)
        assert len(gr) <= n
        assert gr.report["questions_covered"] <= opt
        # every chosen fact is needed by some complete proof (pruning)
        complete = g.complete_proofs(gr.fact_indices)
        needed = set(g.leaf_indices[complete[g.proof_rows()]].tolist())
        assert set(gr.fact_indices.tolist()) <= needed


def test_greedy_reaches_most_of_the_optimum_on_random_graphs():
    ratios = []
    for seed in range(30):
        g = random_graph(100 + seed)
        opt = brute_force_qc(g, 3)
        if opt:
            ratios.append(select(g, "qc-greedy", budget=3).report["questions_covered"] / opt)
    assert np.mean(ratios) >= 0.9


def test_pc_maximises_complete_proofs():
    # q1 has three proofs over {a, b}; q2 and q3 one proof each on their own facts.
    spec = {"q1": [["a"], ["b"], ["a", "b"]], "q2": [["c"]], "q3": [["d"]]}
    g = DistillGraph.from_dict(spec)
    pc = select(g, "pc", budget=2)
    assert set(pc.fact_ids) == {"a", "b"} and pc.report["proofs_complete"] == 3
    qc = select(g, "qc-exact", budget=2)
    assert qc.report["questions_covered"] == 2


def test_usage_orders_by_proofs_then_generality():
    # a and b are each used by 2 proofs, but b by 2 questions and a by one question: b first.
    spec = {"q1": [["a", "c"], ["a"]], "q2": [["b"]], "q3": [["b", "c"]], "q4": [["c"]]}
    g = DistillGraph.from_dict(spec)
    order = [g.fact_ids[i] for i in usage_order(g)]
    assert order == ["c", "b", "a"]
    assert select(g, "usage", budget=2).fact_ids == ("c", "b")


def test_random_is_seeded():
    g = random_graph(3, n_q=20, n_f=30)
    a = select(g, "random", budget=5, seed=1).fact_ids
    assert a == select(g, "random", budget=5, seed=1).fact_ids
    assert a != select(g, "random", budget=5, seed=2).fact_ids


def test_free_facts_cost_nothing():
    proofs = [Proof("q1", "p1", "h1", ("c1", "g1")), Proof("q2", "p2", "h2", ("c1", "c2")),
              Proof("q3", "p3", "h3", ("g2", "g3"))]
    facts = [Fact("c1", "x", "corpus"), Fact("c2", "y", "corpus"), Fact("g1", "z", "generated"),
             Fact("g2", "w", "generated"), Fact("g3", "v", "generated")]
    g = DistillGraph.from_proofs(proofs, facts)
    assert set(g.fact_ids) == {"g1", "g2", "g3"} and g.free_ids == {"c1", "c2"}
    for s in STRATEGIES:
        sel = select(g, s, budget=1, seed=0)
        assert "c1" not in sel.fact_ids and len(sel) == 1
    best = select(g, "qc-exact", budget=1)
    assert best.fact_ids == ("g1",) and best.report["questions_covered"] == 2  # q2 is free, q1 needs g1


def test_target_coverage_uses_fewest_facts():
    g = DistillGraph.from_dict(TRAP)
    ex = select(g, "qc-exact", target=0.8)  # 4 of 5 questions: {a, b, d}
    assert len(ex) == 3 and ex.report["questions_covered"] == 4
    gr = select(g, "qc-greedy", target=0.8)
    assert gr.report["questions_covered"] >= 4 and len(gr) == 3
    us = select(g, "usage", target=0.6)
    assert us.report["questions_covered"] >= 3


def test_fill_spends_the_whole_budget():
    g = DistillGraph.from_dict({"q1": [["a"]], "q2": [["b", "c", "d"]], "q3": [["e", "c"]]})
    sel = select(g, "qc-exact", budget=2, fill=True)
    # two facts cover at most one question ({a} or {c, e}); fill tops the selection up to the budget
    assert len(sel) == 2 and sel.report["questions_covered"] == 1
    assert len(select(g, "qc-exact", budget=2).fact_ids) <= 2


def test_bad_input_is_rejected():
    with pytest.raises(InputError, match="not in the store"):
        DistillGraph.from_proofs([Proof("q1", "p1", "h", ("f1", "ghost"))], [Fact("f1", "x", "generated")])
    with pytest.raises(InputError, match="no proofs"):
        DistillGraph.from_proofs([], [])
    with pytest.raises(InputError, match="twice"):
        DistillGraph.from_proofs([Proof("q1", "p1", "h", ("a",)), Proof("q1", "p1", "h", ("b",))])
    g = DistillGraph.from_dict(TRAP)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="budget"):
            select(g, "qc-greedy", budget=bad)
    with pytest.raises(InputError, match="unknown strategy"):
        select(g, "magic", budget=2)
    with pytest.raises(InputError, match="exactly one"):
        select(g, "usage")
    with pytest.raises(InputError, match="target"):
        select(g, "usage", target=1.5)


def test_solver_time_out_returns_best_solution_flagged():
    rng = np.random.default_rng(0)
    n_q, n_f = 400, 300
    spec = {f"q{q}": [[f"f{int(x)}" for x in rng.choice(n_f, size=4, replace=False)] for _ in range(2)]
            for q in range(n_q)}
    g = DistillGraph.from_dict(spec)
    sel = select(g, "qc-exact", budget=60, time_limit=0.05)
    r = sel.report
    assert r["timed_out"] is True and r["optimal"] is False
    assert len(sel) <= 60 and r["questions_covered"] >= 0
    assert "time" in r["status"]
    if r["gap"] is not None:
        assert r["gap"] > 0


def test_networkx_round_trip():
    g = DistillGraph.from_dict(TRAP)
    nxg = g.to_networkx()
    assert nxg.number_of_nodes() == 5 + 5 + 4
    assert set(nxg.successors(("q", "q1"))) == {("p", "q1#0")}
    back = DistillGraph.from_networkx(nxg)
    assert back.summary() == g.summary()
    sel = select(back, "qc-exact", budget=2)
    assert sel.report["questions_covered"] == 3
