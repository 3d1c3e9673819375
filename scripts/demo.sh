#!/usr/bin/env bash
# Sets up everything, then mounts the demo filesystem of the embedded default config in the
# foreground: mount point ./mnt, data under ./data. Stop with Ctrl-C or `shmr unmount ./mnt`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/shmr.js mount
