/*
 * test_migration.c: dbmate migration files (pg/migration.c): the file
 * name's version, the -- migrate:up / -- migrate:down sections as dbmate
 * finds them, transaction:false, and every way a file is refused, with
 * the line it names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pg/migration.h"

/* ------------------------------------------------------------ helpers */

static int
parse(const char *text, struct pg_migration *m, struct errbuf *err)
{
	memset(err, 0, sizeof(*err));
	return pg_migration_parse("db/001_x.sql", text, strlen(text), m, err);
}

static void
assert_refused(const char *text, const char *msg)
{
	struct pg_migration m;
	struct errbuf err;

	assert_int_equal(parse(text, &m, &err), -1);
	assert_int_equal(err.code, SH_ERR_MANIFEST);
	assert_string_equal(err.msg, msg);
	pg_migration_free(&m);
}

/* The statement k of m as text. */
static char *
stmt(const struct pg_migration *m, size_t k)
{
	return xstrndup(
	    m->script.text + m->script.stmts[k].off, m->script.stmts[k].len);
}

/* ------------------------------------------------------------ names */

static void
test_migration_version_is_the_digits_before_the_underscore(void **state)
{
	(void)state;
	assert_int_equal(pg_migration_version("20240101120000_init.sql"), 14);
	assert_int_equal(pg_migration_version("001_a.sql"), 3);
	assert_int_equal(pg_migration_version("1_.sql"), 1);
}

static void
test_migration_version_rejects_other_names(void **state)
{
	char big[PG_MIGRATION_VERSION_MAX + 10];

	(void)state;
	assert_int_equal(pg_migration_version("init.sql"), 0);
	assert_int_equal(pg_migration_version("001init.sql"), 0);
	assert_int_equal(pg_migration_version("_001_a.sql"), 0);
	assert_int_equal(pg_migration_version("001_a.sql.bak"), 0);
	assert_int_equal(pg_migration_version("001_a.SQL"), 0);
	assert_int_equal(pg_migration_version("001_"), 0);
	assert_int_equal(pg_migration_version(""), 0);
	/* oversized: more digits than schema_migrations.version holds */
	memset(big, '1', PG_MIGRATION_VERSION_MAX + 1);
	memcpy(big + PG_MIGRATION_VERSION_MAX + 1, "_a.sql", 7);
	assert_int_equal(pg_migration_version(big), 0);
	big[PG_MIGRATION_VERSION_MAX] = '_';
	memcpy(big + PG_MIGRATION_VERSION_MAX + 1, "a.sql", 6);
	assert_int_equal(pg_migration_version(big), PG_MIGRATION_VERSION_MAX);
}

/* ------------------------------------------------------------ sections */

static void
test_migration_runs_only_the_up_section(void **state)
{
	struct pg_migration m;
	struct errbuf err;
	char *s;

	(void)state;
	assert_int_equal(parse("-- migrate:up\n"
	                       "CREATE TABLE a (x int);\n"
	                       "INSERT INTO a VALUES (1);\n"
	                       "-- migrate:down\n"
	                       "DROP TABLE a;\n",
	                     &m, &err),
	    0);
	assert_true(m.transaction);
	assert_int_equal(m.up_line, 1);
	assert_int_equal(m.script.n, 2);
	s = stmt(&m, 1);
	assert_string_equal(s, "INSERT INTO a VALUES (1)");
	free(s);
	assert_null(strstr(m.up.data, "DROP"));
	pg_migration_free(&m);
}

static void
test_migration_lines_are_the_files_lines(void **state)
{
	struct pg_migration m;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse("-- a header comment\n"
	                       "\n"
	                       "  -- indented comment; with 'quotes\n"
	                       "-- migrate:up\n"
	                       "SELECT 1;\n"
	                       "\n"
	                       "SELECT 2;\n",
	                     &m, &err),
	    0);
	assert_int_equal(m.up_line, 4);
	assert_int_equal(m.script.n, 2);
	assert_int_equal(m.script.stmts[0].line, 5);
	assert_int_equal(m.script.stmts[1].line, 7);
	/* the earlier lines are blank: server positions count the same */
	assert_int_equal(strncmp(m.up.data, "\n\n\n-- migrate:up\n", 17), 0);
	assert_int_equal(
	    pg_sql_line(m.up.data, m.up.len, 1,
	        (unsigned)(strstr(m.up.data, "2;") - m.up.data) + 1),
	    7);
	pg_migration_free(&m);
}

static void
test_migration_transaction_false_option(void **state)
{
	struct pg_migration m;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse("--migrate:up   transaction:false\t\n"
	                       "CREATE INDEX CONCURRENTLY i ON a (x);\n",
	                     &m, &err),
	    0);
	assert_false(m.transaction);
	pg_migration_free(&m);
	assert_int_equal(
	    parse("-- migrate:up transaction:true\nSELECT 1;\n", &m, &err), 0);
	assert_true(m.transaction);
	pg_migration_free(&m);
}

static void
test_migration_down_section_is_optional(void **state)
{
	struct pg_migration m;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse("-- migrate:up\nSELECT 1", &m, &err), 0);
	assert_int_equal(m.script.n, 1);
	pg_migration_free(&m);
}

