/*
 * narstream.c: streaming NAR decoding and verification (narstream.h).
 *
 * Every decoder is driven the same way: the input piece is consumed in
 * a loop that fills one fixed output buffer and flushes it through
 * nar_emit(), which counts, hashes and hands on. End of input is told to
 * the decoder only by nar_check_end(), so a stream that stops early is
 * seen as truncated rather than as short.
 */
#include <bzlib.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "nix/narstream.h"

#define NAR_OUT 65536
/* curl's receive buffer: fewer, larger reads from a fast cache */
#define NAR_RECV_BUF (256L << 10)
#define NAR_DEFAULT_TIMEOUT_S 30
#define NAR_WINDOW_LOG_MAX 27 /* 128 MiB, NAR_WINDOW_MAX */

struct nar_check {
	const struct narinfo *ni;
	const char *cache;
	enum nar_comp comp;
	nar_sink_fn sink;
	void *arg;
	uint64_t count;
	bool ended; /* the compressed stream reached its end */
	bool failed;
	EVP_MD_CTX *sha; /* OpenSSL's: SHA extensions when the CPU has them */
	lzma_stream xz;
	ZSTD_DStream *zs;
	bz_stream bz;
	unsigned char out[NAR_OUT];
};

int
nar_comp_parse(const char *name, enum nar_comp *out, struct errbuf *err)
{
	if (name == NULL || *name == '\0' || strcmp(name, "bzip2") == 0)
		*out = NAR_COMP_BZIP2;
	else if (strcmp(name, "xz") == 0)
		*out = NAR_COMP_XZ;
	else if (strcmp(name, "zstd") == 0)
		*out = NAR_COMP_ZSTD;
	else if (strcmp(name, "none") == 0)
		*out = NAR_COMP_NONE;
	else
		return err_set(err, SH_ERR_TRUST,
		    "unsupported NAR compression '%s' (want xz, zstd, bzip2 "
		    "or none)",
		    name);
	return 0;
}

static int
nar_bad(struct nar_check *c, struct errbuf *err, const char *what)
{
	c->failed = true;
	return err_set(err, SH_ERR_TRUST, "%s from %s/%s: %s",
	    c->ni->store_path, c->cache, c->ni->url, what);
}

struct nar_check *
nar_check_new(const struct narinfo *ni, const char *cache, nar_sink_fn sink,
    void *arg, struct errbuf *err)
{
	struct nar_check *c;
	enum nar_comp comp;
	unsigned char d[32];

	if (nar_comp_parse(ni->compression, &comp, err) < 0) {
		err_prefix(err, "%s from %s: ", ni->store_path, cache);
		return NULL;
	}
	if (nix_hash_sha256_parse(ni->nar_hash, d) < 0) {
		err_set(err, SH_ERR_TRUST, "%s from %s: malformed NarHash '%s'",
		    ni->store_path, cache, ni->nar_hash);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->ni = ni;
	c->cache = cache;
	c->comp = comp;
	c->sink = sink;
	c->arg = arg;
	c->sha = EVP_MD_CTX_new();
	if (c->sha == NULL ||
	    EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) != 1)
		goto nomem;
	if (comp == NAR_COMP_XZ) {
		lzma_stream z = LZMA_STREAM_INIT;

		c->xz = z;
		if (lzma_stream_decoder(
		        &c->xz, NAR_WINDOW_MAX + (16u << 20), 0) != LZMA_OK)
			goto nomem;
	} else if (comp == NAR_COMP_ZSTD) {
		c->zs = ZSTD_createDStream();
		if (c->zs == NULL ||
		    ZSTD_isError(ZSTD_DCtx_setParameter(
		        c->zs, ZSTD_d_windowLogMax, NAR_WINDOW_LOG_MAX)))
			goto nomem;
	} else if (comp == NAR_COMP_BZIP2) {
		if (BZ2_bzDecompressInit(&c->bz, 0, 0) != BZ_OK)
			goto nomem;
	}
	return c;
nomem:
	nar_check_free(c);
	err_set(err, SH_ERR_INTERNAL, "%s: cannot set up the %s decoder",
	    ni->store_path, ni->compression);
	return NULL;
}

