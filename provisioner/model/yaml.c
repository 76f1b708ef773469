/*
 * yaml.c: the bounded YAML reader (see yaml.h for the contract).
 *
 * The bytes are checked first (size, NUL, UTF-8) so that libyaml only ever
 * sees a plausible text file, and a bad byte is reported where it is
 * rather than where libyaml's reader gave up. Then libyaml's events are
 * turned into nodes by one recursive descent (yp_node), which checks every
 * limit as it goes: nothing is built past the first problem, and a failure
 * frees what was built.
 *
 * The node count includes the copies an alias expands to, and the bytes
 * those copies duplicate are capped too, so a "billion laughs" document
 * fails after at most max_nodes small allocations. An anchor only becomes
 * usable once its node is complete, which rules out recursive aliases.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "model/yaml.h"
#include "util/limits.h"

/* Scalar bytes alias expansion may duplicate per call, in units of
 * max_bytes: it only bounds memory, max_nodes bounds work. */
#define ALIAS_MAX_INPUTS 4u

const struct yaml_opts yaml_manifest_opts = {
	.max_bytes = MANIFEST_MAX_BYTES,
	.max_depth = MANIFEST_MAX_DEPTH,
	.max_nodes = MANIFEST_MAX_NODES,
	.max_aliases = MANIFEST_MAX_ALIASES,
	.code = SH_ERR_MANIFEST,
};

/* ============================================================ positions */

static unsigned
to_uint(size_t v)
{
	return v >= (unsigned)-1 ? (unsigned)-1 : (unsigned)v;
}

static int vpos_err(const struct yaml_opts *o, struct errbuf *err,
    const char *file, unsigned line, unsigned col, const char *fmt, va_list ap)
    ATTR_PRINTF(6, 0);
static int pos_err(const struct yaml_opts *o, struct errbuf *err,
    const char *file, unsigned line, unsigned col, const char *fmt, ...)
    ATTR_PRINTF(6, 7);

static int
vpos_err(const struct yaml_opts *o, struct errbuf *err, const char *file,
    unsigned line, unsigned col, const char *fmt, va_list ap)
{
	struct buf b;

	buf_init(&b, sizeof(err->msg));
	buf_vaddf(&b, fmt, ap); /* too long: the prefix still helps */
	err_set(err, o->code, "%s:%u:%u: %s%s", file, line, col,
	    o->what != NULL ? o->what : "", b.data);
	buf_release(&b);
	return -1;
}

static int
pos_err(const struct yaml_opts *o, struct errbuf *err, const char *file,
    unsigned line, unsigned col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpos_err(o, err, file, line, col, fmt, ap);
	va_end(ap);
	return -1;
}

/* 1-based line and column (in characters) of byte offset off. */
static void
offset_pos(
    const char *data, size_t len, size_t off, unsigned *line, unsigned *col)
{
	size_t l = 1, c = 1;

	for (size_t i = 0; i < off && i < len; i++) {
		unsigned char ch = (unsigned char)data[i];

		if (ch == '\n' ||
		    (ch == '\r' && (i + 1 >= len || data[i + 1] != '\n'))) {
			l++;
			c = 1;
		} else if ((ch & 0xc0) != 0x80 && ch != '\r') {
			c++;
		}
	}
	*line = to_uint(l);
	*col = to_uint(c);
}

/* Offset of the first byte that is not well-formed UTF-8, or len. */
static size_t
utf8_bad_offset(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t n = p[i] < 0x80             ? 1
		           : (p[i] & 0xe0) == 0xc0 ? 2
		           : (p[i] & 0xf0) == 0xe0 ? 3
		           : (p[i] & 0xf8) == 0xf0 ? 4
		                                   : 0;

		if (n == 0 || n > len - i || !utf8_valid(p + i, n))
			return i;
		i += n;
	}
	return len;
}

/* ============================================================== state */

struct anchor {
	char *name;        /* owned */
	struct node *node; /* borrowed from the tree being built */
};

struct yp {
	yaml_parser_t parser;
	const struct yaml_opts *opts;
	const char *file;
	const char *data;
	size_t len;
	size_t *nodes; /* the caller's count, or own_nodes */
	size_t own_nodes;
	size_t aliases;
	size_t alias_bytes;
	struct anchor *anchors;
	size_t nanchors;
	struct errbuf *err;
};

static int yp_node(
    struct yp *yp, yaml_event_t *ev, unsigned depth, struct node **out);
