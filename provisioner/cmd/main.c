/*
 * main.c: the stagehand command. Parses the command line, loads the
 * manifest, builds the run context, runs, writes the report and maps the
 * outcome to an exit code. The only place that prints errors.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "model/manifest.h"
#include "report/report.h"
#include "report/ui.h"
#include "run/runner.h"
#include "steps/registry.h"
#include "transport/ssh.h"
#include "util/limits.h"
#include "util/redact.h"
#include "util/util.h"

#ifndef STAGEHAND_VERSION
#define STAGEHAND_VERSION "0.0.0"
#endif

/*
 * The one piece of process-wide state: async-signal-safe, written only by
 * the handler, read through run_ctx->interrupted.
 */
static volatile sig_atomic_t got_signal;

static void
on_signal(int sig)
{
	got_signal = sig;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocked poll() must return so we can stop. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/*
 * This process holds key text, secrets and the session: no core file
 * (RLIMIT_CORE 0), and not dumpable, so other processes of the same user
 * can neither ptrace it nor read its /proc/PID/mem or environ. What it
 * writes locally (the report, run.log) is for its user alone (umask 077:
 * files 0600, directories 0700); a report directory that already exists
 * keeps its mode.
 */
static void
harden_process(void)
{
	struct rlimit none = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &none);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)umask(077);
}

static int
fail(const struct errbuf *err)
{
	fprintf(stderr, "stagehand: %s\n", err->msg);
	return sh_exit_code(err->code);
}

/* ======================================================== variables */

struct cli_vars {
	struct vars_file *files; /* owned, one per --vars-file */
	size_t nfiles;
	struct var_override *all; /* owned array; strings borrowed */
	size_t n;
};

static void
cli_vars_free(struct cli_vars *cv)
{
	for (size_t i = 0; i < cv->nfiles; i++)
		manifest_vars_free(&cv->files[i]);
	free(cv->files);
	free(cv->all);
	memset(cv, 0, sizeof(*cv));
}

static void
push_override(struct cli_vars *cv, const char *name, const char *value,
    const char *origin)
{
	cv->all = xreallocarray(cv->all, cv->n + 1, sizeof(*cv->all));
	cv->all[cv->n].name = name;
	cv->all[cv->n].value = value;
	cv->all[cv->n].origin = origin;
	cv->n++;
}

/* --vars-file entries first, then --var, as manifest.h expects. */
static int
collect_vars(const struct cli *cli, struct strlist *names, struct cli_vars *cv,
    struct errbuf *err)
{
	memset(cv, 0, sizeof(*cv));
	cv->files = xcalloc(cli->vars_files.n, sizeof(*cv->files));
	for (size_t i = 0; i < cli->vars_files.n; i++) {
		if (manifest_vars_file(
		        cli->vars_files.v[i], &cv->files[i], err) < 0)
			return -1;
		cv->nfiles++;
		for (size_t k = 0; k < cv->files[i].n; k++)
			push_override(cv, cv->files[i].vars[k].name,
			    cv->files[i].vars[k].value,
			    cv->files[i].vars[k].origin);
	}
	for (size_t i = 0; i < cli->vars.n; i++) {
		const char *eq = strchr(cli->vars.v[i], '=');

		strlist_push_owned(names,
		    xstrndup(cli->vars.v[i], (size_t)(eq - cli->vars.v[i])));
		push_override(cv, names->v[names->n - 1], eq + 1, "--var");
	}
	return 0;
}

/*
 * A manifest that fails to load may quote a secret in its error ("got
 * '<value>'") before the run knows which variables are secret. So every
 * value that could be one is masked in that message: each STAGEHAND_VAR_*
 * and each vars-file value (--var cannot hold a secret).
 */
static void
redact_load_error(const struct cli_vars *cv, struct errbuf *err)
{
	struct redact r;
	struct buf clean;

	redact_init(&r);
	for (char **e = environ; e != NULL && *e != NULL; e++)
		if (str_has_prefix(*e, "STAGEHAND_VAR_") && strchr(*e, '='))
			redact_add(&r, strchr(*e, '=') + 1);
	for (size_t i = 0; i < cv->n; i++)
		if (strcmp(cv->all[i].origin, "--var") != 0)
			redact_add(&r, cv->all[i].value);
	buf_init(&clean, redact_max(sizeof(err->msg)));
	if (redact_text(&r, err->msg, strlen(err->msg), &clean) < 0) {
		buf_reset(&clean);
		buf_adds(&clean, "error withheld: redaction failed");
	}
	if (clean.len >= sizeof(err->msg))
		clean.len = sizeof(err->msg) - 1; /* cut after redaction */
	memcpy(err->msg, clean.data, clean.len);
	err->msg[clean.len] = '\0';
	buf_release(&clean);
	redact_free(&r);
}

