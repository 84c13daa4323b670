/*
 * server.c - backend connections: libpq login, then raw relay.
 *
 * Login follows DESIGN.md §5: host names are resolved with uv_getaddrinfo
 * and handed to libpq as hostaddr (libpq would resolve synchronously);
 * PQconnectStartParams + PQconnectPoll are driven from a uv_poll_t that is
 * stopped before every PQconnectPoll call and re-armed after it, because
 * libpq may replace the socket; the login deadline is checked by the
 * janitor; PQtrace into a memory sink captures what libpq 15 does not
 * expose (the cancel key and every ParameterStatus).  After CONNECTION_OK
 * the socket is switched to non-blocking mode and the pooler relays raw
 * protocol bytes through conn.c, tracking ReadyForQuery and ParameterStatus
 * itself (libpq's view is stale from then on).
 */
#include "sluice/server.h"
#include "sluice/auth.h"
#include "sluice/cancel.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/pqtrace.h"
#include "sluice/prepare.h"
#include "sluice/proto.h"
#include "sluice/sluice.h"
#include "sluice/stats.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The trace of one login is a few kB; anything past this is not needed. */
#define TRACE_MAX (256u * 1024u)
#define MAX_KEYWORDS 64

static const struct conn_ops server_ops;

const char *server_state_name(enum server_state st)
{
	static const char *const names[] = {
#define X(s) #s,
		SERVER_STATES(X)
#undef X
	};
	return (unsigned)st < ARRAY_SIZE(names) ? names[st] : "?";
}

static struct sluice *server_ctx(const struct server *s)
{
	return s->pool->ctx;
}

void server_log_who(const struct server *s, struct log_conn *who)
{
	who->kind = 'S';
	who->id = s->id;
	who->db = s->pool->dbname;
	who->user = s->pool->user;
	who->addr = s->hostaddr ? s->hostaddr : (s->host ? s->host : "default");
}

#define slog(level, s, ...)                                                  \
	do {                                                                 \
		if (log_enabled(level)) {                                    \
			struct log_conn who_;                                \
			server_log_who((s), &who_);                          \
			log_write((level), &who_, NULL, 0, __VA_ARGS__);     \
		}                                                            \
	} while (0)

/* ---- freeing ---------------------------------------------------------- */

static void server_free(struct server *s)
{
	struct sluice *ctx = server_ctx(s);

	if (s->trace) {
		PQuntrace(s->pg);
		fclose(s->trace);
	}
	if (s->pg)
		PQfinish(s->pg);
	if (s->trace_buf.data)
		explicit_bzero(s->trace_buf.data, s->trace_buf.cap);
	pktbuf_free(&s->trace_buf);
	vars_free(&s->vars);
	prep_server_free(s);
	free(s->hostaddr);
	free(s->cancel_addr);
	free(s->host);
	free(s->port);
	free(s->step_error);
	if (s->auth_secret) {
		explicit_bzero(s->auth_secret, strlen(s->auth_secret));
		free(s->auth_secret);
	}
	ctx->n_servers--;
	if (s->state == SV_CLOSED)
		s->pool->closing_servers--;
	free(s);
}

static void server_on_closed(struct conn *c)
{
	server_free(container_of(c, struct server, conn));
}

static void free_handle_cb(uv_handle_t *h)
{
	free(h);
}

static void login_poll_close_cb(uv_handle_t *h)
{
	struct server *s = h->data;
	free(h);
	server_free(s);
}

void server_reap(struct server *s)
{
	server_free(s);
}

