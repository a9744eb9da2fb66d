"""Selection strategies: which n facts (or how few facts for a target coverage) to keep.

Every strategy is registered in `STRATEGIES` under a stable name and takes a `DistillGraph` and a
`SelectionRequest`; `select` runs one and returns a `Selection` (chosen fact ids in the order they
were chosen, and a report: size, questions with a complete proof, complete proofs, time, plus what
the strategy adds, e.g. the optimality gap of `qc-exact`). Free (corpus) facts are not in the graph's
fact arrays, so they never count against the budget.

- `random`: a seeded random order of the facts proofs use.
- `usage`: facts used by the most proofs first.
- `qc-greedy`: question coverage, greedily by whole proofs: repeatedly add the missing facts of the
  proof that covers the most new questions per new fact, looking ahead to every other proof those
  facts complete; then prune facts that no complete proof needs and spend what was freed.
- `qc-exact`: the integer program of BACKGROUND.md section 1 with SciPy's HiGHS `milp`, under a time
  limit; the optimality gap is reported, and on a time-out the best solution found is returned flagged.
- `pc`: proof coverage, the same greedy counting complete proofs instead of questions.

Ties go to facts used by more questions (generality). A new strategy is a function
`(graph, request) -> (chosen fact indices in order, report fragment)` plus `@STRATEGIES.register(name)`;
an order-based one can leave the target mode to `take_in_order`.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Protocol

import numpy as np

from core.errors import InputError, SolverError
from core.registry import Registry
from microtheory.distill.graph import DistillGraph

# Weight of the "progress toward other proofs" term in the greedy's key (0: questions gained per fact only).
SHARE_WEIGHT = 0.25  # chosen on the EB train graph and a synthetic graph (bench/distill_bench.py)

# Full subset lookahead up to this many missing facts (2^8 - 1 bucket probes); larger proofs probe
# subsets of size <= 2 and the whole missing set only.
_FULL_LOOKAHEAD = 8


@dataclass(frozen=True)
class SelectionRequest:
    """What a strategy is asked for: exactly one of `budget` (a number of facts) and `target` (a
    question coverage in (0, 1]), already checked by `select`."""

    budget: int | None = None
    target: float | None = None
    seed: int = 0
    time_limit: float = 60.0


class Strategy(Protocol):
    """A selection strategy: the chosen fact indices of `graph` in the order chosen (at most
    `request.budget` of them, or enough for `request.target`) and what it adds to the report."""

    def __call__(self, graph: DistillGraph, request: SelectionRequest, /) -> tuple[list[int], dict[str, Any]]:
        ...


STRATEGIES: Registry[Strategy] = Registry("strategy")


@dataclass(frozen=True)
class Selection:
    """The chosen facts (ids and graph indices, in the order chosen) and the strategy's report."""

    strategy: str
    fact_ids: tuple[str, ...]
    fact_indices: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.fact_ids)


# ------------------------------------------------------------------------------------------ entry point
def select(graph: DistillGraph, strategy: str, budget: int | None = None, target: float | None = None,
           seed: int = 0, time_limit: float = 60.0, fill: bool = False) -> Selection:
    """Run `strategy` on `graph` with a budget of `budget` facts or a target question coverage `target`.

    `fill=True` spends budget a strategy left unused (e.g. when every coverable question is covered)
    on the most-used remaining facts, so that strategies are compared at equal size.
    """
    run = STRATEGIES.get(strategy)
    request = check_request(budget, target, seed, time_limit)
    if graph.n_proofs == 0:
        raise InputError("the graph has no proofs")
    t0 = time.perf_counter()
    chosen, extra = run(graph, request)
    chosen = _checked_choice(graph, strategy, chosen, request.budget)
    if fill and request.budget is not None and len(chosen) < request.budget:
        extra = {**extra, "filled": _fill(graph, chosen, request.budget)}
    elapsed = time.perf_counter() - t0
    idx = np.asarray(chosen, dtype=np.int64)
    cov = graph.coverage(idx)
    report: dict[str, Any] = {"strategy": strategy, "budget": request.budget, "target": target, **cov.to_json(),
                              "time_s": round(elapsed, 4), **extra}
    return Selection(strategy, tuple(graph.fact_ids[i] for i in chosen), idx, report)