static int yp_drop(struct yp *yp, yaml_event_t *ev, unsigned depth, bool key);

static int yp_err(struct yp *yp, unsigned line, unsigned col, const char *fmt,
    ...) ATTR_PRINTF(4, 5);
static int mark_err(struct yp *yp, yaml_mark_t m, const char *fmt, ...)
    ATTR_PRINTF(3, 4);

static int
yp_err(struct yp *yp, unsigned line, unsigned col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpos_err(yp->opts, yp->err, yp->file, line, col, fmt, ap);
	va_end(ap);
	return -1;
}

static int
mark_err(struct yp *yp, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpos_err(yp->opts, yp->err, yp->file, to_uint(m.line + 1),
	    to_uint(m.column + 1), fmt, ap);
	va_end(ap);
	return -1;
}

/* The bytes must be a plausible text file before libyaml sees them. */
static int
check_bytes(struct yp *yp)
{
	const char *nul;
	unsigned line, col;
	size_t bad;

	if (yp->len > yp->opts->max_bytes)
		return yp_err(yp, 1, 1, "file is larger than %zu bytes",
		    yp->opts->max_bytes);
	if (yp->len == 0)
		return yp_err(yp, 1, 1, "empty file");
	nul = memchr(yp->data, '\0', yp->len);
	if (nul != NULL) {
		offset_pos(
		    yp->data, yp->len, (size_t)(nul - yp->data), &line, &col);
		return yp_err(yp, line, col, "NUL byte in file");
	}
	bad = utf8_bad_offset((const unsigned char *)yp->data, yp->len);
	if (bad < yp->len) {
		offset_pos(yp->data, yp->len, bad, &line, &col);
		return yp_err(yp, line, col, "invalid UTF-8 (byte 0x%02x)",
		    (unsigned char)yp->data[bad]);
	}
	return 0;
}

/* ============================================================ events */

static int
yp_syntax_err(struct yp *yp)
{
	yaml_parser_t *p = &yp->parser;
	const char *problem = p->problem ? p->problem : "YAML syntax error";
	unsigned line = to_uint(p->problem_mark.line + 1);
	unsigned col = to_uint(p->problem_mark.column + 1);

	if (p->error == YAML_READER_ERROR)
		offset_pos(yp->data, yp->len, p->problem_offset, &line, &col);
	if (p->error == YAML_MEMORY_ERROR)
		problem = "out of memory in the YAML parser";
	if (p->context != NULL)
		return yp_err(yp, line, col, "%s (%s at %u:%u)", problem,
		    p->context, to_uint(p->context_mark.line + 1),
		    to_uint(p->context_mark.column + 1));
	return yp_err(yp, line, col, "%s", problem);
}

static int
yp_next(struct yp *yp, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&yp->parser, ev)) {
		memset(ev, 0, sizeof(*ev));
		return yp_syntax_err(yp);
	}
	return 0;
}

/* Only the YAML core schema: anything else could mean "run this". */
static int
yp_tag(struct yp *yp, const yaml_char_t *tag, yaml_mark_t m, bool *is_str)
{
	static const char *const core[] = { "tag:yaml.org,2002:str", "!",
		"tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
		"tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
		"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map", NULL };

	*is_str = false;
	if (tag == NULL)
		return 0;
	for (size_t i = 0; core[i] != NULL; i++) {
		if (strcmp((const char *)tag, core[i]) == 0) {
			*is_str = i < 2;
			return 0;
		}
	}
	return mark_err(yp, m, "unsupported YAML tag '%s'", (const char *)tag);
}

/*
 * What every node's first event must pass, whether the node is built or
 * dropped: the depth, the tag, no NUL in a scalar (unless allowed).
 * *is_str: an explicit string tag.
 */
static int
yp_check(struct yp *yp, const yaml_event_t *ev, unsigned depth, bool *is_str)
{
	const yaml_char_t *tag = NULL;

	*is_str = false;
	if (depth > yp->opts->max_depth)
		return mark_err(yp, ev->start_mark,
		    "nesting deeper than %u levels", yp->opts->max_depth);
	if (ev->type == YAML_SCALAR_EVENT)
		tag = ev->data.scalar.tag;
	else if (ev->type == YAML_SEQUENCE_START_EVENT)
		tag = ev->data.sequence_start.tag;
	else if (ev->type == YAML_MAPPING_START_EVENT)
		tag = ev->data.mapping_start.tag;
	if (yp_tag(yp, tag, ev->start_mark, is_str) < 0)
		return -1;
	/* Escapes like "\0" can put a NUL in a quoted scalar. */
	if (ev->type == YAML_SCALAR_EVENT && !yp->opts->nul_scalars &&
	    ev->data.scalar.value != NULL &&
	    memchr(ev->data.scalar.value, '\0', ev->data.scalar.length) != NULL)
		return mark_err(yp, ev->start_mark, "%s",
		    "scalar contains a NUL character");
	return 0;
}

