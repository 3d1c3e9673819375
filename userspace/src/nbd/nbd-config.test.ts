/**
 * The `nbd:` config section: defaults, listen addresses, and the loopback rule (no TLS, so
 * other hosts are refused unless allow_remote says so), each mistake named by its key.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SSD_POOL_YAML, useConfigRoot } from '../../test/helpers/config.js';
import { ConfigError, parseConfig } from '../config/index.js';

const rootOf = useConfigRoot('shmr-nbd-config-', ['ssd0']);

function parse(extra: string) {
  return parseConfig(`${SSD_POOL_YAML}${extra}`, { source: 'test', baseDir: rootOf() });
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

/** The only problem reported, for configs expected to have exactly one. */
function problemOf(extra: string): string {
  const problems = problemsOf(extra);
  expect(problems).toHaveLength(1);
  return problems[0] ?? '';
}

function listenOf(listen: string) {
  return parse(`nbd: { listen: "${listen}" }\n`).nbd.listen;
}

describe('nbd config', () => {
  it('serves <metadata_dir>/nbd.sock, no TCP, when the key is absent', () => {
    const socketPath = join(rootOf(), 'meta', 'nbd.sock');
    expect(parse('').nbd).toEqual({ socketPath, listen: undefined, allowRemote: false });
  });

  it('resolves the socket against the config folder and parses loopback listen addresses', () => {
    const nbd = parse('nbd: { socket: ./data/nbd.sock, listen: 127.0.0.1:10809 }\n').nbd;
    expect(nbd.socketPath).toBe(join(rootOf(), 'data', 'nbd.sock'));
    expect(nbd.listen).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(listenOf('[::1]:10810')).toEqual({ host: '::1', port: 10810 });
    expect(listenOf('localhost:10811')).toEqual({ host: 'localhost', port: 10811 });
    expect(listenOf('127.8.9.10:1')).toEqual({ host: '127.8.9.10', port: 1 });
  });

  it('refuses non-loopback addresses unless allow_remote is set', () => {
    expect(problemOf('nbd: { listen: 0.0.0.0:10809 }\n'))
      .toMatch(/^nbd\.listen: .*not a loopback.*allow_remote/);
    expect(problemOf('nbd: { listen: "[::]:10809" }\n')).toMatch(/^nbd\.listen: /);
    expect(problemOf('nbd: { listen: "nas.example:10809" }\n')).toMatch(/^nbd\.listen: /);
    const remote = parse('nbd: { listen: 0.0.0.0:10809, allow_remote: true }\n').nbd;
    expect(remote.listen).toEqual({ host: '0.0.0.0', port: 10809 });
  });

  it('names the key of every malformed value', () => {
    expect(problemOf('nbd: { listen: "10809" }\n')).toMatch(/^nbd\.listen: .*HOST:PORT/);
    expect(problemOf('nbd: { listen: "127.0.0.1:0" }\n')).toMatch(/^nbd\.listen: port 0/);
    expect(problemOf('nbd: { listen: "127.0.0.1:70000" }\n')).toMatch(/^nbd\.listen: port 70000/);
    expect(problemOf('nbd: { listen: "[127.0.0.1]:1" }\n')).toMatch(/^nbd\.listen: .*IPv6/);
    const longSocket = `nbd: { socket: /${'x'.repeat(120)} }\n`;
    expect(problemOf(longSocket)).toMatch(/^nbd\.socket: .*107 bytes/);
    expect(problemOf('nbd: { port: 1 }\n')).toBe('nbd: unknown key "port"');
    expect(problemOf('nbd: { allow_remote: yes please }\n')).toMatch(/^nbd\.allow_remote: /);
  });
});
