"""A QEMU guest driven over its serial console, with QMP for control.

``Guest`` boots a profile's kernel and initramfs, waits for the readiness marker, runs commands
on the guest shell and stops QEMU. Commands run as ``sh <script>`` with stdout and stderr
redirected to files in the run folder's ``share/`` (the guest's /mnt/host over virtio-9p), so
program output is byte-exact; the console carries only markers, exit status and kernel text,
and is logged to ``console.log`` in the run folder as it arrives.

No QEMU outlives its Guest: ``stop()`` runs from ``with`` blocks (which Ctrl-C, and SIGTERM and
SIGHUP once the CLI installs their handlers, unwind) and an atexit hook, and QEMU is started with
PR_SET_PDEATHSIG so that it is killed when the process that started it dies, even by SIGKILL.
(QEMU leads a session of its own on pexpect's pty, so a kill of our process group does not reach
it; the pty's hang-up when we die sends it SIGHUP too, which QEMU also exits on.)
The death signal is tied to the thread that called ``start()``: start and stop a guest in the
same thread.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import pexpect
from qemu.qmp.legacy import QEMUMonitorProtocol

from base.contract import Verdict
from base.errors import InfraError, InputError
from base.profiles import Profile
from harness import console
from harness.console import CrashReport
from harness.qemu_cmdline import LaunchSpec, PluginSpec, Share, build_argv, check_binary, resolve_accel
from harness.verdicts import WaitOutcome, check_boot, command_verdict
from images.build import GuestImage, ensure_images

__all__ = [
    "GUEST_SHARE",
    "MAX_SMP",
    "CommandResult",
    "Guest",
    "check_smp",
    "done_pattern",
    "install_signal_handlers",
    "kill_all",
    "stop_all",
]

GUEST_SHARE = "/mnt/host"
"""Where the run folder's share/ appears in the guest."""
_WORK = ".jitprobe"
"""Folder inside the share for command scripts and their output."""
_PR_SET_PDEATHSIG = 1
_QMP_TIMEOUT_S = 5.0
# A TCG plugin (the sanitizer) may make a guest up to this much slower (bench/sanitizer.py
# measures at most 2x); time limits grow with it, so that a loaded host does not turn a
# sanitized boot into a timeout.
PLUGIN_SLOWDOWN = 2.0
_POLL_S = 0.02
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,100}$")


@dataclass
class CommandResult:
    """The outcome of one guest command.

    ``verdict`` is pass (exit status 0), fail (another status), crash (kernel crash report or a
    fatal signal; ``crash`` says which) or timeout. ``exit_code`` is None when the command did
    not finish. ``console`` is the console text printed while it ran, ``kmsg`` the kernel log
    lines it produced, ``console_tail`` the end of the whole console log."""

    command: str
    verdict: Verdict
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    console: str
    kmsg: str
    console_tail: str
    wall_s: float
    crash: CrashReport | None = None
    crashes: list[CrashReport] = field(default_factory=list)
    stdout_bytes: int = 0  # how much the program wrote, also beyond what stdout/stderr keep
    stderr_bytes: int = 0

    @property
    def stdout_truncated(self) -> bool:
        return self.stdout_bytes > len(self.stdout)

    @property
    def stderr_truncated(self) -> bool:
        return self.stderr_bytes > len(self.stderr)


# What a guest keeps on disk of each output stream of a command (run folder's share/); the rest
# is only counted. The host reads back at most what the caller keeps (Guest.run's ``keep``).
OUTPUT_DISK_LIMIT = 64 << 20
_BLOCK = 65536


MAX_SMP = 64


def check_smp(smp: int | None) -> None:
    """Refuse a vCPU count outside 1..MAX_SMP (None means the profile's). Raises InputError."""
    if smp is not None and not 1 <= smp <= MAX_SMP:
        raise InputError("vCPU count (--smp)", smp, hint=f"1 to {MAX_SMP}")


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn of QEMU: be killed when the starting thread exits; exit if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def done_pattern(marker: str) -> re.Pattern[bytes]:
    """The end of a command on the console: ``marker``, a dash and the exit status.

    The status ends at the first non-digit, not at a line end: a status split across two reads
    must not match half, and the kernel prints on the same console (dmesg -n 7) whenever it
    likes, between the status and its line end too (seen on a loaded host: "JP-DONE-...-0[
    8.563889] hrtimer: interrupt took 44686752 ns")."""
    return re.compile(rf"{re.escape(marker)}-(\d+)(?=\D)".encode())

