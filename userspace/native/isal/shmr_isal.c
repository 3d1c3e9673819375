/*
 * shmr_isal: Intel ISA-L for shmr, through N-API. CRC32C (Castagnoli) and systematic
 * Reed-Solomon erasure coding over GF(2^8), each synchronous or off the JS thread: the write
 * path's computing (rsEncodeAsync, crc32cChunksAsync) on the addon's own niced "bulk pool"
 * (see there), the rest on the libuv thread pool.
 *
 * Exports (loaded only by userspace/src/erasure/native.ts, which documents the JS side; the
 * crc32c*Chunks ones are typed in codec.ts until native.ts lists them):
 *   crc32c(data, previous)                       -> number
 *   crc32cAsync(data, previous)                  -> Promise<number>
 *   crc32cChunks(data, chunkBytes, table)        -> number (whole CRC; fills table)
 *   crc32cChunksAsync(data, chunkBytes, table)   -> Promise<number>
 *   crc32cVerifyChunks(data, chunkBytes, table, firstChunk)      -> number (chunk index or -1)
 *   crc32cVerifyChunksAsync(data, chunkBytes, table, firstChunk) -> Promise<number>
 *   preadVerifyChunksNow(data, chunkBytes, table, firstChunk, fd, position)
 *                                                -> number (-1 ok, chunk index, -2 not cached)
 *   readShardVerifyAsync(path, prefix, data, position, chunkBytes, table, firstChunk)
 *                                                -> Promise<number> (-1 ok, chunk index, -2 short)
 *   allocHugePages(bytes)                        -> ArrayBuffer (2 MiB aligned, MADV_HUGEPAGE)
 *   setThreadSlice(nanoseconds)                  -> boolean (the calling thread's EEVDF slice)
 *   allocPages(bytes)                            -> ArrayBuffer (page aligned, own pages)
 *   rsPrepare(k, p)                              -> undefined (validates, warms the cache)
 *   rsEncode(k, p, data[], parity[])             -> undefined
 *   rsEncodeAsync(k, p, data[], parity[])        -> Promise<undefined>
 *   rsReconstruct(k, p, shards[], present[])     -> undefined
 *   rsReconstructAsync(k, p, shards[], present[])-> Promise<undefined>
 *   writeShardFileAsync(path, prefix, payload, chunkBytes, offsets, flags)
 *                                                -> Promise<undefined> (see "Shard files")
 *
 * Invariants, and why:
 * - No call may reach ISA-L's gf_mul. The node binary exports OpenSSL's gf_mul (a GF(2^m)
 *   bignum routine with another signature), and libisal calls gf_mul through its PLT, so inside
 *   node that call lands in OpenSSL. So gf_invert_matrix, gf_gen_rs_matrix and every *_base
 *   kernel are off limits: matrices are inverted here with our own static log/exp tables, and
 *   shards shorter than ISAL_SHARD_BYTES_MIN, for which ec_encode_data would fall back to
 *   ec_encode_data_base, are coded by our own scalar loop. What we do call (ec_init_tables,
 *   ec_encode_data with len >= 64, gf_gen_cauchy1_matrix via gf_inv, crc32_iscsi) never calls
 *   gf_mul; a self-test at load time checks them against our own arithmetic. The CRC combine
 *   arithmetic (GF(2)[x] modulo the CRC32C polynomial) is ours too, static, and self-tested.
 * - Every JS input is validated before any pointer is used; bad input throws a TypeError or
 *   RangeError naming the argument, never crashes the process.
 * - Coding plans (which shards to read and write, with ISA-L's expanded tables) are cached per
 *   Node environment, i.e. per JS thread, so the cache needs no lock. A plan is reference
 *   counted: the cache holds one count, each async job in flight one more, so eviction never
 *   frees tables that a pool thread is reading. Counts change on the JS thread only.
 * - An async job holds a napi_ref on every JS buffer it touches until it completes, so the GC
 *   cannot free the memory a pool thread is reading or writing.
 */
/* preadv2 and RWF_NOWAIT (the read fast path). */
#define _GNU_SOURCE
#include <node_api.h>

#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Largest k + p. Keeps every per-call array on the stack and a pattern in a uint32_t mask. */
#define SHARDS_MAX 32
/* Below this, ISA-L's AVX-512 dispatch (the widest) falls back to ec_encode_data_base. */
#define ISAL_SHARD_BYTES_MIN 64
/* Plans kept per environment. A plan is at most 9 KiB (k * rows <= 256), so at most ~600 KiB. */
#define PLAN_CACHE_ENTRIES_MAX 64
/* crc32_iscsi takes an int length: longer buffers are fed in chunks of this size. */
#define CRC_CHUNK_BYTES ((size_t)1 << 30)
/* CRC32C's polynomial 0x1edc6f41, bit-reversed: the form crc32_iscsi and the tables use. */
#define CRC32C_POLYNOMIAL_REFLECTED 0x82f63b78u
/* x^(2^n) for n up to 3 + 63: enough to shift a CRC past any size_t count of bytes. */
#define CRC_X_POWERS_MAX 67
/* Largest integer a JS number holds exactly: the bound of firstChunk. */
#define SAFE_INTEGER_MAX 9007199254740991.0
/* GF(2^8) reduction polynomial x^8 + x^4 + x^3 + x^2 + 1, the one ISA-L uses. */
#define GF_POLYNOMIAL 0x11d
/* Room for one error message or one shard label such as "parity[31]". */
#define MESSAGE_BYTES_MAX 256
#define LABEL_BYTES_MAX 32

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Throws an Error for a failed napi call, unless the call already left an exception pending. */
static void throw_napi_failure(napi_env env) {
  /* Read the error info first: napi_is_exception_pending clears it. */
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  const char *message = (info != NULL && info->error_message != NULL)
                            ? info->error_message
                            : "N-API call failed";
  bool is_pending = false;
  napi_is_exception_pending(env, &is_pending);
  if (!is_pending) napi_throw_error(env, NULL, message);
}

/* Returns `failure` from the calling function when a napi call fails, with an exception set. */
#define NAPI_CHECK(env, call, failure)                                                        \
  do {                                                                                        \
    if ((call) != napi_ok) {                                                                  \
      throw_napi_failure(env);                                                                \
      return failure;                                                                         \
    }                                                                                         \
  } while (0)

__attribute__((format(printf, 2, 3))) static void throw_type_error(napi_env env,
                                                                   const char *format, ...) {
  char message[MESSAGE_BYTES_MAX];
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(message, sizeof message, format, arguments);
  va_end(arguments);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
}

__attribute__((format(printf, 2, 3))) static void throw_range_error(napi_env env,
                                                                    const char *format, ...) {
  char message[MESSAGE_BYTES_MAX];
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(message, sizeof message, format, arguments);
  va_end(arguments);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

/* ---------------------------------------------------------------------------------------- */
/* GF(2^8) arithmetic of our own (static: never interposed, never interposing)               */
/* ---------------------------------------------------------------------------------------- */

static uint8_t gf_log_table[256];
/* Doubled, so exp[log a + log b] needs no reduction modulo 255. */
static uint8_t gf_exp_table[512];
static pthread_once_t gf_tables_once = PTHREAD_ONCE_INIT;

/* Fills the tables from the generator 2; pthread_once because each worker thread loads us. */
static void shmr_gf_tables_init(void) {
  unsigned value = 1;
  for (int power = 0; power < 255; power++) {
    gf_exp_table[power] = (uint8_t)value;
    gf_exp_table[power + 255] = (uint8_t)value;
    gf_log_table[value] = (uint8_t)power;
    value <<= 1;
    if (value & 0x100) value ^= GF_POLYNOMIAL;
  }
}

static inline uint8_t shmr_gf_mul(uint8_t a, uint8_t b) {
  if (a == 0 || b == 0) return 0;
  return gf_exp_table[gf_log_table[a] + gf_log_table[b]];
}

/* The multiplicative inverse; `a` must not be 0. */
static inline uint8_t shmr_gf_inv(uint8_t a) {
  return gf_exp_table[255 - gf_log_table[a]];
}

static void shmr_gf_swap_rows(uint8_t *matrix, int size, int row_a, int row_b) {
  for (int column = 0; column < size; column++) {
    uint8_t saved = matrix[row_a * size + column];
    matrix[row_a * size + column] = matrix[row_b * size + column];
    matrix[row_b * size + column] = saved;
  }
}

static void shmr_gf_scale_row(uint8_t *matrix, int size, int row, uint8_t factor) {
  for (int column = 0; column < size; column++) {
    matrix[row * size + column] = shmr_gf_mul(matrix[row * size + column], factor);
  }
}

/* target_row += factor * source_row (addition in GF(2^8) is XOR). */
static void shmr_gf_add_scaled_row(uint8_t *matrix, int size, int target_row, int source_row,
                                   uint8_t factor) {
  for (int column = 0; column < size; column++) {
    matrix[target_row * size + column] ^= shmr_gf_mul(matrix[source_row * size + column], factor);
  }
}

/*
 * Gauss-Jordan: reduces `matrix` (size x size, destroyed) to the identity while applying the
 * same row operations to `inverse`, which starts as the identity. False if singular.
 */
static bool shmr_gf_invert(uint8_t *matrix, uint8_t *inverse, int size) {
  memset(inverse, 0, (size_t)(size * size));
  for (int index = 0; index < size; index++) inverse[index * size + index] = 1;
  for (int column = 0; column < size; column++) {
    int pivot = column;
    while (pivot < size && matrix[pivot * size + column] == 0) pivot++;
    if (pivot == size) return false;
    if (pivot != column) {
      shmr_gf_swap_rows(matrix, size, pivot, column);
      shmr_gf_swap_rows(inverse, size, pivot, column);
    }
    uint8_t scale = shmr_gf_inv(matrix[column * size + column]);
    shmr_gf_scale_row(matrix, size, column, scale);
    shmr_gf_scale_row(inverse, size, column, scale);
    for (int row = 0; row < size; row++) {
      uint8_t factor = matrix[row * size + column];
      if (row == column || factor == 0) continue;
      shmr_gf_add_scaled_row(matrix, size, row, column, factor);
      shmr_gf_add_scaled_row(inverse, size, row, column, factor);
    }
  }
  return true;
}

/* True if a * b is the identity (all size x size): the pair check of every inversion. */
static bool shmr_gf_is_inverse(const uint8_t *a, const uint8_t *b, int size) {
  for (int row = 0; row < size; row++) {
    for (int column = 0; column < size; column++) {
      uint8_t sum = 0;
      for (int index = 0; index < size; index++) {
        sum ^= shmr_gf_mul(a[row * size + index], b[index * size + column]);
      }
      if (sum != (row == column ? 1 : 0)) return false;
    }
  }
  return true;
}

/* targets[r] = sum over j of coefficients[r][j] * sources[j], byte by byte: short shards only. */
static void shmr_gf_apply_scalar(const uint8_t *coefficients, int source_count, int target_count,
                                 size_t bytes, uint8_t *const *sources, uint8_t *const *targets) {
  for (int target = 0; target < target_count; target++) {
    const uint8_t *row = coefficients + target * source_count;
    for (size_t offset = 0; offset < bytes; offset++) {
      uint8_t sum = 0;
      for (int source = 0; source < source_count; source++) {
        sum ^= shmr_gf_mul(row[source], sources[source][offset]);
      }
      targets[target][offset] = sum;
    }
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Coding plans: what to read, what to write, and ISA-L's tables for it                      */
/* ---------------------------------------------------------------------------------------- */

/*
 * Encoding is the erasure pattern "all parity lost", so one kind of plan serves both calls.
 * Sources are the first k present shards; targets are the lost ones, in index order.
 */
typedef struct coding_plan {
  int reference_count; /* One for the cache slot, one per async job in flight. */
  int data_count;
  int parity_count;
  uint32_t present_mask; /* Bit i set: shard i present. The cache key with k and p. */
  int target_count;
  uint8_t source_index[SHARDS_MAX];
  uint8_t target_index[SHARDS_MAX];
  uint8_t coefficients[SHARDS_MAX * SHARDS_MAX]; /* target_count rows of data_count. */
  uint8_t gf_tables[];                           /* ISA-L form: 32 bytes per coefficient. */
} coding_plan_t;

static uint32_t low_bits_mask(int count) {
  return count >= 32 ? UINT32_MAX : ((uint32_t)1 << count) - 1;
}

/* Picks sources (first k present) and targets (every lost shard). */
static void plan_choose_shards(coding_plan_t *plan) {
  int source_count = 0;
  plan->target_count = 0;
  for (int index = 0; index < plan->data_count + plan->parity_count; index++) {
    bool is_present = (plan->present_mask >> index) & 1;
    if (is_present && source_count < plan->data_count) {
      plan->source_index[source_count++] = (uint8_t)index;
    } else if (!is_present) {
      plan->target_index[plan->target_count++] = (uint8_t)index;
    }
  }
}

/*
 * Coefficients expressing each target from the sources: with A the (k+p) x k encode matrix
 * and B the rows of A for the sources, data = B^-1 * sources, so target t = A[t] * B^-1 *
 * sources. False if B is not invertible, which a Cauchy matrix rules out: a bug.
 */
static bool plan_compute_coefficients(coding_plan_t *plan) {
  int k = plan->data_count;
  uint8_t encode_matrix[SHARDS_MAX * SHARDS_MAX];
  uint8_t sources_matrix[SHARDS_MAX * SHARDS_MAX];
  uint8_t sources_copy[SHARDS_MAX * SHARDS_MAX];
  uint8_t inverse[SHARDS_MAX * SHARDS_MAX];
  gf_gen_cauchy1_matrix(encode_matrix, k + plan->parity_count, k);
  for (int row = 0; row < k; row++) {
    memcpy(&sources_matrix[row * k], &encode_matrix[plan->source_index[row] * k], (size_t)k);
  }
  memcpy(sources_copy, sources_matrix, (size_t)(k * k));
  if (!shmr_gf_invert(sources_copy, inverse, k)) return false;
  if (!shmr_gf_is_inverse(sources_matrix, inverse, k)) return false;
  for (int target = 0; target < plan->target_count; target++) {
    const uint8_t *encode_row = &encode_matrix[plan->target_index[target] * k];
    for (int column = 0; column < k; column++) {
      uint8_t sum = 0;
      for (int index = 0; index < k; index++) {
        sum ^= shmr_gf_mul(encode_row[index], inverse[index * k + column]);
      }
      plan->coefficients[target * k + column] = sum;
    }
  }
  return true;
}

/* A new plan with one reference, or NULL with *error set. At least one shard must be lost. */
static coding_plan_t *plan_build(int k, int p, uint32_t present_mask, const char **error) {
  int lost_count = k + p - __builtin_popcount(present_mask & low_bits_mask(k + p));
  size_t table_bytes = (size_t)32 * (size_t)k * (size_t)lost_count;
  coding_plan_t *plan = calloc(1, sizeof(coding_plan_t) + table_bytes);
  if (plan == NULL) {
    *error = "out of memory building a Reed-Solomon plan";
    return NULL;
  }
  plan->reference_count = 1;
  plan->data_count = k;
  plan->parity_count = p;
  plan->present_mask = present_mask;
  plan_choose_shards(plan);
  if (plan->target_count != lost_count || lost_count == 0 || !plan_compute_coefficients(plan)) {
    free(plan);
    *error = "internal error: Reed-Solomon decode matrix is not invertible";
    return NULL;
  }
  ec_init_tables(k, plan->target_count, plan->coefficients, plan->gf_tables);
  return plan;
}

/* Drops one reference; the last one frees the plan. */
static void plan_release(coding_plan_t *plan) {
  if (plan == NULL) return;
  if (plan->reference_count <= 0) abort(); /* Underflow is a bug: stop, never clamp. */
  plan->reference_count--;
  if (plan->reference_count == 0) free(plan);
}

/* ---------------------------------------------------------------------------------------- */
/* Plan cache: per environment, most recently used first                                     */
/* ---------------------------------------------------------------------------------------- */

typedef struct addon_state {
  coding_plan_t *plans[PLAN_CACHE_ENTRIES_MAX];
  int plan_count;
  struct bulk_pool *bulk; /* Started by the first bulk job; owned by its cleanup hook. */
} addon_state_t;

static void cache_move_to_front(addon_state_t *state, int index) {
  coding_plan_t *plan = state->plans[index];
  memmove(&state->plans[1], &state->plans[0], (size_t)index * sizeof(coding_plan_t *));
  state->plans[0] = plan;
}

/* Inserts a plan (taking over its one reference), evicting the least recently used. */
static void cache_insert(addon_state_t *state, coding_plan_t *plan) {
  if (state->plan_count == PLAN_CACHE_ENTRIES_MAX) {
    plan_release(state->plans[PLAN_CACHE_ENTRIES_MAX - 1]);
    state->plan_count--;
  }
  memmove(&state->plans[1], &state->plans[0], (size_t)state->plan_count * sizeof(coding_plan_t *));
  state->plans[0] = plan;
  state->plan_count++;
}

/* The cached plan for (k, p, pattern), built on a miss; NULL with an exception set. */
static coding_plan_t *cache_get(napi_env env, int k, int p, uint32_t present_mask) {
  addon_state_t *state = NULL;
  NAPI_CHECK(env, napi_get_instance_data(env, (void **)&state), NULL);
  for (int index = 0; index < state->plan_count; index++) {
    coding_plan_t *plan = state->plans[index];
    if (plan->data_count == k && plan->parity_count == p && plan->present_mask == present_mask) {
      cache_move_to_front(state, index);
      return plan;
    }
  }
  const char *error = NULL;
  coding_plan_t *plan = plan_build(k, p, present_mask, &error);
  if (plan == NULL) {
    napi_throw_error(env, NULL, error);
    return NULL;
  }
  cache_insert(state, plan);
  return plan;
}

static void addon_state_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  addon_state_t *state = data;
  for (int index = 0; index < state->plan_count; index++) plan_release(state->plans[index]);
  free(state);
}

/* ---------------------------------------------------------------------------------------- */
/* Running a plan                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* One Reed-Solomon call: a plan applied to shard buffers. plan == NULL means nothing to do. */
typedef struct rs_operation {
  coding_plan_t *plan;
  size_t shard_bytes;
  uint8_t *shards[SHARDS_MAX]; /* By shard index: data 0..k-1, then parity. */
} rs_operation_t;

/* Safe on a pool thread: reads the plan (kept alive by a reference) and the pinned buffers. */
static void rs_operation_run(const rs_operation_t *operation) {
  const coding_plan_t *plan = operation->plan;
  if (plan == NULL) return;
  uint8_t *sources[SHARDS_MAX];
  uint8_t *targets[SHARDS_MAX];
  for (int index = 0; index < plan->data_count; index++) {
    sources[index] = operation->shards[plan->source_index[index]];
  }
  for (int index = 0; index < plan->target_count; index++) {
    targets[index] = operation->shards[plan->target_index[index]];
  }
  if (operation->shard_bytes < ISAL_SHARD_BYTES_MIN) {
    shmr_gf_apply_scalar(plan->coefficients, plan->data_count, plan->target_count,
                         operation->shard_bytes, sources, targets);
  } else {
    /* Validation bounded shard_bytes to INT_MAX. gf_tables is only read despite the type. */
    ec_encode_data((int)operation->shard_bytes, plan->data_count, plan->target_count,
                   (unsigned char *)plan->gf_tables, sources, targets);
  }
}

static uint32_t crc32c_compute(const uint8_t *data, size_t bytes, uint32_t previous) {
  /* The standard CRC32C inverts before and after; crc32_iscsi does neither, so chaining works
   * by undoing the final inversion of `previous`. */
  uint32_t state = ~previous;
  while (bytes > 0) {
    size_t chunk_bytes = bytes < CRC_CHUNK_BYTES ? bytes : CRC_CHUNK_BYTES;
    state = crc32_iscsi((unsigned char *)data, (int)chunk_bytes, state);
    data += chunk_bytes;
    bytes -= chunk_bytes;
  }
  return ~state;
}

/* ---------------------------------------------------------------------------------------- */
/* Chunked CRC32C: a table of per-chunk CRCs, and the whole CRC without a second pass        */
/* ---------------------------------------------------------------------------------------- */

/*
 * The whole CRC comes from the per-chunk ones by the CRC combine rule (zlib's crc32_combine):
 * crc(A + B) = crc(A) * x^(8 * |B|) + crc(B), in GF(2)[x] modulo the CRC32C polynomial. A
 * polynomial modulo P is held reflected, like the CRC itself: bit 31 is x^0, bit 0 is x^31.
 * Multiplying by the fixed x^(8 * chunkBytes) is linear in the other factor, so it is done with
 * nibble tables built once per call: 8 lookups per chunk, next to ~4096 bytes of CRC work.
 */
static uint32_t crc_x_powers[CRC_X_POWERS_MAX]; /* crc_x_powers[n] = x^(2^n) mod P. */
static pthread_once_t crc_x_powers_once = PTHREAD_ONCE_INIT;

/* a * x mod P. */
static inline uint32_t crc_times_x(uint32_t a) {
  return (a & 1) ? (a >> 1) ^ CRC32C_POLYNOMIAL_REFLECTED : a >> 1;
}

/* a * b mod P, bit by bit (zlib's multmodp). */
static uint32_t crc_multiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = (uint32_t)1 << 31; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = crc_times_x(b);
  }
  return product;
}

