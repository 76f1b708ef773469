/*
 * steps/package.c: the `package` step kind: Debian packages, with apt.
 *
 * Manifest fields:
 *   names               required: a package or a list of them, each
 *                       NAME[:ARCH][=VERSION]. NAME follows Debian policy
 *                       (lower case letters, digits, '+', '-', '.'; at
 *                       least 2 characters; starts with a letter or a
 *                       digit); ARCH is [a-z0-9-]+; VERSION is an exact
 *                       Debian version ([EPOCH:]UPSTREAM[-REVISION],
 *                       starting with a digit; no wildcards). A package
 *                       may be listed once
 *   state               present (default) | absent
 *                         present  every package is installed; with a
 *                                  VERSION, that version (a package at
 *                                  another version is up- or downgraded:
 *                                  --allow-downgrades is passed when a
 *                                  pinned package is in the transaction)
 *                         absent   none is installed: apt-get remove (or
 *                                  purge); apt also removes the packages
 *                                  that depend on them. A package only
 *                                  its config files are left of counts as
 *                                  absent, unless purge. VERSION is an
 *                                  error here
 *   purge               bool, default false; absent only: apt-get purge,
 *                       config files too
 *   install_recommends  bool, default false (--no-install-recommends);
 *                       present only
 *   hold                bool, not managed when unset. true (present only):
 *                       apt-mark hold after the install; a held package
 *                       whose pinned version must change is unheld for
 *                       the transaction and held again (also when it
 *                       fails). false: apt-mark unhold, before any install
 *                       or removal. A held package the step would change
 *                       without managing its hold makes apt refuse ("Held
 *                       packages were changed")
 *   update_cache_age    seconds, default 3600, present only: before an
 *                       install, apt-get update runs when the package
 *                       lists are older than this (0: always); the
 *                       lists' age is that of the newest of
 *                       /var/lib/apt/periodic/update-success-stamp (which
 *                       the step touches after a successful update, as
 *                       Debian's update-notifier hook does) and the
 *                       /var/lib/apt/lists directory; no lists at all is
 *                       older than any bound. Nothing to install: no
 *                       update
 *
 * One round trip and one apt transaction per step: dpkg-query reads each
 * package's state (installed means dpkg status "installed"; with a
 * VERSION, installed at that version; half-installed or unpacked is not
 * installed), then at most: apt-mark unhold, apt-get update, one apt-get
 * install of all that is missing, or one apt-get remove/purge, then
 * apt-mark hold. apt-get runs non-interactively
 * (DEBIAN_FRONTEND=noninteractive, -y, --force-confdef/--force-confold,
 * stdin /dev/null) and waits for the dpkg lock up to the step's timeout
 * (DPkg::Lock::Timeout); apt-mark, whose dpkg --set-selections fails at
 * once on a held lock, is retried as long. After the install each
 * package is read again: a name apt resolved to another package (a
 * virtual package that one package provides) fails the step, since it
 * would otherwise be "installed" again on every run.
 *
 * Change lines, the same in plan and run: "install tree", "install
 * tree=2.1.0-1", "tree: 2.0.2-1 -> 2.1.0-1", "update the package lists
 * (last update 7200 s ago)" (or "(none yet)"), "remove tree", "purge
 * tree", "hold tree", "unhold tree". A second apply reports ok. probe
 * only reads (dpkg-query, the lists' mtimes); it cannot know whether a
 * package exists before the lists are updated, so only run finds that.
 *
 * Errors: a failed apt command fails the step with "apt-get install: exit
 * 100: " and apt's own "E: ..." lines (and unmet-dependency lines), which
 * name the package: "E: Unable to locate package foo", "E: Version '9'
 * for 'tree' was not found"; redacted and cut like every remote error
 * (remote_fail()). apt's whole output is the step's output.
 * STEP_RETRY_SAFE: after a dropped connection the same step runs again
 * and does only what is still missing.
 */
