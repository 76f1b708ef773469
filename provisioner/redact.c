/*
 * redact.c: replaces secret values with REDACTED. See redact.h.
 *
 * Each secret is stored in several forms: as given, JSON-escaped,
 * XML-escaped (text and attribute rules), and as it looks inside sh single
 * quotes ('  ->  '\''). A document written by json.c, xml.c or sh_quote()
 * therefore still matches, whatever escaping happened on the way.
 *
 * Matching marks every byte covered by any occurrence of any form
 * (overlapping occurrences too) and then writes one REDACTED per run of
 * marked bytes. So a secret that is a prefix of another, two secrets that
 * overlap in the text, or one secret repeated back to back never leave a
 * piece of a secret behind, and the output does not tell how many secrets
 * or how long they were.
 */
#include "redact.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "xml.h"

void
redact_init(struct redact *r)
{
	r->secrets = NULL;
	r->n = 0;
}

static bool
redact_has(const struct redact *r, const struct buf *b)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->secrets[i].len == b->len &&
		    memcmp(r->secrets[i].data, b->data, b->len) == 0)
			return true;
	return false;
}

/* Takes b (a form of a secret) unless it is empty or already known. */
static void
redact_push(struct redact *r, struct buf *b)
{
	if (b->len == 0 || redact_has(r, b)) {
		buf_release(b);
		return;
	}
	r->secrets = xreallocarray(r->secrets, r->n + 1, sizeof(*r->secrets));
	r->secrets[r->n++] = *b;
}

/* The inside of sh_quote()'s output for s. */
static int
sh_inner(struct buf *b, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int rc =
		    s[i] == '\'' ? buf_adds(b, "'\\''") : buf_addc(b, s[i]);

		if (rc < 0)
			return -1;
	}
	return 0;
}

void
redact_add(struct redact *r, const char *secret)
{
	size_t len = strlen(secret);
	/* Worst expansion of any form: 6 bytes (\u00XX, &quot;) per byte. */
	size_t max = len > (SIZE_MAX - 16) / 6 ? SIZE_MAX : len * 6 + 16;
	struct buf b;

	if (len == 0)
		return;
	for (int form = 0; form < 5; form++) {
		int rc;

		buf_init(&b, max);
		switch (form) {
		case 0:
			rc = buf_add(&b, secret, len);
			break;
		case 1:
			rc = json_escape(&b, secret, len);
			break;
		case 2:
		case 3:
			rc = xml_escape(&b, secret, len, form == 3);
			break;
		default:
			rc = sh_inner(&b, secret, len);
			break;
		}
		if (rc < 0)
			buf_release(&b);
		else
			redact_push(r, &b);
	}
}

/* Marks in mask every byte of p covered by an occurrence of s. */
static void
mark(const char *p, size_t len, const struct buf *s, unsigned char *mask)
{
	size_t pos = 0, covered = 0;
	const char *hit;

	while (pos < len && len - pos >= s->len &&
	       (hit = memmem(p + pos, len - pos, s->data, s->len)) != NULL) {
		size_t at = (size_t)(hit - p);
		size_t from = at > covered ? at : covered;

		/* Only bytes not marked by this secret yet: linear time. */
		memset(mask + from, 1, at + s->len - from);
		covered = at + s->len;
		pos = at + 1;
	}
}

static int
emit(const char *p, size_t len, const unsigned char *mask, struct buf *out)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		while (j < len && mask[j] == mask[i])
			j++;
		if (mask[i] ? buf_adds(out, REDACTED) < 0
		            : buf_add(out, p + i, j - i) < 0)
			return -1;
		i = j;
	}
	return 0;
}

int
redact_text(const struct redact *r, const char *p, size_t len, struct buf *out)
{
	size_t start = out->len;
	unsigned char *mask;
	int rc;

	if (r == NULL || r->n == 0)
		return buf_add(out, p, len);
	mask = xcalloc(len ? len : 1, 1);
	for (size_t i = 0; i < r->n; i++)
		mark(p, len, &r->secrets[i], mask);
	rc = emit(p, len, mask, out);
	free(mask);
	if (rc < 0) {
		/* Fail closed: no partial (maybe half-secret) text stays. */
		explicit_bzero(out->data + start, out->len - start);
		out->len = start;
		out->data[start] = '\0';
	}
	return rc;
}

int
redact_buf(const struct redact *r, struct buf *b)
{
	struct buf nb;

	if (r == NULL || r->n == 0)
		return 0;
	buf_init(&nb, b->max);
	if (redact_text(r, b->data, b->len, &nb) < 0) {
		buf_release(&nb);
		return -1;
	}
	buf_release(b);
	*b = nb;
	return 0;
}

void
redact_free(struct redact *r)
{
	for (size_t i = 0; i < r->n; i++)
		buf_release(&r->secrets[i]);
	free(r->secrets);
	r->secrets = NULL;
	r->n = 0;
}
