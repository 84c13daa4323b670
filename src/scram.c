/*
 * scram.c - SCRAM-SHA-256 server side (RFC 5802, RFC 7677) as PostgreSQL
 * speaks it, on OpenSSL's HMAC, PBKDF2, SHA-256 and random generator.
 *
 * Owns: PostgreSQL's secret text format, the password preparation used to
 * derive secrets (a partial SASLprep, see scram.h), and the two-step
 * server exchange.  Does not own: message framing, choosing the
 * authentication method, looking users up, logging.
 *
 * The exchange, with the message grammar this file accepts:
 *
 *   client-first  = gs2-header client-first-bare
 *   gs2-header    = ("n" / "y" / "p=tls-server-end-point") "," ","
 *   client-first-bare = "n=" username "," "r=" c-nonce *("," ext)
 *   server-first  = "r=" c-nonce s-nonce "," "s=" salt "," "i=" iterations
 *   client-final  = "c=" base64(gs2-header cbind-data) "," "r=" c-nonce s-nonce
 *                   *("," ext) "," "p=" base64(ClientProof)
 *   server-final  = "v=" base64(ServerSignature)
 *   ext           = ALPHA "=" *(any but ",")
 *
 *   AuthMessage   = client-first-bare "," server-first "," client-final-without-proof
 *
 * Secrets are compared with CRYPTO_memcmp and wiped with OPENSSL_cleanse.
 */
#include "sluice/scram.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define SECRET_PREFIX "SCRAM-SHA-256$"
#define GS2_PLUS      "p=tls-server-end-point,"

/* The one error text for every failure of the final step (see scram.h). */
static const char generic_final_error[] = "password authentication failed";
static const char malformed[] = "malformed SCRAM message";
static const char no_random[] = "could not generate random data";

/* ---------------------------------------------------------------------- */
/* Base64 (RFC 4648, standard alphabet, padded).  Written here rather than
 * using EVP_DecodeBlock, which skips whitespace, ignores non-canonical
 * trailing bits and reports padded lengths. */

static const char b64_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encoded length of n bytes, without the NUL; a constant expression. */
#define B64_LEN(n) (((n) + 2) / 3 * 4)

/* Encode n bytes into out, which must hold B64_LEN(n) + 1 bytes.
 * Returns the encoded length; out is NUL-terminated. */
static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t rest = n - i;

		if (rest > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (rest > 2)
			v |= in[i + 2];
		out[o++] = b64_chars[(v >> 18) & 63];
		out[o++] = b64_chars[(v >> 12) & 63];
		out[o++] = rest > 1 ? b64_chars[(v >> 6) & 63] : '=';
		out[o++] = rest > 2 ? b64_chars[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decode exactly `len` characters of canonical padded base64 (no
 * whitespace, padding only at the end, unused bits zero) into at most
 * `outmax` bytes.  Returns the decoded length, or -1 if the text is not
 * canonical base64 or does not fit.
 */
static long b64_decode(const char *in, size_t len, uint8_t *out, size_t outmax)
{
	size_t o = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int pad = 0;
		int v[4];

		if (last && in[i + 3] == '=')
			pad = in[i + 2] == '=' ? 2 : 1;
		for (int k = 0; k < 4 - pad; k++) {
			v[k] = b64_value((unsigned char)in[i + k]);
			if (v[k] < 0)
				return -1;
		}
		if (o + (size_t)(3 - pad) > outmax)
			return -1;
		out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (pad == 2) {
			if (v[1] & 0x0f)
				return -1;
			break;
		}
		out[o++] = (uint8_t)((v[1] & 0x0f) << 4 | v[2] >> 2);
		if (pad == 1) {
			if (v[2] & 0x03)
				return -1;
			break;
		}
		out[o++] = (uint8_t)((v[2] & 0x03) << 6 | v[3]);
	}
	return (long)o;
}

/* ---------------------------------------------------------------------- */
/* Crypto primitives */

static bool hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len,
                        uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int outlen = 0;

	if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen))
		return false;
	return outlen == SCRAM_KEY_LEN;
}

