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

/*
 * SQL scripts (pgscript.c): files as psql runs them, checked offline.
 *
 * pg_script_parse() splits text into statements the way psql does:
 * '..' and E'..' strings, "identifiers", $tag$..$tag$ dollar quotes, --
 * and nested block comments, parentheses, CREATE FUNCTION/PROCEDURE ..
 * BEGIN ATOMIC .. END bodies; a ';' outside all of those ends a statement.
 * It rejects (SH_ERR_MANIFEST, "NAME:LINE: ...") psql backslash commands
 * (a backslash outside quotes and comments: \set, \i, \gexec, \copy ..),
 * NUL bytes, text that is not UTF-8, and an unterminated quote or comment.
 * text must be NUL-terminated at len (a struct buf is); it and name are
 * borrowed for the script's lifetime; free with pg_script_free().
 *
 * manages_txn: some top-level statement starts with BEGIN, START, COMMIT,
 * END, ROLLBACK or ABORT (also PREPARE TRANSACTION / COMMIT PREPARED): the
 * file handles its own transactions and is never wrapped.
 *
 * pg_script_run() modes:
 *   PG_TXN_COMMIT    BEGIN; the whole text as one query (one round trip);
 *                    COMMIT (ROLLBACK after an error)
 *   PG_TXN_ROLLBACK  the same, always ROLLBACK (pgTAP files)
 *   PG_TXN_NONE      statement by statement, each committed on its own,
 *                    as psql does (CREATE DATABASE, VACUUM, CONCURRENTLY)
 * A script with manages_txn runs as PG_TXN_NONE whatever mode says.
 * Stops at the first error: SH_ERR_STEP "NAME:LINE: SQLSTATE: message"
 * (LINE from the server's error position, else the failing statement's
 * first line; "NAME: at COMMIT: .." for deferred errors). on_result as for
 * pg_exec(). Connection errors keep pg_exec()'s codes, prefixed "NAME: ".
 */
enum pg_txn {
	PG_TXN_COMMIT = 0,
	PG_TXN_ROLLBACK,
	PG_TXN_NONE,
};

struct pg_stmt {
	size_t off;    /* first byte of its first token */
	size_t len;    /* up to, not including, the ';' */
	unsigned line; /* 1-based line of off */
};

struct pg_script {
	const char *name; /* borrowed: for messages */
	const char *text; /* borrowed */
	size_t len;
	struct pg_stmt *stmts; /* owned */
	size_t n;
	bool manages_txn;
};

int pg_script_parse(const char *name, const char *text, size_t len,
    struct pg_script *out, struct errbuf *err);
void pg_script_free(struct pg_script *s);
int pg_script_run(struct pg_conn *c, const struct pg_script *s,
    enum pg_txn mode, pg_result_fn on_result, void *arg, struct errbuf *err);
/*
 * The line of the 1-based character position pos (PostgreSQL counts
 * characters: UTF-8 code points) in text[0..len), which starts on line
 * first_line. A pos beyond the text gives the last line.
 */
unsigned pg_sql_line(
    const char *text, size_t len, unsigned first_line, unsigned pos);

#endif
