/*
 * erasure-baseline: plain ISA-L from C, the yardstick for the shmr_isal addon in
 * userspace/bench/erasure.ts, which compiles this file (cc -O2 ... -lisal) and parses its
 * output.
 *
 * Usage:
 *   erasure-baseline rs <seconds> <k> <p> <shard_bytes>   encode, then reconstruct of the first
 *                                                         min(2, p) data shards
 *   erasure-baseline crc <seconds> <bytes>                crc32_iscsi over one buffer
 *
 * Output, one result per line, fields separated by spaces (what erasure.ts parses):
 *   encode <k> <p> <shard_bytes> <data_bytes_per_second> <ns_per_call>
 *   reconstruct <k> <p> <shard_bytes> <data_bytes_per_second> <ns_per_call> <ok|mismatch>
 *   crc32c <bytes> <bytes_per_second> <ns_per_call>
 *
 * Method, identical to the TypeScript side so the ratio is fair: buffers from plain malloc
 * (as Node's are), one warm-up call, then five rounds of seconds/5 each, reporting the best
 * round (the least disturbed by other load). Reconstruct tables are built once, outside the
 * timed loop, as a C user who caches them would; the addon's cache hit is inside its loop.
 * This is a standalone program, so ISA-L's own gf_mul is the one linked and gf_invert_matrix
 * is safe here (inside node it is not: see userspace/native/isal/shmr_isal.c).
 */
#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHARDS_MAX 32
#define ROUNDS 5

typedef void (*kernel_t)(void *context);

static double now_seconds(void) {
  struct timespec time;
  clock_gettime(CLOCK_MONOTONIC, &time);
  return (double)time.tv_sec + (double)time.tv_nsec * 1e-9;
}

/* Calls per second of `kernel`: the best of ROUNDS rounds of `seconds` / ROUNDS each. */
static double measure_calls_per_second(kernel_t kernel, void *context, double seconds) {
  double best = 0;
  kernel(context); /* Warm-up: page faults, tables, caches. */
  for (int round = 0; round < ROUNDS; round++) {
    double round_seconds = seconds / ROUNDS;
    double start = now_seconds();
    double elapsed = 0;
    long calls = 0;
    /* Batches double while short, so reading the clock costs nothing next to small calls, and
     * stop doubling early enough that a round overshoots by at most about an eighth. */
    for (long batch = 1; elapsed < round_seconds;) {
      for (long index = 0; index < batch; index++) kernel(context);
      calls += batch;
      elapsed = now_seconds() - start;
      if (elapsed < round_seconds / 16) batch *= 2;
    }
    double rate = (double)calls / elapsed;
    if (rate > best) best = rate;
  }
  return best;
}

static void *allocate_or_die(size_t bytes) {
  void *memory = malloc(bytes);
  if (memory == NULL) {
    fprintf(stderr, "erasure-baseline: out of memory (%zu bytes)\n", bytes);
    exit(2);
  }
  return memory;
}

/* Deterministic, incompressible-looking content (xorshift32). */
static void fill_random(uint8_t *bytes, size_t count, uint32_t seed) {
  uint32_t state = seed | 1;
  for (size_t index = 0; index < count; index++) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    bytes[index] = (uint8_t)state;
  }
}

/* One call of ec_encode_data with fixed arguments: the unit the timer repeats. */
typedef struct coding_call {
  int shard_bytes;
  int source_count;
  int target_count;
  uint8_t *tables;
  uint8_t *sources[SHARDS_MAX];
  uint8_t *targets[SHARDS_MAX];
} coding_call_t;

static void run_coding_call(void *context) {
  coding_call_t *call = context;
  ec_encode_data(call->shard_bytes, call->source_count, call->target_count, call->tables,
                 call->sources, call->targets);
}

