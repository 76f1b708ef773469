/*
 * steps/shell.c: the `shell` step kind: run a script on the target.
 *
 * Manifest: the body is the script text, or a map:
 *   script             required: the script text
 *   creates            a path (relative to cwd): when it exists the step is
 *                      ok and the script does not run
 *   unless             a command run by the wrapper's /bin/sh (with env
 *                      and cwd applied, output to the step's output): when
 *                      it exits 0 the step is ok and the script does not
 *                      run. It also runs during `plan`, so it must only read
 *   env                map NAME: value (NAME is [A-Za-z_][A-Za-z0-9_]*),
 *                      exported by the wrapper, never put on a command line
 *   cwd                directory to run in (default: the login directory)
 *   valid_exit_codes   int or list of ints 0-255, default [0]
 *   changed_exit_code  int 0-255. Unset: every valid exit means changed.
 *                      Set: exit changed_exit_code means changed (and is
 *                      valid), any other valid exit means ok (no change)
 *   shell              interpreter, default /bin/sh; gets the script as a
 *                      file argument (/dev/fd/3)
 *
 * How it runs (one round trip, and as few processes on the target as
 * we could make it: a step costs its processes, about 1 ms each on a
 * small VM, and sudo about 7): remote_run() sends the wrapper on stdin;
 * it cds, exports env, checks creates/unless itself, prints its verdict
 * line and then execs `$shell /dev/fd/3` with the user's script on fd 3
 * as a here-document (dash and bash feed a small one through a pipe; the
 * delimiter is a line the script does not contain), stdin from /dev/null
 * and stdout joined to stderr. So the script is in no file and on no
 * command line, and the wrapper's stdout carries only its verdict line,
 * which the user's output cannot be mixed into:
 *   stagehand-skip creates|unless     the script did not run
 *   stagehand-exec                    the script ran; the command's exit
 *                                     status is the script's
 * No verdict line means the wrapper itself failed (cd, sudo...): the step
 * fails with the remote exit status and the last stderr line. The user's
 * output (stdout and stderr interleaved) streams to the channel's stderr,
 * whose tail remote_run() keeps, and becomes res->output, also when the
 * step's timeout stops the script; res->exit_status is the exit status.
 * An invalid exit fails the step with "exit N: <last output line>"; a
 * script killed by a signal fails it with "killed by a signal: ...".
 *
 * Streaming has one cost: the step ends when the channel's stderr closes,
 * so a background process the script leaves running with its stdout or
 * stderr open keeps the step going until that process exits or the step
 * times out. Such a process wants its output redirected, e.g.
 * `daemon >/var/log/daemon.log 2>&1 &`.
 *
 * probe: without creates/unless, no round trip: changed, "would run:
 * <first line of the script>". With them, the same checks run read-only
 * on the target and changed tells whether the script would run (a cwd
 * that does not exist yet, e.g. made by an earlier step, means "would
 * run").
 *
 * Idempotence is the script's business; creates/unless/changed_exit_code
 * are the tools for it. Flags: not STEP_RETRY_SAFE, because running a
 * script twice may not be harmless: after a dropped connection the runner
 * retries a shell step only when the user set `retries`.
 */
#include <stdlib.h>
#include <string.h>

#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"
#include "util/redact.h"

/* Change lines show this much of the script's first line. */
#define SHELL_FIRST_LINE_MAX 100

struct shell_env {
	const char *name;  /* borrowed */
	const char *value; /* borrowed */
};

struct shell_cfg {
	const char *script;    /* borrowed */
	const char *creates;   /* borrowed; NULL: none */
	const char *unless;    /* borrowed; NULL: none */
	const char *cwd;       /* borrowed; NULL: none */
	const char *shell;     /* borrowed or the default */
	struct shell_env *env; /* owned array */
	size_t nenv;
	bool valid[256];
	int changed_code; /* -1: unset */
};

static const char *const shell_keys[] = {
	"script",
	"creates",
	"unless",
	"env",
	"cwd",
	"valid_exit_codes",
	"changed_exit_code",
	"shell",
	NULL,
};

/* ======================================================== parse */

