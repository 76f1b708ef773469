/*
 * fuzz_redact.c: libFuzzer harness for the redactor (redact.c), the one
 * filter between a secret and every output.
 *
 * The input is secrets, each ended by a 0x01 byte, then the text (the
 * bytes after the last 0x01; a NUL in a secret ends it early, as a C
 * string would). The text is redacted as a value and as a document into
 * buffers sized by redact_max(), which must always suffice, and then
 * checked: no secret that has no '*' (REDACTED is all '*', so a secret
 * made of '*' may well "appear") occurs in either output, nor a line of
 * it of REDACT_FRAGMENT_MIN bytes or more; in the value output no prefix
 * or suffix of at least REDACT_FRAGMENT_MIN bytes of either occurs; a
 * text without any secret comes out of redact_doc() unchanged; what
 * redact_tail() writes starts with no suffix of a secret at all.
 *
 * Build: tests/fuzz/build.sh; run: tests/fuzz/build.sh run 60 redact
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SECRETS 8

static bool
contains(const struct buf *b, const char *p, size_t len)
{
	return len > 0 && memmem(b->data, b->len, p, len) != NULL;
}

/* No piece of s[0..len) that redaction promises to hide is in out. */
static void
check_piece(const struct buf *out, const char *s, size_t len, bool frags)
{
	if (contains(out, s, len))
		abort();
	if (!frags)
		return;
	for (size_t k = REDACT_FRAGMENT_MIN; k < len; k++)
		if (contains(out, s, k) || contains(out, s + len - k, k))
			abort();
}

static void
check_secret(const struct buf *out, const char *s, bool frags)
{
	size_t len = strlen(s);
	const char *p = s;

	if (len == 0 || memchr(s, '*', len) != NULL)
		return;
	check_piece(out, s, len, frags);
	if (memchr(s, '\n', len) == NULL)
		return;
	while (*p) {
		size_t n = strcspn(p, "\n"), next = n + (p[n] == '\n');

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n >= REDACT_FRAGMENT_MIN)
			check_piece(out, p, n, frags);
		p += next;
	}
}

static void
check(const struct redact *r, char **sec, size_t nsec, const char *text,
    size_t len, bool frags)
{
	struct buf out;
	int rc;

	buf_init(&out, redact_max(len));
	rc = frags ? redact_text(r, text, len, &out)
	           : redact_doc(r, text, len, &out);
	if (rc != 0 || out.len > redact_max(len))
		abort();
	for (size_t i = 0; i < nsec; i++)
		check_secret(&out, sec[i], frags);
	if (!frags && memchr(out.data, '*', out.len) == NULL &&
	    (out.len != len || memcmp(out.data, text, len) != 0))
		abort(); /* nothing masked, so nothing changed */
	buf_release(&out);
}

/* redact_tail(): as redact_text(), and the output starts with no suffix
 * of a secret, however short. */
static void
check_tail(const struct redact *r, char **sec, size_t nsec, const char *text,
    size_t len)
{
	struct buf out;

	buf_init(&out, redact_max(len));
	if (redact_tail(r, text, len, &out) != 0)
		abort();
	for (size_t i = 0; i < nsec; i++) {
		size_t n = strlen(sec[i]);

		check_secret(&out, sec[i], true);
		if (memchr(sec[i], '*', n) != NULL)
			continue;
		for (size_t k = 1; k < n && k <= out.len; k++)
			if (memcmp(out.data, sec[i] + n - k, k) == 0)
				abort();
	}
	buf_release(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *sep;
	char *sec[MAX_SECRETS];
	size_t nsec = 0;
	struct redact r;

	redact_init(&r);
	while (nsec < MAX_SECRETS &&
	       (sep = memchr(p, 0x01, (size_t)(end - p))) != NULL) {
		sec[nsec] = strndup(p, (size_t)(sep - p));
		redact_add(&r, sec[nsec++]);
		p = sep + 1;
	}
	check(&r, sec, nsec, p, (size_t)(end - p), true);
	check(&r, sec, nsec, p, (size_t)(end - p), false);
	check_tail(&r, sec, nsec, p, (size_t)(end - p));
	for (size_t i = 0; i < nsec; i++)
		free(sec[i]);
	redact_free(&r);
	return 0;
}
