"""Real JITs for the sanitizer: small C programs statically linked with Debian's own JIT libraries.

The programs (``programs.yaml`` next to this file: sources in ``src/``, the library each
architecture links, which Debian suite it comes from and why) compile, run and throw away JIT code
on two threads in a loop; the realjit stress suite (tests/stress/realjit/, harness.stress) runs
each in a sanitized guest.

The .deb files come through private apt roots (``images.lock.private_apt``, one per Debian suite,
shared with the images; the host's apt configuration is never touched) and are
pinned by version and sha256 in ``packages.lock.json`` next to this file, as the guest images
are in images/packages.lock.json. A download whose sha256 differs from the lock is an error.

Built programs are cached in ``$XDG_CACHE_HOME/jitprobe/realjit/programs/`` under a name that
includes a digest of the sources and src/'s headers, the pinned packages, the compiler's version
and the flags.

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

import yaml

from base.errors import InfraError, InputError
from base.files import cache_root, file_lock
from base.profiles import Field, MapOf, ProfileError, available_arches, load_profile, validate
from images.apt_root import AptRoot
from images.cache import write_json
from images.lock import SuiteDeb, fetch_pinned, pin_download, private_apt, read_pins

__all__ = [
    "BUILD_MUTATIONS",
    "CFLAGS",
    "FLUSH_SYMBOLS",
    "LOCK_PATH",
    "OK_MARKER",
    "PROGRAMS_PATH",
    "SOURCE_DIR",
    "BuildMutation",
    "Library",
    "PinnedDeb",
    "Program",
    "apt_root",
    "build",
    "compiler",
    "debian_arch",
    "describe",
    "fetch",
    "load_lock",
    "load_programs",
    "main",
    "pinned",
    "suite_arches",
    "unpack",
    "update_lock",
]

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_DIR = PACKAGE_DIR / "src"
LOCK_PATH = PACKAGE_DIR / "packages.lock.json"
PROGRAMS_PATH = PACKAGE_DIR / "programs.yaml"
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread")
# Each program prints one line with this when every result of its JIT was right (and exits 0).
OK_MARKER = " ok: "


class BuildMutation(StrEnum):
    """A real bug class a program can be built with: its objects' calls into the toolchain's cache
    maintenance are redirected (``ld --wrap``) to functions that do nothing (src/no_flush.c)."""

    NO_CACHE_FLUSH = "no_cache_flush"


BUILD_MUTATIONS: dict[BuildMutation, str] = {
    BuildMutation.NO_CACHE_FLUSH: "a real JIT's program linked with its cache flush calls doing nothing",
}

# The functions through which the libraries make new code executable (GCC's __builtin___clear_cache
# in libgcc, glibc's RISC-V flush); a mutation that wraps none of those a program calls changes
# nothing and is refused (build checks the objects with nm).
FLUSH_SYMBOLS = ("__clear_cache", "__riscv_flush_icache")
_NO_FLUSH_SOURCE = "no_flush.c"


@dataclass(frozen=True)
class Library:
    """A static library inside a Debian package: which package of which suite, and its paths."""

    suite: str
    package: str
    archive: str  # path inside the package, {triplet} replaced by the profile's gnu_triplet
    include: str  # header folder inside the package


@dataclass(frozen=True)
class Program:
    name: str
    description: str
    sources: tuple[str, ...]
    libraries: Mapping[str, Library | None]  # jitprobe architecture -> library (None: libc only)
    extra_sources: Mapping[str, tuple[str, ...]]  # jitprobe architecture -> more sources
    link: tuple[str, ...]


_LIBRARY_SCHEMA: dict[str, Field] = {
    "suite": Field(str, "Debian suite (one of the suites field's)"),
    "package": Field(str, "Debian package holding the library"),
    "archive": Field(str, "the static library inside the package ({triplet}: the profile's gnu_triplet)"),
    "include": Field(str, "header folder inside the package"),
}
_PROGRAMS_SCHEMA: dict[str, Field] = {
    "suites": Field(MapOf(list), "Debian architectures each suite releases"),
    "libraries": Field(MapOf(_LIBRARY_SCHEMA), "the libraries, by name"),
    "programs": Field(
        MapOf(
            {
                "description": Field(str, "what the program does, one line"),
                "sources": Field(list, "C files in src/"),
                "libraries": Field(dict, "per architecture: a library's name, or null (libc only)"),
                "extra_sources": Field(dict, "per architecture: more C files in src/", required=False),
                "link": Field(list, "linker arguments after the sources", required=False),
            }
        ),
        "the programs, by name",
    ),
}


def _programs_error(message: str) -> InfraError:
    return InfraError(f"{PROGRAMS_PATH}: {message}")


@cache
def _programs_data() -> tuple[dict[str, tuple[str, ...]], dict[str, Program]]:
    try:
        data = yaml.safe_load(PROGRAMS_PATH.read_text())
        validate(data, _PROGRAMS_SCHEMA, str(PROGRAMS_PATH))
    except (OSError, yaml.YAMLError) as exc:
        raise _programs_error(f"cannot read: {exc}") from exc
    except ProfileError as exc:
        raise InfraError(str(exc)) from None
    suites = {suite: tuple(arches) for suite, arches in data["suites"].items()}
    libraries = {name: Library(**entry) for name, entry in data["libraries"].items()}
    for name, library in libraries.items():
        if library.suite not in suites:
            raise _programs_error(f"field 'libraries.{name}.suite': expected one of {', '.join(suites)}, "
                                  f"got {library.suite!r}")  # fmt: skip
    programs = {}
    for name, entry in data["programs"].items():
        where = f"field 'programs.{name}"
        if set(entry["libraries"]) != set(available_arches()):
            raise _programs_error(f"{where}.libraries': expected one entry per architecture "
                                  f"({', '.join(available_arches())}), got {', '.join(entry['libraries'])}")
        chosen: dict[str, Library | None] = {}
        for arch, library in entry["libraries"].items():
            if library is not None and library not in libraries:
                raise _programs_error(f"{where}.libraries.{arch}': expected null or one of "
                                      f"{', '.join(libraries)}, got {library!r}")  # fmt: skip
            chosen[arch] = None if library is None else libraries[library]
        extra = {arch: tuple(files) for arch, files in (entry.get("extra_sources") or {}).items()}
        for source in [*entry["sources"], *(f for files in extra.values() for f in files)]:
            if not (SOURCE_DIR / source).is_file():
                raise _programs_error(f"{where}': no source {source!r} in {SOURCE_DIR}")
        programs[name] = Program(name, entry["description"], tuple(entry["sources"]), chosen, extra,
                                 tuple(entry.get("link") or ()))  # fmt: skip
    return suites, programs


def load_programs() -> dict[str, Program]:
    """The programs of programs.yaml, by name. Raises InfraError naming the file and the bad field."""
    return dict(_programs_data()[1])


def suite_arches() -> dict[str, tuple[str, ...]]:
    """The Debian architectures each suite releases. Raises InfraError for a bad programs.yaml."""
    return dict(_programs_data()[0])


def _program(name: str) -> Program:
    programs = load_programs()
    if name not in programs:
        raise InputError("program", name, sorted(programs))
    return programs[name]


PinnedDeb = SuiteDeb  # an entry of this lock: nothing more than the suite's pin


def load_lock(path: Path = LOCK_PATH) -> list[PinnedDeb]:
    """The pinned packages. Raises InfraError naming the file and the error."""
    return read_pins(path, PinnedDeb, "real-JIT")


def pinned(library: Library, arch: str, lock: list[PinnedDeb] | None = None) -> PinnedDeb:
    """The lock entry of ``library`` for jitprobe architecture ``arch``. Raises InfraError if absent."""
    deb_arch = debian_arch(arch)
    for entry in load_lock() if lock is None else lock:
        if (entry.suite, entry.arch, entry.package) == (library.suite, deb_arch, library.package):
            return entry
    raise InfraError(
        f"{LOCK_PATH} pins no {library.package} for {deb_arch} from {library.suite}; "
        "run `python -m harness.realjit update`"
    )


def debian_arch(arch: str) -> str:
    """Debian's name of jitprobe architecture ``arch`` (from its profile)."""
    return load_profile(arch).debian_arch


