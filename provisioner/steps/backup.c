/*
 * steps/backup.c: the `backup` step kind: pg_dump --format=custom of each
 * database of a running cluster and pg_dumpall --globals-only, on the
 * target as the cluster's user, into a backup directory with a manifest
 * (pg/backupmf.h) that holds each file's sha256 and size, the server's
 * version and the fingerprints (pg/fingerprint.h) of every table,
 * materialized view and sequence as dumped.
 *
 * Manifest fields:
 *   dir         required, absolute: the backup directory on the target
 *   databases   a name or a list; default every database that accepts
 *               connections and is not a template
 *   bin_dir     absolute, default /usr/lib/postgresql/bin: pg_dump and
 *               pg_dumpall (any version that can read the server)
 *   user        OS user that runs everything, default postgres
 *   username    the role, default `user`: a superuser, or one that reads
 *               every table and sequence
 *   socket_dir  absolute, default /var/run/postgresql: the server's unix
 *               socket dir (pg_dump and libpq both connect there)
 *   port        default 5432
 *   margin_mb   free space wanted beyond the estimate, MiB; default 100
 *   replace     bool: an existing backup in dir is replaced (once the new
 *               one is complete); default false
 *   download    local dir: the backup is copied there too, each file's
 *               sha256 checked against the manifest after the transfer;
 *               empty: none
 *
 * What happens (apply), as `user`:
 *   0. without replace, a dir that holds a backup (manifest.json) is
 *      kept and nothing else happens: the server is not contacted (a
 *      resumed upgrade keeps the backup it made before it stopped the
 *      server);
 *   1. libpq (relay to socket_dir): the databases, their sizes (the
 *      estimate: pg_database_size, an upper bound for a compressed dump),
 *      the server version. A listed database that does not exist fails.
 *   2. check round trip: the binaries, pg_dump --version, free space on
 *      the file system of dir (its nearest existing ancestor), and what
 *      dir is. Refuses when free < estimate + margin, naming both numbers;
 *      when dir holds a backup (manifest.json) and not replace, the step
 *      is ok and nothing is dumped; a dir that is neither absent, empty
 *      nor a backup is refused, replace or not.
 *   3. DIR.partial.XXXXXX is made next to dir (stale ones removed) and
 *      pg_dumpall --globals-only writes globals.sql there.
 *   4. per database: a libpq connection opens a REPEATABLE READ, READ
 *      ONLY transaction, exports its snapshot and fingerprints the
 *      database in it; pg_dump --snapshot dumps that same snapshot; then
 *      the transaction ends. The fingerprints are those of the rows in
 *      the dump (sequences are not transactional: a nextval() meanwhile
 *      shows).
 *   5. manifest.json is written, the partial dir renamed to dir (an old
 *      backup moved aside first and removed after), synced.
 *   6. download: each file is copied with `cat` into a temp file next to
 *      its place in the local dir, hashed, compared with the manifest and
 *      renamed; a mismatch fails naming the file and both sums.
 * A failure removes the partial dir.
 *
 * Report: details databases, estimate_bytes, free_bytes, bytes (the
 * backup's size), server_version, dir (and download); one change line.
 *
 * probe: steps 1 and 2 (read-only): "would back up N databases into DIR"
 * or the refusal; a server that cannot be reached or binaries that are
 * not there yet (a plan of a fresh image) are only the detail
 * not_there_yet. Not STEP_RETRY_SAFE: a retry would dump again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pg/backupmf.h"
#include "steps/pgcluster.h"
#include "steps/stepsh.h"
#include "util/limits.h"

#define BK_DEFAULT_BIN "/usr/lib/postgresql/bin"
#define BK_DEFAULT_SOCKET "/var/run/postgresql"
#define BK_DEFAULT_MARGIN_MB 100
#define BK_MARGIN_MB_MAX (1u << 30) /* a petabyte */

struct bk_cfg {
	const char *dir;        /* borrowed */
	struct strlist dbs;     /* empty: all */
	const char *bin_dir;    /* borrowed or the default */
	char *user;             /* owned */
	const char *username;   /* borrowed, or user */
	const char *socket_dir; /* borrowed or the default */
	unsigned port;
	uint64_t margin_mb;
	bool replace;
	char *download; /* owned: resolved local dir; NULL: none */
};

