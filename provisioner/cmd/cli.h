/*
 * cli.h: the command line, parsed into one plain struct.
 *
 *   stagehand run MANIFEST [options]       execute the stage on the target
 *   stagehand plan MANIFEST [options]      probe read-only; --offline: render
 *   stagehand check MANIFEST...            validate offline
 *   stagehand report DIR [--json]          summarise a report dir; gate
 *   stagehand closure PATH --from URL... --trusted-key K... [--mode M]
 *       [--json | --registration]          resolve and verify a closure
 *                                          (push: and check every NAR)
 *
 * The commands are one table of struct cli_cmd rows (git's commands[]),
 * owned by main.c: each row names the command's function, how many
 * positional arguments it takes and its flags. cli_parse() finds the row
 * by name and checks the argument count; main() calls the row's function
 * and prints the error it returns, once.
 *
 * cli_parse() never prints: on a bad command line it returns -1 with
 * SH_ERR_USAGE and a message; `--help` and `--version` set cli->help /
 * cli->version. Strings are borrowed from argv and the environment.
 * The target comes from --target or STAGEHAND_TARGET, the jump hosts from
 * --jump (repeatable; each may be a comma list, as OpenSSH's -J) or, when
 * there is none, STAGEHAND_JUMP (a comma list). --jump-identity,
 * --jump-identity-env and --jump-host-key belong to the hop of the last
 * --jump before them; given before any --jump they are the default of
 * every hop that has none of its own (cli->jump_default).
 */
#ifndef STAGEHAND_CLI_H
#define STAGEHAND_CLI_H

#include <signal.h>
#include <stdbool.h>

#include "model/manifest.h"
#include "util/util.h"

enum cli_command {
	CLI_NONE,
	CLI_RUN,
	CLI_PLAN,
	CLI_CHECK,
	CLI_REPORT,
	CLI_CLOSURE,
};

struct cli;

/* One hop as given; strings borrowed from argv/env or owned by cli. */
struct cli_jump {
	const char *spec; /* "[ssh://]user@host[:port]" */
	const char *identity_file;
	const char *identity_env;
	const char *host_key;
};

/* A command's function: returns the exit code (EXIT_*). When the cause of
 * a non-zero code is not printed yet, err says it (code != SH_OK) and main
 * prints it. interrupted is main's SIGINT/SIGTERM flag. */
typedef int (*cli_cmd_fn)(const struct cli *cli,
    volatile sig_atomic_t *interrupted, struct errbuf *err);

#define CLI_CMD_SIGNALS 0x1u /* main installs the signal handlers first */

struct cli_cmd {
	const char *name;
	enum cli_command command;
	cli_cmd_fn fn;
	size_t min_args; /* positional arguments after the name */
	size_t max_args;
	const char *args; /* "one manifest": "'run' takes one manifest" */
	unsigned flags;   /* CLI_CMD_* */
};

struct cli {
	enum cli_command command;
	const char *command_name;
	const struct cli_cmd *cmd; /* the row of cmds; NULL with --help */
	struct strlist args;       /* manifests, or the report dir */
	const char *target;
	const char *identity_file;
	const char *identity_env;
	const char *known_hosts;
	const char *host_key;
	bool accept_new_host_key;
	unsigned connect_timeout_s;
	unsigned wait_host_s;   /* --wait-for-host; 0: one try */
	struct cli_jump *jumps; /* owned array, in order */
	size_t njumps;
	struct cli_jump jump_default; /* options given before any --jump */
	struct strlist jump_specs;    /* owns the specs split from lists */
	struct strlist vars_files;    /* in order given */
	struct strlist vars;          /* "k=v" from --var, in order */
	const char *report_dir;       /* default "stagehand-report" */
	struct strlist tags;
	struct strlist skip_tags;
	struct strlist from;         /* closure: substituter URLs */
	struct strlist trusted_keys; /* closure: "name:base64" */
	unsigned timeout_s;          /* closure: per request; 0 default */
	bool push;                   /* closure --mode push */
	bool mode_set;               /* --mode given */
	const char *start_at;
	const char *include_root;
	bool offline;
	bool json;
	bool registration; /* closure: print the load-db registration */
	bool keep_going;
	bool one_channel_per_step; /* remote.h: no privileged session */
	bool wait_lock;            /* --wait-lock: wait for the lock */
	unsigned wait_lock_s;      /* its SECS; 0: no limit */
	int verbosity;             /* -1 quiet, 0 normal, 1+ verbose */
	bool help;
	bool version;
};

/* --wait-lock=SECS at most a day. */
#define CLI_WAIT_LOCK_MAX 86400u
/* --wait-for-host SECS at most an hour. */
#define CLI_WAIT_HOST_MAX 3600u

/* cmds[0..ncmds) is the command table; cli->cmd points into it. */
int cli_parse(int argc, char **argv, const struct cli_cmd *cmds, size_t ncmds,
    struct cli *cli, struct errbuf *err);
void cli_free(struct cli *cli);
const char *cli_usage(void);

/*
 * `stagehand closure` (closure_cmd.c), a cli_cmd_fn: a SIGINT/SIGTERM
 * (interrupted) ends the resolution cleanly.
 */
int cmd_closure(const struct cli *cli, volatile sig_atomic_t *interrupted,
    struct errbuf *err);

#endif