static bool
shell_env_name_ok(const char *s)
{
	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') ||
	        s[0] == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		        (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static int
shell_no_nul(const struct node *n, const char *what, struct errbuf *err)
{
	if (n != NULL && n->type == NODE_SCALAR && strlen(n->str) != n->len)
		return node_err(err, n, "%s: must not contain NUL", what);
	return 0;
}

static int
shell_parse_env(
    const struct node *body, struct shell_cfg *c, struct errbuf *err)
{
	const struct node *env = node_get(body, "env");

	if (env == NULL)
		return 0;
	if (node_expect(env, NODE_MAP, "env", err) < 0)
		return -1;
	c->env = xcalloc(env->n ? env->n : 1, sizeof(*c->env));
	for (size_t i = 0; i < env->n; i++) {
		const struct node *k = env->keys[i], *v = env->items[i];

		if (!shell_env_name_ok(k->str))
			return node_err(
			    err, k, "env: bad variable name '%s'", k->str);
		if (node_expect(v, NODE_SCALAR, "env value", err) < 0 ||
		    shell_no_nul(v, "env value", err) < 0)
			return -1;
		c->env[c->nenv].name = k->str;
		c->env[c->nenv++].value = v->str;
	}
	return 0;
}

static int
shell_parse_codes(
    const struct node *body, struct shell_cfg *c, struct errbuf *err)
{
	const struct node *v = node_get(body, "valid_exit_codes");
	uint64_t code;

	c->changed_code = -1;
	if (v == NULL) {
		c->valid[0] = true;
	} else if (v->type == NODE_SCALAR) {
		if (node_as_u64(v, 255, &code, err) < 0)
			return -1;
		c->valid[code] = true;
	} else {
		if (node_expect(v, NODE_SEQ, "valid_exit_codes", err) < 0)
			return -1;
		if (v->n == 0)
			return node_err(err, v, "valid_exit_codes is empty");
		for (size_t i = 0; i < v->n; i++) {
			if (node_as_u64(v->items[i], 255, &code, err) < 0)
				return -1;
			c->valid[code] = true;
		}
	}
	/* Absent and null (`changed_exit_code: ~`) both leave the sentinel. */
	code = UINT64_MAX;
	if (node_opt_u64(body, "changed_exit_code", 255, &code, err) < 0)
		return -1;
	if (code == UINT64_MAX)
		return 0;
	c->changed_code = (int)code;
	c->valid[code] = true;
	return 0;
}

static int
shell_parse_map(
    const struct node *body, struct shell_cfg *c, struct errbuf *err)
{
	if (node_req_str(body, "script", &c->script, err) < 0 ||
	    node_opt_str(body, "creates", &c->creates, err) < 0 ||
	    node_opt_str(body, "unless", &c->unless, err) < 0 ||
	    node_opt_str(body, "cwd", &c->cwd, err) < 0 ||
	    node_opt_str(body, "shell", &c->shell, err) < 0 ||
	    shell_parse_env(body, c, err) < 0 ||
	    shell_parse_codes(body, c, err) < 0)
		return -1;
	for (const char *const *k = shell_keys; *k != NULL; k++)
		if (shell_no_nul(node_get(body, *k), *k, err) < 0)
			return -1;
	if (c->shell != NULL && c->shell[0] == '\0')
		return node_err(err, node_get(body, "shell"), "shell is empty");
	return 0;
}

static void
shell_release(void *cfg)
{
	struct shell_cfg *c = cfg;

	free(c->env);
}

static int
shell_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct shell_cfg *c = cfg;

	if (body->type == NODE_SCALAR) {
		c->script = body->str;
		c->valid[0] = true;
		c->changed_code = -1;
		if (shell_no_nul(body, "script", err) < 0)
			return -1;
	} else if (shell_parse_map(body, c, err) < 0) {
		return -1;
	}
	if (c->script[0] == '\0')
		return node_err(err, body, "shell: the script is empty");
	if (c->shell == NULL)
		c->shell = "/bin/sh";
	return 0;
}

/* The script and its `unless` are shell code (see model/kind.h). */
static size_t
shell_code(const struct node *body, const struct node **out, size_t max)
{
	const struct node *f[2] = { body, NULL };
	size_t n = 0;

	if (body->type == NODE_MAP) {
		f[0] = node_get(body, "script");
		f[1] = node_get(body, "unless");
	} else if (body->type != NODE_SCALAR) {
		return 0;
	}
	for (size_t i = 0; i < 2 && n < max; i++)
		if (f[i] != NULL)
			out[n++] = f[i];
	return n;
}

/* ======================================================== the wrapper */

/*
 * Inputs: SH CR HC (creates set) U HU (unless set) CD; env already
 * exported. RUN=0 stops after the checks (probe). With RUN=1 the script
 * follows as a here-document for fd 3 (see shell_script()).
 */
static const char shell_sh[] =
    "set -u\n"
    "if [ -n \"$CD\" ] && ! cd -- \"$CD\"; then\n"
    "\t[ \"$RUN\" = 0 ] && { echo 'stagehand-run'; exit 0; }\n"
    "\texit 1\n"
    "fi\n"
    "if [ \"$HC\" = 1 ] && { [ -e \"$CR\" ] || [ -L \"$CR\" ]; }; then\n"
    "\techo 'stagehand-skip creates'; exit 0\n"
    "fi\n"
    "if [ \"$HU\" = 1 ] && (set +u; eval \"$U\") </dev/null 1>&2; then\n"
    "\techo 'stagehand-skip unless'; exit 0\n"
    "fi\n"
    "if [ \"$RUN\" = 0 ]; then echo 'stagehand-run'; exit 0; fi\n";
/* Then, with RUN=1, the here-document's delimiter, "'\n" and the script. */
static const char shell_exec_sh[] =
    "echo 'stagehand-exec'\n"
    "exec \"$SH\" /dev/fd/3 </dev/null 1>&2 3<<'";

/*
 * A here-document delimiter that is no line of the script:
 * STAGEHAND_EOF, then _1, _2... until none matches.
 */
static void
shell_delim(const char *script, struct buf *d)
{
	for (unsigned n = 0;; n++) {
		const char *p = script;
		bool clash = false;

		buf_reset(d);
		if (n == 0)
			buf_adds(d, "STAGEHAND_EOF");
		else
			buf_addf(d, "STAGEHAND_EOF_%u", n);
		while (!clash && *p != '\0') {
			size_t len = strcspn(p, "\n");

			clash = len == d->len && memcmp(p, d->data, len) == 0;
			p += len + (p[len] == '\n');
		}
		if (!clash)
			return;
	}
}

/* The script as the wrapper's here-document: "D\n<script>\nD\n". */
static int
shell_heredoc(const char *script, struct buf *b)
{
	struct buf d;
	size_t len = strlen(script);
	int rc;

	buf_init(&d, 64);
	shell_delim(script, &d);
	rc = 0;
	if (buf_add(b, d.data, d.len) < 0 || buf_adds(b, "'\n") < 0 ||
	    buf_add(b, script, len) < 0 ||
	    (len > 0 && script[len - 1] != '\n' && buf_addc(b, '\n') < 0) ||
	    buf_add(b, d.data, d.len) < 0 || buf_addc(b, '\n') < 0)
		rc = -1;
	buf_release(&d);
	return rc;
}

static int
shell_script(const struct shell_cfg *c, enum step_mode mode, struct buf *b)
{
	if (stepsh_assign(b, "SH", c->shell) < 0 ||
	    stepsh_assign(b, "CR", c->creates ? c->creates : "") < 0 ||
	    stepsh_assign(b, "U", c->unless ? c->unless : "") < 0 ||
	    stepsh_assign(b, "CD", c->cwd ? c->cwd : "") < 0 ||
	    buf_addf(b, "HC=%d HU=%d RUN=%d\n", c->creates ? 1 : 0,
	        c->unless ? 1 : 0, mode == STEP_APPLY ? 1 : 0) < 0)
		return -1;
	for (size_t i = 0; i < c->nenv; i++) {
		if (buf_addf(b, "export %s=", c->env[i].name) < 0 ||
		    sh_quote(b, c->env[i].value) < 0 || buf_addc(b, '\n') < 0)
			return -1;
	}
	if (buf_adds(b, shell_sh) < 0)
		return -1;
	if (mode == STEP_PROBE)
		return 0;
	if (buf_adds(b, shell_exec_sh) < 0)
		return -1;
	return shell_heredoc(c->script, b);
}

/* The first line of the script that is not blank or a comment, for change
 * lines (redacted, then cut to SHELL_FIRST_LINE_MAX bytes: a cut of the raw
 * line could leave a piece of a secret) and describe (whole: main redacts
 * and cuts the plan line). rd may be NULL for describe. */
static void
shell_first_line(const struct redact *rd, const char *s, struct buf *out)
{
	size_t n;

	for (;;) {
		s += strspn(s, " \t\n");
		if (*s != '#')
			break;
		s += strcspn(s, "\n");
	}
	n = strcspn(s, "\n");
	if (rd != NULL && redact_cut(rd, s, n, SHELL_FIRST_LINE_MAX, out) < 0)
		return;
	if (rd == NULL && buf_add(out, s, n) < 0)
		return;
	if (s[n] != '\0' && s[n + strspn(s + n, " \t\n")] != '\0' &&
	    !(out->len >= 4 &&
	        memcmp(out->data + out->len - 4, " ...", 4) == 0))
		buf_adds(out, " ...");
}

/* Runs the wrapper; *verdict points into out->out (caller frees out). */
static int
shell_exec(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct remote_out *out, struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct buf script;
	int rc = -1;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (shell_script(step->cfg, mode, &script) < 0) {
		err_set(err, SH_ERR_STEP, "shell: script too long");
		goto out;
	}
	if (remote_script(&cmd, &script, err) < 0)
		goto out;
	cmd.become = step->become;
	cmd.timeout_s =
	    step->timeout_s ? step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	rc = remote_run(ctx, &cmd, out, err);
	step_result_output(res, out->err.data, out->err.len);
	if (rc < 0)
		goto out;
	rc = -1;
	if (!str_has_prefix(out->out.data, "stagehand-")) {
		remote_fail(
		    ctx->redact, err, &out->err, "exit %d", out->status);
		goto out;
	}
	rc = 0;
out:
	buf_release(&script); /* wiped: scripts may hold secrets */
	return rc;
}

/* The change line "ran: <first line>" or "would run: <first line>". */
static void
shell_change(const struct redact *rd, const struct shell_cfg *c,
    const char *verb, struct step_result *res)
{
	struct buf first;

	buf_init(&first, 4096);
	shell_first_line(rd, c->script, &first);
	step_result_change(res, "%s: %s", verb, first.data);
	buf_release(&first);
	res->changed = true;
}

static int
shell_verdict(const struct redact *rd, const struct shell_cfg *c,
    const struct remote_out *out, struct step_result *res, struct errbuf *err)
{
	const char *v = out->out.data + strlen("stagehand-");
	int code = out->status;

	if (str_has_prefix(v, "skip ")) {
		step_result_detail(res, "skipped_by", "%.*s",
		    (int)strcspn(v + 5, "\n"), v + 5);
		return 0;
	}
	if (strcmp(v, "exec\n") != 0)
		return err_set(
		    err, SH_ERR_INTERNAL, "shell: unexpected wrapper output");
	if (code < 0 || code > 255)
		return remote_fail(rd, err, &out->err, "killed by a signal");
	res->exit_status = code;
	if (!c->valid[code])
		return remote_fail(rd, err, &out->err, "exit %d", code);
	if (c->changed_code < 0 || code == c->changed_code)
		shell_change(rd, c, "ran", res);
	return 0;
}

/* probe needs no round trip when there is no creates/unless to check. */
static int
shell_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct shell_cfg *c = step->cfg;
	bool checks = c->creates != NULL || c->unless != NULL;
	struct remote_out out;
	int rc = 0;

	memset(&out, 0, sizeof(out));
	if (mode == STEP_APPLY || checks)
		rc = shell_exec(ctx, step, mode, &out, res, err);
	if (rc == 0 && mode == STEP_APPLY)
		rc = shell_verdict(ctx->redact, c, &out, res, err);
	else if (rc == 0 &&
	         (!checks || strcmp(out.out.data, "stagehand-run\n") == 0))
		shell_change(ctx->redact, c, "would run", res);
	remote_out_free(&out);
	return rc;
}

static void
shell_describe(const struct step *step, struct buf *out)
{
	const struct shell_cfg *c = step->cfg;

	buf_adds(out, "shell ");
	shell_first_line(NULL, c->script, out);
	if (c->creates != NULL)
		buf_addf(out, " (creates %s)", c->creates);
	if (c->unless != NULL)
		buf_adds(out, " (unless ...)");
}

const struct step_kind step_kind_shell = {
	.name = "shell",
	.flags = STEP_BODY_SCALAR,
	.keys = shell_keys,
	.cfg_size = sizeof(struct shell_cfg),
	.parse = shell_parse,
	.run = shell_run,
	.describe = shell_describe,
	.release = shell_release,
	.code = shell_code,
};
