/*
 * sshdrive: a test driver for the transport and remote_run(), used by
 * tests/t02*-ssh-*.sh against the test box. It links transport/, util/ and
 * target/remote.c, and supplies its own run_ctx_ssh() (no facts, no lock)
 * in place of target/ctx.c's.
 *
 *   sshdrive [options] TARGET COMMAND
 *     -i FILE   identity file            -e VAR   identity in env var VAR
 *     -k FILE   known_hosts file         -p FP    pinned host key
 *     -a        accept a new host key    -c SECS  connect timeout
 *     -I FILE   stdin from FILE          -d TEXT  stdin data before that
 *     -O FILE   stdout to FILE           -T MS    deadline, ms from start
 *     -m BYTES  keep at most BYTES of stdout/stderr
 *     -r        remote mode: COMMAND is a script run with remote_run()
 *               (-d is the payload, -I the payload fd)
 *     -b USER   become (remote mode)     -s SECS  remote timeout
 *     -2 CMD    then run CMD; after SH_ERR_SSH, first ssh_reconnect()
 *     -n N      run COMMAND N times and print round-trip times (ms)
 *
 * Captured stdout goes to stdout, captured stderr to stderr; then one line
 * "sshdrive: status=N signal=S dropped=N" on stderr. Failures print
 * "sshdrive: error CODE: message" and exit with sh_exit_code(code), or 3
 * for codes that share exit 1. Meta lines: "sshdrive: fp=.. type=..
 * accepted=0|1" after connecting, "sshdrive: reconnects=N".
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drive.h"
#include "target/ctx.h"
#include "target/remote.h"
#include "transport/ssh.h"
#include "util/limits.h"

struct drive {
	struct ssh_opts o;
	const char *in_file, *data, *out_file, *become, *second;
	uint64_t deadline_ms, max, runs, timeout_s;
	bool remote;
	char *user, *host;
};

static volatile sig_atomic_t got_signal;

static void
on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
}

int
run_ctx_ssh(struct run_ctx *ctx, struct ssh_conn **out, struct errbuf *err)
{
	*out = NULL;
	if (ctx->ssh == NULL && ssh_connect(&ctx->ssh_opts, &ctx->ssh, err) < 0)
		return -1;
	*out = ctx->ssh;
	return 0;
}

static int
fail(const struct errbuf *err)
{
	int code = sh_exit_code(err->code);

	fprintf(stderr, "sshdrive: error %s: %s\n", drive_code_name(err->code),
	    err->msg);
	return code == EXIT_STEP_FAILED ? 3 : code;
}

static uint64_t
num(const char *s)
{
	uint64_t v;

	if (parse_u64(s, strlen(s), UINT64_MAX, &v) < 0) {
		fprintf(stderr, "sshdrive: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

static void
emit(const struct buf *out, const struct buf *errb, int status, const char *sig,
    uint64_t dropped)
{
	fwrite(out->data, 1, out->len, stdout);
	fflush(stdout);
	fwrite(errb->data, 1, errb->len, stderr);
	fprintf(stderr, "sshdrive: status=%d signal=%s dropped=%llu\n", status,
	    sig, (unsigned long long)dropped);
}

static int
open_or_die(const char *path, int flags)
{
	int fd;

	if (path == NULL)
		return -1;
	fd = open(path, flags | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	return fd;
}

/* One command over ssh_exec(). */
static int
run_exec(
    struct drive *d, struct ssh_conn *c, const char *cmd, struct errbuf *err)
{
	struct buf out, errb;
	struct ssh_exit ex;
	struct ssh_io io;
	int rc;

	buf_init(&out, d->max);
	buf_init(&errb, d->max);
	memset(&io, 0, sizeof(io));
	io.stdin_data = d->data;
	io.stdin_len = d->data ? strlen(d->data) : 0;
	io.stdin_fd = open_or_die(d->in_file, O_RDONLY);
	io.stdout_fd = open_or_die(d->out_file, O_WRONLY | O_CREAT | O_TRUNC);
	io.out = &out;
	io.err = &errb;
	io.deadline_ms = d->deadline_ms ? now_ms() + d->deadline_ms : 0;
	rc = ssh_exec(c, cmd, &io, &ex, err);
	if (rc == 0)
		emit(&out, &errb, ex.status, ex.signal, ex.dropped);
	if (io.stdin_fd >= 0)
		close(io.stdin_fd);
	if (io.stdout_fd >= 0)
		close(io.stdout_fd);
	buf_release(&out);
	buf_release(&errb);
	return rc;
}

/* One script over remote_run(). */
static int
run_remote(struct drive *d, struct run_ctx *ctx, const char *script,
    struct errbuf *err)
{
	struct remote_cmd cmd = REMOTE_CMD_INIT;
	struct remote_out out;
	int rc;

