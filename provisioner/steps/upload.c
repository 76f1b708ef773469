/*
 * steps/upload.c: the `upload` step kind: copy a file, inline text or a
 * directory tree from the controller to the target.
 *
 * Manifest fields:
 *   src       local path; relative paths are resolved against the
 *             directory of the manifest file that holds the step. A file
 *             or a directory (a tree: regular files and directories only;
 *             symlinks and special files in it are refused)
 *   content   inline text instead of src (may hold ${secret} values: it
 *             travels only on the remote command's stdin)
 *   dest      required, absolute remote path. For a file, the file itself
 *             (a symlink there is followed); its directory must exist. For
 *             a tree, the directory the tree's content goes into (created
 *             0755 when missing)
 *   owner, group   for the file, or for every file and directory of the
 *             tree (not dest itself when it already exists)
 *   mode      octal, single file only: default keeps an existing file's
 *             mode, 0644 for a new one. Tree entries take the local mode
 *
 * Semantics: a file is replaced when its content differs, and its owner,
 * group and mode are fixed in place when they differ. A tree never deletes
 * files on the target that are not in src.
 *
 * apply (one round trip): the content goes on stdin after the script (a
 * tree: the files concatenated in a fixed order by a local feeder
 * process). For each file the remote script reads exactly its size with
 * `head -c` into a mktemp file in the destination's directory, compares it
 * with the existing file (cmp) and only when it differs gives it the old
 * file's owner/mode (or the wanted ones) and renames it over (mv -f,
 * atomic); otherwise the temp file is removed. A second apply therefore
 * reports ok.
 *
 * probe (one round trip, no payload): the local sha256 (libsodium) of each
 * file goes into the script, which compares it with `sha256sum` of the
 * remote file and compares attributes, changing nothing.
 *
 * Change lines: "create /etc/x", "content /etc/x", "mode /etc/x: 600 ->
 * 644", "owner ...", "create directory ...". STEP_RETRY_SAFE.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../limits.h"
#include "../remote.h"
#include "stepsh.h"

#define UPLOAD_TREE_MAX_ENTRIES 100000
#define UPLOAD_TREE_MAX_DEPTH 64

struct upload_cfg {
	const char *src_arg; /* borrowed: src as written */
	char *src;           /* owned: resolved local path; NULL for content */
	const char *content; /* borrowed */
	size_t content_len;
	const char *dest;    /* borrowed */
	struct stepsh_attrs attrs;
	bool tree;
};

struct upload_ent {
	char *rel; /* owned: path below src, no leading "./" */
	bool dir;
	unsigned mode;
	uint64_t size;
};

struct upload_list {
	struct upload_ent *v; /* owned */
	size_t n;
	uint64_t total;
};

static const char *const upload_keys[] = {
	"src", "content", "dest", "owner", "group", "mode", NULL,
};

/* ======================================================== parse */

static char *
upload_resolve(const char *file, const char *src)
{
	const char *slash;

	if (src[0] == '/' || file == NULL || (slash = strrchr(file, '/')) == NULL)
		return xstrdup(src);
	return xasprintf("%.*s/%s", (int)(slash - file), file, src);
}

static int
upload_check_src(const struct node *body, struct upload_cfg *c,
    struct errbuf *err)
{
	const struct node *n = node_get(body, "src");
	struct stat sb;

	c->src = upload_resolve(n->file, c->src_arg);
	if (stat(c->src, &sb) < 0)
		return node_err(err, n, "src: %s: %s", c->src, strerror(errno));
	if (S_ISDIR(sb.st_mode)) {
		c->tree = true;
		if (c->attrs.mode_set)
			return node_err(err, node_get(body, "mode"),
			    "mode is for single files; a tree keeps the "
			    "local modes");
	} else if (!S_ISREG(sb.st_mode)) {
		return node_err(err, n, "src: %s: not a file or directory",
		    c->src);
	}
	return 0;
}

static int
upload_parse_body(const struct node *body, struct upload_cfg *c,
    struct errbuf *err)
{
	const struct node *cn;

	if (node_opt_str(body, "src", &c->src_arg, err) < 0 ||
	    node_opt_str(body, "content", &c->content, err) < 0 ||
	    stepsh_abs_path(body, "dest", &c->dest, err) < 0 ||
	    stepsh_parse_attrs(body, &c->attrs, err) < 0)
		return -1;
	if ((c->src_arg == NULL) == (c->content == NULL))
		return node_err(err, body, "upload needs exactly one of src "
					   "and content");
	if (c->content != NULL) {
		cn = node_get(body, "content");
		c->content_len = cn->len;
		return 0;
	}
	return upload_check_src(body, c, err);
}

