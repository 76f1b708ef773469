/*
 * test_yaml.c: the bounded YAML reader builds trees whose nodes point at
 * where they were written, enforces every limit of struct yaml_opts with
 * an error at the offending position, and refuses what yaml.h says it
 * refuses, with or without the options that relax it.
 *
 * Documents are small strings; the limits are set low in the options so
 * each one is reached with a few bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/yaml.h"
#include "util/limits.h"

/* Generous limits, no relaxations: the manifest dialect in small. */
static struct yaml_opts
small(void)
{
	struct yaml_opts o = { 0 };

	o.max_bytes = 4096;
	o.max_depth = 8;
	o.max_nodes = 1000;
	o.max_aliases = 8;
	o.code = SH_ERR_MANIFEST;
	return o;
}

static struct node *
read_ok(const char *doc, const struct yaml_opts *o)
{
	struct node *root = NULL;
	struct errbuf err;

	err_clear(&err);
	if (yaml_read_tree("t.yml", doc, strlen(doc), o, NULL, &root, &err) < 0)
		fail_msg("unexpected error: %s", err.msg);
	assert_non_null(root);
	return root;
}

/* Reads data[0..len), expects failure with exactly `want` as message. */
static void
expect_errn(
    const char *data, size_t len, const struct yaml_opts *o, const char *want)
{
	struct node *root = (struct node *)1;
	struct errbuf err;

	err_clear(&err);
	if (yaml_read_tree("t.yml", data, len, o, NULL, &root, &err) == 0) {
		node_free(root);
		fail_msg("read, expected error: %s", want);
	}
	assert_null(root);
	assert_string_equal(err.msg, want);
	assert_int_equal(err.code, o->code);
}

static void
expect_err(const char *doc, const struct yaml_opts *o, const char *want)
{
	expect_errn(doc, strlen(doc), o, want);
}

static void
assert_at(const struct node *n, unsigned line, unsigned col)
{
	assert_non_null(n);
	if (n->line != line || n->col != col)
		fail_msg("node at %u:%u, expected %u:%u", n->line, n->col, line,
		    col);
	assert_string_equal(n->file, "t.yml");
}

/* ------------------------------------------------------------ trees */

static void
test_yaml_nodes_carry_their_positions(void **state)
{
	struct yaml_opts o = small();
	struct node *root = read_ok("a: 1\nb:\n  - x\n  - {c: 'd'}\n"
	                            "\xc3\xa9t\xc3\xa9: [\xc3\xa9, y]\n",
	    &o);
	const struct node *b = node_get(root, "b"), *c;

	(void)state;
	assert_int_equal(root->type, NODE_MAP);
	assert_at(root, 1, 1);
	assert_at(root->keys[0], 1, 1);
	assert_at(node_get(root, "a"), 1, 4);
	assert_int_equal(b->type, NODE_SEQ);
	assert_at(b, 3, 3);
	assert_at(b->items[0], 3, 5);
	assert_at(b->items[1], 4, 5);
	c = node_get(b->items[1], "c");
	assert_at(c, 4, 9);
	assert_string_equal(c->str, "d");
	assert_int_equal(c->len, 1);
	/* Columns count characters, not bytes. */
	c = node_get(root, "\xc3\xa9t\xc3\xa9");
	assert_at(c, 5, 6);
	assert_at(c->items[1], 5, 10);
	node_free(root);
}

static void
test_yaml_plain_means_unquoted_and_untagged(void **state)
{
	struct yaml_opts o = small();
	struct node *root = read_ok("{a: yes, b: 'yes', c: \"yes\", "
	                            "d: !!str yes, e: ! yes, f: !!int 1}",
	    &o);

	(void)state;
	assert_true(node_get(root, "a")->plain);
	assert_false(node_get(root, "b")->plain);
	assert_false(node_get(root, "c")->plain);
	assert_false(node_get(root, "d")->plain);
	assert_false(node_get(root, "e")->plain);
	assert_true(node_get(root, "f")->plain);
	node_free(root);
}

static void
test_yaml_document_need_not_be_a_map(void **state)
{
	struct yaml_opts o = small();
	struct node *root;

	(void)state;
	root = read_ok("- a\n- b\n", &o);
	assert_int_equal(root->type, NODE_SEQ);
	assert_int_equal(root->n, 2);
	assert_null(root->keys);
	assert_null(node_get(root, "a"));
	node_free(root);
	root = read_ok("just text\n", &o);
	assert_int_equal(root->type, NODE_SCALAR);
	assert_string_equal(root->str, "just text");
	node_free(root);
	/* An empty document is an empty plain scalar. */
	root = read_ok("---\n...\n", &o);
	assert_int_equal(root->type, NODE_SCALAR);
	assert_int_equal(root->len, 0);
	assert_true(root->plain);
	node_free(root);
}

