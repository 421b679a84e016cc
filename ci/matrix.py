"""The nightly matrix: ci/matrix.yaml's axes expanded into jobs, sharded, run and recorded.

A job is one guest boot: an architecture, CPU model, vCPU count, suite, scenario, sanitizer
setting and seed; it runs every mutation of its scenario (harness.stress.runner.run_jobs over one
Job, in its own run folder). Its id is a hash of those axes, so it names the same job on any
machine and any night, wherever it sits in the list.

Each worker (one guest at a time) appends to its own results file in DIR,
``results.<run>-w<n>.jsonl`` (harness.runs.append_result; ``<run>`` is new for every
``run_matrix``, so a resumed run or another shard in the same folder never shares a file either):
a ``matrix-start`` record, one ``run`` record per cell as the cell ends, and a
``matrix-finished`` record last; all three carry the job id and an attempt id. Readers take every
results file of DIR (harness.runs.read_results). The history database is written by the thread
that called run_matrix alone, as each job ends. A job without a finished record was cut off:
``--resume`` runs it again (a new attempt) and the report keeps only the attempt that finished.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from hashlib import sha256
from pathlib import Path
from typing import Any

import yaml

from base.contract import StressResult
from base.errors import EXIT_USAGE, JitprobeError
from base.profiles import Field, MapOf, ProfileError, available_arches, load_profile, validate
from harness.guest import MAX_SMP, kill_all
from harness.runs import append_result, has_results, read_results
from harness.stress.runner import Job, Selection, run_jobs
from harness.stress.scenarios import (
    STRESS_DIR,
    SUITES,
    IcacheScenario,
    KernelScenario,
    RealjitScenario,
    Scenario,
    load_suite,
    mutations_for,
)

__all__ = [
    "AXES",
    "MATRIX_FILE",
    "MATRIX_SCHEMA",
    "Matrix",
    "MatrixError",
    "MatrixJob",
    "estimate_s",
    "finished_jobs",
    "guest_facts",
    "jitprobe_commit",
    "job_verdict",
    "load_matrix",
    "parse_matrix",
    "parse_shard",
    "run_matrix",
    "shard",
]

ROOT = Path(__file__).resolve().parent.parent
MATRIX_FILE = Path(__file__).resolve().parent / "matrix.yaml"
AXES = ("arch", "cpu", "smp", "suite", "scenario", "sanitize", "seed")

MATRIX_SCHEMA: dict[str, Field] = {
    "axes": Field(
        {
            "arch": Field(list, "architectures (profile names) or all"),
            "cpu": Field(
                MapOf(list),
                "per architecture: CPU models (default: the profile's stress_models)",
                required=False,
            ),
            "smp": Field(object, "vCPU counts (integers, at least 2)", required=False),
            "suite": Field(list, "stress suites"),
            "scenario": Field(list, "scenario names, or all"),
            "sanitize": Field(object, "sanitizer settings (true, false)", required=False),
            "seed": Field(object, "seeds replacing the scenarios' own (integers, or null)", required=False),
        },
        "the axes whose combinations are the jobs",
    ),
    "exclude": Field(object, "jobs left out: a list of mappings of axis names to values", required=False),
}


class MatrixError(JitprobeError):
    """The matrix file is unreadable or invalid (exit 2); the message names file, field and choices."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class MatrixJob:
    """One job of the matrix: one guest boot running one scenario's cells."""

    arch: str
    cpu: str
    smp: int
    suite: str
    scenario: str
    sanitize: bool
    seed: int | None
    # where the scenario files are (not an axis: the same job wherever its file lies)
    scenario_dir: Path = field(default=STRESS_DIR, compare=False, repr=False)

    def axes(self) -> dict[str, Any]:
        return {axis: getattr(self, axis) for axis in AXES}

    @property
    def id(self) -> str:
        """12 hex digits of the sha256 of the axes (canonical JSON): stable across machines and lists."""
        text = json.dumps(self.axes(), sort_keys=True, separators=(",", ":"))
        return sha256(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        extra = ("" if self.seed is None else f" seed {self.seed}") + (
            "" if self.sanitize else " unsanitized"
        )
        return f"{self.suite}/{self.scenario} {self.arch} {self.cpu} smp{self.smp}{extra}"

    def scenario_object(self) -> Scenario:
        (found,) = [s for s in load_suite(self.suite, self.scenario_dir) if s.name == self.scenario]
        return found

    def harness_job(self) -> Job:
        return Job(self.arch, self.cpu, self.suite, (self.scenario_object(),), self.smp)

    def selection(self) -> Selection:
        return Selection(mutation=None, seed=self.seed, sanitize=self.sanitize)


@dataclass(frozen=True)
class Matrix:
    """A validated matrix file: its jobs in expansion order."""

    path: Path
    jobs: tuple[MatrixJob, ...]


def _error(source: str, field: str, message: str) -> MatrixError:
    return MatrixError(f"{source}: field '{field}': {message}")


def _values(
    data: Mapping[str, Any],
    key: str,
    default: list[Any],
    check: Callable[[Any], bool],
    expected: str,
    source: str,
) -> list[Any]:
    value = data.get(key, default)
    if not isinstance(value, list) or not value or not all(check(v) for v in value):
        raise _error(source, f"axes.{key}", f"expected a non-empty list of {expected}, got {value!r}")
    return value


def _choose(source: str, field: str, given: Sequence[str], choices: Sequence[str]) -> list[str]:
    if "all" in given:
        return list(choices)
    for value in given:
        if value not in choices:
            raise _error(source, field, f"unknown value {value!r}; expected one of all, {', '.join(choices)}")
    return list(dict.fromkeys(given))


def _runs_on(scenario: Scenario, arch: str, cpu: str) -> bool:
    if isinstance(scenario, IcacheScenario):
        return cpu in scenario.cpus.get(arch, (cpu,))
    if isinstance(scenario, KernelScenario):
        return arch in scenario.arches
    if isinstance(scenario, RealjitScenario):
        return cpu in scenario.cpus.get(arch, (cpu,))
    return True


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_matrix(data: Any, path: Path, scenario_dir: Path = STRESS_DIR) -> Matrix:
    """Validate a loaded matrix document and expand its jobs (scenario files from
    ``scenario_dir``/<suite>/). Raises MatrixError naming the file, the field and the valid
    choices."""
    source = str(path)
    try:
        validate(data, MATRIX_SCHEMA, source)
    except ProfileError as exc:  # the profiles' checker: the same messages, as an input error
        raise MatrixError(str(exc)) from None
    axes = data["axes"]
    arches = _choose(source, "axes.arch", axes["arch"], available_arches())
    suites = _choose(source, "axes.suite", axes["suite"], SUITES)
    smps = _values(
        axes, "smp", [2], lambda v: _is_int(v) and 2 <= v <= MAX_SMP, f"integers from 2 to {MAX_SMP}", source
    )
    sanitizes = _values(axes, "sanitize", [True], lambda v: isinstance(v, bool), "true or false", source)
    seeds = _values(axes, "seed", [None], lambda v: v is None or _is_int(v), "integers or null", source)
    scenarios = {suite: load_suite(suite, scenario_dir) for suite in suites}
    known = sorted({s.name for found in scenarios.values() for s in found})
    names = _choose(source, "axes.scenario", axes["scenario"], known)
    cpus: dict[str, list[str]] = {}
    for arch, models in (axes.get("cpu") or {}).items():
        if arch not in available_arches():
            raise _error(
                source,
                "axes.cpu",
                f"unknown architecture {arch!r}; expected one of " + ", ".join(available_arches()),
            )
        cpus[arch] = _choose(source, f"axes.cpu.{arch}", models, sorted(load_profile(arch).cpus))
    exclusions = _exclusions(data.get("exclude", []), source)
    jobs: list[MatrixJob] = []
    for arch in arches:
        for cpu in cpus.get(arch) or load_profile(arch).stress_cpus:
            for smp in smps:
                for suite in suites:
                    for scenario in scenarios[suite]:
                        if scenario.name not in names or not _runs_on(scenario, arch, cpu):
                            continue
                        for sanitize in sanitizes:
                            for seed in seeds:
                                job = MatrixJob(arch, cpu, smp, suite, scenario.name, sanitize, seed,
                                                scenario_dir)
                                if not any(_matches(job, rule) for rule in exclusions):
                                    jobs.append(job)
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids):
        raise MatrixError(f"{source}: two jobs have the same axes (a value listed twice?)")
    return Matrix(path, tuple(jobs))


