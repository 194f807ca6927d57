#!/usr/bin/env bash
# Debian's Chromium for tests/test_exceptions_page.py (Playwright drives /usr/bin/chromium; it
# downloads no browser). Installs it with apt-get when missing and run as root; otherwise says
# what to do, and that test skips with the reason.
#
#   scripts/chromium.sh ensure
set -euo pipefail

log() { printf 'chromium: %s\n' "$*" >&2; }

case ${1:-} in
  ensure)
    if [[ -x /usr/bin/chromium ]]; then
      exit 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
      log "missing; install it with: sudo apt-get install -y chromium (the page test skips)"
      exit 0
    fi
    log "missing: apt-get install chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } ||
      { log "apt-get install chromium failed"; exit 1; }
    log "installed $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
    ;;
  *)
    printf 'usage: %s ensure\n' "$0" >&2
    exit 2
    ;;
esac
