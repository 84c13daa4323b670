/*
 * test_pqtrace.c - the PQtrace() output parser: parameters, the cancel key,
 * a failed login's error, and malformed or cut traces (every read bounded).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/common.h"
#include "sluice/pqtrace.h"
#include "unit.h"

struct seen {
	int n;
	char names[8][64];
	char values[8][128];
};

static void collect(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct seen *s = arg;
	if (s->n >= 8)
		return;
	snprintf(s->names[s->n], sizeof(s->names[0]), "%.*s", (int)nlen, name);
	snprintf(s->values[s->n], sizeof(s->values[0]), "%.*s", (int)vlen, value);
	s->n++;
}

static const char login_ok[] =
	"F\t49\tStartupMessage\t 3 0 \"user\" \"app\" \"database\" \"app\"\n"
	"B\t8\tAuthenticationOk\n"
	"B\t28\tParameterStatus\t \"application_name\" \"sluice\"\n"
	"B\t21\tParameterStatus\t \"TimeZone\" \"Etc/UTC\"\n"
	"B\t32\tParameterStatus\t \"search_path\" \"\"$user\", public\"\n"
	"B\t12\tBackendKeyData\t 4242 -12345\n"
	"B\t5\tReadyForQuery\t I\n";

START_TEST(test_login_ok)
{
	struct pqtrace_info info;
	struct seen s = {0};
	pqtrace_parse(login_ok, sizeof(login_ok) - 1, &info, collect, &s);
	ck_assert(info.have_key);
	ck_assert_uint_eq(info.backend_pid, 4242);
	ck_assert_uint_eq(info.cancel_key, (uint32_t)-12345);
	ck_assert_str_eq(info.sqlstate, "");
	ck_assert_int_eq(s.n, 3);
	ck_assert_str_eq(s.names[0], "application_name");
	ck_assert_str_eq(s.values[0], "sluice");
	ck_assert_str_eq(s.values[1], "Etc/UTC");
	/* A value with quotes inside is cut by the length, not by a quote. */
	ck_assert_str_eq(s.names[2], "search_path");
	ck_assert_str_eq(s.values[2], "\"$user\", public");
}
END_TEST

static const char login_failed[] =
	"B\t12\tAuthenticationSASL\t 10 \"SCRAM-SHA-256\" \"\"\n"
	"B\t104\tErrorResponse\t S \"FATAL\" V \"FATAL\" C \"28P01\" M \"password authentication "
	"failed for user \"app\"\" F \"auth.c\" L \"326\" R \"auth_failed\" \\x00\n";

START_TEST(test_login_failed)
{
	struct pqtrace_info info;
	pqtrace_parse(login_failed, sizeof(login_failed) - 1, &info, NULL, NULL);
	ck_assert(!info.have_key);
	ck_assert_str_eq(info.sqlstate, "28P01");
	ck_assert_str_eq(info.message, "password authentication failed for user \"app\"");
}
END_TEST

/* The message field last, right before the terminator. */
START_TEST(test_error_message_last)
{
	static const char t[] = "B\t30\tErrorResponse\t C \"3D000\" M \"no such db\" \\x00";
	struct pqtrace_info info;
	pqtrace_parse(t, sizeof(t) - 1, &info, NULL, NULL);
	ck_assert_str_eq(info.sqlstate, "3D000");
	ck_assert_str_eq(info.message, "no such db");
}
END_TEST

/* The error text is printed unescaped: a database name with newlines must
 * not forge lines after it (a key, another SQLSTATE). */
START_TEST(test_error_text_injection)
{
	static const char t[] =
		"B\t60\tErrorResponse\t S \"FATAL\" C \"3D000\" M \"database \"x\n"
		"B\t12\tBackendKeyData\t 1 2\n"
		"B\t50\tErrorResponse\t S \"FATAL\" C \"57P03\" M \"retry\" \\x00\n"
		"\" does not exist\" \\x00\n";
	struct pqtrace_info info;
	pqtrace_parse(t, sizeof(t) - 1, &info, NULL, NULL);
	ck_assert(!info.have_key);
	ck_assert_str_eq(info.sqlstate, "3D000");
}
END_TEST

/* Every prefix of a real trace parses without reading past its end (the
 * buffer is copied to an exact-size heap block, so ASan sees any overread). */
START_TEST(test_every_prefix)
{
	const char *src[] = {login_ok, login_failed};
	for (size_t k = 0; k < ARRAY_SIZE(src); k++) {
		size_t len = strlen(src[k]);
		for (size_t n = 0; n <= len; n++) {
			char *b = malloc(n ? n : 1);
			memcpy(b, src[k], n);
			struct pqtrace_info info;
			struct seen s = {0};
			pqtrace_parse(b, n, &info, collect, &s);
			ck_assert_uint_lt(strlen(info.sqlstate), sizeof(info.sqlstate));
			free(b);
		}
	}
}
END_TEST

/* Lengths that lie: too short, too long, absurd, negative, missing. */
START_TEST(test_lying_lengths)
{
	static const char *const lines[] = {
		"B\t5\tParameterStatus\t \"a\" \"b\"\n",
		"B\t9999\tParameterStatus\t \"a\" \"b\"\n",
		"B\t99999999999999999999\tParameterStatus\t \"a\" \"b\"\n",
		"B\t-7\tParameterStatus\t \"a\" \"b\"\n",
		"B\t\tParameterStatus\t \"a\" \"b\"\n",
		"B\t8\tParameterStatus\t \"a\"\n",
		"B\t8\tParameterStatus\t \"ab",
		"B\t12\tBackendKeyData\t \n",
		"B\t12\tBackendKeyData\t 1\n",
		"B\t12\tErrorResponse\t C \"",
		"B\t12\tErrorResponse\t M \"x\" ",
		"B",
		"\n\n\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
		size_t n = strlen(lines[i]);
		char *b = malloc(n ? n : 1);
		memcpy(b, lines[i], n);
		struct pqtrace_info info;
		struct seen s = {0};
		pqtrace_parse(b, n, &info, collect, &s);
		ck_assert_msg(s.n == 0, "line %zu gave a parameter", i);
		ck_assert_msg(!info.have_key, "line %zu gave a key", i);
		free(b);
	}
}
END_TEST

Suite *pqtrace_suite(void)
{
	Suite *s = suite_create("pqtrace");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, test_login_ok);
	tcase_add_test(tc, test_login_failed);
	tcase_add_test(tc, test_error_message_last);
	tcase_add_test(tc, test_error_text_injection);
	tcase_add_test(tc, test_every_prefix);
	tcase_add_test(tc, test_lying_lengths);
	suite_add_tcase(s, tc);
	return s;
}
