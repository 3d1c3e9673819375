/*
 * Small helpers: errors, strings, option reading, and libfuse log capture.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmr_fuse3.h"

static napi_value throw_with(napi_env env, bool type_error, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    if (type_error) napi_throw_type_error(env, NULL, msg);
    else napi_throw_error(env, NULL, msg);
  }
  return NULL;
}

napi_value throw_error(napi_env env, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  throw_with(env, false, fmt, ap);
  va_end(ap);
  return NULL;
}

napi_value throw_type_error(napi_env env, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  throw_with(env, true, fmt, ap);
  va_end(ap);
  return NULL;
}

/*
 * Strict UTF-8 check (no overlongs, no surrogates, max U+10FFFF). Names that fail it would
 * be mangled into U+FFFD by napi_create_string_utf8, so two different names on the wire
 * could reach JS as the same string; callers reject them instead.
 */
bool utf8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str, *end = s + len;
  while (s < end) {
    unsigned c = *s;
    if (c < 0x80) { s++; continue; }
    size_t n;
    unsigned min;
    if ((c & 0xe0) == 0xc0) { n = 1; c &= 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { n = 2; c &= 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { n = 3; c &= 0x07; min = 0x10000; }
    else return false;
    if ((size_t)(end - s) <= n) return false;
    for (size_t i = 1; i <= n; i++) {
      if ((s[i] & 0xc0) != 0x80) return false;
      c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
    s += n + 1;
  }
  return true;
}

/* Clears the pending JS exception and writes it (stack if any) to stderr on one line. */
void log_exception(napi_env env, const char *what) {
  napi_value exc, text;
  if (napi_get_and_clear_last_exception(env, &exc) != napi_ok) return;
  bool has_stack = false;
  napi_valuetype type;
  napi_typeof(env, exc, &type);
  if (type == napi_object) napi_has_named_property(env, exc, "stack", &has_stack);
  if (has_stack) napi_get_named_property(env, exc, "stack", &text);
  else text = exc;
  char buf[2048] = "";
  if (napi_coerce_to_string(env, text, &text) == napi_ok) {
    napi_get_value_string_utf8(env, text, buf, sizeof buf, NULL);
  }
  /* Best effort: anything thrown while coercing is dropped, not left pending. */
  napi_get_and_clear_last_exception(env, &exc);
  for (char *c = buf; *c; c++) if (*c == '\n') *c = ' ';
  fprintf(stderr, "shmr-fuse3: %s: %s\n", what, buf);
}

/* A malloc'ed copy of a JS string, or NULL with an exception thrown. */
char *get_string(napi_env env, napi_value v, const char *what) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    throw_type_error(env, "%s must be a string", what);
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s == NULL) {
    throw_error(env, "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, v, s, len + 1, NULL);
  if (strlen(s) != len) {
    free(s);
    throw_type_error(env, "%s must not contain NUL characters", what);
    return NULL;
  }
  return s;
}

static bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *v, bool *present) {
  napi_valuetype type;
  if (napi_get_named_property(env, obj, key, v) != napi_ok) return false;
  napi_typeof(env, *v, &type);
  *present = type != napi_undefined;
  return true;
}

bool get_u32(napi_env env, napi_value obj, const char *key, unsigned *out, unsigned dflt) {
  napi_value v;
  bool present;
  if (!get_prop(env, obj, key, &v, &present)) return false;
  if (!present) { *out = dflt; return true; }
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 4294967295.0 ||
      d != (double)(unsigned)d) {
    throw_type_error(env, "option %s must be an integer in 0..2^32-1", key);
    return false;
  }
  *out = (unsigned)d;
  return true;
}

bool get_bool(napi_env env, napi_value obj, const char *key, bool *out, bool dflt) {
  napi_value v;
  bool present;
  if (!get_prop(env, obj, key, &v, &present)) return false;
  if (!present) { *out = dflt; return true; }
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    throw_type_error(env, "option %s must be a boolean", key);
    return false;
  }
  return true;
}

/*
 * libfuse reports why a mount failed only through fuse_log. While mount() runs we collect
 * errors and warnings so the thrown Error can say what libfuse said; at any other time, and
 * for debug/info output, messages go to stderr as libfuse's default handler would.
 * Thread-local: each Node worker mounts on its own thread.
 */
static __thread char *capture;
static __thread size_t capture_len;
static __thread bool capturing;

static void log_handler(enum fuse_log_level level, const char *fmt, va_list ap) {
  if (!capturing || level > FUSE_LOG_WARNING) {
    vfprintf(stderr, fmt, ap);
    return;
  }
  char line[1024];
  int n = vsnprintf(line, sizeof line, fmt, ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  char *grown = realloc(capture, capture_len + (size_t)n + 1);
  if (grown == NULL) return;
  capture = grown;
  memcpy(capture + capture_len, line, (size_t)n + 1);
  capture_len += (size_t)n;
}

void log_install(void) { fuse_set_log_func(log_handler); }

void log_capture_begin(void) {
  free(capture);
  capture = NULL;
  capture_len = 0;
  capturing = true;
}

/* The captured text, trimmed and on one line (caller frees), or NULL if nothing was said. */
char *log_capture_end(void) {
  capturing = false;
  char *text = capture;
  capture = NULL;
  capture_len = 0;
  if (text == NULL) return NULL;
  for (char *c = text; *c; c++) if (*c == '\n') *c = ' ';
  size_t len = strlen(text);
  while (len > 0 && text[len - 1] == ' ') text[--len] = '\0';
  return text;
}

session_t *session_call(napi_env env, napi_callback_info info, size_t argc, napi_value *argv) {
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return session_unwrap(env, argv[0]);
}

napi_value number_array(napi_env env, const double *values, uint32_t count) {
  napi_value out, v;
  napi_create_array_with_length(env, count, &out);
  for (uint32_t i = 0; i < count; i++) {
    napi_create_double(env, values[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

bool u64_args(napi_env env, const napi_value *argv, size_t n, uint64_t *out) {
  for (size_t i = 0; i < n; i++) {
    double d;
    if (napi_get_value_double(env, argv[i], &d) != napi_ok || !(d >= 0) || d > 9007199254740991.0 ||
        d != (double)(uint64_t)d) {
      throw_type_error(env, "argument %zu (after the session) must be a non-negative integer", i + 1);
      return false;
    }
    out[i] = (uint64_t)d;
  }
  return true;
}