static void
upload_free(void *cfg)
{
	struct upload_cfg *c = cfg;

	if (c == NULL)
		return;
	free(c->src);
	free(c);
}

static int
upload_parse(const struct node *body, const struct step *step, void **cfg,
    struct errbuf *err)
{
	struct upload_cfg *c;

	(void)step;
	*cfg = NULL;
	if (node_expect(body, NODE_MAP, "upload step", err) < 0 ||
	    node_check_keys(body, upload_keys, err) < 0)
		return -1;
	c = xcalloc(1, sizeof(*c));
	if (upload_parse_body(body, c, err) < 0) {
		upload_free(c);
		return -1;
	}
	*cfg = c;
	return 0;
}

/* ======================================================== the local tree */

static void
upload_list_free(struct upload_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].rel);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
upload_list_add(struct upload_list *l, char *rel, const struct stat *sb,
    struct errbuf *err)
{
	struct upload_ent *e;

	if (l->n >= UPLOAD_TREE_MAX_ENTRIES) {
		free(rel);
		return err_set(err, SH_ERR_STEP, "upload: more than %d entries",
		    UPLOAD_TREE_MAX_ENTRIES);
	}
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	e = &l->v[l->n++];
	e->rel = rel;
	e->dir = S_ISDIR(sb->st_mode);
	e->mode = (unsigned)sb->st_mode & 07777;
	e->size = e->dir ? 0 : (uint64_t)sb->st_size;
	l->total += e->size;
	if (l->total > UPLOAD_FILE_MAX)
		return err_set(err, SH_ERR_STEP, "upload: tree larger than %u "
						 "bytes",
		    UPLOAD_FILE_MAX);
	return 0;
}

static int upload_walk(const char *root, const char *rel, unsigned depth,
    struct upload_list *l, struct errbuf *err);

static int
upload_walk_entry(const char *root, const char *rel, const char *name,
    unsigned depth, struct upload_list *l, struct errbuf *err)
{
	char *sub = rel[0] ? xasprintf("%s/%s", rel, name) : xstrdup(name);
	char *full = xasprintf("%s/%s", root, sub);
	struct stat sb;
	int rc = -1;

	if (lstat(full, &sb) < 0) {
		err_set(err, SH_ERR_IO, "%s: %s", full, strerror(errno));
	} else if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode)) {
		err_set(err, SH_ERR_STEP, "upload: %s: only regular files and "
					  "directories can be uploaded",
		    full);
	} else if (upload_list_add(l, xstrdup(sub), &sb, err) == 0) {
		rc = S_ISDIR(sb.st_mode) ?
			 upload_walk(root, sub, depth + 1, l, err) :
			 0;
	}
	free(full);
	free(sub);
	return rc;
}

static int
upload_namecmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the entries below root/rel, sorted, parents before children. */
static int
upload_walk(const char *root, const char *rel, unsigned depth,
    struct upload_list *l, struct errbuf *err)
{
	char *dir = rel[0] ? xasprintf("%s/%s", root, rel) : xstrdup(root);
	struct strlist names = { NULL, 0 };
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (depth > UPLOAD_TREE_MAX_DEPTH)
		rc = err_set(err, SH_ERR_STEP, "upload: %s: too deep", dir);
	else if ((d = opendir(dir)) == NULL)
		rc = err_set(err, SH_ERR_IO, "%s: %s", dir, strerror(errno));
	if (rc < 0)
		goto out;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			strlist_push(&names, de->d_name);
	closedir(d);
	if (names.n > 1)
		qsort(names.v, names.n, sizeof(*names.v), upload_namecmp);
	for (size_t i = 0; i < names.n && rc == 0; i++)
		rc = upload_walk_entry(root, rel, names.v[i], depth, l, err);
out:
	strlist_free(&names);
	free(dir);
	return rc;
}

/* ======================================================== the feeder */

static int
upload_copy_exact(int out, const char *path, uint64_t size)
{
	char *chunk = xmalloc(1u << 16);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = -1;

	while (fd >= 0 && size > 0) {
		size_t want = size < (1u << 16) ? (size_t)size : (1u << 16);
		ssize_t n = read(fd, chunk, want), w = 0;

		if (n <= 0)
			goto out;
		for (ssize_t off = 0; off < n; off += w) {
			w = write(out, chunk + off, (size_t)(n - off));
			if (w < 0 && errno != EINTR)
				goto out;
			if (w < 0)
				w = 0;
		}
		size -= (uint64_t)n;
	}
	rc = fd >= 0 ? 0 : -1;
out:
	if (fd >= 0)
		close(fd);
	free(chunk);
	return rc;
}

