/*
 * util.h: the few primitives every module shares.
 *
 *  - struct errbuf: how errors travel. Functions return 0 or -1 and, on -1,
 *    fill the caller's errbuf with a code and one line of context. Only
 *    main.c prints it. err_set() overwrites; err_prefix() adds outer context
 *    ("step 'x': " + inner message) while keeping the inner code.
 *  - struct buf: a growable byte buffer with a hard maximum. data is never
 *    NULL after buf_init() and is always NUL-terminated, so it can be used as
 *    a C string when the content has no NUL. Appends beyond max fail with -1
 *    and leave the content unchanged. Errors are sticky: a failed buffer
 *    stays failed until buf_reset/buf_release (or buf_detach), and refuses
 *    every later append (-1, nothing added), so a sequence of appends can be
 *    checked once, with buf_failed(), at the point of use and never leaves
 *    a hole in the middle. Whatever sends a buffer's text to the target
 *    refuses a failed buffer. buf_release() zeroes the memory before
 *    freeing it, so buffers may hold secrets.
 *  - x* allocators exit(70) on out-of-memory or size overflow: a CLI cannot
 *    usefully recover from OOM.
 *  - parse_u64(): the one bounded number parser (no strtol/atoi anywhere).
 *  - sh_quote(): single-quote a string for a POSIX shell.
 */
#ifndef STAGEHAND_UTIL_H
#define STAGEHAND_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTR_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* The one error space. Keep sh_strerror() and sh_exit_code() in step. */
enum sh_err {
	SH_OK = 0,
	SH_ERR_USAGE,       /* bad command line; exit 2 */
	SH_ERR_MANIFEST,    /* invalid manifest; exit 65 */
	SH_ERR_UNREACHABLE, /* cannot reach/connect to the target; exit 69 */
	SH_ERR_TRUST,       /* host key, auth or signature refused; exit 77 */
	SH_ERR_SSH,         /* transport failed mid-run (may reconnect) */
	SH_ERR_REMOTE,      /* a remote command failed */
	SH_ERR_TIMEOUT,     /* a step or remote command ran out of time */
	SH_ERR_INTERRUPTED, /* SIGINT/SIGTERM */
	SH_ERR_IO,          /* local file system */
	SH_ERR_STEP,        /* a step failed for its own reasons */
	SH_ERR_LOCKED,      /* another run holds the target's lock; exit 75 */
	SH_ERR_INTERNAL,
};

struct errbuf {
	enum sh_err code;
	char msg[1024];
};

/* Conventional exit codes, documented in docs/stagehand.1. */
enum {
	EXIT_OK = 0,
	EXIT_STEP_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_INVALID_MANIFEST = 65,
	EXIT_UNREACHABLE = 69,
	EXIT_SOFTWARE = 70,
	EXIT_LOCKED = 75, /* EX_TEMPFAIL: try again later (--wait-lock) */
	EXIT_TRUST = 77,
	EXIT_EXEC_FAILED = 127, /* a forked child could not exec (sh's 127) */
	EXIT_INTERRUPTED = 130, /* SIGINT/SIGTERM: 128 + SIGINT, as sh does */
};

const char *sh_strerror(enum sh_err code);
int sh_exit_code(enum sh_err code);

/* Returns -1 so callers can write `return err_set(err, ...);`. */
int err_set(struct errbuf *err, enum sh_err code, const char *fmt, ...)
    ATTR_PRINTF(3, 4);
/* Prepends "prefix" to err->msg; keeps err->code. Returns -1. */
int err_prefix(struct errbuf *err, const char *fmt, ...) ATTR_PRINTF(2, 3);
void err_clear(struct errbuf *err);

/* ---- allocation ---- */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) ATTR_PRINTF(1, 2);

/* ---- struct buf ---- */
struct buf {
	char *data; /* owned; never NULL after buf_init; NUL-terminated */
	size_t len;
	size_t cap;
	size_t max;  /* hard cap on len */
	bool failed; /* an append failed; cleared by buf_reset/buf_init */
	bool cut;    /* a tail: bytes before data[0] were dropped (the
	                transport's stderr tail sets it; buf_reset clears) */
};

void buf_init(struct buf *b, size_t max);
int buf_add(struct buf *b, const void *p, size_t len);
int buf_adds(struct buf *b, const char *s);
int buf_addc(struct buf *b, char c);
int buf_addf(struct buf *b, const char *fmt, ...) ATTR_PRINTF(2, 3);
int buf_vaddf(struct buf *b, const char *fmt, va_list ap) ATTR_PRINTF(2, 0);
/* True once an append has failed (sticky until buf_reset/buf_release). */
bool buf_failed(const struct buf *b);
/* Marks b failed, for text built in another buffer that failed. Returns -1. */
int buf_fail(struct buf *b);
/* Empties b and clears its failure. */
void buf_reset(struct buf *b);
/* Hands data to the caller (free with free()); b is re-initialised empty. */
char *buf_detach(struct buf *b, size_t *len);
/* Zeroes and frees. b may be re-initialised with buf_init afterwards. */
void buf_release(struct buf *b);

/* ---- strings ---- */
struct strlist {
	char **v; /* owned, each owned */
	size_t n;
};
void strlist_push(struct strlist *l, const char *s);
void strlist_push_owned(struct strlist *l, char *s);
bool strlist_has(const struct strlist *l, const char *s);
void strlist_free(struct strlist *l);

/*
 * Parses a decimal unsigned number of exactly len bytes (no sign, no
 * spaces, no leading '+') that is <= max. Returns 0 or -1.
 */
int parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out);
/* Same, for octal file modes like "0755" or "755"; max 07777. */
int parse_mode(const char *p, size_t len, unsigned *out);

/* Appends s single-quoted for sh: abc'd -> 'abc'\''d'. */
int sh_quote(struct buf *b, const char *s);
/* Appends a byte count for people: "512 B", "1.5 KiB", "2.0 GiB". */
int buf_add_size(struct buf *b, uint64_t n);

bool str_has_prefix(const char *s, const char *prefix);
bool mem_has_nul(const void *p, size_t len);
/*
 * The one UTF-8 decoder: decodes one character from p[0..len) (len > 0).
 * Returns the bytes used (1..4) and sets *cp, or 0 when p does not start a
 * well-formed sequence (overlong, surrogate, beyond U+10FFFF, truncated).
 */
size_t utf8_decode(const unsigned char *p, size_t len, uint32_t *cp);
/* Checks well-formed UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const unsigned char *p, size_t len);

/* Monotonic clock in milliseconds. */
uint64_t now_ms(void);
/* Wall clock as RFC 3339 UTC "2026-11-22T16:54:32Z" into b. */
int time_rfc3339(struct buf *b, int64_t unix_seconds);

/*
 * Reads a whole regular file of at most max bytes into *out (caller
 * releases). Refuses symlinks to devices, directories and larger files.
 */
int file_read(
    const char *path, size_t max, struct buf *out, struct errbuf *err);
/*
 * Writes data to path atomically: a temp file in the same directory,
 * fsync, then rename. mode is applied to the new file.
 */
int file_write_atomic(const char *path, const void *data, size_t len,
    unsigned mode, struct errbuf *err);
/* mkdir -p with mode for the created components. */
int mkdir_p(const char *path, unsigned mode, struct errbuf *err);

#endif