class Guest:
    """A QEMU guest of one profile. Use as a context manager, or call start() and stop().

    ``image`` is an ``images.build.GuestImage``; when None, start() calls
    ``images.build.ensure_images(profile.arch)``. ``accel`` overrides the profile's accelerator
    (tcg, kvm or auto); a plugin forces TCG. All waits are scaled by ``profile.scaled``."""

    def __init__(
        self,
        profile: Profile,
        *,
        run_dir: Path,
        cpu: str | None = None,
        smp: int | None = None,
        plugin: PluginSpec | None = None,
        accel: str | None = None,
        image: GuestImage | None = None,
        memory_mb: int | None = None,
        extra_append: str = "",
        output_disk_limit: int = OUTPUT_DISK_LIMIT,
    ):
        self.profile = profile
        self.cpu = profile.cpu_model(cpu).name
        check_smp(smp)
        self.smp = smp or profile.smp
        self.plugin = plugin
        self.accel = resolve_accel(profile, accel, plugin)
        self.run_dir = Path(run_dir).resolve()
        self.share_dir = self.run_dir / "share"
        self.console_log = self.run_dir / "console.log"
        self.image = image
        self.memory_mb = memory_mb
        self.extra_append = extra_append
        self.output_disk_limit = output_disk_limit
        self.token = secrets.token_hex(8)
        self.qemu_version: str | None = None
        self.ready_s: float | None = None
        self.argv: list[str] = []
        self._child: pexpect.spawn | None = None
        self._qmp: QEMUMonitorProtocol | None = None
        self._log: IO[bytes] | None = None
        self._buffer = bytearray()
        self._commands = 0
        self._usable = False
        self._qmp_socket: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        """Whether QEMU is running."""
        return self._child is not None and self._child.isalive()

    def _scaled(self, seconds: float) -> float:
        """A time limit scaled by the profile, JITPROBE_SLOWDOWN and the plugin's slowdown."""
        return self.profile.scaled(seconds) * (PLUGIN_SLOWDOWN if self.plugin is not None else 1.0)

    def start(self) -> None:
        """Boot the guest and wait for its readiness marker.

        Raises InfraError (QEMU or image missing, QEMU exited before booting, QMP failed),
        GuestCrash (the kernel crashed while booting) or GuestTimeout (no marker in time).
        QEMU is stopped before any of them propagates."""
        if self._child is not None:
            raise InfraError("Guest.start() called twice")
        image = self.image if self.image is not None else ensure_images(self.profile.arch)
        self.image = image
        binary = check_binary(self.profile)
        for path in (image.kernel, image.initramfs):
            if not Path(path).is_file():
                raise InfraError(
                    f"guest image file missing: {path} (run `jitprobe images build --arch "
                    f"{self.profile.arch}`)"
                )
        (self.share_dir / _WORK).mkdir(parents=True, exist_ok=True)
        self._qmp_socket = _qmp_socket_path(self.run_dir)
        spec = self._launch_spec(image, self._qmp_socket)
        self.argv = build_argv(self.profile, spec)
        self.argv[0] = binary
        (self.run_dir / "qemu-argv.txt").write_text("\n".join(self.argv) + "\n")
        spec.qmp_socket.unlink(missing_ok=True)
        # Unbuffered, so console.log is current while the run lasts; closed by stop().
        self._log = open(self.console_log, "ab", buffering=0)  # noqa: SIM115
        started = time.monotonic()
        parent = os.getpid()
        _LIVE.add(self)
        try:
            self._child = pexpect.spawn(
                self.argv[0], self.argv[1:], env=os.environ.copy(), echo=False, use_poll=True,
                dimensions=(50, 400), preexec_fn=lambda: _die_with_parent(parent),
            )  # fmt: skip
            limit = self._scaled(self.profile.timeouts.boot_s)
            self._connect_qmp(spec.qmp_socket, started + limit)
            outcome, _ = self._wait_for(
                re.compile(re.escape(f"JITPROBE-READY-{self.token}".encode())), 0, started + limit
            )
            if outcome == "match":
                self.ready_s = time.monotonic() - started
            check_boot(self.profile.arch, outcome, self.console_text(), self.console_tail, limit)
            self._usable = True
            self._prepare_shell(time.monotonic() + self._scaled(self.profile.timeouts.command_s))
        except BaseException:
            self.stop()
            raise

    def _launch_spec(self, image: GuestImage, qmp_socket: Path) -> LaunchSpec:
        """What QEMU is started with for ``image``: kernel, initramfs, shares, plugin and options."""
        return LaunchSpec(
            kernel=Path(image.kernel),
            initrd=Path(image.initramfs),
            cpu=self.cpu,
            smp=self.smp,
            accel=self.accel,
            token=self.token,
            qmp_socket=qmp_socket,
            shares=(Share("modules", Path(image.modules_dir), readonly=True), Share("host", self.share_dir)),
            plugin=self.plugin,
            memory_mb=self.memory_mb,
            extra_append=self.extra_append,
        )

    def stop(self) -> None:
        """End QEMU: QMP quit, wait up to the profile's stop time, then SIGKILL; always reaps it."""
        child, qmp = self._child, self._qmp
        self._usable = False
        self._qmp = None
        try:
            if child is not None and child.isalive() and qmp is not None:
                with contextlib.suppress(Exception):  # QEMU may be gone already; the kill below covers it
                    qmp.cmd("quit")
            if child is not None:
                deadline = time.monotonic() + self._scaled(self.profile.timeouts.stop_s)
                while child.isalive() and time.monotonic() < deadline:
                    self._drain(_POLL_S)
        finally:
            if qmp is not None:
                with contextlib.suppress(Exception):  # the socket went away with QEMU
                    qmp.close()
            if child is not None:
                if child.isalive():
                    child.kill(signal.SIGKILL)
                child.close(force=True)
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._qmp_socket is not None and self._qmp_socket.parent != self.run_dir:
                shutil.rmtree(self._qmp_socket.parent, ignore_errors=True)  # the private directory
            _LIVE.discard(self)

    # -- console ---------------------------------------------------------------------------

    def console_text(self, start: int = 0) -> str:
        """Console output since byte offset ``start``, decoded (invalid UTF-8 replaced)."""
        return bytes(self._buffer[start:]).decode("utf-8", errors="replace")

    def console_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the console."""
        return console.tail(self.console_text(max(0, len(self._buffer) - 64 * 1024)), lines)

    def boot_kmsg(self) -> str:
        """The kernel log from boot to readiness (``dmesg`` taken once the shell answered)."""
        return _read_text(self.share_dir / _WORK / "kmsg-boot")

    def _drain(self, timeout: float) -> bool:
        """Read what QEMU printed within ``timeout``; False at end of output."""
        assert self._child is not None
        try:
            data = self._child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self._buffer += data
        if self._log is not None:
            self._log.write(data)
        return True

    def _wait_for(
        self, pattern: re.Pattern[bytes], start: int, deadline: float
    ) -> tuple[WaitOutcome, re.Match[bytes] | None]:
        """Read until ``pattern`` appears after offset ``start``.

        Returns ("match", match), ("eof", None) when QEMU's output ended, or ("timeout", None)."""
        while True:
            # Search from a little before the old end so a marker split across reads is found.
            match = pattern.search(self._buffer, start)
            if match:
                return "match", match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", None
            start = max(start, len(self._buffer) - 256)
            if not self._drain(min(remaining, 0.5)):
                match = pattern.search(self._buffer, start)
                return ("match", match) if match else ("eof", None)

    # -- setup -----------------------------------------------------------------------------

    def _connect_qmp(self, socket_path: Path, deadline: float) -> None:
        """Connect QMP once QEMU listens on its socket (the file appears at bind, before listen, so
        a refused connection is retried). Raises InfraError if QEMU exits or never listens in time."""
        while True:
            if socket_path.exists():
                qmp = QEMUMonitorProtocol(str(socket_path))
                try:
                    greeting = qmp.connect()
                    break
                except Exception as exc:  # ConnectError wraps the OSError
                    error: Exception | None = exc
            else:
                error = None
            if not self._drain(_POLL_S) or not self.alive:
                # QEMU died (a bad option, a broken accelerator): show what it printed.
                end = time.monotonic() + 1.0
                while self._drain(_POLL_S) and time.monotonic() < end:
                    pass
                raise InfraError(f"QEMU exited while starting:\n{self.console_tail(20)}") from error
            if time.monotonic() > deadline:
                raise InfraError(
                    f"QMP at {socket_path} did not answer in time ({error or 'no socket'}):\n"
                    f"{self.console_tail(20)}"
                ) from error
        qmp.settimeout(self._scaled(_QMP_TIMEOUT_S))
        self._qmp = qmp
        version = (greeting or {}).get("QMP", {}).get("version", {}).get("qemu", {})
        if version:
            self.qemu_version = f"{version['major']}.{version['minor']}.{version['micro']}"

    def _prepare_shell(self, deadline: float) -> None:
        """Quiet the shell's echo, send kernel messages to the console, have the kernel report
        every user process killed by a fatal signal (not every architecture's kernel does by default),
        keep the boot log."""
        work = f"{GUEST_SHARE}/{_WORK}"
        result = self._send(
            "stty -echo 2>/dev/null; dmesg -n 7; echo 1 >/proc/sys/debug/exception-trace; "
            f"dmesg -c >{work}/kmsg-boot 2>&1; echo {{done}}-$?",
            deadline,
        )
        if result[0] != "match":
            raise InfraError(
                f"guest shell did not answer after the readiness marker:\n{self.console_tail(20)}"
            )

    def _send(self, line: str, deadline: float) -> tuple[WaitOutcome, re.Match[bytes] | None]:
        """Type ``line`` into the guest shell, its ``{done}`` replaced by the command-finished
        marker, and wait for the marker followed by an exit status.

        The marker holds a fresh random token: a program that prints a marker-like line (on the
        console or into the kernel log) cannot end its own command. The token reaches the guest
        only in this typed line, after the program's files were written, and echo is off."""
        assert self._child is not None
        marker = f"JP-DONE-{secrets.token_hex(12)}"
        start = len(self._buffer)
        self._child.send((line.replace("{done}", marker) + "\n").encode())
        return self._wait_for(done_pattern(marker), start, deadline)

    # -- files and commands ----------------------------------------------------------------

    def copy(self, source: Path | str | bytes, name: str, mode: int = 0o755) -> str:
        """Put a host file (path) or ``bytes`` into the guest share as ``name``; return its guest path.

        Raises InputError for a name that is not a plain file name and InfraError if the file
        cannot be copied."""
        if not _SAFE_NAME.match(name) or name.startswith("."):
            raise InputError(
                "guest file name", name, hint="letters, digits, '_', '.', '+', '-', not starting with '.'"
            )
        target = self.share_dir / name
        try:
            self.share_dir.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
            else:
                shutil.copyfile(source, target)
            target.chmod(mode)
        except OSError as exc:
            raise InfraError(
                f"cannot copy {source if not isinstance(source, bytes) else 'data'} to {target}: {exc}"
            ) from exc
        return f"{GUEST_SHARE}/{name}"

    def run(self, command: str, timeout: float | None = None, keep: int | None = None) -> CommandResult:
        """Run ``command`` with the guest's /bin/sh and return its result.

        ``timeout`` (seconds, default the profile's command time) is scaled like every wait.
        Of each output stream, the guest stores at most ``output_disk_limit`` bytes (rounded up
        to 64 KiB) in the share and counts the rest; the result holds at most ``keep`` bytes
        (default: all that was stored) and the total counts, so host memory stays bounded.
        A command that does not finish in time (verdict timeout, or crash when the console shows
        a kernel crash) or that ends QEMU stops the guest; later calls raise InfraError.
        Raises InfraError if the guest is not running or QEMU fails."""
        if not self._usable or self._child is None:
            raise InfraError(
                f"{self.profile.arch} guest is not running (not started, stopped, or it crashed)"
            )
        self._commands += 1
        n = self._commands
        work_host = self.share_dir / _WORK
        work = f"{GUEST_SHARE}/{_WORK}"
        (work_host / f"cmd-{n}.sh").write_text(command + "\n")
        limit = self._scaled(self.profile.timeouts.command_s if timeout is None else timeout)
        started = time.monotonic()
        start = len(self._buffer)
        blocks = -(-self.output_disk_limit // _BLOCK)

        def bounded(stream: str) -> str:  # keep the first blocks of a stream, count the rest
            return (f"{{ dd bs={_BLOCK} count={blocks} iflag=fullblock of={work}/{stream}-{n} 2>/dev/null; "
                    f"wc -c >{work}/{stream}-more-{n}; }}")  # fmt: skip

        outcome, match = self._send(
            f"mkfifo {work}/fifo-{n}; {bounded('err')} <{work}/fifo-{n} & "
            f"{{ sh {work}/cmd-{n}.sh </dev/null 2>{work}/fifo-{n}; echo $? >{work}/status-{n}; }} | "
            f"{bounded('out')}; wait; s=$(cat {work}/status-{n}); "
            f"dmesg -c >{work}/kmsg-{n} 2>&1; echo {{done}}-$s",
            started + limit,
        )
        wall = time.monotonic() - started
        end = match.start() if match else len(self._buffer)
        text = self.console_text(start)[: None if match is None else end - start]
        kmsg = _read_text(work_host / f"kmsg-{n}") if match else ""
        exit_code = int(match.group(1)) if match else None
        verdict, crashes = command_verdict(outcome, exit_code, text, kmsg)
        result = CommandResult(
            command=command,
            verdict=verdict,
            exit_code=exit_code,
            stdout=_read_bytes(work_host / f"out-{n}", keep),
            stderr=_read_bytes(work_host / f"err-{n}", keep),
            console=text,
            kmsg=kmsg,
            console_tail=console.tail_with_crash(self.console_tail(), crashes[0] if crashes else None),
            wall_s=wall,
            crash=crashes[0] if crashes else None,
            crashes=crashes,
            stdout_bytes=_stream_bytes(work_host, "out", n),
            stderr_bytes=_stream_bytes(work_host, "err", n),
        )
        if outcome != "match":
            self.stop()
        return result

    def interact(self) -> None:
        """Hand the console to the user's terminal until Ctrl-] is typed."""
        if self._child is None:
            raise InfraError("guest is not running")
        self._child.logfile_read = self._log
        self._child.send(b"stty echo\n")  # run() works with echo off; a person wants to see what they type
        self._child.interact(escape_character=chr(29))
        self._child.logfile_read = None


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The first ``limit`` bytes of a file (all when None); b"" if it is missing."""
    try:
        with open(path, "rb") as fh:
            return fh.read(-1 if limit is None else limit)
    except FileNotFoundError:
        return b""


def _stream_bytes(work: Path, stream: str, n: int) -> int:
    """How many bytes a command wrote to a stream: what the guest stored plus what it counted."""
    try:
        stored = (work / f"{stream}-{n}").stat().st_size
    except FileNotFoundError:
        return 0
    more = _read_text(work / f"{stream}-more-{n}").strip()
    return stored + (int(more) if more.isdigit() else 0)


def _read_text(path: Path) -> str:
    return _read_bytes(path).decode("utf-8", errors="replace")


def _qmp_socket_path(run_dir: Path) -> Path:
    """``run_dir``/qmp.sock, or a private temporary path when that is too long for a unix socket."""
    path = run_dir / "qmp.sock"
    if len(str(path)) < 100:  # sun_path holds 108 bytes
        return path
    return Path(tempfile.mkdtemp(prefix="jitprobe-qmp-")) / "qmp.sock"


_LIVE: set[Guest] = set()


def stop_all() -> None:
    """Stop every running guest of this process (atexit hook and signal handlers)."""
    for guest in list(_LIVE):
        guest.stop()


atexit.register(stop_all)


def kill_all() -> None:
    """SIGKILL every running guest's QEMU now, from any thread: for an interrupted run whose
    guests other threads are using (those threads then see QEMU gone, unwind and reap it)."""
    for guest in list(_LIVE):
        child = guest._child
        if child is not None and child.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP unwind like Ctrl-C (SystemExit with 128+signal), so that every
    guest's stop() runs, and make Ctrl-C raise KeyboardInterrupt even when the process was
    started with SIGINT ignored (a background job of a non-interactive shell inherits that). Call
    from the main thread of a command-line program."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
