/*
 * cli.c: argv -> struct cli. See cli.h.
 */
#include "cmd/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_TARGET = 256,
	OPT_IDENTITY_ENV,
	OPT_KNOWN_HOSTS,
	OPT_HOST_KEY,
	OPT_ACCEPT_NEW,
	OPT_CONNECT_TIMEOUT,
	OPT_VAR,
	OPT_VARS_FILE,
	OPT_REPORT,
	OPT_TAGS,
	OPT_SKIP_TAGS,
	OPT_START_AT,
	OPT_INCLUDE_ROOT,
	OPT_OFFLINE,
	OPT_JSON,
	OPT_KEEP_GOING,
	OPT_ONE_CHANNEL,
	OPT_FROM,
	OPT_TRUSTED_KEY,
	OPT_REGISTRATION,
	OPT_TIMEOUT,
	OPT_WAIT_LOCK,
	OPT_JUMP,
	OPT_JUMP_IDENTITY,
	OPT_JUMP_IDENTITY_ENV,
	OPT_JUMP_HOST_KEY,
	OPT_MODE,
	OPT_WAIT_HOST,
};

static const struct option long_opts[] = {
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "identity", required_argument, NULL, 'i' },
	{ "identity-env", required_argument, NULL, OPT_IDENTITY_ENV },
	{ "known-hosts", required_argument, NULL, OPT_KNOWN_HOSTS },
	{ "host-key", required_argument, NULL, OPT_HOST_KEY },
	{ "accept-new-host-key", no_argument, NULL, OPT_ACCEPT_NEW },
	{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
	{ "wait-for-host", required_argument, NULL, OPT_WAIT_HOST },
	{ "var", required_argument, NULL, OPT_VAR },
	{ "vars-file", required_argument, NULL, OPT_VARS_FILE },
	{ "report", required_argument, NULL, OPT_REPORT },
	{ "tags", required_argument, NULL, OPT_TAGS },
	{ "skip-tags", required_argument, NULL, OPT_SKIP_TAGS },
	{ "start-at", required_argument, NULL, OPT_START_AT },
	{ "include-root", required_argument, NULL, OPT_INCLUDE_ROOT },
	{ "offline", no_argument, NULL, OPT_OFFLINE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "keep-going", no_argument, NULL, OPT_KEEP_GOING },
	{ "one-channel-per-step", no_argument, NULL, OPT_ONE_CHANNEL },
	{ "from", required_argument, NULL, OPT_FROM },
	{ "trusted-key", required_argument, NULL, OPT_TRUSTED_KEY },
	{ "registration", no_argument, NULL, OPT_REGISTRATION },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "wait-lock", optional_argument, NULL, OPT_WAIT_LOCK },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "jump", required_argument, NULL, OPT_JUMP },
	{ "jump-identity", required_argument, NULL, OPT_JUMP_IDENTITY },
	{ "jump-identity-env", required_argument, NULL, OPT_JUMP_IDENTITY_ENV },
	{ "jump-host-key", required_argument, NULL, OPT_JUMP_HOST_KEY },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

const char *
cli_usage(void)
{
	return "usage: stagehand run MANIFEST [options]\n"
	       "       stagehand plan MANIFEST [--offline] [options]\n"
	       "       stagehand check MANIFEST...\n"
	       "       stagehand report DIR [--json]\n"
	       "       stagehand closure STOREPATH --from URL... "
	       "--trusted-key NAME:KEY...\n"
	       "                 [--mode pull|push] [--json | --registration]\n"
	       "\n"
	       "target:\n"
	       "  --target ssh://USER@HOST[:PORT]  (or STAGEHAND_TARGET)\n"
	       "  -i, --identity FILE        private key file (ed25519/ecdsa)\n"
	       "  --identity-env VAR         private key text in env VAR\n"
	       "                             (neither: the ssh-agent)\n"
	       "  --known-hosts FILE         default ~/.ssh/known_hosts\n"
	       "  --host-key SHA256:...      pin the host key instead\n"
	       "  --accept-new-host-key      trust an unknown host key\n"
	       "  --connect-timeout SECONDS  default 15\n"
	       "  --wait-for-host SECONDS    retry the first connection while "
	       "the\n"
	       "                             host is unreachable (default: "
	       "once)\n"
	       "  --jump ssh://USER@HOST[:PORT]  reach the target through "
	       "this\n"
	       "                             jump host (repeat, in order; or "
	       "STAGEHAND_JUMP)\n"
	       "  --jump-identity FILE / --jump-identity-env VAR\n"
	       "                             the last --jump's key (default: "
	       "the target's)\n"
	       "  --jump-host-key SHA256:... pin the last --jump's host key\n"
	       "  --one-channel-per-step     each step its own channel and "
	       "sudo\n"
	       "manifest:\n"
	       "  --var NAME=VALUE           override a variable (not "
	       "secrets)\n"
	       "  --vars-file FILE           YAML map of variables\n"
	       "  --include-root DIR         includes must stay below DIR\n"
	       "  --tags A,B / --skip-tags A,B / --start-at STEP\n"
	       "output:\n"
	       "  --report DIR               default stagehand-report\n"
	       "  --json                     NDJSON events on stdout\n"
	       "  --keep-going               run later steps after a failure\n"
	       "  --wait-lock[=SECS]         wait for another run's lock on "
	       "the target\n"
	       "                             (default: fail at once, exit "
	       "75)\n"
	       "  -v, --verbose / -q, --quiet\n"
	       "  -h, --help / -V, --version\n"
	       "closure:\n"
	       "  --from URL                 binary cache, in order (repeat)\n"
	       "  --trusted-key NAME:BASE64  public key (repeat)\n"
	       "  --timeout SECONDS          per request, default 30\n"
	       "  --registration             print the closure's registration\n"
	       "                             (nix-store --load-db input)\n"
	       "  --mode pull|push           push: also fetch and check "
	       "every NAR\n"
	       "\n"
	       "exit: 0 ok, 1 step failed, 2 usage, 65 invalid manifest,\n"
	       "      69 target unreachable, 75 target locked by another run,\n"
	       "      77 trust failure, 130 interrupted\n";
}

/* "a,b" -> two entries; empty items are an error. */
static int
split_list(
    const char *s, struct strlist *out, const char *opt, struct errbuf *err)
{
	const char *p = s;

	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == 0)
			return err_set(err, SH_ERR_USAGE,
			    "%s: empty item in '%s'", opt, s);
		strlist_push_owned(out, xstrndup(p, len));
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

/* Appends the hops of a comma list (--jump or STAGEHAND_JUMP). */
static int
add_jumps(
    struct cli *cli, const char *list, const char *what, struct errbuf *err)
{
	size_t first = cli->jump_specs.n;

	if (split_list(list, &cli->jump_specs, what, err) < 0)
		return -1;
	for (size_t i = first; i < cli->jump_specs.n; i++) {
		cli->jumps = xreallocarray(
		    cli->jumps, cli->njumps + 1, sizeof(*cli->jumps));
		memset(&cli->jumps[cli->njumps], 0, sizeof(*cli->jumps));
		cli->jumps[cli->njumps++].spec = cli->jump_specs.v[i];
	}
	return 0;
}

/* The hop a --jump-* option belongs to: the last --jump, or the default. */
static struct cli_jump *
jump_current(struct cli *cli)
{
	return cli->njumps > 0 ? &cli->jumps[cli->njumps - 1]
	                       : &cli->jump_default;
}

static int
parse_option(int c, const char *arg, struct cli *cli, struct errbuf *err)
{
	uint64_t n;

	switch (c) {
	case OPT_JUMP:
		return add_jumps(cli, arg, "--jump", err);
	case OPT_JUMP_IDENTITY:
		jump_current(cli)->identity_file = arg;
		return 0;
	case OPT_JUMP_IDENTITY_ENV:
		jump_current(cli)->identity_env = arg;
		return 0;
	case OPT_JUMP_HOST_KEY:
		jump_current(cli)->host_key = arg;
		return 0;
	case OPT_TARGET:
		cli->target = arg;
		return 0;
	case 'i':
		cli->identity_file = arg;
		return 0;
	case OPT_IDENTITY_ENV:
		cli->identity_env = arg;
		return 0;
	case OPT_KNOWN_HOSTS:
		cli->known_hosts = arg;
		return 0;
	case OPT_HOST_KEY:
		cli->host_key = arg;
		return 0;
	case OPT_ACCEPT_NEW:
		cli->accept_new_host_key = true;
		return 0;
	case OPT_CONNECT_TIMEOUT:
		if (parse_u64(arg, strlen(arg), 3600, &n) < 0 || n == 0)
			return err_set(err, SH_ERR_USAGE,
			    "--connect-timeout: '%s' is not 1..3600 seconds",
			    arg);
		cli->connect_timeout_s = (unsigned)n;
		return 0;
	case OPT_WAIT_HOST:
		if (parse_u64(arg, strlen(arg), CLI_WAIT_HOST_MAX, &n) < 0)
			return err_set(err, SH_ERR_USAGE,
			    "--wait-for-host: '%s' is not 0..%u seconds", arg,
			    CLI_WAIT_HOST_MAX);
		cli->wait_host_s = (unsigned)n;
		return 0;
	case OPT_VAR:
		if (strchr(arg, '=') == NULL || arg[0] == '=')
			return err_set(err, SH_ERR_USAGE,
			    "--var: expected NAME=VALUE, got '%s'", arg);
		strlist_push(&cli->vars, arg);
		return 0;
	case OPT_VARS_FILE:
		strlist_push(&cli->vars_files, arg);
		return 0;
	case OPT_REPORT:
		cli->report_dir = arg;
		return 0;
	case OPT_TAGS:
		return split_list(arg, &cli->tags, "--tags", err);
	case OPT_SKIP_TAGS:
		return split_list(arg, &cli->skip_tags, "--skip-tags", err);
	case OPT_START_AT:
		cli->start_at = arg;
		return 0;
	case OPT_INCLUDE_ROOT:
		cli->include_root = arg;
		return 0;
	case OPT_OFFLINE:
		cli->offline = true;
		return 0;
	case OPT_JSON:
		cli->json = true;
		return 0;
	case OPT_KEEP_GOING:
		cli->keep_going = true;
		return 0;
	case OPT_ONE_CHANNEL:
		cli->one_channel_per_step = true;
		return 0;
	case OPT_FROM:
		strlist_push(&cli->from, arg);
		return 0;
	case OPT_TRUSTED_KEY:
		strlist_push(&cli->trusted_keys, arg);
		return 0;
	case OPT_REGISTRATION:
		cli->registration = true;
		return 0;
	case OPT_TIMEOUT:
		if (parse_u64(arg, strlen(arg), 3600, &n) < 0 || n == 0)
			return err_set(err, SH_ERR_USAGE,
			    "--timeout: '%s' is not 1..3600 seconds", arg);
		cli->timeout_s = (unsigned)n;
		return 0;
	case OPT_MODE:
		if (strcmp(arg, "pull") != 0 && strcmp(arg, "push") != 0)
			return err_set(err, SH_ERR_USAGE,
			    "--mode: expected pull or push, not '%s'", arg);
		cli->push = strcmp(arg, "push") == 0;
		cli->mode_set = true;
		return 0;
	case OPT_WAIT_LOCK:
		cli->wait_lock = true;
		if (arg != NULL &&
		    (parse_u64(arg, strlen(arg), CLI_WAIT_LOCK_MAX, &n) < 0 ||
		        n == 0))
			return err_set(err, SH_ERR_USAGE,
			    "--wait-lock: '%s' is not 1..%u seconds", arg,
			    CLI_WAIT_LOCK_MAX);
		cli->wait_lock_s = arg != NULL ? (unsigned)n : 0;
		return 0;
	case 'v':
		cli->verbosity = cli->verbosity < 0 ? 1 : cli->verbosity + 1;
		return 0;
	case 'q':
		cli->verbosity = -1;
		return 0;
	case 'h':
		cli->help = true;
		return 0;
	case 'V':
		cli->version = true;
		return 0;
	default:
		return err_set(
		    err, SH_ERR_USAGE, "unknown option (see --help)");
	}
}

static int
find_command(const char *name, const struct cli_cmd *cmds, size_t ncmds,
    struct cli *cli, struct errbuf *err)
{
	struct buf names;

	for (size_t i = 0; i < ncmds; i++) {
		if (strcmp(cmds[i].name, name) == 0) {
			cli->cmd = &cmds[i];
			cli->command = cmds[i].command;
			cli->command_name = cmds[i].name;
			return 0;
		}
	}
	buf_init(&names, 256);
	for (size_t i = 0; i < ncmds; i++)
		buf_addf(&names, "%s%s", i ? ", " : "", cmds[i].name);
	/* A cut list still names the problem; the message is not run. */
	err_set(
	    err, SH_ERR_USAGE, "unknown command '%s' (%s)", name, names.data);
	buf_release(&names);
	return -1;
}

