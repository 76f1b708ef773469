/*
 * test_cli.c: the command line's --wait-lock[=SECS] (the target lock): no
 * value waits without limit, a value is 1..CLI_WAIT_LOCK_MAX seconds, and
 * only `run` takes it; the command table: cli_parse() finds a command's row
 * and checks its argument count from the row alone; jump hosts: --jump
 * lists (or STAGEHAND_JUMP), and which hop --jump-identity and
 * --jump-host-key belong to.
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/cli.h"

static int
cmd_stub(const struct cli *cli, volatile sig_atomic_t *interrupted,
    struct errbuf *err)
{
	(void)cli;
	(void)interrupted;
	(void)err;
	return EXIT_OK;
}

/* main.c's rows (its table is static there, beside the functions). */
static const struct cli_cmd commands[] = {
	{ "run", CLI_RUN, cmd_stub, 1, 1, "one manifest", 0 },
	{ "plan", CLI_PLAN, cmd_stub, 1, 1, "one manifest", 0 },
	{ "check", CLI_CHECK, cmd_stub, 1, 1000, "one or more manifests", 0 },
	{ "report", CLI_REPORT, cmd_stub, 1, 1, "one report dir", 0 },
	{ "closure", CLI_CLOSURE, cmd_stub, 1, 1, "one store path",
	    CLI_CMD_SIGNALS },
};

/* Parses "stagehand <words...>"; returns cli_parse()'s result. */
static int
parse(struct cli *cli, struct errbuf *err, const char *w1, const char *w2,
    const char *w3)
{
	char *argv[] = { (char *)"stagehand", (char *)w1, (char *)w2,
		(char *)w3, NULL };
	int argc = 1 + (w1 != NULL) + (w2 != NULL) + (w3 != NULL);

	optind = 0; /* getopt_long again from the start */
	return cli_parse(argc, argv, commands,
	    sizeof(commands) / sizeof(*commands), cli, err);
}

/* Parses "stagehand run m.yml <words...>" (NULL-terminated). */
static int
parse_run(struct cli *cli, struct errbuf *err, const char *const *words)
{
	char *argv[16] = { (char *)"stagehand", (char *)"run",
		(char *)"m.yml" };
	int argc = 3;

	while (*words != NULL && argc < 15)
		argv[argc++] = (char *)*words++;
	argv[argc] = NULL;
	optind = 0;
	return cli_parse(argc, argv, commands,
	    sizeof(commands) / sizeof(*commands), cli, err);
}

static void
test_cli_jump_options_belong_to_the_last_jump(void **state)
{
	static const char *const w[] = { "--jump-identity", "all.key", "--jump",
		"u@a,v@b:2222", "--jump-host-key", "SHA256:bbb", "--jump",
		"ssh://w@[::1]", "--jump-identity-env", "CKEY", NULL };
	struct cli cli;
	struct errbuf err;

	(void)state;
	unsetenv("STAGEHAND_JUMP");
	assert_int_equal(parse_run(&cli, &err, w), 0);
	assert_int_equal(cli.njumps, 3);
	assert_string_equal(cli.jumps[0].spec, "u@a");
	assert_string_equal(cli.jumps[1].spec, "v@b:2222");
	assert_string_equal(cli.jumps[2].spec, "ssh://w@[::1]");
	assert_string_equal(cli.jump_default.identity_file, "all.key");
	assert_null(cli.jumps[0].identity_file);
	assert_null(cli.jumps[0].host_key);
	assert_string_equal(cli.jumps[1].host_key, "SHA256:bbb");
	assert_string_equal(cli.jumps[2].identity_env, "CKEY");
	cli_free(&cli);
}

static void
test_cli_jump_comes_from_the_environment_unless_given(void **state)
{
	static const char *const none[] = { NULL };
	static const char *const given[] = { "--jump", "x@y", NULL };
	struct cli cli;
	struct errbuf err;

	(void)state;
	setenv("STAGEHAND_JUMP", "u@a,v@b", 1);
	assert_int_equal(parse_run(&cli, &err, none), 0);
	assert_int_equal(cli.njumps, 2);
	assert_string_equal(cli.jumps[1].spec, "v@b");
	cli_free(&cli);
	assert_int_equal(parse_run(&cli, &err, given), 0);
	assert_int_equal(cli.njumps, 1);
	assert_string_equal(cli.jumps[0].spec, "x@y");
	cli_free(&cli);
	setenv("STAGEHAND_JUMP", "u@a,,v@b", 1);
	assert_int_equal(parse_run(&cli, &err, none), -1);
	assert_non_null(strstr(err.msg, "STAGEHAND_JUMP: empty item"));
	cli_free(&cli);
	unsetenv("STAGEHAND_JUMP");
}

static void
test_cli_jump_options_are_checked(void **state)
{
	static const char *const pin[] = { "--jump", "u@a", "--jump-host-key",
		"MD5:aa", NULL };
	static const char *const both[] = { "--jump", "u@a", "--jump-identity",
		"k", "--jump-identity-env", "K", NULL };
	struct cli cli;
	struct errbuf err;

	(void)state;
	unsetenv("STAGEHAND_JUMP");
	assert_int_equal(parse_run(&cli, &err, pin), -1);
	assert_int_equal(err.code, SH_ERR_USAGE);
	assert_non_null(strstr(err.msg, "--jump-host-key: expected SHA256:"));
	cli_free(&cli);
	assert_int_equal(parse_run(&cli, &err, both), -1);
	assert_non_null(strstr(err.msg, "exclude each other"));
	cli_free(&cli);
}

