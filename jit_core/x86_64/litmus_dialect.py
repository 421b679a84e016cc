"""The X86 and X86_64 litmus dialects: herdtools7's Intel-order syntax (``MOV [x],$1``,
``MOV EAX,[y]``, ``MFENCE``) and its AT&T syntax (``movl $2,(x)``, ``mov (y),%eax``,
``xchgl (y),%eax``), parsed into litmus.machine.Instr in Intel order, run with
jit_core.x86_64.semantics and checked under x86-TSO. A memory operand naming a location
(``[x]``, ``(x)``) accesses that location."""

from __future__ import annotations

import re

from litmus.check import Program, allocate, initial_registers
from litmus.errors import LitmusSyntaxError
from litmus.machine import Code, Instr, Operand, OperandKind
from litmus.syntax import Line, LitmusTest, split_operands

from .memory_model import machine_semantics
from .semantics import ALU, JCC, NAMES64, NOPS, canon

__all__ = ["M64", "litmus_program"]

M64 = (1 << 64) - 1
_SUFFIX = {"b": 1, "w": 2, "l": 4, "q": 8}
_KNOWN = frozenset(
    {"mov", "movzx", "mfence", "cmp", "jmp", "ret", "xchg", "xadd", "cmpxchg", *ALU, *JCC, *NOPS}
)
_LABEL = re.compile(r"([A-Za-z_][\w.]*)\s*:$")
_NUM = r"-?(?:0x[0-9a-fA-F]+|\d+)"
_ATT_MEM = re.compile(r"(?:%\w+:)?(" + _NUM + r")?\(\s*([%\w]*)\s*(?:,\s*(%?\w+)\s*(?:,\s*(\d+))?)?\s*\)$")


def _is_register(text: str) -> bool:
    name, width = canon(text)
    return name in NAMES64 and (width != 64 or name == text.lower().lstrip("%"))


class _Parser:
    def __init__(self, path: str, att: bool, addresses: dict[str, int]):
        self.path, self.att, self.addresses = path, att, addresses

    def fail(self, line: Line, message: str) -> LitmusSyntaxError:
        return LitmusSyntaxError(self.path, line.lineno, message)

    def location(self, name: str, line: Line) -> int:
        if name not in self.addresses:
            raise self.fail(line, f"expected a location of the test, found {name!r}")
        return self.addresses[name]

    def operand(self, item: str, size: int, labels: dict[str, int], jump: bool, line: Line) -> Operand:
        if jump and item in labels:
            return Operand(OperandKind.TARGET, value=labels[item])
        if _is_register(item):
            return Operand(OperandKind.REG, reg=item.lower().lstrip("%"))
        imm = re.fullmatch(r"\$?(" + _NUM + ")", item)
        if imm:
            return Operand(OperandKind.IMM, value=int(imm.group(1), 0) & M64)
        if item.startswith("[") and item.endswith("]"):
            inner = item[1:-1].strip()
            if _is_register(inner):
                return Operand(OperandKind.MEM, base=inner, size=size)
            return Operand(OperandKind.MEM, disp=self.location(inner, line), size=size)
        mem = _ATT_MEM.match(item)
        if mem:
            disp, base, index, scale = mem.groups()
            if base and not base.startswith("%") and not index:
                return Operand(
                    OperandKind.MEM, disp=self.location(base, line) + int(disp or "0", 0), size=size
                )
            return Operand(
                OperandKind.MEM,
                base=base,
                disp=int(disp or "0", 0),
                index=index or "",
                value=int(scale or "1"),
                size=size,
            )
        raise self.fail(
            line, f"expected a register, an immediate, a memory operand or a label, found {item!r}"
        )

    def instr(self, line: Line, address: int, labels: dict[str, int]) -> Instr:
        text = line.text.strip()
        words = text.replace(";", " ").split(None, 1)
        mnemonic, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
        lock = mnemonic == "lock"
        if lock:
            words = rest.split(None, 1)
            mnemonic, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
        size = 0
        if mnemonic not in _KNOWN and mnemonic[:-1] in _KNOWN and mnemonic[-1] in _SUFFIX:
            mnemonic, size = mnemonic[:-1], _SUFFIX[mnemonic[-1]]
        if mnemonic not in _KNOWN:
            raise self.fail(line, f"X86 instruction {mnemonic!r} is not handled")
        if mnemonic in NOPS:
            return Instr(address, 1, mnemonic, (), text)
        items = split_operands(rest, "()[]")
        if self.att:
            items.reverse()  # AT&T lists the destination last
        jump = mnemonic in JCC or mnemonic == "jmp"
        operands = tuple(self.operand(i, size, labels, jump, line) for i in items)
        return Instr(address, 1, ("lock " if lock else "") + mnemonic, operands, text)

    def thread(self, lines: list[Line]) -> Code:
        labels: dict[str, int] = {}
        body: list[Line] = []
        for line in lines:
            m = _LABEL.match(line.text.strip())
            if m:
                labels[m.group(1)] = len(body)
            else:
                body.append(line)
        return Code([self.instr(line, k, labels) for k, line in enumerate(body)], len(body))


def _code_locations(test: LitmusTest) -> list[str]:
    """Location names only the code mentions (``(x)``, ``[x]``)."""
    found: list[str] = []
    for lines in test.threads:
        for line in lines:
            for name in re.findall(r"[\[(]\s*([A-Za-z_]\w*)\s*[\])]", line.text):
                if not _is_register(name) and name not in found:
                    found.append(name)
    return found


def litmus_program(test: LitmusTest) -> Program:
    """The executable form of an X86 or X86_64 litmus test. Raises LitmusSyntaxError."""
    addresses, memory = allocate(test, _code_locations(test))
    parser = _Parser(test.path, test.arch == "X86_64", addresses)
    results = {name: name for name in NAMES64}
    threads = []
    for k, lines in enumerate(test.threads):
        registers = initial_registers(test, k, addresses, lambda name: canon(name)[0], "an x86 register")
        threads.append(machine_semantics(parser.thread(lines), registers, results))
    return Program(test, addresses, memory, threads, register=lambda name: canon(name)[0])
