/*
 * node.c: typed, position-aware accessors over the YAML tree that
 * yaml.c builds (see node.h for the contract).
 *
 * Conventions shared by every accessor here:
 *  - a plain `~`, `null` or empty scalar counts as absent for the optional
 *    accessors (so `cwd:` with nothing after it keeps the default);
 *  - optional accessors leave *out alone when the key is absent and clear
 *    it when they fail, so a caller never sees a half-converted value;
 *  - every error names the key and points at the offending node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/node.h"

const char *
node_type_name(enum node_type t)
{
	switch (t) {
	case NODE_SCALAR:
		return "scalar";
	case NODE_SEQ:
		return "sequence";
	case NODE_MAP:
		return "map";
	}
	return "node";
}

int
node_err(struct errbuf *err, const struct node *n, const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b, sizeof(err->msg));
	va_start(ap, fmt);
	buf_vaddf(&b, fmt, ap); /* too long: keep what fits below */
	va_end(ap);
	if (n != NULL)
		err_set(err, SH_ERR_MANIFEST, "%s:%u:%u: %s", n->file, n->line,
		    n->col, b.data);
	else
		err_set(err, SH_ERR_MANIFEST, "%s", b.data);
	buf_release(&b);
	return -1;
}

bool
node_is_null(const struct node *n)
{
	if (n->type != NODE_SCALAR || !n->plain)
		return false;
	return n->len == 0 || strcmp(n->str, "~") == 0 ||
	       strcmp(n->str, "null") == 0 || strcmp(n->str, "Null") == 0 ||
	       strcmp(n->str, "NULL") == 0;
}

static ptrdiff_t
node_index(const struct node *map, const char *key)
{
	if (map == NULL || map->type != NODE_MAP)
		return -1;
	for (size_t i = 0; i < map->n; i++)
		if (strcmp(map->keys[i]->str, key) == 0)
			return (ptrdiff_t)i;
	return -1;
}

const struct node *
node_get(const struct node *map, const char *key)
{
	ptrdiff_t i = node_index(map, key);

	return i < 0 ? NULL : map->items[i];
}

const struct node *
node_key(const struct node *map, const char *key)
{
	ptrdiff_t i = node_index(map, key);

	return i < 0 ? NULL : map->keys[i];
}

static bool
key_allowed(const char *key, const char *const *allowed)
{
	for (size_t i = 0; allowed[i] != NULL; i++)
		if (strcmp(allowed[i], key) == 0)
			return true;
	return false;
}

int
node_check_keys(
    const struct node *map, const char *const *allowed, struct errbuf *err)
{
	struct buf list;

	if (node_expect(map, NODE_MAP, "this", err) < 0)
		return -1;
	for (size_t i = 0; i < map->n; i++) {
		const struct node *k = map->keys[i];

		if (key_allowed(k->str, allowed))
			continue;
		buf_init(&list, 512);
		for (size_t j = 0; allowed[j] != NULL; j++)
			buf_addf(&list, "%s%s", j ? ", " : "", allowed[j]);
		node_err(err, k, "unknown key '%s' (expected one of: %s)",
		    k->str, list.data);
		buf_release(&list);
		return -1;
	}
	return 0;
}

int
node_expect(const struct node *n, enum node_type t, const char *what,
    struct errbuf *err)
{
	if (n == NULL)
		return err_set(err, SH_ERR_MANIFEST, "%s is missing", what);
	if (n->type == t)
		return 0;
	return node_err(err, n, "%s must be a %s, not a %s", what,
	    node_type_name(t), node_type_name(n->type));
}

/* ---------------------------------------------------------- scalars */

/* The scalar under key, NULL when absent or null. */
static int
opt_scalar(const struct node *map, const char *key, const struct node **out,
    struct errbuf *err)
{
	const struct node *v = node_get(map, key);

	*out = NULL;
	if (v == NULL || node_is_null(v))
		return 0;
	if (v->type != NODE_SCALAR)
		return node_err(err, v, "'%s' must be a scalar, not a %s", key,
		    node_type_name(v->type));
	*out = v;
	return 0;
}

int
node_req_str(const struct node *map, const char *key, const char **out,
    struct errbuf *err)
{
	const struct node *v;

	*out = NULL;
	if (node_expect(map, NODE_MAP, "this", err) < 0)
		return -1;
	if (opt_scalar(map, key, &v, err) < 0)
		return -1;
	if (v == NULL) {
		const struct node *at = node_get(map, key);

		return node_err(err, at != NULL ? at : map,
		    "missing required key '%s'", key);
	}
	*out = v->str;
	return 0;
}

