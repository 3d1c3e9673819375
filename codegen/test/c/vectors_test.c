// SPDX-License-Identifier: GPL-2.0-only
/*
 * vectors_test: the generated C layout (kmod-spec/generated/shmr_layout.h) against the test
 * vectors the TypeScript encoder wrote (kmod-spec/generated/vectors/).
 *
 * Goal: prove C reads and writes the on-disk format exactly as TypeScript does.
 * Method, for every vector of manifest.json, through the generated registry (no code per
 * struct, so a new struct or field needs no edit here):
 * - decode with the generated decoder; check every field against the manifest, or that a
 *   corrupt vector fails with the same DecodeErrorKind and field as the TypeScript decoder;
 * - for shard files, check the chunk table (count, CRC32C), each chunk and the payload CRC,
 *   which shard-format.ts checks by hand-written code the generator does not emit;
 * - encode every good vector from the manifest's field values (shard files: recomputing the
 *   table, checksums and payload offset from the payload), compare with the TypeScript bytes
 *   and write the result to OUT_DIR, where the vitest test decodes it with TypeScript.
 * Also checks CRC32C against ISA-L's values and DecodeErrorKind numbers against TypeScript's.
 *
 * Usage: vectors_test VECTORS_DIR OUT_DIR. Prints one line per failure, then a summary; exits
 * 0 only when nothing failed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmr_layout.h"

/* ---- A minimal JSON reader: enough for manifest.json (no string unescaping needed). ---- */

enum json_type { JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_PRIMITIVE };

struct json_token {
	enum json_type type;
	size_t start; /* Strings: after the opening quote. */
	size_t end; /* Strings: at the closing quote. */
	int child_count; /* Objects: keys; arrays: items. */
	int next; /* The index of the token after this one's subtree. */
};

struct json {
	const char *text;
	size_t length;
	size_t position;
	struct json_token *tokens;
	int token_count;
	int token_capacity;
};

static void json_skip_space(struct json *json)
{
	while (json->position < json->length && strchr(" \t\r\n", json->text[json->position]))
		json->position++;
}

static int json_new_token(struct json *json, enum json_type type)
{
	if (json->token_count == json->token_capacity) {
		json->token_capacity = json->token_capacity * 2 + 64;
		json->tokens = realloc(json->tokens, sizeof(*json->tokens) * json->token_capacity);
		if (!json->tokens) {
			perror("realloc");
			exit(2);
		}
	}
	json->tokens[json->token_count].type = type;
	json->tokens[json->token_count].start = json->position;
	json->tokens[json->token_count].child_count = 0;
	return json->token_count++;
}

static int json_parse_value(struct json *json);

/* Parses the members of an object or array after its opening bracket. */
static int json_parse_children(struct json *json, int index, char close, int has_keys)
{
	json_skip_space(json);
	if (json->text[json->position] == close) {
		json->position++;
		return 0;
	}
	for (;;) {
		if (has_keys) {
			if (json_parse_value(json) < 0)
				return -1;
			json_skip_space(json);
			if (json->text[json->position++] != ':')
				return -1;
		}
		if (json_parse_value(json) < 0)
			return -1;
		json->tokens[index].child_count++;
		json_skip_space(json);
		if (json->text[json->position] == ',') {
			json->position++;
			continue;
		}
		if (json->text[json->position++] == close)
			return 0;
		return -1;
	}
}

/* Parses one value at the current position; returns its token index, or -1 if malformed. */
static int json_parse_value(struct json *json)
{
	int index;
	char first;

	json_skip_space(json);
	if (json->position >= json->length)
		return -1;
	first = json->text[json->position];
	if (first == '{' || first == '[') {
		index = json_new_token(json, first == '{' ? JSON_OBJECT : JSON_ARRAY);
		json->position++;
		if (json_parse_children(json, index, first == '{' ? '}' : ']', first == '{') < 0)
			return -1;
	} else if (first == '"') {
		json->position++;
		index = json_new_token(json, JSON_STRING);
		while (json->position < json->length && json->text[json->position] != '"')
			json->position += json->text[json->position] == '\\' ? 2 : 1;
		if (json->position >= json->length)
			return -1;
		json->tokens[index].end = json->position++;
	} else {
		index = json_new_token(json, JSON_PRIMITIVE);
		while (json->position < json->length &&
		       !strchr(",}] \t\r\n", json->text[json->position]))
			json->position++;
	}
	if (json->tokens[index].type != JSON_STRING)
		json->tokens[index].end = json->position;
	json->tokens[index].next = json->token_count;
	return index;
}

