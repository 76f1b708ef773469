/*
 * steps/service.c: the `service` step kind: a systemd unit: its unit file,
 * whether it is enabled, and whether it runs.
 *
 * Manifest fields:
 *   name       required: the unit, e.g. postgresql.service. Letters,
 *              digits and : _ . @ - \ (systemd's set), at most 255 bytes,
 *              not starting with - . or @, without a slash. A name
 *              without a unit type suffix gets .service (as systemctl
 *              does). A template (foo@.service) takes content/src only
 *   content    the unit file's text, installed as
 *              /etc/systemd/system/NAME (mode 0644, owner root); may
 *              hold ${secret} values, it travels only on stdin
 *   src        instead of content: a local file (relative to the
 *              directory of the manifest file that holds the step), read
 *              when the manifest is loaded; at most SERVICE_UNIT_MAX bytes
 *   enabled    bool; unset leaves it as it is. true: `systemctl enable`
 *              when is-enabled says disabled, linked or enabled-runtime
 *              (a static, indirect or generated unit counts as enabled; a
 *              masked one fails). false: `systemctl disable` when it says
 *              enabled
 *   state      started | stopped | restarted | reloaded; unset leaves it.
 *                started    `systemctl start` unless active, activating
 *                           or reloading
 *                stopped    `systemctl stop` unless inactive or failed
 *                restarted  `systemctl restart`, always (always changed)
 *                reloaded   `systemctl reload` when active (always
 *                           changed), else start
 *   wait       seconds, default 60, at most 3600: started, restarted,
 *              reloaded only. After the start/restart/reload command
 *              returned, how long `systemctl is-active` may take to say
 *              active, and then `ready` to succeed. A unit this step
 *              started must be active on two checks a second apart (a
 *              Type=simple unit whose process exits at once is active for
 *              a moment). A Type=oneshot unit without RemainAfterExit is
 *              not waited for: its start returns when it is done
 *   ready      a shell command (run by sh as the step's become user, stdin
 *              /dev/null) repeated every second until it exits 0, within
 *              `wait`: e.g. `pg_isready -q`. It runs on every apply with
 *              started, restarted or reloaded, also when nothing was
 *              started (the steps after it want the service ready); never
 *              in plan. Shell text: a raw ${var} in it is warned about
 *
 * At least one of content, src, enabled and state is required.
 *
 * One round trip, one script; probe runs it with every mutation behind
 * X, so it only reads. In order: systemd must be PID 1 (with
 * /run/systemd/system) when enabled or state is set, else the step fails
 * with "systemd is not running on the target" before changing anything (a
 * content-only step installs the file without daemon-reload: an image
 * built without a running systemd); the unit file is compared by sha256 and
 * replaced atomically (temp file in the same directory, fsync, mv) when it
 * differs or is a symlink (a mask), its mode/owner fixed when only they
 * differ; `systemctl daemon-reload` when the file changed or systemd says
 * NeedDaemonReload (a reload an interrupted run missed); enable/disable;
 * start/stop/restart/reload; the wait; ready. Change lines: "create F",
 * "content F", "replace symlink F", "mode F: 600 -> 644", "daemon-reload",
 * "enable N", "disable N", "start N", "stop N", "restart N", "reload N".
 * A plan for a unit that systemd does not know yet (its file comes with
 * this step or an earlier one) lists enable/start as they would come.
 *
 * Failures: a refusal (no systemd, unit not found, masked, a systemctl
 * command other than the start) is "NAME: <reason>". A start, restart or
 * reload that fails, a unit that is not active in time and a ready command
 * that never succeeds are one error: what failed, the unit's state
 * (ActiveState/SubState, Result, the main process's exit status) and the
 * last lines of `journalctl -u NAME --no-pager -n 20` since the step
 * began, as many as fit, redacted before they are cut.
 *
 * A changed unit file does not restart a running unit (as with Ansible's
 * systemd module): that is what `restarted` is for. The step's timeout
 * bounds the whole script; unset, it is STEP_DEFAULT_TIMEOUT_S plus wait.
 *
 * Idempotence: a second apply reports ok, except restarted and reloaded.
 * STEP_RETRY_SAFE: after a dropped connection the step runs again, which
 * at worst restarts a unit twice.
 */
