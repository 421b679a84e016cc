"""Memory semantics of AArch64 instructions (decoder-neutral litmus.machine.Instr): the events
each one produces and the dependencies it carries.

Shared by jit_core's compiled code (decoded by capstone) and AArch64 litmus tests (parsed by
litmus_dialect). Registers are canonical x names; a W write zero-extends. A store-exclusive
always succeeds (status 0): a failing one only makes a loop retry, and the retried iteration is
a run the enumeration covers anyway. LSE atomics (CAS, SWP, LDADD, STADD and their A/L forms)
are a read and a write related by rmw (a failing CAS only a read); a successful CAS is two
candidates, Rs's new value depending on Rs or on the memory read (``cas_success_rs``). CSEL
passes the selected register's dependencies on and turns the condition's into pick dependencies
(Arm ARM B2.3.7, aarch64.cat's pick-* relations), which order only later writes.
"""

from __future__ import annotations

from collections.abc import Callable

from litmus.events import NO_TAINT, Kind, Tag, Taint, ThreadBuilder
from litmus.machine import M64, Instr, Operand, OperandKind, Registers, signed, unsupported

__all__ = ["Arm64Thread", "CONDS", "DMB", "canon", "cas_success_rs"]

# DMB options (Arm ARM C6.2.81): which earlier and later accesses each orders.
DMB = {
    "ish": (Kind.RW, Kind.RW),
    "sy": (Kind.RW, Kind.RW),
    "osh": (Kind.RW, Kind.RW),
    "ishld": (Kind.R, Kind.RW),
    "ld": (Kind.R, Kind.RW),
    "oshld": (Kind.R, Kind.RW),
    "ishst": (Kind.W, Kind.W),
    "st": (Kind.W, Kind.W),
    "oshst": (Kind.W, Kind.W),
}
CONDS: dict[str, Callable[[int, int, int], bool]] = {
    "eq": lambda a, b, w: a == b,
    "ne": lambda a, b, w: a != b,
    "hs": lambda a, b, w: a >= b,
    "cs": lambda a, b, w: a >= b,
    "lo": lambda a, b, w: a < b,
    "cc": lambda a, b, w: a < b,
    "hi": lambda a, b, w: a > b,
    "ls": lambda a, b, w: a <= b,
    "ge": lambda a, b, w: signed(a, w) >= signed(b, w),
    "lt": lambda a, b, w: signed(a, w) < signed(b, w),
    "gt": lambda a, b, w: signed(a, w) > signed(b, w),
    "le": lambda a, b, w: signed(a, w) <= signed(b, w),
}
_ALU: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "and": lambda a, b: a & b,
    "orr": lambda a, b: a | b,
    "eor": lambda a, b: a ^ b,
}
_LOADS = {
    "ldr": set(),
    "ldrb": set(),
    "ldrh": set(),
    "ldar": {Tag.ACQ},
    "ldapr": {Tag.ACQ_PC},
    "ldxr": {Tag.EXCL},
    "ldaxr": {Tag.EXCL, Tag.ACQ},
}
_STORES = {"str": set(), "strb": set(), "strh": set(), "stlr": {Tag.REL}}
_AMO: dict[str, Callable[[int, int], int]] = {
    "swp": lambda old, v: v,
    "ldadd": lambda old, v: old + v,
    "stadd": lambda old, v: old + v,
}
_BYTES = {"b": 8, "h": 16}


def canon(name: str) -> tuple[str, int]:
    """A w/x register name as (x name, width); wzr/xzr are xzr."""
    name = name.lower()
    if name in ("wzr", "xzr"):
        return "xzr", 32 if name[0] == "w" else 64
    if name[0] == "w":
        return "x" + name[1:], 32
    return name, 64


def _split(mnemonic: str, bases: dict[str, Callable[[int, int], int]]) -> tuple[str, str, int] | None:
    """An LSE mnemonic as (base, ordering letters, width override): ``casal`` -> (cas, al, 0)."""
    for base in (*bases, "cas"):
        if mnemonic.startswith(base):
            rest = mnemonic[len(base) :]
            width = _BYTES.get(rest[-1:], 0) if rest[-1:] in _BYTES else 0
            order = rest[:-1] if width else rest
            if order in ("", "a", "l", "al"):
                return base, order, width
    return None


