"""The report's pictures, drawn with matplotlib when the report is built and put in the page as
inline SVG (no script, nothing fetched): the detection matrix as a coloured grid, the failing cells
per night, and litmus outcome histograms.

The same cells give the same bytes: the SVG's ids come from a fixed hash salt, the file carries no
date, and text stays text (``svg.fonttype: none``) instead of glyph outlines that depend on the
fonts installed. Each picture's ids are prefixed with its name, so several pictures can share one
HTML document; an element with a tooltip gets an SVG ``<title>``.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..signature import NO_VERDICT, cell_key
from .model import verdict_of, where

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "VERDICT_COLOURS",
    "Histogram",
    "Picture",
    "detection_grid",
    "failure_trend",
    "histograms",
    "outcome_histogram",
]

VERDICT_COLOURS = {
    "pass": "#3a9d4a",
    "fail": "#d0403b",
    "crash": "#8e3ba8",
    "timeout": "#e08a1e",
    "infra": "#777777",
    "not exercised": "#e6c84a",
    "not detected": "#c9a227",
    "known false positive": "#b8b8e0",
}
_WORST_FIRST = ("infra", "crash", "timeout", "fail", *NO_VERDICT, "pass")
_NOT_RUN = "#f2f2f2"  # a place where the test did not run
_STATE = "#4a78c0"  # an outcome the model allows
# None drops the entry; with every default entry dropped the SVG has no <metadata> at all.
_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}
_SVG = "http://www.w3.org/2000/svg"
_XLINK = "http://www.w3.org/1999/xlink"
ET.register_namespace("", _SVG)
ET.register_namespace("xlink", _XLINK)


@dataclass(frozen=True)
class Picture:
    name: str  # unique in the page: every id in the SVG starts with it
    title: str  # what it shows, in words (its accessible name)
    svg: str  # an <svg> element, ready to put in HTML


@contextmanager
def _style() -> Iterator[type[Figure]]:
    # matplotlib takes 0.25-0.7 s to import here and every jitprobe command imports this package, so
    # it is imported only when a picture is drawn. Figure without pyplot: no GUI backend, no display.
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({
        "svg.hashsalt": "jitprobe-report",
        "svg.fonttype": "none",
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }):
        yield Figure


def _picture(fig: Figure, name: str, title: str, tips: Mapping[str, str]) -> Picture:
    """``fig`` as inline SVG: ids prefixed with ``name``, a ``<title>`` for the whole picture and
    one in each element whose gid ``tips`` names."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata=_METADATA, bbox_inches="tight", pad_inches=0.05)
    root = ET.fromstring(out.getvalue())
    href = f"{{{_XLINK}}}href"
    for element in root.iter():
        for key, value in element.attrib.items():
            if key == "id":
                element.set(key, f"{name}-{value}")
            elif key == href and value.startswith("#"):
                element.set(key, f"#{name}-{value[1:]}")
            elif "url(#" in value:
                element.set(key, value.replace("url(#", f"url(#{name}-"))
        tip = tips.get(element.get("id", "").removeprefix(f"{name}-"))
        if tip is not None:
            element.insert(0, _title(tip))
    root.insert(0, _title(title))
    root.set("role", "img")
    root.set("aria-label", title)
    return Picture(name, title, ET.tostring(root, encoding="unicode"))


def _title(text: str) -> ET.Element:
    element = ET.Element(f"{{{_SVG}}}title")
    element.text = text
    return element


