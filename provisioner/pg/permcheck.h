/*
 * permcheck.h: the permission audit's rules, apart from any transport.
 *
 * The `permissions` step kind (steps/permissions.c) replaces the image
 * build's osquery check (reference/supabase-two-stage.md §1.5). It sends
 * the one script permcheck_script() writes, which dumps the facts in one
 * round trip; everything else happens here, on the controller, and is
 * pure (no I/O), so the rules are unit-tested (tests/unit/test_permcheck.c).
 *
 * Call order:
 *   1. fill a struct permcheck_spec (the step's parse does);
 *   2. permcheck_script(spec, &script): the sh script (POSIX sh, getent,
 *      awk, stat, tr) for the target;
 *   3. permcheck_facts_parse(spec, stdout, len, &facts, err) on its stdout;
 *   4. permcheck_evaluate(spec, &facts, &rows): one row per check, in spec
 *      order: users, patterns, paths, absent;
 *   5. permcheck_summary(&rows, &msg) when rows.failed > 0;
 *   6. permcheck_rows_free, permcheck_facts_free, permcheck_spec_free.
 *
 * A user's groups are what getgrouplist(3) (and so `id -Gn USER` and
 * osquery's user_groups table) gives: first the primary group (the first
 * /etc/group entry with the passwd gid; its number when there is none),
 * then every group that lists the user as a member, in `getent group`
 * order (for the files backend, /etc/group line order), skipping gids
 * already listed. The first passwd entry of a name counts, as for
 * getpwnam(3). Order-insensitive comparison (the default) compares the
 * two lists as sets; exact order compares them element by element.
 *
 * Paths are examined as lstat(2) sees them: a symlink is never followed,
 * so `type: link` checks the link itself and owner/group/mode of a link
 * are the link's own. owner/group match by name or by number. Absent
 * entries are sh glob patterns (a literal path is a pattern matching
 * itself); any existing match, a dangling symlink included, fails the row.
 *
 * Return convention: 0 or -1 with err filled (SH_ERR_REMOTE: the dump is
 * not what the script prints, e.g. truncated). Out-parameters are cleared
 * on entry; on -1 they hold nothing to use (but must still be freed).
 */
#ifndef STAGEHAND_PERMCHECK_H
#define STAGEHAND_PERMCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

enum permcheck_type {
	PERMCHECK_ANY = 0, /* not checked */
	PERMCHECK_FILE,    /* a regular file */
	PERMCHECK_DIR,
	PERMCHECK_LINK,
};

/* "file", "directory", "link"; NULL for PERMCHECK_ANY. */
const char *permcheck_type_name(enum permcheck_type t);

/* ---- what to check (strings borrowed, e.g. from the manifest) ---- */

struct permcheck_user {
	const char *name;
	struct strlist groups; /* owned; no duplicates; not empty */
};

struct permcheck_pattern {
	const char *glob;    /* fnmatch(3) pattern over user names */
	struct strlist only; /* owned; the groups matching users may be in */
};

struct permcheck_path {
	const char *path;  /* absolute, no newline */
	const char *owner; /* NULL: not checked; a name or a uid */
	const char *group; /* NULL: not checked; a name or a gid */
	unsigned mode;     /* permission bits, 07777 */
	bool mode_set;
	enum permcheck_type type;
};

struct permcheck_spec {
	struct permcheck_user *users; /* owned array */
	size_t nusers;
	struct permcheck_pattern *patterns; /* owned array */
	size_t npatterns;
	struct permcheck_path *paths; /* owned array */
	size_t npaths;
	struct strlist absent; /* owned: glob patterns of absolute paths */
	bool exact_order;      /* compare group lists in order */
	bool skip_missing;     /* a listed user that does not exist: skip */
};

void permcheck_spec_free(struct permcheck_spec *s);

/* Appends the audit script for spec to out; -1 when out's max is hit. */
int permcheck_script(const struct permcheck_spec *s, struct buf *out);

/* ---- what the target has (parsed from the script's stdout) ---- */

struct permcheck_account {
	char *name;             /* owned */
	uint64_t id;            /* uid or gid */
	uint64_t gid;           /* users: the primary gid */
	struct strlist members; /* owned; groups: the member list */
};

struct permcheck_stat {
	bool exists;
	char *type;    /* owned: stat's %F ("directory", "symbolic link"...) */
	unsigned mode; /* permission bits */
	uint64_t uid, gid;
	char *user;  /* owned: the owner's name, or "UNKNOWN" */
	char *group; /* owned */
};

struct permcheck_facts {
	struct permcheck_account *users; /* owned, getent passwd order */
	size_t nusers;
	struct permcheck_account *groups; /* owned, getent group order */
	size_t ngroups;
	struct permcheck_stat *stats; /* owned; one per spec path */
	struct strlist *matches;      /* owned; one list per spec absent */
	size_t npaths, nabsent;
};

int permcheck_facts_parse(const struct permcheck_spec *s, const char *p,
    size_t len, struct permcheck_facts *f, struct errbuf *err);
void permcheck_facts_free(struct permcheck_facts *f);

/*
 * The user's groups in getgrouplist order (see above) into out (emptied
 * first). false when the user does not exist (out stays empty).
 */
bool permcheck_user_groups(
    const struct permcheck_facts *f, const char *user, struct strlist *out);
/* want vs got, as sets or (exact) as sequences. */
bool permcheck_groups_equal(
    const struct strlist *want, const struct strlist *got, bool exact);

/* ---- the verdict ---- */

struct permcheck_row {
	char *name;    /* owned: the test name ("user postgres: postgres") */
	char *subject; /* owned: "user postgres", for the summary */
	bool passed;
	bool skipped;
	char *message; /* owned; NULL when passed */
};

struct permcheck_rows {
	struct permcheck_row *v; /* owned */
	size_t n;
	size_t failed;
	size_t skipped;
};

/* Appends one row per check of s to rows (zeroed by the caller). */
void permcheck_evaluate(const struct permcheck_spec *s,
    const struct permcheck_facts *f, struct permcheck_rows *rows);
void permcheck_rows_free(struct permcheck_rows *rows);

/*
 * "3 of 37 permission rows failed: user wal-g: expected [wal-g postgres],
 * got [wal-g]; ..." into out: the first failures, as many as fit in
 * about max bytes, then "; and N more".
 */
void permcheck_summary(
    const struct permcheck_rows *rows, size_t max, struct buf *out);

#endif
