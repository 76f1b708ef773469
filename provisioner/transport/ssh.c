/*
 * ssh.c: the one libssh2 session to the build instance. See ssh.h.
 *
 * Sections: target strings; keys; TCP; known hosts; session setup (host
 * key, authentication); running a command; tunnels; reconnect and close.
 *
 * Blocking: the socket is always O_NONBLOCK. Handshake and authentication
 * run with the session in libssh2's blocking mode, bounded by
 * libssh2_session_set_timeout(); ssh_exec() switches the session to
 * non-blocking mode and drives it with poll(), so a deadline or an
 * interruption is noticed within POLL_SLICE_MS, then switches it back.
 * Tunnel calls do the same around each open, pump and close.
 *
 * libssh2 1.10 and partial sends: when a packet could only be partly
 * written to the socket, the next packet sent on the session must be that
 * same packet, or libssh2 fails with LIBSSH2_ERROR_BAD_USE. A channel write
 * that returns EAGAIN with the OUTBOUND direction set has such a packet
 * pending, and so has a channel read whose receive-window adjustment could
 * not be sent. The exec loop therefore remembers which operation has a
 * packet pending (enum pend) and calls only that one until it completes;
 * small control packets (EOF, window adjust, keepalive) are only sent when
 * poll() says the socket is writable, so they practically never split.
 */
#include "transport/ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>

#include "transport/knownhosts.h"
#include "util/limits.h"
#include "transport/sshkey.h"

/* known_hosts files beyond this are refused rather than half read. */
#define KNOWN_HOSTS_MAX_BYTES (16u << 20)
#define POLL_SLICE_MS 500  /* longest sleep between checks */
#define IO_CHUNK 65536     /* bytes per channel read / stdin read */
#define CLOSE_WAIT_MS 5000 /* closing a channel or session */

struct ssh_conn {
	const struct ssh_opts *opts; /* borrowed */
	unsigned port;
	unsigned timeout_s; /* connect, handshake, auth */
	unsigned keepalive_s;
	char *where;              /* owned: "host" or "[host]:port" */
	int sock;                 /* owned; -1 when not connected */
	LIBSSH2_SESSION *session; /* owned; NULL when not connected */
	struct buf key;           /* owned, wiped: key text; empty: agent */
	char *key_origin;         /* owned: names the key in messages */
	struct buf known;         /* owned: the known_hosts file's bytes */
	char *known_path;         /* owned: that file; NULL: none read */
	struct buf fp;            /* host key "SHA256:..", first connect */
	const char *key_type;     /* static: "ssh-ed25519" */
	bool accepted;            /* the host key was taken as new */
	bool dead;                /* transport broke: only reconnect helps */
	char *lost;               /* owned: why it is dead, or NULL */
	unsigned reconnects;
	unsigned gen; /* bumped when a session is torn down (tunnels) */
	bool lib;     /* libssh2_init() succeeded */
	/* Started commands waiting for stdin (ssh.h), oldest first. The
	 * channels belong to session and die with it; commands are owned. */
	struct spare {
		LIBSSH2_CHANNEL *ch;
		char *command;
	} spares[SSH_SPARES_MAX];
	size_t nspares;
	bool spares_refused; /* the server refused a channel: keep none */
};

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

static const struct hostkey_type *
hostkey_type_find(int type)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (hostkey_types[i].type == type)
			return &hostkey_types[i];
	return NULL;
}

static const char *
last_error(LIBSSH2_SESSION *s)
{
	char *msg = NULL;

	if (s == NULL)
		return "no session";
	libssh2_session_last_error(s, &msg, NULL, 0);
	return msg != NULL && *msg ? msg : "unknown libssh2 error";
}

static bool
interrupted(const struct ssh_conn *c)
{
	return c->opts->interrupted != NULL && *c->opts->interrupted != 0;
}

/* ======================================================== target strings */

static int
target_err(struct errbuf *err, const char *s, const char *why)
{
	return err_set(err, SH_ERR_USAGE,
	    "target '%s': %s (want [ssh://]user@host[:port])", s, why);
}

/* No blanks, controls, or characters that would make the string ambiguous. */
static bool
name_ok(const char *p, size_t len, const char *also_bad)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch <= ' ' || ch == 0x7f || strchr("/@[]", ch) != NULL ||
		    strchr(also_bad, ch) != NULL)
			return false;
	}
	return true;
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port"; NULL or the problem. */
static const char *
split_hostport(
    const char *h, const char **host, size_t *hostlen, const char **port)
{
	const char *colon;

	*port = NULL;
	if (*h == '[') {
		const char *close = strchr(h, ']');

		if (close == NULL)
			return "unclosed '[' in host";
		*host = h + 1;
		*hostlen = (size_t)(close - h - 1);
		if (close[1] == ':')
			*port = close + 2;
		else if (close[1] != '\0')
			return "unexpected text after ']'";
		return name_ok(*host, *hostlen, "") ? NULL : "bad host";
	}
	colon = strchr(h, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL)
		return "an IPv6 address must be in brackets, as in "
		       "user@[2001:db8::1]:22";
	*host = h;
	*hostlen = colon != NULL ? (size_t)(colon - h) : strlen(h);
	if (colon != NULL)
		*port = colon + 1;
	if (*hostlen == 0)
		return "missing host";
	return name_ok(*host, *hostlen, ":") ? NULL : "bad host";
}

int
ssh_target_parse(
    const char *s, char **user, char **host, unsigned *port, struct errbuf *err)
{
	const char *p, *at, *h, *portp, *why;
	size_t hlen;
	uint64_t v = 22;

	*user = *host = NULL;
	*port = 0;
	if (s == NULL || *s == '\0')
		return err_set(err, SH_ERR_USAGE,
		    "empty target (want [ssh://]user@host[:port])");
	p = str_has_prefix(s, "ssh://") ? s + 6 : s;
	at = strrchr(p, '@');
	if (at == NULL)
		return target_err(err, s, "missing user");
	if (!name_ok(p, (size_t)(at - p), ":"))
		return target_err(err, s, at == p ? "empty user" : "bad user");
	why = split_hostport(at + 1, &h, &hlen, &portp);
	if (why != NULL)
		return target_err(err, s, why);
	if (portp != NULL &&
	    (parse_u64(portp, strlen(portp), 65535, &v) < 0 || v == 0))
		return target_err(err, s, "port must be a number in 1..65535");
	*user = xstrndup(p, (size_t)(at - p));
	*host = xstrndup(h, hlen);
	*port = (unsigned)v;
	return 0;
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

/* ======================================================== TCP */

static char *
addr_name(const struct addrinfo *ai)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), serv,
	        sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return xstrdup("?");
	if (ai->ai_family == AF_INET6)
		return xasprintf("[%s]:%s", host, serv);
	return xasprintf("%s:%s", host, serv);
}

