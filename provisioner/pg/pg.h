/*
 * pg.h: libpq against a PostgreSQL server on the target, through the run's
 * SSH session. No port is opened on the instance and no psql is needed
 * there.
 *
 * pg_connect() makes a private listening unix socket on the controller
 * (in a 0700 temp dir), points libpq at it, and forwards the one
 * connection libpq makes over the run's SSH session: an SSH direct-tcpip
 * channel to t->host:t->port on the target when host is an address, or,
 * when host is an absolute directory (the server's unix socket dir), an
 * exec channel running a small relay on the target (libssh2 1.10 has no
 * direct-streamlocal). The tunnel is pumped from the same thread that
 * drives libpq's asynchronous API, so the libssh2 session is never used
 * from two threads.
 *
 * pg_exec() sends one SQL string (may hold several statements) and calls
 * on_result once per statement result, in order; it stops at the first
 * error, which it returns as SH_ERR_STEP with the SQLSTATE, the message
 * and, when the server gives one, the 1-based character position in sql
 * (pg_error.position) so callers can turn it into a line number.
 *
 * Passwords are secrets: they are given to libpq in memory (conninfo
 * parameters, never an environment variable or a file) and never appear
 * in an error message.
 *
 * Errors: pg_connect()/pg_ping(): SH_ERR_REMOTE when the server cannot be
 * reached or refuses (nothing listening: sshd's "connect failed"; socket
 * missing, sudo refused: the relay's stderr; authentication: the server's
 * FATAL), SH_ERR_SSH (the session broke: the runner may reconnect; every
 * pg_connect() opens its tunnel on the session run_ctx_ssh() returns then),
 * SH_ERR_TIMEOUT (connect_timeout_s), SH_ERR_INTERRUPTED. pg_exec(): an
 * SQL error is SH_ERR_STEP "SQLSTATE: message[; detail: ..][; hint: ..]
 * [; context: ..]"; a timeout (timeout_s) or an interruption leaves the
 * connection unusable (later pg_exec() fail; pg_close() it): on
 * PostgreSQL 14+ pg_connect() sets client_connection_check_interval, so
 * the server stops the abandoned query once the tunnel closes.
 * COPY FROM STDIN / TO STDOUT are refused (SH_ERR_STEP).
 *
 * Ownership: pg_connect() returns a connection the caller closes with
 * pg_close(). PGresults passed to on_result are freed after it returns.
 * All functions return 0 or -1 with err filled.
 */
#ifndef STAGEHAND_PG_H
#define STAGEHAND_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "util/util.h"

struct run_ctx;

struct pg_target {
	const char *host;     /* "127.0.0.1" or a socket dir on the target */
	unsigned port;        /* 0: 5432 */
	const char *user;     /* database role */
	const char *dbname;   /* NULL: same as user */
	const char *password; /* secret; NULL for none */
	unsigned connect_timeout_s; /* 0: 10 */
	/* Added by the transport (zero keeps the old behaviour): */
	const char *os_user; /* socket-dir host only: the relay runs as this
	                      * user (sudo -n -u), so peer authentication sees
	                      * it; NULL or the login user: no sudo. Steps
	                      * pass step->become. */
	unsigned timeout_s;  /* each pg_exec() call; 0: no limit */
};

struct pg_error {
	char sqlstate[6];  /* "" when not a server error */
	unsigned position; /* 1-based offset into the SQL; 0 if unknown.
	                    * PostgreSQL counts characters, not bytes: for
	                    * UTF-8 SQL, count code points (pg_sql_line()). */
	unsigned nresults; /* results before the error: in a multi-statement
	                    * string, the 0-based index of the failing one */
};

struct pg_conn; /* opaque: libpq connection + its tunnel */

int pg_connect(struct run_ctx *ctx, const struct pg_target *t,
    struct pg_conn **out, struct errbuf *err);
/* 0 when the server accepts connections (connects and runs SELECT 1). */
int pg_ping(struct run_ctx *ctx, const struct pg_target *t, struct errbuf *err);

typedef int (*pg_result_fn)(void *arg, PGresult *res, struct errbuf *err);

int pg_exec(struct pg_conn *c, const char *sql, pg_result_fn on_result,
    void *arg, struct pg_error *pe, struct errbuf *err);
void pg_close(struct pg_conn *c);
/*
 * The server's notices and warnings on this connection (RAISE NOTICE,
 * "table does not exist, skipping"), one line each, the first 64 KiB;
 * libpq would otherwise print them on stderr. Borrowed from c; the caller
 * may read and buf_reset() it.
 */
struct buf *pg_notices(struct pg_conn *c);

#endif
