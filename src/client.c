/*
 * client.c - the client side: startup packet, greeting, and the messages a
 * logged-in client sends.
 *
 * Login (CL_LOGIN): SSLRequest and GSSENCRequest are answered 'N' (no TLS
 * yet), a CancelRequest ends the connection, and the StartupMessage is
 * checked: protocol 3.x, a user, a known database, only startup parameters
 * the pooler can keep track of.  The client is then greeted with
 * AuthenticationOk, the pool's ParameterStatus set (overridden by its own
 * settings), a fake BackendKeyData and ReadyForQuery.
 *
 * Work (CL_ACTIVE): each message is checked ("don't believe nonsense"); the
 * first one of a transaction asks the pool for a server; the counts of
 * ReadyForQuery owed by the server are kept here, so the server side knows
 * when a transaction is over.
 */
#include "sluice/client.h"
#include "sluice/admin.h"
#include "sluice/auth.h"
#include "sluice/cancel.h"
#include "sluice/config.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/prepare.h"
#include "sluice/proto.h"
#include "sluice/server.h"
#include "sluice/sluice.h"
#include "sluice/stats.h"
#include "sluice/tls.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

static const struct conn_ops client_ops;

const char *client_state_name(enum client_state st)
{
	static const char *const names[] = {
#define X(s) #s,
		CLIENT_STATES(X)
#undef X
	};
	return (unsigned)st < ARRAY_SIZE(names) ? names[st] : "?";
}

void client_log_who(const struct client *c, struct log_conn *who)
{
	who->kind = 'C';
	who->id = c->id;
	who->db = c->dbname ? c->dbname : "";
	who->user = c->username ? c->username : "";
	who->addr = client_addr(c, who->addr_buf, sizeof(who->addr_buf));
}

#define clog(level, c, ...)                                                  \
	do {                                                                 \
		if (log_enabled(level)) {                                    \
			struct log_conn who_;                                \
			client_log_who((c), &who_);                          \
			log_write((level), &who_, NULL, 0, __VA_ARGS__);     \
		}                                                            \
	} while (0)

/* ---- lifetime ---------------------------------------------------------- */

const char *client_addr(const struct client *c, char *buf, size_t len)
{
	if (c->is_unix)
		snprintf(buf, len, "unix");
	else
		listener_format_addr(&c->peer.sa, buf, len);
	return buf;
}

void client_accept(struct sluice *ctx, int fd, const struct sockaddr *sa, bool is_unix)
{
	struct client *c = xcalloc(1, sizeof(*c));

	if (!is_unix && sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
		memcpy(&c->peer, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
							       : sizeof(struct sockaddr_in6));

	c->ctx = ctx;
	c->id = ++ctx->next_id;
	c->state = CL_CLOSED;
	list_init(&c->node);
	list_init(&c->auth_node);
	c->is_unix = is_unix;
	c->connect_ms = sluice_now(ctx);
	c->last_activity_ms = c->connect_ms;
	ctx->n_clients++;
	/* Over the limit: still read the startup packet, so that the refusal
	 * reaches the client as an ErrorResponse it can show. */
	c->over_limit = ctx->n_clients > ctx->cfg->max_client_conn || ctx->shutting_down;
	pool_client_set_state(c, CL_LOGIN);
	if (conn_init(&c->conn, ctx->loop, fd, &client_ops, (uint32_t)ctx->cfg->pkt_buf, true) < 0) {
		close(fd);
		pool_client_set_state(c, CL_CLOSED);
		ctx->n_clients--;
		free(c);
	}
}

static void client_on_closed(struct conn *conn)
{
	struct client *c = container_of(conn, struct client, conn);

	if (conn->ssl) {
		SSL_free(conn->ssl);   /* a client's session is ours, not libpq's */
		conn->ssl = NULL;
	}
	close(conn->fd);
	auth_state_free(c);
	admin_client_free(c);
	prep_client_free(c);
	pool_client_release(c);
	c->ctx->n_clients--;
	vars_free(&c->vars);
	free(c->username);   /* dbname shares its allocation */
	free(c);
}

/* Detach from pool and server; log the one summary line. */
static void client_detach(struct client *c, const char *reason)
{
	struct sluice *ctx = c->ctx;

	if (c->state == CL_CLOSED)
		return;
	c->close_reason = reason;
	if (ctx->cfg->log_disconnections && c->state != CL_LOGIN) {
		char age[32], in[24], out[24];
		snprintf(age, sizeof(age), "%.3f", (double)(sluice_now(ctx) - c->connect_ms) / 1000.0);
		snprintf(in, sizeof(in), "%llu", (unsigned long long)c->conn.bytes_in);
		snprintf(out, sizeof(out), "%llu", (unsigned long long)c->conn.bytes_out);
		struct log_kv kv[] = {{"reason", reason}, {"age", age}, {"in", in}, {"out", out}};
		struct log_conn who;
		client_log_who(c, &who);
		log_write(LOG_INFO, &who, kv, ARRAY_SIZE(kv), "closing client connection");
	}
	if (c->pool) {
		c->pool->stats.total.received += c->conn.bytes_in;
		c->pool->stats.total.sent += c->conn.bytes_out;
	}
	cancel_unregister(c->ctx, c);
	pool_cancel_lookup(c);
	pool_client_gone(c);
	pool_client_set_state(c, CL_CLOSED);
}

void client_close(struct client *c, const char *reason)
{
	client_detach(c, reason);
	conn_close(&c->conn);
}

void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (c->conn.closing || c->conn.close_after_flush)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->ctx->cfg->log_pooler_errors)
		clog(c->state == CL_LOGIN ? LOG_INFO : LOG_WARNING, c, "%s (%s)", msg, sqlstate);
	client_detach(c, msg);
	pktbuf_write_ErrorResponse(&c->conn.out, "FATAL", sqlstate, msg);
	conn_close_after_flush(&c->conn);
}

