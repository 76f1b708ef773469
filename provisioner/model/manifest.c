/*
 * manifest.c: YAML stage manifests -> struct manifest (see manifest.h).
 *
 * Loading is two passes so that variables are final before any step is
 * looked at:
 *
 *   1. read: every file (top, then includes depth-first) is read into a
 *      node tree by the YAML reader (yaml.h, in the manifest dialect, with
 *      one node count for all the files), and its top-level keys are
 *      validated. Step maps are collected in run order (a file's includes
 *      first, `- include:` entries inline); each file's vars are handed to
 *      vars.c after its includes, so an includer always overrides what it
 *      includes.
 *   2. resolve: secrets are checked, command-line/env overrides applied
 *      (vars.c), then every step is interpolated, its common fields read,
 *      `when` evaluated and its body handed to the kind's parse().
 *
 * Every error is "file:line:col: message" with 1-based positions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kind.h"
#include "model/manifest.h"
#include "model/vars.h"
#include "model/yaml.h"
#include "util/limits.h"

static const char *const top_keys[] = { "stagehand", "stage", "description",
	"vars", "secrets", "include", "steps", "rescue", NULL };
static const char *const step_keys[] = { "name", "become", "when", "tags",
	"timeout", "retries", "retry_delay", "expect_disconnect",
	"changed_when", NULL };

/* ============================================================ helpers */

/* [A-Za-z0-9_.-]+; `dash_first` allows a leading '-'. */
static bool
valid_word(const char *s, bool dash_first)
{
	size_t len = strlen(s);

	if (len == 0 || len > MANIFEST_MAX_NAME || (!dash_first && s[0] == '-'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		        c == '-'))
			return false;
	}
	return true;
}

static bool
in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

static void
kinds_list(const struct step_kind *const *k, struct buf *b)
{
	for (size_t i = 0; k[i] != NULL; i++)
		buf_addf(b, "%s%s", i ? ", " : "", k[i]->name);
}

/* Levenshtein distance, capped: strings over 32 bytes are "far". */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33], prev;

	if (la > 32 || lb > 32)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t best = prev + (a[i - 1] != b[j - 1]);

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

/* ============================================================= loader */

/* At most this many fields of one step are shell text (shell_text_of). */
#define SHELL_TEXT_MAX 4

struct loader {
	struct manifest *m;
	const struct step_kind *const *kinds; /* borrowed, NULL-terminated */
	const struct manifest_opts *opts;
	struct errbuf *err;
	char *root; /* owned realpath; NULL: includes refused */
	size_t nodes;
	struct strlist chain; /* realpaths of the files being read */
	struct strlist names; /* their display names */
	struct node **raw;    /* step maps in run order; borrowed */
	bool *raw_rescue;     /* parallel to raw: from the rescue list */
	size_t nraw, capraw;
	bool in_rescue;       /* collecting the top file's rescue list */
	struct vars_ctx vars; /* the variables, and the files' bytes */
	struct buf *bufs;     /* file contents, owned */
	size_t nbufs;
	const struct node *shell[SHELL_TEXT_MAX]; /* this step's shell text */
	size_t nshell;
};

static int load_includes(struct loader *ld, const struct node *list);
static int include_file(struct loader *ld, const struct node *entry);

static int
push_step(struct loader *ld, struct node *item)
{
	if (item->type != NODE_MAP)
		return node_err(ld->err, item, "a step must be a map, not a %s",
		    node_type_name(item->type));
	if (ld->nraw >= MANIFEST_MAX_STEPS)
		return node_err(
		    ld->err, item, "more than %u steps", MANIFEST_MAX_STEPS);
	if (ld->nraw == ld->capraw) {
		ld->capraw = ld->capraw ? ld->capraw * 2 : 16;
		ld->raw = xreallocarray(ld->raw, ld->capraw, sizeof(*ld->raw));
		ld->raw_rescue = xreallocarray(
		    ld->raw_rescue, ld->capraw, sizeof(*ld->raw_rescue));
	}
	ld->raw_rescue[ld->nraw] = ld->in_rescue;
	ld->raw[ld->nraw++] = item;
	return 0;
}

