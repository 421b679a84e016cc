"""The HTML report in a real browser: Debian's headless Chromium opens index.html from a file with no
network, and the rendered DOM, a screenshot and the layout are checked.

One launch renders the page as a reader sees it (DOM dump, screenshot and the browser's network log
in the same run); a second opens a copy with a measuring script added, every <details> open, to
find anything wider than its box. Each browser runs in its own process group, with a fresh profile
and HOME under tmp_path, and the group is killed when it ends or times out.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers_matrix import cell, matrix_results

from ci.history import History
from ci.report import Report, build_report, write_report
from harness.runs import append_result

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH (ci/setup.sh installs Debian's package)"
)

TIMEOUT_S = 180.0  # one launch takes ~1.5 s idle; generous for a loaded 2-core host
WIDTH, HEIGHT = 1280, 2000
# No network: names resolve to nothing and everything else (IP literals too) goes to a proxy on a
# closed port. No background services, extensions, crash reporter or GPU; root needs --no-sandbox,
# which is acceptable for a page this test wrote itself and opens from a file.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--hide-scrollbars",
    f"--window-size={WIDTH},{HEIGHT}",
)
CONTROL_URL = "http://192.0.2.1/control.png"  # TEST-NET-1: must not load
PASS, FAIL, CRASH = "#3a9d4a", "#d0403b", "#8e3ba8"  # ci.report's grid colours


@dataclass
class Launch:
    dom: str
    netlog: Path
    seconds: float


def _chromium(tmp: Path, name: str, page: Path, *extra: str) -> Launch:
    """Run headless Chromium once on ``page`` with ``--dump-dom``; its profile, HOME and net log
    live in ``tmp/name``."""
    assert CHROMIUM is not None
    home = tmp / name
    home.mkdir()
    netlog = home / "netlog.json"
    argv = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={home / 'profile'}",
        f"--log-net-log={netlog}",
        *extra,
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    env = dict(
        os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache")
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # its own process group, so every helper process can be killed
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium ({name}) did not finish in {TIMEOUT_S:.0f} s: {err.decode()[-2000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the browser
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"chromium ({name}) exited {proc.returncode}: {err.decode()[-2000:]}"
    return Launch(out.decode(), netlog, seconds)


def _page_requests(netlog: Path) -> list[tuple[str, Any]]:
    """(url, net error or None) of every network request the page made: those whose network
    isolation key is the file:// site (the browser's own background requests have other keys)."""
    data = json.loads(netlog.read_text())
    names = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    starts: dict[int, str] = {}
    errors: dict[int, Any] = {}
    for event in data["events"]:
        params = event.get("params") or {}
        source = event["source"]["id"]
        if names.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        if "url" in params and str(params.get("network_isolation_key", "")).startswith("file://"):
            starts[source] = params["url"]
        elif "net_error" in params:
            errors[source] = params["net_error"]
    return [(url, errors.get(source)) for source, url in starts.items()]


# -- the report under test ---------------------------------------------------------------------


@dataclass
class Rendered:
    report: Report
    index: Path
    dom: str
    png: bytes
    netlog: Path
    seconds: float


def _report(tmp: Path) -> tuple[Report, Path]:
    """Two nights of the matrix (the second with the same wrong-rule failure in two jobs, with
    violations, disassembly and a console log) plus `jitprobe run` cells that missed and crashed."""
    history = History(tmp / "history.sqlite")
    night1 = matrix_results(tmp, "2026-01-01", failing=False, history=history)
    night2 = matrix_results(tmp, "2026-01-02", failing=True)
    runs = tmp / "runs"
    missed = cell("arm64", "neoverse-v1", "rewrite_in_place", "no_dsb", "fail", observed_rules=[], smp=3)
    crash = dict(cell("arm64", "neoverse-v1", "cross_modify", "no_isb", "crash"), detail="Oops after 3.2 s")
    for c in (missed, crash, cell("arm64", "neoverse-v1", "rewrite_in_place", "none")):
        append_result(runs, {"job": "run", **c})
    report = build_report([night1, night2, runs], history)
    out = tmp / "report"
    write_report(report, out)
    return report, out / "index.html"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    tmp = tmp_path_factory.mktemp("browser")
    report, index = _report(tmp)
    shot = tmp / "screenshot.png"
    launch = _chromium(tmp, "render", index, f"--screenshot={shot}")
    return Rendered(report, index, launch.dom, shot.read_bytes(), launch.netlog, launch.seconds)


