/*
 * libfuse low-level op callbacks: each turns one request into one call of the session's JS
 * dispatcher for that op. They run on the JS thread (inside fuse_session_process_buf, called
 * from the uv_poll callback or from mount()), so calling JS directly is allowed.
 *
 * Calling convention (mirrored in binding.ts): dispatcher(handle, ...strings/Buffers);
 * the request context and numeric arguments are in the IN frame at IN_A0 + k as listed
 * per op below. The dispatcher must eventually call exactly one reply function with the
 * handle; if it throws instead, we answer EIO here.
 */
#include <errno.h>
#include <string.h>

#include "shmr_fuse3.h"

#define SHMR_OP_NAME(upper, lower) #lower,
const char *const op_names[OP_COUNT] = { SHMR_OPS(SHMR_OP_NAME) };
#undef SHMR_OP_NAME

typedef struct call {
  session_t *s;
  napi_env env;
  napi_handle_scope scope;
  double *in;
  double handle;
  op_t op;
  size_t argc;
  napi_value argv[4];
} call_t;

/* Calls the dispatcher of `op`; false leaves the JS exception pending for the caller. */
static bool call_js(session_t *s, op_t op, size_t argc, napi_value *argv) {
  napi_value fn, recv, result;
  napi_get_reference_value(s->env, s->fn[op], &fn);
  napi_get_undefined(s->env, &recv);
  return napi_call_function(s->env, recv, fn, argc, argv, &result) == napi_ok;
}

/* Replies err to a handle if nobody has replied to it yet. */
static void reply_if_pending(session_t *s, double handle, int err) {
  pending_t *p = pending_get(&s->addon->table, handle);
  if (p == NULL) return;
  fuse_reply_err(p->req, err);
  s->replies++;
  pending_release(&s->addon->table, p);
}

/*
 * Registers the request and fills the context. False means the request was already
 * answered (no memory for a slot, or the environment is shutting down).
 */
static bool begin(call_t *c, fuse_req_t req, op_t op, size_t size) {
  session_t *s = fuse_req_userdata(req);
  s->requests++;
  if (!s->js_ok || !pending_alloc(&s->addon->table, s, req, op, size, &c->handle)) {
    fuse_reply_err(req, s->js_ok ? ENOMEM : EIO);
    s->replies++;
    return false;
  }
  c->s = s;
  c->env = s->env;
  c->op = op;
  c->in = s->addon->in;
  napi_open_handle_scope(c->env, &c->scope);
  napi_create_double(c->env, c->handle, &c->argv[0]);
  c->argc = 1;
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  c->in[IN_UID] = ctx->uid;
  c->in[IN_GID] = ctx->gid;
  c->in[IN_PID] = ctx->pid;
  c->in[IN_UMASK] = ctx->umask;
  return true;
}

static void finish(call_t *c) { napi_close_handle_scope(c->env, c->scope); }

/* Answers the request without calling JS (bad argument from the kernel side). */
static void fail(call_t *c, int err) {
  reply_if_pending(c->s, c->handle, err);
  finish(c);
}

static void invoke(call_t *c) {
  if (!call_js(c->s, c->op, c->argc, c->argv)) {
    /* binding.ts catches handler errors itself; getting here is a bug in the dispatcher. */
    log_exception(c->env, op_names[c->op]);
    reply_if_pending(c->s, c->handle, EIO);
  }
  finish(c);
}

/*
 * Adds a name argument. A name that is not UTF-8 cannot be represented faithfully as a JS
 * string, so the request is answered with `err` (ENOENT where such a name cannot exist,
 * EINVAL where it would be created) and false is returned.
 */
static bool push_name(call_t *c, const char *name, int err) {
  size_t len = strlen(name);
  if (!utf8_valid(name, len) ||
      napi_create_string_utf8(c->env, name, len, &c->argv[c->argc]) != napi_ok) {
    fail(c, err);
    return false;
  }
  c->argc++;
  return true;
}

/* Copies bytes into a new JS Buffer: the receive buffer is reused after we return. */
static bool push_copy(call_t *c, const void *data, size_t len) {
  void *unused;
  if (napi_create_buffer_copy(c->env, len, data, &unused, &c->argv[c->argc]) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(c->env, &pending);
    if (pending) log_exception(c->env, "buffer allocation");
    fail(c, ENOMEM);
    return false;
  }
  c->argc++;
  return true;
}

