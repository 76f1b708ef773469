/*
 * runner.c: runs a stage's steps against the target. See runner.h for the
 * contract; this file holds the policy (skips, retries, reconnects), the
 * kinds hold the mechanics.
 */
#include "run/runner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "report/ui.h"
#include "util/limits.h"

/* Transport retries of one step after a reconnect; not user `retries`. */
#define RUNNER_TRANSPORT_RETRIES 3

/* ======================================================== skipping */

static bool
has_any_tag(const struct step *s, const struct strlist *tags)
{
	for (size_t i = 0; i < tags->n; i++)
		if (strlist_has(&s->tags, tags->v[i]))
			return true;
	return false;
}

/* Why a step will not run; NULL when it runs. *reason is owned by caller. */
static char *
skip_reason(const struct run_ctx *ctx, const struct step *s, bool started)
{
	const struct run_opts *o = ctx->opts;

	if (!started)
		return xasprintf("before --start-at '%s'", o->start_at);
	if (!s->enabled)
		return xasprintf("when '%s' is false", s->when ? s->when : "");
	if (o->tags.n > 0 && !has_any_tag(s, &o->tags) &&
	    !strlist_has(&s->tags, "always"))
		return xstrdup("not selected by --tags");
	if (o->skip_tags.n > 0 && has_any_tag(s, &o->skip_tags))
		return xstrdup("excluded by --skip-tags");
	return NULL;
}

/* ======================================================== one step */

static int
sleep_interruptible(struct run_ctx *ctx, unsigned seconds)
{
	uint64_t until = now_ms() + (uint64_t)seconds * 1000u;

	while (now_ms() < until) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };

		if (*ctx->interrupted)
			return -1;
		nanosleep(&ts, NULL);
	}
	return 0;
}

static bool
is_fatal(enum sh_err code)
{
	return code == SH_ERR_TRUST || code == SH_ERR_UNREACHABLE ||
	       code == SH_ERR_USAGE || code == SH_ERR_INTERRUPTED ||
	       code == SH_ERR_LOCKED;
}

/*
 * After a dropped session: reconnect, then tell whether to run the step
 * again. Returns -1 (err filled) when the target stays gone.
 */
static int
recover_session(struct run_ctx *ctx, const struct step *s,
    struct step_result *r, struct errbuf *err)
{
	struct errbuf rerr;

	ui_notice(ctx->ui, "connection lost during '%s' (%s); reconnecting",
	    s->name, err->msg);
	if (run_ctx_reconnect(ctx, &rerr) < 0) {
		*err = rerr;
		return -1;
	}
	r->reconnects++;
	ui_notice(ctx->ui, "reconnected to %s", ctx->ssh_opts.host);
	return 0;
}

static enum step_status
finish(struct step_result *r, enum step_status st, const struct errbuf *e)
{
	r->status = st;
	if (e != NULL)
		r->err = *e;
	return st;
}

static enum step_status
run_step(struct run_ctx *ctx, const struct step *s, struct step_result *r)
{
	const struct step_kind *k = s->kind;
	unsigned transport_retries = 0;
	struct errbuf e;

	for (;;) {
		int rc;

		r->attempts++;
		err_clear(&e);
		rc = k->run(
		    ctx, s, ctx->opts->plan ? STEP_PROBE : STEP_APPLY, r, &e);
		if (rc == 0 && s->changed_when != STEP_CHANGED_AS_REPORTED)
			r->changed = s->changed_when == STEP_CHANGED_ALWAYS;
		if (rc == 0 && ctx->opts->plan)
			return finish(
			    r, r->changed ? STEP_WOULD_CHANGE : STEP_OK, NULL);
		if (rc == 0)
			return finish(
			    r, r->changed ? STEP_CHANGED : STEP_OK, NULL);
		if (e.code == SH_ERR_INTERRUPTED || *ctx->interrupted)
			return finish(r, STEP_INTERRUPTED, &e);
		if (e.code == SH_ERR_SSH && run_ctx_connected(ctx)) {
			bool expected =
			    s->expect_disconnect && !ctx->opts->plan;

			if (recover_session(ctx, s, r, &e) < 0)
				return finish(r, STEP_FAILED, &e);
			if (expected) {
				r->changed = true;
				return finish(r, STEP_CHANGED, NULL);
			}
			if (((k->flags & STEP_RETRY_SAFE) || ctx->opts->plan) &&
			    transport_retries++ < RUNNER_TRANSPORT_RETRIES) {
				step_result_reset(r);
				continue;
			}
		}
		if (is_fatal(e.code) || r->attempts > s->retries)
			return finish(r, STEP_FAILED, &e);
		ui_notice(ctx->ui, "'%s' failed (%s); retry %u of %u in %u s",
		    s->name, e.msg, r->attempts, s->retries, s->retry_delay_s);
		if (sleep_interruptible(ctx, s->retry_delay_s) < 0) {
			err_set(&e, SH_ERR_INTERRUPTED, "interrupted");
			return finish(r, STEP_INTERRUPTED, &e);
		}
		step_result_reset(r);
	}
}

