/*
 * shmr_fuse3: module init and the session lifecycle (create, mount, serve, close).
 *
 * Serving: /dev/fuse is non-blocking and watched by a uv_poll_t on the JS thread's loop.
 * Each wake-up drains at most DRAIN_MAX requests, so a flood of requests cannot starve
 * timers and I/O completions (including the ones that finish earlier requests); libuv's
 * poll is level-triggered, so whatever is left wakes us again on the next loop turn.
 *
 * Closing happens exactly once, from whichever comes first: the kernel ends the session
 * (fusermount3 -u, umount, abort), unmount() from JS, a failed mount, or the Node
 * environment shutting down (async cleanup hook: no JS is called then).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shmr_fuse3.h"

#define DRAIN_MAX 64
#define INIT_WAIT_MS 10000

/* ---- unmount at process exit ---- */

/*
 * process.exit() and fatal exceptions end the main thread without running the environment
 * cleanup hooks; the kernel would then close /dev/fuse and leave a dead mount ("Transport
 * endpoint is not connected"). exit() still runs atexit handlers, so every mounted session
 * is listed here and detached there. No JS and no libfuse callbacks run at that point.
 */
static pthread_mutex_t mounted_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;
static session_t *mounted_head;

static void unmount_all_at_exit(void) {
  pthread_mutex_lock(&mounted_lock);
  for (session_t *s = mounted_head; s != NULL; s = s->next_mounted) {
    if (s->se != NULL) fuse_session_unmount(s->se);
  }
  mounted_head = NULL;
  pthread_mutex_unlock(&mounted_lock);
}

static void register_atexit(void) { atexit(unmount_all_at_exit); }

static void mounted_add(session_t *s) {
  pthread_once(&atexit_once, register_atexit);
  pthread_mutex_lock(&mounted_lock);
  s->next_mounted = mounted_head;
  mounted_head = s;
  pthread_mutex_unlock(&mounted_lock);
}

static void mounted_remove(session_t *s) {
  pthread_mutex_lock(&mounted_lock);
  for (session_t **p = &mounted_head; *p != NULL; p = &(*p)->next_mounted) {
    if (*p == s) {
      *p = s->next_mounted;
      break;
    }
  }
  pthread_mutex_unlock(&mounted_lock);
}

/* ---- freeing ---- */

static void config_free(session_config_t *c) {
  for (int i = 0; i < c->argc; i++) free(c->argv[i]);
  free(c->argv);
  free(c->mountpoint);
  memset(c, 0, sizeof *c);
}

static void delete_ref(napi_env env, napi_ref *ref) {
  if (*ref != NULL) napi_delete_reference(env, *ref);
  *ref = NULL;
}

static void delete_refs(session_t *s) {
  for (int i = 0; i < OP_COUNT; i++) delete_ref(s->env, &s->fn[i]);
  delete_ref(s->env, &s->on_closed);
  delete_ref(s->env, &s->init_error);
  delete_ref(s->env, &s->self);
}

/* Frees the session once both owners let go: the JS object and the libuv handle. */
static void free_if_unowned(session_t *s) {
  if (!s->wrapper_gone || s->poll_open) return;
  config_free(&s->cfg);
  free(s->buf.mem);
  free(s);
}

/* ---- closing ---- */

static void on_poll_closed(uv_handle_t *handle) {
  session_t *s = handle->data;
  s->poll_open = false;
  if (s->js_ok && s->actx != NULL) napi_async_destroy(s->env, s->actx);
  s->actx = NULL;
  if (s->cleanup != NULL) {
    /* Unregisters the hook or, if the environment is shutting down and the hook already
       ran, tells Node this session is finished. */
    napi_remove_async_cleanup_hook(s->cleanup);
    s->cleanup = NULL;
  }
  free_if_unowned(s);
}

static void call_on_closed(session_t *s) {
  if (!s->js_ok || s->on_closed == NULL) return;
  napi_handle_scope scope;
  napi_value fn, recv, result;
  napi_open_handle_scope(s->env, &scope);
  napi_get_reference_value(s->env, s->on_closed, &fn);
  napi_get_undefined(s->env, &recv);
  if (napi_call_function(s->env, recv, fn, 0, NULL, &result) != napi_ok) {
    log_exception(s->env, "closed callback");
  }
  napi_close_handle_scope(s->env, scope);
}

