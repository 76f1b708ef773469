/*
 * narstream.h: a NAR fetched from a binary cache, decompressed and checked
 * against its verified narinfo while it streams, never held whole.
 *
 * nar_comp_parse() maps a narinfo's Compression ("xz", "zstd", "bzip2",
 * "none"; NULL or "" counts as "bzip2", Nix's default) to a decoder; any
 * other value is SH_ERR_TRUST naming it.
 *
 * struct nar_check takes the compressed bytes in pieces (nar_check_feed),
 * decodes them and hands the NAR bytes on to sink as they come, after
 * adding them to a SHA-256 and to a count. More NAR bytes than NarSize stop
 * the stream at once (before the sink sees them). nar_check_end() then
 * requires the compressed stream to have ended cleanly (a truncated or
 * corrupt stream, or bytes after its end, are errors), the count to equal
 * NarSize and the digest to equal NarHash. The sink therefore sees bytes
 * that are not yet proven: whatever it does with them must stay invisible
 * until nar_check_end() returned 0. Errors are SH_ERR_TRUST and name the
 * store path and the cache URL; a hash mismatch names both hashes (as
 * sha256:<nix32>). A sink's own error passes through unchanged.
 * Memory: one 64 KiB output buffer plus the decoder's state (xz and zstd
 * windows are capped at 128 MiB, Nix's presets use 8 MiB or less).
 *
 * nar_fetch() GETs <cache>/<ni->url> (http or https only, redirects
 * followed within those) and feeds every body chunk through a nar_check,
 * then ends it. HTTP failures are SH_ERR_UNREACHABLE (connection, timeout,
 * 5xx, or timeout_s without a byte from the cache; time the sink takes
 * does not count) or SH_ERR_STEP (404 and other 4xx), naming the URL and
 * the path. Interruption
 * (*interrupted non-zero) is SH_ERR_INTERRUPTED. One transfer at a time,
 * on the calling thread.
 *
 * nar_fetch_ordered() fetches and checks the NARs of n jobs, several at
 * once (curl multi on a thread of its own, at most o->parallel transfers),
 * and hands them to the caller's ops in job order, on the calling thread:
 * begin(i), the NAR bytes (bytes, any number of calls), then end(i) only
 * once job i passed nar_check_end(); idle() before it blocks waiting for
 * bytes (a caller that buffers its output flushes there). Each transfer
 * streams its checked bytes into a ring in memory of its own (NAR_RING
 * bytes, or the NarSize when smaller), and what overflows it into an
 * unlinked temporary file under $TMPDIR (or /tmp), made only then; the
 * caller takes the head job's bytes while they arrive. The head job waits
 * for the caller rather than spill (its transfer, and the others with it,
 * pause while its ring is full), so small NARs and the head job never
 * touch the disk; the others wait in their rings, then on disk. A job
 * starts only when it is the head job, or it is fewer than NAR_AHEAD_JOBS
 * jobs ahead of it and the NarSizes of the jobs after the head job up to it
 * add up to NAR_AHEAD_BYTES at most (nar_order_may_start(), pure): that
 * bounds the disk used to NAR_AHEAD_BYTES and the rings to NAR_AHEAD_JOBS
 * times NAR_RING; a NAR larger than NAR_AHEAD_BYTES starts only as the
 * head job. The first failure of any job stops everything: the caller's
 * ops are not called again (a job's bytes may have been handed on, its
 * end never), the error is the job's as nar_fetch() words it. An op's
 * error stops it too and passes through. Memory: per transfer one
 * nar_check (64 KiB plus the decoder's window), the rings, plus one 64 KiB
 * read buffer.
 *
 * Ownership: nar_check_new() allocates, nar_check_free() releases (NULL is
 * fine); it borrows every string and the sink argument for its lifetime.
 */
#ifndef STAGEHAND_NARSTREAM_H
#define STAGEHAND_NARSTREAM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nix/narinfo.h"
#include "util/util.h"

#define NAR_WINDOW_MAX (128u << 20)

enum nar_comp {
	NAR_COMP_NONE,
	NAR_COMP_XZ,
	NAR_COMP_ZSTD,
	NAR_COMP_BZIP2,
};

/* Receives NAR bytes; returns 0, or -1 with err set. */
typedef int (*nar_sink_fn)(
    void *arg, const void *p, size_t len, struct errbuf *err);

struct nar_check;

#define NAR_PARALLEL_DEFAULT 4
#define NAR_AHEAD_JOBS 16
#define NAR_AHEAD_BYTES (32u << 20)
#define NAR_RING (1u << 20)

struct nar_fetch_opts {
	unsigned timeout_s; /* connect, and a stall of the cache; 0: 30 */
	volatile sig_atomic_t *interrupted; /* may be NULL */
	unsigned parallel; /* nar_fetch_ordered: in flight; 0: default */
};

/* One NAR to fetch; both borrowed. */
struct nar_job {
	const struct narinfo *ni;
	const char *cache;
};

/* The caller's side of nar_fetch_ordered(); each may be NULL. */
struct nar_order_ops {
	int (*begin)(void *arg, size_t i, struct errbuf *err);
	nar_sink_fn bytes;
	int (*end)(void *arg, size_t i, struct errbuf *err);
	/* About to wait for bytes not there yet: time to flush. */
	int (*idle)(void *arg, struct errbuf *err);
};

int nar_comp_parse(const char *name, enum nar_comp *out, struct errbuf *err);

struct nar_check *nar_check_new(const struct narinfo *ni, const char *cache,
    nar_sink_fn sink, void *arg, struct errbuf *err);
int nar_check_feed(
    struct nar_check *c, const void *p, size_t len, struct errbuf *err);
int nar_check_end(struct nar_check *c, struct errbuf *err);
void nar_check_free(struct nar_check *c);

int nar_fetch(const struct narinfo *ni, const char *cache,
    const struct nar_fetch_opts *o, nar_sink_fn sink, void *arg,
    struct errbuf *err);

int nar_fetch_ordered(const struct nar_job *jobs, size_t n,
    const struct nar_fetch_opts *o, const struct nar_order_ops *ops, void *arg,
    struct errbuf *err);
bool nar_order_may_start(const struct nar_job *jobs, size_t next,
    size_t emitted, size_t inflight, unsigned parallel);

#endif