def _exclusions(value: Any, source: str) -> list[dict[str, list[Any]]]:
    if not isinstance(value, list):
        raise _error(source, "exclude", f"expected a list of mappings, got {value!r}")
    rules = []
    for n, entry in enumerate(value):
        if not isinstance(entry, dict) or not entry:
            raise _error(
                source, f"exclude[{n}]", f"expected a mapping of axis names to values, got {entry!r}"
            )
        for key in entry:
            if key not in AXES:
                raise _error(
                    source, f"exclude[{n}].{key}", f"unknown axis; expected one of {', '.join(AXES)}"
                )
        rules.append({k: v if isinstance(v, list) else [v] for k, v in entry.items()})
    return rules


def _matches(job: MatrixJob, rule: Mapping[str, list[Any]]) -> bool:
    return all(getattr(job, axis) in values for axis, values in rule.items())


def load_matrix(path: Path = MATRIX_FILE, scenario_dir: Path = STRESS_DIR) -> Matrix:
    """Read, validate and expand a matrix file (scenarios from ``scenario_dir``). Raises MatrixError."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MatrixError(f"{path}: cannot read the matrix: {exc}") from exc
    return parse_matrix(data, path, scenario_dir)


# -- sharding ---------------------------------------------------------------------------------

_BOOT_S = 10.0  # a sanitized boot to readiness on this kind of host, before the profile's slowdown
_CELL_S = 1.0  # one stress program under the sanitizer
_REALJIT_S = 60.0  # one real JIT's program under the sanitizer (README: --suite realjit)


def estimate_s(job: MatrixJob) -> float:
    """A job's expected duration when history has none: a boot plus a second per cell, times the
    profile's slowdown."""
    scenario = job.scenario_object()
    if isinstance(scenario, KernelScenario):
        work = (_BOOT_S + scenario.timeout_s / 2) * len(mutations_for(scenario, job.arch)) - _BOOT_S
    elif isinstance(scenario, IcacheScenario):
        work = _CELL_S * len(mutations_for(scenario, job.arch))
    elif isinstance(scenario, RealjitScenario):  # a fresh guest per mutation
        work = (_BOOT_S + _REALJIT_S) * len(mutations_for(scenario, job.arch)) - _BOOT_S
    else:
        work = _CELL_S * len(scenario.tests)
    return (_BOOT_S + work) * load_profile(job.arch).slowdown


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1 <= I <= N) as (I, N). Raises MatrixError."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise MatrixError(f"invalid --shard: {text!r} (expected I/N with 1 <= I <= N, e.g. 2/4)")
    return int(match[1]), int(match[2])


