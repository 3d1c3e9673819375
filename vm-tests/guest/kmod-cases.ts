/**
 * The kmod and blk targets: the kernel module's self-test, /dev/shmr (I/O suite in Single and
 * Mirror topology, decoder cross-check, corrupt shards as EIO) and the blk-mq device.
 */
import { closeSync, existsSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  crossCheck,
  describeInKernel,
  describeInTypeScript,
  mutationSamples,
  vectorSamples,
} from './decoder-check.js';
import { ext4Case } from './ext4.js';
import { dropCaches, ioCases } from './io-suite.js';
import { check, type Case } from './report.js';
import { blockDeviceBytes, dmesg, isBlockDevice, run, status, type Context } from './tools.js';

const MiB = 1024 * 1024;
const DEVICE = '/dev/shmr';
const DISK = '/dev/shmrb0';
const BLOCK_BYTES = 65536;
const SIZE_MIB = 64;
const MUTATIONS = 4000;

function insmod(context: Context, params: string[], file = 'shmr.ko'): Promise<string> {
  return run('insmod', [join(context.runDir, file), ...params]);
}

function rmmod(): Promise<string> {
  return run('rmmod', ['shmr']);
}

function loadCase(context: Context, name: string, params: string[]): Case {
  return {
    name,
    timeoutMs: 120_000,
    run: async () => {
      if (existsSync('/sys/module/shmr')) await rmmod();
      await insmod(context, params);
      check(existsSync(DEVICE), `${DEVICE} did not appear`);
    },
  };
}

/** `pread` outcome: the bytes, or the error code. */
function preadOutcome(offset: number, length: number, path = DEVICE): Buffer | string {
  const fd = openSync(path, 'r');
  try {
    const out = Buffer.alloc(length);
    const got = readSync(fd, out, 0, length, offset);
    return out.subarray(0, got);
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  } finally {
    closeSync(fd);
  }
}

function pwrite(offset: number, data: Buffer): string {
  const fd = openSync(DEVICE, 'r+');
  try {
    writeSync(fd, data, 0, data.byteLength, offset);
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  } finally {
    closeSync(fd);
  }
}

function corrupt(
  context: Context,
  offset: number,
  copy: string,
  target: 'payload' | 'header',
): void {
  const result = status(join(context.runDir, 'shmr-ioctl'), [
    'corrupt',
    DEVICE,
    String(offset),
    copy,
    target,
  ]);
  check(result.code === 0, `corrupt ioctl failed: ${result.output}`);
}

function expectBytes(offset: number, expected: Buffer, what: string, path = DEVICE): void {
  const outcome = preadOutcome(offset, expected.byteLength, path);
  check(Buffer.isBuffer(outcome), `${what}: read failed with ${String(outcome)}`);
  check(outcome.equals(expected), `${what}: wrong data`);
}

function expectEio(offset: number, length: number, what: string, path = DEVICE): void {
  const outcome = preadOutcome(offset, length, path);
  check(
    outcome === 'EIO',
    `${what}: ${Buffer.isBuffer(outcome) ? `read returned ${outcome.byteLength} bytes` : outcome}, not EIO`,
  );
}

function pattern(fill: number): Buffer {
  const out = Buffer.alloc(BLOCK_BYTES);
  for (let index = 0; index < out.byteLength; index++) out[index] = (fill + index * 7) & 0xff;
  return out;
}

function corruptSingleCase(context: Context): Case {
  return {
    name: 'corrupt kmod single: EIO, never wrong data',
    timeoutMs: 120_000,
    run: async () => {
      const at = (block: number) => block * BLOCK_BYTES;
      for (const block of [3, 4, 5])
        check(pwrite(at(block), pattern(block)) === 'ok', `write block ${block}`);
      corrupt(context, at(3) + 1000, '0', 'payload');
      expectEio(at(3) + 900, 200, 'the damaged chunk');
      expectEio(at(3), BLOCK_BYTES, 'the whole damaged block');
      expectBytes(
        at(3) + 8192,
        pattern(3).subarray(8192, 12288),
        'an intact chunk of the damaged block',
      );
      expectBytes(at(4), pattern(4), 'the next block');
      corrupt(context, at(5), '0', 'header');
      expectEio(at(5) + 100, 10, 'a block with a damaged header');
      check(
        pwrite(at(5) + 10, Buffer.from('partial')) === 'EIO',
        'a partial write into a damaged block must fail',
      );
      check(pwrite(at(3), pattern(33)) === 'ok', 'a whole-block write over a damaged block');
      expectBytes(at(3), pattern(33), 'the rewritten block');
    },
  };
}

