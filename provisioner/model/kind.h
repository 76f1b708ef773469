/*
 * model/kind.h: the one interface every step kind implements.
 *
 * A kind is one file in steps/ and a row in steps/registry.c (the row and
 * the kind's extern). Adding a kind means adding both, nothing else. The
 * interface lives down here, with the manifest, so that the loader can parse a
 * step and the runner can run it through a table it is handed, without either
 * depending on steps/.
 *
 * The loader does what every kind would otherwise repeat: it finds the
 * kind by its key, checks that the body is a map (or, with
 * STEP_BODY_SCALAR, a scalar: `shell: "true"`), rejects keys that are not
 * in `keys` (listing the ones it takes), allocates cfg_size zeroed bytes,
 * calls parse, and on failure calls release and frees the cfg. A kind
 * only reads and checks its own fields:
 *
 *   parse(body, cfg, err)          offline: fill the zeroed cfg from the
 *                                  YAML body and validate it; never touches
 *                                  the target. Errors use node_err() for
 *                                  file:line:col. May leave cfg half
 *                                  filled on failure: release copes.
 *   run(ctx, step, mode, res, err) STEP_PROBE, read-only: set res->changed
 *                                  when apply would change something, and
 *                                  add one res->changes line per change it
 *                                  would make (`plan`). STEP_APPLY: make it
 *                                  so; set res->changed when it changed
 *                                  something, list the changes. Idempotent:
 *                                  a second apply of the same step reports
 *                                  changed == false.
 *   describe(step, out)            offline: a one-line rendering for
 *                                  `plan --offline` (no trailing newline).
 *   release(cfg)                   frees what parse allocated inside cfg
 *                                  (not cfg itself); NULL when nothing.
 *   code(body, out, max)           the body's fields that a shell parses as
 *                                  code, so that the loader warns about a
 *                                  raw ${var} in them (`stagehand check`);
 *                                  NULL when the kind quotes every field.
 *                                  Called before interpolation. Returns
 *                                  the number of nodes put in out.
 *
 * run returns 0 when the step did what it should (res->changed says
 * whether anything changed) and -1 with err filled when it failed. A failed
 * remote command is SH_ERR_REMOTE with its exit status and the tail of its
 * stderr in the message. Transport failures come back as SH_ERR_SSH from
 * remote_run(); the runner reconnects and retries when the kind is
 * STEP_RETRY_SAFE (and in plan mode, which only reads).
 *
 * Kinds reach the target only through remote_run() (target/remote.h), so
 * become, timeouts, interruption and secret handling are the same for
 * every kind.
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
	/* the body may be a scalar as well as a map (parse sees which) */
	STEP_BODY_SCALAR = 1u << 2,
};

/* What run() is asked to do: look (plan) or make it so (run). */
enum step_mode {
	STEP_PROBE,
	STEP_APPLY,
};

struct step_kind {
	const char *name;
	unsigned flags;          /* enum step_flags */
	const char *const *keys; /* a map body's keys; NULL-terminated */
	size_t cfg_size;         /* the loader allocates this, zeroed */
	int (*parse)(const struct node *body, void *cfg, struct errbuf *err);
	int (*run)(struct run_ctx *ctx, const struct step *step,
	    enum step_mode mode, struct step_result *res, struct errbuf *err);
	void (*describe)(const struct step *step, struct buf *out);
	void (*release)(void *cfg);
	size_t (*code)(
	    const struct node *body, const struct node **out, size_t max);
};

/* The kind named name in the NULL-terminated table kinds; NULL when none
 * is. The loader finds a step's kind with it. */
const struct step_kind *step_kind_find(
    const struct step_kind *const *kinds, const char *name);

#endif
