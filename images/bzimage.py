"""The ELF kernel inside an x86 bzImage.

Under TCG a bzImage spends most of a second decompressing itself. Its payload is the ELF
vmlinux, which carries a PVH entry note, so QEMU can boot it directly with ``-kernel`` and skip
that work (measured here: ready time 5.7 s -> 3.9 s under load). Header offsets follow the
kernel's boot protocol (Documentation/arch/x86/boot.rst): setup_sects at 0x1f1, payload_offset
and payload_length at 0x248 and 0x24c, relative to the protected-mode code after the setup sectors.
"""

from __future__ import annotations

import gzip
import lzma
import struct

import zstandard

from base.errors import InfraError

__all__ = ["elf_payload", "is_bzimage"]

_HDRS_MAGIC = b"HdrS"
_ELF_MAGIC = b"\x7fELF"
_DECOMPRESSORS = {
    b"\x28\xb5\x2f\xfd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
    b"\xfd7zXZ": lzma.decompress,
    b"\x1f\x8b": gzip.decompress,
}


def is_bzimage(data: bytes) -> bool:
    return len(data) > 0x260 and data[0x202:0x206] == _HDRS_MAGIC


def elf_payload(data: bytes, source: str) -> bytes:
    """The decompressed ELF vmlinux of a bzImage. Raises InfraError naming ``source`` when the
    image is not a bzImage, uses an unknown compression, or holds no ELF."""
    if not is_bzimage(data):
        raise InfraError(f"{source} is not a bzImage (no HdrS boot-protocol header)")
    setup_sects = data[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = data[start:start + payload_length]
    for magic, decompress in _DECOMPRESSORS.items():
        if payload.startswith(magic):
            elf = decompress(payload)
            break
    else:
        raise InfraError(f"{source}: unknown bzImage payload compression (magic {payload[:6].hex()})")
    if not elf.startswith(_ELF_MAGIC):
        raise InfraError(f"{source}: the bzImage payload is not an ELF kernel")
    return elf