def _root() -> Path:
    return cache_root() / "realjit"


def apt_root(suite: str) -> AptRoot:
    """The private apt root reading ``suite`` from the host's mirror. Raises InfraError without a mirror."""
    suites = suite_arches()
    if suite not in suites:
        raise InfraError(f"no apt root for suite {suite!r}; known suites: {', '.join(suites)}")
    return private_apt(suite, suites[suite])


def fetch(entry: PinnedDeb) -> Path:
    """The verified .deb of ``entry`` in the cache, downloaded if absent.

    Raises InfraError (naming the package, version and suite) when apt cannot get it, for example
    when the mirror no longer serves that version, or when its sha256 differs from the lock.
    """
    return fetch_pinned(entry, _root() / "debs", LOCK_PATH, lambda: apt_root(entry.suite))


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


def compiler(arch: str) -> str:
    """The host's gcc for static programs of ``arch`` (the profile's gnu_triplet + -gcc)."""
    return f"{load_profile(arch).gnu_triplet}-gcc"


def _undefined(objects: list[Path], nm: str) -> set[str]:
    """The symbols ``objects`` (archives included) call but do not define."""
    proc = subprocess.run([nm, "--undefined-only", "--format=just-symbols", *map(str, objects)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise InfraError(f"{nm} failed on {' '.join(map(str, objects))}: {proc.stderr.strip()}")
    return set(proc.stdout.split())


def build(name: str, arch: str, mutation: str | None = None) -> Path:
    """The static executable of program ``name`` for jitprobe architecture ``arch``, built with
    ``mutation`` (a BuildMutation; None: as the libraries are), cached.

    Raises InputError for an unknown program or mutation, InfraError when a package cannot be
    fetched, the compiler is missing or fails, or the mutation changes nothing in that program."""
    program = _program(name)
    if mutation is not None and mutation not in BuildMutation.__members__.values():
        raise InputError("mutation", mutation, [str(m) for m in BuildMutation])
    library = program.libraries[arch]
    cc = compiler(arch)
    if shutil.which(cc) is None:
        raise InfraError(f"{cc} is not installed (run `make setup`)")
    entry = pinned(library, arch) if library else None
    sources = [SOURCE_DIR / s for s in (*program.sources, *program.extra_sources.get(arch, ()))]
    wrap: list[str] = []
    if mutation == BuildMutation.NO_CACHE_FLUSH:
        sources.append(SOURCE_DIR / _NO_FLUSH_SOURCE)
        wrap = [f"-Wl,--wrap={symbol}" for symbol in FLUSH_SYMBOLS]
    digest = hashlib.sha256()
    # Which headers a source includes is not parsed: every header in src/ is in every program's key.
    for source in [*sources, *sorted(SOURCE_DIR.glob("*.h"))]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    pins = asdict(entry) if entry else None
    digest.update(json.dumps([pins, CFLAGS, program.link, wrap, _compiler_version(cc)]).encode())
    suffix = f"-{mutation}" if mutation else ""
    out = _root() / "programs" / f"{name}{suffix}-{arch}-{digest.hexdigest()[:16]}"
    if out.is_file():
        return out
    with file_lock(_root() / ".build.lock"):
        if out.is_file():
            return out
        library_args: list[str] = []  # -I before the sources, the archive after them
        include_args: list[str] = []
        if library and entry:
            tree = unpack(entry)
            archive = tree / library.archive.format(triplet=load_profile(arch).gnu_triplet)
            if not archive.is_file():
                missing = archive.relative_to(tree)
                raise InfraError(f"{entry.package} {entry.version} ({entry.arch}) has no {missing}")
            library_args = [str(archive)]
            include_args = ["-I", str(tree / library.include)]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        if wrap:
            _check_wraps(name, arch, cc, include_args, [Path(a) for a in library_args], tmp)
        argv = [cc, *CFLAGS, *include_args, "-o", str(tmp), *map(str, sources), *library_args,
                *program.link, *wrap]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise InfraError(f"building {name} for {arch} failed: {' '.join(argv)}\n{proc.stderr[-3000:]}")
        os.replace(tmp, out)
    return out


def _check_wraps(name: str, arch: str, cc: str, include_args: list[str], archives: list[Path],
                 scratch: Path) -> None:  # fmt: skip
    """Refuse a no_cache_flush build whose objects call none of FLUSH_SYMBOLS (it would be the
    correct program again): the program's own sources are compiled to objects and read with nm."""
    program = _program(name)
    objects = []
    for source in program.sources:
        obj = scratch.with_name(f"{scratch.name}-{Path(source).stem}.o")
        proc = subprocess.run([cc, *CFLAGS, *include_args, "-c", "-o", str(obj), str(SOURCE_DIR / source)],
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            raise InfraError(f"compiling {source} for {arch} failed: {proc.stderr[-3000:]}")
        objects.append(obj)
    try:
        called = _undefined([*objects, *archives], f"{load_profile(arch).gnu_triplet}-nm")
    finally:
        for obj in objects:
            obj.unlink(missing_ok=True)
    if not called & set(FLUSH_SYMBOLS):
        raise InfraError(f"{BuildMutation.NO_CACHE_FLUSH} changes nothing in {name} for {arch}: its objects "
                         f"call none of {', '.join(FLUSH_SYMBOLS)}")  # fmt: skip


def describe(name: str, arch: str) -> str:
    """The package a program is linked with, for messages: '<package> <version> (<suite>, <Debian arch>)'."""
    library = _program(name).libraries[arch]
    if library is None:
        return "no library"
    entry = pinned(library, arch)
    return f"{entry.package} {entry.version} ({entry.suite}, {entry.arch})"


def update_lock(path: Path = LOCK_PATH) -> list[PinnedDeb]:
    """Pin the newest version of every library in its suite (downloaded and hashed) and rewrite the lock.

    Raises InfraError when apt fails or a suite does not ship a library for an architecture.
    """
    programs = load_programs().values()
    wanted = sorted({(lib.suite, debian_arch(arch), lib.package)
                     for p in programs for arch, lib in p.libraries.items() if lib})  # fmt: skip
    updated = set()
    entries = []
    for suite, deb_arch, package in wanted:
        apt = apt_root(suite)
        if suite not in updated:
            apt.update()
            updated.add(suite)
        version = apt.candidate_version(package, deb_arch)
        entries.append(pin_download(apt, suite, package, deb_arch, version, _root() / "debs"))
    write_json(path, {"packages": [asdict(e) for e in entries]})
    return entries


def main(argv: list[str]) -> int:
    if argv[1:] == ["update"]:
        for entry in update_lock():
            print(f"{entry.suite} {entry.arch} {entry.package} {entry.version}")
        return 0
    if argv[1:] == ["build"]:
        for name, program in load_programs().items():
            for arch in program.libraries:
                print(f"{name} {arch} {describe(name, arch)}: {build(name, arch)}")
        return 0
    print("usage: python -m harness.realjit update|build", file=sys.stderr)
    return 2
