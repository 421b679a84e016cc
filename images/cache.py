"""The cache folder, atomic writes, and manifests that make cached files checkable.

A manifest lists every file of a cached tree with its size and sha256. Checking a tree against
its manifest hashes each file once; afterwards a small side file remembers the size, mtime and
ctime each file had when its hash last matched, so later checks re-hash only files that changed.
A truncated or rewritten file changes size or ctime (which no program can set back, unlike
mtime) and is hashed again; the files named in ``always`` (the kernel and initramfs a boot
uses) are hashed on every check, once per process; ``verify`` with ``full=True`` ignores the
side file (for `jitprobe images verify`). The side file is an optimization: a cache that cannot
be written (read-only) is still checked, only more slowly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST",
    "atomic_write",
    "read_manifest",
    "sha256_file",
    "verify",
    "write_json",
    "write_manifest",
]

MANIFEST = "manifest.json"
_VERIFIED = "verified.json"


_HASHED: dict[tuple[str, int, int, int, int], str] = {}  # this process's hashes, by path and stat


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's contents (remembered for this process while its stat is unchanged).
    Raises OSError if it cannot be read."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHED:
        _HASHED[key] = _hash(path)
    return _HASHED[key]


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, value: object) -> None:
    """Atomically write ``value`` as indented JSON with a final newline."""
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def write_manifest(tree: Path, meta: dict[str, object]) -> None:
    """Hash every file under ``tree`` and write the manifest (with ``meta``) as its last step."""
    files: dict[str, dict[str, object]] = {}
    bookkeeping = {tree / MANIFEST, tree / _VERIFIED}
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink() and path not in bookkeeping:
            files[path.relative_to(tree).as_posix()] = {
                "size": path.stat().st_size,
                "sha256": sha256_file(path),
            }
    write_json(tree / MANIFEST, {"meta": meta, "files": files})
    _remember(tree, files)


def read_manifest(tree: Path) -> dict[str, Any] | None:
    """The manifest of ``tree``, or None when it is missing or unreadable (an unfinished tree)."""
    try:
        manifest = json.loads((tree / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    return manifest


def verify(tree: Path, full: bool = False, always: Collection[str] = ()) -> list[str]:
    """Problems found checking ``tree`` against its manifest (an empty list means good).

    ``always``: files (relative paths) whose content is hashed whatever the side file says.
    Each problem names the file and what is wrong (missing, size, sha256).
    """
    manifest = read_manifest(tree)
    if manifest is None:
        return [f"{tree / MANIFEST}: missing or unreadable"]
    files: dict[str, dict[str, Any]] = manifest["files"]
    known = {} if full else _remembered(tree)
    problems: list[str] = []
    good: dict[str, dict[str, object]] = {}
    rehashed = False
    for rel, want in files.items():
        path = tree / rel
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{path}: missing")
            continue
        if st.st_size != want["size"]:
            problems.append(f"{path}: size {st.st_size}, expected {want['size']}")
            continue
        if rel in always or known.get(rel) != _stamp(st):
            rehashed = True
            actual = sha256_file(path)
            if actual != want["sha256"]:
                problems.append(f"{path}: sha256 {actual}, expected {want['sha256']}")
                continue
        good[rel] = want
    if not problems and rehashed:
        _remember(tree, good)
    return problems


def _remember(tree: Path, files: dict[str, dict[str, object]]) -> None:
    # A read-only cache keeps no side file: every check re-hashes, which is slower but as sure.
    with contextlib.suppress(OSError):
        write_json(tree / _VERIFIED, {rel: _stamp((tree / rel).stat()) for rel in files})


def _remembered(tree: Path) -> dict[str, list[int]]:
    try:
        state = json.loads((tree / _VERIFIED).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}
