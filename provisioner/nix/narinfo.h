/*
 * narinfo.h: Nix binary-cache metadata, parsed strictly and verified.
 *
 * Pure functions, no I/O: the parser and the verifier are what decide
 * whether a store path is trusted, so they are small, fuzzable and tested
 * against narinfos and signatures made by the real `nix` here.
 *
 * nix_narinfo_parse(): "Key: value" lines (StorePath, URL, Compression,
 * FileHash, FileSize, NarHash, NarSize, References, Deriver, Sig (may
 * repeat), CA, System). Unknown keys, duplicate keys (except Sig), missing
 * required keys (StorePath, URL, NarHash, NarSize), bad numbers, NarSize 0,
 * malformed hashes or store paths, embedded NULs and input over max bytes
 * are errors naming the field and the reason. Clears *out first; on error
 * nothing is left to free.
 *
 * nix_fingerprint(): "1;<StorePath>;<NarHash>;<NarSize>;<refs>" where refs
 * are the References as full /nix/store paths joined by ',' and NarHash is
 * in "sha256:<nix32>" form (a base16 or SRI NarHash is converted first).
 * References are sorted first, as Nix holds them in a set. out must be
 * initialised (buf_init); it is reset, then filled.
 *
 * nix_narinfo_verify(): 0 when at least one Sig line carries a 64-byte
 * Ed25519 signature that crypto_sign_verify_detached() accepts over the
 * fingerprint, under a trusted key of the same name; *signer (borrowed from
 * keys) names it. Otherwise -1 with SH_ERR_TRUST and the reason: no Sig,
 * no trusted key of any Sig's name ("signed by unknown key 'x'"), or a
 * signature that does not verify ("bad signature by 'x'").
 *
 * Keys are "name:base64(32-byte public key)" as in nix.conf's
 * trusted-public-keys; anything after the base64 padding (the production
 * '%' quirk) is rejected, not ignored. nix_keys_add() appends; a bad spec
 * is SH_ERR_USAGE (callers validating a manifest may recode it).
 */
#ifndef STAGEHAND_NARINFO_H
#define STAGEHAND_NARINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define NIX_STORE_DIR "/nix/store"
#define NIX_HASH_LEN 32 /* base32 chars of a store path hash */
#define NIX_KEY_NAME_MAX 128
#define NARINFO_MAX_BYTES (64u << 10)
#define NARINFO_MAX_REFERENCES 10000
#define NARINFO_MAX_SIGS 32

struct narinfo {
	char *store_path;   /* owned: /nix/store/<hash>-<name> */
	char *url;          /* owned */
	char *compression;  /* owned; "bzip2" when absent */
	char *file_hash;    /* owned; may be NULL */
	uint64_t file_size; /* 0 when absent */
	char *nar_hash;     /* owned: as written */
	uint64_t nar_size;
	struct strlist references; /* basenames, as written */
	char *deriver;             /* owned; may be NULL */
	struct strlist sigs;       /* "keyname:base64" */
	char *ca;                  /* owned; may be NULL */
	char *system;              /* owned; may be NULL */
};

struct nix_key {
	char name[NIX_KEY_NAME_MAX];
	unsigned char pk[32];
};

struct nix_keys {
	struct nix_key *v; /* owned */
	size_t n;
};

int nix_narinfo_parse(
    const char *p, size_t len, struct narinfo *out, struct errbuf *err);
void nix_narinfo_free(struct narinfo *ni);

int nix_fingerprint(
    const struct narinfo *ni, struct buf *out, struct errbuf *err);
int nix_narinfo_verify(const struct narinfo *ni, const struct nix_keys *keys,
    const char **signer, struct errbuf *err);

int nix_keys_add(struct nix_keys *keys, const char *spec, struct errbuf *err);
void nix_keys_free(struct nix_keys *keys);

/* Nix's base32 (alphabet 0123456789abcdfghijklmnpqrsvwxyz, reversed). */
int nix_base32_encode(const unsigned char *p, size_t len, struct buf *out);
int nix_base32_decode(
    const char *s, size_t len, unsigned char *out, size_t outlen);
/* "sha256:<nix32>" for a raw 32-byte digest. */
int nix_hash_sha256_string(const unsigned char digest[32], struct buf *out);
/*
 * A sha256 hash as Nix writes it: "sha256:" + nix32 (52), base16 (64) or
 * SRI "sha256-" + base64 (44). Returns 0 with the digest, or -1.
 */
int nix_hash_sha256_parse(const char *s, unsigned char digest[32]);

/*
 * Checks "/nix/store/<32 base32 chars>-<name>" (name: [A-Za-z0-9+._?=-],
 * not starting with '.', at most 211 chars). *hash points into path.
 */
int nix_store_path_check(
    const char *path, const char **hash, struct errbuf *err);

#endif
