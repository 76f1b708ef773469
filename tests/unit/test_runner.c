/*
 * test_runner.c: the runner's policy (run/runner.c) with kinds and a link
 * of the test's own, so no target is needed: retries, reconnects after a
 * dropped session, expect_disconnect, rescue, --keep-going, --start-at,
 * tags and `when`, interruption, plan mode, and the exit codes they give.
 *
 * The manifests are YAML, loaded through the real loader with the test's
 * kind table (that the table can be handed in is part of the contract).
 * The kind `fake` is told by its body what each attempt does:
 *
 *   fake: {fail: N}          the first N attempts fail (SH_ERR_STEP)
 *   fake: {drop: N}          the first N attempts drop the session (SH_ERR_SSH)
 *   fake: {fatal: true}      fails with SH_ERR_TRUST (never retried)
 *   fake: {interrupt: true}  the user presses ^C while it runs
 *   fake: {change: true}     reports a change
 *
 * `unsafe` is the same kind without STEP_RETRY_SAFE. Every attempt is
 * logged ("name:probe" / "name:apply") so the order can be checked.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
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
#include "report/ui.h"
#include "run/runner.h"
#include "target/ctx.h"

/* ------------------------------------------------------------ the fakes */

struct fake_cfg {
	uint64_t fail, drop;
	bool fatal, interrupt, change;
};

/* What the fakes saw; reset by each test's setup. */
struct world {
	struct buf log;        /* "name:mode " per attempt */
	unsigned attempts[16]; /* per step index */
	unsigned connects, reconnects, releases;
	bool reconnect_fails;
	volatile sig_atomic_t interrupted;
};

static struct world w;

static const char *const fake_keys[] = {
	"fail",
	"drop",
	"fatal",
	"interrupt",
	"change",
	NULL,
};

static int
fake_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct fake_cfg *c = cfg;

	if (body->type == NODE_SCALAR)
		return 0;
	if (node_opt_u64(body, "fail", 99, &c->fail, err) < 0 ||
	    node_opt_u64(body, "drop", 99, &c->drop, err) < 0 ||
	    node_opt_bool(body, "fatal", &c->fatal, err) < 0 ||
	    node_opt_bool(body, "interrupt", &c->interrupt, err) < 0 ||
	    node_opt_bool(body, "change", &c->change, err) < 0)
		return -1;
	return 0;
}

static int
fake_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct fake_cfg *c = step->cfg;
	unsigned n = ++w.attempts[step->index];

	assert_true(buf_addf(&w.log, "%s:%s ", step->name,
	                mode == STEP_PROBE ? "probe" : "apply") == 0);
	assert_true(run_ctx_connected(ctx));
	if (c->interrupt) {
		w.interrupted = 1;
		return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
	}
	if (c->fatal)
		return err_set(err, SH_ERR_TRUST, "host key refused");
	if (n <= c->drop)
		return err_set(err, SH_ERR_SSH, "connection dropped");
	if (n <= c->drop + c->fail)
		return err_set(err, SH_ERR_STEP, "attempt %u failed", n);
	res->changed = c->change;
	return 0;
}

static void
fake_describe(const struct step *step, struct buf *out)
{
	(void)step;
	assert_true(buf_adds(out, "fake") == 0);
}

static const struct step_kind fake_kind = {
	.name = "fake",
	.flags = STEP_RETRY_SAFE | STEP_BODY_SCALAR,
	.keys = fake_keys,
	.cfg_size = sizeof(struct fake_cfg),
	.parse = fake_parse,
	.run = fake_run,
	.describe = fake_describe,
};

static const struct step_kind unsafe_kind = {
	.name = "unsafe",
	.flags = STEP_BODY_SCALAR,
	.keys = fake_keys,
	.cfg_size = sizeof(struct fake_cfg),
	.parse = fake_parse,
	.run = fake_run,
	.describe = fake_describe,
};

static const struct step_kind *const fake_kinds[] = {
	&fake_kind,
	&unsafe_kind,
	NULL,
};

static int
link_connect(struct run_ctx *ctx, struct errbuf *err)
{
	(void)ctx;
	(void)err;
	w.connects++;
	return 0;
}

static int
link_reconnect(struct run_ctx *ctx, struct errbuf *err)
{
	(void)ctx;
	w.reconnects++;
	if (w.reconnect_fails)
		return err_set(err, SH_ERR_UNREACHABLE, "target is gone");
	return 0;
}

