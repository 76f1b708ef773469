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
 *   sha256    64 lowercase hex digits, single file or content only: the
 *             digest the local bytes must have. Checked on the controller
 *             before anything of the step reaches the target (plan and
 *             run); a mismatch fails the step
 *   creates   absolute remote path: when it exists (a dangling symlink
 *             counts) the step is ok and nothing is sent. One extra
 *             read-only round trip, after the sha256 check
 *
 * Semantics: a file is replaced when its content differs, and its owner,
 * group and mode are fixed in place when they differ. A tree never deletes
 * files on the target that are not in src.
 *
 * A single file, apply (one round trip): the content goes on stdin after
 * the script (from the open file, or the inline text). The remote script
 * reads exactly its size with `head -c` into a mktemp file in the
 * destination's directory, checks the size, compares it with the existing
 * file (cmp) and only when it differs gives it the old file's owner/mode
 * (or the wanted ones) and renames it over (mv -f, atomic); otherwise the
 * temp file is removed. Attribute differences are fixed in place.
 * probe (one round trip, no payload): the local sha256 (libsodium) goes
 * into the script, which compares it with `sha256sum` of the remote file.
 * With sha256 set, both first hash the local bytes and fail on a mismatch
 * before any round trip; apply also has the target check what it
 * received against it (upload_open_src says why).
 *
 * A tree, like rsync: round 1 (the inventory, read-only, also all of
 * probe) stats and hashes every entry on the target in batches (stat
 * --printf, sha256sum -z, NUL-separated) and compares with the local
 * walk and sha256s. When nothing differs apply stops there (one round
 * trip). Otherwise round 2 sends a tar of only the files that differ
 * (the controller's `tar -c --no-recursion -T list` as the payload), the
 * target extracts it into a staging dir inside dest (same file system)
 * and renames each file into place, creates missing directories and fixes
 * attributes in tree order. Tree entries keep their local modes.
 *
 * Either way a second apply reports ok.
 *
 * Change lines: "create /etc/x", "content /etc/x", "mode /etc/x: 600 ->
 * 644", "owner ...", "create directory ...". STEP_RETRY_SAFE.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "steps/stepsh.h"
#include "target/remote.h"
#include "util/limits.h"

#define UPLOAD_TREE_MAX_ENTRIES 100000
#define UPLOAD_TREE_MAX_DEPTH 64

struct upload_cfg {
	const char *src_arg; /* borrowed: src as written */
	char *src;           /* owned: resolved local path; NULL for content */
	const char *content; /* borrowed */
	size_t content_len;
	const char *dest;    /* borrowed */
	const char *sha256;  /* borrowed; NULL: not checked */
	const char *creates; /* borrowed; NULL: none */
	struct stepsh_attrs attrs;
	bool tree;
};

/* What a tree entry needs on the target, from the inventory. */
enum upload_todo {
	UPLOAD_NOTHING,
	UPLOAD_CREATE,  /* missing: mkd or put */
	UPLOAD_CONTENT, /* a file whose content differs: put */
	UPLOAD_ATTRS,   /* only owner/group/mode differ: attrs */
};

struct upload_ent {
	char *rel; /* owned: path below src, no leading "./" */
	bool dir;
	unsigned mode;
	uint64_t size;
	char hash[65]; /* local sha256 (files), hex */
	/* filled by the inventory */
	bool exists, same, attrs_differ, wrong_type;
	bool send; /* goes into the tar stream */
	enum upload_todo todo;
};

struct upload_list {
	struct upload_ent *v; /* owned */
	size_t n;
	uint64_t total;
};

static const char *const upload_keys[] = {
	"src",
	"content",
	"dest",
	"owner",
	"group",
	"mode",
	"sha256",
	"creates",
	NULL,
};

/* ======================================================== parse */

static int
upload_check_src(
    const struct node *body, struct upload_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "src");
	struct stat sb;

	c->src = stepsh_local_path(n->file, c->src_arg);
	if (stat(c->src, &sb) < 0)
		return node_err(err, n, "src: %s: %s", c->src, strerror(errno));
	if (S_ISDIR(sb.st_mode)) {
		c->tree = true;
		if (c->attrs.mode_set)
			return node_err(err, node_get(body, "mode"),
			    "mode is for single files; a tree keeps the "
			    "local modes");
	} else if (!S_ISREG(sb.st_mode)) {
		return node_err(
		    err, n, "src: %s: not a file or directory", c->src);
	}
	return 0;
}

