/*
 * narinfo.c: the strict narinfo parser, Nix base32, fingerprints and
 * Ed25519 verification (see narinfo.h for the contract).
 *
 * The rules follow Nix 2.8 (src/libstore/nar-info.cc, path-info.cc,
 * libutil/hash.cc) where Nix is strict, and are stricter where Nix is
 * lenient: unknown or duplicate keys, control characters, non-canonical
 * numbers and duplicate references are errors here. Every line must end
 * in '\n', as in Nix, so a narinfo cut anywhere is refused.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "nix/narinfo.h"

#define NIX_NAME_MAX 211
#define SHA256_LEN 32
#define SHA256_NIX32_LEN 52
#define SHA256_HEX_LEN 64
#define SHA256_B64_LEN 44
#define ED25519_SIG_LEN 64
/* A fingerprint is at most the narinfo plus the "/nix/store/" prefixes. */
#define FINGERPRINT_MAX                                                        \
	(NARINFO_MAX_BYTES + NARINFO_MAX_REFERENCES * sizeof(NIX_STORE_DIR))

static const char nix32_chars[] = "0123456789abcdfghijklmnpqrsvwxyz";

/* ========================================================== base32 */

static int
nix32_digit(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(nix32_chars, c);
	return p == NULL ? -1 : (int)(p - nix32_chars);
}

static size_t
nix32_len(size_t nbytes)
{
	return nbytes == 0 ? 0 : (nbytes * 8 - 1) / 5 + 1;
}

/* Nix prints the most significant 5-bit group first, from the end. */
int
nix_base32_encode(const unsigned char *p, size_t len, struct buf *out)
{
	size_t n = nix32_len(len);

	while (n-- > 0) {
		size_t b = n * 5, i = b / 8, j = b % 8;
		unsigned c = (unsigned)p[i] >> j;

		if (i + 1 < len)
			c |= (unsigned)p[i + 1] << (8 - j);
		if (buf_addc(out, nix32_chars[c & 0x1f]) < 0)
			return -1;
	}
	return 0;
}

int
nix_base32_decode(const char *s, size_t len, unsigned char *out, size_t outlen)
{
	memset(out, 0, outlen);
	if (outlen == 0 || len != nix32_len(outlen))
		return -1;
	for (size_t n = 0; n < len; n++) {
		int d = nix32_digit(s[len - n - 1]);
		size_t b = n * 5, i = b / 8, j = b % 8;

		if (d < 0)
			goto bad;
		out[i] |= (unsigned char)((unsigned)d << j);
		if (i + 1 < outlen)
			out[i + 1] |= (unsigned char)((unsigned)d >> (8 - j));
		else if (((unsigned)d >> (8 - j)) != 0)
			goto bad; /* bits beyond the last byte */
	}
	return 0;
bad:
	memset(out, 0, outlen);
	return -1;
}

int
nix_hash_sha256_string(const unsigned char digest[32], struct buf *out)
{
	if (buf_adds(out, "sha256:") < 0)
		return -1;
	return nix_base32_encode(digest, SHA256_LEN, out);
}

