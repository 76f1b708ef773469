/*
 * steps/postgres.c: the `postgres` step kind: initdb, start, stop or
 * restart a PostgreSQL cluster on the target and wait until it is ready.
 *
 * Manifest fields:
 *   action      required: initdb | start | stop | restart | status
 *   data_dir    required, absolute: the cluster's data directory
 *   bin_dir     absolute, default /usr/lib/postgresql/bin (the alias
 *               links); e.g. /usr/lib/postgresql/15/bin
 *   user        OS user owning the cluster, default postgres. Every
 *               command of the step runs as this user (sudo -n -u USER):
 *               the step's own `become` is not used
 *   timeout     seconds to wait for start/stop (pg_ctl -w -t) and then
 *               for the server to accept connections; default 60
 *  initdb only:
 *   locale, encoding      --locale, --encoding
 *   auth        one method for both (--auth-local and --auth-host), or
 *               a map {local: peer, host: scram-sha-256}
 *   username    --username: the bootstrap superuser (e.g. supabase_admin)
 *   password    the superuser's password (--pwfile); needed by initdb for
 *               password auth methods; also used by the readiness ping
 *   allow_group_access    bool: --allow-group-access
 *   options     list of extra initdb arguments
 *  start / restart:
 *   options     list of server options for pg_ctl -o, joined with spaces,
 *               e.g. ["-c config_file=/etc/postgresql/postgresql.conf"]
 *               (the server's shell-style parsing applies, as with -o)
 *   socket_dir  -k DIR (created by the user when missing) and where the
 *               readiness ping connects; without it the ping uses TCP to
 *               127.0.0.1
 *   port        -p PORT, and the port the ping connects to (default 5432)
 *   log_file    pg_ctl -l, default DATA_DIR/stagehand-postgres.log (the
 *               one place the cluster user can always write; a parent of
 *               the data dir may belong to root, as /data for /data/pgdata)
 *   ping        bool, default true: after pg_ctl says the server is up,
 *               also wait until a libpq connection through the run's SSH
 *               session succeeds (pg.h)
 *   ping_user   role for the ping, default `username`, else `user`;
 *               ping_dbname default postgres. Through socket_dir the
 *               connection comes from `user` (peer auth sees it), through
 *               TCP from 127.0.0.1; trust, peer or `password` must let
 *               that role in
 *  stop / restart:
 *   mode        smart | fast | immediate, default fast
 *
 * Semantics (idempotent): initdb on an initialised directory (PG_VERSION
 * exists) is ok; start of a running cluster is ok (it is pinged all the
 * same); stop of a stopped one is ok; restart always restarts (changed),
 * or starts a stopped cluster; status only reports (details: state,
 * pg_version, pid). A start that fails reports the last lines of the
 * server log in the error; the remote script reads them in the same
 * round trip.
 *
 * One round trip per apply (plus the pings): a generated sh script, run
 * as `user`, checks the state (PG_VERSION, pg_ctl status) and acts. Its
 * stdout is the "+ change" / "= key value" protocol of stepsh_run_plus();
 * the password travels in the script (stdin, never argv; the script
 * buffer is wiped) and reaches initdb on a pipe (--pwfile=/dev/stdin).
 * probe runs the same script with A=0, which only reads.
 *
 * STEP_RETRY_SAFE: every action checks the state first.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg/pg.h"
#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"

#define PGS_DEFAULT_BIN "/usr/lib/postgresql/bin"
#define PGS_DEFAULT_TIMEOUT_S 60
#define PGS_MAX_TIMEOUT_S 86400

enum pgs_action {
	PGS_INITDB,
	PGS_START,
	PGS_STOP,
	PGS_RESTART,
	PGS_STATUS,
};

static const char *const pgs_action_names[] = {
	"initdb",
	"start",
	"stop",
	"restart",
	"status",
	NULL,
};

struct pgs_cfg {
	enum pgs_action action;
	const char *data_dir; /* borrowed */
	const char *bin_dir;  /* borrowed or the default */
	char *user;           /* owned: also the become user */
	unsigned timeout_s;
	const char *locale;     /* borrowed; NULL: unset */
	const char *encoding;   /* borrowed */
	const char *auth_local; /* borrowed */
	const char *auth_host;  /* borrowed */
	const char *username;   /* borrowed */
	const char *password;   /* borrowed (a secret) */
	bool allow_group_access;
	struct strlist options;
	const char *socket_dir; /* borrowed */
	unsigned port;          /* 0: unset */
	const char *log_file;   /* borrowed; NULL: the default */
	const char *mode;       /* borrowed or "fast" */
	bool ping;
	const char *ping_user; /* borrowed or a default */
	const char *ping_dbname;
};

