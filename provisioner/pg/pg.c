/*
 * pg.c: libpq against a server on the target, through the run's SSH
 * session. See pg.h for the contract.
 *
 * Sections: the local socket; the tunnel (direct-tcpip, or a perl relay to
 * a unix socket); the poll loop; connect; exec; close.
 *
 * How a connection is made: a 0700 temp dir on the controller gets a
 * listening unix socket named .s.PGSQL.PORT; libpq is started
 * asynchronously (PQconnectStartParams) with host = that dir, so it
 * connects at once; the one connection is accepted, the socket and the dir
 * are removed (nobody else can connect), and from then on the accepted fd
 * and the SSH channel are relayed by ssh_tunnel_pump() in the same loop
 * that drives PQconnectPoll / PQconsumeInput / PQflush. Everything is one
 * thread, so the libssh2 session is never used concurrently.
 *
 * libpq sees a unix socket, so it tries neither SSL nor GSSAPI (the SSH
 * session already encrypts), and with host=127.0.0.1 on the target the
 * server sees a TCP client from 127.0.0.1 (pg_hba `host` lines apply).
 *
 * Unix socket dirs: libssh2 1.10 has no direct-streamlocal channel, so an
 * exec channel runs a relay on the target: perl (Essential on Debian and
 * Ubuntu: perl-base, with IO::Socket::UNIX and IO::Select) copies stdin to
 * DIR/.s.PGSQL.PORT and the socket to stdout. It runs as t->os_user via
 * `sudo -n`, so peer authentication maps that OS user; its stderr (sudo's
 * or perl's complaint) is quoted when the connection fails.
 */
#include "pg/pg.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "target/ctx.h"
#include "transport/ssh.h"

#define PG_SLICE_MS 200 /* longest sleep between checks */
#define PG_DEFAULT_PORT 5432
#define PG_CONNECT_TIMEOUT_S 10
#define PG_CLOSE_WAIT_MS 2000 /* letting libpq's Terminate go out */

struct pg_conn {
	struct run_ctx *ctx;    /* borrowed */
	PGconn *pq;             /* owned */
	struct ssh_tunnel *tun; /* owned */
	int lfd;                /* owned: the listener, until accepted */
	int fd;                 /* owned: our end of libpq's connection */
	char *dir;              /* owned: temp dir; NULL once removed */
	char *sock;             /* owned: dir/.s.PGSQL.PORT */
	char *where;            /* owned: names the server in messages */
	unsigned timeout_s;
	uint64_t deadline;  /* now_ms() limit of the current wait */
	bool broken;        /* a timeout/interrupt left it mid-query */
	struct buf notices; /* server notices, capped */
};

#define PG_NOTICES_MAX (64u << 10)

/* ======================================================== local socket */

static const char *
tmp_base(void)
{
	const char *t = getenv("TMPDIR");

	/* sun_path is 108 bytes: keep room for /stagehand-pg-XXXXXX/... */
	if (t != NULL && t[0] == '/' && strlen(t) < 60)
		return t;
	return "/tmp";
}

static void
local_unlink(struct pg_conn *c)
{
	if (c->sock != NULL)
		(void)unlink(c->sock);
	if (c->dir != NULL)
		(void)rmdir(c->dir);
	free(c->sock);
	free(c->dir);
	c->sock = c->dir = NULL;
	if (c->lfd >= 0)
		close(c->lfd);
	c->lfd = -1;
}

static int
local_listen(struct pg_conn *c, unsigned port, struct errbuf *err)
{
	struct sockaddr_un sa;
	char *tmpl = xasprintf("%s/stagehand-pg-XXXXXX", tmp_base());

	if (mkdtemp(tmpl) == NULL) {
		err_set(
		    err, SH_ERR_IO, "mkdtemp %s: %s", tmpl, strerror(errno));
		free(tmpl);
		return -1;
	}
	c->dir = tmpl; /* mkdtemp makes it 0700 */
	c->sock = xasprintf("%s/.s.PGSQL.%u", c->dir, port);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(c->sock) >= sizeof(sa.sun_path))
		return err_set(
		    err, SH_ERR_IO, "socket path too long: %s", c->sock);
	memcpy(sa.sun_path, c->sock, strlen(c->sock) + 1);
	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->lfd < 0 ||
	    bind(c->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(c->lfd, 1) < 0)
		return err_set(err, SH_ERR_IO, "local socket %s: %s", c->sock,
		    strerror(errno));
	return 0;
}

