/*
 * xml.c: XML 1.0 text and attribute escaping. See xml.h.
 */
#include "util/xml.h"

#include <stdint.h>

#include "util/json.h"

static bool
xml_char_allowed(uint32_t cp)
{
	return cp == 0x9 || cp == 0xa || cp == 0xd ||
	       (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) ||
	       (cp >= 0x10000 && cp <= 0x10ffff);
}

/* The entity for cp in this context, or NULL to copy it as is. */
static const char *
xml_entity(uint32_t cp, bool attr)
{
	switch (cp) {
	case '&':
		return "&amp;";
	case '<':
		return "&lt;";
	case '>':
		return "&gt;";
	case '"':
		return "&quot;";
	case '\'':
		return "&apos;";
	case '\r':
		return "&#13;";
	case '\n':
		return attr ? "&#10;" : NULL;
	case '\t':
		return attr ? "&#9;" : NULL;
	default:
		return NULL;
	}
}

int
xml_escape(struct buf *out, const char *p, size_t len, bool attr)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t start = out->len, i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = json_utf8_next(s + i, len - i, &cp);
		const char *ent = xml_entity(cp, attr);
		int rc;

		if (ent != NULL)
			rc = buf_adds(out, ent);
		else if (!xml_char_allowed(cp) || (n == 1 && s[i] >= 0x80))
			rc = buf_adds(out, "\xef\xbf\xbd");
		else
			rc = buf_add(out, s + i, n);
		if (rc < 0) {
			out->len = start;
			out->data[start] = '\0';
			return -1;
		}
		i += n;
	}
	return 0;
}
