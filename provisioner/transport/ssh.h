/*
 * ssh.h: the transport: one libssh2 session to the build instance, the
 * commands run on it and the tunnels through it.
 *
 * Files: session.c (target strings, TCP, handshake, keepalive, close,
 * reconnect), jump.c (jump hosts: the relay process), trust.c (keys and the
 * agent, known_hosts and the host key check, authentication; OpenSSH's
 * known_hosts rules are knownhosts.c's, the key checks sshkey.c's), exec.c
 * (ssh_exec(): channels, streaming, spares, kept commands) and tunnel.c
 * (ssh_tunnel_*()). They share ssh_int.h, which is private to transport/;
 * every other layer uses only this header.
 *
 * Call order: ssh_target_parse() -> ssh_connect() -> ssh_exec()... (and
 * tunnels, below) -> ssh_close(). ssh_reconnect() replaces a dead session
 * with a new one to the same host, which must present the same host key;
 * ssh_reconnect_once() makes a single try at that.
 *
 * Trust: the host key is checked before authenticating, against a pinned
 * SHA256 fingerprint (opts->host_key_pin) or a known_hosts file, with
 * OpenSSH's rules as knownhosts.h implements them (libssh2's own parser is
 * not used: it takes @revoked for a host name and lets a plain "host" entry
 * match on every port). The file is read by ssh_connect() before any packet:
 * opts->known_hosts must exist and be readable (else SH_ERR_USAGE naming it,
 * with or without accept_new_host_key); only the default ~/.ssh/known_hosts
 * may be missing, which means no host is known. The host key algorithm
 * preference is set to the types known for that host, since libssh2
 * otherwise picks ECDSA and a known_hosts file holding only an ed25519 entry
 * would never match. A revoked key (an @revoked line for the host) and a
 * changed key (the file lists keys of that type for the host, none of them
 * this one; on a port other than 22 only [host]:port entries count) are
 * always refused (SH_ERR_TRUST), and so is a key of a type the file does not
 * list for a host it lists other key types for. An unknown host is refused
 * unless accept_new_host_key is set, in which case ssh_host_key_accepted()
 * says so and the run records it; no file is written. @cert-authority and
 * unparsable lines are skipped and, when opts->note is set, said so.
 * ssh_reconnect() requires the key of the first connection ("... on
 * reconnect" otherwise).
 *
 * Authentication: the key text from the environment variable named by
 * identity_env, or identity_file, or the ssh-agent. Key text is held in
 * wiped memory and never logged. RSA keys are refused with a message that
 * explains why (libssh2 1.10 cannot sign rsa-sha2, which OpenSSH 8.8+
 * requires) and suggests ed25519.
 *
 * Jump hosts (opts->jumps[0..njumps), like OpenSSH's -J): the session to
 * the target runs over a direct-tcpip channel of the last hop, whose own
 * session runs over one of the hop before it, and so on; the first hop is
 * reached over TCP. Each hop is checked as the target is (its own pin, or
 * the same known_hosts file and accept_new_host_key), authenticates with
 * its own key (identity_file, identity_env, or the agent when both are
 * NULL) and sends keepalives; opts->note is not called for hops. The
 * hops live in a relay process (jump.c): libssh2 wants a socket for the
 * target's session, so it gets one end of a socketpair, and the relay
 * pumps the other end through the channel (ssh_tunnel_pump(),
 * single-threaded). A failure at a hop is reported with its code
 * (SH_ERR_UNREACHABLE: 69, SH_ERR_TRUST: 77, SH_ERR_USAGE) and a message
 * that starts "jump host USER@HOST: " ("USER@[HOST]:PORT" off port 22).
 * A hop that drops ends the relay, so the target's session is lost and
 * reconnects (through new hop sessions) under the same rules; every hop
 * must then show the key it showed first. ssh_jump_host_key() says what
 * each hop showed on the first connection.
 *
 * Everything that can be checked offline is checked before connecting:
 * the pin's format, the key file or variable, and the key itself.
 *
 * Errors: SH_ERR_USAGE (bad target string, malformed pin, missing or
 * unusable key: RSA/DSA, passphrase-protected; no key and no agent),
 * SH_ERR_UNREACHABLE (resolve/connect/handshake failed: exit 69),
 * SH_ERR_TRUST (host key or authentication refused: exit 77),
 * SH_ERR_SSH (the session broke mid-command; reconnect and maybe retry),
 * SH_ERR_TIMEOUT (deadline passed; the channel was closed),
 * SH_ERR_INTERRUPTED (*opts->interrupted became non-zero).
 */
