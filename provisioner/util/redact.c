/*
 * redact.c: replaces secret values with REDACTED. See redact.h.
 *
 * Each secret is stored as several *forms*: the value, its lines, their
 * '?'-for-control-character copies, and each of those JSON-escaped,
 * XML-escaped (text and attribute rules) and as it looks inside sh single
 * quotes ('  ->  '\''). A document written by json.c, xml.c or sh_quote()
 * therefore still matches, whatever escaping happened on the way, and so
 * does an error line that remote.c cleaned of control characters.
 *
 * Fragments. Texts are cut in many places we do not own (a script's first
 * line at 100 bytes, an output tail at 4096, an error line at 300, an
 * errbuf at 1023), and a cut is made before this filter sees the text.
 * Each of these cuts keeps a head or a tail, so what it leaves of a secret
 * is a prefix or a suffix. redact_text() therefore also masks any prefix
 * or suffix of a form, anywhere, when it covers at least
 * REDACT_FRAGMENT_MIN bytes of the value. A fragment only ever ends on a
 * character boundary of the form (never inside "\u0022" or "&quot;"), so
 * masking one cannot break an escape. Masking shorter pieces would hit
 * ordinary words and numbers; a value shorter than the minimum is still
 * masked whole, wherever it appears.
 *
 * Matching marks every byte covered by any occurrence of any form
 * (overlapping occurrences too) and then writes one REDACTED per run of
 * marked bytes. So a secret that is a prefix of another, two secrets that
 * overlap in the text, or one secret repeated back to back never leave a
 * piece of a secret behind, and the output does not tell how many secrets
 * or how long they were.
 */
#include "util/redact.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "util/xml.h"

struct redact_form {
	struct buf text;    /* owned, wiped on release */
	unsigned char *cut; /* owned: text.len + 1 flags, 1 where a character
	                       of the value starts (or at the end) */
	size_t head;        /* bytes of text holding the first
	                       REDACT_FRAGMENT_MIN bytes of the value; 0 when
	                       the value is shorter (no fragments) */
	size_t tail;        /* where the text of the value's last
	                       REDACT_FRAGMENT_MIN bytes starts */
};

enum form_kind {
	FORM_RAW,
	FORM_JSON,
	FORM_XML,
	FORM_XML_ATTR,
	FORM_SH,
	FORM_KINDS
};

void
redact_init(struct redact *r)
{
	r->forms = NULL;
	r->n = 0;
}

size_t
redact_max(size_t len)
{
	return len > (SIZE_MAX - 16) / REDACT_GROWTH ? SIZE_MAX
	                                             : len * REDACT_GROWTH + 16;
}

static void
form_release(struct redact_form *f)
{
	buf_release(&f->text);
	free(f->cut);
	f->cut = NULL;
}

/* The same text with other boundaries (the XML form of "x and the raw
 * form of &quot;x) has other fragments: only an exact twin is dropped. */
static bool
redact_has(const struct redact *r, const struct redact_form *f)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct redact_form *g = &r->forms[i];

		if (g->text.len == f->text.len && g->head == f->head &&
		    g->tail == f->tail &&
		    memcmp(g->text.data, f->text.data, f->text.len) == 0 &&
		    memcmp(g->cut, f->cut, f->text.len + 1) == 0)
			return true;
	}
	return false;
}

/* Takes f unless it is empty or already known. */
static void
redact_push(struct redact *r, struct redact_form *f)
{
	if (f->text.len == 0 || redact_has(r, f)) {
		form_release(f);
		return;
	}
	r->forms = xreallocarray(r->forms, r->n + 1, sizeof(*r->forms));
	r->forms[r->n++] = *f;
}

/* ======================================================== forms */

/* Bytes of p that the writers escape as one unit: a byte for the raw
 * form (cuts fall between any two bytes), else a UTF-8 character. */
static size_t
unit_len(enum form_kind kind, const char *p, size_t len)
{
	uint32_t cp;

	if (kind == FORM_RAW)
		return 1;
	return json_utf8_next((const unsigned char *)p, len, &cp);
}

