"""Real JITs for the sanitizer tests: small C programs statically linked with Debian's own JIT libraries.

- ``pcre2_jit``: PCRE2's JIT (sljit, libpcre2-8.a from libpcre2-dev), two threads compiling,
  matching and freeing regexes in a loop.
- ``luajit_flush``: LuaJIT's trace compiler (libluajit-5.1.a from libluajit-5.1-dev), two threads
  with a lua_State each, compiling traces and throwing them away with jit.flush() in a loop.

The .deb files come through private apt roots (``images.apt_root``, one per Debian suite, under
``$XDG_CACHE_HOME/jitprobe/realjit/``; the host's apt configuration is never touched) and are
pinned by version and sha256 in ``packages.lock.json`` next to this file, as the guest images
are in images/packages.lock.json. A download whose sha256 differs from the lock is an error.

Which suite, and why. The cross compilers on this Debian 12 host are bookworm's (gcc 12, glibc
2.36, binutils 2.40), the guests run Debian 13 (trixie):
- libpcre2-dev: trixie's (10.46) on every architecture; its libpcre2-8.a needs nothing newer than
  glibc 2.36.
- libluajit-5.1-dev: trixie's libluajit-5.1.a (openresty 2.1.0 20250117) calls __isoc23_strtoul
  and __isoc23_fscanf (glibc 2.38). amd64 and arm64 take bookworm's package (2.1.0~beta3, git
  2022-03-20), which links with glibc 2.36 as it is. riscv64 has no bookworm release (Debian's
  first riscv64 release is trixie), so it takes trixie's library with two C99 aliases for those
  symbols (glibc238_compat.c; linking trixie's glibc instead is not possible: bookworm's linker
  crashes on trixie's riscv64 libc.a).

Built programs are cached in ``$XDG_CACHE_HOME/jitprobe/realjit/programs/`` under a name that
includes a digest of the sources, the pinned packages, the compiler's version and the flags.

``python -m harness.realjit update`` re-resolves each pinned package's newest version in its suite
and rewrites the lock; ``python -m harness.realjit build`` builds every program and prints the paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from base.errors import InfraError
from base.files import cache_root, file_lock
from base.profiles import load_profile
from images.apt_root import AptRoot, AptSource, host_mirror
from images.cache import sha256_file, write_json

SOURCE_DIR = Path(__file__).resolve().parent / "src"
LOCK_PATH = Path(__file__).resolve().parent / "packages.lock.json"

COMPILERS = {"x86_64": "gcc", "arm64": "aarch64-linux-gnu-gcc", "riscv64": "riscv64-linux-gnu-gcc"}
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "riscv64": "riscv64-linux-gnu"}
# Debian architectures each suite releases (bookworm has no riscv64).
SUITE_ARCHES = {"trixie": ("amd64", "arm64", "riscv64"), "bookworm": ("amd64", "arm64")}
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread")


@dataclass(frozen=True)
class Library:
    """A static library inside a Debian package: which package of which suite, and its paths."""

    suite: str
    package: str
    archive: str  # path inside the package, {triplet} replaced by the multiarch triplet
    include: str  # header folder inside the package


@dataclass(frozen=True)
class Program:
    sources: tuple[str, ...]
    libraries: dict[str, Library | None]  # jitprobe architecture -> library (None: libc only)
    extra_sources: dict[str, tuple[str, ...]]  # jitprobe architecture -> more sources
    link: tuple[str, ...]


_LUAJIT_A, _LUAJIT_H = "usr/lib/{triplet}/libluajit-5.1.a", "usr/include/luajit-2.1"
_PCRE2 = Library("trixie", "libpcre2-dev", "usr/lib/{triplet}/libpcre2-8.a", "usr/include")
_LUAJIT_BOOKWORM = Library("bookworm", "libluajit-5.1-dev", _LUAJIT_A, _LUAJIT_H)
_LUAJIT_TRIXIE = Library("trixie", "libluajit-5.1-dev", _LUAJIT_A, _LUAJIT_H)

PROGRAMS = {
    "pcre2_jit": Program(
        sources=("pcre2_jit.c",),
        libraries={"x86_64": _PCRE2, "arm64": _PCRE2, "riscv64": _PCRE2},
        extra_sources={},
        link=(),
    ),
    "luajit_flush": Program(
        sources=("luajit_flush.c",),
        libraries={"x86_64": _LUAJIT_BOOKWORM, "arm64": _LUAJIT_BOOKWORM, "riscv64": _LUAJIT_TRIXIE},
        extra_sources={"riscv64": ("glibc238_compat.c",)},
        link=("-lm", "-ldl"),
    ),
    # Not a real JIT: the sanitizer mechanism that PCRE2's shared executable allocator exposes,
    # in isolation (two threads' code in one cache line, each synchronized by its writer).
    "shared_line": Program(
        sources=("shared_line.c",),
        libraries={"x86_64": None, "arm64": None, "riscv64": None},
        extra_sources={},
        link=(),
    ),
}


@dataclass(frozen=True)
class PinnedDeb:
    """One entry of packages.lock.json."""

    suite: str
    arch: str  # Debian architecture
    package: str
    version: str
    filename: str
    size: int
    sha256: str


def load_lock(path: Path = LOCK_PATH) -> list[PinnedDeb]:
    """The pinned packages. Raises InfraError naming the file and the bad entry."""
    try:
        raw = json.loads(path.read_text())
        return [PinnedDeb(**item) for item in raw["packages"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InfraError(f"cannot read the real-JIT package lock {path}: {exc}") from exc


def pinned(library: Library, arch: str, lock: list[PinnedDeb] | None = None) -> PinnedDeb:
    """The lock entry of ``library`` for jitprobe architecture ``arch``. Raises InfraError if absent."""
    deb_arch = debian_arch(arch)
    for entry in load_lock() if lock is None else lock:
        if (entry.suite, entry.arch, entry.package) == (library.suite, deb_arch, library.package):
            return entry
    raise InfraError(
        f"{LOCK_PATH} pins no {library.package} for {deb_arch} from {library.suite}; "
        "run `python -m harness.realjit update` in the top folder"
    )


def debian_arch(arch: str) -> str:
    """Debian's name of jitprobe architecture ``arch`` (from its profile)."""
    return load_profile(arch).debian_arch


