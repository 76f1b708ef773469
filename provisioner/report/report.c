/*
 * report.c: writes the report dir (results.json, junit.xml, stagehand.env)
 * from one run. See report.h for the contract; report_show.c reads it back.
 *
 * Redaction happens twice. Every string taken from the run (step names,
 * output, error messages, details...) passes through the redactor before
 * it is escaped, and the finished document passes through it once more,
 * matching each secret also in its escaped forms (redact.h). The second
 * pass is the guarantee; the first keeps the documents well-formed in the
 * usual case, because a secret is replaced before escaping can split it.
 * A secret equal to a piece of the documents' own structure (a key name, a
 * number, "passed") is replaced there too; the file may then no longer
 * parse or validate, and `stagehand report` refuses it: that fails closed
 * rather than leak.
 *
 * Files are written atomically and results.json last, so a dir with a
 * results.json holds a complete report.
 */
#include "report/report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "model/kind.h"
#include "util/json.h"
#include "util/limits.h"
#include "util/xml.h"

/* Reports name hosts and show step output: for the run's user alone. */
#define REPORT_DIR_MODE 0700
#define REPORT_FILE_MODE 0600
/* libyaml reads a mapping key only when it is under 1024 characters. */
#define DETAIL_KEY_MAX 128

struct counts {
	size_t total, ok, changed, skipped, failed, would_change, interrupted,
	    not_run;
};

/* ======================================================== run facts */

/* A step that never got to run (pending) is reported as not_run. */
static enum step_status
res_status(const struct step_result *res)
{
	return res->status == STEP_PENDING ? STEP_NOT_RUN : res->status;
}

static void
count_steps(const struct report_run *r, struct counts *c)
{
	memset(c, 0, sizeof(*c));
	c->total = r->manifest->nsteps;
	for (size_t i = 0; i < c->total; i++) {
		switch (res_status(&r->results[i])) {
		case STEP_OK:
			c->ok++;
			break;
		case STEP_CHANGED:
			c->changed++;
			break;
		case STEP_SKIPPED:
			c->skipped++;
			break;
		case STEP_FAILED:
			c->failed++;
			break;
		case STEP_WOULD_CHANGE:
			c->would_change++;
			break;
		case STEP_INTERRUPTED:
			c->interrupted++;
			break;
		case STEP_PENDING:
		case STEP_NOT_RUN:
			c->not_run++;
			break;
		}
	}
}

static bool
has_run_err(const struct report_run *r)
{
	return r->run_err != NULL && r->run_err->code != SH_OK;
}

/*
 * The caller's status when it is one the schema knows, else derived:
 * interrupted when a step or the run was interrupted, failed on a non-zero
 * exit code, passed otherwise.
 */
static const char *
run_status(const struct report_run *r, const struct counts *c)
{
	const char *s = r->status;

	if (s != NULL &&
	    (strcmp(s, "passed") == 0 || strcmp(s, "failed") == 0 ||
	        strcmp(s, "interrupted") == 0))
		return s;
	if (c->interrupted ||
	    (has_run_err(r) && r->run_err->code == SH_ERR_INTERRUPTED))
		return "interrupted";
	return r->exit_code != 0 ? "failed" : "passed";
}

/* ======================================================== JSON helpers */

/* A string value, redacted before it is escaped. */
static void
jstrn(struct json *j, const struct redact *rd, const char *p, size_t len)
{
	struct buf tmp;

	buf_init(&tmp, REPORT_MAX_BYTES);
	if (redact_text(rd, p, len, &tmp) < 0)
		j->failed = true;
	else
		json_stringn(j, tmp.data, tmp.len);
	buf_release(&tmp);
}

/*
 * A step's output, redacted: when it fills REPORT_OUTPUT_TAIL its front
 * was (or may have been) cut, and redact_tail() also masks a piece of a
 * secret that short at its start. Returns 0 or -1.
 */