#include <stdlib.h>
#include <string.h>

#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"

#define PACKAGE_SPEC_MAX 256
#define PACKAGE_AGE_MAX 2147483647u
#define PACKAGE_AGE_DEFAULT 3600u

/* The script's own failure line on stderr (see package_error()). */
#define PACKAGE_MARK "stagehand-package: "

enum package_hold {
	HOLD_UNMANAGED,
	HOLD_ON,
	HOLD_OFF,
};

struct package_cfg {
	struct strlist names; /* owned copies: NAME[:ARCH][=VERSION] */
	bool absent;
	bool purge;
	bool recommends;
	enum package_hold hold;
	uint64_t age;
};

static const char *const package_keys[] = {
	"names",
	"state",
	"purge",
	"install_recommends",
	"hold",
	"update_cache_age",
	NULL,
};

/* ======================================================== parse */

static bool
package_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Debian policy 5.6.1: [a-z0-9][a-z0-9+.-]+ */
static bool
package_name_ok(const char *s, size_t len)
{
	if (len < 2 || !package_lower_alnum(s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!package_lower_alnum(s[i]) && strchr("+.-", s[i]) == NULL)
			return false;
	return true;
}

static bool
package_arch_ok(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!package_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/*
 * Debian policy 5.6.12: [EPOCH:]UPSTREAM[-REVISION]; the epoch is digits,
 * the upstream version starts with a digit; letters, digits, '.', '+',
 * '~' and '-' (':' only after an epoch). No wildcards: apt would read them
 * as a pattern, and "installed at that version" would mean nothing.
 */
static bool
package_version_ok(const char *v)
{
	const char *colon = strchr(v, ':');
	bool epoch = colon != NULL;
	size_t len;

	if (epoch) {
		if (colon == v ||
		    strspn(v, "0123456789") != (size_t)(colon - v))
			return false;
		v = colon + 1;
	}
	len = strlen(v);
	if (len == 0 || v[0] < '0' || v[0] > '9' || v[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = v[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || strchr(".+~-", c) != NULL ||
		        (c == ':' && epoch)))
			return false;
	}
	return true;
}

/* The length of NAME[:ARCH], the part before '='. */
static size_t
package_key_len(const char *spec)
{
	return strcspn(spec, "=");
}

static int
package_check_spec(
    const struct node *at, const char *s, bool absent, struct errbuf *err)
{
	size_t key = package_key_len(s), name = strcspn(s, ":=");

	if (strlen(s) > PACKAGE_SPEC_MAX)
		return node_err(err, at, "names: '%.40s...' is longer than %d",
		    s, PACKAGE_SPEC_MAX);
	if (strpbrk(s, " \t\n,") != NULL)
		return node_err(err, at,
		    "names: '%s': one package per item (a list: [a, b])", s);
	if (!package_name_ok(s, name))
		return node_err(err, at,
		    "names: '%.*s' is not a Debian package name (lower case "
		    "letters, digits, '+', '-' and '.', at least 2 "
		    "characters, starting with a letter or digit)",
		    (int)name, s);
	if (name < key && !package_arch_ok(s + name + 1, key - name - 1))
		return node_err(err, at,
		    "names: '%.*s': bad architecture (want [a-z0-9-]+)",
		    (int)key, s);
	if (s[key] == '\0')
		return 0;
	if (absent)
		return node_err(err, at,
		    "names: '%s': a version has no meaning with state: absent",
		    s);
	if (!package_version_ok(s + key + 1))
		return node_err(err, at,
		    "names: '%s': '%s' is not an exact Debian version "
		    "([EPOCH:]UPSTREAM[-REVISION], starting with a digit)",
		    s, s + key + 1);
	return 0;
}

static int
package_parse_names(
    const struct node *body, struct package_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "names");

	if (n == NULL)
		return node_err(err, body, "missing required key 'names'");
	if (node_opt_strlist(body, "names", &c->names, err) < 0)
		return -1;
	if (c->names.n == 0)
		return node_err(err, n, "names: no package given");
	for (size_t i = 0; i < c->names.n; i++) {
		const char *s = c->names.v[i];
		const struct node *at =
		    n->type == NODE_SEQ && i < n->n ? n->items[i] : n;
		size_t k = package_key_len(s);

		if (package_check_spec(at, s, c->absent, err) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (package_key_len(c->names.v[j]) == k &&
			    memcmp(c->names.v[j], s, k) == 0)
				return node_err(err, at,
				    "names: '%.*s' is listed twice", (int)k, s);
	}
	return 0;
}

static bool
package_given(const struct node *body, const char *key)
{
	const struct node *v = node_get(body, key);

	return v != NULL && !node_is_null(v);
}

/* The fields that only make sense with one state. */
static int
package_check_state(
    const struct node *body, const struct package_cfg *c, struct errbuf *err)
{
	static const char *const present_only[] = { "install_recommends",
		"update_cache_age", NULL };

	if (c->purge && !c->absent)
		return node_err(err, node_get(body, "purge"),
		    "purge is only for state: absent");
	if (!c->absent)
		return 0;
	if (c->hold == HOLD_ON)
		return node_err(err, node_get(body, "hold"),
		    "hold: true has no meaning with state: absent");
	for (size_t i = 0; present_only[i] != NULL; i++)
		if (package_given(body, present_only[i]))
			return node_err(err, node_key(body, present_only[i]),
			    "%s has no meaning with state: absent",
			    present_only[i]);
	return 0;
}

static int
package_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct package_cfg *c = cfg;
	bool hold = false;

	c->age = PACKAGE_AGE_DEFAULT;
	if (stepsh_parse_state(body, &c->absent, err) < 0 ||
	    node_opt_bool(body, "purge", &c->purge, err) < 0 ||
	    node_opt_bool(body, "install_recommends", &c->recommends, err) <
	        0 ||
	    node_opt_bool(body, "hold", &hold, err) < 0 ||
	    node_opt_u64(
	        body, "update_cache_age", PACKAGE_AGE_MAX, &c->age, err) < 0)
		return -1;
	if (package_given(body, "hold"))
		c->hold = hold ? HOLD_ON : HOLD_OFF;
	if (package_check_state(body, c, err) < 0)
		return -1;
	return package_parse_names(body, c, err);
}

static void
package_release(void *cfg)
{
	struct package_cfg *c = cfg;

	strlist_free(&c->names);
}

/* ======================================================== the script */

/*
 * Inputs: A (1 apply) ABS PURGE REC HOLD ('' 1 0) AGE LOCK, and the
 * packages as "$@". Lists of names are space-separated words: the names
 * were checked at load time and hold no space or glob character.
 * state NAME VERSION sets on (installed), any (dpkg knows more of it than
 * "not installed"; for purge), inst (installed or half so; for remove),
 * held, cur (the installed version) and match (installed at VERSION).
 */
static const char package_sh[] =
    "set -u\n"
    "export DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none\n"
    "C() { printf 'C %s\\n' \"$*\"; }\n"
    "fail() { printf '" PACKAGE_MARK "%s\\n' \"$*\" >&2; exit 1; }\n"
    "command -v apt-get >/dev/null 2>&1 && "
    "command -v dpkg-query >/dev/null 2>&1 ||\n"
    "\tfail 'no apt-get or dpkg-query: not a Debian-based system'\n"
    "state() {\n"
    "\ton=0 any=0 inst=0 held=0 cur= match=0\n"
    "\t_q=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}\\n' \"$1\" "
    "2>/dev/null) || _q=\n"
    "\twhile IFS= read -r _l; do\n"
    "\t\tcase $_l in '') continue ;; h*) held=1 ;; esac\n"
    "\t\tcase $_l in ?n*) ;; ?c*) any=1 ;; *) any=1 inst=1 ;; esac\n"
    "\t\tcase $_l in ?i*) on=1 cur=${_l#???}\n"
    "\t\t\t[ \"$cur\" = \"$2\" ] && match=1 ;; esac\n"
    "\tdone <<EOF\n"
    "$_q\n"
    "EOF\n"
    "}\n"
    "nl='\n'\n"
    "msgs= ins= pin=0 hold= unhold= rehold= del=\n"
    "note() { msgs=\"${msgs}C $*$nl\"; }\n"
    "for s in \"$@\"; do\n"
    "\tn=${s%%=*} v=\n"
    "\tcase $s in *=*) v=${s#*=} ;; esac\n"
    "\tstate \"$n\" \"$v\"\n"
    "\tcase $HOLD$held in 01) note \"unhold $n\"; unhold=\"$unhold $n\" ;; "
    "esac\n"
    "\tif [ \"$ABS\" = 1 ]; then\n"
    "\t\tif [ \"$PURGE\" = 1 ] && [ \"$any\" = 1 ]; then\n"
    "\t\t\tnote \"purge $n\"; del=\"$del $n\"\n"
    "\t\telif [ \"$PURGE\" = 0 ] && [ \"$inst\" = 1 ]; then\n"
    "\t\t\tnote \"remove $n\"; del=\"$del $n\"\n"
    "\t\tfi\n"
    "\telif [ \"$on\" = 0 ]; then\n"
    "\t\tnote \"install $s\"; ins=\"$ins $s\"\n"
    "\t\t[ -n \"$v\" ] && pin=1\n"
    "\telif [ -n \"$v\" ] && [ \"$match\" = 0 ]; then\n"
    "\t\tnote \"$n: $cur -> $v\"; ins=\"$ins $s\" pin=1\n"
    "\t\t[ \"$held\" = 1 ] && [ \"$HOLD\" = 1 ] && rehold=\"$rehold $n\"\n"
    "\tfi\n"
    "\tcase $HOLD$held in 10) note \"hold $n\"; hold=\"$hold $n\" ;; esac\n"
    "done\n"
    /* The lists' age: see the header comment. */
    "newest() {\n"
    "\t_t=0\n"
    "\tfor _f; do\n"
    "\t\t[ -e \"$_f\" ] || continue\n"
    "\t\t_m=$(stat -c %Y -- \"$_f\") || continue\n"
    "\t\t[ \"$_m\" -gt \"$_t\" ] && _t=$_m\n"
    "\tdone\n"
    "\techo \"$_t\"\n"
    "}\n"
    "age() {\n"
    "\tset -- /var/lib/apt/lists/*_Packages*\n"
    "\t[ -e \"$1\" ] || { echo never; return 0; }\n"
    "\t_l=$(newest /var/lib/apt/periodic/update-success-stamp "
    "/var/lib/apt/lists)\n"
    "\t_s=$(newest /etc/apt/sources.list /etc/apt/sources.list.d "
    "/etc/apt/sources.list.d/*)\n"
    "\tif [ \"$_s\" -gt \"$_l\" ]; then echo sources; "
    "else echo $(($(date +%s) - _l)); fi\n"
    "}\n"
    "upd=0\n"
    "if [ -n \"$ins\" ]; then\n"
    "\ta=$(age)\n"
    "\tif [ \"$a\" = never ]; then\n"
    "\t\tupd=1; C 'update the package lists (none yet)'\n"
    "\telif [ \"$a\" = sources ]; then\n"
    "\t\tupd=1; C 'update the package lists (sources changed since the last "
    "update)'\n"
    "\telif [ \"$a\" -ge \"$AGE\" ]; then\n"
    "\t\tupd=1; C \"update the package lists (last update $a s ago)\"\n"
    "\tfi\n"
    "fi\n"
    "printf '%s' \"$msgs\"\n"
    "[ \"$A\" = 1 ] || exit 0\n"
    "set -f\n"
    /* A held package that had to change is held again, also on failure. */
    "apt() {\n"
    "\t_w=$1; shift\n"
    "\tapt-get -q -y -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=\"$LOCK\" "
    "\"$@\" </dev/null >&2 && return 0\n"
    "\t_r=$?\n"
    "\t[ -z \"$rehold\" ] || apt-mark hold $rehold >/dev/null 2>&1\n"
    "\tfail \"apt-get $_w: exit $_r\"\n"
    "}\n"
    /* apt-mark does not wait for the dpkg lock (its dpkg
     * --set-selections fails at once): retry until LOCK runs out. */
    "mark() {\n"
    "\t_end=$(($(date +%s) + LOCK))\n"
    "\twhile :; do\n"
    "\t\t_o=$(LC_ALL=C apt-mark \"$@\" </dev/null 2>&1) && break\n"
    "\t\t_r=$?\n"
    "\t\tcase $_o in *'locked by another process'*)\n"
    "\t\t\t[ \"$(date +%s)\" -lt \"$_end\" ] && { sleep 1; continue; } ;;\n"
    "\t\tesac\n"
    "\t\tprintf '%s\\n' \"$_o\" >&2; fail \"apt-mark $1: exit $_r\"\n"
    "\tdone\n"
    "\tprintf '%s\\n' \"$_o\" >&2\n"
    "}\n"
    "[ -z \"$unhold$rehold\" ] || mark unhold $unhold $rehold\n"
    "if [ -n \"$ins\" ]; then\n"
    "\tif [ \"$upd\" = 1 ]; then\n"
    "\t\tapt update update\n"
    "\t\tmkdir -p /var/lib/apt/periodic && "
    "touch /var/lib/apt/periodic/update-success-stamp || :\n"
    "\tfi\n"
    "\tif [ \"$REC\" = 1 ]; then set -- --install-recommends\n"
    "\telse set -- --no-install-recommends; fi\n"
    "\t[ \"$pin\" = 1 ] && set -- \"$@\" --allow-downgrades\n"
    "\tapt install -o Dpkg::Options::=--force-confdef "
    "-o Dpkg::Options::=--force-confold \"$@\" install $ins\n"
    "\tfor s in $ins; do\n"
    "\t\tn=${s%%=*} v=\n"
    "\t\tcase $s in *=*) v=${s#*=} ;; esac\n"
    "\t\tstate \"$n\" \"$v\"\n"
    "\t\t[ \"$on\" = 1 ] && { [ -z \"$v\" ] || [ \"$match\" = 1 ]; } ||\n"
    "\t\t\tfail \"$s is not installed after apt-get install "
    "(a virtual package? name the one that provides it)\"\n"
    "\tdone\n"
    "fi\n"
    "if [ -n \"$del\" ]; then\n"
    "\tif [ \"$PURGE\" = 1 ]; then apt purge purge $del\n"
    "\telse apt remove remove $del; fi\n"
    "fi\n"
    "[ -z \"$hold$rehold\" ] || mark hold $hold $rehold\n";

static int
package_script(const struct package_cfg *c, enum step_mode mode,
    unsigned lock_s, struct buf *b)
{
	static const char *const hold_arg[] = { "", "1", "0" };

	if (buf_addf(b,
	        "A=%d ABS=%d PURGE=%d REC=%d HOLD=%s AGE=%llu LOCK=%u\n",
	        mode == STEP_APPLY, c->absent, c->purge, c->recommends,
	        c->hold == HOLD_UNMANAGED ? "''" : hold_arg[c->hold],
	        (unsigned long long)c->age, lock_s) < 0 ||
	    buf_adds(b, "set --") < 0)
		return -1;
	for (size_t i = 0; i < c->names.n; i++)
		if (buf_addc(b, ' ') < 0 || sh_quote(b, c->names.v[i]) < 0)
			return -1;
	if (buf_addc(b, '\n') < 0)
		return -1;
	return buf_adds(b, package_sh);
}

/* ======================================================== errors */

/* A line of apt's worth quoting in the error: "E: ..." and the
 * unmet-dependency lines (" tree : Depends: foo but it is not ..."). */
static bool
package_apt_line(const char *p, size_t len)
{
	if (len > 3 && memcmp(p, "E: ", 3) == 0)
		return true;
	if (len < 4 || p[0] != ' ' || p[1] == ' ')
		return false;
	for (size_t i = 1; i + 3 <= len; i++)
		if (memcmp(p + i, " : ", 3) == 0)
			return true;
	return false;
}

/*
 * The script failed and said why on its last PACKAGE_MARK line: the error
 * is that line's text, then apt's E: and dependency lines joined by "; ",
 * redacted and cut by remote_fail(). Without such a line (sudo refused,
 * the shell died) err keeps what stepsh_exec() said.
 */
static void
package_error(
    const struct redact *rd, const struct buf *errout, struct errbuf *err)
{
	const char *p = errout->data, *end = p + errout->len;
	const char *mark = NULL;
	size_t marklen = 0;
	struct buf lines;

	buf_init(&lines, REMOTE_OUTPUT_MAX);
	for (const char *nl; p < end; p = nl ? nl + 1 : end) {
		size_t len;

		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len > strlen(PACKAGE_MARK) &&
		    memcmp(p, PACKAGE_MARK, strlen(PACKAGE_MARK)) == 0) {
			mark = p + strlen(PACKAGE_MARK);
			marklen = len - strlen(PACKAGE_MARK);
		} else if (package_apt_line(p, len)) {
			if (lines.len > 0)
				buf_adds(&lines, "; ");
			buf_add(&lines, p + (p[0] == ' '), len - (p[0] == ' '));
		}
	}
	if (mark != NULL)
		remote_fail(rd, err, &lines, "%.*s", (int)marklen, mark);
	buf_release(&lines);
}

