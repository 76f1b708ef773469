/*
 * test_tap.c: the TAP parser (tap.c) on what pgTAP really prints, plus
 * the SQL script splitter (pgscript.c) that decides statement boundaries,
 * transaction handling and error lines for the sql and pgtap steps.
 *
 * The pgTAP texts below are the values pgTAP 1.2 returns (one string per
 * result row): plan(), ok()/is() with their failure diagnostics, skip(),
 * todo, diag(), finish() and no_plan()'s trailing plan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pg/pgscript.h"
#include "pg/tap.h"

/* ------------------------------------------------------------ helpers */

/* Feeds each string as one row value. */
static void
feed_rows(struct tap *t, const char *const *rows)
{
	for (; *rows != NULL; rows++)
		tap_feed(t, *rows, strlen(*rows));
}

static char *
problem(const struct tap *t)
{
	struct buf b;
	char *p;

	buf_init(&b, 1024);
	if (!tap_problem(t, &b)) {
		buf_release(&b);
		return NULL;
	}
	p = buf_detach(&b, NULL);
	buf_release(&b); /* buf_detach left it initialised */
	return p;
}

static void
assert_problem(const struct tap *t, const char *want)
{
	char *p = problem(t);

	if (want == NULL) {
		if (p != NULL)
			fail_msg("unexpected problem: %s", p);
		return;
	}
	if (p == NULL)
		fail_msg("no problem, wanted '%s'", want);
	if (strstr(p, want) == NULL)
		fail_msg("problem '%s' does not contain '%s'", p, want);
	free(p);
}

/* ------------------------------------------------------------ TAP */

static void
test_tap_passing_pgtap_file(void **state)
{
	static const char *const rows[] = { "1..3", "ok 1 - users table exists",
		"ok 2 - has column email", "ok 3 - email is unique", NULL };
	struct tap t;

	(void)state;
	tap_init(&t);
	feed_rows(&t, rows);
	assert_int_equal(t.n, 3);
	assert_true(t.has_plan);
	assert_int_equal(t.planned, 3);
	assert_int_equal(t.passed, 3);
	assert_int_equal(t.failed, 0);
	assert_int_equal(t.a[1].number, 2);
	assert_string_equal(t.a[1].description, "has column email");
	assert_true(t.a[2].ok);
	assert_problem(&t, NULL);
	tap_free(&t);
}

static void
test_tap_failure_keeps_its_diagnostics(void **state)
{
	static const char *const rows[] = { "1..2", "ok 1 - one is one",
		"not ok 2 - two is three\n# Failed test 2: \"two is three\"\n#"
		"         have: 2\n#         want: 3",
		"# Looks like you failed 1 test of 2", NULL };
	struct tap t;

	(void)state;
	tap_init(&t);
	feed_rows(&t, rows);
	assert_int_equal(t.n, 2);
	assert_false(t.a[1].ok);
	assert_int_equal(t.failed, 1);
	assert_string_equal(t.a[1].diag.data,
	    "Failed test 2: \"two is three\"\n        have: 2\n"
	    "        want: 3");
	/* finish()'s summary is the stream's, not the last assertion's */
	assert_string_equal(t.diag.data, "Looks like you failed 1 test of 2");
	assert_problem(&t, "1 of 2 assertions failed");
	tap_free(&t);
}

static void
test_tap_diag_row_attaches_to_previous_assertion(void **state)
{
	static const char *const rows[] = { "# before anything", "ok 1 - a",
		"# about a", "# more about a", "1..1", NULL };
	struct tap t;

	(void)state;
	tap_init(&t);
	feed_rows(&t, rows);
	assert_string_equal(t.diag.data, "before anything");
	assert_string_equal(t.a[0].diag.data, "about a\nmore about a");
	assert_problem(&t, NULL); /* a plan at the end (no_plan) is fine */
	tap_free(&t);
}

static void
test_tap_skip_and_todo_directives(void **state)
{
	static const char *const rows[] = { "1..5",
		"ok 1 # SKIP no pgcrypto here", "ok 2 - x # skip",
		"not ok 3 - not done yet # TODO write the feature",
		"ok 4 - bonus # TODO: unexpectedly passes",
		"ok 5 - has \\# in it # not a directive", NULL };
	struct tap t;

	(void)state;
	tap_init(&t);
	feed_rows(&t, rows);
	assert_int_equal(t.a[0].directive, TAP_DIR_SKIP);
	assert_string_equal(t.a[0].reason, "no pgcrypto here");
	assert_string_equal(t.a[0].description, "");
	assert_int_equal(t.a[1].directive, TAP_DIR_SKIP);
	assert_string_equal(t.a[1].description, "x");
	assert_int_equal(t.a[2].directive, TAP_DIR_TODO);
	assert_string_equal(t.a[2].reason, "write the feature");
	assert_string_equal(t.a[3].reason, "unexpectedly passes");
	assert_int_equal(t.a[4].directive, TAP_DIR_NONE);
	assert_string_equal(
	    t.a[4].description, "has # in it # not a directive");
	assert_int_equal(t.skipped, 2);
	assert_int_equal(t.todo, 2);
	assert_int_equal(t.passed, 1);
	assert_int_equal(t.failed, 0);
	assert_problem(&t, NULL); /* a failing TODO fails nothing */
	tap_free(&t);
}

static void
test_tap_not_ok_skip_is_a_failure(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, "1..1\nnot ok 1 # SKIP why",
	    strlen("1..1\nnot ok 1 # SKIP why"));
	assert_int_equal(t.failed, 1);
	assert_problem(&t, "1 of 1 assertion failed");
	tap_free(&t);
}

static void
test_tap_wrong_plan_count_fails(void **state)
{
	static const char *const rows[] = { "1..3", "ok 1", "ok 2",
		"# Looks like you planned 3 tests but ran 2", NULL };
	struct tap t;

	(void)state;
	tap_init(&t);
	feed_rows(&t, rows);
	assert_problem(&t, "planned 3 assertions but ran 2");
	tap_free(&t);
}

static void
test_tap_no_assertions_is_a_failure(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	assert_problem(&t, "no assertions");
	tap_feed(&t, "1..0", strlen("1..0"));
	assert_true(t.skip_all);
	assert_problem(&t, NULL); /* an explicit skip-all is not */
	tap_free(&t);

	tap_init(&t);
	tap_feed(&t, "some value\n42", strlen("some value\n42"));
	assert_int_equal(t.ignored, 2);
	assert_problem(&t, "no assertions");
	tap_free(&t);
}

static void
test_tap_skip_all_plan_keeps_its_reason(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, "1..0 # Skipped: no database\n",
	    strlen("1..0 # Skipped: no database\n"));
	assert_true(t.skip_all);
	assert_string_equal(t.skip_reason, "no database");
	assert_problem(&t, NULL);
	tap_free(&t);
}

static void
test_tap_missing_or_double_plan_fails(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, "ok 1\nok 2\n", strlen("ok 1\nok 2\n"));
	assert_problem(&t, "no plan");
	assert_int_equal(t.a[1].number, 2); /* numbers follow on */
	tap_free(&t);

	tap_init(&t);
	tap_feed(&t, "1..1\nok 1\n1..1\n", strlen("1..1\nok 1\n1..1\n"));
	assert_problem(&t, "2 plans");
	tap_free(&t);
}

static void
test_tap_bail_out_stops_the_stream(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, "1..3\nok 1\nBail out! database gone \nok 2\n",
	    strlen("1..3\nok 1\nBail out! database gone \nok 2\n"));
	assert_true(t.bailed);
	assert_string_equal(t.bail_reason, "database gone");
	assert_int_equal(t.n, 1);
	assert_problem(&t, "bailed out: database gone");
	tap_free(&t);
}

static void
test_tap_oversized_bail_reason_still_explains(void **state)
{
	size_t big = TAP_MAX_TEXT * 2;
	char *line = xmalloc(big + 16);
	char *p;
	struct tap t;

	(void)state;
	memcpy(line, "Bail out! ", 10);
	memset(line + 10, 'r', big);
	tap_init(&t);
	tap_feed(&t, line, big + 10);
	p = problem(&t);
	assert_non_null(p);
	assert_true(str_has_prefix(p, "bailed out: rrr"));
	assert_true(strlen(p) <= 400);
	free(p);
	tap_free(&t);
	free(line);
}

static void
test_tap_crlf_and_version_lines(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, "TAP version 13\r\n1..1\r\nok 1 - crlf\r\n",
	    strlen("TAP version 13\r\n1..1\r\nok 1 - crlf\r\n"));
	assert_int_equal(t.ignored, 0);
	assert_string_equal(t.a[0].description, "crlf");
	assert_problem(&t, NULL);
	tap_free(&t);
}

static void
test_tap_lookalikes_are_not_assertions(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, "okay\nnot okay\n1..x\n    ok 1 - subtest\nok1\n",
	    strlen("okay\nnot okay\n1..x\n    ok 1 - subtest\nok1\n"));
	assert_int_equal(t.n, 0);
	assert_int_equal(t.ignored, 5);
	assert_false(t.has_plan);
	tap_free(&t);
}

static void
test_tap_truncated_input(void **state)
{
	static const char full[] = "1..2\nok 1 - first\nnot ok 2 - sec";
	struct tap t;

	(void)state;
	/* Every prefix parses without trouble; the cut line still counts. */
	for (size_t n = 0; n <= sizeof(full) - 1; n++) {
		tap_init(&t);
		tap_feed(&t, full, n);
		assert_true(t.n <= 2);
		tap_free(&t);
	}
	tap_init(&t);
	tap_feed(&t, full, sizeof(full) - 1);
	assert_int_equal(t.n, 2);
	assert_string_equal(t.a[1].description, "sec");
	tap_free(&t);
	/* An assertion cut inside "not ok" is no assertion. */
	tap_init(&t);
	tap_feed(&t, "1..1\nnot o", strlen("1..1\nnot o"));
	assert_int_equal(t.n, 0);
	assert_problem(&t, "no assertions");
	tap_free(&t);
}

static void
test_tap_embedded_nul_line_is_ignored(void **state)
{
	static const char in[] = "1..1\nok 1 - a\0b\nok 1 - c\n";
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, in, sizeof(in) - 1);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.a[0].description, "c");
	assert_int_equal(t.ignored, 1);
	tap_free(&t);
}

static void
test_tap_oversized_texts_are_cut(void **state)
{
	size_t big = TAP_MAX_TEXT * 3;
	char *line = xmalloc(big + 16);
	struct tap t;

	(void)state;
	memcpy(line, "ok 1 - ", 7);
	memset(line + 7, 'd', big);
	tap_init(&t);
	tap_feed(&t, line, big + 7);
	assert_int_equal(strlen(t.a[0].description), TAP_MAX_TEXT + 3);
	assert_string_equal(t.a[0].description + TAP_MAX_TEXT, "...");
	/* diagnostics: capped per assertion, marked once */
	line[0] = '#';
	line[1] = ' ';
	for (int i = 0; i < 40; i++)
		tap_feed(&t, line, 2 + TAP_MAX_TEXT);
	assert_true(t.a[0].diag.len <= TAP_MAX_DIAG + 5);
	assert_string_equal(t.a[0].diag.data + t.a[0].diag.len - 5, "[...]");
	tap_free(&t);
	free(line);
}

static void
test_tap_oversized_assertion_count_fails(void **state)
{
	struct buf in;
	struct tap t;

	(void)state;
	buf_init(&in, 8u << 20);
	for (unsigned i = 0; i < TAP_MAX_ASSERTIONS + 10; i++)
		assert_int_equal(buf_addf(&in, "ok %u\n", i + 1), 0);
	tap_init(&t);
	tap_feed(&t, "1..100010\n", strlen("1..100010\n"));
	tap_feed(&t, in.data, in.len);
	assert_int_equal(t.n, TAP_MAX_ASSERTIONS);
	assert_int_equal(t.dropped, 10);
	assert_problem(&t, "more than 100000 assertions");
	tap_free(&t);
	buf_release(&in);
}

