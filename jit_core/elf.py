"""Freestanding static ELF64 executables from eBPF programs: no libc, no C compiler, no linker.

``_start`` is itself eBPF, compiled by the same backend in front of the user's program, which it
calls as a program-local function (so the user's ``main`` is an ordinary function with the
eBPF calling convention)::

    lddw r1, MEM_ADDR ; mov r2, len(mem) ; call local main
    lddw r6, RESULTS_ADDR ; stxdw [r6+0], r0 ; mov r7, r0
    syscall(write, 1, r6, results_size) ; syscall(exit_group, r7)

so the process writes its results buffer (first 8 bytes: r0, little-endian) to stdout and exits
with status r0 & 0xff. The stack is the one the kernel hands to a new process.

Layout, fixed so that the addresses are known before compiling (the program and ``_start`` load
them with lddw): headers at file offset 0, code at file offset 0x1000 mapped R+X at TEXT_ADDR,
then a page-aligned R+W data segment at DATA_ADDR holding the results buffer (one page at
RESULTS_ADDR), the ``mem`` blob at MEM_ADDR and the named ``blobs`` after it, each aligned to
BLOB_ALIGN. Segments are 4 KiB-aligned (the page size of Debian's kernels on all three
architectures). A symbol table names ``_start``, ``main``, ``results``, ``mem`` and each blob.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .compile import compile_program
from .errors import JitError
from .intrinsics import Helper
from .isa import ALU64, CALL_LOCAL, JMP, LDDW_OPCODE, MODE_MEM, MOV, SIZE_DW, STX, Insn
from .isa import CALL as OP_CALL
from .isa import EXIT_OPCODE as OP_EXIT
from .syscalls import syscall_number
from .target import arches, target_profile
from .verify import verify

__all__ = [
    "BLOB_ALIGN",
    "DATA_ADDR",
    "MEM_ADDR",
    "PAGE",
    "PF_R",
    "PF_W",
    "PF_X",
    "PT_GNU_STACK",
    "PT_LOAD",
    "RESULTS_ADDR",
    "RESULTS_CAPACITY",
    "SHF_ALLOC",
    "SHF_EXECINSTR",
    "SHF_WRITE",
    "SHT_PROGBITS",
    "SHT_STRTAB",
    "SHT_SYMTAB",
    "START_SLOTS",
    "STB_GLOBAL",
    "STT_FUNC",
    "STT_OBJECT",
    "TEXT_ADDR",
    "TEXT_OFFSET",
    "DataLayout",
    "build_executable",
    "data_layout",
    "start_program",
    "write_elf",
]

PAGE = 0x1000
TEXT_OFFSET = 0x1000
TEXT_ADDR = 0x401000
DATA_ADDR = 0x10000000
RESULTS_ADDR = DATA_ADDR
RESULTS_CAPACITY = PAGE
MEM_ADDR = DATA_ADDR + RESULTS_CAPACITY
BLOB_ALIGN = 64

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
PT_LOAD, PT_GNU_STACK = 1, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STT_OBJECT, STT_FUNC, STB_GLOBAL = 1, 2, 1


@dataclass(frozen=True)
class DataLayout:
    """Addresses of the data segment's parts; ``blobs`` maps each blob name to its address."""

    results_addr: int
    results_size: int
    mem_addr: int
    mem_size: int
    blobs: dict[str, int]
    end: int


def data_layout(mem: bytes = b"", blobs: Mapping[str, bytes] | None = None,
                results_size: int = 8) -> DataLayout:
    """Where build_executable puts the results buffer, ``mem`` and each blob.

    Raises JitError if results_size is outside 8..RESULTS_CAPACITY.
    """
    if not 8 <= results_size <= RESULTS_CAPACITY:
        raise JitError(f"results_size {results_size} out of range 8..{RESULTS_CAPACITY}")
    addr = MEM_ADDR + len(mem)
    placed: dict[str, int] = {}
    for name, blob in (blobs or {}).items():
        addr = _align(addr, BLOB_ALIGN)
        placed[name] = addr
        addr += len(blob)
    return DataLayout(RESULTS_ADDR, results_size, MEM_ADDR, len(mem), placed, addr)


def start_program(arch: str, mem_size: int, results_size: int) -> list[Insn]:
    """The eBPF ``_start``; the user's main must follow it directly (at slot START_SLOTS)."""
    write, exit_group = syscall_number(arch, "write"), syscall_number(arch, "exit_group")

    def mov(dst: int, imm: int = 0, src: int | None = None) -> Insn:
        if src is None:
            return Insn(ALU64 | MOV, dst, imm=imm)
        return Insn(ALU64 | MOV | 0x08, dst, src)

    def lddw(dst: int, value: int) -> list[Insn]:
        return [Insn(LDDW_OPCODE, dst, imm=value), Insn(0)]  # both addresses are below 2^31

    def call_helper(helper: Helper) -> Insn:
        return Insn(JMP | OP_CALL, imm=int(helper))

    head = [*lddw(1, MEM_ADDR), mov(2, mem_size)]
    tail = [
        *lddw(6, RESULTS_ADDR), Insn(STX | MODE_MEM | SIZE_DW, 6, 0), mov(7, src=0),
        mov(1, write), mov(2, 1), mov(3, src=6), mov(4, results_size), call_helper(Helper.SYSCALL),
        mov(1, exit_group), mov(2, src=7), call_helper(Helper.SYSCALL),
        Insn(OP_EXIT),  # not reached; the verifier wants every function to end in exit
    ]
    call_main = Insn(JMP | OP_CALL, src=CALL_LOCAL, imm=len(tail))
    return [*head, call_main, *tail]


