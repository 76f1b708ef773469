/*
 * steps/restore_test.c: the `restore_test` step kind: prove that a backup
 * made by `backup` restores, by restoring it into a scratch cluster on the
 * target and comparing every fingerprint with the backup's manifest.
 *
 * Manifest fields:
 *   dir         required, absolute: the backup directory on the target
 *   bin_dir     absolute, default /usr/lib/postgresql/bin: initdb, pg_ctl,
 *               postgres, pg_restore and psql of any release that should
 *               read the backup (a newer major proves that it can)
 *   lib_dir     absolute: LD_LIBRARY_PATH for bin_dir's programs
 *               (binaries unpacked outside the system's library path)
 *   jobs        pg_restore --jobs, 1-64, default 2
 *   user        OS user that runs everything, default postgres
 *   username    the scratch cluster's bootstrap superuser, default `user`
 *   locale, encoding   initdb's, default C, UTF8 (a database restored
 *               with --create keeps the dump's own)
 *   workdir     absolute parent of the scratch dir, default /tmp
 *   port        the scratch cluster's port, default 54339 (live: the
 *               server's, default 5432)
 *   live        bool: compare the running server on socket_dir and port
 *               with the manifest instead of restoring (after an upgrade,
 *               after a rollback): steps 2, 3 and 5 do not happen, no
 *               binary is needed
 *   socket_dir  live only: the server's unix socket dir, default
 *               /var/run/postgresql (reached as `user`, peer auth)
 *
 * What happens, as `user`:
 *   1. manifest.json is read (cat) and checked (pg/backupmf.h);
 *   2. each file of the manifest is hashed on the target; a sha256 or a
 *      size that differs from the manifest refuses the restore, naming
 *      the file and both sums, before any cluster exists;
 *   3. one round trip: earlier scratch dirs an interrupted run left are
 *      swept (steps/pgcluster.h), WORKDIR/stagehand-rt.XXXXXX is made,
 *      initdb'd and started on its private 0700 socket dir WORK/s (no TCP
 *      listener, trust auth); globals.sql goes in with psql (the one error
 *      allowed: the bootstrap superuser that exists already); each
 *      database with pg_restore --jobs N --exit-on-error, with --create
 *      except for `postgres`, which initdb made;
 *   4. each database is fingerprinted through libpq and compared with
 *      the manifest: one test per object ("DB: table public.t", the
 *      backup's and the restored fingerprint in its message); an object
 *      that was lost, added or changed fails the step naming it and both
 *      fingerprints;
 *   5. the scratch cluster is stopped and its dir removed, whatever
 *      happened before.
 * The target keeps nothing: apply reports ok, not changed. Details:
 * backup_server_version, server_version (the scratch cluster's),
 * databases, objects. Live, the tests say "backup: ..; live: .." and a
 * difference is "fingerprints of the live server differ from the
 * backup: ..".
 *
 * probe: checks the binaries and that the manifest is there; either
 * missing is only the detail not_there_yet (an earlier step would make
 * it). Not STEP_RETRY_SAFE (the sweep of a retry would stop the first
 * attempt's cluster under it).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/backupmf.h"
#include "steps/pgcluster.h"
#include "steps/stepsh.h"
#include "util/limits.h"

#define RT_DEFAULT_BIN "/usr/lib/postgresql/bin"
#define RT_DEFAULT_PORT 54339
#define RT_DEFAULT_LIVE_PORT 5432
#define RT_DEFAULT_SOCKET "/var/run/postgresql"
#define RT_DEFAULT_JOBS 2
#define RT_MAX_JOBS 64

struct rt_cfg {
	const char *dir;         /* borrowed */
	const char *bin_dir;     /* borrowed or the default */
	const char *lib_dir;     /* borrowed; NULL: none */
	struct pgcluster_cfg cl; /* user, username, locale, encoding, workdir */
	unsigned port;
	unsigned jobs;
	bool live;
	const char *socket_dir; /* borrowed or the default; live only */
};

struct rt_run {
	struct pgcluster pc;
	const struct rt_cfg *c;
	struct pg_bk m;
	char *mname;     /* owned: DIR/manifest.json, for messages */
	struct buf bad;  /* the objects that differ */
	const char *db;  /* the database being compared */
	size_t nobjects; /* compared */
};

