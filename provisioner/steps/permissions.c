/*
 * steps/permissions.c: the `permissions` step kind, a read-only audit of
 * accounts and file attributes (the image build's osquery check, see
 * reference/supabase-two-stage.md §1.5). Each row of the table is a test
 * case of the step in the report; the step fails when any row fails.
 *
 * Manifest fields (at least one of users, patterns, paths, absent):
 *   users          map USER: GROUPS (a name or a list): the exact set of
 *                  groups USER is in, primary and supplementary
 *   order          any (default) | exact: `exact` compares the group lists
 *                  in order: primary group first, then the supplementary
 *                  groups in /etc/group order (what `id -Gn USER` prints;
 *                  permcheck.h has the precise rule)
 *   missing_users  fail (default) | skip: a listed user that does not
 *                  exist fails its row, or its row is skipped
 *   patterns       list of {users: GLOB, only_groups: GROUPS}: every user
 *                  whose name matches GLOB (fnmatch) may be in those
 *                  groups only; no matching user is fine
 *   paths          list of {path, owner, group, mode, type}: path exists
 *                  and, when given, has that owner/group (name or number),
 *                  mode (octal, all 12 bits) and type (file | directory |
 *                  link); the path itself, symlinks not followed
 *   absent         list of absolute paths (sh glob patterns allowed) that
 *                  must not exist
 *
 * One round trip: one sh script (permcheck_script) dumps getent passwd,
 * getent group, the lstat of every listed path and the existing matches
 * of every absent pattern; the comparison happens here, in permcheck.c.
 * probe and apply run the same check and never change the target. apply
 * reports changed == false and fails on a failed row. probe, in a plan,
 * runs before the stage's earlier steps have done their work, so failed
 * rows there are "would change" (the audit would fail if nothing before
 * it changed anything), each named in a change line, not a failed plan. Rows
 * are named "user postgres: postgres,ssl-cert", "pattern nixbld*: only nixbld",
 * "path /etc/ssl/private: directory root:postgres 0750", "absent
 * /tmp/ansible-playbook"; a failed row's message says expected vs actual. The
 * step's error is SH_ERR_STEP "N of M permission rows failed: user wal-g:
 * expected [...], got [...];
 * ...". Details: rows, failed, skipped.
 */
#include <stdlib.h>
#include <string.h>

#include "model/node.h"
#include "pg/permcheck.h"
#include "steps/stepsh.h"
#include "target/remote.h"
#include "util/limits.h"

#define PERM_GLOB_MAX 64
#define PERM_SUMMARY_MAX 900 /* the summary must fit struct errbuf */

static const char *const perm_keys[] = { "users", "order", "missing_users",
	"patterns", "paths", "absent", NULL };

/* ---- parse ---- */

/* Optional key with two values: *second tells whether it is value b. */
static int
perm_choice(const struct node *body, const char *key, const char *a,
    const char *b, bool *second, struct errbuf *err)
{
	const char *v = NULL;

	*second = false;
	if (node_opt_str(body, key, &v, err) < 0)
		return -1;
	if (v == NULL || strcmp(v, a) == 0)
		return 0;
	if (strcmp(v, b) == 0) {
		*second = true;
		return 0;
	}
	return node_err(err, node_get(body, key),
	    "%s must be %s or %s, not '%s'", key, a, b, v);
}

/* The item node of a list value for error positions (the value itself
 * when it was a scalar). */
static const struct node *
perm_item(const struct node *v, size_t i)
{
	return v->type == NODE_SEQ && i < v->n ? v->items[i] : v;
}

/* map[key]: a non-empty list of distinct group names or gids. */
static int
perm_groups(const struct node *map, const char *key, const char *what,
    struct strlist *out, struct errbuf *err)
{
	const struct node *v = node_get(map, key);

	if (node_opt_strlist(map, key, out, err) < 0)
		return -1;
	if (v == NULL || out->n == 0)
		return node_err(
		    err, v ? v : map, "%s: give at least one group", what);
	for (size_t i = 0; i < out->n; i++) {
		const char *g = out->v[i];

		if (!stepsh_account_name_ok(g) && !stepsh_account_id_ok(g))
			return node_err(err, perm_item(v, i),
			    "%s: invalid group name '%s'", what, g);
		for (size_t j = 0; j < i; j++)
			if (strcmp(out->v[j], g) == 0)
				return node_err(err, perm_item(v, i),
				    "%s: group '%s' listed twice", what, g);
	}
	return 0;
}

static int
perm_parse_users(
    const struct node *users, struct permcheck_spec *s, struct errbuf *err)
{
	if (node_expect(users, NODE_MAP, "users", err) < 0)
		return -1;
	if (users->n == 0)
		return node_err(err, users, "users: the table is empty");
	s->users = xcalloc(users->n, sizeof(*s->users));
	for (size_t i = 0; i < users->n; i++) {
		const struct node *k = users->keys[i];
		struct permcheck_user *u = &s->users[s->nusers++];

		u->name = k->str;
		if (!stepsh_account_name_ok(k->str))
			return node_err(
			    err, k, "users: invalid user name '%s'", k->str);
		if (perm_groups(users, k->str, "users", &u->groups, err) < 0)
			return -1;
	}
	return 0;
}

