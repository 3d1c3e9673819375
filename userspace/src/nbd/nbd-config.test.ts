/**
 * The `nbd:` config section: defaults, listen addresses, and the loopback rule (no TLS, so
 * other hosts are refused unless allow_remote says so), each mistake named by its key.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../config/index.js';

let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'shmr-nbd-config-'));
  mkdirSync(join(root, 'ssd0'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const BASE = `
mount_dir: ./mnt
metadata_dir: ./meta
write_pool: ssd
pools:
  ssd:
    topology: single
    block_size: 1MiB
    buckets:
      ssd0: { path: ./ssd0 }
`;

function parse(extra: string) {
  return parseConfig(`${BASE}${extra}`, { source: 'test', baseDir: root });
}

function problemsOf(extra: string): string[] {
  try {
    parse(extra);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error('config was accepted');
}

describe('nbd config', () => {
  it('serves <metadata_dir>/nbd.sock, no TCP, when the key is absent', () => {
    expect(parse('').nbd).toEqual({ socketPath: join(root, 'meta', 'nbd.sock'), listen: undefined, allowRemote: false });
  });

  it('resolves the socket against the config folder and parses loopback listen addresses', () => {
    expect(parse('nbd: { socket: ./data/nbd.sock, listen: 127.0.0.1:10809 }\n').nbd)
      .toEqual({ socketPath: join(root, 'data', 'nbd.sock'), listen: { host: '127.0.0.1', port: 10809 }, allowRemote: false });
    expect(parse('nbd: { listen: "[::1]:10810" }\n').nbd.listen).toEqual({ host: '::1', port: 10810 });
    expect(parse('nbd: { listen: "localhost:10811" }\n').nbd.listen).toEqual({ host: 'localhost', port: 10811 });
    expect(parse('nbd: { listen: "127.8.9.10:1" }\n').nbd.listen).toEqual({ host: '127.8.9.10', port: 1 });
  });

  it('refuses non-loopback addresses unless allow_remote is set', () => {
    expect(problemsOf('nbd: { listen: 0.0.0.0:10809 }\n')).toEqual([expect.stringMatching(/^nbd\.listen: .*not a loopback.*allow_remote/)]);
    expect(problemsOf('nbd: { listen: "[::]:10809" }\n')).toEqual([expect.stringMatching(/^nbd\.listen: /)]);
    expect(problemsOf('nbd: { listen: "nas.example:10809" }\n')).toEqual([expect.stringMatching(/^nbd\.listen: /)]);
    expect(parse('nbd: { listen: 0.0.0.0:10809, allow_remote: true }\n').nbd.listen).toEqual({ host: '0.0.0.0', port: 10809 });
  });

  it('names the key of every malformed value', () => {
    expect(problemsOf('nbd: { listen: "10809" }\n')).toEqual([expect.stringMatching(/^nbd\.listen: .*HOST:PORT/)]);
    expect(problemsOf('nbd: { listen: "127.0.0.1:0" }\n')).toEqual([expect.stringMatching(/^nbd\.listen: port 0/)]);
    expect(problemsOf('nbd: { listen: "127.0.0.1:70000" }\n')).toEqual([expect.stringMatching(/^nbd\.listen: port 70000/)]);
    expect(problemsOf('nbd: { listen: "[127.0.0.1]:1" }\n')).toEqual([expect.stringMatching(/^nbd\.listen: .*IPv6/)]);
    expect(problemsOf(`nbd: { socket: /${'x'.repeat(120)} }\n`)).toEqual([expect.stringMatching(/^nbd\.socket: .*107 bytes/)]);
    expect(problemsOf('nbd: { port: 1 }\n')).toEqual(['nbd: unknown key "port"']);
    expect(problemsOf('nbd: { allow_remote: yes please }\n')).toEqual([expect.stringMatching(/^nbd\.allow_remote: /)]);
  });
});
