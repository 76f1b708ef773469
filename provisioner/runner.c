/*
 * runner.c: runs a stage's steps against the target. See runner.h for the
 * contract; this file holds the policy (skips, retries, reconnects), the
 * kinds hold the mechanics.
 */
#include "runner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "limits.h"
#include "remote.h"
#include "ui.h"

/* Transport retries of one step after a reconnect; not user `retries`. */
#define RUNNER_TRANSPORT_RETRIES 3

/* ======================================================== target facts */

static char *
next_line(char **p)
{
	char *line = *p, *nl;

	if (line == NULL || *line == '\0')
		return NULL;
	nl = strchr(line, '\n');
	if (nl != NULL) {
		*nl = '\0';
		*p = nl + 1;
	} else {
		*p = line + strlen(line);
	}
	return line;
}

/* One round trip: arch, hostname, boot_id. Nothing here is secret. */
static int
learn_facts(struct run_ctx *ctx, struct errbuf *err)
{
	struct buf out;
	struct ssh_io io = { .stdin_fd = -1, .stdout_fd = -1, .out = &out };
	struct ssh_exit st;
	char *p, *arch, *host, *boot;
	int rc = -1;

	buf_init(&out, 4096);
	io.deadline_ms = now_ms() + SSH_CONNECT_TIMEOUT_S * 1000u;
	if (ssh_exec(ctx->ssh,
	        "uname -m; uname -n; "
	        "cat /proc/sys/kernel/random/boot_id",
	        &io, &st, err) < 0)
		goto out;
	p = out.data;
	arch = next_line(&p);
	host = next_line(&p);
	boot = next_line(&p);
	if (st.status != 0 || arch == NULL || host == NULL || boot == NULL) {
		err_set(err, SH_ERR_REMOTE,
		    "cannot read the target's facts (uname, boot_id): "
		    "exit %d",
		    st.status);
		goto out;
	}
	ctx->facts.system = xasprintf("%s-linux", arch);
	ctx->facts.hostname = xstrdup(host);
	ctx->facts.boot_id = xstrdup(boot);
	rc = 0;
out:
	buf_release(&out);
	return rc;
}

/* ======================================================== the target lock */

/*
 * Runs as the login user through remote_run(), so its channel's watchdog
 * ends it when the controller goes away while it waits. I: this run's
 * holder line, W: seconds to wait (0 none, -1 no limit). The holder is
 * setsid'd out of the watchdog's reach and keeps fd 9 (the flock) while
 * the session's sshd ($s, found by walking up from $PPID) lives. The lock
 * file says who holds it: "I\nHOLDER_PID SSHD_PID". Holders whose session
 * is gone let go within a second, so the lock is waited for briefly then;
 * our own (a reconnect) is ended. stdout: "locked PID" or "held <line>"
 * (exit 75); "waiting ..." goes to stderr.
 */
