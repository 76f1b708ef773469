/*
 * ui.c: step lines for people, NDJSON events for machines, and run.log.
 * See ui.h.
 */
#include "report/ui.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/kind.h"
#include "util/json.h"
#include "util/limits.h"

struct ui {
	struct ui_opts opts;
	const struct redact *redact; /* borrowed */
	FILE *human;                 /* stdout, or stderr with --json */
	bool tty;                    /* human is a terminal */
	bool color;
	bool running_shown; /* a "running" line awaits overwrite */
	FILE *log;          /* owned: DIR/run.log.tmp */
	char *log_tmp;      /* owned */
	char *log_path;     /* owned */
};

enum color {
	C_NONE,
	C_GREEN,
	C_YELLOW,
	C_RED,
	C_DIM,
};

static const char *const color_codes[] = {
	[C_NONE] = "",
	[C_GREEN] = "\033[32m",
	[C_YELLOW] = "\033[33m",
	[C_RED] = "\033[31m",
	[C_DIM] = "\033[2m",
};

struct ui *
ui_new(const struct ui_opts *opts, const struct redact *redact)
{
	struct ui *ui = xcalloc(1, sizeof(*ui));
	const char *nc = getenv("NO_COLOR");

	ui->opts = *opts;
	ui->redact = redact;
	ui->human = opts->json ? stderr : stdout;
	ui->tty = isatty(fileno(ui->human)) == 1;
	ui->color = ui->tty && (nc == NULL || nc[0] == '\0');
	return ui;
}

int
ui_open_log(struct ui *ui, const char *dir, struct errbuf *err)
{
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	ui->log_path = xasprintf("%s/run.log", dir);
	ui->log_tmp = xasprintf("%s/run.log.tmp", dir);
	ui->log = fopen(ui->log_tmp, "we");
	if (ui->log == NULL)
		return err_set(
		    err, SH_ERR_IO, "%s: %s", ui->log_tmp, strerror(errno));
	return 0;
}

int
ui_close_log(struct ui *ui, struct errbuf *err)
{
	int rc = 0;

	if (ui->log == NULL)
		return 0;
	if (fflush(ui->log) != 0 || fsync(fileno(ui->log)) != 0)
		rc = err_set(
		    err, SH_ERR_IO, "%s: %s", ui->log_tmp, strerror(errno));
	fclose(ui->log);
	ui->log = NULL;
	if (rc == 0 && rename(ui->log_tmp, ui->log_path) < 0)
		rc = err_set(
		    err, SH_ERR_IO, "%s: %s", ui->log_path, strerror(errno));
	return rc;
}

void
ui_free(struct ui *ui)
{
	if (ui == NULL)
		return;
	if (ui->log != NULL)
		fclose(ui->log);
	free(ui->log_tmp);
	free(ui->log_path);
	free(ui);
}

/* ======================================================== writing */

/*
 * Every byte that leaves the process goes through here: redacted, as plain
 * text (fragments too) or, for NDJSON lines whose values were redacted
 * before encoding, as a document (whole values: a fragment must not hit a
 * number). The buffer fits any redaction of the text; if redaction still
 * fails the line is replaced, never dropped unseen nor written unredacted.
 */
static void
emit_as(const struct ui *ui, FILE *f, const char *text, size_t len, bool doc)
{
	struct buf clean;
	int rc;

	if (f == NULL)
		return;
	buf_init(&clean, redact_max(len));
	rc = doc ? redact_doc(ui->redact, text, len, &clean)
	         : redact_text(ui->redact, text, len, &clean);
	if (rc == 0)
		fwrite(clean.data, 1, clean.len, f);
	else
		fputs("[stagehand: line withheld: redaction failed]\n", f);
	buf_release(&clean);
	fflush(f);
}

static void
emit(const struct ui *ui, FILE *f, const char *text, size_t len)
{
	emit_as(ui, f, text, len, false);
}

/* A human line: to the terminal (unless quiet and not important) and the
 * log. Colour goes only to a terminal. */
