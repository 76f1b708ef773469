/*
 * test_narstream.c: the streaming NAR check (nix/narstream.h): decoder
 * choice, NarHash and NarSize checked over small in-memory streams made
 * here with the same libraries (xz, zstd, bzip2, none), fed whole and in
 * pieces; truncated, corrupt, oversized and tampered input refused with
 * the path, the cache and both hashes named; the bounds of the ordered
 * parallel fetch's scheduler (nar_order_may_start).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bzlib.h>
#include <cmocka.h>
#include <lzma.h>
#include <sodium.h>
#include <zstd.h>

#include "nix/narstream.h"

#define PATH "/nix/store/0123456789abcdfghijklmnpqrsvwxy-test"
#define CACHE "http://cache.test"
#define DATA_LEN 200000 /* over three of the 64 KiB output buffers */

struct fix {
	unsigned char *data; /* the "NAR" */
	size_t len;
	unsigned char *z; /* compressed */
	size_t zlen;
	struct narinfo ni;
	struct buf got; /* what the sink saw */
};

static int
sink(void *arg, const void *p, size_t len, struct errbuf *err)
{
	struct fix *f = arg;

	(void)err;
	return buf_add(&f->got, p, len);
}

static int
sink_fail(void *arg, const void *p, size_t len, struct errbuf *err)
{
	(void)arg;
	(void)p;
	(void)len;
	return err_set(err, SH_ERR_SSH, "sink says no");
}

static void
compress(struct fix *f, enum nar_comp comp)
{
	size_t cap = f->len + f->len / 2 + 1024, pos = 0;
	unsigned bl;

	f->z = xcalloc(1, cap);
	switch (comp) {
	case NAR_COMP_XZ:
		assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64,
		                     NULL, f->data, f->len, f->z, &pos, cap),
		    LZMA_OK);
		f->zlen = pos;
		break;
	case NAR_COMP_ZSTD:
		f->zlen = ZSTD_compress(f->z, cap, f->data, f->len, 3);
		assert_false(ZSTD_isError(f->zlen));
		break;
	case NAR_COMP_BZIP2:
		bl = (unsigned)cap;
		assert_int_equal(
		    BZ2_bzBuffToBuffCompress((char *)f->z, &bl, (char *)f->data,
		        (unsigned)f->len, 9, 0, 0),
		    BZ_OK);
		f->zlen = bl;
		break;
	case NAR_COMP_NONE:
		memcpy(f->z, f->data, f->len);
		f->zlen = f->len;
		break;
	}
}

static const char *const comp_names[] = { "none", "xz", "zstd", "bzip2" };

static void
fix_init(struct fix *f, enum nar_comp comp)
{
	unsigned char d[32];
	struct buf h;
	uint32_t x = 12345;

	memset(f, 0, sizeof(*f));
	f->len = DATA_LEN;
	f->data = xcalloc(1, f->len);
	for (size_t i = 0; i < f->len; i++) { /* compressible, not trivial */
		x = x * 1103515245u + 12345u;
		f->data[i] = (unsigned char)("nix store "[(x >> 16) % 10]);
	}
	compress(f, comp);
	crypto_hash_sha256(d, f->data, f->len);
	buf_init(&h, 128);
	assert_int_equal(nix_hash_sha256_string(d, &h), 0);
	f->ni.store_path = xstrdup(PATH);
	f->ni.url = xstrdup("nar/test.nar");
	f->ni.compression = xstrdup(comp_names[comp]);
	f->ni.nar_hash = buf_detach(&h, NULL);
	buf_release(&h);
	f->ni.nar_size = f->len;
	buf_init(&f->got, 1u << 20);
}

static void
fix_free(struct fix *f)
{
	free(f->data);
	free(f->z);
	nix_narinfo_free(&f->ni);
	buf_release(&f->got);
}

