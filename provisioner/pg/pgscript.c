/*
 * pgscript.c: SQL files as psql runs them, over a pg_conn. See pg.h
 * ("SQL scripts") for the contract.
 *
 * The splitter follows psql's lexer (src/bin/psql/psqlscan.l) as far as
 * statement boundaries go: only a ';' outside quotes, comments, dollar
 * quotes, parentheses and CREATE FUNCTION/PROCEDURE .. BEGIN .. END bodies
 * ends a statement. Strings are taken as with standard_conforming_strings
 * on (the default since 9.1): a backslash is an escape only in E'..',
 * until the file sets it off (scs_track(), as psql follows the server).
 *
 * Why statement offsets matter: the server reports an error's position in
 * characters from the start of the query string it received. A whole
 * file sent as one query gets positions relative to the file; a statement
 * sent alone gets positions relative to its first token, whose line we
 * know. An error without a position (most run-time errors) is placed at
 * the first line of the failing statement, found by counting results.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg/pgscript.h"

#define WORDS 4 /* first words remembered per statement */

struct lex {
	const char *p;
	size_t len, i;
	unsigned line;
	const char *name;
	struct pg_script *s;
	struct errbuf *err;
	bool in_stmt;
	size_t start;
	unsigned start_line;
	unsigned paren;
	unsigned begin_depth;
	unsigned nwords;
	char first[WORDS][12]; /* lowercased, truncated */
	bool scs_off; /* standard_conforming_strings off: '\'' escapes */
};

static bool
ident_start(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       ch == '_' || ch >= 0x80;
}

static bool
ident_char(unsigned char ch)
{
	return ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '$';
}

static int
lex_err(struct lex *l, unsigned line, const char *what)
{
	return err_set(
	    l->err, SH_ERR_MANIFEST, "%s:%u: %s", l->name, line, what);
}

/* Skips to the byte after `close`, counting lines; -1 when unterminated. */
static int
skip_to(struct lex *l, const char *close, size_t clen, bool backslash)
{
	while (l->i < l->len) {
		char ch = l->p[l->i];

		if (backslash && ch == '\\' && l->i + 1 < l->len) {
			if (l->p[l->i + 1] == '\n')
				l->line++;
			l->i += 2;
			continue;
		}
		if (l->i + clen <= l->len &&
		    memcmp(l->p + l->i, close, clen) == 0) {
			l->i += clen;
			return 0;
		}
		if (ch == '\n')
			l->line++;
		l->i++;
	}
	return -1;
}

/* 'x' or "x": a doubled quote is part of it. */
static int
lex_quoted(struct lex *l, char q, bool backslash)
{
	unsigned line = l->line;
	char close[2] = { q, '\0' };

	l->i++;
	for (;;) {
		if (skip_to(l, close, 1, backslash) < 0)
			return lex_err(l, line,
			    q == '"' ? "unterminated quoted identifier"
			             : "unterminated quoted string");
		if (l->i < l->len && l->p[l->i] == q)
			l->i++; /* '' inside: keep going */
		else
			return 0;
	}
}

static int
lex_block_comment(struct lex *l)
{
	unsigned line = l->line, depth = 0;

	while (l->i + 1 < l->len) {
		const char *p = l->p + l->i;

		if (p[0] == '/' && p[1] == '*') {
			depth++;
			l->i += 2;
		} else if (p[0] == '*' && p[1] == '/') {
			l->i += 2;
			if (--depth == 0)
				return 0;
		} else {
			if (p[0] == '\n')
				l->line++;
			l->i++;
		}
	}
	return lex_err(l, line, "unterminated /* comment");
}

/* $tag$..$tag$; a '$' that starts no dollar quote is just skipped. */
static int
lex_dollar(struct lex *l)
{
	size_t j = l->i + 1;
	unsigned line = l->line;
	char *tag;
	int rc;

	if (l->i > 0 && ident_char((unsigned char)l->p[l->i - 1])) {
		l->i++;
		return 0;
	}
	if (j < l->len && ident_start((unsigned char)l->p[j]))
		while (j < l->len && ident_char((unsigned char)l->p[j]) &&
		       l->p[j] != '$')
			j++;
	if (j >= l->len || l->p[j] != '$') {
		l->i++; /* $1, or not a quote */
		return 0;
	}
	tag = xstrndup(l->p + l->i, j + 1 - l->i);
	l->i = j + 1;
	rc = skip_to(l, tag, strlen(tag), false);
	if (rc < 0)
		lex_err(l, line, "unterminated dollar-quoted string");
	free(tag);
	return rc;
}

static bool
first_is(const struct lex *l, unsigned k, const char *w)
{
	return k < l->nwords && k < WORDS && strcmp(l->first[k], w) == 0;
}

