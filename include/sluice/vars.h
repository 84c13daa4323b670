/*
 * vars.h - the parameter cache: the values of tracked settings a client
 * expects and a server currently has (PgBouncer's "varcache").
 *
 * Tracked settings are the ones PostgreSQL reports with ParameterStatus and
 * a client may legitimately set at startup: client_encoding, DateStyle,
 * TimeZone, standard_conforming_strings, application_name, plus the names in
 * track_extra_parameters (IntervalStyle by default).  Before a client's
 * query runs on a server, the server is brought in line with one SET query.
 */
#ifndef SLUICE_VARS_H
#define SLUICE_VARS_H

#include "sluice/common.h"

struct config;
struct pktbuf;

/*
 * A small list of name/value pairs; names compare case-insensitively.  One
 * allocation holds them all, packed as "name\0value\0..." (idle clients
 * are many: a pointer pair and two allocations per setting would double
 * what an idle client costs).
 */
struct varblob;

struct varlist {
	char *buf;
	uint32_t len, cap;
	int count;
	/* Cached vars_signature() and the config generation it was computed
	 * for (0: none). */
	uint64_t sig;
	uint64_t sig_gen;
	struct varblob *shared;   /* buf belongs to an interned blob (read-only) */
};

/*
 * Interned lists: most clients carry byte-identical settings, so a logged-in
 * client's list shares one read-only copy; the first change makes it a
 * private copy again.
 */
struct var_intern {
	struct varblob **buckets;
	uint32_t nbuckets, count;
};

void vars_intern(struct varlist *l, struct var_intern *t);
void var_intern_free(struct var_intern *t);

/* Iterate: name = vars_next(l, NULL) gives the first, vars_next(l, name) the
 * one after; NULL at the end.  The value follows its name. */
const char *vars_next(const struct varlist *l, const char *name);
static inline const char *vars_value_of(const char *name)
{
	while (*name)
		name++;
	return name + 1;
}

void vars_free(struct varlist *l);

/*
 * A 64-bit summary of the tracked settings of a list (names case-folded,
 * order ignored), cached until the list changes.  Two lists with the same
 * signature need no SET to align them; the hot path of every server
 * hand-off compares these instead of the settings.
 */
uint64_t vars_signature(struct varlist *l, const struct config *cfg);
const char *vars_get(const struct varlist *l, const char *name);
void vars_set(struct varlist *l, const char *name, const char *value);
/* Add every entry of defaults whose name l lacks, growing l once. */
void vars_add_defaults(struct varlist *l, const struct varlist *defaults);
void vars_copy(struct varlist *dst, const struct varlist *src);

/*
 * If name is tracked, return its canonical spelling (as PostgreSQL reports
 * it); otherwise NULL.
 */
const char *vars_tracked_name(const struct config *cfg, const char *name);

/*
 * A client's `options` startup parameter (untrusted): words split on
 * whitespace, a backslash takes the next character literally (libpq's
 * rule); each must set a tracked setting ("-c name=value", "-cname=value"
 * or "--name=value"), applied to vars.  Returns NULL, or the reason it is
 * refused (possibly written into why).
 */
const char *vars_apply_options(struct varlist *vars, const struct config *cfg, const char *opts,
			       char *why, size_t whylen);

/*
 * Append to sql (a NUL-terminated text being built in a pktbuf, without the
 * NUL) one "SET name TO 'value';" per variable whose wanted value differs from
 * the one the server has.  Returns the number of SETs added.
 */
int vars_build_set(const struct varlist *want, const struct varlist *have,
		   struct pktbuf *sql);

#endif /* SLUICE_VARS_H */
