/*
 * steps/pgtap.c: the `pgtap` step kind: run pgTAP test files on a server
 * on the target and report every assertion as a test case; no psql or
 * pg_prove is needed there.
 *
 * Manifest fields: files, remote, host, port, user, database, password,
 * connect_timeout (steps/pgstep.h), and
 *   transaction  rollback (default): BEGIN; the file; ROLLBACK, so tests
 *                leave nothing behind; none: statement by statement, no
 *                wrapping. A file that manages its own transactions (the
 *                usual BEGIN; SELECT plan(N); ...; ROLLBACK;) runs
 *                statement by statement, unwrapped
 *
 * Every file runs (a failing one does not stop the others), each with a
 * fresh TAP stream (tap.h) fed with every text/varchar value of every
 * result row, in order. One res test per assertion: "FILE: N - desc",
 * skipped for # SKIP and # TODO (a failing TODO fails nothing), its
 * diagnostics as the message. A file also gets a test of its own, failed,
 * when it errors (SQL error "FILE:LINE: SQLSTATE: message"), bails out,
 * has no assertions (a failure, not a pass), no plan, or a plan count
 * that differs from the assertions run; "skipped" for a 1..0 skip-all.
 *
 * The step fails when any file has a problem; the error is the first one:
 * for a failed assertion "FILE: assertion N failed: desc: diagnostics".
 * Tests change nothing: res->changed stays false, so a passing run is ok.
 * probe connects to nothing and reports the files that would run.
 * STEP_RETRY_SAFE: rolled-back tests can run again.
 */
#include <stdlib.h>
#include <string.h>

#include "pg/tap.h"
#include "steps/pgstep.h"

#define PGTAP_TEXTOID 25
#define PGTAP_VARCHAROID 1043

struct pgtap_cfg {
	struct pgstep_cfg pg;
	enum pg_txn txn;
};

/* One apply: totals over the files and the first problem. */
struct pgtap_run {
	unsigned long assertions, passed, failed, skipped, todo;
	size_t bad_files;
	struct buf first; /* the step's error message */
};

static const char *const pgtap_keys[] = { PGSTEP_KEYS, "transaction", NULL };

/* ======================================================== parse */

static int
pgtap_parse_txn(
    const struct node *body, struct pgtap_cfg *c, struct errbuf *err)
{
	const char *t = NULL;

	c->txn = PG_TXN_ROLLBACK;
	if (node_opt_str(body, "transaction", &t, err) < 0)
		return -1;
	if (t == NULL || strcmp(t, "rollback") == 0)
		return 0;
	if (strcmp(t, "none") == 0) {
		c->txn = PG_TXN_NONE;
		return 0;
	}
	return node_err(err, node_get(body, "transaction"),
	    "transaction must be rollback or none, not '%s'", t);
}

static void
pgtap_release(void *cfg)
{
	struct pgtap_cfg *c = cfg;

	pgstep_free(&c->pg);
}

static int
pgtap_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct pgtap_cfg *c = cfg;

	if (pgtap_parse_txn(body, c, err) < 0 ||
	    pgstep_parse(body, &c->pg, err) < 0)
		return -1;
	return 0;
}

/* ======================================================== TAP collection */

static int
pgtap_rows(void *arg, PGresult *r, struct errbuf *err)
{
	struct tap *t = arg;
	int rows = PQntuples(r), cols = PQnfields(r);

	(void)err;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return 0;
	for (int i = 0; i < rows; i++)
		for (int j = 0; j < cols; j++) {
			Oid type = PQftype(r, j);

			if ((type != PGTAP_TEXTOID &&
			        type != PGTAP_VARCHAROID) ||
			    PQgetisnull(r, i, j))
				continue;
			tap_feed(t, PQgetvalue(r, i, j),
			    (size_t)PQgetlength(r, i, j));
		}
	return 0;
}

/* ======================================================== reporting */

static void
pgtap_count(struct pgtap_run *run, const struct tap *t)
{
	run->assertions += (unsigned long)(t->n + t->dropped);
	run->passed += t->passed;
	run->failed += t->failed;
	run->skipped += t->skipped;
	run->todo += t->todo;
}

static void
pgtap_assertion(
    const char *file, const struct tap_assertion *a, struct step_result *res)
{
	char *name = a->description[0] ? xasprintf("%s: %lu - %s", file,
	                                     a->number, a->description)
	                               : xasprintf("%s: %lu", file, a->number);
	struct buf msg;
	bool skipped = a->directive != TAP_DIR_NONE &&
	               (a->ok || a->directive == TAP_DIR_TODO);

	buf_init(&msg, TAP_MAX_DIAG + 2 * TAP_MAX_TEXT);
	if (a->directive != TAP_DIR_NONE)
		buf_addf(&msg, "%s%s%s%s",
		    a->directive == TAP_DIR_SKIP ? "SKIP" : "TODO",
		    a->reason[0] ? ": " : "", a->reason,
		    a->directive == TAP_DIR_TODO && a->ok
		        ? " (passed unexpectedly)"
		        : "");
	if (a->diag.len > 0)
		buf_addf(&msg, "%s%s", msg.len ? "\n" : "", a->diag.data);
	step_result_test(res, name, a->ok || a->directive == TAP_DIR_TODO,
	    skipped, msg.len ? msg.data : NULL);
	buf_release(&msg);
	free(name);
}

