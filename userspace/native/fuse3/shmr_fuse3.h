/*
 * shmr_fuse3: N-API binding over libfuse3's low-level API, served from the JS thread.
 *
 * Design (see /work/shared/notes/fuse3-ceiling.md for the measurements behind it):
 * - No libfuse worker threads. /dev/fuse is non-blocking and watched by a uv_poll_t on the
 *   JS thread's loop; when readable we drain a bounded number of requests with
 *   fuse_session_receive_buf + fuse_session_process_buf. Op callbacks therefore run on the
 *   JS thread and call JS directly.
 * - Every request that needs a reply gets a slot in a per-environment table; JS sees a
 *   number ("handle") = generation * 2^24 + slot index. A reply consumes the slot, so a
 *   second reply, or a reply after the session is gone, finds a stale generation and is
 *   dropped instead of touching a freed fuse_req_t.
 * - Numbers travel through two shared Float64Arrays (IN: native -> JS arguments, OUT: JS ->
 *   native reply fields) instead of JS objects: no per-request object creation or property
 *   lookups in C. Strings and Buffers travel as call arguments. Both frames are only valid
 *   synchronously (JS reads IN before calling the handler, fills OUT just before replying),
 *   which is safe because everything runs on one thread.
 *
 * The frame layouts below are mirrored in userspace/src/fuse/binding.ts: change both.
 */
#ifndef SHMR_FUSE3_H
#define SHMR_FUSE3_H

#define FUSE_USE_VERSION 312
#define NAPI_VERSION 8

#include <fuse_lowlevel.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* ---- IN frame: request context, then per-op numeric arguments (see ops.c) ---- */
enum {
  IN_UID = 0, IN_GID = 1, IN_PID = 2, IN_UMASK = 3,
  IN_A0 = 4, /* first op argument; setattr uses up to IN_A0 + 13 */
  IN_LEN = 24,
};

/* ---- OUT frame: reply fields written by JS just before a reply call ---- */
enum {
  /* struct stat, as Attr */
  OUT_INO = 0, OUT_MODE, OUT_NLINK, OUT_UID, OUT_GID, OUT_RDEV, OUT_SIZE, OUT_BLOCKS,
  OUT_BLKSIZE, OUT_ATIME_S, OUT_ATIME_NS, OUT_MTIME_S, OUT_MTIME_NS, OUT_CTIME_S,
  OUT_CTIME_NS,
  OUT_ATTR_TIMEOUT = 15,
  /* Entry */
  OUT_ENTRY_INO = 16, OUT_GENERATION = 17, OUT_ENTRY_TIMEOUT = 18,
  /* OpenReply */
  OUT_FH = 19, OUT_OPEN_FLAGS = 20,
  /* 1: keep the attributes of this reply for GETATTRs of the inode (attr_cache.c); JS writes
     it with every attribute, entry and create reply. */
  OUT_ATTR_REUSE = 21,
  /* Statfs reuses 0..8; readdir uses triplets (ino, mode, nextOffset) from 0 */
  OUT_DIR_STRIDE = 3,
  OUT_DIR_MAX = 2048, /* entries per readdir reply; a short reply is legal */
  OUT_LEN = OUT_DIR_STRIDE * OUT_DIR_MAX,
};

/* OUT_OPEN_FLAGS bits */
enum {
  OPEN_DIRECT_IO = 1, OPEN_KEEP_CACHE = 2, OPEN_NONSEEKABLE = 4, OPEN_CACHE_READDIR = 8,
  OPEN_NOFLUSH = 16, OPEN_FLAGS_ALL = 31,
};

/* Operations with a JS dispatcher; the names are the LowLevelOps keys. */
#define SHMR_OPS(X) \
  X(INIT, init) X(DESTROY, destroy) X(LOOKUP, lookup) X(FORGET, forget) \
  X(GETATTR, getattr) X(SETATTR, setattr) X(READLINK, readlink) X(MKNOD, mknod) \
  X(MKDIR, mkdir) X(UNLINK, unlink) X(RMDIR, rmdir) X(SYMLINK, symlink) \
  X(RENAME, rename) X(LINK, link) X(OPEN, open) X(READ, read) X(WRITE, write) \
  X(FLUSH, flush) X(RELEASE, release) X(FSYNC, fsync) X(OPENDIR, opendir) \
  X(READDIR, readdir) X(RELEASEDIR, releasedir) X(FSYNCDIR, fsyncdir) X(STATFS, statfs) \
  X(SETXATTR, setxattr) X(GETXATTR, getxattr) X(LISTXATTR, listxattr) \
  X(REMOVEXATTR, removexattr) X(ACCESS, access) X(CREATE, create) X(FALLOCATE, fallocate)

