/*
 * steps/closure.c: the `closure` step kind: copy a Nix closure from signed
 * binary caches onto the target and install it into a profile, trusting
 * nothing that the pinned keys did not sign.
 *
 * Manifest fields:
 *   path            a store path, or a map {x86_64-linux: PATH,
 *                   aarch64-linux: PATH, ...} chosen by the target's system
 *                   (ctx->facts.system, from `uname -m` at connect)
 *   substituters    required, 1+ cache URLs (http or https), in order
 *   trusted_keys    required, 1+ "name:base64" keys (checked offline)
 *   profile         optional absolute path of the profile to install into
 *   user            optional OS user who owns the profile links
 *   free_space_margin  optional: "10%" (default), bytes ("1048576"), or
 *                   bytes with a K/M/G/T suffix (powers of 1024)
 *   cache_timeout   optional seconds per cache request (default 30)
 *   cache_retries   optional retries per URL on timeouts/5xx (default 2)
 *   mode            optional: pull (default: the target's Nix fetches) or
 *                   push (the controller fetches, checks and sends; see
 *                   "Push" below)
 *   nix             optional: auto (default), present or absent: whether
 *                   the target has Nix; auto detects it (nix-store and
 *                   nix-env on the become user's PATH). absent needs push
 *
 * The trust rule: nothing runs on the target before the closure is verified
 * on the controller. apply, in order:
 *   1. pick the root by ctx->facts.system (an error names the system when
 *      the map has no entry for it);
 *   2. nix_closure_resolve() on the controller with exactly the step's
 *      substituters and keys; its error code passes through (SH_ERR_TRUST
 *      is fatal to the run: exit 77);
 *   3. one round trip (query): which closure paths the target lacks
 *      (nix-store --check-validity --print-invalid, fed from stdin; when
 *      the target has no store database yet every path is missing and
 *      nix-store is not run), the free space under /nix (df of /nix or of
 *      its nearest existing parent) and the profile's state. Fails, before
 *      anything is copied, when nix is not installed or when the free space
 *      is below the missing paths' NarSize plus the margin (naming both);
 *   4. one round trip (copy): nix-store --realise ROOT --add-root
 *      /nix/var/nix/gcroots/stagehand/<basename of ROOT> (so a garbage
 *      collection cannot take the closure before the profile holds it;
 *      with a profile, step 6 removes that link again) with only the
 *      manifest's substituters and trusted keys, require-sigs on and no
 *      negative narinfo caching (an earlier "not found" does not stick),
 *      so Nix on the target verifies every path again (positive entries of
 *      its narinfo disk cache are kept: they carry the Sig lines, which
 *      Nix checks again, and refetching them triples the time for 1,000
 *      paths); the same script then prints the NarHash the target's store
 *      registered for every closure path. When the realise fails and Nix
 *      could not download from a substituter at all (its "unable to
 *      download 'URL/...'" lines, 4xx aside), the error is
 *      SH_ERR_UNREACHABLE (exit 69) naming each such cache;
 *   5. attest on the controller: each of those NarHashes must equal the
 *      verified narinfo's (both as sha256:<nix32>), else SH_ERR_TRUST naming
 *      the path. Attesting comes before the profile switch on purpose, so a
 *      profile never points at an unattested closure;
 *   6. one round trip (profile), only when something is to change:
 *      nix-env -p PROFILE --set ROOT (one new generation, an atomic switch)
 *      when the profile does not point at ROOT yet, then chown -h of the
 *      profile links to `user`;
 *   7. res->closure and the change lines ("copy 37 paths (123.4 MiB) from
 *      URL", "profile P: generation 3 -> 4 (ROOT)"). res->closure is also
 *      filled when a later part fails, once the closure was resolved.
 * A second run copies nothing and creates no generation: ok.
 * probe (plan) does 1-3 and reports what would move; it runs nix-store only
 * when the target already has a store database, which it then only reads
 * (SQLite creates and removes its WAL files there, so the mtime of
 * /nix/var/nix/db moves; nothing else changes).
 * Timings of the parts go into res->details (resolve_ms, query_ms,
 * copy_attest_ms) next to closure_root, closure_paths, paths_missing and
 * bytes_missing.
 *
 * Profiles. `profile` may be the profile link itself (P -> P-N-link ->
 * /nix/store/...; created by nix-env when missing, e.g.
 * /var/lib/postgresql/.nix-profile) or a link to a profile elsewhere, as a
 * user's ~/.nix-profile -> /nix/var/nix/profiles/per-user/USER/profile
 * usually is: when P's target is not a generation link of P, that target
 * is the profile nix-env gets (its directory is created when missing and
 * then owned by `user`). Anything else at P (a file, a directory) fails.
 * Without `profile` the root is kept alive by the GC root link of step 4
 * (made by a later run when the paths were already there).
 *
 * Users. The target's store is taken to be owned by root (single-user, as
 * Debian's nix-bin and the test box have it; with a daemon, root still
 * opens the store directly). So everything runs as the step's `become`
 * (root by default): the realise, and nix-env, which creates the
 * generation; `user` then gets the profile link, the current generation
 * link and (when they differ) the link at `profile` by chown -h. That is
 * what `sudo -u postgres nix profile install` leaves behind, minus a
 * per-user store connection the postgres user would not need.
 *
 * Progress: Nix on the target copies in one command (parallel
 * substitutions: -j CLOSURE_JOBS) and prints "copying path '<path>' from
 * '<url>'..." on stderr as it starts each path; the copy follows those
 * lines as they arrive and, on a terminal, redraws ui_progress() with the
 * paths started and their NarSize out of the missing ones (a path counts
 * once, paths the target had do not count). The step's end line replaces
 * it.
 * Push (mode: push) replaces step 4 by closure_push(): a feeder thread
 * fetches the missing paths' NARs with nar_fetch_ordered() (several at
 * once, handed on in closure order), which checks NarSize and NarHash
 * while the bytes stream, and writes them
 * into a pipe that is the payload of one remote script, so the whole
 * closure goes over one channel. The script restores each NAR into a
 * temporary directory under /nix/store and keeps it only when the feeder
 * follows it with "V ok"; once the stream ended complete it renames the
 * paths into place, registers them (nix-store --load-db, with the
 * verified NarHash, NarSize, references and deriver), sets the GC root
 * and prints the NarHashes for the same attestation as pull. A NAR that
 * fails its check closes the stream: nothing is renamed, the temporary
 * directory goes, and the feeder's error (SH_ERR_TRUST) is the step's.
 *
 * Without Nix (nix: absent, or auto and the query's "X 0"): the scripts
 * skip everything that needs nix-store; the query counts a path as
 * present when it exists and has its record under CLOSURE_REC_DIR. The
 * feeder converts each NAR to tar (nix/nartar.h) and the target unpacks
 * it with its system tar (closure_sh_push_tar); the registration becomes
 * one record per path, written after the rename (the commit point), and
 * the attestation reads the records. The profile switch makes the same
 * generation links nix-env does (gen_set in closure_sh_profile). Pull
 * mode, or nix: present, on a target without Nix fails in the query,
 * naming the cause.
 * STEP_RETRY_SAFE: every round trip can run again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nix/narinfo.h"
#include "nix/narstream.h"
#include "nix/nartar.h"
#include "nix/nixcache.h"
#include "report/ui.h"
#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"

#define CLOSURE_MARGIN_PCT_DEFAULT 10
#define CLOSURE_CACHE_TIMEOUT_S 30
#define CLOSURE_CACHE_RETRIES 2
#define CLOSURE_JOBS 64
#define CLOSURE_PUSH_JOBS 4 /* NAR transfers in flight, each with a window */
/* Push: NARs this large are unpacked as they arrive; smaller ones wait in
 * files and are unpacked together, up to this many bytes at once. */
#define CLOSURE_PUSH_BIG (1u << 20)
#define CLOSURE_PUSH_BATCH (64u << 20)
#define CLOSURE_PUSH_CHUNK (256u << 10) /* bytes per write into the stream */
#define CLOSURE_GCROOT_DIR "/nix/var/nix/gcroots/stagehand"
#define CLOSURE_REC_DIR "/nix/var/stagehand/paths"
#define CLOSURE_TAR_CHUNK (256u << 10) /* a "D" record's most */
#define CLOSURE_TAR_RECORD 10240       /* tar's own record: 20 blocks */
#define CLOSURE_URL_MAX 2048
#define CLOSURE_PROG_LINE_MAX 1024 /* kept of a stderr line: the path fits */

struct closure_arch {
	const char *system; /* borrowed from the manifest tree */
	const char *path;   /* borrowed */
};

struct closure_cfg {
	const char *path;          /* borrowed; NULL when per-system */
	struct closure_arch *arch; /* owned array */
	size_t narch;
	struct strlist subs;      /* substituter URLs */
	struct strlist key_specs; /* "name:base64", as written */
	struct nix_keys keys;     /* owned, parsed key_specs */
	const char *profile;      /* borrowed; may be NULL */
	const char *user;         /* borrowed; may be NULL */
	uint64_t margin;          /* bytes, or percent when margin_pct */
	bool margin_pct;
	unsigned cache_timeout_s;
	unsigned cache_retries;
	bool push;       /* mode: push */
	const char *nix; /* "auto", "present" or "absent" (nix:) */
};

/* What one probe/apply learned; released by cst_free(). */
struct cst {
	const struct closure_cfg *c;
	const char *root;   /* borrowed from the cfg */
	const char *system; /* borrowed from ctx->facts */
	struct closure cl;  /* owned: the verified closure */
	bool *missing;      /* owned: per cl.paths, the target lacks it */
	size_t nmissing;
	uint64_t bytes_missing;
	uint64_t free_bytes;
	char *df_dir;    /* owned */
	char *pr;        /* owned: the profile link nix-env -p gets */
	long gen;        /* current generation; -1 none */
	long gen_after;  /* after the switch; -1 unchanged */
	char *current;   /* owned: store path the profile points at */
	bool owner_ok;   /* profile links owned by user (or no user) */
	bool gcroot_ok;  /* no profile: the GC root link is in place */
	bool nonix;      /* the target has no Nix: tar and records */
	struct buf list; /* the closure's paths, one per line (payload) */
};

/* The copy's progress, fed by Nix's stderr (see the top of the file). */
struct closure_prog {
	struct run_ctx *ctx;
	const struct cst *st;
	bool *seen;      /* owned: per cl.paths, counted already */
	size_t done;     /* missing paths started */
	uint64_t bytes;  /* their NarSize */
	struct buf line; /* the current line's start, up to the newline */
};

static const char *const closure_keys[] = {
	"path",
	"substituters",
	"trusted_keys",
	"profile",
	"user",
	"free_space_margin",
	"cache_timeout",
	"cache_retries",
	"mode",
	"nix",
	NULL,
};

/* ============================================================== parse */

static void
closure_release(void *cfg)
{
	struct closure_cfg *c = cfg;

	free(c->arch);
	strlist_free(&c->subs);
	strlist_free(&c->key_specs);
	nix_keys_free(&c->keys);
}

