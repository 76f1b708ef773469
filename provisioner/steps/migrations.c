/*
 * steps/migrations.c: the `migrations` step kind: a directory of dbmate
 * migrations (VERSION_name.sql with -- migrate:up / -- migrate:down
 * sections, pg/migration.h) applied in version order through libpq and
 * the run's SSH session, recorded in dbmate's own table so that dbmate
 * and stagehand can take turns on one database.
 *
 * Manifest fields: host, port, user, database, password, connect_timeout
 * (steps/pgstep.h), and
 *   dir                required: a local directory, resolved against the
 *                      manifest file's directory, read and checked when
 *                      the manifest is loaded (every *.sql file in it)
 *   remote             bool: dir is an absolute directory on the target,
 *                      read with one command as the step's become user
 *                      when the step runs (probe too); then bad files
 *                      fail the step (SH_ERR_STEP)
 *   table              schema.table of the tracking table, default
 *                      public.schema_migrations: (version varchar(128)
 *                      primary key), created with its schema when missing
 *   on_drift           fail (default) or warn: a file whose sha256 differs
 *                      from the one recorded when it was applied, or a
 *                      recorded version without a file
 *   statement_timeout  e.g. 30s, 500ms, 5min: SET for the session
 *   lock_timeout       the same
 *
 * The sha256 of each applied file goes to a side table of stagehand's,
 * SCHEMA.stagehand_migrations (migrations_table, version, sha256, file,
 * applied_at), so dbmate's table keeps its shape. A version applied by
 * another tool has no checksum: it is reported as unverified, never as
 * drift.
 *
 * Apply: one connection; a session advisory lock on the tracking table's
 * name (two runs never apply the same migration twice); the tables;
 * the drift check (on_drift: fail stops before anything runs); then each
 * pending file: BEGIN, its up section, the two INSERTs, COMMIT, as
 * one query string (pg_script_run_tail()); with transaction:false, or
 * an up section that manages its own transactions, statement by
 * statement, then the INSERTs. The first error stops the step:
 * "version V: FILE:LINE: SQLSTATE: message; detail..". Every file is a
 * test of the step (applied / already applied / failed / not run).
 *
 * Probe (plan): read-only (BEGIN READ ONLY): the table and the recorded
 * versions; "would apply FILE" per pending file. A server not reachable
 * yet means every file would apply. Not STEP_RETRY_SAFE: a migration
 * that ran without a transaction must not run twice.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pg/migration.h"
#include "steps/pgstep.h"
#include "steps/stepsh.h"
#include "target/remote.h"
#include "util/limits.h"

#define MIG_FILES_MAX 10000u
#define MIG_IDENT_MAX 63u /* NAMEDATALEN - 1 */
#define MIG_DEFAULT_TABLE "public.schema_migrations"
#define MIG_SIDE_TABLE "stagehand_migrations"
#define MIG_SQL_MAX (1u << 20)

struct mig {
	struct pg_migration m; /* owned */
	char *file;            /* owned: the file name in dir */
	char *version;         /* owned: its leading digits */
	char sha[65];          /* sha256 of the whole file, hex */
	struct buf raw;        /* owned: remote: the file, until parsed */
};

struct migrations_cfg {
	struct pgstep_cfg pg;
	const char *dir;                         /* borrowed: as written */
	char *schema;                            /* owned */
	char *table;                             /* owned: schema.table */
	bool drift_warn;                         /* on_drift: warn */
	const char *stmt_timeout, *lock_timeout; /* borrowed; may be NULL */
	struct mig *migs; /* owned; sorted by file name */
	size_t n;
};

static const char *const migrations_keys[] = { PGSTEP_CONN_KEYS, "dir",
	"remote", "table", "on_drift", "statement_timeout", "lock_timeout",
	NULL };

/* ======================================================== parse: fields */

