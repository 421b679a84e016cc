"""The nightly matrix: its file's schema, stable job ids, shards, resuming after a kill, the
history database and the GitHub Actions workflow."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers_matrix import cell, fake_runner, matrix_text, read_lines, write_matrix

from base.profiles import available_arches, load_profile
from ci.history import History
from ci.matrix import (
    MATRIX_FILE,
    MatrixError,
    MatrixJob,
    estimate_s,
    finished_jobs,
    load_matrix,
    parse_shard,
    run_matrix,
    shard,
)
from ci.report import build_report, load_cells
from ci.signature import signature_of
from harness.runs import RESULTS_FILE, append_result, results_files
from harness.stress.scenarios import IcacheScenario, RealjitScenario, load_suite

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


# -- the matrix file ---------------------------------------------------------------------------


def test_the_project_matrix_expands_to_every_stress_model_and_scenario() -> None:
    """The nightly runs the icache and realjit suites: every scenario of each on every stress
    model it names (all, when it names none)."""
    matrix = load_matrix(MATRIX_FILE)
    scenarios = [s for s in (*load_suite("icache"), *load_suite("realjit"))
                 if isinstance(s, IcacheScenario | RealjitScenario)]  # fmt: skip
    expected = {
        (arch, cpu, s.name)
        for arch in available_arches()
        for cpu in load_profile(arch).stress_cpus
        for s in scenarios
        if cpu in s.cpus.get(arch, (cpu,))
    }
    assert {(j.arch, j.cpu, j.scenario) for j in matrix.jobs} == expected
    assert len(matrix.jobs) == len(expected)
    assert {j.suite for j in matrix.jobs} == {"icache", "realjit"}
    assert {j.arch for j in matrix.jobs if j.suite == "realjit"} == set(available_arches())
    assert all(j.smp == 2 and j.sanitize and j.seed is None for j in matrix.jobs)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (matrix_text(arch="[sparc]"), ["field 'axes.arch'", "'sparc'", "arm64", "riscv64", "x86_64"]),
        (matrix_text(scenario="[nope]"), ["field 'axes.scenario'", "'nope'", "rewrite_in_place"]),
        (
            matrix_text(scenario="[nope]").replace("suite: [icache]", "suite: [icache, realjit]"),
            ["field 'axes.scenario'", "'nope'", "pcre2_jit", "rewrite_in_place"],
        ),
        (matrix_text().replace("smp: [2]", "smp: [1]"), ["field 'axes.smp'", "integers from 2"]),
        (
            matrix_text().replace("sanitize: [true]", "sanitize: [maybe]"),
            ["field 'axes.sanitize'", "true or false"],
        ),
        (matrix_text().replace("suite: [icache]", "suite: [gpu]"), ["field 'axes.suite'", "'gpu'", "icache"]),
        (matrix_text(extra="  colour: [red]\n").replace("exclude", "exclude"), ["unknown field"]),
        (matrix_text() + "flavour: x\n", ["unknown field 'flavour'", "expected one of: axes, exclude"]),
        (matrix_text(exclude="[{planet: mars}]"), ["field 'exclude[0].planet'", "unknown axis", "scenario"]),
        (
            matrix_text(extra="  cpu: {arm64: [cortex-z9]}\n"),
            ["field 'axes.cpu.arm64'", "'cortex-z9'", "neoverse-n1"],
        ),
        ("axes: 3\n", ["field 'axes'", "expected a mapping"]),
    ],
)
def test_schema_errors_name_the_file_the_field_and_the_choices(
    tmp_path: Path, text: str, pieces: list[str]
) -> None:
    path = write_matrix(tmp_path, text)
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    message = str(info.value)
    assert str(path) in message
    for piece in pieces:
        assert piece in message, message
    assert info.value.exit_code == 2


def test_a_colour_axis_is_refused_with_the_valid_axes(tmp_path: Path) -> None:
    text = matrix_text().replace("  smp: [2]\n", "  smp: [2]\n  colour: [red]\n")
    with pytest.raises(MatrixError, match=r"unknown field 'axes.colour'; expected one of: arch, cpu, smp"):
        load_matrix(write_matrix(tmp_path, text))


def test_exclusions_and_cpu_choices(tmp_path: Path) -> None:
    text = matrix_text(
        arch="[arm64]",
        extra="  cpu: {arm64: [cortex-a57, neoverse-v1]}\n",
        exclude="[{cpu: neoverse-v1, scenario: [cross_modify, dual_mapping]}]",
    )
    jobs = load_matrix(write_matrix(tmp_path, text)).jobs
    assert {j.cpu for j in jobs} == {"cortex-a57", "neoverse-v1"}
    v1 = {j.scenario for j in jobs if j.cpu == "neoverse-v1"}
    assert v1 and not v1 & {"cross_modify", "dual_mapping"}
    assert {"cross_modify", "dual_mapping"} <= {j.scenario for j in jobs if j.cpu == "cortex-a57"}


def test_job_ids_are_hashes_of_the_axes_not_positions(tmp_path: Path) -> None:
    forward = load_matrix(write_matrix(tmp_path, matrix_text(arch="[arm64, riscv64, x86_64]"))).jobs
    backward = load_matrix(write_matrix(tmp_path, matrix_text(arch="[x86_64, riscv64, arm64]"))).jobs
    assert [j.arch for j in forward] != [j.arch for j in backward]
    assert {j.id: j for j in forward} == {j.id: j for j in backward}
    assert len({j.id for j in forward}) == len(forward)
    job = MatrixJob("x86_64", "max", 2, "icache", "rewrite_in_place", True, None)
    canonical = json.dumps(
        {
            "arch": "x86_64",
            "cpu": "max",
            "sanitize": True,
            "scenario": "rewrite_in_place",
            "seed": None,
            "smp": 2,
            "suite": "icache",
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert job.id == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    same = subprocess.run(
        [
            PY,
            "-c",
            "from ci.matrix import MatrixJob; "
            "print(MatrixJob('x86_64', 'max', 2, 'icache', 'rewrite_in_place', True, None).id)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert same == job.id
    assert MatrixJob("x86_64", "max", 2, "icache", "rewrite_in_place", True, 5).id != job.id
    assert MatrixJob("x86_64", "max", 3, "icache", "rewrite_in_place", True, None).id != job.id


# -- shards ------------------------------------------------------------------------------------


def test_shards_partition_the_jobs_and_balance_them() -> None:
    jobs = list(load_matrix(MATRIX_FILE).jobs)
    for count in (1, 2, 3, 4, 7):
        parts = [shard(jobs, k, count, {}) for k in range(1, count + 1)]
        ids = [j.id for part in parts for j in part]
        assert sorted(ids) == sorted(j.id for j in jobs)  # every job in exactly one shard
        loads = [sum(estimate_s(j) for j in part) for part in parts]
        assert max(loads) - min(loads) <= max(estimate_s(j) for j in jobs) + 1e-6


def test_measured_durations_steer_the_shards() -> None:
    jobs = list(load_matrix(MATRIX_FILE).jobs)[:6]
    slow = {jobs[0].id: 500.0}
    first = shard(jobs, 1, 2, slow)
    second = shard(jobs, 2, 2, slow)
    assert [j.id for j in first] == [jobs[0].id]  # the slow job alone; the rest share the other shard
    assert len(second) == 5


def test_the_same_shard_on_another_process_and_order_is_the_same() -> None:
    jobs = list(load_matrix(MATRIX_FILE).jobs)
    durations = {j.id: 10.0 + (k % 3) for k, j in enumerate(jobs)}
    here = [j.id for j in shard(jobs, 2, 3, durations)]
    assert [j.id for j in shard(list(reversed(jobs)), 2, 3, durations)] == list(reversed(here))
    script = textwrap.dedent(f"""
        import json
        from ci.matrix import MATRIX_FILE, load_matrix, shard
        jobs = list(load_matrix(MATRIX_FILE).jobs)
        durations = json.loads({json.dumps(json.dumps(durations))})
        print(json.dumps([j.id for j in shard(jobs, 2, 3, durations)]))
    """)
    there = subprocess.run(
        [PY, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "7"},
    ).stdout
    assert json.loads(there) == here


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", ""])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(MatrixError, match="--shard"):
        parse_shard(text)


# -- running and resuming ----------------------------------------------------------------------


def _jobs(tmp_path: Path, count: int = 3) -> list[MatrixJob]:
    text = matrix_text(arch="[arm64]", extra="  cpu: {arm64: [cortex-a57]}\n")
    return list(load_matrix(write_matrix(tmp_path, text)).jobs)[:count]


def test_run_records_cells_and_a_finished_record_per_job(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 2)
    results = tmp_path / "results"
    ends = run_matrix(jobs, results, night="n1", workers=2, runner=fake_runner())
    assert sorted(e["matrix_job"] for e in ends) == sorted(j.id for j in jobs)
    records = read_lines(results)
    kinds = [r["job"] for r in records]
    assert kinds.count("matrix-start") == kinds.count("matrix-finished") == 2
    for end in ends:
        cells = [r for r in records if r["job"] == "run" and r["matrix_job"] == end["matrix_job"]]
        assert len(cells) == end["cells"] > 1
        assert {c["attempt"] for c in cells} == {end["attempt"]}
        assert end["verdict"] == "pass" and end["night"] == "n1" and end["commit"]


def test_resume_skips_finished_jobs_and_reruns_the_one_cut_off(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 3)
    results = tmp_path / "results"
    run_matrix(jobs[:1], results, night="n1", runner=fake_runner())
    # jobs[1] was cut off in its worker's file: started, two cells, the second torn (SIGKILL mid-line)
    dead = {"matrix_job": jobs[1].id, "attempt": "dead", "night": "n1"}
    start = {"job": "matrix-start", **dead, "axes": jobs[1].axes(), "started": "2026-01-01T00:00:00+00:00"}
    written = append_result(results, start, writer="dead-w1")
    append_result(results, {"job": "run", **dead, **cell("arm64", "cortex-a57", jobs[1].scenario, "none")},
                  writer="dead-w1")  # fmt: skip
    with open(written, "ab") as fh:
        fh.write(b'{"job": "run", "matrix_job": "' + jobs[1].id.encode() + b'", "attempt": "dead", "ar')
    assert finished_jobs(results) == {jobs[0].id}
    calls: list[str] = []
    ends = run_matrix(jobs, results, night="n1", resume=True, runner=fake_runner(calls=calls))
    assert sorted(e["matrix_job"] for e in ends) == sorted([jobs[1].id, jobs[2].id])
    assert len(calls) == 2 and not any(jobs[0].scenario in c for c in calls)
    assert finished_jobs(results) == {j.id for j in jobs}
    loaded, cells, warnings = load_cells([results])
    by_id = {j.id: j for j in loaded}
    resumed = by_id[jobs[1].id]
    assert resumed.finished is not None and resumed.finished["attempt"] != "dead"
    # the dead attempt's cell is gone
    assert {c["attempt"] for c in resumed.cells} == {resumed.finished["attempt"]}
    assert len(resumed.cells) == resumed.finished["cells"]
    assert [w for w in warnings if "torn record" in w and written.name in w]  # skipped, and said so
    assert len(cells) == sum(j.finished["cells"] for j in loaded if j.finished)


def test_parallel_workers_each_append_to_a_file_of_their_own(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 4)
    results = tmp_path / "results"
    recorders: list[threading.Thread] = []  # the threads given the finished jobs: the history's writers

    def recorded(_end: object, _cells: object) -> None:
        recorders.append(threading.current_thread())

    runner = fake_runner(delay_s=0.05)
    ends = run_matrix(jobs, results, night="n1", workers=2, runner=runner, on_finished=recorded)
    assert recorders == [threading.main_thread()] * len(jobs)
    files = results_files(results)
    assert len(files) == 2 and RESULTS_FILE not in {f.name for f in files}
    writers: dict[str, set[Path]] = {}  # attempt -> the files its records are in
    for path in files:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            writers.setdefault(record["attempt"], set()).add(path)
    assert sorted(writers) == sorted(e["attempt"] for e in ends)
    assert all(len(paths) == 1 for paths in writers.values())  # a job's records: one worker's file
    again = run_matrix(jobs[:1], results, night="n1", runner=fake_runner())  # a later run: new files
    assert len(results_files(results)) == 3 and again[0]["matrix_job"] == jobs[0].id
    assert finished_jobs(results) == {j.id for j in jobs}


def test_every_reader_takes_every_results_file(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 2)
    results = tmp_path / "results"
    run_matrix(jobs, results, night="n1", workers=2, runner=fake_runner())
    append_result(results, {"job": "run", **cell("arm64", "neoverse-v1", "rewrite_in_place", "none")})
    # which worker takes which job is the scheduler's choice: one worker may run both
    assert (results / RESULTS_FILE).is_file() and len(results_files(results)) in (2, 3)
    loaded, cells, _ = load_cells([results])
    assert {j.id for j in loaded if j.finished} == {j.id for j in jobs}
    assert len(cells) == sum(j.finished["cells"] for j in loaded if j.finished) + 1
    part = next(p for p in results_files(results) if p.name != RESULTS_FILE)
    assert len(load_cells([part])[1]) == len(cells)  # a worker's file stands for its folder
    assert len(load_cells([results / RESULTS_FILE])[1]) == len(cells)
    history = History(tmp_path / "h.sqlite")
    report = build_report([results], history)
    assert len(report.cells) == len(cells)
    assert set(history.durations()) == {j.id for j in jobs}  # the report recorded every worker's jobs


def test_a_later_finished_attempt_wins_whichever_file_is_read_first(tmp_path: Path) -> None:
    (job,) = _jobs(tmp_path, 1)
    results = tmp_path / "results"
    for attempt, writer, finished in (("late", "a-w1", "2026-01-01T02:00:00+00:00"),
                                      ("early", "b-w1", "2026-01-01T01:00:00+00:00")):  # fmt: skip
        base = {"matrix_job": job.id, "attempt": attempt, "night": "n1"}
        append_result(results, {"job": "run", **base, **cell("arm64", "cortex-a57", job.scenario, "none")},
                      writer=writer)  # fmt: skip
        end = {"job": "matrix-finished", **base, "axes": job.axes(), "finished": finished, "verdict": "pass"}
        append_result(results, {**end, "cells": 1}, writer=writer)
    (loaded,), _, _ = load_cells([results])
    assert loaded.finished is not None and loaded.finished["attempt"] == "late"
    assert [c["attempt"] for c in loaded.cells] == ["late"]


@pytest.mark.parametrize("writer", ["", "a/b", "../x", "w.1", "x" * 65])
def test_a_bad_writer_name_is_refused(tmp_path: Path, writer: str) -> None:
    with pytest.raises(ValueError, match="writer name"):
        append_result(tmp_path, {"n": 1}, writer=writer)
    assert not results_files(tmp_path)


_KILLABLE = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from helpers_matrix import fake_runner, matrix_text, write_matrix
from ci.matrix import load_matrix, run_matrix
from harness.guest import install_signal_handlers
install_signal_handlers()  # SIGTERM unwinds, as in the jitprobe command
tmp = Path({tmp!r})
text = matrix_text(arch="[arm64]", extra="  cpu: {{arm64: [cortex-a57]}}\\n")
jobs = list(load_matrix(write_matrix(tmp, text)).jobs)[:4]
run_matrix(jobs, tmp / "results", night="n1", workers=2, resume=True, runner=fake_runner(delay_s={delay}),
           on_finished=lambda end, cells: print(end["matrix_job"], flush=True))
print("done", flush=True)
"""