static void say(struct ui *ui, bool important, enum color c, const char *fmt,
    ...) ATTR_PRINTF(4, 5);

static void
say(struct ui *ui, bool important, enum color c, const char *fmt, ...)
{
	struct buf line;
	va_list ap;

	buf_init(&line, 1u << 20);
	va_start(ap, fmt);
	buf_vaddf(&line, fmt, ap);
	va_end(ap);
	emit(ui, ui->log, line.data, line.len);
	if (ui->opts.verbosity >= 0 || important) {
		if (ui->running_shown) {
			fputs("\r\033[K", ui->human);
			ui->running_shown = false;
		}
		if (ui->color && c != C_NONE)
			fputs(color_codes[c], ui->human);
		emit(ui, ui->human, line.data, line.len);
		if (ui->color && c != C_NONE)
			fputs("\033[0m", ui->human);
	}
	buf_release(&line);
}

/* Indented detail lines (errors, changes, output) under a step line. */
static void
say_block(struct ui *ui, bool important, bool to_terminal, const char *text)
{
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = (int)(nl ? (size_t)(nl - p) : strlen(p));

		if (to_terminal)
			say(ui, important, C_DIM, "        %.*s\n", len, p);
		else {
			struct buf l;

			buf_init(&l, 1u << 20);
			buf_addf(&l, "        %.*s\n", len, p);
			emit(ui, ui->log, l.data, l.len);
			buf_release(&l);
		}
		p += len + (nl ? 1 : 0);
	}
}

/* Is line (len bytes, no newline) a whole line of text? */
static bool
has_line(const char *text, const char *line, size_t len)
{
	const char *p = text;

	if (len == 0)
		return false;
	while ((p = strchr(p, '\n')) != NULL) {
		p++;
		if (strncmp(p, line, len) == 0 &&
		    (p[len] == '\n' || p[len] == '\0'))
			return true;
	}
	return false;
}

/*
 * A failed step's output, less the lines its error already shows (a
 * server log tail, a pgTAP diagnostic), so nothing is printed twice.
 */
static void
say_output_after_error(
    struct ui *ui, const struct step_result *r, const char *output)
{
	struct buf rest;
	const char *p = output;

	buf_init(&rest, strlen(output) + 1);
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (!has_line(r->err.msg, p, len) &&
		    (buf_add(&rest, p, len) < 0 || buf_addc(&rest, '\n') < 0))
			break;
		p += len + (nl ? 1 : 0);
	}
	say_block(ui, false, true, rest.data);
	buf_release(&rest);
}

/* NDJSON: one event object per line on stdout. */
struct event {
	struct buf out;
	struct json j;
};

static void
event_begin(struct event *e, const char *name)
{
	buf_init(&e->out, 1u << 20);
	json_init(&e->j, &e->out, false);
	json_object_begin(&e->j);
	json_member_string(&e->j, "event", name);
}

/* "key": value, redacted as plain text before it is JSON-escaped. */
static void
event_str(
    const struct ui *ui, struct event *e, const char *key, const char *value)
{
	struct buf clean;
	size_t len = strlen(value);

	buf_init(&clean, redact_max(len));
	json_key(&e->j, key);
	if (redact_text(ui->redact, value, len, &clean) == 0)
		json_stringn(&e->j, clean.data, clean.len);
	else
		json_string(&e->j, REDACTED);
	buf_release(&clean);
}

static void
event_end(struct ui *ui, struct event *e)
{
	json_object_end(&e->j);
	if (ui->opts.json && json_finish(&e->j) == 0 &&
	    buf_addc(&e->out, '\n') == 0)
		emit_as(ui, stdout, e->out.data, e->out.len, true);
	buf_release(&e->out);
}

/* ======================================================== events */

