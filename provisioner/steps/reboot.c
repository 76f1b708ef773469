/*
 * steps/reboot.c: the `reboot` step kind: reboot the target, wait for it
 * to come back, and go on with the stage on a new session.
 *
 * Manifest fields (the body is a map; `reboot: {}` takes the defaults):
 *   command    the command that reboots, run by sh on the target with the
 *              step's become (default root), default `systemctl reboot`.
 *              Must not be empty. It runs detached (setsid), so that it
 *              outlives the session it was started from; the step waits up
 *              to 5 s for it to end, and a non-zero exit within that time
 *              fails the step with "reboot command failed: exit N: <its
 *              last output line>" (no reboot to wait for). A command still
 *              running after 5 s, or one that ends the session before its
 *              exit is seen, counts as issued.
 *   wait       seconds to wait for the target to come back, counted from
 *              when the command was issued: 1 to 604800, default 600. The
 *              step's own `timeout` bounds only the command's script.
 *
 * After the command, the session is closed and new ones are tried with
 * backoff (1 s, 2, 3, then every 5 s; run_ctx_reconnect_until()) until one
 * reaches a boot whose /proc/sys/kernel/random/boot_id differs from the one
 * read just before the command: that proves the reboot happened, and a
 * session that still reaches the old boot (sshd not stopped yet) does not
 * count. The target lock lives in /run/lock, which a reboot empties; it is
 * taken again on the new session. The run's facts (boot_id, hostname) are
 * the new boot's from then on.
 *
 * Results: res->details boot_id_before, boot_id_after and seconds (from
 * the command to the new session, one decimal). Errors: the target not
 * back within `wait`: SH_ERR_UNREACHABLE (exit 69) "HOST did not come back
 * within N s: <last try's error>"; still on the old boot at the deadline:
 * SH_ERR_TIMEOUT (exit 1) "HOST did not go down within N s"; SIGINT/SIGTERM
 * while waiting: SH_ERR_INTERRUPTED at once; a host key or login refused on
 * the new boot: SH_ERR_TRUST (exit 77); the lock taken by another run in the
 * meantime: SH_ERR_LOCKED (exit 75). The step handles its own expected
 * disconnect, so the runner never sees it as a dropped session.
 *
 * probe (plan): no round trip and no reboot: changed, "reboot HOST".
 * apply: always changed ("reboot HOST"); a reboot is never idempotent, so
 * guard the step with `when` where it must not repeat. Flags: not
 * STEP_RETRY_SAFE: the runner never runs a reboot again after a dropped
 * connection.
 */
#include <stdio.h>
#include <string.h>

#include "report/ui.h"
#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"

#define REBOOT_DEFAULT_COMMAND "systemctl reboot"
#define REBOOT_DEFAULT_WAIT_S 600

struct reboot_cfg {
	const char *command; /* borrowed or the default */
	unsigned wait_s;
};

static const char *const reboot_keys[] = {
	"command",
	"wait",
	NULL,
};

/* Null (`wait: ~`) is absent, as for every kind. */
static int
reboot_parse_wait(
    const struct node *body, struct reboot_cfg *c, struct errbuf *err)
{
	const struct node *w = node_get(body, "wait");
	uint64_t v = REBOOT_DEFAULT_WAIT_S;

	if (w != NULL && !node_is_null(w) &&
	    (w->type != NODE_SCALAR ||
	        parse_u64(w->str, w->len, STEP_MAX_TIMEOUT_S, &v) < 0 ||
	        v == 0))
		return node_err(err, w,
		    "'wait' must be a whole number of seconds from 1 to %u, "
		    "got %s%s%s",
		    STEP_MAX_TIMEOUT_S, w->type == NODE_SCALAR ? "'" : "a ",
		    w->type == NODE_SCALAR ? w->str : node_type_name(w->type),
		    w->type == NODE_SCALAR ? "'" : "");
	c->wait_s = (unsigned)v;
	return 0;
}

static int
reboot_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct reboot_cfg *c = cfg;

	if (node_opt_str(body, "command", &c->command, err) < 0)
		return -1;
	if (c->command != NULL &&
	    c->command[strspn(c->command, " \t\n")] == '\0')
		return node_err(err, node_get(body, "command"),
		    "command: must not be empty");
	if (c->command == NULL)
		c->command = REBOOT_DEFAULT_COMMAND;
	return reboot_parse_wait(body, c, err);
}

/* The command is shell code (see model/kind.h). */
static size_t
reboot_code(const struct node *body, const struct node **out, size_t max)
{
	const struct node *cmd = node_get(body, "command");

	if (cmd == NULL || max == 0)
		return 0;
	out[0] = cmd;
	return 1;
}

/*
 * Input: R, the command. stdout: "boot <id>", then "issued", or "failed
 * N" (the command's exit status, its output on stderr). The command gets a
 * session of its own (setsid), out of reach of remote.c's watchdog and of
 * the session's end, and a subshell, so that an `exit` in it is its
 * status; its output and status go to a private directory.
 */
static const char reboot_sh[] =
    "set -u\n"
    "b=$(cat /proc/sys/kernel/random/boot_id) || exit 1\n"
    "echo \"boot $b\"\n"
    "d=$(mktemp -d) || exit 1\n"
    "export R D=\"$d\"\n"
    "setsid sh -c '(eval \"$R\") >\"$D/out\" 2>&1; echo \"$?\" >\"$D/rc\"' "
    "</dev/null >/dev/null 2>&1 &\n"
    "i=0\n"
    "while [ ! -s \"$d/rc\" ] && [ \"$i\" -lt 50 ]; do\n"
    "\tsleep 0.1; i=$((i + 1))\n"
    "done\n"
    "c=$(cat \"$d/rc\" 2>/dev/null) || c=\n"
    "if [ -n \"$c\" ] && [ \"$c\" != 0 ]; then\n"
    "\tcat \"$d/out\" >&2; rm -rf \"$d\"\n"
    "\techo \"failed $c\"; exit \"$c\"\n"
    "fi\n"
    "rm -rf \"$d\"\n"
    "echo issued\n";

/*
 * Whether stdout has the line "<key>" or "<key> <value>"; val (may be
 * NULL) gets the value of the first, "" when there is none.
 */
static bool
reboot_line(const struct buf *out, const char *key, struct buf *val)
{
	size_t klen = strlen(key);
	const char *p = out->data;

	if (val != NULL)
		buf_reset(val);
	while (*p != '\0') {
		size_t len = strcspn(p, "\n");

		if (len >= klen && memcmp(p, key, klen) == 0 &&
		    (len == klen || p[klen] == ' ')) {
			if (val != NULL && len > klen)
				buf_add(val, p + klen + 1, len - klen - 1);
			return true;
		}
		p += len + (p[len] == '\n');
	}
	return false;
}

/*
 * Runs the command; *before gets the boot id read just before it. 0: the
 * reboot was issued (or the session went while it was: the wait decides).
 */
static int
reboot_issue(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct buf *before, struct errbuf *err)
{
	const struct reboot_cfg *c = step->cfg;
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out o;
	struct buf sc;
	bool failed;
	int rc = -1;

	memset(&o, 0, sizeof(o));
	buf_init(&sc, REMOTE_SCRIPT_MAX);
	if (stepsh_assign(&sc, "R", c->command) < 0 ||
	    buf_adds(&sc, reboot_sh) < 0) {
		err_set(err, SH_ERR_INTERNAL, "reboot: script too long");
		goto out;
	}
	if (remote_script(&cmd, &sc, err) < 0)
		goto out;
	cmd.become = step->become;
	cmd.timeout_s =
	    step->timeout_s ? step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	cmd.stdout_is_protocol = true;
	rc = remote_run(ctx, &cmd, &o, err);
	step_result_output(res, o.err.data, o.err.len);
	reboot_line(&o.out, "boot", before);
	if (rc < 0) {
		/* The session went under the command: it did its work. */
		if (err->code == SH_ERR_SSH && before->len > 0) {
			err_clear(err);
			rc = 0;
		}
		goto out;
	}
	res->exit_status = o.status;
	if (reboot_line(&o.out, "issued", NULL))
		goto out;
	failed = reboot_line(&o.out, "failed", NULL);
	/* Neither verdict and no exit status of its own (0: none came; -1:
	 * killed): the shutdown cut the script short, as above. */
	if (!failed && before->len > 0 && o.status <= 0)
		goto out;
	rc = remote_fail(ctx->redact, err, &o.err, "%s: exit %d",
	    failed ? "reboot command failed" : "reboot", o.status);
out:
	remote_out_free(&o);
	buf_release(&sc);
	return rc;
}

static int
reboot_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct reboot_cfg *c = step->cfg;
	const char *host =
	    ctx->ssh_opts.host != NULL ? ctx->ssh_opts.host : "the target";
	uint64_t t0 = now_ms(), issued;
	struct buf before;
	double secs;
	int rc = -1;

	if (mode == STEP_PROBE) {
		res->changed = true;
		step_result_change(res, "reboot %s", host);
		return 0;
	}
	buf_init(&before, 256);
	if (reboot_issue(ctx, step, res, &before, err) < 0)
		goto out;
	issued = now_ms();
	res->changed = true;
	step_result_change(res, "reboot %s", host);
	step_result_detail(res, "boot_id_before", "%s", before.data);
	ui_notice(ctx->ui,
	    "rebooting %s; waiting up to %u s for it to come back", host,
	    c->wait_s);
	if (run_ctx_reconnect_until(ctx, issued + (uint64_t)c->wait_s * 1000u,
	        before.data, err) < 0)
		goto out;
	step_result_detail(res, "boot_id_after", "%s",
	    ctx->facts.boot_id != NULL ? ctx->facts.boot_id : "");
	secs = (double)(now_ms() - t0) / 1000.0;
	step_result_detail(res, "seconds", "%.1f", secs);
	ui_notice(ctx->ui, "%s is back after %.0f s", host, secs);
	rc = 0;
out:
	buf_release(&before);
	return rc;
}

static void
reboot_describe(const struct step *step, struct buf *out)
{
	const struct reboot_cfg *c = step->cfg;

	buf_addf(out, "reboot: %s (wait up to %u s)", c->command, c->wait_s);
}

const struct step_kind step_kind_reboot = {
	.name = "reboot",
	.flags = 0,
	.keys = reboot_keys,
	.cfg_size = sizeof(struct reboot_cfg),
	.parse = reboot_parse,
	.run = reboot_run,
	.describe = reboot_describe,
	.code = reboot_code,
};
