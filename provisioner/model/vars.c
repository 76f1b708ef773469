/*
 * vars.c: a manifest's variables and ${var} interpolation (see vars.h;
 * the rules are in manifest.h).
 *
 * Variables live in m->vars, each with where its value came from. Files
 * define defaults as the loader reads them; vars_resolve() then applies
 * what the command line and the environment say, so every value is final
 * before the first step is interpolated.
 *
 * Interpolation rewrites scalars in place (the tree is the manifest's).
 * Errors and warnings point at the `${` itself when the source shows the
 * value verbatim there, which is why the files' bytes are kept.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/vars.h"
#include "model/yaml.h"
#include "util/limits.h"

#define ENV_PREFIX "STAGEHAND_VAR_"

static unsigned
to_uint(size_t v)
{
	return v >= (unsigned)-1 ? (unsigned)-1 : (unsigned)v;
}

static bool
valid_var_name(const char *s, size_t len)
{
	if (len == 0 || len > MANIFEST_MAX_NAME || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* ============================================================ context */

void
vars_init(struct vars_ctx *vc, struct manifest *m, struct errbuf *err)
{
	memset(vc, 0, sizeof(*vc));
	vc->m = m;
	vc->err = err;
}

void
vars_release(struct vars_ctx *vc)
{
	free(vc->defs);
	free(vc->src);
	vc->defs = NULL;
	vc->src = NULL;
	vc->ndefs = vc->nsrc = 0;
}

void
vars_add_source(
    struct vars_ctx *vc, const char *file, const char *data, size_t len)
{
	vc->src = xreallocarray(vc->src, vc->nsrc + 1, sizeof(*vc->src));
	vc->src[vc->nsrc++] = (struct vars_source){ file, data, len };
}

/* ========================================================== variables */

static struct var *
var_find(const struct manifest *m, const char *name)
{
	for (size_t i = 0; i < m->nvars; i++)
		if (strcmp(m->vars[i].name, name) == 0)
			return &m->vars[i];
	return NULL;
}

/* Adds or returns the variable; NULL when MANIFEST_MAX_VARS is reached. */
static struct var *
var_get(struct manifest *m, const char *name)
{
	struct var *v = var_find(m, name);

	if (v != NULL)
		return v;
	if (m->nvars >= MANIFEST_MAX_VARS)
		return NULL;
	m->vars = xreallocarray(m->vars, m->nvars + 1, sizeof(*m->vars));
	v = &m->vars[m->nvars++];
	memset(v, 0, sizeof(*v));
	v->name = xstrdup(name);
	return v;
}

static void
var_assign(struct var *v, const char *value, char *origin)
{
	if (v->value != NULL) {
		explicit_bzero(v->value, strlen(v->value));
		free(v->value);
	}
	free(v->origin);
	v->value = xstrdup(value);
	v->origin = origin;
}

int
vars_define(struct vars_ctx *vc, const struct node *vars)
{
	if (vars == NULL || node_is_null(vars))
		return 0;
	if (node_expect(vars, NODE_MAP, "'vars'", vc->err) < 0)
		return -1;
	for (size_t i = 0; i < vars->n; i++) {
		const struct node *k = vars->keys[i], *val = vars->items[i];
		struct var *v;

		if (!valid_var_name(k->str, k->len))
			return node_err(vc->err, k,
			    "invalid variable name '%s' (use letters, digits "
			    "and _, not starting with a digit)",
			    k->str);
		if (val->type != NODE_SCALAR)
			return node_err(vc->err, val,
			    "variable '%s' must be a scalar, not a %s", k->str,
			    node_type_name(val->type));
		if ((v = var_get(vc->m, k->str)) == NULL)
			return node_err(vc->err, k, "more than %u variables",
			    MANIFEST_MAX_VARS);
		var_assign(v, node_is_null(val) ? "" : val->str,
		    xasprintf("%s:%u:%u", k->file, k->line, k->col));
		vc->defs =
		    xreallocarray(vc->defs, vc->ndefs + 1, sizeof(*vc->defs));
		vc->defs[vc->ndefs++] = k;
	}
	return 0;
}

int
vars_secrets(struct vars_ctx *vc, const struct node *list)
{
	if (list == NULL || node_is_null(list))
		return 0;
	if (node_expect(list, NODE_SEQ, "'secrets'", vc->err) < 0)
		return -1;
	for (size_t i = 0; i < list->n; i++) {
		const struct node *s = list->items[i];
		struct var *v;

		if (s->type != NODE_SCALAR || !valid_var_name(s->str, s->len))
			return node_err(
			    vc->err, s, "secrets must list variable names");
		if ((v = var_get(vc->m, s->str)) == NULL)
			return node_err(vc->err, s, "more than %u variables",
			    MANIFEST_MAX_VARS);
		v->secret = true;
	}
	return 0;
}

