"""``python -m harness.kernel_modules update | build <module> <arch>`` (harness.kernel_modules.main)."""

import sys

from harness.kernel_modules import main

__all__: list[str] = []

sys.exit(main(sys.argv))
