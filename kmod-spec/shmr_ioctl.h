/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * The ioctls of /dev/shmr (kmod-spec/misc.rs). Every field is little-endian, as on x86-64.
 */
#ifndef SHMR_IOCTL_H
#define SHMR_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* What SHMR_IOC_DECODE decodes the buffer as. */
enum shmr_decode_layout {
	SHMR_DECODE_SHARD_PREFIX = 1,	/* a shard file from offset 0: decodeShardPrefix */
	SHMR_DECODE_SHARD_HEADER = 2,	/* decodeStruct(ShardHeader) */
	SHMR_DECODE_BUCKET_LABEL = 3,	/* decodeStruct(BucketLabel) */
};

/*
 * Decodes input[0, input_bytes) with the generated layout and writes a text description
 * ("ok" and one "field=value" line per field, or "error kind=K field=F") into output.
 */
struct shmr_decode {
	__u64 input;		/* user pointer to the bytes */
	__u64 output;		/* user pointer to the description */
	__u32 input_bytes;	/* at most 4 MiB */
	__u32 output_bytes;	/* in: capacity; out: bytes written */
	__u32 layout;		/* enum shmr_decode_layout */
	__u32 error_kind;	/* out: 0 when it decodes, else the DecodeErrorKind value */
};

/* Damages a stored shard (module parameter allow_corrupt=1 only; EPERM otherwise). */
struct shmr_corrupt {
	__u64 offset;		/* a byte of the block to damage */
	__u32 copy;		/* shard (mirror copy) index, or 0xffffffff for every copy */
	__u32 target;		/* 0: the payload byte at offset; 1: a header byte */
};

struct shmr_info {
	__u64 size_bytes;
	__u64 blocks_stored;
	__u32 block_bytes;
	__u32 topology;		/* 1 single, 2 mirror */
	__u32 copies;
	__u32 reserved;
};

#define SHMR_IOC_DECODE _IOWR('S', 1, struct shmr_decode)
#define SHMR_IOC_CORRUPT _IOW('S', 2, struct shmr_corrupt)
#define SHMR_IOC_INFO _IOR('S', 3, struct shmr_info)

#endif /* SHMR_IOCTL_H */
