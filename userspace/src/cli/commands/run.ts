/**
 * Running an operation on a filesystem the right way: directly when it is not mounted, through
 * the daemon's control socket when it is (the daemon holds the metadata lock). Never both.
 */
import type { Config } from '../../config/index.js';
import { Errno, FsError } from '../../errno.js';
import { callControl } from '../../daemon/control.js';
import { openFilesystem, type OpenFilesystem } from '../../daemon/open.js';

/** Runs `local` on the opened filesystem, or `method` on the daemon that has it open. */
export async function runOnFilesystem<T>(
  config: Config,
  operation: {
    local: (fs: OpenFilesystem) => Promise<T>;
    method: string;
    params: Record<string, unknown>;
    onProgress?: (value: unknown) => void;
  },
): Promise<{ result: T; viaDaemon: boolean }> {
  let fs: OpenFilesystem;
  try {
    fs = openFilesystem(config);
  } catch (error) {
    if (!(error instanceof FsError) || error.errno !== Errno.EBUSY) throw error;
    const result = (await callControl(config.metadataDir, operation.method, operation.params, operation.onProgress)) as T;
    return { result, viaDaemon: true };
  }
  try {
    return { result: await operation.local(fs), viaDaemon: false };
  } finally {
    fs.close();
  }
}
