/*
 * test_backup.c: the backup manifest (pg/backupmf.c) and the `backup`
 * kind's load-time checks. A manifest written by pg_bk_write() reads back
 * to the same values; a manifest.json with a bad or missing field, an
 * unknown key, a file name that is a path, a sha256 that is not one, a
 * database or object given twice, is refused with "name:line:col:" at the
 * offending node. The "H NAME SHA SIZE" lines the remote scripts print are
 * found for the right file only. The backup step loads when its fields are
 * what steps/backup.c documents and is refused at the offending node when
 * not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/kind.h"
#include "model/manifest.h"
#include "pg/backupmf.h"
#include "steps/pgcluster.h"
#include "steps/registry.h"

#define STEP "stagehand: 1\nstage: t\nsteps:\n  - name: b\n    backup: "
#define STEP_KIND "backup"

#include "stepcase.h"

#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHA_B "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

/* A manifest as backup writes it: two databases, a tricky name. */
static void
sample(struct pg_bk *m)
{
	struct pg_bk_db *d;

	memset(m, 0, sizeof(*m));
	m->created = xstrdup("2026-12-03T09:30:00Z");
	m->server_version = xstrdup("15.8 (Debian 15.8-0+deb12u1)");
	m->server_version_num = 150008;
	m->pg_dump = xstrdup("pg_dump (PostgreSQL) 15.8");
	m->globals.name = xstrdup("globals.sql");
	m->globals.sha256 = xstrdup(SHA_A);
	m->globals.size = 1024;
	d = pg_bk_db_add(m, "app");
	d->file.name = xstrdup("app.dump");
	d->file.sha256 = xstrdup(SHA_B);
	d->file.size = 81920;
	pg_fp_add(&d->fp, "public.people", 'r', "5000 rows, md5 abc");
	pg_fp_add(
	    &d->fp, "public.ticket_seq", 'S', "last_value 141, is_called true");
	pg_fp_add(&d->fp, "ledger.later", 'm', "not populated");
	pg_fp_sort(&d->fp);
	d = pg_bk_db_add(m, "we\"ird: db\n");
	d->file.name = xstrdup("db2.dump");
	d->file.sha256 = xstrdup(SHA_A);
	d->file.size = 0;
}

static void
written(struct buf *out)
{
	struct pg_bk m;
	struct errbuf err;

	sample(&m);
	buf_init(out, 1u << 20);
	assert_int_equal(pg_bk_write(&m, out, &err), 0);
	pg_bk_free(&m);
}