static int
unit_escape(enum form_kind kind, struct buf *b, const char *p, size_t n)
{
	switch (kind) {
	case FORM_RAW:
		return buf_add(b, p, n);
	case FORM_JSON:
		return json_escape(b, p, n);
	case FORM_XML:
	case FORM_XML_ATTR:
		return xml_escape(b, p, n, kind == FORM_XML_ATTR);
	case FORM_SH:
		return n == 1 && p[0] == '\'' ? buf_adds(b, "'\\''")
		                              : buf_add(b, p, n);
	case FORM_KINDS:
		break;
	}
	return -1;
}

/* Flags for one unit that took n bytes: a boundary, then n - 1 inside. */
static int
cut_mark(struct buf *cut, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (buf_addc(cut, i == 0 ? 1 : 0) < 0)
			return -1;
	return 0;
}

/* Builds f: p[0..len) escaped unit by unit, with its boundaries. */
static int
form_build(
    enum form_kind kind, const char *p, size_t len, struct redact_form *f)
{
	/* Worst expansion of any form: 6 bytes (\u00XX, &quot;) per byte. */
	size_t max = len > (SIZE_MAX - 16) / 6 ? SIZE_MAX : len * 6 + 16;
	struct buf cut;
	size_t i = 0;

	memset(f, 0, sizeof(*f));
	buf_init(&f->text, max);
	buf_init(&cut, max);
	while (i < len) {
		size_t n = unit_len(kind, p + i, len - i), at = f->text.len;

		if (i >= REDACT_FRAGMENT_MIN && f->head == 0)
			f->head = at;
		if (len - i >= REDACT_FRAGMENT_MIN)
			f->tail = at;
		if (unit_escape(kind, &f->text, p + i, n) < 0 ||
		    cut_mark(&cut, f->text.len - at) < 0)
			goto fail;
		i += n;
	}
	if (len >= REDACT_FRAGMENT_MIN && f->head == 0)
		f->head = f->text.len;
	if (buf_addc(&cut, 1) < 0)
		goto fail;
	f->cut = (unsigned char *)buf_detach(&cut, NULL);
	buf_release(&cut);
	return 0;
fail:
	buf_release(&cut);
	form_release(f);
	return -1;
}

/* Every escaped form of p[0..len). */
static void
add_forms(struct redact *r, const char *p, size_t len)
{
	for (int k = 0; k < FORM_KINDS; k++) {
		struct redact_form f;

		if (form_build((enum form_kind)k, p, len, &f) == 0)
			redact_push(r, &f);
	}
}

static bool
is_ctrl(unsigned char ch)
{
	return ch < ' ' || ch == 0x7f;
}

/* p[0..len) and, when it has control characters, the copy that
 * remote.c's error lines show ('?' for each). */
static void
add_base(struct redact *r, const char *p, size_t len)
{
	char *q;
	bool ctrl = false;

	add_forms(r, p, len);
	for (size_t i = 0; i < len; i++)
		ctrl = ctrl || is_ctrl((unsigned char)p[i]);
	if (!ctrl)
		return;
	q = xmalloc(len);
	for (size_t i = 0; i < len; i++)
		q[i] = is_ctrl((unsigned char)p[i]) ? '?' : p[i];
	add_forms(r, q, len);
	explicit_bzero(q, len);
	free(q);
}

/*
 * The value, then each line of a multi-line value: output is shown and
 * cut line by line (terminal, run.log, error lines), and no line holds the
 * whole value. A CR before the newline is not part of the line.
 */
void
redact_add(struct redact *r, const char *secret)
{
	size_t len = strlen(secret);
	const char *p = secret;

	if (len == 0)
		return;
	add_base(r, secret, len);
	if (memchr(secret, '\n', len) == NULL)
		return;
	while (*p) {
		size_t n = strcspn(p, "\n"), next = n + (p[n] == '\n');

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n >= REDACT_FRAGMENT_MIN)
			add_base(r, p, n);
		p += next;
	}
}

/* ======================================================== matching */

