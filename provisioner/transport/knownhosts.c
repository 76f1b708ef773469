/*
 * knownhosts.c: OpenSSH's known_hosts rules. See knownhosts.h.
 *
 * Sections: fields and lines; host patterns; hashed names; the check.
 *
 * Everything works on (pointer, length) slices of the caller's bytes; only
 * the looked-up names and decoded blobs are allocated. The pattern matcher
 * is the iterative one (back up to the last '*'), so a pattern of many
 * stars costs O(pattern * name), never exponential time.
 */
#include "transport/knownhosts.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#define SHA1_LEN 20
#define HASH_MAGIC "|1|"

/* A slice of the file. */
struct span {
	const char *p;
	size_t len;
};

enum marker {
	MARK_NONE,
	MARK_REVOKED,
	MARK_CA,
};

struct entry {
	enum marker marker;
	struct span hosts;
	struct span type;
	unsigned char *blob; /* owned */
	size_t bloblen;
};

/* The names a line's host field is matched against (knownhosts.h). */
struct names {
	char *v[2]; /* owned, lower case */
	size_t n;
};

/* ======================================================== fields and lines */

static bool
is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* The next blank-separated field of *rest; empty when there is none. */
static struct span
field_next(struct span *rest)
{
	struct span f;

	while (rest->len > 0 && is_blank(*rest->p)) {
		rest->p++;
		rest->len--;
	}
	f.p = rest->p;
	f.len = 0;
	while (f.len < rest->len && !is_blank(f.p[f.len]))
		f.len++;
	rest->p += f.len;
	rest->len -= f.len;
	return f;
}