/* Account-name characters plus the glob ones; no ':' or blanks. */
static bool
perm_glob_ok(const char *g)
{
	size_t n = strlen(g);

	if (n == 0 || n > PERM_GLOB_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyz"
		           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		           "_-.$*?[]!^",
		        g[i]) == NULL)
			return false;
	return true;
}

static int
perm_parse_pattern(
    const struct node *m, struct permcheck_pattern *p, struct errbuf *err)
{
	static const char *const keys[] = { "users", "only_groups", NULL };

	if (node_expect(m, NODE_MAP, "a patterns item", err) < 0 ||
	    node_check_keys(m, keys, err) < 0 ||
	    node_req_str(m, "users", &p->glob, err) < 0)
		return -1;
	if (!perm_glob_ok(p->glob))
		return node_err(err, node_get(m, "users"),
		    "patterns: invalid user pattern '%s'", p->glob);
	return perm_groups(m, "only_groups", "only_groups", &p->only, err);
}

static int
perm_parse_patterns(
    const struct node *v, struct permcheck_spec *s, struct errbuf *err)
{
	if (node_expect(v, NODE_SEQ, "patterns", err) < 0)
		return -1;
	if (v->n == 0)
		return node_err(err, v, "patterns: the list is empty");
	s->patterns = xcalloc(v->n, sizeof(*s->patterns));
	for (size_t i = 0; i < v->n; i++)
		if (perm_parse_pattern(
		        v->items[i], &s->patterns[s->npatterns++], err) < 0)
			return -1;
	return 0;
}

static int
perm_parse_type(
    const struct node *m, enum permcheck_type *t, struct errbuf *err)
{
	static const enum permcheck_type types[] = { PERMCHECK_FILE,
		PERMCHECK_DIR, PERMCHECK_LINK };
	const char *v = NULL;

	*t = PERMCHECK_ANY;
	if (node_opt_str(m, "type", &v, err) < 0)
		return -1;
	if (v == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(v, permcheck_type_name(types[i])) == 0) {
			*t = types[i];
			return 0;
		}
	return node_err(err, node_get(m, "type"),
	    "type must be file, directory or link, not '%s'", v);
}

static int
perm_parse_path(const struct node *m, const struct permcheck_spec *s,
    struct permcheck_path *p, struct errbuf *err)
{
	static const char *const keys[] = { "path", "owner", "group", "mode",
		"type", NULL };
	struct stepsh_attrs a;

	if (node_expect(m, NODE_MAP, "a paths item", err) < 0 ||
	    node_check_keys(m, keys, err) < 0 ||
	    stepsh_abs_path(m, "path", &p->path, err) < 0 ||
	    stepsh_parse_attrs(m, &a, err) < 0 ||
	    perm_parse_type(m, &p->type, err) < 0)
		return -1;
	p->owner = a.owner;
	p->group = a.group;
	p->mode = a.mode;
	p->mode_set = a.mode_set;
	for (size_t i = 0; i < s->npaths; i++)
		if (strcmp(s->paths[i].path, p->path) == 0)
			return node_err(err, node_get(m, "path"),
			    "paths: '%s' listed twice", p->path);
	return 0;
}

static int
perm_parse_paths(
    const struct node *v, struct permcheck_spec *s, struct errbuf *err)
{
	if (node_expect(v, NODE_SEQ, "paths", err) < 0)
		return -1;
	if (v->n == 0)
		return node_err(err, v, "paths: the list is empty");
	s->paths = xcalloc(v->n, sizeof(*s->paths));
	for (size_t i = 0; i < v->n; i++) {
		if (perm_parse_path(v->items[i], s, &s->paths[s->npaths], err) <
		    0)
			return -1;
		s->npaths++;
	}
	return 0;
}

static int
perm_parse_absent(
    const struct node *body, struct permcheck_spec *s, struct errbuf *err)
{
	const struct node *v = node_get(body, "absent");

	if (node_opt_strlist(body, "absent", &s->absent, err) < 0)
		return -1;
	if (s->absent.n == 0)
		return node_err(err, v, "absent: the list is empty");
	for (size_t i = 0; i < s->absent.n; i++) {
		const char *p = s->absent.v[i];
		const struct node *at = perm_item(v, i);

		if (p[0] != '/' || strlen(p) != at->len || strchr(p, '\n'))
			return node_err(err, at,
			    "absent: '%s' must be an absolute path "
			    "without newline or NUL",
			    p);
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->absent.v[j], p) == 0)
				return node_err(
				    err, at, "absent: '%s' listed twice", p);
	}
	return 0;
}

