#!/usr/bin/env bash
# Sets up everything, then runs every test: unit and mount tests (vitest), and the check that
# the generated layout files are up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run
