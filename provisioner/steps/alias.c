/*
 * steps/alias.c: the `alias` step kind: link every entry of a directory on
 * the target (a Nix profile's bin/, share/postgresql/extension/...) into
 * one or more Debian paths, the way Stage 2 does with ~1,000 Ansible `file`
 * tasks (reference/supabase-two-stage.md section 1.3), in ONE round trip.
 *
 * Manifest fields:
 *   src            required: absolute path of a directory on the target;
 *                  the glob "SRC/ *" is evaluated there, not here
 *   dest           required: a directory or a list of directories
 *   type           files (default) | dirs | all: which entries of src are
 *                  linked. Entries are judged by what they resolve to (in
 *                  a Nix profile every entry is a symlink into the store):
 *                  files = resolves to a non-directory (dangling links
 *                  included), dirs = resolves to a directory
 *   owner, group   name or number; set on the links themselves (chown -h)
 *                  and on dest directories this step creates
 *   create_dest    bool, default true: mkdir -p a missing dest
 *   replace_files  list of basenames or absolute paths where an existing
 *                  regular file may be replaced by the link (pg_config, or
 *                  /usr/bin/pg_config)
 *   prune          bool, default true: remove links in dest whose target
 *                  starts with "SRC/" but whose entry is gone from src
 *   link_target    via_src (default): links point to SRC/NAME, through the
 *                  profile as production does, so a new profile generation
 *                  needs no relinking; resolved: to the entry's realpath
 *                  (e.g. into /nix/store; prune cannot recognise those)
 *
 * Entries whose names start with '.' are not linked (the glob "SRC/ *"
 * does not match them either). A source entry whose name holds a control
 * character (a newline above all) fails the step: it cannot be listed safely.
 *
 * Semantics per linked entry NAME, for each dest D:
 *   D/NAME missing                  create   "linked D/NAME -> T"
 *   symlink to exactly T            nothing; if owner/group differ,
 *                                   chown -h "owner D/NAME: a:b -> c:d"
 *   symlink elsewhere               replace  "replaced link D/NAME (was
 *                                   -> OLD) -> T"
 *   regular file in replace_files   replace  "replaced regular file ..."
 *   anything else                   the step fails naming every such
 *                                   path: "refusing to replace regular
 *                                   file /usr/bin/foo (add it to
 *                                   replace_files)"
 * and stale links are pruned ("pruned D/NAME (-> OLD)"). Collisions are
 * found for every dest before anything is changed, so a failing step
 * changes nothing. Idempotence: after an apply every entry is a link with
 * the exact target and owner, so the next apply finds nothing to do.
 * Change lines come sorted by name, dest by dest, whatever the directory
 * order. Details: linked, replaced, unchanged, pruned, owner_fixed.
 *
 * How (performance: 1,000 links in one round trip, a handful of forks):
 * one `find -printf` lists src (name and resolved type), one per dest lists
 * the existing entries (type, owner, name, link target); one awk compares
 * everything. apply then, per dest, creates all new links with one
 * `ln -s -t STAGING` (names = basenames of SRC/NAME) in a staging directory
 * inside D, chowns them there, and renames them over D/NAME with one
 * `mv -t D` (rename(2) replaces a link or file atomically; an existing
 * symlink to a directory is replaced, not entered); pruning and chown -h
 * fixes are one xargs each. Resolved targets whose basename differs from
 * NAME need one `ln -s` each. probe runs the same listing and awk and
 * prints the same lines, writing nothing (not even a temp file).
 */
#include <stdlib.h>
#include <string.h>

#include "model/node.h"
#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"

enum alias_type {
	ALIAS_FILES,
	ALIAS_DIRS,
	ALIAS_ALL,
};

struct alias_cfg {
	char *src;            /* owned; normalised, no trailing '/' */
	struct strlist dests; /* owned; normalised */
	enum alias_type type;
	const char *owner; /* borrowed; NULL: not managed */
	const char *group; /* borrowed; NULL: not managed */
	bool create_dest;
	struct strlist replace; /* owned */
	bool prune;
	bool resolved;
};

static const char *const alias_keys[] = { "src", "dest", "type", "owner",
	"group", "create_dest", "replace_files", "prune", "link_target", NULL };