struct bk_run {
	struct pgcluster pc; /* ctx, step, res, user; work = the partial dir */
	const struct bk_cfg *c;
	struct pg_bk m;
	struct strlist dbs; /* what is dumped */
	uint64_t estimate;  /* bytes */
};

static const char *const bk_keys[] = {
	"dir",
	"databases",
	"bin_dir",
	"user",
	"username",
	"socket_dir",
	"port",
	"margin_mb",
	"replace",
	"download",
	NULL,
};

/* ======================================================== parse */

static void
bk_release(void *cfg)
{
	struct bk_cfg *c = cfg;

	strlist_free(&c->dbs);
	free(c->user);
	free(c->download);
}

/* A database name: not empty, no NUL (the reader refused those), at most
 * 63 bytes (NAMEDATALEN). It only reaches the shell quoted. */
static int
bk_parse_dbs(const struct node *body, struct bk_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "databases");

	if (node_opt_strlist(body, "databases", &c->dbs, err) < 0)
		return -1;
	if (n != NULL && c->dbs.n == 0)
		return node_err(err, n, "databases: no names");
	for (size_t i = 0; i < c->dbs.n; i++) {
		size_t len = strlen(c->dbs.v[i]);

		if (len == 0 || len > 63)
			return node_err(err, n,
			    "databases: '%s' is not a database name (1 to 63 "
			    "bytes)",
			    c->dbs.v[i]);
		for (size_t k = 0; k < i; k++)
			if (strcmp(c->dbs.v[k], c->dbs.v[i]) == 0)
				return node_err(err, n, "databases: '%s' twice",
				    c->dbs.v[i]);
	}
	return 0;
}

static int
bk_parse_names(const struct node *body, struct bk_cfg *c, struct errbuf *err)
{
	const char *user = NULL;

	if (node_opt_str(body, "user", &user, err) < 0 ||
	    node_opt_str(body, "username", &c->username, err) < 0)
		return -1;
	if (user != NULL && !stepsh_account_name_ok(user))
		return node_err(err, node_get(body, "user"),
		    "user: not a valid user name: '%s'", user);
	c->user = xstrdup(user ? user : "postgres");
	if (c->username == NULL)
		c->username = c->user;
	else if (c->username[0] == '\0' || strlen(c->username) > 63)
		return node_err(
		    err, node_get(body, "username"), "username: 1 to 63 bytes");
	return 0;
}

static int
bk_parse_download(const struct node *body, struct bk_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "download");
	const char *d = NULL;

	if (n == NULL)
		return 0;
	if (node_opt_str(body, "download", &d, err) < 0)
		return -1;
	/* Empty is none: a stage passes its download dir through a var. */
	if (d == NULL || d[0] == '\0')
		return 0;
	if (strlen(d) != n->len)
		return node_err(err, n, "download: must be a path without NUL");
	/* Like download's dest: relative to the working directory. */
	c->download = xstrdup(d);
	return 0;
}

static int
bk_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct bk_cfg *c = cfg;
	uint64_t port = 5432;

	c->margin_mb = BK_DEFAULT_MARGIN_MB;
	c->bin_dir = BK_DEFAULT_BIN;
	c->socket_dir = BK_DEFAULT_SOCKET;
	if (stepsh_abs_path(body, "dir", &c->dir, err) < 0 ||
	    (node_get(body, "bin_dir") != NULL &&
	        stepsh_abs_path(body, "bin_dir", &c->bin_dir, err) < 0) ||
	    (node_get(body, "socket_dir") != NULL &&
	        stepsh_abs_path(body, "socket_dir", &c->socket_dir, err) < 0) ||
	    bk_parse_dbs(body, c, err) < 0 ||
	    bk_parse_names(body, c, err) < 0 ||
	    node_opt_u64(body, "port", 65535, &port, err) < 0 ||
	    node_opt_u64(
	        body, "margin_mb", BK_MARGIN_MB_MAX, &c->margin_mb, err) < 0 ||
	    node_opt_bool(body, "replace", &c->replace, err) < 0)
		return -1;
	if (bk_parse_download(body, c, err) < 0)
		return -1;
	if (port == 0)
		return node_err(
		    err, node_get(body, "port"), "port must be 1-65535");
	if (strcmp(c->dir, "/") == 0 || c->dir[strlen(c->dir) - 1] == '/')
		return node_err(err, node_get(body, "dir"),
		    "dir: a directory path without a trailing slash");
	c->port = (unsigned)port;
	return 0;
}

