/*
 * test_report.c: report_write() and report_show() on synthetic runs.
 *
 * Each scenario builds a manifest and step results by hand (no manifest
 * file, no target), writes a report dir and checks it. With TEST_REPORT_OUT
 * set, the dirs are written there and kept, one per scenario, so that
 * tests/t0410-report-schema.sh can validate them with python3 jsonschema,
 * parse junit.xml and source stagehand.env.
 */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/kind.h"
#include "report/report.h"
#include "util/limits.h"

/* Serialisation needs only the kind's name. */
static const struct step_kind fake_shell = { .name = "shell" };
static const struct step_kind fake_user = { .name = "user" };

#define MAX_STEPS 6

struct scenario {
	struct manifest m;
	struct step steps[MAX_STEPS];
	struct step_result res[MAX_STEPS];
	struct node nodes[MAX_STEPS];
	struct target_facts facts;
	struct errbuf run_err;
	struct redact rd;
	struct report_run run;
};

/* Secrets the hostile scenario hides in every field it can reach. */
static const char *const secrets[] = {
	"pa\"ss'w\\rd\n&<x>", "tok-123",
	"tok-123-long",    /* the first is its prefix */
	"k3y-$(id)`id`-x", /* not "`id`": a 4-byte tail is masked anywhere */
};

static const char hostile_stage[] = "st'age \"$(touch pwned)\" `id` $HOME\n"
                                    "line2 \\ & < > \x01 \xff end";

static char *out_root; /* TEST_REPORT_OUT, or a temp dir removed at exit */
static bool keep_out;

/* ======================================================== building */

static struct scenario *
sc_new(const char *stage, size_t nsteps)
{
	struct scenario *s = xcalloc(1, sizeof(*s));

	assert_true(nsteps <= MAX_STEPS);
	s->m.path = xstrdup("stages/test.yml");
	s->m.stage = xstrdup(stage);
	s->m.description = xstrdup("a synthetic stage");
	s->m.version = 1;
	s->m.steps = s->steps;
	s->m.nsteps = nsteps;
	redact_init(&s->rd);
	err_clear(&s->run_err);
	for (size_t i = 0; i < nsteps; i++) {
		step_result_init(&s->res[i]);
		s->steps[i].kind = &fake_shell;
		s->steps[i].index = i;
		s->steps[i].enabled = true;
		s->nodes[i].type = NODE_MAP;
		s->nodes[i].file = "stages/test.yml";
		s->nodes[i].line = (unsigned)(10 * i + 7);
		s->nodes[i].col = 5;
		s->steps[i].node = &s->nodes[i];
	}
	s->run = (struct report_run){
		.version = "0.1.0-test",
		.command = "run",
		.manifest = &s->m,
		.results = s->res,
		.started_at = 1795000000,
		.finished_at = 1795000012,
		.duration_ms = 12345,
		.run_err = &s->run_err,
		.redact = &s->rd,
	};
	return s;
}

static void
sc_target(struct scenario *s)
{
	s->facts.hostname = xstrdup("box1");
	s->facts.system = xstrdup("x86_64-linux");
	s->facts.boot_id = xstrdup("8b3c1e2a-0d3f-4c55-9a0e-3f1b2c4d5e6f");
	s->run.target_user = "builder";
	s->run.target_host = "10.7.0.2";
	s->run.target_port = 22;
	s->run.facts = &s->facts;
	s->run.host_key_fingerprint = "SHA256:abcdefghijklmnopqrstuvwxyz012345";
	s->run.host_key_type = "ssh-ed25519";
	s->run.host_key_accepted = true;
}

/* A step that ran: status, timing and one attempt. */
static void
sc_step(struct scenario *s, size_t i, const char *name, enum step_status st,
    uint64_t ms)
{
	s->steps[i].name = name;
	s->res[i].status = st;
	s->res[i].changed = st == STEP_CHANGED || st == STEP_WOULD_CHANGE;
	if (st == STEP_SKIPPED || st == STEP_NOT_RUN || st == STEP_PENDING)
		return;
	s->res[i].attempts = 1;
	s->res[i].duration_ms = ms;
	s->res[i].started_at = 1795000001 + (int64_t)i;
}