/* libpq connected during PQconnectStartParams: take that connection. */
static int
local_accept(struct pg_conn *c, struct errbuf *err)
{
	struct pollfd pfd = { c->lfd, POLLIN, 0 };

	if (poll(&pfd, 1, 1000) <= 0)
		return err_set(err, SH_ERR_INTERNAL,
		    "libpq did not connect to %s", c->sock);
	c->fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c->fd < 0)
		return err_set(err, SH_ERR_IO, "accept on %s: %s", c->sock,
		    strerror(errno));
	local_unlink(c); /* nobody else gets in */
	return 0;
}

/* ======================================================== tunnel */

/*
 * The relay: argv[0] is the socket path. Reads from whichever side is
 * ready and writes it whole to the other; stdin's EOF half-closes the
 * socket, the socket's EOF ends it. No single quote inside (sh_quote'd).
 */
static const char relay_pl[] =
    "my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or "
    "die \"connect to $ARGV[0]: $!\\n\";"
    "binmode STDIN; binmode STDOUT;"
    "my $sel = IO::Select->new(\\*STDIN, $s);"
    "for (;;) { for my $h ($sel->can_read) {"
    " my $n = sysread($h, my $b, 65536);"
    " die \"read: $!\\n\" unless defined $n;"
    " if ($n == 0) { exit 0 if $h == $s;"
    "  shutdown($s, 1); $sel->remove(\\*STDIN); next; }"
    " my $o = $h == $s ? \\*STDOUT : $s;"
    " for (my $off = 0; $off < $n;) {"
    "  my $w = syswrite($o, $b, $n - $off, $off);"
    "  die \"write: $!\\n\" unless defined $w; $off += $w; } } }";