/* A lowercase SQL identifier that needs no quoting. */
static bool
ident_ok(const char *p, size_t n)
{
	if (n == 0 || n > MIG_IDENT_MAX || (p[0] >= '0' && p[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') ||
		        (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
			return false;
	return true;
}

static int
parse_table(
    const struct node *body, struct migrations_cfg *c, struct errbuf *err)
{
	const char *t = MIG_DEFAULT_TABLE, *dot;

	if (node_opt_str(body, "table", &t, err) < 0)
		return -1;
	if (t == NULL)
		t = MIG_DEFAULT_TABLE;
	dot = strchr(t, '.');
	if (dot == NULL || !ident_ok(t, (size_t)(dot - t)) ||
	    !ident_ok(dot + 1, strlen(dot + 1)) ||
	    strcmp(dot + 1, MIG_SIDE_TABLE) == 0)
		return node_err(err, node_get(body, "table"),
		    "table must be schema.table, each a lowercase identifier "
		    "([a-z_][a-z0-9_]*, at most %u bytes) and the table not "
		    "%s, not '%s'",
		    MIG_IDENT_MAX, MIG_SIDE_TABLE, t);
	c->schema = xstrndup(t, (size_t)(dot - t));
	c->table = xstrdup(t);
	return 0;
}

/* 30s, 500ms, 5min, 1h, 1d, or a number of milliseconds. */
static int
parse_duration(const struct node *body, const char *key, const char **out,
    struct errbuf *err)
{
	static const char *const units[] = { "", "ms", "s", "min", "h", "d",
		NULL };
	const char *v = NULL;
	size_t n;

	*out = NULL;
	if (node_opt_str(body, key, &v, err) < 0)
		return -1;
	if (v == NULL)
		return 0;
	n = strspn(v, "0123456789");
	for (const char *const *u = units; n > 0 && n <= 9 && *u != NULL; u++)
		if (strcmp(v + n, *u) == 0) {
			*out = v;
			return 0;
		}
	return node_err(err, node_get(body, key),
	    "%s: a number with ms, s, min, h or d (e.g. 30s), not '%s'", key,
	    v);
}

static int
parse_fields(
    const struct node *body, struct migrations_cfg *c, struct errbuf *err)
{
	static const char *const own[] = { "dir", "table", "on_drift",
		"statement_timeout", "lock_timeout", NULL };
	const char *d = NULL;

	for (const char *const *k = own; *k != NULL; k++) {
		const struct node *n = node_get(body, *k);

		if (n != NULL && n->type == NODE_SCALAR &&
		    strlen(n->str) != n->len)
			return node_err(err, n, "%s: contains NUL", *k);
	}
	if (pgstep_parse_conn(body, &c->pg, err) < 0 ||
	    parse_table(body, c, err) < 0 ||
	    parse_duration(body, "statement_timeout", &c->stmt_timeout, err) <
	        0 ||
	    parse_duration(body, "lock_timeout", &c->lock_timeout, err) < 0 ||
	    node_opt_str(body, "on_drift", &d, err) < 0 ||
	    node_req_str(body, "dir", &c->dir, err) < 0)
		return -1;
	if (d != NULL && strcmp(d, "warn") == 0)
		c->drift_warn = true;
	else if (d != NULL && strcmp(d, "fail") != 0)
		return node_err(err, node_get(body, "on_drift"),
		    "on_drift must be fail or warn, not '%s'", d);
	if (c->dir[0] == '\0')
		return node_err(err, node_get(body, "dir"), "dir: empty");
	return 0;
}

/* ======================================================== parse: the dir */

static int
cmp_mig(const void *a, const void *b)
{
	return strcmp(
	    ((const struct mig *)a)->file, ((const struct mig *)b)->file);
}

/* A *.sql regular file that is not hidden: a migration (or a bad one). */
static bool
is_candidate(const char *dirpath, const char *name)
{
	size_t n = strlen(name);
	struct stat st;
	char *p;
	bool yes;

	if (name[0] == '.' || n < 4 || strcmp(name + n - 4, ".sql") != 0)
		return false;
	p = xasprintf("%s/%s", dirpath, name);
	yes = stat(p, &st) == 0 && S_ISREG(st.st_mode);
	free(p);
	return yes;
}

/* A new, zeroed entry for file name (copied). */
static struct mig *
mig_add(struct migrations_cfg *c, const char *name, size_t len)
{
	struct mig *g;

	c->migs = xreallocarray(c->migs, c->n + 1, sizeof(*c->migs));
	g = &c->migs[c->n++];
	memset(g, 0, sizeof(*g));
	g->file = xstrndup(name, len);
	buf_init(&g->raw, PGSTEP_FILE_MAX);
	return g;
}

static int
list_dir(const char *dirpath, struct migrations_cfg *c, struct errbuf *err)
{
	DIR *d = opendir(dirpath);
	struct dirent *e;

	if (d == NULL)
		return err_set(err, SH_ERR_MANIFEST, "dir: %s: %s", dirpath,
		    strerror(errno));
	while ((e = readdir(d)) != NULL) {
		if (!is_candidate(dirpath, e->d_name))
			continue;
		if (c->n == MIG_FILES_MAX) {
			closedir(d);
			return err_set(err, SH_ERR_MANIFEST,
			    "dir: %s: more than %u migrations", dirpath,
			    MIG_FILES_MAX);
		}
		mig_add(c, e->d_name, strlen(e->d_name));
	}
	closedir(d);
	return 0;
}

/* Names the version; files with one version are neighbours once sorted:
 * every name with version V starts with "V_". */
static int
check_name(const struct migrations_cfg *c, size_t i, struct errbuf *err)
{
	struct mig *g = &c->migs[i];
	size_t v = pg_migration_version(g->file);

	if (v == 0)
		return err_set(err, SH_ERR_MANIFEST,
		    "%s/%s:1: not a migration file name: VERSION_name.sql, "
		    "VERSION 1 to %u digits",
		    c->dir, g->file, PG_MIGRATION_VERSION_MAX);
	if (strchr(g->file, '\\') != NULL ||
	    !utf8_valid((const unsigned char *)g->file, strlen(g->file)))
		return err_set(err, SH_ERR_MANIFEST,
		    "%s/%s:1: a file name with a backslash or not UTF-8",
		    c->dir, g->file);
	g->version = xstrndup(g->file, v);
	if (i > 0 && strcmp(c->migs[i - 1].version, g->version) == 0)
		return err_set(err, SH_ERR_MANIFEST,
		    "%s/%s:1: version %s is also %s/%s", c->dir, g->file,
		    g->version, c->dir, c->migs[i - 1].file);
	return 0;
}

/* Sorts by name and checks the names: versions, duplicates. */
static int
check_names(struct migrations_cfg *c, const char *dirpath, struct errbuf *err)
{
	if (c->n == 0)
		return err_set(err, SH_ERR_MANIFEST,
		    "dir: %s: no *.sql migration files", dirpath);
	qsort(c->migs, c->n, sizeof(*c->migs), cmp_mig);
	for (size_t i = 0; i < c->n; i++)
		if (check_name(c, i, err) < 0)
			return -1;
	return 0;
}

/* Parses g->raw (and hashes it), then drops it. */
static int
parse_one(const struct migrations_cfg *c, struct mig *g, struct errbuf *err)
{
	char *name = xasprintf("%s/%s", c->dir, g->file);
	struct buf hex;
	int rc;

	buf_init(&hex, 65);
	rc = pg_migration_parse(name, g->raw.data, g->raw.len, &g->m, err);
	if (rc == 0) {
		stepsh_sha256_mem(g->raw.data, g->raw.len, &hex);
		memcpy(g->sha, hex.data, hex.len < 64 ? hex.len : 64);
	}
	buf_release(&g->raw);
	buf_release(&hex);
	free(name);
	return rc;
}

static int
load_one(const char *dirpath, const struct migrations_cfg *c, struct mig *g,
    struct errbuf *err)
{
	char *path = xasprintf("%s/%s", dirpath, g->file);
	int rc;

	buf_release(&g->raw);
	rc = file_read(path, PGSTEP_FILE_MAX, &g->raw, err);
	free(path);
	return rc < 0 ? -1 : parse_one(c, g, err);
}

static int
load_dir(const struct node *n, struct migrations_cfg *c, struct errbuf *err)
{
	char *dirpath = pgstep_path(n->file, c->dir);
	int rc = list_dir(dirpath, c, err);

	if (rc == 0)
		rc = check_names(c, dirpath, err);
	for (size_t i = 0; rc == 0 && i < c->n; i++)
		rc = load_one(dirpath, c, &c->migs[i], err);
	free(dirpath);
	if (rc < 0) {
		/* The message names the file (and line); add the step's. */
		char *msg = xstrdup(err->msg);

		node_err(err, n, "%s", msg);
		free(msg);
	}
	return rc;
}

static void
migs_free(struct migrations_cfg *c)
{
	for (size_t i = 0; i < c->n; i++) {
		pg_migration_free(&c->migs[i].m);
		buf_release(&c->migs[i].raw);
		free(c->migs[i].file);
		free(c->migs[i].version);
	}
	free(c->migs);
	c->migs = NULL;
	c->n = 0;
}

static void
migrations_release(void *cfg)
{
	struct migrations_cfg *c = cfg;

	migs_free(c);
	free(c->schema);
	free(c->table);
	pgstep_free(&c->pg);
}

static int
migrations_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct migrations_cfg *c = cfg;

	if (parse_fields(body, c, err) < 0)
		return -1;
	if (c->pg.remote)
		return c->dir[0] == '/'
		           ? 0
		           : node_err(err, node_get(body, "dir"),
		                 "dir: '%s': a remote dir needs an "
		                 "absolute path",
		                 c->dir);
	return load_dir(node_get(body, "dir"), c, err);
}

/* ======================================================== remote dir */

/*
 * Every *.sql regular file of the dir, not hidden, as NAME NUL SIZE NUL
 * then SIZE bytes; $0 is the dir.
 */
static const char remote_list_sh[] = "cd -- \"$0\" || exit 1\n"
                                     "for f in *.sql; do\n"
                                     "\tcase $f in .*) continue ;; esac\n"
                                     "\t[ -f \"$f\" ] || continue\n"
                                     "\tn=$(wc -c <\"$f\") || exit 1\n"
                                     "\tprintf '%s\\0%s\\0' \"$f\" $((n))\n"
                                     "\tcat -- \"$f\" || exit 1\n"
                                     "done\n";

/* One record of remote_list_sh's output at p[*off..len). */
static int
remote_record(struct migrations_cfg *c, const char *p, size_t len, size_t *off,
    struct errbuf *err)
{
	const char *name = p + *off, *nul, *sz;
	uint64_t size;
	struct mig *g;

	nul = memchr(name, '\0', len - *off);
	sz = nul != NULL ? nul + 1 : NULL;
	if (sz == NULL ||
	    (nul = memchr(sz, '\0', len - (size_t)(sz - p))) == NULL ||
	    parse_u64(sz, (size_t)(nul - sz), PGSTEP_FILE_MAX, &size) < 0 ||
	    size > len - (size_t)(nul + 1 - p))
		return err_set(err, SH_ERR_STEP,
		    "dir: %s: the listing was cut or changed while read",
		    c->dir);
	if (c->n == MIG_FILES_MAX)
		return err_set(err, SH_ERR_STEP,
		    "dir: %s: more than %u "
		    "migrations",
		    c->dir, MIG_FILES_MAX);
	g = mig_add(c, name, strlen(name));
	buf_add(&g->raw, nul + 1, (size_t)size);
	*off = (size_t)(nul + 1 - p) + (size_t)size;
	return 0;
}

static int
remote_read(struct run_ctx *ctx, const struct step *step,
    struct migrations_cfg *c, struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	struct buf script;
	size_t off = 0;
	int rc;

	buf_init(&script, 8192);
	buf_adds(&script, "exec sh -c ");
	sh_quote(&script, remote_list_sh);
	buf_addc(&script, ' ');
	sh_quote(&script, c->dir);
	rc = remote_script(&cmd, &script, err);
	cmd.stdout_is_protocol = true;
	memset(&out, 0, sizeof(out));
	if (rc == 0)
		rc = stepsh_remote(ctx, step, &cmd, &out, res, err);
	buf_release(&script);
	if (rc == 0 && out.out.len >= REMOTE_OUTPUT_MAX)
		rc = err_set(err, SH_ERR_STEP, "dir: %s: larger than %u bytes",
		    c->dir, REMOTE_OUTPUT_MAX - 1);
	while (rc == 0 && off < out.out.len)
		rc = remote_record(c, out.out.data, out.out.len, &off, err);
	remote_out_free(&out);
	return rc < 0 && err->code == SH_ERR_REMOTE
	           ? err_prefix(err, "dir: %s: ", c->dir)
	           : rc;
}

/* remote: reads and checks the dir on the target; errors fail the step
 * (SH_ERR_STEP) instead of the manifest. */
static int
remote_load(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	struct migrations_cfg *c = step->cfg;
	int rc;

	if (!c->pg.remote)
		return 0;
	migs_free(c);
	rc = remote_read(ctx, step, c, res, err);
	if (rc == 0)
		rc = check_names(c, c->dir, err);
	for (size_t i = 0; rc == 0 && i < c->n; i++)
		rc = parse_one(c, &c->migs[i], err);
	if (rc < 0 && err->code == SH_ERR_MANIFEST)
		err->code = SH_ERR_STEP;
	return rc;
}

/* ======================================================== state */

/* What the database says: recorded versions and their checksums. */
struct mstate {
	bool table;             /* the tracking table exists */
	bool side;              /* the side table exists */
	struct strlist applied; /* versions in the tracking table */
	struct strlist sums;    /* "VERSION SHA256" from the side table */
	size_t drift;           /* problems found by check_drift() */
};

static int
on_exists(void *arg, PGresult *r, struct errbuf *err)
{
	struct mstate *st = arg;

	(void)err;
	if (PQntuples(r) == 1 && PQnfields(r) == 2) {
		st->table = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		st->side = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
	}
	return 0;
}

/* Every row's first column, or "c0 c1" with two columns. */
static int
on_rows(void *arg, PGresult *r, struct errbuf *err)
{
	struct strlist *l = arg;

	(void)err;
	for (int i = 0; i < PQntuples(r); i++)
		strlist_push_owned(l,
		    PQnfields(r) == 2 ? xasprintf("%s %s", PQgetvalue(r, i, 0),
		                            PQgetvalue(r, i, 1))
		                      : xstrdup(PQgetvalue(r, i, 0)));
	return 0;
}

static int
read_state(struct pg_conn *pc, const struct migrations_cfg *c,
    struct mstate *st, struct errbuf *err)
{
	char *q = xasprintf("SELECT to_regclass('%s') IS NOT NULL, "
	                    "to_regclass('%s.%s') IS NOT NULL",
	    c->table, c->schema, MIG_SIDE_TABLE);
	int rc = pg_exec(pc, q, on_exists, st, NULL, err);

	free(q);
	if (rc == 0 && st->table) {
		q = xasprintf("SELECT version FROM %s", c->table);
		rc = pg_exec(pc, q, on_rows, &st->applied, NULL, err);
		free(q);
	}
	if (rc == 0 && st->side) {
		q = xasprintf("SELECT version, sha256 FROM %s.%s WHERE "
		              "migrations_table = '%s'",
		    c->schema, MIG_SIDE_TABLE, c->table);
		rc = pg_exec(pc, q, on_rows, &st->sums, NULL, err);
		free(q);
	}
	return rc < 0 ? err_prefix(err, "reading %s: ", c->table) : 0;
}

static void
mstate_free(struct mstate *st)
{
	strlist_free(&st->applied);
	strlist_free(&st->sums);
}

/* The recorded checksum of version v, or NULL. */
static const char *
recorded_sum(const struct mstate *st, const char *v)
{
	size_t n = strlen(v);

	for (size_t i = 0; i < st->sums.n; i++)
		if (strncmp(st->sums.v[i], v, n) == 0 &&
		    st->sums.v[i][n] == ' ')
			return st->sums.v[i] + n + 1;
	return NULL;
}

static const struct mig *
find_version(const struct migrations_cfg *c, const char *v)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->migs[i].version, v) == 0)
			return &c->migs[i];
	return NULL;
}

