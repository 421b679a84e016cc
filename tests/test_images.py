"""Unit tests of images/: cpio writer, module closure, package lock, apt sources, cache manifests."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from dataclasses import asdict
from pathlib import Path

import pytest

from base.errors import InfraError, InputError
from base.profiles import expand_arch, load_profile
from harness import cli
from images import cache, cpio, initramfs, lock
from images.apt_root import AptSource, host_mirror

# -- cpio ---------------------------------------------------------------------------------------

ENTRIES = [
    cpio.directory("bin"),
    cpio.directory("tmp", 0o1777),
    cpio.char_device("dev/console", 5, 1),
    cpio.file("bin/busybox", b"\x7fELF" + bytes(range(256)) * 3, 0o755),
    cpio.symlink("bin/sh", "busybox"),
    cpio.file("empty", b""),
    cpio.file("odd-name-length.txt", b"abc"),
]


def test_cpio_round_trip() -> None:
    data = cpio.archive_bytes(ENTRIES)
    assert len(data) % 512 == 0
    assert cpio.read_archives(data) == ENTRIES


def test_cpio_header_layout() -> None:
    data = cpio.archive_bytes([cpio.file("a", b"xy", 0o640)])
    # magic, ino 1, mode, uid, gid, nlink 1, mtime 0, size 2, ... namesize 2 ("a\0")
    assert data[:6] == b"070701"
    fields = [int(data[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
    assert fields[0] == 1 and fields[1] == stat.S_IFREG | 0o640 and fields[4] == 1
    assert fields[6] == 2 and fields[11] == 2 and fields[12] == 0
    # 110-byte header + "a\0" = 112, already aligned; the data follows at once, padded to 4.
    assert data[110:112] == b"a\0" and data[112:116] == b"xy\0\0"
    assert data[116:122] == b"070701" and b"TRAILER!!!\0" in data[116:]


def test_cpio_append_second_archive(tmp_path: Path) -> None:
    path = tmp_path / "initramfs.cpio"
    path.write_bytes(cpio.archive_bytes(ENTRIES))
    cpio.append_archive(path, [cpio.file("empty", b"now full"), cpio.file("run/cmd", b"echo hi\n")])
    members = cpio.read_archives(path.read_bytes())
    assert [m.name for m in members] == [e.name for e in ENTRIES] + ["empty", "run/cmd"]
    # Linux keeps the later member of the same name.
    assert [m.data for m in members if m.name == "empty"] == [b"", b"now full"]


def test_cpio_append_refuses_unaligned_file(tmp_path: Path) -> None:
    path = tmp_path / "x.cpio"
    path.write_bytes(b"07070")
    with pytest.raises(ValueError, match="multiple of 4"):
        cpio.append_archive(path, [cpio.file("a", b"")])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: cpio.file("/abs", b""), "relative"),
        (lambda: cpio.file("a/../b", b""), "relative"),
        (lambda: cpio.file("", b""), "relative"),
        (lambda: cpio.file("a", b"", 0o10000), "permission"),
        (lambda: cpio.char_device("c", 1 << 32, 0), "rdevmajor"),
        (lambda: cpio.CpioEntry("d", stat.S_IFDIR | 0o755, b"data"), "only files"),
        (lambda: cpio.CpioEntry("s", stat.S_IFSOCK | 0o755), "unsupported file type"),
    ],
)
def test_cpio_entry_rejects_bad_values(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        make()


def test_cpio_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="twice"):
        cpio.write_archive(io.BytesIO(), [cpio.file("a", b""), cpio.file("a", b"")])


def test_cpio_reader_rejects_truncation() -> None:
    data = cpio.archive_bytes([cpio.file("a", b"x" * 100)])
    with pytest.raises(ValueError, match="truncated"):
        cpio.read_archives(data[:150])


# -- initramfs ----------------------------------------------------------------------------------

MODULES_DEP = """\
kernel/fs/netfs/netfs.ko.xz:
kernel/net/9p/9pnet.ko.xz:
kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz
"""


def test_module_closure_orders_dependencies_first() -> None:
    order = initramfs.module_closure(MODULES_DEP)
    assert sorted(order) == sorted(
        [
            "kernel/net/9p/9pnet.ko.xz",
            "kernel/fs/netfs/netfs.ko.xz",
            "kernel/net/9p/9pnet_virtio.ko.xz",
            "kernel/fs/9p/9p.ko.xz",
        ]
    )
    for user in ("kernel/net/9p/9pnet_virtio.ko.xz", "kernel/fs/9p/9p.ko.xz"):
        for dep in ("kernel/net/9p/9pnet.ko.xz", "kernel/fs/netfs/netfs.ko.xz"):
            assert order.index(dep) < order.index(user)


def test_module_closure_names_missing_module() -> None:
    with pytest.raises(ValueError, match="'9p'"):
        initramfs.module_closure("kernel/net/9p/9pnet_virtio.ko.xz:\n")


def test_initramfs_has_console_init_and_ordered_modules() -> None:
    entries = initramfs.initramfs_entries(b"BB", [("netfs", b"N"), ("9p", b"P")])
    by_name = {e.name: e for e in entries}
    assert stat.S_ISCHR(by_name["dev/console"].mode) and by_name["dev/console"].rdevmajor == 5
    assert by_name["init"].mode & 0o111 and by_name["init"].data.startswith(b"#!/bin/sh")
    assert b"JITPROBE-READY-$token" in by_name["init"].data
    assert [e.name for e in entries if e.name.endswith(".ko")] == [
        "lib/jitprobe-modules/00-netfs.ko",
        "lib/jitprobe-modules/01-9p.ko",
    ]
    names = [e.name for e in entries]
    for name in names:  # a member's folder comes before it
        parent = name.rpartition("/")[0]
        assert not parent or names.index(parent) < names.index(name)


# -- architectures ------------------------------------------------------------------------------


def test_unknown_arch_lists_choices() -> None:
    with pytest.raises(InputError) as info:
        load_profile("mips")
    assert "mips" in str(info.value)
    assert sorted(str(c) for c in info.value.choices or []) == ["arm64", "riscv64", "x86_64"]
    assert sorted(expand_arch("all")) == ["arm64", "riscv64", "x86_64"]
    assert load_profile("x86_64").debian_arch == "amd64"


def test_cli_unknown_arch_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["images", "verify", "--arch", "sparc"]) == 2
    assert "sparc" in capsys.readouterr().err


# -- lock ---------------------------------------------------------------------------------------


def _pkg(data: bytes, **changes: object) -> lock.LockedPackage:
    fields = dict(
        arch="riscv64",
        role="busybox",
        package="busybox-static",
        version="1:1.0-1",
        filename="busybox-static_1%3a1.0-1_riscv64.deb",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    fields.update(changes)
    return lock.LockedPackage(**fields)  # type: ignore[arg-type]


def _write_lock(path: Path, packages: list[lock.LockedPackage]) -> None:
    path.write_text(json.dumps({"suite": "trixie", "packages": [asdict(p) for p in packages]}))


def test_lock_round_trip_and_missing_entry(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    _write_lock(path, [_pkg(b"x")])
    loaded = lock.load_lock(path)
    assert loaded.entry("riscv64", "busybox") == _pkg(b"x")
    with pytest.raises(InfraError, match="no kernel package for riscv64.*images update"):
        loaded.entry("riscv64", "kernel")
    with pytest.raises(InputError):
        loaded.entry("ppc", "kernel")


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ('{"suite": "trixie"}', "list 'packages'"),
        ('{"suite": "trixie", "packages": [{"arch": "amd64"}]}', r"packages\[0\] is malformed"),
    ],
)
def test_lock_rejects_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lock.json"
    path.write_text(text)
    with pytest.raises(InfraError, match=message):
        lock.load_lock(path)


def test_lock_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="images update"):
        lock.load_lock(tmp_path / "absent.json")


def test_committed_lock_pins_every_arch_and_role() -> None:
    committed = lock.load_lock()
    for arch in expand_arch("all"):
        for role in lock.ROLES:
            pkg = committed.entry(arch, role)
            assert pkg.version and len(pkg.sha256) == 64 and pkg.filename.endswith(".deb")


class _FakeApt:
    """Stands in for the private apt root: 'downloads' fixed bytes."""

    def __init__(self, folder: Path, data: bytes):
        self.folder, self.data, self.updates = folder, data, 0

    def download(self, package: str, arch: str, version: str) -> Path:
        path = self.folder / f"{package}_{arch}.deb"
        path.write_bytes(self.data)
        return path

    def update(self) -> None:
        self.updates += 1


def _fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes) -> _FakeApt:
    """A cache under ``tmp_path`` and a private apt root that serves ``data``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = _FakeApt(tmp_path, data)
    monkeypatch.setattr(lock, "private_apt", lambda suite: fake)
    return fake


