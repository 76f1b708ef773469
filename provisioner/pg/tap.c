/*
 * tap.c: TAP as pgTAP emits it. See tap.h for the lines understood and
 * the caps. Pure: no I/O, never fails; bad lines are counted and ignored.
 */
#include "pg/tap.h"

#include <stdlib.h>
#include <string.h>

#define MORE "[...]"

void
tap_init(struct tap *t)
{
	memset(t, 0, sizeof(*t));
	buf_init(&t->diag, TAP_MAX_DIAG + sizeof(MORE));
}

void
tap_free(struct tap *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->a[i].description);
		free(t->a[i].reason);
		buf_release(&t->a[i].diag);
	}
	free(t->a);
	free(t->skip_reason);
	free(t->bail_reason);
	buf_release(&t->diag);
	memset(t, 0, sizeof(*t));
}

/* ======================================================== small helpers */

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void
skip_blanks(const char **p, const char *end)
{
	while (*p < end && is_blank(**p))
		(*p)++;
}

static void
trim_end(const char *p, const char **end)
{
	while (*end > p && is_blank((*end)[-1]))
		(*end)--;
}

static bool
has_prefix(const char *p, const char *end, const char *pre)
{
	size_t n = strlen(pre);

	return (size_t)(end - p) >= n && memcmp(p, pre, n) == 0;
}

static bool
word_ci(const char *p, const char *end, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(end - p) < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != w[i])
			return false;
	}
	return true;
}

/* A copy of p..end, cut at TAP_MAX_TEXT; "\#" and "\\" unescaped. */
static char *
text_copy(const char *p, const char *end, bool unescape)
{
	struct buf b;
	size_t len;
	char *s;

	buf_init(&b, TAP_MAX_TEXT + sizeof(MORE));
	for (; p < end && b.len < TAP_MAX_TEXT; p++) {
		if (unescape && *p == '\\' && p + 1 < end &&
		    (p[1] == '#' || p[1] == '\\'))
			p++;
		buf_addc(&b, *p);
	}
	if (p < end)
		buf_adds(&b, "...");
	s = buf_detach(&b, &len);
	buf_release(&b); /* buf_detach left it initialised */
	return s;
}

/* Digits then a blank, '#', '-' or the end; false otherwise. */
static bool
number(const char **p, const char *end, unsigned long *out)
{
	const char *s = *p;
	uint64_t v;

	while (*p < end && **p >= '0' && **p <= '9')
		(*p)++;
	if (*p == s || (*p < end && !is_blank(**p) && **p != '#') ||
	    parse_u64(s, (size_t)(*p - s), 1000000000000ull, &v) < 0) {
		*p = s;
		return false;
	}
	*out = (unsigned long)v;
	return true;
}

static void
diag_add(struct buf *b, const char *p, const char *end)
{
	size_t len = (size_t)(end - p);

	if (b->len >= TAP_MAX_DIAG)
		return; /* already cut */
	if (b->len > 0)
		buf_addc(b, '\n');
	if (b->len + len <= TAP_MAX_DIAG) {
		buf_add(b, p, len);
		return;
	}
	/* Fill up to the cap, then mark it: b->len is then past the cap. */
	buf_add(b, p, TAP_MAX_DIAG - b->len);
	buf_adds(b, MORE);
}

/* ======================================================== lines */

