/*
 * vars.h: a manifest's variables, and ${var} interpolation.
 *
 * The loader (manifest.c) hands each file's `vars:` and `secrets:` to a
 * struct vars_ctx as it reads the files, then calls vars_resolve() once to
 * apply the overrides, then vars_interp() on every step. The rules
 * (precedence, secrets, `$${x}`, `${x:q}`, the shell-text warning) are
 * those of manifest.h; the variables themselves live in the manifest
 * (m->vars), so a loaded manifest needs nothing from here.
 *
 * manifest_var(), manifest_vars_file() and manifest_vars_free(), declared
 * in manifest.h for the commands, are implemented in vars.c too.
 *
 * Call order: vars_init; vars_add_source, vars_secrets and vars_define per
 * file, in the loader's order (an includer's vars after its includes');
 * vars_resolve; vars_interp per step; vars_release.
 *
 * Errors are those of the loader: -1, "file:line:col: message" with code
 * SH_ERR_MANIFEST, or SH_ERR_USAGE for a bad override from the command
 * line or the environment.
 *
 * Ownership: the context borrows the manifest, err, the nodes and the
 * bytes given to it; it owns only its own arrays (vars_release).
 */
#ifndef STAGEHAND_VARS_H
#define STAGEHAND_VARS_H

#include <stdbool.h>
#include <stddef.h>

#include "model/manifest.h"
#include "model/node.h"
#include "util/util.h"

/* A file's bytes, to find the exact column of a ${ in a scalar. */
struct vars_source {
	const char *file; /* borrowed: the name its nodes point at */
	const char *data; /* borrowed */
	size_t len;
};

struct vars_ctx {
	struct manifest *m;       /* borrowed: its vars and warnings grow */
	struct errbuf *err;       /* borrowed */
	const struct node **defs; /* owned array: keys of `vars:` entries */
	size_t ndefs;
	struct vars_source *src; /* owned array */
	size_t nsrc;
	/* The scalars of the step being interpolated that are shell text
	 * (see vars_interp); borrowed, set by the caller before each step. */
	const struct node *const *shell;
	size_t nshell;
};

void vars_init(struct vars_ctx *vc, struct manifest *m, struct errbuf *err);
void vars_release(struct vars_ctx *vc);

/* Remembers a file's bytes; file is the name its nodes carry. */
void vars_add_source(
    struct vars_ctx *vc, const char *file, const char *data, size_t len);

/* A file's `secrets:` list (may be NULL or null): marks those variables. */
int vars_secrets(struct vars_ctx *vc, const struct node *list);
/* A file's `vars:` map (may be NULL or null): sets those defaults. */
int vars_define(struct vars_ctx *vc, const struct node *vars);
/*
 * After every file: refuses a secret with a default, then applies the
 * overrides of opts (vars files, STAGEHAND_VAR_<name> when
 * opts->env_vars, --var), lowest precedence first.
 */
int vars_resolve(struct vars_ctx *vc, const struct manifest_opts *opts);

/*
 * Interpolates every scalar value below n in place (map keys stay as
 * written). A raw ${x} in one of vc->shell (or an item of one, for a
 * sequence) adds a warning to the manifest.
 */
int vars_interp(struct vars_ctx *vc, struct node *n);

#endif
