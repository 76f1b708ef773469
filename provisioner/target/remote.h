/*
 * remote.h: run a shell script on the target, the one way steps reach it.
 *
 * The script never goes on argv (argv is visible in `ps` on both ends and
 * in sshd logs).
 *
 * The privileged session (the default): a script without a payload_fd
 * (in-memory payloads are fine) goes to one perl loop per become user and
 * run,
 *
 *     [sudo -n -u USER --] perl -e '<loop>'
 *
 * started by the first such script of that user on a channel that
 * transport/exec.c keeps open (ssh.h, "kept commands"), so sudo runs once
 * per user and run. Each script is one request: the loop runs `sh -s` in a
 * fresh child and process group, with the loop's own environment, working
 * directory and umask (what sudo gave it; a step cannot change them for
 * the next), the script on its stdin as "{\n<script>\n} <&3 3<&-\n", parsed
 * whole first, and its commands' stdin the payload (or /dev/null).
 * Output streams back in length-prefixed frames, so a script cannot
 * forge its end; the step
 * ends when its shell exits, and what it left running that keeps stdout
 * open no longer holds it. The timeout is the loop's: TERM to the group,
 * KILL 10 s later (status 124, 137, as below), and the session goes on.
 * When the channel closes (the controller killed, the connection dropped,
 * a local deadline or interruption), the loop ends the running script's
 * group (TERM, KILL 2 s later) and exits; the next script opens a new
 * session. remote.c has the loop and its details.
 *
 * One channel per step (run_opts.one_channel_per_step, and any script with
 * a payload_fd): the command line is one fixed bootstrap per become user:
 *
 *     [sudo -n -u USER --] sh -c 'read -r t p || exit 0; ...' stagehand
 *
 * which does nothing until its first line of stdin, "<T> <P>\n", then
 * execs `timeout -k 10 T` (T 0: no limit) around the script's reader, so
 * the script's shell and what it starts are one process group. Without a
 * payload (P 0; payload NULL and payload_fd -1) that reader is `sh -s` and
 * the rest of stdin is "{\n<prologue><script>\n}\n": the shell parses the
 * whole script before it runs any of it, and what the script runs finds
 * stdin at EOF. With a payload (P 1) it is `sh -c 'read -r n && s=$(head
 * -c "$n") && eval "$s"'`, and the rest of stdin is "<length>\n<prologue>
 * <script>" followed by the payload, framed ("<n>\n<bytes>" chunks, then
 * "0\n"); the prologue turns it back into a plain stream on the script's
 * stdin, which the script reads to its EOF (e.g. `cat > "$tmp"`). dash's
 * `read` takes a byte at a time from a pipe and GNU head -c never reads
 * past its count, so each reader leaves the rest intact. $0 is not
 * something scripts may rely on.
 *
 * Orphans: the controller never sends EOF on the channel's stdin; a
 * watchdog that the prologue forks reads it, and an EOF while the script
 * still runs means sshd closed the channel: the controller was killed,
 * the connection dropped, or the controller gave up (timeout,
 * interruption). The watchdog then
 * sends TERM to the script's process group and KILL 2 s later. Processes
 * the script put in a session of their own (daemons) are left alone.
 *
 * Because the bootstrap waits for stdin and exits 0 on EOF, exec.c keeps
 * (with one_channel_per_step) REMOTE_SPARES copies of it started ahead of
 * time (ssh.h, "spares"): a
 * step's sudo starts while the steps before it run. The timeout starts
 * with the script, not with the spare.
 *
 * become: NULL runs as the login user; otherwise `sudo -n -u become`, which
 * fails at once (no prompt) when sudo would ask for a password.
 *
 * Lazily connects ctx's session on first use. Returns 0 when the script ran
 * to the end, whatever its exit status (in out->status), -1 on transport,
 * timeout or interruption (see ssh.h for the codes). Output is captured into
 * out->out/out->err (caller releases with remote_out_free), each up to
 * REMOTE_OUTPUT_MAX: out keeps the head of stdout, err a tail of stderr
 * (at least its last REMOTE_OUTPUT_MAX/2 bytes; see ssh_io), which is
 * what a step's output tail and remote_fail() want. cmd->on_stderr sees
 * all of stderr while it arrives (progress lines of long commands).
 */
#ifndef STAGEHAND_REMOTE_H
#define STAGEHAND_REMOTE_H

#include <stddef.h>

#include "util/redact.h"
#include "util/util.h"

struct run_ctx;

struct remote_cmd {
	const char *script;  /* sh script text */
	const char *become;  /* NULL or a user name */
	unsigned timeout_s;  /* 0: no remote timeout */
	const void *payload; /* stdin after the script; may be NULL */
	size_t payload_len;
	int payload_fd;          /* then this local fd until EOF; -1 none */
	int stdout_fd;           /* stdout to this local fd; -1: into out */
	bool stdout_is_protocol; /* stepsh_remote() only; see there */
	/* Every stderr chunk as it arrives, besides out->err; or NULL. See
	 * ssh_io.on_stderr for what it may do. */
	void (*on_stderr)(void *arg, const char *p, size_t len);
	void *on_stderr_arg;
};

struct remote_out {
	int status;     /* exit status; -1 when killed by a signal */
	struct buf out; /* stdout (unless stdout_fd) */
	struct buf err; /* stderr */
};

#define REMOTE_CMD_INIT                                                        \
	{                                                                      \
		NULL, NULL, 0, NULL, 0, -1, -1, false, NULL, NULL              \
	}

int remote_run(struct run_ctx *ctx, const struct remote_cmd *cmd,
    struct remote_out *out, struct errbuf *err);
/*
 * Starts the privileged session of become (NULL: the login user's) before
 * its first request, so that its sudo and perl start while other round
 * trips run (ssh_exec_warm(); nothing with one_channel_per_step). The
 * session must be connected.
 */
int remote_warm(struct run_ctx *ctx, const char *become, struct errbuf *err);
/*
 * Sets cmd->script to script's text (borrowed until script changes), or,
 * when an append to script failed (buf_failed: the text has a hole or is
 * cut), refuses with SH_ERR_INTERNAL "script too long" and leaves cmd->script
 * NULL, so remote_run() runs nothing. Every step that builds its script in
 * a struct buf hands it over through here.
 */
int remote_script(
    struct remote_cmd *cmd, const struct buf *script, struct errbuf *err);
void remote_out_free(struct remote_out *out);

/*
 * Fills err with SH_ERR_REMOTE: the formatted text, then ": " and the last
 * non-empty line of errout (a command's stderr) when there is one. That
 * line is redacted with rd (may be NULL) first and then keeps at most its
 * last REMOTE_ERROR_LINE_MAX bytes, control characters shown as '?': a cut
 * made after redaction leaves no piece of a secret. Returns -1.
 */
#define REMOTE_ERROR_LINE_MAX 300
int remote_fail(const struct redact *rd, struct errbuf *err,
    const struct buf *errout, const char *fmt, ...) ATTR_PRINTF(4, 5);

#endif