void server_close(struct server *s, const char *reason)
{
	struct sluice *ctx = server_ctx(s);

	if (s->state == SV_CLOSED)
		return;
	if (ctx->cfg->log_disconnections && s->state != SV_LOGIN) {
		char age[32], in[24], out[24];
		snprintf(age, sizeof(age), "%.3f",
			 (double)(sluice_now(ctx) - s->connect_ms) / 1000.0);
		snprintf(in, sizeof(in), "%llu", (unsigned long long)s->conn.bytes_in);
		snprintf(out, sizeof(out), "%llu", (unsigned long long)s->conn.bytes_out);
		struct log_kv kv[] = {{"reason", reason}, {"age", age}, {"in", in}, {"out", out}};
		struct log_conn who;
		server_log_who(s, &who);
		log_write(LOG_INFO, &who, kv, ARRAY_SIZE(kv), "closing server connection");
	}
	if (s->client) {
		struct client *c = s->client;
		/* A message cut in the middle cannot be followed by an error the
		 * client could read: it only sees the connection end. */
		bool cut = conn_mid_message(&s->conn);
		pool_unlink(c, s);
		if (cut)
			client_close(c, "server connection lost in the middle of a message");
		else
			client_fail(c, "08006", "server connection lost: %s", reason);
	}
	if (s->auth_client) {
		struct client *c = s->auth_client;
		s->auth_client = NULL;
		c->auth_server = NULL;
		c->auth_pool = NULL;
		client_fail(c, "08006", "authentication lookup failed: %s", reason);
	}
	if (s->state != SV_LOGIN) {
		s->pool->stats.total.server_closed_count++;
		s->pool->stats.total.server_lifetime += (sluice_now(ctx) - s->connect_ms) * 1000;
	}
	pool_server_set_state(s, SV_CLOSED);
	s->pool->closing_servers++;
	if (s->cancels_inflight)
		cancel_server_gone(ctx, s);

	if (s->conn.poll) {
		conn_close(&s->conn);
	} else if (s->login_poll) {
		uv_poll_stop(s->login_poll);
		s->login_poll->data = s;
		uv_close((uv_handle_t *)s->login_poll, login_poll_close_cb);
		s->login_poll = NULL;
	} else {
		if (s->dns) {
			s->dns->data = NULL;  /* the callback frees the request */
			uv_cancel((uv_req_t *)s->dns);
			s->dns = NULL;
		}
		statlist_append(&ctx->dead_servers, &s->node);
	}
}

/* ---- login: trace capture ---------------------------------------------- */

static ssize_t trace_write(void *cookie, const char *buf, size_t n)
{
	struct server *s = cookie;
	if (s->trace_buf.len + n <= TRACE_MAX)
		pktbuf_put_bytes(&s->trace_buf, buf, n);
	return (ssize_t)n;
}

static void trace_param(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct server *s = arg;
	char *n = strndup(name, nlen), *v = strndup(value, vlen);
	if (n && v)
		vars_set(&s->vars, n, v);
	free(n);
	free(v);
}

/* Read the captured trace (pqtrace.h): parameters into s->vars, the cancel
 * key into s, and the login's error into `info`. */
static void trace_parse(struct server *s, struct pqtrace_info *info)
{
	pqtrace_parse((const char *)s->trace_buf.data, s->trace_buf.len, info, trace_param, s);
	if (info->have_key) {
		s->backend_pid = info->backend_pid;
		s->cancel_key = info->cancel_key;
	}
}

static void trace_stop(struct server *s)
{
	if (!s->trace)
		return;
	PQuntrace(s->pg);
	fclose(s->trace);
	s->trace = NULL;
}

/* ---- login: libpq state machine --------------------------------------- */

static void login_poll_cb(uv_poll_t *h, int status, int events);

/*
 * Errors that retrying will not cure: wrong credentials (28xxx), a missing
 * database (3D000), no CONNECT privilege (42501).
 */
static bool permanent_sqlstate(const char *sqlstate)
{
	return strncmp(sqlstate, "28", 2) == 0 || strcmp(sqlstate, "3D000") == 0 ||
	       strcmp(sqlstate, "42501") == 0;
}

/*
 * A failure libpq found itself (no SQLSTATE from the server) is an outage
 * only when the server could not be reached; TLS verification, a missing
 * password and the like are configuration errors that waiting will not fix.
 */
static bool unreachable(const char *libpq_msg)
{
	static const char *const marks[] = {
		"Connection refused", "No such file or directory", "Connection reset",
		"server closed the connection unexpectedly", "timeout", "Network is unreachable",
		"No route to host", "could not translate host name", "Connection timed out",
	};
	for (size_t i = 0; i < ARRAY_SIZE(marks); i++)
		if (strstr(libpq_msg, marks[i]))
			return true;
	return false;
}

static void login_failed(struct server *s, const char *sqlstate, const char *msg, bool permanent)
{
	slog(LOG_WARNING, s, "server login failed: %s", msg);
	pool_server_login_failed(s, sqlstate, msg, permanent);
}

/* Trim libpq's multi-line message to its last meaningful line. */
static void libpq_message(PGconn *pg, char *out, size_t len)
{
	const char *m = pg ? PQerrorMessage(pg) : "out of memory";
	snprintf(out, len, "%s", m && *m ? m : "unknown error");
	size_t n = strlen(out);
	while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = 0;
}

/*
 * libpq 15 does not trace the ErrorResponse that ends a failed password
 * exchange, so the SQLSTATE is taken from the trace when it is there and
 * otherwise inferred: a login that failed after the server asked for a
 * password is an authentication failure (28P01).  Clients see the server's
 * message without libpq's "connection to server at ... failed:" prefix,
 * which would reveal the backend's address.
 */
