"""eBPF (RFC 9669) -> x86_64 lowering.

Register mapping (close to Linux's arch/x86/net/bpf_jit_comp.c; r1-r5 are the SysV argument
registers so a compiled function is an ordinary C function of up to five u64 arguments):

    r0=rax r1=rdi r2=rsi r3=rdx r4=rcx r5=r8 r6=rbx r7=r13 r8=r14 r9=r15 r10=rbp
    temporaries: r11, r10, r9 (caller-saved) and r12 (callee-saved, saved by the prologue)

Frame: every function (main and each program-local one) pushes rbp, rbx, r12-r15, sets
rbp = rsp (the eBPF frame pointer: its 512-byte stack is [rbp-512, rbp)), then reserves the
stack and aligns rsp to 16 bytes whatever the entry alignment (a native call or _start), so
every call and syscall happens with an aligned stack. ``exit`` restores rsp from rbp and pops.

x86 specifics handled here: variable shifts need the count in cl (rcx is eBPF r4), division
needs rdx:rax (eBPF r3 and r0) and traps on a zero divisor and on INT_MIN / -1, so the divisor
is checked first and the RFC result produced without dividing; a 32-bit cmpxchg leaves the
upper half of rax alone when it succeeds, so r0 is zero-extended after it.

Memory ordering: x86 is TSO (Intel SDM vol. 3A, section 9.2 "Memory Ordering", 8.2 in older
editions, "Memory Ordering in P6 and More Recent Processor Families": reads are not reordered
with other reads, writes not with other writes nor with older reads; only a read may pass an
older write to a different location, and locked instructions order everything). So
fence_acquire, fence_release, fence_load_load and fence_store_store need no instruction, a
load-acquire is a plain load and a store-release a plain store; fence_full is MFENCE, which
also orders store -> load.

Code modification (Intel SDM vol. 3A, "Handling Self- and Cross-Modifying Code"): a CPU sees its
own stores to code after a jump, so icache_sync emits nothing; code written by another CPU needs
a serializing instruction on the executing CPU, which context_sync provides with CPUID (leaf 0;
SERIALIZE would do but QEMU TCG may not implement it). CPUID writes eax, ebx, ecx and edx, all
of which are restored.

Output: ``Compiled.functions`` maps each function's entry slot to its prologue;
``insn_offsets`` of an entry slot points after the prologue (where a jump to that slot lands).

Mutations (jit_core.intrinsics.MUTATIONS): ``no_serialize`` makes context_sync emit nothing;
``self_sub_as_zero`` is applied to the IR (compile.lowered_ir). The other ordering mutations
leave the code unchanged: TSO needs no instruction for what they drop.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import isa
from ..asm import format_insn
from ..backend import Compiled
from ..compile import lowered_ir
from ..errors import JitError
from ..intrinsics import Helper, Mutation
from ..isa import Insn
from ..syscalls import syscall_number
from ..verify import CALLX_OPCODE, LDDW_FUNC, verify
from . import encoder as enc
from .encoder import (
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    RAX,
    RBP,
    RBX,
    RCX,
    RDI,
    RDX,
    RSI,
    RSP,
    Cond,
    alu_ri,
    alu_rr,
)
from .layout import CodeBuffer

__all__ = [
    "ARCH",
    "CLONE_THREAD_FLAGS",
    "EPILOGUE",
    "PROLOGUE",
    "REG",
    "SA_RESTORER",
    "SIGSET_SIZE",
    "SYS_CLONE",
    "SYS_EXIT",
    "SYS_RT_SIGACTION",
    "SYS_RT_SIGRETURN",
    "X86_64Backend",
    "mov_imm",
]

ARCH = "x86_64"
# eBPF register -> x86 register.
REG = (RAX, RDI, RSI, RDX, RCX, R8, RBX, R13, R14, R15, RBP)
_T1, _T2, _T3, _T4 = R11, R10, R9, R12
_SAVED = (RBP, RBX, R12, R13, R14, R15)

PROLOGUE = (b"".join(enc.push(r) for r in _SAVED) + alu_rr("mov", RBP, RSP, 8)
            + alu_ri("sub", RSP, isa.STACK_SIZE, 8) + alu_ri("and", RSP, -16, 8))
EPILOGUE = alu_rr("mov", RSP, RBP, 8) + b"".join(enc.pop(r) for r in reversed(_SAVED)) + enc.FIXED["ret"]

_ALU_NAMES = {isa.ADD: "add", isa.SUB: "sub", isa.AND: "and", isa.OR: "or", isa.XOR: "xor"}
_SHIFT_NAMES = {isa.LSH: "shl", isa.RSH: "shr", isa.ARSH: "sar"}
_JUMP_CONDS = {isa.JEQ: Cond.E, isa.JNE: Cond.NE, isa.JGT: Cond.A, isa.JGE: Cond.AE, isa.JLT: Cond.B,
               isa.JLE: Cond.BE, isa.JSGT: Cond.G, isa.JSGE: Cond.GE, isa.JSLT: Cond.L,
               isa.JSLE: Cond.LE, isa.JSET: Cond.NE}
_ATOMIC_RMW = {isa.ATOMIC_ADD: "add", isa.ATOMIC_OR: "or", isa.ATOMIC_AND: "and", isa.ATOMIC_XOR: "xor"}
_ATOMIC_FETCH_LOOP = {isa.ATOMIC_OR | isa.ATOMIC_FETCH: "or", isa.ATOMIC_AND | isa.ATOMIC_FETCH: "and",
                      isa.ATOMIC_XOR | isa.ATOMIC_FETCH: "xor"}

# clone_thread: CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|CHILD_SETTID|CHILD_CLEARTID, no exit signal.
CLONE_THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x1000000 | 0x200000
SYS_CLONE, SYS_EXIT = syscall_number(ARCH, "clone"), syscall_number(ARCH, "exit")
SYS_RT_SIGACTION = syscall_number(ARCH, "rt_sigaction")
SYS_RT_SIGRETURN = syscall_number(ARCH, "rt_sigreturn")
# sigaction: the kernel's SA_RESTORER flag and the size of its signal set (arch/x86/include/uapi/asm/signal.h)
SA_RESTORER, SIGSET_SIZE = 0x04000000, 8


def mov_imm(reg: int, value: int) -> bytes:
    """The shortest load of the 64-bit pattern ``value`` (0..2^64-1) into ``reg``."""
    if value == 0:
        return alu_rr("xor", reg, reg, 4)
    if value <= 0xFFFFFFFF:
        return enc.mov_r32_imm32(reg, value)
    if value >= 0xFFFFFFFF80000000:
        return enc.mov_r64_simm32(reg, value - (1 << 64))
    return enc.movabs(reg, value)


class _Lowering:
    """One compilation: walks the program once, appending to a CodeBuffer."""

    def __init__(self, prog: Sequence[Insn], mutation: str):
        self.prog = prog
        self.mutation = mutation
        self.cb = CodeBuffer()
        self.out = self.cb.buf
        self.n = len(prog)
        for _ in range(self.n):  # labels 0..n-1 are the slots
            self.cb.new_label()
        self.entry_labels = {e: self.cb.new_label() for e in verify(prog).functions}

    def run(self) -> Compiled:
        prog, cb = self.prog, self.cb
        handlers = _HANDLERS
        entry_labels = self.entry_labels
        pc = 0
        while pc < self.n:
            insn = prog[pc]
            label = entry_labels.get(pc)
            if label is not None:
                cb.bind(label)
                self.out += PROLOGUE
            cb.bind(pc)
            wide = insn.opcode == isa.LDDW_OPCODE and pc + 1 < self.n
            if wide:  # the second slot of lddw shares the first one's offset
                cb.bind(pc + 1)
            try:
                handlers[insn.opcode & 7](self, insn, pc)
            except JitError as e:
                nxt = prog[pc + 1] if pc + 1 < self.n else None
                raise JitError(str(e), pc, format_insn(insn, nxt)) from None
            pc += 2 if wide else 1
        code, offsets = cb.finish()
        return Compiled(ARCH, code, offsets[:self.n], {e: offsets[lab] for e, lab in entry_labels.items()})

    def target(self, pc: int, delta: int) -> int:
        t = pc + delta + 1
        if not 0 <= t < self.n:
            raise JitError(f"target slot {t} is outside the program (slots 0..{self.n - 1})")
        return t

    # --- ALU -----------------------------------------------------------------------------

    def alu(self, insn: Insn, pc: int) -> None:
        op = insn.opcode
        code, by_reg = op & 0xF0, op & isa.SRC_X
        size = 8 if op & 7 == isa.ALU64 else 4
        d, s, imm, out = REG[insn.dst], REG[insn.src], insn.imm, self.out
        name = _ALU_NAMES.get(code)
        if name is not None:
            out += alu_rr(name, d, s, size) if by_reg else alu_ri(name, d, imm, size)
        elif code == isa.MOV:
            if not by_reg:
                out += mov_imm(d, imm & ((1 << (8 * size)) - 1))
            elif insn.off:
                out += enc.movsx_rr(d, s, insn.off // 8, size)
            elif d != s or size == 4:  # mov r32, r32 zero-extends even onto itself
                out += alu_rr("mov", d, s, size)
        elif code == isa.MUL:
            out += enc.imul_rr(d, s, size) if by_reg else enc.imul_rri(d, d, imm, size)
        elif code == isa.NEG:
            out += enc.unary("neg", d, size)
        elif code in _SHIFT_NAMES:
            self.shift(_SHIFT_NAMES[code], d, s if by_reg else None, imm, size)
        elif code in (isa.DIV, isa.MOD):
            self.div_mod(d, s if by_reg else None, imm, size, code == isa.MOD, insn.off == 1)
        elif code == isa.END:
            self.byteswap(d, insn.imm, size == 8 or bool(by_reg))
        else:
            raise JitError(f"unknown ALU operation {code >> 4:#x}")

    def shift(self, name: str, d: int, s: int | None, imm: int, size: int) -> None:
        out = self.out
        if s is None:
            count = imm & (size * 8 - 1)
            if count:
                out += enc.shift_ri(name, d, count, size)
            elif size == 4:
                out += alu_rr("mov", d, d, 4)
        elif s == RCX:
            out += enc.shift_cl(name, d, size)
        else:
            # Free rcx for the count; if dst is rcx itself, shift its saved copy instead.
            work = _T1 if d == RCX else d
            out += alu_rr("mov", _T1, RCX, 8) + alu_rr("mov", RCX, s, 4)
            out += enc.shift_cl(name, work, size) + alu_rr("mov", RCX, _T1, 8)

    def div_mod(self, d: int, s: int | None, imm: int, size: int, is_mod: bool, signed: bool) -> None:
        """RFC results without trapping: x / 0 = 0, x % 0 = x, and (signed) x / -1 = -x,
        x % -1 = 0, which also covers INT_MIN / -1."""
        cb, out = self.cb, self.out
        by_zero = (alu_rr("mov", d, d, 4) if size == 4 else b"") if is_mod else alu_rr("xor", d, d, 4)
        by_minus_one = alu_rr("xor", d, d, 4) if is_mod else enc.unary("neg", d, size)
        if s is None:
            if imm == 0:
                out += by_zero
            elif signed and imm == -1:
                out += by_minus_one
            else:
                out += mov_imm(_T1, imm & ((1 << (8 * size)) - 1))
                self.divide(d, size, is_mod, signed)
            return
        zero, end = cb.new_label(), cb.new_label()
        out += alu_rr("mov", _T1, s, size) + alu_rr("test", _T1, _T1, size)
        cb.jcc(Cond.E, zero)
        if signed:
            minus_one = cb.new_label()
            out += alu_ri("cmp", _T1, -1, size)
            cb.jcc(Cond.E, minus_one)
        self.divide(d, size, is_mod, signed)
        cb.jmp(end)
        cb.bind(zero)
        out += by_zero
        if signed:
            cb.jmp(end)
            cb.bind(minus_one)
            out += by_minus_one
        cb.bind(end)

    def divide(self, d: int, size: int, is_mod: bool, signed: bool) -> None:
        """d = d / T1 (or d % T1); T1 is neither 0 nor (signed) -1. Keeps rax and rdx."""
        out = self.out
        out += alu_rr("mov", _T3, RAX, 8) + alu_rr("mov", _T2, RDX, 8) + alu_rr("mov", RAX, d, 8)
        if signed:
            out += enc.FIXED["cqo" if size == 8 else "cdq"] + enc.unary("idiv", _T1, size)
        else:
            out += alu_rr("xor", RDX, RDX, 4) + enc.unary("div", _T1, size)
        out += alu_rr("mov", _T1, RDX if is_mod else RAX, 8)
        out += alu_rr("mov", RAX, _T3, 8) + alu_rr("mov", RDX, _T2, 8) + alu_rr("mov", d, _T1, 8)

    def byteswap(self, d: int, width: int, swap: bool) -> None:
        """END: ``swap`` is big-endian conversion (a byte swap on this little-endian host)."""
        out = self.out
        if width == 16:
            if swap:
                out += enc.shift_ri("rol", d, 8, 2)
            out += enc.movzx_rr(d, d, 2)
        elif width == 32:
            out += enc.bswap(d, 4) if swap else alu_rr("mov", d, d, 4)
        elif width == 64:
            if swap:
                out += enc.bswap(d, 8)
        else:
            raise JitError(f"byte swap width {width} invalid; valid widths: 16, 32, 64")

    # --- jumps and calls -------------------------------------------------------------------

    def jump(self, insn: Insn, pc: int) -> None:
        op, cb = insn.opcode, self.cb
        code = op & 0xF0
        if code == isa.JA:
            delta = insn.imm if op & 7 == isa.JMP32 else insn.off
            if delta:
                cb.jmp(self.target(pc, delta))
        elif code == isa.EXIT:
            self.out += EPILOGUE
        elif code == isa.CALL:
            self.call(insn, pc)
        elif code in _JUMP_CONDS:
            size = 8 if op & 7 == isa.JMP else 4
            d = REG[insn.dst]
            if op & isa.SRC_X:
                self.out += alu_rr("test" if code == isa.JSET else "cmp", d, REG[insn.src], size)
            elif code == isa.JSET:
                self.out += enc.test_ri(d, insn.imm, size)
            elif insn.imm == 0:  # same flags as cmp d, 0 for every condition used
                self.out += alu_rr("test", d, d, size)
            else:
                self.out += alu_ri("cmp", d, insn.imm, size)
            cb.jcc(_JUMP_CONDS[code], self.target(pc, insn.off))
        else:
            raise JitError(f"unknown jump operation {code >> 4:#x}")

    def call(self, insn: Insn, pc: int) -> None:
        if insn.opcode == CALLX_OPCODE:
            self.out += enc.call_reg(REG[insn.dst])
        elif insn.src == isa.CALL_LOCAL:
            self.cb.call(self.entry_labels[self.target(pc, insn.imm)])
        elif insn.src == isa.CALL_HELPER:
            self.helper(insn.imm)
        else:
            raise JitError(f"call source {insn.src} invalid; valid: 0 (helper), 1 (program-local function)")

    def helper(self, helper_id: int) -> None:
        out = self.out
        if helper_id == Helper.FENCE_FULL:
            out += enc.FIXED["mfence"]
        elif helper_id in (Helper.FENCE_ACQUIRE, Helper.FENCE_RELEASE, Helper.FENCE_STORE_STORE,
                           Helper.FENCE_LOAD_LOAD, Helper.ICACHE_SYNC):
            pass  # TSO and same-CPU code coherence: see the module docstring
        elif helper_id == Helper.CONTEXT_SYNC:
            if self.mutation != "no_serialize":
                saved = ((_T3, RAX), (_T2, RBX), (_T1, RCX), (_T4, RDX))
                out += b"".join(alu_rr("mov", t, r, 8) for t, r in saved)
                out += alu_rr("xor", RAX, RAX, 4) + enc.FIXED["cpuid"]
                out += b"".join(alu_rr("mov", r, t, 8) for t, r in saved)
        elif helper_id == Helper.SYSCALL:
            # r1..r5 (rdi, rsi, rdx, rcx, r8) -> rax, rdi, rsi, rdx, r10; each read before written.
            for dst, src in ((RAX, RDI), (RDI, RSI), (RSI, RDX), (RDX, RCX), (R10, R8)):
                out += alu_rr("mov", dst, src, 8)
            out += enc.FIXED["syscall"]
        elif helper_id == Helper.SYSCALL6:
            out += alu_rr("mov", RAX, RDI, 8) + alu_rr("mov", _T1, RSI, 8)
            for i, reg in enumerate((RDI, RSI, RDX, R10, R8, R9)):
                out += enc.load(reg, _T1, 8 * i, 8)
            out += enc.FIXED["syscall"]
        elif helper_id == Helper.CLONE_THREAD:
            self.clone_thread()
        elif helper_id == Helper.CYCLE_COUNTER:
            out += enc.FIXED["rdtsc"] + enc.shift_ri("shl", RDX, 32, 8) + alu_rr("or", RAX, RDX, 8)
        elif helper_id == Helper.SPIN_HINT:
            out += enc.FIXED["pause"]
        elif helper_id == Helper.SIGACTION:
            self.sigaction()
        else:
            valid = ", ".join(str(int(h)) for h in Helper)
            raise JitError(f"unknown helper id {helper_id}; valid ids: {valid}")

    def clone_thread(self) -> None:
        """clone(flags, stack=r2, parent_tid=0, child_tid=r4, tls=0); the child keeps r9/r12
        (the syscall instruction only clobbers rcx and r11), calls r1(r3) and SYS_exit(0)s."""
        cb, out = self.cb, self.out
        parent = cb.new_label()
        out += alu_rr("mov", _T3, RDI, 8) + alu_rr("mov", _T4, RDX, 8) + alu_rr("mov", R10, RCX, 8)
        out += mov_imm(RDI, CLONE_THREAD_FLAGS) + alu_rr("xor", RDX, RDX, 4) + alu_rr("xor", R8, R8, 4)
        out += mov_imm(RAX, SYS_CLONE) + enc.FIXED["syscall"] + alu_rr("test", RAX, RAX, 8)
        cb.jcc(Cond.NE, parent)
        out += alu_rr("mov", RDI, _T4, 8) + alu_ri("and", RSP, -16, 8) + enc.call_reg(_T3)
        out += mov_imm(RAX, SYS_EXIT) + alu_rr("xor", RDI, RDI, 4) + enc.FIXED["syscall"]
        cb.bind(parent)

    def sigaction(self) -> None:
        """rt_sigaction(rdi, rsi, NULL, 8) after setting the struct's restorer (at rsi + 16) to a
        stub here that calls rt_sigreturn, and SA_RESTORER in its flags (rsi + 8). The handler's
        ``ret`` enters the stub with rsp just past the frame's return address, where rt_sigreturn
        looks for the frame: so the stub is bare code that leaves rsp alone, not a function (a
        prologue would move rsp)."""
        cb, out = self.cb, self.out
        stub, over = cb.new_label(), cb.new_label()
        cb.jmp(over)
        cb.bind(stub)
        out += mov_imm(RAX, SYS_RT_SIGRETURN) + enc.FIXED["syscall"]
        cb.bind(over)
        cb.lea_rip(_T1, stub)
        out += enc.store(RSI, 16, _T1, 8) + enc.load(_T1, RSI, 8, 8) + alu_ri("or", _T1, SA_RESTORER, 8)
        out += enc.store(RSI, 8, _T1, 8) + mov_imm(RAX, SYS_RT_SIGACTION) + alu_rr("xor", RDX, RDX, 4)
        out += mov_imm(R10, SIGSET_SIZE) + enc.FIXED["syscall"]

    # --- memory --------------------------------------------------------------------------

    def lddw(self, insn: Insn, pc: int) -> None:
        if insn.opcode != isa.LDDW_OPCODE or pc + 1 >= self.n:
            raise JitError(f"opcode {insn.opcode:#04x} is not a complete lddw")
        d = REG[insn.dst]
        if insn.src == LDDW_FUNC:
            self.cb.lea_rip(d, self.entry_labels[self.target(pc, insn.imm)])
        elif insn.src == 0:
            self.out += mov_imm(d, isa.lddw_imm(insn, self.prog[pc + 1]))
        else:
            raise JitError(f"lddw source {insn.src} invalid; valid: 0 (64-bit constant), "
                           f"{LDDW_FUNC} (function address)")

    def ldx(self, insn: Insn, pc: int) -> None:
        size, mode = isa.SIZE_BYTES[insn.opcode & 0x18], insn.opcode & 0xE0
        if mode == isa.MODE_MEM:
            self.out += enc.load(REG[insn.dst], REG[insn.src], insn.off, size)
        elif mode == isa.MODE_MEMSX:
            self.out += enc.load_sx(REG[insn.dst], REG[insn.src], insn.off, size)
        else:
            raise JitError(f"load mode {mode:#x} invalid; valid: MEM (0x60), MEMSX (0x80)")

    def st(self, insn: Insn, pc: int) -> None:
        size = isa.SIZE_BYTES[insn.opcode & 0x18]
        if insn.opcode & 0xE0 != isa.MODE_MEM:
            raise JitError(f"store mode {insn.opcode & 0xE0:#x} invalid; valid: MEM (0x60)")
        imm = insn.imm & 0xFFFF if size == 2 else insn.imm & 0xFF if size == 1 else insn.imm
        self.out += enc.store_imm(REG[insn.dst], insn.off, imm, size)

    def stx(self, insn: Insn, pc: int) -> None:
        size, mode = isa.SIZE_BYTES[insn.opcode & 0x18], insn.opcode & 0xE0
        d, s, off, out = REG[insn.dst], REG[insn.src], insn.off, self.out
        if mode == isa.MODE_MEM:
            out += enc.store(d, off, s, size)
            return
        if mode != isa.MODE_ATOMIC:
            raise JitError(f"store mode {mode:#x} invalid; valid: MEM (0x60), ATOMIC (0xc0)")
        op = insn.imm
        if op == isa.ATOMIC_LOAD_ACQ:  # TSO: plain accesses have acquire/release semantics
            out += enc.load(d, s, off, size)
        elif op == isa.ATOMIC_STORE_REL:
            out += enc.store(d, off, s, size)
        elif op in _ATOMIC_RMW:
            out += enc.lock_rmw(_ATOMIC_RMW[op], d, off, s, size)
        elif op == isa.ATOMIC_ADD | isa.ATOMIC_FETCH:
            out += enc.lock_rmw("xadd", d, off, s, size)
        elif op == isa.ATOMIC_XCHG:
            out += enc.xchg_mr(d, off, s, size)
        elif op == isa.ATOMIC_CMPXCHG:
            out += enc.lock_rmw("cmpxchg", d, off, s, size)
            if size == 4:
                out += alu_rr("mov", RAX, RAX, 4)
        elif op in _ATOMIC_FETCH_LOOP:
            self.fetch_loop(_ATOMIC_FETCH_LOOP[op], d, off, s, size)
        else:
            raise JitError(f"unknown atomic operation {op:#x}")

    def fetch_loop(self, name: str, d: int, off: int, s: int, size: int) -> None:
        """src = fetch_<op>([d + off], src) with a cmpxchg loop; rax (r0) is kept."""
        cb, out = self.cb, self.out
        base = d
        if d == RAX:
            out += alu_rr("mov", _T1, RAX, 8)
            base = _T1
        out += alu_rr("mov", _T4, RAX, 8) + alu_rr("mov", _T2, s, 8) + enc.load(RAX, base, off, size)
        again = cb.new_label()
        cb.bind(again)
        out += alu_rr("mov", _T3, RAX, 8) + alu_rr(name, _T3, _T2, size)
        out += enc.lock_rmw("cmpxchg", base, off, _T3, size)
        cb.jcc(Cond.NE, again)
        out += alu_rr("mov", _T2, RAX, size) + alu_rr("mov", RAX, _T4, 8) + alu_rr("mov", s, _T2, 8)


_HANDLERS = {isa.LD: _Lowering.lddw, isa.LDX: _Lowering.ldx, isa.ST: _Lowering.st, isa.STX: _Lowering.stx,
             isa.ALU: _Lowering.alu, isa.ALU64: _Lowering.alu, isa.JMP: _Lowering.jump,
             isa.JMP32: _Lowering.jump}


class X86_64Backend:
    """The x86_64 backend (``jit_core.backend.Backend``)."""

    arch = ARCH
    mutations = frozenset({Mutation.NO_SERIALIZE, Mutation.SELF_SUB_AS_ZERO, Mutation.DROP_BRANCH_TO_NEXT})
    nop = b"\x90"
    breakpoint = enc.FIXED["int3"]
    # uc_flags, uc_link, uc_stack (40 bytes), then struct sigcontext's r8-r15, rdi, rsi, rbp, rbx,
    # rdx, rax, rcx, rsp before rip (arch/x86/include/uapi/asm/sigcontext.h)
    ucontext_pc = 168

    def compile(self, prog: Sequence[Insn], *, mutation: str = "none") -> Compiled:
        """Lower a verified program. Raises JitError for an unknown mutation or anything it
        cannot lower, naming the instruction index."""
        return _Lowering(lowered_ir(prog, mutation), mutation).run()
