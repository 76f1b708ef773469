/*
 * nixcache.h: resolve and verify a Nix closure from binary caches, on the
 * controller, before anything reaches the target.
 *
 * nix_closure_resolve() fetches <hash>.narinfo for the root and, walking
 * References breadth-first, for every path of the closure. Fetches run
 * many at a time over keep-alive connections (curl multi, at most
 * opts->parallel in flight). For each path the substituters are tried in
 * order: a 404 (or 403) moves on to the next cache; timeouts, connection
 * failures, 429 and 5xx are retried with backoff (opts->retries times) and
 * then the cache counts as down for that path and is skipped for the paths
 * after it. Substituters must be http:// or https:// (SH_ERR_USAGE
 * otherwise); redirects go to http(s) only; a narinfo over
 * NARINFO_MAX_BYTES is refused (SH_ERR_TRUST). A narinfo is accepted only
 * when it parses, its StorePath is exactly the path asked for, and
 * nix_narinfo_verify() accepts it under opts->keys (on a worker thread
 * that lives only during the call); only then are its References walked.
 * Any other outcome fails the whole resolution, naming the path, the URL
 * and the reason:
 *   SH_ERR_TRUST        unsigned, unknown key, bad signature, StorePath
 *                       mismatch, malformed narinfo (exit 77)
 *   SH_ERR_UNREACHABLE  every cache down for a path (names each URL)
 *   SH_ERR_STEP         the path is in no cache (404 everywhere)
 *   SH_ERR_INTERRUPTED  *opts->interrupted became non-zero
 * On success every path of the closure is in out->paths (root first, then
 * breadth-first following References as written, whatever order the
 * responses came in), with the substituter that served it and the key
 * that signed it, and the NarSize/FileSize totals.
 *
 * nix_closure_reginfo() appends to out the registration of the closure's
 * paths (all of them, or those with only[i] true), in closure order, in
 * the format nix-store --load-db reads (the installers' .reginfo): per
 * path its store path, NarHash as sha256:<nix32>, NarSize, deriver (an
 * empty line when none), the number of references and the references,
 * one a line. -1 when a NarHash does not parse or out fills.
 *
 * nix_cache_info() fetches <url>/nix-cache-info (StoreDir must be
 * /nix/store).
 *
 * Ownership: out is filled by the call and released with
 * nix_closure_free(); substituter and signer point into opts' strings and
 * keys, which must outlive out.
 */
#ifndef STAGEHAND_NIXCACHE_H
#define STAGEHAND_NIXCACHE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "nix/narinfo.h"
#include "util/util.h"

struct nix_cache_opts {
	const char *const *substituters; /* base URLs, in order */
	size_t nsubstituters;
	const struct nix_keys *keys;
	unsigned timeout_s; /* per request; 0: 30 */
	unsigned retries;   /* per URL on timeout/5xx; 0: none */
	unsigned parallel;  /* requests in flight; 0: 32 */
	volatile sig_atomic_t *interrupted; /* may be NULL */
	/* Progress, may be NULL: paths resolved so far, paths known. */
	void (*progress)(void *arg, size_t done, size_t known);
	void *progress_arg;
};

struct closure_path {
	struct narinfo info;     /* owned */
	const char *substituter; /* borrowed from opts */
	const char *signer;      /* borrowed from opts->keys */
};

struct closure {
	char *root;                 /* owned */
	struct closure_path *paths; /* owned */
	size_t n;
	uint64_t nar_size;  /* sum of NarSize */
	uint64_t file_size; /* sum of FileSize */
};

int nix_closure_resolve(const struct nix_cache_opts *opts, const char *root,
    struct closure *out, struct errbuf *err);
void nix_closure_free(struct closure *c);
int nix_closure_reginfo(
    const struct closure *c, const bool *only, struct buf *out);

int nix_cache_info(
    const struct nix_cache_opts *opts, const char *url, struct errbuf *err);

#endif