def detection_grid(cells: Sequence[Mapping[str, Any]], name: str = "grid") -> Picture | None:
    """A row per test, a column per architecture/CPU/vCPUs, each square coloured by the worst
    verdict seen there (None without cells)."""
    rows = sorted({cell_key(c) for c in cells})
    columns = sorted({where(c) for c in cells})
    if not rows:
        return None
    seen: dict[tuple[str, str], set[str]] = {}
    for c in cells:
        seen.setdefault((cell_key(c), where(c)), set()).add(verdict_of(c))
    tips = {}
    with _style() as Figure:
        from matplotlib.patches import Patch, Rectangle

        fig = Figure(figsize=(0.3 * len(columns), 0.22 * len(rows)))
        ax = fig.add_axes((0, 0, 1, 1), facecolor=_NOT_RUN)
        for i, row in enumerate(rows):
            for j, column in enumerate(columns):
                verdicts = seen.get((row, column))
                if verdicts is None:
                    continue
                worst = min(verdicts, key=lambda v: _WORST_FIRST.index(v) if v in _WORST_FIRST else 0)
                gid = f"cell-{i}-{j}"
                colour = VERDICT_COLOURS.get(worst, VERDICT_COLOURS["infra"])
                ax.add_patch(Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", lw=1.5, gid=gid))
                tips[gid] = f"{row} on {column}: {', '.join(sorted(verdicts))}"
        ax.set_xlim(0, len(columns))
        ax.set_ylim(len(rows), 0)
        ax.xaxis.tick_top()
        ax.set_xticks([j + 0.5 for j in range(len(columns))], columns, rotation=90)
        ax.set_yticks([i + 0.5 for i in range(len(rows))], rows)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        legend = [Patch(facecolor=c, label=v) for v, c in VERDICT_COLOURS.items()]
        legend.append(Patch(facecolor=_NOT_RUN, edgecolor="#cccccc", label="not run there"))
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        return _picture(fig, name, f"detection matrix: {len(rows)} tests on {len(columns)} places", tips)


def failure_trend(trend: Sequence[tuple[str, int, int]], name: str = "trend") -> Picture | None:
    """Failing cells per night, oldest left (None without history)."""
    if not trend:
        return None
    with _style() as Figure:
        from matplotlib.ticker import MaxNLocator

        fig = Figure(figsize=(min(12.0, max(3.0, 0.4 * len(trend))), 2.0))
        ax = fig.add_axes((0, 0, 1, 1))
        failing = [bad for _, bad, _ in trend]
        bars = ax.bar(range(len(trend)), failing, width=0.6, color=VERDICT_COLOURS["fail"])
        tips = {}
        for k, (bar, (night, bad, total)) in enumerate(zip(bars, trend, strict=True)):
            bar.set_gid(f"night-{k}")
            tips[f"night-{k}"] = f"{night}: {bad} of {total} cells failing"
        ax.bar_label(bars, fontsize=7)
        every = max(1, len(trend) // 30)  # at most ~30 labels; the tooltips name every night
        ax.set_xticks(
            range(len(trend)),
            [night[-5:] if k % every == 0 else "" for k, (night, _, _) in enumerate(trend)],
            rotation=90 if len(trend) > 8 else 0,
        )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("failing cells")
        return _picture(fig, name, f"failing cells per night, {trend[0][0]} to {trend[-1][0]}", tips)


@dataclass(frozen=True)
class Histogram:
    """One litmus test's final states on one place, summed over the runs recorded."""

    test: str
    place: str
    counts: Mapping[str, int]
    forbidden: frozenset[str]  # states the BPF model forbids that were seen
    runs: int


def histograms(cells: Sequence[Mapping[str, Any]]) -> list[Histogram]:
    """Every litmus cell's histogram, summed per test and place, sorted by test then place."""
    counts: dict[tuple[str, str], Counter[str]] = {}
    forbidden: dict[tuple[str, str], set[str]] = {}
    runs: Counter[tuple[str, str]] = Counter()
    for c in cells:
        hist = c.get("histogram")
        if not isinstance(hist, dict) or not hist:
            continue
        key = (cell_key(c), where(c))
        counts.setdefault(key, Counter()).update({str(s): int(n) for s, n in hist.items()})
        forbidden.setdefault(key, set()).update(str(s) for s in c.get("forbidden") or ())
        runs[key] += 1
    return [
        Histogram(test, place, dict(counts[(test, place)]), frozenset(forbidden[(test, place)]),
                  runs[(test, place)])
        for test, place in sorted(counts)
    ]  # fmt: skip


def outcome_histogram(hist: Histogram, name: str) -> Picture:
    """Times each final state was seen, one bar per state; red where the BPF model forbids it."""
    states = sorted(hist.counts)
    total = sum(hist.counts.values())
    with _style() as Figure:
        from matplotlib.ticker import NullLocator, StrMethodFormatter

        fig = Figure(figsize=(4.5, 0.25 * len(states) + 0.3))
        ax = fig.add_axes((0, 0, 1, 1))
        colours = [VERDICT_COLOURS["fail"] if s in hist.forbidden else _STATE for s in states]
        bars = ax.barh(range(len(states)), [hist.counts[s] for s in states], color=colours)
        tips = {}
        for k, (bar, state) in enumerate(zip(bars, states, strict=True)):
            bar.set_gid(f"state-{k}")
            tips[f"state-{k}"] = f"{state}: {hist.counts[state]} of {total}" + (
                " (forbidden by the BPF model)" if state in hist.forbidden else ""
            )
        ax.bar_label(bars, fontsize=7, padding=2)
        ax.set_yticks(range(len(states)), states, fontfamily="DejaVu Sans Mono")
        for label, colour in zip(ax.get_yticklabels(), colours, strict=True):
            if colour != _STATE:
                label.set_color(colour)
        ax.set_ylim(len(states) - 0.5, -0.5)
        # log scale: a forbidden outcome seen 3 times in 10^6 must still show as a bar; from 0.5 so
        # that one seen once has a length, and every histogram starts at the same place
        ax.set_xscale("log")
        ax.set_xlim(left=0.5)
        # counts as plain numbers and no minor ticks: the default 10^n labels (mathtext) and the
        # minor ticks took two thirds of the drawing time
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("times seen, log scale" + (f" (summed over {hist.runs} runs)" if hist.runs > 1 else ""))
        title = f"outcomes of {hist.test} on {hist.place}" + (
            f", {len(hist.forbidden)} forbidden seen" if hist.forbidden else ""
        )
        return _picture(fig, name, title, tips)