static void
test_yaml_refuses_no_or_many_documents(void **state)
{
	struct yaml_opts o = small();

	(void)state;
	expect_err("# only a comment\n\n", &o,
	    "t.yml:1:1: no YAML document in file (only comments or blanks)");
	expect_err("a: 1\n---\nb: 2\n", &o,
	    "t.yml:2:1: multiple YAML documents in one file");
	expect_err("? [a]\n: b\n", &o,
	    "t.yml:1:3: map keys must be scalars, not a sequence");
	expect_err("{a: 1 b: 2}", &o,
	    "t.yml:1:8: did not find expected ',' or '}' (while parsing a "
	    "flow mapping at 1:1)");
}

/* ------------------------------------------------------------ bytes */

static void
test_yaml_refuses_bad_bytes_where_they_are(void **state)
{
	static const char nul[] = "a: 1\nb: x\0y\n";
	static const char utf8[] = "a: 1\nb: caf\xc3\xa9 \xff\n";
	struct yaml_opts o = small();

	(void)state;
	expect_errn("", 0, &o, "t.yml:1:1: empty file");
	expect_errn(nul, sizeof(nul) - 1, &o, "t.yml:2:5: NUL byte in file");
	expect_errn(
	    utf8, sizeof(utf8) - 1, &o, "t.yml:2:9: invalid UTF-8 (byte 0xff)");
	expect_err(
	    "a: 1\nb: \xc0\xaf\n", &o, "t.yml:2:4: invalid UTF-8 (byte 0xc0)");
	/* libyaml's own reader error, placed at the byte. */
	expect_err("a: 1\nb: x\x01\n", &o,
	    "t.yml:2:5: control characters are not allowed");
}

static void
test_yaml_refuses_more_than_max_bytes(void **state)
{
	struct yaml_opts o = small();
	char *doc = xmalloc(o.max_bytes + 1);

	(void)state;
	memset(doc, '#', o.max_bytes + 1);
	expect_errn(doc, o.max_bytes + 1, &o,
	    "t.yml:1:1: file is larger than 4096 bytes");
	/* At the limit, the same bytes are only a comment. */
	expect_errn(doc, o.max_bytes, &o,
	    "t.yml:1:1: no YAML document in file (only comments or blanks)");
	free(doc);
}

/* ------------------------------------------------------------ limits */

static void
test_yaml_refuses_nesting_deeper_than_max_depth(void **state)
{
	struct yaml_opts o = small();
	struct node *root;

	(void)state;
	o.max_depth = 3;
	/* The root is level 1: the scalar is level 3. */
	root = read_ok("[[x]]", &o);
	node_free(root);
	expect_err("[[[x]]]", &o, "t.yml:1:4: nesting deeper than 3 levels");
	expect_err(
	    "a: {b: {c: d}}", &o, "t.yml:1:9: nesting deeper than 3 levels");
	/* A copy counts at the depth it lands at. */
	expect_err("a: &a [x]\nb: [*a]\n", &o,
	    "t.yml:2:5: nesting deeper than 3 levels");
}

static void
test_yaml_refuses_more_than_max_nodes(void **state)
{
	struct yaml_opts o = small();
	struct node *root = NULL;
	struct errbuf err;
	size_t nodes = 0;

	(void)state;
	o.max_nodes = 5; /* the map, two keys, two values */
	root = read_ok("{a: 1, b: 2}", &o);
	node_free(root);
	expect_err("{a: 1, b: 2, c: 3}", &o,
	    "t.yml:1:14: more than 5 YAML nodes (counting alias expansion)");
	/* Copies count: the sixth node is `b`, the seventh a copy. */
	o.max_nodes = 6;
	expect_err("{a: &x [1, 2], b: *x}", &o,
	    "t.yml:1:19: more than 6 YAML nodes (counting alias expansion)");
	o.max_nodes = 5;
	/* A shared count carries over from call to call. */
	assert_int_equal(
	    yaml_read_tree("t.yml", "[1, 2, 3]", 9, &o, &nodes, &root, &err),
	    0);
	assert_int_equal(nodes, 4);
	node_free(root);
	assert_int_equal(
	    yaml_read_tree("t.yml", "[1, 2]", 6, &o, &nodes, &root, &err), -1);
	assert_null(root);
	assert_string_equal(err.msg, "t.yml:1:2: more than 5 YAML nodes "
	                             "(counting alias expansion)");
	/* Without aliases, the message does not mention them. */
	o.max_aliases = 0;
	expect_err("[1, 2, 3, 4, 5]", &o, "t.yml:1:14: more than 5 YAML nodes");
}

