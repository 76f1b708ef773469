/*
 * nixcache.c: closure resolution from Nix binary caches (nixcache.h).
 *
 * One CURLM per resolution drives every narinfo request; its connection
 * cache keeps HTTP/1.1 connections alive between requests, and at most
 * opts->parallel requests (and at most HOST_CONNECTIONS per substituter)
 * are in flight. The walk is breadth-first over References with a hash set
 * of the paths seen, so each path is fetched once.
 *
 * Per path, the substituters are tried in order. A 404 (or 403, which S3
 * answers for a missing key, as Nix treats it) moves to the next one. A
 * timeout, connection failure, 429 or 5xx is retried opts->retries times
 * with exponential backoff and jitter; then that substituter counts as down
 * and is skipped for the paths that follow (as Nix disables a failing
 * cache). Anything that is not a trusted narinfo for exactly the path asked
 * for stops the walk at once: no partial result is ever returned.
 *
 * Signatures are checked on one worker thread (the verifier) so that the
 * CPU-bound Ed25519 checks overlap the transfers; a path's References join
 * the walk only once its narinfo verified. The thread touches nothing but
 * the jobs handed to it and the (read-only) keys; everything else belongs
 * to the calling thread.
 *
 * Banners: walk state; easy handles and requests; verifier; the walk;
 * completion handling; the loop; the result; setup and teardown;
 * nix-cache-info.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nix/nixcache.h"

#define DEFAULT_TIMEOUT_S 30
#define DEFAULT_PARALLEL 32
#define HOST_CONNECTIONS 16
#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 2000
#define POLL_MAX_MS 100
#define NOTE_MAX 768

#ifndef STAGEHAND_VERSION
#define STAGEHAND_VERSION "dev"
#endif

/* ==================================================== walk state */

enum wstate {
	W_QUEUED,
	W_ACTIVE,
	W_VERIFYING, /* parsed, its signature being checked */
	W_DONE,
};

struct wpath {
	char *path;    /* owned: /nix/store/<hash>-<name> */
	size_t parent; /* index of the path that referenced it */
	enum wstate state;
	size_t sub;          /* substituter being tried */
	struct narinfo info; /* valid once W_DONE */
	const char *signer;
	struct buf notes; /* "url: reason; " per substituter given up on */
	bool any_down;    /* some substituter was down for this path */
};

struct request {
	CURL *easy;
	size_t idx;        /* path index */
	unsigned attempt;  /* 1-based, at the current substituter */
	uint64_t ready_at; /* for a retry waiting out its backoff */
	bool waiting;      /* in the backoff queue, not in the multi */
	bool too_big;
	bool in_multi;
	char *url; /* owned */
	struct buf body;
	char curl_err[CURL_ERROR_SIZE];
};

/*
 * A parsed narinfo on its way to and back from the verifier thread. The
 * job owns its narinfo, so the thread never touches the walk's arrays.
 */
struct vjob {
	struct vjob *next;
	size_t idx;
	char *url;           /* owned: where the narinfo came from */
	struct narinfo info; /* owned */
	const char *signer;
	int rc;
	struct errbuf err;
};

/*
 * Ed25519 verification is about half the CPU time of a large closure, so
 * one thread does it while the event loop keeps the transfers moving; it
 * wakes the loop with curl_multi_wakeup() when a result is ready.
 */
struct verifier {
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct vjob *todo, *todo_tail; /* under mu */
	struct vjob *done;             /* under mu, any order */
	bool stop;                     /* under mu */
	size_t outstanding;            /* main thread only: sent - received */
	const struct nix_keys *keys;
	CURLM *multi;
};

struct walk {
	const struct nix_cache_opts *opts;
	unsigned parallel, timeout_s;
	CURLM *multi;
	struct wpath *v; /* owned, discovery order */
	size_t n, cap;
	size_t *set;    /* open addressing: index + 1, 0 = empty */
	size_t set_cap; /* power of two */
	size_t next;    /* paths before it are not W_QUEUED */
	size_t done;
	char **bases; /* owned: substituter URLs without trailing '/' */
	struct request **reqs; /* owned: every request made, <= parallel */
	size_t nreqs;
	struct request **idle; /* borrowed from reqs: free for reuse */
	size_t nidle;
	size_t busy;        /* requests assigned to a path */
	size_t *sub_active; /* owned: requests in flight per substituter */
	char **sub_down;    /* owned: why a substituter is down, or NULL */
	struct verifier ver;
	struct errbuf *err;
	bool failed;
};

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static size_t
set_slot(const struct walk *w, const char *path)
{
	size_t mask = w->set_cap - 1, i = (size_t)hash_str(path) & mask;

	while (w->set[i] != 0 && strcmp(w->v[w->set[i] - 1].path, path) != 0)
		i = (i + 1) & mask;
	return i;
}

