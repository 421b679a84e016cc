"""Build the sanitizer plugin against the plugin header of exactly the installed QEMU.

Debian ships no ``qemu-plugin.h``. The header is taken from Debian's source package of the
installed version (``apt-get source --download-only qemu=<version>`` in a private apt root with
a ``deb-src`` line for bookworm-backports), extracted alone from the orig tarball and cached at
``$XDG_CACHE_HOME/jitprobe/qemu-plugin/<version>/qemu-plugin.h``. The plugin is rebuilt by make
only when a source or the header changed.

``python -m harness.sanitizer.build`` builds it (exit 3 with a message on failure).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tarfile
from pathlib import Path

from base.errors import InfraError
from base.files import cache_root, file_lock
from base.proc import run
from base.profiles import Profile, available_arches, load_profile

__all__ = [
    "HEADER_MEMBER",
    "PLUGIN_NAME",
    "SOURCE_DIR",
    "SOURCE_PACKAGE",
    "SOURCE_SUITE",
    "check_header_matches",
    "ensure_header",
    "ensure_plugin",
    "header_path",
    "installed_qemu_version",
    "main",
    "plugin_path",
    "upstream_version",
]

SOURCE_DIR = Path(__file__).resolve().parent
PLUGIN_NAME = "libcoherency.so"
SOURCE_PACKAGE = "qemu"
SOURCE_SUITE = "bookworm-backports"
HEADER_MEMBER = "include/qemu/qemu-plugin.h"


def _reference_qemu() -> Profile:
    """The profile whose QEMU package and binary stand for all: every QEMU system emulator of one
    Debian version speaks the same plugin API, so the first architecture's is asked."""
    return load_profile(available_arches()[0])


def installed_qemu_version() -> str:
    """The Debian version of the installed QEMU. Raises InfraError when it is not installed."""
    package = _reference_qemu().qemu_package
    proc = run(["dpkg-query", "-W", "-f=${Version}", package], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise InfraError(f"{package} is not installed; run `make setup` (ci/setup.sh)")
    return proc.stdout.strip()


def upstream_version(debian_version: str) -> str:
    """``1:10.0.2+ds-2+deb13u1~bpo12+1`` -> ``10.0.2``. Raises InfraError on another shape."""
    match = re.match(r"^(?:\d+:)?(\d+\.\d+\.\d+)", debian_version)
    if not match:
        raise InfraError(f"cannot read an upstream QEMU version from {debian_version!r}")
    return match.group(1)


def header_path(version: str) -> Path:
    # make cannot take a ':' (the epoch separator) in a prerequisite path.
    return cache_root() / "qemu-plugin" / version.replace(":", "_") / "qemu-plugin.h"


def ensure_header(version: str) -> Path:
    """The cached ``qemu-plugin.h`` of Debian QEMU ``version``; fetched when missing.

    Raises InfraError when apt fails or the tarball holds no header.
    """
    dest = header_path(version)
    if dest.is_file():
        return dest
    from images.apt_root import AptRoot, AptSource, host_mirror

    root = AptRoot(
        cache_root() / "qemu-plugin" / "apt-root",
        [AptSource(uri=host_mirror(), suites=(SOURCE_SUITE,), types=("deb-src",))],
    )
    root.update()
    try:
        files = root.download_source(SOURCE_PACKAGE, version)
    except InfraError as exc:
        # Mirrors that keep only the newest backports upload still serve the orig tarball (it
        # is shared with trixie) but not the backport's .dsc: accept the tarball alone when its
        # checksum matches the Sources index.
        files = sorted((root.root / "sources" / f"{SOURCE_PACKAGE}_{version}").glob("*.orig.tar.*"))
        if not files:
            raise
        _verify_against_sources(root.root, files[0], exc)
    origs = [f for f in files if ".orig." in f.name and ".tar" in f.name and not f.name.endswith(".asc")]
    if not origs:
        raise InfraError(f"no orig tarball among {[f.name for f in files]} for qemu={version}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"qemu-plugin.h.tmp{os.getpid()}")
    with tarfile.open(origs[0]) as tar:
        member = next((m for m in tar if m.isfile() and m.name.endswith("/" + HEADER_MEMBER)), None)
        if member is None:
            raise InfraError(f"{origs[0]} holds no {HEADER_MEMBER}")
        src = tar.extractfile(member)
        assert src is not None
        tmp.write_bytes(src.read())
    os.replace(tmp, dest)
    # The source package is 40 MB and only the header is needed from it.
    for f in files:
        f.unlink(missing_ok=True)
    return dest


def _verify_against_sources(apt_root: Path, tarball: Path, cause: Exception) -> None:
    """Raise InfraError (chained to ``cause``) unless ``tarball``'s SHA-256 is in the Sources index."""
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    lists = apt_root / "var" / "lib" / "apt" / "lists"
    for index in lists.glob("*_Sources"):
        if re.search(rf"^ {digest} \d+ {re.escape(tarball.name)}$", index.read_text(errors="replace"), re.M):
            return
    raise InfraError(f"{tarball.name} does not match the SHA-256 of the Sources index ({cause})") from cause


def check_header_matches(header: Path) -> None:
    """Raise InfraError unless the header's plugin API is the one the installed QEMU speaks.

    The header carries ``QEMU_PLUGIN_VERSION``; QEMU's own version is compared through the
    cache folder name (the Debian version) against ``qemu-system-* --version``.
    """
    qemu_binary, package = _reference_qemu().qemu_binary, _reference_qemu().qemu_package
    version = header.parent.name.replace("_", ":", 1)
    out = run([qemu_binary, "--version"], check=False).stdout
    match = re.search(r"version (\d+\.\d+\.\d+)", out)
    if not match or match.group(1) != upstream_version(version):
        reported = match.group(1) if match else repr(out.strip())
        raise InfraError(
            f"plugin header {header} is from QEMU {upstream_version(version)} but {qemu_binary} "
            f"reports {reported}: the installed package ({package} {version}) and the QEMU on "
            "PATH differ; run `make setup` so that both are Debian's"
        )
    text = header.read_text(errors="replace")
    if not re.search(r"#define\s+QEMU_PLUGIN_VERSION\s+\d+", text):
        raise InfraError(f"{header} defines no QEMU_PLUGIN_VERSION: not a QEMU plugin header")


def plugin_path() -> Path:
    """Where the built plugin lives (beside its sources, ignored by git)."""
    return SOURCE_DIR / "build" / PLUGIN_NAME


def ensure_plugin() -> Path:
    """Build the plugin if a source or the header changed; returns the .so path.

    Raises InfraError when QEMU is missing, the header cannot be fetched, the versions
    disagree or the compiler fails.
    """
    version = installed_qemu_version()
    header = ensure_header(version)
    check_header_matches(header)
    if shutil.which("make") is None or shutil.which("gcc") is None:
        raise InfraError("make and gcc are needed to build the sanitizer plugin; run `make setup`")
    # Test workers and parallel guests all call this: one make at a time, or two would write
    # the same object files and rename the same temporary library.
    with file_lock(SOURCE_DIR / "build" / ".lock"):
        run(["make", "-s", "-C", str(SOURCE_DIR), f"QEMU_PLUGIN_INCLUDE={header.parent}"],
            what="building the sanitizer plugin", tail=4000)
    path = plugin_path()
    if not path.is_file():
        raise InfraError(f"make succeeded but {path} is missing")
    return path


def main() -> int:
    try:
        path = ensure_plugin()
    except InfraError as exc:
        print(f"jitprobe: sanitizer build: {exc}", file=sys.stderr)
        return exc.exit_code
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