#include <stdlib.h>
#include <string.h>

#include "steps/stepsh.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "util/limits.h"
#include "util/redact.h"

/* The largest unit file (content or src) the step installs. */
#define SERVICE_UNIT_MAX (1u << 20)
/* systemd's UNIT_NAME_MAX, less the NUL. */
#define SERVICE_NAME_MAX 255
#define SERVICE_WAIT_DEFAULT 60
#define SERVICE_WAIT_MAX 3600
/* The script's marker before a failure's message, state and journal. */
#define SERVICE_FAIL_MARK "--- stagehand-service-fail ---\n"

enum service_state {
	SERVICE_LEAVE,
	SERVICE_STARTED,
	SERVICE_STOPPED,
	SERVICE_RESTARTED,
	SERVICE_RELOADED,
};

static const char *const service_state_names[] = {
	"",
	"started",
	"stopped",
	"restarted",
	"reloaded",
	NULL,
};

/* The unit types systemd knows; another suffix gets .service. */
static const char *const service_types[] = {
	"service",
	"socket",
	"device",
	"mount",
	"automount",
	"swap",
	"target",
	"path",
	"timer",
	"slice",
	"scope",
	NULL,
};

struct service_cfg {
	char *name;          /* owned: with its suffix */
	const char *src_arg; /* borrowed: src as written */
	char *src;           /* owned: resolved local path; NULL: none */
	const char *content; /* borrowed from the tree, or src_data */
	size_t content_len;
	char *src_data; /* owned: src's bytes */
	int enabled;    /* -1 leave, 0, 1 */
	enum service_state state;
	unsigned wait_s;
	const char *ready; /* borrowed; NULL: none */
};

static const char *const service_keys[] = {
	"name",
	"content",
	"src",
	"enabled",
	"state",
	"wait",
	"ready",
	NULL,
};

/* ======================================================== parse */

static bool
service_name_chars_ok(const char *s)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
	                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.@-\\";

	return strspn(s, ok) == strlen(s);
}

static bool
service_has_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot == NULL || dot == name)
		return false;
	for (size_t i = 0; service_types[i] != NULL; i++)
		if (strcmp(dot + 1, service_types[i]) == 0)
			return true;
	return false;
}

/* foo@.service: a template, which cannot be started or enabled. */
static bool
service_is_template(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot != NULL && dot > name && dot[-1] == '@';
}

static int
service_parse_name(
    const struct node *body, struct service_cfg *c, struct errbuf *err)
{
	const struct node *n;
	const char *s;

	if (node_req_str(body, "name", &s, err) < 0)
		return -1;
	n = node_get(body, "name");
	if (s[0] == '\0' || strlen(s) != n->len || s[0] == '-' || s[0] == '.' ||
	    s[0] == '@' || !service_name_chars_ok(s))
		return node_err(err, n,
		    "name: not a systemd unit name: '%s' (letters, digits "
		    "and : _ . @ - \\ only, no slash)",
		    s);
	c->name = service_has_type(s) ? xstrdup(s) : xasprintf("%s.service", s);
	if (strlen(c->name) > SERVICE_NAME_MAX)
		return node_err(
		    err, n, "name: longer than %d bytes", SERVICE_NAME_MAX);
	if (strchr(c->name, '@') != strrchr(c->name, '@'))
		return node_err(
		    err, n, "name: more than one '@' in '%s'", c->name);
	return 0;
}

/* Reads src now: the unit file is part of the manifest, as content is. */
static int
service_read_src(
    const struct node *body, struct service_cfg *c, struct errbuf *err)
{
	const struct node *n = node_get(body, "src");
	struct errbuf ioerr;
	struct buf data;

	c->src = stepsh_local_path(n->file, c->src_arg);
	if (file_read(c->src, SERVICE_UNIT_MAX, &data, &ioerr) < 0) {
		buf_release(&data);
		return node_err(err, n, "src: %s", ioerr.msg);
	}
	if (mem_has_nul(data.data, data.len)) {
		buf_release(&data);
		return node_err(err, n, "src: %s: holds a NUL byte", c->src);
	}
	c->src_data = buf_detach(&data, &c->content_len);
	buf_release(&data);
	c->content = c->src_data;
	return 0;
}

