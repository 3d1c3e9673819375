/*
 * Reply functions, called from JS: replyX(handle, ...) with numeric fields in the OUT frame.
 *
 * Return value: 1 if the handle is stale (already answered, or the session is gone) and
 * nothing was sent; otherwise what fuse_reply_* returned (0, or -errno such as -ENOENT
 * when the kernel had already given up on an interrupted request).
 *
 * Every check that can throw runs BEFORE fuse_reply_*: a reply function either throws and
 * leaves the request pending (so the caller can still answer EIO), or consumes it.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "shmr_fuse3.h"

#define MAX_SAFE 9007199254740991.0
#define STALE 1

typedef struct reply {
  napi_env env;
  addon_t *a;
  pending_t *p;   /* NULL: stale handle */
  napi_value argv[3];
} reply_t;

/* Parses (handle, ...). False: an exception is pending. */
static bool take(napi_env env, napi_callback_info info, reply_t *r) {
  size_t argc = 3;
  void *data;
  napi_get_cb_info(env, info, &argc, r->argv, NULL, &data);
  r->env = env;
  r->a = data;
  double h;
  if (napi_get_value_double(env, r->argv[0], &h) != napi_ok) {
    throw_type_error(env, "reply: the request handle must be a number");
    return false;
  }
  r->p = pending_get(&r->a->table, h);
  return true;
}

static napi_value number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

/* Marks the request answered; rc is what fuse_reply_* returned. */
static napi_value done(reply_t *r, int rc) {
  r->p->s->replies++;
  pending_release(&r->a->table, r->p);
  return number(r->env, rc);
}

static bool check_uint(napi_env env, double v, double max, const char *op, const char *what) {
  if (v >= 0 && v <= max && v == floor(v)) return true;
  throw_type_error(env, "%s: %s must be an integer in 0..%.0f, got %g", op, what, max, v);
  return false;
}

bool check_timeout(napi_env env, double v, const char *op, const char *what) {
  if (v >= 0 && isfinite(v)) return true;
  throw_type_error(env, "%s: %s must be a finite number >= 0, got %g", op, what, v);
  return false;
}

static const char *const attr_names[] = {
  "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blocks", "blksize",
  "atime.sec", "atime.nsec", "mtime.sec", "mtime.nsec", "ctime.sec", "ctime.nsec",
};

static bool check_attr_field(napi_env env, const double *o, int i, const char *op) {
  double v = o[i];
  switch (i) {
    case OUT_MODE: case OUT_UID: case OUT_GID: case OUT_BLKSIZE:
      return check_uint(env, v, 4294967295.0, op, attr_names[i]);
    case OUT_ATIME_NS: case OUT_MTIME_NS: case OUT_CTIME_NS:
      return check_uint(env, v, 999999999.0, op, attr_names[i]);
    case OUT_ATIME_S: case OUT_MTIME_S: case OUT_CTIME_S:
      if (fabs(v) <= MAX_SAFE && v == floor(v)) return true;
      throw_type_error(env, "%s: %s must be an integer, got %g", op, attr_names[i], v);
      return false;
    default:
      return check_uint(env, v, MAX_SAFE, op, attr_names[i]);
  }
}

bool read_attr(napi_env env, const double *o, struct stat *st, const char *op) {
  for (int i = 0; i <= OUT_CTIME_NS; i++) {
    if (!check_attr_field(env, o, i, op)) return false;
  }
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)o[OUT_INO];
  st->st_mode = (mode_t)o[OUT_MODE];
  st->st_nlink = (nlink_t)o[OUT_NLINK];
  st->st_uid = (uid_t)o[OUT_UID];
  st->st_gid = (gid_t)o[OUT_GID];
  st->st_rdev = (dev_t)o[OUT_RDEV];
  st->st_size = (off_t)o[OUT_SIZE];
  st->st_blocks = (blkcnt_t)o[OUT_BLOCKS];
  st->st_blksize = (blksize_t)o[OUT_BLKSIZE];
  st->st_atim = (struct timespec){ (time_t)o[OUT_ATIME_S], (long)o[OUT_ATIME_NS] };
  st->st_mtim = (struct timespec){ (time_t)o[OUT_MTIME_S], (long)o[OUT_MTIME_NS] };
  st->st_ctim = (struct timespec){ (time_t)o[OUT_CTIME_S], (long)o[OUT_CTIME_NS] };
  return true;
}

