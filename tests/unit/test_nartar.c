/*
 * test_nartar.c: tar headers (nix/tar.h) and the streaming NAR to tar
 * conversion (nix/nartar.h): header fields and checksums, pax records for
 * long names and targets; a NAR of every node kind converted whole and a
 * byte at a time to the same tar, which the system tar unpacks with the
 * store's modes; malformed NARs (bad magic, names with '/', "..", out of
 * order, non-zero padding, too deep, truncated, trailing bytes) refused.
 */
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

#include "nix/nartar.h"
#include "nix/tar.h"

static void
nstr(struct buf *b, const char *s, size_t n)
{
	unsigned char l[8];
	static const char zeros[8];

	for (size_t i = 0; i < 8; i++)
		l[i] = (unsigned char)((uint64_t)n >> (8 * i));
	assert_int_equal(buf_add(b, l, 8), 0);
	assert_int_equal(buf_add(b, s, n), 0);
	assert_int_equal(buf_add(b, zeros, (8 - n % 8) % 8), 0);
}

static void
nstrs(struct buf *b, const char *const *v)
{
	for (; *v != NULL; v++)
		nstr(b, *v, strlen(*v));
}

static int
collect(void *arg, const void *p, size_t len, struct errbuf *err)
{
	(void)err;
	return buf_add(arg, p, len);
}

static unsigned
octal(const char *f, size_t w)
{
	unsigned v = 0;

	for (size_t i = 0; i < w && f[i] >= '0' && f[i] <= '7'; i++)
		v = v * 8 + (unsigned)(f[i] - '0');
	return v;
}

static void
check_sum(const char *h)
{
	unsigned sum = 0;

	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : (unsigned char)h[i];
	assert_int_equal(octal(h + 148, 7), sum);
}

static void
test_header_short(void **state)
{
	struct tar_entry e = { .name = "p/bin/x",
		.name_len = 7,
		.type = TAR_FILE,
		.mode = 0555,
		.size = 1234 };
	struct errbuf err;
	struct buf b;

	(void)state;
	buf_init(&b, 1 << 20);
	assert_int_equal(tar_header(&e, &b, &err), 0);
	assert_int_equal(b.len, TAR_BLOCK);
	assert_string_equal(b.data, "p/bin/x");
	assert_int_equal(octal(b.data + 100, 8), 0555);
	assert_int_equal(octal(b.data + 124, 12), 1234);
	assert_int_equal(octal(b.data + 136, 12), 1);
	assert_int_equal(b.data[156], '0');
	assert_memory_equal(b.data + 257,
	    "ustar\0"
	    "00",
	    8);
	check_sum(b.data);
	assert_int_equal(tar_pad(1234), 512 - 1234 % 512);
	assert_int_equal(tar_pad(1024), 0);
	buf_release(&b);
}

static void
test_header_long(void **state)
{
	char name[400], link[300];
	struct tar_entry e = {
		.name = name, .type = TAR_SYMLINK, .mode = 0777, .link = link
	};
	struct errbuf err;
	struct buf b;
	const char *rec;

	(void)state;
	memset(name, 'a', sizeof(name));
	memset(link, 'b', sizeof(link));
	e.name_len = sizeof(name);
	e.link_len = sizeof(link);
	buf_init(&b, 1 << 20);
	assert_int_equal(tar_header(&e, &b, &err), 0);
	assert_int_equal(b.data[156], 'x');
	check_sum(b.data);
	rec = b.data + TAR_BLOCK;
	/* "410 path=<400 a>\n": the length counts itself */
	assert_memory_equal(rec, "410 path=", 9);
	assert_int_equal(rec[409], '\n');
	assert_memory_equal(rec + 410, "314 linkpath=", 13);
	assert_int_equal(octal(b.data + 124, 12), 410 + 314);
	assert_int_equal(b.len, 4 * TAR_BLOCK);
	assert_int_equal(b.data[3 * TAR_BLOCK + 156], '2');
	check_sum(b.data + 3 * TAR_BLOCK);
	/* a name that fits prefix/name uses no pax */
	buf_reset(&b);
	memset(name, 'c', 150);
	name[120] = '/';
	e.name_len = 150;
	e.type = TAR_DIR;
	e.mode = 0555;
	assert_int_equal(tar_header(&e, &b, &err), 0);
	assert_int_equal(b.len, TAR_BLOCK);
	assert_int_equal(b.data[156], '5');
	assert_int_equal(strnlen(b.data + 345, 155), 120);
	assert_int_equal(strnlen(b.data, 100), 30); /* 29 c and '/' */
	/* NUL in a name */
	name[3] = '\0';
	assert_int_equal(tar_header(&e, &b, &err), -1);
	buf_release(&b);
}

/* A NAR with every node kind. */
static void
sample(struct buf *n)
{
	static const char *const v[] = { "nix-archive-1", "(", "type",
		"directory", "entry", "(", "name", "bin", "node", "(", "type",
		"directory", "entry", "(", "name", "run", "node", "(", "type",
		"regular", "executable", "", "contents", "#!/bin/sh\n", ")",
		")", ")", ")", "entry", "(", "name", "empty", "node", "(",
		"type", "regular", "contents", "", ")", ")", "entry", "(",
		"name", "lib", "node", "(", "type", "symlink", "target",
		"/nix/store/x-y/lib", ")", ")", "entry", "(", "name", "readme",
		"node", "(", "type", "regular", "contents", "hello world\n",
		")", ")", ")", NULL };

	nstrs(n, v);
}

static int
convert(
    const struct buf *nar, size_t piece, struct buf *out, struct errbuf *err)
{
	struct nar_tar *t = nar_tar_new("p", collect, out);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < nar->len; i += piece)
		rc = nar_tar_feed(t, nar->data + i,
		    nar->len - i < piece ? nar->len - i : piece, err);
	if (rc == 0)
		rc = nar_tar_end(t, err);
	nar_tar_free(t);
	return rc;
}