/*
 * Forks a process that writes every file of l, in order, exactly its
 * listed size, into a pipe; *fd is the read end (caller closes it and then
 * reaps *pid with upload_feeder_end). A file that shrank ends the stream
 * early, which the remote side reports as a short transfer.
 */
static int
upload_feeder(const char *root, const struct upload_list *l, int *fd,
    pid_t *pid, struct errbuf *err)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return err_set(err, SH_ERR_IO, "pipe: %s", strerror(errno));
	*pid = fork();
	if (*pid < 0) {
		close(p[0]);
		close(p[1]);
		return err_set(err, SH_ERR_IO, "fork: %s", strerror(errno));
	}
	if (*pid == 0) {
		close(p[0]);
		signal(SIGPIPE, SIG_DFL);
		for (size_t i = 0; i < l->n; i++) {
			char *full;

			if (l->v[i].dir)
				continue;
			full = xasprintf("%s/%s", root, l->v[i].rel);
			if (upload_copy_exact(p[1], full, l->v[i].size) < 0)
				_exit(1);
			free(full);
		}
		_exit(0);
	}
	close(p[1]);
	*fd = p[0];
	return 0;
}

static void
upload_feeder_end(int fd, pid_t pid)
{
	int st;

	close(fd);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
}

/* ======================================================== scripts */

/*
 * Inputs: O G (owner/group for everything). Functions:
 *   put PATH MODE SIZE HASH   one file; MODE empty: keep / 0644
 *   mkd PATH MODE ROOT        one directory; ROOT=1: only create
 * In apply, put reads exactly SIZE bytes of stdin first, whatever
 * happens next, so the files that follow stay aligned.
 */
static const char upload_sh[] =
    "t=\n"
    "trap '[ -z \"$t\" ] || rm -f -- \"$t\"' EXIT\n"
    "trap 'exit 143' TERM HUP INT\n"
    "put() {\n"
    "\tp=$1 m=$2 n=$3 h=$4 same=1\n"
    "\tif [ \"$A\" = 1 ]; then\n"
    "\t\tt=$(mktemp \"${p%/*}/.stagehand.XXXXXX\") || exit 1\n"
    "\t\thead -c \"$n\" > \"$t\" || exit 1\n"
    "\t\t[ \"$(stat -c %s -- \"$t\")\" = \"$n\" ] || "
    "die \"short transfer for $p\"\n"
    "\tfi\n"
    "\tif [ -e \"$p\" ]; then\n"
    "\t\t[ -f \"$p\" ] || die \"$p exists and is not a regular file\"\n"
    "\t\tif [ \"$A\" = 1 ]; then cmp -s -- \"$t\" \"$p\" || same=0\n"
    "\t\telse s=$(sha256sum < \"$p\") || exit 1; "
    "[ \"${s%% *}\" = \"$h\" ] || same=0; fi\n"
    "\t\tattrs \"$p\" \"$m\" \"$O\" \"$G\" 0\n"
    "\t\tif [ \"$same\" = 0 ]; then\n"
    "\t\t\tC \"content $p\"\n"
    "\t\t\tif [ \"$A\" = 1 ]; then\n"
    "\t\t\t\tchown --reference=\"$p\" -- \"$t\" && "
    "chmod --reference=\"$p\" -- \"$t\" && mv -f -- \"$t\" \"$p\" || exit 1\n"
    "\t\t\tfi\n"
    "\t\tfi\n"
    "\telse\n"
    "\t\tC \"create $p\"\n"
    "\t\tif [ \"$A\" = 1 ]; then\n"
    "\t\t\t[ -z \"$O\" ] || chown -- \"$O\" \"$t\" || exit 1\n"
    "\t\t\t[ -z \"$G\" ] || chgrp -- \"$G\" \"$t\" || exit 1\n"
    "\t\t\tchmod -- \"${m:-644}\" \"$t\" && mv -f -- \"$t\" \"$p\" || "
    "exit 1\n"
    "\t\tfi\n"
    "\tfi\n"
    "\t[ -z \"$t\" ] || [ ! -e \"$t\" ] || rm -f -- \"$t\"\n"
    "\tt=\n"
    "}\n"
    "mkd() {\n"
    "\tp=$1 m=$2\n"
    "\tif [ -d \"$p\" ]; then\n"
    "\t\t[ \"$3\" = 1 ] || attrs \"$p\" \"$m\" \"$O\" \"$G\" 0\n"
    "\t\treturn 0\n"
    "\tfi\n"
    "\t{ [ -e \"$p\" ] || [ -L \"$p\" ]; } && "
    "die \"$p exists and is not a directory\"\n"
    "\tC \"create directory $p\"\n"
    "\t[ \"$A\" = 1 ] || return 0\n"
    "\tmkdir -p -- \"$p\" && chmod -- \"$m\" \"$p\" || exit 1\n"
    "\t[ -z \"$O\" ] || chown -- \"$O\" \"$p\" || exit 1\n"
    "\t[ -z \"$G\" ] || chgrp -- \"$G\" \"$p\" || exit 1\n"
    "}\n";

