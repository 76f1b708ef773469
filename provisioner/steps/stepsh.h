/*
 * steps/stepsh.h: pieces shared by the step kinds that run generated sh
 * scripts (upload, download, path, line, closure, shell, service; user, group,
 * alias): sh script building, the owner/group/mode fields, account names
 * and `state`, the scripts' stdout protocols, and a few local helpers.
 *
 * Scripts for the target are POSIX sh + coreutils. They are built into a
 * struct buf (max REMOTE_SCRIPT_MAX) and sent on stdin by remote_run();
 * every interpolated value goes through sh_quote(), never bare. Failures
 * print a message on stderr and exit non-zero (stepsh_remote() turns that
 * into SH_ERR_REMOTE "exit N: <last stderr line>").
 *
 * Two stdout protocols, one parser:
 *   "C <text>"        the file-system scripts (stepsh_begin's C helper):
 *                     one line per change made (apply) or that would be
 *                     made (probe). Their stdout is protocol only, so it
 *                     stays out of res->output (stepsh_exec, stepsh_run);
 *                     stepsh_changes() parses it.
 *   "+ <text>"        user, group and alias: a change, as above, and
 *   "= KEY VALUE"     a detail. stdout and stderr both go into res->output
 *                     (stepsh_run_plus()).
 * Any other stdout line is ignored; a line ends at a newline or a NUL.
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
 *   sweep DIR               remove the .stagehand.XXXXXX temp files a
 *                           killed run left in DIR
 */
#ifndef STAGEHAND_STEPSH_H
#define STAGEHAND_STEPSH_H

#include <stdbool.h>
#include <sys/types.h>

#include "model/kind.h"
#include "target/remote.h"

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
/* A local path as a manifest file wrote it: a relative one is resolved
 * against the directory of that file (file: the node's, may be NULL).
 * Caller frees. */
char *stepsh_local_path(const char *file, const char *path);
/* Requires an absolute path without NUL or newline in map[key]. */
int stepsh_abs_path(const struct node *map, const char *key, const char **out,
    struct errbuf *err);

/* Appends the preamble and helper functions (see above). */
int stepsh_begin(struct buf *b, enum step_mode mode);
/* Appends NAME='value'\n. */
int stepsh_assign(struct buf *b, const char *name, const char *value);
/* Appends M='755' O='root' G='' (empty = leave) as assignments. */
int stepsh_assign_attrs(struct buf *b, const struct stepsh_attrs *a);
/*
 * Appends the traps of a script that makes temp files: on EXIT, and on
 * TERM, HUP, INT (then exit 143) and PIPE (exit 141), it ignores those
 * four signals and runs the shell function `fin`, which removes what an
 * interrupted run would leave. This defines `fin` as doing nothing; the
 * script redefines it (after this) once it has something to remove. fin
 * must be safe to run twice, and at any point of the script.
 */
int stepsh_traps(struct buf *b);

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
/* The same for the bytes of fd from its current offset to EOF (left at
 * EOF; the caller rewinds and closes). *size: the bytes hashed. name is
 * for the error message (SH_ERR_IO "NAME: <strerror>"). */
int stepsh_sha256_fd(int fd, const char *name, struct buf *hex, uint64_t *size,
    struct errbuf *err);
/* p[0..len) is a sha256 as sha256sum prints it: exactly 64 lowercase hex
 * digits. Pure; for manifest values (upload's sha256). */
bool stepsh_sha256_hex_ok(const char *p, size_t len);

/*
 * Runs cmd with the step's become and timeout,
 * appends output to res->output, and turns a non-zero exit status into
 * SH_ERR_REMOTE with "exit N: <last stderr line>" (remote_fail()). Kinds
 * that give exit statuses their own meaning call remote_run() instead.
 *
 * cmd->stdout_is_protocol false: stdout and stderr both go into
 * res->output, and a command killed by a signal is "killed by a signal".
 * true (scripts whose stdout is data or a line protocol for the kind, not
 * text for people): only stderr goes into res->output, and, stderr being
 * the only diagnostic, a signal is "killed by a signal: <last stderr
 * line>" too. Either way out keeps both streams for the caller.
 */
int stepsh_remote(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct remote_out *out, struct step_result *res,
    struct errbuf *err);

/*
 * stepsh_remote() with cmd->stdout_is_protocol set: the step's become and
 * timeout, a non-zero exit is SH_ERR_REMOTE "exit N: <last stderr line>",
 * and only stderr goes into res->output (stdout is data or "C" lines).
 */
int stepsh_exec(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct remote_out *out, struct step_result *res,
    struct errbuf *err);

/* Runs cmd with stepsh_exec() and, when it succeeded, parses its "C"
 * change lines into res. */
int stepsh_run_cmd(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct step_result *res, struct errbuf *err);
/* stepsh_run_cmd() of script alone (no payload). */
int stepsh_run(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, struct step_result *res, struct errbuf *err);

/*
 * Runs script with stepsh_remote() (stdout and stderr into res->output) and
 * parses its "+" change and "=" detail lines into res, also when it failed
 * (what it changed before failing is reported). out is (re)initialised
 * here and holds the output afterwards, for the caller's own reading of
 * status and stderr; caller frees it with remote_out_free(), always.
 */
int stepsh_run_plus(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, struct remote_out *out, struct step_result *res,
    struct errbuf *err);

/* ---- accounts (user, group, alias) ---- */

#define STEPSH_ACCOUNT_NAME_MAX 32
#define STEPSH_ID_MAX 4294967294u /* (uid_t)-1 is "no id" */

/* [a-z_][a-z0-9_-]*$? of at most 32 bytes (useradd's default NAME_REGEX). */
bool stepsh_account_name_ok(const char *s);
/* A uid or gid: decimal, 0..STEPSH_ID_MAX. */
bool stepsh_account_id_ok(const char *s);
/* Optional `state`: present (default, *absent = false) or absent;
 * anything else is "state must be present or absent, not '...'". */
int stepsh_parse_state(
    const struct node *body, bool *absent, struct errbuf *err);

/* ---- local helpers (upload, download) ---- */

/* Fills names (empty on entry) with the names in dir except . and ..,
 * sorted by strcmp; SH_ERR_IO "DIR: <strerror>" when dir cannot be
 * opened. */
int stepsh_list_dir(const char *dir, struct strlist *names, struct errbuf *err);
/* Waits for child pid; -1 with SH_ERR_IO "WHAT failed (status N)" unless
 * it exited 0 (N is -1 when it did not exit). */
int stepsh_reap(pid_t pid, const char *what, struct errbuf *err);

#endif