function corruptMirrorCase(context: Context): Case {
  return {
    name: 'corrupt kmod mirror: one copy repaired from the other, both EIO',
    timeoutMs: 120_000,
    run: async () => {
      const at = (block: number) => block * BLOCK_BYTES;
      for (const block of [7, 8])
        check(pwrite(at(block), pattern(block)) === 'ok', `write block ${block}`);
      corrupt(context, at(7) + 5, '0', 'payload');
      expectBytes(at(7), pattern(7), 'copy 0 damaged: read from copy 1');
      corrupt(context, at(7) + 5, '1', 'payload');
      expectEio(at(7), 4096, 'both copies damaged');
      corrupt(context, at(8), '1', 'header');
      check(
        pwrite(at(8) + 100, Buffer.from('mirror')) === 'ok',
        'a partial write with one good copy',
      );
      const expected = pattern(8);
      Buffer.from('mirror').copy(expected, 100);
      corrupt(context, at(8) + 100, '0', 'payload');
      expectBytes(at(8), expected, 'the copy rewritten by the partial write');
    },
  };
}

function decoderCases(context: Context): Case[] {
  const helper = join(context.runDir, 'shmr-ioctl');
  const { samples, vectors } = vectorSamples(context.repo);
  return [
    {
      name: 'decode vectors: module = TypeScript = manifest',
      timeoutMs: 120_000,
      run: async () => {
        const kernel = await describeInKernel(helper, DEVICE, samples);
        await crossCheck(helper, DEVICE, samples);
        for (const vector of vectors) {
          const index = samples.findIndex((sample) => sample.name.startsWith(vector.name));
          const first = (kernel[index] ?? '').split('\n')[0] ?? '';
          const expected = vector.expect.ok
            ? 'ok'
            : `error kind=${vector.expect.error} field=${vector.expect.field}`;
          check(
            first === expected,
            `${vector.name}: module says "${first}", manifest "${expected}"`,
          );
          check(
            describeInTypeScript(samples[index]!).split('\n')[0] === expected,
            `${vector.name}: TypeScript differs`,
          );
        }
      },
    },
    {
      name: `decode ${MUTATIONS} mutations: module = TypeScript`,
      timeoutMs: 600_000,
      run: async () => {
        const outcomes = await crossCheck(
          helper,
          DEVICE,
          mutationSamples(samples, MUTATIONS, 20250101),
        );
        // The mutations must reach more than the checksum: several outcomes, successes included.
        check(
          outcomes.size >= 6,
          `only ${outcomes.size} kinds of outcome: ${JSON.stringify([...outcomes])}`,
        );
        process.stdout.write(`decoder outcomes: ${JSON.stringify([...outcomes])}\n`);
      },
    },
  ];
}

const PARAMS = [`size_mib=${SIZE_MIB}`, `block_bytes=${BLOCK_BYTES}`];

