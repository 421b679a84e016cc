"""Out-of-tree kernel modules for the guests' kernels: sources in tests/kernel_modules/<name>/ (a
Kbuild file and C files), built with the host's cross gcc against Debian's headers of the very
kernel the guest images boot (images/packages.lock.json), for the kernel stress suite.

The build needs, per kernel, Debian's ``linux-headers-<release>`` (the flavour's .config,
Module.symvers and generated headers), the ``linux-headers-<...>-common`` and ``linux-kbuild-<...>``
packages it depends on (the sources' headers; fixdep, modpost and the other host tools, built for
the host's Debian architecture), and ``libc6`` of the same suite for the host's architecture:
kbuild's modpost is linked against that suite's glibc (it calls __isoc23_strtoul, glibc 2.38),
newer than a Debian 12 host's, so it runs under the suite's own dynamic loader and libc, exactly
as Debian built it. They come through the suite's private apt root (``images.lock.private_apt``,
under ``$XDG_CACHE_HOME/jitprobe/``; the host's apt configuration is never touched) and
are pinned by version and sha256 in ``packages.lock.json`` next to this file, per kernel package
and version; a download whose sha256 differs from the lock is an error.

The compiler is the host's ``<gnu_triplet>-gcc`` (the profile's); Debian's headers name a newer
gcc and skip kbuild's compiler version check (DEBIAN_KERNEL_NO_CC_VERSION_CHECK). What of the
kernel's configuration the host cannot build is turned off on make's command line
(``_MAKE_OVERRIDES``: module BTF, gcc 14's -fmin-function-alignment). vermagic and the
MODVERSIONS CRCs come from the headers, so the module loads in the guest unsigned (it taints the
kernel: Debian does not enforce module signatures).

Built modules are cached in ``$XDG_CACHE_HOME/jitprobe/kernel_modules/modules/`` under a name
that includes a digest of the module's sources, the pinned packages, the compiler's version and
the make arguments.

``python -m harness.kernel_modules update`` pins the packages for the kernels of the image lock;
``python -m harness.kernel_modules build <module> <arch>`` builds one and prints its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from base.errors import InfraError, InputError
from base.files import cache_root, file_lock
from base.proc import run
from base.profiles import available_arches, load_profile
from images.apt_root import AptRoot
from images.cache import write_json
from images.lock import SUITE, SuiteDeb, fetch_pinned, pin_download, private_apt, read_pins
from images.lock import load_lock as load_image_lock

__all__ = [
    "LOCK_PATH",
    "MODULES_DIR",
    "ROLES",
    "PinnedDeb",
    "apt_root",
    "build",
    "kernel_release",
    "load_lock",
    "main",
    "module_names",
    "pins_for",
    "update_lock",
]

PACKAGE_DIR = Path(__file__).resolve().parent
LOCK_PATH = PACKAGE_DIR / "packages.lock.json"
MODULES_DIR = PACKAGE_DIR.parent.parent / "tests" / "kernel_modules"
# What each pinned package is to a kernel's module build.
ROLES = ("headers", "headers_common", "kbuild", "host_libc")
_IMAGE_PREFIX = "linux-image-"
_HEADERS_PREFIX = "linux-headers-"
_KBUILD_PREFIX = "linux-kbuild-"
_HOST_LIBC = "libc6"
# Kernel configuration the host's build leaves out, on the make command line (over the headers'
# include/config/auto.conf): module BTF (it needs pahole, and nothing reads a module's BTF), and
# gcc 14's -fmin-function-alignment, which the host's older gcc does not know: kbuild then aligns
# functions with -falign-functions to the same CONFIG_FUNCTION_ALIGNMENT (cold ones excepted).
_MAKE_OVERRIDES = ("CONFIG_DEBUG_INFO_BTF_MODULES=", "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT=")


@dataclass(frozen=True)
class PinnedDeb(SuiteDeb):
    """One entry of packages.lock.json: a package one kernel's module build needs."""

    kernel: str  # the image lock's kernel package it serves
    kernel_version: str
    role: str  # one of ROLES


def load_lock(path: Path = LOCK_PATH) -> list[PinnedDeb]:
    """The pinned packages. Raises InfraError naming the file and the bad entry."""
    entries = read_pins(path, PinnedDeb, "kernel module")
    for entry in entries:
        if entry.role not in ROLES or len(entry.sha256) != 64 or "/" in entry.filename:
            raise InfraError(f"the kernel module package lock {path}: bad role, sha256 or filename in "
                             f"{asdict(entry)}; roles: {', '.join(ROLES)}")  # fmt: skip
    return entries


def kernel_release(arch: str) -> tuple[str, str]:
    """(kernel package, its version) of the image lock for jitprobe architecture ``arch``."""
    kernel = load_image_lock().entry(arch, "kernel")
    return kernel.package, kernel.version


