"""Real JITs under the coherency sanitizer: Debian's PCRE2 JIT (sljit) and LuaJIT, two threads each.

harness/realjit/ builds small static programs linked with Debian's own libpcre2-8.a and
libluajit-5.1.a (pinned in harness/realjit/packages.lock.json; which suite for which architecture,
and why, is in harness/realjit/programs.yaml). Each program compiles, runs and throws away JIT
code in a loop on two threads. The realjit stress suite (tests/stress/realjit/, one file per
program) says what each must give: clean on every architecture and CPU model unless the file
names a proven bug of the JIT (``expect.none``, with its evidence; none is known), and the
sanitizer's known open false positives with their reasons (``open_false_positives``). The guest
tests run the suite's cells through the runner of ``jitprobe run --suite realjit``
(harness.stress.runner), one fresh sanitized guest with 2 vCPUs per cell; a known open false
positive, when it shows, is an xfail with its reason, never a pass.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from base.contract import StressResult
from base.errors import InfraError
from base.profiles import available_arches, load_profile
from harness import realjit
from harness.realjit import OK_MARKER, build, describe, load_programs, pinned
from harness.runs import read_results
from harness.sanitizer.symbols import Symbolizer
from harness.stress.judging import judge, mark_known_false_positive
from harness.stress.runner import Job, Selection, _cell, plan, run_jobs
from harness.stress.scenarios import (
    KNOWN_FALSE_POSITIVE,
    STRESS_DIR,
    RealjitScenario,
    ScenarioError,
    expected_rules,
    false_positive_rules,
    load_suite,
    mutations_for,
    parse_realjit,
    tolerated_rules,
)

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = [s for s in load_suite("realjit") if isinstance(s, RealjitScenario)]
JOBS = plan({"realjit": SCENARIOS}, available_arches(), None)
CELLS = [(job, m) for job in JOBS for m in mutations_for(job.scenarios[0], job.arch)]  # type: ignore[arg-type]


def _describe(violations: list[Any], program: Path) -> str:
    """One line per (rule, space, symbol, writer symbol, vCPUs) with instructions and executions."""
    symbols = Symbolizer([program])
    groups: dict[tuple[str, ...], list[int]] = {}
    for v in violations:
        writer = symbols.lookup(v["writer_pc"], False) if v.get("writer_pc") is not None else None
        region = v["symbol"].split("+")[0] if v["symbol"] else "JIT code" if v["space"] == "user" else "?"
        key = (v["rule"], v["space"], region, writer.split("+")[0] if writer else "?",
               "same vCPU" if v["vcpu"] == v.get("writer_vcpu") else "other vCPU")  # fmt: skip
        counts = groups.setdefault(key, [0, 0, v["pc"]])
        counts[0] += 1
        counts[1] += v["count"]
    return "\n".join(
        f"{rule} {space} in {region} (e.g. pc {pc:#x}) written by {writer} on the {where}: "
        f"{n} instructions, {count} executions"
        for (rule, space, region, writer, where), (n, count, pc) in sorted(groups.items())
    )


def test_every_program_has_a_scenario_and_is_pinned_for_every_architecture() -> None:
    programs = load_programs()
    assert sorted(s.program for s in SCENARIOS) == sorted(programs)
    for name, program in programs.items():
        assert set(program.libraries) == set(available_arches()), name
        for arch, library in program.libraries.items():
            assert library is None or pinned(library, arch).version, (name, arch)
            assert describe(name, arch)


def test_every_cpu_model_runs_every_program() -> None:
    """No scenario leaves a model out: each runs on every stress model of every profile."""
    for scenario in SCENARIOS:
        ran = {(j.arch, j.cpu) for j in JOBS if j.scenarios[0] is scenario}
        assert ran == {(a, c) for a in available_arches() for c in load_profile(a).stress_cpus}


# An open false positive as a scenario file states one: the sanitizer's report, its CPUs and why.
OPEN_FALSE_POSITIVE = """open_false_positives:
  - why: a zeroing store taken for the author of text a device wrote
    arm64: {cpus: [neoverse-v1], rules: [arm64.no_dsb]}
