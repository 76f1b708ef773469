/*
 * steps/download.c: the `download` step kind: copy a file or a directory
 * tree from the target to the controller.
 *
 * Manifest fields:
 *   src    required, absolute remote path: a file or a directory
 *          (symlinks inside a tree are followed)
 *   dest   required, local path. A relative dest is relative to the
 *          current working directory of stagehand (NOT the manifest's
 *          directory: downloads are run artefacts, like --report). Missing
 *          parent directories are created (0755). For a file, the file
 *          itself; for a tree, the directory its content goes into
 *   mode   octal, single file only: the local file's mode. Default: an
 *          existing file keeps its mode, a new one gets the remote mode
 *
 * Semantics: a local file is replaced only when its content (or, in a
 * tree, its mode) differs from the remote one; replacement is atomic (a
 * temp file in the same directory, then rename). A tree never deletes
 * local files that are not on the target; the existing dest directory's
 * own mode is left alone.
 *
 * apply (one round trip): the remote script writes a marker line on stderr
 * ("stagehand-download file MODE" or "stagehand-download dir") and then
 * streams the file (cat) or a tar of the tree (tar -ch) on stdout, which
 * remote_run() writes into a local temp file (stdout_fd). A file is
 * compared with dest and renamed over it when different; a tree is
 * extracted locally (tar -x into a temp dir next to dest) and merged entry
 * by entry. A second apply reports ok.
 *
 * probe (one round trip): the remote prints the mode and sha256 of the
 * file, or of every entry of the tree (find -printf, sha256sum -z, NUL
 * separated so any file name works); they are compared with the local
 * files (libsodium sha256). Nothing is written anywhere.
 *
 * Change lines: "create ./x", "content ./x", "mode ./x: 644 -> 600",
 * "create directory ./d". STEP_RETRY_SAFE.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/stepsh.h"
#include "target/remote.h"
#include "util/limits.h"

struct download_cfg {
	const char *src;  /* borrowed */
	const char *dest; /* borrowed */
	unsigned mode;
	bool mode_set;
};

static const char *const download_keys[] = {
	"src",
	"dest",
	"mode",
	NULL,
};

/* ======================================================== parse */

static int
download_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct download_cfg *c = cfg;
	const struct node *d;

	if (stepsh_abs_path(body, "src", &c->src, err) < 0 ||
	    node_req_str(body, "dest", &c->dest, err) < 0 ||
	    node_opt_mode(body, "mode", &c->mode, &c->mode_set, err) < 0)
		return -1;
	d = node_get(body, "dest");
	if (c->dest[0] == '\0' || strlen(c->dest) != d->len)
		return node_err(
		    err, d, "dest: must be a non-empty path without NUL");
	return 0;
}

/* ======================================================== local helpers */

/* The directory part of path ("." when it has none). Caller frees. */
static char *
download_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

/* 1: same bytes, 0: different (or b missing), -1: error reading a. */
static int
download_same(const char *a, const char *b)
{
	char *x = xmalloc(1u << 16), *y = xmalloc(1u << 16);
	int fa = open(a, O_RDONLY | O_CLOEXEC);
	int fb = open(b, O_RDONLY | O_CLOEXEC);
	int rc = fa < 0 ? -1 : fb < 0 ? 0 : 1;

	while (rc == 1) {
		ssize_t n = read(fa, x, 1u << 16), m;

		if (n < 0) {
			rc = -1;
			break;
		}
		m = n > 0 ? read(fb, y, (size_t)n) : read(fb, y, 1);
		if (m != n || (n > 0 && memcmp(x, y, (size_t)n) != 0))
			rc = 0;
		if (n == 0)
			break;
	}
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	free(x);
	free(y);
	return rc;
}

static int
download_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	(void)remove(p);
	return 0;
}

