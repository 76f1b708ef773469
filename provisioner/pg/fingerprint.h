/*
 * pg/fingerprint.h: the fingerprint of a database's data, through libpq:
 * one line per user table, materialized view and sequence, so that two
 * copies of a database (before and after an upgrade, a backup and its
 * restore) can be compared object by object.
 *
 * Objects: every relation of kind table, matview or sequence that is not
 * in pg_catalog, information_schema, pg_toast (any pg_* schema) and not
 * owned by an extension. Fingerprints:
 *   table, matview     "N rows, md5 HEX": the row count and the md5 of the
 *                      rows' text forms, joined by newlines in C-collation
 *                      order ("-" for no rows); session settings pinned
 *                      first (TimeZone UTC, DateStyle ISO, extra_float_
 *                      digits 1, bytea hex, search_path pg_catalog) so the
 *                      text forms are the same on every server
 *   matview not populated   "not populated"
 *   sequence           "last_value N, is_called B"
 * This reads whole tables into one string on the server: it is meant for
 * test data and small databases, not for terabytes.
 *
 * pg_fp_rows() runs in whatever transaction the connection is in, so a
 * caller can fingerprint the snapshot it exported for pg_dump.
 *
 * Ownership: struct pg_fp owns its objects and their strings; pg_fp_free()
 * releases them. pg_fp_add() copies what it is given.
 */
#ifndef STAGEHAND_FINGERPRINT_H
#define STAGEHAND_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>

#include "pg/pg.h"
#include "util/util.h"

struct pg_fp_obj {
	char *name;  /* owned: schema.name, unquoted */
	char *qname; /* owned: quoted by the server; NULL when read back */
	char kind;   /* 'r' table, 'm' matview, 'S' sequence */
	char *fp;    /* owned: "5000 rows, md5 ..." */
};

struct pg_fp {
	struct pg_fp_obj *v; /* owned */
	size_t n;
};

void pg_fp_init(struct pg_fp *f);
void pg_fp_free(struct pg_fp *f);

/* Fingerprints every object of the connection's database into f (empty),
 * sorted by name. */
int pg_fp_rows(struct pg_conn *conn, struct pg_fp *f, struct errbuf *err);

/* Appends one object (copies name and fp); for fingerprints read back. */
void pg_fp_add(struct pg_fp *f, const char *name, char kind, const char *fp);
/* Sorts f by name (strcmp). */
void pg_fp_sort(struct pg_fp *f);

/* "table", "matview", "sequence". */
const char *pg_fp_kind_name(char kind);
/* The kind letter of one of those names; 0 when it is none. */
char pg_fp_kind(const char *name);

/*
 * Walks two sorted fingerprints side by side, calling fn once per name
 * in either, with the object of each side or NULL where it is absent.
 */
void pg_fp_pairs(const struct pg_fp *a, const struct pg_fp *b,
    void (*fn)(void *arg, const struct pg_fp_obj *a, const struct pg_fp_obj *b),
    void *arg);
/* Both present, of one kind, with the same fingerprint. */
bool pg_fp_same(const struct pg_fp_obj *a, const struct pg_fp_obj *b);

#endif
