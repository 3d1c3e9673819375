#!/usr/bin/env node
// Entry point of the `shmr` command: runs the compiled CLI (npm run build first).
import { main, reportFailure } from '../dist/userspace/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => process.exit(reportFailure(error)),
);
