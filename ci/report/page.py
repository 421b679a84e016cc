"""index.html: the report as one self-contained page (inline CSS and SVG pictures, no script,
nothing fetched): the detection matrix, the failure trend, litmus outcome histograms and a section
per distinct failure."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ..triage import console_excerpt, disassemble_around, events
from .model import (
    Failure,
    Report,
    Rerun,
    environment,
    rate_text,
    reproducer_of,
    smallest_words,
    summary_counts,
    verdict_of,
    where,
)
from .pictures import Histogram, Picture, detection_grid, failure_trend, histograms, outcome_histogram

__all__ = ["index_html"]

_VIOLATION_COLUMNS = (
    "rule", "pc", "vcpu", "insn", "disasm", "symbol", "writer_pc", "writer_vcpu", "count", "space",
)  # fmt: skip
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;
vertical-align:top}th{background:#f2f2f2}code,pre{font:12px/1.35 ui-monospace,monospace}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow-x:auto}
details{overflow-x:auto}
figure{margin:.8em 0}figure svg{display:block;max-width:100%;height:auto}
figcaption{color:#555;font-size:12px}
.failure{border:1px solid #d8d8d8;border-left:6px solid #d0403b;padding:.2em 1em 1em;margin:1.2em 0}
.new{background:#d0403b;color:#fff;border-radius:3px;padding:0 .4em;font-size:12px}
.mark{background:#ffe08a;font-weight:bold}.muted{color:#777}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _figure(picture: Picture | None, missing: str) -> str:
    if picture is None:
        return f"<p class=muted>{_e(missing)}</p>"
    return (f"<figure class=picture id='{picture.name}'>{picture.svg}"
            f"<figcaption>{_e(picture.title)}</figcaption></figure>")


def _histograms_html(found: list[Histogram], prefix: str) -> str:
    return "".join(_figure(outcome_histogram(h, f"{prefix}{k}"), "") for k, h in enumerate(found))


def _field(violation: Mapping[str, Any], key: str) -> Any:
    value = violation.get(key)
    return hex(value) if key in ("pc", "writer_pc", "paddr") and isinstance(value, int) else value


def _failure_html(failure: Failure, report: Report) -> str:
    s, first, stats = failure.signature, failure.first, failure.stats
    env = environment(first, report)
    hits = "".join(
        f"<tr><td>{_e(c.get('night') or '-')}</td><td>{_e(c.get('matrix_job') or '-')}</td>"
        f"<td>{_e(where(c))}</td>"
        f"<td>{_e(c.get('seed'))}</td><td>{_e(verdict_of(c))}</td><td><code>{_e(c.get('run_dir'))}</code></td></tr>"
        for c in failure.cells
    )
    history = (
        "<p class=muted>No history given.</p>"
        if stats is None
        else "<p class=muted>Not in the history (only the matrix's jobs are recorded there).</p>"
        if stats.first_seen is None
        else f"<p>First seen <b>{_e(stats.first_seen)}</b>; "
        f"last passed <b>{_e(stats.last_passed or 'never')}</b>; "
        f"failed {_e(rate_text(stats))} of the runs of the cells it hit since first seen, "
        f"on {stats.nights} night(s).</p>"
    )
    env_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in env.items() if v is not None)
    violations = first.get("violations") or []
    parts = [
        f"<section class=failure id='sig-{s.id}'><h3>{'<span class=new>new</span> ' if failure.new else ''}"
        f"<code>{s.id}</code> {_e(s.kind)} — {_e(s.scenario)}</h3>",
        f"<p>Signature: <code>{_e(s.text)}</code><br>Detail: {_e(first.get('detail', ''))}</p>",
        history,
        "<p>Reproducer (this architecture, locally):</p>"
        f"<pre>{_e(reproducer_of(first) or '(none recorded)')}</pre>",
        _rerun_html(failure.rerun),
        f"<details open><summary>Environment</summary><table>{env_rows}</table></details>",
        f"<details open><summary>{len(failure.cells)} hit(s)</summary><table><tr><th>night</th><th>job</th>"
        f"<th>where</th><th>seed</th><th>verdict</th><th>run folder</th></tr>{hits}</table></details>",
    ]
    for v in list({(v.get("rule"), v.get("pc")): v for v in violations}.values())[:3]:
        asm = disassemble_around(first, v)
        parts.append(
            f"<h4>{_e(v.get('rule'))} at {_e(hex(v['pc']) if isinstance(v.get('pc'), int) else v.get('pc'))}"
            f" ({_e(v.get('symbol') or 'no symbol')})</h4>"
        )
        if asm is not None:
            lines = "\n".join(
                (
                    f"<span class=mark>=&gt; {line.address:#x}: {_e(line.hex):<10} {_e(line.text)}</span>"
                    if line.marked
                    else f"   {line.address:#x}: {_e(line.hex):<10} {_e(line.text)}"
                )
                for line in asm.lines
            )
            parts.append(f"<p class=muted>{_e(asm.source)}</p><pre>{lines}</pre>")
        parts.append("<ul>" + "".join(f"<li>{_e(e)}</li>" for e in events(v)) + "</ul>")
    if violations:
        head = "".join(f"<th>{k}</th>" for k in _VIOLATION_COLUMNS)
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{_e(_field(v, k))}</td>"
                for k in _VIOLATION_COLUMNS
            )
            + "</tr>"
            for v in violations[:40]
        )
        more = (
            f"<p class=muted>{len(violations) - 40} more in results.json</p>" if len(violations) > 40 else ""
        )
        parts.append(
            f"<details><summary>{len(violations)} violation(s)</summary><table><tr>{head}</tr>{rows}"
            f"</table>{more}</details>"
        )
    parts.append(_histograms_html(histograms(failure.cells), f"sig-{s.id}-hist-"))
    console = console_excerpt(first.get("run_dir"))
    if console is not None:
        parts.append(f"<details><summary>Console (last lines)</summary><pre>{_e(console)}</pre></details>")
    parts.append("</section>")
    return "".join(parts)


def _rerun_html(rerun: Rerun | None) -> str:
    if rerun is None:
        return "<p class=muted>Not re-run (matrix run --rerun N re-runs each failure).</p>"
    jobs = ", ".join(rerun.jobs)
    text = (f"<p class=rerun>Re-run on {_e(rerun.night)} (job {_e(jobs)}): reproduced <b>{_e(rerun.rate)}</b>"
            + (f", {rerun.errors} re-run(s) could not run" if rerun.errors else "") + ".")  # fmt: skip
    if rerun.smallest is None:
        return text + " Not shrunk (it did not reproduce, or its suite has no iterations to shrink).</p>"
    return (
        text + f" Smallest reproducing configuration: <b>{_e(smallest_words(rerun))}</b>:</p>"
        f"<pre class=smallest>{_e(rerun.smallest.get('reproducer', ''))}</pre>"
    )


def index_html(report: Report) -> str:
    counts = summary_counts(report)
    failures = "".join(_failure_html(f, report) for f in report.failures) or "<p>No failures.</p>"
    toc = "".join(
        f"<li><a href='#sig-{f.signature.id}'><code>{f.signature.id}</code></a> {_e(f.signature.text)} "
        f"({len(f.cells)} hit(s)){' <span class=new>new</span>' if f.new else ''}</li>"
        for f in report.failures
    )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
    litmus = _histograms_html(histograms(report.cells), "hist-")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>jitprobe report"
        f"{' ' + _e(report.night) if report.night else ''}</title><style>{_CSS}</style></head><body>"
        f"<h1>jitprobe report{' — night ' + _e(report.night) if report.night else ''}</h1>"
        f"<p>{counts['cells']} cells in {counts['jobs']} matrix jobs; "
        f"<b>{counts['failures']} distinct failures, "
        f"{counts['new_failures']} new</b>. Verdicts: "
        f"{_e(', '.join(f'{n} {v}' for v, n in sorted(counts['verdicts'].items())))}. jitprobe "
        f"<code>{_e(report.commit)}</code>, image lock <code>{_e(report.lock_hash)}</code>, generated "
        f"{_e(report.generated)}.</p>"
        f"<h2>Detection matrix</h2>{_figure(detection_grid(report.cells), 'No cells.')}<h2>Failures across "
        f"nights</h2>{_figure(failure_trend(report.trend), 'No history (give --history DB).')}"
        + (f"<h2>Litmus outcome histograms</h2>{litmus}" if litmus else "")
        + f"<h2>Failures</h2><ul>{toc}</ul>{failures}"
        + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
        + "</body></html>\n"
    )