void
nar_check_free(struct nar_check *c)
{
	if (c == NULL)
		return;
	if (c->comp == NAR_COMP_XZ)
		lzma_end(&c->xz);
	else if (c->comp == NAR_COMP_ZSTD)
		ZSTD_freeDStream(c->zs);
	else if (c->comp == NAR_COMP_BZIP2)
		BZ2_bzDecompressEnd(&c->bz);
	EVP_MD_CTX_free(c->sha);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

/* Counts, hashes and hands on len decoded bytes. */
static int
nar_emit(struct nar_check *c, const void *p, size_t len, struct errbuf *err)
{
	if (len == 0)
		return 0;
	if (len > c->ni->nar_size - c->count) {
		c->failed = true;
		return err_set(err, SH_ERR_TRUST,
		    "%s from %s/%s: the NAR is longer than its NarSize "
		    "%llu",
		    c->ni->store_path, c->cache, c->ni->url,
		    (unsigned long long)c->ni->nar_size);
	}
	c->count += len;
	if (EVP_DigestUpdate(c->sha, p, len) != 1) {
		c->failed = true;
		return err_set(err, SH_ERR_INTERNAL, "%s: SHA-256 failed",
		    c->ni->store_path);
	}
	if (c->sink != NULL && c->sink(c->arg, p, len, err) < 0) {
		c->failed = true;
		return -1;
	}
	return 0;
}

static int
nar_feed_xz(struct nar_check *c, const unsigned char *p, size_t len,
    bool finish, struct errbuf *err)
{
	lzma_ret r;

	c->xz.next_in = p;
	c->xz.avail_in = len;
	for (;;) {
		c->xz.next_out = c->out;
		c->xz.avail_out = sizeof(c->out);
		r = lzma_code(&c->xz, finish ? LZMA_FINISH : LZMA_RUN);
		if (nar_emit(c, c->out, sizeof(c->out) - c->xz.avail_out, err) <
		    0)
			return -1;
		if (r == LZMA_STREAM_END) {
			c->ended = true;
			if (c->xz.avail_in > 0)
				return nar_bad(c, err,
				    "bytes after the end of the xz stream");
			return 0;
		}
		if (r == LZMA_BUF_ERROR && finish)
			return nar_bad(c, err, "the xz stream is truncated");
		if (r != LZMA_OK && r != LZMA_BUF_ERROR)
			return nar_bad(c, err,
			    r == LZMA_MEMLIMIT_ERROR
			        ? "the xz stream needs a window over 128 MiB"
			        : "the xz stream is corrupt");
		if (c->xz.avail_in == 0 && c->xz.avail_out > 0 && !finish)
			return 0;
	}
}

static int
nar_feed_zstd(struct nar_check *c, const unsigned char *p, size_t len,
    bool finish, struct errbuf *err)
{
	ZSTD_inBuffer in = { p, len, 0 };
	size_t r;

	if (finish)
		return c->ended
		           ? 0
		           : nar_bad(c, err, "the zstd stream is truncated");
	/* Until the input is taken and the decoder holds nothing back. */
	for (;;) {
		ZSTD_outBuffer out = { c->out, sizeof(c->out), 0 };

		r = ZSTD_decompressStream(c->zs, &out, &in);
		if (ZSTD_isError(r))
			return nar_bad(c, err, "the zstd stream is corrupt");
		if (nar_emit(c, c->out, out.pos, err) < 0)
			return -1;
		/* 0: a frame ended; more input would start the next one. */
		c->ended = r == 0;
		if (in.pos == in.size && out.pos < out.size)
			return 0;
	}
}

static int
nar_feed_bz(struct nar_check *c, const unsigned char *p, size_t len,
    bool finish, struct errbuf *err)
{
	int r;

	if (finish)
		return c->ended
		           ? 0
		           : nar_bad(c, err, "the bzip2 stream is truncated");
	if (c->ended && len > 0)
		return nar_bad(
		    c, err, "bytes after the end of the bzip2 stream");
	c->bz.next_in = (char *)(uintptr_t)p; /* bzlib's API is not const */
	c->bz.avail_in = (unsigned)len;
	for (;;) {
		c->bz.next_out = (char *)c->out;
		c->bz.avail_out = sizeof(c->out);
		r = BZ2_bzDecompress(&c->bz);
		if (r != BZ_OK && r != BZ_STREAM_END)
			return nar_bad(c, err, "the bzip2 stream is corrupt");
		if (nar_emit(c, c->out, sizeof(c->out) - c->bz.avail_out, err) <
		    0)
			return -1;
		if (r == BZ_STREAM_END) {
			c->ended = true;
			if (c->bz.avail_in > 0)
				return nar_bad(c, err,
				    "bytes after the end of the bzip2 stream");
			return 0;
		}
		if (c->bz.avail_in == 0 && c->bz.avail_out > 0)
			return 0;
	}
}

static int
nar_step(struct nar_check *c, const void *p, size_t len, bool finish,
    struct errbuf *err)
{
	const unsigned char *u = p;

	if (c->failed)
		return err_set(err, SH_ERR_INTERNAL,
		    "%s: NAR stream used after an error", c->ni->store_path);
	switch (c->comp) {
	case NAR_COMP_XZ:
		if (c->ended && len > 0)
			return nar_bad(
			    c, err, "bytes after the end of the xz stream");
		if (c->ended)
			return 0;
		return nar_feed_xz(c, u, len, finish, err);
	case NAR_COMP_ZSTD:
		return nar_feed_zstd(c, u, len, finish, err);
	case NAR_COMP_BZIP2:
		return nar_feed_bz(c, u, len, finish, err);
	case NAR_COMP_NONE:
		c->ended = true;
		return nar_emit(c, p, len, err);
	}
	return 0;
}

int
nar_check_feed(
    struct nar_check *c, const void *p, size_t len, struct errbuf *err)
{
	if (len > UINT32_MAX) /* bzlib counts in unsigned int */
		return err_set(err, SH_ERR_INTERNAL, "NAR piece too large");
	return nar_step(c, p, len, false, err);
}

int
nar_check_end(struct nar_check *c, struct errbuf *err)
{
	unsigned char got[32], want[32];
	struct buf g, w;
	int rc;

	if (nar_step(c, NULL, 0, true, err) < 0)
		return -1;
	c->failed = true; /* nothing more may come */
	if (c->count != c->ni->nar_size)
		return err_set(err, SH_ERR_TRUST,
		    "%s from %s/%s: the NAR has %llu bytes, its NarSize "
		    "says %llu",
		    c->ni->store_path, c->cache, c->ni->url,
		    (unsigned long long)c->count,
		    (unsigned long long)c->ni->nar_size);
	if (EVP_DigestFinal_ex(c->sha, got, NULL) != 1)
		return nar_bad(c, err, "SHA-256 failed");
	if (nix_hash_sha256_parse(c->ni->nar_hash, want) < 0)
		return nar_bad(c, err, "malformed NarHash");
	if (sodium_memcmp(got, want, sizeof(got)) == 0)
		return 0;
	buf_init(&g, 128);
	buf_init(&w, 128);
	if (nix_hash_sha256_string(got, &g) < 0 ||
	    nix_hash_sha256_string(want, &w) < 0)
		rc = err_set(err, SH_ERR_TRUST,
		    "%s from %s/%s: NarHash mismatch", c->ni->store_path,
		    c->cache, c->ni->url);
	else
		rc = err_set(err, SH_ERR_TRUST,
		    "%s from %s/%s: NarHash mismatch: the narinfo says %s, "
		    "the NAR hashes to %s",
		    c->ni->store_path, c->cache, c->ni->url, w.data, g.data);
	buf_release(&g);
	buf_release(&w);
	return rc;
}

/* ============================================================== fetch */

/*
 * A stall is timeout_ms without a byte from the cache. Time the sink
 * spends (the target reading slowly) does not count: the clock restarts
 * when a piece has been handed on, so curl's own low-speed limit, which
 * would count it, is not used.
 */
struct nar_xfer {
	struct nar_check *c;
	struct errbuf *err;
	bool own_err; /* err holds the check's error, not curl's */
	volatile sig_atomic_t *interrupted;
	uint64_t last_ms; /* when the last piece was handed on */
	uint64_t timeout_ms;
	char *url; /* owned */
	const char *path;
};

static int
nar_on_progress(
    void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct nar_xfer *x = arg;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	if (x->interrupted != NULL && *x->interrupted) {
		err_set(x->err, SH_ERR_INTERRUPTED, "interrupted");
		x->own_err = true;
		return 1;
	}
	if (now_ms() - x->last_ms <= x->timeout_ms)
		return 0;
	err_set(x->err, SH_ERR_UNREACHABLE,
	    "%s: cannot fetch the NAR of %s: no data for %llu s", x->url,
	    x->path, (unsigned long long)(x->timeout_ms / 1000));
	x->own_err = true;
	return 1;
}

static size_t
nar_on_body(char *p, size_t size, size_t n, void *arg)
{
	struct nar_xfer *x = arg;

	if (x->interrupted != NULL && *x->interrupted) {
		err_set(x->err, SH_ERR_INTERRUPTED, "interrupted");
		x->own_err = true;
		return 0;
	}
	if (nar_check_feed(x->c, p, size * n, x->err) < 0) {
		x->own_err = true;
		return 0;
	}
	x->last_ms = now_ms();
	return size * n;
}

/* The curl handle of one transfer, its callbacks on x; NULL on failure. */
static CURL *
nar_easy(struct nar_xfer *x, char *ebuf)
{
	long ms = (long)x->timeout_ms;
	CURL *e = curl_easy_init();

	if (e == NULL || curl_easy_setopt(e, CURLOPT_URL, x->url) ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) ||
	    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L) ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L) ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms) ||
	    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L) ||
	    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, nar_on_progress) ||
	    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ebuf) ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, nar_on_body) ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, x) ||
	    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, NAR_RECV_BUF)) {
		if (e != NULL)
			curl_easy_cleanup(e);
		return NULL;
	}
	return e;
}