static const char *const pgs_keys[] = {
	"action",
	"data_dir",
	"bin_dir",
	"user",
	"timeout",
	"locale",
	"encoding",
	"auth",
	"username",
	"password",
	"allow_group_access",
	"options",
	"socket_dir",
	"port",
	"log_file",
	"mode",
	"ping",
	"ping_user",
	"ping_dbname",
	NULL,
};

/* Keys that only some actions take: key, then a mask of 1 << action. */
struct pgs_only {
	const char *key;
	unsigned actions;
};

#define PGS_A(a) (1u << (a))
static const struct pgs_only pgs_only[] = {
	{ "locale", PGS_A(PGS_INITDB) },
	{ "encoding", PGS_A(PGS_INITDB) },
	{ "auth", PGS_A(PGS_INITDB) },
	{ "username",
	    PGS_A(PGS_INITDB) | PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "allow_group_access", PGS_A(PGS_INITDB) },
	{ "options",
	    PGS_A(PGS_INITDB) | PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "socket_dir", PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "port", PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "log_file", PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "ping", PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "ping_user", PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "ping_dbname", PGS_A(PGS_START) | PGS_A(PGS_RESTART) },
	{ "mode", PGS_A(PGS_STOP) | PGS_A(PGS_RESTART) },
	{ NULL, 0 },
};

/* ======================================================== parse */

static void
pgs_release(void *cfg)
{
	struct pgs_cfg *c = cfg;

	free(c->user);
	strlist_free(&c->options);
}

static int
pgs_parse_action(const struct node *body, struct pgs_cfg *c, struct errbuf *err)
{
	const char *a;

	if (node_req_str(body, "action", &a, err) < 0)
		return -1;
	for (size_t i = 0; pgs_action_names[i] != NULL; i++) {
		if (strcmp(a, pgs_action_names[i]) == 0) {
			c->action = (enum pgs_action)i;
			return 0;
		}
	}
	return node_err(err, node_get(body, "action"),
	    "action must be initdb, start, stop, restart or status, not '%s'",
	    a);
}

static int
pgs_check_only(const struct node *body, enum pgs_action a, struct errbuf *err)
{
	for (const struct pgs_only *o = pgs_only; o->key != NULL; o++) {
		if ((o->actions & PGS_A(a)) == 0 && node_get(body, o->key))
			return node_err(err, node_key(body, o->key),
			    "%s does not apply to action %s", o->key,
			    pgs_action_names[a]);
	}
	return 0;
}

/* A word that goes on an initdb command line: no NUL/newline, not empty. */
static int
pgs_word(
    const struct node *body, const char *key, const char *v, struct errbuf *err)
{
	if (v == NULL)
		return 0;
	if (v[0] == '\0' || strpbrk(v, "\n\r") != NULL ||
	    strlen(v) != node_get(body, key)->len)
		return node_err(err, node_get(body, key),
		    "%s must be a non-empty single line", key);
	return 0;
}

