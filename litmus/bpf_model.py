"""The Linux BPF memory model (herdtools7's bpf.cat, after LKMM), axiom by axiom.

Atomics are single read-modify-write events (Kind.RW); those returning a value carry Tag.SC and
order everything before and after them (po_amo_fetch). SC per location and atomicity are
enforced by the enumeration (execution.executions), so this checks Happens-before and
Propagation.
"""

from __future__ import annotations

from typing import Literal

from . import relations as r
from .events import Kind, Tag
from .execution import Execution

BpfAxiom = Literal["Happens-before", "Propagation"]


class BpfModel:
    """bpf.cat: ppo (full-barrier atomics, RCpc acquire/release, dependencies, pipeline
    dependencies, same-location order), hb and pb acyclic."""

    name = "bpf"

    def violation(self, ex: Execution) -> BpfAxiom | None:
        """``Happens-before`` or ``Propagation`` when violated, else None."""
        po, mem, reads, writes = ex.po, ex.accesses, ex.reads, ex.writes
        full = ex.mask(lambda e: e.kind == Kind.RW and Tag.SC in e.tags)
        po_amo_fetch = r.union(r.restrict(po, mem, full), r.restrict(po, full, mem))
        store_release = r.restrict(po, mem, ex.tagged(Tag.REL))
        rcpc = r.union(r.restrict(po, ex.tagged(Tag.ACQ), mem), store_release)
        addr, data, ctrl = ex.dependency("addr"), ex.dependency("data"), ex.dependency("ctrl")
        rf, co, fr = ex.rf, ex.co, ex.fr
        rfi, rfe = ex.inn(rf), ex.ext(rf)
        everything = (1 << ex.n) - 1
        ppo = r.union(
            po_amo_fetch,
            rcpc,
            r.restrict(addr, reads, mem),
            r.restrict(data, reads, writes),
            r.restrict(ctrl, reads, writes),
            r.seq(r.restrict(r.union(addr, data), mem, writes), r.restrict(rfi, everything, reads)),
            r.restrict(r.seq(r.restrict(addr, mem, mem), po), everything, writes),
            ex.inn(co),
            ex.inn(fr),
        )
        a_cumul = r.seq(r.opt(rfe), r.union(po_amo_fetch, store_release))
        atomics = ex.mask(lambda e: e.kind == Kind.RW)
        amo_sequence = r.star(r.restrict(rf, everything, atomics))
        prop = r.seq(
            r.seq(r.opt(r.union(ex.ext(co), ex.ext(fr))), r.star(r.seq(a_cumul, amo_sequence))), r.opt(rfe)
        )
        hb = r.union(ppo, rfe, ex.inn(r.no_id(prop)))
        if not r.acyclic(hb):
            return "Happens-before"
        if not r.acyclic(r.seq(r.seq(prop, po_amo_fetch), r.star(hb))):
            return "Propagation"
        return None