static void
test_manifest_round_trip(void **state)
{
	struct pg_bk m;
	struct errbuf err;
	struct buf out;

	(void)state;
	written(&out);
	if (pg_bk_parse("m.json", out.data, out.len, &m, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(m.created, "2026-12-03T09:30:00Z");
	assert_string_equal(m.server_version, "15.8 (Debian 15.8-0+deb12u1)");
	assert_int_equal(m.server_version_num, 150008);
	assert_string_equal(m.globals.sha256, SHA_A);
	assert_int_equal(m.globals.size, 1024);
	assert_int_equal(m.ndbs, 2);
	assert_string_equal(m.dbs[0].name, "app");
	assert_string_equal(m.dbs[1].name, "we\"ird: db\n");
	assert_string_equal(m.dbs[0].file.name, "app.dump");
	assert_int_equal(m.dbs[0].file.size, 81920);
	assert_int_equal(m.dbs[0].fp.n, 3);
	assert_string_equal(m.dbs[0].fp.v[0].name, "ledger.later");
	assert_int_equal(m.dbs[0].fp.v[0].kind, 'm');
	assert_string_equal(m.dbs[0].fp.v[0].fp, "not populated");
	assert_int_equal(m.dbs[0].fp.v[2].kind, 'S');
	assert_int_equal(m.dbs[1].fp.n, 0);
	pg_bk_free(&m);
	buf_release(&out);
}

/* The written manifest with from replaced by to must fail with want. */
static void
refused(const char *from, const char *to, const char *want)
{
	struct pg_bk m;
	struct errbuf err;
	struct buf out, bad;
	const char *at;

	written(&out);
	at = strstr(out.data, from);
	if (at == NULL)
		fail_msg("'%s' not in the manifest:\n%s", from, out.data);
	buf_init(&bad, 1u << 20);
	buf_add(&bad, out.data, (size_t)(at - out.data));
	buf_adds(&bad, to);
	buf_adds(&bad, at + strlen(from));
	assert_false(buf_failed(&bad));
	if (pg_bk_parse("m.json", bad.data, bad.len, &m, &err) == 0)
		fail_msg("'%s' -> '%s' was accepted", from, to);
	assert_int_equal(err.code, SH_ERR_MANIFEST);
	if (strstr(err.msg, want) == NULL)
		fail_msg("'%s' -> '%s': error '%s' lacks '%s'", from, to,
		    err.msg, want);
	pg_bk_free(&m);
	buf_release(&bad);
	buf_release(&out);
}

static void
test_manifest_bad_fields(void **state)
{
	(void)state;
	refused("stagehand-backup 1", "stagehand-backup 2",
	    "m.json:2:13: format: 'stagehand-backup 2', not 'stagehand-backup "
	    "1'");
	refused("\"created\"", "\"made\"", "m.json:3:3: unknown key 'made'");
	refused("\"server_version_num\": 150008",
	    "\"server_version_num\": \"lots\"", "m.json:5:25:");
	refused("\"pg_dump\": \"pg_dump (PostgreSQL) 15.8\",", "",
	    "missing required key 'pg_dump'");
	refused("\"file\": \"app.dump\"", "\"file\": \"../etc/passwd\"",
	    "file: not a plain file name: '../etc/passwd'");
	refused("\"file\": \"app.dump\"", "\"file\": \".hidden\"",
	    "not a plain file name");
	refused("\"file\": \"db2.dump\"", "\"file\": \"app.dump\"",
	    "file 'app.dump' twice");
	refused("\"file\": \"db2.dump\"", "\"file\": \"globals.sql\"",
	    "file 'globals.sql' twice");
	refused(SHA_B,
	    "2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E8"
	    "86266E7AE",
	    "sha256: not 64 lowercase hex digits");
	refused("\"size\": 81920", "\"size\": -1", ":");
	refused("\"name\": \"app\"", "\"name\": \"we\\\"ird: db\\n\"",
	    "database 'we\"ird: db\n' twice");
	refused("\"kind\": \"table\"", "\"kind\": \"index\"",
	    "kind must be table, matview or sequence, not 'index'");
	refused("\"name\": \"public.people\"",
	    "\"name\": \"public.ticket_seq\"",
	    "object 'public.ticket_seq' twice");
	refused("\"databases\": [", "\"databases\": {\"x\": [", "m.json:");
}

static void
test_manifest_not_json(void **state)
{
	struct pg_bk m;
	struct errbuf err;

	(void)state;
	assert_int_equal(pg_bk_parse("m.json", "[1, 2]", 6, &m, &err), -1);
	assert_non_null(strstr(err.msg, "m.json:1:1:"));
	pg_bk_free(&m);
	assert_int_equal(
	    pg_bk_parse("m.json", "{\"format\": ", 11, &m, &err), -1);
	assert_non_null(strstr(err.msg, "m.json:"));
	pg_bk_free(&m);
}

static void
test_file_names(void **state)
{
	(void)state;
	assert_true(pg_bk_file_name_ok("app.dump"));
	assert_true(pg_bk_file_name_ok("my_db-2.dump"));
	assert_false(pg_bk_file_name_ok(""));
	assert_false(pg_bk_file_name_ok(".."));
	assert_false(pg_bk_file_name_ok("-rf.dump"));
	assert_false(pg_bk_file_name_ok("a/b.dump"));
	assert_false(pg_bk_file_name_ok("a b.dump"));
	assert_true(pg_bk_sha256_ok(SHA_A));
	assert_false(pg_bk_sha256_ok("9f86d0"));
}

static void
test_sum_lines(void **state)
{
	struct buf out;
	struct errbuf err;
	char sha[65];
	uint64_t size = 0;

	(void)state;
	buf_init(&out, 4096);
	buf_adds(&out, "W /x\nH xapp.dump " SHA_A " 5\nH app.dump " SHA_B
	               " 81920\nH app.dump.old " SHA_A " 7");
	assert_int_equal(pgcluster_sum(&out, "app.dump", sha, &size, &err), 0);
	assert_string_equal(sha, SHA_B);
	assert_int_equal(size, 81920);
	assert_int_equal(
	    pgcluster_sum(&out, "app.dump.old", sha, &size, &err), 0);
	assert_int_equal(size, 7);
	assert_int_equal(pgcluster_sum(&out, "pp.dump", sha, &size, &err), -1);
	assert_string_equal(err.msg, "no sha256 reported for pp.dump");
	buf_reset(&out);
	buf_adds(&out, "H app.dump " SHA_A " 12x\n");
	assert_int_equal(pgcluster_sum(&out, "app.dump", sha, &size, &err), -1);
	buf_release(&out);
}

static void
test_backup_step_loads(void **state)
{
	(void)state;
	expect_ok("{dir: /var/backups/b1}",
	    "backup every database into /var/backups/b1");
	expect_ok(
	    "{dir: /b, databases: [app, postgres], download: dl, "
	    "replace: true, margin_mb: 0, port: 5433, "
	    "socket_dir: /tmp/pg/sock, bin_dir: /usr/lib/postgresql/15/bin, "
	    "user: postgres, username: supabase_admin}",
	    "backup app, postgres into /b, download to dl");
	expect_ok("{dir: /b, databases: app}", "backup app into /b");
	/* Empty is none (a stage's download_dir var left empty). */
	expect_ok("{dir: /b, download: \"\"}", "backup every database into /b");
}

static void
test_backup_step_refused(void **state)
{
	(void)state;
	expect_err("{port: 5433}", "mem.yml:5:13: missing required key 'dir'");
	expect_err("{dir: b}", "mem.yml:5:19:");
	expect_err("{dir: /}", "mem.yml:5:19: dir: a directory path without");
	expect_err("{dir: /b/}", "dir: a directory path without a trailing");
	expect_err(
	    "{dir: /b, databases: []}", "mem.yml:5:34: databases: no names");
	expect_err("{dir: /b, databases: [a, a]}", "databases: 'a' twice");
	expect_err("{dir: /b, databases: [\"\"]}", "is not a database name");
	expect_err("{dir: /b, margin_mb: lots}", "mem.yml:5:34:");
	expect_err("{dir: /b, port: 0}", "port must be 1-65535");
	expect_err("{dir: /b, port: 70000}", "mem.yml:5:29:");
	expect_err("{dir: /b, user: \"bad user\"}", "user: not a valid user");
	expect_err("{dir: /b, replace: maybe}", "mem.yml:5:32:");
	expect_err("{dir: /b, jobs: 2}", "mem.yml:5:23: unknown key 'jobs'");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_round_trip),
		cmocka_unit_test(test_manifest_bad_fields),
		cmocka_unit_test(test_manifest_not_json),
		cmocka_unit_test(test_file_names),
		cmocka_unit_test(test_sum_lines),
		cmocka_unit_test(test_backup_step_loads),
		cmocka_unit_test(test_backup_step_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