static int
collect_steps(struct loader *ld, const struct node *steps)
{
	if (steps == NULL || node_is_null(steps))
		return 0;
	if (node_expect(steps, NODE_SEQ, "'steps'", ld->err) < 0)
		return -1;
	for (size_t i = 0; i < steps->n; i++) {
		struct node *item = steps->items[i];
		const struct node *inc = node_get(item, "include");

		if (inc == NULL) {
			if (push_step(ld, item) < 0)
				return -1;
			continue;
		}
		for (size_t k = 0; k < item->n; k++)
			if (strcmp(item->keys[k]->str, "include") != 0)
				return node_err(ld->err, item->keys[k],
				    "an include entry in steps takes no other "
				    "key than 'include', found '%s'",
				    item->keys[k]->str);
		if (include_file(ld, inc) < 0)
			return -1;
	}
	return 0;
}

static int
check_top_keys(struct loader *ld, const struct node *root, bool top)
{
	const struct node *k = node_key(root, "stage");
	const struct node *v;

	if (!top && k != NULL)
		return node_err(ld->err, k,
		    "'stage' is not allowed in an included file (the top "
		    "manifest names the stage)");
	k = node_key(root, "rescue");
	if (!top && k != NULL)
		return node_err(ld->err, k,
		    "'rescue' is not allowed in an included file (the top "
		    "manifest decides what a failure triggers)");
	if (node_check_keys(root, top_keys, ld->err) < 0)
		return -1;
	v = node_get(root, "stagehand");
	if (v == NULL)
		return node_err(ld->err, root,
		    "missing required key 'stagehand' (the format version: "
		    "'stagehand: 1')");
	if (v->type != NODE_SCALAR || strcmp(v->str, "1") != 0)
		return node_err(ld->err, v,
		    "unsupported format version (this is 'stagehand: 1')");
	ld->m->version = 1;
	v = node_get(root, "description");
	if (v != NULL && v->type != NODE_SCALAR)
		return node_err(ld->err, v,
		    "'description' must be a scalar, "
		    "not a %s",
		    node_type_name(v->type));
	return 0;
}

static int
read_stage(struct loader *ld, const struct node *root)
{
	const struct node *v = node_get(root, "stage");
	const char *desc = NULL;

	if (v == NULL)
		return node_err(ld->err, root, "missing required key 'stage'");
	if (v->type != NODE_SCALAR || !valid_word(v->str, false))
		return node_err(ld->err, v,
		    "'stage' must be a name made of "
		    "letters, digits, '_', '.' and '-'");
	ld->m->stage = xstrdup(v->str);
	if (node_opt_str(root, "description", &desc, ld->err) < 0)
		return -1;
	if (desc != NULL)
		ld->m->description = xstrdup(desc);
	return 0;
}

/* One parsed file: validate, recurse into includes, collect, apply vars. */
static int
process_file(struct loader *ld, struct node *root, bool top)
{
	if (node_expect(root, NODE_MAP, "the top level", ld->err) < 0)
		return -1;
	if (check_top_keys(ld, root, top) < 0)
		return -1;
	if (top && read_stage(ld, root) < 0)
		return -1;
	if (vars_secrets(&ld->vars, node_get(root, "secrets")) < 0)
		return -1;
	if (load_includes(ld, node_get(root, "include")) < 0)
		return -1;
	if (collect_steps(ld, node_get(root, "steps")) < 0)
		return -1;
	/* Rescue steps come last, after every included and own step. */
	ld->in_rescue = top;
	if (top && collect_steps(ld, node_get(root, "rescue")) < 0)
		return -1;
	ld->in_rescue = false;
	return vars_define(&ld->vars, node_get(root, "vars"));
}

/* Checks, parses and processes one file's bytes (borrowed). */
static int
load_bytes(struct loader *ld, const char *display, const char *data, size_t len,
    bool top)
{
	struct manifest *m = ld->m;
	struct node *root;
	const char *file;

	strlist_push(&m->files, display);
	file = m->files.v[m->files.n - 1];
	if (yaml_read_tree(file, data, len, &yaml_manifest_opts, &ld->nodes,
	        &root, ld->err) < 0)
		return -1;
	vars_add_source(&ld->vars, file, data, len);
	m->roots = xreallocarray(m->roots, m->nroots + 1, sizeof(*m->roots));
	m->roots[m->nroots++] = root;
	return process_file(ld, root, top);
}