/* The outcome of a finished transfer: curl's, the check's, then the end. */
static int
nar_done(struct nar_xfer *x, CURL *e, CURLcode cc, const char *ebuf)
{
	long code = 0;

	if (x->own_err)
		return -1;
	if (cc != CURLE_OK) {
		(void)curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		return err_set(x->err,
		    code >= 400 && code < 500 ? SH_ERR_STEP
		                              : SH_ERR_UNREACHABLE,
		    "%s: cannot fetch the NAR of %s: %s", x->url, x->path,
		    *ebuf ? ebuf : curl_easy_strerror(cc));
	}
	return nar_check_end(x->c, x->err);
}

static void
nar_xfer_init(struct nar_xfer *x, const struct narinfo *ni, const char *cache,
    const struct nar_fetch_opts *o, struct errbuf *err)
{
	memset(x, 0, sizeof(*x));
	x->err = err;
	x->interrupted = o->interrupted;
	x->url = xasprintf("%s/%s", cache, ni->url);
	x->path = ni->store_path;
	x->timeout_ms =
	    1000u * (o->timeout_s ? o->timeout_s : NAR_DEFAULT_TIMEOUT_S);
	x->last_ms = now_ms();
}

int
nar_fetch(const struct narinfo *ni, const char *cache,
    const struct nar_fetch_opts *o, nar_sink_fn sink, void *arg,
    struct errbuf *err)
{
	char ebuf[CURL_ERROR_SIZE] = "";
	struct nar_xfer x;
	CURL *e = NULL;
	int rc = -1;