/* Feeds f->z in pieces of step bytes (0: whole); returns the result. */
static int
run(struct fix *f, size_t step, nar_sink_fn fn, struct errbuf *err)
{
	struct nar_check *c;
	size_t off = 0;
	int rc = 0;

	err_clear(err);
	c = nar_check_new(&f->ni, CACHE, fn, f, err);
	assert_non_null(c);
	while (rc == 0 && off < f->zlen) {
		size_t n = step && step < f->zlen - off ? step : f->zlen - off;

		rc = nar_check_feed(c, f->z + off, n, err);
		off += n;
	}
	if (rc == 0)
		rc = nar_check_end(c, err);
	nar_check_free(c);
	return rc;
}

/* ------------------------------------------------------------ tests */

static void
test_comp_parse(void **state)
{
	enum nar_comp c;
	struct errbuf err;

	(void)state;
	err_clear(&err);
	assert_int_equal(nar_comp_parse("xz", &c, &err), 0);
	assert_int_equal(c, NAR_COMP_XZ);
	assert_int_equal(nar_comp_parse("zstd", &c, &err), 0);
	assert_int_equal(c, NAR_COMP_ZSTD);
	assert_int_equal(nar_comp_parse("bzip2", &c, &err), 0);
	assert_int_equal(c, NAR_COMP_BZIP2);
	assert_int_equal(nar_comp_parse("none", &c, &err), 0);
	assert_int_equal(c, NAR_COMP_NONE);
	assert_int_equal(nar_comp_parse(NULL, &c, &err), 0);
	assert_int_equal(c, NAR_COMP_BZIP2);
	assert_int_equal(nar_comp_parse("", &c, &err), 0);
	assert_int_equal(c, NAR_COMP_BZIP2);
	assert_int_equal(nar_comp_parse("gzip", &c, &err), -1);
	assert_int_equal(err.code, SH_ERR_TRUST);
	assert_non_null(strstr(err.msg, "'gzip'"));
	assert_int_equal(nar_comp_parse("XZ", &c, &err), -1);
}

static void
good(enum nar_comp comp)
{
	static const size_t steps[] = { 0, 1, 7, 4096, 70000 };
	struct errbuf err;
	struct fix f;

	fix_init(&f, comp);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		/* One byte at a time is slow for the big buffers: once. */
		if (steps[i] == 1 && comp == NAR_COMP_NONE)
			continue;
		buf_reset(&f.got);
		if (run(&f, steps[i], sink, &err) != 0)
			fail_msg("%s step %zu: %s", comp_names[comp], steps[i],
			    err.msg);
		assert_int_equal(f.got.len, f.len);
		assert_memory_equal(f.got.data, f.data, f.len);
	}
	fix_free(&f);
}

static void
test_good_xz(void **state)
{
	(void)state;
	good(NAR_COMP_XZ);
}

static void
test_good_zstd(void **state)
{
	(void)state;
	good(NAR_COMP_ZSTD);
}

static void
test_good_bzip2(void **state)
{
	(void)state;
	good(NAR_COMP_BZIP2);
}

static void
test_good_none(void **state)
{
	(void)state;
	good(NAR_COMP_NONE);
}

/* One byte of the NAR changed before compression: same size. */
static void
tampered(enum nar_comp comp)
{
	struct errbuf err;
	struct fix f;
	char *want = NULL;

	fix_init(&f, comp);
	want = xstrdup(f.ni.nar_hash);
	f.data[f.len / 2] ^= 1;
	free(f.z);
	compress(&f, comp);
	assert_int_equal(run(&f, 4096, sink, &err), -1);
	assert_int_equal(err.code, SH_ERR_TRUST);
	assert_non_null(strstr(err.msg, PATH));
	assert_non_null(strstr(err.msg, CACHE));
	assert_non_null(strstr(err.msg, "NarHash mismatch"));
	assert_non_null(strstr(err.msg, want));
	/* The other hash, as the NAR really hashes. */
	assert_non_null(strstr(err.msg, "the NAR hashes to sha256:"));
	free(want);
	fix_free(&f);
}

static void
test_tampered(void **state)
{
	(void)state;
	for (int c = NAR_COMP_NONE; c <= NAR_COMP_BZIP2; c++)
		tampered((enum nar_comp)c);
}

