/**
 * The shmr_isal bulk pool: the write path's computing (rsEncodeAsync, crc32cChunksAsync) runs
 * on the addon's own threads, niced below the JS thread, and settles its promises on the JS
 * thread.
 *
 * Method: real jobs, many more than the pool has threads, compared with the synchronous calls;
 * bad arguments among good jobs (each promise gets its own outcome); the threads'
 * nice values read from /proc; and the addon in child processes for what a test process cannot
 * survive if it goes wrong: worker threads terminated with jobs in flight, process.exit() with
 * jobs in flight, and a script whose only pending work is bulk jobs (the loop must wait for
 * them, then exit).
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { crc32cChunks, crc32cChunksAsync, ReedSolomon } from './index.js';

const ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'isal', 'build', 'Release', 'shmr_isal.node');
/** As shmr_isal.c: BULK_THREADS, BULK_NICE_DELTA. */
const BULK_THREADS = 8;
const BULK_NICE_DELTA = 10;
const CHUNK_BYTES = 4096;

/** Field 19 of /proc/.../stat (nice), after the parenthesised command name. */
function niceOf(statPath: string): number {
  const stat = readFileSync(statPath, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[16]);
}

/** Runs `script` (CommonJS, `isal` bound to the addon) in a child node; its stdout. */
function runAddonScript(script: string): string {
  return execFileSync(process.execPath, ['-e', `const isal = require(${JSON.stringify(ADDON_PATH)});\n${script}`], {
    encoding: 'utf8', timeout: 60_000,
  });
}

describe('bulk pool', () => {
  it('settles many more jobs than it has threads, each with the synchronous result', async () => {
    const codec = new ReedSolomon(4, 2);
    const jobs = Array.from({ length: 6 * BULK_THREADS }, (_, index) => {
      const data = Array.from({ length: 4 }, () => randomFillSync(Buffer.alloc(16 * 1024 + index)));
      const parity = [Buffer.alloc(data[0]!.byteLength), Buffer.alloc(data[0]!.byteLength)];
      const table = Buffer.alloc(4 * Math.ceil(data[0]!.byteLength / CHUNK_BYTES));
      return { data, parity, table };
    });
    const results = await Promise.all(jobs.map(async ({ data, parity, table }) => {
      const [, whole] = await Promise.all([codec.encodeAsync(data, parity), crc32cChunksAsync(data[0]!, CHUNK_BYTES, table)]);
      return whole;
    }));
    jobs.forEach(({ data, parity, table }, index) => {
      const expectedParity = [Buffer.alloc(parity[0]!.byteLength), Buffer.alloc(parity[0]!.byteLength)];
      codec.encode(data, expectedParity);
      // equals(): toEqual walks a Buffer byte by byte, seconds for these.
      expect(Buffer.concat(parity).equals(Buffer.concat(expectedParity))).toBe(true);
      const expectedTable = Buffer.alloc(table.byteLength);
      expect(results[index]).toBe(crc32cChunks(data[0]!, CHUNK_BYTES, expectedTable));
      expect(table.equals(expectedTable)).toBe(true);
    });
  });

  it('rejects bad arguments with errors that name them, while the jobs around them settle', async () => {
    const codec = new ReedSolomon(2, 1);
    const data = [randomFillSync(Buffer.alloc(8192)), randomFillSync(Buffer.alloc(8192))];
    const parity = [Buffer.alloc(8192)];
    const table = Buffer.alloc(8);
    const outcomes = await Promise.allSettled([
      codec.encodeAsync(data, parity),
      codec.encodeAsync(data, [Buffer.alloc(100)]),
      crc32cChunksAsync(data[0]!, CHUNK_BYTES, Buffer.alloc(4)),
      crc32cChunksAsync(data[1]!, CHUNK_BYTES, table),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect(String((outcomes[1] as PromiseRejectedResult).reason)).toMatch(/RangeError: .*parity\[0\]/);
    expect(String((outcomes[2] as PromiseRejectedResult).reason)).toMatch(/RangeError: .*table/);
    const expected = [Buffer.alloc(8192)];
    codec.encode(data, expected);
    expect(parity[0]!.equals(expected[0]!)).toBe(true);
    expect((outcomes[3] as PromiseFulfilledResult<number>).value).toBe(crc32cChunks(data[1]!, CHUNK_BYTES, Buffer.alloc(8)));
  });

  it('runs its threads niced BULK_NICE_DELTA below the JS thread', async () => {
    await new ReedSolomon(2, 1).encodeAsync([Buffer.alloc(4096), Buffer.alloc(4096)], [Buffer.alloc(4096)]);
    const tasks = readdirSync('/proc/self/task').filter((task) =>
      readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim() === 'shmr-bulk');
    expect(tasks).toHaveLength(BULK_THREADS);
    const expected = Math.min(19, niceOf('/proc/thread-self/stat') + BULK_NICE_DELTA);
    for (const task of tasks) expect(niceOf(`/proc/self/task/${task}/stat`)).toBe(expected);
  });

  it('keeps the process alive until its jobs settled, then lets it exit', () => {
    const output = runAddonScript(`
      const data = [Buffer.alloc(1 << 20, 1), Buffer.alloc(1 << 20, 2)];
      const parity = [Buffer.alloc(1 << 20)];
      isal.rsEncodeAsync(2, 1, data, parity).then(() => console.log('settled', parity[0][0]));`);
    expect(output).toBe(`settled ${gfEncodeByte(1, 2)}\n`);
  });

  it('survives process.exit() with jobs in flight', () => {
    const output = runAddonScript(`
      const table = Buffer.alloc(4 * 4096);
      for (let i = 0; i < 64; i++) isal.crc32cChunksAsync(Buffer.alloc(16 << 20), 4096, table);
      console.log('exiting');
      process.exit(0);`);
    expect(output).toBe('exiting\n');
  });

  it('stops a terminated worker thread\'s pool with jobs in flight, and other threads go on', () => {
    const output = runAddonScript(`
      const { Worker } = require('node:worker_threads');
      const body = 'const isal = require(' + JSON.stringify(${JSON.stringify(ADDON_PATH)}) + ');' +
        'const data = [Buffer.alloc(8 << 20, 1), Buffer.alloc(8 << 20, 2)];' +
        'for (let i = 0; i < 32; i++) isal.rsEncodeAsync(2, 1, data, [Buffer.alloc(8 << 20)]);' +
        'require("node:worker_threads").parentPort.postMessage("queued");';
      (async () => {
        for (let round = 0; round < 4; round++) {
          const worker = new Worker(body, { eval: true });
          await new Promise((resolve) => worker.once('message', resolve));
          await worker.terminate();
        }
        const parity = [Buffer.alloc(4096)];
        await isal.rsEncodeAsync(2, 1, [Buffer.alloc(4096, 5), Buffer.alloc(4096, 6)], parity);
        console.log('main', parity[0][0]);
      })();`);
    expect(output).toBe(`main ${gfEncodeByte(5, 6)}\n`);
  });
});

/** The parity byte of a 2+1 code over data bytes `a` and `b`, computed synchronously. */
function gfEncodeByte(a: number, b: number): number {
  const codec = new ReedSolomon(2, 1);
  const parity = [Buffer.alloc(64)];
  codec.encode([Buffer.alloc(64, a), Buffer.alloc(64, b)], parity);
  return parity[0]![0]!;
}