static int
service_parse_unit(
    const struct node *body, struct service_cfg *c, struct errbuf *err)
{
	const struct node *n;

	if (node_opt_str(body, "content", &c->content, err) < 0 ||
	    node_opt_str(body, "src", &c->src_arg, err) < 0)
		return -1;
	if (c->content != NULL && c->src_arg != NULL)
		return node_err(err, node_get(body, "src"),
		    "service takes content or src, not both");
	if (c->src_arg != NULL)
		return service_read_src(body, c, err);
	if (c->content == NULL)
		return 0;
	n = node_get(body, "content");
	c->content_len = n->len;
	if (strlen(c->content) != n->len)
		return node_err(err, n, "content: must not contain NUL");
	if (n->len > SERVICE_UNIT_MAX)
		return node_err(
		    err, n, "content: larger than %u bytes", SERVICE_UNIT_MAX);
	return 0;
}

static int
service_parse_state(
    const struct node *body, struct service_cfg *c, struct errbuf *err)
{
	const char *s = NULL;

	c->state = SERVICE_LEAVE;
	if (node_opt_str(body, "state", &s, err) < 0)
		return -1;
	if (s == NULL)
		return 0;
	for (size_t i = 1; service_state_names[i] != NULL; i++) {
		if (strcmp(s, service_state_names[i]) == 0) {
			c->state = (enum service_state)i;
			return 0;
		}
	}
	return node_err(err, node_get(body, "state"),
	    "state: expected started, stopped, restarted or reloaded, got "
	    "'%s'",
	    s);
}

static bool
service_starts(const struct service_cfg *c)
{
	return c->state == SERVICE_STARTED || c->state == SERVICE_RESTARTED ||
	       c->state == SERVICE_RELOADED;
}

static int
service_parse_rest(
    const struct node *body, struct service_cfg *c, struct errbuf *err)
{
	const struct node *n;
	uint64_t w = SERVICE_WAIT_DEFAULT;
	bool on = false;

	c->enabled = -1;
	if (node_opt_bool(body, "enabled", &on, err) < 0 ||
	    node_opt_u64(body, "wait", SERVICE_WAIT_MAX, &w, err) < 0 ||
	    node_opt_str(body, "ready", &c->ready, err) < 0)
		return -1;
	if (node_get(body, "enabled") != NULL)
		c->enabled = on ? 1 : 0;
	c->wait_s = (unsigned)w;
	n = node_get(body, "ready");
	if (n != NULL && (n->len == 0 || strlen(c->ready) != n->len))
		return node_err(
		    err, n, "ready: must be a non-empty command without NUL");
	return 0;
}

static int
service_check(
    const struct node *body, const struct service_cfg *c, struct errbuf *err)
{
	const char *k = node_get(body, "wait") ? "wait" : "ready";

	if (c->content == NULL && c->enabled < 0 && c->state == SERVICE_LEAVE)
		return node_err(err, body,
		    "service needs at least one of content, src, enabled "
		    "and state");
	if (!service_starts(c) && node_get(body, k) != NULL)
		return node_err(err, node_get(body, k),
		    "%s is only for state started, restarted or reloaded", k);
	if (service_is_template(c->name) &&
	    (c->enabled >= 0 || c->state != SERVICE_LEAVE))
		return node_err(err, node_get(body, "name"),
		    "%s is a template: it takes content or src only; enable "
		    "or start an instance of it (NAME@INSTANCE.%s)",
		    c->name, strrchr(c->name, '.') + 1);
	return 0;
}

static int
service_parse(const struct node *body, void *cfg, struct errbuf *err)
{
	struct service_cfg *c = cfg;

	if (service_parse_name(body, c, err) < 0 ||
	    service_parse_unit(body, c, err) < 0 ||
	    service_parse_state(body, c, err) < 0 ||
	    service_parse_rest(body, c, err) < 0)
		return -1;
	return service_check(body, c, err);
}

static void
service_release(void *cfg)
{
	struct service_cfg *c = cfg;

	free(c->name);
	free(c->src);
	free(c->src_data);
}

/* `ready` is shell text (see model/kind.h). */
static size_t
service_code(const struct node *body, const struct node **out, size_t max)
{
	const struct node *r = node_get(body, "ready");

	if (r == NULL || max == 0)
		return 0;
	out[0] = r;
	return 1;
}

