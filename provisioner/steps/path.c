/*
 * steps/path.c: the `path` step kind: a directory, a file's attributes, a
 * symlink, or absence.
 *
 * Manifest fields:
 *   path       required, absolute
 *   state      directory (default) | file | touch | link | absent
 *                directory  mkdir -p when missing; fails when something
 *                           else is there
 *                file       the file must already exist (fails when
 *                           missing or a directory); only its attributes
 *                           are managed
 *                touch      create an empty file when missing; an existing
 *                           file is left alone (no mtime update, so a
 *                           second run is `ok`)
 *                link       a symlink to `target` (required); replaced
 *                           atomically (ln -s + mv -T) when missing or
 *                           pointing elsewhere; never replaces a directory
 *                absent     rm -rf when present; `/` is refused
 *   owner, group   name or number; mode (octal, not for link/absent)
 *   recursive  bool (directory only): owner/group also for everything
 *              below path (chown -R -h, so links inside are not followed)
 *   follow     bool, default true: false manages a symlink at path itself
 *              (chown -h) rather than what it points to
 *
 * Idempotence: every attribute is compared first (stat -c) and changed only
 * when it differs; a second apply reports ok.
 *
 * probe and apply run the same script (one round trip each); every
 * mutation is behind the X helper (stepsh.h), so probe only reads. Each
 * change made or needed is one res->changes line, e.g. "create directory
 * /srv/x", "mode /srv/x: 755 -> 700". STEP_RETRY_SAFE.
 */
#include <string.h>

#include "steps/stepsh.h"
#include "util/limits.h"

enum path_state {
	PATH_DIRECTORY,
	PATH_FILE,
	PATH_TOUCH,
	PATH_LINK,
	PATH_ABSENT,
};

static const char *const path_state_names[] = {
	"directory",
	"file",
	"touch",
	"link",
	"absent",
	NULL,
};

struct path_cfg {
	const char *path;   /* borrowed */
	const char *target; /* borrowed; link only */
	enum path_state state;
	struct stepsh_attrs attrs;
	bool recursive;
	bool follow;
};

static const char *const path_keys[] = {
	"path",
	"state",
	"owner",
	"group",
	"mode",
	"recursive",
	"target",
	"follow",
	NULL,
};

static int
path_parse_state(
    const struct node *body, struct path_cfg *c, struct errbuf *err)
{
	const char *s = NULL;

	c->state = PATH_DIRECTORY;
	if (node_opt_str(body, "state", &s, err) < 0)
		return -1;
	if (s == NULL)
		return 0;
	for (size_t i = 0; path_state_names[i] != NULL; i++) {
		if (strcmp(s, path_state_names[i]) == 0) {
			c->state = (enum path_state)i;
			return 0;
		}
	}
	return node_err(err, node_get(body, "state"),
	    "state: expected directory, file, touch, link or absent, got '%s'",
	    s);
}

static bool
path_is_root(const char *p)
{
	return p[strspn(p, "/")] == '\0';
}

static int
path_check(
    const struct node *body, const struct path_cfg *c, struct errbuf *err)
{
	bool link = c->state == PATH_LINK, absent = c->state == PATH_ABSENT;

	if (link != (c->target != NULL))
		return node_err(err, link ? body : node_get(body, "target"),
		    link ? "state link needs a target"
		         : "target is only for state link");
	if (link && (c->target[0] == '\0' || strchr(c->target, '\n')))
		return node_err(err, node_get(body, "target"),
		    "target: must be non-empty, without newlines");
	if ((link || absent) && c->attrs.mode_set)
		return node_err(err, node_get(body, "mode"),
		    "mode is not supported with state %s",
		    path_state_names[c->state]);
	/* A symlink's own mode is always 777 and chmod follows it, so the
	 * step would report a change on every run. */
	if (!c->follow && c->attrs.mode_set)
		return node_err(err, node_get(body, "mode"),
		    "mode cannot be managed with follow: false (a symlink's "
		    "mode is not its own)");
	if (absent && (c->attrs.owner || c->attrs.group))
		return node_err(
		    err, body, "owner/group make no sense with state absent");
	if (c->recursive && c->state != PATH_DIRECTORY)
		return node_err(err, node_get(body, "recursive"),
		    "recursive is only for state directory");
	if (absent && path_is_root(c->path))
		return node_err(
		    err, node_get(body, "path"), "refusing to remove '/'");
	return 0;
}

static int
path_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct path_cfg *c = cfg;

	c->follow = true;
	if (stepsh_abs_path(body, "path", &c->path, err) < 0 ||
	    path_parse_state(body, c, err) < 0 ||
	    node_opt_str(body, "target", &c->target, err) < 0 ||
	    stepsh_parse_attrs(body, &c->attrs, err) < 0 ||
	    node_opt_bool(body, "recursive", &c->recursive, err) < 0 ||
	    node_opt_bool(body, "follow", &c->follow, err) < 0)
		return -1;
	return path_check(body, c, err);
}

/*
 * The target-side logic. Inputs: P S T M O G R NF (see path_script()).
 * "new" is set when the object was missing, so a probe reports the
 * attributes it would set without stat-ing a file that is not there.
 */