static double fh_of(const struct fuse_file_info *fi) { return fi ? (double)fi->fh : -1; }

/* ---- init / destroy / forget: no reply handle ---- */

static void want(struct fuse_conn_info *conn, unsigned cap, bool on) {
  if (on && (conn->capable & cap)) conn->want |= cap;
  else conn->want &= ~cap;
}

static void configure_conn(session_t *s, struct fuse_conn_info *conn) {
  const session_config_t *c = &s->cfg;
  /* libfuse has already clamped max_write to its receive buffer (1 MiB); never raise it
     past that. It derives max_pages from max_write, so 1 MiB writes arrive whole. */
  if (c->max_write < conn->max_write) conn->max_write = c->max_write;
  /* Must equal the max_read mount option or libfuse fails INIT and leaves a dead mount;
     binding.ts derives both from the same number. */
  conn->max_read = c->max_read;
  /* The kernel offers its maximum; we can only lower it. */
  if (c->max_readahead < conn->max_readahead) conn->max_readahead = c->max_readahead;
  conn->time_gran = c->time_gran;
  /* Readahead and writeback are "background" requests; the kernel caps how many are in
     flight. 0 keeps the kernel default. */
  if (c->max_background != 0) conn->max_background = c->max_background;
  /* Several reads of one file in flight at once: readahead overlaps the application. */
  want(conn, FUSE_CAP_ASYNC_READ, c->async_read);
  /* Lookups and readdirs of one directory concurrently: our handlers are asynchronous. */
  want(conn, FUSE_CAP_PARALLEL_DIROPS, c->parallel_dirops);
  s->add_parallel_dirops = (conn->want & FUSE_CAP_PARALLEL_DIROPS) != 0;
  /* Kernel merges small writes into the page cache (big win for random writes) at the
     cost of extra SETATTR/GETATTR; opt-in because it changes open-flag semantics. */
  want(conn, FUSE_CAP_WRITEBACK_CACHE, c->writeback_cache);
  /* open(O_TRUNC) arrives as one OPEN carrying O_TRUNC instead of OPEN + SETATTR(size 0):
     one round trip less, and the handler truncates. */
  want(conn, FUSE_CAP_ATOMIC_O_TRUNC, true);
  /* We do not serve lookups of "." and ".." by node id, so no NFS export. */
  want(conn, FUSE_CAP_EXPORT_SUPPORT, false);
  /* Data goes through JS Buffers; splice only adds work then (measured in the notes). */
  want(conn, FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE, false);
  /* Let the kernel clear suid/sgid with an explicit SETATTR, so handlers need not. */
  want(conn, FUSE_CAP_HANDLE_KILLPRIV, false);
}

static napi_value conn_object(napi_env env, const struct fuse_conn_info *conn) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_uint32(env, conn->proto_major, &v);
  napi_set_named_property(env, obj, "protoMajor", v);
  napi_create_uint32(env, conn->proto_minor, &v);
  napi_set_named_property(env, obj, "protoMinor", v);
  napi_create_uint32(env, conn->capable, &v);
  napi_set_named_property(env, obj, "capable", v);
  napi_create_uint32(env, conn->want, &v);
  napi_set_named_property(env, obj, "want", v);
  return obj;
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  s->got_init = true;
  configure_conn(s, conn);
  if (s->fn[OP_INIT] == NULL || !s->js_ok) return;
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  napi_value info = conn_object(s->env, conn);
  if (!call_js(s, OP_INIT, 1, &info)) {
    /* mount() rethrows it once the half-made mount is gone. */
    napi_value exc;
    napi_get_and_clear_last_exception(s->env, &exc);
    if (s->init_error == NULL) napi_create_reference(s->env, exc, 1, &s->init_error);
    fuse_session_exit(s->se);
  }
  napi_close_handle_scope(s->env, scope);
}

static void op_destroy(void *userdata) {
  session_t *s = userdata;
  if (!s->js_ok) return;
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  if (!call_js(s, OP_DESTROY, 0, NULL)) log_exception(s->env, "destroy");
  napi_close_handle_scope(s->env, scope);
}