static bool
span_is(struct span s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* Base64 (with padding, nothing after it) into a new buffer. */
static int
b64_decode(struct span s, unsigned char **out, size_t *outlen)
{
	size_t cap = s.len / 4 * 3 + 3;
	unsigned char *b;

	*out = NULL;
	*outlen = 0;
	if (s.len == 0)
		return -1;
	b = xmalloc(cap);
	if (sodium_base642bin(b, cap, s.p, s.len, NULL, outlen, NULL,
	        sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(b);
		*outlen = 0;
		return -1;
	}
	*out = b;
	return 0;
}

/* The blob starts with its own type as an SSH string: it must be type. */
static bool
blob_type_is(const unsigned char *b, size_t len, struct span type)
{
	uint32_t n;

	if (len < 4)
		return false;
	n = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
	    (uint32_t)b[3];
	return n == type.len && n <= len - 4 && memcmp(b + 4, type.p, n) == 0;
}

/*
 * Splits one line (without its newline) into e. Returns 1 for an entry,
 * 0 for a blank or comment line, -1 for a line that cannot be parsed.
 */
static int
entry_parse(struct span line, struct entry *e)
{
	struct span f;

	memset(e, 0, sizeof(*e));
	if (memchr(line.p, '\0', line.len) != NULL)
		return -1;
	f = field_next(&line);
	if (f.len == 0 || f.p[0] == '#')
		return 0;
	if (f.p[0] == '@') {
		if (span_is(f, "@revoked"))
			e->marker = MARK_REVOKED;
		else if (span_is(f, "@cert-authority"))
			e->marker = MARK_CA;
		else
			return -1;
		f = field_next(&line);
	}
	e->hosts = f;
	e->type = field_next(&line);
	f = field_next(&line);
	if (e->hosts.len == 0 || e->type.len == 0 ||
	    b64_decode(f, &e->blob, &e->bloblen) < 0)
		return -1;
	if (!blob_type_is(e->blob, e->bloblen, e->type)) {
		free(e->blob);
		e->blob = NULL;
		return -1;
	}
	return 1;
}

/* ======================================================== host patterns */

static char
lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* '*' and '?' glob, case-insensitive; name is lower case already. */
static bool
glob_match(struct span pat, const char *name, size_t nlen)
{
	size_t pi = 0, ni = 0, star_p = SIZE_MAX, star_n = 0;

	while (ni < nlen) {
		if (pi < pat.len && pat.p[pi] == '*') {
			star_p = pi++;
			star_n = ni;
		} else if (pi < pat.len &&
		           (pat.p[pi] == '?' || lower(pat.p[pi]) == name[ni])) {
			pi++;
			ni++;
		} else if (star_p != SIZE_MAX) {
			pi = star_p + 1;
			ni = ++star_n;
		} else {
			return false;
		}
	}
	while (pi < pat.len && pat.p[pi] == '*')
		pi++;
	return pi == pat.len;
}

/*
 * A comma list: true when a pattern matches one of the names and no
 * negated pattern matches any of them (a negation is final, as in OpenSSH).
 */
static bool
patterns_match(struct span list, const struct names *nm)
{
	bool hit = false;

	while (list.len > 0) {
		const char *comma = memchr(list.p, ',', list.len);
		size_t seg = comma ? (size_t)(comma - list.p) : list.len;
		struct span pat = { list.p, seg };
		bool neg = seg > 0 && pat.p[0] == '!';

		if (neg) {
			pat.p++;
			pat.len--;
		}
		for (size_t i = 0; i < nm->n && pat.len > 0; i++) {
			if (!glob_match(pat, nm->v[i], strlen(nm->v[i])))
				continue;
			if (neg)
				return false;
			hit = true;
		}
		seg += comma ? 1 : 0;
		list.p += seg;
		list.len -= seg;
	}
	return hit;
}

/* ======================================================== hashed names */

/* "|1|salt|hash": the name hashes to hash under salt. */
static bool
hashed_match(struct span h, const struct names *nm)
{
	struct span salt, hash;
	unsigned char *s = NULL, *want = NULL, got[EVP_MAX_MD_SIZE];
	size_t slen = 0, wlen = 0;
	unsigned int glen = 0;
	const char *bar;
	bool hit = false;

	salt.p = h.p + strlen(HASH_MAGIC);
	salt.len = h.len - strlen(HASH_MAGIC);
	bar = memchr(salt.p, '|', salt.len);
	if (bar == NULL)
		return false;
	hash.p = bar + 1;
	hash.len = salt.len - (size_t)(hash.p - salt.p);
	salt.len = (size_t)(bar - salt.p);
	if (b64_decode(salt, &s, &slen) < 0 || slen != SHA1_LEN ||
	    b64_decode(hash, &want, &wlen) < 0 || wlen != SHA1_LEN)
		goto out;
	for (size_t i = 0; i < nm->n && !hit; i++)
		hit = HMAC(EVP_sha1(), s, SHA1_LEN,
		          (const unsigned char *)nm->v[i], strlen(nm->v[i]),
		          got, &glen) != NULL &&
		      glen == SHA1_LEN &&
		      sodium_memcmp(got, want, SHA1_LEN) == 0;
out:
	free(s);
	free(want);
	return hit;
}

static bool
hosts_match(struct span hosts, const struct names *nm)
{
	if (hosts.len >= strlen(HASH_MAGIC) &&
	    memcmp(hosts.p, HASH_MAGIC, strlen(HASH_MAGIC)) == 0)
		return hashed_match(hosts, nm);
	return patterns_match(hosts, nm);
}

static void
names_init(struct names *nm, const char *host, unsigned port)
{
	memset(nm, 0, sizeof(*nm));
	if (port == 0)
		port = 22;
	if (port == 22)
		nm->v[nm->n++] = xstrdup(host);
	nm->v[nm->n++] = xasprintf("[%s]:%u", host, port);
	for (size_t i = 0; i < nm->n; i++)
		for (char *c = nm->v[i]; *c; c++)
			*c = lower(*c);
}

static void
names_free(struct names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->v[i]);
	memset(nm, 0, sizeof(*nm));
}

/* ======================================================== the check */

struct verdict {
	size_t revoked, match, mismatch; /* lines; 0: none */
};

static bool
key_is(const struct entry *e, const struct knownhosts_query *q)
{
	return e->bloblen == q->keylen &&
	       memcmp(e->blob, q->key, q->keylen) == 0;
}

/* Adds type to the list unless it is there. */
static void
types_add(struct strlist *types, struct span type)
{
	char *t = xstrndup(type.p, type.len);

	if (strlist_has(types, t))
		free(t);
	else
		strlist_push_owned(types, t);
}

static void
entry_apply(const struct entry *e, const struct knownhosts_query *q,
    size_t lineno, struct verdict *v, struct knownhosts_answer *a)
{
	bool same_type = q->key_type != NULL && span_is(e->type, q->key_type);

	if (e->marker == MARK_CA) {
		if (a->cert_lines++ == 0)
			a->first_cert_line = lineno;
		return;
	}
	if (e->marker == MARK_REVOKED) {
		if (same_type && key_is(e, q) && v->revoked == 0)
			v->revoked = lineno;
		return;
	}
	types_add(&a->types, e->type);
	if (same_type && key_is(e, q) && v->match == 0)
		v->match = lineno;
	else if (same_type && v->mismatch == 0)
		v->mismatch = lineno;
}

static void
verdict_set(const struct verdict *v, struct knownhosts_answer *a)
{
	if (v->revoked) {
		a->result = KNOWNHOSTS_REVOKED;
		a->line = v->revoked;
	} else if (v->match) {
		a->result = KNOWNHOSTS_MATCH;
		a->line = v->match;
	} else if (v->mismatch) {
		a->result = KNOWNHOSTS_MISMATCH;
		a->line = v->mismatch;
	}
}

int
knownhosts_check(const char *p, size_t len, size_t max,
    const struct knownhosts_query *q, struct knownhosts_answer *a,
    struct errbuf *err)
{
	struct verdict v = { 0, 0, 0 };
	struct names nm;
	size_t lineno = 0;

	memset(a, 0, sizeof(*a));
	if (len > max)
		return err_set(
		    err, SH_ERR_USAGE, "is larger than %zu bytes", max);
	names_init(&nm, q->host, q->port);
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		struct span line = { p, nl ? (size_t)(nl - p) : len };
		struct entry e;
		int rc = entry_parse(line, &e);

		lineno++;
		if (rc < 0)
			a->skipped++;
		else if (rc > 0 && hosts_match(e.hosts, &nm))
			entry_apply(&e, q, lineno, &v, a);
		free(e.blob);
		p += nl ? line.len + 1 : len;
		len -= nl ? line.len + 1 : len;
	}
	names_free(&nm);
	verdict_set(&v, a);
	return 0;
}

void
knownhosts_answer_free(struct knownhosts_answer *a)
{
	strlist_free(&a->types);
	memset(a, 0, sizeof(*a));
}
