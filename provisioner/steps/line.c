/*
 * steps/line.c: the `line` step kind: ensure one line in a text file, or
 * its absence (postgresql.conf, .env edits).
 *
 * Manifest fields:
 *   path      required, absolute; a symlink is followed (the file it points
 *             to is edited, the link stays)
 *   line      the whole line (no newline); required for state present
 *   regexp    POSIX ERE (checked offline with regcomp)
 *   state     present (default) | absent
 *   create    bool, default false: create a missing file (mode default
 *             0644) instead of failing
 *   owner, group, mode   ensured on the file whenever given
 *   backup    bool: before changing a file keep a copy PATH.bak.YYYYmmddHHMMSS
 *
 * Semantics (as Ansible's lineinfile):
 *   present + regexp: the last line matching regexp becomes `line`; when no
 *     line matches, `line` is appended unless an identical line exists.
 *   present, no regexp: `line` is appended unless an identical line exists.
 *   absent: every line matching regexp (or, without regexp, equal to
 *     `line`) is removed; a missing file is fine.
 * Lines compare as strings (never as numbers).
 *
 * Mechanics: one round trip. awk (POSIX; mawk on Debian) reads the file and
 * prints one "C ..." change line per edit; line and regexp reach it through
 * its environment (ENVIRON), set by the script from sh_quote()d
 * assignments, so quotes, backslashes, &, / and $ are taken literally.
 * When something changes the new text goes to a temp file in the same
 * directory, takes the old file's mode and owner (chmod/chown
 * --reference) and replaces it with mv (atomic). A file whose logical
 * content already matches is not rewritten, even when its last line lacks
 * a newline, so a second apply reports ok. Probe runs the same awk with
 * its output sent to /dev/null and changes nothing. STEP_RETRY_SAFE.
 *
 * Change lines do not quote the line itself (it may carry a secret):
 * "replace line 12 of /etc/x", "append to /etc/x", "remove 2 lines from
 * /etc/x", "create /etc/x", "backup /etc/x.bak.20260101120000".
 */
#include <regex.h>
#include <string.h>

#include "steps/stepsh.h"
#include "util/limits.h"

struct line_cfg {
	const char *path;   /* borrowed */
	const char *line;   /* borrowed; may be NULL for absent */
	const char *regexp; /* borrowed; NULL: exact match */
	bool absent;
	bool create;
	bool backup;
	struct stepsh_attrs attrs;
};

static const char *const line_keys[] = {
	"path",
	"line",
	"regexp",
	"state",
	"create",
	"backup",
	"owner",
	"group",
	"mode",
	NULL,
};

static int
line_parse_state(const struct node *body, bool *absent, struct errbuf *err)
{
	const char *s = NULL;

	*absent = false;
	if (node_opt_str(body, "state", &s, err) < 0)
		return -1;
	if (s == NULL || strcmp(s, "present") == 0)
		return 0;
	if (strcmp(s, "absent") == 0) {
		*absent = true;
		return 0;
	}
	return node_err(err, node_get(body, "state"),
	    "state: expected present or absent, got '%s'", s);
}

static int
line_check_regexp(const struct node *body, const char *re, struct errbuf *err)
{
	const struct node *n = node_get(body, "regexp");
	regex_t rx;
	int rc;

	if (re[0] == '\0' || strlen(re) != n->len || strchr(re, '\n'))
		return node_err(
		    err, n, "regexp: must be non-empty, one line, without NUL");
	rc = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char msg[128];

		(void)regerror(rc, &rx, msg, sizeof(msg));
		return node_err(err, n, "regexp: %s", msg);
	}
	regfree(&rx);
	return 0;
}

static int
line_check(
    const struct node *body, const struct line_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "line");

	if (c->line == NULL && (!c->absent || c->regexp == NULL))
		return node_err(err, body,
		    c->absent ? "state absent needs line or regexp"
		              : "line is required");
	if (c->line != NULL &&
	    (strlen(c->line) != n->len || strchr(c->line, '\n')))
		return node_err(err, n,
		    "line: must not contain a newline "
		    "or NUL");
	if (c->regexp != NULL && line_check_regexp(body, c->regexp, err) < 0)
		return -1;
	if (c->absent && c->create)
		return node_err(err, node_get(body, "create"),
		    "create makes no sense with state absent");
	return 0;
}

