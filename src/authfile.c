/*
 * authfile.c - load PgBouncer-style userlist.txt files; PostgreSQL's md5
 * password hashing and challenge check.
 *
 * Owns: parsing and validating the file, the sorted user table, md5
 * helpers.  Does not own: deciding which method authenticates a client,
 * SCRAM (scram.c), reloading (the caller loads a new file and swaps).
 */
#include "sluice/authfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "sluice/scram.h"

#define SCRAM_PREFIX "SCRAM-SHA-256$"

struct authfile_entry {
	char *user;
	char *secret;
	unsigned line;          /* where it was defined, for duplicate reports */
};

/* Entries sorted by user name (strcmp order) once loading has finished. */
struct authfile {
	struct authfile_entry *entries;
	size_t count;
	size_t cap;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void free_wiped(char *p)
{
	if (p) {
		OPENSSL_cleanse(p, strlen(p));
		free(p);
	}
}

void authfile_free(struct authfile *af)
{
	if (!af)
		return;
	for (size_t i = 0; i < af->count; i++) {
		free(af->entries[i].user);
		free_wiped(af->entries[i].secret);
	}
	free(af->entries);
	free(af);
}

/* ---------------------------------------------------------------------- */
/* Line parsing */

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * Parse the quoted field whose opening quote is at *p.  Returns the
 * unescaped value (heap) and leaves *p after the closing quote, or returns
 * NULL if the line ends before the closing quote.
 */
static char *parse_quoted(const char **p)
{
	const char *s = *p + 1;
	char *val = xmalloc(strlen(s) + 1);
	size_t n = 0;

	for (;;) {
		if (*s == '\0') {
			OPENSSL_cleanse(val, n);
			free(val);
			return NULL;
		}
		if (*s == '"') {
			if (s[1] != '"')
				break;
			s++;        /* "" is one quote */
		}
		val[n++] = *s++;
	}
	val[n] = '\0';
	*p = s + 1;
	return val;
}

/* An md5 secret written with upper-case hex: PostgreSQL would take it for a
 * plain password, which is never what the author meant. */
static bool is_uppercase_md5(const char *s)
{
	bool upper = false;

	if (strlen(s) != AUTH_MD5_LEN || strncmp(s, "md5", 3) != 0)
		return false;
	for (const char *p = s + 3; *p; p++) {
		if (*p >= 'A' && *p <= 'F')
			upper = true;
		else if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	}
	return upper;
}

/*
 * Parse one line (NUL-terminated, newline removed).  Returns true with
 * *user == NULL for blank and comment lines, true with *user and *secret
 * set (heap) for an entry, or false with *why set.
 */
static bool parse_line(const char *line, char **user, char **secret, const char **why)
{
	const char *p = skip_blanks(line);

	*user = *secret = NULL;
	if (*p == '\0' || *p == ';' || *p == '#')
		return true;
	if (*p != '"') {
		*why = "expected a quoted user name";
		return false;
	}
	*user = parse_quoted(&p);
	if (!*user) {
		*why = "unterminated quoted user name";
		return false;
	}
	if (*p != '\0' && *p != ' ' && *p != '\t') {
		*why = "expected a space after the quoted user name";
		goto bad;
	}
	p = skip_blanks(p);
	if (*p == '\0') {
		*why = "missing secret after the user name";
		goto bad;
	}
	if (*p != '"') {
		*why = "expected a quoted secret";
		goto bad;
	}
	*secret = parse_quoted(&p);
	if (!*secret) {
		*why = "unterminated quoted secret";
		goto bad;
	}
	/* Anything after a blank is an extra field, ignored like PgBouncer does. */
	if (*p != '\0' && *p != ' ' && *p != '\t') {
		*why = "unexpected character after the quoted secret";
		goto bad;
	}
	return true;

bad:
	free(*user);
	free_wiped(*secret);
	*user = *secret = NULL;
	return false;
}

/* The messages below spell the limits out. */
_Static_assert(AUTHFILE_MAX_USER == 63, "update the user name length message");
_Static_assert(AUTHFILE_MAX_SECRET == 8192, "update the secret length message");

/* Checks on the values of an entry; NULL if fine, else the problem. */
static const char *check_entry(const char *user, const char *secret)
{
	if (user[0] == '\0')
		return "empty user name";
	if (strlen(user) > AUTHFILE_MAX_USER)
		return "user name longer than 63 bytes";
	if (strlen(secret) > AUTHFILE_MAX_SECRET)
		return "secret longer than 8192 bytes";
	if (strncmp(secret, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0 &&
	    authfile_secret_kind(secret) != AUTH_SECRET_SCRAM)
		return "malformed SCRAM-SHA-256 secret";
	if (is_uppercase_md5(secret))
		return "md5 secret must be written in lower-case hex";
	return NULL;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct authfile_entry *x = a, *y = b;
	int c = strcmp(x->user, y->user);

	if (c != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

static void add_entry(struct authfile *af, char *user, char *secret, unsigned line)
{
	if (af->count == af->cap) {
		af->cap = af->cap ? af->cap * 2 : 16;
		af->entries = xrealloc(af->entries, af->cap * sizeof(*af->entries));
	}
	af->entries[af->count].user = user;
	af->entries[af->count].secret = secret;
	af->entries[af->count].line = line;
	af->count++;
}

struct authfile *authfile_load(const char *path, char *err, size_t errlen)
{
	struct authfile *af;
	FILE *f;
	char *line = NULL;
	size_t linecap = 0;
	ssize_t n;
	unsigned lineno = 0;

	f = fopen(path, "r");
	if (!f) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	af = xcalloc(1, sizeof(*af));

	while ((n = getline(&line, &linecap, f)) >= 0) {
		char *user, *secret;
		const char *why;

		lineno++;
		if (memchr(line, '\0', (size_t)n)) {
			set_err(err, errlen, "%s:%u: NUL byte in line", path, lineno);
			goto fail;
		}
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';

		if (!parse_line(line, &user, &secret, &why)) {
			set_err(err, errlen, "%s:%u: %s", path, lineno, why);
			goto fail;
		}
		if (!user)
			continue;
		why = check_entry(user, secret);
		if (why) {
			set_err(err, errlen, "%s:%u: %s", path, lineno, why);
			free(user);
			free_wiped(secret);
			goto fail;
		}
		add_entry(af, user, secret, lineno);
	}
	if (ferror(f)) {
		set_err(err, errlen, "%s: read error: %s", path, strerror(errno));
		goto fail;
	}

	if (af->count > 1)
		qsort(af->entries, af->count, sizeof(*af->entries), entry_cmp);
	for (size_t i = 1; i < af->count; i++) {
		const struct authfile_entry *a = &af->entries[i - 1], *b = &af->entries[i];

		if (strcmp(a->user, b->user) == 0) {
			set_err(err, errlen, "%s:%u: duplicate user \"%s\" (first listed on line %u)",
			        path, b->line, b->user, a->line);
			goto fail;
		}
	}
	if (line)
		OPENSSL_cleanse(line, linecap);
	free(line);
	fclose(f);
	return af;

fail:
	if (line)
		OPENSSL_cleanse(line, linecap);
	free(line);
	fclose(f);
	authfile_free(af);
	return NULL;
}

static int lookup_cmp(const void *key, const void *elem)
{
	const struct authfile_entry *e = elem;

	return strcmp(key, e->user);
}

const char *authfile_lookup(const struct authfile *af, const char *user)
{
	const struct authfile_entry *e;

	if (!af || af->count == 0)
		return NULL;
	e = bsearch(user, af->entries, af->count, sizeof(*af->entries), lookup_cmp);
	return e ? e->secret : NULL;
}

size_t authfile_count(const struct authfile *af)
{
	return af ? af->count : 0;
}

/* ---------------------------------------------------------------------- */
/* Secret kinds and md5 */

enum auth_secret_kind authfile_secret_kind(const char *secret)
{
	struct scram_secret parsed;

	if (strlen(secret) == AUTH_MD5_LEN && strncmp(secret, "md5", 3) == 0 &&
	    strspn(secret + 3, "0123456789abcdef") == AUTH_MD5_LEN - 3)
		return AUTH_SECRET_MD5;
	if (scram_parse_secret(secret, &parsed)) {
		OPENSSL_cleanse(&parsed, sizeof(parsed));
		return AUTH_SECRET_SCRAM;
	}
	return AUTH_SECRET_PLAIN;
}

/* out = "md5" + hex(md5(a || b)), NUL-terminated. */
static bool md5_hex(const void *a, size_t alen, const void *b, size_t blen,
                    char out[AUTH_MD5_BUFLEN])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok;

	ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
	     EVP_DigestFinal_ex(ctx, digest, &dlen) == 1 && dlen == 16;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		out[0] = '\0';
		return false;
	}
	memcpy(out, "md5", 3);
	for (unsigned i = 0; i < 16; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[4 + 2 * i] = hex[digest[i] & 15];
	}
	out[AUTH_MD5_LEN] = '\0';
	OPENSSL_cleanse(digest, sizeof(digest));
	return true;
}

bool auth_md5_hash(const char *password, const char *user, char out[AUTH_MD5_BUFLEN])
{
	return md5_hex(password, strlen(password), user, strlen(user), out);
}

bool auth_md5_verify(const char *stored_secret, const char *user, const uint8_t salt[4],
                     const char *client_response)
{
	char hashed[AUTH_MD5_BUFLEN], expected[AUTH_MD5_BUFLEN];
	const char *hex;
	bool ok;

	switch (authfile_secret_kind(stored_secret)) {
	case AUTH_SECRET_MD5:
		hex = stored_secret + 3;
		break;
	case AUTH_SECRET_PLAIN:
		if (stored_secret[0] == '\0' || !auth_md5_hash(stored_secret, user, hashed))
			return false;
		hex = hashed + 3;
		break;
	default:
		return false;
	}

	ok = md5_hex(hex, AUTH_MD5_LEN - 3, salt, 4, expected) &&
	     strnlen(client_response, AUTH_MD5_BUFLEN) == AUTH_MD5_LEN &&
	     CRYPTO_memcmp(expected, client_response, AUTH_MD5_LEN) == 0;
	OPENSSL_cleanse(hashed, sizeof(hashed));
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}