static void shmr_crc_x_powers_init(void) {
  uint32_t power = (uint32_t)1 << 30; /* x^1 */
  for (int index = 0; index < CRC_X_POWERS_MAX; index++) {
    crc_x_powers[index] = power;
    power = crc_multiply(power, power);
  }
}

/* x^(8 * bytes) mod P: the factor that shifts a CRC past `bytes` more bytes. */
static uint32_t crc_shift_factor(size_t bytes) {
  uint32_t factor = (uint32_t)1 << 31; /* x^0 */
  for (int power = 3; bytes != 0; bytes >>= 1, power++) {
    if (bytes & 1) factor = crc_multiply(crc_x_powers[power], factor);
  }
  return factor;
}

/* Multiplication by one fixed factor: table[n][v] = (v << 4n) * factor mod P. */
typedef struct crc_multiplier {
  uint32_t table[8][16];
} crc_multiplier_t;

static void crc_multiplier_init(crc_multiplier_t *multiplier, uint32_t factor) {
  uint32_t images[32]; /* images[bit] = (1 << bit) * factor, i.e. factor * x^(31 - bit). */
  for (int bit = 31; bit >= 0; bit--) {
    images[bit] = factor;
    factor = crc_times_x(factor);
  }
  for (int nibble = 0; nibble < 8; nibble++) {
    uint32_t *row = multiplier->table[nibble];
    row[0] = 0;
    for (int value = 1; value < 16; value++) {
      int low_bit = __builtin_ctz((unsigned)value);
      row[value] = row[value & (value - 1)] ^ images[4 * nibble + low_bit];
    }
  }
}

static inline uint32_t crc_multiplier_apply(const crc_multiplier_t *multiplier, uint32_t value) {
  uint32_t product = 0;
  for (int nibble = 0; nibble < 8; nibble++) {
    product ^= multiplier->table[nibble][(value >> (4 * nibble)) & 0xf];
  }
  return product;
}

/* The standard CRC32C of one chunk; chunk_bytes was bounded to INT_MAX by validation. */
static inline uint32_t crc32c_chunk(const uint8_t *chunk, size_t chunk_bytes) {
  return ~crc32_iscsi((unsigned char *)chunk, (int)chunk_bytes, UINT32_MAX);
}

static inline void store_le32(uint8_t *target, uint32_t value) {
  target[0] = (uint8_t)value;
  target[1] = (uint8_t)(value >> 8);
  target[2] = (uint8_t)(value >> 16);
  target[3] = (uint8_t)(value >> 24);
}

static inline uint32_t load_le32(const uint8_t *source) {
  return (uint32_t)source[0] | (uint32_t)source[1] << 8 | (uint32_t)source[2] << 16 |
         (uint32_t)source[3] << 24;
}

/* ceil(bytes / chunk_bytes); chunk_bytes >= 1. */
static size_t crc_chunk_count(size_t bytes, size_t chunk_bytes) {
  return bytes / chunk_bytes + (bytes % chunk_bytes != 0);
}

/* One crc32cChunks or crc32cVerifyChunks call; `table` points at the entry of `first_chunk`. */
typedef struct crc_chunks_operation {
  const uint8_t *data;
  size_t data_bytes;
  size_t chunk_bytes;
  uint8_t *table; /* Written by crc32cChunks, only read by crc32cVerifyChunks. */
  size_t first_chunk;
} crc_chunks_operation_t;

/*
 * The chunk table and whole CRC32C of one payload, taken over consecutive pieces of it (each
 * a whole number of chunks but the last), so a caller can handle each piece while it is in
 * the CPU's cache.
 */
typedef struct crc_chunks_state {
  size_t chunk_bytes;
  uint8_t *entry; /* The table entry of the next chunk. */
  uint32_t whole; /* CRC32C of the pieces so far. */
  bool has_many_chunks;
  crc_multiplier_t shift_by_chunk;
} crc_chunks_state_t;

static void crc_chunks_begin(crc_chunks_state_t *state, const crc_chunks_operation_t *operation) {
  state->chunk_bytes = operation->chunk_bytes;
  state->entry = operation->table;
  state->whole = 0; /* The CRC32C of no bytes. */
  state->has_many_chunks = operation->data_bytes > operation->chunk_bytes;
  if (state->has_many_chunks) {
    crc_multiplier_init(&state->shift_by_chunk, crc_shift_factor(operation->chunk_bytes));
  }
}

/* Adds the next `bytes` of the payload: whole chunks, or the payload's last piece. */
static void crc_chunks_add(crc_chunks_state_t *state, const uint8_t *data, size_t bytes) {
  size_t chunk_bytes = state->chunk_bytes;
  while (bytes >= chunk_bytes) {
    uint32_t crc = crc32c_chunk(data, chunk_bytes);
    store_le32(state->entry, crc);
    /* The multiplication of 0 is 0, so the first chunk needs no special case. */
    state->whole =
        state->has_many_chunks ? crc_multiplier_apply(&state->shift_by_chunk, state->whole) ^ crc
                               : crc;
    data += chunk_bytes;
    bytes -= chunk_bytes;
    state->entry += 4;
  }
  if (bytes > 0) {
    uint32_t crc = crc32c_chunk(data, bytes);
    store_le32(state->entry, crc);
    state->whole = crc_multiply(crc_shift_factor(bytes), state->whole) ^ crc;
    state->entry += 4;
  }
}

/* Writes the table and returns the CRC32C of all the data. Safe on a pool thread. */
static uint32_t crc_chunks_run(const crc_chunks_operation_t *operation) {
  crc_chunks_state_t state;
  crc_chunks_begin(&state, operation);
  crc_chunks_add(&state, operation->data, operation->data_bytes);
  return state.whole;
}