#ifndef STAGEHAND_SSH_H
#define STAGEHAND_SSH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* One jump host; strings borrowed like ssh_opts'. */
struct ssh_jump {
	const char *user;          /* required */
	const char *host;          /* required */
	unsigned port;             /* 22 when 0 */
	const char *identity_file; /* both NULL: the ssh-agent */
	const char *identity_env;
	const char *host_key_pin; /* "SHA256:base64", or NULL: known_hosts */
};

struct ssh_opts {
	const char *user;          /* required */
	const char *host;          /* required */
	unsigned port;             /* 22 when 0 */
	const char *identity_file; /* or NULL */
	const char *identity_env;  /* env var holding key text, or NULL */
	const char *known_hosts;   /* NULL: ~/.ssh/known_hosts */
	const char *host_key_pin;  /* "SHA256:base64" or NULL */
	bool accept_new_host_key;
	unsigned connect_timeout_s;         /* 0: SSH_CONNECT_TIMEOUT_S */
	unsigned keepalive_s;               /* 0: SSH_KEEPALIVE_S */
	volatile sig_atomic_t *interrupted; /* may be NULL */
	/* Called with a line worth showing at -v (a known_hosts line that
	 * was skipped); may be NULL. Must not call ssh_*(). */
	void (*note)(void *arg, const char *msg);
	void *note_arg;
	const struct ssh_jump *jumps; /* in order, first reached first */
	size_t njumps;
};

struct ssh_conn; /* opaque */

/*
 * Parses "ssh://user@host:port", "user@host:port" or "user@host" (IPv6 in
 * brackets). *user and *host are newly allocated (caller frees).
 */
int ssh_target_parse(const char *s, char **user, char **host, unsigned *port,
    struct errbuf *err);

/* opts and the strings in it must outlive the connection. */
int ssh_connect(
    const struct ssh_opts *opts, struct ssh_conn **out, struct errbuf *err);
/* Bounded backoff (SSH_RECONNECT_TRIES); same host key required. */
int ssh_reconnect(struct ssh_conn *c, struct errbuf *err);
/*
 * Closes the session (if any) and makes one try at a new one, with no
 * delay; timeout_s (0: the connection's own) bounds the TCP connect and
 * each blocking phase of the handshake and authentication. Same host key
 * required. For callers that pace their own tries.
 */
int ssh_reconnect_once(
    struct ssh_conn *c, unsigned timeout_s, struct errbuf *err);
void ssh_close(struct ssh_conn *c);

const char *ssh_host_key_fingerprint(const struct ssh_conn *c); /* SHA256:.. */
const char *ssh_host_key_type(const struct ssh_conn *c); /* ssh-ed25519 */
bool ssh_host_key_accepted(const struct ssh_conn *c);    /* new key taken */
unsigned ssh_reconnect_count(const struct ssh_conn *c);

/* Hop i's host key on the first connection (i < opts->njumps); the
 * strings are owned by c. Returns -1 when i is out of range. */
struct ssh_jump_key {
	const char *fingerprint; /* "SHA256:.." */
	const char *type;        /* "ssh-ed25519" */
	bool accepted;           /* taken as new (accept_new_host_key) */
};
int ssh_jump_host_key(
    const struct ssh_conn *c, size_t i, struct ssh_jump_key *out);