static bool
os_user_ok(const char *u)
{
	if (*u == '\0' || *u == '-')
		return false;
	return strspn(u, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789._-$") == strlen(u);
}

static int
relay_command(const struct run_ctx *ctx, const struct pg_target *t,
    unsigned port, struct buf *cmd, struct errbuf *err)
{
	const char *login = ctx->ssh_opts.user;
	char *path = xasprintf("%s/.s.PGSQL.%u", t->host, port);
	bool sudo = t->os_user != NULL &&
	            !(login != NULL && strcmp(login, t->os_user) == 0);
	bool ok = true;

	if (sudo && !os_user_ok(t->os_user)) {
		free(path);
		return err_set(
		    err, SH_ERR_STEP, "bad OS user name '%s'", t->os_user);
	}
	if (sudo)
		ok = buf_adds(cmd, "sudo -n -u ") == 0 &&
		     sh_quote(cmd, t->os_user) == 0 &&
		     buf_adds(cmd, " -- ") == 0;
	ok = ok &&
	     buf_adds(cmd, "perl -MIO::Socket::UNIX -MIO::Select -e ") == 0 &&
	     sh_quote(cmd, relay_pl) == 0 && buf_addc(cmd, ' ') == 0 &&
	     sh_quote(cmd, path) == 0;
	free(path);
	if (!ok)
		return err_set(
		    err, SH_ERR_STEP, "socket dir too long: %s", t->host);
	return 0;
}

static int
tunnel_open(struct pg_conn *c, const struct pg_target *t, unsigned port,
    struct errbuf *err)
{
	struct ssh_conn *ssh = NULL;
	struct buf cmd;
	int rc;

	if (run_ctx_ssh(c->ctx, &ssh, err) < 0)
		return -1;
	if (t->host[0] != '/')
		return ssh_tunnel_open_tcp(ssh, t->host, port, &c->tun, err);
	buf_init(&cmd, 8192);
	rc = relay_command(c->ctx, t, port, &cmd, err);
	if (rc == 0 && buf_failed(&cmd)) /* never run a cut command */
		rc = err_set(err, SH_ERR_INTERNAL, "relay command too long");
	if (rc == 0)
		rc = ssh_tunnel_open_exec(ssh, cmd.data, &c->tun, err);
	buf_release(&cmd);
	return rc;
}

/* ======================================================== the poll loop */

static int conn_fail(struct pg_conn *c, struct errbuf *err);

static int
pg_check(const struct pg_conn *c, struct errbuf *err)
{
	const struct run_ctx *ctx = c->ctx;

	if (ctx->interrupted != NULL && *ctx->interrupted)
		return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
	if (c->deadline != 0 && now_ms() >= c->deadline)
		return err_set(err, SH_ERR_TIMEOUT, "timed out");
	return 0;
}

static bool
pq_ready(const struct pg_conn *c, short events)
{
	struct pollfd pfd = { PQsocket(c->pq), events, 0 };

	return pfd.fd >= 0 && poll(&pfd, 1, 0) > 0;
}

/*
 * Relays until libpq's socket is ready for events. libpq only reads what
 * the pump wrote to fd and only writes when called, so after a pump that
 * moved nothing the next event can only come from the SSH socket.
 */
static int
pg_wait(struct pg_conn *c, short events, struct errbuf *err)
{
	for (;;) {
		if (PQsocket(c->pq) < 0)
			return conn_fail(c, err);
		if (pg_check(c, err) < 0 ||
		    ssh_tunnel_pump(c->tun, c->fd, 0, err) < 0)
			return -1;
		if (pq_ready(c, events))
			return 0;
		if (ssh_tunnel_pump(c->tun, c->fd, PG_SLICE_MS, err) < 0)
			return -1;
		if (pq_ready(c, events))
			return 0;
	}
}

/* ======================================================== messages */

/*
 * libpq's message, without its "connection to server on socket ... failed:"
 * preamble (the socket is our temp file) and with lines joined.
 */
static void
pq_message(const char *msg, struct buf *out)
{
	const char *p = msg;

	if (str_has_prefix(p, "connection to server")) {
		const char *f = strstr(p, "failed: ");

		if (f != NULL)
			p = f + 8;
	}
	for (; *p != '\0'; p++) {
		if (*p == '\n') {
			while (p[1] == '\n' || p[1] == ' ' || p[1] == '\t')
				p++;
			if (p[1] != '\0')
				buf_adds(out, "; ");
		} else {
			buf_addc(out, *p);
		}
	}
	if (out->len == 0)
		buf_adds(out, "unknown libpq error");
}

/* The relay's stderr (sudo's or perl's complaint), lines joined. */
static void
relay_reason(const struct pg_conn *c, struct buf *out)
{
	const char *e = c->tun != NULL ? ssh_tunnel_stderr(c->tun) : "";
	size_t n = strlen(e);

	while (n > 0 && (e[n - 1] == '\n' || e[n - 1] == ' '))
		n--;
	if (n == 0)
		return;
	buf_adds(out, "relay on the target: ");
	for (size_t i = 0; i < n; i++)
		buf_addc(out, e[i] == '\n' ? ' ' : e[i]);
}

/*
 * libpq's reason, and the relay's stderr when it said something. When
 * the relay ended before the server answered, libpq only knows that "the
 * server closed the connection unexpectedly": the relay's reason (socket
 * missing, sudo refused) then replaces that.
 */
static int
conn_fail(struct pg_conn *c, struct errbuf *err)
{
	struct buf m, r;

	buf_init(&m, 900);
	buf_init(&r, 900);
	pq_message(PQerrorMessage(c->pq), &m);
	relay_reason(c, &r);
	if (r.len > 0 &&
	    str_has_prefix(m.data, "server closed the connection unexpectedly"))
		err_set(
		    err, SH_ERR_REMOTE, "postgres at %s: %s", c->where, r.data);
	else
		err_set(err, SH_ERR_REMOTE, "postgres at %s: %s%s%s%s",
		    c->where, m.data, r.len ? " (" : "", r.data,
		    r.len ? ")" : "");
	buf_release(&m);
	buf_release(&r);
	return -1;
}

/* ======================================================== connect */

static PGconn *
pq_start(const struct pg_conn *c, const struct pg_target *t, unsigned port)
{
	char *portstr = xasprintf("%u", port);
	const char *keys[12], *vals[12];
	size_t n = 0;
	PGconn *pq;
#define KV(k, v) (keys[n] = (k), vals[n] = (v), n++)
	KV("host", c->dir);
	KV("port", portstr);
	KV("user", t->user);
	KV("dbname", t->dbname != NULL ? t->dbname : t->user);
	if (t->password != NULL)
		KV("password", t->password);
	KV("application_name", "stagehand");
	KV("client_encoding", "UTF8");
	KV("sslmode", "disable");
	KV("gssencmode", "disable");
#undef KV
	keys[n] = vals[n] = NULL;
	pq = PQconnectStartParams(keys, vals, 0);
	free(portstr);
	return pq;
}

/* libpq's notice processor: keep, one line each, instead of stderr. */
static void
on_notice(void *arg, const char *msg)
{
	struct buf *b = arg;
	size_t n = strlen(msg);

	while (n > 0 && msg[n - 1] == '\n')
		n--;
	if (b->len + n + 1 > b->max)
		return;
	for (size_t i = 0; i < n; i++)
		buf_addc(b, msg[i] == '\n' ? ' ' : msg[i]);
	buf_addc(b, '\n');
}

struct buf *
pg_notices(struct pg_conn *c)
{
	return &c->notices;
}

static int
connect_poll(struct pg_conn *c, struct errbuf *err)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	for (;;) {
		if (st == PGRES_POLLING_OK)
			return 0;
		if (st == PGRES_POLLING_FAILED)
			return conn_fail(c, err);
		if (pg_wait(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
		        err) < 0)
			return -1;
		st = PQconnectPoll(c->pq);
	}
}

