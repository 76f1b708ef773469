/*
 * closure_cmd.c: `stagehand closure PATH --from URL... --trusted-key K...`
 *
 * Resolves and verifies a closure on this machine, exactly as a closure
 * step does before it touches a target, and prints what it found: a human
 * summary (every path with -v), one JSON object with --json, or with
 * --registration the closure's registration in the format nix-store
 * --load-db reads (nix_closure_reginfo(): what a push to a target without
 * Nix records under /nix/var/stagehand/paths/, so a Nix installed later
 * can adopt the paths). With --mode push it first also does what a
 * push-mode step does before anything reaches a target: it fetches every
 * path's NAR (several at once), decompresses it and checks it against the
 * signed NarSize and NarHash, and discards it. Exit 0 when every path
 * (and NAR) is trusted, 77 on any trust failure, 69 when the caches are
 * down, 1 when a path (or NAR) is in no cache, 2 for usage. Errors go
 * back in the errbuf; main prints them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "nix/narstream.h"
#include "nix/nixcache.h"
#include "util/json.h"

static void
print_size(uint64_t bytes)
{
	struct buf b;

	buf_init(&b, 64);
	buf_add_size(&b, bytes);
	fputs(b.data, stdout);
	buf_release(&b);
}

static void
print_human(const struct closure *c, const struct nix_keys *keys, int verbosity)
{
	printf("closure %s: %zu paths, NarSize ", c->root, c->n);
	print_size(c->nar_size);
	printf(", FileSize ");
	print_size(c->file_size);
	printf("\n");
	for (size_t k = 0; k < keys->n; k++) {
		size_t n = 0;

		for (size_t i = 0; i < c->n; i++)
			n += strcmp(c->paths[i].signer, keys->v[k].name) == 0;
		if (n > 0)
			printf(
			    "  signed by %s: %zu paths\n", keys->v[k].name, n);
	}
	if (verbosity <= 0)
		return;
	for (size_t i = 0; i < c->n; i++) {
		printf("  %s  ", c->paths[i].info.store_path);
		print_size(c->paths[i].info.nar_size);
		printf(
		    "  %s  %s\n", c->paths[i].signer, c->paths[i].substituter);
	}
}

static void
json_path(struct json *j, const struct closure_path *p)
{
	json_object_begin(j);
	json_member_string(j, "path", p->info.store_path);
	json_member_string(j, "nar_hash", p->info.nar_hash);
	json_member_uint(j, "nar_size", p->info.nar_size);
	json_member_uint(j, "file_size", p->info.file_size);
	json_key(j, "references");
	json_array_begin(j);
	for (size_t i = 0; i < p->info.references.n; i++)
		json_string(j, p->info.references.v[i]);
	json_array_end(j);
	json_member_string(j, "substituter", p->substituter);
	json_member_string(j, "signer", p->signer);
	json_object_end(j);
}

/* The NARs of every path, checked and discarded; n counts them. */
static int
end_one(void *arg, size_t i, struct errbuf *err)
{
	(void)i;
	(void)err;
	(*(size_t *)arg)++;
	return 0;
}

static int
check_nars(const struct closure *c, unsigned timeout_s,
    volatile sig_atomic_t *interrupted, size_t *n, struct errbuf *err)
{
	static const struct nar_order_ops ops = { .end = end_one };
	struct nar_fetch_opts o = {
		.timeout_s = timeout_s,
		.interrupted = interrupted,
	};
	struct nar_job *jobs = xcalloc(c->n ? c->n : 1, sizeof(*jobs));
	int rc;

	for (size_t i = 0; i < c->n; i++) {
		jobs[i].ni = &c->paths[i].info;
		jobs[i].cache = c->paths[i].substituter;
	}
	*n = 0;
	rc = nar_fetch_ordered(jobs, c->n, &o, &ops, n, err);
	free(jobs);
	if (rc < 0)
		err_prefix(err, "closure %s: push: ", c->root);
	return rc;
}

static int
print_json(const struct closure *c, bool push, size_t nars)
{
	struct buf out;
	struct json j;
	int rc;

	buf_init(&out, 256u << 20);
	json_init(&j, &out, false);
	json_object_begin(&j);
	json_key(&j, "root");
	json_string(&j, c->root);
	json_key(&j, "nar_size");
	json_uint(&j, c->nar_size);
	json_key(&j, "file_size");
	json_uint(&j, c->file_size);
	json_member_string(&j, "mode", push ? "push" : "pull");
	if (push)
		json_member_uint(&j, "nars_checked", nars);
	json_key(&j, "paths");
	json_array_begin(&j);
	for (size_t i = 0; i < c->n; i++)
		json_path(&j, &c->paths[i]);
	json_array_end(&j);
	json_object_end(&j);
	rc = json_finish(&j);
	if (rc == 0)
		printf("%s\n", out.data);
	buf_release(&out);
	return rc;
}

static int
print_registration(const struct closure *c)
{
	struct buf out;
	int rc;

	buf_init(&out, 256u << 20);
	rc = nix_closure_reginfo(c, NULL, &out);
	if (rc == 0 && fwrite(out.data, 1, out.len, stdout) != out.len)
		rc = -1;
	buf_release(&out);
	return rc;
}

int
cmd_closure(const struct cli *cli, volatile sig_atomic_t *interrupted,
    struct errbuf *err)
{
	struct nix_keys keys = { 0 };
	struct closure c;
	struct nix_cache_opts opts = {
		.substituters = (const char *const *)cli->from.v,
		.nsubstituters = cli->from.n,
		.keys = &keys,
		.timeout_s = cli->timeout_s,
		.retries = 3,
		.interrupted = interrupted,
	};
	size_t nars = 0;
	int rc = EXIT_OK;

	for (size_t i = 0; i < cli->trusted_keys.n; i++) {
		if (nix_keys_add(&keys, cli->trusted_keys.v[i], err) < 0) {
			err_prefix(err, "--trusted-key: ");
			err->code = SH_ERR_USAGE;
			nix_keys_free(&keys);
			return EXIT_USAGE;
		}
	}
	if (nix_closure_resolve(&opts, cli->args.v[0], &c, err) < 0) {
		nix_keys_free(&keys);
		return sh_exit_code(err->code);
	}
	if (cli->push &&
	    check_nars(&c, cli->timeout_s, interrupted, &nars, err) < 0) {
		rc = sh_exit_code(err->code);
		goto out;
	}
	if (cli->registration) {
		if (print_registration(&c) < 0) {
			err_set(err, SH_ERR_INTERNAL,
			    "closure %s: the registration is too large",
			    c.root);
			rc = EXIT_SOFTWARE;
		}
	} else if (!cli->json) {
		print_human(&c, &keys, cli->verbosity);
		if (cli->push) {
			printf(
			    "  NARs fetched and checked: %zu, NarSize ", nars);
			print_size(c.nar_size);
			printf("\n");
		}
	} else if (print_json(&c, cli->push, nars) < 0) {
		err_set(err, SH_ERR_INTERNAL,
		    "closure %s: the JSON is too large", c.root);
		rc = EXIT_SOFTWARE;
	}
out:
	nix_closure_free(&c);
	nix_keys_free(&keys);
	return rc;
}