static void
set_grow(struct walk *w)
{
	size_t ncap = w->set_cap ? w->set_cap * 2 : 1024;

	free(w->set);
	w->set = xcalloc(ncap, sizeof(*w->set));
	w->set_cap = ncap;
	for (size_t i = 0; i < w->n; i++)
		w->set[set_slot(w, w->v[i].path)] = i + 1;
}

/* Adds path unless seen; takes ownership of path. */
static void
walk_add(struct walk *w, char *path, size_t parent)
{
	size_t slot;

	if ((w->n + 1) * 2 > w->set_cap)
		set_grow(w);
	slot = set_slot(w, path);
	if (w->set[slot] != 0) {
		free(path);
		return;
	}
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 64;
		w->v = xreallocarray(w->v, w->cap, sizeof(*w->v));
	}
	memset(&w->v[w->n], 0, sizeof(w->v[w->n]));
	w->v[w->n].path = path;
	w->v[w->n].parent = parent;
	buf_init(&w->v[w->n].notes, NOTE_MAX);
	w->set[slot] = ++w->n;
}

/* Records the first fatal error; the loop stops at its next turn. */
static void ATTR_PRINTF(3, 4)
    walk_fail(struct walk *w, enum sh_err code, const char *fmt, ...)
{
	va_list ap;

	if (w->failed)
		return;
	w->failed = true;
	w->err->code = code;
	va_start(ap, fmt);
	vsnprintf(w->err->msg, sizeof(w->err->msg), fmt, ap);
	va_end(ap);
}

static bool
sub_is_down(const struct walk *w, size_t sub)
{
	return w->sub_down[sub] != NULL;
}

/* ===================================== easy handles and requests */

static size_t
on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct request *r = arg;
	size_t n = size * nmemb;

	if (buf_add(&r->body, p, n) < 0) {
		r->too_big = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	return n;
}

/*
 * Redirects are followed only to http and https; the body is capped at
 * NARINFO_MAX_BYTES whether or not the server sends a Content-Length.
 */
static CURL *
easy_new(unsigned timeout_s, struct request *r)
{
	CURL *e = curl_easy_init();
	long ms = (long)timeout_s * 1000;

	if (e == NULL)
		return NULL;
	if (curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, r) ||
	    curl_easy_setopt(e, CURLOPT_PRIVATE, r) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err) ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms) ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms) ||
	    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) ||
	    curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L) ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) ||
	    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L) ||
	    curl_easy_setopt(
	        e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)NARINFO_MAX_BYTES) ||
	    curl_easy_setopt(
	        e, CURLOPT_USERAGENT, "stagehand/" STAGEHAND_VERSION)) {
		curl_easy_cleanup(e);
		return NULL;
	}
	return e;
}

static struct request *
request_new(unsigned timeout_s)
{
	struct request *r = xcalloc(1, sizeof(*r));

	buf_init(&r->body, NARINFO_MAX_BYTES);
	r->easy = easy_new(timeout_s, r);
	if (r->easy == NULL) {
		buf_release(&r->body);
		free(r);
		return NULL;
	}
	return r;
}

static void
request_free(struct request *r)
{
	if (r == NULL)
		return;
	curl_easy_cleanup(r->easy);
	buf_release(&r->body);
	free(r->url);
	free(r);
}

static void
request_reset(struct request *r, const char *url)
{
	free(r->url);
	r->url = xstrdup(url);
	buf_reset(&r->body);
	r->too_big = false;
	r->curl_err[0] = '\0';
	curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
}

