/*
 * test_redact.c: secrets never survive redaction, whatever form the
 * writers escaped them into, however they overlap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "redact.h"
#include "xml.h"

static char *
redacted(const struct redact *r, const char *in)
{
	struct buf out;
	char *text;

	buf_init(&out, 1u << 20);
	assert_int_equal(redact_text(r, in, strlen(in), &out), 0);
	text = buf_detach(&out, NULL);
	buf_release(&out);
	return text;
}

static void
assert_redacts_to(const struct redact *r, const char *in, const char *want)
{
	char *got = redacted(r, in);

	assert_string_equal(got, want);
	free(got);
}

static void
test_redact_replaces_every_occurrence(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "hunter2");
	assert_redacts_to(&r, "pw=hunter2; again hunter2.",
	    "pw=********; again ********.");
	assert_redacts_to(&r, "no secret here", "no secret here");
	assert_redacts_to(&r, "", "");
	redact_free(&r);
}

static void
test_redact_without_secrets_copies_text(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, ""); /* empty values are ignored */
	assert_int_equal(r.n, 0);
	assert_redacts_to(&r, "anything", "anything");
	assert_redacts_to(NULL, "anything", "anything");
	redact_free(&r);
}

static void
test_redact_joins_back_to_back_occurrences(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "aa");
	/* overlapping occurrences of one secret: nothing of it is left */
	assert_redacts_to(&r, "xaaay", "x********y");
	assert_redacts_to(&r, "aaaa", "********");
	redact_free(&r);
}

static void
test_redact_secret_that_is_a_prefix_of_another(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "abc");
	redact_add(&r, "abcdef");
	assert_redacts_to(&r, "[abcdef] [abc] [abcde]",
	    "[********] [********] [********de]");
	redact_free(&r);
	/* the same, added the other way round */
	redact_init(&r);
	redact_add(&r, "abcdef");
	redact_add(&r, "abc");
	assert_redacts_to(&r, "[abcdef]", "[********]");
	redact_free(&r);
}

static void
test_redact_overlapping_secrets_leave_no_fragment(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "abcd");
	redact_add(&r, "cdef");
	assert_redacts_to(&r, "1abcdef2", "1********2");
	assert_redacts_to(&r, "cdefabcd", "********");
	redact_free(&r);
}

static const char hostile[] = "p\"a's\\s\nw&<d>\t\x01";

static void
test_redact_matches_the_json_escaped_form(void **state)
{
	struct redact r;
	struct buf doc;
	struct json j;

	(void)state;
	redact_init(&r);
	redact_add(&r, hostile);
	buf_init(&doc, 4096);
	json_init(&j, &doc, false);
	json_array_begin(&j);
	json_string(&j, hostile);
	json_string(&j, "before" "p\"a's\\s\nw&<d>\t\x01" "after");
	json_array_end(&j);
	assert_int_equal(json_finish(&j), 0);
	assert_non_null(strstr(doc.data, "\\\""));
	assert_int_equal(redact_buf(&r, &doc), 0);
	assert_string_equal(doc.data, "[\"********\",\"before********after\"]");
	buf_release(&doc);
	redact_free(&r);
}

static void
test_redact_matches_the_xml_escaped_forms(void **state)
{
	struct redact r;
	struct buf doc;

	(void)state;
	redact_init(&r);
	redact_add(&r, hostile);
	buf_init(&doc, 4096);
	assert_int_equal(buf_adds(&doc, "<a m=\""), 0);
	assert_int_equal(xml_escape(&doc, hostile, strlen(hostile), true), 0);
	assert_int_equal(buf_adds(&doc, "\">x"), 0);
	assert_int_equal(xml_escape(&doc, hostile, strlen(hostile), false),
	    0);
	assert_int_equal(buf_adds(&doc, "</a>"), 0);
	assert_non_null(strstr(doc.data, "&amp;"));
	assert_int_equal(redact_buf(&r, &doc), 0);
	assert_string_equal(doc.data, "<a m=\"********\">x********</a>");
	buf_release(&doc);
	redact_free(&r);
}

static void
test_redact_matches_the_sh_quoted_form(void **state)
{
	struct redact r;
	struct buf doc;

	(void)state;
	redact_init(&r);
	redact_add(&r, "it's $(secret)");
	buf_init(&doc, 4096);
	assert_int_equal(buf_adds(&doc, "V="), 0);
	assert_int_equal(sh_quote(&doc, "say it's $(secret) now"), 0);
	assert_string_equal(doc.data, "V='say it'\\''s $(secret) now'");
	assert_int_equal(redact_buf(&r, &doc), 0);
	assert_string_equal(doc.data, "V='say ******** now'");
	buf_release(&doc);
	redact_free(&r);
}

static void
test_redact_fails_cleanly_at_the_buffer_max(void **state)
{
	struct redact r;
	struct buf out;

	(void)state;
	redact_init(&r);
	redact_add(&r, "x");
	buf_init(&out, 10);
	assert_int_equal(buf_adds(&out, "ab"), 0);
	/* "ab" + 3 x 8 stars does not fit in 10 bytes */
	assert_int_equal(redact_text(&r, "x-x-x", 5, &out), -1);
	assert_string_equal(out.data, "ab");
	assert_int_equal(out.len, 2);
	buf_release(&out);
	redact_free(&r);
}

static void
test_redact_buf_keeps_the_buffer_max(void **state)
{
	struct redact r;
	struct buf b;

	(void)state;
	redact_init(&r);
	redact_add(&r, "s3cr3t");
	buf_init(&b, 100);
	assert_int_equal(buf_adds(&b, "a s3cr3t b"), 0);
	assert_int_equal(redact_buf(&r, &b), 0);
	assert_string_equal(b.data, "a ******** b");
	assert_int_equal(b.max, 100);
	buf_release(&b);
	redact_free(&r);
}

static void
test_redact_handles_binary_text_with_nul(void **state)
{
	struct redact r;
	struct buf out;

	(void)state;
	redact_init(&r);
	redact_add(&r, "key");
	buf_init(&out, 100);
	assert_int_equal(redact_text(&r, "a\0key\0b", 7, &out), 0);
	assert_int_equal(out.len, 12);
	assert_memory_equal(out.data, "a\0********\0b", 12);
	buf_release(&out);
	redact_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redact_replaces_every_occurrence),
		cmocka_unit_test(test_redact_without_secrets_copies_text),
		cmocka_unit_test(test_redact_joins_back_to_back_occurrences),
		cmocka_unit_test(
		    test_redact_secret_that_is_a_prefix_of_another),
		cmocka_unit_test(
		    test_redact_overlapping_secrets_leave_no_fragment),
		cmocka_unit_test(test_redact_matches_the_json_escaped_form),
		cmocka_unit_test(test_redact_matches_the_xml_escaped_forms),
		cmocka_unit_test(test_redact_matches_the_sh_quoted_form),
		cmocka_unit_test(test_redact_fails_cleanly_at_the_buffer_max),
		cmocka_unit_test(test_redact_buf_keeps_the_buffer_max),
		cmocka_unit_test(test_redact_handles_binary_text_with_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
