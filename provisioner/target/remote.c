/*
 * remote.c: run a shell script on the target through the fixed bootstrap
 * command line. See remote.h for the contract.
 *
 * The bootstrap (BOOTSTRAP below) reads "<timeout> <payload>" and execs
 * `timeout -k 10 T` around the script's reader: with a payload, `read -r
 * n && s=$(head -c "$n") && eval "$s"` reads the length of the prologue
 * and script, then exactly that many bytes, and evaluates them with stdin
 * still positioned at the first byte of the (framed) payload. Command
 * substitution drops trailing newlines of the script, which changes
 * nothing a shell would do with it.
 *
 * Without one (most commands), `sh -s` reads "{\n<prologue><script>\n}\n"
 * from stdin itself: one process fewer than head -c (a fork and exec,
 * about 1 ms per command on a small VM). The braces make the shell parse
 * the whole script before running any of it, so nothing it runs can read
 * script text from stdin.
 *
 * Either way the prologue forks the watchdog (WATCH) first, which ends
 * the script's process group when the channel closes under it.
 *
 * The timeout and the payload flag travel on stdin, not on the command
 * line, so the command line is the same for every action of one become
 * user, and exec.c can start it before it knows the action (spares).
 */
#include "target/remote.h"

#include <stdarg.h>
#include <string.h>

#include "target/ctx.h"
#include "transport/ssh.h"
#include "util/limits.h"

/*
 * The one command line (after sudo). It does nothing until the first line
 * of stdin, "<timeout seconds> <payload 0|1>", arrives, and exits 0 on
 * EOF, which is what lets exec.c start it ahead of time as a spare. dash's
 * `read` takes a byte at a time from a pipe, so the rest of stdin is left
 * for what it execs. `timeout` starts with the script, not with the spare;
 * it runs even for T 0 (no limit), as it makes the script's shell and
 * everything that shell starts one process group, with timeout's pid as
 * its id: the watchdog's target.
 */
#define BOOTSTRAP                                                              \
	"sh -c 'read -r t p || exit 0; "                                       \
	"if [ \"$p\" = 1 ]; then set -- sh -c \"read -r n && "                 \
	"s=\\$(head -c \\\"\\$n\\\") && eval \\\"\\$s\\\"\" stagehand; "       \
	"else set -- sh -s; fi; "                                              \
	"exec timeout -k 10 \"$t\" \"$@\"' stagehand"
/*
 * The watchdog, forked by the prologue that the script's shell runs
 * first. Its stdin is the channel's stdin, which the controller never
 * closes while the command runs (ssh.h, keep_stdin_open): EOF means sshd
 * closed the channel, because the command ended (then timeout, $PPID, is
 * gone) or because the controller or the connection went away (then it
 * ends timeout's process group). It is in that group itself: it ignores
 * the TERM, and the KILL that follows ends it with the rest.
 *
 * The KILL comes 2 s after the TERM, or later while timeout is still
 * there, by 0.1 s, up to 3 s more: timeout outlives the script's shell,
 * so until it is gone the shell may still be removing its temp files
 * (stepsh_traps), which a KILL would cut short on a slow machine. While
 * the watchdog lives, timeout's pid stays in use as the group's id, so
 * `kill -0` cannot find another process under it.
 */
#define WATCH                                                                  \
	"{ trap '' TERM; while read -r _; do :; done; "                        \
	"kill -0 $PPID 2>/dev/null || exit 0; "                                \
	"kill -TERM -$PPID; sleep 2; i=0; "                                    \
	"while [ $i -lt 30 ] && kill -0 $PPID 2>/dev/null; do "                \
	"sleep 0.1; i=$((i + 1)); done; kill -KILL -$PPID; }"
/*
 * Without a payload, `sh -s` reads "{\n<prologue><script>\n}\n" and
 * parses the whole group before it runs any of it, so the watchdog finds
 * nothing more on stdin but, at the end, the EOF. The script and what it
 * runs find stdin at EOF (/dev/null); so does the shell once the group
 * ends, and it exits with the group's status.
 */
