"""Boot each architecture's image in QEMU straight from images/ (no harness), checking the initramfs.

Checks what /init promises: the readiness marker with the command line's token, a file from a
second cpio archive appended to the initramfs, modprobe of a module from the `modules` share
(its .ko.xz decompressed by the kernel), and the `host` share at /mnt/host.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import pexpect
import pytest

from images import cpio
from images.build import ensure_images

# Only what this test needs; the harness takes these from arch_profiles/.
QEMU = {
    "x86_64": ("qemu-system-x86_64", ["-M", "q35"], "ttyS0"),
    "arm64": ("qemu-system-aarch64", ["-M", "virt", "-cpu", "cortex-a57"], "ttyAMA0"),
    "riscv64": ("qemu-system-riscv64", ["-M", "virt"], "ttyS0"),
}


@pytest.mark.qemu
@pytest.mark.parametrize("arch", list(QEMU))
def test_image_boots_to_marker_and_loads_modules(arch: str, tmp_path: Path) -> None:
    binary, machine, console = QEMU[arch]
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")
    image = ensure_images(arch)
    initrd = tmp_path / "initramfs.cpio"
    shutil.copyfile(image.initramfs, initrd)
    appended = [cpio.directory("run"), cpio.file("run/appended.txt", b"from the second archive\n")]
    cpio.append_archive(initrd, appended)
    share = tmp_path / "share"
    share.mkdir()
    (share / "host.txt").write_text("from the host share\n")
    token = secrets.token_hex(8)
    argv = [
        *machine, "-smp", "2", "-m", "1024", "-accel", "tcg,thread=multi", "-nographic", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(initrd),
        "-append", f"console={console} quiet panic=-1 jitprobe.token={token}",
        "-fsdev", f"local,id=mod,path={image.modules_dir},security_model=none,readonly=on",
        "-device", "virtio-9p-pci,fsdev=mod,mount_tag=modules",
        "-fsdev", f"local,id=host,path={share},security_model=none",
        "-device", "virtio-9p-pci,fsdev=host,mount_tag=host",
    ]  # fmt: skip
    started = time.monotonic()
    guest = pexpect.spawn(binary, argv, encoding="utf-8", codec_errors="replace", timeout=120)
    try:
        guest.expect(f"JITPROBE-READY-{token}")
        print(f"{arch}: ready after {time.monotonic() - started:.2f} s")
        guest.sendline(
            "cat /run/appended.txt /mnt/host/host.txt; modprobe ext4 && grep -c '^ext4 ' /proc/modules; "
            "echo END-$((40+2))"
        )
        guest.expect("END-42")
        out = guest.before
        assert "from the second archive" in out
        assert "from the host share" in out
        assert "\n1\r" in out  # ext4 is in /proc/modules
        guest.sendline("poweroff -f")
        guest.expect(pexpect.EOF, timeout=60)
    finally:
        guest.close(force=True)