static int
load_manifest(const struct cli *cli, const char *path, struct manifest **m,
    struct errbuf *err)
{
	struct manifest_opts mo = { .include_root = cli->include_root,
		.env_vars = true };
	struct strlist names = { 0 };
	struct cli_vars cv;
	int rc;

	rc = collect_vars(cli, &names, &cv, err);
	if (rc == 0) {
		mo.vars = cv.all;
		mo.nvars = cv.n;
		rc = manifest_load(path, step_kinds(), &mo, m, err);
	}
	/* A manifest or vars file that cannot be read is a bad argument. */
	if (rc < 0 && err->code == SH_ERR_IO)
		err->code = SH_ERR_USAGE;
	if (rc < 0)
		redact_load_error(&cv, err);
	cli_vars_free(&cv);
	strlist_free(&names);
	return rc;
}

/* ======================================================== commands */

/* Prints each manifest's own error as it goes: several may fail. */
static int
cmd_check(const struct cli *cli, volatile sig_atomic_t *interrupted,
    struct errbuf *unused)
{
	int worst = EXIT_OK;

	(void)interrupted;
	(void)unused;
	for (size_t i = 0; i < cli->args.n; i++) {
		struct manifest *m = NULL;
		struct errbuf err;

		if (load_manifest(cli, cli->args.v[i], &m, &err) < 0) {
			fprintf(stderr, "%s\n", err.msg);
			if (worst == EXIT_OK)
				worst = sh_exit_code(err.code);
			continue;
		}
		/* Warnings do not change the exit code: see manifest.h. */
		for (size_t w = 0; w < m->warnings.n; w++)
			fprintf(stderr, "%s\n", m->warnings.v[w]);
		if (cli->verbosity >= 0)
			printf("%s: ok (stage %s, %zu steps)\n", cli->args.v[i],
			    m->stage, m->nsteps);
		manifest_free(m);
	}
	return worst;
}

/* Describing a step may show interpolated secrets: redact what we print,
 * and cut a description only after it was redacted. */
static int
cmd_plan_offline(const struct manifest *m, const struct redact *redact)
{
	struct buf line, desc, clean;

	buf_init(&line, 1u << 20);
	buf_init(&desc, 1u << 20);
	buf_init(&clean, redact_max(1u << 20));
	printf("stage %s: %zu steps (offline: nothing was probed)\n", m->stage,
	    m->nsteps);
	for (size_t i = 0; i < m->nsteps; i++) {
		const struct step *s = &m->steps[i];

		buf_reset(&line);
		buf_reset(&desc);
		buf_reset(&clean);
		buf_addf(&line, "[%*zu/%zu] %-8s %s\n        ",
		    m->nsteps >= 10 ? 2 : 1, i + 1, m->nsteps, s->kind->name,
		    s->name);
		s->kind->describe(s, &desc);
		if (redact_text(redact, line.data, line.len, &clean) == 0 &&
		    redact_cut(redact, desc.data, desc.len, PLAN_DESCRIBE_MAX,
		        &clean) == 0 &&
		    buf_adds(&clean, s->enabled ? "\n" : "  (when: false)\n") ==
		        0)
			fputs(clean.data, stdout);
	}
	buf_release(&line);
	buf_release(&desc);
	buf_release(&clean);
	return EXIT_OK;
}

/* Key lines are added so a key pasted into a log is still caught. */
static void
redact_key_text(struct redact *r, const char *text)
{
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len >= 16 && !str_has_prefix(p, "-----")) {
			char *line = xstrndup(p, len);

			redact_add(r, line);
			explicit_bzero(line, len);
			free(line);
		}
		p += len + (nl ? 1 : 0);
	}
}

static void
collect_secrets(
    const struct cli *cli, const struct manifest *m, struct redact *r)
{
	struct buf key;
	struct errbuf ignored;

	for (size_t i = 0; i < m->nvars; i++)
		if (m->vars[i].secret && m->vars[i].value != NULL)
			redact_add(r, m->vars[i].value);
	if (cli->identity_env && getenv(cli->identity_env))
		redact_key_text(r, getenv(cli->identity_env));
	if (cli->identity_file && file_read(cli->identity_file,
	                              SSH_KEY_MAX_BYTES, &key, &ignored) == 0)
		redact_key_text(r, key.data);
	if (cli->identity_file)
		buf_release(&key);
	for (size_t i = 0; i <= cli->njumps; i++) {
		const struct cli_jump *j =
		    i < cli->njumps ? &cli->jumps[i] : &cli->jump_default;

		if (j->identity_env && getenv(j->identity_env))
			redact_key_text(r, getenv(j->identity_env));
		if (j->identity_file &&
		    file_read(j->identity_file, SSH_KEY_MAX_BYTES, &key,
		        &ignored) == 0)
			redact_key_text(r, key.data);
		if (j->identity_file)
			buf_release(&key);
	}
}