static void
test_migration_lookalike_directives_are_comments(void **state)
{
	struct pg_migration m;
	struct errbuf err;

	(void)state;
	/* "migrate:upgrade" is no directive; an indented one neither, as
	 * dbmate's ^-- anchors at the line start */
	assert_int_equal(parse("-- migrate:up\n"
	                       "-- migrate:upgrade notes\n"
	                       "  -- migrate:down\n"
	                       "SELECT 1;\n",
	                     &m, &err),
	    0);
	assert_int_equal(m.script.n, 1);
	pg_migration_free(&m);
}

static void
test_migration_up_and_empty_sections(void **state)
{
	struct pg_migration m;
	struct errbuf err;

	(void)state;
	assert_int_equal(
	    parse("-- migrate:up\n-- migrate:down\nDROP TABLE a;\n", &m, &err),
	    0);
	assert_int_equal(m.script.n, 0);
	pg_migration_free(&m);
}

/* ------------------------------------------------------------ refusals */

static void
test_migration_rejects_a_missing_up(void **state)
{
	(void)state;
	assert_refused("CREATE TABLE a (x int);\n",
	    "db/001_x.sql:1: no '-- migrate:up' line");
	assert_refused("-- migrate:down\nDROP TABLE a;\n",
	    "db/001_x.sql:1: no '-- migrate:up' line");
	assert_refused("", "db/001_x.sql:1: no '-- migrate:up' line");
}

static void
test_migration_rejects_sql_before_up(void **state)
{
	(void)state;
	assert_refused("-- ok\n\nCREATE TYPE t AS ENUM ('a');\n"
	               "-- migrate:up\nSELECT 1;\n",
	    "db/001_x.sql:3: SQL before '-- migrate:up'");
}

static void
test_migration_rejects_bad_section_order(void **state)
{
	(void)state;
	assert_refused("-- migrate:down\nSELECT 1;\n-- migrate:up\nSELECT 2;\n",
	    "db/001_x.sql:1: '-- migrate:down' before '-- migrate:up'");
	assert_refused("-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;\n",
	    "db/001_x.sql:3: a second '-- migrate:up' line: one up section "
	    "per file");
	assert_refused("-- migrate:up\n-- migrate:down\n\n-- migrate:down\n",
	    "db/001_x.sql:4: a second '-- migrate:down'");
}

static void
test_migration_rejects_unknown_options(void **state)
{
	(void)state;
	/* "transaction: false" is not dbmate's syntax: dbmate would run the
	 * file in a transaction without a word */
	assert_refused("\n-- migrate:up transaction: false\nSELECT 1;\n",
	    "db/001_x.sql:2: unknown '-- migrate:up' option: only "
	    "transaction:false is known");
	assert_refused("-- migrate:up notransaction\nSELECT 1;\n",
	    "db/001_x.sql:1: unknown '-- migrate:up' option: only "
	    "transaction:false is known");
}

static void
test_migration_rejects_bad_bytes(void **state)
{
	struct pg_migration m;
	struct errbuf err;
	static const char nul[] = "-- migrate:up\nSELECT '\0';\n";

	(void)state;
	assert_refused(
	    "-- migrate:up\nSELECT '\xff';\n", "db/001_x.sql: not valid UTF-8");
	memset(&err, 0, sizeof(err));
	assert_int_equal(
	    pg_migration_parse("n.sql", nul, sizeof(nul) - 1, &m, &err), -1);
	assert_string_equal(err.msg, "n.sql: contains a NUL byte");
	pg_migration_free(&m);
}

static void
test_migration_rejects_what_psql_would_not_split(void **state)
{
	(void)state;
	assert_refused("-- migrate:up\nSELECT 1;\n\\gexec\n",
	    "db/001_x.sql:3: psql backslash command '\\gexec' is not "
	    "supported: stagehand sends SQL through libpq, not psql");
	assert_refused("-- migrate:up\n\nSELECT 'open;\n-- migrate:down\n",
	    "db/001_x.sql:3: unterminated quoted string");
}

static void
test_migration_truncated_input_never_overreads(void **state)
{
	static const char full[] = "-- migrate:up transaction:false\n"
	                           "SELECT $a$ x $a$;\n-- migrate:down\n";
	struct pg_migration m;
	struct errbuf err;

	(void)state;
	for (size_t n = 0; n <= sizeof(full) - 1; n++) {
		char *p = xmalloc(n + 1); /* no NUL where the data ends */

		memcpy(p, full, n);
		p[n] = '\0';
		memset(&err, 0, sizeof(err));
		(void)pg_migration_parse("t.sql", p, n, &m, &err);
		pg_migration_free(&m);
		free(p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    test_migration_version_is_the_digits_before_the_underscore),
		cmocka_unit_test(test_migration_version_rejects_other_names),
		cmocka_unit_test(test_migration_runs_only_the_up_section),
		cmocka_unit_test(test_migration_lines_are_the_files_lines),
		cmocka_unit_test(test_migration_transaction_false_option),
		cmocka_unit_test(test_migration_down_section_is_optional),
		cmocka_unit_test(
		    test_migration_lookalike_directives_are_comments),
		cmocka_unit_test(test_migration_up_and_empty_sections),
		cmocka_unit_test(test_migration_rejects_a_missing_up),
		cmocka_unit_test(test_migration_rejects_sql_before_up),
		cmocka_unit_test(test_migration_rejects_bad_section_order),
		cmocka_unit_test(test_migration_rejects_unknown_options),
		cmocka_unit_test(test_migration_rejects_bad_bytes),
		cmocka_unit_test(
		    test_migration_rejects_what_psql_would_not_split),
		cmocka_unit_test(
		    test_migration_truncated_input_never_overreads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
