/*
 * Attribute replies: GETATTR requests answered in C, inside the poll callback, from a copy of
 * the attributes JS would reply for the inode. JS hands over a copy in two ways:
 * - with a reply: it writes 1 to OUT_ATTR_REUSE before replyAttr, replyEntry or replyCreate
 *   (a GETATTR, SETATTR, LOOKUP, CREATE, MKDIR... answered synchronously), and the reply
 *   function keeps the struct stat and attribute timeout it sent (attr_keep);
 * - without a request (attrRegister, from the OUT frame): the attributes of a directory whose
 *   entries it just changed, which the kernel asks for at the next permission check in it.
 *
 * Why it is safe: JS drops an inode's copy (attrDrop) in the same synchronous turn as anything
 * that changes what its GETATTR would reply (fuse/attr-cache.ts: every write of the inode's
 * metadata row, and the file store starting to hold the file's state in memory). Both sides
 * run on the JS thread, so no GETATTR falls between a change and its drop. What JS does for a
 * GETATTR besides replying is nothing (filesystem.ts's getattr only reads).
 *
 * An inode deleted at its unlink, which the kernel still holds until its FORGET, is handed over
 * for good (attrRegister with ownsTimes): its row is gone, so nothing in JS changes it any more,
 * and its copy also answers the SETATTRs that set ctime and nothing but times. With the
 * writeback cache the kernel sends one at every unlink of a regular file, synchronously
 * (fs/fuse/dir.c fuse_update_ctime_in_cache: the file's new ctime, written at once);
 * answering it here saves the unlink a round trip through JS. Other SETATTRs of such an inode
 * go to JS, which keeps its own record and hands the changed attributes over again.
 *
 * Bounds: at most ATTR_ENTRIES_MAX copies; past that the table starts over empty (cheap, and
 * rare: the kernel forgets inodes it evicts, and a FORGET drops the copy).
 */
#include <stdlib.h>
#include <string.h>

#include "shmr_fuse3.h"

/* About 200 bytes each: 13 MiB at most. */
#define ATTR_ENTRIES_MAX 65536u

typedef struct attr_entry {
  map_node_t node;     /* k1 ino, k2 0 */
  struct stat st;      /* as last sent to the kernel for this inode */
  double timeout_sec;  /* the attribute timeout sent with it */
  bool owns_times;     /* an inode deleted at its unlink: time-only SETATTRs answered here */
} attr_entry_t;

/* What a SETATTR answered here may set: times the kernel gives explicitly, ctime always (the
 * kernel's own flush of times; a utimensat without the writeback cache sends no ctime, and
 * JS sets it to the time of the change). */
#define ATTR_OWNED_SETS (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME)

void attr_clear(session_t *s) {
  map_free(&s->attrs.entries, map_node_free);
}

void attr_drop(session_t *s, uint64_t ino) {
  free(map_take(&s->attrs.entries, ino, 0));
}

void attr_keep(session_t *s, const struct stat *st, double timeout_sec, bool owns_times) {
  attr_table_t *t = &s->attrs;
  uint64_t ino = (uint64_t)st->st_ino;
  attr_entry_t *e = (attr_entry_t *)map_find(&t->entries, ino, 0);
  if (e == NULL) {
    if (s->state != S_MOUNTED) return;
    if (t->entries.count >= ATTR_ENTRIES_MAX) attr_clear(s);
    e = calloc(1, sizeof *e);
    if (e == NULL) return;
    e->node.k1 = ino;
    if (!map_add(&t->entries, &e->node)) {
      free(e);
      return;
    }
  }
  e->st = *st;
  e->timeout_sec = timeout_sec;
  e->owns_times = owns_times;
  t->kept++;
}

bool attr_reply(session_t *s, fuse_req_t req, fuse_ino_t ino) {
  attr_table_t *t = &s->attrs;
  if (t->entries.count == 0 || !s->js_ok) return false;
  const attr_entry_t *e = (const attr_entry_t *)map_find(&t->entries, ino, 0);
  if (e == NULL) return false;
  s->requests++;
  fuse_reply_attr(req, &e->st, e->timeout_sec);
  s->replies++;
  t->served++;
  return true;
}

bool attr_setattr_reply(session_t *s, fuse_req_t req, fuse_ino_t ino, const struct stat *attr,
                        int to_set) {
  attr_table_t *t = &s->attrs;
  if (t->entries.count == 0 || !s->js_ok) return false;
  if ((to_set & FUSE_SET_ATTR_CTIME) == 0 || (to_set & ~ATTR_OWNED_SETS) != 0) return false;
  attr_entry_t *e = (attr_entry_t *)map_find(&t->entries, ino, 0);
  if (e == NULL || !e->owns_times) return false;
  if ((to_set & FUSE_SET_ATTR_MTIME) != 0) e->st.st_mtim = attr->st_mtim;
  e->st.st_ctim = attr->st_ctim; /* always set: checked above */
  s->requests++;
  fuse_reply_attr(req, &e->st, e->timeout_sec);
  s->replies++;
  t->setattrs_served++;
  return true;
}

/* ---- JS API ---- */

/*
 * attrRegister(session, ownsTimes): keeps the attributes and timeout in the OUT frame, as
 * replyAttr sends them; with ownsTimes (an inode deleted at its unlink) time-only SETATTRs too.
 */
static napi_value js_attr_register(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *data;
  size_t argc = 2;
  napi_get_cb_info(env, info, &argc, argv, NULL, &data);
  session_t *s = session_unwrap(env, argv[0]);
  if (s == NULL) return NULL;
  bool owns_times = false;
  if (argc < 2 || napi_get_value_bool(env, argv[1], &owns_times) != napi_ok) {
    napi_throw_type_error(env, NULL, "attrRegister: ownsTimes must be a boolean");
    return NULL;
  }
  const double *o = ((addon_t *)data)->out;
  struct stat st;
  if (!read_attr(env, o, &st, "attrRegister") ||
      !check_timeout(env, o[OUT_ATTR_TIMEOUT], "attrRegister", "attrTimeoutSec")) {
    return NULL;
  }
  attr_keep(s, &st, o[OUT_ATTR_TIMEOUT], owns_times);
  return NULL;
}

/* attrDrop(session, ino) */
static napi_value js_attr_drop(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint64_t ino;
  session_t *s = session_call(env, info, 2, argv);
  if (s != NULL && u64_args(env, argv + 1, 1, &ino)) attr_drop(s, ino);
  return NULL;
}

/* attrClear(session) */
static napi_value js_attr_clear(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = session_call(env, info, 1, argv);
  if (s != NULL) attr_clear(s);
  return NULL;
}

/* attrStats(session) -> [GETATTRs answered here, attributes kept, inodes held now, SETATTRs answered here] */
static napi_value js_attr_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = session_call(env, info, 1, argv);
  if (s == NULL) return NULL;
  const attr_table_t *t = &s->attrs;
  const double values[] = { t->served, t->kept, t->entries.count, t->setattrs_served };
  return number_array(env, values, 4);
}

napi_status attr_define(napi_env env, napi_value exports, addon_t *a) {
  const napi_property_descriptor props[] = {
    { "attrRegister", NULL, js_attr_register, NULL, NULL, NULL, napi_enumerable, a },
    { "attrDrop", NULL, js_attr_drop, NULL, NULL, NULL, napi_enumerable, a },
    { "attrClear", NULL, js_attr_clear, NULL, NULL, NULL, napi_enumerable, a },
    { "attrStats", NULL, js_attr_stats, NULL, NULL, NULL, napi_enumerable, a },
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