/* ======================================================== drift */

/* One problem: a failed test (fail) or a passed one with a warning. */
static void
drift_report(const struct migrations_cfg *c, struct mstate *st,
    struct step_result *res, struct errbuf *err, const char *test,
    const char *msg)
{
	if (st->drift++ == 0 && !c->drift_warn)
		err_set(err, SH_ERR_STEP, "drift: %s", msg);
	if (c->drift_warn) {
		char *line = xasprintf("warning: drift: %s\n", msg);

		step_result_output(res, line, strlen(line));
		free(line);
	}
	step_result_test(res, test, c->drift_warn, false, msg);
}

/* Applied files: unchanged, changed or unverified; recorded versions
 * without a file. Tests for every applied one. */
static void
check_drift(const struct migrations_cfg *c, struct mstate *st,
    struct step_result *res, struct errbuf *err)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct mig *g = &c->migs[i];
		const char *sum;
		char *msg;

		if (!strlist_has(&st->applied, g->version))
			continue;
		sum = recorded_sum(st, g->version);
		if (sum == NULL || strcmp(sum, g->sha) == 0) {
			step_result_test(res, g->file, true, false,
			    sum == NULL ? "already applied (no checksum "
			                  "recorded: applied by another tool)"
			                : "already applied");
			continue;
		}
		msg = xasprintf("%s/%s changed after it was applied (sha256 "
		                "then %.12s, now %.12s)",
		    c->dir, g->file, sum, g->sha);
		drift_report(c, st, res, err, g->file, msg);
		free(msg);
	}
	for (size_t i = 0; i < st->applied.n; i++) {
		const char *v = st->applied.v[i];
		char *msg, *test;

		if (find_version(c, v) != NULL)
			continue;
		msg = xasprintf("version %s is recorded in %s but has no file "
		                "in %s",
		    v, c->table, c->dir);
		test = xasprintf("%s (no file)", v);
		drift_report(c, st, res, err, test, msg);
		free(msg);
		free(test);
	}
}