/* Options that only make sense for some commands are refused elsewhere. */
static int
check_combination(const struct cli *cli, struct errbuf *err)
{
	if (cli->offline && cli->command != CLI_PLAN)
		return err_set(err, SH_ERR_USAGE, "--offline is for 'plan'");
	if (cli->wait_lock && cli->command != CLI_RUN)
		return err_set(err, SH_ERR_USAGE, "--wait-lock is for 'run'");
	if (cli->registration && cli->command != CLI_CLOSURE)
		return err_set(
		    err, SH_ERR_USAGE, "--registration is for 'closure'");
	if (cli->registration && cli->json)
		return err_set(err, SH_ERR_USAGE,
		    "--registration and --json exclude each other");
	if (cli->mode_set && cli->command != CLI_CLOSURE)
		return err_set(err, SH_ERR_USAGE, "--mode is for 'closure'");
	if (cli->command == CLI_CLOSURE &&
	    (cli->from.n == 0 || cli->trusted_keys.n == 0))
		return err_set(err, SH_ERR_USAGE,
		    "closure needs --from URL and --trusted-key NAME:KEY");
	if (cli->identity_file && cli->identity_env)
		return err_set(err, SH_ERR_USAGE,
		    "--identity and --identity-env exclude each other");
	if (cli->host_key && !str_has_prefix(cli->host_key, "SHA256:"))
		return err_set(err, SH_ERR_USAGE,
		    "--host-key: expected SHA256:<base64>, got '%s'",
		    cli->host_key);
	for (size_t i = 0; i <= cli->njumps; i++) {
		const struct cli_jump *j =
		    i < cli->njumps ? &cli->jumps[i] : &cli->jump_default;

		if (j->identity_file && j->identity_env)
			return err_set(err, SH_ERR_USAGE,
			    "--jump-identity and --jump-identity-env exclude "
			    "each other (for the same --jump)");
		if (j->host_key && !str_has_prefix(j->host_key, "SHA256:"))
			return err_set(err, SH_ERR_USAGE,
			    "--jump-host-key: expected SHA256:<base64>, got "
			    "'%s'",
			    j->host_key);
	}
	return 0;
}

int
cli_parse(int argc, char **argv, const struct cli_cmd *cmds, size_t ncmds,
    struct cli *cli, struct errbuf *err)
{
	int c;

	memset(cli, 0, sizeof(*cli));
	cli->report_dir = "stagehand-report";
	cli->target = getenv("STAGEHAND_TARGET");
	opterr = 0;
	optind = 1;
	/* GNU permutation: options may come before or after the command. */
	while ((c = getopt_long(argc, argv, "i:vqhV", long_opts, NULL)) != -1) {
		if (c == '?' || c == ':')
			return err_set(err, SH_ERR_USAGE,
			    "bad option '%s' (see --help)", argv[optind - 1]);
		if (parse_option(c, optarg, cli, err) < 0)
			return -1;
	}
	for (; optind < argc; optind++) {
		if (cli->command == CLI_NONE) {
			if (cli->help || cli->version)
				break;
			if (find_command(argv[optind], cmds, ncmds, cli, err) <
			    0)
				return -1;
			continue;
		}
		strlist_push(&cli->args, argv[optind]);
	}
	if (cli->help || cli->version)
		return 0;
	if (cli->njumps == 0 && getenv("STAGEHAND_JUMP") != NULL &&
	    *getenv("STAGEHAND_JUMP") != '\0' &&
	    add_jumps(cli, getenv("STAGEHAND_JUMP"), "STAGEHAND_JUMP", err) < 0)
		return -1;
	if (cli->command == CLI_NONE)
		return err_set(err, SH_ERR_USAGE, "no command given");
	if (cli->args.n < cli->cmd->min_args ||
	    cli->args.n > cli->cmd->max_args)
		return err_set(err, SH_ERR_USAGE, "'%s' takes %s",
		    cli->command_name, cli->cmd->args);
	return check_combination(cli, err);
}

void
cli_free(struct cli *cli)
{
	strlist_free(&cli->args);
	strlist_free(&cli->vars_files);
	strlist_free(&cli->vars);
	strlist_free(&cli->tags);
	strlist_free(&cli->skip_tags);
	strlist_free(&cli->from);
	strlist_free(&cli->trusted_keys);
	strlist_free(&cli->jump_specs);
	free(cli->jumps);
	cli->jumps = NULL;
	cli->njumps = 0;
}
