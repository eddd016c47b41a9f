#!/usr/bin/env bash
# Tools from the npm registry (anvil, configurable-http-proxy, solc) come from the committed
# package.json + package-lock.json into ./node_modules.
set -eu
[ -f package.json ] || exit 0
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi
