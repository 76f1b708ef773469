/*
 * target/ctx.c: the run context's session: the lazy connect, the facts
 * round trip, the target lock, and the reconnect. See ctx.h.
 */
#include "target/ctx.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "target/remote.h"
#include "util/limits.h"

/* ======================================================== target facts */

static char *
next_line(char **p)
{
	char *line = *p, *nl;

	if (line == NULL || *line == '\0')
		return NULL;
	nl = strchr(line, '\n');
	if (nl != NULL) {
		*nl = '\0';
		*p = nl + 1;
	} else {
		*p = line + strlen(line);
	}
	return line;
}

static void
facts_free(struct target_facts *f)
{
	free(f->hostname);
	free(f->system);
	free(f->boot_id);
	memset(f, 0, sizeof(*f));
}

/* One round trip: arch, hostname, boot_id into f (empty on entry).
 * Nothing here is secret. */
static int
learn_facts(struct run_ctx *ctx, struct target_facts *f, struct errbuf *err)
{
	struct buf out;
	struct ssh_io io = { .stdin_fd = -1, .stdout_fd = -1, .out = &out };
	struct ssh_exit st;
	char *p, *arch, *host, *boot;
	int rc = -1;

	buf_init(&out, 4096);
	io.deadline_ms = now_ms() + SSH_CONNECT_TIMEOUT_S * 1000u;
	if (ssh_exec(ctx->ssh,
	        "uname -m; uname -n; "
	        "cat /proc/sys/kernel/random/boot_id",
	        &io, &st, err) < 0)
		goto out;
	p = out.data;
	arch = next_line(&p);
	host = next_line(&p);
	boot = next_line(&p);
	if (st.status != 0 || arch == NULL || host == NULL || boot == NULL) {
		err_set(err, SH_ERR_REMOTE,
		    "cannot read the target's facts (uname, boot_id): "
		    "exit %d",
		    st.status);
		goto out;
	}
	f->system = xasprintf("%s-linux", arch);
	f->hostname = xstrdup(host);
	f->boot_id = xstrdup(boot);
	rc = 0;
out:
	buf_release(&out);
	return rc;
}

/* ======================================================== the target lock */

/*
 * Runs as the login user through remote_run(), so its channel's watchdog
 * ends it when the controller goes away while it waits. I: this run's
 * holder line, W: seconds to wait (0 none, -1 no limit). The holder is
 * setsid'd out of the watchdog's reach and keeps fd 9 (the flock) while
 * the session's sshd ($s, found by walking up from $PPID) lives: the
 * first process named sshd, or sshd-session (OpenSSH 9.8 and later, whose
 * listener is still "sshd" and never ends). Without one (the session died
 * while the script ran: a controller killed early) no holder starts, as
 * it would hold the lock for good. The lock
 * file says who holds it: "I\nHOLDER_PID SSHD_PID". Holders whose session
 * is gone let go within a second, so the lock is waited for briefly then;
 * our own (a reconnect) is ended. stdout: "locked PID" or "held <line>"
 * (exit 75); "waiting ..." goes to stderr.
 */
static const char lock_sh[] =
    "f=/run/lock/stagehand.lock\n"
    "[ -d /run/lock ] && [ -w /run/lock ] || f=/tmp/stagehand.lock\n"
    "{ exec 9<>\"$f\"; } 2>/dev/null || exec 9<\"$f\" || exit 71\n"
    "s=$PPID c=\n"
    "while [ \"$s\" -gt 1 ] && read -r c </proc/$s/comm && "
    "[ \"$c\" != sshd ] && [ \"$c\" != sshd-session ]; do\n"
    "\twhile read -r k v; do [ \"$k\" = PPid: ] && break; done "
    "</proc/$s/status\n"
    "\ts=$v\n"
    "done\n"
    "[ \"$s\" -gt 1 ] || { echo \"no sshd session process above the lock "
    "script (it ended, or the server is not OpenSSH)\" >&2; exit 71; }\n"
    "if ! flock -n 9; then\n"
    "\th= hp= hs=\n"
    "\t{ read -r h; read -r hp hs; } <\"$f\"\n"
    "\tw=$W\n"
    "\tif [ -n \"$h\" ] && [ \"$h\" = \"$I\" ]; then\n"
    "\t\tkill \"$hp\" 2>/dev/null; w=10\n"
    "\telif [ -n \"$hs\" ] && [ ! -e \"/proc/$hs\" ]; then w=10; fi\n"
    "\t[ \"$w\" = 0 ] && { echo \"held $h\"; exit 75; }\n"
    "\techo \"waiting for the target lock, held by ${h:-an unknown "
    "run}\" >&2\n"
    "\ti=0\n"
    "\tuntil flock -w 1 9; do\n"
    "\t\ti=$((i + 1))\n"
    "\t\t[ \"$w\" -lt 0 ] || [ \"$i\" -lt \"$w\" ] || "
    "{ echo \"held $h\"; exit 75; }\n"
    "\tdone\n"
    "fi\n"
    "setsid sh -c 'while [ -e \"/proc/$1\" ]; do sleep 1 9<&-; done' "
    "stagehand-lock \"$s\" </dev/null >/dev/null 2>&1 &\n"
    "printf '%s\\n%s %s\\n' \"$I\" \"$!\" \"$s\" >\"$f\" 2>/dev/null\n"
    "echo \"locked $!\"\n";

/* The first "waiting ..." line of the lock script's stderr, as a notice. */
struct lock_wait {
	const struct run_ctx *ctx;
	struct buf line;
	bool told;
};

static void
lock_on_stderr(void *arg, const char *p, size_t len)
{
	struct lock_wait *w = arg;
	const char *nl;

	if (w->told)
		return;
	nl = memchr(p, '\n', len);
	buf_add(&w->line, p, nl != NULL ? (size_t)(nl - p) : len);
	if (nl == NULL)
		return;
	w->told = true;
	if (w->ctx->notice != NULL)
		w->ctx->notice(w->ctx->ui, "%s", w->line.data);
}

/* "stagehand pid P on HOST, stage S, since T": one line, no controls. */
static int
lock_holder_line(const struct run_ctx *ctx, struct buf *b)
{
	char host[256] = "?";
	int rc;

	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '?';
	host[sizeof(host) - 1] = '\0';
	rc = buf_addf(b, "stagehand pid %ld on %s, stage %s, since ",
	         (long)getpid(), host, ctx->manifest->stage) < 0 ||
	     time_rfc3339(b, ctx->started_at) < 0;
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char)b->data[i] < ' ' || b->data[i] == 0x7f)
			b->data[i] = '?';
	return rc ? -1 : 0;
}

static int
lock_script(const struct run_ctx *ctx, struct buf *sc)
{
	struct buf who;
	int rc;

	buf_init(&who, 1024);
	rc = lock_holder_line(ctx, &who) < 0 || buf_adds(sc, "I=") < 0 ||
	     sh_quote(sc, who.data) < 0 ||
	     buf_addf(sc, "\nW=%d\n", ctx->opts->lock_wait_s) < 0 ||
	     buf_adds(sc, lock_sh) < 0;
	buf_release(&who);
	return rc ? -1 : 0;
}

/* What the lock script said: "locked PID" or "held LINE" (exit 75). */
static int
lock_answer(struct run_ctx *ctx, const struct remote_out *o, struct errbuf *err)
{
	const char *p = o->out.data;
	size_t n = o->out.len;
	uint64_t pid;

	while (n > 0 && p[n - 1] == '\n')
		n--;
	if (o->status == EXIT_LOCKED && n >= 5 && memcmp(p, "held ", 5) == 0)
		return err_set(err, SH_ERR_LOCKED,
		    "%s is locked by another run (%.*s); wait for it with "
		    "--wait-lock",
		    ctx->ssh_opts.host, n > 5 ? (int)(n - 5) : 13,
		    n > 5 ? p + 5 : "an unknown run");
	if (o->status != 0 || n < 8 || memcmp(p, "locked ", 7) != 0 ||
	    parse_u64(p + 7, n - 7, UINT32_MAX, &pid) < 0 || pid == 0)
		return remote_fail(ctx->redact, err, &o->err,
		    "cannot take the target lock: exit %d", o->status);
	ctx->lock_pid = (unsigned long)pid;
	return 0;
}

/* Takes the target lock (ctx.h). */
static int
lock_take(struct run_ctx *ctx, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct lock_wait w = { .ctx = ctx };
	struct remote_out o;
	struct buf sc;
	int rc = -1;

	ctx->lock_pid = 0;
	buf_init(&sc, 16384);
	buf_init(&w.line, 1024);
	if (lock_script(ctx, &sc) < 0) {
		err_set(err, SH_ERR_INTERNAL, "lock script too long");
		goto out;
	}
	if (remote_script(&cmd, &sc, err) < 0)
		goto out;
	cmd.stdout_is_protocol = true;
	cmd.on_stderr = lock_on_stderr;
	cmd.on_stderr_arg = &w;
	if (remote_run(ctx, &cmd, &o, err) == 0)
		rc = lock_answer(ctx, &o, err);
	remote_out_free(&o);
out:
	buf_release(&w.line);
	buf_release(&sc);
	return rc;
}

int
run_ctx_relock(struct run_ctx *ctx, struct errbuf *err)
{
	if (!ctx->opts->lock || ctx->ssh == NULL)
		return 0;
	return lock_take(ctx, err);
}

/* Ends the holder at once rather than when the session's sshd exits. */
static void
lock_release(struct run_ctx *ctx)
{
	struct ssh_io io = { .stdin_fd = -1, .stdout_fd = -1 };
	struct errbuf err;
	struct buf cmd;

	if (ctx->lock_pid == 0 || ctx->ssh == NULL)
		return;
	buf_init(&cmd, 64);
	io.deadline_ms = now_ms() + 5000u;
	if (buf_addf(&cmd, "kill %lu 2>/dev/null; exit 0", ctx->lock_pid) == 0)
		(void)ssh_exec(ctx->ssh, cmd.data, &io, NULL, &err);
	buf_release(&cmd);
	ctx->lock_pid = 0;
}

/* Sleeps until until_ms; -1 when interrupted first. */
static int
sleep_until(const struct run_ctx *ctx, uint64_t until_ms)
{
	for (;;) {
		uint64_t now = now_ms();

		if (*ctx->interrupted)
			return -1;
		if (now >= until_ms)
			return 0;
		(void)poll(NULL, 0,
		    (int)(until_ms - now > 100 ? 100 : until_ms - now));
	}
}

/*
 * Whole seconds in ms, rounded to the nearest: a wait that ends at its
 * deadline ends a few ms short of it when counted from a start taken just
 * after the deadline was set, and "59 s" for a 60 s wait would read as a
 * shorter wait than the one asked for.
 */
static unsigned long long
whole_secs(uint64_t ms)
{
	return (unsigned long long)((ms + 500u) / 1000u);
}

/* The pause before try i + 1 of a host not (yet) there: 1 s, 2, 3, then
 * every 5 s. */
static unsigned
retry_delay_ms(size_t i)
{
	static const unsigned delay_ms[] = { 1000, 2000, 3000, 5000 };
	const size_t ndelay = sizeof(delay_ms) / sizeof(*delay_ms);

	return delay_ms[i < ndelay ? i : ndelay - 1];
}

/*
 * The first session. With opts->host_wait_s, a host that is not there yet
 * (the exit-69 kind: refused, reset, no route, a handshake cut short) is
 * tried again after 1 s, 2, 3 and then every 5 s until that many seconds
 * have passed: a freshly booted instance whose sshd is restarted by
 * cloud-init after Packer's own connection is one. A wrong host key, a
 * refused key or an interruption ends it at once.
 */
static int
connect_first(struct run_ctx *ctx, struct errbuf *err)
{
	const uint64_t start = now_ms();
	const uint64_t deadline =
	    start + (uint64_t)ctx->opts->host_wait_s * 1000u;
	unsigned tries = 0;

	for (size_t i = 0;; i++) {
		uint64_t next;

		tries++;
		if (ssh_connect(&ctx->ssh_opts, &ctx->ssh, err) == 0)
			return 0;
		if (err->code != SH_ERR_UNREACHABLE || now_ms() >= deadline)
			break;
		if (tries == 1 && ctx->notice != NULL)
			ctx->notice(ctx->ui, "%s; trying again for up to %u s",
			    err->msg, ctx->opts->host_wait_s);
		next = now_ms() + retry_delay_ms(i);
		if (sleep_until(ctx, next < deadline ? next : deadline) < 0)
			return err_set(err, SH_ERR_INTERRUPTED,
			    "interrupted while waiting for %s",
			    ctx->ssh_opts.host);
	}
	if (tries > 1)
		return err_prefix(err,
		    "no connection after %u tries in %llu s: ", tries,
		    whole_secs(now_ms() - start));
	return -1;
}

int
run_ctx_ssh(struct run_ctx *ctx, struct ssh_conn **out, struct errbuf *err)
{
	*out = NULL;
	if (!ctx->have_target)
		return err_set(err, SH_ERR_USAGE,
		    "no target: give --target ssh://USER@HOST[:PORT] or set "
		    "STAGEHAND_TARGET");
	if (ctx->ssh == NULL) {
		if (connect_first(ctx, err) < 0)
			return -1;
		/* The sessions start while the facts and the lock go
		 * round: the lock's (the login user's), the first step's. */
		if ((ctx->opts->lock && remote_warm(ctx, NULL, err) < 0) ||
		    (ctx->warm_become != NULL &&
		        remote_warm(ctx, ctx->warm_become, err) < 0) ||
		    learn_facts(ctx, &ctx->facts, err) < 0 ||
		    run_ctx_relock(ctx, err) < 0)
			return -1;
	}
	*out = ctx->ssh;
	return 0;
}

