/**
 * OTLP export: every export interval, the registry's current values become one OpenTelemetry
 * ResourceMetrics (cumulative sums, gauges, explicit-bucket histograms) handed to the SDK's
 * OTLP/HTTP exporter, which posts it to `<endpoint>/v1/metrics` as OTLP JSON.
 */
import { ValueType } from '@opentelemetry/api';
import { hrTime, millisToHrTime, type ExportResult } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality, DataPointType, type MetricData, type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { LATENCY_BOUNDS_SEC, type Family, type Registry } from './registry.js';

/** Longest wait for the last export at unmount. */
const STOP_WAIT_MS = 2000;

function metricOf(family: Family, startMs: number): MetricData {
  const unit = family.kind === 'histogram' ? 's' : '';
  const descriptor = { name: family.name, description: family.help, unit, valueType: ValueType.DOUBLE };
  const times = { startTime: millisToHrTime(startMs), endTime: hrTime() };
  const series = [...family.allSeries()];
  if (family.kind === 'histogram') {
    return {
      descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.HISTOGRAM,
      dataPoints: series.map((entry) => ({
        ...times, attributes: { ...entry.labels },
        value: {
          buckets: { boundaries: [...LATENCY_BOUNDS_SEC], counts: Array.from(entry.buckets as Float64Array) },
          sum: entry.value, count: entry.count,
        },
      })),
    };
  }
  const dataPoints = series.map((entry) => ({ ...times, attributes: { ...entry.labels }, value: entry.value }));
  if (family.kind === 'gauge') {
    return {
      descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.GAUGE, dataPoints,
    };
  }
  return {
    descriptor, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.SUM,
    dataPoints, isMonotonic: true,
  };
}

/** Pushes the registry to an OTLP/HTTP endpoint every `intervalMs` until stopped. */
export class OtlpPusher {
  readonly #exporter: OTLPMetricExporter;
  readonly #registry: Registry;
  readonly #startMs = Date.now();
  readonly #resource = resourceFromAttributes({ 'service.name': 'shmr', 'process.pid': process.pid });
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { registry: Registry; endpoint: string }) {
    this.#registry = options.registry;
    const url = `${options.endpoint.replace(/\/+$/, '')}/v1/metrics`;
    this.#exporter = new OTLPMetricExporter({ url });
  }

  start(intervalMs: number, onError: (error: Error) => void): void {
    this.#timer = setInterval(() => {
      this.push().catch(onError);
    }, intervalMs);
    this.#timer.unref();
  }

  /** Exports the current values once. */
  push(): Promise<void> {
    this.#registry.collect();
    const metrics: ResourceMetrics = {
      resource: this.#resource,
      scopeMetrics: [{
        scope: { name: 'shmr' },
        metrics: [...this.#registry.families()].map((family) => metricOf(family, this.#startMs)),
      }],
    };
    return new Promise((resolve, reject) => {
      this.#exporter.export(metrics, (result: ExportResult) => {
        if (result.code === 0) resolve();
        else reject(result.error ?? new Error('OTLP export failed'));
      });
    });
  }

  /** Stops the timer and sends what is left, waiting at most STOP_WAIT_MS (an absent collector). */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => { timer = setTimeout(resolve, STOP_WAIT_MS); });
    const finish = async () => {
      await this.push().catch(() => undefined);
      await this.#exporter.shutdown().catch(() => undefined);
    };
    await Promise.race([finish(), deadline]);
    clearTimeout(timer);
  }
}
