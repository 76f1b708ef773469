/*
 * nartar.c: NAR to tar, streaming (nartar.h).
 *
 * Two levels. The lexer cuts the NAR into its strings (an 8-byte
 * little-endian length, the bytes, zero padding to 8); a string is
 * collected whole (at most NT_TOKEN_MAX bytes) and handed to the grammar,
 * except a file's contents, which stream through to the output. The
 * grammar is a state machine over those strings with a stack of the
 * directories it is in (their name length in the path and the last entry
 * name seen, for the order check).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "nix/nartar.h"
#include "nix/tar.h"

#define NT_TOKEN_MAX (PATH_MAX - 1) /* a symlink target */
#define NT_HDR_MAX (4 * PATH_MAX + 4 * TAR_BLOCK)

enum nt_lex {
	NT_LEN,  /* collecting a length */
	NT_STR,  /* collecting a string */
	NT_DATA, /* passing contents through */
	NT_PAD,  /* zero padding after a string or the contents */
};

enum nt_state {
	NS_MAGIC,
	NS_OPEN,       /* "(" of a node */
	NS_TYPE_KW,    /* "type" */
	NS_TYPE,       /* regular | symlink | directory */
	NS_REG,        /* "executable" or "contents" */
	NS_EXEC_EMPTY, /* "" after "executable" */
	NS_CONTENTS,   /* "contents" after the executable flag */
	NS_SYM_KW,     /* "target" */
	NS_SYM_TARGET,
	NS_CLOSE,      /* ")" of a file or symlink node */
	NS_DIR,        /* "entry" or ")" */
	NS_ENTRY_OPEN, /* "(" of an entry */
	NS_NAME_KW,    /* "name" */
	NS_NAME,
	NS_NODE_KW,     /* "node" */
	NS_ENTRY_CLOSE, /* ")" of an entry */
	NS_END,
};

struct nt_frame {
	size_t plen;             /* the directory's name length in path */
	char prev[NAME_MAX + 1]; /* last entry name, NUL-terminated */
	size_t prevlen;
	bool has_prev;
};

struct nar_tar {
	nar_tar_out_fn out;
	void *arg;
	enum nt_lex lex;
	enum nt_state st;
	bool contents_next; /* the next length is a file's contents */
	bool exec;
	uint64_t off;  /* NAR bytes consumed */
	uint64_t need; /* bytes left of the length, string, data or pad */
	uint64_t len;  /* the current string's or contents' length */
	unsigned char lenb[8];
	size_t lenn;
	char tok[NT_TOKEN_MAX + 1];
	size_t tokn;
	struct buf path; /* "p/bin/postgres" */
	struct nt_frame *stack;
	size_t depth;
	struct buf hdr; /* a header, before it goes out */
};

struct nar_tar *
nar_tar_new(const char *top, nar_tar_out_fn out, void *arg)
{
	struct nar_tar *t = xcalloc(1, sizeof(*t));

	t->out = out;
	t->arg = arg;
	t->lex = NT_LEN;
	t->st = NS_MAGIC;
	buf_init(&t->path, (size_t)NAR_TAR_DEPTH_MAX * (NAME_MAX + 1) + 256);
	buf_adds(&t->path, top); /* the top's name is short: cannot fail */
	buf_init(&t->hdr, NT_HDR_MAX);
	t->stack = xcalloc(NAR_TAR_DEPTH_MAX, sizeof(*t->stack));
	return t;
}

void
nar_tar_free(struct nar_tar *t)
{
	if (t == NULL)
		return;
	buf_release(&t->path);
	buf_release(&t->hdr);
	free(t->stack);
	free(t);
}

static int
nt_bad(struct nar_tar *t, struct errbuf *err, const char *what)
{
	return err_set(err, SH_ERR_TRUST, "malformed NAR at byte %llu: %s",
	    (unsigned long long)t->off, what);
}

static int
nt_emit(struct nar_tar *t, const struct tar_entry *e, struct errbuf *err)
{
	buf_reset(&t->hdr);
	if (tar_header(e, &t->hdr, err) < 0)
		return -1;
	return t->out(t->arg, t->hdr.data, t->hdr.len, err);
}

static int
nt_entry(struct nar_tar *t, enum tar_type type, unsigned mode, uint64_t size,
    struct errbuf *err)
{
	struct tar_entry e;