/* Why a transfer failed, for messages: HTTP status, curl's detail, code. */
static const char *
request_reason(
    const struct request *r, CURLcode rc, long code, char *tmp, size_t tmplen)
{
	if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(tmp, tmplen, "narinfo larger than %u bytes",
		    NARINFO_MAX_BYTES);
		return tmp;
	}
	if (rc == CURLE_HTTP_RETURNED_ERROR ||
	    (rc == CURLE_OK && code != 200)) {
		snprintf(tmp, tmplen, "HTTP %ld", code);
		return tmp;
	}
	if (rc == CURLE_UNSUPPORTED_PROTOCOL && code >= 300 && code < 400) {
		snprintf(tmp, tmplen, "redirect refused (HTTP %ld): %s", code,
		    r->curl_err[0] ? r->curl_err : curl_easy_strerror(rc));
		return tmp;
	}
	return r->curl_err[0] ? r->curl_err : curl_easy_strerror(rc);
}

static bool
transient(CURLcode rc, long code)
{
	if (code >= 500 || code == 429 || code == 408)
		return true;
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* 100 ms, 200 ms, 400 ms... up to 2 s, plus up to half again at random. */
static uint64_t
backoff_ms(unsigned attempt)
{
	uint64_t d = BACKOFF_BASE_MS;

	for (unsigned i = 1; i < attempt && d < BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > BACKOFF_MAX_MS)
		d = BACKOFF_MAX_MS;
	return d + randombytes_uniform((uint32_t)(d / 2 + 1));
}

/* "http://host/x/" -> "http://host/x"; only http and https. */
static char *
base_url(const char *url, struct errbuf *err)
{
	size_t len = strlen(url);

	if (!str_has_prefix(url, "http://") &&
	    !str_has_prefix(url, "https://")) {
		err_set(err, SH_ERR_USAGE,
		    "substituter '%s': only http:// and https:// caches are "
		    "supported",
		    url);
		return NULL;
	}
	while (len > 0 && url[len - 1] == '/')
		len--;
	if (mem_has_nul(url, len) || strpbrk(url, " \t\r\n") != NULL) {
		err_set(err, SH_ERR_USAGE, "substituter '%s': bad URL", url);
		return NULL;
	}
	return xstrndup(url, len);
}

/* ====================================================== verifier */

static void
vjob_free(struct vjob *j)
{
	while (j != NULL) {
		struct vjob *next = j->next;

		nix_narinfo_free(&j->info);
		free(j->url);
		free(j);
		j = next;
	}
}

static void *
ver_main(void *arg)
{
	struct verifier *v = arg;

	pthread_mutex_lock(&v->mu);
	for (;;) {
		struct vjob *j;

		while (v->todo == NULL && !v->stop)
			pthread_cond_wait(&v->cv, &v->mu);
		if (v->stop)
			break;
		j = v->todo;
		v->todo = j->next;
		if (v->todo == NULL)
			v->todo_tail = NULL;
		pthread_mutex_unlock(&v->mu);
		err_clear(&j->err);
		j->rc =
		    nix_narinfo_verify(&j->info, v->keys, &j->signer, &j->err);
		pthread_mutex_lock(&v->mu);
		j->next = v->done;
		v->done = j;
		curl_multi_wakeup(v->multi);
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

static int
ver_start(struct verifier *v, const struct nix_keys *keys, CURLM *multi)
{
	v->keys = keys;
	v->multi = multi;
	if (pthread_mutex_init(&v->mu, NULL) != 0)
		return -1;
	if (pthread_cond_init(&v->cv, NULL) != 0) {
		pthread_mutex_destroy(&v->mu);
		return -1;
	}
	if (pthread_create(&v->thread, NULL, ver_main, v) != 0) {
		pthread_cond_destroy(&v->cv);
		pthread_mutex_destroy(&v->mu);
		return -1;
	}
	v->started = true;
	return 0;
}

/* Stops and joins the thread; drops whatever was not verified or read. */
static void
ver_stop(struct verifier *v)
{
	if (!v->started)
		return;
	pthread_mutex_lock(&v->mu);
	v->stop = true;
	pthread_cond_signal(&v->cv);
	pthread_mutex_unlock(&v->mu);
	pthread_join(v->thread, NULL);
	vjob_free(v->todo);
	vjob_free(v->done);
	pthread_cond_destroy(&v->cv);
	pthread_mutex_destroy(&v->mu);
	memset(v, 0, sizeof(*v));
}

static void
ver_send(struct verifier *v, struct vjob *j)
{
	j->next = NULL;
	pthread_mutex_lock(&v->mu);
	if (v->todo_tail != NULL)
		v->todo_tail->next = j;
	else
		v->todo = j;
	v->todo_tail = j;
	pthread_cond_signal(&v->cv);
	pthread_mutex_unlock(&v->mu);
	v->outstanding++;
}

/* The verified jobs so far (caller owns them), or NULL. */
static struct vjob *
ver_take(struct verifier *v)
{
	struct vjob *j;

	pthread_mutex_lock(&v->mu);
	j = v->done;
	v->done = NULL;
	pthread_mutex_unlock(&v->mu);
	return j;
}

/* ===================================================== the walk */

static struct request *
walk_request(struct walk *w)
{
	struct request *r;

	if (w->nidle > 0)
		return w->idle[--w->nidle];
	r = request_new(w->timeout_s);
	if (r == NULL)
		return NULL;
	w->reqs[w->nreqs++] = r;
	return r;
}

static void
walk_detach(struct walk *w, struct request *r)
{
	if (!r->in_multi)
		return;
	curl_multi_remove_handle(w->multi, r->easy);
	r->in_multi = false;
	w->sub_active[w->v[r->idx].sub]--;
}

static void
walk_release(struct walk *w, struct request *r)
{
	walk_detach(w, r);
	r->waiting = false;
	w->busy--;
	w->idle[w->nidle++] = r;
}

/* (Re)starts r for path idx at the path's current substituter. */
static void
walk_send(struct walk *w, struct request *r, size_t idx)
{
	struct wpath *p = &w->v[idx];
	char *url = xasprintf("%s/%.*s.narinfo", w->bases[p->sub], NIX_HASH_LEN,
	    p->path + sizeof(NIX_STORE_DIR));

	request_reset(r, url);
	free(url);
	r->idx = idx;
	r->waiting = false;
	p->state = W_ACTIVE;
	if (curl_multi_add_handle(w->multi, r->easy) != CURLM_OK) {
		walk_fail(w, SH_ERR_INTERNAL,
		    "%s: curl_multi_add_handle failed", p->path);
		return;
	}
	r->in_multi = true;
	w->sub_active[p->sub]++;
}

static void
note(struct walk *w, size_t idx, const char *url, const char *why)
{
	struct buf *b = &w->v[idx].notes;

	/* Past NOTE_MAX the first notes are the ones kept. */
	buf_addf(b, "%s%s: %s", b->len ? "; " : "", url, why);
}

/* Moves p->sub to the first substituter at or after it that is up. */
static bool
walk_pick_sub(struct walk *w, size_t idx)
{
	struct wpath *p = &w->v[idx];

	while (p->sub < w->opts->nsubstituters && sub_is_down(w, p->sub)) {
		note(w, idx, w->bases[p->sub], w->sub_down[p->sub]);
		p->any_down = true;
		p->sub++;
	}
	return p->sub < w->opts->nsubstituters;
}

/* Every substituter said no for path idx: missing or unreachable. */
static void
walk_exhausted(struct walk *w, size_t idx)
{
	const struct wpath *p = &w->v[idx];
	char by[NOTE_MAX];

	by[0] = '\0';
	if (idx != 0)
		snprintf(by, sizeof(by), " (referenced by %s)",
		    w->v[p->parent].path);
	if (p->any_down)
		walk_fail(w, SH_ERR_UNREACHABLE,
		    "%s%s: no substituter could serve it: %s", p->path, by,
		    p->notes.data);
	else
		walk_fail(w, SH_ERR_STEP, "%s%s: not in any substituter (%s)",
		    p->path, by, p->notes.data);
}

/* Starts retries whose backoff is over, then new paths, within limits. */
static void
walk_start(struct walk *w)
{
	uint64_t now = now_ms();
	unsigned cap =
	    w->parallel < HOST_CONNECTIONS ? w->parallel : HOST_CONNECTIONS;

	for (size_t i = 0; i < w->nreqs && !w->failed; i++) {
		struct request *r = w->reqs[i];

		if (r->waiting && r->ready_at <= now)
			walk_send(w, r, r->idx);
	}
	while (!w->failed && w->busy < w->parallel && w->next < w->n) {
		struct request *r;

		if (!walk_pick_sub(w, w->next)) {
			walk_exhausted(w, w->next);
			return;
		}
		if (w->sub_active[w->v[w->next].sub] >= cap)
			return;
		r = walk_request(w);
		if (r == NULL) {
			walk_fail(w, SH_ERR_INTERNAL, "curl_easy_init failed");
			return;
		}
		w->busy++;
		r->attempt = 1;
		walk_send(w, r, w->next++);
	}
}

/* ============================================ completion handling */

/*
 * A 200 for path idx: it must parse and be exactly the path asked for;
 * then the verifier checks its signature while the loop goes on with the
 * other transfers. Its References are walked only once it is trusted.
 */
static void
walk_accept(struct walk *w, struct request *r)
{
	size_t idx = r->idx;
	struct vjob *j = xcalloc(1, sizeof(*j));

	if (nix_narinfo_parse(r->body.data, r->body.len, &j->info, &j->err) <
	    0) {
		walk_fail(w, SH_ERR_TRUST, "%s: %s: %s", w->v[idx].path, r->url,
		    j->err.msg);
		vjob_free(j);
		return;
	}
	if (strcmp(j->info.store_path, w->v[idx].path) != 0) {
		walk_fail(w, SH_ERR_TRUST,
		    "%s: %s: StorePath is %s, not the path asked for",
		    w->v[idx].path, r->url, j->info.store_path);
		vjob_free(j);
		return;
	}
	j->idx = idx;
	j->url = xstrdup(r->url);
	w->v[idx].state = W_VERIFYING;
	ver_send(&w->ver, j);
}

/* j's narinfo verified: it joins the result, its References the walk. */
static void
walk_trusted(struct walk *w, struct vjob *j)
{
	size_t idx = j->idx;

	w->v[idx].info = j->info;
	memset(&j->info, 0, sizeof(j->info));
	w->v[idx].signer = j->signer;
	w->v[idx].state = W_DONE;
	w->done++;
	/* walk_add may move w->v: index it afresh each time. */
	for (size_t i = 0; i < w->v[idx].info.references.n; i++)
		walk_add(w,
		    xasprintf(
		        NIX_STORE_DIR "/%s", w->v[idx].info.references.v[i]),
		    idx);
	if (w->opts->progress != NULL)
		w->opts->progress(w->opts->progress_arg, w->done, w->n);
}

/* Takes the verifier's results; returns how many. */
static size_t
walk_verified(struct walk *w)
{
	struct vjob *j = ver_take(&w->ver), *next;
	size_t n = 0;

	for (; j != NULL; j = next, n++) {
		next = j->next;
		j->next = NULL;
		w->ver.outstanding--;
		if (j->rc < 0) {
			walk_fail(w, SH_ERR_TRUST, "%s: %s: %s",
			    w->v[j->idx].path, j->url, j->err.msg);
		} else {
			walk_trusted(w, j);
		}
		vjob_free(j);
	}
	return n;
}

/* The current substituter will not serve path idx: try the next one. */
static void
walk_next_sub(struct walk *w, struct request *r)
{
	size_t idx = r->idx;

	walk_detach(w, r);
	w->v[idx].sub++;
	if (!walk_pick_sub(w, idx)) {
		walk_exhausted(w, idx);
		walk_release(w, r);
		return;
	}
	r->attempt = 1;
	walk_send(w, r, idx);
}

static void
walk_down(struct walk *w, struct request *r, const char *why)
{
	struct wpath *p = &w->v[r->idx];
	char *msg = r->attempt > 1
	                ? xasprintf("%s (%u attempts)", why, r->attempt)
	                : xstrdup(why);

	note(w, r->idx, r->url, msg);
	p->any_down = true;
	if (w->sub_down[p->sub] == NULL)
		w->sub_down[p->sub] = xasprintf("down since %s", msg);
	free(msg);
	walk_next_sub(w, r);
}

static void
walk_done(struct walk *w, struct request *r, CURLcode rc)
{
	long code = 0;
	char tmp[CURL_ERROR_SIZE + 64];
	const char *why;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	why = request_reason(r, rc, code, tmp, sizeof(tmp));
	if (rc == CURLE_OK && code == 200) {
		walk_accept(w, r);
		walk_release(w, r);
	} else if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		walk_fail(w, SH_ERR_TRUST, "%s: %s: %s", w->v[r->idx].path,
		    r->url, why);
		walk_release(w, r);
	} else if (code == 404 || code == 403) {
		note(w, r->idx, r->url, why);
		walk_next_sub(w, r);
	} else if (transient(rc, code) && r->attempt <= w->opts->retries) {
		walk_detach(w, r);
		r->ready_at = now_ms() + backoff_ms(r->attempt);
		r->attempt++;
		r->waiting = true;
	} else {
		walk_down(w, r, why);
	}
}

/* Handles finished transfers; returns how many. */
static size_t
walk_collect(struct walk *w)
{
	CURLMsg *m;
	size_t n = 0;
	int left;

	while (!w->failed && (m = curl_multi_info_read(w->multi, &left))) {
		struct request *r = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &r);
		walk_done(w, r, m->data.result);
		n++;
	}
	return n;
}

/* ======================================================= the loop */

static int
walk_poll_ms(const struct walk *w)
{
	uint64_t now = now_ms(), wait = POLL_MAX_MS;

	for (size_t i = 0; i < w->nreqs; i++) {
		const struct request *r = w->reqs[i];

		if (r->waiting)
			wait = r->ready_at <= now ? 0
			                          : (r->ready_at - now < wait
			                                    ? r->ready_at - now
			                                    : wait);
	}
	return (int)wait;
}

static bool
walk_interrupted(const struct walk *w)
{
	return w->opts->interrupted != NULL && *w->opts->interrupted != 0;
}

static void
walk_run(struct walk *w)
{
	int running = 0;

	while (!w->failed) {
		if (walk_interrupted(w)) {
			walk_fail(w, SH_ERR_INTERRUPTED,
			    "interrupted while resolving %s (%zu of %zu paths)",
			    w->v[0].path, w->done, w->n);
			break;
		}
		walk_start(w);
		if (w->failed || (w->busy == 0 && w->ver.outstanding == 0))
			break;
		if (curl_multi_perform(w->multi, &running) != CURLM_OK) {
			walk_fail(
			    w, SH_ERR_INTERNAL, "curl_multi_perform failed");
			break;
		}
		/* Finished transfers may have queued new paths: send them
		 * before waiting on the network (or on the verifier, which
		 * wakes the poll). */
		if (walk_collect(w) + walk_verified(w) == 0 && !w->failed)
			curl_multi_poll(
			    w->multi, NULL, 0, walk_poll_ms(w), NULL);
	}
}

/* ===================================================== the result */

static size_t
walk_find(const struct walk *w, const char *ref)
{
	char *path = xasprintf(NIX_STORE_DIR "/%s", ref);
	size_t slot = set_slot(w, path);

	free(path);
	return w->set[slot] - 1;
}

/*
 * The paths in breadth-first order from the root, following References as
 * written, so the result does not depend on which response came first.
 */
static size_t *
walk_order(const struct walk *w)
{
	size_t *order = xcalloc(w->n, sizeof(*order));
	bool *seen = xcalloc(w->n, sizeof(*seen));
	size_t head = 0, tail = 1;

	seen[0] = true;
	while (head < tail) {
		const struct narinfo *ni = &w->v[order[head++]].info;

		for (size_t i = 0; i < ni->references.n; i++) {
			size_t j = walk_find(w, ni->references.v[i]);

			if (!seen[j]) {
				seen[j] = true;
				order[tail++] = j;
			}
		}
	}
	free(seen);
	return order;
}

static int
walk_result(struct walk *w, struct closure *out, struct errbuf *err)
{
	size_t *order = walk_order(w);

	out->paths = xcalloc(w->n, sizeof(*out->paths));
	for (size_t k = 0; k < w->n; k++) {
		struct wpath *p = &w->v[order[k]];
		struct closure_path *cp = &out->paths[out->n++];

		cp->info = p->info;
		cp->substituter = w->opts->substituters[p->sub];
		cp->signer = p->signer;
		memset(&p->info, 0, sizeof(p->info));
		if (__builtin_add_overflow(
		        out->nar_size, cp->info.nar_size, &out->nar_size) ||
		    __builtin_add_overflow(
		        out->file_size, cp->info.file_size, &out->file_size)) {
			free(order);
			return err_set(err, SH_ERR_TRUST,
			    "%s: the closure's sizes overflow 64 bits",
			    out->root);
		}
	}
	free(order);
	return 0;
}

/* ================================================ setup, teardown */

static int
walk_init(struct walk *w, const struct nix_cache_opts *opts, struct errbuf *err)
{
	size_t ns = opts->nsubstituters;

	memset(w, 0, sizeof(*w));
	w->opts = opts;
	w->err = err;
	w->parallel = opts->parallel ? opts->parallel : DEFAULT_PARALLEL;
	w->timeout_s = opts->timeout_s ? opts->timeout_s : DEFAULT_TIMEOUT_S;
	w->bases = xcalloc(ns, sizeof(*w->bases));
	w->sub_active = xcalloc(ns, sizeof(*w->sub_active));
	w->sub_down = xcalloc(ns, sizeof(*w->sub_down));
	w->reqs = xcalloc(w->parallel, sizeof(*w->reqs));
	w->idle = xcalloc(w->parallel, sizeof(*w->idle));
	for (size_t i = 0; i < ns; i++)
		if ((w->bases[i] = base_url(opts->substituters[i], err)) ==
		    NULL)
			return -1;
	w->multi = curl_multi_init();
	if (w->multi == NULL ||
	    curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	        (long)(w->parallel < HOST_CONNECTIONS ? w->parallel
	                                              : HOST_CONNECTIONS)) ||
	    curl_multi_setopt(
	        w->multi, CURLMOPT_MAXCONNECTS, (long)(HOST_CONNECTIONS * ns)))
		return err_set(err, SH_ERR_INTERNAL, "curl_multi_init failed");
	if (ver_start(&w->ver, opts->keys, w->multi) < 0)
		return err_set(
		    err, SH_ERR_INTERNAL, "cannot start the verifier thread");
	return 0;
}

