/*
 * Chunk reads: READ requests answered in C, inside the poll callback, from shard files whose
 * bytes sit in the page cache. JS registers a block of a file (chunkRegister) after it served a
 * read of it from the block's only copy (Single) or first copy (Mirror), uncompressed: the
 * registration holds its own descriptor of that shard file (a dup: the descriptor cache may
 * close and reuse its number), where the payload starts, its length and a copy of the chunk
 * checksums of its verified prefix. A READ inside one registered block is then answered by a
 * preadv2(RWF_NOWAIT) of the covering chunks and a CRC32C check of each; anything else (not
 * registered, not all in the page cache, a short read, a checksum mismatch, an error) goes to
 * JS exactly as before, which waits, repairs and reports. So a bad chunk is never replied.
 *
 * Why it is safe: JS drops a registration (chunkDrop) in the same synchronous turn as anything
 * that changes what the block reads as or where it lives: its block record changing or going
 * (meta/record-cache.ts: every statement that changes a block row forgets it first) and a
 * block cache entry appearing for it (writes, truncation and hole punching all make one before
 * they change bytes). Both sides run on the JS thread, so no read falls between a change and
 * its drop. Only bytes below the registered data length are answered; a read reaching past it
 * (EOF, or zeros of an extended file) goes to JS.
 *
 * What JS does besides returning data is kept: the first READ through each open handle goes to
 * JS (the relatime check of filesystem.ts runs once per handle).
 *
 * Bounds: at most CHUNK_BLOCKS_MAX registrations (a quarter of RLIMIT_NOFILE if that is less),
 * least recently used dropped first; a READ of at most CHUNK_READ_BYTES_MAX.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shmr_fuse3.h"

#define CHUNK_BLOCKS_MAX 4096u
#define CHUNK_READ_BYTES_MAX (128u * 1024u)
/* Chunks are at least this big (a shard's chunk size is a multiple of the sector). */
#define CHUNK_BYTES_MIN 512u
/* Shards are written with 4 KiB chunks (CHUNK_BYTES of limits.ts); larger ones are not served here. */
#define CHUNK_BYTES_MAX (64u * 1024u)
/* The read buffer: the largest read plus a partial chunk at each end. */
#define CHUNK_BUFFER_BYTES (CHUNK_READ_BYTES_MAX + 2u * CHUNK_BYTES_MAX)
/* ---- registered blocks, files and handles ---- */

typedef struct chunk_block {
  map_node_t node;            /* k1 ino, k2 block index */
  struct chunk_block *newer, *older; /* recency list */
  int fd;                       /* our own descriptor of the shard file */
  uint32_t data_bytes;          /* payload bytes answered: [0, data_bytes) of the block */
  uint32_t chunk_bytes;
  uint64_t payload_offset;      /* where the payload starts in the shard file */
  uint32_t *crcs;               /* one CRC32C per chunk of [0, data_bytes), little endian */
} chunk_block_t;

typedef struct chunk_file {
  map_node_t node;            /* k1 ino, k2 0 */
  uint64_t block_bytes;
  uint32_t blocks;              /* registered blocks of this file */
} chunk_file_t;

static void block_free(map_node_t *n) {
  chunk_block_t *b = (chunk_block_t *)n;
  close(b->fd);
  free(b->crcs);
  free(b);
}

static void unlink_recent(chunk_table_t *t, chunk_block_t *b) {
  if (b->newer != NULL) b->newer->older = b->older;
  else t->newest = b->older;
  if (b->older != NULL) b->older->newer = b->newer;
  else t->oldest = b->newer;
  b->newer = b->older = NULL;
}

static void link_newest(chunk_table_t *t, chunk_block_t *b) {
  b->older = t->newest;
  b->newer = NULL;
  if (t->newest != NULL) t->newest->newer = b;
  t->newest = b;
  if (t->oldest == NULL) t->oldest = b;
}

static void drop_block(chunk_table_t *t, chunk_block_t *b) {
  uint64_t ino = b->node.k1;
  map_take(&t->blocks, ino, b->node.k2);
  unlink_recent(t, b);
  block_free(&b->node);
  chunk_file_t *f = (chunk_file_t *)map_find(&t->files, ino, 0);
  if (f != NULL && --f->blocks == 0) free(map_take(&t->files, ino, 0));
}

/* Drops every block of `ino`: a walk of the recency list, at most CHUNK_BLOCKS_MAX long. */
static void drop_file(chunk_table_t *t, uint64_t ino) {
  if (map_find(&t->files, ino, 0) == NULL) return;
  for (chunk_block_t *b = t->oldest, *newer; b != NULL; b = newer) {
    newer = b->newer;
    if (b->node.k1 == ino) drop_block(t, b);
  }
}

void chunk_clear(session_t *s) {
  chunk_table_t *t = &s->chunks;
  t->newest = t->oldest = NULL;
  map_free(&t->blocks, block_free);
  map_free(&t->files, map_node_free);
  map_free(&t->handles, map_node_free);
  free(t->buffer);
  t->buffer = NULL;
}

void chunk_release_handle(session_t *s, uint64_t fh) {
  free(map_take(&s->chunks.handles, fh, 0));
}

