/*
 * test_narinfo.c: the narinfo parser, Nix base32, fingerprints and
 * signature checks, against narinfos, signatures and hash conversions
 * made by the real nix on this machine.
 *
 * Runs from the top of the checkout (tests/run.sh does that). Fixtures in
 * tests/fixtures/narinfo/ come from tests/nixcache/make-fixtures.sh (see
 * there); every edited variant is made here, in memory, from them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nix/narinfo.h"

#define FIX "tests/fixtures/narinfo"

/* ------------------------------------------------------------ helpers */

static char *
fixture(const char *name)
{
	struct errbuf err;
	struct buf b;
	char *path = xasprintf(FIX "/%s", name), *s;

	err_clear(&err);
	if (file_read(path, 1u << 20, &b, &err) < 0)
		fail_msg("%s", err.msg);
	free(path);
	s = buf_detach(&b, NULL);
	buf_release(&b); /* buf_detach left it initialised */
	return s;
}

/* The key file's "name:base64", without its (missing) newline. */
static void
load_key(struct nix_keys *keys, const char *file)
{
	char *k = fixture(file);
	struct errbuf err;

	k[strcspn(k, "\n")] = '\0';
	err_clear(&err);
	if (nix_keys_add(keys, k, &err) < 0)
		fail_msg("%s: %s", file, err.msg);
	free(k);
}

/* Replaces the first occurrence of `from` in s (owned) by `to`. */
static char *
replace(char *s, const char *from, const char *to)
{
	char *at = strstr(s, from);
	char *r;

	if (at == NULL)
		fail_msg("'%s' not in fixture", from);
	r = xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
	free(s);
	return r;
}

/* Replaces the whole line starting with `key` by `line` ("" deletes). */
static char *
replace_line(char *s, const char *key, const char *line)
{
	char *at = strstr(s, key), *nl, *r;

	if (at == NULL)
		fail_msg("'%s' not in fixture", key);
	nl = strchr(at, '\n');
	r = xasprintf("%.*s%s%s", (int)(at - s), s, line, nl + 1);
	free(s);
	return r;
}

static void
parse_ok(const char *text, struct narinfo *ni)
{
	struct errbuf err;

	err_clear(&err);
	if (nix_narinfo_parse(text, strlen(text), ni, &err) < 0)
		fail_msg("unexpected error: %s", err.msg);
}

static void
parse_err_len(const char *text, size_t len, const char *want)
{
	struct narinfo ni;
	struct errbuf err;

	err_clear(&err);
	memset(&ni, 0xa5, sizeof(ni));
	if (nix_narinfo_parse(text, len, &ni, &err) == 0)
		fail_msg("parsed, wanted error '%s'", want);
	assert_int_equal(err.code, SH_ERR_TRUST);
	if (strstr(err.msg, want) == NULL)
		fail_msg("error '%s' lacks '%s'", err.msg, want);
	/* Fails closed: nothing left behind to use or free. */
	assert_null(ni.store_path);
	assert_null(ni.nar_hash);
	assert_int_equal(ni.references.n, 0);
	assert_int_equal(ni.sigs.n, 0);
}

static void
parse_err(const char *text, const char *want)
{
	parse_err_len(text, strlen(text), want);
}

/* small-c with one line edited: expects parse error `want`. */
static void
edited_err(const char *key, const char *line, const char *want)
{
	char *s = replace_line(fixture("small-c.narinfo"), key, line);

	parse_err(s, want);
	free(s);
}

/* Verify result for text under the keys from the files named. */
static int
verify(const char *text, const char *k1, const char *k2, const char **signer,
    struct errbuf *err)
{
	struct nix_keys keys = { NULL, 0 };
	struct narinfo ni;
	int rc;

	if (k1)
		load_key(&keys, k1);
	if (k2)
		load_key(&keys, k2);
	parse_ok(text, &ni);
	err_clear(err);
	rc = nix_narinfo_verify(&ni, &keys, signer, err);
	if (rc == 0)
		*signer = xstrdup(*signer); /* keys go away below */
	nix_narinfo_free(&ni);
	nix_keys_free(&keys);
	return rc;
}

static void
verify_ok(
    const char *text, const char *k1, const char *k2, const char *want_signer)
{
	const char *signer = NULL;
	struct errbuf err;

	if (verify(text, k1, k2, &signer, &err) < 0)
		fail_msg("verify failed: %s", err.msg);
	assert_string_equal(signer, want_signer);
	free((char *)signer);
}