/* ======================================================== apply */

/* The session: advisory lock (apply only), then the timeouts. */
static int
session_setup(struct pg_conn *pc, const struct migrations_cfg *c, bool lock,
    struct errbuf *err)
{
	char *q;
	int rc = 0;

	if (lock) {
		q = xasprintf("SELECT pg_advisory_lock(hashtext('stagehand "
		              "migrations %s'))",
		    c->table);
		rc = pg_exec(pc, q, NULL, NULL, NULL, err);
		free(q);
	}
	if (rc == 0 && c->stmt_timeout != NULL) {
		q = xasprintf("SET statement_timeout = '%s'", c->stmt_timeout);
		rc = pg_exec(pc, q, NULL, NULL, NULL, err);
		free(q);
	}
	if (rc == 0 && c->lock_timeout != NULL) {
		q = xasprintf("SET lock_timeout = '%s'", c->lock_timeout);
		rc = pg_exec(pc, q, NULL, NULL, NULL, err);
		free(q);
	}
	return rc;
}

/* Creates what is missing; CREATE .. IF NOT EXISTS would need the CREATE
 * privilege even when everything is there. */
static int
ensure_tables(struct pg_conn *pc, const struct migrations_cfg *c,
    struct mstate *st, struct step_result *res, struct errbuf *err)
{
	struct buf q;
	int rc = 0;