static void
sc_free(struct scenario *s)
{
	for (size_t i = 0; i < s->m.nsteps; i++) {
		step_result_free(&s->res[i]);
		strlist_free(&s->steps[i].tags);
		free(s->steps[i].become);
	}
	free(s->facts.hostname);
	free(s->facts.system);
	free(s->facts.boot_id);
	free(s->m.path);
	free(s->m.stage);
	free(s->m.description);
	redact_free(&s->rd);
	free(s);
}

/* ---- the scenarios ---- */

/* A bastion the run got through, and one it never reached. */
static const struct report_jump hop_seen = { "ec2-user", "bastion.example", 22,
	"SHA256:bastionbastionbastionbastion0123", "ssh-ed25519", false };
static const struct report_jump hop_unseen = { "ec2-user", "2001:db8::5", 2222,
	NULL, NULL, false };

static struct scenario *
sc_passed(void)
{
	struct scenario *s = sc_new("stage1", 3);

	sc_target(s);
	s->run.jumps = &hop_seen;
	s->run.njumps = 1;
	sc_step(s, 0, "Base packages", STEP_OK, 104);
	strlist_push(&s->steps[0].tags, "install");
	s->steps[0].become = xstrdup("root");
	s->res[0].exit_status = 0;
	sc_step(s, 1, "Write motd", STEP_CHANGED, 1234);
	step_result_change(&s->res[1], "/etc/motd: content changed");
	step_result_change(&s->res[1], "/etc/motd: mode 0600 -> 0644");
	step_result_detail(&s->res[1], "path", "/etc/motd");
	step_result_output(&s->res[1], "done\n", 5);
	s->res[1].exit_status = 0;
	sc_step(s, 2, "Only on arm", STEP_SKIPPED, 0);
	s->res[2].skip_reason = xstrdup("when: false");
	s->run.status = "passed";
	return s;
}

static struct scenario *
sc_failed_with_tests(void)
{
	struct scenario *s = sc_new("stage2", 3);
	char name[32];

	sc_target(s);
	sc_step(s, 0, "Permissions", STEP_OK, 2500);
	s->steps[0].kind = &fake_user;
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "row %d", i + 1);
		step_result_test(&s->res[0], name, true, false, NULL);
	}
	sc_step(s, 1, "pgTAP suite", STEP_FAILED, 900);
	step_result_test(&s->res[1], "has table users", true, false, NULL);
	step_result_test(
	    &s->res[1], "owner is postgres", false, false, "got 'root'");
	step_result_test(
	    &s->res[1], "extension vector", false, true, "not installed");
	step_result_output(&s->res[1], "not ok 2 - owner\n", 17);
	s->res[1].exit_status = 3;
	s->res[1].attempts = 2;
	err_set(&s->res[1].err, SH_ERR_REMOTE,
	    "remote command failed: "
	    "exit 3\nstderr: owner is root");
	sc_step(s, 2, "Cleanup", STEP_NOT_RUN, 0);
	s->run.exit_code = 1;
	s->run.status = "failed";
	return s;
}

static struct scenario *
sc_interrupted(void)
{
	struct scenario *s = sc_new("stage2", 3);

	sc_target(s);
	sc_step(s, 0, "Copy closure", STEP_CHANGED, 4000);
	sc_step(s, 1, "Long migration", STEP_INTERRUPTED, 7000);
	err_set(&s->res[1].err, SH_ERR_INTERRUPTED, "interrupted by SIGINT");
	sc_step(s, 2, "Verify", STEP_NOT_RUN, 0);
	s->run.exit_code = 1;
	s->run.status = NULL; /* derived: interrupted */
	return s;
}