static const char lock_sh[] =
    "f=/run/lock/stagehand.lock\n"
    "[ -d /run/lock ] && [ -w /run/lock ] || f=/tmp/stagehand.lock\n"
    "{ exec 9<>\"$f\"; } 2>/dev/null || exec 9<\"$f\" || exit 71\n"
    "s=$PPID c=\n"
    "while [ \"$s\" -gt 1 ] && read -r c </proc/$s/comm && "
    "[ \"$c\" != sshd ]; do\n"
    "\twhile read -r k v; do [ \"$k\" = PPid: ] && break; done "
    "</proc/$s/status\n"
    "\ts=$v\n"
    "done\n"
    "if ! flock -n 9; then\n"
    "\th= hp= hs=\n"
    "\t{ read -r h; read -r hp hs; } <\"$f\"\n"
    "\tw=$W\n"
    "\tif [ -n \"$h\" ] && [ \"$h\" = \"$I\" ]; then\n"
    "\t\tkill \"$hp\" 2>/dev/null; w=10\n"
    "\telif [ -n \"$hs\" ] && [ ! -e \"/proc/$hs\" ]; then w=10; fi\n"
    "\t[ \"$w\" = 0 ] && { echo \"held $h\"; exit 75; }\n"
    "\techo \"waiting for the target lock, held by ${h:-an unknown "
    "run}\" >&2\n"
    "\ti=0\n"
    "\tuntil flock -w 1 9; do\n"
    "\t\ti=$((i + 1))\n"
    "\t\t[ \"$w\" -lt 0 ] || [ \"$i\" -lt \"$w\" ] || "
    "{ echo \"held $h\"; exit 75; }\n"
    "\tdone\n"
    "fi\n"
    "setsid sh -c 'while [ -e \"/proc/$1\" ]; do sleep 1 9<&-; done' "
    "stagehand-lock \"$s\" </dev/null >/dev/null 2>&1 &\n"
    "printf '%s\\n%s %s\\n' \"$I\" \"$!\" \"$s\" >\"$f\" 2>/dev/null\n"
    "echo \"locked $!\"\n";

/* The first "waiting ..." line of the lock script's stderr, as a notice. */
struct lock_wait {
	struct ui *ui;
	struct buf line;
	bool told;
};

static void
lock_on_stderr(void *arg, const char *p, size_t len)
{
	struct lock_wait *w = arg;
	const char *nl;

	if (w->told)
		return;
	nl = memchr(p, '\n', len);
	buf_add(&w->line, p, nl != NULL ? (size_t)(nl - p) : len);
	if (nl == NULL)
		return;
	w->told = true;
	ui_notice(w->ui, "%s", w->line.data);
}

/* "stagehand pid P on HOST, stage S, since T": one line, no controls. */
static int
lock_holder_line(const struct run_ctx *ctx, struct buf *b)
{
	char host[256] = "?";
	int rc;

	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '?';
	host[sizeof(host) - 1] = '\0';
	rc = buf_addf(b, "stagehand pid %ld on %s, stage %s, since ",
	         (long)getpid(), host, ctx->manifest->stage) < 0 ||
	     time_rfc3339(b, ctx->started_at) < 0;
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char)b->data[i] < ' ' || b->data[i] == 0x7f)
			b->data[i] = '?';
	return rc ? -1 : 0;
}

static int
lock_script(const struct run_ctx *ctx, struct buf *sc)
{
	struct buf who;
	int rc;

	buf_init(&who, 1024);
	rc = lock_holder_line(ctx, &who) < 0 || buf_adds(sc, "I=") < 0 ||
	     sh_quote(sc, who.data) < 0 ||
	     buf_addf(sc, "\nW=%d\n", ctx->opts->lock_wait_s) < 0 ||
	     buf_adds(sc, lock_sh) < 0;
	buf_release(&who);
	return rc ? -1 : 0;
}

/* What the lock script said: "locked PID" or "held LINE" (exit 75). */
static int
lock_answer(struct run_ctx *ctx, const struct remote_out *o, struct errbuf *err)
{
	const char *p = o->out.data;
	size_t n = o->out.len;
	uint64_t pid;

	while (n > 0 && p[n - 1] == '\n')
		n--;
	if (o->status == EXIT_LOCKED && n >= 5 && memcmp(p, "held ", 5) == 0)
		return err_set(err, SH_ERR_LOCKED,
		    "%s is locked by another run (%.*s); wait for it with "
		    "--wait-lock",
		    ctx->ssh_opts.host, n > 5 ? (int)(n - 5) : 13,
		    n > 5 ? p + 5 : "an unknown run");
	if (o->status != 0 || n < 8 || memcmp(p, "locked ", 7) != 0 ||
	    parse_u64(p + 7, n - 7, UINT32_MAX, &pid) < 0 || pid == 0)
		return remote_fail(ctx->redact, err, &o->err,
		    "cannot take the target lock: exit %d", o->status);
	ctx->lock_pid = (unsigned long)pid;
	return 0;
}