static void
test_yaml_aliases_are_bounded_copies(void **state)
{
	struct yaml_opts o = small();
	struct node *root;
	const struct node *a, *b;

	(void)state;
	root = read_ok("a: &x {k: v}\nb: *x\n", &o);
	a = node_get(root, "a");
	b = node_get(root, "b");
	assert_ptr_not_equal(a, b);
	assert_ptr_not_equal(a->items[0], b->items[0]);
	assert_string_equal(node_get(b, "k")->str, "v");
	/* A copy keeps the positions of what it copies. */
	assert_at(b, 1, 4);
	assert_at(b->items[0], 1, 11);
	node_free(root);
	o.max_aliases = 2;
	expect_err("[&x 1, *x, *x, *x]", &o,
	    "t.yml:1:16: more than 2 alias uses in one file");
	o.max_aliases = 0;
	expect_err("[&x 1, *x]", &o,
	    "t.yml:1:8: alias '*x': this file may not use aliases");
	o = small();
	expect_err("[*nope]", &o,
	    "t.yml:1:2: unknown anchor 'nope' (an alias must follow its "
	    "complete anchor)");
	/* An alias inside its own anchor would recurse forever. */
	expect_err("a: &a {b: *a}\n", &o,
	    "t.yml:1:11: unknown anchor 'a' (an alias must follow its "
	    "complete anchor)");
}

static void
test_yaml_refuses_aliases_copying_too_much_text(void **state)
{
	struct yaml_opts o = small();
	struct buf doc;

	(void)state;
	/* Copies may duplicate 4 * max_bytes of scalar text: the 9th copy of
	 * 500 bytes passes 4096. */
	o.max_bytes = 1024;
	o.max_aliases = 16;
	buf_init(&doc, 4096);
	assert_int_equal(buf_adds(&doc, "- &x "), 0);
	for (int i = 0; i < 500; i++)
		assert_int_equal(buf_addc(&doc, 'x'), 0);
	for (int i = 0; i < 9; i++)
		assert_int_equal(buf_adds(&doc, "\n- *x"), 0);
	expect_errn(doc.data, doc.len, &o,
	    "t.yml:10:3: aliases expand to too much text");
	/* One copy fewer is fine. */
	doc.len -= 5;
	{
		struct node *root = NULL;
		struct errbuf err;

		assert_int_equal(yaml_read_tree("t.yml", doc.data, doc.len, &o,
		                     NULL, &root, &err),
		    0);
		assert_int_equal(root->n, 9);
		node_free(root);
	}
	buf_release(&doc);
}

/* ------------------------------------------------------------ content */

static void
test_yaml_duplicate_keys(void **state)
{
	struct yaml_opts o = small();
	struct node *root;

	(void)state;
	expect_err("a: 1\nb: 2\na: 3\n", &o,
	    "t.yml:3:1: duplicate key 'a' (first at line 1)");
	/* The earliest repeat is reported, wherever its first is. */
	expect_err("{b: 1, a: 2, b: 3, a: 4}", &o,
	    "t.yml:1:14: duplicate key 'b' (first at line 1)");
	expect_err("x:\n  - {k: 1, k: 2}\n", &o,
	    "t.yml:2:12: duplicate key 'k' (first at line 2)");
	o.dup_keys = true;
	root = read_ok("a: 1\nb: 2\na: 3\n", &o);
	assert_int_equal(root->n, 3);
	assert_string_equal(node_get(root, "a")->str, "1");
	node_free(root);
}