/* ======================================================== the script */

/*
 * Inputs: N (unit), HF (1: install a unit file) H (its sha256) U (its
 * text; apply only), EN ('' 0 1), ST ('' or a state name), W (wait), HR
 * (1: ready) R. Exit 1 with SERVICE_FAIL_MARK and a one-line reason on
 * stderr (die(), which replaces stepsh's: a marker before the line means
 * the line is not a cut tail, which redaction must treat as one); exit 2
 * after the marker, the failure line with the unit's state, then journal
 * lines (fail()).
 */
static const char service_lib_sh[] =
    "die() { printf '%s%s\\n' \"$SF\" \"$*\" >&2; exit 1; }\n"
    "sd=0 reload=0 started=0 t0=$(date +%s)\n"
    "[ -d /run/systemd/system ] && "
    "[ \"$(cat /proc/1/comm 2>/dev/null)\" = systemd ] && sd=1\n"
    "if [ \"$sd\" = 0 ] && [ -n \"$EN$ST\" ]; then\n"
    "\tdie \"systemd is not running on the target (PID 1 is "
    "$(cat /proc/1/comm 2>/dev/null || echo unknown))\"\n"
    "fi\n"
    "prop() { systemctl show -p \"$1\" --value -- \"$N\" 2>/dev/null; }\n"
    /* sc ARGS: systemctl, its words kept in $_o and shown on stderr. */
    "sc() {\n"
    "\t_o=$(systemctl \"$@\" 2>&1); _r=$?\n"
    "\t[ -z \"$_o\" ] || printf '%s\\n' \"$_o\" >&2\n"
    "\treturn $_r\n"
    "}\n"
    "said() { _l=$(printf '%s\\n' \"$_o\" | tail -n 1); "
    "_l=${_l%% See \\\"systemctl*}; printf '%s' \"${_l:+: $_l}\"; }\n"
    /* scx VERB: a change that fails as a plain refusal. */
    "scx() { X sc \"$1\" -- \"$N\" || die \"systemctl $1 failed$(said)\"; "
    "}\n"
    "fail() {\n"
    "\t_s=\"state $(prop ActiveState)/$(prop SubState), result "
    "$(prop Result)\"\n"
    "\t_e=$(prop ExecMainStatus)\n"
    "\t[ -z \"$_e\" ] || [ \"$_e\" = 0 ] || _s=\"$_s, exit status $_e\"\n"
    "\tprintf '%s%s; %s; journalctl -u %s:\\n' \"$SF\" \"$1\" \"$_s\" "
    "\"$N\" >&2\n"
    "\tjournalctl --sync >/dev/null 2>&1\n"
    "\tjournalctl -u \"$N\" --no-pager --no-hostname -n 20 "
    "--since \"@$((t0 - 1))\" >&2 2>&1\n"
    "\texit 2\n"
    "}\n"
    /* scs VERB: a start, restart or reload; its failure shows the unit. */
    "scs() { X sc \"$1\" -- \"$N\" || fail \"$1 $N failed$(said)\"; }\n";

/* The unit file, then daemon-reload. */
static const char service_file_sh[] =
    "if [ \"$HF\" = 1 ]; then\n"
    "\tD=/etc/systemd/system F=/etc/systemd/system/$N new=1\n"
    "\tsweep \"$D\"\n"
    "\tif [ -L \"$F\" ]; then C \"replace symlink $F\"\n"
    "\telif [ ! -e \"$F\" ]; then C \"create $F\"\n"
    "\telif [ ! -f \"$F\" ]; then die \"$F exists and is not a regular "
    "file\"\n"
    "\telse\n"
    "\t\th=$(sha256sum < \"$F\") || exit 1\n"
    "\t\tif [ \"${h%% *}\" = \"$H\" ]; then new=0; "
    "else C \"content $F\"; fi\n"
    "\tfi\n"
    "\tif [ \"$new\" = 0 ]; then attrs \"$F\" 644 root root 0\n"
    "\telif [ \"$A\" = 1 ]; then\n"
    "\t\tmkdir -p -m 755 \"$D\" && t=$(mktemp \"$D/.stagehand.XXXXXX\") "
    "|| exit 1\n"
    "\t\t{ printf '%s' \"$U\" > \"$t\" && chmod 644 \"$t\" && "
    "sync -- \"$t\" &&\n"
    "\t\t\tmv -f -- \"$t\" \"$F\" && sync -- \"$D\"; } || "
    "{ rm -f -- \"$t\"; exit 1; }\n"
    "\tfi\n"
    "\treload=$new\n"
    "fi\n"
    "[ \"$sd\" = 1 ] || exit 0\n"
    "[ \"$reload\" = 1 ] || [ \"$(prop NeedDaemonReload)\" != yes ] || "
    "reload=1\n"
    "if [ \"$reload\" = 1 ]; then\n"
    "\tC daemon-reload\n"
    "\tX sc daemon-reload || die \"systemctl daemon-reload failed$(said)\"\n"
    "fi\n"
    "[ -n \"$EN$ST\" ] || exit 0\n";