/* ---- login -------------------------------------------------------------- */

/* The backend user a database entry forces (its `user`, or user= in conninfo). */
static char *forced_user(const struct config_db *db)
{
	const char *u = db->user ? db->user : db->conninfo_user;
	return u ? xstrdup(u) : NULL;
}

static bool login_continue(struct client *c, const struct startup *st, const char *const *unknown,
			   int nunknown, bool trusted);

/* The console: access is decided before any password is asked. */
static bool admin_startup(struct client *c, const struct startup *st, const char *const *unknown,
			  int nunknown)
{
	bool trusted;
	if (!admin_client_startup(c, &trusted))
		return false;
	return login_continue(c, st, unknown, nunknown, trusted);
}

/* Handle a StartupMessage.  Returns false when the client was failed. */
static bool client_startup(struct client *c, const struct startup *st)
{
	const struct config *cfg = c->ctx->cfg;
	const char *unknown[PROTO_MAX_STARTUP_PARAMS];
	int nunknown = 0;
	char why[512];

	if (c->over_limit) {
		client_fail(c, "53300", "no more connections allowed (max_client_conn)");
		return false;
	}
	/* require and verify-*: TCP clients must have switched to TLS. */
	if (cfg->client_tls_sslmode >= CLIENT_SSL_REQUIRE && !c->conn.ssl && !c->is_unix) {
		client_fail(c, "28000", "SSL required: this server accepts only TLS connections "
					"(client_tls_sslmode = %s)",
			    cfg->client_tls_sslmode == CLIENT_SSL_REQUIRE ? "require" : "verify");
		return false;
	}
	const char *user = proto_startup_get(st, "user");
	if (!user || !user[0]) {
		client_fail(c, "28000", "no PostgreSQL user name specified in startup packet");
		return false;
	}
	const char *db = proto_startup_get(st, "database");
	/* One allocation for both names (one idle client: one chunk less). */
	const char *dbn = db && db[0] ? db : user;
	size_t ul = strlen(user) + 1, dl = strlen(dbn) + 1;
	c->username = xmalloc(ul + dl);
	memcpy(c->username, user, ul);
	c->dbname = c->username + ul;
	memcpy(c->dbname, dbn, dl);
	bool console = admin_is_console_db(c->dbname);

	for (int i = 0; i < st->nparams; i++) {
		const char *name = st->params[i].name, *value = st->params[i].value;
		const char *tracked;
		if (!strcmp(name, "user") || !strcmp(name, "database"))
			continue;
		if (!strncmp(name, "_pq_.", 5)) {
			unknown[nunknown++] = name;
			continue;
		}
		if (config_strlist_has(&cfg->ignore_startup_parameters, name))
			continue;
		if (!strcmp(name, "options")) {
			const char *err = vars_apply_options(&c->vars, c->ctx->cfg, value, why, sizeof(why));
			if (err) {
				client_fail(c, "08P01", "%s", err);
				return false;
			}
			continue;
		}
		if ((tracked = vars_tracked_name(cfg, name))) {
			vars_set(&c->vars, tracked, value);
			continue;
		}
		if (console)
			continue;   /* drivers' extras are harmless on the console */
		client_fail(c, "08P01", "unsupported startup parameter: %s", name);
		return false;
	}
	if (console)
		return admin_startup(c, st, unknown, nunknown);

	const struct config_db *dbe = config_find_db(cfg, c->dbname);
	if (!dbe) {
		client_fail(c, "3D000", "no such database: %s", c->dbname);
		return false;
	}
	const struct db_flags *flags = sluice_db_flags(c->ctx, c->dbname, false);
	if (flags && flags->disabled) {
		client_fail(c, "57P03", "database does not allow connections: %s (DISABLE)", c->dbname);
		return false;
	}
	char *backend_user = forced_user(dbe);
	if (!backend_user && cfg->auth_type == AUTH_TYPE_ANY) {
		client_fail(c, "28000", "database %s has no user for auth_type any", c->dbname);
		return false;
	}
	if (cfg->max_db_client_connections &&
	    pool_client_count_where(c->ctx, c->dbname, NULL) >= cfg->max_db_client_connections) {
		free(backend_user);
		client_fail(c, "53300", "no more connections allowed (max_db_client_connections)");
		return false;
	}
	if (cfg->max_user_client_connections &&
	    pool_client_count_where(c->ctx, NULL, c->username) >= cfg->max_user_client_connections) {
		free(backend_user);
		client_fail(c, "53300", "no more connections allowed (max_user_client_connections)");
		return false;
	}
	pool_client_attach(c, pool_get(c->ctx, c->dbname, backend_user ? backend_user : c->username,
				      dbe));
	free(backend_user);

	return login_continue(c, st, unknown, nunknown, false);
}

