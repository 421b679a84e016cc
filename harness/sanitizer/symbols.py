"""Names and disassembly for the PCs the sanitizer reports."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from base.disasm import disassembler
from base.errors import InfraError

__all__ = ["Symbolizer", "disassemble"]


def disassemble(arch: str, insn: bytes, pc: int) -> str:
    """One instruction as text (``"(unknown)"`` when capstone cannot decode it)."""
    for i in disassembler(arch).disasm(insn, pc):
        return f"{i.mnemonic} {i.op_str}".strip()
    return "(unknown)"


class _Table:
    """Sorted (address, size, name) entries. An entry of size 0 (System.map has no sizes) reaches
    to the next entry, but no further than MAX_UNSIZED bytes."""

    MAX_UNSIZED = 0x10000

    def __init__(self, entries: list[tuple[int, int, str]]):
        entries.sort()
        self.starts = [e[0] for e in entries]
        self.entries = entries

    def lookup(self, addr: int) -> str | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return None
        start, size, name = self.entries[i]
        if addr >= start + (size or self.MAX_UNSIZED):
            return None
        return name if addr == start else f"{name}+{addr - start:#x}"


def _elf_symbols(path: Path) -> list[tuple[int, int, str]]:
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            out = []
            for section in elf.iter_sections():
                if isinstance(section, SymbolTableSection):
                    for sym in section.iter_symbols():
                        # ELF gives sizes: a symbol without one (_init, _fini) names only its address.
                        if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"] and sym.name:
                            out.append((sym["st_value"], max(sym["st_size"], 1), sym.name))
            return out
    except (OSError, ELFError) as exc:
        raise InfraError(f"cannot read ELF symbols of {path}: {exc}") from exc


def _system_map(path: Path) -> list[tuple[int, int, str]]:
    out = []
    try:
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                out.append((int(parts[0], 16), 0, parts[2]))
    except OSError as exc:
        raise InfraError(f"cannot read {path}: {exc}") from exc
    return out


class Symbolizer:
    """Looks PCs up in user binaries' ELF symbols and the kernel's System.map.

    Raises InfraError at construction when a given file cannot be read.
    """

    def __init__(self, binaries: Sequence[Path] = (), system_map: Path | None = None):
        user: list[tuple[int, int, str]] = []
        for b in binaries:
            user += _elf_symbols(Path(b))
        self.user = _Table(user)
        self.kernel = _Table(_system_map(Path(system_map)) if system_map else [])

    def lookup(self, pc: int, kernel: bool) -> str | None:
        """``name+0xoff`` of the symbol holding pc, or None."""
        return (self.kernel if kernel else self.user).lookup(pc)
