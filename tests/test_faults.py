"""The harness under injected faults and hostile input (no guest needed): results files torn by
SIGKILL, NaN and non-UTF-8 inputs, read-only caches, damaged images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.runs import RESULTS_FILE, RESULTS_SCHEMA, append_result, read_results

ROOT = Path(__file__).resolve().parent.parent
Completed = subprocess.CompletedProcess[str]


def test_a_torn_record_does_not_swallow_the_next(tmp_path: Path) -> None:
    results = tmp_path / "res"
    append_result(results, {"n": 1})
    with open(results / RESULTS_FILE, "ab") as fh:
        fh.write(b'{"n": 2, "stdout": "aaaa')  # a writer killed mid-record
    append_result(results, {"n": 3})
    records, skipped = read_results(results)
    assert [r["n"] for r in records] == [1, 3]
    assert all(r["schema"] == RESULTS_SCHEMA for r in records)
    assert len(skipped) == 1 and ":2: not JSON" in skipped[0]


def test_a_torn_last_record_is_reported_as_torn(tmp_path: Path) -> None:
    results = tmp_path / "res"
    append_result(results, {"n": 1})
    with open(results / RESULTS_FILE, "ab") as fh:
        fh.write(b'{"n": 2, "std')
    records, skipped = read_results(results)
    assert [r["n"] for r in records] == [1] and "torn record" in skipped[0]


def test_records_of_another_schema_are_skipped_and_named(tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).write_text('{"verdict": "pass"}\n{"schema": 99}\n')
    records, skipped = read_results(tmp_path)
    assert records == [] and "schema None" in skipped[0] and "schema 99" in skipped[1]


def test_sigkill_while_appending_a_large_record_loses_only_that_record(tmp_path: Path) -> None:
    results = tmp_path / "res"
    append_result(results, {"n": 1})
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from harness.runs import append_result\n"
         "while True: append_result(Path(sys.argv[1]), {'n': 2, 'stdout': 'x' * 300_000_000})",
         str(results)],
        cwd=ROOT,
    )  # fmt: skip
    path = results / RESULTS_FILE
    deadline = time.monotonic() + 120
    start = path.stat().st_size
    while path.stat().st_size < start + 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.001)  # the worst moment: the record is partly written
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    append_result(results, {"n": 3})
    records, _ = read_results(results)
    assert records[0]["n"] == 1 and records[-1]["n"] == 3
    assert json.loads(path.read_bytes().splitlines()[-1])["n"] == 3


def _jitprobe(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Completed:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "JITPROBE_RUNS": str(tmp_path / "runs"), **(env or {})},
    )  # fmt: skip


def test_non_utf8_assembler_is_an_input_error(tmp_path: Path) -> None:
    source = tmp_path / "prog.s"
    source.write_bytes(b"mov r0, 1\n\xff\xfeexit\n")
    proc = _jitprobe(tmp_path, "jit", "build", str(source), "--arch", "arm64", "-o", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and str(source) in proc.stderr
    assert "byte 0xff at offset 10" in proc.stderr


def test_non_utf8_conformance_file_is_an_input_error(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bad.data").write_bytes(b"-- asm\nmov %r0, 1\n\xc3(exit\n-- result\n0x1\n")
    proc = _jitprobe(tmp_path, "jit", "conformance", str(suite), "--arch", "x86_64", "--json")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "bad.data: not UTF-8 text" in proc.stderr


def _one_json(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout[:500]
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def test_an_input_error_with_json_still_prints_one_object(tmp_path: Path) -> None:
    proc = _jitprobe(tmp_path, "exec", "--arch", "sparc", "--json", "--guest-cmd", "true")
    assert proc.returncode == 2 and "sparc" in proc.stderr
    assert _one_json(proc.stdout)["verdict"] == "usage"
    proc = _jitprobe(tmp_path, "exec", "--json", "--guest-cmd", "true")  # argparse: --arch missing
    assert proc.returncode == 2 and _one_json(proc.stdout) == {
        "verdict": "usage", "error": "invalid arguments", "exit_code": 2}


@pytest.mark.qemu
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_an_interrupted_run_says_so_on_stderr_and_in_its_json(signum: int, tmp_path: Path) -> None:
    command = ["exec", "--arch", "riscv64", "--json", "--guest-cmd", "sleep 30"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *command],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "JITPROBE_RUNS": str(tmp_path / "runs")},
    )  # fmt: skip
    time.sleep(3)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert _one_json(stdout)["verdict"] == "interrupted"
    assert ("interrupted" in stderr) and (signum == signal.SIGINT or f"by {name}" in stderr), stderr
    assert proc.returncode == 128 + signum if signum != signal.SIGINT else proc.returncode == 130
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).returncode == 1  # no QEMU left


@pytest.mark.qemu
@pytest.mark.parametrize("channel", ["/dev/console", "/dev/kmsg"])
def test_a_guest_cannot_forge_the_end_of_its_command(channel: str, tmp_path: Path) -> None:
    forge = " ".join(f"echo JP-DONE-{n}-0 > {channel};" for n in range(0, 4))
    proc = _jitprobe(tmp_path, "exec", "--arch", "riscv64", "--json", "--guest-cmd",
                     f"{forge} sleep 2; echo real; exit 5")  # fmt: skip
    result = _one_json(proc.stdout)
    assert (result["verdict"], result["exit_code"], result["stdout"]) == ("fail", 5, "real\n"), result


def _read_only(path: Path) -> list[str]:
    """A command prefix that runs the rest with ``path`` mounted read-only (a private mount)."""
    return ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{path}" "{path}" && exec "$@"', "ro"]


@pytest.mark.qemu
def test_a_read_only_cache_boots_its_good_image(tmp_path: Path) -> None:
    from base.files import cache_root
    from images.build import ensure_images

    ensure_images("riscv64")
    boot = [sys.executable, "-m", "harness.cli", "boot", "--arch", "riscv64", "--json"]
    proc = subprocess.run(
        [*_read_only(cache_root()), *boot], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JITPROBE_RUNS": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0 and _one_json(proc.stdout)["verdict"] == "pass", proc.stderr


def test_a_read_only_empty_cache_is_an_infrastructure_error(tmp_path: Path) -> None:
    cache_home = tmp_path / "cache"
    cache_home.mkdir()
    for command in (["boot", "--arch", "riscv64", "--json"], ["images", "build", "--arch", "riscv64"]):
        proc = subprocess.run(
            [*_read_only(cache_home), sys.executable, "-m", "harness.cli", *command], cwd=ROOT,
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "XDG_CACHE_HOME": str(cache_home), "JITPROBE_RUNS": str(tmp_path / "runs")},
        )  # fmt: skip
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stderr and "Read-only file system" in proc.stderr, proc.stderr
        assert "XDG_CACHE_HOME" in proc.stderr
        if "--json" in command:
            assert _one_json(proc.stdout)["verdict"] == "infra"


def _dynamic_x86_64_elf(tmp_path: Path) -> Path:
    source = tmp_path / "hello.c"
    source.write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "hello"), str(source)], check=True, timeout=120)
    return tmp_path / "hello"


def test_programs_the_guest_cannot_run_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "text").write_text("just some words\n")
    (tmp_path / "random").write_bytes(os.urandom(4096).replace(b"#!", b"xx").replace(b"\x7fELF", b"xxxx"))
    (tmp_path / "folder").mkdir()
    cases = {
        str(_dynamic_x86_64_elf(tmp_path)): "dynamically linked (it asks for /lib64/ld-linux-x86-64.so.2)",
        str(tmp_path / "empty"): "an empty file",
        str(tmp_path / "text"): "neither an ELF executable nor a script",
        str(tmp_path / "random"): "neither an ELF executable nor a script",
        str(tmp_path / "folder"): "a directory, not a program",
    }
    for path, why in cases.items():
        proc = _jitprobe(tmp_path, "exec", "--arch", "x86_64", "--json", path)
        assert proc.returncode == 2, (path, proc.stderr)
        assert path in proc.stderr and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert _one_json(proc.stdout)["verdict"] == "usage"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no guest started


def test_jit_build_errors_name_the_programs_own_instructions(tmp_path: Path) -> None:
    (tmp_path / "jump.s").write_text("mov %r0, 1\nja +5\nexit\n")
    (tmp_path / "empty.s").write_text("")
    jump = "instruction 1 (ja +5): target slot 7 is outside the program (slots 0..2)"
    for name, message in (("jump.s", jump), ("empty.s", "the program is empty")):
        output = str(tmp_path / "o")
        proc = _jitprobe(tmp_path, "jit", "build", str(tmp_path / name), "--arch", "riscv64", "-o", output)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_a_broken_conformance_file_reports_what_it_expected() -> None:
    from jit_core.conformance import parse_test

    test = parse_test("broken", "-- asm\nmov %r0, 1\nbogus %r1\nexit\n-- result\n0x1\n")
    assert test.problem and "bogus" in test.problem and test.result == 1


@pytest.mark.qemu
def test_guest_output_is_bounded_in_the_result_and_the_run_folder(tmp_path: Path) -> None:
    proc = _jitprobe(tmp_path, "exec", "--arch", "riscv64", "--json", "--output-limit", "1000",
                     "--output-disk-limit", "131072", "--results", str(tmp_path / "res"), "--guest-cmd",
                     "yes | head -c 3000000; yes e | head -c 200000 >&2; exit 3")  # fmt: skip
    result = _one_json(proc.stdout)
    assert (result["verdict"], result["exit_code"]) == ("fail", 3)
    assert (result["stdout_bytes"], result["stderr_bytes"]) == (3_000_000, 200_000)
    assert result["stdout_truncated"] and result["stderr_truncated"]
    assert len(result["stdout"]) == 1000 and len(result["stderr"]) == 1000
    assert len(proc.stdout) < 20_000
    stored = sum(f.stat().st_size for f in (tmp_path / "runs").rglob("*") if f.is_file())
    assert stored < 2 * 131072 + 500_000, stored  # both streams' files, the console log, the records
