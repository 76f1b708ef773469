/*
 * ssh_int.h: what the files of transport/ share behind ssh.h: the
 * connection struct, the rules for driving libssh2 and the functions one
 * file calls in another. Private: only the .c files of transport/ may
 * include it; every other layer goes through ssh.h.
 *
 * The files (ssh.h says what each does for callers; the prefix of what a
 * file shares names it):
 *   session.c  target strings, TCP, handshake, keepalive, close and
 *              reconnect; the session's state: usable, lost, dead.
 *   jump.c     jump hosts: the relay process that carries the session's
 *              socket (a socketpair) over the hops.
 *   trust.c    keys and the agent, known_hosts, the host key check,
 *              authentication.
 *   exec.c     ssh_exec(): channels, stdin and output streaming, spares,
 *              kept commands and their frames.
 *   tunnel.c   ssh_tunnel_*(): direct-tcpip and exec channels relayed to
 *              a local fd (libpq's, from pg.c).
 *
 * Ownership: struct ssh_conn is allocated by ssh_connect() and freed, with
 * every field marked owned, by ssh_close() (session.c). The session and
 * its socket are replaced by ssh_reconnect(); channels belong to the
 * session and die with it (gen counts sessions, for tunnels).
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
 * not be sent. The exec loop and the tunnel pump therefore remember which
 * operation has a packet pending (enum pend) and call only that one until
 * it completes; small control packets (EOF, window adjust, keepalive) are
 * only sent when poll() says the socket is writable, so they practically
 * never split.
 */
#ifndef STAGEHAND_SSH_INT_H
#define STAGEHAND_SSH_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <libssh2.h>

#include "transport/ssh.h"
#include "util/limits.h"
#include "util/util.h"

/* known_hosts files beyond this are refused rather than half read. */
#define KNOWN_HOSTS_MAX_BYTES (16u << 20)
#define POLL_SLICE_MS 500  /* longest sleep between checks */
#define IO_CHUNK 65536     /* bytes per channel read / stdin read */
#define CLOSE_WAIT_MS 5000 /* closing a channel or session */
#define HOSTKEY_NTYPES 5   /* entries of trust.c's hostkey_types[] */

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
	/* Kept commands (ssh.h) between calls, oldest first; as spares. */
	struct spare kept[SSH_KEPT_MAX];
	size_t nkept;
	/* Jump hosts (jump.c): the relay process carrying sock, and each
	 * hop's host key as first seen (owned), which reconnects require. */
	int relay_pid; /* 0: none */
	struct jump_seen {
		char *fp;
		char *type;
		bool accepted;
	} * seen;
	size_t nseen;
	char *seen_type; /* owned: key_type, when a relay's reconnect set fp */
};

/* Which operation has a partly sent packet that must be finished first. */
enum pend {
	PEND_NONE = 0,
	PEND_WRITE,
	PEND_EOF,
	PEND_READ,
};

/* ======================================================== session.c */

const char *session_last_error(LIBSSH2_SESSION *s);
bool session_interrupted(const struct ssh_conn *c);
/* Sleeps ms, waking for an interruption. */
int session_sleep_ms(const struct ssh_conn *c, unsigned ms, struct errbuf *err);
/* The session is there and not known to be broken. */
int session_usable(const struct ssh_conn *c, struct errbuf *err);
bool session_sock_writable(const struct ssh_conn *c);
/* Marks the session unusable; takes why (owned). */
void session_dead(struct ssh_conn *c, char *why);
/* A libssh2 failure rc: SH_ERR_SSH, and the session dead unless only the
 * channel failed. */
int session_lost(struct ssh_conn *c, int rc, struct errbuf *err);

/*
 * Connects as ssh_connect() does, but a key already in seen[] (the hops'
 * and this host's keys of a first connection, seen[opts->njumps] being
 * this host's) is required instead of checked again: the relay's way to
 * reconnect a hop. seen is borrowed.
 */
int session_connect_seen(const struct ssh_opts *opts,
    const struct jump_seen *seen, size_t nseen, struct ssh_conn **out,
    struct errbuf *err);

/* ======================================================== jump.c */

/* Starts the relay to c's host over opts->jumps and sets c->sock to its
 * end of the socketpair; reports a hop's failure as ssh.h says. */
int jump_open(struct ssh_conn *c, struct errbuf *err);
/* Stops the relay (if any); c->sock is closed by the caller. */
void jump_stop(struct ssh_conn *c);
void jump_seen_free(struct ssh_conn *c);

/* ======================================================== trust.c */

/*
 * What known_hosts says about the host, for the host key preference and
 * the messages. The decision itself is knownhosts_check()'s (knownhosts.h);
 * libssh2's parser is not used: it takes "@revoked" for a host name and
 * matches a plain "host" entry on every port.
 */
struct trust_known {
	bool has[HOSTKEY_NTYPES]; /* entries of hostkey_types[i] for the host */
	bool any;                 /* any of has[] */
};

/* The checks that need no network: the pin, known_hosts, the key. */
int trust_load(struct ssh_conn *c, struct errbuf *err);
/* Before the handshake: the host key types to ask for. */
int trust_hostkey_prefs(
    struct ssh_conn *c, struct trust_known *k, struct errbuf *err);
/* After it: the key the server showed, against the pin, the key of the
 * first connection or known_hosts. */
int trust_hostkey_verify(
    struct ssh_conn *c, const struct trust_known *k, struct errbuf *err);
int trust_auth(struct ssh_conn *c, struct errbuf *err);

/* ======================================================== exec.c */

/* True when the next channel read will send a window adjustment. */
bool exec_chan_adjusts(LIBSSH2_CHANNEL *ch);
/* Closes and frees ch (no packet of it half sent) within CLOSE_WAIT_MS. */
bool exec_chan_close(struct ssh_conn *c, LIBSSH2_CHANNEL *ch);
/* A channel that will not close leaves the session unusable. */
void exec_chan_stuck(struct ssh_conn *c);
/* Closes every spare and keeps no more (a refused channel); says whether
 * a retry may succeed. */
bool exec_spares_yield(struct ssh_conn *c);
/* The session is going: its spares go with it (libssh2_session_free). */
void exec_spares_forget(struct ssh_conn *c);

#endif