/* Marks in mask every byte of p covered by an occurrence of f. */
static void
mark_whole(
    const char *p, size_t len, const struct redact_form *f, unsigned char *mask)
{
	const struct buf *s = &f->text;
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

/* Marks every prefix of f (f->head bytes or more) found in p, up to the
 * last character boundary it reaches. */
static void
mark_prefixes(
    const char *p, size_t len, const struct redact_form *f, unsigned char *mask)
{
	const char *t = f->text.data, *hit;
	size_t tl = f->text.len, pos = 0;

	while (pos < len && len - pos >= f->head &&
	       (hit = memmem(p + pos, len - pos, t, f->head)) != NULL) {
		size_t at = (size_t)(hit - p), n = f->head;

		while (n < tl && at + n < len && p[at + n] == t[n])
			n++;
		while (!f->cut[n])
			n--;
		memset(mask + at, 1, n);
		pos = at + 1;
	}
}

/* Marks every suffix of f (from f->tail or earlier) found in p, from the
 * first character boundary it reaches. */
static void
mark_suffixes(
    const char *p, size_t len, const struct redact_form *f, unsigned char *mask)
{
	const char *t = f->text.data, *hit;
	size_t tn = f->text.len - f->tail, pos = 0;

	while (pos < len && len - pos >= tn &&
	       (hit = memmem(p + pos, len - pos, t + f->tail, tn)) != NULL) {
		size_t at = (size_t)(hit - p), j = f->tail, from = at;

		while (j > 0 && from > 0 && p[from - 1] == t[j - 1]) {
			j--;
			from--;
		}
		while (!f->cut[j]) {
			j++;
			from++;
		}
		memset(mask + from, 1, at + tn - from);
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

/* Marks a suffix of f shorter than a fragment (fragments are found
 * anywhere) that p starts with: what a cut of p's front left. */
static void
mark_front(
    const char *p, size_t len, const struct redact_form *f, unsigned char *mask)
{
	size_t tl = f->text.len;

	for (size_t j = f->tail + 1; j < tl; j++)
		if (f->cut[j] && tl - j <= len &&
		    memcmp(p, f->text.data + j, tl - j) == 0) {
			memset(mask, 1, tl - j);
			return;
		}
}

enum redact_mode {
	MODE_DOC,  /* whole values */
	MODE_TEXT, /* and fragments */
	MODE_TAIL, /* and any suffix at the start */
};

static int
redact_any(const struct redact *r, const char *p, size_t len,
    enum redact_mode mode, struct buf *out)
{
	size_t start = out->len;
	unsigned char *mask;
	int rc;

	if (r == NULL || r->n == 0)
		return buf_add(out, p, len);
	mask = xcalloc(len ? len : 1, 1);
	for (size_t i = 0; i < r->n; i++) {
		const struct redact_form *f = &r->forms[i];

		if (mode != MODE_DOC && f->head > 0) {
			mark_prefixes(p, len, f, mask);
			mark_suffixes(p, len, f, mask);
		} else
			mark_whole(p, len, f, mask);
		if (mode == MODE_TAIL)
			mark_front(p, len, f, mask);
	}
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
redact_text(const struct redact *r, const char *p, size_t len, struct buf *out)
{
	return redact_any(r, p, len, MODE_TEXT, out);
}

int
redact_tail(const struct redact *r, const char *p, size_t len, struct buf *out)
{
	return redact_any(r, p, len, MODE_TAIL, out);
}

int
redact_doc(const struct redact *r, const char *p, size_t len, struct buf *out)
{
	return redact_any(r, p, len, MODE_DOC, out);
}

int
redact_buf(const struct redact *r, struct buf *b)
{
	struct buf nb;

	if (r == NULL || r->n == 0)
		return 0;
	buf_init(&nb, b->max);
	if (redact_doc(r, b->data, b->len, &nb) < 0) {
		buf_release(&nb);
		return -1;
	}
	buf_release(b);
	*b = nb;
	return 0;
}

int
redact_cut(const struct redact *r, const char *p, size_t len, size_t keep,
    struct buf *out)
{
	struct buf clean;
	size_t n;
	int rc = -1;

	buf_init(&clean, redact_max(len));
	if (redact_text(r, p, len, &clean) < 0)
		goto out;
	n = clean.len;
	if (n > keep) {
		/* Back up over UTF-8 continuation bytes: never half a char. */
		n = keep;
		while (n > 0 && ((unsigned char)clean.data[n] & 0xc0) == 0x80)
			n--;
	}
	if (buf_add(out, clean.data, n) < 0 ||
	    (n < clean.len && buf_adds(out, " ...") < 0))
		goto out;
	rc = 0;
out:
	buf_release(&clean); /* wiped: it held the text around the secrets */
	return rc;
}

void
redact_free(struct redact *r)
{
	for (size_t i = 0; i < r->n; i++)
		form_release(&r->forms[i]);
	free(r->forms);
	r->forms = NULL;
	r->n = 0;
}
