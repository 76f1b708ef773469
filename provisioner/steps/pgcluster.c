/*
 * steps/pgcluster.c: throw-away PostgreSQL clusters on the target, the
 * pieces migration_test and restore_test share. See pgcluster.h.
 */
#include "steps/pgcluster.h"

#include <stdlib.h>
#include <string.h>

#include "steps/stepsh.h"
#include "util/limits.h"

/* ======================================================== fields */

bool
pgcluster_word_ok(const char *s, const char *extra)
{
	if (s[0] == '\0' || s[0] == '-' || strlen(s) > 63)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9') || *p == '_' ||
		        strchr(extra, *p) != NULL))
			return false;
	return true;
}

static int
pgc_parse_workdir(
    const struct node *body, struct pgcluster_cfg *c, struct errbuf *err)
{
	if (node_get(body, "workdir") == NULL) {
		c->workdir = "/tmp";
		return 0;
	}
	if (stepsh_abs_path(body, "workdir", &c->workdir, err) < 0)
		return -1;
	if (!pgcluster_word_ok(c->workdir + 1, "/.-") ||
	    strlen(c->workdir) > PGCLUSTER_WORKDIR_MAX)
		return node_err(err, node_get(body, "workdir"),
		    "workdir: at most %d characters of letters, digits and "
		    "_ . - /",
		    PGCLUSTER_WORKDIR_MAX);
	return 0;
}

int
pgcluster_parse(
    const struct node *body, struct pgcluster_cfg *c, struct errbuf *err)
{
	static const char *const keys[] = { "username", "locale", "encoding",
		NULL };
	const char **dst[] = { &c->username, &c->locale, &c->encoding };
	const char *user = NULL;

	if (node_opt_str(body, "user", &user, err) < 0)
		return -1;
	if (user != NULL && !stepsh_account_name_ok(user))
		return node_err(err, node_get(body, "user"),
		    "user: not a valid user name: '%s'", user);
	c->user = xstrdup(user ? user : "postgres");
	for (size_t i = 0; keys[i] != NULL; i++) {
		if (node_opt_str(body, keys[i], dst[i], err) < 0)
			return -1;
		if (*dst[i] != NULL && !pgcluster_word_ok(*dst[i], ".-@"))
			return node_err(err, node_get(body, keys[i]),
			    "%s: letters, digits and _ . - @ only: '%s'",
			    keys[i], *dst[i]);
	}
	if (c->username == NULL)
		c->username = c->user;
	if (c->locale == NULL)
		c->locale = "C";
	if (c->encoding == NULL)
		c->encoding = "UTF8";
	return pgc_parse_workdir(body, c, err);
}

void
pgcluster_cfg_free(struct pgcluster_cfg *c)
{
	free(c->user);
	c->user = NULL;
}

/* ======================================================== scripts */