#define ALIAS_PATH_MAX 4096

/* ---- parse ---- */

/* A user or group: a number or a name as stepsh_account_name_ok(). */
static bool
alias_account_ok(const char *s)
{
	return stepsh_account_id_ok(s) || stepsh_account_name_ok(s);
}

static bool
alias_has_ctrl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/*
 * Checks an absolute directory path and returns a copy without trailing
 * slashes (caller frees), or NULL with err filled.
 */
static char *
alias_path(
    const struct node *at, const char *what, const char *p, struct errbuf *err)
{
	size_t len = strlen(p);

	if (p[0] != '/' || len > ALIAS_PATH_MAX || alias_has_ctrl(p)) {
		node_err(err, at,
		    "%s must be an absolute path without control "
		    "characters, at most %d bytes: '%s'",
		    what, ALIAS_PATH_MAX, p);
		return NULL;
	}
	while (len > 1 && p[len - 1] == '/')
		len--;
	if (len == 1) {
		node_err(err, at, "%s must not be /", what);
		return NULL;
	}
	return xstrndup(p, len);
}

static const struct node *
alias_item(const struct node *n, size_t i)
{
	return n->type == NODE_SEQ && i < n->n ? n->items[i] : n;
}

static int
alias_parse_dests(
    const struct node *body, struct alias_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "dest");
	struct strlist raw = { NULL, 0 };
	int rc = -1;

	if (n == NULL)
		return node_err(err, body,
		    "alias needs dest (a directory or "
		    "a list of directories)");
	if (node_opt_strlist(body, "dest", &raw, err) == -1)
		return -1;
	if (raw.n == 0) {
		node_err(err, n, "dest must name at least one directory");
		goto out;
	}
	for (size_t i = 0; i < raw.n; i++) {
		char *d = alias_path(alias_item(n, i), "dest", raw.v[i], err);

		if (d == NULL)
			goto out;
		strlist_push_owned(&c->dests, d);
		if (strcmp(d, c->src) == 0) {
			node_err(err, alias_item(n, i), "dest %s is src", d);
			goto out;
		}
		for (size_t j = 0; j + 1 < c->dests.n; j++)
			if (strcmp(c->dests.v[j], d) == 0) {
				node_err(err, alias_item(n, i),
				    "dest %s listed twice", d);
				goto out;
			}
	}
	rc = 0;
out:
	strlist_free(&raw);
	return rc;
}

static int
alias_parse_replace(
    const struct node *body, struct alias_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "replace_files");

	if (node_opt_strlist(body, "replace_files", &c->replace, err) == -1)
		return -1;
	for (size_t i = 0; i < c->replace.n; i++) {
		const char *r = c->replace.v[i];

		if (r[0] == '\0' || alias_has_ctrl(r) ||
		    strlen(r) > ALIAS_PATH_MAX ||
		    (strchr(r, '/') != NULL && r[0] != '/'))
			return node_err(err, alias_item(n, i),
			    "replace_files entries are basenames or absolute "
			    "paths, not '%s'",
			    r);
	}
	return 0;
}

/* Looks key up in a NULL-terminated list of words; default when absent. */
static int
alias_enum(const struct node *body, const char *key, const char *const *words,
    unsigned *out, struct errbuf *err)
{
	const char *v = NULL;

	if (node_opt_str(body, key, &v, err) == -1)
		return -1;
	if (v == NULL)
		return 0;
	for (unsigned i = 0; words[i] != NULL; i++)
		if (strcmp(v, words[i]) == 0) {
			*out = i;
			return 0;
		}
	return node_err(err, node_get(body, key),
	    "%s must be %s%s%s or %s, "
	    "not '%s'",
	    key, words[0], words[2] ? ", " : "", words[2] ? words[1] : "",
	    words[2] ? words[2] : words[1], v);
}

static int
alias_parse_account(const struct node *body, const char *key, const char **out,
    struct errbuf *err)
{
	if (node_opt_str(body, key, out, err) == -1)
		return -1;
	if (*out != NULL && !alias_account_ok(*out))
		return node_err(err, node_get(body, key),
		    "%s must be a name or a number, not '%s'", key, *out);
	return 0;
}

