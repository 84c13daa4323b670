/*
 * test_authfile.c - the auth file loader (good file, every error class with
 * its line number, lookups) and the md5 helpers (known answers from a real
 * PostgreSQL 15 and from an independent MD5).
 *
 * Files under test/unit/data/authfile/ are named relative to the repository
 * root, where the runner is started.  Cases that need odd bytes (NUL) or
 * long lines are written to temporary files instead.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/authfile.h"
#include "sluice/common.h"
#include "unit.h"

Suite *authfile_suite(void);

#define DATA "test/unit/data/authfile/"

/* PostgreSQL 15 stored this for role md5user, password md5_pw. */
#define PG_MD5USER "md5b1116845021429c9cd5c0c6bb22019de"
/* md5 secret of bob / bob_pw (good.txt). */
#define BOB_MD5 "md54a0d40169ffbda7b06c71adf47ca41d6"
#define CAROL_SCRAM "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==" \
	"$q1ubec6uAo02eyjv8UwtOUPj+dExG/DVGIG77ujOWZE=:EaPjmIc1GKa/6wWFHd/ommtjo1trNl7ee0rgBrtg1Qk="

/* ---------------------------------------------------------------------- */
/* Helpers */

static struct authfile *load_ok(const char *path)
{
	char err[512] = "";
	struct authfile *af = authfile_load(path, err, sizeof(err));

	ck_assert_msg(af != NULL, "%s", err);
	return af;
}

/* ---------------------------------------------------------------------- */
/* A good file */

static const struct {
	const char *user;
	const char *secret;
	enum auth_secret_kind kind;
} good_entries[] = {
	{ "alice", "plain-secret", AUTH_SECRET_PLAIN },
	{ "bob", BOB_MD5, AUTH_SECRET_MD5 },
	{ "carol", CAROL_SCRAM, AUTH_SECRET_SCRAM },
	{ "we\"ird", "pa\"ss \"word\"", AUTH_SECRET_PLAIN },
	{ "spaces in name", "  leading and trailing  ", AUTH_SECRET_PLAIN },
	{ "empty", "", AUTH_SECRET_PLAIN },
	{ "crlf", "windows line end", AUTH_SECRET_PLAIN },
	{ "indented", "y", AUTH_SECRET_PLAIN },
	{ "semi;colon", "#not a comment", AUTH_SECRET_PLAIN },
	{ "md5lookalike", "md5-not-a-hash", AUTH_SECRET_PLAIN },
	{ "Alice", "case matters", AUTH_SECRET_PLAIN },
	{ "last", "no newline", AUTH_SECRET_PLAIN },
};

START_TEST(test_good_lookup)
{
	struct authfile *af = load_ok(DATA "good.txt");
	const char *secret = authfile_lookup(af, good_entries[_i].user);

	ck_assert_msg(secret != NULL, "user \"%s\" missing", good_entries[_i].user);
	ck_assert_str_eq(secret, good_entries[_i].secret);
	ck_assert_int_eq(authfile_secret_kind(secret), good_entries[_i].kind);
	authfile_free(af);
}
END_TEST

START_TEST(test_good_count)
{
	struct authfile *af = load_ok(DATA "good.txt");

	ck_assert_uint_eq(authfile_count(af), ARRAY_SIZE(good_entries));
	authfile_free(af);
}
END_TEST

static const char *const misses[] = {
	"nobody", "ALICE", "alic", "alicee", "alice ", " alice", "", "we\"\"ird", "\"alice\"",
	"last\n", "crlf\r", "; the last line has no newline", "spaces",
};

START_TEST(test_lookup_miss)
{
	struct authfile *af = load_ok(DATA "good.txt");

	ck_assert_ptr_null(authfile_lookup(af, misses[_i]));
	authfile_free(af);
}
END_TEST

START_TEST(test_empty_and_null)
{
	char *path = unit_write_temp("; only comments\n\n   \n# here\n", 27);
	struct authfile *af = load_ok(path);

	ck_assert_uint_eq(authfile_count(af), 0);
	ck_assert_ptr_null(authfile_lookup(af, "alice"));
	authfile_free(af);
	unlink(path);
	free(path);

	path = unit_write_temp("", 0);
	af = load_ok(path);
	ck_assert_uint_eq(authfile_count(af), 0);
	authfile_free(af);
	unlink(path);
	free(path);

	authfile_free(NULL);
	ck_assert_ptr_null(authfile_lookup(NULL, "alice"));
	ck_assert_uint_eq(authfile_count(NULL), 0);
}
END_TEST

