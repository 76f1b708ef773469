/*
 * trust.c: whom the session trusts and how it proves itself: the key
 * (identity file, environment variable or ssh-agent), the host key check
 * (a pin, known_hosts through knownhosts.h, or on reconnect the key of the
 * first connection) and publickey authentication. session.c calls it in
 * session_open(): trust_hostkey_prefs() before the handshake,
 * trust_hostkey_verify() and trust_auth() after it; trust_load() runs
 * once, in ssh_connect(), before any packet. See ssh.h for the rules.
 */
#include "transport/ssh_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libssh2.h>

#include "transport/knownhosts.h"
#include "transport/ssh.h"
#include "transport/sshkey.h"
#include "util/limits.h"
#include "util/util.h"

/* Host key types, in order of preference when nothing says otherwise. */
struct hostkey_type {
	int type;         /* LIBSSH2_HOSTKEY_TYPE_* */
	int known;        /* LIBSSH2_KNOWNHOST_KEY_* */
	const char *name; /* method name */
};

static const struct hostkey_type hostkey_types[] = {
	{ LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519,
	    "ssh-ed25519" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256,
	    "ecdsa-sha2-nistp256" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384,
	    "ecdsa-sha2-nistp384" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521,
	    "ecdsa-sha2-nistp521" },
	{ LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA, "ssh-rsa" },
};

#define NTYPES (sizeof(hostkey_types) / sizeof(*hostkey_types))

_Static_assert(NTYPES == HOSTKEY_NTYPES,
    "struct trust_known (ssh_int.h) has a flag per hostkey_types[] entry");

static const struct hostkey_type *
hostkey_type_find(int type)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (hostkey_types[i].type == type)
			return &hostkey_types[i];
	return NULL;
}

/* ======================================================== keys */

static int
key_from_env(struct ssh_conn *c, const char *name, struct errbuf *err)
{
	const char *v = getenv(name);
	size_t len = v != NULL ? strlen(v) : 0;

	c->key_origin = xasprintf("environment variable %s", name);
	if (v == NULL)
		return err_set(
		    err, SH_ERR_USAGE, "%s is not set", c->key_origin);
	if (len == 0)
		return err_set(err, SH_ERR_USAGE, "%s is empty", c->key_origin);
	if (buf_add(&c->key, v, len) < 0)
		return err_set(err, SH_ERR_USAGE, "%s: larger than %u bytes",
		    c->key_origin, SSH_KEY_MAX_BYTES);
	return sshkey_check(c->key.data, c->key.len, c->key_origin, err);
}

static int
key_from_file(struct ssh_conn *c, const char *path, struct errbuf *err)
{
	struct buf b;

	c->key_origin = xasprintf("identity file %s", path);
	if (file_read(path, SSH_KEY_MAX_BYTES, &b, err) < 0) {
		buf_release(&b);
		err->code = SH_ERR_USAGE;
		return err_prefix(err, "identity file ");
	}
	buf_release(&c->key);
	c->key = b;
	return sshkey_check(c->key.data, c->key.len, c->key_origin, err);
}

/* "SHA256:" and 43 base64 characters (a trailing '=' is tolerated). */
static int
pin_check(const char *pin, struct errbuf *err)
{
	size_t n;

	if (!str_has_prefix(pin, "SHA256:"))
		goto bad;
	pin += 7;
	n = strlen(pin);
	while (n > 0 && pin[n - 1] == '=')
		n--;
	if (n != 43 || strspn(pin, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
	                           "opqrstuvwxyz0123456789+/") != n)
		goto bad;
	return 0;
bad:
	return err_set(err, SH_ERR_USAGE,
	    "host key pin '%s' is not a SHA256 fingerprint (want SHA256: and "
	    "43 base64 characters, as ssh-keygen -l prints it)",
	    pin);
}

static bool
pin_matches(const char *pin, const char *fp)
{
	size_t n = strlen(pin);

	while (n > 0 && pin[n - 1] == '=')
		n--;
	return strlen(fp) == n && memcmp(pin, fp, n) == 0;
}

/* ======================================================== known hosts */

static void note(const struct ssh_conn *c, const char *fmt, ...)
    ATTR_PRINTF(2, 3);

/* Tells the caller something worth a line at -v (ssh_opts.note). */
static void
note(const struct ssh_conn *c, const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	if (c->opts->note == NULL)
		return;
	buf_init(&b, 1024);
	va_start(ap, fmt);
	buf_vaddf(&b, fmt, ap);
	va_end(ap);
	c->opts->note(c->opts->note_arg, b.data);
	buf_release(&b);
}

/*
 * Reads the known_hosts file once, before any packet. A file named with
 * --known-hosts must exist: a mistyped path must not mean "no host is
 * known" (with --accept-new-host-key it would trust any key). Only the
 * default ~/.ssh/known_hosts may be missing, as for OpenSSH.
 */
