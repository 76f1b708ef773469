/*
 * report_show.c: `stagehand report DIR`, the gate and summary read back
 * from a report dir. See report.h.
 *
 * results.json is read with libyaml: json.c writes JSON that is also a
 * YAML flow document with the same values (json.h). The document becomes
 * a small tree (struct rv); the bulky parts a summary never shows (output,
 * changes, details) are parsed but not kept, so memory follows what is
 * printed, and the number of kept values and the nesting are capped.
 *
 * A file that does not parse, or lacks what every report has (schema 1, a
 * stage, a known status, a steps list of named steps with a status), is
 * refused: a gate must not pass on a report it cannot read.
 */
#include "report/report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "util/json.h"
#include "util/limits.h"

#define SHOW_MAX_DEPTH 64
#define SHOW_MAX_VALUES 1000000u
#define SHOW_MAX_ERROR_LINES 10
#define SHOW_MAX_FAILED_TESTS 10
#define SHOW_INDENT "                        " /* under the step name */

/* ======================================================== the tree */

enum rv_type {
	RV_SCALAR,
	RV_SEQ,
	RV_MAP,
};

struct rv {
	enum rv_type type;
	char *s; /* owned; scalar text (may hold NUL: see len) */
	size_t len;
	bool plain; /* unquoted scalar: a number, true/false or null */
	size_t n;
	struct rv **items; /* owned; seq items or map values */
	struct rv **keys;  /* owned; map keys (scalars) */
};

static void
rv_free(struct rv *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++) {
		rv_free(v->items[i]);
		if (v->keys)
			rv_free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->s);
	free(v);
}

static struct rv *
rv_new(enum rv_type type)
{
	struct rv *v = xcalloc(1, sizeof(*v));

	v->type = type;
	return v;
}

static void
rv_push(struct rv *v, struct rv *key, struct rv *item)
{
	v->items = xreallocarray(v->items, v->n + 1, sizeof(*v->items));
	if (v->type == RV_MAP) {
		v->keys = xreallocarray(v->keys, v->n + 1, sizeof(*v->keys));
		v->keys[v->n] = key;
	}
	v->items[v->n++] = item;
}

