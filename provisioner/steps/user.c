/*
 * steps/user.c: the `user` step kind, a local account in /etc/passwd.
 *
 * Manifest fields:
 *   name         required; [a-z_][a-z0-9_-]*$? and at most 32 characters
 *   uid          number (0..4294967294)
 *   group        primary group, a name or a gid; must exist (create it with
 *                a `group` step first). Without it a new user's primary
 *                group is the group of its own name: the existing one
 *                (useradd -g NAME; plain useradd would fail with "group
 *                NAME exists"), else the one useradd creates (Debian's
 *                USERGROUPS_ENAB). With it, no group of the user's name is
 *                created (useradd -g does not make one)
 *   groups       supplementary groups, a name or a list of names
 *   append       bool, default false: `groups` is the exact supplementary
 *                set (others are removed; `groups: []` removes all); true:
 *                the listed groups are only added
 *   home         absolute path of the home directory
 *   create_home  bool, default true unless `system`: the home directory
 *                exists afterwards (useradd -m for a new user; for an
 *                existing user a missing one is created, with /etc/skel,
 *                owned by the user, mode HOME_MODE of login.defs or 0755)
 *   shell        absolute path of the login shell
 *   system       bool, default false: create a system account (useradd -r);
 *                no effect on an existing user
 *   comment      the GECOS field
 *   state        present (default) | absent
 * Only `name` is allowed with `state: absent`.
 *
 * Passwords are out of scope: useradd leaves a new account's password
 * locked ("!") and this kind never reads or writes /etc/shadow fields.
 *
 * Semantics, in one round trip: one sh script reads `getent passwd NAME`
 * and `getent group` (one awk pass for the primary group's name and the
 * user's supplementary groups), compares with the step and runs at most
 * one useradd or one usermod (plus the home directory when missing):
 *   missing          useradd ... "created user NAME (uid N)"; without
 *                    `group`, -g NAME when a group NAME exists
 *   uid differs      usermod -u  "uid NAME: OLD -> NEW" (usermod also
 *                    re-owns the files in the home directory)
 *   group differs    usermod -g  "group NAME: OLD -> NEW"
 *   groups differ    usermod -G (exact) or -a -G (append)
 *                    "groups NAME: +ssl-cert -docker"
 *   home differs     usermod -d (contents are not moved)
 *                    "home NAME: OLD -> NEW"
 *   shell, comment   usermod -s / -c  "shell NAME: OLD -> NEW"
 *   home missing     "created home DIR" (create_home only)
 *   absent, exists   userdel NAME "removed user NAME" (the home directory
 *                    is kept; userdel removes the user's own group when it
 *                    has no other members, as on any Debian system)
 * Only the fields the step gives are compared, so a second apply reports
 * changed == false. probe runs the same script with every command disabled
 * and prints the same lines. apply adds the detail `uid`.
 *
 * Output protocol as in group.c (stepsh.h): "+ TEXT" per change,
 * "= KEY VALUE" per detail on stdout; the tools' output goes to stderr,
 * so a failing usermod's message is the step's error.
 */
#include <stdlib.h>
#include <string.h>

#include "model/node.h"
#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"

struct user_cfg {
	const char *name; /* borrowed from the manifest, like the others */
	bool has_uid;
	uint64_t uid;
	const char *group; /* NULL: not managed */
	bool has_groups;
	struct strlist groups; /* owned */
	bool append;
	const char *home; /* NULL: not managed */
	bool create_home;
	const char *shell; /* NULL: not managed */
	bool system;
	const char *comment; /* NULL: not managed */
	bool absent;
};

static const char *const user_keys[] = { "name", "uid", "group", "groups",
	"append", "home", "create_home", "shell", "system", "comment", "state",
	NULL };

#define USER_FIELD_MAX 4096

/* ---- parse ---- */

/* A passwd field: no ':' or newline (they would corrupt /etc/passwd). */
static int
user_field(const struct node *body, const char *key, bool path,
    const char **out, struct errbuf *err)
{
	const struct node *n = node_get(body, key);

	*out = NULL;
	if (node_opt_str(body, key, out, err) == -1)
		return -1;
	if (*out == NULL)
		return 0;
	if (strlen(*out) > USER_FIELD_MAX || strpbrk(*out, ":\n\r") != NULL)
		return node_err(err, n,
		    "%s must not contain ':' or a newline "
		    "and must be at most %d bytes",
		    key, USER_FIELD_MAX);
	if (path && (*out)[0] != '/')
		return node_err(err, n, "%s must be an absolute path", key);
	return 0;
}

