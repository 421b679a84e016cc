#!/usr/bin/env bash
# Installs what jitprobe needs on a Debian 12 (bookworm) host. Idempotent: each step checks first,
# so a second run does no network work. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Packages every architecture's profile names (arch_profiles/*.yaml, one-line fields `debian_package:`
# and `cross_packages: [...]`), read without Python since the venv comes later.
profile_field() {
  sed -n "s/^ *$1: *\[\{0,1\}\([^]#]*\).*/\1/p" arch_profiles/*.yaml | tr ',' ' ' | xargs
}

BACKPORTS_FILE=/etc/apt/sources.list.d/jitprobe-bookworm-backports.sources
# QEMU 10 comes from bookworm-backports: Debian 12's own 7.2 has no register access in its plugin API.
BACKPORTS_PKGS="$(profile_field debian_package) qemu-system-data qemu-utils qemu-user"
# Host tools: gcc + GLib headers build the sanitizer plugin; kmod's depmod indexes guest modules;
# cross binutils and gcc are independent oracles for encoder and sanitizer tests; chromium opens the
# HTML report headless in tests/test_report_browser.py, and DejaVu is the font the report's pictures
# were laid out with (matplotlib's own; their text stays text in the SVG).
HOST_PKGS="gcc make pkg-config libglib2.0-dev kmod xz-utils python3-venv chromium fonts-dejavu-core \
$(profile_field cross_packages)"

missing() {
  local out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

has_backports() {
  grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/
}

qemu_is_10() {
  command -v qemu-img >/dev/null && qemu-img --version | head -n1 | grep -q "version 10\."
}

apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then $SUDO apt-get update -q; apt_updated=1; fi
}

if ! has_backports; then
  echo "setup: adding bookworm-backports to apt (QEMU 10)"
  # Reuse the mirror the host already uses rather than naming one here.
  mirror=$( { grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
           || true; } | grep -v security | head -n1 | awk '{print $2}')
  [ -n "$mirror" ] || { echo "setup: no Debian mirror found in the host's apt sources" >&2; exit 3; }
  printf 'Types: deb deb-src\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" | $SUDO tee "$BACKPORTS_FILE" >/dev/null
  apt_update
fi

# shellcheck disable=SC2086
need=$(missing $HOST_PKGS)
if [ -n "$need" ]; then
  echo "setup: installing $need"
  apt_update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $need
fi
# shellcheck disable=SC2086
if [ -n "$(missing $BACKPORTS_PKGS)" ] || ! qemu_is_10; then
  echo "setup: installing QEMU 10 from bookworm-backports"
  apt_update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q -t bookworm-backports $BACKPORTS_PKGS
fi

# Python environment: reinstalled only when pyproject.toml changes.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.jitprobe-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
