/*
 * test_knownhosts.c: OpenSSH's known_hosts rules (knownhosts.h), one test
 * per rule. The keys and the hashed lines were made by ssh-keygen (-t
 * ed25519/ecdsa, then -H on a file naming host.example and
 * [host.example]:2222).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "transport/knownhosts.h"
#include "util/util.h"

#define KEY_A                                                                  \
	"AAAAC3NzaC1lZDI1NTE5AAAAIE5F95UXU4YRphbPuZTp97cduCjMdFkR0r40XHSnGdLF"
#define KEY_B                                                                  \
	"AAAAC3NzaC1lZDI1NTE5AAAAIP9X+XfzPHzc+YUEr0PaMbtY7m71zcOnYs4qJzqQGHOX"
#define KEY_E                                                                  \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBM05YvaG1Y0z+"    \
	"y9sK"                                                                 \
	"2DAxt5sFn8CTonwBO4qvHIL+ufoaDffmt2RQXrobVI+pV7TYN2k+"                 \
	"f3bALPtkIQiCtGxMZo="
#define ED "ssh-ed25519"
#define ECDSA "ecdsa-sha2-nistp256"
/* host.example -> KEY_A, [host.example]:2222 -> KEY_B */
#define HASHED_22 "|1|PYWgybBgNB7/L+FeMEkhhD09f6I=|ATwIj4iy5jiCQLfW6ZlC9xxADXU="
#define HASHED_2222                                                            \
	"|1|kRC5AMiIHoySurKpj2++js8D/4g=|HAe0PKeg2QddJnmGlQyHPAUGW3o="

static struct knownhosts_answer ans;

/* Checks key (base64) of type for host:port against text; fills ans. */
static enum knownhosts_result
check_port(const char *text, const char *host, unsigned port, const char *type,
    const char *key64)
{
	unsigned char blob[256];
	size_t bloblen = 0;
	struct knownhosts_query q = { host, port, type, NULL, 0 };
	struct errbuf err;

	if (key64 != NULL) {
		assert_int_equal(
		    sodium_base642bin(blob, sizeof(blob), key64, strlen(key64),
		        NULL, &bloblen, NULL, sodium_base64_VARIANT_ORIGINAL),
		    0);
		q.key = blob;
		q.keylen = bloblen;
	}
	knownhosts_answer_free(&ans);
	assert_int_equal(
	    knownhosts_check(text, strlen(text), 1u << 20, &q, &ans, &err), 0);
	return ans.result;
}

static enum knownhosts_result
check(const char *text, const char *key64)
{
	return check_port(text, "host.example", 22, ED, key64);
}

static int
teardown(void **state)
{
	(void)state;
	knownhosts_answer_free(&ans);
	return 0;
}

/* ------------------------------------------------------------ plain lines */

