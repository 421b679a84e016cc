"""Candidate executions: thread runs combined with a reads-from map and a coherence order.

Enumeration prunes early: a combination of thread runs is dropped when some read's value is
written by nobody; coherence order and reads-from are chosen one location at a time, keeping
only the choices that are coherent (SC per location: acyclic po-loc | rf | co | fr) and atomic
for two-event read-modify-writes, before the locations are combined and the model's global
axioms are checked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol

from . import relations as rel
from .events import Event, Kind, Tag, ThreadRun
from .relations import Rel

Dependency = Literal["addr", "data", "ctrl", "pick_addr", "pick_data"]


@dataclass
class Execution:
    """One candidate execution. ``rf`` maps each read (global index) to the write it reads from,
    None for the initial value; ``co`` lists each location's writes in coherence order (the
    initial write, implicit, comes first)."""

    events: list[Event]
    runs: Sequence[ThreadRun]
    rf_map: dict[int, int | None]
    co_order: dict[int, list[int]]
    rmw_pairs: list[tuple[int, int]]
    _cache: dict[str, Rel] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.events)

    def mask(self, pred: Callable[[Event], bool]) -> int:
        """The set of events for which ``pred(event)`` holds."""
        return sum(1 << i for i, e in enumerate(self.events) if pred(e))

    def tagged(self, tag: Tag) -> int:
        return self.mask(lambda e: tag in e.tags)

    @cached_property
    def reads(self) -> int:
        return self.mask(lambda e: Kind.R in e.kind)

    @cached_property
    def writes(self) -> int:
        return self.mask(lambda e: Kind.W in e.kind)

    @cached_property
    def accesses(self) -> int:
        return self.reads | self.writes

    @cached_property
    def po(self) -> Rel:
        ev = self.events
        return [
            sum(1 << j for j in range(self.n) if ev[j].thread == a.thread and ev[j].index > a.index)
            for a in ev
        ]

    @cached_property
    def same_thread(self) -> Rel:
        ev = self.events
        return [sum(1 << j for j in range(self.n) if ev[j].thread == a.thread) for a in ev]

    @cached_property
    def same_loc(self) -> Rel:
        ev = self.events
        return [sum(1 << j for j in range(self.n) if a.loc is not None and ev[j].loc == a.loc) for a in ev]

    @cached_property
    def po_loc(self) -> Rel:
        return rel.inter(self.po, self.same_loc)

    @cached_property
    def rf(self) -> Rel:
        return rel.from_pairs(self.n, ((w, r) for r, w in self.rf_map.items() if w is not None))

    @cached_property
    def co(self) -> Rel:
        pairs = [
            (a, b) for order in self.co_order.values() for i, a in enumerate(order) for b in order[i + 1 :]
        ]
        return rel.from_pairs(self.n, pairs)

    @cached_property
    def fr(self) -> Rel:
        pairs: list[tuple[int, int]] = []
        for r, w in self.rf_map.items():
            order = self.co_order.get(self.events[r].loc or 0, [])
            later = order if w is None else order[order.index(w) + 1 :]
            pairs.extend((r, x) for x in later if x != r)
        return rel.from_pairs(self.n, pairs)

    @cached_property
    def fence_order(self) -> Rel:
        """[pred];po;[F];po;[succ] for every fence F of the execution (F.pred, F.succ its sets)."""
        return self.fence_order_without(lambda fence, access: False)

    def fence_order_without(self, skip: Callable[[Event, Event], bool]) -> Rel:
        """fence_order leaving out the accesses ``skip(fence, access)`` says a fence does not order."""
        out = rel.empty(self.n)
        for f in self.events:
            if f.kind != Kind.F or not (f.pred and f.succ):
                continue
            before = after = 0
            for j, e in enumerate(self.events):
                if e.thread != f.thread or skip(f, e):
                    continue
                if e.index < f.index and e.kind & f.pred:
                    before |= 1 << j
                elif e.index > f.index and e.kind & f.succ:
                    after |= 1 << j
            for j in range(self.n):
                if before >> j & 1:
                    out[j] |= after
        return out

    @cached_property
    def rmw(self) -> Rel:
        return rel.from_pairs(self.n, self.rmw_pairs)

    def ext(self, r: Rel) -> Rel:
        return rel.diff(r, self.same_thread)

    def inn(self, r: Rel) -> Rel:
        return rel.inter(r, self.same_thread)

    def dependency(self, which: Dependency) -> Rel:
        """A dependency relation from reads to the events depending on them (Event's fields)."""
        if which not in self._cache:
            offsets = self._offsets
            pairs = [(offsets[e.thread] + k, i) for i, e in enumerate(self.events) for k in getattr(e, which)]
            self._cache[which] = rel.from_pairs(self.n, pairs)
        return self._cache[which]

    @cached_property
    def _offsets(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        for i, e in enumerate(self.events):
            offsets.setdefault(e.thread, i - e.index)
        return offsets

    def final_memory(self, init: dict[int, int]) -> dict[int, int]:
        memory = dict(init)
        for loc, order in self.co_order.items():
            if order:
                wval = self.events[order[-1]].wval
                assert wval is not None
                memory[loc] = wval
        return memory


class Model(Protocol):
    """A memory model: the axioms beyond SC-per-location coherence, checked per execution."""

    name: str

    def violation(self, ex: Execution) -> str | None:
        """The name of the first axiom ``ex`` violates, or None if the model allows it."""
        ...


def _per_location(
    loc: int,
    events: list[Event],
    ids: list[int],
    init_value: int,
    rmw_pairs: list[tuple[int, int]],
    po_loc: dict[int, int],
) -> list[tuple[list[int], dict[int, int | None]]]:
    """Coherent (co order, rf map) choices for one location. ``ids`` are its events (global)."""
    writes = [i for i in ids if Kind.W in events[i].kind]
    reads = [i for i in ids if Kind.R in events[i].kind]
    sources: list[list[int | None]] = []
    for r in reads:
        value = events[r].rval
        cands: list[int | None] = [w for w in writes if w != r and events[w].wval == value]
        if init_value == value:
            cands.append(None)
        if not cands:
            return []
        sources.append(cands)
    local = {g: k for k, g in enumerate(ids)}
    m = len(ids)
    pairs_here = [(a, b) for a, b in rmw_pairs if a in local]
    out = []
    for order in itertools.permutations(writes):
        position = {w: k for k, w in enumerate(order)}
        co_rows = [0] * m
        for k, a in enumerate(order):
            for b in order[k + 1 :]:
                co_rows[local[a]] |= 1 << local[b]
        for choice in itertools.product(*sources):
            rows = list(co_rows)
            for g in ids:
                rows[local[g]] |= po_loc.get(g, 0)
            rf_map: dict[int, int | None] = {}
            atomic_ok = True
            for r, w in zip(reads, choice, strict=True):
                rf_map[r] = w
                if w is not None:
                    rows[local[w]] |= 1 << local[r]
                later = order if w is None else order[position[w] + 1 :]
                for x in later:
                    if x != r:
                        rows[local[r]] |= 1 << local[x]
            for a, b in pairs_here:
                w = rf_map[a]
                expected = 0 if w is None else position[w] + 1
                if position[b] != expected:
                    atomic_ok = False
                    break
            if atomic_ok and rel.acyclic(rows):
                out.append((list(order), rf_map))
    return out


def executions(runs_per_thread: Sequence[Sequence[ThreadRun]], init: dict[int, int]) -> Iterator[Execution]:
    """Every coherent, atomic candidate execution of the given thread runs (not yet checked
    against a model's other axioms)."""
    for combo in itertools.product(*runs_per_thread):
        events: list[Event] = []
        rmw_pairs: list[tuple[int, int]] = []
        for run in combo:
            base = len(events)
            events.extend(run.events)
            rmw_pairs.extend((base + a, base + b) for a, b in run.rmw)
        by_loc: dict[int, list[int]] = {}
        for i, e in enumerate(events):
            if e.loc is not None:
                by_loc.setdefault(e.loc, []).append(i)
        po_loc: dict[int, int] = {}
        for ids in by_loc.values():
            local = {g: k for k, g in enumerate(ids)}
            for g in ids:
                po_loc[g] = sum(
                    1 << local[h]
                    for h in ids
                    if events[h].thread == events[g].thread and events[h].index > events[g].index
                )
        options = []
        for loc, ids in by_loc.items():
            choices = _per_location(loc, events, ids, init.get(loc, 0), rmw_pairs, po_loc)
            if not choices:
                break
            options.append((loc, choices))
        else:
            for pick in itertools.product(*(choices for _, choices in options)):
                rf_map: dict[int, int | None] = {}
                co_order: dict[int, list[int]] = {}
                for (loc, _), (order, rf_part) in zip(options, pick, strict=True):
                    co_order[loc] = order
                    rf_map.update(rf_part)
                yield Execution(events, combo, rf_map, co_order, rmw_pairs)
