/*
 * exec.c: the exec engine: ssh_exec() runs one command on its own
 * channel, streams its stdin from memory and an fd and its stdout and
 * stderr to buffers or an fd, within a deadline; kept commands serve one
 * call after another on one channel, their stdout in frames; spares keep
 * copies of a command started ahead of time (see ssh.h). The session is
 * driven non-blocking with poll(), and a packet half sent is finished
 * before any other (ssh_int.h). Channel closing, the spares and the kept
 * commands are shared with tunnel.c and session.c.
 */
#include "transport/ssh_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libssh2.h>

#include "transport/ssh.h"
#include "util/limits.h"
#include "util/util.h"

struct xfer {
	struct ssh_conn *c;
	LIBSSH2_SESSION *s;
	LIBSSH2_CHANNEL *ch; /* owned */
	struct ssh_io *io;
	struct ssh_exit *exit;
	const char *data; /* the rest of io->stdin_data */
	size_t data_left;
	char *chunk; /* owned: bytes read from stdin_fd */
	size_t chunk_off, chunk_len;
	bool fd_eof;   /* stdin_fd exhausted, or none */
	bool in_done;  /* EOF sent, or the remote end closed */
	bool closed;   /* the remote end closed the channel */
	bool want_out; /* waiting for the socket to be writable */
	bool progress; /* this round moved some bytes */
	enum pend pend;
	char *rbuf; /* owned: IO_CHUNK bytes */
	/* A kept command (ssh_io.kept): its stdout is frames, parsed here. */
	bool ended;   /* the end frame arrived: the call is over */
	bool bad;     /* the stream broke the frame format */
	char tag;     /* 'o' or 'e' while inside a data frame, else 0 */
	size_t fleft; /* bytes left of the current data frame */
	char hdr[24]; /* a header line read so far */
	size_t hlen;
};

static int spares_fill(struct xfer *x, const char *command, struct errbuf *err);
static void kept_drop(struct ssh_conn *c, size_t i);

static int
xfer_lost(struct xfer *x, int rc, struct errbuf *err)
{
	return session_lost(x->c, rc, err);
}

static int
xfer_check(const struct xfer *x, struct errbuf *err)
{
	if (session_interrupted(x->c))
		return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
	if (x->io->deadline_ms != 0 && now_ms() >= x->io->deadline_ms)
		return err_set(err, SH_ERR_TIMEOUT, "command timed out");
	return 0;
}

static bool
xfer_need_fd(const struct xfer *x)
{
	return x->ch != NULL && !x->in_done && x->pend == PEND_NONE &&
	       x->data_left == 0 && x->chunk_off == x->chunk_len && !x->fd_eof;
}

static int
xfer_timeout_ms(const struct xfer *x)
{
	uint64_t ms = POLL_SLICE_MS, now = now_ms();

	if (x->io->deadline_ms != 0)
		ms = x->io->deadline_ms <= now       ? 0
		     : x->io->deadline_ms - now < ms ? x->io->deadline_ms - now
		                                     : ms;
	return (int)ms;
}

/* Sleeps until the socket or stdin_fd has something for us, or a slice. */
static int
xfer_wait(struct xfer *x, struct errbuf *err)
{
	struct pollfd pfd[2];
	nfds_t n = 1;
	int rc, dirs = libssh2_session_block_directions(x->s);

	pfd[0].fd = x->c->sock;
	pfd[0].events = POLLIN;
	if (x->want_out ||
	    (x->pend != PEND_NONE && (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)))
		pfd[0].events |= POLLOUT;
	if (xfer_need_fd(x)) {
		pfd[1].fd = x->io->stdin_fd;
		pfd[1].events = POLLIN;
		n = 2;
	}
	rc = poll(pfd, n, xfer_timeout_ms(x));
	if (rc < 0 && errno != EINTR)
		return err_set(
		    err, SH_ERR_INTERNAL, "poll: %s", strerror(errno));
	if (rc == 0 && x->pend == PEND_NONE && session_sock_writable(x->c)) {
		int next = 0;

		/* Idle: the keepalive cannot split (the socket has room). */
		if (libssh2_keepalive_send(x->s, &next) != 0)
			return xfer_lost(
			    x, libssh2_session_last_errno(x->s), err);
	}
	return 0;
}

/* Giving up half way through opening leaves libssh2 mid-request. */
static int
open_abandoned(struct xfer *x)
{
	if (!x->c->dead)
		session_dead(x->c, xasprintf("a channel to %s was abandoned "
		                             "while opening",
		                       x->c->where));
	return -1;
}

/* Opens a channel (*out, from then on) and starts command on it. */
static int
chan_start(struct xfer *x, const char *command, LIBSSH2_CHANNEL **out,
    struct errbuf *err)
{
	LIBSSH2_CHANNEL *ch;
	int rc;

	while ((ch = libssh2_channel_open_session(x->s)) == NULL) {
		rc = libssh2_session_last_errno(x->s);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return xfer_lost(x, rc, err);
		if (xfer_check(x, err) < 0 || xfer_wait(x, err) < 0)
			return open_abandoned(x);
	}
	*out = ch;
	while ((rc = libssh2_channel_exec(ch, command)) == LIBSSH2_ERROR_EAGAIN)
		if (xfer_check(x, err) < 0 || xfer_wait(x, err) < 0)
			return open_abandoned(x);
	if (rc < 0)
		return xfer_lost(x, rc, err);
	return 0;
}

/* Room kept before the data of a chunk for its frame header. */
#define FRAME_HDR 24
/* A framed stdin_fd's chunk: as large as the pipe allows, so the far
 * end's relay (remote.c) parses few headers. */
#define FRAME_CHUNK (1u << 20)

/*
 * Puts the frame header "<n>\n" right before the n bytes read at
 * chunk + FRAME_HDR; at EOF (n == 0) the chunk is the last frame "0\n".
 */
static void
in_frame(struct xfer *x, size_t n)
{
	char hdr[FRAME_HDR];
	size_t h = sizeof(hdr);

	hdr[--h] = '\n';
	do {
		hdr[--h] = (char)('0' + n % 10);
		n /= 10;
	} while (n > 0);
	x->chunk_off = FRAME_HDR - (sizeof(hdr) - h);
	memcpy(x->chunk + x->chunk_off, hdr + h, sizeof(hdr) - h);
	x->chunk_len += FRAME_HDR;
}

/* Fills the chunk from stdin_fd when it is readable. */
static int
in_refill(struct xfer *x, struct errbuf *err)
{
	struct pollfd pfd = { x->io->stdin_fd, POLLIN, 0 };
	size_t at = x->io->frame_stdin_fd ? FRAME_HDR : 0;
	ssize_t r;

	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	r = read(x->io->stdin_fd, x->chunk + at,
	    (at > 0 ? FRAME_CHUNK : IO_CHUNK) - at);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (r < 0)
		return err_set(err, SH_ERR_IO,
		    "reading the command's stdin: "
		    "%s",
		    strerror(errno));
	x->progress = true;
	x->chunk_off = 0;
	x->chunk_len = (size_t)r;
	x->fd_eof = r == 0;
	if (at > 0)
		in_frame(x, (size_t)r);
	return 0;
}

/* The next stdin bytes to send; *n == 0 when none are ready yet. */
static int
in_next(struct xfer *x, const char **p, size_t *n, struct errbuf *err)
{
	*p = NULL;
	*n = 0;
	if (x->data_left == 0 && x->chunk_off == x->chunk_len && !x->fd_eof &&
	    in_refill(x, err) < 0)
		return -1;
	if (x->data_left > 0) {
		*p = x->data;
		*n = x->data_left;
	} else if (x->chunk_off < x->chunk_len) {
		*p = x->chunk + x->chunk_off;
		*n = x->chunk_len - x->chunk_off;
	}
	return 0;
}

static void
in_consume(struct xfer *x, size_t n)
{
	if (x->data_left > 0) {
		x->data += n;
		x->data_left -= n;
	} else {
		x->chunk_off += n;
	}
}