static int
upload_begin(const struct upload_cfg *c, bool apply, struct buf *b)
{
	struct stepsh_attrs a = c->attrs;

	a.mode_set = false; /* M is unused; modes go per entry */
	if (stepsh_begin(b, apply) < 0 || stepsh_assign_attrs(b, &a) < 0 ||
	    buf_adds(b, upload_sh) < 0)
		return -1;
	return 0;
}

/* put PATH 'MODE' SIZE HASH; path is sh-quoted unless it is "$D". */
static int
upload_put(struct buf *b, const char *path, const char *mode, uint64_t size,
    const char *hash)
{
	int rc = buf_adds(b, "put ");

	if (rc == 0)
		rc = strcmp(path, "\"$D\"") == 0 ? buf_adds(b, path) :
						   sh_quote(b, path);
	if (rc == 0)
		rc = buf_addc(b, ' ');
	if (rc == 0)
		rc = sh_quote(b, mode);
	if (rc == 0)
		rc = buf_addf(b, " %llu %s\n", (unsigned long long)size, hash);
	return rc;
}

/* The single-file script; hash is "-" for apply. */
static int
upload_file_script(const struct upload_cfg *c, bool apply, uint64_t size,
    const char *hash, struct buf *b)
{
	struct buf mode;
	int rc;

	buf_init(&mode, 32);
	if (c->attrs.mode_set)
		(void)buf_addf(&mode, "%o", c->attrs.mode);
	rc = upload_begin(c, apply, b);
	if (rc == 0)
		rc = stepsh_assign(b, "D", c->dest);
	if (rc == 0)
		rc = buf_adds(b, "[ -L \"$D\" ] && { D=$(readlink -f -- "
				 "\"$D\") || exit 1; }\n"
				 "if [ ! -d \"${D%/*}/\" ]; then\n"
				 "\t[ \"$A\" = 1 ] || { C \"create $D (its "
				 "directory does not exist yet)\"; exit 0; }\n"
				 "\tdie \"${D%/*}/: no such directory\"\n"
				 "fi\n");
	if (rc == 0)
		rc = upload_put(b, "\"$D\"", mode.data, size, hash);
	buf_release(&mode);
	return rc;
}

/* The tree script; with hashes (probe) the local files are read here. */
static int
upload_tree_script(const struct upload_cfg *c, const struct upload_list *l,
    bool apply, struct buf *b, struct errbuf *err)
{
	struct buf path, mode, hash;
	uint64_t size;
	int rc = upload_begin(c, apply, b);

	if (rc == 0)
		rc = buf_adds(b, "mkd ") < 0 || sh_quote(b, c->dest) < 0 ||
			buf_adds(b, " 755 1\n") < 0 ? -1 : 0;
	buf_init(&path, 1u << 20);
	buf_init(&mode, 32);
	buf_init(&hash, 128);
	for (size_t i = 0; i < l->n && rc == 0; i++) {
		const struct upload_ent *e = &l->v[i];

		buf_reset(&path);
		buf_reset(&mode);
		buf_reset(&hash);
		(void)buf_addf(&mode, "%o", e->mode);
		if (buf_addf(&path, "%s/%s", c->dest, e->rel) < 0) {
			rc = -1;
		} else if (e->dir) {
			rc = buf_adds(b, "mkd ") < 0 || sh_quote(b, path.data) < 0 ||
				buf_addf(b, " %s 0\n", mode.data) < 0 ? -1 : 0;
			continue;
		} else if (!apply) {
			char *full = xasprintf("%s/%s", c->src, e->rel);

			rc = stepsh_sha256_file(full, &hash, &size, err);
			free(full);
			if (rc < 0)
				break;
		}
		if (rc == 0)
			rc = upload_put(b, path.data, mode.data, e->size,
			    apply ? "-" : hash.data);
	}
	if (rc < 0 && err->code == SH_OK)
		err_set(err, SH_ERR_STEP, "upload: script too long");
	buf_release(&path);
	buf_release(&mode);
	buf_release(&hash);
	return rc;
}

