/*
 * pool.h - pools per (database, user), their state lists, and the one place
 * where clients and servers are linked and moved between states.
 *
 * State is list membership (PgBouncer's rule): a client or server is on
 * exactly one list, so every count SHOW POOLS or /metrics reports is a list
 * length and cannot drift from reality.
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include "sluice/client.h"
#include "sluice/list.h"
#include "sluice/pktbuf.h"
#include "sluice/server.h"
#include "sluice/stats.h"
#include "sluice/vars.h"

struct sluice;
struct config_db;

/* See pool_welcome(). */
struct welcome_item {
	const char *name;          /* into pool->welcome */
	const char *value;
	bool tracked;              /* a client may ask for another value */
	uint32_t off, len;         /* its ParameterStatus message in ps */
};

struct welcome_cache {
	struct welcome_item *items;
	uint32_t n;
	struct pktbuf ps;
	struct varlist tracked;    /* the tracked items, in the same order */
};

struct pool {
	struct list node;          /* on ctx->pools */
	struct sluice *ctx;
	char *dbname;              /* the name clients use */
	char *user;                /* the backend user */
	/* Copied from the config (refreshed on reload). */
	char *conninfo;
	char *password;            /* forced password, or NULL */
	int pool_size;             /* 0 = unlimited */
	int pool_mode;             /* enum pool_mode */

	struct statlist cl_login;   /* CL_LOGIN_WAIT */
	struct statlist cl_active;  /* CL_ACTIVE */
	struct statlist cl_waiting; /* CL_WAITING, FIFO */
	struct statlist sv_login;   /* SV_LOGIN */
	struct statlist sv_idle;    /* SV_IDLE, most recently used last */
	struct statlist sv_active;  /* SV_ACTIVE */
	struct statlist sv_used;    /* SV_USED */
	struct statlist sv_tested;  /* SV_TESTED */
	struct statlist auth_waiting; /* clients of other pools waiting for this
				       * pool to run their auth_query (auth_node) */

	struct varlist welcome;     /* ParameterStatus of the first login */
	bool have_welcome;
	struct welcome_cache wcache; /* welcome, ready for logins (pool_welcome) */

	int client_refs;            /* clients whose c->pool is this pool, from
				     * pool_client_attach until they are freed:
				     * a pool is never freed under one of them,
				     * whatever its state (logging in included) */

	bool autodb;                /* created through the "*" entry */
	uint64_t last_client_ms;    /* when it last had a client (autodb_idle_timeout) */
	int closing_servers;        /* closed servers not freed yet (they point here) */

	bool admin;                 /* the admin console's pool: never has servers */
	bool paused;                /* PAUSE / KILL: no server is handed out */

	struct pool_stats stats;

	/* Readiness: a login failed or a server connection was lost, and no
	 * login has succeeded since.  The janitor probes with a new login. */
	bool unreachable;
	uint64_t probe_at_ms;

	char *last_error;           /* last failed backend login, or NULL */
	char last_sqlstate[6];
	bool last_error_permanent;  /* waiting will not help (auth, no database) */
	uint64_t last_error_ms;
};

/* Find or create the pool for a database entry and backend user. */
struct pool *pool_get(struct sluice *ctx, const char *dbname, const char *user,
		      const struct config_db *db);

/* The admin console's pool for a user (no servers, statement mode). */
struct pool *pool_get_admin(struct sluice *ctx, const char *dbname, const char *user);

/* Refresh a pool's copied settings from the current config. */
void pool_apply_config(struct pool *pool, const struct config_db *db);

void pool_free_all(struct sluice *ctx);

int pool_server_count(const struct pool *pool);

/* Released servers held back until their forwarded cancels finish
 * (sv_being_canceled; they sit on sv_used). */
int pool_parked_servers(const struct pool *pool);

/* Servers of every pool of a database (by client-visible name) or a backend user. */
int pool_servers_where(const struct sluice *ctx, const char *dbname, const char *user);

