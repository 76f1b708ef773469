/*
 * jump.c: jump hosts (ssh.h). The session to a host behind jump hosts
 * runs over a socketpair: libssh2 drives our end as it drives a TCP
 * socket, and a relay process pumps the other end through a direct-tcpip
 * channel of the last hop (ssh_tunnel_pump()).
 *
 * Why a process and not the caller's own loop: libssh2 runs the handshake
 * and authentication in blocking mode and waits on its socket by itself,
 * so the bytes of the target's handshake would never cross a socketpair
 * that only our own loop pumps. The relay is single-threaded and uses the
 * transport's own code: it connects to the last hop with ssh_connect()
 * (which, for a hop that has hops before it, starts its own relay, and so
 * on down to the first hop, reached over TCP), opens the channel and
 * pumps until either side ends. Every hop's session sends keepalives: the
 * pump sends one whenever it is idle.
 *
 * The relay tells the caller how connecting went on a pipe, one line
 * "CODE\tMESSAGE\n" (CODE an enum sh_err; 0 when the channel is open),
 * followed on success by "FP\tTYPE\tACCEPTED\n" for each hop, first hop
 * first; then it closes the pipe. It dies with its parent
 * (PR_SET_PDEATHSIG), ignores SIGINT and SIGTERM (the caller decides when
 * the session ends: a ^C must not cut the session that cleans up), holds
 * no fd of the caller but stdio, and ends when its hop's session or the
 * channel ends, which the caller sees as the end of its socket: a lost
 * session, reconnected under the usual rules.
 */
#include "transport/ssh_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport/ssh.h"
#include "util/util.h"

#define STATUS_MAX 8192 /* the relay's report: one line per hop, and one */
#define RELAY_PUMP_MS 1000

/* "user@host" or "user@[host]:port", as messages name a hop. */
static char *
hop_name(const struct ssh_jump *j)
{
	unsigned port = j->port ? j->port : 22;

	if (port == 22)
		return xasprintf("%s@%s", j->user, j->host);
	return xasprintf("%s@[%s]:%u", j->user, j->host, port);
}

/* ======================================================== the relay */