/*
 * Order matters: stop watching the fd before libfuse closes it; answer what is still in
 * flight (libfuse frees a request only when it is answered); unmount before destroy so the
 * destroy handler runs with the mount already gone; close the uv handle last.
 */
static void session_close(session_t *s) {
  if (s->state == S_CLOSED) return;
  bool was_mounted = s->state == S_MOUNTED;
  s->state = S_CLOSED;
  if (was_mounted) mounted_remove(s);
  if (s->poll_open) uv_poll_stop(&s->poll);
  pending_fail_session(&s->addon->table, s, EIO);
  chunk_clear(s);
  attr_clear(s);
  if (s->se != NULL) {
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    s->se = NULL;
  }
  free(s->buf.mem);
  s->buf.mem = NULL;
  if (s->poll_open) uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  /* Mounted sessions hold their JS object strongly; from now on GC may take it. */
  if (was_mounted && s->js_ok) napi_reference_unref(s->env, s->self, NULL);
  call_on_closed(s);
}

/* Node is tearing the environment down (process exit, worker end): no JS from here on. */
static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  session_t *s = arg;
  (void)handle;
  s->js_ok = false;
  session_close(s);
  /* on_poll_closed removes the hook, which is what lets Node finish the teardown. */
}

/* ---- serving ---- */

static void drain(session_t *s) {
  s->depth++;
  for (int i = 0; i < DRAIN_MAX; i++) {
    int res = fuse_session_receive_buf(s->se, &s->buf);
    if (res == -EINTR) continue;
    if (res == -EAGAIN) break;
    if (res <= 0) {
      /* 0: libfuse saw ENODEV (unmounted) and exited the session; <0: a device error. */
      fuse_session_exit(s->se);
      break;
    }
    fuse_session_process_buf(s->se, &s->buf);
    s->recv_slot = -1; /* lent by op_write, or never claimed: free for the next receive */
    if (fuse_session_exited(s->se)) break;
  }
  s->depth--;
}

/*
 * One callback scope around the whole batch: promise reactions and nextTicks queued by the
 * handlers run when it closes, i.e. once per wake-up rather than once per request.
 */
