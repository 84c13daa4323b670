/*
 * fuzz_authfile.c - the auth_file parser and the md5 helpers
 * (src/authfile.c): authfile_load() on the input as the file's contents,
 * then authfile_lookup() of users that are and are not there,
 * authfile_secret_kind() of every secret found, and auth_md5_verify() of
 * client answers against them, as auth.c uses them.
 *
 * authfile_load() reads a path, so each input is written to one scratch
 * file under $TMPDIR.  The file format has no includes.
 *
 * Besides "no crash, no leak": a file that loads has no empty user, no
 * secret over AUTHFILE_MAX_SECRET bytes, and no secret that starts like a
 * SCRAM secret without being one; the right md5 answer for a plain or md5
 * secret is accepted and a wrong one refused.  The users tried are the
 * first two quoted names on the input's first lines, so the fuzzer can hit
 * them.
 *
 * Global state: the scratch file, made once (removed at exit).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/authfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[300];

/* Remove the scratch file when the fuzzer exits normally. */
static void cleanup(void)
{
	unlink(path);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	int fd;

	snprintf(path, sizeof(path), "%s/fuzz_authfile.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		abort();
	}
	close(fd);
	atexit(cleanup);
}

/* The text of the n-th double-quoted word in the input (quotes stripped,
 * "" not unescaped), or "". */
static void quoted_word(const uint8_t *data, size_t size, int n, char *out, size_t outlen)
{
	size_t i = 0, k = 0;

	out[0] = '\0';
	for (int w = 0; w <= n; w++) {
		const uint8_t *q = memchr(data + i, '"', size - i);
		if (!q)
			return;
		i = (size_t)(q - data) + 1;
		k = 0;
		while (i < size && data[i] != '"' && data[i] != '\n' && k + 1 < outlen)
			out[k++] = (char)data[i++];
		out[k] = '\0';
		if (i < size)
			i++;
		/* skip the secret that follows the user */
		q = memchr(data + i, '"', size - i);
		if (!q)
			return;
		q = memchr(q + 1, '"', size - (size_t)(q + 1 - data));
		if (!q)
			return;
		i = (size_t)(q - data) + 1;
	}
}

static void check_user(const struct authfile *af, const char *user)
{
	static const uint8_t salt[4] = { 1, 2, 3, 4 };
	char stored_md5[AUTH_MD5_BUFLEN], answer[AUTH_MD5_BUFLEN];
	const char *secret = authfile_lookup(af, user);

	if (!secret)
		return;
	if (strlen(secret) > AUTHFILE_MAX_SECRET)
		abort();
	enum auth_secret_kind kind = authfile_secret_kind(secret);
	if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0 && kind != AUTH_SECRET_SCRAM)
		abort();
	if (kind == AUTH_SECRET_SCRAM || secret[0] == '\0') {
		if (auth_md5_verify(secret, user, salt, "md5000000000000000000000000000000000"))
			abort();
		return;
	}
	/* The client's answer: "md5" + md5(hex(md5(password || user)) || salt). */
	if (kind == AUTH_SECRET_MD5)
		memcpy(stored_md5, secret, AUTH_MD5_BUFLEN);
	else if (!auth_md5_hash(secret, user, stored_md5))
		abort();
	char salted[AUTH_MD5_LEN - 3 + 4 + 1];
	memcpy(salted, stored_md5 + 3, AUTH_MD5_LEN - 3);
	memcpy(salted + AUTH_MD5_LEN - 3, salt, 4);
	salted[sizeof(salted) - 1] = '\0';
	/* auth_md5_hash(a, b) hashes a || b: split the salted input that way. */
	char head[AUTH_MD5_LEN - 3 + 1], tail[5];
	memcpy(head, salted, AUTH_MD5_LEN - 3);
	head[AUTH_MD5_LEN - 3] = '\0';
	memcpy(tail, salt, 4);
	tail[4] = '\0';
	if (!auth_md5_hash(head, tail, answer))
		abort();
	if (!auth_md5_verify(secret, user, salt, answer))
		abort();
	answer[5] ^= 1;
	if (auth_md5_verify(secret, user, salt, answer))
		abort();
	if (auth_md5_verify(secret, user, salt, "md5"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], user[128];

	if (!path[0])
		setup();
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);

	struct authfile *af = authfile_load(path, err, sizeof(err));
	if (!af) {
		if (err[0] == '\0')
			abort();   /* a refused file always says why */
		return 0;
	}
	for (int n = 0; n < 2; n++) {
		quoted_word(data, size, n, user, sizeof(user));
		check_user(af, user);
	}
	(void)authfile_lookup(af, "");
	(void)authfile_lookup(af, "nobody-here");
	(void)authfile_count(af);
	authfile_free(af);
	return 0;
}
