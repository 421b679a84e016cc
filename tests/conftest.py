"""Shared pytest configuration.

Tests marked ``qemu`` boot real guests; they need QEMU 10 and the images that `make test`'s
set-up builds. They run by default (CI runs everything); ``-m "not qemu"`` gives a fast loop.
"""

from __future__ import annotations

import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("qemu-system-aarch64"):
        return
    skip = pytest.mark.skip(reason="QEMU system emulators are not installed (run `make test` for the set-up)")
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)
