/*
 * tunnel.c: channels relayed to a local fd: ssh_tunnel_open_tcp() (a
 * direct-tcpip channel, as pg.c uses for libpq) and ssh_tunnel_open_exec()
 * (a relay command's stdin and stdout), moved both ways by
 * ssh_tunnel_pump(). See ssh.h for the contract.
 */
#include "transport/ssh_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libssh2.h>

#include "transport/ssh.h"
#include "util/util.h"

/*
 * A tunnel relays one channel to a local fd (see ssh.h). The pump moves
 * bytes fd -> up -> channel and channel -> down -> fd, one IO_CHUNK buffer
 * each way: up is refilled only when empty and stays unchanged while a
 * write of it is half sent; the channel is read only while down is empty,
 * so a slow reader of fd closes the SSH window instead of growing memory.
 * Before ssh_tunnel_pump() returns it finishes any half-sent packet (the
 * rule in ssh_int.h), so the session may serve ssh_exec() and other
 * tunnels between pumps.
 */
struct ssh_tunnel {
	struct ssh_conn *c;  /* borrowed */
	unsigned gen;        /* c->gen when opened: the channel's session */
	LIBSSH2_CHANNEL *ch; /* owned; NULL once freed */
	enum pend pend;
	char *up; /* owned: IO_CHUNK bytes read from fd, to send */
	size_t up_off, up_len;
	char *down; /* owned: IO_CHUNK bytes read from the channel */
	size_t down_off, down_len;
	char *scratch;     /* owned: IO_CHUNK, for stderr reads */
	struct buf errout; /* the channel's stderr, first TUNNEL_ERR_MAX */
	bool fd_eof;       /* fd said EOF */
	bool eof_sent;     /* channel EOF sent, or sending is pointless */
	bool remote_eof;   /* channel EOF read, everything passed to fd */
	bool fd_gone;      /* fd's reader went away: drop what comes */
	bool want_out;     /* waiting for the socket to be writable */
	bool want_fd_out;  /* waiting for fd to be writable */
	bool progress;
};

#define TUNNEL_ERR_MAX 4096

static struct ssh_tunnel *
tun_new(struct ssh_conn *c)
{
	struct ssh_tunnel *t = xcalloc(1, sizeof(*t));

	t->c = c;
	t->gen = c->gen;
	t->up = xmalloc(IO_CHUNK);
	t->down = xmalloc(IO_CHUNK);
	t->scratch = xmalloc(IO_CHUNK);
	buf_init(&t->errout, TUNNEL_ERR_MAX);
	return t;
}

static void
tun_free(struct ssh_tunnel *t)
{
	free(t->up);
	free(t->down);
	free(t->scratch);
	buf_release(&t->errout);
	free(t);
}

/* The channel died with its session (dead, or replaced by a reconnect). */
static int
tun_alive(struct ssh_tunnel *t, struct errbuf *err)
{
	if (t->gen != t->c->gen) {
		t->ch = NULL; /* freed by libssh2_session_free() */
		return err_set(err, SH_ERR_SSH,
		    "session lost: the tunnel's session to %s was replaced",
		    t->c->where);
	}
	if (t->ch == NULL)
		return err_set(err, SH_ERR_INTERNAL, "tunnel already closed");
	return session_usable(t->c, err);
}

/* Waits for the socket while opening; gives up on deadline/interrupt. */
static int
tun_open_wait(struct ssh_conn *c, uint64_t end, struct errbuf *err)
{
	struct pollfd pfd = { c->sock, POLLIN, 0 };
	uint64_t now = now_ms();

	if (session_interrupted(c))
		return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
	if (now >= end)
		return err_set(err, SH_ERR_TIMEOUT,
		    "opening a channel to %s timed out after %u s", c->where,
		    c->timeout_s);
	if (libssh2_session_block_directions(c->session) &
	    LIBSSH2_SESSION_BLOCK_OUTBOUND)
		pfd.events |= POLLOUT;
	(void)poll(&pfd, 1,
	    (int)(end - now > POLL_SLICE_MS ? POLL_SLICE_MS : end - now));
	return 0;
}

