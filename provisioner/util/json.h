/*
 * json.h: a small streaming JSON writer into a struct buf.
 *
 * The writer appends to a caller's buffer, which keeps its hard maximum:
 * when an append would pass it, or a call comes in the wrong order (a value
 * in an object without a key, an end without a begin, a second top-level
 * value, nesting deeper than JSON_MAX_DEPTH), the writer records the
 * failure and ignores every later call. json_finish() reports it once, so
 * callers write straight-line code and check one return value:
 *
 *	struct json j;
 *	json_init(&j, &out, true);
 *	json_object_begin(&j);
 *	json_key(&j, "name");
 *	json_string(&j, "value");
 *	json_object_end(&j);
 *	if (json_finish(&j) < 0) ...   (out may hold a partial document)
 *
 * Strings are bytes, not assumed to be UTF-8 or NUL-free. The output is
 * always valid UTF-8 JSON, and is also a YAML 1.1 flow document that
 * libyaml reads back to the same values (report_show() relies on that):
 *   - '"', '\\' and every C0 control are escaped (\n \t \r \b \f or
 *     \u00XX, so NUL survives as \u0000);
 *   - DEL, C1 controls (U+0080..U+009F, which libyaml refuses raw; U+0085 is
 *     also a YAML line break), U+2028, U+2029, U+FEFF, U+FFFE and U+FFFF
 *     are written as \uXXXX;
 *   - bytes that are not well-formed UTF-8 (stray continuation bytes,
 *     overlongs, surrogates, truncated sequences) become U+FFFD, one per
 *     offending byte;
 *   - everything else, including characters beyond the BMP, is copied raw
 *     (so no surrogate-pair escapes, which libyaml rejects).
 * Members are written as `"key": value` (a space after the colon, which
 * YAML needs). Keys are escaped like strings; keep them short: libyaml
 * reads a key only when it is under 1024 characters.
 *
 * With pretty, containers are broken over lines with two-space indents and
 * json_finish() adds a final newline; otherwise the output is one line.
 *
 * json_escape() and json_utf8_next() are the same rules as single
 * functions, for the redactor (which must know how a secret looks once
 * escaped) and the XML writer.
 */
#ifndef STAGEHAND_JSON_H
#define STAGEHAND_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define JSON_MAX_DEPTH 32

struct json {
	struct buf *out; /* borrowed */
	bool pretty;
	bool failed;    /* sticky */
	bool after_key; /* a key was written; its value comes next */
	bool done;      /* the top-level value is complete */
	unsigned depth;
	char kind[JSON_MAX_DEPTH]; /* '{' or '[' per open container */
	bool has_member[JSON_MAX_DEPTH];
};

void json_init(struct json *j, struct buf *out, bool pretty);
void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_array_begin(struct json *j);
void json_array_end(struct json *j);
/* A key in the current object; the next call writes its value. */
void json_key(struct json *j, const char *key);
/* A C string; NULL writes null. */
void json_string(struct json *j, const char *s);
void json_stringn(struct json *j, const char *p, size_t len);
void json_int(struct json *j, int64_t v);
void json_uint(struct json *j, uint64_t v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);
/* A member of the current object: json_key(key) then the value. */
void json_member_string(struct json *j, const char *key, const char *s);
void json_member_uint(struct json *j, const char *key, uint64_t v);
void json_member_int(struct json *j, const char *key, int64_t v);
void json_member_bool(struct json *j, const char *key, bool v);
/*
 * Returns 0 when every call succeeded and the document is complete (all
 * containers closed), else -1.
 */
int json_finish(struct json *j);

/* Appends p[0..len) escaped as above, without quotes. Returns 0 or -1. */
int json_escape(struct buf *out, const char *p, size_t len);

/*
 * Decodes one character from p[0..len) (len > 0) with util.h's
 * utf8_decode(), the one decoder. Returns the bytes used (1..4) and sets
 * *cp; a byte that does not start a well-formed sequence gives *cp = 0xFFFD
 * and uses 1 byte.
 */
size_t json_utf8_next(const unsigned char *p, size_t len, uint32_t *cp);

#endif
