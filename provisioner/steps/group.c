/*
 * steps/group.c: the `group` step kind, a local group in /etc/group.
 *
 * Manifest fields:
 *   name    required; [a-z_][a-z0-9_-]*$? and at most 32 characters
 *   gid     number (0..4294967294); when given, the group has this gid
 *   system  bool, default false: create it as a system group (groupadd -r);
 *           has no effect on a group that already exists
 *   state   present (default) | absent
 * gid and system are refused with `state: absent`.
 *
 * Semantics, in one round trip (one sh script, shadow's tools):
 *   present, missing       -> groupadd [-r] [-g GID] NAME
 *                             "created group NAME (gid N)"
 *   present, gid differs   -> groupmod -g GID NAME
 *                             "gid NAME: OLD -> NEW"; groupmod also moves
 *                             the primary gid of the group's users, but not
 *                             the group of files (as groupmod(8) says)
 *   absent, exists         -> groupdel NAME   "removed group NAME"
 * Anything else is already right and reports no change, so a second apply
 * of the same step reports changed == false (the idempotence rule: the
 * group's existence and, when given, its gid are compared, nothing else;
 * membership is the `user` kind's business).
 *
 * probe runs the same script with every command disabled and prints the
 * same change lines (the gid of a group it would create is unknown).
 * apply adds the detail `gid` (the group's gid afterwards) when present.
 *
 * The script prints "+ TEXT" per change and "= KEY VALUE" per detail on
 * stdout (stepsh.h, parsed by stepsh_run_plus()); the tools' own output
 * goes to stderr, so a failing groupadd's message is the step's error.
 */
#include <string.h>

#include "model/node.h"
#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"

struct group_cfg {
	const char *name; /* borrowed from the manifest */
	bool has_gid;
	uint64_t gid;
	bool system;
	bool absent;
};

static const char *const group_keys[] = { "name", "gid", "system", "state",
	NULL };

/* ---- parse ---- */

static int
group_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct group_cfg *c = cfg;

	if (node_req_str(body, "name", &c->name, err) == -1 ||
	    node_opt_u64(body, "gid", STEPSH_ID_MAX, &c->gid, err) == -1 ||
	    node_opt_bool(body, "system", &c->system, err) == -1 ||
	    stepsh_parse_state(body, &c->absent, err) == -1)
		return -1;
	c->has_gid = node_get(body, "gid") != NULL;
	if (!stepsh_account_name_ok(c->name))
		return node_err(err, node_get(body, "name"),
		    "invalid group name '%s' (want [a-z_][a-z0-9_-]*$?, "
		    "at most 32 characters)",
		    c->name);
	if (c->absent && (c->has_gid || node_get(body, "system") != NULL))
		return node_err(err,
		    node_key(body, c->has_gid ? "gid" : "system"),
		    "%s has no meaning with state: absent",
		    c->has_gid ? "gid" : "system");
	return 0;
}

/* ---- the remote script ---- */

static const char group_script_common[] =
    "set -u\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "run() { [ \"$probe\" = 1 ] && return 0; \"$@\" >&2 || exit $?; }\n"
    "ent=$(getent group \"$n\") || case $? in\n"
    "2) ent= ;;\n"
    "*) die \"getent group $n failed\" ;;\n"
    "esac\n";

static const char group_script_absent[] = "[ -z \"$ent\" ] && exit 0\n"
                                          "run groupdel -- \"$n\"\n"
                                          "echo \"+ removed group $n\"\n";

static const char group_script_present[] =
    "if [ -z \"$ent\" ]; then\n"
    "	if [ -n \"$gid\" ]; then set -- -g \"$gid\"; else set --; fi\n"
    "	[ \"$sys\" = 1 ] && set -- \"$@\" -r\n"
    "	run groupadd \"$@\" -- \"$n\"\n"
    "	[ \"$probe\" = 1 ] && { echo \"+ created group $n\"; exit 0; }\n"
    "	ent=$(getent group \"$n\") || die \"group $n missing after groupadd\"\n"
    "	cur=${ent#*:*:}; cur=${cur%%:*}\n"
    "	echo \"+ created group $n (gid $cur)\"\n"
    "	echo \"= gid $cur\"\n"
    "	exit 0\n"
    "fi\n"
    "cur=${ent#*:*:}; cur=${cur%%:*}\n"
    "if [ -n \"$gid\" ] && [ \"$cur\" != \"$gid\" ]; then\n"
    "	run groupmod -g \"$gid\" -- \"$n\"\n"
    "	echo \"+ gid $n: $cur -> $gid\"\n"
    "	cur=$gid\n"
    "fi\n"
    "[ \"$probe\" = 1 ] || echo \"= gid $cur\"\n";

static void
group_script(const struct group_cfg *c, enum step_mode mode, struct buf *s)
{
	buf_addf(s, "probe=%d\nsys=%d\nn=", mode == STEP_PROBE ? 1 : 0,
	    c->system ? 1 : 0);
	(void)sh_quote(s, c->name);
	if (c->has_gid)
		buf_addf(s, "\ngid=%llu\n", (unsigned long long)c->gid);
	else
		buf_adds(s, "\ngid=\n");
	buf_adds(s, group_script_common);
	buf_adds(s, c->absent ? group_script_absent : group_script_present);
}

static int
group_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct group_cfg *c = step->cfg;
	struct remote_out out;
	struct buf script;
	int rc;

	buf_init(&script, 1u << 16);
	group_script(c, mode, &script);
	rc = stepsh_run_plus(ctx, step, &script, &out, res, err);
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

static void
group_describe(const struct step *step, struct buf *out)
{
	const struct group_cfg *c = step->cfg;

	buf_addf(out, "group %s", c->name);
	if (c->absent) {
		buf_adds(out, " absent");
		return;
	}
	if (c->has_gid)
		buf_addf(out, " (gid %llu%s)", (unsigned long long)c->gid,
		    c->system ? ", system" : "");
	else if (c->system)
		buf_adds(out, " (system)");
}

const struct step_kind step_kind_group = {
	.name = "group",
	.flags = STEP_RETRY_SAFE,
	.keys = group_keys,
	.cfg_size = sizeof(struct group_cfg),
	.parse = group_parse,
	.run = group_run,
	.describe = group_describe,
};