/* Giving up half way through opening leaves libssh2 mid-request. */
static int
tun_abandoned(struct ssh_conn *c)
{
	if (!c->dead)
		session_dead(c, xasprintf("a channel to %s was abandoned while "
		                          "opening",
		                    c->where));
	return -1;
}

/* The server refused the channel: a fact about the target, not the link. */
static int
tun_refused(struct ssh_conn *c, int rc, const char *what, struct errbuf *err)
{
	if (rc != LIBSSH2_ERROR_CHANNEL_FAILURE)
		return session_lost(c, rc, err);
	return err_set(err, SH_ERR_REMOTE, "%s on %s: %s", what, c->where,
	    session_last_error(c->session));
}

static int
tun_open_direct(
    struct ssh_tunnel *t, const char *host, unsigned port, struct errbuf *err)
{
	struct ssh_conn *c = t->c;
	uint64_t end = now_ms() + (uint64_t)c->timeout_s * 1000u;
	char *what = xasprintf("connecting to %s:%u", host, port);
	int rc = 0;

	while ((t->ch = libssh2_channel_direct_tcpip_ex(
	            c->session, host, (int)port, "127.0.0.1", 0)) == NULL) {
		rc = libssh2_session_last_errno(c->session);
		if (rc != LIBSSH2_ERROR_EAGAIN) {
			rc = tun_refused(c, rc, what, err);
			break;
		}
		rc = 0;
		if (tun_open_wait(c, end, err) < 0) {
			rc = tun_abandoned(c);
			break;
		}
	}
	free(what);
	return rc;
}

int
ssh_tunnel_open_tcp(struct ssh_conn *c, const char *host, unsigned port,
    struct ssh_tunnel **out, struct errbuf *err)
{
	struct ssh_tunnel *t;
	int rc;

	*out = NULL;
	if (session_usable(c, err) < 0)
		return -1;
	if (port == 0 || port > 65535)
		return err_set(
		    err, SH_ERR_INTERNAL, "tunnel: bad port %u", port);
	t = tun_new(c);
	libssh2_session_set_blocking(c->session, 0);
	rc = tun_open_direct(t, host, port, err);
	if (rc < 0 && err->code == SH_ERR_REMOTE && exec_spares_yield(c))
		rc = tun_open_direct(t, host, port, err);
	if (c->session != NULL)
		libssh2_session_set_blocking(c->session, 1);
	if (rc < 0) {
		tun_free(t);
		return -1;
	}
	*out = t;
	return 0;
}

static int
tun_open_exec(struct ssh_tunnel *t, const char *command, struct errbuf *err)
{
	struct ssh_conn *c = t->c;
	uint64_t end = now_ms() + (uint64_t)c->timeout_s * 1000u;
	int rc;

	while ((t->ch = libssh2_channel_open_session(c->session)) == NULL) {
		rc = libssh2_session_last_errno(c->session);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return tun_refused(c, rc, "opening a session", err);
		if (tun_open_wait(c, end, err) < 0)
			return tun_abandoned(c);
	}
	while (
	    (rc = libssh2_channel_exec(t->ch, command)) == LIBSSH2_ERROR_EAGAIN)
		if (tun_open_wait(c, end, err) < 0)
			return tun_abandoned(c);
	if (rc < 0)
		return tun_refused(c, rc, "starting the relay", err);
	return 0;
}

int
ssh_tunnel_open_exec(struct ssh_conn *c, const char *command,
    struct ssh_tunnel **out, struct errbuf *err)
{
	struct ssh_tunnel *t;
	int rc;