/* ======================================================== remote side */

/* What dir is, the free space next to it, and pg_dump's version:
 * "V version", "F KiB path", "E absent|empty|backup|other". */
static const char bk_check_sh[] =
    "need \"$BIN/pg_dump\" \"$BIN/pg_dumpall\"\n"
    "v=$(\"$BIN/pg_dump\" --version 2>&1) ||"
    " die \"$BIN/pg_dump does not run: $v\"\n"
    "echo \"V $v\"\n"
    "p=$D\n"
    "while [ ! -d \"$p\" ]; do p=$(dirname -- \"$p\"); done\n"
    "f=$(df -Pk -- \"$p\" | awk 'NR == 2 { print $4 }')\n"
    "case $f in '' | *[!0-9]*) die \"df $p failed\" ;; esac\n"
    "echo \"F $f $p\"\n"
    "if [ ! -e \"$D\" ] && [ ! -L \"$D\" ]; then echo 'E absent'\n"
    "elif [ -d \"$D\" ] && [ ! -L \"$D\" ] && [ -f \"$D/manifest.json\" ];"
    " then echo 'E backup'\n"
    "elif [ -d \"$D\" ] && [ ! -L \"$D\" ] &&"
    " [ -z \"$(ls -A -- \"$D\" 2>&1)\" ]; then echo 'E empty'\n"
    "else echo 'E other'; fi\n";

/* Step 0: "E backup" when dir holds a backup. */
static const char bk_kept_sh[] =
    "if [ -d \"$D\" ] && [ ! -L \"$D\" ] && [ -f \"$D/manifest.json\" ];"
    " then echo 'E backup'; fi\n";

static const char bk_start_sh[] =
    "par=$(dirname -- \"$D\")\n"
    "mkdir -p -- \"$par\" || die \"cannot create $par\"\n"
    "for o in \"$D\".partial.*; do\n"
    "\t[ -d \"$o\" ] && [ -O \"$o\" ] && rm -rf -- \"$o\"\n"
    "done\n"
    "W=$(mktemp -d \"$D.partial.XXXXXX\") ||"
    " die \"cannot make a directory next to $D\"\n"
    "echo \"W $W\"\n"
    "\"$BIN/pg_dumpall\" --globals-only -h \"$S\" -p \"$PORT\" -U \"$SU\""
    " -f \"$W/globals.sql\" 2>\"$W/.err\" ||\n"
    "\t{ tailerr \"$W/.err\"; die \"pg_dumpall --globals-only failed\"; }\n"
    "sum \"$W\" globals.sql\n";

/* PGDATABASE, not -d: a name with '=' would be read as a conninfo. */
static const char bk_dump_sh[] =
    "PGDATABASE=$DB \"$BIN/pg_dump\" --format=custom --snapshot=\"$SNAP\""
    " -h \"$S\" -p \"$PORT\" -U \"$SU\" -f \"$W/$FILE\" 2>\"$W/.err\" ||\n"
    "\t{ tailerr \"$W/.err\"; die \"pg_dump of database $DB failed\"; }\n"
    "sum \"$W\" \"$FILE\"\n";

/* The manifest arrives in a here-document after this. */
static const char bk_finish_sh[] =
    "rm -f -- \"$W/.err\"\n"
    "if [ -e \"$D\" ]; then\n"
    "\tmv -T -- \"$D\" \"$W.old\" || die \"cannot move $D aside\"\n"
    "fi\n"
    "mv -T -- \"$W\" \"$D\" || die \"cannot rename $W to $D\"\n"
    "rm -rf -- \"$W.old\"\n"
    "sync -f -- \"$D\" 2>/dev/null || sync\n"
    "echo \"= bytes $(du -sb -- \"$D\" | cut -f 1)\"\n";

