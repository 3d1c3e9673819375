#!/usr/bin/env node
// Entry point of the `shmr` command: runs the compiled CLI (npm run build first).
//
// libuv settings must be in place before Node's thread pool first runs, so they are set here,
// before anything else is imported. This file is CommonJS (bin/package.json): Node's ESM loader
// starts the thread pool (4 threads) while it loads an ES module entry, before its first line.
// - a larger thread pool, so that 4 KiB reads are not queued behind the shard writes of a big
//   erasure-coded block (4 threads, the default, are all taken by one 32 MiB block);
// - io_uring off for file I/O: measured slower than the thread pool for shard writes here.
'use strict';

const { setFlagsFromString } = require('node:v8');

process.env.UV_THREADPOOL_SIZE ??= '16';
process.env.UV_USE_IO_URING ??= '0';

// V8: after a full GC the old generation may grow to 5x its live size (default: about 2x).
// Buffers allocated since the last full GC count against that limit, socket reads (64 KiB
// each) included, so with the daemon's small live heap (~12 MB) streaming I/O started a full
// GC every few dozen MB: an NBD copy-in spent about half its CPU in GC. Read at each limit
// computation, so setting it here, after startup, takes effect.
setFlagsFromString('--heap-growing-percent=400');

import('../dist/userspace/src/cli/main.js').then(({ main, reportFailure }) =>
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error) => process.exit(reportFailure(error)),
  ));