static void
test_tap_huge_numbers_are_not_numbers(void **state)
{
	struct tap t;

	(void)state;
	tap_init(&t);
	tap_feed(&t, "ok 99999999999999999999 - big\n1..99999999999999999999",
	    strlen("ok 99999999999999999999 - big\n1..99999999999999999999"));
	assert_int_equal(t.n, 1);
	assert_int_equal(t.a[0].number, 1);
	assert_false(t.has_plan);
	tap_free(&t);
}

/* ------------------------------------------------------------ scripts */

static void
parse_ok(const char *sql, struct pg_script *s)
{
	struct errbuf err;

	err_clear(&err);
	if (pg_script_parse("f.sql", sql, strlen(sql), s, &err) < 0)
		fail_msg("parse failed: %s", err.msg);
}

static void
parse_fails(const char *sql, const char *want)
{
	struct pg_script s;
	struct errbuf err;

	err_clear(&err);
	assert_int_equal(
	    pg_script_parse("f.sql", sql, strlen(sql), &s, &err), -1);
	assert_int_equal(err.code, SH_ERR_MANIFEST);
	if (strstr(err.msg, want) == NULL)
		fail_msg("'%s' does not contain '%s'", err.msg, want);
	assert_null(s.stmts);
}

static char *
stmt(const struct pg_script *s, size_t i)
{
	return xstrndup(s->text + s->stmts[i].off, s->stmts[i].len);
}

static void
assert_stmt(
    const struct pg_script *s, size_t i, const char *text, unsigned line)
{
	char *got = stmt(s, i);

	assert_string_equal(got, text);
	assert_int_equal(s->stmts[i].line, line);
	free(got);
}

static void
test_script_splits_on_top_level_semicolons(void **state)
{
	struct pg_script s;

	(void)state;
	parse_ok("-- header; not a statement\n"
	         "CREATE TABLE t (a int, b text);\n"
	         "\n"
	         "INSERT INTO t VALUES (1, 'a;b''c');;\n"
	         "/* block; /* nested; */ still */ SELECT \"x;y\" FROM t\n"
	         "  WHERE a = 1\n",
	    &s);
	assert_int_equal(s.n, 3);
	assert_stmt(&s, 0, "CREATE TABLE t (a int, b text)", 2);
	assert_stmt(&s, 1, "INSERT INTO t VALUES (1, 'a;b''c')", 4);
	assert_stmt(&s, 2, "SELECT \"x;y\" FROM t\n  WHERE a = 1", 5);
	assert_false(s.manages_txn);
	pg_script_free(&s);
}

static void
test_script_dollar_quotes_and_e_strings(void **state)
{
	struct pg_script s;

	(void)state;
	parse_ok("DO $$BEGIN\n  PERFORM 1;\nEND$$;\n"
	         "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$\n"
	         "  SELECT 'x;' $inner$ ; $inner$\n$body$;\n"
	         "SELECT E'it\\'s; fine', 'plain\\', $1, a$b;\n",
	    &s);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.stmts[0].line, 1);
	assert_int_equal(s.stmts[1].line, 4);
	assert_stmt(&s, 2, "SELECT E'it\\'s; fine', 'plain\\', $1, a$b", 7);
	pg_script_free(&s);
}

static void
test_script_begin_atomic_bodies_stay_whole(void **state)
{
	struct pg_script s;

	(void)state;
	parse_ok("CREATE OR REPLACE FUNCTION g(x int) RETURNS int\n"
	         "LANGUAGE sql BEGIN ATOMIC\n"
	         "  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n"
	         "  SELECT 2;\n"
	         "END;\n"
	         "SELECT g(1);\n",
	    &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.stmts[1].line, 6);
	assert_false(s.manages_txn); /* BEGIN ATOMIC is not a transaction */
	pg_script_free(&s);
}