static int
pg_connect_steps(struct pg_conn *c, const struct pg_target *t, unsigned port,
    struct errbuf *err)
{
	unsigned cto =
	    t->connect_timeout_s ? t->connect_timeout_s : PG_CONNECT_TIMEOUT_S;

	if (tunnel_open(c, t, port, err) < 0 || local_listen(c, port, err) < 0)
		return -1;
	c->pq = pq_start(c, t, port);
	if (c->pq == NULL)
		return err_set(err, SH_ERR_INTERNAL, "out of memory (libpq)");
	PQsetNoticeProcessor(c->pq, on_notice, &c->notices);
	if (PQstatus(c->pq) == CONNECTION_BAD)
		return conn_fail(c, err);
	if (local_accept(c, err) < 0)
		return -1;
	c->deadline = now_ms() + (uint64_t)cto * 1000u;
	if (connect_poll(c, err) < 0) {
		if (err->code == SH_ERR_TIMEOUT)
			err_set(err, SH_ERR_TIMEOUT,
			    "postgres at %s: no answer within %u s", c->where,
			    cto);
		return -1;
	}
	c->deadline = 0;
	if (PQsetnonblocking(c->pq, 1) != 0)
		return conn_fail(c, err);
	/* PostgreSQL 14+: the server then stops a query whose client went
	 * away (pg_close() after a timeout or an interruption) instead of
	 * running it to the end. */
	if (PQserverVersion(c->pq) >= 140000)
		return pg_exec(c, "SET client_connection_check_interval = 1000",
		    NULL, NULL, NULL, err);
	return 0;
}

int
pg_connect(struct run_ctx *ctx, const struct pg_target *t, struct pg_conn **out,
    struct errbuf *err)
{
	struct pg_conn *c;
	unsigned port = t->port ? t->port : PG_DEFAULT_PORT;

