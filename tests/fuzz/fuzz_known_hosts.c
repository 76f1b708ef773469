/*
 * fuzz_known_hosts.c: libFuzzer harness for the known_hosts rules
 * (knownhosts_check()).
 *
 * Asks the input, as a known_hosts file, about host.example on port 22
 * and on port 2222 with a fixed ed25519 key (the one the seed corpus
 * lists, so the match, mismatch and revoked paths are reached), and about
 * the input's first line taken as a host name. Checks the invariants the
 * ssh module relies on: an answer's line is within the file and 0 exactly
 * for NOT_FOUND; a types-only query says NOT_FOUND and lists the same
 * types as the key query; and "@revoked * <key>" appended on a line of its
 * own always makes the answer REVOKED, whatever came before. A crash,
 * leak or sanitizer report is a bug too.
 *
 * Build: tests/fuzz/build.sh (or `make fuzz`); run:
 *   tests/fuzz/build.sh run 60 known_hosts
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "transport/knownhosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY                                                               \
	"AAAAC3NzaC1lZDI1NTE5AAAAIE5F95UXU4YRphbPuZTp97cduCjMdFkR0r40XHSnGdLF"
#define MAX (1u << 20)

static unsigned char key[64];
static size_t keylen;

static size_t
count_lines(const uint8_t *data, size_t size)
{
	size_t n = size > 0 && data[size - 1] != '\n' ? 1 : 0;

	for (size_t i = 0; i < size; i++)
		n += data[i] == '\n';
	return n;
}

static void
same_types(const struct strlist *a, const struct strlist *b)
{
	if (a->n != b->n)
		abort();
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			abort();
}

/* One host and port: the invariants in the header comment. */
static void
ask(const uint8_t *data, size_t size, const char *host, unsigned port)
{
	struct knownhosts_query q = { host, port, "ssh-ed25519", key, keylen };
	struct knownhosts_query tq = { host, port, NULL, NULL, 0 };
	struct knownhosts_answer a, t;
	const char *p = (const char *)data;
	struct errbuf err;
	struct buf more;

	if (knownhosts_check(p, size, MAX, &q, &a, &err) < 0 ||
	    knownhosts_check(p, size, MAX, &tq, &t, &err) < 0)
		abort();
	if ((a.result == KNOWNHOSTS_NOT_FOUND) != (a.line == 0) ||
	    a.line > count_lines(data, size) ||
	    t.result != KNOWNHOSTS_NOT_FOUND || t.line != 0)
		abort();
	same_types(&a.types, &t.types);
	knownhosts_answer_free(&a);
	knownhosts_answer_free(&t);
	buf_init(&more, MAX + 128);
	if (buf_add(&more, data, size) < 0 ||
	    buf_adds(&more, "\n@revoked * ssh-ed25519 " FUZZ_KEY "\n") < 0)
		abort();
	if (knownhosts_check(more.data, more.len, more.max, &q, &a, &err) < 0 ||
	    a.result != KNOWNHOSTS_REVOKED)
		abort();
	knownhosts_answer_free(&a);
	buf_release(&more);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	char *host;

	if (size > MAX)
		return 0;
	if (keylen == 0 &&
	    sodium_base642bin(key, sizeof(key), FUZZ_KEY, strlen(FUZZ_KEY),
	        NULL, &keylen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		abort();
	ask(data, size, "host.example", 22);
	ask(data, size, "host.example", 2222);
	while (n < size && n < 256 && data[n] != '\n' && data[n] != '\0')
		n++;
	host = xstrndup((const char *)data, n);
	ask(data, size, host, 22);
	free(host);
	return 0;
}
