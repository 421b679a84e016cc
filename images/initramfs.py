"""The guest initramfs: busybox, /init, device nodes and the few modules needed to mount 9p.

Everything else of the kernel's module tree reaches the guest over the read-only 9p share
``modules``, so the initramfs stays a few megabytes however many modules the kernel has.
"""

from __future__ import annotations

import lzma
import struct
from pathlib import Path

from . import cpio

__all__ = [
    "INIT_SCRIPT",
    "MODULES_IN_INITRAMFS",
    "NINEP_MODULES",
    "SIGNATURE_MAGIC",
    "initramfs_entries",
    "load_module",
    "module_closure",
    "module_name",
    "strip_signature",
]

INIT_SCRIPT = Path(__file__).with_name("init.sh")
# What /init needs to mount a virtio-9p share; their modules.dep closure comes along.
NINEP_MODULES = ("9pnet_virtio", "9p")
MODULES_IN_INITRAMFS = "lib/jitprobe-modules"
# Trailer of a signed module (include/linux/module_signature.h): the signature, then a 12-byte
# struct module_signature whose last field is the signature length (big-endian), then the magic.
SIGNATURE_MAGIC = b"~Module signature appended~\n"
_SIGNATURE_INFO = struct.Struct(">BBBBBxxxI")

_DIRECTORIES = (
    "bin",
    "dev",
    "etc",
    "lib",
    MODULES_IN_INITRAMFS,
    "lib/modules",
    "mnt",
    "mnt/host",
    "proc",
    "root",
    "sbin",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/sbin",
)


def module_closure(modules_dep: str, wanted: tuple[str, ...] = NINEP_MODULES) -> list[str]:
    """Paths (as in modules.dep) of ``wanted`` and everything they need, dependencies first.

    Raises ValueError naming a wanted module that modules.dep does not list.
    """
    deps: dict[str, list[str]] = {}
    for line in modules_dep.splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[path.strip()] = rest.split()
    by_name = {module_name(path): path for path in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise ValueError(
                f"module {name!r} is not in modules.dep; the kernel may have it built in or lack it"
            )
        visit(by_name[name])
    return order


def module_name(path: str) -> str:
    """The module name of a modules.dep path (``kernel/net/9p/9pnet.ko.xz`` -> ``9pnet``)."""
    base = path.rsplit("/", 1)[-1]
    return base[: base.index(".ko")].replace("-", "_")


def load_module(path: Path) -> bytes:
    """A module file's ELF bytes, decompressing .ko.xz (busybox insmod is given plain ELF).

    Raises ValueError for a compression it does not know.
    """
    data = path.read_bytes()
    if path.name.endswith(".ko"):
        return data
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    raise ValueError(f"unsupported module compression: {path.name}; valid: .ko, .ko.xz")


def strip_signature(data: bytes) -> bytes:
    """A module's ELF bytes without its appended signature (unchanged when it has none).

    The kernel checks an appended signature at every load; under TCG the hash and RSA work of
    the four boot-time modules costs a few tenths of a second. Signatures are not enforced by
    the guest kernel, so an unsigned module loads; the kernel notes it once as "module
    verification failed ... tainting kernel" (taint flag E) in its log.
    Raises ValueError when the trailer's signature length does not fit in the file.
    """
    if not data.endswith(SIGNATURE_MAGIC):
        return data
    info_end = len(data) - len(SIGNATURE_MAGIC)
    info_start = info_end - _SIGNATURE_INFO.size
    if info_start < 0:
        raise ValueError(f"module signature trailer truncated: {len(data)} bytes in all")
    sig_len = _SIGNATURE_INFO.unpack_from(data, info_start)[-1]
    if sig_len > info_start:
        raise ValueError(f"module signature length {sig_len} exceeds the {info_start} bytes before it")
    return data[: info_start - sig_len]


def initramfs_entries(busybox: bytes, modules: list[tuple[str, bytes]]) -> list[cpio.CpioEntry]:
    """The members of the initramfs; ``modules`` are (name, ELF bytes) in load order."""
    entries = [cpio.directory(d) for d in _DIRECTORIES]
    entries[_DIRECTORIES.index("tmp")] = cpio.directory("tmp", 0o1777)
    # The kernel opens /dev/console for /init's stdio before anything is mounted.
    entries += [cpio.char_device("dev/console", 5, 1), cpio.char_device("dev/null", 1, 3, 0o666)]
    entries += [
        cpio.file("bin/busybox", busybox, 0o755),
        cpio.symlink("bin/sh", "busybox"),
        cpio.file("init", INIT_SCRIPT.read_bytes(), 0o755),
    ]
    entries += [
        cpio.file(f"{MODULES_IN_INITRAMFS}/{i:02d}-{name}.ko", data) for i, (name, data) in enumerate(modules)
    ]
    return entries
