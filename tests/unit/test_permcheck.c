/*
 * test_permcheck.c: the permission audit's rules (permcheck.h): the dump
 * parser (including truncated, oversized and malformed dumps), group
 * lists in getgrouplist order, set vs exact comparison, every row kind and
 * the summary; and the generated script itself, run by this machine's
 * /bin/sh against its own accounts and a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pg/permcheck.h"

/* ------------------------------------------------------------ helpers */

/* A small account database in the dump format. */
static const char accounts[] =
    "U:root:0:0\n"
    "U:postgres:101:104\n"
    "U:walg:102:105\n"
    "U:orphan:103:4242\n"
    "U:nixbld1:999:994\n"
    "U:nixbld2:998:994\n"
    "U:root:5000:5000\n" /* a shadowed duplicate: the first one counts */
    "G:root:0:\n"
    "G:ssl-cert:103:postgres\n"
    "G:postgres:104:walg\n"
    "G:walg:105:\n"
    "G:pgalias:104:postgres\n" /* same gid as the primary: skipped */
    "G:nixbld:994:nixbld1,nixbld2\n"
    "G:docker:996:nixbld2\n";

static struct permcheck_spec *
spec_new(void)
{
	return calloc(1, sizeof(struct permcheck_spec));
}

static void
spec_user(struct permcheck_spec *s, const char *name, const char *groups)
{
	struct permcheck_user *u;
	char *copy = xstrdup(groups), *p = copy, *c;

	s->users = xreallocarray(s->users, s->nusers + 1, sizeof(*s->users));
	u = &s->users[s->nusers++];
	memset(u, 0, sizeof(*u));
	u->name = name;
	while ((c = strchr(p, ',')) != NULL) {
		*c = '\0';
		strlist_push(&u->groups, p);
		p = c + 1;
	}
	strlist_push(&u->groups, p);
	free(copy);
}

static struct permcheck_path *
spec_path(struct permcheck_spec *s, const char *path)
{
	struct permcheck_path *p;

	s->paths = xreallocarray(s->paths, s->npaths + 1, sizeof(*s->paths));
	p = &s->paths[s->npaths++];
	memset(p, 0, sizeof(*p));
	p->path = path;
	return p;
}

static void
spec_free(struct permcheck_spec *s)
{
	permcheck_spec_free(s);
	free(s);
}

/* Parses dump for s; fails the test when the parser refuses it. */
static void
facts_ok(
    const struct permcheck_spec *s, const char *dump, struct permcheck_facts *f)
{
	struct errbuf err;

	err_clear(&err);
	if (permcheck_facts_parse(s, dump, strlen(dump), f, &err) < 0)
		fail_msg("parse: %s", err.msg);
}

/* The parser refuses dump; returns the message (static). */
static const char *
facts_bad(const struct permcheck_spec *s, const char *dump, size_t len)
{
	static struct errbuf err;
	struct permcheck_facts f;
	int rc;

	err_clear(&err);
	rc = permcheck_facts_parse(s, dump, len, &f, &err);
	permcheck_facts_free(&f);
	assert_int_equal(rc, -1);
	assert_int_equal(err.code, SH_ERR_REMOTE);
	return err.msg;
}

static const char *
bad_str(const struct permcheck_spec *s, const char *dump)
{
	return facts_bad(s, dump, strlen(dump));
}

/* Evaluates s against dump into rows. */
static void
evaluate(const struct permcheck_spec *s, const char *dump,
    struct permcheck_rows *rows)
{
	struct permcheck_facts f;

	memset(rows, 0, sizeof(*rows));
	facts_ok(s, dump, &f);
	permcheck_evaluate(s, &f, rows);
	permcheck_facts_free(&f);
}

static char *
cat(const char *a, const char *b)
{
	return xasprintf("%s%s", a, b);
}