static int
line_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct line_cfg *c = cfg;

	if (stepsh_abs_path(body, "path", &c->path, err) < 0 ||
	    node_opt_str(body, "line", &c->line, err) < 0 ||
	    node_opt_str(body, "regexp", &c->regexp, err) < 0 ||
	    line_parse_state(body, &c->absent, err) < 0 ||
	    node_opt_bool(body, "create", &c->create, err) < 0 ||
	    node_opt_bool(body, "backup", &c->backup, err) < 0 ||
	    stepsh_parse_attrs(body, &c->attrs, err) < 0)
		return -1;
	return line_check(body, c, err);
}

/*
 * The edit, in POSIX awk. Environment: SH_LINE, SH_RE, SH_HASRE (1 when a
 * regexp is given), SH_ABSENT (1), SH_OUT (where the new text goes),
 * SH_PATH (for messages). Prints the change lines on stdout.
 */
static const char line_awk[] =
    "BEGIN { L = ENVIRON[\"SH_LINE\"] \"\"; re = ENVIRON[\"SH_RE\"] \"\";"
    " hasre = ENVIRON[\"SH_HASRE\"] == \"1\";"
    " absent = ENVIRON[\"SH_ABSENT\"] == \"1\";"
    " out = ENVIRON[\"SH_OUT\"]; p = ENVIRON[\"SH_PATH\"]; n = 0 }\n"
    "{ a[++n] = $0 }\n"
    "function hit(s) { return hasre ? (s ~ re) : ((s \"\") == L) }\n"
    "END {\n"
    "  if (absent) {\n"
    "    k = 0\n"
    "    for (i = 1; i <= n; i++) if (hit(a[i])) k++; else print a[i] > out\n"
    "    if (k) print \"C remove \" k \" line\" (k > 1 ? \"s\" : \"\") "
    "\" from \" p\n"
    "    exit 0\n"
    "  }\n"
    "  last = 0; same = 0\n"
    "  for (i = 1; i <= n; i++) {\n"
    "    if (hasre && a[i] ~ re) last = i\n"
    "    if ((a[i] \"\") == L) same = i\n"
    "  }\n"
    "  if (last && (a[last] \"\") != L) {\n"
    "    a[last] = L; print \"C replace line \" last \" of \" p\n"
    "  } else if (!last && !same) {\n"
    "    a[++n] = L; print \"C append to \" p\n"
    "  }\n"
    "  for (i = 1; i <= n; i++) print a[i] > out\n"
    "}\n";

