/*
 * test_migration_test.c: the `migration_test` kind's load-time checks,
 * above all `transaction`: per_file (the default) or none, for the data
 * and between files; anything else is refused at the field. The data
 * files are real files (the kind reads and splits them at load time),
 * written into a temp dir by the group setup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/kind.h"
#include "model/manifest.h"
#include "steps/registry.h"

#define STEP "stagehand: 1\nstage: t\nsteps:\n  - name: m\n    migration_test: "
#define STEP_KIND "migration_test"

#include "stepcase.h"

struct fx {
	char dir[64];
	char data[96]; /* a fixture only psql's way of running can load */
	char between[96];
};

static int
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	strcpy(fx->dir, "/tmp/test_migration_test.XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->data, sizeof(fx->data), "%s/data.sql", fx->dir);
	snprintf(fx->between, sizeof(fx->between), "%s/vacuum.sql", fx->dir);
	if (write_file(fx->data,
	        "CREATE TABLE t (x int);\nALTER SYSTEM SET work_mem = '8MB';\n"
	        "CREATE DATABASE other;\nCREATE INDEX CONCURRENTLY ON t (x);"
	        "\n") < 0 ||
	    write_file(fx->between, "VACUUM ANALYZE;\n") < 0)
		return -1;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	unlink(fx->data);
	unlink(fx->between);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* A body with the fixture's data and between files and fields. */
static char *
body(const struct fx *fx, const char *fields)
{
	return xasprintf("{old_bin: /o/bin, new_bin: /n/bin, data: [%s], "
	                 "between: [%s]%s}",
	    fx->data, fx->between, fields);
}

static void
test_transaction_loads(void **state)
{
	const struct fx *fx = *state;
	const char *want = "migration_test /o/bin -> /n/bin (pg_upgrade), 1 "
	                   "data file";
	char *b, *w;

	b = body(fx, "");
	expect_ok(b, want);
	free(b);
	b = body(fx, ", transaction: per_file");
	expect_ok(b, want);
	free(b);
	b = body(fx, ", transaction: none, method: both");
	w = xasprintf("migration_test /o/bin -> /n/bin (pg_upgrade, "
	              "pg_dumpall), 1 data file, statement by statement");
	expect_ok(b, w);
	free(w);
	free(b);
}

static void
test_transaction_refused(void **state)
{
	const struct fx *fx = *state;
	char *b;

	b = body(fx, ", transaction: each");
	expect_err(b, "transaction must be per_file or none, not 'each'");
	free(b);
	b = body(fx, ", transaction: [none]");
	expect_err(b, "transaction");
	free(b);
	b = body(fx, ", transactions: none");
	expect_err(b, "unknown key 'transactions'");
	free(b);
}

static void
test_other_fields_refused(void **state)
{
	const struct fx *fx = *state;
	char *b;

	expect_err("{old_bin: /o, new_bin: /n}", "missing required key 'data'");
	b = body(fx, ", method: rsync");
	expect_err(b, "method must be pg_upgrade, pg_dumpall or both");
	free(b);
	b = body(fx, ", port: 80");
	expect_err(b, "port must be 1024-65534");
	free(b);
	b = xasprintf(
	    "{old_bin: /o, new_bin: /n, data: [%s/nope.sql]}", fx->dir);
	expect_err(b, "nope.sql");
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transaction_loads),
		cmocka_unit_test(test_transaction_refused),
		cmocka_unit_test(test_other_fields_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