static int
pgs_parse_auth(const struct node *body, struct pgs_cfg *c, struct errbuf *err)
{
	static const char *const keys[] = { "local", "host", NULL };
	const struct node *n = node_get(body, "auth");

	if (n == NULL)
		return 0;
	if (n->type == NODE_SCALAR) {
		c->auth_local = c->auth_host = n->str;
		return pgs_word(body, "auth", n->str, err);
	}
	if (node_expect(n, NODE_MAP, "auth", err) < 0 ||
	    node_check_keys(n, keys, err) < 0 ||
	    node_opt_str(n, "local", &c->auth_local, err) < 0 ||
	    node_opt_str(n, "host", &c->auth_host, err) < 0 ||
	    pgs_word(n, "local", c->auth_local, err) < 0 ||
	    pgs_word(n, "host", c->auth_host, err) < 0)
		return -1;
	return 0;
}

static int
pgs_parse_strings(
    const struct node *body, struct pgs_cfg *c, struct errbuf *err)
{
	const char *user = NULL;

	if (node_opt_str(body, "user", &user, err) < 0 ||
	    node_opt_str(body, "locale", &c->locale, err) < 0 ||
	    node_opt_str(body, "encoding", &c->encoding, err) < 0 ||
	    node_opt_str(body, "username", &c->username, err) < 0 ||
	    node_opt_str(body, "password", &c->password, err) < 0 ||
	    node_opt_str(body, "mode", &c->mode, err) < 0 ||
	    node_opt_str(body, "ping_user", &c->ping_user, err) < 0 ||
	    node_opt_str(body, "ping_dbname", &c->ping_dbname, err) < 0 ||
	    pgs_word(body, "locale", c->locale, err) < 0 ||
	    pgs_word(body, "encoding", c->encoding, err) < 0 ||
	    pgs_word(body, "username", c->username, err) < 0 ||
	    pgs_word(body, "password", c->password, err) < 0 ||
	    pgs_word(body, "ping_user", c->ping_user, err) < 0 ||
	    pgs_word(body, "ping_dbname", c->ping_dbname, err) < 0)
		return -1;
	if (user != NULL && !stepsh_account_name_ok(user))
		return node_err(err, node_get(body, "user"),
		    "user: not a valid user name: '%s'", user);
	c->user = xstrdup(user ? user : "postgres");
	if (c->mode == NULL)
		c->mode = "fast";
	if (strcmp(c->mode, "smart") != 0 && strcmp(c->mode, "fast") != 0 &&
	    strcmp(c->mode, "immediate") != 0)
		return node_err(err, node_get(body, "mode"),
		    "mode must be smart, fast or immediate, not '%s'", c->mode);
	return 0;
}

static int
pgs_parse_paths(const struct node *body, struct pgs_cfg *c, struct errbuf *err)
{
	if (stepsh_abs_path(body, "data_dir", &c->data_dir, err) < 0)
		return -1;
	if (node_get(body, "bin_dir") != NULL &&
	    stepsh_abs_path(body, "bin_dir", &c->bin_dir, err) < 0)
		return -1;
	if (node_get(body, "socket_dir") != NULL &&
	    stepsh_abs_path(body, "socket_dir", &c->socket_dir, err) < 0)
		return -1;
	if (node_get(body, "log_file") != NULL &&
	    stepsh_abs_path(body, "log_file", &c->log_file, err) < 0)
		return -1;
	if (c->bin_dir == NULL)
		c->bin_dir = PGS_DEFAULT_BIN;
	return 0;
}

static int
pgs_parse_numbers(
    const struct node *body, struct pgs_cfg *c, struct errbuf *err)
{
	uint64_t t = PGS_DEFAULT_TIMEOUT_S, port = 0;

	c->ping = true;
	if (node_opt_u64(body, "timeout", PGS_MAX_TIMEOUT_S, &t, err) < 0 ||
	    node_opt_u64(body, "port", 65535, &port, err) < 0 ||
	    node_opt_bool(
	        body, "allow_group_access", &c->allow_group_access, err) < 0 ||
	    node_opt_bool(body, "ping", &c->ping, err) < 0 ||
	    node_opt_strlist(body, "options", &c->options, err) < 0)
		return -1;
	if (t == 0)
		return node_err(err, node_get(body, "timeout"),
		    "timeout must be at least 1 second");
	if (node_get(body, "port") != NULL && port == 0)
		return node_err(err, node_get(body, "port"), "port 0");
	for (size_t i = 0; i < c->options.n; i++)
		if (strpbrk(c->options.v[i], "\n\r") != NULL)
			return node_err(err, node_get(body, "options"),
			    "options: one line each");
	c->timeout_s = (unsigned)t;
	c->port = (unsigned)port;
	return 0;
}

