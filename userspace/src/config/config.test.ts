/**
 * Config validation: every mistake is reported with the key it concerns, all at once, and
 * nothing is created on disk for an invalid config.
 */
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SSD_POOL_YAML, useConfigRoot } from '../../test/helpers/config.js';
import { ConfigError, loadConfigFile, parseConfig } from './config.js';
import { parseSize, parseDuration, parsePercent, formatSize } from './units.js';
import { parseTopology } from './topology.js';
import { formatCompression, parseCompression } from './compression.js';

const rootOf = useConfigRoot('shmr-config-', ['ssd0', 'hdd0', 'hdd1', 'hdd2']);

const GOOD = `${SSD_POOL_YAML}  archive:
    topology: erasure:2+1
    block_size: 32MiB
    buckets:
      hdd0: { path: ./hdd0, priority: prioritize }
      hdd1: { path: ./hdd1 }
      hdd2: { path: ./hdd2, priority: evacuate }
`;

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, { source: 'test', baseDir: rootOf() });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error('config was accepted');
}

describe('config', () => {
  it('accepts the documented shape and resolves paths against the file', () => {
    writeFileSync(join(rootOf(), 'shmr.yaml'), GOOD);
    const config = loadConfigFile(join(rootOf(), 'shmr.yaml'));
    expect(config.configPath).toBe(join(rootOf(), 'shmr.yaml'));
    expect(config.mountDir).toBe(join(rootOf(), 'mnt'));
    expect(config.metadataDir).toBe(join(rootOf(), 'meta'));
    const archive = config.pools.get('archive');
    expect(archive?.topology).toEqual({ kind: 'erasure', data: 2, parity: 1 });
    expect(archive?.blockBytes).toBe(32 * 1024 * 1024);
    expect(archive?.buckets.map((bucket) => bucket.priority)).toEqual(['prioritize', 'normal', 'evacuate']);
    expect(config.cache.memoryLimitBytes).toBe(Math.max(256 * 1024 ** 2, Math.floor(totalmem() / 8)));
  });

  it('sizes the cache by bytes or by a share of memory, and names a bad share', () => {
    const limitOf = (value: string) =>
      parseConfig(`${GOOD}cache: { memory_limit: "${value}" }\n`, { source: 'test', baseDir: rootOf() }).cache.memoryLimitBytes;
    expect(limitOf('2GiB')).toBe(2 * 1024 ** 3);
    expect(limitOf('25%')).toBe(Math.floor(totalmem() / 4));
    expect(problemsOf(`${GOOD}cache: { memory_limit: 95% }\n`))
      .toEqual(['cache.memory_limit: "95%" must be a share above 0% and at most 90% of memory']);
    expect(problemsOf(`${GOOD}cache: { memory_limit: lots }\n`)).toEqual(['cache.memory_limit: "lots" is neither a size (2GiB) nor a share of memory (25%)']);
  });

  it('names the key of every problem, all at once', () => {
    const problems = problemsOf(GOOD
      .replace('write_pool: ssd', 'write_pool: fast')
      .replace('block_size: 1MiB', 'block_size: 3MiB')
      .replace('erasure:2+1', 'erasure:3+1')
      .replace('./hdd1', './ssd0')
      .replace('priority: evacuate', 'priority: sometimes'));
    expect(problems.join('\n')).toMatch(/pools\.archive\.buckets\.hdd2\.priority: must be one of/);
    const again = problemsOf(GOOD
      .replace('write_pool: ssd', 'write_pool: fast')
      .replace('block_size: 1MiB', 'block_size: 3MiB')
      .replace('erasure:2+1', 'erasure:3+1')
      .replace('./hdd1', './ssd0'));
    expect(again).toEqual(expect.arrayContaining([
      expect.stringMatching(/^write_pool: unknown pool "fast"/),
      expect.stringMatching(/^pools\.ssd\.block_size: 3MiB must be a power of two between 64KiB and 256MiB/),
      expect.stringMatching(/^pools\.archive\.topology: erasure:3\+1 needs 4 buckets, the pool has 3/),
      expect.stringMatching(/^pools\.archive\.buckets\.hdd1\.path: .*ssd0 is also pools\.ssd\.buckets\.ssd0/),
    ]));
  });

  it('rejects unknown keys, missing keys, bad topologies and sizes out of range', () => {
    expect(problemsOf(GOOD.replace('mount_dir', 'mountdir'))).toEqual(expect.arrayContaining([
      '(top level): unknown key "mountdir"', '(top level): missing required key "mount_dir"',
    ]));
    expect(problemsOf(GOOD.replace('erasure:2+1', 'raid5'))[0]).toMatch(/pools\.archive\.topology: "raid5" is not a topology/);
    expect(problemsOf(GOOD.replace('32MiB', '512MiB'))[0]).toMatch(/pools\.archive\.block_size/);
    expect(problemsOf(GOOD.replace('32MiB', '32KiB'))[0]).toMatch(/pools\.archive\.block_size/);
    expect(problemsOf(GOOD.replace('erasure:2+1', 'erasure:30+3'))[0]).toMatch(/more than 32 shards/);
    expect(problemsOf('pools: [')[0]).toMatch(/not valid YAML/);
  });

  it('rejects bucket paths that are missing, not directories or not writable', () => {
    rmSync(join(rootOf(), 'hdd0'), { recursive: true });
    writeFileSync(join(rootOf(), 'hdd1-file'), '');
    const problems = problemsOf(GOOD.replace('./hdd1', './hdd1-file'));
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/hdd0\.path: .*hdd0 does not exist/),
      expect.stringMatching(/hdd1\.path: .*hdd1-file is not a directory/),
    ]));
  });

  it('creates nothing on disk when invalid', () => {
    const before = readdirSync(rootOf()).sort();
    problemsOf(GOOD.replace('write_pool: ssd', 'write_pool: nope'));
    expect(readdirSync(rootOf()).sort()).toEqual(before);
  });

  it('reports an unreadable file by name', () => {
    expect(() => loadConfigFile(join(rootOf(), 'missing.yaml'))).toThrow(/missing\.yaml[\s\S]*cannot read/);
  });

  it('reads per-pool compression, off by default, and names what is wrong with it', () => {
    const compressed = GOOD.replace('    block_size: 32MiB\n', '    block_size: 32MiB\n    compression: { algorithm: zstd, level: 7 }\n');
    const config = parseConfig(compressed, { source: 'test', baseDir: rootOf() });
    expect(config.pools.get('archive')?.compression).toEqual({ algorithm: 'zstd', level: 7 });
    expect(config.pools.get('ssd')?.compression).toEqual({ algorithm: 'none' });
    const lz4 = parseConfig(compressed.replace('{ algorithm: zstd, level: 7 }', '{ algorithm: lz4 }'), { source: 'test', baseDir: rootOf() });
    expect(lz4.pools.get('archive')?.compression).toEqual({ algorithm: 'lz4' });
    expect(problemsOf(compressed.replace('level: 7', 'level: 40'))).toEqual([
      'pools.archive.compression: zstd level 40 is not an integer from 1 to 19',
    ]);
    expect(problemsOf(compressed.replace('zstd, level: 7', 'lz4, level: 7'))).toEqual([
      'pools.archive.compression: lz4 takes no level (only zstd has levels)',
    ]);
    expect(problemsOf(compressed.replace('algorithm: zstd', 'algorithm: brotli'))[0])
      .toMatch(/^pools\.archive\.compression\.algorithm: must be one of none, zstd, lz4/);
    expect(problemsOf(compressed.replace('level: 7', 'level: 7, speed: 2'))[0])
      .toMatch(/^pools\.archive\.compression: unknown key "speed"/);
  });

  it('parses the string form of a compression setting', () => {
    expect(parseCompression('zstd:3')).toEqual({ algorithm: 'zstd', level: 3 });
    expect(parseCompression('zstd')).toEqual({ algorithm: 'zstd', level: 3 });
    expect(parseCompression(' lz4 ')).toEqual({ algorithm: 'lz4' });
    expect(parseCompression('none')).toEqual({ algorithm: 'none' });
    expect(parseCompression('zstd:0')).toMatch(/zstd level 0 is not an integer from 1 to 19/);
    expect(parseCompression('gzip')).toMatch(/"gzip" is not a compression algorithm/);
    expect(parseCompression('zstd:fast')).toMatch(/not a compression setting/);
    expect(formatCompression({ algorithm: 'zstd', level: 9 })).toBe('zstd:9');
  });

  it('parses units', () => {
    expect(parseSize('32MiB')).toBe(32 * 1024 * 1024);
    expect(parseSize('1.5 KiB')).toBe(1536);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('10 parsecs')).toBeUndefined();
    expect(parsePercent(' 12.5 %')).toBe(12.5);
    expect(parsePercent('12.5')).toBeUndefined();
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('soon')).toBeUndefined();
    expect(formatSize(256 * 1024 * 1024)).toBe('256MiB');
    expect(parseTopology('mirror:1')).toMatch(/2 to 8 copies/);
    expect(parseTopology('mirror:3')).toEqual({ kind: 'mirror', copies: 3 });
  });
});


