/*
 * redact.h: hide secret values in everything stagehand writes.
 *
 * The run collects every secret value (manifest `secrets:`, key material)
 * into one struct redact; the UI, run.log and every report file pass their
 * text through redact_text(), which replaces each occurrence of a secret
 * with "********". Values are also matched in the forms the writers escape
 * them into (JSON, XML and sh single quotes), so escaping cannot smuggle a
 * secret past the filter. Empty values are ignored.
 *
 * Ownership: the struct owns copies of the secrets in wiped memory;
 * redact_free() zeroes them.
 */
#ifndef STAGEHAND_REDACT_H
#define STAGEHAND_REDACT_H

#include <stddef.h>

#include "util.h"

#define REDACTED "********"

struct redact {
	struct buf *secrets; /* owned array */
	size_t n;
};

void redact_init(struct redact *r);
void redact_add(struct redact *r, const char *secret);
/* Appends p[0..len) with secrets replaced to out. Returns 0 or -1 (max). */
int redact_text(const struct redact *r, const char *p, size_t len,
    struct buf *out);
/* Replaces b's content with its redacted form. Returns 0 or -1. */
int redact_buf(const struct redact *r, struct buf *b);
void redact_free(struct redact *r);

#endif