static bool sha256(const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	return SHA256(data, len, out) != NULL;
}

/* ---------------------------------------------------------------------- */
/* Password preparation: the part of PostgreSQL's pg_saslprep() that can be
 * done exactly without Unicode normalization tables (see scram.h). */

struct cp_range {
	uint32_t lo, hi;
};

/* RFC 3454 C.1.2, non-ASCII space characters: mapped to U+0020.  Checked
 * before the next table, so U+200B (in both) becomes a space. */
static const struct cp_range nonascii_space[] = {
	{ 0x00A0, 0x00A0 }, { 0x1680, 0x1680 }, { 0x2000, 0x200B },
	{ 0x202F, 0x202F }, { 0x205F, 0x205F }, { 0x3000, 0x3000 },
};

/* RFC 3454 B.1, commonly mapped to nothing: dropped. */
static const struct cp_range mapped_to_nothing[] = {
	{ 0x00AD, 0x00AD }, { 0x034F, 0x034F }, { 0x1806, 0x1806 },
	{ 0x180B, 0x180D }, { 0x200B, 0x200D }, { 0x2060, 0x2060 },
	{ 0xFE00, 0xFE0F }, { 0xFEFF, 0xFEFF },
};

/* RFC 3454 C.2.1 to C.9 (C.1.2 is mapped away before this check; the
 * non-characters of C.4 outside U+FDD0..U+FDEF are tested arithmetically).
 * Like PostgreSQL, the check runs on the mapped, not yet normalized text. */
static const struct cp_range prohibited[] = {
	{ 0x0000, 0x001F }, { 0x007F, 0x009F },               /* C.2.1, C.2.2 */
	{ 0x0340, 0x0341 },                                   /* C.8 */
	{ 0x06DD, 0x06DD }, { 0x070F, 0x070F }, { 0x180E, 0x180E },
	{ 0x200C, 0x200F }, { 0x2028, 0x202E }, { 0x2060, 0x2063 },
	{ 0x206A, 0x206F }, { 0x2FF0, 0x2FFB },               /* C.7 */
	{ 0xD800, 0xF8FF },                                   /* C.5, C.3 */
	{ 0xFDD0, 0xFDEF }, { 0xFEFF, 0xFEFF }, { 0xFFF9, 0xFFFD },
	{ 0x1D173, 0x1D17A }, { 0xE0001, 0xE0001 }, { 0xE0020, 0xE007F },
	{ 0xF0000, 0x10FFFF },                                /* C.3 planes 15, 16 */
};

/*
 * Characters for which SASLprep is provably the identity, in any sequence:
 * assigned in Unicode 3.2, not prohibited, not right-to-left, without a
 * compatibility mapping, each a starter that NFC recomposes to itself, and
 * none composing with a following member.  A password made of these (after
 * mapping) is prepared exactly as PostgreSQL prepares it.
 */
static const struct cp_range nfkc_stable[] = {
	{ 0x0020, 0x007E },                                   /* ASCII printables */
	{ 0x00A1, 0x00A7 }, { 0x00A9, 0x00A9 }, { 0x00AB, 0x00AC },
	{ 0x00AE, 0x00AE }, { 0x00B0, 0x00B1 }, { 0x00B6, 0x00B7 },
	{ 0x00BB, 0x00BB }, { 0x00BF, 0x0131 },               /* Latin-1, Latin Ext-A */
	{ 0x0134, 0x013E }, { 0x0141, 0x0148 }, { 0x014A, 0x017E },
	{ 0x0386, 0x0386 }, { 0x0388, 0x038A }, { 0x038C, 0x038C },
	{ 0x038E, 0x03A1 }, { 0x03A3, 0x03CE },               /* Greek */
	{ 0x0400, 0x045F },                                   /* Cyrillic */
	{ 0x3041, 0x3096 }, { 0x30A1, 0x30FA }, { 0x30FC, 0x30FC }, /* kana */
	{ 0x4E00, 0x9FA5 },                                   /* CJK unified */
	{ 0xAC00, 0xD7A3 },                                   /* Hangul syllables */
};