/* Many users: the sorted table finds every one of them. */
START_TEST(test_many_users)
{
	size_t n = 500, cap = n * 40, len = 0;
	char *text = xmalloc(cap), *path;
	struct authfile *af;

	for (size_t i = n; i > 0; i--)
		len += (size_t)snprintf(text + len, cap - len, "\"user%zu\" \"pw%zu\"\n", i, i * 7);
	path = unit_write_temp(text, len);
	af = load_ok(path);
	ck_assert_uint_eq(authfile_count(af), n);
	for (size_t i = 1; i <= n; i++) {
		char user[32], pw[32];

		snprintf(user, sizeof(user), "user%zu", i);
		snprintf(pw, sizeof(pw), "pw%zu", i * 7);
		ck_assert_str_eq(authfile_lookup(af, user), pw);
	}
	ck_assert_ptr_null(authfile_lookup(af, "user0"));
	ck_assert_ptr_null(authfile_lookup(af, "user501"));
	authfile_free(af);
	unlink(path);
	free(path);
	free(text);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Bad files: the whole message, line number included */

static const struct {
	const char *file;
	const char *error;      /* after "<path>:" */
} bad_files[] = {
	{ "bad_unquoted_user.txt", "2: expected a quoted user name" },
	{ "bad_unterminated_user.txt", "3: unterminated quoted user name" },
	{ "bad_missing_secret.txt", "2: missing secret after the user name" },
	{ "bad_missing_secret_blanks.txt", "2: missing secret after the user name" },
	{ "bad_unquoted_secret.txt", "1: expected a quoted secret" },
	{ "bad_unterminated_secret.txt", "3: unterminated quoted secret" },
	{ "bad_multiline_secret.txt", "1: unterminated quoted secret" },
	{ "bad_glued_user.txt", "1: expected a space after the quoted user name" },
	{ "bad_no_separator.txt", "1: missing secret after the user name" },
	{ "bad_glued_secret.txt", "2: unexpected character after the quoted secret" },
	{ "bad_empty_user.txt", "1: empty user name" },
	{ "bad_long_user.txt", "1: user name longer than 63 bytes" },
	{ "bad_scram.txt", "1: malformed SCRAM-SHA-256 secret" },
	{ "bad_md5_upper.txt", "1: md5 secret must be written in lower-case hex" },
	{ "bad_duplicate.txt", "5: duplicate user \"alice\" (first listed on line 1)" },
	{ "bad_duplicate_adjacent.txt", "2: duplicate user \"bob\" (first listed on line 1)" },
};

START_TEST(test_bad_file)
{
	char path[256], want[512], err[512] = "";
	struct authfile *af;

	snprintf(path, sizeof(path), DATA "%s", bad_files[_i].file);
	snprintf(want, sizeof(want), "%s:%s", path, bad_files[_i].error);
	af = authfile_load(path, err, sizeof(err));
	ck_assert_msg(af == NULL, "%s loaded", path);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_missing_file)
{
	char err[512] = "";

	ck_assert_ptr_null(authfile_load(DATA "no-such-file.txt", err, sizeof(err)));
	ck_assert_str_eq(err, DATA "no-such-file.txt: No such file or directory");
	/* A directory opens but cannot be read. */
	ck_assert_ptr_null(authfile_load(DATA, err, sizeof(err)));
	ck_assert_int_eq(strncmp(err, DATA ": ", strlen(DATA ": ")), 0);
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char data[] = "\"bob\" \"ok\"\n\"ali\0ce\" \"pw\"\n";
	char *path = unit_write_temp(data, sizeof(data) - 1);
	char err[512], want[512];

	ck_assert_ptr_null(authfile_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
	ck_assert_str_eq(err, want);
	unlink(path);
	free(path);
}
END_TEST

/* Limits: 63-byte user and 8192-byte secret load, one more byte fails. */
START_TEST(test_limits)
{
	size_t ulen = AUTHFILE_MAX_USER + (size_t)(_i & 1);
	size_t slen = AUTHFILE_MAX_SECRET + (size_t)(_i >> 1);
	char *text = xmalloc(ulen + slen + 16), *path, err[512] = "", want[512];
	struct authfile *af;
	size_t len = 0;

	text[len++] = '"';
	memset(text + len, 'u', ulen);
	len += ulen;
	memcpy(text + len, "\" \"", 3);
	len += 3;
	memset(text + len, 's', slen);
	len += slen;
	memcpy(text + len, "\"\n", 2);
	len += 2;
	path = unit_write_temp(text, len);
	af = authfile_load(path, err, sizeof(err));
	if (_i == 0) {
		ck_assert_msg(af != NULL, "%s", err);
		text[1 + ulen] = '\0';
		ck_assert_uint_eq(strlen(authfile_lookup(af, text + 1)), AUTHFILE_MAX_SECRET);
	} else {
		ck_assert_ptr_null(af);
		snprintf(want, sizeof(want), "%s:1: %s", path,
		         (_i & 1) ? "user name longer than 63 bytes" : "secret longer than 8192 bytes");
		ck_assert_str_eq(err, want);
	}
	authfile_free(af);
	unlink(path);
	free(path);
	free(text);
}
END_TEST

START_TEST(test_error_buffer)
{
	char err[12];

	/* Truncated, still terminated; no buffer at all is fine too. */
	ck_assert_ptr_null(authfile_load(DATA "bad_scram.txt", err, sizeof(err)));
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	ck_assert_ptr_null(authfile_load(DATA "bad_scram.txt", NULL, 0));
	ck_assert_ptr_null(authfile_load(DATA "no-such-file.txt", err, 0));
}
END_TEST

/* Secrets as PostgreSQL 15 stored them. */
START_TEST(test_postgres_file)
{
	struct authfile *af = load_ok(DATA "postgres15.txt");

	ck_assert_str_eq(authfile_lookup(af, "md5user"), PG_MD5USER);
	ck_assert_int_eq(authfile_secret_kind(authfile_lookup(af, "md5user")), AUTH_SECRET_MD5);
	ck_assert_int_eq(authfile_secret_kind(authfile_lookup(af, "app")), AUTH_SECRET_SCRAM);
	ck_assert_int_eq(authfile_secret_kind(authfile_lookup(af, "u_lig")), AUTH_SECRET_SCRAM);
	authfile_free(af);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Secret kinds (PostgreSQL's get_password_type rules) */

static const struct {
	const char *secret;
	enum auth_secret_kind kind;
} kinds[] = {
	{ PG_MD5USER, AUTH_SECRET_MD5 },
	{ "md5" "0123456789abcdef0123456789abcdef", AUTH_SECRET_MD5 },
	{ "md5" "0123456789ABCDEF0123456789abcdef", AUTH_SECRET_PLAIN },
	{ "md5" "0123456789abcdef0123456789abcde", AUTH_SECRET_PLAIN },
	{ "md5" "0123456789abcdef0123456789abcdef0", AUTH_SECRET_PLAIN },
	{ "md5" "0123456789abcdef0123456789abcdeg", AUTH_SECRET_PLAIN },
	{ "MD5" "0123456789abcdef0123456789abcdef", AUTH_SECRET_PLAIN },
	{ "md5", AUTH_SECRET_PLAIN },
	{ CAROL_SCRAM, AUTH_SECRET_SCRAM },
	{ "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$bad:bad", AUTH_SECRET_PLAIN },
	{ "SCRAM-SHA-256", AUTH_SECRET_PLAIN },
	{ "", AUTH_SECRET_PLAIN },
	{ "hunter2", AUTH_SECRET_PLAIN },
};

START_TEST(test_secret_kind)
{
	ck_assert_msg(authfile_secret_kind(kinds[_i].secret) == kinds[_i].kind, "\"%s\"",
	              kinds[_i].secret);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* md5 */

static const struct {
	const char *password, *user, *hash;
} md5_hashes[] = {
	{ "md5_pw", "md5user", PG_MD5USER },           /* from PostgreSQL */
	{ "bob_pw", "bob", BOB_MD5 },
	{ "", "x", "md59dd4e461268c8034f5c8564e155c67a6" },
};

START_TEST(test_md5_hash)
{
	char out[AUTH_MD5_BUFLEN];

	ck_assert(auth_md5_hash(md5_hashes[_i].password, md5_hashes[_i].user, out));
	ck_assert_str_eq(out, md5_hashes[_i].hash);
}
END_TEST

static const uint8_t salt1[4] = { 0x01, 0x02, 0x03, 0x04 };
static const uint8_t salt2[4] = { 0xff, 0x00, 0x80, 0x7f };

static const struct {
	const char *stored, *user;
	const uint8_t *salt;
	const char *response;
	bool ok;
} md5_checks[] = {
	{ PG_MD5USER, "md5user", salt1, "md5bc2fe593422f66b87e0e529c6d7cc534", true },
	{ "md5_pw", "md5user", salt1, "md5bc2fe593422f66b87e0e529c6d7cc534", true },
	{ PG_MD5USER, "md5user", salt2, "md5dc35703a71d07e64a95ff8a90b9eb183", true },
	{ "md5_pw", "md5user", salt2, "md5dc35703a71d07e64a95ff8a90b9eb183", true },
	{ BOB_MD5, "bob", salt1, "md5309be5ec1fa833e8ed3dfe797b167d99", true },
	/* An md5 secret already contains the user: the user argument is unused. */
	{ PG_MD5USER, "someone", salt1, "md5bc2fe593422f66b87e0e529c6d7cc534", true },
	/* Wrong answers. */
	{ PG_MD5USER, "md5user", salt2, "md5bc2fe593422f66b87e0e529c6d7cc534", false },
	{ "md5_pw", "other", salt1, "md5bc2fe593422f66b87e0e529c6d7cc534", false },
	{ "md5_PW", "md5user", salt1, "md5bc2fe593422f66b87e0e529c6d7cc534", false },
	{ PG_MD5USER, "md5user", salt1, "md5bc2fe593422f66b87e0e529c6d7cc535", false },
	{ PG_MD5USER, "md5user", salt1, "MD5bc2fe593422f66b87e0e529c6d7cc534", false },
	{ PG_MD5USER, "md5user", salt1, "md5BC2FE593422F66B87E0E529C6D7CC534", false },
	{ PG_MD5USER, "md5user", salt1, "md5bc2fe593422f66b87e0e529c6d7cc53", false },
	{ PG_MD5USER, "md5user", salt1, "md5bc2fe593422f66b87e0e529c6d7cc5344", false },
	{ PG_MD5USER, "md5user", salt1, "", false },
	{ PG_MD5USER, "md5user", salt1, PG_MD5USER, false },     /* the secret itself */
	/* Secrets md5 cannot be checked against. */
	{ CAROL_SCRAM, "carol", salt1, "md5bc2fe593422f66b87e0e529c6d7cc534", false },
	{ "", "x", salt1, "md59dd4e461268c8034f5c8564e155c67a6", false },
};

START_TEST(test_md5_verify)
{
	ck_assert_msg(auth_md5_verify(md5_checks[_i].stored, md5_checks[_i].user, md5_checks[_i].salt,
	                              md5_checks[_i].response) == md5_checks[_i].ok,
	              "case %d", _i);
}
END_TEST

/* ---------------------------------------------------------------------- */

Suite *authfile_suite(void)
{
	Suite *s = suite_create("authfile");
	TCase *tc = tcase_create("load");

	tcase_add_loop_test(tc, test_good_lookup, 0, (int)ARRAY_SIZE(good_entries));
	tcase_add_test(tc, test_good_count);
	tcase_add_loop_test(tc, test_lookup_miss, 0, (int)ARRAY_SIZE(misses));
	tcase_add_test(tc, test_empty_and_null);
	tcase_add_test(tc, test_many_users);
	tcase_add_loop_test(tc, test_bad_file, 0, (int)ARRAY_SIZE(bad_files));
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_loop_test(tc, test_limits, 0, 3);
	tcase_add_test(tc, test_error_buffer);
	tcase_add_test(tc, test_postgres_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("secrets");
	tcase_add_loop_test(tc, test_secret_kind, 0, (int)ARRAY_SIZE(kinds));
	tcase_add_loop_test(tc, test_md5_hash, 0, (int)ARRAY_SIZE(md5_hashes));
	tcase_add_loop_test(tc, test_md5_verify, 0, (int)ARRAY_SIZE(md5_checks));
	suite_add_tcase(s, tc);
	return s;
}
