/*
 * steps/migration_test.c: the `migration_test` step kind: prove that an
 * upgrade from old PostgreSQL binaries to new ones keeps every row.
 *
 * Manifest fields:
 *   old_bin     required, absolute: the old release's bin dir
 *   new_bin     required, absolute: the new release's bin dir (the bundle
 *               under test: initdb, pg_ctl, postgres, pg_dump, and
 *               pg_upgrade or pg_dumpall + psql for the methods)
 *   old_lib     absolute: LD_LIBRARY_PATH for the old binaries (e.g.
 *               Debian 11's postgresql-13 unpacked with dpkg-deb -x).
 *               pg_upgrade runs old binaries itself, so it gets it too:
 *               it should hold only what the old binaries miss
 *   method      pg_upgrade | pg_dumpall | both (default pg_upgrade)
 *   data        required: local SQL files (relative to the manifest),
 *               checked at parse time (pgscript.c: no psql backslash
 *               commands) and loaded in order into the old cluster through
 *               libpq, as `transaction` says
 *   between     local SQL files run on each NEW cluster after the upgrade
 *               and before its fingerprint (how a test injects a loss)
 *   transaction per_file (default): each data and between file in one
 *               transaction, unless it manages its own; none: statement
 *               by statement, each committed on its own, as psql runs a
 *               file (ALTER SYSTEM, CREATE DATABASE, VACUUM, CREATE INDEX
 *               CONCURRENTLY need it); the sql kind's field and splitter
 *               (steps/pgstep.h, pg/pgscript.h)
 *   user        OS user that runs everything, default postgres
 *   username    the clusters' bootstrap superuser, default `user`
 *   dbname      the database the data goes into and that is
 *               fingerprinted, default postgres (created when missing)
 *   locale, encoding   initdb's, for both clusters; default C, UTF8
 *   workdir     absolute parent dir for the temp dir on the target
 *               (mktemp -d WORKDIR/stagehand-mt.XXXXXX); default /tmp
 *   port        base port, default 54329: old on port, new on port+1
 *   keep        bool: keep the work dir (clusters stopped); default false
 *
 * What happens (DESIGN.md section 5), each cluster on the 0700 unix
 * socket dir WORK/s (no TCP listener, trust auth) and its own port;
 * libpq reaches it through pg.h's relay, which runs as `user` too:
 *   1. one round trip: check the binaries, make WORK, initdb WORK/old with
 *      old_bin, start it;
 *   2. create dbname when needed, load `data`; fingerprint "before";
 *   3. pg_dumpall (old still running): initdb WORK/dump with new_bin,
 *      start it, new_bin/pg_dumpall from the old cluster, restore with
 *      new_bin/psql; run `between`; fingerprint; stop it;
 *   4. pg_upgrade: stop old, initdb WORK/upg with new_bin, pg_upgrade
 *      --check then pg_upgrade (run in WORK), start it; run `between`;
 *      fingerprint; stop it;
 *   5. stop whatever still runs and remove WORK unless keep (then WORK
 *      gets a .kept marker).
 * Step 1 first sweeps earlier work dirs that a dropped session or an
 * interrupted run left behind (pgcluster_sweep_sh): their servers would hold
 * the ports, and nothing else would ever stop them.
 * A fingerprint: pg/fingerprint.h's, through libpq (per user table,
 * materialized view and sequence: row count plus md5 of the rows, or
 * last_value and is_called), plus the schema: new_bin's
 * `pg_dump --schema-only` of dbname, run on the target, with comment,
 * SET, set_config, backslash and blank lines dropped, hashed (sha256).
 *
 * Why psql for the pg_dumpall restore: pg_dumpall's output is a psql
 * script (\connect between databases, COPY ... FROM stdin blocks) that
 * libpq's query API cannot run, and restoring it with psql is what an
 * operator does. The psql used is new_bin's, from the bundle under test,
 * not one installed on the image. The one error a restore into a fresh
 * cluster always gives, CREATE ROLE of the bootstrap superuser, is
 * allowed; any other ERROR fails the step.
 *
 * Report: one test per object and method ("pg_upgrade: table public.t")
 * with the before and after fingerprints in its message, and one for the
 * schema; details carry versions, counts and the work dir. A difference
 * fails the step naming the objects. The target is left as it was
 * (apply reports ok, not changed) unless keep.
 *
 * probe: one read-only round trip that checks the binaries and reports
 * their versions; a bin dir without postgres (one an earlier step would
 * install) is only the detail not_there_yet.
 *
 * Not STEP_RETRY_SAFE: after a dropped connection the first attempt's
 * script may still be running on the target; the retry's sweep would stop
 * its clusters under it. `retries` can still ask for it.
 */
