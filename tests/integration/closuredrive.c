/*
 * closuredrive: a test driver for narinfo.c and nixcache.c, used by
 * tests/t07*-closure-*.sh and bench/ while (and besides) `stagehand
 * closure` exists. It links narinfo.o, nixcache.o, json.o and util.o.
 *
 *   closuredrive STOREPATH --from URL... --trusted-key NAME:KEY...
 *                [--json] [--timeout S] [--retries N] [--parallel N]
 *                [--quiet]
 *   closuredrive --info URL [--timeout S] [--retries N]
 *
 * Options repeat (--from in order). Output follows the `stagehand closure`
 * contract: a human summary (path count, NarSize/FileSize totals, each
 * path with its signer and substituter) or, with --json, one object
 * {root, paths:[{path, nar_size, file_size, nar_hash, references,
 * substituter, signer}], nar_size, file_size}. --quiet prints only
 * "paths=N nar_size=N file_size=N". Failures print "closuredrive: error
 * CODE: message" on stderr and exit with sh_exit_code(code): 77 trust,
 * 69 unreachable, 1 missing, 2 usage, 130 interrupted.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drive.h"
#include "nix/nixcache.h"
#include "util/json.h"

struct drive {
	struct strlist from;
	struct nix_keys keys;
	struct nix_cache_opts o;
	const char *root, *info;
	bool json, quiet;
};

static volatile sig_atomic_t got_signal;

static void
on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
}

static int
fail(const struct errbuf *err)
{
	fprintf(stderr, "closuredrive: error %s: %s\n",
	    drive_code_name(err->code), err->msg);
	return err->code == SH_ERR_INTERRUPTED ? 130 : sh_exit_code(err->code);
}

static int
number(const char *s, unsigned *out, struct errbuf *err)
{
	uint64_t v;

	if (parse_u64(s, strlen(s), 100000, &v) < 0)
		return err_set(err, SH_ERR_USAGE, "bad number '%s'", s);
	*out = (unsigned)v;
	return 0;
}

static int
parse_args(int argc, char **argv, struct drive *d, struct errbuf *err)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "trusted-key", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "timeout", required_argument, NULL, 't' },
		{ "retries", required_argument, NULL, 'r' },
		{ "parallel", required_argument, NULL, 'p' },
		{ "info", required_argument, NULL, 'I' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int rc = 0;

		switch (c) {
		case 'f':
			strlist_push(&d->from, optarg);
			break;
		case 'k':
			rc = nix_keys_add(&d->keys, optarg, err);
			break;
		case 'j':
			d->json = true;
			break;
		case 'q':
			d->quiet = true;
			break;
		case 't':
			rc = number(optarg, &d->o.timeout_s, err);
			break;
		case 'r':
			rc = number(optarg, &d->o.retries, err);
			break;
		case 'p':
			rc = number(optarg, &d->o.parallel, err);
			break;
		case 'I':
			d->info = optarg;
			break;
		default:
			return err_set(err, SH_ERR_USAGE, "bad option");
		}
		if (rc < 0)
			return -1;
	}
	if (d->info == NULL && optind + 1 != argc)
		return err_set(err, SH_ERR_USAGE, "one store path, please");
	d->root = d->info ? NULL : argv[optind];
	return 0;
}

static void
print_json(const struct closure *c)
{
	struct buf b;
	struct json j;

	buf_init(&b, 1u << 30);
	json_init(&j, &b, true);
	json_object_begin(&j);
	json_key(&j, "root");
	json_string(&j, c->root);
	json_key(&j, "paths");
	json_array_begin(&j);
	for (size_t i = 0; i < c->n; i++) {
		const struct closure_path *p = &c->paths[i];

		json_object_begin(&j);
		json_key(&j, "path");
		json_string(&j, p->info.store_path);
		json_key(&j, "nar_size");
		json_uint(&j, p->info.nar_size);
		json_key(&j, "file_size");
		json_uint(&j, p->info.file_size);
		json_key(&j, "nar_hash");
		json_string(&j, p->info.nar_hash);
		json_key(&j, "references");
		json_array_begin(&j);
		for (size_t k = 0; k < p->info.references.n; k++)
			json_string(&j, p->info.references.v[k]);
		json_array_end(&j);
		json_key(&j, "substituter");
		json_string(&j, p->substituter);
		json_key(&j, "signer");
		json_string(&j, p->signer);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_key(&j, "nar_size");
	json_uint(&j, c->nar_size);
	json_key(&j, "file_size");
	json_uint(&j, c->file_size);
	json_object_end(&j);
	if (json_finish(&j) == 0)
		fwrite(b.data, 1, b.len, stdout);
	buf_release(&b);
}

static void
print_human(const struct closure *c)
{
	printf("%s: %zu paths, NarSize %llu bytes, FileSize %llu bytes, "
	       "all signed by trusted keys\n",
	    c->root, c->n, (unsigned long long)c->nar_size,
	    (unsigned long long)c->file_size);
	for (size_t i = 0; i < c->n; i++)
		printf("  %s  %llu  signed by %s  from %s\n",
		    c->paths[i].info.store_path,
		    (unsigned long long)c->paths[i].info.nar_size,
		    c->paths[i].signer, c->paths[i].substituter);
}

static int
run(struct drive *d, struct errbuf *err)
{
	struct closure c;

	d->o.substituters = (const char *const *)d->from.v;
	d->o.nsubstituters = d->from.n;
	d->o.keys = &d->keys;
	d->o.interrupted = &got_signal;
	if (d->info != NULL) {
		if (nix_cache_info(&d->o, d->info, err) < 0)
			return fail(err);
		printf("%s: a binary cache for " NIX_STORE_DIR "\n", d->info);
		return 0;
	}
	if (nix_closure_resolve(&d->o, d->root, &c, err) < 0)
		return fail(err);
	if (d->json)
		print_json(&c);
	else if (d->quiet)
		printf("paths=%zu nar_size=%llu file_size=%llu\n", c.n,
		    (unsigned long long)c.nar_size,
		    (unsigned long long)c.file_size);
	else
		print_human(&c);
	nix_closure_free(&c);
	return 0;
}

int
main(int argc, char **argv)
{
	struct drive d;
	struct errbuf err = { SH_OK, "" };
	int rc;

	memset(&d, 0, sizeof(d));
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (parse_args(argc, argv, &d, &err) < 0)
		rc = fail(&err);
	else
		rc = run(&d, &err);
	strlist_free(&d.from);
	nix_keys_free(&d.keys);
	return rc;
}
