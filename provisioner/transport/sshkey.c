/*
 * sshkey.c: private key classification and fingerprint formatting for the
 * ssh module. See sshkey.h.
 *
 * Only as much of the key formats is read as is needed to say what the key
 * is: the OpenSSH container's cipher name and public key type, a PEM
 * label and its Proc-Type header, and for PKCS#8 the algorithm OID. The
 * private parts are never interpreted here; libssh2 loads the key.
 */
#include "transport/sshkey.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/limits.h"

#define OPENSSH_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define OPENSSH_END "-----END OPENSSH PRIVATE KEY-----"
#define OPENSSH_MAGIC "openssh-key-v1" /* followed by a NUL */

/* A read cursor over a decoded key blob (SSH wire format). */
struct rd {
	const unsigned char *p;
	size_t left;
};

static int
rd_u32(struct rd *r, uint32_t *v)
{
	if (r->left < 4)
		return -1;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
	     (uint32_t)r->p[2] << 8 | (uint32_t)r->p[3];
	r->p += 4;
	r->left -= 4;
	return 0;
}

/* An SSH "string": u32 length, then that many bytes (borrowed). */
static int
rd_string(struct rd *r, const unsigned char **s, size_t *len)
{
	uint32_t n;

	*s = NULL;
	*len = 0;
	if (rd_u32(r, &n) < 0 || n > r->left)
		return -1;
	*s = r->p;
	*len = n;
	r->p += n;
	r->left -= n;
	return 0;
}

static bool
str_is(const unsigned char *s, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(s, want, len) == 0;
}

static bool
has(const void *hay, size_t len, const char *needle)
{
	return memmem(hay, len, needle, strlen(needle)) != NULL;
}

static void
set_type(struct sshkey_info *out, const void *name, size_t len)
{
	if (len >= sizeof(out->type))
		len = sizeof(out->type) - 1;
	memcpy(out->type, name, len);
	out->type[len] = '\0';
}

static enum sshkey_kind
kind_of_type(const unsigned char *t, size_t len)
{
	if (str_is(t, len, "ssh-ed25519"))
		return SSHKEY_ED25519;
	if (str_is(t, len, "ssh-rsa"))
		return SSHKEY_RSA;
	if (str_is(t, len, "ssh-dss"))
		return SSHKEY_DSA;
	if (len > 11 && memcmp(t, "ecdsa-sha2-", 11) == 0)
		return SSHKEY_ECDSA;
	return SSHKEY_OTHER;
}

/*
 * Decodes the base64 between begin and end markers into a new wiped-on-free
 * buffer. *bin is NULL on failure.
 */