def test_fetch_mismatch_is_an_error_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_apt(tmp_path, monkeypatch, b"what the mirror serves")
    pkg = _pkg(b"what was pinned")
    with pytest.raises(InfraError) as info:
        lock.fetch(pkg)
    message = str(info.value)
    assert pkg.package in message and pkg.sha256 in message
    assert hashlib.sha256(b"what the mirror serves").hexdigest() in message
    assert not list(tmp_path.glob("*.deb")) and not (tmp_path / "cache" / "jitprobe" / "debs").exists()


def test_fetch_uses_verified_cache_and_replaces_corrupt_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_apt(tmp_path, monkeypatch, b"pinned bytes")
    pkg = _pkg(b"pinned bytes")
    cached = tmp_path / "cache" / "jitprobe" / "debs" / pkg.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"pinned byteZ")  # same size, wrong content
    assert lock.fetch(pkg) == cached and cached.read_bytes() == b"pinned bytes"
    fake.data = b"never fetched again"
    assert lock.fetch(pkg).read_bytes() == b"pinned bytes"


# -- apt sources --------------------------------------------------------------------------------


def _etc(tmp_path: Path, files: dict[str, str], codename: str = "bookworm") -> Path:
    etc_apt = tmp_path / "etc" / "apt"
    (etc_apt / "sources.list.d").mkdir(parents=True)
    (tmp_path / "etc" / "os-release").write_text(f"ID=debian\nVERSION_CODENAME={codename}\n")
    for name, text in files.items():
        (etc_apt / name).write_text(text)
    return etc_apt


