"""The ELF writer: headers and segments read back with pyelftools, hand-encoded code run natively
or under qemu-user, and full executables from each backend that exists."""

from __future__ import annotations

import io
import struct

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Section, Symbol, SymbolTableSection
from user_mode import require_runner, run_batch

from jit_core import elf
from jit_core.asm import assemble
from jit_core.errors import JitError

# write(1, DATA_ADDR, 8); exit_group(42), hand-encoded per architecture.
_WRITE_EXIT = {
    "x86_64": bytes.fromhex("b801000000" "bf01000000" "be00000010" "ba08000000" "0f05"
                            "b8e7000000" "bf2a000000" "0f05"),
    "arm64": struct.pack("<8I", 0xD2800808, 0xD2800020, 0xD2A20001, 0xD2800102, 0xD4000001,
                         0xD2800BC8, 0xD2800540, 0xD4000001),
    "riscv64": struct.pack("<8I", 0x04000893, 0x00100513, 0x100005B7, 0x00800613, 0x00000073,
                           0x05E00893, 0x02A00513, 0x00000073),
}
ARCHES = list(_WRITE_EXIT)


def _read(blob: bytes) -> ELFFile:
    return ELFFile(io.BytesIO(blob))


def _section(parsed: ELFFile, name: str) -> Section:
    section = parsed.get_section_by_name(name)
    assert section is not None, name
    return section


def _symbol(parsed: ELFFile, name: str) -> Symbol:
    symtab = _section(parsed, ".symtab")
    assert isinstance(symtab, SymbolTableSection)
    symbols = symtab.get_symbol_by_name(name)
    assert symbols, name
    return symbols[0]


@pytest.mark.parametrize("arch", ARCHES)
def test_headers_and_segments(arch: str) -> None:
    code, data = _WRITE_EXIT[arch], b"12345678" + bytes(100)
    parsed = _read(elf.write_elf(arch, code, data, [("_start", elf.TEXT_ADDR, len(code), elf.STT_FUNC, 1)]))
    machine = {"x86_64": "EM_X86_64", "arm64": "EM_AARCH64", "riscv64": "EM_RISCV"}[arch]
    assert parsed.header["e_machine"] == machine
    assert parsed.header["e_type"] == "ET_EXEC"
    assert parsed.header["e_entry"] == elf.TEXT_ADDR
    assert parsed.header["e_flags"] == (0x5 if arch == "riscv64" else 0)
    assert parsed.elfclass == 64 and parsed.little_endian
    loads = [s for s in parsed.iter_segments() if s["p_type"] == "PT_LOAD"]
    assert [(s["p_vaddr"], s["p_flags"]) for s in loads] == [(elf.TEXT_ADDR, 5), (elf.DATA_ADDR, 6)]
    for segment in loads:  # the kernel maps file pages, so offset and address share a page offset
        assert segment["p_offset"] % elf.PAGE == segment["p_vaddr"] % elf.PAGE
    assert loads[0].data() == code and loads[1].data() == data
    stack = [s for s in parsed.iter_segments() if s["p_type"] == "PT_GNU_STACK"]
    assert stack and stack[0]["p_flags"] == 6  # not executable
    assert _section(parsed, ".text").data() == code
    symbol = _symbol(parsed, "_start")
    assert symbol["st_value"] == elf.TEXT_ADDR and symbol["st_info"]["type"] == "STT_FUNC"


@pytest.mark.parametrize("arch", ARCHES)
def test_hand_encoded_executable_runs(arch: str) -> None:
    require_runner(arch)
    blob = elf.write_elf(arch, _WRITE_EXIT[arch], b"jitprobe" + bytes(8))
    assert run_batch(arch, [blob]) == [(b"jitprobe", 42)]


def test_data_layout_places_blobs_aligned_after_mem() -> None:
    layout = elf.data_layout(b"abc", {"one": b"x" * 5, "two": b"y"}, results_size=16)
    assert layout.mem_addr == elf.MEM_ADDR and layout.results_addr == elf.RESULTS_ADDR
    assert layout.blobs["one"] == elf.MEM_ADDR + elf.BLOB_ALIGN
    assert layout.blobs["two"] == elf.MEM_ADDR + 2 * elf.BLOB_ALIGN
    assert layout.end == layout.blobs["two"] + 1


def test_bad_inputs_name_choices() -> None:
    with pytest.raises(JitError, match="valid choices: arm64, riscv64, x86_64"):
        elf.write_elf("mips", b"", b"")
    with pytest.raises(JitError, match="results_size 4 out of range"):
        elf.data_layout(results_size=4)


def test_start_program_calls_main_right_after_it() -> None:
    start = elf.start_program("riscv64", 12, 8)
    assert len(start) == elf.START_SLOTS
    call = next(i for i, insn in enumerate(start) if insn.src == 1 and insn.opcode == 0x85)
    assert call + start[call].imm + 1 == elf.START_SLOTS


PROGRAM = """
    ldxdw %r0, [%r1+0]
    add %r0, %r2
    lddw %r3, {blob}
    ldxb %r3, [%r3+0]
    add %r0, %r3
    exit
"""


@pytest.mark.parametrize("arch", ARCHES)
def test_backend_executable_runs(arch: str) -> None:
    require_runner(arch)
    mem, blobs = (1000).to_bytes(8, "little"), {"blob": b"\x07"}
    layout = elf.data_layout(mem, blobs)
    prog = assemble(PROGRAM.format(blob=hex(layout.blobs["blob"])))
    blob = elf.build_executable(arch, prog, mem, blobs=blobs)
    expected = 1000 + 8 + 7
    assert run_batch(arch, [blob]) == [(expected.to_bytes(8, "little"), expected & 0xFF)]
    parsed = _read(blob)
    main = _symbol(parsed, "main")
    assert elf.TEXT_ADDR < main["st_value"] < elf.TEXT_ADDR + _section(parsed, ".text")["sh_size"]