static int
user_parse_groups(
    const struct node *body, struct user_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "groups");

	c->has_groups = n != NULL;
	if (node_opt_strlist(body, "groups", &c->groups, err) == -1)
		return -1;
	for (size_t i = 0; i < c->groups.n; i++) {
		const char *g = c->groups.v[i];
		const struct node *at =
		    n->type == NODE_SEQ && i < n->n ? n->items[i] : n;

		if (!stepsh_account_name_ok(g))
			return node_err(err, at, "invalid group name '%s'", g);
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->groups.v[j], g) == 0)
				return node_err(
				    err, at, "group '%s' listed twice", g);
	}
	if (c->group != NULL && !stepsh_account_name_ok(c->group) &&
	    !stepsh_account_id_ok(c->group))
		return node_err(err, node_get(body, "group"),
		    "group must be a group name or a gid, not '%s'", c->group);
	return 0;
}

/* With state: absent only `name` (and `state`) make sense. */
static int
user_check_absent(const struct node *body, struct errbuf *err)
{
	for (size_t i = 0; i < body->n; i++) {
		const char *k = body->keys[i]->str;

		if (strcmp(k, "name") != 0 && strcmp(k, "state") != 0)
			return node_err(err, body->keys[i],
			    "%s has no meaning with state: absent", k);
	}
	return 0;
}

static int
user_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct user_cfg *c = cfg;

	if (node_req_str(body, "name", &c->name, err) == -1 ||
	    node_opt_u64(body, "uid", STEPSH_ID_MAX, &c->uid, err) == -1 ||
	    node_opt_str(body, "group", &c->group, err) == -1 ||
	    node_opt_bool(body, "append", &c->append, err) == -1 ||
	    user_field(body, "home", true, &c->home, err) == -1 ||
	    user_field(body, "shell", true, &c->shell, err) == -1 ||
	    user_field(body, "comment", false, &c->comment, err) == -1 ||
	    node_opt_bool(body, "system", &c->system, err) == -1 ||
	    stepsh_parse_state(body, &c->absent, err) == -1)
		return -1;
	c->has_uid = node_get(body, "uid") != NULL;
	c->create_home = !c->system;
	if (node_opt_bool(body, "create_home", &c->create_home, err) == -1)
		return -1;
	if (!stepsh_account_name_ok(c->name))
		return node_err(err, node_get(body, "name"),
		    "invalid user name '%s' (want [a-z_][a-z0-9_-]*$?, "
		    "at most 32 characters)",
		    c->name);
	if (c->absent)
		return user_check_absent(body, err);
	return user_parse_groups(body, c, err);
}

static void
user_release(void *cfg)
{
	struct user_cfg *c = cfg;

	strlist_free(&c->groups);
}

/* ---- the remote script ---- */

/*
 * Variables set before this: probe n uid grp gset groups append home
 * mkhome shell cset comment sys absent. Empty uid/grp/home/shell mean
 * "not managed"; gset/cset say whether groups/comment are.
 */
