#!/usr/bin/env node
// Entry point of the `shmrctl` command: runs the compiled CLI (npm run build first).
// CommonJS, as bin/shmr.js (bin/package.json).
'use strict';

import('../dist/userspace/src/cli/shmrctl/main.js').then(({ main }) =>
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error) => {
      process.stderr.write(`shmrctl: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  ));