def test_sigkill_mid_run_then_resume_loses_no_finished_job(tmp_path: Path) -> None:
    script = _KILLABLE.format(tests=str(ROOT / "tests"), tmp=str(tmp_path), delay=0.15)
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()  # one job finished; the others are mid-way
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    results = tmp_path / "results"
    finished_before = finished_jobs(results)
    assert first in finished_before and len(finished_before) < 4
    rerun = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    ran = rerun.stdout.split()[:-1]
    assert not set(ran) & finished_before  # finished jobs are not run again
    assert len(finished_jobs(results)) == 4
    jobs, _, _ = load_cells([results])
    assert all(j.finished is not None and len(j.cells) == j.finished["cells"] for j in jobs)


def test_sigterm_stops_the_run_and_leaves_the_jobs_it_cut_off_for_resume(tmp_path: Path) -> None:
    """Two workers: at the signal one job has finished and two are running. They are cut off
    (no finished record; the real runner's guests are killed), the fourth never starts, and the
    command ends with 128 + SIGTERM instead of running the queue to its end."""
    # 2, 7, 7 and 5 cells: the first job ends after 2 cells, the second frees a worker for the
    # fourth only after 7
    script = _KILLABLE.format(tests=str(ROOT / "tests"), tmp=str(tmp_path), delay=0.5)
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "done" not in rest
    results = tmp_path / "results"
    finished = finished_jobs(results)
    assert first in finished and len(finished) < 4
    jobs, _, _ = load_cells([results])
    started = [r["matrix_job"] for r in read_lines(results) if r["job"] == "matrix-start"]
    assert len(started) == len(set(started)) < 4  # the queue stopped: the last job never started
    assert all(j.finished is None or len(j.cells) == j.finished["cells"] for j in jobs)