static void
groups_of(const char *dump, const char *user, const char *want)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_facts f;
	struct strlist l = { NULL, 0 };
	struct buf b;

	buf_init(&b, 4096);
	facts_ok(s, dump, &f);
	assert_true(permcheck_user_groups(&f, user, &l));
	for (size_t i = 0; i < l.n; i++)
		(void)buf_addf(&b, "%s%s", i ? " " : "", l.v[i]);
	assert_string_equal(b.data, want);
	buf_release(&b);
	strlist_free(&l);
	permcheck_facts_free(&f);
	spec_free(s);
}

/* ------------------------------------------------------ group lists */

static void
test_permcheck_groups_primary_first_then_group_file_order(void **state)
{
	char *d = cat(accounts, "E\n");

	(void)state;
	/* ssl-cert comes before postgres in /etc/group: primary still first */
	groups_of(d, "postgres", "postgres ssl-cert");
	groups_of(d, "walg", "walg postgres");
	groups_of(d, "nixbld2", "nixbld docker");
	free(d);
}

static void
test_permcheck_groups_skip_a_second_group_of_the_primary_gid(void **state)
{
	char *d = cat(accounts, "E\n");

	(void)state;
	/* pgalias has gid 104 and lists postgres: getgrouplist skips it */
	groups_of(d, "postgres", "postgres ssl-cert");
	free(d);
}

static void
test_permcheck_groups_primary_gid_without_group_is_a_number(void **state)
{
	char *d = cat(accounts, "E\n");

	(void)state;
	groups_of(d, "orphan", "4242");
	free(d);
}

static void
test_permcheck_groups_first_passwd_entry_counts(void **state)
{
	char *d = cat(accounts, "E\n");

	(void)state;
	groups_of(d, "root", "root");
	free(d);
}

static void
test_permcheck_groups_unknown_user_is_false(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_facts f;
	struct strlist l = { NULL, 0 };
	char *d = cat(accounts, "E\n");

	(void)state;
	facts_ok(s, d, &f);
	strlist_push(&l, "stale");
	assert_false(permcheck_user_groups(&f, "ubuntu", &l));
	assert_int_equal(l.n, 0);
	permcheck_facts_free(&f);
	spec_free(s);
	free(d);
}

static void
test_permcheck_equal_ignores_order_unless_exact(void **state)
{
	struct strlist a = { NULL, 0 }, b = { NULL, 0 }, c = { NULL, 0 };

	(void)state;
	strlist_push(&a, "postgres");
	strlist_push(&a, "ssl-cert");
	strlist_push(&b, "ssl-cert");
	strlist_push(&b, "postgres");
	strlist_push(&c, "postgres");
	assert_true(permcheck_groups_equal(&a, &b, false));
	assert_false(permcheck_groups_equal(&a, &b, true));
	assert_true(permcheck_groups_equal(&a, &a, true));
	assert_false(permcheck_groups_equal(&a, &c, false));
	assert_false(permcheck_groups_equal(&c, &a, false));
	strlist_free(&a);
	strlist_free(&b);
	strlist_free(&c);
}

/* ------------------------------------------------------ user rows */

static void
test_permcheck_user_row_passes_and_names_the_expected_groups(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	char *d = cat(accounts, "E\n");

	(void)state;
	spec_user(s, "postgres", "ssl-cert,postgres");
	evaluate(s, d, &rows);
	assert_int_equal(rows.n, 1);
	assert_true(rows.v[0].passed);
	assert_null(rows.v[0].message);
	assert_string_equal(rows.v[0].name, "user postgres: ssl-cert,postgres");
	assert_string_equal(rows.v[0].subject, "user postgres");
	assert_int_equal(rows.failed, 0);
	permcheck_rows_free(&rows);
	spec_free(s);
	free(d);
}

static void
test_permcheck_user_row_names_missing_and_extra_groups(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	char *d = cat(accounts, "E\n");

	(void)state;
	spec_user(s, "walg", "walg,ssl-cert");
	evaluate(s, d, &rows);
	assert_false(rows.v[0].passed);
	assert_string_equal(rows.v[0].message,
	    "expected [walg ssl-cert], got [walg postgres]; "
	    "missing ssl-cert; extra postgres");
	assert_int_equal(rows.failed, 1);
	permcheck_rows_free(&rows);
	spec_free(s);
	free(d);
}