	if (st->table && st->side)
		return 0;
	buf_init(&q, 4096);
	if (!st->table)
		buf_addf(&q,
		    "DO $stagehand$ BEGIN IF to_regnamespace('%s') IS NULL "
		    "THEN CREATE SCHEMA %s; END IF; END $stagehand$; "
		    "CREATE TABLE %s (version varchar(128) PRIMARY KEY);",
		    c->schema, c->schema, c->table);
	if (!st->side)
		buf_addf(&q,
		    "CREATE TABLE %s.%s (migrations_table text NOT NULL, "
		    "version varchar(128) NOT NULL, sha256 char(64) NOT NULL, "
		    "file text NOT NULL, applied_at timestamptz NOT NULL "
		    "DEFAULT now(), PRIMARY KEY (migrations_table, version));",
		    c->schema, MIG_SIDE_TABLE);
	if (buf_failed(&q))
		rc = err_set(err, SH_ERR_INTERNAL, "create: too long");
	if (rc == 0)
		rc = pg_exec(pc, q.data, NULL, NULL, NULL, err);
	if (rc == 0) {
		if (!st->table)
			step_result_change(res, "created %s", c->table);
		if (!st->side)
			step_result_change(
			    res, "created %s.%s", c->schema, MIG_SIDE_TABLE);
		res->changed = true;
		st->table = st->side = true;
	}
	buf_release(&q);
	return rc < 0 ? err_prefix(err, "creating %s: ", c->table) : 0;
}