static bool read_entry(napi_env env, const double *o, struct fuse_entry_param *e, const char *op) {
  memset(e, 0, sizeof *e);
  if (!read_attr(env, o, &e->attr, op) ||
      !check_uint(env, o[OUT_ENTRY_INO], MAX_SAFE, op, "ino") ||
      !check_uint(env, o[OUT_GENERATION], MAX_SAFE, op, "generation") ||
      !check_timeout(env, o[OUT_ENTRY_TIMEOUT], op, "entryTimeoutSec") ||
      !check_timeout(env, o[OUT_ATTR_TIMEOUT], op, "attrTimeoutSec")) {
    return false;
  }
  e->ino = (fuse_ino_t)o[OUT_ENTRY_INO];
  e->generation = (uint64_t)o[OUT_GENERATION];
  e->entry_timeout = o[OUT_ENTRY_TIMEOUT];
  e->attr_timeout = o[OUT_ATTR_TIMEOUT];
  return true;
}

static bool read_open(napi_env env, const double *o, struct fuse_file_info *fi, const char *op) {
  memset(fi, 0, sizeof *fi);
  if (!check_uint(env, o[OUT_FH], MAX_SAFE, op, "fh") ||
      !check_uint(env, o[OUT_OPEN_FLAGS], OPEN_FLAGS_ALL, op, "open flags")) {
    return false;
  }
  unsigned flags = (unsigned)o[OUT_OPEN_FLAGS];
  fi->fh = (uint64_t)o[OUT_FH];
  fi->direct_io = (flags & OPEN_DIRECT_IO) != 0;
  fi->keep_cache = (flags & OPEN_KEEP_CACHE) != 0;
  fi->nonseekable = (flags & OPEN_NONSEEKABLE) != 0;
  fi->cache_readdir = (flags & OPEN_CACHE_READDIR) != 0;
  fi->noflush = (flags & OPEN_NOFLUSH) != 0;
  return true;
}

