/*
 * tar.c: pax/ustar headers (tar.h).
 *
 * The ustar header is always written with what fits; the pax records
 * (path, linkpath, size) carry what does not, and a reader that knows pax
 * (GNU tar, bsdtar, busybox) takes the records over the truncated fields.
 */
#include <stdio.h>
#include <string.h>

#include "nix/tar.h"

#define TAR_NAME 100
#define TAR_PREFIX 155
#define TAR_SIZE_MAX 077777777777ULL /* 11 octal digits */

struct tar_hdr {
	char b[TAR_BLOCK];
};

/* width-1 octal digits and a NUL, as ustar wants. */
static void
tar_octal(char *field, size_t width, uint64_t v)
{
	field[width - 1] = '\0';
	for (size_t i = width - 1; i > 0; i--) {
		field[i - 1] = (char)('0' + (v & 7));
		v >>= 3;
	}
}

static void
tar_checksum(struct tar_hdr *h)
{
	unsigned sum = 0;

	memset(h->b + 148, ' ', 8);
	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += (unsigned char)h->b[i];
	tar_octal(h->b + 148, 7, sum);
	h->b[155] = ' ';
}

static void
tar_fill(struct tar_hdr *h, const char *name, size_t nlen, const char *prefix,
    size_t plen, char type, unsigned mode, uint64_t size)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->b, name, nlen);
	tar_octal(h->b + 100, 8, mode);
	tar_octal(h->b + 108, 8, 0);
	tar_octal(h->b + 116, 8, 0);
	tar_octal(h->b + 124, 12, size > TAR_SIZE_MAX ? 0 : size);
	tar_octal(h->b + 136, 12, 1);
	h->b[156] = type;
	memcpy(h->b + 257, "ustar", 6);
	memcpy(h->b + 263, "00", 2);
	memcpy(h->b + 265, "root", 4);
	memcpy(h->b + 297, "root", 4);
	memcpy(h->b + 345, prefix, plen);
}

/* "<len> key=value\n", where len counts the whole record. */
static int
tar_pax_record(struct buf *b, const char *key, const char *v, size_t vlen)
{
	size_t body = 1 + strlen(key) + 1 + vlen + 1, len = body + 1, d;

	/* len is digits(len) + body: grow until it is consistent. */
	for (;;) {
		size_t n = len;

		for (d = 1; n >= 10; n /= 10)
			d++;
		if (d + body == len)
			break;
		len = d + body;
	}
	if (buf_addf(b, "%zu %s=", len, key) < 0 || buf_add(b, v, vlen) < 0)
		return -1;
	return buf_addc(b, '\n');
}

/* Splits name at a '/' so that it fits prefix/name; false if it cannot. */
static bool
tar_split(const char *name, size_t len, size_t *cut)
{
	if (len <= TAR_NAME) {
		*cut = 0;
		return true;
	}
	/* From the last '/' before a directory's trailing one. */
	for (size_t i = len - 1; i-- > 0;) {
		if (name[i] != '/')
			continue;
		if (i > TAR_PREFIX)
			continue;
		if (i == 0 || len - i - 1 > TAR_NAME)
			return false;
		*cut = i;
		return true;
	}
	return false;
}

int
tar_header(const struct tar_entry *e, struct buf *out, struct errbuf *err)
{
	static const char types[] = { '0', '5', '2' };
	static const char zeros[TAR_BLOCK];
	struct tar_hdr h;
	struct buf pax, name;
	size_t cut = 0, nlen;
	bool long_name, long_link;
	int rc = -1;

	if (e->name_len == 0 || memchr(e->name, '\0', e->name_len) != NULL ||
	    (e->type == TAR_SYMLINK &&
	        memchr(e->link, '\0', e->link_len) != NULL) ||
	    e->mode > 07777)
		return err_set(err, SH_ERR_INTERNAL,
		    "tar: an entry with an empty name, a NUL byte or mode %o",
		    e->mode);
	buf_init(&name, e->name_len + 2);
	buf_init(&pax, 3 * (e->name_len + e->link_len) + 256);
	if (buf_add(&name, e->name, e->name_len) < 0 ||
	    (e->type == TAR_DIR && buf_addc(&name, '/') < 0))
		goto out;
	nlen = name.len;
	long_name = !tar_split(name.data, nlen, &cut);
	long_link = e->type == TAR_SYMLINK && e->link_len > TAR_NAME;
	if (long_name && tar_pax_record(&pax, "path", name.data, nlen) < 0)
		goto out;
	if (long_link &&
	    tar_pax_record(&pax, "linkpath", e->link, e->link_len) < 0)
		goto out;
	if (e->type == TAR_FILE && e->size > TAR_SIZE_MAX) {
		char v[32];
		int n =
		    snprintf(v, sizeof(v), "%llu", (unsigned long long)e->size);

		if (tar_pax_record(&pax, "size", v, (size_t)n) < 0)
			goto out;
	}
	if (buf_failed(&pax))
		goto out;
	if (pax.len > 0) {
		tar_fill(&h, "PaxHeader", 9, "", 0, 'x', 0644, pax.len);
		tar_checksum(&h);
		if (buf_add(out, h.b, sizeof(h.b)) < 0 ||
		    buf_add(out, pax.data, pax.len) < 0 ||
		    buf_add(out, zeros, tar_pad(pax.len)) < 0)
			goto out;
	}
	if (long_name)
		tar_fill(&h, name.data, nlen < TAR_NAME ? nlen : TAR_NAME, "",
		    0, types[e->type], e->mode,
		    e->type == TAR_FILE ? e->size : 0);
	else if (cut > 0)
		tar_fill(&h, name.data + cut + 1, nlen - cut - 1, name.data,
		    cut, types[e->type], e->mode,
		    e->type == TAR_FILE ? e->size : 0);
	else
		tar_fill(&h, name.data, nlen, "", 0, types[e->type], e->mode,
		    e->type == TAR_FILE ? e->size : 0);
	if (e->type == TAR_SYMLINK)
		memcpy(h.b + 157, e->link,
		    e->link_len < TAR_NAME ? e->link_len : TAR_NAME);
	tar_checksum(&h);
	rc = buf_add(out, h.b, sizeof(h.b));
out:
	if (rc < 0 && !buf_failed(out))
		rc = err_set(err, SH_ERR_INTERNAL, "tar: header too long");
	else if (rc < 0)
		rc = err_set(err, SH_ERR_INTERNAL, "tar: output buffer full");
	buf_release(&name);
	buf_release(&pax);
	return rc;
}

size_t
tar_pad(uint64_t size)
{
	return (size_t)((TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK);
}

int
tar_end(struct buf *out)
{
	static const char zeros[2 * TAR_BLOCK];

	return buf_add(out, zeros, sizeof(zeros));
}
