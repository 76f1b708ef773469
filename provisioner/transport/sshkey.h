/*
 * sshkey.h: pure helpers of the ssh module that need no network, kept apart
 * so unit tests can reach them. Used only by trust.c (and test_ssh.c).
 *
 *  - sshkey_check(): looks at a private key's text (OpenSSH or PEM) and
 *    refuses what the session could not use: RSA and DSA keys (libssh2 1.10
 *    signs only with ssh-rsa/ssh-dss, which OpenSSH 8.8+ rejects), keys
 *    protected by a passphrase (not supported) and text that is no private
 *    key at all. Errors are SH_ERR_USAGE and name `origin` (a file name or
 *    "environment variable X"). The key text is only read, never copied.
 *  - sshkey_fingerprint(): "SHA256:" + unpadded base64 of a 32-byte digest,
 *    as OpenSSH prints it.
 *  - sshkey_blob_kind(): the kind of an SSH wire-format public key blob
 *    (as ssh-agent lists them).
 *
 * All return 0 or -1 (and fill err); buffers are the caller's.
 */
#ifndef STAGEHAND_SSHKEY_H
#define STAGEHAND_SSHKEY_H

#include <stddef.h>

#include "util/util.h"

enum sshkey_kind {
	SSHKEY_UNKNOWN = 0,
	SSHKEY_ED25519,
	SSHKEY_ECDSA,
	SSHKEY_RSA,
	SSHKEY_DSA,
	SSHKEY_OTHER, /* e.g. security-key types */
};

struct sshkey_info {
	enum sshkey_kind kind;
	int encrypted; /* protected by a passphrase */
	char type[64]; /* "ssh-ed25519", "RSA (PEM)", ...; "" if unknown */
};

/* Classifies key text of len bytes. Returns -1 when it is no key. */
int sshkey_inspect(const char *text, size_t len, struct sshkey_info *out);
/* sshkey_inspect() plus the refusals described above. */
int sshkey_check(
    const char *text, size_t len, const char *origin, struct errbuf *err);
/* Appends "SHA256:<base64 without padding>" of digest (32 bytes) to out. */
int sshkey_fingerprint(
    const unsigned char *digest, size_t len, struct buf *out);
enum sshkey_kind sshkey_blob_kind(const unsigned char *blob, size_t len);

#endif