	nar_xfer_init(&x, ni, cache, o, err);
	x.c = nar_check_new(ni, cache, sink, arg, err);
	if (x.c == NULL)
		goto out;
	e = nar_easy(&x, ebuf);
	if (e == NULL) {
		err_set(err, SH_ERR_INTERNAL, "%s: cannot set up curl", x.url);
		goto out;
	}
	rc = nar_done(&x, e, curl_easy_perform(e), ebuf);
out:
	if (e != NULL)
		curl_easy_cleanup(e);
	nar_check_free(x.c);
	free(x.url);
	return rc;
}

/* ============================================================ ordered */

/*
 * nar_fetch_ordered(): a fetch thread runs curl multi and writes each
 * job's checked NAR bytes into the job's buffer: a ring in memory of up
 * to NAR_RING bytes (less for a smaller NAR), and past it an unlinked
 * temporary file, made only when the ring overflows; the calling thread
 * hands them on in job order, following the head job while it grows.
 * Bytes go to the ring only while the file holds none unread, so the
 * ring's bytes always come before the file's. The head job never spills:
 * its ring full, the fetch thread waits for the caller to make room (the
 * caller is reading it, and the bytes a disk round trip costs are the
 * CPU a 2-core controller needs for the SSH channel); other transfers
 * wait with it, and their stall clocks are moved on by the time waited.
 * Small NARs therefore never touch the disk, and a big one streams
 * through memory when it is the head job. The lock guards the job
 * states, the rings, the file counts, emitted, stop and the first
 * failure; the files' contents and curl are each one thread's.
 */