static int
closure_store_path(const struct node *n, struct errbuf *err)
{
	struct errbuf e;
	const char *hash;

	if (node_expect(n, NODE_SCALAR, "a store path", err) < 0)
		return -1;
	if (strlen(n->str) != n->len ||
	    nix_store_path_check(n->str, &hash, &e) < 0)
		return node_err(err, n, "path: not a store path: '%s'", n->str);
	return 0;
}

/* "x86_64-linux": [a-z0-9_]+ "-" [a-z]+ */
static bool
closure_system_ok(const char *s)
{
	size_t a = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");

	if (a == 0 || s[a] != '-' || s[a + 1] == '\0')
		return false;
	return s[a + 1 + strspn(s + a + 1, "abcdefghijklmnopqrstuvwxyz")] ==
	       '\0';
}

static int
closure_parse_path(
    const struct node *body, struct closure_cfg *c, struct errbuf *err)
{
	const struct node *v = node_get(body, "path");

	if (v == NULL)
		return node_err(err, body, "closure step needs a path");
	if (v->type == NODE_SCALAR) {
		c->path = v->str;
		return closure_store_path(v, err);
	}
	if (v->type != NODE_MAP || v->n == 0)
		return node_err(err, v,
		    "path: expected a store path or a map "
		    "of system to store path");
	c->arch = xcalloc(v->n, sizeof(*c->arch));
	for (size_t i = 0; i < v->n; i++) {
		if (!closure_system_ok(v->keys[i]->str))
			return node_err(err, v->keys[i],
			    "path: '%s' is not a system like x86_64-linux",
			    v->keys[i]->str);
		if (closure_store_path(v->items[i], err) < 0)
			return -1;
		c->arch[i].system = v->keys[i]->str;
		c->arch[i].path = v->items[i]->str;
		c->narch = i + 1;
	}
	return 0;
}

static bool
closure_url_ok(const char *u)
{
	size_t n = strlen(u);

	if (!str_has_prefix(u, "http://") && !str_has_prefix(u, "https://"))
		return false;
	if (n > CLOSURE_URL_MAX || u[n - 1] == '/')
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] <= ' ' || u[i] == '\'' || u[i] == '"' ||
		    u[i] == '\\' || u[i] == 0x7f)
			return false;
	return true;
}

static int
closure_item(struct closure_cfg *c, const char *key, const struct node *n,
    struct errbuf *err)
{
	struct errbuf e;

	if (node_expect(n, NODE_SCALAR, key, err) < 0)
		return -1;
	if (strcmp(key, "substituters") == 0) {
		if (!closure_url_ok(n->str))
			return node_err(err, n,
			    "substituters: '%s' is not an "
			    "http:// or https:// URL without spaces, quotes or "
			    "a trailing slash",
			    n->str);
		strlist_push(&c->subs, n->str);
		return 0;
	}
	if (strchr(n->str, ' ') != NULL ||
	    nix_keys_add(&c->keys, n->str, &e) < 0)
		return node_err(err, n, "trusted_keys: %s",
		    strchr(n->str, ' ') ? "a key must not contain spaces"
		                        : e.msg);
	strlist_push(&c->key_specs, n->str);
	return 0;
}

/* A required scalar or non-empty sequence of scalars. */
static int
closure_parse_list(const struct node *body, const char *key,
    struct closure_cfg *c, struct errbuf *err)
{
	const struct node *v = node_get(body, key);

	if (v == NULL)
		return node_err(err, body, "closure step needs %s", key);
	if (v->type == NODE_SCALAR)
		return closure_item(c, key, v, err);
	if (v->type != NODE_SEQ || v->n == 0)
		return node_err(err, v, "%s: expected a non-empty list", key);
	for (size_t i = 0; i < v->n; i++)
		if (closure_item(c, key, v->items[i], err) < 0)
			return -1;
	return 0;
}

static int
closure_parse_margin(
    const struct node *body, struct closure_cfg *c, struct errbuf *err)
{
	static const char units[] = "KMGT";
	const struct node *v = node_get(body, "free_space_margin");
	const char *u;
	size_t len;
	unsigned shift = 0;

	c->margin = CLOSURE_MARGIN_PCT_DEFAULT;
	c->margin_pct = true;
	if (v == NULL)
		return 0;
	if (node_expect(v, NODE_SCALAR, "free_space_margin", err) < 0)
		return -1;
	len = v->len;
	c->margin_pct = len > 0 && v->str[len - 1] == '%';
	if (c->margin_pct)
		len--;
	else if (len > 0 && (u = strchr(units, v->str[len - 1])) != NULL &&
	         v->str[len - 1] != '\0') {
		shift = 10u * (unsigned)(u - units + 1);
		len--;
	}
	if (parse_u64(v->str, len, c->margin_pct ? 10000 : UINT64_MAX >> shift,
	        &c->margin) < 0)
		return node_err(err, v,
		    "free_space_margin: expected a percent "
		    "(\"10%%\"), bytes, or bytes with K, M, G or T");
	c->margin <<= shift;
	return 0;
}

static bool
closure_user_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 32 && s[0] != '-' &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789_.-") == n;
}

static int
closure_parse_target(
    const struct node *body, struct closure_cfg *c, struct errbuf *err)
{
	uint64_t t = CLOSURE_CACHE_TIMEOUT_S, r = CLOSURE_CACHE_RETRIES;
	const char *mode = NULL;
	size_t n;

	if (node_get(body, "profile") != NULL) {
		if (stepsh_abs_path(body, "profile", &c->profile, err) < 0)
			return -1;
		n = strlen(c->profile);
		if (n < 2 || c->profile[n - 1] == '/')
			return node_err(err, node_get(body, "profile"),
			    "profile: must name a link, not a directory");
	}
	if (node_opt_str(body, "user", &c->user, err) < 0)
		return -1;
	if (c->user != NULL && !closure_user_ok(c->user))
		return node_err(err, node_get(body, "user"),
		    "user: not a valid user name: '%s'", c->user);
	if (c->user != NULL && c->profile == NULL)
		return node_err(err, node_get(body, "user"),
		    "user: only makes sense with a profile");
	if (node_opt_str(body, "mode", &mode, err) < 0)
		return -1;
	if (mode != NULL && strcmp(mode, "pull") != 0 &&
	    strcmp(mode, "push") != 0)
		return node_err(err, node_get(body, "mode"),
		    "mode: expected pull or push, not '%s'", mode);
	c->push = mode != NULL && strcmp(mode, "push") == 0;
	c->nix = "auto";
	if (node_opt_str(body, "nix", &c->nix, err) < 0)
		return -1;
	if (strcmp(c->nix, "auto") != 0 && strcmp(c->nix, "present") != 0 &&
	    strcmp(c->nix, "absent") != 0)
		return node_err(err, node_get(body, "nix"),
		    "nix: expected auto, present or absent, not '%s'", c->nix);
	if (strcmp(c->nix, "absent") == 0 && !c->push)
		return node_err(err, node_get(body, "nix"),
		    "nix: absent needs mode: push (in pull mode the target's "
		    "Nix fetches the closure)");
	if (node_opt_u64(body, "cache_timeout", 3600, &t, err) < 0 ||
	    node_opt_u64(body, "cache_retries", 100, &r, err) < 0)
		return -1;
	c->cache_timeout_s = t == 0 ? CLOSURE_CACHE_TIMEOUT_S : (unsigned)t;
	c->cache_retries = (unsigned)r;
	return 0;
}

static int
closure_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct closure_cfg *c = cfg;

	if (closure_parse_path(body, c, err) < 0 ||
	    closure_parse_list(body, "substituters", c, err) < 0 ||
	    closure_parse_list(body, "trusted_keys", c, err) < 0 ||
	    closure_parse_margin(body, c, err) < 0 ||
	    closure_parse_target(body, c, err) < 0)
		return -1;
	return 0;
}

/* ============================================================ helpers */

static void
cst_free(struct cst *st)
{
	nix_closure_free(&st->cl);
	free(st->missing);
	free(st->df_dir);
	free(st->pr);
	free(st->current);
	buf_release(&st->list);
}

/* Next line of [*p, end) into line/len; false at the end. */
static bool
closure_next_line(
    const char **p, const char *end, const char **line, size_t *len)
{
	const char *nl;

	if (*p >= end)
		return false;
	nl = memchr(*p, '\n', (size_t)(end - *p));
	*line = *p;
	*len = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	*p += *len + (nl ? 1 : 0);
	return true;
}

/* Any NarHash form (sha256:nix32, sha256:hex, sha256-base64) as
 * "sha256:<nix32>". */
static int
closure_norm_hash(const char *h, struct buf *out)
{
	unsigned char d[32];
	size_t len = strlen(h), bl = 0;
	int rc = -1;

	if (str_has_prefix(h, "sha256:") && len - 7 == 52)
		rc = nix_base32_decode(h + 7, 52, d, sizeof(d));
	else if (str_has_prefix(h, "sha256:") && len - 7 == 64)
		rc = sodium_hex2bin(d, sizeof(d), h + 7, 64, NULL, &bl, NULL) ==
		                 0 &&
		             bl == sizeof(d)
		         ? 0
		         : -1;
	else if (str_has_prefix(h, "sha256-"))
		rc = sodium_base642bin(d, sizeof(d), h + 7, len - 7, NULL, &bl,
		         NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
		             bl == sizeof(d)
		         ? 0
		         : -1;
	if (rc < 0)
		return -1;
	return nix_hash_sha256_string(d, out);
}

/* ===================================================== controller side */

static int
closure_pick_root(struct run_ctx *ctx, const struct closure_cfg *c,
    struct cst *st, struct errbuf *err)
{
	struct ssh_conn *conn;
	struct buf have;

	if (ctx->facts.system == NULL && run_ctx_ssh(ctx, &conn, err) < 0)
		return -1;
	st->system = ctx->facts.system ? ctx->facts.system : "unknown";
	if (c->path != NULL) {
		st->root = c->path;
		return 0;
	}
	for (size_t i = 0; i < c->narch; i++) {
		if (strcmp(c->arch[i].system, st->system) == 0) {
			st->root = c->arch[i].path;
			return 0;
		}
	}
	buf_init(&have, 1024);
	for (size_t i = 0; i < c->narch; i++)
		buf_addf(&have, "%s%s", i ? ", " : "", c->arch[i].system);
	err_set(err, SH_ERR_STEP,
	    "no path for the target's system '%s' (the path map has: %s)",
	    st->system, have.data);
	buf_release(&have);
	return -1;
}

static int
closure_resolve(struct run_ctx *ctx, struct cst *st, struct errbuf *err)
{
	const struct closure_cfg *c = st->c;
	struct nix_cache_opts o;

	memset(&o, 0, sizeof(o));
	o.substituters = (const char *const *)c->subs.v;
	o.nsubstituters = c->subs.n;
	o.keys = &c->keys;
	o.timeout_s = c->cache_timeout_s;
	o.retries = c->cache_retries;
	o.interrupted = ctx->interrupted;
	if (nix_closure_resolve(&o, st->root, &st->cl, err) < 0)
		return -1;
	st->missing = xcalloc(st->cl.n ? st->cl.n : 1, sizeof(bool));
	buf_init(&st->list, REMOTE_SCRIPT_MAX);
	for (size_t i = 0; i < st->cl.n; i++)
		if (buf_addf(
		        &st->list, "%s\n", st->cl.paths[i].info.store_path) < 0)
			return err_set(err, SH_ERR_STEP,
			    "closure of %s: too many paths to send", st->root);
	return 0;
}

/* ============================================================ progress */

static void
closure_prog_init(
    struct closure_prog *pg, struct run_ctx *ctx, const struct cst *st)
{
	memset(pg, 0, sizeof(*pg));
	pg->ctx = ctx;
	pg->st = st;
	pg->seen = xcalloc(st->cl.n ? st->cl.n : 1, sizeof(bool));
	buf_init(&pg->line, CLOSURE_PROG_LINE_MAX);
}

static void
closure_prog_free(struct closure_prog *pg)
{
	free(pg->seen);
	buf_release(&pg->line);
}

static void
closure_prog_show(const struct closure_prog *pg)
{
	ui_progress(pg->ctx->ui, "copy", pg->done, pg->st->nmissing, pg->bytes,
	    pg->st->bytes_missing);
}

/* "copying path '<path>' from '<url>'...": counts a missing path once. */
static void
closure_prog_line(struct closure_prog *pg, const char *l, size_t len)
{
	static const char pre[] = "copying path '";
	const struct cst *st = pg->st;
	const char *path = l + sizeof(pre) - 1, *q;
	size_t i, plen;

	if (len < sizeof(pre) - 1 || memcmp(l, pre, sizeof(pre) - 1) != 0 ||
	    (q = memchr(path, '\'', len - (sizeof(pre) - 1))) == NULL)
		return;
	plen = (size_t)(q - path);
	for (i = 0; i < st->cl.n; i++) {
		const char *sp = st->cl.paths[i].info.store_path;

		if (strlen(sp) == plen && memcmp(sp, path, plen) == 0)
			break;
	}
	if (i == st->cl.n || !st->missing[i] || pg->seen[i])
		return;
	pg->seen[i] = true;
	pg->done++;
	pg->bytes += st->cl.paths[i].info.nar_size;
	closure_prog_show(pg);
}

/* on_stderr: splits chunks into lines; a long line keeps its start. */
static void
closure_prog_feed(void *arg, const char *p, size_t len)
{
	struct closure_prog *pg = arg;
	const char *end = p + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl : end) - p);
		size_t room = pg->line.max - pg->line.len;

		buf_add(&pg->line, p, n < room ? n : room);
		if (nl == NULL)
			return;
		closure_prog_line(pg, pg->line.data, pg->line.len);
		buf_reset(&pg->line);
		p = nl + 1;
	}
}