#include <stdlib.h>
#include <string.h>

#include "pg/fingerprint.h"
#include "pg/pgscript.h"
#include "steps/pgcluster.h"
#include "steps/pgstep.h"
#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"

#define MT_DEFAULT_PORT 54329
#define MT_SQL_MAX (64u << 20)    /* one data file */
#define MT_SCHEMA_MAX (16u << 20) /* one pg_dump --schema-only */

enum {
	MT_UPGRADE = 1u << 0,
	MT_DUMPALL = 1u << 1,
};

struct mt_cfg {
	const char *old_bin; /* borrowed */
	const char *new_bin; /* borrowed */
	const char *old_lib; /* borrowed; NULL: none */
	unsigned methods;
	struct strlist data;     /* resolved local paths */
	struct strlist between;  /* resolved local paths */
	enum pg_txn txn;         /* for data and between */
	struct pgcluster_cfg cl; /* user, username, locale, encoding, workdir */
	const char *dbname;      /* borrowed or "postgres" */
	unsigned port;
	bool keep;
};

struct mt_fp {
	struct pg_fp rows;
	struct buf schema; /* normalised pg_dump --schema-only */
	struct buf schema_hash;
};

struct mt_run {
	struct pgcluster pc; /* ctx, step, res, the users, WORK */
	const struct mt_cfg *c;
	struct strlist fails; /* one line per method that differed */
};

static const char *const mt_keys[] = {
	"old_bin",
	"new_bin",
	"old_lib",
	"method",
	"data",
	"between",
	"transaction",
	PGCLUSTER_KEYS,
	"dbname",
	"port",
	"keep",
	NULL,
};

/* ======================================================== parse */

static void
mt_release(void *cfg)
{
	struct mt_cfg *c = cfg;

	strlist_free(&c->data);
	strlist_free(&c->between);
	pgcluster_cfg_free(&c->cl);
}

/* A data file must be readable and split into statements (no psql
 * backslash commands) before anything touches the target. */
static int
mt_check_sql(const char *path, struct errbuf *err)
{
	struct pg_script script;
	struct buf sql;
	int rc;

	rc = file_read(path, MT_SQL_MAX, &sql, err); /* inits sql */
	if (rc == 0)
		rc = pg_script_parse(path, sql.data, sql.len, &script, err);
	if (rc == 0)
		pg_script_free(&script);
	buf_release(&sql);
	return rc;
}

/* Resolves the files of list key against the manifest's directory and
 * checks each (mt_check_sql). */
static int
mt_parse_files(const struct node *body, const char *key, bool required,
    struct strlist *out, struct errbuf *err)
{
	const struct node *n = node_get(body, key);
	struct strlist raw = { NULL, 0 };
	struct errbuf inner;

	if (n == NULL && required)
		return node_err(err, body, "missing required key '%s'", key);
	if (node_opt_strlist(body, key, &raw, err) < 0)
		return -1;
	if (required && raw.n == 0) {
		strlist_free(&raw);
		return node_err(err, n, "%s: no files", key);
	}
	for (size_t i = 0; i < raw.n; i++) {
		const char *f = raw.v[i], *slash = strrchr(n->file, '/');
		char *p = f[0] == '/' || slash == NULL
		              ? xstrdup(f)
		              : xasprintf("%.*s/%s", (int)(slash - n->file),
		                    n->file, f);

		strlist_push_owned(out, p);
		if (mt_check_sql(p, &inner) < 0) {
			strlist_free(&raw);
			return node_err(err, n, "%s: %s", key, inner.msg);
		}
	}
	strlist_free(&raw);
	return 0;
}