/* CREATE [OR REPLACE] FUNCTION|PROCEDURE, as psql recognises it. */
static bool
in_routine(const struct lex *l)
{
	if (!first_is(l, 0, "create"))
		return false;
	return first_is(l, 1, "function") || first_is(l, 1, "procedure") ||
	       (first_is(l, 1, "or") && first_is(l, 2, "replace") &&
	           (first_is(l, 3, "function") || first_is(l, 3, "procedure")));
}

static void
lex_word(struct lex *l)
{
	size_t s = l->i, n;
	char w[12];

	while (l->i < l->len && ident_char((unsigned char)l->p[l->i]))
		l->i++;
	n = l->i - s < sizeof(w) - 1 ? l->i - s : sizeof(w) - 1;
	for (size_t k = 0; k < n; k++) {
		char ch = l->p[s + k];

		w[k] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	w[n] = '\0';
	if (l->nwords < WORDS)
		memcpy(l->first[l->nwords], w, sizeof(w));
	l->nwords++;
	if (!in_routine(l) || l->paren > 0)
		return;
	if (strcmp(w, "begin") == 0)
		l->begin_depth++;
	else if (strcmp(w, "case") == 0 && l->begin_depth > 0)
		l->begin_depth++;
	else if (strcmp(w, "end") == 0 && l->begin_depth > 0)
		l->begin_depth--;
}

static bool
txn_control(const struct lex *l)
{
	static const char *const words[] = { "begin", "start", "commit", "end",
		"rollback", "abort", NULL };

	for (size_t k = 0; words[k] != NULL; k++)
		if (first_is(l, 0, words[k]))
			return true;
	return first_is(l, 0, "prepare") && first_is(l, 1, "transaction");
}

/* ======================================================== scs */

/* The next word of p[*i..n) case-insensitively equal to w. */
static bool
next_word(const char *p, size_t n, size_t *i, const char *w)
{
	size_t k = *i, len = strlen(w);

	while (k < n &&
	       (p[k] == ' ' || p[k] == '\t' || p[k] == '\n' || p[k] == '\r'))
		k++;
	if (n - k < len || strncasecmp(p + k, w, len) != 0 ||
	    (ident_char((unsigned char)w[len - 1]) && k + len < n &&
	        ident_char((unsigned char)p[k + len])))
		return false;
	*i = k + len;
	return true;
}

/* The value of SET standard_conforming_strings: 1 on, 0 off, -1 unknown. */
static int
scs_value(const char *p, size_t n, size_t i)
{
	static const char *const on[] = { "on", "'on'", "true", "'true'", "yes",
		"1", "default", NULL };
	static const char *const off[] = { "off", "'off'", "false", "'false'",
		"no", "0", NULL };

	if (!next_word(p, n, &i, "=") && !next_word(p, n, &i, "to"))
		return -1;
	for (size_t k = 0; on[k] != NULL; k++)
		if (next_word(p, n, &i, on[k]))
			return 1;
	for (size_t k = 0; off[k] != NULL; k++)
		if (next_word(p, n, &i, off[k]))
			return 0;
	return -1;
}

/*
 * psql lexes with the server's standard_conforming_strings, which a file
 * may change: follow SET [SESSION] and RESET of it (RESET: the default,
 * on). SET LOCAL lasts one transaction and is not followed.
 */
static void
scs_track(struct lex *l, const char *p, size_t n)
{
	size_t i = 0;
	int v;

	if (next_word(p, n, &i, "reset")) {
		if (next_word(p, n, &i, "standard_conforming_strings") ||
		    next_word(p, n, &i, "all")) {
			l->scs_off = false;
			l->s->sets_scs = true;
		}
		return;
	}
	if (!next_word(p, n, &i, "set"))
		return;
	(void)next_word(p, n, &i, "session");
	if (!next_word(p, n, &i, "standard_conforming_strings"))
		return;
	v = scs_value(p, n, i);
	if (v >= 0) {
		l->scs_off = v == 0;
		l->s->sets_scs = true;
	}
}

static void
stmt_end(struct lex *l, size_t end)
{
	struct pg_script *s = l->s;

	if (!l->in_stmt)
		return;
	while (end > l->start &&
	       (l->p[end - 1] == ' ' || l->p[end - 1] == '\t' ||
	           l->p[end - 1] == '\n' || l->p[end - 1] == '\r'))
		end--;
	s->stmts = xreallocarray(s->stmts, s->n + 1, sizeof(*s->stmts));
	s->stmts[s->n].off = l->start;
	s->stmts[s->n].len = end - l->start;
	s->stmts[s->n].line = l->start_line;
	s->n++;
	if (txn_control(l))
		s->manages_txn = true;
	scs_track(l, l->p + l->start, end - l->start);
	l->in_stmt = false;
	l->paren = l->begin_depth = l->nwords = 0;
}

/* The backslash command's name, for the message. */
static int
lex_backslash(struct lex *l)
{
	size_t e = l->i + 1;
	char *cmd, *msg;

	while (
	    e < l->len && e - l->i < 24 && ident_char((unsigned char)l->p[e]))
		e++;
	cmd = xstrndup(l->p + l->i, e - l->i);
	msg = xasprintf("psql backslash command '%s' is not supported: "
	                "stagehand sends SQL through libpq, not psql",
	    cmd);
	lex_err(l, l->line, msg);
	free(msg);
	free(cmd);
	return -1;
}

/* One token that is part of a statement (not blank, not a comment). */
static int
lex_token(struct lex *l)
{
	unsigned char ch = (unsigned char)l->p[l->i];

	if (ch == ';' && l->paren == 0 && l->begin_depth == 0) {
		stmt_end(l, l->i);
		l->i++;
		return 0;
	}
	if (!l->in_stmt) {
		l->in_stmt = true;
		l->start = l->i;
		l->start_line = l->line;
	}
	if (ch == '\'')
		return lex_quoted(l, '\'', l->scs_off);
	if (ch == '"')
		return lex_quoted(l, '"', false);
	if (ch == '$')
		return lex_dollar(l);
	if (ch == '\\')
		return lex_backslash(l);
	if ((ch == 'e' || ch == 'E') && l->i + 1 < l->len &&
	    l->p[l->i + 1] == '\'') {
		l->i++;
		return lex_quoted(l, '\'', true);
	}
	if (ident_start(ch)) {
		lex_word(l);
		return 0;
	}
	if (ch == '(')
		l->paren++;
	else if (ch == ')' && l->paren > 0)
		l->paren--;
	l->i++;
	return 0;
}

static int
lex_run(struct lex *l)
{
	while (l->i < l->len) {
		const char *p = l->p + l->i;

		if (p[0] == '\n') {
			l->line++;
			l->i++;
		} else if (p[0] == ' ' || p[0] == '\t' || p[0] == '\r' ||
		           p[0] == '\f' || p[0] == '\v') {
			l->i++;
		} else if (p[0] == '-' && l->i + 1 < l->len && p[1] == '-') {
			while (l->i < l->len && l->p[l->i] != '\n')
				l->i++;
		} else if (p[0] == '/' && l->i + 1 < l->len && p[1] == '*') {
			if (lex_block_comment(l) < 0)
				return -1;
		} else if (lex_token(l) < 0) {
			return -1;
		}
	}
	stmt_end(l, l->len);
	return 0;
}

int
pg_text_check(
    const char *name, const char *text, size_t len, struct errbuf *err)
{
	if (mem_has_nul(text, len))
		return err_set(
		    err, SH_ERR_MANIFEST, "%s: contains a NUL byte", name);
	if (!utf8_valid((const unsigned char *)text, len))
		return err_set(
		    err, SH_ERR_MANIFEST, "%s: not valid UTF-8", name);
	return 0;
}

int
pg_script_parse(const char *name, const char *text, size_t len,
    struct pg_script *out, struct errbuf *err)
{
	struct lex l;

	memset(out, 0, sizeof(*out));
	out->name = name;
	out->text = text;
	out->len = len;
	if (pg_text_check(name, text, len, err) < 0)
		return -1;
	memset(&l, 0, sizeof(l));
	l.p = text;
	l.len = len;
	l.line = 1;
	l.name = name;
	l.s = out;
	l.err = err;
	if (lex_run(&l) < 0) {
		pg_script_free(out);
		return -1;
	}
	return 0;
}

void
pg_script_free(struct pg_script *s)
{
	free(s->stmts);
	s->stmts = NULL;
	s->n = 0;
}

unsigned
pg_sql_line(const char *text, size_t len, unsigned first_line, unsigned pos)
{
	unsigned line = first_line, ch = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)text[i];

		if ((b & 0xC0) != 0x80 && ++ch == pos)
			return line;
		if (b == '\n' && i + 1 < len)
			line++;
	}
	return line;
}