static int
output_clean(const struct redact *rd, const struct buf *o, struct buf *out)
{
	buf_init(out, REPORT_MAX_BYTES);
	return o->len >= REPORT_OUTPUT_TAIL
	           ? redact_tail(rd, o->data, o->len, out)
	           : redact_text(rd, o->data, o->len, out);
}

/* "key": "s" (redacted), or "key": null when s is NULL. */
static void
jkstr(struct json *j, const struct redact *rd, const char *key, const char *s)
{
	json_key(j, key);
	if (s == NULL)
		json_null(j);
	else
		jstrn(j, rd, s, strlen(s));
}

static void
jktime(struct json *j, const char *key, int64_t t)
{
	struct buf b;

	buf_init(&b, 64);
	json_key(j, key);
	if (t <= 0 || time_rfc3339(&b, t) < 0)
		json_null(j);
	else
		json_string(j, b.data);
	buf_release(&b);
}

/* null, or {"code": "...", "message": "..."}. */
static void
jkerror(struct json *j, const struct redact *rd, const char *key,
    const struct errbuf *e)
{
	json_key(j, key);
	if (e == NULL || e->code == SH_OK) {
		json_null(j);
		return;
	}
	json_object_begin(j);
	jkstr(j, rd, "code", sh_strerror(e->code));
	jkstr(j, rd, "message", e->msg);
	json_object_end(j);
}

/* ======================================================== results.json */

static void
json_host_key(struct json *j, const struct redact *rd, const char *fp,
    const char *type, bool accepted)
{
	json_key(j, "host_key");
	if (fp == NULL) {
		json_null(j);
		return;
	}
	json_object_begin(j);
	jkstr(j, rd, "fingerprint", fp);
	jkstr(j, rd, "type", type);
	json_member_bool(j, "accepted_new", accepted);
	json_object_end(j);
}

/* The hops as given (no key material: only what the host keys were). */
static void
json_jumps(struct json *j, const struct report_run *r)
{
	json_key(j, "jumps");
	json_array_begin(j);
	for (size_t i = 0; i < r->njumps; i++) {
		const struct report_jump *h = &r->jumps[i];

		json_object_begin(j);
		jkstr(j, r->redact, "user", h->user);
		jkstr(j, r->redact, "host", h->host);
		json_member_uint(j, "port", h->port);
		json_host_key(j, r->redact, h->host_key_fingerprint,
		    h->host_key_type, h->host_key_accepted);
		json_object_end(j);
	}
	json_array_end(j);
}

static void
json_target(struct json *j, const struct report_run *r)
{
	const struct target_facts *f = r->facts;

	json_key(j, "target");
	if (r->target_host == NULL) {
		json_null(j);
		return;
	}
	json_object_begin(j);
	jkstr(j, r->redact, "user", r->target_user);
	jkstr(j, r->redact, "host", r->target_host);
	json_member_uint(j, "port", r->target_port);
	jkstr(j, r->redact, "system", f ? f->system : NULL);
	jkstr(j, r->redact, "hostname", f ? f->hostname : NULL);
	jkstr(j, r->redact, "boot_id", f ? f->boot_id : NULL);
	json_host_key(j, r->redact, r->host_key_fingerprint, r->host_key_type,
	    r->host_key_accepted);
	json_jumps(j, r);
	json_object_end(j);
}

static void
json_counts(struct json *j, const struct counts *c)
{
	json_key(j, "counts");
	json_object_begin(j);
	json_member_uint(j, "total", c->total);
	json_member_uint(j, "ok", c->ok);
	json_member_uint(j, "changed", c->changed);
	json_member_uint(j, "skipped", c->skipped);
	json_member_uint(j, "failed", c->failed);
	json_member_uint(j, "would_change", c->would_change);
	json_member_uint(j, "interrupted", c->interrupted);
	json_member_uint(j, "not_run", c->not_run);
	json_object_end(j);
}