/* Reads payload bytes [start, end) of `b` into `into` without waiting; false when not all came. */
static bool pread_now(const chunk_block_t *b, uint8_t *into, uint64_t start, uint64_t end) {
  uint64_t done = 0, want = end - start;
  while (done < want) {
    struct iovec v = { .iov_base = into + done, .iov_len = want - done };
    ssize_t n = preadv2(b->fd, &v, 1, (off_t)(b->payload_offset + start + done), RWF_NOWAIT);
    if (n <= 0) return false; /* EAGAIN (not in the page cache), end of file, an error */
    done += (uint64_t)n;
  }
  return true;
}

/* True when every chunk of `data` (payload bytes from chunk `first`) matches its checksum. */
static bool chunks_match(const chunk_block_t *b, const uint8_t *data, uint64_t bytes, uint64_t first) {
  for (uint64_t i = 0, at = 0; at < bytes; i++, at += b->chunk_bytes) {
    uint64_t n = bytes - at < b->chunk_bytes ? bytes - at : b->chunk_bytes;
    uint32_t expected;
    memcpy(&expected, &b->crcs[first + i], sizeof expected);
    expected = le32toh(expected);
    /* CRC32C inverts before and after; crc32_iscsi does neither (as shmr_isal.c's crc32c_chunk). */
    if (~crc32_iscsi((unsigned char *)data + at, (int)n, UINT32_MAX) != expected) return false;
  }
  return true;
}

bool chunk_read(session_t *s, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                const struct fuse_file_info *fi) {
  chunk_table_t *t = &s->chunks;
  if (t->blocks.count == 0 || fi == NULL || off < 0 || size == 0 || size > CHUNK_READ_BYTES_MAX || !s->js_ok) {
    return false;
  }
  const chunk_file_t *f = (const chunk_file_t *)map_find(&t->files, ino, 0);
  if (f == NULL) return false;
  uint64_t index = (uint64_t)off / f->block_bytes;
  chunk_block_t *b = (chunk_block_t *)map_find(&t->blocks, ino, index);
  if (b == NULL) return false;
  uint64_t start = (uint64_t)off - index * f->block_bytes, end = start + size;
  if (end > b->data_bytes) return false;
  if (map_find(&t->handles, fi->fh, 0) == NULL) {
    /* The handle's first read goes to JS (relatime); later ones may come here. */
    map_node_t *h = calloc(1, sizeof *h);
    if (h != NULL) {
      h->k1 = fi->fh;
      if (!map_add(&t->handles, h)) free(h);
    }
    return false;
  }
  if (t->buffer == NULL && posix_memalign((void **)&t->buffer, 4096, CHUNK_BUFFER_BYTES) != 0) {
    t->buffer = NULL;
    return false;
  }
  uint64_t first = start / b->chunk_bytes;
  uint64_t span_start = first * b->chunk_bytes;
  uint64_t span_end = (end + b->chunk_bytes - 1) / b->chunk_bytes * b->chunk_bytes;
  if (span_end > b->data_bytes) span_end = b->data_bytes;
  if (!pread_now(b, t->buffer, span_start, span_end)) {
    t->misses++;
    return false;
  }
  if (!chunks_match(b, t->buffer, span_end - span_start, first)) {
    t->mismatches++;
    return false;
  }
  s->requests++;
  fuse_reply_buf(req, (const char *)t->buffer + (start - span_start), size);
  s->replies++;
  t->reads++;
  t->bytes += (double)size;
  if (t->newest != b) {
    unlink_recent(t, b);
    link_newest(t, b);
  }
  return true;
}

/* ---- JS API ---- */

static napi_value boolean(napi_env env, bool v) {
  napi_value out;
  napi_get_boolean(env, v, &out);
  return out;
}

/* Registrations allowed: CHUNK_BLOCKS_MAX, or a quarter of the descriptor limit if less. */
static uint32_t blocks_max(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY && r.rlim_cur / 4 < CHUNK_BLOCKS_MAX) {
    return r.rlim_cur < 8 ? 1 : (uint32_t)(r.rlim_cur / 4);
  }
  return CHUNK_BLOCKS_MAX;
}

/*
 * chunkRegister(session, ino, blockIndex, blockBytes, fd, payloadOffset, dataBytes, chunkBytes,
 * crcs) -> registered. `crcs`: the shard's chunk checksums from chunk 0 (LE u32 each), at least
 * one per chunk of [0, dataBytes). A block registered already stays as it is (JS drops it
 * before anything about it changes). False when not mounted, out of resources or for chunks
 * outside [CHUNK_BYTES_MIN, CHUNK_BYTES_MAX].
 */
