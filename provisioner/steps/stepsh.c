/*
 * steps/stepsh.c: shared helpers of the step kinds that run generated sh
 * scripts. See stepsh.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"

/*
 * The helper functions every file-system script starts with. `attrs`
 * re-reads the mode after a chown, because chown clears set-id bits.
 */
static const char stepsh_lib[] =
    "set -u\n"
    "umask 022\n"
    "C() { printf 'C %s\\n' \"$*\"; }\n"
    "X() { [ \"$A\" = 1 ] || return 0; \"$@\"; }\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "attrs() {\n"
    "\t_p=$1 _m=$2 _o=$3 _g=$4 _h=\n"
    "\tif [ \"$5\" = 1 ]; then _h=-h; _L=; else _L=-L; fi\n"
    "\t_s=$(stat $_L -c '%a %u %U %g %G' -- \"$_p\") || exit 1\n"
    "\tset -- $_s\n"
    "\tif [ -n \"$_o\" ] && [ \"$_o\" != \"$2\" ] && [ \"$_o\" != \"$3\" ]; "
    "then\n"
    "\t\tC \"owner $_p: $3 -> $_o\"\n"
    "\t\tX chown $_h -- \"$_o\" \"$_p\" || exit 1\n"
    "\tfi\n"
    "\tif [ -n \"$_g\" ] && [ \"$_g\" != \"$4\" ] && [ \"$_g\" != \"$5\" ]; "
    "then\n"
    "\t\tC \"group $_p: $5 -> $_g\"\n"
    "\t\tX chgrp $_h -- \"$_g\" \"$_p\" || exit 1\n"
    "\tfi\n"
    "\t[ -n \"$_m\" ] || return 0\n"
    "\t[ \"$A\" = 1 ] && { _a=$(stat $_L -c %a -- \"$_p\") || exit 1; "
    "set -- \"$_a\"; }\n"
    "\tif [ \"$_m\" != \"$1\" ]; then\n"
    "\t\tC \"mode $_p: $1 -> $_m\"\n"
    "\t\tX chmod -- \"$_m\" \"$_p\" || exit 1\n"
    "\tfi\n"
    "\treturn 0\n"
    "}\n"
    /* sweep DIR: temp files a killed run left there (no other run
     * writes: the target lock). upload and line call it. */
    "sweep() {\n"
    "\tfor x in \"$1\"/.stagehand.??????; do\n"
    "\t\t[ -e \"$x\" ] && rm -rf -- \"$x\"\n"
    "\tdone\n"
    "\t:\n"
    "}\n"
    "newattrs() {\n"
    "\t[ -z \"$3\" ] || C \"owner $1: -> $3\"\n"
    "\t[ -z \"$4\" ] || C \"group $1: -> $4\"\n"
    "\t[ -z \"$2\" ] || C \"mode $1: -> $2\"\n"
    "\treturn 0\n"
    "}\n";

int
stepsh_begin(struct buf *b, enum step_mode mode)
{
	if (buf_adds(b, stepsh_lib) < 0)
		return -1;
	return buf_addf(b, "A=%d\n", mode == STEP_APPLY ? 1 : 0);
}

int
stepsh_assign(struct buf *b, const char *name, const char *value)
{
	if (buf_addf(b, "%s=", name) < 0 || sh_quote(b, value) < 0)
		return -1;
	return buf_addc(b, '\n');
}

/*
 * Each trap ignores the signals and runs fin itself before it exits,
 * rather than leaving fin to the EXIT trap. An interrupted step seldom
 * gets just one signal: the watchdog's TERM reaches the whole group,
 * timeout forwards it twice more, and output to the channel sshd closed
 * raises SIGPIPE. The shell runs the trap of a signal that comes while it
 * exits before the EXIT trap's first command (dash and bash look for
 * pending traps before every command), and an `exit` there ends the
 * shell at once: the EXIT trap, already taken off, never runs, so it
 * cannot protect itself. With fin in every trap, whichever trap runs
 * first cleans up; a signal that comes before its `trap ""` runs a trap
 * inside it, which does the same; once the signals are ignored nothing
 * cuts fin short.
 */
static const char stepsh_traps_sh[] =
    "fin() { :; }\n"
    "trap 'trap \"\" TERM HUP INT PIPE; fin' EXIT\n"
    "trap 'trap \"\" TERM HUP INT PIPE; fin; exit 143' TERM HUP INT\n"
    "trap 'trap \"\" TERM HUP INT PIPE; fin; exit 141' PIPE\n";

int
stepsh_traps(struct buf *b)
{
	return buf_adds(b, stepsh_traps_sh);
}

int
stepsh_assign_attrs(struct buf *b, const struct stepsh_attrs *a)
{
	if (a->mode_set ? buf_addf(b, "M='%o'\n", a->mode)
	                : buf_adds(b, "M=''\n"))
		return -1;
	if (stepsh_assign(b, "O", a->owner ? a->owner : "") < 0)
		return -1;
	return stepsh_assign(b, "G", a->group ? a->group : "");
}

/* A user or group name or number: no option or separator tricks. */
static bool
name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		        c == '.' || c == '@' || (c == '$' && i == n - 1)))
			return false;
	}
	return true;
}

