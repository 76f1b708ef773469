/*
 * knownhosts.h: OpenSSH's known_hosts rules, as a pure function of the
 * file's bytes.
 *
 * Why not libssh2's parser: libssh2 1.10 reads "@revoked" as a host name
 * (so a revoked key passes when another line lists it) and matches a plain
 * "host" entry for every port. The decision is made here instead; libssh2
 * only computes the key the server offered.
 *
 * knownhosts_check(p, len, max, q, a, err) reads the file's len bytes
 * (no NUL needed; more than max is an error) and answers, for the host,
 * port and key in *q:
 *
 *   KNOWNHOSTS_REVOKED    a "@revoked" line for the host lists this key.
 *                         This wins over everything else in the file.
 *   KNOWNHOSTS_MATCH      a plain line for the host lists this key.
 *   KNOWNHOSTS_MISMATCH   plain lines for the host list keys of this key's
 *                         type, none of them this key.
 *   KNOWNHOSTS_NOT_FOUND  no plain line for the host lists this type (it
 *                         may list others: a->types).
 *
 * Which lines are "for the host" (OpenSSH's rules): the name looked up is
 * "host" for port 22 and "[host]:port" for any other port, lower-cased.
 * So on port 2222 a plain "host" line does not count, and a "[host]:2222"
 * line with another key is a mismatch whatever plain "host" lines say. On
 * port 22, "[host]:22" is looked up as well (OpenSSH never writes it,
 * but a hand-written one means the same host). The host field is either
 * a comma list of patterns ('*' and '?' wildcards, '!' negates: a negated
 * pattern that matches excludes the line whatever the others say) or one
 * hashed name "|1|base64(salt)|base64(HMAC-SHA1(salt, name))".
 *
 * Line syntax: [marker] hosts keytype base64-blob [comment]. Blank lines
 * and '#' comments are ignored. "@cert-authority" lines are skipped (host
 * certificates are not supported) and counted in a->cert_lines when they
 * are for the host. Lines that cannot be parsed (unknown marker, missing
 * field, bad base64, a blob whose own type is not keytype, an embedded NUL)
 * are skipped and counted in a->skipped, as OpenSSH skips them; a hashed
 * name that cannot be decoded matches no host.
 *
 * q->key_type may be NULL: then only a->types (and cert_lines, skipped)
 * are filled, and a->result is KNOWNHOSTS_NOT_FOUND.
 *
 * Returns 0, or -1 with SH_ERR_USAGE when len > max. Clears *a first;
 * after a return of 0 the caller frees it with knownhosts_answer_free()
 * (also safe after -1).
 */
#ifndef STAGEHAND_KNOWNHOSTS_H
#define STAGEHAND_KNOWNHOSTS_H

#include <stddef.h>

#include "util/util.h"

enum knownhosts_result {
	KNOWNHOSTS_NOT_FOUND = 0,
	KNOWNHOSTS_MATCH,
	KNOWNHOSTS_MISMATCH,
	KNOWNHOSTS_REVOKED,
};

struct knownhosts_query {
	const char *host;         /* as connected to; NUL-terminated */
	unsigned port;            /* 0 means 22 */
	const char *key_type;     /* "ssh-ed25519", or NULL: types only */
	const unsigned char *key; /* the raw public key blob */
	size_t keylen;
};

struct knownhosts_answer {
	enum knownhosts_result result;
	/* 1-based line that decided: the @revoked line, the matching line,
	 * or the first line of the same type with another key; 0 if none. */
	size_t line;
	struct strlist types;   /* owned: key types listed for the host, in
	                           file order, each once (plain lines only) */
	size_t cert_lines;      /* @cert-authority lines for the host */
	size_t first_cert_line; /* the first of them; 0 if none */
	size_t skipped;         /* lines that could not be parsed */
};

int knownhosts_check(const char *p, size_t len, size_t max,
    const struct knownhosts_query *q, struct knownhosts_answer *a,
    struct errbuf *err);
void knownhosts_answer_free(struct knownhosts_answer *a);

#endif
