/*
 * fuzz_hba.c - the auth_hba_file parser and matcher (src/hba.c):
 * hba_load() on the input as the file's contents (line joining, quoting,
 * tokens, @file includes, every column check), then hba_match() and
 * hba_clientcert() for a fixed set of Unix, IPv4, IPv6 and IPv4-mapped
 * logins.
 *
 * hba_load() reads a path, so each input is written to a scratch directory
 * under $TMPDIR that also holds a few @files (users.list, dbs.list, a file
 * that includes itself, inc/team.list naming ../more.list).  The harness is
 * linked with -Wl,--wrap=fopen (see the Makefile): while hba_load() runs,
 * fopen() opens only files whose real path is inside the scratch directory,
 * so an input naming @/dev/zero or @../../etc/... cannot make the fuzzer
 * read the machine.
 *
 * Besides "no crash, no leak": a file that loads answers every login with
 * a method that has a name, line 0 exactly when no rule matched, and
 * hba_clientcert() of a rule that is not cert-only for a cert rule.
 *
 * Global state: the scratch directory, made once (removed at exit).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"
#include "sluice/hba.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
FILE *__wrap_fopen(const char *path, const char *mode);
FILE *__real_fopen(const char *path, const char *mode);

static char main_path[300];
static bool confined;

/* fopen() for hba.c: only inside the scratch directory while loading. */
FILE *__wrap_fopen(const char *path, const char *mode)
{
	size_t n = strlen(scratch_dir);
	char real[PATH_MAX];

	if (confined && (!realpath(path, real) || strncmp(real, scratch_dir, n) != 0 || real[n] != '/')) {
		errno = ENOENT;
		return NULL;
	}
	return __real_fopen(path, mode);
}

static void setup(void)
{
	char sub[300];

	scratch_init("fuzz_hba");
	snprintf(main_path, sizeof(main_path), "%s/pg_hba.conf", scratch_dir);
	snprintf(sub, sizeof(sub), "%s/inc", scratch_dir);
	mkdir(sub, 0700);
#define FILE_TEXT(name, text) scratch_write(name, text, strlen(text))
	FILE_TEXT("users.list", "# users\nalice bob   # two\n\"carol c\"\n@more.list\n");
	FILE_TEXT("more.list", "dave, erin\n");
	FILE_TEXT("dbs.list", "sales, \"big data\"\nreports \\\n  archive\n");
	FILE_TEXT("loop.list", "alice @loop.list\n");
	FILE_TEXT("bad.list", "alice\n\"bob\n");
	FILE_TEXT("group.list", "+staff\n");
	FILE_TEXT("inc/team.list", "frank @../more.list @sub.list\n");
	FILE_TEXT("inc/sub.list", "gina\n");
#undef FILE_TEXT
}

static void set_v4(struct sockaddr_storage *ss, const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(5432);
	inet_pton(AF_INET, ip, &sin->sin_addr);
}

static void set_v6(struct sockaddr_storage *ss, const char *ip)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(5432);
	inet_pton(AF_INET6, ip, &sin6->sin6_addr);
}

static void check_logins(const struct hba *h)
{
	static const struct {
		int family;      /* 0: unix, -1: TCP without an address */
		const char *ip;
		bool tls;
		const char *db, *user;
	} logins[] = {
		{ 0, NULL, false, "app", "alice" },
		{ 0, NULL, false, "bob", "bob" },
		{ AF_INET, "127.0.0.1", false, "app", "alice" },
		{ AF_INET, "10.1.2.3", true, "sales", "carol c" },
		{ AF_INET, "192.168.77.1", true, "big data", "dave" },
		{ AF_INET6, "::1", false, "all", "all" },
		{ AF_INET6, "::ffff:10.1.2.3", true, "reports", "frank" },
		{ AF_INET6, "2001:db8::17", true, "my db", "Jane Doe" },
		{ -1, NULL, true, "archive", "gina" },
	};

	for (size_t i = 0; i < sizeof(logins) / sizeof(logins[0]); i++) {
		struct sockaddr_storage ss;
		struct hba_request req = {
			.is_unix = logins[i].family == 0,
			.is_tls = logins[i].tls,
			.database = logins[i].db,
			.user = logins[i].user,
		};
		int line = -1;

		if (logins[i].family == AF_INET) {
			set_v4(&ss, logins[i].ip);
			req.addr = (const struct sockaddr *)&ss;
		} else if (logins[i].family == AF_INET6) {
			set_v6(&ss, logins[i].ip);
			req.addr = (const struct sockaddr *)&ss;
		}
		enum hba_method m = hba_match(h, &req, &line);
		if (strcmp(hba_method_name(m), "?") == 0 || line < 0 || (line == 0 && m != HBA_REJECT))
			abort();
		enum hba_clientcert cc = hba_clientcert(h, line);
		if (m == HBA_CERT && cc != HBA_CLIENTCERT_VERIFY_FULL)
			abort();
		if (line == 0 && cc != HBA_CLIENTCERT_NONE)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[2048];

	if (!scratch_dir[0])
		setup();
	scratch_write("pg_hba.conf", data, size);
	confined = true;
	struct hba *h = hba_load(main_path, err, sizeof(err));
	confined = false;
	if (h) {
		check_logins(h);
		hba_free(h);
	} else if (err[0] == '\0' || strlen(err) >= sizeof(err)) {
		abort();   /* a refused file always says why */
	}
	return 0;
}