static int
pgs_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct pgs_cfg *c = cfg;

	if (pgs_parse_action(body, c, err) < 0 ||
	    pgs_check_only(body, c->action, err) < 0 ||
	    pgs_parse_paths(body, c, err) < 0 ||
	    pgs_parse_strings(body, c, err) < 0 ||
	    pgs_parse_auth(body, c, err) < 0 ||
	    pgs_parse_numbers(body, c, err) < 0)
		return -1;
	if (c->ping_user == NULL)
		c->ping_user = c->username ? c->username : c->user;
	if (c->ping_dbname == NULL)
		c->ping_dbname = "postgres";
	return 0;
}

/*
 * A start/restart's `options` is shell code: pg_ctl -o hands it to
 * /bin/sh (see model/kind.h). initdb's are passed as words.
 */
static size_t
pgs_code(const struct node *body, const struct node **out, size_t max)
{
	const struct node *a, *o;

	if (body->type != NODE_MAP || max == 0)
		return 0;
	a = node_get(body, "action");
	if (a != NULL && a->type == NODE_SCALAR &&
	    strcmp(a->str, "initdb") == 0)
		return 0;
	if ((o = node_get(body, "options")) == NULL)
		return 0;
	out[0] = o;
	return 1;
}

/* ======================================================== the script */

/*
 * Inputs: A (1 apply, 0 probe), ACT, B, D, T, L, O (pg_ctl -o text; empty
 * for none), K (socket dir or empty), M (stop mode), PW (password or
 * empty), and the function do_initdb. Exit 1 with a message on stderr;
 * exit 2 when the server did not start, with the server log's last lines
 * after a marker line on stderr.
 */