/* ============================================================= nodes */

static struct node *
yp_alloc(struct yp *yp, enum node_type t, yaml_mark_t m)
{
	struct node *n;

	if (++*yp->nodes > yp->opts->max_nodes) {
		mark_err(yp, m, "more than %zu YAML nodes%s",
		    yp->opts->max_nodes,
		    yp->opts->max_aliases > 0 ? " (counting alias expansion)"
		                              : "");
		return NULL;
	}
	n = xcalloc(1, sizeof(*n));
	n->type = t;
	n->file = yp->file;
	n->line = to_uint(m.line + 1);
	n->col = to_uint(m.column + 1);
	return n;
}

/* Appends one item (and key, for maps); cap is the caller's capacity. */
static void
node_append(struct node *n, size_t *cap, struct node *key, struct node *val)
{
	if (n->n == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		n->items = xreallocarray(n->items, *cap, sizeof(*n->items));
		if (n->type == NODE_MAP)
			n->keys =
			    xreallocarray(n->keys, *cap, sizeof(*n->keys));
	}
	if (n->type == NODE_MAP)
		n->keys[n->n] = key;
	n->items[n->n++] = val;
}

static int
yp_scalar(struct yp *yp, yaml_event_t *ev, bool is_str, struct node **out)
{
	const char *v = ev->data.scalar.value != NULL
	                    ? (const char *)ev->data.scalar.value
	                    : "";
	size_t len = ev->data.scalar.length;
	struct node *n;

	if ((n = yp_alloc(yp, NODE_SCALAR, ev->start_mark)) == NULL)
		return -1;
	n->str = xstrndup(v, len);
	n->len = len;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !is_str;
	*out = n;
	return 0;
}

static int
yp_seq(struct yp *yp, yaml_event_t *ev, unsigned depth, struct node **out)
{
	struct node *n, *child;
	size_t cap = 0;
	yaml_event_t cev;

	if ((n = yp_alloc(yp, NODE_SEQ, ev->start_mark)) == NULL)
		return -1;
	for (;;) {
		if (yp_next(yp, &cev) < 0)
			goto fail;
		if (cev.type == YAML_SEQUENCE_END_EVENT)
			break;
		if (yp_node(yp, &cev, depth + 1, &child) < 0)
			goto fail;
		node_append(n, &cap, NULL, child);
	}
	yaml_event_delete(&cev);
	*out = n;
	return 0;
fail:
	node_free(n);
	return -1;
}

/* ------------------------------------------------ duplicate detection */

static int
yaml_name_cmp(const void *a, const void *b)
{
	const struct yaml_name *x = a, *y = b;
	int c = strcmp(x->s, y->s);

	if (c != 0)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

bool
yaml_first_dup(struct yaml_name *v, size_t n, const struct yaml_name **first,
    const struct yaml_name **second)
{
	*first = *second = NULL;
	if (n < 2)
		return false;
	qsort(v, n, sizeof(*v), yaml_name_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(v[i - 1].s, v[i].s) != 0)
			continue;
		if (i >= 2 && strcmp(v[i - 2].s, v[i].s) == 0)
			continue; /* third or later of a run */
		if (*second == NULL || v[i].i < (*second)->i) {
			*first = &v[i - 1];
			*second = &v[i];
		}
	}
	return *second != NULL;
}

static int
check_dup_keys(struct yp *yp, const struct node *map)
{
	struct yaml_name *v;
	const struct yaml_name *a, *b;
	int rc = 0;

	if (map->n < 2 || yp->opts->dup_keys)
		return 0;
	v = xcalloc(map->n, sizeof(*v));
	for (size_t i = 0; i < map->n; i++)
		v[i] = (struct yaml_name){ map->keys[i]->str, map->keys[i], i };
	if (yaml_first_dup(v, map->n, &a, &b))
		rc = yp_err(yp, b->n->line, b->n->col,
		    "duplicate key '%s' (first at line %u)", b->s, a->n->line);
	free(v);
	return rc;
}

