"""The HTML report in a real browser: Debian's headless Chromium (ci.report.browser) opens
index.html from a file with no network, and the rendered DOM, its pictures, the console, a
screenshot and the layout are checked.

One launch renders the page as a reader sees it (DOM dump, console, screenshot and the browser's
network log in the same run); its screenshot and the page are kept in a run folder (runs/, or
$JITPROBE_RUNS). A second opens a copy with a measuring script added, every <details> open, to find
anything wider than its box and the size each picture is drawn at. The checker of console and
network is itself tested on pages broken on purpose.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_matrix import grid_squares, sample_report

from ci.report import Report
from ci.report.browser import CHROMIUM, Launch, open_page, problems
from ci.report.pictures import VERDICT_COLOURS
from harness.runs import new_run_dir

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH (ci/setup.sh installs Debian's package)"
)

WIDTH, HEIGHT = 1280, 2000
CONTROL_URL = "http://192.0.2.1/control.png"  # TEST-NET-1: must not load
PASS, FAIL, CRASH = (VERDICT_COLOURS[v] for v in ("pass", "fail", "crash"))


@dataclass
class Rendered:
    report: Report
    index: Path
    launch: Launch
    png: bytes
    run_dir: Path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    tmp = tmp_path_factory.mktemp("browser")
    report, index = sample_report(tmp)
    run_dir = new_run_dir("report-browser", "all")
    shutil.copy(index, run_dir / "index.html")
    shot = run_dir / "screenshot.png"
    launch = open_page(index, tmp / "render", f"--screenshot={shot}", window=(WIDTH, HEIGHT))
    return Rendered(report, index, launch, shot.read_bytes(), run_dir)


def _text(fragment: str) -> str:
    """The text of an HTML fragment, tags dropped and entities of the report's escaping undone."""
    text = re.sub(r"<[^>]+>", "", fragment)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#x27;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def test_the_page_renders_every_section_and_picture_with_no_console_message_or_request(
    rendered: Rendered,
) -> None:
    dom, report = rendered.launch.dom, rendered.report
    assert len(report.failures) == 4
    title = re.search(r"<title>(.*?)</title>", dom)
    assert title is not None and _text(title.group(1)) == "jitprobe report 2026-01-02"
    assert "<h1>jitprobe report — night 2026-01-02</h1>" in dom

    # the pictures, parsed by the browser as SVG: the grid's squares are those the page was written
    # with (a coloured square per test and place it ran, none elsewhere), a bar a night, a litmus
    # histogram per test and place, and one more in the litmus failure's own section
    figures = re.findall(r"<figure class=\"picture\" id=\"([\w-]+)\"><svg ", dom)
    (litmus,) = [f for f in report.failures if f.signature.scenario.startswith("litmus/")]
    assert figures == ["grid", "trend", "hist-0", "hist-1", f"sig-{litmus.signature.id}-hist-0"]
    squares = grid_squares(dom)
    assert squares == grid_squares(rendered.index.read_text()) and len(squares) == 15
    assert squares[("icache/flush_mistakes/sync_before_last_write", "arm64 cortex-a57 smp2")][0] == FAIL
    assert squares[("icache/flush_mistakes/none", "arm64 cortex-a57 smp3")][0] == PASS
    assert squares[("icache/cross_modify/no_isb", "arm64 neoverse-v1")] == (CRASH, "crash")
    assert squares[("litmus/MP+fences/none", "riscv64 rv64 smp2")] == (PASS, "pass")
    assert not any(test == "icache/cross_modify/no_isb" for test, place in squares if "cortex" in place)
    assert re.findall(r"<title>(2026-01-0\d: \d+ of \d+ cells failing)</title>", dom) == [
        "2026-01-01: 0 of 10 cells failing", "2026-01-02: 2 of 10 cells failing"]  # fmt: skip

    sections = dict(re.findall(r"<section class=\"failure\" id=\"sig-(\w+)\">(.*?)</section>", dom, re.S))
    assert set(sections) == {f.signature.id for f in report.failures}
    for failure in report.failures:
        section = sections[failure.signature.id]
        assert f"Signature: {failure.signature.text}" in _text(section)
        reproducer = failure.first["reproducer"]
        assert reproducer.startswith(("jitprobe run --suite icache --arch arm64", "jitprobe litmus run"))
        assert f"<pre>{reproducer}</pre>" in section  # nothing in it to escape
    bar = r"<title>(r0=1 r1=0: 3 of 1000 \(forbidden by the BPF model\))</title>\s*<path [^>]*fill: (#\w{6})"
    forbidden = re.findall(bar, sections[litmus.signature.id])
    assert forbidden == [("r0=1 r1=0: 3 of 1000 (forbidden by the BPF model)", FAIL)]

    # the wrong-rule failure: its disassembly with the stale instruction marked, events, console
    (wrong,) = [f for f in report.failures if f.signature.kind == "wrong-rule"]
    section = sections[wrong.signature.id]
    marked = re.findall(r"<span class=\"mark\">(.*?)</span>", section)
    assert len(marked) == 1 and re.fullmatch(r"=> 0x[0-9a-f]+: [0-9a-f]{8} +\S.*", _text(marked[0]))
    pc = wrong.first["violations"][0]["pc"]
    assert _text(marked[0]).startswith(f"=> {pc:#x}:")
    assert "store: vCPU 0 at PC 0x401000" in section and "JP-DONE" in section
    assert f"{len(wrong.cells)} hit(s)" in section

    # nothing on the console, nothing fetched
    assert problems(rendered.launch) == []


