"""harness.verdicts without a guest: what boots and commands mean."""

from __future__ import annotations

import pytest

from base.errors import GuestCrash, GuestTimeout, InfraError
from harness.verdicts import check_boot, command_verdict

OOPS = "[    1.0] Internal error: Oops: 96000004 [#1] SMP\n"


def _tail(lines: int) -> str:
    return f"last {lines} lines"


def test_a_command_passes_fails_or_crashes_by_status_and_console() -> None:
    assert command_verdict("match", 0, "", "") == ("pass", [])
    assert command_verdict("match", 3, "", "")[0] == "fail"
    verdict, crashes = command_verdict("match", 139, "", "")
    assert verdict == "crash" and crashes[0].kind == "fatal_signal"
    assert command_verdict("match", 0, "", OOPS)[0] == "crash"


def test_a_command_out_of_time_is_a_timeout_unless_the_kernel_crashed() -> None:
    assert command_verdict("timeout", None, "", "") == ("timeout", [])
    assert command_verdict("timeout", None, OOPS, "")[0] == "crash"


def test_qemu_exiting_during_a_command_is_a_crash() -> None:
    verdict, crashes = command_verdict("eof", None, "bye\n", "")
    assert verdict == "crash" and crashes[0].kind == "guest_exit"


def test_boot_rules() -> None:
    check_boot("arm64", "match", "ready\n", _tail, 30.0)
    with pytest.raises(GuestTimeout, match="not ready within 30.0 s"):
        check_boot("arm64", "timeout", OOPS, _tail, 30.0)
    with pytest.raises(GuestCrash, match="kernel reported oops while booting"):
        check_boot("arm64", "match", OOPS, _tail, 30.0)
    with pytest.raises(GuestCrash, match="kernel oops while booting"):
        check_boot("arm64", "eof", OOPS, _tail, 30.0)
    with pytest.raises(InfraError, match="QEMU exited before the guest was ready:\nlast 20 lines"):
        check_boot("arm64", "eof", "", _tail, 30.0)
