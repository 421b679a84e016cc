"""The package lock: every Debian package a guest image is built from, pinned by version and sha256.

Building only ever uses what the lock names; a downloaded file whose sha256 differs is an error,
never a reason to take whatever is newest. ``update_lock`` is the one deliberate way to move to
newer packages (`jitprobe images update`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from base.errors import InfraError
from base.files import cache_root
from base.profiles import available_arches, load_profile

from .apt_root import AptRoot, AptSource, host_mirror
from .cache import sha256_file, write_json

__all__ = [
    "LOCK_PATH",
    "ROLES",
    "SUITE",
    "Lock",
    "LockedPackage",
    "PinnedFile",
    "SuiteDeb",
    "fetch",
    "fetch_pinned",
    "fetch_verified",
    "pin_download",
    "load_lock",
    "private_apt",
    "read_pins",
    "resolve_kernel_package",
    "update_lock",
]

LOCK_PATH = Path(__file__).with_name("packages.lock.json")
SUITE = "trixie"
ROLES = ("kernel", "busybox")


@dataclass(frozen=True)
class LockedPackage:
    """One pinned .deb: which package, exact version, file name and contents."""

    arch: str  # Debian architecture
    role: str  # one of ROLES
    package: str
    version: str
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Lock:
    """The whole lock file."""

    suite: str
    packages: tuple[LockedPackage, ...]

    def entry(self, arch: str, role: str) -> LockedPackage:
        """The pinned package for jitprobe architecture ``arch`` and ``role``.

        Raises InputError for an unknown architecture and InfraError when the lock has no entry.
        """
        deb_arch = load_profile(arch).debian_arch
        for pkg in self.packages:
            if pkg.arch == deb_arch and pkg.role == role:
                return pkg
        raise InfraError(
            f"the package lock has no {role} package for {arch} ({deb_arch}); "
            "run `jitprobe images update` to resolve and pin it"
        )


def load_lock(path: Path = LOCK_PATH) -> Lock:
    """Read and check the lock file. Raises InfraError naming the file and the bad field."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise InfraError(f"cannot read the package lock {path}: {exc}; run `jitprobe images update`") from exc
    except ValueError as exc:
        raise InfraError(f"the package lock {path} is not valid JSON: {exc}") from exc
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("suite"), str)
        or not isinstance(raw.get("packages"), list)
    ):
        raise InfraError(f"the package lock {path} needs a string 'suite' and a list 'packages'")
    packages = []
    for i, item in enumerate(raw["packages"]):
        try:
            pkg = LockedPackage(**item)
        except TypeError as exc:
            raise InfraError(f"the package lock {path}: packages[{i}] is malformed: {exc}") from exc
        if pkg.role not in ROLES or len(pkg.sha256) != 64 or "/" in pkg.filename:
            raise InfraError(
                f"the package lock {path}: packages[{i}] has a bad role, sha256 or filename: {item}"
            )
        packages.append(pkg)
    return Lock(raw["suite"], tuple(packages))


def private_apt(suite: str = SUITE, architectures: Sequence[str] = ()) -> AptRoot:
    """The private apt root under the cache folder reading ``suite`` from the host's mirror for
    ``architectures`` (default: every profile's Debian architecture). One root per suite and
    set of architectures, shared by the images, the realjit programs and the kernel modules, so
    a suite's package lists are downloaded once.

    Raises InfraError when the host's apt sources name no Debian mirror.
    """
    arches = tuple(sorted(set(architectures) or {load_profile(a).debian_arch for a in available_arches()}))
    root = cache_root() / "apt-roots" / f"{suite}-{'+'.join(arches)}"
    return AptRoot(root, [AptSource(host_mirror(), (suite,), architectures=arches)])


