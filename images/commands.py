"""`jitprobe images build|list|verify|clean|update`: the command-line face of the image cache."""

from __future__ import annotations

import argparse
import shutil
import sys

from base.errors import EXIT_INFRA, EXIT_PASS
from base.files import file_lock
from base.profiles import available_arches, expand_arch

from . import cache
from .build import cached_trees, current_image_dir, ensure_images, images_root, manifest_meta
from .lock import LOCK_PATH, update_lock

__all__ = ["add_images_parser"]


def add_images_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``images`` and its sub-commands; each sets ``func(args) -> int`` (the exit status).

    Errors propagate: harness.cli.main turns them into messages and exit statuses."""
    images = subparsers.add_parser("images", help="build, list, verify or clean the cached guest images")
    actions = images.add_subparsers(dest="images_command", required=True, metavar="COMMAND")
    for name, func, text in (
        ("build", _build, "build (or verify) the image of each architecture"),
        ("list", _list, "list the cached images with their kernel versions"),
        ("verify", _verify, "re-hash every cached file against its manifest (exit 3 if one is bad)"),
        ("clean", _clean, "remove the cached images of the architectures"),
    ):
        parser = actions.add_parser(name, help=text)
        parser.add_argument(
            "--arch", default="all", help=f"one of {', '.join(available_arches())}, or all (default: all)"
        )
        parser.set_defaults(func=func)
    update = actions.add_parser("update", help=f"re-pin the newest packages of the suite in {LOCK_PATH.name}")
    update.set_defaults(func=_update)


def _build(args: argparse.Namespace) -> int:
    for arch in expand_arch(args.arch):
        image = ensure_images(arch)
        print(f"{arch}: kernel {image.kernel_version}")
        print(f"  kernel     {image.kernel}")
        print(f"  initramfs  {image.initramfs}")
        print(f"  modules    {image.modules_dir}")
        print(f"  System.map {image.system_map or '(none)'}")
    return EXIT_PASS


def _list(args: argparse.Namespace) -> int:
    for arch in expand_arch(args.arch):
        trees = cached_trees(arch)
        current = current_image_dir(arch)
        if not trees:
            print(f"{arch}: no cached image (run `jitprobe images build --arch {arch}`)")
        for tree in trees:
            meta = manifest_meta(tree)
            state = "current" if tree == current else "stale (not the lock's)"
            if not meta:
                state = "incomplete"
            packages = meta.get("packages") or {}
            kernel = packages.get("kernel", "?") if isinstance(packages, dict) else "?"
            print(f"{arch}: {meta.get('kernel_version', '?')}  [{state}]  package {kernel}  {tree}")
    return EXIT_PASS


def _verify(args: argparse.Namespace) -> int:
    status = EXIT_PASS
    for arch in expand_arch(args.arch):
        trees = cached_trees(arch)
        if not trees:
            print(f"{arch}: no cached image to verify", file=sys.stderr)
            status = EXIT_INFRA
        for tree in trees:
            problems = cache.verify(tree, full=True)
            print(f"{arch}: {'ok' if not problems else 'BAD'}  {tree}")
            for problem in problems:
                print(f"  {problem}")
            if problems:
                status = EXIT_INFRA
    return status


def _clean(args: argparse.Namespace) -> int:
    for arch in expand_arch(args.arch):
        root = images_root(arch)
        trees = [p for p in root.iterdir() if p.name != ".lock"] if root.is_dir() else []
        with file_lock(root / ".lock"):  # not under a build in progress
            for tree in trees:
                shutil.rmtree(tree) if tree.is_dir() else tree.unlink()
        print(f"{arch}: removed {len(trees)} cached item(s) from {root}")
    return EXIT_PASS


def _update(args: argparse.Namespace) -> int:
    lock = update_lock()
    for pkg in lock.packages:
        print(f"{pkg.arch:8} {pkg.role:8} {pkg.package} {pkg.version}  sha256 {pkg.sha256[:16]}...")
    print(f"wrote {LOCK_PATH}; `jitprobe images build` rebuilds the images from it")
    return EXIT_PASS