static void
add_literal(struct buf *q, const char *s)
{
	buf_addc(q, '\'');
	for (; *s != '\0'; s++) {
		if (*s == '\'')
			buf_addc(q, '\'');
		buf_addc(q, *s);
	}
	buf_addc(q, '\'');
}

/* The bookkeeping of one applied migration: its version for dbmate, its
 * sha256 for drift. */
static char *
record_sql(const struct migrations_cfg *c, const struct mig *g)
{
	struct buf q;
	char *rec;

	buf_init(&q, MIG_SQL_MAX);
	buf_addf(&q, "INSERT INTO %s (version) VALUES ('%s'); ", c->table,
	    g->version);
	buf_addf(&q,
	    "INSERT INTO %s.%s (migrations_table, version, sha256, file) "
	    "VALUES ('%s', '%s', '%s', ",
	    c->schema, MIG_SIDE_TABLE, c->table, g->version, g->sha);
	add_literal(&q, g->file);
	buf_addf(&q, ") ON CONFLICT (migrations_table, version) DO UPDATE "
	             "SET sha256 = EXCLUDED.sha256, file = EXCLUDED.file, "
	             "applied_at = now()");
	if (buf_failed(&q)) { /* bounded names: cannot happen */
		buf_release(&q);
		return NULL;
	}
	rec = buf_detach(&q, NULL);
	buf_release(&q);
	return rec;
}