/* Optional sha256 (the form sha256sum prints) and creates. */
static int
upload_parse_checks(
    const struct node *body, struct upload_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "sha256");

	if (node_opt_str(body, "sha256", &c->sha256, err) < 0)
		return -1;
	if (c->sha256 != NULL && !stepsh_sha256_hex_ok(c->sha256, n->len))
		return node_err(err, n,
		    "sha256 must be 64 lowercase hex digits, as sha256sum "
		    "prints them, got '%s'",
		    c->sha256);
	if (node_get(body, "creates") != NULL &&
	    stepsh_abs_path(body, "creates", &c->creates, err) < 0)
		return -1;
	return 0;
}

static int
upload_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct upload_cfg *c = cfg;
	const struct node *cn;

	if (node_opt_str(body, "src", &c->src_arg, err) < 0 ||
	    node_opt_str(body, "content", &c->content, err) < 0 ||
	    stepsh_abs_path(body, "dest", &c->dest, err) < 0 ||
	    stepsh_parse_attrs(body, &c->attrs, err) < 0 ||
	    upload_parse_checks(body, c, err) < 0)
		return -1;
	if ((c->src_arg == NULL) == (c->content == NULL))
		return node_err(err, body,
		    "upload needs exactly one of src "
		    "and content");
	if (c->content != NULL) {
		cn = node_get(body, "content");
		c->content_len = cn->len;
		return 0;
	}
	if (upload_check_src(body, c, err) < 0)
		return -1;
	if (c->tree && c->sha256 != NULL)
		return node_err(err, node_get(body, "sha256"),
		    "sha256 is for a single file or content; src %s is a "
		    "directory",
		    c->src_arg);
	return 0;
}

static void
upload_release(void *cfg)
{
	struct upload_cfg *c = cfg;

	free(c->src);
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
upload_list_add(
    struct upload_list *l, char *rel, const struct stat *sb, struct errbuf *err)
{
	struct upload_ent *e;

	if (l->n >= UPLOAD_TREE_MAX_ENTRIES) {
		free(rel);
		return err_set(err, SH_ERR_STEP, "upload: more than %d entries",
		    UPLOAD_TREE_MAX_ENTRIES);
	}
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	e->rel = rel;
	e->dir = S_ISDIR(sb->st_mode);
	e->mode = (unsigned)sb->st_mode & 07777;
	e->size = e->dir ? 0 : (uint64_t)sb->st_size;
	l->total += e->size;
	if (l->total > UPLOAD_FILE_MAX)
		return err_set(err, SH_ERR_STEP,
		    "upload: tree larger than %u "
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
		err_set(err, SH_ERR_STEP,
		    "upload: %s: only regular files and "
		    "directories can be uploaded",
		    full);
	} else if (upload_list_add(l, xstrdup(sub), &sb, err) == 0) {
		rc = S_ISDIR(sb.st_mode)
		         ? upload_walk(root, sub, depth + 1, l, err)
		         : 0;
	}
	free(full);
	free(sub);
	return rc;
}

/* Appends the entries below root/rel, sorted, parents before children. */
static int
upload_walk(const char *root, const char *rel, unsigned depth,
    struct upload_list *l, struct errbuf *err)
{
	char *dir = rel[0] ? xasprintf("%s/%s", root, rel) : xstrdup(root);
	struct strlist names = { NULL, 0 };
	int rc;

	if (depth > UPLOAD_TREE_MAX_DEPTH)
		rc = err_set(err, SH_ERR_STEP, "upload: %s: too deep", dir);
	else
		rc = stepsh_list_dir(dir, &names, err);
	for (size_t i = 0; i < names.n && rc == 0; i++)
		rc = upload_walk_entry(root, rel, names.v[i], depth, l, err);
	strlist_free(&names);
	free(dir);
	return rc;
}

/* ======================================================== the feeder */

/*
 * Writes the names of the entries to send ("./rel", NUL-terminated) to a
 * temp file for tar -T. Caller unlinks *path and frees it.
 */
static int
upload_namelist(const struct upload_list *l, char **path, struct errbuf *err)
{
	const char *tmpdir = getenv("TMPDIR");
	int fd, rc = 0;
	FILE *f;

	*path = xasprintf("%s/stagehand-names.XXXXXX",
	    tmpdir && tmpdir[0] == '/' ? tmpdir : "/tmp");
	fd = mkostemp(*path, O_CLOEXEC);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		err_set(err, SH_ERR_IO, "%s: %s", *path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(*path);
		*path = NULL;
		return -1;
	}
	for (size_t i = 0; i < l->n && rc == 0; i++)
		if (l->v[i].send && fprintf(f, "./%s%c", l->v[i].rel, 0) < 0)
			rc = -1;
	if (fclose(f) != 0 || rc < 0) {
		unlink(*path);
		free(*path);
		*path = NULL;
		return err_set(err, SH_ERR_IO, "writing the name list failed");
	}
	return 0;
}

/*
 * Starts `tar -c` (the controller's tar) on the entries to send; its
 * stdout is *fd (caller closes it, then reaps with upload_feeder_end).
 */
static int
upload_feeder(const char *root, const char *names, int *fd, pid_t *pid,
    struct errbuf *err)
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
		int null = open("/dev/null", O_RDONLY);

		signal(SIGPIPE, SIG_DFL);
		if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0)
			_exit(EXIT_EXEC_FAILED);
		execlp("tar", "tar", "-C", root, "-c", "-f", "-",
		    "--no-recursion", "--null", "-T", names, (char *)NULL);
		_exit(EXIT_EXEC_FAILED);
	}
	close(p[1]);
	*fd = p[0];
	return 0;
}

