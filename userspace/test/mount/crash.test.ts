/**
 * Crash safety: writers run through the mount while the daemon is killed with SIGKILL at
 * random moments, many rounds. After each remount, fsck must find the metadata consistent and
 * every file whose fsync returned must hold exactly its data.
 *
 * The writer journals a file (name and SHA-256) only after its fsync returned, and journals a
 * deletion before the unlink, so the check knows what must be there.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, sleep, withMount } from '../helpers/mount.js';

const ROUNDS = 8;

const WRITER = `
const fs = require('fs');
const crypto = require('crypto');
const [dir, journal, round] = process.argv.slice(1);
let index = 0;
const live = [];
function step() {
  const name = 'r' + round + '-' + (index++);
  const size = (index * 7919) % (3 * 1024 * 1024) + 1;
  const data = crypto.randomBytes(size);
  const fd = fs.openSync(dir + '/' + name + '.tmp', 'w');
  for (let at = 0; at < size; at += 65536) fs.writeSync(fd, data, at, Math.min(65536, size - at), at);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(dir + '/' + name + '.tmp', dir + '/' + name);
  const dfd = fs.openSync(dir, 'r');
  fs.fsyncSync(dfd);
  fs.closeSync(dfd);
  fs.appendFileSync(journal, 'put ' + name + ' ' + crypto.createHash('sha256').update(data).digest('hex') + '\\n');
  live.push(name);
  if (live.length > 6) {
    const victim = live.shift();
    fs.appendFileSync(journal, 'del ' + victim + '\\n');
    fs.unlinkSync(dir + '/' + victim);
  }
}
try { for (;;) step(); } catch (error) { process.exit(0); }
`;

interface Expectation {
  digest: string;
  isDeleting: boolean;
}

function expectations(journal: string): Map<string, Expectation> {
  const files = new Map<string, Expectation>();
  if (!existsSync(journal)) return files;
  for (const line of readFileSync(journal, 'utf8').split('\n')) {
    const [kind, name, digest] = line.split(' ');
    if (kind === 'put' && name !== undefined && digest !== undefined) files.set(name, { digest, isDeleting: false });
    if (kind === 'del' && name !== undefined) {
      const entry = files.get(name);
      if (entry !== undefined) entry.isDeleting = true;
    }
  }
  return files;
}

describe('crash safety', () => {
  it(`keeps fsynced files exact and metadata consistent over ${ROUNDS} kill -9 rounds`, async () => {
    await withMount({ pools: { ssd: { topology: 'mirror:2', blockSize: '256KiB', buckets: 2 } } }, async (mount) => {
      const journal = join(mount.root, 'journal');
      writeFileSync(journal, '');
      let seed = 12345;
      for (let round = 0; round < ROUNDS; round++) {
        const writer = spawn(process.execPath, ['-e', WRITER, mount.mountpoint, journal, String(round)], { stdio: 'ignore' });
        seed = (seed * 1103515245 + 12345) >>> 0;
        await sleep(300 + (seed % 900));
        const writerExited = new Promise((resolve) => writer.once('exit', resolve));
        await mount.killAndRemount(async () => {
          writer.kill('SIGKILL');
          await writerExited;
        });
        for (const [name, expected] of expectations(journal)) {
          const path = join(mount.mountpoint, name);
          if (expected.isDeleting && !existsSync(path)) continue;
          if (!existsSync(path)) {
            const tail = readFileSync(journal, 'utf8').split('\n').slice(-12).join('\n');
            throw new Error(`round ${round}: ${name} is gone\njournal tail:\n${tail}`);
          }
          const digest = createHash('sha256').update(readFileSync(path)).digest('hex');
          expect(digest, `round ${round}: ${name}`).toBe(expected.digest);
        }
      }
      const fsck = await runCli(['fsck', '--config', mount.configPath, '--json']);
      const report = JSON.parse(fsck.stdout) as { problems: string[]; isClean: boolean };
      expect(report.problems).toEqual([]);
      expect(fsck.code).toBe(0);
      expect(expectations(journal).size).toBeGreaterThan(ROUNDS);
    });
  }, 300_000);
});
