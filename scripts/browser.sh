#!/usr/bin/env bash
# The real browser the UI tests drive: Debian's chromium (headless) and chromedriver, plus one
# font (without a font every text node is empty and layouts collapse). Playwright for Python
# points at /usr/bin/chromium; its own browser downloads are not used.
#
#   bash scripts/browser.sh install   apt-get install what is missing (idempotent; no apt when present)
#   bash scripts/browser.sh check     exit 0 and print the version when the browser is usable
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)
BROWSER=/usr/bin/chromium

die() { echo "browser.sh: $*" >&2; exit 1; }

installed() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || return 1
  done
  [[ -x "$BROWSER" ]]
}

cmd_install() {
  if installed; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get is required (Debian or Ubuntu) to install ${PACKAGES[*]}"
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "run as root or install sudo to install ${PACKAGES[*]}"
    sudo="sudo"
  fi
  echo "browser.sh: installing ${PACKAGES[*]} with apt-get..." >&2
  export DEBIAN_FRONTEND=noninteractive
  # the package lists may be missing or stale on a fresh machine: update once, then install
  $sudo apt-get update -q >/dev/null || die "apt-get update failed"
  $sudo apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null || die "apt-get install failed"
  installed || die "installed, yet $BROWSER is missing"
  cmd_check
}

cmd_check() {
  installed || die "not installed: run 'bash scripts/browser.sh install'"
  # --version needs no display and no profile
  HOME="${TMPDIR:-/tmp}" "$BROWSER" --version
}

case "${1:-}" in
  install) cmd_install ;;
  check) cmd_check ;;
  *) echo "usage: $0 install|check" >&2; exit 2 ;;
esac
