/*
 * auth.c - client authentication (see auth.h).
 *
 *   StartupMessage accepted
 *        |
 *   method = auth_type, or the first matching auth_hba_file line
 *        |-- trust / any ----------------------------------------> OK
 *        |-- peer: SO_PEERCRED uid's name == user ---------------> OK / 28000
 *        |-- password: AuthenticationCleartextPassword -> 'p' ---> check
 *        |-- md5: AuthenticationMD5Password(salt) -> 'p' --------> check
 *        `-- scram: AuthenticationSASL -> SASLInitialResponse
 *                   -> SASLContinue -> SASLResponse -> SASLFinal -> OK
 *
 * "md5" means md5 or SCRAM, whichever the stored secret allows (PgBouncer).
 * A user without a usable secret still goes through the whole exchange (a
 * mock SCRAM exchange, or an md5 challenge that cannot succeed), and every
 * failure says the same thing, so a client cannot probe which users exist.
 */
#include "sluice/auth.h"
#include "sluice/authfile.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/hba.h"
#include "sluice/log.h"
#include "sluice/pktbuf.h"
#include "sluice/pool.h"
#include "sluice/proto.h"
#include "sluice/scram.h"
#include "sluice/sluice.h"
#include "sluice/tls.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Authentication request codes (AuthenticationXXX messages). */
#define AUTH_REQ_OK        0
#define AUTH_REQ_PASSWORD  3
#define AUTH_REQ_MD5       5
#define AUTH_REQ_SASL      10
#define AUTH_REQ_SASL_CONT 11
#define AUTH_REQ_SASL_FIN  12

enum auth_step {
	STEP_LOOKUP,       /* waiting for auth_query to return the secret */
	STEP_PASSWORD,     /* waiting for a PasswordMessage (cleartext) */
	STEP_MD5,          /* waiting for a PasswordMessage (md5 answer) */
	STEP_SASL_INIT,    /* waiting for SASLInitialResponse */
	STEP_SASL_FINAL,   /* waiting for SASLResponse */
};

struct auth_state {
	enum auth_step step;
	enum hba_method method;    /* password, md5 or scram */
	char *secret;              /* copy of the user's secret, or NULL */
	uint8_t salt[4];           /* md5 challenge */
	uint8_t cbind[SCRAM_MAX_CBIND_LEN]; /* tls-server-end-point data, if TLS */
	size_t cbind_len;
	struct scram_server scram;
};

/* ---- files ----------------------------------------------------------- */

int auth_files_load(const struct config *cfg, struct auth_files *out, char *err, size_t errlen)
{
	char path[4096];

	memset(out, 0, sizeof(*out));
	if (cfg->auth_file && cfg->auth_file[0]) {
		config_resolve_path(cfg, cfg->auth_file, path, sizeof(path));
		out->authfile = authfile_load(path, err, errlen);
		if (!out->authfile)
			return -1;
	}
	if (cfg->auth_hba_file && cfg->auth_hba_file[0]) {
		config_resolve_path(cfg, cfg->auth_hba_file, path, sizeof(path));
		out->hba = hba_load(path, err, errlen);
		if (!out->hba) {
			auth_files_free(out);
			return -1;
		}
	}
	return 0;
}

void auth_files_free(struct auth_files *f)
{
	authfile_free(f->authfile);
	hba_free(f->hba);
	f->authfile = NULL;
	f->hba = NULL;
}

const char *auth_plain_password(const struct sluice *ctx, const char *user)
{
	const char *s = ctx->auth.authfile ? authfile_lookup(ctx->auth.authfile, user) : NULL;
	return s && s[0] && authfile_secret_kind(s) == AUTH_SECRET_PLAIN ? s : NULL;
}

/* ---- helpers ------------------------------------------------------------ */

void auth_state_free(struct client *c)
{
	struct auth_state *a = c->auth;
	if (!a)
		return;
	scram_server_reset(&a->scram);
	if (a->secret) {
		OPENSSL_cleanse(a->secret, strlen(a->secret));
		free(a->secret);
	}
	OPENSSL_cleanse(a, sizeof(*a));
	free(a);
	c->auth = NULL;
}

