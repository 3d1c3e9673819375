/**
 * Opening a filesystem: metadata store (with its exclusive lock), buckets (labels checked) and
 * the block and file layers over them. Shared by the mount daemon and by commands that work on
 * an unmounted filesystem.
 */
import { BlockStore, ShardReader } from '../block/index.js';
import type { Config } from '../config/index.js';
import { FileStore } from '../file/index.js';
import { SHARD_FDS_MAX } from '../limits.js';
import { log } from '../log.js';
import { MetaStore } from '../meta/index.js';
import { FdCache, Pools } from '../pool/index.js';
import { writeTargetOf } from '../tiering/policy.js';
import { Tiering } from '../tiering/service.js';
import { Tombstones } from '../tiering/tombstones.js';
import { TaskManager } from '../tasks/task-manager.js';

/** An open filesystem: close it to release the metadata lock. */
export interface OpenFilesystem {
  readonly config: Config;
  readonly meta: MetaStore;
  readonly pools: Pools;
  readonly fds: FdCache;
  readonly blocks: BlockStore;
  readonly files: FileStore;
  /** Long-running jobs (rewrite, mover, scrub, purge) of this process. */
  readonly tasks: TaskManager;
  readonly tombstones: Tombstones;
  readonly tiering: Tiering;
  close(): void;
}

/** Opens everything below the front ends; throws naming what is wrong (lock, bucket). */
export function openFilesystem(config: Config): OpenFilesystem {
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const meta = MetaStore.open(config.metadataDir, owner);
  try {
    const pools = new Pools(config);
    pools.open(meta.filesystemUuid, meta.shardDirectoryBlocks);
    const fds = new FdCache(SHARD_FDS_MAX);
    const blocks = new BlockStore(pools, new ShardReader(fds), meta.maxGeneration());
    const warned = new Set<string>();
    blocks.onDoubledUp = (pool) => {
      if (warned.has(pool)) return;
      warned.add(pool);
      log.warn(`pool ${pool} has fewer usable buckets than shards per block: some blocks keep two shards in one bucket`);
    };
    blocks.onShardError = ({ error, block }) => {
      log.error(`${error.message} (file ${meta.pathOf(block.ino)}, block ${block.blockIndex})`);
    };
    const files = new FileStore({
      meta, blocks, pools,
      options: {
        memoryLimitBytes: config.cache.memoryLimitBytes, dirtyAgeMs: config.cache.dirtyAgeMs,
        writebackDelayMs: config.cache.writebackDelayMs,
        writeTarget: (ino) => writeTargetOf({ meta, pools }, ino),
      },
    });
    const tasks = new TaskManager();
    const tombstones = new Tombstones({ meta, blocks });
    const tiering = new Tiering({ config, meta, pools, blocks, files, tasks, tombstones });
    return {
      config, meta, pools, fds, blocks, files, tasks, tombstones, tiering,
      close: () => {
        fds.clear();
        meta.close();
      },
    };
  } catch (error) {
    meta.close();
    throw error;
  }
}

/** Deletes inodes left unlinked-but-open by a previous process that died. */
export async function removeOrphans(fs: OpenFilesystem): Promise<number> {
  const orphans = fs.meta.listOrphans();
  for (const ino of orphans) {
    fs.meta.deleteInode(ino);
    await fs.files.deleteFile(ino);
  }
  return orphans.length;
}