/* ========================================================== hashes */

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
decode_hex(const char *s, size_t len, unsigned char *out, size_t outlen)
{
	if (len != outlen * 2)
		return -1;
	for (size_t i = 0; i < outlen; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* Exactly outlen bytes of padded standard base64, nothing after it. */
static int
decode_b64_exact(const char *s, size_t len, unsigned char *out, size_t outlen)
{
	size_t got = 0;
	const char *end = NULL;

	if (sodium_init() < 0)
		return -1;
	if (sodium_base642bin(out, outlen, s, len, NULL, &got, &end,
	        sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	if (got != outlen || end != s + len)
		return -1;
	return 0;
}

/* narinfo.h */
int
nix_hash_sha256_parse(const char *s, unsigned char digest[32])
{
	size_t len = strlen(s);

	memset(digest, 0, SHA256_LEN);
	if (str_has_prefix(s, "sha256-"))
		return decode_b64_exact(s + 7, len - 7, digest, SHA256_LEN);
	if (!str_has_prefix(s, "sha256:"))
		return -1;
	s += 7;
	len -= 7;
	if (len == SHA256_NIX32_LEN)
		return nix_base32_decode(s, len, digest, SHA256_LEN);
	if (len == SHA256_HEX_LEN)
		return decode_hex(s, len, digest, SHA256_LEN);
	return -1;
}

/* ====================================================== store paths */

static bool
name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("+-._?=", c) != NULL;
}

/* "<32 nix32 chars>-<name>", as References and Deriver carry them. */
static int
basename_check(const char *s, struct errbuf *err)
{
	size_t len = strlen(s), nlen;

	if (len < NIX_HASH_LEN + 2 || s[NIX_HASH_LEN] != '-')
		return err_set(
		    err, SH_ERR_TRUST, "'%s' is not <hash>-<name>", s);
	for (size_t i = 0; i < NIX_HASH_LEN; i++)
		if (nix32_digit(s[i]) < 0)
			return err_set(err, SH_ERR_TRUST,
			    "'%s' has a bad hash character", s);
	nlen = len - NIX_HASH_LEN - 1;
	if (nlen > NIX_NAME_MAX || s[NIX_HASH_LEN + 1] == '.')
		return err_set(err, SH_ERR_TRUST, "'%s' has a bad name", s);
	for (size_t i = NIX_HASH_LEN + 1; i < len; i++)
		if (!name_char_ok(s[i]))
			return err_set(err, SH_ERR_TRUST,
			    "'%s' has a bad name character", s);
	return 0;
}

int
nix_store_path_check(const char *path, const char **hash, struct errbuf *err)
{
	static const char prefix[] = NIX_STORE_DIR "/";

	*hash = NULL;
	if (!str_has_prefix(path, prefix))
		return err_set(err, SH_ERR_TRUST,
		    "'%s' is not under " NIX_STORE_DIR, path);
	if (basename_check(path + sizeof(prefix) - 1, err) < 0)
		return -1;
	*hash = path + sizeof(prefix) - 1;
	return 0;
}

/* ============================================================ parse */

struct field {
	const char *name;
	size_t name_len;
	const char *val; /* not NUL-terminated */
	size_t val_len;
};

enum {
	F_STOREPATH = 1u << 0,
	F_URL = 1u << 1,
	F_COMPRESSION = 1u << 2,
	F_FILEHASH = 1u << 3,
	F_FILESIZE = 1u << 4,
	F_NARHASH = 1u << 5,
	F_NARSIZE = 1u << 6,
	F_REFERENCES = 1u << 7,
	F_DERIVER = 1u << 8,
	F_SIG = 1u << 9,
	F_CA = 1u << 10,
	F_SYSTEM = 1u << 11,
};

typedef int (*field_fn)(struct narinfo *, const char *, struct errbuf *);

struct field_def {
	const char *name;
	unsigned bit;
	field_fn fn;
};

static bool
printable(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
			return false;
	return true;
}

/* Decimal without sign or leading zeros ("0" itself is fine). */
static int
number(const char *v, uint64_t *out, struct errbuf *err)
{
	size_t len = strlen(v);

	if (len > 1 && v[0] == '0')
		return err_set(err, SH_ERR_TRUST, "leading zero in '%s'", v);
	if (parse_u64(v, len, UINT64_MAX, out) < 0)
		return err_set(err, SH_ERR_TRUST, "'%s' is not a number", v);
	return 0;
}

static int
f_storepath(struct narinfo *ni, const char *v, struct errbuf *err)
{
	const char *hash;

	if (nix_store_path_check(v, &hash, err) < 0)
		return -1;
	ni->store_path = xstrdup(v);
	return 0;
}

static int
f_url(struct narinfo *ni, const char *v, struct errbuf *err)
{
	if (*v == '\0' || strchr(v, ' ') != NULL)
		return err_set(err, SH_ERR_TRUST, "empty or has a space");
	ni->url = xstrdup(v);
	return 0;
}

static int
f_compression(struct narinfo *ni, const char *v, struct errbuf *err)
{
	static const char *const known[] = { "none", "xz", "bzip2", "zstd",
		"br", "gzip", "lz4", "lzip", "lzma" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(v, known[i]) == 0) {
			ni->compression = xstrdup(v);
			return 0;
		}
	return err_set(err, SH_ERR_TRUST, "unknown compression '%s'", v);
}

static int
f_filehash(struct narinfo *ni, const char *v, struct errbuf *err)
{
	unsigned char d[SHA256_LEN];

	if (nix_hash_sha256_parse(v, d) < 0)
		return err_set(err, SH_ERR_TRUST, "malformed hash '%s'", v);
	ni->file_hash = xstrdup(v);
	return 0;
}

static int
f_filesize(struct narinfo *ni, const char *v, struct errbuf *err)
{
	return number(v, &ni->file_size, err);
}

static int
f_narhash(struct narinfo *ni, const char *v, struct errbuf *err)
{
	unsigned char d[SHA256_LEN];

	if (nix_hash_sha256_parse(v, d) < 0)
		return err_set(err, SH_ERR_TRUST,
		    "malformed hash '%s' (want sha256:<nix32|hex> or "
		    "sha256-<base64>)",
		    v);
	ni->nar_hash = xstrdup(v);
	return 0;
}

static int
f_narsize(struct narinfo *ni, const char *v, struct errbuf *err)
{
	if (number(v, &ni->nar_size, err) < 0)
		return -1;
	if (ni->nar_size == 0)
		return err_set(err, SH_ERR_TRUST, "is 0");
	return 0;
}

static int
add_reference(struct narinfo *ni, char *ref, struct errbuf *err)
{
	if (basename_check(ref, err) < 0)
		goto bad;
	if (strlist_has(&ni->references, ref)) {
		err_set(err, SH_ERR_TRUST, "'%s' listed twice", ref);
		goto bad;
	}
	if (ni->references.n >= NARINFO_MAX_REFERENCES) {
		err_set(err, SH_ERR_TRUST, "more than %u references",
		    NARINFO_MAX_REFERENCES);
		goto bad;
	}
	strlist_push_owned(&ni->references, ref);
	return 0;
bad:
	free(ref);
	return -1;
}

/* Basenames separated by single spaces; "" is no references. */
static int
f_references(struct narinfo *ni, const char *v, struct errbuf *err)
{
	const char *p = v;

	while (*p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t n = sp ? (size_t)(sp - p) : strlen(p);

		if (n == 0 || (sp != NULL && sp[1] == '\0'))
			return err_set(err, SH_ERR_TRUST, "stray space");
		if (add_reference(ni, xstrndup(p, n), err) < 0)
			return -1;
		p += n + (sp != NULL);
	}
	return 0;
}

static int
f_deriver(struct narinfo *ni, const char *v, struct errbuf *err)
{
	if (strcmp(v, "unknown-deriver") != 0 && basename_check(v, err) < 0)
		return -1;
	ni->deriver = xstrdup(v);
	return 0;
}

static int
f_sig(struct narinfo *ni, const char *v, struct errbuf *err)
{
	const char *colon = strchr(v, ':');

	if (colon == NULL || colon == v || colon[1] == '\0')
		return err_set(
		    err, SH_ERR_TRUST, "'%s' is not <keyname>:<base64>", v);
	if (ni->sigs.n >= NARINFO_MAX_SIGS)
		return err_set(err, SH_ERR_TRUST, "more than %u signatures",
		    NARINFO_MAX_SIGS);
	strlist_push(&ni->sigs, v);
	return 0;
}

static int
f_text(char **dst, const char *v, struct errbuf *err)
{
	if (*v == '\0')
		return err_set(err, SH_ERR_TRUST, "empty");
	*dst = xstrdup(v);
	return 0;
}

static int
f_ca(struct narinfo *ni, const char *v, struct errbuf *err)
{
	return f_text(&ni->ca, v, err);
}

static int
f_system(struct narinfo *ni, const char *v, struct errbuf *err)
{
	return f_text(&ni->system, v, err);
}

static const struct field_def fields[] = {
	{ "StorePath", F_STOREPATH, f_storepath },
	{ "URL", F_URL, f_url },
	{ "Compression", F_COMPRESSION, f_compression },
	{ "FileHash", F_FILEHASH, f_filehash },
	{ "FileSize", F_FILESIZE, f_filesize },
	{ "NarHash", F_NARHASH, f_narhash },
	{ "NarSize", F_NARSIZE, f_narsize },
	{ "References", F_REFERENCES, f_references },
	{ "Deriver", F_DERIVER, f_deriver },
	{ "Sig", F_SIG, f_sig },
	{ "CA", F_CA, f_ca },
	{ "System", F_SYSTEM, f_system },
};

static const struct field_def *
field_find(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strlen(fields[i].name) == len &&
		    memcmp(fields[i].name, name, len) == 0)
			return &fields[i];
	return NULL;
}

/* Splits the line at p (up to and excluding '\n') into "Key: value". */
static int
split_line(const char *p, size_t len, struct field *f, struct errbuf *err)
{
	const char *colon = memchr(p, ':', len);

	memset(f, 0, sizeof(*f));
	if (colon == NULL || colon == p)
		return err_set(err, SH_ERR_TRUST, "not a 'Key: value' line");
	f->name = p;
	f->name_len = (size_t)(colon - p);
	if ((size_t)(colon - p) + 1 >= len || colon[1] != ' ')
		return err_set(err, SH_ERR_TRUST,
		    "%.*s: no space after the colon", (int)f->name_len, p);
	f->val = colon + 2;
	f->val_len = len - f->name_len - 2;
	if (!printable(p, len))
		return err_set(err, SH_ERR_TRUST,
		    "%.*s: control or non-ASCII character", (int)f->name_len,
		    p);
	return 0;
}

static int
parse_line(struct narinfo *ni, const struct field *f, unsigned *seen,
    struct errbuf *err)
{
	const struct field_def *def = field_find(f->name, f->name_len);
	char *val;
	int rc;

	if (def == NULL)
		return err_set(err, SH_ERR_TRUST, "unknown key '%.*s'",
		    (int)f->name_len, f->name);
	if ((*seen & def->bit) && def->bit != F_SIG)
		return err_set(err, SH_ERR_TRUST, "%s: given twice", def->name);
	*seen |= def->bit;
	val = xstrndup(f->val, f->val_len);
	err->code = SH_OK;
	rc = def->fn(ni, val, err);
	free(val);
	if (rc < 0)
		return err_prefix(err, "%s: ", def->name);
	return 0;
}

static int
check_required(unsigned seen, struct errbuf *err)
{
	static const struct field_def *const req[] = { &fields[0], &fields[1],
		&fields[5], &fields[6] };

	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
		if (!(seen & req[i]->bit))
			return err_set(
			    err, SH_ERR_TRUST, "%s: missing", req[i]->name);
	return 0;
}

/* The last line has no '\n': name its key when it has one. */
static int
truncated(const char *p, size_t len, unsigned lineno, struct errbuf *err)
{
	const char *colon = memchr(p, ':', len);
	size_t klen = colon ? (size_t)(colon - p) : 0;

	if (klen > 0 && klen <= 16 && printable(p, klen))
		return err_set(err, SH_ERR_TRUST,
		    "line %u: %.*s: truncated (no newline at the end)", lineno,
		    (int)klen, p);
	return err_set(err, SH_ERR_TRUST,
	    "line %u: truncated (no newline at the end)", lineno);
}

static int
parse_lines(const char *p, size_t len, struct narinfo *out, struct errbuf *err)
{
	unsigned seen = 0, lineno = 0;
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(p + pos, '\n', len - pos);
		struct field f;

		lineno++;
		if (nl == NULL)
			return truncated(p + pos, len - pos, lineno, err);
		if (split_line(p + pos, (size_t)(nl - p - (ptrdiff_t)pos), &f,
		        err) < 0 ||
		    parse_line(out, &f, &seen, err) < 0)
			return err_prefix(err, "line %u: ", lineno);
		pos = (size_t)(nl - p) + 1;
	}
	if (check_required(seen, err) < 0)
		return -1;
	if (out->compression == NULL)
		out->compression = xstrdup("bzip2");
	return 0;
}

int
nix_narinfo_parse(
    const char *p, size_t len, struct narinfo *out, struct errbuf *err)
{
	memset(out, 0, sizeof(*out));
	if (len > NARINFO_MAX_BYTES)
		return err_set(err, SH_ERR_TRUST,
		    "narinfo larger than %u bytes", NARINFO_MAX_BYTES);
	if (len == 0)
		return err_set(err, SH_ERR_TRUST, "narinfo is empty");
	if (mem_has_nul(p, len))
		return err_set(err, SH_ERR_TRUST, "narinfo has a NUL byte");
	if (parse_lines(p, len, out, err) < 0) {
		nix_narinfo_free(out);
		return -1;
	}
	return 0;
}

void
nix_narinfo_free(struct narinfo *ni)
{
	if (ni == NULL)
		return;
	free(ni->store_path);
	free(ni->url);
	free(ni->compression);
	free(ni->file_hash);
	free(ni->nar_hash);
	strlist_free(&ni->references);
	free(ni->deriver);
	strlist_free(&ni->sigs);
	free(ni->ca);
	free(ni->system);
	memset(ni, 0, sizeof(*ni));
}

/* ====================================================== fingerprint */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* References as full paths, sorted (Nix keeps them in a std::set). */
static int
add_references(const struct narinfo *ni, struct buf *out)
{
	const char **v = xcalloc(ni->references.n + 1, sizeof(*v));
	int rc = 0;

	for (size_t i = 0; i < ni->references.n; i++)
		v[i] = ni->references.v[i];
	qsort(v, ni->references.n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < ni->references.n && rc == 0; i++)
		rc =
		    buf_addf(out, "%s" NIX_STORE_DIR "/%s", i ? "," : "", v[i]);
	free(v);
	return rc;
}

int
nix_fingerprint(const struct narinfo *ni, struct buf *out, struct errbuf *err)
{
	unsigned char digest[SHA256_LEN];

	buf_reset(out);
	if (ni->store_path == NULL || ni->nar_hash == NULL || ni->nar_size == 0)
		return err_set(err, SH_ERR_TRUST,
		    "narinfo lacks StorePath, NarHash or NarSize");
	if (nix_hash_sha256_parse(ni->nar_hash, digest) < 0)
		return err_set(err, SH_ERR_TRUST,
		    "NarHash: malformed hash '%s'", ni->nar_hash);
	if (buf_addf(out, "1;%s;", ni->store_path) < 0 ||
	    nix_hash_sha256_string(digest, out) < 0 ||
	    buf_addf(out, ";%llu;", (unsigned long long)ni->nar_size) < 0 ||
	    add_references(ni, out) < 0) {
		buf_reset(out);
		return err_set(err, SH_ERR_INTERNAL,
		    "fingerprint longer than %zu bytes", out->max);
	}
	return 0;
}

/* ========================================================= verify */

enum sig_outcome {
	SIG_NO_KEY, /* no trusted key of that name */
	SIG_BAD,    /* a key of that name, but it does not verify */
	SIG_OK,
};

static enum sig_outcome
sig_check(const char *sig, const struct buf *fp, const struct nix_keys *keys,
    const struct nix_key **who)
{
	const char *colon = strchr(sig, ':');
	size_t nlen = colon ? (size_t)(colon - sig) : 0;
	unsigned char raw[ED25519_SIG_LEN];
	enum sig_outcome res = SIG_NO_KEY;

	*who = NULL;
	if (colon == NULL)
		return SIG_NO_KEY;
	for (size_t i = 0; keys != NULL && i < keys->n; i++) {
		const struct nix_key *k = &keys->v[i];

		if (strlen(k->name) != nlen || memcmp(k->name, sig, nlen) != 0)
			continue;
		res = SIG_BAD;
		if (decode_b64_exact(
		        colon + 1, strlen(colon + 1), raw, sizeof(raw)) < 0)
			break;
		if (crypto_sign_verify_detached(raw,
		        (const unsigned char *)fp->data, fp->len, k->pk) == 0) {
			*who = k;
			return SIG_OK;
		}
	}
	return res;
}

static int
verify_fail(const char *bad, const char *unknown, struct errbuf *err)
{
	if (bad != NULL)
		return err_set(err, SH_ERR_TRUST, "bad signature by '%.*s'",
		    (int)strcspn(bad, ":"), bad);
	if (unknown != NULL)
		return err_set(err, SH_ERR_TRUST,
		    "signed by unknown key '%.*s'", (int)strcspn(unknown, ":"),
		    unknown);
	return err_set(err, SH_ERR_TRUST, "no signature (no Sig line)");
}

int
nix_narinfo_verify(const struct narinfo *ni, const struct nix_keys *keys,
    const char **signer, struct errbuf *err)
{
	const char *bad = NULL, *unknown = NULL;
	struct buf fp;
	int rc = -1;

	*signer = NULL;
	buf_init(&fp, FINGERPRINT_MAX);
	if (sodium_init() < 0) {
		err_set(err, SH_ERR_INTERNAL, "libsodium failed to initialise");
		goto out;
	}
	if (nix_fingerprint(ni, &fp, err) < 0)
		goto out;
	for (size_t i = 0; i < ni->sigs.n; i++) {
		const struct nix_key *who;
		enum sig_outcome o = sig_check(ni->sigs.v[i], &fp, keys, &who);

		if (o == SIG_OK) {
			*signer = who->name;
			rc = 0;
			goto out;
		}
		if (o == SIG_BAD && bad == NULL)
			bad = ni->sigs.v[i];
		if (o == SIG_NO_KEY && unknown == NULL)
			unknown = ni->sigs.v[i];
	}
	verify_fail(bad, unknown, err);
out:
	buf_release(&fp);
	return rc;
}

/* =========================================================== keys */

int
nix_keys_add(struct nix_keys *keys, const char *spec, struct errbuf *err)
{
	const char *colon = strchr(spec, ':');
	struct nix_key k;
	size_t nlen;

	memset(&k, 0, sizeof(k));
	if (colon == NULL || colon == spec)
		return err_set(err, SH_ERR_USAGE,
		    "trusted key '%s' is not <name>:<base64>", spec);
	nlen = (size_t)(colon - spec);
	if (nlen >= sizeof(k.name) || !printable(spec, nlen) ||
	    memchr(spec, ' ', nlen) != NULL)
		return err_set(
		    err, SH_ERR_USAGE, "trusted key '%s': bad key name", spec);
	if (decode_b64_exact(colon + 1, strlen(colon + 1), k.pk, sizeof(k.pk)) <
	    0)
		return err_set(err, SH_ERR_USAGE,
		    "trusted key '%.*s': not exactly 32 bytes of base64 "
		    "(nothing may follow the padding)",
		    (int)nlen, spec);
	memcpy(k.name, spec, nlen);
	keys->v = xreallocarray(keys->v, keys->n + 1, sizeof(*keys->v));
	keys->v[keys->n++] = k;
	return 0;
}

void
nix_keys_free(struct nix_keys *keys)
{
	if (keys == NULL)
		return;
	free(keys->v);
	keys->v = NULL;
	keys->n = 0;
}