enum nar_js {
	NAR_JS_WAIT,
	NAR_JS_RUN,
	NAR_JS_OK,
	NAR_JS_FAIL
};

struct nar_job_st {
	enum nar_js state; /* locked */
	size_t idx;        /* this job's index */
	struct nar_ord *r;
	unsigned char *ring; /* locked; owned; NULL until started */
	size_t rcap, rhead, rlen;
	int fd;      /* -1 until the ring overflowed; closed by the caller */
	uint64_t fw; /* locked: bytes in fd */
	uint64_t fr; /* locked: bytes of fd handed on */
	/* the fetch thread's */
	struct nar_xfer x;
	struct errbuf err;
	CURL *e;
	char ebuf[CURL_ERROR_SIZE];
};

struct nar_ord {
	const struct nar_job *jobs;
	struct nar_job_st *st;
	size_t n;
	unsigned parallel;
	const struct nar_fetch_opts *o;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	CURLM *m;
	size_t emitted;    /* locked: jobs the caller finished */
	size_t started;    /* the fetch thread's: jobs started */
	bool stop;         /* locked: the caller gave up */
	bool failed;       /* locked: a job or the thread failed */
	struct errbuf err; /* locked: the first failure */
};

bool
nar_order_may_start(const struct nar_job *jobs, size_t next, size_t emitted,
    size_t inflight, unsigned parallel)
{
	uint64_t ahead = 0;

	if (inflight >= parallel)
		return false;
	if (next <= emitted) /* the head job always may */
		return true;
	if (next - emitted >= NAR_AHEAD_JOBS)
		return false;
	for (size_t i = emitted + 1; i <= next; i++)
		ahead += jobs[i].ni->nar_size;
	return ahead <= NAR_AHEAD_BYTES;
}