/* ========================================================= target side */

/*
 * Shared by every script: nix on PATH (also where the official installers
 * put it), and prof(), which reads the profile at $P: sets PR (the link
 * nix-env -p gets), PG (its generation, -1 none), GL (the generation link)
 * and PT (the store path it points at). own() tells whether $U owns a link.
 */
static const char closure_sh_lib[] =
    "set -u\n"
    "set -f\n"
    "umask 022\n"
    "PATH=$PATH:/nix/var/nix/profiles/default/bin\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "HN=0\n"
    "[ \"$X\" != absent ] && { command -v nix-store && "
    "command -v nix-env; } >/dev/null 2>&1 && HN=1\n"
    "[ \"$HN\" = 1 ] || [ \"$X\" = absent ] || "
    "{ [ \"$PM\" = push ] && [ \"$X\" = auto ]; } ||\n"
    "\tdie \"nix is not installed on the target (no nix-store and nix-env "
    "in PATH=$PATH): $([ \"$PM\" = pull ] && echo 'mode: pull has the "
    "target'\\''s Nix fetch the closure; use mode: push, or install' || "
    "echo 'nix: present says it is there; install') it on the image "
    "before this step (Debian: apt-get install nix-bin)\"\n"
    "prof() {\n"
    "\tPR=$P PG=-1 PT= GL=\n"
    "\tif [ -L \"$P\" ]; then\n"
    "\t\t_t=$(readlink -- \"$P\") || exit 1\n"
    "\t\tcase ${_t##*/} in\n"
    "\t\t\"${P##*/}\"-*-link) ;;\n"
    "\t\t*) case $_t in /*) PR=$_t ;; *) PR=${P%/*}/$_t ;; esac ;;\n"
    "\t\tesac\n"
    "\telif [ -e \"$P\" ]; then\n"
    "\t\tdie \"$P exists and is not a symlink, so not a Nix profile\"\n"
    "\tfi\n"
    "\tif [ -L \"$PR\" ]; then\n"
    "\t\t_t=$(readlink -- \"$PR\") || exit 1\n"
    "\t\t_g=${_t##*/}; _g=${_g#\"${PR##*/}\"-}; _g=${_g%-link}\n"
    "\t\tcase $_g in ''|*[!0-9]*) "
    "die \"$PR is not a Nix profile (it points to $_t)\" ;; esac\n"
    "\t\tPG=$_g\n"
    "\t\tcase $_t in /*) GL=$_t ;; *) GL=${PR%/*}/$_t ;; esac\n"
    "\t\tPT=$(readlink -- \"$GL\") || PT=\n"
    "\telif [ -e \"$PR\" ]; then\n"
    "\t\tdie \"$PR exists and is not a symlink, so not a Nix profile\"\n"
    "\tfi\n"
    "}\n"
    "own() { [ -z \"$U\" ] || [ ! -L \"$1\" ] || "
    "[ \"$(stat -c %U -- \"$1\")\" = \"$U\" ]; }\n";

/* Query: free space, missing paths, profile state. Payload: the paths. */
static const char closure_sh_query[] =
    "L=$(cat)\n"
    "d=/nix\n"
    "while [ ! -e \"$d\" ]; do d=${d%/*}; [ -n \"$d\" ] || d=/; done\n"
    "a=$(df -k --output=avail -- \"$d\" | tail -n 1) || exit 1\n"
    "set -- $a\n"
    "echo \"F ${1:-?} $d\"\n"
    "echo \"X $HN\"\n"
    "if [ \"$HN\" = 0 ]; then\n"
    "\tprintf '%s\\n' \"$L\" | while read -r p; do\n"
    "\t\t[ -f \"$REC/${p##*/}\" ] && "
    "{ [ -e \"$p\" ] || [ -L \"$p\" ]; } || echo \"I $p\"\n"
    "\tdone\n"
    "elif [ -f /nix/var/nix/db/db.sqlite ]; then\n"
    "\tinv=$(printf '%s\\n' \"$L\" | "
    "xargs nix-store --check-validity --print-invalid) || exit 1\n"
    "\tfor p in $inv; do echo \"I $p\"; done\n"
    "else\n"
    "\techo N\n"
    "fi\n"
    "if [ -n \"$P\" ]; then\n"
    "\tprof\n"
    "\techo \"R $PR\"; echo \"G $PG\"; echo \"T $PT\"\n"
    "\town \"$P\" && own \"$PR\" && own \"$GL\" && echo 'O 1' || "
    "echo 'O 0'\n"
    "fi\n"
    "[ \"$(readlink -- \"$GCR\" 2>/dev/null)\" = \"$ROOT\" ] && "
    "echo 'K 1' || echo 'K 0'\n";

/* Copy (when M=1) and print every path's registered NarHash, in order. */
static const char closure_sh_copy[] =
    "L=$(cat)\n"
    "if [ \"$M\" = 1 ]; then\n"
    "\tmkdir -p -- \"${GCR%/*}\" || exit 1\n"
    "\tE=$(mktemp) || exit 1\n"
    "\tr=$( { { nix-store --realise \"$ROOT\" --add-root \"$GCR\" "
    "-j \"$J\" --option substituters \"$SUBS\" "
    "--option trusted-public-keys \"$KEYS\" "
    "--option require-sigs true --option substitute true "
    "--option narinfo-cache-negative-ttl 0 2>&1 >/dev/null; "
    "echo $? >&3; } | tee -- \"$E\" >&2; } 3>&1)\n"
    "\tif [ \"$r\" != 0 ]; then\n"
    "\t\tfor s in $SUBS; do\n"
    "\t\t\tw=$(grep -F \"unable to download '$s/\" \"$E\" | "
    "grep -v 'HTTP error 4' | tail -n 1 | sed \"s/.*': //\")\n"
    "\t\t\t[ -z \"$w\" ] || echo \"U $s $w\"\n"
    "\t\tdone\n"
    "\t\trm -f -- \"$E\"\n"
    "\t\texit 1\n"
    "\tfi\n"
    "\trm -f -- \"$E\"\n"
    "fi\n"
    "printf '%s\\n' \"$L\" | xargs nix-store --query --hash || exit 1\n";

/*
 * Push: the payload is the controller's record stream (see closure_feed).
 * Runs after stepsh_traps(): fin removes the temporary directory on any
 * exit, also when the watchdog ends the script (controller killed).
 * Each NAR lands under a private directory in the store and stays there
 * until the controller's "V ok" says it matched its NarHash. A NAR of
 * CLOSURE_PUSH_BIG bytes or more comes alone ("P" record) and is unpacked
 * as it arrives (nix-store --restore into W/p/N); smaller ones come in
 * batches ("B" record: their paths, then one NAR of a directory holding
 * them by name, which the controller builds around the NARs it checks)
 * unpacked by one nix-store --restore into W/q/K and moved out by one mv
 * per batch: a process per path was 50 s for 1,000 small paths. What a
 * restore leaves of its record (a NAR that ends early) is drained, so
 * the stream stays in step: those bytes are the cache's, unchecked, and
 * must never be read as the controller's records ("V ok"). Only when
 * the whole stream arrived are the paths canonicalized (mtime 1,
 * read-only) and renamed
 * into place (an
 * invalid leftover of an interrupted push is replaced), registered in one
 * nix-store --load-db (one SQLite transaction: all or none) and rooted.
 * Between the first rename and the end of the registration (R=1), fin
 * also removes every renamed path that is not valid, so a run stopped
 * there (the controller killed: the watchdog's TERM) leaves no
 * unregistered path in the store; one the trap could not remove (the
 * target itself died) is invalid, so Nix ignores it, the next query
 * reports it missing and the next push replaces it. Then every path's
 * NarHash, as for pull.
 */
