"""``jitprobe run``: the stress suites and their detection matrix (../shared/CONTRACT.md)."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from base import progress
from base.contract import StressResult
from base.errors import EXIT_FAIL, EXIT_INFRA, EXIT_PASS, InputError
from base.profiles import available_arches, expand_arch
from harness.guest import MAX_SMP, install_signal_handlers
from harness.realjit import BUILD_MUTATIONS
from harness.runs import new_results_dir
from jit_core.intrinsics import MUTATIONS

from .runner import Job, Selection, applied, plan, run_jobs
from .scenarios import (
    KERNEL_MUTATIONS,
    NOT_DETECTED,
    STRESS_DIR,
    STRESS_MUTATIONS,
    SUITES,
    LitmusScenario,
    RealjitScenario,
    Scenario,
    expected_rules,
    false_positive_rules,
    load_suite,
    mutations_for,
)

__all__ = [
    "add_run_parser", "cmd_run", "matrix_markdown", "matrix_rows", "matrix_table", "observed_table",
    "print_results", "summarize",
]

_SUITE_CHOICES = (*SUITES, "all")


def _scenarios(args: argparse.Namespace) -> dict[str, list[Scenario]]:
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    directory = Path(args.scenario_dir) if args.scenario_dir else STRESS_DIR
    if not directory.is_dir():
        raise InputError("--scenario-dir", str(directory), hint="not a folder")
    chosen = {suite: list(load_suite(suite, directory)) for suite in suites}
    if args.scenario is not None:
        known = sorted(s.name for scenarios in chosen.values() for s in scenarios)
        if args.scenario not in known:
            raise InputError("--scenario", args.scenario, known)
        chosen = {
            suite: [s for s in scenarios if s.name == args.scenario] for suite, scenarios in chosen.items()
        }
    if args.mutation is not None:
        known = sorted(
            {
                m
                for scenarios in chosen.values()
                for s in scenarios
                for arch in available_arches()
                for m in mutations_for(s, arch)
            }
            | {"none"}
        )
        if args.mutation not in known:
            raise InputError("--mutation", args.mutation, known)
    return chosen


def _jobs(args: argparse.Namespace) -> list[Job]:
    if args.suite not in _SUITE_CHOICES:
        raise InputError("--suite", args.suite, _SUITE_CHOICES)
    arches = expand_arch(args.arch)
    if args.cpu is not None and len(arches) > 1:
        raise InputError("--cpu", args.cpu, hint="give one --arch with --cpu (models differ by architecture)")
    if args.smp is not None and not 2 <= args.smp <= MAX_SMP:
        raise InputError("--smp", args.smp, hint=f"2 to {MAX_SMP} (the programs pin threads to two CPUs)")
    jobs = plan(_scenarios(args), arches, args.cpu, args.smp)
    if args.iterations is not None or args.threads is not None:
        if not any(j.suite == "icache" for j in jobs):
            given = "--iterations" if args.iterations is not None else "--threads"
            raise InputError(given, args.iterations if args.iterations is not None else args.threads,
                             hint="only icache scenarios have iterations and threads to replace")  # fmt: skip
        selection = _selection(args)
        jobs = [applied(j, selection) for j in jobs]  # checks the values before anything boots
    return jobs


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(mutation=args.mutation, seed=args.seed, sanitize=args.sanitize,
                     iterations=args.iterations, threads=args.threads)  # fmt: skip


def _row_keys(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(scenario, mutation) rows grouped by scenario, mutations in their first order."""
    return sorted(dict.fromkeys(keys), key=lambda key: key[0])


def matrix_rows(jobs: Sequence[Job], mutation: str | None = None) -> list[tuple[str, str, str, str, str]]:
    """(arch, cpu, scenario, mutation, expected) of every cell ``jobs`` run; expected is ``clean``
    or ``caught: <rules>`` (``caught: no rule, crash or result`` for a bug the sanitizer has no
    rule for), followed by ``; open false positive: <rules>`` where the scenario lists one."""
    rows = []
    for job in jobs:
        for scenario in job.scenarios:
            if isinstance(scenario, LitmusScenario):
                rows += [
                    (job.arch, job.cpu, test.stem, m, "caught: model" if scenario.expected(test, job.arch, m)
                     == "caught" else "clean")
                    for m in mutations_for(scenario, job.arch) if mutation in (None, m)
                    for test in scenario.tests
                ]  # fmt: skip
                continue
            for m in mutations_for(scenario, job.arch):
                if mutation in (None, m):
                    rules = expected_rules(scenario, job.arch, job.cpu, m)
                    text = f"caught: {', '.join(sorted(rules))}" if rules else "clean"
                    if rules == {NOT_DETECTED}:
                        text = "caught: no rule, crash or result"
                    if isinstance(scenario, RealjitScenario):
                        known, _ = false_positive_rules(scenario, job.arch, job.cpu)
                        text += f"; open false positive: {', '.join(sorted(known))}" if known else ""
                    rows.append((job.arch, job.cpu, scenario.name, str(m), text))
    return rows


