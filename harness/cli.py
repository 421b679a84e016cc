"""The ``jitprobe`` command line: boot, exec and shell, plus the subcommands other parts register.

Results follow ../shared/CONTRACT.md. With --json, stdout carries exactly one JSON object;
progress goes to stderr, and only when stderr is a terminal. Exit status: 0 pass, 1 fail, crash or
timeout, 2 input error, 3 infrastructure error.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from base import progress
from base.contract import BootResult, ExecResult, Verdict
from base.errors import (
    EXIT_FAIL,
    EXIT_INFRA,
    EXIT_PASS,
    EXIT_USAGE,
    GuestError,
    InfraError,
    InputError,
    JitprobeError,
)
from base.profiles import Profile, available_arches, env_slowdown, load_profile
from base.progress import status
from harness import guest as guest_mod
from harness import sanitizer
from harness.guest import OUTPUT_DISK_LIMIT, Guest
from harness.jit_commands import add_jit_parser
from harness.runs import append_result, new_run_dir
from harness.stress.cli import add_run_parser
from images.commands import add_images_parser
from jit_core.errors import JitError
from litmus.cli import add_litmus_parser

__all__ = ["SUBCOMMAND_PROVIDERS", "build_parser", "cmd_boot", "cmd_exec", "cmd_shell", "main"]

# Subcommands other parts add: each takes the subparsers object and sets ``func`` (args -> exit
# status) with set_defaults.
SUBCOMMAND_PROVIDERS: tuple[Callable[[Any], None], ...] = (
    add_images_parser, add_jit_parser, add_litmus_parser, add_run_parser,
)

_ERR = progress.STDERR


def _emit(args: argparse.Namespace, result: BootResult | ExecResult, human: Callable[[], None]) -> None:
    if args.json:
        progress.print_json(result)
    else:
        human()


def _exit_code(verdict: Verdict) -> int:
    return {"pass": EXIT_PASS, "infra": EXIT_INFRA}.get(verdict, EXIT_FAIL)


def _add_guest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help=f"guest architecture ({', '.join(available_arches())})")
    parser.add_argument("--cpu", help="QEMU CPU model (default: the profile's)")
    parser.add_argument("--smp", type=int, help="number of vCPUs (default: the profile's)")
    parser.add_argument(
        "--accel", choices=("tcg", "kvm", "auto"), help="accelerator (default: the profile's)"
    )


def _profile(args: argparse.Namespace) -> Profile:
    profile = load_profile(args.arch)
    profile.cpu_model(args.cpu)  # unknown model: InputError listing the known ones
    guest_mod.check_smp(args.smp)
    env_slowdown()  # a bad JITPROBE_SLOWDOWN is refused before anything starts
    return profile


# -- boot ---------------------------------------------------------------------------------


def cmd_boot(args: argparse.Namespace) -> int:
    """Boot a fresh guest to readiness and shut it down."""
    profile = _profile(args)
    result: BootResult = {
        "arch": profile.arch, "cpu": profile.cpu_model(args.cpu).name, "smp": args.smp or profile.smp,
        "qemu_version": None, "kernel": None, "ready_s": None, "verdict": "infra",
    }  # fmt: skip
    run_dir = new_run_dir("boot", profile.arch)
    guest: Guest | None = None
    try:
        guest = Guest(profile, run_dir=run_dir, cpu=args.cpu, smp=args.smp, accel=args.accel)
        with status(f"booting {profile.arch} ({guest.cpu}, {guest.accel})"), guest:
            result["verdict"] = "pass"
    except (GuestError, InfraError) as exc:
        result["verdict"] = _report(profile.arch, exc)
    if guest is not None:
        result["qemu_version"] = guest.qemu_version
        result["kernel"] = guest.image.kernel_version if guest.image is not None else None
        result["ready_s"] = round(guest.ready_s, 3) if guest.ready_s is not None else None
    return _finish(args, "boot", result, run_dir, lambda: print(
        f"{result['arch']} ({result['cpu']}, smp {result['smp']}): {result['verdict']}, ready in "
        f"{result['ready_s']} s, kernel {result['kernel']}, QEMU {result['qemu_version']}; log {run_dir}"
    ))  # fmt: skip


# -- exec ---------------------------------------------------------------------------------


def _guest_command(args: argparse.Namespace, guest: Guest) -> str:
    if args.guest_cmd is not None:
        return str(args.guest_cmd)
    path = Path(args.file)
    return shlex.join([guest.copy(path, _guest_name(path)), *args.args])


def _guest_name(path: Path) -> str:
    safe = "".join(c if c.isalnum() or c in "_.+-" else "_" for c in path.name).lstrip(".")
    return (safe or "program")[:100]  # the share's file-name limit


def cmd_exec(args: argparse.Namespace) -> int:
    """Run a host executable, or a shell command, in a fresh guest."""
    if (args.file is None) == (args.guest_cmd is None):
        raise InputError("program", args.file, hint="give either FILE [ARGS...] or --guest-cmd CMD, not both")
    if args.file is not None and not Path(args.file).exists():
        raise InputError("FILE", args.file, hint="no such file")
    if args.timeout is not None and not 0 < args.timeout < math.inf:
        raise InputError("--timeout", args.timeout, hint="a positive, finite number of seconds")
    profile = _profile(args)
    _check_program(args.file, profile)
    run_dir = new_run_dir("exec", profile.arch)
    result: ExecResult = {
        "arch": profile.arch, "cpu": profile.cpu_model(args.cpu).name, "smp": args.smp or profile.smp,
        "verdict": "infra", "exit_code": None, "stdout": "", "console_tail": "", "wall_s": None,
        "violations": [], "stderr": "", "stdout_bytes": 0, "stderr_bytes": 0, "stdout_truncated": False,
        "stderr_truncated": False,
    }  # fmt: skip
    started = time.monotonic()
    guest: Guest | None = None
    kernel_symbols: Path | None = None
    try:
        plugin = sanitizer.plugin_spec(profile.arch, args.cpu, run_dir) if args.sanitize else None
        guest = Guest(profile, run_dir=run_dir, cpu=args.cpu, smp=args.smp, accel=args.accel, plugin=plugin,
                      output_disk_limit=args.output_disk_limit)  # fmt: skip
        with status(f"booting {profile.arch} ({guest.cpu}, {guest.accel})"), guest:
            command = _guest_command(args, guest)
            with status(f"running {command}"):
                outcome = guest.run(command, timeout=args.timeout, keep=args.output_limit)
            if args.sanitize and guest.alive and sanitizer.kernel_violations_seen(run_dir):
                kernel_symbols = sanitizer.save_kernel_symbols(guest)
        result["verdict"], result["exit_code"] = outcome.verdict, outcome.exit_code
        result["console_tail"] = outcome.console_tail
        result["stdout"] = outcome.stdout.decode("utf-8", errors="backslashreplace")
        result["stderr"] = outcome.stderr.decode("utf-8", errors="backslashreplace")
        result["stdout_bytes"], result["stderr_bytes"] = outcome.stdout_bytes, outcome.stderr_bytes
        result["stdout_truncated"] = outcome.stdout_truncated
        result["stderr_truncated"] = outcome.stderr_truncated
        if outcome.crash is not None:
            _ERR.print(
                f"{profile.arch}: {outcome.crash.kind}: {outcome.crash.line}", markup=False, highlight=False
            )
    except (GuestError, InfraError) as exc:
        result["verdict"] = _report(profile.arch, exc)
        tail = exc.console_tail if isinstance(exc, GuestError) else ""
        result["console_tail"] = tail or (guest.console_tail() if guest is not None else "")
    result["wall_s"] = round(time.monotonic() - started, 3)
    if args.sanitize and guest is not None and result["verdict"] != "infra":
        try:
            result["violations"] = sanitizer.read_violations(
                run_dir,
                profile.arch,
                binaries=[Path(args.file)] if args.file else [],
                system_map=kernel_symbols,
            )
        except InfraError as exc:
            result["verdict"] = _report(profile.arch, exc)
        if result["violations"] and result["verdict"] == "pass":
            result["verdict"] = "fail"
    return _finish(args, "exec", result, run_dir, lambda: _print_exec(result, run_dir))


def _report(arch: str, exc: GuestError | InfraError) -> Verdict:
    """Print whose fault ``exc`` is on stderr; return its verdict."""
    if isinstance(exc, GuestError):
        _ERR.print(f"{arch}: {exc.verdict}: {exc}", markup=False, highlight=False)
        return exc.verdict
    _ERR.print(f"jitprobe: infrastructure error: {exc}", markup=False, highlight=False)
    return "infra"


OUTPUT_LIMIT = 1 << 20  # of each stream, in the JSON result


def _byte_count(text: str) -> int:
    """A --output-limit value: a whole number of bytes, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid byte count: {text!r} (a whole number, at least 1)")
    return value