void
ui_run_start(struct ui *ui, const char *command, const struct manifest *m,
    const char *target)
{
	struct event e;

	say(ui, false, C_NONE, "stagehand %s %s: stage %s, %zu steps%s%s\n",
	    command, m->path, m->stage, m->nsteps, target ? " -> " : "",
	    target ? target : "");
	event_begin(&e, "run_start");
	event_str(ui, &e, "command", command);
	event_str(ui, &e, "manifest", m->path);
	event_str(ui, &e, "stage", m->stage);
	json_member_uint(&e.j, "steps", m->nsteps);
	event_end(ui, &e);
}

void
ui_step_start(struct ui *ui, const struct step *s, size_t total)
{
	struct event e;

	if (ui->tty && ui->opts.verbosity >= 0) {
		struct buf l; /* the name may hold an interpolated secret */

		buf_init(&l, 1u << 20);
		buf_addf(&l, "[%*zu/%zu] %-11s %s", total >= 10 ? 2 : 1,
		    s->index + 1, total, "running", s->name);
		emit(ui, ui->human, l.data, l.len);
		buf_release(&l);
		ui->running_shown = true;
	}
	event_begin(&e, "step_start");
	json_member_uint(&e.j, "index", s->index);
	event_str(ui, &e, "name", s->name);
	event_str(ui, &e, "kind", s->kind->name);
	event_end(ui, &e);
}

static enum color
status_color(enum step_status st)
{
	switch (st) {
	case STEP_OK:
		return C_GREEN;
	case STEP_CHANGED:
	case STEP_WOULD_CHANGE:
		return C_YELLOW;
	case STEP_FAILED:
	case STEP_INTERRUPTED:
		return C_RED;
	case STEP_PENDING:
	case STEP_SKIPPED:
	case STEP_NOT_RUN:
		return C_DIM;
	}
	return C_NONE;
}

/*
 * A step's output. When it fills REPORT_OUTPUT_TAIL its front was (or may
 * have been) cut: redact_tail() first, so not even a byte of a secret the
 * cut split is left at its start; the lines are redacted again as shown.
 */
static void
say_output(
    struct ui *ui, const struct step_result *r, bool failed, bool verbose)
{
	struct buf clean;
	int rc;

	buf_init(&clean, redact_max(r->output.len));
	rc =
	    r->output.len >= REPORT_OUTPUT_TAIL
	        ? redact_tail(ui->redact, r->output.data, r->output.len, &clean)
	        : buf_add(&clean, r->output.data, r->output.len);
	if (rc < 0)
		say(ui, failed, C_DIM,
		    "        [output withheld: redaction failed]\n");
	else if (failed)
		say_output_after_error(ui, r, clean.data);
	else
		say_block(ui, false, verbose, clean.data);
	buf_release(&clean);
}

static void
step_details(struct ui *ui, const struct step_result *r)
{
	bool failed = r->status == STEP_FAILED || r->status == STEP_INTERRUPTED;
	bool verbose = ui->opts.verbosity > 0;

	if (failed)
		say_block(ui, true, true, r->err.msg);
	for (size_t i = 0; i < r->changes.n; i++)
		say_block(ui, false, verbose, r->changes.v[i]);
	if (r->changes_dropped)
		say(ui, false, C_DIM, "        (+%zu more changes)\n",
		    r->changes_dropped);
	for (size_t i = 0; i < r->ntests; i++)
		if (!r->tests[i].passed && !r->tests[i].skipped)
			say(ui, true, C_RED, "        not ok: %s%s%s\n",
			    r->tests[i].name, r->tests[i].message ? ": " : "",
			    r->tests[i].message ? r->tests[i].message : "");
	if (r->output.len > 0)
		say_output(ui, r, failed, verbose);
}