/*
 * enabled and state. A unit systemd does not know: apply fails, plan
 * lists what apply would do once its file is there.
 */
static const char service_unit_sh[] =
    "ld=$(prop LoadState)\n"
    "if [ -z \"$ld\" ] || [ \"$ld\" = not-found ]; then\n"
    "\t[ \"$A\" = 1 ] && die \"unit not found\"\n"
    "\t[ \"$EN\" = 1 ] && C \"enable $N\"\n"
    "\tcase $ST in started|reloaded) C \"start $N\" ;; "
    "restarted) C \"restart $N\" ;; esac\n"
    "\texit 0\n"
    "fi\n"
    "e=$(systemctl is-enabled -- \"$N\" 2>/dev/null)\n"
    "case $EN:$e in\n"
    "1:masked*) die \"masked: it cannot be enabled (systemctl "
    "unmask $N)\" ;;\n"
    "1:disabled|1:enabled-runtime|1:linked*) C \"enable $N\"; scx enable ;;\n"
    "0:enabled) C \"disable $N\"; scx disable ;;\n"
    "esac\n"
    "act=$(systemctl is-active -- \"$N\" 2>/dev/null)\n"
    "V=start\n"
    "case $ST:$act in\n"
    "started:active|started:activating|started:reloading) ;;\n"
    "started:*) C \"start $N\"; scs start; started=1 ;;\n"
    "stopped:inactive|stopped:failed|stopped:) ;;\n"
    "stopped:*) C \"stop $N\"; scx stop ;;\n"
    "restarted:*) V=restart; C \"restart $N\"; scs restart; started=1 ;;\n"
    "reloaded:active) V=reload; C \"reload $N\"; scs reload ;;\n"
    "reloaded:*) C \"start $N\"; scs start; started=1 ;;\n"
    "esac\n"
    "[ \"$A\" = 1 ] || exit 0\n"
    "case $ST in started|restarted|reloaded) ;; *) exit 0 ;; esac\n";

/*
 * The wait: active (twice, a second apart, for a unit this step started),
 * then ready. A failed unit, or one this step started that is inactive
 * again, fails at once.
 */
static const char service_wait_sh[] =
    "end=$(($(date +%s) + W))\n"
    "if [ \"$started\" = 1 ] && [ \"$(prop Type)\" = oneshot ] &&\n"
    "\t[ \"$(prop RemainAfterExit)\" = no ]; then :; else\n"
    "\tseen=0\n"
    "\twhile :; do\n"
    "\t\ts=$(systemctl is-active -- \"$N\" 2>/dev/null)\n"
    "\t\tcase $s in\n"
    "\t\tactive|reloading)\n"
    "\t\t\t[ \"$started\" = 1 ] && [ \"$seen\" = 0 ] || break\n"
    "\t\t\tseen=1; sleep 1; continue ;;\n"
    "\t\tfailed) fail \"$V $N: the unit failed\" ;;\n"
    "\t\tinactive) [ \"$started\" = 0 ] || "
    "fail \"$V $N: the unit stopped again\" ;;\n"
    "\t\tesac\n"
    "\t\tseen=0\n"
    "\t\t[ \"$(date +%s)\" -lt \"$end\" ] || "
    "fail \"$V $N: not active after $W s (is-active: ${s:-nothing})\"\n"
    "\t\tsleep 1\n"
    "\tdone\n"
    "fi\n"
    "[ \"$HR\" = 1 ] || exit 0\n"
    "while :; do\n"
    "\trem=$((end - $(date +%s))); [ \"$rem\" -ge 1 ] || rem=1\n"
    "\tro=$(timeout -k 2 \"$rem\" sh -c \"$R\" </dev/null 2>&1) && break\n"
    "\trr=$?\n"
    "\tif [ \"$(date +%s)\" -ge \"$end\" ]; then\n"
    "\t\tro=$(printf '%s\\n' \"$ro\" | tail -n 1)\n"
    "\t\tfail \"$N: the ready command did not succeed within $W s "
    "(exit $rr${ro:+: $ro})\"\n"
    "\tfi\n"
    "\tsleep 1\n"
    "done\n";

