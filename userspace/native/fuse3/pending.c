/*
 * Pending requests: the table that turns a fuse_req_t into a number JS can hold.
 *
 * Why not hand JS the pointer: a handler may reply twice (bug) or its promise may settle
 * after the session is gone; with a pointer both are use-after-free in libfuse. A slot
 * index plus a generation makes every late or duplicate reply detectable and harmless.
 */
#include <math.h>
#include <stdlib.h>

#include "shmr_fuse3.h"

#define INDEX_BITS 24
#define INDEX_LIMIT (1u << INDEX_BITS)          /* 16M requests in flight is far beyond any kernel */
#define GEN_MASK ((1u << 28) - 1)               /* 24 + 28 bits stay exact in a double */
#define INDEX_SCALE ((double)INDEX_LIMIT)
#define NO_SLOT UINT32_MAX

static bool grow(pending_table_t *t) {
  uint32_t cap = t->cap == 0 ? 64 : t->cap * 2;
  if (cap > INDEX_LIMIT) cap = INDEX_LIMIT;
  if (cap <= t->cap) return false;
  pending_t *slots = realloc(t->slots, cap * sizeof *slots);
  if (slots == NULL) return false;
  /* New slots go on the free list in index order, lowest first. */
  for (uint32_t i = cap; i-- > t->cap;) {
    slots[i] = (pending_t){ .req = NULL, .gen = 0, .next_free = t->free_head };
    t->free_head = i;
  }
  t->slots = slots;
  t->cap = cap;
  return true;
}

bool pending_alloc(pending_table_t *t, session_t *s, fuse_req_t req, op_t op, size_t size,
                   double *handle) {
  if (t->free_head == NO_SLOT && !grow(t)) return false;
  uint32_t i = t->free_head;
  pending_t *p = &t->slots[i];
  t->free_head = p->next_free;
  p->req = req;
  p->s = s;
  p->size = size;
  p->op = (uint8_t)op;
  *handle = (double)p->gen * INDEX_SCALE + (double)i;
  return true;
}

pending_t *pending_get(pending_table_t *t, double handle) {
  if (!(handle >= 0) || handle != floor(handle) || handle >= 9007199254740992.0) return NULL;
  double gen = floor(handle / INDEX_SCALE);
  uint32_t i = (uint32_t)(handle - gen * INDEX_SCALE);
  if (i >= t->cap) return NULL;
  pending_t *p = &t->slots[i];
  if (p->req == NULL || (double)p->gen != gen) return NULL;
  return p;
}

void pending_release(pending_table_t *t, pending_t *p) {
  p->req = NULL;
  p->s = NULL;
  p->gen = (p->gen + 1) & GEN_MASK;
  p->next_free = t->free_head;
  t->free_head = (uint32_t)(p - t->slots);
}

/*
 * Answers every request of a session that is going away. libfuse frees a fuse_req_t only
 * when it is replied to, so without this each in-flight request would leak; and the
 * kernel side, if still connected, gets an honest error instead of waiting forever.
 */
void pending_fail_session(pending_table_t *t, session_t *s, int err) {
  for (uint32_t i = 0; i < t->cap; i++) {
    pending_t *p = &t->slots[i];
    if (p->req == NULL || p->s != s) continue;
    fuse_reply_err(p->req, err);
    s->replies++;
    pending_release(t, p);
  }
}

void pending_free(pending_table_t *t) {
  free(t->slots);
  *t = (pending_table_t){ .slots = NULL, .cap = 0, .free_head = NO_SLOT };
}
