/*
 * steps/step.c: struct step_result helpers shared by every kind and the
 * runner. See step.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kind.h"
#include "util/limits.h"

const char *
step_status_name(enum step_status s)
{
	switch (s) {
	case STEP_PENDING:
		return "pending";
	case STEP_OK:
		return "ok";
	case STEP_CHANGED:
		return "changed";
	case STEP_SKIPPED:
		return "skipped";
	case STEP_FAILED:
		return "failed";
	case STEP_WOULD_CHANGE:
		return "would_change";
	case STEP_INTERRUPTED:
		return "interrupted";
	case STEP_NOT_RUN:
		return "not_run";
	}
	return "unknown";
}

void
step_result_init(struct step_result *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->output, REPORT_OUTPUT_TAIL * 2);
	r->exit_status = -1;
}

/* Drops what one attempt produced; keeps attempts/timing bookkeeping. */
void
step_result_reset(struct step_result *r)
{
	unsigned attempts = r->attempts, reconnects = r->reconnects;
	uint64_t started_ms = r->started_ms;
	int64_t started_at = r->started_at;

	step_result_free(r);
	step_result_init(r);
	r->attempts = attempts;
	r->reconnects = reconnects;
	r->started_ms = started_ms;
	r->started_at = started_at;
}

void
step_result_free(struct step_result *r)
{
	strlist_free(&r->changes);
	buf_release(&r->output);
	for (size_t i = 0; i < r->ntests; i++) {
		free(r->tests[i].name);
		free(r->tests[i].message);
	}
	free(r->tests);
	for (size_t i = 0; i < r->ndetails; i++) {
		free(r->details[i].key);
		free(r->details[i].value);
	}
	free(r->details);
	free(r->skip_reason);
	step_closure_free(r->closure);
	r->closure = NULL;
	r->tests = NULL;
	r->details = NULL;
	r->skip_reason = NULL;
	r->ntests = r->ndetails = 0;
}

void
step_closure_free(struct step_closure *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->paths[i].path);
		free(c->paths[i].nar_hash);
		free(c->paths[i].signer);
		free(c->paths[i].substituter);
	}
	free(c->paths);
	free(c->root);
	free(c->system);
	free(c->profile);
	free(c);
}

void
step_result_change(struct step_result *r, const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	if (r->changes.n >= STEP_CHANGES_MAX) {
		r->changes_dropped++;
		return;
	}
	buf_init(&b, 4096);
	va_start(ap, fmt);
	buf_vaddf(&b, fmt, ap); /* over-long lines stay empty */
	va_end(ap);
	strlist_push_owned(&r->changes, buf_detach(&b, NULL));
	buf_release(&b);
}

void
step_result_detail(struct step_result *r, const char *key, const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b, 1u << 16);
	va_start(ap, fmt);
	buf_vaddf(&b, fmt, ap);
	va_end(ap);
	r->details =
	    xreallocarray(r->details, r->ndetails + 1, sizeof(*r->details));
	r->details[r->ndetails].key = xstrdup(key);
	r->details[r->ndetails].value = buf_detach(&b, NULL);
	r->ndetails++;
	buf_release(&b);
}

void
step_result_test(struct step_result *r, const char *name, bool passed,
    bool skipped, const char *message)
{
	struct step_test *t;

	r->tests = xreallocarray(r->tests, r->ntests + 1, sizeof(*r->tests));
	t = &r->tests[r->ntests++];
	t->name = xstrdup(name);
	t->passed = passed;
	t->skipped = skipped;
	t->message = message ? xstrdup(message) : NULL;
	t->duration_ms = 0;
}

void
step_result_test_ms(struct step_result *r, uint64_t ms)
{
	if (r->ntests > 0)
		r->tests[r->ntests - 1].duration_ms = ms;
}

void
step_result_output(struct step_result *r, const char *p, size_t len)
{
	struct buf *o = &r->output;

	if (len >= REPORT_OUTPUT_TAIL) {
		p += len - REPORT_OUTPUT_TAIL;
		len = REPORT_OUTPUT_TAIL;
	}
	if (o->len + len > REPORT_OUTPUT_TAIL) {
		size_t drop = o->len + len - REPORT_OUTPUT_TAIL;

		memmove(o->data, o->data + drop, o->len - drop);
		o->len -= drop;
		o->data[o->len] = '\0';
	}
	buf_add(o, p, len);
}
