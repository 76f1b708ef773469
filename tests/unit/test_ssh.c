/*
 * test_ssh.c: the parts of the ssh module that need no network: target
 * strings, key classification (on keys made by ssh-keygen at test time)
 * and fingerprint formatting (checked against ssh-keygen -l).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/ssh.h"
#include "transport/sshkey.h"
#include "util/limits.h"
#include "util/util.h"

static char tmpdir[64];

/* ------------------------------------------------------------ helpers */

static void
sh(const char *cmd)
{
	int rc = system(cmd);

	if (rc != 0)
		fail_msg("command failed (%d): %s", rc, cmd);
}

/* Makes a key with ssh-keygen in tmpdir; returns its path (static). */
static const char *
keygen(const char *name, const char *args)
{
	static char path[256];
	char *cmd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if (access(path, F_OK) == 0)
		return path;
	cmd =
	    xasprintf("ssh-keygen -q -C test %s -f %s </dev/null", args, path);
	sh(cmd);
	free(cmd);
	return path;
}

static void
read_text(const char *path, struct buf *b)
{
	struct errbuf err;

	if (file_read(path, 1u << 20, b, &err) < 0)
		fail_msg("%s", err.msg);
}

static int
check_file(const char *path, struct errbuf *err)
{
	struct buf b;
	int rc;

	read_text(path, &b);
	rc = sshkey_check(b.data, b.len, "identity file k", err);
	buf_release(&b);
	return rc;
}

static int
setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_ssh.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int
teardown_dir(void **state)
{
	char *cmd = xasprintf("rm -rf %s", tmpdir);

	(void)state;
	sh(cmd);
	free(cmd);
	return 0;
}

/* ------------------------------------------------------------ targets */

static void
expect_target(const char *s, const char *user, const char *host, unsigned port)
{
	struct errbuf err;
	char *u, *h;
	unsigned p;

	err_clear(&err);
	if (ssh_target_parse(s, &u, &h, &p, &err) < 0)
		fail_msg("'%s' refused: %s", s, err.msg);
	assert_string_equal(u, user);
	assert_string_equal(h, host);
	assert_int_equal(p, port);
	free(u);
	free(h);
}