static int
parse_name(const struct node *map, const char *key, const char **out,
    struct errbuf *err)
{
	if (node_opt_str(map, key, out, err) < 0)
		return -1;
	if (*out != NULL && !name_ok(*out))
		return node_err(err, node_get(map, key),
		    "%s: not a valid user or group name: '%s'", key, *out);
	return 0;
}

int
stepsh_parse_attrs(
    const struct node *map, struct stepsh_attrs *a, struct errbuf *err)
{
	memset(a, 0, sizeof(*a));
	if (parse_name(map, "owner", &a->owner, err) < 0 ||
	    parse_name(map, "group", &a->group, err) < 0)
		return -1;
	return node_opt_mode(map, "mode", &a->mode, &a->mode_set, err);
}

char *
stepsh_local_path(const char *file, const char *path)
{
	const char *slash;

	if (path[0] == '/' || file == NULL ||
	    (slash = strrchr(file, '/')) == NULL)
		return xstrdup(path);
	return xasprintf("%.*s/%s", (int)(slash - file), file, path);
}

int
stepsh_abs_path(const struct node *map, const char *key, const char **out,
    struct errbuf *err)
{
	const struct node *n;

	if (node_req_str(map, key, out, err) < 0)
		return -1;
	n = node_get(map, key);
	if ((*out)[0] != '/')
		return node_err(
		    err, n, "%s: must be an absolute path: '%s'", key, *out);
	if (strlen(*out) != n->len || strchr(*out, '\n') != NULL)
		return node_err(
		    err, n, "%s: must not contain a newline or NUL", key);
	return 0;
}