static const struct rv *
rv_get(const struct rv *map, const char *key)
{
	size_t len = strlen(key);

	if (map == NULL || map->type != RV_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (map->keys[i]->len == len &&
		    memcmp(map->keys[i]->s, key, len) == 0)
			return map->items[i];
	return NULL;
}

/* A quoted string value of map[key], or NULL (absent, null, not a string). */
static const char *
rv_str(const struct rv *map, const char *key)
{
	const struct rv *v = rv_get(map, key);

	return v && v->type == RV_SCALAR && !v->plain ? v->s : NULL;
}

static uint64_t
rv_u64(const struct rv *map, const char *key)
{
	const struct rv *v = rv_get(map, key);
	uint64_t n;

	if (v == NULL || v->type != RV_SCALAR || !v->plain ||
	    parse_u64(v->s, v->len, UINT64_MAX, &n) < 0)
		return 0;
	return n;
}

static int64_t
rv_i64(const struct rv *map, const char *key)
{
	const struct rv *v = rv_get(map, key);
	uint64_t n;

	if (v == NULL || v->type != RV_SCALAR || !v->plain || v->len == 0)
		return 0;
	if (v->s[0] == '-' &&
	    parse_u64(v->s + 1, v->len - 1, INT64_MAX, &n) == 0)
		return -(int64_t)n;
	return parse_u64(v->s, v->len, INT64_MAX, &n) == 0 ? (int64_t)n : 0;
}

/* ======================================================== reading */

struct rd {
	yaml_parser_t parser;
	const char *path;
	size_t values;
	struct errbuf *err;
};

static int
rd_fail(struct rd *rd, const yaml_mark_t *m, const char *what)
{
	return err_set(rd->err, SH_ERR_IO, "%s:%zu:%zu: malformed report: %s",
	    rd->path, m->line + 1, m->column + 1, what);
}

static int
rd_next(struct rd *rd, yaml_event_t *ev)
{
	if (yaml_parser_parse(&rd->parser, ev))
		return 0;
	return rd_fail(rd, &rd->parser.problem_mark,
	    rd->parser.problem ? rd->parser.problem : "parse error");
}

/* Body keys a summary never shows: parsed, not kept. */
static bool
rd_skipped_key(const struct rv *key)
{
	static const char *const skip[] = { "output", "changes", "details" };

	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (key->len == strlen(skip[i]) &&
		    memcmp(key->s, skip[i], key->len) == 0)
			return true;
	return false;
}

static int rd_node(struct rd *rd, yaml_event_t *ev, unsigned depth, bool keep,
    struct rv **out);

static struct rv *
rv_scalar(const yaml_event_t *ev)
{
	struct rv *v = rv_new(RV_SCALAR);

	v->len = ev->data.scalar.length;
	v->s = xstrndup((const char *)ev->data.scalar.value, v->len);
	v->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	return v;
}

/* Reads one event and, unless it is the end event, the node it starts. */
static int
rd_child(struct rd *rd, yaml_event_type_t end, unsigned depth, bool keep,
    struct rv **out, bool *ended)
{
	yaml_event_t ev;
	int rc = 0;

	*out = NULL;
	*ended = false;
	if (rd_next(rd, &ev) < 0)
		return -1;
	if (ev.type == end)
		*ended = true;
	else
		rc = rd_node(rd, &ev, depth, keep, out);
	yaml_event_delete(&ev);
	return rc;
}

static int
rd_seq(struct rd *rd, unsigned depth, bool keep, struct rv **out)
{
	struct rv *v = keep ? rv_new(RV_SEQ) : NULL, *item;
	bool ended = false;

	while (!ended) {
		if (rd_child(rd, YAML_SEQUENCE_END_EVENT, depth + 1, keep,
		        &item, &ended) < 0) {
			rv_free(v);
			return -1;
		}
		if (!ended && v != NULL)
			rv_push(v, NULL, item);
	}
	*out = v;
	return 0;
}

static int
rd_map(struct rd *rd, unsigned depth, bool keep, struct rv **out)
{
	struct rv *v = rv_new(RV_MAP), *key, *item;
	bool ended = false;

	for (;;) {
		if (rd_child(rd, YAML_MAPPING_END_EVENT, depth + 1, true, &key,
		        &ended) < 0)
			goto fail;
		if (ended)
			break;
		if (key->type != RV_SCALAR) {
			rv_free(key);
			rd_fail(rd, &rd->parser.mark, "a key is not a string");
			goto fail;
		}
		if (rd_child(rd, YAML_MAPPING_END_EVENT, depth + 1,
		        keep && !rd_skipped_key(key), &item, &ended) < 0 ||
		    ended) {
			rv_free(key);
			goto fail;
		}
		rv_push(v, key, item);
	}
	if (!keep) {
		rv_free(v);
		v = NULL;
	}
	*out = v;
	return 0;
fail:
	rv_free(v);
	return -1;
}

static int
rd_node(
    struct rd *rd, yaml_event_t *ev, unsigned depth, bool keep, struct rv **out)
{
	*out = NULL;
	if (depth > SHOW_MAX_DEPTH)
		return rd_fail(rd, &ev->start_mark, "nested too deeply");
	if (keep && ++rd->values > SHOW_MAX_VALUES)
		return rd_fail(rd, &ev->start_mark, "too many values");
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (keep)
			*out = rv_scalar(ev);
		return 0;
	case YAML_SEQUENCE_START_EVENT:
		return rd_seq(rd, depth, keep, out);
	case YAML_MAPPING_START_EVENT:
		return rd_map(rd, depth, keep, out);
	default:
		return rd_fail(rd, &ev->start_mark, "not JSON");
	}
}