static int json_equals(const struct json *json, int index, const char *text)
{
	const struct json_token *token;
	size_t length_bytes;

	if (index < 0)
		return 0;
	token = &json->tokens[index];
	length_bytes = token->end - token->start;
	return strlen(text) == length_bytes &&
	       memcmp(json->text + token->start, text, length_bytes) == 0;
}

/* The value of key in object, or -1. */
static int json_get(const struct json *json, int object, const char *key)
{
	int child = object + 1;
	int count;

	if (object < 0 || json->tokens[object].type != JSON_OBJECT)
		return -1;
	for (count = 0; count < json->tokens[object].child_count; count++) {
		if (json_equals(json, child, key))
			return child + 1;
		child = json->tokens[child + 1].next;
	}
	return -1;
}

/* A token's text as a NUL-terminated string in a static buffer (callers copy if they keep it). */
static const char *json_text(const struct json *json, int index)
{
	static char buffer[1 << 17];
	const struct json_token *token;
	size_t length_bytes;

	if (index < 0)
		return "";
	token = &json->tokens[index];
	length_bytes = token->end - token->start;
	if (length_bytes >= sizeof(buffer))
		length_bytes = sizeof(buffer) - 1;
	memcpy(buffer, json->text + token->start, length_bytes);
	buffer[length_bytes] = '\0';
	return buffer;
}

/* Copies a token's text into buffer (truncating to fit), NUL-terminated. */
static void json_copy(const struct json *json, int index, char *buffer, size_t buffer_bytes)
{
	size_t length_bytes = 0;

	if (index >= 0) {
		length_bytes = json->tokens[index].end - json->tokens[index].start;
		if (length_bytes >= buffer_bytes)
			length_bytes = buffer_bytes - 1;
		memcpy(buffer, json->text + json->tokens[index].start, length_bytes);
	}
	buffer[length_bytes] = '\0';
}

static uint64_t json_uint(const struct json *json, int index)
{
	return strtoull(json_text(json, index), NULL, 0);
}

/* ---- Files, hex and failure reporting. ---- */

static int failure_count;
static const char *vector_name = "";

static void fail(const char *format, ...)
{
	va_list arguments;

	va_start(arguments, format);
	fprintf(stderr, "FAIL %s: ", vector_name);
	vfprintf(stderr, format, arguments);
	fprintf(stderr, "\n");
	va_end(arguments);
	failure_count++;
}

static uint8_t *read_file(const char *path, size_t *length_bytes)
{
	FILE *file = fopen(path, "rb");
	uint8_t *bytes;
	long size;

	if (!file) {
		perror(path);
		exit(2);
	}
	fseek(file, 0, SEEK_END);
	size = ftell(file);
	fseek(file, 0, SEEK_SET);
	bytes = malloc(size > 0 ? (size_t)size : 1);
	if (!bytes || fread(bytes, 1, (size_t)size, file) != (size_t)size) {
		perror(path);
		exit(2);
	}
	fclose(file);
	*length_bytes = (size_t)size;
	return bytes;
}

static void write_file(const char *path, const uint8_t *bytes, size_t length_bytes)
{
	FILE *file = fopen(path, "wb");

	if (!file || fwrite(bytes, 1, length_bytes, file) != length_bytes || fclose(file) != 0) {
		perror(path);
		exit(2);
	}
}

/* Decodes hex into target; returns the byte count, or -1 on a bad digit or overflow. */
static long hex_decode(const char *hex, uint8_t *target, size_t target_bytes)
{
	size_t length_bytes = strlen(hex) / 2;
	size_t index;
	unsigned int byte;

	if (strlen(hex) % 2 != 0 || length_bytes > target_bytes)
		return -1;
	for (index = 0; index < length_bytes; index++) {
		if (sscanf(hex + 2 * index, "%2x", &byte) != 1)
			return -1;
		target[index] = (uint8_t)byte;
	}
	return (long)length_bytes;
}

