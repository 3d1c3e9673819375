/**
 * Metrics through a real mount: recording of FUSE, block, shard and erasure work; the
 * Prometheus exposition scraped over HTTP, checked by promtool (Prometheus's own parser and
 * linter) and scraped by a real Prometheus server whose query API must return our value;
 * OTLP/HTTP export into a local receiver; queries over the control socket and the CLI; history
 * restored after a remount; the journal dumped while the daemon is dead; the _stat directory
 * (listing, contents, EROFS, SVGs rendered by rsvg-convert).
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/daemon/control.js';
import { runCli, sleep, withMount, type Mount } from '../helpers/mount.js';

const execFileAsync = promisify(execFile);
const FILE_BYTES = 4 * 1024 * 1024;

function requireTool(path: string, aptPackage: string): void {
  if (!existsSync(path)) throw new Error(`metrics tests need ${path} (apt-get install ${aptPackage})`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A small OTLP/HTTP receiver: keeps the JSON bodies posted to /v1/metrics. */
async function otlpReceiver(): Promise<{ server: Server; port: number; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const isJson = (request.headers['content-type'] ?? '').includes('json');
      if (request.url === '/v1/metrics' && request.method === 'POST' && isJson) {
        bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, bodies };
}

/** Value of one sample line of a text exposition (labels in their order of output). */
function sample(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{${labels}} `));
  if (line === undefined) throw new Error(`no sample ${name}{${labels}} in the scrape`);
  return Number(line.split(' ').at(-1));
}

/**
 * Runs Debian's Prometheus server against the exposition until its query API returns the
 * value `expected` for `query` (scraped, parsed and stored by the real thing).
 */
async function scrapeWithPrometheus(root: string, target: number, query: string, expected: number): Promise<void> {
  const folder = join(root, 'prometheus');
  await mkdir(folder);
  await writeFile(join(folder, 'prometheus.yml'), [
    'global: { scrape_interval: 1s }', 'scrape_configs:', '  - job_name: shmr',
    `    static_configs: [ { targets: ["127.0.0.1:${target}"] } ]`, '',
  ].join('\n'));
  const port = await freePort();
  const server = spawn('/usr/bin/prometheus', [
    `--config.file=${join(folder, 'prometheus.yml')}`, `--storage.tsdb.path=${join(folder, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ], { stdio: 'ignore' });
  const exited = once(server, 'exit');
  try {
    let last = '';
    for (let waited = 0; waited < 30_000; waited += 250) {
      await sleep(250);
      const response = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(query)}`).catch(() => undefined);
      if (response === undefined) continue;
      last = await response.text();
      // 503 "Service Unavailable" (plain text) while its storage starts: not an answer yet.
      if (!response.ok) continue;
      const result = (JSON.parse(last) as { data?: { result?: { value: [number, string] }[] } }).data?.result ?? [];
      if (result.length === 1 && Number(result[0]?.value[1]) === expected) return;
    }
    throw new Error(`prometheus never returned ${expected} for ${query}; last answer: ${last}`);
  } finally {
    server.kill('SIGTERM');
    await exited;
  }
}

async function writeFileSynced(path: string, data: Buffer): Promise<void> {
  const handle = await open(path, 'w');
  await handle.write(data);
  await handle.sync();
  await handle.close();
}

async function query(mount: Mount, params: Record<string, unknown>): Promise<number> {
  const result = await callControl(join(mount.root, 'meta'), 'queryMetric', params) as { value: number };
  return result.value;
}

async function checkStatDirectory(mount: Mount): Promise<void> {
  const statDir = join(mount.mountpoint, '_stat');
  expect(await readdir(mount.mountpoint)).toContain('_stat');
  const names = await readdir(statDir);
  for (const name of ['pools', 'tasks', 'fuse_operations_total', 'disk_io_operation_duration', 'throughput.svg', 'latency.svg', 'errors.svg']) {
    expect(names).toContain(name);
  }
  expect(await readFile(join(statDir, 'pools'), 'utf8')).toMatch(/^pool ec: read .*B\/s, write .*B\/s/m);
  expect(await readFile(join(statDir, 'tasks'), 'utf8')).toBe('no tasks\n');
  expect(await readFile(join(statDir, 'fuse_operation_bytes_total'), 'utf8'))
    .toMatch(/fuse_operation_bytes_total\{op="write"\} [1-9]\d*/);
  for (const attempt of [
    () => writeFile(join(statDir, 'pools'), 'x'),
    () => writeFile(join(statDir, 'new'), 'x'),
    () => mkdir(join(statDir, 'dir')),
    () => unlink(join(statDir, 'pools')),
    () => rename(join(statDir, 'tasks'), join(mount.mountpoint, 'tasks')),
    () => rmdir(statDir),
  ]) {
    await expect(attempt()).rejects.toMatchObject({ code: 'EROFS' });
  }
  await expect(mkdir(join(mount.mountpoint, '_stat'))).rejects.toMatchObject({ code: 'EEXIST' });
  for (const graph of ['throughput.svg', 'latency.svg', 'errors.svg']) {
    const svgPath = join(mount.root, graph);
    // Copied out first: the renderer reads a plain file, as a browser given a download would.
    await writeFile(svgPath, await readFile(join(statDir, graph)));
    const pngPath = `${svgPath}.png`;
    await execFileAsync('rsvg-convert', ['--format', 'png', '--output', pngPath, svgPath]);
    const png = await readFile(pngPath);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.byteLength).toBeGreaterThan(2000);
  }
}

describe('metrics', () => {
  it('records, exports, queries, persists and shows I/O', { timeout: 120_000 }, async () => {
    requireTool('/usr/bin/promtool', 'prometheus');
    requireTool('/usr/bin/prometheus', 'prometheus');
    requireTool('/usr/bin/rsvg-convert', 'librsvg2-bin');
    const promPort = await freePort();
    const receiver = await otlpReceiver();
    const extraYaml = [
      'metrics:', '  flush_interval: 500ms', '  collect_interval: 250ms',
      `  prometheus: { listen: "127.0.0.1:${promPort}" }`,
      `  otlp: { endpoint: "http://127.0.0.1:${receiver.port}", interval: 500ms }`, '',
    ].join('\n');
    try {
      await withMount({ pools: { ec: { topology: 'erasure:2+1', blockSize: '1MiB', buckets: 3 } }, extraYaml }, async (mount) => {
        const data = Buffer.alloc(FILE_BYTES, 7);
        await writeFileSynced(join(mount.mountpoint, 'file'), data);
        await sleep(1200);

        const response = await fetch(`http://127.0.0.1:${promPort}/metrics`);
        expect(response.status).toBe(200);
        const text = await response.text();
        const scrapePath = join(mount.root, 'scrape.txt');
        await writeFile(scrapePath, text);
        // promtool exits non-zero on a parse error and on lint problems (names, help, types).
        await execFileAsync('sh', ['-c', `promtool check metrics < ${scrapePath}`]);
        expect(sample(text, 'fuse_operation_bytes_total', 'op="write"')).toBe(FILE_BYTES);
        expect(sample(text, 'block_bytes_total', 'pool="ec",op="write"')).toBe(FILE_BYTES);
        expect(sample(text, 'disk_io_operations_total', 'pool="ec",bucket="ec0",op="write"')).toBeGreaterThan(0);
        expect(sample(text, 'erasure_encode_duration_seconds_count', 'pool="ec"')).toBe(FILE_BYTES / (1024 * 1024));
        expect(sample(text, 'disk_io_operation_duration_bucket', 'pool="ec",bucket="ec1",op="write",le="+Inf"')).toBeGreaterThan(0);
        await scrapeWithPrometheus(mount.root, promPort, 'sum(fuse_operation_bytes_total{op="write"})', FILE_BYTES);

        expect(await query(mount, { name: 'fuse_operation_bytes_total', matchers: [['op', '=', 'write']], fn: 'sum', intervals: 100 })).toBe(FILE_BYTES);
        expect(await query(mount, { name: 'disk_io_bytes_total', matchers: [['bucket', '=~', 'ec[01]'], ['op', '!=', 'read']], fn: 'sum', intervals: 100 }))
          .toBeGreaterThanOrEqual(FILE_BYTES);
        expect(await query(mount, { name: 'fuse_operation_duration_seconds', matchers: [['op', '=', 'write']], fn: 'p99', intervals: 100 })).toBeGreaterThan(0);
        await expect(query(mount, { name: 'no_such_metric' })).rejects.toThrow(/unknown metric "no_such_metric"/);
        const cli = await runCli(['metrics', 'query', '--config', mount.configPath, 'block_bytes_total', 'op=write', '--fn', 'sum', '--intervals', '100']);
        expect(cli.stderr).toBe('');
        expect(Number(cli.stdout)).toBe(FILE_BYTES);

        for (let waited = 0; receiver.bodies.length === 0 && waited < 10_000; waited += 100) await sleep(100);
        const names = JSON.stringify(receiver.bodies.at(-1));
        expect(names).toContain('"resourceMetrics"');
        expect(names).toContain('"fuse_operations_total"');
        expect(names).toContain('"disk_io_operation_duration"');

        await checkStatDirectory(mount);

        // History survives a remount; the cold page cache sends the reads to the daemon.
        await mount.remount();
        expect(await query(mount, { name: 'block_bytes_total', matchers: [['op', '=', 'write']], fn: 'sum', intervals: 3600 })).toBe(FILE_BYTES);
        expect((await readFile(join(mount.mountpoint, 'file'))).equals(data)).toBe(true);
        expect(await query(mount, { name: 'disk_io_bytes_total', matchers: [['op', '=', 'read']], fn: 'sum', intervals: 10 })).toBeGreaterThan(0);
        await sleep(1200);

        // The journal is read with the daemon dead (killed, its mount not yet detached).
        await mount.killAndRemount(async () => {
          const dump = await runCli(['metrics', 'dump', '--config', mount.configPath, '--since', '1h', '--json']);
          expect(dump.code).toBe(0);
          const records = dump.stdout.trim().split('\n').map((line) => JSON.parse(line) as { series: { name: string; labels: Record<string, string>; sum: number }[] });
          const readBytes = records.flatMap((record) => record.series)
            .filter((series) => series.name === 'block_bytes_total' && series.labels['op'] === 'read')
            .reduce((total, series) => total + series.sum, 0);
          expect(readBytes).toBeGreaterThanOrEqual(FILE_BYTES);
          const textDump = await runCli(['metrics', 'dump', '--config', mount.configPath, '--since', '1h']);
          expect(textDump.stdout).toMatch(/^\d{4}-\d\d-\d\dT.*Z block_bytes_total\{pool="ec",op="write"\} sum=\d+ count=\d+$/m);
        });
        expect((await stat(join(mount.root, 'meta', 'metrics', 'metrics.jsonl'))).size).toBeGreaterThan(0);
      });
    } finally {
      receiver.server.close();
    }
  });

  it('hides the unlisted _stat from readdir and drops everything when disabled', { timeout: 60_000 }, async () => {
    await withMount({ extraYaml: 'metrics: { stat_dir: .shmr-stat, stat_dir_listed: false }\n' }, async (mount) => {
      expect(await readdir(mount.mountpoint)).not.toContain('.shmr-stat');
      expect(await readFile(join(mount.mountpoint, '.shmr-stat', 'tasks'), 'utf8')).toBe('no tasks\n');
      await writeFile(join(mount.mountpoint, 'a'), 'x');
      expect(await readdir(mount.mountpoint)).toEqual(['a']);
    });
    await withMount({ extraYaml: 'metrics: { enabled: false }\n' }, async (mount) => {
      await expect(stat(join(mount.mountpoint, '_stat'))).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(callControl(join(mount.root, 'meta'), 'queryMetric', { name: 'cache_bytes' }))
        .rejects.toThrow(/metrics are disabled/);
      await mkdir(join(mount.mountpoint, '_stat'));
      expect(await readdir(mount.mountpoint)).toEqual(['_stat']);
    });
  });
});
