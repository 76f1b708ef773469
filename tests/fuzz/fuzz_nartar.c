/*
 * fuzz_nartar.c: libFuzzer harness for the NAR to tar conversion
 * (nix/nartar.c, nix/tar.c), which sees NAR bytes before their hash is
 * checked.
 *
 * The first input byte picks a piece size (1-256), the rest is the NAR.
 * It is converted whole and in pieces: both must give the same verdict
 * and the same tar. An accepted NAR's tar is walked header by header:
 * every checksum is right, every type is a file, directory, symlink or
 * pax header, and every name (the ustar fields or the pax path record)
 * is "p" or starts with "p/" and has no empty, "." or ".." component.
 *
 * Build: tests/fuzz/build.sh; run: tests/fuzz/build.sh run 60 nartar
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nix/nartar.h"
#include "nix/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
collect(void *arg, const void *p, size_t len, struct errbuf *err)
{
	(void)err;
	return buf_add(arg, p, len);
}

static int
convert(const uint8_t *p, size_t n, size_t piece, struct buf *out)
{
	struct nar_tar *t = nar_tar_new("p", collect, out);
	struct errbuf err;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i += piece)
		rc =
		    nar_tar_feed(t, p + i, n - i < piece ? n - i : piece, &err);
	if (rc == 0)
		rc = nar_tar_end(t, &err);
	nar_tar_free(t);
	return rc;
}

static uint64_t
octal(const char *f, size_t w)
{
	uint64_t v = 0;

	for (size_t i = 0; i < w && f[i] >= '0' && f[i] <= '7'; i++)
		v = v * 8 + (uint64_t)(f[i] - '0');
	return v;
}

static void
check_name(const char *s, size_t len)
{
	size_t i = 0;

	if (len > 0 && s[len - 1] == '/')
		len--; /* a directory */
	if (len == 0 || s[0] != 'p' || (len > 1 && s[1] != '/'))
		abort();
	while (i < len) {
		size_t j = i;

		while (j < len && s[j] != '/')
			j++;
		if (j == i || (j - i == 1 && s[i] == '.') ||
		    (j - i == 2 && s[i] == '.' && s[i + 1] == '.'))
			abort();
		i = j + 1;
	}
}

static void
walk(const struct buf *b)
{
	size_t off = 0;

	if (b->len % TAR_BLOCK != 0 || b->len < 2 * TAR_BLOCK)
		abort();
	while (off + TAR_BLOCK <= b->len - 2 * TAR_BLOCK) {
		const char *h = b->data + off;
		unsigned sum = 0;
		uint64_t size = octal(h + 124, 12);
		char name[512];
		size_t nl = 0, pl = strnlen(h + 345, 155);

		for (size_t i = 0; i < TAR_BLOCK; i++)
			sum +=
			    (i >= 148 && i < 156) ? ' ' : (unsigned char)h[i];
		if (octal(h + 148, 7) != sum)
			abort();
		if (h[156] == 'x') {
			const char *r = h + TAR_BLOCK;

			const char *sp, *e;
			size_t rest;

			if (size < 7 || off + TAR_BLOCK + size > b->len)
				abort();
			sp = memchr(r, ' ', size);
			if (sp == NULL)
				abort();
			rest = size - (size_t)(sp + 1 - r);
			if (rest > 5 && memcmp(sp + 1, "path=", 5) == 0) {
				e = memchr(sp + 6, '\n', rest - 5);
				if (e == NULL)
					abort();
				check_name(sp + 6, (size_t)(e - sp - 6));
			}
			off += TAR_BLOCK + size + tar_pad(size);
			continue;
		}
		if (h[156] != '0' && h[156] != '2' && h[156] != '5')
			abort();
		if (pl > 0) {
			memcpy(name, h + 345, pl);
			name[pl] = '/';
			nl = pl + 1;
		}
		memcpy(name + nl, h, strnlen(h, 100));
		nl += strnlen(h, 100);
		if (nl < 100 || pl > 0)
			check_name(name, nl);
		off += TAR_BLOCK + (h[156] == '0' ? size + tar_pad(size) : 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b;
	int ra, rb;

	if (size < 1)
		return 0;
	buf_init(&a, 64u << 20);
	buf_init(&b, 64u << 20);
	ra = convert(data + 1, size - 1, size - 1 ? size - 1 : 1, &a);
	rb = convert(data + 1, size - 1, (size_t)data[0] + 1, &b);
	if (ra != rb || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		abort();
	if (ra == 0)
		walk(&a);
	buf_release(&a);
	buf_release(&b);
	return 0;
}
