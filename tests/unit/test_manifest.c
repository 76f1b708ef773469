/*
 * test_manifest.c: the manifest loader accepts exactly the documented
 * format, resolves variables and includes in the documented order, and
 * rejects everything else with "file:line:col: message".
 *
 * Runs from the top of the checkout (tests/run.sh does that): fixtures are
 * read from tests/fixtures/manifests/. Files that are awkward to commit
 * (oversized, invalid UTF-8, NUL bytes, 65 includes...) are generated in a
 * private temp dir.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/manifest.h"
#include "steps/registry.h"
#include "util/limits.h"

#define FIX "tests/fixtures/manifests"

/* ------------------------------------------------------------ helpers */

static struct manifest *
load_ok_opts(const char *yaml, const struct manifest_opts *o)
{
	struct manifest *m = NULL;
	struct errbuf err;

	err_clear(&err);
	if (manifest_load_mem(
	        "mem.yml", yaml, strlen(yaml), step_kinds(), o, &m, &err) < 0)
		fail_msg("unexpected error: %s", err.msg);
	assert_non_null(m);
	return m;
}

static struct manifest *
load_ok(const char *yaml)
{
	return load_ok_opts(yaml, NULL);
}

/* Loads from memory, expects failure with `want` in the message. */
static void
expect_err_opts(const char *yaml, size_t len, const struct manifest_opts *o,
    enum sh_err code, const char *want)
{
	struct manifest *m = NULL;
	struct errbuf err;

