/*
 * manifest.h: a stage manifest, loaded from YAML into typed steps.
 *
 * manifest_load() reads the top file and its includes with libyaml, builds
 * a node tree (node.h), resolves variables, interpolates ${var} in every
 * scalar of every step, evaluates `when`, looks up each step's kind in the
 * registry and lets the kind parse and validate its own body. Only a
 * manifest that passed all of that is returned: nothing about the target is
 * needed or touched. Any problem is one error "file:line:col: message" with
 * code SH_ERR_MANIFEST (SH_ERR_USAGE for bad overrides from the command
 * line).
 *
 * Format (docs/manifest.md has the reference):
 *   stagehand: 1            required, format version
 *   stage: NAME             required in the top file
 *   description: TEXT
 *   vars: {name: value}     defaults
 *   secrets: [name]         values only from the environment or a vars file
 *   include: [file]         step lists run before this file's steps
 *   steps: [step]           `- include: file` inlines a step list here
 *   rescue: [step]          top file only: run after a step fails (e.g. a
 *                           rollback); the run still reports the failure
 *
 * Variable precedence, lowest first: included files' vars, the manifest's
 * vars, --vars-file, STAGEHAND_VAR_<name>, --var. A secret may not come from
 * --var (argv is visible to every local user) nor have a default.
 * `$${x}` is a literal `${x}`, so shell scripts can keep their own syntax.
 * `${x:q}` is sh_quote(value of x): one shell word, whatever the value.
 * Shell text (a `shell` script or its `unless`, a postgres start/restart's
 * `options`) wants `${x:q}`: a raw `${x}` there still interpolates, but
 * adds a warning to manifest->warnings ("file:line:col: warning: ...").
 * Warnings never fail a load; `stagehand check` prints them.
 *
 * Includes are resolved relative to the including file and must stay inside
 * the include root (default: the parent directory of the directory holding
 * the top manifest, i.e. the project for a stages/ + playbooks/ layout).
 *
 * Ownership: the caller frees the manifest with manifest_free(); steps,
 * nodes and strings inside are borrowed for its lifetime.
 */
#ifndef STAGEHAND_MANIFEST_H
#define STAGEHAND_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>

#include "model/node.h"
#include "util/util.h"

struct step_kind;

struct var {
	char *name;  /* owned */
	char *value; /* owned; NULL for a secret with no value yet */
	bool secret;
	char *origin; /* owned: "file:line:col", "--var", "env", vars file */
};

/* `changed_when`: how a successful step's "changed" is reported. */
enum step_changed_when {
	STEP_CHANGED_AS_REPORTED = 0, /* the kind decides (default) */
	STEP_CHANGED_NEVER,  /* false: e.g. a server started and stopped
	                        again within the stage */
	STEP_CHANGED_ALWAYS, /* true */
};

struct step {
	const char *name; /* borrowed from the tree */
	const struct step_kind *kind;
	const struct node *node; /* the step's map */
	const struct node *body; /* the value under the kind's key */
	void *cfg;               /* owned: kind->release, then free() */
	char *become;            /* owned; NULL: no sudo; default "root" */
	bool enabled;            /* `when` evaluated true (or absent) */
	char *when;              /* owned: the interpolated text, or NULL */
	struct strlist tags;
	unsigned timeout_s; /* 0: STEP_DEFAULT_TIMEOUT_S */
	unsigned retries;   /* extra attempts after a failure */
	unsigned retry_delay_s;
	bool expect_disconnect; /* a dropped session is success */
	enum step_changed_when changed_when;
	bool rescue;  /* from `rescue:`: runs only after a
	                 failure, after every other step */
	size_t index; /* 0-based position in the stage */
};

struct manifest {
	char *path;        /* owned: the top file as given */
	char *stage;       /* owned */
	char *description; /* owned; may be NULL */
	unsigned version;
	struct strlist files; /* every file read; node->file points here */
	struct var *vars;     /* owned */
	size_t nvars;
	struct step *steps; /* owned */
	size_t nsteps;
	struct node **roots; /* owned parse trees, one per file */
	size_t nroots;
	struct strlist warnings; /* owned: "file:line:col: warning: ..." */
};

struct var_override {
	const char *name;   /* borrowed */
	const char *value;  /* borrowed */
	const char *origin; /* "--var" or the vars file path */
};

struct manifest_opts {
	const char *include_root;        /* NULL: the default root */
	const struct var_override *vars; /* --vars-file first, then --var */
	size_t nvars;
	bool env_vars; /* read STAGEHAND_VAR_<name> */
};

/*
 * kinds: the step kinds a step may name (NULL-terminated; steps/registry.h
 * has the program's table, tests hand in their own). Each step's body is
 * parsed by its kind. opts may be NULL.
 */
int manifest_load(const char *path, const struct step_kind *const *kinds,
    const struct manifest_opts *opts, struct manifest **out,
    struct errbuf *err);
/* The same from memory (fuzzing, tests): includes are refused. */
int manifest_load_mem(const char *name, const char *data, size_t len,
    const struct step_kind *const *kinds, const struct manifest_opts *opts,
    struct manifest **out, struct errbuf *err);
void manifest_free(struct manifest *m);

/* Value of a variable; NULL if unknown. Borrowed. */
const char *manifest_var(const struct manifest *m, const char *name);

/*
 * Parses a YAML vars file (a flat map of string scalars) into overrides.
 * names and values are owned by *out (free with manifest_vars_free).
 */
struct vars_file {
	struct var_override *vars;
	size_t n;
	struct strlist storage;
};
int manifest_vars_file(
    const char *path, struct vars_file *out, struct errbuf *err);
void manifest_vars_free(struct vars_file *vf);

#endif