static const char closure_sh_push[] =
    "S=/nix/store I=\n"
    "if [ ! -d \"$S\" ]; then\n"
    "\tmkdir -p -m 0755 -- \"$S\" || exit 1\n"
    "\tnix-store --init >&2 & I=$!\n"
    "fi\n"
    "W= R=\n"
    "unrename() {\n"
    "\twhile read -r d b; do\n"
    "\t\t[ -e \"$b\" ] || [ -L \"$b\" ] || continue\n"
    "\t\tnix-store --check-validity \"$b\" >/dev/null 2>&1 && continue\n"
    "\t\tchmod -R u+w -- \"$b\" 2>/dev/null\n"
    "\t\trm -rf -- \"$b\"\n"
    "\tdone <\"$W/.names\"\n"
    "}\n"
    "fin() { [ -z \"$W\" ] || { [ -z \"$R\" ] || unrename; chmod -R u+w -- "
    "\"$W\" 2>/dev/null; rm -rf -- \"$W\"; }; }\n"
    "W=$(mktemp -d \"$S/.stagehand-push.XXXXXX\") || exit 1\n"
    "mkdir -- \"$W/p\" \"$W/q\" || exit 1\n"
    "rec() { read -r t a b c || die \"push: the stream ended early: nothing"
    " installed\"; }\n"
    "rec\n"
    "[ \"$t\" = L ] || die \"push: bad stream (no path list)\"\n"
    "head -c \"$a\" >\"$W/.list\" || exit 1\n"
    ": >\"$W/.names\"\n"
    ": >\"$W/.pnames\"\n"
    "n=0 k=0\n"
    "while rec; do\n"
    "\tcase $t in\n"
    "\tP)\n"
    "\t\tn=$((n + 1))\n"
    "\t\tprintf \"copying path '%s' from the controller...\\n\" \"$b\" >&2"
    "\n"
    "\t\thead -c \"$a\" | { nix-store --restore \"$W/p/$n\"; r=$?; "
    "cat >/dev/null; exit $r; } ||\n"
    "\t\t\tdie \"push: $b: the NAR did not restore: nothing installed\"\n"
    "\t\tread -r v || die \"push: $b: the stream ended before the controlle"
    "r verified it: nothing installed\"\n"
    "\t\t[ \"$v\" = 'V ok' ] || die \"push: $b: not verified\"\n"
    "\t\techo \"$W/p/$n $b\" >>\"$W/.pnames\"\n"
    "\t\techo \"$W/p/$n $b\" >>\"$W/.names\"\n"
    "\t\t;;\n"
    "\tB)\n"
    "\t\tk=$((k + 1))\n"
    "\t\thead -c \"$c\" >\"$W/.batch\" || exit 1\n"
    "\t\tread -r f <\"$W/.batch\" || die \"push: the stream ended early: n"
    "othing installed\"\n"
    "\t\tsed \"s|.*|copying path '&' from the controller...|\" \"$W/.batch"
    "\" >&2\n"
    "\t\thead -c \"$a\" | { nix-store --restore \"$W/q/$k\" "
    "2>\"$W/.err\"; r=$?; cat >/dev/null; exit $r; } || {\n"
    "\t\t\t[ \"$b\" = 1 ] && w=$f || w=\"one of $f and $((b - 1)) more\"\n"
    "\t\t\tdie \"push: $w: the NAR did not restore ($(tail -n 1 \"$W/.err\""
    ")): nothing installed\"\n"
    "\t\t}\n"
    "\t\tread -r v || die \"push: $f...: the stream ended before the contro"
    "ller verified it: nothing installed\"\n"
    "\t\t[ \"$v\" = 'V ok' ] || die \"push: $f...: not verified\"\n"
    "\t\tawk -v q=\"$W/q/$k/\" '{ n = $0; sub(/.*\\//, \"\", n); "
    "print q n, $0 }' \"$W/.batch\" >>\"$W/.names\" || exit 1\n"
    "\t\t;;\n"
    "\t*) break ;;\n"
    "\tesac\n"
    "done\n"
    "[ \"$t\" = E ] || die \"push: bad stream (record '$t')\"\n"
    "head -c \"$a\" >\"$W/.reg\" || exit 1\n"
    "[ \"$(wc -c <\"$W/.reg\")\" = \"$a\" ] || die \"push: the registration"
    " was cut: nothing installed\"\n"
    "find \"$W/p\" -mindepth 1 -exec touch -h -d @1 -- {} + ! -type l "
    "-exec chmod a-w -- {} + || exit 1\n"
    "find \"$W/q\" -mindepth 2 -exec touch -h -d @1 -- {} + ! -type l "
    "-exec chmod a-w -- {} + || exit 1\n"
    "mkdir -p -- \"${GCR%/*}\" || exit 1\n"
    "R=1\n"
    "cut -d ' ' -f 2 \"$W/.names\" | xargs -r ls -d -- 2>/dev/null "
    ">\"$W/.old\"\n"
    "while read -r b; do\n"
    "\tchmod -R u+w -- \"$b\" 2>/dev/null\n"
    "\trm -rf -- \"$b\" || exit 1\n"
    "done <\"$W/.old\"\n"
    "while read -r d b; do mv -T -- \"$d\" \"$b\" || exit 1; done "
    "<\"$W/.pnames\"\n"
    "i=0\n"
    "while [ \"$i\" -lt \"$k\" ]; do\n"
    "\ti=$((i + 1))\n"
    "\tfind \"$W/q/$i\" -mindepth 1 -maxdepth 1 -exec mv -t \"$S\" -- {} + "
    "|| exit 1\n"
    "done\n"
    "[ -z \"$I\" ] || wait \"$I\" || die \"push: nix-store --init failed\"\n"
    "nix-store --load-db <\"$W/.reg\" || exit 1\n"
    "R=\n"
    "ln -sfn -- \"$ROOT\" \"$GCR\" || exit 1\n"
    "xargs nix-store --query --hash <\"$W/.list\" || exit 1\n";

/*
 * Before a push, what an interrupted one left: the target lock keeps any
 * other run away, so a push's temporary directory is a leftover of one
 * that died before its trap ran (the target went down, or its shell was
 * killed outright). Without Nix, so is a store entry without its record
 * under $REC (renamed, never recorded): a later push of its closure would
 * replace it, but that closure may never come again. Only where stagehand
 * keeps records and there is no Nix database: there, nothing but a push
 * writes the store. With Nix such an entry is invalid, and Nix's own
 * garbage collector removes it.
 */
static const char closure_sh_sweep[] =
    "set +f\n"
    "for d in /nix/store/.stagehand-push.*; do\n"
    "\t[ -d \"$d\" ] || continue\n"
    "\tchmod -R u+w -- \"$d\" 2>/dev/null\n"
    "\trm -rf -- \"$d\" && echo \"removed $d, left by an interrupted "
    "push\" >&2\n"
    "done\n"
    "set -f\n";

static const char closure_sh_sweep_unrecorded[] =
    "set +f\n"
    "if [ -d \"$REC\" ] && [ ! -e /nix/var/nix/db ]; then\n"
    "\tfor d in /nix/store/*; do\n"
    "\t\t[ -e \"$d\" ] || [ -L \"$d\" ] || continue\n"
    "\t\t[ -f \"$REC/${d##*/}\" ] && continue\n"
    "\t\tchmod -R u+w -- \"$d\" 2>/dev/null\n"
    "\t\trm -rf -- \"$d\" && echo \"removed $d: no record, left by an "
    "interrupted push\" >&2\n"
    "\tdone\n"
    "fi\n"
    "set -f\n";

/*
 * Push to a target without Nix: the same record stream, but each path
 * comes as a tar stream in "D <n>" chunks ended by "D 0" (the shell reads
 * the framing, head -c the chunks, the system tar unpacks them into the
 * temporary directory with the modes, owner and mtimes of the headers).
 * The rename is as above; then the registration is split into one record
 * per path under $REC, written after its path is in place: a path without
 * its record counts as missing and is replaced by the next run. The
 * NarHashes printed for the attestation are the records'.
 */
static const char closure_sh_push_tar[] =
    "S=/nix/store\n"
    "mkdir -p -- \"$S\" \"$REC\" || exit 1\n"
    "W=\n"
    "fin() { [ -z \"$W\" ] || { chmod -R u+w -- \"$W\" 2>/dev/null; "
    "rm -rf -- \"$W\"; }; }\n"
    "W=$(mktemp -d \"$S/.stagehand-push.XXXXXX\") || exit 1\n"
    "rec() { read -r t a b || "
    "die \"push: the stream ended early: nothing installed\"; }\n"
    "rec\n"
    "[ \"$t\" = L ] || die \"push: bad stream (no path list)\"\n"
    "head -c \"$a\" >\"$W/.list\" || exit 1\n"
    ": >\"$W/.names\"\n"
    "n=0\n"
    "while rec && [ \"$t\" = P ]; do\n"
    "\tn=$((n + 1))\n"
    "\tprintf \"copying path '%s' from the controller...\\n\" \"$b\" >&2\n"
    "\tmkdir -- \"$W/$n\" || exit 1\n"
    "\twhile read -r c z && [ \"$c\" = D ]; do\n"
    "\t\t[ \"$z\" = 0 ] && { : >\"$W/$n.end\"; break; }\n"
    "\t\thead -c \"$z\" || exit 1\n"
    "\tdone | tar -x -p --numeric-owner -C \"$W/$n\" -f - ||\n"
    "\t\tdie \"push: $b: the tar stream did not unpack: nothing "
    "installed\"\n"
    "\t[ -e \"$W/$n.end\" ] && read -r v || die \"push: $b: the stream "
    "ended before the controller verified it: nothing installed\"\n"
    "\t[ \"$v\" = 'V ok' ] || die \"push: $b: not verified\"\n"
    "\tfind \"$W/$n/p\" -exec touch -h -d @1 -- {} + || exit 1\n"
    "\tprintf '%s\\n' \"$b\" >>\"$W/.names\"\n"
    "done\n"
    "[ \"$t\" = E ] || die \"push: bad stream (record '$t')\"\n"
    "head -c \"$a\" >\"$W/.reg\" || exit 1\n"
    "[ \"$(wc -c <\"$W/.reg\")\" = \"$a\" ] || "
    "die \"push: the registration was cut: nothing installed\"\n"
    "mkdir -- \"$W/.rec\" || exit 1\n"
    /* path, NarHash, NarSize, deriver, n, n references: one file each */
    "awk -v d=\"$W/.rec\" '\n"
    "s == 0 { f = $0; sub(/.*\\//, \"\", f); f = d \"/\" f; print > f; "
    "k = 0; s = 1; next }\n"
    "s == 1 { print > f; if (++k < 4) next; r = $0 + 0; "
    "if (r == 0) { close(f); s = 0 } else s = 2; next }\n"
    "s == 2 { print > f; if (--r == 0) { close(f); s = 0 } }\n"
    "' \"$W/.reg\" || exit 1\n"
    "mkdir -p -- \"${GCR%/*}\" || exit 1\n"
    "i=0\n"
    "while read -r b; do\n"
    "\ti=$((i + 1))\n"
    "\t[ -f \"$W/.rec/${b##*/}\" ] || die \"push: $b: no registration\"\n"
    "\trm -f -- \"$REC/${b##*/}\" || exit 1\n"
    "\tif [ -e \"$b\" ] || [ -L \"$b\" ]; then\n"
    "\t\tchmod -R u+w -- \"$b\" 2>/dev/null\n"
    "\t\trm -rf -- \"$b\" || exit 1\n"
    "\tfi\n"
    "\tmv -T -- \"$W/$i/p\" \"$b\" || exit 1\n"
    "\tmv -- \"$W/.rec/${b##*/}\" \"$REC/${b##*/}\" || exit 1\n"
    "done <\"$W/.names\"\n"
    "ln -sfn -- \"$ROOT\" \"$GCR\" || exit 1\n"
    "sed \"s|^/nix/store/|$REC/|\" \"$W/.list\" | "
    "xargs awk 'FNR == 2' || exit 1\n";

/* Without Nix and nothing missing: the records' NarHashes, in order. */
static const char closure_sh_attest_rec[] =
    "sed \"s|^/nix/store/|$REC/|\" | xargs awk 'FNR == 2' || exit 1\n";