#define SHMR_OP_ENUM(upper, lower) OP_##upper,
typedef enum { SHMR_OPS(SHMR_OP_ENUM) OP_COUNT } op_t;
#undef SHMR_OP_ENUM

extern const char *const op_names[OP_COUNT];

/* ---- pending requests (pending.c) ---- */
struct session;

typedef struct pending {
  fuse_req_t req;     /* NULL while the slot is free */
  struct session *s;
  size_t size;        /* the kernel's size limit: read, readdir, getxattr, listxattr */
  uint32_t gen;       /* bumped on release, so old handles go stale */
  uint32_t next_free;
  uint8_t op;
} pending_t;

typedef struct pending_table {
  pending_t *slots;
  uint32_t cap;
  uint32_t free_head; /* UINT32_MAX: none */
} pending_table_t;

/* ---- lent write buffers (write_pool.c) ---- */

/*
 * WRITE payloads are received into (see io_read), or else copied out of libfuse's receive
 * buffer (reused for the next request) into, buffers lent to JS until the write handler
 * settles, then returned. A fresh buffer
 * per write cost a malloc, 256 page faults and a free per MiB on the JS thread; with 64
 * writeback writes drained per wake-up that stalled every other request for tens of ms.
 * At most WRITE_POOL_MAX buffers exist; beyond that a write gets a plain copy.
 */
#define WRITE_POOL_MAX 96
/* Where a WRITE's payload starts: sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in). */
#define ABI_WRITE_PAYLOAD_OFFSET 80
typedef struct write_pool {
  napi_ref refs[WRITE_POOL_MAX]; /* ArrayBuffers of `bytes` each; NULL: not created yet */
  void *data[WRITE_POOL_MAX];
  uint32_t free_slots[WRITE_POOL_MAX];
  uint32_t free_count;
  uint32_t created;
  size_t bytes;                  /* size of every buffer: the first session's max_write */
  bool lent[WRITE_POOL_MAX];
} write_pool_t;

/* ---- keyed maps (map.c) ---- */
typedef struct map_node {
  uint64_t k1, k2;
  struct map_node *next;
} map_node_t;

typedef struct map {
  map_node_t **buckets; /* mask + 1 chains; NULL until the first insert */
  uint32_t mask;
  uint32_t count;
} map_t;

/* ---- reads answered in C from page-cached shard chunks (chunk_read.c) ---- */
struct chunk_block;
typedef struct chunk_table {
  map_t blocks;  /* (ino, block index) -> registered shard of the block */
  map_t files;   /* (ino, 0) -> block size and count of registered blocks */
  map_t handles; /* (fh, 0) -> present once a read through fh went to JS */
  struct chunk_block *newest, *oldest; /* blocks by last use, for eviction */
  uint8_t *buffer;     /* reused read buffer, allocated at the first read */
  uint32_t blocks_max; /* registrations allowed (0: not known yet) */
  double reads, bytes, misses, mismatches;
} chunk_table_t;

/* ---- GETATTRs answered in C from attributes JS handed over (attr_cache.c) ---- */
typedef struct attr_table {
  map_t entries;       /* (ino, 0) -> the attributes and timeout to reply */
  double served, kept, setattrs_served;
} attr_table_t;

/* ---- per-environment state (one per Node environment: main thread or worker) ---- */
typedef struct addon {
  double *in;
  double *out;
  napi_ref in_ref, out_ref;
  pending_table_t table;
  char *dirbuf;       /* reused readdir packing buffer */
  size_t dirbuf_cap;
  write_pool_t writes;
} addon_t;

/* ---- one FUSE session ---- */
typedef enum { S_NEW, S_MOUNTING, S_MOUNTED, S_CLOSED } session_state_t;

typedef struct session_config {
  int argc;
  char **argv;        /* "shmr", then -o options; owned */
  char *mountpoint;   /* absolute; owned */
  unsigned max_write, max_read, max_readahead, time_gran, max_background;
  bool writeback_cache, async_read, parallel_dirops;
} session_config_t;

