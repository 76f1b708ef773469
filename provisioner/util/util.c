/*
 * util.c: errors, allocation, struct buf, bounded parsers and small file
 * helpers. See util.h for the contracts.
 */
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ======================================================== errors */

const char *
sh_strerror(enum sh_err code)
{
	/* No default: -Wswitch flags a code without a message. */
	switch (code) {
	case SH_OK:
		return "ok";
	case SH_ERR_USAGE:
		return "usage error";
	case SH_ERR_MANIFEST:
		return "invalid manifest";
	case SH_ERR_UNREACHABLE:
		return "target unreachable";
	case SH_ERR_TRUST:
		return "trust failure";
	case SH_ERR_SSH:
		return "ssh transport error";
	case SH_ERR_REMOTE:
		return "remote command failed";
	case SH_ERR_TIMEOUT:
		return "timed out";
	case SH_ERR_INTERRUPTED:
		return "interrupted";
	case SH_ERR_IO:
		return "i/o error";
	case SH_ERR_STEP:
		return "step failed";
	case SH_ERR_LOCKED:
		return "target locked by another run";
	case SH_ERR_INTERNAL:
		return "internal error";
	}
	return "unknown error";
}

int
sh_exit_code(enum sh_err code)
{
	switch (code) {
	case SH_OK:
		return EXIT_OK;
	case SH_ERR_USAGE:
		return EXIT_USAGE;
	case SH_ERR_MANIFEST:
		return EXIT_INVALID_MANIFEST;
	case SH_ERR_UNREACHABLE:
		return EXIT_UNREACHABLE;
	case SH_ERR_TRUST:
		return EXIT_TRUST;
	case SH_ERR_SSH:
	case SH_ERR_REMOTE:
	case SH_ERR_TIMEOUT:
	case SH_ERR_INTERRUPTED:
	case SH_ERR_IO:
	case SH_ERR_STEP:
		return EXIT_STEP_FAILED;
	case SH_ERR_LOCKED:
		return EXIT_LOCKED;
	case SH_ERR_INTERNAL:
		return EXIT_SOFTWARE;
	}
	return EXIT_SOFTWARE;
}