static void
json_source(struct json *j, const struct report_run *r, const struct step *s)
{
	struct buf b;

	json_key(j, "source");
	if (s->node == NULL || s->node->file == NULL) {
		json_null(j);
		return;
	}
	buf_init(&b, 1u << 16);
	if (buf_addf(
	        &b, "%s:%u:%u", s->node->file, s->node->line, s->node->col) < 0)
		j->failed = true;
	else
		jstrn(j, r->redact, b.data, b.len);
	buf_release(&b);
}

static void
json_strlist(struct json *j, const struct redact *rd, const char *key,
    const struct strlist *l)
{
	json_key(j, key);
	json_array_begin(j);
	for (size_t i = 0; i < l->n; i++)
		jstrn(j, rd, l->v[i], strlen(l->v[i]));
	json_array_end(j);
}

/* Keys are cut to DETAIL_KEY_MAX bytes after redaction (libyaml's limit). */
static void
json_details(
    struct json *j, const struct redact *rd, const struct step_result *res)
{
	struct buf k;

	buf_init(&k, REPORT_MAX_BYTES);
	json_key(j, "details");
	json_object_begin(j);
	for (size_t i = 0; i < res->ndetails; i++) {
		const char *key = res->details[i].key;

		buf_reset(&k);
		if (redact_text(rd, key, strlen(key), &k) < 0)
			j->failed = true;
		if (k.len > DETAIL_KEY_MAX) {
			k.len = DETAIL_KEY_MAX;
			k.data[k.len] = '\0';
		}
		json_key(j, k.data);
		jstrn(j, rd, res->details[i].value,
		    strlen(res->details[i].value));
	}
	json_object_end(j);
	buf_release(&k);
}

static void
json_tests(
    struct json *j, const struct redact *rd, const struct step_result *res)
{
	json_key(j, "tests");
	json_array_begin(j);
	for (size_t i = 0; i < res->ntests; i++) {
		const struct step_test *t = &res->tests[i];

		json_object_begin(j);
		jkstr(j, rd, "name", t->name);
		jkstr(j, rd, "status",
		    t->skipped  ? "skipped"
		    : t->passed ? "passed"
		                : "failed");
		jkstr(j, rd, "message", t->message);
		json_member_uint(j, "duration_ms", t->duration_ms);
		json_object_end(j);
	}
	json_array_end(j);
}

/* What the step did: status, timing, error, output and changes. */
static void
json_step_outcome(
    struct json *j, const struct redact *rd, const struct step_result *res)
{
	struct buf clean;

	jkstr(j, rd, "status", step_status_name(res_status(res)));
	json_member_bool(j, "changed", res->changed);
	json_member_uint(j, "attempts", res->attempts);
	json_member_uint(j, "reconnects", res->reconnects);
	json_member_uint(j, "duration_ms", res->duration_ms);
	jktime(j, "started_at", res->started_at);
	jkerror(j, rd, "error", &res->err);
	jkstr(j, rd, "skip_reason", res->skip_reason);
	json_key(j, "exit_status");
	if (res->exit_status < 0)
		json_null(j);
	else
		json_int(j, res->exit_status);
	json_key(j, "output");
	if (output_clean(rd, &res->output, &clean) < 0)
		j->failed = true;
	else
		jstrn(j, rd, clean.data, clean.len);
	buf_release(&clean);
	json_strlist(j, rd, "changes", &res->changes);
	json_member_uint(j, "changes_dropped", res->changes_dropped);
}

static void
json_step(struct json *j, const struct report_run *r, size_t i)
{
	const struct step *s = &r->manifest->steps[i];
	const struct step_result *res = &r->results[i];

	json_object_begin(j);
	json_member_uint(j, "index", i + 1);
	jkstr(j, r->redact, "name", s->name);
	jkstr(j, r->redact, "kind", s->kind ? s->kind->name : NULL);
	json_step_outcome(j, r->redact, res);
	json_strlist(j, r->redact, "tags", &s->tags);
	jkstr(j, r->redact, "become", s->become);
	json_member_bool(j, "rescue", s->rescue);
	json_source(j, r, s);
	json_details(j, r->redact, res);
	json_tests(j, r->redact, res);
	json_object_end(j);
}

static void
json_run_header(struct json *j, const struct report_run *r)
{
	const struct manifest *m = r->manifest;

	json_key(j, "stagehand");
	json_object_begin(j);
	jkstr(j, r->redact, "version", r->version ? r->version : "unknown");
	json_object_end(j);
	json_member_uint(j, "schema", 1);
	jkstr(j, r->redact, "command", r->command ? r->command : "run");
	jkstr(j, r->redact, "stage", m->stage ? m->stage : "");
	jkstr(j, r->redact, "manifest", m->path ? m->path : "");
	jkstr(j, r->redact, "description", m->description);
}

/* The stage's closure: the last closure step that got as far as
 * resolving one (a stage normally has a single closure step). */
static const struct step_closure *
last_closure(const struct report_run *r, const char **step_name)
{
	for (size_t i = r->manifest->nsteps; i-- > 0;) {
		if (r->results[i].closure != NULL) {
			*step_name = r->manifest->steps[i].name;
			return r->results[i].closure;
		}
	}
	return NULL;
}

static void
json_closure_path(
    struct json *j, const struct redact *rd, const struct step_closure_path *p)
{
	json_object_begin(j);
	jkstr(j, rd, "path", p->path);
	jkstr(j, rd, "nar_hash", p->nar_hash);
	json_member_uint(j, "nar_size", p->nar_size);
	jkstr(j, rd, "signer", p->signer);
	jkstr(j, rd, "substituter", p->substituter);
	json_object_end(j);
}

static void
json_closure(struct json *j, const struct report_run *r)
{
	const char *step = NULL;
	const struct step_closure *cl = last_closure(r, &step);

	json_key(j, "closure");
	if (cl == NULL) {
		json_null(j);
		return;
	}
	json_object_begin(j);
	jkstr(j, r->redact, "step", step);
	jkstr(j, r->redact, "root", cl->root);
	jkstr(j, r->redact, "system", cl->system);
	jkstr(j, r->redact, "profile", cl->profile);
	json_member_uint(j, "path_count", cl->n);
	json_member_uint(j, "nar_size", cl->nar_size);
	json_member_uint(j, "file_size", cl->file_size);
	json_member_uint(j, "paths_missing", cl->paths_missing);
	json_member_uint(j, "bytes_missing", cl->bytes_missing);
	json_member_int(j, "generation_before", cl->generation_before);
	json_member_int(j, "generation_after", cl->generation_after);
	json_key(j, "paths");
	json_array_begin(j);
	for (size_t i = 0; i < cl->n; i++)
		json_closure_path(j, r->redact, &cl->paths[i]);
	json_array_end(j);
	json_object_end(j);
}

static int
build_results(
    const struct report_run *r, const struct counts *c, struct buf *out)
{
	struct json j;

	json_init(&j, out, true);
	json_object_begin(&j);
	json_run_header(&j, r);
	json_target(&j, r);
	jktime(&j, "started_at", r->started_at);
	jktime(&j, "finished_at", r->finished_at);
	json_member_uint(&j, "duration_ms", r->duration_ms);
	jkstr(&j, r->redact, "status", run_status(r, c));
	json_key(&j, "exit_code");
	json_int(&j, r->exit_code);
	jkerror(&j, r->redact, "error", r->run_err);
	json_member_uint(&j, "reconnects", r->reconnects);
	json_counts(&j, c);
	json_key(&j, "steps");
	json_array_begin(&j);
	for (size_t i = 0; i < r->manifest->nsteps; i++)
		json_step(&j, r, i);
	json_array_end(&j);
	json_closure(&j, r);
	json_object_end(&j);
	return json_finish(&j);
}

/* ======================================================== junit.xml */

/* An XML writer with a sticky failure, like struct json. */
struct xw {
	struct buf *out; /* borrowed */
	const struct redact *rd;
	bool failed;
};

