"""The coherency sanitizer: a QEMU TCG plugin and the host side that loads it and reads its reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PluginSpec:
    """A TCG plugin to load into a guest: ``-plugin <path>,<key>=<value>,...``."""

    path: Path
    args: dict[str, str] = field(default_factory=dict)

    def qemu_args(self) -> list[str]:
        opts = ",".join([str(self.path)] + [f"{k}={v}" for k, v in self.args.items()])
        return ["-plugin", opts]