_TINY_SCENARIO = """\
name: tiny
description: one thread rewrites a function in place a few times (a guest boot and one short program)
generator: install
params: {threads: 0, iterations: 4, seed: 3, filler: 62, placement: 0, mapping: rwx}
mutations: []
"""


def _live_qemus(marker: str) -> set[int]:
    """Pids of the QEMU processes (not zombies) whose command line names ``marker``."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # gone meanwhile
            continue
        if state != "Z" and Path(argv[0].decode(errors="replace")).name.startswith("qemu-system") and any(
            marker.encode() in a for a in argv
        ):
            found.add(int(proc.name))
    return found


@pytest.mark.qemu
def test_a_real_matrix_run_sigkilled_mid_way_leaves_no_qemu_and_resumes_only_the_rest(tmp_path: Path) -> None:
    """Four one-cell x86_64 jobs (a tiny scenario, seeds 1-4), two guests at once. The whole
    process group is SIGKILLed once a job has finished and a guest is up: the finished jobs are
    on disk whole, no QEMU of the run lives on (QEMU sits in a session of its own on pexpect's pty,
    so the group's kill does not reach it: PR_SET_PDEATHSIG and the pty's hang-up end it), and
    --resume runs exactly the other jobs."""
    (tmp_path / "scenarios" / "icache").mkdir(parents=True)
    (tmp_path / "scenarios" / "icache" / "tiny.yaml").write_text(_TINY_SCENARIO)
    text = matrix_text(arch="[x86_64]", scenario="[tiny]").replace("sanitize: [true]", "sanitize: [false]")
    path = write_matrix(tmp_path, text.replace("seed: [null]", "seed: [1, 2, 3, 4]"))
    every = {j.id for j in load_matrix(path, tmp_path / "scenarios").jobs}
    assert len(every) == 4
    runs, results = tmp_path / "runs", tmp_path / "results"
    command = [PY, "-m", "ci.cli", "matrix", "run", "--file", str(path), "--scenario-dir",
               str(tmp_path / "scenarios"), "--results", str(results), "--no-history", "--night", "k1",
               "--jobs", "2", "--json"]  # fmt: skip
    env = {**os.environ, "JITPROBE_RUNS": str(runs)}
    errors = tmp_path / "first.err"
    with open(errors, "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # a bound for a stuck run, not a speed requirement
        guests: set[int] = set()
        while proc.poll() is None and time.monotonic() < deadline:
            guests = _live_qemus(str(runs))
            if guests and finished_jobs(results):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed: " + errors.read_text()
        os.killpg(proc.pid, signal.SIGKILL)
        assert guests, "no guest of the run was up when it was killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    try:
        deadline = time.monotonic() + 30  # the kernel delivers the death signals; QEMU then exits
        while _live_qemus(str(runs)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _live_qemus(str(runs)), f"QEMU outlived the killed run (running at the kill: {guests})"
    finally:
        for pid in _live_qemus(str(runs)):  # this test's own guests only (their run folders are in tmp_path)
            os.kill(pid, signal.SIGKILL)
    before = finished_jobs(results)
    assert 0 < len(before) < len(every)
    jobs, _, _ = load_cells([results])
    kept = {j.id: (j, j.finished) for j in jobs if j.finished is not None}
    assert set(kept) == before
    assert all(j.verdict == "pass" and len(j.cells) == end["cells"] == 1 for j, end in kept.values())
    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert (summary["run"], summary["skipped"]) == (len(every) - len(before), len(before))
    jobs, cells, _ = load_cells([results])
    assert {j.id for j in jobs if j.finished is not None} == every  # what a full run records
    assert all(j.verdict == "pass" and len(j.cells) == 1 for j in jobs) and len(cells) == len(every)
    started = [r for r in read_lines(results) if r["job"] == "matrix-start" and r["matrix_job"] in before]
    assert len(started) == len(before)  # the jobs finished before the kill were not run again


def test_matrix_list_cli_prints_ids_and_refuses_a_bad_file(tmp_path: Path) -> None:
    path = write_matrix(tmp_path, matrix_text(arch="[x86_64]"))
    out = subprocess.run(
        [PY, "-m", "ci.cli", "matrix", "list", "--file", str(path), "--json", "--no-history"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = json.loads(out)["jobs"]
    assert [r["id"] for r in listed] == [j.id for j in load_matrix(path).jobs]
    shard1 = json.loads(
        subprocess.run(
            [
                PY,
                "-m",
                "ci.cli",
                "matrix",
                "list",
                "--file",
                str(path),
                "--json",
                "--shard",
                "1/2",
                "--no-history",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["jobs"]
    assert 0 < len(shard1) < len(listed)
    bad = write_matrix(tmp_path, matrix_text(arch="[vax]"))
    proc = subprocess.run(
        [PY, "-m", "ci.cli", "matrix", "list", "--file", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "axes.arch" in proc.stderr and "'vax'" in proc.stderr


# -- history -----------------------------------------------------------------------------------


def _end(
    job_id: str, night: str, started: str, verdict: str = "pass", duration: float = 10.0
) -> dict[str, object]:
    return {
        "matrix_job": job_id,
        "night": night,
        "started": started,
        "verdict": verdict,
        "duration_s": duration,
        "axes": {"arch": "arm64"},
        "finished": started,
        "commit": "abc",
    }


def test_history_first_seen_last_passed_and_rate(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite")
    good = cell(verdict="pass")
    bad = cell(verdict="fail", observed_rules=["arm64.no_dsb"])
    sig = signature_of(bad)
    assert sig is not None
    plan = [
        ("n1", "2026-01-01", good),
        ("n2", "2026-01-02", bad),
        ("n3", "2026-01-03", good),
        ("n4", "2026-01-04", bad),
    ]
    for night, started, c in plan:
        history.record_job(_end("job1", night, started, "pass" if c is good else "fail"), [c])
    stats = history.signature_stats(sig.id)
    assert (stats.first_seen, stats.last_seen, stats.last_passed) == ("n2", "n4", "n3")
    assert (stats.failed, stats.runs, stats.nights) == (2, 3, 2)
    assert stats.rate == pytest.approx(2 / 3)
    assert history.nights() == ["n1", "n2", "n3", "n4"]
    assert [(n, bad_) for n, bad_, _ in history.trend()] == [("n1", 0), ("n2", 1), ("n3", 0), ("n4", 1)]
    history.record_job(_end("job1", "n4", "2026-01-04", "fail", 30.0), [bad])  # the same job again: replaced
    assert history.signature_stats(sig.id).failed == 2
    assert history.durations()["job1"] == pytest.approx(10.0)  # median of 10, 10, 10, 30


_KILL_IN_TRANSACTION = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from helpers_matrix import cell
from ci.history import History
history = History({db!r})
def cells():
    for k in range(10):
        if k == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # killed with three cells written, uncommitted
        yield dict(cell(verdict="pass"), mutation=f"m{{k}}")
history.record_job({end!r}, cells())
"""