static void
verify_err(const char *text, const char *k1, const char *k2, const char *want)
{
	const char *signer = "not cleared";
	struct errbuf err;

	if (verify(text, k1, k2, &signer, &err) == 0)
		fail_msg("verified, wanted '%s'", want);
	assert_null(signer);
	assert_int_equal(err.code, SH_ERR_TRUST);
	if (strstr(err.msg, want) == NULL)
		fail_msg("error '%s' lacks '%s'", err.msg, want);
}

static void
verify_file_err(char *text, const char *want)
{
	verify_err(text, "key1.pub", NULL, want);
	free(text);
}

/* ------------------------------------------------------------ base32 */

static unsigned
hexval(char c)
{
	return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

static void
unhex(const char *hex, unsigned char *out, size_t n)
{
	assert_int_equal(strlen(hex), 2 * n);
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(hexval(hex[2 * i]) << 4 |
		                         hexval(hex[2 * i + 1]));
}

/* Splits s in place at spaces and newlines into at most n words. */
static size_t
words(char *s, char **w, size_t n)
{
	size_t k = 0;

	while (*s && k < n) {
		w[k++] = s;
		s += strcspn(s, " \n");
		if (*s)
			*s++ = '\0';
	}
	return k;
}

static void
test_base32_matches_nix_vectors(void **state)
{
	char *v = fixture("vectors.txt");
	size_t checked = 0;

	(void)state;
	for (char *line = v, *next; *line; line = next) {
		size_t len = strcspn(line, "\n");
		char *w[4];
		unsigned char raw[64], back[64];
		struct buf b;
		size_t n;

		next = line + len + (line[len] != '\0');
		line[len] = '\0';
		assert_int_equal(words(line, w, 4), 4);
		n = strlen(w[1]) / 2;
		unhex(w[1], raw, n);
		buf_init(&b, 256);
		assert_int_equal(nix_base32_encode(raw, n, &b), 0);
		assert_string_equal(b.data, w[2]);
		assert_int_equal(
		    nix_base32_decode(w[2], strlen(w[2]), back, n), 0);
		assert_memory_equal(raw, back, n);
		buf_release(&b);
		checked++;
	}
	assert_int_equal(checked, 12);
	free(v);
}

static void
test_base32_sha256_string_has_prefix(void **state)
{
	unsigned char d[32];
	struct buf b;

	(void)state;
	unhex(
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    d, 32);
	buf_init(&b, 128);
	assert_int_equal(nix_hash_sha256_string(d, &b), 0);
	assert_string_equal(b.data,
	    "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
	buf_release(&b);
}

static void
test_base32_round_trips_every_byte_pattern(void **state)
{
	unsigned char in[32], out[32];

	(void)state;
	for (unsigned seed = 0; seed < 256; seed++) {
		struct buf b;

		for (size_t i = 0; i < sizeof(in); i++)
			in[i] = (unsigned char)(seed * 31 + i * 7);
		buf_init(&b, 128);
		assert_int_equal(nix_base32_encode(in, sizeof(in), &b), 0);
		assert_int_equal(b.len, 52);
		assert_int_equal(nix_base32_decode(b.data, b.len, out, 32), 0);
		assert_memory_equal(in, out, 32);
		buf_release(&b);
	}
}

static void
test_base32_decode_rejects_bad_input(void **state)
{
	const char *good =
	    "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
	unsigned char out[32];
	char s[64];

	(void)state;
	/* e, o, u, t are not in Nix's alphabet; nor are capitals. */
	for (const char *c = "eoutA-+/="; *c; c++) {
		memcpy(s, good, 53);
		s[10] = *c;
		assert_int_equal(nix_base32_decode(s, 52, out, 32), -1);
		for (size_t i = 0; i < 32; i++)
			assert_int_equal(out[i], 0);
	}
	assert_int_equal(nix_base32_decode(good, 51, out, 32), -1);
	assert_int_equal(nix_base32_decode(good, 52, out, 31), -1);
	assert_int_equal(nix_base32_decode("", 0, out, 0), -1);
	/* 52 digits carry 260 bits: the top 4 must be zero ('1' is max). */
	memcpy(s, good, 53);
	s[0] = '2';
	assert_int_equal(nix_base32_decode(s, 52, out, 32), -1);
	s[0] = '1';
	assert_int_equal(nix_base32_decode(s, 52, out, 32), 0);
	/* An embedded NUL is not a digit. */
	memcpy(s, good, 53);
	s[5] = '\0';
	assert_int_equal(nix_base32_decode(s, 52, out, 32), -1);
}

/* -------------------------------------------------------- store paths */

static void
test_store_path_check(void **state)
{
	const char *ok[] = {
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-small-c",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-a+b_c.d?e=f-1",
		"/nix/store/00000000000000000000000000000000-x",
	};
	const char *bad[] = {
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1-small-c",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1e-small-c",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-.hidden",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-a/b",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-a b",
		"/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-caf\xc3\xa9",
		"/nix/storeijkv1r1iwqnnhyncw094h2zi12y3jn1a-small-c",
		"/gnu/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-small-c",
		"ijkv1r1iwqnnhyncw094h2zi12y3jn1a-small-c",
		"",
	};
	struct errbuf err;
	const char *hash;
	char name[300];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		err_clear(&err);
		if (nix_store_path_check(ok[i], &hash, &err) < 0)
			fail_msg("%s: %s", ok[i], err.msg);
		assert_ptr_equal(hash, ok[i] + 11);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hash = "x";
		assert_int_equal(nix_store_path_check(bad[i], &hash, &err), -1);
		assert_null(hash);
	}
	/* Names are at most 211 characters. */
	memset(name, 'n', sizeof(name));
	memcpy(name, "/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-", 44);
	name[44 + 211] = '\0';
	assert_int_equal(nix_store_path_check(name, &hash, &err), 0);
	name[44 + 211] = 'n';
	name[44 + 212] = '\0';
	assert_int_equal(nix_store_path_check(name, &hash, &err), -1);
}

/* -------------------------------------------------------------- parse */

static void
test_narinfo_parses_real_narinfos(void **state)
{
	char *t = fixture("small-root.narinfo");
	struct narinfo ni;

	(void)state;
	parse_ok(t, &ni);
	assert_string_equal(ni.store_path,
	    "/nix/store/gx9syv1gsw205k6plx7cfaihgypzvy7x-small-root");
	assert_string_equal(ni.compression, "xz");
	assert_true(str_has_prefix(ni.url, "nar/"));
	assert_int_equal(ni.nar_size, 984);
	assert_int_equal(ni.file_size, 300);
	assert_int_equal(ni.references.n, 3);
	/* It refers to itself. */
	assert_true(strlist_has(
	    &ni.references, "gx9syv1gsw205k6plx7cfaihgypzvy7x-small-root"));
	assert_int_equal(ni.sigs.n, 1);
	assert_non_null(ni.deriver);
	assert_null(ni.ca);
	nix_narinfo_free(&ni);
	free(t);

	t = fixture("small-a.narinfo");
	parse_ok(t, &ni);
	assert_int_equal(ni.references.n, 0);
	assert_non_null(ni.ca);
	assert_true(str_has_prefix(ni.ca, "text:sha256:"));
	nix_narinfo_free(&ni);
	free(t);

	t = fixture("big-root.narinfo");
	parse_ok(t, &ni);
	assert_int_equal(ni.references.n, 31);
	nix_narinfo_free(&ni);
	free(t);
}

static void
test_narinfo_compression_defaults_to_bzip2(void **state)
{
	char *t = replace_line(fixture("small-c.narinfo"), "Compression:", "");
	struct narinfo ni;

	(void)state;
	parse_ok(t, &ni);
	assert_string_equal(ni.compression, "bzip2");
	nix_narinfo_free(&ni);
	free(t);
}

static void
test_narinfo_rejects_each_field_error(void **state)
{
	(void)state;
	edited_err(
	    "StorePath:", "StorePath: /nix/store/short-x\n", "StorePath: ");
	edited_err("StorePath:", "", "StorePath: missing");
	edited_err("URL:", "", "URL: missing");
	edited_err("URL:", "URL: \n", "URL: empty");
	edited_err("URL:", "URL: nar/a b.nar\n", "URL: empty or has a space");
	edited_err(
	    "Compression:", "Compression: lzx\n", "unknown compression 'lzx'");
	edited_err(
	    "FileHash:", "FileHash: sha256:xyz\n", "FileHash: malformed");
	edited_err(
	    "FileSize:", "FileSize: -1\n", "FileSize: '-1' is not a number");
	edited_err("FileSize:", "FileSize: 18446744073709551616\n",
	    "FileSize: '18446744073709551616' is not a number");
	edited_err("NarHash:", "", "NarHash: missing");
	edited_err("NarHash:", "NarHash: md5:3y8bwfr609h3lh9ch0izcqq7fl\n",
	    "NarHash: malformed hash");
	edited_err("NarSize:", "", "NarSize: missing");
	edited_err("NarSize:", "NarSize: 0\n", "NarSize: is 0");
	edited_err("NarSize:", "NarSize: 0240\n", "NarSize: leading zero");
	edited_err("NarSize:", "NarSize: 240 \n", "NarSize: '240 ' is not");
	edited_err("NarSize:", "NarSize: +240\n", "NarSize: '+240' is not");
	edited_err("NarSize:", "NarSize: 2.4e2\n", "NarSize: '2.4e2' is not");
	edited_err("Deriver:", "Deriver: not-a-store-path\n", "Deriver: ");
	edited_err("Deriver:", "Deriver: \n", "Deriver: ");
	edited_err("Sig:", "Sig: nocolon\n", "Sig: 'nocolon' is not");
	edited_err("Sig:", "Sig: :abc\n", "Sig: ':abc' is not");
	edited_err("Sig:", "Sig: name:\n", "Sig: 'name:' is not");
	edited_err("StorePath:",
	    "StorePath: /nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-small-c\n"
	    "CA: \n",
	    "CA: empty");
	edited_err("StorePath:",
	    "StorePath: /nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-small-c\n"
	    "System: \n",
	    "System: empty");
}

static void
test_narinfo_rejects_bad_lines(void **state)
{
	(void)state;
	edited_err("Deriver:", "Signature: x:y\n", "unknown key 'Signature'");
	edited_err("Deriver:", "storepath: x\n", "unknown key 'storepath'");
	edited_err("Deriver:", "NarSize: 240\n", "NarSize: given twice");
	edited_err("Deriver:", "URL: nar/x\n", "URL: given twice");
	edited_err("Deriver:", "Deriver:x\n", "no space after the colon");
	edited_err("Deriver:", "Deriver\n", "not a 'Key: value' line");
	edited_err("Deriver:", ": x\n", "not a 'Key: value' line");
	edited_err("Deriver:", "\n", "not a 'Key: value' line");
	edited_err("NarSize:", "NarSize: 240\r\n", "control or non-ASCII");
	edited_err(
	    "Deriver:", "Deriver: caf\xc3\xa9\n", "control or non-ASCII");
	edited_err("Deriver:", "Deriver: a\tb\n", "control or non-ASCII");
}

static void
test_narinfo_reports_line_numbers(void **state)
{
	(void)state;
	edited_err("NarSize:", "NarSize: x\n", "line 7: NarSize: ");
}

static void
test_narinfo_rejects_bad_references(void **state)
{
	(void)state;
	edited_err("References:",
	    "References: 40rml0pjqligv4dg4hcx0rwp635axg39-small-a  "
	    "8srdsplwdjlsccp0a7d257fkpb7rrnp1-small-b\n",
	    "References: stray space");
	edited_err("References:",
	    "References: 40rml0pjqligv4dg4hcx0rwp635axg39-small-a \n",
	    "References: stray space");
	edited_err("References:",
	    "References:  40rml0pjqligv4dg4hcx0rwp635axg39-small-a\n",
	    "References: stray space");
	edited_err("References:",
	    "References: 40rml0pjqligv4dg4hcx0rwp635axg39-small-a "
	    "40rml0pjqligv4dg4hcx0rwp635axg39-small-a\n",
	    "listed twice");
	edited_err("References:",
	    "References: /nix/store/40rml0pjqligv4dg4hcx0rwp635axg39-small-a\n",
	    "References: '/nix/store/40rml0");
	edited_err("References:",
	    "References: 40rml0pjqligv4dg4hcx0rwp635axg3e-small-a\n",
	    "bad hash character");
}

static void
test_narinfo_allows_repeated_sig_up_to_the_limit(void **state)
{
	char *t = fixture("small-c.narinfo");
	struct buf b;
	struct narinfo ni;

	(void)state;
	buf_init(&b, 1u << 20);
	assert_int_equal(buf_adds(&b, t), 0);
	for (unsigned i = 1; i < NARINFO_MAX_SIGS; i++)
		assert_int_equal(buf_addf(&b, "Sig: extra-%u:AAAA\n", i), 0);
	parse_ok(b.data, &ni);
	assert_int_equal(ni.sigs.n, NARINFO_MAX_SIGS);
	nix_narinfo_free(&ni);
	assert_int_equal(buf_adds(&b, "Sig: one-too-many:AAAA\n"), 0);
	parse_err(b.data, "more than 32 signatures");
	buf_release(&b);
	free(t);
}

static void
test_narinfo_accepts_unknown_deriver(void **state)
{
	char *t = replace_line(fixture("small-c.narinfo"),
	    "Deriver:", "Deriver: unknown-deriver\n");
	struct narinfo ni;

	(void)state;
	parse_ok(t, &ni);
	assert_string_equal(ni.deriver, "unknown-deriver");
	nix_narinfo_free(&ni);
	free(t);
}

static void
test_narinfo_truncated_anywhere_is_refused(void **state)
{
	char *t = fixture("small-c.narinfo");
	size_t len = strlen(t), parsed = 0;
	struct nix_keys keys = { NULL, 0 };

	(void)state;
	load_key(&keys, "key1.pub");
	/* Every proper prefix: a cut mid-line lacks its newline; a cut at a
	 * line end lacks the later required fields or signatures. */
	for (size_t n = 0; n < len; n++) {
		struct narinfo ni;
		struct errbuf err;
		int rc;

		err_clear(&err);
		rc = nix_narinfo_parse(t, n, &ni, &err);
		if (rc == 0) {
			/* Only a cut right after a complete line may parse
			 * (once the required fields are in); it must not
			 * verify: References or the Sig are gone. */
			const char *signer;

			assert_int_equal(t[n - 1], '\n');
			assert_int_equal(
			    nix_narinfo_verify(&ni, &keys, &signer, &err), -1);
			assert_null(signer);
			nix_narinfo_free(&ni);
			parsed++;
			continue;
		}
		assert_int_equal(err.code, SH_ERR_TRUST);
	}
	assert_int_equal(parsed, 3); /* cut before References, Deriver, Sig */
	nix_keys_free(&keys);
	parse_err_len(t, len - 1, "line 10: Sig: truncated");
	parse_err_len(t, 0, "narinfo is empty");
	free(t);
}

static void
test_narinfo_rejects_oversized_and_nul(void **state)
{
	char *t = fixture("small-c.narinfo");
	size_t len = strlen(t);
	struct buf b;
	struct narinfo ni;

	(void)state;
	/* Exactly NARINFO_MAX_BYTES parses (padded through the CA field);
	 * one byte more is refused before anything is read. */
	buf_init(&b, NARINFO_MAX_BYTES + 16);
	assert_int_equal(buf_adds(&b, t), 0);
	assert_int_equal(buf_adds(&b, "CA: "), 0);
	while (b.len < NARINFO_MAX_BYTES - 1)
		assert_int_equal(buf_addc(&b, 'x'), 0);
	assert_int_equal(buf_addc(&b, '\n'), 0);
	assert_int_equal(b.len, NARINFO_MAX_BYTES);
	parse_ok(b.data, &ni);
	nix_narinfo_free(&ni);
	assert_int_equal(buf_addc(&b, '\n'), 0);
	parse_err_len(b.data, b.len, "narinfo larger than 65536 bytes");
	buf_release(&b);

	t[20] = '\0';
	parse_err_len(t, len, "NUL byte");
	free(t);
}

/* -------------------------------------------------------- fingerprint */

static void
test_fingerprint_is_nix_format(void **state)
{
	char *t = fixture("small-c.narinfo");
	struct narinfo ni;
	struct errbuf err;
	struct buf fp;

	(void)state;
	parse_ok(t, &ni);
	buf_init(&fp, 1u << 20);
	err_clear(&err);
	assert_int_equal(nix_fingerprint(&ni, &fp, &err), 0);
	assert_string_equal(fp.data,
	    "1;/nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a-small-c;"
	    "sha256:1g3h683zi1hjq99y2v0psazy7k9pwh4knp2wx151ng56sc5j1yyy;240;"
	    "/nix/store/40rml0pjqligv4dg4hcx0rwp635axg39-small-a,"
	    "/nix/store/8srdsplwdjlsccp0a7d257fkpb7rrnp1-small-b");
	nix_narinfo_free(&ni);
	free(t);

	/* No references: the fingerprint ends in ';'. */
	t = fixture("small-a.narinfo");
	parse_ok(t, &ni);
	assert_int_equal(nix_fingerprint(&ni, &fp, &err), 0);
	assert_int_equal(fp.data[fp.len - 1], ';');
	assert_true(str_has_prefix(fp.data, "1;/nix/store/"));
	nix_narinfo_free(&ni);
	free(t);
	buf_release(&fp);
}

static void
test_fingerprint_converts_base16_and_sri_narhash(void **state)
{
	char *forms = fixture("narhash-forms.txt");
	char *line2 = strchr(forms, '\n') + 1;
	char *line3 = strchr(line2, '\n') + 1;

	(void)state;
	*strchr(line2, '\n') = '\0';
	*strchr(line3, '\n') = '\0';
	*strchr(forms, '\n') = '\0';
	/* Same signature, NarHash written the other ways nix prints it. */
	for (char *f = forms; f; f = f == forms   ? line2
	                             : f == line2 ? line3
	                                          : NULL) {
		char *l = xasprintf("NarHash: %s\n", f);
		char *t =
		    replace_line(fixture("small-c.narinfo"), "NarHash:", l);

		verify_ok(t, "key1.pub", NULL, "stagehand-test-1");
		free(t);
		free(l);
	}
	free(forms);
}

static void
test_fingerprint_rejects_malformed_narhash_forms(void **state)
{
	const char *bad[] = {
		"NarHash: "
		"sha256:1g3h683zi1hjq99y2v0psazy7k9pwh4knp2wx151ng56sc5j1yy\n",
		"NarHash: "
		"sha256:"
		"DEFB200BD3A63C1B4AE85C5C3B09E437CDE3BFD2176CE153C21286F8073270"
		"BC\n",
		"NarHash: "
		"sha256-3vsgC9OmPBtK6FxcOwnkN83jv9IXbOFTwhKG+AcycLw=%\n",
		"NarHash: sha256-3vsgC9OmPBtK6FxcOwnkN83jv9IXbOFTwhKG+AcycLw\n",
		"NarHash: "
		"sha512:1g3h683zi1hjq99y2v0psazy7k9pwh4knp2wx151ng56sc5j1yyy\n",
		"NarHash: "
		"1g3h683zi1hjq99y2v0psazy7k9pwh4knp2wx151ng56sc5j1yyy\n",
		"NarHash: sha256:\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		edited_err("NarHash:", bad[i], "NarHash: malformed hash");
}

/* ------------------------------------------------------------- verify */

static void
test_verify_accepts_real_signatures(void **state)
{
	const char *files[] = { "small-root.narinfo", "small-c.narinfo",
		"small-a.narinfo", "big-root.narinfo", "bundle-lib.narinfo" };

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *t = fixture(files[i]);

		verify_ok(t, "key1.pub", NULL, "stagehand-test-1");
		free(t);
	}
}

static void
test_verify_either_of_two_sigs_suffices(void **state)
{
	char *t = fixture("bundle-lib.narinfo");

	(void)state;
	verify_ok(t, "key1.pub", NULL, "stagehand-test-1");
	verify_ok(t, "key2.pub", NULL, "stagehand-test-2");
	verify_ok(t, "key2.pub", "key1.pub", "stagehand-test-1");
	free(t);
	t = fixture("split-mid.narinfo");
	verify_ok(t, "key2.pub", "key1.pub", "stagehand-test-2");
	verify_err(
	    t, "key1.pub", NULL, "signed by unknown key 'stagehand-test-2'");
	free(t);
}

static void
test_verify_rejects_edits_after_signing(void **state)
{
	(void)state;
	verify_file_err(replace_line(fixture("small-c.narinfo"),
	                    "NarSize:", "NarSize: 241\n"),
	    "bad signature by 'stagehand-test-1'");
	verify_file_err(
	    replace(fixture("small-c.narinfo"), "5j1yyy\n", "5j1yy0\n"),
	    "bad signature by 'stagehand-test-1'");
	verify_file_err(replace(fixture("small-c.narinfo"),
	                    " 8srdsplwdjlsccp0a7d257fkpb7rrnp1-small-b", ""),
	    "bad signature");
	verify_file_err(
	    replace(fixture("small-c.narinfo"), "-small-b\n",
	        "-small-b 40rml0pjqligv4dg4hcx0rwp635axg39-small-x\n"),
	    "bad signature");
	verify_file_err(
	    replace(fixture("small-c.narinfo"),
	        "StorePath: /nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1a",
	        "StorePath: /nix/store/ijkv1r1iwqnnhyncw094h2zi12y3jn1b"),
	    "bad signature");
	verify_file_err(replace_line(fixture("small-c.narinfo"), "Sig:", ""),
	    "no signature");
}

static void
test_verify_ignores_fields_outside_the_fingerprint(void **state)
{
	char *t = replace_line(
	    fixture("small-c.narinfo"), "URL:", "URL: nar/elsewhere.nar.xz\n");

	(void)state;
	t = replace_line(t, "FileSize:", "FileSize: 1\n");
	t = replace_line(t, "Deriver:", "Deriver: unknown-deriver\n");
	verify_ok(t, "key1.pub", NULL, "stagehand-test-1");
	free(t);
}

static void
test_verify_sorts_references_like_nix(void **state)
{
	char *t = replace_line(fixture("small-c.narinfo"), "References:",
	    "References: 8srdsplwdjlsccp0a7d257fkpb7rrnp1-small-b "
	    "40rml0pjqligv4dg4hcx0rwp635axg39-small-a\n");

	(void)state;
	verify_ok(t, "key1.pub", NULL, "stagehand-test-1");
	free(t);
}

static void
test_verify_rejects_malformed_signatures(void **state)
{
	char *t = fixture("small-c.narinfo");
	char *sig = strstr(t, "Sig: stagehand-test-1:") + 22;
	size_t slen = strcspn(sig, "\n");
	char *s63, *junk, *nopad, *url;

	(void)state;
	/* 63 bytes of base64, padding removed, junk after, url-safe. */
	s63 = xasprintf("Sig: stagehand-test-1:%.84s\n", sig);
	verify_file_err(replace_line(xstrdup(t), "Sig:", s63), "bad signature");
	junk = xasprintf("Sig: stagehand-test-1:%.*s%%\n", (int)slen, sig);
	verify_file_err(
	    replace_line(xstrdup(t), "Sig:", junk), "bad signature");
	nopad = xasprintf("Sig: stagehand-test-1:%.*s\n", (int)slen - 2, sig);
	verify_file_err(
	    replace_line(xstrdup(t), "Sig:", nopad), "bad signature");
	url = xasprintf("Sig: stagehand-test-1:%.*s\n", (int)slen, sig);
	for (char *c = url; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	if (strpbrk(sig, "+/") != NULL)
		verify_file_err(
		    replace_line(xstrdup(t), "Sig:", url), "bad signature");
	free(s63);
	free(junk);
	free(nopad);
	free(url);
	free(t);
}

static void
test_verify_prefers_reporting_bad_over_unknown(void **state)
{
	char *t =
	    replace(fixture("small-c.narinfo"), "NarSize: 240", "NarSize: 241");

	(void)state;
	t = replace(t, "Sig: ", "Sig: someone-else:AAAA\nSig: ");
	verify_file_err(t, "bad signature by 'stagehand-test-1'");
	t = replace(fixture("small-c.narinfo"),
	    "Sig: stagehand-test-1:", "Sig: other:");
	verify_file_err(t, "signed by unknown key 'other'");
	/* A good Sig after bad and unknown ones still wins. */
	t = replace(fixture("small-c.narinfo"),
	    "Sig: ", "Sig: other:AAAA\nSig: stagehand-test-1:AAAA\nSig: ");
	verify_ok(t, "key1.pub", NULL, "stagehand-test-1");
	free(t);
}

/* --------------------------------------------------------------- keys */

static void
test_keys_parse_strictly(void **state)
{
	char *k1 = fixture("key1.pub");
	const char *b64 = strchr(k1, ':') + 1;
	const char *bad[] = {
		"nocolon",
		":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"name:",
		"name:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", /* 31 */
		"name:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 33 */
		"name:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* no = */
		"name:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"name:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ",
		"na me:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"name:-_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	};
	struct nix_keys keys = { NULL, 0 };
	struct errbuf err;
	char *s;

	(void)state;
	k1[strcspn(k1, "\n")] = '\0';
	err_clear(&err);
	assert_int_equal(nix_keys_add(&keys, k1, &err), 0);
	assert_int_equal(keys.n, 1);
	assert_string_equal(keys.v[0].name, "stagehand-test-1");
	/* The production quirk: a '%' after the padding is refused. */
	s = xasprintf("%s%%", k1);
	assert_int_equal(nix_keys_add(&keys, s, &err), -1);
	assert_non_null(strstr(err.msg, "nothing may follow the padding"));
	free(s);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (nix_keys_add(&keys, bad[i], &err) == 0)
			fail_msg("accepted key '%s'", bad[i]);
	/* Names up to 127 characters. */
	s = xasprintf("%0127d:%s", 0, b64);
	assert_int_equal(nix_keys_add(&keys, s, &err), 0);
	free(s);
	s = xasprintf("%0128d:%s", 0, b64);
	assert_int_equal(nix_keys_add(&keys, s, &err), -1);
	free(s);
	assert_int_equal(keys.n, 2);
	nix_keys_free(&keys);
	assert_null(keys.v);
	free(k1);
}

static void
test_verify_with_a_key_of_the_right_name_but_other_bytes(void **state)
{
	char *t = fixture("small-c.narinfo");
	char *k2 = fixture("key2.pub");
	struct nix_keys keys = { NULL, 0 };
	struct narinfo ni;
	struct errbuf err;
	const char *signer = "x";
	char *spec;

	(void)state;
	/* key 2's bytes under key 1's name: an impostor. */
	spec = xasprintf("stagehand-test-1:%s", strchr(k2, ':') + 1);
	spec[strcspn(spec, "\n")] = '\0';
	err_clear(&err);
	assert_int_equal(nix_keys_add(&keys, spec, &err), 0);
	parse_ok(t, &ni);
	assert_int_equal(nix_narinfo_verify(&ni, &keys, &signer, &err), -1);
	assert_null(signer);
	assert_non_null(strstr(err.msg, "bad signature by 'stagehand-test-1'"));
	nix_narinfo_free(&ni);
	nix_keys_free(&keys);
	free(spec);
	free(k2);
	free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base32_matches_nix_vectors),
		cmocka_unit_test(test_base32_sha256_string_has_prefix),
		cmocka_unit_test(test_base32_round_trips_every_byte_pattern),
		cmocka_unit_test(test_base32_decode_rejects_bad_input),
		cmocka_unit_test(test_store_path_check),
		cmocka_unit_test(test_narinfo_parses_real_narinfos),
		cmocka_unit_test(test_narinfo_compression_defaults_to_bzip2),
		cmocka_unit_test(test_narinfo_rejects_each_field_error),
		cmocka_unit_test(test_narinfo_rejects_bad_lines),
		cmocka_unit_test(test_narinfo_reports_line_numbers),
		cmocka_unit_test(test_narinfo_rejects_bad_references),
		cmocka_unit_test(
		    test_narinfo_allows_repeated_sig_up_to_the_limit),
		cmocka_unit_test(test_narinfo_accepts_unknown_deriver),
		cmocka_unit_test(test_narinfo_truncated_anywhere_is_refused),
		cmocka_unit_test(test_narinfo_rejects_oversized_and_nul),
		cmocka_unit_test(test_fingerprint_is_nix_format),
		cmocka_unit_test(
		    test_fingerprint_converts_base16_and_sri_narhash),
		cmocka_unit_test(
		    test_fingerprint_rejects_malformed_narhash_forms),
		cmocka_unit_test(test_verify_accepts_real_signatures),
		cmocka_unit_test(test_verify_either_of_two_sigs_suffices),
		cmocka_unit_test(test_verify_rejects_edits_after_signing),
		cmocka_unit_test(
		    test_verify_ignores_fields_outside_the_fingerprint),
		cmocka_unit_test(test_verify_sorts_references_like_nix),
		cmocka_unit_test(test_verify_rejects_malformed_signatures),
		cmocka_unit_test(
		    test_verify_prefers_reporting_bad_over_unknown),
		cmocka_unit_test(test_keys_parse_strictly),
		cmocka_unit_test(
		    test_verify_with_a_key_of_the_right_name_but_other_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