static const char pgs_sh[] =
    "set -u\n"
    "umask 077\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "if [ ! -x \"$B/pg_ctl\" ]; then\n"
    "\t[ \"$A\" = 1 ] || { echo \"+ $ACT $D ($B/pg_ctl is not there"
    " yet)\"; exit 0; }\n"
    "\tdie \"$B/pg_ctl: not found or not executable by $(id -un)\"\n"
    "fi\n"
    "absent() {\n"
    "\t[ \"$A\" = 1 ] || { echo \"+ $ACT $D (no cluster there yet)\";"
    " exit 0; }\n"
    "\tdie \"$D holds no cluster (no PG_VERSION)$1\"\n"
    "}\n"
    "state() {\n"
    "\tif [ ! -f \"$D/PG_VERSION\" ]; then\n"
    "\t\t[ -e \"$D\" ] && [ ! -x \"$D\" ] && die \"$D: not accessible by"
    " $(id -un)\"\n"
    "\t\techo absent; return\n"
    "\tfi\n"
    "\t\"$B/pg_ctl\" -D \"$D\" status >/dev/null 2>&1\n"
    "\tcase $? in 0) echo running ;; 3) echo stopped ;;\n"
    "\t*) die \"pg_ctl status -D $D failed\" ;; esac\n"
    "}\n"
    "facts() {\n"
    "\techo \"= state $1\"\n"
    "\t[ \"$1\" = absent ] && return 0\n"
    "\techo \"= pg_version $(cat \"$D/PG_VERSION\")\"\n"
    "\t[ \"$1\" = running ] && [ -r \"$D/postmaster.pid\" ] &&\n"
    "\t\techo \"= pid $(head -n 1 \"$D/postmaster.pid\")\"\n"
    "\treturn 0\n"
    "}\n"
    "logtail() {\n"
    "\tif [ -r \"$L\" ] && [ \"$(wc -c < \"$L\")\" -gt \"$n\" ]; then\n"
    "\t\techo \"--- server log $L, this attempt ---\" >&2\n"
    "\t\ttail -c +$((n + 1)) -- \"$L\" | tail -n 20 >&2\n"
    "\telif [ -r \"$L\" ]; then\n"
    "\t\techo \"--- server log $L, last lines ---\" >&2\n"
    "\t\ttail -n 20 -- \"$L\" >&2\n"
    "\telse echo \"--- no server log at $L ---\" >&2; fi\n"
    "\texit 2\n"
    "}\n"
    "start() {\n"
    "\techo \"+ start $D\"\n"
    "\t[ \"$A\" = 1 ] || return 0\n"
    "\t[ -z \"$K\" ] || mkdir -p -- \"$K\" || die \"cannot create"
    " socket_dir $K as $(id -un)\"\n"
    "\t: >> \"$L\" || die \"cannot write log_file $L as $(id -un)\"\n"
    "\tn=$(wc -c < \"$L\")\n"
    "\tif [ -n \"$O\" ]; then\n"
    "\t\t\"$B/pg_ctl\" -D \"$D\" -l \"$L\" -w -t \"$T\" -o \"$O\" start"
    " </dev/null >&2\n"
    "\telse \"$B/pg_ctl\" -D \"$D\" -l \"$L\" -w -t \"$T\" start"
    " </dev/null >&2; fi\n"
    "\t[ $? = 0 ] || logtail\n"
    "}\n"
    "restart() {\n"
    "\techo \"+ restart $D\"\n"
    "\t[ \"$A\" = 1 ] || return 0\n"
    "\t: >> \"$L\" || die \"cannot write log_file $L as $(id -un)\"\n"
    "\tn=$(wc -c < \"$L\")\n"
    "\tif [ -n \"$O\" ]; then\n"
    "\t\t\"$B/pg_ctl\" -D \"$D\" -l \"$L\" -w -t \"$T\" -m \"$M\" -o \"$O\""
    " restart </dev/null >&2\n"
    "\telse \"$B/pg_ctl\" -D \"$D\" -l \"$L\" -w -t \"$T\" -m \"$M\""
    " restart </dev/null >&2; fi\n"
    "\t[ $? = 0 ] || logtail\n"
    "}\n"
    "initdb() {\n"
    "\tif [ -e \"$D\" ] && [ -n \"$(ls -A -- \"$D\" 2>/dev/null)\" ]; then\n"
    "\t\tdie \"$D is not empty and holds no cluster (no PG_VERSION)\"\n"
    "\tfi\n"
    "\techo \"+ initdb $D\"\n"
    "\t[ \"$A\" = 1 ] || return 0\n"
    "\t[ -x \"$B/initdb\" ] || die \"$B/initdb: not found or not"
    " executable\"\n"
    "\tif [ -n \"$PW\" ]; then\n"
    "\t\to=$(printf '%s\\n' \"$PW\" | do_initdb --pwfile=/dev/stdin 2>&1)\n"
    "\telse o=$(do_initdb </dev/null 2>&1); fi\n"
    "\tr=$?\n"
    "\tprintf '%s\\n' \"$o\" >&2\n"
    "\t[ $r = 0 ] && return 0\n"
    "\tcase $o in *'invalid locale'*) die \"initdb: a locale it needs is"
    " missing on the target (see locale -a): set locale: C.UTF-8 on the"
    " step, or generate it first (apt-get install locales; locale-gen)\" ;;"
    " esac\n"
    "\tdie \"initdb -D $D failed\"\n"
    "}\n"
    "s=$(state) || exit 1\n"
    "case $ACT in\n"
    "initdb) [ \"$s\" = absent ] && { initdb; s=stopped; } ;;\n"
    "start)\n"
    "\t[ \"$s\" = absent ] && absent \": initdb it first\"\n"
    "\t[ \"$s\" = stopped ] && { start; s=running; } ;;\n"
    "restart)\n"
    "\t[ \"$s\" = absent ] && absent \"\"\n"
    "\tif [ \"$s\" = stopped ]; then start; else restart; fi\n"
    "\ts=running ;;\n"
    "stop)\n"
    "\t[ \"$s\" = absent ] && { [ \"$A\" = 1 ] || exit 0; absent \"\"; }\n"
    "\tif [ \"$s\" = running ]; then\n"
    "\t\techo \"+ stop $D\"\n"
    "\t\tif [ \"$A\" = 1 ]; then\n"
    "\t\t\t\"$B/pg_ctl\" -D \"$D\" -w -t \"$T\" -m \"$M\" stop"
    " </dev/null >&2 || die \"pg_ctl stop -D $D failed\"\n"
    "\t\tfi\n"
    "\t\ts=stopped\n"
    "\tfi ;;\n"
    "esac\n"
    "[ \"$A\" = 1 ] && facts \"$s\"\n"
    "[ \"$A\" = 1 ] || [ \"$ACT\" != status ] || facts \"$s\"\n"
    "exit 0\n";

/* Appends ` 'word'` to b. */
static int
pgs_arg(struct buf *b, const char *flag, const char *v)
{
	if (v == NULL)
		return 0;
	if (buf_addc(b, ' ') < 0 || buf_adds(b, flag) < 0)
		return -1;
	return sh_quote(b, v);
}

static int
pgs_initdb_fn(const struct pgs_cfg *c, struct buf *b)
{
	if (buf_adds(b, "do_initdb() { \"$B/initdb\" -D \"$D\"") < 0 ||
	    pgs_arg(b, "--locale=", c->locale) < 0 ||
	    pgs_arg(b, "--encoding=", c->encoding) < 0 ||
	    pgs_arg(b, "--auth-local=", c->auth_local) < 0 ||
	    pgs_arg(b, "--auth-host=", c->auth_host) < 0 ||
	    pgs_arg(b, "--username=", c->username) < 0 ||
	    (c->allow_group_access && buf_adds(b, " --allow-group-access") < 0))
		return -1;
	for (size_t i = 0; c->action == PGS_INITDB && i < c->options.n; i++)
		if (pgs_arg(b, "", c->options.v[i]) < 0)
			return -1;
	return buf_adds(b, " \"$@\"; }\n");
}

/* The pg_ctl -o text: options joined, then -k and -p. */
static int
pgs_server_opts(const struct pgs_cfg *c, struct buf *o)
{
	if (c->action == PGS_START || c->action == PGS_RESTART)
		for (size_t i = 0; i < c->options.n; i++)
			if ((o->len > 0 && buf_addc(o, ' ') < 0) ||
			    buf_adds(o, c->options.v[i]) < 0)
				return -1;
	if (c->socket_dir != NULL &&
	    ((o->len > 0 && buf_addc(o, ' ') < 0) || buf_adds(o, "-k ") < 0 ||
	        sh_quote(o, c->socket_dir) < 0))
		return -1;
	if (c->port != 0 &&
	    buf_addf(o, "%s-p %u", o->len > 0 ? " " : "", c->port) < 0)
		return -1;
	return 0;
}

static int
pgs_script(const struct pgs_cfg *c, enum step_mode mode, struct buf *b)
{
	struct buf o, log;
	int rc = -1;

	buf_init(&o, 1u << 16);
	buf_init(&log, 4096);
	if (pgs_server_opts(c, &o) < 0)
		goto out;
	if (c->log_file != NULL)
		buf_adds(&log, c->log_file);
	else
		buf_addf(&log, "%s/stagehand-postgres.log", c->data_dir);
	if (buf_failed(&log))
		buf_fail(b); /* a cut path would be a hole in the script */
	if (buf_addf(b, "A=%d\n", mode == STEP_APPLY ? 1 : 0) < 0 ||
	    stepsh_assign(b, "ACT", pgs_action_names[c->action]) < 0 ||
	    stepsh_assign(b, "B", c->bin_dir) < 0 ||
	    stepsh_assign(b, "D", c->data_dir) < 0 ||
	    buf_addf(b, "T=%u\n", c->timeout_s) < 0 ||
	    stepsh_assign(b, "L", log.data) < 0 ||
	    stepsh_assign(b, "O", o.data) < 0 ||
	    stepsh_assign(b, "K", c->socket_dir ? c->socket_dir : "") < 0 ||
	    stepsh_assign(b, "M", c->mode) < 0 ||
	    stepsh_assign(b, "PW", c->password ? c->password : "") < 0 ||
	    pgs_initdb_fn(c, b) < 0 || buf_adds(b, pgs_sh) < 0)
		goto out;
	rc = 0;
out:
	buf_release(&log);
	buf_release(&o);
	return rc;
}

/* ======================================================== running it */

/*
 * The error for a failed script: "ACTION DATA_DIR failed (exit N)" and as
 * many of the last stderr lines as fit. For a server that did not start
 * (exit 2), "start DATA_DIR: the server did not start; LOG:" and the log
 * lines after the script's marker line, without pg_ctl's own words.
 */
static int
pgs_fail(
    const struct pgs_cfg *c, const struct remote_out *out, struct errbuf *err)
{
	const struct buf *e = &out->err;
	const char *mark =
	    out->status == 2 ? strstr(e->data, "--- server log ") : NULL;
	size_t room, start = 0, end = e->len;
	struct buf msg;

	buf_init(&msg, sizeof(err->msg));
	if (mark != NULL) {
		const char *log = mark + strlen("--- server log ");

		buf_addf(&msg, "%s %s: the server did not start; %.*s",
		    pgs_action_names[c->action], c->data_dir,
		    (int)strcspn(log, ",\n"), log);
		start = (size_t)(mark - e->data) + strcspn(mark, "\n");
	} else {
		buf_addf(&msg, "%s %s failed (exit %d)",
		    pgs_action_names[c->action], c->data_dir, out->status);
	}
	while (end > start &&
	       (e->data[end - 1] == '\n' || e->data[end - 1] == ' '))
		end--;
	room = sizeof(err->msg) - msg.len - 4;
	if (end - start > room)
		start = end - room;
	while (start > 0 && start < end && e->data[start - 1] != '\n')
		start++; /* whole lines only */
	if (start < end)
		buf_adds(&msg, ":\n");
	for (size_t i = start; i < end; i++) {
		unsigned char ch = (unsigned char)e->data[i];

		buf_addc(&msg,
		    (ch < ' ' && ch != '\n') || ch == 0x7f ? '?' : (char)ch);
	}
	err_set(err, SH_ERR_REMOTE, "%s", msg.data);
	buf_release(&msg);
	return -1;
}

/* Parses "+ change" and "= key value" lines of the script's stdout. */
static void
pgs_protocol(struct step_result *res, const struct buf *out)
{
	const char *p = out->data, *end = out->data + out->len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *sp;

		if (len > 2 && p[0] == '+' && p[1] == ' ') {
			step_result_change(res, "%.*s", (int)(len - 2), p + 2);
			res->changed = true;
		} else if (len > 2 && p[0] == '=' && p[1] == ' ' &&
		           (sp = memchr(p + 2, ' ', len - 2)) != NULL) {
			char *key = xstrndup(p + 2, (size_t)(sp - p - 2));

			step_result_detail(res, key, "%.*s",
			    (int)(len - (size_t)(sp + 1 - p)), sp + 1);
			free(key);
		}
		p += len + 1;
	}
}

