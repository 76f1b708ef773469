/*
 * test_node.c: the typed accessors step kinds use on the YAML tree convert
 * exactly what they document, keep defaults for absent keys, clear their
 * outputs on failure and point every error at the offending node.
 *
 * Trees are built by hand here so these tests do not depend on the loader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/node.h"

static unsigned next_line = 1;

static struct node *
mk(enum node_type t)
{
	struct node *n = xcalloc(1, sizeof(*n));

	n->type = t;
	n->file = "t.yml";
	n->line = next_line++;
	n->col = 3;
	return n;
}

static struct node *
scalar(const char *s, bool plain)
{
	struct node *n = mk(NODE_SCALAR);

	n->str = xstrdup(s);
	n->len = strlen(s);
	n->plain = plain;
	return n;
}

static struct node *
plain(const char *s)
{
	return scalar(s, true);
}

static void
add(struct node *parent, const char *key, struct node *val)
{
	parent->items =
	    xreallocarray(parent->items, parent->n + 1, sizeof(*parent->items));
	if (parent->type == NODE_MAP) {
		parent->keys = xreallocarray(
		    parent->keys, parent->n + 1, sizeof(*parent->keys));
		parent->keys[parent->n] = plain(key);
	}
	parent->items[parent->n++] = val;
}

static void
assert_err(const struct errbuf *err, const char *want)
{
	if (strstr(err->msg, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err->msg, want);
	assert_int_equal(err->code, SH_ERR_MANIFEST);
}

static void
test_node_err_prefixes_position(void **state)
{
	struct node *n = plain("x");
	struct errbuf err;

	(void)state;
	n->line = 12;
	n->col = 7;
	assert_int_equal(node_err(&err, n, "bad %s", "thing"), -1);
	assert_string_equal(err.msg, "t.yml:12:7: bad thing");
	assert_int_equal(err.code, SH_ERR_MANIFEST);
	node_free(n);
}

static void
test_node_get_key_and_check_keys(void **state)
{
	static const char *const allowed[] = { "a", "b", NULL };
	struct node *m = mk(NODE_MAP);
	struct errbuf err;

	(void)state;
	add(m, "a", plain("1"));
	add(m, "b", plain("2"));
	assert_string_equal(node_get(m, "b")->str, "2");
	assert_string_equal(node_key(m, "b")->str, "b");
	assert_null(node_get(m, "c"));
	assert_null(node_get(m->items[0], "a")); /* not a map */
	assert_int_equal(node_check_keys(m, allowed, &err), 0);
	add(m, "typo", plain("3"));
	assert_int_equal(node_check_keys(m, allowed, &err), -1);
	assert_err(&err, "unknown key 'typo' (expected one of: a, b)");
	assert_int_equal(node_expect(m, NODE_SEQ, "'x'", &err), -1);
	assert_err(&err, "'x' must be a sequence, not a map");
	assert_int_equal(node_expect(m, NODE_MAP, "'x'", &err), 0);
	node_free(m);
}

static void
test_node_strings(void **state)
{
	struct node *m = mk(NODE_MAP);
	struct errbuf err;
	const char *s = "default";

	(void)state;
	add(m, "s", scalar("text", false));
	add(m, "nul", plain("~"));
	add(m, "map", mk(NODE_MAP));
	assert_int_equal(node_req_str(m, "s", &s, &err), 0);
	assert_string_equal(s, "text");
	assert_int_equal(node_req_str(m, "missing", &s, &err), -1);
	assert_null(s);
	assert_err(&err, "missing required key 'missing'");
	assert_int_equal(node_req_str(m, "nul", &s, &err), -1);
	s = "default";
	assert_int_equal(node_opt_str(m, "missing", &s, &err), 0);
	assert_string_equal(s, "default");
	assert_int_equal(node_opt_str(m, "nul", &s, &err), 0);
	assert_string_equal(s, "default");
	assert_int_equal(node_opt_str(m, "map", &s, &err), -1);
	assert_null(s);
	assert_err(&err, "'map' must be a scalar, not a map");
	node_free(m);
}

static void
test_node_bools_are_plain_words(void **state)
{
	struct node *m = mk(NODE_MAP);
	struct errbuf err;
	bool b = true;

	(void)state;
	add(m, "y", plain("yes"));
	add(m, "f", plain("false"));
	add(m, "q", scalar("true", false));
	add(m, "w", plain("maybe"));
	assert_int_equal(node_opt_bool(m, "absent", &b, &err), 0);
	assert_true(b);
	assert_int_equal(node_opt_bool(m, "f", &b, &err), 0);
	assert_false(b);
	assert_int_equal(node_opt_bool(m, "y", &b, &err), 0);
	assert_true(b);
	assert_int_equal(node_opt_bool(m, "q", &b, &err), -1);
	assert_false(b);
	assert_err(&err, "'q' must be true or false (unquoted), got 'true'");
	assert_int_equal(node_opt_bool(m, "w", &b, &err), -1);
	assert_err(&err, "'w' must be true or false, got 'maybe'");
	assert_int_equal(node_as_bool(m->items[0], &b, &err), 0);
	assert_true(b);
	assert_int_equal(node_as_bool(m, &b, &err), -1);
	node_free(m);
}