static int
service_script(const struct service_cfg *c, enum step_mode mode, struct buf *b)
{
	const char *en = c->enabled < 0 ? "" : c->enabled ? "1" : "0";
	struct buf hash;
	int rc;

	buf_init(&hash, 128);
	if (c->content != NULL)
		stepsh_sha256_mem(c->content, c->content_len, &hash);
	rc = stepsh_begin(b, mode) < 0 || stepsh_assign(b, "N", c->name) < 0 ||
	     stepsh_assign(b, "H", hash.data) < 0 ||
	     stepsh_assign(b, "U",
	         mode == STEP_APPLY && c->content ? c->content : "") < 0 ||
	     stepsh_assign(b, "EN", en) < 0 ||
	     stepsh_assign(b, "ST", service_state_names[c->state]) < 0 ||
	     stepsh_assign(b, "R", c->ready ? c->ready : "") < 0 ||
	     stepsh_assign(b, "SF", SERVICE_FAIL_MARK) < 0 ||
	     buf_addf(b, "HF=%d HR=%d W=%u\n", c->content ? 1 : 0,
	         c->ready ? 1 : 0, c->wait_s) < 0 ||
	     buf_adds(b, service_lib_sh) < 0 ||
	     buf_adds(b, service_file_sh) < 0 ||
	     buf_adds(b, service_unit_sh) < 0 ||
	     buf_adds(b, service_wait_sh) < 0;
	buf_release(&hash);
	return rc ? -1 : 0;
}

/* ======================================================== running it */

/* Appends text[0..len), controls but newlines shown as '?'. */
static void
service_add_clean(struct buf *msg, const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];

		buf_addc(msg,
		    (ch < ' ' && ch != '\n') || ch == 0x7f ? '?' : (char)ch);
	}
}

/* The start of the last lines of text[from..end) that fit in room bytes:
 * whole lines, or the tail of the last one when even it does not fit. */
static size_t
service_tail(const char *text, size_t from, size_t end, size_t room)
{
	size_t s;

	if (end - from <= room)
		return from;
	s = end - room;
	while (s < end && text[s - 1] != '\n')
		s++;
	if (s < end)
		return s;
	s = end - room;
	while (s < end && ((unsigned char)text[s] & 0xc0) == 0x80)
		s++; /* never half a UTF-8 character */
	return s;
}

/* The script's failure marker in e, or NULL. The first one: journal
 * lines after it may hold anything, the text before it is systemctl's. */
static const char *
service_mark(const struct buf *e)
{
	return memmem(
	    e->data, e->len, SERVICE_FAIL_MARK, strlen(SERVICE_FAIL_MARK));
}

/*
 * The error for a script that stopped at its marker: the line after it
 * (with "NAME: " before it when name is not NULL), then as many of the
 * last journal lines after that as fit in the errbuf. All of it is
 * redacted before any of it is cut, so a cut leaves no piece of a secret.
 */