"""


def test_an_open_false_positive_is_data_with_its_reason() -> None:
    path = STRESS_DIR / "realjit" / "pcre2_jit.yaml"
    data = yaml.safe_load(path.read_text() + OPEN_FALSE_POSITIVE)
    scenario = parse_realjit(data, path)
    rules, why = false_positive_rules(scenario, "arm64", "neoverse-v1")
    assert rules == {"arm64.no_dsb"} and "zeroing store" in why
    assert false_positive_rules(scenario, "arm64", "cortex-a57") == (set(), "")


def test_no_false_positive_is_open_in_the_shipped_scenarios() -> None:
    """The ones once listed are fixed (harness/sanitizer/README.md): a recurrence fails its cell."""
    assert all(false_positive_rules(s, a, c) == (set(), "") for s in SCENARIOS
               for a in available_arches() for c in load_profile(a).stress_cpus)  # fmt: skip


def test_the_broken_variant_runs_where_it_changes_the_code() -> None:
    """no_cache_flush runs on arm64 and riscv64, not x86_64 (nothing calls a flush there); its
    expected rule follows the CPU's CTR_EL0 bits, and what the kernel may add is may_also."""
    (pcre2,) = [s for s in SCENARIOS if s.name == "pcre2_jit"]
    assert mutations_for(pcre2, "x86_64") == ["none"]
    assert mutations_for(pcre2, "riscv64") == ["none", "no_cache_flush"]
    assert expected_rules(pcre2, "arm64", "cortex-a57", "no_cache_flush") == {"arm64.no_dc_clean"}
    assert expected_rules(pcre2, "arm64", "neoverse-n1", "no_cache_flush") == {"arm64.no_ic_invalidate"}
    assert expected_rules(pcre2, "arm64", "neoverse-v1", "no_cache_flush") == {"arm64.no_dsb"}
    assert tolerated_rules(pcre2, "arm64", "neoverse-n1", "no_cache_flush") == {"arm64.no_dsb"}
    assert expected_rules(pcre2, "arm64", "cortex-a57", "none") == set()


def test_a_pinned_deb_is_fetched_once_and_a_mismatch_names_the_suite_and_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    served = [b"what the mirror serves"]

    def download(package: str, arch: str, version: str) -> Path:
        (path := tmp_path / f"{package}_{arch}.deb").write_bytes(served[0])
        return path

    apt = SimpleNamespace(download=download, update=lambda: None)
    monkeypatch.setattr(realjit, "apt_root", lambda suite: apt)
    entry = realjit.PinnedDeb("trixie", "arm64", "libpcre2-dev", "10.46-1", "libpcre2-dev_arm64.deb",
                              len(b"pinned"), hashlib.sha256(b"pinned").hexdigest())  # fmt: skip
    with pytest.raises(InfraError) as info:
        realjit.fetch(entry)
    message = str(info.value)
    assert all(word in message for word in ("libpcre2-dev", "trixie", str(realjit.LOCK_PATH), entry.sha256))
    assert not list(tmp_path.glob("*.deb"))
    served[0] = b"pinned"
    fetched = realjit.fetch(entry)
    assert fetched.read_bytes() == b"pinned" and fetched.name == entry.filename
    served[0] = b"never fetched again"
    assert realjit.fetch(entry) == fetched and fetched.read_bytes() == b"pinned"