static int
mt_parse_method(const struct node *body, struct mt_cfg *c, struct errbuf *err)
{
	const char *m = NULL;

	if (node_opt_str(body, "method", &m, err) < 0)
		return -1;
	if (m == NULL || strcmp(m, "pg_upgrade") == 0)
		c->methods = MT_UPGRADE;
	else if (strcmp(m, "pg_dumpall") == 0)
		c->methods = MT_DUMPALL;
	else if (strcmp(m, "both") == 0)
		c->methods = MT_UPGRADE | MT_DUMPALL;
	else
		return node_err(err, node_get(body, "method"),
		    "method must be pg_upgrade, pg_dumpall or both, not '%s'",
		    m);
	return 0;
}

static int
mt_parse_dbname(const struct node *body, struct mt_cfg *c, struct errbuf *err)
{
	if (node_opt_str(body, "dbname", &c->dbname, err) < 0)
		return -1;
	if (c->dbname == NULL)
		c->dbname = "postgres";
	else if (!pgcluster_word_ok(c->dbname, ".-@"))
		return node_err(err, node_get(body, "dbname"),
		    "dbname: letters, digits and _ . - @ only: '%s'",
		    c->dbname);
	return 0;
}

static int
mt_parse_dirs(const struct node *body, struct mt_cfg *c, struct errbuf *err)
{
	if (stepsh_abs_path(body, "old_bin", &c->old_bin, err) < 0 ||
	    stepsh_abs_path(body, "new_bin", &c->new_bin, err) < 0)
		return -1;
	if (node_get(body, "old_lib") != NULL &&
	    stepsh_abs_path(body, "old_lib", &c->old_lib, err) < 0)
		return -1;
	return 0;
}

static int
mt_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct mt_cfg *c = cfg;
	uint64_t port = MT_DEFAULT_PORT;

	if (mt_parse_dirs(body, c, err) < 0 ||
	    mt_parse_method(body, c, err) < 0 ||
	    pgcluster_parse(body, &c->cl, err) < 0 ||
	    mt_parse_dbname(body, c, err) < 0 ||
	    mt_parse_files(body, "data", true, &c->data, err) < 0 ||
	    mt_parse_files(body, "between", false, &c->between, err) < 0 ||
	    pgstep_parse_txn(body, &c->txn, err) < 0 ||
	    node_opt_u64(body, "port", 65534, &port, err) < 0 ||
	    node_opt_bool(body, "keep", &c->keep, err) < 0)
		return -1;
	if (port < 1024)
		return node_err(
		    err, node_get(body, "port"), "port must be 1024-65534");
	c->port = (unsigned)port;
	return 0;
}

/* ======================================================== remote side */

/* Checks the binaries and prints their versions (probe, and step 1). */
static const char mt_check_sh[] =
    "need \"$OB/initdb\" \"$OB/pg_ctl\" \"$OB/postgres\" \"$NB/initdb\""
    " \"$NB/pg_ctl\" \"$NB/postgres\" \"$NB/pg_dump\"\n"
    "[ \"$UPG\" = 0 ] || need \"$NB/pg_upgrade\"\n"
    "[ \"$DMP\" = 0 ] || need \"$NB/pg_dumpall\" \"$NB/psql\"\n"
    "ov=$(old \"$OB/postgres\" --version 2>&1) ||"
    " die \"$OB/postgres does not run: $ov\"\n"
    "nv=$(\"$NB/postgres\" --version 2>&1) ||"
    " die \"$NB/postgres does not run: $nv\"\n"
    "echo \"= old_version $ov\"\n"
    "echo \"= new_version $nv\"\n";

/* probe: bin dirs an earlier step would install are not an error. */
static const char mt_probe_sh[] =
    "for t in \"$OB/postgres\" \"$NB/postgres\"; do\n"
    "\t[ -e \"$t\" ] || { echo \"= not_there_yet $t\"; exit 0; }\n"
    "done\n";

static const char mt_setup_sh[] =
    "mkdir -p -- \"$WP\" || die \"cannot create workdir $WP\"\n"
    "W=$(mktemp -d \"$WP/stagehand-mt.XXXXXX\") || die \"mktemp in $WP"
    " failed\"\n"
    "echo \"W $W\"\n"
    "mkdir -m 700 \"$W/s\" || die \"cannot set up $W\"\n"
    "mkc \"$OB\" \"$W/old\" old\n"
    "startc \"$OB\" \"$W/old\" \"$P\" old\n";