static const char path_sh[] =
    "new=0\n"
    "case $S in\n"
    "directory)\n"
    "\tif [ ! -d \"$P\" ]; then\n"
    "\t\t{ [ -e \"$P\" ] || [ -L \"$P\" ]; } && "
    "die \"$P exists and is not a directory\"\n"
    "\t\tC \"create directory $P\"; new=1\n"
    "\t\tX mkdir -p -- \"$P\" || exit 1\n"
    "\tfi ;;\n"
    "file)\n"
    "\tif [ ! -e \"$P\" ]; then\n"
    "\t\t[ \"$A\" = 1 ] && die \"$P does not exist\"\n"
    "\t\tC \"$P does not exist yet (state file needs it)\"; exit 0\n"
    "\tfi\n"
    "\t[ -d \"$P\" ] && die \"$P is a directory\" ;;\n"
    "touch)\n"
    "\tif [ ! -e \"$P\" ]; then\n"
    "\t\tC \"create file $P\"; new=1\n"
    "\t\tX touch -- \"$P\" || exit 1\n"
    "\telif [ -d \"$P\" ]; then die \"$P is a directory\"; fi ;;\n"
    "link)\n"
    "\tif [ ! -L \"$P\" ] || [ \"$(readlink -- \"$P\")\" != \"$T\" ]; then\n"
    "\t\t[ -d \"$P\" ] && [ ! -L \"$P\" ] && "
    "die \"$P is a directory; not replacing it with a link\"\n"
    "\t\tC \"link $P -> $T\"; new=1\n"
    "\t\tif [ \"$A\" = 1 ]; then\n"
    "\t\t\tfor l in \"${P%/*}\"/.stagehand-link.*; do\n"
    "\t\t\t\t[ -L \"$l\" ] && rm -f -- \"$l\"\n"
    "\t\t\tdone\n"
    "\t\t\tl=\"${P%/*}/.stagehand-link.$$\"\n"
    "\t\t\tln -s -- \"$T\" \"$l\" && mv -fT -- \"$l\" \"$P\" && "
    "sync -- \"${P%/*}\" || "
    "{ rm -f -- \"$l\"; exit 1; }\n"
    "\t\tfi\n"
    "\tfi\n"
    "\tNF=1 ;;\n"
    "absent)\n"
    "\tif [ -e \"$P\" ] || [ -L \"$P\" ]; then\n"
    "\t\tC \"remove $P\"; X rm -rf -- \"$P\" || exit 1\n"
    "\tfi\n"
    "\texit 0 ;;\n"
    "esac\n"
    "if [ \"$new\" = 1 ] && [ \"$A\" = 0 ]; then\n"
    "\tnewattrs \"$P\" \"$M\" \"$O\" \"$G\"; exit 0\n"
    "fi\n"
    "attrs \"$P\" \"$M\" \"$O\" \"$G\" \"$NF\"\n"
    "[ \"$R\" = 1 ] && [ -n \"$O$G\" ] || exit 0\n"
    "set --\n"
    "[ -n \"$O\" ] && set -- ! -user \"$O\"\n"
    "[ -n \"$O\" ] && [ -n \"$G\" ] && set -- \"$@\" -o\n"
    "[ -n \"$G\" ] && set -- \"$@\" ! -group \"$G\"\n"
    "n=$(find \"$P\" -mindepth 1 \\( \"$@\" \\) -print | wc -l) || exit 1\n"
    "[ \"$n\" -gt 0 ] || exit 0\n"
    "C \"owner/group of $n entries below $P -> ${O:--}:${G:--}\"\n"
    "X chown -R -h -- \"$O${G:+:$G}\" \"$P\"\n";

static int
path_script(const struct path_cfg *c, enum step_mode mode, struct buf *b)
{
	if (stepsh_begin(b, mode) < 0 || stepsh_assign(b, "P", c->path) < 0 ||
	    stepsh_assign(b, "S", path_state_names[c->state]) < 0 ||
	    stepsh_assign(b, "T", c->target ? c->target : "") < 0 ||
	    stepsh_assign_attrs(b, &c->attrs) < 0 ||
	    buf_addf(
	        b, "R=%d NF=%d\n", c->recursive ? 1 : 0, c->follow ? 0 : 1) < 0)
		return -1;
	return buf_adds(b, path_sh);
}

static int
path_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct path_cfg *c = step->cfg;
	struct buf script;
	int rc;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (path_script(c, mode, &script) < 0) {
		buf_release(&script);
		return err_set(err, SH_ERR_INTERNAL, "path: script too long");
	}
	rc = stepsh_run(ctx, step, &script, res, err);
	buf_release(&script);
	return rc;
}

static void
path_describe(const struct step *step, struct buf *out)
{
	const struct path_cfg *c = step->cfg;

	buf_addf(out, "path %s %s", c->path, path_state_names[c->state]);
	if (c->state == PATH_LINK)
		buf_addf(out, " -> %s", c->target);
	stepsh_describe_attrs(out, &c->attrs);
	if (c->recursive)
		buf_adds(out, " recursive");
}

const struct step_kind step_kind_path = {
	.name = "path",
	.flags = STEP_RETRY_SAFE,
	.keys = path_keys,
	.cfg_size = sizeof(struct path_cfg),
	.parse = path_parse,
	.run = path_run,
	.describe = path_describe,
};