/* The payload index of the first chunk whose CRC32C differs from the table, or -1. */
static int64_t crc_verify_run(const crc_chunks_operation_t *operation) {
  const uint8_t *data = operation->data;
  size_t remaining = operation->data_bytes;
  const uint8_t *entry = operation->table;
  for (size_t index = 0; remaining > 0; index++) {
    size_t bytes = remaining < operation->chunk_bytes ? remaining : operation->chunk_bytes;
    if (crc32c_chunk(data, bytes) != load_le32(entry)) {
      return (int64_t)(operation->first_chunk + index);
    }
    data += bytes;
    remaining -= bytes;
    entry += 4;
  }
  return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Argument parsing                                                                           */
/* ---------------------------------------------------------------------------------------- */

/* Buffers of one call, with how to name shard i in messages ("data[2]", "parity[0]"). */
typedef struct shard_set {
  size_t shard_bytes; /* 0 until the first shard is read. */
  uint8_t *pointers[SHARDS_MAX];
  napi_value objects[SHARDS_MAX];
  const char *first_name;  /* Shards 0..second_start-1 are first_name[i]. */
  const char *second_name; /* The rest are second_name[i - second_start]. */
  int second_start;
} shard_set_t;

static void shard_label(const shard_set_t *set, int index, char *label) {
  if (index < set->second_start) {
    snprintf(label, LABEL_BYTES_MAX, "%s[%d]", set->first_name, index);
  } else {
    snprintf(label, LABEL_BYTES_MAX, "%s[%d]", set->second_name, index - set->second_start);
  }
}

static bool get_arguments(napi_env env, napi_callback_info info, size_t count_expected,
                          napi_value *arguments) {
  size_t count = count_expected;
  NAPI_CHECK(env, napi_get_cb_info(env, info, &count, arguments, NULL, NULL), false);
  /* Missing arguments arrive as undefined, which the readers below reject by name. */
  return true;
}

/* An integer argument in [minimum, maximum]. */
static bool read_integer(napi_env env, napi_value value, const char *name, int minimum,
                         int maximum, int *result) {
  napi_valuetype type;
  NAPI_CHECK(env, napi_typeof(env, value, &type), false);
  if (type != napi_number) {
    throw_type_error(env, "%s must be a number", name);
    return false;
  }
  double number = 0;
  NAPI_CHECK(env, napi_get_value_double(env, value, &number), false);
  /* The range test comes first so that the cast below is defined (it also rejects NaN). */
  if (!(number >= minimum && number <= maximum) || (double)(int)number != number) {
    throw_range_error(env, "%s must be an integer from %d to %d, got %g", name, minimum, maximum,
                      number);
    return false;
  }
  *result = (int)number;
  return true;
}

/* The optional CRC seed: undefined means 0, else an integer in [0, 2^32 - 1]. */
static bool read_crc_previous(napi_env env, napi_value value, uint32_t *result) {
  napi_valuetype type;
  NAPI_CHECK(env, napi_typeof(env, value, &type), false);
  *result = 0;
  if (type == napi_undefined) return true;
  if (type != napi_number) {
    throw_type_error(env, "previous must be a number (an unsigned 32-bit CRC32C)");
    return false;
  }
  double number = 0;
  NAPI_CHECK(env, napi_get_value_double(env, value, &number), false);
  if (!(number >= 0 && number <= (double)UINT32_MAX) || (double)(uint32_t)number != number) {
    throw_range_error(env, "previous must be an integer from 0 to 4294967295, got %g", number);
    return false;
  }
  *result = (uint32_t)number;
  return true;
}

/* A count or index that a JS number holds exactly: an integer in [0, 2^53 - 1]. */
static bool read_safe_index(napi_env env, napi_value value, const char *name, size_t *result) {
  napi_valuetype type;
  NAPI_CHECK(env, napi_typeof(env, value, &type), false);
  if (type != napi_number) {
    throw_type_error(env, "%s must be a number", name);
    return false;
  }
  double number = 0;
  NAPI_CHECK(env, napi_get_value_double(env, value, &number), false);
  if (!(number >= 0 && number <= SAFE_INTEGER_MAX) || (double)(uint64_t)number != number) {
    throw_range_error(env, "%s must be an integer from 0 to %.0f, got %g", name,
                      SAFE_INTEGER_MAX, number);
    return false;
  }
  *result = (size_t)number;
  return true;
}

/* dataCount and parityCount, from the first two arguments. */
static bool read_geometry(napi_env env, const napi_value *arguments, int *k, int *p) {
  if (!read_integer(env, arguments[0], "dataCount", 1, SHARDS_MAX, k)) return false;
  if (!read_integer(env, arguments[1], "parityCount", 0, SHARDS_MAX - 1, p)) return false;
  if (*k + *p > SHARDS_MAX) {
    throw_range_error(env, "dataCount + parityCount must be at most %d, got %d + %d", SHARDS_MAX,
                      *k, *p);
    return false;
  }
  return true;
}

/* A Uint8Array (or Buffer): its memory and length. Returns false without throwing. */
static bool get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *bytes) {
  napi_typedarray_type type;
  void *pointer = NULL;
  /* Asking for the data pointer makes V8 move an on-heap typed array's bytes off-heap, so the
   * pointer stays valid while the object lives. A non-typed-array fails with invalid_arg. */
  napi_status status = napi_get_typedarray_info(env, value, &type, bytes, &pointer, NULL, NULL);
  if (status != napi_ok || type != napi_uint8_array) return false;
  *data = pointer;
  return true;
}

/* get_bytes for a named argument, throwing a TypeError naming it. */
static bool read_bytes(napi_env env, napi_value value, const char *name, uint8_t **data,
                       size_t *bytes) {
  if (get_bytes(env, value, data, bytes)) return true;
  throw_type_error(env, "%s must be a Uint8Array", name);
  return false;
}

/* Checks one shard's length against the set's (the first shard's, or sets it). Labels are
 * formatted only on failure: snprintf per shard would double the cost of a small call. */
static bool check_shard_bytes(napi_env env, shard_set_t *set, int index, size_t bytes) {
  bool is_first = set->shard_bytes == 0;
  if (is_first && bytes >= 1 && bytes <= INT_MAX) {
    set->shard_bytes = bytes;
    return true;
  }
  if (!is_first && bytes == set->shard_bytes) return true;
  char label[LABEL_BYTES_MAX];
  char first_label[LABEL_BYTES_MAX];
  shard_label(set, index, label);
  if (is_first) {
    throw_range_error(env, "%s has %zu bytes; a shard must have 1 to %d bytes", label, bytes,
                      INT_MAX);
    return false;
  }
  shard_label(set, 0, first_label);
  throw_range_error(env, "%s has %zu bytes but %s has %zu: all shards must be the same length",
                    label, bytes, first_label, set->shard_bytes);
  return false;
}

/* A JS array of exactly `count` equal-length Uint8Arrays, stored as shards first.. of `set`. */
static bool read_shard_array(napi_env env, napi_value array, const char *name, int count,
                             int first, shard_set_t *set) {
  bool is_array = false;
  NAPI_CHECK(env, napi_is_array(env, array, &is_array), false);
  if (!is_array) {
    throw_type_error(env, "%s must be an array of %d Uint8Arrays", name, count);
    return false;
  }
  uint32_t length = 0;
  NAPI_CHECK(env, napi_get_array_length(env, array, &length), false);
  if (length != (uint32_t)count) {
    throw_range_error(env, "%s must have %d shards, got %u", name, count, length);
    return false;
  }
  for (int index = 0; index < count; index++) {
    size_t bytes = 0;
    napi_value *object = &set->objects[first + index];
    NAPI_CHECK(env, napi_get_element(env, array, (uint32_t)index, object), false);
    if (!get_bytes(env, *object, &set->pointers[first + index], &bytes)) {
      char label[LABEL_BYTES_MAX];
      shard_label(set, first + index, label);
      throw_type_error(env, "%s must be a Uint8Array", label);
      return false;
    }
    if (!check_shard_bytes(env, set, first + index, bytes)) return false;
  }
  return true;
}

/* present[]: `count` booleans, returned as a mask with bit i set when shard i is present. */
static bool read_present(napi_env env, napi_value array, int count, uint32_t *mask) {
  bool is_array = false;
  uint32_t length = 0;
  NAPI_CHECK(env, napi_is_array(env, array, &is_array), false);
  if (!is_array) {
    throw_type_error(env, "present must be an array of %d booleans", count);
    return false;
  }
  NAPI_CHECK(env, napi_get_array_length(env, array, &length), false);
  if (length != (uint32_t)count) {
    throw_range_error(env, "present must have %d elements, got %u", count, length);
    return false;
  }
  *mask = 0;
  for (int index = 0; index < count; index++) {
    napi_value element;
    bool is_present = false;
    NAPI_CHECK(env, napi_get_element(env, array, (uint32_t)index, &element), false);
    if (napi_get_value_bool(env, element, &is_present) != napi_ok) {
      throw_type_error(env, "present[%d] must be a boolean", index);
      return false;
    }
    if (is_present) *mask |= (uint32_t)1 << index;
  }
  return true;
}

static bool ranges_overlap(const uint8_t *a, const uint8_t *b, size_t bytes) {
  return a < b + bytes && b < a + bytes;
}

/* ranges_overlap for spans of different lengths; an empty span overlaps nothing. */
static bool spans_overlap(const uint8_t *a, size_t a_bytes, const uint8_t *b, size_t b_bytes) {
  return a_bytes > 0 && b_bytes > 0 && a < b + b_bytes && b < a + a_bytes;
}

/* A shard written must share no byte with any other shard of the call: ISA-L would read
 * half-written input, an async job would race with itself, and a present shard beyond the k
 * that are read would be silently corrupted. At most 31 x 32 pointer comparisons. */
