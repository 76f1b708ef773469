/*
 * steps/stepsh.c: shared helpers of the file-system step kinds. See
 * stepsh.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../limits.h"
#include "../remote.h"
#include "stepsh.h"

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
    "newattrs() {\n"
    "\t[ -z \"$3\" ] || C \"owner $1: -> $3\"\n"
    "\t[ -z \"$4\" ] || C \"group $1: -> $4\"\n"
    "\t[ -z \"$2\" ] || C \"mode $1: -> $2\"\n"
    "\treturn 0\n"
    "}\n";

int
stepsh_begin(struct buf *b, bool apply)
{
	if (buf_adds(b, stepsh_lib) < 0)
		return -1;
	return buf_addf(b, "A=%d\n", apply ? 1 : 0);
}

int
stepsh_assign(struct buf *b, const char *name, const char *value)
{
	if (buf_addf(b, "%s=", name) < 0 || sh_quote(b, value) < 0)
		return -1;
	return buf_addc(b, '\n');
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

size_t
stepsh_changes(struct step_result *res, const struct buf *out)
{
	const char *p = out->data, *end = out->data + out->len;
	size_t n = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (len >= 2 && p[0] == 'C' && p[1] == ' ') {
			step_result_change(res, "%.*s", (int)(len - 2), p + 2);
			n++;
		}
		p += len + 1;
	}
	if (n > 0)
		res->changed = true;
	return n;
}

void
stepsh_describe_attrs(struct buf *out, const struct stepsh_attrs *a)
{
	if (!a->mode_set && a->owner == NULL && a->group == NULL)
		return;
	(void)buf_adds(out, " (");
	if (a->mode_set)
		(void)buf_addf(
		    out, "%04o%s", a->mode, a->owner || a->group ? " " : "");
	if (a->owner || a->group)
		(void)buf_addf(out, "%s:%s", a->owner ? a->owner : "-",
		    a->group ? a->group : "-");
	(void)buf_addc(out, ')');
}

int
stepsh_run(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	int rc;

	memset(&out, 0, sizeof(out));
	cmd.script = script->data;
	rc = stepsh_exec(ctx, step, &cmd, &out, res, err);
	if (rc == 0)
		(void)stepsh_changes(res, &out.out);
	remote_out_free(&out);
	return rc;
}

static void
stepsh_hex(const unsigned char *h, struct buf *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < crypto_hash_sha256_BYTES; i++) {
		(void)buf_addc(hex, digits[h[i] >> 4]);
		(void)buf_addc(hex, digits[h[i] & 15]);
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
stepsh_sha256_file(
    const char *path, struct buf *hex, uint64_t *size, struct errbuf *err)
{
	crypto_hash_sha256_state st;
	unsigned char h[crypto_hash_sha256_BYTES];
	char *chunk;
	struct stat sb;
	ssize_t n;
	int fd, rc = -1;

	*size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, SH_ERR_IO, "%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return err_set(err, SH_ERR_IO, "%s: not a regular file", path);
	}
	chunk = xmalloc(1u << 16);
	(void)crypto_hash_sha256_init(&st);
	while ((n = read(fd, chunk, 1u << 16)) > 0) {
		(void)crypto_hash_sha256_update(
		    &st, (unsigned char *)chunk, (unsigned long long)n);
		*size += (uint64_t)n;
	}
	if (n < 0) {
		err_set(err, SH_ERR_IO, "%s: %s", path, strerror(errno));
		goto out;
	}
	(void)crypto_hash_sha256_final(&st, h);
	stepsh_hex(h, hex);
	rc = 0;
out:
	free(chunk);
	close(fd);
	return rc;
}

void
stepsh_last_line(const struct buf *b, struct buf *line)
{
	size_t end = b->len, start;

	while (
	    end > 0 && (b->data[end - 1] == '\n' || b->data[end - 1] == '\r' ||
	                   b->data[end - 1] == ' '))
		end--;
	start = end;
	while (start > 0 && b->data[start - 1] != '\n')
		start--;
	if (end - start > 300)
		start = end - 300;
	for (size_t i = start; i < end; i++) {
		unsigned char ch = (unsigned char)b->data[i];

		(void)buf_addc(line, ch < ' ' || ch == 0x7f ? '?' : (char)ch);
	}
}

int
stepsh_exec(struct run_ctx *ctx, const struct step *step,
    struct remote_cmd *cmd, struct remote_out *out, struct step_result *res,
    struct errbuf *err)
{
	struct buf line;
	int rc;

	cmd->become = step->become;
	cmd->timeout_s =
	    step->timeout_s ? step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	rc = remote_run(ctx, cmd, out, err);
	step_result_output(res, out->err.data, out->err.len);
	if (rc < 0)
		return -1;
	res->exit_status = out->status;
	if (out->status == 0)
		return 0;
	buf_init(&line, 1024);
	stepsh_last_line(&out->err, &line);
	if (out->status < 0)
		err_set(err, SH_ERR_REMOTE, "killed by a signal%s%s",
		    line.len ? ": " : "", line.data);
	else
		err_set(err, SH_ERR_REMOTE, "exit %d%s%s", out->status,
		    line.len ? ": " : "", line.data);
	buf_release(&line);
	return -1;
}
