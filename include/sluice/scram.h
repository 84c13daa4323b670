/*
 * scram.h - SCRAM-SHA-256 (RFC 5802, RFC 7677) for the server side of client
 * logins, in the dialect PostgreSQL speaks: PostgreSQL's stored-secret
 * format, its mechanism names, its channel binding (tls-server-end-point
 * only) and its rules for what a client message may contain.
 *
 * Pure logic on OpenSSL primitives: no sockets, no protocol framing, no
 * logging.  The caller wraps the strings produced here in AuthenticationSASL,
 * AuthenticationSASLContinue and AuthenticationSASLFinal messages and unwraps
 * SASLInitialResponse / SASLResponse.  Backend logins are libpq's business,
 * not this module's.
 *
 * Nothing here keeps global state except the per-process key that makes the
 * salts of mock exchanges (scram_server_init_mock) stable for one user name;
 * it is created once, on first use, and is safe to create from any thread.
 */
#ifndef SLUICE_SCRAM_H
#define SLUICE_SCRAM_H

#include "sluice/common.h"

#define SCRAM_MECHANISM       "SCRAM-SHA-256"
#define SCRAM_MECHANISM_PLUS  "SCRAM-SHA-256-PLUS"

/* Length of StoredKey, ServerKey, proofs and signatures: one SHA-256 output. */
#define SCRAM_KEY_LEN 32

/* Longest salt we store.  PostgreSQL writes 16-byte salts; 64 leaves room for
 * secrets made by other tools while keeping struct scram_secret fixed-size. */
#define SCRAM_MAX_SALT_LEN 64

/* What scram_make_secret() uses; PostgreSQL's defaults (salt length and
 * scram_iterations). */
#define SCRAM_DEFAULT_SALT_LEN   16
#define SCRAM_DEFAULT_ITERATIONS 4096

/* Random bytes in a server nonce (24 characters once base64-encoded), the
 * same amount PostgreSQL uses. */
#define SCRAM_NONCE_RAW_LEN 18

/* PostgreSQL refuses to SASLprep a password longer than this many bytes
 * (MAX_PASSWORD_LENGTH): the backend raises "password too long" and libpq
 * gives up, so no SCRAM secret can exist for such a password. */
#define SCRAM_MAX_PASSWORD_LEN 1024

/* tls-server-end-point data is a hash of the server certificate: at most a
 * SHA-512 output. */
#define SCRAM_MAX_CBIND_LEN 64

/* Client SASL messages longer than this are refused.  PostgreSQL applies the
 * same bound to every authentication message (PG_MAX_AUTH_TOKEN_LENGTH). */
#define SCRAM_MAX_MESSAGE_LEN 65535

/* Output buffer sizes that always suffice: for scram_server_first() given the
 * length of the client-first-message, and for scram_server_final(). */
#define SCRAM_SERVER_FIRST_MAX(client_first_len) ((size_t)(client_first_len) + 256)
#define SCRAM_SERVER_FINAL_MAX 64

/*
 * A SCRAM-SHA-256 verifier: everything the server needs, nothing that lets a
 * thief log in directly.  Text form (PostgreSQL's pg_authid.rolpassword):
 *
 *     SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
 *
 * StoredKey and ServerKey are still secrets (either one lets an attacker who
 * also sees an exchange impersonate a side), so wipe copies with
 * OPENSSL_cleanse when done.
 */
struct scram_secret {
	int iterations;                      /* PBKDF2 rounds, >= 1 */
	uint8_t salt[SCRAM_MAX_SALT_LEN];    /* first salt_len bytes are valid */
	size_t salt_len;                     /* 1..SCRAM_MAX_SALT_LEN */
	uint8_t stored_key[SCRAM_KEY_LEN];   /* H(HMAC(SaltedPassword, "Client Key")) */
	uint8_t server_key[SCRAM_KEY_LEN];   /* HMAC(SaltedPassword, "Server Key") */
};

/*
 * Parse a secret in PostgreSQL's text form.  Strict: exact prefix, decimal
 * iterations in 1..INT_MAX with no sign, spaces or leading zeros, canonical
 * padded base64 everywhere, a salt of 1..SCRAM_MAX_SALT_LEN bytes, keys of
 * exactly SCRAM_KEY_LEN bytes and nothing after the server key.  Returns
 * false (leaving *out zeroed) for anything else.
 */
bool scram_parse_secret(const char *text, struct scram_secret *out) MUST_CHECK;

/*
 * Format a secret in PostgreSQL's text form.  Returns a string from xmalloc()
 * that the caller frees (and should wipe: it holds the keys).
 */
char *scram_secret_to_text(const struct scram_secret *secret);

