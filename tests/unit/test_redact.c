/*
 * test_redact.c: secrets never survive redaction, whatever form the
 * writers escaped them into, however they overlap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/json.h"
#include "util/redact.h"
#include "util/xml.h"

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
	assert_redacts_to(
	    &r, "pw=hunter2; again hunter2.", "pw=********; again ********.");
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
	/* "abcde" is a 5-byte prefix of "abcdef": a fragment, masked */
	assert_redacts_to(&r, "[abcdef] [abc] [abcde] [abcX]",
	    "[********] [********] [********] [********X]");
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
	json_string(&j, "before"
	                "p\"a's\\s\nw&<d>\t\x01"
	                "after");
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
	assert_int_equal(xml_escape(&doc, hostile, strlen(hostile), false), 0);
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

/* Every head and tail cut of the secret, as shell.c cuts a script's first
 * line (head + " ...") and step.c an output tail: no piece of 4+ bytes. */
static void
test_redact_masks_what_any_cut_leaves(void **state)
{
	const char *sec = "Sup3rS3cretHunter2XYZ";
	size_t n = strlen(sec);
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, sec);
	assert_redacts_to(&r, "ALTER ROLE x PASSWORD 'Sup3rS3cret ...",
	    "ALTER ROLE x PASSWORD '******** ...");
	assert_redacts_to(&r, "3cretHunter2XYZ\nnext", "********\nnext");
	for (size_t k = REDACT_FRAGMENT_MIN; k <= n; k++) {
		char head[64], tail[64];

		snprintf(head, sizeof(head), "ran: x%.*s ...", (int)k, sec);
		assert_redacts_to(&r, head, "ran: x******** ...");
		snprintf(tail, sizeof(tail), "%s\nmore", sec + n - k);
		assert_redacts_to(&r, tail, "********\nmore");
	}
	/* below the minimum a piece is left: the documented limit */
	assert_redacts_to(&r, "Sup ...", "Sup ...");
	redact_free(&r);
}

/* A fragment of an escaped form ends on a character of the value, so
 * masking it never leaves half an escape behind. */
static void
test_redact_fragment_never_splits_an_escape(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "ab\"cd\"ef");
	/* JSON of the prefix ab"cd\ : the \\ is not part of the secret */
	assert_redacts_to(&r, "[\"ab\\\"cd\\\\\"]", "[\"********\\\\\"]");
	/* XML of the prefix ab"c then text */
	assert_redacts_to(&r, "<a>ab&quot;c&amp;</a>", "<a>********&amp;</a>");
	/* a suffix that starts inside the escape of a quote */
	assert_redacts_to(&r, "[\"quot;ef\"]", "[\"quot;ef\"]");
	redact_free(&r);
}

static void
test_redact_masks_each_line_of_a_multiline_secret(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "first-line-111\r\nsecond-line-22\nxy\n");
	assert_redacts_to(&r, "        second-line-22\n", "        ********\n");
	assert_redacts_to(&r, "exit 1: first-line-111", "exit 1: ********");
	/* a line below the minimum is not a secret of its own */
	assert_redacts_to(&r, "xy", "xy");
	/* the whole value, as JSON writes it */
	assert_redacts_to(&r, "\"first-line-111\\r\\nsecond-line-22\\nxy\\n\"",
	    "\"********\"");
	redact_free(&r);
}

/* remote.c shows control characters of an error line as '?'. */
static void
test_redact_masks_the_form_with_controls_replaced(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "tab\there\x01-S3cr3t");
	assert_redacts_to(&r, "exit 3: tab?here?-S3cr3t", "exit 3: ********");
	assert_redacts_to(&r, "exit 3: ere?-S3cr3t", "exit 3: ********");
	assert_redacts_to(&r, "\"tab\\there\\u0001-S3cr3t\"", "\"********\"");
	redact_free(&r);
}