def check_request(budget: int | None, target: float | None, seed: int = 0,
                  time_limit: float = 60.0) -> SelectionRequest:
    """A SelectionRequest, or an InputError saying which argument is wrong."""
    if (budget is None) == (target is None):
        raise InputError("give exactly one of a budget (number of facts) or a target coverage")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
            raise InputError(f"budget must be a positive number of facts, got {budget!r}")
        budget = int(budget)
    if target is not None and not (0.0 < float(target) <= 1.0):
        raise InputError(f"target coverage must be in (0, 1], got {target!r}")
    if time_limit <= 0:
        raise InputError(f"time limit must be positive, got {time_limit!r}")
    return SelectionRequest(budget, target, seed, time_limit)


def _checked_choice(graph: DistillGraph, strategy: str, chosen: list[int], budget: int | None) -> list[int]:
    """A strategy's answer as plain ints, after checking it (a registered strategy may be anyone's code)."""
    out = [int(f) for f in chosen]
    if any(not 0 <= f < graph.n_facts for f in out) or len(set(out)) != len(out):
        raise SolverError(f"strategy {strategy!r} returned fact indices that are out of range or repeated")
    if budget is not None and len(out) > budget:
        raise SolverError(f"strategy {strategy!r} chose {len(out)} facts, over the budget of {budget}")
    return out


def _fill(graph: DistillGraph, chosen: list[int], budget: int) -> int:
    """Append the most-used facts not chosen until `chosen` has `budget` of them; how many were added."""
    have = set(chosen)
    added = 0
    for f in usage_order(graph):
        if len(chosen) >= budget:
            break
        if int(f) not in have:
            chosen.append(int(f))
            added += 1
    return added


def usage_order(graph: DistillGraph) -> np.ndarray:
    """Facts by proofs using them, then by questions using them (generality), then by id order."""
    uses = graph.fact_proof_counts()
    gen = graph.fact_question_counts()
    return np.lexsort((np.arange(graph.n_facts), -gen, -uses))


def take_in_order(graph: DistillGraph, order: np.ndarray, request: SelectionRequest) -> list[int]:
    """The first `request.budget` facts of `order`, or the shortest prefix reaching `request.target`."""
    if request.budget is not None:
        return [int(f) for f in order[:request.budget]]
    target = request.target
    assert target is not None
    need = math.ceil(target * graph.n_questions - 1e-9)
    tracker = _Tracker(graph)
    chosen: list[int] = []
    for f in order:
        if tracker.covered >= need:
            break
        tracker.add(int(f))
        chosen.append(int(f))
    if tracker.covered < need:
        raise SolverError(f"target coverage {target} is not reachable: at most {tracker.covered} of "
                          f"{graph.n_questions} questions have a proof")
    return chosen


# ------------------------------------------------------------------------------------------ registered strategies
@STRATEGIES.register("random", help="a seeded random order of the facts proofs use")
def random_strategy(graph: DistillGraph, request: SelectionRequest) -> tuple[list[int], dict[str, Any]]:
    order = np.random.default_rng(request.seed).permutation(graph.n_facts)
    return take_in_order(graph, order, request), {"seed": request.seed}


@STRATEGIES.register("usage", help="facts used by the most proofs first")
def usage_strategy(graph: DistillGraph, request: SelectionRequest) -> tuple[list[int], dict[str, Any]]:
    return take_in_order(graph, usage_order(graph), request), {}


@STRATEGIES.register("qc-greedy", help="question coverage, greedily by whole proofs with lookahead")
def qc_greedy_strategy(graph: DistillGraph, request: SelectionRequest) -> tuple[list[int], dict[str, Any]]:
    return greedy_cover(graph, budget=request.budget, target=request.target, unit="question")


@STRATEGIES.register("qc-exact", help="question coverage as an integer program solved by HiGHS under a time limit")
def qc_exact_strategy(graph: DistillGraph, request: SelectionRequest) -> tuple[list[int], dict[str, Any]]:
    return exact_cover(graph, budget=request.budget, target=request.target, time_limit=request.time_limit)


@STRATEGIES.register("pc", help="proof coverage: the greedy counting complete proofs")
def pc_strategy(graph: DistillGraph, request: SelectionRequest) -> tuple[list[int], dict[str, Any]]:
    return greedy_cover(graph, budget=request.budget, target=request.target, unit="proof")