/* [a-z_][a-z0-9_-]*$? up to 32 bytes, like useradd's default NAME_REGEX. */
bool
stepsh_account_name_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > STEPSH_ACCOUNT_NAME_MAX)
		return false;
	if (!(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z')))
		return false;
	for (size_t i = 1; i < len; i++) {
		char c = s[i];

		if (c == '$' && i == len - 1)
			break;
		if (!(c == '_' || c == '-' || (c >= 'a' && c <= 'z') ||
		        (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

bool
stepsh_account_id_ok(const char *s)
{
	uint64_t v;

	return parse_u64(s, strlen(s), STEPSH_ID_MAX, &v) == 0;
}

int
stepsh_parse_state(const struct node *body, bool *absent, struct errbuf *err)
{
	const char *state = NULL;

	*absent = false;
	if (node_opt_str(body, "state", &state, err) == -1)
		return -1;
	if (state == NULL || strcmp(state, "present") == 0)
		return 0;
	if (strcmp(state, "absent") == 0) {
		*absent = true;
		return 0;
	}
	return node_err(err, node_get(body, "state"),
	    "state must be present or absent, not '%s'", state);
}

/*
 * One pass over a script's stdout: "<tag> TEXT" lines are changes; when
 * details, "= KEY VALUE" lines are details; anything else is ignored. A
 * line ends at its newline or at a NUL in it, whichever comes first.
 */
static size_t
stepsh_parse_output(
    struct step_result *res, const struct buf *out, char tag, bool details)
{
	const char *p = out->data, *end = out->data + out->len;
	const char change[] = { tag, ' ', '\0' };
	size_t n = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = xstrndup(p, len);
		char *sp;

		if (str_has_prefix(line, change)) {
			step_result_change(res, "%s", line + 2);
			n++;
		} else if (details && str_has_prefix(line, "= ") &&
		           (sp = strchr(line + 2, ' ')) != NULL) {
			*sp = '\0';
			step_result_detail(res, line + 2, "%s", sp + 1);
		}
		free(line);
		p += len + 1;
	}
	if (n > 0)
		res->changed = true;
	return n;
}

size_t
stepsh_changes(struct step_result *res, const struct buf *out)
{
	return stepsh_parse_output(res, out, 'C', false);
}

int
stepsh_run_plus(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, struct remote_out *out, struct step_result *res,
    struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	int rc;

	memset(out, 0, sizeof(*out));
	if (remote_script(&cmd, script, err) < 0)
		return -1;
	rc = stepsh_remote(ctx, step, &cmd, out, res, err);
	(void)stepsh_parse_output(res, &out->out, '+', true);
	return rc;
}

void
stepsh_describe_attrs(struct buf *out, const struct stepsh_attrs *a)
{
	if (!a->mode_set && a->owner == NULL && a->group == NULL)
		return;
	buf_adds(out, " (");
	if (a->mode_set)
		buf_addf(
		    out, "%04o%s", a->mode, a->owner || a->group ? " " : "");
	if (a->owner || a->group)
		buf_addf(out, "%s:%s", a->owner ? a->owner : "-",
		    a->group ? a->group : "-");
	buf_addc(out, ')');
}

int
stepsh_run_cmd(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct step_result *res, struct errbuf *err)
{
	struct remote_out out;
	int rc;

	memset(&out, 0, sizeof(out));
	rc = stepsh_exec(ctx, step, cmd, &out, res, err);
	if (rc == 0)
		(void)stepsh_changes(res, &out.out);
	remote_out_free(&out);
	return rc;
}

int
stepsh_run(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;

	if (remote_script(&cmd, script, err) < 0)
		return -1;
	return stepsh_run_cmd(ctx, step, &cmd, res, err);
}

static void
stepsh_hex(const unsigned char *h, struct buf *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < crypto_hash_sha256_BYTES; i++) {
		buf_addc(hex, digits[h[i] >> 4]);
		buf_addc(hex, digits[h[i] & 15]);
	}
}

void
stepsh_sha256_mem(const void *p, size_t len, struct buf *hex)
{
	unsigned char h[crypto_hash_sha256_BYTES];

	(void)crypto_hash_sha256(h, p, (unsigned long long)len);
	stepsh_hex(h, hex);
}

int
stepsh_sha256_fd(int fd, const char *name, struct buf *hex, uint64_t *size,
    struct errbuf *err)
{
	crypto_hash_sha256_state st;
	unsigned char h[crypto_hash_sha256_BYTES];
	char *chunk = xmalloc(1u << 16);
	ssize_t n;

	*size = 0;
	(void)crypto_hash_sha256_init(&st);
	while ((n = read(fd, chunk, 1u << 16)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(chunk);
			return err_set(
			    err, SH_ERR_IO, "%s: %s", name, strerror(errno));
		}
		(void)crypto_hash_sha256_update(
		    &st, (unsigned char *)chunk, (unsigned long long)n);
		*size += (uint64_t)n;
	}
	free(chunk);
	(void)crypto_hash_sha256_final(&st, h);
	stepsh_hex(h, hex);
	return 0;
}

int
stepsh_sha256_file(
    const char *path, struct buf *hex, uint64_t *size, struct errbuf *err)
{
	struct stat sb;
	int fd, rc;

	*size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, SH_ERR_IO, "%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return err_set(err, SH_ERR_IO, "%s: not a regular file", path);
	}
	rc = stepsh_sha256_fd(fd, path, hex, size, err);
	close(fd);
	return rc;
}

bool
stepsh_sha256_hex_ok(const char *p, size_t len)
{
	if (len != 2 * crypto_hash_sha256_BYTES)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		        (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

static int
stepsh_namecmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
stepsh_list_dir(const char *dir, struct strlist *names, struct errbuf *err)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	if (d == NULL)
		return err_set(err, SH_ERR_IO, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			strlist_push(names, de->d_name);
	closedir(d);
	if (names->n > 1)
		qsort(names->v, names->n, sizeof(*names->v), stepsh_namecmp);
	return 0;
}

int
stepsh_reap(pid_t pid, const char *what, struct errbuf *err)
{
	int st = 0;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return err_set(
			    err, SH_ERR_IO, "waitpid: %s", strerror(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	return err_set(err, SH_ERR_IO, "%s failed (status %d)", what,
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

int
stepsh_exec(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct remote_out *out, struct step_result *res,
    struct errbuf *err)
{
	cmd->stdout_is_protocol = true;
	return stepsh_remote(ctx, step, cmd, out, res, err);
}

int
stepsh_remote(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct remote_out *out, struct step_result *res,
    struct errbuf *err)
{
	int rc;

	cmd->become = step->become;
	cmd->timeout_s =
	    step->timeout_s ? step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	rc = remote_run(ctx, cmd, out, err);
	if (!cmd->stdout_is_protocol)
		step_result_output(res, out->out.data, out->out.len);
	step_result_output(res, out->err.data, out->err.len);
	if (rc < 0)
		return -1;
	res->exit_status = out->status;
	if (out->status == 0)
		return 0;
	if (out->status < 0 && !cmd->stdout_is_protocol)
		return err_set(err, SH_ERR_REMOTE, "killed by a signal");
	if (out->status < 0)
		return remote_fail(
		    ctx->redact, err, &out->err, "killed by a signal");
	return remote_fail(ctx->redact, err, &out->err, "exit %d", out->status);
}