def pins_for(arch: str, lock: list[PinnedDeb] | None = None) -> dict[str, PinnedDeb]:
    """The pinned packages, by role, that build modules for ``arch``'s guest kernel. Raises
    InfraError when the lock lacks one (for example after the image lock moved to a newer kernel)."""
    package, version = kernel_release(arch)
    found = {e.role: e for e in (load_lock() if lock is None else lock)
             if (e.kernel, e.kernel_version) == (package, version)}  # fmt: skip
    missing = [r for r in ROLES if r not in found]
    if missing:
        raise InfraError(f"{LOCK_PATH} pins no {', '.join(missing)} package for {package} {version} "
                         "(the guest kernel of images/packages.lock.json); "
                         "run `python -m harness.kernel_modules update`")  # fmt: skip
    return found


def _root() -> Path:
    return cache_root() / "kernel_modules"


def _host_arch() -> str:
    return run(["dpkg", "--print-architecture"], what="dpkg --print-architecture").stdout.strip()


def apt_root(suite: str = SUITE) -> AptRoot:
    """The private apt root reading ``suite`` from the host's mirror, for every profile's Debian
    architecture and the host's. Raises InfraError when the host's apt sources name no mirror."""
    arches = {load_profile(a).debian_arch for a in available_arches()} | {_host_arch()}
    return private_apt(suite, sorted(arches))


def _fetch(entry: PinnedDeb) -> Path:
    return fetch_pinned(entry, _root() / "debs", LOCK_PATH, lambda: apt_root(entry.suite))


def _unpack(entries: list[PinnedDeb], name: str) -> Path:
    """The packages unpacked together, once, into one cached tree (the headers' symlinks into
    the kbuild package are relative)."""
    key = hashlib.sha256("".join(e.sha256 for e in entries).encode()).hexdigest()[:16]
    dest = _root() / "trees" / f"{name}-{key}"
    if dest.is_dir():
        return dest
    debs = [_fetch(e) for e in entries]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack", dir=dest.parent))
    try:
        for deb in debs:
            proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise InfraError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _prepare_headers(tree: Path, headers: PinnedDeb) -> Path:
    """The flavour's headers folder inside ``tree``, its Makefile made to include the common
    headers of ``tree`` instead of /usr/src's. Raises InfraError when the package is not laid out
    as expected."""
    release = headers.package.removeprefix(_HEADERS_PREFIX)
    folder = tree / "usr" / "src" / f"{_HEADERS_PREFIX}{release}"
    makefile = folder / "Makefile"
    if not makefile.is_file() or not (folder / ".config").is_file():
        raise InfraError(
            f"{headers.package} {headers.version} has no usr/src/{folder.name}/Makefile or .config"
        )
    text = makefile.read_text()
    fixed = re.sub(r"^include /usr/src/", f"include {tree}/usr/src/", text, flags=re.M)
    if fixed != text:
        makefile.write_text(fixed)
    return folder


def _modpost_wrapper(tree: Path, libc_tree: Path, headers_dir: Path) -> Path:
    """A script that runs kbuild's modpost for the kernel's ELF class and byte order (Debian's own
    ``scripts/mod/modpost`` chooses the same way) under the pinned libc's loader."""
    config = (headers_dir / ".config").read_text()
    bits = "64" if re.search(r"^CONFIG_64BIT=y$", config, re.M) else "32"
    order = "msb" if re.search(r"^CONFIG_CPU_BIG_ENDIAN=y$", config, re.M) else "lsb"
    real = (headers_dir / "scripts" / "mod" / f"modpost.real-{order}-{bits}").resolve()
    loaders = sorted(libc_tree.glob("usr/lib/*/ld-linux*.so.*"))
    if not real.is_file() or len(loaders) != 1:
        raise InfraError(f"no {real.name} in the kbuild package, or not one dynamic loader in the pinned "
                         f"libc ({', '.join(map(str, loaders)) or 'none'})")  # fmt: skip
    loader = loaders[0]
    script = tree / "modpost-under-pinned-libc"
    script.write_text(f"#!/bin/sh\nexec {loader} --library-path {loader.parent} {real} \"$@\"\n")
    script.chmod(0o755)
    return script


def _compiler_version(cc: str) -> str:
    proc = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.returncode == 0 and proc.stdout else ""


def module_names() -> list[str]:
    """The modules of tests/kernel_modules/ (folders with a Kbuild file)."""
    return sorted(p.parent.name for p in MODULES_DIR.glob("*/Kbuild"))