static void
status_write(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* A failure, named by the hop unless an inner relay named its own. */
static void __attribute__((noreturn))
relay_fail(int status, const struct ssh_jump *j, const struct errbuf *err)
{
	char *name = hop_name(j), *line;

	if (str_has_prefix(err->msg, "jump host "))
		line = xasprintf("%d\t%s\n", (int)err->code, err->msg);
	else
		line = xasprintf(
		    "%d\tjump host %s: %s\n", (int)err->code, name, err->msg);
	free(name);
	/* One line: a message with a newline would end it early. */
	for (char *p = line; p[0] != '\0' && p[1] != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	status_write(status, line);
	_exit(1);
}

/* Closes every fd but stdio, a and b (a != b, both > 2). */
static void
relay_close_fds(int a, int b)
{
	unsigned lo = (unsigned)(a < b ? a : b), hi = (unsigned)(a < b ? b : a);

	if (lo > 3)
		(void)close_range(3, lo - 1, 0);
	if (hi > lo + 1)
		(void)close_range(lo + 1, hi - 1, 0);
	(void)close_range(hi + 1, ~0u, 0);
}

static void __attribute__((noreturn))
relay_main(const struct ssh_conn *c, int sock, int status, pid_t parent)
{
	const struct ssh_opts *opts = c->opts;
	const struct ssh_jump *j = &opts->jumps[opts->njumps - 1];
	struct ssh_opts hop = *opts;
	struct ssh_conn *h = NULL;
	struct ssh_tunnel *t = NULL;
	struct errbuf err;
	struct buf out;

	(void)signal(SIGINT, SIG_IGN);
	(void)signal(SIGTERM, SIG_IGN);
	(void)signal(SIGHUP, SIG_IGN);
	(void)signal(SIGPIPE, SIG_IGN);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	relay_close_fds(sock, status);
	memset(&err, 0, sizeof(err));
	if (fcntl(sock, F_SETFL, O_NONBLOCK) < 0)
		_exit(1); /* the pump must not block (ssh.h) */

	hop.user = j->user;
	hop.host = j->host;
	hop.port = j->port;
	hop.identity_file = j->identity_file;
	hop.identity_env = j->identity_env;
	hop.host_key_pin = j->host_key_pin;
	hop.njumps = opts->njumps - 1;
	/* A shortened try (ssh_reconnect_once()) is as short at each hop. */
	hop.connect_timeout_s = c->timeout_s;
	hop.interrupted = NULL;
	hop.note = NULL;
	if (session_connect_seen(&hop, c->seen, c->nseen, &h, &err) < 0)
		relay_fail(status, j, &err);
	if (ssh_tunnel_open_tcp(h, opts->host, c->port, &t, &err) < 0) {
		/* The hop is fine; what it cannot reach is the target. */
		if (err.code == SH_ERR_REMOTE || err.code == SH_ERR_SSH ||
		    err.code == SH_ERR_TIMEOUT)
			err.code = SH_ERR_UNREACHABLE;
		err_prefix(&err, "cannot reach %s: ", c->where);
		relay_fail(status, j, &err);
	}

	/* The hops before this one, as its own relay reported them, then
	 * this one (on a reconnect: the key it was required to show). */
	buf_init(&out, STATUS_MAX);
	buf_adds(&out, "0\t\n");
	for (size_t i = 0; i < h->nseen; i++)
		buf_addf(&out, "%s\t%s\t%d\n", h->seen[i].fp, h->seen[i].type,
		    h->seen[i].accepted ? 1 : 0);
	if (c->nseen > hop.njumps)
		buf_addf(&out, "%s\t%s\t%d\n", c->seen[hop.njumps].fp,
		    c->seen[hop.njumps].type,
		    c->seen[hop.njumps].accepted ? 1 : 0);
	else
		buf_addf(&out, "%s\t%s\t%d\n", ssh_host_key_fingerprint(h),
		    ssh_host_key_type(h), ssh_host_key_accepted(h) ? 1 : 0);
	if (buf_failed(&out))
		_exit(1);
	status_write(status, out.data);
	buf_release(&out);
	close(status);

	/* Until either end is done; the hop's own keepalives go meanwhile. */
	while (!(ssh_tunnel_eof(t) && ssh_tunnel_idle(t)))
		if (ssh_tunnel_pump(t, sock, RELAY_PUMP_MS, &err) < 0)
			break;
	_exit(0);
}

/* ======================================================== the caller */

void
jump_stop(struct ssh_conn *c)
{
	if (c->relay_pid <= 0)
		return;
	(void)kill(c->relay_pid, SIGKILL);
	while (waitpid(c->relay_pid, NULL, 0) < 0 && errno == EINTR)
		;
	c->relay_pid = 0;
}

void
jump_seen_free(struct ssh_conn *c)
{
	for (size_t i = 0; i < c->nseen; i++) {
		free(c->seen[i].fp);
		free(c->seen[i].type);
	}
	free(c->seen);
	c->seen = NULL;
	c->nseen = 0;
}

/* Reads the relay's report until it closes the pipe (or dies). */
static int
status_read(struct ssh_conn *c, int fd, struct buf *b, struct errbuf *err)
{
	/* Each hop is bounded by its own timeouts; this only guards the
	 * caller against a relay that hangs regardless. */
	uint64_t end = now_ms() + (uint64_t)c->timeout_s * 1000u * 4u *
	                              (c->opts->njumps + 1);
	char chunk[1024];

	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t n;

		if (session_interrupted(c))
			return err_set(err, SH_ERR_INTERRUPTED,
			    "interrupted while connecting to %s", c->where);
		if (now_ms() >= end)
			return err_set(err, SH_ERR_UNREACHABLE,
			    "connect %s through jump hosts: timed out",
			    c->where);
		if (poll(&pfd, 1, POLL_SLICE_MS) <= 0)
			continue;
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return 0;
		if (buf_add(b, chunk, (size_t)n) < 0)
			return err_set(err, SH_ERR_INTERNAL,
			    "jump relay: report too long");
	}
}

/* Splits line at tabs into f[0..n); missing fields are "". */
static void
split_tabs(char *line, char **f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *tab = line != NULL ? strchr(line, '\t') : NULL;

		f[i] = line != NULL ? line : (char *)"";
		if (tab != NULL)
			*tab++ = '\0';
		line = tab;
	}
}