static void on_readable(uv_poll_t *handle, int status, int events) {
  session_t *s = handle->data;
  napi_env env = s->env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value resource;
  (void)events;
  napi_open_handle_scope(env, &hs);
  napi_get_reference_value(env, s->self, &resource);
  napi_open_callback_scope(env, resource, s->actx, &cs);
  /* status < 0: libuv saw POLLERR, i.e. the connection is gone. */
  if (status >= 0 && s->state == S_MOUNTED) drain(s);
  if (status < 0 || s->se == NULL || fuse_session_exited(s->se)) session_close(s);
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

/* ---- device I/O ---- */

/*
 * libfuse before 3.17.1 never tells the kernel FUSE_PARALLEL_DIROPS, even when the
 * filesystem wants it (fixed upstream by commit c9905341); the kernel then serialises all
 * lookups and readdirs of a directory, so one slow asynchronous lookup stalls its siblings.
 * We route device I/O through libfuse's custom-io hooks, remember which request is INIT,
 * and add the flag to its reply when init asked for the capability. The layouts below are
 * kernel ABI (linux/fuse.h), fixed since protocol 7.23.
 */
#define ABI_FUSE_INIT 26
#define ABI_PARALLEL_DIROPS (1u << 18)
#define ABI_INIT_OUT_FLAGS 12 /* offsetof(struct fuse_init_out, flags) */

/*
 * FUSE_HANDLE_KILLPRIV_V2 (kernel 5.11, unknown to libfuse 3.14), always added to INIT's reply.
 * Without it the kernel asks GETXATTR security.capability before every write(2) to a file,
 * a round trip per 4 KiB random write; with it the kernel marks the superblock SB_NOSEC and
 * asks once per inode (until its attributes are refreshed). In return the filesystem clears
 * setuid/setgid where the kernel flags a request (request_kills_suidgid) and on chown. A
 * kernel without the feature ignores the bit and keeps doing all of it itself.
 */
#define ABI_HANDLE_KILLPRIV_V2 (1u << 28)

struct abi_in_header { uint32_t len, opcode; uint64_t unique; };
struct abi_out_header { uint32_t len; int32_t error; uint64_t unique; };

/*
 * Zero-copy WRITE payloads: a mounted session reads each request in two pieces, its first
 * ABI_WRITE_PAYLOAD_OFFSET bytes (fuse_in_header + fuse_write_in) into libfuse's buffer, the rest
 * into a free lent-buffer slot, which is exactly where a WRITE's payload starts. op_write then
 * lends that slot to JS as is; any other request gets its rest copied back behind the header
 * (small: only WRITE carries a big payload), so libfuse sees the usual contiguous message.
 * The kernel accepts the split read: both pieces together are as large as a whole buffer.
 */
#define ABI_FUSE_WRITE 16

static ssize_t read_split(session_t *s, int fd, char *buf, size_t len) {
  write_pool_t *w = &s->addon->writes;
  s->recv_slot = -1;
  if (s->state != S_MOUNTED || w->bytes != s->cfg.max_write || len < ABI_WRITE_PAYLOAD_OFFSET + w->bytes) {
    return read(fd, buf, len);
  }
  int slot = write_pool_peek(s->env, w);
  if (slot < 0) return read(fd, buf, len);
  struct iovec iov[2] = {
    { .iov_base = buf, .iov_len = ABI_WRITE_PAYLOAD_OFFSET },
    { .iov_base = w->data[slot], .iov_len = w->bytes },
  };
  ssize_t n = readv(fd, iov, 2);
  if (n <= ABI_WRITE_PAYLOAD_OFFSET) return n;
  const struct abi_in_header *in = (const struct abi_in_header *)buf;
  if (in->opcode == ABI_FUSE_WRITE) {
    s->recv_slot = slot;
    s->recv_bytes = (size_t)n - ABI_WRITE_PAYLOAD_OFFSET;
  } else {
    memcpy(buf + ABI_WRITE_PAYLOAD_OFFSET, w->data[slot], (size_t)n - ABI_WRITE_PAYLOAD_OFFSET);
  }
  return n;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata) {
  session_t *s = userdata;
  ssize_t n = read_split(s, fd, buf, len);
  if (!s->got_init && n >= (ssize_t)sizeof(struct abi_in_header)) {
    const struct abi_in_header *in = buf;
    if (in->opcode == ABI_FUSE_INIT) s->init_unique = in->unique;
  }
  return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata) {
  session_t *s = userdata;
  if (s->init_unique != 0 && count >= 2 && iov[0].iov_len >= sizeof(struct abi_out_header)) {
    const struct abi_out_header *out = iov[0].iov_base;
    if (out->unique == s->init_unique && out->error == 0 &&
        iov[1].iov_len >= ABI_INIT_OUT_FLAGS + sizeof(uint32_t)) {
      /* iov[1] points at do_init's own reply struct, which is writable. */
      uint32_t flags;
      char *reply = iov[1].iov_base;
      memcpy(&flags, reply + ABI_INIT_OUT_FLAGS, sizeof flags);
      flags |= ABI_HANDLE_KILLPRIV_V2 | (s->add_parallel_dirops ? ABI_PARALLEL_DIROPS : 0);
      memcpy(reply + ABI_INIT_OUT_FLAGS, &flags, sizeof flags);
    }
    if (out->unique == s->init_unique) s->init_unique = 0;
  }
  return writev(fd, iov, count);
}

/*
 * Whether the request being processed (in s->buf, inside fuse_session_process_buf) asks to
 * clear setuid/setgid (see ABI_HANDLE_KILLPRIV_V2): libfuse 3.14 passes on none of these
 * flags. Offsets are kernel ABI: the fuse_in_header (40 bytes), then the op's struct.
 */
#define ABI_IN_HEADER_BYTES 40
#define ABI_FUSE_SETATTR 4
#define ABI_FUSE_OPEN 14
#define ABI_FUSE_CREATE 35
#define ABI_FATTR_KILL_SUIDGID (1u << 11)      /* fuse_setattr_in.valid, offset 0 */
#define ABI_WRITE_KILL_SUIDGID (1u << 2)       /* fuse_write_in.write_flags, offset 20 */
#define ABI_OPEN_KILL_SUIDGID (1u << 0)        /* open_flags: fuse_open_in 4, fuse_create_in 12 */

static uint32_t request_u32(const session_t *s, size_t offset) {
  uint32_t value = 0;
  if (s->buf.mem != NULL && s->buf.size >= offset + sizeof value) {
    memcpy(&value, (const char *)s->buf.mem + offset, sizeof value);
  }
  return value;
}

bool request_kills_suidgid(const session_t *s) {
  switch (request_u32(s, offsetof(struct abi_in_header, opcode))) {
    case ABI_FUSE_WRITE: return (request_u32(s, ABI_IN_HEADER_BYTES + 20) & ABI_WRITE_KILL_SUIDGID) != 0;
    case ABI_FUSE_SETATTR: return (request_u32(s, ABI_IN_HEADER_BYTES) & ABI_FATTR_KILL_SUIDGID) != 0;
    case ABI_FUSE_OPEN: return (request_u32(s, ABI_IN_HEADER_BYTES + 4) & ABI_OPEN_KILL_SUIDGID) != 0;
    case ABI_FUSE_CREATE: return (request_u32(s, ABI_IN_HEADER_BYTES + 12) & ABI_OPEN_KILL_SUIDGID) != 0;
    default: return false;
  }
}

static const struct fuse_custom_io device_io = { .writev = io_writev, .read = io_read };

/* ---- mounting ---- */

/*
 * The kernel queues INIT as soon as the mount exists. Answering it here, before mount()
 * returns, makes every INIT failure (e.g. a max_read mismatch, or a throwing init handler)
 * a mount() error with the mount already removed, instead of a dead mount discovered later.
 */
static bool answer_init(session_t *s, const char **why) {
  struct pollfd pfd = { .fd = fuse_session_fd(s->se), .events = POLLIN };
  while (!s->got_init && !fuse_session_exited(s->se)) {
    int ready = poll(&pfd, 1, INIT_WAIT_MS);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      *why = ready == 0 ? "the kernel sent no INIT request" : "polling /dev/fuse failed";
      return false;
    }
    int res = fuse_session_receive_buf(s->se, &s->buf);
    if (res == -EINTR) continue;
    if (res <= 0) break;
    s->depth++;
    fuse_session_process_buf(s->se, &s->buf);
    s->depth--;
  }
  if (fuse_session_exited(s->se)) {
    *why = "INIT negotiation failed";
    return false;
  }
  return true;
}

