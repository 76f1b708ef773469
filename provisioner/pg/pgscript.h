/*
 * pg/pgscript.h: SQL scripts, files as psql runs them, checked offline and
 * run over a pg_conn (pg/pg.h).
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
 * standard_conforming_strings: '..' strings are lexed with it on (the
 * default since 9.1), and then as the file's own top-level SET [SESSION]
 * standard_conforming_strings / RESET statements set it, as psql follows
 * the server's setting (SET LOCAL is not followed). Such a script
 * (sets_scs) is always sent statement by statement, also inside a
 * transaction: the server lexes one query string with one setting.
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
#ifndef STAGEHAND_PGSCRIPT_H
#define STAGEHAND_PGSCRIPT_H

#include <stdbool.h>
#include <stddef.h>

#include "pg/pg.h"
#include "util/util.h"

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
	bool sets_scs; /* SETs or RESETs standard_conforming_strings */
};

/*
 * Checks that text is what any SQL file must be before it is split: UTF-8
 * with no NUL byte. SH_ERR_MANIFEST "NAME: what" otherwise.
 */
int pg_text_check(
    const char *name, const char *text, size_t len, struct errbuf *err);
int pg_script_parse(const char *name, const char *text, size_t len,
    struct pg_script *out, struct errbuf *err);
void pg_script_free(struct pg_script *s);
int pg_script_run(struct pg_conn *c, const struct pg_script *s,
    enum pg_txn mode, pg_result_fn on_result, void *arg, struct errbuf *err);
/*
 * pg_script_run_tail(): the script and then tail (more SQL: a migration's
 * bookkeeping) in one transaction, sent as one query string "BEGIN; TEXT;
 * TAIL; COMMIT" (one round trip); ROLLBACK after an error, so tail commits
 * if and only if the script did. A script with manages_txn or sets_scs
 * goes BEGIN, statement by statement, tail, COMMIT. Errors as
 * pg_script_run(); one in tail or at COMMIT is "NAME: SQLSTATE: ..".
 */
int pg_script_run_tail(struct pg_conn *c, const struct pg_script *s,
    const char *tail, struct errbuf *err);
/*
 * The line of the 1-based character position pos (PostgreSQL counts
 * characters: UTF-8 code points) in text[0..len), which starts on line
 * first_line. A pos beyond the text gives the last line.
 */
unsigned pg_sql_line(
    const char *text, size_t len, unsigned first_line, unsigned pos);

#endif
