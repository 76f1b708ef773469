/*
 * test_json.c: the JSON writer: structure, call-order errors, size cap,
 * escaping, and that libyaml reads back every value it writes (report_show
 * depends on that).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <yaml.h>

#include "util/json.h"

/* Escapes p[0..len) as a JSON string value and returns the document. */
static char *
doc_of(const char *p, size_t len)
{
	struct buf b;
	struct json j;
	char *doc;

	buf_init(&b, 64u << 20);
	json_init(&j, &b, false);
	json_stringn(&j, p, len);
	assert_int_equal(json_finish(&j), 0);
	doc = buf_detach(&b, NULL);
	buf_release(&b);
	return doc;
}

static void
assert_escapes_to(const char *in, size_t len, const char *want)
{
	char *got = doc_of(in, len);

	assert_string_equal(got, want);
	free(got);
}

static void
test_json_writes_nested_containers_compactly(void **state)
{
	struct buf b;
	struct json j;

	(void)state;
	buf_init(&b, 4096);
	json_init(&j, &b, false);
	json_object_begin(&j);
	json_key(&j, "a");
	json_array_begin(&j);
	json_int(&j, -1);
	json_uint(&j, UINT64_MAX);
	json_bool(&j, true);
	json_null(&j);
	json_object_begin(&j);
	json_object_end(&j);
	json_array_begin(&j);
	json_array_end(&j);
	json_array_end(&j);
	json_key(&j, "b");
	json_string(&j, NULL);
	json_key(&j, "c");
	json_int(&j, INT64_MIN);
	json_object_end(&j);
	assert_int_equal(json_finish(&j), 0);
	assert_string_equal(b.data,
	    "{\"a\": [-1,18446744073709551615,true,"
	    "null,{},[]],\"b\": null,\"c\": -9223372036854775808}");
	buf_release(&b);
}

static void
test_json_pretty_output_indents_by_two_and_ends_with_newline(void **state)
{
	struct buf b;
	struct json j;

	(void)state;
	buf_init(&b, 4096);
	json_init(&j, &b, true);
	json_object_begin(&j);
	json_key(&j, "a");
	json_array_begin(&j);
	json_string(&j, "x");
	json_array_end(&j);
	json_key(&j, "e");
	json_object_begin(&j);
	json_object_end(&j);
	json_object_end(&j);
	assert_int_equal(json_finish(&j), 0);
	assert_string_equal(
	    b.data, "{\n  \"a\": [\n    \"x\"\n  ],\n  \"e\": {}\n}\n");
	buf_release(&b);
}