#define PROLOGUE_PLAIN                                                         \
	"exec 3<&0 </dev/null\n" WATCH " <&3 >/dev/null 2>&1 &\nexec 3<&-\n"
/*
 * With a payload, the prologue and the script are read with `head -c`
 * and evaluated, and the payload follows on stdin, framed ("<n>\n<n
 * bytes>"... "0\n"; ssh.h, frame_stdin_fd). The watchdog relays it into
 * a fifo that becomes the script's stdin, so the script sees EOF at the
 * payload's end while the channel's stdin stays open; then it watches.
 * The fifo's directory is on /dev/shm when there is one (a tmpfs: `plan`
 * leaves the disk untouched, not even /tmp's mtime), removed as soon as
 * both ends are open. The relay is one perl process (RELAY) for the whole
 * payload, not a `head -c` per frame: a process start costs about 1-2 ms
 * on a small VM, 300 of them for 300 MB. It may read past the "0\n":
 * nothing follows it but the channel's EOF, which stays for the watchdog.
 * A write that fails (the script stopped reading) ends it, as it ended
 * head; so does a frame header that is not one.
 */
#define RELAY                                                                  \
	"perl -e 'my ($b, $n) = (\"\", -1); while (1) {\n"                     \
	"if ($n < 0 && $b =~ s/^(\\d+)\\n//) {\n"                              \
	"  $n = $1; exit 0 if !$n; next }\n"                                   \
	"exit 1 if $n < 0 && length $b > 24;\n"                                \
	"if ($n > 0 && length $b) {\n"                                         \
	"  my $w = syswrite STDOUT, $b, $n < length $b ? $n : length $b;\n"    \
	"  exit 1 if !$w; substr($b, 0, $w, \"\"); $n = -1 if !($n -= $w);\n"  \
	"  next }\n"                                                           \
	"sysread STDIN, $b, 1048576, length $b or exit 1 }'"
#define PROLOGUE_PAYLOAD                                                       \
	"exec 3<&0 </dev/null\n"                                               \
	"d=$(mktemp -d -p /dev/shm stagehand-io.XXXXXX 2>/dev/null || "        \
	"mktemp -d) && mkfifo -m 600 \"$d/f\" || exit 1\n"                     \
	"{ { rm -rf -- \"$d\"; " RELAY "; } >\"$d/f\"; " WATCH "; } "          \
	"<&3 >/dev/null 2>&1 &\n"                                              \
	"exec 3<&- <\"$d/f\"\n"
/*
 * The privileged session (remote.h): one perl loop per become user and
 * run, on a channel transport/exec.c keeps open (ssh.h, "kept commands").
 * It reads requests "<timeout> <script length> <payload length>\n<script>
 * <payload>" and runs each in a child of its own: a new process group
 * (setpgrp), `sh -s` reading the script from a pipe on stdin and the
 * payload (or nothing) from a pipe on fd 3, and the loop's own, untouched
 * environment, working directory and umask, which are what sudo gave it.
 * A child cannot change the loop, so nothing leaks from a step to the
 * next. The child is forked before its request comes (spawn: at the
 * start, then as soon as a step has sent its status), so its fork and
 * exec overlap the controller's turn; until then it waits in `sh -s` on
 * its empty script pipe, and an unused one finds EOF there when the loop
 * exits. One that died in the meantime is replaced. fd 3 is taken at the
 * start by a handle ($f3) that each child re-opens on the payload pipe
 * ($^F = 3 makes perl dup2 onto fd 3 and keep it across exec). The child's
 * stdout and stderr come back as frames ("o<n>\n", "e<n>\n" and n bytes), as
 * produced; the step ends when the child exits (a SIGCHLD wakes select()
 * through a pipe; perl runs the handler only between ops, so one that comes
 * just before select() is only seen at its timeout: select() waits at most 10
 * ms, doubled each time it times out up to 1 s, and every timeout asks
 * waitpid), not at EOF: what is still in its pipes is sent (up to 16 reads
 * each), and pipes that background processes of the step keep open are read and
 * dropped from then on, so those processes never block or get SIGPIPE. Then
 * "x<status>\n" (124 after a timeout, 137 when the KILL was needed, as GNU
 * timeout), or "k<signal>\n". A timeout sends TERM to the group, KILL 10 s
 * later, and KILL to what is left of the group once the child is gone. EOF on
 * the loop's stdin means sshd closed the channel: a running step's group gets
 * TERM, then KILL 2 s later (up to 3 s more while the child lives), and
 * the loop exits. perl, not sh: sh cannot frame binary output by length.
 * perl-base is Essential on Debian and Ubuntu (README); the only module is
 * Fcntl: POSIX alone took 6-8 ms of every session's start. The clock is
 * /proc/uptime (monotonic, 10 ms steps; time() without /proc), as
 * Time::HiRes is not in perl-base; WNOHANG is Linux's 1.
 */