int
run_ctx_connect(struct run_ctx *ctx, struct errbuf *err)
{
	struct ssh_conn *conn;

	if (ctx->link == NULL)
		return run_ctx_ssh(ctx, &conn, err);
	if (!ctx->linked && ctx->link->connect(ctx, err) < 0)
		return -1;
	ctx->linked = true;
	return 0;
}

void
run_ctx_release(struct run_ctx *ctx)
{
	if (ctx->link != NULL && ctx->linked)
		ctx->link->release(ctx);
	ctx->linked = false;
	lock_release(ctx);
	if (ctx->ssh != NULL)
		ssh_close(ctx->ssh);
	ctx->ssh = NULL;
	facts_free(&ctx->facts);
}

int
run_ctx_reconnect(struct run_ctx *ctx, struct errbuf *err)
{
	if (ctx->link != NULL)
		return ctx->link->reconnect(ctx, err);
	if (ctx->ssh == NULL)
		return err_set(err, SH_ERR_SSH, "not connected");
	if (ssh_reconnect(ctx->ssh, err) < 0)
		return -1;
	/* The old session's holder may live on until sshd sees it gone. */
	return run_ctx_relock(ctx, err);
}

bool
run_ctx_connected(const struct run_ctx *ctx)
{
	return ctx->link != NULL ? ctx->linked : ctx->ssh != NULL;
}

/* ======================================================== a host that went
 * away */

/*
 * One try: a new session, its facts, the lock. 1: the session reached
 * old_boot_id (the host has not gone down yet); 0: up on another boot;
 * -1: not (err says why).
 */
static int
reconnect_try(struct run_ctx *ctx, uint64_t deadline_ms,
    const char *old_boot_id, struct errbuf *err)
{
	uint64_t now = now_ms();
	uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
	unsigned try_s = SSH_CONNECT_TIMEOUT_S;
	struct target_facts f;

	memset(&f, 0, sizeof(f));
	if (left < (uint64_t)try_s * 1000u)
		try_s = left < 1000 ? 1 : (unsigned)((left + 999) / 1000);
	if (ssh_reconnect_once(ctx->ssh, try_s, err) < 0 ||
	    learn_facts(ctx, &f, err) < 0) {
		facts_free(&f);
		return -1;
	}
	if (old_boot_id != NULL && strcmp(f.boot_id, old_boot_id) == 0) {
		facts_free(&f);
		return 1;
	}
	facts_free(&ctx->facts);
	ctx->facts = f;
	return run_ctx_relock(ctx, err);
}

int
run_ctx_reconnect_until(struct run_ctx *ctx, uint64_t deadline_ms,
    const char *old_boot_id, struct errbuf *err)
{
	const uint64_t start = now_ms();
	const char *host = ctx->ssh_opts.host;
	bool same_boot = false;
	unsigned long long window;
	struct errbuf last;

	if (ctx->link != NULL)
		return ctx->link->reconnect(ctx, err);
	if (ctx->ssh == NULL)
		return err_set(err, SH_ERR_SSH, "not connected");
	/* The lock's holder goes with the session (and the boot). */
	ctx->lock_pid = 0;
	err_clear(&last);
	for (size_t i = 0;; i++) {
		uint64_t next = now_ms() + retry_delay_ms(i);
		int rc;

		if (next > deadline_ms)
			next = deadline_ms;
		if (sleep_until(ctx, next) < 0)
			break;
		if (now_ms() >= deadline_ms)
			break;
		rc = reconnect_try(ctx, deadline_ms, old_boot_id, &last);
		if (rc == 0)
			return 0;
		if (*ctx->interrupted)
			break;
		same_boot = rc == 1;
		/* Only a host that is not (yet) there is worth another try. */
		if (rc < 0 &&
		    (last.code == SH_ERR_TRUST || last.code == SH_ERR_USAGE ||
		        last.code == SH_ERR_LOCKED ||
		        last.code == SH_ERR_INTERRUPTED)) {
			*err = last;
			return -1;
		}
	}
	if (*ctx->interrupted)
		return err_set(err, SH_ERR_INTERRUPTED,
		    "interrupted while waiting for %s to come back (%llu s)",
		    host, whole_secs(now_ms() - start));
	/* Up, but on the old boot: what runs next (rescue) runs locked. */
	if (same_boot && run_ctx_relock(ctx, err) < 0)
		return -1;
	/* The window the caller gave, not the time the last try ran on. */
	window = whole_secs(deadline_ms > start ? deadline_ms - start : 0);
	if (same_boot)
		return err_set(err, SH_ERR_TIMEOUT,
		    "%s did not go down within %llu s: still on boot %s", host,
		    window, old_boot_id);
	return err_set(err, SH_ERR_UNREACHABLE,
	    "%s did not come back within %llu s%s%s", host, window,
	    last.code != SH_OK ? ": " : "", last.msg);
}
