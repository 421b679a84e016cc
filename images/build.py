"""Build, cache and verify the guest image (kernel, initramfs, module tree) of each architecture.

An image lives in ``<cache>/images/<arch>/<key>/`` where the key hashes everything it is built
from: the pinned packages' sha256 and this package's builder sources. A tree is built in a
temporary folder next to its final place and renamed into place only when complete, with a
manifest of every file's sha256 written last; a tree whose files do not match its manifest is
never returned, it is rebuilt. Building a tree removes the architecture's older trees.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base import progress
from base.errors import InfraError
from base.files import cache_root, file_lock
from base.proc import run
from base.profiles import load_profile

from . import bzimage, cache, cpio, initramfs
from .lock import LockedPackage, load_lock
from .lock import fetch as fetch_deb

__all__ = [
    "GuestImage",
    "cached_trees",
    "current_image_dir",
    "ensure_images",
    "image_key",
    "images_root",
    "load_image",
    "manifest_meta",
]

# The files whose content shapes an image; editing any of them gives a new cache key.
_BUILDER_SOURCES = ("build.py", "cpio.py", "initramfs.py", "init.sh", "bzimage.py")


@dataclass(frozen=True)
class GuestImage:
    """What the harness boots: paths into a verified cache tree.

    ``modules_dir`` is the guest's ``/lib/modules/<kernel_version>`` (with modules.dep), exported
    read-only over virtio-9p with mount tag ``modules``; /init mounts it at that same place.
    """

    arch: str
    kernel: Path
    initramfs: Path
    modules_dir: Path
    kernel_version: str
    system_map: Path | None


def images_root(arch: str) -> Path:
    """The cache folder holding every built image of ``arch``. Raises InputError if unknown."""
    load_profile(arch)
    return cache_root() / "images" / arch


def image_key(kernel: LockedPackage, busybox: LockedPackage) -> str:
    """The content address of the image built from these packages by the current builder."""
    digest = hashlib.sha256()
    for pkg in (kernel, busybox):
        digest.update(f"{pkg.package}\0{pkg.version}\0{pkg.sha256}\0".encode())
    here = Path(__file__).parent
    for name in _BUILDER_SOURCES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    return digest.hexdigest()[:24]


def current_image_dir(arch: str) -> Path:
    """Where the image of ``arch`` for the current lock lives (built or not).

    Raises InputError for an unknown arch and InfraError when the lock lacks its packages.
    """
    lock = load_lock()
    return images_root(arch) / image_key(lock.entry(arch, "kernel"), lock.entry(arch, "busybox"))


def ensure_images(arch: str) -> GuestImage:
    """The verified image of ``arch``, built first when missing or damaged.

    The kernel and initramfs are checked against the manifest's sha256 on every call (once per
    process while their stat is unchanged); other files are re-hashed only if their size, mtime
    or ctime moved since the last check. Raises InputError for an unknown arch (listing the valid
    ones) and InfraError when the lock, a download, a package or a host tool fails, or when the
    image must be (re)built and the cache cannot be written.
    """
    lock = load_lock()
    kernel_pkg, busybox_pkg = lock.entry(arch, "kernel"), lock.entry(arch, "busybox")
    tree = images_root(arch) / image_key(kernel_pkg, busybox_pkg)
    problems = cache.verify(tree, always=_boot_files(tree))
    if not problems:  # a missing tree or manifest is a problem too
        return load_image(tree)
    try:
        with file_lock(images_root(arch) / ".lock"):
            if tree.exists():
                problems = cache.verify(tree, always=_boot_files(tree))
                if not problems:
                    return load_image(tree)  # another process built it while we waited
                damage = "; ".join(problems[:3])
                print(f"jitprobe: rebuilding damaged {arch} image: {damage}", file=sys.stderr)
                _remove_tree(tree)
            kernel_deb, busybox_deb = fetch_deb(kernel_pkg, lock.suite), fetch_deb(busybox_pkg, lock.suite)
            _build(arch, kernel_pkg, kernel_deb, busybox_deb, tree)
            _prune(tree)
    except OSError as exc:
        raise InfraError(
            f"the {arch} image must be built ({problems[0]}) but the image cache {images_root(arch)} "
            f"cannot be written: {exc.strerror}; set XDG_CACHE_HOME to a writable folder"
        ) from exc
    if problems := cache.verify(tree, always=_boot_files(tree)):
        raise InfraError(f"the freshly built {arch} image does not verify: {'; '.join(problems[:3])}")
    return load_image(tree)


def _boot_files(tree: Path) -> tuple[str, ...]:
    """The files every boot reads whole (kernel, initramfs), as manifest paths; () if unknown."""
    meta = manifest_meta(tree)
    return tuple(meta[k] for k in ("kernel", "initramfs") if isinstance(meta.get(k), str))


def load_image(tree: Path) -> GuestImage:
    """The GuestImage a built tree's manifest describes (not verified here).

    Raises InfraError when the manifest is missing or lacks a field.
    """
    meta = manifest_meta(tree)
    try:
        version = meta["kernel_version"]
        return GuestImage(
            arch=meta["arch"],
            kernel=tree / meta["kernel"],
            initramfs=tree / meta["initramfs"],
            modules_dir=tree / "lib" / "modules" / version,
            kernel_version=version,
            system_map=tree / meta["system_map"] if meta["system_map"] else None,
        )
    except (TypeError, KeyError) as exc:  # no manifest gives {} and a KeyError
        raise InfraError(
            f"{tree / cache.MANIFEST} is missing or lacks {exc}; run `jitprobe images clean`"
        ) from exc


def cached_trees(arch: str) -> list[Path]:
    """Every image tree of ``arch`` in the cache, complete or not. Raises InputError if unknown."""
    root = images_root(arch)
    return (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if root.is_dir()
        else []
    )


def _only(paths: list[Path], what: str, deb: Path) -> Path:
    if len(paths) != 1:
        raise InfraError(f"expected one {what} in {deb.name}, found {[p.name for p in paths]}")
    return paths[0]


def _build(arch: str, kernel_pkg: LockedPackage, kernel_deb: Path, busybox_deb: Path, tree: Path) -> None:
    if progress.enabled():  # stderr carries progress only on a terminal (CONTRACT)
        print(
            f"jitprobe: building the {arch} guest image from {kernel_pkg.package} {kernel_pkg.version}",
            file=sys.stderr,
        )
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{tree.name}-", dir=tree.parent))
    try:
        unpacked = tmp / ".unpacked"
        unpacked.mkdir()
        run(["dpkg-deb", "-x", str(kernel_deb), str(unpacked / "kernel")])
        run(["dpkg-deb", "-x", str(busybox_deb), str(unpacked / "busybox")])
        boot = unpacked / "kernel" / "boot"
        # Some architectures' packages ship an uncompressed vmlinux, the others a vmlinuz.
        kernel = _only(sorted(boot.glob("vmlinu[xz]-*")), "boot/vmlinu[xz]-*", kernel_deb)
        version = kernel.name.split("-", 1)[1]
        modules_src = _only(
            [
                p
                for p in (
                    unpacked / "kernel" / "usr/lib/modules" / version,
                    unpacked / "kernel" / "lib/modules" / version,
                )
                if p.is_dir()
            ],
            f"lib/modules/{version}",
            kernel_deb,
        )
        (tmp / "boot").mkdir()
        (tmp / "lib" / "modules").mkdir(parents=True)
        kernel_data = kernel.read_bytes()
        if bzimage.is_bzimage(kernel_data):
            # QEMU boots the ELF inside through its PVH note, skipping the slow self-decompression.
            kernel_name = f"vmlinux-{version}"
            (tmp / "boot" / kernel_name).write_bytes(bzimage.elf_payload(kernel_data, str(kernel_deb)))
        else:
            kernel_name = kernel.name
            os.replace(kernel, tmp / "boot" / kernel_name)
        system_map = boot / f"System.map-{version}"
        has_map = system_map.is_file()
        if has_map:
            os.replace(system_map, tmp / "boot" / system_map.name)
        os.replace(modules_src, tmp / "lib" / "modules" / version)
        run(["depmod", "-b", str(tmp), version])

        modules_dir = tmp / "lib" / "modules" / version
        closure = initramfs.module_closure((modules_dir / "modules.dep").read_text())
        modules = [
            (initramfs.module_name(p), initramfs.strip_signature(initramfs.load_module(modules_dir / p)))
            for p in closure
        ]
        busybox = _only(
            [
                p
                for p in (unpacked / "busybox" / "usr/bin/busybox", unpacked / "busybox" / "bin/busybox")
                if p.is_file()
            ],
            "busybox binary",
            busybox_deb,
        )
        with open(tmp / "initramfs.cpio", "wb") as out:
            cpio.write_archive(out, initramfs.initramfs_entries(busybox.read_bytes(), modules))
        shutil.rmtree(unpacked)

        cache.write_manifest(
            tmp,
            {
                "arch": arch,
                "kernel_version": version,
                "kernel": f"boot/{kernel_name}",
                "initramfs": "initramfs.cpio",
                "system_map": f"boot/{system_map.name}" if has_map else None,
                "packages": {"kernel": f"{kernel_pkg.package} {kernel_pkg.version}"},
                "initramfs_modules": [m for m, _ in modules],
            },
        )
        os.replace(tmp, tree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _prune(keep: Path) -> None:
    """Remove the arch's other trees: older builds and leftovers of interrupted ones.

    Called with the arch's lock held, so no build is in progress.
    """
    for other in keep.parent.iterdir():
        if other != keep and other.is_dir():
            _remove_tree(other)


def _remove_tree(tree: Path) -> None:
    """Take a tree out of its content address at once (rename), then delete it."""
    trash = tree if tree.name.startswith(".") else tree.with_name(f".trash-{tree.name}-{os.getpid()}")
    os.replace(tree, trash)
    shutil.rmtree(trash, ignore_errors=True)


def manifest_meta(tree: Path) -> dict[str, Any]:
    """The ``meta`` part of a tree's manifest, or {} when it has none."""
    manifest = cache.read_manifest(tree)
    meta = manifest.get("meta") if manifest else None
    return meta if isinstance(meta, dict) else {}
