/*
 * model/result.h: what a step did: its status, the changes it made or
 * would make, its output tail, its embedded tests, and what a closure step
 * installed. The runner fills one struct step_result per manifest step;
 * the UI and the report writers read them.
 *
 * Ownership: a step_result owns every string and array in it; the runner
 * initialises it with step_result_init() and frees it with
 * step_result_free(). Kinds add to it only through the step_result_*()
 * helpers, which copy what they are given.
 */
#ifndef STAGEHAND_RESULT_H
#define STAGEHAND_RESULT_H

#include <stdbool.h>
#include <stdint.h>

#include "util/util.h"

enum step_status {
	STEP_PENDING = 0,
	STEP_OK, /* nothing needed changing */
	STEP_CHANGED,
	STEP_SKIPPED, /* `when` false, tags, --start-at */
	STEP_FAILED,
	STEP_WOULD_CHANGE, /* plan mode */
	STEP_INTERRUPTED,
	STEP_NOT_RUN, /* after a failure or interruption */
};

const char *step_status_name(enum step_status s);

/* An embedded test (pgTAP assertion, permission row...) of a step. */
struct step_test {
	char *name; /* owned */
	bool passed;
	bool skipped;
	char *message;        /* owned; failure or skip reason; may be NULL */
	uint64_t duration_ms; /* 0 when the kind does not time its tests */
};

struct step_detail {
	char *key;   /* owned */
	char *value; /* owned */
};

/* What a closure step installed (report: the "closure" section). */
struct step_closure_path {
	char *path;     /* owned */
	char *nar_hash; /* owned */
	uint64_t nar_size;
	char *signer;      /* owned: key name */
	char *substituter; /* owned: cache URL */
};

struct step_closure {
	char *root;             /* owned: the store path installed */
	char *system;           /* owned: x86_64-linux / aarch64-linux */
	char *profile;          /* owned; may be NULL */
	uint64_t nar_size;      /* closure total */
	uint64_t file_size;     /* closure total (compressed) */
	size_t paths_missing;   /* paths the target did not have */
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
	uint64_t started_ms; /* now_ms() at start */
	uint64_t duration_ms;
	int64_t started_at;           /* unix time */
	char *skip_reason;            /* owned; for STEP_SKIPPED */
	struct step_closure *closure; /* owned; closure steps only */
	struct errbuf err;            /* for STEP_FAILED / STEP_INTERRUPTED */
};

void step_result_init(struct step_result *r);
void step_result_reset(struct step_result *r); /* before a retry */
void step_result_free(struct step_result *r);
void step_result_change(struct step_result *r, const char *fmt, ...)
    ATTR_PRINTF(2, 3);
void step_result_detail(struct step_result *r, const char *key, const char *fmt,
    ...) ATTR_PRINTF(3, 4);
void step_result_test(struct step_result *r, const char *name, bool passed,
    bool skipped, const char *message);
/* Sets the duration of the test added last (a migration's apply time). */
void step_result_test_ms(struct step_result *r, uint64_t ms);
/* Appends to the output tail, keeping the last REPORT_OUTPUT_TAIL bytes. */
void step_result_output(struct step_result *r, const char *p, size_t len);

#endif
