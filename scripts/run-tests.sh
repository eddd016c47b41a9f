#!/usr/bin/env bash
# The whole suite. pytest's own exit code is kept, except 5 (no test collected), which is a failure
# here: a suite that runs nothing proves nothing.
set -u
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
