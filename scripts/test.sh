#!/usr/bin/env bash
# Sets up everything, then runs every test: unit and mount tests (vitest, which include the
# check that the generated layout files are up to date), the VM suite (kernel module, FUSE and
# NBD inside qemu; the first run builds the kernel, later runs reuse /var/cache/shmr-vm) and
# the check of the Vagrantfile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run -s typecheck   # the tests too: the build compiles only the code they test
npx vitest run
npm run -s vm-test
vagrant validate