/* Schema of dbname on port $1: stdout is the dump only. */
static const char mt_schema_sh[] =
    "\"$NB/pg_dump\" --schema-only -h \"$W/s\" -p \"$1\" -U \"$SU\" -d"
    " \"$DB\" 2>\"$W/pg_dump.err\" || { tailerr \"$W/pg_dump.err\";"
    " die \"pg_dump --schema-only of port $1 failed\"; }\n";

static const char mt_dumpall_sh[] =
    "mkc \"$NB\" \"$W/dump\" new\n"
    "startc \"$NB\" \"$W/dump\" \"$P2\" new\n"
    "\"$NB/pg_dumpall\" -h \"$W/s\" -p \"$P\" -U \"$SU\" -f"
    " \"$W/dumpall.sql\" 2>\"$W/dumpall.err\" ||\n"
    "\t{ tailerr \"$W/dumpall.err\"; die \"pg_dumpall of the old cluster"
    " failed\"; }\n"
    "echo \"= dumpall_bytes $(wc -c < \"$W/dumpall.sql\")\"\n"
    "psqlf \"$NB\" \"$P2\" \"$W/dumpall.sql\" new restore\n";

static const char mt_upgrade_sh[] =
    "! running \"$W/old\" || stopc \"$OB\" \"$W/old\" old\n"
    "mkc \"$NB\" \"$W/upg\" new\n"
    "cd \"$W\" || die \"cd $W\"\n"
    "up() { old \"$NB/pg_upgrade\" -b \"$OB\" -B \"$NB\" -d \"$W/old\" -D"
    " \"$W/upg\" -s \"$W/s\" -p \"$P\" -P \"$P2\" -U \"$SU\" \"$@\"; }\n"
    "up --check >\"$W/check.out\" 2>&1 ||\n"
    "\t{ tailerr \"$W/check.out\"; die \"pg_upgrade --check failed\"; }\n"
    "up >\"$W/upgrade.out\" 2>&1 ||\n"
    "\t{ tailerr \"$W/upgrade.out\"; die \"pg_upgrade failed\"; }\n"
    "echo \"= pg_upgrade_check passed\"\n"
    "startc \"$NB\" \"$W/upg\" \"$P2\" new\n";

static const char mt_cleanup_sh[] =
    "case $W in \"$WP\"/stagehand-mt.*) ;; *) die \"refusing to remove"
    " $W\" ;; esac\n"
    "! running \"$W/old\" || stopc \"$OB\" \"$W/old\" old\n"
    "for d in dump upg; do\n"
    "\t! running \"$W/$d\" || stopc \"$NB\" \"$W/$d\" new\n"
    "done\n"
    "if [ \"$KEEP\" = 1 ]; then : >\"$W/.kept\"; else rm -rf -- \"$W\"; fi\n";

static int
mt_vars(const struct mt_run *r, struct buf *b)
{
	const struct mt_cfg *c = r->c;

	if (stepsh_assign(b, "OB", c->old_bin) < 0 ||
	    stepsh_assign(b, "NB", c->new_bin) < 0 ||
	    stepsh_assign(b, "OL", c->old_lib ? c->old_lib : "") < 0 ||
	    stepsh_assign(b, "WP", c->cl.workdir) < 0 ||
	    stepsh_assign(b, "PFX", "stagehand-mt") < 0 ||
	    stepsh_assign(b, "W", r->pc.work ? r->pc.work : "") < 0 ||
	    stepsh_assign(b, "SU", c->cl.username) < 0 ||
	    stepsh_assign(b, "DB", c->dbname) < 0 ||
	    stepsh_assign(b, "LOC", c->cl.locale) < 0 ||
	    stepsh_assign(b, "ENC", c->cl.encoding) < 0)
		return -1;
	return buf_addf(b, "P=%u P2=%u UPG=%d DMP=%d KEEP=%d\n", c->port,
	    c->port + 1, (c->methods & MT_UPGRADE) ? 1 : 0,
	    (c->methods & MT_DUMPALL) ? 1 : 0, c->keep ? 1 : 0);
}

/*
 * Runs pgcluster_lib_sh + the settings + body (with "$@" = args, already
 * quoted) as the cluster user. stdout is protocol lines, or data (raw: out is
 * the caller's, then). A non-zero exit is "WHAT failed (exit N): ...".
 */
