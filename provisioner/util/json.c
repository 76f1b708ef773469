/*
 * json.c: streaming JSON writer with sticky errors. See json.h for the
 * escaping rules and why they also suit libyaml.
 */
#include "util/json.h"

#include <inttypes.h>
#include <string.h>

/* ======================================================== UTF-8 */

/* util.c's decoder, with U+FFFD for a malformed byte (see json.h). */
size_t
json_utf8_next(const unsigned char *p, size_t len, uint32_t *cp)
{
	size_t n = utf8_decode(p, len, cp);

	if (n > 0)
		return n;
	*cp = 0xFFFD;
	return 1;
}

/* ======================================================== escaping */

/* Characters written as \uXXXX even though JSON allows them raw. */
static bool
needs_u_escape(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
	       cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe ||
	       cp == 0xffff;
}

static int
escape_cp(struct buf *out, uint32_t cp)
{
	switch (cp) {
	case '"':
		return buf_adds(out, "\\\"");
	case '\\':
		return buf_adds(out, "\\\\");
	case '\n':
		return buf_adds(out, "\\n");
	case '\t':
		return buf_adds(out, "\\t");
	case '\r':
		return buf_adds(out, "\\r");
	case '\b':
		return buf_adds(out, "\\b");
	case '\f':
		return buf_adds(out, "\\f");
	default:
		break;
	}
	if (needs_u_escape(cp))
		return buf_addf(out, "\\u%04" PRIX32, cp);
	return -2; /* copy as is */
}

int
json_escape(struct buf *out, const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t start = out->len, i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = json_utf8_next(s + i, len - i, &cp);
		int rc = escape_cp(out, cp);

		if (rc == -2 && n == 1 && s[i] >= 0x80) /* not UTF-8 */
			rc = buf_adds(out, "\xef\xbf\xbd");
		else if (rc == -2)
			rc = buf_add(out, s + i, n);
		if (rc < 0) {
			out->len = start;
			out->data[start] = '\0';
			return -1;
		}
		i += n;
	}
	return 0;
}

/* ======================================================== structure */

void
json_init(struct json *j, struct buf *out, bool pretty)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
	j->pretty = pretty;
}

static void
put(struct json *j, const char *s, size_t len)
{
	if (!j->failed && buf_add(j->out, s, len) < 0)
		j->failed = true;
}

static void
newline_indent(struct json *j)
{
	if (!j->pretty)
		return;
	put(j, "\n", 1);
	for (unsigned i = 0; i < j->depth; i++)
		put(j, "  ", 2);
}

/*
 * Called before every value and key: checks the call order and writes the
 * separator. Returns false (and marks the writer failed) when a value is
 * not allowed here. is_key tells a key from a value.
 */
static bool
before(struct json *j, bool is_key)
{
	char in = j->depth ? j->kind[j->depth - 1] : 0;

	if (j->failed || j->done)
		goto bad;
	if (in == '{' && !is_key && j->after_key) {
		j->after_key = false;
		return true;
	}
	if ((in == '{') != is_key || j->after_key)
		goto bad;
	if (in && j->has_member[j->depth - 1])
		put(j, ",", 1);
	if (in) {
		j->has_member[j->depth - 1] = true;
		newline_indent(j);
	}
	return !j->failed;
bad:
	j->failed = true;
	return false;
}

/* A scalar value is complete: at depth 0 that ends the document. */
static void
after_value(struct json *j)
{
	if (j->depth == 0)
		j->done = true;
}

static void
open_container(struct json *j, char kind)
{
	if (!before(j, false))
		return;
	if (j->depth >= JSON_MAX_DEPTH) {
		j->failed = true;
		return;
	}
	put(j, &kind, 1);
	j->kind[j->depth] = kind;
	j->has_member[j->depth] = false;
	j->depth++;
}

static void
close_container(struct json *j, char kind)
{
	char close = kind == '{' ? '}' : ']';

	if (j->failed || j->depth == 0 || j->kind[j->depth - 1] != kind ||
	    j->after_key) {
		j->failed = true;
		return;
	}
	j->depth--;
	if (j->has_member[j->depth])
		newline_indent(j);
	put(j, &close, 1);
	after_value(j);
}

void
json_object_begin(struct json *j)
{
	open_container(j, '{');
}

void
json_object_end(struct json *j)
{
	close_container(j, '{');
}

void
json_array_begin(struct json *j)
{
	open_container(j, '[');
}

void
json_array_end(struct json *j)
{
	close_container(j, '[');
}

static void
quoted(struct json *j, const char *p, size_t len)
{
	put(j, "\"", 1);
	if (!j->failed && json_escape(j->out, p, len) < 0)
		j->failed = true;
	put(j, "\"", 1);
}

void
json_key(struct json *j, const char *key)
{
	if (!before(j, true))
		return;
	quoted(j, key, strlen(key));
	put(j, ": ", 2);
	j->after_key = true;
}

void
json_stringn(struct json *j, const char *p, size_t len)
{
	if (!before(j, false))
		return;
	quoted(j, p, len);
	after_value(j);
}

void
json_string(struct json *j, const char *s)
{
	if (s == NULL)
		json_null(j);
	else
		json_stringn(j, s, strlen(s));
}

static void
raw_value(struct json *j, const char *s)
{
	if (!before(j, false))
		return;
	put(j, s, strlen(s));
	after_value(j);
}

void
json_int(struct json *j, int64_t v)
{
	if (!before(j, false))
		return;
	if (buf_addf(j->out, "%" PRId64, v) < 0)
		j->failed = true;
	after_value(j);
}

void
json_uint(struct json *j, uint64_t v)
{
	if (!before(j, false))
		return;
	if (buf_addf(j->out, "%" PRIu64, v) < 0)
		j->failed = true;
	after_value(j);
}

void
json_bool(struct json *j, bool v)
{
	raw_value(j, v ? "true" : "false");
}

void
json_null(struct json *j)
{
	raw_value(j, "null");
}

int
json_finish(struct json *j)
{
	if (j->failed || !j->done || j->depth != 0)
		return -1;
	if (j->pretty)
		put(j, "\n", 1);
	return j->failed ? -1 : 0;
}

/* ======================================================== members */

void
json_member_string(struct json *j, const char *key, const char *s)
{
	json_key(j, key);
	json_string(j, s);
}

void
json_member_uint(struct json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	json_uint(j, v);
}

void
json_member_int(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	json_int(j, v);
}

void
json_member_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	json_bool(j, v);
}
