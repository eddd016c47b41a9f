#!/usr/bin/env bash
# The whole suite: the type checker over nexus_kernel first (mypy.ini), then pytest. A type error fails
# the run before any test starts. pytest's own exit code is kept, except 5 (no test collected), which is a
# failure here: a suite that runs nothing proves nothing.
set -u
cd "$(dirname "$0")/.."
echo "mypy (nexus_kernel, mypy.ini)"
.venv/bin/python -m mypy --config-file mypy.ini || { echo "error: mypy found type errors (see above)" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
