"""Assembler and disassembler for the text syntax of the bpf_conformance suite.

One instruction per line; ``#`` starts a comment; ``name:`` defines a label (an instruction may
follow it on the same line). Registers are ``%r0``..``%r10``. Numbers are decimal or ``0x`` hex,
optionally negative; a decimal immediate must fit the signed field, a hex one may also be written
unsigned (``0xffffffff`` is -1 in a 32-bit field). Jump targets are a label or a signed slot
offset (``+3``, ``-2``). As in the suite's own assembler, a jump to ``exit`` where no label of
that name exists goes to the first ``exit`` instruction.

| form | example |
|---|---|
| ALU (64-bit; suffix ``32`` for 32-bit) | ``add %r0, %r1``, ``mov32 %r0, -1``, ``sdiv %r0, 3``, ``neg %r2`` |
| sign-extending move | ``movsx832``, ``movsx1632``, ``movsx864``, ``movsx1664``, ``movsx3264`` ``%rD, %rS`` |
| byte swap | ``le16/32/64 %rD``, ``be16/32/64 %rD``, ``bswap16/32/64 %rD`` (``swap16`` alike) |
| 64-bit immediate | ``lddw %r0, 0x1122334455667788``; function address: ``lddw %r1, func name`` |
| loads / sign-extending loads | ``ldxb/ldxh/ldxw/ldxdw %rD, [%rS+off]``, ``ldxsb/ldxsh/ldxsw`` |
| stores | ``stb/sth/stw/stdw [%rD-8], imm``, ``stxb/stxh/stxw/stxdw [%rD+off], %rS`` |
| atomics | ``lock [fetch] add/or/and/xor[32] [%rD+off], %rS``, ``lock xchg[32]``, ``lock cmpxchg[32]`` |
| acquire / release | ``load_acquire8/16/32/64 %rD, [%rS+off]``, ``store_release8/16/32/64 [%rD+off], %rS`` |
| jumps | ``ja label``, ``ja32 label`` (32-bit range), ``jeq %r1, 0, +3``, ``jsgt32 %r1, %r2, label`` |
| calls | ``call 8`` or ``call syscall`` (intrinsic), ``call local name``, ``call %r2`` (callx), ``exit`` |

The disassembler prints the same syntax with numeric jump offsets, so ``assemble(disassemble(p))
== p`` for every valid program.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import isa
from .errors import JitError
from .intrinsics import Helper
from .isa import Insn
from .verify import CALLX_OPCODE, LDDW_FUNC

__all__ = ["FORMS", "assemble", "disassemble", "format_insn", "parse_int", "parse_memory", "parse_register"]

_ALU_NAMES = {name: code for code, name in isa.ALU_OPS.items() if code not in (isa.NEG, isa.END)}
_SIZE_SUFFIX = {isa.SIZE_B: "b", isa.SIZE_H: "h", isa.SIZE_W: "w", isa.SIZE_DW: "dw"}
_SIZE_BITS = {isa.SIZE_B: 8, isa.SIZE_H: 16, isa.SIZE_W: 32, isa.SIZE_DW: 64}
_ATOMIC_NAMES = {isa.ATOMIC_ADD: "add", isa.ATOMIC_OR: "or", isa.ATOMIC_AND: "and", isa.ATOMIC_XOR: "xor",
                 isa.ATOMIC_XCHG: "xchg", isa.ATOMIC_CMPXCHG: "cmpxchg"}
_ACQ_REL = {isa.ATOMIC_LOAD_ACQ: "load_acquire", isa.ATOMIC_STORE_REL: "store_release"}
_END_KINDS = {"le": isa.ALU | isa.END, "be": isa.ALU | isa.END | isa.SRC_X, "bswap": isa.ALU64 | isa.END,
              "swap": isa.ALU64 | isa.END}


@dataclass(frozen=True)
class _Form:
    """How one mnemonic assembles: ``kind`` picks the operand syntax."""

    kind: str
    opcode: int
    off: int = 0
    imm: int = 0


def _build_forms() -> dict[str, _Form]:
    forms: dict[str, _Form] = {}
    for cls, suffix in ((isa.ALU64, ""), (isa.ALU, "32")):
        for name, code in _ALU_NAMES.items():
            forms[name + suffix] = _Form("alu", cls | code)
        forms["sdiv" + suffix] = _Form("alu", cls | isa.DIV, off=1)
        forms["smod" + suffix] = _Form("alu", cls | isa.MOD, off=1)
        forms["neg" + suffix] = _Form("unary", cls | isa.NEG)
    for cls, width, widths in ((isa.ALU, "32", (8, 16)), (isa.ALU64, "64", (8, 16, 32))):
        for bits in widths:
            forms[f"movsx{bits}{width}"] = _Form("movsx", cls | isa.MOV | isa.SRC_X, off=bits)
    for kind, opcode in _END_KINDS.items():
        for bits in (16, 32, 64):
            forms[f"{kind}{bits}"] = _Form("unary", opcode, imm=bits)
    for size, suffix in _SIZE_SUFFIX.items():
        forms["ldx" + suffix] = _Form("load", isa.LDX | isa.MODE_MEM | size)
        forms["st" + suffix] = _Form("store_imm", isa.ST | isa.MODE_MEM | size)
        forms["stx" + suffix] = _Form("store", isa.STX | isa.MODE_MEM | size)
        if size != isa.SIZE_DW:
            forms["ldxs" + suffix] = _Form("load", isa.LDX | isa.MODE_MEMSX | size)
        bits = _SIZE_BITS[size]
        forms[f"load_acquire{bits}"] = _Form("load", isa.STX | isa.MODE_ATOMIC | size,
                                             imm=isa.ATOMIC_LOAD_ACQ)
        forms[f"store_release{bits}"] = _Form("store", isa.STX | isa.MODE_ATOMIC | size,
                                              imm=isa.ATOMIC_STORE_REL)
    for code, name in isa.JMP_OPS.items():
        if code in isa.COND_JUMPS:
            forms[name] = _Form("jcond", isa.JMP | code)
            forms[name + "32"] = _Form("jcond", isa.JMP32 | code)
    forms["ja"] = _Form("ja", isa.JMP | isa.JA)
    forms["ja32"] = _Form("ja32", isa.JMP32 | isa.JA)
    forms["exit"] = _Form("exit", isa.EXIT_OPCODE)
    forms["call"] = _Form("call", isa.JMP | isa.CALL)
    forms["lddw"] = _Form("lddw", isa.LDDW_OPCODE)
    forms["lock"] = _Form("lock", isa.STX | isa.MODE_ATOMIC)
    return forms


FORMS = _build_forms()
_OPERAND_SYNTAX = {
    "alu": "%rD, %rS|imm", "unary": "%rD", "movsx": "%rD, %rS", "load": "%rD, [%rS+off]",
    "store_imm": "[%rD+off], imm", "store": "[%rD+off], %rS", "jcond": "%rD, %rS|imm, target",
    "ja": "target", "ja32": "target", "exit": "no operands", "call": "helper|local target|%rS",
    "lddw": "%rD, imm64|func target", "lock": "[fetch] op [%rD+off], %rS",
}
_LABEL = re.compile(r"^([A-Za-z_.][\w.]*):\s*(.*)$")
_INT = re.compile(r"^([+-]?)(0[xX][0-9a-fA-F]+|\d+)$")
_MEM = re.compile(r"^\[\s*(%?\w+)\s*(?:([+-])\s*(\w+)\s*)?\]$")
_REG = re.compile(r"^%r(\d+)$")


class _LineError(Exception):
    """A problem in one source line; assemble() adds the line number and text."""


def assemble(text: str) -> list[Insn]:
    """Assemble source text into slots (lddw takes two).

    Raises JitError naming the line number and text: unknown mnemonic (with valid choices), bad
    register, wrong operand count, out-of-range number, unknown or duplicate label.
    """
    labels: dict[str, int] = {}
    pending: list[tuple[int, str, str, str, int]] = []  # (line number, line, mnemonic, rest, slot)
    slots = 0
    first_exit: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        while (match := _LABEL.match(line)) is not None:
            name, line = match.group(1), match.group(2).strip()
            if name in labels:
                raise JitError(f"line {number}: {raw.strip()!r}: duplicate label {name!r}")
            labels[name] = slots
        if not line:
            continue
        mnemonic, _, rest = line.partition(" ")
        if mnemonic not in FORMS:
            raise JitError(f"line {number}: {raw.strip()!r}: unknown mnemonic {mnemonic!r}; "
                           f"valid choices: {', '.join(sorted(FORMS))}")
        if mnemonic == "exit" and first_exit is None:
            first_exit = slots
        pending.append((number, raw.strip(), mnemonic, rest.strip(), slots))
        slots += 2 if mnemonic == "lddw" else 1
    if first_exit is not None:
        labels.setdefault("exit", first_exit)

    prog: list[Insn] = []
    for number, raw, mnemonic, rest, slot in pending:
        try:
            prog.extend(_assemble_line(mnemonic, rest, slot, labels))
        except (_LineError, JitError) as exc:
            raise JitError(f"line {number}: {raw!r}: {exc}") from None
    return prog


def _split_operands(rest: str) -> list[str]:
    return [part.strip() for part in rest.split(",")] if rest else []


def _expect(mnemonic: str, kind: str, operands: list[str], count: int) -> None:
    if len(operands) != count:
        raise _LineError(f"{mnemonic} takes {count} operand{'s' if count != 1 else ''} "
                         f"({_OPERAND_SYNTAX[kind]}), got {len(operands)}")


def _assemble_line(mnemonic: str, rest: str, slot: int, labels: dict[str, int]) -> list[Insn]:
    form = FORMS[mnemonic]
    kind, opcode = form.kind, form.opcode
    if kind == "lock":
        return [_assemble_lock(rest)]
    if kind == "call":
        return [_assemble_call(rest, slot, labels)]
    ops = _split_operands(rest)
    if kind == "alu":
        _expect(mnemonic, kind, ops, 2)
        dst = parse_register(ops[0])
        if ops[1].startswith("%"):
            return [Insn(opcode | isa.SRC_X, dst, parse_register(ops[1]), form.off)]
        return [Insn(opcode, dst, off=form.off, imm=parse_int(ops[1], 32, "immediate"))]
    if kind == "unary":
        _expect(mnemonic, kind, ops, 1)
        return [Insn(opcode, parse_register(ops[0]), imm=form.imm)]
    if kind == "movsx":
        _expect(mnemonic, kind, ops, 2)
        return [Insn(opcode, parse_register(ops[0]), parse_register(ops[1]), form.off)]
    if kind == "load":
        _expect(mnemonic, kind, ops, 2)
        base, off = parse_memory(ops[1])
        return [Insn(opcode, parse_register(ops[0]), base, off, form.imm)]
    if kind in ("store", "store_imm"):
        _expect(mnemonic, kind, ops, 2)
        base, off = parse_memory(ops[0])
        if kind == "store":
            return [Insn(opcode, base, parse_register(ops[1]), off, form.imm)]
        return [Insn(opcode, base, off=off, imm=parse_int(ops[1], 32, "immediate"))]
    if kind == "jcond":
        _expect(mnemonic, kind, ops, 3)
        dst, off = parse_register(ops[0]), _jump_offset(ops[2], slot, labels, 16)
        if ops[1].startswith("%"):
            return [Insn(opcode | isa.SRC_X, dst, parse_register(ops[1]), off)]
        return [Insn(opcode, dst, off=off, imm=parse_int(ops[1], 32, "immediate"))]
    if kind in ("ja", "ja32"):
        _expect(mnemonic, kind, ops, 1)
        if kind == "ja":
            return [Insn(opcode, off=_jump_offset(ops[0], slot, labels, 16))]
        return [Insn(opcode, imm=_jump_offset(ops[0], slot, labels, 32))]
    if kind == "exit":
        _expect(mnemonic, kind, ops, 0)
        return [Insn(opcode)]
    _expect(mnemonic, kind, ops, 2)  # lddw
    dst = parse_register(ops[0])
    words = ops[1].split()
    if words[0] == "func":
        if len(words) != 2:
            raise _LineError("a function address is written 'func label' or 'func +offset'")
        return [Insn(opcode, dst, LDDW_FUNC, imm=_jump_offset(words[1], slot, labels, 32)), Insn(0)]
    value = parse_int(ops[1], 64, "immediate") & 0xFFFF_FFFF_FFFF_FFFF
    return [Insn(opcode, dst, imm=isa.s32(value)), Insn(0, imm=isa.s32(value >> 32))]


def _assemble_lock(rest: str) -> Insn:
    words = rest.split(None, 1)
    fetch = bool(words) and words[0] == "fetch"
    if fetch:
        words = words[1].split(None, 1) if len(words) > 1 else []
    if len(words) != 2:
        raise _LineError("lock takes [fetch] op [%rD+off], %rS; "
                         f"valid ops: {', '.join(n + w for n in _ATOMIC_NAMES.values() for w in ('', '32'))}")
    name, operands = words
    bits64 = not name.endswith("32")
    base_name = name if bits64 else name[:-2]
    codes = {v: k for k, v in _ATOMIC_NAMES.items()}
    if base_name not in codes:
        raise _LineError(f"unknown atomic operation {name!r}; valid choices: "
                         f"{', '.join(n + w for n in _ATOMIC_NAMES.values() for w in ('', '32'))}")
    op = codes[base_name]
    if fetch:
        if op in (isa.ATOMIC_XCHG, isa.ATOMIC_CMPXCHG):
            raise _LineError(f"{base_name} always fetches; write it without 'fetch'")
        op |= isa.ATOMIC_FETCH
    ops = _split_operands(operands)
    _expect("lock", "lock", ops, 2)
    base, off = parse_memory(ops[0])
    size = isa.SIZE_DW if bits64 else isa.SIZE_W
    return Insn(isa.STX | isa.MODE_ATOMIC | size, base, parse_register(ops[1]), off, op)


def _assemble_call(rest: str, slot: int, labels: dict[str, int]) -> Insn:
    words = rest.split()
    opcode = isa.JMP | isa.CALL
    if len(words) == 2 and words[0] == "local":
        return Insn(opcode, src=isa.CALL_LOCAL, imm=_jump_offset(words[1], slot, labels, 32))
    if len(words) == 2 and words[0] == "helper":
        words = words[1:]
    if len(words) != 1:
        raise _LineError(f"call takes one of: {_OPERAND_SYNTAX['call']}")
    target = words[0]
    if target.startswith("%"):
        return Insn(CALLX_OPCODE, parse_register(target))
    names = {h.name.lower(): int(h) for h in Helper}
    if target in names:
        return Insn(opcode, imm=names[target])
    if _INT.match(target) is None:
        raise _LineError(f"unknown helper {target!r}; valid names: {', '.join(names)} (or a number)")
    return Insn(opcode, imm=parse_int(target, 32, "helper id"))


def parse_register(text: str) -> int:
    """``%r0``..``%r10`` to 0..10. Raises JitError naming the valid registers."""
    match = _REG.match(text.strip())
    if match is None or int(match.group(1)) >= isa.NUM_REGS:
        raise JitError(f"invalid register {text!r}; valid registers: %r0..%r10")
    return int(match.group(1))


def parse_int(text: str, bits: int, what: str) -> int:
    """A decimal or hex number for a ``bits``-wide field, returned signed.

    Decimal must fit the signed range; hex may also use the unsigned one. Raises JitError.
    """
    match = _INT.match(text.strip())
    if match is None:
        raise JitError(f"{what} {text!r} is not a number (decimal or 0x hex)")
    sign, digits = match.groups()
    is_hex = digits.lower().startswith("0x")
    value = int(digits, 16 if is_hex else 10) * (-1 if sign == "-" else 1)
    low, high = -(1 << (bits - 1)), (1 << (bits - (0 if is_hex else 1))) - 1
    if not low <= value <= high:
        kind = "hex" if is_hex else "decimal"
        raise JitError(f"{what} {text!r} out of the {bits}-bit range ({kind}: {low}..{high})")
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def parse_memory(text: str) -> tuple[int, int]:
    """``[%rN+off]`` / ``[%rN-off]`` / ``[%rN]`` to (register, signed 16-bit offset). Raises JitError."""
    match = _MEM.match(text.strip())
    if match is None:
        raise JitError(f"memory operand {text!r} must look like [%rN+off], [%rN-off] or [%rN]")
    reg, sign, amount = match.groups()
    off = parse_int(f"{sign}{amount}", 16, "offset") if amount else 0
    return parse_register(reg), off


def _jump_offset(target: str, slot: int, labels: dict[str, int], bits: int) -> int:
    if target[:1] in "+-" and _INT.match(target):
        return parse_int(target, bits, "jump offset")
    if target not in labels:
        known = ", ".join(sorted(labels)) or "none defined"
        raise JitError(f"unknown label {target!r}; labels: {known}")
    offset = labels[target] - slot - 1
    if not -(1 << (bits - 1)) <= offset < 1 << (bits - 1):
        raise JitError(f"label {target!r} is {offset} slots away, beyond the {bits}-bit offset field")
    return offset


def _imm_text(value: int) -> str:
    return str(value) if -4096 < value < 4096 else (f"-{-value:#x}" if value < 0 else f"{value:#x}")


def _mem_text(reg: int, off: int) -> str:
    return f"[%r{reg}{off:+d}]"


def format_insn(insn: Insn, next_insn: Insn | None = None) -> str:
    """One instruction as text (``next_insn`` completes an lddw). Never raises: an invalid
    encoding is shown as its raw bytes."""
    op, cls, dst, src, off, imm = insn.opcode, insn.cls, insn.dst, insn.src, insn.off, insn.imm
    code, by_reg = op & 0xF0, op & isa.SRC_X
    text: str | None = None
    if cls in (isa.ALU, isa.ALU64):
        text = _format_alu(insn)
    elif cls in (isa.JMP, isa.JMP32):
        suffix = "32" if cls == isa.JMP32 else ""
        if op == isa.EXIT_OPCODE:
            text = "exit"
        elif op == isa.JMP | isa.CALL:
            text = f"call local {imm:+d}" if src == isa.CALL_LOCAL else f"call {imm}"
        elif op == CALLX_OPCODE:
            text = f"call %r{dst}"
        elif op == isa.JMP | isa.JA:
            text = f"ja {off:+d}"
        elif op == isa.JMP32 | isa.JA:
            text = f"ja32 {imm:+d}"
        elif code in isa.COND_JUMPS:
            operand = f"%r{src}" if by_reg else _imm_text(imm)
            text = f"{isa.JMP_OPS[code]}{suffix} %r{dst}, {operand}, {off:+d}"
    elif op == isa.LDDW_OPCODE:
        if src == LDDW_FUNC:
            text = f"lddw %r{dst}, func {imm:+d}"
        elif next_insn is not None:
            text = f"lddw %r{dst}, {isa.lddw_imm(insn, next_insn):#x}"
    else:
        text = _format_memory(insn)
    return text if text is not None else f"<invalid {insn.encode().hex(' ')}>"


def _format_alu(insn: Insn) -> str | None:
    op, cls, dst, src, off, imm = insn.opcode, insn.cls, insn.dst, insn.src, insn.off, insn.imm
    code, by_reg = op & 0xF0, op & isa.SRC_X
    suffix = "32" if cls == isa.ALU else ""
    if code == isa.END:
        kinds = {v: k for k, v in _END_KINDS.items() if k != "swap"}
        return f"{kinds[op]}{imm} %r{dst}" if op in kinds else None
    if code == isa.NEG:
        return f"neg{suffix} %r{dst}"
    if code not in isa.ALU_OPS:
        return None
    name = isa.ALU_OPS[code]
    if code == isa.MOV and by_reg and off:
        return f"movsx{off}{'32' if cls == isa.ALU else '64'} %r{dst}, %r{src}"
    if code in (isa.DIV, isa.MOD) and off == 1:
        name = "s" + name
    return f"{name}{suffix} %r{dst}, {f'%r{src}' if by_reg else _imm_text(imm)}"


def _format_memory(insn: Insn) -> str | None:
    op, cls, dst, src, off, imm = insn.opcode, insn.cls, insn.dst, insn.src, insn.off, insn.imm
    mode, size = op & 0xE0, op & 0x18
    suffix = _SIZE_SUFFIX[size]
    if cls == isa.LDX and mode in (isa.MODE_MEM, isa.MODE_MEMSX):
        return f"ldx{'s' if mode == isa.MODE_MEMSX else ''}{suffix} %r{dst}, {_mem_text(src, off)}"
    if cls == isa.ST and mode == isa.MODE_MEM:
        return f"st{suffix} {_mem_text(dst, off)}, {_imm_text(imm)}"
    if cls == isa.STX and mode == isa.MODE_MEM:
        return f"stx{suffix} {_mem_text(dst, off)}, %r{src}"
    if cls != isa.STX or mode != isa.MODE_ATOMIC:
        return None
    if imm == isa.ATOMIC_LOAD_ACQ:
        return f"load_acquire{_SIZE_BITS[size]} %r{dst}, {_mem_text(src, off)}"
    if imm == isa.ATOMIC_STORE_REL:
        return f"store_release{_SIZE_BITS[size]} {_mem_text(dst, off)}, %r{src}"
    name = _ATOMIC_NAMES.get(imm) or _ATOMIC_NAMES.get(imm & ~isa.ATOMIC_FETCH)
    if name is None or size not in (isa.SIZE_W, isa.SIZE_DW):
        return None
    fetch = "fetch " if imm & isa.ATOMIC_FETCH and imm not in (isa.ATOMIC_XCHG, isa.ATOMIC_CMPXCHG) else ""
    width = "32" if size == isa.SIZE_W else ""
    return f"lock {fetch}{name}{width} {_mem_text(dst, off)}, %r{src}"


def disassemble(prog: Sequence[Insn]) -> list[str]:
    """One text line per instruction (an lddw pair gives one line)."""
    lines = []
    i = 0
    while i < len(prog):
        insn = prog[i]
        pair = insn.opcode == isa.LDDW_OPCODE and i + 1 < len(prog)
        lines.append(format_insn(insn, prog[i + 1] if pair else None))
        i += 2 if pair else 1
    return lines