def shard(
    jobs: Sequence[MatrixJob], index: int, count: int, durations: Mapping[str, float]
) -> list[MatrixJob]:
    """The jobs of shard ``index`` of ``count`` (1-based), balanced by duration: longest first,
    each to the shard with the least time so far (ties: lower shard), durations from ``durations``
    by job id or else estimate_s. Deterministic: the same jobs and durations give the same shards
    on any machine. Returned in the matrix's order."""
    cost = {job.id: durations.get(job.id) or estimate_s(job) for job in jobs}
    loads = [0.0] * count
    owner: dict[str, int] = {}
    for job in sorted(jobs, key=lambda j: (-round(cost[j.id], 3), j.id)):
        target = min(range(count), key=lambda k: (round(loads[k], 3), k))
        owner[job.id] = target
        loads[target] += cost[job.id]
    return [job for job in jobs if owner[job.id] == index - 1]


# -- running ----------------------------------------------------------------------------------

_VERDICT_ORDER = ("infra", "crash", "timeout", "fail", "pass")


def job_verdict(cells: Iterable[Mapping[str, Any]]) -> str:
    """The worst verdict of ``cells`` (a cell not exercised counts as passing; none at all: infra)."""
    verdicts = [c.get("verdict") or "pass" for c in cells]
    if not verdicts:
        return "infra"
    return min(verdicts, key=lambda v: _VERDICT_ORDER.index(v) if v in _VERDICT_ORDER else 0)


