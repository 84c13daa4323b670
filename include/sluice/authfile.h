/*
 * authfile.h - the auth file: user names and their secrets in PgBouncer's
 * userlist.txt format, plus the md5 password helpers that go with it.
 *
 * File format, one user per line:
 *
 *     "username" "secret" [anything else, ignored]
 *
 * Both fields are double-quoted; a doubled quote ("") inside a field stands
 * for one quote character.  Spaces or tabs separate the fields.  Blank
 * lines and lines whose first non-blank character is ';' or '#' are
 * comments.  A secret is one of (see authfile_secret_kind()):
 *
 *     a plain password        "s3cret"
 *     md5 + 32 hex digits     "md5" + hex(md5(password || username)), PostgreSQL's md5
 *     a SCRAM-SHA-256 secret  "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"
 *
 * An empty secret ("") is accepted so that a file can list users for
 * trust-style methods (as in PgBouncer); it must never pass a password check
 * (auth_md5_verify() refuses it; SCRAM callers must refuse it too).
 *
 * Loading is all-or-nothing: any bad line fails the whole file, so a reload
 * with a broken file keeps the previous one.  A loaded file is immutable;
 * nothing here does I/O after authfile_load() returns.
 */
#ifndef SLUICE_AUTHFILE_H
#define SLUICE_AUTHFILE_H

#include "sluice/common.h"

/* PostgreSQL role names are at most 63 bytes (NAMEDATALEN - 1): a longer
 * name can never be a role, so such a line is a mistake. */
#define AUTHFILE_MAX_USER 63

/* Far above any SCRAM secret (about 200 bytes) and PostgreSQL's 1024-byte
 * limit for passwords used with SCRAM; a longer field is a broken line. */
#define AUTHFILE_MAX_SECRET 8192

/* "md5" + 32 lowercase hex digits, without and with the NUL. */
#define AUTH_MD5_LEN 35
#define AUTH_MD5_BUFLEN 36

enum auth_secret_kind {
	AUTH_SECRET_PLAIN,   /* a password in clear text (also the empty secret) */
	AUTH_SECRET_MD5,     /* "md5" + hex(md5(password || username)) */
	AUTH_SECRET_SCRAM,   /* a SCRAM-SHA-256 secret that scram_parse_secret() accepts */
};

/* A loaded auth file; opaque. */
struct authfile;

/*
 * Load and validate the auth file at `path`.  Returns NULL on any problem,
 * with a message in `err` (if errlen > 0) of the form "path:line: problem",
 * or "path: problem" when the file cannot be read.  Refused: unquoted or
 * unterminated fields, a missing secret, something glued to a closing quote,
 * an empty or over-long user name, an over-long secret, NUL bytes, a secret
 * that starts like a SCRAM secret ("SCRAM-SHA-256$") but does not parse or
 * looks like an md5 secret written in upper case, and a user listed twice.
 * Free the result with authfile_free().
 */
struct authfile *authfile_load(const char *path, char *err, size_t errlen) MUST_CHECK;

/* Free a loaded file, wiping the secrets.  NULL is fine. */
void authfile_free(struct authfile *af);

/*
 * The secret of `user` (exact, case-sensitive match), or NULL if the file
 * does not list the user.  The string lives as long as `af`.  O(log n).
 */
const char *authfile_lookup(const struct authfile *af, const char *user);

/* Number of users in the file. */
size_t authfile_count(const struct authfile *af);

/*
 * Classify a secret as PostgreSQL does (get_password_type()): exactly "md5"
 * followed by 32 lowercase hex digits is MD5, a string scram_parse_secret()
 * accepts is SCRAM, anything else is a plain password.
 */
enum auth_secret_kind authfile_secret_kind(const char *secret);

/*
 * PostgreSQL's md5 secret of a password: "md5" + hex(md5(password || user)),
 * written with its NUL into `out`.  Returns false (out = "") only if OpenSSL
 * cannot compute MD5 (for instance under a FIPS-only configuration).
 */
bool auth_md5_hash(const char *password, const char *user, char out[AUTH_MD5_BUFLEN]) MUST_CHECK;

/*
 * Check a client's answer to AuthenticationMD5Password.  The client sends
 * "md5" + hex(md5(hex(md5(password || user)) || salt)); `stored_secret` is
 * the user's secret, either an md5 secret or a plain password (hashed here
 * first).  Compared in constant time.  Returns false for a wrong answer,
 * a SCRAM or empty stored secret (md5 cannot be checked against those),
 * or an answer that is not exactly AUTH_MD5_LEN characters long.
 */
bool auth_md5_verify(const char *stored_secret, const char *user, const uint8_t salt[4],
                     const char *client_response) MUST_CHECK;

#endif /* SLUICE_AUTHFILE_H */