/* ssh_opts.note: -v lines from the ssh module (skipped known_hosts lines). */
static void
ssh_note(void *arg, const char *msg)
{
	struct run_ctx *ctx = arg;

	ui_notice(ctx->ui, "%s", msg);
}

/* The jump hosts of the command line, and the strings they point to. */
struct jumps {
	struct ssh_jump *v; /* owned */
	size_t n;
	struct strlist strs; /* owns the parsed users and hosts */
};

static void
jumps_free(struct jumps *js)
{
	free(js->v);
	strlist_free(&js->strs);
	memset(js, 0, sizeof(*js));
}

/*
 * Each hop's key: its own --jump-identity(-env), else the one given before
 * any --jump, else the target's; its pin likewise, but never the
 * target's. Checked as the target's are, before any packet.
 */
static int
setup_jumps(const struct cli *cli, struct jumps *js, struct errbuf *err)
{
	const struct cli_jump *d = &cli->jump_default;

	js->v = cli->njumps ? xcalloc(cli->njumps, sizeof(*js->v)) : NULL;
	for (size_t i = 0; i < cli->njumps; i++) {
		const struct cli_jump *cj = &cli->jumps[i];
		struct ssh_jump *j = &js->v[i];
		char *user, *host;
		unsigned port;

		if (ssh_target_parse(cj->spec, &user, &host, &port, err) < 0)
			return err_prefix(err, "--jump: ");
		strlist_push_owned(&js->strs, user);
		strlist_push_owned(&js->strs, host);
		js->n = i + 1;
		j->user = user;
		j->host = host;
		j->port = port;
		if (cj->identity_file || cj->identity_env) {
			j->identity_file = cj->identity_file;
			j->identity_env = cj->identity_env;
		} else if (d->identity_file || d->identity_env) {
			j->identity_file = d->identity_file;
			j->identity_env = d->identity_env;
		} else {
			j->identity_file = cli->identity_file;
			j->identity_env = cli->identity_env;
		}
		j->host_key_pin = cj->host_key ? cj->host_key : d->host_key;
		if (j->identity_env && getenv(j->identity_env) == NULL)
			return err_set(err, SH_ERR_USAGE,
			    "jump host %s: environment variable %s is not set",
			    cj->spec, j->identity_env);
		if (j->identity_file && access(j->identity_file, R_OK) < 0)
			return err_set(err, SH_ERR_USAGE,
			    "jump host %s: identity file %s: %s", cj->spec,
			    j->identity_file, strerror(errno));
	}
	return 0;
}

static int
setup_target(const struct cli *cli, struct run_ctx *ctx, char **user,
    char **host, struct jumps *js, struct errbuf *err)
{
	unsigned port = 22;

	*user = *host = NULL;
	if (cli->target == NULL || cli->target[0] == '\0')
		return err_set(err, SH_ERR_USAGE,
		    "no target: give --target ssh://USER@HOST[:PORT] or set "
		    "STAGEHAND_TARGET");
	if (ssh_target_parse(cli->target, user, host, &port, err) < 0)
		return -1;
	if (cli->identity_env && getenv(cli->identity_env) == NULL)
		return err_set(err, SH_ERR_USAGE,
		    "--identity-env: environment variable %s is not set",
		    cli->identity_env);
	if (cli->identity_file && access(cli->identity_file, R_OK) < 0)
		return err_set(err, SH_ERR_USAGE, "identity file %s: %s",
		    cli->identity_file, strerror(errno));
	if (setup_jumps(cli, js, err) < 0)
		return -1;
	ctx->have_target = true;
	ctx->ssh_opts = (struct ssh_opts){
		.user = *user,
		.host = *host,
		.port = port,
		.identity_file = cli->identity_file,
		.identity_env = cli->identity_env,
		.known_hosts = cli->known_hosts,
		.host_key_pin = cli->host_key,
		.accept_new_host_key = cli->accept_new_host_key,
		.connect_timeout_s = cli->connect_timeout_s,
		.interrupted = ctx->interrupted,
		.note = cli->verbosity > 0 ? ssh_note : NULL,
		.note_arg = ctx,
		.jumps = js->v,
		.njumps = js->n,
	};
	return 0;
}

