"""A private apt root: download Debian packages without touching the host's apt configuration.

The root has its own configuration, sources list, state, cache and dpkg status (an empty one),
so foreign architectures and other suites (trixie on a bookworm host) are only ever known inside
it. apt reads ``APT_CONFIG`` before anything under /etc/apt, and the file it points to moves
``Dir::Etc`` into the root, so the host's apt.conf.d is never read either. The one thing taken
from the host is the mirror URI (``host_mirror``), so no mirror host name lives in the code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import InfraError
from base.files import file_lock
from base.proc import run

__all__ = ["DEBIAN_KEYRING", "AptRoot", "AptSource", "host_mirror"]

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_SOURCE_TYPES = ("deb", "deb-src")


@dataclass(frozen=True)
class AptSource:
    """One deb822 stanza of the private sources list."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    types: tuple[str, ...] = ("deb",)
    # Debian architecture names; empty: apt's APT::Architectures (enough for deb-src stanzas).
    architectures: tuple[str, ...] = ()
    signed_by: Path = field(default=DEBIAN_KEYRING)

    def __post_init__(self) -> None:
        bad = [t for t in self.types if t not in _SOURCE_TYPES]
        if bad or not self.types:
            raise ValueError(
                f"invalid apt source types {self.types!r}; valid choices: {', '.join(_SOURCE_TYPES)}"
            )
        if not self.suites or not self.components:
            raise ValueError("an apt source needs at least one suite and one component")

    def deb822(self) -> str:
        """The stanza in deb822 form (ends with a blank line)."""
        return (
            f"Types: {' '.join(self.types)}\n"
            f"URIs: {self.uri}\n"
            f"Suites: {' '.join(self.suites)}\n"
            f"Components: {' '.join(self.components)}\n"
            + (f"Architectures: {' '.join(self.architectures)}\n" if self.architectures else "")
            +             f"Signed-By: {self.signed_by}\n\n"
        )