const char pgcluster_lib_sh[] =
    "set -u\n"
    "umask 077\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "old() { if [ -n \"$OL\" ]; then LD_LIBRARY_PATH=$OL \"$@\";"
    " else \"$@\"; fi; }\n"
    "new() { \"$@\"; }\n"
    "tailerr() { [ -r \"$1\" ] && tail -n 20 -- \"$1\" >&2; }\n"
    "mkc() {\n"
    "\t$3 \"$1/initdb\" -D \"$2\" --locale=\"$LOC\" --encoding=\"$ENC\""
    " --username=\"$SU\" --auth=trust >\"$2.initdb.log\" 2>&1 ||\n"
    "\t\t{ tailerr \"$2.initdb.log\"; die \"initdb $2 with $1 failed\"; }\n"
    "}\n"
    "startc() {\n"
    "\t$4 \"$1/pg_ctl\" -D \"$2\" -l \"$2.log\" -w -t 120"
    " -o \"-c listen_addresses='' -k $W/s -p $3\" start >/dev/null 2>&1"
    " ||\n"
    "\t\t{ echo \"--- server log $2.log, last lines ---\" >&2;"
    " tailerr \"$2.log\";\n"
    "\t\t  die \"cannot start the cluster in $2 with $1\"; }\n"
    "}\n"
    "stopc() {\n"
    "\t$3 \"$1/pg_ctl\" -D \"$2\" -w -t 120 -m fast stop >/dev/null 2>&1"
    " ||\n"
    "\t\tdie \"cannot stop the cluster in $2\"\n"
    "}\n"
    "running() { [ -f \"$1/postmaster.pid\" ]; }\n"
    "psqlf() {\n"
    "\t$4 \"$1/psql\" -X -q -v ON_ERROR_STOP=0 -h \"$W/s\" -p \"$2\" -U"
    " \"$SU\" -d postgres -f \"$3\" >\"$W/$5.out\" 2>\"$W/$5.err\"\n"
    "\tr=$?\n"
    "\tgrep -e 'ERROR:' -e 'FATAL:' \"$W/$5.err\" | grep -v -F"
    " \"ERROR:  role \\\"$SU\\\" already exists\" >\"$W/$5.bad\"\n"
    "\tif [ \"$r\" != 0 ] || [ -s \"$W/$5.bad\" ]; then\n"
    "\t\thead -n 10 \"$W/$5.bad\" >&2\n"
    "\t\tdie \"restoring $3 with psql failed (exit $r,"
    " $(wc -l < \"$W/$5.bad\") errors)\"\n"
    "\tfi\n"
    "}\n"
    "need() {\n"
    "\tfor t in \"$@\"; do [ -x \"$t\" ] || die \"$t: not found or not"
    " executable by $(id -un)\"; done\n"
    "}\n";

const char pgcluster_sweep_sh[] =
    "n=0\n"
    "for d in \"$WP/$PFX\".*; do\n"
    "\t[ -d \"$d\" ] && [ -O \"$d\" ] && [ ! -e \"$d/.kept\" ] || continue\n"
    "\tup=0\n"
    "\tfor c in \"$d\"/*/; do\n"
    "\t\tc=${c%/}\n"
    "\t\tpid=$(head -n 1 \"$c/postmaster.pid\" 2>/dev/null) || continue\n"
    "\t\tcase $pid in '' | *[!0-9]*) continue ;; esac\n"
    "\t\t[ \"$(readlink \"/proc/$pid/cwd\")\" = \"$c\" ] || continue\n"
    "\t\tkill -QUIT \"$pid\"\n"
    "\t\ti=0\n"
    "\t\twhile kill -0 \"$pid\" 2>/dev/null && [ $i -lt 100 ]; do\n"
    "\t\t\tsleep 0.1; i=$((i + 1))\n"
    "\t\tdone\n"
    "\t\t! kill -0 \"$pid\" 2>/dev/null || up=1\n"
    "\tdone\n"
    "\tif [ $up = 1 ]; then echo \"= sweep_failed $d\"; continue; fi\n"
    "\trm -rf -- \"$d\" && n=$((n + 1))\n"
    "done\n"
    "[ $n = 0 ] || echo \"= swept_workdirs $n\"\n";

/* "WHAT failed (exit N)" and as many of the last stderr lines as fit. */
static int
pgc_fail(const char *what, const struct remote_out *out, struct errbuf *err)
{
	const struct buf *e = &out->err;
	size_t room, start, end = e->len;
	struct buf msg;

	buf_init(&msg, sizeof(err->msg));
	buf_addf(&msg, "%s failed (exit %d)", what, out->status);
	while (end > 0 && (e->data[end - 1] == '\n' || e->data[end - 1] == ' '))
		end--;
	room = sizeof(err->msg) - msg.len - 4;
	start = end > room ? end - room : 0;
	while (start > 0 && start < end && e->data[start - 1] != '\n')
		start++;
	if (start < end) {
		buf_adds(&msg, ":\n");
		for (size_t i = start; i < end; i++) {
			unsigned char ch = (unsigned char)e->data[i];

			buf_addc(&msg, (ch < ' ' && ch != '\n') || ch == 0x7f
			                   ? '?'
			                   : (char)ch);
		}
	}
	err_set(err, SH_ERR_REMOTE, "%s", msg.data);
	buf_release(&msg);
	return -1;
}

/* Picks up "W path" and "= key value" lines. */
static void
pgc_protocol(struct pgcluster *pc, const struct buf *out)
{
	const char *p = out->data, *end = out->data + out->len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *sp;

		if (len > 2 && p[0] == 'W' && p[1] == ' ' && pc->work == NULL) {
			pc->work = xstrndup(p + 2, len - 2);
		} else if (len > 2 && p[0] == '=' && p[1] == ' ' &&
		           (sp = memchr(p + 2, ' ', len - 2)) != NULL) {
			char *key = xstrndup(p + 2, (size_t)(sp - p - 2));

			step_result_detail(pc->res, key, "%.*s",
			    (int)(len - (size_t)(sp + 1 - p)), sp + 1);
			free(key);
		}
		p += len + 1;
	}
}

const char pgcluster_sum_sh[] =
    "sum() {\n"
    "\t[ -f \"$1/$2\" ] || die \"$1/$2: no such file\"\n"
    "\th=$(sha256sum < \"$1/$2\") || die \"sha256sum $1/$2 failed\"\n"
    "\tn=$(wc -c < \"$1/$2\") || die \"wc $1/$2 failed\"\n"
    "\techo \"H $2 ${h%% *} $n\"\n"
    "}\n";

int
pgcluster_sum(const struct buf *out, const char *name, char sha[65],
    uint64_t *size, struct errbuf *err)
{
	const char *p = out->data, *end = out->data + out->len;
	size_t nlen = strlen(name);

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *q = p + 2 + nlen + 1;

		/* "H " NAME " " 64 hex " " SIZE */
		if (len > 2 + nlen + 1 + 64 + 1 && p[0] == 'H' && p[1] == ' ' &&
		    memcmp(p + 2, name, nlen) == 0 && p[2 + nlen] == ' ' &&
		    q[64] == ' ' && strspn(q, "0123456789abcdef") >= 64 &&
		    parse_u64(q + 65, (size_t)(p + len - q - 65), UINT64_MAX,
		        size) == 0) {
			memcpy(sha, q, 64);
			sha[64] = '\0';
			return 0;
		}
		p += len + 1;
	}
	return err_set(err, SH_ERR_REMOTE, "no sha256 reported for %s", name);
}