static int
mt_remote(struct mt_run *r, const char *what, const char *body,
    const char *args, struct remote_out *out, bool raw, struct errbuf *err)
{
	struct buf script;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (buf_adds(&script, pgcluster_lib_sh) < 0 ||
	    mt_vars(r, &script) < 0 ||
	    buf_addf(&script, "set -- %s\n", args ? args : "") < 0 ||
	    buf_adds(&script, body) < 0)
		err_set(
		    err, SH_ERR_INTERNAL, "migration_test: script too long");
	else
		rc = pgcluster_remote(&r->pc, what, &script, out, raw, err);
	buf_release(&script);
	return rc;
}

/* mt_remote() for scripts whose stdout is only protocol. */
static int
mt_do(struct mt_run *r, const char *what, const char *body, struct errbuf *err)
{
	struct remote_out out;
	int rc = mt_remote(r, what, body, NULL, &out, false, err);

	remote_out_free(&out);
	return rc;
}

/* ======================================================== SQL via libpq */

/* pg_exec() callback for statements whose results do not matter. */
static int
mt_ignore(void *arg, PGresult *res, struct errbuf *err)
{
	(void)arg;
	(void)res;
	(void)err;
	return 0;
}

static int
mt_connect(struct mt_run *r, unsigned port, const char *db,
    struct pg_conn **conn, struct errbuf *err)
{
	return pgcluster_connect(&r->pc, port, db, conn, err);
}

/* Reads and splits one SQL file (pgscript.c); script borrows sql. */
static int
mt_script(const char *path, struct buf *sql, struct pg_script *script,
    struct errbuf *err)
{
	if (file_read(path, MT_SQL_MAX, sql, err) < 0) /* inits sql */
		return -1;
	return pg_script_parse(path, sql->data, sql->len, script, err);
}

/*
 * Runs each file of files, in order: with PG_TXN_COMMIT each in one
 * transaction (unless it manages its own) and one round trip, with
 * PG_TXN_NONE statement by statement. Errors are "FILE:LINE: SQLSTATE:
 * message".
 */
static int
mt_run_files(struct pg_conn *conn, const struct strlist *files, enum pg_txn txn,
    struct errbuf *err)
{
	for (size_t i = 0; i < files->n; i++) {
		struct pg_script script;
		struct buf sql;
		int rc;

		memset(&script, 0, sizeof(script));
		rc = mt_script(files->v[i], &sql, &script, err);
		if (rc == 0)
			rc = pg_script_run(
			    conn, &script, txn, mt_ignore, NULL, err);
		pg_script_free(&script);
		buf_release(&sql);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int
mt_exec_files(struct mt_run *r, unsigned port, const struct strlist *files,
    struct errbuf *err)
{
	struct pg_conn *conn = NULL;
	int rc;

	if (files->n == 0)
		return 0;
	if (mt_connect(r, port, r->c->dbname, &conn, err) < 0)
		return -1;
	rc = mt_run_files(conn, files, r->c->txn, err);
	pg_close(conn);
	return rc;
}

/* "name" with embedded quotes doubled, for CREATE DATABASE. */
static void
mt_quote_ident(struct buf *b, const char *s)
{
	buf_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"')
			buf_addc(b, '"');
		buf_addc(b, *s);
	}
	buf_addc(b, '"');
}

static int
mt_have_db(void *arg, PGresult *res, struct errbuf *err)
{
	(void)err;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		*(bool *)arg = PQntuples(res) > 0;
	return 0;
}

/* Creates dbname in the old cluster unless it exists (postgres does). */
static int
mt_create_db(struct mt_run *r, struct errbuf *err)
{
	struct pg_conn *conn = NULL;
	struct pg_error pe;
	struct buf sql;
	bool have = false;
	int rc = -1;

	if (mt_connect(r, r->c->port, "postgres", &conn, err) < 0)
		return -1;
	buf_init(&sql, 4096);
	buf_adds(&sql, "SELECT 1 FROM pg_database WHERE datname = '");
	buf_adds(&sql, r->c->dbname); /* pgcluster_word_ok: no quotes */
	buf_adds(&sql, "'");
	if (buf_failed(&sql)) {
		err_set(err, SH_ERR_INTERNAL, "database name too long");
		goto out;
	}
	if (pg_exec(conn, sql.data, mt_have_db, &have, &pe, err) < 0)
		goto out;
	buf_reset(&sql);
	buf_adds(&sql, "CREATE DATABASE ");
	mt_quote_ident(&sql, r->c->dbname);
	if (buf_failed(&sql)) {
		err_set(err, SH_ERR_INTERNAL, "database name too long");
		goto out;
	}
	if (!have && pg_exec(conn, sql.data, mt_ignore, NULL, &pe, err) < 0)
		goto out;
	rc = 0;
out:
	buf_release(&sql);
	pg_close(conn);
	return rc;
}

/* ======================================================== fingerprints */

static void
mt_fp_init(struct mt_fp *f)
{
	pg_fp_init(&f->rows);
	buf_init(&f->schema, MT_SCHEMA_MAX);
	buf_init(&f->schema_hash, 128);
}

static void
mt_fp_free(struct mt_fp *f)
{
	pg_fp_free(&f->rows);
	buf_release(&f->schema);
	buf_release(&f->schema_hash);
}

/* Keeps the lines that are schema, not session noise of pg_dump. */
static void
mt_normalise(const struct buf *dump, struct buf *out)
{
	const char *p = dump->data, *end = dump->data + dump->len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (len > 0 && !(len >= 2 && p[0] == '-' && p[1] == '-') &&
		    p[0] != '\\' && strncmp(p, "SET ", 4) != 0 &&
		    strncmp(p, "SELECT pg_catalog.set_config(", 29) != 0) {
			buf_add(out, p, len);
			buf_addc(out, '\n');
		}
		p += len + 1;
	}
}

