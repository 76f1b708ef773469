/*
 * stepcase.h: load-time cases for one step kind's unit tests. Define STEP
 * (the manifest text up to the kind's body, e.g. "...    package: ") and
 * STEP_KIND (the kind's name) before including it; it defines
 *   load(body, err)          the one-step manifest STEP + body, or NULL
 *   expect_ok(body, want)    body loads as STEP_KIND and describes as want
 *   expect_err(body, want)   body is a manifest error containing want
 * as static functions of the including test file (one per binary).
 */
#ifndef STAGEHAND_TEST_STEPCASE_H
#define STAGEHAND_TEST_STEPCASE_H

#if !defined(STEP) || !defined(STEP_KIND)
#error "define STEP and STEP_KIND before including stepcase.h"
#endif

static struct manifest *
load(const char *body, struct errbuf *err)
{
	struct manifest *m = NULL;
	char *doc = xasprintf(STEP "%s\n", body);

	err_clear(err);
	if (manifest_load_mem(
	        "mem.yml", doc, strlen(doc), step_kinds(), NULL, &m, err) < 0)
		m = NULL;
	free(doc);
	return m;
}

/* body loads, and its offline description is want. */
static void
expect_ok(const char *body, const char *want)
{
	struct errbuf err;
	struct manifest *m = load(body, &err);
	struct buf d;

	if (m == NULL)
		fail_msg("'%s' did not load: %s", body, err.msg);
	assert_int_equal(m->nsteps, 1);
	assert_string_equal(m->steps[0].kind->name, STEP_KIND);
	buf_init(&d, 4096);
	m->steps[0].kind->describe(&m->steps[0], &d);
	if (strcmp(d.data, want) != 0)
		fail_msg(
		    "'%s' describes as '%s', wanted '%s'", body, d.data, want);
	buf_release(&d);
	manifest_free(m);
}

/* body is refused with an error that contains want. */
static void
expect_err(const char *body, const char *want)
{
	struct errbuf err;
	struct manifest *m = load(body, &err);

	if (m != NULL) {
		manifest_free(m);
		fail_msg("'%s' loaded, expected: %s", body, want);
	}
	assert_int_equal(err.code, SH_ERR_MANIFEST);
	if (strstr(err.msg, want) == NULL)
		fail_msg("'%s': error '%s' does not contain '%s'", body,
		    err.msg, want);
}

#endif