static void
test_json_escapes_quote_backslash_and_c0_controls(void **state)
{
	(void)state;
	assert_escapes_to("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
	assert_escapes_to("\n\t\r\b\f", 5, "\"\\n\\t\\r\\b\\f\"");
	assert_escapes_to("\x01\x1f\x7f", 3, "\"\\u0001\\u001F\\u007F\"");
	assert_escapes_to("a\0b", 3, "\"a\\u0000b\"");
	assert_escapes_to("", 0, "\"\"");
}

static void
test_json_escapes_c1_line_separators_and_noncharacters(void **state)
{
	(void)state;
	assert_escapes_to(
	    "\xc2\x80\xc2\x85\xc2\x9f", 6, "\"\\u0080\\u0085\\u009F\"");
	assert_escapes_to("\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\"");
	assert_escapes_to("\xef\xbb\xbf\xef\xbf\xbe\xef\xbf\xbf", 9,
	    "\"\\uFEFF\\uFFFE\\uFFFF\"");
}

static void
test_json_copies_valid_non_ascii_raw(void **state)
{
	(void)state;
	/* é, €, U+FFFD itself, and an emoji beyond the BMP */
	assert_escapes_to("\xc3\xa9\xe2\x82\xac\xef\xbf\xbd\xf0\x9f\x98\x80",
	    12, "\"\xc3\xa9\xe2\x82\xac\xef\xbf\xbd\xf0\x9f\x98\x80\"");
	assert_escapes_to("\xc2\xa0", 2, "\"\xc2\xa0\"");
}

static void
test_json_replaces_each_invalid_utf8_byte_with_fffd(void **state)
{
	(void)state;
	/* stray continuation, lone lead byte, overlong '/', surrogate */
	assert_escapes_to("\x80", 1, "\"\xef\xbf\xbd\"");
	assert_escapes_to("a\xc3", 2, "\"a\xef\xbf\xbd\"");
	assert_escapes_to("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
	assert_escapes_to(
	    "\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	/* truncated 3-byte sequence followed by ASCII */
	assert_escapes_to("\xe2\x82z", 3, "\"\xef\xbf\xbd\xef\xbf\xbdz\"");
	/* beyond U+10FFFF, and 0xff */
	assert_escapes_to("\xf4\x90\x80\x80\xff", 5,
	    "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	    "\xef\xbf\xbd\"");
}

static void
test_json_utf8_next_decodes_and_rejects(void **state)
{
	uint32_t cp;

	(void)state;
	assert_int_equal(json_utf8_next((const unsigned char *)"A", 1, &cp), 1);
	assert_int_equal(cp, 'A');
	assert_int_equal(
	    json_utf8_next((const unsigned char *)"\xf0\x9f\x98\x80", 4, &cp),
	    4);
	assert_int_equal(cp, 0x1f600);
	assert_int_equal(
	    json_utf8_next((const unsigned char *)"\xf0\x9f\x98", 3, &cp), 1);
	assert_int_equal(cp, 0xfffd);
	assert_int_equal(
	    json_utf8_next((const unsigned char *)"\xe0\x80\x80", 3, &cp), 1);
	assert_int_equal(cp, 0xfffd);
}

static void
expect_misuse(void (*fn)(struct json *))
{
	struct buf b;
	struct json j;

	buf_init(&b, 4096);
	json_init(&j, &b, false);
	fn(&j);
	assert_int_equal(json_finish(&j), -1);
	buf_release(&b);
}

static void
value_without_key(struct json *j)
{
	json_object_begin(j);
	json_int(j, 1);
	json_object_end(j);
}

static void
key_in_array(struct json *j)
{
	json_array_begin(j);
	json_key(j, "k");
	json_int(j, 1);
	json_array_end(j);
}

static void
mismatched_end(struct json *j)
{
	json_array_begin(j);
	json_object_end(j);
}

static void
two_top_level_values(struct json *j)
{
	json_int(j, 1);
	json_int(j, 2);
}

static void
unclosed_object(struct json *j)
{
	json_object_begin(j);
}

static void
dangling_key(struct json *j)
{
	json_object_begin(j);
	json_key(j, "k");
	json_object_end(j);
}

static void
nothing_written(struct json *j)
{
	(void)j;
}

static void
too_deep(struct json *j)
{
	for (int i = 0; i <= JSON_MAX_DEPTH; i++)
		json_array_begin(j);
	for (int i = 0; i <= JSON_MAX_DEPTH; i++)
		json_array_end(j);
}

static void
test_json_rejects_calls_in_the_wrong_order(void **state)
{
	(void)state;
	expect_misuse(value_without_key);
	expect_misuse(key_in_array);
	expect_misuse(mismatched_end);
	expect_misuse(two_top_level_values);
	expect_misuse(unclosed_object);
	expect_misuse(dangling_key);
	expect_misuse(nothing_written);
	expect_misuse(too_deep);
}

static void
test_json_fails_when_the_buffer_max_is_reached(void **state)
{
	struct buf b;
	struct json j;

	(void)state;
	buf_init(&b, 16);
	json_init(&j, &b, false);
	json_array_begin(&j);
	json_string(&j, "0123456789abcdef");
	json_int(&j, 1);
	json_array_end(&j);
	assert_int_equal(json_finish(&j), -1);
	assert_true(b.len <= 16);
	buf_release(&b);
}

/* ---- libyaml reads back what the writer wrote ---- */

/*
 * Parses doc as YAML and returns its scalar number `want` (0-based, in
 * document order); *len gets its length.
 */
static char *
yaml_scalar(const char *doc, size_t doclen, unsigned want, size_t *len)
{
	yaml_parser_t p;
	yaml_event_t ev;
	char *out = NULL;
	unsigned seen = 0;

	assert_true(yaml_parser_initialize(&p));
	yaml_parser_set_input_string(&p, (const unsigned char *)doc, doclen);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev))
			fail_msg("libyaml: %s at %zu:%zu", p.problem,
			    p.problem_mark.line + 1, p.problem_mark.column + 1);
		if (ev.type == YAML_SCALAR_EVENT && seen++ == want) {
			*len = ev.data.scalar.length;
			out = malloc(*len + 1);
			memcpy(out, ev.data.scalar.value, *len + 1);
		}
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	assert_non_null(out);
	return out;
}

static void
assert_reads_back(const char *in, size_t len, const char *want, size_t wantlen)
{
	struct buf b;
	struct json j;
	char *got;
	size_t gotlen = 0;

	buf_init(&b, 64u << 20);
	json_init(&j, &b, true);
	json_object_begin(&j);
	json_key(&j, "k\n\"ey");
	json_array_begin(&j);
	json_stringn(&j, in, len);
	json_array_end(&j);
	json_object_end(&j);
	assert_int_equal(json_finish(&j), 0);
	got = yaml_scalar(b.data, b.len, 0, &gotlen);
	assert_int_equal(gotlen, 5);
	assert_memory_equal(got, "k\n\"ey", 5);
	free(got);
	got = yaml_scalar(b.data, b.len, 1, &gotlen);
	assert_int_equal(gotlen, wantlen);
	assert_memory_equal(got, want, wantlen);
	free(got);
	buf_release(&b);
}

static void
append_cp(struct buf *b, uint32_t cp)
{
	char s[4];
	size_t n;

	if (cp < 0x80) {
		s[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		s[0] = (char)(0xc0 | (cp >> 6));
		s[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		s[0] = (char)(0xe0 | (cp >> 12));
		s[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		s[0] = (char)(0xf0 | (cp >> 18));
		s[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		s[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	assert_int_equal(buf_add(b, s, n), 0);
}

static void
test_json_every_code_point_reads_back_through_libyaml(void **state)
{
	struct buf all;

	(void)state;
	/* one long line (about 4 MiB) holding every scalar value, NUL too */
	buf_init(&all, 8u << 20);
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++)
		if (cp < 0xd800 || cp > 0xdfff)
			append_cp(&all, cp);
	assert_reads_back(all.data, all.len, all.data, all.len);
	buf_release(&all);
}

static void
test_json_invalid_utf8_reads_back_as_replacement_characters(void **state)
{
	(void)state;
	assert_reads_back("a\xff"
	                  "b\xed\xa0\x80",
	    6,
	    "a\xef\xbf\xbd"
	    "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	    14);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_writes_nested_containers_compactly),
		cmocka_unit_test(
		    test_json_pretty_output_indents_by_two_and_ends_with_newline),
		cmocka_unit_test(
		    test_json_escapes_quote_backslash_and_c0_controls),
		cmocka_unit_test(
		    test_json_escapes_c1_line_separators_and_noncharacters),
		cmocka_unit_test(test_json_copies_valid_non_ascii_raw),
		cmocka_unit_test(
		    test_json_replaces_each_invalid_utf8_byte_with_fffd),
		cmocka_unit_test(test_json_utf8_next_decodes_and_rejects),
		cmocka_unit_test(test_json_rejects_calls_in_the_wrong_order),
		cmocka_unit_test(
		    test_json_fails_when_the_buffer_max_is_reached),
		cmocka_unit_test(
		    test_json_every_code_point_reads_back_through_libyaml),
		cmocka_unit_test(
		    test_json_invalid_utf8_reads_back_as_replacement_characters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