@cache
def jitprobe_commit() -> str:
    """``git rev-parse HEAD`` of the checkout jitprobe runs from, with ``-dirty`` when files differ
    ("unknown" outside a git checkout)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


@cache
def _qemu_version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\S+)", out)
    return match[1] if match else None


def guest_facts(run_dir: Path) -> dict[str, str | None]:
    """QEMU version, kernel version and image id of the guest booted in ``run_dir``, from its
    qemu-argv.txt (one argument a line); None for what cannot be found."""
    facts: dict[str, str | None] = {"qemu_version": None, "kernel": None, "image": None}
    try:
        argv = (run_dir / "qemu-argv.txt").read_text().splitlines()
    except OSError:
        return facts
    if argv:
        facts["qemu_version"] = _qemu_version(argv[0])
    if "-kernel" in argv[:-1]:
        kernel = Path(argv[argv.index("-kernel") + 1])
        facts["kernel"] = kernel.name.removeprefix("vmlinuz-")
        if kernel.parent.name == "boot":
            facts["image"] = kernel.parent.parent.name
    return facts


def finished_jobs(results_dir: Path) -> set[str]:
    """Ids of the jobs with a ``matrix-finished`` record in any results file of ``results_dir``
    (torn lines skipped)."""
    if not has_results(results_dir):
        return set()
    records, _ = read_results(results_dir)
    return {r["matrix_job"] for r in records if r.get("job") == "matrix-finished" and "matrix_job" in r}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


Runner = Callable[[Sequence[Job], Selection, "Path | None", Callable[[StressResult], None], int], object]


def run_matrix(
    jobs: Sequence[MatrixJob],
    results_dir: Path,
    *,
    night: str,
    workers: int = 1,
    resume: bool = False,
    on_finished: Callable[[dict[str, Any], list[dict[str, Any]]], None] = lambda _r, _c: None,
    runner: Runner = run_jobs,
) -> list[dict[str, Any]]:
    """Run ``jobs`` with up to ``workers`` guests at once, each worker appending its records to
    its own results file in ``results_dir``; with ``resume``, jobs already finished there are
    skipped. ``on_finished`` gets each job's finished record and cells in this thread, as each
    job ends (the history is written there: by one thread, whatever the workers). Returns the
    finished records of the jobs run, in the order they ended. When interrupted (or a job raises),
    no job starts any more, the running guests are killed and nothing more is written: the jobs
    cut off have no finished record. Raises InfraError when a record cannot be written."""
    done = finished_jobs(results_dir) if resume else set()
    todo = [job for job in jobs if job.id not in done]
    finished: list[dict[str, Any]] = []
    run_id = uuid.uuid4().hex[:8]
    numbers = itertools.count(1)
    worker = threading.local()
    stopping = threading.Event()

    def name_worker() -> None:
        worker.writer = f"{run_id}-w{next(numbers)}"

    def one(job: MatrixJob) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        attempt = uuid.uuid4().hex[:12]
        base = {"matrix_job": job.id, "attempt": attempt, "night": night}
        started, clock = _now(), time.monotonic()
        writer = worker.writer  # the runner calls record() from threads of its own

        def write(record: dict[str, Any]) -> None:
            if stopping.is_set():  # interrupted: the jobs the kill cut off stay cut off, for --resume
                return
            append_result(results_dir, record, writer=writer)

        write({"job": "matrix-start", **base, "axes": job.axes(), "started": started})
        cells: list[dict[str, Any]] = []

        def record(cell: StressResult) -> None:
            entry = {"job": "run", **base, **cell}
            write(entry)
            cells.append(entry)

        error = ""
        try:
            runner([job.harness_job()], job.selection(), None, record, 1)
        except JitprobeError as exc:
            error = str(exc)
        run_dirs = sorted({c["run_dir"] for c in cells if c.get("run_dir")})
        end = {
            "job": "matrix-finished",
            **base,
            "axes": job.axes(),
            "started": started,
            "finished": _now(),
            "duration_s": round(time.monotonic() - clock, 2),
            "cells": len(cells),
            "verdict": "infra" if error else job_verdict(cells),
            "error": error,
            "commit": jitprobe_commit(),
            "run_dirs": run_dirs,
            **(guest_facts(Path(run_dirs[0])) if run_dirs else guest_facts(Path("/nonexistent"))),
        }
        write(end)
        return end, cells

    pool = ThreadPoolExecutor(max_workers=max(1, workers), initializer=name_worker)
    try:
        for future in as_completed([pool.submit(one, job) for job in todo]):
            end, cells = future.result()
            on_finished(end, cells)
            finished.append(end)
    except BaseException:  # Ctrl-C, SIGTERM (SystemExit) or a failed job: no further job, no guest left
        stopping.set()
        kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return finished