describe('dbus option', () => {
  it('defaults to the system bus, accepts session and none, names a bad value', () => {
    const base = { source: 'test', baseDir: rootOf() };
    expect(parseConfig(GOOD, base).dbus.bus).toBe('system');
    expect(parseConfig(`${GOOD}dbus: { bus: session }\n`, base).dbus.bus).toBe('session');
    expect(parseConfig(`${GOOD}dbus: { bus: none }\n`, base).dbus.bus).toBe('none');
    expect(problemsOf(`${GOOD}dbus: { bus: kernel }\n`)).toEqual(['dbus.bus: must be one of system, session, none']);
    expect(problemsOf(`${GOOD}dbus: { address: x }\n`)).toEqual(['dbus: unknown key "address"']);
  });
});

describe('tiering config', () => {
  it('reads the mover, tombstones and housekeeping sections with their defaults', () => {
    const config = parseConfig(`${GOOD}mover: { target: archive, idle: 2h, high_watermark: 90%, low_watermark: 70%, rate: 100MiB,
  yield_above: 50MiB }
tombstones: { grace: 1h }
housekeeping: { mover: 10m, purge: 1h }
`, { source: 'test', baseDir: rootOf() });
    expect(config.mover).toMatchObject({
      source: 'ssd', target: 'archive', topology: { kind: 'erasure', data: 2, parity: 1 },
      blockBytes: 32 * 1024 ** 2, idleMs: 7_200_000, bytesPerSecondMax: 100 * 1024 ** 2, yieldAboveBytesPerSecond: 50 * 1024 ** 2,
      highWatermark: { kind: 'fraction', value: 0.9 }, lowWatermark: { kind: 'fraction', value: 0.7 },
    });
    expect(config.tombstoneGraceMs).toBe(3_600_000);
    expect(config.housekeeping).toEqual({ moverIntervalMs: 600_000, purgeIntervalMs: 3_600_000, scrubIntervalMs: undefined });
    expect(parseConfig(GOOD, { source: 'test', baseDir: rootOf() }).mover).toBeUndefined();
    const quiet = parseConfig(`${GOOD}mover: { target: archive }\n`, { source: 'test', baseDir: rootOf() });
    expect(quiet.mover?.yieldAboveBytesPerSecond).toBe(0);
  });

  it('names every mistake of the mover section', () => {
    const problems = problemsOf(`${GOOD}mover: { target: tape, high_watermark: 150% }
`);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(/^mover.target: unknown pool "tape"/)]));
    const more = problemsOf(`${GOOD}mover: { target: archive, topology: erasure:4+2, high_watermark: 50%, low_watermark: 1GiB, idle: soon,
  yield_above: busy }
`);
    expect(more).toEqual(expect.arrayContaining([
      expect.stringMatching(/^mover.topology: erasure:4\+2 needs 6 buckets, pool archive has 3/),
      expect.stringMatching(/^mover.low_watermark: use the same kind/),
      expect.stringMatching(/^mover.idle: "soon" is not a duration/),
      expect.stringMatching(/^mover.yield_above: "busy" is not a size per second \(e\.g\. 50MiB\)/),
    ]));
  });
});