	*out = NULL;
	if (session_usable(c, err) < 0)
		return -1;
	t = tun_new(c);
	libssh2_session_set_blocking(c->session, 0);
	rc = tun_open_exec(t, command, err);
	if (rc < 0 && err->code == SH_ERR_REMOTE && t->ch == NULL &&
	    exec_spares_yield(c))
		rc = tun_open_exec(t, command, err);
	if (rc < 0 && t->ch != NULL && !c->dead) {
		ssh_tunnel_close(t); /* the channel opened, exec was refused */
		t = NULL;
	}
	if (c->session != NULL)
		libssh2_session_set_blocking(c->session, 1);
	if (rc < 0) {
		if (t != NULL)
			tun_free(t); /* its channel went with the session */
		return -1;
	}
	*out = t;
	return 0;
}

/* ---- fd -> channel */

static int
tun_fill_up(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	ssize_t r = read(fd, t->up, IO_CHUNK);

	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (r < 0 && errno != ECONNRESET)
		return err_set(err, SH_ERR_IO,
		    "tunnel: reading the local "
		    "socket: %s",
		    strerror(errno));
	t->progress = true;
	t->up_off = 0;
	t->up_len = r > 0 ? (size_t)r : 0;
	t->fd_eof = r <= 0;
	return 0;
}

static bool
tun_blocked_out(const struct ssh_tunnel *t)
{
	return (libssh2_session_block_directions(t->c->session) &
	           LIBSSH2_SESSION_BLOCK_OUTBOUND) != 0;
}

static int
tun_send_eof(struct ssh_tunnel *t, struct errbuf *err)
{
	int rc;

	if (t->pend != PEND_EOF && !session_sock_writable(t->c)) {
		t->want_out = true;
		return 0;
	}
	rc = libssh2_channel_send_eof(t->ch);
	if (rc == LIBSSH2_ERROR_EAGAIN) {
		if (t->pend == PEND_EOF || tun_blocked_out(t))
			t->pend = PEND_EOF;
		return 0;
	}
	if (rc < 0)
		return session_lost(t->c, rc, err);
	t->pend = PEND_NONE;
	t->eof_sent = true;
	t->progress = true;
	return 0;
}

static int
tun_up(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	while (!t->eof_sent && (t->pend == PEND_NONE || t->pend == PEND_WRITE ||
	                           t->pend == PEND_EOF)) {
		ssize_t w;

		if (t->pend == PEND_EOF)
			return tun_send_eof(t, err);
		if (t->up_off == t->up_len && !t->fd_eof &&
		    tun_fill_up(t, fd, err) < 0)
			return -1;
		if (t->up_off == t->up_len)
			return t->fd_eof ? tun_send_eof(t, err) : 0;
		w = libssh2_channel_write(
		    t->ch, t->up + t->up_off, t->up_len - t->up_off);
		if (w == LIBSSH2_ERROR_EAGAIN) {
			/* Sticky: a later partial send may not set the bit. */
			if (t->pend == PEND_WRITE || tun_blocked_out(t))
				t->pend = PEND_WRITE;
			return 0;
		}
		if (w < 0)
			return session_lost(t->c, (int)w, err);
		t->pend = PEND_NONE;
		t->progress = true;
		t->up_off += (size_t)w;
	}
	return 0;
}

/* ---- channel -> fd */

static int
tun_flush_fd(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	while (t->down_off < t->down_len) {
		ssize_t w;

		if (t->fd_gone) {
			t->down_off = t->down_len;
			break;
		}
		w = send(fd, t->down + t->down_off, t->down_len - t->down_off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			t->want_fd_out = true;
			return 0;
		}
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
			t->fd_gone = true;
		else if (w < 0)
			return err_set(err, SH_ERR_IO,
			    "tunnel: writing the local socket: %s",
			    strerror(errno));
		else
			t->down_off += (size_t)w;
		t->progress = true;
	}
	return 0;
}

/* One read of stream into p (IO_CHUNK bytes); *got 0 when none. */
static int
tun_read(
    struct ssh_tunnel *t, int stream, char *p, size_t *got, struct errbuf *err)
{
	bool adj = exec_chan_adjusts(t->ch);
	ssize_t n;

