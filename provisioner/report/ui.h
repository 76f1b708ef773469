/*
 * ui.h: what a person (or a machine, with --json) sees while a run goes.
 *
 * One line per step when it ends, as Ansible's profile_tasks shows them:
 *
 *   [ 3/12] changed    0.12s  Create the postgres user
 *   [ 4/12] failed     1.02s  Run migrations
 *           exit 3: relation "x" does not exist
 *
 * On a TTY the line of the running step is shown while it runs and colour
 * is used unless NO_COLOR is set. -q keeps failures and the closing line;
 * -v adds each step's change lines and output. With --json, NDJSON events
 * go to stdout (run_start, step_start, step_end, notice, run_end) and the
 * human lines go to stderr.
 *
 * run.log receives the human lines at -v detail, without colour, through
 * the redactor. It is written to DIR/run.log.tmp during the run and renamed
 * to DIR/run.log by ui_close_log(), so a report dir never holds half a log
 * under the final name.
 *
 * Ownership: ui_new() returns a struct the caller frees with ui_free();
 * the redactor is borrowed and must outlive it.
 */
#ifndef STAGEHAND_UI_H
#define STAGEHAND_UI_H

#include <stdbool.h>
#include <stdint.h>

#include "model/manifest.h"
#include "model/result.h"
#include "util/redact.h"
#include "util/util.h"

struct ui_opts {
	int verbosity; /* -1 quiet, 0 normal, 1 verbose */
	bool json;
};

struct ui;

struct ui *ui_new(const struct ui_opts *opts, const struct redact *redact);
int ui_open_log(struct ui *ui, const char *dir, struct errbuf *err);
int ui_close_log(struct ui *ui, struct errbuf *err);
void ui_free(struct ui *ui);

void ui_run_start(struct ui *ui, const char *command, const struct manifest *m,
    const char *target);
void ui_step_start(struct ui *ui, const struct step *s, size_t total);
void ui_step_end(struct ui *ui, const struct step *s, size_t total,
    const struct step_result *r);
void ui_notice(struct ui *ui, const char *fmt, ...) ATTR_PRINTF(2, 3);
/*
 * A progress line for a long transfer (closure copies): redrawn in place
 * on a terminal, ignored otherwise (no log, no NDJSON), so it costs
 * nothing in CI. done/total are counts (paths), bytes/total_bytes sizes.
 */
void ui_progress(struct ui *ui, const char *what, size_t done, size_t total,
    uint64_t bytes, uint64_t total_bytes);
void ui_run_end(struct ui *ui, const struct manifest *m,
    const struct step_result *results, const char *status, uint64_t duration_ms,
    const struct errbuf *run_err);

#endif
