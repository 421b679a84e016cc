"""images.initramfs.strip_signature: the appended module signature is cut off exactly."""

from __future__ import annotations

import struct

import pytest

from images.initramfs import SIGNATURE_MAGIC, strip_signature

ELF = b"\x7fELF" + bytes(range(60))


def _signed(body: bytes, signature: bytes) -> bytes:
    # struct module_signature: algo, hash, id_type (2 = PKCS#7), signer_len, key_id_len, pad[3], sig_len
    info = struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, len(signature))
    return body + signature + info + SIGNATURE_MAGIC


def test_strips_signature_info_and_magic() -> None:
    assert strip_signature(_signed(ELF, b"S" * 517)) == ELF


def test_unsigned_module_is_unchanged() -> None:
    assert strip_signature(ELF) == ELF


def test_signature_longer_than_file_is_refused() -> None:
    data = bytearray(_signed(ELF, b"S" * 8))
    struct.pack_into(">I", data, len(data) - len(SIGNATURE_MAGIC) - 4, 10_000)
    with pytest.raises(ValueError, match="10000"):
        strip_signature(bytes(data))


def test_truncated_trailer_is_refused() -> None:
    with pytest.raises(ValueError, match="truncated"):
        strip_signature(b"xy" + SIGNATURE_MAGIC)