def _check_program(file: str | None, profile: Profile) -> None:
    """Refuse a FILE the guest cannot run: a directory, an empty file, something that is neither
    a script (#!) nor an ELF executable, an ELF for another architecture, or a dynamically linked
    one (the guest has no libraries). Raises InputError naming the file and what it is."""
    if file is None:
        return
    path = Path(file)
    if path.is_dir():
        raise InputError("FILE", file, hint="a directory, not a program")
    try:
        with open(path, "rb") as fh:
            header = fh.read(64)
    except OSError as exc:
        raise InputError("FILE", file, hint=exc.strerror or "cannot be read") from exc
    if not header:
        raise InputError("FILE", file, hint="an empty file, not a program")
    if header.startswith(b"#!"):
        return  # a script; the guest's shell runs its interpreter
    if header[:4] != b"\x7fELF":
        raise InputError("FILE", file, hint="neither an ELF executable nor a script starting with #!")
    if len(header) < 20:
        raise InputError("FILE", file, hint="a truncated ELF header")
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    if machine != profile.elf_machine:
        raise InputError(
            "FILE", file, hint=f"an ELF for machine {machine}, not {profile.arch} ({profile.elf_machine})"
        )
    interpreter = _elf_interpreter(path)
    if interpreter is not None:
        raise InputError("FILE", file, hint=f"dynamically linked (it asks for {interpreter}), and the guest "
                         "has no shared libraries: link it statically")  # fmt: skip