/* Clients (any state) of a database's pools, or with a given user name. */
int pool_client_count_where(const struct sluice *ctx, const char *dbname, const char *user);

/* c->pool = p, holding a reference until pool_client_release (the client's
 * free); a client that already had a pool gives that one back first. */
void pool_client_attach(struct client *c, struct pool *p);
void pool_client_release(struct client *c);

void pool_client_set_state(struct client *c, enum client_state st);
void pool_server_set_state(struct server *s, enum server_state st);

void pool_link(struct client *c, struct server *s);
void pool_unlink(struct client *c, struct server *s);

/*
 * The client needs a server.  Returns true when one was linked right away;
 * otherwise the client is queued (CL_WAITING) or, when the database cannot
 * be reached, failed (then c->conn.closing is set).
 */
bool pool_request_server(struct client *c);

/* A client finished its startup: greet it now or once parameters are known. */
void pool_client_login(struct client *c);

/* Queue an auth_query lookup for a logging-in client on this pool. */
void pool_request_lookup(struct pool *pool, struct client *c);

/* Forget a client's pending lookup (it is going away). */
void pool_cancel_lookup(struct client *c);

/* A server is clean and unlinked: hand it to a waiting client, or idle it. */
void pool_server_ready(struct server *s);

/* A client is going away: detach it and decide what to do with its server. */
void pool_client_gone(struct client *c);

/* Backend login results. */
void pool_server_login_done(struct server *s);

/*
 * The welcome as logins use it: every ParameterStatus message with the
 * pool's value, built once, and which settings a client may have changed
 * (tracked ones).  Built on first use; pool_welcome_reset() after the
 * welcome or the tracked settings changed (a reload or SET).
 */
const struct welcome_cache *pool_welcome(struct pool *p, const struct config *cfg);
void pool_welcome_reset(struct pool *p);
/* permanent: retrying will not help (bad password, no such database, TLS
 * verification, ...); otherwise it is an outage and clients keep waiting. */
void pool_server_login_failed(struct server *s, const char *sqlstate, const char *msg,
			      bool permanent);

/* A server connection broke (EOF, error): the database may be down. */
void pool_server_lost(struct pool *pool);

/* Launch servers for waiting clients, within the pool size. */
void pool_launch_if_needed(struct pool *pool);

/* Periodic maintenance (login timeouts, retries). */
void pool_janitor(struct sluice *ctx);

/* Effective server_reset_query for a release in this pool, or NULL. */
const char *pool_reset_query(const struct pool *pool);

/* ---- admin commands (dbname NULL = every database but the console) ---- */

/* Re-derive pool->paused from the per-database flags; pausing closes idle
 * servers, resuming launches servers for waiting clients. */
void pool_refresh_paused(struct sluice *ctx);
void pool_pause(struct sluice *ctx, const char *dbname);
void pool_resume(struct sluice *ctx, const char *dbname);
/* Close servers once released (idle ones now); new ones connect as needed. */
void pool_reconnect(struct pool *p);
void pool_reconnect_db(struct sluice *ctx, const char *dbname);
/* Drop every client and server of the database(s), and pause it. */
void pool_kill(struct sluice *ctx, const char *dbname);
/* Servers of the database(s); only those with close_needed when asked. */
int pool_servers_of(const struct sluice *ctx, const char *dbname, bool close_needed_only);
struct client *pool_find_client(const struct sluice *ctx, uint64_t id);

/* ---- statistics ---- */

/* Totals including the bytes of live clients. */
void pool_stats_current(const struct pool *p, struct stats_counters *out);
/* End of a stats_period: period differences, latency window rotation. */
void pool_stats_tick(struct sluice *ctx);
/* Sums over the pools of one database; false when it has none. */
bool pool_stats_db(const struct sluice *ctx, const char *dbname, struct stats_counters *total,
		   struct stats_counters *period);
bool pool_first_of_db(const struct sluice *ctx, const struct pool *p);
void pool_log_stats(struct sluice *ctx, double seconds);

#endif /* SLUICE_POOL_H */