static const char user_script_common[] =
    "set -u\n"
    "nl='\n'\n"
    "msgs=\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "run() { [ \"$probe\" = 1 ] && return 0; \"$@\" >&2 || exit $?; }\n"
    "note() { msgs=\"$msgs+ $*$nl\"; }\n"
    "flush() { printf '%s' \"$msgs\"; msgs=; }\n"
    "ent=$(getent passwd \"$n\") || case $? in\n"
    "2) ent= ;;\n"
    "*) die \"getent passwd $n failed\" ;;\n"
    "esac\n"
    "if [ \"$absent\" = 1 ]; then\n"
    "	[ -z \"$ent\" ] && exit 0\n"
    "	run userdel -- \"$n\"\n"
    "	echo \"+ removed user $n\"\n"
    "	exit 0\n"
    "fi\n";

static const char user_script_create[] =
    "if [ -z \"$ent\" ]; then\n"
    "	set --\n"
    "	[ \"$sys\" = 1 ] && set -- \"$@\" -r\n"
    "	[ -n \"$uid\" ] && set -- \"$@\" -u \"$uid\"\n"
    "	if [ -n \"$grp\" ]; then set -- \"$@\" -g \"$grp\"\n"
    "	elif getent group \"$n\" >/dev/null; then set -- \"$@\" -g \"$n\"\n"
    "	fi\n"
    "	[ \"$gset\" = 1 ] && [ -n \"$groups\" ] && "
    "set -- \"$@\" -G \"$groups\"\n"
    "	[ -n \"$home\" ] && set -- \"$@\" -d \"$home\"\n"
    "	if [ \"$mkhome\" = 1 ]; then set -- \"$@\" -m; "
    "else set -- \"$@\" -M; fi\n"
    "	[ -n \"$shell\" ] && set -- \"$@\" -s \"$shell\"\n"
    "	[ \"$cset\" = 1 ] && set -- \"$@\" -c \"$comment\"\n"
    "	run useradd \"$@\" -- \"$n\"\n"
    "	[ \"$probe\" = 1 ] && { echo \"+ created user $n\"; exit 0; }\n"
    "	u=$(id -u -- \"$n\") || die \"user $n missing after useradd\"\n"
    "	echo \"+ created user $n (uid $u)\"\n"
    "	echo \"= uid $u\"\n"
    "	exit 0\n"
    "fi\n";

/*
 * One awk pass over the group database: the current primary group's name,
 * the wanted primary gid, the current supplementary groups and the
 * differences, as "PNAME:WGID:CUR:ADD:DEL:." (group names have no ':').
 */
static const char user_script_compare[] =
    "oifs=$IFS; IFS=:; set -f\n"
    "set -- $ent\n"
    "cuid=$3 cgid=$4 cgecos=${5-} chome=${6-} cshell=${7-}\n"
    "cmp=$(getent group | awk -F: -v u=\"$n\" -v cg=\"$cgid\" "
    "-v wg=\"$grp\" -v want=\"$groups\" -v app=\"$append\" "
    "-v gset=\"$gset\" '\n"
    "{ if (!($3 in gname)) gname[$3] = $1; if (!($1 in gid)) gid[$1] = $3\n"
    "  m = split($4, M, \",\")\n"
    "  for (i = 1; i <= m; i++) if (M[i] == u && !($1 in cur)) {\n"
    "    cur[$1] = 1; order[++nc] = $1 } }\n"
    "function join(s, x) { return s == \"\" ? x : s \",\" x }\n"
    "END {\n"
    "  pn = (cg in gname) ? gname[cg] : cg\n"
    "  if (wg ~ /^[0-9]+$/) wgid = wg; else if (wg in gid) wgid = gid[wg];"
    " else wgid = \"?\"\n"
    "  for (i = 1; i <= nc; i++) cl = join(cl, order[i])\n"
    "  nw = split(want, W, \",\")\n"
    "  for (i = 1; i <= nw; i++) { w[W[i]] = 1\n"
    "    if (gset == 1 && !(W[i] in cur)) add = add \" +\" W[i] }\n"
    "  if (gset == 1 && app != 1) for (i = 1; i <= nc; i++)\n"
    "    if (!(order[i] in w)) del = del \" -\" order[i]\n"
    "  print pn \":\" wgid \":\" cl \":\" add \":\" del \":.\"\n"
    "}') || die \"reading the group database failed\"\n"
    "set -- $cmp\n"
    "IFS=$oifs; set +f\n"
    "cpname=$1 wgid=$2 gadd=$4 gdel=$5\n";

static const char user_script_update[] =
    "set --\n"
    "if [ -n \"$uid\" ] && [ \"$uid\" != \"$cuid\" ]; then\n"
    "	set -- \"$@\" -u \"$uid\"; note \"uid $n: $cuid -> $uid\"\n"
    "fi\n"
    "if [ -n \"$grp\" ] && [ \"$wgid\" != \"$cgid\" ]; then\n"
    "	set -- \"$@\" -g \"$grp\"; note \"group $n: $cpname -> $grp\"\n"
    "fi\n"
    "if [ -n \"$gadd$gdel\" ]; then\n"
    "	if [ \"$append\" = 1 ]; then set -- \"$@\" -a -G \"$groups\"\n"
    "	else set -- \"$@\" -G \"$groups\"; fi\n"
    "	note \"groups $n:$gadd$gdel\"\n"
    "fi\n"
    "if [ -n \"$home\" ] && [ \"$home\" != \"$chome\" ]; then\n"
    "	set -- \"$@\" -d \"$home\"; note \"home $n: $chome -> $home\"\n"
    "fi\n"
    "if [ -n \"$shell\" ] && [ \"$shell\" != \"$cshell\" ]; then\n"
    "	set -- \"$@\" -s \"$shell\"; note \"shell $n: $cshell -> $shell\"\n"
    "fi\n"
    "if [ \"$cset\" = 1 ] && [ \"$comment\" != \"$cgecos\" ]; then\n"
    "	set -- \"$@\" -c \"$comment\"\n"
    "	note \"comment $n: '$cgecos' -> '$comment'\"\n"
    "fi\n"
    "[ $# -gt 0 ] && run usermod \"$@\" -- \"$n\"\n"
    "flush\n";

/*
 * A missing home of an existing user: like useradd -m, from /etc/skel,
 * owned by the user and its primary group, mode HOME_MODE or 0755.
 */
static const char user_script_home[] =
    "h=${home:-$chome}\n"
    "if [ \"$mkhome\" = 1 ] && [ -n \"$h\" ] && [ ! -e \"$h\" ] && "
    "[ ! -L \"$h\" ]; then\n"
    "	hm=$(sed -n 's/^HOME_MODE[[:space:]]\\{1,\\}\\([0-7]\\{3,4\\}\\).*/"
    "\\1/p' /etc/login.defs 2>/dev/null)\n"
    "	run mkdir -p -- \"$h\"\n"
    "	[ -d /etc/skel ] && run cp -R -- /etc/skel/. \"$h\"/\n"
    "	run chown -R -- \"$n:\" \"$h\"\n"
    "	run chmod -- \"${hm:-0755}\" \"$h\"\n"
    "	echo \"+ created home $h\"\n"
    "fi\n"
    "[ \"$probe\" = 1 ] || echo \"= uid $(id -u -- \"$n\")\"\n";

static void
user_script(const struct user_cfg *c, enum step_mode mode, struct buf *s)
{
	struct buf g;

	buf_init(&g, 1u << 20);
	for (size_t i = 0; i < c->groups.n; i++)
		buf_addf(&g, "%s%s", i ? "," : "", c->groups.v[i]);
	buf_addf(s,
	    "probe=%d\nappend=%d\nmkhome=%d\nsys=%d\n"
	    "absent=%d\ngset=%d\ncset=%d\n",
	    mode == STEP_PROBE, c->append, c->create_home, c->system, c->absent,
	    c->has_groups, c->comment != NULL);
	if (c->has_uid)
		buf_addf(s, "uid=%llu\n", (unsigned long long)c->uid);
	else
		buf_adds(s, "uid=\n");
	if (buf_failed(&g))
		buf_fail(s); /* a cut list would be a hole in the script */
	(void)stepsh_assign(s, "n", c->name);
	(void)stepsh_assign(s, "grp", c->group ? c->group : "");
	(void)stepsh_assign(s, "groups", g.data);
	(void)stepsh_assign(s, "home", c->home ? c->home : "");
	(void)stepsh_assign(s, "shell", c->shell ? c->shell : "");
	(void)stepsh_assign(s, "comment", c->comment ? c->comment : "");
	buf_adds(s, user_script_common);
	buf_adds(s, user_script_create);
	buf_adds(s, user_script_compare);
	buf_adds(s, user_script_update);
	buf_adds(s, user_script_home);
	buf_release(&g);
}

static int
user_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	struct buf script;
	int rc;

	buf_init(&script, 1u << 22);
	user_script(step->cfg, mode, &script);
	rc = stepsh_run_plus(ctx, step, &script, &out, res, err);
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

/* Adds " (key value" or ", key value" for the one pair of parentheses. */
static void
user_describe_item(
    struct buf *out, bool *open, const char *key, const char *value)
{
	buf_adds(out, *open ? ", " : " (");
	*open = true;
	buf_adds(out, key);
	buf_adds(out, value);
}

/* user postgres (group postgres, groups ssl-cert, system, home /x) */
static void
user_describe(const struct step *step, struct buf *out)
{
	const struct user_cfg *c = step->cfg;
	struct buf v;
	bool open = false;

	buf_addf(out, "user %s", c->name);
	if (c->absent) {
		buf_adds(out, " absent");
		return;
	}
	buf_init(&v, 1u << 20);
	if (c->has_uid) {
		buf_addf(&v, "%llu", (unsigned long long)c->uid);
		user_describe_item(out, &open, "uid ", v.data);
	}
	if (c->group != NULL)
		user_describe_item(out, &open, "group ", c->group);
	if (c->has_groups) {
		buf_reset(&v);
		buf_adds(&v, c->append ? "+" : "");
		for (size_t i = 0; i < c->groups.n; i++)
			buf_addf(&v, "%s%s", i ? "," : "", c->groups.v[i]);
		user_describe_item(
		    out, &open, "groups ", c->groups.n ? v.data : "(none)");
	}
	if (c->system)
		user_describe_item(out, &open, "system", "");
	if (c->home != NULL)
		user_describe_item(out, &open, "home ", c->home);
	if (c->shell != NULL)
		user_describe_item(out, &open, "shell ", c->shell);
	if (open)
		buf_addc(out, ')');
	buf_release(&v);
}

const struct step_kind step_kind_user = {
	.name = "user",
	.flags = STEP_RETRY_SAFE,
	.keys = user_keys,
	.cfg_size = sizeof(struct user_cfg),
	.parse = user_parse,
	.run = user_run,
	.describe = user_describe,
	.release = user_release,
};
