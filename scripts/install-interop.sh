#!/usr/bin/env bash
# Install the official SDKs the interop tests (tests/interop/) drive against the emulator.
#
# ably-js and @ably/vcdiff-decoder (its delta plugin) go into tests/interop/js/node_modules
# from the pinned package.json and package-lock.json (npm ci, reproducible). The step
# is skipped when every package is installed at the version package.json pins. The
# official Python SDK (`ably` on PyPI) comes with the dev extras of pyproject.toml.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
js_dir="$here/tests/interop/js"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-interop: node and npm are required (e.g. apt-get install nodejs npm)" >&2
    exit 1
fi

# Every dependency pinned in package.json, installed at that version: nothing to do.
missing="$(node -e "
const deps = require('$js_dir/package.json').dependencies;
const stale = Object.keys(deps).filter((name) => {
  try { return require('$js_dir/node_modules/' + name + '/package.json').version !== deps[name]; }
  catch (e) { return true; }
});
process.stdout.write(stale.join(' '));
")"
if [ -z "$missing" ]; then
    echo "install-interop: ably-js $(node -p "require('$js_dir/node_modules/ably/package.json').version") already installed"
    exit 0
fi

cd "$js_dir"
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi
echo "install-interop: ably-js $(node -p "require('./node_modules/ably/package.json').version") installed in $js_dir/node_modules"