static int
alias_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	static const char *const types[] = { "files", "dirs", "all", NULL };
	static const char *const targets[] = { "via_src", "resolved", NULL };
	struct alias_cfg *c = cfg;
	const char *src = NULL;
	unsigned type = ALIAS_FILES, target = 0;

	c->create_dest = true;
	c->prune = true;
	if (node_req_str(body, "src", &src, err) == -1)
		return -1;
	c->src = alias_path(node_get(body, "src"), "src", src, err);
	if (c->src == NULL || alias_parse_dests(body, c, err) == -1 ||
	    alias_enum(body, "type", types, &type, err) == -1 ||
	    alias_enum(body, "link_target", targets, &target, err) == -1 ||
	    alias_parse_account(body, "owner", &c->owner, err) == -1 ||
	    alias_parse_account(body, "group", &c->group, err) == -1 ||
	    node_opt_bool(body, "create_dest", &c->create_dest, err) == -1 ||
	    node_opt_bool(body, "prune", &c->prune, err) == -1)
		return -1;
	c->type = (enum alias_type)type;
	c->resolved = target == 1;
	return alias_parse_replace(body, c, err);
}

static void
alias_release(void *cfg)
{
	struct alias_cfg *c = cfg;

	free(c->src);
	strlist_free(&c->dests);
	strlist_free(&c->replace);
}

/* ---- the remote script ---- */

/*
 * The comparison. Input lines (NULs of find -printf turned into newlines,
 * newlines into \001):
 *   S/TYPE/NAME                          a src entry, TYPE as find's %Y
 *   /RESOLVED                            realpath of the n-th src entry
 *   D/K/TYPE/USER/UID/GROUP/GID/NAME/TARGET   an entry of dest K
 *   E                                    a listing failed (find's message
 *                                        is on stderr)
 * Output lines KIND/K/PAYLOAD, for dest K:
 *   F  a target to link with `ln -s -t` (its basename is the NAME)
 *   W  NAME/TARGET to link one by one (resolved targets named otherwise)
 *   O  a correct link whose owner needs chown -h
 *   P  a stale link to prune
 *   C  a change line for the report ("+ TEXT")
 *   T  (K = 0) the totals ("= KEY N")
 * Exit 3 on collisions, after naming them on stderr; nothing is printed
 * on stdout then, so nothing can be acted on.
 */
