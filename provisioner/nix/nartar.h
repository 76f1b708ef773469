/*
 * nartar.h: a NAR turned into a tar stream while it streams, for targets
 * without Nix (their system tar unpacks it).
 *
 * The NAR grammar (nix-archive-1; regular files, executables, symlinks,
 * directories with entries in strictly ascending byte order) is parsed
 * from bytes fed in any pieces; each node becomes one tar entry under the
 * name given to nar_tar_new() (e.g. "p", "p/bin", "p/bin/postgres"), with
 * the store's permissions: files 0444, executables 0555, directories
 * 0555, owner root, mtime 1 (see tar.h). File contents pass through
 * without being held; the memory is bounded by the nesting (at most
 * NAR_TAR_DEPTH_MAX levels) and the longest name or symlink target
 * (NAME_MAX and PATH_MAX - 1 bytes).
 *
 * The bytes fed are not yet verified (narstream.h checks the NarHash at
 * the end), so the parser trusts nothing: anything outside the grammar,
 * an entry name that is empty, ".", "..", holds '/' or a NUL, names out
 * of order or repeated, non-zero padding, bytes after the archive's end,
 * or an archive that stops early (nar_tar_end()) is SH_ERR_TRUST, naming
 * the byte offset. Symlink targets are not judged (absolute ones and ".."
 * are normal in a store). The output callback's errors pass through.
 *
 * nar_tar_end() requires the archive to be complete and writes the tar
 * end-of-archive blocks.
 *
 * Ownership: nar_tar_new() allocates and copies top; nar_tar_free()
 * releases (NULL is fine). out's argument is borrowed.
 */
#ifndef STAGEHAND_NARTAR_H
#define STAGEHAND_NARTAR_H

#include <stddef.h>

#include "util/util.h"

#define NAR_TAR_DEPTH_MAX 256

typedef int (*nar_tar_out_fn)(
    void *arg, const void *p, size_t len, struct errbuf *err);

struct nar_tar;

struct nar_tar *nar_tar_new(const char *top, nar_tar_out_fn out, void *arg);
int nar_tar_feed(
    struct nar_tar *t, const void *p, size_t len, struct errbuf *err);
int nar_tar_end(struct nar_tar *t, struct errbuf *err);
void nar_tar_free(struct nar_tar *t);

#endif