	*out = NULL;
	if (t->host == NULL || t->host[0] == '\0' || t->user == NULL ||
	    t->user[0] == '\0' || port > 65535)
		return err_set(err, SH_ERR_INTERNAL,
		    "pg_connect: host, user and a port are required");
	c = xcalloc(1, sizeof(*c));
	c->ctx = ctx;
	c->lfd = c->fd = -1;
	c->timeout_s = t->timeout_s;
	buf_init(&c->notices, PG_NOTICES_MAX);
	c->where = t->host[0] == '/'
	               ? xasprintf("%s/.s.PGSQL.%u", t->host, port)
	               : xasprintf("%s:%u", t->host, port);
	if (pg_connect_steps(c, t, port, err) < 0) {
		pg_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

/* ======================================================== exec */

struct exec_state {
	pg_result_fn fn;
	void *arg;
	struct pg_error *pe;
	struct errbuf *err;
	bool failed;    /* the first error is in err */
	struct buf msg; /* server error text */
};

/* Sends the whole query: PQflush until it says everything went out. */
static int
exec_flush(struct pg_conn *c, struct errbuf *err)
{
	int r;

	while ((r = PQflush(c->pq)) == 1) {
		if (pg_wait(c, POLLOUT | POLLIN, err) < 0)
			return -1;
		if (pq_ready(c, POLLIN) && PQconsumeInput(c->pq) == 0)
			return conn_fail(c, err);
	}
	return r == 0 ? 0 : conn_fail(c, err);
}

static int
exec_busy(struct pg_conn *c, struct errbuf *err)
{
	while (PQisBusy(c->pq)) {
		if (pg_wait(c, POLLIN, err) < 0)
			return -1;
		if (PQconsumeInput(c->pq) == 0)
			return conn_fail(c, err);
	}
	return 0;
}

/* One field, single line, "; label: " before it; skips absent ones. */
static void
add_field(struct buf *b, const PGresult *res, int field, const char *label)
{
	const char *v = PQresultErrorField(res, field);

	if (v == NULL || *v == '\0')
		return;
	if (label != NULL)
		buf_addf(b, "; %s: ", label);
	for (; *v != '\0'; v++)
		buf_addc(b, *v == '\n' || *v == '\t' ? ' ' : *v);
}

/* "SQLSTATE: message; detail: ..; hint: ..; context: .." */
static void
exec_server_error(struct exec_state *s, const PGresult *res)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
	uint64_t v = 0;

	if (st != NULL && strlen(st) == 5)
		memcpy(s->pe->sqlstate, st, 6);
	if (pos != NULL && parse_u64(pos, strlen(pos), 1u << 30, &v) == 0)
		s->pe->position = (unsigned)v;
	if (PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) == NULL) {
		pq_message(PQresultErrorMessage(res), &s->msg);
	} else {
		buf_addf(&s->msg,
		    "%s: ", s->pe->sqlstate[0] ? s->pe->sqlstate : "?????");
		add_field(&s->msg, res, PG_DIAG_MESSAGE_PRIMARY, NULL);
		add_field(&s->msg, res, PG_DIAG_MESSAGE_DETAIL, "detail");
		add_field(&s->msg, res, PG_DIAG_MESSAGE_HINT, "hint");
		add_field(&s->msg, res, PG_DIAG_CONTEXT, "context");
	}
	err_set(s->err, SH_ERR_STEP, "%s", s->msg.data);
	s->failed = true;
}

/* COPY has no data source or sink here: end it so the server moves on. */
static int
exec_copy(struct pg_conn *c, struct exec_state *s, ExecStatusType st)
{
	char *row = NULL;
	int r;

	if (st == PGRES_COPY_IN)
		return PQputCopyEnd(c->pq, "COPY FROM STDIN is not supported "
		                           "by stagehand") < 0
		           ? conn_fail(c, s->err)
		           : exec_flush(c, s->err);
	while ((r = PQgetCopyData(c->pq, &row, 1)) >= 0) {
		PQfreemem(row);
		row = NULL;
		if (r == 0 && (pg_wait(c, POLLIN, s->err) < 0 ||
		                  PQconsumeInput(c->pq) == 0))
			return -1;
	}
	return r == -1 ? 0 : conn_fail(c, s->err);
}