static const char *
run_status(const struct manifest *m, const struct step_result *res,
    int exit_code, const struct errbuf *run_err)
{
	if (run_err->code == SH_ERR_INTERRUPTED)
		return "interrupted";
	for (size_t i = 0; i < m->nsteps; i++)
		if (res[i].status == STEP_INTERRUPTED)
			return "interrupted";
	return exit_code == EXIT_OK ? "passed" : "failed";
}

static int
write_report(const struct cli *cli, struct run_ctx *ctx,
    const struct step_result *res, int exit_code, const struct errbuf *run_err,
    const struct redact *redact)
{
	const struct manifest *m = ctx->manifest;
	struct report_run rr = {
		.version = STAGEHAND_VERSION,
		.command = cli->command_name,
		.manifest = m,
		.results = res,
		.target_user = ctx->ssh_opts.user,
		.target_host = ctx->ssh_opts.host,
		.target_port = ctx->ssh_opts.port,
		.facts = &ctx->facts,
		.started_at = ctx->started_at,
		.finished_at = (int64_t)time(NULL),
		.duration_ms = now_ms() - ctx->started_ms,
		.status = run_status(m, res, exit_code, run_err),
		.exit_code = exit_code,
		.run_err = run_err,
		.redact = redact,
	};
	struct errbuf err;
	const struct ssh_opts *so = &ctx->ssh_opts;
	struct report_jump *hops =
	    so->njumps ? xcalloc(so->njumps, sizeof(*hops)) : NULL;
	int rc;

	for (size_t i = 0; i < so->njumps; i++) {
		struct ssh_jump_key k;

		hops[i].user = so->jumps[i].user;
		hops[i].host = so->jumps[i].host;
		hops[i].port = so->jumps[i].port;
		if (ctx->ssh != NULL &&
		    ssh_jump_host_key(ctx->ssh, i, &k) == 0) {
			hops[i].host_key_fingerprint = k.fingerprint;
			hops[i].host_key_type = k.type;
			hops[i].host_key_accepted = k.accepted;
		}
	}
	rr.jumps = hops;
	rr.njumps = so->njumps;
	if (ctx->ssh != NULL) {
		rr.host_key_fingerprint = ssh_host_key_fingerprint(ctx->ssh);
		rr.host_key_type = ssh_host_key_type(ctx->ssh);
		rr.host_key_accepted = ssh_host_key_accepted(ctx->ssh);
		rr.reconnects = ssh_reconnect_count(ctx->ssh);
	}
	ui_run_end(ctx->ui, m, res, rr.status, rr.duration_ms, run_err);
	if (run_err->code != SH_OK) {
		struct buf msg;

		buf_init(&msg, redact_max(sizeof(run_err->msg)));
		if (redact_text(
		        redact, run_err->msg, strlen(run_err->msg), &msg) == 0)
			fprintf(stderr, "stagehand: %s\n", msg.data);
		buf_release(&msg);
	}
	rc = report_write(cli->report_dir, &rr, &err) < 0 ||
	             ui_close_log(ctx->ui, &err) < 0
	         ? -1
	         : 0;
	free(hops);
	if (rc < 0) {
		fprintf(stderr, "stagehand: report: %s\n", err.msg);
		return exit_code == EXIT_OK ? EXIT_STEP_FAILED : exit_code;
	}
	return exit_code;
}

static int
execute(const struct cli *cli, struct manifest *m, struct run_ctx *ctx,
    struct redact *redact)
{
	struct step_result *res = xcalloc(m->nsteps, sizeof(*res));
	struct errbuf run_err, err;
	int exit_code;

	if (ui_open_log(ctx->ui, cli->report_dir, &err) < 0) {
		free(res);
		return fail(&err);
	}
	ui_run_start(ctx->ui, cli->command_name, m, cli->target);
	exit_code = runner_run(ctx, res, &run_err);
	exit_code = write_report(cli, ctx, res, exit_code, &run_err, redact);
	for (size_t i = 0; i < m->nsteps; i++)
		step_result_free(&res[i]);
	free(res);
	return exit_code;
}

static int
check_start_at(
    const struct cli *cli, const struct manifest *m, struct errbuf *err)
{
	if (cli->start_at == NULL)
		return 0;
	for (size_t i = 0; i < m->nsteps; i++)
		if (strcmp(m->steps[i].name, cli->start_at) == 0)
			return 0;
	return err_set(
	    err, SH_ERR_USAGE, "--start-at: no step named '%s'", cli->start_at);
}