static void login_fail_from_libpq(struct server *s)
{
	char sqlstate[6] = "", msg[512] = "", full[512];
	struct pqtrace_info info;
	trace_stop(s);
	trace_parse(s, &info);
	snprintf(sqlstate, sizeof(sqlstate), "%s", info.sqlstate);
	snprintf(msg, sizeof(msg), "%s", info.message);
	libpq_message(s->pg, full, sizeof(full));
	if (!msg[0]) {
		const char *fatal = strstr(full, "FATAL:  ");
		const char *failed = strstr(full, "failed: ");
		if (fatal)
			snprintf(msg, sizeof(msg), "%s", fatal + 8);
		else if (failed)   /* "connection to server at ... failed: Connection refused\n..." */
			snprintf(msg, sizeof(msg), "could not connect to the server: %.*s",
				 (int)strcspn(failed + 8, "\n"), failed + 8);
		else
			snprintf(msg, sizeof(msg), "%s", full);
	}
	if (!sqlstate[0])
		snprintf(sqlstate, sizeof(sqlstate), "%s",
			 s->pg && PQconnectionUsedPassword(s->pg) && strstr(full, "FATAL:")
				 ? "28P01" : "08006");
	slog(LOG_DEBUG, s, "libpq: %s", full);
	bool from_server = strstr(full, "FATAL:") != NULL;
	login_failed(s, sqlstate, msg,
		     from_server ? permanent_sqlstate(sqlstate) : !unreachable(full));
}

static void notice_ignore(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

/*
 * libpq 15 sets TCP_USER_TIMEOUT only together with keepalives, yet it is
 * what finds a dead path under unacknowledged data whether or not keepalives
 * run: set it on every TCP server socket (the conninfo's own value first).
 */
static void set_user_timeout(struct server *s, int fd)
{
	int ms = server_ctx(s)->cfg->tcp_user_timeout;
	PQconninfoOption *opts = PQconninfo(s->pg);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "tcp_user_timeout") && o->val && o->val[0])
			ms = atoi(o->val);
	PQconninfoFree(opts);
	if (ms > 0 && !s->cancel_unix)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