static int
in_send_eof(struct xfer *x, struct errbuf *err)
{
	int rc;

	if (x->pend != PEND_EOF && !session_sock_writable(x->c)) {
		x->want_out = true;
		return 0;
	}
	rc = libssh2_channel_send_eof(x->ch);
	if (rc == LIBSSH2_ERROR_EAGAIN) {
		if (x->pend == PEND_EOF ||
		    (libssh2_session_block_directions(x->s) &
		        LIBSSH2_SESSION_BLOCK_OUTBOUND))
			x->pend = PEND_EOF;
		return 0;
	}
	if (rc < 0)
		return xfer_lost(x, rc, err);
	x->pend = PEND_NONE;
	x->in_done = true;
	x->progress = true;
	return 0;
}

static int
xfer_stdin(struct xfer *x, struct errbuf *err)
{
	while (!x->in_done && (x->pend == PEND_NONE || x->pend == PEND_WRITE ||
	                          x->pend == PEND_EOF)) {
		const char *p;
		size_t n;
		ssize_t w;

		if (x->pend == PEND_EOF)
			return in_send_eof(x, err);
		if (in_next(x, &p, &n, err) < 0)
			return -1;
		if (n == 0 && x->fd_eof && x->io->keep_stdin_open) {
			x->in_done = true; /* all sent; no EOF (ssh.h) */
			x->progress = true;
			return 0;
		}
		if (n == 0)
			return x->fd_eof ? in_send_eof(x, err) : 0;
		w = libssh2_channel_write(x->ch, p, n);
		if (w == LIBSSH2_ERROR_EAGAIN) {
			/* Sticky: a later partial send may not set the bit. */
			if (x->pend == PEND_WRITE ||
			    (libssh2_session_block_directions(x->s) &
			        LIBSSH2_SESSION_BLOCK_OUTBOUND))
				x->pend = PEND_WRITE;
			return 0;
		}
		if (w < 0)
			return xfer_lost(x, (int)w, err);
		x->pend = PEND_NONE;
		x->progress = true;
		in_consume(x, (size_t)w);
	}
	return 0;
}

static void
sink_buf(struct xfer *x, struct buf *b, const char *p, size_t n)
{
	size_t room;

	if (b == NULL)
		return;
	room = b->max - b->len;
	if (n > room) {
		x->exit->dropped += n - room;
		n = room;
	}
	buf_add(b, p, n);
}

/*
 * stderr keeps a tail (a command's diagnostics come last): past max, the
 * oldest bytes go, so many at a time that the buffer is down to max/2
 * with the new bytes in it; moving costs at most one byte per byte read.
 */
static void
sink_tail(struct xfer *x, struct buf *b, const char *p, size_t n)
{
	size_t keep, cut;

	if (b == NULL)
		return;
	keep = b->max / 2;
	if (b->len + n > b->max && n >= keep) {
		x->exit->dropped += b->len + (n - keep);
		b->len = 0;
		b->cut = true;
		p += n - keep;
		n = keep;
	} else if (b->len + n > b->max) {
		cut = b->len + n - keep;
		memmove(b->data, b->data + cut, b->len - cut);
		b->len -= cut;
		b->cut = true;
		x->exit->dropped += cut;
	}
	buf_add(b, p, n);
}

static int deliver(
    struct xfer *x, int stream, const char *p, size_t n, struct errbuf *err);

/* "KILL" for 9: the names exit-signal uses, for a kept command's 'k'. */
static const char *
sig_name(unsigned n)
{
	static const char *const names[] = { "", "HUP", "INT", "QUIT", "ILL",
		"TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
		"PIPE", "ALRM", "TERM" };

	return n < sizeof(names) / sizeof(*names) ? names[n] : "";
}

/* The end of a call: "x<status>" or "k<signal number>" (ssh.h). */
static void
frame_end(struct xfer *x, char tag, unsigned v)
{
	const char *name = sig_name(v);

	x->ended = true;
	x->exit->status = (int)v;
	if (tag != 'k')
		return;
	x->exit->status = -1;
	if (*name == '\0')
		name = "UNKNOWN";
	memcpy(x->exit->signal, name, strlen(name) + 1);
}

