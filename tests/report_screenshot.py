"""The README's picture of a report: the sample report of the browser test (two nights of the
matrix, failures of each kind, litmus histograms) rendered by the same headless Chromium.

    .venv/bin/python tests/report_screenshot.py [OUT]     # default docs/report.png

Exit 3 (with the reason) when Chromium is missing or fails, or the page has a problem.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run as a script: this checkout and the test helpers

from helpers_matrix import sample_report  # noqa: E402

from base.errors import InfraError  # noqa: E402
from ci.report.browser import open_page, problems  # noqa: E402

WINDOW = (1100, 1500)  # the grid, the trend and the first failure


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else ROOT / "docs" / "report.png").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        _, index = sample_report(Path(tmp))
        try:
            launch = open_page(index, Path(tmp) / "chromium", f"--screenshot={out}", window=WINDOW)
        except InfraError as exc:
            print(f"report_screenshot: {exc}", file=sys.stderr)
            return exc.exit_code
        found = problems(launch)
    if found:
        print("report_screenshot: the page has problems:\n" + "\n".join(found), file=sys.stderr)
        return InfraError.exit_code
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