/* Protocol negotiation, the log line, then authentication. */
static bool login_continue(struct client *c, const struct startup *st, const char *const *unknown,
			   int nunknown, bool trusted)
{
	/* Protocol 3.x with a newer minor or _pq_ options: say what we speak. */
	if ((st->version & 0xffff) != 0 || nunknown)
		pktbuf_write_NegotiateProtocolVersion(&c->conn.out, PROTO_VERSION_3_0, unknown, nunknown);
	if (c->ctx->cfg->log_connections)
		clog(LOG_INFO, c, "login attempt: db=%s user=%s tls=%s", c->dbname, c->username,
		     c->conn.ssl ? tls_version(c->conn.ssl) : "no");
	switch (trusted ? AUTH_OK : auth_start(c)) {
	case AUTH_FAILED:
		return false;
	case AUTH_CONTINUE:
		conn_send_out(&c->conn);
		break;
	case AUTH_OK:
		pool_client_login(c);
		break;
	}
	return !c->conn.closing && !c->conn.close_after_flush;
}

/* Largest authentication message accepted (PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH). */
#define MAX_AUTH_MESSAGE 65535u

/* A password, SASLInitialResponse or SASLResponse message during login. */
static enum pkt_action auth_message(struct client *c, uint8_t type, uint32_t len,
				    const uint8_t *body, uint32_t avail)
{
	if (type != PQ_MSG_PASSWORD || len > MAX_AUTH_MESSAGE) {
		client_fail(c, "08P01", type != PQ_MSG_PASSWORD
				 ? "expected a password message during authentication"
				 : "authentication message too long");
		return PKT_CLOSED;
	}
	if (avail < len)
		return PKT_NEED_BODY;
	switch (auth_packet(c, body, len)) {
	case AUTH_FAILED:
		return PKT_CLOSED;
	case AUTH_CONTINUE:
		conn_send_out(&c->conn);
		break;
	case AUTH_OK:
		conn_send_out(&c->conn);
		pool_client_login(c);
		break;
	}
	return c->conn.closing || c->conn.close_after_flush ? PKT_CLOSED : PKT_SKIP;
}