/*
 * In a transaction: the up section and the bookkeeping in one round trip.
 * transaction:false (or an up section with its own BEGIN/COMMIT):
 * statement by statement, then the bookkeeping (one implicit
 * transaction).
 */
static int
apply_one(struct pg_conn *pc, const struct migrations_cfg *c,
    const struct mig *g, struct errbuf *err)
{
	char *rec = record_sql(c, g);
	int rc;

	if (rec == NULL)
		return err_set(err, SH_ERR_INTERNAL, "%s: too long", g->file);
	if (g->m.transaction && !g->m.script.manages_txn)
		rc = pg_script_run_tail(pc, &g->m.script, rec, err);
	else if ((rc = pg_script_run(
	              pc, &g->m.script, PG_TXN_NONE, NULL, NULL, err)) == 0 &&
	         (rc = pg_exec(pc, rec, NULL, NULL, NULL, err)) < 0)
		err_prefix(err, "%s: recording: ", g->m.name);
	free(rec);
	return rc;
}

/* Applies the pending files in order; the first failure stops. */
static int
apply_pending(struct pg_conn *pc, const struct migrations_cfg *c,
    const struct mstate *st, struct step_result *res, struct errbuf *err)
{
	size_t done = 0;
	int rc = 0;

	for (size_t i = 0; i < c->n; i++) {
		const struct mig *g = &c->migs[i];
		uint64_t t0 = now_ms();
		unsigned long long ms;
		char *msg;

		if (strlist_has(&st->applied, g->version))
			continue;
		if (rc < 0) {
			step_result_test(res, g->file, false, true,
			    "not run: an earlier migration failed");
			continue;
		}
		rc = apply_one(pc, c, g, err);
		pgstep_notices(pc, res);
		if (rc < 0) {
			err_prefix(err, "version %s: ", g->version);
			step_result_test(res, g->file, false, false, err->msg);
			step_result_test_ms(res, now_ms() - t0);
			continue;
		}
		ms = (unsigned long long)(now_ms() - t0);
		msg = xasprintf("applied in %llu ms", ms);
		step_result_test(res, g->file, true, false, msg);
		step_result_test_ms(res, ms);
		step_result_change(res, "applied %s (%llu ms)", g->file, ms);
		free(msg);
		res->changed = true;
		done++;
	}
	step_result_detail(res, "applied", "%zu", done);
	return rc;
}