/* A secret shorter than REDACT_FRAGMENT_MIN: masked whole, wherever. */
static void
test_redact_short_secret_is_masked_whole(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "Zq#");
	assert_redacts_to(&r, "aZq#b Zq# Zq", "a********b ******** Zq");
	redact_free(&r);
}

/* Built documents: whole values only, so numbers and markup survive. */
static void
test_redact_doc_matches_whole_values_only(void **state)
{
	struct redact r;
	struct buf out;

	(void)state;
	redact_init(&r);
	redact_add(&r, "12345678");
	buf_init(&out, 1024);
	assert_int_equal(redact_doc(&r, "{\"ms\":1234}", 11, &out), 0);
	assert_string_equal(out.data, "{\"ms\":1234}");
	buf_reset(&out);
	assert_int_equal(redact_doc(&r, "[\"12345678\"]", 12, &out), 0);
	assert_string_equal(out.data, "[\"********\"]");
	buf_release(&out);
	assert_redacts_to(&r, "took 1234 ms", "took ******** ms");
	redact_free(&r);
}

/* One-byte secrets between other bytes: the worst growth still fits the
 * max that ui.c and main.c size their buffers with. */
static void
test_redact_max_bounds_the_worst_growth(void **state)
{
	const char *in = "axaxaxaxaxaxax";
	struct redact r;
	struct buf out;

	(void)state;
	redact_init(&r);
	redact_add(&r, "x");
	buf_init(&out, redact_max(strlen(in)));
	assert_int_equal(redact_text(&r, in, strlen(in), &out), 0);
	assert_int_equal(out.len, 7 * (1 + strlen(REDACTED)));
	buf_release(&out);
	redact_free(&r);
}

/* An output tail: even 1 byte of a secret its cut left at the start is
 * masked; elsewhere a piece that short stays (it is ordinary text). */
static void
test_redact_tail_masks_any_piece_at_its_start(void **state)
{
	struct redact r;
	struct buf out;

	(void)state;
	redact_init(&r);
	redact_add(&r, "Sup3rS3cretHunter2XYZ");
	buf_init(&out, 1024);
	for (size_t k = 1; k < 4; k++) {
		const char *tail = "Sup3rS3cretHunter2XYZ" + 21 - k;
		char in[64];

		snprintf(in, sizeof(in), "%stttt XYZ", tail);
		buf_reset(&out);
		assert_int_equal(redact_tail(&r, in, strlen(in), &out), 0);
		assert_string_equal(out.data, "********tttt XYZ");
	}
	buf_reset(&out);
	assert_int_equal(redact_tail(&r, "ok XYZ", 6, &out), 0);
	assert_string_equal(out.data, "ok XYZ");
	buf_release(&out);
	redact_free(&r);
}

/* Found by fuzz_redact: the XML form of one line ("efx) spells the raw
 * form of another (&quot;efx); the second must keep its own fragments. */
static void
test_redact_keeps_fragments_of_a_form_spelled_like_another(void **state)
{
	struct redact r;

	(void)state;
	redact_init(&r);
	redact_add(&r, "\"efx\n&quot;efx");
	assert_redacts_to(&r, "[&quo)", "[********)");
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
		cmocka_unit_test(test_redact_masks_what_any_cut_leaves),
		cmocka_unit_test(test_redact_fragment_never_splits_an_escape),
		cmocka_unit_test(
		    test_redact_masks_each_line_of_a_multiline_secret),
		cmocka_unit_test(
		    test_redact_masks_the_form_with_controls_replaced),
		cmocka_unit_test(test_redact_short_secret_is_masked_whole),
		cmocka_unit_test(test_redact_doc_matches_whole_values_only),
		cmocka_unit_test(test_redact_max_bounds_the_worst_growth),
		cmocka_unit_test(test_redact_tail_masks_any_piece_at_its_start),
		cmocka_unit_test(
		    test_redact_keeps_fragments_of_a_form_spelled_like_another),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