/* Expects the next event to be of type t (stream/document framing). */
static int
rd_expect(struct rd *rd, yaml_event_type_t t)
{
	yaml_event_t ev;
	int rc = 0;

	if (rd_next(rd, &ev) < 0)
		return -1;
	if (ev.type != t)
		rc = rd_fail(rd, &ev.start_mark, "not a single JSON document");
	yaml_event_delete(&ev);
	return rc;
}

static int
rd_document(struct rd *rd, struct rv **root)
{
	bool ended;

	*root = NULL;
	if (rd_expect(rd, YAML_STREAM_START_EVENT) < 0 ||
	    rd_expect(rd, YAML_DOCUMENT_START_EVENT) < 0)
		return -1;
	if (rd_child(rd, YAML_DOCUMENT_END_EVENT, 0, true, root, &ended) < 0)
		return -1;
	if (ended || rd_expect(rd, YAML_DOCUMENT_END_EVENT) < 0 ||
	    rd_expect(rd, YAML_STREAM_END_EVENT) < 0) {
		if (ended)
			rd_fail(rd, &rd->parser.mark, "empty document");
		rv_free(*root);
		*root = NULL;
		return -1;
	}
	return 0;
}

static int
parse_report(const char *path, const struct buf *text, struct rv **root,
    struct errbuf *err)
{
	struct rd rd = { .path = path, .err = err };
	int rc;

	*root = NULL;
	if (!yaml_parser_initialize(&rd.parser))
		return err_set(err, SH_ERR_INTERNAL, "libyaml: out of memory");
	yaml_parser_set_input_string(
	    &rd.parser, (const unsigned char *)text->data, text->len);
	yaml_parser_set_encoding(&rd.parser, YAML_UTF8_ENCODING);
	rc = rd_document(&rd, root);
	yaml_parser_delete(&rd.parser);
	return rc;
}

/* ======================================================== checking */

static bool
status_known(const char *s)
{
	return s != NULL &&
	       (strcmp(s, "passed") == 0 || strcmp(s, "failed") == 0 ||
	           strcmp(s, "interrupted") == 0);
}

static int
check_report(const char *path, const struct rv *root, struct errbuf *err)
{
	const struct rv *schema = rv_get(root, "schema");
	const struct rv *steps = rv_get(root, "steps");
	const char *what = NULL;

	if (root == NULL || root->type != RV_MAP)
		what = "not a JSON object";
	else if (schema == NULL || schema->type != RV_SCALAR ||
	         rv_u64(root, "schema") != 1)
		what = "\"schema\" is not 1";
	else if (rv_str(root, "stage") == NULL)
		what = "no \"stage\"";
	else if (!status_known(rv_str(root, "status")))
		what = "no known \"status\"";
	else if (steps == NULL || steps->type != RV_SEQ)
		what = "no \"steps\" list";
	for (size_t i = 0; what == NULL && i < steps->n; i++)
		if (rv_str(steps->items[i], "name") == NULL ||
		    rv_str(steps->items[i], "status") == NULL)
			what = "a step without name or status";
	if (what != NULL)
		return err_set(err, SH_ERR_IO, "%s: not a stagehand report: %s",
		    path, what);
	return 0;
}

/* ======================================================== printing */

/*
 * Prints p[0..len) with control characters (C0, DEL, C1) shown as '?':
 * the report came from a remote host, so it must not drive the terminal.
 */
static void
put_clean(FILE *out, const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = json_utf8_next(s + i, len - i, &cp);

		if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
			fputc('?', out);
		else
			fwrite(s + i, 1, n, out);
		i += n;
	}
}

static void
put_cleans(FILE *out, const char *s)
{
	put_clean(out, s, strlen(s));
}