static struct scenario *
sc_unreachable(void)
{
	struct scenario *s = sc_new("stage1", 2);

	s->run.target_user = "builder";
	s->run.target_host = "10.99.0.2";
	s->run.target_port = 2222;
	s->run.jumps = &hop_unseen;
	s->run.njumps = 1;
	sc_step(s, 0, "Base packages", STEP_PENDING, 0);
	sc_step(s, 1, "Write motd", STEP_NOT_RUN, 0);
	err_set(&s->run_err, SH_ERR_UNREACHABLE,
	    "ssh://builder@10.99.0.2:"
	    "2222: connect: Connection refused");
	s->run.exit_code = EXIT_UNREACHABLE;
	s->run.status = NULL; /* derived: failed */
	return s;
}

static struct scenario *
sc_plan(void)
{
	struct scenario *s = sc_new("stage1", 2);

	s->run.command = "plan";
	sc_step(s, 0, "Base packages", STEP_OK, 50);
	sc_step(s, 1, "Write motd", STEP_WOULD_CHANGE, 60);
	step_result_change(&s->res[1], "/etc/motd: would change content");
	s->run.status = "passed";
	return s;
}

static struct scenario *
sc_hostile(void)
{
	struct scenario *s = sc_new(hostile_stage, 3);
	char out[256];
	int n;

	sc_target(s);
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		redact_add(&s->rd, secrets[i]);
	free(s->facts.system);
	s->facts.system = xstrdup("x86_64-linux'\"$(id)\n");
	sc_step(s, 0, "Use tok-123 and tok-123-long", STEP_CHANGED, 10);
	step_result_change(&s->res[0], "set password to %s", secrets[0]);
	step_result_detail(&s->res[0], "token", "%s", secrets[1]);
	step_result_detail(&s->res[0], secrets[3], "key named by a secret");
	n = snprintf(out, sizeof(out), "echo %s\n\x1b[31mred\x1b[0m \xff\xfe",
	    secrets[0]);
	step_result_output(&s->res[0], out, (size_t)n);
	step_result_output(&s->res[0], " \0 nul", 6);
	sc_step(s, 1, "Fail with k3y-$(id)`id`-x", STEP_FAILED, 20);
	err_set(&s->res[1].err, SH_ERR_STEP, "bad: %s & %s <%s>", secrets[0],
	    secrets[2], secrets[3]);
	step_result_test(&s->res[1], secrets[1], false, false, secrets[0]);
	s->steps[1].become = xstrdup("pa\"ss'w\\rd\n&<x>");
	strlist_push(&s->steps[1].tags, "tok-123");
	sc_step(s, 2, "Never \"ran\" ]]> </testcase>", STEP_NOT_RUN, 0);
	s->run.exit_code = 1;
	s->run.status = "failed";
	return s;
}

/* ======================================================== helpers */

static char *
write_scenario(const char *name, struct scenario *s)
{
	char *dir = xasprintf("%s/%s", out_root, name);
	struct errbuf err;

	err_clear(&err);
	if (report_write(dir, &s->run, &err) < 0)
		fail_msg("report_write: %s", err.msg);
	return dir;
}

static char *
slurp(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	struct buf b;
	struct errbuf err;
	char *text;

	if (file_read(path, REPORT_MAX_BYTES, &b, &err) < 0)
		fail_msg("%s", err.msg);
	text = buf_detach(&b, NULL);

	buf_release(&b); /* detach left it re-initialised */
	free(path);
	return text;
}

/* Runs report_show; returns its code and the printed text in *text. */
static int
show(const char *dir, bool json, char **text, struct errbuf *err)
{
	size_t len;
	FILE *f = open_memstream(text, &len);
	int rc;

	assert_non_null(f);
	err_clear(err);
	rc = report_show(dir, f, json, err);
	fclose(f);
	return rc;
}