static void
xw_raw(struct xw *x, const char *s)
{
	if (!x->failed && buf_adds(x->out, s) < 0)
		x->failed = true;
}

static void xw_rawf(struct xw *x, const char *fmt, ...) ATTR_PRINTF(2, 3);

static void
xw_rawf(struct xw *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (!x->failed && buf_vaddf(x->out, fmt, ap) < 0)
		x->failed = true;
	va_end(ap);
}

/* A step's output: output_clean(), then as xw_text(). */
static void xw_text(struct xw *x, const char *p, size_t len, bool attr);

static void
xw_output(struct xw *x, const struct buf *o)
{
	struct buf clean;

	if (output_clean(x->rd, o, &clean) < 0)
		x->failed = true;
	else
		xw_text(x, clean.data, clean.len, false);
	buf_release(&clean);
}

/* p[0..len), redacted, then escaped for content or an attribute. */
static void
xw_text(struct xw *x, const char *p, size_t len, bool attr)
{
	struct buf tmp;

	buf_init(&tmp, REPORT_MAX_BYTES);
	if (x->failed || redact_text(x->rd, p, len, &tmp) < 0 ||
	    xml_escape(x->out, tmp.data, tmp.len, attr) < 0)
		x->failed = true;
	buf_release(&tmp);
}

/* ` name="value"` */
static void
xw_attr(struct xw *x, const char *name, const char *value)
{
	xw_rawf(x, " %s=\"", name);
	xw_text(x, value, strlen(value), true);
	xw_raw(x, "\"");
}

static void
xw_time(struct xw *x, uint64_t ms)
{
	xw_rawf(x, " time=\"%" PRIu64 ".%03" PRIu64 "\"", ms / 1000, ms % 1000);
}

struct junit_counts {
	size_t tests, failures, errors, skipped;
};

/* <failure|error message="first line">message \n\n output</...> */
static void
junit_problem(struct xw *x, const char *tag, const struct step_result *res)
{
	const char *msg = res->err.code != SH_OK                ? res->err.msg
	                  : res_status(res) == STEP_INTERRUPTED ? "interrupted"
	                                                        : "failed";

	xw_rawf(x, "      <%s", tag);
	xw_attr(x, "message", msg);
	xw_attr(x, "type", sh_strerror(res->err.code));
	xw_raw(x, ">");
	xw_text(x, msg, strlen(msg), false);
	if (res->output.len > 0) {
		xw_raw(x, "\n\n");
		xw_output(x, &res->output);
	}
	xw_rawf(x, "</%s>\n", tag);
}

/* <system-out>: the changes made (or planned), then the output tail. */
static void
junit_system_out(struct xw *x, const struct step_result *res)
{
	if (res->changes.n == 0 && res->output.len == 0)
		return;
	xw_raw(x, "      <system-out>");
	for (size_t i = 0; i < res->changes.n; i++) {
		xw_text(x, res->changes.v[i], strlen(res->changes.v[i]), false);
		xw_raw(x, "\n");
	}
	xw_output(x, &res->output);
	xw_raw(x, "</system-out>\n");
}

static void
junit_step_body(
    struct xw *x, const struct step_result *res, struct junit_counts *jc)
{
	switch (res_status(res)) {
	case STEP_FAILED:
		jc->failures++;
		junit_problem(x, "failure", res);
		return;
	case STEP_INTERRUPTED:
		jc->errors++;
		junit_problem(x, "error", res);
		return;
	case STEP_SKIPPED:
	case STEP_NOT_RUN:
	case STEP_PENDING:
		jc->skipped++;
		xw_raw(x, "      <skipped");
		xw_attr(x, "message",
		    res_status(res) == STEP_SKIPPED && res->skip_reason
		        ? res->skip_reason
		        : step_status_name(res_status(res)));
		xw_raw(x, "/>\n");
		return;
	case STEP_OK:
	case STEP_CHANGED:
	case STEP_WOULD_CHANGE:
		junit_system_out(x, res);
		return;
	}
}

