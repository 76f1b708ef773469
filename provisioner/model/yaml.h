/*
 * yaml.h: the bounded YAML reader: bytes -> a struct node tree (node.h).
 *
 * yaml_read_tree() parses one YAML document with libyaml's event API into
 * a tree of struct node, every node carrying the line and column (1-based,
 * columns in characters) it starts at. The manifest loader, vars files and
 * `stagehand report` (results.json is JSON, which libyaml reads as a YAML
 * flow document) all read through it; what differs between them is in
 * struct yaml_opts, never in a copy of the reader.
 *
 * Input: data[0..len), not necessarily NUL-terminated; name is the display
 * name used in every message and is borrowed by every node (node->file), so
 * it must outlive the tree.
 *
 * Always refused:
 *   - more than opts->max_bytes bytes, no bytes at all, a NUL byte, bytes
 *     that are not well-formed UTF-8 (checked before libyaml sees them);
 *   - YAML syntax errors: libyaml's message, with its context when it
 *     gives one ("... (while parsing a flow mapping at 1:1)");
 *   - no document (only comments or blanks), more than one document;
 *   - a tag outside the YAML core schema (!!str, !!int, !!float, !!bool,
 *     !!null, !!seq, !!map and "!"): another could mean "construct this".
 *     An explicit !!str or "!" makes a plain scalar count as quoted;
 *   - a map key that is not a scalar;
 *   - nesting deeper than opts->max_depth levels (the root is level 1, a
 *     copy an alias makes counts at the depth it lands);
 *   - more than opts->max_nodes nodes, keys included, counting every node
 *     an alias copies (*nodes carries the count from call to call);
 *   - an alias whose anchor is unknown or not complete yet (so no alias
 *     inside its own anchor), more than opts->max_aliases alias uses (0:
 *     every alias is refused), aliases copying more than 4 * max_bytes of
 *     scalar text.
 * Refused unless opts allow it:
 *   - a key repeated in one map (dup_keys: kept; node_get() finds the
 *     first), reported at the second with the line of the first;
 *   - a scalar holding a NUL, from an escape like "\0" (nul_scalars).
 *
 * Aliases are deep copies, never shared nodes: the manifest loader rewrites
 * scalars in place (interpolation), which must not happen twice. A copy
 * keeps the positions of its anchor's nodes. The limits above bound the
 * work a "billion laughs" document can cause to max_nodes small
 * allocations.
 *
 * opts->drop lists keys whose values a caller never looks at (a report's
 * step output): such an entry is read and checked like the rest (syntax,
 * depth, tags, keys, NUL scalars, alias uses) but left out of the tree;
 * none of its nodes is built or counted, so memory follows what is kept.
 * An anchor inside a dropped value cannot be aliased.
 *
 * Errors: -1 with err->code = opts->code and the message
 * "name:line:col: " + opts->what + problem, e.g. for a manifest
 * "stage.yml:4:25: duplicate key 'name' (first at line 4)". The first
 * problem found is the one reported.
 *
 * Ownership: on success *root is the caller's, freed with node_free(); on
 * failure *root is NULL and nothing stays allocated.
 *
 * libyaml's own names are yaml_parser_*, yaml_event_* and so on; ours are
 * yaml_read_*, yaml_first_dup and struct yaml_opts.
 */
#ifndef STAGEHAND_YAML_H
#define STAGEHAND_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "model/node.h"
#include "util/util.h"

struct yaml_opts {
	size_t max_bytes;        /* input size */
	unsigned max_depth;      /* nesting levels, the root is 1 */
	size_t max_nodes;        /* nodes built, alias copies included */
	unsigned max_aliases;    /* alias uses per call; 0 refuses them */
	bool dup_keys;           /* keep a repeated map key, do not refuse */
	bool nul_scalars;        /* a scalar may hold NUL (node->len says) */
	const char *const *drop; /* NULL-terminated; NULL: drop nothing */
	enum sh_err code;        /* of every error */
	const char *what;        /* after the position; NULL: nothing */
};

/*
 * The manifest dialect, for stage manifests and their includes
 * (MANIFEST_MAX_BYTES, MANIFEST_MAX_DEPTH, MANIFEST_MAX_NODES for all the
 * files of one manifest together, MANIFEST_MAX_ALIASES per file; no
 * repeated keys, no NUL in scalars, nothing dropped; SH_ERR_MANIFEST).
 * Vars files use the same with VARS_FILE_MAX_BYTES.
 */
extern const struct yaml_opts yaml_manifest_opts;

/*
 * Parses data[0..len) into *root (see above). nodes: the count of nodes
 * already built by earlier calls that share opts->max_nodes (in/out); NULL
 * for a count of its own.
 */
int yaml_read_tree(const char *name, const char *data, size_t len,
    const struct yaml_opts *opts, size_t *nodes, struct node **root,
    struct errbuf *err);

/*
 * Reads the file at path for yaml_read_tree() into *out (initialised here,
 * even on failure; the caller releases it). A file over opts->max_bytes is
 * refused like yaml_read_tree() would ("name:1:1: file is larger than N
 * bytes", opts->code) before a byte is read; any other failure is
 * SH_ERR_IO "name: reason".
 */
int yaml_read_file(const char *path, const char *name,
    const struct yaml_opts *opts, struct buf *out, struct errbuf *err);

/* One name for yaml_first_dup(): where it is, and its document order. */
struct yaml_name {
	const char *s;        /* borrowed */
	const struct node *n; /* borrowed */
	size_t i;
};

/*
 * Finds the earliest repeat (by i) among v[0..n): *second is it and *first
 * the earlier occurrence of the same string. Sorts v, in O(n log n), so a
 * hostile map with 100k keys stays cheap. Returns false (both NULL) when
 * every string is different.
 */
bool yaml_first_dup(struct yaml_name *v, size_t n,
    const struct yaml_name **first, const struct yaml_name **second);

#endif
