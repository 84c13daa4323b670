/*
 * tls.h - TLS towards clients: the SSL_CTX built from client_tls_* settings,
 * per-connection SSL objects, and what authentication needs from a session
 * (the tls-server-end-point channel binding data, the client certificate's
 * common name).
 *
 * OpenSSL reads and writes the client's socket itself (SSL_set_fd): the I/O
 * engine is readiness-based on raw descriptors, so the memory-BIO
 * indirection a stream-owned socket would need buys nothing here.  The
 * SSL_CTX is reference-counted by OpenSSL: a reload builds a new one and
 * frees the old, and sessions in flight keep theirs alive.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <openssl/ssl.h>

#include "sluice/common.h"

struct config;

/*
 * Build the context for client connections.  Returns 0 with *out = NULL when
 * client_tls_sslmode is disable, 0 with a new context, or -1 with err filled.
 */
int tls_client_ctx_build(const struct config *cfg, SSL_CTX **out, char *err, size_t errlen);

/* A server-side session on a client socket, or NULL. */
SSL *tls_session_new(SSL_CTX *ctx, int fd);

/*
 * The tls-server-end-point channel binding data (RFC 5929) of a session: the
 * hash of our certificate with its signature's digest (SHA-256 instead of
 * MD5 or SHA-1).  Returns its length, or 0.
 */
size_t tls_cbind_data(SSL *ssl, uint8_t *out, size_t outlen);

/* The verified client certificate's common name; false when there is none. */
bool tls_peer_cn(SSL *ssl, char *out, size_t outlen);

/* The negotiated protocol version ("TLSv1.3"), for logs. */
const char *tls_version(SSL *ssl);

#endif /* SLUICE_TLS_H */