static void
junit_embedded(struct xw *x, const char *stage, const char *step,
    const struct step_result *res, struct junit_counts *jc)
{
	for (size_t i = 0; i < res->ntests; i++) {
		const struct step_test *t = &res->tests[i];
		const char *msg = t->message ? t->message : "";

		jc->tests++;
		xw_raw(x, "    <testcase");
		xw_rawf(x, " classname=\"");
		xw_text(x, stage, strlen(stage), true);
		xw_raw(x, ".");
		xw_text(x, step, strlen(step), true);
		xw_raw(x, "\"");
		xw_attr(x, "name", t->name);
		xw_time(x, t->duration_ms);
		xw_raw(x, ">\n");
		if (t->skipped) {
			jc->skipped++;
			xw_raw(x, "      <skipped");
			xw_attr(x, "message", msg);
			xw_raw(x, "/>\n");
		} else if (!t->passed) {
			jc->failures++;
			xw_raw(x, "      <failure");
			xw_attr(x, "message", msg);
			xw_raw(x, ">");
			xw_text(x, msg, strlen(msg), false);
			xw_raw(x, "</failure>\n");
		}
		xw_raw(x, "    </testcase>\n");
	}
}

/* Steps are named "NN name", NN padded so that they sort by position. */
static void
junit_step(
    struct xw *x, const struct report_run *r, size_t i, struct junit_counts *jc)
{
	const struct step *s = &r->manifest->steps[i];
	const struct step_result *res = &r->results[i];
	const char *stage = r->manifest->stage ? r->manifest->stage : "";
	int width = r->manifest->nsteps >= 100
	                ? (r->manifest->nsteps >= 1000 ? 5 : 3)
	                : 2;
	struct buf name;

	buf_init(&name, 64 + strlen(s->name));
	if (buf_addf(&name, "%0*zu %s", width, i + 1, s->name) < 0)
		x->failed = true;
	jc->tests++;
	xw_raw(x, "    <testcase");
	xw_attr(x, "classname", stage);
	xw_attr(x, "name", name.data);
	xw_time(x, res->duration_ms);
	xw_raw(x, ">\n");
	junit_step_body(x, res, jc);
	xw_raw(x, "    </testcase>\n");
	buf_release(&name);
	junit_embedded(x, stage, s->name, res, jc);
}

/*
 * A run-level error that no step carries (the target was unreachable,
 * or the run was stopped between steps) gets a testcase of its own, so CI
 * shows it: "connect" when no step ran at all, else "run".
 */
static void
junit_run_error(struct xw *x, const struct report_run *r,
    const struct counts *c, struct junit_counts *jc)
{
	const char *stage = r->manifest->stage ? r->manifest->stage : "";
	size_t ran =
	    c->ok + c->changed + c->would_change + c->failed + c->interrupted;

	if (!has_run_err(r) || c->failed || c->interrupted)
		return;
	jc->tests++;
	jc->errors++;
	xw_raw(x, "    <testcase");
	xw_attr(x, "classname", stage);
	xw_attr(x, "name", ran == 0 ? "connect" : "run");
	xw_raw(x, " time=\"0.000\">\n      <error");
	xw_attr(x, "message", r->run_err->msg);
	xw_attr(x, "type", sh_strerror(r->run_err->code));
	xw_raw(x, ">");
	xw_text(x, r->run_err->msg, strlen(r->run_err->msg), false);
	xw_raw(x, "</error>\n    </testcase>\n");
}

static void
junit_suite_attrs(struct xw *x, const struct junit_counts *jc, uint64_t ms)
{
	xw_rawf(x,
	    " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\""
	    " skipped=\"%zu\"",
	    jc->tests, jc->failures, jc->errors, jc->skipped);
	xw_time(x, ms);
}

static void
junit_header(
    struct xw *x, const struct report_run *r, const struct junit_counts *jc)
{
	const char *stage = r->manifest->stage ? r->manifest->stage : "";
	struct buf ts;

