/*
 * steps/step.h: the one interface every step kind implements.
 *
 * A kind is a row in steps/registry.c and one file in steps/. Adding a kind
 * means adding both, nothing else.
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
#ifndef STAGEHAND_STEP_H
#define STAGEHAND_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "../manifest.h"
#include "../node.h"
#include "../util.h"

struct run_ctx;

enum step_flags {
	/* apply can run again after a dropped connection without harm */
	STEP_RETRY_SAFE = 1u << 0,
	/* the kind needs no target connection (pure controller work) */
	STEP_LOCAL_ONLY = 1u << 1,
};

enum step_status {
	STEP_PENDING = 0,
	STEP_OK,           /* nothing needed changing */
	STEP_CHANGED,
	STEP_SKIPPED,      /* `when` false, tags, --start-at */
	STEP_FAILED,
	STEP_WOULD_CHANGE, /* plan mode */
	STEP_INTERRUPTED,
	STEP_NOT_RUN,      /* after a failure or interruption */
};

const char *step_status_name(enum step_status s);

/* An embedded test (pgTAP assertion, permission row...) of a step. */
struct step_test {
	char *name;    /* owned */
	bool passed;
	bool skipped;
	char *message; /* owned; failure or skip reason; may be NULL */
};

struct step_detail {
	char *key;   /* owned */
	char *value; /* owned */
};

/* What a closure step installed (report: the "closure" section). */
struct step_closure_path {
	char *path;        /* owned */
	char *nar_hash;    /* owned */
	uint64_t nar_size;
	char *signer;      /* owned: key name */
	char *substituter; /* owned: cache URL */
};

struct step_closure {
	char *root;          /* owned: the store path installed */
	char *system;        /* owned: x86_64-linux / aarch64-linux */
	char *profile;       /* owned; may be NULL */
	uint64_t nar_size;   /* closure total */
	uint64_t file_size;  /* closure total (compressed) */
	size_t paths_missing; /* paths the target did not have */
	uint64_t bytes_missing; /* their NarSize */
	long generation_before; /* -1: none */
	long generation_after;  /* -1: unchanged/none */
	struct step_closure_path *paths; /* owned */
	size_t n;
};

void step_closure_free(struct step_closure *c);

struct step_result {
	enum step_status status;
	bool changed;           /* set by probe/apply */
	struct strlist changes; /* one human line per change, capped */
	size_t changes_dropped; /* beyond STEP_CHANGES_MAX */
	struct buf output;      /* remote stdout+stderr tail of the step */
	int exit_status;        /* of the step's main command; -1 if none */
	struct step_test *tests;
	size_t ntests;
	struct step_detail *details;
	size_t ndetails;
	unsigned attempts;
	unsigned reconnects;
	uint64_t started_ms;    /* now_ms() at start */
	uint64_t duration_ms;
	int64_t started_at;     /* unix time */
	char *skip_reason;      /* owned; for STEP_SKIPPED */
	struct step_closure *closure; /* owned; closure steps only */
	struct errbuf err;      /* for STEP_FAILED / STEP_INTERRUPTED */
};

void step_result_init(struct step_result *r);
void step_result_reset(struct step_result *r); /* before a retry */
void step_result_free(struct step_result *r);
void step_result_change(struct step_result *r, const char *fmt, ...)
    ATTR_PRINTF(2, 3);
void step_result_detail(struct step_result *r, const char *key,
    const char *fmt, ...) ATTR_PRINTF(3, 4);
void step_result_test(struct step_result *r, const char *name, bool passed,
    bool skipped, const char *message);
/* Appends to the output tail, keeping the last REPORT_OUTPUT_TAIL bytes. */
void step_result_output(struct step_result *r, const char *p, size_t len);

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

/* The kinds; each is defined in steps/<name>.c and listed in registry.c. */
extern const struct step_kind step_kind_shell;
extern const struct step_kind step_kind_upload;
extern const struct step_kind step_kind_download;
extern const struct step_kind step_kind_user;
extern const struct step_kind step_kind_group;
extern const struct step_kind step_kind_path;
extern const struct step_kind step_kind_line;
extern const struct step_kind step_kind_alias;
extern const struct step_kind step_kind_closure;
extern const struct step_kind step_kind_postgres;
extern const struct step_kind step_kind_migration_test;
extern const struct step_kind step_kind_permissions;
extern const struct step_kind step_kind_sql;
extern const struct step_kind step_kind_pgtap;

/* Registry (steps/registry.c). NULL when unknown. */
const struct step_kind *step_kind_find(const char *name);
/* NULL-terminated list of all kinds, for error messages and docs. */
const struct step_kind *const *step_kinds(void);

#endif