class _Tracker:
    """Incremental question coverage while facts are added one by one."""

    def __init__(self, graph: DistillGraph):
        self.f_ptr, self.f_proofs = (a.tolist() for a in graph.fact_to_proofs())
        self.missing = graph.proof_cost().tolist()
        self.pq = graph.proof_question.tolist()
        self.qcov = [False] * graph.n_questions
        self.covered = 0
        for p, m in enumerate(self.missing):
            if m == 0:
                self._cover(self.pq[p])

    def _cover(self, q: int) -> None:
        if not self.qcov[q]:
            self.qcov[q] = True
            self.covered += 1

    def add(self, f: int) -> None:
        for p in self.f_proofs[self.f_ptr[f]:self.f_ptr[f + 1]]:
            self.missing[p] -= 1
            if self.missing[p] == 0:
                self._cover(self.pq[p])


# ------------------------------------------------------------------------------------------ greedy
def greedy_cover(graph: DistillGraph, budget: int | None = None, target: float | None = None,
                 unit: str = "question", max_rounds: int = 3, share: float | None = None
                 ) -> tuple[list[int], dict[str, Any]]:
    """Greedy coverage by whole proofs with lookahead, then prune-and-refill rounds.

    `unit="question"` maximises questions with a complete proof (QC); `unit="proof"` complete proofs (PC).
    Returns the chosen fact indices (in order) and a report fragment.
    """
    if unit == "question":
        units = graph.proof_question
        n_units = graph.n_questions
    elif unit == "proof":
        units = np.arange(graph.n_proofs, dtype=np.int64)
        n_units = graph.n_proofs
    else:
        raise InputError(f"unit must be 'question' or 'proof', got {unit!r}")
    need = n_units if target is None else math.ceil(target * n_units - 1e-9)
    cap = budget if budget is not None else graph.n_facts
    state = _GreedyState(graph, units, n_units, share=SHARE_WEIGHT if share is None else share)
    pruned_total = 0
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        state.run(cap, need)
        kept = _prune(graph, units, n_units, state.order)
        dropped = set(state.order) - set(kept)
        pruned_total += len(dropped)
        for f in dropped:
            state.remove_fact(f)
        # Refill only when pruning freed budget that another round could spend.
        if not dropped or budget is None or state.exhausted:
            break
    chosen = state.order
    if target is not None and state.covered < need:
        raise SolverError(f"target coverage {target} is not reachable: at most {state.covered} of {n_units} "
                          f"{unit}s can be covered by the proofs in the graph")
    return chosen, {"unit": unit, "rounds": rounds, "pruned": pruned_total}


def _count_units(graph: DistillGraph, units: np.ndarray, chosen: list[int]) -> int:
    complete = graph.complete_proofs(np.asarray(chosen, dtype=np.int64))
    return len(np.unique(units[complete]))