START_SLOTS = len(start_program(arches()[0], 0, 8))  # the same on every architecture


def build_executable(arch: str, prog: Sequence[Insn], mem: bytes = b"", *,
                     blobs: Mapping[str, bytes] | None = None, results_size: int = 8,
                     mutation: str = "none") -> bytes:
    """A static ELF64 executable for ``arch`` running ``prog`` as main (see the module docstring).

    Raises JitError for an unknown architecture, mutation or bad results_size, or a program the
    verifier or backend refuses.
    """
    target_profile(arch)
    verify(prog)  # first alone, so that an error names the program's own instruction numbers
    layout = data_layout(mem, blobs, results_size)
    start = start_program(arch, len(mem), results_size)
    compiled = compile_program(arch, [*start, *prog], mutation)
    data = bytearray(layout.end - DATA_ADDR)
    data[MEM_ADDR - DATA_ADDR:MEM_ADDR - DATA_ADDR + len(mem)] = mem
    for name, blob in (blobs or {}).items():
        offset = layout.blobs[name] - DATA_ADDR
        data[offset:offset + len(blob)] = blob
    main_offset = compiled.functions[START_SLOTS]
    symbols = [("_start", TEXT_ADDR, main_offset, STT_FUNC, 1),
               ("main", TEXT_ADDR + main_offset, len(compiled.code) - main_offset, STT_FUNC, 1),
               ("results", RESULTS_ADDR, RESULTS_CAPACITY, STT_OBJECT, 2),
               ("mem", MEM_ADDR, len(mem), STT_OBJECT, 2)]
    symbols += [(name, layout.blobs[name], len(blob), STT_OBJECT, 2) for name, blob in (blobs or {}).items()]
    return write_elf(arch, compiled.code, bytes(data), symbols)


def write_elf(arch: str, code: bytes, data: bytes,
              symbols: Sequence[tuple[str, int, int, int, int]] = ()) -> bytes:
    """Wrap ``code`` (at TEXT_ADDR, also the entry point) and ``data`` (at DATA_ADDR) in an ELF64
    executable. ``symbols`` are (name, address, size, STT_* type, section index 1=.text 2=.data).

    Raises JitError for an unknown architecture.
    """
    profile = target_profile(arch)
    machine, flags = profile.elf_machine, profile.elf_flags
    data_offset = _align(TEXT_OFFSET + len(code), PAGE)
    shstrtab, sh_names = _string_table(["", ".text", ".data", ".symtab", ".strtab", ".shstrtab"])
    strtab, sym_names = _string_table(["", *(s[0] for s in symbols)])
    symtab = bytes(_SYM.size) + b"".join(
        _SYM.pack(sym_names[i + 1], (STB_GLOBAL << 4) | kind, 0, section, addr, size)
        for i, (_, addr, size, kind, section) in enumerate(symbols))

    tail = bytearray()
    tail_offset = data_offset + len(data)
    placed = {}
    for name, blob in ((".symtab", symtab), (".strtab", strtab), (".shstrtab", shstrtab)):
        pad = _align(tail_offset + len(tail), 8) - (tail_offset + len(tail))
        tail += bytes(pad)
        placed[name] = tail_offset + len(tail)
        tail += blob
    shoff = _align(tail_offset + len(tail), 8)
    tail += bytes(shoff - tail_offset - len(tail))

    section_headers = [
        bytes(_SHDR.size),
        _SHDR.pack(sh_names[1], SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, TEXT_ADDR, TEXT_OFFSET,
                   len(code), 0, 0, 16, 0),
        _SHDR.pack(sh_names[2], SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, DATA_ADDR, data_offset,
                   len(data), 0, 0, 16, 0),
        _SHDR.pack(sh_names[3], SHT_SYMTAB, 0, 0, placed[".symtab"], len(symtab), 4, 1, 8, _SYM.size),
        _SHDR.pack(sh_names[4], SHT_STRTAB, 0, 0, placed[".strtab"], len(strtab), 0, 0, 1, 0),
        _SHDR.pack(sh_names[5], SHT_STRTAB, 0, 0, placed[".shstrtab"], len(shstrtab), 0, 0, 1, 0),
    ]
    program_headers = [
        _PHDR.pack(PT_LOAD, PF_R | PF_X, TEXT_OFFSET, TEXT_ADDR, TEXT_ADDR, len(code), len(code), PAGE),
        _PHDR.pack(PT_LOAD, PF_R | PF_W, data_offset, DATA_ADDR, DATA_ADDR, len(data), len(data), PAGE),
        _PHDR.pack(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 0, 16),
    ]
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, little-endian, version 1, SysV
    header = _EHDR.pack(ident, 2, machine, 1, TEXT_ADDR, _EHDR.size, shoff, flags, _EHDR.size,
                        _PHDR.size, len(program_headers), _SHDR.size, len(section_headers), 5)
    head = header + b"".join(program_headers)
    out = bytearray(head) + bytes(TEXT_OFFSET - len(head)) + code
    out += bytes(data_offset - len(out)) + data + tail + b"".join(section_headers)
    return bytes(out)


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _string_table(names: Sequence[str]) -> tuple[bytes, list[int]]:
    table = bytearray()
    offsets = []
    for name in names:
        if name == "" and table:
            offsets.append(0)
            continue
        offsets.append(len(table))
        table += name.encode() + b"\0"
    return bytes(table), offsets