/* Closes the pipe and reaps tar; -1 when tar failed. */
static int
upload_feeder_end(int fd, pid_t pid, struct errbuf *err)
{
	close(fd);
	return stepsh_reap(pid, "local tar -c", err);
}

/* ======================================================== scripts */

/*
 * Inputs: O G (owner/group for everything). Functions:
 *   put PATH MODE SIZE HASH   one file; MODE empty: keep / 0644. In
 *                             apply, HASH is "-" or the sha256 the bytes
 *                             received must have before they replace
 *                             anything (see upload_apply_file)
 *   mkd PATH MODE ROOT        one directory; ROOT=1: only create
 *   stage DIR                 extract the tar on stdin into a new temp
 *                             dir $S below DIR (with O/G applied)
 *   mv1 REL PATH              install $S/REL at PATH (rename), keeping an
 *                             existing file's owner/group unless O/G say
 * In apply, put reads exactly SIZE bytes of stdin first, whatever
 * happens next, so the files that follow stay aligned.
 */
static const char upload_sh[] =
    /* After stepsh_traps(): what an exit or a signal removes (the
     * watchdog ends a step with TERM; output to a closed channel raises
     * SIGPIPE). td: sweep it too, for a temp file made but not yet in
     * $t/$S. */
    "t= S= td=\n"
    "fin() {\n"
    "\t[ -z \"$t\" ] || rm -f -- \"$t\"\n"
    "\t[ -z \"$S\" ] || rm -rf -- \"$S\"\n"
    "\t[ -z \"$td\" ] || sweep \"$td\"\n"
    "}\n"
    "put() {\n"
    "\tp=$1 m=$2 n=$3 h=$4 same=1\n"
    "\tif [ \"$A\" = 1 ]; then\n"
    "\t\ttd=${p%/*}\n"
    "\t\tsweep \"$td\"\n"
    "\t\tt=$(mktemp \"${p%/*}/.stagehand.XXXXXX\") || exit 1\n"
    "\t\thead -c \"$n\" > \"$t\" || exit 1\n"
    "\t\t[ \"$(stat -c %s -- \"$t\")\" = \"$n\" ] || "
    "die \"short transfer for $p\"\n"
    "\t\tif [ \"$h\" != - ]; then\n"
    "\t\t\ts=$(sha256sum < \"$t\") || exit 1\n"
    "\t\t\t[ \"${s%% *}\" = \"$h\" ] || die \"$p: the bytes received "
    "do not have sha256 $h (the local file changed while it was "
    "sent?)\"\n"
    "\t\tfi\n"
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
    "chmod --reference=\"$p\" -- \"$t\" && sync -- \"$t\" && "
    "mv -f -- \"$t\" \"$p\" && sync -- \"${p%/*}\" || exit 1\n"
    "\t\t\tfi\n"
    "\t\tfi\n"
    "\telse\n"
    "\t\tC \"create $p\"\n"
    "\t\tif [ \"$A\" = 1 ]; then\n"
    "\t\t\t[ -z \"$O\" ] || chown -- \"$O\" \"$t\" || exit 1\n"
    "\t\t\t[ -z \"$G\" ] || chgrp -- \"$G\" \"$t\" || exit 1\n"
    "\t\t\tchmod -- \"${m:-644}\" \"$t\" && sync -- \"$t\" && "
    "mv -f -- \"$t\" \"$p\" && sync -- \"${p%/*}\" || exit 1\n"
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
    "}\n"
    "stage() {\n"
    "\ttd=$1\n"
    "\tsweep \"$td\"\n"
    "\tS=$(mktemp -d \"$1/.stagehand.XXXXXX\") || exit 1\n"
    "\ttar -x -p -f - -C \"$S\" --no-same-owner || die \"tar -x failed\"\n"
    /* On disk before mv1 renames them into place. */
    "\tfind \"$S\" -type f -exec sync -- {} + || exit 1\n"
    "\t[ -z \"$O$G\" ] || chown -R -- \"$O${G:+:$G}\" \"$S\" || exit 1\n"
    "}\n"
    "mv1() {\n"
    "\tif [ -e \"$2\" ]; then\n"
    "\t\t[ -f \"$2\" ] || die \"$2 exists and is not a regular file\"\n"
    "\t\tif [ -z \"$O\" ] || [ -z \"$G\" ]; then\n"
    "\t\t\tchown --reference=\"$2\" -- \"$S/$1\" || exit 1\n"
    "\t\t\t[ -z \"$O$G\" ] || chown -- \"$O${G:+:$G}\" \"$S/$1\" || "
    "exit 1\n"
    "\t\tfi\n"
    "\t\tC \"content $2\"\n"
    "\telse\n"
    "\t\tC \"create $2\"\n"
    "\tfi\n"
    "\tmv -f -- \"$S/$1\" \"$2\" || exit 1\n"
    "}\n";

