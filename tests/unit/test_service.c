/*
 * test_service.c: the `service` step kind at load time: the fields it
 * takes, the unit name it settles on, src read when the manifest is
 * loaded, `ready` warned about as shell text, and every bad input
 * rejected with "file:line:col: message" before anything runs.
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

#define HDR "stagehand: 1\nstage: t\nsteps:\n  - name: s\n    service:\n"

static struct manifest *
load_ok(const char *yaml)
{
	struct manifest *m = NULL;
	struct errbuf err;

	err_clear(&err);
	if (manifest_load_mem("mem.yml", yaml, strlen(yaml), step_kinds(), NULL,
	        &m, &err) < 0)
		fail_msg("unexpected error: %s", err.msg);
	assert_non_null(m);
	return m;
}

static void
expect_err(const char *yaml, const char *want)
{
	struct manifest *m = NULL;
	struct errbuf err;

	err_clear(&err);
	if (manifest_load_mem("mem.yml", yaml, strlen(yaml), step_kinds(), NULL,
	        &m, &err) == 0) {
		manifest_free(m);
		fail_msg("loaded, expected error: %s", want);
	}
	if (strstr(err.msg, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err.msg, want);
	assert_int_equal(err.code, SH_ERR_MANIFEST);
}

/* The plan --offline line of the manifest's only step. */
static void
expect_describe(const char *yaml, const char *want)
{
	struct manifest *m = load_ok(yaml);
	struct buf out;

	assert_int_equal(m->nsteps, 1);
	buf_init(&out, 4096);
	m->steps[0].kind->describe(&m->steps[0], &out);
	assert_string_equal(out.data, want);
	buf_release(&out);
	manifest_free(m);
}

static void
test_service_loads_the_documented_fields(void **state)
{
	(void)state;
	expect_describe(HDR "      name: postgresql\n      enabled: true\n"
	                    "      state: started\n      wait: 5\n"
	                    "      ready: pg_isready -q\n",
	    "service postgresql.service enabled started (ready check)");
	expect_describe(HDR "      name: web.socket\n      enabled: false\n"
	                    "      state: stopped\n",
	    "service web.socket disabled stopped");
	expect_describe(HDR "      name: a@1.service\n      state: restarted\n",
	    "service a@1.service restarted");
	expect_describe(HDR "      name: a\n      state: reloaded\n",
	    "service a.service reloaded");
	expect_describe(HDR "      name: 'mnt-a\\x2db.mount'\n"
	                    "      content: \"[Mount]\\n\"\n",
	    "service mnt-a\\x2db.mount unit file (content, 8 bytes)");
	/* An unknown suffix is part of the name, as systemctl reads it. */
	expect_describe(HDR "      name: pg.main\n      state: started\n",
	    "service pg.main.service started");
	/* A template takes a unit file only. */
	expect_describe(HDR "      name: 'x@.service'\n      content: a\n",
	    "service x@.service unit file (content, 1 bytes)");
}

static void
test_service_reads_src_at_load_time(void **state)
{
	char dir[] = "/tmp/stagehand-test-service.XXXXXX";
	char *unit, *man, *cmd;
	struct manifest *m;
	struct errbuf err;
	struct buf out;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	unit = xasprintf("%s/t.service", dir);
	man = xasprintf("%s/m.yml", dir);
	f = fopen(unit, "w");
	assert_non_null(f);
	assert_true(fputs("[Service]\nExecStart=/bin/true\n", f) >= 0);
	assert_int_equal(fclose(f), 0);
	f = fopen(man, "w");
	assert_non_null(f);
	assert_true(fputs("stagehand: 1\nstage: t\nsteps:\n  - name: s\n"
	                  "    service: {name: t, src: t.service}\n",
	                f) >= 0);
	assert_int_equal(fclose(f), 0);
	m = NULL;
	err_clear(&err);
	if (manifest_load(man, step_kinds(), NULL, &m, &err) < 0)
		fail_msg("unexpected error: %s", err.msg);
	buf_init(&out, 4096);
	m->steps[0].kind->describe(&m->steps[0], &out);
	assert_string_equal(out.data, "service t.service unit file from "
	                              "t.service");
	buf_release(&out);
	manifest_free(m);
	/* Read at load: the file may go away before the run. */
	assert_int_equal(unlink(unit), 0);
	m = NULL;
	assert_int_equal(manifest_load(man, step_kinds(), NULL, &m, &err), -1);
	assert_non_null(strstr(err.msg, "m.yml:5:29: src: "));
	assert_non_null(strstr(err.msg, "t.service: No such file"));
	cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(man);
	free(unit);
}