	memset(&e, 0, sizeof(e));
	e.name = t->path.data;
	e.name_len = t->path.len;
	e.type = type;
	e.mode = mode;
	e.size = size;
	if (type == TAR_SYMLINK) {
		e.link = t->tok;
		e.link_len = t->tokn;
	}
	return nt_emit(t, &e, err);
}

static bool
nt_is(const struct nar_tar *t, const char *s)
{
	size_t n = strlen(s);

	return t->tokn == n && memcmp(t->tok, s, n) == 0;
}

/* A node ended: the archive, or the entry holding it, goes on. */
static void
nt_node_done(struct nar_tar *t)
{
	t->st = t->depth == 0 ? NS_END : NS_ENTRY_CLOSE;
}

static int
nt_name(struct nar_tar *t, struct errbuf *err)
{
	struct nt_frame *f = &t->stack[t->depth - 1];
	size_t n = t->tokn, m;
	int c;

	if (n == 0 || n > NAME_MAX || memchr(t->tok, '/', n) != NULL ||
	    memchr(t->tok, '\0', n) != NULL || nt_is(t, ".") || nt_is(t, ".."))
		return nt_bad(t, err, "an invalid entry name");
	if (f->has_prev) {
		m = n < f->prevlen ? n : f->prevlen;
		c = memcmp(f->prev, t->tok, m);
		if (c > 0 || (c == 0 && f->prevlen >= n))
			return nt_bad(
			    t, err, "entry names not in ascending order");
	}
	memcpy(f->prev, t->tok, n);
	f->prevlen = n;
	f->has_prev = true;
	if (buf_addc(&t->path, '/') < 0 || buf_add(&t->path, t->tok, n) < 0)
		return nt_bad(t, err, "the path is too long");
	return 0;
}

static int
nt_token(struct nar_tar *t, struct errbuf *err)
{
	switch (t->st) {
	case NS_MAGIC:
		if (!nt_is(t, "nix-archive-1"))
			return nt_bad(t, err, "not a NAR (no nix-archive-1)");
		t->st = NS_OPEN;
		return 0;
	case NS_OPEN:
	case NS_ENTRY_OPEN:
		if (!nt_is(t, "("))
			return nt_bad(t, err, "expected '('");
		t->st = t->st == NS_OPEN ? NS_TYPE_KW : NS_NAME_KW;
		return 0;
	case NS_TYPE_KW:
		if (!nt_is(t, "type"))
			return nt_bad(t, err, "expected 'type'");
		t->st = NS_TYPE;
		return 0;
	case NS_TYPE:
		if (nt_is(t, "regular")) {
			t->exec = false;
			t->st = NS_REG;
		} else if (nt_is(t, "symlink")) {
			t->st = NS_SYM_KW;
		} else if (nt_is(t, "directory")) {
			if (t->depth == NAR_TAR_DEPTH_MAX)
				return nt_bad(t, err, "directories too deep");
			memset(&t->stack[t->depth], 0, sizeof(t->stack[0]));
			t->stack[t->depth].plen = t->path.len;
			t->depth++;
			t->st = NS_DIR;
			return nt_entry(t, TAR_DIR, 0555, 0, err);
		} else {
			return nt_bad(t, err, "unknown node type");
		}
		return 0;
	case NS_REG:
	case NS_CONTENTS:
		if (t->st == NS_REG && nt_is(t, "executable")) {
			t->exec = true;
			t->st = NS_EXEC_EMPTY;
			return 0;
		}
		if (!nt_is(t, "contents"))
			return nt_bad(t, err, "expected 'contents'");
		t->contents_next = true;
		return 0;
	case NS_EXEC_EMPTY:
		if (t->tokn != 0)
			return nt_bad(t, err, "expected '' after 'executable'");
		t->st = NS_CONTENTS;
		return 0;
	case NS_SYM_KW:
		if (!nt_is(t, "target"))
			return nt_bad(t, err, "expected 'target'");
		t->st = NS_SYM_TARGET;
		return 0;
	case NS_SYM_TARGET:
		if (t->tokn == 0 || memchr(t->tok, '\0', t->tokn) != NULL)
			return nt_bad(t, err, "an invalid symlink target");
		t->st = NS_CLOSE;
		return nt_entry(t, TAR_SYMLINK, 0777, 0, err);
	case NS_CLOSE:
		if (!nt_is(t, ")"))
			return nt_bad(t, err, "expected ')'");
		nt_node_done(t);
		return 0;
	case NS_DIR:
		if (nt_is(t, "entry")) {
			t->st = NS_ENTRY_OPEN;
			return 0;
		}
		if (!nt_is(t, ")"))
			return nt_bad(t, err, "expected 'entry' or ')'");
		t->depth--;
		nt_node_done(t);
		return 0;
	case NS_NAME_KW:
		if (!nt_is(t, "name"))
			return nt_bad(t, err, "expected 'name'");
		t->st = NS_NAME;
		return 0;
	case NS_NAME:
		if (nt_name(t, err) < 0)
			return -1;
		t->st = NS_NODE_KW;
		return 0;
	case NS_NODE_KW:
		if (!nt_is(t, "node"))
			return nt_bad(t, err, "expected 'node'");
		t->st = NS_OPEN;
		return 0;
	case NS_ENTRY_CLOSE:
		if (!nt_is(t, ")"))
			return nt_bad(t, err, "expected ')' after an entry");
		/* back to the directory: drop "/name" */
		t->path.len = t->stack[t->depth - 1].plen;
		t->path.data[t->path.len] = '\0';
		t->st = NS_DIR;
		return 0;
	case NS_END:
		break;
	}
	return nt_bad(t, err, "bytes after the end of the archive");
}

