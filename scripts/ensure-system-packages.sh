#!/usr/bin/env bash
# Debian packages some tests drive for real. Installed when running as root; otherwise the tests that
# need them are skipped with the reason shown in pytest's summary.
set -u
PACKAGES="${NEXUS_SYSTEM_PACKAGES:-chromium}"
[ -z "$PACKAGES" ] && exit 0
missing=""
for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ]; then
  echo "installing Debian packages:$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "not root: Debian packages$missing not installed; tests needing them will be skipped" >&2
fi
exit 0