void client_finish_login(struct client *c)
{
	struct pool *p = c->pool;
	struct pktbuf *out = &c->conn.out;
	const struct config *cfg = c->ctx->cfg;

	/* The client expects the pool's settings unless it asked for others.
	 * (Names compare case-insensitively, so the server's spelling serves.) */
	const struct welcome_cache *w = pool_welcome(p, cfg);
	vars_add_defaults(&c->vars, &w->tracked);
	pktbuf_write_AuthenticationOk(out);
	for (uint32_t i = 0; i < w->n; i++) {
		const struct welcome_item *it = &w->items[i];
		const char *mine = it->tracked ? vars_get(&c->vars, it->name) : NULL;
		if (mine && strcmp(mine, it->value) != 0)
			pktbuf_write_ParameterStatus(out, it->name, mine);
		else
			pktbuf_put_bytes(out, w->ps.data + it->off, it->len);
	}
	vars_intern(&c->vars, &c->ctx->var_intern);   /* usually the same as many others */
	cancel_register(c->ctx, c);
	pktbuf_write_BackendKeyData(out, c->cancel_pid, c->cancel_key);
	pktbuf_write_ReadyForQuery(out, 'I');
	pool_client_set_state(c, CL_ACTIVE);
	conn_send_out(&c->conn);
}

/*
 * SSLRequest: answer 'S' and start the handshake when TLS is configured,
 * else 'N'.  Bytes the client sent after the request, before our answer,
 * would be plaintext smuggled into the TLS session (CVE-2021-23214): refused.
 */
static enum pkt_action ssl_request(struct client *c, uint32_t len)
{
	SSL_CTX *ctx = c->ctx->client_tls;

	if (c->conn.ssl) {
		client_fail(c, "08P01", "SSL request received on an encrypted connection");
		return PKT_CLOSED;
	}
	if (!ctx) {
		pktbuf_put_byte(&c->conn.out, 'N');
		conn_send_out(&c->conn);
		return PKT_SKIP;
	}
	if (c->conn.end - c->conn.scan != len) {
		client_fail(c, "08P01", "received unencrypted data after SSL request");
		return PKT_CLOSED;
	}
	SSL *ssl = tls_session_new(ctx, c->conn.fd);
	if (!ssl) {
		client_fail(c, "XX000", "could not start a TLS session");
		return PKT_CLOSED;
	}
	pktbuf_put_byte(&c->conn.out, 'S');
	conn_send_out(&c->conn);
	if (pktbuf_pending(&c->conn.out) || c->conn.closing) {
		SSL_free(ssl);
		client_close(c, "could not answer the SSL request");
		return PKT_CLOSED;
	}
	conn_start_tls(&c->conn, ssl);
	return PKT_SKIP;
}

static enum pkt_action login_packet(struct client *c, uint32_t len, const uint8_t *pkt,
				    uint32_t avail)
{
	struct startup st;
	const char *why = proto_check_startup_len(len);

	if (why) {
		client_fail(c, "08P01", "%s", why);
		return PKT_CLOSED;
	}
	if (avail < len)
		return PKT_NEED_BODY;
	proto_parse_startup(pkt, len, &st);
	switch (st.kind) {
	case STARTUP_SSL:
		return ssl_request(c, len);
	case STARTUP_GSSENC:
		/* No GSS encryption: the client may go on in plain text or TLS. */
		pktbuf_put_byte(&c->conn.out, 'N');
		conn_send_out(&c->conn);
		return PKT_SKIP;
	case STARTUP_CANCEL:
		cancel_request(c->ctx, st.cancel_pid, st.cancel_key);
		client_close(c, "cancel request");
		return PKT_CLOSED;
	case STARTUP_MESSAGE:
		c->conn.startup = false;
		if (!client_startup(c, &st))
			return PKT_CLOSED;
		return PKT_SKIP;
	case STARTUP_BAD:
	default:
		client_fail(c, "08P01", "invalid startup packet: %s", st.error);
		return PKT_CLOSED;
	}
}

/* ---- work ---------------------------------------------------------------- */

/*
 * An invalid message ends the session.  PostgreSQL answers what came before
 * it first: a logged-in client's bad message waits for the ReadyForQuery of
 * every query sent before it.
 */
