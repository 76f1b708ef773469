/*
 * pg/backupmf.c: the backup manifest, written with json.h and read back
 * with the YAML reader. See backupmf.h.
 */
#include "pg/backupmf.h"

#include <stdlib.h>
#include <string.h>

#include "model/yaml.h"
#include "util/json.h"

#define BK_MAX_NODES 4000000u
#define BK_NAME_MAX 255

static const struct yaml_opts bk_yaml = {
	.max_bytes = PG_BK_MAX_BYTES,
	.max_depth = 8,
	.max_nodes = BK_MAX_NODES,
	.max_aliases = 0,
	.dup_keys = false,
	.nul_scalars = false,
	.drop = NULL,
	.code = SH_ERR_MANIFEST,
	.what = NULL,
};

struct pg_bk_db *
pg_bk_db_add(struct pg_bk *m, const char *name)
{
	struct pg_bk_db *d;

	m->dbs = xreallocarray(m->dbs, m->ndbs + 1, sizeof(*m->dbs));
	d = &m->dbs[m->ndbs++];
	memset(d, 0, sizeof(*d));
	d->name = xstrdup(name);
	pg_fp_init(&d->fp);
	return d;
}

static void
bk_file_free(struct pg_bk_file *f)
{
	free(f->name);
	free(f->sha256);
	memset(f, 0, sizeof(*f));
}

void
pg_bk_free(struct pg_bk *m)
{
	for (size_t i = 0; i < m->ndbs; i++) {
		free(m->dbs[i].name);
		bk_file_free(&m->dbs[i].file);
		pg_fp_free(&m->dbs[i].fp);
	}
	free(m->dbs);
	free(m->created);
	free(m->server_version);
	free(m->pg_dump);
	bk_file_free(&m->globals);
	memset(m, 0, sizeof(*m));
}

bool
pg_bk_file_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > BK_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789._-") == n;
}

