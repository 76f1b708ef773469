/*
 * xml.h: escaping text for XML 1.0 documents (junit.xml).
 *
 * xml_escape() appends p[0..len) so that it reads back as the same text
 * inside element content (attr false) or a double- or single-quoted
 * attribute value (attr true):
 *   - & < > " ' become &amp; &lt; &gt; &quot; &apos; in both contexts;
 *   - CR is written as &#13; (parsers would fold CRLF otherwise); in
 *     attributes TAB and LF are &#9; and &#10; too (parsers turn raw ones
 *     into spaces);
 *   - characters XML 1.0 does not allow at all (C0 controls other than
 *     TAB/LF/CR, U+FFFE, U+FFFF) and bytes that are not well-formed UTF-8
 *     become U+FFFD, so the document always parses.
 * Returns 0, or -1 when out's maximum would be passed (out unchanged).
 */
#ifndef STAGEHAND_XML_H
#define STAGEHAND_XML_H

#include <stdbool.h>
#include <stddef.h>

#include "util/util.h"

int xml_escape(struct buf *out, const char *p, size_t len, bool attr);

#endif