/* ======================================================= overrides */

static int
check_secret_defaults(struct vars_ctx *vc)
{
	for (size_t i = 0; i < vc->ndefs; i++) {
		const struct var *v = var_find(vc->m, vc->defs[i]->str);

		if (v != NULL && v->secret)
			return node_err(vc->err, vc->defs[i],
			    "secret '%s' must not have a default in vars; "
			    "set STAGEHAND_VAR_%s or use --vars-file",
			    v->name, v->name);
	}
	return 0;
}

static int
override(struct vars_ctx *vc, const char *name, size_t nlen, const char *value,
    const char *origin)
{
	char *n = xstrndup(name, nlen);
	struct var *v;
	int rc = 0;

	if (!valid_var_name(n, nlen)) {
		rc = err_set(vc->err, SH_ERR_USAGE,
		    "%s: invalid variable name '%s'", origin, n);
	} else if ((v = var_get(vc->m, n)) == NULL) {
		rc = err_set(vc->err, SH_ERR_USAGE,
		    "%s: more than %u variables", origin, MANIFEST_MAX_VARS);
	} else if (v->secret && strcmp(origin, "--var") == 0) {
		rc = err_set(vc->err, SH_ERR_USAGE,
		    "secret '%s' must not be given on the command line; use "
		    "STAGEHAND_VAR_%s or --vars-file",
		    n, n);
	} else {
		var_assign(v, value, xstrdup(origin));
	}
	free(n);
	return rc;
}

static int
apply_env(struct vars_ctx *vc)
{
	size_t plen = strlen(ENV_PREFIX);

	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *name, *eq;

		if (!str_has_prefix(*e, ENV_PREFIX))
			continue;
		name = *e + plen;
		eq = strchr(name, '=');
		if (eq == NULL || !valid_var_name(name, (size_t)(eq - name)))
			continue; /* not ours to judge */
		if (override(vc, name, (size_t)(eq - name), eq + 1, "env") < 0)
			return -1;
	}
	return 0;
}

/* Precedence: vars files < STAGEHAND_VAR_* < --var. */
static int
apply_overrides(struct vars_ctx *vc, const struct manifest_opts *o)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < o->nvars; i++) {
			const struct var_override *v = &o->vars[i];
			const char *origin = v->origin ? v->origin : "--var";
			bool cli = strcmp(origin, "--var") == 0;

			if (cli != (pass == 1) || v->name == NULL ||
			    v->value == NULL)
				continue;
			if (override(vc, v->name, strlen(v->name), v->value,
			        origin) < 0)
				return -1;
		}
		if (pass == 0 && o->env_vars && apply_env(vc) < 0)
			return -1;
	}
	return 0;
}

int
vars_resolve(struct vars_ctx *vc, const struct manifest_opts *opts)
{
	if (check_secret_defaults(vc) < 0)
		return -1;
	return apply_overrides(vc, opts);
}

/* ======================================================= interpolation */

static const struct vars_source *
find_source(const struct vars_ctx *vc, const char *file)
{
	for (size_t i = 0; i < vc->nsrc; i++)
		if (vc->src[i].file == file)
			return &vc->src[i];
	return NULL;
}

/*
 * Column of byte `off` of a scalar's value, when the source shows the value
 * verbatim up to there on the scalar's first line (plain, or quoted with no
 * escapes before it); otherwise the scalar's own column.
 */
static unsigned
exact_col(const struct vars_ctx *vc, const struct node *n, size_t off)
{
	const struct vars_source *s = find_source(vc, n->file);
	size_t i = 0, line = 1, c = 1, chars = 0;

	if (s == NULL || memchr(n->str, '\n', off) != NULL)
		return n->col;
	for (; i < s->len && line < n->line; i++)
		if (s->data[i] == '\n')
			line++;
	for (; i < s->len && c < n->col; i++)
		if (((unsigned char)s->data[i] & 0xc0) != 0x80)
			c++;
	if (i < s->len && !n->plain &&
	    (s->data[i] == '"' || s->data[i] == '\'')) {
		i++;
		chars++;
	}
	if (s->len - i < off || memcmp(s->data + i, n->str, off) != 0)
		return n->col;
	for (size_t k = 0; k < off; k++)
		chars += ((unsigned char)n->str[k] & 0xc0) != 0x80;
	return to_uint(n->col + chars);
}

static int interp_err(struct vars_ctx *vc, const struct node *n, size_t off,
    const char *fmt, ...) ATTR_PRINTF(4, 5);

static int
interp_err(
    struct vars_ctx *vc, const struct node *n, size_t off, const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b, sizeof(vc->err->msg));
	va_start(ap, fmt);
	buf_vaddf(&b, fmt, ap); /* too long: the prefix still helps */
	va_end(ap);
	err_set(vc->err, SH_ERR_MANIFEST, "%s:%u:%u: %s", n->file, n->line,
	    exact_col(vc, n, off), b.data);
	buf_release(&b);
	return -1;
}

