/*
 * test_vars.c - the tracked-settings cache: the varlist operations, which
 * names are tracked, and the SET text that brings a server in line.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/pktbuf.h"
#include "sluice/proto.h"
#include "sluice/vars.h"
#include "unit.h"

/* ---------------------------------------------------------------------- */
/* Helpers */

/* Fill l from a NULL-terminated list of name, value, name, value, ... */
static void fill(struct varlist *l, const char *const *kv)
{
	for (; kv && kv[0]; kv += 2)
		vars_set(l, kv[0], kv[1]);
}

/* The SET text as a C string (malloc'd); *n gets the number of SETs. */
static char *build(const struct varlist *want, const struct varlist *have, int *n)
{
	struct pktbuf b;

	pktbuf_init(&b);
	*n = vars_build_set(want, have, &b);
	char *s = malloc(b.len + 1);
	ck_assert_ptr_nonnull(s);
	if (b.len)
		memcpy(s, b.data, b.len);
	s[b.len] = '\0';
	ck_assert_msg(memchr(s, '\0', b.len) == NULL, "NUL inside the SET text");
	pktbuf_free(&b);
	return s;
}

/* ---------------------------------------------------------------------- */
/* varlist */

START_TEST(test_set_get)
{
	struct varlist l = {0};

	ck_assert_ptr_null(vars_get(&l, "TimeZone"));
	vars_set(&l, "TimeZone", "UTC");
	vars_set(&l, "client_encoding", "UTF8");
	ck_assert_int_eq(l.count, 2);
	ck_assert_str_eq(vars_get(&l, "TimeZone"), "UTC");
	ck_assert_str_eq(vars_get(&l, "timezone"), "UTC");
	ck_assert_str_eq(vars_get(&l, "TIMEZONE"), "UTC");
	ck_assert_str_eq(vars_get(&l, "Client_Encoding"), "UTF8");
	ck_assert_ptr_null(vars_get(&l, "DateStyle"));
	ck_assert_ptr_null(vars_get(&l, "TimeZon"));
	ck_assert_ptr_null(vars_get(&l, "TimeZoneX"));
	ck_assert_ptr_null(vars_get(&l, ""));
	vars_free(&l);
	ck_assert_int_eq(l.count, 0);
	ck_assert_ptr_null(l.buf);
	ck_assert_ptr_null(vars_get(&l, "TimeZone"));
}
END_TEST

START_TEST(test_set_overwrite)
{
	struct varlist l = {0};

	vars_set(&l, "DateStyle", "ISO, MDY");
	vars_set(&l, "datestyle", "German");
	ck_assert_int_eq(l.count, 1);
	ck_assert_str_eq(vars_get(&l, "DateStyle"), "German");
	/* The first spelling of the name is kept. */
	ck_assert_str_eq(vars_next(&l, NULL), "DateStyle");

	/* Same value again: no change, no duplicate. */
	vars_set(&l, "DATESTYLE", "German");
	ck_assert_int_eq(l.count, 1);
	ck_assert_str_eq(vars_get(&l, "datestyle"), "German");

	/* Setting a value to itself (the stored pointer) is safe. */
	vars_set(&l, "DateStyle", vars_get(&l, "DateStyle"));
	ck_assert_str_eq(vars_get(&l, "DateStyle"), "German");

	/* Empty values are values. */
	vars_set(&l, "application_name", "");
	ck_assert_int_eq(l.count, 2);
	ck_assert_str_eq(vars_get(&l, "application_name"), "");
	vars_set(&l, "application_name", "psql");
	ck_assert_str_eq(vars_get(&l, "application_name"), "psql");
	vars_free(&l);
}
END_TEST

/* The list owns copies: changing the caller's buffers changes nothing. */
START_TEST(test_set_copies_strings)
{
	struct varlist l = {0};
	char name[] = "TimeZone", value[] = "UTC";

	vars_set(&l, name, value);
	name[0] = 'X';
	value[0] = 'X';
	ck_assert_str_eq(vars_get(&l, "TimeZone"), "UTC");
	ck_assert_ptr_null(vars_get(&l, "XimeZone"));
	vars_free(&l);
}
END_TEST

START_TEST(test_many)
{
	struct varlist l = {0};
	char name[32], value[32];

	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "var_%d", i);
		snprintf(value, sizeof(value), "%d", i * 7);
		vars_set(&l, name, value);
	}
	ck_assert_int_eq(l.count, 200);
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "VAR_%d", i);
		snprintf(value, sizeof(value), "%d", i * 7);
		ck_assert_str_eq(vars_get(&l, name), value);
	}
	vars_free(&l);
	vars_free(&l); /* freeing an empty list is fine */
}
END_TEST

