/*
 * model/kind.h: the one interface every step kind implements.
 *
 * A kind is one file in steps/ and a row in steps/registry.c. Adding a
 * kind means adding both, nothing else. The interface lives down here, with
 * the manifest, so that the loader can parse a step and the runner can run
 * it through a table it is handed, without either depending on steps/.
 *
 *   parse(body, step, &cfg, err)   offline: turn the YAML body into the
 *                                  kind's own config struct and validate
 *                                  it; never touches the target. Errors use
 *                                  node_err() for file:line:col.
 *   probe(ctx, step, res, err)     read-only: set res->changed when apply
 *                                  would change something, and add one
 *                                  res->changes line per change it would
 *                                  make. Used by `plan`.
 *   apply(ctx, step, res, err)     make it so; set res->changed when it did
 *                                  change something, list the changes. Must
 *                                  be idempotent: a second apply of the
 *                                  same step reports changed == false.
 *   describe(step, out)            offline: a one-line rendering for
 *                                  `plan --offline` (no trailing newline).
 *   free(cfg)                      releases what parse allocated.
 *
 * probe/apply return 0 when the step did what it should (res->changed says
 * whether anything changed) and -1 with err filled when it failed. A failed
 * remote command is SH_ERR_REMOTE with its exit status and the tail of its
 * stderr in the message. Transport failures come back as SH_ERR_SSH from
 * remote_run(); the runner reconnects and retries when the kind is
 * STEP_RETRY_SAFE.
 *
 * Kinds reach the target only through remote_run() (remote.h), so become,
 * timeouts, interruption and secret handling are the same for every kind.
 */
#ifndef STAGEHAND_KIND_H
#define STAGEHAND_KIND_H

#include <stdbool.h>
#include <stdint.h>

#include "model/manifest.h"
#include "model/node.h"
#include "model/result.h"
#include "util/util.h"

struct run_ctx;

enum step_flags {
	/* apply can run again after a dropped connection without harm */
	STEP_RETRY_SAFE = 1u << 0,
	/* the kind needs no target connection (pure controller work) */
	STEP_LOCAL_ONLY = 1u << 1,
};

struct step_kind {
	const char *name;
	unsigned flags;
	int (*parse)(const struct node *body, const struct step *step,
	    void **cfg, struct errbuf *err);
	int (*probe)(struct run_ctx *ctx, const struct step *step,
	    struct step_result *res, struct errbuf *err);
	int (*apply)(struct run_ctx *ctx, const struct step *step,
	    struct step_result *res, struct errbuf *err);
	void (*describe)(const struct step *step, struct buf *out);
	void (*free)(void *cfg);
};

#endif
