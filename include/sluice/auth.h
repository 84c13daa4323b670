/*
 * auth.h - client authentication: choosing the method (auth_type or the
 * auth_hba_file rules), finding the user's secret (auth_file), and driving
 * the exchange (cleartext, md5, SCRAM-SHA-256, peer).
 *
 * The exchange state lives in struct auth_state, allocated for a client only
 * while it logs in.  Every failure is reported to the client as 28P01 with
 * the same text whether or not the user exists; the reason is only logged.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include "sluice/common.h"

struct sluice;
struct config;
struct client;
struct authfile;
struct hba;

/* The files named by the config, loaded together so a reload swaps both. */
struct auth_files {
	struct authfile *authfile;   /* NULL when auth_file is empty */
	struct hba *hba;             /* NULL when auth_hba_file is empty */
};

/* Load the files the config names; -1 with err filled on failure. */
int auth_files_load(const struct config *cfg, struct auth_files *out, char *err, size_t errlen);
void auth_files_free(struct auth_files *f);

/* What auth_start()/auth_packet() decided. */
enum auth_result {
	AUTH_OK,        /* authenticated: greet the client */
	AUTH_CONTINUE,  /* a request was written; wait for the next 'p' message */
	AUTH_FAILED,    /* refused; the client has been failed */
};

/* Start authenticating a client whose StartupMessage was accepted. */
enum auth_result auth_start(struct client *c);

/* Handle a PasswordMessage / SASLInitialResponse / SASLResponse body. */
enum auth_result auth_packet(struct client *c, const uint8_t *body, uint32_t len);

/*
 * The auth_query lookup for a client finished: err is the server's error
 * message (NULL on success), secret the user's secret (NULL when the user
 * is unknown, expired or has no password).  Continues or fails the login.
 */
void auth_lookup_done(struct client *c, const char *err, const char *secret);

/* Release the exchange state (wiping secrets). */
void auth_state_free(struct client *c);

/* The plain password of a user from auth_file, for the backend login, or NULL. */
const char *auth_plain_password(const struct sluice *ctx, const char *user);

#endif /* SLUICE_AUTH_H */