START_TEST(test_copy)
{
	static const char *const src_kv[] = {"TimeZone", "UTC", "DateStyle", "ISO, MDY",
					     "application_name", "app", NULL};
	struct varlist src = {0}, dst = {0};

	fill(&src, src_kv);
	vars_set(&dst, "timezone", "Europe/Paris");
	vars_set(&dst, "client_encoding", "LATIN1");
	vars_copy(&dst, &src);

	ck_assert_int_eq(dst.count, 4);
	ck_assert_str_eq(vars_get(&dst, "TimeZone"), "UTC");
	ck_assert_str_eq(vars_get(&dst, "DateStyle"), "ISO, MDY");
	ck_assert_str_eq(vars_get(&dst, "application_name"), "app");
	ck_assert_str_eq(vars_get(&dst, "client_encoding"), "LATIN1");

	/* dst holds its own strings: freeing src leaves dst intact. */
	vars_free(&src);
	ck_assert_str_eq(vars_get(&dst, "DateStyle"), "ISO, MDY");
	ck_assert_str_eq(vars_get(&dst, "timezone"), "UTC");

	/* Copying an empty list changes nothing. */
	vars_copy(&dst, &src);
	ck_assert_int_eq(dst.count, 4);
	vars_free(&dst);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* vars_tracked_name */

struct tracked_case {
	const char *name;
	const char *canonical;   /* NULL = not tracked */
};

static const struct tracked_case tracked_cases[] = {
	{"client_encoding", "client_encoding"},
	{"CLIENT_ENCODING", "client_encoding"},
	{"Client_Encoding", "client_encoding"},
	{"DateStyle", "DateStyle"},
	{"datestyle", "DateStyle"},
	{"DATESTYLE", "DateStyle"},
	{"TimeZone", "TimeZone"},
	{"timezone", "TimeZone"},
	{"standard_conforming_strings", "standard_conforming_strings"},
	{"Standard_Conforming_Strings", "standard_conforming_strings"},
	{"application_name", "application_name"},
	{"APPLICATION_NAME", "application_name"},
	/* track_extra_parameters default. */
	{"IntervalStyle", "IntervalStyle"},
	{"intervalstyle", "IntervalStyle"},
	{"INTERVALSTYLE", "IntervalStyle"},
	/* Not tracked. */
	{"search_path", NULL},
	{"work_mem", NULL},
	{"server_version", NULL},
	{"is_superuser", NULL},
	{"user", NULL},
	{"", NULL},
	{"TimeZone ", NULL},
	{"Time_Zone", NULL},
	{"application", NULL},
};

START_TEST(test_tracked_name)
{
	const struct tracked_case *tc = &tracked_cases[_i];
	struct config *cfg = config_defaults();
	const char *got = vars_tracked_name(cfg, tc->name);

	if (tc->canonical) {
		ck_assert_msg(got != NULL, "\"%s\" not tracked", tc->name);
		ck_assert_str_eq(got, tc->canonical);
	} else {
		ck_assert_msg(got == NULL, "\"%s\" tracked as %s", tc->name, got);
	}
	config_free(cfg);
}
END_TEST

START_TEST(test_tracked_name_extra)
{
	struct config *cfg = config_defaults();

	ck_assert_int_eq(cfg->track_extra_parameters.count, 1);
	ck_assert_str_eq(cfg->track_extra_parameters.items[0], "IntervalStyle");
	ck_assert_ptr_null(vars_tracked_name(cfg, "search_path"));

	/* A config that tracks search_path too, and nothing extra. */
	struct config_strlist saved = cfg->track_extra_parameters;
	char *items[] = {(char *)"IntervalStyle", (char *)"search_path"};
	cfg->track_extra_parameters.items = items;
	cfg->track_extra_parameters.count = 2;
	ck_assert_str_eq(vars_tracked_name(cfg, "SEARCH_PATH"), "search_path");
	ck_assert_str_eq(vars_tracked_name(cfg, "intervalstyle"), "IntervalStyle");
	ck_assert_str_eq(vars_tracked_name(cfg, "timezone"), "TimeZone");

	cfg->track_extra_parameters.count = 0;
	ck_assert_ptr_null(vars_tracked_name(cfg, "IntervalStyle"));
	ck_assert_ptr_null(vars_tracked_name(cfg, "search_path"));
	ck_assert_str_eq(vars_tracked_name(cfg, "DateStyle"), "DateStyle");

	cfg->track_extra_parameters = saved;
	config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* vars_build_set */

struct set_case {
	const char *name;
	const char *want[9];     /* name, value pairs, NULL-terminated */
	const char *have[9];
	int n;
	const char *sql;
};

static const struct set_case set_cases[] = {
	{"both empty", {NULL}, {NULL}, 0, ""},
	{"equal", {"TimeZone", "UTC", "DateStyle", "ISO, MDY", NULL},
	 {"DateStyle", "ISO, MDY", "TimeZone", "UTC", NULL}, 0, ""},
	{"equal, names in other case", {"timezone", "UTC", NULL}, {"TimeZone", "UTC", NULL}, 0,
	 ""},
	{"one differs", {"TimeZone", "UTC", "DateStyle", "ISO, DMY", NULL},
	 {"TimeZone", "UTC", "DateStyle", "ISO, MDY", NULL}, 1,
	 "SET DateStyle TO E'ISO, DMY';"},
	{"missing on server", {"application_name", "psql", NULL}, {NULL}, 1,
	 "SET application_name TO E'psql';"},
	{"two differ, in want order",
	 {"TimeZone", "Europe/Paris", "client_encoding", "UTF8", "DateStyle", "ISO", NULL},
	 {"client_encoding", "UTF8", "DateStyle", "German", "TimeZone", "UTC", NULL}, 2,
	 "SET TimeZone TO E'Europe/Paris';SET DateStyle TO E'ISO';"},
	{"only on server: nothing", {NULL}, {"TimeZone", "UTC", NULL}, 0, ""},
	{"value differs in case only", {"client_encoding", "utf8", NULL},
	 {"client_encoding", "UTF8", NULL}, 1, "SET client_encoding TO E'utf8';"},
	{"empty value", {"application_name", "", NULL}, {"application_name", "x", NULL}, 1,
	 "SET application_name TO E'';"},
	{"quote doubled", {"application_name", "it's", NULL}, {NULL}, 1,
	 "SET application_name TO E'it''s';"},
	{"backslash doubled", {"application_name", "a\\b", NULL}, {NULL}, 1,
	 "SET application_name TO E'a\\\\b';"},
	{"injection attempt",
	 {"application_name", "x'; DROP TABLE t; --", NULL}, {NULL}, 1,
	 "SET application_name TO E'x''; DROP TABLE t; --';"},
	{"backslash before quote", {"application_name", "\\'", NULL}, {NULL}, 1,
	 "SET application_name TO E'\\\\''';"},
	{"trailing backslash", {"application_name", "end\\", NULL}, {NULL}, 1,
	 "SET application_name TO E'end\\\\';"},
	{"only quotes", {"application_name", "''", NULL}, {NULL}, 1,
	 "SET application_name TO E'''''';"},
	{"double quote kept", {"application_name", "say \"hi\"", NULL}, {NULL}, 1,
	 "SET application_name TO E'say \"hi\"';"},
	{"dotted name", {"myapp.tenant", "42", NULL}, {NULL}, 1,
	 "SET myapp.tenant TO E'42';"},
	{"unsafe name: space", {"bad name", "1", "TimeZone", "UTC", NULL}, {NULL}, 1,
	 "SET TimeZone TO E'UTC';"},
	{"unsafe name: semicolon", {"x;DROP TABLE t", "1", NULL}, {NULL}, 0, ""},
	{"unsafe name: quote", {"a'b", "1", NULL}, {NULL}, 0, ""},
	{"unsafe name: double quote", {"a\"b", "1", NULL}, {NULL}, 0, ""},
	{"unsafe name: dash", {"a-b", "1", NULL}, {NULL}, 0, ""},
	{"unsafe name: empty", {"", "1", "DateStyle", "ISO", NULL}, {NULL}, 1,
	 "SET DateStyle TO E'ISO';"},
	{"unsafe name: non-ASCII", {"caf\xc3\xa9", "1", NULL}, {NULL}, 0, ""},
};

START_TEST(test_build_set)
{
	const struct set_case *tc = &set_cases[_i];
	struct varlist want = {0}, have = {0};
	int n;

	fill(&want, tc->want);
	fill(&have, tc->have);
	char *sql = build(&want, &have, &n);
	ck_assert_msg(n == tc->n, "%s: %d SETs, want %d", tc->name, n, tc->n);
	ck_assert_msg(strcmp(sql, tc->sql) == 0, "%s: got [%s], want [%s]", tc->name, sql,
		      tc->sql);
	free(sql);
	vars_free(&want);
	vars_free(&have);
}
END_TEST

/* The SET text appends to what is in the buffer, so it can sit inside a
 * Query message being built. */
START_TEST(test_build_set_into_query)
{
	struct varlist want = {0}, have = {0};
	struct pktbuf b;

	vars_set(&want, "TimeZone", "UTC");
	vars_set(&want, "DateStyle", "ISO");
	vars_set(&have, "TimeZone", "UTC");

	pktbuf_init(&b);
	pktbuf_start(&b, PQ_MSG_QUERY);
	ck_assert_int_eq(vars_build_set(&want, &have, &b), 1);
	pktbuf_put_byte(&b, 0);
	pktbuf_finish(&b);

	static const char sql[] = "SET DateStyle TO E'ISO';";
	ck_assert_uint_eq(b.len, 1 + 4 + sizeof(sql));
	ck_assert_int_eq(b.data[0], 'Q');
	ck_assert_uint_eq(proto_get32(b.data + 1), 4 + sizeof(sql));
	ck_assert_mem_eq(b.data + 5, sql, sizeof(sql));

	/* Nothing to do: the buffer is left alone. */
	size_t before = b.len;
	ck_assert_int_eq(vars_build_set(&have, &have, &b), 0);
	ck_assert_uint_eq(b.len, before);

	pktbuf_free(&b);
	vars_free(&want);
	vars_free(&have);
}
END_TEST

/* ---------------------------------------------------------------------- */

/* Equal tracked settings, equal signatures: whatever the order, the case of
 * the names, or untracked extras; any tracked difference changes it. */
START_TEST(test_signature)
{
	struct config *cfg = config_defaults();
	struct varlist a = {0}, b = {0};

	vars_set(&a, "TimeZone", "UTC");
	vars_set(&a, "DateStyle", "ISO, MDY");
	vars_set(&b, "datestyle", "ISO, MDY");
	vars_set(&b, "server_version", "15.0");   /* not tracked */
	vars_set(&b, "timezone", "UTC");
	ck_assert_uint_eq(vars_signature(&a, cfg), vars_signature(&b, cfg));
	vars_set(&b, "TimeZone", "Europe/Paris");  /* the cache is refreshed */
	ck_assert_uint_ne(vars_signature(&a, cfg), vars_signature(&b, cfg));
	vars_set(&b, "TimeZone", "UTC");
	ck_assert_uint_eq(vars_signature(&a, cfg), vars_signature(&b, cfg));
	vars_set(&b, "application_name", "x");     /* tracked, only in b */
	ck_assert_uint_ne(vars_signature(&a, cfg), vars_signature(&b, cfg));
	/* Name and value boundaries matter. */
	struct varlist c = {0}, d = {0};
	vars_set(&c, "TimeZone", "UTC");
	vars_set(&d, "TimeZ", "oneUTC");
	ck_assert_uint_ne(vars_signature(&c, cfg), vars_signature(&d, cfg));
	vars_free(&a);
	vars_free(&b);
	vars_free(&c);
	vars_free(&d);
	config_free(cfg);
}
END_TEST

/* Interned lists share one copy; a change makes a private one. */
START_TEST(test_intern)
{
	struct var_intern t = {0};
	struct varlist a = {0}, b = {0};

	vars_set(&a, "TimeZone", "UTC");
	vars_set(&a, "DateStyle", "ISO");
	vars_set(&b, "TimeZone", "UTC");
	vars_set(&b, "DateStyle", "ISO");
	vars_intern(&a, &t);
	vars_intern(&b, &t);
	ck_assert_ptr_eq(a.buf, b.buf);
	ck_assert_uint_eq(t.count, 1);
	vars_set(&b, "DateStyle", "ISO");            /* no change: still shared */
	ck_assert_ptr_eq(a.buf, b.buf);
	vars_set(&b, "DateStyle", "German");         /* copy on write */
	ck_assert_ptr_ne(a.buf, b.buf);
	ck_assert_str_eq(vars_get(&a, "DateStyle"), "ISO");
	ck_assert_str_eq(vars_get(&b, "DateStyle"), "German");
	ck_assert_str_eq(vars_get(&b, "TimeZone"), "UTC");
	/* A value taken from the shared copy itself. */
	vars_set(&a, "TimeZone", vars_get(&a, "DateStyle"));
	ck_assert_str_eq(vars_get(&a, "TimeZone"), "ISO");
	ck_assert_uint_eq(t.count, 0);               /* nobody shares it any more */
	vars_free(&a);
	vars_free(&b);
	var_intern_free(&t);
}
END_TEST

/* Defaults fill in what a list lacks and keep what it has. */
START_TEST(test_add_defaults)
{
	struct var_intern t = {0};
	struct varlist d = {0}, l = {0}, shared = {0};

	vars_set(&d, "application_name", "pool");
	vars_set(&d, "client_encoding", "UTF8");
	vars_set(&d, "TimeZone", "UTC");
	vars_set(&l, "timezone", "Europe/Paris");
	vars_add_defaults(&l, &d);
	ck_assert_int_eq(l.count, 3);
	ck_assert_str_eq(vars_get(&l, "TimeZone"), "Europe/Paris");
	ck_assert_str_eq(vars_get(&l, "application_name"), "pool");
	ck_assert_str_eq(vars_get(&l, "client_encoding"), "UTF8");
	vars_add_defaults(&l, &d);                          /* nothing left to add */
	ck_assert_int_eq(l.count, 3);
	/* An interned list is copied before it grows. */
	vars_set(&shared, "application_name", "app");
	vars_intern(&shared, &t);
	const char *before = shared.buf;
	vars_add_defaults(&shared, &d);
	ck_assert_ptr_ne(shared.buf, before);
	ck_assert_int_eq(shared.count, 3);
	ck_assert_str_eq(vars_get(&shared, "application_name"), "app");
	ck_assert_str_eq(vars_get(&shared, "TimeZone"), "UTC");
	vars_free(&d);
	vars_free(&l);
	vars_free(&shared);
	var_intern_free(&t);
}
END_TEST

/* A signature is recomputed after a SET changes the config's generation,
 * and shared by interned lists. */
START_TEST(test_signature_generation)
{
	struct config *cfg = config_defaults();
	struct var_intern t = {0};
	struct varlist a = {0}, b = {0};
	char err[256];

	vars_set(&a, "TimeZone", "UTC");
	vars_set(&a, "search_path", "s1");
	vars_set(&b, "TimeZone", "UTC");
	vars_set(&b, "search_path", "s2");
	vars_intern(&a, &t);
	vars_intern(&b, &t);
	ck_assert_uint_eq(vars_signature(&a, cfg), vars_signature(&b, cfg));
	ck_assert_int_eq(config_set(cfg, "track_extra_parameters", "search_path", err,
				    sizeof(err)), 0);
	ck_assert_uint_ne(vars_signature(&a, cfg), vars_signature(&b, cfg));
	struct varlist c = {0};
	vars_set(&c, "TimeZone", "UTC");
	vars_set(&c, "search_path", "s1");
	vars_intern(&c, &t);                        /* shares a's copy */
	ck_assert_ptr_eq(c.buf, a.buf);
	ck_assert_uint_eq(vars_signature(&c, cfg), vars_signature(&a, cfg));
	vars_free(&a);
	vars_free(&b);
	vars_free(&c);
	var_intern_free(&t);
	config_free(cfg);
}
END_TEST

Suite *vars_suite(void)
{
	Suite *s = suite_create("vars");
	TCase *tc = tcase_create("varlist");

	tcase_add_test(tc, test_set_get);
	tcase_add_test(tc, test_signature);
	tcase_add_test(tc, test_intern);
	tcase_add_test(tc, test_add_defaults);
	tcase_add_test(tc, test_signature_generation);
	tcase_add_test(tc, test_set_overwrite);
	tcase_add_test(tc, test_set_copies_strings);
	tcase_add_test(tc, test_many);
	tcase_add_test(tc, test_copy);
	suite_add_tcase(s, tc);

	tc = tcase_create("tracked");
	tcase_add_loop_test(tc, test_tracked_name, 0, (int)ARRAY_SIZE(tracked_cases));
	tcase_add_test(tc, test_tracked_name_extra);
	suite_add_tcase(s, tc);

	tc = tcase_create("set");
	tcase_add_loop_test(tc, test_build_set, 0, (int)ARRAY_SIZE(set_cases));
	tcase_add_test(tc, test_build_set_into_query);
	suite_add_tcase(s, tc);
	return s;
}