static void
link_release(struct run_ctx *ctx)
{
	(void)ctx;
	w.releases++;
}

static const struct run_link fake_link = {
	link_connect,
	link_reconnect,
	link_release,
};

/* ------------------------------------------------------------ a run */

struct run {
	struct manifest *m;
	struct run_opts opts;
	struct run_ctx ctx;
	struct step_result *results;
	struct errbuf err;
	int exit_code;
};

static int
setup(void **state)
{
	(void)state;
	memset(&w, 0, sizeof(w));
	buf_init(&w.log, 4096);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	buf_release(&w.log);
	return 0;
}

static struct manifest *
load(const char *steps)
{
	struct manifest *m = NULL;
	struct errbuf err;
	char *yaml = xasprintf("stagehand: 1\nstage: t\n%s", steps);

	err_clear(&err);
	if (manifest_load_mem(
	        "t.yml", yaml, strlen(yaml), fake_kinds, NULL, &m, &err) < 0)
		fail_msg("the manifest does not load: %s", err.msg);
	free(yaml);
	return m;
}

/* Runs steps (YAML under `steps:`, and maybe `rescue:`) with opts. */
static void
run(struct run *r, const char *steps)
{
	struct ui_opts uo = { .verbosity = -1 };
	int saved, null;

	r->m = load(steps);
	r->ctx.opts = &r->opts;
	r->ctx.manifest = r->m;
	r->ctx.have_target = true;
	r->ctx.link = &fake_link;
	r->ctx.interrupted = &w.interrupted;
	r->ctx.ui = ui_new(&uo, NULL);
	r->results = xcalloc(r->m->nsteps, sizeof(*r->results));
	/* The UI's step lines would be mixed into cmocka's output. */
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	null = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && null >= 0 && dup2(null, STDOUT_FILENO) >= 0);
	r->exit_code = runner_run(&r->ctx, r->results, &r->err);
	fflush(stdout);
	assert_true(dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);
	close(null);
	run_ctx_release(&r->ctx);
}

static void
run_free(struct run *r)
{
	for (size_t i = 0; i < r->m->nsteps; i++)
		step_result_free(&r->results[i]);
	free(r->results);
	ui_free(r->ctx.ui);
	manifest_free(r->m);
	strlist_free(&r->opts.tags);
	strlist_free(&r->opts.skip_tags);
}

static void
expect_statuses(const struct run *r, const char *want)
{
	struct buf got;

	buf_init(&got, 256);
	for (size_t i = 0; i < r->m->nsteps; i++)
		assert_true(buf_addf(&got, "%s%s", i ? " " : "",
		                step_status_name(r->results[i].status)) == 0);
	assert_string_equal(got.data, want);
	buf_release(&got);
}

static void
expect_log(const char *want)
{
	assert_string_equal(w.log.data, want);
}

/* ------------------------------------------------------------ tests */

static void
test_runner_runs_steps_in_order(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n"
	        "  - {name: a, fake: x}\n"
	        "  - {name: b, fake: {change: true}}\n");
	expect_statuses(&r, "ok changed");
	expect_log("a:apply b:apply ");
	assert_int_equal(r.exit_code, EXIT_OK);
	assert_int_equal(w.connects, 1);
	assert_int_equal(w.releases, 1);
	run_free(&r);
}

static void
test_runner_plan_probes(void **state)
{
	struct run r = { 0 };

	(void)state;
	r.opts.plan = true;
	run(&r, "steps:\n"
	        "  - {name: a, fake: x}\n"
	        "  - {name: b, fake: {change: true}}\n");
	expect_statuses(&r, "ok would_change");
	expect_log("a:probe b:probe ");
	assert_int_equal(r.exit_code, EXIT_OK);
	run_free(&r);
}

static void
test_runner_retries_until_success(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n"
	        "  - {name: a, retries: 2, retry_delay: 0, fake: {fail: 2}}\n"
	        "  - {name: b, fake: x}\n");
	expect_statuses(&r, "ok ok");
	assert_int_equal(r.results[0].attempts, 3);
	assert_int_equal(r.exit_code, EXIT_OK);
	run_free(&r);
}