static void
test_service_warns_raw_variable_in_ready(void **state)
{
	struct manifest *m;

	(void)state;
	m = load_ok("stagehand: 1\nstage: t\nvars: {h: /run/pg}\nsteps:\n"
	            "  - name: s\n    service:\n      name: pg\n"
	            "      state: started\n      ready: pg_isready -h ${h}\n"
	            "      content: \"# ${h}\\n\"\n");
	assert_int_equal(m->warnings.n, 1);
	assert_non_null(
	    strstr(m->warnings.v[0], "mem.yml:9:28: warning: '${h}'"));
	manifest_free(m);
}

static void
test_service_rejects_bad_input(void **state)
{
	(void)state;
	expect_err(HDR "      name: a\n      state: started\n      nmae: b\n",
	    "mem.yml:8:7: unknown key 'nmae' (expected one of: name, "
	    "content, src, enabled, state, wait, ready)");
	expect_err(HDR "      name: a\n      state: running\n",
	    "mem.yml:7:14: state: expected started, stopped, restarted or "
	    "reloaded, got 'running'");
	expect_err(HDR "      name: a\n      content: x\n      src: a\n",
	    "mem.yml:8:12: service takes content or src, not both");
	expect_err(HDR "      state: started\n",
	    "mem.yml:6:7: missing required key 'name'");
	expect_err(HDR "      name: etc/x.service\n      state: started\n",
	    "mem.yml:6:13: name: not a systemd unit name: 'etc/x.service'");
	expect_err(HDR "      name: ../x\n      state: started\n",
	    "name: not a systemd unit name: '../x'");
	expect_err(HDR "      name: -x\n      state: started\n",
	    "name: not a systemd unit name: '-x'");
	expect_err(HDR "      name: 'a b'\n      state: started\n",
	    "name: not a systemd unit name: 'a b'");
	expect_err(HDR "      name: ''\n      state: started\n",
	    "name: not a systemd unit name: ''");
	expect_err(HDR "      name: 'a@b@c'\n      state: started\n",
	    "name: more than one '@' in 'a@b@c.service'");
	expect_err(HDR "      name: a\n",
	    "mem.yml:6:7: service needs at least one of content, src, "
	    "enabled and state");
	expect_err(HDR "      name: a\n      state: stopped\n      wait: 5\n",
	    "mem.yml:8:13: wait is only for state started, restarted or "
	    "reloaded");
	expect_err(HDR
	    "      name: a\n      enabled: true\n      ready: 'true'\n",
	    "mem.yml:8:14: ready is only for state started, restarted or "
	    "reloaded");
	expect_err(HDR "      name: a\n      state: started\n      ready: ''\n",
	    "mem.yml:8:14: ready: must be a non-empty command");
	expect_err(HDR
	    "      name: a\n      state: started\n      wait: 3601\n",
	    "mem.yml:8:13: 'wait' must be a whole number from 0 to 3600");
	expect_err(HDR "      name: a\n      enabled: maybe\n",
	    "mem.yml:7:16: 'enabled' must be");
	expect_err(HDR "      name: 'x@.service'\n      enabled: true\n"
	               "      content: a\n",
	    "mem.yml:6:13: x@.service is a template: it takes content or src "
	    "only");
	expect_err(HDR "      name: a\n      src: /nonexistent/t.service\n",
	    "mem.yml:7:12: src: /nonexistent/t.service: No such file");
	expect_err(HDR "      name: a\n      src: /etc\n",
	    "src: /etc: not a regular file");
	expect_err(HDR "      [name, a]\n",
	    "mem.yml:6:7: service must be a map, not a sequence");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_loads_the_documented_fields),
		cmocka_unit_test(test_service_reads_src_at_load_time),
		cmocka_unit_test(test_service_warns_raw_variable_in_ready),
		cmocka_unit_test(test_service_rejects_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