/*
 * Reads and loads one file; `at` is the include entry that named it (NULL
 * for the top file), where a file that cannot be read is reported.
 */
static int
load_file(struct loader *ld, const char *display, const char *real,
    const struct node *at)
{
	struct buf *b;
	int rc;

	ld->bufs = xreallocarray(ld->bufs, ld->nbufs + 1, sizeof(*ld->bufs));
	b = &ld->bufs[ld->nbufs++];
	if (yaml_read_file(real, display, &yaml_manifest_opts, b, ld->err) <
	    0) {
		size_t n = strlen(display);

		if (at != NULL && ld->err->code == SH_ERR_IO &&
		    strncmp(ld->err->msg, display, n) == 0 &&
		    ld->err->msg[n] == ':' && ld->err->msg[n + 1] == ' ') {
			char *why = xstrdup(ld->err->msg + n + 2);

			node_err(ld->err, at, "cannot include '%s': %s",
			    at->str, why);
			free(why);
		}
		return -1;
	}
	strlist_push(&ld->chain, real);
	strlist_push(&ld->names, display);
	rc = load_bytes(ld, display, b->data, b->len, at == NULL);
	free(ld->chain.v[--ld->chain.n]);
	free(ld->names.v[--ld->names.n]);
	return rc;
}

/* ============================================================ includes */

static void
push_components(struct strlist *parts, const char *p, bool absolute)
{
	const char *s = p;

	while (*s != '\0') {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		if ((n == 1 && s[0] == '.') || n == 0) {
			/* skip */
		} else if (n == 2 && s[0] == '.' && s[1] == '.' &&
		           parts->n > 0 &&
		           strcmp(parts->v[parts->n - 1], "..") != 0) {
			free(parts->v[--parts->n]);
		} else if (!(n == 2 && s[0] == '.' && s[1] == '.' && absolute &&
		               parts->n == 0)) {
			strlist_push_owned(parts, xstrndup(s, n));
		}
		s += n + (e != NULL);
	}
}

/* Display name: `inc` relative to the directory of `from`, tidied. */
static char *
display_join(const char *from, const char *inc)
{
	struct strlist parts = { NULL, 0 };
	const char *slash = strrchr(from, '/');
	bool absolute = inc[0] == '/' || (slash != NULL && from[0] == '/');
	struct buf b;
	char *out;

	if (inc[0] != '/' && slash != NULL) {
		char *dir = xstrndup(from, (size_t)(slash - from));

		push_components(&parts, dir, absolute);
		free(dir);
	}
	push_components(&parts, inc, absolute);
	buf_init(&b, (size_t)-1 / 2);
	for (size_t i = 0; i < parts.n; i++)
		buf_addf(&b, "%s%s", i || absolute ? "/" : "", parts.v[i]);
	if (b.len == 0)
		buf_adds(&b, absolute ? "/" : ".");
	strlist_free(&parts);
	out = buf_detach(&b, NULL);
	buf_release(&b);
	return out;
}

/* realpath() of `inc` relative to the directory of the real path `from`. */
static char *
resolve_include(const char *from, const char *inc)
{
	const char *slash = strrchr(from, '/');
	char *joined, *real;

	if (inc[0] == '/' || slash == NULL)
		joined = xstrdup(inc);
	else
		joined = xasprintf("%.*s/%s", (int)(slash - from), from, inc);
	real = realpath(joined, NULL);
	free(joined);
	return real;
}

static bool
inside_root(const char *root, const char *real)
{
	size_t n = strlen(root);

	if (strcmp(root, "/") == 0)
		return true;
	return strncmp(root, real, n) == 0 &&
	       (real[n] == '/' || real[n] == '\0');
}

static int
include_cycle_err(
    struct loader *ld, const struct node *entry, const char *display)
{
	struct buf b;

	buf_init(&b, sizeof(ld->err->msg));
	for (size_t i = 0; i < ld->names.n; i++)
		buf_addf(&b, "%s -> ", ld->names.v[i]);
	buf_adds(&b, display);
	node_err(ld->err, entry, "include cycle: %s", b.data);
	buf_release(&b);
	return -1;
}