static void
test_script_detects_its_own_transactions(void **state)
{
	static const char *const own[] = { "BEGIN;\nSELECT 1;\nCOMMIT;",
		"start transaction; select 1; end;", "SELECT 1; ROLLBACK;",
		"prepare transaction 'x';", NULL };
	struct pg_script s;

	(void)state;
	for (size_t i = 0; own[i] != NULL; i++) {
		parse_ok(own[i], &s);
		assert_true(s.manages_txn);
		pg_script_free(&s);
	}
	parse_ok("DO $$BEGIN PERFORM 1; END$$; SELECT 'commit';\n"
	         "-- BEGIN;\nPREPARE q AS SELECT 1;",
	    &s);
	assert_false(s.manages_txn);
	pg_script_free(&s);
}

static void
test_script_follows_standard_conforming_strings(void **state)
{
	struct pg_script s;

	(void)state;
	/* off: \' escapes a quote, so the ';' inside stays inside */
	parse_ok("SET standard_conforming_strings = off;\n"
	         "SELECT 'a\\'; b';\n"
	         "set session STANDARD_CONFORMING_STRINGS to 'on';\n"
	         "SELECT 'C:\\';\n"
	         "SET standard_conforming_strings=false;\n"
	         "SELECT 'x\\';y';\n"
	         "RESET standard_conforming_strings;\n"
	         "SELECT 'D:\\';",
	    &s);
	assert_int_equal(s.n, 8);
	assert_true(s.sets_scs);
	assert_int_equal(s.stmts[7].line, 8);
	pg_script_free(&s);
	/* SET LOCAL lasts a transaction: not followed; nor other settings */
	parse_ok("SET LOCAL standard_conforming_strings = off;\n"
	         "SET standard_conforming_strings_x = off;\n"
	         "SELECT 'C:\\';",
	    &s);
	assert_int_equal(s.n, 3);
	assert_false(s.sets_scs);
	pg_script_free(&s);
	parse_fails("SET standard_conforming_strings = off;\n"
	            "SELECT 'C:\\';\n",
	    "f.sql:2: unterminated quoted string");
}

static void
test_script_rejects_backslash_commands_with_line(void **state)
{
	(void)state;
	parse_fails("SELECT 1;\n\\set ON_ERROR_STOP 1\n",
	    "f.sql:2: psql backslash command '\\set' is not supported");
	parse_fails("SELECT 1;\n\n\nSELECT 2 \\gexec\n", "f.sql:4:");
	parse_fails("\\i other.sql", "'\\i'");
}

static void
test_script_allows_backslashes_in_quotes_and_comments(void **state)
{
	struct pg_script s;

	(void)state;
	parse_ok("-- \\set x\n/* \\i y */\nSELECT '\\n', E'\\\\', $$\\q$$, "
	         "\"a\\b\";\n",
	    &s);
	assert_int_equal(s.n, 1);
	pg_script_free(&s);
}

static void
test_script_rejects_unterminated_and_bad_bytes(void **state)
{
	struct pg_script s;
	struct errbuf err;

	(void)state;
	parse_fails(
	    "SELECT 1;\nSELECT 'abc;\n", "f.sql:2: unterminated quoted");
	parse_fails("SELECT \"x", "unterminated quoted identifier");
	parse_fails("SELECT 1; /* /* */", "f.sql:1: unterminated /*");
	parse_fails("DO $x$ BEGIN", "unterminated dollar-quoted");
	assert_int_equal(
	    pg_script_parse("f.sql", "SELECT 1\0;", 10, &s, &err), -1);
	assert_non_null(strstr(err.msg, "NUL"));
	assert_int_equal(
	    pg_script_parse("f.sql", "SELECT '\xff';", 11, &s, &err), -1);
	assert_non_null(strstr(err.msg, "UTF-8"));
}