/*
 * What to feed to a command's stdin and where its output goes. stdin is
 * stdin_data (if any), then everything read from stdin_fd until EOF (if
 * >= 0), then EOF. stdout goes to stdout_fd when >= 0, else into out.
 * out keeps the first max bytes of stdout. err keeps a tail of stderr:
 * once more than max arrived, the oldest bytes are dropped, at least half
 * a buffer at a time, so err holds the last max/2 bytes or more. What is
 * not kept is counted in ssh_exit.dropped. deadline_ms is compared with
 * now_ms(); 0 means none.
 *
 * on_stderr, when set, also gets every stderr chunk as it arrives (before
 * err drops anything), with on_stderr_arg; chunks do not follow line
 * boundaries. It runs in the middle of ssh_exec(), between libssh2 calls,
 * so it must not use the session (no ssh_* calls); it should be quick
 * (e.g. parse and redraw a progress line).
 */
struct ssh_io {
	const void *stdin_data;
	size_t stdin_len;
	int stdin_fd;
	int stdout_fd;
	struct buf *out; /* may be NULL: discard */
	struct buf *err; /* may be NULL: discard */
	uint64_t deadline_ms;
	void (*on_stderr)(void *arg, const char *p, size_t len); /* or NULL */
	void *on_stderr_arg;
	unsigned spares; /* spare copies of command to keep started; below */
	/* No EOF after the last stdin byte: the channel's stdin stays open
	 * until the command ends, so that the command can tell its channel
	 * closing (the controller or the connection gone) from its input
	 * ending (remote.c's watchdog). */
	bool keep_stdin_open;
	/* stdin_fd's bytes go as chunks "<n>\n<n bytes>" (n decimal), then
	 * "0\n" at its EOF, so the far end can find the end of a stream of
	 * unknown length without a channel EOF. */
	bool frame_stdin_fd;
	/* command is kept running between calls (below, "kept commands"):
	 * stdin_data is one request; stdin_fd must be -1. */
	bool kept;
};

struct ssh_exit {
	int status;       /* exit status, or -1 when killed by a signal */
	char signal[32];  /* e.g. "KILL"; empty if none */
	uint64_t dropped; /* output bytes beyond the buffers' max */
};

/*
 * Runs one command on its own channel. Returns 0 when it ran to the end
 * (whatever its exit status), -1 on transport errors.
 *
 * Spares (io->spares > 0) hide a command's start-up: its channel round
 * trips and, for `sudo -n ...`, sudo's own 6 ms. Once this command's stdin
 * is sent, and while it runs, ssh_exec() starts copies of command on new
 * channels until io->spares of them wait; a later ssh_exec() of the same
 * command line takes the oldest instead of opening a channel. So a spare
 * is allowed only for a command that does nothing at all before it reads
 * its stdin and exits at once when stdin is empty (remote.c's bootstrap);
 * started, it is still only one channel and one command per action. A
 * spare that wrote something or ended before it got its stdin (sudo
 * asking for a password, a process killed by an earlier step) is closed,
 * and the command gets a fresh channel and the real error. At most
 * SSH_SPARES_MAX wait at once, of all commands together (the oldest other
 * one makes room); when the server refuses a channel (sshd's MaxSessions)
 * the session keeps none from then on. Spares end with the session: sshd
 * closes their stdin, and they exit without running anything.
 */
int ssh_exec(struct ssh_conn *c, const char *command, struct ssh_io *io,
    struct ssh_exit *exit, struct errbuf *err);

/*
 * Kept commands (io->kept): a command that serves one request after
 * another on a channel of its own, kept open between calls: remote.c's
 * privileged session, one per become user, so that sudo runs once per
 * user and run. A call writes stdin_data to it (never EOF) and reads its
 * stdout as frames, each a header line and, for data, that many bytes:
 *
 *     o<n>\n<n bytes>   stdout of the request's work (to io's stdout)
 *     e<n>\n<n bytes>   its stderr (to io->err, on_stderr)
 *     x<status>\n       the end: exit status 0..255
 *     k<signal>\n       the end: killed by that signal (status -1)
 *
 * The channel's own stderr (sudo refusing, the loop's errors) goes to
 * io->err too. After the end frame the channel waits for the next call of
 * the same command line. The first call opens it (and so shows sudo's
 * refusal as an ordinary exit status); a kept channel that ended or wrote
 * between calls is closed and a new one opened. A call that fails (a
 * timeout, an interruption, the session lost, bytes that are not a frame:
 * SH_ERR_REMOTE) closes its channel, which ends the loop and, in
 * remote.c's loop, the work it runs. At most SSH_KEPT_MAX are kept,
 * the oldest closed first; a refused channel closes them as it does
 * spares, and they end with the session.
 *
 * ssh_exec_warm() starts command on a channel of its own and keeps it, as
 * if a call had just ended, unless one is kept already: the next kept
 * call of command takes it, and the command's start-up (sudo, perl) runs
 * meanwhile. A refused channel is no error (nothing is kept: the call
 * opens its own, which shows why); a broken session is.
 */