static void
walk_free(struct walk *w)
{
	size_t ns = w->opts->nsubstituters;

	ver_stop(&w->ver); /* before the multi handle it wakes goes away */
	for (size_t i = 0; i < w->nreqs; i++) {
		if (w->reqs[i]->in_multi)
			curl_multi_remove_handle(w->multi, w->reqs[i]->easy);
		request_free(w->reqs[i]);
	}
	if (w->multi != NULL)
		curl_multi_cleanup(w->multi);
	for (size_t i = 0; i < w->n; i++) {
		free(w->v[i].path);
		nix_narinfo_free(&w->v[i].info);
		buf_release(&w->v[i].notes);
	}
	for (size_t i = 0; i < ns; i++) {
		free(w->bases != NULL ? w->bases[i] : NULL);
		free(w->sub_down != NULL ? w->sub_down[i] : NULL);
	}
	free(w->v);
	free(w->set);
	free(w->bases);
	free(w->sub_active);
	free(w->sub_down);
	free(w->reqs);
	free(w->idle);
	memset(w, 0, sizeof(*w));
}

static int
check_args(
    const struct nix_cache_opts *opts, const char *root, struct errbuf *err)
{
	const char *hash;

	if (opts->nsubstituters == 0)
		return err_set(err, SH_ERR_USAGE, "no substituter given");
	if (opts->keys == NULL || opts->keys->n == 0)
		return err_set(err, SH_ERR_USAGE,
		    "no trusted key given: nothing could be verified");
	if (nix_store_path_check(root, &hash, err) < 0) {
		err->code = SH_ERR_USAGE;
		return err_prefix(err, "closure root: ");
	}
	if (sodium_init() < 0)
		return err_set(err, SH_ERR_INTERNAL, "sodium_init failed");
	return 0;
}

