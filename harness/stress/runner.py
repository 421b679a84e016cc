"""Running the stress suites: guests in parallel, one result per cell of the detection matrix.

An icache job is one sanitized guest per architecture and CPU model that runs every selected
scenario's programs (each mutation's code in its own slot, so that violations are attributed by
PC); a kernel job is one sanitized guest per architecture, kernel scenario and mutation (the
workloads change kernel state, so they do not share a boot); a realjit job runs one real JIT's program in a
fresh sanitized guest per mutation (a cell each). Each scenario's results are appended to the
results folder as soon as that scenario finishes. What a cell's run means, its verdict, is
harness.stress.judging's to say.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from base.contract import StressResult, Violation
from base.errors import InfraError, JitprobeError
from base.profiles import load_profile
from harness.batch import run_batch
from harness.guest import CommandResult, Guest, kill_all
from harness.icache import JIT_BASE, JIT_STRIDE, MAX_INDEX, describe_violations, slot_of_pc
from harness.kernel_modules import build as build_module
from harness.runs import append_result, new_run_dir
from harness.sanitizer import kernel_violations_seen, plugin_spec, read_violations, save_kernel_symbols
from jit_core.errors import JitError

from .judging import PROGRAM_TIMEOUT_S, error_verdict, judge, judge_command, mark_known_false_positive
from .programs import REGION, build_program
from .scenarios import (
    STRESS_DIR,
    IcacheScenario,
    KernelScenario,
    LitmusScenario,
    RealjitScenario,
    Scenario,
    expected_rules,
    false_positive_rules,
    mutations_for,
    override_params,
    tolerated_rules,
)

__all__ = [
    "Job",
    "Selection",
    "applied",
    "default_workers",
    "plan",
    "reproducer",
    "run_jobs",
]


@dataclass(frozen=True)
class Selection:
    """What ``jitprobe run`` was asked for, as the reproducer repeats it."""

    mutation: str | None = None
    seed: int | None = None
    sanitize: bool = True
    iterations: int | None = None  # replaces each icache scenario's (None: its own)
    threads: int | None = None  # replaces each icache scenario's executor threads (None: its own)


@dataclass(frozen=True)
class Job:
    """One guest boot: an architecture and CPU model, and the scenarios it runs."""

    arch: str
    cpu: str
    suite: str
    scenarios: tuple[Scenario, ...]
    smp: int | None = None  # vCPUs (None: the profile's)

    @property
    def name(self) -> str:
        return f"{self.suite}-{self.arch}-{self.cpu}" + (
            f"-{self.scenarios[0].name}" if self.suite in ("kernel", "realjit") else ""
        )


def plan(
    suite_scenarios: Mapping[str, Sequence[Scenario]],
    arches: Sequence[str],
    cpu: str | None,
    smp: int | None = None,
) -> list[Job]:
    """The guest boots that run ``suite_scenarios`` on ``arches`` (on ``cpu`` only, when given:
    it must be a model of every architecture's profile; InputError otherwise), each with ``smp``
    vCPUs (None: the profile's)."""
    jobs: list[Job] = []
    for arch in arches:
        profile = load_profile(arch)
        if cpu is not None:
            profile.cpu_model(cpu)
        for suite, scenarios in suite_scenarios.items():
            if suite == "icache":
                for model in [cpu] if cpu else profile.stress_cpus:
                    chosen = tuple(
                        s
                        for s in scenarios
                        if isinstance(s, IcacheScenario) and model in s.cpus.get(arch, (model,))
                    )
                    if chosen:
                        jobs.append(Job(arch, model, suite, chosen, smp))
            elif suite == "realjit":  # each cell a fresh guest: one job per program and CPU model
                jobs += [
                    Job(arch, model, suite, (s,), smp)
                    for s in scenarios
                    if isinstance(s, RealjitScenario)
                    for model in ([cpu] if cpu else s.cpus.get(arch, profile.stress_cpus))
                    if model in s.cpus.get(arch, (model,))
                ]
            else:  # kernel workloads change the kernel, litmus runs need a plain guest: a boot each
                jobs += [
                    Job(arch, cpu or profile.default_cpu, suite, (s,), smp)
                    for s in scenarios
                    if isinstance(s, LitmusScenario) or (isinstance(s, KernelScenario) and arch in s.arches)
                ]
    return jobs


def applied(job: Job, selection: Selection) -> Job:
    """``job`` with the selection's iterations and threads in its icache scenarios' parameters
    (their expectations follow: no executor thread is a same-thread install). Raises InputError
    naming a value out of its range (harness.stress.scenarios.override_params)."""
    if selection.iterations is None and selection.threads is None:
        return job
    scenarios = tuple(
        override_params(s, selection.iterations, selection.threads) if isinstance(s, IcacheScenario) else s
        for s in job.scenarios
    )
    return replace(job, scenarios=scenarios)


def reproducer(job: Job, scenario: str, mutation: str, selection: Selection) -> str:
    """The command that runs this one cell again on the local machine (with ``--scenario-dir``
    when the scenario file is not the project's)."""
    words = [
        "jitprobe",
        "run",
        "--suite",
        job.suite,
        "--arch",
        job.arch,
        "--cpu",
        job.cpu,
        "--scenario",
        scenario,
        "--mutation",
        mutation,
    ]
    if job.smp is not None:
        words += ["--smp", str(job.smp)]
    if selection.seed is not None:
        words += ["--seed", str(selection.seed)]
    if not selection.sanitize:
        words.append("--no-sanitize")
    if selection.iterations is not None:
        words += ["--iterations", str(selection.iterations)]
    if selection.threads is not None:
        words += ["--threads", str(selection.threads)]
    folders = {s.path.resolve().parent.parent for s in job.scenarios if s.name == scenario}
    if folders and STRESS_DIR.resolve() not in folders:
        words += ["--scenario-dir", str(min(folders))]
    return shlex.join(words)


def _cell(job: Job, scenario: str, mutation: str, expected_set: set[str], selection: Selection,
          tolerated: set[str] | None = None) -> StressResult:
    return {
        "arch": job.arch, "cpu": job.cpu, "suite": job.suite, "scenario": scenario, "mutation": mutation,
        "expected": "caught" if expected_set else "clean", "observed": "clean", "caught_by": [],
        "verdict": "infra", "violations": [], "histogram": None,
        "reproducer": reproducer(job, scenario, mutation, selection),
        "expected_rules": sorted(expected_set), "tolerated_rules": sorted(tolerated or ()),
        "observed_rules": [], "exit_code": None, "detail": "", "run_dir": "", "forbidden": [],
    }  # fmt: skip


def _guest(job: Job, run_dir: Path, sanitize: bool) -> Guest:
    profile = load_profile(job.arch)
    smp = job.smp or profile.smp
    if smp < 2:
        raise InfraError(f"{job.arch} with {smp} vCPU: the stress suites need 2")
    spec = plugin_spec(job.arch, job.cpu, run_dir) if sanitize else None
    return Guest(profile, run_dir=run_dir, cpu=job.cpu, smp=job.smp, plugin=spec)


Record = Callable[[StressResult], None]


def _run_icache(job: Job, selection: Selection, run_dir: Path, record: Record) -> None:
    job = applied(job, selection)
    slots: list[tuple[IcacheScenario, str]] = []
    for scenario in job.scenarios:
        assert isinstance(scenario, IcacheScenario)
        slots += [(scenario, m) for m in mutations_for(scenario, job.arch) if selection.mutation in (None, m)]
    if len(slots) > MAX_INDEX:
        raise InfraError(f"{len(slots)} programs for one guest; the slots hold {MAX_INDEX}")
    names = [f"{s.name}-{m}" for s, m in slots]
    programs = {
        name: build_program(s, job.arch, m, index, selection.seed)
        for index, (name, (s, m)) in enumerate(zip(names, slots, strict=True))
    }
    pending = {
        name: _cell(job, s.name, m, expected_rules(s, job.arch, job.cpu, m), selection,
                    tolerated_rules(s, job.arch, job.cpu, m))
        for name, (s, m) in zip(names, slots, strict=True)
    }
    for cell in pending.values():
        cell["run_dir"] = str(run_dir)

    def owner(v: Violation) -> str | None:
        return slot_of_pc(v["pc"], JIT_BASE, JIT_STRIDE, names, REGION)

    try:
        with _guest(job, run_dir, selection.sanitize) as guest:
            for scenario in job.scenarios:
                mine = {n: programs[n] for n, (s, _) in zip(names, slots, strict=True) if s is scenario}
                runs = run_batch(guest, mine, each_timeout_s=PROGRAM_TIMEOUT_S)
                # The programs' own code has no symbols: the kernel's are read only for strays.
                violations = read_violations(run_dir, job.arch) if selection.sanitize else []
                for name in mine:
                    run = runs.get(name)
                    judge(
                        pending[name],
                        run.exit_code if run else None,
                        [v for v in violations if owner(v) == name],
                        selection.sanitize,
                    )
                    record(pending.pop(name))
            stray = [v for v in (read_violations(run_dir, job.arch) if selection.sanitize else [])
                     if owner(v) is None]  # fmt: skip
            if stray:
                kallsyms = save_kernel_symbols(guest) if kernel_violations_seen(run_dir) else None
                named = read_violations(run_dir, job.arch, system_map=kallsyms)
                stray = [v for v in named if owner(v) is None]
                cell = _cell(job, "guest", "none", set(), selection)
                cell["run_dir"] = str(run_dir)
                judge(cell, 0, stray, True)
                cell["detail"] = "violations outside every program's code: " + describe_violations(
                    stray, 3, "; "
                )
                record(cell)
    except JitprobeError as exc:
        for cell in pending.values():
            error_verdict(cell, exc)
            record(cell)


def _sanitized_run(
    job: Job, run_dir: Path, sanitize: bool, timeout_s: float, program: Path | None = None,
    command: str = "", module: Path | None = None,
) -> tuple[CommandResult, list[Violation]]:
    """Run ``program`` (copied in) or ``command`` (with ``module`` copied in and its guest path in
    $MODULE) in a fresh guest of ``job`` and return its result and the sanitizer's violations
    (user PCs named from ``program``'s symbols, kernel PCs from the guest's kallsyms when any was
    reported). Raises JitprobeError when the guest cannot run it."""
    with _guest(job, run_dir, sanitize) as guest:
        if program is not None:
            command = shlex.join([guest.copy(program, program.name)])
        if module is not None:
            command = f"MODULE={shlex.quote(guest.copy(module, module.name, 0o644))}\n{command}"
        result = guest.run(command, timeout=timeout_s)
        finished = result.exit_code is not None
        kallsyms = (save_kernel_symbols(guest) if sanitize and finished
                    and kernel_violations_seen(run_dir) else None)  # fmt: skip
    binaries = [program] if program is not None else []
    violations = read_violations(run_dir, job.arch, binaries, kallsyms) if sanitize else []
    return result, violations


def _run_kernel(job: Job, selection: Selection, run_dir: Path, record: Record) -> None:
    """The scenario's command (with its module built for the guest's kernel, when it names one),
    and again under each of its mutations, each in its own fresh guest; the command reads the
    mutation's name from $MUTATION (none: the correct code)."""
    (scenario,) = job.scenarios
    assert isinstance(scenario, KernelScenario)
    mutations = [m for m in mutations_for(scenario, job.arch) if selection.mutation in (None, m)]
    for n, mutation in enumerate(mutations):
        cell_dir = run_dir if n == 0 else new_run_dir("run", f"{job.arch}-{job.cpu}")
        cell = _cell(job, scenario.name, mutation, expected_rules(scenario, job.arch, job.cpu, mutation),
                     selection)  # fmt: skip
        cell["run_dir"] = str(cell_dir)
        try:
            module = build_module(scenario.module, job.arch) if scenario.module else None
            result, violations = _sanitized_run(job, cell_dir, selection.sanitize, scenario.timeout_s,
                                                command=f"MUTATION={mutation}\n{scenario.command}",
                                                module=module)  # fmt: skip
        except JitprobeError as exc:
            error_verdict(cell, exc)
            record(cell)
            continue
        stdout = judge_command(cell, result, violations, selection.sanitize)
        missing = [p for p in scenario.expect_stdout if not re.search(p, stdout, re.MULTILINE)]
        if missing and cell["verdict"] == "pass":
            cell["verdict"] = "fail"
            cell["detail"] = f"stdout does not match {missing[0]!r}: {stdout[-300:]!r}"
        if cell["verdict"] == "pass":
            matched = f"stdout matched {len(scenario.expect_stdout)} patterns in {result.wall_s:.0f} s"
            cell["detail"] = f"{cell['detail']}; {matched}" if violations else f"no violations; {matched}"
        record(cell)


def _run_realjit(job: Job, selection: Selection, run_dir: Path, record: Record) -> None:
    """The scenario's program (harness.realjit), correct and with each mutation, each in its own
    fresh guest; the program exits 0 and prints its ``ok`` line when every JIT result was right."""
    from harness.realjit import OK_MARKER, build  # reads its programs.yaml: imported where needed

    (scenario,) = job.scenarios
    assert isinstance(scenario, RealjitScenario)
    known, why = false_positive_rules(scenario, job.arch, job.cpu)
    mutations = [m for m in mutations_for(scenario, job.arch) if selection.mutation in (None, m)]
    for n, mutation in enumerate(mutations):
        cell_dir = run_dir if n == 0 else new_run_dir("run", f"{job.arch}-{job.cpu}")
        cell = _cell(job, scenario.name, mutation, expected_rules(scenario, job.arch, job.cpu, mutation),
                     selection, tolerated_rules(scenario, job.arch, job.cpu, mutation))  # fmt: skip
        cell["run_dir"] = str(cell_dir)
        try:
            program = build(scenario.program, job.arch, None if mutation == "none" else mutation)
            result, violations = _sanitized_run(job, cell_dir, selection.sanitize, scenario.timeout_s,
                                                program)  # fmt: skip
        except JitprobeError as exc:
            error_verdict(cell, exc)
            record(cell)
            continue
        stdout = judge_command(cell, result, violations, selection.sanitize)
        if result.exit_code == 0 and OK_MARKER not in stdout and cell["verdict"] == "pass":
            cell["verdict"] = "fail"
            cell["detail"] = f"exit 0 without the program's {OK_MARKER.strip()!r} line: {stdout[-300:]!r}"
        mark_known_false_positive(cell, known, why)
        if cell["verdict"] == "pass":
            last = stdout.strip().splitlines()[-1] if stdout.strip() else "no output"
            cell["detail"] += f"; {last} ({result.wall_s:.0f} s)"
        record(cell)


def _run_litmus(job: Job, selection: Selection, run_dir: Path, record: Record) -> None:
    """Each test of the scenario, under none and each of its ordering mutations that changes this
    architecture's code: jit_core's code checked against the architecture's memory model (the
    verdict). The correct code is also run natively in one guest (what this host can show; the
    outcomes it never produced are listed as not exercised); mutated code is not, since this
    host's TCG cannot show what the mutations break."""
    # litmus sits above harness (its guest runs use Guest): imported here, where it is needed.
    from litmus.errors import LitmusError
    from litmus.guest_runs import run_in_guest
    from litmus.jit import JitVerdict, SourceCache, check_jit
    from litmus.native import RunVerdict

    (scenario,) = job.scenarios
    assert isinstance(scenario, LitmusScenario)
    cache = SourceCache()
    mutations = [m for m in mutations_for(scenario, job.arch) if selection.mutation in (None, m)]
    cells = {}
    for mutation in mutations:
        for test in scenario.tests:
            cell = _cell(job, test.stem, mutation, set(), selection)
            cell["expected"] = scenario.expected(test, job.arch, mutation)
            cell["reproducer"] = shlex.join(
                ["jitprobe", "litmus", "run", str(test), "--arch", job.arch] if mutation == "none"
                else ["jitprobe", "litmus", "jit", str(test), "--arch", job.arch, "--mutation", mutation]
            )
            cell["run_dir"] = str(run_dir)
            cells[test, mutation] = cell
    try:
        models = {key: check_jit(key[0], job.arch, key[1], cache) for key in cells}
        natives = (
            dict(zip(scenario.tests, run_in_guest(list(scenario.tests), job.arch, scenario.iterations, cache,
                                                  run_dir), strict=True))
            if "none" in mutations else {}
        )  # fmt: skip
    except (LitmusError, JitError) as exc:
        raise InfraError(f"{scenario.path}: a test cannot be checked: {exc}") from exc
    except JitprobeError as exc:
        for cell in cells.values():
            error_verdict(cell, exc)
            record(cell)
        return
    for (test, mutation), cell in cells.items():
        model, native = models[test, mutation], natives.get(test) if mutation == "none" else None
        caught_by = (["model"] if model.verdict is JitVerdict.FAIL else []) + (
            ["run"] if native is not None and native.verdict is RunVerdict.FAIL else [])
        cell["caught_by"], cell["observed"] = caught_by, "caught" if caught_by else "clean"
        cell["exit_code"] = 0
        cell["verdict"] = "pass" if cell["observed"] == cell["expected"] else "fail"
        cell["detail"] = (
            f"model: jit_core's code allows {len(model.compiled.states)} final states"
            + (f", {len(model.extra_states)} the BPF model forbids: {', '.join(model.extra_states)}"
               if model.extra_states else ", none the BPF model forbids")
        )  # fmt: skip
        if native is not None:
            cell["histogram"], cell["forbidden"] = native.histogram, list(native.forbidden_observed)
            seen, unseen = native.forbidden_observed, native.not_exercised
            cell["detail"] += (
                f"; run: {native.iterations} iterations, {len(native.histogram)} states seen"
                + (f", forbidden seen: {', '.join(seen)}" if seen else "")
                + (f"; not exercised on this host: {', '.join(unseen)}" if unseen else "")
            )  # fmt: skip
        record(cell)


_SUITE_RUNS: dict[str, Callable[[Job, Selection, Path, Record], None]] = {
    "icache": _run_icache, "kernel": _run_kernel, "litmus": _run_litmus, "realjit": _run_realjit,
}


def default_workers(jobs: Sequence[Job]) -> int:
    """Guests at once when the user names no number: as many as the host's cores hold with every
    vCPU on a core of its own (at least one). A guest's threads hand code to each other by
    spinning, so a vCPU waiting for a descheduled sibling burns its core: two 2-vCPU guests on
    two cores ran a job 0.89x as fast as one at a time (bench/matrix.py)."""
    vcpus = max((job.smp or load_profile(job.arch).smp for job in jobs), default=1)
    return max(1, (os.cpu_count() or 1) // vcpus)


def run_jobs(
    jobs: Sequence[Job],
    selection: Selection,
    results_dir: Path | None,
    on_result: Callable[[StressResult], None] = lambda _: None,
    workers: int | None = None,
) -> list[StressResult]:
    """Run ``jobs`` with up to ``workers`` guests at once (default: default_workers) and return
    every cell's result. Each is appended to ``results_dir`` (when given) and passed to
    ``on_result`` as soon as its scenario ends. Raises InfraError if a result cannot be written."""
    results: list[StressResult] = []
    lock = threading.Lock()
    stopping = threading.Event()

    def record(cell: StressResult) -> None:
        with lock:
            if stopping.is_set():  # interrupted: what the killed guests left unfinished is not a result
                return
            results.append(cell)
            if results_dir is not None:
                append_result(results_dir, {"job": "run", **cell})
            on_result(cell)

    def one(job: Job) -> None:
        run_dir = new_run_dir("run", f"{job.arch}-{job.cpu}")
        try:
            _SUITE_RUNS[job.suite](job, selection, run_dir, record)
        except JitError as exc:  # the generators are the project's own: a refusal is its fault
            raise InfraError(f"jit_core refused a stress program of {job.name}: {exc}") from exc

    pool = ThreadPoolExecutor(max_workers=workers or default_workers(jobs))
    try:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()
    except BaseException:  # Ctrl-C, SIGTERM (SystemExit) or a failed job: stop every guest now
        stopping.set()
        kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results
