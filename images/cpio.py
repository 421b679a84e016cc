"""The "newc" cpio format (SVR4 without CRC) that Linux unpacks as an initramfs.

Written by the project rather than a cpio tool so that device nodes and root ownership need no
privileges and the bytes are reproducible (mtime 0). Linux unpacks several archives concatenated
one after another; ``append_archive`` uses that to add per-run files to a built initramfs.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "MAGIC",
    "TRAILER",
    "CpioEntry",
    "append_archive",
    "archive_bytes",
    "char_device",
    "directory",
    "file",
    "read_archives",
    "symlink",
    "write_archive",
]

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_FIELDS = (
    13  # after the magic: ino mode uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin namesize check
)
_HEADER_LEN = len(MAGIC) + 8 * _FIELDS
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class CpioEntry:
    """One archive member. ``name`` is relative (no leading '/'); ``mode`` includes the file type."""

    name: str
    mode: int
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("/") or "\0" in self.name or ".." in self.name.split("/"):
            raise ValueError(
                f"invalid cpio member name {self.name!r}: must be relative, non-empty, without NUL or '..'"
            )
        kind = stat.S_IFMT(self.mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK):
            raise ValueError(
                f"cpio member {self.name!r}: unsupported file type {oct(kind)} in mode {oct(self.mode)}"
            )
        if self.data and kind not in (stat.S_IFREG, stat.S_IFLNK):
            raise ValueError(f"cpio member {self.name!r}: only files and symlinks carry data")
        for field_name in ("mode", "uid", "gid", "mtime", "rdevmajor", "rdevminor"):
            value = getattr(self, field_name)
            if not 0 <= value <= _U32:
                raise ValueError(f"cpio member {self.name!r}: {field_name} {value} outside 0..{_U32}")
        if len(self.data) > _U32:
            raise ValueError(f"cpio member {self.name!r}: {len(self.data)} bytes exceed newc's 4 GiB limit")


def file(name: str, data: bytes, perm: int = 0o644) -> CpioEntry:
    """A regular file."""
    return CpioEntry(name, stat.S_IFREG | _perm(perm), data)


def directory(name: str, perm: int = 0o755) -> CpioEntry:
    """A directory (list it before what it holds)."""
    return CpioEntry(name, stat.S_IFDIR | _perm(perm))


def symlink(name: str, target: str) -> CpioEntry:
    """A symbolic link to ``target``."""
    return CpioEntry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> CpioEntry:
    """A character device node."""
    return CpioEntry(name, stat.S_IFCHR | _perm(perm), rdevmajor=major, rdevminor=minor)


def _perm(perm: int) -> int:
    if not 0 <= perm <= 0o7777:
        raise ValueError(f"invalid permission bits {oct(perm)}; valid range 0..0o7777")
    return perm


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _member(ino: int, entry: CpioEntry) -> bytes:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino,
        entry.mode,
        entry.uid,
        entry.gid,
        nlink,
        entry.mtime,
        len(entry.data),
        0,
        0,
        entry.rdevmajor,
        entry.rdevminor,
        len(name),
        0,
    )
    header = MAGIC + b"".join(b"%08X" % f for f in fields)
    return header + name + _pad4(_HEADER_LEN + len(name)) + entry.data + _pad4(len(entry.data))


def write_archive(out: BinaryIO, entries: Iterable[CpioEntry], first_ino: int = 1) -> int:
    """Write one archive (members then the trailer) to ``out``; returns the bytes written.

    Raises ValueError when two members share a name.
    """
    seen: set[str] = set()
    written = 0
    ino = first_ino
    for entry in entries:
        if entry.name in seen:
            raise ValueError(f"cpio member {entry.name!r} appears twice")
        seen.add(entry.name)
        chunk = _member(ino, entry)
        out.write(chunk)
        written += len(chunk)
        ino += 1
    trailer = _member(0, CpioEntry(TRAILER, stat.S_IFREG))
    out.write(trailer)
    written += len(trailer)
    # Pad to 512 bytes like cpio(1); the kernel skips the zeros between concatenated archives.
    padding = b"\0" * (-written % 512)
    out.write(padding)
    return written + len(padding)


def archive_bytes(entries: Iterable[CpioEntry]) -> bytes:
    """One archive as bytes."""
    buf = io.BytesIO()
    write_archive(buf, entries)
    return buf.getvalue()


def append_archive(path: Path, entries: Iterable[CpioEntry]) -> None:
    """Append a second archive to the initramfs at ``path`` (Linux unpacks both, later wins).

    Inode numbers start past 2**24 so hard-link detection never joins members of the two archives.
    Raises ValueError when ``path`` does not end on a 4-byte boundary (not a newc archive).
    """
    size = path.stat().st_size
    if size % 4:
        raise ValueError(f"{path} is {size} bytes, not a multiple of 4: not a newc cpio archive")
    with open(path, "ab") as out:
        write_archive(out, entries, first_ino=1 << 24)


def read_archives(data: bytes) -> list[CpioEntry]:
    """Every member of one or more concatenated newc archives (trailers and padding skipped).

    Raises ValueError on a bad magic, a bad hex field, or a truncated member.
    """
    entries: list[CpioEntry] = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1  # padding between archives
            continue
        header = data[pos : pos + _HEADER_LEN]
        if len(header) < _HEADER_LEN or not header.startswith(MAGIC):
            raise ValueError(f"no newc cpio header at offset {pos}")
        try:
            f = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(_FIELDS)]
        except ValueError as exc:
            raise ValueError(f"bad hex field in the cpio header at offset {pos}") from exc
        mode, uid, gid, mtime, size, rmaj, rmin, namesize = f[1], f[2], f[3], f[5], f[6], f[9], f[10], f[11]
        name_end = pos + _HEADER_LEN + namesize
        data_start = name_end + (-(_HEADER_LEN + namesize) % 4)
        if data_start + size > len(data):
            raise ValueError(f"cpio member at offset {pos} is truncated")
        name = data[pos + _HEADER_LEN : name_end - 1].decode()
        body = data[data_start : data_start + size]
        pos = data_start + size + (-size % 4)
        if name != TRAILER:
            entries.append(CpioEntry(name, mode, body, uid, gid, mtime, rmaj, rmin))
    return entries