	buf_init(&ts, 64);
	xw_raw(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	          "<testsuites name=\"stagehand\"");
	junit_suite_attrs(x, jc, r->duration_ms);
	xw_raw(x, ">\n  <testsuite");
	xw_attr(x, "name", stage);
	junit_suite_attrs(x, jc, r->duration_ms);
	if (r->started_at > 0 && time_rfc3339(&ts, r->started_at) == 0)
		xw_attr(x, "timestamp", ts.data);
	if (r->target_host != NULL)
		xw_attr(x, "hostname", r->target_host);
	xw_raw(x, ">\n");
	buf_release(&ts);
}

static int
build_junit(const struct report_run *r, const struct counts *c, struct buf *out)
{
	struct junit_counts jc = { 0 };
	struct buf body;
	struct xw bx = { .out = &body, .rd = r->redact };
	struct xw hx = { .out = out, .rd = r->redact };

	/* The cases first, into body: the suite's counts come from them. */
	buf_init(&body, REPORT_MAX_BYTES);
	junit_run_error(&bx, r, c, &jc);
	for (size_t i = 0; i < r->manifest->nsteps; i++)
		junit_step(&bx, r, i, &jc);
	junit_header(&hx, r, &jc);
	if (!bx.failed && !hx.failed && buf_add(out, body.data, body.len) < 0)
		hx.failed = true;
	xw_raw(&hx, "  </testsuite>\n</testsuites>\n");
	buf_release(&body);
	return bx.failed || hx.failed ? -1 : 0;
}

/* ======================================================== stagehand.env */

/* Appends p[0..len) with bytes that are not UTF-8 replaced by U+FFFD. */
static int
add_utf8(struct buf *out, const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = json_utf8_next(s + i, len - i, &cp);
		int rc = n == 1 && s[i] >= 0x80 ? buf_adds(out, "\xef\xbf\xbd")
		                                : buf_add(out, s + i, n);

		if (rc < 0)
			return -1;
		i += n;
	}
	return 0;
}

/*
 * NAME='value': redacted, invalid UTF-8 replaced as in the other files
 * (so the values compare equal to results.json's), single-quoted.
 */
static int
env_var(struct buf *out, const struct redact *rd, const char *name,
    const char *value)
{
	struct buf tmp, clean;
	int rc;

	if (value == NULL)
		value = "";
	buf_init(&tmp, REPORT_MAX_BYTES);
	buf_init(&clean, REPORT_MAX_BYTES);
	rc = redact_text(rd, value, strlen(value), &tmp);
	if (rc == 0)
		rc = add_utf8(&clean, tmp.data, tmp.len);
	if (rc == 0)
		rc = buf_addf(out, "%s=", name);
	if (rc == 0)
		rc = sh_quote(out, clean.data);
	if (rc == 0)
		rc = buf_addc(out, '\n');
	buf_release(&clean);
	buf_release(&tmp);
	return rc;
}

static int
env_num(struct buf *out, const char *name, int64_t v)
{
	return buf_addf(out, "%s='%" PRId64 "'\n", name, v);
}

static const char *
first_failed_step(const struct report_run *r)
{
	for (size_t i = 0; i < r->manifest->nsteps; i++)
		if (res_status(&r->results[i]) == STEP_FAILED)
			return r->manifest->steps[i].name;
	return "";
}

static const char *
closure_root(const struct report_run *r)
{
	const char *step;
	const struct step_closure *cl = last_closure(r, &step);

	return cl != NULL && cl->root != NULL ? cl->root : "";
}

