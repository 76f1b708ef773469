/*
 * fuzz_narinfo.c: libFuzzer harness for the narinfo parser and verifier.
 *
 * Feeds arbitrary bytes to nix_narinfo_parse(); when they parse, checks
 * the invariants the closure walk relies on (StorePath is a valid store
 * path, every reference is "<hash>-<name>", NarSize > 0), computes the
 * fingerprint and runs nix_narinfo_verify() under the test caches' key 1
 * (so the seed corpus, real narinfos signed by it, reaches the success
 * path and mutations of it the failure paths). A crash, leak, sanitizer
 * report, an error without a message, or a verify result that disagrees
 * with its out-param is a bug. The first line of the input is also tried
 * as a trusted key spec and as base32, so those parsers are fuzzed too.
 *
 * Build: tests/fuzz/build.sh (or `make fuzz`); run:
 *   tests/fuzz/build.sh run 60 narinfo
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nix/narinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* tests/fixtures/narinfo/key1.pub */
#define FUZZ_KEY "stagehand-test-1:NsOnJYE6YCeV5m/ND6LsDvoVKVkJ04w73rLy6e+QQ6o="

static void
check_parsed(const struct narinfo *ni, const struct nix_keys *keys)
{
	struct errbuf err;
	struct buf fp;
	const char *hash, *signer = "x";

	if (nix_store_path_check(ni->store_path, &hash, &err) < 0 ||
	    ni->nar_size == 0 || ni->url == NULL || ni->compression == NULL)
		abort();
	for (size_t i = 0; i < ni->references.n; i++) {
		char *p = xasprintf(NIX_STORE_DIR "/%s", ni->references.v[i]);

		if (nix_store_path_check(p, &hash, &err) < 0)
			abort();
		free(p);
	}
	buf_init(&fp, 1u << 20);
	if (nix_fingerprint(ni, &fp, &err) < 0 || fp.len == 0)
		abort();
	buf_release(&fp);
	if (nix_narinfo_verify(ni, keys, &signer, &err) == 0) {
		if (signer == NULL || strcmp(signer, "stagehand-test-1") != 0)
			abort();
	} else if (signer != NULL || err.msg[0] == '\0') {
		abort();
	}
}

static void
side_parsers(const uint8_t *data, size_t size)
{
	size_t n = 0;
	char *line;
	struct nix_keys keys = { NULL, 0 };
	struct errbuf err;
	unsigned char out[32];
	struct buf b;

	while (n < size && data[n] != '\n' && n < 512)
		n++;
	line = xstrndup((const char *)data, n);
	(void)nix_keys_add(&keys, line, &err);
	nix_keys_free(&keys);
	if (nix_base32_decode(line, strlen(line), out, sizeof(out)) == 0) {
		buf_init(&b, 128);
		if (nix_base32_encode(out, sizeof(out), &b) < 0 ||
		    strcmp(b.data, line) != 0)
			abort(); /* decode then encode must round-trip */
		buf_release(&b);
	}
	free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nix_keys keys;
	struct narinfo ni;
	struct errbuf err;

	if (keys.n == 0 && nix_keys_add(&keys, FUZZ_KEY, &err) < 0)
		abort();
	side_parsers(data, size);
	if (nix_narinfo_parse((const char *)data, size, &ni, &err) == 0) {
		check_parsed(&ni, &keys);
		nix_narinfo_free(&ni);
	} else if (ni.store_path != NULL || ni.references.n != 0 ||
	           err.msg[0] == '\0') {
		abort(); /* fail closed, with a reason */
	}
	return 0;
}
