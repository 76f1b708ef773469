/*
 * fuzz_tap.c: libFuzzer harness for the TAP parser (tap.c) and the SQL
 * script splitter (pgscript.c), the two parsers that read what a database
 * server or a test file author wrote.
 *
 * The input is cut into row values at every 0x01 byte and fed to one TAP
 * stream, then checked: the counters add up to the assertions seen, every
 * kept assertion has its strings, texts and diagnostics stay within their
 * caps, and tap_problem() agrees with the counters. The whole input is
 * also split as an SQL script: when it parses, every statement lies inside
 * the text, in order, starts on a non-blank byte on its recorded line, and
 * pg_sql_line() stays within the text's lines; when it fails, the message
 * names the file and nothing is left allocated. The same input is parsed
 * as a dbmate migration file (migration.c): when it parses, its up text
 * is no longer than the input, keeps the input's line count up to its
 * end, and its statements lie inside it; when it fails, the message names
 * the file.
 *
 * Build: tests/fuzz/build.sh; run: tests/fuzz/build.sh run 60 tap
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/migration.h"
#include "pg/pgscript.h"
#include "pg/tap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_tap(const struct tap *t)
{
	struct buf why;
	unsigned long run = (unsigned long)(t->n + t->dropped);
	bool bad;

	if (t->passed + t->failed + t->skipped + t->todo != run)
		abort();
	for (size_t i = 0; i < t->n; i++) {
		const struct tap_assertion *a = &t->a[i];

		if (a->description == NULL || a->reason == NULL ||
		    strlen(a->description) > TAP_MAX_TEXT + 3 ||
		    strlen(a->reason) > TAP_MAX_TEXT + 3 ||
		    a->diag.len > TAP_MAX_DIAG + 6)
			abort();
	}
	buf_init(&why, 4096);
	bad = tap_problem(t, &why);
	if (bad != (why.len > 0) ||
	    (!bad && (t->failed > 0 || t->bailed || !t->has_plan)))
		abort();
	buf_release(&why);
}

static void
fuzz_tap(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct tap t;

	tap_init(&t);
	while (p < end) {
		const char *cut = memchr(p, 0x01, (size_t)(end - p));
		const char *e = cut != NULL ? cut : end;

		tap_feed(&t, p, (size_t)(e - p));
		p = cut != NULL ? cut + 1 : end;
	}
	check_tap(&t);
	tap_free(&t);
}

static unsigned
lines_of(const char *p, size_t len)
{
	unsigned n = 1;

	for (size_t i = 0; i + 1 < len; i++)
		n += p[i] == '\n';
	return n;
}

static void
fuzz_script(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	struct pg_script s;
	struct errbuf err;
	size_t prev = 0;
	unsigned last;

	memcpy(text, data, size);
	text[size] = '\0';
	last = lines_of(text, size);
	err_clear(&err);
	if (pg_script_parse("f.sql", text, size, &s, &err) < 0) {
		if (s.stmts != NULL || strncmp(err.msg, "f.sql:", 6) != 0)
			abort();
		free(text);
		return;
	}
	for (size_t i = 0; i < s.n; i++) {
		const struct pg_stmt *st = &s.stmts[i];

		if (st->off < prev || st->off + st->len > size ||
		    st->len == 0 || st->line < 1 || st->line > last ||
		    text[st->off] == ' ' || text[st->off] == '\n' ||
		    lines_of(text, st->off + 1) != st->line)
			abort();
		prev = st->off + st->len;
	}
	if (pg_sql_line(text, size, 1, (unsigned)size + 7) > last)
		abort();
	pg_script_free(&s);
	free(text);
}

static void
fuzz_migration(const uint8_t *data, size_t size)
{
	struct pg_migration m;
	struct errbuf err;

	err_clear(&err);
	if (pg_migration_parse("m.sql", (const char *)data, size, &m, &err) <
	    0) {
		if (strncmp(err.msg, "m.sql", 5) != 0)
			abort();
		pg_migration_free(&m);
		return;
	}
	if (m.up.len > size || m.up_line < 1 ||
	    lines_of(m.up.data, m.up.len) > lines_of((const char *)data, size))
		abort();
	for (size_t i = 0; i < m.script.n; i++)
		if (m.script.stmts[i].off + m.script.stmts[i].len > m.up.len ||
		    m.script.stmts[i].line < m.up_line)
			abort();
	pg_migration_free(&m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	fuzz_tap(data, size);
	fuzz_script(data, size);
	fuzz_migration(data, size);
	return 0;
}