/*
 * Profile switch, ownership, or the GC root without a profile. Without
 * Nix, gen_set does what nix-env --set does: a new generation link
 * PR-N-link -> ROOT (N one above the highest there), then PR -> PR-N-link
 * renamed into place (atomic).
 */
static const char closure_sh_profile[] =
    "gen_set() {\n"
    "\t_b=${PR##*/}\n"
    "\t_n=$(ls -A -- \"${PR%/*}\" | awk -v b=\"$_b-\" '\n"
    "\tindex($0, b) == 1 && substr($0, length($0) - 4) == \"-link\" {\n"
    "\t\tg = substr($0, length(b) + 1, length($0) - length(b) - 5)\n"
    "\t\tif (g ~ /^[0-9]+$/ && g + 0 > m) m = g + 0 }\n"
    "\tEND { print m + 1 }') || return 1\n"
    "\tln -s -- \"$ROOT\" \"$PR-$_n-link\" || return 1\n"
    "\tln -sfn -- \"$_b-$_n-link\" \"$PR.stagehand-new\" && "
    "mv -Tf -- \"$PR.stagehand-new\" \"$PR\"\n"
    "}\n"
    "if [ -z \"$P\" ]; then\n"
    "\t[ \"$(readlink -- \"$GCR\" 2>/dev/null)\" = \"$ROOT\" ] && exit 0\n"
    "\tmkdir -p -- \"${GCR%/*}\" && ln -sfn -- \"$ROOT\" \"$GCR\" || "
    "exit 1\n"
    "\techo \"C gc root $GCR -> $ROOT\"; exit 0\n"
    "fi\n"
    "prof\n"
    "if [ \"$PT\" != \"$ROOT\" ]; then\n"
    "\tif [ ! -d \"${PR%/*}\" ]; then\n"
    "\t\tmkdir -p -- \"${PR%/*}\" || exit 1\n"
    "\t\t[ -z \"$U\" ] || chown -- \"$U\" \"${PR%/*}\" || exit 1\n"
    "\tfi\n"
    "\tif [ \"$HN\" = 1 ]; then\n"
    "\t\tnix-env -p \"$PR\" --set \"$ROOT\" >&2 || exit 1\n"
    "\telse\n"
    "\t\tgen_set || exit 1\n"
    "\tfi\n"
    "\tprof\n"
    "\t[ \"$PT\" = \"$ROOT\" ] || "
    "die \"$PR does not point at $ROOT after nix-env --set\"\n"
    "\techo \"G $PG\"\n"
    "fi\n"
    "for f in \"$P\" \"$PR\" \"$GL\"; do\n"
    "\town \"$f\" && continue\n"
    "\tchown -h -- \"$U\" \"$f\" || exit 1\n"
    "\techo \"C owner $f -> $U\"\n"
    "done\n"
    "rm -f -- \"$GCR\"\n"
    /* Leave no empty directory of ours behind (zero residue). */
    "rmdir -- \"${GCR%/*}\" 2>/dev/null || :\n";

/* ROOT P U GCR assignments plus the library; then body. */
static int
closure_script(const struct cst *st, const char *body, struct buf *b)
{
	const struct closure_cfg *c = st->c;
	const char *base = strrchr(st->root, '/') + 1;
	int rc = 0;

	rc |= stepsh_assign(b, "ROOT", st->root);
	rc |= stepsh_assign(b, "P", c->profile ? c->profile : "");
	rc |= stepsh_assign(b, "U", c->user ? c->user : "");
	rc |= stepsh_assign(b, "X", st->nonix ? "absent" : c->nix);
	rc |= stepsh_assign(b, "PM", c->push ? "push" : "pull");
	rc |= stepsh_assign(b, "REC", CLOSURE_REC_DIR);
	rc |= buf_addf(b, "GCR=%s/", CLOSURE_GCROOT_DIR);
	rc |= sh_quote(b, base);
	rc |= buf_addc(b, '\n');
	rc |= buf_adds(b, closure_sh_lib);
	rc |= buf_adds(b, body);
	return rc < 0 ? -1 : 0;
}

/*
 * Runs one script with the closure list as payload; stdout into out.
 * prog (or NULL) follows stderr.
 */
static int
closure_exec(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, const struct cst *st, struct closure_prog *prog,
    struct remote_out *out, struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;

	memset(out, 0, sizeof(*out));
	if (buf_failed(&st->list))
		return err_set(err, SH_ERR_INTERNAL,
		    "closure %s: path list too long: not sent", st->root);
	if (remote_script(&cmd, script, err) < 0)
		return err_prefix(err, "closure %s: ", st->root);
	cmd.payload = st->list.data;
	cmd.payload_len = st->list.len;
	if (prog != NULL) {
		cmd.on_stderr = closure_prog_feed;
		cmd.on_stderr_arg = prog;
	}
	if (stepsh_exec(ctx, step, &cmd, out, res, err) < 0)
		return err_prefix(err, "closure %s: ", st->root);
	return 0;
}

/* Marks "I <path>" lines as missing; the target answers in input order. */
static int
closure_mark_missing(
    struct cst *st, const char *p, size_t len, size_t *j, struct errbuf *err)
{
	while (*j < st->cl.n) {
		const char *sp = st->cl.paths[*j].info.store_path;

		(*j)++;
		if (strlen(sp) == len && memcmp(sp, p, len) == 0) {
			st->missing[*j - 1] = true;
			st->nmissing++;
			st->bytes_missing += st->cl.paths[*j - 1].info.nar_size;
			return 0;
		}
	}
	return err_set(err, SH_ERR_REMOTE,
	    "closure %s: the target named an unexpected invalid path '%.*s'",
	    st->root, (int)len, p);
}

static void
closure_all_missing(struct cst *st)
{
	st->nmissing = st->cl.n;
	st->bytes_missing = 0;
	for (size_t i = 0; i < st->cl.n; i++) {
		st->missing[i] = true;
		st->bytes_missing += st->cl.paths[i].info.nar_size;
	}
}

static int
closure_gen(const char *p, size_t len, long *out)
{
	uint64_t v;

	*out = -1;
	if (len == 2 && memcmp(p, "-1", 2) == 0)
		return 0;
	if (parse_u64(p, len, 1u << 30, &v) < 0)
		return -1;
	*out = (long)v;
	return 0;
}

/* One line of the query's answer. */
static int
closure_query_line(
    struct cst *st, const char *l, size_t len, size_t *j, struct errbuf *err)
{
	const char *v = l + 2, *sp;
	size_t vl = len >= 2 ? len - 2 : 0;
	uint64_t kib;

	if (len == 1 && l[0] == 'N')
		closure_all_missing(st);
	else if (len < 2 || l[1] != ' ')
		return 0;
	else if (l[0] == 'I')
		return closure_mark_missing(st, v, vl, j, err);
	else if (l[0] == 'F') {
		sp = memchr(v, ' ', vl);
		if (sp == NULL ||
		    parse_u64(v, (size_t)(sp - v), UINT64_MAX / 1024, &kib) < 0)
			return err_set(err, SH_ERR_REMOTE,
			    "closure %s: cannot "
			    "read the free space (df): '%.*s'",
			    st->root, (int)vl, v);
		st->free_bytes = kib * 1024;
		st->df_dir = xstrndup(sp + 1, vl - (size_t)(sp - v) - 1);
	} else if (l[0] == 'R')
		st->pr = xstrndup(v, vl);
	else if (l[0] == 'T')
		st->current = vl ? xstrndup(v, vl) : NULL;
	else if (l[0] == 'G' && closure_gen(v, vl, &st->gen) < 0)
		return err_set(err, SH_ERR_REMOTE,
		    "closure %s: bad generation '%.*s'", st->root, (int)vl, v);
	else if (l[0] == 'X')
		st->nonix = vl == 1 && v[0] == '0';
	else if (l[0] == 'O' || l[0] == 'K')
		*(l[0] == 'O' ? &st->owner_ok : &st->gcroot_ok) =
		    vl == 1 && v[0] == '1';
	return 0;
}

