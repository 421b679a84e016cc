"""Re-running a night's failures: how often each reproduces, and the smallest configuration that
still does.

After the matrix's jobs, ``jitprobe matrix run --rerun N`` takes each distinct failure (one
signature, ci.signature; the first cell with it in the matrix's order) and runs its job again N
times, restricted to its scenario and mutation: one guest boot each, at the scenario's own
parameters. A run reproduces the failure when one of its cells has the same signature. When at
least one did, an icache failure is shrunk (``shrink``): its ``iterations`` halved down to 2 and,
for the generators that start executor threads, its ``threads`` halved down to their minimum,
one guest run per attempt and at most ``attempts`` of them. The search is deterministic given the
runs' outcomes.

Each failure's re-runs end with one ``rerun`` record in DIR/results.jsonl (rate, the attempts,
the smallest reproducing configuration and its reproducer); ci.report shows them with the
failure. A failure whose record is there for the night is not re-run again (``--resume``). The
re-runs' own cells are not results of the night: they are never appended as ``run`` records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from base.contract import StressResult
from base.errors import JitprobeError
from harness.runs import append_result, has_results, read_results
from harness.stress.runner import reproducer, run_jobs
from harness.stress.scenarios import MIN_ITERATIONS, IcacheScenario, min_threads, threaded

from .matrix import MatrixJob, Runner
from .report.model import load_cells
from .signature import Signature, signature_of

__all__ = [
    "DEFAULT_SHRINK_ATTEMPTS",
    "Config",
    "ShrinkResult",
    "rerun_failure",
    "rerun_failures",
    "shrink",
]

DEFAULT_SHRINK_ATTEMPTS = 8
Config = tuple[int, int]  # (iterations, threads)


@dataclass(frozen=True)
class ShrinkResult:
    """The smallest configuration found and every attempt, in order: (config, reproduced)."""

    smallest: Config
    tried: tuple[tuple[Config, bool], ...]


def shrink(start: Config, least: Config, reproduces: Callable[[Config], bool], attempts: int) -> ShrinkResult:
    """The smallest (iterations, threads) from ``start`` (which reproduces) down to ``least`` for
    which ``reproduces`` holds, trying at most ``attempts`` configurations.

    First the least configuration itself (when it reproduces nothing smaller exists); then, in
    turn, iterations halved and threads halved (never below ``least``), each kept when it
    reproduces; a dimension whose halving did not reproduce is not halved again. Deterministic
    given ``reproduces``' answers."""
    best = start
    tried: list[tuple[Config, bool]] = []
    seen: set[Config] = {start}

    def attempt(config: Config) -> bool:
        seen.add(config)
        ok = reproduces(config)
        tried.append((config, ok))
        return ok

    least = (min(least[0], start[0]), min(least[1], start[1]))
    if attempts > 0 and least != start and attempt(least):
        return ShrinkResult(least, tuple(tried))
    blocked = [False, False]
    while len(tried) < attempts and not all(blocked):
        for dim in (0, 1):
            if blocked[dim] or len(tried) >= attempts:
                continue
            smaller = list(best)
            smaller[dim] = max(least[dim], best[dim] // 2)
            candidate = (smaller[0], smaller[1])
            if candidate in seen:  # at the least value, or the least configuration already failed
                blocked[dim] = True
                continue
            if attempt(candidate):
                best = candidate
            else:
                blocked[dim] = True
    return ShrinkResult(best, tuple(tried))


def _run_once(
    mjob: MatrixJob, mutation: str, config: Config | None, runner: Runner
) -> tuple[list[StressResult], str, float]:
    """One guest run of ``mjob`` restricted to ``mutation`` (at ``config``, else the scenario's
    parameters): (cells, error, seconds)."""
    selection = replace(mjob.selection(), mutation=mutation)
    if config is not None:
        selection = replace(selection, iterations=config[0], threads=config[1])
    cells: list[StressResult] = []
    clock = time.monotonic()
    error = ""
    try:
        runner([mjob.harness_job()], selection, None, cells.append, 1)
    except JitprobeError as exc:
        error = str(exc)
    return cells, error, round(time.monotonic() - clock, 2)


def rerun_failure(
    mjob: MatrixJob,
    cell: dict[str, Any],
    signature: Signature,
    runs: int,
    attempts: int = DEFAULT_SHRINK_ATTEMPTS,
    runner: Runner = run_jobs,
) -> dict[str, Any]:
    """Re-run the failure ``signature`` that ``cell`` of ``mjob`` showed ``runs`` times, then shrink
    it (icache scenarios, when it reproduced at all); returns its ``rerun`` record (without the
    night)."""
    mutation = str(cell.get("mutation", "none"))
    log: list[dict[str, Any]] = []

    def once(purpose: str, config: Config | None) -> bool | None:
        cells, error, seconds = _run_once(mjob, mutation, config, runner)
        seen = []
        for c in cells:
            sig = signature_of({**c, "sanitize": mjob.sanitize})
            if sig is not None:
                seen.append(sig.id)
        reproduced = None if error and not cells else signature.id in seen
        log.append({
            "purpose": purpose,
            "iterations": config[0] if config else None,
            "threads": config[1] if config else None,
            "reproduced": reproduced,
            "signatures": sorted(set(seen)),
            "error": error,
            "run_dir": next((c["run_dir"] for c in cells if c.get("run_dir")), ""),
            "duration_s": seconds,
        })  # fmt: skip
        return reproduced

    outcomes = [once("rate", None) for _ in range(runs)]
    completed = [o for o in outcomes if o is not None]
    reproduced = sum(1 for o in completed if o)
    scenario = mjob.scenario_object()
    original: Config | None = None
    smallest: dict[str, Any] | None = None
    if isinstance(scenario, IcacheScenario):
        original = (int(scenario.params["iterations"]), int(scenario.params["threads"]))
        least = (MIN_ITERATIONS, min_threads(scenario) if threaded(scenario) else original[1])
        if reproduced and attempts > 0:
            found = shrink(original, least, lambda config: bool(once("shrink", config)), attempts)
            config = found.smallest
            job = mjob.harness_job()
            changed = config != original
            selection = replace(
                mjob.selection(),
                iterations=config[0] if changed else None,
                threads=config[1] if changed else None,
            )
            smallest = {
                "iterations": config[0],
                "threads": config[1],
                "attempts": len(found.tried),
                "reproducer": reproducer(job, scenario.name, mutation, selection),
            }
    return {
        "job": "rerun",
        "matrix_job": mjob.id,
        "signature": signature.id,
        "signature_text": signature.text,
        "arch": mjob.arch,
        "cpu": mjob.cpu,
        "smp": mjob.smp,
        "suite": mjob.suite,
        "scenario": mjob.scenario,
        "mutation": mutation,
        "requested": runs,
        "runs": len(completed),
        "reproduced": reproduced,
        "errors": len(outcomes) - len(completed),
        "original": None if original is None else {"iterations": original[0], "threads": original[1]},
        "smallest": smallest,
        "attempts": log,
        "duration_s": round(sum(a["duration_s"] for a in log), 2),
    }


def rerun_failures(
    results_dir: Path,
    jobs: Sequence[MatrixJob],
    night: str,
    runs: int,
    attempts: int = DEFAULT_SHRINK_ATTEMPTS,
    runner: Runner = run_jobs,
    on_rerun: Callable[[dict[str, Any]], None] = lambda _r: None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Re-run (and shrink) each distinct failure of ``jobs``' finished attempts of ``night`` in
    ``results_dir`` whose ``rerun`` record is not there yet, one after the other; append each
    record as it is done and pass it to ``on_rerun``. Infrastructure failures are not re-run, and
    at most ``limit`` failures are (None: all; the first in the matrix's order). Returns the
    records written."""
    if runs < 1 or not has_results(results_dir):
        return []
    records, _ = read_results(results_dir)
    done = {r.get("signature") for r in records if r.get("job") == "rerun" and r.get("night") == night}
    finished, _, _ = load_cells([results_dir])
    by_id = {j.id: j for j in finished if j.night == night and j.finished is not None}
    written: list[dict[str, Any]] = []
    for mjob in jobs:
        job = by_id.get(mjob.id)
        if job is None:
            continue
        for cell in job.cells:
            sig = signature_of(cell)
            if sig is None or sig.kind == "infra" or sig.id in done:
                continue
            if limit is not None and len(written) >= limit:
                return written
            done.add(sig.id)
            record = {**rerun_failure(mjob, cell, sig, runs, attempts, runner), "night": night}
            append_result(results_dir, record)
            on_rerun(record)
            written.append(record)
    return written