static int
upload_begin(const struct upload_cfg *c, enum step_mode mode, struct buf *b)
{
	struct stepsh_attrs a = c->attrs;

	a.mode_set = false; /* M is unused; modes go per entry */
	if (stepsh_begin(b, mode) < 0 || stepsh_assign_attrs(b, &a) < 0 ||
	    stepsh_traps(b) < 0 || buf_adds(b, upload_sh) < 0)
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
		rc = strcmp(path, "\"$D\"") == 0 ? buf_adds(b, path)
		                                 : sh_quote(b, path);
	if (rc == 0)
		rc = buf_addc(b, ' ');
	if (rc == 0)
		rc = sh_quote(b, mode);
	if (rc == 0)
		rc = buf_addf(b, " %llu %s\n", (unsigned long long)size, hash);
	return rc;
}

/* The single-file script; hash: see put. */
static int
upload_file_script(const struct upload_cfg *c, enum step_mode mode,
    uint64_t size, const char *hash, struct buf *b)
{
	struct buf octal;
	int rc;

	buf_init(&octal, 32);
	if (c->attrs.mode_set)
		buf_addf(&octal, "%o", c->attrs.mode);
	rc = upload_begin(c, mode, b);
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
		rc = upload_put(b, "\"$D\"", octal.data, size, hash);
	buf_release(&octal);
	return rc;
}

/* ======================================================== probe / apply */

/* The local bytes' digest (hex) against sha256, when the step has one. */
static int
upload_check_digest(
    const struct upload_cfg *c, const char *actual, struct errbuf *err)
{
	if (c->sha256 == NULL || strcmp(c->sha256, actual) == 0)
		return 0;
	return err_set(err, SH_ERR_STEP,
	    "upload: %s: sha256 mismatch: expected %s, actual %s; nothing "
	    "was sent",
	    c->content != NULL ? "content" : c->src, c->sha256, actual);
}

/*
 * creates: when the path exists on the target, *skip and the detail
 * skipped_by: creates. One read-only round trip, before anything else of
 * the step reaches the target; none without creates.
 */