class PinnedFile(Protocol):
    """What fetching needs of a pinned .deb: a LockedPackage, or another lock's entry of that shape."""

    @property
    def package(self) -> str: ...
    @property
    def arch(self) -> str: ...  # Debian architecture
    @property
    def version(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


def fetch_verified(pkg: PinnedFile, path: Path, apt: Callable[[], AptRoot], mismatch_hint: str = "") -> Path:
    """``path`` when it holds ``pkg``'s pinned bytes; else ``pkg`` downloaded with ``apt()`` (made only
    then) and moved there.

    Raises InfraError when the download fails, or when its sha256 differs from the lock's (the bad
    file is removed, so it is never used; ``mismatch_hint`` ends that message).
    """
    if path.is_file() and path.stat().st_size == pkg.size and sha256_file(path) == pkg.sha256:
        return path
    root = apt()
    try:
        got = root.download(pkg.package, pkg.arch, pkg.version)
    except InfraError:
        root.update()  # the lists may be missing or older than the lock
        got = root.download(pkg.package, pkg.arch, pkg.version)
    actual = sha256_file(got)
    if actual != pkg.sha256:
        got.unlink()
        raise InfraError(
            f"{pkg.package} {pkg.version} ({pkg.arch}): downloaded sha256 {actual} differs from the lock's "
            f"{pkg.sha256}{mismatch_hint}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, path)
    return path


@dataclass(frozen=True)
class SuiteDeb:
    """A .deb of a Debian suite pinned by version, size and sha256: an entry of the realjit and
    kernel-module locks (their entries add what the package is for)."""

    suite: str
    arch: str  # Debian architecture (all: architecture-independent)
    package: str
    version: str
    filename: str
    size: int
    sha256: str


_Pin = TypeVar("_Pin", bound=SuiteDeb)


def read_pins(path: Path, cls: type[_Pin], what: str) -> list[_Pin]:
    """The entries of the lock ``path`` (``{"packages": [...]}``) as ``cls``. Raises InfraError
    naming the ``what`` lock, the file and the error."""
    try:
        raw = json.loads(path.read_text())
        return [cls(**item) for item in raw["packages"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InfraError(f"cannot read the {what} package lock {path}: {exc}") from exc


def fetch_pinned(entry: SuiteDeb, folder: Path, lock_path: Path, apt: Callable[[], AptRoot]) -> Path:
    """The verified .deb of ``entry`` in ``folder``, downloaded with ``apt()`` if absent.

    Raises InfraError naming the package, version, suite and ``lock_path`` when apt cannot get it
    (the mirror no longer serves that version) or its sha256 differs from the lock.
    """
    try:
        return fetch_verified(entry, folder / entry.filename, apt)
    except InfraError as exc:
        raise InfraError(
            f"cannot download {entry.package} {entry.version} ({entry.arch}) from Debian {entry.suite}, "
            f"pinned in {lock_path}: {exc}"
        ) from exc


def pin_download(apt: AptRoot, suite: str, package: str, arch: str, version: str, folder: Path) -> SuiteDeb:
    """Download ``package`` ``version`` for Debian ``arch`` with ``apt`` into ``folder`` and pin it
    (size and sha256). Raises InfraError when apt cannot get it."""
    deb = apt.download(package, arch, version)
    dest = folder / deb.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(deb, dest)
    return SuiteDeb(suite, arch, package, version, deb.name, dest.stat().st_size, sha256_file(dest))


def fetch(pkg: LockedPackage, suite: str = SUITE) -> Path:
    """The verified .deb of ``pkg`` in the cache, downloading it from ``suite`` if absent.

    Raises InfraError when the download fails or its sha256 differs from the lock (the bad file is
    removed, so it is never used).
    """
    return fetch_verified(
        pkg,
        cache_root() / "debs" / pkg.filename,
        lambda: private_apt(suite),
        "; the mirror serves different bytes for a pinned version. Check the mirror, or run "
        "`jitprobe images update` to pin what it serves now",
    )


def resolve_kernel_package(apt: AptRoot, deb_arch: str) -> str:
    """The versioned kernel package (linux-image-<version>-<arch>) that linux-image-<arch> points to.

    Raises InfraError when the metapackage has no candidate or depends on no such package.
    """
    meta = f"linux-image-{deb_arch}"
    depends = apt.fields(meta, deb_arch, apt.candidate_version(meta, deb_arch)).get("Depends", "")
    for alternative in depends.split(","):
        name = alternative.split("|")[0].split("(")[0].strip()
        if name.startswith("linux-image-") and name.endswith(f"-{deb_arch}") and name != meta:
            return name
    raise InfraError(f"{meta} in {SUITE} depends on no versioned kernel package (Depends: {depends!r})")


def update_lock(path: Path = LOCK_PATH, suite: str = SUITE) -> Lock:
    """Resolve the current candidates in ``suite``, download and hash them, and rewrite the lock.

    Raises InfraError when apt fails.
    """
    apt = private_apt(suite)
    apt.update()
    packages = []
    for arch in available_arches():
        deb_arch = load_profile(arch).debian_arch
        for role, name in (("kernel", resolve_kernel_package(apt, deb_arch)), ("busybox", "busybox-static")):
            version = apt.candidate_version(name, deb_arch)
            index = apt.fields(name, deb_arch, version)
            dest = cache_root() / "debs" / Path(index.get("Filename", "")).name
            # A .deb already in the cache with the index's sha256 is the same file: skip its download.
            if not (dest.name and dest.is_file() and sha256_file(dest) == index.get("SHA256")):
                deb = apt.download(name, deb_arch, version)
                dest = cache_root() / "debs" / deb.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(deb, dest)
            pkg = LockedPackage(
                deb_arch, role, name, version, dest.name, dest.stat().st_size, sha256_file(dest)
            )
            packages.append(pkg)
    lock = Lock(suite, tuple(packages))
    write_json(path, {"suite": lock.suite, "packages": [asdict(p) for p in lock.packages]})
    return lock
