#!/usr/bin/env bash
# `npm ci` in browser/ unless node_modules already matches package-lock.json
# (a copy of the lock file from the last successful install is kept beside it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
stamp=node_modules/.installed-package-lock.json
if [ -d node_modules ] && cmp -s package-lock.json "$stamp"; then
	exit 0
fi
npm ci --no-audit --no-fund
cp package-lock.json "$stamp"