def matrix_table(jobs: Sequence[Job], mutation: str | None = None) -> Table:
    """The expected detection matrix as a rich table: one row per scenario and mutation, one
    column per architecture and CPU model."""
    rows = matrix_rows(jobs, mutation)
    columns = list(dict.fromkeys((arch, cpu) for arch, cpu, *_ in rows))
    cells = {(arch, cpu, scenario, m): expected for arch, cpu, scenario, m, expected in rows}
    table = Table(title="jitprobe detection matrix (expected; from the architectures' rules)")
    table.add_column("scenario")
    table.add_column("mutation")
    for arch, cpu in columns:
        table.add_column(f"{arch}\n{cpu}")
    for scenario, m in _row_keys((scenario, m) for _, _, scenario, m, _ in rows):
        table.add_row(
            scenario,
            m,
            *(
                cells.get((arch, cpu, scenario, m), "-").replace("caught: ", "").replace(f"{arch}.", "")
                or "clean"
                for arch, cpu in columns
            ),
        )
    return table


def matrix_markdown(jobs: Sequence[Job], mutation: str | None = None) -> str:
    """The expected detection matrix as a Markdown table (for READMEs and CI summaries)."""
    rows = matrix_rows(jobs, mutation)
    columns = list(dict.fromkeys((arch, cpu) for arch, cpu, *_ in rows))
    cells = {(arch, cpu, scenario, m): expected for arch, cpu, scenario, m, expected in rows}
    lines = ["| scenario | mutation | " + " | ".join(f"{a} {c}" for a, c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]  # fmt: skip
    for scenario, m in _row_keys((scenario, m) for _, _, scenario, m, _ in rows):
        shown = [cells.get((a, c, scenario, m), "n/a").replace("caught: ", "").replace(f"{a}.", "")
                 for a, c in columns]  # fmt: skip
        lines.append(f"| {scenario} | {m} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def summarize(results: Sequence[StressResult], wall_s: float) -> dict[str, Any]:
    verdicts = Counter(str(r["verdict"]) if r["verdict"] is not None else r["observed"] for r in results)
    differing = [r for r in results if r["verdict"] not in ("pass", None)]
    return {
        "cells": len(results),
        "verdicts": dict(verdicts),
        "differing": len(differing),
        "wall_s": round(wall_s, 1),
    }


def observed_table(results: Sequence[StressResult]) -> Table:
    """The detection matrix as run: per scenario and mutation (rows) and architecture and CPU
    model (columns), what was observed, marked when it differs from the expectation."""
    columns = list(dict.fromkeys((r["arch"], r["cpu"]) for r in results))
    suites = {(r["scenario"], r["mutation"]): r["suite"] for r in results}
    order = {suite: k for k, suite in enumerate(SUITES)}
    rows = sorted(_row_keys(suites), key=lambda key: order.get(suites[key], len(order)))
    cells = {(r["arch"], r["cpu"], r["scenario"], r["mutation"]): r for r in results}
    table = Table(title="jitprobe detection matrix (observed)")
    table.add_column("suite")
    table.add_column("scenario")
    table.add_column("mutation")
    for arch, cpu in columns:
        table.add_column(f"{arch}\n{cpu}")

    def show(r: StressResult | None) -> str:
        if r is None:
            return "-"
        if r["verdict"] is None:
            return f"[yellow]{r['observed']}[/yellow]"
        rules = ", ".join(rule.partition(".")[2] for rule in r["observed_rules"])
        text = f"{r['observed']}" + (f": {rules}" if rules else "")
        if r["verdict"] == "pass":
            return f"[green]{text}[/green]"
        return f"[red]{r['verdict'].upper()} {text} (expected {r['expected']})[/red]"

    for scenario, mutation in rows:
        table.add_row(suites[(scenario, mutation)], scenario, mutation,
                      *(show(cells.get((a, c, scenario, mutation))) for a, c in columns))  # fmt: skip
    return table


def print_results(results: Sequence[StressResult], summary: dict[str, Any], console: Console) -> None:
    """The observed matrix, then every cell that differs from its expectation with its detail."""
    console.print(observed_table(results))
    for r in results:
        if r["verdict"] not in ("pass", None):
            console.print(f"{r['arch']} {r['cpu']} {r['scenario']} {r['mutation']}: {r['verdict']}: "
                          f"{r['detail']}\n  reproduce: {r['reproducer']}\n  run folder: {r['run_dir']}",
                          markup=False, highlight=False)  # fmt: skip
    console.print(f"{summary['cells']} cells, {summary['differing']} differing from their expectation, "
                  f"in {summary['wall_s']} s; results in {summary['results_dir']}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the stress suites (or list their matrix); exit 1 when any cell differs from its expectation."""
    jobs = _jobs(args)
    if args.list:
        if args.markdown:
            print(matrix_markdown(jobs, args.mutation))
        elif args.json:
            keys = ("arch", "cpu", "scenario", "mutation", "expected")
            progress.print_json(
                {"matrix": [dict(zip(keys, row, strict=True)) for row in matrix_rows(jobs, args.mutation)]}
            )
        else:
            console = Console(width=None if progress.enabled() else 240)
            console.print(matrix_table(jobs, args.mutation))
            for name, what in [*MUTATIONS.items(), *STRESS_MUTATIONS.items(), *BUILD_MUTATIONS.items(),
                               *KERNEL_MUTATIONS.items()]:
                console.print(f"  {name}: {what}", markup=False, highlight=False)
        return EXIT_PASS
    if not jobs:
        raise InputError(
            "selection", f"--suite {args.suite} --arch {args.arch}", hint="no scenario runs there"
        )
    install_signal_handlers()
    results_dir = Path(args.results) if args.results else new_results_dir("run")
    selection = _selection(args)
    started = time.monotonic()

    def show(cell: StressResult) -> None:
        if progress.enabled():
            progress.STDERR.print(
                f"{cell['arch']} {cell['cpu']} {cell['scenario']} {cell['mutation']}: "
                f"{cell['verdict'] or cell['observed']}",
                markup=False,
                highlight=False,
            )

    results = run_jobs(jobs, selection, results_dir, show, workers=args.jobs)
    summary = summarize(results, time.monotonic() - started)
    summary["results_dir"] = str(results_dir)
    if args.json:
        progress.print_json({"results": results, "summary": summary})
    else:
        print_results(results, summary, Console(width=None if progress.enabled() else 240))
    if any(r["verdict"] == "infra" for r in results):
        return EXIT_INFRA
    return EXIT_FAIL if summary["differing"] else EXIT_PASS


def add_run_parser(subparsers: Any) -> None:
    """Register ``jitprobe run``."""
    run = subparsers.add_parser("run", help="run the stress suites and check their detection matrix")
    run.add_argument("--suite", default="all", help=f"{', '.join(_SUITE_CHOICES)} (default all)")
    run.add_argument("--arch", default="all", help=f"{', '.join(available_arches())} or all (default)")
    run.add_argument("--cpu", help="one CPU model (default: every model the profile's stress_models name)")
    run.add_argument("--smp", type=int, help="vCPUs of each guest (default: the profile's)")
    run.add_argument("--scenario", help="only this scenario")
    run.add_argument("--mutation", help="only this mutation (none: the correct protocol)")
    run.add_argument("--scenario-dir", metavar="DIR",
                     help="folder of <suite>/*.yaml scenario files (default: the project's tests/stress)")
    run.add_argument("--seed", type=int, help="replaces each scenario's seed")
    run.add_argument("--iterations", type=int, metavar="N",
                     help="replaces each icache scenario's code installs per program (at least 2)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="replaces each icache scenario's executor threads (at least 1 for the publish "
                     "generator, 0 for the others; 0 makes the install same-thread)")
    run.add_argument(
        "--sanitize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="load the coherency sanitizer (default); without it only results and crashes are seen",
    )
    run.add_argument("--jobs", type=int, help="guests at once (default: host cores / vCPUs per guest)")
    run.add_argument(
        "--results",
        metavar="DIR",
        help="append each cell's result to DIR/results.jsonl (default: a new folder under the runs folder)",
    )
    run.add_argument("--list", action="store_true", help="print the expected detection matrix; boot nothing")
    run.add_argument("--markdown", action="store_true", help="with --list: the matrix as a Markdown table")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.set_defaults(func=cmd_run)
