/*
 * node.h: the parsed YAML tree, with positions, and typed accessors.
 *
 * The YAML reader (yaml.h) builds these from libyaml events, for the
 * manifest loader and for `stagehand report`; step kinds read their own
 * configuration out of them in their parse() function. Every node knows
 * the file, line and column it came from, so every validation error can be
 * reported as "file:line:col: message" (node_err).
 *
 * Ownership: a manifest's trees are owned by the struct manifest that
 * loaded it and are freed by manifest_free(). Strings returned by the
 * accessors are borrowed for the manifest's lifetime; step configurations
 * may keep them.
 *
 * Scalars have already been through ${var} interpolation when a step kind
 * sees them. Map keys are never interpolated. Duplicate keys were rejected
 * by the reader.
 *
 * Accessors return 0 or -1 (with err filled, code SH_ERR_MANIFEST, message
 * prefixed with the position of the offending node), and clear their
 * out-parameters first. An absent optional key leaves the default.
 */
#ifndef STAGEHAND_NODE_H
#define STAGEHAND_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

enum node_type {
	NODE_SCALAR,
	NODE_SEQ,
	NODE_MAP,
};

struct node {
	enum node_type type;
	const char *file; /* borrowed from the manifest's file list */
	unsigned line;    /* 1-based */
	unsigned col;     /* 1-based */
	char *str;        /* scalar text, NUL-terminated, owned */
	size_t len;
	bool plain;          /* scalar was unquoted (so `null`, `true` apply) */
	size_t n;            /* seq items or map entries */
	struct node **items; /* seq items, or map values; owned */
	struct node **keys;  /* map keys (scalars); owned; NULL for seq */
};

const char *node_type_name(enum node_type t);

/* "file:line:col: " + message; code SH_ERR_MANIFEST. Returns -1. */
int node_err(struct errbuf *err, const struct node *n, const char *fmt, ...)
    ATTR_PRINTF(3, 4);

/* Map lookup; NULL when absent or map is not a map. */
const struct node *node_get(const struct node *map, const char *key);
/* Key node of an entry (for error positions); NULL when absent. */
const struct node *node_key(const struct node *map, const char *key);

/* Fails on any key not in allowed (a NULL-terminated list). */
int node_check_keys(
    const struct node *map, const char *const *allowed, struct errbuf *err);
int node_expect(const struct node *n, enum node_type t, const char *what,
    struct errbuf *err);

/* Scalars. *out is borrowed from the tree. */
int node_req_str(const struct node *map, const char *key, const char **out,
    struct errbuf *err);
int node_opt_str(const struct node *map, const char *key, const char **out,
    struct errbuf *err);
/* true/false/yes/no (plain scalars only). */
int node_opt_bool(
    const struct node *map, const char *key, bool *out, struct errbuf *err);
int node_opt_u64(const struct node *map, const char *key, uint64_t max,
    uint64_t *out, struct errbuf *err);
/* Octal mode: "0755" or 0755 or 755. *set tells whether the key was there. */
int node_opt_mode(const struct node *map, const char *key, unsigned *out,
    bool *set, struct errbuf *err);
/* A scalar or a sequence of scalars; strings are copied into *out. */
int node_opt_strlist(const struct node *map, const char *key,
    struct strlist *out, struct errbuf *err);
/* A plain scalar YAML reads as null: ``, `~`, `null`, `Null`, `NULL`. */
bool node_is_null(const struct node *n);
/* Scalar conversions on a node itself. */
int node_as_bool(const struct node *n, bool *out, struct errbuf *err);
int node_as_u64(
    const struct node *n, uint64_t max, uint64_t *out, struct errbuf *err);

void node_free(struct node *n);

#endif