int
nix_closure_resolve(const struct nix_cache_opts *opts, const char *root,
    struct closure *out, struct errbuf *err)
{
	struct walk w;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (check_args(opts, root, err) < 0)
		return -1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return err_set(err, SH_ERR_INTERNAL, "curl_global_init failed");
	if (walk_init(&w, opts, err) == 0) {
		out->root = xstrdup(root);
		walk_add(&w, xstrdup(root), 0);
		walk_run(&w);
		if (!w.failed && walk_result(&w, out, err) == 0)
			rc = 0;
	}
	walk_free(&w);
	curl_global_cleanup();
	if (rc < 0)
		nix_closure_free(out);
	return rc;
}

void
nix_closure_free(struct closure *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		nix_narinfo_free(&c->paths[i].info);
	free(c->paths);
	free(c->root);
	memset(c, 0, sizeof(*c));
}

/* ================================================ nix-cache-info */

/*
 * "Key: value" lines; the last newline may be missing (nix copy writes
 * none). Only StoreDir matters; other keys (WantMassQuery, Priority) are
 * accepted as Nix does.
 */
static int
cache_info_parse(const char *p, size_t len, struct errbuf *err)
{
	static const char want[] = "StoreDir: " NIX_STORE_DIR;
	bool store_dir = false;
	size_t pos = 0;

	if (mem_has_nul(p, len))
		return err_set(
		    err, SH_ERR_STEP, "nix-cache-info has a NUL byte");
	while (pos < len) {
		const char *nl = memchr(p + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - p) - pos : len - pos;

		if (n >= 10 && memcmp(p + pos, "StoreDir: ", 10) == 0) {
			if (n != sizeof(want) - 1 ||
			    memcmp(p + pos, want, n) != 0)
				return err_set(err, SH_ERR_STEP,
				    "nix-cache-info: %.*s is "
				    "not " NIX_STORE_DIR,
				    (int)(n > 200 ? 200 : n), p + pos);
			store_dir = true;
		}
		pos += n + 1;
	}
	if (!store_dir)
		return err_set(
		    err, SH_ERR_STEP, "nix-cache-info has no StoreDir");
	return 0;
}