static int
closure_query(struct run_ctx *ctx, const struct step *step, struct cst *st,
    struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	struct buf script;
	const char *p, *end, *l;
	size_t len, j = 0;
	int rc = -1;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	st->gen = -1;
	st->gen_after = -1;
	if (closure_script(st, closure_sh_query, &script) < 0) {
		buf_release(&script);
		return err_set(
		    err, SH_ERR_INTERNAL, "closure: script too long");
	}
	if (closure_exec(ctx, step, &script, st, NULL, &out, res, err) < 0)
		goto out;
	p = out.out.data;
	end = p + out.out.len;
	while (closure_next_line(&p, end, &l, &len))
		if (closure_query_line(st, l, len, &j, err) < 0)
			goto out;
	if (st->df_dir == NULL) {
		err_set(err, SH_ERR_REMOTE,
		    "closure %s: the target did not report its free space",
		    st->root);
		goto out;
	}
	rc = 0;
out:
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

static int
closure_check_space(const struct cst *st, struct errbuf *err)
{
	const struct closure_cfg *c = st->c;
	uint64_t margin, need;
	struct buf a, n;

	if (st->nmissing == 0)
		return 0;
	margin = c->margin_pct ? st->bytes_missing / 100 * c->margin +
	                             st->bytes_missing % 100 * c->margin / 100
	                       : c->margin;
	need = st->bytes_missing + margin;
	if (need < st->bytes_missing)
		need = UINT64_MAX;
	if (st->free_bytes >= need)
		return 0;
	buf_init(&a, 64);
	buf_init(&n, 64);
	buf_add_size(&a, st->free_bytes);
	buf_add_size(&n, need);
	err_set(err, SH_ERR_STEP,
	    "closure %s: not enough free space for /nix "
	    "on the target: %s (%llu bytes) available under %s, %s (%llu "
	    "bytes) needed: NarSize %llu of %zu missing paths + margin %llu",
	    st->root, a.data, (unsigned long long)st->free_bytes, st->df_dir,
	    n.data, (unsigned long long)need,
	    (unsigned long long)st->bytes_missing, st->nmissing,
	    (unsigned long long)margin);
	buf_release(&a);
	buf_release(&n);
	return -1;
}

/* Compares the target's NarHash lines with the verified narinfos. */
static int
closure_attest(const struct cst *st, const struct buf *out, struct errbuf *err)
{
	const char *p = out->data, *end = out->data + out->len, *l;
	struct buf want, got;
	size_t len, i = 0;
	int rc = 0;

	buf_init(&want, 128);
	buf_init(&got, 128);
	while (
	    rc == 0 && i < st->cl.n && closure_next_line(&p, end, &l, &len)) {
		const struct narinfo *ni = &st->cl.paths[i].info;
		char *h = xstrndup(l, len);

		buf_reset(&want);
		buf_reset(&got);
		if (closure_norm_hash(ni->nar_hash, &want) < 0 ||
		    closure_norm_hash(h, &got) < 0 ||
		    strcmp(want.data, got.data) != 0)
			rc = err_set(err, SH_ERR_TRUST,
			    "closure %s: attest: the "
			    "target registers NarHash '%s' for %s, the signed "
			    "narinfo says '%s'",
			    st->root, h, ni->store_path, ni->nar_hash);
		free(h);
		i++;
	}
	if (rc == 0 && (i != st->cl.n || p < end))
		rc = err_set(err, SH_ERR_TRUST,
		    "closure %s: attest: the target "
		    "listed %zu NarHashes for %zu paths",
		    st->root, i, st->cl.n);
	buf_release(&want);
	buf_release(&got);
	return rc;
}

/*
 * A failed realise whose Nix could not download from a substituter at all
 * (the copy script's "U <url> <curl's reason>" lines): the target has no
 * route to the cache, SH_ERR_UNREACHABLE naming each one. Otherwise err
 * stays as it is.
 */
static void
closure_unreachable(
    const struct cst *st, const struct buf *out, struct errbuf *err)
{
	const char *p = out->data, *end = out->data + out->len, *l;
	struct buf b;
	size_t len, n = 0;

	if (out->data == NULL)
		return;
	buf_init(&b, 8192);
	while (closure_next_line(&p, end, &l, &len)) {
		if (len < 3 || l[0] != 'U' || l[1] != ' ')
			continue;
		const char *sp = memchr(l + 2, ' ', len - 2);
		size_t ul = sp ? (size_t)(sp - l - 2) : len - 2;

		if (buf_addf(&b, "%s%.*s", n++ ? "; " : "", (int)ul, l + 2) < 0)
			break;
		if (sp != NULL && (size_t)(sp + 1 - l) < len &&
		    buf_addf(&b, " (%.*s)", (int)(len - (size_t)(sp + 1 - l)),
		        sp + 1) < 0)
			break;
	}
	if (n > 0)
		err_set(err, SH_ERR_UNREACHABLE,
		    "closure %s: pull: the target cannot reach the cache%s: "
		    "%s (mode: push fetches on the controller instead)",
		    st->root, n > 1 ? "s" : "", b.data);
	buf_release(&b);
}

static int
closure_copy(struct run_ctx *ctx, const struct step *step, struct cst *st,
    struct step_result *res, struct errbuf *err)
{
	const struct closure_cfg *c = st->c;
	struct closure_prog prog;
	struct remote_out out;
	struct buf script, subs, keys;
	int rc = -1;

	closure_prog_init(&prog, ctx, st);
	buf_init(&script, REMOTE_SCRIPT_MAX);
	buf_init(&subs, 64u << 10);
	buf_init(&keys, 64u << 10);
	for (size_t i = 0; i < c->subs.n; i++)
		buf_addf(&subs, "%s%s", i ? " " : "", c->subs.v[i]);
	for (size_t i = 0; i < c->key_specs.n; i++)
		buf_addf(&keys, "%s%s", i ? " " : "", c->key_specs.v[i]);
	memset(&out, 0, sizeof(out));
	if (buf_failed(&subs) || buf_failed(&keys))
		buf_fail(&script); /* a cut list would be a hole */
	if (stepsh_assign(&script, "SUBS", subs.data) < 0 ||
	    stepsh_assign(&script, "KEYS", keys.data) < 0 ||
	    buf_addf(&script, "M=%d J=%d\n", st->nmissing ? 1 : 0,
	        CLOSURE_JOBS) < 0 ||
	    closure_script(st, closure_sh_copy, &script) < 0) {
		err_set(err, SH_ERR_INTERNAL, "closure: script too long");
		goto out;
	}
	if (st->nmissing > 0)
		closure_prog_show(&prog);
	if (closure_exec(ctx, step, &script, st,
	        st->nmissing > 0 ? &prog : NULL, &out, res, err) < 0) {
		closure_unreachable(st, &out.out, err);
		goto out;
	}
	if (closure_attest(st, &out.out, err) < 0)
		goto out;
	rc = 0;
out:
	closure_prog_free(&prog);
	remote_out_free(&out);
	buf_release(&script);
	buf_release(&subs);
	buf_release(&keys);
	return rc;
}

/* ========================================================== push mode */

/* No Nix, nothing to copy: attest the records. */
static int
closure_attest_rec(struct run_ctx *ctx, const struct step *step, struct cst *st,
    struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	struct buf script;
	int rc = -1;

	memset(&out, 0, sizeof(out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (closure_script(st, closure_sh_attest_rec, &script) < 0)
		err_set(err, SH_ERR_INTERNAL, "closure: script too long");
	else if (closure_exec(ctx, step, &script, st, NULL, &out, res, err) ==
	         0)
		rc = closure_attest(st, &out.out, err);
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

/*
 * The feeder: a thread that fetches and checks the missing paths' NARs
 * (nar_fetch_ordered: CLOSURE_PUSH_JOBS transfers at once, handed on in
 * stream order (closure_plan), the ones ahead of the stream spilled to
 * temporary files on the controller) and writes the record stream the
 * push script reads into a pipe whose other end is the run's one channel:
 *   "L <n>\n" + the closure's paths, one a line (n bytes)
 *   per big missing path: "P <NarSize> <path>\n" + the NAR + "V ok\n",
 *     the last only once the NAR checked out
 *   per batch of small ones: "B <n> <count> <m>\n" + their paths, one a
 *     line (m bytes),
 *     + the NAR of a directory holding them by name (n bytes) + "V ok\n",
 *     once every one of them checked out
 *   "E <n>\n" + the registration of the missing paths (n bytes)
 * Any failure closes the pipe at once: the script sees the stream end
 * before "V ok" or "E" and removes what it restored. The thread owns fd
 * and err; closure_push() reads err only after joining it.
 */
/* A job's place in the stream: alone, or a member of a batch. */
struct closure_push_job {
	bool batch;    /* unpacked with others, in one NAR directory */
	bool first;    /* the batch's first member: the next two are set */
	bool last;     /* the batch's last member */
	uint64_t blen; /* the batch's directory NAR, in bytes */
	size_t bcount; /* its members */
};

struct closure_feed {
	const struct cst *st;
	int fd; /* write end; closed by the feeder */
	unsigned timeout_s;
	volatile sig_atomic_t *interrupted;
	struct nar_job *jobs; /* owned: the missing paths, in stream order */
	struct closure_push_job *plan; /* owned: per job, its batch */
	size_t cur;                    /* the job whose bytes come now */
	char wbuf[CLOSURE_PUSH_CHUNK]; /* not yet written to fd */
	size_t wlen;
	unsigned char head[24]; /* the current NAR's first bytes */
	size_t headlen;
	struct closure_tarw *tw; /* no Nix on the target: the path as tar */
	struct errbuf err;
	int rc;
	bool broken; /* a write failed: the script had stopped reading */
};

static int
closure_write_fd(
    struct closure_feed *f, const void *p, size_t len, struct errbuf *err)
{
	const char *c = p;

	while (len > 0) {
		ssize_t w = write(f->fd, c, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			f->broken = true;
			return err_set(err, SH_ERR_REMOTE,
			    "the target stopped reading the stream: %s",
			    strerror(errno));
		}
		c += w;
		len -= (size_t)w;
	}
	return 0;
}

static int
closure_flush(struct closure_feed *f, struct errbuf *err)
{
	size_t n = f->wlen;

	f->wlen = 0;
	return closure_write_fd(f, f->wbuf, n, err);
}

/*
 * Into the stream, in pieces of CLOSURE_PUSH_CHUNK, or less when the
 * feeder is about to wait for the cache (closure_feed_idle): every piece
 * the pipe gives the channel becomes one frame and a channel write; small
 * NARs would make several a path.
 */
static int
closure_write(void *arg, const void *p, size_t len, struct errbuf *err)
{
	struct closure_feed *f = arg;
	const char *c = p;

	while (len > 0) {
		size_t k = sizeof(f->wbuf) - f->wlen;

		if (k > len)
			k = len;
		memcpy(f->wbuf + f->wlen, c, k);
		f->wlen += k;
		c += k;
		len -= k;
		if (f->wlen == sizeof(f->wbuf) && closure_flush(f, err) < 0)
			return -1;
	}
	return 0;
}

/* nar_fetch_ordered()'s idle: what the target can have now, it gets. */
static int
closure_feed_idle(void *arg, struct errbuf *err)
{
	return closure_flush(arg, err);
}

/* "<tag> <len>\n" + b's bytes. */
static int
closure_write_block(
    struct closure_feed *f, char tag, const struct buf *b, struct errbuf *err)
{
	char h[64];
	int n = snprintf(h, sizeof(h), "%c %zu\n", tag, b->len);

	if (closure_write(f, h, (size_t)n, err) < 0)
		return -1;
	return closure_write(f, b->data, b->len, err);
}

/*
 * Without Nix on the target a path goes as tar (nix/nartar.h), in "D <n>"
 * records of at most CLOSURE_TAR_CHUNK bytes, padded to tar's record size
 * and ended by "D 0" once nar_fetch() accepted the NAR.
 */
struct closure_tarw {
	struct closure_feed *f;
	struct nar_tar *t;
	const char *path;
	struct buf chunk;
	uint64_t total; /* tar bytes of this path */
};

static int
closure_tar_flush(struct closure_tarw *w, struct errbuf *err)
{
	if (w->chunk.len == 0)
		return 0;
	if (closure_write_block(w->f, 'D', &w->chunk, err) < 0)
		return -1;
	buf_reset(&w->chunk);
	return 0;
}

static int
closure_tar_out(void *arg, const void *p, size_t len, struct errbuf *err)
{
	struct closure_tarw *w = arg;
	const char *c = p;

	w->total += len;
	while (len > 0) {
		size_t n = CLOSURE_TAR_CHUNK - w->chunk.len;

		n = n < len ? n : len;
		if (buf_add(&w->chunk, c, n) < 0)
			return err_set(err, SH_ERR_INTERNAL, "tar chunk full");
		c += n;
		len -= n;
		if (w->chunk.len == CLOSURE_TAR_CHUNK &&
		    closure_tar_flush(w, err) < 0)
			return -1;
	}
	return 0;
}

static int
closure_tar_sink(void *arg, const void *p, size_t len, struct errbuf *err)
{
	struct closure_tarw *w = arg;

	if (nar_tar_feed(w->t, p, len, err) < 0)
		return err_prefix(err, "%s: ", w->path);
	return 0;
}

/* A path's tar begins: its converter (see closure_feed_begin). */
static void
closure_tar_begin(struct closure_tarw *w, const char *path)
{
	w->path = path;
	w->total = 0;
	buf_reset(&w->chunk);
	w->t = nar_tar_new("p", closure_tar_out, w);
}

/* The NAR checked out: the tar's end, its padding, then "D 0". */
static int
closure_tar_finish(struct closure_tarw *w, struct errbuf *err)
{
	static const char zeros[CLOSURE_TAR_RECORD];
	int rc = -1;

	if (nar_tar_end(w->t, err) < 0) {
		err_prefix(err, "%s: ", w->path);
		goto out;
	}
	if (closure_tar_out(w, zeros,
	        (CLOSURE_TAR_RECORD - w->total % CLOSURE_TAR_RECORD) %
	            CLOSURE_TAR_RECORD,
	        err) < 0 ||
	    closure_tar_flush(w, err) < 0 ||
	    closure_write(w->f, "D 0\n", 4, err) < 0)
		goto out;
	rc = 0;
out:
	nar_tar_free(w->t);
	w->t = NULL;
	return rc;
}

static const unsigned char closure_nar_magic[24] = { 13, 0, 0, 0, 0, 0, 0, 0,
	'n', 'i', 'x', '-', 'a', 'r', 'c', 'h', 'i', 'v', 'e', '-', '1', 0, 0,
	0 };

/* A NAR string: its length (8 bytes, little-endian), s, zeros to 8. */
static int
closure_nar_str(struct closure_feed *f, const char *str, struct errbuf *err)
{
	static const char zero[8];
	unsigned char h[8];
	uint64_t n = strlen(str);

	for (size_t k = 0; k < 8; k++)
		h[k] = (unsigned char)(n >> (8 * k));
	if (closure_write(f, h, 8, err) < 0 ||
	    closure_write(f, str, (size_t)n, err) < 0)
		return -1;
	return closure_write(f, zero, (size_t)((8 - n % 8) % 8), err);
}

static uint64_t
closure_nar_strlen(size_t n)
{
	return 8 + (n + 7) / 8 * 8;
}

/* A batch member's part of the batch's NAR directory, in bytes. */
static uint64_t
closure_entry_len(const struct narinfo *ni)
{
	const char *base = strrchr(ni->store_path, '/') + 1;

	return 5 * 16 + closure_nar_strlen(strlen(base)) + ni->nar_size -
	       sizeof(closure_nar_magic);
}

/*
 * The stream's order of the missing paths (see closure_feed): a NAR of
 * CLOSURE_PUSH_BIG bytes or more alone, runs of smaller ones as batches
 * of up to CLOSURE_PUSH_BATCH bytes, sorted by name within (a NAR
 * directory's order). Fills f->jobs and f->plan; returns their count.
 */
static int
closure_job_cmp(const void *a, const void *b)
{
	const struct nar_job *x = a, *y = b;

	return strcmp(x->ni->store_path, y->ni->store_path);
}

static size_t
closure_plan(struct closure_feed *f)
{
	const struct cst *st = f->st;
	size_t n = 0, first = SIZE_MAX;

	f->jobs = xcalloc(st->cl.n ? st->cl.n : 1, sizeof(*f->jobs));
	f->plan = xcalloc(st->cl.n ? st->cl.n : 1, sizeof(*f->plan));
	for (size_t i = 0; i <= st->cl.n; i++) {
		const struct narinfo *ni =
		    i < st->cl.n ? &st->cl.paths[i].info : NULL;
		bool small = ni != NULL && !st->nonix &&
		             ni->nar_size < CLOSURE_PUSH_BIG &&
		             ni->nar_size >= sizeof(closure_nar_magic);

		if (ni != NULL && !st->missing[i])
			continue;
		/* close the open batch: at the end, a big NAR, or full */
		if (first != SIZE_MAX &&
		    (!small || f->plan[first].blen + closure_entry_len(ni) >
		                   CLOSURE_PUSH_BATCH)) {
			qsort(f->jobs + first, n - first, sizeof(*f->jobs),
			    closure_job_cmp);
			f->plan[first].bcount = n - first;
			f->plan[first].blen += 16;
			f->plan[n - 1].last = true;
			first = SIZE_MAX;
		}
		if (ni == NULL)
			break;
		f->jobs[n].ni = ni;
		f->jobs[n].cache = st->cl.paths[i].substituter;
		f->plan[n].batch = small;
		if (small && first == SIZE_MAX) {
			first = n;
			f->plan[n].blen = 80; /* the directory's header */
		}
		if (small)
			f->plan[first].blen += closure_entry_len(ni);
		f->plan[n].first = small && first == n;
		n++;
	}
	return n;
}

/*
 * nar_fetch_ordered()'s begin: a big NAR's record header; a batch's
 * header, path list and directory header at its first member; each
 * member's directory entry up to its node.
 */
static int
closure_feed_begin(void *arg, size_t i, struct errbuf *err)
{
	static const unsigned char dir[80 - 24] = { 1, 0, 0, 0, 0, 0, 0, 0, '(',
		0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 't', 'y', 'p', 'e',
		0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 'd', 'i', 'r', 'e', 'c',
		't', 'o', 'r', 'y', 0, 0, 0, 0, 0, 0, 0 };
	struct closure_feed *f = arg;
	const struct closure_push_job *pj = &f->plan[i];
	const struct narinfo *ni = f->jobs[i].ni;
	char h[CLOSURE_URL_MAX];
	int n;

	f->headlen = 0;
	f->cur = i;
	if (!pj->batch) {
		n = snprintf(h, sizeof(h), "P %llu %s\n",
		    (unsigned long long)ni->nar_size, ni->store_path);
		if (f->st->nonix)
			closure_tar_begin(f->tw, ni->store_path);
		return closure_write(f, h, (size_t)n, err);
	}
	if (pj->first) {
		size_t ll = 0;

		for (size_t k = i; k < i + pj->bcount; k++)
			ll += strlen(f->jobs[k].ni->store_path) + 1;
		n = snprintf(h, sizeof(h), "B %llu %zu %zu\n",
		    (unsigned long long)pj->blen, pj->bcount, ll);
		if (closure_write(f, h, (size_t)n, err) < 0)
			return -1;
		for (size_t k = i; k < i + pj->bcount; k++) {
			const char *sp = f->jobs[k].ni->store_path;

			if (closure_write(f, sp, strlen(sp), err) < 0 ||
			    closure_write(f, "\n", 1, err) < 0)
				return -1;
		}
		if (closure_write(f, closure_nar_magic, 24, err) < 0 ||
		    closure_write(f, dir, sizeof(dir), err) < 0)
			return -1;
	}
	if (closure_nar_str(f, "entry", err) < 0 ||
	    closure_nar_str(f, "(", err) < 0 ||
	    closure_nar_str(f, "name", err) < 0 ||
	    closure_nar_str(f, strrchr(ni->store_path, '/') + 1, err) < 0 ||
	    closure_nar_str(f, "node", err) < 0)
		return -1;
	return 0;
}

static int
closure_not_nar(struct closure_feed *f, struct errbuf *err)
{
	const struct nar_job *j = &f->jobs[f->cur];

	return err_set(err, SH_ERR_TRUST,
	    "%s from %s/%s: not a NAR (no nix-archive-1 header)",
	    j->ni->store_path, j->cache, j->ni->url);
}

/*
 * The NAR's bytes. The first 24 must be the NAR header: a batch member
 * goes into the directory without it (its node only), a big NAR with it.
 */
static int
closure_feed_bytes(void *arg, const void *p, size_t len, struct errbuf *err)
{
	struct closure_feed *f = arg;
	const unsigned char *c = p;
	size_t k = sizeof(f->head) - f->headlen;

	if (k > len)
		k = len;
	memcpy(f->head + f->headlen, c, k);
	f->headlen += k;
	if (memcmp(f->head, closure_nar_magic, f->headlen) != 0)
		return closure_not_nar(f, err);
	if (f->st->nonix)
		return closure_tar_sink(f->tw, p, len, err);
	if (f->plan[f->cur].batch) {
		c += k;
		len -= k;
	}
	return closure_write(f, c, len, err);
}

/*
 * nar_fetch_ordered()'s end: job i matched its NarSize and NarHash. A big
 * NAR gets its "V ok"; a batch member closes its entry, and the last one
 * the directory, then the batch's "V ok".
 */
static int
closure_feed_end(void *arg, size_t i, struct errbuf *err)
{
	struct closure_feed *f = arg;
	const struct closure_push_job *pj = &f->plan[i];

	if (f->headlen != sizeof(f->head))
		return closure_not_nar(f, err);
	f->cur = i + 1;
	if (pj->batch && closure_nar_str(f, ")", err) < 0)
		return -1;
	if (pj->batch && !pj->last)
		return 0;
	if (pj->batch && closure_nar_str(f, ")", err) < 0)
		return -1;
	if (f->st->nonix && closure_tar_finish(f->tw, err) < 0)
		return -1;
	return closure_write(f, "V ok\n", 5, err);
}

static int
closure_feed_run(struct closure_feed *f, struct errbuf *err)
{
	static const struct nar_order_ops ops = {
		.begin = closure_feed_begin,
		.bytes = closure_feed_bytes,
		.idle = closure_feed_idle,
		.end = closure_feed_end,
	};
	const struct cst *st = f->st;
	struct nar_fetch_opts o;
	struct closure_tarw w;
	struct buf reg;
	size_t n = 0;
	int rc = -1;

	memset(&w, 0, sizeof(w));
	w.f = f;
	buf_init(&w.chunk, CLOSURE_TAR_CHUNK);
	f->tw = &w;
	memset(&o, 0, sizeof(o));
	o.timeout_s = f->timeout_s;
	o.interrupted = f->interrupted;
	o.parallel = CLOSURE_PUSH_JOBS;
	n = closure_plan(f);
	f->cur = 0;
	buf_init(&reg, REMOTE_SCRIPT_MAX);
	if (nix_closure_reginfo(&st->cl, st->missing, &reg) < 0) {
		err_set(err, SH_ERR_STEP, "the registration is too long");
		goto out;
	}
	if (closure_write_block(f, 'L', &st->list, err) < 0 ||
	    nar_fetch_ordered(f->jobs, n, &o, &ops, f, err) < 0 ||
	    closure_write_block(f, 'E', &reg, err) < 0 ||
	    closure_flush(f, err) < 0)
		goto out;
	rc = 0;
out:
	nar_tar_free(w.t); /* a path cut short */
	f->tw = NULL;
	buf_release(&w.chunk);
	buf_release(&reg);
	free(f->jobs);
	free(f->plan);
	f->jobs = NULL;
	f->plan = NULL;
	return rc;
}

static void *
closure_feed_main(void *arg)
{
	struct closure_feed *f = arg;
	sigset_t set;

	/* Signals are the main thread's (its poll must see them); a write
	 * to a closed pipe is EPIPE here, not a signal. */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	err_clear(&f->err);
	f->rc = closure_feed_run(f, &f->err);
	close(f->fd);
	f->fd = -1;
	return NULL;
}

static int
closure_push(struct run_ctx *ctx, const struct step *step, struct cst *st,
    struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct closure_feed feed;
	struct closure_prog prog;
	struct remote_out out;
	struct buf script;
	struct errbuf rerr;
	pthread_t th;
	int p[2], rc = -1;

	if (st->nmissing == 0 && st->nonix)
		return closure_attest_rec(ctx, step, st, res, err);
	if (st->nmissing == 0) /* attest only, as pull does */
		return closure_copy(ctx, step, st, res, err);
	memset(&out, 0, sizeof(out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (closure_script(st, "", &script) < 0 || stepsh_traps(&script) < 0 ||
	    buf_adds(&script, closure_sh_sweep) < 0 ||
	    (st->nonix && buf_adds(&script, closure_sh_sweep_unrecorded) < 0) ||
	    buf_adds(&script,
	        st->nonix ? closure_sh_push_tar : closure_sh_push) < 0 ||
	    remote_script(&cmd, &script, err) < 0) {
		buf_release(&script);
		return err_set(
		    err, SH_ERR_INTERNAL, "closure: script too long");
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		buf_release(&script);
		return err_set(err, SH_ERR_IO, "closure %s: pipe: %s", st->root,
		    strerror(errno));
	}
	/* Best effort: a larger pipe lets the channel read (and frame) up
	 * to 1 MiB at once. */
	(void)fcntl(p[1], F_SETPIPE_SZ, (int)(1u << 20));
	memset(&feed, 0, sizeof(feed));
	feed.st = st;
	feed.fd = p[1];
	feed.timeout_s = st->c->cache_timeout_s;
	feed.interrupted = ctx->interrupted;
	if (pthread_create(&th, NULL, closure_feed_main, &feed) != 0) {
		close(p[0]);
		close(p[1]);
		buf_release(&script);
		return err_set(err, SH_ERR_INTERNAL,
		    "closure %s: cannot start the push feeder", st->root);
	}
	closure_prog_init(&prog, ctx, st);
	closure_prog_show(&prog);
	cmd.payload_fd = p[0];
	cmd.on_stderr = closure_prog_feed;
	cmd.on_stderr_arg = &prog;
	err_clear(&rerr);
	rc = stepsh_exec(ctx, step, &cmd, &out, res, &rerr);
	close(p[0]); /* a feeder still writing gets EPIPE and stops */
	pthread_join(th, NULL);
	/* The first cause wins: a feeder's failure ends the stream (the
	 * script only sees EOF), a script's failure breaks the pipe. */
	if (feed.rc < 0 && !(feed.broken && rc < 0)) {
		*err = feed.err;
		err_prefix(err, "closure %s: push: ", st->root);
		rc = -1;
	} else if (rc < 0) {
		*err = rerr;
		err_prefix(err, "closure %s: push: ", st->root);
	} else {
		rc = closure_attest(st, &out.out, err);
	}
	closure_prog_free(&prog);
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

/* "profile P: generation 3 -> 4 (ROOT)"; "new, generation 1" at first. */
static void
closure_gen_line(struct step_result *res, const char *pr, long before,
    long after, const char *root)
{
	if (before < 0)
		step_result_change(res, "profile %s: new, generation %ld (%s)",
		    pr, after < 1 ? 1 : after, root);
	else
		step_result_change(res,
		    "profile %s: generation %ld -> %ld (%s)", pr, before, after,
		    root);
}

/*
 * The copy registers the GC root link while it realises (no window for a
 * garbage collection); with a profile, the profile round trip removes it
 * again once the profile holds the root.
 */
static bool
closure_profile_needed(const struct cst *st)
{
	if (st->c->profile == NULL)
		return !st->gcroot_ok && st->nmissing == 0;
	return st->current == NULL || strcmp(st->current, st->root) != 0 ||
	       !st->owner_ok || st->gcroot_ok || st->nmissing > 0;
}

static int
closure_profile(struct run_ctx *ctx, const struct step *step, struct cst *st,
    struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	struct buf script;
	const char *p, *end, *l;
	size_t len;
	int rc = -1;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	memset(&out, 0, sizeof(out));
	if (closure_script(st, closure_sh_profile, &script) < 0) {
		err_set(err, SH_ERR_INTERNAL, "closure: script too long");
		goto out;
	}
	if (closure_exec(ctx, step, &script, st, NULL, &out, res, err) < 0)
		goto out;
	p = out.out.data;
	end = p + out.out.len;
	while (closure_next_line(&p, end, &l, &len))
		if (len > 2 && l[0] == 'G' && l[1] == ' ')
			(void)closure_gen(l + 2, len - 2, &st->gen_after);
	if (st->gen_after >= 0)
		closure_gen_line(res, st->pr ? st->pr : st->c->profile, st->gen,
		    st->gen_after, st->root);
	(void)stepsh_changes(res, &out.out);
	rc = 0;
out:
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

/* ============================================================ results */

/* "copy 37 paths (123.4 MiB) from URL, URL" */
static void
closure_copy_line(const struct cst *st, struct step_result *res)
{
	const struct closure_cfg *c = st->c;
	struct buf b;
	bool first = true;

	if (st->nmissing == 0)
		return;
	buf_init(&b, 64u << 10);
	buf_addf(&b, "copy %zu path%s (", st->nmissing,
	    st->nmissing == 1 ? "" : "s");
	buf_add_size(&b, st->bytes_missing);
	buf_adds(&b, ") from");
	for (size_t s = 0; s < c->subs.n; s++) {
		for (size_t i = 0; i < st->cl.n; i++) {
			if (!st->missing[i] ||
			    strcmp(st->cl.paths[i].substituter, c->subs.v[s]))
				continue;
			buf_addf(&b, "%s %s", first ? "" : ",", c->subs.v[s]);
			first = false;
			break;
		}
	}
	step_result_change(res, "%s", b.data);
	buf_release(&b);
}

static void
closure_gcroot_line(const struct cst *st, struct step_result *res)
{
	if (st->c->profile == NULL && !st->gcroot_ok)
		step_result_change(res, "gc root %s/%s -> %s",
		    CLOSURE_GCROOT_DIR, strrchr(st->root, '/') + 1, st->root);
}

/* The changes a probe would make beyond the copy. */
static void
closure_plan_lines(const struct cst *st, struct step_result *res)
{
	const struct closure_cfg *c = st->c;

	if (c->profile == NULL) {
		closure_gcroot_line(st, res);
		return;
	}
	bool sw = st->current == NULL || strcmp(st->current, st->root) != 0;

	if (sw)
		closure_gen_line(res, st->pr, st->gen, st->gen + 1, st->root);
	if (c->user != NULL && (sw || !st->owner_ok))
		step_result_change(
		    res, "owner of profile %s -> %s", st->pr, c->user);
}

static void
closure_fill(const struct cst *st, struct step_result *res)
{
	struct step_closure *sc = xcalloc(1, sizeof(*sc));
	struct buf h;

	sc->root = xstrdup(st->root);
	sc->system = xstrdup(st->system);
	sc->profile = st->c->profile ? xstrdup(st->c->profile) : NULL;
	sc->nar_size = st->cl.nar_size;
	sc->file_size = st->cl.file_size;
	sc->paths_missing = st->nmissing;
	sc->bytes_missing = st->bytes_missing;
	sc->generation_before = st->gen;
	sc->generation_after = st->gen_after;
	sc->paths = xcalloc(st->cl.n ? st->cl.n : 1, sizeof(*sc->paths));
	buf_init(&h, 128);
	for (size_t i = 0; i < st->cl.n; i++) {
		const struct closure_path *cp = &st->cl.paths[i];

		buf_reset(&h);
		sc->paths[i].path = xstrdup(cp->info.store_path);
		sc->paths[i].nar_hash =
		    xstrdup(closure_norm_hash(cp->info.nar_hash, &h) == 0
		                ? h.data
		                : cp->info.nar_hash);
		sc->paths[i].nar_size = cp->info.nar_size;
		sc->paths[i].signer = xstrdup(cp->signer ? cp->signer : "");
		sc->paths[i].substituter =
		    xstrdup(cp->substituter ? cp->substituter : "");
	}
	sc->n = st->cl.n;
	buf_release(&h);
	step_closure_free(res->closure);
	res->closure = sc;
}

/* ======================================================== probe/apply */

/* Steps 1-3: the root, the verified closure, the target's state. */
static int
closure_prepare(struct run_ctx *ctx, const struct step *step, struct cst *st,
    struct step_result *res, struct errbuf *err)
{
	uint64_t t0;

	memset(st, 0, sizeof(*st)); /* every part is safe to free zeroed */
	st->c = step->cfg;
	st->gen = st->gen_after = -1;
	if (closure_pick_root(ctx, st->c, st, err) < 0)
		return -1;
	t0 = now_ms();
	if (closure_resolve(ctx, st, err) < 0)
		return -1;
	step_result_detail(
	    res, "resolve_ms", "%llu", (unsigned long long)(now_ms() - t0));
	step_result_detail(res, "closure_root", "%s", st->root);
	step_result_detail(res, "closure_paths", "%zu", st->cl.n);
	t0 = now_ms();
	if (closure_query(ctx, step, st, res, err) < 0)
		return -1;
	step_result_detail(
	    res, "query_ms", "%llu", (unsigned long long)(now_ms() - t0));
	step_result_detail(res, "paths_missing", "%zu", st->nmissing);
	step_result_detail(res, "bytes_missing", "%llu",
	    (unsigned long long)st->bytes_missing);
	return closure_check_space(st, err);
}

/* Copies what is missing, then roots it and points the profile at it. */
static int
closure_apply(struct run_ctx *ctx, const struct step *step, struct cst *st,
    struct step_result *res, struct errbuf *err)
{
	uint64_t t0 = now_ms();

	if ((st->c->push ? closure_push(ctx, step, st, res, err)
	                 : closure_copy(ctx, step, st, res, err)) < 0)
		return -1;
	step_result_detail(
	    res, "copy_attest_ms", "%llu", (unsigned long long)(now_ms() - t0));
	closure_copy_line(st, res);
	if (st->nmissing > 0) /* the copy made it */
		closure_gcroot_line(st, res);
	if (closure_profile_needed(st) &&
	    closure_profile(ctx, step, st, res, err) < 0)
		return -1;
	return 0;
}

static int
closure_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	struct cst st;
	int rc = -1;

	if (closure_prepare(ctx, step, &st, res, err) < 0)
		goto out;
	if (mode == STEP_PROBE) {
		closure_copy_line(&st, res);
		closure_plan_lines(&st, res);
	} else if (closure_apply(ctx, step, &st, res, err) < 0) {
		goto out;
	}
	res->changed = res->changes.n > 0;
	rc = 0;
out:
	if (st.cl.n > 0) /* a failed step still reports what it resolved */
		closure_fill(&st, res);
	cst_free(&st);
	return rc;
}

static void
closure_describe(const struct step *step, struct buf *out)
{
	const struct closure_cfg *c = step->cfg;

	buf_adds(out, "closure ");
	if (c->path != NULL)
		buf_adds(out, c->path);
	for (size_t i = 0; i < c->narch; i++)
		buf_addf(out, "%s%s: %s", i ? ", " : "{ ", c->arch[i].system,
		    c->arch[i].path);
	if (c->narch > 0)
		buf_adds(out, " }");
	buf_adds(out, " from");
	for (size_t i = 0; i < c->subs.n; i++)
		buf_addf(out, "%s %s", i ? "," : "", c->subs.v[i]);
	buf_addf(out, " (%zu trusted key%s)", c->key_specs.n,
	    c->key_specs.n == 1 ? "" : "s");
	if (c->profile != NULL)
		buf_addf(out, " -> %s", c->profile);
	if (c->user != NULL)
		buf_addf(out, " as %s", c->user);
	if (c->push)
		buf_adds(out, " (push)");
	if (strcmp(c->nix, "auto") != 0)
		buf_addf(out, " (nix %s)", c->nix);
}

const struct step_kind step_kind_closure = {
	.name = "closure",
	.flags = STEP_RETRY_SAFE,
	.keys = closure_keys,
	.cfg_size = sizeof(struct closure_cfg),
	.parse = closure_parse,
	.run = closure_run,
	.describe = closure_describe,
	.release = closure_release,
};