/* Byte offset of the start of 1-based `line` in s; s->len when past it. */
static size_t
source_line(const struct vars_source *s, size_t line)
{
	size_t i = 0;

	for (size_t l = 1; i < s->len && l < line; i++)
		if (s->data[i] == '\n')
			l++;
	return i;
}

/*
 * Line and column of byte `off` of a literal block scalar (`|`), whose
 * lines are the source lines after the indicator, indentation removed.
 * False when the source does not show the value that way (folded, an
 * alias copy...): the caller then uses exact_col().
 */
static bool
block_pos(const struct vars_ctx *vc, const struct node *n, size_t off,
    unsigned *line, unsigned *col)
{
	const struct vars_source *s = find_source(vc, n->file);
	size_t k = 0, bol = 0, i, ind = 0, chars = 0;

	if (s == NULL || n->plain)
		return false;
	i = source_line(s, n->line) + n->col - 1;
	if (i < s->len && s->data[i] == '&') /* an anchor: &name | */
		i += strcspn(s->data + i, " \n");
	while (i < s->len && s->data[i] == ' ')
		i++;
	if (i >= s->len || s->data[i] != '|')
		return false;
	for (size_t j = 0; j < off; j++)
		if (n->str[j] == '\n') {
			k++;
			bol = j + 1;
		}
	/* The block's indentation is that of its first line. */
	i = source_line(s, n->line + 1);
	while (i + ind < s->len && s->data[i + ind] == ' ')
		ind++;
	i = source_line(s, n->line + 1 + k);
	if (s->len - i - ind < off - bol ||
	    memcmp(s->data + i + ind, n->str + bol, off - bol) != 0)
		return false;
	for (size_t j = bol; j < off; j++)
		chars += ((unsigned char)n->str[j] & 0xc0) != 0x80;
	*line = to_uint(n->line + 1 + k);
	*col = to_uint(ind + 1 + chars);
	return true;
}

/*
 * A raw ${name} pasted into shell text is code, not data: warn, naming the
 * safe form. Warnings never fail the load (old manifests keep working);
 * `check` prints them.
 */
static void
interp_warn(struct vars_ctx *vc, const struct node *n, size_t off,
    const char *name, size_t nlen)
{
	struct buf w;
	unsigned line = n->line, col;

	if (!block_pos(vc, n, off, &line, &col))
		col = exact_col(vc, n, off);
	buf_init(&w, 1024);
	buf_addf(&w,
	    "%s:%u:%u: warning: '${%.*s}' is pasted into shell text "
	    "unquoted; write ${%.*s:q} (the value sh-quoted) or pass it "
	    "in env:",
	    n->file, line, col, (int)nlen, name, (int)nlen, name);
	/* An alias copy of a script repeats its anchor's warnings. */
	for (size_t i = 0; i < vc->m->warnings.n; i++)
		if (strcmp(vc->m->warnings.v[i], w.data) == 0) {
			buf_release(&w);
			return;
		}
	strlist_push_owned(&vc->m->warnings, buf_detach(&w, NULL));
	buf_release(&w); /* detach left it empty but allocated */
}

static bool
is_shell_text(const struct vars_ctx *vc, const struct node *n)
{
	for (size_t i = 0; i < vc->nshell; i++) {
		const struct node *f = vc->shell[i];

		if (f == n)
			return true;
		for (size_t k = 0; f->type == NODE_SEQ && k < f->n; k++)
			if (f->items[k] == n)
				return true;
	}
	return false;
}

static const struct var *
interp_lookup(const struct vars_ctx *vc, const char *name, size_t nlen)
{
	for (size_t k = 0; k < vc->m->nvars; k++)
		if (strlen(vc->m->vars[k].name) == nlen &&
		    memcmp(vc->m->vars[k].name, name, nlen) == 0)
			return &vc->m->vars[k];
	return NULL;
}

/*
 * Appends the value of the ${name} or ${name:q} at str[i]; *next is past
 * the '}'. `:q` appends sh_quote(value): one shell word whatever the value.
 */