static int
known_load(struct ssh_conn *c, struct errbuf *err)
{
	const char *home = getenv("HOME");
	struct stat st;

	if (c->opts->known_hosts != NULL)
		c->known_path = xstrdup(c->opts->known_hosts);
	else if (home != NULL && *home != '\0')
		c->known_path = xasprintf("%s/.ssh/known_hosts", home);
	if (c->known_path == NULL)
		return 0;
	if (c->opts->known_hosts == NULL && stat(c->known_path, &st) < 0 &&
	    errno == ENOENT) {
		free(c->known_path);
		c->known_path = NULL; /* no file: every host is unknown */
		return 0;
	}
	buf_release(&c->known);
	if (file_read(c->known_path, KNOWN_HOSTS_MAX_BYTES, &c->known, err) <
	    0) {
		err->code = SH_ERR_USAGE;
		return err_prefix(err, "known hosts file ");
	}
	return 0;
}

/*
 * Everything that can be checked offline, before any packet: the pin's
 * format, else the known_hosts file; then the key, unless the agent is
 * to be asked.
 */
int
trust_load(struct ssh_conn *c, struct errbuf *err)
{
	const struct ssh_opts *opts = c->opts;

	if (opts->host_key_pin != NULL &&
	    pin_check(opts->host_key_pin, err) < 0)
		return -1;
	if (opts->host_key_pin == NULL && known_load(c, err) < 0)
		return -1;
	if (opts->identity_env != NULL)
		return key_from_env(c, opts->identity_env, err);
	if (opts->identity_file != NULL)
		return key_from_file(c, opts->identity_file, err);
	return 0;
}

static int
known_check(const struct ssh_conn *c, const char *type, const char *key,
    size_t keylen, struct knownhosts_answer *a, struct errbuf *err)
{
	struct knownhosts_query q = { c->opts->host, c->port, type,
		(const unsigned char *)key, keylen };

	if (knownhosts_check(c->known.data, c->known.len, KNOWN_HOSTS_MAX_BYTES,
	        &q, a, err) < 0)
		return err_prefix(err, "known hosts file %s: ", c->known_path);
	return 0;
}

/* Notes which key types the file lists for this host; -v notes. */
static int
known_types(const struct ssh_conn *c, struct trust_known *k, struct errbuf *err)
{
	struct knownhosts_answer a;

	if (c->known_path == NULL)
		return 0;
	if (known_check(c, NULL, NULL, 0, &a, err) < 0)
		return -1;
	for (size_t i = 0; i < NTYPES; i++)
		k->has[i] = strlist_has(&a.types, hostkey_types[i].name);
	if (a.cert_lines > 0)
		note(c,
		    "%s:%zu: @cert-authority line for %s skipped (%zu in "
		    "all): host certificates are not supported, only keys",
		    c->known_path, a.first_cert_line, c->where, a.cert_lines);
	if (a.skipped > 0)
		note(c, "%s: %zu line%s could not be parsed and were skipped",
		    c->known_path, a.skipped, a.skipped == 1 ? "" : "s");
	knownhosts_answer_free(&a);
	return 0;
}

/* The types known for the host, comma separated, into b. */
static void
known_type_list(const struct trust_known *k, bool want, struct buf *b)
{
	for (size_t i = 0; i < NTYPES; i++) {
		if (k->has[i] != want)
			continue;
		if (b->len > 0)
			buf_addc(b, ',');
		buf_adds(b, hostkey_types[i].name);
	}
}

/* ======================================================== host key */

/*
 * Sets the host key type preference: the types known for the host first
 * (libssh2 would otherwise pick ECDSA and miss an ed25519 entry), then the
 * others, so that a server which lost a key type still gets as far as the
 * host key check and its clear message.
 */
int
trust_hostkey_prefs(
    struct ssh_conn *c, struct trust_known *k, struct errbuf *err)
{
	struct buf pref;
	int rc = 0;

	buf_init(&pref, 1024);
	if (c->fp.len > 0) {
		buf_adds(&pref, c->key_type); /* reconnect: same key */
	} else if (c->opts->host_key_pin == NULL) {
		rc = known_types(c, k, err);
	}
	for (size_t i = 0; i < NTYPES; i++)
		k->any = k->any || k->has[i];
	if (c->fp.len == 0) {
		known_type_list(k, true, &pref);
		known_type_list(k, false, &pref);
	}
	if (rc == 0 && libssh2_session_method_pref(
	                   c->session, LIBSSH2_METHOD_HOSTKEY, pref.data) != 0)
		rc = err_set(err, SH_ERR_INTERNAL,
		    "host key preference '%s': %s", pref.data,
		    session_last_error(c->session));
	buf_release(&pref);
	return rc;
}