static int
include_checks(struct loader *ld, const struct node *entry)
{
	if (entry->type != NODE_SCALAR || node_is_null(entry))
		return node_err(
		    ld->err, entry, "an include must be a file name");
	if (ld->root == NULL)
		return node_err(ld->err, entry,
		    "include '%s' is not allowed here (manifest read from "
		    "memory)",
		    entry->str);
	if (ld->m->files.n >= MANIFEST_MAX_FILES)
		return node_err(ld->err, entry,
		    "more than %u manifest files (with includes)",
		    MANIFEST_MAX_FILES);
	if (ld->chain.n > MANIFEST_MAX_INCLUDE_DEPTH)
		return node_err(ld->err, entry,
		    "includes nested deeper than %u levels",
		    MANIFEST_MAX_INCLUDE_DEPTH);
	return 0;
}

static int
include_file(struct loader *ld, const struct node *entry)
{
	char *display = NULL, *real = NULL;
	int rc = -1;

	if (include_checks(ld, entry) < 0)
		return -1;
	display = display_join(entry->file, entry->str);
	real = resolve_include(ld->chain.v[ld->chain.n - 1], entry->str);
	if (real == NULL) {
		node_err(ld->err, entry, "cannot include '%s': %s", entry->str,
		    strerror(errno));
	} else if (!inside_root(ld->root, real)) {
		node_err(ld->err, entry,
		    "include '%s' resolves to '%s', outside the include root "
		    "'%s'",
		    entry->str, real, ld->root);
	} else if (strlist_has(&ld->chain, real)) {
		include_cycle_err(ld, entry, display);
	} else {
		rc = load_file(ld, display, real, entry);
	}
	free(display);
	free(real);
	return rc;
}

static int
load_includes(struct loader *ld, const struct node *list)
{
	if (list == NULL || node_is_null(list))
		return 0;
	if (node_expect(list, NODE_SEQ, "'include'", ld->err) < 0)
		return -1;
	for (size_t i = 0; i < list->n; i++)
		if (include_file(ld, list->items[i]) < 0)
			return -1;
	return 0;
}

/* ======================================================= interpolation */

/* Every scalar value below n (vars.c), with this step's shell text. */
static int
interp_tree(struct loader *ld, struct node *n)
{
	ld->vars.shell = ld->shell;
	ld->vars.nshell = ld->nshell;
	return vars_interp(&ld->vars, n);
}

/* ============================================================== steps */

static int
unknown_step_key(struct loader *ld, const struct node *k)
{
	const struct step_kind *const *kinds = ld->kinds;
	struct buf b;
	bool close = false;

	for (size_t i = 0; kinds[i] != NULL && !close; i++)
		close = edit_distance(k->str, kinds[i]->name) <= 2;
	if (!close)
		return node_err(ld->err, k, "unknown key '%s' in step", k->str);
	buf_init(&b, 512);
	kinds_list(ld->kinds, &b);
	node_err(ld->err, k, "unknown key '%s' in step (step kinds are: %s)",
	    k->str, b.data);
	buf_release(&b);
	return -1;
}

static int
step_kind_of(struct loader *ld, const struct node *map,
    const struct step_kind **kind, const struct node **body)
{
	const struct node *first = NULL;
	struct buf b;

	*kind = NULL;
	*body = NULL;
	for (size_t i = 0; i < map->n; i++) {
		const struct node *k = map->keys[i];
		const struct step_kind *sk;

		if (in_list(k->str, step_keys))
			continue;
		if ((sk = step_kind_find(ld->kinds, k->str)) == NULL)
			return unknown_step_key(ld, k);
		if (first != NULL)
			return node_err(ld->err, k,
			    "step has two kinds: '%s' "
			    "(line %u) and '%s'",
			    first->str, first->line, k->str);
		first = k;
		*kind = sk;
		*body = map->items[i];
	}
	if (*kind != NULL)
		return 0;
	buf_init(&b, 512);
	kinds_list(ld->kinds, &b);
	node_err(ld->err, map, "step has no kind; add one of: %s", b.data);
	buf_release(&b);
	return -1;
}