/*
 * Derive a secret from a password, as PostgreSQL does for CREATE ROLE ...
 * PASSWORD and libpq does on the client side:
 *
 *     SaltedPassword = PBKDF2-HMAC-SHA-256(prep(password), salt, iterations)
 *     StoredKey      = SHA-256(HMAC(SaltedPassword, "Client Key"))
 *     ServerKey      = HMAC(SaltedPassword, "Server Key")
 *
 * prep() follows PostgreSQL's pg_saslprep(), including its fallbacks: the
 * password bytes are used unchanged when the password is not valid UTF-8 or
 * when SASLprep prohibits it.  In detail:
 *
 *   - pure ASCII: used unchanged (PostgreSQL skips SASLprep for ASCII, even
 *     for control characters).  Exactly like PostgreSQL.
 *   - not valid UTF-8: used unchanged.  Exactly like PostgreSQL.
 *   - valid UTF-8 with non-ASCII characters: the mapping step is done
 *     (non-ASCII spaces become U+0020, "commonly mapped to nothing"
 *     characters such as U+00AD are dropped) and the result is checked
 *     against RFC 3454's prohibited tables (C.2-C.9).  A prohibited result,
 *     or an empty one, means the raw password is used, as in PostgreSQL.
 *     Otherwise the mapped string is used when every character belongs to a
 *     set for which NFKC normalization is provably the identity (ASCII
 *     printables, Latin-1 and Latin Extended-A letters and symbols without
 *     compatibility mappings, Greek and Cyrillic letters, kana, Hangul
 *     syllables, CJK unified ideographs of the BMP's original block).
 *
 * LIMITATION: NFKC normalization, the unassigned-code-point check and the
 * bidirectional check are not implemented.  For a password with characters
 * outside that set, the raw bytes are used; this matches PostgreSQL whenever
 * the password is already in SASLprep form or is prohibited (most emoji are,
 * as they were unassigned in Unicode 3.2), and otherwise fails safe: the
 * client's login is refused, never is a different password accepted.
 * scram_password_prep_exact() tells which case a password is in.
 *
 * Returns false if the password is longer than SCRAM_MAX_PASSWORD_LEN bytes
 * (PostgreSQL refuses those too), salt_len is 0 or above SCRAM_MAX_SALT_LEN,
 * iterations < 1, or OpenSSL fails.  *out is zeroed on failure.
 */
bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                                int iterations, struct scram_secret *out) MUST_CHECK;

/*
 * True when scram_secret_from_password() prepares this password exactly as
 * PostgreSQL and libpq do (see the list above), false when it falls back to
 * the raw bytes for characters it cannot normalize.  Use it to warn about
 * auth file passwords that may not work with SCRAM.  (True for passwords
 * over SCRAM_MAX_PASSWORD_LEN bytes, which both refuse.)
 */
bool scram_password_prep_exact(const char *password);

/*
 * A fresh secret for a password: SCRAM_DEFAULT_SALT_LEN random salt bytes,
 * SCRAM_DEFAULT_ITERATIONS rounds, PostgreSQL's text form.  Returns a string
 * from xmalloc() (the caller frees it), or NULL if the password is too long
 * or the random generator or OpenSSL fails.
 */
char *scram_make_secret(const char *password);

/*
 * The mechanism list for AuthenticationSASL, in wire form: each name
 * NUL-terminated, the list ended by an empty name.  That is the message body
 * after the Int32 auth code, scram_server_mechanisms_len(tls) bytes long.
 * SCRAM-SHA-256-PLUS comes first when `tls` is true, which must mean that
 * tls-server-end-point data for this connection will be passed to
 * scram_server_init(); PostgreSQL advertises it on every TLS connection.
 */
const char *scram_server_mechanisms(bool tls);
size_t scram_server_mechanisms_len(bool tls);

/* Where an exchange is.  SCRAM_UNUSED is the all-zero state. */
enum scram_step {
	SCRAM_UNUSED = 0,     /* never initialised, or reset */
	SCRAM_WAIT_FIRST,     /* initialised; expecting the client-first-message */
	SCRAM_WAIT_FINAL,     /* server-first sent; expecting the client-final-message */
	SCRAM_SUCCEEDED,      /* client proved it knows the password */
	SCRAM_FAILED,         /* refused; see scram_server_error() */
};

/*
 * Server side of one SCRAM-SHA-256 exchange, embedded in the client that logs
 * in.  Fields are written only by the scram_server_* functions; callers read
 * them through those functions.  The heap strings are owned by the state and
 * released (wiped first) by scram_server_reset().
 *
 * Lifecycle: scram_server_init() or scram_server_init_mock() on fresh memory,
 * scram_server_first(), scram_server_final(), then scram_server_reset()
 * whatever happened, which also wipes the secret.  Calls out of this order
 * fail (-1) instead of misbehaving.
 */
struct scram_server {
	enum scram_step step;
	bool doomed;                          /* mock exchange: the final step always fails */
	struct scram_secret secret;           /* copy of the user's secret (or the mock one) */
	uint8_t cbind[SCRAM_MAX_CBIND_LEN];   /* tls-server-end-point hash of our certificate */
	size_t cbind_len;                     /* 0: no channel binding on this connection */
	bool plus;                            /* client chose SCRAM-SHA-256-PLUS */
	char gs2_header[32];                  /* "n,,", "y,," or "p=tls-server-end-point,," */
	char *client_first_bare;              /* heap; valid from WAIT_FINAL until reset */
	char *server_first;                   /* heap; valid from WAIT_FINAL until reset */
	char *nonce;                          /* heap; client nonce + server nonce */
	char test_nonce[65];                  /* server nonce forced by the test hook, or "" */
	const char *error;                    /* static text; NULL until something fails */
	const char *detail;                   /* static text; why it failed (server log only) */
};

