/*
 * session.c: the connection to the build instance: target strings, TCP,
 * the libssh2 session (handshake, keepalive), close and reconnect, and the
 * session's state for the other files (usable, lost, dead). What is
 * trusted is trust.c's to decide; see ssh.h for the contract and
 * ssh_int.h for the rules shared with exec.c and tunnel.c.
 *
 * session_open() runs every connection, the first and each reconnect:
 * TCP, host key preference, handshake, host key check, authentication. On
 * a reconnect, trust_hostkey_verify() requires the key of the first
 * connection.
 */
#include "transport/ssh_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libssh2.h>

#include "transport/ssh.h"
#include "util/limits.h"
#include "util/util.h"

const char *
session_last_error(LIBSSH2_SESSION *s)
{
	char *msg = NULL;

	if (s == NULL)
		return "no session";
	libssh2_session_last_error(s, &msg, NULL, 0);
	return msg != NULL && *msg ? msg : "unknown libssh2 error";
}

bool
session_interrupted(const struct ssh_conn *c)
{
	return c->opts->interrupted != NULL && *c->opts->interrupted != 0;
}

/* ======================================================== target strings */

static int
target_err(struct errbuf *err, const char *s, const char *why)
{
	return err_set(err, SH_ERR_USAGE,
	    "target '%s': %s (want [ssh://]user@host[:port])", s, why);
}

/* No blanks, controls, or characters that would make the string ambiguous. */
static bool
name_ok(const char *p, size_t len, const char *also_bad)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch <= ' ' || ch == 0x7f || strchr("/@[]", ch) != NULL ||
		    strchr(also_bad, ch) != NULL)
			return false;
	}
	return true;
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port"; NULL or the problem. */
static const char *
split_hostport(
    const char *h, const char **host, size_t *hostlen, const char **port)
{
	const char *colon;

	*port = NULL;
	if (*h == '[') {
		const char *close = strchr(h, ']');

		if (close == NULL)
			return "unclosed '[' in host";
		*host = h + 1;
		*hostlen = (size_t)(close - h - 1);
		if (close[1] == ':')
			*port = close + 2;
		else if (close[1] != '\0')
			return "unexpected text after ']'";
		return name_ok(*host, *hostlen, "") ? NULL : "bad host";
	}
	colon = strchr(h, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL)
		return "an IPv6 address must be in brackets, as in "
		       "user@[2001:db8::1]:22";
	*host = h;
	*hostlen = colon != NULL ? (size_t)(colon - h) : strlen(h);
	if (colon != NULL)
		*port = colon + 1;
	if (*hostlen == 0)
		return "missing host";
	return name_ok(*host, *hostlen, ":") ? NULL : "bad host";
}

int
ssh_target_parse(
    const char *s, char **user, char **host, unsigned *port, struct errbuf *err)
{
	const char *p, *at, *h, *portp, *why;
	size_t hlen;
	uint64_t v = 22;

	*user = *host = NULL;
	*port = 0;
	if (s == NULL || *s == '\0')
		return err_set(err, SH_ERR_USAGE,
		    "empty target (want [ssh://]user@host[:port])");
	p = str_has_prefix(s, "ssh://") ? s + 6 : s;
	at = strrchr(p, '@');
	if (at == NULL)
		return target_err(err, s, "missing user");
	if (!name_ok(p, (size_t)(at - p), ":"))
		return target_err(err, s, at == p ? "empty user" : "bad user");
	why = split_hostport(at + 1, &h, &hlen, &portp);
	if (why != NULL)
		return target_err(err, s, why);
	if (portp != NULL &&
	    (parse_u64(portp, strlen(portp), 65535, &v) < 0 || v == 0))
		return target_err(err, s, "port must be a number in 1..65535");
	*user = xstrndup(p, (size_t)(at - p));
	*host = xstrndup(h, hlen);
	*port = (unsigned)v;
	return 0;
}

/* ======================================================== TCP */

static char *
addr_name(const struct addrinfo *ai)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), serv,
	        sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return xstrdup("?");
	if (ai->ai_family == AF_INET6)
		return xasprintf("[%s]:%s", host, serv);
	return xasprintf("%s:%s", host, serv);
}