static bool start_polling(session_t *s, const char **why) {
  int fd = fuse_session_fd(s->se);
  uv_loop_t *loop;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    *why = "cannot make /dev/fuse non-blocking";
    return false;
  }
  if (napi_get_uv_event_loop(s->env, &loop) != napi_ok || uv_poll_init(loop, &s->poll, fd) != 0) {
    *why = "cannot watch /dev/fuse";
    return false;
  }
  s->poll.data = s;
  s->poll_open = true;
  if (uv_poll_start(&s->poll, UV_READABLE, on_readable) != 0) {
    *why = "cannot watch /dev/fuse";
    return false;
  }
  return true;
}

static bool mount_steps(session_t *s, napi_value self, const char **why) {
  struct fuse_lowlevel_ops ops;
  struct fuse_args args = FUSE_ARGS_INIT(s->cfg.argc, s->cfg.argv);
  napi_value name;
  ops_fill(s, &ops);
  s->se = fuse_session_new(&args, &ops, sizeof ops, s);
  fuse_opt_free_args(&args);
  if (s->se == NULL) {
    *why = "libfuse rejected the options";
    return false;
  }
  if (fuse_session_mount(s->se, s->cfg.mountpoint) != 0) {
    *why = "the mount failed";
    return false;
  }
  /* Same fd; only the read/write functions change. libfuse closes the fd as before. */
  if (fuse_session_custom_io(s->se, &device_io, fuse_session_fd(s->se)) != 0) {
    *why = "cannot install the device I/O hooks";
    return false;
  }
  if (!answer_init(s, why) || !start_polling(s, why)) return false;
  napi_create_string_utf8(s->env, "shmr:fuse3", NAPI_AUTO_LENGTH, &name);
  if (napi_async_init(s->env, self, name, &s->actx) != napi_ok) {
    *why = "napi_async_init failed";
    return false;
  }
  return true;
}