static void
test_permcheck_exact_order_fails_a_reordering(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	char *d = cat(accounts, "E\n");

	(void)state;
	spec_user(s, "postgres", "ssl-cert,postgres");
	s->exact_order = true;
	evaluate(s, d, &rows);
	assert_false(rows.v[0].passed);
	assert_string_equal(rows.v[0].message,
	    "expected [ssl-cert postgres] in this order, got "
	    "[postgres ssl-cert] (same groups, other order)");
	permcheck_rows_free(&rows);
	spec_user(s, "walg", "walg,postgres");
	evaluate(s, d, &rows);
	assert_true(rows.v[1].passed);
	permcheck_rows_free(&rows);
	spec_free(s);
	free(d);
}

static void
test_permcheck_missing_user_fails_or_is_skipped(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	char *d = cat(accounts, "E\n");

	(void)state;
	spec_user(s, "ubuntu", "ubuntu,adm");
	evaluate(s, d, &rows);
	assert_false(rows.v[0].passed);
	assert_false(rows.v[0].skipped);
	assert_string_equal(rows.v[0].message, "no such user");
	assert_int_equal(rows.failed, 1);
	permcheck_rows_free(&rows);
	s->skip_missing = true;
	evaluate(s, d, &rows);
	assert_true(rows.v[0].skipped);
	assert_int_equal(rows.failed, 0);
	assert_int_equal(rows.skipped, 1);
	assert_string_equal(
	    rows.v[0].message, "no such user (missing_users: skip)");
	permcheck_rows_free(&rows);
	spec_free(s);
	free(d);
}

/* ------------------------------------------------------ pattern rows */

static void
pattern(struct permcheck_spec *s, const char *glob, const char *only)
{
	struct permcheck_pattern *p;

	s->patterns =
	    xreallocarray(s->patterns, s->npatterns + 1, sizeof(*s->patterns));
	p = &s->patterns[s->npatterns++];
	memset(p, 0, sizeof(*p));
	p->glob = glob;
	strlist_push(&p->only, only);
}

static void
test_permcheck_pattern_names_users_outside_their_groups(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	char *d = cat(accounts, "E\n");

	(void)state;
	pattern(s, "nixbld*", "nixbld");
	pattern(s, "build*", "nixbld"); /* no user matches: fine */
	evaluate(s, d, &rows);
	assert_int_equal(rows.n, 2);
	assert_string_equal(rows.v[0].name, "pattern nixbld*: only nixbld");
	assert_false(rows.v[0].passed);
	assert_string_equal(rows.v[0].message, "nixbld2 in [nixbld docker]");
	assert_true(rows.v[1].passed);
	permcheck_rows_free(&rows);
	spec_free(s);
	free(d);
}

static void
test_permcheck_pattern_lists_five_offenders_then_counts(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	struct buf d;

	(void)state;
	buf_init(&d, 1u << 16);
	for (int i = 1; i <= 8; i++)
		(void)buf_addf(&d, "U:nixbld%d:%d:1\n", i, 900 + i);
	(void)buf_adds(&d, "G:other:1:\nG:nixbld:994:\nE\n");
	pattern(s, "nixbld*", "nixbld");
	evaluate(s, d.data, &rows);
	assert_string_equal(rows.v[0].message,
	    "nixbld1 in [other], nixbld2 in [other], nixbld3 in [other], "
	    "nixbld4 in [other], nixbld5 in [other] and 3 more");
	permcheck_rows_free(&rows);
	spec_free(s);
	buf_release(&d);
}

/* ------------------------------------------------------ path rows */

