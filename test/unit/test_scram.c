/*
 * test_scram.c - SCRAM-SHA-256: secrets (RFC 7677 vector, secrets made by a
 * real PostgreSQL 15, password preparation), the server exchange, channel
 * binding, mock exchanges and malformed input.
 *
 * The client side of each exchange is computed here, directly on OpenSSL
 * (PBKDF2, HMAC, SHA-256, EVP base64), so the module is checked against an
 * independent implementation rather than against itself.
 *
 * Data files are named relative to the repository root, where the runner is
 * started.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "sluice/authfile.h"
#include "sluice/common.h"
#include "sluice/scram.h"
#include "unit.h"

Suite *scram_suite(void);

#define DATA "test/unit/data/authfile/"
#define PLUS SCRAM_MECHANISM_PLUS
#define PLAIN SCRAM_MECHANISM
#define GS2_P "p=tls-server-end-point,,"

/* RFC 7677, section 3. */
#define RFC_PASSWORD    "pencil"
#define RFC_SALT        "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CNONCE      "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE      "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_FINAL_NO_PROOF "c=biws,r=" RFC_CNONCE RFC_SNONCE
#define RFC_PROOF       "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* StoredKey and ServerKey for "pencil" with that salt (derived from the
 * vector; the RFC does not print them). */
#define RFC_SECRET "SCRAM-SHA-256$4096:" RFC_SALT \
	"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* ---------------------------------------------------------------------- */
/* Client side, written against OpenSSL only */

static void b64(const uint8_t *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decode padded base64; returns the byte count. */
static size_t unb64(const char *in, uint8_t *out)
{
	size_t len = strlen(in);
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);

	ck_assert_int_ge(n, 0);
	if (len >= 1 && in[len - 1] == '=')
		n--;
	if (len >= 2 && in[len - 2] == '=')
		n--;
	return (size_t)n;
}

static void hmac(const uint8_t *key, size_t keylen, const void *data, size_t len, uint8_t out[32])
{
	unsigned int outlen = 0;

	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen));
	ck_assert_uint_eq(outlen, 32);
}

/* ClientKey and ServerKey from the raw password bytes (no SASLprep). */
static void client_keys(const char *password, const uint8_t *salt, size_t salt_len, int iter,
                        uint8_t client_key[32], uint8_t server_key[32])
{
	uint8_t salted[32];

	ck_assert_int_eq(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
	                                   iter, EVP_sha256(), 32, salted), 1);
	hmac(salted, 32, "Client Key", 10, client_key);
	hmac(salted, 32, "Server Key", 10, server_key);
}

/* StoredKey/ServerKey as base64, for comparing with secrets. */
static void keys_b64(const char *password, const uint8_t *salt, size_t salt_len, int iter,
                     char stored_b64[64], char server_b64[64])
{
	uint8_t ck[32], sk[32], stored[32];

	client_keys(password, salt, salt_len, iter, ck, sk);
	SHA256(ck, 32, stored);
	b64(stored, 32, stored_b64);
	b64(sk, 32, server_b64);
}

