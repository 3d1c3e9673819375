/**
 * log: one-line messages to stderr for the operator (systemd's journal picks them up).
 * State changes and errors only, never per-request traffic.
 */

type Level = 'info' | 'warn' | 'error';

let quiet = false;

/** Silences info lines (tests, --quiet). */
export function setQuiet(value: boolean): void {
  quiet = value;
}

function write(level: Level, message: string): void {
  if (level === 'info' && quiet) return;
  process.stderr.write(`shmr ${level}: ${message}\n`);
}

export const log = {
  info: (message: string) => write('info', message),
  warn: (message: string) => write('warn', message),
  error: (message: string) => write('error', message),
};
