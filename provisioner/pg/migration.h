/*
 * pg/migration.h: one dbmate migration file, parsed offline. Pure: no
 * I/O, no connection; the migrations step kind (steps/migrations.c) reads
 * the directory and runs what this returns.
 *
 * File names: VERSION_NAME.sql, VERSION one or more ASCII digits, then an
 * underscore (pg_migration_version()). The version is the digit string as
 * written ("001" and "1" are different versions, as in dbmate, whose
 * schema_migrations holds the string). Files are applied in byte order
 * of their names, as dbmate sorts them.
 *
 * Contents (dbmate's rules, pkg/dbmate/migration.go):
 *   - a line "-- migrate:up [OPTIONS]" starts the up section; "--", any
 *     blanks, then "migrate:up", then blanks or the end of the line;
 *   - a line "-- migrate:down" ends it (the down section never runs here);
 *   - before the up line only blank lines and "--" comment lines;
 *   - OPTIONS: "transaction:false" (or ":true"); any other option is an
 *     error here (dbmate ignores it: a typo would silently run in a
 *     transaction);
 *   - one up section and at most one down section, down after up. dbmate
 *     requires a down section; it is optional here.
 * The text must be UTF-8 without NUL bytes, and the up section must split
 * as psql splits it (pg/pgscript.h: no backslash commands, no unterminated
 * quote). Errors: SH_ERR_MANIFEST "NAME:LINE: what" (NAME as given).
 *
 * The up section is kept with every line before it blanked to an empty
 * line, so the line numbers of its statements and of the server's error
 * positions are the file's own lines.
 *
 * Ownership: pg_migration_parse() fills *m (zeroed first), which owns its
 * up text and script; text and name are not kept (name is copied).
 * Release with pg_migration_free(), also after a failed parse.
 */
#ifndef STAGEHAND_MIGRATION_H
#define STAGEHAND_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>

#include "pg/pgscript.h"
#include "util/util.h"

/* A version is at most this long: schema_migrations.version is
 * varchar(128). */
#define PG_MIGRATION_VERSION_MAX 128

struct pg_migration {
	char *name;       /* owned: as given, for messages and the script */
	struct buf up;    /* owned: the up section, earlier lines blanked */
	unsigned up_line; /* the line of "-- migrate:up" */
	bool transaction; /* false: "transaction:false" */
	struct pg_script script; /* over up.data */
};

/*
 * The length of the version at the start of the file name fname (not a
 * path), or 0 when fname is not VERSION_NAME.sql with a version of at
 * most PG_MIGRATION_VERSION_MAX digits.
 */
size_t pg_migration_version(const char *fname);

int pg_migration_parse(const char *name, const char *text, size_t len,
    struct pg_migration *m, struct errbuf *err);
void pg_migration_free(struct pg_migration *m);

#endif