static void
test_cli_wait_lock_defaults_to_failing_at_once(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse(&cli, &err, "run", "m.yml", NULL), 0);
	assert_false(cli.wait_lock);
	cli_free(&cli);
}

static void
test_cli_wait_lock_without_value_waits_without_limit(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse(&cli, &err, "run", "m.yml", "--wait-lock"), 0);
	assert_true(cli.wait_lock);
	assert_int_equal(cli.wait_lock_s, 0);
	cli_free(&cli);
}

static void
test_cli_wait_lock_takes_seconds(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(
	    parse(&cli, &err, "run", "m.yml", "--wait-lock=90"), 0);
	assert_true(cli.wait_lock);
	assert_int_equal(cli.wait_lock_s, 90);
	cli_free(&cli);
	assert_int_equal(
	    parse(&cli, &err, "run", "m.yml", "--wait-lock=86400"), 0);
	assert_int_equal(cli.wait_lock_s, CLI_WAIT_LOCK_MAX);
	cli_free(&cli);
}

static void
test_cli_wait_lock_rejects_bad_values(void **state)
{
	static const char *const bad[] = {
		"--wait-lock=0",     /* zero: use no option instead */
		"--wait-lock=86401", /* oversized */
		"--wait-lock=",      /* truncated */
		"--wait-lock=5s",    /* trailing junk */
		"--wait-lock=-1",    /* negative */
		"--wait-lock=99999999999999999999999", /* overflows */
	};
	struct cli cli;
	struct errbuf err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(&cli, &err, "run", "m.yml", bad[i]), -1);
		assert_int_equal(err.code, SH_ERR_USAGE);
		assert_non_null(strstr(err.msg, "--wait-lock"));
		cli_free(&cli);
	}
}

static void
test_cli_wait_lock_is_only_for_run(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse(&cli, &err, "plan", "m.yml", "--wait-lock"), -1);
	assert_int_equal(err.code, SH_ERR_USAGE);
	assert_non_null(strstr(err.msg, "--wait-lock is for 'run'"));
	cli_free(&cli);
}

static void
test_cli_registration_is_only_for_closure(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(
	    parse(&cli, &err, "plan", "m.yml", "--registration"), -1);
	assert_int_equal(err.code, SH_ERR_USAGE);
	assert_non_null(strstr(err.msg, "--registration is for 'closure'"));
	cli_free(&cli);
	assert_non_null(strstr(cli_usage(), "--registration"));
}

static void
test_cli_usage_lists_exit_75(void **state)
{
	(void)state;
	assert_non_null(strstr(cli_usage(), "75 target locked"));
	assert_non_null(strstr(cli_usage(), "--wait-lock"));
}

static void
test_cli_finds_the_commands_row(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse(&cli, &err, "check", "a.yml", "b.yml"), 0);
	assert_ptr_equal(cli.cmd, &commands[2]);
	assert_int_equal(cli.command, CLI_CHECK);
	assert_string_equal(cli.command_name, "check");
	assert_int_equal(cli.args.n, 2);
	cli_free(&cli);
}

static void
test_cli_argument_count_comes_from_the_row(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse(&cli, &err, "report", "a", "b"), -1);
	assert_int_equal(err.code, SH_ERR_USAGE);
	assert_string_equal(err.msg, "'report' takes one report dir");
	cli_free(&cli);
	assert_int_equal(parse(&cli, &err, "check", NULL, NULL), -1);
	assert_string_equal(err.msg, "'check' takes one or more manifests");
	cli_free(&cli);
}

static void
test_cli_unknown_command_lists_the_table(void **state)
{
	struct cli cli;
	struct errbuf err;

	(void)state;
	assert_int_equal(parse(&cli, &err, "deploy", "m.yml", NULL), -1);
	assert_int_equal(err.code, SH_ERR_USAGE);
	assert_string_equal(err.msg,
	    "unknown command 'deploy' (run, plan, check, report, closure)");
	cli_free(&cli);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    test_cli_wait_lock_defaults_to_failing_at_once),
		cmocka_unit_test(
		    test_cli_wait_lock_without_value_waits_without_limit),
		cmocka_unit_test(test_cli_wait_lock_takes_seconds),
		cmocka_unit_test(test_cli_wait_lock_rejects_bad_values),
		cmocka_unit_test(test_cli_wait_lock_is_only_for_run),
		cmocka_unit_test(test_cli_registration_is_only_for_closure),
		cmocka_unit_test(test_cli_usage_lists_exit_75),
		cmocka_unit_test(test_cli_jump_options_belong_to_the_last_jump),
		cmocka_unit_test(
		    test_cli_jump_comes_from_the_environment_unless_given),
		cmocka_unit_test(test_cli_jump_options_are_checked),
		cmocka_unit_test(test_cli_finds_the_commands_row),
		cmocka_unit_test(test_cli_argument_count_comes_from_the_row),
		cmocka_unit_test(test_cli_unknown_command_lists_the_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