static void
assert_contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		fail_msg("expected to find [%s] in:\n%s", needle, hay);
}

static void
assert_lacks(const char *hay, const char *needle)
{
	if (strstr(hay, needle) != NULL)
		fail_msg("did not expect [%s] in:\n%s", needle, hay);
}

static void
assert_mode(const char *dir, const char *name, unsigned mode)
{
	char *path = xasprintf("%s/%s", dir, name);
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, mode);
	free(path);
}

/* ======================================================== tests */

static void
test_report_writes_three_files_with_modes(void **state)
{
	struct scenario *s = sc_passed();
	char *dir = write_scenario("passed", s);

	(void)state;
	assert_mode(dir, ".", 0700);
	assert_mode(dir, "results.json", 0600);
	assert_mode(dir, "junit.xml", 0600);
	assert_mode(dir, "stagehand.env", 0600);
	free(dir);
	sc_free(s);
}

static void
test_report_results_json_holds_the_run(void **state)
{
	struct scenario *s = sc_passed();
	char *dir = write_scenario("passed", s);
	char *j = slurp(dir, "results.json");

	(void)state;
	assert_contains(j, "\"schema\": 1,");
	assert_contains(j, "\"version\": \"0.1.0-test\"");
	assert_contains(j, "\"status\": \"passed\"");
	assert_contains(j, "\"started_at\": \"2026-11-18T");
	assert_contains(j, "\"source\": \"stages/test.yml:17:5\"");
	assert_contains(j, "\"changes\": [\n        \"/etc/motd: content "
	                   "changed\",");
	assert_contains(j, "\"skip_reason\": \"when: false\"");
	assert_contains(j, "\"accepted_new\": true");
	assert_contains(j, "\"jumps\": [\n      {\n        \"user\": "
	                   "\"ec2-user\",\n        \"host\": "
	                   "\"bastion.example\",\n        \"port\": 22,");
	assert_contains(j, "\"fingerprint\": "
	                   "\"SHA256:bastionbastionbastionbastion0123\"");
	assert_contains(j, "\"closure\": null");
	assert_contains(j, "\"tags\": [\n        \"install\"\n      ]");
	free(j);
	free(dir);
	sc_free(s);
}

static void
test_report_junit_has_a_case_per_step_and_embedded_test(void **state)
{
	struct scenario *s = sc_failed_with_tests();
	char *dir = write_scenario("failed-tests", s);
	char *x = slurp(dir, "junit.xml");

	(void)state;
	/* 3 steps + 12 + 3 embedded tests */
	assert_contains(x,
	    "<testsuites name=\"stagehand\" tests=\"18\" "
	    "failures=\"2\" errors=\"0\" skipped=\"2\" time=\"12.345\">");
	assert_contains(x, "<testcase classname=\"stage2\" name=\"02 pgTAP "
	                   "suite\" time=\"0.900\">");
	assert_contains(x,
	    "<failure message=\"remote command failed: exit "
	    "3&#10;stderr: owner is root\" type=\"remote command failed\">");
	assert_contains(x, "<testcase classname=\"stage2.pgTAP suite\" "
	                   "name=\"owner is postgres\"");
	assert_contains(x, "<failure message=\"got &apos;root&apos;\">");
	assert_contains(x, "<skipped message=\"not_run\"/>");
	free(x);
	free(dir);
	sc_free(s);
}