class _GreedyState:
    """Missing-fact sets per proof, bucketed by the exact missing set, so that a lookahead finds every
    unit a candidate would cover by probing the subsets of the candidate's missing set (cost independent
    of how many proofs share a popular fact). A bucket holds a multiset {unit: proofs} of its alive proofs."""

    def __init__(self, graph: DistillGraph, units: np.ndarray, n_units: int, share: float = 0.0):
        self.share = share
        cost = graph.proof_cost().astype(np.float64)
        inv = np.divide(1.0, cost, out=np.zeros_like(cost), where=cost > 0)
        self.pot = np.bincount(graph.leaf_indices, weights=inv[graph.proof_rows()], minlength=graph.n_facts).tolist()
        ptr = graph.leaf_indptr.tolist()
        idx = graph.leaf_indices.tolist()
        self.graph = graph
        self.units_arr = units
        self.units = units.tolist()
        self.gen = graph.fact_question_counts().tolist()
        self.f_ptr, self.f_proofs = (a.tolist() for a in graph.fact_to_proofs())
        u_ptr, u_proofs = _group(units, n_units)
        self.u_ptr, self.u_proofs = u_ptr.tolist(), u_proofs.tolist()
        self.miss: list[set[int]] = [set(idx[ptr[p]:ptr[p + 1]]) for p in range(len(self.units))]
        self.sel = bytearray(graph.n_facts)
        self.ucov = bytearray(n_units)
        self.alive = bytearray(len(self.units))
        self.covered = 0
        self.order: list[int] = []
        self.buckets: dict[frozenset[int], dict[int, int]] = {}
        self.gain_est = [1.0] * len(self.units)
        self.exhausted = False
        self.heap: list[tuple[float, int, int]] = []
        self.started = False
        for p, m in enumerate(self.miss):
            if not m:
                self._cover(self.units[p])
        for p, m in enumerate(self.miss):
            if m and not self.ucov[self.units[p]]:
                self.alive[p] = 1
                self._bucket(p)

    def _cover(self, u: int) -> None:
        if self.ucov[u]:
            return
        self.ucov[u] = 1
        self.covered += 1
        for p in self.u_proofs[self.u_ptr[u]:self.u_ptr[u + 1]]:
            if self.alive[p]:
                self.alive[p] = 0
                self._unbucket(p)

    def _bucket(self, p: int) -> None:
        b = self.buckets.setdefault(frozenset(self.miss[p]), {})
        u = self.units[p]
        b[u] = b.get(u, 0) + 1

    def _unbucket(self, p: int) -> None:
        key = frozenset(self.miss[p])
        b = self.buckets.get(key)
        if b is None:
            return
        u = self.units[p]
        c = b.get(u, 0) - 1
        if c > 0:
            b[u] = c
        else:
            b.pop(u, None)
            if not b:
                del self.buckets[key]

    def add_fact(self, f: int) -> None:
        if self.sel[f]:
            return
        self.sel[f] = 1
        self.order.append(f)
        for p in self.f_proofs[self.f_ptr[f]:self.f_ptr[f + 1]]:
            m = self.miss[p]
            if not self.alive[p]:
                m.discard(f)
                continue
            self._unbucket(p)
            m.discard(f)
            if not m:
                self.alive[p] = 0
                self._cover(self.units[p])
            else:
                self._bucket(p)
                self._push(p)

    def remove_fact(self, f: int) -> None:
        """Undo a choice that pruning showed to be unneeded: every covered unit keeps a complete proof."""
        if not self.sel[f]:
            return
        self.sel[f] = 0
        self.order.remove(f)
        for p in self.f_proofs[self.f_ptr[f]:self.f_ptr[f + 1]]:
            if self.alive[p]:
                self._unbucket(p)
                self.miss[p].add(f)
                self._bucket(p)
                self._push(p)
            else:
                self.miss[p].add(f)

    def lookahead(self, p: int) -> int:
        """Distinct uncovered units that adding p's missing facts would cover."""
        m = self.miss[p]
        k = len(m)
        buckets = self.buckets
        if k == 1:
            return len(buckets.get(frozenset(m), ()))
        ms = sorted(m)
        found = []
        sizes = range(1, k + 1) if k <= _FULL_LOOKAHEAD else (1, 2)
        for r in sizes:
            for combo in combinations(ms, r):
                b = buckets.get(frozenset(combo))
                if b:
                    found.append(b)
        if k > _FULL_LOOKAHEAD:
            b = buckets.get(frozenset(m))
            if b:
                found.append(b)
        if len(found) == 1:
            return len(found[0])
        return len(set().union(*found))  # union of dict keys runs in C

    def _key(self, p: int, gain: float) -> tuple[float, int, int]:
        m = self.miss[p]
        value = gain
        if self.share:
            # progress toward other proofs: each missing fact brings them 1/cost closer (static estimate)
            value += self.share * max(0.0, sum(map(self.pot.__getitem__, m)) - 1.0)
        return (-value / len(m), -sum(map(self.gen.__getitem__, m)), p)

    def _push(self, p: int) -> None:
        if self.started:
            heapq.heappush(self.heap, self._key(p, self.gain_est[p]))

    def run(self, cap: int, need: int) -> None:
        if not self.started:
            self.started = True
            alive = np.frombuffer(bytes(self.alive), dtype=np.uint8).astype(bool)
            gains, gens = _initial_estimates(self.graph, self.units_arr, alive)
            ps = np.flatnonzero(alive)
            costs = self.graph.proof_cost()[ps]
            for p, gnum in zip(ps.tolist(), gains[ps].tolist()):
                self.gain_est[p] = float(gnum)
            value = gains[ps]
            if self.share:
                potsum = np.zeros(self.graph.n_proofs)
                nz = self.graph.proof_cost() > 0
                potsum[nz] = np.add.reduceat(np.asarray(self.pot)[self.graph.leaf_indices],
                                             self.graph.leaf_indptr[:-1][nz])
                value = value + self.share * np.maximum(0.0, potsum[ps] - 1.0)
            self.heap = list(zip((-value / costs).tolist(), (-gens[ps]).tolist(), ps.tolist()))
            heapq.heapify(self.heap)
        blocked: list[tuple[float, int, int]] = []
        while self.heap and self.covered < need and len(self.order) < cap:
            key = heapq.heappop(self.heap)
            p = key[2]
            if not self.alive[p]:
                continue
            cost = len(self.miss[p])
            if cost > cap - len(self.order):
                blocked.append(key)  # may fit after a prune frees budget
                continue
            gain = self.lookahead(p)
            self.gain_est[p] = float(gain)
            fresh = self._key(p, gain)
            if fresh > key:  # worse than it was believed to be: re-queue with the true value
                heapq.heappush(self.heap, fresh)
                continue
            for f in sorted(self.miss[p], key=lambda f: -self.gen[f]):
                self.add_fact(f)
        # Nothing left that could ever be added: refilling after a prune would not help.
        self.exhausted = not self.heap and not blocked
        for key in blocked:
            heapq.heappush(self.heap, key)


