/** The `--config FILE` option shared by every subcommand. */
import { mkdirSync } from 'node:fs';
import { defaultConfig, loadConfigFile, type Config } from '../config/index.js';

/** Loads --config FILE, or the embedded default with its folders created. */
export function configFrom(path: string | undefined): Config {
  if (path !== undefined) return loadConfigFile(path);
  const base = process.cwd();
  const draft = defaultConfig(base, { checkPaths: false });
  mkdirSync(draft.mountDir, { recursive: true });
  for (const pool of draft.pools.values()) {
    for (const bucket of pool.buckets) mkdirSync(bucket.path, { recursive: true });
  }
  return defaultConfig(base, { checkPaths: true });
}