static void
test_size(void **state)
{
	struct errbuf err;
	struct fix f;

	(void)state;
	fix_init(&f, NAR_COMP_XZ);
	f.ni.nar_size = f.len - 1;
	assert_int_equal(run(&f, 0, sink, &err), -1);
	assert_non_null(strstr(err.msg, "longer than its NarSize"));
	assert_non_null(strstr(err.msg, PATH));
	/* Stopped before the sink saw the extra byte. */
	assert_true(f.got.len <= f.len - 1);
	buf_reset(&f.got);
	f.ni.nar_size = f.len + 1;
	assert_int_equal(run(&f, 0, sink, &err), -1);
	assert_int_equal(err.code, SH_ERR_TRUST);
	assert_non_null(strstr(err.msg, "bytes, its NarSize says"));
	fix_free(&f);
}

static void
test_truncated(void **state)
{
	struct errbuf err;
	struct fix f;

	(void)state;
	for (int c = NAR_COMP_XZ; c <= NAR_COMP_BZIP2; c++) {
		fix_init(&f, (enum nar_comp)c);
		f.zlen /= 2;
		assert_int_equal(run(&f, 1000, sink, &err), -1);
		assert_int_equal(err.code, SH_ERR_TRUST);
		assert_non_null(strstr(err.msg, PATH));
		if (strstr(err.msg, "truncated") == NULL)
			fail_msg("%s: %s", comp_names[c], err.msg);
		fix_free(&f);
	}
	/* Uncompressed: the size check catches it. */
	fix_init(&f, NAR_COMP_NONE);
	f.zlen -= 10;
	assert_int_equal(run(&f, 0, sink, &err), -1);
	assert_non_null(strstr(err.msg, "bytes, its NarSize says"));
	fix_free(&f);
}

static void
test_corrupt(void **state)
{
	struct errbuf err;
	struct fix f;

	(void)state;
	for (int c = NAR_COMP_XZ; c <= NAR_COMP_BZIP2; c++) {
		fix_init(&f, (enum nar_comp)c);
		f.z[0] ^= 0xff; /* the header's magic */
		assert_int_equal(run(&f, 0, sink, &err), -1);
		assert_int_equal(err.code, SH_ERR_TRUST);
		if (strstr(err.msg, "corrupt") == NULL)
			fail_msg("%s: %s", comp_names[c], err.msg);
		assert_int_equal(f.got.len, 0);
		fix_free(&f);
	}
	/* xz data labelled zstd: a wrong compression header. */
	fix_init(&f, NAR_COMP_XZ);
	free(f.ni.compression);
	f.ni.compression = xstrdup("zstd");
	assert_int_equal(run(&f, 0, sink, &err), -1);
	assert_non_null(strstr(err.msg, "zstd stream is corrupt"));
	fix_free(&f);
}

static void
test_trailing(void **state)
{
	struct errbuf err;
	struct fix f;

	(void)state;
	for (int c = NAR_COMP_XZ; c <= NAR_COMP_BZIP2; c++) {
		fix_init(&f, (enum nar_comp)c);
		f.z = realloc(f.z, f.zlen + 16);
		assert_non_null(f.z);
		memset(f.z + f.zlen, 'J', 16);
		f.zlen += 16;
		assert_int_equal(run(&f, 0, sink, &err), -1);
		assert_int_equal(err.code, SH_ERR_TRUST);
		fix_free(&f);
	}
}

static void
test_sink_error(void **state)
{
	struct errbuf err;
	struct fix f;

	(void)state;
	fix_init(&f, NAR_COMP_ZSTD);
	assert_int_equal(run(&f, 0, sink_fail, &err), -1);
	assert_int_equal(err.code, SH_ERR_SSH);
	assert_string_equal(err.msg, "sink says no");
	fix_free(&f);
}

static void
test_bad_narinfo(void **state)
{
	struct errbuf err;
	struct fix f;

	(void)state;
	fix_init(&f, NAR_COMP_XZ);
	free(f.ni.compression);
	f.ni.compression = xstrdup("lz4");
	err_clear(&err);
	assert_null(nar_check_new(&f.ni, CACHE, sink, &f, &err));
	assert_int_equal(err.code, SH_ERR_TRUST);
	assert_non_null(strstr(err.msg, PATH));
	assert_non_null(strstr(err.msg, "'lz4'"));
	fix_free(&f);
}