static const char *const rt_keys[] = {
	"dir",
	"bin_dir",
	"lib_dir",
	"jobs",
	PGCLUSTER_KEYS,
	"port",
	"live",
	"socket_dir",
	NULL,
};

/* ======================================================== parse */

static void
rt_release(void *cfg)
{
	struct rt_cfg *c = cfg;

	pgcluster_cfg_free(&c->cl);
}

static int
rt_parse_dirs(const struct node *body, struct rt_cfg *c, struct errbuf *err)
{
	c->bin_dir = RT_DEFAULT_BIN;
	if (stepsh_abs_path(body, "dir", &c->dir, err) < 0 ||
	    (node_get(body, "bin_dir") != NULL &&
	        stepsh_abs_path(body, "bin_dir", &c->bin_dir, err) < 0) ||
	    (node_get(body, "lib_dir") != NULL &&
	        stepsh_abs_path(body, "lib_dir", &c->lib_dir, err) < 0))
		return -1;
	return 0;
}

static int
rt_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct rt_cfg *c = cfg;
	uint64_t port = RT_DEFAULT_PORT, jobs = RT_DEFAULT_JOBS;

	if (rt_parse_dirs(body, c, err) < 0 ||
	    pgcluster_parse(body, &c->cl, err) < 0 ||
	    node_opt_bool(body, "live", &c->live, err) < 0)
		return -1;
	if (c->live)
		port = RT_DEFAULT_LIVE_PORT;
	if (node_opt_u64(body, "port", 65535, &port, err) < 0 ||
	    node_opt_u64(body, "jobs", RT_MAX_JOBS, &jobs, err) < 0)
		return -1;
	c->socket_dir = RT_DEFAULT_SOCKET;
	if (node_get(body, "socket_dir") != NULL &&
	    (!c->live ||
	        stepsh_abs_path(body, "socket_dir", &c->socket_dir, err) < 0))
		return c->live ? -1
		               : node_err(err, node_get(body, "socket_dir"),
		                     "socket_dir is for live: true only");
	if (port < (c->live ? 1 : 1024))
		return node_err(err, node_get(body, "port"),
		    "port must be %s-65535", c->live ? "1" : "1024");
	if (jobs == 0)
		return node_err(err, node_get(body, "jobs"),
		    "jobs must be 1-%d", RT_MAX_JOBS);
	c->port = (unsigned)port;
	c->jobs = (unsigned)jobs;
	return 0;
}

/* ======================================================== remote side */

static const char rt_need_sh[] =
    "need \"$BIN/initdb\" \"$BIN/pg_ctl\" \"$BIN/postgres\""
    " \"$BIN/pg_restore\" \"$BIN/psql\"\n"
    "v=$(old \"$BIN/postgres\" --version 2>&1) ||"
    " die \"$BIN/postgres does not run: $v\"\n"
    "echo \"= server_version $v\"\n";

static const char rt_probe_sh[] =
    "for t in \"$BIN/postgres\" \"$D/manifest.json\"; do\n"
    "\t[ -e \"$t\" ] || { echo \"= not_there_yet $t\"; exit 0; }\n"
    "done\n";

/* live: only the manifest must be there. */
static const char rt_probe_live_sh[] =
    "[ -e \"$D/manifest.json\" ] ||"
    " echo \"= not_there_yet $D/manifest.json\"\n";

static const char rt_cat_sh[] =
    "[ -f \"$D/manifest.json\" ] || die \"$D/manifest.json: no such file"
    " (not a backup made by the backup step?)\"\n"
    "exec cat -- \"$D/manifest.json\"\n";

/* "H NAME SHA256 SIZE" for each file name in "$@". */
static const char rt_sums_sh[] =
    "for f in \"$@\"; do sum \"$D\" \"$f\"; done\n";