static void
test_permcheck_path_checks_type_owner_group_and_mode(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_path *p;
	struct permcheck_rows rows;
	const char *d = "S:0:710:0:root:103:ssl-cert:directory\n"
	                "S:1:750:0:root:104:postgres:directory\n"
	                "S:2:2775:101:postgres:104:postgres:directory\n"
	                "E\n";

	(void)state;
	p = spec_path(s, "/etc/ssl/private");
	p->type = PERMCHECK_DIR, p->owner = "root", p->group = "postgres";
	p->mode = 0750, p->mode_set = true;
	p = spec_path(s, "/etc/ssl/private2");
	p->type = PERMCHECK_DIR, p->owner = "0", p->group = "104";
	p->mode = 0750, p->mode_set = true;
	p = spec_path(s, "/run/postgresql");
	p->mode = 02775, p->mode_set = true;
	evaluate(s, d, &rows);
	assert_string_equal(rows.v[0].name,
	    "path /etc/ssl/private: directory root:postgres 0750");
	assert_false(rows.v[0].passed);
	assert_string_equal(rows.v[0].message,
	    "expected directory root:postgres 0750, "
	    "got directory root:ssl-cert 0710");
	assert_true(rows.v[1].passed); /* owner and group by number */
	assert_true(rows.v[2].passed); /* set-gid bit included */
	permcheck_rows_free(&rows);
	spec_free(s);
}

static void
test_permcheck_path_type_link_is_the_link_itself(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	const char *d = "S:0:777:0:root:0:root:symbolic link\n"
	                "S:1:644:0:root:0:root:regular empty file\n"
	                "S:2:644:0:root:0:root:fifo\n"
	                "N:3\n"
	                "E\n";

	(void)state;
	spec_path(s, "/usr/bin/pg_config")->type = PERMCHECK_DIR;
	spec_path(s, "/etc/empty")->type = PERMCHECK_FILE;
	spec_path(s, "/run/pipe")->type = PERMCHECK_FILE;
	spec_path(s, "/nope");
	evaluate(s, d, &rows);
	assert_string_equal(rows.v[0].message, "expected directory, got link");
	assert_true(rows.v[1].passed);
	assert_string_equal(rows.v[2].message, "expected file, got fifo");
	assert_string_equal(rows.v[3].name, "path /nope: exists");
	assert_string_equal(rows.v[3].message, "does not exist");
	assert_int_equal(rows.failed, 3);
	permcheck_rows_free(&rows);
	spec_free(s);
}

/* ------------------------------------------------------ absent rows */

static void
test_permcheck_absent_lists_what_exists(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	const char *d = "A:1:/tmp/tmp.a\nA:1:/tmp/tmp.b:c\nE\n";

	(void)state;
	strlist_push(&s->absent, "/usr/bin/osqueryi");
	strlist_push(&s->absent, "/tmp/tmp.*");
	evaluate(s, d, &rows);
	assert_true(rows.v[0].passed);
	assert_string_equal(rows.v[0].name, "absent /usr/bin/osqueryi");
	assert_false(rows.v[1].passed);
	assert_string_equal(
	    rows.v[1].message, "exists: /tmp/tmp.a, /tmp/tmp.b:c");
	permcheck_rows_free(&rows);
	spec_free(s);
}

/* ------------------------------------------------------ summary */

static void
test_permcheck_summary_names_the_first_failures(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	struct buf b;
	char *d = cat(accounts, "E\n");

	(void)state;
	spec_user(s, "walg", "walg");
	spec_user(s, "root", "root");
	spec_user(s, "ubuntu", "ubuntu");
	spec_user(s, "postgres", "postgres");
	evaluate(s, d, &rows);
	buf_init(&b, 1u << 16);
	permcheck_summary(&rows, 900, &b);
	assert_string_equal(b.data,
	    "3 of 4 permission rows failed: user walg: expected [walg], got "
	    "[walg postgres]; extra postgres; user ubuntu: no such user; "
	    "user postgres: expected [postgres], got [postgres ssl-cert]; "
	    "extra ssl-cert");
	buf_reset(&b);
	permcheck_summary(&rows, 60, &b);
	assert_string_equal(b.data,
	    "3 of 4 permission rows failed: user walg: expected [walg], got "
	    "[walg postgres]; extra postgres; and 2 more");
	buf_release(&b);
	permcheck_rows_free(&rows);
	spec_free(s);
	free(d);
}

