/**
 * `shmr metrics`: current values and recent averages of every metric; `shmr metrics query NAME
 * [LABEL=VALUE | LABEL!=VALUE | LABEL=~REGEX | LABEL!~REGEX]... [--fn avg] [--intervals N]`;
 * `shmr metrics dump [--since 1h] [--json]` prints the journal. Through the daemon when it is
 * mounted; otherwise from the journal (history of earlier mounts). `dump` always reads the
 * journal files directly and never needs the daemon.
 */
import { parseArgs } from 'node:util';
import { parseDuration, type Config } from '../../config/index.js';
import { MetricsEngine } from '../../metrics/engine.js';
import { ShmrMetrics } from '../../metrics/instruments.js';
import { journalDirectory, readJournal, restoreHistory } from '../../metrics/journal.js';
import { metricsText, queryMetric } from '../../metrics/control.js';
import { MATCHER_TEXT_HELP, parseMatcherText } from '../../metrics/query.js';
import { configFrom } from '../config-option.js';
import { runOnFilesystem } from './run.js';

/** An engine holding the journal's history (the daemon is not running). */
async function engineFromJournal(config: Config): Promise<MetricsEngine> {
  const engine = new MetricsEngine(new ShmrMetrics().registry, config.metrics);
  await restoreHistory(engine, journalDirectory(config.metadataDir));
  return engine;
}

export async function metricsCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'query') return queryCommand(rest);
  if (sub === 'dump') return dumpCommand(rest);
  const { values } = parseArgs({ args: [...args], options: { config: { type: 'string', short: 'c' } } });
  const config = configFrom(values.config);
  const { result } = await runOnFilesystem<{ text: string }>(config, {
    local: async () => ({ text: metricsText(await engineFromJournal(config)) }), method: 'metricsText', params: {},
  });
  process.stdout.write(result.text);
  return 0;
}

async function queryCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args], allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' }, fn: { type: 'string', default: 'avg' },
      intervals: { type: 'string', default: '1' }, json: { type: 'boolean' },
    },
  });
  const [name, ...matcherTexts] = positionals;
  if (name === undefined) {
    process.stderr.write('shmr metrics query: missing metric NAME\n');
    return 2;
  }
  const matchers: string[][] = [];
  for (const text of matcherTexts) {
    const matcher = parseMatcherText(text);
    if (matcher === undefined) {
      process.stderr.write(`shmr metrics query: matcher "${text}": ${MATCHER_TEXT_HELP}\n`);
      return 2;
    }
    matchers.push(matcher);
  }
  const params = { name, matchers, fn: values.fn, intervals: Number(values.intervals) };
  const config = configFrom(values.config);
  const { result } = await runOnFilesystem<{ value: number; series: number }>(config, {
    local: async () => queryMetric(await engineFromJournal(config), params), method: 'queryMetric', params,
  });
  process.stdout.write(values.json === true ? `${JSON.stringify(result)}\n` : `${result.value}\n`);
  return 0;
}

async function dumpCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: { config: { type: 'string', short: 'c' }, since: { type: 'string', default: '1h' }, json: { type: 'boolean' } },
  });
  const sinceMs = parseDuration(values.since);
  if (sinceMs === undefined) {
    process.stderr.write(`shmr metrics dump: --since "${values.since}" is not a duration (e.g. 1h, 30m)\n`);
    return 2;
  }
  const config = configFrom(values.config);
  const records = await readJournal(journalDirectory(config.metadataDir), {
    sinceMs: Date.now() - sinceMs,
    onBadLine: (where) => process.stderr.write(`shmr metrics dump: skipped a damaged line at ${where}\n`),
  });
  const lines: string[] = [];
  for (const record of records) {
    if (values.json === true) {
      lines.push(JSON.stringify(record));
      continue;
    }
    const time = new Date(record.t).toISOString();
    for (const series of record.series) {
      const labels = Object.entries(series.labels).map(([key, value]) => `${key}="${value}"`).join(',');
      const shown = series.kind === 'gauge' ? `last=${series.last}` : `sum=${series.sum} count=${series.count}`;
      lines.push(`${time} ${series.name}${labels === '' ? '' : `{${labels}}`} ${shown}`);
    }
  }
  process.stdout.write(lines.length === 0 ? '' : `${lines.join('\n')}\n`);
  return 0;
}