/* run and plan; prints its errors through fail() (this file). */
static int
cmd_run(const struct cli *cli, volatile sig_atomic_t *interrupted,
    struct errbuf *unused)
{
	struct run_opts ro = { .plan = cli->command == CLI_PLAN,
		.tags = cli->tags,
		.skip_tags = cli->skip_tags,
		.start_at = cli->start_at,
		.keep_going = cli->keep_going,
		.one_channel_per_step = cli->one_channel_per_step,
		.host_wait_s = cli->wait_host_s,
		.lock = cli->command == CLI_RUN,
		.lock_wait_s = !cli->wait_lock    ? 0
		               : cli->wait_lock_s ? (int)cli->wait_lock_s
		                                  : -1 };
	struct ui_opts uo = { .verbosity = cli->verbosity, .json = cli->json };
	struct run_ctx ctx = { .opts = &ro, .interrupted = interrupted };
	struct manifest *m = NULL;
	struct redact redact;
	char *user = NULL, *host = NULL;
	struct jumps js = { NULL, 0, { NULL, 0 } };
	struct errbuf err;
	int rc;

	(void)unused;
	if (load_manifest(cli, cli->args.v[0], &m, &err) < 0)
		return fail(&err);
	if (check_start_at(cli, m, &err) < 0) {
		manifest_free(m);
		return fail(&err);
	}
	redact_init(&redact);
	collect_secrets(cli, m, &redact);
	if (cli->offline) {
		rc = cmd_plan_offline(m, &redact);
		goto out;
	}
	if (setup_target(cli, &ctx, &user, &host, &js, &err) < 0) {
		rc = fail(&err);
		goto out;
	}
	ctx.manifest = m;
	ctx.started_at = (int64_t)time(NULL);
	ctx.started_ms = now_ms();
	ctx.ui = ui_new(&uo, &redact);
	ctx.notice = ui_notice;
	ctx.redact = &redact;
	install_signals();
	rc = execute(cli, m, &ctx, &redact);
	run_ctx_release(&ctx);
	ui_free(ctx.ui);
out:
	redact_free(&redact);
	manifest_free(m);
	free(user);
	free(host);
	jumps_free(&js);
	return rc;
}

static int
cmd_report(const struct cli *cli, volatile sig_atomic_t *interrupted,
    struct errbuf *err)
{
	int rc = report_show(cli->args.v[0], stdout, cli->json, err);

	(void)interrupted;
	if (rc < 0) {
		if (err->code == SH_OK) /* main prints err: never silently */
			err->code = SH_ERR_USAGE;
		return EXIT_USAGE;
	}
	return rc;
}

/*
 * The commands: function, positional arguments, flags. cli_parse() checks
 * the name and the count; main() calls fn and prints what it returns.
 */
static const struct cli_cmd commands[] = {
	{ "run", CLI_RUN, cmd_run, 1, 1, "one manifest", 0 },
	{ "plan", CLI_PLAN, cmd_run, 1, 1, "one manifest", 0 },
	{ "check", CLI_CHECK, cmd_check, 1, 1000, "one or more manifests", 0 },
	{ "report", CLI_REPORT, cmd_report, 1, 1, "one report dir", 0 },
	{ "closure", CLI_CLOSURE, cmd_closure, 1, 1, "one store path",
	    CLI_CMD_SIGNALS },
};

int
main(int argc, char **argv)
{
	struct cli cli;
	struct errbuf err;
	int rc = EXIT_OK;

	harden_process();
	if (cli_parse(argc, argv, commands,
	        sizeof(commands) / sizeof(*commands), &cli, &err) < 0) {
		fprintf(stderr, "stagehand: %s\n%s", err.msg, cli_usage());
		cli_free(&cli);
		return EXIT_USAGE;
	}
	if (cli.help || cli.version) {
		fputs(cli.help ? cli_usage()
		               : "stagehand " STAGEHAND_VERSION "\n",
		    stdout);
		cli_free(&cli);
		return EXIT_OK;
	}
	if (cli.cmd->flags & CLI_CMD_SIGNALS)
		install_signals();
	err_clear(&err);
	rc = cli.cmd->fn(&cli, &got_signal, &err);
	if (rc != EXIT_OK && err.code != SH_OK)
		fprintf(stderr, "stagehand: %s\n", err.msg);
	cli_free(&cli);
	return rc;
}