/* The first failure, of job js (or NULL: the thread's own). */
static void
nar_ord_fail(struct nar_ord *r, struct nar_job_st *js, const struct errbuf *e)
{
	pthread_mutex_lock(&r->mu);
	if (js != NULL)
		js->state = NAR_JS_FAIL;
	if (!r->failed)
		r->err = *e;
	r->failed = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* The job's file, on its first overflow: unlinked at once, or unnamed. */
static int
nar_ord_file(struct nar_job_st *js, struct errbuf *err)
{
	const char *dir = getenv("TMPDIR");
	char *tmpl;

	if (dir == NULL || *dir != '/')
		dir = "/tmp";
	js->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (js->fd >= 0)
		return 0;
	tmpl = xasprintf("%s/stagehand-nar.XXXXXX", dir);
	js->fd = mkostemp(tmpl, O_CLOEXEC);
	if (js->fd >= 0)
		unlink(tmpl);
	free(tmpl);
	if (js->fd < 0)
		return err_set(err, SH_ERR_IO,
		    "%s: cannot make a temporary file for the NAR: %s",
		    js->x.path, strerror(errno));
	return 0;
}

static int
nar_ord_spill(
    struct nar_job_st *js, const char *c, size_t left, struct errbuf *err)
{
	if (js->fd < 0 && nar_ord_file(js, err) < 0)
		return -1;
	while (left > 0) {
		ssize_t w = write(js->fd, c, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_set(err, SH_ERR_IO,
			    "%s: cannot spill the NAR to a temporary file: %s",
			    js->x.path, strerror(errno));
		c += w;
		left -= (size_t)w;
	}
	return 0;
}

/* Time the fetch thread waited for the caller is no stall of the cache. */
static void
nar_ord_waited(struct nar_ord *r, uint64_t ms)
{
	for (size_t i = 0; i < r->started; i++)
		if (r->st[i].e != NULL)
			r->st[i].x.last_ms += ms;
}

/*
 * The check's sink in the fetch thread: into the job's ring while the
 * file has nothing unread and the ring has room, else into the file;
 * the head job waits for room instead.
 */
static int
nar_ord_sink(void *arg, const void *p, size_t len, struct errbuf *err)
{
	struct nar_job_st *js = arg;
	struct nar_ord *r = js->r;
	const char *c = p;
	uint64_t waited = 0;
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	while (len > 0 && rc == 0) {
		size_t at, n;

		if (r->stop || r->failed) {
			rc = err_set(
			    err, SH_ERR_INTERRUPTED, "%s: stopped", js->x.path);
			break;
		}
		if (js->fw == js->fr && js->rlen == js->rcap &&
		    js->idx == r->emitted) {
			uint64_t t0 = now_ms();

			pthread_cond_wait(&r->cv, &r->mu);
			waited += now_ms() - t0;
			continue;
		}
		if (js->fw > js->fr || js->rlen == js->rcap) {
			pthread_mutex_unlock(&r->mu);
			rc = nar_ord_spill(js, c, len, err);
			pthread_mutex_lock(&r->mu);
			if (rc == 0)
				js->fw += len;
			len = 0;
			pthread_cond_broadcast(&r->cv);
			break;
		}
		at = (js->rhead + js->rlen) % js->rcap;
		n = js->rcap - js->rlen;
		if (n > js->rcap - at)
			n = js->rcap - at;
		if (n > len)
			n = len;
		memcpy(js->ring + at, c, n);
		js->rlen += n;
		c += n;
		len -= n;
		pthread_cond_broadcast(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
	if (waited > 0)
		nar_ord_waited(r, waited);
	return rc;
}

static int
nar_ord_start(struct nar_ord *r, size_t i, struct errbuf *err)
{
	struct nar_job_st *js = &r->st[i];
	uint64_t sz = r->jobs[i].ni->nar_size;

	nar_xfer_init(&js->x, r->jobs[i].ni, r->jobs[i].cache, r->o, &js->err);
	js->x.c = nar_check_new(
	    r->jobs[i].ni, r->jobs[i].cache, nar_ord_sink, js, err);
	if (js->x.c == NULL)
		return -1;
	js->e = nar_easy(&js->x, js->ebuf);
	if (js->e == NULL || curl_easy_setopt(js->e, CURLOPT_PRIVATE, js) ||
	    curl_multi_add_handle(r->m, js->e) != CURLM_OK)
		return err_set(
		    err, SH_ERR_INTERNAL, "%s: cannot set up curl", js->x.url);
	pthread_mutex_lock(&r->mu);
	js->rcap = sz == 0 ? 1 : sz < NAR_RING ? (size_t)sz : NAR_RING;
	js->ring = xmalloc(js->rcap);
	js->state = NAR_JS_RUN;
	pthread_mutex_unlock(&r->mu);
	return 0;
}

/* The job checked out: the caller may finish it. */
static void
nar_ord_done(struct nar_ord *r, struct nar_job_st *js)
{
	pthread_mutex_lock(&r->mu);
	js->state = NAR_JS_OK;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void
nar_ord_release(struct nar_ord *r, struct nar_job_st *js)
{
	if (js->e != NULL) {
		curl_multi_remove_handle(r->m, js->e);
		curl_easy_cleanup(js->e);
		js->e = NULL;
	}
	nar_check_free(js->x.c);
	js->x.c = NULL;
	free(js->x.url);
	js->x.url = NULL;
}

static int
nar_ord_loop(struct nar_ord *r, struct errbuf *err)
{
	size_t next = 0, inflight = 0, emitted;
	bool stop;
	CURLMsg *msg;
	int left, running;

	for (;;) {
		pthread_mutex_lock(&r->mu);
		emitted = r->emitted;
		stop = r->stop || r->failed;
		while (!stop && inflight == 0 && next < r->n &&
		       !nar_order_may_start(
		           r->jobs, next, emitted, inflight, r->parallel)) {
			pthread_cond_wait(&r->cv, &r->mu);
			emitted = r->emitted;
			stop = r->stop || r->failed;
		}
		pthread_mutex_unlock(&r->mu);
		if (stop || (inflight == 0 && next == r->n))
			return 0;
		while (next < r->n && nar_order_may_start(r->jobs, next,
		                          emitted, inflight, r->parallel)) {
			r->started = next + 1; /* its handle, for the clocks */
			if (nar_ord_start(r, next, err) < 0)
				return -1;
			next++;
			inflight++;
		}
		if (curl_multi_perform(r->m, &running) != CURLM_OK)
			return err_set(
			    err, SH_ERR_INTERNAL, "curl multi failed");
		while ((msg = curl_multi_info_read(r->m, &left)) != NULL) {
			struct nar_job_st *js = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			(void)curl_easy_getinfo(
			    msg->easy_handle, CURLINFO_PRIVATE, (char **)&js);
			if (nar_done(&js->x, js->e, msg->data.result,
			        js->ebuf) < 0) {
				/* state and failure at once: the caller
				 * never sees a failed job without the
				 * error */
				nar_ord_fail(r, js, &js->err);
				*err = js->err;
				nar_ord_release(r, js);
				return -1;
			}
			nar_ord_done(r, js);
			nar_ord_release(r, js);
			inflight--;
		}
		if (inflight > 0 &&
		    curl_multi_poll(r->m, NULL, 0, 100, NULL) != CURLM_OK)
			return err_set(
			    err, SH_ERR_INTERNAL, "curl poll failed");
	}
}

static void *
nar_ord_main(void *arg)
{
	struct nar_ord *r = arg;
	struct errbuf e;

	err_clear(&e);
	if (nar_ord_loop(r, &e) < 0)
		nar_ord_fail(r, NULL, &e);
	for (size_t i = 0; i < r->n; i++)
		nar_ord_release(r, &r->st[i]);
	return NULL;
}

/* Wakes the fetch thread, in its poll or waiting for room. */
static void
nar_ord_wake(struct nar_ord *r, bool stop)
{
	pthread_mutex_lock(&r->mu);
	if (stop)
		r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	curl_multi_wakeup(r->m);
}

/*
 * The next bytes of job js into b (at most bsz), under the lock: the
 * ring's first, then the file's (read with the lock released). *got is 0
 * when there are none now.
 */
static int
nar_ord_take(struct nar_ord *r, struct nar_job_st *js, unsigned char *b,
    size_t bsz, size_t *got, struct errbuf *err)
{
	uint64_t off;
	size_t n;
	ssize_t k;

	*got = 0;
	if (js->rlen > 0) {
		n = js->rcap - js->rhead;
		n = n < js->rlen ? n : js->rlen;
		n = n < bsz ? n : bsz;
		memcpy(b, js->ring + js->rhead, n);
		js->rhead = (js->rhead + n) % js->rcap;
		js->rlen -= n;
		*got = n;
		pthread_cond_broadcast(&r->cv);
		return 0;
	}
	if (js->fw == js->fr)
		return 0;
	off = js->fr;
	n = js->fw - off < bsz ? (size_t)(js->fw - off) : bsz;
	pthread_mutex_unlock(&r->mu);
	do
		k = pread(js->fd, b, n, (off_t)off);
	while (k < 0 && errno == EINTR);
	pthread_mutex_lock(&r->mu);
	if (k <= 0)
		return err_set(err, SH_ERR_IO,
		    "%s: cannot read the spilled NAR back: %s", js->x.path,
		    k < 0 ? strerror(errno) : "short file");
	js->fr += (uint64_t)k;
	*got = (size_t)k;
	pthread_cond_broadcast(&r->cv);
	return 0;
}

/* Hands job i's bytes on as they arrive; 0 once it checked out. */
static int
nar_ord_emit(struct nar_ord *r, size_t i, const struct nar_order_ops *ops,
    void *arg, unsigned char *b, size_t bsz, struct errbuf *err)
{
	struct nar_job_st *js = &r->st[i];
	bool idled = false;
	size_t got;

	pthread_mutex_lock(&r->mu);
	if (js->state == NAR_JS_WAIT && !r->failed && ops->idle != NULL) {
		pthread_mutex_unlock(&r->mu);
		if (ops->idle(arg, err) < 0)
			return -1;
		pthread_mutex_lock(&r->mu);
	}
	while (js->state == NAR_JS_WAIT && !r->failed)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	if (ops->begin != NULL && ops->begin(arg, i, err) < 0)
		return -1;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		if (!r->failed && nar_ord_take(r, js, b, bsz, &got, err) < 0) {
			pthread_mutex_unlock(&r->mu);
			return -1;
		}
		if (!r->failed && got == 0 && js->state == NAR_JS_RUN &&
		    !idled && ops->idle != NULL) {
			pthread_mutex_unlock(&r->mu);
			idled = true;
			if (ops->idle(arg, err) < 0)
				return -1;
			continue;
		}
		if (!r->failed && got == 0 && js->state == NAR_JS_RUN) {
			pthread_cond_wait(&r->cv, &r->mu);
			pthread_mutex_unlock(&r->mu);
			continue;
		}
		if (r->failed) {
			*err = r->err;
			pthread_mutex_unlock(&r->mu);
			return -1;
		}
		pthread_mutex_unlock(&r->mu);
		if (got == 0) /* NAR_JS_OK, all handed on */
			break;
		if (ops->bytes != NULL && ops->bytes(arg, b, got, err) < 0)
			return -1;
		idled = false;
	}
	return ops->end != NULL ? ops->end(arg, i, err) : 0;
}

/* Job i's ring and file; only once the fetch thread is done with it. */
static void
nar_ord_free(struct nar_job_st *js)
{
	if (js->fd >= 0)
		close(js->fd);
	js->fd = -1;
	free(js->ring);
	js->ring = NULL;
}

int
nar_fetch_ordered(const struct nar_job *jobs, size_t n,
    const struct nar_fetch_opts *o, const struct nar_order_ops *ops, void *arg,
    struct errbuf *err)
{
	struct nar_ord r;
	unsigned char *b;
	pthread_t th;
	int rc = 0;

	if (n == 0)
		return 0;
	memset(&r, 0, sizeof(r));
	r.jobs = jobs;
	r.n = n;
	r.o = o;
	r.parallel = o->parallel ? o->parallel : NAR_PARALLEL_DEFAULT;
	r.st = xcalloc(n, sizeof(*r.st));
	for (size_t i = 0; i < n; i++) {
		r.st[i].fd = -1;
		r.st[i].idx = i;
		r.st[i].r = &r;
	}
	r.m = curl_multi_init();
	if (r.m == NULL || curl_multi_setopt(r.m, CURLMOPT_MAX_HOST_CONNECTIONS,
	                       (long)r.parallel) != CURLM_OK) {
		if (r.m != NULL)
			curl_multi_cleanup(r.m);
		free(r.st);
		return err_set(err, SH_ERR_INTERNAL, "cannot set up curl");
	}
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	b = xmalloc(NAR_OUT);
	if (pthread_create(&th, NULL, nar_ord_main, &r) != 0) {
		rc = err_set(err, SH_ERR_INTERNAL, "cannot start NAR fetches");
		goto out;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = nar_ord_emit(&r, i, ops, arg, b, NAR_OUT, err);
		if (rc == 0) /* checked out: the fetch thread is done with it */
			nar_ord_free(&r.st[i]);
		pthread_mutex_lock(&r.mu);
		r.emitted = i + 1;
		pthread_mutex_unlock(&r.mu);
		nar_ord_wake(&r, false);
	}
	nar_ord_wake(&r, true);
	pthread_join(th, NULL);
out:
	for (size_t i = 0; i < n; i++)
		nar_ord_free(&r.st[i]);
	curl_multi_cleanup(r.m);
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
	free(r.st);
	free(b);
	return rc;
}