/* "FILE: assertion N failed: desc: diag; diag" for the step's error. */
static void
pgtap_first_failure(const char *file, const struct tap *t, struct buf *b)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct tap_assertion *a = &t->a[i];

		if (a->ok || a->directive == TAP_DIR_TODO)
			continue;
		buf_addf(b, "%s: assertion %lu failed", file, a->number);
		if (a->description[0])
			buf_addf(b, ": %s", a->description);
		if (a->diag.len > 0)
			buf_adds(b, ": ");
		for (size_t k = 0; k < a->diag.len && b->len < 900; k++) {
			char ch = a->diag.data[k];

			if (ch != '\n') {
				buf_addc(b, ch);
				continue;
			}
			buf_adds(b, "; "); /* and the line's indent */
			while (
			    k + 1 < a->diag.len && a->diag.data[k + 1] == ' ')
				k++;
		}
		return;
	}
}

/* Records a file's assertions and its verdict. */
static void
pgtap_report(const struct pgstep_file *f, const struct tap *t,
    const struct errbuf *sqlerr, struct pgtap_run *run, struct step_result *res)
{
	struct buf why;
	bool bad;

	for (size_t i = 0; i < t->n; i++)
		pgtap_assertion(f->name, &t->a[i], res);
	pgtap_count(run, t);
	buf_init(&why, 2048);
	if (sqlerr != NULL)
		buf_adds(&why, sqlerr->msg);
	bad = sqlerr != NULL || tap_problem(t, &why);
	if (bad && (sqlerr != NULL || t->failed == 0 || t->bailed))
		step_result_test(res, f->name, false, false, why.data);
	else if (!bad && t->skip_all)
		step_result_test(res, f->name, true, true, t->skip_reason);
	if (bad && run->bad_files++ == 0) {
		if (sqlerr == NULL && t->failed > 0 && !t->bailed)
			pgtap_first_failure(f->name, t, &run->first);
		else if (sqlerr != NULL)
			buf_adds(&run->first, why.data);
		else
			buf_addf(&run->first, "%s: %s", f->name, why.data);
	}
	buf_release(&why);
}

/* ======================================================== apply, probe */

static int
pgtap_file(struct pg_conn *pc, const struct pgtap_cfg *c,
    const struct pgstep_file *f, struct pgtap_run *run, struct step_result *res,
    struct errbuf *err)
{
	struct tap t;
	int rc;

	tap_init(&t);
	err_clear(err);
	rc = pg_script_run(pc, &f->script, c->txn, pgtap_rows, &t, err);
	pgstep_notices(pc, res);
	if (rc == 0 || err->code == SH_ERR_STEP) {
		pgtap_report(f, &t, rc < 0 ? err : NULL, run, res);
		rc = 0;
	}
	tap_free(&t);
	return rc;
}

static int
pgtap_verdict(
    const struct pgtap_run *run, struct step_result *res, struct errbuf *err)
{
	step_result_detail(res, "assertions", "%lu", run->assertions);
	step_result_detail(res, "passed", "%lu", run->passed);
	step_result_detail(res, "failed", "%lu", run->failed);
	step_result_detail(res, "skipped", "%lu", run->skipped);
	step_result_detail(res, "todo", "%lu", run->todo);
	if (run->bad_files == 0)
		return 0;
	if (run->bad_files == 1)
		return err_set(err, SH_ERR_STEP, "%s", run->first.data);
	return err_set(err, SH_ERR_STEP, "%s (and %zu more failing file%s)",
	    run->first.data, run->bad_files - 1,
	    run->bad_files == 2 ? "" : "s");
}

static int
pgtap_apply(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	struct pgtap_cfg *c = step->cfg;
	struct pg_conn *pc = NULL;
	struct pgtap_run run;
	int rc = -1;

	memset(&run, 0, sizeof(run));
	buf_init(&run.first, 1024);
	if (pgstep_load(ctx, step, &c->pg, res, err) < 0 ||
	    pgstep_connect(ctx, step, &c->pg, &pc, err) < 0)
		goto out;
	step_result_detail(res, "files", "%zu", c->pg.nfiles);
	for (size_t i = 0; i < c->pg.nfiles; i++)
		if (pgtap_file(pc, c, &c->pg.files[i], &run, res, err) < 0)
			goto out;
	rc = pgtap_verdict(&run, res, err);
out:
	pg_close(pc);
	buf_release(&run.first);
	res->changed = false;
	return rc;
}

/* A probe connects to nothing: the tests change nothing either way. */
static void
pgtap_would_run(const struct pgtap_cfg *c, struct step_result *res)
{
	struct buf names;

	buf_init(&names, 4096);
	for (size_t i = 0; i < c->pg.nfiles; i++)
		buf_addf(&names, "%s%s", i ? ", " : "", c->pg.files[i].name);
	step_result_detail(res, "would_run", "%s", names.data);
	buf_release(&names);
	res->changed = false;
}

static int
pgtap_run_step(struct run_ctx *ctx, const struct step *step,
    enum step_mode mode, struct step_result *res, struct errbuf *err)
{
	if (mode == STEP_APPLY)
		return pgtap_apply(ctx, step, res, err);
	pgtap_would_run(step->cfg, res);
	return 0;
}

static void
pgtap_describe(const struct step *step, struct buf *out)
{
	const struct pgtap_cfg *c = step->cfg;

	buf_adds(out, "pgtap ");
	for (size_t i = 0; i < c->pg.nfiles; i++)
		buf_addf(out, "%s%s", i ? ", " : "", c->pg.files[i].name);
	buf_adds(out, " as ");
	pgstep_describe_conn(&c->pg, out);
}

const struct step_kind step_kind_pgtap = {
	.name = "pgtap",
	.flags = STEP_RETRY_SAFE,
	.keys = pgtap_keys,
	.cfg_size = sizeof(struct pgtap_cfg),
	.parse = pgtap_parse,
	.run = pgtap_run_step,
	.describe = pgtap_describe,
	.release = pgtap_release,
};