/* ======================================================== run */

static int
package_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	struct buf script;
	unsigned lock_s =
	    step->timeout_s ? step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	int rc = -1;

	memset(&out, 0, sizeof(out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (package_script(step->cfg, mode, lock_s, &script) < 0) {
		err_set(err, SH_ERR_INTERNAL, "package: script too long");
		goto out;
	}
	if (remote_script(&cmd, &script, err) < 0)
		goto out;
	rc = stepsh_exec(ctx, step, &cmd, &out, res, err);
	if (rc == 0)
		(void)stepsh_changes(res, &out.out);
	else if (err->code == SH_ERR_REMOTE && out.status > 0)
		package_error(ctx->redact, &out.err, err);
out:
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

static void
package_describe(const struct step *step, struct buf *out)
{
	const struct package_cfg *c = step->cfg;
	const char *sep = " (";

	buf_adds(out, "package");
	for (size_t i = 0; i < c->names.n; i++)
		buf_addf(out, " %s", c->names.v[i]);
	buf_adds(out, c->absent ? " absent" : " present");
	if (c->purge) {
		buf_addf(out, "%spurge", sep);
		sep = ", ";
	}
	if (c->recommends) {
		buf_addf(out, "%swith recommends", sep);
		sep = ", ";
	}
	if (c->hold != HOLD_UNMANAGED) {
		buf_addf(
		    out, "%s%s", sep, c->hold == HOLD_ON ? "hold" : "unhold");
		sep = ", ";
	}
	if (sep[0] == ',')
		buf_addc(out, ')');
}

const struct step_kind step_kind_package = {
	.name = "package",
	.flags = STEP_RETRY_SAFE,
	.keys = package_keys,
	.cfg_size = sizeof(struct package_cfg),
	.parse = package_parse,
	.run = package_run,
	.describe = package_describe,
	.release = package_release,
};