static int
migrations_apply(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct migrations_cfg *c = step->cfg;
	struct pg_conn *pc = NULL;
	struct mstate st;
	int rc = -1;

	memset(&st, 0, sizeof(st));
	if (remote_load(ctx, step, res, err) < 0 ||
	    pgstep_connect(ctx, step, &c->pg, &pc, err) < 0 ||
	    session_setup(pc, c, true, err) < 0 ||
	    read_state(pc, c, &st, err) < 0)
		goto out;
	check_drift(c, &st, res, err);
	if (st.drift > 0 && !c->drift_warn)
		goto out;
	if (ensure_tables(pc, c, &st, res, err) < 0)
		goto out;
	rc = apply_pending(pc, c, &st, res, err);
out:
	if (pc != NULL)
		pgstep_notices(pc, res);
	pg_close(pc);
	mstate_free(&st);
	return rc;
}

/* ======================================================== probe */

static void
would_apply(const struct migrations_cfg *c, const struct mstate *st,
    struct step_result *res)
{
	for (size_t i = 0; i < c->n; i++) {
		if (strlist_has(&st->applied, c->migs[i].version))
			continue;
		res->changed = true;
		step_result_change(res, "would apply %s", c->migs[i].file);
	}
}

static int
probe_state(struct pg_conn *pc, const struct migrations_cfg *c,
    struct mstate *st, struct errbuf *err)
{
	struct errbuf scratch;
	int rc;

	if (pg_exec(pc, "BEGIN READ ONLY", NULL, NULL, NULL, err) < 0)
		return -1;
	rc = session_setup(pc, c, false, err);
	if (rc == 0)
		rc = read_state(pc, c, st, err);
	(void)pg_exec(pc, "ROLLBACK", NULL, NULL, NULL, &scratch);
	return rc;
}

static int
migrations_probe(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct migrations_cfg *c = step->cfg;
	struct pg_conn *pc = NULL;
	struct mstate st;
	int rc;

	memset(&st, 0, sizeof(st));
	if (remote_load(ctx, step, res, err) < 0) {
		if (err->code != SH_ERR_REMOTE)
			return -1;
		/* a fresh image: an earlier step puts the dir there */
		res->changed = true;
		step_result_change(
		    res, "would apply %s (%s)", c->dir, err->msg);
		err_clear(err);
		return 0;
	}
	/* A plan of a fresh image meets no server yet (as in sql.c). */
	if (pgstep_connect(ctx, step, &c->pg, &pc, err) < 0) {
		if (err->code != SH_ERR_REMOTE)
			return -1;
		step_result_change(
		    res, "server not reachable now (%s)", err->msg);
		err_clear(err);
		would_apply(c, &st, res);
		return 0;
	}
	rc = probe_state(pc, c, &st, err);
	pg_close(pc);
	if (rc == 0) {
		check_drift(c, &st, res, err);
		if (st.drift > 0 && !c->drift_warn)
			rc = -1;
	}
	if (rc == 0)
		would_apply(c, &st, res);
	mstate_free(&st);
	return rc;
}

static int
migrations_run(struct run_ctx *ctx, const struct step *step,
    enum step_mode mode, struct step_result *res, struct errbuf *err)
{
	if (mode == STEP_PROBE)
		return migrations_probe(ctx, step, res, err);
	return migrations_apply(ctx, step, res, err);
}

static void
migrations_describe(const struct step *step, struct buf *out)
{
	const struct migrations_cfg *c = step->cfg;

	if (c->pg.remote)
		buf_addf(out, "migrations %s (on the target) into %s as ",
		    c->dir, c->table);
	else
		buf_addf(out, "migrations %s (%zu file%s) into %s as ", c->dir,
		    c->n, c->n == 1 ? "" : "s", c->table);
	pgstep_describe_conn(&c->pg, out);
}

const struct step_kind step_kind_migrations = {
	.name = "migrations",
	.flags = 0,
	.keys = migrations_keys,
	.cfg_size = sizeof(struct migrations_cfg),
	.parse = migrations_parse,
	.run = migrations_run,
	.describe = migrations_describe,
	.release = migrations_release,
};