/* ------------------------------------------------------ the parser */

static void
test_permcheck_parse_rejects_truncated_dump(void **state)
{
	struct permcheck_spec *s = spec_new();

	(void)state;
	assert_non_null(
	    strstr(facts_bad(s, accounts, strlen(accounts)), "no end marker"));
	/* cut in the middle of a line */
	assert_non_null(strstr(facts_bad(s, "U:root:0", 8), "line 1"));
	assert_non_null(strstr(facts_bad(s, "", 0), "no end marker"));
	spec_free(s);
}

static void
test_permcheck_parse_rejects_unanswered_or_twice_answered_path(void **state)
{
	struct permcheck_spec *s = spec_new();

	(void)state;
	spec_path(s, "/a");
	spec_path(s, "/b");
	assert_non_null(strstr(bad_str(s, "N:0\nE\n"), "no answer for path 1"));
	assert_non_null(strstr(bad_str(s, "N:0\nN:0\nN:1\nE\n"), "line 2"));
	assert_non_null(
	    strstr(bad_str(s, "N:0\nS:0:755:0:r:0:r:directory\nN:1\nE\n"),
	        "reported twice"));
	spec_free(s);
}

static void
test_permcheck_parse_rejects_malformed_lines(void **state)
{
	static const char *const bad[] = {
		"X:what\nE\n",
		"hello\nE\n",
		"U:root:0\nE\n",            /* a field short */
		"U::0:0\nE\n",              /* empty name */
		"U:root:-1:0\nE\n",         /* not a number */
		"U:root:4294967296:0\nE\n", /* oversized id */
		"U:root:99999999999999999999999:0\nE\n",
		"G:root:x:\nE\n",
		"S:0:755:0:r:0:r:directory\nE\n", /* no such path index */
		"A:0:/x\nE\n",                    /* no such absent index */
		"E\nU:root:0:0\n",                /* after the end marker */
		"E\nE\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct permcheck_spec *s = spec_new();

		bad_str(s, bad[i]);
		spec_free(s);
	}
}

static void
test_permcheck_parse_rejects_bad_mode_and_embedded_nul(void **state)
{
	struct permcheck_spec *s = spec_new();
	const char nul[] = "U:ro\0ot:0:0\nE\n";

	(void)state;
	spec_path(s, "/a");
	bad_str(s, "S:0:999:0:r:0:r:directory\nE\n");
	bad_str(s, "S:0:177777:0:r:0:r:directory\nE\n");
	spec_free(s);
	s = spec_new();
	facts_bad(s, nul, sizeof(nul) - 1);
	spec_free(s);
}

static void
test_permcheck_parse_keeps_colons_in_the_last_field(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_facts f;

	(void)state;
	spec_path(s, "/a");
	strlist_push(&s->absent, "/x*");
	facts_ok(s, "S:0:644:0:root:0:root:weird: file\nA:0:/x:1\nE", &f);
	assert_string_equal(f.stats[0].type, "weird: file");
	assert_string_equal(f.matches[0].v[0], "/x:1");
	permcheck_facts_free(&f);
	spec_free(s);
}

/* ------------------------------------------------------ the script */

