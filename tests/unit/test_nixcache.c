/*
 * test_nixcache.c: nix_closure_resolve() and nix_cache_info() refuse bad
 * arguments before any network traffic, fail closed (out-params cleared,
 * nothing to free) and name the URL when nothing listens. The real caches
 * (nginx, the faulty server, the tampered corpus) are exercised by
 * tests/t0710-closure-resolve.sh; here only a closed local port is used.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "nix/nixcache.h"

#define ROOT "/nix/store/gx9syv1gsw205k6plx7cfaihgypzvy7x-small-root"
#define KEY "stagehand-test-1:NsOnJYE6YCeV5m/ND6LsDvoVKVkJ04w73rLy6e+QQ6o="

/* A local TCP port nothing listens on (bound, then closed). */
static unsigned
closed_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void
resolve_err(const char *const *subs, size_t nsubs, const struct nix_keys *k,
    const char *root, enum sh_err code, const char *want)
{
	struct nix_cache_opts o;
	struct closure c;
	struct errbuf err;

	memset(&o, 0, sizeof(o));
	o.substituters = subs;
	o.nsubstituters = nsubs;
	o.keys = k;
	o.timeout_s = 5;
	memset(&c, 0xa5, sizeof(c));
	err_clear(&err);
	assert_int_equal(nix_closure_resolve(&o, root, &c, &err), -1);
	assert_int_equal(err.code, code);
	if (strstr(err.msg, want) == NULL)
		fail_msg("error '%s' lacks '%s'", err.msg, want);
	assert_null(c.root);
	assert_null(c.paths);
	assert_int_equal(c.n, 0);
	nix_closure_free(&c);
}

static void
test_nixcache_refuses_bad_arguments(void **state)
{
	const char *good[] = { "http://127.0.0.1:9/cache" };
	const char *file[] = { "file:///tmp/cache" };
	const char *ftp[] = { "ftp://127.0.0.1/cache" };
	const char *space[] = { "http://127.0.0.1/a cache" };
	struct nix_keys keys = { NULL, 0 }, none = { NULL, 0 };
	struct errbuf err;

	(void)state;
	err_clear(&err);
	assert_int_equal(nix_keys_add(&keys, KEY, &err), 0);
	resolve_err(good, 0, &keys, ROOT, SH_ERR_USAGE, "no substituter");
	resolve_err(good, 1, &none, ROOT, SH_ERR_USAGE, "no trusted key");
	resolve_err(good, 1, NULL, ROOT, SH_ERR_USAGE, "no trusted key");
	resolve_err(good, 1, &keys, "/usr/bin", SH_ERR_USAGE,
	    "closure root: '/usr/bin' is not under /nix/store");
	resolve_err(good, 1, &keys, ROOT "/bin/postgres", SH_ERR_USAGE,
	    "closure root: ");
	resolve_err(
	    file, 1, &keys, ROOT, SH_ERR_USAGE, "only http:// and https://");
	resolve_err(
	    ftp, 1, &keys, ROOT, SH_ERR_USAGE, "only http:// and https://");
	resolve_err(space, 1, &keys, ROOT, SH_ERR_USAGE, "bad URL");
	nix_keys_free(&keys);
}

static void
test_nixcache_names_the_url_nothing_listens_on(void **state)
{
	char *url = xasprintf("http://127.0.0.1:%u/cache/", closed_port());
	char *want = xasprintf("%.*sgx9syv1gsw205k6plx7cfaihgypzvy7x.narinfo",
	    (int)strlen(url), url);
	const char *subs[] = { url };
	struct nix_keys keys = { NULL, 0 };
	struct errbuf err;

	(void)state;
	err_clear(&err);
	assert_int_equal(nix_keys_add(&keys, KEY, &err), 0);
	/* The trailing '/' is dropped: one slash before the narinfo. */
	resolve_err(subs, 1, &keys, ROOT, SH_ERR_UNREACHABLE, want);
	resolve_err(subs, 1, &keys, ROOT, SH_ERR_UNREACHABLE,
	    ROOT ": no substituter could serve it");
	nix_keys_free(&keys);
	free(want);
	free(url);
}

static void
test_nixcache_interrupt_stops_before_fetching(void **state)
{
	char *url = xasprintf("http://127.0.0.1:%u", closed_port());
	const char *subs[] = { url };
	volatile sig_atomic_t stop = 1;
	struct nix_keys keys = { NULL, 0 };
	struct nix_cache_opts o;
	struct closure c;
	struct errbuf err;

	(void)state;
	err_clear(&err);
	assert_int_equal(nix_keys_add(&keys, KEY, &err), 0);
	memset(&o, 0, sizeof(o));
	o.substituters = subs;
	o.nsubstituters = 1;
	o.keys = &keys;
	o.interrupted = &stop;
	assert_int_equal(nix_closure_resolve(&o, ROOT, &c, &err), -1);
	assert_int_equal(err.code, SH_ERR_INTERRUPTED);
	assert_non_null(strstr(err.msg, ROOT));
	assert_null(c.paths);
	nix_keys_free(&keys);
	free(url);
}

static void
test_nixcache_info_names_the_url(void **state)
{
	char *url = xasprintf("http://127.0.0.1:%u/c", closed_port());
	char *want = xasprintf("%s/nix-cache-info: ", url);
	struct nix_cache_opts o;
	struct errbuf err;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.timeout_s = 5;
	err_clear(&err);
	assert_int_equal(nix_cache_info(&o, url, &err), -1);
	assert_int_equal(err.code, SH_ERR_UNREACHABLE);
	assert_non_null(strstr(err.msg, want));
	assert_int_equal(nix_cache_info(&o, "file:///x", &err), -1);
	assert_int_equal(err.code, SH_ERR_USAGE);
	free(want);
	free(url);
}

static void
test_nixcache_free_accepts_empty_and_null(void **state)
{
	struct closure c;

	(void)state;
	memset(&c, 0, sizeof(c));
	nix_closure_free(&c);
	nix_closure_free(NULL);
	assert_null(c.paths);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nixcache_refuses_bad_arguments),
		cmocka_unit_test(
		    test_nixcache_names_the_url_nothing_listens_on),
		cmocka_unit_test(test_nixcache_interrupt_stops_before_fetching),
		cmocka_unit_test(test_nixcache_info_names_the_url),
		cmocka_unit_test(test_nixcache_free_accepts_empty_and_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