int
node_opt_str(const struct node *map, const char *key, const char **out,
    struct errbuf *err)
{
	const struct node *v;

	if (opt_scalar(map, key, &v, err) < 0) {
		*out = NULL;
		return -1;
	}
	if (v != NULL)
		*out = v->str;
	return 0;
}

static int
scalar_bool(const struct node *n, bool *out)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes",
		"YES", NULL };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No",
		"NO", NULL };

	if (n->type != NODE_SCALAR || !n->plain)
		return -1;
	if (key_allowed(n->str, yes)) {
		*out = true;
		return 0;
	}
	if (key_allowed(n->str, no)) {
		*out = false;
		return 0;
	}
	return -1;
}

int
node_as_bool(const struct node *n, bool *out, struct errbuf *err)
{
	*out = false;
	if (scalar_bool(n, out) == 0)
		return 0;
	if (n->type != NODE_SCALAR)
		return node_err(err, n, "expected true or false, not a %s",
		    node_type_name(n->type));
	return node_err(err, n, "expected true or false%s, got '%s'",
	    n->plain ? "" : " (unquoted)", n->str);
}

int
node_opt_bool(
    const struct node *map, const char *key, bool *out, struct errbuf *err)
{
	const struct node *v = node_get(map, key);

	if (v == NULL || node_is_null(v))
		return 0;
	if (scalar_bool(v, out) == 0)
		return 0;
	*out = false;
	if (v->type != NODE_SCALAR)
		return node_err(err, v, "'%s' must be true or false, not a %s",
		    key, node_type_name(v->type));
	return node_err(err, v, "'%s' must be true or false%s, got '%s'", key,
	    v->plain ? "" : " (unquoted)", v->str);
}

int
node_as_u64(
    const struct node *n, uint64_t max, uint64_t *out, struct errbuf *err)
{
	*out = 0;
	if (n->type != NODE_SCALAR)
		return node_err(err, n, "expected a number, not a %s",
		    node_type_name(n->type));
	if (parse_u64(n->str, n->len, max, out) < 0)
		return node_err(err, n,
		    "expected a whole number from 0 to %llu, got '%s'",
		    (unsigned long long)max, n->str);
	return 0;
}

int
node_opt_u64(const struct node *map, const char *key, uint64_t max,
    uint64_t *out, struct errbuf *err)
{
	const struct node *v = node_get(map, key);

	if (v == NULL || node_is_null(v))
		return 0;
	if (v->type != NODE_SCALAR || parse_u64(v->str, v->len, max, out) < 0) {
		*out = 0;
		return node_err(err, v,
		    "'%s' must be a whole number from 0 to %llu, got %s%s%s",
		    key, (unsigned long long)max,
		    v->type == NODE_SCALAR ? "'" : "a ",
		    v->type == NODE_SCALAR ? v->str : node_type_name(v->type),
		    v->type == NODE_SCALAR ? "'" : "");
	}
	return 0;
}

int
node_opt_mode(const struct node *map, const char *key, unsigned *out, bool *set,
    struct errbuf *err)
{
	const struct node *v;

	*set = false;
	if (opt_scalar(map, key, &v, err) < 0) {
		*out = 0;
		return -1;
	}
	if (v == NULL)
		return 0;
	if (parse_mode(v->str, v->len, out) < 0)
		return node_err(err, v,
		    "'%s' must be an octal mode like 0755, got '%s'", key,
		    v->str);
	*set = true;
	return 0;
}

int
node_opt_strlist(const struct node *map, const char *key, struct strlist *out,
    struct errbuf *err)
{
	const struct node *v = node_get(map, key);
	struct strlist l = { NULL, 0 };

	if (v == NULL || node_is_null(v))
		return 0;
	if (v->type == NODE_SCALAR) {
		strlist_push(&l, v->str);
	} else if (v->type == NODE_SEQ) {
		for (size_t i = 0; i < v->n; i++) {
			const struct node *it = v->items[i];

			if (it->type != NODE_SCALAR) {
				strlist_free(&l);
				strlist_free(out);
				return node_err(err, it,
				    "'%s' items must be scalars, not a %s", key,
				    node_type_name(it->type));
			}
			strlist_push(&l, it->str);
		}
	} else {
		strlist_free(out);
		return node_err(err, v,
		    "'%s' must be a string or a list of strings, not a map",
		    key);
	}
	strlist_free(out);
	*out = l;
	return 0;
}

void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->n; i++) {
		node_free(n->items[i]);
		if (n->keys != NULL)
			node_free(n->keys[i]);
	}
	free(n->items);
	free(n->keys);
	free(n->str);
	free(n);
}