static void
download_rmtree(const char *dir)
{
	(void)nftw(dir, download_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* tar -x -p -f TAR -C DIR, as a child process (the controller has tar). */
static int
download_untar(const char *tar, const char *dir, struct errbuf *err)
{
	pid_t pid = fork();

	if (pid < 0)
		return err_set(err, SH_ERR_IO, "fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		if (null >= 0)
			dup2(null, 0);
		execlp("tar", "tar", "-x", "-p", "--no-same-owner", "-f", tar,
		    "-C", dir, (char *)NULL);
		_exit(EXIT_EXEC_FAILED);
	}
	return stepsh_reap(pid, "tar -x of the downloaded tree", err);
}

/* ======================================================== apply */

/* One directory of the extracted tree: make sure dst is one like it. */
static int
download_merge_dir(const char *dst, const struct stat *want,
    struct step_result *res, struct errbuf *err)
{
	struct stat sb;
	unsigned mode = (unsigned)want->st_mode & 07777;

	if (lstat(dst, &sb) < 0) {
		if (mkdir(dst, (mode_t)mode) < 0 ||
		    chmod(dst, (mode_t)mode) < 0)
			return err_set(
			    err, SH_ERR_IO, "%s: %s", dst, strerror(errno));
		step_result_change(res, "create directory %s", dst);
		return 0;
	}
	if (!S_ISDIR(sb.st_mode))
		return err_set(err, SH_ERR_STEP,
		    "%s exists and is not a "
		    "directory",
		    dst);
	if (((unsigned)sb.st_mode & 07777) != mode) {
		if (chmod(dst, (mode_t)mode) < 0)
			return err_set(
			    err, SH_ERR_IO, "%s: %s", dst, strerror(errno));
		step_result_change(res, "mode %s: %o -> %o", dst,
		    (unsigned)sb.st_mode & 07777, mode);
	}
	return 0;
}

/* One file of the extracted tree (src): rename it over dst if needed. */
static int
download_merge_file(const char *src, const char *dst, const struct stat *want,
    struct step_result *res, struct errbuf *err)
{
	struct stat sb;
	bool exists = lstat(dst, &sb) == 0;
	int same = 0;

	if (exists && !S_ISREG(sb.st_mode))
		return err_set(err, SH_ERR_STEP,
		    "%s exists and is not a "
		    "regular file",
		    dst);
	if (exists && (same = download_same(src, dst)) < 0)
		return err_set(err, SH_ERR_IO, "%s: %s", src, strerror(errno));
	if (exists && same && (sb.st_mode & 07777) == (want->st_mode & 07777))
		return 0;
	if (rename(src, dst) < 0)
		return err_set(
		    err, SH_ERR_IO, "rename to %s: %s", dst, strerror(errno));
	if (!exists)
		step_result_change(res, "create %s", dst);
	else if (!same)
		step_result_change(res, "content %s", dst);
	else
		step_result_change(res, "mode %s: %o -> %o", dst,
		    (unsigned)sb.st_mode & 07777,
		    (unsigned)want->st_mode & 07777);
	return 0;
}

static int
download_merge(const char *tmp, const char *dest, unsigned depth,
    struct step_result *res, struct errbuf *err)
{
	struct strlist names = { NULL, 0 };
	int rc = depth > 64 ? err_set(err, SH_ERR_STEP, "%s: too deep", tmp)
	                    : stepsh_list_dir(tmp, &names, err);

	for (size_t i = 0; i < names.n && rc == 0; i++) {
		char *s = xasprintf("%s/%s", tmp, names.v[i]);
		char *d = xasprintf("%s/%s", dest, names.v[i]);
		struct stat sb;

		if (lstat(s, &sb) < 0)
			rc = err_set(
			    err, SH_ERR_IO, "%s: %s", s, strerror(errno));
		else if (S_ISDIR(sb.st_mode))
			rc = download_merge_dir(d, &sb, res, err) < 0
			         ? -1
			         : download_merge(s, d, depth + 1, res, err);
		else if (S_ISREG(sb.st_mode))
			rc = download_merge_file(s, d, &sb, res, err);
		else
			rc = err_set(err, SH_ERR_STEP,
			    "download: %s: not a "
			    "file or directory",
			    d);
		free(s);
		free(d);
	}
	strlist_free(&names);
	return rc;
}

static int
download_tree(const struct download_cfg *c, const char *tar, const char *parent,
    struct step_result *res, struct errbuf *err)
{
	char *tmp = xasprintf("%s/.stagehand-dl.XXXXXX", parent);
	struct stat sb;
	int rc = -1;

	if (mkdtemp(tmp) == NULL) {
		err_set(err, SH_ERR_IO, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	if (download_untar(tar, tmp, err) < 0)
		goto out;
	if (lstat(c->dest, &sb) < 0) {
		if (mkdir(c->dest, 0755) < 0) {
			err_set(
			    err, SH_ERR_IO, "%s: %s", c->dest, strerror(errno));
			goto out;
		}
		step_result_change(res, "create directory %s", c->dest);
	} else if (!S_ISDIR(sb.st_mode)) {
		err_set(err, SH_ERR_STEP, "%s exists and is not a directory",
		    c->dest);
		goto out;
	}
	rc = download_merge(tmp, c->dest, 0, res, err);
out:
	download_rmtree(tmp);
	free(tmp);
	return rc;
}

/* A single file now in tmp (remote mode rmode): rename it over dest. */
static int
download_file(const struct download_cfg *c, const char *tmp, unsigned rmode,
    struct step_result *res, struct errbuf *err)
{
	struct stat sb, want;
	bool exists = stat(c->dest, &sb) == 0;

	memset(&want, 0, sizeof(want));
	want.st_mode = (mode_t)(c->mode_set ? c->mode
	                        : exists    ? (unsigned)sb.st_mode & 07777
	                                    : rmode);
	if (exists && !S_ISREG(sb.st_mode))
		return err_set(err, SH_ERR_STEP,
		    "%s exists and is not a "
		    "regular file",
		    c->dest);
	if (chmod(tmp, want.st_mode) < 0)
		return err_set(err, SH_ERR_IO, "%s: %s", tmp, strerror(errno));
	return download_merge_file(tmp, c->dest, &want, res, err);
}

static const char download_get_sh[] =
    "set -u\n"
    "if [ -d \"$S\" ]; then\n"
    "\techo 'stagehand-download dir' >&2\n"
    "\tcd -- \"$S\" && exec tar -chf - .\n"
    "elif [ -f \"$S\" ]; then\n"
    "\tm=$(stat -L -c %a -- \"$S\") || exit 1\n"
    "\techo \"stagehand-download file $m\" >&2\n"
    "\texec cat -- \"$S\"\n"
    "fi\n"
    "echo \"$S: no such file or directory\" >&2\n"
    "exit 1\n";

/* Reads the marker line; *dir or *mode from it. */
static int
download_marker(
    const struct buf *e, bool *dir, unsigned *mode, struct errbuf *err)
{
	const char *p = e->data;
	size_t n;

	*dir = false;
	*mode = 0644;
	if (str_has_prefix(p, "stagehand-download dir\n")) {
		*dir = true;
		return 0;
	}
	if (!str_has_prefix(p, "stagehand-download file "))
		return err_set(err, SH_ERR_REMOTE,
		    "download: no marker from "
		    "the target");
	p += strlen("stagehand-download file ");
	n = strcspn(p, "\n");
	if (parse_mode(p, n, mode) < 0)
		return err_set(err, SH_ERR_REMOTE,
		    "download: bad mode "
		    "from the target");
	return 0;
}

/*
 * Runs "S=src" and sh (a script of at most max bytes) with stepsh_exec(),
 * stdout into fd unless it is -1. Caller frees out, always.
 */
static int
download_exec(struct run_ctx *ctx, const struct step *step, const char *sh,
    size_t max, int fd, struct remote_out *out, struct step_result *res,
    struct errbuf *err)
{
	const struct download_cfg *c = step->cfg;
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct buf script;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	buf_init(&script, max);
	if (stepsh_assign(&script, "S", c->src) < 0 ||
	    buf_adds(&script, sh) < 0) {
		err_set(err, SH_ERR_STEP, "download: script too long");
		goto out;
	}
	if (remote_script(&cmd, &script, err) < 0)
		goto out;
	cmd.stdout_fd = fd;
	rc = stepsh_exec(ctx, step, &cmd, out, res, err);
out:
	buf_release(&script);
	return rc;
}

static int
download_fetch(struct run_ctx *ctx, const struct step *step, int fd, bool *dir,
    unsigned *mode, struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	int rc;

	rc = download_exec(
	    ctx, step, download_get_sh, REMOTE_SCRIPT_MAX, fd, &out, res, err);
	if (rc == 0)
		rc = download_marker(&out.err, dir, mode, err);
	remote_out_free(&out);
	return rc;
}

static int
download_apply(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct download_cfg *c = step->cfg;
	char *parent = download_dirname(c->dest);
	char *tmp = xasprintf("%s/.stagehand-dl.XXXXXX", parent);
	unsigned mode;
	bool dir;
	int fd = -1, rc = -1;

	if (mkdir_p(parent, 0755, err) < 0)
		goto out;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		err_set(err, SH_ERR_IO, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (download_fetch(ctx, step, fd, &dir, &mode, res, err) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		err_set(err, SH_ERR_IO, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	rc = dir ? download_tree(c, tmp, parent, res, err)
	         : download_file(c, tmp, mode, res, err);
out:
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp); /* gone already when it was renamed */
	if (res->changes.n > 0 || res->changes_dropped > 0)
		res->changed = true;
	free(tmp);
	free(parent);
	return rc;
}

/* ======================================================== probe */

static const char download_probe_sh[] =
    "set -u\n"
    "if [ -d \"$S\" ]; then\n"
    "\tcd -- \"$S\" || exit 1\n"
    "\tprintf 'D\\0'\n"
    "\tfind -L . -mindepth 1 \\( -type d -printf 'd %m %P\\0' \\) -o "
    "\\( -type f -printf 'f %m %P\\0' \\) || exit 1\n"
    "\tfind -L . -mindepth 1 -type f -exec sha256sum -z -- {} + || exit 1\n"
    "elif [ -f \"$S\" ]; then\n"
    "\tm=$(stat -L -c %a -- \"$S\") && s=$(sha256sum < \"$S\") || exit 1\n"
    "\tprintf 'F\\0f %s \\0%s  ./\\0' \"$m\" \"${s%% *}\"\n"
    "else\n"
    "\techo \"$S: no such file or directory\" >&2; exit 1\n"
    "fi\n";

/* One record of the probe's output, pointing into the output buffer. */
struct download_rec {
	const char *rel;
	const char *hash; /* files: 64 hex digits; NULL for directories */
	unsigned mode;
	bool dir;
};

struct download_recs {
	struct download_rec *v; /* owned */
	size_t n;
	const char **hashes; /* owned array: "HASH  ./rel" records */
	size_t nhashes;
};

static int
download_hashcmp(const void *a, const void *b)
{
	return strcmp(
	    *(const char *const *)a + 68, *(const char *const *)b + 68);
}

static int
download_reccmp(const void *a, const void *b)
{
	return strcmp(((const struct download_rec *)a)->rel,
	    ((const struct download_rec *)b)->rel);
}

/* "d MODE REL" / "f MODE REL" / "HASH  ./REL" (64 hex + 2 spaces + ./) */
static int
download_rec_add(struct download_recs *r, const char *s, size_t len)
{
	struct download_rec *e;
	size_t sp;

	if (len >= 68 && s[64] == ' ' && s[65] == ' ' && s[66] == '.' &&
	    s[67] == '/') {
		r->hashes = xreallocarray(
		    r->hashes, r->nhashes + 1, sizeof(*r->hashes));
		r->hashes[r->nhashes++] = s;
		return 0;
	}
	if (len < 4 || (s[0] != 'd' && s[0] != 'f') || s[1] != ' ')
		return -1;
	sp = strcspn(s + 2, " ");
	r->v = xreallocarray(r->v, r->n + 1, sizeof(*r->v));
	e = &r->v[r->n];
	memset(e, 0, sizeof(*e));
	e->dir = s[0] == 'd';
	e->rel = s + 2 + sp + 1;
	if (s[2 + sp] != ' ' || parse_mode(s + 2, sp, &e->mode) < 0)
		return -1;
	r->n++;
	return 0;
}

static int
download_parse_recs(
    const struct buf *o, struct download_recs *r, struct errbuf *err)
{
	size_t off = 2;

	for (; off < o->len;) {
		size_t len = strlen(o->data + off);

		if (off + len >= o->len ||
		    download_rec_add(r, o->data + off, len) < 0)
			return err_set(err, SH_ERR_REMOTE,
			    "download: unexpected listing from the target");
		off += len + 1;
	}
	if (r->n > 1)
		qsort(r->v, r->n, sizeof(*r->v), download_reccmp);
	if (r->nhashes > 1)
		qsort(r->hashes, r->nhashes, sizeof(*r->hashes),
		    download_hashcmp);
	for (size_t i = 0; i < r->n; i++) {
		const char *key, **hit;
		char *probe;

		if (r->v[i].dir)
			continue;
		probe = xasprintf("%64s  ./%s", "", r->v[i].rel);
		key = probe;
		hit = bsearch(&key, r->hashes, r->nhashes, sizeof(*r->hashes),
		    download_hashcmp);
		r->v[i].hash = hit ? *hit : NULL;
		free(probe);
	}
	return 0;
}

/* Compares one remote entry with the local path; adds change lines. */
static int
download_probe_one(const struct download_rec *e, const char *local,
    bool keep_mode, struct step_result *res, struct errbuf *err)
{
	struct buf hash;
	struct stat sb;
	uint64_t size;
	int rc = 0;

	if (lstat(local, &sb) < 0) {
		step_result_change(
		    res, "create %s%s", e->dir ? "directory " : "", local);
		return 0;
	}
	if (e->dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode))
		return err_set(err, SH_ERR_STEP, "%s exists and is not a %s",
		    local, e->dir ? "directory" : "regular file");
	if (!keep_mode && ((unsigned)sb.st_mode & 07777) != e->mode)
		step_result_change(res, "mode %s: %o -> %o", local,
		    (unsigned)sb.st_mode & 07777, e->mode);
	if (e->dir)
		return 0;
	buf_init(&hash, 128);
	rc = stepsh_sha256_file(local, &hash, &size, err);
	if (rc == 0 &&
	    (e->hash == NULL || strncmp(e->hash, hash.data, 64) != 0))
		step_result_change(res, "content %s", local);
	buf_release(&hash);
	return rc;
}

static int
download_compare(const struct download_cfg *c, const struct buf *o,
    struct step_result *res, struct errbuf *err)
{
	struct download_recs r;
	bool tree = o->len >= 2 && o->data[0] == 'D' && o->data[1] == '\0';
	int rc;

	memset(&r, 0, sizeof(r));
	if (!tree && !(o->len >= 2 && o->data[0] == 'F' && o->data[1] == '\0'))
		return err_set(err, SH_ERR_REMOTE,
		    "download: unexpected "
		    "listing from the target");
	rc = download_parse_recs(o, &r, err);
	if (rc == 0 && !tree && r.n == 1) {
		struct stat sb;
		bool exists = lstat(c->dest, &sb) == 0;

		r.v[0].rel = c->dest;
		r.v[0].mode = c->mode_set ? c->mode : r.v[0].mode;
		r.v[0].hash = r.nhashes ? r.hashes[0] : NULL;
		rc = download_probe_one(
		    &r.v[0], c->dest, exists && !c->mode_set, res, err);
	} else if (rc == 0 && tree) {
		struct stat sb;

		if (lstat(c->dest, &sb) < 0)
			step_result_change(res, "create directory %s", c->dest);
		else if (!S_ISDIR(sb.st_mode))
			rc = err_set(err, SH_ERR_STEP,
			    "%s exists and is not a directory", c->dest);
		for (size_t i = 0; i < r.n && rc == 0; i++) {
			char *local = xasprintf("%s/%s", c->dest, r.v[i].rel);

			rc =
			    download_probe_one(&r.v[i], local, false, res, err);
			free(local);
		}
	}
	free(r.v);
	free(r.hashes);
	return rc;
}

static int
download_probe(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	int rc;

	rc = download_exec(
	    ctx, step, download_probe_sh, 1u << 16, -1, &out, res, err);
	if (rc == 0) {
		rc = download_compare(step->cfg, &out.out, res, err);
		if (res->changes.n > 0 || res->changes_dropped > 0)
			res->changed = true;
	}
	remote_out_free(&out);
	return rc;
}

/* probe compares a listing with dest; apply fetches the file or tree. */
static int
download_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	if (mode == STEP_PROBE)
		return download_probe(ctx, step, res, err);
	return download_apply(ctx, step, res, err);
}

static void
download_describe(const struct step *step, struct buf *out)
{
	const struct download_cfg *c = step->cfg;

	buf_addf(out, "download %s -> %s", c->src, c->dest);
	if (c->mode_set)
		buf_addf(out, " (%04o)", c->mode);
}

const struct step_kind step_kind_download = {
	.name = "download",
	.flags = STEP_RETRY_SAFE,
	.keys = download_keys,
	.cfg_size = sizeof(struct download_cfg),
	.parse = download_parse,
	.run = download_run,
	.describe = download_describe,
};
