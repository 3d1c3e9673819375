/*
 * Fast reads: READ requests answered in C, inside the poll callback, from block buffers that
 * JS registered (fastRegister) as holding the current bytes of a file's block. Every other
 * read goes to JS as before.
 *
 * Why it is safe: JS owns the buffers and the truth. It registers a block only after serving a
 * read from it, with the bytes readable from the block's start given the file size then
 * (`valid`), and drops the registration (fastDrop) in the same synchronous turn as anything that
 * changes those bytes, that size, or the buffer itself (writes, truncation, eviction, buffer
 * reuse, release). Both sides run on the JS thread, so no fast read can fall between a change
 * and its drop. The registration holds a reference on the JS Buffer, so its memory stays valid.
 *
 * What JS does besides returning data is kept: the first READ through each open handle goes to
 * JS (the relatime check of filesystem.ts runs once per handle); blocks served here get a hit
 * flag that JS sweeps before evicting (fastSweep), so hot blocks are not evicted as idle.
 */
#include <errno.h>
#include <stdlib.h>

#include "shmr_fuse3.h"

#define FAST_BUCKETS_MIN 256u

static uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 29);
}

/* ---- a chained hash of nodes keyed by two numbers ---- */

static fast_node_t **slot_of(fast_map_t *m, uint64_t k1, uint64_t k2) {
  fast_node_t **p = &m->buckets[mix(k1, k2) & m->mask];
  while (*p != NULL && ((*p)->k1 != k1 || (*p)->k2 != k2)) p = &(*p)->next;
  return p;
}

static fast_node_t *map_find(const fast_map_t *m, uint64_t k1, uint64_t k2) {
  if (m->count == 0) return NULL;
  fast_node_t *n = m->buckets[mix(k1, k2) & m->mask];
  while (n != NULL && (n->k1 != k1 || n->k2 != k2)) n = n->next;
  return n;
}

static bool map_grow(fast_map_t *m) {
  uint32_t cap = m->mask == 0 ? FAST_BUCKETS_MIN : (m->mask + 1) * 2;
  fast_node_t **buckets = calloc(cap, sizeof *buckets);
  if (buckets == NULL) return false;
  for (uint32_t i = 0; m->buckets != NULL && i <= m->mask; i++) {
    for (fast_node_t *n = m->buckets[i], *next; n != NULL; n = next) {
      next = n->next;
      fast_node_t **b = &buckets[mix(n->k1, n->k2) & (cap - 1)];
      n->next = *b;
      *b = n;
    }
  }
  free(m->buckets);
  m->buckets = buckets;
  m->mask = cap - 1;
  return true;
}

/* The node of (k1, k2), made (zeroed past its key) when absent; NULL: out of memory. */
static fast_node_t *map_get_or_add(fast_map_t *m, uint64_t k1, uint64_t k2, size_t node_bytes) {
  if ((m->buckets == NULL || m->count > m->mask) && !map_grow(m) && m->buckets == NULL) return NULL;
  fast_node_t **p = slot_of(m, k1, k2);
  if (*p != NULL) return *p;
  fast_node_t *n = calloc(1, node_bytes);
  if (n == NULL) return NULL;
  n->k1 = k1;
  n->k2 = k2;
  *p = n;
  m->count++;
  return n;
}

/* Unlinks and returns the node of (k1, k2), or NULL. */
static fast_node_t *map_take(fast_map_t *m, uint64_t k1, uint64_t k2) {
  if (m->count == 0) return NULL;
  fast_node_t **p = slot_of(m, k1, k2);
  fast_node_t *n = *p;
  if (n == NULL) return NULL;
  *p = n->next;
  m->count--;
  return n;
}

/* ---- blocks and files ---- */

typedef struct fast_block {
  fast_node_t node;     /* k1 ino, k2 block index */
  const uint8_t *data;
  uint32_t valid;       /* bytes readable from the block's start: data[0, valid) */
  uint8_t hit;
  napi_ref ref;         /* keeps the Buffer (and its memory) alive */
} fast_block_t;

typedef struct fast_file {
  fast_node_t node;     /* k1 ino, k2 0 */
  uint64_t block_bytes;
  uint32_t blocks;      /* registered blocks of this file */
} fast_file_t;

static void block_free(session_t *s, fast_block_t *b) {
  if (s->js_ok && b->ref != NULL) napi_delete_reference(s->env, b->ref);
  free(b);
}