/* ---- The checks. ---- */

struct context {
	const struct json *json;
	const char *vectors_dir;
	const char *out_dir;
	uint32_t sector_bytes;
	uint32_t chunk_bytes;
	int vector_count;
	int encoded_count;
};

static const struct shmr_layout_info *find_layout(const char *name)
{
	size_t index;

	for (index = 0; index < SHMR_LAYOUT_COUNT; index++)
		if (strcmp(shmr_layouts[index].name, name) == 0)
			return &shmr_layouts[index];
	return NULL;
}

/* Whether the field is an input of encode (not reserved, fixed or a checksum). */
static int is_input(const struct shmr_field_info *field)
{
	return (field->flags & (SHMR_FIELD_RESERVED | SHMR_FIELD_FIXED | SHMR_FIELD_CHECKSUM)) == 0;
}

/* Every field of the decoded image equals the manifest's value, and the manifest has no other. */
static void check_fields(const struct context *context, const struct shmr_layout_info *layout,
			 const uint8_t *image, int fields)
{
	static uint8_t expected[1 << 16];
	size_t index;

	if (context->json->tokens[fields].child_count != (int)layout->field_count)
		fail("manifest has %d fields, %s has %zu",
		     context->json->tokens[fields].child_count, layout->name, layout->field_count);
	for (index = 0; index < layout->field_count; index++) {
		const struct shmr_field_info *field = &layout->fields[index];
		int value = json_get(context->json, fields, field->name);

		if (value < 0) {
			fail("manifest lacks field %s", field->name);
			continue;
		}
		if (field->width_bytes > sizeof(expected)) {
			fail("field %s is wider than this test handles", field->name);
			continue;
		}
		if (field->type == SHMR_FIELD_TYPE_BYTES) {
			long length_bytes = hex_decode(json_text(context->json, value), expected,
						       sizeof(expected));
			if (length_bytes != (long)field->width_bytes ||
			    memcmp(expected, image + field->offset_bytes, field->width_bytes) != 0)
				fail("field %s differs", field->name);
			continue;
		}
		if (shmr_field_get_uint(image, field) != json_uint(context->json, value))
			fail("field %s: decoded 0x%llx, manifest %s", field->name,
			     (unsigned long long)shmr_field_get_uint(image, field),
			     json_text(context->json, value));
	}
}

/* The decode result equals the manifest's expectation (fields or error kind and field). */
static void check_decode(const struct context *context, const struct shmr_layout_info *layout,
			 int expect, enum shmr_decode_error_kind kind, const char *error_field,
			 const uint8_t *image)
{
	const struct json *json = context->json;
	const char *name;

	if (json_equals(json, json_get(json, expect, "ok"), "true")) {
		if (kind != SHMR_DECODE_OK)
			fail("decode failed: %s in '%s'", shmr_decode_error_kind_name(kind),
			     error_field);
		else
			check_fields(context, layout, image, json_get(json, expect, "fields"));
		return;
	}
	if ((uint64_t)kind != json_uint(json, json_get(json, expect, "errorCode")))
		fail("decode returned %d, manifest says %s", (int)kind,
		     json_text(json, json_get(json, expect, "errorCode")));
	name = shmr_decode_error_kind_name(kind);
	if (!name || !json_equals(json, json_get(json, expect, "error"), name))
		fail("kind name %s differs from the manifest", name ? name : "(none)");
	if (!json_equals(json, json_get(json, expect, "field"), error_field))
		fail("failed in field '%s', manifest says '%s'", error_field,
		     json_text(json, json_get(json, expect, "field")));
}

/* Fills image with the manifest's values of the encode inputs; the rest stays zero. */
static void fill_inputs(const struct context *context, const struct shmr_layout_info *layout,
			uint8_t *image, int fields)
{
	size_t index;

	memset(image, 0, layout->size_bytes);
	for (index = 0; index < layout->field_count; index++) {
		const struct shmr_field_info *field = &layout->fields[index];
		int value = json_get(context->json, fields, field->name);

		if (!is_input(field))
			continue;
		if (field->type == SHMR_FIELD_TYPE_BYTES)
			hex_decode(json_text(context->json, value), image + field->offset_bytes,
				   field->width_bytes);
		else
			shmr_field_set_uint(image, field, json_uint(context->json, value));
	}
}

