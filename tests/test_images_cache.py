"""ensure_images against a damaged cache: the damage is found, reported and rebuilt, never returned.

Uses the pinned .deb files of the real cache (hard-linked into a temporary cache), so it needs
`jitprobe images build` to have run once; it never downloads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from base.files import cache_root
from harness import cli
from images import build, cache
from images.lock import load_lock

ARCH = "riscv64"  # the quickest to rebuild


def _real_debs() -> Path:
    debs = cache_root() / "debs"
    lock = load_lock()
    for role in ("kernel", "busybox"):
        if not (debs / lock.entry(ARCH, role).filename).is_file():
            pytest.skip(f"no cached {ARCH} {role} package; run `jitprobe images build --arch {ARCH}` first")
    return debs


@pytest.fixture(scope="module")
def temp_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary cache holding the real pinned packages (one image build is shared by the tests)."""
    debs = _real_debs()
    root = tmp_path_factory.mktemp("cache")
    lock = load_lock()
    (root / "jitprobe" / "debs").mkdir(parents=True)
    for role in ("kernel", "busybox"):
        name = lock.entry(ARCH, role).filename
        os.link(debs / name, root / "jitprobe" / "debs" / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root))
        yield root


def _verify_cli(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = cli.main(["images", "verify", "--arch", ARCH])
    return status, capsys.readouterr().out


def test_truncated_image_is_reported_and_rebuilt(
    temp_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build.ensure_images(ARCH)
    good = image.initramfs.read_bytes()
    assert image.kernel.is_file() and (image.modules_dir / "modules.dep").is_file()
    assert image.system_map is not None and image.system_map.is_file()
    assert _verify_cli(capsys)[0] == 0

    with open(image.initramfs, "r+b") as fh:
        fh.truncate(len(good) // 2)
    status, out = _verify_cli(capsys)
    assert status == 3 and "initramfs.cpio: size" in out

    again = build.ensure_images(ARCH)
    assert again.initramfs == image.initramfs and again.initramfs.read_bytes() == good
    assert cache.verify(image.initramfs.parent, full=True) == []


def test_module_tree_damage_is_found_without_rehashing_everything(temp_cache: Path) -> None:
    image = build.ensure_images(ARCH)
    dep = image.modules_dir / "modules.dep"
    text = dep.read_text()
    dep.write_text(text.replace("9p", "8p", 1))  # same size, new mtime
    problems = cache.verify(image.initramfs.parent)
    assert len(problems) == 1 and "modules.dep: sha256" in problems[0]
    dep.write_text(text)
    assert cache.verify(image.initramfs.parent) == []