def cas_success_rs(b: ThreadBuilder, read: int, rs_taint: Taint, rs_pick: Taint) -> tuple[Taint, Taint]:
    """(dependency, pick) taints of Rs after a successful CAS whose memory read is ``read``.

    herd7 builds a successful CAS twice (herdtools7 herd/eventsMonad.ml, aarch64_cas_ok: altT of
    `DataFromRRs and `DataFromRx; the edges in herd/event.ml, aarch64_cas), each a candidate of
    its own, so an outcome is allowed when either allows it:
    - DataFromRRs: Rs's register write takes its data from the register read of Rs (the values
      are equal on success), with an iico_ctrl edge from the comparison, which reads memory:
      Rs keeps its dependencies and the memory read reaches it only through pick-dtrm
      (aarch64deps.cat), a pick dependency;
    - DataFromRx: the write takes its data from the memory read (iico_data) and nothing from Rs.
    When Rs carried no dependency, the first has a subset of the second's ordering and so allows
    everything the second does: one run is enough (and the enumeration stays as small)."""
    from_rs = (rs_taint, rs_pick | frozenset({read}))
    if not rs_taint and not rs_pick:
        return from_rs
    return from_rs if b.choose(2) == 0 else (frozenset({read}), NO_TAINT)


class Arm64Thread:
    """One thread's execution state; ``step`` is a litmus.machine.Step."""

    def __init__(self, regs: Registers):
        self.regs = regs
        self.last_exclusive: int | None = None

    def value(self, insn: Instr, op: Operand) -> tuple[int, Taint, Taint]:
        """(value, dependency taint, pick taint) of a register or immediate operand."""
        if op.kind is OperandKind.REG:
            name, width = canon(op.reg)
            value, taint = self.regs.get(name)
            return value & ((1 << width) - 1), taint, self.regs.pick(name)
        if op.kind is OperandKind.IMM:
            return op.value & M64, NO_TAINT, NO_TAINT
        raise unsupported(insn)

    def put(self, op: Operand, value: int, taint: Taint, pick: Taint = NO_TAINT) -> None:
        name, width = canon(op.reg)
        self.regs.set(name, value & ((1 << width) - 1), taint, pick)

    def address(self, insn: Instr, op: Operand) -> tuple[int, Taint, Taint]:
        if op.kind is not OperandKind.MEM:
            raise unsupported(insn)
        base = canon(op.base)[0]
        value, taint = self.regs.get(base)
        pick = self.regs.pick(base)
        if op.index:
            index, itaint = self.regs.get(canon(op.index)[0])
            if op.extend == "sxtw":
                index = signed(index, 32)
            value, taint, pick = value + index, taint | itaint, pick | self.regs.pick(canon(op.index)[0])
        return (value + op.disp) & M64, taint, pick

    def step(self, insn: Instr, _regs: Registers, b: ThreadBuilder) -> int | None:
        m, ops, text = insn.mnemonic, insn.operands, insn.text
        if m == "dmb":
            b.fence(*DMB[insn.cond], insn=text)
        elif m == "isb":
            b.fence(Kind(0), Kind(0), tags={Tag.ISB}, insn=text)
        elif m == "nop":
            pass
        elif m in ("mov", "movz"):
            self.put(ops[0], *self.value(insn, ops[1]))
        elif m == "movk":
            old, taint, pick = self.value(insn, ops[0])
            self.put(ops[0], (old & ~(0xFFFF << ops[1].disp)) | ops[1].value, taint, pick)
        elif m in _ALU:
            (a, ta, pa), (c, tc, pc) = self.value(insn, ops[1]), self.value(insn, ops[2])
            self.put(ops[0], _ALU[m](a, c), ta | tc, pa | pc)
        elif m == "cmp":
            (a, ta, pa), (c, tc, pc) = self.value(insn, ops[0]), self.value(insn, ops[1])
            width = canon(ops[0].reg)[1]
            self.regs.flags = (a, c & ((1 << width) - 1), width)
            self.regs.flags_taint = ta | tc | pa | pc
        elif m == "csel":
            chosen = ops[1] if CONDS[insn.cond](*self.regs.flags) else ops[2]
            value, taint, pick = self.value(insn, chosen)
            self.put(ops[0], value, taint, pick | self.regs.flags_taint)
        elif m in _LOADS:
            loc, taint, pick = self.address(insn, ops[1])
            value, eid = b.read(loc, addr=taint, pick_addr=pick, tags=_LOADS[m], insn=text)
            width = _BYTES.get(m[-1], canon(ops[0].reg)[1]) if m in ("ldrb", "ldrh") else canon(ops[0].reg)[1]
            self.put(ops[0], value & ((1 << width) - 1), frozenset({eid}))
            if Tag.EXCL in _LOADS[m]:
                self.last_exclusive = eid
        elif m in _STORES:
            value, data, pdata = self.value(insn, ops[0])
            loc, taint, pick = self.address(insn, ops[1])
            width = _BYTES[m[-1]] if m in ("strb", "strh") else canon(ops[0].reg)[1]
            b.write(
                loc,
                value & ((1 << width) - 1),
                addr=taint,
                data=data,
                pick_addr=pick,
                pick_data=pdata,
                tags=_STORES[m],
                insn=text,
            )
        elif m in ("stxr", "stlxr"):
            self.store_exclusive(insn, b)
        elif m in ("cbz", "cbnz"):
            value, taint, pick = self.value(insn, ops[0])
            b.branch(taint | pick)
            return ops[1].value if (value == 0) == (m == "cbz") else None
        elif m.startswith("b.") and m[2:] in CONDS:
            b.branch(self.regs.flags_taint)
            return ops[0].value if CONDS[m[2:]](*self.regs.flags) else None
        elif m == "b":
            return ops[0].value
        elif _split(m, _AMO) is not None:
            self.lse(insn, b)
        else:
            raise unsupported(insn)
        return None

    def store_exclusive(self, insn: Instr, b: ThreadBuilder) -> None:
        ops = insn.operands
        value, data, pdata = self.value(insn, ops[1])
        loc, taint, pick = self.address(insn, ops[2])
        tags = {Tag.EXCL, Tag.REL} if insn.mnemonic == "stlxr" else {Tag.EXCL}
        w = b.write(
            loc,
            value & ((1 << canon(ops[1].reg)[1]) - 1),
            addr=taint,
            data=data,
            pick_addr=pick,
            pick_data=pdata,
            tags=tags,
            insn=insn.text,
        )
        if self.last_exclusive is None:
            raise unsupported(insn)
        b.pair(self.last_exclusive, w)
        self.last_exclusive = None
        self.put(ops[0], 0, NO_TAINT)

    def lse(self, insn: Instr, b: ThreadBuilder) -> None:
        """CAS Rs, Rt, [Xn]; SWP/LDADD Rs, Rt, [Xn]; STADD Rs, [Xn] with A/L/AL and B/H forms."""
        split = _split(insn.mnemonic, _AMO)
        assert split is not None
        base, order, width_override = split
        ops = insn.operands
        width = width_override or canon(ops[0].reg)[1]
        mask = (1 << width) - 1
        read_tags = {Tag.AMO} | ({Tag.ACQ} if "a" in order else set())
        write_tags = {Tag.AMO} | ({Tag.REL} if "l" in order else set())
        destination = ops[0] if base == "cas" else ops[1]
        if base == "stadd" or canon(destination.reg)[0] == "xzr":
            # no register receives the value: no acquire (LDADDA XZR is STADD) and DMB LD ignores it
            read_tags = {Tag.AMO, Tag.NORET}
        loc, taint, pick = self.address(insn, ops[-1])
        rs, rs_taint, rs_pick = self.value(insn, ops[0])
        old, rd = b.read(loc, addr=taint, pick_addr=pick, tags=read_tags, insn=insn.text)
        old &= mask
        if base == "cas":
            rt, rt_taint, rt_pick = self.value(insn, ops[1])
            if old == rs & mask:
                # whether the write happens depends on Rs: a pick dependency, not data
                w = b.write(
                    loc,
                    rt & mask,
                    addr=taint,
                    data=rt_taint,
                    pick_addr=pick,
                    pick_data=rt_pick | rs_pick | rs_taint,
                    tags=write_tags,
                    insn=insn.text,
                )
                b.pair(rd, w)
                self.put(ops[0], old, *cas_success_rs(b, rd, rs_taint, rs_pick))
            else:
                self.put(ops[0], old, frozenset({rd}))
            return
        w = b.write(
            loc,
            _AMO[base](old, rs) & mask,
            addr=taint,
            data=rs_taint,
            pick_addr=pick,
            pick_data=rs_pick,
            tags=write_tags,
            insn=insn.text,
        )
        b.pair(rd, w)
        if base != "stadd":
            self.put(ops[1], old, frozenset({rd}))