static int
service_fail(const struct redact *rd, const char *name, const struct buf *e,
    const char *mark, struct errbuf *err)
{
	const char *text = mark + strlen(SERVICE_FAIL_MARK);
	size_t len = e->len - (size_t)(text - e->data), head, end, room;
	struct buf clean, msg;

	buf_init(&clean, redact_max(len));
	buf_init(&msg, sizeof(err->msg));
	if (redact_text(rd, text, len, &clean) < 0)
		buf_adds(&clean, "the unit failed (output not shown: too long "
		                 "to redact)");
	head = strcspn(clean.data, "\n");
	end = clean.len;
	while (end > head &&
	       (clean.data[end - 1] == '\n' || clean.data[end - 1] == ' '))
		end--;
	if (name != NULL)
		buf_addf(&msg, "%s: ", name);
	service_add_clean(&msg, clean.data, head);
	room = sizeof(err->msg) - 2;
	room = msg.len < room ? room - msg.len : 0;
	if (head + 1 < end && room > 0) {
		buf_addc(&msg, '\n');
		head = service_tail(clean.data, head + 1, end, room);
		service_add_clean(&msg, clean.data + head, end - head);
	}
	err_set(err, SH_ERR_REMOTE, "%s", msg.data);
	buf_release(&msg);
	buf_release(&clean);
	return -1;
}

/* The step's timeout, or by default the usual one plus the wait. */
static unsigned
service_timeout(const struct step *step, const struct service_cfg *c)
{
	if (step->timeout_s)
		return step->timeout_s;
	return STEP_DEFAULT_TIMEOUT_S + c->wait_s;
}

static int
service_exec(struct run_ctx *ctx, const struct step *step,
    const struct buf *script, struct step_result *res, struct errbuf *err)
{
	const struct service_cfg *c = step->cfg;
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	const char *mark;
	int rc;

	memset(&out, 0, sizeof(out));
	if (remote_script(&cmd, script, err) < 0)
		return -1;
	cmd.become = step->become;
	cmd.timeout_s = service_timeout(step, c);
	rc = remote_run(ctx, &cmd, &out, err);
	/* The failure block goes into the error, not twice on the screen. */
	mark =
	    out.status == 1 || out.status == 2 ? service_mark(&out.err) : NULL;
	step_result_output(res, out.err.data,
	    mark ? (size_t)(mark - out.err.data) : out.err.len);
	if (rc < 0)
		goto out;
	rc = -1;
	res->exit_status = out.status;
	/* What it changed before it failed is reported too. */
	(void)stepsh_changes(res, &out.out);
	if (out.status == 0)
		rc = 0;
	else if (mark != NULL)
		service_fail(ctx->redact, out.status == 1 ? c->name : NULL,
		    &out.err, mark, err);
	else if (out.status == 1)
		remote_fail(ctx->redact, err, &out.err, "%s", c->name);
	else if (out.status < 0)
		remote_fail(ctx->redact, err, &out.err, "killed by a signal");
	else
		remote_fail(ctx->redact, err, &out.err, "exit %d", out.status);
out:
	remote_out_free(&out);
	return rc;
}

static int
service_run(struct run_ctx *ctx, const struct step *step, enum step_mode mode,
    struct step_result *res, struct errbuf *err)
{
	struct buf script;
	int rc;

	buf_init(&script, REMOTE_SCRIPT_MAX);
	if (service_script(step->cfg, mode, &script) < 0) {
		buf_release(&script);
		return err_set(err, SH_ERR_STEP, "service: script too long");
	}
	rc = service_exec(ctx, step, &script, res, err);
	buf_release(&script); /* wiped: content may hold secrets */
	return rc;
}

static void
service_describe(const struct step *step, struct buf *out)
{
	const struct service_cfg *c = step->cfg;

	buf_addf(out, "service %s", c->name);
	if (c->src != NULL)
		buf_addf(out, " unit file from %s", c->src_arg);
	else if (c->content != NULL)
		buf_addf(
		    out, " unit file (content, %zu bytes)", c->content_len);
	if (c->enabled >= 0)
		buf_adds(out, c->enabled ? " enabled" : " disabled");
	if (c->state != SERVICE_LEAVE)
		buf_addf(out, " %s", service_state_names[c->state]);
	if (c->ready != NULL)
		buf_adds(out, " (ready check)");
}

const struct step_kind step_kind_service = {
	.name = "service",
	.flags = STEP_RETRY_SAFE,
	.keys = service_keys,
	.cfg_size = sizeof(struct service_cfg),
	.parse = service_parse,
	.run = service_run,
	.describe = service_describe,
	.release = service_release,
	.code = service_code,
};
