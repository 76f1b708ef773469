/*
 * tap.h: a parser for TAP (the Test Anything Protocol) as pgTAP emits it.
 *
 * pgTAP functions return their TAP as text, one result row per call:
 * plan(3) gives "1..3", ok() gives "ok 1 - description" or "not ok 2 -
 * description\n# Failed test 2: ...\n#   have: ..", diag() gives "# text",
 * finish() gives "# Looks like ..." lines (and, after no_plan(), the plan
 * itself, last). The pgtap step feeds every text value of every row here.
 *
 * Lines understood (anything else is counted in `ignored`, as TAP says):
 *   1..N                      the plan; "1..0 # SKIP reason" skips all
 *   ok [N] [-] [desc] [# SKIP|TODO [reason]]
 *   not ok [N] [-] [desc] [# SKIP|TODO [reason]]
 *   # text                    diagnostics of the previous assertion ("#
 *                             Looks like ..." and those before any
 *                             assertion go to the stream's own diag)
 *   Bail out! [reason]        stops the stream: later lines are ignored
 *   TAP version N             accepted
 * A "\#" in a description is a literal '#'. Directives match SKIP/TODO
 * case-insensitively at the start of the text after an unescaped '#'.
 * A missing number is the previous one plus one.
 *
 * Counting: passed = ok, no directive; failed = not ok without TODO (a
 * "not ok # SKIP" is a failure); skipped = ok # SKIP; todo = any # TODO
 * (a failing TODO is expected and fails nothing).
 *
 * Input is (pointer, length), never NUL-terminated, may hold NULs (they
 * end nothing: a NUL byte makes its line ignored) and may be cut anywhere:
 * tap_feed() takes a whole row value (complete lines); a last line without
 * a newline is a line. Caps: TAP_MAX_ASSERTIONS assertions (later ones are
 * counted in `dropped` and make tap_problem() fail), TAP_MAX_TEXT bytes
 * per description or reason (cut, with "..."), TAP_MAX_DIAG bytes of
 * diagnostics per assertion (the rest dropped, noted with "[...]").
 *
 * Ownership: struct tap owns everything in it; tap_free() releases it.
 * Nothing here allocates except through x* (exits on OOM). No I/O.
 */
#ifndef STAGEHAND_TAP_H
#define STAGEHAND_TAP_H

#include <stdbool.h>
#include <stddef.h>

#include "util/util.h"

#define TAP_MAX_ASSERTIONS 100000
#define TAP_MAX_TEXT 4096
#define TAP_MAX_DIAG (64u << 10)

enum tap_directive {
	TAP_DIR_NONE = 0,
	TAP_DIR_SKIP,
	TAP_DIR_TODO,
};

struct tap_assertion {
	unsigned long number;
	bool ok;
	enum tap_directive directive;
	char *description; /* owned; "" when none */
	char *reason;      /* owned; SKIP/TODO reason, "" when none */
	struct buf diag;   /* "# " stripped, lines joined by '\n' */
};

struct tap {
	struct tap_assertion *a; /* owned */
	size_t n;
	size_t alloc;   /* room in a */
	size_t dropped; /* assertions beyond TAP_MAX_ASSERTIONS */
	bool has_plan;
	unsigned long planned;
	unsigned plans;    /* plan lines seen (more than one is wrong) */
	bool skip_all;     /* 1..0 # SKIP */
	char *skip_reason; /* owned; NULL unless skip_all */
	bool bailed;
	char *bail_reason; /* owned; NULL unless bailed */
	struct buf diag;   /* diagnostics not tied to an assertion */
	size_t ignored;    /* lines that are not TAP */
	unsigned long passed, failed, skipped, todo;
};

void tap_init(struct tap *t);
/* Parses the lines of one chunk (a row value). Never fails. */
void tap_feed(struct tap *t, const char *p, size_t len);
/*
 * Why the stream as a whole fails, appended to why (one line of at most
 * 400 bytes: a bail-out reason is cut at 300), or false
 * when it passes: it bailed out, an assertion failed, there is no plan,
 * more than one plan, the plan count differs from the assertions run, or
 * there are no assertions at all (unless the plan skips everything).
 */
bool tap_problem(const struct tap *t, struct buf *why);
void tap_free(struct tap *t);

#endif
