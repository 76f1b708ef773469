/*
 * run/runner.h: the loop that runs a stage's steps. The run's context
 * (target/ctx.h) holds what it works with.
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

#include "model/kind.h"
#include "target/ctx.h"
#include "util/util.h"

/*
 * Runs the stage. results must hold manifest->nsteps entries (initialised
 * by the runner). *run_err receives a run-level error (e.g. the target was
 * unreachable). Returns the exit code: 0, 1, 69, 77.
 */
int runner_run(
    struct run_ctx *ctx, struct step_result *results, struct errbuf *run_err);

#endif
