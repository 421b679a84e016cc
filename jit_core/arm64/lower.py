"""Lowering of verified eBPF (RFC 9669) to AArch64 words, with branch relaxation.

Register mapping (AAPCS64; the same shape as Linux's arm64 BPF JIT): r0 = x7 (moved to x0 at
exit), r1-r5 = x0-x4 (the argument registers), r6-r9 = x19-x22 and r10 = x25 (callee-saved),
scratch x8-x14. Each program-local function has the prologue

    stp x29, x30, [sp, #-16]! ; mov x29, sp ; stp x19, x20 / x21, x22 / x25, x26, [sp, #-16]!
    mov x25, sp ; sub sp, sp, #512

so r10 points just above its own 512-byte stack and sp stays 16-byte aligned; ``exit`` undoes
it, moves x7 to x0 and returns. ``Compiled.functions`` holds prologue offsets,
``Compiled.insn_offsets`` the offset of each slot's own code (after the prologue for an entry).

Arithmetic needs no fix-ups: UDIV/SDIV give 0 for a zero divisor and SDIV gives INT_MIN for
INT_MIN / -1, exactly the RFC's results; modulo is MSUB(dst - (dst / src) * src), which leaves
dst for a zero divisor and gives 0 for INT_MIN % -1. Atomics are LDXR/STXR loops (ARMv8.0,
cortex-a57 has no LSE); the fetching ones (and xchg, cmpxchg) store with release and end with
DMB ISH, fully ordered like Linux's atomic_fetch_*.

Branches: a conditional branch is B.cond (+-1 MiB) and is relaxed to B.!cond over B
(+-128 MiB) when its target is out of reach; a function-address lddw is ADR (+-1 MiB), relaxed
to ADR + MOVZ/MOVK + SXTW + ADD. Forms only grow, so the iteration reaches a fixed point; B and
BL beyond +-128 MiB raise JitError.

The icache mutations (jit_core.intrinsics.ICACHE_MUTATIONS) change only the icache_sync /
context_sync sequences (see intrinsics.icache_sync): no_dc_clean drops the DC CVAU loop; no_ic_invalidate
drops the IC IVAU loop; no_dsb drops both DSB ISH; no_isb drops the ISB of icache_sync and of
context_sync; wrong_line_size steps both loops by 2x the CTR_EL0 line size; half_range halves
r2 before the loops. fence_i_writer_only and no_serialize change nothing on arm64.
Ordering mutations: acquire_as_plain / release_as_plain lower load-acquire / store-release as
LDR / STR; fetch_atomic_relaxed drops the release of STLXR and the trailing DMB ISH of fetching
atomics; fence_full_as_* put DMB ISHST / ISHLD where DMB ISH was (intrinsics.full_barrier);
self_sub_as_zero and drop_branch_to_next are applied to the IR (compile.lowered_ir);
branch_as_select if-converts ``if rX op K goto +1; rY = imm-or-reg`` (64-bit move, nothing else
jumping to it) into CMP + CSEL rY, rY, src, op: rY keeps a dependency on rX through CSEL, but
the instructions after the join lose the control dependency of the branch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import isa
from ..asm import format_insn
from ..backend import Compiled
from ..compile import lowered_ir
from ..errors import JitError
from ..intrinsics import ORDERING_MUTATIONS, Mutation
from ..isa import Insn
from ..verify import CALLX_OPCODE, LDDW_FUNC, verify
from . import encoder as e
from . import intrinsics
from .layout import FIX_ADR, FIX_B, FIX_BCOND, FIX_BL, REGS, T0, T1, T2, T3, T4, CodeBuffer

__all__ = [
    "ALU_REG",
    "ATOMIC_ALU",
    "EPILOGUE",
    "FP",
    "HANDLERS",
    "JUMP_CONDS",
    "LOGIC_IMM",
    "MASK64",
    "PROLOGUE",
    "R0",
    "SHIFT_IMM",
    "SHIFT_REG",
    "SIZE_LOG2",
    "Arm64Backend",
]

R0, FP = REGS[0], REGS[isa.FRAME_REG]
MASK64 = (1 << 64) - 1

PROLOGUE = (
    e.stp(29, 30, e.SP, -16, e.PAIR_PRE), e.add_imm(29, e.SP, 0),
    e.stp(19, 20, e.SP, -16, e.PAIR_PRE), e.stp(21, 22, e.SP, -16, e.PAIR_PRE),
    e.stp(25, 26, e.SP, -16, e.PAIR_PRE),  # x26 only pairs with x25: sp moves in 16-byte steps
    e.add_imm(FP, e.SP, 0), e.sub_imm(e.SP, e.SP, isa.STACK_SIZE),
)
EPILOGUE = (
    e.add_imm(e.SP, FP, 0),
    e.ldp(25, 26, e.SP, 16, e.PAIR_POST), e.ldp(21, 22, e.SP, 16, e.PAIR_POST),
    e.ldp(19, 20, e.SP, 16, e.PAIR_POST), e.ldp(29, 30, e.SP, 16, e.PAIR_POST),
    e.mov_reg(0, R0), e.ret(),
)

JUMP_CONDS = {isa.JEQ: e.EQ, isa.JNE: e.NE, isa.JGT: e.HI, isa.JGE: e.HS, isa.JLT: e.LO,
              isa.JLE: e.LS, isa.JSGT: e.GT, isa.JSGE: e.GE, isa.JSLT: e.LT, isa.JSLE: e.LE,
              isa.JSET: e.NE}
SIZE_LOG2 = {isa.SIZE_B: 0, isa.SIZE_H: 1, isa.SIZE_W: 2, isa.SIZE_DW: 3}
ALU_REG = {isa.ADD: e.add_reg, isa.SUB: e.sub_reg, isa.OR: e.orr_reg, isa.AND: e.and_reg,
           isa.XOR: e.eor_reg}
SHIFT_REG = {isa.LSH: e.lslv, isa.RSH: e.lsrv, isa.ARSH: e.asrv}
SHIFT_IMM = {isa.LSH: e.lsl_imm, isa.RSH: e.lsr_imm, isa.ARSH: e.asr_imm}
LOGIC_IMM = {isa.OR: e.orr_imm, isa.AND: e.and_imm, isa.XOR: e.eor_imm}
ATOMIC_ALU = {isa.ATOMIC_ADD: e.add_reg, isa.ATOMIC_OR: e.orr_reg, isa.ATOMIC_AND: e.and_reg,
              isa.ATOMIC_XOR: e.eor_reg}


class Arm64Backend:
    """The arm64 backend: ``compile`` lowers a verified program to position-independent code."""

    arch = "arm64"
    mutations = frozenset({Mutation.NO_DC_CLEAN, Mutation.NO_IC_INVALIDATE, Mutation.NO_DSB, Mutation.NO_ISB,
                           Mutation.WRONG_LINE_SIZE, Mutation.HALF_RANGE}) | frozenset(
        ORDERING_MUTATIONS
    )
    nop = e.nop().to_bytes(4, "little")
    breakpoint = None  # instructions are aligned words, patched whole
    ucontext_pc = None  # its programs take no signals

    def compile(self, prog: Sequence[Insn], *, mutation: str = "none") -> Compiled:
        """Lower ``prog``. Raises JitError on a program the verifier refuses, an unknown mutation
        or a branch out of native reach; nothing partial is returned."""
        return _Lowering(lowered_ir(prog, mutation), mutation).run()


class _Lowering(CodeBuffer):
    def __init__(self, prog: Sequence[Insn], mutation: str):
        super().__init__(len(prog))
        self.prog = prog
        self.mutation = mutation
        self.selects: frozenset[int] = frozenset()  # jumps lowered as CSEL (branch_as_select)

    def run(self) -> Compiled:
        prog = self.prog
        info = verify(prog)
        entries = set(info.functions)
        self.selects = _select_sites(prog, info.jump_targets) if self.mutation == "branch_as_select" \
            else frozenset()
        code, body = self.code, self.body
        n = len(prog)
        i = 0
        while i < n:
            if i in entries:
                self.entries[i] = len(code)
                code.extend(PROLOGUE)
            body[i] = len(code)
            insn = prog[i]
            self.index = i
            handler = HANDLERS.get(insn.opcode)
            try:
                if handler is None:
                    raise JitError(f"opcode {insn.opcode:#04x} has no arm64 lowering")
                handler(self, insn)
            except JitError as err:
                if err.index is not None:
                    raise
                nxt = prog[i + 1] if i + 1 < n else None
                raise JitError(str(err), i, format_insn(insn, nxt)) from None
            if insn.opcode == isa.LDDW_OPCODE or i in self.selects:
                i += 1
                body[i] = body[i - 1]
            i += 1
        body[n] = len(code)
        return self.link()

    # --- shared pieces -----------------------------------------------------------------------

    def imm_reg(self, imm: int, is64: bool) -> int:
        """A register holding imm32 sign-extended (64-bit) or as is (32-bit): XZR or T0."""
        if imm == 0:
            return e.XZR
        self.code.extend(e.mov_imm(T0, imm if is64 else imm & 0xFFFFFFFF, is64))
        return T0

    def address(self, base: int, off: int) -> int:
        """A register holding base + off: base itself when off is 0, else T1."""
        if off == 0:
            return base
        if 0 < off < 4096:
            self.code.append(e.add_imm(T1, base, off))
        elif -4096 < off < 0:
            self.code.append(e.sub_imm(T1, base, -off))
        else:
            self.code.extend(e.mov_imm(T1, off))
            self.code.append(e.add_reg(T1, base, T1))
        return T1

    def memory(self, op: e.MemOp, rt: int, base: int, off: int) -> None:
        """One load or store of rt at base + off in the shortest addressing form."""
        scale = 1 << op.size
        if 0 <= off < 4096 * scale and off % scale == 0:
            self.code.append(e.ldst_uimm(op, rt, base, off))
        elif -256 <= off < 256:
            self.code.append(e.ldst_unscaled(op, rt, base, off))
        else:
            self.code.extend(e.mov_imm(T1, off))
            self.code.append(e.ldst_reg(op, rt, base, T1))

    # --- ALU -----------------------------------------------------------------------------------

    def alu(self, insn: Insn) -> None:
        is64 = insn.cls == isa.ALU64
        op = insn.opcode & 0xF0
        dst = REGS[insn.dst]
        code = self.code
        if op == isa.NEG:
            code.append(e.sub_reg(dst, e.XZR, dst, is64=is64))
            return
        if op == isa.END:
            self.endian(insn, dst)
            return
        if insn.opcode & isa.SRC_X:
            src = REGS[insn.src]
            if op == isa.MOV:
                code.append(_MOVSX[insn.off](dst, src, is64) if insn.off else e.mov_reg(dst, src, is64))
                return
        else:
            imm = insn.imm
            if op == isa.MOV:
                code.extend(e.mov_imm(dst, imm if is64 else imm & 0xFFFFFFFF, is64))
                return
            if op in SHIFT_IMM:
                code.append(SHIFT_IMM[op](dst, dst, imm & (63 if is64 else 31), is64))
                return
            if op in (isa.ADD, isa.SUB) and -4096 < imm < 4096:
                add = (imm >= 0) == (op == isa.ADD)
                code.append((e.add_imm if add else e.sub_imm)(dst, dst, abs(imm), is64=is64))
                return
            if op in LOGIC_IMM:
                value = imm & (MASK64 if is64 else 0xFFFFFFFF)
                if e.encode_bitmask(value, is64) is not None:
                    code.append(LOGIC_IMM[op](dst, dst, value, is64))
                    return
            src = self.imm_reg(imm, is64)
        if op in ALU_REG:
            code.append(ALU_REG[op](dst, dst, src, is64=is64))
        elif op in SHIFT_REG:
            code.append(SHIFT_REG[op](dst, dst, src, is64))
        elif op == isa.MUL:
            code.append(e.madd(dst, dst, src, e.XZR, is64))
        elif op in (isa.DIV, isa.MOD):
            div = e.sdiv if insn.off == 1 else e.udiv
            if op == isa.DIV:
                code.append(div(dst, dst, src, is64))
            else:
                code += (div(T2, dst, src, is64), e.msub(dst, T2, src, dst, is64))
        else:
            raise JitError(f"ALU operation {op:#x} has no arm64 lowering")

    def endian(self, insn: Insn, dst: int) -> None:
        width = insn.imm
        swap = insn.cls == isa.ALU64 or insn.opcode & isa.SRC_X  # bswap, or to big-endian
        code = self.code
        if width == 16:
            code += (e.rev16(dst, dst, False), e.uxth(dst, dst)) if swap else (e.uxth(dst, dst),)
        elif width == 32:
            code.append(e.rev(dst, dst, False) if swap else e.mov_reg(dst, dst, False))
        elif width == 64:
            if swap:
                code.append(e.rev(dst, dst))
        else:
            raise JitError(f"byte swap width {width} invalid; valid: 16, 32, 64")

    # --- memory --------------------------------------------------------------------------------

    def load(self, insn: Insn) -> None:
        size = SIZE_LOG2[insn.opcode & 0x18]
        signed = insn.opcode & 0xE0 == isa.MODE_MEMSX
        op = e.SIGNED_LOADS[size] if signed else e.LOADS[size]
        self.memory(op, REGS[insn.dst], REGS[insn.src], insn.off)

    def store_imm(self, insn: Insn) -> None:
        size = SIZE_LOG2[insn.opcode & 0x18]
        value = self.imm_reg(insn.imm, size == 3)
        self.memory(e.STORES[size], value, REGS[insn.dst], insn.off)

    def store_reg(self, insn: Insn) -> None:
        size = SIZE_LOG2[insn.opcode & 0x18]
        self.memory(e.STORES[size], REGS[insn.src], REGS[insn.dst], insn.off)

    def atomic(self, insn: Insn) -> None:
        size = SIZE_LOG2[insn.opcode & 0x18]
        op, code = insn.imm, self.code
        src = REGS[insn.src]
        if op == isa.ATOMIC_LOAD_ACQ:
            if self.mutation == "acquire_as_plain":
                self.memory(e.LOADS[size], REGS[insn.dst], src, insn.off)
            else:
                code.append(e.ldar(size, REGS[insn.dst], self.address(src, insn.off)))
            return
        addr = self.address(REGS[insn.dst], insn.off)
        if op == isa.ATOMIC_STORE_REL:
            code.append(e.ldst_uimm(e.STORES[size], src, addr, 0) if self.mutation == "release_as_plain"
                        else e.stlr(size, src, addr))
            return
        is64 = size == 3
        ordered = self.mutation != "fetch_atomic_relaxed"
        barrier = [intrinsics.full_barrier(self.mutation)] if ordered else []
        if op == isa.ATOMIC_CMPXCHG:
            code += (e.ldxr(size, T2, addr), e.cmp_reg(T2, R0, is64), e.b_cond(e.NE, 12 + 4 * len(barrier)),
                     e.stxr(size, T4, src, addr, release=ordered), e.cbnz(T4, -16, False), *barrier,
                     e.mov_reg(R0, T2, is64))
            return
        if op == isa.ATOMIC_XCHG:
            code += (e.ldxr(size, T2, addr), e.stxr(size, T4, src, addr, release=ordered),
                     e.cbnz(T4, -8, False), *barrier, e.mov_reg(src, T2, is64))
            return
        fetch = bool(op & isa.ATOMIC_FETCH)
        alu = ATOMIC_ALU.get(op & ~isa.ATOMIC_FETCH)
        if alu is None:
            raise JitError(f"atomic operation {op:#x} has no arm64 lowering")
        code += (e.ldxr(size, T2, addr), alu(T3, T2, src, is64=is64),
                 e.stxr(size, T4, T3, addr, release=fetch and ordered), e.cbnz(T4, -12, False))
        if fetch:
            code += (*barrier, e.mov_reg(src, T2, is64))

    def lddw(self, insn: Insn) -> None:
        dst = REGS[insn.dst]
        if insn.src == LDDW_FUNC:
            self.fixup(FIX_ADR, self.index + insn.imm + 1, entry=True, arg=dst)
            return
        nxt = self.prog[self.index + 1]
        self.code.extend(e.mov_imm(dst, isa.lddw_imm(insn, nxt)))

    # --- control flow -----------------------------------------------------------------------

    def jump(self, insn: Insn) -> None:
        op = insn.opcode & 0xF0
        if op == isa.JA:
            off = insn.imm if insn.cls == isa.JMP32 else insn.off
            self.fixup(FIX_B, self.index + off + 1)
            return
        is64 = insn.cls == isa.JMP
        code = self.code
        dst = REGS[insn.dst]
        if insn.opcode & isa.SRC_X:
            rhs = REGS[insn.src]
            code.append(e.tst_reg(dst, rhs, is64) if op == isa.JSET else e.cmp_reg(dst, rhs, is64))
        elif op == isa.JSET:
            mask = insn.imm & (MASK64 if is64 else 0xFFFFFFFF)
            if e.encode_bitmask(mask, is64) is not None:
                code.append(e.ands_imm(e.XZR, dst, mask, is64))
            else:
                code.append(e.tst_reg(dst, self.imm_reg(insn.imm, is64), is64))
        elif 0 <= insn.imm < 4096:
            code.append(e.cmp_imm(dst, insn.imm, is64))
        elif -4096 < insn.imm < 0:
            code.append(e.cmn_imm(dst, -insn.imm, is64))
        else:
            code.append(e.cmp_reg(dst, self.imm_reg(insn.imm, is64), is64))
        if self.index in self.selects:
            move = self.prog[self.index + 1]
            src = REGS[move.src] if move.opcode & isa.SRC_X else self.imm_reg(move.imm, True)
            moved = REGS[move.dst]
            code.append(e.csel(moved, moved, src, JUMP_CONDS[op]))
            return
        self.fixup(FIX_BCOND, self.index + insn.off + 1, arg=JUMP_CONDS[op])

    def call(self, insn: Insn) -> None:
        if insn.src == isa.CALL_LOCAL:
            self.fixup(FIX_BL, self.index + insn.imm + 1, entry=True)
            self.code.append(e.mov_reg(R0, 0))
        else:
            self.code.extend(intrinsics.helper_words(insn.imm, self.mutation))

    def callx(self, insn: Insn) -> None:
        self.code += (e.blr(REGS[insn.dst]), e.mov_reg(R0, 0))

    def exit(self, insn: Insn) -> None:
        self.code.extend(EPILOGUE)


def _select_sites(prog: Sequence[Insn], jump_targets: frozenset[int]) -> frozenset[int]:
    """The conditional jumps that skip exactly one 64-bit register move (``mov``, no sign
    extension) that nothing else jumps to: what branch_as_select turns into CSEL. A 32-bit move is
    left alone (CSEL would have to zero-extend the kept register too)."""
    moves = {isa.ALU64 | isa.MOV | isa.SRC_K, isa.ALU64 | isa.MOV | isa.SRC_X}
    return frozenset(
        i for i, insn in enumerate(prog[:-1])
        if insn.cls in (isa.JMP, isa.JMP32) and insn.opcode & 0xF0 in isa.COND_JUMPS and insn.off == 1
        and prog[i + 1].opcode in moves and prog[i + 1].off == 0 and i + 1 not in jump_targets
    )


_MOVSX: dict[int, Callable[[int, int, bool], int]] = {
    8: e.sxtb, 16: e.sxth, 32: lambda rd, rn, is64: e.sxtw(rd, rn),
}


def _handlers() -> dict[int, Callable[[_Lowering, Insn], None]]:
    table: dict[int, Callable[[_Lowering, Insn], None]] = {}
    for cls in (isa.ALU, isa.ALU64):
        for op in isa.ALU_OPS:
            for src in (isa.SRC_K, isa.SRC_X):
                table[cls | op | src] = _Lowering.alu
    for cls in (isa.JMP, isa.JMP32):
        for op in isa.COND_JUMPS:
            for src in (isa.SRC_K, isa.SRC_X):
                table[cls | op | src] = _Lowering.jump
    table[isa.JMP | isa.JA] = table[isa.JMP32 | isa.JA] = _Lowering.jump
    table[isa.JMP | isa.CALL] = _Lowering.call
    table[CALLX_OPCODE] = _Lowering.callx
    table[isa.EXIT_OPCODE] = _Lowering.exit
    table[isa.LDDW_OPCODE] = _Lowering.lddw
    for size in SIZE_LOG2:
        table[isa.LDX | isa.MODE_MEM | size] = _Lowering.load
        table[isa.ST | isa.MODE_MEM | size] = _Lowering.store_imm
        table[isa.STX | isa.MODE_MEM | size] = _Lowering.store_reg
        table[isa.STX | isa.MODE_ATOMIC | size] = _Lowering.atomic
        if size != isa.SIZE_DW:
            table[isa.LDX | isa.MODE_MEMSX | size] = _Lowering.load
    return table


HANDLERS = _handlers()