static int
pem_body(const char *text, size_t len, const char *begin, const char *end,
    unsigned char **bin, size_t *binlen)
{
	const char *b, *e;
	size_t cap;

	*bin = NULL;
	*binlen = 0;
	b = memmem(text, len, begin, strlen(begin));
	if (b == NULL)
		return -1;
	b += strlen(begin);
	e = memmem(b, len - (size_t)(b - text), end, strlen(end));
	if (e == NULL)
		return -1;
	cap = (size_t)(e - b);
	*bin = xmalloc(cap + 1);
	if (sodium_base642bin(*bin, cap + 1, b, (size_t)(e - b), " \t\r\n",
	        binlen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
		sodium_memzero(*bin, cap + 1);
		free(*bin);
		*bin = NULL;
		return -1;
	}
	return 0;
}

static void
bin_free(unsigned char *bin, size_t len)
{
	if (bin == NULL)
		return;
	sodium_memzero(bin, len);
	free(bin);
}

/* openssh-key-v1: magic, cipher, kdf, kdfopts, nkeys, pubkey blob... */
static int
inspect_openssh(const char *text, size_t len, struct sshkey_info *out)
{
	const unsigned char *cipher, *skip, *pub, *type;
	size_t cipherlen, skiplen, publen, typelen, binlen;
	unsigned char *bin;
	struct rd r, pr;
	uint32_t nkeys;
	int rc = -1;

	if (pem_body(text, len, OPENSSH_BEGIN, OPENSSH_END, &bin, &binlen) < 0)
		return -1;
	r.p = bin;
	r.left = binlen;
	if (binlen < sizeof(OPENSSH_MAGIC) ||
	    memcmp(bin, OPENSSH_MAGIC, sizeof(OPENSSH_MAGIC)) != 0)
		goto out;
	r.p += sizeof(OPENSSH_MAGIC);
	r.left -= sizeof(OPENSSH_MAGIC);
	if (rd_string(&r, &cipher, &cipherlen) < 0 ||
	    rd_string(&r, &skip, &skiplen) < 0 ||
	    rd_string(&r, &skip, &skiplen) < 0 || rd_u32(&r, &nkeys) < 0 ||
	    nkeys < 1 || rd_string(&r, &pub, &publen) < 0)
		goto out;
	pr.p = pub;
	pr.left = publen;
	if (rd_string(&pr, &type, &typelen) < 0 || typelen == 0)
		goto out;
	out->encrypted = !str_is(cipher, cipherlen, "none");
	out->kind = kind_of_type(type, typelen);
	set_type(out, type, typelen);
	rc = 0;
out:
	bin_free(bin, binlen);
	return rc;
}

/* PKCS#8 "BEGIN PRIVATE KEY": the algorithm OID names the key type. */
static int
inspect_pkcs8(const char *text, size_t len, struct sshkey_info *out)
{
	static const char rsa[] =
	    "\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01";
	static const char ec[] = "\x06\x07\x2a\x86\x48\xce\x3d\x02\x01";
	static const char ed[] = "\x06\x03\x2b\x65\x70";
	static const char dsa[] = "\x06\x07\x2a\x86\x48\xce\x38\x04\x01";
	unsigned char *bin;
	size_t binlen;

	if (pem_body(text, len, "-----BEGIN PRIVATE KEY-----",
	        "-----END PRIVATE KEY-----", &bin, &binlen) < 0)
		return -1;
	if (memmem(bin, binlen, rsa, sizeof(rsa) - 1))
		out->kind = SSHKEY_RSA;
	else if (memmem(bin, binlen, ec, sizeof(ec) - 1))
		out->kind = SSHKEY_ECDSA;
	else if (memmem(bin, binlen, ed, sizeof(ed) - 1))
		out->kind = SSHKEY_ED25519;
	else if (memmem(bin, binlen, dsa, sizeof(dsa) - 1))
		out->kind = SSHKEY_DSA;
	else
		out->kind = SSHKEY_OTHER;
	set_type(out, "PKCS#8", 6);
	bin_free(bin, binlen);
	return 0;
}

int
sshkey_inspect(const char *text, size_t len, struct sshkey_info *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0 || len > SSH_KEY_MAX_BYTES || mem_has_nul(text, len))
		return -1;
	if (has(text, len, OPENSSH_BEGIN))
		return inspect_openssh(text, len, out);
	if (has(text, len, "-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
		out->encrypted = 1;
		set_type(out, "PKCS#8", 6);
		return 0;
	}
	if (has(text, len, "-----BEGIN PRIVATE KEY-----"))
		return inspect_pkcs8(text, len, out);
	out->encrypted = has(text, len, "Proc-Type: 4,ENCRYPTED");
	if (has(text, len, "-----BEGIN RSA PRIVATE KEY-----"))
		out->kind = SSHKEY_RSA;
	else if (has(text, len, "-----BEGIN DSA PRIVATE KEY-----"))
		out->kind = SSHKEY_DSA;
	else if (has(text, len, "-----BEGIN EC PRIVATE KEY-----"))
		out->kind = SSHKEY_ECDSA;
	else
		return -1;
	set_type(out, "PEM", 3);
	return 0;
}

int
sshkey_check(
    const char *text, size_t len, const char *origin, struct errbuf *err)
{
	struct sshkey_info ki;

	if (sshkey_inspect(text, len, &ki) < 0)
		return err_set(err, SH_ERR_USAGE,
		    "%s: not an OpenSSH or PEM private key", origin);
	switch (ki.kind) {
	case SSHKEY_RSA:
		return err_set(err, SH_ERR_USAGE,
		    "%s: RSA keys cannot be used: libssh2 1.10 signs only "
		    "with ssh-rsa (SHA-1), which OpenSSH 8.8 and later refuse; "
		    "use an ed25519 key (ssh-keygen -t ed25519; with Packer, "
		    "set temporary_key_pair_type = \"ed25519\")",
		    origin);
	case SSHKEY_DSA:
		return err_set(err, SH_ERR_USAGE,
		    "%s: DSA keys are refused by OpenSSH 7.0 and later; use an "
		    "ed25519 key (ssh-keygen -t ed25519)",
		    origin);
	case SSHKEY_OTHER:
		return err_set(err, SH_ERR_USAGE,
		    "%s: key type %s is not supported; use an ed25519 or "
		    "ECDSA key",
		    origin, ki.type);
	case SSHKEY_UNKNOWN:
	case SSHKEY_ED25519:
	case SSHKEY_ECDSA:
		break;
	}
	if (ki.encrypted)
		return err_set(err, SH_ERR_USAGE,
		    "%s: the key is protected by a passphrase, which stagehand "
		    "does not support; add it to ssh-agent instead, or use a "
		    "key without a passphrase",
		    origin);
	return 0;
}

int
sshkey_fingerprint(const unsigned char *digest, size_t len, struct buf *out)
{
	char b64[sodium_base64_ENCODED_LEN(
	    32, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];

	if (len != 32)
		return -1;
	sodium_bin2base64(b64, sizeof(b64), digest, len,
	    sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	if (buf_adds(out, "SHA256:") < 0 || buf_adds(out, b64) < 0)
		return -1;
	return 0;
}

enum sshkey_kind
sshkey_blob_kind(const unsigned char *blob, size_t len)
{
	const unsigned char *type;
	size_t typelen;
	struct rd r = { blob, len };

	if (blob == NULL || rd_string(&r, &type, &typelen) < 0 || typelen == 0)
		return SSHKEY_UNKNOWN;
	return kind_of_type(type, typelen);
}