class AptRoot:
    """apt-get and apt-cache confined to ``root``, reading only ``sources``.

    Every method that runs apt raises ``InfraError`` (naming the command and apt's message) when
    apt fails. Calls on the same root from several processes are serialised with a file lock.
    """

    def __init__(self, root: Path, sources: list[AptSource]):
        if not sources:
            raise ValueError("an apt root needs at least one source")
        self.root = Path(root)
        self.sources = list(sources)
        self.download_dir = self.root / "downloads"
        self._config = self.root / "etc" / "apt" / "apt.conf"
        self._arches = sorted({a for s in self.sources for a in s.architectures})

    # -- public API -----------------------------------------------------------------------------

    def update(self) -> None:
        """Fetch the package indexes of every source. Raises InfraError on apt failure."""
        self._run(["apt-get", "update"])

    def download(self, package: str, arch: str, version: str) -> Path:
        """Download ``package:arch`` at exactly ``version``; returns the path of the .deb.

        Raises InfraError when apt fails, for example when the version is no longer on the mirror.
        """
        spec = f"{package}:{arch}={version}"
        filename = self._uri_filename(spec)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        self._run(["apt-get", "download", spec], cwd=self.download_dir)
        path = self.download_dir / filename
        if not path.is_file():
            raise InfraError(f"apt-get download {spec} reported success but {path} is missing")
        return path

    def download_source(self, package: str, version: str) -> list[Path]:
        """Download the source package ``package`` at ``version`` (needs a deb-src source).

        Returns the downloaded files (.dsc, tarballs). Raises InfraError when apt fails.
        """
        dest = self.root / "sources" / f"{package}_{version}"
        dest.mkdir(parents=True, exist_ok=True)
        self._run(["apt-get", "source", "--download-only", f"{package}={version}"], cwd=dest)
        files = sorted(p for p in dest.iterdir() if p.is_file())
        if not files:
            raise InfraError(f"apt-get source {package}={version} downloaded nothing into {dest}")
        return files

    def candidate_version(self, package: str, arch: str) -> str:
        """The version apt would pick for ``package:arch``. Raises InfraError if there is none."""
        out = self._run(["apt-cache", "policy", f"{package}:{arch}"])
        match = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
        if not match or match.group(1) == "(none)":
            raise InfraError(f"no candidate version of {package}:{arch} in the private apt root {self.root}")
        return match.group(1)

    def fields(self, package: str, arch: str, version: str) -> dict[str, str]:
        """The control fields (Depends, Filename, SHA256, ...) of one package version.

        Raises InfraError when apt fails or does not know that version.
        """
        out = self._run(["apt-cache", "show", "--no-all-versions", f"{package}:{arch}={version}"])
        result: dict[str, str] = {}
        key = ""
        for line in out.splitlines():
            if not line.strip():
                break  # only the first record
            if line[0].isspace() and key:
                result[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                result[key] = value.strip()
        if not result:
            raise InfraError(f"apt-cache show {package}:{arch}={version} printed no record")
        return result

    # -- internals ------------------------------------------------------------------------------

    def _uri_filename(self, spec: str) -> str:
        # apt names the downloaded file after the URI's last part with the epoch colon escaped;
        # asking it avoids re-implementing that rule.
        out = self._run(["apt-get", "download", "--print-uris", spec])
        match = re.match(r"'[^']*'\s+(\S+)\s", out.strip() + " ")
        if not match:
            raise InfraError(f"apt-get download --print-uris {spec} printed no URI: {out.strip()!r}")
        return match.group(1)

    def _prepare(self) -> None:
        etc = self.root / "etc" / "apt"
        for sub in ("apt.conf.d", "preferences.d", "trusted.gpg.d", "sources.list.d"):
            (etc / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        status = self.root / "var" / "lib" / "dpkg" / "status"
        status.parent.mkdir(parents=True, exist_ok=True)
        status.touch()
        _write_if_changed(
            etc / "sources.list.d" / "jitprobe.sources", "".join(s.deb822() for s in self.sources)
        )
        arches = " ".join(f'"{a}";' for a in self._arches)
        _write_if_changed(
            self._config,
            f'Dir::Etc "{etc}/";\n'
            f'Dir::Etc::main "apt.conf";\n'
            f'Dir::Etc::sourcelist "/dev/null";\n'
            f'Dir::State "{self.root}/var/lib/apt/";\n'
            f'Dir::State::status "{status}";\n'
            f'Dir::Cache "{self.root}/var/cache/apt/";\n'
            f'APT::Architecture "{self._host_arch()}";\n'
            f"APT::Architectures {{ {arches} }};\n"
            # The root usually lives under a home folder that apt's _apt sandbox user cannot enter.
            f'APT::Sandbox::User "root";\n'
            f'Acquire::Languages "none";\n',
        )

    @staticmethod
    def _host_arch() -> str:
        return run(["dpkg", "--print-architecture"], what="dpkg --print-architecture").stdout.strip()

    def _run(self, argv: list[str], cwd: Path | None = None) -> str:
        env = dict(
            os.environ, APT_CONFIG=str(self._config), LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive"
        )
        with file_lock(self.root / ".lock"):
            self._prepare()
            return run(argv, cwd=cwd, env=env, what=f"{' '.join(argv)} in apt root {self.root}").stdout


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _host_codename(etc: Path) -> str:
    os_release = etc.parent / "os-release"
    if not os_release.is_file():
        os_release = etc.parent.parent / "usr" / "lib" / "os-release"
    text = os_release.read_text() if os_release.is_file() else ""
    match = re.search(r"^VERSION_CODENAME=\"?([\w-]+)", text, re.M)
    return match.group(1) if match else ""


def _host_entries(etc_apt: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """(uri, types, suites) of every enabled entry in the host's apt sources."""
    one_line = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] in _SOURCE_TYPES:
                yield words[1], [words[0]], [words[2]]
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            values: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                values[key.strip().lower()] = value.strip()
            if values.get("enabled", "yes").lower() == "no" or "uris" not in values:
                continue
            for uri in values["uris"].split():
                yield uri, values.get("types", "").split(), values.get("suites", "").split()


def host_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The URI of the host's main Debian archive (the one serving its release codename).

    Raises InfraError when the host's apt sources name no such archive.
    """
    codename = _host_codename(etc_apt)
    entries = [(uri, types, suites) for uri, types, suites in _host_entries(etc_apt) if "deb" in types]
    for uri, _types, suites in entries:
        if codename and codename in suites:
            return uri.rstrip("/")
    # No codename match: fall back to any Debian archive that is not the security one.
    for uri, _types, suites in entries:
        if any(s.split("-")[0] == codename or not codename for s in suites) and "security" not in uri:
            return uri.rstrip("/")
    raise InfraError(
        f"no Debian archive for release {codename or '(unknown)'} in {etc_apt}/sources.list or "
        f"{etc_apt}/sources.list.d; add the host's Debian mirror to apt's sources"
    )
