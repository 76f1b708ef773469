/*
 * permcheck.c: the permission audit's script, its output parser and the
 * comparison rules. See permcheck.h.
 *
 * The script's stdout is a line protocol, one fact per line, fields split
 * by ':' (account names cannot contain one; paths are referred to by
 * their index in the spec, and the only free text comes last):
 *   U:NAME:UID:GID             getent passwd, in its order
 *   G:NAME:GID:M1,M2,...       getent group, in its order
 *   S:I:MODE:UID:USER:GID:GROUP:TYPE   spec path I exists (stat -c, lstat)
 *   N:I                        spec path I does not exist
 *   A:I:PATH                   a match of absent pattern I (newlines in
 *                              the name shown as '?')
 *   E                          the end: the dump is complete
 * Anything else, a missing S/N line or a missing E fails the parse: a
 * partial dump must never pass an audit.
 */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "pg/permcheck.h"

#define PERMCHECK_ID_MAX 4294967295u
#define PERMCHECK_LIST_SHOWN 5 /* offenders/matches named in a message */

const char *
permcheck_type_name(enum permcheck_type t)
{
	switch (t) {
	case PERMCHECK_ANY:
		return NULL;
	case PERMCHECK_FILE:
		return "file";
	case PERMCHECK_DIR:
		return "directory";
	case PERMCHECK_LINK:
		return "link";
	}
	return NULL;
}

void
permcheck_spec_free(struct permcheck_spec *s)
{
	for (size_t i = 0; i < s->nusers; i++)
		strlist_free(&s->users[i].groups);
	for (size_t i = 0; i < s->npatterns; i++)
		strlist_free(&s->patterns[i].only);
	free(s->users);
	free(s->patterns);
	free(s->paths);
	strlist_free(&s->absent);
	memset(s, 0, sizeof(*s));
}

/* ================================================== the remote script */

/*
 * The dumps go through variables first so that a failing getent fails the
 * script instead of yielding an empty (and so "passing") table. stat
 * without -L is lstat; %F comes last because it has spaces. In ab, an
 * empty IFS turns off field splitting but not pathname expansion, so the
 * pattern expands to its matches (or stays itself when none exist).
 */
static const char permcheck_lib[] =
    "set -u\n"
    "die() { printf '%s\\n' \"$*\" >&2; exit 1; }\n"
    "pw=$(getent passwd) || die 'getent passwd failed'\n"
    "gr=$(getent group) || die 'getent group failed'\n"
    "printf '%s\\n' \"$pw\" | "
    "awk -F: 'NF >= 4 { print \"U:\" $1 \":\" $3 \":\" $4 }'\n"
    "printf '%s\\n' \"$gr\" | "
    "awk -F: 'NF >= 3 { print \"G:\" $1 \":\" $3 \":\" $4 }'\n"
    "st() {\n"
    "\tif [ -e \"$2\" ] || [ -L \"$2\" ]; then\n"
    "\t\t_s=$(stat -c '%a:%u:%U:%g:%G:%F' -- \"$2\") || "
    "die \"stat $2 failed\"\n"
    "\t\tprintf 'S:%s:%s\\n' \"$1\" \"$_s\"\n"
    "\telse\n"
    "\t\tprintf 'N:%s\\n' \"$1\"\n"
    "\tfi\n"
    "}\n"
    "ab() {\n"
    "\t_o=$IFS; IFS=; set +f\n"
    "\tfor _f in $2; do\n"
    "\t\tif [ -e \"$_f\" ] || [ -L \"$_f\" ]; then\n"
    "\t\t\tprintf 'A:%s:' \"$1\"\n"
    "\t\t\tprintf '%s' \"$_f\" | tr '\\n' '?'\n"
    "\t\t\techo\n"
    "\t\tfi\n"
    "\tdone\n"
    "\tIFS=$_o\n"
    "}\n";

int
permcheck_script(const struct permcheck_spec *s, struct buf *out)
{
	if (buf_adds(out, permcheck_lib) < 0)
		return -1;
	for (size_t i = 0; i < s->npaths; i++)
		if (buf_addf(out, "st %zu ", i) < 0 ||
		    sh_quote(out, s->paths[i].path) < 0 ||
		    buf_addc(out, '\n') < 0)
			return -1;
	for (size_t i = 0; i < s->absent.n; i++)
		if (buf_addf(out, "ab %zu ", i) < 0 ||
		    sh_quote(out, s->absent.v[i]) < 0 ||
		    buf_addc(out, '\n') < 0)
			return -1;
	return buf_adds(out, "echo E\n");
}