/* A length is complete: a string to collect or contents to pass. */
static int
nt_length(struct nar_tar *t, struct errbuf *err)
{
	uint64_t n = 0;

	for (size_t i = 8; i > 0; i--)
		n = n << 8 | t->lenb[i - 1];
	t->lenn = 0;
	t->len = n;
	t->need = n;
	t->tokn = 0;
	if (t->contents_next) {
		t->lex = NT_DATA;
		return nt_entry(t, TAR_FILE, t->exec ? 0555 : 0444, n, err);
	}
	if (n > NT_TOKEN_MAX)
		return nt_bad(t, err, "a string longer than PATH_MAX");
	t->lex = NT_STR;
	return 0;
}

/* A string or the contents ended: padding, then the next length. */
static int
nt_string_done(struct nar_tar *t, struct errbuf *err)
{
	static const char zeros[TAR_BLOCK];

	t->need = (8 - t->len % 8) % 8;
	t->lex = NT_PAD;
	if (!t->contents_next)
		return nt_token(t, err);
	t->contents_next = false;
	t->st = NS_CLOSE;
	if (tar_pad(t->len) == 0)
		return 0;
	return t->out(t->arg, zeros, tar_pad(t->len), err);
}

int
nar_tar_feed(struct nar_tar *t, const void *p, size_t len, struct errbuf *err)
{
	const unsigned char *u = p;
	size_t n;

	while (len > 0) {
		switch (t->lex) {
		case NT_LEN:
			t->lenb[t->lenn++] = *u;
			t->off++, u++, len--;
			if (t->lenn == 8 && nt_length(t, err) < 0)
				return -1;
			break;
		case NT_STR:
			n = len < t->need ? len : (size_t)t->need;
			memcpy(t->tok + t->tokn, u, n);
			t->tokn += n;
			t->tok[t->tokn] = '\0';
			t->need -= n;
			t->off += n, u += n, len -= n;
			break;
		case NT_DATA:
			n = len < t->need ? len : (size_t)t->need;
			if (t->out(t->arg, u, n, err) < 0)
				return -1;
			t->need -= n;
			t->off += n, u += n, len -= n;
			break;
		case NT_PAD:
			if (*u != 0)
				return nt_bad(t, err, "non-zero padding");
			t->need--;
			t->off++, u++, len--;
			break;
		}
		if (t->need > 0 || t->lex == NT_LEN)
			continue;
		if (t->lex == NT_PAD) {
			t->lex = NT_LEN;
			continue;
		}
		/* NT_STR or NT_DATA complete */
		if (nt_string_done(t, err) < 0)
			return -1;
		if (t->need == 0)
			t->lex = NT_LEN;
	}
	return 0;
}

int
nar_tar_end(struct nar_tar *t, struct errbuf *err)
{
	struct buf b;
	int rc;

	/* An empty string or contents completes only when seen: at the end
	 * a string of length 0 just read is still pending. */
	if (t->lex == NT_STR && t->need == 0) {
		if (nt_string_done(t, err) < 0)
			return -1;
		t->lex = NT_LEN;
	}
	if (t->st != NS_END || t->lex != NT_LEN || t->lenn != 0)
		return nt_bad(t, err, "the archive ends early");
	buf_init(&b, 2 * TAR_BLOCK);
	rc = tar_end(&b) < 0 ? -1 : t->out(t->arg, b.data, b.len, err);
	buf_release(&b);
	return rc;
}