static void
test_script_truncated_input_never_overreads(void **state)
{
	static const char full[] = "SELECT $a$x$a$, 'q''', \"i\", E'\\'' "
	                           "/* c */ -- d\n; DO $$ $$;";
	struct pg_script s;
	struct errbuf err;

	(void)state;
	for (size_t n = 0; n <= sizeof(full) - 1; n++) {
		char *cut = xstrndup(full, n); /* exact-size allocation */

		if (pg_script_parse("f.sql", cut, n, &s, &err) == 0)
			pg_script_free(&s);
		free(cut);
	}
	parse_ok(full, &s);
	assert_int_equal(s.n, 2);
	pg_script_free(&s);
}

static void
test_script_empty_and_comment_only(void **state)
{
	struct pg_script s;

	(void)state;
	parse_ok("", &s);
	assert_int_equal(s.n, 0);
	pg_script_free(&s);
	parse_ok("-- nothing\n/* at all */\n;;\n", &s);
	assert_int_equal(s.n, 0);
	pg_script_free(&s);
}

static void
test_sql_line_counts_characters_not_bytes(void **state)
{
	static const char sql[] = "SELECT 'é';\nSELECT 'ü';\nSELECT nope;";

	(void)state;
	/* "nope" is character 32: the two accents are 2 bytes each */
	assert_int_equal(pg_sql_line(sql, sizeof(sql) - 1, 1, 32), 3);
	assert_int_equal(pg_sql_line(sql, sizeof(sql) - 1, 1, 11), 1);
	assert_int_equal(pg_sql_line(sql, sizeof(sql) - 1, 1, 12), 1);
	assert_int_equal(pg_sql_line(sql, sizeof(sql) - 1, 1, 13), 2);
	assert_int_equal(pg_sql_line(sql, sizeof(sql) - 1, 7, 1), 7);
	assert_int_equal(pg_sql_line(sql, sizeof(sql) - 1, 1, 9999), 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tap_passing_pgtap_file),
		cmocka_unit_test(test_tap_failure_keeps_its_diagnostics),
		cmocka_unit_test(
		    test_tap_diag_row_attaches_to_previous_assertion),
		cmocka_unit_test(test_tap_skip_and_todo_directives),
		cmocka_unit_test(test_tap_not_ok_skip_is_a_failure),
		cmocka_unit_test(test_tap_wrong_plan_count_fails),
		cmocka_unit_test(test_tap_no_assertions_is_a_failure),
		cmocka_unit_test(test_tap_skip_all_plan_keeps_its_reason),
		cmocka_unit_test(test_tap_missing_or_double_plan_fails),
		cmocka_unit_test(test_tap_bail_out_stops_the_stream),
		cmocka_unit_test(test_tap_oversized_bail_reason_still_explains),
		cmocka_unit_test(test_tap_crlf_and_version_lines),
		cmocka_unit_test(test_tap_lookalikes_are_not_assertions),
		cmocka_unit_test(test_tap_truncated_input),
		cmocka_unit_test(test_tap_embedded_nul_line_is_ignored),
		cmocka_unit_test(test_tap_oversized_texts_are_cut),
		cmocka_unit_test(test_tap_oversized_assertion_count_fails),
		cmocka_unit_test(test_tap_huge_numbers_are_not_numbers),
		cmocka_unit_test(test_script_splits_on_top_level_semicolons),
		cmocka_unit_test(test_script_dollar_quotes_and_e_strings),
		cmocka_unit_test(test_script_begin_atomic_bodies_stay_whole),
		cmocka_unit_test(test_script_detects_its_own_transactions),
		cmocka_unit_test(
		    test_script_follows_standard_conforming_strings),
		cmocka_unit_test(
		    test_script_rejects_backslash_commands_with_line),
		cmocka_unit_test(
		    test_script_allows_backslashes_in_quotes_and_comments),
		cmocka_unit_test(
		    test_script_rejects_unterminated_and_bad_bytes),
		cmocka_unit_test(test_script_truncated_input_never_overreads),
		cmocka_unit_test(test_script_empty_and_comment_only),
		cmocka_unit_test(test_sql_line_counts_characters_not_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