static const char alias_awk[] =
    "function say(k, m) { print \"C/\" k \"/+ \" m }\n"
    "function put(kind, k, line) { print kind \"/\" k \"/\" line }\n"
    "function ownok(key) {\n"
    "  return (ou == \"\" || downer[key] == ou) && (gr == \"\" || "
    "dgroup[key] == gr)\n"
    "}\n"
    "function base(p, n) { n = split(p, B, \"/\"); return B[n] }\n"
    "function link(k, name, t) {\n"
    "  if (!resolved || base(t) == name) put(\"F\", k, t)\n"
    "  else put(\"W\", k, name \"/\" t)\n"
    "}\n"
    "function collide(k, name, key, t, p, w) {\n"
    "  t = dtype[key]; p = dest[k] \"/\" name\n"
    "  if (t == \"l\" || (t == \"f\" && ((name in rep) || (p in rep)))) "
    "return\n"
    "  if (t == \"f\") w = \"regular file \" p \" (add it to "
    "replace_files)\"\n"
    "  else w = (t == \"d\" ? \"directory \" : \"special file \") p\n"
    "  print \"refusing to replace \" w > \"/dev/stderr\"; nbad++\n"
    "}\n"
    "# Sorted reports whatever the directory order: quicksort of "
    "A[lo..hi]\n"
    "# (mawk has no asort).\n"
    "function qsort(A, lo, hi, i, last, t) {\n"
    "  if (lo >= hi) return\n"
    "  i = int((lo + hi) / 2); t = A[lo]; A[lo] = A[i]; A[i] = t; last = "
    "lo\n"
    "  for (i = lo + 1; i <= hi; i++)\n"
    "    if (A[i] < A[lo]) { t = A[++last]; A[last] = A[i]; A[i] = t }\n"
    "  t = A[lo]; A[lo] = A[last]; A[last] = t\n"
    "  qsort(A, lo, last - 1); qsort(A, last + 1, hi)\n"
    "}\n"
    "function plan(k, i, n, name, key, t, p, S) {\n"
    "  for (i = 1; i <= ns; i++) {\n"
    "    name = sname[i]; key = k SUBSEP name; t = tgt[name]; p = dest[k] "
    "\"/\" name\n"
    "    if (!(key in dtype)) {\n"
    "      link(k, name, t); say(k, \"linked \" p \" -> \" t); nlink++\n"
    "    } else if (dtype[key] == \"l\" && dtgt[key] == t) {\n"
    "      if (ownok(key)) { same++; continue }\n"
    "      put(\"O\", k, p); nown++\n"
    "      say(k, \"owner \" p \": \" downer[key] \":\" dgroup[key] \" -> \" "
    "og)\n"
    "    } else {\n"
    "      link(k, name, t); nrepl++\n"
    "      if (dtype[key] == \"l\") say(k, \"replaced link \" p \" (was -> \" "
    "dtgt[key] \") -> \" t)\n"
    "      else say(k, \"replaced regular file \" p \" -> \" t)\n"
    "    }\n"
    "  }\n"
    "  if (!prune) return\n"
    "  for (i = 1; i <= dn[k]; i++) {\n"
    "    name = dname[k, i]; key = k SUBSEP name\n"
    "    if (dtype[key] == \"l\" && !(name in all) && index(dtgt[key], pre) "
    "== 1)\n"
    "      S[++n] = name\n"
    "  }\n"
    "  qsort(S, 1, n)\n"
    "  for (i = 1; i <= n; i++) {\n"
    "    key = k SUBSEP S[i]\n"
    "    put(\"P\", k, dest[k] \"/\" S[i]); npruned++\n"
    "    say(k, \"pruned \" dest[k] \"/\" S[i] \" (-> \" dtgt[key] \")\")\n"
    "  }\n"
    "}\n"
    "BEGIN {\n"
    "  FS = \"/\"; src = ENVIRON[\"src\"]; pre = src \"/\"\n"
    "  resolved = ENVIRON[\"resolved\"] == 1; prune = ENVIRON[\"prune\"] == "
    "1\n"
    "  type = ENVIRON[\"type\"]; og = ENVIRON[\"og\"]\n"
    "  ou = ENVIRON[\"ou\"]; onum = ENVIRON[\"onum\"] == 1\n"
    "  gr = ENVIRON[\"gr\"]; gnum = ENVIRON[\"gnum\"] == 1\n"
    "  nd = ENVIRON[\"nd\"] + 0; for (k = 1; k <= nd; k++) dest[k] = "
    "ENVIRON[\"d_\" k]\n"
    "  n = split(ENVIRON[\"REP\"], R, \"\\n\"); for (i = 1; i <= n; i++) "
    "rep[R[i]] = 1\n"
    "}\n"
    "$1 == \"S\" {\n"
    "  name = substr($0, 5); all[name] = 1; order[++na] = name\n"
    "  if (substr(name, 1, 1) == \".\") next\n"
    "  if (type == \"all\" || (type == \"dirs\") == ($2 == \"d\")) "
    "sname[++ns] = name\n"
    "  next\n"
    "}\n"
    "/^\\// { rp[++nr] = $0; next }\n"
    "$1 == \"D\" {\n"
    "  k = $2; name = $8; if (name ~ /\\001/) next\n"
    "  off = 0; for (i = 1; i <= 8; i++) off += length($i) + 1\n"
    "  key = k SUBSEP name; dtype[key] = $3; dtgt[key] = substr($0, off + "
    "1)\n"
    "  downer[key] = onum ? $5 : $4; dgroup[key] = gnum ? $7 : $6\n"
    "  dname[k, ++dn[k]] = name; next\n"
    "}\n"
    "$1 == \"E\" { failed = 1 }\n"
    "END {\n"
    "  if (failed) exit 2\n"
    "  if (resolved && nr != na) { print \"source changed while it was "
    "read\" > \"/dev/stderr\"; exit 2 }\n"
    "  for (i = 1; i <= na; i++) {\n"
    "    tgt[order[i]] = resolved ? rp[i] : pre order[i]\n"
    "    if (tgt[order[i]] ~ /\\001/) { print \"newline in the target of \" "
    "pre order[i] > \"/dev/stderr\"; exit 2 }\n"
    "  }\n"
    "  for (k = 1; k <= nd; k++) for (i = 1; i <= ns; i++)\n"
    "    if ((k SUBSEP sname[i]) in dtype) collide(k, sname[i], k SUBSEP "
    "sname[i])\n"
    "  if (nbad) exit 3\n"
    "  qsort(sname, 1, ns)\n"
    "  for (k = 1; k <= nd; k++) plan(k)\n"
    "  print \"T/0/= linked \" nlink + 0; print \"T/0/= replaced \" nrepl + "
    "0\n"
    "  print \"T/0/= unchanged \" same + 0; print \"T/0/= pruned \" npruned "
    "+ 0\n"
    "  print \"T/0/= owner_fixed \" nown + 0\n"
    "}\n";

