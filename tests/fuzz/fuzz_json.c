/*
 * fuzz_json.c — libFuzzer target for the JSON reader (lib/json.h).
 *
 * Parses the input with the default limits and with a tight depth limit, and walks every
 * value of a parsed document with the accessors (object keys by index and by name, arrays,
 * strings with their lengths, numbers, integers, booleans).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_json_walk(const struct json_value *v, unsigned depth)
{
	size_t len, klen;

	if (v == NULL || depth > 1000)
		abort();
	(void)json_type_name(json_type(v));
	switch (json_type(v)) {
	case JSON_OBJECT:
		for (size_t i = 0; i < json_object_len(v); i++) {
			const char *k = json_object_key_at(v, i, &klen);

			if (k == NULL)
				abort();
			if (json_object_getn(v, k, klen) == NULL)
				abort();   /* a key it has is found */
			fuzz_json_walk(json_object_value_at(v, i), depth + 1);
		}
		break;
	case JSON_ARRAY:
		for (size_t i = 0; i < json_array_len(v); i++)
			fuzz_json_walk(json_array_at(v, i), depth + 1);
		break;
	case JSON_STRING: {
		const char *s = json_string(v, &len);
		if (s == NULL || s[len] != '\0')
			abort();
		break;
	}
	case JSON_NUMBER:
		(void)json_number(v);
		if (json_is_int(v))
			(void)json_int(v);
		break;
	case JSON_FALSE:
	case JSON_TRUE:
		(void)json_bool(v);
		break;
	default:
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_limits tight = { .max_depth = 4, .max_size = 4096 };
	struct json_doc *doc;
	char err[256];
	size_t off;

	if (json_parse((const char *)data, size, &doc, err, sizeof err) == 0) {
		fuzz_json_walk(json_root(doc), 0);
		(void)json_doc_memory(doc);
		json_free(doc);
	} else if (err[0] == '\0') {
		abort();   /* every failure has a message */
	}
	if (json_parse_ex((const char *)data, size, &tight, &doc, &off, err,
	    sizeof err) == 0) {
		fuzz_json_walk(json_root(doc), 0);
		json_free(doc);
	}
	return 0;
}