static void
test_convert(void **state)
{
	struct buf nar, a, b;
	struct errbuf err;
	char dir[] = "/tmp/test_nartar.XXXXXX", cmd[512], f[256];
	struct stat s;
	FILE *fp;

	(void)state;
	buf_init(&nar, 1 << 20);
	buf_init(&a, 1 << 20);
	buf_init(&b, 1 << 20);
	sample(&nar);
	assert_int_equal(convert(&nar, nar.len, &a, &err), 0);
	assert_int_equal(convert(&nar, 1, &b, &err), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	assert_int_equal(a.len % TAR_BLOCK, 0);
	assert_non_null(mkdtemp(dir));
	snprintf(f, sizeof(f), "%s.tar", dir);
	fp = fopen(f, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(a.data, 1, a.len, fp), a.len);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "tar -x -C %s -f %s", dir, f);
	assert_int_equal(system(cmd), 0);
	snprintf(f, sizeof(f), "%s/p/bin/run", dir);
	assert_int_equal(stat(f, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0555);
	assert_int_equal(s.st_size, 10);
	assert_int_equal(s.st_mtime, 1);
	snprintf(f, sizeof(f), "%s/p/readme", dir);
	assert_int_equal(stat(f, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0444);
	assert_int_equal(s.st_size, 12);
	snprintf(f, sizeof(f), "%s/p/empty", dir);
	assert_int_equal(stat(f, &s), 0);
	assert_int_equal(s.st_size, 0);
	snprintf(f, sizeof(f), "%s/p/lib", dir);
	assert_int_equal(lstat(f, &s), 0);
	assert_true(S_ISLNK(s.st_mode));
	snprintf(f, sizeof(f), "%s/p", dir);
	assert_int_equal(stat(f, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0555);
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s %s.tar", dir,
	    dir, dir);
	assert_int_equal(system(cmd), 0);
	buf_release(&nar);
	buf_release(&a);
	buf_release(&b);
}

static void
refused(const char *const *v, const char *what)
{
	struct buf nar, out;
	struct errbuf err;

	buf_init(&nar, 1 << 20);
	buf_init(&out, 1 << 20);
	nstrs(&nar, v);
	err_clear(&err);
	assert_int_equal(convert(&nar, 3, &out, &err), -1);
	assert_int_equal(err.code, SH_ERR_TRUST);
	if (strstr(err.msg, what) == NULL)
		fail_msg("'%s' does not say '%s'", err.msg, what);
	buf_release(&nar);
	buf_release(&out);
}

static void
test_malformed(void **state)
{
	static const char *const magic[] = { "nix-archive-2", NULL };
	static const char *const slash[] = { "nix-archive-1", "(", "type",
		"directory", "entry", "(", "name", "a/b", NULL };
	static const char *const dots[] = { "nix-archive-1", "(", "type",
		"directory", "entry", "(", "name", "..", NULL };
	static const char *const order[] = { "nix-archive-1", "(", "type",
		"directory", "entry", "(", "name", "b", "node", "(", "type",
		"symlink", "target", "x", ")", ")", "entry", "(", "name", "a",
		NULL };
	static const char *const dup[] = { "nix-archive-1", "(", "type",
		"directory", "entry", "(", "name", "a", "node", "(", "type",
		"symlink", "target", "x", ")", ")", "entry", "(", "name", "a",
		NULL };
	static const char *const cut[] = { "nix-archive-1", "(", "type",
		"regular", "contents", "abc", NULL };
	static const char *const trail[] = { "nix-archive-1", "(", "type",
		"regular", "contents", "abc", ")", "(", NULL };
	static const char *const type[] = { "nix-archive-1", "(", "type",
		"fifo", NULL };
	struct buf nar, out;
	struct errbuf err;

	(void)state;
	refused(magic, "not a NAR");
	refused(slash, "invalid entry name");
	refused(dots, "invalid entry name");
	refused(order, "ascending order");
	refused(dup, "ascending order");
	refused(cut, "ends early");
	refused(trail, "after the end");
	refused(type, "unknown node type");
	/* non-zero padding */
	buf_init(&nar, 1 << 20);
	buf_init(&out, 1 << 20);
	nstr(&nar, "nix-archive-1", 13);
	nar.data[8 + 13] = 1; /* the padding of "nix-archive-1" */
	err_clear(&err);
	assert_int_equal(convert(&nar, 5, &out, &err), -1);
	if (strstr(err.msg, "non-zero padding") == NULL)
		fail_msg("%s", err.msg);
	/* too deep */
	buf_reset(&nar);
	nstr(&nar, "nix-archive-1", 13);
	for (int i = 0; i <= NAR_TAR_DEPTH_MAX; i++) {
		static const char *const d[] = { "(", "type", "directory",
			"entry", "(", "name", "d", "node", NULL };

		nstrs(&nar, d);
	}
	err_clear(&err);
	assert_int_equal(convert(&nar, 4096, &out, &err), -1);
	assert_non_null(strstr(err.msg, "too deep"));
	/* a huge string length */
	buf_reset(&nar);
	nstr(&nar, "nix-archive-1", 13);
	assert_int_equal(
	    buf_add(&nar, "\xff\xff\xff\xff\xff\xff\xff\x7f", 8), 0);
	err_clear(&err);
	assert_int_equal(convert(&nar, 4096, &out, &err), -1);
	assert_non_null(strstr(err.msg, "longer than PATH_MAX"));
	buf_release(&nar);
	buf_release(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_short),
		cmocka_unit_test(test_header_long),
		cmocka_unit_test(test_convert),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
