/*
 * Keyed maps: chained hashes of caller-allocated nodes keyed by two numbers, shared by the
 * tables the binding keeps for requests it answers in C (chunk_read.c, attr_cache.c). A node
 * is embedded first in the caller's struct; the map links it and never allocates one.
 */
#include <stdlib.h>

#include "shmr_fuse3.h"

#define MAP_BUCKETS_MIN 256u

static uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 29);
}

static map_node_t **slot_of(map_t *m, uint64_t k1, uint64_t k2) {
  map_node_t **p = &m->buckets[mix(k1, k2) & m->mask];
  while (*p != NULL && ((*p)->k1 != k1 || (*p)->k2 != k2)) p = &(*p)->next;
  return p;
}

map_node_t *map_find(const map_t *m, uint64_t k1, uint64_t k2) {
  if (m->count == 0) return NULL;
  map_node_t *n = m->buckets[mix(k1, k2) & m->mask];
  while (n != NULL && (n->k1 != k1 || n->k2 != k2)) n = n->next;
  return n;
}

static bool map_grow(map_t *m) {
  uint32_t cap = m->mask == 0 ? MAP_BUCKETS_MIN : (m->mask + 1) * 2;
  map_node_t **buckets = calloc(cap, sizeof *buckets);
  if (buckets == NULL) return false;
  for (uint32_t i = 0; m->buckets != NULL && i <= m->mask; i++) {
    for (map_node_t *n = m->buckets[i], *next; n != NULL; n = next) {
      next = n->next;
      map_node_t **b = &buckets[mix(n->k1, n->k2) & (cap - 1)];
      n->next = *b;
      *b = n;
    }
  }
  free(m->buckets);
  m->buckets = buckets;
  m->mask = cap - 1;
  return true;
}

/* Links `n` (keyed) in; false: its key is in the map already, or out of memory. */
bool map_add(map_t *m, map_node_t *n) {
  if ((m->buckets == NULL || m->count > m->mask) && !map_grow(m) && m->buckets == NULL) return false;
  map_node_t **p = slot_of(m, n->k1, n->k2);
  if (*p != NULL) return false;
  n->next = NULL;
  *p = n;
  m->count++;
  return true;
}

/* Unlinks and returns the node of (k1, k2), or NULL. */
map_node_t *map_take(map_t *m, uint64_t k1, uint64_t k2) {
  if (m->count == 0) return NULL;
  map_node_t **p = slot_of(m, k1, k2);
  map_node_t *n = *p;
  if (n == NULL) return NULL;
  *p = n->next;
  m->count--;
  return n;
}

void map_node_free(map_node_t *n) { free(n); }

void map_free(map_t *m, void (*free_node)(map_node_t *)) {
  for (uint32_t i = 0; m->buckets != NULL && i <= m->mask; i++) {
    for (map_node_t *n = m->buckets[i], *next; n != NULL; n = next) {
      next = n->next;
      free_node(n);
    }
  }
  free(m->buckets);
  *m = (map_t){ 0 };
}
