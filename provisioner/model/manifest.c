/*
 * manifest.c: YAML stage manifests -> struct manifest (see manifest.h).
 *
 * Loading is two passes so that variables are final before any step is
 * looked at:
 *
 *   1. read: every file (top, then includes depth-first) is checked as
 *      bytes (size, NUL, UTF-8), parsed with libyaml's event API into a
 *      node tree, and its top-level keys are validated. Step maps are
 *      collected in run order (a file's includes first, `- include:`
 *      entries inline); each file's vars are applied after its includes,
 *      so an includer always overrides what it includes.
 *   2. resolve: secrets are checked, command-line/env overrides applied,
 *      then every step is interpolated, its common fields read, `when`
 *      evaluated and its body handed to the kind's parse().
 *
 * The tree builder counts every node it creates, including the copies an
 * alias expands to, and every byte those copies duplicate, so a "billion
 * laughs" document fails after at most MANIFEST_MAX_NODES small
 * allocations. Aliases are deep copies (interpolation rewrites scalars in
 * place, so sharing would interpolate twice); an anchor only becomes
 * usable once its node is complete, which rules out recursive aliases.
 *
 * Every error is "file:line:col: message" with 1-based positions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "util/limits.h"
#include "model/manifest.h"
#include "model/kind.h"

/* Scalar bytes alias expansion may duplicate per file (not in limits.h:
 * it only bounds memory, MANIFEST_MAX_NODES bounds work). */
#define ALIAS_MAX_BYTES (4u * MANIFEST_MAX_BYTES)
#define NAME_MAX_LEN 128
#define ENV_PREFIX "STAGEHAND_VAR_"

static const char *const top_keys[] = { "stagehand", "stage", "description",
	"vars", "secrets", "include", "steps", "rescue", NULL };
static const char *const step_keys[] = { "name", "become", "when", "tags",
	"timeout", "retries", "retry_delay", "expect_disconnect",
	"changed_when", NULL };

/* ============================================================ positions */

static unsigned
to_uint(size_t v)
{
	return v >= (unsigned)-1 ? (unsigned)-1 : (unsigned)v;
}

static int vpos_err(struct errbuf *err, const char *file, unsigned line,
    unsigned col, const char *fmt, va_list ap) ATTR_PRINTF(5, 0);
static int pos_err(struct errbuf *err, const char *file, unsigned line,
    unsigned col, const char *fmt, ...) ATTR_PRINTF(5, 6);

static int
vpos_err(struct errbuf *err, const char *file, unsigned line, unsigned col,
    const char *fmt, va_list ap)
{
	struct buf b;

	buf_init(&b, sizeof(err->msg));
	buf_vaddf(&b, fmt, ap); /* too long: the prefix still helps */
	err_set(err, SH_ERR_MANIFEST, "%s:%u:%u: %s", file, line, col, b.data);
	buf_release(&b);
	return -1;
}