#define SESSION_LOOP                                                           \
	"use Fcntl;\n"                                                         \
	"$SIG{PIPE} = 'IGNORE';\n"                                             \
	"my ($in, @left, $sp) = ('');\n"                                       \
	"open(my $f3, '<', '/dev/null');\n"                                    \
	"fileno $f3 == 3 or die \"stagehand: fd 3 is taken\\n\";\n"            \
	"my ($ln, $up) = (0, open(my $uf, '<', '/proc/uptime'));\n"            \
	"pipe(my $cr, my $cw);\n"                                              \
	"$SIG{CHLD} = sub { syswrite $cw, 'c' };\n"                            \
	"sub nb { fcntl($_[0], F_SETFL, fcntl($_[0], F_GETFL, 0) | "           \
	"O_NONBLOCK) }\n"                                                      \
	"nb($cr); nb($cw);\n"                                                  \
	"sub now { my $l; return time if !$up; sysseek $uf, 0, 0;\n"           \
	"  sysread($uf, $l, 64) && $l =~ /^(\\d+(?:\\.\\d+)?)/ ? ($ln = $1) "  \
	": $ln }\n"                                                            \
	"sub out { my $s = shift; while (length $s) { my $w = syswrite "       \
	"STDOUT, $s;\n"                                                        \
	"  return 0 if !defined $w && !$!{EINTR}; substr($s, 0, $w, '') if "   \
	"$w } 1 }\n"                                                           \
	"sub rd { my $r = sysread STDIN, $in, 65536, length $in;\n"            \
	"  defined $r ? $r : $!{EINTR} || $!{EAGAIN} }\n"                      \
	"sub bits { my $v = ''; vec($v, fileno $_, 1) = 1 for @_; $v }\n"      \
	"sub drain { my $b; @left = grep { my $r = sysread $_, $b, 65536;\n"   \
	"  $r || !defined $r && $!{EAGAIN} } @left }\n"                        \
	"sub bye { my $p = shift; kill TERM => -$p; my $t = now();\n"          \
	"  while (now() < $t + 5) { last if waitpid($p, 1) && now() >= $t + "  \
	"2;\n"                                                                 \
	"    select undef, undef, undef, .1 }\n"                               \
	"  kill KILL => -$p; exit 0 }\n"                                       \
	"sub spawn {\n"                                                        \
	"  pipe(my $sr, my $sw); pipe(my $pr, my $pw);\n"                      \
	"  pipe(my $or, my $ow); pipe(my $er, my $ew);\n"                      \
	"  my $pid = fork;\n"                                                  \
	"  return \"$!\" if !defined $pid;\n"                                  \
	"  if (!$pid) { setpgrp(0, 0); $SIG{PIPE} = $SIG{CHLD} = 'DEFAULT';\n" \
	"    open(STDIN, '<&', $sr); open(STDOUT, '>&', $ow); open(STDERR, "   \
	"'>&', $ew);\n"                                                        \
	"    $^F = 3; open($f3, '<&', $pr);\n"                                 \
	"    exec 'sh', '-s'; exit 127 }\n"                                    \
	"  close $_ for $sr, $pr, $ow, $ew; nb($_) for $sw, $pw, $or, $er;\n"  \
	"  [$pid, $sw, $pw, $or, $er] }\n"                                     \
	"sub step {\n"                                                         \
	"  my ($t, $s, $p) = @_; my ($st, $dl, $kl, $to, $killed, $b, $pt) = " \
	"(\n"                                                                  \
	"    (undef) x 6, .01);\n"                                             \
	"  my $c = $sp; undef $sp;\n"                                          \
	"  if (ref $c && waitpid($c->[0], 1)) { close $_ for @$c[1 .. 4]; $c " \
	"= spawn() }\n"                                                        \
	"  $c = spawn() if !ref $c;\n"                                         \
	"  if (!ref $c) { my $m = \"stagehand: fork: $c\\n\";\n"               \
	"    out('e' . length($m) . \"\\n${m}x1\\n\") or exit 0; return }\n"   \
	"  my ($pid, $sw, $pw, $or, $er) = @$c;\n"                             \
	"  my %w = (fileno $sw, [$sw, $s], fileno $pw, [$pw, $p]);\n"          \
	"  my %r = (fileno $or, ['o', $or], fileno $er, ['e', $er]);\n"        \
	"  $dl = now() + $t if $t;\n"                                          \
	"  while (!defined $st) {\n"                                           \
	"    for (keys %w) { if (!length $w{$_}[1]) { close $w{$_}[0]; "       \
	"delete $w{$_} } }\n"                                                  \
	"    my $ri = bits(STDIN, $cr, @left, map { $_->[1] } values %r);\n"   \
	"    my $wi = bits(map { $_->[0] } values %w);\n"                      \
	"    my $tm = $dl ? ($kl || $dl) - now() : $pt; $tm = 0 if $tm < 0;\n" \
	"    $tm = $pt if $tm > $pt;\n"                                        \
	"    my $n = select(my $ro = $ri, my $wo = $wi, undef, $tm);\n"        \
	"    if ($dl && now() >= ($kl || $dl)) {\n"                            \
	"      if ($kl) { kill KILL => -$pid; $killed = 1; $dl = 0 }\n"        \
	"      else { $to = 1; kill TERM => -$pid; $kl = now() + 10 } }\n"     \
	"    if ($n <= 0) { $pt *= 2 if !$n && $pt < 1;\n"                     \
	"      $st = $? if waitpid($pid, 1) == $pid; next }\n"                 \
	"    if (vec($ro, fileno $cr, 1)) { sysread $cr, $b, 64;\n"            \
	"      $st = $? if waitpid($pid, 1) == $pid }\n"                       \
	"    if (vec($ro, 0, 1)) { rd() or bye($pid) }\n"                      \
	"    drain() if @left;\n"                                              \
	"    for (keys %w) { next unless vec($wo, $_, 1);\n"                   \
	"      my $x = syswrite $w{$_}[0], $w{$_}[1];\n"                       \
	"      if (defined $x) { substr($w{$_}[1], 0, $x, '') }\n"             \
	"      elsif (!$!{EAGAIN}) { $w{$_}[1] = '' } }\n"                     \
	"    for (keys %r) { next unless vec($ro, $_, 1);\n"                   \
	"      my $x = sysread $r{$_}[1], $b, 65536;\n"                        \
	"      if ($x) { out($r{$_}[0] . $x . \"\\n\" . $b) or bye($pid) }\n"  \
	"      elsif (defined $x || !$!{EAGAIN}) { delete $r{$_} } } }\n"      \
	"  for (values %r) { for my $i (1 .. 16) { my $x = sysread $_->[1], "  \
	"$b, 65536;\n"                                                         \
	"      if ($x) { out($_->[0] . $x . \"\\n\" . $b) or exit 0; next }\n" \
	"      push @left, $_->[1] if !defined $x && $!{EAGAIN}; last } }\n"   \
	"  kill KILL => -$pid if $to;\n"                                       \
	"  out(($to ? 'x' . ($killed ? 137 : 124) : $st & 127 ? 'k' . ($st & " \
	"127)\n"                                                               \
	"    : 'x' . ($st >> 8)) . \"\\n\") or exit 0;\n"                      \
	"  $sp = spawn() }\n"                                                  \
	"$sp = spawn();\n"                                                     \
	"while (1) {\n"                                                        \
	"  while ($in =~ /^(\\d+) (\\d+) (\\d+)\\n/) {\n"                      \
	"    my ($t, $sl, $pl, $h) = ($1, $2, $3, length $&);\n"               \
	"    last if length $in < $h + $sl + $pl; substr($in, 0, $h, '');\n"   \
	"    step($t, substr($in, 0, $sl, ''), substr($in, 0, $pl, '')) }\n"   \
	"  die \"stagehand: bad request\\n\" if $in =~ /^[^\\n]*[^\\d "        \
	"\\n]/;\n"                                                             \
	"  my $n = select(my $ro = bits(STDIN, $cr, @left), undef, undef, "    \
	"undef);\n"                                                            \
	"  next if $n <= 0;\n"                                                 \
	"  if (vec($ro, 0, 1)) { rd() or exit 0 }\n"                           \
	"  drain() if @left; sysread $cr, my $b, 64 if vec($ro, fileno $cr, "  \
	"1) }\n"
