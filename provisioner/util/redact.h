/*
 * redact.h: hide secret values in everything stagehand writes.
 *
 * The run collects every secret value (manifest `secrets:`, key material)
 * into one struct redact; the UI, run.log, the error printer and every
 * report file pass their text through it, and each secret becomes
 * "********".
 *
 * What is matched, for each secret value (see redact.c for why):
 *  - the value, each line of a multi-line value (lines shorter than
 *    REDACT_FRAGMENT_MIN bytes excepted), and each of those with control
 *    characters replaced by '?' (as error lines show them);
 *  - each of those in the forms the writers escape them into: JSON, XML
 *    (text and attribute rules) and inside sh single quotes;
 *  - by redact_text() also every *fragment*: a prefix or a suffix of at
 *    least REDACT_FRAGMENT_MIN bytes of the value (or of one of its lines),
 *    anywhere in the text. Every cut stagehand makes keeps one end of a
 *    text (a script's first line, an output tail, an error line, a full
 *    errbuf), so a secret split by a cut leaves exactly such a piece.
 *    A value shorter than REDACT_FRAGMENT_MIN is masked whole only.
 *
 * Masking a piece shorter than REDACT_FRAGMENT_MIN anywhere would hit
 * ordinary words and numbers. So the cuts that keep one end of a text
 * redact the whole text before they cut it (redact_cut() for a script's
 * first line and a plan description, remote_fail() for an error line);
 * where the whole text is gone before it can be redacted (an output that
 * keeps its last bytes while it streams), redact_tail() masks a piece that
 * short at the start, where the text is known to be cut. The fragment rule
 * stays as a second line of defence for cuts made elsewhere (an errbuf
 * that fills up).
 *
 * redact_text() is for plain values (a step's output, an error, a change
 * line, a terminal line). redact_doc() is for finished JSON/XML/sh
 * documents whose values were already passed through redact_text(): it
 * matches whole values only, so a short fragment can never hit a number
 * or markup and break the document. redact_buf() is redact_doc() in place.
 *
 * Output never grows by more than REDACT_GROWTH times the input (each run
 * of masked bytes, at least one byte, becomes 8 bytes); redact_max() gives
 * a safe buffer max for len input bytes.
 *
 * Empty values are ignored. Ownership: the struct owns copies of the
 * secrets in memory that redact_free() zeroes.
 */
#ifndef STAGEHAND_REDACT_H
#define STAGEHAND_REDACT_H

#include <stddef.h>

#include "util/util.h"

#define REDACTED "********"
#define REDACT_GROWTH 8u       /* strlen(REDACTED): worst output/input */
#define REDACT_FRAGMENT_MIN 4u /* shortest piece of a secret masked alone */

struct redact_form; /* one spelling of one secret (redact.c) */

struct redact {
	struct redact_form *forms; /* owned array */
	size_t n;
};

void redact_init(struct redact *r);
void redact_add(struct redact *r, const char *secret);
/* Appends p[0..len) with secrets and their fragments replaced to out.
 * Returns 0, or -1 when out's max is reached (out is left as it was). */
int redact_text(
    const struct redact *r, const char *p, size_t len, struct buf *out);
/* As redact_text(), for the tail of a longer text (a step's output keeps
 * its last REPORT_OUTPUT_TAIL bytes): a suffix of a secret, however short,
 * that p starts with is masked too, since the cut may have split it. */
int redact_tail(
    const struct redact *r, const char *p, size_t len, struct buf *out);
/* As redact_text(), whole values only: for built documents. */
int redact_doc(
    const struct redact *r, const char *p, size_t len, struct buf *out);
/* Replaces b's content with redact_doc() of it. Returns 0 or -1. */
int redact_buf(const struct redact *r, struct buf *b);
/* Appends redact_text() of p[0..len) to out, cut to its first keep bytes
 * (at a UTF-8 boundary) and followed by " ..." when it was cut. Every cut
 * of a text that may hold a secret goes through here or redact_tail():
 * the whole text is redacted before it is cut, so a cut can never leave a
 * piece of a secret, however short. Returns 0, or -1 when out is full. */
int redact_cut(const struct redact *r, const char *p, size_t len, size_t keep,
    struct buf *out);
/* A buf max that redacting len bytes can never exceed (saturating). */
size_t redact_max(size_t len);
void redact_free(struct redact *r);

#endif