def build(name: str, arch: str) -> Path:
    """The .ko of module ``name`` built for jitprobe architecture ``arch``'s guest kernel, cached.

    Raises InputError for an unknown module, InfraError when a package cannot be fetched, the
    cross compiler is missing, the build fails or its vermagic is not the guest kernel's."""
    if name not in module_names():
        raise InputError("kernel module", name, module_names())
    source = MODULES_DIR / name
    pins = pins_for(arch)
    cc = f"{load_profile(arch).gnu_triplet}-gcc"
    if shutil.which(cc) is None:
        raise InfraError(f"{cc} is not installed (run `make setup`)")
    make_args = [*_MAKE_OVERRIDES, f"CC={cc}"]
    digest = hashlib.sha256()
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps([[asdict(pins[r]) for r in ROLES], make_args, _compiler_version(cc)]).encode())
    out = _root() / "modules" / f"{name}-{arch}-{digest.hexdigest()[:16]}.ko"
    if out.is_file():
        return out
    with file_lock(_root() / ".build.lock"):
        if out.is_file():
            return out
        tree = _unpack([pins["headers"], pins["headers_common"], pins["kbuild"]], pins["headers"].package)
        headers_dir = _prepare_headers(tree, pins["headers"])
        modpost = _modpost_wrapper(tree, _unpack([pins["host_libc"]], pins["host_libc"].package), headers_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out.parent) as work:
            shutil.copytree(source, work, dirs_exist_ok=True)
            argv = ["make", "-C", str(headers_dir), f"M={work}", f"MODPOST={modpost}", *make_args, "modules"]
            proc = subprocess.run(argv, capture_output=True, text=True)
            built = Path(work) / f"{name}.ko"
            if proc.returncode != 0 or not built.is_file():
                raise InfraError(f"building kernel module {name} for {arch} failed: {' '.join(argv)}\n"
                                 f"{(proc.stdout + proc.stderr)[-3000:]}")  # fmt: skip
            release = pins["headers"].package.removeprefix(_HEADERS_PREFIX)
            if f"vermagic={release} ".encode() not in built.read_bytes():
                raise InfraError(f"kernel module {name} for {arch}: its vermagic is not {release}'s")
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            shutil.copyfile(built, tmp)
            os.replace(tmp, out)
    return out


def _depends(fields: dict[str, str]) -> list[str]:
    return [d.strip().split()[0] for d in fields.get("Depends", "").split(",") if d.strip()]


def update_lock(path: Path = LOCK_PATH) -> list[PinnedDeb]:
    """Pin, for every profile's kernel in the image lock, its headers, the common headers and
    kbuild packages they depend on (at the kernel's version) and the suite's host libc, each
    downloaded and hashed, and rewrite the lock. Raises InfraError when apt fails or a package is
    missing."""
    apt = apt_root()
    apt.update()
    host = _host_arch()
    libc_version = apt.candidate_version(_HOST_LIBC, host)
    entries: list[PinnedDeb] = []
    for arch in available_arches():
        kernel, version = kernel_release(arch)
        if not kernel.startswith(_IMAGE_PREFIX):
            raise InfraError(f"the image lock's kernel {kernel} is not named {_IMAGE_PREFIX}<release>")
        deb_arch = load_profile(arch).debian_arch
        headers = _HEADERS_PREFIX + kernel.removeprefix(_IMAGE_PREFIX)
        depends = _depends(apt.fields(headers, deb_arch, version))
        common = [d for d in depends if d.startswith(_HEADERS_PREFIX)]
        kbuild = [d for d in depends if d.startswith(_KBUILD_PREFIX)]
        if len(common) != 1 or len(kbuild) != 1:
            raise InfraError(f"{headers} {version} depends on {', '.join(depends)}: expected one "
                             f"{_HEADERS_PREFIX}* and one {_KBUILD_PREFIX}* package")  # fmt: skip
        wanted = [("headers", headers, deb_arch, version), ("headers_common", common[0], "all", version),
                  ("kbuild", kbuild[0], host, version), ("host_libc", _HOST_LIBC, host, libc_version)]
        for role, package, pkg_arch, pkg_version in wanted:
            pin = pin_download(apt, SUITE, package, pkg_arch, pkg_version, _root() / "debs")
            entries.append(PinnedDeb(**asdict(pin), kernel=kernel, kernel_version=version, role=role))
    write_json(path, {"packages": [asdict(e) for e in entries]})
    return entries


def main(argv: list[str]) -> int:
    if argv[1:] == ["update"]:
        for entry in update_lock():
            print(f"{entry.kernel}: {entry.role} {entry.package} {entry.version} ({entry.arch})")
        return 0
    if len(argv) == 4 and argv[1] == "build":
        print(build(argv[2], argv[3]))
        return 0
    print("usage: python -m harness.kernel_modules update | build <module> <arch>", file=sys.stderr)
    return 2