static enum pkt_action bad_message(struct client *c, const char *why, uint8_t type)
{
	bool working = (c->state == CL_ACTIVE || c->state == CL_WAITING) && !c->admin;
	if (working && c->server && c->server->pending_rfq > 0) {
		c->server->wake_client = true;
		return PKT_WAIT;
	}
	client_fail(c, "08P01", "invalid message from client: %s (type 0x%02x)", why, type);
	return PKT_CLOSED;
}

static enum pkt_action client_on_bad_length(struct conn *conn, uint8_t type, uint32_t len)
{
	struct client *c = container_of(conn, struct client, conn);
	if (c->state == CL_CLOSED)
		return PKT_CLOSED;
	return bad_message(c, len < 4 ? "message length is less than 4" : "message length exceeds 1 GB",
			   type);
}

static enum pkt_action work_packet(struct client *c, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	const char *why = proto_check_header(type, len + 4, true);
	struct server *s;

	if (why)
		return bad_message(c, why, type);
	switch (type) {
	case PQ_MSG_TERMINATE:
		client_close(c, "client close request");
		return PKT_CLOSED;
	case PQ_MSG_PASSWORD:
		client_fail(c, "08P01", "unexpected password message after login");
		return PKT_CLOSED;
	default:
		break;
	}
	c->last_activity_ms = sluice_now(c->ctx);
	if (!c->server) {
		if (!pool_request_server(c))
			return c->conn.closing || c->conn.close_after_flush ? PKT_CLOSED : PKT_WAIT;
	}
	s = c->server;
	if (s->step != STEP_NONE || s->release_pending)
		return PKT_WAIT;
	bool prep = prep_active(c);
	if (prep) {
		uint32_t need = prep_client_needs(c, type, len);
		if (avail < need) {
			c->conn.need_bytes = need;
			return PKT_NEED_BODY;
		}
	}
	if (s->pending_rfq == 0 && !s->ext_pending) {
		s->query_start_ms = c->last_activity_ms;
		s->query_start_us = stats_now_us();
		if (s->tx_status == 'I')
			s->xact_start_us = s->query_start_us;
	}

	switch (type) {
	/* Each of these is answered by exactly one ReadyForQuery. */
	case PQ_MSG_QUERY:
	case PQ_MSG_FUNCTION_CALL:
		s->pending_rfq++;
		break;
	case PQ_MSG_SYNC:
		s->pending_rfq++;
		s->ext_pending = false;
		break;
	/* Extended protocol: the exchange is open until the next Sync. */
	case PQ_MSG_PARSE:
	case PQ_MSG_BIND:
	case PQ_MSG_DESCRIBE:
	case PQ_MSG_EXECUTE:
	case PQ_MSG_CLOSE:
		s->ext_pending = true;
		break;
	default:
		break;
	}
	if (prep)
		return prep_client_packet(c, type, len, body, avail);
	return PKT_FORWARD;
}

static enum pkt_action client_on_packet(struct conn *conn, uint8_t type, uint32_t len,
					const uint8_t *body, uint32_t avail)
{
	struct client *c = container_of(conn, struct client, conn);

	switch (c->state) {
	case CL_LOGIN:
		if (!c->conn.startup)
			return auth_message(c, type, len, body, avail);
		return login_packet(c, len, body, avail);
	case CL_LOGIN_WAIT:
		return PKT_WAIT;
	case CL_ACTIVE:
	case CL_WAITING:
		if (unlikely(c->admin != NULL))
			return admin_packet(c, type, len, body, avail);
		return work_packet(c, type, len, body, avail);
	case CL_CLOSED:
		return PKT_CLOSED;
	}
	return PKT_CLOSED;
}

static void client_on_flushed(struct conn *conn)
{
	(void)conn;
}

static void client_on_error(struct conn *conn, const char *reason)
{
	struct client *c = container_of(conn, struct client, conn);
	client_close(c, strcmp(reason, "EOF") == 0 ? "client unexpected eof" : reason);
}

static const struct conn_ops client_ops = {
	.on_packet = client_on_packet,
	.on_flushed = client_on_flushed,
	.on_error = client_on_error,
	.on_bad_length = client_on_bad_length,
	.on_closed = client_on_closed,
};