void
ui_step_end(struct ui *ui, const struct step *s, size_t total,
    const struct step_result *r)
{
	struct event e;
	bool failed = r->status == STEP_FAILED || r->status == STEP_INTERRUPTED;

	say(ui, failed, status_color(r->status),
	    "[%*zu/%zu] %-11s %6.2fs  %s%s%s\n", total >= 10 ? 2 : 1,
	    s->index + 1, total, step_status_name(r->status),
	    (double)r->duration_ms / 1000.0, s->name,
	    r->skip_reason ? "  # " : "", r->skip_reason ? r->skip_reason : "");
	step_details(ui, r);
	event_begin(&e, "step_end");
	json_member_uint(&e.j, "index", s->index);
	event_str(ui, &e, "name", s->name);
	event_str(ui, &e, "kind", s->kind->name);
	event_str(ui, &e, "status", step_status_name(r->status));
	json_member_bool(&e.j, "changed", r->changed);
	json_member_uint(&e.j, "attempts", r->attempts);
	json_member_uint(&e.j, "duration_ms", r->duration_ms);
	if (failed)
		event_str(ui, &e, "error", r->err.msg);
	event_end(ui, &e);
}

void
ui_notice(struct ui *ui, const char *fmt, ...)
{
	struct event e;
	struct buf msg;
	va_list ap;

	buf_init(&msg, 1u << 20);
	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	say(ui, false, C_YELLOW, "        %s\n", msg.data);
	event_begin(&e, "notice");
	event_str(ui, &e, "message", msg.data);
	event_end(ui, &e);
	buf_release(&msg);
}

void
ui_progress(struct ui *ui, const char *what, size_t done, size_t total,
    uint64_t bytes, uint64_t total_bytes)
{
	const int width = 24;
	int filled;

	if (ui == NULL || !ui->tty || ui->opts.verbosity < 0)
		return;
	filled =
	    total_bytes > 0
	        ? (int)((double)bytes / (double)total_bytes * width)
	        : (total > 0 ? (int)((double)done / (double)total * width) : 0);
	if (filled > width)
		filled = width;
	fprintf(ui->human,
	    "\r\033[K        %s [%.*s%*s] %zu/%zu paths, "
	    "%.1f/%.1f MiB",
	    what, filled, "########################", width - filled, "", done,
	    total, (double)bytes / (1 << 20), (double)total_bytes / (1 << 20));
	fflush(ui->human);
	ui->running_shown = true;
}

void
ui_run_end(struct ui *ui, const struct manifest *m,
    const struct step_result *results, const char *status, uint64_t duration_ms,
    const struct errbuf *run_err)
{
	size_t count[STEP_NOT_RUN + 1] = { 0 };
	struct event e;
	bool ok = strcmp(status, "passed") == 0;

	for (size_t i = 0; i < m->nsteps; i++)
		count[results[i].status]++;
	/* main.c prints the run's error to stderr; the log keeps a copy. */
	if (run_err->code != SH_OK) {
		struct buf l;

		buf_init(&l, sizeof(run_err->msg) + 64);
		buf_addf(&l, "stagehand: %s\n", run_err->msg);
		emit(ui, ui->log, l.data, l.len);
		buf_release(&l);
	}
	say(ui, true, ok ? C_GREEN : C_RED,
	    "%s: %s - %zu ok, %zu %s, %zu failed, %zu skipped, %zu not run "
	    "(%.1fs)\n",
	    m->stage, status, count[STEP_OK],
	    count[STEP_CHANGED] + count[STEP_WOULD_CHANGE],
	    count[STEP_WOULD_CHANGE] ? "would change" : "changed",
	    count[STEP_FAILED] + count[STEP_INTERRUPTED], count[STEP_SKIPPED],
	    count[STEP_NOT_RUN], (double)duration_ms / 1000.0);
	event_begin(&e, "run_end");
	event_str(ui, &e, "status", status);
	json_member_uint(&e.j, "ok", count[STEP_OK]);
	json_member_uint(&e.j, "changed", count[STEP_CHANGED]);
	json_member_uint(&e.j, "would_change", count[STEP_WOULD_CHANGE]);
	json_member_uint(&e.j, "failed", count[STEP_FAILED]);
	json_member_uint(&e.j, "skipped", count[STEP_SKIPPED]);
	json_member_uint(&e.j, "not_run", count[STEP_NOT_RUN]);
	json_member_uint(&e.j, "duration_ms", duration_ms);
	if (run_err->code != SH_OK)
		event_str(ui, &e, "error", run_err->msg);
	event_end(ui, &e);
}
