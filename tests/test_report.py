"""Triage reports: signatures, the four files and what each failure's entry shows, KCIDB export."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import kcidb_io
import pytest
from helpers_matrix import RULE, cell, failing_cell, grid_squares, litmus_cell, matrix_results, sample_report

from ci.history import History
from ci.kcidb import kcidb_json
from ci.report import build_report, write_report
from ci.report.pictures import VERDICT_COLOURS, histograms, outcome_histogram
from ci.signature import cell_verdict, normalize_symbol, signature_of
from harness.runs import append_result

PY = sys.executable
REPORT = [PY, "-m", "ci.cli", "report"]
SVG_NS, XLINK_NS = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
# -- signatures --------------------------------------------------------------------------------


def test_a_signature_ignores_addresses_timings_run_folders_and_cpu() -> None:
    a = signature_of(failing_cell("cortex-a57", 0, "/runs/1", index=3))
    b = signature_of(
        dict(failing_cell("cortex-a57", 8, "/runs/2", index=9), smp=4, seed=9, detail="after 3.1 s")
    )
    assert a is not None and a == b and a.id == b.id  # type: ignore[union-attr]
    assert a.kind == "wrong-rule" and a.scenario == "icache/flush_mistakes/sync_before_last_write"
    assert RULE in a.rule and a.symbol == "jit code"
    assert not re.search(r"0x|/runs", a.text)


def test_different_rules_or_tests_are_different_signatures() -> None:
    base = signature_of(failing_cell())
    other_rule = cell(
        "arm64",
        "cortex-a57",
        "flush_mistakes",
        "sync_before_last_write",
        "fail",
        observed_rules=["arm64.no_isb"],
    )
    other_test = cell("arm64", "cortex-a57", "rewrite_in_place", "no_dsb", "fail", observed_rules=[])
    ids = {s.id for s in (base, signature_of(other_rule), signature_of(other_test)) if s is not None}
    assert len(ids) == 3
    assert signature_of(other_test).kind == "missed"  # type: ignore[union-attr]
    assert signature_of(cell(verdict="pass")) is None
    crash = dict(cell(verdict="crash"), detail="Oops at ffff800080123456 after 3.2 s")
    assert signature_of(crash).text == "crash | icache/flush_mistakes/sync_before_last_write | - | -"  # type: ignore[union-attr]


def test_a_null_verdict_says_why_and_has_no_signature() -> None:
    """A known open false positive (realjit) or a bug without a rule is shown as such, never as a
    failure or a pass; any other null verdict is not exercised."""
    known = dict(cell(verdict=None), observed="known false positive", observed_rules=[RULE])
    assert cell_verdict(known) == "known false positive" and signature_of(known) is None
    assert cell_verdict(dict(cell(verdict=None), observed="not detected")) == "not detected"
    assert cell_verdict(dict(cell(verdict=None), observed="clean")) == "not exercised"
    assert cell_verdict(cell(verdict="fail")) == "fail"


def test_symbols_lose_offsets_and_compiler_suffixes() -> None:
    kernel = {"symbol": "flush_icache_range+0x3c", "space": "kernel", "pc": 1}
    assert normalize_symbol(kernel) == "flush_icache_range"
    assert normalize_symbol({"symbol": "do_thing.isra.0+0x10", "space": "kernel"}) == "do_thing"
    assert normalize_symbol({"symbol": None, "space": "kernel", "pc": 5}) == "kernel"
    assert normalize_symbol({"symbol": None, "space": "user", "pc": 0x401000}) == "program"


# -- the report --------------------------------------------------------------------------------


def test_report_files_are_written_and_well_formed(tmp_path: Path) -> None:
    results = matrix_results(tmp_path, "n1", failing=True)
    out = tmp_path / "report"
    report = build_report([results, results])  # the same results twice: counted once
    write_report(report, out)
    assert {p.name for p in out.iterdir()} == {"index.html", "summary.md", "junit.xml", "results.json"}
    data = json.loads((out / "results.json").read_text())
    assert data["summary"]["jobs"] == 2 and data["summary"]["cells"] == len(report.cells)
    assert len(report.cells) == sum(j.finished["cells"] for j in report.jobs if j.finished)
    (failure,) = data["failures"]  # the same bug in two jobs is one entry listing both
    assert failure["count"] == 2 and {h["smp"] for h in failure["hits"]} == {2, 3}
    assert report.jobs[0].finished is not None
    assert failure["environment"]["commit"] == report.jobs[0].finished["commit"]
    assert failure["environment"]["smp"] in (2, 3)

    tree = ET.parse(out / "junit.xml")
    cases = tree.getroot().findall(".//testcase")
    assert len(cases) == len(report.cells)
    assert {c.get("classname") for c in cases} == {"arm64.icache"}
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 2
    text = failed[0].find("failure").text or ""  # type: ignore[union-attr]
    assert failure["signature"]["id"] in failed[0].find("failure").get("message", "")  # type: ignore[union-attr]
    assert re.search(
        r"reproducer: jitprobe run --suite icache --arch arm64 --cpu cortex-a57 "
        r"--scenario flush_mistakes --mutation sync_before_last_write --smp [23]\n",
        text,
    )
    assert tree.getroot().get("failures") == "2"

    page = (out / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    # nothing to fetch: the only URLs are the SVG namespaces' names, the only url() the pictures' own
    assert set(re.findall(r"https?://[^\s\"'<>]*", page)) <= {SVG_NS, XLINK_NS}
    assert not re.search(r"<script|<link|<img|@import|url\((?!#)", page, re.I)
    assert f"id='sig-{failure['signature']['id']}'" in page
    squares = grid_squares(page)
    assert {colour for colour, _ in squares.values()} == {VERDICT_COLOURS["pass"], VERDICT_COLOURS["fail"]}
    assert squares[("icache/flush_mistakes/sync_before_last_write", "arm64 cortex-a57 smp3")][1] == "fail"
    assert len(squares) == len({(c["scenario"], c["mutation"], c["smp"]) for c in report.cells}) == 10
    assert "No history (give --history DB)." in page
    assert re.search(
        r"<span class=mark>=&gt; 0x[0-9a-f]+: [0-9a-f]+ +\S", page
    )  # the stale instruction, marked
    assert "rebuilt flush_mistakes" in page
    assert "store: vCPU 0 at PC 0x401000" in page
    assert "JP-DONE" in page  # the console excerpt
    summary = (out / "summary.md").read_text()
    assert failure["signature"]["id"] in summary and "jitprobe run --suite icache" in summary


def test_history_gives_first_seen_last_passed_rate_and_new(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite")
    r1 = matrix_results(tmp_path, "2026-01-01", failing=False, history=history)
    r2 = matrix_results(tmp_path, "2026-01-02", failing=True)
    report = build_report([r1, r2], history)  # records night 2 in the history itself
    (failure,) = report.failures
    assert failure.stats is not None
    assert failure.stats.first_seen == "2026-01-02" and failure.stats.last_passed == "2026-01-01"
    assert (failure.stats.failed, failure.stats.runs) == (2, 2)
    assert failure.new
    r3 = matrix_results(tmp_path, "2026-01-03", failing=True)
    later = build_report([r3], history)
    assert not later.failures[0].new and later.failures[0].stats.failed == 4  # type: ignore[union-attr]
    assert [n for n, _, _ in later.trend] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    out = tmp_path / "out"
    write_report(later, out)
    page = (out / "index.html").read_text()
    assert "First seen <b>2026-01-02</b>" in page and "last passed <b>2026-01-01</b>" in page
    assert re.findall(r"<title>(2026-01-0\d: \d+ of \d+ cells failing)</title>", page) == [
        "2026-01-01: 0 of 10 cells failing", "2026-01-02: 2 of 10 cells failing",
        "2026-01-03: 2 of 10 cells failing"]  # fmt: skip


def test_report_cli_fails_on_new_failures_only_when_asked(tmp_path: Path) -> None:
    results = matrix_results(tmp_path, "n1", failing=True)
    base = [PY, "-m", "ci.cli", "report", str(results), "--out", str(tmp_path / "o"), "--json"]
    kcidb = tmp_path / "kcidb.json"
    ok = subprocess.run([*base, "--kcidb", str(kcidb)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["new_failures"] == 1
    kcidb_io.schema.LATEST.validate_exactly(json.loads(kcidb.read_text()))  # the file written is valid
    new = subprocess.run([*base, "--fail-on", "new"], capture_output=True, text=True)
    assert new.returncode == 1
    missing = subprocess.run(
        [PY, "-m", "ci.cli", "report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_exec_and_main_job_records_are_reported_too(tmp_path: Path) -> None:
    results = tmp_path / "mixed"
    append_result(
        results,
        {
            "job": "main",
            "arch": "riscv64",
            "step": "boot",
            "verdict": "pass",
            "detail": "ok",
            "run_dir": "/x",
        },
    )
    append_result(
        results,
        {
            "command": "exec",
            "arch": "arm64",
            "cpu": "max",
            "smp": 2,
            "verdict": "fail",
            "exit_code": 0,
            "console_tail": "",
            "run_dir": "/y",
            "violations": [
                {
                    "rule": RULE,
                    "pc": 0x400100,
                    "vcpu": 0,
                    "paddr": 1,
                    "insn": "1f2003d5",
                    "disasm": "nop",
                    "symbol": "main+0x10",
                    "writer_pc": 2,
                    "writer_vcpu": 0,
                    "count": 1,
                    "space": "user",
                }
            ],
        },
    )
    report = build_report([results])
    assert len(report.cells) == 2
    (failure,) = report.failures
    assert failure.signature.symbol == "main" and failure.signature.rule == RULE
    write_report(report, tmp_path / "out")
    classes = {
        c.get("classname") for c in ET.parse(tmp_path / "out" / "junit.xml").getroot().iter("testcase")
    }
    assert classes == {"riscv64.main", "arm64.exec"}
    assert "nop" in (tmp_path / "out" / "index.html").read_text()


def test_kcidb_export_validates_against_the_latest_kcidb_schema(tmp_path: Path) -> None:
    """kcidb-io's own validator, latest schema version, on a report with something of everything
    plus the cells the schema is strict about: an infrastructure failure (MISS), an empty
    mutation (no empty path component) and a NUL in the console text (none outside misc)."""
    report, _ = sample_report(tmp_path)
    odd = tmp_path / "odd"
    infra = dict(cell("x86_64", "max", "rewrite_in_place", "none", "infra"), detail="QEMU died\0 at boot")
    append_result(odd, {"job": "run", **infra, "mutation": ""})
    report = build_report([*(tmp_path / f"results-{n}" for n in ("2026-01-01", "2026-01-02")),
                           tmp_path / "runs", odd])  # fmt: skip
    doc = kcidb_json(report)
    assert kcidb_io.schema.LATEST.is_compatible_exactly(doc)
    kcidb_io.schema.LATEST.validate_exactly(doc)  # raises jsonschema's ValidationError naming the field
    assert len(doc["tests"]) == len(report.cells) and len(doc["checkouts"]) == 1
    assert len({t["id"] for t in doc["tests"]}) == len(doc["tests"])
    jobs = {j.id for j in report.jobs}
    assert {b["misc"]["matrix_job"] for b in doc["builds"] if "matrix_job" in b.get("misc", {})} == jobs
    statuses = [t["status"] for t in doc["tests"]]
    assert statuses.count("MISS") == 1 and statuses.count("FAIL") == sum(
        1 for c in report.cells if c.get("verdict") in ("fail", "crash")
    )
    (missed,) = [t for t in doc["tests"] if t["status"] == "MISS"]
    assert missed["path"] == "jitprobe.icache.rewrite_in_place" and "\0" not in missed["log_excerpt"]


def test_a_report_of_a_thousand_results_takes_under_five_seconds(tmp_path: Path) -> None:
    results = tmp_path / "big"
    for k in range(1000):
        failing = k % 50 == 0
        c = failing_cell(run_dir=str(tmp_path)) if failing else cell(verdict="pass")
        append_result(results, {"job": "run", **dict(c, run_dir=str(tmp_path / f"r{k}"))})
    started = time.monotonic()
    report = build_report([results])
    write_report(report, tmp_path / "out")
    elapsed = time.monotonic() - started
    assert len(report.cells) == 1000 and len(report.failures) == 1 and len(report.failures[0].cells) == 20
    assert elapsed < 5.0, f"{elapsed:.2f} s"


@pytest.mark.parametrize("seed", [None, 11])
def test_reproducer_names_the_one_cell(seed: int | None) -> None:
    c = cell("arm64", "neoverse-v1", "cross_modify", "no_isb", "fail", observed_rules=[], smp=3, seed=seed)
    expected = (
        "jitprobe run --suite icache --arch arm64 --cpu neoverse-v1 --scenario cross_modify "
        "--mutation no_isb --smp 3"
    )
    words = c["reproducer"].split()
    assert set(words) == set(expected.split() + ([] if seed is None else ["--seed", "11"]))
    assert words[words.index("--smp") + 1] == "3"


def test_two_builds_of_the_same_results_are_the_same_bytes(tmp_path: Path) -> None:
    """Two processes (different hash seeds, clocks and matplotlib id salts, were they not fixed)
    write the report of the same results and history: every file is identical."""
    _, index = sample_report(tmp_path)
    inputs = [str(tmp_path / name) for name in ("results-2026-01-01", "results-2026-01-02", "runs")]
    outs = [tmp_path / "a", tmp_path / "b"]
    for seed, out in zip(("1", "2"), outs, strict=True):
        env = dict(os.environ, SOURCE_DATE_EPOCH="1767225600", PYTHONHASHSEED=seed)
        argv = [*REPORT, *inputs, "--out", str(out), "--history", str(tmp_path / "history.sqlite")]
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
    files = {p.name: p.read_bytes() for p in outs[0].iterdir()}
    assert set(files) == {"index.html", "summary.md", "junit.xml", "results.json"}
    assert files == {p.name: p.read_bytes() for p in outs[1].iterdir()}
    page = files["index.html"].decode()
    assert "generated 2026-01-01T00:00:00Z" in page and page.count("<svg ") == 5
    # the same pictures as the in-process build (whose page differs only in its build time)
    assert re.findall(r"<svg .*?</svg>", page, re.S) == re.findall(r"<svg .*?</svg>", index.read_text(), re.S)

    env = dict(os.environ, SOURCE_DATE_EPOCH="yesterday")
    argv = [*REPORT, inputs[0], "--out", str(tmp_path / "c")]
    bad = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "SOURCE_DATE_EPOCH: 'yesterday'" in bad.stderr, bad.stderr
    assert "whole number" in bad.stderr


def test_litmus_histograms_sum_runs_and_mark_forbidden_outcomes_in_red() -> None:
    cells = [litmus_cell(), litmus_cell(), litmus_cell("riscv64", "rv64", forbidden_seen=False)]
    arm64, riscv64 = histograms(cells)
    assert (arm64.place, arm64.runs, arm64.forbidden) == ("arm64 cortex-a57 smp2", 2, {"r0=1 r1=0"})
    assert arm64.counts == {"r0=0 r1=0": 194, "r0=0 r1=1": 280, "r0=1 r1=1": 1520, "r0=1 r1=0": 6}
    assert (riscv64.runs, riscv64.forbidden) == (1, frozenset())
    picture = outcome_histogram(arm64, "h")
    bar = r"<g id=\"h-state-\d+\">\s*<title>(.*?)</title>\s*<path [^>]*fill: (#\w{6})"
    bars = re.findall(bar, picture.svg)
    assert bars == [
        ("r0=0 r1=0: 194 of 2000", "#4a78c0"), ("r0=0 r1=1: 280 of 2000", "#4a78c0"),
        ("r0=1 r1=0: 6 of 2000 (forbidden by the BPF model)", VERDICT_COLOURS["fail"]),
        ("r0=1 r1=1: 1520 of 2000", "#4a78c0"),
    ]  # fmt: skip
    assert picture.title == "outcomes of litmus/MP+fences/none on arm64 cortex-a57 smp2, 1 forbidden seen"
    assert "summed over 2 runs" in picture.svg
    ids = re.findall(r"\sid=\"([^\"]+)\"", picture.svg)
    assert ids and all(i.startswith("h-") for i in ids) and len(ids) == len(set(ids))


def test_only_drawing_a_picture_imports_matplotlib() -> None:
    """Every jitprobe command imports ci.cli; matplotlib's import (a quarter to most of a second)
    is left to the report."""
    code = "import sys, ci.cli; print('matplotlib' in sys.modules)"
    assert subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