session_t *session_unwrap(napi_env env, napi_value obj) {
  session_t *s = NULL;
  if (napi_unwrap(env, obj, (void **)&s) != napi_ok || s == NULL) {
    throw_type_error(env, "not a fuse3 session handle");
    return NULL;
  }
  return s;
}

/* Throws the init handler's own exception if it threw, else an Error saying why. */
static napi_value throw_mount_error(session_t *s, const char *why, const char *log) {
  if (s->init_error != NULL) {
    napi_value exc;
    napi_get_reference_value(s->env, s->init_error, &exc);
    napi_throw(s->env, exc);
    return NULL;
  }
  return throw_error(s->env, "cannot mount FUSE filesystem at '%s': %s%s%s", s->cfg.mountpoint,
                     why, log ? ": " : "", log ? log : "");
}

/* mount(session) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *s = session_unwrap(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->state != S_NEW) return throw_error(env, "a FUSE session mounts only once (this one was mounted or failed already)");
  s->state = S_MOUNTING;
  const char *why = NULL;
  log_capture_begin();
  bool ok = mount_steps(s, argv[0], &why);
  char *log = log_capture_end();
  if (!ok) {
    session_close(s);
    throw_mount_error(s, why, log);
    free(log);
    return NULL;
  }
  free(log);
  s->state = S_MOUNTED;
  /* Lent write buffers are as large as the first mounted session's writes (see ops.c). */
  if (s->addon->writes.bytes == 0) s->addon->writes.bytes = s->cfg.max_write;
  mounted_add(s);
  /* While mounted the session must not be collected even if JS drops every reference. */
  napi_reference_ref(env, s->self, NULL);
  napi_add_async_cleanup_hook(env, on_env_cleanup, s, &s->cleanup);
  return NULL;
}

/* unmount(session): idempotent. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *s = session_unwrap(env, argv[0]);
  if (s == NULL || s->state == S_CLOSED) return NULL;
  if (s->depth > 0 || s->state == S_MOUNTING) {
    /* Called from a handler while libfuse is inside process_buf: closing now would free
       the session under libfuse's feet. The serving loop closes once the call returns. */
    fuse_session_exit(s->se);
    return NULL;
  }
  session_close(s);
  return NULL;
}

static napi_value number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static bool get_doubles(napi_env env, napi_value *argv, size_t n, double *out) {
  for (size_t i = 0; i < n; i++) {
    if (napi_get_value_double(env, argv[i], &out[i]) != napi_ok) {
      throw_type_error(env, "expected a number");
      return false;
    }
  }
  return true;
}