static void
sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000),
		(long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* One GET with retries; 0 with the body in r->body, or -1. */
static int
fetch_one(
    const struct nix_cache_opts *opts, struct request *r, struct errbuf *err)
{
	for (unsigned attempt = 1;; attempt++) {
		long code = 0;
		char tmp[CURL_ERROR_SIZE + 64];
		CURLcode rc;

		buf_reset(&r->body);
		r->too_big = false;
		rc = curl_easy_perform(r->easy);
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
		if (rc == CURLE_OK && code == 200)
			return 0;
		if (!transient(rc, code) || attempt > opts->retries ||
		    (opts->interrupted && *opts->interrupted)) {
			const char *why =
			    request_reason(r, rc, code, tmp, sizeof(tmp));

			return err_set(err,
			    code == 404 || code == 403 ? SH_ERR_STEP
			                               : SH_ERR_UNREACHABLE,
			    "%s: %s%s", r->url, why,
			    code == 404 ? " (not a binary cache?)" : "");
		}
		sleep_ms(backoff_ms(attempt));
	}
}

int
nix_cache_info(
    const struct nix_cache_opts *opts, const char *url, struct errbuf *err)
{
	struct request *r = NULL;
	char *base = base_url(url, err), *full;
	int rc = -1;

	if (base == NULL)
		return -1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(base);
		return err_set(err, SH_ERR_INTERNAL, "curl_global_init failed");
	}
	full = xasprintf("%s/nix-cache-info", base);
	r = request_new(opts->timeout_s ? opts->timeout_s : DEFAULT_TIMEOUT_S);
	if (r == NULL) {
		err_set(err, SH_ERR_INTERNAL, "curl_easy_init failed");
		goto out;
	}
	request_reset(r, full);
	if (fetch_one(opts, r, err) < 0)
		goto out;
	if (cache_info_parse(r->body.data, r->body.len, err) < 0) {
		err_prefix(err, "%s: ", full);
		goto out;
	}
	rc = 0;
out:
	request_free(r);
	free(full);
	free(base);
	curl_global_cleanup();
	return rc;
}

int
nix_closure_reginfo(const struct closure *c, const bool *only, struct buf *b)
{
	unsigned char d[32];
	int rc = 0;

	for (size_t i = 0; i < c->n; i++) {
		const struct narinfo *ni = &c->paths[i].info;

		if (only != NULL && !only[i])
			continue;
		if (nix_hash_sha256_parse(ni->nar_hash, d) < 0)
			return -1;
		rc |= buf_addf(b, "%s\n", ni->store_path);
		rc |= nix_hash_sha256_string(d, b);
		rc |= buf_addf(b, "\n%llu\n", (unsigned long long)ni->nar_size);
		if (ni->deriver != NULL)
			rc |= buf_addf(b, "%s/%s", NIX_STORE_DIR, ni->deriver);
		rc |= buf_addf(b, "\n%zu\n", ni->references.n);
		for (size_t r = 0; r < ni->references.n; r++)
			rc |= buf_addf(
			    b, "%s/%s\n", NIX_STORE_DIR, ni->references.v[r]);
	}
	return rc < 0 || buf_failed(b) ? -1 : 0;
}