/* Each line of s, indented; at most SHOW_MAX_ERROR_LINES of them. */
static void
put_lines(FILE *out, const char *prefix, const char *s)
{
	unsigned n = 0;

	while (*s != '\0') {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);

		if (++n > SHOW_MAX_ERROR_LINES) {
			fprintf(out, "%s...\n", SHOW_INDENT);
			return;
		}
		fputs(n == 1 ? prefix : SHOW_INDENT "  ", out);
		put_clean(out, s, len);
		fputc('\n', out);
		s += len + (nl != NULL);
	}
}

/* 0.1s, 12.3s, 2m03s, 1h02m */
static void
fmt_ms(struct buf *b, uint64_t ms)
{
	uint64_t s = ms / 1000;

	buf_reset(b);
	if (s < 60)
		buf_addf(b, "%" PRIu64 ".%" PRIu64 "s", s, (ms % 1000) / 100);
	else if (s < 3600)
		buf_addf(b, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else
		buf_addf(
		    b, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, (s / 60) % 60);
}

struct tally {
	size_t ok, changed, skipped, failed, would_change, interrupted, not_run;
	size_t tests, tests_passed, tests_failed, tests_skipped;
};

static void
tally_step(struct tally *t, const struct rv *step)
{
	const char *st = rv_str(step, "status");
	const struct rv *tests = rv_get(step, "tests");

	if (strcmp(st, "ok") == 0)
		t->ok++;
	else if (strcmp(st, "changed") == 0)
		t->changed++;
	else if (strcmp(st, "skipped") == 0)
		t->skipped++;
	else if (strcmp(st, "failed") == 0)
		t->failed++;
	else if (strcmp(st, "would_change") == 0)
		t->would_change++;
	else if (strcmp(st, "interrupted") == 0)
		t->interrupted++;
	else
		t->not_run++;
	for (size_t i = 0; tests && tests->type == RV_SEQ && i < tests->n;
	     i++) {
		const char *ts = rv_str(tests->items[i], "status");

		t->tests++;
		if (ts && strcmp(ts, "passed") == 0)
			t->tests_passed++;
		else if (ts && strcmp(ts, "skipped") == 0)
			t->tests_skipped++;
		else
			t->tests_failed++;
	}
}

static void
tally_all(struct tally *t, const struct rv *root)
{
	const struct rv *steps = rv_get(root, "steps");

	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < steps->n; i++)
		tally_step(t, steps->items[i]);
}

/* "user@host:port", or NULL when the run had no target. */
static char *
target_name(const struct rv *root)
{
	const struct rv *t = rv_get(root, "target");
	const char *user = rv_str(t, "user"), *host = rv_str(t, "host");

	if (host == NULL)
		return NULL;
	return xasprintf("%s%s%s:%" PRIu64, user ? user : "", user ? "@" : "",
	    host, rv_u64(t, "port"));
}

static void
show_header(FILE *out, const struct rv *root, struct buf *tb)
{
	const char *cmd = rv_str(root, "command");
	const char *sys = rv_str(rv_get(root, "target"), "system");
	const struct rv *e = rv_get(root, "error");
	char *target = target_name(root);

	put_cleans(out, rv_str(root, "stage"));
	if (cmd && strcmp(cmd, "run") != 0)
		fprintf(out, " (%s)", strcmp(cmd, "plan") == 0 ? "plan" : "?");
	fputs(target ? " on " : " without a target", out);
	if (target)
		put_cleans(out, target);
	if (sys) {
		fputs(" ", out);
		put_cleans(out, sys);
	}
	fmt_ms(tb, rv_u64(root, "duration_ms"));
	fprintf(out, ": %s in %s\n", rv_str(root, "status"), tb->data);
	if (rv_str(e, "message"))
		put_lines(out, "  error: ", rv_str(e, "message"));
	free(target);
}