/*
 * Before this: the variables, their exports, and dests(), which calls
 * "$@" K DIR for each dest. Fails before any change when src is not a
 * directory (plan only notes it: an earlier step may create it), when a
 * src name has a control character, or a dest is not a directory.
 */
static const char alias_script_check[] =
    "set -u\n"
    "export LC_ALL=C\n"
    "nl='\n"
    "'\n"
    "st=\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "trap '[ -z \"$st\" ] || rm -rf -- \"$st\"' EXIT\n"
    "trap 'exit 130' INT TERM HUP\n"
    "if [ ! -d \"$src\" ]; then\n"
    "  [ \"$probe\" = 1 ] || die \"source directory $src does not exist\"\n"
    "  echo \"+ link the entries of $src (it does not exist yet)\"\n"
    "  exit 0\n"
    "fi\n"
    "bad=$(find -H \"$src\" -mindepth 1 -maxdepth 1 -name '*[[:cntrl:]]*' "
    "-printf '%f/' | tr '[:cntrl:]' '?' | head -c 400)\n"
    "[ -z \"$bad\" ] || die \"refusing source entries with control "
    "characters in their names in $src: $bad\"\n"
    "check_dest() {\n"
    "  if [ -e \"$2\" ] || [ -L \"$2\" ]; then\n"
    "    [ -d \"$2\" ] || die \"destination $2 exists and is not a "
    "directory\"\n"
    "  elif [ \"$mkdest\" != 1 ]; then\n"
    "    die \"destination directory $2 does not exist (create_dest is "
    "false)\"\n"
    "  fi\n"
    "}\n"
    "dests check_dest\n";

/*
 * The listing and the comparison, kept in $acts (no temp files: probe
 * must write nothing, and a failed apply leaves no trace). has() tests
 * for a kind of line with a shell pattern, so a dest with nothing to do
 * costs no fork.
 */
static const char alias_script_list[] =
    "list_dest() {\n"
    "  [ -d \"$2\" ] || return 0\n"
    "  find -H \"$2\" -mindepth 1 -maxdepth 1 -printf "
    "\"D/$1/%y/%u/%U/%g/%G/%f/%l\\\\0\" || printf 'E\\0'\n"
    "}\n"
    "list() {\n"
    "  find -H \"$src\" -mindepth 1 -maxdepth 1 -printf 'S/%Y/%f\\0' || "
    "printf 'E\\0'\n"
    "  if [ \"$resolved\" = 1 ]; then\n"
    "    find -H \"$src\" -mindepth 1 -maxdepth 1 -print0 | xargs -0 -r "
    "realpath -m -z -- || printf 'E\\0'\n"
    "  fi\n"
    "  dests list_dest\n"
    "}\n"
    "acts=$(list | tr '\\n\\0' '\\001\\n' | awk \"$prog\") || exit $?\n"
    "has() { case \"$nl$acts\" in *\"$nl$1/$2/\"*) return 0 ;; esac; "
    "return 1; }\n"
    "out() { printf '%s\\n' \"$acts\" | sed -n \"s|^$1/$2/||p\"; }\n"
    "if [ \"$probe\" = 1 ]; then\n"
    "  probe_dest() { [ -d \"$2\" ] || echo \"+ created directory $2\"; out "
    "C \"$1\"; }\n"
    "  dests probe_dest\n"
    "  out T 0\n"
    "  exit 0\n"
    "fi\n";