static void
test_yaml_first_dup_finds_the_earliest_repeat(void **state)
{
	struct node n[5];
	struct yaml_name v[5];
	static const char *const s[] = { "c", "a", "b", "a", "c" };
	const struct yaml_name *first, *second;

	(void)state;
	memset(n, 0, sizeof(n));
	for (size_t i = 0; i < 5; i++)
		v[i] = (struct yaml_name){ s[i], &n[i], i };
	assert_true(yaml_first_dup(v, 5, &first, &second));
	assert_ptr_equal(first->n, &n[1]);
	assert_ptr_equal(second->n, &n[3]);
	for (size_t i = 0; i < 3; i++)
		v[i] = (struct yaml_name){ s[i], &n[i], i };
	assert_false(yaml_first_dup(v, 3, &first, &second));
	assert_null(first);
	assert_null(second);
	assert_false(yaml_first_dup(v, 1, &first, &second));
}

static void
test_yaml_refuses_tags_outside_the_core_schema(void **state)
{
	struct yaml_opts o = small();
	struct node *root;

	(void)state;
	expect_err("x: !!python/object/apply:os.system [id]\n", &o,
	    "t.yml:1:4: unsupported YAML tag "
	    "'tag:yaml.org,2002:python/object/apply:os.system'");
	expect_err(
	    "{a: !secret x}", &o, "t.yml:1:5: unsupported YAML tag '!secret'");
	root = read_ok("!!map {a: !!seq [!!int 1, !!float 2.5, !!bool true, "
	               "!!null ~, !!str s, ! t]}",
	    &o);
	assert_int_equal(node_get(root, "a")->n, 6);
	node_free(root);
}

static void
test_yaml_nul_in_scalars(void **state)
{
	struct yaml_opts o = small();
	struct node *root;
	const struct node *a;

	(void)state;
	expect_err(
	    "a: \"x\\0y\"\n", &o, "t.yml:1:4: scalar contains a NUL character");
	o.nul_scalars = true;
	root = read_ok("{\"a\": \"x\\u0000y\"}", &o);
	a = node_get(root, "a");
	assert_int_equal(a->len, 3);
	assert_memory_equal(a->str, "x\0y", 4);
	node_free(root);
}

static void
test_yaml_dropped_values_are_checked_not_kept(void **state)
{
	static const char *const drop[] = { "skip", NULL };
	struct yaml_opts o = small();
	struct node *root;

	(void)state;
	o.drop = drop;
	o.max_nodes = 5; /* enough for what is kept, not for what is not */
	root = read_ok("{a: 1, skip: {deep: [1, 2, {x: y}]}, b: 2}", &o);
	assert_int_equal(root->n, 2);
	assert_string_equal(root->keys[1]->str, "b");
	assert_null(node_get(root, "skip"));
	node_free(root);
	o.max_nodes = 1000;
	expect_err(
	    "{skip: [!foo x]}", &o, "t.yml:1:9: unsupported YAML tag '!foo'");
	expect_err("{skip: {[1]: 2}}", &o,
	    "t.yml:1:9: map keys must be scalars, not a sequence");
	expect_err("{skip: [1, 2}", &o,
	    "t.yml:1:13: did not find expected ',' or ']' (while parsing a "
	    "flow sequence at 1:8)");
	expect_err("{skip: \"\\0\"}", &o,
	    "t.yml:1:8: scalar contains a NUL character");
	o.max_depth = 3;
	expect_err(
	    "{skip: [[x]]}", &o, "t.yml:1:10: nesting deeper than 3 levels");
	o.max_aliases = 0;
	expect_err("{a: &x 1, skip: *x}", &o,
	    "t.yml:1:17: alias '*x': this file may not use aliases");
	/* Dropped anchors cannot be aliased. */
	o = small();
	o.drop = drop;
	expect_err("{skip: &x 1, a: *x}", &o,
	    "t.yml:1:17: unknown anchor 'x' (an alias must follow its "
	    "complete anchor)");
}

static void
test_yaml_errors_use_the_callers_code_and_words(void **state)
{
	struct yaml_opts o = small();

	(void)state;
	o.code = SH_ERR_IO;
	o.what = "malformed report: ";
	expect_err("{\"a\": [", &o,
	    "t.yml:2:1: malformed report: did not find expected node "
	    "content (while parsing a flow node at 2:1)");
	expect_errn("", 0, &o, "t.yml:1:1: malformed report: empty file");
}