static void login_ok(struct server *s)
{
	struct sluice *ctx = server_ctx(s);
	int fd = PQsocket(s->pg);

	struct pqtrace_info info;
	trace_stop(s);
	trace_parse(s, &info);
	explicit_bzero(s->trace_buf.data, s->trace_buf.cap);
	pktbuf_free(&s->trace_buf);
	if ((uint32_t)PQbackendPID(s->pg) != s->backend_pid)
		slog(LOG_WARNING, s, "trace pid %u differs from libpq's %d", s->backend_pid,
		     PQbackendPID(s->pg));
	/* Blocking mode would let PQfinish stall the loop (DESIGN.md §5.5). */
	PQsetnonblocking(s->pg, 1);
	PQsetNoticeReceiver(s->pg, notice_ignore, NULL);
	if (PQsslInUse(s->pg)) {
		s->conn.ssl = PQsslStruct(s->pg, "OpenSSL");
		if (s->conn.ssl)
			SSL_set_mode(s->conn.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
					     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	/* Where CancelRequests for this backend must go: the address libpq used. */
	const char *host = PQhost(s->pg), *hostaddr = PQhostaddr(s->pg), *port = PQport(s->pg);
	s->cancel_port = port && port[0] ? atoi(port) : 5432;
	if (host && (host[0] == '/' || host[0] == '@')) {
		char path[512];
		snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", host, s->cancel_port);
		s->cancel_addr = xstrdup(path);
		s->cancel_unix = true;
	} else if (hostaddr && hostaddr[0]) {
		s->cancel_addr = xstrdup(hostaddr);
	} else if (host && host[0]) {
		s->cancel_addr = xstrdup(host);
	}
	set_user_timeout(s, fd);
	uv_poll_t *poll = s->login_poll;
	s->login_poll = NULL;
	conn_adopt_poll(&s->conn, poll, fd, &server_ops, (uint32_t)ctx->cfg->pkt_buf);
	s->tx_status = 'I';
	s->connect_ms = sluice_now(ctx);
	slog(LOG_DEBUG, s, "new server connection (pid %u%s)", s->backend_pid,
	     s->conn.ssl ? ", TLS" : "");
	pool_server_login_done(s);
}

/* Re-arm the poll for what libpq asked, replacing the handle if the socket changed. */
static void login_rearm(struct server *s, int events)
{
	int fd = PQsocket(s->pg);
	if (fd < 0) {
		login_fail_from_libpq(s);
		return;
	}
	if (fd != s->login_fd) {
		uv_loop_t *loop = s->login_poll->loop;
		uv_close((uv_handle_t *)s->login_poll, free_handle_cb);
		s->login_poll = xmalloc(sizeof(*s->login_poll));
		if (uv_poll_init(loop, s->login_poll, fd) < 0) {
			free(s->login_poll);
			s->login_poll = NULL;
			login_failed(s, "08006", "cannot poll the server socket", false);
			return;
		}
		s->login_poll->data = s;
		s->login_fd = fd;
	}
	uv_poll_start(s->login_poll, events, login_poll_cb);
}

static void login_step(struct server *s)
{
	switch (PQconnectPoll(s->pg)) {
	case PGRES_POLLING_READING:
		login_rearm(s, UV_READABLE);
		break;
	case PGRES_POLLING_WRITING:
		login_rearm(s, UV_WRITABLE);
		break;
	case PGRES_POLLING_OK:
		login_ok(s);
		break;
	default:
		login_fail_from_libpq(s);
		break;
	}
}

static void login_poll_cb(uv_poll_t *h, int status, int events)
{
	struct server *s = h->data;
	(void)events;
	(void)status; /* UV_EBADF after a socket swap: libpq still decides */
	uv_poll_stop(h);
	login_step(s);
}

static bool is_true_ip(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void start_connect(struct server *s)
{
	struct pool *p = s->pool;
	const char *kw[MAX_KEYWORDS + 1], *val[MAX_KEYWORDS + 1];
	int n = 0;
	bool have_db = false, have_ssl = false, have_fallback = false, have_pw = false;
	bool have_ka = false;
	char ka[4][16];
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(p->conninfo, &err);

	if (!opts) {
		char msg[512];
		snprintf(msg, sizeof(msg), "invalid conninfo: %s", err ? err : "out of memory");
		PQfreemem(err);
		login_failed(s, "08006", msg, true);
		return;
	}
#define ADD(k, v)                                                              \
	do {                                                                   \
		if (n < MAX_KEYWORDS) {                                        \
			kw[n] = (k);                                           \
			val[n] = (v);                                          \
			n++;                                                   \
		}                                                              \
	} while (0)
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		const char *k = o->keyword;
		if (!o->val || !o->val[0])
			continue;
		/* The pooler owns these (DESIGN.md §5): its own timer, no GSS
		 * encryption, one host per attempt, its own user choice. */
		if (!strcmp(k, "connect_timeout") || !strcmp(k, "gssencmode") ||
		    !strcmp(k, "user") || !strcmp(k, "host") || !strcmp(k, "port") ||
		    (!strcmp(k, "password") && p->password))
			continue;
		if (!strcmp(k, "hostaddr") && s->hostaddr)
			continue;
		have_db |= !strcmp(k, "dbname");
		have_ssl |= !strcmp(k, "sslmode");
		have_fallback |= !strcmp(k, "fallback_application_name");
		have_pw |= !strcmp(k, "password") || !strcmp(k, "passfile");
		have_ka |= !strncmp(k, "keepalives", 10) || !strcmp(k, "tcp_user_timeout");
		ADD(k, o->val);
	}
	if (!have_db)
		ADD("dbname", p->dbname);
	ADD("user", p->user);
	/* Without a configured password, a plain one from auth_file serves
	 * for the backend too (libpq cannot log in with SCRAM keys), and then
	 * server_passfile. */
	const struct config *cfg = p->ctx->cfg;
	const char *pw = p->password;
	if (!pw && !have_pw)
		pw = auth_plain_password(p->ctx, p->user);
	if (pw)
		ADD("password", pw);
	else if (!have_pw && cfg->server_passfile[0]) {
		config_resolve_path(cfg, cfg->server_passfile, s->passfile, sizeof(s->passfile));
		ADD("passfile", s->passfile);
	}
	if (s->host)
		ADD("host", s->host);
	if (s->port)
		ADD("port", s->port);
	if (s->hostaddr)
		ADD("hostaddr", s->hostaddr);
	ADD("gssencmode", "disable");
	/* server_tls_* are the defaults for conninfo strings that say nothing. */
	if (!have_ssl) {
		ADD("sslmode", config_server_sslmode_name(cfg->server_tls_sslmode));
		if (cfg->server_tls_sslmode != SERVER_SSL_DISABLE) {
			char *f[3] = {cfg->server_tls_ca_file, cfg->server_tls_cert_file,
				      cfg->server_tls_key_file};
			const char *k[3] = {"sslrootcert", "sslcert", "sslkey"};
			for (int i = 0; i < 3; i++) {
				if (!f[i][0])
					continue;
				config_resolve_path(cfg, f[i], s->tls_paths[i], sizeof(s->tls_paths[i]));
				ADD(k[i], s->tls_paths[i]);
			}
		}
	}
	if (!have_fallback)
		ADD("fallback_application_name", "sluice");
	/* tcp_keepalive & co. for server sockets, unless the conninfo says. */
	if (!have_ka) {
		const struct config *kc = p->ctx->cfg;
		ADD("keepalives", kc->tcp_keepalive ? "1" : "0");
		int v[4] = {kc->tcp_keepidle, kc->tcp_keepintvl, kc->tcp_keepcnt, kc->tcp_user_timeout};
		const char *k[4] = {"keepalives_idle", "keepalives_interval", "keepalives_count",
				    "tcp_user_timeout"};
		for (int i = 0; i < 4; i++) {
			if (!v[i])
				continue;
			snprintf(ka[i], sizeof(ka[i]), "%d", v[i]);
			ADD(k[i], ka[i]);
		}
	}
#undef ADD
	kw[n] = val[n] = NULL;

	s->pg = PQconnectStartParams(kw, val, 0);
	PQconninfoFree(opts);
	if (!s->pg || PQstatus(s->pg) == CONNECTION_BAD) {
		login_fail_from_libpq(s);
		return;
	}
	static cookie_io_functions_t trace_io = {.write = trace_write};
	s->trace = fopencookie(s, "w", trace_io);
	if (s->trace) {
		setvbuf(s->trace, NULL, _IONBF, 0);
		PQtrace(s->pg, s->trace);
		PQsetTraceFlags(s->pg, PQTRACE_SUPPRESS_TIMESTAMPS);
	}
	s->login_fd = PQsocket(s->pg);
	s->login_poll = xmalloc(sizeof(*s->login_poll));
	if (s->login_fd < 0 || uv_poll_init(server_ctx(s)->loop, s->login_poll, s->login_fd) < 0) {
		free(s->login_poll);
		s->login_poll = NULL;
		login_fail_from_libpq(s);
		return;
	}
	s->login_poll->data = s;
	/* libpq: after PQconnectStart, act as if PGRES_POLLING_WRITING. */
	uv_poll_start(s->login_poll, UV_WRITABLE, login_poll_cb);
}

static void dns_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct server *s = req->data;
	char ip[INET6_ADDRSTRLEN] = "";

	if (res && status == 0) {
		if (res->ai_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
		else
			uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
	}
	uv_freeaddrinfo(res);
	free(req);
	if (!s)
		return; /* the server was closed meanwhile */
	s->dns = NULL;
	if (status < 0 || !ip[0]) {
		char msg[256];
		snprintf(msg, sizeof(msg), "could not resolve host \"%s\": %s", s->host,
			 status < 0 ? uv_strerror(status) : "no address");
		login_failed(s, "08006", msg, false);
		return;
	}
	s->hostaddr = xstrdup(ip);
	start_connect(s);
}

/* First element of a comma-separated libpq list. */
static char *first_of(const char *list)
{
	if (!list || !list[0])
		return NULL;
	const char *comma = strchr(list, ',');
	return comma ? strndup(list, (size_t)(comma - list)) : xstrdup(list);
}

void server_launch(struct pool *pool)
{
	struct sluice *ctx = pool->ctx;
	struct server *s = xcalloc(1, sizeof(*s));
	PQconninfoOption *opts;
	const char *hostaddr = NULL;

	s->id = ++ctx->next_id;
	s->pool = pool;
	s->state = SV_CLOSED;
	list_init(&s->node);
	s->login_fd = -1;
	s->conn.fd = -1;
	ctx->n_servers++;
	s->login_deadline_ms = sluice_now(ctx) + (uint64_t)(ctx->cfg->server_connect_timeout * 1000.0);
	pool_server_set_state(s, SV_LOGIN);

	opts = PQconninfoParse(pool->conninfo, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!strcmp(o->keyword, "host"))
			s->host = first_of(o->val);
		else if (!strcmp(o->keyword, "port"))
			s->port = first_of(o->val);
		else if (!strcmp(o->keyword, "hostaddr") && o->val && o->val[0])
			hostaddr = o->val;
	}
	bool need_dns = !hostaddr && s->host && s->host[0] != '/' && s->host[0] != '@' &&
			!is_true_ip(s->host);
	if (s->host && !hostaddr && is_true_ip(s->host))
		s->hostaddr = xstrdup(s->host);
	PQconninfoFree(opts);

	if (!need_dns) {
		start_connect(s);
		return;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	s->dns = xmalloc(sizeof(*s->dns));
	s->dns->data = s;
	int rc = uv_getaddrinfo(ctx->loop, s->dns, dns_cb, s->host, NULL, &hints);
	if (rc < 0) {
		free(s->dns);
		s->dns = NULL;
		login_failed(s, "08006", uv_strerror(rc), false);
	}
}

void server_cancel_done(struct server *s)
{
	if (s->cancels_inflight > 0)
		s->cancels_inflight--;
	if (s->cancels_inflight == 0 && s->parked) {
		s->parked = false;
		pool_server_ready(s);
	}
}

void server_check_login_timeout(struct server *s, uint64_t now)
{
	if (s->state != SV_LOGIN || now < s->login_deadline_ms)
		return;
	char msg[128];
	snprintf(msg, sizeof(msg), "server_connect_timeout: no connection to the server within %g s",
		 server_ctx(s)->cfg->server_connect_timeout);
	login_failed(s, "08006", msg, false);
}

/* ---- internal queries -------------------------------------------------- */

static void step_begin(struct server *s, enum server_step step)
{
	s->step = step;
	s->step_start_ms = sluice_now(server_ctx(s));
	s->step_done = false;
	free(s->step_error);
	s->step_error = NULL;
	s->step_sqlstate[0] = 0;
	if (step != STEP_SETVARS)
		pool_server_set_state(s, SV_TESTED);
}

/* Responses are read by the step handlers; nothing else is buffered. */
static void step_send(struct server *s)
{
	s->conn.stopped = false;
	s->conn.notify_flushed = false;
	conn_send_out(&s->conn);
}

static void start_query(struct server *s, enum server_step step, const char *sql)
{
	step_begin(s, step);
	pktbuf_write_Query(&s->conn.out, sql);
	step_send(s);
}

/*
 * auth_query through the extended protocol, the user name bound as $1 (never
 * spliced into SQL): Parse, Bind, Execute, Sync on the unnamed statement.
 */
void server_start_auth_query(struct server *s, struct client *c)
{
	struct pktbuf *out = &s->conn.out;
	const char *user = c->username;

	step_begin(s, STEP_AUTH_QUERY);
	s->auth_client = c;
	c->auth_server = s;
	pktbuf_start(out, PQ_MSG_PARSE);
	pktbuf_put_string(out, "");
	pktbuf_put_string(out, server_ctx(s)->cfg->auth_query);
	pktbuf_put_int16(out, 0);
	pktbuf_finish(out);
	pktbuf_start(out, PQ_MSG_BIND);
	pktbuf_put_string(out, "");
	pktbuf_put_string(out, "");
	pktbuf_put_int16(out, 0);                  /* parameters in text */
	pktbuf_put_int16(out, 1);
	pktbuf_put_int32(out, (uint32_t)strlen(user));
	pktbuf_put_bytes(out, user, strlen(user));
	pktbuf_put_int16(out, 0);                  /* results in text */
	pktbuf_finish(out);
	pktbuf_start(out, PQ_MSG_EXECUTE);
	pktbuf_put_string(out, "");
	pktbuf_put_int32(out, 0);
	pktbuf_finish(out);
	pktbuf_start(out, PQ_MSG_SYNC);
	pktbuf_finish(out);
	step_send(s);
}

/* The second column of the first DataRow of auth_query: the secret. */
static void auth_row(struct server *s, const uint8_t *body, uint32_t len)
{
	uint32_t pos = 2;
	if (s->auth_secret || len < 2 || proto_get16(body) < 2)
		return;
	for (int col = 0; col < 2; col++) {
		if (pos + 4 > len)
			return;
		int32_t n = (int32_t)proto_get32(body + pos);
		pos += 4;
		if (n < 0) {
			if (col == 1)
				return;   /* NULL secret: expired or no password */
			continue;
		}
		if ((uint32_t)n > len - pos)
			return;
		if (col == 1)
			s->auth_secret = strndup((const char *)body + pos, (size_t)n);
		pos += (uint32_t)n;
	}
}

void server_start_check(struct server *s)
{
	start_query(s, STEP_CHECK, server_ctx(s)->cfg->server_check_query);
}

void server_start_step(struct server *s, enum server_step step)
{
	if (step == STEP_RESET)
		prep_server_forget(s);   /* DISCARD ALL drops the prepared statements */
	const char *q = step == STEP_ROLLBACK ? "ROLLBACK" : pool_reset_query(s->pool);
	if (!q) {
		pool_server_ready(s);
		return;
	}
	start_query(s, step, q);
}

bool server_prepare_for_client(struct server *s)
{
	const struct config *cfg = server_ctx(s)->cfg;
	/* Usually the server already has the client's settings. */
	if (vars_signature(&s->client->vars, cfg) == vars_signature(&s->vars, cfg))
		return false;
	struct pktbuf sql;
	pktbuf_init(&sql);
	int n = vars_build_set(&s->client->vars, &s->vars, &sql);
	if (n > 0) {
		pktbuf_put_byte(&sql, 0);
		slog(LOG_DEBUG, s, "applying %d client setting(s)", n);
		start_query(s, STEP_SETVARS, (const char *)sql.data);
	}
	pktbuf_free(&sql);
	return n > 0;
}

static void step_finished(struct server *s)
{
	enum server_step step = s->step;
	char *err = s->step_error;
	struct client *c = s->client;

	s->step = STEP_NONE;
	s->step_error = NULL;
	/* The step stopped the server's input (PKT_SKIP_STOP); reopen it. */
	conn_resume(&s->conn);
	if (s->conn.closing) {
		free(err);
		return;
	}
	switch (step) {
	case STEP_SETVARS:
		if (err && c)
			client_fail(c, s->step_sqlstate[0] ? s->step_sqlstate : "08P01",
				    "could not apply client settings: %s", err);
		else if (c)
			conn_resume(&c->conn);
		break;
	case STEP_ROLLBACK:
		if (err)
			server_close(s, "ROLLBACK failed");
		else
			server_start_step(s, STEP_RESET);
		break;
	case STEP_RESET:
		if (err) {
			slog(LOG_WARNING, s, "server_reset_query failed: %s", err);
			server_close(s, "server_reset_query failed");
		} else {
			pool_server_ready(s);
		}
		break;
	case STEP_AUTH_QUERY: {
		struct client *ac = s->auth_client;
		char *secret = s->auth_secret;
		s->auth_client = NULL;
		s->auth_secret = NULL;
		if (ac) {
			ac->auth_server = NULL;
			ac->auth_pool = NULL;
			auth_lookup_done(ac, err, secret);
		}
		if (secret) {
			explicit_bzero(secret, strlen(secret));
			free(secret);
		}
		pool_server_ready(s);
		break;
	}
	case STEP_CHECK:
		if (err) {
			slog(LOG_WARNING, s, "server_check_query failed: %s", err);
			server_close(s, "server_check_query failed");
		} else {
			pool_server_ready(s);
		}
		break;
	case STEP_NONE:
		break;
	}
	free(err);
}

/* Responses to an internal query are consumed here, never relayed. */
static enum pkt_action step_packet(struct server *s, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	const char *name, *value;
	struct proto_error e;

	switch (type) {
	case PQ_MSG_ERROR_RESPONSE:
		if (avail < len)
			return PKT_NEED_BODY;
		if (!s->step_error && proto_parse_error(body, len, &e)) {
			s->step_error = xstrdup(e.message);
			snprintf(s->step_sqlstate, sizeof(s->step_sqlstate), "%s", e.sqlstate);
		}
		return PKT_SKIP;
	case PQ_MSG_PARAMETER_STATUS:
		if (avail < len)
			return PKT_NEED_BODY;
		if (proto_parse_param_status(body, len, &name, &value)) {
			vars_set(&s->vars, name, value);
			if (s->client && vars_tracked_name(server_ctx(s)->cfg, name))
				vars_set(&s->client->vars, name, value);
		}
		return PKT_SKIP;
	case PQ_MSG_READY_FOR_QUERY:
		if (avail < len)
			return PKT_NEED_BODY;
		s->tx_status = len == 1 ? (char)body[0] : 'E';
		s->step_done = true;
		return PKT_SKIP_STOP;
	case PQ_MSG_DATA_ROW:
		if (s->step != STEP_AUTH_QUERY)
			return PKT_SKIP;
		if (avail < len)
			return PKT_NEED_BODY;
		auth_row(s, body, len);
		return PKT_SKIP;
	default:
		return PKT_SKIP;
	}
}

/* ---- relay -------------------------------------------------------------- */

/* An unlinked server may report settings or notices; anything else is wrong. */
static enum pkt_action idle_packet(struct server *s, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	const char *name, *value;

	switch (type) {
	case PQ_MSG_PARAMETER_STATUS:
		if (avail < len)
			return PKT_NEED_BODY;
		if (proto_parse_param_status(body, len, &name, &value))
			vars_set(&s->vars, name, value);
		return PKT_SKIP;
	case PQ_MSG_NOTICE_RESPONSE:
	case PQ_MSG_NOTIFICATION:
		return PKT_SKIP;
	default:
		if (type == PQ_MSG_ERROR_RESPONSE)
			pool_server_lost(s->pool);   /* e.g. the database shutting down */
		server_close(s, type == PQ_MSG_ERROR_RESPONSE ? "error from idle server"
							      : "unexpected message from idle server");
		return PKT_CLOSED;
	}
}

/* One query answered; a transaction ended when the server is idle again. */
static void count_query(struct server *s, char status)
{
	struct pool_stats *st = &s->pool->stats;
	uint64_t now = stats_now_us();
	uint64_t q = now - s->query_start_us;

	st->total.query_count++;
	st->total.query_time += q;
	stats_latency_add(&st->lat, LAT_QUERY, q);
	if (status == 'I') {
		uint64_t x = now - s->xact_start_us;
		st->total.xact_count++;
		st->total.xact_time += x;
		stats_latency_add(&st->lat, LAT_XACT, x);
		s->xact_start_us = now;
	}
	s->query_start_us = now;   /* the next pipelined query runs from here */
}

static enum pkt_action ready_for_query(struct server *s, char status)
{
	count_query(s, status);
	if (s->tx_status == 'I' && status != 'I')
		s->xact_start_ms = s->query_start_ms;   /* the transaction began with that query */
	s->tx_status = status;
	if (s->pending_rfq > 0)
		s->pending_rfq--;
	if (unlikely(s->wake_client) && s->pending_rfq == 0)
		return PKT_FORWARD_STOP;   /* the client fails next (server_on_flushed) */
	if (s->pending_rfq > 0 || s->ext_pending)
		return PKT_FORWARD;
	if (status != 'I')
		s->idle_tx_since_ms = sluice_now(server_ctx(s));
	switch (s->pool->pool_mode) {
	case POOL_MODE_TRANSACTION:
		break;
	case POOL_MODE_STATEMENT:
		if (status != 'I') {
			s->fail_client = true;
			return PKT_SKIP_STOP;
		}
		break;
	default:
		return PKT_FORWARD;
	}
	if (status != 'I')
		return PKT_FORWARD;
	s->release_pending = true;
	return PKT_FORWARD_STOP;
}

static enum pkt_action server_on_packet(struct conn *c, uint8_t type, uint32_t len,
					const uint8_t *body, uint32_t avail)
{
	struct server *s = container_of(c, struct server, conn);
	const char *name, *value;

	if (s->step != STEP_NONE)
		return step_packet(s, type, len, body, avail);
	if (!s->client)
		return idle_packet(s, type, len, body, avail);

	if (unlikely(s->prep != NULL)) {
		if (avail < len && (type == PQ_MSG_READY_FOR_QUERY || type == PQ_MSG_PARAMETER_STATUS ||
				    avail < prep_server_needs(s, type, len)))
			return PKT_NEED_BODY;
		if (prep_server_packet(s, type, len, body, avail) == PKT_SKIP)
			return PKT_SKIP;
	}

	switch (type) {
	case PQ_MSG_READY_FOR_QUERY:
		if (avail < len)
			return PKT_NEED_BODY;
		return ready_for_query(s, len == 1 ? (char)body[0] : 'E');
	case PQ_MSG_PARAMETER_STATUS:
		if (avail < len)
			return PKT_NEED_BODY;
		if (proto_parse_param_status(body, len, &name, &value)) {
			vars_set(&s->vars, name, value);
			if (vars_tracked_name(server_ctx(s)->cfg, name))
				vars_set(&s->client->vars, name, value);
		}
		return PKT_FORWARD;
	default:
		return PKT_FORWARD;
	}
}

/* Continuations that must run outside the message loop (see conn.h). */
static void server_on_flushed(struct conn *c)
{
	struct server *s = container_of(c, struct server, conn);
	struct client *cl = s->client;

	if (s->step_done) {
		s->step_done = false;
		step_finished(s);
		return;
	}
	if (s->wake_client) {
		/* Every answer is out: the client now reads its invalid message. */
		s->wake_client = false;
		conn_resume(&s->conn);
		if (cl && !s->conn.closing)
			conn_resume(&cl->conn);
		return;
	}
	if (s->fail_client) {
		s->fail_client = false;
		if (cl)
			client_fail(cl, "08P01",
				    "transaction blocks not allowed in statement pooling mode");
		return;
	}
	if (s->release_pending && cl) {
		pool_unlink(cl, s);
		pool_server_set_state(s, SV_USED);
		if (pool_reset_query(s->pool))
			server_start_step(s, STEP_RESET);
		else
			pool_server_ready(s);
		conn_resume(&cl->conn);
	}
}

static void server_on_error(struct conn *c, const char *reason)
{
	struct server *s = container_of(c, struct server, conn);
	pool_server_lost(s->pool);
	server_close(s, strcmp(reason, "EOF") == 0 ? "server closed the connection" : reason);
}

static const struct conn_ops server_ops = {
	.on_packet = server_on_packet,
	.on_flushed = server_on_flushed,
	.on_error = server_on_error,
	.on_closed = server_on_closed,
};