static void
test_runner_retries_run_out(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n"
	        "  - {name: a, retries: 1, retry_delay: 0, fake: {fail: 2}}\n"
	        "  - {name: b, fake: x}\n");
	expect_statuses(&r, "failed not_run");
	assert_int_equal(r.results[0].attempts, 2);
	assert_string_equal(r.results[0].err.msg, "attempt 2 failed");
	expect_log("a:apply a:apply ");
	assert_int_equal(r.exit_code, EXIT_STEP_FAILED);
	run_free(&r);
}

static void
test_runner_never_retries_a_trust_failure(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r,
	    "steps:\n"
	    "  - {name: a, retries: 3, retry_delay: 0, fake: {fatal: true}}\n"
	    "  - {name: b, fake: x}\n");
	expect_statuses(&r, "failed not_run");
	assert_int_equal(r.results[0].attempts, 1);
	assert_int_equal(r.exit_code, EXIT_TRUST);
	run_free(&r);
}

static void
test_runner_reconnects_and_reruns_a_safe_step(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n"
	        "  - {name: a, fake: {drop: 1}}\n"
	        "  - {name: b, fake: x}\n");
	expect_statuses(&r, "ok ok");
	assert_int_equal(w.reconnects, 1);
	assert_int_equal(r.results[0].reconnects, 1);
	assert_int_equal(r.results[0].attempts, 2);
	expect_log("a:apply a:apply b:apply ");
	assert_int_equal(r.exit_code, EXIT_OK);
	run_free(&r);
}

static void
test_runner_gives_up_after_transport_retries(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n  - {name: a, fake: {drop: 99}}\n");
	expect_statuses(&r, "failed");
	/* the first attempt and RUNNER_TRANSPORT_RETRIES (3) more */
	assert_int_equal(r.results[0].attempts, 4);
	assert_int_equal(w.reconnects, 4);
	assert_int_equal(r.exit_code, EXIT_STEP_FAILED);
	run_free(&r);
}

static void
test_runner_does_not_rerun_an_unsafe_step(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n"
	        "  - {name: a, unsafe: {drop: 1}}\n"
	        "  - {name: b, fake: x}\n");
	expect_statuses(&r, "failed not_run");
	assert_int_equal(w.reconnects, 1);
	assert_int_equal(r.results[0].attempts, 1);
	assert_string_equal(r.results[0].err.msg, "connection dropped");
	run_free(&r);
}

static void
test_runner_expected_disconnect_is_a_change(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r,
	    "steps:\n"
	    "  - {name: reboot, expect_disconnect: true, unsafe: {drop: 1}}\n"
	    "  - {name: b, fake: x}\n");
	expect_statuses(&r, "changed ok");
	assert_int_equal(w.reconnects, 1);
	assert_int_equal(r.exit_code, EXIT_OK);
	run_free(&r);
}

static void
test_runner_reconnect_failure_ends_the_run(void **state)
{
	struct run r = { 0 };

	(void)state;
	w.reconnect_fails = true;
	run(&r, "steps:\n"
	        "  - {name: a, retries: 5, retry_delay: 0, fake: {drop: 1}}\n"
	        "  - {name: b, fake: x}\n");
	expect_statuses(&r, "failed not_run");
	assert_string_equal(r.results[0].err.msg, "target is gone");
	assert_int_equal(r.results[0].attempts, 1);
	assert_int_equal(r.exit_code, EXIT_UNREACHABLE);
	run_free(&r);
}

static const char rescue_yaml[] = "steps:\n"
                                  "  - {name: a, fake: x}\n"
                                  "  - {name: b, fake: {fail: 1}}\n"
                                  "  - {name: c, fake: x}\n"
                                  "rescue:\n"
                                  "  - {name: undo1, fake: x}\n"
                                  "  - {name: undo2, fake: x}\n";

static void
test_runner_rescue_runs_after_a_failure(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, rescue_yaml);
	expect_statuses(&r, "ok failed not_run ok ok");
	expect_log("a:apply b:apply undo1:apply undo2:apply ");
	/* a rollback is not a success */
	assert_int_equal(r.exit_code, EXIT_STEP_FAILED);
	run_free(&r);
}

static void
test_runner_rescue_is_skipped_without_a_failure(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n  - {name: a, fake: x}\n"
	        "rescue:\n  - {name: undo, fake: x}\n");
	expect_statuses(&r, "ok skipped");
	assert_string_equal(
	    r.results[1].skip_reason, "rescue step: runs only after a failure");
	expect_log("a:apply ");
	run_free(&r);
}