/*
 * Start an exchange for a user whose secret is known.  `cbind_data` is the
 * tls-server-end-point channel binding data of this connection (the hash of
 * our certificate, RFC 5929) when it is TLS, else NULL with cbind_len 0.
 * The secret and the binding data are copied.  `s` is treated as
 * uninitialised memory: reset a used state before starting a new exchange
 * in it, or its heap strings leak.
 */
void scram_server_init(struct scram_server *s, const struct scram_secret *secret,
                       const uint8_t *cbind_data, size_t cbind_len);

/*
 * Start a doomed exchange for a user that does not exist or has no usable
 * secret, so that the client cannot tell: the salt is derived from the user
 * name with a random per-process key (the same user always sees the same
 * salt while this process runs), iterations are SCRAM_DEFAULT_ITERATIONS,
 * channel binding is negotiated as for a real user, the final step does the
 * same work as for a real user and always fails with the same error.
 */
void scram_server_init_mock(struct scram_server *s, const char *username,
                            const uint8_t *cbind_data, size_t cbind_len);

/*
 * Test hook: use `nonce` (printable ASCII except ',', at most 64 characters)
 * as the server part of the nonce instead of fresh random bytes.  Call after
 * init and before scram_server_first().  Never use outside tests.
 */
void scram_server_set_nonce_for_test(struct scram_server *s, const char *nonce);

/*
 * Handle SASLInitialResponse: `mechanism` is the mechanism name the client
 * chose, `client_first` (`len` bytes, not NUL-terminated) its
 * client-first-message.  Writes the server-first-message
 * "r=<nonce>,s=<salt>,i=<iterations>" and a terminating NUL into `out` and
 * returns its length (without the NUL).  outlen >= SCRAM_SERVER_FIRST_MAX(len)
 * always suffices.
 *
 * Refused, as PostgreSQL refuses them (PostgreSQL reports these as protocol
 * violations, 08P01):
 * a mechanism that was not offered; a "p=" header with SCRAM-SHA-256 and a
 * non-"p=" header with SCRAM-SHA-256-PLUS; "y" when channel binding was
 * available, since the client then claims the server did not offer
 * SCRAM-SHA-256-PLUS (a downgrade); a binding type other than
 * tls-server-end-point; an authorization identity; a mandatory extension
 * ("m="); a missing, empty or non-printable nonce; empty, NUL-containing or
 * oversized messages; malformed attributes.  The user name in the message is
 * ignored (PostgreSQL uses the one from the startup packet).  Internal
 * failures ("could not generate random data", "output buffer too small",
 * "invalid channel binding data" from init) are not the client's fault.
 *
 * Returns -1 on refusal, with the reason in scram_server_error(); the state
 * becomes SCRAM_FAILED.
 */
int scram_server_first(struct scram_server *s, const char *mechanism,
                       const uint8_t *client_first, size_t len,
                       char *out, size_t outlen) MUST_CHECK;

/*
 * Handle the SASLResponse carrying the client-final-message
 * "c=<binding>,r=<nonce>[,extensions],p=<proof>".  Checks that c= is
 * base64(gs2 header + binding data), that r= is the nonce of this exchange,
 * and that the proof is right:
 *
 *     ClientKey = proof XOR HMAC(StoredKey, AuthMessage);  H(ClientKey) == StoredKey
 *
 * compared in constant time.  On success writes "v=<ServerSignature>" and a
 * NUL into `out`, returns its length and the state becomes SCRAM_SUCCEEDED;
 * outlen >= SCRAM_SERVER_FINAL_MAX always suffices.
 *
 * On any failure (malformed message, binding or nonce mismatch, wrong proof,
 * mock exchange, call out of order) returns -1 and the state becomes
 * SCRAM_FAILED with one generic scram_server_error() text whatever the cause:
 * report it as 28P01 (invalid_password).  scram_server_detail() says what
 * actually went wrong, for the server log only.
 */
int scram_server_final(struct scram_server *s, const uint8_t *client_final, size_t len,
                       char *out, size_t outlen) MUST_CHECK;

/* Why the exchange failed, for the client (static text), or NULL. */
const char *scram_server_error(const struct scram_server *s);

/* Why the exchange failed, in more detail, for the server log only (never
 * send it to the client: it may say that the user does not exist), or NULL. */
const char *scram_server_detail(const struct scram_server *s);

/*
 * Release and wipe everything the state holds (heap strings, secret, binding
 * data) and return it to SCRAM_UNUSED.  Idempotent; safe on an all-zero state.
 */
void scram_server_reset(struct scram_server *s);

#endif /* SLUICE_SCRAM_H */
