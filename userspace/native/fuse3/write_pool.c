/*
 * Lent write buffers (see write_pool_t in shmr_fuse3.h).
 *
 * Invariants:
 * - A slot is either free (listed once in free_slots) or lent to exactly one write.
 * - A buffer is only written while lent to nobody (here, or by the receive in io_read into
 *   the slot write_pool_peek named): JS gets it after that and gives it back with
 *   releaseWriteBuffer(slot) once the handler's result settled.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmr_fuse3.h"

/* Transparent huge pages are 2 MiB (x86-64, arm64 with 4 KiB pages). */
#define HUGE_PAGE_BYTES (2u * 1024 * 1024)

static void chunk_free(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/*
 * Buffers are page-aligned, so that a whole block written from one goes to its shard file with
 * O_DIRECT without a copy (writeShardFileAsync), and carved from 2 MiB chunks advised for
 * transparent huge pages (two 1 MiB buffers each), so that the kernel pins one huge page where
 * it would pin 256 small ones, both to receive a WRITE into it and to write it with O_DIRECT.
 * Slot `slot` is buffer slot % per_chunk of its chunk; the first buffer of a chunk maps it
 * and owns it (unmapped with it: the pool holds every buffer until its environment ends).
 * NULL when the memory cannot be mapped.
 */
static napi_value create_buffer(napi_env env, write_pool_t *w, uint32_t slot) {
  size_t page_bytes = (size_t)sysconf(_SC_PAGESIZE);
  size_t stride = (w->bytes + page_bytes - 1) / page_bytes * page_bytes;
  size_t per_chunk = stride <= HUGE_PAGE_BYTES ? HUGE_PAGE_BYTES / stride : 1;
  size_t chunk_bytes = (stride * per_chunk + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
  size_t index = slot % per_chunk;
  napi_value ab;
  if (index > 0) {
    uint8_t *data = (uint8_t *)w->data[slot - index] + index * stride;
    if (napi_create_external_arraybuffer(env, data, w->bytes, NULL, NULL, &ab) != napi_ok) return NULL;
    w->data[slot] = data;
    return ab;
  }
  /* Map one huge page more, then trim to a 2 MiB-aligned start. */
  size_t mapped_bytes = chunk_bytes + HUGE_PAGE_BYTES;
  uint8_t *mapped = mmap(NULL, mapped_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) return NULL;
  uint8_t *start = (uint8_t *)(((uintptr_t)mapped + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1));
  if (start > mapped) munmap(mapped, (size_t)(start - mapped));
  size_t tail_bytes = (size_t)(mapped + mapped_bytes - (start + chunk_bytes));
  if (tail_bytes > 0) munmap(start + chunk_bytes, tail_bytes);
  madvise(start, chunk_bytes, MADV_HUGEPAGE); /* Advice only: small pages work as well. */
  if (napi_create_external_arraybuffer(env, start, w->bytes, chunk_free, (void *)(uintptr_t)chunk_bytes, &ab) !=
      napi_ok) {
    munmap(start, chunk_bytes);
    return NULL;
  }
  w->data[slot] = start;
  return ab;
}

/* A free slot, creating its buffer on first use; -1 when every slot is lent. */
static int take_slot(napi_env env, write_pool_t *w) {
  if (w->free_count > 0) return (int)w->free_slots[--w->free_count];
  if (w->created >= WRITE_POOL_MAX) return -1;
  uint32_t slot = w->created;
  napi_value ab = create_buffer(env, w, slot);
  if (ab == NULL || napi_create_reference(env, ab, 1, &w->refs[slot]) != napi_ok) return -1;
  w->created++;
  return (int)slot;
}

/*
 * Copies `size` bytes into a lent buffer and returns its slot, with the ArrayBuffer in
 * *out; -1 when none fits (the caller copies into a new Buffer instead).
 */
int write_pool_lend(napi_env env, write_pool_t *w, const void *bytes, size_t size,
                    napi_value *out) {
  if (w->bytes == 0 || size > w->bytes) return -1;
  int slot = take_slot(env, w);
  if (slot < 0) return -1;
  if (napi_get_reference_value(env, w->refs[slot], out) != napi_ok) {
    w->free_slots[w->free_count++] = (uint32_t)slot;
    return -1;
  }
  memcpy(w->data[slot], bytes, size);
  w->lent[slot] = true;
  return slot;
}

/*
 * The slot a receive may read the next WRITE payload into, left free on top of the free
 * list until write_pool_claim lends it; -1 when every slot is lent. Nothing may take a slot
 * between the two calls (both run on the JS thread, within one request).
 */
int write_pool_peek(napi_env env, write_pool_t *w) {
  if (w->bytes == 0) return -1;
  int slot = take_slot(env, w);
  if (slot < 0) return -1;
  w->free_slots[w->free_count++] = (uint32_t)slot;
  return slot;
}

/* Lends the peeked `slot`, which already holds the payload (no copy); -1 if it cannot. */
int write_pool_claim(napi_env env, write_pool_t *w, int slot, napi_value *out) {
  if (w->free_count == 0 || w->free_slots[w->free_count - 1] != (uint32_t)slot) return -1;
  if (napi_get_reference_value(env, w->refs[slot], out) != napi_ok) return -1;
  w->free_count--;
  w->lent[slot] = true;
  return slot;
}

/* Takes a lent slot back. */
void write_pool_return(write_pool_t *w, int slot) {
  w->lent[slot] = false;
  w->free_slots[w->free_count++] = (uint32_t)slot;
}

/* releaseWriteBuffer(slot): the write handler settled; the buffer may be lent again. */
static napi_value js_release(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  addon_t *a;
  uint32_t slot;
  napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&a);
  write_pool_t *w = &a->writes;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &slot) != napi_ok ||
      slot >= w->created || !w->lent[slot]) {
    return throw_error(env, "releaseWriteBuffer: not a lent write buffer");
  }
  write_pool_return(w, (int)slot);
  return NULL;
}

napi_status write_pool_define(napi_env env, napi_value exports, addon_t *a) {
  const napi_property_descriptor props[] = {
    { "releaseWriteBuffer", NULL, js_release, NULL, NULL, NULL, napi_enumerable, a },
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