def test_host_mirror_from_deb822(tmp_path: Path) -> None:
    etc_apt = _etc(
        tmp_path,
        {
            "sources.list.d/a.sources": "Types: deb\nURIs: http://security.example/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n\n"
            "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
            "# comment\nTypes: deb deb-src\nURIs: http://mirror.example/debian/\n"
            "Suites: bookworm bookworm-updates\n",
        },
    )
    assert host_mirror(etc_apt) == "http://mirror.example/debian"


def test_host_mirror_from_one_line_list(tmp_path: Path) -> None:
    etc_apt = _etc(
        tmp_path,
        {
            "sources.list": "# deb http://old/ bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
        },
    )
    assert host_mirror(etc_apt) == "http://one.example/debian"


def test_host_mirror_missing_is_infra_error(tmp_path: Path) -> None:
    etc_apt = _etc(tmp_path, {"sources.list": "deb http://third.example/x nodistro main\n"})
    with pytest.raises(InfraError, match="no Debian archive for release bookworm"):
        host_mirror(etc_apt)


def test_apt_source_stanza_and_bad_type() -> None:
    stanza = AptSource(
        "http://m.example/debian", ("bookworm-backports",), types=("deb-src",),
        architectures=("amd64", "arm64", "riscv64"),
    ).deb822()
    assert "Types: deb-src\n" in stanza and "Suites: bookworm-backports\n" in stanza
    assert "Architectures: amd64 arm64 riscv64\n" in stanza and stanza.endswith("\n\n")
    with pytest.raises(ValueError, match="deb, deb-src"):
        AptSource("http://m.example/debian", ("trixie",), types=("rpm",))


# -- cache manifests ----------------------------------------------------------------------------


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "lib" / "modules").mkdir(parents=True)
    (tree / "kernel").write_bytes(b"K" * 5000)
    (tree / "lib" / "modules" / "a.ko.xz").write_bytes(b"module")
    cache.write_manifest(tree, {"arch": "riscv64"})
    return tree


def test_manifest_detects_truncation_and_missing_files(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    assert cache.verify(tree) == [] and cache.verify(tree, full=True) == []
    with open(tree / "kernel", "r+b") as fh:
        fh.truncate(100)
    (tree / "lib" / "modules" / "a.ko.xz").unlink()
    problems = cache.verify(tree)
    assert any("kernel: size 100, expected 5000" in p for p in problems)
    assert any("a.ko.xz: missing" in p for p in problems)


def test_manifest_detects_rewritten_file(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    cache.verify(tree)
    (tree / "kernel").write_bytes(b"X" * 5000)  # same size, new mtime: re-hashed
    assert any("kernel: sha256" in p for p in cache.verify(tree))


def test_a_same_size_same_mtime_corruption_is_found_by_the_quick_check(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    cache.verify(tree)
    st = (tree / "kernel").stat()
    (tree / "kernel").write_bytes(b"Y" * 5000)
    os.utime(tree / "kernel", ns=(st.st_atime_ns, st.st_mtime_ns))  # disguised as unchanged
    assert any("kernel: sha256" in p for p in cache.verify(tree))  # its ctime moved
    assert any("kernel: sha256" in p for p in cache.verify(tree, full=True))


def test_boot_files_are_hashed_on_every_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _tree(tmp_path)
    cache.verify(tree)
    hashed: list[str] = []
    monkeypatch.setattr(cache, "_HASHED", {})
    real = cache._hash

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(cache, "_hash", counting)
    assert cache.verify(tree) == [] and hashed == []  # nothing changed: the side file is trusted
    assert cache.verify(tree, always=["kernel"]) == [] and hashed == ["kernel"]
    assert cache.verify(tree, always=["kernel"]) == [] and hashed == ["kernel"]  # once per process


def test_a_read_only_cache_is_still_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _tree(tmp_path)
    (tree / "verified.json").unlink(missing_ok=True)

    def read_only(path: Path, value: object) -> None:
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(cache, "write_json", read_only)
    assert cache.verify(tree) == [] and cache.verify(tree, full=True) == []
    assert not (tree / "verified.json").exists()


def test_tree_without_manifest_is_not_trusted(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / cache.MANIFEST).unlink()
    assert cache.verify(tree) == [f"{tree / cache.MANIFEST}: missing or unreadable"]
