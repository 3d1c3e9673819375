/**
 * The guest side of `npm run vm-test`: runs the suite for one target inside the VM and prints
 * the result lines the host reads (report.ts). Started by the initramfs /init:
 *
 *   node dist/vm-tests/guest/main.js --target fuse|fuse-host|nbd|kmod|blk --run /mnt/run
 *
 * /mnt/run (9p from the host, read-only) holds shmr.ko, shmr-badvector.ko and shmr-ioctl.
 * Targets:
 * - kmod: the module's load-time self-test (and its refusal of a module built with a wrong
 *   expectation), the I/O suite on /dev/shmr in Single and Mirror topology, the decoder
 *   cross-check, and corrupt shards reading as EIO.
 * - fuse: the I/O suite on a file in a shmr mount, a corrupt shard reading as EIO, and a
 *   share of the host's file-level mount tests (vitest) run in the guest.
 * - fuse-host: the other share of the host's mount tests, in a boot of its own (second lane).
 * - nbd: a shmr volume attached to /dev/nbdN with nbd-client (`shmr volume attach`), the I/O
 *   suite on it, then mkfs.ext4, mount, a tree copied and compared, fsck.ext4 -n clean.
 * - blk: the module's blk-mq device /dev/shmrb0: the I/O suite and the same ext4 round.
 */
import { parseArgs } from 'node:util';
import { extraCasesBlk, kmodCases } from './kmod-cases.js';
import { fuseCases, fuseHostCases } from './fuse-cases.js';
import { nbdCases } from './nbd-cases.js';
import { Report, type Case } from './report.js';
import type { Context } from './tools.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { target: { type: 'string' }, run: { type: 'string' } },
  });
  const target = values.target ?? 'none';
  const context: Context = {
    repo: process.cwd(),
    runDir: values.run ?? '/mnt/run',
    report: new Report(target),
  };
  let cases: Case[];
  switch (target) {
    case 'kmod':
      cases = kmodCases(context);
      break;
    case 'blk':
      cases = extraCasesBlk(context);
      break;
    case 'fuse':
      cases = fuseCases(context);
      break;
    case 'fuse-host':
      cases = fuseHostCases(context);
      break;
    case 'nbd':
      cases = nbdCases(context);
      break;
    default:
      cases = [
        {
          name: 'target',
          timeoutMs: 1000,
          run: () => Promise.reject(new Error(`unknown target "${target}"`)),
        },
      ];
  }
  await context.report.runAll(cases);
  return context.report.finish();
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stdout.write(`VMTEST-CASE main FAIL 0 guest main | ${String(error)}\n`);
    process.exit(1);
  },
);