static void
expect_bad_target(const char *s, const char *why)
{
	struct errbuf err;
	char *u = (char *)1, *h = (char *)1;
	unsigned p = 1;

	err_clear(&err);
	if (ssh_target_parse(s, &u, &h, &p, &err) == 0)
		fail_msg("'%s' accepted", s);
	assert_int_equal(err.code, SH_ERR_USAGE);
	assert_null(u);
	assert_null(h);
	assert_int_equal(p, 0);
	if (strstr(err.msg, why) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", s, err.msg, why);
}

static void
test_ssh_target_accepts_url_and_short_forms(void **state)
{
	(void)state;
	expect_target(
	    "ssh://builder@10.0.0.2:2222", "builder", "10.0.0.2", 2222);
	expect_target("builder@10.0.0.2:22", "builder", "10.0.0.2", 22);
	expect_target(
	    "admin@build.example.org", "admin", "build.example.org", 22);
	expect_target("ssh://u@h", "u", "h", 22);
	expect_target("u@h:65535", "u", "h", 65535);
	expect_target("u@h:1", "u", "h", 1);
}

static void
test_ssh_target_accepts_bracketed_ipv6(void **state)
{
	(void)state;
	expect_target("u@[::1]:2200", "u", "::1", 2200);
	expect_target("ssh://u@[2001:db8::7]", "u", "2001:db8::7", 22);
	expect_target("u@[fe80::1%eth0]:22", "u", "fe80::1%eth0", 22);
}

static void
test_ssh_target_rejects_missing_parts(void **state)
{
	(void)state;
	expect_bad_target("", "empty target");
	expect_bad_target("host", "missing user");
	expect_bad_target("ssh://host:22", "missing user");
	expect_bad_target("@host", "empty user");
	expect_bad_target("user@", "missing host");
	expect_bad_target("user@:22", "missing host");
	expect_bad_target("u@[]:22", "bad host");
}

static void
test_ssh_target_rejects_bad_ports(void **state)
{
	(void)state;
	expect_bad_target("u@h:", "1..65535");
	expect_bad_target("u@h:0", "1..65535");
	expect_bad_target("u@h:65536", "1..65535");
	expect_bad_target("u@h:99999999999999999999999", "1..65535");
	expect_bad_target("u@h:-1", "1..65535");
	expect_bad_target("u@h:+22", "1..65535");
	expect_bad_target("u@h:22x", "1..65535");
	expect_bad_target("u@h: 22", "1..65535");
	expect_bad_target("u@[::1]:", "1..65535");
}

static void
test_ssh_target_rejects_unbracketed_ipv6_and_junk(void **state)
{
	(void)state;
	expect_bad_target("u@::1", "in brackets");
	expect_bad_target("u@2001:db8::1:22", "in brackets");
	expect_bad_target("u@[::1", "unclosed");
	expect_bad_target("u@[::1]x", "after ']'");
	expect_bad_target("ssh://u@h/path", "bad host");
	expect_bad_target("u@ho st", "bad host");
	expect_bad_target("u s@h", "bad user");
	expect_bad_target("u:x@h", "bad user");
	expect_bad_target("u@h\n", "bad host");
}

/* ------------------------------------------------------------ keys */

static void
expect_key_ok(const char *path)
{
	struct errbuf err;

	err_clear(&err);
	if (check_file(path, &err) < 0)
		fail_msg("%s refused: %s", path, err.msg);
}

static void
expect_key_refused(const char *path, const char *why)
{
	struct errbuf err;

	err_clear(&err);
	if (check_file(path, &err) == 0)
		fail_msg("%s accepted", path);
	assert_int_equal(err.code, SH_ERR_USAGE);
	if (strstr(err.msg, why) == NULL)
		fail_msg("%s: message '%s' lacks '%s'", path, err.msg, why);
	assert_non_null(strstr(err.msg, "identity file k"));
}

static void
test_sshkey_accepts_ed25519_and_ecdsa(void **state)
{
	(void)state;
	expect_key_ok(keygen("ed", "-t ed25519 -N ''"));
	expect_key_ok(keygen("ec", "-t ecdsa -b 256 -N ''"));
	expect_key_ok(keygen("ec521", "-t ecdsa -b 521 -N ''"));
	expect_key_ok(keygen("ecpem", "-t ecdsa -m PEM -N ''"));
	expect_key_ok(keygen("ecp8", "-t ecdsa -m PKCS8 -N ''"));
}

static void
test_sshkey_refuses_rsa_with_ed25519_hint(void **state)
{
	(void)state;
	/* Every container RSA keys come in: OpenSSH, PEM, PKCS#8. */
	expect_key_refused(keygen("rsa", "-t rsa -b 2048 -N ''"),
	    "temporary_key_pair_type = \"ed25519\"");
	expect_key_refused(keygen("rsapem", "-t rsa -b 2048 -m PEM -N ''"),
	    "RSA keys cannot be used");
	expect_key_refused(keygen("rsap8", "-t rsa -b 2048 -m PKCS8 -N ''"),
	    "ssh-keygen -t ed25519");
}

static void
test_sshkey_refuses_passphrase_keys(void **state)
{
	(void)state;
	expect_key_refused(
	    keygen("edpw", "-t ed25519 -N secret-pass"), "passphrase");
	expect_key_refused(
	    keygen("ecpempw", "-t ecdsa -m PEM -N secret-pass"), "passphrase");
	expect_key_refused(
	    keygen("ecp8pw", "-t ecdsa -m PKCS8 -N secret-pass"), "passphrase");
}

static void
test_sshkey_refuses_public_key_and_garbage(void **state)
{
	struct buf b;
	char *pub = xasprintf("%s.pub", keygen("ed", "-t ed25519 -N ''"));

	(void)state;
	expect_key_refused(pub, "not an OpenSSH or PEM private key");
	free(pub);
	read_text(keygen("ed", "-t ed25519 -N ''"), &b);
	/* A NUL inside, and one byte too many, are both refused. */
	b.data[40] = '\0';
	assert_int_equal(sshkey_check(b.data, b.len, "k", NULL), -1);
	buf_release(&b);
	buf_init(&b, SSH_KEY_MAX_BYTES + 1);
	while (b.len <= SSH_KEY_MAX_BYTES)
		(void)buf_addc(&b, 'A');
	assert_int_equal(sshkey_check(b.data, b.len, "k", NULL), -1);
	assert_int_equal(sshkey_check("", 0, "k", NULL), -1);
	buf_release(&b);
}

static void
test_sshkey_refuses_truncated_key(void **state)
{
	struct sshkey_info ki;
	struct buf b, cut;
	const char *end;

	(void)state;
	read_text(keygen("ed", "-t ed25519 -N ''"), &b);
	/* Cut off the END line: no longer a key. */
	assert_int_equal(sshkey_inspect(b.data, b.len / 2, &ki), -1);
	/* Keep both markers but only the first line of the body. */
	end = strstr(b.data, "-----END");
	assert_non_null(end);
	buf_init(&cut, 4096);
	(void)buf_add(&cut, b.data, 36 + 20);
	(void)buf_adds(&cut, "\n");
	(void)buf_adds(&cut, end);
	assert_int_equal(sshkey_inspect(cut.data, cut.len, &ki), -1);
	buf_release(&cut);
	buf_release(&b);
}

static void
test_sshkey_names_key_types(void **state)
{
	struct sshkey_info ki;
	struct buf b;

	(void)state;
	read_text(keygen("ed", "-t ed25519 -N ''"), &b);
	assert_int_equal(sshkey_inspect(b.data, b.len, &ki), 0);
	assert_int_equal(ki.kind, SSHKEY_ED25519);
	assert_string_equal(ki.type, "ssh-ed25519");
	assert_false(ki.encrypted);
	buf_release(&b);
	read_text(keygen("ec", "-t ecdsa -b 256 -N ''"), &b);
	assert_int_equal(sshkey_inspect(b.data, b.len, &ki), 0);
	assert_int_equal(ki.kind, SSHKEY_ECDSA);
	assert_string_equal(ki.type, "ecdsa-sha2-nistp256");
	buf_release(&b);
}

/* ------------------------------------------------------------ blobs */

/* Decodes the base64 blob of a .pub file into out (32 KiB max). */
static size_t
pub_blob(const char *pubpath, unsigned char *out, size_t max)
{
	struct buf b;
	const char *sp, *sp2;
	size_t len = 0;

	read_text(pubpath, &b);
	sp = strchr(b.data, ' ');
	assert_non_null(sp);
	sp2 = strchr(sp + 1, ' ');
	assert_non_null(sp2);
	assert_int_equal(
	    sodium_base642bin(out, max, sp + 1, (size_t)(sp2 - sp - 1), NULL,
	        &len, NULL, sodium_base64_VARIANT_ORIGINAL),
	    0);
	buf_release(&b);
	return len;
}

static void
test_sshkey_blob_kind_reads_agent_style_blobs(void **state)
{
	unsigned char blob[4096];
	char *pub;
	size_t n;

	(void)state;
	pub = xasprintf("%s.pub", keygen("rsa", "-t rsa -b 2048 -N ''"));
	n = pub_blob(pub, blob, sizeof(blob));
	assert_int_equal(sshkey_blob_kind(blob, n), SSHKEY_RSA);
	free(pub);
	pub = xasprintf("%s.pub", keygen("ed", "-t ed25519 -N ''"));
	n = pub_blob(pub, blob, sizeof(blob));
	assert_int_equal(sshkey_blob_kind(blob, n), SSHKEY_ED25519);
	assert_int_equal(sshkey_blob_kind(blob, 3), SSHKEY_UNKNOWN);
	assert_int_equal(sshkey_blob_kind(blob, 10), SSHKEY_UNKNOWN);
	assert_int_equal(sshkey_blob_kind(NULL, 0), SSHKEY_UNKNOWN);
	free(pub);
}

/* ------------------------------------------------------------ fingerprints */

static void
test_sshkey_fingerprint_matches_ssh_keygen(void **state)
{
	unsigned char blob[4096], digest[32];
	char *pub, *cmd, line[512];
	struct buf fp;
	size_t n;
	FILE *p;

	(void)state;
	pub = xasprintf("%s.pub", keygen("ed", "-t ed25519 -N ''"));
	n = pub_blob(pub, blob, sizeof(blob));
	crypto_hash_sha256(digest, blob, n);
	buf_init(&fp, 128);
	assert_int_equal(sshkey_fingerprint(digest, 32, &fp), 0);
	cmd = xasprintf("ssh-keygen -l -E sha256 -f %s | cut -d' ' -f2", pub);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof(line), p));
	pclose(p);
	line[strcspn(line, "\n")] = '\0';
	assert_string_equal(fp.data, line);
	assert_int_equal(fp.len, 7 + 43); /* no '=' padding */
	buf_release(&fp);
	free(cmd);
	free(pub);
}