static bool in_table(uint32_t cp, const struct cp_range *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (cp >= t[i].lo && cp <= t[i].hi)
			return true;
	return false;
}

static bool is_prohibited(uint32_t cp)
{
	if ((cp & 0xFFFE) == 0xFFFE)    /* U+xFFFE, U+xFFFF in every plane (C.4) */
		return true;
	return in_table(cp, prohibited, ARRAY_SIZE(prohibited));
}

/*
 * Decode one UTF-8 sequence at s (NUL-terminated) with the same strictness
 * as PostgreSQL's pg_utf8_islegal(): no overlong forms, no surrogates,
 * nothing above U+10FFFF.  Returns its length, or 0 if it is not legal.
 */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		*cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		*cp = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		*cp = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		unsigned char t = s[i];

		if (t < lo || t > hi)
			return 0;   /* also stops at the NUL terminator */
		lo = 0x80;
		hi = 0xBF;
		*cp = (*cp << 6) | (t & 0x3F);
	}
	return len;
}

/*
 * Prepare `pw` into `out` (strlen(pw) + 1 bytes; the result is never
 * longer).  Returns the prepared length; *exact says whether it provably
 * equals PostgreSQL's preparation.  The caller has checked the length.
 */
static size_t prep_password(const char *pw, char *out, bool *exact)
{
	size_t len = strlen(pw);
	size_t o = 0;
	bool ascii = true, all_stable = true;
	const unsigned char *p;

	*exact = true;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)pw[i] & 0x80)
			ascii = false;
	if (ascii)
		goto raw;

	/* Map, validating UTF-8 as we go. */
	p = (const unsigned char *)pw;
	while (*p) {
		uint32_t cp;
		size_t n = utf8_decode(p, &cp);

		if (n == 0)
			goto raw;    /* not UTF-8: PostgreSQL uses the bytes as they are */
		if (in_table(cp, nonascii_space, ARRAY_SIZE(nonascii_space))) {
			out[o++] = ' ';
		} else if (!in_table(cp, mapped_to_nothing, ARRAY_SIZE(mapped_to_nothing))) {
			if (is_prohibited(cp))
				goto raw;     /* SASLPREP_PROHIBITED: bytes as they are */
			if (!in_table(cp, nfkc_stable, ARRAY_SIZE(nfkc_stable)))
				all_stable = false;
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
	}
	if (o == 0)
		goto raw;            /* PostgreSQL refuses an empty result: raw bytes */
	if (all_stable) {
		out[o] = '\0';
		return o;
	}
	*exact = false;          /* would need NFKC/unassigned/bidi tables */
raw:
	memcpy(out, pw, len + 1);
	return len;
}

bool scram_password_prep_exact(const char *password)
{
	size_t len = strlen(password);
	char *buf;
	bool exact;

	if (len > SCRAM_MAX_PASSWORD_LEN)
		return true;         /* refused by both */
	buf = xmalloc(len + 1);
	prep_password(password, buf, &exact);
	OPENSSL_cleanse(buf, len + 1);
	free(buf);
	return exact;
}

/* ---------------------------------------------------------------------- */
/* Secrets */

bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                                int iterations, struct scram_secret *out)
{
	size_t len = strlen(password);
	uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	char *prepared;
	size_t plen;
	bool exact, ok;

	memset(out, 0, sizeof(*out));
	if (len > SCRAM_MAX_PASSWORD_LEN || salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN ||
	    iterations < 1)
		return false;

	prepared = xmalloc(len + 1);
	plen = prep_password(password, prepared, &exact);
	ok = PKCS5_PBKDF2_HMAC(prepared, (int)plen, salt, (int)salt_len, iterations,
	                       EVP_sha256(), SCRAM_KEY_LEN, salted) == 1 &&
	     hmac_sha256(salted, sizeof(salted), "Client Key", 10, client_key) &&
	     sha256(client_key, sizeof(client_key), out->stored_key) &&
	     hmac_sha256(salted, sizeof(salted), "Server Key", 10, out->server_key);
	OPENSSL_cleanse(prepared, len + 1);
	free(prepared);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (!ok) {
		OPENSSL_cleanse(out, sizeof(*out));
		return false;
	}
	out->iterations = iterations;
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	return true;
}