/* notifyInvalInode(session, ino, offset, length) -> 0 or -errno */
static napi_value js_notify_inode(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  double d[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *s = session_unwrap(env, argv[0]);
  if (s == NULL || !get_doubles(env, argv + 1, 3, d)) return NULL;
  if (s->state != S_MOUNTED || s->se == NULL) return number(env, -ENOTCONN);
  return number(env, fuse_lowlevel_notify_inval_inode(s->se, (fuse_ino_t)d[0], (off_t)d[1],
                                                      (off_t)d[2]));
}

/* notifyInvalEntry(session, parent, name) -> 0 or -errno */
static napi_value js_notify_entry(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  double parent;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *s = session_unwrap(env, argv[0]);
  if (s == NULL || !get_doubles(env, argv + 1, 1, &parent)) return NULL;
  char *name = get_string(env, argv[2], "name");
  if (name == NULL) return NULL;
  int rc = -ENOTCONN;
  if (s->state == S_MOUNTED && s->se != NULL) {
    rc = fuse_lowlevel_notify_inval_entry(s->se, (fuse_ino_t)parent, name, strlen(name));
  }
  free(name);
  return number(env, rc);
}

/* stats(session) -> [requests, replies] */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session_t *s = session_unwrap(env, argv[0]);
  if (s == NULL) return NULL;
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, number(env, s->requests));
  napi_set_element(env, out, 1, number(env, s->replies));
  return out;
}

/* ---- creating ---- */

static bool read_dispatchers(session_t *s, napi_value obj) {
  for (int i = 0; i < OP_COUNT; i++) {
    napi_value fn;
    napi_valuetype type;
    if (napi_get_named_property(s->env, obj, op_names[i], &fn) != napi_ok) return false;
    napi_typeof(s->env, fn, &type);
    if (type == napi_function) napi_create_reference(s->env, fn, 1, &s->fn[i]);
    else if (type != napi_undefined) {
      throw_type_error(s->env, "dispatcher %s must be a function", op_names[i]);
      return false;
    }
  }
  return true;
}

static bool read_argv(napi_env env, napi_value arr, session_config_t *c) {
  uint32_t n;
  if (napi_get_array_length(env, arr, &n) != napi_ok || n == 0 || n > 1024) {
    throw_type_error(env, "config.argv must be a non-empty array of strings");
    return false;
  }
  c->argv = calloc(n + 1, sizeof *c->argv);
  if (c->argv == NULL) return false;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, arr, i, &v);
    c->argv[i] = get_string(env, v, "config.argv[i]");
    if (c->argv[i] == NULL) return false;
    c->argc = (int)i + 1;
  }
  return true;
}

static bool read_config(napi_env env, napi_value cfg, session_config_t *c) {
  napi_value v;
  if (napi_get_named_property(env, cfg, "argv", &v) != napi_ok || !read_argv(env, v, c)) return false;
  if (napi_get_named_property(env, cfg, "mountpoint", &v) != napi_ok) return false;
  c->mountpoint = get_string(env, v, "config.mountpoint");
  return c->mountpoint != NULL &&
         get_u32(env, cfg, "maxWrite", &c->max_write, 1u << 20) &&
         get_u32(env, cfg, "maxRead", &c->max_read, 1u << 20) &&
         get_u32(env, cfg, "maxReadahead", &c->max_readahead, 1u << 20) &&
         get_u32(env, cfg, "timeGran", &c->time_gran, 1) &&
         get_u32(env, cfg, "maxBackground", &c->max_background, 0) &&
         get_bool(env, cfg, "writebackCache", &c->writeback_cache, false) &&
         get_bool(env, cfg, "asyncRead", &c->async_read, true) &&
         get_bool(env, cfg, "parallelDirops", &c->parallel_dirops, true);
}

/* The JS handle object was collected, or the environment is going away. */
static void on_finalize(napi_env env, void *data, void *hint) {
  session_t *s = data;
  (void)env;
  (void)hint;
  if (s->state != S_CLOSED) {
    /* Only reachable at environment teardown (mounted sessions are strongly held). */
    s->js_ok = false;
    session_close(s);
  }
  delete_refs(s);
  s->wrapper_gone = true;
  free_if_unowned(s);
}

/* createSession(dispatchers, config, onClosed) -> handle object */
static napi_value js_create_session(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], obj;
  addon_t *a;
  napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&a);
  session_t *s = calloc(1, sizeof *s);
  if (s != NULL) s->recv_slot = -1;
  if (s == NULL) return throw_error(env, "out of memory");
  s->env = env;
  s->addon = a;
  s->js_ok = true;
  s->state = S_NEW;
  if (!read_dispatchers(s, argv[0]) || !read_config(env, argv[1], &s->cfg) ||
      napi_create_reference(env, argv[2], 1, &s->on_closed) != napi_ok ||
      napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, s, on_finalize, NULL, NULL) != napi_ok) {
    delete_refs(s);
    config_free(&s->cfg);
    free(s);
    return throw_error(env, "cannot create the FUSE session");
  }
  napi_create_reference(env, obj, 0, &s->self);
  return obj;
}

