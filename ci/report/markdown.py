"""summary.md: the report as a CI job summary (a table of the distinct failures, their
reproducers)."""

from __future__ import annotations

from .model import Report, rate_text, reproducer_of, smallest_words, summary_counts, where

__all__ = ["summary_md"]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_md(report: Report) -> str:
    counts = summary_counts(report)
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(counts["verdicts"].items()))
    out = [
        f"# jitprobe report{f' — night {report.night}' if report.night else ''}",
        "",
        f"{counts['cells']} cells ({verdicts or 'none'}) in {counts['jobs']} matrix jobs"
        + (f", {counts['jobs_cut_off']} cut off" if counts["jobs_cut_off"] else "")
        + f"; **{counts['failures']} distinct failures, {counts['new_failures']} new**. "
        f"jitprobe {report.commit[:12]}, image lock {report.lock_hash or '-'}.",
        "",
    ]
    if report.failures:
        out += [
            "| | signature | kind | test | rule | where | hits | first seen | last passed | failure rate "
            "| reproduced on re-run | smallest (iterations, threads) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in report.failures:
            s, stats = f.signature, f.stats
            places = ", ".join(sorted({where(c) for c in f.cells}))
            out.append(
                f"| {'**new**' if f.new else ''} | `{s.id}` | {s.kind} | {_md_escape(s.scenario)} | "
                f"{_md_escape(s.rule or '-')} | {_md_escape(places)} | {len(f.cells)} | "
                f"{(stats.first_seen if stats else None) or '-'} | "
                f"{(stats.last_passed if stats else None) or '-'} | "
                f"{rate_text(stats)} | {f.rerun.rate if f.rerun else '-'} | "
                + (f"{f.rerun.smallest.get('iterations')}, {f.rerun.smallest.get('threads')} |"
                   if f.rerun and f.rerun.smallest else "- |")
            )  # fmt: skip
        out += ["", "Reproduce (one architecture, locally):", ""]
        for f in report.failures:
            if reproducer_of(f.first):
                out.append(f"- `{f.signature.id}`: `{reproducer_of(f.first)}`")
            if f.rerun and f.rerun.smallest and f.rerun.smallest.get("reproducer"):
                out.append(f"  - smallest ({smallest_words(f.rerun)}): `{f.rerun.smallest['reproducer']}`")
    else:
        out.append("No failures.")
    if report.warnings:
        out += ["", f"{len(report.warnings)} warnings (torn or cut-off records); see results.json."]
    return "\n".join(out) + "\n"
