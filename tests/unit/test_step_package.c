/*
 * test_step_package.c: the `package` kind's load-time checks. A manifest
 * with a package step loads when its fields are what steps/package.c
 * documents, and is refused with "file:line:col: message" at the
 * offending node when they are not: Debian's package name rules, exact
 * versions, an architecture qualifier, duplicates, and the fields that
 * belong to one state only. The offline description (`plan --offline`)
 * says what the step would do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/kind.h"
#include "model/manifest.h"
#include "steps/registry.h"

#define STEP "stagehand: 1\nstage: t\nsteps:\n  - name: p\n    package: "
#define STEP_KIND "package"

#include "stepcase.h"

static void
test_package_accepts_the_documented_forms(void **state)
{
	(void)state;
	expect_ok("{names: tree}", "package tree present");
	expect_ok("{names: [tree, jq, g++, libstdc++6, python3.11]}",
	    "package tree jq g++ libstdc++6 python3.11 present");
	expect_ok("{names: [\"tree=2.1.0-1\", \"jq=1:1.6-2.1+deb12u1~bpo\"]}",
	    "package tree=2.1.0-1 jq=1:1.6-2.1+deb12u1~bpo present");
	expect_ok("{names: [\"libc6:amd64=2.36-9\", \"zlib1g:i386\"]}",
	    "package libc6:amd64=2.36-9 zlib1g:i386 present");
	expect_ok("{names: [tree], state: present, hold: true, "
	          "install_recommends: true, update_cache_age: 0}",
	    "package tree present (with recommends, hold)");
	expect_ok(
	    "{names: tree, hold: false}", "package tree present (unhold)");
	expect_ok("{names: tree, hold: ~}", "package tree present");
	expect_ok("{names: tree, state: absent}", "package tree absent");
	expect_ok("{names: tree, state: absent, purge: true, hold: false}",
	    "package tree absent (purge, unhold)");
	expect_ok("{names: tree, update_cache_age: 2147483647}",
	    "package tree present");
}

static void
test_package_rejects_bad_names(void **state)
{
	(void)state;
	expect_err("{names: Tree}",
	    "mem.yml:5:22: names: 'Tree' is not a Debian package name");
	expect_err("{names: [tree, x]}",
	    "mem.yml:5:29: names: 'x' is not a Debian package name");
	expect_err("{names: [-o, tree]}", "names: '-o' is not a Debian");
	expect_err("{names: [.tree]}", "names: '.tree' is not a Debian");
	expect_err("{names: [\"tree;rm\"]}", "'tree;rm' is not a Debian");
	expect_err("{names: [\"tr*e\"]}", "'tr*e' is not a Debian");
	expect_err("{names: \"tree jq\"}",
	    "mem.yml:5:22: names: 'tree jq': one package per item");
	expect_err("{names: [tree, jq, tree]}",
	    "mem.yml:5:33: names: 'tree' is listed twice");
	expect_err("{names: [tree, \"tree=2.1.0-1\"]}",
	    "names: 'tree' is listed twice");
	expect_err("{names: [\"tree:AMD64\"]}",
	    "names: 'tree:AMD64': bad architecture");
	expect_err("{names: [\"tree:\"]}", "names: 'tree:': bad architecture");
	expect_err("{names: []}", "mem.yml:5:22: names: no package given");
	expect_err("{names: }", "names: no package given");
	expect_err("{names: [[tree]]}", "'names' items must be scalars");
	expect_err("{names: [\"tree\\0x\"]}",
	    "mem.yml:5:23: scalar contains a NUL character");
	expect_err(
	    "{state: present}", "mem.yml:5:14: missing required key 'names'");
}

static void
test_package_rejects_bad_versions(void **state)
{
	(void)state;
	expect_err("{names: [\"tree=\"]}", "'' is not an exact Debian version");
	expect_err("{names: [\"tree=abc\"]}",
	    "names: 'tree=abc': 'abc' is not an exact Debian version");
	expect_err("{names: [\"tree=2.*\"]}", "'2.*' is not an exact Debian");
	expect_err("{names: [\"tree=1:\"]}", "'1:' is not an exact Debian");
	expect_err("{names: [\"tree=x:1.0\"]}", "'x:1.0' is not an exact");
	expect_err("{names: [\"tree=1.0:2\"]}", "'1.0:2' is not an exact");
	expect_err("{names: [\"tree=1.0-\"]}", "'1.0-' is not an exact");
	expect_err("{names: [\"tree=1.0 jq\"]}", "one package per item");
}

static void
test_package_rejects_fields_of_the_other_state(void **state)
{
	(void)state;
	expect_err("{names: tree, state: removed}",
	    "mem.yml:5:35: state must be present or absent, not 'removed'");
	expect_err("{names: tree, colour: red}",
	    "mem.yml:5:28: unknown key 'colour' (expected one of: names, "
	    "state, purge, install_recommends, hold, update_cache_age)");
	expect_err("{names: tree, purge: true}",
	    "mem.yml:5:35: purge is only for state: absent");
	expect_err("{names: \"tree=2.1.0-1\", state: absent}",
	    "names: 'tree=2.1.0-1': a version has no meaning with state: "
	    "absent");
	expect_err("{names: tree, state: absent, hold: true}",
	    "hold: true has no meaning with state: absent");
	expect_err("{names: tree, state: absent, install_recommends: false}",
	    "mem.yml:5:43: install_recommends has no meaning with state: "
	    "absent");
	expect_err("{names: tree, state: absent, update_cache_age: 60}",
	    "update_cache_age has no meaning with state: absent");
	expect_err("{names: tree, hold: maybe}",
	    "'hold' must be true or false, got 'maybe'");
	expect_err("{names: tree, update_cache_age: -1}",
	    "'update_cache_age' must be a whole number from 0 to 2147483647");
	expect_err("{names: tree, update_cache_age: 2147483648}",
	    "'update_cache_age' must be a whole number");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_package_accepts_the_documented_forms),
		cmocka_unit_test(test_package_rejects_bad_names),
		cmocka_unit_test(test_package_rejects_bad_versions),
		cmocka_unit_test(
		    test_package_rejects_fields_of_the_other_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