	cmd.script = script;
	cmd.become = d->become;
	cmd.timeout_s = (unsigned)d->timeout_s;
	cmd.payload = d->data;
	cmd.payload_len = d->data ? strlen(d->data) : 0;
	cmd.payload_fd = open_or_die(d->in_file, O_RDONLY);
	cmd.stdout_fd = open_or_die(d->out_file, O_WRONLY | O_CREAT | O_TRUNC);
	rc = remote_run(ctx, &cmd, &out, err);
	if (rc == 0)
		emit(&out.out, &out.err, out.status, "", 0);
	remote_out_free(&out);
	if (cmd.payload_fd >= 0)
		close(cmd.payload_fd);
	if (cmd.stdout_fd >= 0)
		close(cmd.stdout_fd);
	return rc;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double
ms(uint64_t us)
{
	return (double)us / 1000.0;
}

static int
bench(struct drive *d, struct ssh_conn *c, const char *cmd, struct errbuf *err)
{
	uint64_t *us = xcalloc(d->runs, sizeof(*us)), sum = 0;
	struct timespec a, b;

	for (uint64_t i = 0; i < d->runs; i++) {
		struct ssh_exit ex;

		clock_gettime(CLOCK_MONOTONIC, &a);
		if (ssh_exec(c, cmd, NULL, &ex, err) < 0) {
			free(us);
			return -1;
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		us[i] = (uint64_t)((b.tv_sec - a.tv_sec) * 1000000 +
		                   (b.tv_nsec - a.tv_nsec) / 1000);
		sum += us[i];
	}
	qsort(us, d->runs, sizeof(*us), cmp_u64);
	printf("runs=%llu min_ms=%.2f median_ms=%.2f mean_ms=%.2f "
	       "p90_ms=%.2f max_ms=%.2f\n",
	    (unsigned long long)d->runs, ms(us[0]), ms(us[d->runs / 2]),
	    ms(sum) / (double)d->runs, ms(us[d->runs * 9 / 10]),
	    ms(us[d->runs - 1]));
	free(us);
	return 0;
}

static void
parse_args(struct drive *d, int argc, char **argv)
{
	int ch;

	while (
	    (ch = getopt(argc, argv, "i:e:k:p:ac:I:d:O:T:m:rb:s:2:n:")) != -1) {
		switch (ch) {
		case 'i':
			d->o.identity_file = optarg;
			break;
		case 'e':
			d->o.identity_env = optarg;
			break;
		case 'k':
			d->o.known_hosts = optarg;
			break;
		case 'p':
			d->o.host_key_pin = optarg;
			break;
		case 'a':
			d->o.accept_new_host_key = true;
			break;
		case 'c':
			d->o.connect_timeout_s = (unsigned)num(optarg);
			break;
		case 'I':
			d->in_file = optarg;
			break;
		case 'd':
			d->data = optarg;
			break;
		case 'O':
			d->out_file = optarg;
			break;
		case 'T':
			d->deadline_ms = num(optarg);
			break;
		case 'm':
			d->max = num(optarg);
			break;
		case 'r':
			d->remote = true;
			break;
		case 'b':
			d->become = optarg;
			break;
		case 's':
			d->timeout_s = num(optarg);
			break;
		case '2':
			d->second = optarg;
			break;
		case 'n':
			d->runs = num(optarg);
			break;
		default:
			exit(2);
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: sshdrive [options] TARGET COMMAND\n");
		exit(2);
	}
}

static int
run_one(
    struct drive *d, struct run_ctx *ctx, const char *cmd, struct errbuf *err)
{
	if (d->remote)
		return run_remote(d, ctx, cmd, err);
	if (d->runs > 0)
		return bench(d, ctx->ssh, cmd, err);
	return run_exec(d, ctx->ssh, cmd, err);
}

int
main(int argc, char **argv)
{
	struct drive d;
	struct run_ctx ctx;
	struct errbuf err;
	int rc;

	memset(&d, 0, sizeof(d));
	memset(&ctx, 0, sizeof(ctx));
	err_clear(&err);
	d.max = REMOTE_OUTPUT_MAX;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	parse_args(&d, argc, argv);
	if (ssh_target_parse(argv[optind], &d.user, &d.host, &d.o.port, &err) <
	    0)
		return fail(&err);
	d.o.user = d.user;
	d.o.host = d.host;
	d.o.interrupted = &got_signal;
	ctx.ssh_opts = d.o;
	ctx.interrupted = &got_signal;
	if (run_ctx_ssh(&ctx, &ctx.ssh, &err) < 0) {
		rc = fail(&err);
		goto out;
	}
	fprintf(stderr, "sshdrive: fp=%s type=%s accepted=%d\n",
	    ssh_host_key_fingerprint(ctx.ssh), ssh_host_key_type(ctx.ssh),
	    ssh_host_key_accepted(ctx.ssh));
	rc = run_one(&d, &ctx, argv[optind + 1], &err);
	if (rc < 0 && d.second == NULL) {
		rc = fail(&err);
		goto out;
	}
	if (rc < 0) {
		(void)fail(&err);
		if (err.code == SH_ERR_SSH &&
		    ssh_reconnect(ctx.ssh, &err) < 0) {
			rc = fail(&err);
			goto out;
		}
	}
	fprintf(
	    stderr, "sshdrive: reconnects=%u\n", ssh_reconnect_count(ctx.ssh));
	rc = d.second == NULL                        ? 0
	     : run_one(&d, &ctx, d.second, &err) < 0 ? fail(&err)
	                                             : 0;
out:
	ssh_close(ctx.ssh);
	free(d.user);
	free(d.host);
	return rc;
}