/* IN: A0 ino, A0+1 nlookup */
static void forget_one(session_t *s, fuse_ino_t ino, uint64_t nlookup) {
  if (!s->js_ok) return;
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  s->addon->in[IN_A0] = (double)ino;
  s->addon->in[IN_A0 + 1] = (double)nlookup;
  if (!call_js(s, OP_FORGET, 0, NULL)) log_exception(s->env, "forget");
  napi_close_handle_scope(s->env, scope);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session_t *s = fuse_req_userdata(req);
  s->requests++;
  forget_one(s, ino, nlookup);
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *s = fuse_req_userdata(req);
  s->requests++;
  for (size_t i = 0; i < count; i++) forget_one(s, forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

/* ---- requests with a reply ---- */

/* IN: A0 parent | (handle, name) */
static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  call_t c;
  if (!begin(&c, req, OP_LOOKUP, 0)) return;
  c.in[IN_A0] = (double)parent;
  if (push_name(&c, name, ENOENT)) invoke(&c);
}

/* IN: A0 ino, A0+1 fh or -1 */
static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  call_t c;
  if (attr_reply(fuse_req_userdata(req), req, ino)) return;
  if (!begin(&c, req, OP_GETATTR, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = fh_of(fi);
  invoke(&c);
}

/* IN: A0 ino, +1 to_set, +2 fh or -1, +3 mode, +4 uid, +5 gid, +6 size,
       +7/+8 atime s/ns, +9/+10 mtime s/ns, +11/+12 ctime s/ns, +13 kill suid/sgid (0/1) */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  call_t c;
  if (attr_setattr_reply(fuse_req_userdata(req), req, ino, attr, to_set)) return;
  if (!begin(&c, req, OP_SETATTR, 0)) return;
  double *a = c.in + IN_A0;
  a[0] = (double)ino;
  a[1] = to_set;
  a[2] = fh_of(fi);
  a[3] = attr->st_mode;
  a[4] = attr->st_uid;
  a[5] = attr->st_gid;
  a[6] = (double)attr->st_size;
  a[7] = (double)attr->st_atim.tv_sec;
  a[8] = (double)attr->st_atim.tv_nsec;
  a[9] = (double)attr->st_mtim.tv_sec;
  a[10] = (double)attr->st_mtim.tv_nsec;
  a[11] = (double)attr->st_ctim.tv_sec;
  a[12] = (double)attr->st_ctim.tv_nsec;
  a[13] = request_kills_suidgid(c.s);
  invoke(&c);
}

/* IN: A0 ino */
static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  call_t c;
  if (!begin(&c, req, OP_READLINK, 0)) return;
  c.in[IN_A0] = (double)ino;
  invoke(&c);
}

/* IN: A0 parent, +1 mode, +2 rdev | (handle, name) */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev) {
  call_t c;
  if (!begin(&c, req, OP_MKNOD, 0)) return;
  c.in[IN_A0] = (double)parent;
  c.in[IN_A0 + 1] = mode;
  c.in[IN_A0 + 2] = (double)rdev;
  if (push_name(&c, name, EINVAL)) invoke(&c);
}

/* IN: A0 parent, +1 mode | (handle, name) */
static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  call_t c;
  if (!begin(&c, req, OP_MKDIR, 0)) return;
  c.in[IN_A0] = (double)parent;
  c.in[IN_A0 + 1] = mode;
  if (push_name(&c, name, EINVAL)) invoke(&c);
}

/* IN: A0 parent | (handle, name); shared by unlink and rmdir */
static void remove_entry(fuse_req_t req, op_t op, fuse_ino_t parent, const char *name) {
  call_t c;
  if (!begin(&c, req, op, 0)) return;
  c.in[IN_A0] = (double)parent;
  if (push_name(&c, name, ENOENT)) invoke(&c);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  remove_entry(req, OP_UNLINK, parent, name);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  remove_entry(req, OP_RMDIR, parent, name);
}

/* IN: A0 parent | (handle, target, name); target is a string if UTF-8, else a Buffer */
static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  call_t c;
  if (!begin(&c, req, OP_SYMLINK, 0)) return;
  c.in[IN_A0] = (double)parent;
  size_t len = strlen(link);
  if (!utf8_valid(link, len)) {
    if (!push_copy(&c, link, len)) return;
  } else if (napi_create_string_utf8(c.env, link, len, &c.argv[c.argc]) == napi_ok) {
    c.argc++;
  } else {
    fail(&c, EIO);
    return;
  }
  if (push_name(&c, name, EINVAL)) invoke(&c);
}