int ssh_exec_warm(struct ssh_conn *c, const char *command, struct errbuf *err);

/*
 * Tunnels: one channel whose bytes are relayed to and from a local fd (a
 * connected, non-blocking stream socket; pg.c hands it the server end of
 * the connection libpq made). Single-threaded: the caller drives its own
 * work (libpq) and ssh_tunnel_pump() in turns, from one thread.
 *
 *   ssh_tunnel_open_tcp()   a direct-tcpip channel to host:port as seen
 *                           from the target (e.g. 127.0.0.1:5432); no port
 *                           is opened anywhere. A refusal by the server
 *                           (nothing listening, forwarding disabled) is
 *                           SH_ERR_REMOTE with sshd's reason.
 *   ssh_tunnel_open_exec()  an exec channel running command, whose stdin
 *                           and stdout are the stream (a relay to a unix
 *                           socket on the target); its stderr is kept, the
 *                           first 4 KiB, for ssh_tunnel_stderr().
 *   ssh_tunnel_pump()       moves whatever is ready both ways without
 *                           blocking; when nothing was ready it waits up to
 *                           timeout_ms (0: not at all) for the session's
 *                           socket or fd, then moves again. EOF travels
 *                           both ways: fd's EOF becomes the channel's EOF,
 *                           the channel's EOF (once all its data reached
 *                           fd) becomes shutdown(fd, SHUT_WR) and
 *                           ssh_tunnel_eof(). A reader of fd that went
 *                           away (EPIPE) makes the rest be dropped. Sends
 *                           a keepalive when idle. Returns with no packet
 *                           half sent, so the session may run ssh_exec()
 *                           or other tunnels between pumps.
 *   ssh_tunnel_idle()       nothing buffered in either direction.
 *   ssh_tunnel_close()      closes the channel (bounded wait) and frees
 *                           the tunnel; does not close fd. NULL is a no-op.
 *
 * Flow control: at most 64 KiB is buffered each way; a slow fd reader
 * leaves data in the SSH window, a slow channel leaves it in fd.
 * A tunnel belongs to the session it was opened on: after ssh_reconnect()
 * (or a lost session) pump fails with SH_ERR_SSH and close only frees.
 * Opening: SH_ERR_SSH/SH_ERR_TIMEOUT/SH_ERR_INTERRUPTED (c's timeout and
 * interrupt flag) as for ssh_exec; giving up half way leaves the session
 * unusable (ssh_reconnect()).
 */
struct ssh_tunnel; /* opaque */

int ssh_tunnel_open_tcp(struct ssh_conn *c, const char *host, unsigned port,
    struct ssh_tunnel **out, struct errbuf *err);
int ssh_tunnel_open_exec(struct ssh_conn *c, const char *command,
    struct ssh_tunnel **out, struct errbuf *err);
int ssh_tunnel_pump(
    struct ssh_tunnel *t, int fd, int timeout_ms, struct errbuf *err);
bool ssh_tunnel_eof(const struct ssh_tunnel *t);
bool ssh_tunnel_idle(const struct ssh_tunnel *t);
/* The channel's stderr so far (exec tunnels); "" when none. Borrowed. */
const char *ssh_tunnel_stderr(const struct ssh_tunnel *t);
void ssh_tunnel_close(struct ssh_tunnel *t);

#endif
