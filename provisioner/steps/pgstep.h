/*
 * steps/pgstep.h: what the sql, pgtap and migrations step kinds share: the
 * connection fields, the list of SQL files and loading them, the connection
 * itself.
 *
 * Connection fields (every kind):
 *   host       "127.0.0.1" (default) or any address as seen from the
 *              target: an SSH direct-tcpip tunnel; or an absolute
 *              directory: the server's unix socket dir, reached through a
 *              relay that runs as the step's `become` user, so peer
 *              authentication sees that OS user (become: postgres)
 *   port       default 5432
 *   user       database role, default postgres
 *   database   default: same as user
 *   password   usually ${secret}; given to libpq in memory only
 *   connect_timeout  seconds, default 10
 * The step's timeout bounds each file (each query: pg.h timeout_s).
 *
 * Files:
 *   files      required: a path or a list. Local paths are resolved
 *              against the directory of the manifest file that holds the
 *              step, read and checked at parse time (offline: a psql
 *              backslash command, a NUL byte, bad UTF-8 or an unterminated
 *              quote is a manifest error "FILE:LINE: ..."), and travel in
 *              memory through libpq; nothing is uploaded
 *   remote     bool: the paths are absolute paths on the target, read with
 *              `cat` as the step's become user when the step runs (then
 *              the checks above fail the step instead)
 *
 * Ownership: struct pgstep_cfg is owned by the kind's cfg; strings in it
 * are borrowed from the manifest tree except where marked.
 */
#ifndef STAGEHAND_PGSTEP_H
#define STAGEHAND_PGSTEP_H

#include <stdbool.h>

#include "model/kind.h"
#include "pg/pgscript.h"

#define PGSTEP_FILE_MAX (64u << 20)

struct pgstep_file {
	const char *name; /* borrowed: as written in the manifest */
	char *path;       /* owned: resolved local path, or the remote one */
	struct buf text;  /* owned: content, when loaded */
	struct pg_script script; /* over text, when loaded */
	bool loaded;
};

struct pgstep_cfg {
	const char *host, *user, *database, *password; /* borrowed */
	unsigned port;
	unsigned connect_timeout_s;
	bool remote;
	struct pgstep_file *files; /* owned */
	size_t nfiles;
};

/* The connection keys, for a kind without `files` and `remote`. */
#define PGSTEP_CONN_KEYS                                                       \
	"host", "port", "user", "database", "password", "connect_timeout"
/* The keys above, to start a kind's key list with. */
#define PGSTEP_KEYS                                                            \
	"files", "remote", "host", "port", "user", "database", "password",     \
	    "connect_timeout"

/* Parses the fields above out of body into c (zeroed by the caller). */
int pgstep_parse(
    const struct node *body, struct pgstep_cfg *c, struct errbuf *err);
void pgstep_free(struct pgstep_cfg *c);
/* Only the connection fields (host .. connect_timeout, and remote): for
 * kinds whose SQL comes from elsewhere than `files` (migrations). */
int pgstep_parse_conn(
    const struct node *body, struct pgstep_cfg *c, struct errbuf *err);
/*
 * The optional field `transaction` of body: per_file (absent: the default,
 * PG_TXN_COMMIT) or none (PG_TXN_NONE, statement by statement as psql
 * runs a file). Anything else is a manifest error at the field.
 */
int pgstep_parse_txn(
    const struct node *body, enum pg_txn *out, struct errbuf *err);
/* path resolved against the directory of manifest_file (NULL: as is);
 * absolute paths stay. Caller frees. */
char *pgstep_path(const char *manifest_file, const char *path);

/*
 * Loads remote files (cat on the target, as step->become) and parses them;
 * local files were loaded by pgstep_parse(). Errors name the file.
 */
int pgstep_load(struct run_ctx *ctx, const struct step *step,
    struct pgstep_cfg *c, struct step_result *res, struct errbuf *err);

/* pg_connect() with the step's become and timeout. */
int pgstep_connect(struct run_ctx *ctx, const struct step *step,
    const struct pgstep_cfg *c, struct pg_conn **out, struct errbuf *err);

/* Moves the connection's notices into res->output. */
void pgstep_notices(struct pg_conn *pc, struct step_result *res);

/* "user@host:port/db" into out, for describe and messages. */
void pgstep_describe_conn(const struct pgstep_cfg *c, struct buf *out);

#endif