/* Decode the base64 field [p, end) into exactly `want` bytes, or into
 * 1..want bytes when `exact` is false; returns the length or -1. */
static long decode_field(const char *p, const char *end, uint8_t *out, size_t want, bool exact)
{
	long n = b64_decode(p, (size_t)(end - p), out, want);

	if (n < 1 || (exact && (size_t)n != want))
		return -1;
	return n;
}

bool scram_parse_secret(const char *text, struct scram_secret *out)
{
	const char *p, *colon, *dollar, *colon2, *end;
	int64_t iter = 0;
	long n;

	memset(out, 0, sizeof(*out));
	if (strncmp(text, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0)
		return false;
	p = text + strlen(SECRET_PREFIX);

	/* <iterations>: decimal, 1..INT_MAX, no sign, no leading zero. */
	colon = strchr(p, ':');
	if (!colon || colon == p || *p == '0')
		return false;
	for (const char *q = p; q < colon; q++) {
		if (*q < '0' || *q > '9')
			return false;
		iter = iter * 10 + (*q - '0');
		if (iter > INT_MAX)
			return false;
	}

	/* <salt>$<StoredKey>:<ServerKey> */
	dollar = strchr(colon + 1, '$');
	if (!dollar)
		return false;
	colon2 = strchr(dollar + 1, ':');
	if (!colon2)
		return false;
	end = colon2 + 1 + strlen(colon2 + 1);

	n = decode_field(colon + 1, dollar, out->salt, SCRAM_MAX_SALT_LEN, false);
	if (n < 0 ||
	    decode_field(dollar + 1, colon2, out->stored_key, SCRAM_KEY_LEN, true) < 0 ||
	    decode_field(colon2 + 1, end, out->server_key, SCRAM_KEY_LEN, true) < 0) {
		OPENSSL_cleanse(out, sizeof(*out));
		return false;
	}
	out->salt_len = (size_t)n;
	out->iterations = (int)iter;
	return true;
}

char *scram_secret_to_text(const struct scram_secret *secret)
{
	char salt[B64_LEN(SCRAM_MAX_SALT_LEN) + 1];
	char stored[B64_LEN(SCRAM_KEY_LEN) + 1];
	char server[B64_LEN(SCRAM_KEY_LEN) + 1];
	size_t len;
	char *text;

	b64_encode(secret->salt, MIN(secret->salt_len, (size_t)SCRAM_MAX_SALT_LEN), salt);
	b64_encode(secret->stored_key, SCRAM_KEY_LEN, stored);
	b64_encode(secret->server_key, SCRAM_KEY_LEN, server);
	len = strlen(SECRET_PREFIX) + 11 + 1 + strlen(salt) + 1 + strlen(stored) + 1 +
	      strlen(server) + 1;
	text = xmalloc(len);
	snprintf(text, len, SECRET_PREFIX "%d:%s$%s:%s", secret->iterations, salt, stored, server);
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	return text;
}

char *scram_make_secret(const char *password)
{
	uint8_t salt[SCRAM_DEFAULT_SALT_LEN];
	struct scram_secret secret;
	char *text;

	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return NULL;
	if (!scram_secret_from_password(password, salt, sizeof(salt), SCRAM_DEFAULT_ITERATIONS,
	                                &secret))
		return NULL;
	text = scram_secret_to_text(&secret);
	OPENSSL_cleanse(&secret, sizeof(secret));
	return text;
}

/* ---------------------------------------------------------------------- */
/* Mechanism list */

static const char mechs_plus[] = SCRAM_MECHANISM_PLUS "\0" SCRAM_MECHANISM "\0";
static const char mechs_plain[] = SCRAM_MECHANISM "\0";

const char *scram_server_mechanisms(bool tls)
{
	return tls ? mechs_plus : mechs_plain;
}

size_t scram_server_mechanisms_len(bool tls)
{
	/* sizeof counts the literal's own NUL: the empty name ending the list. */
	return tls ? sizeof(mechs_plus) : sizeof(mechs_plain);
}

/* ---------------------------------------------------------------------- */
/* Exchange */

/* Key for mock salts: random, made once per process. */
static uint8_t mock_key[SCRAM_KEY_LEN];
static bool mock_key_ok;
static pthread_once_t mock_key_once = PTHREAD_ONCE_INIT;

static void mock_key_init(void)
{
	mock_key_ok = RAND_bytes(mock_key, sizeof(mock_key)) == 1;
}

static int fail(struct scram_server *s, const char *error, const char *detail)
{
	s->step = SCRAM_FAILED;
	s->error = error;
	s->detail = detail;
	return -1;
}

static void init_common(struct scram_server *s, const uint8_t *cbind_data, size_t cbind_len)
{
	s->step = SCRAM_WAIT_FIRST;
	if (cbind_len > SCRAM_MAX_CBIND_LEN || (cbind_len > 0 && !cbind_data)) {
		fail(s, "invalid channel binding data", "invalid channel binding data");
		return;
	}
	if (cbind_len > 0)
		memcpy(s->cbind, cbind_data, cbind_len);
	s->cbind_len = cbind_len;
}

void scram_server_init(struct scram_server *s, const struct scram_secret *secret,
                       const uint8_t *cbind_data, size_t cbind_len)
{
	memset(s, 0, sizeof(*s));
	s->secret = *secret;
	init_common(s, cbind_data, cbind_len);
}

void scram_server_init_mock(struct scram_server *s, const char *username,
                            const uint8_t *cbind_data, size_t cbind_len)
{
	uint8_t digest[SCRAM_KEY_LEN];

	memset(s, 0, sizeof(*s));
	s->doomed = true;
	init_common(s, cbind_data, cbind_len);
	if (s->step == SCRAM_FAILED)
		return;

	pthread_once(&mock_key_once, mock_key_init);
	/* Without the key, fail where a real exchange fails without random
	 * data: at the first step, with the same error. */
	if (!mock_key_ok ||
	    !hmac_sha256(mock_key, sizeof(mock_key), username, strlen(username), digest)) {
		fail(s, no_random, "mock exchange: no random key");
		return;
	}
	s->secret.iterations = SCRAM_DEFAULT_ITERATIONS;
	s->secret.salt_len = SCRAM_DEFAULT_SALT_LEN;
	memcpy(s->secret.salt, digest, SCRAM_DEFAULT_SALT_LEN);
	/* Keys that no password produces on purpose; the final step fails
	 * anyway, but does the same work as for a real user first. */
	if (!sha256(digest, sizeof(digest), s->secret.stored_key) ||
	    !sha256(s->secret.stored_key, SCRAM_KEY_LEN, s->secret.server_key))
		fail(s, no_random, "mock exchange: hashing failed");
	OPENSSL_cleanse(digest, sizeof(digest));
}

void scram_server_set_nonce_for_test(struct scram_server *s, const char *nonce)
{
	size_t n = strlen(nonce);

	if (n >= sizeof(s->test_nonce))
		n = sizeof(s->test_nonce) - 1;
	memcpy(s->test_nonce, nonce, n);
	s->test_nonce[n] = '\0';
}

static char *strndup_x(const char *p, size_t n)
{
	char *r = xmalloc(n + 1);

	memcpy(r, p, n);
	r[n] = '\0';
	return r;
}

static void free_wiped(char **p)
{
	if (*p) {
		OPENSSL_cleanse(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

/* Copy a client message into a NUL-terminated string, refusing empty,
 * oversized and NUL-containing ones (PostgreSQL treats the message as a C
 * string and checks that its length matches).  Returns NULL with *why set. */
static char *copy_message(const uint8_t *msg, size_t len, const char **why)
{
	if (!msg || len == 0) {
		*why = "The message is empty.";
		return NULL;
	}
	if (len > SCRAM_MAX_MESSAGE_LEN) {
		*why = "The message is too long.";
		return NULL;
	}
	if (memchr(msg, '\0', len)) {
		*why = "The message contains a NUL byte.";
		return NULL;
	}
	return strndup_x((const char *)msg, len);
}

/*
 * Read the attribute `name` ("<name>=<value>") at *p.  The value runs to the
 * next ',' or the end; *p is left on that delimiter.  Returns false if the
 * attribute is not there.
 */
static bool read_attr(const char **p, char name, const char **val, size_t *vlen)
{
	const char *s = *p;

	if (s[0] != name || s[1] != '=')
		return false;
	*val = s + 2;
	*vlen = strcspn(*val, ",");
	*p = *val + *vlen;
	return true;
}

/* An extension or unknown attribute: one ASCII letter, '=', any value. */
static bool read_any_attr(const char **p, char *name, const char **val, size_t *vlen)
{
	char c = **p;

	if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
		return false;
	*name = c;
	return read_attr(p, c, val, vlen);
}

/* RFC 5802 "printable": %x21-2B / %x2D-7E (printable ASCII except ','). */
static bool is_printable(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7E || p[i] == ',')
			return false;
	return true;
}

/* Parse the gs2 header at *p, checking it against the chosen mechanism and
 * what this connection offered.  Returns NULL, or the error to fail with. */
static const char *parse_gs2_header(struct scram_server *s, const char **p, const char **detail)
{
	const char *m = *p;

	switch (m[0]) {
	case 'p':
		if (!s->plus) {
			*detail = "The client selected SCRAM-SHA-256 without channel binding, "
			          "but the SCRAM message includes channel binding data.";
			return malformed;
		}
		if (m[1] != '=') {
			*detail = "Expected \"=\" after the channel-binding flag.";
			return malformed;
		}
		if (strncmp(m, GS2_PLUS, strlen(GS2_PLUS)) != 0) {
			*detail = "Only tls-server-end-point channel binding is supported.";
			return "unsupported SCRAM channel-binding type";
		}
		m += strlen(GS2_PLUS);
		break;
	case 'y':
	case 'n':
		if (s->plus) {
			*detail = "The client selected SCRAM-SHA-256-PLUS, "
			          "but the SCRAM message does not include channel binding data.";
			return malformed;
		}
		/* "y": the client could bind but believes we did not offer PLUS.
		 * We did, so someone removed it on the way: a downgrade. */
		if (m[0] == 'y' && s->cbind_len > 0) {
			*detail = "The client supports SCRAM channel binding but thinks the server "
			          "does not.  However, this server does support channel binding.";
			return "SCRAM channel binding negotiation error";
		}
		if (m[1] != ',') {
			*detail = "Comma expected after the channel-binding flag.";
			return malformed;
		}
		m += 2;
		break;
	default:
		*detail = "Unexpected channel-binding flag.";
		return malformed;
	}

	if (m[0] == 'a') {
		*detail = "Authorization identities are not supported.";
		return "client uses authorization identity, but it is not supported";
	}
	if (m[0] != ',') {
		*detail = "Unexpected attribute in client-first-message.";
		return malformed;
	}
	*p = m + 1;
	return NULL;
}

int scram_server_first(struct scram_server *s, const char *mechanism,
                       const uint8_t *client_first, size_t len,
                       char *out, size_t outlen)
{
	const char *err, *detail = NULL, *p, *cnonce, *uname;
	size_t cnonce_len, uname_len, snonce_len, first_len;
	char snonce[sizeof(s->test_nonce) + B64_LEN(SCRAM_NONCE_RAW_LEN) + 1];
	char salt[B64_LEN(SCRAM_MAX_SALT_LEN) + 1];
	char *msg;

	if (s->step == SCRAM_FAILED)
		return -1;
	if (s->step != SCRAM_WAIT_FIRST)
		return fail(s, "SCRAM exchange out of order", "client-first-message not expected now");

	if (mechanism && strcmp(mechanism, SCRAM_MECHANISM_PLUS) == 0 && s->cbind_len > 0)
		s->plus = true;
	else if (!mechanism || strcmp(mechanism, SCRAM_MECHANISM) != 0)
		return fail(s, "client selected an invalid SASL authentication mechanism",
		            "mechanism not offered on this connection");

	msg = copy_message(client_first, len, &detail);
	if (!msg)
		return fail(s, malformed, detail);

	p = msg;
	err = parse_gs2_header(s, &p, &detail);
	if (err)
		goto refuse;
	memcpy(s->gs2_header, msg, (size_t)(p - msg));   /* at most 25 bytes */
	s->gs2_header[p - msg] = '\0';

	/* client-first-message-bare */
	if (p[0] == 'm') {
		err = "client requires an unsupported SCRAM extension";
		detail = "Mandatory extensions (\"m=\") are not supported.";
		goto refuse;
	}
	err = malformed;
	detail = "Malformed client-first-message-bare.";
	if (!read_attr(&p, 'n', &uname, &uname_len) || *p != ',')
		goto refuse;
	p++;
	if (!read_attr(&p, 'r', &cnonce, &cnonce_len))
		goto refuse;
	if (cnonce_len == 0)
		goto refuse;
	if (!is_printable(cnonce, cnonce_len)) {
		err = "non-printable characters in SCRAM nonce";
		detail = NULL;
		goto refuse;
	}
	while (*p) {
		char name;
		const char *val;
		size_t vlen;

		if (*p != ',')
			goto refuse;
		p++;
		if (!read_any_attr(&p, &name, &val, &vlen))
			goto refuse;
	}
	s->client_first_bare = xstrdup(msg + strlen(s->gs2_header));

	/* Server nonce. */
	if (s->test_nonce[0]) {
		snonce_len = strlen(s->test_nonce);
		memcpy(snonce, s->test_nonce, snonce_len + 1);
	} else {
		uint8_t raw[SCRAM_NONCE_RAW_LEN];

		if (RAND_bytes(raw, sizeof(raw)) != 1) {
			err = no_random;
			detail = "RAND_bytes failed";
			goto refuse;
		}
		snonce_len = b64_encode(raw, sizeof(raw), snonce);
	}
	s->nonce = xmalloc(cnonce_len + snonce_len + 1);
	memcpy(s->nonce, cnonce, cnonce_len);
	memcpy(s->nonce + cnonce_len, snonce, snonce_len + 1);

	b64_encode(s->secret.salt, s->secret.salt_len, salt);
	first_len = 2 + strlen(s->nonce) + 3 + strlen(salt) + 3 + 11 + 1;
	s->server_first = xmalloc(first_len);
	snprintf(s->server_first, first_len, "r=%s,s=%s,i=%d", s->nonce, salt,
	         s->secret.iterations);
	first_len = strlen(s->server_first);
	if (first_len >= outlen) {
		err = "output buffer too small";
		detail = "output buffer too small for server-first-message";
		goto refuse;
	}
	memcpy(out, s->server_first, first_len + 1);
	free(msg);
	s->step = SCRAM_WAIT_FINAL;
	return (int)first_len;

refuse:
	free(msg);
	return fail(s, err, detail);
}

/* Fail the final step: one error text for every cause. */
static int fail_final(struct scram_server *s, char *msg, const char *detail)
{
	free(msg);
	return fail(s, generic_final_error, detail);
}

int scram_server_final(struct scram_server *s, const uint8_t *client_final, size_t len,
                       char *out, size_t outlen)
{
	const char *detail = NULL, *p, *cval, *rval, *pval, *proof_attr;
	size_t clen, rlen, plen, auth_len, want_len;
	uint8_t cbind_input[sizeof(s->gs2_header) + SCRAM_MAX_CBIND_LEN];
	char cbind_b64[B64_LEN(sizeof(cbind_input)) + 1];
	uint8_t proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN], check[SCRAM_KEY_LEN];
	char *msg, *auth;
	bool ok;

	if (s->step != SCRAM_WAIT_FINAL)
		return fail_final(s, NULL, "client-final-message not expected now");
	msg = copy_message(client_final, len, &detail);
	if (!msg)
		return fail_final(s, NULL, detail);

	/* c=<binding>,r=<nonce>[,ext...],p=<proof> */
	p = msg;
	if (!read_attr(&p, 'c', &cval, &clen) || *p++ != ',' || !read_attr(&p, 'r', &rval, &rlen))
		return fail_final(s, msg, "Malformed client-final-message.");
	for (;;) {
		char name;
		const char *val;
		size_t vlen;

		if (*p != ',')
			return fail_final(s, msg, "Proof missing from client-final-message.");
		proof_attr = p++;
		if (!read_any_attr(&p, &name, &val, &vlen))
			return fail_final(s, msg, "Malformed client-final-message.");
		if (name == 'p') {
			pval = val;
			plen = vlen;
			break;
		}
	}
	if (*p != '\0')
		return fail_final(s, msg, "Garbage found at the end of client-final-message.");

	/* Channel binding: c= must repeat our gs2 header, plus our binding data
	 * when the client bound to the channel. */
	want_len = strlen(s->gs2_header);
	memcpy(cbind_input, s->gs2_header, want_len);
	if (s->plus) {
		memcpy(cbind_input + want_len, s->cbind, s->cbind_len);
		want_len += s->cbind_len;
	}
	want_len = b64_encode(cbind_input, want_len, cbind_b64);
	if (clen != want_len || CRYPTO_memcmp(cval, cbind_b64, clen) != 0)
		return fail_final(s, msg, "SCRAM channel binding check failed.");

	if (rlen != strlen(s->nonce) || CRYPTO_memcmp(rval, s->nonce, rlen) != 0)
		return fail_final(s, msg, "Unexpected SCRAM nonce in client-final-message.");

	if (b64_decode(pval, plen, proof, sizeof(proof)) != SCRAM_KEY_LEN)
		return fail_final(s, msg, "Malformed proof in client-final-message.");

	/* AuthMessage */
	auth_len = strlen(s->client_first_bare) + 1 + strlen(s->server_first) + 1 +
	           (size_t)(proof_attr - msg);
	auth = xmalloc(auth_len + 1);
	snprintf(auth, auth_len + 1, "%s,%s,%.*s", s->client_first_bare, s->server_first,
	         (int)(proof_attr - msg), msg);

	/* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) == StoredKey? */
	ok = hmac_sha256(s->secret.stored_key, SCRAM_KEY_LEN, auth, auth_len, sig);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		key[i] = proof[i] ^ sig[i];
	ok = ok && sha256(key, sizeof(key), check);
	ok = ok && CRYPTO_memcmp(check, s->secret.stored_key, SCRAM_KEY_LEN) == 0;
	if (s->doomed)
		ok = false;
	if (ok)
		ok = hmac_sha256(s->secret.server_key, SCRAM_KEY_LEN, auth, auth_len, sig);

	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(check, sizeof(check));
	OPENSSL_cleanse(proof, sizeof(proof));
	free(auth);

	if (!ok) {
		OPENSSL_cleanse(sig, sizeof(sig));
		return fail_final(s, msg, s->doomed ? "User does not exist or has no usable secret."
		                                    : "Wrong password (client proof does not match).");
	}
	if (outlen < 3 + B64_LEN(SCRAM_KEY_LEN)) {
		OPENSSL_cleanse(sig, sizeof(sig));
		return fail_final(s, msg, "Output buffer too small for server-final-message.");
	}
	out[0] = 'v';
	out[1] = '=';
	want_len = 2 + b64_encode(sig, sizeof(sig), out + 2);
	OPENSSL_cleanse(sig, sizeof(sig));
	free(msg);
	s->step = SCRAM_SUCCEEDED;
	return (int)want_len;
}

const char *scram_server_error(const struct scram_server *s)
{
	return s->error;
}

const char *scram_server_detail(const struct scram_server *s)
{
	return s->detail;
}

void scram_server_reset(struct scram_server *s)
{
	free_wiped(&s->client_first_bare);
	free_wiped(&s->server_first);
	free_wiped(&s->nonce);
	OPENSSL_cleanse(s, sizeof(*s));
	s->step = SCRAM_UNUSED;
	s->error = NULL;
	s->detail = NULL;
}
