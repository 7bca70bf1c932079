#!/usr/bin/env bash
# Install the official SDKs the interop tests (tests/interop/) drive against the emulator.
#
# ably-js goes into tests/interop/js/node_modules from the pinned package.json and
# package-lock.json (npm ci, reproducible). The step is skipped when the installed
# ably package already matches the version pinned in package.json. The official
# Python SDK (`ably` on PyPI) comes with the dev extras of pyproject.toml.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
js_dir="$here/tests/interop/js"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-interop: node and npm are required (e.g. apt-get install nodejs npm)" >&2
    exit 1
fi

wanted="$(node -p "require('$js_dir/package.json').dependencies.ably")"
installed="$(node -p "try { require('$js_dir/node_modules/ably/package.json').version } catch (e) { '' }")"
if [ "$installed" = "$wanted" ]; then
    echo "install-interop: ably-js $installed already installed"
    exit 0
fi

cd "$js_dir"
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi
echo "install-interop: ably-js $(node -p "require('./node_modules/ably/package.json').version") installed in $js_dir/node_modules"
