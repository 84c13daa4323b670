/*
 * vars.c - tracked parameter cache (see vars.h).
 */
#include "sluice/vars.h"
#include "sluice/config.h"
#include "sluice/pktbuf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Reported by every PostgreSQL since 9.x and settable by a client. */
static const char *const base_tracked[] = {
	"client_encoding", "DateStyle", "TimeZone", "standard_conforming_strings",
	"application_name",
};

void vars_free(struct varlist *l)
{
	for (int i = 0; i < l->count; i++) {
		free(l->items[i].name);
		free(l->items[i].value);
	}
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

static struct var *find(const struct varlist *l, const char *name)
{
	for (int i = 0; i < l->count; i++)
		if (strcasecmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

const char *vars_get(const struct varlist *l, const char *name)
{
	struct var *v = find(l, name);
	return v ? v->value : NULL;
}

void vars_set(struct varlist *l, const char *name, const char *value)
{
	struct var *v = find(l, name);
	if (v) {
		if (strcmp(v->value, value) != 0) {
			free(v->value);
			v->value = xstrdup(value);
		}
		return;
	}
	l->items = xrealloc(l->items, sizeof(*l->items) * (size_t)(l->count + 1));
	l->items[l->count].name = xstrdup(name);
	l->items[l->count].value = xstrdup(value);
	l->count++;
}

void vars_copy(struct varlist *dst, const struct varlist *src)
{
	for (int i = 0; i < src->count; i++)
		vars_set(dst, src->items[i].name, src->items[i].value);
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
	for (int i = 0; i < want->count; i++) {
		const struct var *w = &want->items[i];
		const char *cur = vars_get(have, w->name);
		if ((cur && strcmp(cur, w->value) == 0) || !safe_name(w->name))
			continue;
		pktbuf_put_bytes(sql, "SET ", 4);
		pktbuf_put_bytes(sql, w->name, strlen(w->name));
		pktbuf_put_bytes(sql, " TO ", 4);
		put_literal(sql, w->value);
		pktbuf_put_bytes(sql, ";", 1);
		n++;
	}
	return n;
}