/* ======================================================== probe / apply */

static int
upload_file_probe_script(const struct upload_cfg *c, struct buf *b,
    struct errbuf *err)
{
	struct buf hash;
	uint64_t size = c->content_len;
	int rc = 0;

	buf_init(&hash, 128);
	if (c->content != NULL)
		stepsh_sha256_mem(c->content, c->content_len, &hash);
	else
		rc = stepsh_sha256_file(c->src, &hash, &size, err);
	if (rc == 0 && upload_file_script(c, false, size, hash.data, b) < 0)
		rc = err_set(err, SH_ERR_STEP, "upload: script too long");
	buf_release(&hash);
	return rc;
}

static int
upload_probe(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	struct upload_list l = { NULL, 0, 0 };
	struct buf script;
	int rc;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (c->tree)
		rc = upload_walk(c->src, "", 0, &l, err) < 0 ? -1 :
		    upload_tree_script(c, &l, false, &script, err);
	else
		rc = upload_file_probe_script(c, &script, err);
	if (rc == 0)
		rc = stepsh_run(ctx, step, &script, res, err);
	upload_list_free(&l);
	buf_release(&script);
	return rc;
}

/* Runs script with the payload (content, a file or the feeder's pipe). */
static int
upload_send(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, const void *payload, size_t len, int fd,
    struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	int rc;

	memset(&out, 0, sizeof(out));
	cmd.script = script->data;
	cmd.payload = payload;
	cmd.payload_len = len;
	cmd.payload_fd = fd;
	rc = stepsh_exec(ctx, step, &cmd, &out, res, err);
	if (rc == 0)
		(void)stepsh_changes(res, &out.out);
	remote_out_free(&out);
	return rc;
}

static int
upload_apply_file(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	struct buf script;
	struct stat sb;
	int fd = -1, rc = -1;

	memset(&sb, 0, sizeof(sb));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (c->content == NULL) {
		fd = open(c->src, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			err_set(err, SH_ERR_IO, "%s: %s", c->src,
			    fd < 0 ? strerror(errno) : "not a regular file");
			goto out;
		}
		if ((uint64_t)sb.st_size > UPLOAD_FILE_MAX) {
			err_set(err, SH_ERR_STEP, "%s: larger than %u bytes",
			    c->src, UPLOAD_FILE_MAX);
			goto out;
		}
	}
	if (upload_file_script(c, true,
		c->content ? c->content_len : (uint64_t)sb.st_size, "-",
		&script) < 0) {
		err_set(err, SH_ERR_STEP, "upload: script too long");
		goto out;
	}
	rc = upload_send(ctx, step, &script, c->content, c->content_len, fd,
	    res, err);
out:
	if (fd >= 0)
		close(fd);
	buf_release(&script);
	return rc;
}

static int
upload_apply_tree(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	struct upload_list l = { NULL, 0, 0 };
	struct buf script;
	pid_t pid = -1;
	int fd = -1, rc = -1;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (upload_walk(c->src, "", 0, &l, err) < 0 ||
	    upload_tree_script(c, &l, true, &script, err) < 0 ||
	    upload_feeder(c->src, &l, &fd, &pid, err) < 0)
		goto out;
	rc = upload_send(ctx, step, &script, NULL, 0, fd, res, err);
	upload_feeder_end(fd, pid);
out:
	upload_list_free(&l);
	buf_release(&script);
	return rc;
}

static int
upload_apply(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;

	return c->tree ? upload_apply_tree(ctx, step, res, err) :
			 upload_apply_file(ctx, step, res, err);
}

static void
upload_describe(const struct step *step, struct buf *out)
{
	const struct upload_cfg *c = step->cfg;

	if (c->content != NULL)
		(void)buf_addf(out, "upload (content, %zu bytes) -> %s",
		    c->content_len, c->dest);
	else
		(void)buf_addf(out, "upload %s%s -> %s%s", c->src_arg,
		    c->tree ? "/" : "", c->dest, c->tree ? "/" : "");
	stepsh_describe_attrs(out, &c->attrs);
}

const struct step_kind step_kind_upload = {
	.name = "upload",
	.flags = STEP_RETRY_SAFE,
	.parse = upload_parse,
	.probe = upload_probe,
	.apply = upload_apply,
	.describe = upload_describe,
	.free = upload_free,
};
