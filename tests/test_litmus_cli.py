"""``jitprobe litmus check`` and ``jitprobe litmus jit`` as the CONTRACT describes them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from litmus_corpus import corpus

JITPROBE = [sys.executable, "-m", "harness.cli", "litmus"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JITPROBE, *args], capture_output=True, text=True, timeout=300)


def test_check_json_follows_the_contract() -> None:
    proc = _run(
        "check", str(corpus("bpf", "SB+poonceonces.litmus")), str(corpus("aarch64", "MP.litmus")), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["test"], r["model"], r["verdict"]) for r in results] == [
        ("SB+poonceonces", "bpf", "Allowed"),
        ("MP", "armv8", "Allowed"),
    ]
    assert {"test", "model", "verdict", "states", "witnesses"} <= set(results[0])
    assert "0:r2=0; 1:r2=0;" in results[0]["states"] and results[0]["witnesses"] == 1


def test_check_text_names_verdict_and_states() -> None:
    proc = _run("check", str(corpus("x86_64", "SB.litmus")), "--model", "x86-tso")
    assert proc.returncode == 0
    assert "Test SB Allowed (model x86-tso)" in proc.stdout and "States 4" in proc.stdout


def test_a_bad_file_is_an_input_error_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.litmus"
    bad.write_text("BPF bad\n{ 0:r1=x; }\n P0 ;\n r1 = frobnicate(r2) ;\nexists (0:r1=1)\n")
    proc = _run("check", str(bad))
    assert proc.returncode == 2 and f"{bad}:4" in proc.stderr and "expected a BPF instruction" in proc.stderr


def test_jit_reports_a_lowering_bug_with_witness_and_disassembly() -> None:
    test = str(corpus("bpf", "MP+pooncerelease+poacquireonce.litmus"))
    proc = _run("jit", test, "--arch", "all", "--mutation", "acquire_as_plain", "--json")
    assert proc.returncode == 1, proc.stderr
    results = {r["arch"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {"x86_64", "arm64", "riscv64"}
    assert results["x86_64"]["verdict"] == "pass" and results["x86_64"]["extra_states"] == []
    for arch in ("arm64", "riscv64"):
        r = results[arch]
        assert (
            r["verdict"] == "fail"
            and r["source_verdict"] == "Forbidden"
            and r["compiled_verdict"] == "Allowed"
        )
        assert r["extra_states"] and r["witness"]["state"] == r["extra_states"][0] and r["witness"]["rf"]
    text = _run("jit", test, "--arch", "arm64", "--mutation", "acquire_as_plain")
    assert text.returncode == 1 and "witness of" in text.stdout and "ldr w" in text.stdout


def test_jit_of_correct_lowering_passes() -> None:
    proc = _run("jit", str(corpus("bpf", "SB+fencembonceonces.litmus")), "--arch", "arm64")
    assert proc.returncode == 0 and proc.stdout.startswith("PASS SB+fencembonceonces on arm64")


def test_jit_refuses_an_unknown_architecture() -> None:
    proc = _run("jit", str(corpus("bpf", "SB+poonceonces.litmus")), "--arch", "sparc")
    assert proc.returncode == 2 and "sparc" in proc.stderr