def test_a_history_write_killed_mid_transaction_leaves_the_database_valid(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    History(db).record_job(_end("job0", "n1", "2026-01-01"), [cell(verdict="pass")])
    script = _KILL_IN_TRANSACTION.format(
        tests=str(ROOT / "tests"), db=str(db), end=_end("job1", "n1", "2026-01-01")
    )
    proc = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT job_id FROM jobs").fetchall() == [("job0",)]
    assert conn.execute("SELECT COUNT(*) FROM cells WHERE job_id = 'job1'").fetchone() == (0,)
    conn.close()
    History(db).record_job(_end("job1", "n1", "2026-01-01"), [cell(verdict="pass")])  # usable afterwards
    assert set(History(db).durations()) == {"job0", "job1"}


def test_a_file_that_is_not_a_database_is_an_infrastructure_error(tmp_path: Path) -> None:
    from base.errors import InfraError

    path = tmp_path / "h.sqlite"
    path.write_bytes(b"not sqlite" * 100)
    with pytest.raises(InfraError, match="history database"):
        History(path)


# -- the GitHub Actions workflow ---------------------------------------------------------------


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, re.MULTILINE))


def test_the_workflow_runs_shards_in_a_matrix_and_reports_through_make_targets() -> None:
    workflow = yaml.safe_load((ROOT / "ci" / "github" / "nightly.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert "schedule" in triggers and triggers["schedule"][0]["cron"]
    assert "workflow_dispatch" in triggers
    jobs = workflow["jobs"]
    assert set(jobs) == {"shard", "report"}
    shard_job, report_job = jobs["shard"], jobs["report"]
    shards = shard_job["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(shards) + 1)) and str(len(shards)) == str(workflow["env"]["SHARDS"])
    assert report_job["needs"] == "shard" and report_job["if"] == "always()"
    targets = _make_targets()
    for job in jobs.values():
        assert job["runs-on"] and job["timeout-minutes"] > 0
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "run" in step:
                command = step["run"].strip()
                if command.startswith("make "):
                    assert command.split()[1] in targets, command
                else:  # the only other command publishes the Markdown summary
                    assert command == 'cat ci-report/summary.md >> "$GITHUB_STEP_SUMMARY"', command
            else:
                assert re.fullmatch(r"actions/[a-z-]+(/[a-z]+)?@v\d+", step["uses"]), step["uses"]
    uses = [s.get("uses", "") for s in shard_job["steps"]]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
    report_uses = [s.get("uses", "") for s in report_job["steps"]]
    assert any(u.startswith("actions/download-artifact") for u in report_uses)
    assert any(u.startswith("actions/upload-artifact") for u in report_uses)
    report_runs = [s["run"] for s in report_job["steps"] if "run" in s]
    assert any("ci-report" in r for r in report_runs)
    make = (ROOT / "Makefile").read_text()
    assert "--fail-on new" in make  # the report step fails on a new failure


# -- one real job in a guest ---------------------------------------------------------------------


@pytest.mark.qemu
def test_a_one_job_matrix_runs_in_a_guest_and_reports(tmp_path: Path) -> None:
    path = write_matrix(tmp_path, matrix_text(arch="[x86_64]", scenario="[rewrite_in_place]"))
    results, out = tmp_path / "results", tmp_path / "report"
    env = {**os.environ, "JITPROBE_RUNS": str(tmp_path / "runs")}

    def jitprobe(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "ci.cli", *args], capture_output=True, text=True, env=env,
                              timeout=timeout)  # fmt: skip

    started = time.monotonic()
    proc = jitprobe("matrix", "run", "--file", str(path), "--results", str(results), "--night", "t1",
                    "--jobs", "1", "--json", timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["run"] == 1 and summary["verdicts"] == {"pass": 1}
    assert Path(summary["history"]) == tmp_path / "history.sqlite"
    (end,) = [r for r in read_lines(results) if r["job"] == "matrix-finished"]
    assert end["qemu_version"] and end["kernel"] and end["cells"] > 1
    again = jitprobe("matrix", "run", "--file", str(path), "--results", str(results), "--resume", "--json",
                     timeout=60)  # fmt: skip
    assert json.loads(again.stdout)["run"] == 0
    report = jitprobe("report", str(results), "--out", str(out), "--history", summary["history"],
                      "--fail-on", "any")  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert time.monotonic() - started < 600
    assert {p.name for p in out.iterdir()} >= {"index.html", "summary.md", "junit.xml", "results.json"}
