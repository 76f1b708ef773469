/*
 * runner.h: the run's context and the loop that runs a stage's steps.
 *
 * struct run_ctx is the only mutable state of a run: main() creates it,
 * every module gets it passed explicitly. It owns the SSH session (opened
 * lazily on the first step that needs the target, so `plan --offline` and
 * manifests whose steps are all skipped never connect), the UI and the
 * facts learned about the target.
 *
 * runner_run(): for each step, in order:
 *   1. skip it (STEP_SKIPPED with a reason) when `when` is false, its tags
 *      are filtered out, or it comes before --start-at;
 *   2. plan mode: probe -> STEP_OK or STEP_WOULD_CHANGE;
 *      run mode: apply -> STEP_OK or STEP_CHANGED;
 *   3. on SH_ERR_SSH: reconnect (bounded backoff) and, when the kind is
 *      STEP_RETRY_SAFE, run the step again; `expect_disconnect` steps
 *      count a dropped session as success;
 *   4. on other failures, retry up to step->retries times, retry_delay_s
 *      apart; then STEP_FAILED, and every later step is STEP_NOT_RUN;
 *   5. an interruption (SIGINT/SIGTERM) ends the current step as
 *      STEP_INTERRUPTED and the rest as STEP_NOT_RUN;
 *   6. after a failure (not a trust/reachability one) the manifest's
 *      rescue steps run in order, stopping at their own first failure;
 *      without a failure they are STEP_SKIPPED. The exit code stays the
 *      failure's: a rollback is not a success.
 * The results array has one entry per manifest step. It never prints; the
 * UI reports events as they happen. Returns the run's exit code.
 */
#ifndef STAGEHAND_RUNNER_H
#define STAGEHAND_RUNNER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "manifest.h"
#include "redact.h"
#include "ssh.h"
#include "steps/step.h"
#include "util.h"

struct ui;

struct run_opts {
	bool plan;                 /* probe only */
	struct strlist tags;       /* run only these (plus `always`) */
	struct strlist skip_tags;
	const char *start_at;      /* step name, or NULL */
	bool keep_going;           /* do not stop at the first failure */
	bool lock;                 /* take the target lock (run, not plan) */
	int lock_wait_s;           /* when held: 0 fail, -1 wait, N seconds */
};

struct target_facts {
	char *hostname; /* owned; NULL until learned */
	char *system;   /* owned: "x86_64-linux" / "aarch64-linux" */
	char *boot_id;  /* owned */
};

struct run_ctx {
	const struct run_opts *opts;      /* borrowed */
	const struct manifest *manifest;  /* borrowed */
	struct ssh_opts ssh_opts;         /* strings borrowed from argv/env */
	bool have_target;                 /* a target was given */
	struct ssh_conn *ssh;             /* owned; NULL until needed */
	struct ui *ui;                    /* borrowed */
	const struct redact *redact;      /* borrowed: cut text after it */
	struct target_facts facts;
	unsigned long lock_pid;           /* the lock's holder; 0: none */
	volatile sig_atomic_t *interrupted; /* set by main's signal handler */
	int64_t started_at;               /* unix time */
	uint64_t started_ms;
};

/*
 * Returns the session, connecting (and learning the facts: hostname,
 * system, boot_id, in one round trip) on first use. With opts->lock, the
 * first connect (and runner_relock() after a reconnect) also takes the
 * target lock: /run/lock/stagehand.lock (or /tmp's when /run/lock is not
 * writable), flock(1)ed by a process on the target that lives as long as
 * the session's sshd, and names its holder (controller host, pid, stage,
 * start). Held by another run: SH_ERR_LOCKED (exit 75) naming the holder,
 * or, with lock_wait_s, a wait (a notice says for whom). The holder of a
 * session that is gone (a killed controller) lets go within a second; a
 * run that reconnects ends its own old holder. run_ctx_release() lets go.
 */
int run_ctx_ssh(struct run_ctx *ctx, struct ssh_conn **out,
    struct errbuf *err);
void run_ctx_release(struct run_ctx *ctx);
/* Takes the target lock again on a new session (after ssh_reconnect()). */
int runner_relock(struct run_ctx *ctx, struct errbuf *err);

/*
 * Runs the stage. results must hold manifest->nsteps entries (initialised
 * by the runner). *run_err receives a run-level error (e.g. the target was
 * unreachable). Returns the exit code: 0, 1, 69, 77.
 */
int runner_run(struct run_ctx *ctx, struct step_result *results,
    struct errbuf *run_err);

#endif