static bool check_targets_disjoint(napi_env env, const shard_set_t *set,
                                   const coding_plan_t *plan) {
  int shard_count = plan->data_count + plan->parity_count;
  for (int target = 0; target < plan->target_count; target++) {
    int written = plan->target_index[target];
    for (int index = 0; index < shard_count; index++) {
      if (index == written) continue;
      if (!ranges_overlap(set->pointers[written], set->pointers[index], set->shard_bytes)) {
        continue;
      }
      char written_label[LABEL_BYTES_MAX];
      char other_label[LABEL_BYTES_MAX];
      shard_label(set, written, written_label);
      shard_label(set, index, other_label);
      throw_range_error(env, "%s overlaps %s: an output shard must not share memory",
                        written_label, other_label);
      return false;
    }
  }
  return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Preparing a Reed-Solomon call (shared by the sync and async entry points)                 */
/* ---------------------------------------------------------------------------------------- */

/* Fills `operation` from a plan lookup, after the overlap check; plan NULL if nothing lost. */
static bool prepare_operation(napi_env env, shard_set_t *set, int k, int p, uint32_t present_mask,
                              rs_operation_t *operation) {
  operation->plan = NULL;
  operation->shard_bytes = set->shard_bytes;
  memcpy(operation->shards, set->pointers, sizeof operation->shards);
  if (present_mask == low_bits_mask(k + p)) return true;
  coding_plan_t *plan = cache_get(env, k, p, present_mask);
  if (plan == NULL) return false;
  if (!check_targets_disjoint(env, set, plan)) return false;
  operation->plan = plan;
  return true;
}

/* (k, p, data[], parity[]): encode is "every parity shard lost". */
static bool prepare_encode(napi_env env, napi_callback_info info, shard_set_t *set,
                           rs_operation_t *operation, int *shard_count) {
  napi_value arguments[4];
  int k = 0;
  int p = 0;
  if (!get_arguments(env, info, 4, arguments)) return false;
  if (!read_geometry(env, arguments, &k, &p)) return false;
  *set = (shard_set_t){.first_name = "data", .second_name = "parity", .second_start = k};
  if (!read_shard_array(env, arguments[2], "data", k, 0, set)) return false;
  if (!read_shard_array(env, arguments[3], "parity", p, k, set)) return false;
  *shard_count = k + p;
  return prepare_operation(env, set, k, p, low_bits_mask(k), operation);
}

/* (k, p, shards[], present[]). */
static bool prepare_reconstruct(napi_env env, napi_callback_info info, shard_set_t *set,
                                rs_operation_t *operation, int *shard_count) {
  napi_value arguments[4];
  int k = 0;
  int p = 0;
  uint32_t present_mask = 0;
  if (!get_arguments(env, info, 4, arguments)) return false;
  if (!read_geometry(env, arguments, &k, &p)) return false;
  *set = (shard_set_t){.first_name = "shards", .second_name = "shards", .second_start = k + p};
  if (!read_shard_array(env, arguments[2], "shards", k + p, 0, set)) return false;
  if (!read_present(env, arguments[3], k + p, &present_mask)) return false;
  int present_count = __builtin_popcount(present_mask);
  if (present_count < k) {
    throw_range_error(env, "too few shards present to reconstruct: %d of %d, need %d (dataCount)",
                      present_count, k + p, k);
    return false;
  }
  *shard_count = k + p;
  return prepare_operation(env, set, k, p, present_mask, operation);
}

/* ---------------------------------------------------------------------------------------- */
/* Preparing a chunked CRC32C call (shared by the sync and async entry points)               */
/* ---------------------------------------------------------------------------------------- */

/*
 * (data, chunkBytes, table[, firstChunk]): checks the table holds an entry for every chunk of
 * data from first_chunk on, and that the entries used share no byte with data (crc32cChunks
 * would overwrite what it reads; for crc32cVerifyChunks a table inside its own data is a
 * caller's offset bug). `objects` receives data and table, for an async job to pin.
 */
static bool prepare_crc_chunks(napi_env env, const napi_value *arguments, bool has_first_chunk,
                               crc_chunks_operation_t *operation, napi_value *objects) {
  uint8_t *data = NULL;
  uint8_t *table = NULL;
  size_t data_bytes = 0;
  size_t table_bytes = 0;
  int chunk_bytes = 0;
  size_t first_chunk = 0;
  if (!read_bytes(env, arguments[0], "data", &data, &data_bytes)) return false;
  if (!read_integer(env, arguments[1], "chunkBytes", 1, INT_MAX, &chunk_bytes)) return false;
  if (!read_bytes(env, arguments[2], "table", &table, &table_bytes)) return false;
  if (has_first_chunk && !read_safe_index(env, arguments[3], "firstChunk", &first_chunk)) {
    return false;
  }
  size_t chunk_count = crc_chunk_count(data_bytes, (size_t)chunk_bytes);
  /* Both terms are below 2^53, so neither the sum nor 4 times it can wrap. */
  size_t table_bytes_needed = 4 * (first_chunk + chunk_count);
  if (table_bytes < table_bytes_needed) {
    if (has_first_chunk) {
      throw_range_error(env,
                        "table has %zu bytes but needs %zu: 4 per chunk for chunks 0 to %zu "
                        "(firstChunk %zu, then %zu chunks of %d bytes in data)",
                        table_bytes, table_bytes_needed, first_chunk + chunk_count - 1,
                        first_chunk, chunk_count, chunk_bytes);
    } else {
      throw_range_error(env,
                        "table has %zu bytes but needs %zu: 4 per chunk for %zu chunks of %d "
                        "bytes in %zu bytes of data",
                        table_bytes, table_bytes_needed, chunk_count, chunk_bytes, data_bytes);
    }
    return false;
  }
  uint8_t *entries = table + 4 * first_chunk;
  if (spans_overlap(data, data_bytes, entries, 4 * chunk_count)) {
    throw_range_error(env, "table overlaps data: the checksum table must not share memory "
                           "with the data it covers");
    return false;
  }
  *operation = (crc_chunks_operation_t){
      .data = data,
      .data_bytes = data_bytes,
      .chunk_bytes = (size_t)chunk_bytes,
      .table = entries,
      .first_chunk = first_chunk,
  };
  objects[0] = arguments[0];
  objects[1] = arguments[2];
  return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Shard files                                                                                */
/* ---------------------------------------------------------------------------------------- */

/*
 * writeShardFileAsync(path, prefix, payload, chunkBytes, tableStart, payloadChecksumAt,
 * tableChecksumAt, headerChecksumAt, flags): one pool job that stores a whole shard file, in
 * place of one job per step (checksums, mkdir, open, write, fsync, close), each a round trip
 * through the event loop. With SHARD_WRITE_CHECKSUM it first fills the prefix's chunk table
 * (4 bytes per chunk from tableStart) and its three u32 checksums: the payload's, the table's,
 * and the CRC32C of prefix bytes [0, headerChecksumAt) (the header's, computed last). Then it
 * creates the file with O_EXCL (with SHARD_WRITE_MAKE_DIRECTORIES, a missing parent and
 * grandparent directory are created on the way), without SHARD_WRITE_DIRECT allocates the
 * file's whole size (see allocate_whole_file), writes prefix + payload, fsyncs with
 * SHARD_WRITE_SYNC, and closes; with SHARD_WRITE_DIRECT the write goes past the page cache
 * when it can (see write_direct). Any failure after the create removes the file again. Rejects
 * with an Error whose `errno` (negative, as Node's) and `syscall` name the failed call.
 */
#define SHARD_WRITE_SYNC 1
#define SHARD_WRITE_CHECKSUM 2
#define SHARD_WRITE_MAKE_DIRECTORIES 4
#define SHARD_WRITE_DIRECT 8
#define SHARD_WRITE_FLAGS_ALL 15
/* O_DIRECT alignment of memory, length and file offset: a page covers every sector size. */
#define DIRECT_ALIGN_BYTES 4096
/* Transparent huge pages are 2 MiB (x86-64, arm64 with 4 KiB pages). */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)
/* Directory levels above a shard file that a write may create (<bucket>/<xx>/<yy>). */
#define SHARD_DIRECTORY_LEVELS 2

typedef struct shard_write {
  uint8_t *prefix;
  size_t prefix_bytes;
  const uint8_t *payload;
  size_t payload_bytes;
  size_t chunk_bytes;
  size_t table_start;
  size_t payload_checksum_at;
  size_t table_checksum_at;
  size_t header_checksum_at;
  int flags;
  int error_number; /* 0, or the errno of the failed call. */
  const char *error_syscall;
  char path[]; /* NUL-terminated. */
} shard_write_t;

/* The chunk-table operation over the payload of `write`. */
static crc_chunks_operation_t shard_write_chunks(const shard_write_t *write) {
  crc_chunks_operation_t chunks = {
      .data = write->payload,
      .data_bytes = write->payload_bytes,
      .chunk_bytes = write->chunk_bytes,
      .table = write->prefix + write->table_start,
  };
  return chunks;
}

/* Stores the payload's CRC32C, then the table's and the header's, which cover it. */
static void shard_write_seal(shard_write_t *write, uint32_t payload_checksum) {
  size_t table_bytes = 4 * crc_chunk_count(write->payload_bytes, write->chunk_bytes);
  store_le32(write->prefix + write->payload_checksum_at, payload_checksum);
  store_le32(write->prefix + write->table_checksum_at,
             crc32c_compute(write->prefix + write->table_start, table_bytes, 0));
  store_le32(write->prefix + write->header_checksum_at,
             crc32c_compute(write->prefix, write->header_checksum_at, 0));
}

/* Fills the chunk table and the three checksums of the prefix. */
static void shard_write_checksum(shard_write_t *write) {
  crc_chunks_operation_t chunks = shard_write_chunks(write);
  shard_write_seal(write, crc_chunks_run(&chunks));
}

/*
 * Buffered writes with SHARD_WRITE_CHECKSUM checksum and write the payload a piece of about
 * this size at a time, the prefix last: each piece is read from memory once, for its CRC,
 * and copied into the page cache while still in the CPU's cache. Checksumming all of a 4 MiB
 * payload first and writing it after reads it from memory twice: a C loop writing 256 new
 * 4 MiB files with the write-back started took 0.71-2.5 s of CPU per GiB that way, 0.52-0.67
 * in pieces of 512 KiB to 1 MiB (0.54-0.70 at 128-256 KiB).
 */
#define CHECKSUMMED_PIECE_BYTES ((size_t)512 << 10)

/* mkdir of the directory holding `path`, and of up to `levels - 1` missing ones above it. */
static int make_parent_directories(const char *path, int levels) {
  char directory[PATH_MAX];
  size_t length = strlen(path);
  if (length >= sizeof directory) return ENAMETOOLONG;
  memcpy(directory, path, length + 1);
  char *slash = strrchr(directory, '/');
  if (slash == NULL || slash == directory) return ENOENT;
  *slash = '\0';
  if (mkdir(directory, 0755) == 0 || errno == EEXIST) return 0;
  if (errno != ENOENT || levels <= 1) return errno;
  int failure = make_parent_directories(directory, levels - 1);
  if (failure != 0) return failure;
  if (mkdir(directory, 0755) == 0 || errno == EEXIST) return 0;
  return errno;
}

static int open_new_file(shard_write_t *write) {
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  int fd = open(write->path, flags, 0644);
  if (fd >= 0 || errno != ENOENT || (write->flags & SHARD_WRITE_MAKE_DIRECTORIES) == 0) return fd;
  int failure = make_parent_directories(write->path, SHARD_DIRECTORY_LEVELS);
  if (failure != 0) {
    errno = failure;
    write->error_syscall = "mkdir";
    return -1;
  }
  return open(write->path, flags, 0644);
}

/* Moves `*vectors`/`*count` past `bytes` already transferred by a short preadv/pwritev. */
static void skip_vectors(struct iovec **vectors, int *count, size_t bytes) {
  while (*count > 0 && bytes >= (*vectors)->iov_len) {
    bytes -= (*vectors)->iov_len;
    (*vectors)++;
    (*count)--;
  }
  if (*count > 0) {
    (*vectors)->iov_base = (uint8_t *)(*vectors)->iov_base + bytes;
    (*vectors)->iov_len -= bytes;
  }
}

/* Writes `count` vectors from `position` on; returns 0 or an errno. */
static int write_vectors(int fd, struct iovec *pending, int count, off_t position) {
  while (count > 0) {
    ssize_t written = pwritev(fd, pending, count, position);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return errno;
    if (written == 0) return EIO;
    position += written;
    skip_vectors(&pending, &count, (size_t)written);
  }
  return 0;
}

/* Writes prefix then payload from offset 0; returns 0 or an errno. */
static int write_prefix_and_payload(int fd, const shard_write_t *write) {
  struct iovec parts[2] = {
      {.iov_base = write->prefix, .iov_len = write->prefix_bytes},
      {.iov_base = (void *)write->payload, .iov_len = write->payload_bytes},
  };
  return write_vectors(fd, parts, write->payload_bytes > 0 ? 2 : 1, 0);
}

/*
 * SHARD_WRITE_DIRECT: prefix + payload go past the page cache through an aligned buffer of
 * the pool thread (kept for its next shard). Why: through the page cache the kernel copies
 * each byte into a fresh page cache page (allocating it, its buffer heads and LRU entry) and
 * writes it back later; a copy into a reused buffer plus O_DIRECT costs about half that CPU,
 * and a page-aligned payload (allocPages: cache blocks, lent FUSE write buffers) is not copied
 * at all. Only whole sectors can go this way: a shard whose sizes are not page multiples, a buffer
 * that cannot be had, or a filesystem that refuses O_DIRECT is written buffered instead.
 */
static __thread uint8_t *direct_buffer;
static __thread size_t direct_buffer_bytes;

/* The pool thread's aligned buffer of at least `bytes`; NULL when it cannot be had. */
static uint8_t *thread_direct_buffer(size_t bytes) {
  if (bytes <= direct_buffer_bytes) return direct_buffer;
  free(direct_buffer);
  direct_buffer = NULL;
  direct_buffer_bytes = 0;
  /* On a transparent huge page when granted: O_DIRECT pins one page, not 257. */
  size_t rounded = (bytes + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
  void *memory = NULL;
  if (posix_memalign(&memory, HUGE_PAGE_BYTES, rounded) != 0) return NULL;
  madvise(memory, rounded, MADV_HUGEPAGE); /* Advice only: small pages work as well. */
  direct_buffer = memory;
  direct_buffer_bytes = rounded;
  return direct_buffer;
}

/* Sets or clears O_DIRECT on `fd`; false when the filesystem refuses it. */
static bool set_direct(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return false;
  return fcntl(fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) == 0;
}

/*
 * Writes prefix + payload with O_DIRECT; returns 0 or an errno, or -1 when nothing was
 * written this way and the caller writes buffered (the descriptor is buffered again then).
 */
static int write_direct(int fd, const shard_write_t *write) {
  size_t total = write->prefix_bytes + write->payload_bytes;
  if (write->prefix_bytes % DIRECT_ALIGN_BYTES != 0 || total % DIRECT_ALIGN_BYTES != 0) return -1;
  /* A page-aligned payload (allocPages) is written where it is; else it is copied too. */
  bool is_payload_aligned = (uintptr_t)write->payload % DIRECT_ALIGN_BYTES == 0;
  uint8_t *buffer = thread_direct_buffer(is_payload_aligned ? write->prefix_bytes : total);
  if (buffer == NULL || !set_direct(fd, true)) return -1;
  memcpy(buffer, write->prefix, write->prefix_bytes);
  if (!is_payload_aligned) memcpy(buffer + write->prefix_bytes, write->payload, write->payload_bytes);
  struct iovec parts[2] = {
      {.iov_base = buffer, .iov_len = is_payload_aligned ? write->prefix_bytes : total},
      {.iov_base = (void *)write->payload, .iov_len = is_payload_aligned ? write->payload_bytes : 0},
  };
  struct iovec *pending = parts;
  int count = is_payload_aligned && write->payload_bytes > 0 ? 2 : 1;
  size_t done = 0;
  while (done < total) {
    ssize_t written = pwritev(fd, pending, count, (off_t)done);
    if (written < 0 && errno == EINTR) continue;
    /* EINVAL before anything was written: alignment or O_DIRECT itself refused here. */
    if (written < 0 && errno == EINVAL && done == 0) break;
    if (written < 0) return errno;
    if (written == 0) return EIO;
    done += (size_t)written;
    skip_vectors(&pending, &count, (size_t)written);
    /* A short write that left an unaligned rest: finish it through the page cache. */
    if (done % DIRECT_ALIGN_BYTES != 0) break;
  }
  if (done == total) return 0;
  if (!set_direct(fd, false)) return errno != 0 ? errno : EIO;
  if (done == 0) return -1;
  return write_vectors(fd, pending, count, (off_t)done);
}

/*
 * Checksums and writes the payload piece by piece (see CHECKSUMMED_PIECE_BYTES), then the
 * prefix; returns 0 or an errno. The prefix's checksums are complete even when a write
 * fails: a retry in another bucket writes the prefix as it is.
 */
static int write_checksummed_in_pieces(int fd, shard_write_t *write) {
  size_t piece_bytes = CHECKSUMMED_PIECE_BYTES / write->chunk_bytes * write->chunk_bytes;
  if (piece_bytes == 0) piece_bytes = write->chunk_bytes;
  crc_chunks_operation_t chunks = shard_write_chunks(write);
  crc_chunks_state_t state;
  crc_chunks_begin(&state, &chunks);
  int failure = 0;
  for (size_t done = 0; done < write->payload_bytes; done += piece_bytes) {
    size_t bytes = write->payload_bytes - done < piece_bytes ? write->payload_bytes - done
                                                             : piece_bytes;
    crc_chunks_add(&state, write->payload + done, bytes);
    if (failure != 0) continue;
    struct iovec piece = {.iov_base = (void *)(write->payload + done), .iov_len = bytes};
    failure = write_vectors(fd, &piece, 1, (off_t)(write->prefix_bytes + done));
  }
  shard_write_seal(write, state.whole);
  if (failure != 0) return failure;
  struct iovec prefix = {.iov_base = write->prefix, .iov_len = write->prefix_bytes};
  return write_vectors(fd, &prefix, 1, 0);
}

/*
 * Allocates a new file's `bytes` up front, before a buffered write fills them; returns -1 when
 * done or when the filesystem cannot (the write then allocates as it goes), else the errno
 * (ENOSPC: a full bucket is found before any byte is copied). Why: a buffered write into
 * unallocated space reserves delayed allocation page by page (ext4's da_get_block_prep and
 * its extent-status updates), where one fallocate maps the whole file as one unwritten extent.
 * Measured: a C loop creating 256 files of 4 MiB in 512 KiB writes took 0.14 s of system time
 * instead of 0.19; the NBD bench's copy-in rose from 0.48-0.55x nbdkit to 0.59-0.69x (3 runs
 * each, alternated), with 0.94-1.10 s of daemon CPU per GiB instead of 1.02-1.72. Only for a
 * file the caller chose to write through the page cache (volumes), where that was measured, not
 * for one that could not go past it; small files are left to delayed allocation, which packs
 * many of them together.
 */
#define ALLOCATE_AHEAD_BYTES_MIN ((size_t)1 << 20)
static int allocate_whole_file(int fd, size_t bytes) {
  if (bytes < ALLOCATE_AHEAD_BYTES_MIN || fallocate(fd, 0, 0, (off_t)bytes) == 0) return -1;
  /* Other errors (EOPNOTSUPP, EINVAL...) only mean this filesystem cannot allocate ahead. */
  bool is_refused = errno == ENOSPC || errno == EDQUOT || errno == EIO;
  return is_refused ? errno : -1;
}

/* On a pool thread: the whole store of one shard file; sets error_number on failure. */
static void shard_write_run(shard_write_t *write) {
  bool is_checksummed = (write->flags & SHARD_WRITE_CHECKSUM) != 0;
  bool is_direct = (write->flags & SHARD_WRITE_DIRECT) != 0;
  /* Past the page cache nothing is copied: checksums first, as the direct write needs them. */
  bool is_in_pieces = is_checksummed && !is_direct && write->payload_bytes > CHECKSUMMED_PIECE_BYTES;
  if (is_checksummed && !is_in_pieces) shard_write_checksum(write);
  write->error_syscall = "open";
  int fd = open_new_file(write);
  if (fd < 0) {
    write->error_number = errno;
    if (is_in_pieces) shard_write_checksum(write); /* Complete for the retry elsewhere. */
    return;
  }
  int failure = is_direct ? write_direct(fd, write) : -1;
  write->error_syscall = "write";
  if (failure < 0 && !is_direct) {
    failure = allocate_whole_file(fd, write->prefix_bytes + write->payload_bytes);
    if (failure > 0) {
      write->error_syscall = "fallocate";
      if (is_in_pieces) shard_write_checksum(write); /* Complete for the retry elsewhere. */
    }
  }
  if (failure < 0) {
    failure = is_in_pieces ? write_checksummed_in_pieces(fd, write)
                           : write_prefix_and_payload(fd, write);
  }
  if (failure == 0 && (write->flags & SHARD_WRITE_SYNC) != 0 && fsync(fd) != 0) {
    failure = errno;
    write->error_syscall = "fsync";
  }
  /* close can report a failed write-back (NFS, quota): the file is then not trusted either. */
  if (close(fd) != 0 && failure == 0) {
    failure = errno;
    write->error_syscall = "close";
  }
  if (failure != 0) {
    unlink(write->path);
    write->error_number = failure;
  }
}

/*
 * Starts the write-back of the dirty pages of the file at `path` without waiting for it; false
 * when the file cannot be opened or the call fails. sync_file_range needs no write access.
 */
static bool start_writeback(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool is_started = sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0;
  close(fd);
  return is_started;
}

/* The rejection of a failed shard write: Error(syscall) with errno = -errno and syscall. */
static void shard_write_error(napi_env env, const shard_write_t *write, napi_value *result) {
  napi_value message = NULL;
  napi_value number = NULL;
  napi_value syscall = NULL;
  napi_create_string_utf8(env, write->error_syscall, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, result);
  napi_create_int32(env, -write->error_number, &number);
  napi_create_string_utf8(env, write->error_syscall, NAPI_AUTO_LENGTH, &syscall);
  napi_set_named_property(env, *result, "errno", number);
  napi_set_named_property(env, *result, "syscall", syscall);
}

/* ---------------------------------------------------------------------------------------- */
/* Async jobs                                                                                 */
/* ---------------------------------------------------------------------------------------- */

typedef enum job_kind {
  JOB_CRC32C,
  JOB_CRC32C_CHUNKS,
  JOB_CRC32C_VERIFY_CHUNKS,
  JOB_REED_SOLOMON,
  JOB_WRITE_SHARD,
  JOB_START_WRITEBACK,
} job_kind_t;

typedef struct async_job {
  job_kind_t kind;
  bool is_bulk;           /* Runs on the bulk pool, not on the libuv pool. */
  struct async_job *next; /* Bulk pool: the queue or the finished list it is on. */
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buffer_refs[SHARDS_MAX]; /* Pins every JS buffer until complete. */
  int buffer_ref_count;
  rs_operation_t operation; /* JOB_REED_SOLOMON; holds one plan reference. */
  const uint8_t *crc_data;  /* JOB_CRC32C. */
  size_t crc_bytes;
  uint32_t crc_value; /* The seed, then the result; JOB_CRC32C_CHUNKS: the whole CRC. */
  crc_chunks_operation_t crc_chunks; /* JOB_CRC32C_CHUNKS and JOB_CRC32C_VERIFY_CHUNKS. */
  int64_t mismatch_index;            /* JOB_CRC32C_VERIFY_CHUNKS: the result. */
  shard_write_t *shard_write;        /* JOB_WRITE_SHARD; owned by the job. */
  char *writeback_path;              /* JOB_START_WRITEBACK; owned by the job. */
  bool is_writeback_started;         /* JOB_START_WRITEBACK: the result. */
} async_job_t;

/* Releases everything a job holds; on the JS thread. */
static void job_free(napi_env env, async_job_t *job) {
  for (int index = 0; index < job->buffer_ref_count; index++) {
    napi_delete_reference(env, job->buffer_refs[index]);
  }
  plan_release(job->operation.plan);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job->shard_write);
  free(job->writeback_path);
  free(job);
}

static async_job_t *job_create(napi_env env, job_kind_t kind) {
  async_job_t *job = calloc(1, sizeof(async_job_t));
  if (job == NULL) napi_throw_error(env, NULL, "out of memory creating an async job");
  if (job != NULL) job->kind = kind;
  return job;
}

/* Pins `count` JS objects for the job's lifetime. */
static bool job_hold(napi_env env, async_job_t *job, const napi_value *objects, int count) {
  for (int index = 0; index < count; index++) {
    NAPI_CHECK(env,
               napi_create_reference(env, objects[index], 1,
                                     &job->buffer_refs[job->buffer_ref_count]),
               false);
    job->buffer_ref_count++;
  }
  return true;
}

/* On a pool thread: touches only pinned buffers and the referenced plan, never napi. */
static void job_execute(napi_env env, void *data) {
  (void)env;
  async_job_t *job = data;
  switch (job->kind) {
    case JOB_CRC32C:
      job->crc_value = crc32c_compute(job->crc_data, job->crc_bytes, job->crc_value);
      break;
    case JOB_CRC32C_CHUNKS:
      job->crc_value = crc_chunks_run(&job->crc_chunks);
      break;
    case JOB_CRC32C_VERIFY_CHUNKS:
      job->mismatch_index = crc_verify_run(&job->crc_chunks);
      break;
    case JOB_REED_SOLOMON:
      rs_operation_run(&job->operation);
      break;
    case JOB_WRITE_SHARD:
      shard_write_run(job->shard_write);
      break;
    case JOB_START_WRITEBACK:
      job->is_writeback_started = start_writeback(job->writeback_path);
      break;
  }
}

/* Back on the JS thread: settle the promise, then release the job. */
static void job_complete(napi_env env, napi_status status, void *data) {
  async_job_t *job = data;
  napi_value result = NULL;
  napi_value message = NULL;
  if (status != napi_ok) {
    napi_create_string_utf8(env, "shmr_isal: async job did not run", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &result);
    napi_reject_deferred(env, job->deferred, result);
  } else {
    switch (job->kind) {
      case JOB_CRC32C:
      case JOB_CRC32C_CHUNKS:
        napi_create_uint32(env, job->crc_value, &result);
        break;
      case JOB_CRC32C_VERIFY_CHUNKS:
        napi_create_int64(env, job->mismatch_index, &result);
        break;
      case JOB_REED_SOLOMON:
        napi_get_undefined(env, &result);
        break;
      case JOB_WRITE_SHARD:
        if (job->shard_write->error_number != 0) {
          shard_write_error(env, job->shard_write, &result);
          napi_reject_deferred(env, job->deferred, result);
          job_free(env, job);
          return;
        }
        napi_get_undefined(env, &result);
        break;
      case JOB_START_WRITEBACK:
        napi_get_boolean(env, job->is_writeback_started, &result);
        break;
    }
    napi_resolve_deferred(env, job->deferred, result);
  }
  job_free(env, job);
}

/* ---------------------------------------------------------------------------------------- */
/* The bulk pool: the write path's jobs, on threads of their own at a lower CPU priority     */
/* ---------------------------------------------------------------------------------------- */

/*
 * Encoding a block and the chunk tables of its shards (the jobs marked is_bulk) run here, not
 * on the libuv pool. Why: a large erasure-coded write queues several per block, each
 * milliseconds of CPU (a 32 MiB block: one encode, six 8 MiB tables). On the libuv pool they
 * took threads and cores that a small read's work needs, and on a 2-core machine a read then
 * waited for a core behind them. Here they run BULK_NICE_DELTA nice levels below the JS thread
 * (as it was when the pool started: the daemon's first bulk job comes after it raised its own)
 * so the scheduler gives the JS thread, the libuv pool and the reader the CPU first and the
 * bulk jobs what is left, and the libuv pool stays free for reads. Shard file stores
 * (writeShardFileAsync) stay on the libuv pool: mostly waiting for the disk, and niced they
 * lost CPU to other processes on a busy machine (the bench's 1 MiB sequential write, 5 runs
 * each under load 9-12: median 203 -> 171 MB/s).
 *
 * Invariants:
 * - One pool per Node environment (per JS thread), started by its first bulk job; its threads
 *   touch only their job's pinned buffers and plan, never napi (as libuv pool jobs).
 * - A finished job is settled on the JS thread: the threads wake it through one thread-safe
 *   function (once per batch: only when the finished list was empty), and it settles every
 *   finished job in the order they finished.
 * - The thread-safe function keeps the loop alive while jobs are in flight, as queued libuv
 *   work does, and not otherwise.
 * - Teardown (the environment's cleanup hook, registered after the thread-safe function so it
 *   runs before that one's): stop taking jobs, wait for the running ones, free the rest
 *   without settling them (nothing can observe their promises any more).
 */
/* A 32 MiB block's encode and six chunk tables at once, and one more; only 2 cores run them. */
#define BULK_THREADS 8
/* A tenth of the JS thread's scheduler weight (nice 10: 110 against 1024; in the daemon, whose
 * JS thread runs at -5, nice 5: 335 against 3121). */
#define BULK_NICE_DELTA 10
#define BULK_NICE_MAX 19

static napi_value undefined_value(napi_env env);

typedef struct bulk_pool {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  async_job_t *queue_head; /* Waiting, oldest first. */
  async_job_t *queue_tail;
  async_job_t *done_head; /* Finished, not settled yet, oldest first. */
  async_job_t *done_tail;
  bool is_stopping;
  napi_threadsafe_function notify;
  int in_flight; /* Queued and not settled yet; JS thread only. */
  int thread_count;
  int nice;
  pthread_t threads[BULK_THREADS];
} bulk_pool_t;

static void job_list_push(async_job_t **head, async_job_t **tail, async_job_t *job) {
  job->next = NULL;
  if (*tail != NULL) (*tail)->next = job;
  else *head = job;
  *tail = job;
}

/* Frees a job that will never be settled: the environment is going away (no napi calls). */
static void job_discard(async_job_t *job) {
  plan_release(job->operation.plan);
  free(job->shard_write);
  free(job);
}

static void *bulk_thread_main(void *argument) {
  bulk_pool_t *pool = argument;
  /* Linux nice values are per thread; raising one's own needs no privilege. */
  pthread_setname_np(pthread_self(), "shmr-bulk");
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), pool->nice);
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    while (!pool->is_stopping && pool->queue_head == NULL) pthread_cond_wait(&pool->wake, &pool->lock);
    if (pool->is_stopping) break;
    async_job_t *job = pool->queue_head;
    pool->queue_head = job->next;
    if (pool->queue_head == NULL) pool->queue_tail = NULL;
    pthread_mutex_unlock(&pool->lock);
    job_execute(NULL, job);
    pthread_mutex_lock(&pool->lock);
    bool is_first_done = pool->done_head == NULL;
    job_list_push(&pool->done_head, &pool->done_tail, job);
    /* Under the lock: after teardown set is_stopping, no thread calls the function again. */
    if (is_first_done) napi_call_threadsafe_function(pool->notify, NULL, napi_tsfn_nonblocking);
  }
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