/* Entries of the chunk table of a payload: one per chunk_bytes, the last chunk possibly short. */
static size_t chunk_count_of(size_t payload_bytes, size_t chunk_bytes)
{
	return chunk_bytes ? (payload_bytes + chunk_bytes - 1) / chunk_bytes : 0;
}

/* Where the chunk starting at start ends: chunk_bytes on, or at the end of the payload. */
static size_t chunk_end(size_t start, size_t chunk_bytes, size_t payload_bytes)
{
	return start + chunk_bytes < payload_bytes ? start + chunk_bytes : payload_bytes;
}

static size_t round_up(size_t value, size_t multiple)
{
	return (value + multiple - 1) / multiple * multiple;
}

/* Result of the shard-format checks of a shard file, as in manifest "shard". */
struct shard_result {
	enum shmr_decode_error_kind kind;
	const char *field;
	long bad_chunk_index;
	int is_payload_checksum_ok;
};

/* The chunk table, chunk and payload checks of shard-format.ts, on a decoded header. */
static struct shard_result check_shard_file(const struct context *context,
					    const struct shmr_shard_header *header,
					    const uint8_t *bytes, size_t length_bytes,
					    int is_payload_included)
{
	struct shard_result result = { SHMR_DECODE_OK, "", -1, 1 };
	uint32_t payload_bytes = shmr_le32_to_cpu(header->payload_bytes);
	uint32_t chunk_bytes = shmr_le32_to_cpu(header->chunk_bytes);
	uint32_t payload_offset = shmr_le32_to_cpu(header->payload_offset);
	size_t chunk_count = chunk_count_of(payload_bytes, chunk_bytes);
	size_t table_end = sizeof(*header) + 4 * chunk_count;
	size_t chunk;

	if (length_bytes < table_end)
		return (struct shard_result){ SHMR_DECODE_ERROR_KIND_SHORT, "chunk_table", -1, 0 };
	if (shmr_crc32c(0, bytes + sizeof(*header), 4 * chunk_count) !=
	    shmr_le32_to_cpu(header->chunk_table_checksum))
		return (struct shard_result){ SHMR_DECODE_ERROR_KIND_CHECKSUM,
					      "chunk_table_checksum", -1, 0 };
	if (payload_offset != round_up(table_end, context->sector_bytes))
		fail("payload_offset %u is not the sector after the chunk table", payload_offset);
	if (!is_payload_included)
		return result;
	for (chunk = 0; chunk < chunk_count && result.bad_chunk_index < 0; chunk++) {
		size_t start = chunk * chunk_bytes;
		size_t end = chunk_end(start, chunk_bytes, payload_bytes);

		if (shmr_crc32c(0, bytes + payload_offset + start, end - start) !=
		    shmr_get_le32(bytes + sizeof(*header) + 4 * chunk))
			result.bad_chunk_index = (long)chunk;
	}
	result.is_payload_checksum_ok = shmr_crc32c(0, bytes + payload_offset, payload_bytes) ==
					shmr_le32_to_cpu(header->payload_checksum);
	return result;
}

static void check_shard(const struct context *context, int vector, const uint8_t *bytes,
			size_t length_bytes)
{
	const struct json *json = context->json;
	int shard = json_get(json, vector, "shard");
	int prefix = json_get(json, shard, "prefix");
	int is_payload_included =
		json_equals(json, json_get(json, shard, "payloadIncluded"), "true");
	int is_prefix_ok = json_equals(json, json_get(json, prefix, "ok"), "true");
	struct shmr_shard_header header;
	struct shard_result result;
	const char *error_field;

	if (shmr_shard_header_decode(bytes, length_bytes, &header, &error_field) != SHMR_DECODE_OK)
		return; /* check_decode has compared the failure with the manifest. */
	result = check_shard_file(context, &header, bytes, length_bytes, is_payload_included);
	if (is_prefix_ok != (result.kind == SHMR_DECODE_OK))
		fail("shard prefix check gives %s", shmr_decode_error_kind_name(result.kind));
	else if (!is_prefix_ok && !json_equals(json, json_get(json, prefix, "field"), result.field))
		fail("shard prefix fails in %s", result.field);
	if (!is_payload_included)
		return;
	if ((long)strtol(json_text(json, json_get(json, shard, "badChunkIndex")), NULL, 10) !=
	    result.bad_chunk_index)
		fail("bad chunk %ld differs from the manifest", result.bad_chunk_index);
	if (json_equals(json, json_get(json, shard, "payloadChecksumOk"), "true") !=
	    result.is_payload_checksum_ok)
		fail("payload checksum verdict differs from the manifest");
}

