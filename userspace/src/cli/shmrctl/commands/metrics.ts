/**
 * `shmrctl metrics NAME [LABEL=V | LABEL!=V | LABEL=~RE | LABEL!~RE]... [--fn avg] [--intervals N]`:
 * evaluates a metric of the daemon's query engine (QueryMetric) and prints its value. The
 * arguments read as those of `shmr metrics query`; the function and count are checked here
 * (exit 2), the name and the matchers' regexes by the daemon (exit 4).
 */
import { MATCHER_TEXT_HELP, parseMatcherText, QUERY_FUNCTIONS } from '../../../metrics/query.js';
import { UsageError } from '../exit-codes.js';
import { ok, parseCommand, required, withClient, type CommandResult } from '../command.js';

/** Matchers a command line may give (the D-Bus call takes any number; this bounds the argv). */
const MATCHERS_MAX = 32;

export async function metrics(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, { fn: { type: 'string' }, intervals: { type: 'string' } }, 1 + MATCHERS_MAX);
  const name = required(parsed, 0, 'metric NAME');
  const matchers = parsed.positionals.slice(1).map((text) => {
    const matcher = parseMatcherText(text);
    if (matcher === undefined) throw new UsageError(`matcher "${text}": ${MATCHER_TEXT_HELP}`);
    return matcher;
  });
  const fn = typeof parsed.values['fn'] === 'string' ? parsed.values['fn'] : 'avg';
  if (!(QUERY_FUNCTIONS as readonly string[]).includes(fn)) {
    throw new UsageError(`--fn: "${fn}" is not one of ${QUERY_FUNCTIONS.join(', ')}`);
  }
  const intervalsText = parsed.values['intervals'];
  const intervals = typeof intervalsText === 'string' ? Number(intervalsText) : 1;
  if (!Number.isInteger(intervals) || intervals < 1 || intervals > 100_000) {
    throw new UsageError(`--intervals: "${String(intervalsText)}" is not a count of intervals (1 to 100000)`);
  }
  const [value] = await withClient(parsed, undefined, (client) => client.call('QueryMetric', name, matchers, fn, intervals));
  return ok({ name, matchers, fn, intervals, value: Number(value) }, String(Number(value)));
}