/* ================================================== the dump parser */

struct field {
	const char *p;
	size_t len;
};

/*
 * Splits line into exactly n ':'-separated fields; the last one takes the
 * rest of the line (colons included). false when there are fewer.
 */
static bool
split(const char *p, size_t len, struct field *f, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		const char *c = memchr(p, ':', len);

		if (c == NULL)
			return false;
		f[i].p = p;
		f[i].len = (size_t)(c - p);
		len -= f[i].len + 1;
		p = c + 1;
	}
	f[n - 1].p = p;
	f[n - 1].len = len;
	return true;
}

static bool
field_id(const struct field *f, uint64_t *out)
{
	return parse_u64(f->p, f->len, PERMCHECK_ID_MAX, out) == 0;
}

static bool
field_index(const struct field *f, size_t n, size_t *out)
{
	uint64_t v;

	if (parse_u64(f->p, f->len, PERMCHECK_ID_MAX, &v) < 0 || v >= n)
		return false;
	*out = (size_t)v;
	return true;
}

static char *
field_dup(const struct field *f)
{
	return xstrndup(f->p, f->len);
}

static struct permcheck_account *
account_add(struct permcheck_account **v, size_t *n, const struct field *name)
{
	struct permcheck_account *a;

	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	a = &(*v)[(*n)++];
	memset(a, 0, sizeof(*a));
	a->name = field_dup(name);
	return a;
}

/* "U:NAME:UID:GID" without its tag. */
static bool
parse_user(struct permcheck_facts *f, const char *p, size_t len)
{
	struct field fl[3];
	uint64_t uid, gid;
	struct permcheck_account *a;

	if (!split(p, len, fl, 3) || fl[0].len == 0 ||
	    !field_id(&fl[1], &uid) || !field_id(&fl[2], &gid))
		return false;
	a = account_add(&f->users, &f->nusers, &fl[0]);
	a->id = uid;
	a->gid = gid;
	return true;
}

/* "G:NAME:GID:MEMBERS" without its tag. */
static bool
parse_group(struct permcheck_facts *f, const char *p, size_t len)
{
	struct field fl[3];
	uint64_t gid;
	struct permcheck_account *a;
	const char *m, *end;

	if (!split(p, len, fl, 3) || fl[0].len == 0 || !field_id(&fl[1], &gid))
		return false;
	a = account_add(&f->groups, &f->ngroups, &fl[0]);
	a->id = gid;
	a->gid = gid;
	for (m = fl[2].p, end = fl[2].p + fl[2].len; m < end;) {
		const char *c = memchr(m, ',', (size_t)(end - m));
		size_t n = c ? (size_t)(c - m) : (size_t)(end - m);

		if (n > 0)
			strlist_push_owned(&a->members, xstrndup(m, n));
		m += n + 1;
	}
	return true;
}

/* "S:I:MODE:UID:USER:GID:GROUP:TYPE" without its tag. */
static bool
parse_stat(struct permcheck_facts *f, const char *p, size_t len)
{
	struct field fl[7];
	struct permcheck_stat *st;
	size_t i;

	if (!split(p, len, fl, 7) || !field_index(&fl[0], f->npaths, &i))
		return false;
	st = &f->stats[i];
	if (st->exists || st->type != NULL)
		return false; /* one line per path */
	if (parse_mode(fl[1].p, fl[1].len, &st->mode) < 0 ||
	    !field_id(&fl[2], &st->uid) || !field_id(&fl[4], &st->gid))
		return false;
	st->exists = true;
	st->user = field_dup(&fl[3]);
	st->group = field_dup(&fl[5]);
	st->type = field_dup(&fl[6]);
	return true;
}

/* "N:I" without its tag: the path does not exist. */
static bool
parse_missing(struct permcheck_facts *f, const char *p, size_t len, bool *seen)
{
	struct field fl[1];
	size_t i;

	if (!split(p, len, fl, 1) || !field_index(&fl[0], f->npaths, &i) ||
	    seen[i])
		return false;
	seen[i] = true;
	return true;
}