/* ---- module ---- */

static void addon_free(napi_env env, void *data, void *hint) {
  addon_t *a = data;
  (void)env;
  (void)hint;
  pending_free(&a->table);
  free(a->dirbuf);
  free(a);
}

static bool make_frame(napi_env env, size_t len, double **data, napi_ref *ref, napi_value *out) {
  napi_value ab;
  if (napi_create_arraybuffer(env, len * sizeof(double), (void **)data, &ab) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, len, ab, 0, out) != napi_ok) {
    return false;
  }
  memset(*data, 0, len * sizeof(double));
  return napi_create_reference(env, *out, 1, ref) == napi_ok;
}

/* The frame indices, so binding.ts can check its copy at load time. */
static napi_value layout(napi_env env) {
  static const struct { const char *name; int value; } items[] = {
    { "IN_UID", IN_UID }, { "IN_A0", IN_A0 }, { "IN_LEN", IN_LEN },
    { "OUT_CTIME_NS", OUT_CTIME_NS }, { "OUT_ATTR_TIMEOUT", OUT_ATTR_TIMEOUT },
    { "OUT_ENTRY_INO", OUT_ENTRY_INO }, { "OUT_GENERATION", OUT_GENERATION },
    { "OUT_ENTRY_TIMEOUT", OUT_ENTRY_TIMEOUT }, { "OUT_FH", OUT_FH },
    { "OUT_OPEN_FLAGS", OUT_OPEN_FLAGS }, { "OUT_ATTR_REUSE", OUT_ATTR_REUSE },
    { "OUT_DIR_STRIDE", OUT_DIR_STRIDE },
    { "OUT_DIR_MAX", OUT_DIR_MAX }, { "OUT_LEN", OUT_LEN },
  };
  napi_value obj, v;
  napi_create_object(env, &obj);
  for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
    napi_create_int32(env, items[i].value, &v);
    napi_set_named_property(env, obj, items[i].name, v);
  }
  return obj;
}

NAPI_MODULE_INIT() {
  napi_value in, out;
  addon_t *a = calloc(1, sizeof *a);
  if (a == NULL) return throw_error(env, "out of memory");
  a->table.free_head = UINT32_MAX;
  if (!make_frame(env, IN_LEN, &a->in, &a->in_ref, &in) ||
      !make_frame(env, OUT_LEN, &a->out, &a->out_ref, &out) ||
      napi_set_instance_data(env, a, addon_free, NULL) != napi_ok) {
    return throw_error(env, "shmr_fuse3: module initialisation failed");
  }
  const napi_property_descriptor props[] = {
    { "inFrame", NULL, NULL, NULL, NULL, in, napi_enumerable, NULL },
    { "outFrame", NULL, NULL, NULL, NULL, out, napi_enumerable, NULL },
    { "layout", NULL, NULL, NULL, NULL, layout(env), napi_enumerable, NULL },
    { "createSession", NULL, js_create_session, NULL, NULL, NULL, napi_enumerable, a },
    { "mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, a },
    { "unmount", NULL, js_unmount, NULL, NULL, NULL, napi_enumerable, a },
    { "notifyInvalInode", NULL, js_notify_inode, NULL, NULL, NULL, napi_enumerable, a },
    { "notifyInvalEntry", NULL, js_notify_entry, NULL, NULL, NULL, napi_enumerable, a },
    { "stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, a },
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok ||
      replies_define(env, exports, a) != napi_ok || chunk_define(env, exports, a) != napi_ok ||
      attr_define(env, exports, a) != napi_ok ||
      write_pool_define(env, exports, a) != napi_ok) {
    return throw_error(env, "shmr_fuse3: module initialisation failed");
  }
  log_install();
  return exports;
}
