/*
 * steps/stepsh.h: pieces shared by the file-system step kinds (upload,
 * download, path, line): sh script building, the owner/group/mode fields,
 * and the "C <text>" change-line protocol.
 *
 * Scripts for the target are POSIX sh + coreutils. They are built into a
 * struct buf (max REMOTE_SCRIPT_MAX) and sent on stdin by remote_run();
 * every interpolated value goes through sh_quote(), never bare.
 *
 * Protocol: a script prints one line "C <text>" on stdout per change it
 * made (apply) or would make (probe); stepsh_changes() turns them into
 * res->changes and sets res->changed. Any other stdout line is ignored.
 * Failures print a message on stderr and exit non-zero (remote_step()
 * turns that into SH_ERR_REMOTE "exit N: <last stderr line>").
 *
 * stepsh_begin() emits `set -u`, A=1 (apply) or A=0 (probe) and the
 * helper functions:
 *   C TEXT...               print a change line
 *   X CMD...                run CMD only when A=1 (every mutation goes
 *                           through X, which keeps probe read-only)
 *   die MSG                 message on stderr, exit 1
 *   attrs PATH MODE OWNER GROUP NOFOLLOW
 *                           compare PATH's attributes with the wanted ones
 *                           (empty: leave as is), print a change line per
 *                           difference and, when applying, fix them. Owner
 *                           and group match by name or number. NOFOLLOW=1
 *                           works on a symlink itself (chown -h).
 *   newattrs PATH MODE OWNER GROUP
 *                           the change lines attrs would print for a file
 *                           that does not exist yet (probe of a create)
 */
#ifndef STAGEHAND_STEPSH_H
#define STAGEHAND_STEPSH_H

#include <stdbool.h>

#include "step.h"

struct run_ctx;
struct remote_cmd;
struct remote_out;

/* owner/group/mode of a file: NULL / !mode_set mean "leave as is". */
struct stepsh_attrs {
	const char *owner; /* borrowed from the manifest tree */
	const char *group; /* borrowed */
	unsigned mode;
	bool mode_set;
};

/* Reads optional `owner`, `group`, `mode` from map; validates names. */
int stepsh_parse_attrs(
    const struct node *map, struct stepsh_attrs *a, struct errbuf *err);
/* Requires an absolute path without NUL or newline in map[key]. */
int stepsh_abs_path(const struct node *map, const char *key, const char **out,
    struct errbuf *err);

/* Appends the preamble and helper functions (see above). */
int stepsh_begin(struct buf *b, bool apply);
/* Appends NAME='value'\n. */
int stepsh_assign(struct buf *b, const char *name, const char *value);
/* Appends M='755' O='root' G='' (empty = leave) as assignments. */
int stepsh_assign_attrs(struct buf *b, const struct stepsh_attrs *a);

/* Parses "C <text>" lines of out into res; returns how many. */
size_t stepsh_changes(struct step_result *res, const struct buf *out);

/* Appends " (0644 root:root)"-style text; nothing when all are unset. */
void stepsh_describe_attrs(struct buf *out, const struct stepsh_attrs *a);

/*
 * sha256 of a local regular file as 64 lowercase hex digits into hex
 * (appended). *size receives the file's size. libsodium, streamed.
 */
int stepsh_sha256_file(
    const char *path, struct buf *hex, uint64_t *size, struct errbuf *err);
/* The same for a memory block. */
void stepsh_sha256_mem(const void *p, size_t len, struct buf *hex);

/*
 * Like remote_step() (the step's become and timeout; a non-zero exit is
 * SH_ERR_REMOTE "exit N: <last stderr line>") but only stderr goes into
 * res->output: for scripts whose stdout is data, not text.
 */
int stepsh_exec(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct remote_out *out, struct step_result *res,
    struct errbuf *err);
/* The last non-empty line of b (at most 300 bytes, control characters
 * replaced by '?') appended to line. */
void stepsh_last_line(const struct buf *b, struct buf *line);

/* Runs script with stepsh_exec() and parses its change lines into res. */
int stepsh_run(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, struct step_result *res, struct errbuf *err);

#endif