/* Takes the target lock (runner.h). */
static int
lock_take(struct run_ctx *ctx, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct lock_wait w = { .ui = ctx->ui };
	struct remote_out o;
	struct buf sc;
	int rc = -1;

	ctx->lock_pid = 0;
	buf_init(&sc, 16384);
	buf_init(&w.line, 1024);
	if (lock_script(ctx, &sc) < 0) {
		err_set(err, SH_ERR_INTERNAL, "lock script too long");
		goto out;
	}
	if (remote_script(&cmd, &sc, err) < 0)
		goto out;
	cmd.stdout_is_protocol = true;
	cmd.on_stderr = lock_on_stderr;
	cmd.on_stderr_arg = &w;
	if (remote_run(ctx, &cmd, &o, err) == 0)
		rc = lock_answer(ctx, &o, err);
	remote_out_free(&o);
out:
	buf_release(&w.line);
	buf_release(&sc);
	return rc;
}

int
runner_relock(struct run_ctx *ctx, struct errbuf *err)
{
	if (!ctx->opts->lock || ctx->ssh == NULL)
		return 0;
	return lock_take(ctx, err);
}

/* Ends the holder at once rather than when the session's sshd exits. */
static void
lock_release(struct run_ctx *ctx)
{
	struct ssh_io io = { .stdin_fd = -1, .stdout_fd = -1 };
	struct errbuf err;
	struct buf cmd;

	if (ctx->lock_pid == 0 || ctx->ssh == NULL)
		return;
	buf_init(&cmd, 64);
	io.deadline_ms = now_ms() + 5000u;
	if (buf_addf(&cmd, "kill %lu 2>/dev/null; exit 0", ctx->lock_pid) == 0)
		(void)ssh_exec(ctx->ssh, cmd.data, &io, NULL, &err);
	buf_release(&cmd);
	ctx->lock_pid = 0;
}

int
run_ctx_ssh(struct run_ctx *ctx, struct ssh_conn **out, struct errbuf *err)
{
	*out = NULL;
	if (!ctx->have_target)
		return err_set(err, SH_ERR_USAGE,
		    "no target: give --target ssh://USER@HOST[:PORT] or set "
		    "STAGEHAND_TARGET");
	if (ctx->ssh == NULL) {
		if (ssh_connect(&ctx->ssh_opts, &ctx->ssh, err) < 0)
			return -1;
		if (learn_facts(ctx, err) < 0 || runner_relock(ctx, err) < 0)
			return -1;
	}
	*out = ctx->ssh;
	return 0;
}

void
run_ctx_release(struct run_ctx *ctx)
{
	lock_release(ctx);
	if (ctx->ssh != NULL)
		ssh_close(ctx->ssh);
	ctx->ssh = NULL;
	free(ctx->facts.hostname);
	free(ctx->facts.system);
	free(ctx->facts.boot_id);
	memset(&ctx->facts, 0, sizeof(ctx->facts));
}

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
	if (ssh_reconnect(ctx->ssh, &rerr) < 0) {
		*err = rerr;
		return -1;
	}
	r->reconnects++;
	ui_notice(ctx->ui, "reconnected to %s", ctx->ssh_opts.host);
	/* The old session's holder may live on until sshd sees it gone. */
	return runner_relock(ctx, err);
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
		rc = ctx->opts->plan ? k->probe(ctx, s, r, &e)
		                     : k->apply(ctx, s, r, &e);
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
		if (e.code == SH_ERR_SSH && ctx->ssh != NULL) {
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
	struct ssh_conn *conn;

	for (size_t i = 0; i < m->nsteps; i++)
		if (will_run[i] && !(m->steps[i].kind->flags & STEP_LOCAL_ONLY))
			return run_ctx_ssh(ctx, &conn, run_err);
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
