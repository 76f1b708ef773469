/*
 * test_step_upload.c: the `upload` kind's load-time checks of sha256 and
 * creates. sha256 is the form sha256sum prints (64 lowercase hex digits),
 * is refused anywhere else at its own position, and only with a single
 * file or content; creates is an absolute path. The offline description
 * (`plan --offline`) shows both.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/kind.h"
#include "model/manifest.h"
#include "steps/registry.h"
#include "steps/stepsh.h"

#define STEP "stagehand: 1\nstage: t\nsteps:\n  - name: u\n    upload: "
#define STEP_KIND "upload"
#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

#include "stepcase.h"

static void
test_sha256_hex_takes_only_what_sha256sum_prints(void **state)
{
	static const char nul[] = "0123456789abcdef0123456789abcdef"
	                          "0123456789abcdef0123456789abcde\0";

	(void)state;
	assert_true(stepsh_sha256_hex_ok(HEX, 64));
	assert_false(stepsh_sha256_hex_ok(HEX, 63));
	assert_false(stepsh_sha256_hex_ok(HEX "0", 65));
	assert_false(stepsh_sha256_hex_ok("", 0));
	assert_false(stepsh_sha256_hex_ok(
	    "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	    64));
	assert_false(stepsh_sha256_hex_ok(
	    "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	    64));
	assert_false(stepsh_sha256_hex_ok(
	    " 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	    64));
	assert_false(stepsh_sha256_hex_ok(nul, 64));
}

static void
test_upload_accepts_sha256_and_creates(void **state)
{
	char path[] = "/tmp/test_step_upload.XXXXXX";
	int fd = mkstemp(path);
	char *body, *want;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	expect_ok("{content: hi, dest: /x, sha256: " HEX "}",
	    "upload (content, 2 bytes) -> /x (sha256 0123456789ab...)");
	expect_ok("{content: hi, dest: /x, creates: /usr/bin/nix-store}",
	    "upload (content, 2 bytes) -> /x (creates /usr/bin/nix-store)");
	body = xasprintf("{src: %s, dest: /x, mode: \"0600\", sha256: " HEX
	                 ", creates: /y}",
	    path);
	want = xasprintf(
	    "upload %s -> /x (0600) (sha256 0123456789ab...) (creates /y)",
	    path);
	expect_ok(body, want);
	free(want);
	free(body);
	unlink(path);
}

static void
test_upload_rejects_a_malformed_sha256_at_its_value(void **state)
{
	(void)state;
	expect_err("{content: hi, dest: /x, sha256: abc}",
	    "mem.yml:5:45: sha256 must be 64 lowercase hex digits, as "
	    "sha256sum prints them, got 'abc'");
	expect_err("{content: hi, dest: /x, sha256: "
	           "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789"
	           "abcdef}",
	    "mem.yml:5:45: sha256 must be 64 lowercase hex digits");
	expect_err("{content: hi, dest: /x, sha256: \"" HEX "  file\"}",
	    "mem.yml:5:45: sha256 must be 64 lowercase hex digits");
	expect_err(
	    "{content: hi, dest: /x, sha256: [" HEX "]}", "mem.yml:5:45:");
}

static void
test_upload_rejects_sha256_with_a_directory_src(void **state)
{
	char dir[] = "/tmp/test_step_upload.XXXXXX";
	char *body, *want;

	(void)state;
	assert_non_null(mkdtemp(dir));
	body = xasprintf("{src: %s, dest: /x, sha256: " HEX "}", dir);
	want = xasprintf("mem.yml:5:%zu: sha256 is for a single file or "
	                 "content; src %s is a directory",
	    strlen("    upload: {src: , dest: /x, sha256: ") + strlen(dir) + 1,
	    dir);
	expect_err(body, want);
	free(want);
	free(body);
	rmdir(dir);
}

static void
test_upload_rejects_a_relative_creates(void **state)
{
	(void)state;
	expect_err("{content: hi, dest: /x, creates: nix-store}",
	    "mem.yml:5:46: creates: must be an absolute path: 'nix-store'");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    test_sha256_hex_takes_only_what_sha256sum_prints),
		cmocka_unit_test(test_upload_accepts_sha256_and_creates),
		cmocka_unit_test(
		    test_upload_rejects_a_malformed_sha256_at_its_value),
		cmocka_unit_test(
		    test_upload_rejects_sha256_with_a_directory_src),
		cmocka_unit_test(test_upload_rejects_a_relative_creates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