/* Decode tables for losing data shards 0..lost_count-1, reading shards lost_count..k+lost-1. */
static int build_decode_call(const uint8_t *matrix, int k, int lost_count, uint8_t **shards,
                             uint8_t **outputs, coding_call_t *call) {
  uint8_t sources_matrix[SHARDS_MAX * SHARDS_MAX];
  uint8_t inverse[SHARDS_MAX * SHARDS_MAX];
  uint8_t rows[SHARDS_MAX * SHARDS_MAX];
  for (int row = 0; row < k; row++) {
    memcpy(&sources_matrix[row * k], &matrix[(lost_count + row) * k], (size_t)k);
    call->sources[row] = shards[lost_count + row];
  }
  if (gf_invert_matrix(sources_matrix, inverse, k) != 0) return -1;
  /* Lost data shard i is row i of the inverse. */
  memcpy(rows, inverse, (size_t)(lost_count * k));
  for (int index = 0; index < lost_count; index++) call->targets[index] = outputs[index];
  call->source_count = k;
  call->target_count = lost_count;
  ec_init_tables(k, lost_count, rows, call->tables);
  return 0;
}

static int run_rs(double seconds, int k, int p, int shard_bytes) {
  uint8_t matrix[SHARDS_MAX * SHARDS_MAX];
  uint8_t *shards[SHARDS_MAX];
  uint8_t *outputs[2];
  int lost_count = p < 2 ? p : 2;
  coding_call_t call = {.shard_bytes = shard_bytes, .source_count = k, .target_count = p};
  call.tables = allocate_or_die((size_t)(32 * k * p + 32 * k * 2));
  for (int index = 0; index < k + p; index++) {
    shards[index] = allocate_or_die((size_t)shard_bytes);
    fill_random(shards[index], (size_t)shard_bytes, (uint32_t)(index + 1) * 2654435761u);
  }
  for (int index = 0; index < lost_count; index++) {
    outputs[index] = allocate_or_die((size_t)shard_bytes);
  }
  gf_gen_cauchy1_matrix(matrix, k + p, k);
  ec_init_tables(k, p, &matrix[k * k], call.tables);
  for (int index = 0; index < k; index++) call.sources[index] = shards[index];
  for (int index = 0; index < p; index++) call.targets[index] = shards[k + index];
  double data_bytes = (double)k * shard_bytes;
  double rate = measure_calls_per_second(run_coding_call, &call, seconds);
  printf("encode %d %d %d %.0f %.1f\n", k, p, shard_bytes, rate * data_bytes, 1e9 / rate);
  if (lost_count == 0) return 0;
  if (build_decode_call(matrix, k, lost_count, shards, outputs, &call) != 0) {
    fprintf(stderr, "erasure-baseline: singular decode matrix\n");
    return 1;
  }
  rate = measure_calls_per_second(run_coding_call, &call, seconds);
  int is_ok = 1;
  for (int index = 0; index < lost_count; index++) {
    is_ok = is_ok && memcmp(outputs[index], shards[index], (size_t)shard_bytes) == 0;
  }
  printf("reconstruct %d %d %d %.0f %.1f %s\n", k, p, shard_bytes, rate * data_bytes, 1e9 / rate,
         is_ok ? "ok" : "mismatch");
  return is_ok ? 0 : 1;
}

typedef struct crc_call {
  uint8_t *bytes;
  int length;
  volatile uint32_t sink; /* Keeps every result live so no call is optimized away. */
} crc_call_t;

static void run_crc_call(void *context) {
  crc_call_t *call = context;
  call->sink ^= crc32_iscsi(call->bytes, call->length, 0xffffffffu);
}

static int run_crc(double seconds, int bytes) {
  crc_call_t call = {.bytes = allocate_or_die((size_t)bytes), .length = bytes};
  fill_random(call.bytes, (size_t)bytes, 12345);
  double rate = measure_calls_per_second(run_crc_call, &call, seconds);
  printf("crc32c %d %.0f %.1f\n", bytes, rate * bytes, 1e9 / rate);
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: erasure-baseline rs <seconds> <k> <p> <shard_bytes>\n"
                  "       erasure-baseline crc <seconds> <bytes>\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "rs") == 0) {
    int k = atoi(argv[3]);
    int p = atoi(argv[4]);
    int shard_bytes = atoi(argv[5]);
    if (k < 1 || p < 0 || k + p > SHARDS_MAX || shard_bytes < 64) return usage();
    return run_rs(atof(argv[2]), k, p, shard_bytes);
  }
  if (argc == 4 && strcmp(argv[1], "crc") == 0) {
    int bytes = atoi(argv[3]);
    if (bytes < 1) return usage();
    return run_crc(atof(argv[2]), bytes);
  }
  return usage();
}