describe('metrics config', () => {
  it('defaults to metrics on with a listed _stat and no exporters', () => {
    const { metrics } = parseConfig(GOOD, { source: 'test', baseDir: rootOf() });
    expect(metrics).toMatchObject({
      enabled: true, collectIntervalMs: 1000, flushIntervalMs: 1000, retentionIntervals: 3600,
      highResolutionIntervals: 1, statDir: '_stat', statDirListed: true, prometheus: undefined, otlp: undefined,
    });
  });

  it('reads every key the issue names', () => {
    const text = `${GOOD}metrics:\n  prometheus: { listen: 127.0.0.1:9464 }\n  otlp: { endpoint: http://127.0.0.1:4318 }\n` +
      '  stat_dir: false\n  flush_interval: 2s\n  retention: 10\n';
    const { metrics } = parseConfig(text, { source: 'test', baseDir: rootOf() });
    expect(metrics.prometheus).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(metrics.otlp).toEqual({ endpoint: 'http://127.0.0.1:4318', intervalMs: 10_000 });
    expect(metrics.statDir).toBeUndefined();
    expect(metrics.flushIntervalMs).toBe(2000);
    expect(metrics.retentionIntervals).toBe(10);
  });

  it('names each bad metrics key', () => {
    const text = `${GOOD}metrics:\n  prometheus: { listen: 10.1.2.3:9464 }\n  otlp: { endpoint: localhost:4318 }\n` +
      '  collect_interval: 5s\n  flush_interval: 1s\n  stat_dir: a/b\n  colour: red\n';
    const problems = problemsOf(text);
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^metrics: unknown key "colour"/),
      expect.stringMatching(/^metrics\.stat_dir: /),
    ]));
    const semantic = problemsOf(text.replace('  stat_dir: a/b\n  colour: red\n', ''));
    expect(semantic).toEqual(expect.arrayContaining([
      expect.stringMatching(/^metrics\.prometheus\.listen: 10\.1\.2\.3:9464 is not a loopback address/),
      expect.stringMatching(/^metrics\.otlp\.endpoint: "localhost:4318" is not an http/),
      expect.stringMatching(/^metrics\.flush_interval: 1000 ms is shorter than metrics\.collect_interval/),
    ]));
  });
});