static int
step_become(struct loader *ld, struct step *st)
{
	const struct node *v = node_get(st->node, "become");
	struct errbuf scratch;
	bool b;

	st->become = NULL;
	if (v == NULL) {
		st->become = xstrdup("root");
		return 0;
	}
	if (v->type == NODE_SCALAR && v->plain &&
	    node_as_bool(v, &b, &scratch) == 0) {
		st->become = b ? xstrdup("root") : NULL;
		return 0;
	}
	if (v->type != NODE_SCALAR || !valid_word(v->str, false) ||
	    node_is_null(v))
		return node_err(ld->err, v,
		    "'become' must be a user name, true (root) or false");
	st->become = xstrdup(v->str);
	return 0;
}

static void
trim(const char **p, size_t *len)
{
	while (*len > 0 && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*len)--;
	}
	while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
		(*len)--;
}

/* One side of A == B: trimmed, then one pair of double quotes removed. */
static void
when_side(const char *p, size_t len, const char **out, size_t *olen)
{
	trim(&p, &len);
	if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
		p++;
		len -= 2;
	}
	*out = p;
	*olen = len;
}

static bool
word_in(const char *p, size_t len, const char *const *words)
{
	for (size_t i = 0; words[i] != NULL; i++)
		if (strlen(words[i]) == len && memcmp(words[i], p, len) == 0)
			return true;
	return false;
}

static int
when_eval(struct loader *ld, const struct node *v, bool *out)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes",
		"YES", "1", NULL };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No",
		"NO", "0", "", NULL };
	const char *p = v->str, *a, *b;
	size_t len = v->len, al, bl;

	for (size_t i = 0; i + 1 < len; i++) {
		if ((p[i] != '=' && p[i] != '!') || p[i + 1] != '=')
			continue;
		when_side(p, i, &a, &al);
		when_side(p + i + 2, len - i - 2, &b, &bl);
		*out = (al == bl && memcmp(a, b, al) == 0) == (p[i] == '=');
		return 0;
	}
	trim(&p, &len);
	if (word_in(p, len, yes) || word_in(p, len, no)) {
		*out = word_in(p, len, yes);
		return 0;
	}
	return node_err(ld->err, v,
	    "cannot evaluate 'when: %s' (expected "
	    "true, false, yes, no, 1, 0, or A == B, A != B)",
	    v->str);
}

static int
step_when(struct loader *ld, struct step *st)
{
	const struct node *v = node_get(st->node, "when");

	st->enabled = true;
	if (v == NULL)
		return 0;
	if (v->type != NODE_SCALAR)
		return node_err(ld->err, v, "'when' must be a scalar, not a %s",
		    node_type_name(v->type));
	st->when = xstrdup(v->str);
	return when_eval(ld, v, &st->enabled);
}

/* An optional whole number in [min, max]; *out keeps its value if absent. */
static int
step_num(struct loader *ld, const struct node *map, const char *key,
    uint64_t min, uint64_t max, unsigned *out)
{
	const struct node *v = node_get(map, key);
	uint64_t n;

	if (v == NULL)
		return 0;
	if (v->type != NODE_SCALAR || parse_u64(v->str, v->len, max, &n) < 0 ||
	    n < min)
		return node_err(ld->err, v,
		    "'%s' must be a whole number from "
		    "%llu to %llu",
		    key, (unsigned long long)min, (unsigned long long)max);
	*out = (unsigned)n;
	return 0;
}

static int
step_common(struct loader *ld, struct step *st)
{
	const struct node *map = st->node;

	if (node_req_str(map, "name", &st->name, ld->err) < 0)
		return -1;
	if (st->name[0] == '\0')
		return node_err(ld->err, node_get(map, "name"),
		    "a step name must not be empty");
	if (step_become(ld, st) < 0 || step_when(ld, st) < 0)
		return -1;
	if (node_opt_strlist(map, "tags", &st->tags, ld->err) < 0)
		return -1;
	if (step_num(ld, map, "timeout", 1, STEP_MAX_TIMEOUT_S,
	        &st->timeout_s) < 0 ||
	    step_num(ld, map, "retries", 0, STEP_MAX_RETRIES, &st->retries) <
	        0 ||
	    step_num(ld, map, "retry_delay", 0, STEP_MAX_TIMEOUT_S,
	        &st->retry_delay_s) < 0)
		return -1;
	if (node_opt_bool(
	        map, "expect_disconnect", &st->expect_disconnect, ld->err) < 0)
		return -1;
	st->changed_when = STEP_CHANGED_AS_REPORTED;
	if (node_get(map, "changed_when") != NULL) {
		bool v = false;

		if (node_opt_bool(map, "changed_when", &v, ld->err) < 0)
			return -1;
		st->changed_when = v ? STEP_CHANGED_ALWAYS : STEP_CHANGED_NEVER;
	}
	return 0;
}

