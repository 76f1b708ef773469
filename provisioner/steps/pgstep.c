/*
 * steps/pgstep.c: connection fields, SQL files and connecting, shared by
 * the sql and pgtap step kinds. See pgstep.h.
 */
#include <stdlib.h>
#include <string.h>

#include "steps/pgstep.h"
#include "steps/stepsh.h"
#include "target/remote.h"
#include "util/limits.h"

#define PGSTEP_DEFAULT_HOST "127.0.0.1"
#define PGSTEP_DEFAULT_USER "postgres"
#define PGSTEP_DEFAULT_CONNECT_S 10

static const char *const pgstep_keys[] = { PGSTEP_KEYS, NULL };

/* ======================================================== parse */

static int
no_nul(const struct node *n, struct errbuf *err)
{
	if (n != NULL && n->type == NODE_SCALAR && strlen(n->str) != n->len)
		return node_err(err, n, "must not contain NUL");
	return 0;
}

int
pgstep_parse_txn(const struct node *body, enum pg_txn *out, struct errbuf *err)
{
	const char *t = NULL;

	*out = PG_TXN_COMMIT;
	if (node_opt_str(body, "transaction", &t, err) < 0)
		return -1;
	if (t == NULL || strcmp(t, "per_file") == 0)
		return 0;
	if (strcmp(t, "none") == 0) {
		*out = PG_TXN_NONE;
		return 0;
	}
	return node_err(err, node_get(body, "transaction"),
	    "transaction must be per_file or none, not '%s'", t);
}

char *
pgstep_path(const char *manifest_file, const char *path)
{
	const char *slash;

	if (path[0] == '/' || manifest_file == NULL ||
	    (slash = strrchr(manifest_file, '/')) == NULL)
		return xstrdup(path);
	return xasprintf(
	    "%.*s/%s", (int)(slash - manifest_file), manifest_file, path);
}

/* Parses f->text; where says how errors are reported. */
static int
script_check(struct pgstep_file *f, struct errbuf *err)
{
	if (pg_script_parse(
	        f->name, f->text.data, f->text.len, &f->script, err) < 0)
		return -1;
	f->loaded = true;
	return 0;
}

static int
load_local(const struct node *n, struct pgstep_file *f, struct errbuf *err)
{
	char *msg;

	if (file_read(f->path, PGSTEP_FILE_MAX, &f->text, err) == 0 &&
	    script_check(f, err) == 0)
		return 0;
	/* The message names the file (and line); add the step's place. */
	msg = xstrdup(err->msg);
	node_err(err, n, "%s", msg);
	free(msg);
	return -1;
}

static int
parse_file(const struct node *n, const struct pgstep_cfg *c,
    struct pgstep_file *f, struct errbuf *err)
{
	if (node_expect(n, NODE_SCALAR, "files entry", err) < 0 ||
	    no_nul(n, err) < 0)
		return -1;
	if (n->str[0] == '\0')
		return node_err(err, n, "files: empty path");
	f->name = n->str;
	if (c->remote) {
		buf_init(&f->text, REMOTE_OUTPUT_MAX);
		if (n->str[0] != '/')
			return node_err(err, n,
			    "files: '%s': remote files "
			    "need an absolute path",
			    n->str);
		f->path = xstrdup(n->str);
		return 0;
	}
	f->path = pgstep_path(n->file, n->str);
	return load_local(n, f, err);
}

static int
parse_files(const struct node *body, struct pgstep_cfg *c, struct errbuf *err)
{
	const struct node *files = node_get(body, "files");
	const struct node *const *items;
	size_t n;

	if (files == NULL)
		return node_err(err, body, "files: required");
	if (files->type == NODE_SCALAR) {
		items = (const struct node *const *)&files;
		n = 1;
	} else {
		if (node_expect(files, NODE_SEQ, "files", err) < 0)
			return -1;
		items = (const struct node *const *)files->items;
		n = files->n;
	}
	if (n == 0)
		return node_err(err, files, "files: empty list");
	c->files = xcalloc(n, sizeof(*c->files));
	for (size_t i = 0; i < n; i++) {
		c->nfiles++;
		if (parse_file(items[i], c, &c->files[i], err) < 0)
			return -1;
	}
	return 0;
}