def _elf_interpreter(path: Path) -> str | None:
    """The PT_INTERP path of an ELF file, or None. Raises InputError for a damaged ELF."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import InterpSegment

    try:
        with open(path, "rb") as fh:
            for segment in ELFFile(fh).iter_segments():
                if isinstance(segment, InterpSegment):
                    return str(segment.get_interp_name())
    except (ELFError, OSError, ValueError) as exc:
        raise InputError("FILE", str(path), hint=f"a damaged ELF file ({exc})") from exc
    return None


def _print_exec(result: ExecResult, run_dir: Path) -> None:
    sys.stdout.write(result["stdout"])
    print(
        f"{result['arch']} ({result['cpu']}, smp {result['smp']}): {result['verdict']}, exit status "
        f"{result['exit_code']}, {result['wall_s']} s, {len(result['violations'])} violation(s); "
        f"log {run_dir}",
        file=sys.stderr,
    )
    if result["verdict"] in ("crash", "timeout"):
        print(result["console_tail"], file=sys.stderr)


def _finish(
    args: argparse.Namespace, command: str, result: BootResult | ExecResult, run_dir: Path,
    human: Callable[[], None],
) -> int:
    """Print the result, then keep it; a result that cannot be kept makes the exit status 3."""
    _emit(args, result, human)
    try:
        _record(args, command, result, run_dir)
    except InfraError as exc:
        _report(result["arch"], exc)
        return EXIT_INFRA
    return _exit_code(result["verdict"])


def _record(args: argparse.Namespace, command: str, result: BootResult | ExecResult, run_dir: Path) -> None:
    """Keep the result in the run folder and, with --results DIR, append it to DIR/results.jsonl."""
    record = {
        "command": command,
        "run_dir": str(run_dir),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **result,
    }
    (run_dir / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    if getattr(args, "results", None):
        append_result(Path(args.results), record)


# -- shell --------------------------------------------------------------------------------


def cmd_shell(args: argparse.Namespace) -> int:
    """An interactive console on a fresh guest; Ctrl-] leaves and stops it."""
    profile = _profile(args)
    run_dir = new_run_dir("shell", profile.arch)
    guest = Guest(profile, run_dir=run_dir, cpu=args.cpu, smp=args.smp, accel=args.accel)
    with status(f"booting {profile.arch} ({guest.cpu}, {guest.accel})"):
        guest.start()
    try:
        print(f"{profile.arch} guest ready in {guest.ready_s:.2f} s; /mnt/host is {guest.share_dir}; "
              "Ctrl-] leaves", file=sys.stderr)  # fmt: skip
        guest.interact()
    finally:
        guest.stop()
    return EXIT_PASS


# -- main ---------------------------------------------------------------------------------


def build_parser(extra: tuple[Callable[[Any], None], ...] = ()) -> argparse.ArgumentParser:
    """The argument parser with every subcommand, including those other modules provide
    (SUBCOMMAND_PROVIDERS, then ``extra``: the parts above harness, e.g. ci.cli)."""
    parser = argparse.ArgumentParser(
        prog="jitprobe", description="Checks that code generated at run time is the code the CPU runs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    boot = sub.add_parser("boot", help="boot a fresh guest to readiness and shut it down")
    _add_guest_options(boot)
    boot.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    boot.add_argument("--results", metavar="DIR", help="append the result to DIR/results.jsonl")
    boot.set_defaults(func=cmd_boot)

    exe = sub.add_parser("exec", help="run a static executable or a shell command in a fresh guest")
    _add_guest_options(exe)
    exe.add_argument("--sanitize", action="store_true", help="load the coherency sanitizer plugin")
    exe.add_argument("--timeout", type=float, metavar="S", help="time limit of the program (seconds)")
    exe.add_argument("--output-limit", type=_byte_count, default=OUTPUT_LIMIT, metavar="BYTES",
                     help=f"bytes of stdout and of stderr kept in the result (default {OUTPUT_LIMIT})")
    exe.add_argument("--output-disk-limit", type=_byte_count, default=OUTPUT_DISK_LIMIT, metavar="BYTES",
                     help="bytes of each stream kept in the run folder; the rest is only counted "
                          f"(default {OUTPUT_DISK_LIMIT})")  # fmt: skip
    exe.add_argument("--results", metavar="DIR", help="append the result to DIR/results.jsonl")
    exe.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    exe.add_argument("--guest-cmd", metavar="CMD", help="command for the guest's /bin/sh instead of FILE")
    exe.add_argument("file", nargs="?", metavar="FILE", help="host executable to copy into the guest")
    exe.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments of FILE")
    exe.set_defaults(func=cmd_exec)

    shell = sub.add_parser("shell", help="interactive console on a fresh guest")
    _add_guest_options(shell)
    shell.set_defaults(func=cmd_shell)

    for add_parser in (*SUBCOMMAND_PROVIDERS, *extra):
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None, parser: Callable[[], argparse.ArgumentParser] | None = None) -> int:
    """Entry point of the ``jitprobe`` console script; returns the exit status. ``parser`` builds
    the argument parser (default build_parser; ci.cli adds the commands of the parts above).

    With --json, exactly one JSON object reaches stdout whatever happens: the command's result, or
    ``{"verdict", "error", "exit_code"}`` when the command could not give one (verdict ``usage``
    for bad input, ``infra``, or ``interrupted`` by Ctrl-C, SIGTERM or SIGHUP)."""
    guest_mod.install_signal_handlers()
    words = sys.argv[1:] if argv is None else argv
    want_json = "--json" in words
    try:
        args = (parser or build_parser)().parse_args(argv)
    except SystemExit as exc:  # argparse has printed what is wrong and the usage on stderr
        if want_json and exc.code:
            progress.print_json({"verdict": "usage", "error": "invalid arguments", "exit_code": 2})
        raise
    verdict, status, message = "usage", EXIT_USAGE, ""
    try:
        return int(args.func(args))
    except JitprobeError as exc:
        verdict = "usage" if exc.exit_code == EXIT_USAGE else "infra"
        status, message = exc.exit_code, str(exc)
    except JitError as exc:  # a program or suite jit_core refuses is the user's input
        message = str(exc)
    except KeyboardInterrupt:
        verdict, status, message = "interrupted", 130, "interrupted"
    except SystemExit as exc:  # SIGTERM or SIGHUP (install_signal_handlers)
        code = exc.code if isinstance(exc.code, int) else 1
        if code <= 128:
            raise
        name = signal.Signals(code - 128).name
        verdict, status, message = "interrupted", code, f"interrupted by {name}"
    finally:
        guest_mod.stop_all()
    print(f"jitprobe: {message}", file=sys.stderr)
    if getattr(args, "json", False) and not progress.json_printed():
        progress.print_json({"verdict": verdict, "error": message, "exit_code": status})
    return status


if __name__ == "__main__":
    sys.exit(main())