bool
pg_bk_sha256_ok(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* ======================================================== write */

static void
bk_write_file(struct json *j, const struct pg_bk_file *f)
{
	json_member_string(j, "file", f->name);
	json_member_string(j, "sha256", f->sha256);
	json_member_uint(j, "size", f->size);
}

static void
bk_write_db(struct json *j, const struct pg_bk_db *d)
{
	json_object_begin(j);
	json_member_string(j, "name", d->name);
	bk_write_file(j, &d->file);
	json_key(j, "objects");
	json_array_begin(j);
	for (size_t i = 0; i < d->fp.n; i++) {
		const struct pg_fp_obj *o = &d->fp.v[i];

		json_object_begin(j);
		json_member_string(j, "name", o->name);
		json_member_string(j, "kind", pg_fp_kind_name(o->kind));
		json_member_string(j, "fingerprint", o->fp);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
}

int
pg_bk_write(const struct pg_bk *m, struct buf *out, struct errbuf *err)
{
	struct json j;

	json_init(&j, out, true);
	json_object_begin(&j);
	json_member_string(&j, "format", PG_BK_FORMAT);
	json_member_string(&j, "created", m->created);
	json_member_string(&j, "server_version", m->server_version);
	json_member_uint(&j, "server_version_num", m->server_version_num);
	json_member_string(&j, "pg_dump", m->pg_dump);
	json_key(&j, "globals");
	json_object_begin(&j);
	bk_write_file(&j, &m->globals);
	json_object_end(&j);
	json_key(&j, "databases");
	json_array_begin(&j);
	for (size_t i = 0; i < m->ndbs; i++)
		bk_write_db(&j, &m->dbs[i]);
	json_array_end(&j);
	json_object_end(&j);
	if (json_finish(&j) < 0)
		return err_set(
		    err, SH_ERR_INTERNAL, "backup manifest too long");
	return 0;
}

/* ======================================================== parse */

/* A required string of map[key], copied into *out. */
static int
bk_str(const struct node *map, const char *key, char **out, struct errbuf *err)
{
	const char *s = NULL;

	if (node_req_str(map, key, &s, err) < 0)
		return -1;
	if (s[0] == '\0')
		return node_err(err, node_get(map, key), "%s: empty", key);
	*out = xstrdup(s);
	return 0;
}

static int
bk_u64(
    const struct node *map, const char *key, uint64_t *out, struct errbuf *err)
{
	const struct node *n = node_get(map, key);

	if (n == NULL)
		return node_err(err, map, "missing required key '%s'", key);
	return node_as_u64(n, UINT64_MAX, out, err);
}

static int
bk_parse_file(const struct node *map, struct pg_bk_file *f, struct errbuf *err)
{
	if (bk_str(map, "file", &f->name, err) < 0 ||
	    bk_str(map, "sha256", &f->sha256, err) < 0 ||
	    bk_u64(map, "size", &f->size, err) < 0)
		return -1;
	if (!pg_bk_file_name_ok(f->name))
		return node_err(err, node_get(map, "file"),
		    "file: not a plain file name: '%s'", f->name);
	if (!pg_bk_sha256_ok(f->sha256))
		return node_err(err, node_get(map, "sha256"),
		    "sha256: not 64 lowercase hex digits: '%s'", f->sha256);
	return 0;
}

static int
bk_parse_object(const struct node *map, struct pg_fp *fp, struct errbuf *err)
{
	static const char *const keys[] = { "name", "kind", "fingerprint",
		NULL };
	const char *name = NULL, *kind = NULL, *print = NULL;
	char k;

	if (node_expect(map, NODE_MAP, "an object", err) < 0 ||
	    node_check_keys(map, keys, err) < 0 ||
	    node_req_str(map, "name", &name, err) < 0 ||
	    node_req_str(map, "kind", &kind, err) < 0 ||
	    node_req_str(map, "fingerprint", &print, err) < 0)
		return -1;
	k = pg_fp_kind(kind);
	if (k == 0)
		return node_err(err, node_get(map, "kind"),
		    "kind must be table, matview or sequence, not '%s'", kind);
	if (name[0] == '\0' || print[0] == '\0')
		return node_err(err, map, "empty name or fingerprint");
	pg_fp_add(fp, name, k, print);
	return 0;
}

static int
bk_parse_db(const struct node *map, struct pg_bk *m, struct errbuf *err)
{
	static const char *const keys[] = { "name", "file", "sha256", "size",
		"objects", NULL };
	const struct node *objs;
	const char *name = NULL;
	struct pg_bk_db *d;

	if (node_expect(map, NODE_MAP, "a database", err) < 0 ||
	    node_check_keys(map, keys, err) < 0 ||
	    node_req_str(map, "name", &name, err) < 0)
		return -1;
	if (name[0] == '\0')
		return node_err(err, node_get(map, "name"), "name: empty");
	for (size_t i = 0; i < m->ndbs; i++)
		if (strcmp(m->dbs[i].name, name) == 0)
			return node_err(err, node_get(map, "name"),
			    "database '%s' twice", name);
	d = pg_bk_db_add(m, name);
	if (bk_parse_file(map, &d->file, err) < 0)
		return -1;
	objs = node_get(map, "objects");
	if (objs == NULL)
		return node_err(err, map, "missing required key 'objects'");
	if (node_expect(objs, NODE_SEQ, "objects", err) < 0)
		return -1;
	for (size_t i = 0; i < objs->n; i++)
		if (bk_parse_object(objs->items[i], &d->fp, err) < 0)
			return -1;
	pg_fp_sort(&d->fp); /* then a name given twice is adjacent */
	for (size_t i = 1; i < d->fp.n; i++)
		if (strcmp(d->fp.v[i - 1].name, d->fp.v[i].name) == 0)
			return node_err(
			    err, objs, "object '%s' twice", d->fp.v[i].name);
	return 0;
}

static int
bk_parse_root(const struct node *root, struct pg_bk *m, struct errbuf *err)
{
	static const char *const keys[] = { "format", "created",
		"server_version", "server_version_num", "pg_dump", "globals",
		"databases", NULL };
	const struct node *g, *dbs;
	const char *format = NULL;

	if (node_expect(root, NODE_MAP, "a backup manifest", err) < 0 ||
	    node_check_keys(root, keys, err) < 0 ||
	    node_req_str(root, "format", &format, err) < 0)
		return -1;
	if (strcmp(format, PG_BK_FORMAT) != 0)
		return node_err(err, node_get(root, "format"),
		    "format: '%s', not '" PG_BK_FORMAT "'", format);
	if (bk_str(root, "created", &m->created, err) < 0 ||
	    bk_str(root, "server_version", &m->server_version, err) < 0 ||
	    bk_u64(root, "server_version_num", &m->server_version_num, err) <
	        0 ||
	    bk_str(root, "pg_dump", &m->pg_dump, err) < 0)
		return -1;
	g = node_get(root, "globals");
	dbs = node_get(root, "databases");
	if (g == NULL || dbs == NULL)
		return node_err(err, root, "missing required key '%s'",
		    g == NULL ? "globals" : "databases");
	if (node_expect(g, NODE_MAP, "globals", err) < 0 ||
	    node_check_keys(g,
	        (const char *const[]){ "file", "sha256", "size", NULL },
	        err) < 0 ||
	    bk_parse_file(g, &m->globals, err) < 0 ||
	    node_expect(dbs, NODE_SEQ, "databases", err) < 0)
		return -1;
	for (size_t i = 0; i < dbs->n; i++)
		if (bk_parse_db(dbs->items[i], m, err) < 0)
			return -1;
	for (size_t i = 0; i < m->ndbs; i++)
		for (size_t k = 0; k <= i; k++)
			if (strcmp(m->dbs[i].file.name,
			        k < i ? m->dbs[k].file.name
			              : m->globals.name) == 0)
				return node_err(err, dbs->items[i],
				    "file '%s' twice", m->dbs[i].file.name);
	return 0;
}

int
pg_bk_parse(const char *name, const char *data, size_t len, struct pg_bk *m,
    struct errbuf *err)
{
	struct node *root = NULL;
	int rc;

	memset(m, 0, sizeof(*m));
	if (yaml_read_tree(name, data, len, &bk_yaml, NULL, &root, err) < 0)
		return -1;
	rc = bk_parse_root(root, m, err);
	node_free(root);
	return rc;
}