/* One header line "<tag><decimal>" (without its newline). */
static int
frame_header(struct xfer *x, struct errbuf *err)
{
	unsigned long long v = 0;
	char tag = x->hdr[0];

	if (x->hlen < 2 || x->hlen > 12 ||
	    (tag != 'o' && tag != 'e' && tag != 'x' && tag != 'k'))
		goto bad;
	for (size_t i = 1; i < x->hlen; i++) {
		if (x->hdr[i] < '0' || x->hdr[i] > '9')
			goto bad;
		v = v * 10 + (unsigned)(x->hdr[i] - '0');
	}
	x->hlen = 0;
	if (tag == 'x' || tag == 'k') {
		if (v > 255)
			goto bad;
		frame_end(x, tag, (unsigned)v);
	} else if (v > 0) {
		x->tag = tag;
		x->fleft = (size_t)v;
	}
	return 0;
bad:
	x->bad = true;
	return err_set(err, SH_ERR_REMOTE,
	    "the session on %s sent something that is not a frame",
	    x->c->where);
}

/*
 * A kept command's stdout: "o<n>\n<n bytes>" (the step's stdout), "e<n>
 * \n<n bytes>" (its stderr), then "x<status>\n" or "k<signal>\n". Only
 * the far end's loop writes this stream; a step's own bytes are always
 * inside a data frame, so they cannot end the call.
 */
static int
frames(struct xfer *x, const char *p, size_t n, struct errbuf *err)
{
	while (n > 0) {
		if (x->ended || x->bad) {
			x->bad = true;
			return err_set(err, SH_ERR_REMOTE,
			    "the session on %s wrote past the end of a step",
			    x->c->where);
		}
		if (x->fleft > 0) {
			size_t k = n < x->fleft ? n : x->fleft;

			if (deliver(x, x->tag == 'o' ? 0 : 1, p, k, err) < 0)
				return -1;
			x->fleft -= k;
			p += k;
			n -= k;
			continue;
		}
		if (*p == '\n') {
			p++;
			n--;
			if (frame_header(x, err) < 0)
				return -1;
			continue;
		}
		if (x->hlen == sizeof(x->hdr)) {
			x->bad = true;
			return err_set(err, SH_ERR_REMOTE,
			    "the session on %s sent something that is not a "
			    "frame",
			    x->c->where);
		}
		x->hdr[x->hlen++] = *p++;
		n--;
	}
	return 0;
}