/* Re-encodes a good struct vector from the manifest's values; it must equal the vector. */
static void encode_struct(struct context *context, const struct shmr_layout_info *layout,
			  int fields, const uint8_t *bytes, size_t length_bytes, const char *out)
{
	uint8_t *image = malloc(layout->size_bytes);
	uint8_t *encoded = malloc(layout->size_bytes);

	fill_inputs(context, layout, image, fields);
	if (layout->encode(image, encoded, layout->size_bytes - 1) != SHMR_DECODE_ERROR_KIND_SHORT)
		fail("encode into a short target does not fail");
	if (layout->encode(image, encoded, layout->size_bytes) != SHMR_DECODE_OK)
		fail("encode failed");
	if (length_bytes != layout->size_bytes || memcmp(encoded, bytes, length_bytes) != 0)
		fail("encoded bytes differ from the TypeScript encoder's");
	write_file(out, encoded, layout->size_bytes);
	context->encoded_count++;
	free(image);
	free(encoded);
}

/* Rebuilds a shard file: header from the manifest, table and checksums from the payload. */
static void encode_shard(struct context *context, int fields, const uint8_t *bytes,
			 size_t length_bytes, const char *out)
{
	const struct shmr_layout_info *layout = find_layout("ShardHeader");
	struct shmr_shard_header header;
	uint32_t payload_bytes = (uint32_t)json_uint(context->json, json_get(context->json, fields,
									      "payload_bytes"));
	size_t chunk_count = chunk_count_of(payload_bytes, context->chunk_bytes);
	size_t table_end = sizeof(header) + 4 * chunk_count;
	size_t payload_offset = round_up(table_end, context->sector_bytes);
	uint8_t *file = calloc(1, payload_offset + payload_bytes);
	size_t chunk;

	if (payload_offset + payload_bytes != length_bytes) {
		fail("file length %zu is not prefix + payload", length_bytes);
		free(file);
		return;
	}
	memcpy(file + payload_offset, bytes + payload_offset, payload_bytes);
	for (chunk = 0; chunk < chunk_count; chunk++) {
		size_t start = chunk * context->chunk_bytes;
		size_t end = chunk_end(start, context->chunk_bytes, payload_bytes);

		shmr_put_le32(file + sizeof(header) + 4 * chunk,
			      shmr_crc32c(0, file + payload_offset + start, end - start));
	}
	fill_inputs(context, layout, (uint8_t *)&header, fields);
	header.chunk_bytes = shmr_cpu_to_le32(context->chunk_bytes);
	header.payload_offset = shmr_cpu_to_le32((uint32_t)payload_offset);
	header.payload_checksum = shmr_cpu_to_le32(shmr_crc32c(0, file + payload_offset,
							       payload_bytes));
	header.chunk_table_checksum = shmr_cpu_to_le32(shmr_crc32c(0, file + sizeof(header),
								   4 * chunk_count));
	shmr_shard_header_encode(&header, file, sizeof(header));
	if (memcmp(file, bytes, length_bytes) != 0)
		fail("rebuilt shard file differs from the TypeScript encoder's");
	write_file(out, file, length_bytes);
	context->encoded_count++;
	free(file);
}