static const char bk_abort_sh[] =
    "case $W in \"$D\".partial.*) rm -rf -- \"$W\" ;; esac\n";

static int
bk_vars(const struct bk_run *r, struct buf *b)
{
	const struct bk_cfg *c = r->c;

	if (buf_adds(b, pgcluster_lib_sh) < 0 ||
	    stepsh_assign(b, "BIN", c->bin_dir) < 0 ||
	    stepsh_assign(b, "S", c->socket_dir) < 0 ||
	    stepsh_assign(b, "SU", c->username) < 0 ||
	    stepsh_assign(b, "D", c->dir) < 0 ||
	    stepsh_assign(b, "W", r->pc.work ? r->pc.work : "") < 0 ||
	    stepsh_assign(b, "OL", "") < 0 ||
	    buf_addf(b, "PORT=%u\n", c->port) < 0)
		return -1;
	return buf_adds(b, pgcluster_sum_sh);
}

/* Runs the vars, body and tail (may be NULL); stdout into out, raw. */
static int
bk_remote(struct bk_run *r, const char *what, const char *body,
    const struct buf *tail, struct remote_out *out, struct errbuf *err)
{
	struct buf script;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (bk_vars(r, &script) < 0 || buf_adds(&script, body) < 0 ||
	    (tail != NULL && buf_add(&script, tail->data, tail->len) < 0))
		err_set(err, SH_ERR_INTERNAL, "backup: script too long");
	else
		rc = pgcluster_remote(&r->pc, what, &script, out, false, err);
	buf_release(&script);
	return rc;
}

/* The rest of the first stdout line that starts with "TAG ", or NULL.
 * Caller frees. */
static char *
bk_line(const struct buf *out, char tag)
{
	const char *p = out->data, *end = out->data + out->len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (len >= 2 && p[0] == tag && p[1] == ' ')
			return xstrndup(p + 2, len - 2);
		p += len + 1;
	}
	return NULL;
}

/* The "H" line of name into f. */
static int
bk_take_sum(const struct buf *out, const char *name, struct pg_bk_file *f,
    struct errbuf *err)
{
	char sha[65];

	if (pgcluster_sum(out, name, sha, &f->size, err) < 0)
		return -1;
	f->name = xstrdup(name);
	f->sha256 = xstrdup(sha);
	return 0;
}

/* ======================================================== libpq */

static int
bk_connect(
    struct bk_run *r, const char *db, struct pg_conn **conn, struct errbuf *err)
{
	struct pg_target t = { 0 };

	t.host = r->c->socket_dir;
	t.port = r->c->port;
	t.user = r->c->username;
	t.dbname = db;
	t.os_user = r->c->user;
	t.timeout_s = r->pc.step->timeout_s;
	if (pg_connect(r->pc.ctx, &t, conn, err) < 0)
		return err_prefix(err, "connecting to database %s: ", db);
	return 0;
}

static int
bk_num(const char *s, uint64_t *out)
{
	return parse_u64(s, strlen(s), UINT64_MAX, out);
}

struct bk_list {
	struct bk_run *r;
	struct strlist found; /* every database there, "name" */
	struct strlist sizes; /* and its size, same order */
};

static int
bk_on_list(void *arg, PGresult *res, struct errbuf *err)
{
	struct bk_list *l = arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return 0;
	if (PQnfields(res) == 2) {
		for (int i = 0; i < PQntuples(res); i++) {
			strlist_push(&l->found, PQgetvalue(res, i, 0));
			strlist_push(&l->sizes, PQgetvalue(res, i, 1));
		}
	} else if (PQnfields(res) == 3 && PQntuples(res) == 1) {
		struct pg_bk *m = &l->r->m;

		free(m->server_version);
		m->server_version = xstrdup(PQgetvalue(res, 0, 0));
		if (bk_num(PQgetvalue(res, 0, 1), &m->server_version_num) < 0)
			return err_set(
			    err, SH_ERR_STEP, "bad server_version_num");
	}
	return 0;
}

static const char bk_list_sql[] =
    "SELECT datname, pg_database_size(oid)::text FROM pg_database"
    " WHERE datallowconn AND NOT datistemplate ORDER BY datname;"
    " SELECT current_setting('server_version'),"
    " current_setting('server_version_num'), 1";