/* Bytes of the command's stdout (stream 0) or stderr to where io says. */
static int
deliver(struct xfer *x, int stream, const char *p, size_t n, struct errbuf *err)
{
	if (stream != 0) {
		if (x->io->on_stderr != NULL)
			x->io->on_stderr(x->io->on_stderr_arg, p, n);
		sink_tail(x, x->io->err, p, n);
		return 0;
	}
	if (x->io->stdout_fd < 0) {
		sink_buf(x, x->io->out, p, n);
		return 0;
	}
	while (n > 0) {
		ssize_t w = write(x->io->stdout_fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_set(err, SH_ERR_IO,
			    "writing the command's "
			    "stdout: %s",
			    strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Channel bytes: a kept command's stdout is frames. */
static int
sink(struct xfer *x, int stream, const char *p, size_t n, struct errbuf *err)
{
	if (stream == 0 && x->io->kept)
		return frames(x, p, n, err);
	return deliver(x, stream, p, n, err);
}

/* True when the next channel read will send a window adjustment. */
bool
exec_chan_adjusts(LIBSSH2_CHANNEL *ch)
{
	unsigned long avail = 0, initial = 0, window;

	window = libssh2_channel_window_read_ex(ch, &avail, &initial);
	return window < initial / 4 * 3 + IO_CHUNK;
}

static bool
read_adjusts(const struct xfer *x)
{
	return exec_chan_adjusts(x->ch);
}

static int
read_stream(struct xfer *x, int stream, struct errbuf *err)
{
	for (;;) {
		bool adj = read_adjusts(x);
		ssize_t n;

		if (adj && x->pend != PEND_READ &&
		    !session_sock_writable(x->c)) {
			x->want_out = true;
			return 0;
		}
		n = libssh2_channel_read_ex(x->ch, stream, x->rbuf, IO_CHUNK);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			x->pend =
			    adj && read_adjusts(x) ? PEND_READ : PEND_NONE;
			return 0;
		}
		if (n < 0)
			return xfer_lost(x, (int)n, err);
		x->pend = PEND_NONE;
		if (n == 0)
			return 0;
		x->progress = true;
		if (sink(x, stream, x->rbuf, (size_t)n, err) < 0)
			return -1;
	}
}

static int
xfer_output(struct xfer *x, struct errbuf *err)
{
	int rc;

	if (x->pend == PEND_WRITE || x->pend == PEND_EOF)
		return 0;
	if (read_stream(x, 0, err) < 0 ||
	    (x->pend == PEND_NONE && read_stream(x, 1, err) < 0))
		return -1;
	if (x->pend != PEND_NONE || !libssh2_channel_eof(x->ch))
		return 0;
	/* The remote sent EOF and all its output is read: wait for close. */
	rc = libssh2_channel_wait_closed(x->ch);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return 0;
	if (rc < 0)
		return xfer_lost(x, rc, err);
	x->closed = true;
	x->in_done = true; /* it reads no more: stop sending */
	return 0;
}

/*
 * Spares are started once this command's stdin is all sent (the remote end
 * has its work) and no packet is half sent, so their round trips overlap
 * its run; a command done before that gets them started afterwards.
 */
static int
xfer_run(struct xfer *x, const char *command, struct errbuf *err)
{
	bool spares_due = x->io->spares > 0;

	while (!x->closed && !x->ended) {
		x->progress = false;
		x->want_out = false;
		if (xfer_check(x, err) < 0 || xfer_stdin(x, err) < 0 ||
		    xfer_output(x, err) < 0)
			return -1;
		if (spares_due && x->in_done && x->pend == PEND_NONE) {
			spares_due = false;
			if (spares_fill(x, command, err) < 0)
				return -1;
			continue;
		}
		if (!x->closed && !x->ended && !x->progress &&
		    xfer_wait(x, err) < 0)
			return -1;
	}
	return spares_due ? spares_fill(x, command, err) : 0;
}

static void
xfer_exit(struct xfer *x)
{
	char *sig = NULL;
	size_t siglen = 0;

	x->exit->status = libssh2_channel_get_exit_status(x->ch);
	if (libssh2_channel_get_exit_signal(
	        x->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 &&
	    sig != NULL) {
		if (siglen >= sizeof(x->exit->signal))
			siglen = sizeof(x->exit->signal) - 1;
		memcpy(x->exit->signal, sig, siglen);
		x->exit->signal[siglen] = '\0';
		x->exit->status = -1;
	}
	if (sig != NULL)
		libssh2_free(x->s, sig);
}

static void
wait_sock(const struct xfer *x, bool out)
{
	struct pollfd pfd = { x->c->sock, POLLIN, 0 };

	if (out || (libssh2_session_block_directions(x->s) &
	               LIBSSH2_SESSION_BLOCK_OUTBOUND))
		pfd.events |= POLLOUT;
	(void)poll(&pfd, 1, 100);
}

/* Finishes a half-sent packet (ssh_int.h) before closing. */
static bool
xfer_flush(struct xfer *x, uint64_t end)
{
	while (x->pend != PEND_NONE && now_ms() < end) {
		const char *p = NULL;
		size_t n = 0;
		ssize_t r;

		if (x->pend == PEND_WRITE && in_next(x, &p, &n, NULL) == 0 &&
		    n > 0)
			r = libssh2_channel_write(x->ch, p, n);
		else if (x->pend == PEND_EOF)
			r = libssh2_channel_send_eof(x->ch);
		else
			r = libssh2_channel_read_ex(
			    x->ch, 0, x->rbuf, IO_CHUNK);
		if (r == LIBSSH2_ERROR_EAGAIN &&
		    (x->pend != PEND_READ || read_adjusts(x))) {
			wait_sock(x, true);
			continue;
		}
		if (r < 0 && r != LIBSSH2_ERROR_EAGAIN)
			return false;
		x->pend = PEND_NONE;
	}
	return x->pend == PEND_NONE;
}

/*
 * libssh2_channel_free() sends CLOSE and then waits for one more packet
 * from the server. When the command is still running (a timeout or an
 * interruption), sshd sends nothing until it exits, so a keepalive, which
 * asks for a reply, provides that packet. libssh2 never reuses a channel
 * id, so what sshd sends later for this channel is dropped.
 */
static bool
chan_free(struct xfer *x, uint64_t end)
{
	int rc;

	while (!session_sock_writable(x->c)) {
		if (now_ms() >= end)
			return false;
		wait_sock(x, true);
	}
	libssh2_keepalive_config(x->s, 1, 2);
	while ((rc = libssh2_channel_free(x->ch)) == LIBSSH2_ERROR_EAGAIN &&
	       now_ms() < end) {
		int next = 0;

		if (session_sock_writable(x->c))
			(void)libssh2_keepalive_send(x->s, &next);
		wait_sock(x, false);
	}
	libssh2_keepalive_config(x->s, 1, x->c->keepalive_s);
	if (rc == 0)
		x->ch = NULL;
	return rc == 0;
}

/* A channel that will not close leaves the session unusable. */
void
exec_chan_stuck(struct ssh_conn *c)
{
	if (!c->dead)
		session_dead(c,
		    xasprintf("a channel to %s could not be closed", c->where));
}

/* Closes and frees ch (no packet of it half sent) within CLOSE_WAIT_MS. */
bool
exec_chan_close(struct ssh_conn *c, LIBSSH2_CHANNEL *ch)
{
	struct xfer x;

	memset(&x, 0, sizeof(x));
	x.c = c;
	x.s = c->session;
	x.ch = ch;
	if (chan_free(&x, now_ms() + CLOSE_WAIT_MS))
		return true;
	exec_chan_stuck(c);
	return false;
}

/*
 * Closes and frees the channel within CLOSE_WAIT_MS. A packet that stays
 * half sent, or a channel that will not close, leaves the session unusable.
 */
static void
xfer_release(struct xfer *x)
{
	uint64_t end = now_ms() + CLOSE_WAIT_MS;

	if (x->ch != NULL && !x->c->dead && xfer_flush(x, end))
		(void)chan_free(x, end);
	if (x->ch != NULL)
		exec_chan_stuck(x->c);
	free(x->chunk);
	free(x->rbuf);
}

/* ---- kept commands (ssh.h) */

/*
 * Spares and kept commands are both lists of struct spare (ssh_int.h):
 * entry i taken out of the list v of *n entries; returns its channel.
 */
static LIBSSH2_CHANNEL *
chan_list_remove(struct spare *v, size_t *n, size_t i)
{
	LIBSSH2_CHANNEL *ch = v[i].ch;

	free(v[i].command);
	memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(v[0]));
	(*n)--;
	return ch;
}

/* Closes entry i: its command sees EOF on stdin and exits. */
static void
chan_list_drop(struct ssh_conn *c, struct spare *v, size_t *n, size_t i)
{
	(void)exec_chan_close(c, chan_list_remove(v, n, i));
}

/* Closes kept command i: its loop sees EOF on stdin and exits. */
static void
kept_drop(struct ssh_conn *c, size_t i)
{
	chan_list_drop(c, c->kept, &c->nkept, i);
}

/*
 * The channel of command kept from an earlier call, or NULL. One that
 * wrote between calls or has ended (a step killed its loop) is closed.
 */
static LIBSSH2_CHANNEL *
kept_take(struct ssh_conn *c, const char *command)
{
	for (size_t i = 0; i < c->nkept && !c->dead; i++) {
		LIBSSH2_CHANNEL *ch = c->kept[i].ch;
		unsigned long pending = 0;

		if (strcmp(c->kept[i].command, command) != 0)
			continue;
		(void)libssh2_channel_window_read_ex(ch, &pending, NULL);
		if (pending == 0 && libssh2_channel_eof(ch) == 0)
			return chan_list_remove(c->kept, &c->nkept, i);
		kept_drop(c, i);
		break;
	}
	return NULL;
}

/* Keeps x's channel for the next call of command; the oldest makes room. */
static void
kept_put(struct xfer *x, const char *command)
{
	struct ssh_conn *c = x->c;

	if (c->nkept == SSH_KEPT_MAX)
		kept_drop(c, 0);
	if (c->dead)
		return;
	c->kept[c->nkept].ch = x->ch;
	c->kept[c->nkept].command = xstrdup(command);
	c->nkept++;
	x->ch = NULL;
}

int
ssh_exec_warm(struct ssh_conn *c, const char *command, struct errbuf *err)
{
	struct ssh_io none = { NULL, 0, -1, -1, NULL, NULL, 0, NULL, NULL, 0,
		false, false, false };
	LIBSSH2_CHANNEL *ch = NULL;
	struct errbuf why;
	struct xfer x;
	int rc = 0;

	if (session_usable(c, err) < 0)
		return -1;
	for (size_t i = 0; i < c->nkept; i++)
		if (strcmp(c->kept[i].command, command) == 0)
			return 0;
	memset(&x, 0, sizeof(x));
	x.c = c;
	x.s = c->session;
	x.io = &none;
	none.deadline_ms = now_ms() + SSH_CONNECT_TIMEOUT_S * 1000u;
	libssh2_session_set_blocking(c->session, 0);
	if (chan_start(&x, command, &ch, &why) == 0) {
		x.ch = ch;
		kept_put(&x, command);
	} else if (c->dead || why.code != SH_ERR_SSH) {
		*err = why;
		rc = -1;
	} else if (ch != NULL) {
		(void)exec_chan_close(c, ch);
	}
	if (c->session != NULL)
		libssh2_session_set_blocking(c->session, 1);
	return rc < 0 ? -1 : session_usable(c, err);
}

/* ---- spares (ssh.h) */

/* The session is going: its spares go with it (libssh2_session_free). */
void
exec_spares_forget(struct ssh_conn *c)
{
	for (size_t i = 0; i < c->nspares; i++)
		free(c->spares[i].command);
	c->nspares = 0;
	c->spares_refused = false;
	for (size_t i = 0; i < c->nkept; i++)
		free(c->kept[i].command);
	c->nkept = 0;
}

/* Closes spare i; its command sees EOF and exits. */
static void
spare_drop(struct ssh_conn *c, size_t i)
{
	chan_list_drop(c, c->spares, &c->nspares, i);
}

/*
 * The oldest spare of command, or NULL. One that has output waiting or has
 * ended never got to wait for its stdin: it is closed, and so the caller
 * opens a fresh channel when no good one is left, which shows the error.
 */
static LIBSSH2_CHANNEL *
spare_take(struct ssh_conn *c, const char *command)
{
	size_t i = 0;

	while (i < c->nspares && !c->dead) {
		LIBSSH2_CHANNEL *ch = c->spares[i].ch;
		unsigned long pending = 0;

		if (strcmp(c->spares[i].command, command) != 0) {
			i++;
			continue;
		}
		(void)libssh2_channel_window_read_ex(ch, &pending, NULL);
		if (pending == 0 && libssh2_channel_eof(ch) == 0)
			return chan_list_remove(c->spares, &c->nspares, i);
		spare_drop(c, i);
	}
	return NULL;
}

static unsigned
spare_count(const struct ssh_conn *c, const char *command)
{
	unsigned n = 0;

	for (size_t i = 0; i < c->nspares; i++)
		n += strcmp(c->spares[i].command, command) == 0;
	return n;
}

/* Makes room by closing the oldest spare of another command. */
static bool
spare_make_room(struct ssh_conn *c, const char *command)
{
	for (size_t i = 0; i < c->nspares; i++) {
		if (strcmp(c->spares[i].command, command) == 0)
			continue;
		spare_drop(c, i);
		return !c->dead;
	}
	return false;
}

/*
 * Closes every spare and keeps no more: the server refused a channel that
 * is not a spare, and spares hold sessions it counts (MaxSessions). Says
 * whether there was one to close, i.e. whether a retry may succeed.
 */
bool
exec_spares_yield(struct ssh_conn *c)
{
	bool had = c->nspares > 0 || c->nkept > 0;

	c->spares_refused = true;
	while (c->nspares > 0 && !c->dead)
		spare_drop(c, 0);
	while (c->nkept > 0 && !c->dead)
		kept_drop(c, 0);
	return had && !c->dead;
}

/*
 * The command's own channel. A refused open is tried again: at once when
 * spares held sessions (closed first), else after a pause, as sshd may
 * still count the channel closed just before until it reaps it.
 */
static int
xfer_open(struct xfer *x, const char *command, struct errbuf *err)
{
	static const unsigned pause_ms[] = { 20, 200 };
	size_t tries = 0;

	while (chan_start(x, command, &x->ch, err) < 0) {
		if (x->c->dead || err->code != SH_ERR_SSH || x->ch != NULL ||
		    tries == sizeof(pause_ms) / sizeof(*pause_ms))
			return -1;
		if (!exec_spares_yield(x->c) &&
		    session_sleep_ms(x->c, pause_ms[tries], err) < 0)
			return -1;
		tries++;
	}
	return 0;
}

/*
 * Starts copies of command until x->io->spares wait. A refused channel
 * (sshd's MaxSessions, a denied exec) ends spares for the session and is
 * not an error; a broken session, a deadline or an interruption is.
 */
static int
spares_fill(struct xfer *x, const char *command, struct errbuf *err)
{
	struct ssh_conn *c = x->c;

	while (!c->spares_refused && spare_count(c, command) < x->io->spares) {
		LIBSSH2_CHANNEL *ch = NULL;
		struct errbuf why;

		if (c->nspares == SSH_SPARES_MAX &&
		    !spare_make_room(c, command))
			break;
		if (chan_start(x, command, &ch, &why) < 0) {
			if (c->dead || why.code != SH_ERR_SSH) {
				*err = why;
				return -1;
			}
			c->spares_refused = true;
			if (ch != NULL)
				(void)exec_chan_close(c, ch);
			break;
		}
		c->spares[c->nspares].ch = ch;
		c->spares[c->nspares].command = xstrdup(command);
		c->nspares++;
	}
	return session_usable(c, err);
}

int
ssh_exec(struct ssh_conn *c, const char *command, struct ssh_io *io,
    struct ssh_exit *exit, struct errbuf *err)
{
	struct ssh_io none = { NULL, 0, -1, -1, NULL, NULL, 0, NULL, NULL, 0,
		false, false, false };
	struct ssh_exit scratch;
	struct xfer x;
	int rc;

	if (exit == NULL)
		exit = &scratch;
	memset(exit, 0, sizeof(*exit));
	exit->status = -1;
	if (session_usable(c, err) < 0)
		return -1;
	memset(&x, 0, sizeof(x));
	x.c = c;
	x.s = c->session;
	x.io = io != NULL ? io : &none;
	x.exit = exit;
	x.data = x.io->stdin_data;
	x.data_left = x.data != NULL ? x.io->stdin_len : 0;
	x.fd_eof = x.io->stdin_fd < 0;
	x.chunk = xmalloc(x.io->frame_stdin_fd ? FRAME_CHUNK : IO_CHUNK);
	x.rbuf = xmalloc(IO_CHUNK);
	libssh2_session_set_blocking(c->session, 0);
	if (x.io->kept && x.io->stdin_fd >= 0) {
		free(x.chunk);
		free(x.rbuf);
		return err_set(err, SH_ERR_INTERNAL,
		    "ssh_exec: a kept command "
		    "takes no stdin_fd");
	}
	if (x.io->kept)
		x.ch = kept_take(c, command); /* may find the session broken */
	else if (x.io->spares > 0)
		x.ch = spare_take(c, command);
	rc = session_usable(c, err);
	if (rc == 0 && x.ch == NULL)
		rc = xfer_open(&x, command, err);
	if (rc == 0)
		rc = xfer_run(&x, command, err);
	if (rc == 0 && !x.ended)
		xfer_exit(&x);
	if (rc == 0 && x.ended && xfer_flush(&x, now_ms() + CLOSE_WAIT_MS))
		kept_put(&x, command);
	xfer_release(&x);
	if (c->session != NULL)
		libssh2_session_set_blocking(c->session, 1);
	return rc;
}