static void file_unref(fast_table_t *t, uint64_t ino) {
  fast_file_t *f = (fast_file_t *)map_find(&t->files, ino, 0);
  if (f != NULL && --f->blocks == 0) free(map_take(&t->files, ino, 0));
}

static void drop_block(session_t *s, uint64_t ino, uint64_t index) {
  fast_block_t *b = (fast_block_t *)map_take(&s->fast.blocks, ino, index);
  if (b == NULL) return;
  block_free(s, b);
  file_unref(&s->fast, ino);
}

/* Drops every block of `ino`, or of every file when all is set. */
static void drop_where(session_t *s, uint64_t ino, bool all) {
  fast_map_t *m = &s->fast.blocks;
  for (uint32_t i = 0; m->buckets != NULL && i <= m->mask; i++) {
    for (fast_node_t **p = &m->buckets[i]; *p != NULL;) {
      fast_node_t *n = *p;
      if (!all && n->k1 != ino) {
        p = &n->next;
        continue;
      }
      *p = n->next;
      m->count--;
      block_free(s, (fast_block_t *)n);
      if (!all) file_unref(&s->fast, ino);
    }
  }
}

static void map_clear(fast_map_t *m) {
  for (uint32_t i = 0; m->buckets != NULL && i <= m->mask; i++) {
    for (fast_node_t *n = m->buckets[i], *next; n != NULL; n = next) {
      next = n->next;
      free(n);
    }
  }
  free(m->buckets);
  *m = (fast_map_t){ 0 };
}

void fast_clear(session_t *s) {
  drop_where(s, 0, true);
  map_clear(&s->fast.blocks);
  map_clear(&s->fast.files);
  map_clear(&s->fast.handles);
}

void fast_release_handle(session_t *s, uint64_t fh) {
  free(map_take(&s->fast.handles, fh, 0));
}

/*
 * Answers a READ here when it lies in one registered block (or ends at EOF inside it) and is
 * not the first read through its handle. False: JS must answer it.
 */
bool fast_read(session_t *s, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               const struct fuse_file_info *fi) {
  fast_table_t *t = &s->fast;
  if (t->blocks.count == 0 || fi == NULL || off < 0 || size == 0 || !s->js_ok) return false;
  const fast_file_t *f = (const fast_file_t *)map_find(&t->files, ino, 0);
  if (f == NULL) return false;
  uint64_t index = (uint64_t)off / f->block_bytes;
  fast_block_t *b = (fast_block_t *)map_find(&t->blocks, ino, index);
  if (b == NULL) return false;
  uint64_t start = (uint64_t)off - index * f->block_bytes;
  if (start >= b->valid) return false;
  uint64_t end = start + size;
  if (end > b->valid) {
    /* A short reply means EOF, so only where the file ends inside this block. */
    if (b->valid == f->block_bytes) return false;
    end = b->valid;
  }
  if (map_find(&t->handles, fi->fh, 0) == NULL) {
    /* The handle's first read goes to JS (relatime); later ones may come here. */
    map_get_or_add(&t->handles, fi->fh, 0, sizeof(fast_node_t));
    return false;
  }
  s->requests++;
  b->hit = 1;
  fuse_reply_buf(req, (const char *)b->data + start, end - start);
  s->replies++;
  t->reads++;
  t->bytes += (double)(end - start);
  return true;
}

/* ---- JS API ---- */

/* The session named by a call's first argument, its arguments in argv; NULL: TypeError pending. */
static session_t *session_call(napi_env env, napi_callback_info info, size_t argc, napi_value *argv) {
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return session_unwrap(env, argv[0]);
}

/* Appends a number to a JS array at *k. */
static void push_number(napi_env env, napi_value array, uint32_t *k, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_element(env, array, (*k)++, v);
}

static bool u64_args(napi_env env, const napi_value *argv, size_t n, uint64_t *out) {
  for (size_t i = 0; i < n; i++) {
    double d;
    if (napi_get_value_double(env, argv[i], &d) != napi_ok || !(d >= 0) || d > 9007199254740991.0 ||
        d != (double)(uint64_t)d) {
      throw_type_error(env, "fast reads: expected a non-negative integer");
      return false;
    }
    out[i] = (uint64_t)d;
  }
  return true;
}

static napi_value boolean(napi_env env, bool v) {
  napi_value out;
  napi_get_boolean(env, v, &out);
  return out;
}