def test_a_header_of_src_is_in_every_programs_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sources include src/'s headers by name ("workers.h"): a header change builds them anew."""
    if shutil.which(realjit.compiler("x86_64")) is None:
        pytest.skip(f"{realjit.compiler('x86_64')} is not installed (make setup)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "src"
    shutil.copytree(realjit.SOURCE_DIR, src)
    monkeypatch.setattr(realjit, "SOURCE_DIR", src)
    before = build("shared_line", "x86_64")
    with (src / "workers.h").open("a") as header:
        header.write("/* changed */\n")
    after = build("shared_line", "x86_64")
    assert before != after and before.is_file() and after.is_file()


def _violation(rule: str, symbol: str | None = "sljit_malloc_exec+0x10") -> Any:
    return {"rule": rule, "pc": 0x40_0000, "vcpu": 1, "paddr": 0, "insn": "", "disasm": "ret",
            "symbol": symbol, "writer_pc": 0, "writer_vcpu": 0, "count": 1, "space": "user"}  # fmt: skip


@pytest.mark.parametrize(
    ("expected", "rules", "exit_code", "observed", "verdict"),
    [
        (set(), [], 0, "clean", "pass"),
        (set(), ["arm64.no_isb"], 0, KNOWN_FALSE_POSITIVE, None),  # the known one: never a pass
        (set(), ["arm64.no_dsb"], 0, "caught", "fail"),  # any other rule: a failure
        (set(), ["arm64.no_isb", "arm64.no_dsb"], 0, "caught", "fail"),
        (set(), ["arm64.no_isb"], 1, "caught", "fail"),  # and a wrong result too: a failure
        ({"arm64.no_dc_clean"}, ["arm64.no_dc_clean", "arm64.no_isb"], 0, KNOWN_FALSE_POSITIVE, None),
    ],
)  # fmt: skip
def test_a_known_false_positive_is_neither_pass_nor_fail(
    expected: set[str], rules: list[str], exit_code: int, observed: str, verdict: str | None
) -> None:
    job = Job("arm64", "cortex-a57", "realjit", tuple(SCENARIOS))
    cell: StressResult = _cell(job, "pcre2_jit", "none", expected, Selection())
    judge(cell, exit_code, [_violation(r) for r in rules], sanitize=True)
    mark_known_false_positive(cell, {"arm64.no_isb"}, "a recycled page")
    assert (cell["observed"], cell["verdict"]) == (observed, verdict)
    if verdict is None:
        assert cell["detail"].startswith("known open false positive (a recycled page): ")


def test_the_known_false_positive_is_in_the_programs_text_never_in_jit_code() -> None:
    job = Job("arm64", "cortex-a57", "realjit", tuple(SCENARIOS))
    cell: StressResult = _cell(job, "pcre2_jit", "none", set(), Selection())
    judge(cell, 0, [_violation("arm64.no_isb", symbol=None)], sanitize=True)  # JIT code: no symbol
    mark_known_false_positive(cell, {"arm64.no_isb"}, "a recycled page")
    assert (cell["observed"], cell["verdict"]) == ("caught", "fail")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"program": "v8"}, "field 'program': expected one of luajit_flush, pcre2_jit, shared_line"),
        ({"mutations": ["no_isb"]}, "unknown mutation 'no_isb'; expected some of no_cache_flush"),
        ({"mutations": ["no_cache_flush"]}, "field 'expect.no_cache_flush': missing"),
        ({"expect": {"none": {"why": "x", "arm64": ["arm64.nope"]}}}, "unknown rule 'arm64.nope' for arm64"),
        ({"open_false_positives": [{"why": "x", "arm64": {"cpus": ["a72"], "rules": ["arm64.no_isb"]}}]},
         "field 'open_false_positives[0]'.arm64.cpus: expected some of cortex-a57"),
        ({"open_false_positives": [{"arm64": {"cpus": [], "rules": []}}]}, "expected a mapping of why"),
        ({"cpus": {"arm64": ["a72"]}}, "field 'cpus.arm64': expected a list of cortex-a57"),
        ({"mutations": ["no_cache_flush"],
          "expect": {"no_cache_flush": {"why": "x", "may_also": {"vax": []}}}},
         "field 'expect.no_cache_flush.may_also.vax': expected an architecture"),
    ],
)  # fmt: skip
def test_a_bad_realjit_scenario_names_the_file_the_field_and_the_choices(change: dict[str, Any],
                                                                        message: str) -> None:  # fmt: skip
    path = STRESS_DIR / "realjit" / "pcre2_jit.yaml"
    data = {"name": "pcre2_jit", "description": "d", "program": "pcre2_jit", "timeout_s": 60, **change}
    with pytest.raises(ScenarioError) as caught:
        parse_realjit(data, path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_run_list_shows_the_realjit_cells_and_an_open_false_positive(tmp_path: Path) -> None:
    shutil.copytree(STRESS_DIR / "realjit", tmp_path / "realjit")
    with (tmp_path / "realjit" / "pcre2_jit.yaml").open("a") as f:
        f.write(OPEN_FALSE_POSITIVE)
    argv = [sys.executable, "-m", "harness.cli", "run", "--list", "--suite", "realjit", "--json",
            "--scenario-dir", str(tmp_path)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["matrix"]
    assert {"arch": "arm64", "cpu": "neoverse-v1", "scenario": "pcre2_jit", "mutation": "none",
            "expected": "clean; open false positive: arm64.no_dsb"} in rows  # fmt: skip
    assert {"arch": "arm64", "cpu": "neoverse-v1", "scenario": "luajit_flush", "mutation": "none",
            "expected": "clean"} in rows  # fmt: skip
    assert {"arch": "arm64", "cpu": "cortex-a57", "scenario": "pcre2_jit", "mutation": "none",
            "expected": "clean"} in rows  # fmt: skip
    assert {"arch": "x86_64", "cpu": "max", "scenario": "luajit_flush", "mutation": "none",
            "expected": "clean"} in rows  # fmt: skip


@pytest.mark.qemu
@pytest.mark.parametrize(("job", "mutation"), CELLS,
                         ids=[f"{j.scenarios[0].name}-{m}-{j.arch}-{j.cpu}" for j, m in CELLS])  # fmt: skip
def test_real_jit_cell(job: Job, mutation: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cell as ``jitprobe run --suite realjit`` gives it: the verdict its scenario file says."""
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    (scenario,) = job.scenarios
    assert isinstance(scenario, RealjitScenario)
    (cell,) = run_jobs([job], Selection(mutation=mutation), tmp_path / "results", workers=1)
    kept, skipped = read_results(tmp_path / "results")
    assert len(kept) == 1 and not skipped and kept[0]["verdict"] == cell["verdict"]
    program = build(scenario.program, job.arch, None if mutation == "none" else mutation)
    what = f"{scenario.name} {mutation} ({describe(scenario.program, job.arch)}) on {job.arch} {job.cpu}"
    if cell["observed"] == KNOWN_FALSE_POSITIVE:
        pytest.xfail(f"{what}: {cell['detail']}")
    found = _describe(cell["violations"], program)
    assert cell["verdict"] == "pass", f"{what}: {cell['verdict']}: {cell['detail']}\n{found}"
    observed, expected = set(cell["observed_rules"]), set(cell["expected_rules"])
    assert expected <= observed <= expected | set(cell["tolerated_rules"]), (observed, expected)
    assert cell["exit_code"] == 0 or cell["expected"] == "caught"
    if cell["expected"] == "clean":
        assert OK_MARKER in cell["detail"]