int
pgstep_parse_conn(
    const struct node *body, struct pgstep_cfg *c, struct errbuf *err)
{
	uint64_t port = 5432, cto = PGSTEP_DEFAULT_CONNECT_S;

	if (node_opt_str(body, "host", &c->host, err) < 0 ||
	    node_opt_str(body, "user", &c->user, err) < 0 ||
	    node_opt_str(body, "database", &c->database, err) < 0 ||
	    node_opt_str(body, "password", &c->password, err) < 0 ||
	    node_opt_u64(body, "port", 65535, &port, err) < 0 ||
	    node_opt_u64(body, "connect_timeout", 3600, &cto, err) < 0 ||
	    node_opt_bool(body, "remote", &c->remote, err) < 0)
		return -1;
	for (const char *const *k = pgstep_keys; *k != NULL; k++)
		if (no_nul(node_get(body, *k), err) < 0)
			return -1;
	if (port == 0)
		return node_err(err, node_get(body, "port"), "port: 0");
	if (cto == 0)
		return node_err(err, node_get(body, "connect_timeout"),
		    "connect_timeout: 0");
	if (c->host == NULL)
		c->host = PGSTEP_DEFAULT_HOST;
	if (c->user == NULL)
		c->user = PGSTEP_DEFAULT_USER;
	if (c->host[0] == '\0' || c->user[0] == '\0')
		return node_err(err, body, "host and user must not be empty");
	c->port = (unsigned)port;
	c->connect_timeout_s = (unsigned)cto;
	return 0;
}

int
pgstep_parse(const struct node *body, struct pgstep_cfg *c, struct errbuf *err)
{
	if (pgstep_parse_conn(body, c, err) < 0)
		return -1;
	return parse_files(body, c, err);
}

void
pgstep_free(struct pgstep_cfg *c)
{
	for (size_t i = 0; i < c->nfiles; i++) {
		free(c->files[i].path);
		buf_release(&c->files[i].text);
		pg_script_free(&c->files[i].script);
	}
	free(c->files);
	c->files = NULL;
	c->nfiles = 0;
}

/* ======================================================== run time */

static int
load_remote(struct run_ctx *ctx, const struct step *step, struct pgstep_file *f,
    struct step_result *res, struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	struct buf script;
	int rc;

	buf_init(&script, 8192);
	buf_adds(&script, "exec cat -- ");
	sh_quote(&script, f->path);
	rc = remote_script(&cmd, &script, err);
	cmd.stdout_is_protocol = true;
	if (rc == 0)
		rc = stepsh_remote(ctx, step, &cmd, &out, res, err);
	else
		memset(&out, 0, sizeof(out));
	buf_release(&script);
	pg_script_free(&f->script);
	buf_reset(&f->text);
	f->loaded = false;
	if (rc == 0 && out.out.len >= REMOTE_OUTPUT_MAX)
		rc = err_set(err, SH_ERR_STEP, "%s: larger than %u bytes",
		    f->name, REMOTE_OUTPUT_MAX - 1);
	if (rc == 0 && buf_add(&f->text, out.out.data, out.out.len) < 0)
		rc = err_set(err, SH_ERR_STEP, "%s: too long", f->name);
	remote_out_free(&out);
	if (rc < 0)
		return err->code == SH_ERR_REMOTE
		           ? err_prefix(err, "%s: ", f->name)
		           : -1;
	if (script_check(f, err) < 0) {
		err->code = SH_ERR_STEP;
		return -1;
	}
	return 0;
}

int
pgstep_load(struct run_ctx *ctx, const struct step *step, struct pgstep_cfg *c,
    struct step_result *res, struct errbuf *err)
{
	if (!c->remote)
		return 0;
	for (size_t i = 0; i < c->nfiles; i++)
		if (load_remote(ctx, step, &c->files[i], res, err) < 0)
			return -1;
	return 0;
}

int
pgstep_connect(struct run_ctx *ctx, const struct step *step,
    const struct pgstep_cfg *c, struct pg_conn **out, struct errbuf *err)
{
	struct pg_target t;

	memset(&t, 0, sizeof(t));
	t.host = c->host;
	t.port = c->port;
	t.user = c->user;
	t.dbname = c->database;
	t.password = c->password;
	t.connect_timeout_s = c->connect_timeout_s;
	t.os_user = step->become;
	t.timeout_s =
	    step->timeout_s ? step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	return pg_connect(ctx, &t, out, err);
}

void
pgstep_notices(struct pg_conn *pc, struct step_result *res)
{
	struct buf *n = pg_notices(pc);

	step_result_output(res, n->data, n->len);
	buf_reset(n);
}

void
pgstep_describe_conn(const struct pgstep_cfg *c, struct buf *out)
{
	buf_addf(out, "%s@%s", c->user, c->host);
	if (c->host[0] == '/')
		buf_addf(out, "/.s.PGSQL.%u", c->port);
	else
		buf_addf(out, ":%u", c->port);
	buf_addf(out, "/%s", c->database ? c->database : c->user);
}