/* On the JS thread: settles every finished job. */
static void bulk_settle(napi_env env, napi_value callback, void *context, void *data) {
  (void)callback;
  (void)data;
  bulk_pool_t *pool = context;
  if (env == NULL) return; /* The function is being torn down; the cleanup hook frees jobs. */
  pthread_mutex_lock(&pool->lock);
  async_job_t *job = pool->done_head;
  pool->done_head = NULL;
  pool->done_tail = NULL;
  pthread_mutex_unlock(&pool->lock);
  while (job != NULL) {
    async_job_t *next = job->next;
    pool->in_flight--;
    job_complete(env, napi_ok, job);
    job = next;
  }
  if (pool->in_flight == 0) napi_unref_threadsafe_function(env, pool->notify);
}

/* The environment's cleanup hook: stops the threads, frees what they did not finish. */
static void bulk_pool_stop(void *argument) {
  bulk_pool_t *pool = argument;
  pthread_mutex_lock(&pool->lock);
  pool->is_stopping = true;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  for (int index = 0; index < pool->thread_count; index++) pthread_join(pool->threads[index], NULL);
  for (async_job_t *lists[2] = {pool->queue_head, pool->done_head}, **list = lists; list < lists + 2; list++) {
    while (*list != NULL) {
      async_job_t *next = (*list)->next;
      job_discard(*list);
      *list = next;
    }
  }
  napi_release_threadsafe_function(pool->notify, napi_tsfn_abort);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->lock);
  free(pool);
}