static const char rt_setup_sh[] =
    "mkdir -p -- \"$WP\" || die \"cannot create workdir $WP\"\n"
    "W=$(mktemp -d \"$WP/stagehand-rt.XXXXXX\") || die \"mktemp in $WP"
    " failed\"\n"
    "echo \"W $W\"\n"
    "mkdir -m 700 \"$W/s\" || die \"cannot set up $W\"\n"
    "mkc \"$BIN\" \"$W/db\" old\n"
    "startc \"$BIN\" \"$W/db\" \"$P\" old\n"
    "psqlf \"$BIN\" \"$P\" \"$D/globals.sql\" old globals\n";

/* One database: "$1" its name, "$2" its file. */
static const char rt_restore_sh[] =
    "db=$1 f=$2\n"
    "if [ \"$db\" = postgres ]; then set -- -d postgres\n"
    "else set -- --create -d postgres; fi\n"
    "old \"$BIN/pg_restore\" --jobs=\"$J\" --exit-on-error -h \"$W/s\" -p"
    " \"$P\" -U \"$SU\" \"$@\" \"$D/$f\" 2>\"$W/restore.err\" ||\n"
    "\t{ tailerr \"$W/restore.err\";"
    " die \"pg_restore of database $db ($D/$f) failed\"; }\n";

static const char rt_cleanup_sh[] =
    "case $W in \"$WP\"/stagehand-rt.*) ;; *) die \"refusing to remove"
    " $W\" ;; esac\n"
    "! running \"$W/db\" || stopc \"$BIN\" \"$W/db\" old\n"
    "rm -rf -- \"$W\"\n";

static int
rt_vars(const struct rt_run *r, struct buf *b)
{
	const struct rt_cfg *c = r->c;

	if (buf_adds(b, pgcluster_lib_sh) < 0 ||
	    stepsh_assign(b, "BIN", c->bin_dir) < 0 ||
	    stepsh_assign(b, "OL", c->lib_dir ? c->lib_dir : "") < 0 ||
	    stepsh_assign(b, "WP", c->cl.workdir) < 0 ||
	    stepsh_assign(b, "PFX", "stagehand-rt") < 0 ||
	    stepsh_assign(b, "W", r->pc.work ? r->pc.work : "") < 0 ||
	    stepsh_assign(b, "SU", c->cl.username) < 0 ||
	    stepsh_assign(b, "LOC", c->cl.locale) < 0 ||
	    stepsh_assign(b, "ENC", c->cl.encoding) < 0 ||
	    stepsh_assign(b, "D", c->dir) < 0)
		return -1;
	return buf_adds(b, pgcluster_sum_sh) < 0
	           ? -1
	           : buf_addf(b, "P=%u J=%u\n", c->port, c->jobs);
}

/*
 * Runs the vars, `set --` the quoted args, and the bodies (NULL-ended)
 * as `user`. raw: stdout is data left in out.
 */