# Each is a page that problems() must catch, and what it must say.
BROKEN_PAGES = {
    "script error": ("<script>nothing_here()</script>", "console: Uncaught ReferenceError: nothing_here"),
    "broken image": ("<img src='missing.png' alt=''>", "outside the page: img src=missing.png"),
    "bad svg": ("<svg width='10' height='ten'></svg>", "console: Error: <svg> attribute height"),
}


@pytest.mark.parametrize("case", [*BROKEN_PAGES, "clean"])
def test_the_checker_catches_a_script_error_a_broken_image_and_bad_svg(tmp_path: Path, case: str) -> None:
    body, expected = BROKEN_PAGES.get(case, ("<svg width='10' height='10'></svg>", ""))
    page = tmp_path / "page.html"
    page.write_text(f"<!DOCTYPE html><html lang=en><head><title>t</title></head><body>{body}</body></html>")
    found = problems(open_page(page, tmp_path / "home", window=(400, 300)))
    if case == "clean":
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(expected), found


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


def test_the_screenshot_shows_the_page_and_is_kept_in_the_run_folder(rendered: Rendered) -> None:
    assert (rendered.run_dir / "screenshot.png").read_bytes() == rendered.png
    assert (rendered.run_dir / "index.html").read_bytes() == rendered.index.read_bytes()
    png = rendered.png
    assert len(png) > 20_000, f"{len(png)} bytes"  # a blank 1280x2000 page compresses to ~10 KB
    width, height, rows = _png_pixels(png)
    assert (width, height) == (WIDTH, HEIGHT)
    colours = {row[x : x + 3] for row in rows[::4] for x in range(0, 3 * width, 12)}
    assert len(colours) > 20  # text, grid, trend: not one flat colour
    assert {bytes.fromhex(c[1:]) for c in (PASS, FAIL, CRASH, "#ffffff")} <= colours  # grid, trend, page


# -- layout ------------------------------------------------------------------------------------

# Added to a copy of the page: opens every <details>, then records in the DOM what is wider than its
# box (the page itself, or any element that clips or overflows without a scroll bar of its own) and
# the size each picture is drawn at.
PROBE = """<script>
for (const d of document.querySelectorAll('details')) d.open = true;
window.addEventListener('load', () => {
  const out = [];
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth) out.push('page ' + root.scrollWidth + '>' + window.innerWidth);
  for (const el of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (el.ownerSVGElement || style.display === 'inline' || /auto|scroll/.test(style.overflowX)) continue;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
      out.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' ' +
               el.scrollWidth + '>' + el.clientWidth + ' ' + el.textContent.slice(0, 60));
  }
  const img = document.getElementById('control');
  document.body.dataset.overflow = JSON.stringify(out);
  document.body.dataset.pictures = JSON.stringify([...document.querySelectorAll('figure svg')].map(
    svg => [svg.parentElement.id, svg.getBoundingClientRect().width, svg.getBoundingClientRect().height]));
  document.body.dataset.control = img.complete && img.naturalWidth === 0 ? 'blocked' : 'loaded';
});
</script>"""


@pytest.mark.parametrize("width", [WIDTH, 800])  # a desktop and half a laptop screen
def test_nothing_overflows_its_box_with_every_section_open(rendered: Rendered, width: int) -> None:
    probe = rendered.index.with_name("probe.html")
    page = rendered.index.read_text()
    control = f"<img id=control alt='' src='{CONTROL_URL}'>"  # proves the network is really off
    probe.write_text(page.replace("</body>", f"{control}{PROBE}</body>"))
    launch = open_page(probe, rendered.index.parent.parent / f"probe-{width}", window=(width, 1200))
    found = re.search(r'data-overflow="([^"]*)"', launch.dom)
    assert found is not None, "the probe did not run"
    overflow = json.loads(html.unescape(found.group(1)))
    assert overflow == [], overflow
    pictures = re.search(r'data-pictures="([^"]*)"', launch.dom)
    assert pictures is not None
    sizes = {name: (w, h) for name, w, h in json.loads(html.unescape(pictures.group(1)))}
    assert len(sizes) == 5 and all(40 < w <= width and h > 40 for w, h in sizes.values()), sizes
    assert 'data-control="blocked"' in launch.dom
    requests = launch.requests()
    assert [url for url, _ in requests] == [CONTROL_URL] and requests[0][1] is not None