/* "CODE\tMESSAGE\n" then, on success, "FP\tTYPE\tACCEPTED\n" per hop. */
static int
status_parse(struct ssh_conn *c, char *p, struct errbuf *err)
{
	size_t n = 0, want = c->opts->njumps;
	char *nl = strchr(p, '\n'), *f[3];
	uint64_t code;

	if (nl == NULL)
		return err_set(err, SH_ERR_UNREACHABLE,
		    "connect %s through jump hosts: the relay ended without "
		    "a report",
		    c->where);
	*nl = '\0';
	split_tabs(p, f, 2);
	if (parse_u64(f[0], strlen(f[0]), SH_ERR_INTERNAL, &code) < 0)
		return err_set(
		    err, SH_ERR_INTERNAL, "jump relay: bad report '%s'", p);
	if (code != 0)
		return err_set(err, (enum sh_err)code, "%s", f[1]);
	if (c->nseen > 0)
		return 0; /* a reconnect: the keys were required, not taken */
	c->seen = xcalloc(want, sizeof(*c->seen));
	for (p = nl + 1; n < want && (nl = strchr(p, '\n')) != NULL; n++) {
		*nl = '\0';
		split_tabs(p, f, 3);
		c->seen[n].fp = xstrdup(f[0]);
		c->seen[n].type = xstrdup(f[1]);
		c->seen[n].accepted = strcmp(f[2], "1") == 0;
		c->nseen = n + 1;
		p = nl + 1;
	}
	if (n != want) {
		jump_seen_free(c);
		return err_set(err, SH_ERR_INTERNAL,
		    "jump relay: %zu host keys reported for %zu hops", n, want);
	}
	return 0;
}

int
jump_open(struct ssh_conn *c, struct errbuf *err)
{
	int sp[2], st[2], rc;
	pid_t pid, self = getpid();
	struct buf report;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return err_set(
		    err, SH_ERR_INTERNAL, "socketpair: %s", strerror(errno));
	if (pipe2(st, O_CLOEXEC) < 0) {
		rc = err_set(err, SH_ERR_INTERNAL, "pipe: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return rc;
	}
	fflush(NULL); /* the child must not write our buffered output */
	pid = fork();
	if (pid < 0) {
		rc = err_set(err, SH_ERR_INTERNAL, "fork: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		close(st[0]);
		close(st[1]);
		return rc;
	}
	if (pid == 0)
		relay_main(c, sp[1], st[1], self);
	close(sp[1]);
	close(st[1]);
	c->relay_pid = pid;
	c->sock = sp[0];
	buf_init(&report, STATUS_MAX);
	rc = status_read(c, st[0], &report, err);
	close(st[0]);
	if (rc == 0 && buf_addc(&report, '\0') < 0)
		rc = err_set(
		    err, SH_ERR_INTERNAL, "jump relay: report too long");
	if (rc == 0)
		rc = status_parse(c, report.data, err);
	buf_release(&report);
	if (rc < 0 || fcntl(c->sock, F_SETFL, O_NONBLOCK) < 0) {
		if (rc == 0)
			rc = err_set(
			    err, SH_ERR_INTERNAL, "fcntl: %s", strerror(errno));
		close(c->sock);
		c->sock = -1;
		jump_stop(c);
	}
	return rc;
}

int
ssh_jump_host_key(const struct ssh_conn *c, size_t i, struct ssh_jump_key *out)
{
	if (i >= c->nseen)
		return -1;
	out->fingerprint = c->seen[i].fp;
	out->type = c->seen[i].type;
	out->accepted = c->seen[i].accepted;
	return 0;
}
