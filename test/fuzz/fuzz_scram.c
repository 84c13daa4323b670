/*
 * fuzz_scram.c - the server side of a SCRAM-SHA-256 exchange (src/scram.c):
 * scram_server_first() on a client-first-message and scram_server_final()
 * on a client-final-message, with a fixed secret (password "pencil"), plus
 * the secret and password helpers auth.c and authfile.c call on
 * client-controlled strings: scram_parse_secret(), scram_secret_to_text(),
 * scram_password_prep_exact() and scram_secret_from_password().
 *
 * Input layout:
 *
 *   byte 0     flags
 *                bit 0     the connection is TLS (channel binding data)
 *                bits 1-2  mechanism: SCRAM-SHA-256, SCRAM-SHA-256-PLUS,
 *                          NULL, "SCRAM-SHA-1"
 *                bit 3     mock exchange (unknown user)
 *                bit 4     the harness writes "c=<right binding>,r=<right
 *                          nonce>" before the client-final bytes below
 *                bit 5     the harness appends ",p=<right proof>"
 *                bit 6     random server nonce instead of the fixed test one
 *   then       client-first bytes, up to the first 0xff byte
 *   then       client-final bytes (no final step when there is no 0xff)
 *
 * Bits 4 and 5 let the fuzzer reach the success path (it cannot compute a
 * proof).  With both set, a real user and extensions that are well formed
 * (",X=value", X not 'p'), the exchange must succeed and the server
 * signature must be the right one; the harness aborts otherwise.  A secret
 * that scram_parse_secret() accepts must print back to the same text.
 *
 * Global state: the fixed secret and client key, computed once; the mock
 * salt key inside scram.c (by design).  Every exchange is reset at the end
 * of its run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "sluice/scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PASSWORD "pencil"
#define TEST_SNONCE "3rfcNHYJY1ZVvWVs7j"

static const uint8_t salt[16] = "QSXCR+Q6sek8bf92";
static const uint8_t cbind[32] = "0123456789abcdef0123456789abcdef";

static struct scram_secret secret;
static uint8_t client_key[SCRAM_KEY_LEN];
static bool ready;

/* SaltedPassword and ClientKey as a client computes them. */
static void setup(void)
{
	uint8_t salted[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	unsigned int n = 0;

	if (!scram_secret_from_password(PASSWORD, salt, sizeof(salt), 4096, &secret) ||
	    !PKCS5_PBKDF2_HMAC(PASSWORD, strlen(PASSWORD), salt, sizeof(salt), 4096,
			       EVP_sha256(), sizeof(salted), salted) ||
	    !HMAC(EVP_sha256(), salted, sizeof(salted), (const uint8_t *)"Client Key", 10,
		  client_key, &n) ||
	    !SHA256(client_key, sizeof(client_key), stored) ||
	    memcmp(stored, secret.stored_key, SCRAM_KEY_LEN) != 0) {
		fprintf(stderr, "fuzz_scram: cannot set up the test secret\n");
		abort();
	}
	ready = true;
}

/* Standard padded base64 of n bytes into out (room for 4 * ceil(n/3) + 1). */
static void b64(const uint8_t *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Extensions as the grammar allows them: (",X=value")*, X a letter but not p. */
static bool good_extensions(const char *p)
{
	while (*p) {
		if (p[0] != ',' || !((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z')) ||
		    p[1] == 'p' || p[2] != '=')
			return false;
		p += 3;
		p += strcspn(p, ",");
	}
	return true;
}

static void secret_helpers(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct scram_secret parsed, derived;

	memcpy(text, data, size);
	text[size] = '\0';
	if (scram_parse_secret(text, &parsed)) {
		char *back = scram_secret_to_text(&parsed);
		if (strcmp(back, text) != 0)
			abort();   /* the strict parser accepts only canonical text */
		free(back);
	}
	(void)scram_password_prep_exact(text);
	/* One PBKDF2 round: the preparation is what is fuzzed here. */
	if (size <= SCRAM_MAX_PASSWORD_LEN &&
	    !scram_secret_from_password(text, salt, sizeof(salt), 1, &derived))
		abort();
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const mechs[] = {
		SCRAM_MECHANISM, SCRAM_MECHANISM_PLUS, NULL, "SCRAM-SHA-1",
	};
	struct scram_server s;
	char first_out[SCRAM_SERVER_FIRST_MAX(SCRAM_MAX_MESSAGE_LEN)];
	char final_out[SCRAM_SERVER_FINAL_MAX];

	if (!ready)
		setup();
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	bool tls = flags & 1, mock = flags & 8, auto_cr = flags & 16, auto_proof = flags & 32;
	const char *mech = mechs[(flags >> 1) & 3];
	data++;
	size--;

	secret_helpers(data, size);

	const uint8_t *sep = memchr(data, 0xff, size);
	size_t first_len = sep ? (size_t)(sep - data) : size;
	const uint8_t *fin = sep ? sep + 1 : NULL;
	size_t fin_len = sep ? size - first_len - 1 : 0;

	if (mock)
		scram_server_init_mock(&s, "fuzzuser", tls ? cbind : NULL, tls ? sizeof(cbind) : 0);
	else
		scram_server_init(&s, &secret, tls ? cbind : NULL, tls ? sizeof(cbind) : 0);
	if (!(flags & 64))
		scram_server_set_nonce_for_test(&s, TEST_SNONCE);

	int n = scram_server_first(&s, mech, data, first_len, first_out, sizeof(first_out));
	if (n < 0) {
		if (!scram_server_error(&s))
			abort();
		/* A second call after a failure must fail too. */
		if (scram_server_first(&s, mech, data, first_len, first_out, sizeof(first_out)) >= 0)
			abort();
	} else if ((size_t)n != strlen(first_out) || strncmp(first_out, "r=", 2) != 0) {
		abort();
	}
	if (!fin)
		goto out;

	/* The client-final-message: [c=..,r=..] + input + [,p=proof]. */
	size_t cap = fin_len + 512;
	char *msg = malloc(cap);
	size_t len = 0;
	if (auto_cr && n >= 0) {
		uint8_t in[sizeof(s.gs2_header) + SCRAM_MAX_CBIND_LEN];
		char enc[2 * sizeof(in)];
		size_t glen = strlen(s.gs2_header);
		memcpy(in, s.gs2_header, glen);
		if (s.plus) {
			memcpy(in + glen, s.cbind, s.cbind_len);
			glen += s.cbind_len;
		}
		b64(in, glen, enc);
		len = (size_t)snprintf(msg, cap, "c=%s,r=%s", enc, s.nonce);
	}
	size_t ext_off = len;
	memcpy(msg + len, fin, fin_len);
	len += fin_len;
	msg[len] = '\0';
	bool expect_ok = false;
	char want_v[64] = "";
	if (auto_proof && n >= 0) {
		/* AuthMessage = client-first-bare "," server-first "," final-without-proof */
		size_t alen = strlen(s.client_first_bare) + strlen(s.server_first) + len + 3;
		char *auth = malloc(alen);
		uint8_t sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
		unsigned int sl = 0;
		char enc[64];

		snprintf(auth, alen, "%s,%s,%.*s", s.client_first_bare, s.server_first, (int)len, msg);
		if (!HMAC(EVP_sha256(), secret.stored_key, SCRAM_KEY_LEN, (uint8_t *)auth,
			  strlen(auth), sig, &sl))
			abort();
		for (int i = 0; i < SCRAM_KEY_LEN; i++)
			proof[i] = client_key[i] ^ sig[i];
		expect_ok = auto_cr && !mock && !memchr(fin, '\0', fin_len) &&
			    good_extensions(msg + ext_off);
		b64(proof, sizeof(proof), enc);
		len += (size_t)snprintf(msg + len, cap - len, ",p=%s", enc);
		expect_ok = expect_ok && len <= SCRAM_MAX_MESSAGE_LEN;
		/* ServerSignature = HMAC(ServerKey, AuthMessage) */
		if (!HMAC(EVP_sha256(), secret.server_key, SCRAM_KEY_LEN, (uint8_t *)auth,
			  strlen(auth), sig, &sl))
			abort();
		memcpy(want_v, "v=", 2);
		b64(sig, sizeof(sig), want_v + 2);
		free(auth);
	}

	int m = scram_server_final(&s, (const uint8_t *)msg, len, final_out, sizeof(final_out));
	if (m >= 0 && (mock || n < 0))
		abort();   /* a doomed or failed exchange must never succeed */
	if (expect_ok && m < 0) {
		fprintf(stderr, "right proof refused: %s\n", scram_server_detail(&s));
		abort();
	}
	if (m >= 0 && (strcmp(final_out, want_v) != 0 || (size_t)m != strlen(final_out)))
		abort();   /* only a proof computed here can succeed, and v= must match */
	free(msg);
out:
	scram_server_reset(&s);
	return 0;
}