/*
 * The fields of a step that a shell parses as code, so that a raw ${var}
 * in them is warned about: the kind names them (kind->code). Every other
 * field is data that the step code passes through sh_quote() itself.
 */
static void
shell_text_of(
    struct loader *ld, const struct step_kind *kind, const struct node *body)
{
	ld->nshell = 0;
	if (kind->code != NULL)
		ld->nshell = kind->code(body, ld->shell, SHELL_TEXT_MAX);
}

/*
 * What every kind's parse would otherwise repeat: the body's type (a map,
 * or also a scalar for STEP_BODY_SCALAR), its keys, the zeroed cfg.
 */
static int
step_parse(struct loader *ld, struct step *st, const struct step_kind *kind,
    const struct node *body)
{
	void *cfg;

	if (kind->flags & STEP_BODY_SCALAR) {
		if (body->type != NODE_SCALAR && body->type != NODE_MAP)
			return node_err(ld->err, body,
			    "%s: expected a script or a map, got a %s",
			    kind->name, node_type_name(body->type));
	} else if (body->type != NODE_MAP)
		return node_err(ld->err, body, "%s must be a map, not a %s",
		    kind->name, node_type_name(body->type));
	if (body->type == NODE_MAP &&
	    node_check_keys(body, kind->keys, ld->err) < 0)
		return -1;
	cfg = xcalloc(1, kind->cfg_size);
	if (kind->parse(body, cfg, ld->err) < 0) {
		/* parse may have filled part of cfg: release it. */
		if (kind->release != NULL)
			kind->release(cfg);
		free(cfg);
		return -1;
	}
	st->cfg = cfg;
	return 0;
}

static int
step_build(struct loader *ld, struct step *st, struct node *map)
{
	const struct step_kind *kind;
	const struct node *body;

	st->node = map;
	if (step_kind_of(ld, map, &kind, &body) < 0)
		return -1;
	shell_text_of(ld, kind, body);
	if (interp_tree(ld, map) < 0 || step_common(ld, st) < 0)
		return -1;
	st->kind = kind;
	st->body = body;
	return step_parse(ld, st, kind, body);
}

static int
check_dup_names(struct loader *ld)
{
	struct manifest *m = ld->m;
	struct yaml_name *v = xcalloc(m->nsteps, sizeof(*v));
	const struct yaml_name *a, *b;
	int rc = 0;

	for (size_t i = 0; i < m->nsteps; i++)
		v[i] = (struct yaml_name){ m->steps[i].name,
			node_get(m->steps[i].node, "name"), i };
	if (yaml_first_dup(v, m->nsteps, &a, &b))
		rc = node_err(ld->err, b->n,
		    "duplicate step name '%s' (first "
		    "at %s:%u:%u)",
		    b->s, a->n->file, a->n->line, a->n->col);
	free(v);
	return rc;
}

static int
build_steps(struct loader *ld)
{
	struct manifest *m = ld->m;

	m->steps = xcalloc(ld->nraw, sizeof(*m->steps));
	for (size_t i = 0; i < ld->nraw; i++) {
		m->nsteps = i + 1;
		m->steps[i].index = i;
		m->steps[i].rescue = ld->raw_rescue[i];
		if (step_build(ld, &m->steps[i], ld->raw[i]) < 0)
			return -1;
	}
	return check_dup_names(ld);
}

/* ========================================================== load/free */

static const struct manifest_opts no_opts;

