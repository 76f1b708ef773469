/*
 * pg/fingerprint.c: the fingerprint of a database's data. See
 * fingerprint.h for what is fingerprinted and how.
 *
 * Two round trips: the list of objects, then one SELECT per object, all
 * in one query string (results come back in order).
 */
#include "pg/fingerprint.h"

#include <stdlib.h>
#include <string.h>

#define PG_FP_SQL_MAX (64u << 20)

/* Session settings that make the rows' text forms the same everywhere. */
static const char fp_settings_sql[] =
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD';"
    " SET IntervalStyle = 'postgres'; SET extra_float_digits = 1;"
    " SET bytea_output = 'hex'; SET search_path = pg_catalog;";

static const char fp_list_sql[] =
    "SELECT n.nspname || '.' || c.relname, c.relkind::text,"
    " quote_ident(n.nspname) || '.' || quote_ident(c.relname),"
    " c.relispopulated::text"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'm', 'S')"
    " AND n.nspname <> 'information_schema'"
    " AND n.nspname NOT LIKE 'pg\\_%'"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d"
    " WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid"
    " AND d.deptype = 'e')"
    " ORDER BY 1";

void
pg_fp_init(struct pg_fp *f)
{
	memset(f, 0, sizeof(*f));
}

void
pg_fp_free(struct pg_fp *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->v[i].name);
		free(f->v[i].qname);
		free(f->v[i].fp);
	}
	free(f->v);
	memset(f, 0, sizeof(*f));
}

void
pg_fp_add(struct pg_fp *f, const char *name, char kind, const char *fp)
{
	struct pg_fp_obj *o;

	f->v = xreallocarray(f->v, f->n + 1, sizeof(*f->v));
	o = &f->v[f->n++];
	o->name = xstrdup(name);
	o->qname = NULL;
	o->kind = kind;
	o->fp = xstrdup(fp);
}

static int
fp_obj_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pg_fp_obj *)a)->name,
	    ((const struct pg_fp_obj *)b)->name);
}

void
pg_fp_sort(struct pg_fp *f)
{
	if (f->n > 1)
		qsort(f->v, f->n, sizeof(*f->v), fp_obj_cmp);
}

const char *
pg_fp_kind_name(char kind)
{
	return kind == 'S' ? "sequence" : kind == 'm' ? "matview" : "table";
}

char
pg_fp_kind(const char *name)
{
	if (strcmp(name, "table") == 0)
		return 'r';
	if (strcmp(name, "matview") == 0)
		return 'm';
	if (strcmp(name, "sequence") == 0)
		return 'S';
	return 0;
}

static int
fp_ignore(void *arg, PGresult *res, struct errbuf *err)
{
	(void)arg;
	(void)res;
	(void)err;
	return 0;
}

static int
fp_on_list(void *arg, PGresult *res, struct errbuf *err)
{
	struct pg_fp *f = arg;
	int rows;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return 0;
	if (PQnfields(res) != 4)
		return err_set(err, SH_ERR_INTERNAL, "fingerprint: bad list");
	rows = PQntuples(res);
	f->v = xreallocarray(f->v, f->n + (size_t)rows + 1, sizeof(*f->v));
	for (int i = 0; i < rows; i++) {
		struct pg_fp_obj *o = &f->v[f->n++];
		bool populated = strcmp(PQgetvalue(res, i, 3), "true") == 0;

		o->name = xstrdup(PQgetvalue(res, i, 0));
		o->kind = PQgetvalue(res, i, 1)[0];
		o->qname = xstrdup(PQgetvalue(res, i, 2));
		o->fp = o->kind == 'm' && !populated ? xstrdup("not populated")
		                                     : NULL;
	}
	return 0;
}

/* One SELECT per object that needs one, in list order. */
static void
fp_queries(const struct pg_fp *f, struct buf *sql)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct pg_fp_obj *o = &f->v[i];

		if (o->fp != NULL)
			continue;
		if (o->kind == 'S')
			buf_addf(sql,
			    "SELECT 'last_value ' || last_value || ', "
			    "is_called "
			    "' || is_called FROM %s;\n",
			    o->qname);
		else
			buf_addf(sql,
			    "SELECT count(*) || ' rows, md5 ' || coalesce(md5("
			    "string_agg(ROW(x.*)::text, E'\\n' ORDER BY "
			    "ROW(x.*)::text COLLATE \"C\")), '-') FROM ONLY %s "
			    "x;\n",
			    o->qname);
	}
}

struct fp_fill {
	struct pg_fp *f;
	size_t next; /* the object the next result belongs to */
};

static int
fp_on_row(void *arg, PGresult *res, struct errbuf *err)
{
	struct fp_fill *fill = arg;
	struct pg_fp *f = fill->f;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return 0;
	while (fill->next < f->n && f->v[fill->next].fp != NULL)
		fill->next++;
	if (fill->next >= f->n || PQntuples(res) != 1 || PQnfields(res) != 1)
		return err_set(
		    err, SH_ERR_INTERNAL, "fingerprint: unexpected result");
	f->v[fill->next++].fp = xstrdup(PQgetvalue(res, 0, 0));
	return 0;
}

int
pg_fp_rows(struct pg_conn *conn, struct pg_fp *f, struct errbuf *err)
{
	struct fp_fill fill = { f, 0 };
	struct pg_error pe;
	struct buf sql;
	int rc;

	if (pg_exec(conn, fp_settings_sql, fp_ignore, NULL, &pe, err) < 0 ||
	    pg_exec(conn, fp_list_sql, fp_on_list, f, &pe, err) < 0)
		return -1;
	buf_init(&sql, PG_FP_SQL_MAX);
	fp_queries(f, &sql);
	rc = 0;
	if (buf_failed(&sql))
		rc = err_set(
		    err, SH_ERR_INTERNAL, "fingerprint queries too long");
	else if (sql.len > 0)
		rc = pg_exec(conn, sql.data, fp_on_row, &fill, &pe, err);
	buf_release(&sql);
	for (size_t i = 0; rc == 0 && i < f->n; i++)
		if (f->v[i].fp == NULL)
			rc = err_set(err, SH_ERR_INTERNAL,
			    "fingerprint: no result for %s", f->v[i].name);
	pg_fp_sort(f);
	return rc;
}

bool
pg_fp_same(const struct pg_fp_obj *a, const struct pg_fp_obj *b)
{
	return a != NULL && b != NULL && a->kind == b->kind &&
	       strcmp(a->fp, b->fp) == 0;
}

void
pg_fp_pairs(const struct pg_fp *a, const struct pg_fp *b,
    void (*fn)(void *arg, const struct pg_fp_obj *a, const struct pg_fp_obj *b),
    void *arg)
{
	size_t i = 0, j = 0;

	while (i < a->n || j < b->n) {
		int cmp = i >= a->n   ? 1
		          : j >= b->n ? -1
		                      : strcmp(a->v[i].name, b->v[j].name);

		fn(arg, cmp <= 0 ? &a->v[i] : NULL, cmp >= 0 ? &b->v[j] : NULL);
		i += cmp <= 0;
		j += cmp >= 0;
	}
}
