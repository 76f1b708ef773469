/*
 * pg/backupmf.h: the manifest of a backup made by the `backup` step kind
 * (steps/backup.c) and read by `restore_test` (steps/restore_test.c):
 * written as JSON, read back with the YAML reader (JSON is a YAML flow
 * document; json.h writes nothing libyaml reads differently). Pure: no
 * I/O.
 *
 * The document (docs/manifest.md, "backup", is the user's copy):
 *   {
 *     "format": "stagehand-backup 1",
 *     "created": "2026-12-03T09:30:00Z",
 *     "server_version": "15.8 (Debian 15.8-0+deb12u1)",
 *     "server_version_num": 150008,
 *     "pg_dump": "pg_dump (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)",
 *     "globals": {"file": "globals.sql", "sha256": "<64 hex>", "size": N},
 *     "databases": [
 *       {"name": "app", "file": "app.dump", "sha256": "<64 hex>",
 *        "size": N, "objects": [
 *          {"name": "public.people", "kind": "table",
 *           "fingerprint": "5000 rows, md5 <32 hex>"}, ...]}, ...]
 *   }
 * Object kinds and fingerprints are pg/fingerprint.h's. Files are plain
 * names in the backup directory: letters, digits, '.', '_', '-', not
 * starting with '.'. Database names are unique and not empty; so are
 * object names within a database.
 *
 * pg_bk_parse() checks all of that and any key it does not know; errors
 * are SH_ERR_MANIFEST "NAME:LINE:COL: what" (NAME as given).
 *
 * Ownership: struct pg_bk owns every string and array in it; pg_bk_free()
 * releases it (also after a failed parse). pg_bk_db_add() and the
 * fields' strings are copied in by the caller with xstrdup().
 */
#ifndef STAGEHAND_BACKUPMF_H
#define STAGEHAND_BACKUPMF_H

#include <stdbool.h>
#include <stdint.h>

#include "pg/fingerprint.h"
#include "util/util.h"

#define PG_BK_FORMAT "stagehand-backup 1"
#define PG_BK_MANIFEST "manifest.json"
#define PG_BK_GLOBALS "globals.sql"
#define PG_BK_MAX_BYTES (64u << 20)

struct pg_bk_file {
	char *name;   /* owned */
	char *sha256; /* owned: 64 lowercase hex digits */
	uint64_t size;
};

struct pg_bk_db {
	char *name; /* owned */
	struct pg_bk_file file;
	struct pg_fp fp; /* sorted by name */
};

struct pg_bk {
	char *created;        /* owned */
	char *server_version; /* owned */
	uint64_t server_version_num;
	char *pg_dump; /* owned: pg_dump --version */
	struct pg_bk_file globals;
	struct pg_bk_db *dbs; /* owned */
	size_t ndbs;
};

/* Appends a zeroed database named name (copied); returns it. */
struct pg_bk_db *pg_bk_db_add(struct pg_bk *m, const char *name);
void pg_bk_free(struct pg_bk *m);

/* The manifest as JSON (pretty, newline-terminated) into out. -1 with
 * SH_ERR_INTERNAL when out's maximum was too small. */
int pg_bk_write(const struct pg_bk *m, struct buf *out, struct errbuf *err);

/* Parses and checks data[0..len) into *m (zeroed first). */
int pg_bk_parse(const char *name, const char *data, size_t len, struct pg_bk *m,
    struct errbuf *err);

/* A file name as above. */
bool pg_bk_file_name_ok(const char *s);
/* Exactly 64 lowercase hex digits. */
bool pg_bk_sha256_ok(const char *s);

#endif
