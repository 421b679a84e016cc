"""``python -m harness.realjit update|build`` (harness.realjit.main)."""

import sys

from harness.realjit import main

__all__: list[str] = []

sys.exit(main(sys.argv))