/* Runs the script for s with this machine's /bin/sh; stdout into out. */
static void
run_script(const struct permcheck_spec *s, struct buf *out)
{
	struct buf script;
	char *path = xasprintf("%s/permcheck-test.XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	char *cmd, chunk[4096];
	FILE *p;
	size_t n;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	buf_init(&script, 1u << 20);
	assert_int_equal(permcheck_script(s, &script), 0);
	assert_int_equal(
	    write(fd, script.data, script.len), (ssize_t)script.len);
	close(fd);
	cmd = xasprintf("sh %s", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		assert_int_equal(buf_add(out, chunk, n), 0);
	assert_int_equal(pclose(p), 0);
	unlink(path);
	free(cmd);
	free(path);
	buf_release(&script);
}

static void
test_permcheck_script_audits_this_machine(void **state)
{
	struct permcheck_spec *s = spec_new();
	struct permcheck_rows rows;
	struct buf out;
	char dir[] = "/tmp/permcheck-dir.XXXXXX";
	char *odd, *link, *glob, *gone;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0750), 0);
	odd = xasprintf("%s/it's a \"file\" $(x)", dir);
	link = xasprintf("%s/link", dir);
	glob = xasprintf("%s/it*", dir);
	gone = xasprintf("%s/gone*", dir);
	fclose(fopen(odd, "w"));
	assert_int_equal(symlink("/nonexistent", link), 0);
	spec_user(s, "root", "root");
	spec_path(s, dir)->type = PERMCHECK_DIR;
	s->paths[0].owner = "root", s->paths[0].mode = 0750;
	s->paths[0].mode_set = true;
	spec_path(s, link)->type = PERMCHECK_LINK;
	spec_path(s, odd)->type = PERMCHECK_FILE;
	spec_path(s, gone);
	strlist_push(&s->absent, glob);
	strlist_push(&s->absent, gone);
	buf_init(&out, 1u << 22);
	run_script(s, &out);
	evaluate(s, out.data, &rows);
	assert_int_equal(rows.n, 7);
	for (size_t i = 0; i < 4; i++)
		assert_true(rows.v[i].passed);
	assert_string_equal(rows.v[4].message, "does not exist");
	assert_false(rows.v[5].passed); /* the glob matches the odd file */
	assert_non_null(strstr(rows.v[5].message, "it's a \"file\" $(x)"));
	assert_true(rows.v[6].passed);
	permcheck_rows_free(&rows);
	unlink(odd), unlink(link), rmdir(dir);
	free(odd), free(link), free(glob), free(gone);
	buf_release(&out);
	spec_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    test_permcheck_groups_primary_first_then_group_file_order),
		cmocka_unit_test(
		    test_permcheck_groups_skip_a_second_group_of_the_primary_gid),
		cmocka_unit_test(
		    test_permcheck_groups_primary_gid_without_group_is_a_number),
		cmocka_unit_test(
		    test_permcheck_groups_first_passwd_entry_counts),
		cmocka_unit_test(test_permcheck_groups_unknown_user_is_false),
		cmocka_unit_test(
		    test_permcheck_equal_ignores_order_unless_exact),
		cmocka_unit_test(
		    test_permcheck_user_row_passes_and_names_the_expected_groups),
		cmocka_unit_test(
		    test_permcheck_user_row_names_missing_and_extra_groups),
		cmocka_unit_test(test_permcheck_exact_order_fails_a_reordering),
		cmocka_unit_test(
		    test_permcheck_missing_user_fails_or_is_skipped),
		cmocka_unit_test(
		    test_permcheck_pattern_names_users_outside_their_groups),
		cmocka_unit_test(
		    test_permcheck_pattern_lists_five_offenders_then_counts),
		cmocka_unit_test(
		    test_permcheck_path_checks_type_owner_group_and_mode),
		cmocka_unit_test(
		    test_permcheck_path_type_link_is_the_link_itself),
		cmocka_unit_test(test_permcheck_absent_lists_what_exists),
		cmocka_unit_test(
		    test_permcheck_summary_names_the_first_failures),
		cmocka_unit_test(test_permcheck_parse_rejects_truncated_dump),
		cmocka_unit_test(
		    test_permcheck_parse_rejects_unanswered_or_twice_answered_path),
		cmocka_unit_test(test_permcheck_parse_rejects_malformed_lines),
		cmocka_unit_test(
		    test_permcheck_parse_rejects_bad_mode_and_embedded_nul),
		cmocka_unit_test(
		    test_permcheck_parse_keeps_colons_in_the_last_field),
		cmocka_unit_test(test_permcheck_script_audits_this_machine),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