static void
sock_tune(const struct ssh_conn *c, int fd)
{
	int one = 1, idle = (int)c->keepalive_s, cnt = 4;

	/* Without NODELAY each channel round trip waits for delayed ACKs. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int
tcp_wait(const struct ssh_conn *c, int fd, const char *name, struct errbuf *err)
{
	uint64_t end = now_ms() + (uint64_t)c->timeout_s * 1000u;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	for (;;) {
		struct pollfd pfd = { fd, POLLOUT, 0 };
		uint64_t now = now_ms();
		int n;

		if (session_interrupted(c))
			return err_set(err, SH_ERR_INTERRUPTED,
			    "interrupted while connecting to %s", name);
		if (now >= end)
			return err_set(err, SH_ERR_UNREACHABLE,
			    "connect %s: timed out after %u s", name,
			    c->timeout_s);
		n = poll(&pfd, 1,
		    (int)(end - now > POLL_SLICE_MS ? POLL_SLICE_MS
		                                    : end - now));
		if (n > 0)
			break;
		if (n < 0 && errno != EINTR)
			return err_set(err, SH_ERR_UNREACHABLE,
			    "connect %s: poll: %s", name, strerror(errno));
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr != 0)
		return err_set(err, SH_ERR_UNREACHABLE, "connect %s: %s", name,
		    strerror(soerr));
	return 0;
}

/* Returns the connected socket, or -1. */
static int
tcp_try(const struct ssh_conn *c, const struct addrinfo *ai, struct errbuf *err)
{
	char *name = addr_name(ai);
	int fd, rc = -1;

	fd = socket(ai->ai_family,
	    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		err_set(err, SH_ERR_UNREACHABLE, "connect %s: socket: %s", name,
		    strerror(errno));
		goto out;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		rc = 0;
	else if (errno != EINPROGRESS)
		err_set(err, SH_ERR_UNREACHABLE, "connect %s: %s", name,
		    strerror(errno));
	else
		rc = tcp_wait(c, fd, name, err);
	if (rc < 0) {
		close(fd);
		fd = -1;
	}
out:
	free(name);
	return fd;
}

static int
tcp_connect(struct ssh_conn *c, struct errbuf *err)
{
	struct addrinfo hints, *res = NULL;
	char *port = xasprintf("%u", c->port);
	int rc, fd = -1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(c->opts->host, port, &hints, &res);
	free(port);
	if (rc != 0)
		return err_set(err, SH_ERR_UNREACHABLE, "resolve %s: %s",
		    c->opts->host,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	for (struct addrinfo *ai = res; ai != NULL && fd < 0;
	     ai = ai->ai_next) {
		fd = tcp_try(c, ai, err);
		if (fd < 0 && err->code == SH_ERR_INTERRUPTED)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	sock_tune(c, fd);
	c->sock = fd;
	return 0;
}

/* ======================================================== session setup */

static void
conn_teardown(struct ssh_conn *c)
{
	c->gen++; /* channels of the old session, tunnels' too, are gone */
	exec_spares_forget(c);
	if (c->session != NULL) {
		libssh2_session_set_blocking(c->session, 1);
		libssh2_session_set_timeout(c->session, CLOSE_WAIT_MS);
		if (!c->dead)
			(void)libssh2_session_disconnect(
			    c->session, "stagehand done");
		(void)libssh2_session_free(c->session);
		c->session = NULL;
	}
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
	jump_stop(c);
}

static int
handshake(struct ssh_conn *c, struct errbuf *err)
{
	int rc = libssh2_session_handshake(c->session, c->sock);

	if (rc == 0)
		return 0;
	if (rc == LIBSSH2_ERROR_TIMEOUT)
		return err_set(err, SH_ERR_UNREACHABLE,
		    "ssh handshake with %s failed: timed out after %u s",
		    c->where, c->timeout_s);
	return err_set(err, SH_ERR_UNREACHABLE,
	    "ssh handshake with %s failed: %s", c->where,
	    session_last_error(c->session));
}

/*
 * libssh2's reads (its own _libssh2_recv(), misc.c: -errno on failure),
 * each followed by TCP_QUICKACK. sshd sends some replies in two segments
 * and, without NODELAY on its side, holds the second until the first is
 * acknowledged; an ACK we delay (Linux does, up to 40 ms, in the request
 * and reply rhythm of ssh) then stalls the exchange: it did once in every
 * connection's authentication (43 ms of a 0.19 s run). Linux drops quick
 * ACK mode by itself, so it is set again after every read. Not a TCP
 * socket (a jump host's channel): the option fails, harmlessly.
 */
static LIBSSH2_RECV_FUNC(recv_quickack)
{
	ssize_t rc = recv(socket, buffer, length, flags);
	int one = 1;

	(void)abstract;
	if (rc < 0)
		return errno == ENOENT || errno == EWOULDBLOCK ? -EAGAIN
		                                               : -errno;
	if (rc > 0)
		(void)setsockopt(
		    socket, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	return rc;
}

/* TCP, handshake, host key, authentication; tears down on failure. */
static int
session_open(struct ssh_conn *c, struct errbuf *err)
{
	struct trust_known k;
	int rc = -1;

	memset(&k, 0, sizeof(k));
	if ((c->opts->njumps > 0 ? jump_open(c, err) : tcp_connect(c, err)) < 0)
		return -1;
	c->dead = false;
	c->session = libssh2_session_init();
	if (c->session == NULL) {
		err_set(err, SH_ERR_INTERNAL, "libssh2_session_init failed");
		goto out;
	}
	(void)libssh2_session_callback_set(
	    c->session, LIBSSH2_CALLBACK_RECV, (void *)recv_quickack);
	libssh2_session_set_blocking(c->session, 1);
	libssh2_session_set_timeout(c->session, (long)c->timeout_s * 1000);
	if (trust_hostkey_prefs(c, &k, err) < 0 || handshake(c, err) < 0 ||
	    trust_hostkey_verify(c, &k, err) < 0 || trust_auth(c, err) < 0)
		goto out;
	if (session_interrupted(c)) {
		err_set(err, SH_ERR_INTERRUPTED, "interrupted");
		goto out;
	}
	libssh2_keepalive_config(c->session, 1, c->keepalive_s);
	rc = 0;
out:
	if (rc < 0)
		conn_teardown(c);
	return rc;
}

int
ssh_connect(
    const struct ssh_opts *opts, struct ssh_conn **out, struct errbuf *err)
{
	return session_connect_seen(opts, NULL, 0, out, err);
}

int
session_connect_seen(const struct ssh_opts *opts, const struct jump_seen *seen,
    size_t nseen, struct ssh_conn **out, struct errbuf *err)
{
	struct ssh_conn *c = xcalloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	c->opts = opts;
	c->sock = -1;
	c->port = opts->port ? opts->port : 22;
	c->timeout_s = opts->connect_timeout_s ? opts->connect_timeout_s
	                                       : SSH_CONNECT_TIMEOUT_S;
	c->keepalive_s =
	    opts->keepalive_s ? opts->keepalive_s : SSH_KEEPALIVE_S;
	c->where = c->port == 22 ? xstrdup(opts->host)
	                         : xasprintf("[%s]:%u", opts->host, c->port);
	buf_init(&c->key, SSH_KEY_MAX_BYTES);
	buf_init(&c->fp, 128);
	buf_init(&c->known, KNOWN_HOSTS_MAX_BYTES);
	if (nseen > opts->njumps) {
		/* A reconnect of the relay's: as on a reconnect of ours. */
		c->nseen = opts->njumps;
		c->seen = xcalloc(c->nseen + 1, sizeof(*c->seen));
		for (size_t i = 0; i < c->nseen; i++) {
			c->seen[i].fp = xstrdup(seen[i].fp);
			c->seen[i].type = xstrdup(seen[i].type);
			c->seen[i].accepted = seen[i].accepted;
		}
		c->seen_type = xstrdup(seen[opts->njumps].type);
		c->key_type = c->seen_type;
		if (buf_adds(&c->fp, seen[opts->njumps].fp) < 0) {
			ssh_close(c);
			return err_set(
			    err, SH_ERR_INTERNAL, "host key too long");
		}
	}
	rc = trust_load(c, err); /* offline checks, before any packet */
	if (rc == 0 && libssh2_init(0) != 0)
		rc = err_set(err, SH_ERR_INTERNAL, "libssh2_init failed");
	c->lib = rc == 0;
	if (rc == 0)
		rc = session_open(c, err);
	if (rc < 0) {
		ssh_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

/* ======================================================== session state */

/* Sleeps ms, waking for an interruption. */
int
session_sleep_ms(const struct ssh_conn *c, unsigned ms, struct errbuf *err)
{
	uint64_t end = now_ms() + ms;

	for (;;) {
		uint64_t now = now_ms();

		if (session_interrupted(c))
			return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
		if (now >= end)
			return 0;
		(void)poll(NULL, 0, (int)(end - now > 100 ? 100 : end - now));
	}
}

/* The session is there and not known to be broken. */
int
session_usable(const struct ssh_conn *c, struct errbuf *err)
{
	if (c->session == NULL || c->dead)
		return err_set(err, SH_ERR_SSH, "session lost: %s",
		    c->lost != NULL ? c->lost : "not connected");
	return 0;
}

bool
session_sock_writable(const struct ssh_conn *c)
{
	struct pollfd pfd = { c->sock, POLLOUT, 0 };

	return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLOUT);
}

/* Failures that leave the session itself usable. */
static bool
channel_only_error(int rc)
{
	return rc == LIBSSH2_ERROR_CHANNEL_FAILURE ||
	       rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED ||
	       rc == LIBSSH2_ERROR_CHANNEL_OUTOFORDER;
}

/* Marks the session unusable; takes why (owned). */
void
session_dead(struct ssh_conn *c, char *why)
{
	c->dead = true;
	free(c->lost);
	c->lost = why;
}

int
session_lost(struct ssh_conn *c, int rc, struct errbuf *err)
{
	if (channel_only_error(rc))
		return err_set(err, SH_ERR_SSH, "channel to %s failed: %s",
		    c->where, session_last_error(c->session));
	if (rc == LIBSSH2_ERROR_SOCKET_RECV ||
	    rc == LIBSSH2_ERROR_SOCKET_DISCONNECT)
		session_dead(
		    c, xasprintf("connection to %s closed or reset", c->where));
	else if (rc == LIBSSH2_ERROR_SOCKET_SEND)
		session_dead(c, xasprintf("sending to %s failed", c->where));
	else
		session_dead(c, xasprintf("%s (libssh2 error %d)",
		                    session_last_error(c->session), rc));
	return err_set(err, SH_ERR_SSH, "session lost: %s", c->lost);
}

/* ======================================================== reconnect, close */

/* A new session is up: count it, forget why the old one died. */
static void
reconnected(struct ssh_conn *c)
{
	c->reconnects++;
	free(c->lost);
	c->lost = NULL;
}

int
ssh_reconnect(struct ssh_conn *c, struct errbuf *err)
{
	static const unsigned delay_ms[] = { 200, 500, 1000, 2000, 4000 };
	const size_t ndelay = sizeof(delay_ms) / sizeof(*delay_ms);
	unsigned i;

	conn_teardown(c);
	for (i = 0; i < SSH_RECONNECT_TRIES; i++) {
		if (session_sleep_ms(
		        c, delay_ms[i < ndelay ? i : ndelay - 1], err) < 0)
			return -1;
		if (session_open(c, err) == 0) {
			reconnected(c);
			return 0;
		}
		/* Only an unreachable host is worth another try. */
		if (err->code != SH_ERR_UNREACHABLE)
			break;
	}
	i = i < SSH_RECONNECT_TRIES ? i + 1 : SSH_RECONNECT_TRIES;
	return err_prefix(err,
	    "reconnect to %s failed after %u attempt%s: ", c->where, i,
	    i == 1 ? "" : "s");
}

/*
 * One try, bounded by timeout_s when that is shorter than the connection's
 * own: the caller (a wait for a rebooting host) does its own pacing and
 * must not overrun its deadline by a whole connect timeout.
 */
int
ssh_reconnect_once(struct ssh_conn *c, unsigned timeout_s, struct errbuf *err)
{
	unsigned full = c->timeout_s;
	int rc;

	conn_teardown(c);
	if (timeout_s > 0 && timeout_s < full)
		c->timeout_s = timeout_s;
	rc = session_open(c, err);
	c->timeout_s = full;
	if (rc < 0)
		return -1;
	libssh2_session_set_timeout(c->session, (long)full * 1000);
	reconnected(c);
	return 0;
}

void
ssh_close(struct ssh_conn *c)
{
	if (c == NULL)
		return;
	conn_teardown(c);
	buf_release(&c->key);
	buf_release(&c->fp);
	buf_release(&c->known);
	free(c->known_path);
	jump_seen_free(c);
	free(c->seen_type);
	free(c->where);
	free(c->key_origin);
	free(c->lost);
	if (c->lib)
		libssh2_exit();
	free(c);
}

unsigned
ssh_reconnect_count(const struct ssh_conn *c)
{
	return c->reconnects;
}