static void
loader_init(struct loader *ld, struct manifest *m,
    const struct step_kind *const *kinds, const struct manifest_opts *opts,
    struct errbuf *err)
{
	memset(ld, 0, sizeof(*ld));
	ld->m = m;
	ld->kinds = kinds;
	ld->opts = opts != NULL ? opts : &no_opts;
	ld->err = err;
	vars_init(&ld->vars, m, err);
}

static void
loader_free(struct loader *ld)
{
	for (size_t i = 0; i < ld->nbufs; i++)
		buf_release(&ld->bufs[i]);
	free(ld->bufs);
	vars_release(&ld->vars);
	free(ld->raw);
	free(ld->raw_rescue);
	free(ld->root);
	strlist_free(&ld->chain);
	strlist_free(&ld->names);
}

/* Pass 2: everything that needs the final variables. */
static int
resolve(struct loader *ld)
{
	if (vars_resolve(&ld->vars, ld->opts) < 0)
		return -1;
	return build_steps(ld);
}

static int
finish(struct loader *ld, int rc, struct manifest **out)
{
	if (rc == 0)
		rc = resolve(ld);
	loader_free(ld);
	if (rc < 0) {
		manifest_free(ld->m);
		return -1;
	}
	*out = ld->m;
	return 0;
}

/* Parent of the directory holding `real`, the default include root. */
static char *
default_root(const char *real)
{
	char *r = xstrdup(real);

	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(r, '/');

		if (slash == NULL || slash == r) {
			r[0] = '/'; /* realpath() is absolute: r has 2 bytes */
			r[1] = '\0';
		} else {
			*slash = '\0';
		}
	}
	return r;
}

static int
setup_root(struct loader *ld, const char *path, char **real)
{
	const char *root = ld->opts->include_root;

	*real = realpath(path, NULL);
	if (*real == NULL)
		return err_set(
		    ld->err, SH_ERR_IO, "%s: %s", path, strerror(errno));
	if (root == NULL) {
		ld->root = default_root(*real);
		return 0;
	}
	ld->root = realpath(root, NULL);
	if (ld->root == NULL)
		return err_set(ld->err, SH_ERR_USAGE, "include root '%s': %s",
		    root, strerror(errno));
	return 0;
}

int
manifest_load(const char *path, const struct step_kind *const *kinds,
    const struct manifest_opts *opts, struct manifest **out, struct errbuf *err)
{
	struct manifest *m = xcalloc(1, sizeof(*m));
	struct loader ld;
	char *real = NULL;
	int rc;

	*out = NULL;
	m->path = xstrdup(path);
	loader_init(&ld, m, kinds, opts, err);
	rc = setup_root(&ld, path, &real);
	if (rc == 0)
		rc = load_file(&ld, path, real, NULL);
	free(real);
	return finish(&ld, rc, out);
}

int
manifest_load_mem(const char *name, const char *data, size_t len,
    const struct step_kind *const *kinds, const struct manifest_opts *opts,
    struct manifest **out, struct errbuf *err)
{
	struct manifest *m = xcalloc(1, sizeof(*m));
	struct loader ld;
	int rc;

	*out = NULL;
	m->path = xstrdup(name);
	loader_init(&ld, m, kinds, opts, err);
	rc = load_bytes(&ld, name, data, len, true);
	return finish(&ld, rc, out);
}

void
manifest_free(struct manifest *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nsteps; i++) {
		struct step *st = &m->steps[i];

		if (st->kind != NULL && st->cfg != NULL &&
		    st->kind->release != NULL)
			st->kind->release(st->cfg);
		free(st->cfg);
		free(st->become);
		free(st->when);
		strlist_free(&st->tags);
	}
	free(m->steps);
	for (size_t i = 0; i < m->nvars; i++) {
		if (m->vars[i].value != NULL)
			explicit_bzero(
			    m->vars[i].value, strlen(m->vars[i].value));
		free(m->vars[i].name);
		free(m->vars[i].value);
		free(m->vars[i].origin);
	}
	free(m->vars);
	for (size_t i = 0; i < m->nroots; i++)
		node_free(m->roots[i]);
	free(m->roots);
	strlist_free(&m->files);
	strlist_free(&m->warnings);
	free(m->path);
	free(m->stage);
	free(m->description);
	free(m);
}
