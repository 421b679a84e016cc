"""The detection matrix in sanitized guests: every cell of the icache suite, on every architecture
and stress CPU model, must be what the architectures' rules say (tests/stress/icache); a wrong
expectation makes ``jitprobe run`` exit 1; results reach --results as each scenario ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from base.profiles import available_arches
from harness.runs import read_results
from harness.stress.runner import Job, Selection, plan, run_jobs
from harness.stress.scenarios import IcacheScenario, KernelScenario, load_suite

pytestmark = pytest.mark.qemu

ICACHE = [s for s in load_suite("icache") if isinstance(s, IcacheScenario)]
JOBS = plan({"icache": ICACHE}, available_arches(), None)


@pytest.mark.parametrize("job", JOBS, ids=[f"{j.arch}-{j.cpu}" for j in JOBS])
def test_every_cell_of_the_icache_matrix_holds(
    job: Job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    results = run_jobs([job], Selection(), tmp_path / "results", workers=1)
    differing = [f"{r['scenario']} {r['mutation']}: {r['verdict']}: {r['detail']} ({r['run_dir']})"
                 for r in results if r["verdict"] != "pass"]  # fmt: skip
    assert not differing
    expected_cells = sum(len(s.mutations) for s in ICACHE)  # at most: some mutations do not apply
    assert len(ICACHE) <= len(results) <= expected_cells + len(ICACHE)
    kept, skipped = read_results(tmp_path / "results")
    assert len(kept) == len(results) and not skipped


def test_a_cell_that_differs_from_its_expectation_exits_1(tmp_path: Path) -> None:
    """A scenario file that wrongly expects a same-thread install without a serializing
    instruction to be caught on x86_64: the cell fails, the command exits 1, and the result
    is in --results with its reproducer."""
    suite = tmp_path / "scenarios" / "icache"
    suite.mkdir(parents=True)
    data = yaml.safe_load((Path(ICACHE[0].path).parent / "rewrite_in_place.yaml").read_text())
    data.update(
        mutations=["no_serialize"],
        expect={
            "no_serialize": {
                "why": "wrong on purpose",
                "x86_64": ["x86_64.no_serialize"],
                "arm64": [],
                "riscv64": [],
            }
        },
    )
    (suite / "rewrite_in_place.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(Path(ICACHE[0].path).parent / "cross_modify.yaml", suite)  # another scenario, not run
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--suite", "icache", "--arch", "x86_64", "--json",
         "--scenario-dir", str(tmp_path / "scenarios"), "--scenario", "rewrite_in_place",
         "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "JITPROBE_RUNS": str(tmp_path / "runs")},
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    cells = {r["mutation"]: r for r in json.loads(out.stdout)["results"]}
    assert cells["none"]["verdict"] == "pass"
    wrong = cells["no_serialize"]
    assert (wrong["expected"], wrong["observed"], wrong["verdict"]) == ("caught", "clean", "fail")
    assert "--scenario rewrite_in_place --mutation no_serialize" in wrong["reproducer"]
    kept, _ = read_results(tmp_path / "results")
    assert {r["mutation"] for r in kept} == {"none", "no_serialize"}


def test_a_killed_run_keeps_each_finished_scenario_and_leaves_no_qemu(tmp_path: Path) -> None:
    """SIGTERM once the first scenario's cells are in --results: they stay (whole records), the
    command ends at once with 128 + SIGTERM, and no guest outlives it."""
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--suite", "icache", "--arch", "all", "--jobs", "2",
         "--results", str(results)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "JITPROBE_RUNS": str(tmp_path / "runs")},
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not (results / "results.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    kept_before, _ = read_results(results)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    kept, skipped = read_results(results)
    assert kept_before and len(kept) >= len(kept_before) and not skipped
    cut_off = [r["detail"] for r in kept if r["verdict"] in ("infra", "crash")]
    assert not cut_off  # the guests the signal killed leave no results
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).returncode == 1  # no QEMU left


@pytest.mark.parametrize("arch", available_arches())
def test_the_litmus_suite_holds(arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """jit_core's code allows no outcome the BPF model forbids, and no run produced one; each
    cell of the correct code carries its histogram; each mutation is caught where it is expected."""
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    jobs = plan({"litmus": load_suite("litmus")}, [arch], None)
    results = run_jobs(jobs, Selection(), tmp_path / "results", workers=1)
    assert results and all(r["verdict"] == "pass" for r in results), [r["detail"] for r in results]
    correct = [r for r in results if r["mutation"] == "none"]
    assert all(r["histogram"] and sum(r["histogram"].values()) > 0 and r["forbidden"] == [] for r in correct)


# A scenario with a kernel module (its correct code and its mutations) is tests/test_kernel_modules.py's.
QUICK_KERNEL = [s for s in load_suite("kernel") if isinstance(s, KernelScenario) and not s.slow
                and s.module is None]  # fmt: skip
KERNEL_JOBS = plan({"kernel": QUICK_KERNEL}, available_arches(), None)


@pytest.mark.parametrize("job", KERNEL_JOBS, ids=[f"{j.arch}-{j.scenarios[0].name}" for j in KERNEL_JOBS])
def test_the_kernels_own_code_patching_sanitizes_clean(job: Job, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """ftrace on every function, static keys, kprobes and module churn, with another CPU busy:
    zero violations and the workload's own output (test_bpf, minutes long, runs in `make run`)."""
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    (cell,) = run_jobs([job], Selection(), tmp_path / "results", workers=1)
    assert cell["verdict"] == "pass", (cell["detail"], cell["run_dir"])