/* IN: A0 parent, +1 newparent, +2 flags | (handle, name, newname) */
static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  call_t c;
  if (!begin(&c, req, OP_RENAME, 0)) return;
  c.in[IN_A0] = (double)parent;
  c.in[IN_A0 + 1] = (double)newparent;
  c.in[IN_A0 + 2] = flags;
  if (push_name(&c, name, ENOENT) && push_name(&c, newname, EINVAL)) invoke(&c);
}

/* IN: A0 ino, +1 newparent | (handle, newname) */
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  call_t c;
  if (!begin(&c, req, OP_LINK, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = (double)newparent;
  if (push_name(&c, newname, EINVAL)) invoke(&c);
}

/* IN: A0 ino, +1 flags, +2 kill suid/sgid (0/1); shared by open and opendir */
static void open_like(fuse_req_t req, op_t op, fuse_ino_t ino, struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, op, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = fi->flags;
  c.in[IN_A0 + 2] = request_kills_suidgid(c.s);
  invoke(&c);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  open_like(req, OP_OPEN, ino, fi);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  open_like(req, OP_OPENDIR, ino, fi);
}

/* IN: A0 ino, +1 size, +2 offset, +3 fh; shared by read and readdir */
static void read_like(fuse_req_t req, op_t op, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, op, size)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = (double)size;
  c.in[IN_A0 + 2] = (double)off;
  c.in[IN_A0 + 3] = fh_of(fi);
  invoke(&c);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  if (chunk_read(fuse_req_userdata(req), req, ino, size, off, fi)) return;
  read_like(req, OP_READ, ino, size, off, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  read_like(req, OP_READDIR, ino, size, off, fi);
}

/*
 * IN: A0 ino, +1 offset, +2 fh, +3 flags, +4 lent slot (-1: none), +5 size,
 * +6 kill suid/sgid (0/1) | (handle, data): a lent ArrayBuffer (its first `size` bytes), or a Buffer copy.
 */
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, OP_WRITE, size)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = (double)off;
  c.in[IN_A0 + 2] = fh_of(fi);
  c.in[IN_A0 + 3] = fi->flags;
  c.in[IN_A0 + 5] = (double)size;
  c.in[IN_A0 + 6] = request_kills_suidgid(c.s);
  session_t *s = c.s;
  write_pool_t *w = &s->addon->writes;
  const char *payload = buf;
  int slot;
  if (s->recv_slot >= 0) {
    /* The payload was received into a lent-buffer slot, not behind the header (io_read). */
    int received = s->recv_slot;
    s->recv_slot = -1;
    if (size > s->recv_bytes || buf != (const char *)s->buf.mem + ABI_WRITE_PAYLOAD_OFFSET) {
      fail(&c, EIO); /* not the layout io_read split for: never hand on other bytes */
      return;
    }
    payload = w->data[received];
    slot = write_pool_claim(c.env, w, received, &c.argv[c.argc]);
  } else {
    slot = write_pool_lend(c.env, w, buf, size, &c.argv[c.argc]);
  }
  c.in[IN_A0 + 4] = slot;
  if (slot >= 0) {
    c.argc++;
    if (!call_js(c.s, c.op, c.argc, c.argv)) {
      /* As in invoke(); JS never saw the buffer, so it is returned here. */
      log_exception(c.env, op_names[c.op]);
      reply_if_pending(c.s, c.handle, EIO);
      write_pool_return(&c.s->addon->writes, slot);
    }
    finish(&c);
  } else if (push_copy(&c, payload, size)) {
    invoke(&c);
  }
}

/* IN: A0 ino, +1 fh | (handle, lockOwner: bigint) */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, OP_FLUSH, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = fh_of(fi);
  napi_create_bigint_uint64(c.env, fi->lock_owner, &c.argv[c.argc++]);
  invoke(&c);
}

/* IN: A0 ino, +1 fh, +2 flags */
static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  call_t c;
  chunk_release_handle(fuse_req_userdata(req), fi->fh);
  if (!begin(&c, req, OP_RELEASE, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = fh_of(fi);
  c.in[IN_A0 + 2] = fi->flags;
  invoke(&c);
}

/* IN: A0 ino, +1 fh */
static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, OP_RELEASEDIR, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = fh_of(fi);
  invoke(&c);
}