/* Creates the environment's pool and its threads; NULL with an exception set. */
static bulk_pool_t *bulk_pool_start(napi_env env) {
  bulk_pool_t *pool = calloc(1, sizeof(bulk_pool_t));
  if (pool == NULL) {
    napi_throw_error(env, NULL, "shmr_isal: out of memory creating the bulk pool");
    return NULL;
  }
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->wake, NULL);
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
  if (nice == -1 && errno != 0) nice = 0;
  pool->nice = nice + BULK_NICE_DELTA > BULK_NICE_MAX ? BULK_NICE_MAX : nice + BULK_NICE_DELTA;
  napi_value name = NULL;
  if (napi_create_string_utf8(env, "shmr_isal.bulkPool", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, pool, bulk_settle,
                                      &pool->notify) != napi_ok) {
    throw_napi_failure(env);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
    return NULL;
  }
  napi_unref_threadsafe_function(env, pool->notify);
  /* After the function's own hook: hooks run last registered first, so this one first. */
  if (napi_add_env_cleanup_hook(env, bulk_pool_stop, pool) != napi_ok) {
    throw_napi_failure(env);
    napi_release_threadsafe_function(pool->notify, napi_tsfn_abort);
    return NULL; /* The pool leaks with the function: an environment that cannot add a hook. */
  }
  /* Fewer threads than asked (a thread limit) still serve; none is bulk_queue's to report. */
  for (int index = 0; index < BULK_THREADS; index++) {
    if (pthread_create(&pool->threads[index], NULL, bulk_thread_main, pool) != 0) break;
    pool->thread_count++;
  }
  return pool;
}

/* Queues a prepared bulk job and returns its promise; on failure frees it and returns NULL. */
static napi_value bulk_queue(napi_env env, async_job_t *job) {
  addon_state_t *state = NULL;
  napi_value promise = NULL;
  if (napi_get_instance_data(env, (void **)&state) != napi_ok ||
      napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    throw_napi_failure(env);
    job_free(env, job);
    return NULL;
  }
  if (state->bulk == NULL) state->bulk = bulk_pool_start(env);
  bulk_pool_t *pool = state->bulk;
  if (pool == NULL || pool->thread_count == 0) {
    bool is_pending = false; /* bulk_pool_start threw when it returned NULL. */
    napi_is_exception_pending(env, &is_pending);
    if (!is_pending) napi_throw_error(env, NULL, "shmr_isal: cannot create any bulk pool thread");
    napi_reject_deferred(env, job->deferred, undefined_value(env)); /* Frees the deferred. */
    job_free(env, job);
    return NULL;
  }
  if (pool->in_flight++ == 0) napi_ref_threadsafe_function(env, pool->notify);
  pthread_mutex_lock(&pool->lock);
  job_list_push(&pool->queue_head, &pool->queue_tail, job);
  pthread_cond_signal(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  return promise;
}

/* Queues a prepared job and returns its promise; on failure frees it and returns NULL. */
static napi_value job_queue(napi_env env, async_job_t *job, const char *resource_name) {
  napi_value name;
  napi_value promise;
  if (job->is_bulk) return bulk_queue(env, job);
  if (napi_create_string_utf8(env, resource_name, NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, job_execute, job_complete, job, &job->work) !=
          napi_ok ||
      napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    throw_napi_failure(env);
    job_free(env, job);
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    throw_napi_failure(env);
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_reject_deferred(env, job->deferred, undefined); /* Frees the deferred. */
    job_free(env, job);
    return NULL;
  }
  return promise;
}

/* ---------------------------------------------------------------------------------------- */
/* Exported functions                                                                         */
/* ---------------------------------------------------------------------------------------- */

static napi_value undefined_value(napi_env env) {
  napi_value result = NULL;
  napi_get_undefined(env, &result);
  return result;
}

static napi_value export_crc32c(napi_env env, napi_callback_info info) {
  napi_value arguments[2];
  uint8_t *data = NULL;
  size_t bytes = 0;
  uint32_t previous = 0;
  napi_value result = NULL;
  if (!get_arguments(env, info, 2, arguments)) return NULL;
  if (!read_bytes(env, arguments[0], "data", &data, &bytes)) return NULL;
  if (!read_crc_previous(env, arguments[1], &previous)) return NULL;
  NAPI_CHECK(env, napi_create_uint32(env, crc32c_compute(data, bytes, previous), &result), NULL);
  return result;
}

static napi_value export_crc32c_async(napi_env env, napi_callback_info info) {
  napi_value arguments[2];
  uint8_t *data = NULL;
  size_t bytes = 0;
  uint32_t previous = 0;
  if (!get_arguments(env, info, 2, arguments)) return NULL;
  if (!read_bytes(env, arguments[0], "data", &data, &bytes)) return NULL;
  if (!read_crc_previous(env, arguments[1], &previous)) return NULL;
  async_job_t *job = job_create(env, JOB_CRC32C);
  if (job == NULL) return NULL;
  job->crc_data = data;
  job->crc_bytes = bytes;
  job->crc_value = previous;
  if (!job_hold(env, job, &arguments[0], 1)) {
    job_free(env, job);
    return NULL;
  }
  return job_queue(env, job, "shmr_isal.crc32c");
}

static napi_value export_crc32c_chunks(napi_env env, napi_callback_info info) {
  napi_value arguments[3];
  napi_value objects[2];
  crc_chunks_operation_t operation;
  napi_value result = NULL;
  if (!get_arguments(env, info, 3, arguments)) return NULL;
  if (!prepare_crc_chunks(env, arguments, false, &operation, objects)) return NULL;
  NAPI_CHECK(env, napi_create_uint32(env, crc_chunks_run(&operation), &result), NULL);
  return result;
}

static napi_value export_crc32c_verify_chunks(napi_env env, napi_callback_info info) {
  napi_value arguments[4];
  napi_value objects[2];
  crc_chunks_operation_t operation;
  napi_value result = NULL;
  if (!get_arguments(env, info, 4, arguments)) return NULL;
  if (!prepare_crc_chunks(env, arguments, true, &operation, objects)) return NULL;
  NAPI_CHECK(env, napi_create_int64(env, crc_verify_run(&operation), &result), NULL);
  return result;
}

/*
 * preadVerifyChunksNow(data, chunkBytes, table, firstChunk, fd, position): the read fast path.
 * Fills all of `data` from `fd` at `position` with preadv2(RWF_NOWAIT), which copies from the
 * page cache and never waits for the disk, then verifies it like crc32cVerifyChunks. Returns
 * -1 when every byte was read and matched, the index of the first bad chunk, or
 * PREAD_NOT_CACHED when the bytes could not all be read without waiting (not cached, short
 * file, any error): the caller then takes its thread-pool path, which reads, waits and reports.
 * On the JS thread: one call instead of a thread-pool round trip for data already in memory.
 */
#define PREAD_NOT_CACHED (-2)

static napi_value export_pread_verify_chunks_now(napi_env env, napi_callback_info info) {
  napi_value arguments[6];
  napi_value objects[2];
  crc_chunks_operation_t operation;
  int fd = 0;
  size_t position = 0;
  napi_value result = NULL;
  if (!get_arguments(env, info, 6, arguments)) return NULL;
  if (!prepare_crc_chunks(env, arguments, true, &operation, objects)) return NULL;
  if (!read_integer(env, arguments[4], "fd", 0, INT_MAX, &fd)) return NULL;
  if (!read_safe_index(env, arguments[5], "position", &position)) return NULL;
  int64_t outcome = -1;
  size_t done = 0;
  while (done < operation.data_bytes) {
    struct iovec vector = {.iov_base = (uint8_t *)operation.data + done,
                           .iov_len = operation.data_bytes - done};
    ssize_t bytes = preadv2(fd, &vector, 1, (off_t)(position + done), RWF_NOWAIT);
    if (bytes <= 0) break; /* EAGAIN (not cached), end of file or an error */
    done += (size_t)bytes;
  }
  if (done < operation.data_bytes) outcome = PREAD_NOT_CACHED;
  else outcome = crc_verify_run(&operation);
  NAPI_CHECK(env, napi_create_int64(env, outcome, &result), NULL);
  return result;
}

/*
 * readShardVerifyAsync(path, prefix, data, position, chunkBytes, table, firstChunk): a shard
 * read that must wait for the disk, as one pool job: open, read the prefix (when `prefix` is not
 * empty: file bytes [0, prefix.length)) and `data` (file bytes from `position`), close, verify
 * `data` like crc32cVerifyChunks. `table` may lie in `prefix` (a prefix read by this very job:
 * the caller then checks the prefix's own checksums before it trusts the answer). Resolves to -1
 * when everything was read and matched, the index of the first bad chunk, or READ_SHORT when
 * the file ended early; rejects with an Error whose `code` is the errno name when open or read
 * failed.
 *
 * Why one job: a cold read through the descriptor cache took four pool round trips per shard
 * (open, prefix, payload, checksum), each waking the JS thread. And why O_DIRECT: a cold
 * sequential read otherwise pays the page cache twice (the backing file's and the mount's), so
 * when `data` and `position` are page aligned and the range is not all in the page cache
 * (cachestat), the payload is read past it, straight into `data`. A range that is cached, or a
 * filesystem that refuses O_DIRECT, is read through the page cache as before.
 */
#define READ_SHORT (-2)
#define DIRECT_ALIGN_BYTES 4096
#ifndef SYS_cachestat
#define SYS_cachestat 451 /* The same number on every architecture (Linux 6.5). */
#endif

/* struct cachestat_range and struct cachestat of <linux/mman.h>, absent from older headers. */
typedef struct {
  uint64_t offset;
  uint64_t length;
} cache_range_t;
typedef struct {
  uint64_t cached;
  uint64_t dirty;
  uint64_t writeback;
  uint64_t evicted;
  uint64_t recently_evicted;
} cache_state_t;

/* Set once cachestat answered ENOSYS (kernel before 6.5): then every read may go direct. */
static atomic_bool has_no_cachestat = false;

typedef struct read_job {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref refs[3]; /* prefix, data and table, pinned until complete. */
  int ref_count;
  char *path;
  uint8_t *prefix;
  size_t prefix_bytes;
  size_t position;
  crc_chunks_operation_t verify; /* .data and .data_bytes: where the payload range goes. */
  int64_t outcome;
  int error_number; /* 0, or the errno of `failed_call`. */
  const char *failed_call;
} read_job_t;

static bool is_direct_aligned(const uint8_t *data, size_t bytes, size_t position) {
  return (uintptr_t)data % DIRECT_ALIGN_BYTES == 0 && bytes % DIRECT_ALIGN_BYTES == 0 &&
         position % DIRECT_ALIGN_BYTES == 0 && bytes > 0;
}

/* Whether every page of [position, position + bytes) of fd is in the page cache. */
static bool is_range_cached(int fd, size_t position, size_t bytes) {
  if (atomic_load(&has_no_cachestat)) return false;
  cache_range_t range = {.offset = position, .length = bytes};
  cache_state_t state;
  if (syscall(SYS_cachestat, fd, &range, &state, 0) != 0) {
    if (errno == ENOSYS) atomic_store(&has_no_cachestat, true);
    return false;
  }
  size_t page_bytes = (size_t)sysconf(_SC_PAGESIZE);
  return state.cached >= (bytes + page_bytes - 1) / page_bytes;
}

/* Reads all of `vectors` from `position` on; the bytes read (fewer at end of file) or -1. */
static ssize_t read_vectors(int fd, struct iovec *vectors, int count, size_t position) {
  size_t done = 0;
  while (count > 0) {
    ssize_t bytes = preadv(fd, vectors, count, (off_t)(position + done));
    if (bytes < 0 && errno == EINTR) continue;
    if (bytes < 0) return -1;
    if (bytes == 0) break;
    done += (size_t)bytes;
    skip_vectors(&vectors, &count, (size_t)bytes);
  }
  return (ssize_t)done;
}

/* Reads `bytes` at `position` into `target`; false with errno set, or with errno 0 if short. */
static bool read_exactly(int fd, uint8_t *target, size_t bytes, size_t position) {
  if (bytes == 0) return true;
  struct iovec vector = {.iov_base = target, .iov_len = bytes};
  ssize_t done = read_vectors(fd, &vector, 1, position);
  if (done >= 0 && (size_t)done < bytes) errno = 0;
  return done >= 0 && (size_t)done == bytes;
}

/*
 * Prefix and payload through O_DIRECT: the prefix through an aligned bounce buffer (the
 * caller's is not aligned; it is a few KiB), both in one call when they are adjacent.
 */
static bool read_direct(read_job_t *job, int fd) {
  uint8_t *bounce = NULL;
  if (job->prefix_bytes > 0 &&
      posix_memalign((void **)&bounce, DIRECT_ALIGN_BYTES, job->prefix_bytes) != 0) {
    errno = ENOMEM;
    return false;
  }
  bool is_read;
  if (bounce != NULL && job->position == job->prefix_bytes) {
    struct iovec vectors[2] = {{.iov_base = bounce, .iov_len = job->prefix_bytes},
                               {.iov_base = (void *)job->verify.data, .iov_len = job->verify.data_bytes}};
    size_t wanted = job->prefix_bytes + job->verify.data_bytes;
    ssize_t done = read_vectors(fd, vectors, 2, 0);
    if (done >= 0 && (size_t)done < wanted) errno = 0;
    is_read = done >= 0 && (size_t)done == wanted;
  } else {
    is_read = (bounce == NULL || read_exactly(fd, bounce, job->prefix_bytes, 0)) &&
              read_exactly(fd, (uint8_t *)job->verify.data, job->verify.data_bytes, job->position);
  }
  if (is_read && bounce != NULL) memcpy(job->prefix, bounce, job->prefix_bytes);
  int saved = errno;
  free(bounce);
  errno = saved;
  return is_read;
}

/* On a pool thread: touches only the pinned buffers and the job's own copy of the path. */
static void read_job_execute(napi_env env, void *data) {
  (void)env;
  read_job_t *job = data;
  int fd = open(job->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job->error_number = errno;
    job->failed_call = "open";
    return;
  }
  bool is_direct = is_direct_aligned(job->verify.data, job->verify.data_bytes, job->position) &&
                   !is_range_cached(fd, job->position, job->verify.data_bytes) &&
                   fcntl(fd, F_SETFL, O_DIRECT) == 0;
  bool is_read = is_direct && read_direct(job, fd);
  /* EINVAL: the filesystem takes O_DIRECT at open but not for this read; read it buffered. */
  if (is_direct && !is_read && errno == EINVAL && fcntl(fd, F_SETFL, 0) == 0) is_direct = false;
  if (!is_direct) {
    is_read = read_exactly(fd, job->prefix, job->prefix_bytes, 0) &&
              read_exactly(fd, (uint8_t *)job->verify.data, job->verify.data_bytes, job->position);
  }
  int read_error = is_read ? 0 : errno;
  close(fd);
  if (is_read) {
    job->outcome = crc_verify_run(&job->verify);
  } else if (read_error == 0) {
    job->outcome = READ_SHORT;
  } else {
    job->error_number = read_error;
    job->failed_call = "read";
  }
}

static void read_job_free(napi_env env, read_job_t *job) {
  for (int index = 0; index < job->ref_count; index++) napi_delete_reference(env, job->refs[index]);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job->path);
  free(job);
}

