/*
 * pg/migration.c: dbmate migration files, parsed offline. See
 * pg/migration.h for the rules.
 *
 * dbmate finds its directives with regular expressions over the whole
 * text, not with an SQL lexer: a "-- migrate:down" line inside a dollar
 * quote ends the up section there too. The scan below is line by line for
 * the same reason, so that a file splits here exactly where dbmate splits
 * it.
 */
#include <stdlib.h>
#include <string.h>

#include "pg/migration.h"

enum directive {
	DIR_NONE,
	DIR_UP,
	DIR_DOWN,
};

struct scan {
	const char *name;
	struct errbuf *err;
	size_t up_off, down_off; /* byte offsets of the directive lines */
	unsigned up_line, down_line;
	unsigned sql_line; /* the first SQL line before any up line */
	bool transaction;
};

static bool
blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' ||
	       ch == '\v';
}

static int
scan_err(const struct scan *s, unsigned line, const char *what)
{
	return err_set(
	    s->err, SH_ERR_MANIFEST, "%s:%u: %s", s->name, line, what);
}

/* p[0..n) is "--", blanks, "migrate:WORD", then blanks or nothing. */
static enum directive
directive(const char *p, size_t n, size_t *opts)
{
	size_t i = 2;
	enum directive d;

	if (n < 2 || p[0] != '-' || p[1] != '-')
		return DIR_NONE;
	while (i < n && blank(p[i]))
		i++;
	if (n - i >= 10 && memcmp(p + i, "migrate:up", 10) == 0) {
		d = DIR_UP;
		i += 10;
	} else if (n - i >= 12 && memcmp(p + i, "migrate:down", 12) == 0) {
		d = DIR_DOWN;
		i += 12;
	} else {
		return DIR_NONE;
	}
	if (i < n && !blank(p[i]))
		return DIR_NONE; /* "-- migrate:upgrade" is a comment */
	*opts = i;
	return d;
}

/* The up line's options: only transaction:true|false. */
static int
up_options(struct scan *s, const char *p, size_t n, unsigned line)
{
	size_t i = 0;

	s->transaction = true;
	while (i < n) {
		size_t start;

		while (i < n && blank(p[i]))
			i++;
		start = i;
		while (i < n && !blank(p[i]))
			i++;
		if (i == start)
			break;
		if (i - start == 17 &&
		    memcmp(p + start, "transaction:false", 17) == 0)
			s->transaction = false;
		else if (!(i - start == 16 &&
		             memcmp(p + start, "transaction:true", 16) == 0))
			return scan_err(s, line,
			    "unknown '-- migrate:up' option: only "
			    "transaction:false is known");
	}
	return 0;
}

/* A line before the up line may only be blank or a -- comment. */
static bool
prelude_ok(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && (blank(p[i])))
		i++;
	return i == n || (n - i >= 2 && p[i] == '-' && p[i + 1] == '-');
}

static int
scan_line(struct scan *s, const char *p, size_t n, size_t off, unsigned line)
{
	size_t opts = 0;
	enum directive d = directive(p, n, &opts);

	if (d == DIR_UP) {
		if (s->up_line != 0)
			return scan_err(s, line,
			    "a second '-- migrate:up' line: one up section "
			    "per file");
		if (s->down_line != 0)
			return scan_err(s, s->down_line,
			    "'-- migrate:down' before '-- migrate:up'");
		s->up_off = off;
		s->up_line = line;
		return up_options(s, p + opts, n - opts, line);
	}
	if (d == DIR_DOWN) {
		if (s->down_line != 0)
			return scan_err(s, line, "a second '-- migrate:down'");
		s->down_off = off;
		s->down_line = line;
		return 0;
	}
	if (s->up_line == 0 && s->sql_line == 0 && !prelude_ok(p, n))
		s->sql_line = line;
	return 0;
}

static int
scan_text(struct scan *s, const char *text, size_t len)
{
	unsigned line = 1;
	size_t off = 0;

	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - (text + off)) : len - off;

		if (scan_line(s, text + off, n, off, line) < 0)
			return -1;
		off += n + 1;
		line++;
	}
	if (s->up_line == 0)
		return scan_err(s, 1, "no '-- migrate:up' line");
	if (s->sql_line != 0)
		return scan_err(s, s->sql_line, "SQL before '-- migrate:up'");
	if (s->down_line != 0 && s->down_line < s->up_line)
		return scan_err(s, s->down_line,
		    "'-- migrate:down' before '-- migrate:up'");
	return 0;
}

size_t
pg_migration_version(const char *fname)
{
	size_t n = strspn(fname, "0123456789"), len = strlen(fname);

	if (n == 0 || n > PG_MIGRATION_VERSION_MAX || fname[n] != '_')
		return 0;
	if (len < n + 1 + 4 || strcmp(fname + len - 4, ".sql") != 0)
		return 0;
	return n;
}

int
pg_migration_parse(const char *name, const char *text, size_t len,
    struct pg_migration *m, struct errbuf *err)
{
	struct scan s;
	size_t end;

	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	buf_init(&m->up, len + 1);
	if (pg_text_check(name, text, len, err) < 0)
		return -1;
	memset(&s, 0, sizeof(s));
	s.name = name;
	s.err = err;
	if (scan_text(&s, text, len) < 0)
		return -1;
	m->up_line = s.up_line;
	m->transaction = s.transaction;
	end = s.down_line != 0 ? s.down_off : len;
	/* Fewer bytes than the lines they replace: max len + 1 holds it. */
	for (unsigned k = 1; k < s.up_line; k++)
		buf_addc(&m->up, '\n');
	buf_add(&m->up, text + s.up_off, end - s.up_off);
	if (buf_failed(&m->up))
		return err_set(err, SH_ERR_INTERNAL, "%s: up section", name);
	return pg_script_parse(m->name, m->up.data, m->up.len, &m->script, err);
}

void
pg_migration_free(struct pg_migration *m)
{
	pg_script_free(&m->script);
	buf_release(&m->up);
	free(m->name);
	m->name = NULL;
}