typedef struct session {
  napi_env env;
  addon_t *addon;
  session_config_t cfg;
  struct fuse_session *se;
  struct fuse_buf buf;          /* libfuse's receive buffer, reused for every request */
  uv_poll_t poll;
  bool poll_open;               /* uv_poll_init done, uv_close callback not yet run */
  bool wrapper_gone;            /* JS object finalized: free once the poll handle is closed */
  bool js_ok;                   /* false during environment teardown: never call JS then */
  napi_async_cleanup_hook_handle cleanup; /* set while registered */
  session_state_t state;
  int depth;                    /* >0 while inside fuse_session_process_buf */
  bool got_init;
  bool add_parallel_dirops;      /* see io_writev in shmr_fuse3.c */
  uint64_t init_unique;         /* the INIT request's id until it is answered */
  /*
   * A WRITE payload received straight into a free lent-buffer slot (see io_read): its slot
   * (-1: none) and bytes, until op_write lends that slot or the request is done.
   */
  int recv_slot;
  size_t recv_bytes;
  napi_ref self;                /* the JS handle object: strong while mounted */
  napi_ref fn[OP_COUNT];        /* JS dispatchers; NULL where the filesystem has no handler */
  napi_ref on_closed;
  napi_ref init_error;          /* exception thrown by the init handler, rethrown by mount() */
  napi_async_context actx;
  double requests, replies;
  chunk_table_t chunks;         /* blocks whose reads are answered in C (chunk_read.c) */
  attr_table_t attrs;           /* inodes whose GETATTRs are answered in C (attr_cache.c) */
  struct session *next_mounted; /* process-wide list, for the atexit unmount */
} session_t;

/* pending.c */
bool pending_alloc(pending_table_t *t, session_t *s, fuse_req_t req, op_t op, size_t size,
                   double *handle);
pending_t *pending_get(pending_table_t *t, double handle);
void pending_release(pending_table_t *t, pending_t *p);
void pending_fail_session(pending_table_t *t, session_t *s, int err);
void pending_free(pending_table_t *t);

/* write_pool.c */
int write_pool_lend(napi_env env, write_pool_t *w, const void *bytes, size_t size,
                    napi_value *out);
void write_pool_return(write_pool_t *w, int slot);
int write_pool_peek(napi_env env, write_pool_t *w);
int write_pool_claim(napi_env env, write_pool_t *w, int slot, napi_value *out);
napi_status write_pool_define(napi_env env, napi_value exports, addon_t *a);

/* shmr_fuse3.c: the session of a JS handle object, or NULL with a TypeError pending */
session_t *session_unwrap(napi_env env, napi_value obj);

/* map.c */
map_node_t *map_find(const map_t *m, uint64_t k1, uint64_t k2);
bool map_add(map_t *m, map_node_t *n);
map_node_t *map_take(map_t *m, uint64_t k1, uint64_t k2);
void map_free(map_t *m, void (*free_node)(map_node_t *));
/* free() of a node that owns nothing else: for map_free. */
void map_node_free(map_node_t *n);

/* chunk_read.c */
bool chunk_read(session_t *s, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                const struct fuse_file_info *fi);
void chunk_release_handle(session_t *s, uint64_t fh);
void chunk_clear(session_t *s);
napi_status chunk_define(napi_env env, napi_value exports, addon_t *a);

/* attr_cache.c */
bool attr_reply(session_t *s, fuse_req_t req, fuse_ino_t ino);
void attr_keep(session_t *s, const struct stat *st, double timeout_sec, bool owns_times);
bool attr_setattr_reply(session_t *s, fuse_req_t req, fuse_ino_t ino, const struct stat *attr,
                        int to_set);
void attr_drop(session_t *s, uint64_t ino);
void attr_clear(session_t *s);
napi_status attr_define(napi_env env, napi_value exports, addon_t *a);

/* ops.c */
void ops_fill(const session_t *s, struct fuse_lowlevel_ops *ops);
/* Whether the request being processed asks to clear setuid/setgid (shmr_fuse3.c). */
bool request_kills_suidgid(const session_t *s);

/* replies.c */
napi_status replies_define(napi_env env, napi_value exports, addon_t *a);
/* The struct stat in OUT_INO..OUT_CTIME_NS, checked; false: a TypeError naming `op` is pending. */
bool read_attr(napi_env env, const double *o, struct stat *st, const char *op);
bool check_timeout(napi_env env, double v, const char *op, const char *what);

/* util.c */
napi_value throw_error(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
napi_value throw_type_error(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool utf8_valid(const char *s, size_t len);
void log_exception(napi_env env, const char *what);
char *get_string(napi_env env, napi_value v, const char *what);
bool get_u32(napi_env env, napi_value obj, const char *key, unsigned *out, unsigned dflt);
bool get_bool(napi_env env, napi_value obj, const char *key, bool *out, bool dflt);
/* The session of a JS API call whose first argument is the session; argv gets `argc` arguments. */
session_t *session_call(napi_env env, napi_callback_info info, size_t argc, napi_value *argv);
/* `n` arguments that must be integers in 0..2^53-1; false: a TypeError is pending. */
bool u64_args(napi_env env, const napi_value *argv, size_t n, uint64_t *out);
/* A JS array of `count` numbers (the stats calls). */
napi_value number_array(napi_env env, const double *values, uint32_t count);
void log_capture_begin(void);
char *log_capture_end(void);
void log_install(void);

#endif