static int
rt_remote(struct rt_run *r, const char *what, const struct strlist *args,
    bool raw, struct remote_out *out, struct errbuf *err, ...)
{
	struct buf script;
	const char *body;
	va_list ap;
	int rc = -1, bad;

	memset(out, 0, sizeof(*out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	bad = rt_vars(r, &script) < 0 || buf_adds(&script, "set --") < 0;
	for (size_t i = 0; args != NULL && i < args->n; i++)
		bad |= buf_addc(&script, ' ') < 0 ||
		       sh_quote(&script, args->v[i]) < 0;
	bad |= buf_addc(&script, '\n') < 0;
	va_start(ap, err);
	while ((body = va_arg(ap, const char *)) != NULL)
		bad |= buf_adds(&script, body) < 0;
	va_end(ap);
	if (bad)
		err_set(err, SH_ERR_INTERNAL, "restore_test: script too long");
	else
		rc = pgcluster_remote(&r->pc, what, &script, out, raw, err);
	buf_release(&script);
	return rc;
}

/* ======================================================== the phases */

/* Steps 1 and 2: the manifest, and every file checked against it. */
static int
rt_read(struct rt_run *r, struct errbuf *err)
{
	struct remote_out out;
	struct strlist files = { NULL, 0 };
	int rc;

	rc = rt_remote(r, "reading the manifest", NULL, true, &out, err,
	    rt_cat_sh, (const char *)NULL);
	if (rc == 0)
		rc = pg_bk_parse(
		    r->mname, out.out.data, out.out.len, &r->m, err);
	if (rc < 0 && err->code == SH_ERR_MANIFEST)
		err_prefix(err, "backup manifest ");
	remote_out_free(&out);
	if (rc < 0)
		return -1;
	step_result_detail(
	    r->pc.res, "backup_server_version", "%s", r->m.server_version);
	step_result_detail(r->pc.res, "backup_created", "%s", r->m.created);
	if (r->c->live)
		return 0;
	strlist_push(&files, r->m.globals.name);
	for (size_t i = 0; i < r->m.ndbs; i++)
		strlist_push(&files, r->m.dbs[i].file.name);
	rc = rt_remote(r, "hashing the backup's files", &files, false, &out,
	    err, rt_sums_sh, (const char *)NULL);
	for (size_t i = 0; rc == 0 && i < files.n; i++) {
		const struct pg_bk_file *f =
		    i == 0 ? &r->m.globals : &r->m.dbs[i - 1].file;
		char sha[65];
		uint64_t size = 0;

		rc = pgcluster_sum(&out.out, f->name, sha, &size, err);
		if (rc == 0 && (strcmp(sha, f->sha256) != 0 || size != f->size))
			rc = err_set(err, SH_ERR_STEP,
			    "%s/%s: sha256 %s (%llu bytes), the manifest says "
			    "%s (%llu bytes): the backup was altered or is "
			    "damaged; nothing was restored",
			    r->c->dir, f->name, sha, (unsigned long long)size,
			    f->sha256, (unsigned long long)f->size);
	}
	remote_out_free(&out);
	strlist_free(&files);
	if (rc == 0)
		step_result_detail(
		    r->pc.res, "sha256", "%zu files verified", r->m.ndbs + 1);
	return rc;
}

/* Step 3: the scratch cluster, globals, every database. */
static int
rt_restore(struct rt_run *r, struct errbuf *err)
{
	struct remote_out out;
	int rc;

	rc = rt_remote(r, "setting up the scratch cluster", NULL, false, &out,
	    err, rt_need_sh, pgcluster_sweep_sh, rt_setup_sh,
	    (const char *)NULL);
	remote_out_free(&out);
	if (rc == 0 && r->pc.work == NULL)
		rc = err_set(err, SH_ERR_INTERNAL, "no work dir reported");
	for (size_t i = 0; rc == 0 && i < r->m.ndbs; i++) {
		struct strlist args = { NULL, 0 };

		strlist_push(&args, r->m.dbs[i].name);
		strlist_push(&args, r->m.dbs[i].file.name);
		rc = rt_remote(r, "pg_restore", &args, false, &out, err,
		    rt_restore_sh, (const char *)NULL);
		remote_out_free(&out);
		strlist_free(&args);
	}
	return rc;
}

/* One test per object; a difference goes into r->bad. */
static void
rt_test(void *arg, const struct pg_fp_obj *b, const struct pg_fp_obj *a)
{
	struct rt_run *r = arg;
	const struct pg_fp_obj *o = b ? b : a;
	bool same = pg_fp_same(b, a);
	char *name =
	    xasprintf("%s: %s %s", r->db, pg_fp_kind_name(o->kind), o->name);
	char *msg = xasprintf("backup: %s; %s: %s", b ? b->fp : "(absent)",
	    r->c->live ? "live" : "restored", a ? a->fp : "(absent)");

	step_result_test(r->pc.res, name, same, false, msg);
	if (!same)
		buf_addf(&r->bad, "%s%s: %s (%s -> %s)", r->bad.len ? ", " : "",
		    r->db, o->name, b ? b->fp : "absent", a ? a->fp : "absent");
	r->nobjects++;
	free(msg);
	free(name);
}

/* A connection to database db: the scratch cluster, or the live server. */
static int
rt_connect(
    struct rt_run *r, const char *db, struct pg_conn **conn, struct errbuf *err)
{
	struct pg_target t = { 0 };

	if (!r->c->live)
		return pgcluster_connect(&r->pc, r->c->port, db, conn, err);
	t.host = r->c->socket_dir;
	t.port = r->c->port;
	t.user = r->c->cl.username;
	t.dbname = db;
	t.os_user = r->c->cl.user;
	t.timeout_s = r->pc.step->timeout_s;
	if (pg_connect(r->pc.ctx, &t, conn, err) < 0)
		return err_prefix(err, "connecting to database %s: ", db);
	return 0;
}

/* Step 4. */
static int
rt_compare(struct rt_run *r, struct errbuf *err)
{
	for (size_t i = 0; i < r->m.ndbs; i++) {
		const struct pg_bk_db *d = &r->m.dbs[i];
		struct pg_conn *conn = NULL;
		struct pg_fp now;
		int rc;

		pg_fp_init(&now);
		rc = rt_connect(r, d->name, &conn, err);
		if (rc == 0 && pg_fp_rows(conn, &now, err) < 0)
			rc = err_prefix(err,
			    "fingerprint of the %s database %s: ",
			    r->c->live ? "live" : "restored", d->name);
		pg_close(conn);
		if (rc == 0) {
			r->db = d->name;
			pg_fp_pairs(&d->fp, &now, rt_test, r);
		}
		pg_fp_free(&now);
		if (rc < 0)
			return -1;
	}
	step_result_detail(r->pc.res, "databases", "%zu", r->m.ndbs);
	step_result_detail(r->pc.res, "objects", "%zu", r->nobjects);
	if (r->bad.len > 0 && r->c->live)
		return err_set(err, SH_ERR_STEP,
		    "fingerprints of the live server differ from the backup: "
		    "%s",
		    r->bad.data);
	if (r->bad.len > 0)
		return err_set(err, SH_ERR_STEP,
		    "fingerprints differ after the restore: %s", r->bad.data);
	return 0;
}

/* Step 5; keeps the first error. */
static int
rt_cleanup(struct rt_run *r, int rc, struct errbuf *err)
{
	struct remote_out out;
	struct errbuf cerr;

	if (r->pc.work == NULL)
		return rc;
	err_clear(&cerr);
	if (rt_remote(r, "removing the scratch cluster", NULL, false, &out,
	        &cerr, rt_cleanup_sh, (const char *)NULL) < 0 &&
	    rc == 0) {
		*err = cerr;
		rc = -1;
	}
	remote_out_free(&out);
	return rc;
}

static int
rt_run_step(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct rt_cfg *c = step->cfg;
	struct rt_run r;
	struct remote_out out;
	int rc;

	memset(&r, 0, sizeof(r));
	r.pc = (struct pgcluster){ ctx, step, res, c->cl.user, c->cl.username,
		NULL };
	r.c = c;
	if (mode == STEP_PROBE) {
		rc = rt_remote(&r, "checking the binaries", NULL, false, &out,
		    err, c->live ? rt_probe_live_sh : rt_probe_sh,
		    c->live ? "" : rt_need_sh, (const char *)NULL);
		remote_out_free(&out);
		return rc;
	}
	r.mname = xasprintf("%s/%s", c->dir, PG_BK_MANIFEST);
	buf_init(&r.bad, 1u << 20);
	rc = rt_read(&r, err);
	if (rc == 0 && !c->live)
		rc = rt_restore(&r, err);
	if (rc == 0)
		rc = rt_compare(&r, err);
	rc = rt_cleanup(&r, rc, err);
	buf_release(&r.bad);
	free(r.mname);
	pg_bk_free(&r.m);
	pgcluster_free(&r.pc);
	return rc;
}

static void
rt_describe(const struct step *step, struct buf *out)
{
	const struct rt_cfg *c = step->cfg;

	if (c->live)
		buf_addf(out,
		    "restore_test %s against the live server on %s:%u", c->dir,
		    c->socket_dir, c->port);
	else
		buf_addf(out, "restore_test %s with %s (pg_restore --jobs %u)",
		    c->dir, c->bin_dir, c->jobs);
}

const struct step_kind step_kind_restore_test = {
	.name = "restore_test",
	.flags = 0,
	.keys = rt_keys,
	.cfg_size = sizeof(struct rt_cfg),
	.parse = rt_parse,
	.run = rt_run_step,
	.describe = rt_describe,
	.release = rt_release,
};