	*got = 0;
	if (adj && t->pend != PEND_READ && !session_sock_writable(t->c)) {
		t->want_out = true;
		return 0;
	}
	n = libssh2_channel_read_ex(t->ch, stream, p, IO_CHUNK);
	if (n == LIBSSH2_ERROR_EAGAIN) {
		t->pend =
		    adj && exec_chan_adjusts(t->ch) ? PEND_READ : PEND_NONE;
		return 0;
	}
	if (n < 0)
		return session_lost(t->c, (int)n, err);
	t->pend = PEND_NONE;
	*got = (size_t)n;
	if (n > 0)
		t->progress = true;
	return 0;
}

static int
tun_read_err(struct ssh_tunnel *t, struct errbuf *err)
{
	size_t got, room;

	/* Beyond TUNNEL_ERR_MAX it is read and dropped: unread stderr would
	 * hold the window and hide the channel's EOF. */
	do {
		if (tun_read(t, 1, t->scratch, &got, err) < 0)
			return -1;
		room = t->errout.max - t->errout.len;
		buf_add(&t->errout, t->scratch, got < room ? got : room);
	} while (got > 0);
	return 0;
}

static int
tun_down(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	size_t got = 1;

	if (t->pend == PEND_WRITE || t->pend == PEND_EOF)
		return 0;
	if (tun_flush_fd(t, fd, err) < 0 || tun_read_err(t, err) < 0)
		return -1;
	while (got > 0 && t->down_off == t->down_len && !t->remote_eof &&
	       (t->pend == PEND_NONE || t->pend == PEND_READ)) {
		if (tun_read(t, 0, t->down, &got, err) < 0)
			return -1;
		t->down_off = 0;
		t->down_len = got;
		if (tun_flush_fd(t, fd, err) < 0)
			return -1;
	}
	if (t->pend != PEND_NONE || t->down_off < t->down_len ||
	    t->remote_eof || !libssh2_channel_eof(t->ch))
		return 0;
	/* The far end is done: it reads no more, so stop sending too. */
	t->remote_eof = true;
	t->progress = true;
	if (!t->fd_gone)
		(void)shutdown(fd, SHUT_WR);
	t->up_off = t->up_len;
	t->eof_sent = true;
	return 0;
}

/* ---- the pump */

static int
tun_wait(struct ssh_tunnel *t, int fd, int timeout_ms, struct errbuf *err)
{
	struct pollfd pfd[2];
	nfds_t n = 1;
	int rc;

	pfd[0].fd = t->c->sock;
	pfd[0].events = POLLIN;
	if (t->want_out || (t->pend != PEND_NONE && tun_blocked_out(t)))
		pfd[0].events |= POLLOUT;
	pfd[1].fd = fd;
	pfd[1].events = 0;
	if (t->up_off == t->up_len && !t->fd_eof && !t->eof_sent)
		pfd[1].events |= POLLIN;
	if (t->want_fd_out)
		pfd[1].events |= POLLOUT;
	if (pfd[1].events != 0)
		n = 2;
	rc = poll(pfd, n, timeout_ms);
	if (rc < 0 && errno != EINTR)
		return err_set(
		    err, SH_ERR_INTERNAL, "poll: %s", strerror(errno));
	if (rc == 0 && t->pend == PEND_NONE && session_sock_writable(t->c)) {
		int next = 0;

		/* Idle: the keepalive cannot split (the socket has room). */
		if (libssh2_keepalive_send(t->c->session, &next) != 0)
			return session_lost(t->c,
			    libssh2_session_last_errno(t->c->session), err);
	}
	return 0;
}

static int
tun_round(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	t->progress = false;
	t->want_out = false;
	t->want_fd_out = false;
	if (tun_up(t, fd, err) < 0 || tun_down(t, fd, err) < 0)
		return -1;
	return 0;
}