/* Back on the JS thread: -1, a chunk index or READ_SHORT; or an Error with the errno's code. */
static void read_job_complete(napi_env env, napi_status status, void *data) {
  read_job_t *job = data;
  napi_value result = NULL;
  if (status != napi_ok || job->error_number != 0) {
    char message[MESSAGE_BYTES_MAX];
    const char *code = status != napi_ok ? "EIO" : strerrorname_np(job->error_number);
    if (status != napi_ok) {
      snprintf(message, sizeof message, "shmr_isal: read job did not run");
    } else {
      snprintf(message, sizeof message, "%s %s: %s", job->failed_call, job->path,
               strerror(job->error_number));
    }
    napi_value code_value = NULL;
    napi_value message_value = NULL;
    napi_create_string_utf8(env, code != NULL ? code : "EIO", NAPI_AUTO_LENGTH, &code_value);
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value);
    napi_create_error(env, code_value, message_value, &result);
    napi_reject_deferred(env, job->deferred, result);
  } else {
    napi_create_int64(env, job->outcome, &result);
    napi_resolve_deferred(env, job->deferred, result);
  }
  read_job_free(env, job);
}

/* The path argument, copied for the pool thread (malloc'd; the caller frees it). */
static char *read_path(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    throw_type_error(env, "path must be a string");
    return NULL;
  }
  char *path = malloc(length + 1);
  if (path == NULL) {
    napi_throw_error(env, NULL, "out of memory copying a path");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, value, path, length + 1, &length) != napi_ok) {
    free(path);
    throw_napi_failure(env);
    return NULL;
  }
  return path;
}

static napi_value export_read_shard_verify_async(napi_env env, napi_callback_info info) {
  napi_value arguments[7];
  if (!get_arguments(env, info, 7, arguments)) return NULL;
  /* [data, chunkBytes, table, firstChunk] in the order prepare_crc_chunks reads them. */
  napi_value check_arguments[4] = {arguments[2], arguments[4], arguments[5], arguments[6]};
  napi_value objects[2];
  crc_chunks_operation_t verify;
  uint8_t *prefix = NULL;
  size_t prefix_bytes = 0;
  size_t position = 0;
  if (!prepare_crc_chunks(env, check_arguments, true, &verify, objects)) return NULL;
  if (!read_bytes(env, arguments[1], "prefix", &prefix, &prefix_bytes)) return NULL;
  if (!read_safe_index(env, arguments[3], "position", &position)) return NULL;
  if (prefix_bytes > 0 && spans_overlap(prefix, prefix_bytes, verify.data, verify.data_bytes)) {
    throw_range_error(env, "prefix overlaps data: they are read from different file offsets");
    return NULL;
  }
  read_job_t *job = calloc(1, sizeof(read_job_t));
  if (job == NULL) {
    napi_throw_error(env, NULL, "out of memory creating a read job");
    return NULL;
  }
  job->path = read_path(env, arguments[0]);
  job->prefix = prefix;
  job->prefix_bytes = prefix_bytes;
  job->position = position;
  job->verify = verify;
  napi_value pinned[3] = {arguments[1], objects[0], objects[1]};
  for (int index = 0; job->path != NULL && index < 3; index++) {
    if (napi_create_reference(env, pinned[index], 1, &job->refs[index]) != napi_ok) break;
    job->ref_count++;
  }
  napi_value name = NULL;
  napi_value promise = NULL;
  if (job->path == NULL || job->ref_count < 3 ||
      napi_create_string_utf8(env, "shmr_isal.readShardVerify", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, read_job_execute, read_job_complete, job, &job->work) !=
          napi_ok ||
      napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    if (job->path != NULL) throw_napi_failure(env);
    read_job_free(env, job);
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    throw_napi_failure(env);
    napi_value undefined = undefined_value(env);
    napi_reject_deferred(env, job->deferred, undefined);
    read_job_free(env, job);
    return NULL;
  }
  return promise;
}

/*
 * allocHugePages(bytes) -> ArrayBuffer: `bytes` of zeroed memory that starts on a 2 MiB
 * boundary, advised for transparent huge pages (madvise MADV_HUGEPAGE; the kernel may still
 * use small pages). For long-lived I/O buffers such as the READ reply slab: each O_DIRECT read
 * and each FUSE reply pins the pages it touches, one small page at a time (gup: about a tenth
 * of a cold sequential read's CPU), a huge page once. Freed when the ArrayBuffer is collected.
 */