def _text(fragment: str) -> str:
    """The text of an HTML fragment, tags dropped and entities of the report's escaping undone."""
    text = re.sub(r"<[^>]+>", "", fragment)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#x27;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def test_the_page_renders_every_section_without_network(rendered: Rendered) -> None:
    dom, report = rendered.dom, rendered.report
    assert len(report.failures) == 3
    title = re.search(r"<title>(.*?)</title>", dom)
    assert title is not None and _text(title.group(1)) == "jitprobe report 2026-01-02"
    assert "<h1>jitprobe report — night 2026-01-02</h1>" in dom

    # the detection grid: a row per test, a coloured cell per place it ran, pass and fail colours
    grid = re.search(r"<table class=\"grid\">(.*?)</table>", dom, re.S)
    assert grid is not None
    rows = {
        name: re.findall(r"<td style=\"background:(#[0-9a-f]{6})\"", tds)
        for name, tds in re.findall(r"<tr><th>([^<]+)</th>(.*?)</tr>", grid.group(1))
    }
    assert rows["icache/flush_mistakes/sync_before_last_write"] == [FAIL, FAIL, "#fafafa"]
    assert rows["icache/flush_mistakes/none"] == [PASS, PASS, "#fafafa"]
    assert rows["icache/cross_modify/no_isb"] == ["#fafafa", "#fafafa", CRASH]
    assert rows["icache/rewrite_in_place/no_dsb"][2] == FAIL
    assert "<svg" in dom and dom.count("<rect") >= 2  # the trend, a bar a night

    sections = dict(re.findall(r"<section class=\"failure\" id=\"sig-(\w+)\">(.*?)</section>", dom, re.S))
    assert set(sections) == {f.signature.id for f in report.failures}
    for failure in report.failures:
        section = sections[failure.signature.id]
        assert f"Signature: {failure.signature.text}" in _text(section)
        reproducer = failure.first["reproducer"]
        assert reproducer.startswith("jitprobe run --suite icache --arch arm64")
        assert f"<pre>{reproducer}</pre>" in section  # nothing in it to escape

    # the wrong-rule failure: its disassembly with the stale instruction marked, events, console
    (wrong,) = [f for f in report.failures if f.signature.kind == "wrong-rule"]
    section = sections[wrong.signature.id]
    marked = re.findall(r"<span class=\"mark\">(.*?)</span>", section)
    assert len(marked) == 1 and re.fullmatch(r"=> 0x[0-9a-f]+: [0-9a-f]{8} +\S.*", _text(marked[0]))
    pc = wrong.first["violations"][0]["pc"]
    assert _text(marked[0]).startswith(f"=> {pc:#x}:")
    assert "store: vCPU 0 at PC 0x401000" in section and "JP-DONE" in section
    assert f"{len(wrong.cells)} hit(s)" in section

    # nothing was fetched: the page made no network request at all
    assert _page_requests(rendered.netlog) == []


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes),
    decoded with the standard library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line if bpp == 3 else b"".join(line[i : i + 3] for i in range(0, stride, 4))))
        prev = line
    return width, height, rows


def test_the_screenshot_shows_the_page(rendered: Rendered) -> None:
    png = rendered.png
    assert len(png) > 20_000, f"{len(png)} bytes"  # a blank 1280x2000 page compresses to ~10 KB
    width, height, rows = _png_pixels(png)
    assert (width, height) == (WIDTH, HEIGHT)
    colours = {row[x : x + 3] for row in rows[::4] for x in range(0, 3 * width, 12)}
    assert len(colours) > 20  # text, grid, trend: not one flat colour
    assert {bytes.fromhex(c[1:]) for c in (PASS, FAIL, CRASH, "#ffffff")} <= colours  # grid, trend, page


# -- layout ------------------------------------------------------------------------------------

# Added to a copy of the page: opens every <details>, then records in the DOM what is wider than its
# box (the page itself, or any element that clips or overflows without a scroll bar of its own).
PROBE = """<script>
for (const d of document.querySelectorAll('details')) d.open = true;
window.addEventListener('load', () => {
  const out = [];
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth) out.push('page ' + root.scrollWidth + '>' + window.innerWidth);
  for (const el of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.display === 'inline' || /auto|scroll/.test(style.overflowX)) continue;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
      out.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' ' +
               el.scrollWidth + '>' + el.clientWidth + ' ' + el.textContent.slice(0, 60));
  }
  const img = document.getElementById('control');
  document.body.dataset.overflow = JSON.stringify(out);
  document.body.dataset.control = img.complete && img.naturalWidth === 0 ? 'blocked' : 'loaded';
});
</script>"""


@pytest.mark.parametrize("width", [WIDTH, 800])  # a desktop and half a laptop screen
def test_nothing_overflows_its_box_with_every_section_open(rendered: Rendered, width: int) -> None:
    probe = rendered.index.with_name("probe.html")
    page = rendered.index.read_text()
    control = f"<img id=control alt='' src='{CONTROL_URL}'>"  # proves the network is really off
    probe.write_text(page.replace("</body>", f"{control}{PROBE}</body>"))
    launch = _chromium(rendered.index.parent.parent, f"probe-{width}", probe, f"--window-size={width},1200")
    found = re.search(r'data-overflow="([^"]*)"', launch.dom)
    assert found is not None, "the probe did not run"
    overflow = json.loads(html.unescape(found.group(1)))
    assert overflow == [], overflow
    assert 'data-control="blocked"' in launch.dom
    requests = _page_requests(launch.netlog)
    assert [url for url, _ in requests] == [CONTROL_URL] and requests[0][1] is not None