static void
test_sshkey_fingerprint_of_zero_digest(void **state)
{
	unsigned char zero[32] = { 0 };
	struct buf fp;

	(void)state;
	buf_init(&fp, 128);
	assert_int_equal(sshkey_fingerprint(zero, 32, &fp), 0);
	assert_string_equal(
	    fp.data, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	buf_reset(&fp);
	assert_int_equal(sshkey_fingerprint(zero, 31, &fp), -1);
	buf_release(&fp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ssh_target_accepts_url_and_short_forms),
		cmocka_unit_test(test_ssh_target_accepts_bracketed_ipv6),
		cmocka_unit_test(test_ssh_target_rejects_missing_parts),
		cmocka_unit_test(test_ssh_target_rejects_bad_ports),
		cmocka_unit_test(
		    test_ssh_target_rejects_unbracketed_ipv6_and_junk),
		cmocka_unit_test(test_sshkey_accepts_ed25519_and_ecdsa),
		cmocka_unit_test(test_sshkey_refuses_rsa_with_ed25519_hint),
		cmocka_unit_test(test_sshkey_refuses_passphrase_keys),
		cmocka_unit_test(test_sshkey_refuses_public_key_and_garbage),
		cmocka_unit_test(test_sshkey_refuses_truncated_key),
		cmocka_unit_test(test_sshkey_names_key_types),
		cmocka_unit_test(test_sshkey_blob_kind_reads_agent_style_blobs),
		cmocka_unit_test(test_sshkey_fingerprint_matches_ssh_keygen),
		cmocka_unit_test(test_sshkey_fingerprint_of_zero_digest),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