def _initial_estimates(graph: DistillGraph, units: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised first keys for every proof: the lookahead gain, estimated from above as the sum
    over the subsets of the proof's leaves of the distinct units whose alive proofs need exactly that
    subset (a unit met in two subsets counts twice; the greedy recomputes exactly before choosing),
    and the generality sum of its leaves. Sets are matched by a 64-bit sum of random fact hashes."""
    rng = np.random.default_rng(12345)
    h = rng.integers(0, 2**63 - 1, size=graph.n_facts, dtype=np.int64).view(np.uint64)
    cost = graph.proof_cost()
    ptr, idx = graph.leaf_indptr, graph.leaf_indices
    # uint64 wrap-around sum per proof (bincount would go through float64 and lose bits)
    full = np.zeros(graph.n_proofs, dtype=np.uint64)
    hv = h[idx]
    nz = cost > 0
    if nz.any():
        starts = ptr[:-1][nz]
        full[nz] = np.add.reduceat(hv, starts) if len(hv) else 0
    gens = np.zeros(graph.n_proofs, dtype=np.int64)
    gen = graph.fact_question_counts()
    if nz.any() and len(idx):
        gens[nz] = np.add.reduceat(gen[idx], ptr[:-1][nz])
    # buckets: alive proofs by full key -> distinct units
    ak, au = full[alive], units[alive]
    pairs = np.unique(np.stack([ak, au.astype(np.uint64)]), axis=1) if len(ak) else np.zeros((2, 0), np.uint64)
    keys, counts = np.unique(pairs[0], return_counts=True)
    gains = np.zeros(graph.n_proofs, dtype=np.float64)
    for k in np.unique(cost[alive]):
        ps = np.flatnonzero(alive & (cost == k))
        leaves = hv[ptr[ps][:, None] + np.arange(k)[None, :]]  # [n, k]
        if k <= _FULL_LOOKAHEAD:
            masks = np.arange(1, 2 ** k, dtype=np.int64)
            bits = ((masks[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)  # [2^k-1, k]
            subsets = [np.flatnonzero(b) for b in bits]
        else:
            subsets = [np.array([i]) for i in range(k)] + [np.array(c) for c in combinations(range(k), 2)] \
                + [np.arange(k)]
        total = np.zeros(len(ps), dtype=np.float64)
        for sub in subsets:
            sh = leaves[:, sub].sum(axis=1, dtype=np.uint64)
            pos = np.searchsorted(keys, sh)
            pos_c = np.minimum(pos, max(len(keys) - 1, 0))
            hit = (pos < len(keys)) & (keys[pos_c] == sh) if len(keys) else np.zeros(len(sh), dtype=bool)
            total[hit] += counts[pos_c[hit]]
        gains[ps] = total
    return gains, gens


def _group(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable").astype(np.int64)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return ptr, order


def _prune(graph: DistillGraph, units: np.ndarray, n_units: int, chosen: list[int]) -> list[int]:
    """Reverse delete: drop chosen facts (least general first) whose removal leaves every covered
    unit with some complete proof; facts in no complete proof go first of all."""
    if not chosen:
        return chosen
    complete = graph.complete_proofs(np.asarray(chosen, dtype=np.int64))
    ccount = np.bincount(units[complete], minlength=n_units).tolist()
    comp = complete.tolist()
    ulist = units.tolist()
    f_ptr, f_proofs = (a.tolist() for a in graph.fact_to_proofs())
    gen = graph.fact_question_counts()
    pos = {f: i for i, f in enumerate(chosen)}
    removed: set[int] = set()
    for f in sorted(chosen, key=lambda f: (gen[f], -pos[f])):
        ps = [p for p in f_proofs[f_ptr[f]:f_ptr[f + 1]] if comp[p]]
        lost: dict[int, int] = {}
        for p in ps:
            lost[ulist[p]] = lost.get(ulist[p], 0) + 1
        if all(ccount[u] - k >= 1 for u, k in lost.items()):
            removed.add(f)
            for p in ps:
                comp[p] = False
            for u, k in lost.items():
                ccount[u] -= k
    return [f for f in chosen if f not in removed]


# ------------------------------------------------------------------------------------------ exact
def exact_cover(graph: DistillGraph, budget: int | None = None, target: float | None = None,
                time_limit: float = 60.0, mip_rel_gap: float = 1e-6) -> tuple[list[int], dict[str, Any]]:
    """Question coverage as a mixed-integer program (HiGHS via scipy.optimize.milp).

    Variables x_f (fact chosen, binary), y_p (proof complete), z_q (question covered); y_p <= x_f
    for every leaf f of p, z_q <= sum_p y_p. With a budget: sum x <= n, maximise sum z. With a target:
    sum z >= target questions, minimise sum x. Only x needs to be integral: for integral x the optimal
    y and z are integral too, which keeps the branch-and-bound small.
    """
    from scipy.optimize import Bounds, milp

    report: dict[str, Any] = {"solver": "highs-milp", "time_limit_s": time_limit}
    program = _cover_program(graph, budget, target, report)
    if program is None:
        report.update(status="trivial", optimal=True, gap=0.0, timed_out=False)
        return [], report
    t0 = time.perf_counter()
    res = milp(program.c, constraints=program.constraints, integrality=program.integrality, bounds=Bounds(0, 1),
               options={"time_limit": float(time_limit), "mip_rel_gap": mip_rel_gap, "disp": False})
    report["solve_s"] = round(time.perf_counter() - t0, 4)
    if res.status not in (0, 1):
        raise SolverError(f"HiGHS could not solve the coverage program: {res.message}")
    chosen, obj = _solution(graph, program, res, budget, target, report)
    dual = getattr(res, "mip_dual_bound", None)
    if dual is not None and np.isfinite(dual):
        bound = -dual if budget is not None else dual
        report["bound"] = round(float(bound) + (program.n_free if budget is not None else 0), 4)
        report["gap"] = round(float(abs(bound - obj) / max(abs(bound), 1e-9)), 6)
    else:
        report["gap"] = None if res.status == 1 else 0.0
    return chosen, report


@dataclass(frozen=True)
class _CoverProgram:
    """The coverage program over its active part: facts, proofs and questions not settled for free.
    Variables are [x (one per `facts`), y (one per active proof), z (one per active question)]."""

    facts: np.ndarray  # graph fact index of each x variable
    n_free: int  # questions the free facts alone already cover
    c: np.ndarray
    constraints: Any  # scipy.optimize.LinearConstraint
    integrality: np.ndarray


def _cover_program(graph: DistillGraph, budget: int | None, target: float | None,
                   report: dict[str, Any]) -> _CoverProgram | None:
    """The program for `budget` or `target`; None when nothing is left to solve. Adds `free_questions`
    to `report`; a SolverError when the target cannot be reached."""
    from scipy.optimize import LinearConstraint
    from scipy.sparse import coo_matrix, vstack

    cost = graph.proof_cost()
    free_q = np.zeros(graph.n_questions, dtype=bool)
    free_q[graph.free_questions()] = True
    n_free = int(free_q.sum())
    report["free_questions"] = n_free
    # Active part: proofs that need facts, of questions not already covered for free.
    act_p = np.flatnonzero((cost > 0) & ~free_q[graph.proof_question])
    rows = graph.proof_rows()
    inc_mask = np.isin(rows, act_p) if len(act_p) < graph.n_proofs else np.ones(len(rows), dtype=bool)
    inc_p, inc_f = rows[inc_mask], graph.leaf_indices[inc_mask]
    act_f, f_local = np.unique(inc_f, return_inverse=True)
    p_local = np.searchsorted(act_p, inc_p)
    act_q, q_local = np.unique(graph.proof_question[act_p], return_inverse=True)
    nx_, ny, nz = len(act_f), len(act_p), len(act_q)
    if ny == 0:
        return None
    need = 0
    if target is not None:
        need = max(0, math.ceil(target * graph.n_questions - 1e-9) - n_free)
        if need > nz:
            raise SolverError(f"target coverage {target} is not reachable: only {nz + n_free} of "
                              f"{graph.n_questions} questions have a proof")
        if need == 0:
            return None
    nv, m = nx_ + ny + nz, len(inc_p)
    # y_p - x_f <= 0 per incidence
    a1 = coo_matrix((np.concatenate([np.ones(m), -np.ones(m)]),
                     (np.concatenate([np.arange(m), np.arange(m)]), np.concatenate([nx_ + p_local, f_local]))),
                    shape=(m, nv))
    # z_q - sum_p y_p <= 0 per question
    a2 = coo_matrix((np.concatenate([np.ones(nz), -np.ones(ny)]),
                     (np.concatenate([np.arange(nz), q_local]),
                      np.concatenate([nx_ + ny + np.arange(nz), nx_ + np.arange(ny)]))), shape=(nz, nv))
    c = np.zeros(nv)
    counted = np.arange(nx_) if budget is not None else nx_ + ny + np.arange(nz)  # sum x <= n, or sum z >= need
    a3 = coo_matrix((np.ones(len(counted)), (np.zeros(len(counted), dtype=np.int64), counted)), shape=(1, nv))
    if budget is not None:
        lb3, ub3 = -np.inf, float(budget)
        c[nx_ + ny:] = -1.0
    else:
        lb3, ub3 = float(need), np.inf
        c[:nx_] = 1.0
    lb = np.concatenate([np.full(m + nz, -np.inf), [lb3]])
    ub = np.concatenate([np.zeros(m + nz), [ub3]])
    integrality = np.zeros(nv)
    integrality[:nx_] = 1
    integrality[nx_ + ny:] = 1  # integral z lets HiGHS see the objective is integral and close the gap
    return _CoverProgram(act_f, n_free, c, LinearConstraint(vstack([a1, a2, a3]).tocsr(), lb, ub), integrality)


def _solution(graph: DistillGraph, program: _CoverProgram, res: Any, budget: int | None, target: float | None,
              report: dict[str, Any]) -> tuple[list[int], float]:
    """The chosen facts and their objective value: the solver's incumbent, or the greedy answer when
    the solver stopped at its time limit without an incumbent or with a worse one."""
    def objective(chosen: list[int]) -> float:
        if budget is None:
            return len(chosen)
        return _count_units(graph, graph.proof_question, chosen) - program.n_free

    timed_out = res.status == 1
    if res.x is None:
        chosen, _ = greedy_cover(graph, budget=budget, target=target)
        report.update(status="time-out, no incumbent: greedy solution returned", timed_out=True, optimal=False,
                      fallback="qc-greedy")
        return chosen, objective(chosen)
    # Facts in no complete proof do not change the objective; drop them.
    chosen = _prune_unneeded(graph, [int(f) for f in program.facts[res.x[:len(program.facts)] > 0.5]])
    obj = -res.fun if budget is not None else res.fun
    report.update(status="optimal" if res.status == 0 else "time limit reached: best solution found",
                  timed_out=timed_out, optimal=res.status == 0)
    if timed_out:
        # The solver's incumbent can be poor when stopped early: keep the greedy answer if it is better.
        g_chosen, _ = greedy_cover(graph, budget=budget, target=target)
        g_obj = objective(g_chosen)
        if (budget is not None and g_obj > obj) or (budget is None and g_obj < obj):
            report.update(status="time limit reached: greedy solution (better than the solver's incumbent)",
                          fallback="qc-greedy")
            return g_chosen, g_obj
    return chosen, obj


def _prune_unneeded(graph: DistillGraph, chosen: list[int]) -> list[int]:
    if not chosen:
        return chosen
    complete = graph.complete_proofs(np.asarray(chosen, dtype=np.int64))
    needed = np.zeros(graph.n_facts, dtype=bool)
    needed[graph.leaf_indices[complete[graph.proof_rows()]]] = True
    return [f for f in chosen if needed[f]]