static int
mt_fp_schema(
    struct mt_run *r, unsigned port, struct mt_fp *f, struct errbuf *err)
{
	struct remote_out out;
	struct buf args;
	int rc;

	buf_init(&args, 64);
	buf_addf(&args, "%u", port);
	rc = mt_remote(r, "pg_dump --schema-only", mt_schema_sh, args.data,
	    &out, true, err);
	if (rc == 0) {
		mt_normalise(&out.out, &f->schema);
		if (buf_failed(&f->schema))
			rc = err_set(err, SH_ERR_STEP, "schema dump too long");
	}
	if (rc == 0) {
		stepsh_sha256_mem(
		    f->schema.data, f->schema.len, &f->schema_hash);
	}
	remote_out_free(&out);
	buf_release(&args);
	return rc;
}

/* Fingerprints the cluster on port; runs files first (the `between`). */
static int
mt_fingerprint(struct mt_run *r, unsigned port, const struct strlist *first,
    struct mt_fp *f, struct errbuf *err)
{
	struct pg_conn *conn = NULL;
	int rc;

	if (mt_connect(r, port, r->c->dbname, &conn, err) < 0)
		return -1;
	rc = mt_run_files(conn, first, r->c->txn, err);
	if (rc == 0)
		rc = pg_fp_rows(conn, &f->rows, err);
	pg_close(conn);
	if (rc < 0)
		return -1;
	return mt_fp_schema(r, port, f, err);
}

/* ======================================================== compare */

struct mt_cmp {
	struct mt_run *r;
	const char *method;
	struct buf *bad; /* the objects that differ */
};

/* Records one test; adds its object to bad when it differs. */
static void
mt_test(void *arg, const struct pg_fp_obj *b, const struct pg_fp_obj *a)
{
	struct mt_cmp *cmp = arg;
	const struct pg_fp_obj *o = b ? b : a;
	bool same = pg_fp_same(b, a);
	char *name = xasprintf(
	    "%s: %s %s", cmp->method, pg_fp_kind_name(o->kind), o->name);
	char *msg = xasprintf("before: %s; after: %s", b ? b->fp : "(absent)",
	    a ? a->fp : "(absent)");

	step_result_test(cmp->r->pc.res, name, same, false, msg);
	if (!same)
		buf_addf(cmp->bad, "%s%s (%s -> %s)", cmp->bad->len ? ", " : "",
		    o->name, b ? b->fp : "absent", a ? a->fp : "absent");
	free(msg);
	free(name);
}