/*
 * apply: per dest, new links are made in a staging directory inside it
 * (same file system), chowned there and renamed into place, so a link
 * appears atomically with its final target and owner.
 */
static const char alias_script_act[] =
    "stage() {\n"
    "  # also clears what a SIGKILLed earlier run may have left\n"
    "  rm -rf -- \"$2\"/.stagehand-tmp.*\n"
    "  st=$2/.stagehand-tmp.$$\n"
    "  mkdir -- \"$st\" || exit 1\n"
    "  if has F \"$1\"; then\n"
    "    out F \"$1\" | xargs -d \"$nl\" -r ln -s -t \"$st\" -- || exit 1\n"
    "  fi\n"
    "  if has W \"$1\"; then\n"
    "    out W \"$1\" | while IFS= read -r l; do\n"
    "      ln -s -- \"${l#*/}\" \"$st/${l%%/*}\" || exit 1\n"
    "    done || exit 1\n"
    "  fi\n"
    "  [ -z \"$og\" ] || chown -h -R -- \"$og\" \"$st\" || exit 1\n"
    "  find \"$st\" -mindepth 1 -maxdepth 1 -exec mv -f -t \"$2\" -- {} + "
    "|| exit 1\n"
    "  rmdir -- \"$st\" || exit 1\n"
    "  st=\n"
    "}\n"
    "act_dest() {\n"
    "  if [ ! -d \"$2\" ]; then\n"
    "    mkdir -p -- \"$2\" || exit 1\n"
    "    [ -z \"$og\" ] || chown -- \"$og\" \"$2\" || exit 1\n"
    "    echo \"+ created directory $2\"\n"
    "  fi\n"
    "  if has F \"$1\" || has W \"$1\"; then stage \"$1\" \"$2\"; fi\n"
    "  if has O \"$1\"; then\n"
    "    out O \"$1\" | xargs -d \"$nl\" -r chown -h -- \"$og\" || exit 1\n"
    "  fi\n"
    "  if has P \"$1\"; then\n"
    "    out P \"$1\" | xargs -d \"$nl\" -r rm -f -- || exit 1\n"
    "  fi\n"
    "  if has C \"$1\"; then out C \"$1\"; fi\n"
    "}\n"
    "dests act_dest\n"
    "out T 0\n";

/* The chown spec: "u:g", "u" or ":g"; "" when neither is managed. */
static void
alias_owner_vars(const struct alias_cfg *c, struct buf *s)
{
	struct buf og;

	buf_init(&og, 256);
	if (c->owner != NULL)
		buf_adds(&og, c->owner);
	if (c->group != NULL)
		buf_addf(&og, ":%s", c->group);
	if (buf_failed(&og))
		buf_fail(s); /* no hole: the whole script is refused */
	(void)stepsh_assign(s, "og", og.data);
	(void)stepsh_assign(s, "ou", c->owner ? c->owner : "");
	(void)stepsh_assign(s, "gr", c->group ? c->group : "");
	buf_addf(s, "onum=%d\ngnum=%d\n",
	    c->owner != NULL && stepsh_account_id_ok(c->owner),
	    c->group != NULL && stepsh_account_id_ok(c->group));
	buf_release(&og);
}

