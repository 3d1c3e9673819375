/**
 * layout: the on-disk format of shmr, defined once.
 *
 * Every integer on disk is little-endian. Each structure lives in its own file as a
 * `StructLayout` literal, which the runtime codec uses and the code generator (codegen/) reads
 * to emit the C and Rust definitions of the kernel side.
 */
import { checkLayout } from './codec.js';
import { BucketLabel } from './bucket-label.js';
import { ShardHeader } from './shard-header.js';

export * from './types.js';
export * from './codec.js';
export * from './shard-header.js';
export * from './bucket-label.js';
export * from './shard-format.js';

checkLayout('ShardHeader', ShardHeader);
checkLayout('BucketLabel', BucketLabel);