static void mapping_free(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/*
 * An ArrayBuffer of the first `bytes` of a mapping of `mapped_bytes`, which `finalize` (given
 * mapped_bytes as its hint) unmaps when collected; unmapped at once if that cannot be made.
 */
static napi_value wrap_mapping(napi_env env, void *start, size_t bytes, size_t mapped_bytes,
                               napi_finalize finalize) {
  napi_value result = NULL;
  if (napi_create_external_arraybuffer(env, start, bytes, finalize, (void *)(uintptr_t)mapped_bytes,
                                       &result) != napi_ok) {
    munmap(start, mapped_bytes);
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

static napi_value export_alloc_huge_pages(napi_env env, napi_callback_info info) {
  napi_value arguments[1];
  size_t bytes = 0;
  if (!get_arguments(env, info, 1, arguments)) return NULL;
  if (!read_safe_index(env, arguments[0], "bytes", &bytes)) return NULL;
  if (bytes == 0 || bytes % HUGE_PAGE_BYTES != 0) {
    throw_range_error(env, "bytes must be a positive multiple of %zu, got %zu", HUGE_PAGE_BYTES, bytes);
    return NULL;
  }
  /* Map one huge page more, then trim to a 2 MiB-aligned start. */
  size_t mapped_bytes = bytes + HUGE_PAGE_BYTES;
  uint8_t *mapped = mmap(NULL, mapped_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) {
    napi_throw_error(env, "ENOMEM", "allocHugePages: mmap failed");
    return NULL;
  }
  uint8_t *start = (uint8_t *)(((uintptr_t)mapped + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1));
  if (start > mapped) munmap(mapped, (size_t)(start - mapped));
  size_t tail_bytes = (size_t)(mapped + mapped_bytes - (start + bytes));
  if (tail_bytes > 0) munmap(start + bytes, tail_bytes);
  madvise(start, bytes, MADV_HUGEPAGE); /* Advice only: small pages work as well, slower. */
  return wrap_mapping(env, start, bytes, bytes, mapping_free);
}

/*
 * The mapping of an allocPages buffer, given back to the system and to V8's count of external
 * memory (finalizers of external ArrayBuffers run on the JS thread, where napi may be used).
 */
static void counted_pages_free(napi_env env, void *data, void *hint) {
  size_t mapped_bytes = (size_t)(uintptr_t)hint;
  munmap(data, mapped_bytes);
  int64_t total = 0;
  napi_adjust_external_memory(env, -(int64_t)mapped_bytes, &total);
}

/*
 * allocPages(bytes): zeroed memory of its own pages (page-aligned), unmapped when collected.
 * Counted as external memory, as V8 counts the memory of its own ArrayBuffers: cache blocks
 * come and go by the megabyte, and uncounted ones would wait for a collection V8 sees no need
 * for while the process grows.
 */
static napi_value export_alloc_pages(napi_env env, napi_callback_info info) {
  napi_value arguments[1];
  size_t bytes = 0;
  if (!get_arguments(env, info, 1, arguments)) return NULL;
  if (!read_safe_index(env, arguments[0], "bytes", &bytes)) return NULL;
  if (bytes == 0) {
    throw_range_error(env, "bytes must be positive, got 0");
    return NULL;
  }
  size_t page_bytes = (size_t)sysconf(_SC_PAGESIZE);
  size_t mapped_bytes = (bytes + page_bytes - 1) / page_bytes * page_bytes;
  void *mapped = mmap(NULL, mapped_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) {
    napi_throw_error(env, "ENOMEM", "allocPages: mmap failed");
    return NULL;
  }
  napi_value result = wrap_mapping(env, mapped, bytes, mapped_bytes, counted_pages_free);
  if (result == NULL) return NULL;
  int64_t total = 0;
  napi_adjust_external_memory(env, (int64_t)mapped_bytes, &total);
  return result;
}

/* The async half of crc32cChunksAsync/crc32cVerifyChunksAsync: pin data and table, queue. */
static napi_value queue_crc_chunks_job(napi_env env, job_kind_t kind,
                                       const crc_chunks_operation_t *operation,
                                       const napi_value *objects, const char *resource_name) {
  async_job_t *job = job_create(env, kind);
  if (job == NULL) return NULL;
  /* Chunk tables are made for shards being written; verifying is a reader waiting. */
  job->is_bulk = kind == JOB_CRC32C_CHUNKS;
  job->crc_chunks = *operation;
  if (!job_hold(env, job, objects, 2)) {
    job_free(env, job);
    return NULL;
  }
  return job_queue(env, job, resource_name);
}

static napi_value export_crc32c_chunks_async(napi_env env, napi_callback_info info) {
  napi_value arguments[3];
  napi_value objects[2];
  crc_chunks_operation_t operation;
  if (!get_arguments(env, info, 3, arguments)) return NULL;
  if (!prepare_crc_chunks(env, arguments, false, &operation, objects)) return NULL;
  return queue_crc_chunks_job(env, JOB_CRC32C_CHUNKS, &operation, objects,
                              "shmr_isal.crc32cChunks");
}

static napi_value export_crc32c_verify_chunks_async(napi_env env, napi_callback_info info) {
  napi_value arguments[4];
  napi_value objects[2];
  crc_chunks_operation_t operation;
  if (!get_arguments(env, info, 4, arguments)) return NULL;
  if (!prepare_crc_chunks(env, arguments, true, &operation, objects)) return NULL;
  return queue_crc_chunks_job(env, JOB_CRC32C_VERIFY_CHUNKS, &operation, objects,
                              "shmr_isal.crc32cVerifyChunks");
}

static napi_value export_rs_prepare(napi_env env, napi_callback_info info) {
  napi_value arguments[2];
  int k = 0;
  int p = 0;
  if (!get_arguments(env, info, 2, arguments)) return NULL;
  if (!read_geometry(env, arguments, &k, &p)) return NULL;
  if (p > 0 && cache_get(env, k, p, low_bits_mask(k)) == NULL) return NULL;
  return undefined_value(env);
}

static napi_value export_rs_encode(napi_env env, napi_callback_info info) {
  shard_set_t set;
  rs_operation_t operation;
  int shard_count = 0;
  if (!prepare_encode(env, info, &set, &operation, &shard_count)) return NULL;
  rs_operation_run(&operation);
  return undefined_value(env);
}

static napi_value export_rs_reconstruct(napi_env env, napi_callback_info info) {
  shard_set_t set;
  rs_operation_t operation;
  int shard_count = 0;
  if (!prepare_reconstruct(env, info, &set, &operation, &shard_count)) return NULL;
  rs_operation_run(&operation);
  return undefined_value(env);
}

/* The async half of rsEncodeAsync/rsReconstructAsync: pin, reference the plan, queue. */
static napi_value queue_rs_job(napi_env env, const shard_set_t *set,
                               const rs_operation_t *operation, int shard_count,
                               const char *resource_name) {
  async_job_t *job = job_create(env, JOB_REED_SOLOMON);
  if (job == NULL) return NULL;
  /* Encoding is the write path's; a reconstruct is a reader waiting: the libuv pool. */
  job->is_bulk = strcmp(resource_name, "shmr_isal.rsEncode") == 0;
  job->operation = *operation;
  if (job->operation.plan != NULL) job->operation.plan->reference_count++;
  if (!job_hold(env, job, set->objects, shard_count)) {
    job_free(env, job);
    return NULL;
  }
  return job_queue(env, job, resource_name);
}

static napi_value export_rs_encode_async(napi_env env, napi_callback_info info) {
  shard_set_t set;
  rs_operation_t operation;
  int shard_count = 0;
  if (!prepare_encode(env, info, &set, &operation, &shard_count)) return NULL;
  return queue_rs_job(env, &set, &operation, shard_count, "shmr_isal.rsEncode");
}

static napi_value export_rs_reconstruct_async(napi_env env, napi_callback_info info) {
  shard_set_t set;
  rs_operation_t operation;
  int shard_count = 0;
  if (!prepare_reconstruct(env, info, &set, &operation, &shard_count)) return NULL;
  return queue_rs_job(env, &set, &operation, shard_count, "shmr_isal.rsReconstruct");
}

/* An offset argument of writeShardFileAsync: 4 bytes at it lie inside the prefix. */
static bool read_prefix_offset(napi_env env, napi_value value, const char *name,
                               size_t prefix_bytes, size_t *result) {
  if (!read_safe_index(env, value, name, result)) return false;
  if (*result + 4 > prefix_bytes) {
    throw_range_error(env, "%s %zu leaves no 4 bytes in a prefix of %zu", name, *result,
                      prefix_bytes);
    return false;
  }
  return true;
}

/* Validates the arguments of writeShardFileAsync into `write` (whose path is not set). */
static bool prepare_shard_write(napi_env env, const napi_value *arguments, shard_write_t *write) {
  int chunk_bytes = 0;
  if (!read_bytes(env, arguments[1], "prefix", &write->prefix, &write->prefix_bytes)) return false;
  uint8_t *payload = NULL;
  if (!read_bytes(env, arguments[2], "payload", &payload, &write->payload_bytes)) return false;
  write->payload = payload;
  if (!read_integer(env, arguments[3], "chunkBytes", 1, INT_MAX, &chunk_bytes)) return false;
  write->chunk_bytes = (size_t)chunk_bytes;
  size_t prefix_bytes = write->prefix_bytes;
  if (!read_prefix_offset(env, arguments[4], "tableStart", prefix_bytes, &write->table_start) ||
      !read_prefix_offset(env, arguments[5], "payloadChecksumAt", prefix_bytes,
                          &write->payload_checksum_at) ||
      !read_prefix_offset(env, arguments[6], "tableChecksumAt", prefix_bytes,
                          &write->table_checksum_at) ||
      !read_prefix_offset(env, arguments[7], "headerChecksumAt", prefix_bytes,
                          &write->header_checksum_at) ||
      !read_integer(env, arguments[8], "flags", 0, SHARD_WRITE_FLAGS_ALL, &write->flags)) {
    return false;
  }
  size_t table_end = write->table_start + 4 * crc_chunk_count(write->payload_bytes,
                                                              write->chunk_bytes);
  if (table_end > prefix_bytes) {
    throw_range_error(env, "prefix has %zu bytes, the chunk table ends at %zu", prefix_bytes,
                      table_end);
    return false;
  }
  /* The header checksum covers the other two, and none lies in the table it is computed of. */
  bool is_header_last = write->payload_checksum_at + 4 <= write->header_checksum_at &&
                        write->table_checksum_at + 4 <= write->header_checksum_at;
  if (!is_header_last || write->header_checksum_at + 4 > write->table_start) {
    throw_range_error(env, "checksum fields must lie before the chunk table, the header "
                           "checksum after the other two");
    return false;
  }
  if (spans_overlap(write->prefix, prefix_bytes, write->payload, write->payload_bytes)) {
    throw_range_error(env, "prefix overlaps payload");
    return false;
  }
  return true;
}

/* The UTF-8 length of a path argument; false (with a JS error thrown) unless 1 to PATH_MAX - 1. */
static bool read_path_bytes(napi_env env, napi_value value, size_t *bytes) {
  if (napi_get_value_string_utf8(env, value, NULL, 0, bytes) != napi_ok) {
    throw_type_error(env, "path must be a string");
    return false;
  }
  if (*bytes == 0 || *bytes >= PATH_MAX) {
    throw_range_error(env, "path must have 1 to %d bytes, got %zu", PATH_MAX - 1, *bytes);
    return false;
  }
  return true;
}

static napi_value export_write_shard_file_async(napi_env env, napi_callback_info info) {
  napi_value arguments[9];
  if (!get_arguments(env, info, 9, arguments)) return NULL;
  size_t path_bytes = 0;
  if (!read_path_bytes(env, arguments[0], &path_bytes)) return NULL;
  shard_write_t prepared = {0};
  if (!prepare_shard_write(env, arguments, &prepared)) return NULL;
  async_job_t *job = job_create(env, JOB_WRITE_SHARD);
  if (job == NULL) return NULL;
  job->shard_write = malloc(sizeof(shard_write_t) + path_bytes + 1);
  if (job->shard_write == NULL) {
    job_free(env, job);
    napi_throw_error(env, NULL, "out of memory creating a shard write");
    return NULL;
  }
  *job->shard_write = prepared;
  napi_get_value_string_utf8(env, arguments[0], job->shard_write->path, path_bytes + 1, NULL);
  napi_value objects[2] = {arguments[1], arguments[2]};
  if (!job_hold(env, job, objects, 2)) {
    job_free(env, job);
    return NULL;
  }
  return job_queue(env, job, "shmr_isal.writeShardFile");
}

/*
 * startWritebackAsync(path) -> Promise<boolean>: one pool job that starts the write-back of a
 * file's dirty pages (sync_file_range SYNC_FILE_RANGE_WRITE) and does not wait for it. False
 * when the file cannot be opened (gone: replaced or deleted meanwhile) or the call fails: a
 * hint only, as the fsync that makes the file durable tells every failure.
 */
static napi_value export_start_writeback_async(napi_env env, napi_callback_info info) {
  napi_value arguments[1];
  if (!get_arguments(env, info, 1, arguments)) return NULL;
  size_t path_bytes = 0;
  if (!read_path_bytes(env, arguments[0], &path_bytes)) return NULL;
  async_job_t *job = job_create(env, JOB_START_WRITEBACK);
  if (job == NULL) return NULL;
  job->writeback_path = malloc(path_bytes + 1);
  if (job->writeback_path == NULL) {
    job_free(env, job);
    napi_throw_error(env, NULL, "out of memory starting a write-back");
    return NULL;
  }
  napi_get_value_string_utf8(env, arguments[0], job->writeback_path, path_bytes + 1, NULL);
  return job_queue(env, job, "shmr_isal.startWriteback");
}

/* ---------------------------------------------------------------------------------------- */
/* The calling thread's scheduler slice                                                      */
/* ---------------------------------------------------------------------------------------- */

/*
 * setThreadSlice(nanoseconds) -> boolean: asks the kernel for this (the calling) thread's
 * time slice under the fair scheduler (sched_setattr's sched_runtime, honoured from Linux 6.12
 * on: EEVDF). A task with a shorter slice than the one running gets an earlier deadline when it
 * wakes, and preempts it (PREEMPT_SHORT), so a thread that runs in short bursts, such as one
 * answering requests, does not wait for the end of a busy thread's slice. Its share of the CPU
 * is its weight's (nice), as before. Needs no privilege. True when the kernel took the slice;
 * false when it ignores slices (older kernels) or the thread is not under the fair scheduler.
 * Throws a RangeError outside [SLICE_NS_MIN, SLICE_NS_MAX] (the kernel's clamp), an Error
 * naming the call and errno when a call fails.
 */
#define SLICE_NS_MIN 100000
#define SLICE_NS_MAX 100000000

/* The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER1), under our own name: newer C
 * libraries declare theirs in <sched.h>. */
typedef struct shmr_sched_attr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
} shmr_sched_attr_t;

static bool get_thread_sched_attr(napi_env env, shmr_sched_attr_t *attr) {
  memset(attr, 0, sizeof *attr);
  if (syscall(SYS_sched_getattr, 0, attr, (unsigned)sizeof *attr, 0) == 0) return true;
  char message[MESSAGE_BYTES_MAX];
  snprintf(message, sizeof message, "sched_getattr: %s", strerror(errno));
  napi_throw_error(env, NULL, message);
  return false;
}

static napi_value export_set_thread_slice(napi_env env, napi_callback_info info) {
  napi_value arguments[1];
  int slice_ns = 0;
  if (!get_arguments(env, info, 1, arguments)) return NULL;
  if (!read_integer(env, arguments[0], "nanoseconds", SLICE_NS_MIN, SLICE_NS_MAX, &slice_ns)) return NULL;
  shmr_sched_attr_t attr;
  if (!get_thread_sched_attr(env, &attr)) return NULL;
  bool is_fair = attr.sched_policy == SCHED_OTHER || attr.sched_policy == SCHED_BATCH;
  napi_value result = NULL;
  if (!is_fair) {
    NAPI_CHECK(env, napi_get_boolean(env, false, &result), NULL);
    return result;
  }
  /* The policy and nice value sched_getattr gave, with the slice. */
  attr.size = sizeof attr;
  attr.sched_flags = 0;
  attr.sched_runtime = (uint64_t)slice_ns;
  if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
    char message[MESSAGE_BYTES_MAX];
    snprintf(message, sizeof message, "sched_setattr: %s", strerror(errno));
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  if (!get_thread_sched_attr(env, &attr)) return NULL;
  NAPI_CHECK(env, napi_get_boolean(env, attr.sched_runtime == (uint64_t)slice_ns, &result), NULL);
  return result;
}

/* ---------------------------------------------------------------------------------------- */
/* Load-time self-test and registration                                                      */
/* ---------------------------------------------------------------------------------------- */

/* ISA-L's Cauchy matrix must be 1 / (i xor j) by our own arithmetic, and its SIMD encode must
 * equal our scalar loop: either fails if a symbol ISA-L uses was interposed (see the top). */
static const char *self_test(void) {
  enum { K = 5, P = 3, BYTES = 67 }; /* 67: past ISAL_SHARD_BYTES_MIN, with an odd tail. */
  uint8_t matrix[(K + P) * K];
  gf_gen_cauchy1_matrix(matrix, K + P, K);
  for (int row = K; row < K + P; row++) {
    for (int column = 0; column < K; column++) {
      if (matrix[row * K + column] != shmr_gf_inv((uint8_t)(row ^ column))) {
        return "gf_gen_cauchy1_matrix disagrees with our GF(2^8) arithmetic";
      }
    }
  }
  uint8_t bytes[K + 2 * P][BYTES];
  for (int shard = 0; shard < K; shard++) {
    for (int offset = 0; offset < BYTES; offset++) {
      bytes[shard][offset] = (uint8_t)(shard * 131 + offset * 7 + 1);
    }
  }
  const char *error = NULL;
  coding_plan_t *plan = plan_build(K, P, low_bits_mask(K), &error);
  if (plan == NULL) return error;
  uint8_t *sources[K];
  uint8_t *simd_targets[P];
  uint8_t *scalar_targets[P];
  for (int shard = 0; shard < K; shard++) sources[shard] = bytes[shard];
  for (int shard = 0; shard < P; shard++) {
    simd_targets[shard] = bytes[K + shard];
    scalar_targets[shard] = bytes[K + P + shard];
  }
  ec_encode_data(BYTES, K, P, plan->gf_tables, sources, simd_targets);
  shmr_gf_apply_scalar(plan->coefficients, K, P, BYTES, sources, scalar_targets);
  bool is_equal = memcmp(bytes[K], bytes[K + P], (size_t)(P * BYTES)) == 0;
  plan_release(plan);
  if (!is_equal) return "ec_encode_data disagrees with our GF(2^8) arithmetic";
  uint8_t check[] = "123456789";
  if (crc32c_compute(check, 9, 0) != 0xe3069283u) return "crc32_iscsi check value is wrong";
  /* The combine arithmetic: chunks of 2 (many chunks and a short last one) and of 5. */
  uint8_t table[4 * 5];
  for (size_t chunk_bytes = 2; chunk_bytes <= 5; chunk_bytes += 3) {
    crc_chunks_operation_t chunks = {
        .data = check, .data_bytes = 9, .chunk_bytes = chunk_bytes, .table = table};
    if (crc_chunks_run(&chunks) != 0xe3069283u) return "chunked CRC32C combine is wrong";
    bool is_first_entry_right = load_le32(table) == crc32c_compute(check, chunk_bytes, 0);
    if (!is_first_entry_right || crc_verify_run(&chunks) != -1) {
      return "chunked CRC32C table is wrong";
    }
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  pthread_once(&gf_tables_once, shmr_gf_tables_init);
  pthread_once(&crc_x_powers_once, shmr_crc_x_powers_init);
  const char *failure = self_test();
  if (failure != NULL) {
    char message[MESSAGE_BYTES_MAX];
    snprintf(message, sizeof message, "shmr_isal self-test failed: %s", failure);
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  addon_state_t *state = calloc(1, sizeof(addon_state_t));
  if (state == NULL) {
    napi_throw_error(env, NULL, "shmr_isal: out of memory");
    return NULL;
  }
  if (napi_set_instance_data(env, state, addon_state_finalize, NULL) != napi_ok) {
    free(state);
    throw_napi_failure(env);
    return NULL;
  }
  napi_property_descriptor properties[] = {
      {"crc32c", NULL, export_crc32c, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc32cAsync", NULL, export_crc32c_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc32cChunks", NULL, export_crc32c_chunks, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc32cChunksAsync", NULL, export_crc32c_chunks_async, NULL, NULL, NULL, napi_enumerable,
       NULL},
      {"crc32cVerifyChunks", NULL, export_crc32c_verify_chunks, NULL, NULL, NULL,
       napi_enumerable, NULL},
      {"crc32cVerifyChunksAsync", NULL, export_crc32c_verify_chunks_async, NULL, NULL, NULL,
       napi_enumerable, NULL},
      {"preadVerifyChunksNow", NULL, export_pread_verify_chunks_now, NULL, NULL, NULL,
       napi_enumerable, NULL},
      {"readShardVerifyAsync", NULL, export_read_shard_verify_async, NULL, NULL, NULL,
       napi_enumerable, NULL},
      {"allocHugePages", NULL, export_alloc_huge_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreadSlice", NULL, export_set_thread_slice, NULL, NULL, NULL, napi_enumerable, NULL},
      {"allocPages", NULL, export_alloc_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rsPrepare", NULL, export_rs_prepare, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rsEncode", NULL, export_rs_encode, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rsEncodeAsync", NULL, export_rs_encode_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rsReconstruct", NULL, export_rs_reconstruct, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rsReconstructAsync", NULL, export_rs_reconstruct_async, NULL, NULL, NULL,
       napi_enumerable, NULL},
      {"writeShardFileAsync", NULL, export_write_shard_file_async, NULL, NULL, NULL,
       napi_enumerable, NULL},
      {"startWritebackAsync", NULL, export_start_writeback_async, NULL, NULL, NULL,
       napi_enumerable, NULL},
  };
  NAPI_CHECK(env,
             napi_define_properties(env, exports, sizeof properties / sizeof properties[0],
                                    properties),
             NULL);
  return exports;
}
