/*
 * test_restore_test.c: the `restore_test` kind's load-time checks. The
 * step loads when its fields are what steps/restore_test.c documents and
 * is refused with "file:line:col: message" at the offending node when
 * not; values that reach initdb's command line are plain words.
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

#define STEP "stagehand: 1\nstage: t\nsteps:\n  - name: r\n    restore_test: "
#define STEP_KIND "restore_test"

#include "stepcase.h"

static void
test_restore_test_loads(void **state)
{
	(void)state;
	expect_ok("{dir: /var/backups/b1}",
	    "restore_test /var/backups/b1 with /usr/lib/postgresql/bin "
	    "(pg_restore --jobs 2)");
	expect_ok("{dir: /b, bin_dir: /opt/pg16/bin, lib_dir: /opt/pg16/lib, "
	          "jobs: 64, user: postgres, username: supabase_admin, "
	          "locale: C.UTF-8, encoding: UTF8, workdir: /var/tmp/rt, "
	          "port: 1024}",
	    "restore_test /b with /opt/pg16/bin (pg_restore --jobs 64)");
}

static void
test_restore_test_refused(void **state)
{
	(void)state;
	expect_err("{jobs: 2}", "mem.yml:5:19: missing required key 'dir'");
	expect_err("{dir: b1}", "mem.yml:5:25:");
	expect_err("{dir: /b, jobs: 0}", "mem.yml:5:35: jobs must be 1-64");
	expect_err("{dir: /b, jobs: 65}", "mem.yml:5:35:");
	expect_err("{dir: /b, port: 80}", "mem.yml:5:35: port must be");
	expect_err("{dir: /b, bin_dir: bin}", "mem.yml:5:38:");
	expect_err("{dir: /b, locale: \"C; rm -rf /\"}",
	    "locale: letters, digits and _ . - @ only");
	expect_err("{dir: /b, username: -x}", "username: letters, digits");
	expect_err("{dir: /b, workdir: \"/tmp/a b\"}", "workdir: at most 64");
	expect_err(
	    "{dir: /b, workdir: /tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}",
	    "workdir: at most 64");
	expect_err("{dir: /b, keep: true}", "mem.yml:5:29: unknown key 'keep'");
}

static void
test_restore_test_live(void **state)
{
	(void)state;
	expect_ok("{dir: /b, live: true}",
	    "restore_test /b against the live server on "
	    "/var/run/postgresql:5432");
	expect_ok("{dir: /b, live: true, socket_dir: /run/pg, port: 5433}",
	    "restore_test /b against the live server on /run/pg:5433");
	expect_ok("{dir: /b, live: yes, port: 80}",
	    "restore_test /b against the live server on "
	    "/var/run/postgresql:80");
	expect_err("{dir: /b, socket_dir: /run/pg}",
	    "mem.yml:5:41: socket_dir is for live: true only");
	expect_err("{dir: /b, live: true, socket_dir: pg}", "mem.yml:5:53:");
	expect_err("{dir: /b, live: maybe}", "mem.yml:5:35:");
	expect_err("{dir: /b, live: true, port: 0}", "port must be 1-65535");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restore_test_loads),
		cmocka_unit_test(test_restore_test_refused),
		cmocka_unit_test(test_restore_test_live),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
