/*
 * report_show.c: `stagehand report DIR`, the gate and summary read back
 * from a report dir. See report.h.
 *
 * results.json is read with the YAML reader (model/yaml.h): json.c writes
 * JSON that is also a YAML flow document with the same values (json.h).
 * The document becomes a node tree; the bulky parts a summary never shows
 * (output, changes, details) are parsed but not kept, so memory follows
 * what is printed, and the number of kept values and the nesting are
 * capped (REPORT_MAX_VALUES, REPORT_MAX_DEPTH).
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

#include "model/yaml.h"
#include "util/json.h"
#include "util/limits.h"

#define SHOW_MAX_ERROR_LINES 10
#define SHOW_MAX_FAILED_TESTS 10
#define SHOW_INDENT "                        " /* under the step name */

/* ======================================================== reading */

/* What a summary never shows: read and checked, not kept. */
static const char *const show_dropped[] = { "output", "changes", "details",
	NULL };

/*
 * results.json is JSON read as YAML (json.h): it has no aliases; a key
 * repeated, or a NUL in a string (\u0000), is still JSON, so neither is
 * refused (lookups find the first key).
 */
static const struct yaml_opts show_yaml = {
	.max_bytes = REPORT_MAX_BYTES,
	.max_depth = REPORT_MAX_DEPTH,
	.max_nodes = REPORT_MAX_VALUES,
	.max_aliases = 0,
	.dup_keys = true,
	.nul_scalars = true,
	.drop = show_dropped,
	.code = SH_ERR_IO,
	.what = "malformed report: ",
};

/*
 * The report's values. Keys are compared with their length, as a key may
 * hold a NUL: "stage\u0000x" is not "stage".
 */
static const struct node *
rv_get(const struct node *map, const char *key)
{
	size_t len = strlen(key);

	if (map == NULL || map->type != NODE_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (map->keys[i]->len == len &&
		    memcmp(map->keys[i]->str, key, len) == 0)
			return map->items[i];
	return NULL;
}

/* A quoted string value of map[key], or NULL (absent, null, not a string). */
static const char *
rv_str(const struct node *map, const char *key)
{
	const struct node *v = rv_get(map, key);

	return v && v->type == NODE_SCALAR && !v->plain ? v->str : NULL;
}

static uint64_t
rv_u64(const struct node *map, const char *key)
{
	const struct node *v = rv_get(map, key);
	uint64_t n;

	if (v == NULL || v->type != NODE_SCALAR || !v->plain ||
	    parse_u64(v->str, v->len, UINT64_MAX, &n) < 0)
		return 0;
	return n;
}

static int64_t
rv_i64(const struct node *map, const char *key)
{
	const struct node *v = rv_get(map, key);
	uint64_t n;

	if (v == NULL || v->type != NODE_SCALAR || !v->plain || v->len == 0)
		return 0;
	if (v->str[0] == '-' &&
	    parse_u64(v->str + 1, v->len - 1, INT64_MAX, &n) == 0)
		return -(int64_t)n;
	return parse_u64(v->str, v->len, INT64_MAX, &n) == 0 ? (int64_t)n : 0;
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
check_report(const char *path, const struct node *root, struct errbuf *err)
{
	const struct node *schema = rv_get(root, "schema");
	const struct node *steps = rv_get(root, "steps");
	const char *what = NULL;

	if (root == NULL || root->type != NODE_MAP)
		what = "not a JSON object";
	else if (schema == NULL || schema->type != NODE_SCALAR ||
	         rv_u64(root, "schema") != 1)
		what = "\"schema\" is not 1";
	else if (rv_str(root, "stage") == NULL)
		what = "no \"stage\"";
	else if (!status_known(rv_str(root, "status")))
		what = "no known \"status\"";
	else if (steps == NULL || steps->type != NODE_SEQ)
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
tally_step(struct tally *t, const struct node *step)
{
	const char *st = rv_str(step, "status");
	const struct node *tests = rv_get(step, "tests");

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
	for (size_t i = 0; tests && tests->type == NODE_SEQ && i < tests->n;
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
tally_all(struct tally *t, const struct node *root)
{
	const struct node *steps = rv_get(root, "steps");

	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < steps->n; i++)
		tally_step(t, steps->items[i]);
}

/* "user@host:port", or NULL when the run had no target. */
static char *
target_name(const struct node *root)
{
	const struct node *t = rv_get(root, "target");
	const char *user = rv_str(t, "user"), *host = rv_str(t, "host");

	if (host == NULL)
		return NULL;
	return xasprintf("%s%s%s:%" PRIu64, user ? user : "", user ? "@" : "",
	    host, rv_u64(t, "port"));
}

static void
show_header(FILE *out, const struct node *root, struct buf *tb)
{
	const char *cmd = rv_str(root, "command");
	const char *sys = rv_str(rv_get(root, "target"), "system");
	const struct node *e = rv_get(root, "error");
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
show_tests(FILE *out, const struct node *step)
{
	struct tally t = { 0 };
	const struct node *tests = rv_get(step, "tests");
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
		const struct node *x = tests->items[i];
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
show_step(FILE *out, const struct node *step, struct buf *tb)
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
show_recap(FILE *out, const struct node *root, struct buf *tb)
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
show_text(FILE *out, const struct node *root)
{
	const struct node *steps = rv_get(root, "steps");
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
summary_failed(struct json *j, const struct node *steps)
{
	json_key(j, "failed_steps");
	json_array_begin(j);
	for (size_t i = 0; i < steps->n; i++) {
		const struct node *s = steps->items[i];
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
show_json(FILE *out, const struct node *root, struct errbuf *err)
{
	const struct node *steps = rv_get(root, "steps");
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

/* Reads path (DIR/results.json), which the tree's nodes point at. */
static int
load_report(
    const char *dir, const char *path, struct node **root, struct errbuf *err)
{
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
	if (yaml_read_tree(
	        path, text.data, text.len, &show_yaml, NULL, root, err) < 0)
		goto out;
	rc = check_report(path, *root, err);
out:
	if (rc < 0) {
		node_free(*root);
		*root = NULL;
	}
	buf_release(&text);
	return rc;
}

int
report_show(const char *dir, FILE *out, bool json, struct errbuf *err)
{
	char *path = xasprintf("%s/results.json", dir);
	struct node *root;
	int rc;

	if (load_report(dir, path, &root, err) < 0) {
		free(path);
		return -1;
	}
	if (json) {
		rc = show_json(out, root, err);
	} else {
		show_text(out, root);
		rc = 0;
	}
	if (rc == 0)
		rc = strcmp(rv_str(root, "status"), "passed") == 0 ? 0 : 1;
	node_free(root);
	free(path);
	return rc;
}