static void check_vector(struct context *context, int vector)
{
	const struct json *json = context->json;
	char name[256], file_name[256], path[1024], out[1024];
	const struct shmr_layout_info *layout;
	int expect = json_get(json, vector, "expect");
	int is_shard = json_equals(json, json_get(json, vector, "kind"), "shard");
	int is_good = json_equals(json, json_get(json, expect, "ok"), "true") &&
		      !json_equals(json, json_get(json, vector, "case"), "corrupt");
	enum shmr_decode_error_kind kind;
	const char *error_field;
	uint8_t *bytes, *image;
	size_t length_bytes;

	json_copy(json, json_get(json, vector, "name"), name, sizeof(name));
	json_copy(json, json_get(json, vector, "file"), file_name, sizeof(file_name));
	vector_name = name;
	layout = find_layout(json_text(json, json_get(json, vector, "layout")));
	if (!layout) {
		fail("no generated layout named %s",
		     json_text(json, json_get(json, vector, "layout")));
		return;
	}
	snprintf(path, sizeof(path), "%s/%s", context->vectors_dir, file_name);
	snprintf(out, sizeof(out), "%s/%s.bin", context->out_dir, name);
	bytes = read_file(path, &length_bytes);
	image = malloc(layout->size_bytes);
	kind = layout->decode(bytes, length_bytes, image, &error_field);
	check_decode(context, layout, expect, kind, error_field, image);
	if (is_shard)
		check_shard(context, vector, bytes, length_bytes);
	if (is_good && !is_shard)
		encode_struct(context, layout, json_get(json, expect, "fields"), bytes,
			      length_bytes, out);
	if (is_good && is_shard &&
	    json_equals(json, json_get(json, json_get(json, vector, "shard"), "payloadIncluded"),
			"true"))
		encode_shard(context, json_get(json, expect, "fields"), bytes, length_bytes, out);
	context->vector_count++;
	free(image);
	free(bytes);
}

/* CRC32C equals ISA-L's on the manifest's inputs; DecodeErrorKind names match TypeScript. */
static void check_constants(const struct json *json, int root)
{
	int crcs = json_get(json, root, "crc32c");
	int kinds = json_get(json, root, "decodeErrorKinds");
	int entry = crcs + 1;
	uint8_t input[256];
	int index;

	vector_name = "constants";
	if (shmr_crc32c(0, "123456789", 9) != 0xe3069283)
		fail("crc32c check value");
	for (index = 0; index < json->tokens[crcs].child_count; index++) {
		char input_hex[600];
		long length_bytes;

		json_copy(json, json_get(json, entry, "input"), input_hex, sizeof(input_hex));
		length_bytes = hex_decode(input_hex, input, sizeof(input));
		if (length_bytes < 0 || shmr_crc32c(0, input, (size_t)length_bytes) !=
						json_uint(json, json_get(json, entry, "value")))
			fail("crc32c of %s", input_hex);
		entry = json->tokens[entry].next;
	}
	entry = kinds + 1;
	for (index = 0; index < json->tokens[kinds].child_count; index++) {
		const char *name = shmr_decode_error_kind_name(json_uint(json, entry + 1));

		if (!name || !json_equals(json, entry, name))
			fail("DecodeErrorKind %s", json_text(json, entry));
		entry = json->tokens[entry + 1].next;
	}
}

int main(int argc, char **argv)
{
	struct json json = { 0 };
	struct context context = { 0 };
	char path[1024];
	int root, vectors, vector, index;

	if (argc != 3) {
		fprintf(stderr, "usage: %s VECTORS_DIR OUT_DIR\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/manifest.json", argv[1]);
	json.text = (const char *)read_file(path, &json.length);
	root = json_parse_value(&json);
	if (root < 0) {
		fprintf(stderr, "%s: malformed JSON near byte %zu\n", path, json.position);
		return 2;
	}
	context.json = &json;
	context.vectors_dir = argv[1];
	context.out_dir = argv[2];
	context.sector_bytes = (uint32_t)json_uint(&json, json_get(&json, root, "sectorBytes"));
	context.chunk_bytes = (uint32_t)json_uint(&json, json_get(&json, root, "chunkBytes"));
	check_constants(&json, root);
	vectors = json_get(&json, root, "vectors");
	vector = vectors + 1;
	for (index = 0; index < json.tokens[vectors].child_count; index++) {
		check_vector(&context, vector);
		vector = json.tokens[vector].next;
	}
	printf("c: %d vectors decoded, %d encoded, %d failures\n", context.vector_count,
	       context.encoded_count, failure_count);
	free(json.tokens);
	free((void *)json.text);
	return failure_count == 0 ? 0 : 1;
}
