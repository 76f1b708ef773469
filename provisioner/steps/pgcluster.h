/*
 * steps/pgcluster.h: what the kinds that run throw-away PostgreSQL
 * clusters on the target share (migration_test, restore_test): their
 * common fields, the sh helpers of their scripts, the sweep of work dirs
 * an interrupted run left, running a script as the cluster user with its
 * "W"/"="/"H" stdout protocol, and a libpq connection to a cluster on the
 * work dir's private socket. `backup` runs its scripts (and hashes its
 * files) the same way.
 *
 * A work dir WORK (mktemp -d WORKDIR/PREFIX.XXXXXX, 0700, owned by the
 * cluster user) holds WORK/s, the clusters' unix socket dir (no TCP
 * listener, trust auth), and one data dir per cluster. libpq reaches a
 * cluster through pg.h's relay, which runs as the cluster user too.
 *
 * Scripts print on stdout:
 *   W PATH          the work dir they made (first one kept)
 *   = KEY VALUE     a detail of the step
 *   H NAME SHA SIZE a file's sha256 and size (pgcluster_sum_sh)
 * and their failures on stderr.
 *
 * Manifest fields every such kind takes (pgcluster_parse()):
 *   user        OS user that runs everything, default postgres
 *   username    the clusters' bootstrap superuser, default `user`
 *   locale, encoding   initdb's, default C, UTF8
 *   workdir     absolute parent of the work dir, default /tmp; at most
 *               PGCLUSTER_WORKDIR_MAX characters of letters, digits and
 *               _ . - / (it ends up in pg_ctl -o and in socket paths)
 *
 * Ownership: struct pgcluster borrows ctx, step, res and the names; it
 * owns work (pgcluster_free()). struct pgcluster_cfg owns user; the other
 * strings are borrowed from the manifest tree (pgcluster_cfg_free()).
 */
#ifndef STAGEHAND_PGCLUSTER_H
#define STAGEHAND_PGCLUSTER_H

#include <stdbool.h>

#include "model/kind.h"
#include "pg/pg.h"
#include "target/remote.h"

#define PGCLUSTER_WORKDIR_MAX 64 /* unix socket paths are short */

/* The keys of struct pgcluster_cfg, for a kind's key list. */
#define PGCLUSTER_KEYS "user", "username", "locale", "encoding", "workdir"

struct pgcluster_cfg {
	char *user;           /* owned: also the become user */
	const char *username; /* borrowed, or user */
	const char *locale;   /* borrowed or "C" */
	const char *encoding; /* borrowed or "UTF8" */
	const char *workdir;  /* borrowed or "/tmp" */
};

/* Reads the fields above from body into c (zeroed by the caller). */
int pgcluster_parse(
    const struct node *body, struct pgcluster_cfg *c, struct errbuf *err);
void pgcluster_cfg_free(struct pgcluster_cfg *c);
/* 1 to 63 of letters, digits, '_' and the characters of extra, not
 * starting with '-': names that go into SQL and onto command lines. */
bool pgcluster_word_ok(const char *s, const char *extra);

struct pgcluster {
	struct run_ctx *ctx;
	const struct step *step;
	struct step_result *res;
	const char *user;     /* OS user: runs every script, and the relay */
	const char *username; /* the clusters' bootstrap superuser */
	char *work;           /* owned: WORK on the target, once reported */
};

/*
 * The sh helpers every script starts with; they need these variables:
 * LOC, ENC (initdb's locale and encoding), SU (username), W (WORK), OL
 * (LD_LIBRARY_PATH for `old`; may be empty).
 *   die MSG               message on stderr, exit 1
 *   old CMD... / new CMD...   run CMD with OL in LD_LIBRARY_PATH / as is
 *   tailerr FILE          its last 20 lines on stderr
 *   mkc BIN DIR RUN       initdb DIR with BIN (RUN: old or new)
 *   startc BIN DIR PORT RUN   start it on $W/s and PORT, wait
 *   stopc BIN DIR RUN     fast shutdown, wait
 *   running DIR           a postmaster.pid is there
 *   need FILE...          each is executable, or die naming it
 *   psqlf BIN PORT FILE RUN TAG   runs FILE with BIN/psql into database
 *                         postgres; any ERROR but the one a restore into
 *                         a fresh cluster always gives (CREATE ROLE of the
 *                         bootstrap superuser) dies, showing the first
 *                         ones (output in $W/TAG.out, .err, .bad)
 */
extern const char pgcluster_lib_sh[];

/*
 * Sweeps what an earlier run left when its session dropped or it was
 * interrupted: each $WP/$PFX.* dir of this user not marked .kept, whose
 * servers (a postmaster.pid of a subdir whose process runs in that very
 * data dir) get an immediate shutdown, and which is then removed. A
 * server that will not stop in 10 s keeps its dir ("= sweep_failed DIR");
 * "= swept_workdirs N" counts the others.
 */
extern const char pgcluster_sweep_sh[];

/* sum DIR NAME: prints "H NAME SHA256 SIZE" of DIR/NAME, or dies. */
extern const char pgcluster_sum_sh[];

/*
 * The sha256 (64 hex digits, into sha) and size of file name from the
 * "H" lines of out; -1 with SH_ERR_REMOTE when there is none.
 */
int pgcluster_sum(const struct buf *out, const char *name, char sha[65],
    uint64_t *size, struct errbuf *err);

/*
 * Runs script as p->user with the step's timeout. stderr goes into the
 * step's output; stdout is the protocol above (parsed into p->work and
 * details), or, raw, data left in out for the caller. A non-zero exit is
 * SH_ERR_REMOTE "WHAT failed (exit N):" and as many of the last stderr
 * lines as fit. out is initialised here; the caller frees it always.
 */
int pgcluster_remote(struct pgcluster *p, const char *what,
    const struct buf *script, struct remote_out *out, bool raw,
    struct errbuf *err);

/* A libpq connection as p->username to database db of the cluster on
 * port, through WORK/s. */
int pgcluster_connect(struct pgcluster *p, unsigned port, const char *db,
    struct pg_conn **conn, struct errbuf *err);

void pgcluster_free(struct pgcluster *p);

#endif