/* "A:I:PATH" without its tag. */
static bool
parse_match(struct permcheck_facts *f, const char *p, size_t len)
{
	struct field fl[2];
	size_t i;

	if (!split(p, len, fl, 2) || !field_index(&fl[0], f->nabsent, &i) ||
	    fl[1].len == 0)
		return false;
	strlist_push_owned(&f->matches[i], field_dup(&fl[1]));
	return true;
}

/* One line; *end is set by "E". seen[] marks the paths answered by N. */
static bool
parse_line(
    struct permcheck_facts *f, const char *p, size_t len, bool *seen, bool *end)
{
	if (*end)
		return false; /* nothing may follow the end marker */
	if (len == 1 && p[0] == 'E') {
		*end = true;
		return true;
	}
	if (len < 2 || p[1] != ':')
		return false;
	switch (p[0]) {
	case 'U':
		return parse_user(f, p + 2, len - 2);
	case 'G':
		return parse_group(f, p + 2, len - 2);
	case 'S':
		return parse_stat(f, p + 2, len - 2);
	case 'N':
		return parse_missing(f, p + 2, len - 2, seen);
	case 'A':
		return parse_match(f, p + 2, len - 2);
	default:
		return false;
	}
}

/* Every spec path has exactly one S or N line. */
static int
check_answered(
    const struct permcheck_facts *f, const bool *seen, struct errbuf *err)
{
	for (size_t i = 0; i < f->npaths; i++) {
		if (f->stats[i].exists && seen[i])
			return err_set(err, SH_ERR_REMOTE,
			    "permission script: path %zu reported twice", i);
		if (!f->stats[i].exists && !seen[i])
			return err_set(err, SH_ERR_REMOTE,
			    "permission script: no answer for path %zu", i);
	}
	return 0;
}

static int
parse_lines(struct permcheck_facts *f, const char *p, size_t len, bool *seen,
    struct errbuf *err)
{
	const char *end = p + len;
	bool done = false;
	size_t lineno = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		lineno++;
		if (memchr(p, '\0', n) != NULL ||
		    !parse_line(f, p, n, seen, &done))
			return err_set(err, SH_ERR_REMOTE,
			    "permission script: unexpected output on line %zu",
			    lineno);
		p += n + 1;
	}
	if (!done)
		return err_set(err, SH_ERR_REMOTE,
		    "permission script: output ends early (no end marker)");
	return check_answered(f, seen, err);
}

int
permcheck_facts_parse(const struct permcheck_spec *s, const char *p, size_t len,
    struct permcheck_facts *f, struct errbuf *err)
{
	bool *seen;
	int rc;

	memset(f, 0, sizeof(*f));
	f->npaths = s->npaths;
	f->nabsent = s->absent.n;
	f->stats = xcalloc(s->npaths ? s->npaths : 1, sizeof(*f->stats));
	f->matches =
	    xcalloc(s->absent.n ? s->absent.n : 1, sizeof(*f->matches));
	seen = xcalloc(s->npaths ? s->npaths : 1, sizeof(*seen));
	rc = parse_lines(f, p, len, seen, err);
	free(seen);
	return rc;
}

static void
accounts_free(struct permcheck_account *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		strlist_free(&v[i].members);
	}
	free(v);
}

void
permcheck_facts_free(struct permcheck_facts *f)
{
	accounts_free(f->users, f->nusers);
	accounts_free(f->groups, f->ngroups);
	for (size_t i = 0; f->stats != NULL && i < f->npaths; i++) {
		free(f->stats[i].type);
		free(f->stats[i].user);
		free(f->stats[i].group);
	}
	for (size_t i = 0; f->matches != NULL && i < f->nabsent; i++)
		strlist_free(&f->matches[i]);
	free(f->stats);
	free(f->matches);
	memset(f, 0, sizeof(*f));
}

/* ================================================== group lists */

static const struct permcheck_account *
find_user(const struct permcheck_facts *f, const char *name)
{
	for (size_t i = 0; i < f->nusers; i++)
		if (strcmp(f->users[i].name, name) == 0)
			return &f->users[i];
	return NULL;
}

static const struct permcheck_account *
find_gid(const struct permcheck_facts *f, uint64_t gid)
{
	for (size_t i = 0; i < f->ngroups; i++)
		if (f->groups[i].id == gid)
			return &f->groups[i];
	return NULL;
}

/* gid already in the list built so far (getgrouplist skips those). */
static bool
gid_listed(const uint64_t *gids, size_t n, uint64_t gid)
{
	for (size_t i = 0; i < n; i++)
		if (gids[i] == gid)
			return true;
	return false;
}

