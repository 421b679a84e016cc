"""The sanitizer's host side: build pipeline, plugin arguments, report reading and symbols."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from sanitizer_progs import build_program, variant_of_pc

from base.errors import InfraError, InputError
from ci.triage import events
from harness.qemu_cmdline import PluginSpec
from harness.sanitizer import REPORT_NAME, check_ctr_el0, plugin_spec, read_report, read_violations
from harness.sanitizer.build import check_header_matches, ensure_plugin, upstream_version

FIXTURES = Path(__file__).parent / "fixtures"


def test_plugin_builds_once_and_is_reused() -> None:
    first = ensure_plugin()
    mtime = first.stat().st_mtime_ns
    assert ensure_plugin() == first and first.stat().st_mtime_ns == mtime


def test_upstream_version_of_a_debian_version() -> None:
    assert upstream_version("1:10.0.2+ds-2+deb13u1~bpo12+1") == "10.0.2"
    with pytest.raises(InfraError, match="not-a-version"):
        upstream_version("not-a-version")


def test_a_header_of_another_qemu_version_is_refused(tmp_path: Path) -> None:
    header = tmp_path / "1_9.2.0+ds-1" / "qemu-plugin.h"
    header.parent.mkdir()
    header.write_text("#define QEMU_PLUGIN_VERSION 4\n")
    with pytest.raises(InfraError, match=r"QEMU 9\.2\.0 but qemu-system-aarch64 reports 10\."):
        check_header_matches(header)


CTRS = [("cortex-a57", "0x8444c004"), ("neoverse-n1", "0x9444c004"), ("neoverse-v1", "0xb444c004")]


@pytest.mark.parametrize(("cpu", "ctr"), CTRS)
def test_arm64_plugin_gets_the_models_ctr_el0(cpu: str, ctr: str, tmp_path: Path) -> None:
    spec = plugin_spec("arm64", cpu, tmp_path)
    assert spec.args["ctr_el0"] == ctr
    assert spec.args["ram_base"] == "0x40000000" and spec.args["ram_size"] == hex(1024 << 20)
    assert spec.args["out"] == str(tmp_path.resolve() / REPORT_NAME)
    option, value = spec.qemu_args()
    assert option == "-plugin" and value.startswith(f"{spec.path},arch=arm64,")


def test_plugin_spec_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sparc"):
        plugin_spec("sparc", None, tmp_path)
    with pytest.raises(InputError, match="pentium"):
        plugin_spec("arm64", "pentium", tmp_path)
    with pytest.raises(InputError, match="at most 2816"):
        plugin_spec("x86_64", None, tmp_path, memory_mb=4096)
    assert "ctr_el0" not in plugin_spec("riscv64", None, tmp_path).args


def _write_report(run_dir: Path, records: list[dict[str, object]]) -> None:
    (run_dir / REPORT_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))


def _violation(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "kind": "violation", "rule": "arm64.no_isb", "pc": "0x10050000", "vcpu": 0, "paddr": "0x42000000",
        "insn": "a00080d2", "writer_pc": "0x400100", "writer_vcpu": 1, "count": 1, "space": "user",
    }  # fmt: skip
    base.update(fields)
    return base


def test_report_keeps_the_highest_count_per_violation(tmp_path: Path) -> None:
    # The plugin appends each first occurrence at once and rewrites the file with counts at exit;
    # a killed QEMU can leave both forms.
    summary = {"kind": "summary", "calibrated": True}
    records = [_violation(count=1), _violation(count=7), _violation(rule="arm64.no_dsb"), summary]
    _write_report(tmp_path, records)
    got, got_summary = read_report(tmp_path)
    assert sorted((r["rule"], r["count"]) for r in got) == [("arm64.no_dsb", 1), ("arm64.no_isb", 7)]
    assert got_summary == summary


def test_violations_are_disassembled_and_symbolized(tmp_path: Path) -> None:
    program = build_program("x86_64", tmp_path)
    with open(program, "rb") as fh:
        symtab = ELFFile(fh).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols = symtab.get_symbol_by_name("main")
        assert symbols
        main = symbols[0]["st_value"]
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff81000000 T _stext\nffffffff81000100 t patch_me\nffffffff81000200 D data\n")
    _write_report(tmp_path, [
        _violation(rule="x86_64.no_serialize", pc=hex(main + 4), insn="b805000000"),
        _violation(rule="x86_64.no_serialize", pc="0xffffffff81000104", insn="0f0b", space="kernel"),
        {"kind": "summary", "calibrated": True},
    ])  # fmt: skip
    user, kernel = read_violations(tmp_path, "x86_64", [program], system_map)
    assert (user["symbol"], user["disasm"], user["pc"]) == ("main+0x4", "mov eax, 5", main + 4)
    assert user["paddr"] == 0x42000000
    assert (kernel["symbol"], kernel["disasm"], kernel["space"]) == ("patch_me+0x4", "ud2", "kernel")
    contract = "rule pc vcpu paddr insn disasm symbol writer_pc writer_vcpu count space"
    assert set(user) == set(contract.split())


def test_unusable_reports_are_infrastructure_errors(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="no report"):
        read_violations(tmp_path, "arm64")
    _write_report(tmp_path, [{"kind": "summary", "calibrated": False}])
    with pytest.raises(InfraError, match="never located guest RAM"):
        read_violations(tmp_path, "arm64")
    (tmp_path / REPORT_NAME).write_text("{not json\n")
    with pytest.raises(InfraError, match="not JSON"):
        read_violations(tmp_path, "arm64")
    with pytest.raises(InputError, match="mips"):
        read_violations(tmp_path, "mips")
    overflowed = {"kind": "summary", "calibrated": True, "events": 1 << 48, "events_overflowed": True}
    _write_report(tmp_path, [overflowed])
    with pytest.raises(InfraError, match="ran out of event numbers"):
        read_violations(tmp_path, "arm64")
    # Written at once (a guest still running has no summary yet), whatever else the report holds.
    _write_report(
        tmp_path, [_violation(), {"kind": "refused", "why": "several vCPUs run on one host thread"}]
    )
    with pytest.raises(InfraError, match="checked nothing: several vCPUs run on one host thread"):
        read_violations(tmp_path, "arm64")


@pytest.mark.parametrize("value", [0x8440C004, 0x8444C000, 0x844AC004, 0x1_8444_C004])
def test_a_ctr_el0_the_plugin_would_refuse_is_refused_before_qemu(value: int) -> None:
    with pytest.raises(InfraError, match=rf"ctr_el0={value:#x} .*DminLine.*1 to 9"):
        check_ctr_el0("arm64", "some-cpu", value)


def test_codegen_variants_are_told_apart_by_pc() -> None:
    assert variant_of_pc(0x1000_0000) == "clear_cache"
    assert variant_of_pc(0x1009_0FFC) == "cross_writer_only"
    assert variant_of_pc(0x1009_1000) is None and variant_of_pc(0x0FFF_FFFF) is None


@pytest.mark.qemu
def test_plugin_refuses_a_mismatched_target(tmp_path: Path) -> None:
    spec = plugin_spec("arm64", "cortex-a57", tmp_path)
    proc = subprocess.run(
        ["qemu-system-x86_64", "-M", "none", "-display", "none", *spec.qemu_args()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "arch=arm64 but QEMU emulates x86_64" in proc.stderr


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("argument", "message"),
    [("ctr_el0=0x4", "ctr_el0=0x4 is not a CTR_EL0 value; valid:"),
     ("ram_size=12", "ram_size=12 is not valid; valid: a number from 0x1000"),
     ("ram_base=-5", "ram_base=-5 is not valid; valid: a number from 0")],
)  # fmt: skip
def test_the_plugin_names_a_bad_argument_and_its_range(argument: str, message: str, tmp_path: Path) -> None:
    spec = plugin_spec("arm64", "cortex-a57", tmp_path)
    key, value = argument.split("=")
    bad = PluginSpec(spec.path, {**spec.args, key: value})
    proc = subprocess.run(
        ["qemu-system-aarch64", "-M", "none", "-display", "none", *bad.qemu_args()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_a_violation_keeps_what_its_judgement_rested_on(tmp_path: Path) -> None:
    # A real record: the false arm64.no_isb (since fixed) of a PCRE2 thread running text its other
    # thread had just faulted in; its events are what showed the mechanism.
    record = (FIXTURES / "sanitizer" / "arm64-n1-kernel-mapped-text.jsonl").read_text()
    (tmp_path / REPORT_NAME).write_text(record + json.dumps({"kind": "summary", "calibrated": True}) + "\n")
    (violation,) = read_violations(tmp_path, "arm64")
    assert violation["events"]["judged_by"] == "kernel"
    story = events(violation)
    assert "invalidates (IC) seen: event 1375480 on vCPU 0 by the kernel" in story[2]
    assert "first DSB after the store: on the writer's vCPU event 823977" in story[3]
    assert story[4] == "judged by the kernel's protocol; first step missing: arm64.no_isb"
    assert "last synchronized at event 1375222, its vCPU at event 1375221" in story[5]
    # Without them (older reports), the sentences come from the violation alone.
    del violation["events"]
    assert events(violation)[1].startswith("maintenance missing: arm64.no_isb")
