/*
 * test_util.c: the small helpers in util.c that turn numbers and strings
 * into text other code relies on: sizes for people, shell quoting, strict
 * number parsing, the sticky errors of struct buf, the UTF-8 decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/util.h"

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

/* The hole alias.c's scripts could have: a failed append, then more. */
static void
test_buf_failed_append_refuses_later_appends(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_adds(&b, "abc"), 0);
	assert_false(buf_failed(&b));
	assert_int_equal(buf_adds(&b, "defghijk"), -1);
	assert_true(buf_failed(&b));
	/* Each of these fits, yet the buffer stays failed and unchanged. */
	assert_int_equal(buf_adds(&b, "d"), -1);
	assert_int_equal(buf_addc(&b, 'e'), -1);
	assert_int_equal(buf_addf(&b, "%d", 1), -1);
	assert_int_equal(buf_add(&b, "f", 1), -1);
	assert_int_equal(sh_quote(&b, "x"), -1);
	assert_int_equal(b.len, 3);
	assert_string_equal(b.data, "abc");
	assert_true(buf_failed(&b));
	/* buf_reset starts over. */
	buf_reset(&b);
	assert_false(buf_failed(&b));
	assert_int_equal(buf_adds(&b, "d"), 0);
	assert_string_equal(b.data, "d");
	buf_release(&b);
}

static void
test_buf_detach_clears_the_failure(void **state)
{
	struct buf b;
	char *p;

	(void)state;
	buf_init(&b, 2);
	assert_int_equal(buf_addf(&b, "%s", "long"), -1);
	assert_true(buf_failed(&b));
	p = buf_detach(&b, NULL);
	free(p);
	assert_false(buf_failed(&b));
	assert_int_equal(buf_adds(&b, "ok"), 0);
	buf_release(&b);
	assert_false(buf_failed(&b));
}

static void
test_utf8_decode_accepts_and_rejects(void **state)
{
	uint32_t cp = 0;

	(void)state;
	assert_int_equal(utf8_decode((const unsigned char *)"A", 1, &cp), 1);
	assert_int_equal(cp, 'A');
	assert_int_equal(
	    utf8_decode((const unsigned char *)"\xc3\xa9", 2, &cp), 2);
	assert_int_equal(cp, 0xe9);
	assert_int_equal(
	    utf8_decode((const unsigned char *)"\xf0\x9f\x98\x80", 4, &cp), 4);
	assert_int_equal(cp, 0x1f600);
	/* overlong, surrogate, beyond U+10FFFF, truncated, stray continuation
	 */
	assert_int_equal(
	    utf8_decode((const unsigned char *)"\xc0\xaf", 2, &cp), 0);
	assert_int_equal(
	    utf8_decode((const unsigned char *)"\xed\xa0\x80", 3, &cp), 0);
	assert_int_equal(
	    utf8_decode((const unsigned char *)"\xf4\x90\x80\x80", 4, &cp), 0);
	assert_int_equal(
	    utf8_decode((const unsigned char *)"\xe2\x82", 2, &cp), 0);
	assert_int_equal(utf8_decode((const unsigned char *)"\x80", 1, &cp), 0);
	assert_true(utf8_valid((const unsigned char *)"a\xc3\xa9"
	                                              "b",
	    4));
	assert_false(utf8_valid((const unsigned char *)"a\xc3", 2));
	assert_false(utf8_valid((const unsigned char *)"\xe0\x80\x80", 3));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_sh_quote),
		cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_buf_failed_append_refuses_later_appends),
		cmocka_unit_test(test_buf_detach_clears_the_failure),
		cmocka_unit_test(test_utf8_decode_accepts_and_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