/* Every prefix of a document reads, or fails at a position, cleanly. */
static void
test_yaml_truncated_documents_fail_cleanly(void **state)
{
	static const char doc[] =
	    "a: &a {b: [1, \"two\", 'three'], c: ~}\n"
	    "d:\n  - *a\n  - |\n    text\n  - {e: \"\\u00e9\"}\n"
	    "f: !!str 5\n";
	struct yaml_opts o = small();
	size_t len = strlen(doc);
	int failures = 0;

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct node *root = NULL;
		struct errbuf err;

		err_clear(&err);
		if (yaml_read_tree("t.yml", doc, cut, &o, NULL, &root, &err) ==
		    0) {
			assert_non_null(root);
			node_free(root);
			continue;
		}
		failures++;
		assert_null(root);
		if (!str_has_prefix(err.msg, "t.yml:"))
			fail_msg("cut at %zu: '%s'", cut, err.msg);
		assert_int_equal(err.code, SH_ERR_MANIFEST);
	}
	assert_true(failures > 0);
	expect_errn(doc, 20, &o,
	    "t.yml:2:1: did not find expected node content (while parsing "
	    "a flow node at 2:1)");
}

/* ------------------------------------------------------------ files */

static void
test_yaml_read_file_refuses_oversized_files_first(void **state)
{
	char dir[] = "/tmp/test_yaml.XXXXXX";
	struct yaml_opts o = small();
	struct errbuf err;
	struct buf b;
	char *path;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	path = xasprintf("%s/big.yml", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs("a: 1\n", f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(yaml_read_file(path, "big.yml", &o, &b, &err), 0);
	assert_string_equal(b.data, "a: 1\n");
	buf_release(&b);
	assert_int_equal(truncate(path, (off_t)o.max_bytes + 1), 0);
	o.code = SH_ERR_IO;
	o.what = "bad: ";
	assert_int_equal(yaml_read_file(path, "big.yml", &o, &b, &err), -1);
	assert_string_equal(err.msg, "big.yml:1:1: bad: file is larger than "
	                             "4096 bytes");
	assert_int_equal(err.code, SH_ERR_IO);
	buf_release(&b);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(yaml_read_file(path, "big.yml", &o, &b, &err), -1);
	assert_string_equal(err.msg, "big.yml: No such file or directory");
	assert_int_equal(err.code, SH_ERR_IO);
	buf_release(&b);
	assert_int_equal(rmdir(dir), 0);
	free(path);
}

static void
test_yaml_manifest_dialect_uses_the_manifest_limits(void **state)
{
	(void)state;
	assert_int_equal(yaml_manifest_opts.max_bytes, MANIFEST_MAX_BYTES);
	assert_int_equal(yaml_manifest_opts.max_depth, MANIFEST_MAX_DEPTH);
	assert_int_equal(yaml_manifest_opts.max_nodes, MANIFEST_MAX_NODES);
	assert_int_equal(yaml_manifest_opts.max_aliases, MANIFEST_MAX_ALIASES);
	assert_false(yaml_manifest_opts.dup_keys);
	assert_false(yaml_manifest_opts.nul_scalars);
	assert_null(yaml_manifest_opts.drop);
	assert_int_equal(yaml_manifest_opts.code, SH_ERR_MANIFEST);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_yaml_nodes_carry_their_positions),
		cmocka_unit_test(test_yaml_plain_means_unquoted_and_untagged),
		cmocka_unit_test(test_yaml_document_need_not_be_a_map),
		cmocka_unit_test(test_yaml_refuses_no_or_many_documents),
		cmocka_unit_test(test_yaml_refuses_bad_bytes_where_they_are),
		cmocka_unit_test(test_yaml_refuses_more_than_max_bytes),
		cmocka_unit_test(
		    test_yaml_refuses_nesting_deeper_than_max_depth),
		cmocka_unit_test(test_yaml_refuses_more_than_max_nodes),
		cmocka_unit_test(test_yaml_aliases_are_bounded_copies),
		cmocka_unit_test(
		    test_yaml_refuses_aliases_copying_too_much_text),
		cmocka_unit_test(test_yaml_duplicate_keys),
		cmocka_unit_test(test_yaml_first_dup_finds_the_earliest_repeat),
		cmocka_unit_test(
		    test_yaml_refuses_tags_outside_the_core_schema),
		cmocka_unit_test(test_yaml_nul_in_scalars),
		cmocka_unit_test(test_yaml_dropped_values_are_checked_not_kept),
		cmocka_unit_test(
		    test_yaml_errors_use_the_callers_code_and_words),
		cmocka_unit_test(test_yaml_truncated_documents_fail_cleanly),
		cmocka_unit_test(
		    test_yaml_read_file_refuses_oversized_files_first),
		cmocka_unit_test(
		    test_yaml_manifest_dialect_uses_the_manifest_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
