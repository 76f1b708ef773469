/*
 * target/ctx.h: the run's context, and the session to the target it owns.
 *
 * struct run_ctx is the only mutable state of a run: main() creates it,
 * every module gets it passed explicitly. It owns the SSH session, opened
 * lazily on the first step that needs the target, so `plan --offline` and
 * manifests whose steps are all skipped never connect, and the facts
 * learned about the target. It sits below the steps and the runner so
 * that both (and the Postgres tunnel, and remote_run()) can reach the
 * target without depending on each other.
 *
 * Ownership: main() owns the struct; the session and the facts are owned
 * by it and let go by run_ctx_release(). Everything else is borrowed.
 */
#ifndef STAGEHAND_CTX_H
#define STAGEHAND_CTX_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/manifest.h"
#include "transport/ssh.h"
#include "util/redact.h"
#include "util/util.h"

struct ui;
struct run_ctx;

struct run_opts {
	bool plan;           /* probe only */
	struct strlist tags; /* run only these (plus `always`) */
	struct strlist skip_tags;
	const char *start_at; /* step name, or NULL */
	bool keep_going;      /* do not stop at the first failure */
	bool lock;            /* take the target lock (run, not plan) */
	int lock_wait_s;      /* when held: 0 fail, -1 wait, N seconds */
	/* Each step on its own channel with its own sudo (remote.h), not
	 * in the privileged session; --one-channel-per-step. */
	bool one_channel_per_step;
	/* The first connection: tried again while the host is unreachable,
	 * for this many seconds (--wait-for-host); 0: one try. */
	unsigned host_wait_s;
};

struct target_facts {
	char *hostname; /* owned; NULL until learned */
	char *system;   /* owned: "x86_64-linux" / "aarch64-linux" */
	char *boot_id;  /* owned */
};

/*
 * How the runner reaches the target when it is not over SSH: unit tests of
 * the runner hand one in (with kinds of their own that never call
 * run_ctx_ssh()), so retry, reconnect and interruption are tested without
 * a target. NULL, the default, is the real session below.
 */
struct run_link {
	int (*connect)(struct run_ctx *ctx, struct errbuf *err);
	int (*reconnect)(struct run_ctx *ctx, struct errbuf *err);
	void (*release)(struct run_ctx *ctx);
};

struct run_ctx {
	const struct run_opts *opts;     /* borrowed */
	const struct manifest *manifest; /* borrowed */
	struct ssh_opts ssh_opts;        /* strings borrowed from argv/env */
	bool have_target;                /* a target was given */
	struct ssh_conn *ssh;            /* owned; NULL until needed */
	const struct run_link *link;     /* borrowed; NULL: ssh */
	bool linked;                     /* link->connect succeeded */
	struct ui *ui;                   /* borrowed; opaque down here */
	/* ui_notice() (report/ui.h), set by main; may be NULL. A pointer, so
	 * that the lock can say it waits without this layer knowing the UI. */
	void (*notice)(struct ui *ui, const char *fmt, ...) ATTR_PRINTF(2, 3);
	const struct redact *redact; /* borrowed: cut text after it */
	struct target_facts facts;
	unsigned long lock_pid; /* the lock's holder; 0: none */
	/* The become user of the first step that will run on the target
	 * (borrowed; NULL: the login user), set by the runner: its session
	 * starts with the connection (remote_warm()). */
	const char *warm_become;
	volatile sig_atomic_t *interrupted; /* set by main's signal handler */
	int64_t started_at;                 /* unix time */
	uint64_t started_ms;
};

/*
 * Returns the session, connecting (and learning the facts: hostname,
 * system, boot_id, in one round trip) on first use. With opts->lock, the
 * first connect (and run_ctx_relock() after a reconnect) also takes the
 * target lock: /run/lock/stagehand.lock (or /tmp's when /run/lock is not
 * writable), flock(1)ed by a process on the target that lives as long as
 * the session's sshd, and names its holder (controller host, pid, stage,
 * start). Held by another run: SH_ERR_LOCKED (exit 75) naming the holder,
 * or, with lock_wait_s, a wait (ctx->notice says for whom). The holder of
 * a session that is gone (a killed controller) lets go within a second; a
 * run that reconnects ends its own old holder. run_ctx_release() lets go.
 */
int run_ctx_ssh(struct run_ctx *ctx, struct ssh_conn **out, struct errbuf *err);
/* Connects (run_ctx_ssh(), or ctx->link) unless connected already. */
int run_ctx_connect(struct run_ctx *ctx, struct errbuf *err);
/* Whether a session is up (or was, and dropped: it can be reconnected). */
bool run_ctx_connected(const struct run_ctx *ctx);
/* After a dropped session: a new one (ssh_reconnect()), locked again. */
int run_ctx_reconnect(struct run_ctx *ctx, struct errbuf *err);
/*
 * After the target went away on purpose (a reboot): tries a new session,
 * 1 s, then 2, 3 and every 5 s, each try bounded by what is left, until
 * one is up on a boot other than old_boot_id (NULL: any) or deadline_ms
 * (now_ms()) passes. A session that reaches old_boot_id (the host has not
 * gone down yet) does not count. Success: ctx->facts are those of the new
 * boot and the lock is taken again. Errors: SH_ERR_UNREACHABLE "HOST did
 * not come back within N s: <last try's error>", the session down (as
 * after a dropped one: run_ctx_reconnect()); SH_ERR_TIMEOUT when the host
 * was still on old_boot_id at the deadline, that session up and locked
 * again; SH_ERR_INTERRUPTED within half a second of *ctx->interrupted;
 * SH_ERR_TRUST and SH_ERR_LOCKED at once.
 */
int run_ctx_reconnect_until(struct run_ctx *ctx, uint64_t deadline_ms,
    const char *old_boot_id, struct errbuf *err);
/* Takes the target lock again on a new session (after ssh_reconnect()). */
int run_ctx_relock(struct run_ctx *ctx, struct errbuf *err);
/* Lets go of the lock, closes the session, frees the facts. */
void run_ctx_release(struct run_ctx *ctx);

#endif