def _root() -> Path:
    return cache_root() / "realjit"


def apt_root(suite: str) -> AptRoot:
    """The private apt root reading ``suite`` from the host's mirror. Raises InfraError without a mirror."""
    if suite not in SUITE_ARCHES:
        raise InfraError(f"no apt root for suite {suite!r}; known suites: {', '.join(SUITE_ARCHES)}")
    source = AptSource(host_mirror(), (suite,), architectures=SUITE_ARCHES[suite])
    return AptRoot(_root() / f"apt-{suite}", [source])


def fetch(entry: PinnedDeb) -> Path:
    """The verified .deb of ``entry`` in the cache, downloaded if absent.

    Raises InfraError (naming the package, version and suite) when apt cannot get it, for example
    when the mirror no longer serves that version, or when its sha256 differs from the lock.
    """
    path = _root() / "debs" / entry.filename
    if path.is_file() and path.stat().st_size == entry.size and sha256_file(path) == entry.sha256:
        return path
    apt = apt_root(entry.suite)
    try:
        try:
            got = apt.download(entry.package, entry.arch, entry.version)
        except InfraError:
            apt.update()  # the lists may be missing or older than the lock
            got = apt.download(entry.package, entry.arch, entry.version)
    except InfraError as exc:
        raise InfraError(
            f"cannot download {entry.package} {entry.version} ({entry.arch}) from Debian {entry.suite}, "
            f"pinned in {LOCK_PATH}: {exc}"
        ) from exc
    actual = sha256_file(got)
    if actual != entry.sha256:
        got.unlink()
        raise InfraError(
            f"{entry.package} {entry.version} ({entry.arch}, {entry.suite}): downloaded sha256 {actual} "
            f"differs from the lock's {entry.sha256}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, path)
    return path


def unpack(entry: PinnedDeb) -> Path:
    """The contents of the pinned .deb, unpacked once into the cache. Raises InfraError."""
    dest = _root() / "unpacked" / f"{entry.package}_{entry.arch}_{entry.sha256[:16]}"
    if dest.is_dir():
        return dest
    deb = fetch(entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack", dir=dest.parent))
    try:
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise InfraError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _compiler_version(compiler: str) -> str:
    proc = subprocess.run([compiler, "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.returncode == 0 and proc.stdout else ""


def build(name: str, arch: str) -> Path:
    """The static executable of program ``name`` for jitprobe architecture ``arch`` (cached).

    Raises KeyError for an unknown program or architecture, InfraError when a package cannot be
    fetched or the compiler is missing or fails.
    """
    program = PROGRAMS[name]
    library = program.libraries[arch]
    compiler = COMPILERS[arch]
    if shutil.which(compiler) is None:
        raise InfraError(f"{compiler} is not installed (run `make setup`)")
    entry = pinned(library, arch) if library else None
    sources = [SOURCE_DIR / s for s in (*program.sources, *program.extra_sources.get(arch, ()))]
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    pins = asdict(entry) if entry else None
    digest.update(json.dumps([pins, CFLAGS, program.link, _compiler_version(compiler)]).encode())
    out = _root() / "programs" / f"{name}-{arch}-{digest.hexdigest()[:16]}"
    if out.is_file():
        return out
    with file_lock(_root() / ".build.lock"):
        if out.is_file():
            return out
        library_args: list[str] = []  # -I before the sources, the archive after them
        include_args: list[str] = []
        if library and entry:
            tree = unpack(entry)
            archive = tree / library.archive.format(triplet=TRIPLETS[entry.arch])
            if not archive.is_file():
                missing = archive.relative_to(tree)
                raise InfraError(f"{entry.package} {entry.version} ({entry.arch}) has no {missing}")
            library_args = [str(archive)]
            include_args = ["-I", str(tree / library.include)]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        argv = [compiler, *CFLAGS, *include_args, "-o", str(tmp), *map(str, sources), *library_args,
                *program.link]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise InfraError(f"building {name} for {arch} failed: {' '.join(argv)}\n{proc.stderr[-3000:]}")
        os.replace(tmp, out)
    return out


def describe(name: str, arch: str) -> str:
    """The package a program is linked with, for messages: 'libpcre2-dev 10.46-1~deb13u3 (trixie, arm64)'."""
    library = PROGRAMS[name].libraries[arch]
    if library is None:
        return "no library"
    entry = pinned(library, arch)
    return f"{entry.package} {entry.version} ({entry.suite}, {entry.arch})"


def update_lock(path: Path = LOCK_PATH) -> list[PinnedDeb]:
    """Pin the newest version of every library in its suite (downloaded and hashed) and rewrite the lock.

    Raises InfraError when apt fails or a suite does not ship a library for an architecture.
    """
    wanted = sorted({(lib.suite, debian_arch(arch), lib.package)
                     for p in PROGRAMS.values() for arch, lib in p.libraries.items() if lib})  # fmt: skip
    updated = set()
    entries = []
    for suite, deb_arch, package in wanted:
        apt = apt_root(suite)
        if suite not in updated:
            apt.update()
            updated.add(suite)
        version = apt.candidate_version(package, deb_arch)
        deb = apt.download(package, deb_arch, version)
        entry = PinnedDeb(suite, deb_arch, package, version, deb.name, deb.stat().st_size, sha256_file(deb))
        dest = _root() / "debs" / deb.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(deb, dest)
        entries.append(entry)
    write_json(path, {"packages": [asdict(e) for e in entries]})
    return entries


def main(argv: list[str]) -> int:
    if argv[1:] == ["update"]:
        for entry in update_lock():
            print(f"{entry.suite} {entry.arch} {entry.package} {entry.version}")
        return 0
    if argv[1:] == ["build"]:
        for name, program in PROGRAMS.items():
            for arch in program.libraries:
                print(f"{name} {arch} {describe(name, arch)}: {build(name, arch)}")
        return 0
    print("usage: python -m harness.realjit update|build", file=sys.stderr)
    return 2