static napi_value js_chunk_register(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  uint64_t n[7];
  session_t *s = session_call(env, info, 9, argv);
  if (s == NULL || !u64_args(env, argv + 1, 7, n)) return NULL;
  uint64_t ino = n[0], index = n[1], block_bytes = n[2], fd = n[3], payload_offset = n[4];
  uint64_t data_bytes = n[5], chunk_bytes = n[6];
  void *crcs;
  size_t crcs_len;
  napi_typedarray_type type;
  bool is_typed = false;
  napi_is_typedarray(env, argv[8], &is_typed);
  if (!is_typed || napi_get_typedarray_info(env, argv[8], &type, &crcs_len, &crcs, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    return throw_type_error(env, "chunkRegister: the checksums must be a Buffer");
  }
  if (block_bytes == 0 || data_bytes == 0 || data_bytes > block_bytes || data_bytes > UINT32_MAX ||
      chunk_bytes == 0 || fd > INT32_MAX) {
    return throw_type_error(env, "chunkRegister: block %llu / data %llu / chunk %llu bytes or fd %llu out of range",
                            (unsigned long long)block_bytes, (unsigned long long)data_bytes,
                            (unsigned long long)chunk_bytes, (unsigned long long)fd);
  }
  uint64_t chunks = (data_bytes + chunk_bytes - 1) / chunk_bytes;
  if (crcs_len < chunks * 4) {
    return throw_type_error(env, "chunkRegister: %zu checksum bytes for %llu chunks", crcs_len,
                            (unsigned long long)chunks);
  }
  chunk_table_t *t = &s->chunks;
  if (s->state != S_MOUNTED || chunk_bytes < CHUNK_BYTES_MIN || chunk_bytes > CHUNK_BYTES_MAX) return boolean(env, false);
  chunk_file_t *f = (chunk_file_t *)map_find(&t->files, ino, 0);
  if (f != NULL && f->block_bytes != block_bytes) {
    /* The file's block size changed (a rewrite): nothing registered under the old one stays. */
    drop_file(t, ino);
    f = NULL;
  }
  if (f != NULL && map_find(&t->blocks, ino, index) != NULL) return boolean(env, true);
  if (t->blocks_max == 0) t->blocks_max = blocks_max();
  if (t->blocks.count >= t->blocks_max && t->oldest != NULL) {
    drop_block(t, t->oldest);
    f = (chunk_file_t *)map_find(&t->files, ino, 0);
  }
  chunk_block_t *b = calloc(1, sizeof *b);
  uint32_t *copy = malloc(chunks * 4);
  int own = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
  if (b == NULL || copy == NULL || own < 0) goto fail;
  memcpy(copy, crcs, chunks * 4);
  b->node.k1 = ino;
  b->node.k2 = index;
  b->fd = own;
  b->data_bytes = (uint32_t)data_bytes;
  b->chunk_bytes = (uint32_t)chunk_bytes;
  b->payload_offset = payload_offset;
  b->crcs = copy;
  if (f == NULL) {
    f = calloc(1, sizeof *f);
    if (f == NULL) goto fail;
    f->node.k1 = ino;
    f->block_bytes = block_bytes;
    if (!map_add(&t->files, &f->node)) {
      free(f);
      goto fail;
    }
  }
  if (!map_add(&t->blocks, &b->node)) {
    if (f->blocks == 0) free(map_take(&t->files, ino, 0));
    goto fail;
  }
  f->blocks++;
  link_newest(t, b);
  return boolean(env, true);
fail:
  if (own >= 0) close(own);
  free(copy);
  free(b);
  return boolean(env, false);
}

/* chunkDrop(session, ino, blockIndex) -> blocks of ino left; blockIndex -1 drops all of them. */
static napi_value js_chunk_drop(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint64_t ino;
  double index;
  session_t *s = session_call(env, info, 3, argv);
  if (s == NULL || !u64_args(env, argv + 1, 1, &ino)) return NULL;
  if (napi_get_value_double(env, argv[2], &index) != napi_ok || !(index >= -1) || index != (double)(int64_t)index) {
    return throw_type_error(env, "chunkDrop: the block index must be an integer >= -1");
  }
  chunk_table_t *t = &s->chunks;
  if (index < 0) {
    drop_file(t, ino);
  } else {
    chunk_block_t *b = (chunk_block_t *)map_find(&t->blocks, ino, (uint64_t)index);
    if (b != NULL) drop_block(t, b);
  }
  const chunk_file_t *f = (const chunk_file_t *)map_find(&t->files, ino, 0);
  napi_value out;
  napi_create_uint32(env, f == NULL ? 0 : f->blocks, &out);
  return out;
}

/* chunkStats(session) -> [reads answered, their bytes, not in the page cache, checksum mismatches, blocks] */
static napi_value js_chunk_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = session_call(env, info, 1, argv);
  if (s == NULL) return NULL;
  const chunk_table_t *t = &s->chunks;
  const double values[] = { t->reads, t->bytes, t->misses, t->mismatches, t->blocks.count };
  return number_array(env, values, 5);
}

napi_status chunk_define(napi_env env, napi_value exports, addon_t *a) {
  const napi_property_descriptor props[] = {
    { "chunkRegister", NULL, js_chunk_register, NULL, NULL, NULL, napi_enumerable, a },
    { "chunkDrop", NULL, js_chunk_drop, NULL, NULL, NULL, napi_enumerable, a },
    { "chunkStats", NULL, js_chunk_stats, NULL, NULL, NULL, napi_enumerable, a },
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
