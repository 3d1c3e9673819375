#!/usr/bin/env node
/**
 * Builds every native addon under userspace/native/<name>/ (each has its own binding.gyp)
 * with node-gyp, offline: against the installed Node's headers, never downloading any.
 *
 * Usage: node scripts/build-native.mjs [name...]   (default: all)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeRoot = join(root, 'userspace', 'native');

/** node-gyp: the project's own copy if installed, else the one bundled with npm. */
function nodeGypPath() {
  const require = createRequire(import.meta.url);
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    const npmDir = dirname(dirname(process.execPath));
    for (const candidate of [
      join(npmDir, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
      '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
      '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
    ]) {
      if (existsSync(candidate)) return candidate;
    }
  }
  throw new Error('node-gyp not found: install npm (it bundles node-gyp) or add node-gyp');
}

/** The Node headers' root: a folder with include/node/node_api.h, so node-gyp stays offline. */
function nodeDir() {
  for (const candidate of [dirname(dirname(process.execPath)), '/usr', '/usr/local']) {
    if (existsSync(join(candidate, 'include', 'node', 'node_api.h'))) return candidate;
  }
  throw new Error('Node headers (include/node/node_api.h) not found; install nodejs headers');
}

const wanted = process.argv.slice(2);
const addons = readdirSync(nativeRoot, { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && existsSync(join(nativeRoot, entry.name, 'binding.gyp')))
  .map((entry) => entry.name)
  .filter((name) => wanted.length === 0 || wanted.includes(name));

const gyp = nodeGypPath();
const nodedir = nodeDir();
for (const name of addons) {
  process.stdout.write(`native: building ${name}\n`);
  execFileSync(process.execPath, [gyp, 'rebuild', '--release', `--nodedir=${nodedir}`], {
    cwd: join(nativeRoot, name),
    stdio: 'inherit',
  });
}