/* "# SKIP reason" / "# TODO reason" after the '#' at p. */
static enum tap_directive
directive(const char *p, const char *end, const char **reason)
{
	enum tap_directive d = TAP_DIR_NONE;

	p++;
	skip_blanks(&p, end);
	if (word_ci(p, end, "skip"))
		d = TAP_DIR_SKIP;
	else if (word_ci(p, end, "todo"))
		d = TAP_DIR_TODO;
	else
		return TAP_DIR_NONE;
	p += 4;
	while (
	    p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
		p++; /* SKIPPED, todos */
	skip_blanks(&p, end);
	if (p < end && *p == ':')
		p++;
	skip_blanks(&p, end);
	*reason = p;
	return d;
}

/* The first unescaped '#' that starts a directive, or end. */
static const char *
find_directive(const char *p, const char *end)
{
	const char *r;

	for (; p < end; p++) {
		if (*p == '\\' && p + 1 < end) {
			p++;
			continue;
		}
		if (*p == '#' && directive(p, end, &r) != TAP_DIR_NONE)
			return p;
	}
	return end;
}

static void
count(struct tap *t, const struct tap_assertion *a)
{
	if (a->directive == TAP_DIR_TODO)
		t->todo++;
	else if (!a->ok)
		t->failed++;
	else if (a->directive == TAP_DIR_SKIP)
		t->skipped++;
	else
		t->passed++;
}

static void
assertion(struct tap *t, bool ok, const char *p, const char *end)
{
	struct tap_assertion a;
	const char *hash, *dend, *reason = end;

	memset(&a, 0, sizeof(a));
	a.ok = ok;
	skip_blanks(&p, end);
	if (!number(&p, end, &a.number))
		a.number = t->n + t->dropped + 1;
	skip_blanks(&p, end);
	if (p < end && *p == '-') {
		p++;
		skip_blanks(&p, end);
	}
	hash = find_directive(p, end);
	dend = hash;
	trim_end(p, &dend);
	if (hash < end)
		a.directive = directive(hash, end, &reason);
	count(t, &a);
	if (t->n >= TAP_MAX_ASSERTIONS) {
		t->dropped++;
		return;
	}
	a.description = text_copy(p, dend, true);
	trim_end(reason, &end);
	a.reason = text_copy(reason, end, false);
	buf_init(&a.diag, TAP_MAX_DIAG + sizeof(MORE));
	if (t->n == t->alloc) {
		/* Doubling: pgTAP files run to thousands of assertions. */
		t->alloc = t->alloc ? t->alloc * 2 : 64;
		t->a = xreallocarray(t->a, t->alloc, sizeof(*t->a));
	}
	t->a[t->n++] = a;
}

static void
plan(struct tap *t, const char *p, const char *end)
{
	const char *r = end;

	p += 3;
	if (!number(&p, end, &t->planned)) {
		t->ignored++;
		return;
	}
	t->plans++;
	t->has_plan = true;
	skip_blanks(&p, end);
	if (t->planned != 0)
		return;
	t->skip_all = true;
	if (p < end && *p == '#')
		(void)directive(p, end, &r);
	trim_end(r, &end);
	free(t->skip_reason);
	t->skip_reason = text_copy(r, end, false);
}

static void
bail(struct tap *t, const char *p, const char *end)
{
	p += strlen("Bail out!");
	skip_blanks(&p, end);
	trim_end(p, &end);
	t->bailed = true;
	t->bail_reason = text_copy(p, end, false);
}

static void
diag(struct tap *t, const char *p, const char *end)
{
	p++;
	if (p < end && *p == ' ')
		p++;
	if (t->dropped > 0)
		return;
	if (t->n == 0 || has_prefix(p, end, "Looks like"))
		diag_add(&t->diag, p, end);
	else
		diag_add(&t->a[t->n - 1].diag, p, end);
}

static void
line(struct tap *t, const char *p, const char *end)
{
	if (end > p && end[-1] == '\r')
		end--;
	if (t->bailed || memchr(p, '\0', (size_t)(end - p)) != NULL)
		t->ignored++;
	else if (p < end && *p == '#')
		diag(t, p, end);
	else if (has_prefix(p, end, "ok") &&
	         (end - p == 2 || is_blank(p[2]) || p[2] == '#'))
		assertion(t, true, p + 2, end);
	else if (has_prefix(p, end, "not ok") &&
	         (end - p == 6 || is_blank(p[6]) || p[6] == '#'))
		assertion(t, false, p + 6, end);
	else if (has_prefix(p, end, "1.."))
		plan(t, p, end);
	else if (has_prefix(p, end, "Bail out!"))
		bail(t, p, end);
	else if (!has_prefix(p, end, "TAP version "))
		t->ignored++;
}

void
tap_feed(struct tap *t, const char *p, size_t len)
{
	const char *end = p + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl != NULL ? nl : end;

		line(t, p, e);
		p = nl != NULL ? nl + 1 : end;
	}
}

/* ======================================================== verdict */

bool
tap_problem(const struct tap *t, struct buf *why)
{
	unsigned long run = (unsigned long)(t->n + t->dropped);

	if (t->bailed)
		buf_addf(why, "bailed out%s%.300s", *t->bail_reason ? ": " : "",
		    t->bail_reason);
	else if (t->failed > 0)
		buf_addf(why, "%lu of %lu assertion%s failed", t->failed, run,
		    run == 1 ? "" : "s");
	else if (run == 0 && !t->skip_all)
		buf_adds(why, "no assertions (a test file without "
		              "assertions is a failure, not a pass)");
	else if (t->dropped > 0)
		buf_addf(why, "more than %u assertions", TAP_MAX_ASSERTIONS);
	else if (!t->has_plan)
		buf_addf(why,
		    "no plan: ran %lu assertion%s without "
		    "plan(N) or no_plan() and finish()",
		    run, run == 1 ? "" : "s");
	else if (t->plans > 1)
		buf_addf(why, "%u plans in one file", t->plans);
	else if (t->planned != run)
		buf_addf(why, "planned %lu assertion%s but ran %lu", t->planned,
		    t->planned == 1 ? "" : "s", run);
	else
		return false;
	return true;
}