static int
pos_err(struct errbuf *err, const char *file, unsigned line, unsigned col,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpos_err(err, file, line, col, fmt, ap);
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

/* Bytes must be a plausible text file before libyaml sees them. */
static int
check_bytes(const char *file, const char *data, size_t len, size_t max,
    struct errbuf *err)
{
	const char *nul;
	unsigned line, col;
	size_t bad;

	if (len > max)
		return pos_err(
		    err, file, 1, 1, "file is larger than %zu bytes", max);
	if (len == 0)
		return pos_err(err, file, 1, 1, "empty file");
	nul = memchr(data, '\0', len);
	if (nul != NULL) {
		offset_pos(data, len, (size_t)(nul - data), &line, &col);
		return pos_err(err, file, line, col, "NUL byte in file");
	}
	bad = utf8_bad_offset((const unsigned char *)data, len);
	if (bad < len) {
		offset_pos(data, len, bad, &line, &col);
		return pos_err(err, file, line, col,
		    "invalid UTF-8 (byte 0x%02x)", (unsigned char)data[bad]);
	}
	return 0;
}

/* ====================================================== YAML -> nodes */

struct anchor {
	char *name;        /* owned */
	struct node *node; /* borrowed from the tree being built */
};

struct yp {
	yaml_parser_t parser;
	const char *file;
	const char *data;
	size_t len;
	size_t *nodes; /* shared by every file of one manifest */
	size_t aliases;
	size_t alias_bytes;
	struct anchor *anchors;
	size_t nanchors;
	struct errbuf *err;
};

static int yp_node(
    struct yp *yp, yaml_event_t *ev, unsigned depth, struct node **out);

static int mark_err(struct yp *yp, yaml_mark_t m, const char *fmt, ...)
    ATTR_PRINTF(3, 4);

static int
mark_err(struct yp *yp, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpos_err(yp->err, yp->file, to_uint(m.line + 1), to_uint(m.column + 1),
	    fmt, ap);
	va_end(ap);
	return -1;
}

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
		return pos_err(yp->err, yp->file, line, col, "%s (%s at %u:%u)",
		    problem, p->context, to_uint(p->context_mark.line + 1),
		    to_uint(p->context_mark.column + 1));
	return pos_err(yp->err, yp->file, line, col, "%s", problem);
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

static struct node *
yp_alloc(struct yp *yp, enum node_type t, yaml_mark_t m)
{
	struct node *n;

	if (++*yp->nodes > MANIFEST_MAX_NODES) {
		mark_err(yp, m,
		    "more than %u YAML nodes (counting alias "
		    "expansion)",
		    MANIFEST_MAX_NODES);
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
yp_scalar(struct yp *yp, yaml_event_t *ev, struct node **out)
{
	const char *v = ev->data.scalar.value != NULL
	                    ? (const char *)ev->data.scalar.value
	                    : "";
	size_t len = ev->data.scalar.length;
	struct node *n;
	bool is_str;

	if (yp_tag(yp, ev->data.scalar.tag, ev->start_mark, &is_str) < 0)
		return -1;
	/* Escapes like "\0" can put a NUL in a quoted scalar. */
	if (memchr(v, '\0', len) != NULL)
		return mark_err(yp, ev->start_mark, "%s",
		    "scalar contains a NUL character");
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
	bool is_str;
	yaml_event_t cev;

	if (yp_tag(yp, ev->data.sequence_start.tag, ev->start_mark, &is_str) <
	    0)
		return -1;
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

struct keyref {
	const char *s;
	const struct node *n;
	size_t i;
};

static int
keyref_cmp(const void *a, const void *b)
{
	const struct keyref *x = a, *y = b;
	int c = strcmp(x->s, y->s);

	if (c != 0)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * Finds the earliest (in document order) repeated string. Sorting keeps
 * this O(n log n) for hostile maps with 100k keys. Returns false if none.
 */
static bool
keyref_first_dup(struct keyref *v, size_t n, const struct keyref **first,
    const struct keyref **second)
{
	*first = *second = NULL;
	if (n < 2)
		return false;
	qsort(v, n, sizeof(*v), keyref_cmp);
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
check_dup_keys(const struct node *map, struct errbuf *err)
{
	struct keyref *v;
	const struct keyref *a, *b;
	int rc = 0;

	if (map->n < 2)
		return 0;
	v = xcalloc(map->n, sizeof(*v));
	for (size_t i = 0; i < map->n; i++)
		v[i] = (struct keyref){ map->keys[i]->str, map->keys[i], i };
	if (keyref_first_dup(v, map->n, &a, &b))
		rc = node_err(err, b->n,
		    "duplicate key '%s' (first at line %u)", b->s, a->n->line);
	free(v);
	return rc;
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
		node_err(yp->err, *key, "map keys must be scalars, not a %s",
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
	bool is_str;
	yaml_event_t kev;

	if (yp_tag(yp, ev->data.mapping_start.tag, ev->start_mark, &is_str) < 0)
		return -1;
	if ((n = yp_alloc(yp, NODE_MAP, ev->start_mark)) == NULL)
		return -1;
	for (;;) {
		if (yp_next(yp, &kev) < 0)
			goto fail;
		if (kev.type == YAML_MAPPING_END_EVENT)
			break;
		if (yp_map_entry(yp, &kev, depth, &key, &val) < 0)
			goto fail;
		node_append(n, &cap, key, val);
	}
	yaml_event_delete(&kev);
	if (check_dup_keys(n, yp->err) < 0)
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
	yaml_mark_t m = at;

	*out = NULL;
	if (depth > MANIFEST_MAX_DEPTH)
		return mark_err(yp, at, "nesting deeper than %u levels",
		    MANIFEST_MAX_DEPTH);
	if ((n = yp_alloc(yp, src->type, m)) == NULL)
		return -1;
	n->line = src->line;
	n->col = src->col;
	n->plain = src->plain;
	if (src->type == NODE_SCALAR) {
		yp->alias_bytes += src->len;
		if (yp->alias_bytes > ALIAS_MAX_BYTES) {
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

static int
yp_alias(struct yp *yp, yaml_event_t *ev, unsigned depth, struct node **out)
{
	const char *name = (const char *)ev->data.alias.anchor;

	if (++yp->aliases > MANIFEST_MAX_ALIASES)
		return mark_err(yp, ev->start_mark,
		    "more than %u alias uses in one file",
		    MANIFEST_MAX_ALIASES);
	for (size_t i = yp->nanchors; i-- > 0;)
		if (strcmp(yp->anchors[i].name, name) == 0)
			return yp_copy(yp, yp->anchors[i].node, depth,
			    ev->start_mark, out);
	return mark_err(yp, ev->start_mark,
	    "unknown anchor '%s' (an alias must follow its complete anchor)",
	    name);
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
	int rc;

	*out = NULL;
	if (depth > MANIFEST_MAX_DEPTH) {
		rc = mark_err(yp, ev->start_mark,
		    "nesting deeper than %u levels", MANIFEST_MAX_DEPTH);
	} else if (ev->type == YAML_SCALAR_EVENT) {
		rc = yp_scalar(yp, ev, out);
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

/* Reads the next event and requires it to be of type t. */
static int
yp_expect(struct yp *yp, yaml_event_type_t t, yaml_event_t *ev)
{
	if (yp_next(yp, ev) < 0)
		return -1;
	if (ev->type == t)
		return 0;
	if (t == YAML_DOCUMENT_START_EVENT && ev->type == YAML_STREAM_END_EVENT)
		pos_err(yp->err, yp->file, 1, 1, "%s",
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

/*
 * Parses one YAML document (bytes already checked) into *root, owned by
 * the caller. nodes is the manifest-wide node counter.
 */
static int
yaml_to_tree(const char *file, const char *data, size_t len, size_t *nodes,
    struct node **root, struct errbuf *err)
{
	struct yp yp;
	int rc;

	*root = NULL;
	memset(&yp, 0, sizeof(yp));
	if (!yaml_parser_initialize(&yp.parser))
		return err_set(
		    err, SH_ERR_INTERNAL, "%s: libyaml init failed", file);
	yp.file = file;
	yp.data = data;
	yp.len = len;
	yp.nodes = nodes;
	yp.err = err;
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

/* ============================================================ helpers */

/* A plain `~`, `null` or empty scalar. */
static bool
is_null(const struct node *n)
{
	return n->type == NODE_SCALAR && n->plain &&
	       (n->len == 0 || strcmp(n->str, "~") == 0 ||
	           strcmp(n->str, "null") == 0 || strcmp(n->str, "Null") == 0 ||
	           strcmp(n->str, "NULL") == 0);
}

static bool
valid_var_name(const char *s, size_t len)
{
	if (len == 0 || len > NAME_MAX_LEN || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* [A-Za-z0-9_.-]+; `dash_first` allows a leading '-'. */
static bool
valid_word(const char *s, bool dash_first)
{
	size_t len = strlen(s);

	if (len == 0 || len > NAME_MAX_LEN || (!dash_first && s[0] == '-'))
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

static const struct step_kind *
kind_find(const struct step_kind *const *k, const char *name)
{
	for (size_t i = 0; k[i] != NULL; i++)
		if (strcmp(k[i]->name, name) == 0)
			return k[i];
	return NULL;
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

struct source {
	const char *file; /* borrowed from m->files */
	const char *data; /* borrowed from bufs or the caller */
	size_t len;
};

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
	bool in_rescue;           /* collecting the top file's rescue list */
	const struct node **defs; /* keys of `vars` entries in files */
	size_t ndefs;
	struct source *src; /* kept for exact error columns */
	size_t nsrc;
	struct buf *bufs; /* file contents, owned */
	size_t nbufs;
	const struct node *shell[SHELL_TEXT_MAX]; /* this step's shell text */
	size_t nshell;
};

static int load_includes(struct loader *ld, const struct node *list);
static int include_file(struct loader *ld, const struct node *entry);

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

static int
apply_file_vars(struct loader *ld, const struct node *vars)
{
	if (vars == NULL || is_null(vars))
		return 0;
	if (node_expect(vars, NODE_MAP, "'vars'", ld->err) < 0)
		return -1;
	for (size_t i = 0; i < vars->n; i++) {
		const struct node *k = vars->keys[i], *val = vars->items[i];
		struct var *v;

		if (!valid_var_name(k->str, k->len))
			return node_err(ld->err, k,
			    "invalid variable name '%s' (use letters, digits "
			    "and _, not starting with a digit)",
			    k->str);
		if (val->type != NODE_SCALAR)
			return node_err(ld->err, val,
			    "variable '%s' must be a scalar, not a %s", k->str,
			    node_type_name(val->type));
		if ((v = var_get(ld->m, k->str)) == NULL)
			return node_err(ld->err, k, "more than %u variables",
			    MANIFEST_MAX_VARS);
		var_assign(v, is_null(val) ? "" : val->str,
		    xasprintf("%s:%u:%u", k->file, k->line, k->col));
		ld->defs =
		    xreallocarray(ld->defs, ld->ndefs + 1, sizeof(*ld->defs));
		ld->defs[ld->ndefs++] = k;
	}
	return 0;
}

static int
apply_secrets(struct loader *ld, const struct node *list)
{
	if (list == NULL || is_null(list))
		return 0;
	if (node_expect(list, NODE_SEQ, "'secrets'", ld->err) < 0)
		return -1;
	for (size_t i = 0; i < list->n; i++) {
		const struct node *s = list->items[i];
		struct var *v;

		if (s->type != NODE_SCALAR || !valid_var_name(s->str, s->len))
			return node_err(
			    ld->err, s, "secrets must list variable names");
		if ((v = var_get(ld->m, s->str)) == NULL)
			return node_err(ld->err, s, "more than %u variables",
			    MANIFEST_MAX_VARS);
		v->secret = true;
	}
	return 0;
}

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
	if (steps == NULL || is_null(steps))
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
	if (apply_secrets(ld, node_get(root, "secrets")) < 0)
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
	return apply_file_vars(ld, node_get(root, "vars"));
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
	if (check_bytes(file, data, len, MANIFEST_MAX_BYTES, ld->err) < 0)
		return -1;
	ld->src = xreallocarray(ld->src, ld->nsrc + 1, sizeof(*ld->src));
	ld->src[ld->nsrc++] = (struct source){ file, data, len };
	if (yaml_to_tree(file, data, len, &ld->nodes, &root, ld->err) < 0)
		return -1;
	m->roots = xreallocarray(m->roots, m->nroots + 1, sizeof(*m->roots));
	m->roots[m->nroots++] = root;
	return process_file(ld, root, top);
}

/*
 * Reads a file of at most max bytes. Over-size is reported like any other
 * manifest problem (at 1:1) before a byte is read; the rest is I/O.
 */
static int
read_text(const char *path, const char *display, size_t max, struct buf *out,
    struct errbuf *err)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		buf_init(out, 0);
		return err_set(
		    err, SH_ERR_IO, "%s: %s", display, strerror(errno));
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
		buf_init(out, 0);
		return pos_err(
		    err, display, 1, 1, "file is larger than %zu bytes", max);
	}
	if (file_read(path, max, out, err) < 0) {
		/* file_read says "path: why"; we name the file as given. */
		size_t n = strlen(path);
		char *why =
		    xstrdup(strncmp(err->msg, path, n) == 0 &&
		                    err->msg[n] == ':' && err->msg[n + 1] == ' '
		                ? err->msg + n + 2
		                : err->msg);

		err_set(err, SH_ERR_IO, "%s: %s", display, why);
		free(why);
		return -1;
	}
	return 0;
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
	if (read_text(real, display, MANIFEST_MAX_BYTES, b, ld->err) < 0) {
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
	if (entry->type != NODE_SCALAR || is_null(entry))
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
	if (list == NULL || is_null(list))
		return 0;
	if (node_expect(list, NODE_SEQ, "'include'", ld->err) < 0)
		return -1;
	for (size_t i = 0; i < list->n; i++)
		if (include_file(ld, list->items[i]) < 0)
			return -1;
	return 0;
}

/* ======================================================= overrides */

static int
check_secret_defaults(struct loader *ld)
{
	for (size_t i = 0; i < ld->ndefs; i++) {
		const struct var *v = var_find(ld->m, ld->defs[i]->str);

		if (v != NULL && v->secret)
			return node_err(ld->err, ld->defs[i],
			    "secret '%s' must not have a default in vars; "
			    "set STAGEHAND_VAR_%s or use --vars-file",
			    v->name, v->name);
	}
	return 0;
}

static int
override(struct loader *ld, const char *name, size_t nlen, const char *value,
    const char *origin)
{
	char *n = xstrndup(name, nlen);
	struct var *v;
	int rc = 0;

	if (!valid_var_name(n, nlen)) {
		rc = err_set(ld->err, SH_ERR_USAGE,
		    "%s: invalid variable name '%s'", origin, n);
	} else if ((v = var_get(ld->m, n)) == NULL) {
		rc = err_set(ld->err, SH_ERR_USAGE,
		    "%s: more than %u variables", origin, MANIFEST_MAX_VARS);
	} else if (v->secret && strcmp(origin, "--var") == 0) {
		rc = err_set(ld->err, SH_ERR_USAGE,
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
apply_env(struct loader *ld)
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
		if (override(ld, name, (size_t)(eq - name), eq + 1, "env") < 0)
			return -1;
	}
	return 0;
}

/* Precedence: vars files < STAGEHAND_VAR_* < --var. */
static int
apply_overrides(struct loader *ld)
{
	const struct manifest_opts *o = ld->opts;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < o->nvars; i++) {
			const struct var_override *v = &o->vars[i];
			const char *origin = v->origin ? v->origin : "--var";
			bool cli = strcmp(origin, "--var") == 0;

			if (cli != (pass == 1) || v->name == NULL ||
			    v->value == NULL)
				continue;
			if (override(ld, v->name, strlen(v->name), v->value,
			        origin) < 0)
				return -1;
		}
		if (pass == 0 && o->env_vars && apply_env(ld) < 0)
			return -1;
	}
	return 0;
}

/* ======================================================= interpolation */

static const struct source *
find_source(const struct loader *ld, const char *file)
{
	for (size_t i = 0; i < ld->nsrc; i++)
		if (ld->src[i].file == file)
			return &ld->src[i];
	return NULL;
}

/*
 * Column of byte `off` of a scalar's value, when the source shows the value
 * verbatim up to there on the scalar's first line (plain, or quoted with no
 * escapes before it); otherwise the scalar's own column.
 */
static unsigned
exact_col(const struct loader *ld, const struct node *n, size_t off)
{
	const struct source *s = find_source(ld, n->file);
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

static int interp_err(struct loader *ld, const struct node *n, size_t off,
    const char *fmt, ...) ATTR_PRINTF(4, 5);

static int
interp_err(
    struct loader *ld, const struct node *n, size_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpos_err(ld->err, n->file, n->line, exact_col(ld, n, off), fmt, ap);
	va_end(ap);
	return -1;
}

/* Byte offset of the start of 1-based `line` in s; s->len when past it. */
static size_t
source_line(const struct source *s, size_t line)
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
block_pos(const struct loader *ld, const struct node *n, size_t off,
    unsigned *line, unsigned *col)
{
	const struct source *s = find_source(ld, n->file);
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
interp_warn(struct loader *ld, const struct node *n, size_t off,
    const char *name, size_t nlen)
{
	struct buf w;
	unsigned line = n->line, col;

	if (!block_pos(ld, n, off, &line, &col))
		col = exact_col(ld, n, off);
	buf_init(&w, 1024);
	buf_addf(&w,
	    "%s:%u:%u: warning: '${%.*s}' is pasted into shell text "
	    "unquoted; write ${%.*s:q} (the value sh-quoted) or pass it "
	    "in env:",
	    n->file, line, col, (int)nlen, name, (int)nlen, name);
	/* An alias copy of a script repeats its anchor's warnings. */
	for (size_t i = 0; i < ld->m->warnings.n; i++)
		if (strcmp(ld->m->warnings.v[i], w.data) == 0) {
			buf_release(&w);
			return;
		}
	strlist_push_owned(&ld->m->warnings, buf_detach(&w, NULL));
	buf_release(&w); /* detach left it empty but allocated */
}

static bool
is_shell_text(const struct loader *ld, const struct node *n)
{
	for (size_t i = 0; i < ld->nshell; i++) {
		const struct node *f = ld->shell[i];

		if (f == n)
			return true;
		for (size_t k = 0; f->type == NODE_SEQ && k < f->n; k++)
			if (f->items[k] == n)
				return true;
	}
	return false;
}

static const struct var *
interp_lookup(const struct loader *ld, const char *name, size_t nlen)
{
	for (size_t k = 0; k < ld->m->nvars; k++)
		if (strlen(ld->m->vars[k].name) == nlen &&
		    memcmp(ld->m->vars[k].name, name, nlen) == 0)
			return &ld->m->vars[k];
	return NULL;
}

/*
 * Appends the value of the ${name} or ${name:q} at str[i]; *next is past
 * the '}'. `:q` appends sh_quote(value): one shell word whatever the value.
 */
static int
interp_ref(struct loader *ld, const struct node *n, size_t i, struct buf *b,
    size_t *next)
{
	const char *name = n->str + i + 2;
	const char *close = memchr(name, '}', n->len - i - 2);
	size_t nlen;
	bool q;
	const struct var *v;

	if (close == NULL)
		return interp_err(ld, n, i,
		    "unterminated '${' (write '$${' "
		    "for a literal '${')");
	nlen = (size_t)(close - name);
	q = nlen > 2 && memcmp(close - 2, ":q", 2) == 0;
	if (q)
		nlen -= 2;
	if (!valid_var_name(name, nlen))
		return interp_err(ld, n, i,
		    "invalid variable reference "
		    "'${%.*s}' (write '$${' for a literal '${')",
		    (int)(close - name > 64 ? 64 : close - name), name);
	v = interp_lookup(ld, name, nlen);
	if (v == NULL)
		return interp_err(
		    ld, n, i, "unknown variable '%.*s'", (int)nlen, name);
	if (v->value == NULL)
		return interp_err(ld, n, i,
		    "secret '%.*s' has no value; set "
		    "STAGEHAND_VAR_%.*s",
		    (int)nlen, name, (int)nlen, name);
	if (!q && is_shell_text(ld, n))
		interp_warn(ld, n, i, name, nlen);
	*next = (size_t)(close - n->str) + 1;
	if (q)
		return sh_quote(b, v->value) < 0 ? 1 : 0;
	return buf_adds(b, v->value) < 0 ? 1 : 0;
}

static int
interp_scalar(struct loader *ld, struct node *n)
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
			rc = interp_ref(ld, n, i, &b, &i);
		} else {
			rc = buf_addc(&b, *p) < 0 ? 1 : 0;
			i++;
		}
	}
	if (rc > 0)
		rc = node_err(ld->err, n,
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

/* Every scalar value below n; map keys stay as written. */
static int
interp_tree(struct loader *ld, struct node *n)
{
	if (n->type == NODE_SCALAR)
		return interp_scalar(ld, n);
	for (size_t i = 0; i < n->n; i++)
		if (interp_tree(ld, n->items[i]) < 0)
			return -1;
	return 0;
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
		if ((sk = kind_find(ld->kinds, k->str)) == NULL)
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
	if (v->type != NODE_SCALAR || !valid_word(v->str, false) || is_null(v))
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
	struct keyref *v = xcalloc(m->nsteps, sizeof(*v));
	const struct keyref *a, *b;
	int rc = 0;

	for (size_t i = 0; i < m->nsteps; i++)
		v[i] = (struct keyref){ m->steps[i].name,
			node_get(m->steps[i].node, "name"), i };
	if (keyref_first_dup(v, m->nsteps, &a, &b))
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
}

static void
loader_free(struct loader *ld)
{
	for (size_t i = 0; i < ld->nbufs; i++)
		buf_release(&ld->bufs[i]);
	free(ld->bufs);
	free(ld->src);
	free(ld->raw);
	free(ld->raw_rescue);
	free(ld->defs);
	free(ld->root);
	strlist_free(&ld->chain);
	strlist_free(&ld->names);
}

/* Pass 2: everything that needs the final variables. */
static int
resolve(struct loader *ld)
{
	if (check_secret_defaults(ld) < 0 || apply_overrides(ld) < 0)
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
    const struct manifest_opts *opts, struct manifest **out,
    struct errbuf *err)
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
		strlist_push(&out->storage, is_null(v) ? "" : v->str);
		out->vars[i].value = out->storage.v[out->storage.n - 1];
		out->vars[i].origin = origin;
		out->n = i + 1;
	}
	return 0;
}

int
manifest_vars_file(const char *path, struct vars_file *out, struct errbuf *err)
{
	struct buf b;
	struct node *root = NULL;
	size_t nodes = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = read_text(path, path, VARS_FILE_MAX_BYTES, &b, err);
	if (rc == 0)
		rc = check_bytes(path, b.data, b.len, VARS_FILE_MAX_BYTES, err);
	if (rc == 0)
		rc = yaml_to_tree(path, b.data, b.len, &nodes, &root, err);
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