int
err_set(struct errbuf *err, enum sh_err code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int
err_prefix(struct errbuf *err, const char *fmt, ...)
{
	char prefix[sizeof(err->msg)];
	char old[sizeof(err->msg)];
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Truncation keeps the outer context, which is the part to read. */
	size_t plen = strlen(prefix);
	memcpy(err->msg, prefix, plen + 1);
	if (plen < sizeof(err->msg) - 1)
		memcpy(err->msg + plen, old,
		    strnlen(old, sizeof(err->msg) - 1 - plen));
	err->msg[plen + strnlen(old, sizeof(err->msg) - 1 - plen)] = '\0';
	return -1;
}

void
err_clear(struct errbuf *err)
{
	err->code = SH_OK;
	err->msg[0] = '\0';
}

/* ======================================================== allocation */

static void
die_oom(void)
{
	static const char msg[] = "stagehand: out of memory\n";

	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(EXIT_SOFTWARE);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die_oom();
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		die_oom();
	return p;
}

void *
xreallocarray(void *p, size_t nmemb, size_t size)
{
	void *q;

	if (size != 0 && nmemb > SIZE_MAX / size)
		die_oom();
	q = realloc(p, nmemb * size > 0 ? nmemb * size : 1);
	if (q == NULL)
		die_oom();
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p;

	if (n == SIZE_MAX)
		die_oom();
	p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		die_oom();
	return p;
}

/* ======================================================== struct buf */

void
buf_init(struct buf *b, size_t max)
{
	b->cap = 64;
	b->data = xmalloc(b->cap);
	b->data[0] = '\0';
	b->len = 0;
	b->max = max;
	b->failed = false;
	b->cut = false;
}

static int
buf_grow(struct buf *b, size_t extra)
{
	size_t want, ncap;
	char *n;

	if (b->failed)
		return -1;
	if (extra > b->max || b->len > b->max - extra) {
		b->failed = true;
		return -1;
	}
	want = b->len + extra + 1;
	if (want <= b->cap)
		return 0;
	ncap = b->cap;
	while (ncap < want)
		ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
	/* Not realloc: the old block may hold a secret and must be wiped. */
	n = xmalloc(ncap);
	memcpy(n, b->data, b->len + 1);
	explicit_bzero(b->data, b->cap);
	free(b->data);
	b->data = n;
	b->cap = ncap;
	return 0;
}

int
buf_add(struct buf *b, const void *p, size_t len)
{
	if (buf_grow(b, len) < 0)
		return -1;
	if (len)
		memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int
buf_addc(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int
buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		b->failed = true;
	if (n < 0 || buf_grow(b, (size_t)n) < 0)
		return -1;
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

bool
buf_failed(const struct buf *b)
{
	return b->failed;
}

int
buf_fail(struct buf *b)
{
	b->failed = true;
	return -1;
}

void
buf_reset(struct buf *b)
{
	explicit_bzero(b->data, b->len);
	b->len = 0;
	b->data[0] = '\0';
	b->failed = false;
	b->cut = false;
}

char *
buf_detach(struct buf *b, size_t *len)
{
	char *p = b->data;

	if (len)
		*len = b->len;
	buf_init(b, b->max);
	return p;
}

void
buf_release(struct buf *b)
{
	if (b->data != NULL) {
		explicit_bzero(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

/* ======================================================== strlist */

void
strlist_push_owned(struct strlist *l, char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = s;
}

void
strlist_push(struct strlist *l, const char *s)
{
	strlist_push_owned(l, xstrdup(s));
}

bool
strlist_has(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

void
strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* ======================================================== parsing */

int
parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	*out = 0;
	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (p[i] < '0' || p[i] > '9')
			return -1;
		d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

int
parse_mode(const char *p, size_t len, unsigned *out)
{
	unsigned v = 0;

	*out = 0;
	if (len == 0 || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '7')
			return -1;
		v = v * 8 + (unsigned)(p[i] - '0');
	}
	if (v > 07777)
		return -1;
	*out = v;
	return 0;
}

int
sh_quote(struct buf *b, const char *s)
{
	if (buf_addc(b, '\'') < 0)
		return -1;
	for (; *s; s++) {
		if (*s == '\'') {
			if (buf_adds(b, "'\\''") < 0)
				return -1;
		} else if (buf_addc(b, *s) < 0) {
			return -1;
		}
	}
	return buf_addc(b, '\'');
}

int
buf_add_size(struct buf *b, uint64_t n)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n / 1024.0;
	size_t i = 0;

	if (n < 1024)
		return buf_addf(b, "%llu B", (unsigned long long)n);
	while (v >= 1024.0 && i + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024.0;
		i++;
	}
	return buf_addf(b, "%.1f %s", v, unit[i]);
}

bool
str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool
mem_has_nul(const void *p, size_t len)
{
	return memchr(p, '\0', len) != NULL;
}

size_t
utf8_decode(const unsigned char *p, size_t len, uint32_t *cp)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t v;

	*cp = c;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		v = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 2;
		v = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		v = c & 0x07;
	} else {
		return 0;
	}
	if (len - 1 < n)
		return 0;
	for (size_t k = 1; k <= n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[k] & 0x3f);
	}
	if ((n == 2 && v < 0x800) || (n == 3 && v < 0x10000) || v > 0x10ffff ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n + 1;
}

bool
utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = utf8_decode(p + i, len - i, &cp);

		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/* ======================================================== time */

uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int
time_rfc3339(struct buf *b, int64_t unix_seconds)
{
	time_t t = (time_t)unix_seconds;
	struct tm tm;
	char s[32];

	if (gmtime_r(&t, &tm) == NULL)
		return -1;
	if (strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return -1;
	return buf_adds(b, s);
}

/* ======================================================== files */

int
file_read(const char *path, size_t max, struct buf *out, struct errbuf *err)
{
	struct stat st;
	char chunk[8192];
	ssize_t n;
	int fd;

	buf_init(out, max);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return err_set(err, SH_ERR_IO, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, SH_ERR_IO, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return err_set(
		    err, SH_ERR_IO, "%s: larger than %zu bytes", path, max);
	}
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || buf_add(out, chunk, (size_t)n) < 0) {
			int e = n < 0 ? errno : EFBIG;

			close(fd);
			return err_set(
			    err, SH_ERR_IO, "%s: %s", path, strerror(e));
		}
	}
	close(fd);
	return 0;
}

static int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
    struct errbuf *err)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	int fd, saved;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    (mode_t)mode);
	if (fd < 0)
		goto fail;
	if (fchmod(fd, (mode_t)mode) < 0 || write_all(fd, data, len) < 0 ||
	    fsync(fd) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		goto fail;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0)
		goto fail;
	free(tmp);
	return 0;
fail:
	saved = errno;
	unlink(tmp);
	free(tmp);
	return err_set(err, SH_ERR_IO, "%s: %s", path, strerror(saved));
}

int
mkdir_p(const char *path, unsigned mode, struct errbuf *err)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1;; s++) {
		bool end = *s == '\0';

		if (*s != '/' && !end)
			continue;
		*s = '\0';
		if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST) {
			rc = err_set(
			    err, SH_ERR_IO, "mkdir %s: %s", p, strerror(errno));
			break;
		}
		if (end)
			break;
		*s = '/';
	}
	free(p);
	return rc;
}