/* ------------------------------------------------------------- maps */

/* A key written as one of opts->drop (not through an alias). */
static bool
yp_dropped(const struct yp *yp, const yaml_event_t *kev)
{
	const char *const *d = yp->opts->drop;
	size_t len = kev->data.scalar.length;

	if (d == NULL || kev->type != YAML_SCALAR_EVENT)
		return false;
	for (; *d != NULL; d++)
		if (strlen(*d) == len &&
		    memcmp(*d, kev->data.scalar.value, len) == 0)
			return true;
	return false;
}

/* Reads past one entry whose key is in opts->drop; deletes *kev. */
static int
yp_drop_entry(struct yp *yp, yaml_event_t *kev, unsigned depth)
{
	yaml_event_t vev;

	if (yp_drop(yp, kev, depth + 1, true) < 0 || yp_next(yp, &vev) < 0)
		return -1;
	return yp_drop(yp, &vev, depth + 1, false);
}

static int
yp_map_entry(struct yp *yp, yaml_event_t *kev, unsigned depth,
    struct node **key, struct node **val)
{
	yaml_event_t vev;

	*key = *val = NULL;
	if (yp_node(yp, kev, depth + 1, key) < 0)
		return -1;
	if ((*key)->type != NODE_SCALAR) {
		yp_err(yp, (*key)->line, (*key)->col,
		    "map keys must be scalars, not a %s",
		    node_type_name((*key)->type));
		goto fail;
	}
	if (yp_next(yp, &vev) < 0 || yp_node(yp, &vev, depth + 1, val) < 0)
		goto fail;
	return 0;
fail:
	node_free(*key);
	*key = NULL;
	return -1;
}

static int
yp_map(struct yp *yp, yaml_event_t *ev, unsigned depth, struct node **out)
{
	struct node *n, *key, *val;
	size_t cap = 0;
	yaml_event_t kev;

	if ((n = yp_alloc(yp, NODE_MAP, ev->start_mark)) == NULL)
		return -1;
	for (;;) {
		if (yp_next(yp, &kev) < 0)
			goto fail;
		if (kev.type == YAML_MAPPING_END_EVENT)
			break;
		if (yp_dropped(yp, &kev)) {
			if (yp_drop_entry(yp, &kev, depth) < 0)
				goto fail;
			continue;
		}
		if (yp_map_entry(yp, &kev, depth, &key, &val) < 0)
			goto fail;
		node_append(n, &cap, key, val);
	}
	yaml_event_delete(&kev);
	if (check_dup_keys(yp, n) < 0)
		goto fail;
	*out = n;
	return 0;
fail:
	node_free(n);
	return -1;
}

/* ------------------------------------------------------------ aliases */

static int
yp_copy(struct yp *yp, const struct node *src, unsigned depth, yaml_mark_t at,
    struct node **out)
{
	struct node *n;

	*out = NULL;
	if (depth > yp->opts->max_depth)
		return mark_err(yp, at, "nesting deeper than %u levels",
		    yp->opts->max_depth);
	if ((n = yp_alloc(yp, src->type, at)) == NULL)
		return -1;
	n->line = src->line;
	n->col = src->col;
	n->plain = src->plain;
	if (src->type == NODE_SCALAR) {
		yp->alias_bytes += src->len;
		if (yp->alias_bytes > ALIAS_MAX_INPUTS * yp->opts->max_bytes) {
			node_free(n);
			return mark_err(
			    yp, at, "%s", "aliases expand to too much text");
		}
		n->str = xstrndup(src->str, src->len);
		n->len = src->len;
		*out = n;
		return 0;
	}
	n->items = xcalloc(src->n, sizeof(*n->items));
	if (src->type == NODE_MAP)
		n->keys = xcalloc(src->n, sizeof(*n->keys));
	for (size_t i = 0; i < src->n; i++) {
		struct node *k = NULL, *v = NULL;

		if ((src->keys != NULL &&
		        yp_copy(yp, src->keys[i], depth + 1, at, &k) < 0) ||
		    yp_copy(yp, src->items[i], depth + 1, at, &v) < 0) {
			node_free(k);
			node_free(n);
			return -1;
		}
		if (n->keys != NULL)
			n->keys[i] = k;
		n->items[i] = v;
		n->n++;
	}
	*out = n;
	return 0;
}