static int
interp_ref(struct vars_ctx *vc, const struct node *n, size_t i, struct buf *b,
    size_t *next)
{
	const char *name = n->str + i + 2;
	const char *close = memchr(name, '}', n->len - i - 2);
	size_t nlen;
	bool q;
	const struct var *v;

	if (close == NULL)
		return interp_err(vc, n, i,
		    "unterminated '${' (write '$${' "
		    "for a literal '${')");
	nlen = (size_t)(close - name);
	q = nlen > 2 && memcmp(close - 2, ":q", 2) == 0;
	if (q)
		nlen -= 2;
	if (!valid_var_name(name, nlen))
		return interp_err(vc, n, i,
		    "invalid variable reference "
		    "'${%.*s}' (write '$${' for a literal '${')",
		    (int)(close - name > 64 ? 64 : close - name), name);
	v = interp_lookup(vc, name, nlen);
	if (v == NULL)
		return interp_err(
		    vc, n, i, "unknown variable '%.*s'", (int)nlen, name);
	if (v->value == NULL)
		return interp_err(vc, n, i,
		    "secret '%.*s' has no value; set "
		    "STAGEHAND_VAR_%.*s",
		    (int)nlen, name, (int)nlen, name);
	if (!q && is_shell_text(vc, n))
		interp_warn(vc, n, i, name, nlen);
	*next = (size_t)(close - n->str) + 1;
	if (q)
		return sh_quote(b, v->value) < 0 ? 1 : 0;
	return buf_adds(b, v->value) < 0 ? 1 : 0;
}

static int
interp_scalar(struct vars_ctx *vc, struct node *n)
{
	struct buf b;
	size_t i = 0;
	int rc = 0;

	if (memchr(n->str, '$', n->len) == NULL)
		return 0;
	buf_init(&b, MANIFEST_MAX_SCALAR);
	while (i < n->len && rc == 0) {
		const char *p = n->str + i;

		if (n->len - i >= 3 && memcmp(p, "$${", 3) == 0) {
			rc = buf_add(&b, "${", 2) < 0 ? 1 : 0;
			i += 3;
		} else if (n->len - i >= 2 && memcmp(p, "${", 2) == 0) {
			rc = interp_ref(vc, n, i, &b, &i);
		} else {
			rc = buf_addc(&b, *p) < 0 ? 1 : 0;
			i++;
		}
	}
	if (rc > 0)
		rc = node_err(vc->err, n,
		    "value longer than %u bytes after "
		    "interpolation",
		    MANIFEST_MAX_SCALAR);
	if (rc == 0) {
		free(n->str);
		n->str = buf_detach(&b, &n->len);
	}
	buf_release(&b);
	return rc;
}

int
vars_interp(struct vars_ctx *vc, struct node *n)
{
	if (n->type == NODE_SCALAR)
		return interp_scalar(vc, n);
	for (size_t i = 0; i < n->n; i++)
		if (vars_interp(vc, n->items[i]) < 0)
			return -1;
	return 0;
}

const char *
manifest_var(const struct manifest *m, const char *name)
{
	const struct var *v = var_find(m, name);

	return v != NULL ? v->value : NULL;
}

/* ========================================================= vars files */

static int
vars_file_entries(const char *path, const struct node *root,
    struct vars_file *out, struct errbuf *err)
{
	const char *origin;

	if (node_expect(root, NODE_MAP, "a vars file", err) < 0)
		return -1;
	strlist_push(&out->storage, path);
	origin = out->storage.v[out->storage.n - 1];
	out->vars = xcalloc(root->n, sizeof(*out->vars));
	for (size_t i = 0; i < root->n; i++) {
		const struct node *k = root->keys[i], *v = root->items[i];

		if (!valid_var_name(k->str, k->len))
			return node_err(
			    err, k, "invalid variable name '%s'", k->str);
		if (v->type != NODE_SCALAR)
			return node_err(err, v,
			    "variable '%s' must be a scalar,"
			    " not a %s",
			    k->str, node_type_name(v->type));
		strlist_push(&out->storage, k->str);
		out->vars[i].name = out->storage.v[out->storage.n - 1];
		strlist_push(&out->storage, node_is_null(v) ? "" : v->str);
		out->vars[i].value = out->storage.v[out->storage.n - 1];
		out->vars[i].origin = origin;
		out->n = i + 1;
	}
	return 0;
}

int
manifest_vars_file(const char *path, struct vars_file *out, struct errbuf *err)
{
	struct yaml_opts o = yaml_manifest_opts;
	struct buf b;
	struct node *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	o.max_bytes = VARS_FILE_MAX_BYTES;
	rc = yaml_read_file(path, path, &o, &b, err);
	if (rc == 0)
		rc = yaml_read_tree(path, b.data, b.len, &o, NULL, &root, err);
	if (rc == 0)
		rc = vars_file_entries(path, root, out, err);
	node_free(root);
	buf_release(&b);
	if (rc < 0)
		manifest_vars_free(out);
	return rc;
}

void
manifest_vars_free(struct vars_file *vf)
{
	for (size_t i = 0; i < vf->storage.n; i++)
		explicit_bzero(vf->storage.v[i], strlen(vf->storage.v[i]));
	strlist_free(&vf->storage);
	free(vf->vars);
	vf->vars = NULL;
	vf->n = 0;
}