static int
exec_result(struct pg_conn *c, struct exec_state *s, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	switch (st) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
		if (!s->failed && s->fn != NULL &&
		    s->fn(s->arg, res, s->err) < 0)
			s->failed = true;
		if (!s->failed)
			s->pe->nresults++;
		return 0;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
		if (!s->failed) {
			err_set(s->err, SH_ERR_STEP,
			    "COPY to or from the "
			    "client is not supported");
			s->failed = true;
		}
		return exec_copy(c, s, st);
	case PGRES_FATAL_ERROR:
		if (!s->failed)
			exec_server_error(s, res);
		return 0;
	default:
		return 0; /* empty query, notices */
	}
}

static int
exec_results(struct pg_conn *c, struct exec_state *s)
{
	PGresult *res;

	for (;;) {
		int rc;

		if (exec_busy(c, s->err) < 0)
			return -1;
		res = PQgetResult(c->pq);
		if (res == NULL)
			return 0;
		rc = exec_result(c, s, res);
		PQclear(res);
		if (rc < 0)
			return -1;
	}
}

static int
exec_limit(struct pg_conn *c, struct errbuf *err)
{
	if (err->code == SH_ERR_TIMEOUT)
		err_set(err, SH_ERR_TIMEOUT, "SQL timed out after %u s",
		    c->timeout_s);
	if (err->code == SH_ERR_TIMEOUT || err->code == SH_ERR_INTERRUPTED)
		c->broken = true; /* a query may still be running */
	return -1;
}

int
pg_exec(struct pg_conn *c, const char *sql, pg_result_fn on_result, void *arg,
    struct pg_error *pe, struct errbuf *err)
{
	struct pg_error scratch;
	struct exec_state s;
	int rc = -1;

	if (pe == NULL)
		pe = &scratch;
	memset(pe, 0, sizeof(*pe));
	if (c->broken || PQstatus(c->pq) != CONNECTION_OK)
		return err_set(err, SH_ERR_STEP,
		    "postgres at %s: the connection is no longer usable",
		    c->where);
	memset(&s, 0, sizeof(s));
	s.fn = on_result;
	s.arg = arg;
	s.pe = pe;
	s.err = err;
	buf_init(&s.msg, 900);
	c->deadline = c->timeout_s ? now_ms() + c->timeout_s * 1000ull : 0;
	if (PQsendQuery(c->pq, sql) == 0)
		conn_fail(c, err);
	else if (exec_flush(c, err) == 0 && exec_results(c, &s) == 0)
		rc = s.failed ? -1 : 0;
	else
		exec_limit(c, err);
	c->deadline = 0;
	buf_release(&s.msg);
	return rc;
}

/* ======================================================== ping, close */

int
pg_ping(struct run_ctx *ctx, const struct pg_target *t, struct errbuf *err)
{
	struct pg_conn *c = NULL;
	int rc;

	if (pg_connect(ctx, t, &c, err) < 0)
		return -1;
	rc = pg_exec(c, "SELECT 1", NULL, NULL, NULL, err);
	pg_close(c);
	return rc;
}

/* Lets libpq's Terminate message reach the server, briefly. */
static void
close_drain(struct pg_conn *c)
{
	uint64_t end = now_ms() + PG_CLOSE_WAIT_MS;
	struct errbuf scratch;

	while (now_ms() < end && !ssh_tunnel_eof(c->tun)) {
		if (ssh_tunnel_pump(c->tun, c->fd, 50, &scratch) < 0)
			return;
		if (ssh_tunnel_idle(c->tun))
			return;
	}
}

void
pg_close(struct pg_conn *c)
{
	if (c == NULL)
		return;
	if (c->pq != NULL) {
		bool ok = PQstatus(c->pq) == CONNECTION_OK && !c->broken;

		PQfinish(c->pq); /* sends Terminate, closes its socket */
		if (ok && c->tun != NULL && c->fd >= 0)
			close_drain(c);
	}
	ssh_tunnel_close(c->tun);
	if (c->fd >= 0)
		close(c->fd);
	local_unlink(c);
	buf_release(&c->notices);
	free(c->where);
	free(c);
}