/* IN: A0 ino, +1 datasync (0/1), +2 fh; shared by fsync and fsyncdir */
static void fsync_like(fuse_req_t req, op_t op, fuse_ino_t ino, int datasync,
                       struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, op, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = datasync != 0;
  c.in[IN_A0 + 2] = fh_of(fi);
  invoke(&c);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  fsync_like(req, OP_FSYNC, ino, datasync, fi);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                        struct fuse_file_info *fi) {
  fsync_like(req, OP_FSYNCDIR, ino, datasync, fi);
}

/* IN: A0 ino */
static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  call_t c;
  if (!begin(&c, req, OP_STATFS, 0)) return;
  c.in[IN_A0] = (double)ino;
  invoke(&c);
}

/* IN: A0 ino, +1 flags | (handle, name, value) */
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags) {
  call_t c;
  if (!begin(&c, req, OP_SETXATTR, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = flags;
  if (push_name(&c, name, EINVAL) && push_copy(&c, value, size)) invoke(&c);
}

/* IN: A0 ino, +1 size | (handle, name) */
static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  call_t c;
  if (!begin(&c, req, OP_GETXATTR, size)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = (double)size;
  if (push_name(&c, name, ENODATA)) invoke(&c);
}

/* IN: A0 ino, +1 size */
static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  call_t c;
  if (!begin(&c, req, OP_LISTXATTR, size)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = (double)size;
  invoke(&c);
}

/* IN: A0 ino | (handle, name) */
static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  call_t c;
  if (!begin(&c, req, OP_REMOVEXATTR, 0)) return;
  c.in[IN_A0] = (double)ino;
  if (push_name(&c, name, ENODATA)) invoke(&c);
}

/* IN: A0 ino, +1 mask */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  call_t c;
  if (!begin(&c, req, OP_ACCESS, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = mask;
  invoke(&c);
}

/* IN: A0 parent, +1 mode, +2 flags (the real open flags), +3 kill suid/sgid (0/1) | (handle, name) */
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, OP_CREATE, 0)) return;
  c.in[IN_A0] = (double)parent;
  c.in[IN_A0 + 1] = mode;
  c.in[IN_A0 + 2] = fi->flags;
  c.in[IN_A0 + 3] = request_kills_suidgid(c.s);
  if (push_name(&c, name, EINVAL)) invoke(&c);
}

/* IN: A0 ino, +1 mode, +2 offset, +3 length, +4 fh */
static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
  call_t c;
  if (!begin(&c, req, OP_FALLOCATE, 0)) return;
  c.in[IN_A0] = (double)ino;
  c.in[IN_A0 + 1] = mode;
  c.in[IN_A0 + 2] = (double)offset;
  c.in[IN_A0 + 3] = (double)length;
  c.in[IN_A0 + 4] = fh_of(fi);
  invoke(&c);
}

/*
 * Only ops with a JS handler are registered, so libfuse's defaults apply to the rest
 * (ENOSYS for most; success for open/opendir/release/releasedir/forget). init is always
 * registered: the connection has to be configured whether or not JS wants to see it.
 */
void ops_fill(const session_t *s, struct fuse_lowlevel_ops *ops) {
  memset(ops, 0, sizeof *ops);
  ops->init = op_init;
  if (s->fn[OP_DESTROY]) ops->destroy = op_destroy;
  if (s->fn[OP_FORGET]) {
    ops->forget = op_forget;
    ops->forget_multi = op_forget_multi;
  }
#define SET(upper, lower) if (s->fn[OP_##upper]) ops->lower = op_##lower;
  SET(LOOKUP, lookup) SET(GETATTR, getattr) SET(SETATTR, setattr) SET(READLINK, readlink)
  SET(MKNOD, mknod) SET(MKDIR, mkdir) SET(UNLINK, unlink) SET(RMDIR, rmdir)
  SET(SYMLINK, symlink) SET(RENAME, rename) SET(LINK, link) SET(OPEN, open) SET(READ, read)
  SET(WRITE, write) SET(FLUSH, flush) SET(RELEASE, release) SET(FSYNC, fsync)
  SET(OPENDIR, opendir) SET(READDIR, readdir) SET(RELEASEDIR, releasedir)
  SET(FSYNCDIR, fsyncdir) SET(STATFS, statfs) SET(SETXATTR, setxattr) SET(GETXATTR, getxattr)
  SET(LISTXATTR, listxattr) SET(REMOVEXATTR, removexattr) SET(ACCESS, access)
  SET(CREATE, create) SET(FALLOCATE, fallocate)
#undef SET
}