/* ======================================================== running */

/* A server error gets NAME:LINE; anything else NAME. */
static int
script_fail(const struct pg_script *s, const struct pg_error *pe, unsigned line,
    struct errbuf *err)
{
	if (pe->sqlstate[0] != '\0' && line > 0)
		return err_prefix(err, "%s:%u: ", s->name, line);
	return err_prefix(err, "%s: ", s->name);
}

static int
run_each(struct pg_conn *c, const struct pg_script *s, pg_result_fn fn,
    void *arg, struct errbuf *err)
{
	for (size_t k = 0; k < s->n; k++) {
		const struct pg_stmt *st = &s->stmts[k];
		char *q = xstrndup(s->text + st->off, st->len);
		struct pg_error pe;
		int rc = pg_exec(c, q, fn, arg, &pe, err);

		free(q);
		if (rc < 0)
			return script_fail(s, &pe,
			    pe.position ? pg_sql_line(s->text + st->off,
			                      st->len, st->line, pe.position)
			                : st->line,
			    err);
	}
	return 0;
}

static unsigned
whole_line(const struct pg_script *s, const struct pg_error *pe)
{
	if (pe->position > 0)
		return pg_sql_line(s->text, s->len, 1, pe->position);
	if (pe->nresults < s->n)
		return s->stmts[pe->nresults].line;
	return 0;
}