static void
show_tests(FILE *out, const struct rv *step)
{
	struct tally t = { 0 };
	const struct rv *tests = rv_get(step, "tests");
	size_t shown = 0;

	tally_step(&t, step);
	if (t.tests == 0)
		return;
	fprintf(out, "%s%zu/%zu tests passed", SHOW_INDENT, t.tests_passed,
	    t.tests);
	if (t.tests_failed)
		fprintf(out, ", %zu failed", t.tests_failed);
	if (t.tests_skipped)
		fprintf(out, ", %zu skipped", t.tests_skipped);
	fputc('\n', out);
	for (size_t i = 0; i < tests->n; i++) {
		const struct rv *x = tests->items[i];
		const char *ts = rv_str(x, "status");

		if (ts &&
		    (strcmp(ts, "passed") == 0 || strcmp(ts, "skipped") == 0))
			continue;
		if (++shown > SHOW_MAX_FAILED_TESTS) {
			fprintf(out, "%s  ... %zu more failed\n", SHOW_INDENT,
			    t.tests_failed - SHOW_MAX_FAILED_TESTS);
			return;
		}
		fprintf(out, "%s  not ok: ", SHOW_INDENT);
		put_cleans(out, rv_str(x, "name") ? rv_str(x, "name") : "?");
		if (rv_str(x, "message") && *rv_str(x, "message")) {
			fputs(": ", out);
			put_cleans(out, rv_str(x, "message"));
		}
		fputc('\n', out);
	}
}

static void
show_step(FILE *out, const struct rv *step, struct buf *tb)
{
	const char *st = rv_str(step, "status");
	const char *reason = rv_str(step, "skip_reason");
	const char *msg = rv_str(rv_get(step, "error"), "message");
	bool started = rv_str(step, "started_at") != NULL;

	fmt_ms(tb, rv_u64(step, "duration_ms"));
	fprintf(out, "  %-12s %7s  ", st, started ? tb->data : "-");
	put_cleans(out, rv_str(step, "name"));
	if (reason && *reason) {
		fputs(" (", out);
		put_cleans(out, reason);
		fputc(')', out);
	}
	fputc('\n', out);
	if (msg &&
	    (strcmp(st, "failed") == 0 || strcmp(st, "interrupted") == 0))
		put_lines(out, SHOW_INDENT "error: ", msg);
	show_tests(out, step);
}

static void
show_recap(FILE *out, const struct rv *root, struct buf *tb)
{
	struct tally t;

	tally_all(&t, root);
	fmt_ms(tb, rv_u64(root, "duration_ms"));
	put_cleans(out, rv_str(root, "stage"));
	fprintf(out,
	    ": %s \xe2\x80\x94 %zu ok, %zu changed, %zu failed, "
	    "%zu skipped",
	    rv_str(root, "status"), t.ok, t.changed, t.failed, t.skipped);
	if (t.would_change)
		fprintf(out, ", %zu would change", t.would_change);
	if (t.interrupted)
		fprintf(out, ", %zu interrupted", t.interrupted);
	if (t.not_run)
		fprintf(out, ", %zu not run", t.not_run);
	fprintf(out, " (%s)\n", tb->data);
}

static void
show_text(FILE *out, const struct rv *root)
{
	const struct rv *steps = rv_get(root, "steps");
	struct buf tb;

	buf_init(&tb, 64);
	show_header(out, root, &tb);
	for (size_t i = 0; i < steps->n; i++)
		show_step(out, steps->items[i], &tb);
	show_recap(out, root, &tb);
	buf_release(&tb);
}

/* ======================================================== JSON summary */

static void
summary_counts(struct json *j, const struct tally *t, size_t total)
{
	json_key(j, "counts");
	json_object_begin(j);
	json_member_uint(j, "total", total);
	json_member_uint(j, "ok", t->ok);
	json_member_uint(j, "changed", t->changed);
	json_member_uint(j, "skipped", t->skipped);
	json_member_uint(j, "failed", t->failed);
	json_member_uint(j, "would_change", t->would_change);
	json_member_uint(j, "interrupted", t->interrupted);
	json_member_uint(j, "not_run", t->not_run);
	json_object_end(j);
	json_key(j, "tests");
	json_object_begin(j);
	json_member_uint(j, "total", t->tests);
	json_member_uint(j, "passed", t->tests_passed);
	json_member_uint(j, "failed", t->tests_failed);
	json_member_uint(j, "skipped", t->tests_skipped);
	json_object_end(j);
}

