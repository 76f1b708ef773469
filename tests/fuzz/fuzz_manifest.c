/*
 * fuzz_manifest.c: libFuzzer harness for the manifest loader.
 *
 * Feeds arbitrary bytes to manifest_load_mem() (includes are refused in
 * memory, environment variables are not read) and, when the input loads,
 * touches every step so ASan sees the whole result. Any crash, leak,
 * sanitizer report or error message without the "file:line:col: " prefix
 * is a bug. Also feeds a few fixed overrides so the variable paths run.
 *
 * Build: tests/fuzz/build.sh (or `make fuzz`); run:
 *   build/fuzz/fuzz_manifest -max_total_time=60 tests/fuzz/corpus/manifest
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/manifest.h"
#include "steps/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
touch(const struct manifest *m)
{
	size_t sum = 0;

	for (size_t i = 0; i < m->nsteps; i++) {
		const struct step *s = &m->steps[i];

		sum += strlen(s->name) + s->tags.n + s->index;
		if (s->become != NULL)
			sum += strlen(s->become);
		if (s->when != NULL)
			sum += strlen(s->when);
		if (s->kind == NULL || s->body == NULL || s->node == NULL)
			abort();
	}
	for (size_t i = 0; i < m->nvars; i++)
		if (m->vars[i].value != NULL)
			sum += strlen(m->vars[i].value);
	if (m->stage == NULL || sum == (size_t)-1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct var_override ov[] = {
		{ "fuzz", "value", "vars.yml" },
		{ "x", "${x}", "--var" },
	};
	const struct manifest_opts opts = { NULL, ov, 2, false };
	struct manifest *m = NULL;
	struct errbuf err;

	err_clear(&err);
	if (manifest_load_mem("fuzz.yml", (const char *)data, size,
	        step_kinds(), &opts, &m, &err) == 0) {
		touch(m);
		manifest_free(m);
		return 0;
	}
	if (m != NULL || strncmp(err.msg, "fuzz.yml:", 9) != 0)
		abort();
	return 0;
}
