/*
 * steps/sql.c: the `sql` step kind: run SQL files against a PostgreSQL
 * server on the target, through libpq and the run's SSH session (pg.h);
 * no psql is needed there.
 *
 * Manifest fields: files, remote, host, port, user, database, password,
 * connect_timeout (steps/pgstep.h), and
 *   transaction  per_file (default): each file in its own transaction,
 *                BEGIN; the file as one query; COMMIT (one round trip per
 *                file); none: statement by statement, each committed on
 *                its own as psql would (CREATE DATABASE, VACUUM, CREATE
 *                INDEX CONCURRENTLY need it). A file that manages its own
 *                transactions (a top-level BEGIN/COMMIT/ROLLBACK...) is
 *                never wrapped: it runs statement by statement
 *   unless       an SQL query; when the first column of its first row is
 *                true, the step is ok and no file runs. It runs in a READ
 *                ONLY transaction (also during `plan`)
 *
 * Files run in order; the first error stops the step with
 * "FILE:LINE: SQLSTATE: message" (LINE from the server's error position,
 * or the first line of the failing statement). psql backslash commands
 * are refused when the manifest is loaded (pgscript.c).
 *
 * Idempotence is the SQL's business (like shell): a step that ran reports
 * changed, one line per file; `unless` makes a stage idempotent. probe:
 * runs `unless` (read-only) when there is one; a server that cannot be
 * reached yet (a plan of a fresh image) means "would run". Without
 * `unless` it reports "would run FILE" for each file without connecting.
 *
 * Server notices (RAISE NOTICE...) go to the step's output. Not
 * STEP_RETRY_SAFE: running SQL twice may not be harmless.
 */
#include <stdlib.h>
#include <string.h>

#include "steps/pgstep.h"

struct sql_cfg {
	struct pgstep_cfg pg;
	enum pg_txn txn;
	const char *unless; /* borrowed; NULL: none */
};

static const char *const sql_keys[] = { PGSTEP_KEYS, "transaction", "unless",
	NULL };

/* ======================================================== parse */

static void
sql_release(void *cfg)
{
	struct sql_cfg *c = cfg;

	pgstep_free(&c->pg);
}

static int
sql_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct sql_cfg *c = cfg;
	const struct node *u;

	if (pgstep_parse_txn(body, &c->txn, err) < 0 ||
	    node_opt_str(body, "unless", &c->unless, err) < 0 ||
	    pgstep_parse(body, &c->pg, err) < 0)
		return -1;
	u = node_get(body, "unless");
	if (c->unless != NULL &&
	    (strlen(c->unless) != u->len || c->unless[0] == '\0'))
		return node_err(err, u, "unless: empty or contains NUL");
	return 0;
}

/* ======================================================== unless */

static int
sql_unless_row(void *arg, PGresult *r, struct errbuf *err)
{
	bool *yes = arg;
	const char *v;

	(void)err;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return 0;
	*yes = false;
	if (PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0))
		return 0;
	v = PQgetvalue(r, 0, 0);
	*yes = strcmp(v, "t") == 0 || strcmp(v, "true") == 0;
	return 0;
}

/* Runs `unless` read-only; *yes when its first value is true. */
static int
sql_unless(
    struct pg_conn *pc, const struct sql_cfg *c, bool *yes, struct errbuf *err)
{
	struct errbuf scratch;
	int rc;

	*yes = false;
	if (pg_exec(pc, "BEGIN READ ONLY", NULL, NULL, NULL, err) < 0)
		return err_prefix(err, "unless: ");
	rc = pg_exec(pc, c->unless, sql_unless_row, yes, NULL, err);
	(void)pg_exec(pc, "ROLLBACK", NULL, NULL, NULL, &scratch);
	return rc < 0 ? err_prefix(err, "unless: ") : 0;
}

/* ======================================================== apply, probe */

static int
sql_run_files(struct pg_conn *pc, const struct sql_cfg *c,
    struct step_result *res, struct errbuf *err)
{
	for (size_t i = 0; i < c->pg.nfiles; i++) {
		const struct pgstep_file *f = &c->pg.files[i];
		int rc = pg_script_run(pc, &f->script, c->txn, NULL, NULL, err);

		pgstep_notices(pc, res);
		if (rc < 0)
			return -1;
		res->changed = true;
		step_result_change(res, "ran %s (%zu statement%s)", f->name,
		    f->script.n, f->script.n == 1 ? "" : "s");
	}
	return 0;
}

static int
sql_apply(struct run_ctx *ctx, const struct step *step, struct step_result *res,
    struct errbuf *err)
{
	struct sql_cfg *c = step->cfg;
	struct pg_conn *pc = NULL;
	bool skip = false;
	int rc = -1;

	if (pgstep_load(ctx, step, &c->pg, res, err) < 0 ||
	    pgstep_connect(ctx, step, &c->pg, &pc, err) < 0)
		goto out;
	if (c->unless != NULL && sql_unless(pc, c, &skip, err) < 0)
		goto out;
	if (skip)
		step_result_detail(res, "skipped_by", "unless");
	rc = skip ? 0 : sql_run_files(pc, c, res, err);
out:
	if (pc != NULL)
		pgstep_notices(pc, res);
	pg_close(pc);
	return rc;
}

static void
sql_would_run(const struct sql_cfg *c, struct step_result *res)
{
	res->changed = true;
	for (size_t i = 0; i < c->pg.nfiles; i++)
		step_result_change(res, "would run %s", c->pg.files[i].name);
}

static int
sql_probe(struct run_ctx *ctx, const struct step *step, struct step_result *res,
    struct errbuf *err)
{
	const struct sql_cfg *c = step->cfg;
	struct pg_conn *pc = NULL;
	bool skip = false;
	int rc;

	if (c->unless == NULL) {
		sql_would_run(c, res);
		return 0;
	}
	/*
	 * A plan of a fresh image meets no server yet: an earlier step of the
	 * stage starts it. Unreachable is "would run", not a failed plan.
	 */
	if (pgstep_connect(ctx, step, &c->pg, &pc, err) < 0) {
		if (err->code != SH_ERR_REMOTE)
			return -1;
		step_result_change(res,
		    "server not reachable now (%s): "
		    "unless cannot be checked",
		    err->msg);
		sql_would_run(c, res);
		err_clear(err);
		return 0;
	}
	rc = sql_unless(pc, c, &skip, err);
	pgstep_notices(pc, res);
	pg_close(pc);
	if (rc < 0)
		return -1;
	if (skip)
		step_result_detail(res, "skipped_by", "unless");
	else
		sql_would_run(c, res);
	return 0;
}

/* apply runs the files; probe at most asks `unless` (read-only). */
static int
sql_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	if (mode == STEP_PROBE)
		return sql_probe(ctx, step, res, err);
	return sql_apply(ctx, step, res, err);
}

static void
sql_describe(const struct step *step, struct buf *out)
{
	const struct sql_cfg *c = step->cfg;

	buf_adds(out, "sql ");
	for (size_t i = 0; i < c->pg.nfiles; i++)
		buf_addf(out, "%s%s", i ? ", " : "", c->pg.files[i].name);
	buf_adds(out, " as ");
	pgstep_describe_conn(&c->pg, out);
	if (c->unless != NULL)
		buf_adds(out, " (unless)");
}

const struct step_kind step_kind_sql = {
	.name = "sql",
	.flags = 0,
	.keys = sql_keys,
	.cfg_size = sizeof(struct sql_cfg),
	.parse = sql_parse,
	.run = sql_run,
	.describe = sql_describe,
	.release = sql_release,
};
