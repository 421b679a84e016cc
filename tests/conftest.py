"""Shared pytest configuration.

Tests marked ``qemu`` boot real guests; they need QEMU 10 and the images that `make test`'s
set-up builds. They run by default (CI runs everything); ``-m "not qemu"`` gives a fast loop.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Subprocesses (`python -m harness.cli`, ...) import this checkout's packages even from another
# working folder, not those of whichever checkout the environment has installed as editable.
ROOT = Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

QEMU_BINARIES = ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-system-riscv64")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [q for q in QEMU_BINARIES if shutil.which(q) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"{', '.join(missing)} not installed (run `make test` for the set-up)")
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)