/* Where two normalised schemas first differ: " at line N: 'x' vs 'y'". */
static void
mt_schema_diff(const struct buf *b, const struct buf *a, struct buf *out)
{
	size_t i = 0, line = 1, bl, al;

	while (i < b->len && i < a->len && b->data[i] == a->data[i])
		if (b->data[i++] == '\n')
			line++;
	while (i > 0 && b->data[i - 1] != '\n')
		i--;
	bl = strcspn(b->data + i, "\n");
	al = i <= a->len ? strcspn(a->data + i, "\n") : 0;
	buf_addf(out, ", first difference at line %zu: '%.*s' vs '%.*s'", line,
	    (int)(bl > 200 ? 200 : bl), b->data + i, (int)(al > 200 ? 200 : al),
	    a->data + i);
}

static void
mt_compare_schema(struct mt_run *r, const char *method, const struct mt_fp *b,
    const struct mt_fp *a, struct buf *bad)
{
	bool same = strcmp(b->schema_hash.data, a->schema_hash.data) == 0;
	char *name = xasprintf("%s: schema (pg_dump --schema-only)", method);
	struct buf msg, diff;

	buf_init(&msg, 4096);
	buf_init(&diff, 4096);
	if (!same)
		mt_schema_diff(&b->schema, &a->schema, &diff);
	buf_addf(&msg, "before: sha256 %s; after: sha256 %s%s",
	    b->schema_hash.data, a->schema_hash.data, diff.data);
	if (!same)
		buf_addf(bad, "%sschema%s", bad->len ? ", " : "", diff.data);
	step_result_test(r->pc.res, name, same, false, msg.data);
	buf_release(&diff);
	buf_release(&msg);
	free(name);
}

/* One test per object (both lists are sorted) and the schema. */
static void
mt_compare(
    struct mt_run *r, const char *method, struct mt_fp *b, struct mt_fp *a)
{
	struct buf bad;
	struct mt_cmp cmp = { r, method, &bad };

	buf_init(&bad, 1u << 20);
	pg_fp_pairs(&b->rows, &a->rows, mt_test, &cmp);
	mt_compare_schema(r, method, b, a, &bad);
	step_result_detail(
	    r->pc.res, method, "%s", bad.len ? "differs" : "equal");
	if (bad.len)
		strlist_push_owned(
		    &r->fails, xasprintf("after %s: %s", method, bad.data));
	buf_release(&bad);
}

/* ======================================================== the phases */

static int
mt_before(struct mt_run *r, struct mt_fp *before, struct errbuf *err)
{
	const struct mt_cfg *c = r->c;
	struct remote_out out;
	char *body =
	    xasprintf("%s%s%s", mt_check_sh, pgcluster_sweep_sh, mt_setup_sh);
	int rc;

	rc = mt_remote(
	    r, "setting up the old cluster", body, NULL, &out, false, err);
	remote_out_free(&out);
	free(body);
	if (rc < 0)
		return -1;
	if (r->pc.work == NULL)
		return err_set(err, SH_ERR_INTERNAL, "no work dir reported");
	if (strcmp(c->dbname, "postgres") != 0 && mt_create_db(r, err) < 0)
		return -1;
	if (mt_exec_files(r, c->port, &c->data, err) < 0)
		return err_prefix(err, "loading data: ");
	if (mt_fingerprint(
	        r, c->port, &(struct strlist){ NULL, 0 }, before, err) < 0)
		return err_prefix(err, "fingerprint of the old cluster: ");
	step_result_detail(r->pc.res, "objects", "%zu", before->rows.n);
	step_result_detail(
	    r->pc.res, "schema_before", "sha256 %s", before->schema_hash.data);
	return 0;
}

/* The new cluster on port+1 is up: between, fingerprint, stop, compare. */
static int
mt_after(struct mt_run *r, const char *method, const char *dir,
    struct mt_fp *before, struct errbuf *err)
{
	struct mt_fp after;
	char *stop = xasprintf("stopc \"$NB\" \"$W/%s\" new\n", dir);
	int rc;