int
pgcluster_remote(struct pgcluster *p, const char *what,
    const struct buf *script, struct remote_out *out, bool raw,
    struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	int rc;

	memset(out, 0, sizeof(*out));
	if (remote_script(&cmd, script, err) < 0)
		return -1;
	cmd.become = p->user;
	cmd.timeout_s =
	    p->step->timeout_s ? p->step->timeout_s : STEP_DEFAULT_TIMEOUT_S;
	cmd.stdout_is_protocol = true;
	rc = remote_run(p->ctx, &cmd, out, err);
	step_result_output(p->res, out->err.data, out->err.len);
	if (!raw)
		pgc_protocol(p, &out->out);
	if (rc == 0 && out->status != 0)
		rc = pgc_fail(what, out, err);
	return rc;
}

int
pgcluster_connect(struct pgcluster *p, unsigned port, const char *db,
    struct pg_conn **conn, struct errbuf *err)
{
	struct pg_target t = { 0 };
	struct buf sock;
	int rc;

	buf_init(&sock, 4096);
	if (p->work == NULL || buf_addf(&sock, "%s/s", p->work) < 0) {
		buf_release(&sock);
		return err_set(err, SH_ERR_INTERNAL, "no socket dir");
	}
	t.host = sock.data;
	t.port = port;
	t.user = p->username;
	t.dbname = db;
	t.os_user = p->user; /* the relay reaches the 0700 socket dir */
	rc = pg_connect(p->ctx, &t, conn, err);
	buf_release(&sock);
	if (rc < 0)
		err_prefix(err, "connecting to the cluster on port %u: ", port);
	return rc;
}

void
pgcluster_free(struct pgcluster *p)
{
	free(p->work);
	p->work = NULL;
}