static void
test_runner_rescue_stops_at_its_own_failure(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n  - {name: a, fake: {fail: 1}}\n"
	        "rescue:\n"
	        "  - {name: undo1, fake: {fail: 1}}\n"
	        "  - {name: undo2, fake: x}\n");
	expect_statuses(&r, "failed failed not_run");
	expect_log("a:apply undo1:apply ");
	assert_int_equal(r.exit_code, EXIT_STEP_FAILED);
	run_free(&r);
}

static void
test_runner_keep_going(void **state)
{
	struct run r = { 0 };

	(void)state;
	r.opts.keep_going = true;
	run(&r, "steps:\n"
	        "  - {name: a, fake: {fail: 1}}\n"
	        "  - {name: b, fake: x}\n"
	        "  - {name: c, fake: {fail: 1}}\n");
	expect_statuses(&r, "failed ok failed");
	expect_log("a:apply b:apply c:apply ");
	assert_int_equal(r.exit_code, EXIT_STEP_FAILED);
	run_free(&r);
}

static void
test_runner_keep_going_stops_at_a_trust_failure(void **state)
{
	struct run r = { 0 };

	(void)state;
	r.opts.keep_going = true;
	run(&r, "steps:\n"
	        "  - {name: a, fake: {fatal: true}}\n"
	        "  - {name: b, fake: x}\n");
	expect_statuses(&r, "failed not_run");
	assert_int_equal(r.exit_code, EXIT_TRUST);
	run_free(&r);
}

static void
test_runner_start_at(void **state)
{
	struct run r = { 0 };

	(void)state;
	r.opts.start_at = "c";
	run(&r, "steps:\n"
	        "  - {name: a, fake: x}\n"
	        "  - {name: b, fake: x}\n"
	        "  - {name: c, fake: x}\n"
	        "  - {name: d, fake: x}\n");
	expect_statuses(&r, "skipped skipped ok ok");
	assert_string_equal(r.results[0].skip_reason, "before --start-at 'c'");
	expect_log("c:apply d:apply ");
	run_free(&r);
}

static void
test_runner_tags_and_when(void **state)
{
	struct run r = { 0 };

	(void)state;
	strlist_push(&r.opts.tags, "db");
	run(&r, "steps:\n"
	        "  - {name: a, tags: [db], fake: x}\n"
	        "  - {name: b, tags: [web], fake: x}\n"
	        "  - {name: c, tags: [always], fake: x}\n"
	        "  - {name: d, tags: [db], when: 'false', fake: x}\n");
	expect_statuses(&r, "ok skipped ok skipped");
	assert_string_equal(r.results[1].skip_reason, "not selected by --tags");
	assert_string_equal(r.results[3].skip_reason, "when 'false' is false");
	expect_log("a:apply c:apply ");
	run_free(&r);
}

static void
test_runner_nothing_to_run_never_connects(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n  - {name: a, when: 'false', fake: x}\n");
	expect_statuses(&r, "skipped");
	assert_int_equal(w.connects, 0);
	assert_int_equal(w.releases, 0);
	run_free(&r);
}

static void
test_runner_interruption(void **state)
{
	struct run r = { 0 };

	(void)state;
	run(&r, "steps:\n"
	        "  - {name: a, fake: x}\n"
	        "  - {name: b, retries: 3, fake: {interrupt: true}}\n"
	        "  - {name: c, fake: x}\n"
	        "rescue:\n  - {name: undo, fake: x}\n");
	/* the rescue list runs after failures, not after an interruption */
	expect_statuses(&r, "ok interrupted not_run skipped");
	expect_log("a:apply b:apply ");
	assert_int_equal(r.results[1].attempts, 1);
	assert_int_equal(r.exit_code, EXIT_INTERRUPTED);
	run_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_runner_runs_steps_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_plan_probes, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_retries_until_success, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_retries_run_out, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_never_retries_a_trust_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_reconnects_and_reruns_a_safe_step, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_gives_up_after_transport_retries, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_does_not_rerun_an_unsafe_step, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_expected_disconnect_is_a_change, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_reconnect_failure_ends_the_run, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_rescue_runs_after_a_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_rescue_is_skipped_without_a_failure, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_rescue_stops_at_its_own_failure, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_keep_going, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_keep_going_stops_at_a_trust_failure, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_start_at, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_tags_and_when, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_nothing_to_run_never_connects, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_runner_interruption, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