static void
alias_vars(const struct alias_cfg *c, enum step_mode mode, struct buf *s)
{
	static const char *const types[] = { "files", "dirs", "all" };
	struct buf rep;

	buf_init(&rep, 1u << 22);
	for (size_t i = 0; i < c->replace.n; i++)
		buf_addf(&rep, "%s%s", i ? "\n" : "", c->replace.v[i]);
	buf_addf(s,
	    "probe=%d\nresolved=%d\nprune=%d\nmkdest=%d\n"
	    "type=%s\nnd=%zu\n",
	    mode == STEP_PROBE, c->resolved, c->prune, c->create_dest,
	    types[c->type], c->dests.n);
	(void)stepsh_assign(s, "src", c->src);
	if (buf_failed(&rep))
		buf_fail(s); /* no hole: the whole script is refused */
	(void)stepsh_assign(s, "REP", rep.data);
	alias_owner_vars(c, s);
	buf_adds(s, "dests() {\n");
	for (size_t i = 0; i < c->dests.n; i++) {
		buf_addf(s, "\t\"$@\" %zu ", i + 1);
		(void)sh_quote(s, c->dests.v[i]);
		buf_addc(s, '\n');
	}
	buf_adds(s, "}\n");
	for (size_t i = 0; i < c->dests.n; i++) {
		buf_addf(s, "d_%zu=", i + 1);
		(void)sh_quote(s, c->dests.v[i]);
		buf_addf(s, "\nexport d_%zu\n", i + 1);
	}
	buf_adds(s, "export probe resolved prune type nd src REP og "
	            "ou gr onum gnum\nprog=");
	(void)sh_quote(s, alias_awk);
	buf_addc(s, '\n');
	buf_release(&rep);
}

static void
alias_script(const struct alias_cfg *c, enum step_mode mode, struct buf *s)
{
	alias_vars(c, mode, s);
	buf_adds(s, alias_script_check);
	buf_adds(s, alias_script_list);
	buf_adds(s, alias_script_act);
}

/*
 * The script exits 3 after printing one "refusing to replace ..." line per
 * collision on stderr (and changing nothing). stepsh_remote() kept only the
 * last line; the step's error names them all, as far as errbuf holds.
 */
static int
alias_collisions(const struct buf *errout, struct errbuf *err)
{
	const char *p = errout->data, *end = errout->data + errout->len;
	struct buf msg;
	size_t n = 0;

	buf_init(&msg, sizeof(err->msg));
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (len > 20 && memcmp(p, "refusing to replace ", 20) == 0) {
			if (n++ > 0)
				buf_adds(&msg, "; ");
			buf_add(&msg, p, len);
		}
		p += len + 1;
	}
	if (n > 1)
		err_set(err, SH_ERR_STEP, "%zu collisions: %s", n, msg.data);
	else
		err_set(err, SH_ERR_STEP, "%s", msg.data);
	buf_release(&msg);
	return -1;
}

static int
alias_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	struct buf script;
	int rc;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	alias_script(step->cfg, mode, &script);
	rc = stepsh_run_plus(ctx, step, &script, &out, res, err);
	if (rc == -1 && err->code == SH_ERR_REMOTE && out.status == 3)
		rc = alias_collisions(&out.err, err);
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

/* alias /p/bin/"*" -> /usr/lib/postgresql/bin, /usr/bin (files, prune) */
static void
alias_describe(const struct step *step, struct buf *out)
{
	static const char *const types[] = { "files", "dirs", "all" };
	const struct alias_cfg *c = step->cfg;

	buf_addf(out, "alias %s/* -> ", c->src);
	for (size_t i = 0; i < c->dests.n; i++)
		buf_addf(out, "%s%s", i ? ", " : "", c->dests.v[i]);
	buf_addf(out, " (%s", types[c->type]);
	if (c->prune)
		buf_adds(out, ", prune");
	if (c->resolved)
		buf_adds(out, ", resolved");
	if (c->owner != NULL)
		buf_addf(out, ", owner %s%s%s", c->owner, c->group ? ":" : "",
		    c->group ? c->group : "");
	else if (c->group != NULL)
		buf_addf(out, ", group %s", c->group);
	for (size_t i = 0; i < c->replace.n; i++)
		buf_addf(out, "%s%s", i ? "," : ", replace ", c->replace.v[i]);
	buf_addc(out, ')');
}

const struct step_kind step_kind_alias = {
	.name = "alias",
	.flags = STEP_RETRY_SAFE,
	.keys = alias_keys,
	.cfg_size = sizeof(struct alias_cfg),
	.parse = alias_parse,
	.run = alias_run,
	.describe = alias_describe,
	.release = alias_release,
};