/* Bytes of a Buffer/Uint8Array argument. False: an exception is pending. */
static bool get_bytes(napi_env env, napi_value v, const char *op, const uint8_t **data,
                      size_t *len) {
  napi_typedarray_type type;
  void *ptr;
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  if (!is_typed || napi_get_typedarray_info(env, v, &type, len, &ptr, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    throw_type_error(env, "%s: the handler must return a Buffer or Uint8Array", op);
    return false;
  }
  *data = ptr;
  return true;
}

/* Keeps an entry's attributes for GETATTRs when JS asked (OUT_ATTR_REUSE, see attr_cache.c). */
static void keep_entry_attr(const reply_t *r, const struct fuse_entry_param *e) {
  /* An entry whose attributes name another inode is not kept under either number. */
  if (r->a->out[OUT_ATTR_REUSE] == 1 && e->attr.st_ino == (ino_t)e->ino) attr_keep(r->p->s, &e->attr, e->attr_timeout, false);
}

/* ---- the exported functions ---- */

/* replyErr(handle, errno): errno 0 means success for ops that return nothing. */
static napi_value reply_err(napi_env env, napi_callback_info info) {
  reply_t r;
  if (!take(env, info, &r)) return NULL;
  double err;
  if (napi_get_value_double(env, r.argv[1], &err) != napi_ok) err = NAN;
  /* The kernel rejects errors outside 1..511, and the request would then never finish. */
  if (!check_uint(env, err, 511, "replyErr", "errno")) return NULL;
  if (r.p == NULL) return number(env, STALE);
  return done(&r, fuse_reply_err(r.p->req, (int)err));
}

static napi_value reply_entry(napi_env env, napi_callback_info info) {
  reply_t r;
  struct fuse_entry_param e;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  if (!read_entry(env, r.a->out, &e, op_names[r.p->op])) return NULL;
  keep_entry_attr(&r, &e);
  return done(&r, fuse_reply_entry(r.p->req, &e));
}

static napi_value reply_create(napi_env env, napi_callback_info info) {
  reply_t r;
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  if (!read_entry(env, r.a->out, &e, "create") || !read_open(env, r.a->out, &fi, "create")) {
    return NULL;
  }
  keep_entry_attr(&r, &e);
  return done(&r, fuse_reply_create(r.p->req, &e, &fi));
}

static napi_value reply_attr(napi_env env, napi_callback_info info) {
  reply_t r;
  struct stat st;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  const char *op = op_names[r.p->op];
  if (!read_attr(env, r.a->out, &st, op) ||
      !check_timeout(env, r.a->out[OUT_ATTR_TIMEOUT], op, "attrTimeoutSec")) {
    return NULL;
  }
  if (r.a->out[OUT_ATTR_REUSE] == 1) attr_keep(r.p->s, &st, r.a->out[OUT_ATTR_TIMEOUT], false);
  return done(&r, fuse_reply_attr(r.p->req, &st, r.a->out[OUT_ATTR_TIMEOUT]));
}

static napi_value reply_open(napi_env env, napi_callback_info info) {
  reply_t r;
  struct fuse_file_info fi;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  if (!read_open(env, r.a->out, &fi, op_names[r.p->op])) return NULL;
  return done(&r, fuse_reply_open(r.p->req, &fi));
}

/* replyBuf(handle, bytes): read data; fuse_reply_buf copies, so JS may reuse the buffer. */
static napi_value reply_buf(napi_env env, napi_callback_info info) {
  reply_t r;
  const uint8_t *data;
  size_t len;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  const char *op = op_names[r.p->op];
  if (!get_bytes(env, r.argv[1], op, &data, &len)) return NULL;
  if (len > r.p->size) {
    return throw_type_error(env, "%s: the handler returned %zu bytes, more than the %zu asked for",
                            op, len, r.p->size);
  }
  return done(&r, fuse_reply_buf(r.p->req, (const char *)data, len));
}

/* replyXattr(handle, bytes): size 0 is a length probe; a too-small buffer is ERANGE. */
static napi_value reply_xattr(napi_env env, napi_callback_info info) {
  reply_t r;
  const uint8_t *data;
  size_t len;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  if (!get_bytes(env, r.argv[1], op_names[r.p->op], &data, &len)) return NULL;
  if (r.p->size == 0) return done(&r, fuse_reply_xattr(r.p->req, len));
  if (len > r.p->size) return done(&r, fuse_reply_err(r.p->req, ERANGE));
  return done(&r, fuse_reply_buf(r.p->req, (const char *)data, len));
}

static napi_value reply_write(napi_env env, napi_callback_info info) {
  reply_t r;
  double count;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  if (napi_get_value_double(env, r.argv[1], &count) != napi_ok) count = NAN;
  if (!check_uint(env, count, (double)r.p->size, "write", "the returned byte count")) return NULL;
  return done(&r, fuse_reply_write(r.p->req, (size_t)count));
}

/* replyReadlink(handle, target: string | Uint8Array) */
static napi_value reply_readlink(napi_env env, napi_callback_info info) {
  reply_t r;
  char target[PATH_MAX + 1];
  size_t len;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  napi_valuetype type;
  napi_typeof(env, r.argv[1], &type);
  if (type == napi_string) {
    napi_get_value_string_utf8(env, r.argv[1], target, sizeof target, &len);
  } else {
    const uint8_t *data;
    if (!get_bytes(env, r.argv[1], "readlink", &data, &len)) return NULL;
    if (len < sizeof target) {
      memcpy(target, data, len);
      target[len] = '\0';
    }
  }
  if (len == 0 || len >= PATH_MAX || strlen(target) != len) {
    return throw_type_error(env, "readlink: the target must be 1..%d bytes without NUL",
                            PATH_MAX - 1);
  }
  return done(&r, fuse_reply_readlink(r.p->req, target));
}

static napi_value reply_statfs(napi_env env, napi_callback_info info) {
  static const char *const names[] = {
    "bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "namemax",
  };
  reply_t r;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  const double *o = r.a->out;
  for (int i = 0; i < 9; i++) {
    if (!check_uint(env, o[i], MAX_SAFE, "statfs", names[i])) return NULL;
  }
  struct statvfs st = {
    .f_bsize = (unsigned long)o[0], .f_frsize = (unsigned long)o[1],
    .f_blocks = (fsblkcnt_t)o[2], .f_bfree = (fsblkcnt_t)o[3], .f_bavail = (fsblkcnt_t)o[4],
    .f_files = (fsfilcnt_t)o[5], .f_ffree = (fsfilcnt_t)o[6], .f_favail = (fsfilcnt_t)o[7],
    .f_namemax = (unsigned long)o[8],
  };
  return done(&r, fuse_reply_statfs(r.p->req, &st));
}

static bool ensure_dirbuf(addon_t *a, size_t size) {
  if (a->dirbuf_cap >= size) return true;
  char *buf = realloc(a->dirbuf, size);
  if (buf == NULL) return false;
  a->dirbuf = buf;
  a->dirbuf_cap = size;
  return true;
}

/*
 * Packs names[i] with OUT triplet i, for i < count, until the next entry would not fit the
 * kernel's size. Stopping early is legal: the kernel asks again from the last nextOffset.
 */
static bool pack_dir(reply_t *r, napi_value names, uint32_t count, size_t *used) {
  napi_env env = r->env;
  const double *o = r->a->out;
  char *buf = r->a->dirbuf;
  size_t size = r->p->size;
  *used = 0;
  for (uint32_t i = 0; i < count; i++) {
    const double *t = o + (size_t)i * OUT_DIR_STRIDE;
    char name[1024];
    size_t len;
    napi_value v;
    if (!check_uint(env, t[0], MAX_SAFE, "readdir", "ino") ||
        !check_uint(env, t[1], 4294967295.0, "readdir", "mode") ||
        !check_uint(env, t[2], MAX_SAFE, "readdir", "nextOffset")) {
      return false;
    }
    if (napi_get_element(env, names, i, &v) != napi_ok ||
        napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) {
      throw_type_error(env, "readdir: entry %u has no string name", i);
      return false;
    }
    if (len == 0 || len > 255 || strlen(name) != len || strchr(name, '/') != NULL) {
      throw_type_error(env, "readdir: entry %u name must be 1..255 bytes without '/' or NUL", i);
      return false;
    }
    struct stat st = { .st_ino = (ino_t)t[0], .st_mode = (mode_t)t[1] };
    size_t need = fuse_add_direntry(r->p->req, buf + *used, size - *used, name, &st, (off_t)t[2]);
    if (need > size - *used) break;
    *used += need;
  }
  return true;
}

/* replyDir(handle, names: string[], count) with (ino, mode, nextOffset) triplets in OUT. */
static napi_value reply_dir(napi_env env, napi_callback_info info) {
  reply_t r;
  double count;
  size_t used;
  if (!take(env, info, &r)) return NULL;
  if (r.p == NULL) return number(env, STALE);
  if (napi_get_value_double(env, r.argv[2], &count) != napi_ok) count = NAN;
  if (!check_uint(env, count, OUT_DIR_MAX, "readdir", "entry count")) return NULL;
  if (!ensure_dirbuf(r.a, r.p->size)) return throw_error(env, "readdir: out of memory");
  if (!pack_dir(&r, r.argv[1], (uint32_t)count, &used)) return NULL;
  return done(&r, fuse_reply_buf(r.p->req, r.a->dirbuf, used));
}

napi_status replies_define(napi_env env, napi_value exports, addon_t *a) {
  const napi_property_descriptor props[] = {
    { "replyErr", NULL, reply_err, NULL, NULL, NULL, napi_enumerable, a },
    { "replyEntry", NULL, reply_entry, NULL, NULL, NULL, napi_enumerable, a },
    { "replyCreate", NULL, reply_create, NULL, NULL, NULL, napi_enumerable, a },
    { "replyAttr", NULL, reply_attr, NULL, NULL, NULL, napi_enumerable, a },
    { "replyOpen", NULL, reply_open, NULL, NULL, NULL, napi_enumerable, a },
    { "replyBuf", NULL, reply_buf, NULL, NULL, NULL, napi_enumerable, a },
    { "replyXattr", NULL, reply_xattr, NULL, NULL, NULL, napi_enumerable, a },
    { "replyWrite", NULL, reply_write, NULL, NULL, NULL, napi_enumerable, a },
    { "replyReadlink", NULL, reply_readlink, NULL, NULL, NULL, napi_enumerable, a },
    { "replyStatfs", NULL, reply_statfs, NULL, NULL, NULL, napi_enumerable, a },
    { "replyDir", NULL, reply_dir, NULL, NULL, NULL, napi_enumerable, a },
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