/* Step 1: which databases, how big, which server. */
static int
bk_survey(struct bk_run *r, struct errbuf *err)
{
	const struct bk_cfg *c = r->c;
	struct bk_list l = { r, { NULL, 0 }, { NULL, 0 } };
	struct pg_conn *conn = NULL;
	int rc;

	rc = bk_connect(r, c->dbs.n ? c->dbs.v[0] : "postgres", &conn, err);
	if (rc == 0)
		rc = pg_exec(conn, bk_list_sql, bk_on_list, &l, NULL, err);
	pg_close(conn);
	for (size_t i = 0; rc == 0 && i < c->dbs.n; i++)
		if (!strlist_has(&l.found, c->dbs.v[i]))
			rc = err_set(err, SH_ERR_STEP,
			    "database %s: not there (or it does not accept "
			    "connections)",
			    c->dbs.v[i]);
	for (size_t i = 0; rc == 0 && i < l.found.n; i++) {
		uint64_t size = 0;

		if (c->dbs.n > 0 && !strlist_has(&c->dbs, l.found.v[i]))
			continue;
		if (bk_num(l.sizes.v[i], &size) < 0)
			rc = err_set(
			    err, SH_ERR_STEP, "bad size of %s", l.found.v[i]);
		strlist_push(&r->dbs, l.found.v[i]);
		r->estimate += size;
	}
	strlist_free(&l.found);
	strlist_free(&l.sizes);
	if (rc == 0 && r->m.server_version == NULL)
		rc = err_set(err, SH_ERR_STEP, "no server version");
	return rc;
}

/* ======================================================== the phases */

enum bk_state {
	BK_ABSENT,
	BK_EMPTY,
	BK_BACKUP,
	BK_OTHER
};

/* Step 2. *state says what dir is. */
static int
bk_check(struct bk_run *r, enum bk_state *state, struct errbuf *err)
{
	const struct bk_cfg *c = r->c;
	struct remote_out out;
	char *v = NULL, *f = NULL, *e = NULL, *where = NULL;
	uint64_t kib = 0;
	uint64_t free_b, need, margin = c->margin_mb << 20;
	int rc;

	rc = bk_remote(
	    r, "checking the backup directory", bk_check_sh, NULL, &out, err);
	if (rc == 0) {
		v = bk_line(&out.out, 'V');
		f = bk_line(&out.out, 'F');
		e = bk_line(&out.out, 'E');
		where = f ? strchr(f, ' ') : NULL;
		if (v == NULL || e == NULL || where == NULL ||
		    parse_u64(f, (size_t)(where - f), UINT64_MAX / 1024, &kib) <
		        0)
			rc = err_set(
			    err, SH_ERR_REMOTE, "check: unexpected output");
	}
	remote_out_free(&out);
	if (rc == 0) {
		free_b = kib * 1024u;
		need = r->estimate + margin;
		r->m.pg_dump = xstrdup(v);
		*state = strcmp(e, "absent") == 0   ? BK_ABSENT
		         : strcmp(e, "empty") == 0  ? BK_EMPTY
		         : strcmp(e, "backup") == 0 ? BK_BACKUP
		                                    : BK_OTHER;
		step_result_detail(r->pc.res, "estimate_bytes", "%llu",
		    (unsigned long long)r->estimate);
		step_result_detail(r->pc.res, "free_bytes", "%llu",
		    (unsigned long long)free_b);
		step_result_detail(r->pc.res, "pg_dump", "%s", v);
		if (*state == BK_OTHER)
			rc = err_set(err, SH_ERR_STEP,
			    "%s exists and is not a backup (no manifest.json): "
			    "refusing to write into it",
			    c->dir);
		else if (free_b < need && !(*state == BK_BACKUP && !c->replace))
			rc = err_set(err, SH_ERR_STEP,
			    "not enough free space in %s: %llu bytes free, "
			    "%llu needed (estimated dump size %llu + margin "
			    "%llu)",
			    where + 1, (unsigned long long)free_b,
			    (unsigned long long)need,
			    (unsigned long long)r->estimate,
			    (unsigned long long)margin);
	}
	free(v);
	free(f);
	free(e);
	return rc;
}

