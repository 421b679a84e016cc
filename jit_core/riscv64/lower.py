"""Lowering of verified eBPF (RFC 9669) to RV64GC, with branch relaxation (layout.py).

Register mapping (LP64D psABI; the shape of Linux's riscv BPF JIT): r0 = a5 (moved to a0 at
exit), r1-r5 = a0-a4 (the argument registers), r6-r9 = s1-s4, r10 = s5 (callee-saved);
scratch t0-t3, with t6 reserved for far jumps. Each program-local function has the prologue

    addi sp, sp, -560 ; sd ra, s1-s5 at sp+512.. ; addi s5, sp, 512

so r10 points just above its own 512-byte stack and sp stays 16-byte aligned at every call
and ECALL; ``exit`` jumps to the epilogue, which moves a5 to a0, restores and returns.
``Compiled.functions`` holds prologue offsets, ``Compiled.insn_offsets`` the offset of each
slot's own code (after the prologue for an entry). No RVC compressed forms are emitted.

What RISC-V gives differently from the RFC, and the fix-ups for it:
- DIV/DIVU by zero give all-ones, the RFC wants 0: the quotient is ANDed with a mask that is
  all-ones when the divisor is non-zero (SLTU + SUB), computed before the divide. Signed
  overflow (INT_MIN / -1) gives INT_MIN and REM gives 0, and REM/REMU by zero give the
  dividend, all as the RFC says.
- The *W forms sign-extend their 32-bit result; eBPF 32-bit results are zero-extended, so they
  end in SLLI 32 + SRLI 32 (RV64GC has no Zba zext.w).
- JMP32 compares both operands sign-extended from 32 bits (ADDIW): sign extension is one-to-one
  and order-preserving for both signed and unsigned order, so every condition holds on the
  extended values exactly when it holds on the 32-bit ones.
- No Zbb: byte swaps are shift/mask sequences.
- 32-bit AMOs and LR.W sign-extend the fetched word; the fetched value is zero-extended after.
Atomic read-modify-writes are .aqrl (fully ordered); cmpxchg is an LR.aqrl/SC.rl loop followed
by FENCE rw,rw. Load-acquire is the load then FENCE r,rw; store-release is FENCE rw,w then the
store. Mutations and the intrinsics: see intrinsics.py; the ordering mutations drop the
acquire/release fences (acquire_as_plain, release_as_plain), the .aq/.rl bits and cmpxchg's
trailing fence (fetch_atomic_relaxed), or weaken FENCE rw,rw (fence_full_as_*).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import isa
from ..backend import Compiled
from ..compile import lowered_ir
from ..errors import JitError
from ..intrinsics import ORDERING_MUTATIONS, Mutation
from ..isa import Insn
from ..verify import CALLX_OPCODE, LDDW_FUNC, verify
from . import encoder as E
from .encoder import Reg
from .intrinsics import full_fence, helper_words
from .layout import CodeBuffer

__all__ = [
    "ALU_IMM12",
    "ALU_REG",
    "AMO_OPS",
    "BEQ",
    "BGE",
    "BGEU",
    "BLT",
    "BLTU",
    "BNE",
    "DIVIDE",
    "EPILOGUE",
    "FP",
    "FRAME_SIZE",
    "JUMP_CONDS",
    "LOADS",
    "PROLOGUE",
    "R0",
    "REGS",
    "SHIFT_IMM",
    "STORES",
    "SX_LOADS",
    "T0",
    "T1",
    "T2",
    "T3",
    "ZERO",
    "RiscV64Backend",
    "zext32",
]

REGS = (Reg.A5, Reg.A0, Reg.A1, Reg.A2, Reg.A3, Reg.A4, Reg.S1, Reg.S2, Reg.S3, Reg.S4, Reg.S5)
R0, FP = REGS[0], REGS[isa.FRAME_REG]
T0, T1, T2, T3 = Reg.T0, Reg.T1, Reg.T2, Reg.T3
ZERO = Reg.ZERO

_SAVED = (Reg.RA, Reg.S1, Reg.S2, Reg.S3, Reg.S4, Reg.S5)
FRAME_SIZE = isa.STACK_SIZE + 8 * len(_SAVED)  # 560, a multiple of 16
PROLOGUE = (
    E.addi(Reg.SP, Reg.SP, -FRAME_SIZE),
    *(E.sd(r, Reg.SP, isa.STACK_SIZE + 8 * k) for k, r in enumerate(_SAVED)),
    E.addi(FP, Reg.SP, isa.STACK_SIZE),
)
EPILOGUE = (
    E.mv(Reg.A0, R0),
    *(E.ld(r, Reg.SP, isa.STACK_SIZE + 8 * k) for k, r in enumerate(_SAVED)),
    E.addi(Reg.SP, Reg.SP, FRAME_SIZE),
    E.jalr(ZERO, Reg.RA, 0),
)


def zext32(r: int) -> list[int]:
    """Zero-extend the low 32 bits of ``r`` in place."""
    return [E.slli(r, r, 32), E.srli(r, r, 32)]


# eBPF ALU op -> (64-bit form, 32-bit form) for register operands.
ALU_REG = {
    isa.ADD: (E.add, E.addw), isa.SUB: (E.sub, E.subw), isa.MUL: (E.mul, E.mulw),
    isa.OR: (E.or_, E.or_), isa.AND: (E.and_, E.and_), isa.XOR: (E.xor, E.xor),
    isa.LSH: (E.sll, E.sllw), isa.RSH: (E.srl, E.srlw), isa.ARSH: (E.sra, E.sraw),
}
ALU_IMM12 = {isa.ADD: E.addi, isa.OR: E.ori, isa.AND: E.andi, isa.XOR: E.xori}
SHIFT_IMM = {isa.LSH: (E.slli, E.slliw), isa.RSH: (E.srli, E.srliw), isa.ARSH: (E.srai, E.sraiw)}
# (DIV|MOD, signed) -> (64-bit form, 32-bit form)
DIVIDE = {
    (isa.DIV, 0): (E.divu, E.divuw), (isa.DIV, 1): (E.div, E.divw),
    (isa.MOD, 0): (E.remu, E.remuw), (isa.MOD, 1): (E.rem, E.remw),
}

# B-type funct3 and whether the operands are swapped (a > b is b < a).
BEQ, BNE, BLT, BGE, BLTU, BGEU = 0, 1, 4, 5, 6, 7
JUMP_CONDS = {
    isa.JEQ: (BEQ, False), isa.JNE: (BNE, False), isa.JSET: (BNE, False),
    isa.JGT: (BLTU, True), isa.JGE: (BGEU, False), isa.JLT: (BLTU, False), isa.JLE: (BGEU, True),
    isa.JSGT: (BLT, True), isa.JSGE: (BGE, False), isa.JSLT: (BLT, False), isa.JSLE: (BGE, True),
}
LOADS = {isa.SIZE_B: E.lbu, isa.SIZE_H: E.lhu, isa.SIZE_W: E.lwu, isa.SIZE_DW: E.ld}
SX_LOADS = {isa.SIZE_B: E.lb, isa.SIZE_H: E.lh, isa.SIZE_W: E.lw}
STORES = {isa.SIZE_B: E.sb, isa.SIZE_H: E.sh, isa.SIZE_W: E.sw, isa.SIZE_DW: E.sd}
AMO_OPS = {isa.ATOMIC_ADD: "add", isa.ATOMIC_OR: "or", isa.ATOMIC_AND: "and", isa.ATOMIC_XOR: "xor"}


class _Lowering:
    def __init__(self, prog: Sequence[Insn], mutation: str):
        self.prog = prog
        self.mutation = mutation
        self.info = verify(prog)
        self.buf = CodeBuffer()
        self.words = self.buf.words  # straight-line code is appended here directly
        self.body = self.buf.new_labels(len(prog))
        self.entry = {f: self.buf.new_label() for f in self.info.functions}
        self.epilogue = {f: self.buf.new_label() for f in self.info.functions}

    def run(self) -> Compiled:
        prog, buf = self.prog, self.buf
        for f in self.info.functions:
            end = self.info.function_end(f)
            buf.bind(self.entry[f])
            self.words.extend(PROLOGUE)
            i = f
            while i < end:
                buf.bind(self.body[i])
                try:
                    i = self.lower(i, prog[i], end)
                except JitError as exc:
                    raise _error_at(prog, i, exc) from None
            buf.bind(self.epilogue[f])
            self.words.extend(EPILOGUE)
        code = buf.finish()
        offsets = [buf.offset(label) for label in self.body]
        for i, insn in enumerate(prog[:-1]):
            if insn.opcode == isa.LDDW_OPCODE:
                offsets[i + 1] = offsets[i]
        return Compiled("riscv64", code, offsets, {f: buf.offset(self.entry[f]) for f in self.info.functions})

    def lower(self, i: int, insn: Insn, end: int) -> int:
        """Emit slot ``i``; return the index of the next slot to lower."""
        cls = insn.opcode & 0x07
        if cls == isa.ALU64 or cls == isa.ALU:
            self.alu(insn, cls == isa.ALU64)
        elif cls == isa.JMP or cls == isa.JMP32:
            self.jump(i, insn, end)
        elif insn.opcode == isa.LDDW_OPCODE:
            self.lddw(i, insn)
            return i + 2
        elif cls == isa.LDX:
            self.load(insn)
        elif cls == isa.ST or (insn.opcode & 0xE0) == isa.MODE_MEM:
            self.store(insn)
        else:
            self.atomic(insn)
        return i + 1

    # ---- ALU --------------------------------------------------------------------------------

    def alu(self, insn: Insn, is64: bool) -> None:
        w = self.words
        op, d = insn.opcode & 0xF0, REGS[insn.dst]
        by_reg = insn.opcode & isa.SRC_X
        if op == isa.END:
            self.endian(insn, d, is64)
            return
        if op == isa.MOV:
            self.mov(insn, d, is64, by_reg)
            return
        if op == isa.NEG:
            w.append(E.sub(d, ZERO, d))
        elif op in SHIFT_IMM and not by_reg:
            w.append(SHIFT_IMM[op][not is64](d, d, insn.imm & (63 if is64 else 31)))
        elif op == isa.DIV or op == isa.MOD:
            self.divide(insn, op, d, is64, by_reg)
        else:
            imm = insn.imm
            if not by_reg and op == isa.SUB and E.fits_simm12(-imm):
                w.append(E.addi(d, d, -imm))
            elif not by_reg and op in ALU_IMM12 and E.fits_simm12(imm):
                w.append(ALU_IMM12[op](d, d, imm))
            else:
                src = REGS[insn.src] if by_reg else self.constant(T0, imm)
                w.append(ALU_REG[op][not is64](d, d, src))
        if not is64:
            w.extend(zext32(d))

    def constant(self, rd: int, value: int) -> int:
        """Materialize ``value`` into ``rd`` (x0 when it is 0) and return the register holding it."""
        if value == 0:
            return ZERO
        self.words.extend(E.li(rd, value))
        return rd

    def divide(self, insn: Insn, op: int, d: int, is64: bool, by_reg: int) -> None:
        w = self.words
        form = DIVIDE[op, insn.off][not is64]
        if not by_reg and insn.imm == 0:  # constant zero divisor: div gives 0, mod leaves dst
            if op == isa.DIV:
                w.append(E.mv(d, ZERO))
            return
        if not by_reg:
            w.extend(E.li(T1, insn.imm))
            w.append(form(d, d, T1))
            return
        s = REGS[insn.src]
        if op == isa.DIV:
            # T0 = all-ones if the divisor (its low half for 32-bit) is non-zero, else 0.
            if is64:
                w.append(E.sltu(T0, ZERO, s))
            else:
                w += [E.slli(T0, s, 32), E.sltu(T0, ZERO, T0)]
            w += [E.sub(T0, ZERO, T0), form(d, d, s), E.and_(d, d, T0)]
        else:
            w.append(form(d, d, s))

    def mov(self, insn: Insn, d: int, is64: bool, by_reg: int) -> None:
        w = self.words
        if not by_reg:
            w.extend(E.li(d, insn.imm if is64 else insn.imm & 0xFFFFFFFF))
            return
        s, bits = REGS[insn.src], insn.off
        if bits == 0:
            if is64:
                if d != s:
                    w.append(E.mv(d, s))
            else:
                w += [E.slli(d, s, 32), E.srli(d, d, 32)]
        elif bits == 32:
            w.append(E.addiw(d, s, 0))
        elif is64:
            w += [E.slli(d, s, 64 - bits), E.srai(d, d, 64 - bits)]
        else:  # sign-extend the low byte/half to 32 bits, zero-extend that to 64
            w += [E.slli(d, s, 64 - bits), E.srai(d, d, 32 - bits), E.srli(d, d, 32)]

    def endian(self, insn: Insn, d: int, is64: bool) -> None:
        nbytes = insn.imm // 8
        if not is64 and not insn.opcode & isa.SRC_X:  # to little-endian on a little-endian hart
            if nbytes < 8:
                self.words += [E.slli(d, d, 64 - insn.imm), E.srli(d, d, 64 - insn.imm)]
            return
        # Byte swap of the low nbytes: peel bytes off d's low end into T1's low end.
        w = self.words
        w.append(E.andi(T1, d, 0xFF))
        for _ in range(nbytes - 1):
            w += [E.slli(T1, T1, 8), E.srli(d, d, 8), E.andi(T0, d, 0xFF), E.or_(T1, T1, T0)]
        w.append(E.mv(d, T1))

    # ---- memory ---------------------------------------------------------------------------

    def address(self, base: int, off: int) -> tuple[int, int]:
        """(register, 12-bit offset) reaching base + off; uses T0 for offsets beyond 12 bits."""
        if E.fits_simm12(off):
            return base, off
        self.words += [*E.li(T0, off), E.add(T0, T0, base)]
        return T0, 0

    def load(self, insn: Insn) -> None:
        size = insn.opcode & 0x18
        form = SX_LOADS[size] if (insn.opcode & 0xE0) == isa.MODE_MEMSX else LOADS[size]
        base, off = self.address(REGS[insn.src], insn.off)
        self.words.append(form(REGS[insn.dst], base, off))

    def store(self, insn: Insn) -> None:
        value = REGS[insn.src] if insn.cls == isa.STX else self.constant(T1, insn.imm)
        base, off = self.address(REGS[insn.dst], insn.off)
        self.words.append(STORES[insn.opcode & 0x18](value, base, off))

    def atomic(self, insn: Insn) -> None:
        w, op, size = self.words, insn.imm, insn.opcode & 0x18
        if op == isa.ATOMIC_LOAD_ACQ:
            self.load(insn)
            if self.mutation != "acquire_as_plain":
                w.append(E.fence("r", "rw"))
            return
        if op == isa.ATOMIC_STORE_REL:
            if self.mutation != "release_as_plain":
                w.append(E.fence("rw", "w"))
            self.store(insn)
            return
        ordered = self.mutation != "fetch_atomic_relaxed"
        nbytes = isa.SIZE_BYTES[size]
        base, off = self.address(REGS[insn.dst], insn.off)
        if off:
            w.append(E.addi(T0, base, off))
            base = T0
        s = REGS[insn.src]
        if op == isa.ATOMIC_CMPXCHG:
            self.cmpxchg(nbytes, base, s, ordered)
            return
        fetch = op & isa.ATOMIC_FETCH
        name = "swap" if op == isa.ATOMIC_XCHG else AMO_OPS[op & ~isa.ATOMIC_FETCH]
        w.append(E.amo(name, nbytes, s if fetch else ZERO, s, base, aq=ordered, rl=ordered))
        if fetch and nbytes == 4:
            w.extend(zext32(s))

    def cmpxchg(self, nbytes: int, base: int, s: int, ordered: bool) -> None:
        expected = R0
        if nbytes == 4:  # LR.W sign-extends, so compare with r0's sign-extended low half
            self.words.append(E.addiw(T1, R0, 0))
            expected = T1
        self.words += [
            E.lr(nbytes, T2, base, aq=ordered, rl=ordered),
            E.bne(T2, expected, 12),
            E.sc(nbytes, T3, s, base, rl=ordered),
            E.bne(T3, ZERO, -12),
            *([full_fence(self.mutation)] if ordered else []),
            E.mv(R0, T2),
        ]
        if nbytes == 4:
            self.words.extend(zext32(R0))

    # ---- control flow ---------------------------------------------------------------------

    def lddw(self, i: int, insn: Insn) -> None:
        d = REGS[insn.dst]
        if insn.src == LDDW_FUNC:
            self.buf.address(d, self.entry[i + insn.imm + 1])
        else:
            self.words.extend(E.li(d, isa.lddw_imm(insn, self.prog[i + 1])))

    def jump(self, i: int, insn: Insn, end: int) -> None:
        op, buf = insn.opcode & 0xF0, self.buf
        if op == isa.JA:
            buf.jump(self.body[i + 1 + (insn.imm if insn.cls == isa.JMP32 else insn.off)])
        elif op == isa.EXIT:
            if i + 1 != end:  # the epilogue follows the last slot directly
                buf.jump(self.epilogue[self.info.function_of(i)])
        elif insn.opcode == CALLX_OPCODE:
            self.words += [E.jalr(Reg.RA, REGS[insn.dst], 0), E.mv(R0, Reg.A0)]
        elif op == isa.CALL:
            if insn.src == isa.CALL_LOCAL:
                buf.call(self.entry[i + insn.imm + 1])
                self.words.append(E.mv(R0, Reg.A0))
            else:
                self.words.extend(helper_words(insn.imm, self.mutation))
        else:
            self.cond_jump(i, insn, op)

    def cond_jump(self, i: int, insn: Insn, op: int) -> None:
        w = self.words
        a: int = REGS[insn.dst]
        by_reg = insn.opcode & isa.SRC_X
        if insn.cls == isa.JMP32:
            w.append(E.addiw(T0, a, 0))
            a = T0
        if not by_reg:
            b = ZERO if op == isa.JSET and E.fits_simm12(insn.imm) else self.constant(T1, insn.imm)
        elif insn.cls == isa.JMP32:
            w.append(E.addiw(T1, REGS[insn.src], 0))
            b = T1
        else:
            b = REGS[insn.src]
        if op == isa.JSET:
            w.append(E.andi(T0, a, insn.imm) if b == ZERO else E.and_(T0, a, b))
            a, b = T0, ZERO
        funct3, swap = JUMP_CONDS[op]
        if swap:
            a, b = b, a
        self.buf.branch(funct3, a, b, self.body[i + 1 + insn.off])


def _error_at(prog: Sequence[Insn], i: int, exc: JitError) -> JitError:
    from ..asm import format_insn  # the assembler imports the verifier, which imports isa only

    if exc.index is not None:
        return exc
    return JitError(str(exc), i, format_insn(prog[i], prog[i + 1] if i + 1 < len(prog) else None))


class RiscV64Backend:
    """The riscv64 backend (``jit_core.backend.Backend``)."""

    arch = "riscv64"
    # branch_as_select needs a conditional select, which RV64GC lacks (Zicond is not in the profile)
    mutations = frozenset({Mutation.HALF_RANGE, Mutation.FENCE_I_WRITER_ONLY}) | frozenset(
        ORDERING_MUTATIONS
    ) - {Mutation.BRANCH_AS_SELECT}
    nop = E.addi(Reg.ZERO, Reg.ZERO, 0).to_bytes(4, "little")
    breakpoint = None  # instructions are aligned words, patched whole
    ucontext_pc = None  # its programs take no signals

    def compile(self, prog: Sequence[Insn], *, mutation: str = "none") -> Compiled:
        """Verify and lower ``prog`` to position-independent RV64GC code.

        Raises JitError for an unknown mutation, or (naming the instruction) for a program the
        verifier refuses or an operand the encoder cannot express; nothing partial is returned.
        """
        return _Lowering(lowered_ir(prog, mutation), mutation).run()