static int
build_env(const struct report_run *r, const struct counts *c,
    const char *absdir, struct buf *out)
{
	const struct redact *rd = r->redact;
	const struct target_facts *f = r->facts;
	int rc =
	    buf_adds(out, "# stagehand.env: written by stagehand; "
	                  "load with: set -a; . ./stagehand.env; set +a\n");

	rc |= env_var(out, rd, "STAGEHAND_STATUS", run_status(r, c));
	rc |= env_num(out, "STAGEHAND_EXIT_CODE", r->exit_code);
	rc |= env_var(out, rd, "STAGEHAND_STAGE", r->manifest->stage);
	rc |= env_num(out, "STAGEHAND_STEPS_TOTAL", (int64_t)c->total);
	rc |= env_num(out, "STAGEHAND_STEPS_CHANGED", (int64_t)c->changed);
	rc |= env_num(
	    out, "STAGEHAND_STEPS_WOULD_CHANGE", (int64_t)c->would_change);
	rc |= env_num(out, "STAGEHAND_STEPS_FAILED", (int64_t)c->failed);
	rc |= env_var(out, rd, "STAGEHAND_FAILED_STEP", first_failed_step(r));
	rc |= env_var(out, rd, "STAGEHAND_REPORT_DIR", absdir);
	rc |= env_var(out, rd, "STAGEHAND_TARGET_SYSTEM", f ? f->system : NULL);
	rc |= env_var(out, rd, "STAGEHAND_BOOT_ID", f ? f->boot_id : NULL);
	rc |= env_var(out, rd, "STAGEHAND_CLOSURE_ROOT", closure_root(r));
	return rc < 0 ? -1 : 0;
}

/* ======================================================== writing */

/* The final redaction pass, then an atomic write of dir/name. */
static int
write_doc(const char *dir, const char *name, struct buf *doc,
    const struct redact *rd, struct errbuf *err)
{
	char *path;
	int rc;

	if (redact_buf(rd, doc) < 0)
		return err_set(err, SH_ERR_IO,
		    "%s/%s: report larger than %u "
		    "bytes",
		    dir, name, REPORT_MAX_BYTES);
	path = xasprintf("%s/%s", dir, name);
	rc =
	    file_write_atomic(path, doc->data, doc->len, REPORT_FILE_MODE, err);
	free(path);
	return rc;
}

typedef int (*build_fn)(
    const struct report_run *, const struct counts *, struct buf *);

static int
build_and_write(const char *dir, const char *name, build_fn fn,
    const struct report_run *r, const struct counts *c, struct errbuf *err)
{
	struct buf doc;
	int rc;

	buf_init(&doc, REPORT_MAX_BYTES);
	if (fn(r, c, &doc) < 0)
		rc = err_set(err, SH_ERR_IO,
		    "%s/%s: report larger than %u "
		    "bytes",
		    dir, name, REPORT_MAX_BYTES);
	else
		rc = write_doc(dir, name, &doc, r->redact, err);
	buf_release(&doc);
	return rc;
}

static int
write_env(const char *dir, const struct report_run *r, const struct counts *c,
    struct errbuf *err)
{
	char *abs = realpath(dir, NULL);
	struct buf doc;
	int rc;

	if (abs == NULL)
		return err_set(err, SH_ERR_IO, "%s: %s", dir, strerror(errno));
	buf_init(&doc, REPORT_MAX_BYTES);
	if (build_env(r, c, abs, &doc) < 0)
		rc =
		    err_set(err, SH_ERR_IO, "%s/stagehand.env: too large", dir);
	else
		rc = write_doc(dir, "stagehand.env", &doc, r->redact, err);
	buf_release(&doc);
	free(abs);
	return rc;
}

int
report_write(const char *dir, const struct report_run *r, struct errbuf *err)
{
	struct counts c;

	if (r->manifest == NULL || (r->manifest->nsteps && r->results == NULL))
		return err_set(err, SH_ERR_INTERNAL,
		    "report: no manifest "
		    "or results");
	count_steps(r, &c);
	if (mkdir_p(dir, REPORT_DIR_MODE, err) < 0)
		return -1;
	if (build_and_write(dir, "junit.xml", build_junit, r, &c, err) < 0 ||
	    write_env(dir, r, &c, err) < 0 ||
	    build_and_write(dir, "results.json", build_results, r, &c, err) < 0)
		return err_prefix(err, "writing report: ");
	return 0;
}