/* The host offered a key of a type the file does not list for it. */
static int
other_type_known(const struct ssh_conn *c, const struct trust_known *k,
    const struct hostkey_type *t, const char *fp, struct errbuf *err)
{
	struct buf types;

	buf_init(&types, 1024);
	known_type_list(k, true, &types);
	err_set(err, SH_ERR_TRUST,
	    "host key for %s is %s (%s), but %s lists only %s for it (if the "
	    "host was rebuilt, remove those entries)",
	    c->where, t->name, fp, c->known_path, types.data);
	buf_release(&types);
	return -1;
}

static int
not_found(struct ssh_conn *c, const struct trust_known *k,
    const struct hostkey_type *t, const char *fp, struct errbuf *err)
{
	const char *file =
	    c->known_path != NULL ? c->known_path : "(no known_hosts file)";

	if (k->any)
		return other_type_known(c, k, t, fp, err);
	if (c->opts->accept_new_host_key) {
		c->accepted = true;
		return 0;
	}
	return err_set(err, SH_ERR_TRUST,
	    "unknown host key %s (%s) for %s, not in %s (pass "
	    "--accept-new-host-key to trust it, or --known-hosts/--host-key)",
	    fp, t->name, c->where, file);
}

/* What the answer means; revoked and changed keys are refused always. */
static int
known_verdict(struct ssh_conn *c, const struct trust_known *k,
    const struct knownhosts_answer *a, const struct hostkey_type *t,
    const char *fp, struct errbuf *err)
{
	switch (a->result) {
	case KNOWNHOSTS_MATCH:
		return 0;
	case KNOWNHOSTS_REVOKED:
		return err_set(err, SH_ERR_TRUST,
		    "host key %s (%s) of %s is revoked: @revoked in %s:%zu", fp,
		    t->name, c->where, c->known_path, a->line);
	case KNOWNHOSTS_MISMATCH:
		return err_set(err, SH_ERR_TRUST,
		    "host key for %s has changed: it is now %s (%s); "
		    "offending entry in %s:%zu (if the host was rebuilt, "
		    "remove that entry)",
		    c->where, fp, t->name, c->known_path, a->line);
	case KNOWNHOSTS_NOT_FOUND:
		return not_found(c, k, t, fp, err);
	}
	return err_set(err, SH_ERR_TRUST, "cannot check the host key of %s",
	    c->where); /* fail closed on a value no case names */
}

static int
check_known(struct ssh_conn *c, const struct trust_known *k, const char *key,
    size_t keylen, const struct hostkey_type *t, const char *fp,
    struct errbuf *err)
{
	struct knownhosts_answer a;
	int rc;

	if (c->known_path == NULL)
		return not_found(c, k, t, fp, err);
	if (known_check(c, t->name, key, keylen, &a, err) < 0)
		return -1;
	rc = known_verdict(c, k, &a, t, fp, err);
	knownhosts_answer_free(&a);
	return rc;
}

static int
check_fp(struct ssh_conn *c, const struct trust_known *k, const char *key,
    size_t keylen, const struct hostkey_type *t, const char *fp,
    struct errbuf *err)
{
	const char *pin = c->opts->host_key_pin;

	if (c->fp.len > 0) {
		if (strcmp(c->fp.data, fp) == 0)
			return 0;
		return err_set(err, SH_ERR_TRUST,
		    "host key mismatch for %s on reconnect: expected %s, "
		    "got %s",
		    c->where, c->fp.data, fp);
	}
	if (pin != NULL) {
		if (pin_matches(pin, fp))
			return 0;
		return err_set(err, SH_ERR_TRUST,
		    "host key mismatch for %s: expected %s, got %s (%s)",
		    c->where, pin, fp, t->name);
	}
	return check_known(c, k, key, keylen, t, fp, err);
}

int
trust_hostkey_verify(
    struct ssh_conn *c, const struct trust_known *k, struct errbuf *err)
{
	const struct hostkey_type *t;
	const char *key, *hash;
	size_t keylen = 0;
	int type = 0, rc;
	struct buf fp;

	key = libssh2_session_hostkey(c->session, &keylen, &type);
	hash = libssh2_hostkey_hash(c->session, LIBSSH2_HOSTKEY_HASH_SHA256);
	t = hostkey_type_find(type);
	if (key == NULL || hash == NULL || t == NULL)
		return err_set(err, SH_ERR_TRUST,
		    "%s offered no usable host key", c->where);
	buf_init(&fp, 128);
	(void)sshkey_fingerprint((const unsigned char *)hash, 32, &fp);
	rc = check_fp(c, k, key, keylen, t, fp.data, err);
	if (rc == 0 && c->fp.len == 0) {
		buf_release(&c->fp);
		c->fp = fp;
		c->key_type = t->name;
	} else {
		buf_release(&fp);
	}
	return rc;
}