static void
test_report_junit_shows_unreachable_target_as_connect_error(void **state)
{
	struct scenario *s = sc_unreachable();
	char *dir = write_scenario("unreachable", s);
	char *x = slurp(dir, "junit.xml");
	char *j = slurp(dir, "results.json");

	(void)state;
	assert_contains(x,
	    "name=\"connect\" time=\"0.000\">\n      <error "
	    "message=\"ssh://builder@10.99.0.2:2222: connect: Connection "
	    "refused\" type=\"target unreachable\">");
	assert_contains(x, "tests=\"3\" failures=\"0\" errors=\"1\" "
	                   "skipped=\"2\"");
	assert_contains(j, "\"status\": \"failed\"");
	assert_contains(j, "\"exit_code\": 69");
	assert_contains(j, "\"code\": \"target unreachable\"");
	assert_contains(j, "\"host_key\": null");
	assert_contains(j, "\"host\": \"2001:db8::5\",\n        \"port\": "
	                   "2222,\n        \"host_key\": null");
	assert_contains(j, "\"not_run\": 2");
	free(j);
	free(x);
	free(dir);
	sc_free(s);
}

static void
test_report_status_is_interrupted_when_a_step_was(void **state)
{
	struct scenario *s = sc_interrupted();
	char *dir = write_scenario("interrupted", s);
	char *j = slurp(dir, "results.json");
	char *x = slurp(dir, "junit.xml");
	char *e = slurp(dir, "stagehand.env");

	(void)state;
	assert_contains(j, "\"status\": \"interrupted\"");
	assert_contains(x, "<error message=\"interrupted by SIGINT\" "
	                   "type=\"interrupted\">");
	assert_contains(e, "STAGEHAND_STATUS='interrupted'\n");
	assert_contains(e, "STAGEHAND_FAILED_STEP=''\n");
	free(e);
	free(x);
	free(j);
	free(dir);
	sc_free(s);
}

static void
test_report_env_quotes_every_value(void **state)
{
	struct scenario *s = sc_failed_with_tests();
	char *dir = write_scenario("failed-tests", s);
	char *e = slurp(dir, "stagehand.env");
	char *abs = realpath(dir, NULL);
	char *want = xasprintf("STAGEHAND_REPORT_DIR='%s'\n", abs);

	(void)state;
	assert_contains(e, "STAGEHAND_STATUS='failed'\n");
	assert_contains(e, "STAGEHAND_EXIT_CODE='1'\n");
	assert_contains(e, "STAGEHAND_STAGE='stage2'\n");
	assert_contains(e, "STAGEHAND_STEPS_TOTAL='3'\n");
	assert_contains(e, "STAGEHAND_STEPS_FAILED='1'\n");
	assert_contains(e, "STAGEHAND_FAILED_STEP='pgTAP suite'\n");
	assert_contains(e, "STAGEHAND_TARGET_SYSTEM='x86_64-linux'\n");
	assert_contains(e, "STAGEHAND_CLOSURE_ROOT=''\n");
	assert_contains(e, want);
	free(want);
	free(abs);
	free(e);
	free(dir);
	sc_free(s);
}

/* No secret, in any form a writer could produce, is left in any file. */
static void
test_report_files_hold_no_secret(void **state)
{
	static const char *const forms[] = {
		"pa\"ss",
		"ss'w",
		"w\\rd",
		"pa\\\"ss",
		"pa&quot;ss",
		"&lt;x&gt;",
		"tok-123",
		"k3y-$(id)",
		"'\\''w",
	};
	static const char *const files[] = { "results.json", "junit.xml",
		"stagehand.env" };
	struct scenario *s = sc_hostile();
	char *dir = write_scenario("hostile", s);

	(void)state;
	for (size_t f = 0; f < 3; f++) {
		char *text = slurp(dir, files[f]);

		assert_contains(text, "********");
		for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
			assert_lacks(text, forms[i]);
		free(text);
	}
	free(dir);
	sc_free(s);
}

static void
test_report_show_prints_the_recap_and_passes(void **state)
{
	struct scenario *s = sc_passed();
	char *dir = write_scenario("passed", s);
	struct errbuf err;
	char *text;

	(void)state;
	assert_int_equal(show(dir, false, &text, &err), 0);
	assert_contains(text, "stage1 on builder@10.7.0.2:22 x86_64-linux: "
	                      "passed in 12.3s\n");
	assert_contains(text, "  ok              0.1s  Base packages\n");
	assert_contains(text, "  changed         1.2s  Write motd\n");
	assert_contains(text, "  skipped            -  Only on arm "
	                      "(when: false)\n");
	assert_contains(text, "stage1: passed \xe2\x80\x94 1 ok, 1 changed, "
	                      "0 failed, 1 skipped (12.3s)\n");
	free(text);
	free(dir);
	sc_free(s);
}