/* The file a database's dump goes into: NAME.dump when NAME is a plain
 * file name, else dbN.dump. Caller frees. */
static char *
bk_file_name(const char *db, size_t i)
{
	char *f = xasprintf("%s.dump", db);

	if (pg_bk_file_name_ok(f) && strcmp(f, PG_BK_MANIFEST) != 0 &&
	    strcmp(f, PG_BK_GLOBALS) != 0 && strncmp(db, "db", 2) != 0)
		return f;
	free(f);
	return xasprintf("db%zu.dump", i + 1);
}

static int
bk_snap(void *arg, PGresult *res, struct errbuf *err)
{
	(void)err;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    PQnfields(res) == 1) {
		free(*(char **)arg);
		*(char **)arg = xstrdup(PQgetvalue(res, 0, 0));
	}
	return 0;
}

/* Step 4 for database i: fingerprint and dump one snapshot. */
static int
bk_dump_db(struct bk_run *r, size_t i, struct errbuf *err)
{
	const char *db = r->dbs.v[i];
	struct pg_bk_db *d = pg_bk_db_add(&r->m, db);
	char *file = bk_file_name(db, i), *snap = NULL;
	struct pg_conn *conn = NULL;
	struct remote_out out;
	struct buf vars;
	int rc;

	memset(&out, 0, sizeof(out));
	buf_init(&vars, 4096);
	rc = bk_connect(r, db, &conn, err);
	if (rc == 0)
		rc = pg_exec(conn,
		    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;"
		    " SELECT pg_export_snapshot()",
		    bk_snap, &snap, NULL, err);
	if (rc == 0 && snap == NULL)
		rc = err_set(err, SH_ERR_STEP, "no snapshot exported");
	if (rc == 0 && pg_fp_rows(conn, &d->fp, err) < 0)
		rc = err_prefix(err, "fingerprint of database %s: ", db);
	if (rc == 0 && (stepsh_assign(&vars, "DB", db) < 0 ||
	                   stepsh_assign(&vars, "FILE", file) < 0 ||
	                   stepsh_assign(&vars, "SNAP", snap) < 0 ||
	                   buf_adds(&vars, bk_dump_sh) < 0))
		rc = err_set(err, SH_ERR_INTERNAL, "backup: script too long");
	if (rc == 0)
		rc = bk_remote(r, "pg_dump", vars.data, NULL, &out, err);
	if (rc == 0)
		rc = bk_take_sum(&out.out, file, &d->file, err);
	/* The snapshot only had to live as long as pg_dump's start. */
	if (rc == 0)
		rc = pg_exec(conn, "COMMIT", NULL, NULL, NULL, err);
	pg_close(conn);
	remote_out_free(&out);
	buf_release(&vars);
	free(snap);
	free(file);
	return rc;
}

static void
bk_created(struct pg_bk *m)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;

	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(ts, sizeof(ts), "%lld", (long long)now);
	m->created = xstrdup(ts);
}

/* Step 5: manifest.json in a here-document, then the rename. */
static int
bk_finish(struct bk_run *r, struct errbuf *err)
{
	struct buf json, tail;
	struct remote_out out;
	int rc;

	buf_init(&json, PG_BK_MAX_BYTES);
	buf_init(&tail, PG_BK_MAX_BYTES + 4096);
	bk_created(&r->m);
	rc = pg_bk_write(&r->m, &json, err);
	if (rc == 0 &&
	    (buf_adds(&tail, "cat >\"$W/" PG_BK_MANIFEST "\" <<'STAGEHAND_EOF'"
	                     " || die \"cannot write the manifest\"\n") < 0 ||
	        buf_add(&tail, json.data, json.len) < 0 ||
	        buf_adds(&tail, "STAGEHAND_EOF\n") < 0 ||
	        buf_adds(&tail, bk_finish_sh) < 0))
		rc = err_set(err, SH_ERR_INTERNAL, "backup: manifest too long");
	if (rc == 0)
		rc = bk_remote(r, "writing the manifest", "", &tail, &out, err);
	if (rc == 0)
		remote_out_free(&out);
	buf_release(&tail);
	buf_release(&json);
	return rc;
}