static void
sock_tune(const struct ssh_conn *c, int fd)
{
	int one = 1, idle = (int)c->keepalive_s, cnt = 4;

	/* Without NODELAY each channel round trip waits for delayed ACKs. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int
tcp_wait(const struct ssh_conn *c, int fd, const char *name, struct errbuf *err)
{
	uint64_t end = now_ms() + (uint64_t)c->timeout_s * 1000u;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	for (;;) {
		struct pollfd pfd = { fd, POLLOUT, 0 };
		uint64_t now = now_ms();
		int n;

		if (interrupted(c))
			return err_set(err, SH_ERR_INTERRUPTED,
			    "interrupted while connecting to %s", name);
		if (now >= end)
			return err_set(err, SH_ERR_UNREACHABLE,
			    "connect %s: timed out after %u s", name,
			    c->timeout_s);
		n = poll(&pfd, 1,
		    (int)(end - now > POLL_SLICE_MS ? POLL_SLICE_MS
		                                    : end - now));
		if (n > 0)
			break;
		if (n < 0 && errno != EINTR)
			return err_set(err, SH_ERR_UNREACHABLE,
			    "connect %s: poll: %s", name, strerror(errno));
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr != 0)
		return err_set(err, SH_ERR_UNREACHABLE, "connect %s: %s", name,
		    strerror(soerr));
	return 0;
}

/* Returns the connected socket, or -1. */
static int
tcp_try(const struct ssh_conn *c, const struct addrinfo *ai, struct errbuf *err)
{
	char *name = addr_name(ai);
	int fd, rc = -1;

	fd = socket(ai->ai_family,
	    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		err_set(err, SH_ERR_UNREACHABLE, "connect %s: socket: %s", name,
		    strerror(errno));
		goto out;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		rc = 0;
	else if (errno != EINPROGRESS)
		err_set(err, SH_ERR_UNREACHABLE, "connect %s: %s", name,
		    strerror(errno));
	else
		rc = tcp_wait(c, fd, name, err);
	if (rc < 0) {
		close(fd);
		fd = -1;
	}
out:
	free(name);
	return fd;
}

static int
tcp_connect(struct ssh_conn *c, struct errbuf *err)
{
	struct addrinfo hints, *res = NULL;
	char *port = xasprintf("%u", c->port);
	int rc, fd = -1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(c->opts->host, port, &hints, &res);
	free(port);
	if (rc != 0)
		return err_set(err, SH_ERR_UNREACHABLE, "resolve %s: %s",
		    c->opts->host,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	for (struct addrinfo *ai = res; ai != NULL && fd < 0;
	     ai = ai->ai_next) {
		fd = tcp_try(c, ai, err);
		if (fd < 0 && err->code == SH_ERR_INTERRUPTED)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	sock_tune(c, fd);
	c->sock = fd;
	return 0;
}

/* ======================================================== known hosts */

/*
 * What known_hosts says about the host, for the host key preference and
 * the messages. The decision itself is knownhosts_check()'s (knownhosts.h);
 * libssh2's parser is not used: it takes "@revoked" for a host name and
 * matches a plain "host" entry on every port.
 */
struct known {
	bool has[NTYPES]; /* entries of hostkey_types[i] for the host */
	bool any;         /* any of has[] */
};

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
known_types(const struct ssh_conn *c, struct known *k, struct errbuf *err)
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
known_type_list(const struct known *k, bool want, struct buf *b)
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
static int
hostkey_prefs(struct ssh_conn *c, struct known *k, struct errbuf *err)
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
		    last_error(c->session));
	buf_release(&pref);
	return rc;
}

/* The host offered a key of a type the file does not list for it. */
static int
other_type_known(const struct ssh_conn *c, const struct known *k,
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
not_found(struct ssh_conn *c, const struct known *k,
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
known_verdict(struct ssh_conn *c, const struct known *k,
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
check_known(struct ssh_conn *c, const struct known *k, const char *key,
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
check_fp(struct ssh_conn *c, const struct known *k, const char *key,
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

static int
hostkey_verify(struct ssh_conn *c, const struct known *k, struct errbuf *err)
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
		    c->key_origin, last_error(c->session));
	case LIBSSH2_ERROR_TIMEOUT:
		return err_set(err, SH_ERR_UNREACHABLE,
		    "authentication as %s at %s: timed out after %u s", user,
		    c->where, c->timeout_s);
	default:
		return err_set(err, SH_ERR_UNREACHABLE,
		    "authentication as %s at %s failed: %s", user, c->where,
		    last_error(c->session));
	}
}

static int
agent_try(struct ssh_conn *c, LIBSSH2_AGENT *a, struct errbuf *err)
{
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	unsigned tried = 0, skipped = 0;

	if (libssh2_agent_list_identities(a) != 0)
		return err_set(
		    err, SH_ERR_TRUST, "ssh-agent: %s", last_error(c->session));
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

static int
auth(struct ssh_conn *c, struct errbuf *err)
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

/* ======================================================== session setup */

/* The session is going: its spares go with it (libssh2_session_free). */
static void
spares_forget(struct ssh_conn *c)
{
	for (size_t i = 0; i < c->nspares; i++)
		free(c->spares[i].command);
	c->nspares = 0;
	c->spares_refused = false;
}

static void
conn_teardown(struct ssh_conn *c)
{
	c->gen++; /* channels of the old session, tunnels' too, are gone */
	spares_forget(c);
	if (c->session != NULL) {
		libssh2_session_set_blocking(c->session, 1);
		libssh2_session_set_timeout(c->session, CLOSE_WAIT_MS);
		if (!c->dead)
			(void)libssh2_session_disconnect(
			    c->session, "stagehand done");
		(void)libssh2_session_free(c->session);
		c->session = NULL;
	}
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
}

static int
handshake(struct ssh_conn *c, struct errbuf *err)
{
	int rc = libssh2_session_handshake(c->session, c->sock);

	if (rc == 0)
		return 0;
	if (rc == LIBSSH2_ERROR_TIMEOUT)
		return err_set(err, SH_ERR_UNREACHABLE,
		    "ssh handshake with %s failed: timed out after %u s",
		    c->where, c->timeout_s);
	return err_set(err, SH_ERR_UNREACHABLE,
	    "ssh handshake with %s failed: %s", c->where,
	    last_error(c->session));
}

/* TCP, handshake, host key, authentication; tears down on failure. */
static int
session_open(struct ssh_conn *c, struct errbuf *err)
{
	struct known k;
	int rc = -1;

	memset(&k, 0, sizeof(k));
	if (tcp_connect(c, err) < 0)
		return -1;
	c->dead = false;
	c->session = libssh2_session_init();
	if (c->session == NULL) {
		err_set(err, SH_ERR_INTERNAL, "libssh2_session_init failed");
		goto out;
	}
	libssh2_session_set_blocking(c->session, 1);
	libssh2_session_set_timeout(c->session, (long)c->timeout_s * 1000);
	if (hostkey_prefs(c, &k, err) < 0 || handshake(c, err) < 0 ||
	    hostkey_verify(c, &k, err) < 0 || auth(c, err) < 0)
		goto out;
	if (interrupted(c)) {
		err_set(err, SH_ERR_INTERRUPTED, "interrupted");
		goto out;
	}
	libssh2_keepalive_config(c->session, 1, c->keepalive_s);
	rc = 0;
out:
	if (rc < 0)
		conn_teardown(c);
	return rc;
}

int
ssh_connect(
    const struct ssh_opts *opts, struct ssh_conn **out, struct errbuf *err)
{
	struct ssh_conn *c = xcalloc(1, sizeof(*c));
	int rc = -1;

	*out = NULL;
	c->opts = opts;
	c->sock = -1;
	c->port = opts->port ? opts->port : 22;
	c->timeout_s = opts->connect_timeout_s ? opts->connect_timeout_s
	                                       : SSH_CONNECT_TIMEOUT_S;
	c->keepalive_s =
	    opts->keepalive_s ? opts->keepalive_s : SSH_KEEPALIVE_S;
	c->where = c->port == 22 ? xstrdup(opts->host)
	                         : xasprintf("[%s]:%u", opts->host, c->port);
	buf_init(&c->key, SSH_KEY_MAX_BYTES);
	buf_init(&c->fp, 128);
	buf_init(&c->known, KNOWN_HOSTS_MAX_BYTES);
	/* Everything that can be checked offline is, before any packet. */
	if (opts->host_key_pin != NULL &&
	    pin_check(opts->host_key_pin, err) < 0)
		goto out;
	if (opts->host_key_pin == NULL && known_load(c, err) < 0)
		goto out;
	if (opts->identity_env != NULL)
		rc = key_from_env(c, opts->identity_env, err);
	else if (opts->identity_file != NULL)
		rc = key_from_file(c, opts->identity_file, err);
	else
		rc = 0;
	if (rc == 0 && libssh2_init(0) != 0)
		rc = err_set(err, SH_ERR_INTERNAL, "libssh2_init failed");
	c->lib = rc == 0;
	if (rc == 0)
		rc = session_open(c, err);
out:
	if (rc < 0) {
		ssh_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

/* Sleeps ms, waking for an interruption. */
static int
sleep_ms(const struct ssh_conn *c, unsigned ms, struct errbuf *err)
{
	uint64_t end = now_ms() + ms;

	for (;;) {
		uint64_t now = now_ms();

		if (interrupted(c))
			return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
		if (now >= end)
			return 0;
		(void)poll(NULL, 0, (int)(end - now > 100 ? 100 : end - now));
	}
}

/* The session is there and not known to be broken. */
static int
session_usable(const struct ssh_conn *c, struct errbuf *err)
{
	if (c->session == NULL || c->dead)
		return err_set(err, SH_ERR_SSH, "session lost: %s",
		    c->lost != NULL ? c->lost : "not connected");
	return 0;
}

/* ======================================================== running commands */

/* Which operation has a partly sent packet that must be finished first. */
enum pend {
	PEND_NONE = 0,
	PEND_WRITE,
	PEND_EOF,
	PEND_READ,
};

struct xfer {
	struct ssh_conn *c;
	LIBSSH2_SESSION *s;
	LIBSSH2_CHANNEL *ch; /* owned */
	struct ssh_io *io;
	struct ssh_exit *exit;
	const char *data; /* the rest of io->stdin_data */
	size_t data_left;
	char *chunk; /* owned: bytes read from stdin_fd */
	size_t chunk_off, chunk_len;
	bool fd_eof;   /* stdin_fd exhausted, or none */
	bool in_done;  /* EOF sent, or the remote end closed */
	bool closed;   /* the remote end closed the channel */
	bool want_out; /* waiting for the socket to be writable */
	bool progress; /* this round moved some bytes */
	enum pend pend;
	char *rbuf; /* owned: IO_CHUNK bytes */
};

static int spares_fill(struct xfer *x, const char *command, struct errbuf *err);

static bool
sock_writable(const struct ssh_conn *c)
{
	struct pollfd pfd = { c->sock, POLLOUT, 0 };

	return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLOUT);
}

/* Failures that leave the session itself usable. */
static bool
channel_only_error(int rc)
{
	return rc == LIBSSH2_ERROR_CHANNEL_FAILURE ||
	       rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED ||
	       rc == LIBSSH2_ERROR_CHANNEL_OUTOFORDER;
}

/* Marks the session unusable; takes why (owned). */
static void
conn_dead(struct ssh_conn *c, char *why)
{
	c->dead = true;
	free(c->lost);
	c->lost = why;
}

static int
session_lost(struct ssh_conn *c, int rc, struct errbuf *err)
{
	if (channel_only_error(rc))
		return err_set(err, SH_ERR_SSH, "channel to %s failed: %s",
		    c->where, last_error(c->session));
	if (rc == LIBSSH2_ERROR_SOCKET_RECV ||
	    rc == LIBSSH2_ERROR_SOCKET_DISCONNECT)
		conn_dead(
		    c, xasprintf("connection to %s closed or reset", c->where));
	else if (rc == LIBSSH2_ERROR_SOCKET_SEND)
		conn_dead(c, xasprintf("sending to %s failed", c->where));
	else
		conn_dead(c, xasprintf("%s (libssh2 error %d)",
		                 last_error(c->session), rc));
	return err_set(err, SH_ERR_SSH, "session lost: %s", c->lost);
}

static int
xfer_lost(struct xfer *x, int rc, struct errbuf *err)
{
	return session_lost(x->c, rc, err);
}

static int
xfer_check(const struct xfer *x, struct errbuf *err)
{
	if (interrupted(x->c))
		return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
	if (x->io->deadline_ms != 0 && now_ms() >= x->io->deadline_ms)
		return err_set(err, SH_ERR_TIMEOUT, "command timed out");
	return 0;
}

static bool
xfer_need_fd(const struct xfer *x)
{
	return x->ch != NULL && !x->in_done && x->pend == PEND_NONE &&
	       x->data_left == 0 && x->chunk_off == x->chunk_len && !x->fd_eof;
}

static int
xfer_timeout_ms(const struct xfer *x)
{
	uint64_t ms = POLL_SLICE_MS, now = now_ms();

	if (x->io->deadline_ms != 0)
		ms = x->io->deadline_ms <= now       ? 0
		     : x->io->deadline_ms - now < ms ? x->io->deadline_ms - now
		                                     : ms;
	return (int)ms;
}

/* Sleeps until the socket or stdin_fd has something for us, or a slice. */
static int
xfer_wait(struct xfer *x, struct errbuf *err)
{
	struct pollfd pfd[2];
	nfds_t n = 1;
	int rc, dirs = libssh2_session_block_directions(x->s);

	pfd[0].fd = x->c->sock;
	pfd[0].events = POLLIN;
	if (x->want_out ||
	    (x->pend != PEND_NONE && (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)))
		pfd[0].events |= POLLOUT;
	if (xfer_need_fd(x)) {
		pfd[1].fd = x->io->stdin_fd;
		pfd[1].events = POLLIN;
		n = 2;
	}
	rc = poll(pfd, n, xfer_timeout_ms(x));
	if (rc < 0 && errno != EINTR)
		return err_set(
		    err, SH_ERR_INTERNAL, "poll: %s", strerror(errno));
	if (rc == 0 && x->pend == PEND_NONE && sock_writable(x->c)) {
		int next = 0;

		/* Idle: the keepalive cannot split (the socket has room). */
		if (libssh2_keepalive_send(x->s, &next) != 0)
			return xfer_lost(
			    x, libssh2_session_last_errno(x->s), err);
	}
	return 0;
}

/* Giving up half way through opening leaves libssh2 mid-request. */
static int
open_abandoned(struct xfer *x)
{
	if (!x->c->dead)
		conn_dead(x->c, xasprintf("a channel to %s was abandoned "
		                          "while opening",
		                    x->c->where));
	return -1;
}

/* Opens a channel (*out, from then on) and starts command on it. */
static int
chan_start(struct xfer *x, const char *command, LIBSSH2_CHANNEL **out,
    struct errbuf *err)
{
	LIBSSH2_CHANNEL *ch;
	int rc;

	while ((ch = libssh2_channel_open_session(x->s)) == NULL) {
		rc = libssh2_session_last_errno(x->s);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return xfer_lost(x, rc, err);
		if (xfer_check(x, err) < 0 || xfer_wait(x, err) < 0)
			return open_abandoned(x);
	}
	*out = ch;
	while ((rc = libssh2_channel_exec(ch, command)) == LIBSSH2_ERROR_EAGAIN)
		if (xfer_check(x, err) < 0 || xfer_wait(x, err) < 0)
			return open_abandoned(x);
	if (rc < 0)
		return xfer_lost(x, rc, err);
	return 0;
}

/* Room kept before the data of a chunk for its frame header. */
#define FRAME_HDR 24

/*
 * Puts the frame header "<n>\n" right before the n bytes read at
 * chunk + FRAME_HDR; at EOF (n == 0) the chunk is the last frame "0\n".
 */
static void
in_frame(struct xfer *x, size_t n)
{
	char hdr[FRAME_HDR];
	size_t h = sizeof(hdr);

	hdr[--h] = '\n';
	do {
		hdr[--h] = (char)('0' + n % 10);
		n /= 10;
	} while (n > 0);
	x->chunk_off = FRAME_HDR - (sizeof(hdr) - h);
	memcpy(x->chunk + x->chunk_off, hdr + h, sizeof(hdr) - h);
	x->chunk_len += FRAME_HDR;
}

/* Fills the chunk from stdin_fd when it is readable. */
static int
in_refill(struct xfer *x, struct errbuf *err)
{
	struct pollfd pfd = { x->io->stdin_fd, POLLIN, 0 };
	size_t at = x->io->frame_stdin_fd ? FRAME_HDR : 0;
	ssize_t r;

	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	r = read(x->io->stdin_fd, x->chunk + at, IO_CHUNK - at);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (r < 0)
		return err_set(err, SH_ERR_IO,
		    "reading the command's stdin: "
		    "%s",
		    strerror(errno));
	x->progress = true;
	x->chunk_off = 0;
	x->chunk_len = (size_t)r;
	x->fd_eof = r == 0;
	if (at > 0)
		in_frame(x, (size_t)r);
	return 0;
}

/* The next stdin bytes to send; *n == 0 when none are ready yet. */
static int
in_next(struct xfer *x, const char **p, size_t *n, struct errbuf *err)
{
	*p = NULL;
	*n = 0;
	if (x->data_left == 0 && x->chunk_off == x->chunk_len && !x->fd_eof &&
	    in_refill(x, err) < 0)
		return -1;
	if (x->data_left > 0) {
		*p = x->data;
		*n = x->data_left;
	} else if (x->chunk_off < x->chunk_len) {
		*p = x->chunk + x->chunk_off;
		*n = x->chunk_len - x->chunk_off;
	}
	return 0;
}

static void
in_consume(struct xfer *x, size_t n)
{
	if (x->data_left > 0) {
		x->data += n;
		x->data_left -= n;
	} else {
		x->chunk_off += n;
	}
}

static int
in_send_eof(struct xfer *x, struct errbuf *err)
{
	int rc;

	if (x->pend != PEND_EOF && !sock_writable(x->c)) {
		x->want_out = true;
		return 0;
	}
	rc = libssh2_channel_send_eof(x->ch);
	if (rc == LIBSSH2_ERROR_EAGAIN) {
		if (x->pend == PEND_EOF ||
		    (libssh2_session_block_directions(x->s) &
		        LIBSSH2_SESSION_BLOCK_OUTBOUND))
			x->pend = PEND_EOF;
		return 0;
	}
	if (rc < 0)
		return xfer_lost(x, rc, err);
	x->pend = PEND_NONE;
	x->in_done = true;
	x->progress = true;
	return 0;
}

static int
xfer_stdin(struct xfer *x, struct errbuf *err)
{
	while (!x->in_done && (x->pend == PEND_NONE || x->pend == PEND_WRITE ||
	                          x->pend == PEND_EOF)) {
		const char *p;
		size_t n;
		ssize_t w;

		if (x->pend == PEND_EOF)
			return in_send_eof(x, err);
		if (in_next(x, &p, &n, err) < 0)
			return -1;
		if (n == 0 && x->fd_eof && x->io->keep_stdin_open) {
			x->in_done = true; /* all sent; no EOF (ssh.h) */
			x->progress = true;
			return 0;
		}
		if (n == 0)
			return x->fd_eof ? in_send_eof(x, err) : 0;
		w = libssh2_channel_write(x->ch, p, n);
		if (w == LIBSSH2_ERROR_EAGAIN) {
			/* Sticky: a later partial send may not set the bit. */
			if (x->pend == PEND_WRITE ||
			    (libssh2_session_block_directions(x->s) &
			        LIBSSH2_SESSION_BLOCK_OUTBOUND))
				x->pend = PEND_WRITE;
			return 0;
		}
		if (w < 0)
			return xfer_lost(x, (int)w, err);
		x->pend = PEND_NONE;
		x->progress = true;
		in_consume(x, (size_t)w);
	}
	return 0;
}

static void
sink_buf(struct xfer *x, struct buf *b, const char *p, size_t n)
{
	size_t room;

	if (b == NULL)
		return;
	room = b->max - b->len;
	if (n > room) {
		x->exit->dropped += n - room;
		n = room;
	}
	buf_add(b, p, n);
}

/*
 * stderr keeps a tail (a command's diagnostics come last): past max, the
 * oldest bytes go, so many at a time that the buffer is down to max/2
 * with the new bytes in it; moving costs at most one byte per byte read.
 */
static void
sink_tail(struct xfer *x, struct buf *b, const char *p, size_t n)
{
	size_t keep, cut;

	if (b == NULL)
		return;
	keep = b->max / 2;
	if (b->len + n > b->max && n >= keep) {
		x->exit->dropped += b->len + (n - keep);
		b->len = 0;
		p += n - keep;
		n = keep;
	} else if (b->len + n > b->max) {
		cut = b->len + n - keep;
		memmove(b->data, b->data + cut, b->len - cut);
		b->len -= cut;
		x->exit->dropped += cut;
	}
	buf_add(b, p, n);
}

static int
sink(struct xfer *x, int stream, const char *p, size_t n, struct errbuf *err)
{
	if (stream != 0) {
		if (x->io->on_stderr != NULL)
			x->io->on_stderr(x->io->on_stderr_arg, p, n);
		sink_tail(x, x->io->err, p, n);
		return 0;
	}
	if (x->io->stdout_fd < 0) {
		sink_buf(x, x->io->out, p, n);
		return 0;
	}
	while (n > 0) {
		ssize_t w = write(x->io->stdout_fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_set(err, SH_ERR_IO,
			    "writing the command's "
			    "stdout: %s",
			    strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* True when the next channel read will send a window adjustment. */
static bool
chan_adjusts(LIBSSH2_CHANNEL *ch)
{
	unsigned long avail = 0, initial = 0, window;

	window = libssh2_channel_window_read_ex(ch, &avail, &initial);
	return window < initial / 4 * 3 + IO_CHUNK;
}

static bool
read_adjusts(const struct xfer *x)
{
	return chan_adjusts(x->ch);
}

static int
read_stream(struct xfer *x, int stream, struct errbuf *err)
{
	for (;;) {
		bool adj = read_adjusts(x);
		ssize_t n;

		if (adj && x->pend != PEND_READ && !sock_writable(x->c)) {
			x->want_out = true;
			return 0;
		}
		n = libssh2_channel_read_ex(x->ch, stream, x->rbuf, IO_CHUNK);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			x->pend =
			    adj && read_adjusts(x) ? PEND_READ : PEND_NONE;
			return 0;
		}
		if (n < 0)
			return xfer_lost(x, (int)n, err);
		x->pend = PEND_NONE;
		if (n == 0)
			return 0;
		x->progress = true;
		if (sink(x, stream, x->rbuf, (size_t)n, err) < 0)
			return -1;
	}
}

static int
xfer_output(struct xfer *x, struct errbuf *err)
{
	int rc;

	if (x->pend == PEND_WRITE || x->pend == PEND_EOF)
		return 0;
	if (read_stream(x, 0, err) < 0 ||
	    (x->pend == PEND_NONE && read_stream(x, 1, err) < 0))
		return -1;
	if (x->pend != PEND_NONE || !libssh2_channel_eof(x->ch))
		return 0;
	/* The remote sent EOF and all its output is read: wait for close. */
	rc = libssh2_channel_wait_closed(x->ch);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return 0;
	if (rc < 0)
		return xfer_lost(x, rc, err);
	x->closed = true;
	x->in_done = true; /* it reads no more: stop sending */
	return 0;
}

/*
 * Spares are started once this command's stdin is all sent (the remote end
 * has its work) and no packet is half sent, so their round trips overlap
 * its run; a command done before that gets them started afterwards.
 */
static int
xfer_run(struct xfer *x, const char *command, struct errbuf *err)
{
	bool spares_due = x->io->spares > 0;

	while (!x->closed) {
		x->progress = false;
		x->want_out = false;
		if (xfer_check(x, err) < 0 || xfer_stdin(x, err) < 0 ||
		    xfer_output(x, err) < 0)
			return -1;
		if (spares_due && x->in_done && x->pend == PEND_NONE) {
			spares_due = false;
			if (spares_fill(x, command, err) < 0)
				return -1;
			continue;
		}
		if (!x->closed && !x->progress && xfer_wait(x, err) < 0)
			return -1;
	}
	return spares_due ? spares_fill(x, command, err) : 0;
}

static void
xfer_exit(struct xfer *x)
{
	char *sig = NULL;
	size_t siglen = 0;

	x->exit->status = libssh2_channel_get_exit_status(x->ch);
	if (libssh2_channel_get_exit_signal(
	        x->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 &&
	    sig != NULL) {
		if (siglen >= sizeof(x->exit->signal))
			siglen = sizeof(x->exit->signal) - 1;
		memcpy(x->exit->signal, sig, siglen);
		x->exit->signal[siglen] = '\0';
		x->exit->status = -1;
	}
	if (sig != NULL)
		libssh2_free(x->s, sig);
}

static void
wait_sock(const struct xfer *x, bool out)
{
	struct pollfd pfd = { x->c->sock, POLLIN, 0 };

	if (out || (libssh2_session_block_directions(x->s) &
	               LIBSSH2_SESSION_BLOCK_OUTBOUND))
		pfd.events |= POLLOUT;
	(void)poll(&pfd, 1, 100);
}

/* Finishes a half-sent packet (see the top of the file) before closing. */
static bool
xfer_flush(struct xfer *x, uint64_t end)
{
	while (x->pend != PEND_NONE && now_ms() < end) {
		const char *p = NULL;
		size_t n = 0;
		ssize_t r;

		if (x->pend == PEND_WRITE && in_next(x, &p, &n, NULL) == 0 &&
		    n > 0)
			r = libssh2_channel_write(x->ch, p, n);
		else if (x->pend == PEND_EOF)
			r = libssh2_channel_send_eof(x->ch);
		else
			r = libssh2_channel_read_ex(
			    x->ch, 0, x->rbuf, IO_CHUNK);
		if (r == LIBSSH2_ERROR_EAGAIN &&
		    (x->pend != PEND_READ || read_adjusts(x))) {
			wait_sock(x, true);
			continue;
		}
		if (r < 0 && r != LIBSSH2_ERROR_EAGAIN)
			return false;
		x->pend = PEND_NONE;
	}
	return x->pend == PEND_NONE;
}

/*
 * libssh2_channel_free() sends CLOSE and then waits for one more packet
 * from the server. When the command is still running (a timeout or an
 * interruption), sshd sends nothing until it exits, so a keepalive, which
 * asks for a reply, provides that packet. libssh2 never reuses a channel
 * id, so what sshd sends later for this channel is dropped.
 */
static bool
chan_free(struct xfer *x, uint64_t end)
{
	int rc;

	while (!sock_writable(x->c)) {
		if (now_ms() >= end)
			return false;
		wait_sock(x, true);
	}
	libssh2_keepalive_config(x->s, 1, 2);
	while ((rc = libssh2_channel_free(x->ch)) == LIBSSH2_ERROR_EAGAIN &&
	       now_ms() < end) {
		int next = 0;

		if (sock_writable(x->c))
			(void)libssh2_keepalive_send(x->s, &next);
		wait_sock(x, false);
	}
	libssh2_keepalive_config(x->s, 1, x->c->keepalive_s);
	if (rc == 0)
		x->ch = NULL;
	return rc == 0;
}

/* A channel that will not close leaves the session unusable. */
static void
chan_stuck(struct ssh_conn *c)
{
	if (!c->dead)
		conn_dead(c,
		    xasprintf("a channel to %s could not be closed", c->where));
}

/* Closes and frees ch (no packet of it half sent) within CLOSE_WAIT_MS. */
static bool
chan_close(struct ssh_conn *c, LIBSSH2_CHANNEL *ch)
{
	struct xfer x;

	memset(&x, 0, sizeof(x));
	x.c = c;
	x.s = c->session;
	x.ch = ch;
	if (chan_free(&x, now_ms() + CLOSE_WAIT_MS))
		return true;
	chan_stuck(c);
	return false;
}

/*
 * Closes and frees the channel within CLOSE_WAIT_MS. A packet that stays
 * half sent, or a channel that will not close, leaves the session unusable.
 */
static void
xfer_release(struct xfer *x)
{
	uint64_t end = now_ms() + CLOSE_WAIT_MS;

	if (x->ch != NULL && !x->c->dead && xfer_flush(x, end))
		(void)chan_free(x, end);
	if (x->ch != NULL)
		chan_stuck(x->c);
	free(x->chunk);
	free(x->rbuf);
}

/* ---- spares (ssh.h) */

/* Takes spare i out of the list; returns its channel. */
static LIBSSH2_CHANNEL *
spare_remove(struct ssh_conn *c, size_t i)
{
	LIBSSH2_CHANNEL *ch = c->spares[i].ch;

	free(c->spares[i].command);
	memmove(&c->spares[i], &c->spares[i + 1],
	    (c->nspares - i - 1) * sizeof(c->spares[0]));
	c->nspares--;
	return ch;
}

/* Closes spare i; its command sees EOF and exits. */
static void
spare_drop(struct ssh_conn *c, size_t i)
{
	(void)chan_close(c, spare_remove(c, i));
}

/*
 * The oldest spare of command, or NULL. One that has output waiting or has
 * ended never got to wait for its stdin: it is closed, and so the caller
 * opens a fresh channel when no good one is left, which shows the error.
 */
static LIBSSH2_CHANNEL *
spare_take(struct ssh_conn *c, const char *command)
{
	size_t i = 0;

	while (i < c->nspares && !c->dead) {
		LIBSSH2_CHANNEL *ch = c->spares[i].ch;
		unsigned long pending = 0;

		if (strcmp(c->spares[i].command, command) != 0) {
			i++;
			continue;
		}
		(void)libssh2_channel_window_read_ex(ch, &pending, NULL);
		if (pending == 0 && libssh2_channel_eof(ch) == 0)
			return spare_remove(c, i);
		spare_drop(c, i);
	}
	return NULL;
}

static unsigned
spare_count(const struct ssh_conn *c, const char *command)
{
	unsigned n = 0;

	for (size_t i = 0; i < c->nspares; i++)
		n += strcmp(c->spares[i].command, command) == 0;
	return n;
}

/* Makes room by closing the oldest spare of another command. */
static bool
spare_make_room(struct ssh_conn *c, const char *command)
{
	for (size_t i = 0; i < c->nspares; i++) {
		if (strcmp(c->spares[i].command, command) == 0)
			continue;
		spare_drop(c, i);
		return !c->dead;
	}
	return false;
}

/*
 * Closes every spare and keeps no more: the server refused a channel that
 * is not a spare, and spares hold sessions it counts (MaxSessions). Says
 * whether there was one to close, i.e. whether a retry may succeed.
 */
static bool
spares_yield(struct ssh_conn *c)
{
	bool had = c->nspares > 0;

	c->spares_refused = true;
	while (c->nspares > 0 && !c->dead)
		spare_drop(c, 0);
	return had && !c->dead;
}

/*
 * The command's own channel. A refused open is tried again: at once when
 * spares held sessions (closed first), else after a pause, as sshd may
 * still count the channel closed just before until it reaps it.
 */
static int
xfer_open(struct xfer *x, const char *command, struct errbuf *err)
{
	static const unsigned pause_ms[] = { 20, 200 };
	size_t tries = 0;

	while (chan_start(x, command, &x->ch, err) < 0) {
		if (x->c->dead || err->code != SH_ERR_SSH || x->ch != NULL ||
		    tries == sizeof(pause_ms) / sizeof(*pause_ms))
			return -1;
		if (!spares_yield(x->c) &&
		    sleep_ms(x->c, pause_ms[tries], err) < 0)
			return -1;
		tries++;
	}
	return 0;
}

/*
 * Starts copies of command until x->io->spares wait. A refused channel
 * (sshd's MaxSessions, a denied exec) ends spares for the session and is
 * not an error; a broken session, a deadline or an interruption is.
 */
static int
spares_fill(struct xfer *x, const char *command, struct errbuf *err)
{
	struct ssh_conn *c = x->c;

	while (!c->spares_refused && spare_count(c, command) < x->io->spares) {
		LIBSSH2_CHANNEL *ch = NULL;
		struct errbuf why;

		if (c->nspares == SSH_SPARES_MAX &&
		    !spare_make_room(c, command))
			break;
		if (chan_start(x, command, &ch, &why) < 0) {
			if (c->dead || why.code != SH_ERR_SSH) {
				*err = why;
				return -1;
			}
			c->spares_refused = true;
			if (ch != NULL)
				(void)chan_close(c, ch);
			break;
		}
		c->spares[c->nspares].ch = ch;
		c->spares[c->nspares].command = xstrdup(command);
		c->nspares++;
	}
	return session_usable(c, err);
}

int
ssh_exec(struct ssh_conn *c, const char *command, struct ssh_io *io,
    struct ssh_exit *exit, struct errbuf *err)
{
	struct ssh_io none = { NULL, 0, -1, -1, NULL, NULL, 0, NULL, NULL, 0,
		false, false };
	struct ssh_exit scratch;
	struct xfer x;
	int rc;

	if (exit == NULL)
		exit = &scratch;
	memset(exit, 0, sizeof(*exit));
	exit->status = -1;
	if (session_usable(c, err) < 0)
		return -1;
	memset(&x, 0, sizeof(x));
	x.c = c;
	x.s = c->session;
	x.io = io != NULL ? io : &none;
	x.exit = exit;
	x.data = x.io->stdin_data;
	x.data_left = x.data != NULL ? x.io->stdin_len : 0;
	x.fd_eof = x.io->stdin_fd < 0;
	x.chunk = xmalloc(IO_CHUNK);
	x.rbuf = xmalloc(IO_CHUNK);
	libssh2_session_set_blocking(c->session, 0);
	if (x.io->spares > 0)
		x.ch = spare_take(c, command); /* may find the session broken */
	rc = session_usable(c, err);
	if (rc == 0 && x.ch == NULL)
		rc = xfer_open(&x, command, err);
	if (rc == 0)
		rc = xfer_run(&x, command, err);
	if (rc == 0)
		xfer_exit(&x);
	xfer_release(&x);
	if (c->session != NULL)
		libssh2_session_set_blocking(c->session, 1);
	return rc;
}

/* ======================================================== tunnels */

/*
 * A tunnel relays one channel to a local fd (see ssh.h). The pump moves
 * bytes fd -> up -> channel and channel -> down -> fd, one IO_CHUNK buffer
 * each way: up is refilled only when empty and stays unchanged while a
 * write of it is half sent; the channel is read only while down is empty,
 * so a slow reader of fd closes the SSH window instead of growing memory.
 * Before ssh_tunnel_pump() returns it finishes any half-sent packet (the
 * rule at the top of this file), so the session may serve ssh_exec() and
 * other tunnels between pumps.
 */
struct ssh_tunnel {
	struct ssh_conn *c;  /* borrowed */
	unsigned gen;        /* c->gen when opened: the channel's session */
	LIBSSH2_CHANNEL *ch; /* owned; NULL once freed */
	enum pend pend;
	char *up; /* owned: IO_CHUNK bytes read from fd, to send */
	size_t up_off, up_len;
	char *down; /* owned: IO_CHUNK bytes read from the channel */
	size_t down_off, down_len;
	char *scratch;     /* owned: IO_CHUNK, for stderr reads */
	struct buf errout; /* the channel's stderr, first TUNNEL_ERR_MAX */
	bool fd_eof;       /* fd said EOF */
	bool eof_sent;     /* channel EOF sent, or sending is pointless */
	bool remote_eof;   /* channel EOF read, everything passed to fd */
	bool fd_gone;      /* fd's reader went away: drop what comes */
	bool want_out;     /* waiting for the socket to be writable */
	bool want_fd_out;  /* waiting for fd to be writable */
	bool progress;
};

#define TUNNEL_ERR_MAX 4096

static struct ssh_tunnel *
tun_new(struct ssh_conn *c)
{
	struct ssh_tunnel *t = xcalloc(1, sizeof(*t));

	t->c = c;
	t->gen = c->gen;
	t->up = xmalloc(IO_CHUNK);
	t->down = xmalloc(IO_CHUNK);
	t->scratch = xmalloc(IO_CHUNK);
	buf_init(&t->errout, TUNNEL_ERR_MAX);
	return t;
}

static void
tun_free(struct ssh_tunnel *t)
{
	free(t->up);
	free(t->down);
	free(t->scratch);
	buf_release(&t->errout);
	free(t);
}

/* The channel died with its session (dead, or replaced by a reconnect). */
static int
tun_alive(struct ssh_tunnel *t, struct errbuf *err)
{
	if (t->gen != t->c->gen) {
		t->ch = NULL; /* freed by libssh2_session_free() */
		return err_set(err, SH_ERR_SSH,
		    "session lost: the tunnel's session to %s was replaced",
		    t->c->where);
	}
	if (t->ch == NULL)
		return err_set(err, SH_ERR_INTERNAL, "tunnel already closed");
	return session_usable(t->c, err);
}

/* Waits for the socket while opening; gives up on deadline/interrupt. */
static int
tun_open_wait(struct ssh_conn *c, uint64_t end, struct errbuf *err)
{
	struct pollfd pfd = { c->sock, POLLIN, 0 };
	uint64_t now = now_ms();

	if (interrupted(c))
		return err_set(err, SH_ERR_INTERRUPTED, "interrupted");
	if (now >= end)
		return err_set(err, SH_ERR_TIMEOUT,
		    "opening a channel to %s timed out after %u s", c->where,
		    c->timeout_s);
	if (libssh2_session_block_directions(c->session) &
	    LIBSSH2_SESSION_BLOCK_OUTBOUND)
		pfd.events |= POLLOUT;
	(void)poll(&pfd, 1,
	    (int)(end - now > POLL_SLICE_MS ? POLL_SLICE_MS : end - now));
	return 0;
}

/* Giving up half way through opening leaves libssh2 mid-request. */
static int
tun_abandoned(struct ssh_conn *c)
{
	if (!c->dead)
		conn_dead(c, xasprintf("a channel to %s was abandoned while "
		                       "opening",
		                 c->where));
	return -1;
}

/* The server refused the channel: a fact about the target, not the link. */
static int
tun_refused(struct ssh_conn *c, int rc, const char *what, struct errbuf *err)
{
	if (rc != LIBSSH2_ERROR_CHANNEL_FAILURE)
		return session_lost(c, rc, err);
	return err_set(err, SH_ERR_REMOTE, "%s on %s: %s", what, c->where,
	    last_error(c->session));
}

static int
tun_open_direct(
    struct ssh_tunnel *t, const char *host, unsigned port, struct errbuf *err)
{
	struct ssh_conn *c = t->c;
	uint64_t end = now_ms() + (uint64_t)c->timeout_s * 1000u;
	char *what = xasprintf("connecting to %s:%u", host, port);
	int rc = 0;

	while ((t->ch = libssh2_channel_direct_tcpip_ex(
	            c->session, host, (int)port, "127.0.0.1", 0)) == NULL) {
		rc = libssh2_session_last_errno(c->session);
		if (rc != LIBSSH2_ERROR_EAGAIN) {
			rc = tun_refused(c, rc, what, err);
			break;
		}
		rc = 0;
		if (tun_open_wait(c, end, err) < 0) {
			rc = tun_abandoned(c);
			break;
		}
	}
	free(what);
	return rc;
}

int
ssh_tunnel_open_tcp(struct ssh_conn *c, const char *host, unsigned port,
    struct ssh_tunnel **out, struct errbuf *err)
{
	struct ssh_tunnel *t;
	int rc;

	*out = NULL;
	if (session_usable(c, err) < 0)
		return -1;
	if (port == 0 || port > 65535)
		return err_set(
		    err, SH_ERR_INTERNAL, "tunnel: bad port %u", port);
	t = tun_new(c);
	libssh2_session_set_blocking(c->session, 0);
	rc = tun_open_direct(t, host, port, err);
	if (rc < 0 && err->code == SH_ERR_REMOTE && spares_yield(c))
		rc = tun_open_direct(t, host, port, err);
	if (c->session != NULL)
		libssh2_session_set_blocking(c->session, 1);
	if (rc < 0) {
		tun_free(t);
		return -1;
	}
	*out = t;
	return 0;
}

static int
tun_open_exec(struct ssh_tunnel *t, const char *command, struct errbuf *err)
{
	struct ssh_conn *c = t->c;
	uint64_t end = now_ms() + (uint64_t)c->timeout_s * 1000u;
	int rc;

	while ((t->ch = libssh2_channel_open_session(c->session)) == NULL) {
		rc = libssh2_session_last_errno(c->session);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return tun_refused(c, rc, "opening a session", err);
		if (tun_open_wait(c, end, err) < 0)
			return tun_abandoned(c);
	}
	while (
	    (rc = libssh2_channel_exec(t->ch, command)) == LIBSSH2_ERROR_EAGAIN)
		if (tun_open_wait(c, end, err) < 0)
			return tun_abandoned(c);
	if (rc < 0)
		return tun_refused(c, rc, "starting the relay", err);
	return 0;
}

int
ssh_tunnel_open_exec(struct ssh_conn *c, const char *command,
    struct ssh_tunnel **out, struct errbuf *err)
{
	struct ssh_tunnel *t;
	int rc;

	*out = NULL;
	if (session_usable(c, err) < 0)
		return -1;
	t = tun_new(c);
	libssh2_session_set_blocking(c->session, 0);
	rc = tun_open_exec(t, command, err);
	if (rc < 0 && err->code == SH_ERR_REMOTE && t->ch == NULL &&
	    spares_yield(c))
		rc = tun_open_exec(t, command, err);
	if (rc < 0 && t->ch != NULL && !c->dead) {
		ssh_tunnel_close(t); /* the channel opened, exec was refused */
		t = NULL;
	}
	if (c->session != NULL)
		libssh2_session_set_blocking(c->session, 1);
	if (rc < 0) {
		if (t != NULL)
			tun_free(t); /* its channel went with the session */
		return -1;
	}
	*out = t;
	return 0;
}

/* ---- fd -> channel */

static int
tun_fill_up(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	ssize_t r = read(fd, t->up, IO_CHUNK);

	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (r < 0 && errno != ECONNRESET)
		return err_set(err, SH_ERR_IO,
		    "tunnel: reading the local "
		    "socket: %s",
		    strerror(errno));
	t->progress = true;
	t->up_off = 0;
	t->up_len = r > 0 ? (size_t)r : 0;
	t->fd_eof = r <= 0;
	return 0;
}

static bool
tun_blocked_out(const struct ssh_tunnel *t)
{
	return (libssh2_session_block_directions(t->c->session) &
	           LIBSSH2_SESSION_BLOCK_OUTBOUND) != 0;
}

static int
tun_send_eof(struct ssh_tunnel *t, struct errbuf *err)
{
	int rc;

	if (t->pend != PEND_EOF && !sock_writable(t->c)) {
		t->want_out = true;
		return 0;
	}
	rc = libssh2_channel_send_eof(t->ch);
	if (rc == LIBSSH2_ERROR_EAGAIN) {
		if (t->pend == PEND_EOF || tun_blocked_out(t))
			t->pend = PEND_EOF;
		return 0;
	}
	if (rc < 0)
		return session_lost(t->c, rc, err);
	t->pend = PEND_NONE;
	t->eof_sent = true;
	t->progress = true;
	return 0;
}

static int
tun_up(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	while (!t->eof_sent && (t->pend == PEND_NONE || t->pend == PEND_WRITE ||
	                           t->pend == PEND_EOF)) {
		ssize_t w;

		if (t->pend == PEND_EOF)
			return tun_send_eof(t, err);
		if (t->up_off == t->up_len && !t->fd_eof &&
		    tun_fill_up(t, fd, err) < 0)
			return -1;
		if (t->up_off == t->up_len)
			return t->fd_eof ? tun_send_eof(t, err) : 0;
		w = libssh2_channel_write(
		    t->ch, t->up + t->up_off, t->up_len - t->up_off);
		if (w == LIBSSH2_ERROR_EAGAIN) {
			/* Sticky: a later partial send may not set the bit. */
			if (t->pend == PEND_WRITE || tun_blocked_out(t))
				t->pend = PEND_WRITE;
			return 0;
		}
		if (w < 0)
			return session_lost(t->c, (int)w, err);
		t->pend = PEND_NONE;
		t->progress = true;
		t->up_off += (size_t)w;
	}
	return 0;
}

/* ---- channel -> fd */

static int
tun_flush_fd(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	while (t->down_off < t->down_len) {
		ssize_t w;

		if (t->fd_gone) {
			t->down_off = t->down_len;
			break;
		}
		w = send(fd, t->down + t->down_off, t->down_len - t->down_off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			t->want_fd_out = true;
			return 0;
		}
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
			t->fd_gone = true;
		else if (w < 0)
			return err_set(err, SH_ERR_IO,
			    "tunnel: writing the local socket: %s",
			    strerror(errno));
		else
			t->down_off += (size_t)w;
		t->progress = true;
	}
	return 0;
}

/* One read of stream into p (IO_CHUNK bytes); *got 0 when none. */
static int
tun_read(
    struct ssh_tunnel *t, int stream, char *p, size_t *got, struct errbuf *err)
{
	bool adj = chan_adjusts(t->ch);
	ssize_t n;

	*got = 0;
	if (adj && t->pend != PEND_READ && !sock_writable(t->c)) {
		t->want_out = true;
		return 0;
	}
	n = libssh2_channel_read_ex(t->ch, stream, p, IO_CHUNK);
	if (n == LIBSSH2_ERROR_EAGAIN) {
		t->pend = adj && chan_adjusts(t->ch) ? PEND_READ : PEND_NONE;
		return 0;
	}
	if (n < 0)
		return session_lost(t->c, (int)n, err);
	t->pend = PEND_NONE;
	*got = (size_t)n;
	if (n > 0)
		t->progress = true;
	return 0;
}

static int
tun_read_err(struct ssh_tunnel *t, struct errbuf *err)
{
	size_t got, room;

	/* Beyond TUNNEL_ERR_MAX it is read and dropped: unread stderr would
	 * hold the window and hide the channel's EOF. */
	do {
		if (tun_read(t, 1, t->scratch, &got, err) < 0)
			return -1;
		room = t->errout.max - t->errout.len;
		buf_add(&t->errout, t->scratch, got < room ? got : room);
	} while (got > 0);
	return 0;
}

static int
tun_down(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	size_t got = 1;

	if (t->pend == PEND_WRITE || t->pend == PEND_EOF)
		return 0;
	if (tun_flush_fd(t, fd, err) < 0 || tun_read_err(t, err) < 0)
		return -1;
	while (got > 0 && t->down_off == t->down_len && !t->remote_eof &&
	       (t->pend == PEND_NONE || t->pend == PEND_READ)) {
		if (tun_read(t, 0, t->down, &got, err) < 0)
			return -1;
		t->down_off = 0;
		t->down_len = got;
		if (tun_flush_fd(t, fd, err) < 0)
			return -1;
	}
	if (t->pend != PEND_NONE || t->down_off < t->down_len ||
	    t->remote_eof || !libssh2_channel_eof(t->ch))
		return 0;
	/* The far end is done: it reads no more, so stop sending too. */
	t->remote_eof = true;
	t->progress = true;
	if (!t->fd_gone)
		(void)shutdown(fd, SHUT_WR);
	t->up_off = t->up_len;
	t->eof_sent = true;
	return 0;
}

/* ---- the pump */

static int
tun_wait(struct ssh_tunnel *t, int fd, int timeout_ms, struct errbuf *err)
{
	struct pollfd pfd[2];
	nfds_t n = 1;
	int rc;

	pfd[0].fd = t->c->sock;
	pfd[0].events = POLLIN;
	if (t->want_out || (t->pend != PEND_NONE && tun_blocked_out(t)))
		pfd[0].events |= POLLOUT;
	pfd[1].fd = fd;
	pfd[1].events = 0;
	if (t->up_off == t->up_len && !t->fd_eof && !t->eof_sent)
		pfd[1].events |= POLLIN;
	if (t->want_fd_out)
		pfd[1].events |= POLLOUT;
	if (pfd[1].events != 0)
		n = 2;
	rc = poll(pfd, n, timeout_ms);
	if (rc < 0 && errno != EINTR)
		return err_set(
		    err, SH_ERR_INTERNAL, "poll: %s", strerror(errno));
	if (rc == 0 && t->pend == PEND_NONE && sock_writable(t->c)) {
		int next = 0;

		/* Idle: the keepalive cannot split (the socket has room). */
		if (libssh2_keepalive_send(t->c->session, &next) != 0)
			return session_lost(t->c,
			    libssh2_session_last_errno(t->c->session), err);
	}
	return 0;
}

static int
tun_round(struct ssh_tunnel *t, int fd, struct errbuf *err)
{
	t->progress = false;
	t->want_out = false;
	t->want_fd_out = false;
	if (tun_up(t, fd, err) < 0 || tun_down(t, fd, err) < 0)
		return -1;
	return 0;
}

/* Retries the one operation with a half-sent packet until it is out. */
static int
tun_finish_one(struct ssh_tunnel *t, struct errbuf *err)
{
	ssize_t r;
	size_t got = 0;

	if (t->pend == PEND_WRITE)
		r = libssh2_channel_write(
		    t->ch, t->up + t->up_off, t->up_len - t->up_off);
	else if (t->pend == PEND_EOF)
		r = libssh2_channel_send_eof(t->ch);
	else if (t->down_off == t->down_len)
		r = libssh2_channel_read_ex(t->ch, 0, t->down, IO_CHUNK);
	else
		r = libssh2_channel_read_ex(t->ch, 1, t->scratch, IO_CHUNK);
	if (r == LIBSSH2_ERROR_EAGAIN) {
		if (t->pend == PEND_READ && !chan_adjusts(t->ch))
			t->pend = PEND_NONE;
		return 0;
	}
	if (r < 0)
		return session_lost(t->c, (int)r, err);
	if (t->pend == PEND_WRITE) {
		t->up_off += (size_t)r;
	} else if (t->pend == PEND_EOF) {
		t->eof_sent = true;
	} else if (t->down_off == t->down_len) {
		t->down_off = 0;
		t->down_len = (size_t)r;
	} else {
		got = (size_t)r;
	}
	if (got > 0 && got <= t->errout.max - t->errout.len)
		buf_add(&t->errout, t->scratch, got);
	t->pend = PEND_NONE;
	return 0;
}

static int
tun_finish(struct ssh_tunnel *t, struct errbuf *err)
{
	uint64_t end = now_ms() + CLOSE_WAIT_MS;

	while (t->pend != PEND_NONE) {
		struct pollfd pfd = { t->c->sock, POLLIN | POLLOUT, 0 };

		if (now_ms() >= end) {
			conn_dead(t->c, xasprintf("a packet to %s stayed "
			                          "half sent",
			                    t->c->where));
			return err_set(
			    err, SH_ERR_SSH, "session lost: %s", t->c->lost);
		}
		if (tun_finish_one(t, err) < 0)
			return -1;
		if (t->pend != PEND_NONE)
			(void)poll(&pfd, 1, 100);
	}
	return 0;
}

int
ssh_tunnel_pump(
    struct ssh_tunnel *t, int fd, int timeout_ms, struct errbuf *err)
{
	LIBSSH2_SESSION *s;
	int rc;

	if (tun_alive(t, err) < 0)
		return -1;
	s = t->c->session;
	libssh2_session_set_blocking(s, 0);
	rc = tun_round(t, fd, err);
	if (rc == 0 && !t->progress && timeout_ms > 0 &&
	    !(t->remote_eof && t->eof_sent)) {
		rc = tun_wait(t, fd, timeout_ms, err);
		if (rc == 0)
			rc = tun_round(t, fd, err);
	}
	if (rc == 0)
		rc = tun_finish(t, err);
	if (t->c->session != NULL)
		libssh2_session_set_blocking(t->c->session, 1);
	return rc;
}

bool
ssh_tunnel_eof(const struct ssh_tunnel *t)
{
	return t->remote_eof;
}

bool
ssh_tunnel_idle(const struct ssh_tunnel *t)
{
	return t->up_off == t->up_len && t->down_off == t->down_len &&
	       t->pend == PEND_NONE;
}

const char *
ssh_tunnel_stderr(const struct ssh_tunnel *t)
{
	return t->errout.data;
}

void
ssh_tunnel_close(struct ssh_tunnel *t)
{
	struct ssh_conn *c;

	if (t == NULL)
		return;
	c = t->c;
	if (t->ch != NULL && t->gen == c->gen && !c->dead &&
	    c->session != NULL) {
		libssh2_session_set_blocking(c->session, 0);
		if (tun_finish(t, NULL) == 0 && chan_close(c, t->ch))
			t->ch = NULL;
		else
			chan_stuck(c);
		if (c->session != NULL)
			libssh2_session_set_blocking(c->session, 1);
	}
	tun_free(t);
}

/* ======================================================== reconnect, close */

int
ssh_reconnect(struct ssh_conn *c, struct errbuf *err)
{
	static const unsigned delay_ms[] = { 200, 500, 1000, 2000, 4000 };
	const size_t ndelay = sizeof(delay_ms) / sizeof(*delay_ms);
	unsigned i;

	conn_teardown(c);
	for (i = 0; i < SSH_RECONNECT_TRIES; i++) {
		if (sleep_ms(c, delay_ms[i < ndelay ? i : ndelay - 1], err) < 0)
			return -1;
		if (session_open(c, err) == 0) {
			c->reconnects++;
			free(c->lost);
			c->lost = NULL;
			return 0;
		}
		/* Only an unreachable host is worth another try. */
		if (err->code != SH_ERR_UNREACHABLE)
			break;
	}
	i = i < SSH_RECONNECT_TRIES ? i + 1 : SSH_RECONNECT_TRIES;
	return err_prefix(err,
	    "reconnect to %s failed after %u attempt%s: ", c->where, i,
	    i == 1 ? "" : "s");
}

void
ssh_close(struct ssh_conn *c)
{
	if (c == NULL)
		return;
	conn_teardown(c);
	buf_release(&c->key);
	buf_release(&c->fp);
	buf_release(&c->known);
	free(c->known_path);
	free(c->where);
	free(c->key_origin);
	free(c->lost);
	if (c->lib)
		libssh2_exit();
	free(c);
}

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

unsigned
ssh_reconnect_count(const struct ssh_conn *c)
{
	return c->reconnects;
}