/*
 * What the session's sh reads around the script: the group is parsed whole
 * before it runs, and its redirection gives its commands the payload (fd
 * 3) as stdin while the shell itself goes on reading its script pipe, where
 * it finds EOF after the group. (`exec <&3` inside the group would make the
 * shell read what follows the group, the rest of the payload, as script.)
 */
#define SESSION_OPEN "{\n"
#define SESSION_CLOSE "\n} <&3 3<&-\n"
/* Spare copies of the bootstrap kept started (ssh.h): two let each one's
 * sudo start while the two commands before it run. */
#define REMOTE_SPARES 2
/* The local deadline trails the remote `timeout` so that fires first. */
#define REMOTE_GRACE_S 30
/* GNU timeout: 124 when it stopped the command, 128+9 after -k. */
#define TIMEOUT_STATUS 124
#define TIMEOUT_KILLED_STATUS 137

static void
remote_out_init(struct remote_out *out)
{
	out->status = -1;
	buf_init(&out->out, REMOTE_OUTPUT_MAX);
	buf_init(&out->err, REMOTE_OUTPUT_MAX);
}

void
remote_out_free(struct remote_out *out)
{
	buf_release(&out->out);
	buf_release(&out->err);
}

static bool
user_name_ok(const char *u)
{
	if (*u == '\0' || *u == '-')
		return false;
	return strspn(u, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789._-$") == strlen(u);
}

static bool
has_payload(const struct remote_cmd *cmd)
{
	return cmd->payload != NULL || cmd->payload_fd >= 0;
}

/* Steps without a stream payload go to the privileged session (remote.h). */
static bool
use_session(const struct run_ctx *ctx, const struct remote_cmd *cmd)
{
	return cmd->payload_fd < 0 &&
	       !(ctx->opts != NULL && ctx->opts->one_channel_per_step);
}

static int
build_cmdline(const struct run_ctx *ctx, const struct remote_cmd *cmd,
    struct buf *line, struct errbuf *err)
{
	const char *login = ctx->ssh_opts.user;
	bool sudo = cmd->become != NULL &&
	            !(strcmp(cmd->become, "root") == 0 && login != NULL &&
	                strcmp(login, "root") == 0);

	if (sudo) {
		if (!user_name_ok(cmd->become))
			return err_set(err, SH_ERR_STEP,
			    "become: bad user name '%s'", cmd->become);
		/* -n: fail at once rather than prompt for a password. */
		if (buf_adds(line, "sudo -n -u ") < 0 ||
		    sh_quote(line, cmd->become) < 0 ||
		    buf_adds(line, " -- ") < 0)
			goto long_;
	}
	if (use_session(ctx, cmd)) {
		if (buf_adds(line, "perl -e ") < 0 ||
		    sh_quote(line, SESSION_LOOP) < 0)
			goto long_;
	} else if (buf_adds(line, BOOTSTRAP) < 0) {
		goto long_;
	}
	return 0;
long_:
	return err_set(err, SH_ERR_INTERNAL, "remote command line too long");
}

/*
 * "<timeout> 0\n{\n<prologue><script>\n}\n", or with a payload
 * "<timeout> 1\n<length>\n<prologue><script>" and the payload framed: the
 * in-memory part as one chunk, the fd's in chunks framed by exec.c, and
 * "0\n" at the end (here when there is no fd, else from exec.c).
 */
static int
build_stdin(const struct remote_cmd *cmd, bool session, struct buf *in,
    struct errbuf *err)
{
	size_t slen = strlen(cmd->script);
	int rc;

	if (session)
		rc = buf_addf(in, "%u %zu %zu\n", cmd->timeout_s,
		         strlen(SESSION_OPEN SESSION_CLOSE) + slen,
		         cmd->payload != NULL ? cmd->payload_len : 0) < 0 ||
		     buf_adds(in, SESSION_OPEN) < 0 ||
		     buf_add(in, cmd->script, slen) < 0 ||
		     buf_adds(in, SESSION_CLOSE) < 0 ||
		     (cmd->payload != NULL &&
		         buf_add(in, cmd->payload, cmd->payload_len) < 0);
	else if (buf_addf(in, "%u %d\n", cmd->timeout_s, has_payload(cmd)) < 0)
		rc = 1;
	else if (has_payload(cmd))
		rc = buf_addf(in, "%zu\n", strlen(PROLOGUE_PAYLOAD) + slen) <
		         0 ||
		     buf_adds(in, PROLOGUE_PAYLOAD) < 0 ||
		     buf_add(in, cmd->script, slen) < 0;
	else
		rc = buf_adds(in, "{\n" PROLOGUE_PLAIN) < 0 ||
		     buf_add(in, cmd->script, slen) < 0 ||
		     buf_adds(in, "\n}\n") < 0;
	if (session)
		;
	else if (rc == 0 && cmd->payload != NULL && cmd->payload_len > 0)
		rc = buf_addf(in, "%zu\n", cmd->payload_len) < 0 ||
		     buf_add(in, cmd->payload, cmd->payload_len) < 0;
	if (rc == 0 && !session && has_payload(cmd) && cmd->payload_fd < 0)
		rc = buf_adds(in, "0\n") < 0;
	if (rc != 0)
		return err_set(err, SH_ERR_STEP,
		    "script and payload exceed %u bytes; stream large data "
		    "from a file instead",
		    REMOTE_SCRIPT_MAX);
	return 0;
}

/* Did the remote `timeout` stop the script? Its own `exit 124` is not. */
static bool
timed_out(const struct remote_cmd *cmd, int status, uint64_t elapsed_ms)
{
	if (cmd->timeout_s == 0 ||
	    (status != TIMEOUT_STATUS && status != TIMEOUT_KILLED_STATUS))
		return false;
	return elapsed_ms + 1000 >= (uint64_t)cmd->timeout_s * 1000u;
}

int
remote_script(
    struct remote_cmd *cmd, const struct buf *script, struct errbuf *err)
{
	cmd->script = NULL;
	if (buf_failed(script))
		return err_set(err, SH_ERR_INTERNAL,
		    "script too long (over %zu bytes): not run", script->max);
	cmd->script = script->data;
	return 0;
}

int
remote_run(struct run_ctx *ctx, const struct remote_cmd *cmd,
    struct remote_out *out, struct errbuf *err)
{
	struct ssh_conn *conn = NULL;
	struct buf line, in;
	struct ssh_exit ex;
	struct ssh_io io;
	uint64_t t0;
	bool session = use_session(ctx, cmd);
	int rc = -1;

	remote_out_init(out);
	if (cmd->script == NULL)
		return err_set(err, SH_ERR_INTERNAL, "remote_run: no script");
	buf_init(&line, 16384);
	buf_init(&in, REMOTE_SCRIPT_MAX + 4096);
	if (build_cmdline(ctx, cmd, &line, err) < 0 ||
	    build_stdin(cmd, session, &in, err) < 0 ||
	    run_ctx_ssh(ctx, &conn, err) < 0)
		goto out;
	t0 = now_ms();
	memset(&io, 0, sizeof(io));
	io.stdin_data = in.data;
	io.stdin_len = in.len;
	io.stdin_fd = cmd->payload_fd;
	io.stdout_fd = cmd->stdout_fd;
	io.out = &out->out;
	io.err = &out->err;
	io.on_stderr = cmd->on_stderr;
	io.on_stderr_arg = cmd->on_stderr_arg;
	/* Spares hide each step's sudo; the session has none to hide. */
	if (ctx->opts != NULL && ctx->opts->one_channel_per_step)
		io.spares = REMOTE_SPARES;
	io.keep_stdin_open = true;
	io.frame_stdin_fd = true;
	io.kept = session;
	if (cmd->timeout_s > 0)
		io.deadline_ms =
		    t0 + ((uint64_t)cmd->timeout_s + REMOTE_GRACE_S) * 1000u;
	if (ssh_exec(conn, line.data, &io, &ex, err) < 0) {
		if (err->code == SH_ERR_TIMEOUT)
			err_set(err, SH_ERR_TIMEOUT, "timed out after %u s",
			    cmd->timeout_s);
		goto out;
	}
	out->status = ex.status;
	if (timed_out(cmd, ex.status, now_ms() - t0)) {
		err_set(err, SH_ERR_TIMEOUT, "timed out after %u s",
		    cmd->timeout_s);
		goto out;
	}
	rc = 0;
out:
	buf_release(&line);
	buf_release(&in);
	return rc;
}

int
remote_warm(struct run_ctx *ctx, const char *become, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct buf line;
	int rc;

	cmd.become = become;
	if (!use_session(ctx, &cmd) || ctx->ssh == NULL)
		return 0;
	buf_init(&line, 16384);
	rc = build_cmdline(ctx, &cmd, &line, err);
	if (rc == 0)
		rc = ssh_exec_warm(ctx->ssh, line.data, err);
	buf_release(&line);
	return rc;
}

/* The last non-empty line of b, controls made harmless, into line. */
static void
remote_last_line(const struct redact *rd, const struct buf *b, struct buf *line)
{
	size_t end = b->len, start, keep;
	struct buf clean;

	while (
	    end > 0 && (b->data[end - 1] == '\n' || b->data[end - 1] == '\r' ||
	                   b->data[end - 1] == ' '))
		end--;
	start = end;
	while (start > 0 && b->data[start - 1] != '\n')
		start--;
	/* Redact the whole line before it is cut; a line that fills errout
	 * from its start is itself a cut tail when errout's head was dropped
	 * (then a secret's suffix, however short, is masked at its start). */
	buf_init(&clean, redact_max(end - start));
	if ((start == 0 && b->cut ? redact_tail(rd, b->data, end, &clean)
	                          : redact_text(rd, b->data + start,
	                                end - start, &clean)) < 0) {
		buf_adds(line, "(output not shown: too long to redact)");
		goto out;
	}
	keep = clean.len > REMOTE_ERROR_LINE_MAX
	           ? clean.len - REMOTE_ERROR_LINE_MAX
	           : 0;
	while (keep < clean.len &&
	       ((unsigned char)clean.data[keep] & 0xc0) == 0x80)
		keep++; /* never half a UTF-8 character */
	for (size_t i = keep; i < clean.len; i++) {
		unsigned char ch = (unsigned char)clean.data[i];

		buf_addc(line, ch < ' ' || ch == 0x7f ? '?' : (char)ch);
	}
out:
	buf_release(&clean);
}

int
remote_fail(const struct redact *rd, struct errbuf *err,
    const struct buf *errout, const char *fmt, ...)
{
	struct buf msg, line;
	va_list ap;

	buf_init(&msg, 1024);
	buf_init(&line, 1024);
	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	remote_last_line(rd, errout, &line);
	err_set(err, SH_ERR_REMOTE, "%s%s%s", msg.data, line.len ? ": " : "",
	    line.data);
	buf_release(&line);
	buf_release(&msg);
	return -1;
}
