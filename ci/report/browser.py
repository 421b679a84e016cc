"""A report page in Debian's headless Chromium, with no network: the rendered DOM, what the page
wrote to the console, what it fetched, and (with ``--screenshot=FILE``) a picture of it. Used by
tests/test_report_browser.py and by tests/report_screenshot.py (the README's screenshot).

Chromium runs in its own process group, with a fresh profile and HOME under the folder given, and
the group is killed when it ends or times out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base.errors import InfraError

__all__ = ["CHROMIUM", "ConsoleMessage", "Launch", "open_page", "problems"]

CHROMIUM = shutil.which("chromium")
# No network: names resolve to nothing and everything else (IP literals too) goes to a proxy on a
# closed port. No background services, extensions, crash reporter or GPU; root needs --no-sandbox,
# which is acceptable for a page jitprobe wrote itself and opens from a file. --enable-logging
# puts the page's console messages on stderr.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
# Chromium logs a web page's console messages at INFO whatever their level (console.log, an
# uncaught exception and the browser's own "Error: <path> attribute d: ..." alike), so the line
# says only that there was a message, its text and where.
_CONSOLE = re.compile(r"^\[[^\]]*:CONSOLE[:(]\d+\)?\] \"(.*?)\", source: (\S*) \((\d+)\)$", re.M | re.S)


# Attributes that load or link something, in the DOM Chromium dumps (values double-quoted), whose
# value is not a fragment of the page itself.
_REFERENCE = re.compile(r"<(\w+)\b[^>]*?\s((?:xlink:)?href|src|srcset|data|poster)=\"(?!#)([^\"]*)\"")


@dataclass(frozen=True)
class ConsoleMessage:
    text: str
    source: str  # the URL of the page or script that wrote it
    line: int


@dataclass
class Launch:
    dom: str
    console: list[ConsoleMessage]
    netlog: Path

    def requests(self) -> list[tuple[str, Any]]:
        """(url, net error or None) of every network request the page made: those whose network
        isolation key is the file:// site (the browser's own background requests have other
        keys)."""
        data = json.loads(self.netlog.read_text())
        names = {v: k for k, v in data["constants"]["logEventTypes"].items()}
        starts: dict[int, str] = {}
        errors: dict[int, Any] = {}
        for event in data["events"]:
            params = event.get("params") or {}
            source = event["source"]["id"]
            if names.get(event["type"]) != "URL_REQUEST_START_JOB":
                continue
            if "url" in params and str(params.get("network_isolation_key", "")).startswith("file://"):
                starts[source] = params["url"]
            elif "net_error" in params:
                errors[source] = params["net_error"]
        return [(url, errors.get(source)) for source, url in starts.items()]


def open_page(
    page: Path, home: Path, *extra: str, window: tuple[int, int] = (1280, 2000), timeout_s: float = 180.0
) -> Launch:
    """Run headless Chromium once on ``page`` with ``--dump-dom`` (and ``extra`` flags); its
    profile, HOME and network log live in ``home`` (created). Raises InfraError when Chromium is
    missing, times out or fails."""
    if CHROMIUM is None:
        raise InfraError("no `chromium` on PATH (ci/setup.sh installs Debian's package)")
    home.mkdir(parents=True)
    netlog = home / "netlog.json"
    argv = [
        CHROMIUM,
        *FLAGS,
        f"--window-size={window[0]},{window[1]}",
        f"--user-data-dir={home / 'profile'}",
        f"--log-net-log={netlog}",
        *extra,
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    env = dict(
        os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache")
    )
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # its own process group, so every helper process can be killed
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise InfraError(
            f"chromium did not finish {page} in {timeout_s:.0f} s: {err.decode(errors='replace')[-2000:]}"
        ) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the browser
    log = err.decode(errors="replace")
    if proc.returncode != 0:
        raise InfraError(f"chromium exited {proc.returncode} on {page}: {log[-2000:]}")
    console = [ConsoleMessage(m[1], m[2], int(m[3])) for m in _CONSOLE.finditer(log)]
    return Launch(out.decode(errors="replace"), console, netlog)


def problems(launch: Launch) -> list[str]:
    """What a self-contained page with no script must not do: write to the console (a script
    error, or the browser's complaint about the page, such as an SVG attribute it cannot parse),
    name anything outside itself (an image, stylesheet or script file: broken wherever the page
    is copied without it) or fetch anything."""
    found = [f"console: {m.text} ({m.source}:{m.line})" for m in launch.console]
    found += [f"outside the page: {tag} {key}={value}" for tag, key, value in _REFERENCE.findall(launch.dom)]
    # file:// loads do not go through the network stack, so only other schemes show here
    found += [
        f"request: {url}" + (f" failed (net error {error})" if error is not None else "")
        for url, error in launch.requests()
    ]
    return found
