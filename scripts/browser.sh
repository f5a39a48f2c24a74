#!/usr/bin/env bash
# A headless browser for the browser tests (the WebSocket progress page).
#
#   scripts/browser.sh ensure   install Debian's `chromium` when missing (as root, with apt-get)
#   scripts/browser.sh path     print the browser's path (exit 1 when there is none)
#
# Kept apart from scripts/services.sh on purpose: the browser is needed by one slow test only,
# and a machine without root can still run every other test (that test then skips, saying why).
# The test drives Chromium through the DevTools protocol (`--remote-debugging-port` + the
# `websockets` package already in requirements.txt), so no chromium-driver/Selenium is needed.
set -euo pipefail

log() { printf '[browser] %s\n' "$*" >&2; }

browser_path() {
  local candidate
  for candidate in "${CHROMIUM_BIN:-}" chromium chromium-browser google-chrome; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  return 1
}

ensure_browser() {
  if browser_path >/dev/null; then log "chromium present: $(browser_path)"; return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "chromium missing and cannot install it (needs root and apt-get); the browser test will skip"
    return 0
  fi
  log "installing chromium with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  browser_path >/dev/null || { log "ERROR: chromium still missing after apt-get"; return 1; }
  log "chromium installed: $(browser_path)"
}

case "${1:-ensure}" in
  ensure) ensure_browser ;;
  path) browser_path ;;
  *) echo "usage: $0 ensure|path" >&2; exit 2 ;;
esac