static void
test_knownhosts_matches_listed_key(void **state)
{
	(void)state;
	assert_int_equal(
	    check("host.example " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_MATCH);
	assert_int_equal(ans.line, 1);
}

static void
test_knownhosts_other_key_of_same_type_is_mismatch(void **state)
{
	(void)state;
	assert_int_equal(check("# c\nhost.example " ED " " KEY_B "\n", KEY_A),
	    KNOWNHOSTS_MISMATCH);
	assert_int_equal(ans.line, 2);
}

static void
test_knownhosts_any_matching_line_wins_over_a_mismatch(void **state)
{
	(void)state;
	assert_int_equal(check("host.example " ED " " KEY_B "\n"
	                       "host.example " ED " " KEY_A "\n",
	                     KEY_A),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(ans.line, 2);
}

static void
test_knownhosts_other_host_is_not_found(void **state)
{
	(void)state;
	assert_int_equal(check("other.example " ED " " KEY_A "\n"
	                       "host.example.org " ED " " KEY_A "\n",
	                     KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(ans.line, 0);
	assert_int_equal(ans.types.n, 0);
}

static void
test_knownhosts_other_type_is_not_found_but_listed(void **state)
{
	(void)state;
	assert_int_equal(check("host.example " ECDSA " " KEY_E "\n", KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(ans.types.n, 1);
	assert_string_equal(ans.types.v[0], ECDSA);
}

static void
test_knownhosts_types_only_query_lists_each_type_once(void **state)
{
	(void)state;
	assert_int_equal(check_port("host.example " ECDSA " " KEY_E "\n"
	                            "host.example " ED " " KEY_A "\n"
	                            "host.example " ED " " KEY_B "\n"
	                            "other " ED " " KEY_B "\n",
	                     "host.example", 22, NULL, NULL),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(ans.types.n, 2);
	assert_string_equal(ans.types.v[0], ECDSA);
	assert_string_equal(ans.types.v[1], ED);
}

/* ------------------------------------------------------------ @revoked */

static void
test_knownhosts_revoked_wins_over_a_matching_line(void **state)
{
	(void)state;
	assert_int_equal(check("host.example " ED " " KEY_A "\n"
	                       "@revoked host.example " ED " " KEY_A "\n",
	                     KEY_A),
	    KNOWNHOSTS_REVOKED);
	assert_int_equal(ans.line, 2);
	assert_int_equal(check("@revoked * " ED " " KEY_A "\n"
	                       "host.example " ED " " KEY_A "\n",
	                     KEY_A),
	    KNOWNHOSTS_REVOKED);
	assert_int_equal(ans.line, 1);
}

static void
test_knownhosts_revoked_alone_is_revoked_not_unknown(void **state)
{
	(void)state;
	assert_int_equal(
	    check("@revoked * " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_REVOKED);
	assert_int_equal(ans.types.n, 0);
}

static void
test_knownhosts_revoked_other_key_changes_nothing(void **state)
{
	(void)state;
	assert_int_equal(check("@revoked * " ED " " KEY_B "\n"
	                       "host.example " ED " " KEY_A "\n",
	                     KEY_A),
	    KNOWNHOSTS_MATCH);
}

static void
test_knownhosts_revoked_for_another_host_does_not_apply(void **state)
{
	(void)state;
	assert_int_equal(check("@revoked other.example " ED " " KEY_A "\n"
	                       "host.example " ED " " KEY_A "\n",
	                     KEY_A),
	    KNOWNHOSTS_MATCH);
}

static void
test_knownhosts_revoked_applies_on_other_ports(void **state)
{
	(void)state;
	assert_int_equal(check_port("@revoked * " ED " " KEY_B "\n"
	                            "[host.example]:2222 " ED " " KEY_B "\n",
	                     "host.example", 2222, ED, KEY_B),
	    KNOWNHOSTS_REVOKED);
}

/* ------------------------------------------------------------ @cert-authority
 */

static void
test_knownhosts_cert_authority_is_skipped_and_counted(void **state)
{
	(void)state;
	assert_int_equal(check("# ca\n@cert-authority *.example " ED " " KEY_A
	                       "\n@cert-authority other " ED " " KEY_A "\n",
	                     KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(ans.cert_lines, 1);
	assert_int_equal(ans.first_cert_line, 2);
	assert_int_equal(ans.types.n, 0);
}

static void
test_knownhosts_unknown_marker_line_is_skipped(void **state)
{
	(void)state;
	assert_int_equal(
	    check("@trusted host.example " ED " " KEY_A "\n", KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(ans.skipped, 1);
}

/* ------------------------------------------------------------ ports */

static void
test_knownhosts_plain_host_line_does_not_count_on_other_port(void **state)
{
	(void)state;
	assert_int_equal(check_port("host.example " ED " " KEY_A "\n",
	                     "host.example", 2222, ED, KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(ans.types.n, 0);
}

static void
test_knownhosts_port_entry_mismatch_is_final(void **state)
{
	(void)state;
	assert_int_equal(check_port("host.example " ED " " KEY_A "\n"
	                            "[host.example]:2222 " ED " " KEY_B "\n",
	                     "host.example", 2222, ED, KEY_A),
	    KNOWNHOSTS_MISMATCH);
	assert_int_equal(ans.line, 2);
}

static void
test_knownhosts_port_entry_matches_its_port_only(void **state)
{
	(void)state;
	assert_int_equal(check_port("[host.example]:2222 " ED " " KEY_B "\n",
	                     "host.example", 2222, ED, KEY_B),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(check_port("[host.example]:2222 " ED " " KEY_B "\n",
	                     "host.example", 2200, ED, KEY_B),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(check("[host.example]:2222 " ED " " KEY_B "\n", KEY_B),
	    KNOWNHOSTS_NOT_FOUND);
}

static void
test_knownhosts_bracketed_port_22_means_the_plain_host(void **state)
{
	(void)state;
	assert_int_equal(check("[host.example]:22 " ED " " KEY_A "\n", KEY_A),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(check_port("host.example " ED " " KEY_A "\n",
	                     "host.example", 0, ED, KEY_A),
	    KNOWNHOSTS_MATCH);
}

/* ------------------------------------------------------------ patterns */

/* OpenSSH writes an IPv6 address bare for port 22, "[addr]:port" else. */
static void
test_knownhosts_ipv6_addresses(void **state)
{
	(void)state;
	assert_int_equal(check_port("2001:db8::1 " ED " " KEY_A "\n",
	                     "2001:db8::1", 22, ED, KEY_A),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(check_port("[2001:db8::1]:22 " ED " " KEY_A "\n",
	                     "2001:db8::1", 22, ED, KEY_A),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(check_port("[2001:db8::1]:2222 " ED " " KEY_A "\n",
	                     "2001:db8::1", 2222, ED, KEY_A),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(check_port("2001:db8::1 " ED " " KEY_A "\n",
	                     "2001:db8::1", 2222, ED, KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(check_port("2001:db8::1 " ED " " KEY_A "\n"
	                            "[2001:db8::1]:2222 " ED " " KEY_B "\n",
	                     "2001:db8::1", 2222, ED, KEY_A),
	    KNOWNHOSTS_MISMATCH);
	assert_int_equal(ans.line, 2);
	/* A prefix of the address is another host. */
	assert_int_equal(check_port("2001:db8::1 " ED " " KEY_A "\n",
	                     "2001:db8::10", 22, ED, KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	/* Letters in an address compare without case. */
	assert_int_equal(check_port("[2001:DB8::A]:2222 " ED " " KEY_A "\n",
	                     "2001:db8::a", 2222, ED, KEY_A),
	    KNOWNHOSTS_MATCH);
}

static void
test_knownhosts_comma_list_and_wildcards(void **state)
{
	(void)state;
	assert_int_equal(check("a,b,host.example " ED " " KEY_A "\n", KEY_A),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(
	    check("*.example " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_MATCH);
	assert_int_equal(
	    check("h?st.exampl? " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_MATCH);
	assert_int_equal(
	    check("h?st " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(check_port("[*.example]:2222 " ED " " KEY_A "\n",
	                     "host.example", 2222, ED, KEY_A),
	    KNOWNHOSTS_MATCH);
}

static void
test_knownhosts_negation_excludes_whatever_the_order(void **state)
{
	(void)state;
	assert_int_equal(
	    check("*.example,!host.example " ED " " KEY_A "\n", KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(check("!host.example,* " ED " " KEY_A "\n", KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
	assert_int_equal(
	    check("!other.example,*.example " ED " " KEY_A "\n", KEY_A),
	    KNOWNHOSTS_MATCH);
	/* A negation alone matches nothing. */
	assert_int_equal(
	    check("!other " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_NOT_FOUND);
}

static void
test_knownhosts_names_compare_without_case(void **state)
{
	(void)state;
	assert_int_equal(
	    check("HOST.Example " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_MATCH);
	assert_int_equal(check_port("host.example " ED " " KEY_A "\n",
	                     "Host.EXAMPLE", 22, ED, KEY_A),
	    KNOWNHOSTS_MATCH);
}

static void
test_knownhosts_many_stars_do_not_backtrack_forever(void **state)
{
	char line[4096];
	size_t n = 0;

	(void)state;
	for (int i = 0; i < 1000; i++) {
		line[n++] = '*';
		line[n++] = 'a';
	}
	memcpy(
	    line + n, "z " ED " " KEY_A "\n", strlen(ED) + strlen(KEY_A) + 5);
	assert_int_equal(
	    check_port(line,
	        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	        22, ED, KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
}

/* ------------------------------------------------------------ hashed */

static void
test_knownhosts_hashed_names_match_per_port(void **state)
{
	(void)state;
	assert_int_equal(
	    check(HASHED_22 " " ED " " KEY_A "\n", KEY_A), KNOWNHOSTS_MATCH);
	assert_int_equal(
	    check(HASHED_22 " " ED " " KEY_A "\n", KEY_B), KNOWNHOSTS_MISMATCH);
	assert_int_equal(check_port(HASHED_22 " " ED " " KEY_A "\n" HASHED_2222
	                                      " " ED " " KEY_B "\n",
	                     "host.example", 2222, ED, KEY_A),
	    KNOWNHOSTS_MISMATCH);
	assert_int_equal(ans.line, 2);
	assert_int_equal(check_port(HASHED_22 " " ED " " KEY_A "\n",
	                     "other.example", 22, ED, KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
}

static void
test_knownhosts_bad_hashes_are_skipped_not_matched(void **state)
{
	(void)state;
	assert_int_equal(
	    check("|1|PYWgybBgNB7/L+FeMEkhhD09f6I= " ED " " KEY_A
	          "\n|1|!!!|ATwIj4iy5jiCQLfW6ZlC9xxADXU= " ED " " KEY_A
	          "\n|1|AAAA|ATwIj4iy5jiCQLfW6ZlC9xxADXU= " ED " " KEY_A
	          "\n|2|x|y " ED " " KEY_A "\n",
	        KEY_A),
	    KNOWNHOSTS_NOT_FOUND);
}

/* ------------------------------------------------------------ syntax */

static void
test_knownhosts_comments_blanks_crlf_and_trailing_comment(void **state)
{
	(void)state;
	assert_int_equal(
	    check("# comment host.example " ED " " KEY_A "\n"
	          "\n   \t\n"
	          "  host.example\t" ED "  " KEY_A " a comment\r\n",
	        KEY_A),
	    KNOWNHOSTS_MATCH);
	assert_int_equal(ans.line, 4);
	assert_int_equal(ans.skipped, 0);
}

static void
test_knownhosts_malformed_lines_are_skipped(void **state)
{
	(void)state;
	assert_int_equal(check("host.example\n"
	                       "host.example " ED "\n"
	                       "host.example " ED " not*base64\n"
	                       "host.example " ECDSA " " KEY_A "\n"
	                       "host.example 1024 65537 12345\n"
	                       "@revoked\n"
	                       "host.example " ED " " KEY_B "\n",
	                     KEY_A),
	    KNOWNHOSTS_MISMATCH);
	assert_int_equal(ans.skipped, 6);
	assert_int_equal(ans.line, 7);
}

static void
test_knownhosts_line_with_nul_is_skipped(void **state)
{
	static const char text[] = "host.example " ED " " KEY_A "\n"
	                           "host.ex\0ample " ED " " KEY_B "\n";
	unsigned char blob[64];
	size_t bloblen = 0;
	struct knownhosts_query q = { "host.example", 22, ED, blob, 0 };
	struct errbuf err;

	(void)state;
	assert_int_equal(
	    sodium_base642bin(blob, sizeof(blob), KEY_A, strlen(KEY_A), NULL,
	        &bloblen, NULL, sodium_base64_VARIANT_ORIGINAL),
	    0);
	q.keylen = bloblen;
	knownhosts_answer_free(&ans);
	assert_int_equal(
	    knownhosts_check(text, sizeof(text) - 1, 4096, &q, &ans, &err), 0);
	assert_int_equal(ans.result, KNOWNHOSTS_MATCH);
	assert_int_equal(ans.skipped, 1);
}

static void
test_knownhosts_truncated_last_line(void **state)
{
	const char *full = "host.example " ED " " KEY_A;

	(void)state;
	/* No newline at the end: still a line. */
	assert_int_equal(check(full, KEY_A), KNOWNHOSTS_MATCH);
	/* Cut anywhere inside the key: never a match, never a crash. */
	for (size_t n = 0; n < strlen(full); n++) {
		char *cut = xstrndup(full, n);

		assert_int_not_equal(check(cut, KEY_A), KNOWNHOSTS_MATCH);
		free(cut);
	}
}

static void
test_knownhosts_oversized_input_is_refused(void **state)
{
	const char *text = "host.example " ED " " KEY_A "\n";
	struct knownhosts_query q = { "host.example", 22, NULL, NULL, 0 };
	struct errbuf err;

	(void)state;
	knownhosts_answer_free(&ans);
	assert_int_equal(
	    knownhosts_check(text, strlen(text), 10, &q, &ans, &err), -1);
	assert_int_equal(err.code, SH_ERR_USAGE);
	assert_non_null(strstr(err.msg, "larger than 10 bytes"));
	assert_int_equal(
	    knownhosts_check(text, strlen(text), strlen(text), &q, &ans, &err),
	    0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_knownhosts_matches_listed_key),
		cmocka_unit_test(
		    test_knownhosts_other_key_of_same_type_is_mismatch),
		cmocka_unit_test(
		    test_knownhosts_any_matching_line_wins_over_a_mismatch),
		cmocka_unit_test(test_knownhosts_other_host_is_not_found),
		cmocka_unit_test(
		    test_knownhosts_other_type_is_not_found_but_listed),
		cmocka_unit_test(
		    test_knownhosts_types_only_query_lists_each_type_once),
		cmocka_unit_test(
		    test_knownhosts_revoked_wins_over_a_matching_line),
		cmocka_unit_test(
		    test_knownhosts_revoked_alone_is_revoked_not_unknown),
		cmocka_unit_test(
		    test_knownhosts_revoked_other_key_changes_nothing),
		cmocka_unit_test(
		    test_knownhosts_revoked_for_another_host_does_not_apply),
		cmocka_unit_test(
		    test_knownhosts_revoked_applies_on_other_ports),
		cmocka_unit_test(
		    test_knownhosts_cert_authority_is_skipped_and_counted),
		cmocka_unit_test(
		    test_knownhosts_unknown_marker_line_is_skipped),
		cmocka_unit_test(
		    test_knownhosts_plain_host_line_does_not_count_on_other_port),
		cmocka_unit_test(test_knownhosts_port_entry_mismatch_is_final),
		cmocka_unit_test(
		    test_knownhosts_port_entry_matches_its_port_only),
		cmocka_unit_test(
		    test_knownhosts_bracketed_port_22_means_the_plain_host),
		cmocka_unit_test(test_knownhosts_ipv6_addresses),
		cmocka_unit_test(test_knownhosts_comma_list_and_wildcards),
		cmocka_unit_test(
		    test_knownhosts_negation_excludes_whatever_the_order),
		cmocka_unit_test(test_knownhosts_names_compare_without_case),
		cmocka_unit_test(
		    test_knownhosts_many_stars_do_not_backtrack_forever),
		cmocka_unit_test(test_knownhosts_hashed_names_match_per_port),
		cmocka_unit_test(
		    test_knownhosts_bad_hashes_are_skipped_not_matched),
		cmocka_unit_test(
		    test_knownhosts_comments_blanks_crlf_and_trailing_comment),
		cmocka_unit_test(test_knownhosts_malformed_lines_are_skipped),
		cmocka_unit_test(test_knownhosts_line_with_nul_is_skipped),
		cmocka_unit_test(test_knownhosts_truncated_last_line),
		cmocka_unit_test(test_knownhosts_oversized_input_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