static void
test_node_numbers(void **state)
{
	struct node *m = mk(NODE_MAP);
	struct errbuf err;
	uint64_t v = 42;

	(void)state;
	add(m, "ok", plain("300"));
	add(m, "big", plain("301"));
	add(m, "neg", plain("-1"));
	add(m, "empty", scalar("", false));
	/* Oversized: more digits than any uint64_t. */
	add(m, "huge", plain("184467440737095516160"));
	add(m, "seq", mk(NODE_SEQ));
	assert_int_equal(node_opt_u64(m, "absent", 300, &v, &err), 0);
	assert_int_equal(v, 42);
	assert_int_equal(node_opt_u64(m, "ok", 300, &v, &err), 0);
	assert_int_equal(v, 300);
	assert_int_equal(node_opt_u64(m, "big", 300, &v, &err), -1);
	assert_int_equal(v, 0);
	assert_err(&err, "'big' must be a whole number from 0 to 300, got "
	                 "'301'");
	assert_int_equal(node_opt_u64(m, "neg", 300, &v, &err), -1);
	assert_int_equal(node_opt_u64(m, "empty", 300, &v, &err), -1);
	assert_int_equal(node_opt_u64(m, "huge", UINT64_MAX, &v, &err), -1);
	assert_int_equal(node_opt_u64(m, "seq", 300, &v, &err), -1);
	assert_err(&err, "got a sequence");
	assert_int_equal(node_as_u64(m->items[0], 300, &v, &err), 0);
	assert_int_equal(v, 300);
	assert_int_equal(node_as_u64(m->items[1], 300, &v, &err), -1);
	node_free(m);
}

static void
test_node_modes(void **state)
{
	struct node *m = mk(NODE_MAP);
	struct errbuf err;
	unsigned mode = 0644;
	bool set = true;

	(void)state;
	add(m, "a", plain("0755"));
	add(m, "b", scalar("750", false));
	add(m, "c", plain("0855"));
	add(m, "d", plain("17777"));
	assert_int_equal(node_opt_mode(m, "absent", &mode, &set, &err), 0);
	assert_false(set);
	assert_int_equal(mode, 0644);
	assert_int_equal(node_opt_mode(m, "a", &mode, &set, &err), 0);
	assert_true(set);
	assert_int_equal(mode, 0755);
	assert_int_equal(node_opt_mode(m, "b", &mode, &set, &err), 0);
	assert_int_equal(mode, 0750);
	assert_int_equal(node_opt_mode(m, "c", &mode, &set, &err), -1);
	assert_false(set);
	assert_err(&err, "'c' must be an octal mode like 0755, got '0855'");
	assert_int_equal(node_opt_mode(m, "d", &mode, &set, &err), -1);
	node_free(m);
}

static void
test_node_strlists(void **state)
{
	struct node *m = mk(NODE_MAP), *seq = mk(NODE_SEQ), *bad = mk(NODE_SEQ);
	struct strlist l = { NULL, 0 };
	struct errbuf err;

	(void)state;
	add(seq, NULL, plain("x"));
	add(seq, NULL, plain("y"));
	add(bad, NULL, plain("x"));
	add(bad, NULL, mk(NODE_MAP));
	add(m, "one", plain("solo"));
	add(m, "many", seq);
	add(m, "bad", bad);
	add(m, "map", mk(NODE_MAP));
	assert_int_equal(node_opt_strlist(m, "absent", &l, &err), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(node_opt_strlist(m, "one", &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0], "solo");
	assert_int_equal(node_opt_strlist(m, "many", &l, &err), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[1], "y");
	assert_int_equal(node_opt_strlist(m, "bad", &l, &err), -1);
	assert_int_equal(l.n, 0);
	assert_err(&err, "'bad' items must be scalars, not a map");
	assert_int_equal(node_opt_strlist(m, "map", &l, &err), -1);
	assert_err(&err, "'map' must be a string or a list of strings");
	strlist_free(&l);
	node_free(m);
}

static void
test_node_type_names(void **state)
{
	(void)state;
	assert_string_equal(node_type_name(NODE_SCALAR), "scalar");
	assert_string_equal(node_type_name(NODE_SEQ), "sequence");
	assert_string_equal(node_type_name(NODE_MAP), "map");
	node_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_err_prefixes_position),
		cmocka_unit_test(test_node_get_key_and_check_keys),
		cmocka_unit_test(test_node_strings),
		cmocka_unit_test(test_node_bools_are_plain_words),
		cmocka_unit_test(test_node_numbers),
		cmocka_unit_test(test_node_modes),
		cmocka_unit_test(test_node_strlists),
		cmocka_unit_test(test_node_type_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
