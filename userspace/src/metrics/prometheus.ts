/**
 * Prometheus export: prom-client formats the text exposition of our registry (each family
 * registered as a prom-client metric whose `get()` reads our series at scrape time), served
 * over HTTP at /metrics on a loopback port.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import client from 'prom-client';
import { LATENCY_BOUNDS_SEC, type Family, type Registry } from './registry.js';

interface PromValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** A family as prom-client's registry expects a metric: name, help, type and `get()`. */
function promMetric(family: Family) {
  return {
    name: family.name,
    help: family.help,
    type: family.kind,
    aggregator: 'sum',
    get: async () => {
      return { name: family.name, help: family.help, type: family.kind, aggregator: 'sum', values: valuesOf(family) };
    },
  };
}

function valuesOf(family: Family): PromValue[] {
  const values: PromValue[] = [];
  for (const series of family.allSeries()) {
    if (family.kind !== 'histogram') {
      values.push({ value: series.value, labels: { ...series.labels } });
      continue;
    }
    let cumulative = 0;
    const buckets = series.buckets as Float64Array;
    LATENCY_BOUNDS_SEC.forEach((bound, index) => {
      cumulative += buckets[index] as number;
      values.push({ metricName: `${family.name}_bucket`, value: cumulative, labels: { ...series.labels, le: bound } });
    });
    values.push({ metricName: `${family.name}_bucket`, value: series.count, labels: { ...series.labels, le: '+Inf' } });
    values.push({ metricName: `${family.name}_sum`, value: series.value, labels: { ...series.labels } });
    values.push({ metricName: `${family.name}_count`, value: series.count, labels: { ...series.labels } });
  }
  return values;
}

/** The text exposition of `registry` (and process metrics) as prom-client writes it. */
export class PrometheusExposition {
  readonly #prom = new client.Registry();
  readonly #registry: Registry;
  readonly #known = new Set<string>();

  constructor(registry: Registry) {
    this.#registry = registry;
  }

  get contentType(): string {
    return this.#prom.contentType;
  }

  async text(): Promise<string> {
    // Families registered after start (new hooks) join at the next scrape.
    for (const family of this.#registry.families()) {
      if (this.#known.has(family.name)) continue;
      this.#known.add(family.name);
      this.#prom.registerMetric(promMetric(family) as unknown as client.Metric);
    }
    this.#registry.collect();
    return this.#prom.metrics();
  }
}

/** Serves GET /metrics on host:port; resolves once listening. */
export async function servePrometheus(
  registry: Registry,
  listen: { host: string; port: number },
  onError: (error: Error) => void,
): Promise<Server> {
  const exposition = new PrometheusExposition(registry);
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
      return;
    }
    exposition.text().then((text) => {
      response.writeHead(200, { 'content-type': exposition.contentType }).end(text);
    }, (error: Error) => {
      onError(error);
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`);
    });
  });
  server.listen(listen.port, listen.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => {
    throw new Error(`metrics.prometheus.listen ${listen.host}:${listen.port}: ${(error as Error).message}`);
  })]);
  server.on('error', onError);
  return server;
}