static int
perm_parse_tables(
    const struct node *body, struct permcheck_spec *s, struct errbuf *err)
{
	const struct node *v;

	if ((v = node_get(body, "users")) != NULL &&
	    perm_parse_users(v, s, err) < 0)
		return -1;
	if ((v = node_get(body, "patterns")) != NULL &&
	    perm_parse_patterns(v, s, err) < 0)
		return -1;
	if ((v = node_get(body, "paths")) != NULL &&
	    perm_parse_paths(v, s, err) < 0)
		return -1;
	if (node_get(body, "absent") != NULL &&
	    perm_parse_absent(body, s, err) < 0)
		return -1;
	if (s->nusers + s->npatterns + s->npaths + s->absent.n == 0)
		return node_err(err, body,
		    "permissions: nothing to check "
		    "(give users, patterns, paths or absent)");
	return 0;
}

static int
perm_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct permcheck_spec *s = cfg;

	if (perm_choice(body, "order", "any", "exact", &s->exact_order, err))
		return -1;
	if (perm_choice(
	        body, "missing_users", "fail", "skip", &s->skip_missing, err))
		return -1;
	return perm_parse_tables(body, s, err);
}

static void
perm_release(void *cfg)
{
	permcheck_spec_free(cfg);
}

/* ---- the check (apply), and probe on top of it ---- */

/* Rows into res as tests; -1 (SH_ERR_STEP, the summary) when any failed. */
static int
perm_verdict(const struct permcheck_spec *s, const struct buf *out,
    struct step_result *res, struct errbuf *err)
{
	struct permcheck_facts facts;
	struct permcheck_rows rows = { NULL, 0, 0, 0 };
	struct buf msg;
	int rc = -1;

	buf_init(&msg, 1u << 16);
	if (permcheck_facts_parse(s, out->data, out->len, &facts, err) < 0)
		goto out;
	permcheck_evaluate(s, &facts, &rows);
	for (size_t i = 0; i < rows.n; i++)
		step_result_test(res, rows.v[i].name, rows.v[i].passed,
		    rows.v[i].skipped, rows.v[i].message);
	step_result_detail(res, "rows", "%zu", rows.n);
	step_result_detail(res, "failed", "%zu", rows.failed);
	step_result_detail(res, "skipped", "%zu", rows.skipped);
	rc = 0;
	if (rows.failed > 0) {
		permcheck_summary(&rows, PERM_SUMMARY_MAX, &msg);
		rc = err_set(err, SH_ERR_STEP, "%s", msg.data);
	}
out:
	permcheck_rows_free(&rows);
	permcheck_facts_free(&facts);
	buf_release(&msg);
	return rc;
}

static int
perm_check(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	struct buf script;
	int rc = -1;

	memset(&out, 0, sizeof(out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (permcheck_script(step->cfg, &script) < 0) {
		rc = err_set(
		    err, SH_ERR_INTERNAL, "permission script too large");
		goto out;
	}
	if (remote_script(&cmd, &script, err) < 0)
		goto out;
	if (stepsh_exec(ctx, step, &cmd, &out, res, err) == 0)
		rc = perm_verdict(step->cfg, &out.out, res, err);
out:
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

/* Both modes run the check; probe lists failed rows as changes (top). */
static int
perm_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	if (perm_check(ctx, step, res, err) == 0)
		return 0;
	if (mode == STEP_APPLY || err->code != SH_ERR_STEP)
		return -1;
	for (size_t i = 0; i < res->ntests; i++)
		if (!res->tests[i].passed && !res->tests[i].skipped)
			step_result_change(res, "fails now: %s%s%s",
			    res->tests[i].name,
			    res->tests[i].message ? ": " : "",
			    res->tests[i].message ? res->tests[i].message : "");
	res->changed = true;
	err_clear(err);
	return 0;
}

/* Appends ", N things" (" N things" first); nothing for 0. */
static void
perm_count(struct buf *out, bool *first, size_t n, const char *what,
    const char *plural)
{
	if (n == 0)
		return;
	buf_addf(out, "%s%zu %s%s", *first ? " " : ", ", n, what,
	    n == 1 ? "" : plural);
	*first = false;
}

/* permissions: 37 users, 1 pattern, 5 paths, 4 absent (order exact) */
static void
perm_describe(const struct step *step, struct buf *out)
{
	const struct permcheck_spec *s = step->cfg;
	bool first = true;

	buf_adds(out, "permissions:");
	perm_count(out, &first, s->nusers, "user", "s");
	perm_count(out, &first, s->npatterns, "pattern", "s");
	perm_count(out, &first, s->npaths, "path", "s");
	perm_count(out, &first, s->absent.n, "absent", "");
	if (s->exact_order || s->skip_missing)
		buf_addf(out, " (%s%s%s)", s->exact_order ? "order exact" : "",
		    s->exact_order && s->skip_missing ? ", " : "",
		    s->skip_missing ? "missing users skipped" : "");
}

const struct step_kind step_kind_permissions = {
	.name = "permissions",
	.flags = STEP_RETRY_SAFE,
	.keys = perm_keys,
	.cfg_size = sizeof(struct permcheck_spec),
	.parse = perm_parse,
	.run = perm_run,
	.describe = perm_describe,
	.release = perm_release,
};