/* fastRegister(session, ino, blockIndex, blockBytes, buffer, validBytes) -> registered */
static napi_value js_fast_register(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  uint64_t n[3], valid;
  session_t *s = session_call(env, info, 6, argv);
  if (s == NULL || !u64_args(env, argv + 1, 3, n) || !u64_args(env, argv + 5, 1, &valid)) return NULL;
  napi_typedarray_type type;
  size_t len;
  void *data;
  bool is_typed = false;
  napi_is_typedarray(env, argv[4], &is_typed);
  if (!is_typed || napi_get_typedarray_info(env, argv[4], &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    return throw_type_error(env, "fastRegister: the block must be a Buffer");
  }
  if (n[2] == 0 || valid == 0 || valid > n[2] || valid > len || valid > UINT32_MAX) {
    return throw_type_error(env, "fastRegister: valid bytes %llu do not fit the block (%llu) or buffer (%zu)",
                            (unsigned long long)valid, (unsigned long long)n[2], len);
  }
  if (s->state != S_MOUNTED) return boolean(env, false);
  uint64_t ino = n[0], index = n[1];
  fast_file_t *f = (fast_file_t *)map_find(&s->fast.files, ino, 0);
  if (f != NULL && f->block_bytes != n[2]) {
    /* The file's block size changed (a rewrite): nothing registered under the old one stays. */
    drop_where(s, ino, false);
    f = NULL;
  }
  if (f == NULL) {
    f = (fast_file_t *)map_get_or_add(&s->fast.files, ino, 0, sizeof *f);
    if (f == NULL) return boolean(env, false);
    f->block_bytes = n[2];
  }
  fast_block_t *b = (fast_block_t *)map_find(&s->fast.blocks, ino, index);
  if (b == NULL) {
    b = (fast_block_t *)map_get_or_add(&s->fast.blocks, ino, index, sizeof *b);
    if (b == NULL) {
      if (f->blocks == 0) free(map_take(&s->fast.files, ino, 0));
      return boolean(env, false);
    }
    f->blocks++;
  } else if (b->ref != NULL) {
    napi_delete_reference(env, b->ref);
    b->ref = NULL;
  }
  b->data = data;
  b->valid = (uint32_t)valid;
  if (napi_create_reference(env, argv[4], 1, &b->ref) != napi_ok) {
    drop_block(s, ino, index);
    return boolean(env, false);
  }
  return boolean(env, true);
}

/* fastDrop(session, ino, blockIndex) -> blocks of ino left; blockIndex -1 drops all of them. */
static napi_value js_fast_drop(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint64_t ino;
  double index;
  session_t *s = session_call(env, info, 3, argv);
  if (s == NULL || !u64_args(env, argv + 1, 1, &ino)) return NULL;
  if (napi_get_value_double(env, argv[2], &index) != napi_ok || !(index >= -1) || index != (double)(int64_t)index) {
    return throw_type_error(env, "fastDrop: the block index must be an integer >= -1");
  }
  if (s->fast.blocks.count != 0) {
    if (index < 0) drop_where(s, ino, false);
    else drop_block(s, ino, (uint64_t)index);
  }
  const fast_file_t *f = (const fast_file_t *)map_find(&s->fast.files, ino, 0);
  napi_value out;
  napi_create_uint32(env, f == NULL ? 0 : f->blocks, &out);
  return out;
}

/* fastSweep(session) -> [ino, blockIndex, ...] of blocks served here since the last sweep */
static napi_value js_fast_sweep(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  session_t *s = session_call(env, info, 1, argv);
  if (s == NULL) return NULL;
  napi_create_array(env, &out);
  uint32_t k = 0;
  fast_map_t *m = &s->fast.blocks;
  for (uint32_t i = 0; m->buckets != NULL && i <= m->mask; i++) {
    for (fast_node_t *n = m->buckets[i]; n != NULL; n = n->next) {
      fast_block_t *b = (fast_block_t *)n;
      if (!b->hit) continue;
      b->hit = 0;
      push_number(env, out, &k, (double)n->k1);
      push_number(env, out, &k, (double)n->k2);
    }
  }
  return out;
}

napi_status fast_define(napi_env env, napi_value exports, addon_t *a) {
  const napi_property_descriptor props[] = {
    { "fastRegister", NULL, js_fast_register, NULL, NULL, NULL, napi_enumerable, a },
    { "fastDrop", NULL, js_fast_drop, NULL, NULL, NULL, napi_enumerable, a },
    { "fastSweep", NULL, js_fast_sweep, NULL, NULL, NULL, napi_enumerable, a },
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