/* nar_order_may_start(): the head job always, otherwise bounded. */
static void
test_order_bounds(void **state)
{
	struct narinfo ni[NAR_AHEAD_JOBS + 2];
	struct nar_job jobs[NAR_AHEAD_JOBS + 2];

	(void)state;
	memset(ni, 0, sizeof(ni));
	for (size_t i = 0; i < NAR_AHEAD_JOBS + 2; i++) {
		ni[i].nar_size = 1024;
		jobs[i].ni = &ni[i];
		jobs[i].cache = CACHE;
	}
	ni[0].nar_size = 4ull << 30; /* a head job over the byte bound */
	assert_true(nar_order_may_start(jobs, 0, 0, 0, 4));
	/* the head job streams: it holds nothing back */
	assert_true(nar_order_may_start(jobs, 1, 0, 1, 4));
	ni[1].nar_size = NAR_AHEAD_BYTES + 1; /* ahead, over the bound */
	assert_false(nar_order_may_start(jobs, 1, 0, 1, 4)); /* bytes */
	assert_true(nar_order_may_start(jobs, 1, 1, 1, 4));  /* now the head */
	ni[0].nar_size = 1024;
	ni[1].nar_size = 1024;
	assert_true(nar_order_may_start(jobs, 1, 0, 1, 4));
	assert_false(nar_order_may_start(jobs, 4, 0, 4, 4)); /* parallel */
	assert_true(nar_order_may_start(jobs, NAR_AHEAD_JOBS - 1, 0, 0, 4));
	assert_false(nar_order_may_start(jobs, NAR_AHEAD_JOBS, 0, 0, 4));
	assert_true(nar_order_may_start(jobs, NAR_AHEAD_JOBS, 1, 0, 4));
}

/*
 * The scheduler as nar_fetch_ordered() runs it, with transfers finishing
 * in a shuffled order: every job is handed on, in order, and the bytes
 * waiting on disk (finished or running jobs not handed on yet, the head
 * one aside) never exceed NAR_AHEAD_BYTES.
 */
static void
test_order_simulated(void **state)
{
	enum {
		N = 300
	};
	static struct narinfo ni[N];
	static struct nar_job jobs[N];
	bool running[N] = { false }, done[N] = { false };
	size_t next = 0, emitted = 0, inflight = 0, order[N], no = 0;
	unsigned seed = 7;

	(void)state;
	for (size_t i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		ni[i].nar_size =
		    (seed >> 8) % 5 == 0 ? (200ull << 20) : (seed >> 4) % 70000;
		jobs[i].ni = &ni[i];
	}
	while (emitted < N) {
		uint64_t held = 0;

		while (next < N &&
		       nar_order_may_start(jobs, next, emitted, inflight, 4)) {
			running[next++] = true;
			inflight++;
		}
		assert_true(inflight <= 4);
		assert_true(inflight > 0 || done[emitted]);
		for (size_t i = emitted + 1; i < next; i++)
			held += ni[i].nar_size;
		assert_true(held <= NAR_AHEAD_BYTES);
		assert_true(next - emitted <= NAR_AHEAD_JOBS);
		/* finish a pseudo-random running job */
		if (inflight > 0) {
			size_t k, pick;

			seed = seed * 1103515245u + 12345u;
			pick = (seed >> 8) % inflight;
			for (k = emitted; k < next; k++)
				if (running[k] && pick-- == 0)
					break;
			running[k] = false;
			done[k] = true;
			inflight--;
		}
		while (emitted < N && done[emitted])
			order[no++] = emitted++;
	}
	for (size_t i = 0; i < N; i++)
		assert_int_equal(order[i], i);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_comp_parse),
		cmocka_unit_test(test_good_xz),
		cmocka_unit_test(test_good_zstd),
		cmocka_unit_test(test_good_bzip2),
		cmocka_unit_test(test_good_none),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_sink_error),
		cmocka_unit_test(test_bad_narinfo),
		cmocka_unit_test(test_order_bounds),
		cmocka_unit_test(test_order_simulated),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
