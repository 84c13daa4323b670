/*
 * test_hba.c - the hba module: matching driven by data files, every class
 * of bad file, and the small API edges.
 *
 * Each test/unit/data/hba/NAME.rules that should load has a NAME.eval next
 * to it: one login per line and the answer expected for it,
 *
 *   KIND  ADDRESS  DATABASE  USER  TLS  ->  METHOD  line=N
 *
 *   KIND      local (Unix socket) or host (TCP)
 *   ADDRESS   the client's IPv4 or IPv6 address; `-` for local
 *   DATABASE  names; a word in double quotes may hold blanks ("" = a quote)
 *   USER
 *   TLS       tls or notls
 *   METHOD    hba_method_name() of the expected method
 *   N         the expected rule's line, 0 for "no rule matched"
 *
 * Blank lines are skipped, and a word starting with `#` starts a comment.
 * Paths are relative to the repository root, where the runner is started.
 */
#include <check.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/common.h"
#include "sluice/hba.h"
#include "unit.h"

Suite *hba_suite(void);

#define DATA "test/unit/data/hba/"

/* ---------------------------------------------------------------------- */
/* Helpers */

/* Build a TCP request from an address literal (or a Unix one for NULL). */
static struct hba_request request(const char *ip, const char *db, const char *user, bool tls,
				  struct sockaddr_storage *ss)
{
	struct hba_request req = { .database = db, .user = user, .is_tls = tls };

	memset(ss, 0, sizeof(*ss));
	if (!ip) {
		req.is_unix = true;
		return req;
	}
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(5432);
		ck_assert_msg(inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1, "bad IPv6 %s", ip);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(5432);
		ck_assert_msg(inet_pton(AF_INET, ip, &sin->sin_addr) == 1, "bad IPv4 %s", ip);
	}
	req.addr = (const struct sockaddr *)ss;
	return req;
}

/* ---------------------------------------------------------------------- */
/* The .eval format */

#define EVAL_WORDS 8

/*
 * Split s in place into at most max words (see the file header).  Returns
 * the number of words, max + 1 if there are more, or -1 for an unterminated
 * quote.
 */
