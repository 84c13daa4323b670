/*
 * tls.c - TLS towards clients (see tls.h).
 */
#include "sluice/tls.h"
#include "sluice/config.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void ssl_error(char *err, size_t errlen, const char *what, const char *path)
{
	char buf[256] = "";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s%s%s%s: %s", what, path ? " \"" : "", path ? path : "",
		 path ? "\"" : "", buf[0] ? buf : "unknown OpenSSL error");
	ERR_clear_error();
}

static int version_of(const char *name)
{
	static const struct { const char *name; int version; } map[] = {
		{"tlsv1", TLS1_VERSION},     {"tlsv1.0", TLS1_VERSION},
		{"tlsv1.1", TLS1_1_VERSION}, {"tlsv1.2", TLS1_2_VERSION},
		{"tlsv1.3", TLS1_3_VERSION},
	};
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (strcasecmp(map[i].name, name) == 0)
			return map[i].version;
	return 0;
}

/* PgBouncer's client_tls_protocols: secure, all, legacy, or a list. */
static int set_protocols(SSL_CTX *ctx, const char *spec, char *err, size_t errlen)
{
	int lo = 0, hi = 0;
	char buf[256], *save = NULL;

	if (!spec[0] || !strcasecmp(spec, "secure")) {
		lo = TLS1_2_VERSION;
	} else if (!strcasecmp(spec, "all") || !strcasecmp(spec, "legacy")) {
		lo = TLS1_VERSION;
	} else {
		snprintf(buf, sizeof(buf), "%s", spec);
		for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
			int v = version_of(t);
			if (!v) {
				snprintf(err, errlen, "client_tls_protocols: unknown protocol \"%s\"", t);
				return -1;
			}
			lo = lo && lo < v ? lo : v;
			hi = hi > v ? hi : v;
		}
	}
	SSL_CTX_set_min_proto_version(ctx, lo);
	SSL_CTX_set_max_proto_version(ctx, hi);
	return 0;
}

static void path_of(const struct config *cfg, const char *file, char *out, size_t len)
{
	config_resolve_path(cfg, file, out, len);
}

int tls_client_ctx_build(const struct config *cfg, SSL_CTX **out, char *err, size_t errlen)
{
	char path[4096];
	SSL_CTX *ctx;

	*out = NULL;
	if (cfg->client_tls_sslmode == CLIENT_SSL_DISABLE)
		return 0;
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_error(err, errlen, "cannot create TLS context", NULL);
		return -1;
	}
	/* As PostgreSQL: no compression, no renegotiation, no session resumption. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (set_protocols(ctx, cfg->client_tls_protocols, err, errlen) < 0)
		goto fail;
	if (cfg->client_tls_ciphers[0] && strcasecmp(cfg->client_tls_ciphers, "default") != 0 &&
	    SSL_CTX_set_cipher_list(ctx, cfg->client_tls_ciphers) != 1) {
		ssl_error(err, errlen, "client_tls_ciphers", cfg->client_tls_ciphers);
		goto fail;
	}
	if (cfg->client_tls13_ciphers[0] &&
	    SSL_CTX_set_ciphersuites(ctx, cfg->client_tls13_ciphers) != 1) {
		ssl_error(err, errlen, "client_tls13_ciphers", cfg->client_tls13_ciphers);
		goto fail;
	}
	path_of(cfg, cfg->client_tls_cert_file, path, sizeof(path));
	if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1) {
		ssl_error(err, errlen, "client_tls_cert_file", path);
		goto fail;
	}
	path_of(cfg, cfg->client_tls_key_file, path, sizeof(path));
	if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ssl_error(err, errlen, "client_tls_key_file", path);
		goto fail;
	}
	if (cfg->client_tls_ca_file[0]) {
		path_of(cfg, cfg->client_tls_ca_file, path, sizeof(path));
		if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1) {
			ssl_error(err, errlen, "client_tls_ca_file", path);
			goto fail;
		}
		/* Ask for a certificate (cert auth); demand one for verify-*. */
		int mode = SSL_VERIFY_PEER;
		if (cfg->client_tls_sslmode >= CLIENT_SSL_VERIFY_CA)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, NULL);
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
	}
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}

SSL *tls_session_new(SSL_CTX *ctx, int fd)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

size_t tls_cbind_data(SSL *ssl, uint8_t *out, size_t outlen)
{
	X509 *cert = SSL_get_certificate(ssl);
	int md_nid = NID_undef, pk_nid;
	unsigned int len = 0;

	if (!cert || !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid))
		return 0;
	if (md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_undef)
		md_nid = NID_sha256;
	const EVP_MD *md = EVP_get_digestbynid(md_nid);
	if (!md || (size_t)EVP_MD_get_size(md) > outlen || X509_digest(cert, md, out, &len) != 1)
		return 0;
	return len;
}

bool tls_peer_cn(SSL *ssl, char *out, size_t outlen)
{
	X509 *peer = SSL_get1_peer_certificate(ssl);
	bool ok = false;

	if (peer && SSL_get_verify_result(ssl) == X509_V_OK) {
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
						  out, (int)outlen);
		/* A name with an embedded NUL is not a name. */
		ok = n > 0 && (size_t)n < outlen && strlen(out) == (size_t)n;
	}
	X509_free(peer);
	return ok;
}

const char *tls_version(SSL *ssl)
{
	return SSL_get_version(ssl);
}
