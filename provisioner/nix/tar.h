/*
 * tar.h: a writer of POSIX tar (pax interchange format) headers for the
 * entries a NAR holds: regular files, directories and symlinks, owned by
 * root (uid and gid 0, uname and gname "root"), mtime 1, as a Nix store
 * has them.
 *
 * tar_header() appends one entry's header to out: the 512-byte ustar
 * header, preceded by a pax extended header ('x') when the name does not
 * fit ustar's name/prefix fields, the symlink target is over 100 bytes or
 * the size is over ustar's 8 GiB - 1. Names are relative, '/'-separated,
 * without a leading '/'; a directory's name gets its trailing '/' here.
 * The caller then appends size bytes of content (files only) and
 * tar_pad(size) zero bytes, and at the end of the archive tar_end().
 * tar_header() refuses (SH_ERR_INTERNAL) an empty name, a name or target
 * holding a NUL byte, and a mode above 07777; the caller validates the
 * names' meaning (no "..", no absolute names). A failed append leaves out
 * failed (sticky, as every struct buf).
 *
 * Ownership: nothing is kept; out is the caller's.
 */
#ifndef STAGEHAND_TAR_H
#define STAGEHAND_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define TAR_BLOCK 512

enum tar_type {
	TAR_FILE,
	TAR_DIR,
	TAR_SYMLINK,
};

struct tar_entry {
	const char *name; /* borrowed; name_len bytes, no NUL inside */
	size_t name_len;
	enum tar_type type;
	unsigned mode;    /* permission bits */
	uint64_t size;    /* TAR_FILE only */
	const char *link; /* TAR_SYMLINK only; link_len bytes */
	size_t link_len;
};

int tar_header(const struct tar_entry *e, struct buf *out, struct errbuf *err);
size_t tar_pad(uint64_t size);
int tar_end(struct buf *out);

#endif