/* Retries the one operation with a half-sent packet until it is out. */
static int
tun_finish_one(struct ssh_tunnel *t, struct errbuf *err)
{
	ssize_t r;
	size_t got = 0;

	if (t->pend == PEND_WRITE)
		r = libssh2_channel_write(
		    t->ch, t->up + t->up_off, t->up_len - t->up_off);
	else if (t->pend == PEND_EOF)
		r = libssh2_channel_send_eof(t->ch);
	else if (t->down_off == t->down_len)
		r = libssh2_channel_read_ex(t->ch, 0, t->down, IO_CHUNK);
	else
		r = libssh2_channel_read_ex(t->ch, 1, t->scratch, IO_CHUNK);
	if (r == LIBSSH2_ERROR_EAGAIN) {
		if (t->pend == PEND_READ && !exec_chan_adjusts(t->ch))
			t->pend = PEND_NONE;
		return 0;
	}
	if (r < 0)
		return session_lost(t->c, (int)r, err);
	if (t->pend == PEND_WRITE) {
		t->up_off += (size_t)r;
	} else if (t->pend == PEND_EOF) {
		t->eof_sent = true;
	} else if (t->down_off == t->down_len) {
		t->down_off = 0;
		t->down_len = (size_t)r;
	} else {
		got = (size_t)r;
	}
	if (got > 0 && got <= t->errout.max - t->errout.len)
		buf_add(&t->errout, t->scratch, got);
	t->pend = PEND_NONE;
	return 0;
}

static int
tun_finish(struct ssh_tunnel *t, struct errbuf *err)
{
	uint64_t end = now_ms() + CLOSE_WAIT_MS;

	while (t->pend != PEND_NONE) {
		struct pollfd pfd = { t->c->sock, POLLIN | POLLOUT, 0 };

		if (now_ms() >= end) {
			session_dead(t->c, xasprintf("a packet to %s stayed "
			                             "half sent",
			                       t->c->where));
			return err_set(
			    err, SH_ERR_SSH, "session lost: %s", t->c->lost);
		}
		if (tun_finish_one(t, err) < 0)
			return -1;
		if (t->pend != PEND_NONE)
			(void)poll(&pfd, 1, 100);
	}
	return 0;
}

int
ssh_tunnel_pump(
    struct ssh_tunnel *t, int fd, int timeout_ms, struct errbuf *err)
{
	LIBSSH2_SESSION *s;
	int rc;

	if (tun_alive(t, err) < 0)
		return -1;
	s = t->c->session;
	libssh2_session_set_blocking(s, 0);
	rc = tun_round(t, fd, err);
	if (rc == 0 && !t->progress && timeout_ms > 0 &&
	    !(t->remote_eof && t->eof_sent)) {
		rc = tun_wait(t, fd, timeout_ms, err);
		if (rc == 0)
			rc = tun_round(t, fd, err);
	}
	if (rc == 0)
		rc = tun_finish(t, err);
	if (t->c->session != NULL)
		libssh2_session_set_blocking(t->c->session, 1);
	return rc;
}

bool
ssh_tunnel_eof(const struct ssh_tunnel *t)
{
	return t->remote_eof;
}

bool
ssh_tunnel_idle(const struct ssh_tunnel *t)
{
	return t->up_off == t->up_len && t->down_off == t->down_len &&
	       t->pend == PEND_NONE;
}

const char *
ssh_tunnel_stderr(const struct ssh_tunnel *t)
{
	return t->errout.data;
}

void
ssh_tunnel_close(struct ssh_tunnel *t)
{
	struct ssh_conn *c;

	if (t == NULL)
		return;
	c = t->c;
	if (t->ch != NULL && t->gen == c->gen && !c->dead &&
	    c->session != NULL) {
		libssh2_session_set_blocking(c->session, 0);
		if (tun_finish(t, NULL) == 0 && exec_chan_close(c, t->ch))
			t->ch = NULL;
		else
			exec_chan_stuck(c);
		if (c->session != NULL)
			libssh2_session_set_blocking(c->session, 1);
	}
	tun_free(t);
}