/* ======================================================== the loop */

/* The session is opened before the first step that will run, so a
 * connection problem is the run's error, not the first step's. */
static int
connect_if_needed(
    struct run_ctx *ctx, const bool *will_run, struct errbuf *run_err)
{
	const struct manifest *m = ctx->manifest;

	for (size_t i = 0; i < m->nsteps; i++)
		if (will_run[i] &&
		    !(m->steps[i].kind->flags & STEP_LOCAL_ONLY)) {
			ctx->warm_become = m->steps[i].become;
			return run_ctx_connect(ctx, run_err);
		}
	return 0;
}

static void
plan_skips(struct run_ctx *ctx, struct step_result *results, bool *will_run)
{
	const struct manifest *m = ctx->manifest;
	bool started = ctx->opts->start_at == NULL;

	for (size_t i = 0; i < m->nsteps; i++) {
		const struct step *s = &m->steps[i];

		step_result_init(&results[i]);
		if (!started && strcmp(s->name, ctx->opts->start_at) == 0)
			started = true;
		results[i].skip_reason =
		    s->rescue
		        ? xstrdup("rescue step: runs only after a failure")
		        : skip_reason(ctx, s, started);
		will_run[i] = results[i].skip_reason == NULL;
	}
}

static int
exit_for(const struct step_result *r, const struct errbuf *run_err)
{
	if (run_err->code != SH_OK)
		return run_err->code == SH_ERR_INTERRUPTED
		           ? EXIT_INTERRUPTED
		           : sh_exit_code(run_err->code);
	if (r->status == STEP_INTERRUPTED)
		return EXIT_INTERRUPTED;
	if (is_fatal(r->err.code))
		return sh_exit_code(r->err.code);
	return EXIT_STEP_FAILED;
}

/* Runs one step with its UI events and timing. */
static void
run_one(struct run_ctx *ctx, const struct step *s, struct step_result *r)
{
	size_t total = ctx->manifest->nsteps;

	ui_step_start(ctx->ui, s, total);
	r->started_ms = now_ms();
	r->started_at = (int64_t)time(NULL);
	run_step(ctx, s, r);
	r->duration_ms = now_ms() - r->started_ms;
	ui_step_end(ctx->ui, s, total, r);
}

/*
 * The rescue list (a rollback, say) runs after a step failed, in order,
 * and stops at its own first failure. It never turns a failed run into a
 * passed one: the exit code stays the failure's.
 */
static void
run_rescue(struct run_ctx *ctx, struct step_result *results, bool failed)
{
	const struct manifest *m = ctx->manifest;
	bool stop = !failed || ctx->opts->plan;

	for (size_t i = 0; i < m->nsteps; i++) {
		struct step_result *r = &results[i];

		if (!m->steps[i].rescue)
			continue;
		if (stop || *ctx->interrupted) {
			r->status = failed ? STEP_NOT_RUN : STEP_SKIPPED;
			continue;
		}
		free(r->skip_reason);
		r->skip_reason = NULL;
		ui_notice(
		    ctx->ui, "running rescue step '%s'", m->steps[i].name);
		run_one(ctx, &m->steps[i], r);
		if (r->status == STEP_FAILED || r->status == STEP_INTERRUPTED)
			stop = true;
	}
}

int
runner_run(
    struct run_ctx *ctx, struct step_result *results, struct errbuf *run_err)
{
	const struct manifest *m = ctx->manifest;
	bool *will_run = xcalloc(m->nsteps, sizeof(bool));
	int exit_code = EXIT_OK;
	bool stop = false, failed = false;

	err_clear(run_err);
	plan_skips(ctx, results, will_run);
	if (connect_if_needed(ctx, will_run, run_err) < 0) {
		exit_code = exit_for(NULL, run_err);
		stop = true;
	}
	for (size_t i = 0; i < m->nsteps; i++) {
		const struct step *s = &m->steps[i];
		struct step_result *r = &results[i];

		if (s->rescue)
			continue;
		if (stop || *ctx->interrupted) {
			r->status = STEP_NOT_RUN;
			continue;
		}
		if (!will_run[i]) {
			r->status = STEP_SKIPPED;
			ui_step_end(ctx->ui, s, m->nsteps, r);
			continue;
		}
		run_one(ctx, s, r);
		if (r->status == STEP_FAILED || r->status == STEP_INTERRUPTED) {
			if (exit_code == EXIT_OK)
				exit_code = exit_for(r, run_err);
			if (r->status == STEP_FAILED && !is_fatal(r->err.code))
				failed = true;
			if (!ctx->opts->keep_going || is_fatal(r->err.code) ||
			    r->status == STEP_INTERRUPTED)
				stop = true;
		}
	}
	run_rescue(ctx, results, failed && run_err->code == SH_OK);
	if (*ctx->interrupted && exit_code == EXIT_OK) {
		err_set(run_err, SH_ERR_INTERRUPTED, "interrupted by signal");
		exit_code = EXIT_INTERRUPTED;
	}
	free(will_run);
	return exit_code;
}