static void
summary_failed(struct json *j, const struct rv *steps)
{
	json_key(j, "failed_steps");
	json_array_begin(j);
	for (size_t i = 0; i < steps->n; i++) {
		const struct rv *s = steps->items[i];
		const char *st = rv_str(s, "status");

		if (strcmp(st, "failed") != 0 && strcmp(st, "interrupted") != 0)
			continue;
		json_object_begin(j);
		json_member_uint(j, "index", i + 1);
		json_member_string(j, "name", rv_str(s, "name"));
		json_member_string(j, "status", st);
		json_member_string(
		    j, "error", rv_str(rv_get(s, "error"), "message"));
		json_object_end(j);
	}
	json_array_end(j);
}

static int
show_json(FILE *out, const struct rv *root, struct errbuf *err)
{
	const struct rv *steps = rv_get(root, "steps");
	struct tally t;
	struct buf b;
	struct json j;
	char *target = target_name(root);
	int rc = 0;

	tally_all(&t, root);
	buf_init(&b, REPORT_MAX_BYTES);
	json_init(&j, &b, false);
	json_object_begin(&j);
	json_key(&j, "stage");
	json_string(&j, rv_str(root, "stage"));
	json_key(&j, "command");
	json_string(&j, rv_str(root, "command"));
	json_key(&j, "status");
	json_string(&j, rv_str(root, "status"));
	json_key(&j, "exit_code");
	json_int(&j, rv_i64(root, "exit_code"));
	json_key(&j, "duration_ms");
	json_uint(&j, rv_u64(root, "duration_ms"));
	json_key(&j, "target");
	json_string(&j, target);
	json_key(&j, "error");
	json_string(&j, rv_str(rv_get(root, "error"), "message"));
	summary_counts(&j, &t, steps->n);
	summary_failed(&j, steps);
	json_object_end(&j);
	if (json_finish(&j) < 0)
		rc = err_set(err, SH_ERR_INTERNAL, "report summary too large");
	else
		fprintf(out, "%s\n", b.data);
	buf_release(&b);
	free(target);
	return rc;
}

/* ======================================================== entry */

static int
load_report(const char *dir, struct rv **root, struct errbuf *err)
{
	char *path = xasprintf("%s/results.json", dir);
	struct stat st;
	struct buf text = { 0 }; /* file_read initialises it */
	int rc = -1;

	*root = NULL;
	if (stat(path, &st) < 0 && (errno == ENOENT || errno == ENOTDIR)) {
		err_set(err, SH_ERR_USAGE,
		    "%s: no stagehand report (results.json missing)", dir);
		goto out;
	}
	if (file_read(path, REPORT_MAX_BYTES, &text, err) < 0)
		goto out;
	if (parse_report(path, &text, root, err) < 0)
		goto out;
	rc = check_report(path, *root, err);
out:
	if (rc < 0) {
		rv_free(*root);
		*root = NULL;
	}
	buf_release(&text);
	free(path);
	return rc;
}

int
report_show(const char *dir, FILE *out, bool json, struct errbuf *err)
{
	struct rv *root;
	int rc;

	if (load_report(dir, &root, err) < 0)
		return -1;
	if (json) {
		rc = show_json(out, root, err);
	} else {
		show_text(out, root);
		rc = 0;
	}
	if (rc == 0)
		rc = strcmp(rv_str(root, "status"), "passed") == 0 ? 0 : 1;
	rv_free(root);
	return rc;
}