static int
run_whole(struct pg_conn *c, const struct pg_script *s, enum pg_txn mode,
    pg_result_fn fn, void *arg, struct errbuf *err)
{
	const char *end = mode == PG_TXN_ROLLBACK ? "ROLLBACK" : "COMMIT";
	struct errbuf scratch;
	struct pg_error pe;

	if (pg_exec(c, "BEGIN", NULL, NULL, NULL, err) < 0)
		return err_prefix(err, "%s: at BEGIN: ", s->name);
	if (s->sets_scs) {
		if (run_each(c, s, fn, arg, err) < 0) {
			(void)pg_exec(
			    c, "ROLLBACK", NULL, NULL, NULL, &scratch);
			return -1;
		}
	} else if (pg_exec(c, s->text, fn, arg, &pe, err) < 0) {
		(void)pg_exec(c, "ROLLBACK", NULL, NULL, NULL, &scratch);
		return script_fail(s, &pe, whole_line(s, &pe), err);
	}
	if (pg_exec(c, end, NULL, NULL, NULL, err) < 0)
		return err_prefix(err, "%s: at %s: ", s->name, end);
	return 0;
}

int
pg_script_run(struct pg_conn *c, const struct pg_script *s, enum pg_txn mode,
    pg_result_fn on_result, void *arg, struct errbuf *err)
{
	if (s->manages_txn || mode == PG_TXN_NONE)
		return run_each(c, s, on_result, arg, err);
	return run_whole(c, s, mode, on_result, arg, err);
}

/* ======================================================== with a tail */

#define TXN_HEAD "BEGIN;"
#define TXN_HEAD_CHARS 6u

/* The line of an error in HEAD text TAIL; 0 when it is not in text. */
static unsigned
tail_line(const struct pg_script *s, const struct pg_error *pe)
{
	size_t k;

	if (pe->nresults == 0)
		return 0; /* BEGIN itself */
	k = pe->nresults - 1;
	if (k >= s->n)
		return 0; /* the tail or COMMIT */
	if (pe->position > TXN_HEAD_CHARS)
		return pg_sql_line(
		    s->text, s->len, 1, pe->position - TXN_HEAD_CHARS);
	return s->stmts[k].line;
}

/* The same, one statement at a time (see pgscript.h). */
static int
run_tail_each(struct pg_conn *c, const struct pg_script *s, const char *tail,
    struct errbuf *err)
{
	struct errbuf scratch;

	if (pg_exec(c, "BEGIN", NULL, NULL, NULL, err) < 0)
		return err_prefix(err, "%s: at BEGIN: ", s->name);
	if (run_each(c, s, NULL, NULL, err) < 0)
		goto fail;
	if (pg_exec(c, tail, NULL, NULL, NULL, err) < 0 ||
	    pg_exec(c, "COMMIT", NULL, NULL, NULL, err) < 0) {
		err_prefix(err, "%s: ", s->name);
		goto fail;
	}
	return 0;
fail:
	(void)pg_exec(c, "ROLLBACK", NULL, NULL, NULL, &scratch);
	return -1;
}

int
pg_script_run_tail(struct pg_conn *c, const struct pg_script *s,
    const char *tail, struct errbuf *err)
{
	struct errbuf scratch;
	struct pg_error pe;
	struct buf q;
	int rc;

	if (s->manages_txn || s->sets_scs)
		return run_tail_each(c, s, tail, err);
	/* "\n;": the text may end in a -- comment or without its ';' */
	buf_init(&q, s->len + strlen(tail) + 64);
	buf_adds(&q, TXN_HEAD);
	buf_add(&q, s->text, s->len);
	buf_adds(&q, "\n;");
	buf_adds(&q, tail);
	buf_adds(&q, "\n;COMMIT");
	rc = buf_failed(&q) ? err_set(err, SH_ERR_INTERNAL, "query too long")
	                    : pg_exec(c, q.data, NULL, NULL, &pe, err);
	buf_release(&q);
	if (rc == 0)
		return 0;
	(void)pg_exec(c, "ROLLBACK", NULL, NULL, NULL, &scratch);
	return script_fail(s, &pe, tail_line(s, &pe), err);
}