static int eval_words(char *s, char **words, int max)
{
	int n = 0;

	for (;;) {
		char *out;

		while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
			s++;
		if (*s == '\0' || *s == '#')
			return n;
		if (n == max)
			return max + 1;
		words[n++] = out = s;
		if (*s == '"') {
			for (s++;; s++) {
				if (*s == '\0')
					return -1;
				if (*s == '"' && s[1] == '"')
					*out++ = *s++;
				else if (*s == '"')
					break;
				else
					*out++ = *s;
			}
			s++;
		} else {
			while (*s && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
				*out++ = *s++;
		}
		if (*s)
			s++;
		*out = '\0';
	}
}

static bool method_by_name(const char *name, enum hba_method *m)
{
	for (int i = HBA_REJECT; i <= HBA_PEER; i++) {
		if (strcmp(hba_method_name((enum hba_method)i), name) == 0) {
			*m = (enum hba_method)i;
			return true;
		}
	}
	return false;
}

/* Append a formatted line to a growing malloc'd report, "\n" between lines. */
static void report(char **buf, size_t *len, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void report(char **buf, size_t *len, const char *fmt, ...)
{
	va_list ap;
	char *line;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	*buf = xrealloc(*buf, *len + (size_t)n + 2);
	if (*len)
		(*buf)[(*len)++] = '\n';
	memcpy(*buf + *len, line, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
	free(line);
}

/* The rule sets with a .eval table; test_every_eval_listed keeps it whole. */
static const char *const rule_sets[] = {
	"basic", "addr", "tls", "names", "empty", "comments",
};

/*
 * Load NAME.rules, then check every line of NAME.eval against it.  All
 * mismatches are collected, so one run shows every wrong answer.
 */
START_TEST(test_eval)
{
	char path[256], err[2048], *line = NULL, *failures = NULL;
	size_t cap = 0, flen = 0;
	int lineno = 0, cases = 0;
	struct hba *h;
	FILE *f;

	snprintf(path, sizeof(path), DATA "%s.rules", rule_sets[_i]);
	h = hba_load(path, err, sizeof(err));
	ck_assert_msg(h != NULL, "%s did not load:\n%s", path, err);
	ck_assert_str_eq(err, "");

	snprintf(path, sizeof(path), DATA "%s.eval", rule_sets[_i]);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (getline(&line, &cap, f) >= 0) {
		char *w[EVAL_WORDS];
		struct sockaddr_storage ss;
		struct hba_request req;
		enum hba_method want, got;
		int n, want_line, got_line = -1;
		bool is_unix;

		lineno++;
		n = eval_words(line, w, EVAL_WORDS);
		if (n == 0)
			continue;
		is_unix = n == EVAL_WORDS && strcmp(w[0], "local") == 0;
		ck_assert_msg(n == EVAL_WORDS &&
			      (is_unix || strcmp(w[0], "host") == 0) &&
			      (strcmp(w[1], "-") == 0) == is_unix &&
			      (strcmp(w[4], "tls") == 0 || strcmp(w[4], "notls") == 0) &&
			      strcmp(w[5], "->") == 0 &&
			      method_by_name(w[6], &want) &&
			      sscanf(w[7], "line=%d", &want_line) == 1,
			      "%s:%d: not in the form: KIND ADDRESS DATABASE USER TLS -> "
			      "METHOD line=N", path, lineno);
		req = request(is_unix ? NULL : w[1], w[2], w[3], strcmp(w[4], "tls") == 0, &ss);
		got = hba_match(h, &req, &got_line);
		if (got != want || got_line != want_line)
			report(&failures, &flen, "%s:%d: %s %s %s %s %s: want %s line=%d, got "
			       "%s line=%d", path, lineno, w[0], w[1], w[2], w[3], w[4],
			       hba_method_name(want), want_line, hba_method_name(got), got_line);
		cases++;
	}
	free(line);
	fclose(f);
	hba_free(h);
	ck_assert_msg(cases > 0, "%s has no cases", path);
	if (failures) {
		char msg[4096];

		snprintf(msg, sizeof(msg), "%s", failures);
		free(failures);
		ck_abort_msg("%s", msg);
	}
}
END_TEST

/* Every NAME.eval in the data directory is run by test_eval. */
START_TEST(test_every_eval_listed)
{
	DIR *d = opendir(DATA);
	struct dirent *e;
	int seen = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		bool listed = false;

		if (len < 6 || strcmp(e->d_name + len - 5, ".eval") != 0)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(rule_sets); i++)
			listed |= strlen(rule_sets[i]) == len - 5 &&
				  strncmp(rule_sets[i], e->d_name, len - 5) == 0;
		ck_assert_msg(listed, "%s is not in rule_sets[]", e->d_name);
		seen++;
	}
	closedir(d);
	ck_assert_int_eq(seen, (int)ARRAY_SIZE(rule_sets));
}
END_TEST

/* The eval reader itself: quoting, comments, limits. */
START_TEST(test_eval_words)
{
	char s1[] = "host \"my db\" \"x\"\"y\" a#b  # comment";
	char s2[] = "  # only a comment";
	char s3[] = "a \"open";
	char s4[] = "1 2 3";
	char *w[4];

	ck_assert_int_eq(eval_words(s1, w, 4), 4);
	ck_assert_str_eq(w[0], "host");
	ck_assert_str_eq(w[1], "my db");
	ck_assert_str_eq(w[2], "x\"y");
	ck_assert_str_eq(w[3], "a#b");
	ck_assert_int_eq(eval_words(s2, w, 4), 0);
	ck_assert_int_eq(eval_words(s3, w, 4), -1);
	ck_assert_int_eq(eval_words(s4, w, 2), 3);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Bad files: each fails with one "FILE:LINE: message" line. */

static const struct {
	const char *file;
	const char *errfile;  /* file named in the message; NULL = file */
	const char *prefix;   /* after "FILE:" */
} bad_files[] = {
	{ "bad_type.rules", NULL, "3: unknown connection type \"hostgssenc\" (use local, host, "
	  "hostssl or hostnossl)" },
	{ "bad_missing_user.rules", NULL, "2: missing user field" },
	{ "bad_missing_addr.rules", NULL, "2: missing address field" },
	{ "bad_missing_method.rules", NULL, "3: missing authentication method" },
	{ "bad_cidr.rules", NULL, "2: invalid CIDR mask \"/33\" in \"10.0.0.0/33\" (use 0 to 32)" },
	{ "bad_cidr6.rules", NULL, "2: invalid CIDR mask \"/129\" in \"::1/129\" (use 0 to 128)" },
	{ "bad_cidr_text.rules", NULL, "2: invalid CIDR mask \"/8x\" in \"10.0.0.0/8x\"" },
	{ "bad_cidr_addr.rules", NULL, "2: invalid IP address \"10.0.0.300\" in \"10.0.0.300/8\"" },
	{ "bad_hostname.rules", NULL, "2: \"db.example.com\" is not an IP address (host names are "
	  "not supported)" },
	{ "bad_samehost.rules", NULL, "2: address \"samenet\" is not supported" },
	{ "bad_no_mask.rules", NULL, "2: IP address \"127.0.0.1\" has no mask: write 127.0.0.1/32 "
	  "or add a netmask column" },
	{ "bad_mask_family.rules", NULL, "2: netmask \"ffff::\" is not of the same family as "
	  "address \"127.0.0.1\"" },
	{ "bad_method.rules", NULL, "2: unknown authentication method \"kerberos5\"" },
	{ "bad_method_unsupported.rules", NULL, "2: authentication method \"ldap\" is not "
	  "supported" },
	{ "bad_list_method.rules", NULL, "2: the authentication method must be a single value, "
	  "not a list" },
	{ "bad_peer_host.rules", NULL, "3: authentication method \"peer\" is only valid on local "
	  "lines" },
	{ "bad_cert_host.rules", NULL, "2: authentication method \"cert\" is only valid on "
	  "hostssl lines" },
	{ "bad_option.rules", NULL, "2: unknown authentication option \"map\" (only clientcert "
	  "is supported)" },
	{ "bad_option_format.rules", NULL, "2: authentication option not in name=value format: "
	  "\"extra\"" },
	{ "bad_clientcert.rules", NULL, "2: clientcert must be verify-ca or verify-full, not "
	  "\"1\"" },
	{ "bad_clientcert_host.rules", NULL, "2: clientcert is only valid on hostssl lines" },
	{ "bad_clientcert_cert.rules", NULL, "2: clientcert=verify-ca cannot be used with cert" },
	{ "bad_group.rules", NULL, "2: user \"+admins\": group membership (+role) is not "
	  "supported" },
	{ "bad_group_include.rules", "group_users.list", "2: user \"+staff\": group membership "
	  "(+role) is not supported" },
	{ "bad_include_missing.rules", NULL, "3: cannot open @nosuch.list (" DATA "nosuch.list): "
	  "No such file or directory" },
	{ "bad_include_loop.rules", "loop.list", "1: @loop.list: @files nested more than 8 deep" },
	{ "bad_include_empty_name.rules", NULL, "2: \"@\" must be followed by a file name" },
	{ "bad_quote.rules", NULL, "2: unterminated quoted string" },
	{ "bad_quote_include.rules", "bad_quote.list", "2: unterminated quoted string" },
	{ "bad_regex.rules", NULL, "2: user \"/^app\": regular expressions are not supported" },
	{ "bad_samerole.rules", NULL, "2: database \"samerole\" is not supported" },
	{ "bad_empty_item.rules", NULL, "2: empty item in a comma-separated list" },
	{ "bad_continued.rules", NULL, "3: unknown authentication method \"kerberos5\"" },
};

START_TEST(test_bad_file)
{
	char err[4096], want[512], path[256];
	const char *errfile = bad_files[_i].errfile ? bad_files[_i].errfile : bad_files[_i].file;

	snprintf(path, sizeof(path), DATA "%s", bad_files[_i].file);
	ck_assert_msg(hba_load(path, err, sizeof(err)) == NULL, "%s loaded", path);
	snprintf(want, sizeof(want), DATA "%s:%s", errfile, bad_files[_i].prefix);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got:\n%s\nwant prefix:\n%s", err,
		      want);
	ck_assert_msg(unit_count_lines(err) == 1, "more than one problem:\n%s", err);
}
END_TEST

/* Every problem in a file is reported, in file order, one per line. */
START_TEST(test_bad_multi_lists_all)
{
	char err[4096];

	ck_assert_ptr_null(hba_load(DATA "bad_multi.rules", err, sizeof(err)));
	ck_assert_str_eq(err,
		DATA "bad_multi.rules:3: unknown connection type \"hostx\" (use local, host, "
		"hostssl or hostnossl)\n"
		DATA "bad_multi.rules:5: invalid CIDR mask \"/40\" in \"10.0.0.0/40\" (use 0 to 32)\n"
		DATA "bad_multi.rules:6: user \"+grp\": group membership (+role) is not supported; "
		"list the users or use an @file\n"
		DATA "bad_multi.rules:7: IP address \"1.2.3.4\" has no mask: write 1.2.3.4/32 or "
		"add a netmask column\n"
		DATA "bad_multi.rules:9: authentication method \"peer\" is only valid on local lines\n"
		DATA "bad_multi.rules:10: unknown authentication option \"map\" (only clientcert is "
		"supported)");
}
END_TEST

START_TEST(test_missing_file)
{
	char err[1024];

	ck_assert_ptr_null(hba_load(DATA "no-such-file.rules", err, sizeof(err)));
	ck_assert_str_eq(err, DATA "no-such-file.rules: cannot read file: No such file or "
			 "directory");
	ck_assert_ptr_null(hba_load(DATA, err, sizeof(err)));
	ck_assert_str_eq(err, DATA ": cannot read file: Is a directory");
}
END_TEST

/* The message is cut to fit; no buffer at all is fine too. */
START_TEST(test_small_error_buffer)
{
	char err[16];

	memset(err, 'x', sizeof(err));
	ck_assert_ptr_null(hba_load(DATA "bad_multi.rules", err, sizeof(err)));
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	ck_assert(strncmp(err, DATA, sizeof(err) - 1) == 0);
	ck_assert_ptr_null(hba_load(DATA "bad_multi.rules", NULL, 0));
	memset(err, 'x', sizeof(err));
	ck_assert_ptr_null(hba_load(DATA "bad_multi.rules", err, 0));
	ck_assert_int_eq(err[0], 'x');
}
END_TEST

/* ---------------------------------------------------------------------- */
/* API edges */

START_TEST(test_empty_file_loads)
{
	char err[64] = "stale";
	struct hba *h = hba_load(DATA "empty.rules", err, sizeof(err));
	struct sockaddr_storage ss;
	struct hba_request req = request(NULL, "db", "u", false, &ss);

	ck_assert_ptr_nonnull(h);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(hba_match(h, &req, NULL), HBA_REJECT);
	hba_free(h);
	hba_free(NULL);
}
END_TEST

START_TEST(test_method_names)
{
	static const char *const want[] = {
		[HBA_REJECT] = "reject", [HBA_TRUST] = "trust", [HBA_PASSWORD] = "password",
		[HBA_MD5] = "md5", [HBA_SCRAM] = "scram-sha-256", [HBA_CERT] = "cert",
		[HBA_PEER] = "peer",
	};

	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		ck_assert_str_eq(hba_method_name((enum hba_method)i), want[i]);
	ck_assert_str_eq(hba_method_name((enum hba_method)(HBA_PEER + 1)), "?");
	ck_assert_str_eq(hba_method_name((enum hba_method)-1), "?");
}
END_TEST

/* clientcert is kept per rule; cert implies verify-full. */
START_TEST(test_clientcert)
{
	char err[256];
	struct hba *h = hba_load(DATA "tls.rules", err, sizeof(err));

	ck_assert_msg(h != NULL, "%s", err);
	ck_assert_int_eq(hba_clientcert(h, 3), HBA_CLIENTCERT_NONE);
	ck_assert_int_eq(hba_clientcert(h, 8), HBA_CLIENTCERT_VERIFY_FULL);
	ck_assert_int_eq(hba_clientcert(h, 9), HBA_CLIENTCERT_VERIFY_CA);
	ck_assert_int_eq(hba_clientcert(h, 10), HBA_CLIENTCERT_VERIFY_FULL);
	ck_assert_int_eq(hba_clientcert(h, 11), HBA_CLIENTCERT_VERIFY_FULL);
	ck_assert_int_eq(hba_clientcert(h, 0), HBA_CLIENTCERT_NONE);
	ck_assert_int_eq(hba_clientcert(h, 999), HBA_CLIENTCERT_NONE);
	hba_free(h);
}
END_TEST

/* A TCP request without an IP address matches only `all` addresses. */
START_TEST(test_tcp_without_ip)
{
	char *path = unit_write_temp_str("host all all 0.0.0.0/0 trust\n"
			       "host all all ::/0 trust\n"
			       "host all all all md5\n");
	char err[256];
	struct hba *h = hba_load(path, err, sizeof(err));
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct hba_request req = { .database = "db", .user = "u" };
	int line = -1;

	unlink(path);
	free(path);
	ck_assert_msg(h != NULL, "%s", err);
	ck_assert_int_eq(hba_match(h, &req, &line), HBA_MD5);
	ck_assert_int_eq(line, 3);
	req.addr = (const struct sockaddr *)&sun;
	ck_assert_int_eq(hba_match(h, &req, &line), HBA_MD5);
	ck_assert_int_eq(line, 3);
	hba_free(h);
}
END_TEST

/* CRLF line ends, including a continuation backslash before CRLF. */
START_TEST(test_crlf)
{
	char *path = unit_write_temp_str("# crlf\r\n"
			       "host all all \\\r\n"
			       "  10.0.0.0/8 md5\r\n"
			       "local all all trust\r\n");
	char err[256];
	struct hba *h = hba_load(path, err, sizeof(err));
	struct sockaddr_storage ss;
	struct hba_request req;
	int line = -1;

	unlink(path);
	free(path);
	ck_assert_msg(h != NULL, "%s", err);
	req = request("10.9.8.7", "db", "u", false, &ss);
	ck_assert_int_eq(hba_match(h, &req, &line), HBA_MD5);
	ck_assert_int_eq(line, 2);
	req = request(NULL, "db", "u", false, &ss);
	ck_assert_int_eq(hba_match(h, &req, &line), HBA_TRUST);
	ck_assert_int_eq(line, 4);
	hba_free(h);
}
END_TEST

/* An absolute @file path is used as is. */
START_TEST(test_include_absolute)
{
	char *list = unit_write_temp_str("zed\n");
	char *text, *path, err[512];
	struct hba *h;
	struct sockaddr_storage ss;
	struct hba_request req;

	ck_assert_int_gt(asprintf(&text, "local all @%s trust\n", list), 0);
	path = unit_write_temp_str(text);
	h = hba_load(path, err, sizeof(err));
	unlink(path);
	unlink(list);
	free(path);
	free(list);
	free(text);
	ck_assert_msg(h != NULL, "%s", err);
	req = request(NULL, "db", "zed", false, &ss);
	ck_assert_int_eq(hba_match(h, &req, NULL), HBA_TRUST);
	req = request(NULL, "db", "amy", false, &ss);
	ck_assert_int_eq(hba_match(h, &req, NULL), HBA_REJECT);
	hba_free(h);
}
END_TEST

Suite *hba_suite(void)
{
	Suite *s = suite_create("hba");
	TCase *tc = tcase_create("eval");

	tcase_add_loop_test(tc, test_eval, 0, (int)ARRAY_SIZE(rule_sets));
	tcase_add_test(tc, test_every_eval_listed);
	tcase_add_test(tc, test_eval_words);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_bad_file, 0, (int)ARRAY_SIZE(bad_files));
	tcase_add_test(tc, test_bad_multi_lists_all);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_small_error_buffer);
	suite_add_tcase(s, tc);

	tc = tcase_create("api");
	tcase_add_test(tc, test_empty_file_loads);
	tcase_add_test(tc, test_method_names);
	tcase_add_test(tc, test_clientcert);
	tcase_add_test(tc, test_tcp_without_ip);
	tcase_add_test(tc, test_crlf);
	tcase_add_test(tc, test_include_absolute);
	suite_add_tcase(s, tc);
	return s;
}