static int
pgs_exec(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct pgs_cfg *c = step->cfg;
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	struct buf script;
	int rc = -1;

	memset(&out, 0, sizeof(out));
	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (pgs_script(c, mode, &script) < 0) {
		err_set(err, SH_ERR_STEP, "postgres: script too long");
		goto out;
	}
	if (remote_script(&cmd, &script, err) < 0)
		goto out;
	cmd.become = c->user;
	cmd.timeout_s =
	    step->timeout_s ? step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	cmd.stdout_is_protocol = true;
	if (remote_run(ctx, &cmd, &out, err) < 0) {
		step_result_output(res, out.err.data, out.err.len);
		goto out;
	}
	step_result_output(res, out.err.data, out.err.len);
	res->exit_status = out.status;
	pgs_protocol(res, &out.out);
	if (out.status != 0) {
		pgs_fail(c, &out, err);
		goto out;
	}
	rc = 0;
out:
	remote_out_free(&out);
	buf_release(&script); /* it may hold the password */
	return rc;
}

/* Sleeps ms unless interrupted; -1 when interrupted. */
static int
pgs_nap(struct run_ctx *ctx, unsigned ms)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	for (unsigned slept = 0; slept < ms; slept += 50) {
		if (ctx->interrupted != NULL && *ctx->interrupted)
			return -1;
		nanosleep(&ts, NULL);
	}
	return 0;
}

