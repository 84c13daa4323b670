/*
 * vars.c - tracked parameter cache (see vars.h).
 */
#include "sluice/vars.h"
#include "sluice/config.h"
#include "sluice/pktbuf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Reported by every PostgreSQL since 9.x and settable by a client. */
static const char *const base_tracked[] = {
	"client_encoding", "DateStyle", "TimeZone", "standard_conforming_strings",
	"application_name",
};

struct varblob {
	struct varblob *next;
	struct var_intern *owner;
	uint32_t refs, hash, len;
	int count;
	uint64_t sig, sig_gen;    /* vars_signature(), shared by its lists */
	char data[];
};

static uint32_t blob_hash(const char *p, uint32_t n)
{
	uint32_t h = 2166136261u;
	for (uint32_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

static void blob_unref(struct varblob *b)
{
	if (--b->refs)
		return;
	struct var_intern *t = b->owner;
	struct varblob **pp = &t->buckets[b->hash % t->nbuckets];
	while (*pp != b)
		pp = &(*pp)->next;
	*pp = b->next;
	t->count--;
	free(b);
}

void vars_intern(struct varlist *l, struct var_intern *t)
{
	if (l->shared || !l->count)
		return;
	if (!t->buckets) {
		t->nbuckets = 256;
		t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	}
	uint32_t h = blob_hash(l->buf, l->len);
	struct varblob *b;
	for (b = t->buckets[h % t->nbuckets]; b; b = b->next)
		if (b->hash == h && b->len == l->len && memcmp(b->data, l->buf, l->len) == 0)
			break;
	if (!b) {
		b = xmalloc(sizeof(*b) + l->len);
		b->owner = t;
		b->refs = 0;
		b->hash = h;
		b->len = l->len;
		b->count = l->count;
		b->sig_gen = 0;
		memcpy(b->data, l->buf, l->len);
		b->next = t->buckets[h % t->nbuckets];
		t->buckets[h % t->nbuckets] = b;
		t->count++;
	}
	b->refs++;
	free(l->buf);
	l->buf = b->data;
	l->cap = 0;
	l->shared = b;
}

void var_intern_free(struct var_intern *t)
{
	/* Every list has released its blob by now; free what is left anyway. */
	for (uint32_t i = 0; t->buckets && i < t->nbuckets; i++)
		while (t->buckets[i]) {
			struct varblob *b = t->buckets[i];
			t->buckets[i] = b->next;
			free(b);
		}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

/* Make the list's buffer its own before changing it. */
static void unshare(struct varlist *l)
{
	struct varblob *b = l->shared;
	if (!b)
		return;
	char *own = xmalloc(l->len ? l->len : 1);
	memcpy(own, b->data, l->len);
	l->buf = own;
	l->cap = l->len;
	l->shared = NULL;
	blob_unref(b);
}

void vars_free(struct varlist *l)
{
	if (l->shared)
		blob_unref(l->shared);
	else
		free(l->buf);
	l->shared = NULL;
	l->buf = NULL;
	l->len = l->cap = 0;
	l->count = 0;
	l->sig_gen = 0;
}

/* FNV-1a, 64-bit; the name part case-folded. */
static uint64_t pair_hash(const char *name, const char *value)
{
	uint64_t h = 14695981039346656037ull;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p)) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;   /* separator no name or value holds */
	for (const char *p = value; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return h;
}

uint64_t vars_signature(struct varlist *l, const struct config *cfg)
{
	uint64_t gen = cfg ? cfg->generation : 0;
	if (gen && l->sig_gen == gen)
		return l->sig;
	if (gen && l->shared && l->shared->sig_gen == gen) {
		/* Interned: another client with the same list computed it. */
		l->sig = l->shared->sig;
		l->sig_gen = gen;
		return l->sig;
	}
	uint64_t sig = 0;
	for (const char *n = vars_next(l, NULL); n; n = vars_next(l, n))
		if (vars_tracked_name(cfg, n))
			sig += pair_hash(n, vars_value_of(n));   /* order-independent */
	l->sig = sig;
	l->sig_gen = gen;
	if (l->shared) {
		l->shared->sig = sig;
		l->shared->sig_gen = gen;
	}
	return sig;
}

const char *vars_next(const struct varlist *l, const char *name)
{
	if (!name)
		return l->count ? l->buf : NULL;
	const char *v = vars_value_of(name);
	const char *next = v + strlen(v) + 1;
	return next < l->buf + l->len ? next : NULL;
}

static char *find(const struct varlist *l, const char *name)
{
	for (const char *n = vars_next(l, NULL); n; n = vars_next(l, n))
		if (strcasecmp(n, name) == 0)
			return (char *)n;
	return NULL;
}

const char *vars_get(const struct varlist *l, const char *name)
{
	const char *n = find(l, name);
	return n ? vars_value_of(n) : NULL;
}

static void reserve(struct varlist *l, uint32_t need)
{
	unshare(l);
	if (need <= l->cap)
		return;
	/* Exact (rounded to 16): lists are small and rarely change after login,
	 * and every idle client keeps one. */
	uint32_t cap = (need + 15) & ~15u;
	l->buf = xrealloc(l->buf, cap);
	l->cap = cap;
}

void vars_add_defaults(struct varlist *l, const struct varlist *defaults)
{
	uint32_t extra = 0;
	const char *d;

	for (d = vars_next(defaults, NULL); d; d = vars_next(defaults, d))
		if (!find(l, d))
			extra += (uint32_t)(strlen(d) + strlen(vars_value_of(d)) + 2);
	if (!extra)
		return;
	reserve(l, l->len + extra);
	l->sig_gen = 0;
	for (d = vars_next(defaults, NULL); d; d = vars_next(defaults, d)) {
		if (find(l, d))
			continue;
		const char *v = vars_value_of(d);
		size_t n = (size_t)(v + strlen(v) + 1 - d);   /* name and value */
		memcpy(l->buf + l->len, d, n);
		l->len += (uint32_t)n;
		l->count++;
	}
}

void vars_set(struct varlist *l, const char *name, const char *value)
{
	char *copy = NULL;
	char *n = find(l, name);

	l->sig_gen = 0;   /* the cached signature is stale */
	/* The value may point into the list itself, which is about to move. */
	if (l->buf && value >= l->buf && value < l->buf + l->len)
		value = copy = xstrdup(value);
	size_t nl = strlen(value) + 1;
	if (n) {
		uint32_t off = (uint32_t)(vars_value_of(n) - l->buf);
		size_t ol = strlen(l->buf + off) + 1;
		if (strcmp(l->buf + off, value) != 0) {
			reserve(l, (uint32_t)(l->len - ol + nl));   /* (unshares: offsets stay) */
			memmove(l->buf + off + nl, l->buf + off + ol, l->len - off - ol);
			memcpy(l->buf + off, value, nl);
			l->len = (uint32_t)(l->len - ol + nl);
		}
	} else {
		size_t kl = strlen(name) + 1;
		reserve(l, (uint32_t)(l->len + kl + nl));
		memcpy(l->buf + l->len, name, kl);
		memcpy(l->buf + l->len + kl, value, nl);
		l->len += (uint32_t)(kl + nl);
		l->count++;
	}
	free(copy);
}

void vars_copy(struct varlist *dst, const struct varlist *src)
{
	for (const char *n = vars_next(src, NULL); n; n = vars_next(src, n))
		vars_set(dst, n, vars_value_of(n));
}

const char *vars_tracked_name(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(base_tracked); i++)
		if (strcasecmp(base_tracked[i], name) == 0)
			return base_tracked[i];
	const struct config_strlist *x = &cfg->track_extra_parameters;
	for (int i = 0; i < x->count; i++)
		if (strcasecmp(x->items[i], name) == 0)
			return x->items[i];
	return NULL;
}

/* Setting names are identifiers; anything else is never put into SQL. */
static bool safe_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(*s == '_' || *s == '.' || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* An escape-string literal: E'...' with quotes and backslashes doubled, so
 * the result is the same whatever standard_conforming_strings is. */
static void put_literal(struct pktbuf *sql, const char *v)
{
	pktbuf_put_bytes(sql, "E'", 2);
	for (; *v; v++) {
		if (*v == '\'' || *v == '\\')
			pktbuf_put_byte(sql, (uint8_t)*v);
		pktbuf_put_byte(sql, (uint8_t)*v);
	}
	pktbuf_put_byte(sql, '\'');
}

int vars_build_set(const struct varlist *want, const struct varlist *have,
		   struct pktbuf *sql)
{
	int n = 0;
	for (const char *name = vars_next(want, NULL); name; name = vars_next(want, name)) {
		const char *value = vars_value_of(name);
		const char *cur = vars_get(have, name);
		if ((cur && strcmp(cur, value) == 0) || !safe_name(name))
			continue;
		pktbuf_put_bytes(sql, "SET ", 4);
		pktbuf_put_bytes(sql, name, strlen(name));
		pktbuf_put_bytes(sql, " TO ", 4);
		put_literal(sql, value);
		pktbuf_put_bytes(sql, ";", 1);
		n++;
	}
	return n;
}

/*
 * Split an `options` value into words: whitespace separates, a backslash
 * takes the next character literally (libpq's rule for options).  Every word
 * must set a tracked setting: "-c name=value", "-cname=value" or
 * "--name=value".  Returns NULL or the reason it is refused.
 */
const char *vars_apply_options(struct varlist *vars, const struct config *cfg, const char *opts,
			       char *why, size_t whylen)
{
	char word[200];
	bool expect_c = false;

	while (*opts) {
		size_t n = 0;
		while (isspace((unsigned char)*opts))
			opts++;
		if (!*opts)
			break;
		while (*opts && !isspace((unsigned char)*opts)) {
			if (*opts == '\\' && opts[1])
				opts++;
			if (n + 1 >= sizeof(word))
				return "options value too long";
			word[n++] = *opts++;
		}
		word[n] = 0;
		const char *set = NULL;
		if (expect_c) {
			set = word;
			expect_c = false;
		} else if (strcmp(word, "-c") == 0) {
			expect_c = true;
			continue;
		} else if (strncmp(word, "-c", 2) == 0) {
			set = word + 2;
		} else if (strncmp(word, "--", 2) == 0) {
			set = word + 2;
		}
		char *eq = set ? strchr(set, '=') : NULL;
		if (!eq) {
			snprintf(why, whylen, "unsupported startup option \"%s\" (only -c name=value)", word);
			return why;
		}
		*eq = 0;
		const char *name = vars_tracked_name(cfg, set);
		if (!name) {
			snprintf(why, whylen, "unsupported setting in options startup parameter: %s", set);
			return why;
		}
		vars_set(vars, name, eq + 1);
	}
	return expect_c ? "options: -c without a setting" : NULL;
}