/* Take the value of attribute `name` out of a server-first-message. */
static void attr(const char *msg, char name, char *out, size_t outlen)
{
	char key[4] = { ',', name, '=', 0 };
	const char *p;
	size_t n;

	if (msg[0] == name && msg[1] == '=')
		p = msg + 2;
	else {
		p = strstr(msg, key);
		ck_assert_msg(p != NULL, "no %c= in \"%s\"", name, msg);
		p += 3;
	}
	n = strcspn(p, ",");
	ck_assert_uint_lt(n, outlen);
	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * The client's part of the final step.  `before` is the
 * client-final-message-without-proof; writes before + ",p=" + proof into
 * `out` and the ServerSignature the server must answer into `expect_v`
 * ("v=..." form).
 */
static void client_final(const char *password, const char *client_first_bare,
                         const char *server_first, const char *before,
                         char *out, size_t outlen, char expect_v[64])
{
	char salt_b64[128], iter_txt[16], auth[2048], proof_b64[64];
	uint8_t salt[96], ck[32], sk[32], stored[32], sig[32], proof[32];
	size_t salt_len;

	attr(server_first, 's', salt_b64, sizeof(salt_b64));
	attr(server_first, 'i', iter_txt, sizeof(iter_txt));
	salt_len = unb64(salt_b64, salt);
	client_keys(password, salt, salt_len, atoi(iter_txt), ck, sk);
	SHA256(ck, 32, stored);

	snprintf(auth, sizeof(auth), "%s,%s,%s", client_first_bare, server_first, before);
	hmac(stored, 32, auth, strlen(auth), sig);
	for (int i = 0; i < 32; i++)
		proof[i] = ck[i] ^ sig[i];
	b64(proof, 32, proof_b64);
	ck_assert_int_lt(snprintf(out, outlen, "%s,p=%s", before, proof_b64), (int)outlen);

	hmac(sk, 32, auth, strlen(auth), sig);
	strcpy(expect_v, "v=");
	b64(sig, 32, expect_v + 2);
}

static void secret_of(const char *text, struct scram_secret *out)
{
	ck_assert_msg(scram_parse_secret(text, out), "cannot parse %s", text);
}

static const char *pg_secret(struct authfile **af, const char *user)
{
	char err[256];
	const char *secret;

	*af = authfile_load(DATA "postgres15.txt", err, sizeof(err));
	ck_assert_msg(*af != NULL, "%s", err);
	secret = authfile_lookup(*af, user);
	ck_assert_msg(secret != NULL, "no user %s", user);
	return secret;
}

static int first(struct scram_server *s, const char *mech, const char *msg, char *out,
                 size_t outlen)
{
	return scram_server_first(s, mech, (const uint8_t *)msg, strlen(msg), out, outlen);
}

static int final(struct scram_server *s, const char *msg, char *out, size_t outlen)
{
	return scram_server_final(s, (const uint8_t *)msg, strlen(msg), out, outlen);
}

/* Channel binding data of "our" certificate, and of someone else's. */
static const uint8_t cbind_ours[32] = {
	0xa5, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
static const uint8_t cbind_theirs[32] = {
	0x5a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};

/* c= for a gs2 header and (for "p=") binding data. */
static void cbind_attr(const char *gs2, const uint8_t *data, size_t len, char out[256])
{
	uint8_t buf[128];
	size_t n = strlen(gs2);

	memcpy(buf, gs2, n);
	if (gs2[0] == 'p' && len > 0) {
		memcpy(buf + n, data, len);
		n += len;
	}
	strcpy(out, "c=");
	b64(buf, n, out + 2);
}

/*
 * A whole exchange: client-first "<gs2>n=,r=<cnonce>", then a correct
 * client-final for `password` whose c= carries `client_cbind`.  Returns the
 * final step's result (or -2 if the first step failed); `v_ok` tells whether
 * the server's v= matched.
 */
static int exchange(struct scram_server *s, const char *mech, const char *gs2,
                    const char *password, const uint8_t *client_cbind, bool *v_ok)
{
	char cfirst[256], sfirst[512], r[256], before[768], cfinal[1024], cb[256], v[64], out[128];
	int n;

	snprintf(cfirst, sizeof(cfirst), "%sn=,r=fyko+d2lbbFgONRv9qkxdawL", gs2);
	n = first(s, mech, cfirst, sfirst, sizeof(sfirst));
	if (n < 0)
		return -2;
	ck_assert_int_eq(n, (int)strlen(sfirst));
	cbind_attr(gs2, client_cbind, client_cbind ? 32 : 0, cb);
	attr(sfirst, 'r', r, sizeof(r));
	snprintf(before, sizeof(before), "%s,r=%s", cb, r);
	client_final(password, cfirst + strlen(gs2), sfirst, before, cfinal, sizeof(cfinal), v);
	n = final(s, cfinal, out, sizeof(out));
	*v_ok = n > 0 && strcmp(out, v) == 0;
	return n;
}

/* ---------------------------------------------------------------------- */
/* RFC 7677 */

static void rfc_secret(struct scram_secret *secret)
{
	uint8_t salt[32];
	size_t salt_len = unb64(RFC_SALT, salt);

	ck_assert(scram_secret_from_password(RFC_PASSWORD, salt, salt_len, 4096, secret));
}

START_TEST(test_rfc7677_secret)
{
	struct scram_secret derived, parsed;
	char *text;

	rfc_secret(&derived);
	secret_of(RFC_SECRET, &parsed);
	ck_assert_int_eq(parsed.iterations, 4096);
	ck_assert_uint_eq(parsed.salt_len, 16);
	ck_assert_mem_eq(derived.salt, parsed.salt, 16);
	ck_assert_mem_eq(derived.stored_key, parsed.stored_key, 32);
	ck_assert_mem_eq(derived.server_key, parsed.server_key, 32);
	text = scram_secret_to_text(&derived);
	ck_assert_str_eq(text, RFC_SECRET);
	free(text);
}
END_TEST

/* Runs the RFC exchange up to the server-first-message. */
static void rfc_first(struct scram_server *s)
{
	struct scram_secret secret;
	char out[512];

	rfc_secret(&secret);
	scram_server_init(s, &secret, NULL, 0);
	scram_server_set_nonce_for_test(s, RFC_SNONCE);
	ck_assert_int_eq(first(s, PLAIN, RFC_CLIENT_FIRST, out, sizeof(out)),
	                 (int)strlen(RFC_SERVER_FIRST));
	ck_assert_str_eq(out, RFC_SERVER_FIRST);
	ck_assert_int_eq(s->step, SCRAM_WAIT_FINAL);
}

START_TEST(test_rfc7677_exchange)
{
	struct scram_server s;
	char out[SCRAM_SERVER_FINAL_MAX];

	rfc_first(&s);
	ck_assert_int_eq(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out, sizeof(out)),
	                 (int)strlen(RFC_SERVER_FINAL));
	ck_assert_str_eq(out, RFC_SERVER_FINAL);
	ck_assert_int_eq(s.step, SCRAM_SUCCEEDED);
	ck_assert_ptr_null(scram_server_error(&s));
	scram_server_reset(&s);
}
END_TEST

/* Our independent client code must produce the RFC's proof too. */
START_TEST(test_rfc7677_client_side)
{
	char cfinal[512], v[64];

	client_final(RFC_PASSWORD, RFC_CLIENT_FIRST + 3, RFC_SERVER_FIRST, RFC_FINAL_NO_PROOF,
	             cfinal, sizeof(cfinal), v);
	ck_assert_str_eq(cfinal, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF);
	ck_assert_str_eq(v, RFC_SERVER_FINAL);
}
END_TEST

/* A proof with one bit flipped is refused: one bit in each byte, each bit
 * position used four times. */
START_TEST(test_rfc7677_flipped_bit)
{
	struct scram_server s;
	uint8_t proof[32];
	char proof_b64[64], msg[512], out[SCRAM_SERVER_FINAL_MAX];

	ck_assert_uint_eq(unb64(RFC_PROOF, proof), 32);
	proof[_i] ^= (uint8_t)(1u << (_i % 8));
	b64(proof, 32, proof_b64);
	snprintf(msg, sizeof(msg), "%s,p=%s", RFC_FINAL_NO_PROOF, proof_b64);

	rfc_first(&s);
	ck_assert_int_eq(final(&s, msg, out, sizeof(out)), -1);
	ck_assert_int_eq(s.step, SCRAM_FAILED);
	ck_assert_str_eq(scram_server_error(&s), "password authentication failed");
	scram_server_reset(&s);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Secrets made by PostgreSQL 15 */

START_TEST(test_pg_secret_from_password)
{
	struct authfile *af;
	const char *text = pg_secret(&af, "app");
	struct scram_secret pg, mine;
	char *again;

	secret_of(text, &pg);
	ck_assert(scram_secret_from_password("app_pw", pg.salt, pg.salt_len, pg.iterations, &mine));
	ck_assert_int_eq(mine.iterations, pg.iterations);
	ck_assert_uint_eq(mine.salt_len, pg.salt_len);
	ck_assert_mem_eq(mine.stored_key, pg.stored_key, 32);
	ck_assert_mem_eq(mine.server_key, pg.server_key, 32);
	again = scram_secret_to_text(&mine);
	ck_assert_str_eq(again, text);
	free(again);
	authfile_free(af);
}
END_TEST

START_TEST(test_pg_secret_exchange)
{
	struct authfile *af;
	struct scram_secret pg;
	struct scram_server s;
	bool v_ok = false;

	secret_of(pg_secret(&af, "app"), &pg);
	authfile_free(af);

	scram_server_init(&s, &pg, NULL, 0);
	ck_assert_int_gt(exchange(&s, PLAIN, "n,,", "app_pw", NULL, &v_ok), 0);
	ck_assert(v_ok);
	ck_assert_int_eq(s.step, SCRAM_SUCCEEDED);
	scram_server_reset(&s);

	scram_server_init(&s, &pg, NULL, 0);
	ck_assert_int_eq(exchange(&s, PLAIN, "n,,", "app_PW", NULL, &v_ok), -1);
	ck_assert_str_eq(scram_server_error(&s), "password authentication failed");
	scram_server_reset(&s);
}
END_TEST

/*
 * Non-ASCII passwords: roles created in PostgreSQL 15 with these passwords
 * (see postgres15.txt).  `exact` is what scram_password_prep_exact() must
 * say; `same` whether our secret must equal PostgreSQL's.
 */
static const struct prep_case {
	const char *user;
	const char *password;
	bool exact;
	bool same;
} prep_cases[] = {
	/* Identity under SASLprep. */
	{ "u_latin", "gr\u00fc\u00dfe-\u00dcn\u00efc\u00f6d\u00e9", true, true },
	{ "u_greek", "\u03ac\u03bb\u03c6\u03b1", true, true },
	{ "u_cyr", "\u043f\u0430\u0440\u043e\u043b\u044c", true, true },
	{ "u_cjk", "\u5bc6\u7801", true, true },
	{ "u_hangul", "\ube44\ubc00\ubc88\ud638", true, true },
	/* NO-BREAK SPACE becomes a space, SOFT HYPHEN disappears. */
	{ "u_nbsp", "a\u00a0b\u00adc", true, true },
	/* Prohibited (a control character next to non-ASCII): raw bytes, the
	 * NO-BREAK SPACE included. */
	{ "u_ctrl", "\u00e9\t", true, true },
	{ "u_ctrl2", "a\u00a0\u00e9\t", true, true },
	/* Unassigned in Unicode 3.2, so PostgreSQL uses the raw bytes; we do
	 * too, without being able to prove it. */
	{ "u_emoji", "\U0001F511key", false, true },
	/* The known limitation: NFKC turns the ligature into "fi". */
	{ "u_lig", "\ufb01sh", false, false },
};

START_TEST(test_pg_secret_prep)
{
	const struct prep_case *c = &prep_cases[_i];
	struct authfile *af;
	struct scram_secret pg, mine;
	bool same;

	secret_of(pg_secret(&af, c->user), &pg);
	authfile_free(af);
	ck_assert(scram_secret_from_password(c->password, pg.salt, pg.salt_len, pg.iterations, &mine));
	same = memcmp(mine.stored_key, pg.stored_key, 32) == 0 &&
	       memcmp(mine.server_key, pg.server_key, 32) == 0;
	ck_assert_msg(same == c->same, "%s: secret %s PostgreSQL's", c->user,
	              same ? "equals" : "differs from");
	ck_assert_msg(scram_password_prep_exact(c->password) == c->exact, "%s: exact is %d",
	              c->user, !c->exact);
}
END_TEST

/* Passwords used as raw bytes: ASCII (control characters too) and invalid
 * UTF-8 (PostgreSQL's fallback), both exact. */
static const char *const raw_passwords[] = {
	"plain ascii",
	"tab\tand\x01" "control",
	"",
	"\xff\xfe" "not utf-8",
	"\xc3",                 /* truncated sequence */
	"\xc0\xaf",             /* overlong '/' */
	"\xed\xa0\x80",         /* surrogate */
	"\xf4\x90\x80\x80",     /* above U+10FFFF */
	"\xe2\x82",             /* truncated 3-byte */
	"caf\xc3\xa9\x80",      /* stray continuation byte */
};

START_TEST(test_prep_raw)
{
	const char *pw = raw_passwords[_i];
	static const uint8_t salt[17] = "0123456789abcdef";
	struct scram_secret mine;
	char stored[64], server[64], mine_stored[64], mine_server[64];

	ck_assert(scram_secret_from_password(pw, salt, 16, 4096, &mine));
	keys_b64(pw, salt, 16, 4096, stored, server);
	b64(mine.stored_key, 32, mine_stored);
	b64(mine.server_key, 32, mine_server);
	ck_assert_str_eq(mine_stored, stored);
	ck_assert_str_eq(mine_server, server);
	ck_assert(scram_password_prep_exact(pw));
}
END_TEST

/* Mapping done without a real PostgreSQL: U+3000 and U+2003 are spaces,
 * U+200B is (first) a space, U+FEFF and U+FE0F vanish; all exact. */
static const struct {
	const char *in, *prepared;
} mapped_passwords[] = {
	{ "\u00e9\u3000x", "\u00e9 x" },
	{ "\u00e9\u2003\u200bx", "\u00e9  x" },
	{ "\ufeff\u00e9\ufe0f", "\u00e9" },
	{ "\u00ad\u00ad\u00e9", "\u00e9" },
};

START_TEST(test_prep_mapped)
{
	static const uint8_t salt[4] = { 1, 2, 3, 4 };
	struct scram_secret a, b;

	ck_assert(scram_secret_from_password(mapped_passwords[_i].in, salt, 4, 1, &a));
	ck_assert(scram_secret_from_password(mapped_passwords[_i].prepared, salt, 4, 1, &b));
	ck_assert_mem_eq(a.stored_key, b.stored_key, 32);
	ck_assert(scram_password_prep_exact(mapped_passwords[_i].in));
}
END_TEST

START_TEST(test_prep_only_mapped_away)
{
	/* Everything maps to nothing: PostgreSQL refuses the empty result and
	 * uses the raw bytes. */
	static const uint8_t salt[4] = { 1, 2, 3, 4 };
	struct scram_secret mine;
	char stored[64], server[64], got[64];

	ck_assert(scram_secret_from_password("\u00ad\ufeff", salt, 4, 2, &mine));
	keys_b64("\u00ad\ufeff", salt, 4, 2, stored, server);
	b64(mine.stored_key, 32, got);
	ck_assert_str_eq(got, stored);
	ck_assert(scram_password_prep_exact("\u00ad\ufeff"));
}
END_TEST

START_TEST(test_secret_from_password_limits)
{
	static const uint8_t salt[SCRAM_MAX_SALT_LEN + 1] = { 0 };
	char pw[SCRAM_MAX_PASSWORD_LEN + 2];
	struct scram_secret out;

	memset(pw, 'a', sizeof(pw) - 1);
	pw[SCRAM_MAX_PASSWORD_LEN] = '\0';
	ck_assert(scram_secret_from_password(pw, salt, 16, 1, &out));
	pw[SCRAM_MAX_PASSWORD_LEN] = 'a';
	pw[SCRAM_MAX_PASSWORD_LEN + 1] = '\0';
	ck_assert(!scram_secret_from_password(pw, salt, 16, 1, &out));
	ck_assert_int_eq(out.iterations, 0);
	ck_assert(scram_make_secret(pw) == NULL);

	ck_assert(!scram_secret_from_password("pw", salt, 0, 1, &out));
	ck_assert(!scram_secret_from_password("pw", salt, SCRAM_MAX_SALT_LEN + 1, 1, &out));
	ck_assert(scram_secret_from_password("pw", salt, SCRAM_MAX_SALT_LEN, 1, &out));
	ck_assert(!scram_secret_from_password("pw", salt, 16, 0, &out));
	ck_assert(!scram_secret_from_password("pw", salt, 16, -5, &out));
}
END_TEST

START_TEST(test_make_secret)
{
	char *a = scram_make_secret("tool_pw"), *b = scram_make_secret("tool_pw"), *again;
	struct scram_secret sa, sb, derived;
	struct scram_server s;
	bool v_ok = false;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_str_ne(a, b);            /* fresh salt each time */
	secret_of(a, &sa);
	secret_of(b, &sb);
	ck_assert_int_eq(sa.iterations, 4096);
	ck_assert_uint_eq(sa.salt_len, 16);
	ck_assert(scram_secret_from_password("tool_pw", sa.salt, sa.salt_len, 4096, &derived));
	ck_assert_mem_eq(derived.stored_key, sa.stored_key, 32);
	again = scram_secret_to_text(&sa);
	ck_assert_str_eq(again, a);

	scram_server_init(&s, &sa, NULL, 0);
	ck_assert_int_gt(exchange(&s, PLAIN, "n,,", "tool_pw", NULL, &v_ok), 0);
	ck_assert(v_ok);
	scram_server_reset(&s);
	free(a);
	free(b);
	free(again);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Secret parsing */

#define K32 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define A43 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define SALT64 A43 A43 "=="          /* 64 zero bytes */
#define SALT65 A43 A43 "A="          /* 65 zero bytes */
static const struct {
	const char *text;
	bool ok;
} parse_cases[] = {
	{ RFC_SECRET, true },
	{ "SCRAM-SHA-256$1:AA==$" K32 ":" K32, true },
	{ "SCRAM-SHA-256$2147483647:AAAA$" K32 ":" K32, true },
	/* A 64-byte salt is the most we store. */
	{ "SCRAM-SHA-256$4096:" SALT64 "$" K32 ":" K32, true },
	{ "SCRAM-SHA-256$4096:" SALT65 "$" K32 ":" K32, false },
	{ "", false },
	{ "SCRAM-SHA-256", false },
	{ "SCRAM-SHA-256$", false },
	{ "scram-sha-256$4096:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-1$4096:" RFC_SALT "$" K32 ":" K32, false },
	{ " SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$0:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$-1:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$+4096:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$04096:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$ 4096:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$4096x:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$2147483648:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$99999999999999999999:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$:" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$4096:$" K32 ":" K32, false },                  /* empty salt */
	{ "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" K32 ":" K32, false }, /* bad padding */
	{ "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==$" K32 ":" K32, false }, /* non-canonical */
	{ "SCRAM-SHA-256$4096:W22ZaJ0S NY7soEsUEjb6gQ==$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$4096:W22Z=J0SNY7soEsUEjb6gQ==$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ$" K32 ":" K32, false }, /* unpadded */
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32, false },             /* no ServerKey */
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":", false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$:" K32, false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT K32 ":" K32, false },         /* no '$' */
	{ "SCRAM-SHA-256$4096$" RFC_SALT "$" K32 ":" K32, false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":" K32 "$", false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":" K32 ":" K32, false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":" K32 " ", false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":" K32 "\n", false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$AAAA:" K32, false },        /* 3-byte key */
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":" K32 "AAAA", false }, /* 35 bytes */
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qZ=:" K32, false },
	{ "SCRAM-SHA-256$4096:" RFC_SALT "$" K32 ":"
	  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU", false },
	{ "md5b1116845021429c9cd5c0c6bb22019de", false },
};

START_TEST(test_parse_secret)
{
	struct scram_secret out;
	bool ok = scram_parse_secret(parse_cases[_i].text, &out);

	ck_assert_msg(ok == parse_cases[_i].ok, "\"%s\": expected %s", parse_cases[_i].text,
	              parse_cases[_i].ok ? "success" : "failure");
	if (!ok) {
		ck_assert_int_eq(out.iterations, 0);
		ck_assert_uint_eq(out.salt_len, 0);
	}
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Mechanisms, nonces, buffers, state */

START_TEST(test_mechanisms)
{
	static const char plus[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
	static const char plain[] = "SCRAM-SHA-256\0";

	ck_assert_uint_eq(scram_server_mechanisms_len(true), sizeof(plus));
	ck_assert_mem_eq(scram_server_mechanisms(true), plus, sizeof(plus));
	ck_assert_uint_eq(scram_server_mechanisms_len(false), sizeof(plain));
	ck_assert_mem_eq(scram_server_mechanisms(false), plain, sizeof(plain));
}
END_TEST

START_TEST(test_random_nonce)
{
	struct scram_secret secret;
	struct scram_server s;
	char out1[256], out2[256], r1[128], r2[128];
	uint8_t raw[64];

	rfc_secret(&secret);
	scram_server_init(&s, &secret, NULL, 0);
	ck_assert_int_gt(first(&s, PLAIN, RFC_CLIENT_FIRST, out1, sizeof(out1)), 0);
	scram_server_reset(&s);
	scram_server_init(&s, &secret, NULL, 0);
	ck_assert_int_gt(first(&s, PLAIN, RFC_CLIENT_FIRST, out2, sizeof(out2)), 0);
	scram_server_reset(&s);

	attr(out1, 'r', r1, sizeof(r1));
	attr(out2, 'r', r2, sizeof(r2));
	ck_assert_str_ne(r1, r2);
	ck_assert_int_eq(strncmp(r1, RFC_CNONCE, strlen(RFC_CNONCE)), 0);
	ck_assert_uint_eq(strlen(r1), strlen(RFC_CNONCE) + 24);
	ck_assert_uint_eq(unb64(r1 + strlen(RFC_CNONCE), raw), SCRAM_NONCE_RAW_LEN);
	ck_assert_str_eq(strstr(out1, ",s="), ",s=" RFC_SALT ",i=4096");
}
END_TEST

START_TEST(test_output_too_small)
{
	struct scram_server s;
	char out[128];

	rfc_first(&s);                         /* needs strlen + 1 bytes: fits */
	scram_server_reset(&s);

	{
		struct scram_secret secret;

		rfc_secret(&secret);
		scram_server_init(&s, &secret, NULL, 0);
		scram_server_set_nonce_for_test(&s, RFC_SNONCE);
		ck_assert_int_eq(first(&s, PLAIN, RFC_CLIENT_FIRST, out, strlen(RFC_SERVER_FIRST)), -1);
		ck_assert_int_eq(s.step, SCRAM_FAILED);
		scram_server_reset(&s);
	}

	rfc_first(&s);
	ck_assert_int_eq(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out,
	                       strlen(RFC_SERVER_FINAL)), -1);
	scram_server_reset(&s);

	rfc_first(&s);
	ck_assert_int_eq(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out,
	                       strlen(RFC_SERVER_FINAL) + 1), (int)strlen(RFC_SERVER_FINAL));
	ck_assert_str_eq(out, RFC_SERVER_FINAL);
	scram_server_reset(&s);
}
END_TEST

START_TEST(test_out_of_order)
{
	struct scram_secret secret;
	struct scram_server s;
	char out[256];

	/* Nothing works on a zeroed or reset state; reset is idempotent. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(first(&s, PLAIN, RFC_CLIENT_FIRST, out, sizeof(out)), -1);
	scram_server_reset(&s);
	scram_server_reset(&s);
	ck_assert_int_eq(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out, sizeof(out)), -1);
	scram_server_reset(&s);

	/* Final before first. */
	rfc_secret(&secret);
	scram_server_init(&s, &secret, NULL, 0);
	ck_assert_int_eq(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out, sizeof(out)), -1);
	ck_assert_int_eq(s.step, SCRAM_FAILED);
	scram_server_reset(&s);

	/* First twice. */
	rfc_first(&s);
	ck_assert_int_eq(first(&s, PLAIN, RFC_CLIENT_FIRST, out, sizeof(out)), -1);
	ck_assert_int_eq(s.step, SCRAM_FAILED);
	ck_assert_int_eq(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out, sizeof(out)), -1);
	scram_server_reset(&s);

	/* Final twice: the replay fails. */
	rfc_first(&s);
	ck_assert_int_gt(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out, sizeof(out)), 0);
	ck_assert_int_eq(final(&s, RFC_FINAL_NO_PROOF ",p=" RFC_PROOF, out, sizeof(out)), -1);
	ck_assert_int_eq(s.step, SCRAM_FAILED);

	/* Reset wipes everything. */
	scram_server_reset(&s);
	ck_assert_int_eq(s.step, SCRAM_UNUSED);
	ck_assert_ptr_null(s.nonce);
	ck_assert_ptr_null(s.client_first_bare);
	ck_assert_ptr_null(s.server_first);
	for (size_t i = 0; i < sizeof(s.secret.stored_key); i++)
		ck_assert_uint_eq(s.secret.stored_key[i], 0);
}
END_TEST

START_TEST(test_bad_cbind_init)
{
	struct scram_secret secret;
	struct scram_server s;
	uint8_t big[SCRAM_MAX_CBIND_LEN + 1] = { 0 };
	char out[256];

	rfc_secret(&secret);
	scram_server_init(&s, &secret, big, sizeof(big));
	ck_assert_int_eq(first(&s, PLAIN, RFC_CLIENT_FIRST, out, sizeof(out)), -1);
	ck_assert_ptr_nonnull(scram_server_error(&s));
	scram_server_reset(&s);
	scram_server_init(&s, &secret, NULL, 32);
	ck_assert_int_eq(first(&s, PLAIN, RFC_CLIENT_FIRST, out, sizeof(out)), -1);
	scram_server_reset(&s);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Channel binding */

static const struct cb_case {
	const char *name;
	bool tls;                  /* server has binding data (offered PLUS) */
	const char *mech;
	const char *gs2;
	const uint8_t *client_cbind;   /* what the client binds to */
	bool first_ok, final_ok;
} cb_cases[] = {
	{ "PLUS, same certificate", true, PLUS, GS2_P, cbind_ours, true, true },
	{ "PLUS, other certificate (MITM)", true, PLUS, GS2_P, cbind_theirs, true, false },
	{ "PLUS without TLS", false, PLUS, GS2_P, cbind_ours, false, false },
	{ "PLUS with n header", true, PLUS, "n,,", cbind_ours, false, false },
	{ "PLUS with y header", true, PLUS, "y,,", cbind_ours, false, false },
	{ "PLUS, tls-unique", true, PLUS, "p=tls-unique,,", cbind_ours, false, false },
	{ "PLUS, tls-server-end-pointX", true, PLUS, "p=tls-server-end-pointX,,", cbind_ours,
	  false, false },
	{ "plain over TLS, n header", true, PLAIN, "n,,", cbind_ours, true, true },
	{ "plain over TLS, y header (downgrade)", true, PLAIN, "y,,", cbind_ours, false, false },
	{ "plain over TLS, p header", true, PLAIN, GS2_P, cbind_ours, false, false },
	{ "plain, no TLS, n header", false, PLAIN, "n,,", cbind_ours, true, true },
	{ "plain, no TLS, y header", false, PLAIN, "y,,", cbind_ours, true, true },
	{ "plain, no TLS, p header", false, PLAIN, GS2_P, cbind_ours, false, false },
};

START_TEST(test_channel_binding)
{
	const struct cb_case *c = &cb_cases[_i];
	struct scram_secret secret;
	struct scram_server s;
	bool v_ok = false;
	int r;

	rfc_secret(&secret);
	scram_server_init(&s, &secret, c->tls ? cbind_ours : NULL, c->tls ? sizeof(cbind_ours) : 0);
	r = exchange(&s, c->mech, c->gs2, RFC_PASSWORD, c->client_cbind, &v_ok);
	if (!c->first_ok) {
		ck_assert_msg(r == -2, "%s: first step accepted", c->name);
		ck_assert_ptr_nonnull(scram_server_error(&s));
	} else if (!c->final_ok) {
		ck_assert_msg(r == -1, "%s: final step accepted", c->name);
		ck_assert_str_eq(scram_server_error(&s), "password authentication failed");
	} else {
		ck_assert_msg(r > 0 && v_ok, "%s: refused (%s)", c->name, scram_server_detail(&s));
	}
	scram_server_reset(&s);
}
END_TEST

/* The c= attribute must repeat the header the client sent, flag included. */
static const struct {
	bool tls;
	const char *mech, *gs2, *c;
} cb_mismatch[] = {
	{ false, PLAIN, "y,,", "c=biws" },
	{ false, PLAIN, "n,,", "c=eSws" },
	{ false, PLAIN, "n,,", "c=" },
	{ false, PLAIN, "n,,", "c=biws=" },
	{ false, PLAIN, "n,,", "c=bi ws" },
	{ true, PLUS, GS2_P, "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws" },   /* header only, no data */
	{ true, PLUS, GS2_P, "c=biws" },
};

START_TEST(test_cbind_attr_mismatch)
{
	struct scram_secret secret;
	struct scram_server s;
	char cfirst[128], sfirst[256], before[512], r[256], cfinal[1024], v[64], out[64];

	rfc_secret(&secret);
	scram_server_init(&s, &secret, cb_mismatch[_i].tls ? cbind_ours : NULL,
	                  cb_mismatch[_i].tls ? sizeof(cbind_ours) : 0);
	snprintf(cfirst, sizeof(cfirst), "%sn=,r=abc", cb_mismatch[_i].gs2);
	ck_assert_int_gt(first(&s, cb_mismatch[_i].mech, cfirst, sfirst, sizeof(sfirst)), 0);
	attr(sfirst, 'r', r, sizeof(r));
	snprintf(before, sizeof(before), "%s,r=%s", cb_mismatch[_i].c, r);
	client_final(RFC_PASSWORD, cfirst + strlen(cb_mismatch[_i].gs2), sfirst, before, cfinal,
	             sizeof(cfinal), v);
	ck_assert_int_eq(final(&s, cfinal, out, sizeof(out)), -1);
	ck_assert_str_eq(scram_server_detail(&s), "SCRAM channel binding check failed.");
	scram_server_reset(&s);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Malformed client-first-message */

#define E_AUTHZID "client uses authorization identity, but it is not supported"
#define E_MECH "client selected an invalid SASL authentication mechanism"

static const struct first_case {
	const char *mech;
	const char *msg;
	size_t len;             /* 0: strlen(msg) */
	const char *error;      /* expected error, or NULL for "any" / success */
	bool ok;
} first_cases[] = {
	/* Accepted. */
	{ PLAIN, "n,,n=user,r=abc", 0, NULL, true },
	{ PLAIN, "n,,n=,r=abc", 0, NULL, true },
	{ PLAIN, "n,,n=*,r=abc", 0, NULL, true },
	{ PLAIN, "n,,n=us=2Cer,r=abc,x=extension,Y=", 0, NULL, true },
	{ PLAIN, "n,,n=,r=!\"#$%&'()*+-./:;<=>?@[\\]^_`{|}~", 0, NULL, true },
	{ PLAIN, "n,,n=\xc3\xa9,r=a", 0, NULL, true },         /* user name ignored */
	/* Refused. */
	{ PLAIN, "", 0, "malformed SCRAM message", false },
	{ PLAIN, "n", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=user", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=user,", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=user,r=", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=user,r", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=user,x=1,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=,r=abc,", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=,r=abc,,", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=,r=abc,1=x", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=,r=abc,e", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,,n=,r=abc,ex=1", 0, "malformed SCRAM message", false },
	{ PLAIN, "x,,n=,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "N,,n=,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "n=,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, ",,n=,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,x,n=,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "n,a=bob,n=,r=abc", 0, E_AUTHZID, false },
	{ PLAIN, "n,,m=ext,n=,r=abc", 0, "client requires an unsupported SCRAM extension", false },
	{ PLAIN, "n,,n=,r=ab c", 0, "non-printable characters in SCRAM nonce", false },
	{ PLAIN, "n,,n=,r=ab\x7f", 0, "non-printable characters in SCRAM nonce", false },
	{ PLAIN, "n,,n=,r=ab\t", 0, "non-printable characters in SCRAM nonce", false },
	{ PLAIN, "n,,n=,r=\xc3\xa9", 0, "non-printable characters in SCRAM nonce", false },
	{ PLAIN, "n,,n=,r=abc\0def", 15, "malformed SCRAM message", false },
	{ PLAIN, "\0", 1, "malformed SCRAM message", false },
	{ "SCRAM-SHA-1", "n,,n=,r=abc", 0, E_MECH, false },
	{ "", "n,,n=,r=abc", 0, E_MECH, false },
	{ "scram-sha-256", "n,,n=,r=abc", 0, E_MECH, false },
	{ PLUS, "n,,n=,r=abc", 0, E_MECH, false },
	{ PLAIN, "p,,n=,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "y,n=,r=abc", 0, "malformed SCRAM message", false },
	{ PLAIN, "yy,,n=,r=abc", 0, "malformed SCRAM message", false },
};

START_TEST(test_first_message)
{
	const struct first_case *c = &first_cases[_i];
	struct scram_secret secret;
	struct scram_server s;
	size_t len = c->len ? c->len : strlen(c->msg);
	char out[512];
	int r;

	rfc_secret(&secret);
	scram_server_init(&s, &secret, NULL, 0);
	r = scram_server_first(&s, c->mech, (const uint8_t *)c->msg, len, out, sizeof(out));
	if (c->ok) {
		ck_assert_msg(r > 0, "\"%s\" refused: %s", c->msg, scram_server_error(&s));
		ck_assert_int_eq(s.step, SCRAM_WAIT_FINAL);
	} else {
		ck_assert_msg(r == -1, "\"%s\" accepted", c->msg);
		ck_assert_int_eq(s.step, SCRAM_FAILED);
		ck_assert_str_eq(scram_server_error(&s), c->error);
	}
	scram_server_reset(&s);
}
END_TEST

/* PLUS-only header checks need a TLS state. */
static const char *const first_plus_bad[] = {
	"p,,n=,r=abc",
	"p=,,n=,r=abc",
	"p=tls-server-end-point,n=,r=abc",
	"p=tls-server-end-point",
	"p=tls-server-end-point,",
	"p=tls-server-end-point,,",
	"p=tls-server-end-point,a=x,n=,r=abc",
};

START_TEST(test_first_message_plus)
{
	struct scram_secret secret;
	struct scram_server s;
	char out[512];

	rfc_secret(&secret);
	scram_server_init(&s, &secret, cbind_ours, sizeof(cbind_ours));
	ck_assert_int_eq(first(&s, PLUS, first_plus_bad[_i], out, sizeof(out)), -1);
	ck_assert_ptr_nonnull(scram_server_error(&s));
	scram_server_reset(&s);
}
END_TEST

START_TEST(test_first_message_truncated)
{
	static const char full[] = GS2_P "n=user,r=fyko+d2lbbFgONRv9qkxdawL,x=y";
	/* Prefixes that are still valid messages: those ending inside the nonce
	 * and those ending after "x=". */
	const size_t nonce_start = strlen(GS2_P "n=user,r=");
	const size_t nonce_end = (size_t)(strstr(full, ",x=") - full);
	struct scram_secret secret;
	struct scram_server s;
	char out[512];

	rfc_secret(&secret);
	for (size_t len = 0; len <= strlen(full); len++) {
		/* A heap block of exactly len bytes, so ASan sees any overread. */
		uint8_t *msg = xmalloc(len);
		bool valid = (len > nonce_start && len <= nonce_end) || len >= nonce_end + 3;
		int r;

		memcpy(msg, full, len);
		scram_server_init(&s, &secret, cbind_ours, sizeof(cbind_ours));
		r = scram_server_first(&s, PLUS, msg, len, out, sizeof(out));
		ck_assert_msg((r > 0) == valid, "len %zu: %d", len, r);
		scram_server_reset(&s);
		free(msg);
	}
}
END_TEST

START_TEST(test_first_message_too_long)
{
	struct scram_secret secret;
	struct scram_server s;
	size_t len = SCRAM_MAX_MESSAGE_LEN + 1;
	char *msg = xmalloc(len);
	char *out = xmalloc(SCRAM_SERVER_FIRST_MAX(len));

	memcpy(msg, "n,,n=,r=", 8);
	memset(msg + 8, 'a', len - 8);
	rfc_secret(&secret);
	scram_server_init(&s, &secret, NULL, 0);
	ck_assert_int_eq(scram_server_first(&s, PLAIN, (uint8_t *)msg, len, out,
	                                    SCRAM_SERVER_FIRST_MAX(len)), -1);
	scram_server_reset(&s);

	/* One byte less is accepted, and SCRAM_SERVER_FIRST_MAX is enough. */
	scram_server_init(&s, &secret, NULL, 0);
	ck_assert_int_gt(scram_server_first(&s, PLAIN, (uint8_t *)msg, len - 1, out,
	                                    SCRAM_SERVER_FIRST_MAX(len - 1)), 0);
	scram_server_reset(&s);
	free(msg);
	free(out);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Malformed client-final-message.  The exchange is the RFC's (fixed
 * nonces); VALID stands for the correct proof over `before`. */

#define NONCE RFC_CNONCE RFC_SNONCE
#define VALID ((const char *)1)
#define NO_PROOF ((const char *)2)

static const struct final_case {
	const char *before;
	const char *proof;      /* VALID, NO_PROOF, or literal base64 */
	const char *after;
	bool ok;
} final_cases[] = {
	{ "c=biws,r=" NONCE, VALID, "", true },
	{ "c=biws,r=" NONCE ",x=ext", VALID, "", true },           /* extension, signed over */
	{ "c=biws,r=" NONCE ",x=ext,y=", VALID, "", true },
	{ "", NO_PROOF, "", false },
	{ "c=biws", NO_PROOF, "", false },
	{ "c=biws,", NO_PROOF, "", false },
	{ "c=biws,r=" NONCE, NO_PROOF, "", false },
	{ "c=biws,r=" NONCE ",", NO_PROOF, "", false },
	{ "c=biws,r=" NONCE ",p", NO_PROOF, "", false },
	{ "c=biws,r=" NONCE, "", "", false },
	{ "c=biws,r=" NONCE, "!!!!", "", false },
	{ "c=biws,r=" NONCE, "AAAA", "", false },
	{ "c=biws,r=" NONCE, "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndQ==", "", false }, /* 31 bytes */
	{ "c=biws,r=" NONCE, "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQA", "", false },  /* 33 bytes */
	/* Non-canonical base64 of the right length. */
	{ "c=biws,r=" NONCE, "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=", "", false },
	{ "c=biws,r=" NONCE, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "", false },  /* wrong */
	{ "c=biws,r=" NONCE, VALID, ",x=1", false },                /* garbage after proof */
	{ "c=biws,r=" NONCE, VALID, ",", false },
	{ "c=biws,r=" NONCE, VALID, " ", false },
	{ "c=biws,r=" NONCE, VALID, "\n", false },
	{ "c=biws,r=" RFC_CNONCE, VALID, "", false },             /* client nonce only */
	{ "c=biws,r=" NONCE "x", VALID, "", false },
	{ "c=biws,r=" RFC_CNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1", VALID, "", false },
	{ "c=biws,r=", VALID, "", false },
	/* An "r" extension after the nonce: ignored, as PostgreSQL does. */
	{ "c=biws,r=" NONCE ",r=" NONCE, VALID, "", true },
	{ "c=eSws,r=" NONCE, VALID, "", false },
	{ "c=,r=" NONCE, VALID, "", false },
	{ "r=" NONCE ",c=biws", VALID, "", false },                /* order */
	{ "c=biws,x=1,r=" NONCE, VALID, "", false },
	{ "c=biws,r=" NONCE ",1=x", VALID, "", false },
	{ " c=biws,r=" NONCE, VALID, "", false },
	{ "C=biws,r=" NONCE, VALID, "", false },
};

static void final_message(const struct final_case *c, const char *password, char *out,
                          size_t outlen, char v[64])
{
	if (c->proof == NO_PROOF)
		snprintf(out, outlen, "%s", c->before);
	else if (c->proof == VALID) {
		char tmp[1024];

		client_final(password, RFC_CLIENT_FIRST + 3, RFC_SERVER_FIRST, c->before, tmp,
		             sizeof(tmp), v);
		snprintf(out, outlen, "%s%s", tmp, c->after);
	} else
		snprintf(out, outlen, "%s,p=%s%s", c->before, c->proof, c->after);
}

START_TEST(test_final_message)
{
	const struct final_case *c = &final_cases[_i];
	struct scram_server s;
	char msg[1024], v[64] = "", out[SCRAM_SERVER_FINAL_MAX];
	int r;

	final_message(c, RFC_PASSWORD, msg, sizeof(msg), v);
	rfc_first(&s);
	r = final(&s, msg, out, sizeof(out));
	if (c->ok) {
		ck_assert_msg(r > 0, "\"%s\" refused: %s", msg, scram_server_detail(&s));
		ck_assert_str_eq(out, v);
	} else {
		ck_assert_msg(r == -1, "\"%s\" accepted", msg);
		ck_assert_int_eq(s.step, SCRAM_FAILED);
		/* One error for every cause. */
		ck_assert_str_eq(scram_server_error(&s), "password authentication failed");
		ck_assert_ptr_nonnull(scram_server_detail(&s));
	}
	scram_server_reset(&s);
}
END_TEST

START_TEST(test_final_message_nul)
{
	static const char msg[] = RFC_FINAL_NO_PROOF ",p=" RFC_PROOF;
	struct scram_server s;
	char buf[sizeof(msg) + 1], out[SCRAM_SERVER_FINAL_MAX];

	/* The right message with a NUL appended, or one NUL in place of a byte. */
	memcpy(buf, msg, sizeof(msg));
	rfc_first(&s);
	ck_assert_int_eq(scram_server_final(&s, (uint8_t *)buf, sizeof(msg), out, sizeof(out)), -1);
	scram_server_reset(&s);
	buf[5] = '\0';
	rfc_first(&s);
	ck_assert_int_eq(scram_server_final(&s, (uint8_t *)buf, sizeof(msg) - 1, out, sizeof(out)), -1);
	scram_server_reset(&s);
	rfc_first(&s);
	ck_assert_int_eq(scram_server_final(&s, NULL, 0, out, sizeof(out)), -1);
	scram_server_reset(&s);
}
END_TEST

START_TEST(test_final_message_truncated)
{
	static const char full[] = RFC_FINAL_NO_PROOF ",p=" RFC_PROOF;
	struct scram_server s;
	char out[SCRAM_SERVER_FINAL_MAX];

	for (size_t len = 0; len < strlen(full); len++) {
		uint8_t *msg = xmalloc(len);

		memcpy(msg, full, len);
		rfc_first(&s);
		ck_assert_msg(scram_server_final(&s, msg, len, out, sizeof(out)) == -1,
		              "len %zu accepted", len);
		ck_assert_str_eq(scram_server_error(&s), "password authentication failed");
		scram_server_reset(&s);
		free(msg);
	}
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Mock exchanges for unknown users */

static void mock_first(const char *user, const uint8_t *cbind, const char *mech, const char *gs2,
                       char *out, size_t outlen, int *r)
{
	struct scram_server s;
	char msg[128];

	snprintf(msg, sizeof(msg), "%sn=,r=abc", gs2);
	scram_server_init_mock(&s, user, cbind, cbind ? 32 : 0);
	*r = first(&s, mech, msg, out, outlen);
	scram_server_reset(&s);
}

START_TEST(test_mock_salt)
{
	char a1[256], a2[256], b[256], sa1[128], sa2[128], sb[128], it[16];
	uint8_t raw[96];
	int r;

	mock_first("ghost", NULL, PLAIN, "n,,", a1, sizeof(a1), &r);
	ck_assert_int_gt(r, 0);
	mock_first("ghost", NULL, PLAIN, "n,,", a2, sizeof(a2), &r);
	ck_assert_int_gt(r, 0);
	mock_first("phantom", NULL, PLAIN, "n,,", b, sizeof(b), &r);
	ck_assert_int_gt(r, 0);

	attr(a1, 's', sa1, sizeof(sa1));
	attr(a2, 's', sa2, sizeof(sa2));
	attr(b, 's', sb, sizeof(sb));
	ck_assert_str_eq(sa1, sa2);            /* stable per user */
	ck_assert_str_ne(sa1, sb);             /* differs between users */
	ck_assert_uint_eq(unb64(sa1, raw), SCRAM_DEFAULT_SALT_LEN);
	attr(a1, 'i', it, sizeof(it));
	ck_assert_str_eq(it, "4096");
}
END_TEST

/* A mock negotiates channel binding exactly like a real user. */
START_TEST(test_mock_cbind)
{
	const struct cb_case *c = &cb_cases[_i];
	char out[256];
	int r;

	mock_first("ghost", c->tls ? cbind_ours : NULL, c->mech, c->gs2, out, sizeof(out), &r);
	ck_assert_msg((r > 0) == c->first_ok, "%s", c->name);
}
END_TEST

START_TEST(test_mock_always_fails)
{
	static const char *const passwords[] = { "", "pencil", "app_pw", "ghost" };
	struct scram_server s, real;
	struct scram_secret secret;
	bool v_ok = true;

	for (size_t i = 0; i < ARRAY_SIZE(passwords); i++) {
		scram_server_init_mock(&s, "ghost", NULL, 0);
		ck_assert_int_eq(exchange(&s, PLAIN, "n,,", passwords[i], NULL, &v_ok), -1);
		ck_assert(!v_ok);
		ck_assert_int_eq(s.step, SCRAM_FAILED);

		/* Same error as a wrong password for a real user. */
		rfc_secret(&secret);
		scram_server_init(&real, &secret, NULL, 0);
		ck_assert_int_eq(exchange(&real, PLAIN, "n,,", "wrong", NULL, &v_ok), -1);
		ck_assert_str_eq(scram_server_error(&s), scram_server_error(&real));
		scram_server_reset(&real);
		scram_server_reset(&s);
	}
}
END_TEST

/* ---------------------------------------------------------------------- */

Suite *scram_suite(void)
{
	Suite *s = suite_create("scram");
	TCase *tc = tcase_create("rfc7677");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_rfc7677_secret);
	tcase_add_test(tc, test_rfc7677_exchange);
	tcase_add_test(tc, test_rfc7677_client_side);
	tcase_add_loop_test(tc, test_rfc7677_flipped_bit, 0, 32);
	suite_add_tcase(s, tc);

	tc = tcase_create("secrets");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_pg_secret_from_password);
	tcase_add_test(tc, test_pg_secret_exchange);
	tcase_add_loop_test(tc, test_pg_secret_prep, 0, (int)ARRAY_SIZE(prep_cases));
	tcase_add_loop_test(tc, test_prep_raw, 0, (int)ARRAY_SIZE(raw_passwords));
	tcase_add_loop_test(tc, test_prep_mapped, 0, (int)ARRAY_SIZE(mapped_passwords));
	tcase_add_test(tc, test_prep_only_mapped_away);
	tcase_add_test(tc, test_secret_from_password_limits);
	tcase_add_test(tc, test_make_secret);
	tcase_add_loop_test(tc, test_parse_secret, 0, (int)ARRAY_SIZE(parse_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("exchange");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_mechanisms);
	tcase_add_test(tc, test_random_nonce);
	tcase_add_test(tc, test_output_too_small);
	tcase_add_test(tc, test_out_of_order);
	tcase_add_test(tc, test_bad_cbind_init);
	tcase_add_loop_test(tc, test_channel_binding, 0, (int)ARRAY_SIZE(cb_cases));
	tcase_add_loop_test(tc, test_cbind_attr_mismatch, 0, (int)ARRAY_SIZE(cb_mismatch));
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_first_message, 0, (int)ARRAY_SIZE(first_cases));
	tcase_add_loop_test(tc, test_first_message_plus, 0, (int)ARRAY_SIZE(first_plus_bad));
	tcase_add_test(tc, test_first_message_truncated);
	tcase_add_test(tc, test_first_message_too_long);
	tcase_add_loop_test(tc, test_final_message, 0, (int)ARRAY_SIZE(final_cases));
	tcase_add_test(tc, test_final_message_nul);
	tcase_add_test(tc, test_final_message_truncated);
	suite_add_tcase(s, tc);

	tc = tcase_create("mock");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_mock_salt);
	tcase_add_loop_test(tc, test_mock_cbind, 0, (int)ARRAY_SIZE(cb_cases));
	tcase_add_test(tc, test_mock_always_fails);
	suite_add_tcase(s, tc);
	return s;
}
