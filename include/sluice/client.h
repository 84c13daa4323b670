/*
 * client.h - a client connection and its state machine.
 *
 *   accept -> CL_LOGIN --startup--> (CL_LOGIN_WAIT) --> CL_ACTIVE <--> CL_WAITING
 *                                                           |
 *                                                       close (CL_CLOSED)
 *
 * CL_LOGIN clients live on ctx->login_clients; all other states are lists of
 * the client's pool.  Only pool_client_set_state() moves a client.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <netinet/in.h>

#include "sluice/conn.h"
#include "sluice/list.h"
#include "sluice/vars.h"

struct sluice;
struct pool;
struct server;
struct log_conn;
struct auth_state;
struct admin_state;
struct prep_client;

#define CLIENT_STATES(X)                                                     \
	X(CL_LOGIN)       /* ctx->login_clients: reading the startup packet */ \
	X(CL_LOGIN_WAIT)  /* pool->cl_login: waits for the pool's first server
			   * to learn the parameters to greet it with */      \
	X(CL_ACTIVE)      /* pool->cl_active: logged in, linked or idle */    \
	X(CL_WAITING)     /* pool->cl_waiting: needs a server, queued FIFO */ \
	X(CL_CLOSED)      /* on no list; freed from the close callback */

enum client_state {
#define X(s) s,
	CLIENT_STATES(X)
#undef X
};

/*
 * A client connection.  Owned by the list of its state; freed only from its
 * conn's close callback (client_on_closed).
 */
struct client {
	struct conn conn;          /* must stay first-class: container_of */
	struct sluice *ctx;
	uint64_t id;
	enum client_state state;
	struct list node;          /* on the list of its state */
	struct pool *pool;         /* set after the startup packet */
	struct server *server;     /* linked server; pool_link/unlink only */
	char *dbname;              /* as the client asked */
	char *username;            /* as the client gave it */
	struct varlist vars;       /* tracked settings the client expects */
	uint32_t cancel_pid;       /* fake BackendKeyData */
	uint32_t cancel_key;
	struct client *cancel_next; /* chain in the cancel registry */
	bool cancel_registered;
	union {                    /* client address (TCP); family 0 on a unix socket */
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer;
	bool is_unix;
	struct auth_state *auth;   /* exchange state while logging in, or NULL */
	struct admin_state *admin; /* admin console client, or NULL */
	struct prep_client *prep;  /* named prepared statements (transaction mode) */
	struct list auth_node;     /* on auth_pool->auth_waiting while queued */
	struct pool *auth_pool;    /* pool running this client's auth_query */
	struct server *auth_server; /* server running it right now, or NULL */
	bool over_limit;           /* accepted over max_client_conn: refuse */
	uint64_t connect_ms;
	uint64_t wait_start_ms;    /* when it last entered CL_WAITING */
	uint64_t wait_start_us;    /* the same in microseconds; 0 = not waiting */
	uint64_t last_activity_ms; /* when it last sent a message */
	const char *close_reason;
};

const char *client_state_name(enum client_state st);

/* A new connection from a listener; takes ownership of fd. */
void client_accept(struct sluice *ctx, int fd, const struct sockaddr *sa, bool is_unix);

/* The client's address as text ("ip:port", or "unix"); buf of 64 bytes is enough. */
const char *client_addr(const struct client *c, char *buf, size_t len);

/* Close with a reason (no message to the client). */
void client_close(struct client *c, const char *reason);

/* Send an ErrorResponse (FATAL) with sqlstate, then close. */
void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

/* The pool learnt its parameters: greet a CL_LOGIN_WAIT client. */
void client_finish_login(struct client *c);

/* Log identity of the client. */
void client_log_who(const struct client *c, struct log_conn *who);

#endif /* SLUICE_CLIENT_H */