/* Inputs: P L R HR AB CR BK M O G; AWK (the program above). */
static const char line_sh[] =
    "edit() {\n"
    "\tSH_LINE=$L SH_RE=$R SH_HASRE=$HR SH_ABSENT=$AB SH_OUT=$1 "
    "SH_PATH=$P awk \"$AWK\" < \"$P\"\n"
    "}\n"
    "if [ ! -e \"$P\" ]; then\n"
    "\t[ \"$AB\" = 1 ] && exit 0\n"
    "\tif [ \"$CR\" != 1 ]; then\n"
    "\t\t[ \"$A\" = 1 ] && die \"$P does not exist (create: true makes it)\"\n"
    "\t\tC \"$P does not exist yet (create: false)\"; exit 0\n"
    "\tfi\n"
    "\tC \"create $P\"\n"
    "\t[ \"$A\" = 1 ] || exit 0\n"
    /* fin (stepsh_traps) sweeps: $t may not be set yet when a TERM
     * comes. Only when applying: plan writes nothing. */
    "\tfin() { sweep \"${P%/*}\"; }\n"
    "\tsweep \"${P%/*}\"\n"
    "\tt=$(mktemp \"${P%/*}/.stagehand.XXXXXX\") || exit 1\n"
    "\tprintf '%s\\n' \"$L\" > \"$t\" || exit 1\n"
    "\t[ -z \"$O\" ] || chown -- \"$O\" \"$t\" || exit 1\n"
    "\t[ -z \"$G\" ] || chgrp -- \"$G\" \"$t\" || exit 1\n"
    "\tchmod -- \"${M:-644}\" \"$t\" && sync -- \"$t\" && "
    "mv -f -- \"$t\" \"$P\" && sync -- \"${P%/*}\" || exit 1\n"
    "\texit 0\n"
    "fi\n"
    "P=$(readlink -f -- \"$P\") || exit 1\n"
    "[ -f \"$P\" ] || die \"$P is not a regular file\"\n"
    "if [ \"$A\" = 1 ]; then\n"
    "\tfin() { sweep \"${P%/*}\"; }\n"
    "\tsweep \"${P%/*}\"\n"
    "\tt=$(mktemp \"${P%/*}/.stagehand.XXXXXX\") || exit 1\n"
    "\td=$(edit \"$t\") || die \"awk failed on $P\"\n"
    "else\n"
    "\td=$(edit /dev/null) || die \"awk failed on $P\"\n"
    "fi\n"
    "if [ -n \"$d\" ]; then\n"
    "\tprintf '%s\\n' \"$d\"\n"
    "\tif [ \"$A\" = 1 ]; then\n"
    "\t\tchown --reference=\"$P\" -- \"$t\" && "
    "chmod --reference=\"$P\" -- \"$t\" || exit 1\n"
    "\t\tif [ \"$BK\" = 1 ]; then\n"
    "\t\t\tb=\"$P.bak.$(date +%Y%m%d%H%M%S)\"\n"
    "\t\t\tcp -p -- \"$P\" \"$b\" || exit 1\n"
    "\t\t\tC \"backup $b\"\n"
    "\t\tfi\n"
    "\t\tsync -- \"$t\" && mv -f -- \"$t\" \"$P\" && "
    "sync -- \"${P%/*}\" || exit 1\n"
    "\tfi\n"
    "fi\n"
    "attrs \"$P\" \"$M\" \"$O\" \"$G\" 0\n";

static int
line_script(const struct line_cfg *c, enum step_mode mode, struct buf *b)
{
	if (stepsh_begin(b, mode) < 0 || stepsh_assign(b, "P", c->path) < 0 ||
	    stepsh_assign(b, "L", c->line ? c->line : "") < 0 ||
	    stepsh_assign(b, "R", c->regexp ? c->regexp : "") < 0 ||
	    stepsh_assign(b, "AWK", line_awk) < 0 ||
	    stepsh_assign_attrs(b, &c->attrs) < 0)
		return -1;
	if (buf_addf(b, "HR=%d AB=%d CR=%d BK=%d\n", c->regexp ? 1 : 0,
	        c->absent ? 1 : 0, c->create ? 1 : 0, c->backup ? 1 : 0) < 0)
		return -1;
	if (stepsh_traps(b) < 0)
		return -1;
	return buf_adds(b, line_sh);
}

static int
line_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	struct buf script;
	int rc;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (line_script(step->cfg, mode, &script) < 0) {
		buf_release(&script);
		return err_set(err, SH_ERR_INTERNAL, "line: script too long");
	}
	rc = stepsh_run(ctx, step, &script, res, err);
	buf_release(&script); /* wiped: the line may hold a secret */
	return rc;
}

static void
line_describe(const struct step *step, struct buf *out)
{
	const struct line_cfg *c = step->cfg;

	buf_addf(out, "line %s %s", c->path, c->absent ? "absent" : "present");
	if (c->line != NULL) {
		buf_adds(out, " ");
		(void)sh_quote(out, c->line);
	}
	if (c->regexp != NULL) {
		buf_adds(out, " regexp ");
		(void)sh_quote(out, c->regexp);
	}
	stepsh_describe_attrs(out, &c->attrs);
}

const struct step_kind step_kind_line = {
	.name = "line",
	.flags = STEP_RETRY_SAFE,
	.keys = line_keys,
	.cfg_size = sizeof(struct line_cfg),
	.parse = line_parse,
	.run = line_run,
	.describe = line_describe,
};