static int
upload_creates(struct run_ctx *ctx, const struct step *step, bool *skip,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	struct buf script;
	int rc = -1;

	*skip = false;
	if (c->creates == NULL)
		return 0;
	memset(&out, 0, sizeof(out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (stepsh_assign(&script, "K", c->creates) < 0 ||
	    buf_adds(&script, "if [ -e \"$K\" ] || [ -L \"$K\" ]; then "
	                      "echo y; else echo n; fi\n") < 0) {
		err_set(err, SH_ERR_STEP, "upload: script too long");
		goto out;
	}
	if (remote_script(&cmd, &script, err) < 0 ||
	    stepsh_exec(ctx, step, &cmd, &out, res, err) < 0)
		goto out;
	*skip = out.out.len > 0 && out.out.data[0] == 'y';
	if (*skip)
		step_result_detail(res, "skipped_by", "creates");
	rc = 0;
out:
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

static int
upload_probe_file(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	struct buf hash, script;
	uint64_t size = c->content_len;
	bool skip = false;
	int rc = 0;

	buf_init(&hash, 128);
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (c->content != NULL)
		stepsh_sha256_mem(c->content, c->content_len, &hash);
	else
		rc = stepsh_sha256_file(c->src, &hash, &size, err);
	if (rc == 0)
		rc = upload_check_digest(c, hash.data, err);
	if (rc == 0)
		rc = upload_creates(ctx, step, &skip, res, err);
	if (rc == 0 && !skip &&
	    upload_file_script(c, STEP_PROBE, size, hash.data, &script) < 0)
		rc = err_set(err, SH_ERR_STEP, "upload: script too long");
	if (rc == 0 && !skip)
		rc = stepsh_run(ctx, step, &script, res, err);
	buf_release(&script);
	buf_release(&hash);
	return rc;
}

/* Runs script with the payload (content, a file or the feeder's pipe). */
static int
upload_send(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, const void *payload, size_t len, int fd,
    struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;

	if (remote_script(&cmd, script, err) < 0)
		return -1;
	cmd.payload = payload;
	cmd.payload_len = len;
	cmd.payload_fd = fd;
	return stepsh_run_cmd(ctx, step, &cmd, res, err);
}

/*
 * Opens src for apply; *size is how many bytes the script reads. With
 * sha256 the digest is taken on this descriptor, which is then rewound and
 * sent, and *size is the count hashed: a src renamed or replaced after the
 * check cannot be sent in its place. A rewrite in place of the same file
 * between the hash and the send still could, so the script checks the
 * bytes it received against the same digest before they replace anything
 * (put), and a mismatch fails the step and removes the temp file. (A
 * private copy of src, hashed while copied, would close that gap on the
 * controller alone, at the cost of copying up to UPLOAD_FILE_MAX bytes on
 * every run; the target's check also covers what happens in transit.)
 * Caller closes *fd when it is >= 0.
 */
static int
upload_open_src(
    const struct upload_cfg *c, int *fd, uint64_t *size, struct errbuf *err)
{
	struct stat sb;
	struct buf hash;
	int rc = 0;

	*size = 0;
	*fd = open(c->src, O_RDONLY | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return err_set(err, SH_ERR_IO, "%s: %s", c->src,
		    *fd < 0 ? strerror(errno) : "not a regular file");
	*size = (uint64_t)sb.st_size;
	if (*size <= UPLOAD_FILE_MAX && c->sha256 != NULL) {
		buf_init(&hash, 128);
		rc = stepsh_sha256_fd(*fd, c->src, &hash, size, err);
		if (rc == 0)
			rc = upload_check_digest(c, hash.data, err);
		if (rc == 0 && lseek(*fd, 0, SEEK_SET) < 0)
			rc = err_set(
			    err, SH_ERR_IO, "%s: %s", c->src, strerror(errno));
		buf_release(&hash);
	}
	if (rc == 0 && *size > UPLOAD_FILE_MAX)
		rc = err_set(err, SH_ERR_STEP, "%s: larger than %u bytes",
		    c->src, UPLOAD_FILE_MAX);
	return rc;
}

static int
upload_apply_file(struct run_ctx *ctx, const struct step *step,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	struct buf script, hash;
	uint64_t size = c->content_len;
	bool skip = false;
	int fd = -1, rc = 0;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	buf_init(&hash, 128);
	if (c->content == NULL) {
		rc = upload_open_src(c, &fd, &size, err);
	} else if (c->sha256 != NULL) {
		stepsh_sha256_mem(c->content, c->content_len, &hash);
		rc = upload_check_digest(c, hash.data, err);
	}
	if (rc == 0)
		rc = upload_creates(ctx, step, &skip, res, err);
	if (rc < 0 || skip)
		goto out;
	if (upload_file_script(c, STEP_APPLY, size,
	        c->sha256 != NULL ? c->sha256 : "-", &script) < 0) {
		rc = err_set(err, SH_ERR_STEP, "upload: script too long");
		goto out;
	}
	rc = upload_send(
	    ctx, step, &script, c->content, c->content_len, fd, res, err);
out:
	if (fd >= 0)
		close(fd);
	buf_release(&hash);
	buf_release(&script);
	return rc;
}

/* ======================================================== tree: inventory */

/*
 * Round 1 of a tree upload (and all of its probe): one read-only script
 * that stats and hashes, in batches, every entry of the local tree on the
 * target. Output, NUL-separated: "R" when dest is a directory; per
 * existing entry "S./rel" then "MODE UID GID USER GROUP TYPE"; per
 * existing file "HASH  ./rel" (sha256sum -z). Entries appear in the order
 * given, so one cursor per record type finds their entry.
 */
static const char upload_inv_sh[] =
    "set -u\n"
    "if [ ! -d \"$R\" ]; then\n"
    "\t{ [ -e \"$R\" ] || [ -L \"$R\" ]; } && "
    "die \"$R exists and is not a directory\"\n"
    "\texit 0\n"
    "fi\n"
    "cd -- \"$R\" || exit 1\n"
    "printf 'R\\0'\n"
    "st() { stat -L --printf 'S%n\\0%a %u %g %U %G %F\\0' -- \"$@\" "
    "2>/dev/null; return 0; }\n"
    "hs() { sha256sum -z -- \"$@\" 2>/dev/null; return 0; }\n";

#define UPLOAD_INV_BATCH 256

/* Appends "st './a' './b' ...\n" (and hs for the files) in batches. */
static int
upload_inv_calls(struct buf *b, const struct upload_list *l, bool files)
{
	size_t k = 0;
	int rc = 0;

	for (size_t i = 0; i < l->n && rc == 0; i++) {
		struct buf rel;

		if (files && l->v[i].dir)
			continue;
		if (k == 0)
			rc = buf_adds(b, files ? "hs" : "st");
		buf_init(&rel, 1u << 16);
		if (rc == 0 && buf_addf(&rel, "./%s", l->v[i].rel) == 0)
			rc = buf_addc(b, ' ') < 0 || sh_quote(b, rel.data) < 0;
		buf_release(&rel);
		if (rc == 0 && ++k == UPLOAD_INV_BATCH) {
			rc = buf_addc(b, '\n');
			k = 0;
		}
	}
	if (rc == 0 && k > 0)
		rc = buf_addc(b, '\n');
	return rc ? -1 : 0;
}

/* Owner or group wanted vs the target's number and name. */
static bool
upload_id_differs(const char *want, const char *num, const char *name)
{
	return want != NULL && strcmp(want, num) != 0 &&
	       strcmp(want, name) != 0;
}

/* "MODE UID GID USER GROUP TYPE" for entry e at path. */
static void
upload_inv_attrs(const struct upload_cfg *c, struct upload_ent *e,
    const char *path, char *a, struct step_result *res)
{
	char *f[5], *type;
	unsigned mode = 0;

	for (size_t i = 0; i < 5; i++) {
		f[i] = a;
		a += strcspn(a, " ");
		if (*a != '\0')
			*a++ = '\0';
	}
	type = a;
	e->exists = true;
	e->wrong_type = e->dir ? strcmp(type, "directory") != 0
	                       : !str_has_prefix(type, "regular");
	if (e->wrong_type || parse_mode(f[0], strlen(f[0]), &mode) < 0)
		return;
	if (upload_id_differs(c->attrs.owner, f[1], f[3])) {
		e->attrs_differ = true;
		if (res)
			step_result_change(res, "owner %s: %s -> %s", path,
			    f[3], c->attrs.owner);
	}
	if (upload_id_differs(c->attrs.group, f[2], f[4])) {
		e->attrs_differ = true;
		if (res)
			step_result_change(res, "group %s: %s -> %s", path,
			    f[4], c->attrs.group);
	}
	if (mode != e->mode) {
		e->attrs_differ = true;
		if (res)
			step_result_change(
			    res, "mode %s: %o -> %o", path, mode, e->mode);
	}
}

/* The entry named rel at or after *cursor; NULL when none. */
static struct upload_ent *
upload_inv_find(
    struct upload_list *l, size_t *cursor, const char *rel, bool files)
{
	for (size_t i = *cursor; i < l->n; i++) {
		if (files && l->v[i].dir)
			continue;
		if (strcmp(l->v[i].rel, rel) == 0) {
			*cursor = i + 1;
			return &l->v[i];
		}
	}
	return NULL;
}

/* Reads the inventory output; *root tells whether dest exists. */
static int
upload_inv_parse(const struct upload_cfg *c, struct upload_list *l,
    struct buf *o, bool *root, struct step_result *res, struct errbuf *err)
{
	size_t off = 0, sc = 0, hc = 0;

	*root = false;
	while (off < o->len) {
		char *r = o->data + off;
		size_t len = strlen(r);
		struct upload_ent *e;
		char *path;

		off += len + 1;
		if (strcmp(r, "R") == 0) {
			*root = true;
		} else if (r[0] == 'S' && str_has_prefix(r, "S./")) {
			e = upload_inv_find(l, &sc, r + 3, false);
			if (e == NULL || off >= o->len)
				goto bad;
			r = o->data + off;
			off += strlen(r) + 1;
			path = xasprintf("%s/%s", c->dest, e->rel);
			upload_inv_attrs(c, e, path, r, res);
			free(path);
		} else if (len > 68 && memcmp(r + 64, "  ./", 4) == 0) {
			e = upload_inv_find(l, &hc, r + 68, true);
			if (e == NULL)
				goto bad;
			e->same = memcmp(r, e->hash, 64) == 0;
		} else {
			goto bad;
		}
	}
	return 0;
bad:
	return err_set(
	    err, SH_ERR_REMOTE, "upload: unexpected inventory from the target");
}

/* Decides each entry's todo; reports create/content lines when res. */
static int
upload_inv_decide(const struct upload_cfg *c, struct upload_list *l, bool root,
    struct step_result *res, struct errbuf *err)
{
	if (!root && res)
		step_result_change(res, "create directory %s", c->dest);
	for (size_t i = 0; i < l->n; i++) {
		struct upload_ent *e = &l->v[i];

		if (e->wrong_type)
			return err_set(err, SH_ERR_STEP,
			    "%s/%s exists and is not a %s", c->dest, e->rel,
			    e->dir ? "directory" : "regular file");
		e->todo = !e->exists            ? UPLOAD_CREATE
		          : !e->dir && !e->same ? UPLOAD_CONTENT
		          : e->attrs_differ     ? UPLOAD_ATTRS
		                                : UPLOAD_NOTHING;
		e->send = !e->dir && (e->todo == UPLOAD_CREATE ||
		                         e->todo == UPLOAD_CONTENT);
		if (res && e->todo == UPLOAD_CREATE)
			step_result_change(res, "create %s%s/%s",
			    e->dir ? "directory " : "", c->dest, e->rel);
		else if (res && e->todo == UPLOAD_CONTENT)
			step_result_change(
			    res, "content %s/%s", c->dest, e->rel);
	}
	return 0;
}

/* Local hashes of every file of the tree. */
static int
upload_hash_tree(
    const struct upload_cfg *c, struct upload_list *l, struct errbuf *err)
{
	for (size_t i = 0; i < l->n; i++) {
		struct upload_ent *e = &l->v[i];
		char *full;
		struct buf h;
		uint64_t size;
		int rc;

		if (e->dir)
			continue;
		full = xasprintf("%s/%s", c->src, e->rel);
		buf_init(&h, 128);
		rc = stepsh_sha256_file(full, &h, &size, err);
		if (rc == 0)
			memcpy(e->hash, h.data, 65);
		buf_release(&h);
		free(full);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/*
 * Walks and hashes the local tree, runs the inventory and decides what
 * each entry needs. On STEP_PROBE the needed changes become res's change
 * lines. *root: dest exists on the target.
 */
static int
upload_inventory(struct run_ctx *ctx, const struct step *step,
    enum step_mode mode, struct upload_list *l, bool *root,
    struct step_result *res, struct errbuf *err)
{
	struct step_result *report = mode == STEP_PROBE ? res : NULL;
	const struct upload_cfg *c = step->cfg;
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	struct buf script;
	int rc = -1;

	memset(&out, 0, sizeof(out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (upload_walk(c->src, "", 0, l, err) < 0 ||
	    upload_hash_tree(c, l, err) < 0)
		goto out;
	if (stepsh_begin(&script, STEP_PROBE) < 0 ||
	    stepsh_assign(&script, "R", c->dest) < 0 ||
	    buf_adds(&script, upload_inv_sh) < 0 ||
	    upload_inv_calls(&script, l, false) < 0 ||
	    upload_inv_calls(&script, l, true) < 0) {
		err_set(err, SH_ERR_STEP, "upload: script too long");
		goto out;
	}
	if (remote_script(&cmd, &script, err) < 0)
		goto out;
	if (stepsh_exec(ctx, step, &cmd, &out, res, err) < 0 ||
	    upload_inv_parse(c, l, &out.out, root, report, err) < 0)
		goto out;
	rc = upload_inv_decide(c, l, *root, report, err);
out:
	remote_out_free(&out);
	buf_release(&script);
	return rc;
}

/* ======================================================== tree: apply */

/* One round-2 line: mkd, attrs and/or mv1 for entry e. */
static int
upload_tree_line(
    const struct upload_cfg *c, const struct upload_ent *e, struct buf *b)
{
	struct buf path;
	int rc;

	buf_init(&path, 1u << 16);
	rc = buf_addf(&path, "%s/%s", c->dest, e->rel) < 0;
	if (rc == 0 && e->dir && e->todo == UPLOAD_CREATE)
		rc = buf_adds(b, "mkd ") < 0 || sh_quote(b, path.data) < 0 ||
		     buf_addf(b, " %o 0\n", e->mode) < 0;
	if (rc == 0 && e->exists && e->attrs_differ)
		rc = buf_adds(b, "attrs ") < 0 || sh_quote(b, path.data) < 0 ||
		     buf_addf(b, " %o \"$O\" \"$G\" 0\n", e->mode) < 0;
	if (rc == 0 && e->send)
		rc = buf_adds(b, "mv1 ") < 0 || sh_quote(b, e->rel) < 0 ||
		     buf_addc(b, ' ') < 0 || sh_quote(b, path.data) < 0 ||
		     buf_addc(b, '\n') < 0;
	buf_release(&path);
	return rc ? -1 : 0;
}

/*
 * Round 2: create dest when missing, extract the tar of the files to send
 * (if any) into a staging dir inside dest, then per entry that needs it,
 * in tree order: mkd, attrs, mv1.
 */
static int
upload_tree_script(const struct upload_cfg *c, const struct upload_list *l,
    bool sending, struct buf *b)
{
	int rc = upload_begin(c, STEP_APPLY, b);

	if (rc == 0)
		rc = stepsh_assign(b, "R", c->dest) < 0 ||
		     buf_adds(b, "mkd \"$R\" 755 1\n") < 0 ||
		     (sending && buf_adds(b, "stage \"$R\"\n") < 0);
	for (size_t i = 0; i < l->n && rc == 0; i++)
		if (l->v[i].todo != UPLOAD_NOTHING)
			rc = upload_tree_line(c, &l->v[i], b);
	return rc ? -1 : 0;
}

static bool
upload_tree_todo(const struct upload_list *l, bool root)
{
	if (!root)
		return true;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].todo != UPLOAD_NOTHING)
			return true;
	return false;
}

/*
 * Two round trips when something differs, one when nothing does: the
 * inventory, then a script that fixes only what differs, with only the
 * files that must be sent as its payload.
 */
static bool
upload_tree_sending(const struct upload_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].send)
			return true;
	return false;
}

/* Round 2 with the tar of the files to send as its payload. */
static int
upload_tree_send(struct run_ctx *ctx, const struct step *step,
    const struct upload_list *l, const struct buf *script,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	char *names = NULL;
	pid_t pid = -1;
	int fd = -1, rc;

	if (!upload_tree_sending(l))
		return upload_send(ctx, step, script, NULL, 0, -1, res, err);
	if (upload_namelist(l, &names, err) < 0)
		return -1;
	rc = upload_feeder(c->src, names, &fd, &pid, err);
	if (rc == 0) {
		struct errbuf tar_err;

		rc = upload_send(ctx, step, script, NULL, 0, fd, res, err);
		if (upload_feeder_end(fd, pid, &tar_err) < 0 && rc == 0) {
			*err = tar_err;
			rc = -1;
		}
	}
	unlink(names);
	free(names);
	return rc;
}

/*
 * Two round trips when something differs, one when nothing does: the
 * inventory, then a script that fixes only what differs, with a tar of
 * only the files that must be sent as its payload. A probe stops after
 * the inventory, which listed the changes.
 */
static int
upload_tree(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;
	struct upload_list l = { NULL, 0, 0 };
	struct buf script;
	bool root;
	int rc;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	rc = upload_inventory(ctx, step, mode, &l, &root, res, err);
	if (mode == STEP_PROBE) {
		if (res->changes.n > 0 || res->changes_dropped > 0)
			res->changed = true;
		goto out;
	}
	if (rc < 0 || !upload_tree_todo(&l, root))
		goto out;
	rc = -1;
	if (upload_tree_script(c, &l, upload_tree_sending(&l), &script) < 0) {
		err_set(err, SH_ERR_STEP, "upload: script too long");
		goto out;
	}
	rc = upload_tree_send(ctx, step, &l, &script, res, err);
out:
	upload_list_free(&l);
	buf_release(&script);
	return rc;
}

static int
upload_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct upload_cfg *c = step->cfg;

	if (c->tree) {
		bool skip;

		if (upload_creates(ctx, step, &skip, res, err) < 0)
			return -1;
		return skip ? 0 : upload_tree(ctx, step, mode, res, err);
	}
	if (mode == STEP_PROBE)
		return upload_probe_file(ctx, step, res, err);
	return upload_apply_file(ctx, step, res, err);
}

static void
upload_describe(const struct step *step, struct buf *out)
{
	const struct upload_cfg *c = step->cfg;

	if (c->content != NULL)
		buf_addf(out, "upload (content, %zu bytes) -> %s",
		    c->content_len, c->dest);
	else
		buf_addf(out, "upload %s%s -> %s%s", c->src_arg,
		    c->tree ? "/" : "", c->dest, c->tree ? "/" : "");
	stepsh_describe_attrs(out, &c->attrs);
	if (c->sha256 != NULL)
		buf_addf(out, " (sha256 %.12s...)", c->sha256);
	if (c->creates != NULL)
		buf_addf(out, " (creates %s)", c->creates);
}

const struct step_kind step_kind_upload = {
	.name = "upload",
	.flags = STEP_RETRY_SAFE,
	.keys = upload_keys,
	.cfg_size = sizeof(struct upload_cfg),
	.parse = upload_parse,
	.run = upload_run,
	.describe = upload_describe,
	.release = upload_release,
};