/*
 * Waits until a libpq connection through the SSH session succeeds, for at
 * most the step's timeout. Transport errors end the wait at once (the
 * runner reconnects); others are retried.
 */
static int
pgs_wait_ready(struct run_ctx *ctx, const struct pgs_cfg *c,
    struct step_result *res, struct errbuf *err)
{
	struct pg_target t = { 0 };
	uint64_t start = now_ms(), deadline = start + c->timeout_s * 1000ull;
	struct errbuf last;
	unsigned tries = 0;

	t.host = c->socket_dir ? c->socket_dir : "127.0.0.1";
	t.port = c->port;
	t.user = c->ping_user;
	t.dbname = c->ping_dbname;
	t.password = c->password;
	t.os_user = c->user; /* the relay to socket_dir: peer auth sees it */
	t.connect_timeout_s = c->timeout_s < 10 ? c->timeout_s : 10;
	err_clear(&last);
	for (;;) {
		tries++;
		if (pg_ping(ctx, &t, &last) == 0)
			break;
		if (last.code == SH_ERR_SSH ||
		    last.code == SH_ERR_INTERRUPTED) {
			*err = last;
			return -1;
		}
		if (now_ms() < deadline && pgs_nap(ctx, 250) < 0)
			return err_set(err, SH_ERR_INTERRUPTED,
			    "%s: interrupted while waiting for the server",
			    c->data_dir);
		if (now_ms() >= deadline)
			return err_set(err, SH_ERR_TIMEOUT,
			    "%s: the server did not accept connections as "
			    "'%s' on %s port %u within %u s: %s",
			    c->data_dir, c->ping_user, t.host,
			    c->port ? c->port : 5432, c->timeout_s, last.msg);
	}
	step_result_detail(
	    res, "ready_ms", "%llu", (unsigned long long)(now_ms() - start));
	step_result_detail(res, "ping_tries", "%u", tries);
	return 0;
}

static int
pgs_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	const struct pgs_cfg *c = step->cfg;

	if (pgs_exec(ctx, step, mode, res, err) < 0)
		return -1;
	if (mode == STEP_APPLY &&
	    (c->action == PGS_START || c->action == PGS_RESTART) && c->ping)
		return pgs_wait_ready(ctx, c, res, err);
	return 0;
}

static void
pgs_describe(const struct step *step, struct buf *out)
{
	const struct pgs_cfg *c = step->cfg;

	buf_addf(out, "postgres %s %s (as %s, %s)", pgs_action_names[c->action],
	    c->data_dir, c->user, c->bin_dir);
	if (c->port != 0)
		buf_addf(out, " port %u", c->port);
}

const struct step_kind step_kind_postgres = {
	.name = "postgres",
	.flags = STEP_RETRY_SAFE,
	.keys = pgs_keys,
	.cfg_size = sizeof(struct pgs_cfg),
	.parse = pgs_parse,
	.run = pgs_run,
	.describe = pgs_describe,
	.release = pgs_release,
	.code = pgs_code,
};
