/*
 * sluice.h - the context of one event loop: everything a pooler thread owns.
 *
 * There is no other file-scope mutable state (the log sink aside), so a
 * future multi-core version runs one of these per worker thread.
 */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include <uv.h>

#include "sluice/auth.h"
#include "sluice/cancel.h"
#include "sluice/common.h"
#include "sluice/list.h"

struct config;
struct listener;

struct sluice {
	uv_loop_t *loop;
	struct config *cfg;            /* current config; replaced on reload */
	struct auth_files auth;        /* auth_file and auth_hba_file contents */
	struct ssl_ctx_st *client_tls; /* SSL_CTX for clients, NULL = no TLS */

	struct listener *listeners;    /* array of n_listeners */
	int n_listeners;
	uint64_t accept_paused_until_ms; /* accept paused (fd exhaustion) until */

	struct statlist login_clients; /* CL_LOGIN: before the startup packet */
	struct cancel_registry cancels; /* fake keys, cancels in flight */
	struct list pools;             /* every struct pool */
	struct statlist dead_servers;  /* closed servers without a handle, freed
					* by the reaper after this iteration */
	int n_clients;                 /* every client connection (max_client_conn) */
	int n_servers;
	uint64_t next_id;              /* ids for clients and servers */

	uv_timer_t janitor;            /* periodic maintenance */
	uv_check_t reaper;             /* frees dead_servers after each iteration */
	uv_signal_t sig_int, sig_term, sig_hup;
	bool shutting_down;
	uint64_t start_ms;
};

/* Milliseconds on the loop's cached clock. */
static inline uint64_t sluice_now(const struct sluice *ctx)
{
	return uv_now(ctx->loop);
}

#endif /* SLUICE_SLUICE_H */