static void write_request(struct client *c, uint32_t code, const void *data, size_t len)
{
	struct pktbuf *out = &c->conn.out;
	pktbuf_start(out, PQ_MSG_AUTH);
	pktbuf_put_int32(out, code);
	if (len)
		pktbuf_put_bytes(out, data, len);
	pktbuf_finish(out);
}

/* Refuse with the one message that reveals nothing; log why. */
static enum auth_result fail_password(struct client *c, const char *why)
{
	char addr[64];
	log_msg(LOG_INFO, "C-%llu %s/%s@%s: authentication failed: %s",
		(unsigned long long)c->id, c->dbname, c->username,
		client_addr(c, addr, sizeof(addr)), why);
	auth_state_free(c);
	client_fail(c, "28P01", "password authentication failed for user \"%s\"", c->username);
	return AUTH_FAILED;
}

static enum auth_result fail_with(struct client *c, const char *sqlstate, const char *msg)
{
	auth_state_free(c);
	client_fail(c, sqlstate, "%s", msg);
	return AUTH_FAILED;
}

static bool peer_matches(const struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (!c->is_unix || getsockopt(c->conn.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	return strcmp(res->pw_name, c->username) == 0;
}

static enum hba_method configured_method(struct client *c, int *line)
{
	const struct sluice *ctx = c->ctx;
	*line = 0;
	switch (ctx->cfg->auth_type) {
	case AUTH_TYPE_TRUST:
	case AUTH_TYPE_ANY:
		return HBA_TRUST;
	case AUTH_TYPE_PLAIN:
		return HBA_PASSWORD;
	case AUTH_TYPE_MD5:
		return HBA_MD5;
	case AUTH_TYPE_SCRAM:
		return HBA_SCRAM;
	case AUTH_TYPE_CERT:
		return HBA_CERT;
	case AUTH_TYPE_HBA:
		break;
	}
	if (!ctx->auth.hba)
		return HBA_REJECT;
	struct hba_request req = {
		.is_unix = c->is_unix,
		.is_tls = c->conn.ssl != NULL,
		.addr = c->is_unix ? NULL : (const struct sockaddr *)&c->peer,
		.database = c->dbname,
		.user = c->username,
	};
	return hba_match(ctx->auth.hba, &req, line);
}

/* ---- start ---------------------------------------------------------------- */

static enum auth_result start_lookup(struct client *c);
static enum auth_result begin_exchange(struct client *c, const char *secret);

enum auth_result auth_start(struct client *c)
{
	const struct sluice *ctx = c->ctx;
	int line;
	enum hba_method m = configured_method(c, &line);
	const char *secret = ctx->auth.authfile ? authfile_lookup(ctx->auth.authfile, c->username) : NULL;
	char msg[512], addr[64];

	switch (m) {
	case HBA_TRUST:
		return AUTH_OK;
	case HBA_REJECT:
		snprintf(msg, sizeof(msg), "no authentication rule allows user \"%s\" to database \"%s\" from %s%s",
			 c->username, c->dbname, client_addr(c, addr, sizeof(addr)),
			 line ? " (rejected by auth_hba_file)" : "");
		return fail_with(c, "28000", msg);
	case HBA_PEER:
		if (peer_matches(c))
			return AUTH_OK;
		snprintf(msg, sizeof(msg), "peer authentication failed for user \"%s\"", c->username);
		return fail_with(c, "28000", msg);
	case HBA_CERT: {
		char cn[256];
		if (!c->conn.ssl)
			return fail_with(c, "28000", "certificate authentication requires a TLS connection");
		if (tls_peer_cn(c->conn.ssl, cn, sizeof(cn)) && strcmp(cn, c->username) == 0)
			return AUTH_OK;
		snprintf(msg, sizeof(msg), "certificate authentication failed for user \"%s\"",
			 c->username);
		return fail_with(c, "28000", msg);
	}
	default:
		break;
	}

	struct auth_state *a = xcalloc(1, sizeof(*a));
	c->auth = a;
	a->method = m;
	/* Console users come from auth_file only (no lookup through a database). */
	if (!secret && ctx->cfg->auth_user[0] && !c->admin)
		return start_lookup(c);
	return begin_exchange(c, secret);
}

/* Users not in auth_file: ask the database, through auth_user's pool. */
static enum auth_result start_lookup(struct client *c)
{
	struct sluice *ctx = c->ctx;
	const struct config *cfg = ctx->cfg;
	const char *dbname = cfg->auth_dbname[0] ? cfg->auth_dbname : c->dbname;
	const struct config_db *db = config_find_db(cfg, dbname);

	if (!db)
		return fail_with(c, "08006", "auth_dbname names no configured database");
	c->auth->step = STEP_LOOKUP;
	pool_request_lookup(pool_get(ctx, dbname, cfg->auth_user, db), c);
	return c->conn.closing || c->conn.close_after_flush ? AUTH_FAILED : AUTH_CONTINUE;
}

void auth_lookup_done(struct client *c, const char *err, const char *secret)
{
	if (!c->auth || c->conn.closing || c->conn.close_after_flush)
		return;
	if (err) {
		log_msg(LOG_WARNING, "C-%llu: auth_query failed: %s", (unsigned long long)c->id, err);
		fail_with(c, "08006", "authentication lookup failed");
		return;
	}
	if (begin_exchange(c, secret) == AUTH_CONTINUE)
		conn_send_out(&c->conn);
}

/* Write the first request of the exchange, for a secret that may be NULL. */
static enum auth_result begin_exchange(struct client *c, const char *secret)
{
	struct auth_state *a = c->auth;
	enum hba_method m = a->method;

	if (secret && secret[0])
		a->secret = xstrdup(secret);
	/* md5 cannot be checked against a SCRAM secret: use SCRAM (PgBouncer). */
	if (m == HBA_MD5 && a->secret && authfile_secret_kind(a->secret) == AUTH_SECRET_SCRAM)
		m = HBA_SCRAM;

	switch (m) {
	case HBA_PASSWORD:
		a->step = STEP_PASSWORD;
		write_request(c, AUTH_REQ_PASSWORD, NULL, 0);
		break;
	case HBA_MD5:
		a->step = STEP_MD5;
		if (RAND_bytes(a->salt, sizeof(a->salt)) != 1)
			return fail_with(c, "XX000", "could not generate random salt");
		write_request(c, AUTH_REQ_MD5, a->salt, sizeof(a->salt));
		break;
	default: /* HBA_SCRAM */
		a->step = STEP_SASL_INIT;
		a->cbind_len = c->conn.ssl ? tls_cbind_data(c->conn.ssl, a->cbind, sizeof(a->cbind)) : 0;
		write_request(c, AUTH_REQ_SASL, scram_server_mechanisms(a->cbind_len > 0),
			      scram_server_mechanisms_len(a->cbind_len > 0));
		break;
	}
	return AUTH_CONTINUE;
}

/* ---- exchanges ------------------------------------------------------------- */

/* A cleartext password against any kind of stored secret. */
static bool password_matches(const char *secret, const char *user, const char *password)
{
	char md5[AUTH_MD5_BUFLEN];
	struct scram_secret stored, derived;
	bool ok = false;

	switch (authfile_secret_kind(secret)) {
	case AUTH_SECRET_PLAIN:
		ok = strlen(secret) == strlen(password) &&
		     CRYPTO_memcmp(secret, password, strlen(secret)) == 0;
		break;
	case AUTH_SECRET_MD5:
		ok = auth_md5_hash(password, user, md5) && strlen(md5) == strlen(secret) &&
		     CRYPTO_memcmp(md5, secret, strlen(md5)) == 0;
		OPENSSL_cleanse(md5, sizeof(md5));
		break;
	case AUTH_SECRET_SCRAM:
		ok = scram_parse_secret(secret, &stored) &&
		     scram_secret_from_password(password, stored.salt, stored.salt_len,
						stored.iterations, &derived) &&
		     CRYPTO_memcmp(stored.stored_key, derived.stored_key, SCRAM_KEY_LEN) == 0 &&
		     CRYPTO_memcmp(stored.server_key, derived.server_key, SCRAM_KEY_LEN) == 0;
		OPENSSL_cleanse(&stored, sizeof(stored));
		OPENSSL_cleanse(&derived, sizeof(derived));
		break;
	}
	return ok;
}

/* A NUL-terminated string filling the whole body. */
static enum auth_result sasl_init(struct client *c, const uint8_t *body, uint32_t len)
{
	struct auth_state *a = c->auth;
	const char *mech;
	const uint8_t *data;
	uint32_t dlen;
	struct scram_secret secret;
	char out[SCRAM_SERVER_FIRST_MAX(SCRAM_MAX_MESSAGE_LEN)];

	if (!proto_parse_sasl_initial(body, len, &mech, &data, &dlen))
		return fail_with(c, "08P01", "malformed SASLInitialResponse message");

	bool have = false;
	if (a->secret && authfile_secret_kind(a->secret) == AUTH_SECRET_SCRAM) {
		have = scram_parse_secret(a->secret, &secret);
	} else if (a->secret && authfile_secret_kind(a->secret) == AUTH_SECRET_PLAIN) {
		uint8_t salt[SCRAM_DEFAULT_SALT_LEN];
		have = RAND_bytes(salt, sizeof(salt)) == 1 &&
		       scram_secret_from_password(a->secret, salt, sizeof(salt),
						  SCRAM_DEFAULT_ITERATIONS, &secret);
	}
	if (have)
		scram_server_init(&a->scram, &secret, a->cbind_len ? a->cbind : NULL, a->cbind_len);
	else
		scram_server_init_mock(&a->scram, c->username, a->cbind_len ? a->cbind : NULL,
				       a->cbind_len);
	OPENSSL_cleanse(&secret, sizeof(secret));

	int n = scram_server_first(&a->scram, mech, data, (size_t)dlen, out, sizeof(out));
	if (n < 0)
		return fail_with(c, "08P01", scram_server_error(&a->scram));
	write_request(c, AUTH_REQ_SASL_CONT, out, (size_t)n);
	a->step = STEP_SASL_FINAL;
	return AUTH_CONTINUE;
}

static enum auth_result sasl_final(struct client *c, const uint8_t *body, uint32_t len)
{
	struct auth_state *a = c->auth;
	char out[SCRAM_SERVER_FINAL_MAX];
	int n = scram_server_final(&a->scram, body, len, out, sizeof(out));

	if (n < 0)
		return fail_password(c, scram_server_detail(&a->scram) ? scram_server_detail(&a->scram)
								       : "SCRAM proof rejected");
	write_request(c, AUTH_REQ_SASL_FIN, out, (size_t)n);
	auth_state_free(c);
	return AUTH_OK;
}

enum auth_result auth_packet(struct client *c, const uint8_t *body, uint32_t len)
{
	struct auth_state *a = c->auth;
	const char *s;

	if (!a)
		return fail_with(c, "08P01", "unexpected password message");
	switch (a->step) {
	case STEP_LOOKUP:
		return fail_with(c, "08P01", "unexpected message during authentication");
	case STEP_PASSWORD:
		if (!(s = proto_body_string(body, len)))
			return fail_with(c, "08P01", "malformed password message");
		if (!a->secret)
			return fail_password(c, "user has no secret in auth_file");
		if (!password_matches(a->secret, c->username, s))
			return fail_password(c, "password does not match");
		auth_state_free(c);
		return AUTH_OK;
	case STEP_MD5:
		if (!(s = proto_body_string(body, len)))
			return fail_with(c, "08P01", "malformed password message");
		if (!a->secret)
			return fail_password(c, "user has no secret in auth_file");
		if (!auth_md5_verify(a->secret, c->username, a->salt, s))
			return fail_password(c, "md5 answer does not match");
		auth_state_free(c);
		return AUTH_OK;
	case STEP_SASL_INIT:
		return sasl_init(c, body, len);
	case STEP_SASL_FINAL:
		return sasl_final(c, body, len);
	}
	return fail_with(c, "08P01", "unexpected password message");
}