/* Counts one alias use and finds its anchor's node. */
static int
yp_alias_target(
    struct yp *yp, const yaml_event_t *ev, const struct node **target)
{
	const char *name = (const char *)ev->data.alias.anchor;

	*target = NULL;
	if (yp->opts->max_aliases == 0)
		return mark_err(yp, ev->start_mark,
		    "alias '*%s': this file may not use aliases", name);
	if (++yp->aliases > yp->opts->max_aliases)
		return mark_err(yp, ev->start_mark,
		    "more than %u alias uses in one file",
		    yp->opts->max_aliases);
	for (size_t i = yp->nanchors; i-- > 0;) {
		if (strcmp(yp->anchors[i].name, name) == 0) {
			*target = yp->anchors[i].node;
			return 0;
		}
	}
	return mark_err(yp, ev->start_mark,
	    "unknown anchor '%s' (an alias must follow its complete anchor)",
	    name);
}

static int
yp_alias(struct yp *yp, yaml_event_t *ev, unsigned depth, struct node **out)
{
	const struct node *target;

	if (yp_alias_target(yp, ev, &target) < 0)
		return -1;
	return yp_copy(yp, target, depth, ev->start_mark, out);
}

static void
yp_anchor(struct yp *yp, yaml_event_t *ev, struct node *n)
{
	const yaml_char_t *a = NULL;

	if (ev->type == YAML_SCALAR_EVENT)
		a = ev->data.scalar.anchor;
	else if (ev->type == YAML_SEQUENCE_START_EVENT)
		a = ev->data.sequence_start.anchor;
	else if (ev->type == YAML_MAPPING_START_EVENT)
		a = ev->data.mapping_start.anchor;
	if (a == NULL)
		return;
	yp->anchors =
	    xreallocarray(yp->anchors, yp->nanchors + 1, sizeof(*yp->anchors));
	yp->anchors[yp->nanchors].name = xstrdup((const char *)a);
	yp->anchors[yp->nanchors++].node = n;
}

/* Builds the node that starts with *ev; always deletes *ev. */
static int
yp_node(struct yp *yp, yaml_event_t *ev, unsigned depth, struct node **out)
{
	bool is_str;
	int rc;

	*out = NULL;
	if (yp_check(yp, ev, depth, &is_str) < 0) {
		rc = -1;
	} else if (ev->type == YAML_SCALAR_EVENT) {
		rc = yp_scalar(yp, ev, is_str, out);
	} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
		rc = yp_seq(yp, ev, depth, out);
	} else if (ev->type == YAML_MAPPING_START_EVENT) {
		rc = yp_map(yp, ev, depth, out);
	} else if (ev->type == YAML_ALIAS_EVENT) {
		rc = yp_alias(yp, ev, depth, out);
	} else {
		rc =
		    mark_err(yp, ev->start_mark, "%s", "unexpected YAML event");
	}
	if (rc == 0)
		yp_anchor(yp, ev, *out);
	yaml_event_delete(ev);
	return rc;
}

/* ------------------------------------------------------ dropped values */

/* The items (or keys and values) of a dropped sequence or map. */
static int
yp_drop_children(struct yp *yp, unsigned depth, bool map)
{
	yaml_event_t cev;

	for (size_t i = 0;; i++) {
		if (yp_next(yp, &cev) < 0)
			return -1;
		if (cev.type == YAML_SEQUENCE_END_EVENT ||
		    cev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&cev);
			return 0;
		}
		if (yp_drop(yp, &cev, depth + 1, map && i % 2 == 0) < 0)
			return -1;
	}
}

/*
 * Reads past the node that starts with *ev, checking it as yp_node()
 * would but building and counting nothing; key: it is a map key, which
 * must be a scalar. Always deletes *ev.
 */
static int
yp_drop(struct yp *yp, yaml_event_t *ev, unsigned depth, bool key)
{
	const struct node *target = NULL;
	bool is_str, seq = ev->type == YAML_SEQUENCE_START_EVENT,
	             map = ev->type == YAML_MAPPING_START_EVENT;
	int rc = yp_check(yp, ev, depth, &is_str);

	if (rc == 0 && ev->type == YAML_ALIAS_EVENT)
		rc = yp_alias_target(yp, ev, &target);
	if (rc == 0 && key && target != NULL && target->type != NODE_SCALAR)
		rc = yp_err(yp, target->line, target->col,
		    "map keys must be scalars, not a %s",
		    node_type_name(target->type));
	else if (rc == 0 && key && (seq || map))
		rc = mark_err(yp, ev->start_mark,
		    "map keys must be scalars, not a %s",
		    node_type_name(seq ? NODE_SEQ : NODE_MAP));
	else if (rc == 0 && (seq || map))
		rc = yp_drop_children(yp, depth, map);
	else if (rc == 0 && ev->type != YAML_SCALAR_EVENT &&
	         ev->type != YAML_ALIAS_EVENT)
		rc =
		    mark_err(yp, ev->start_mark, "%s", "unexpected YAML event");
	yaml_event_delete(ev);
	return rc;
}