static void
bk_abort(struct bk_run *r)
{
	struct remote_out out;
	struct errbuf scratch;

	if (r->pc.work == NULL)
		return;
	if (bk_remote(r, "removing the partial backup", bk_abort_sh, NULL, &out,
	        &scratch) == 0)
		remote_out_free(&out);
}

/* ======================================================== download */

/* One file of the backup into dir/name, checked against want. */
static int
bk_fetch(struct bk_run *r, const char *dir, const struct pg_bk_file *f,
    struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	char *dest = xasprintf("%s/%s", dir, f->name);
	char *tmp = xasprintf("%s/.%s.stagehand-XXXXXX", dir, f->name);
	struct remote_out out;
	struct buf script, hex;
	uint64_t size = 0;
	int fd = mkstemp(tmp), rc = -1;

	memset(&out, 0, sizeof(out));
	buf_init(&script, 8192);
	buf_init(&hex, 128);
	if (fd < 0) {
		err_set(err, SH_ERR_IO, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (buf_adds(&script, "exec cat -- ") < 0 ||
	    sh_quote(&script, r->c->dir) < 0 || buf_addc(&script, '/') < 0 ||
	    sh_quote(&script, f->name) < 0 || buf_addc(&script, '\n') < 0 ||
	    remote_script(&cmd, &script, err) < 0)
		goto out;
	cmd.become = r->c->user;
	cmd.timeout_s = r->pc.step->timeout_s ? r->pc.step->timeout_s
	                                      : STEP_DEFAULT_TIMEOUT_S;
	cmd.stdout_fd = fd;
	if (remote_run(r->pc.ctx, &cmd, &out, err) < 0)
		goto out;
	if (out.status != 0) {
		remote_fail(NULL, err, &out.err, "download: cat %s/%s: exit %d",
		    r->c->dir, f->name, out.status);
		goto out;
	}
	if (fsync(fd) < 0) {
		err_set(err, SH_ERR_IO, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (stepsh_sha256_file(tmp, &hex, &size, err) < 0)
		goto out;
	if (strcmp(hex.data, f->sha256) != 0 || size != f->size) {
		err_set(err, SH_ERR_STEP,
		    "download: %s: sha256 %s (%llu bytes) after the transfer, "
		    "the manifest says %s (%llu bytes)",
		    f->name, hex.data, (unsigned long long)size, f->sha256,
		    (unsigned long long)f->size);
		goto out;
	}
	if (rename(tmp, dest) < 0) {
		err_set(err, SH_ERR_IO, "%s: %s", dest, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		(void)unlink(tmp);
	remote_out_free(&out);
	buf_release(&script);
	buf_release(&hex);
	free(tmp);
	free(dest);
	return rc;
}

/* Step 6: every file, then the manifest (the same bytes as the one on
 * the target: it is written from the same struct). */
static int
bk_download(struct bk_run *r, struct errbuf *err)
{
	const char *dir = r->c->download;
	struct buf json;
	char *path;
	int rc;

	if (mkdir_p(dir, 0700, err) < 0)
		return err_prefix(err, "download: ");
	rc = bk_fetch(r, dir, &r->m.globals, err);
	for (size_t i = 0; rc == 0 && i < r->m.ndbs; i++)
		rc = bk_fetch(r, dir, &r->m.dbs[i].file, err);
	if (rc < 0)
		return -1;
	buf_init(&json, PG_BK_MAX_BYTES);
	path = xasprintf("%s/%s", dir, PG_BK_MANIFEST);
	rc = pg_bk_write(&r->m, &json, err);
	if (rc == 0)
		rc = file_write_atomic(path, json.data, json.len, 0600, err);
	free(path);
	buf_release(&json);
	if (rc == 0) {
		step_result_detail(r->pc.res, "download", "%s", dir);
		step_result_change(r->pc.res,
		    "downloaded %zu files to %s, sha256 verified",
		    r->m.ndbs + 1, dir);
	}
	return rc;
}

/* ======================================================== run */

/* Step 0: *state is BK_BACKUP when dir holds a backup already. */
static int
bk_kept(struct bk_run *r, enum bk_state *state, struct errbuf *err)
{
	struct remote_out out;
	char *e;
	int rc;

	rc = bk_remote(
	    r, "checking the backup directory", bk_kept_sh, NULL, &out, err);
	e = rc == 0 ? bk_line(&out.out, 'E') : NULL;
	if (e != NULL && strcmp(e, "backup") == 0)
		*state = BK_BACKUP;
	free(e);
	remote_out_free(&out);
	return rc;
}

static int
bk_apply(struct bk_run *r, struct errbuf *err)
{
	struct remote_out out;
	int rc;

	rc = bk_remote(r, "starting the backup", bk_start_sh, NULL, &out, err);
	if (rc == 0)
		rc = bk_take_sum(&out.out, PG_BK_GLOBALS, &r->m.globals, err);
	remote_out_free(&out);
	if (rc == 0 && r->pc.work == NULL)
		rc = err_set(err, SH_ERR_INTERNAL, "no partial dir reported");
	for (size_t i = 0; rc == 0 && i < r->dbs.n; i++)
		rc = bk_dump_db(r, i, err);
	if (rc == 0)
		rc = bk_finish(r, err);
	if (rc < 0) {
		bk_abort(r);
		return -1;
	}
	r->pc.res->changed = true;
	step_result_change(r->pc.res, "backup of %zu database%s into %s",
	    r->dbs.n, r->dbs.n == 1 ? "" : "s", r->c->dir);
	if (r->c->download != NULL)
		return bk_download(r, err);
	return 0;
}

static int
bk_run_step(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct bk_cfg *c = step->cfg;
	struct bk_run r;
	enum bk_state state = BK_ABSENT;
	int rc;

	memset(&r, 0, sizeof(r));
	r.pc = (struct pgcluster){ ctx, step, res, c->user, c->username, NULL };
	r.c = c;
	rc = c->replace ? 0 : bk_kept(&r, &state, err);
	if (rc == 0 && state != BK_BACKUP)
		rc = bk_survey(&r, err);
	if (rc == 0 && state != BK_BACKUP)
		rc = bk_check(&r, &state, err);
	/* A plan of a fresh image: the server or pg_dump comes later. */
	if (rc < 0 && mode == STEP_PROBE && err->code == SH_ERR_REMOTE) {
		step_result_detail(res, "not_there_yet", "%s", err->msg);
		res->changed = true;
		step_result_change(res, "would back up into %s", c->dir);
		rc = 0;
		goto out;
	}
	if (rc == 0 && state != BK_BACKUP) {
		step_result_detail(res, "databases", "%zu", r.dbs.n);
		step_result_detail(
		    res, "server_version", "%s", r.m.server_version);
		step_result_detail(res, "dir", "%s", c->dir);
	}
	if (rc == 0 && state == BK_BACKUP && !c->replace) {
		step_result_detail(res, "kept", "a backup is already there");
	} else if (rc == 0 && mode == STEP_PROBE) {
		res->changed = true;
		step_result_change(res, "would back up %zu database%s into %s",
		    r.dbs.n, r.dbs.n == 1 ? "" : "s", c->dir);
	} else if (rc == 0) {
		rc = bk_apply(&r, err);
	}
out:
	pg_bk_free(&r.m);
	strlist_free(&r.dbs);
	pgcluster_free(&r.pc);
	return rc;
}

static void
bk_describe(const struct step *step, struct buf *out)
{
	const struct bk_cfg *c = step->cfg;

	buf_addf(out, "backup ");
	if (c->dbs.n == 0)
		buf_adds(out, "every database");
	for (size_t i = 0; i < c->dbs.n; i++)
		buf_addf(out, "%s%s", i ? ", " : "", c->dbs.v[i]);
	buf_addf(out, " into %s", c->dir);
	if (c->download != NULL)
		buf_addf(out, ", download to %s", c->download);
}

const struct step_kind step_kind_backup = {
	.name = "backup",
	.flags = 0,
	.keys = bk_keys,
	.cfg_size = sizeof(struct bk_cfg),
	.parse = bk_parse,
	.run = bk_run_step,
	.describe = bk_describe,
	.release = bk_release,
};
