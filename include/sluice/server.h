/*
 * server.h - a backend connection: libpq login, then raw relay.
 *
 *   launch -> SV_LOGIN --libpq OK--> SV_IDLE <--> SV_ACTIVE (linked)
 *                                       ^             |
 *                                       +- SV_TESTED <- SV_USED (needs reset)
 *
 * Every state is a list of the server's pool; only pool_server_set_state()
 * moves a server.  While logging in, the socket belongs to libpq and is
 * polled through server.login_poll; afterwards the same handle drives the
 * relay through server.conn.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <libpq-fe.h>
#include <stdio.h>

#include "sluice/conn.h"
#include "sluice/list.h"
#include "sluice/vars.h"

struct pool;
struct client;
struct log_conn;
struct prep_server;

#define SERVER_STATES(X)                                                     \
	X(SV_LOGIN)    /* pool->sv_login: libpq login in progress */         \
	X(SV_IDLE)     /* pool->sv_idle: clean, ready for a client */        \
	X(SV_ACTIVE)   /* pool->sv_active: linked to a client */             \
	X(SV_USED)     /* pool->sv_used: released, needs a reset first */    \
	X(SV_TESTED)   /* pool->sv_tested: running reset/rollback query */   \
	X(SV_CLOSED)   /* on no list (or ctx->dead_servers until freed) */

enum server_state {
#define X(s) s,
	SERVER_STATES(X)
#undef X
};

/* Internal queries the pooler runs on a server (one at a time). */
enum server_step {
	STEP_NONE = 0,
	STEP_SETVARS,   /* bring tracked settings in line with the client */
	STEP_ROLLBACK,  /* client left inside a transaction */
	STEP_RESET,     /* server_reset_query */
	STEP_AUTH_QUERY, /* auth_query for a logging-in client (auth_client) */
	STEP_CHECK,      /* server_check_query before reuse after a long idle */
};

/*
 * A backend connection.  Owned by the list of its state; freed only from its
 * close callback (or by the reaper when it never had a handle).
 */
struct server {
	struct conn conn;
	uint64_t id;
	enum server_state state;
	struct list node;
	struct pool *pool;
	struct client *client;      /* linked client; pool_link/unlink only */

	/* login */
	PGconn *pg;
	uv_getaddrinfo_t *dns;      /* pending resolution, or NULL */
	uv_poll_t *login_poll;      /* handle on libpq's socket during login */
	int login_fd;
	FILE *trace;                /* PQtrace sink during login */
	struct pktbuf trace_buf;
	char *hostaddr;             /* resolved address given to libpq */
	uint64_t login_deadline_ms;

	/* after login */
	uint32_t backend_pid;
	uint32_t cancel_key;
	struct varlist vars;        /* reported settings of this backend */
	char tx_status;             /* last ReadyForQuery status */
	int pending_rfq;            /* ReadyForQuery messages still owed */
	bool ext_pending;           /* extended-protocol messages since Sync */
	bool release_pending;       /* release once the last bytes are flushed */
	bool dirty;                 /* close instead of reusing */
	bool close_needed;          /* RECONNECT or a changed database entry:
				     * close when released (SHOW SERVERS close_needed) */
	bool fail_client;           /* statement mode saw a transaction start */
	bool wake_client;           /* the client holds an invalid message until
				     * the answers it asked for before it are out */
	char *host;                 /* first host of the conninfo, or NULL */
	char *port;                 /* first port of the conninfo, or NULL */
	char tls_paths[3][512];     /* server_tls_* files, resolved, during login */
	char passfile[512];         /* server_passfile, resolved, during login */
	struct prep_server *prep;   /* prepared statements here, outstanding messages */
	enum server_step step;
	bool step_done;             /* step finished; continue from on_flushed */
	char *step_error;           /* ErrorResponse text from an internal query */
	char step_sqlstate[6];
	struct client *auth_client; /* STEP_AUTH_QUERY: whose secret is looked up */
	char *auth_secret;          /* STEP_AUTH_QUERY: the secret found, or NULL */
	char *cancel_addr;          /* where CancelRequests go: IP, or unix socket path */
	int cancel_port;
	bool cancel_unix;
	int cancels_inflight;       /* forwarded cancels not finished yet */
	bool parked;                /* release waits for those cancels */
	uint64_t connect_ms;
	uint64_t last_used_ms;
	uint64_t query_start_ms;    /* when the oldest unanswered query was sent */
	uint64_t idle_tx_since_ms;  /* when it became idle inside a transaction */
	uint64_t idle_since_ms;     /* when it last entered SV_IDLE */
	uint64_t step_start_ms;     /* when its internal query (step) began */
	uint64_t xact_start_ms;     /* when its current transaction began */
	uint64_t query_start_us;    /* the same two, in microseconds, for the stats */
	uint64_t xact_start_us;
};

const char *server_state_name(enum server_state st);

/* Start a new backend login for the pool (the server is put on sv_login). */
void server_launch(struct pool *pool);

/* Close and forget a server (any state). */
void server_close(struct server *s, const char *reason);

/* Run an internal query; the step machine continues when it finished. */
void server_start_step(struct server *s, enum server_step step);

/* Run auth_query for a logging-in client on this (unlinked) server. */
void server_start_auth_query(struct server *s, struct client *c);

/* Health-check an idle server (server_check_query); ready again when it passes. */
void server_start_check(struct server *s);

/* After a client is linked: align settings; true if the client must wait. */
bool server_prepare_for_client(struct server *s);

/* Check the login deadline; called by the janitor. */
void server_check_login_timeout(struct server *s, uint64_t now);

/* A forwarded cancel for this server finished (release may proceed). */
void server_cancel_done(struct server *s);

/* Free servers that closed without a handle (reaper). */
void server_reap(struct server *s);

void server_log_who(const struct server *s, struct log_conn *who);

#endif /* SLUICE_SERVER_H */