static void
test_report_show_fails_and_names_the_failed_step(void **state)
{
	struct scenario *s = sc_failed_with_tests();
	char *dir = write_scenario("failed-tests", s);
	struct errbuf err;
	char *text;

	(void)state;
	assert_int_equal(show(dir, false, &text, &err), 1);
	assert_contains(text,
	    "  failed          0.9s  pgTAP suite\n"
	    "                        error: remote command failed: exit 3\n"
	    "                          stderr: owner is root\n"
	    "                        1/3 tests passed, 1 failed, 1 skipped\n"
	    "                          not ok: owner is postgres: got "
	    "'root'\n");
	assert_contains(text, "                        12/12 tests passed\n");
	assert_contains(text, "  not_run            -  Cleanup\n");
	assert_contains(text, "stage2: failed \xe2\x80\x94 1 ok, 0 changed, "
	                      "1 failed, 0 skipped, 1 not run (12.3s)\n");
	free(text);
	free(dir);
	sc_free(s);
}

static void
test_report_show_fails_on_interrupted_and_unreachable(void **state)
{
	struct scenario *a = sc_interrupted(), *b = sc_unreachable();
	char *da = write_scenario("interrupted", a);
	char *db = write_scenario("unreachable", b);
	struct errbuf err;
	char *text;

	(void)state;
	assert_int_equal(show(da, false, &text, &err), 1);
	assert_contains(text, "1 interrupted, 1 not run (12.3s)\n");
	free(text);
	assert_int_equal(show(db, false, &text, &err), 1);
	assert_contains(text,
	    "stage1 on builder@10.99.0.2:2222: failed in "
	    "12.3s\n  error: ssh://builder@10.99.0.2:2222: connect: "
	    "Connection refused\n");
	free(text);
	free(da);
	free(db);
	sc_free(a);
	sc_free(b);
}

static void
test_report_show_plan_passes_and_counts_would_change(void **state)
{
	struct scenario *s = sc_plan();
	char *dir = write_scenario("plan", s);
	struct errbuf err;
	char *text;

	(void)state;
	assert_int_equal(show(dir, false, &text, &err), 0);
	assert_contains(text, "stage1 (plan) without a target: passed in "
	                      "12.3s\n");
	assert_contains(text, "  would_change    0.0s  Write motd\n");
	assert_contains(text, "0 skipped, 1 would change (12.3s)\n");
	free(text);
	free(dir);
	sc_free(s);
}

static void
test_report_show_json_prints_a_compact_summary(void **state)
{
	struct scenario *s = sc_failed_with_tests();
	char *dir = write_scenario("failed-tests", s);
	struct errbuf err;
	char *text;

	(void)state;
	assert_int_equal(show(dir, true, &text, &err), 1);
	assert_string_equal(text,
	    "{\"stage\": \"stage2\",\"command\": \"run\","
	    "\"status\": \"failed\",\"exit_code\": 1,\"duration_ms\": 12345,"
	    "\"target\": \"builder@10.7.0.2:22\",\"error\": null,"
	    "\"counts\": {\"total\": 3,\"ok\": 1,\"changed\": 0,\"skipped\": 0,"
	    "\"failed\": 1,\"would_change\": 0,\"interrupted\": 0,"
	    "\"not_run\": 1},\"tests\": {\"total\": 15,\"passed\": 13,"
	    "\"failed\": 1,\"skipped\": 1},\"failed_steps\": [{\"index\": 2,"
	    "\"name\": \"pgTAP suite\",\"status\": \"failed\",\"error\": "
	    "\"remote command failed: exit 3\\nstderr: owner is root\"}]}\n");
	free(text);
	free(dir);
	sc_free(s);
}