/* ========================================================== documents */

/* Reads the next event and requires it to be of type t. */
static int
yp_expect(struct yp *yp, yaml_event_type_t t, yaml_event_t *ev)
{
	if (yp_next(yp, ev) < 0)
		return -1;
	if (ev->type == t)
		return 0;
	if (t == YAML_DOCUMENT_START_EVENT && ev->type == YAML_STREAM_END_EVENT)
		yp_err(yp, 1, 1, "%s",
		    "no YAML document in file (only comments or blanks)");
	else if (t == YAML_STREAM_END_EVENT &&
	         ev->type == YAML_DOCUMENT_START_EVENT)
		mark_err(yp, ev->start_mark, "%s",
		    "multiple YAML documents in one file");
	else
		mark_err(yp, ev->start_mark, "%s", "unexpected YAML structure");
	yaml_event_delete(ev);
	return -1;
}

static int
yp_document(struct yp *yp, struct node **root)
{
	static const yaml_event_type_t pre[] = { YAML_STREAM_START_EVENT,
		YAML_DOCUMENT_START_EVENT };
	static const yaml_event_type_t post[] = { YAML_DOCUMENT_END_EVENT,
		YAML_STREAM_END_EVENT };
	yaml_event_t ev;

	for (size_t i = 0; i < 2; i++) {
		if (yp_expect(yp, pre[i], &ev) < 0)
			return -1;
		yaml_event_delete(&ev);
	}
	if (yp_next(yp, &ev) < 0 || yp_node(yp, &ev, 1, root) < 0)
		return -1;
	for (size_t i = 0; i < 2; i++) {
		if (yp_expect(yp, post[i], &ev) < 0) {
			node_free(*root);
			*root = NULL;
			return -1;
		}
		yaml_event_delete(&ev);
	}
	return 0;
}

int
yaml_read_tree(const char *name, const char *data, size_t len,
    const struct yaml_opts *opts, size_t *nodes, struct node **root,
    struct errbuf *err)
{
	struct yp yp;
	int rc;

	*root = NULL;
	memset(&yp, 0, sizeof(yp));
	yp.opts = opts;
	yp.file = name;
	yp.data = data;
	yp.len = len;
	yp.nodes = nodes != NULL ? nodes : &yp.own_nodes;
	yp.err = err;
	if (check_bytes(&yp) < 0)
		return -1;
	if (!yaml_parser_initialize(&yp.parser))
		return err_set(
		    err, SH_ERR_INTERNAL, "%s: libyaml init failed", name);
	yaml_parser_set_input_string(
	    &yp.parser, (const unsigned char *)data, len);
	yaml_parser_set_encoding(&yp.parser, YAML_UTF8_ENCODING);
	rc = yp_document(&yp, root);
	for (size_t i = 0; i < yp.nanchors; i++)
		free(yp.anchors[i].name);
	free(yp.anchors);
	yaml_parser_delete(&yp.parser);
	return rc;
}

/* ============================================================== files */

int
yaml_read_file(const char *path, const char *name, const struct yaml_opts *opts,
    struct buf *out, struct errbuf *err)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		buf_init(out, 0);
		return err_set(err, SH_ERR_IO, "%s: %s", name, strerror(errno));
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > opts->max_bytes) {
		buf_init(out, 0);
		return pos_err(opts, err, name, 1, 1,
		    "file is larger than %zu bytes", opts->max_bytes);
	}
	if (file_read(path, opts->max_bytes, out, err) < 0) {
		/* file_read says "path: why"; we name the file as given. */
		size_t n = strlen(path);
		char *why =
		    xstrdup(strncmp(err->msg, path, n) == 0 &&
		                    err->msg[n] == ':' && err->msg[n + 1] == ' '
		                ? err->msg + n + 2
		                : err->msg);

		err_set(err, SH_ERR_IO, "%s: %s", name, why);
		free(why);
		return -1;
	}
	return 0;
}