	mt_fp_init(&after);
	rc = mt_fingerprint(r, r->c->port + 1, &r->c->between, &after, err);
	if (rc < 0)
		err_prefix(err, "fingerprint after %s: ", method);
	if (rc == 0)
		rc = mt_do(r, "stopping the new cluster", stop, err);
	if (rc == 0)
		mt_compare(r, method, before, &after);
	free(stop);
	mt_fp_free(&after);
	return rc;
}

static int
mt_methods(struct mt_run *r, struct mt_fp *before, struct errbuf *err)
{
	if ((r->c->methods & MT_DUMPALL) &&
	    (mt_do(r, "pg_dumpall into a new cluster", mt_dumpall_sh, err) <
	            0 ||
	        mt_after(r, "pg_dumpall", "dump", before, err) < 0))
		return -1;
	if ((r->c->methods & MT_UPGRADE) &&
	    (mt_do(r, "pg_upgrade", mt_upgrade_sh, err) < 0 ||
	        mt_after(r, "pg_upgrade", "upg", before, err) < 0))
		return -1;
	return 0;
}

/* Stops what runs and removes WORK (unless keep); keeps the first error. */
static int
mt_cleanup(struct mt_run *r, int rc, struct errbuf *err)
{
	struct errbuf cerr;

	if (r->pc.work == NULL)
		return rc;
	if (r->c->keep)
		step_result_detail(r->pc.res, "workdir", "%s", r->pc.work);
	err_clear(&cerr);
	if (mt_do(r, "cleaning up", mt_cleanup_sh, &cerr) < 0 && rc == 0) {
		*err = cerr;
		return -1;
	}
	return rc;
}

static int
mt_apply(struct run_ctx *ctx, const struct step *step, struct step_result *res,
    struct errbuf *err)
{
	const struct mt_cfg *c = step->cfg;
	struct mt_run r = { { ctx, step, res, c->cl.user, c->cl.username,
		                NULL },
		c, { NULL, 0 } };
	struct mt_fp before;
	int rc;

	mt_fp_init(&before);
	rc = mt_before(&r, &before, err);
	if (rc == 0)
		rc = mt_methods(&r, &before, err);
	rc = mt_cleanup(&r, rc, err);
	if (rc == 0 && r.fails.n > 0) {
		struct buf msg;

		buf_init(&msg, 1u << 20);
		for (size_t i = 0; i < r.fails.n; i++)
			buf_addf(&msg, "%s%s", i ? "; " : "", r.fails.v[i]);
		rc = err_set(
		    err, SH_ERR_STEP, "fingerprints differ %s", msg.data);
		buf_release(&msg);
	}
	strlist_free(&r.fails);
	pgcluster_free(&r.pc);
	mt_fp_free(&before);
	return rc;
}

static int
mt_probe(struct run_ctx *ctx, const struct step *step, struct step_result *res,
    struct errbuf *err)
{
	const struct mt_cfg *c = step->cfg;
	struct mt_run r = { { ctx, step, res, c->cl.user, c->cl.username,
		                NULL },
		c, { NULL, 0 } };

	char *body = xasprintf("%s%s", mt_probe_sh, mt_check_sh);
	int rc = mt_do(&r, "checking the binaries", body, err);

	free(body);
	return rc;
}

/* probe only checks the binaries; apply runs the whole test. */
static int
mt_run_step(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	if (mode == STEP_PROBE)
		return mt_probe(ctx, step, res, err);
	return mt_apply(ctx, step, res, err);
}

static void
mt_describe(const struct step *step, struct buf *out)
{
	const struct mt_cfg *c = step->cfg;

	buf_addf(out, "migration_test %s -> %s (%s%s%s), %zu data file%s%s",
	    c->old_bin, c->new_bin,
	    (c->methods & MT_UPGRADE) ? "pg_upgrade" : "",
	    c->methods == (MT_UPGRADE | MT_DUMPALL) ? ", " : "",
	    (c->methods & MT_DUMPALL) ? "pg_dumpall" : "", c->data.n,
	    c->data.n == 1 ? "" : "s",
	    c->txn == PG_TXN_NONE ? ", statement by statement" : "");
}

const struct step_kind step_kind_migration_test = {
	.name = "migration_test",
	.flags = 0,
	.keys = mt_keys,
	.cfg_size = sizeof(struct mt_cfg),
	.parse = mt_parse,
	.run = mt_run_step,
	.describe = mt_describe,
	.release = mt_release,
};