	err_clear(&err);
	if (manifest_load_mem(
	        "mem.yml", yaml, len, step_kinds(), o, &m, &err) == 0) {
		manifest_free(m);
		fail_msg("loaded, expected error: %s", want);
	}
	assert_null(m);
	if (strstr(err.msg, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err.msg, want);
	assert_int_equal(err.code, code);
}

static void
expect_err(const char *yaml, const char *want)
{
	expect_err_opts(yaml, strlen(yaml), NULL, SH_ERR_MANIFEST, want);
}

static void
expect_file_err(
    const char *path, const struct manifest_opts *o, const char *want)
{
	struct manifest *m = NULL;
	struct errbuf err;

	err_clear(&err);
	if (manifest_load(path, step_kinds(), o, &m, &err) == 0) {
		manifest_free(m);
		fail_msg("%s loaded, expected error: %s", path, want);
	}
	if (strstr(err.msg, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err.msg, want);
}

static void
write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void
write_str(const char *path, const char *s)
{
	write_file(path, s, strlen(s));
}

static char *
make_tmpdir(void)
{
	char *d = xstrdup("/tmp/stagehand-test-manifest.XXXXXX");

	assert_non_null(mkdtemp(d));
	return d;
}

static void
rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static const struct step *
step_named(const struct manifest *m, const char *name)
{
	for (size_t i = 0; i < m->nsteps; i++)
		if (strcmp(m->steps[i].name, name) == 0)
			return &m->steps[i];
	fail_msg("no step named '%s'", name);
	return NULL;
}

#define HDR "stagehand: 1\nstage: t\n"

/* ------------------------------------------------------ good manifests */

static void
test_manifest_loads_minimal(void **state)
{
	struct manifest *m = NULL;
	struct errbuf err;

	(void)state;
	assert_int_equal(manifest_load(FIX "/good/minimal.yml", step_kinds(),
	                     NULL, &m, &err),
	    0);
	assert_string_equal(m->stage, "minimal");
	assert_int_equal(m->version, 1);
	assert_int_equal(m->nsteps, 1);
	assert_string_equal(m->steps[0].name, "say hello");
	assert_ptr_equal(
	    m->steps[0].kind, step_kind_find(step_kinds(), "shell"));
	assert_string_equal(m->steps[0].body->str, "echo hello");
	assert_string_equal(m->steps[0].become, "root");
	assert_true(m->steps[0].enabled);
	assert_null(m->steps[0].when);
	assert_int_equal(m->steps[0].timeout_s, 0);
	assert_int_equal(m->nroots, 1);
	assert_int_equal(m->files.n, 1);
	assert_string_equal(m->files.v[0], FIX "/good/minimal.yml");
	manifest_free(m);
}

static void
test_manifest_includes_come_first_in_order(void **state)
{
	static const char *const want[] = { "nested n b", "base b from-top",
		"greet world", "as postgres", "inline one", "inline two hello",
		"without sudo", "only on debian", "skipped when flag is off",
		"reboot-ish" };
	struct manifest *m = NULL;
	struct errbuf err;

	(void)state;
	if (manifest_load(FIX "/good/full.yml", step_kinds(), NULL, &m, &err) <
	    0)
		fail_msg("%s", err.msg);
	assert_int_equal(m->nsteps, 10);
	for (size_t i = 0; i < m->nsteps; i++) {
		assert_string_equal(m->steps[i].name, want[i]);
		assert_int_equal(m->steps[i].index, i);
	}
	assert_int_equal(m->files.n, 4);
	assert_int_equal(m->nroots, 4);
	assert_string_equal(m->files.v[1], FIX "/playbooks/base.yml");
	assert_string_equal(m->files.v[2], FIX "/playbooks/nested.yml");
	assert_string_equal(m->files.v[3], FIX "/playbooks/inline.yml");
	assert_string_equal(
	    m->steps[0].node->file, FIX "/playbooks/nested.yml");
	assert_string_equal(m->description,
	    "Exercises includes, vars, secrets, become, when and tags");
	manifest_free(m);
}

/* A null optional number is absent (it used to index an array with an
 * uninitialised value: a crash in `stagehand check`). */
static void
test_manifest_null_changed_exit_code_is_absent(void **state)
{
	(void)state;
	manifest_free(
	    load_ok(HDR "steps:\n  - name: a\n"
	                "    shell: {script: x, changed_exit_code: ~}\n"));
	manifest_free(
	    load_ok(HDR "steps:\n  - name: a\n"
	                "    shell: {script: x, changed_exit_code: }\n"));
}

static void
test_manifest_common_fields(void **state)
{
	struct manifest *m = NULL;
	struct errbuf err;
	const struct step *s;

	(void)state;
	if (manifest_load(FIX "/good/full.yml", step_kinds(), NULL, &m, &err) <
	    0)
		fail_msg("%s", err.msg);
	s = step_named(m, "as postgres");
	assert_string_equal(s->become, "postgres");
	assert_int_equal(s->timeout_s, 60);
	assert_int_equal(s->retries, 2);
	assert_int_equal(s->retry_delay_s, 5);
	assert_false(s->expect_disconnect);
	assert_string_equal(node_get(s->body, "script")->str,
	    "echo \"${HOME} is literal, hello is not\"\n");
	assert_string_equal(
	    node_get(s->body, "creates")->str, "/tmp/world.done");
	s = step_named(m, "greet world");
	assert_int_equal(s->tags.n, 2);
	assert_string_equal(s->tags.v[0], "demo");
	assert_string_equal(s->tags.v[1], "greet");
	s = step_named(m, "without sudo");
	assert_null(s->become);
	assert_int_equal(s->tags.n, 1);
	assert_string_equal(s->tags.v[0], "solo");
	s = step_named(m, "reboot-ish");
	assert_string_equal(s->become, "root");
	assert_true(s->expect_disconnect);
	s = step_named(m, "only on debian");
	assert_true(s->enabled);
	assert_string_equal(s->when, "debian == debian");
	s = step_named(m, "skipped when flag is off");
	assert_false(s->enabled);
	manifest_free(m);
}

static void
test_manifest_aliases_are_copies(void **state)
{
	struct manifest *m = NULL;
	struct errbuf err;

	(void)state;
	if (manifest_load(
	        FIX "/good/anchors.yml", step_kinds(), NULL, &m, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(m->nsteps, 2);
	assert_ptr_not_equal(m->steps[0].body, m->steps[1].body);
	assert_string_equal(
	    node_get(m->steps[1].body, "script")->str, "mkdir -p /srv/app");
	assert_int_equal(m->steps[1].tags.n, 2);
	manifest_free(m);
}

static void
test_manifest_stage_may_have_no_steps(void **state)
{
	struct manifest *m = NULL;
	struct errbuf err;

	(void)state;
	assert_int_equal(manifest_load(FIX "/good/no-steps.yml", step_kinds(),
	                     NULL, &m, &err),
	    0);
	assert_int_equal(m->nsteps, 0);
	manifest_free(m);
}

/* ------------------------------------------------------------ variables */

static const char vars_doc[] =
    HDR "vars:\n"
        "  a: manifest\n  b: manifest\n  c: manifest\n  d: manifest\n"
        "steps:\n  - name: ${a}-${b}-${c}-${d}-${e}\n    shell: echo\n";

static void
test_manifest_vars_precedence(void **state)
{
	const struct var_override ov[] = {
		{ "d", "cli", "--var" },     /* --var wins over all */
		{ "b", "file", "vars.yml" }, /* vars file over manifest */
		{ "c", "file", "vars.yml" }, /* ... but env wins over it */
		{ "d", "file", "vars.yml" },
		{ "e", "new", "--var" }, /* declares a new variable */
	};
	struct manifest_opts o = { NULL, ov, 5, true };
	struct manifest *m;

	(void)state;
	setenv("STAGEHAND_VAR_c", "env", 1);
	setenv("STAGEHAND_VAR_d", "env", 1);
	m = load_ok_opts(vars_doc, &o);
	unsetenv("STAGEHAND_VAR_c");
	unsetenv("STAGEHAND_VAR_d");
	assert_string_equal(m->steps[0].name, "manifest-file-env-cli-new");
	assert_string_equal(manifest_var(m, "b"), "file");
	assert_null(manifest_var(m, "nope"));
	for (size_t i = 0; i < m->nvars; i++) {
		if (strcmp(m->vars[i].name, "a") == 0)
			assert_string_equal(m->vars[i].origin, "mem.yml:4:3");
		if (strcmp(m->vars[i].name, "c") == 0)
			assert_string_equal(m->vars[i].origin, "env");
		if (strcmp(m->vars[i].name, "d") == 0)
			assert_string_equal(m->vars[i].origin, "--var");
	}
	manifest_free(m);
}

static void
test_manifest_env_ignored_unless_asked(void **state)
{
	struct manifest *m;

	(void)state;
	setenv("STAGEHAND_VAR_a", "env", 1);
	m = load_ok(HDR "vars: {a: x}\nsteps:\n  - {name: '${a}', shell: e}\n");
	unsetenv("STAGEHAND_VAR_a");
	assert_string_equal(m->steps[0].name, "x");
	manifest_free(m);
}

static void
test_manifest_secrets(void **state)
{
	static const char doc[] =
	    HDR "secrets: [tok]\n"
	        "steps:\n  - {name: s, shell: 'echo ${tok}'}\n";
	const struct var_override file[] = { { "tok", "from-file", "v.yml" } };
	const struct var_override cli[] = { { "tok", "argv", "--var" } };
	struct manifest_opts o = { NULL, file, 1, true };
	struct manifest *m;

	(void)state;
	m = load_ok_opts(doc, &o);
	assert_string_equal(m->steps[0].body->str, "echo from-file");
	assert_true(m->vars[0].secret);
	manifest_free(m);
	setenv("STAGEHAND_VAR_tok", "from-env", 1);
	o.nvars = 0;
	m = load_ok_opts(doc, &o);
	unsetenv("STAGEHAND_VAR_tok");
	assert_string_equal(m->steps[0].body->str, "echo from-env");
	manifest_free(m);
	/* An unused secret needs no value. */
	m = load_ok(HDR "secrets: [unused]\n");
	assert_null(manifest_var(m, "unused"));
	manifest_free(m);
	o.vars = cli;
	o.nvars = 1;
	expect_err_opts(doc, strlen(doc), &o, SH_ERR_USAGE,
	    "secret 'tok' must not be given on the command line; use "
	    "STAGEHAND_VAR_tok or --vars-file");
	expect_err(doc, "mem.yml:5:28: secret 'tok' has no value; set "
	                "STAGEHAND_VAR_tok");
	expect_err(HDR "secrets: [tok]\nvars:\n  tok: x\n",
	    "mem.yml:5:3: secret 'tok' must not have a default");
}

static void
test_manifest_rejects_bad_override_name(void **state)
{
	const struct var_override ov[] = { { "not-a-name", "x", "--var" } };
	struct manifest_opts o = { NULL, ov, 1, false };

	(void)state;
	expect_err_opts(HDR, strlen(HDR), &o, SH_ERR_USAGE,
	    "invalid variable name 'not-a-name'");
}

/* -------------------------------------------------------- interpolation */

static void
test_manifest_interpolates_values_not_keys(void **state)
{
	struct manifest *m;
	const struct node *env;

	(void)state;
	m = load_ok(HDR
	    "vars: {k: KEY, v: val, u: bob, c: '3'}\nsteps:\n"
	    "  - name: n-${v}\n    become: ${u}\n    when: ${v} == val\n"
	    "    shell:\n      script: a ${v} b\n"
	    "      env: {A: \"${v}\"}\n      valid_exit_codes: [0, '${c}']\n");
	assert_string_equal(m->steps[0].name, "n-val");
	assert_string_equal(m->steps[0].become, "bob");
	assert_true(m->steps[0].enabled);
	assert_string_equal(
	    node_get(m->steps[0].body, "script")->str, "a val b");
	env = node_get(m->steps[0].body, "env");
	assert_string_equal(env->items[0]->str, "val");
	assert_string_equal(
	    node_get(m->steps[0].body, "valid_exit_codes")->items[1]->str, "3");
	manifest_free(m);
	/* Keys stay as written: the kind sees (and rejects) '${k}'. */
	expect_err(HDR "vars: {k: KEY}\nsteps:\n  - name: x\n    shell:\n"
	               "      script: e\n      env: {\"${k}\": v}\n",
	    "'${k}'");
}

static void
test_manifest_dollar_forms(void **state)
{
	struct manifest *m;

	(void)state;
	m = load_ok(
	    HDR "vars: {x: X, r: '${x}'}\nsteps:\n"
	        "  - name: a\n    shell: '$${x} $x $ $$ ${x}$${ ${r} x$'\n");
	/* $${ is a literal ${; values are not interpolated again. */
	assert_string_equal(m->steps[0].body->str, "${x} $x $ $$ X${ ${x} x$");
	manifest_free(m);
}

static void
test_manifest_rejects_unknown_variable(void **state)
{
	(void)state;
	/* Plain single-line scalars get the exact column of the ${. */
	expect_err(HDR "steps:\n  - name: x\n    shell: echo ${nope}\n",
	    "mem.yml:5:17: unknown variable 'nope'");
	expect_err(HDR "steps:\n  - name: x\n    shell: 'echo ${nope}'\n",
	    "mem.yml:5:18: unknown variable 'nope'");
	/* Block scalars: the scalar's own position. */
	expect_err(HDR "steps:\n  - name: x\n    shell: |\n      a\n"
	               "      ${nope}\n",
	    "mem.yml:5:12: unknown variable 'nope'");
	expect_err(HDR "steps:\n  - name: x\n    shell: echo ${a-b}\n",
	    "mem.yml:5:17: invalid variable reference '${a-b}'");
	expect_err(HDR "steps:\n  - name: x\n    shell: echo ${ab\n",
	    "mem.yml:5:17: unterminated '${'");
}

static void
test_manifest_q_interpolates_one_shell_word(void **state)
{
	struct manifest *m;
	struct manifest_opts o = { 0 };
	struct var_override v[] = { { "p", "/x; id >/tmp/pwned", "--var" },
		{ "t", "it's", "--var" } };

	(void)state;
	o.vars = v;
	o.nvars = 2;
	m = load_ok_opts(HDR
	    "vars: {p: /a, t: b}\nsteps:\n"
	    "  - name: x\n    shell: P=${p:q} T=${t:q} $${p:q}\n",
	    &o);
	assert_string_equal(m->steps[0].body->str,
	    "P='/x; id >/tmp/pwned' T='it'\\''s' ${p:q}");
	assert_int_equal(m->warnings.n, 0);
	manifest_free(m);
	expect_err(HDR "vars: {p: a}\nsteps:\n  - name: x\n    shell: ${p:z}\n",
	    "mem.yml:6:12: invalid variable reference '${p:z}'");
	expect_err(HDR "steps:\n  - name: x\n    shell: echo ${nope:q}\n",
	    "mem.yml:5:17: unknown variable 'nope'");
}

static void
test_manifest_warns_raw_variable_in_shell_text(void **state)
{
	struct manifest *m;

	(void)state;
	m = load_ok(HDR
	    "vars: {p: /a}\nsteps:\n"
	    "  - name: scalar\n    shell: ls ${p}\n"
	    "  - name: block\n    shell:\n      script: |\n"
	    "        set -e\n        ls ${p} ${p:q}\n"
	    "      unless: test -e ${p}\n"
	    "      creates: ${p}\n      cwd: ${p}\n"
	    "      env: {P: \"${p}\"}\n"
	    "  - name: pg\n    postgres:\n      action: start\n"
	    "      data_dir: ${p}\n"
	    "      options: [\"-c config_file=${p}\"]\n"
	    "  - name: pg init\n    postgres:\n      action: initdb\n"
	    "      data_dir: ${p}\n      options: [\"--data-checksums=${p}\"]\n"
	    "  - name: path ${p}\n    path: {path: \"${p}\"}\n");
	assert_int_equal(m->warnings.n, 4);
	assert_string_equal(m->warnings.v[0],
	    "mem.yml:6:15: warning: '${p}' is pasted into shell text "
	    "unquoted; write ${p:q} (the value sh-quoted) or pass it in env:");
	assert_non_null(
	    strstr(m->warnings.v[1], "mem.yml:11:12: warning: '${p}'"));
	assert_non_null(
	    strstr(m->warnings.v[2], "mem.yml:12:23: warning: '${p}'"));
	assert_non_null(
	    strstr(m->warnings.v[3], "mem.yml:20:33: warning: '${p}'"));
	manifest_free(m);
}

static void
test_manifest_rejects_oversized_interpolation(void **state)
{
	size_t half = MANIFEST_MAX_SCALAR / 2 + 1;
	struct buf doc;

	(void)state;
	buf_init(&doc, MANIFEST_MAX_BYTES);
	assert_int_equal(buf_adds(&doc, HDR "vars:\n  big: "), 0);
	for (size_t i = 0; i < half; i++)
		assert_int_equal(buf_addc(&doc, 'x'), 0);
	assert_int_equal(buf_adds(&doc, "\nsteps:\n  - name: x\n"
	                                "    shell: ${big}${big}\n"),
	    0);
	expect_err_opts(doc.data, doc.len, NULL, SH_ERR_MANIFEST,
	    "mem.yml:7:12: value longer than 262144 bytes after "
	    "interpolation");
	buf_release(&doc);
}

/* ---------------------------------------------------------------- when */

static void
test_manifest_when_evaluation(void **state)
{
	static const struct {
		const char *when;
		bool enabled;
	} cases[] = {
		{ "true", true },
		{ "yes", true },
		{ "'1'", true },
		{ "false", false },
		{ "no", false },
		{ "'0'", false },
		{ "''", false },
		{ "${e}", false },
		{ "${d} == debian", true },
		{ "' ${d}  ==  debian '", true },
		{ "${d} != debian", false },
		{ "'\"${d}\" == \"debian\"'", true },
		{ "${e} == ''", false },
		{ "'\"${e}\" == \"\"'", true },
		{ "a==b", false },
		{ "'a != \"b\"'", true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *doc =
		    xasprintf(HDR "vars: {d: debian, e: ''}\nsteps:\n"
		                  "  - name: x\n    shell: e\n    when: %s\n",
		        cases[i].when);
		struct manifest *m = load_ok(doc);

		if (m->steps[0].enabled != cases[i].enabled)
			fail_msg("when: %s gave %d", cases[i].when,
			    m->steps[0].enabled);
		manifest_free(m);
		free(doc);
	}
	expect_err(HDR "steps:\n  - name: x\n    shell: e\n    when: maybe\n",
	    "mem.yml:6:11: cannot evaluate 'when: maybe'");
	expect_err(HDR "steps:\n  - name: x\n    shell: e\n    when: [a]\n",
	    "mem.yml:6:11: 'when' must be a scalar");
}

static void
test_manifest_become_and_tags_forms(void **state)
{
	struct manifest *m;

	(void)state;
	m = load_ok(
	    HDR "steps:\n"
	        "  - {name: a, shell: e}\n"
	        "  - {name: b, shell: e, become: true, tags: one}\n"
	        "  - {name: c, shell: e, become: false, tags: [x, y]}\n"
	        "  - {name: d, shell: e, become: www-data, tags: []}\n");
	assert_string_equal(m->steps[0].become, "root");
	assert_string_equal(m->steps[1].become, "root");
	assert_null(m->steps[2].become);
	assert_string_equal(m->steps[3].become, "www-data");
	assert_int_equal(m->steps[0].tags.n, 0);
	assert_int_equal(m->steps[1].tags.n, 1);
	assert_string_equal(m->steps[1].tags.v[0], "one");
	assert_int_equal(m->steps[2].tags.n, 2);
	assert_int_equal(m->steps[3].tags.n, 0);
	manifest_free(m);
}

/* ------------------------------------------------------- bad manifests */

static void
test_manifest_rejects_duplicate_key(void **state)
{
	(void)state;
	expect_err(HDR "steps: []\nstage: u\n",
	    "mem.yml:4:1: duplicate key 'stage' (first at line 2)");
	expect_err(HDR "steps:\n  - {name: a, shell: e, name: b}\n",
	    "mem.yml:4:25: duplicate key 'name' (first at line 4)");
}

static void
test_manifest_rejects_duplicate_step_name(void **state)
{
	(void)state;
	expect_err(HDR
	    "vars: {n: '1'}\nsteps:\n  - {name: a1, shell: e}\n"
	    "  - {name: b, shell: e}\n  - {name: 'a${n}', shell: e}\n",
	    "mem.yml:7:12: duplicate step name 'a1' (first at "
	    "mem.yml:5:12)");
}

static void
test_manifest_rejects_unknown_key(void **state)
{
	(void)state;
	expect_err(HDR "steps:\n  - nmae: x\n    shell: e\n",
	    "mem.yml:4:5: unknown key 'nmae' in step");
	expect_err(HDR "steps:\n  - name: x\n    shel: e\n",
	    "mem.yml:5:5: unknown key 'shel' in step (step kinds are: shell");
	expect_err(HDR "colour: red\n", "mem.yml:3:1: unknown key 'colour'");
}

static void
test_manifest_rejects_zero_or_two_kinds(void **state)
{
	(void)state;
	expect_err(HDR "steps:\n  - name: x\n    tags: [a]\n",
	    "mem.yml:4:5: step has no kind; add one of: shell");
	expect_err(HDR "steps:\n  - name: x\n    shell: e\n    path: /x\n",
	    "mem.yml:6:5: step has two kinds: 'shell' (line 5) and 'path'");
}

static void
test_manifest_rejects_wrong_types(void **state)
{
	(void)state;
	expect_err(HDR "steps: foo\n",
	    "mem.yml:3:8: 'steps' must be a sequence, not a scalar");
	expect_err(HDR "vars: [a]\n",
	    "mem.yml:3:7: 'vars' must be a map, not a sequence");
	expect_err(HDR "vars:\n  a: {b: c}\n",
	    "mem.yml:4:6: variable 'a' must be a scalar, not a map");
	expect_err(HDR "steps:\n  - {name: x, shell: e, timeout: abc}\n",
	    "mem.yml:4:34: 'timeout' must be a whole number from 1 to "
	    "604800");
	expect_err(HDR "steps:\n  - {name: x, shell: e, timeout: 604801}\n",
	    "'timeout' must be a whole number from 1 to 604800");
	expect_err(HDR "steps:\n  - {name: x, shell: e, retries: -1}\n",
	    "'retries' must be a whole number from 0 to 100");
	expect_err(HDR "steps:\n  - {name: x, shell: e, retry_delay: 1.5}\n",
	    "'retry_delay' must be a whole number");
	expect_err(HDR "steps:\n  - {name: [x], shell: e}\n",
	    "mem.yml:4:12: 'name' must be a scalar, not a sequence");
	expect_err("stagehand: 1\nstage: 'a b'\n",
	    "mem.yml:2:8: 'stage' must be a name");
	expect_err("stagehand: '2'\nstage: a\n",
	    "mem.yml:1:12: unsupported format version");
	expect_err("stage: a\n", "mem.yml:1:1: missing required key "
	                         "'stagehand'");
	expect_err("stagehand: 1\n", "mem.yml:1:1: missing required key "
	                             "'stage'");
	expect_err(HDR "secrets: tok\n",
	    "mem.yml:3:10: 'secrets' must be a sequence, not a scalar");
}

static void
test_manifest_kind_parse_errors_pass_through(void **state)
{
	(void)state;
	expect_err(HDR "steps:\n  - name: x\n    shell: [a, b]\n",
	    "mem.yml:5:12: shell: expected a script or a map, got a sequence");
}

/* The reboot kind's fields: defaults, and each bad value at its place. */
static void
test_manifest_reboot_fields(void **state)
{
	struct manifest *m;
	struct buf d;

	(void)state;
	buf_init(&d, 1024);
	/* Null is absent, as for every kind: the defaults. */
	m = load_ok(
	    HDR "steps:\n  - name: a\n    reboot: {command: ~, wait: ~}\n"
	        "  - name: b\n    reboot: {command: shutdown -r now, "
	        "wait: 90}\n");
	m->steps[0].kind->describe(&m->steps[0], &d);
	assert_string_equal(
	    d.data, "reboot: systemctl reboot (wait up to 600 s)");
	buf_reset(&d);
	m->steps[1].kind->describe(&m->steps[1], &d);
	assert_string_equal(
	    d.data, "reboot: shutdown -r now (wait up to 90 s)");
	assert_int_equal(m->steps[1].kind->flags & STEP_RETRY_SAFE, 0);
	manifest_free(m);
	buf_release(&d);

	expect_err(HDR "steps:\n  - name: x\n    reboot: {timeout: 60}\n",
	    "mem.yml:5:14: unknown key 'timeout' (expected one of: command, "
	    "wait)");
	expect_err(HDR "steps:\n  - name: x\n    reboot: {wait: 0}\n",
	    "mem.yml:5:20: 'wait' must be a whole number of seconds from 1 to "
	    "604800, got '0'");
	expect_err(HDR "steps:\n  - name: x\n    reboot: {wait: 604801}\n",
	    "mem.yml:5:20: 'wait' must be a whole number of seconds");
	expect_err(HDR "steps:\n  - name: x\n    reboot: {wait: 1m}\n",
	    "mem.yml:5:20: 'wait' must be a whole number of seconds from 1 to "
	    "604800, got '1m'");
	expect_err(HDR "steps:\n  - name: x\n    reboot: {wait: [1]}\n",
	    "mem.yml:5:20: 'wait' must be a whole number of seconds from 1 to "
	    "604800, got a sequence");
	expect_err(HDR "steps:\n  - name: x\n    reboot: {command: ''}\n",
	    "mem.yml:5:23: command: must not be empty");
	expect_err(HDR "steps:\n  - name: x\n    reboot: {command: \" \\t\"}\n",
	    "mem.yml:5:23: command: must not be empty");
	expect_err(HDR "steps:\n  - name: x\n    reboot: {command: [a]}\n",
	    "mem.yml:5:23:");
	expect_err(HDR "steps:\n  - name: x\n    reboot: now\n",
	    "mem.yml:5:13: reboot must be a map, not a scalar");
	/* The step's own timeout is the command's, and still allowed. */
	manifest_free(load_ok(
	    HDR "steps:\n  - name: x\n    timeout: 30\n    reboot: {}\n"));
}

/*
 * Two fake kinds, to see the loader's side of model/kind.h: the body's
 * type, the key check, a zeroed cfg of cfg_size, release on a failed parse
 * and in manifest_free, and code() naming the fields that are shell text.
 */
struct fake_cfg {
	unsigned char pad[40]; /* must arrive zeroed */
	char *owned;           /* what release frees */
	const char *word;
};

static const char *const fake_keys[] = { "word", "note", "fail", NULL };
static unsigned fake_releases;

static int
fake_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct fake_cfg *c = cfg;

	for (size_t i = 0; i < sizeof(c->pad); i++)
		assert_int_equal(c->pad[i], 0);
	assert_null(c->owned);
	assert_null(c->word);
	c->owned = xstrdup("built before a failure");
	if (body->type == NODE_SCALAR) {
		c->word = body->str;
		return 0;
	}
	assert_int_equal(body->type, NODE_MAP);
	if (node_opt_str(body, "word", &c->word, err) < 0)
		return -1;
	if (node_get(body, "fail") != NULL)
		return node_err(err, node_get(body, "fail"), "fake: failed");
	return 0;
}

static void
fake_release(void *cfg)
{
	struct fake_cfg *c = cfg;

	free(c->owned);
	fake_releases++;
}

static size_t
fake_code(const struct node *body, const struct node **out, size_t max)
{
	const struct node *w = node_get(body, "word");

	if (w == NULL || max == 0)
		return 0;
	out[0] = w;
	return 1;
}

static const struct step_kind fake_map = { .name = "fake",
	.keys = fake_keys,
	.cfg_size = sizeof(struct fake_cfg),
	.parse = fake_parse,
	.release = fake_release,
	.code = fake_code };
static const struct step_kind fake_scalar = { .name = "fakes",
	.flags = STEP_BODY_SCALAR,
	.keys = fake_keys,
	.cfg_size = sizeof(struct fake_cfg),
	.parse = fake_parse,
	.release = fake_release };
static const struct step_kind *const fake_kinds[] = { &fake_map, &fake_scalar,
	NULL };

static int
fake_load(const char *steps, struct manifest **m, struct errbuf *err)
{
	char *doc = xasprintf(HDR "vars: {v: x}\nsteps:\n%s", steps);
	int rc;

	err_clear(err);
	*m = NULL;
	rc = manifest_load_mem(
	    "mem.yml", doc, strlen(doc), fake_kinds, NULL, m, err);
	free(doc);
	return rc;
}

static void
test_manifest_loader_does_the_common_parse_work(void **state)
{
	struct manifest *m;
	struct errbuf err;
	const struct fake_cfg *c;

	(void)state;
	fake_releases = 0;
	assert_int_equal(fake_load("  - name: a\n    fake: {word: \"${v}\", "
	                           "note: \"${v}\"}\n"
	                           "  - name: b\n    fakes: w\n",
	                     &m, &err),
	    0);
	c = m->steps[0].cfg;
	assert_string_equal(c->word, "x");
	c = m->steps[1].cfg;
	assert_string_equal(c->word, "w");
	/* code() named `word`, not `note` */
	assert_int_equal(m->warnings.n, 1);
	assert_non_null(strstr(m->warnings.v[0], "mem.yml:6:19: warning:"));
	manifest_free(m);
	assert_int_equal(fake_releases, 2);

	assert_int_equal(fake_load("  - name: a\n    fake: w\n", &m, &err), -1);
	assert_string_equal(
	    err.msg, "mem.yml:6:11: fake must be a map, not a scalar");
	assert_int_equal(
	    fake_load("  - name: a\n    fakes: [w]\n", &m, &err), -1);
	assert_string_equal(err.msg,
	    "mem.yml:6:12: fakes: expected a script or a map, got a sequence");
	assert_int_equal(
	    fake_load("  - name: a\n    fake: {wrd: w}\n", &m, &err), -1);
	assert_string_equal(err.msg,
	    "mem.yml:6:12: unknown key 'wrd' (expected one of: word, note, "
	    "fail)");
	assert_int_equal(fake_releases, 2); /* parse was never called */
	assert_int_equal(
	    fake_load("  - name: a\n    fake: {fail: 1}\n", &m, &err), -1);
	assert_string_equal(err.msg, "mem.yml:6:18: fake: failed");
	assert_null(m);
	assert_int_equal(fake_releases, 3); /* what parse built is freed */
}

static void
test_manifest_rejects_include_from_memory(void **state)
{
	(void)state;
	expect_err(HDR "include: [x.yml]\n",
	    "mem.yml:3:11: include 'x.yml' is not allowed here");
	expect_err(HDR "steps:\n  - include: x.yml\n",
	    "mem.yml:4:14: include 'x.yml' is not allowed here");
	expect_err(HDR "steps:\n  - {include: x.yml, name: y}\n",
	    "mem.yml:4:22: an include entry in steps takes no other key");
}

static void
test_manifest_rejects_yaml_tricks(void **state)
{
	(void)state;
	expect_err(HDR "x: !!python/object/apply:os.system [id]\n",
	    "mem.yml:3:4: unsupported YAML tag 'tag:yaml.org,2002:python/");
	expect_err(HDR "vars: {a: !secret x}\n",
	    "mem.yml:3:11: unsupported YAML tag '!secret'");
	expect_err(HDR "---\nstagehand: 1\n", "mem.yml:3:1: multiple YAML "
	                                      "documents in one file");
	expect_err("- a\n", "mem.yml:1:1: the top level must be a map, not a "
	                    "sequence");
	expect_err("# just a comment\n", "mem.yml:1:1: no YAML document");
	expect_err(HDR "vars: {a: *nope}\n", "mem.yml:3:11: unknown anchor "
	                                     "'nope'");
	/* An alias inside its own anchor would recurse forever. */
	expect_err(HDR "vars: &a {b: *a}\n", "mem.yml:3:14: unknown anchor");
	expect_err(HDR "vars: {a: \"x\\0y\"}\n",
	    "mem.yml:3:11: scalar contains "
	    "a NUL character");
	expect_err(HDR "? [a]\n: b\n", "mem.yml:3:3: map keys must be scalars");
	/* YAML's !!str keeps a plain-looking value a string. */
	{
		struct manifest *m =
		    load_ok(HDR "steps:\n  - name: x\n"
		                "    shell: e\n    become: !!str true\n");

		assert_string_equal(m->steps[0].become, "true");
		manifest_free(m);
	}
}

static void
test_manifest_rejects_billion_laughs(void **state)
{
	struct buf doc;
	const char *prev = "a";
	static const char *const lv[] = { "b", "c", "d", "e", "f", "g", "h",
		NULL };

	(void)state;
	buf_init(&doc, 1u << 16);
	assert_int_equal(buf_adds(&doc, HDR "x:\n  a: &a [lol, lol, lol, "
	                                    "lol, lol, lol, lol, lol, lol]\n"),
	    0);
	for (size_t i = 0; lv[i] != NULL; i++) {
		assert_int_equal(
		    buf_addf(&doc, "  %s: &%s [", lv[i], lv[i]), 0);
		for (int k = 0; k < 9; k++)
			assert_int_equal(
			    buf_addf(&doc, "%s*%s", k ? ", " : "", prev), 0);
		assert_int_equal(buf_adds(&doc, "]\n"), 0);
		prev = lv[i];
	}
	expect_err_opts(doc.data, doc.len, NULL, SH_ERR_MANIFEST,
	    "more than 200000 YAML nodes (counting alias expansion)");
	buf_release(&doc);
}

static void
test_manifest_rejects_too_many_aliases(void **state)
{
	struct buf doc;

	(void)state;
	buf_init(&doc, 1u << 16);
	assert_int_equal(buf_adds(&doc, HDR "vars:\n  v: &v x\n"), 0);
	for (int i = 0; i <= MANIFEST_MAX_ALIASES; i++)
		assert_int_equal(buf_addf(&doc, "  a%d: *v\n", i), 0);
	expect_err_opts(doc.data, doc.len, NULL, SH_ERR_MANIFEST,
	    "mem.yml:69:8: more than 64 alias uses in one file");
	buf_release(&doc);
}

static void
test_manifest_rejects_deep_nesting(void **state)
{
	struct buf doc;

	(void)state;
	buf_init(&doc, 1u << 16);
	assert_int_equal(buf_adds(&doc, HDR "x: "), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_addc(&doc, '['), 0);
	/* Depth 1 is the top map: the 32nd '[' is level 33. */
	expect_err_opts(doc.data, doc.len, NULL, SH_ERR_MANIFEST,
	    "mem.yml:3:35: nesting deeper than 32 levels");
	buf_reset(&doc);
	/* Alias expansion counts towards the depth too. */
	assert_int_equal(buf_adds(&doc, HDR "a: &a "), 0);
	for (int i = 0; i < 30; i++)
		assert_int_equal(buf_addc(&doc, '['), 0);
	for (int i = 0; i < 30; i++)
		assert_int_equal(buf_addc(&doc, ']'), 0);
	assert_int_equal(buf_adds(&doc, "\nb: [[*a]]\n"), 0);
	expect_err_opts(doc.data, doc.len, NULL, SH_ERR_MANIFEST,
	    "nesting deeper than 32 levels");
	buf_release(&doc);
}

static void
test_manifest_rejects_too_many_steps(void **state)
{
	struct buf doc;

	(void)state;
	buf_init(&doc, MANIFEST_MAX_BYTES);
	assert_int_equal(buf_adds(&doc, HDR "steps:\n"), 0);
	for (int i = 0; i <= MANIFEST_MAX_STEPS; i++)
		assert_int_equal(
		    buf_addf(&doc, "- {name: s%d, shell: e}\n", i), 0);
	expect_err_opts(doc.data, doc.len, NULL, SH_ERR_MANIFEST,
	    "mem.yml:10004:3: more than 10000 steps");
	buf_release(&doc);
}

/* Truncated: every prefix of a valid document fails cleanly or loads. */
static void
test_manifest_truncated_documents_fail_cleanly(void **state)
{
	static const char doc[] =
	    HDR "description: \"quoted text\"\n"
	        "vars: {a: '1', b: &b [x]}\nsteps:\n  - name: s${a}\n"
	        "    shell:\n      script: |\n        echo ${a}\n"
	        "      env: {K: *b}\n    tags: [a, b]\n";
	size_t len = strlen(doc);
	int failures = 0;

	(void)state;
	for (size_t cut = 0; cut < len; cut++) {
		struct manifest *m = NULL;
		struct errbuf err;

		err_clear(&err);
		if (manifest_load_mem("mem.yml", doc, cut, step_kinds(), NULL,
		        &m, &err) == 0) {
			manifest_free(m);
			continue;
		}
		failures++;
		assert_null(m);
		if (!str_has_prefix(err.msg, "mem.yml:"))
			fail_msg("cut at %zu: '%s'", cut, err.msg);
		assert_int_equal(err.code, SH_ERR_MANIFEST);
	}
	assert_true(failures > 0);
	/* Cut inside the block scalar's env alias: libyaml's own error. */
	expect_err_opts(doc, len - 30, NULL, SH_ERR_MANIFEST, "mem.yml:");
}

/* Oversized: one byte over the cap fails before parsing. */
static void
test_manifest_rejects_oversized(void **state)
{
	char *big = xmalloc(MANIFEST_MAX_BYTES + 1);
	char *dir, *path;

	(void)state;
	memset(big, '#', MANIFEST_MAX_BYTES + 1);
	expect_err_opts(big, MANIFEST_MAX_BYTES + 1, NULL, SH_ERR_MANIFEST,
	    "mem.yml:1:1: file is larger than 1048576 bytes");
	dir = make_tmpdir();
	path = xasprintf("%s/big.yml", dir);
	write_file(path, big, MANIFEST_MAX_BYTES + 1);
	{
		char *want = xasprintf("%s:1:1: file is larger than 1048576 "
		                       "bytes",
		    path);

		expect_file_err(path, NULL, want);
		free(want);
	}
	rm_rf(dir);
	free(path);
	free(dir);
	free(big);
}

static void
test_manifest_rejects_bad_bytes(void **state)
{
	static const char utf8[] = HDR "steps:\n  - name: caf\xc3\xa9 \xff\n";
	static const char nul[] = HDR "vars: {a: x\0y}\n";
	static const char overlong[] = HDR "x: \xc0\xaf\n";

	(void)state;
	expect_err_opts(
	    "", 0, NULL, SH_ERR_MANIFEST, "mem.yml:1:1: empty file");
	expect_err_opts(utf8, sizeof(utf8) - 1, NULL, SH_ERR_MANIFEST,
	    "mem.yml:4:16: invalid UTF-8 (byte 0xff)");
	expect_err_opts(nul, sizeof(nul) - 1, NULL, SH_ERR_MANIFEST,
	    "mem.yml:3:12: NUL byte in file");
	expect_err_opts(overlong, sizeof(overlong) - 1, NULL, SH_ERR_MANIFEST,
	    "mem.yml:3:4: invalid UTF-8 (byte 0xc0)");
	expect_err(HDR "x: \x01\n", "mem.yml:3:4: control characters are not "
	                            "allowed");
}

/* --------------------------------------------------------- the corpus */

/* Every tests/fixtures/manifests/bad/NAME.yml states its own error. */
static void
check_bad_file(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name), *want, *line, *nl;
	struct buf text;
	struct errbuf err;
	const char *file = path;
	char *alt = NULL;

	assert_int_equal(file_read(path, MANIFEST_MAX_BYTES, &text, &err), 0);
	if (!str_has_prefix(text.data, "# expect: "))
		fail_msg("%s: first line is not '# expect: '", path);
	line = text.data + strlen("# expect: ");
	nl = strchr(line, '\n');
	assert_non_null(nl);
	*nl = '\0';
	if (str_has_prefix(nl + 1, "# expect-file: ")) {
		char *f = nl + 1 + strlen("# expect-file: ");

		*strchr(f, '\n') = '\0';
		alt = xasprintf("%s/%s", dir, f);
		file = alt;
	}
	/* "LINE:COL: fragment": the position must be exact, the
	 * fragment may be any part of the message. */
	nl = strstr(line, ": ");
	assert_non_null(nl);
	*nl = '\0';
	want = xasprintf("%s:%s: ", file, line);
	expect_file_err(path, NULL, want);
	expect_file_err(path, NULL, nl + 2);
	free(want);
	free(alt);
	buf_release(&text);
	free(path);
}

static void
test_manifest_bad_corpus(void **state)
{
	const char *dir = FIX "/bad";
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	(void)state;
	assert_non_null(d);
	unsetenv("STAGEHAND_VAR_zz_unset_secret");
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);

		if (len < 5 || strcmp(e->d_name + len - 4, ".yml") != 0)
			continue;
		check_bad_file(dir, e->d_name);
		n++;
	}
	closedir(d);
	assert_true(n >= 35);
}

/* ------------------------------------------------------------ includes */

static void
test_manifest_include_limits(void **state)
{
	char *dir = make_tmpdir(), *p, *top;

	(void)state;
	p = xasprintf("%s/stages", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	free(p);
	top = xasprintf("%s/stages/top.yml", dir);
	/* A chain of 17 nested includes is one too deep. */
	for (int i = 1; i <= MANIFEST_MAX_INCLUDE_DEPTH + 1; i++) {
		char *f = xasprintf("%s/stages/d%d.yml", dir, i);
		char *body =
		    xasprintf("stagehand: 1\ninclude: [d%d.yml]\n", i + 1);

		write_str(f, i == MANIFEST_MAX_INCLUDE_DEPTH + 1
		                 ? "stagehand: 1\n"
		                 : body);
		free(body);
		free(f);
	}
	write_str(top, "stagehand: 1\nstage: t\ninclude: [d1.yml]\n");
	expect_file_err(top, NULL,
	    "d16.yml:2:11: includes nested deeper "
	    "than 16 levels");
	/* 64 files are fine, 65 are not. */
	for (int i = 1; i <= MANIFEST_MAX_FILES; i++) {
		char *f = xasprintf("%s/stages/f%d.yml", dir, i);

		write_str(f, "stagehand: 1\n");
		free(f);
	}
	{
		struct buf b;
		struct manifest *m = NULL;
		struct errbuf err;

		buf_init(&b, 1u << 20);
		assert_int_equal(buf_adds(&b, "stagehand: 1\nstage: t\n"
		                              "include:\n"),
		    0);
		for (int i = 1; i < MANIFEST_MAX_FILES; i++)
			assert_int_equal(buf_addf(&b, "- f%d.yml\n", i), 0);
		write_str(top, b.data);
		if (manifest_load(top, step_kinds(), NULL, &m, &err) < 0)
			fail_msg("%s", err.msg);
		assert_int_equal(m->files.n, MANIFEST_MAX_FILES);
		manifest_free(m);
		assert_int_equal(buf_adds(&b, "- f64.yml\n"), 0);
		write_str(top, b.data);
		expect_file_err(top, NULL,
		    "top.yml:67:3: more than 64 manifest "
		    "files");
		buf_release(&b);
	}
	rm_rf(dir);
	free(top);
	free(dir);
}

static void
test_manifest_include_root(void **state)
{
	char *dir = make_tmpdir(), *top, *p;
	struct manifest_opts o = { 0 };
	struct manifest *m = NULL;
	struct errbuf err;

	(void)state;
	p = xasprintf("%s/project/stages", dir);
	assert_int_equal(mkdir_p(p, 0755, &err), 0);
	free(p);
	p = xasprintf("%s/project/play.yml", dir);
	write_str(p, "stagehand: 1\nsteps:\n  - {name: p, shell: e}\n");
	free(p);
	p = xasprintf("%s/outside.yml", dir);
	write_str(p, "stagehand: 1\n");
	free(p);
	top = xasprintf("%s/project/stages/top.yml", dir);
	/* ../play.yml is inside the default root (the project dir). */
	write_str(top, "stagehand: 1\nstage: t\ninclude: [../play.yml]\n");
	if (manifest_load(top, step_kinds(), NULL, &m, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(m->nsteps, 1);
	manifest_free(m);
	/* A narrower root refuses it. */
	p = xasprintf("%s/project/stages", dir);
	o.include_root = p;
	expect_file_err(top, &o, "outside the include root");
	free(p);
	/* ../../outside.yml escapes the default root. */
	write_str(
	    top, "stagehand: 1\nstage: t\ninclude: [../../outside.yml]\n");
	expect_file_err(top, NULL,
	    "top.yml:3:11: include '../../outside.yml' "
	    "resolves to");
	/* A symlink pointing out of the root is judged by its target. */
	p = xasprintf("%s/project/link.yml", dir);
	{
		char *target = xasprintf("%s/outside.yml", dir);

		assert_int_equal(symlink(target, p), 0);
		free(target);
	}
	free(p);
	write_str(top, "stagehand: 1\nstage: t\ninclude: [../link.yml]\n");
	expect_file_err(top, NULL, "outside the include root");
	o.include_root = "/nonexistent/root";
	expect_file_err(top, &o, "include root '/nonexistent/root'");
	rm_rf(dir);
	free(top);
	free(dir);
}

static void
test_manifest_missing_file_is_io_error(void **state)
{
	struct manifest *m = NULL;
	struct errbuf err;

	(void)state;
	assert_int_equal(
	    manifest_load("tests/no-such.yml", step_kinds(), NULL, &m, &err),
	    -1);
	assert_null(m);
	assert_int_equal(err.code, SH_ERR_IO);
	assert_non_null(strstr(err.msg, "tests/no-such.yml: No such file"));
}

/* ----------------------------------------------------------- vars files */

static void
test_manifest_vars_file(void **state)
{
	char *dir = make_tmpdir(), *p = xasprintf("%s/v.yml", dir), *want;
	struct vars_file vf;
	struct errbuf err;

	(void)state;
	write_str(p, "# comment\na: one\nb: 2\nempty:\n");
	if (manifest_vars_file(p, &vf, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(vf.n, 3);
	assert_string_equal(vf.vars[0].name, "a");
	assert_string_equal(vf.vars[0].value, "one");
	assert_string_equal(vf.vars[1].value, "2");
	assert_string_equal(vf.vars[2].value, "");
	assert_string_equal(vf.vars[2].origin, p);
	manifest_vars_free(&vf);

	write_str(p, "a: one\nb: [x]\n");
	assert_int_equal(manifest_vars_file(p, &vf, &err), -1);
	want = xasprintf("%s:2:4: variable 'b' must be a scalar", p);
	assert_non_null(strstr(err.msg, want));
	free(want);
	assert_int_equal(vf.n, 0);
	assert_null(vf.vars);

	write_str(p, "a: one\na: two\n");
	assert_int_equal(manifest_vars_file(p, &vf, &err), -1);
	assert_non_null(strstr(err.msg, ":2:1: duplicate key 'a'"));

	write_str(p, "a: 'cut");
	assert_int_equal(manifest_vars_file(p, &vf, &err), -1);
	assert_non_null(strstr(err.msg, "found unexpected end of stream"));

	write_str(p, "- a\n");
	assert_int_equal(manifest_vars_file(p, &vf, &err), -1);
	assert_non_null(strstr(err.msg, ":1:1: a vars file must be a map"));
	{
		char *big = xmalloc(VARS_FILE_MAX_BYTES + 1);

		memset(big, '#', VARS_FILE_MAX_BYTES + 1);
		write_file(p, big, VARS_FILE_MAX_BYTES + 1);
		free(big);
	}
	assert_int_equal(manifest_vars_file(p, &vf, &err), -1);
	assert_non_null(strstr(err.msg, ":1:1: file is larger than"));
	rm_rf(dir);
	free(p);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_loads_minimal),
		cmocka_unit_test(
		    test_manifest_null_changed_exit_code_is_absent),
		cmocka_unit_test(test_manifest_includes_come_first_in_order),
		cmocka_unit_test(test_manifest_common_fields),
		cmocka_unit_test(test_manifest_aliases_are_copies),
		cmocka_unit_test(test_manifest_stage_may_have_no_steps),
		cmocka_unit_test(test_manifest_vars_precedence),
		cmocka_unit_test(test_manifest_env_ignored_unless_asked),
		cmocka_unit_test(test_manifest_secrets),
		cmocka_unit_test(test_manifest_rejects_bad_override_name),
		cmocka_unit_test(test_manifest_interpolates_values_not_keys),
		cmocka_unit_test(test_manifest_dollar_forms),
		cmocka_unit_test(test_manifest_rejects_unknown_variable),
		cmocka_unit_test(test_manifest_q_interpolates_one_shell_word),
		cmocka_unit_test(
		    test_manifest_warns_raw_variable_in_shell_text),
		cmocka_unit_test(test_manifest_rejects_oversized_interpolation),
		cmocka_unit_test(test_manifest_when_evaluation),
		cmocka_unit_test(test_manifest_become_and_tags_forms),
		cmocka_unit_test(test_manifest_rejects_duplicate_key),
		cmocka_unit_test(test_manifest_rejects_duplicate_step_name),
		cmocka_unit_test(test_manifest_rejects_unknown_key),
		cmocka_unit_test(test_manifest_rejects_zero_or_two_kinds),
		cmocka_unit_test(test_manifest_rejects_wrong_types),
		cmocka_unit_test(test_manifest_kind_parse_errors_pass_through),
		cmocka_unit_test(test_manifest_reboot_fields),
		cmocka_unit_test(
		    test_manifest_loader_does_the_common_parse_work),
		cmocka_unit_test(test_manifest_rejects_include_from_memory),
		cmocka_unit_test(test_manifest_rejects_yaml_tricks),
		cmocka_unit_test(test_manifest_rejects_billion_laughs),
		cmocka_unit_test(test_manifest_rejects_too_many_aliases),
		cmocka_unit_test(test_manifest_rejects_deep_nesting),
		cmocka_unit_test(test_manifest_rejects_too_many_steps),
		cmocka_unit_test(
		    test_manifest_truncated_documents_fail_cleanly),
		cmocka_unit_test(test_manifest_rejects_oversized),
		cmocka_unit_test(test_manifest_rejects_bad_bytes),
		cmocka_unit_test(test_manifest_bad_corpus),
		cmocka_unit_test(test_manifest_include_limits),
		cmocka_unit_test(test_manifest_include_root),
		cmocka_unit_test(test_manifest_missing_file_is_io_error),
		cmocka_unit_test(test_manifest_vars_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
