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
#include "sluice/conn.h"
#include "sluice/list.h"
#include "sluice/prepare.h"
#include "sluice/vars.h"

struct config;
struct listener;
struct http_server;

enum shutdown_mode {
	SHUTDOWN_NONE = 0,
	SHUTDOWN_WAIT_SERVERS,   /* exit once no server connection is left */
	SHUTDOWN_WAIT_CLIENTS,   /* exit once no client connection is left */
};

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
	struct pstmt_registry pstmts;  /* distinct prepared statements */
	struct var_intern var_intern;  /* shared copies of clients' settings */
	struct statlist dead_servers;  /* closed servers without a handle, freed
					* by the reaper after this iteration */
	int n_clients;                 /* every client connection (max_client_conn) */
	int n_servers;
	uint64_t next_id;              /* ids for clients and servers */

	/* PAUSE / DISABLE state per database name (pools copy `paused`). */
	struct db_flags *db_flags;
	int n_db_flags;
	bool pause_all;                /* PAUSE / KILL without a database */

	struct http_server *http;      /* /metrics, /healthz, /readyz, or NULL */
	char http_bound[300];          /* "addr:port" it listens on */

	uint64_t stats_tick_ms;        /* when the current stats period began */
	double stats_last_period_s;    /* length of the last complete period */

	struct conn_poller poller;     /* batches poll mask changes (conn.h) */
	uv_timer_t janitor;            /* periodic maintenance */
	uv_check_t reaper;             /* frees dead_servers after each iteration */
	uv_signal_t sig_int, sig_term, sig_hup, sig_quit, sig_usr1, sig_usr2;
	bool shutting_down;
	enum shutdown_mode shutdown_mode; /* SHUTDOWN WAIT_FOR_*: waiting to exit */
	uint64_t start_ms;
	uint64_t wall_start_ms;        /* the wall clock at start_ms */
};

/* Per-database admin state (PAUSE db, DISABLE db). */
struct db_flags {
	char *name;
	bool paused;
	bool disabled;
};

/* Immediate shutdown: clients are told, servers closed, the loop ends. */
void sluice_shutdown(struct sluice *ctx, const char *why);

/* SHUTDOWN WAIT_FOR_SERVERS / WAIT_FOR_CLIENTS: stop accepting, exit once
 * the servers (or the clients) are gone. */
void sluice_shutdown_wait(struct sluice *ctx, enum shutdown_mode mode);

/* Re-read the config file, auth files and certificates; -1 keeps the old. */
int sluice_reload(struct sluice *ctx, char *err, size_t errlen);

/* SET name = value from the admin console; -1 with err when refused. */
int sluice_set(struct sluice *ctx, const char *name, const char *value, char *err,
	       size_t errlen);

/* Start listeners, HTTP endpoint, janitor and reaper; -1 with err. */
int sluice_start(struct sluice *ctx, char *err, size_t errlen);

/* Free servers that closed without a handle (also run after the loop). */
void sluice_reap(struct sluice *ctx);

/* Flags of a database name; created on demand when create is set. */
struct db_flags *sluice_db_flags(struct sluice *ctx, const char *name, bool create);

/* True when the database is paused (PAUSE db, PAUSE, KILL). */
bool sluice_db_paused(const struct sluice *ctx, const char *name);

/* Wall-clock milliseconds for a loop time. */
static inline uint64_t sluice_wall_ms(const struct sluice *ctx, uint64_t loop_ms)
{
	return ctx->wall_start_ms + (loop_ms - ctx->start_ms);
}

/* Milliseconds on the loop's cached clock. */
static inline uint64_t sluice_now(const struct sluice *ctx)
{
	return uv_now(ctx->loop);
}

#endif /* SLUICE_SLUICE_H */