export function kmodCases(context: Context): Case[] {
  const device = {
    path: DEVICE,
    kind: 'device' as const,
    sizeBytes: SIZE_MIB * MiB,
    blockBytes: BLOCK_BYTES,
  };
  return [
    {
      name: 'kmod refuses to load with a failing vector',
      timeoutMs: 120_000,
      run: async () => {
        const result = status('insmod', [join(context.runDir, 'shmr-badvector.ko')]);
        check(result.code !== 0, 'the module with a wrong expectation loaded');
        check(!existsSync('/sys/module/shmr'), 'the module is loaded');
        check(
          /test vector shard-header-normal: a field differs/.test(dmesg()),
          'no pr_err naming the vector',
        );
      },
    },
    {
      name: 'kmod loads: self-test passes, /dev/shmr appears, corrupt ioctl off',
      timeoutMs: 120_000,
      run: async () => {
        await insmod(context, [...PARAMS, 'topology=1']);
        check(
          /test vectors pass; \/dev\/shmr: 64 MiB, 64 KiB blocks, single/.test(dmesg()),
          'no self-test line',
        );
        const info = await run(join(context.runDir, 'shmr-ioctl'), ['info', DEVICE]);
        check(
          info.includes(`size=${SIZE_MIB * MiB} block_bytes=${BLOCK_BYTES} topology=1 copies=1`),
          info,
        );
        check(pwrite(0, Buffer.from('x')) === 'ok', 'write');
        const refused = status(join(context.runDir, 'shmr-ioctl'), [
          'corrupt',
          DEVICE,
          '0',
          '0',
          'payload',
        ]);
        check(
          refused.code === 1 && refused.output.includes('errno=1'),
          `corrupt without allow_corrupt: ${refused.output}`,
        );
        await rmmod();
      },
    },
    loadCase(context, 'kmod load single with allow_corrupt', [
      ...PARAMS,
      'topology=1',
      'allow_corrupt=1',
    ]),
    ...ioCases({ ...device, name: 'kmod' }, 1, 300),
    ...decoderCases(context),
    corruptSingleCase(context),
    loadCase(context, 'kmod reload as mirror', [...PARAMS, 'topology=2', 'allow_corrupt=1']),
    ...ioCases({ ...device, name: 'kmod-mirror' }, 2, 120),
    corruptMirrorCase(context),
    {
      name: 'kmod unloads',
      timeoutMs: 60_000,
      run: async () => {
        await rmmod();
      },
    },
  ];
}

/** Written through the block device, damaged in every copy, read back through it: EIO. */
function corruptBlockDeviceCase(context: Context): Case {
  return {
    name: 'corrupt blk: EIO through the block device, never wrong data',
    timeoutMs: 120_000,
    run: async () => {
      const offset = 40 * MiB;
      const fd = openSync(DISK, 'r+');
      writeSync(fd, pattern(40), 0, BLOCK_BYTES, offset);
      writeSync(fd, pattern(42), 0, BLOCK_BYTES, offset + BLOCK_BYTES);
      fsyncSync(fd);
      closeSync(fd);
      corrupt(context, offset + 5000, 'all', 'payload');
      dropCaches();
      expectEio(offset + 4096, 4096, 'the damaged page through /dev/shmrb0', DISK);
      expectBytes(offset + BLOCK_BYTES, pattern(42), 'the next block', DISK);
      // A whole-block write (through /dev/shmr, in one piece) replaces the damaged block.
      check(pwrite(offset, pattern(41)) === 'ok', 'rewrite');
      dropCaches();
      expectBytes(offset, pattern(41), 'the rewritten block through /dev/shmrb0', DISK);
    },
  };
}

/** The blk target: the module's blk-mq device, if the module registers one. */
export function extraCasesBlk(context: Context): Case[] {
  return [
    {
      name: 'blk load: /dev/shmrb0 appears',
      timeoutMs: 120_000,
      run: async () => {
        await insmod(context, [...PARAMS, 'topology=2', 'allow_corrupt=1']);
        await new Promise((resolve) => setTimeout(resolve, 500));
        check(
          isBlockDevice(DISK),
          `${DISK} is not there: the module has no block device (not built)`,
        );
        check(blockDeviceBytes(DISK) === SIZE_MIB * MiB, `size ${blockDeviceBytes(DISK)}`);
      },
    },
    ...ioCases(
      {
        path: DISK,
        kind: 'device',
        sizeBytes: SIZE_MIB * MiB,
        blockBytes: BLOCK_BYTES,
        name: 'blk',
      },
      3,
      200,
    ),
    ext4Case('blk', () => DISK, context.repo),
    corruptBlockDeviceCase(context),
    {
      name: 'blk unloads',
      timeoutMs: 60_000,
      run: async () => {
        await rmmod();
      },
    },
  ];
}
