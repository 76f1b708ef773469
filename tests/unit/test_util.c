/*
 * test_util.c: the small helpers in util.c that turn numbers and strings
 * into text other code relies on: sizes for people, shell quoting, strict
 * number parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"

static void
assert_size(uint64_t n, const char *want)
{
	struct buf b;

	buf_init(&b, 64);
	assert_int_equal(buf_add_size(&b, n), 0);
	assert_string_equal(b.data, want);
	buf_release(&b);
}

static void
test_size(void **state)
{
	(void)state;
	assert_size(0, "0 B");
	assert_size(1023, "1023 B");
	assert_size(1024, "1.0 KiB");
	assert_size(1536, "1.5 KiB");
	assert_size(1048575, "1024.0 KiB");
	assert_size(1048576, "1.0 MiB");
	assert_size(3u << 30, "3.0 GiB");
	assert_size(5ull << 40, "5.0 TiB");
	/* No larger unit: TiB keeps counting. */
	assert_size(2048ull << 40, "2048.0 TiB");
	assert_size(UINT64_MAX, "16777216.0 TiB");
}

static void
assert_quoted(const char *in, const char *want)
{
	struct buf b;

	buf_init(&b, 256);
	assert_int_equal(sh_quote(&b, in), 0);
	assert_string_equal(b.data, want);
	buf_release(&b);
}

static void
test_sh_quote(void **state)
{
	(void)state;
	assert_quoted("", "''");
	assert_quoted("abc", "'abc'");
	assert_quoted("abc'd", "'abc'\\''d'");
	assert_quoted("$(x) `y` \"z\"", "'$(x) `y` \"z\"'");
}

static void
test_parse_u64(void **state)
{
	uint64_t v = 0;

	(void)state;
	assert_int_equal(parse_u64("42", 2, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_u64("101", 3, 100, &v), -1);
	assert_int_equal(parse_u64("+1", 2, 100, &v), -1);
	assert_int_equal(parse_u64(" 1", 2, 100, &v), -1);
	assert_int_equal(parse_u64("", 0, 100, &v), -1);
	assert_int_equal(
	    parse_u64("18446744073709551615", 20, UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(
	    parse_u64("18446744073709551616", 20, UINT64_MAX, &v), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_sh_quote),
		cmocka_unit_test(test_parse_u64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