static void
test_report_show_hostile_report_prints_no_control_characters(void **state)
{
	struct scenario *s = sc_hostile();
	char *dir = write_scenario("hostile", s);
	struct errbuf err;
	char *text;

	(void)state;
	assert_int_equal(show(dir, false, &text, &err), 1);
	assert_lacks(text, "\x1b");
	assert_lacks(text, "\x01");
	assert_contains(text, "st'age \"$(touch pwned)\" `id` $HOME?line2");
	free(text);
	free(dir);
	sc_free(s);
}

static void
test_report_long_detail_key_still_reads_back(void **state)
{
	struct scenario *s = sc_passed();
	char key[2001];
	char *dir;
	struct errbuf err;
	char *text;

	(void)state;
	/* each \x01 is 6 characters once escaped; libyaml stops at 1024 */
	memset(key, 1, sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	step_result_detail(&s->res[1], key, "v");
	dir = write_scenario("long-key", s);
	assert_int_equal(show(dir, false, &text, &err), 0);
	free(text);
	free(dir);
	sc_free(s);
}

static void
test_report_write_fails_when_dir_cannot_be_made(void **state)
{
	struct scenario *s = sc_passed();
	char *file = xasprintf("%s/a-file", out_root);
	char *dir = xasprintf("%s/sub", file);
	struct errbuf err;

	(void)state;
	assert_int_equal(file_write_atomic(file, "x", 1, 0644, &err), 0);
	err_clear(&err);
	assert_int_equal(report_write(dir, &s->run, &err), -1);
	assert_int_equal(err.code, SH_ERR_IO);
	assert_contains(err.msg, "a-file");
	free(dir);
	free(file);
	sc_free(s);
}

/* ---- refusing what is not a report ---- */

static char *
dir_with_results(const char *name, const char *content, size_t len)
{
	char *dir = xasprintf("%s/bad-%s", out_root, name);
	char *path = xasprintf("%s/results.json", dir);
	struct errbuf err;

	assert_int_equal(mkdir_p(dir, 0755, &err), 0);
	assert_int_equal(file_write_atomic(path, content, len, 0644, &err), 0);
	free(path);
	return dir;
}

static void
expect_refused(const char *dir, enum sh_err code, const char *msg)
{
	struct errbuf err;
	char *text;

	assert_int_equal(show(dir, false, &text, &err), -1);
	assert_int_equal(err.code, code);
	assert_contains(err.msg, msg);
	assert_string_equal(text, "");
	free(text);
}

static void
test_report_show_refuses_a_dir_without_report(void **state)
{
	char *dir = xasprintf("%s/no-such-dir", out_root);
	char *msg = xasprintf("%s: no stagehand report (results.json "
	                      "missing)",
	    dir);

	(void)state;
	expect_refused(dir, SH_ERR_USAGE, msg);
	free(msg);
	free(dir);
}

static void
test_report_show_refuses_truncated_results(void **state)
{
	struct scenario *s = sc_failed_with_tests();
	char *good = write_scenario("failed-tests", s);
	char *j = slurp(good, "results.json");
	char *dir;

	(void)state;
	for (size_t cut = 0; cut < strlen(j) - 1; cut += 97) {
		dir = dir_with_results("truncated", j, cut);
		expect_refused(dir, SH_ERR_IO, "results.json");
		free(dir);
	}
	free(j);
	free(good);
	sc_free(s);
}

static void
test_report_show_refuses_json_that_is_not_a_report(void **state)
{
	static const char *const bad[] = {
		"[1, 2]",
		"{\"schema\": 2, \"stage\": \"s\", \"status\": \"passed\", "
		"\"steps\": []}",
		"{\"schema\": 1, \"stage\": \"s\", \"status\": \"ok\", "
		"\"steps\": []}",
		"{\"schema\": 1, \"stage\": \"s\", \"status\": \"passed\"}",
		"{\"schema\": 1, \"stage\": \"s\", \"status\": \"passed\", "
		"\"steps\": [{\"name\": \"x\"}]}",
		"{\"schema\": 1} {\"schema\": 1}",
		"{\"a\": *x}",
		"",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *dir =
		    dir_with_results("not-report", bad[i], strlen(bad[i]));

		expect_refused(dir, SH_ERR_IO, "results.json");
		free(dir);
	}
}

static void
test_report_show_refuses_oversized_results(void **state)
{
	char *dir = dir_with_results("oversized", "{}", 2);
	char *path = xasprintf("%s/results.json", dir);

	(void)state;
	/* sparse: the size check happens before reading */
	assert_int_equal(truncate(path, (off_t)REPORT_MAX_BYTES + 1), 0);
	expect_refused(dir, SH_ERR_IO, "larger than");
	free(path);
	free(dir);
}

static void
test_report_show_accepts_a_minimal_report(void **state)
{
	static const char min[] =
	    "{\"schema\": 1, \"stage\": \"s\", "
	    "\"status\": \"passed\", \"steps\": [{\"name\": \"n\", "
	    "\"status\": \"ok\"}]}";
	char *dir = dir_with_results("minimal", min, strlen(min));
	struct errbuf err;
	char *text;

	(void)state;
	assert_int_equal(show(dir, false, &text, &err), 0);
	assert_contains(text, "s: passed \xe2\x80\x94 1 ok, 0 changed");
	free(text);
	free(dir);
}

/* ======================================================== setup */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

static int
setup(void **state)
{
	const char *env = getenv("TEST_REPORT_OUT");
	char tmpl[] = "/tmp/test_report.XXXXXX";
	struct errbuf err;

	(void)state;
	keep_out = env != NULL && *env != '\0';
	if (keep_out) {
		out_root = xstrdup(env);
		return mkdir_p(out_root, 0755, &err) < 0 ? -1 : 0;
	}
	if (mkdtemp(tmpl) == NULL)
		return -1;
	out_root = xstrdup(tmpl);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (!keep_out)
		nftw(out_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(out_root);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_report_writes_three_files_with_modes),
		cmocka_unit_test(test_report_results_json_holds_the_run),
		cmocka_unit_test(
		    test_report_junit_has_a_case_per_step_and_embedded_test),
		cmocka_unit_test(
		    test_report_junit_shows_unreachable_target_as_connect_error),
		cmocka_unit_test(
		    test_report_status_is_interrupted_when_a_step_was),
		cmocka_unit_test(test_report_env_quotes_every_value),
		cmocka_unit_test(test_report_files_hold_no_secret),
		cmocka_unit_test(test_report_show_prints_the_recap_and_passes),
		cmocka_unit_test(
		    test_report_show_fails_and_names_the_failed_step),
		cmocka_unit_test(
		    test_report_show_fails_on_interrupted_and_unreachable),
		cmocka_unit_test(
		    test_report_show_plan_passes_and_counts_would_change),
		cmocka_unit_test(
		    test_report_show_json_prints_a_compact_summary),
		cmocka_unit_test(
		    test_report_show_hostile_report_prints_no_control_characters),
		cmocka_unit_test(test_report_long_detail_key_still_reads_back),
		cmocka_unit_test(
		    test_report_write_fails_when_dir_cannot_be_made),
		cmocka_unit_test(test_report_show_refuses_a_dir_without_report),
		cmocka_unit_test(test_report_show_refuses_truncated_results),
		cmocka_unit_test(
		    test_report_show_refuses_json_that_is_not_a_report),
		cmocka_unit_test(test_report_show_refuses_oversized_results),
		cmocka_unit_test(test_report_show_accepts_a_minimal_report),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