bool
permcheck_user_groups(
    const struct permcheck_facts *f, const char *user, struct strlist *out)
{
	const struct permcheck_account *u = find_user(f, user);
	const struct permcheck_account *pg;
	uint64_t *gids;
	size_t n = 0;

	strlist_free(out);
	if (u == NULL)
		return false;
	gids = xcalloc(f->ngroups + 1, sizeof(*gids));
	pg = find_gid(f, u->gid);
	if (pg != NULL)
		strlist_push(out, pg->name);
	else
		strlist_push_owned(
		    out, xasprintf("%llu", (unsigned long long)u->gid));
	gids[n++] = u->gid;
	for (size_t i = 0; i < f->ngroups; i++) {
		const struct permcheck_account *g = &f->groups[i];

		if (!strlist_has(&g->members, user) ||
		    gid_listed(gids, n, g->id))
			continue;
		strlist_push(out, g->name);
		gids[n++] = g->id;
	}
	free(gids);
	return true;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A sorted copy of l's pointers (borrowed strings). */
static char **
sorted(const struct strlist *l)
{
	char **v = xcalloc(l->n + 1, sizeof(*v));

	memcpy(v, l->v, l->n * sizeof(*v));
	qsort(v, l->n, sizeof(*v), cmp_str);
	return v;
}

bool
permcheck_groups_equal(
    const struct strlist *want, const struct strlist *got, bool exact)
{
	char **a, **b;
	bool eq = true;

	if (want->n != got->n)
		return false;
	if (exact) {
		for (size_t i = 0; i < want->n; i++)
			if (strcmp(want->v[i], got->v[i]) != 0)
				return false;
		return true;
	}
	a = sorted(want);
	b = sorted(got);
	for (size_t i = 0; eq && i < want->n; i++)
		eq = strcmp(a[i], b[i]) == 0;
	free(a);
	free(b);
	return eq;
}

/* ================================================== rows */

static void
row_add(struct permcheck_rows *rows, char *name, char *subject, bool passed,
    bool skipped, char *message)
{
	struct permcheck_row *r;

	rows->v = xreallocarray(rows->v, rows->n + 1, sizeof(*rows->v));
	r = &rows->v[rows->n++];
	r->name = name;
	r->subject = subject;
	r->passed = passed;
	r->skipped = skipped;
	r->message = message;
	if (skipped)
		rows->skipped++;
	else if (!passed)
		rows->failed++;
}

void
permcheck_rows_free(struct permcheck_rows *rows)
{
	for (size_t i = 0; i < rows->n; i++) {
		free(rows->v[i].name);
		free(rows->v[i].subject);
		free(rows->v[i].message);
	}
	free(rows->v);
	memset(rows, 0, sizeof(*rows));
}

/* b's text, handed over; b is released (buf_detach alone re-inits it). */
static char *
take(struct buf *b)
{
	char *s = buf_detach(b, NULL);

	buf_release(b);
	return s;
}

/* Appends l's items separated by sep. */
static void
join(struct buf *b, const struct strlist *l, const char *sep)
{
	for (size_t i = 0; i < l->n; i++)
		buf_addf(b, "%s%s", i ? sep : "", l->v[i]);
}

/* Appends the items of a that are not in b: " PREFIX x, y". */
static void
diff_items(struct buf *m, const struct strlist *a, const struct strlist *b,
    const char *prefix)
{
	bool first = true;

	for (size_t i = 0; i < a->n; i++) {
		if (strlist_has(b, a->v[i]))
			continue;
		buf_addf(m, "%s%s", first ? prefix : ", ", a->v[i]);
		first = false;
	}
}

static char *
user_mismatch(const struct strlist *want, const struct strlist *got, bool exact)
{
	struct buf m;
	bool same_set = permcheck_groups_equal(want, got, false);

	buf_init(&m, 1u << 16);
	buf_adds(&m, "expected [");
	join(&m, want, " ");
	buf_adds(&m, exact ? "] in this order, got [" : "], got [");
	join(&m, got, " ");
	buf_addc(&m, ']');
	if (same_set) {
		buf_adds(&m, " (same groups, other order)");
	} else {
		diff_items(&m, want, got, "; missing ");
		diff_items(&m, got, want, "; extra ");
	}
	return take(&m);
}

static void
eval_user(const struct permcheck_spec *s, const struct permcheck_user *u,
    const struct permcheck_facts *f, struct permcheck_rows *rows)
{
	struct strlist got = { NULL, 0 };
	struct buf name;
	bool ok;

	buf_init(&name, 1u << 16);
	buf_addf(&name, "user %s: ", u->name);
	join(&name, &u->groups, ",");
	if (!permcheck_user_groups(f, u->name, &got)) {
		row_add(rows, take(&name), xasprintf("user %s", u->name), false,
		    s->skip_missing,
		    xstrdup(s->skip_missing
		                ? "no such user (missing_users: skip)"
		                : "no such user"));
		return;
	}
	ok = permcheck_groups_equal(&u->groups, &got, s->exact_order);
	row_add(rows, take(&name), xasprintf("user %s", u->name), ok, false,
	    ok ? NULL : user_mismatch(&u->groups, &got, s->exact_order));
	strlist_free(&got);
}

/* The first passwd entry of its name (later duplicates are shadowed). */
static bool
first_of_name(const struct permcheck_facts *f, size_t i)
{
	return find_user(f, f->users[i].name) == &f->users[i];
}

/* Appends "USER in [G1 G2]" for a matching user outside p->only. */
static bool
pattern_offender(const struct permcheck_pattern *p, const char *user,
    const struct permcheck_facts *f, struct buf *m, size_t *shown)
{
	struct strlist got = { NULL, 0 };
	bool bad = false;

	(void)permcheck_user_groups(f, user, &got);
	for (size_t i = 0; i < got.n && !bad; i++)
		bad = !strlist_has(&p->only, got.v[i]);
	if (bad && (*shown)++ < PERMCHECK_LIST_SHOWN) {
		buf_addf(m, "%s%s in [", *shown > 1 ? ", " : "", user);
		join(m, &got, " ");
		buf_addc(m, ']');
	}
	strlist_free(&got);
	return bad;
}

static void
eval_pattern(const struct permcheck_pattern *p, const struct permcheck_facts *f,
    struct permcheck_rows *rows)
{
	struct buf name, m;
	size_t bad = 0, shown = 0;

	buf_init(&name, 1u << 16);
	buf_init(&m, 1u << 16);
	buf_addf(&name, "pattern %s: only ", p->glob);
	join(&name, &p->only, ",");
	for (size_t i = 0; i < f->nusers; i++)
		if (first_of_name(f, i) &&
		    fnmatch(p->glob, f->users[i].name, 0) == 0 &&
		    pattern_offender(p, f->users[i].name, f, &m, &shown))
			bad++;
	if (bad > PERMCHECK_LIST_SHOWN)
		buf_addf(&m, " and %zu more", bad - PERMCHECK_LIST_SHOWN);
	row_add(rows, take(&name), xasprintf("pattern %s", p->glob), bad == 0,
	    false, bad ? take(&m) : NULL);
	buf_release(&m);
}

/*
 * "directory root:postgres 0750" from the parts that are checked (NULL /
 * !mode_set: not); "exists" when none is.
 */
static void
attrs_describe(struct buf *b, const char *type, const char *owner,
    const char *group, bool mode_set, unsigned mode)
{
	size_t start = b->len;

	if (type != NULL)
		buf_adds(b, type);
	if (owner != NULL || group != NULL)
		buf_addf(b, "%s%s:%s", b->len > start ? " " : "",
		    owner ? owner : "-", group ? group : "-");
	if (mode_set)
		buf_addf(b, "%s%04o", b->len > start ? " " : "", mode);
	if (b->len == start)
		buf_adds(b, "exists");
}

static void
path_describe(struct buf *b, const struct permcheck_path *p)
{
	attrs_describe(b, permcheck_type_name(p->type), p->owner, p->group,
	    p->mode_set, p->mode);
}

/* stat's %F as a permcheck type ("regular empty file" is a file too). */
static enum permcheck_type
stat_type(const char *f)
{
	if (strcmp(f, "regular file") == 0 ||
	    strcmp(f, "regular empty file") == 0)
		return PERMCHECK_FILE;
	if (strcmp(f, "directory") == 0)
		return PERMCHECK_DIR;
	if (strcmp(f, "symbolic link") == 0)
		return PERMCHECK_LINK;
	return PERMCHECK_ANY;
}

/* want is a name or a number; either matches. */
static bool
id_matches(const char *want, const char *name, uint64_t id)
{
	uint64_t n;

	if (strcmp(want, name) == 0)
		return true;
	return parse_u64(want, strlen(want), PERMCHECK_ID_MAX, &n) == 0 &&
	       n == id;
}

static bool
path_ok(const struct permcheck_path *p, const struct permcheck_stat *st)
{
	if (p->type != PERMCHECK_ANY && stat_type(st->type) != p->type)
		return false;
	if (p->owner != NULL && !id_matches(p->owner, st->user, st->uid))
		return false;
	if (p->group != NULL && !id_matches(p->group, st->group, st->gid))
		return false;
	return !p->mode_set || p->mode == st->mode;
}

/* The actual values, in path_describe's shape; a type this check has no
 * name for (a fifo, a socket...) as stat calls it. */
static void
path_actual(struct buf *b, const struct permcheck_path *p,
    const struct permcheck_stat *st)
{
	enum permcheck_type t = stat_type(st->type);
	const char *type = NULL;

	if (p->type != PERMCHECK_ANY)
		type = t == PERMCHECK_ANY ? st->type : permcheck_type_name(t);
	attrs_describe(b, type, p->owner ? st->user : NULL,
	    p->group ? st->group : NULL, p->mode_set, st->mode);
}

static void
eval_path(const struct permcheck_path *p, const struct permcheck_stat *st,
    struct permcheck_rows *rows)
{
	struct buf name, m;
	bool ok = st->exists && path_ok(p, st);

	buf_init(&name, 1u << 16);
	buf_init(&m, 1u << 16);
	buf_addf(&name, "path %s: ", p->path);
	path_describe(&name, p);
	if (!st->exists) {
		buf_adds(&m, "does not exist");
	} else if (!ok) {
		buf_adds(&m, "expected ");
		path_describe(&m, p);
		buf_adds(&m, ", got ");
		path_actual(&m, p, st);
	}
	row_add(rows, take(&name), xasprintf("path %s", p->path), ok, false,
	    ok ? NULL : take(&m));
	buf_release(&m);
}

static void
eval_absent(const char *pattern, const struct strlist *matches,
    struct permcheck_rows *rows)
{
	struct buf m;
	size_t n = matches->n;

	buf_init(&m, 1u << 16);
	buf_adds(&m, "exists: ");
	for (size_t i = 0; i < n && i < PERMCHECK_LIST_SHOWN; i++)
		buf_addf(&m, "%s%s", i ? ", " : "", matches->v[i]);
	if (n > PERMCHECK_LIST_SHOWN)
		buf_addf(&m, " and %zu more", n - PERMCHECK_LIST_SHOWN);
	row_add(rows, xasprintf("absent %s", pattern),
	    xasprintf("absent %s", pattern), n == 0, false,
	    n ? take(&m) : NULL);
	buf_release(&m);
}

void
permcheck_evaluate(const struct permcheck_spec *s,
    const struct permcheck_facts *f, struct permcheck_rows *rows)
{
	for (size_t i = 0; i < s->nusers; i++)
		eval_user(s, &s->users[i], f, rows);
	for (size_t i = 0; i < s->npatterns; i++)
		eval_pattern(&s->patterns[i], f, rows);
	for (size_t i = 0; i < s->npaths && i < f->npaths; i++)
		eval_path(&s->paths[i], &f->stats[i], rows);
	for (size_t i = 0; i < s->absent.n && i < f->nabsent; i++)
		eval_absent(s->absent.v[i], &f->matches[i], rows);
}

void
permcheck_summary(
    const struct permcheck_rows *rows, size_t max, struct buf *out)
{
	struct buf item;
	size_t listed = 0;

	buf_init(&item, 1u << 16);
	buf_addf(
	    out, "%zu of %zu permission rows failed", rows->failed, rows->n);
	for (size_t i = 0; i < rows->n; i++) {
		const struct permcheck_row *r = &rows->v[i];

		if (r->passed || r->skipped)
			continue;
		buf_reset(&item);
		buf_addf(&item, "%s%s: %s", listed ? "; " : ": ", r->subject,
		    r->message ? r->message : "failed");
		if (listed > 0 && out->len + item.len > max)
			break;
		buf_add(out, item.data, item.len);
		listed++;
	}
	if (listed < rows->failed)
		buf_addf(out, "; and %zu more", rows->failed - listed);
	buf_release(&item);
}