/* ======================================================== authentication */

static bool
method_listed(const char *list, const char *m)
{
	size_t n = strlen(m);

	for (const char *p = list; p != NULL && *p != '\0';) {
		const char *e = strchr(p, ',');
		size_t len = e != NULL ? (size_t)(e - p) : strlen(p);

		if (len == n && memcmp(p, m, n) == 0)
			return true;
		p = e != NULL ? e + 1 : NULL;
	}
	return false;
}

static int
auth_fail(struct ssh_conn *c, int rc, struct errbuf *err)
{
	const char *user = c->opts->user;

	switch (rc) {
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
		return err_set(err, SH_ERR_TRUST,
		    "authentication as %s refused (publickey)", user);
	case LIBSSH2_ERROR_FILE:
	case LIBSSH2_ERROR_METHOD_NOT_SUPPORTED:
		return err_set(err, SH_ERR_USAGE,
		    "%s: libssh2 cannot use the "
		    "key: %s",
		    c->key_origin, session_last_error(c->session));
	case LIBSSH2_ERROR_TIMEOUT:
		return err_set(err, SH_ERR_UNREACHABLE,
		    "authentication as %s at %s: timed out after %u s", user,
		    c->where, c->timeout_s);
	default:
		return err_set(err, SH_ERR_UNREACHABLE,
		    "authentication as %s at %s failed: %s", user, c->where,
		    session_last_error(c->session));
	}
}

static int
agent_try(struct ssh_conn *c, LIBSSH2_AGENT *a, struct errbuf *err)
{
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	unsigned tried = 0, skipped = 0;

	if (libssh2_agent_list_identities(a) != 0)
		return err_set(err, SH_ERR_TRUST, "ssh-agent: %s",
		    session_last_error(c->session));
	while (libssh2_agent_get_identity(a, &id, prev) == 0) {
		enum sshkey_kind kind =
		    sshkey_blob_kind(id->blob, id->blob_len);

		prev = id;
		if (kind == SSHKEY_RSA || kind == SSHKEY_DSA) {
			skipped++;
			continue;
		}
		tried++;
		if (libssh2_agent_userauth(a, c->opts->user, id) == 0)
			return 0;
	}
	return err_set(err, SH_ERR_TRUST,
	    "authentication as %s refused (publickey; %u ssh-agent key(s) "
	    "tried%s)",
	    c->opts->user, tried,
	    skipped ? "; RSA/DSA keys skipped: libssh2 1.10 cannot sign with "
	              "rsa-sha2, use an ed25519 key"
	            : "");
}

static int
auth_agent(struct ssh_conn *c, struct errbuf *err)
{
	LIBSSH2_AGENT *a = libssh2_agent_init(c->session);
	int rc;

	if (a == NULL)
		return err_set(
		    err, SH_ERR_INTERNAL, "libssh2_agent_init failed");
	if (getenv("SSH_AUTH_SOCK") == NULL || libssh2_agent_connect(a) != 0) {
		rc = err_set(err, SH_ERR_USAGE,
		    "no identity given and no ssh-agent to ask (SSH_AUTH_SOCK "
		    "%s); pass an identity file or variable",
		    getenv("SSH_AUTH_SOCK") ? "does not answer" : "is not set");
	} else {
		rc = agent_try(c, a, err);
		libssh2_agent_disconnect(a);
	}
	libssh2_agent_free(a);
	return rc;
}

int
trust_auth(struct ssh_conn *c, struct errbuf *err)
{
	const char *user = c->opts->user;
	unsigned ulen = (unsigned)strlen(user);
	char *methods;
	int rc;

	methods = libssh2_userauth_list(c->session, user, ulen);
	if (methods == NULL) {
		if (libssh2_userauth_authenticated(c->session))
			return 0;
		return auth_fail(
		    c, libssh2_session_last_errno(c->session), err);
	}
	if (!method_listed(methods, "publickey"))
		return err_set(err, SH_ERR_TRUST,
		    "authentication as %s "
		    "refused: the server offers only %s",
		    user, methods);
	if (c->key.len == 0)
		return auth_agent(c, err);
	rc = libssh2_userauth_publickey_frommemory(
	    c->session, user, ulen, NULL, 0, c->key.data, c->key.len, NULL);
	return rc == 0 ? 0 : auth_fail(c, rc, err);
}

/* ======================================================== the trusted key */

const char *
ssh_host_key_fingerprint(const struct ssh_conn *c)
{
	return c->fp.data;
}

const char *
ssh_host_key_type(const struct ssh_conn *c)
{
	return c->key_type != NULL ? c->key_type : "";
}

bool
ssh_host_key_accepted(const struct ssh_conn *c)
{
	return c->accepted;
}
