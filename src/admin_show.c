/*
 * admin_show.c - the SHOW commands of the admin console.
 *
 * Column names, order and types follow PgBouncer 1.25, so its exporters
 * and dashboards read Sluice unchanged: `i` columns are int4, `q` int8,
 * `N` numeric, and PgBouncer's timestamp columns are text formatted as
 * "YYYY-MM-DD HH:MM:SS TZ" in local time.  Every count is a list length
 * (pool.h), read when the command runs.  SHOW LATENCY is Sluice's own.
 *
 * Owns nothing: each function reads the context and appends rows to an
 * admin_reply.
 */
#include "sluice/admin.h"
#include "sluice/authfile.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/pool.h"
#include "sluice/prepare.h"
#include "sluice/proto.h"
#include "sluice/server.h"
#include "sluice/sluice.h"
#include "sluice/stats.h"
#include "sluice/tls.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define ADMIN_VERSION "Sluice " SLUICE_VERSION

const char admin_help_text[] =
	"\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
	"\tSHOW SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n"
	"\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|LATENCY\n"
	"\tSET key = arg\n"
	"\tRELOAD\n"
	"\tPAUSE [<db>]\n"
	"\tRESUME [<db>]\n"
	"\tDISABLE <db>\n"
	"\tENABLE <db>\n"
	"\tRECONNECT [<db>]\n"
	"\tKILL [<db>]\n"
	"\tKILL_CLIENT <client_id>\n"
	"\tSHUTDOWN\n"
	"\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
	"\tWAIT_CLOSE [<db>]";

/* ---- result set builder --------------------------------------------------- */

void admin_reply_init(struct admin_reply *r)
{
	memset(r, 0, sizeof(*r));
	pktbuf_init(&r->desc);
	pktbuf_init(&r->rows);
	pktbuf_init(&r->notices);
}

void admin_reply_free(struct admin_reply *r)
{
	pktbuf_free(&r->desc);
	pktbuf_free(&r->rows);
	pktbuf_free(&r->notices);
}

void admin_columns(struct admin_reply *r, const struct admin_col *cols, int n)
{
	pktbuf_start(&r->desc, PQ_MSG_ROW_DESCRIPTION);
	pktbuf_put_int16(&r->desc, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		int16_t len = cols[i].type == ADMIN_INT4 ? 4 : cols[i].type == ADMIN_INT8 ? 8 : -1;
		pktbuf_put_string(&r->desc, cols[i].name);
		pktbuf_put_int32(&r->desc, 0);          /* table */
		pktbuf_put_int16(&r->desc, 0);          /* column */
		pktbuf_put_int32(&r->desc, (uint32_t)cols[i].type);
		pktbuf_put_int16(&r->desc, (uint16_t)len);
		pktbuf_put_int32(&r->desc, (uint32_t)-1); /* typmod */
		pktbuf_put_int16(&r->desc, 0);          /* text format */
	}
	pktbuf_finish(&r->desc);
	r->ncols = n;
	snprintf(r->tag, sizeof(r->tag), "SHOW");
}

void admin_row_begin(struct admin_reply *r)
{
	pktbuf_start(&r->rows, PQ_MSG_DATA_ROW);
	pktbuf_put_int16(&r->rows, (uint16_t)r->ncols);
	r->row_cols = 0;
}

void admin_val_text(struct admin_reply *r, const char *s)
{
	r->row_cols++;
	if (!s) {
		pktbuf_put_int32(&r->rows, (uint32_t)-1);
		return;
	}
	size_t n = strlen(s);
	pktbuf_put_int32(&r->rows, (uint32_t)n);
	pktbuf_put_bytes(&r->rows, s, n);
}

void admin_val_int(struct admin_reply *r, long long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", v);
	admin_val_text(r, buf);
}

void admin_val_uint(struct admin_reply *r, unsigned long long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%llu", v);
	admin_val_text(r, buf);
}

void admin_row_end(struct admin_reply *r)
{
	if (r->row_cols != r->ncols) {
		/* A bug in a SHOW function: a row with the wrong width would
		 * desynchronise every client that reads it. */
		fprintf(stderr, "admin: row with %d values for %d columns\n", r->row_cols, r->ncols);
		abort();
	}
	pktbuf_finish(&r->rows);
	r->nrows++;
}

void admin_notice(struct admin_reply *r, const char *msg, const char *detail)
{
	pktbuf_write_Report(&r->notices, PQ_MSG_NOTICE_RESPONSE, "NOTICE", "00000", msg, detail);
}

#define COLS(r, a) admin_columns((r), (a), (int)ARRAY_SIZE(a))

/* ---- helpers ---------------------------------------------------------------- */

static void format_time(const struct sluice *ctx, uint64_t loop_ms, char *buf, size_t len)
{
	time_t t = (time_t)(sluice_wall_ms(ctx, loop_ms) / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm);
}

static void addr_of(const struct sockaddr *ss, char *ip, size_t iplen, int *port)
{
	if (ss->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)iplen);
		*port = ntohs(in->sin_port);
	} else if (ss->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)iplen);
		*port = ntohs(in6->sin6_port);
	} else {
		snprintf(ip, iplen, "unix");
		*port = 0;
	}
}

static void local_addr_of(int fd, bool is_unix, int listen_port, char *ip, size_t iplen, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (is_unix || fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		ss.ss_family = AF_UNIX;
	addr_of((const struct sockaddr *)&ss, ip, iplen, port);
	if (ss.ss_family == AF_UNIX)
		*port = listen_port;
}

static void tls_info(SSL *ssl, char *buf, size_t len)
{
	if (!ssl) {
		buf[0] = 0;
		return;
	}
	snprintf(buf, len, "%s/%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_pool(const void *a, const void *b)
{
	const struct pool *x = *(const struct pool *const *)a, *y = *(const struct pool *const *)b;
	int c = strcmp(x->dbname, y->dbname);
	return c ? c : strcmp(x->user, y->user);
}

/* The pools sorted by database, then user (PgBouncer's order); free the array. */
static const struct pool **sorted_pools(const struct sluice *ctx, int *n)
{
	const struct list *it;
	int count = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next)
		count++;
	const struct pool **v = xmalloc(sizeof(*v) * (size_t)(count ? count : 1));
	count = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next)
		v[count++] = container_of(it, struct pool, node);
	qsort(v, (size_t)count, sizeof(*v), cmp_pool);
	*n = count;
	return v;
}

/* ---- SHOW POOLS --------------------------------------------------------------- */

static void show_pools(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {
		{"database", ADMIN_TEXT}, {"user", ADMIN_TEXT}, {"cl_active", ADMIN_INT4},
		{"cl_waiting", ADMIN_INT4}, {"cl_active_cancel_req", ADMIN_INT4},
		{"cl_waiting_cancel_req", ADMIN_INT4}, {"sv_active", ADMIN_INT4},
		{"sv_active_cancel", ADMIN_INT4}, {"sv_being_canceled", ADMIN_INT4},
		{"sv_idle", ADMIN_INT4}, {"sv_used", ADMIN_INT4}, {"sv_tested", ADMIN_INT4},
		{"sv_login", ADMIN_INT4}, {"maxwait", ADMIN_INT4}, {"maxwait_us", ADMIN_INT4},
		{"pool_mode", ADMIN_TEXT}, {"load_balance_hosts", ADMIN_TEXT},
	};
	uint64_t now = stats_now_us();
	int n;
	const struct pool **v = sorted_pools(ctx, &n);

	COLS(r, cols);
	for (int i = 0; i < n; i++) {
		const struct pool *p = v[i];
		const struct list *first = statlist_first(&p->cl_waiting);
		uint64_t wait = 0;
		if (first) {
			const struct client *c = container_of(first, struct client, node);
			wait = c->wait_start_us ? now - c->wait_start_us : 0;
		}
		int parked = pool_parked_servers(p);
		admin_row_begin(r);
		admin_val_text(r, p->dbname);
		admin_val_text(r, p->user);
		/* CL_LOGIN_WAIT clients wait too (PgBouncer's waiting list holds them). */
		admin_val_int(r, statlist_count(&p->cl_active));
		admin_val_int(r, statlist_count(&p->cl_waiting) + statlist_count(&p->cl_login));
		admin_val_int(r, 0);
		admin_val_int(r, 0);
		admin_val_int(r, statlist_count(&p->sv_active));
		admin_val_int(r, 0);
		admin_val_int(r, parked);
		admin_val_int(r, statlist_count(&p->sv_idle));
		admin_val_int(r, statlist_count(&p->sv_used) - parked);
		admin_val_int(r, statlist_count(&p->sv_tested));
		admin_val_int(r, statlist_count(&p->sv_login));
		admin_val_int(r, (long long)(wait / 1000000));
		admin_val_int(r, (long long)(wait % 1000000));
		admin_val_text(r, config_pool_mode_name(p->pool_mode));
		admin_val_text(r, p->conninfo && strchr(p->conninfo, ',') ? "disable" : NULL);
		admin_row_end(r);
	}
	free(v);
}

/* ---- SHOW CLIENTS / SERVERS / SOCKETS ------------------------------------------- */

static const struct admin_col socket_cols[] = {
	{"type", ADMIN_TEXT}, {"user", ADMIN_TEXT}, {"database", ADMIN_TEXT},
	{"replication", ADMIN_TEXT}, {"state", ADMIN_TEXT}, {"addr", ADMIN_TEXT},
	{"port", ADMIN_INT4}, {"local_addr", ADMIN_TEXT}, {"local_port", ADMIN_INT4},
	{"connect_time", ADMIN_TEXT}, {"request_time", ADMIN_TEXT}, {"wait", ADMIN_INT4},
	{"wait_us", ADMIN_INT4}, {"close_needed", ADMIN_INT4}, {"ptr", ADMIN_TEXT},
	{"link", ADMIN_TEXT}, {"remote_pid", ADMIN_INT4}, {"tls", ADMIN_TEXT},
	{"application_name", ADMIN_TEXT}, {"prepared_statements", ADMIN_INT4}, {"id", ADMIN_INT8},
	/* SHOW SOCKETS adds the buffer columns */
	{"recv_pos", ADMIN_INT4}, {"pkt_pos", ADMIN_INT4}, {"pkt_remain", ADMIN_INT4},
	{"send_pos", ADMIN_INT4}, {"send_remain", ADMIN_INT4}, {"pkt_avail", ADMIN_INT4},
	{"send_avail", ADMIN_INT4},
};
#define SOCKET_STD_COLS 21

/* What kind of listing a row goes to. */
enum sock_listing {
	LIST_STD,     /* SHOW CLIENTS / SERVERS */
	LIST_ALL,     /* SHOW SOCKETS */
	LIST_ACTIVE,  /* SHOW ACTIVE_SOCKETS: only sockets with buffered data */
};

static bool conn_buffered(const struct conn *c)
{
	return c->end != c->sent || pktbuf_pending(&c->out) > 0;
}

static void socket_buffers(struct admin_reply *r, const struct conn *c)
{
	admin_val_int(r, c->end);
	admin_val_int(r, c->scan);
	admin_val_int(r, c->remaining);
	admin_val_int(r, c->sent);
	admin_val_int(r, 0);
	admin_val_int(r, c->end - c->scan);
	admin_val_int(r, (long long)(c->scan - c->sent + pktbuf_pending(&c->out)));
}

static void client_row(struct sluice *ctx, struct admin_reply *r, const struct client *c,
		       const char *state, enum sock_listing how)
{
	char ip[INET6_ADDRSTRLEN + 8], lip[INET6_ADDRSTRLEN + 8], ct[64], rt[64], ptr[32],
		link[32], tls[128];
	int port, lport;
	uint64_t wait = c->wait_start_us ? stats_now_us() - c->wait_start_us : 0;
	const char *app = vars_get(&c->vars, "application_name");

	if (how == LIST_ACTIVE && !conn_buffered(&c->conn))
		return;
	addr_of(&c->peer.sa, ip, sizeof(ip), &port);
	if (c->is_unix)
		port = ctx->cfg->listen_port;
	local_addr_of(c->conn.fd, c->is_unix, ctx->cfg->listen_port, lip, sizeof(lip), &lport);
	format_time(ctx, c->connect_ms, ct, sizeof(ct));
	format_time(ctx, c->last_activity_ms, rt, sizeof(rt));
	snprintf(ptr, sizeof(ptr), "%p", (const void *)c);
	if (c->server)
		snprintf(link, sizeof(link), "%p", (const void *)c->server);
	else
		link[0] = 0;
	tls_info(c->conn.ssl, tls, sizeof(tls));

	admin_row_begin(r);
	admin_val_text(r, "C");
	admin_val_text(r, c->username ? c->username : "(nouser)");
	admin_val_text(r, c->dbname ? c->dbname : "(nodb)");
	admin_val_text(r, "none");
	admin_val_text(r, state);
	admin_val_text(r, ip);
	admin_val_int(r, port);
	admin_val_text(r, lip);
	admin_val_int(r, lport);
	admin_val_text(r, ct);
	admin_val_text(r, rt);
	admin_val_int(r, (long long)(wait / 1000000));
	admin_val_int(r, (long long)(wait % 1000000));
	admin_val_int(r, 0);
	admin_val_text(r, ptr);
	admin_val_text(r, link);
	admin_val_int(r, 0);
	admin_val_text(r, tls);
	admin_val_text(r, app ? app : "");
	admin_val_int(r, prep_client_count(c));
	admin_val_uint(r, c->id);
	if (how != LIST_STD)
		socket_buffers(r, &c->conn);
	admin_row_end(r);
}

static void server_row(struct sluice *ctx, struct admin_reply *r, const struct server *s,
		       const char *state, enum sock_listing how)
{
	char lip[INET6_ADDRSTRLEN + 8], ct[64], rt[64], ptr[32], link[32], tls[128];
	int lport;
	const char *app = s->client ? vars_get(&s->client->vars, "application_name") : NULL;

	if (how == LIST_ACTIVE && !conn_buffered(&s->conn))
		return;
	local_addr_of(s->conn.poll ? s->conn.fd : s->login_fd, s->cancel_unix, 0, lip,
		      sizeof(lip), &lport);
	format_time(ctx, s->connect_ms, ct, sizeof(ct));
	format_time(ctx, s->last_used_ms ? s->last_used_ms : s->connect_ms, rt, sizeof(rt));
	snprintf(ptr, sizeof(ptr), "%p", (const void *)s);
	if (s->client)
		snprintf(link, sizeof(link), "%p", (const void *)s->client);
	else
		link[0] = 0;
	tls_info(s->conn.ssl, tls, sizeof(tls));

	admin_row_begin(r);
	admin_val_text(r, "S");
	admin_val_text(r, s->pool->user);
	admin_val_text(r, s->pool->dbname);
	admin_val_text(r, "none");
	admin_val_text(r, state);
	admin_val_text(r, s->cancel_unix ? "unix" : s->cancel_addr ? s->cancel_addr : "");
	admin_val_int(r, s->cancel_port);
	admin_val_text(r, lip);
	admin_val_int(r, lport);
	admin_val_text(r, ct);
	admin_val_text(r, rt);
	admin_val_int(r, 0);
	admin_val_int(r, 0);
	admin_val_int(r, s->close_needed);
	admin_val_text(r, ptr);
	admin_val_text(r, link);
	admin_val_int(r, (long long)s->backend_pid);
	admin_val_text(r, tls);
	admin_val_text(r, app ? app : "");
	admin_val_int(r, prep_server_count(s));
	admin_val_uint(r, s->id);
	if (how != LIST_STD)
		socket_buffers(r, &s->conn);
	admin_row_end(r);
}

static void client_list_rows(struct sluice *ctx, struct admin_reply *r, const struct statlist *l,
			     const char *label, enum sock_listing how)
{
	const struct list *it;
	for (it = l->head.next; it != &l->head; it = it->next) {
		const struct client *c = container_of(it, struct client, node);
		const char *state = label;
		/* PgBouncer 1.25: an active client without a server is idle. */
		if (how == LIST_STD && strcmp(label, "active") == 0 && !c->server)
			state = "idle";
		client_row(ctx, r, c, state, how);
	}
}

static void server_list_rows(struct sluice *ctx, struct admin_reply *r, const struct statlist *l,
			     const char *label, enum sock_listing how)
{
	const struct list *it;
	for (it = l->head.next; it != &l->head; it = it->next) {
		const struct server *s = container_of(it, struct server, node);
		const char *state = label;
		if (how == LIST_STD && s->parked)
			state = "being_canceled";
		server_row(ctx, r, s, state, how);
	}
}

static void show_clients(struct sluice *ctx, struct admin_reply *r)
{
	int n;
	const struct pool **v = sorted_pools(ctx, &n);
	admin_columns(r, socket_cols, SOCKET_STD_COLS);
	for (int i = 0; i < n; i++) {
		client_list_rows(ctx, r, &v[i]->cl_active, "active", LIST_STD);
		client_list_rows(ctx, r, &v[i]->cl_waiting, "waiting", LIST_STD);
		client_list_rows(ctx, r, &v[i]->cl_login, "waiting", LIST_STD);
	}
	free(v);
}

static void show_servers(struct sluice *ctx, struct admin_reply *r)
{
	int n;
	const struct pool **v = sorted_pools(ctx, &n);
	admin_columns(r, socket_cols, SOCKET_STD_COLS);
	for (int i = 0; i < n; i++) {
		server_list_rows(ctx, r, &v[i]->sv_active, "active", LIST_STD);
		server_list_rows(ctx, r, &v[i]->sv_idle, "idle", LIST_STD);
		server_list_rows(ctx, r, &v[i]->sv_used, "used", LIST_STD);
		server_list_rows(ctx, r, &v[i]->sv_tested, "tested", LIST_STD);
		server_list_rows(ctx, r, &v[i]->sv_login, "new", LIST_STD);
	}
	free(v);
}

static void show_sockets(struct sluice *ctx, struct admin_reply *r, enum sock_listing how)
{
	int n;
	const struct pool **v = sorted_pools(ctx, &n);
	COLS(r, socket_cols);
	for (int i = 0; i < n; i++) {
		client_list_rows(ctx, r, &v[i]->cl_active, "cl_active", how);
		client_list_rows(ctx, r, &v[i]->cl_waiting, "cl_waiting", how);
		client_list_rows(ctx, r, &v[i]->cl_login, "cl_waiting", how);
		server_list_rows(ctx, r, &v[i]->sv_active, "sv_active", how);
		server_list_rows(ctx, r, &v[i]->sv_idle, "sv_idle", how);
		server_list_rows(ctx, r, &v[i]->sv_used, "sv_used", how);
		server_list_rows(ctx, r, &v[i]->sv_tested, "sv_tested", how);
		server_list_rows(ctx, r, &v[i]->sv_login, "sv_login", how);
	}
	free(v);
	client_list_rows(ctx, r, &ctx->login_clients, "cl_login", how);
}

/* ---- SHOW STATS family ------------------------------------------------------------ */

/* Database names that have pools, sorted; free the array (not the names). */
static const char **pool_db_names(const struct sluice *ctx, int *n)
{
	const struct list *it;
	int count = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next)
		count++;
	const char **v = xmalloc(sizeof(*v) * (size_t)(count ? count : 1));
	count = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		if (pool_first_of_db(ctx, p))
			v[count++] = p->dbname;
	}
	qsort(v, (size_t)count, sizeof(*v), cmp_str);
	*n = count;
	return v;
}

/* The counters in SHOW STATS order (PgBouncer's, not STATS_COUNTERS'). */
static void stats_values(const struct stats_counters *s, uint64_t out[11])
{
	const uint64_t v[11] = {s->server_assignment_count, s->xact_count, s->query_count,
				s->received, s->sent, s->xact_time, s->query_time, s->wait_time,
				s->client_parse_count, s->server_parse_count, s->bind_count};
	memcpy(out, v, sizeof(v));
}

static void averages_of(const struct sluice *ctx, const struct stats_counters *period,
			struct stats_counters *avg)
{
	struct stats_averages a;
	stats_averages(period, ctx->stats_last_period_s, &a);
	memcpy(avg, &a, sizeof(*avg));
}

enum stats_part { STATS_BOTH, STATS_TOTALS_ONLY, STATS_AVERAGES_ONLY };

static void show_stats(struct sluice *ctx, struct admin_reply *r, enum stats_part part)
{
	static const struct admin_col both[] = {
		{"database", ADMIN_TEXT}, {"total_server_assignment_count", ADMIN_NUMERIC},
		{"total_xact_count", ADMIN_NUMERIC}, {"total_query_count", ADMIN_NUMERIC},
		{"total_received", ADMIN_NUMERIC}, {"total_sent", ADMIN_NUMERIC},
		{"total_xact_time", ADMIN_NUMERIC}, {"total_query_time", ADMIN_NUMERIC},
		{"total_wait_time", ADMIN_NUMERIC}, {"total_client_parse_count", ADMIN_NUMERIC},
		{"total_server_parse_count", ADMIN_NUMERIC}, {"total_bind_count", ADMIN_NUMERIC},
		{"avg_server_assignment_count", ADMIN_NUMERIC}, {"avg_xact_count", ADMIN_NUMERIC},
		{"avg_query_count", ADMIN_NUMERIC}, {"avg_recv", ADMIN_NUMERIC},
		{"avg_sent", ADMIN_NUMERIC}, {"avg_xact_time", ADMIN_NUMERIC},
		{"avg_query_time", ADMIN_NUMERIC}, {"avg_wait_time", ADMIN_NUMERIC},
		{"avg_client_parse_count", ADMIN_NUMERIC}, {"avg_server_parse_count", ADMIN_NUMERIC},
		{"avg_bind_count", ADMIN_NUMERIC},
	};
	static const struct admin_col totals[] = {
		{"database", ADMIN_TEXT}, {"server_assignment_count", ADMIN_NUMERIC},
		{"xact_count", ADMIN_NUMERIC}, {"query_count", ADMIN_NUMERIC},
		{"bytes_received", ADMIN_NUMERIC}, {"bytes_sent", ADMIN_NUMERIC},
		{"xact_time", ADMIN_NUMERIC}, {"query_time", ADMIN_NUMERIC},
		{"wait_time", ADMIN_NUMERIC}, {"client_parse_count", ADMIN_NUMERIC},
		{"server_parse_count", ADMIN_NUMERIC}, {"bind_count", ADMIN_NUMERIC},
	};
	static const struct admin_col averages[] = {
		{"database", ADMIN_TEXT}, {"server_assignment_count", ADMIN_NUMERIC},
		{"xact_count", ADMIN_NUMERIC}, {"query_count", ADMIN_NUMERIC},
		{"bytes_received", ADMIN_NUMERIC}, {"bytes_sent", ADMIN_NUMERIC},
		{"xact_time", ADMIN_NUMERIC}, {"query_time", ADMIN_NUMERIC},
		{"wait_time", ADMIN_NUMERIC}, {"avg_client_parse_count", ADMIN_NUMERIC},
		{"avg_server_parse_count", ADMIN_NUMERIC}, {"avg_bind_count", ADMIN_NUMERIC},
	};
	int n;
	const char **dbs = pool_db_names(ctx, &n);

	if (part == STATS_BOTH)
		COLS(r, both);
	else if (part == STATS_TOTALS_ONLY)
		COLS(r, totals);
	else
		COLS(r, averages);
	for (int i = 0; i < n; i++) {
		struct stats_counters total, period, avg;
		uint64_t t[11], a[11];
		pool_stats_db(ctx, dbs[i], &total, &period);
		averages_of(ctx, &period, &avg);
		stats_values(&total, t);
		stats_values(&avg, a);
		admin_row_begin(r);
		admin_val_text(r, dbs[i]);
		for (int k = 0; part != STATS_AVERAGES_ONLY && k < 11; k++)
			admin_val_uint(r, t[k]);
		for (int k = 0; part != STATS_TOTALS_ONLY && k < 11; k++)
			admin_val_uint(r, a[k]);
		admin_row_end(r);
	}
	free(dbs);
}

static void show_totals(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {{"name", ADMIN_TEXT}, {"value", ADMIN_NUMERIC}};
	static const char *const names[11] = {
		"server_assignment_count", "xact_count", "query_count", "client_bytes",
		"server_bytes", "xact_time", "query_time", "wait_time", "ps_client_parse_count",
		"ps_server_parse_count", "ps_bind_count",
	};
	struct stats_counters total, period, avg;
	const struct list *it;
	uint64_t t[11], a[11];
	char name[64];

	memset(&total, 0, sizeof(total));
	memset(&period, 0, sizeof(period));
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		struct stats_counters cur;
		pool_stats_current(p, &cur);
		stats_counters_add(&total, &cur);
		stats_counters_add(&period, &p->stats.period);
	}
	averages_of(ctx, &period, &avg);
	stats_values(&total, t);
	stats_values(&avg, a);
	COLS(r, cols);
	for (int half = 0; half < 2; half++)
		for (int k = 0; k < 11; k++) {
			snprintf(name, sizeof(name), "%s_%s", half ? "avg" : "total", names[k]);
			admin_row_begin(r);
			admin_val_text(r, name);
			admin_val_uint(r, half ? a[k] : t[k]);
			admin_row_end(r);
		}
}

/* SHOW LATENCY: Sluice's percentiles over the last one to two stats periods. */
static void show_latency(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {
		{"database", ADMIN_TEXT}, {"user", ADMIN_TEXT},
		{"query_count", ADMIN_INT8}, {"query_p50_us", ADMIN_INT8}, {"query_p95_us", ADMIN_INT8},
		{"query_p99_us", ADMIN_INT8}, {"query_max_us", ADMIN_INT8},
		{"xact_count", ADMIN_INT8}, {"xact_p50_us", ADMIN_INT8}, {"xact_p95_us", ADMIN_INT8},
		{"xact_p99_us", ADMIN_INT8}, {"xact_max_us", ADMIN_INT8},
		{"wait_count", ADMIN_INT8}, {"wait_p50_us", ADMIN_INT8}, {"wait_p95_us", ADMIN_INT8},
		{"wait_p99_us", ADMIN_INT8}, {"wait_max_us", ADMIN_INT8},
	};
	static const double q[3] = {0.50, 0.95, 0.99};
	int n;
	const struct pool **v = sorted_pools(ctx, &n);

	COLS(r, cols);
	for (int i = 0; i < n; i++) {
		const struct latency *l = &v[i]->stats.lat;
		if (v[i]->admin)
			continue;
		admin_row_begin(r);
		admin_val_text(r, v[i]->dbname);
		admin_val_text(r, v[i]->user);
		for (int k = 0; k < LAT_KINDS; k++) {
			const struct hist *hs[2] = {&l->window[0][k], &l->window[1][k]};
			admin_val_uint(r, hs[0]->n + hs[1]->n);
			for (int j = 0; j < 3; j++)
				admin_val_uint(r, hist_quantile(hs, 2, q[j]));
			admin_val_uint(r, hist_quantile(hs, 2, 1.0));
		}
		admin_row_end(r);
	}
	free(v);
}

/* ---- SHOW DATABASES / USERS -------------------------------------------------------- */

/* host, port, dbname and user of a conninfo (first host only). */
struct conn_target {
	char host[256], port[16], dbname[256], user[256];
};

static void conninfo_target(const char *conninfo, struct conn_target *t)
{
	memset(t, 0, sizeof(*t));
	PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, NULL) : NULL;
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (!strcmp(o->keyword, "host"))
			snprintf(t->host, sizeof(t->host), "%s", o->val);
		else if (!strcmp(o->keyword, "port"))
			snprintf(t->port, sizeof(t->port), "%s", o->val);
		else if (!strcmp(o->keyword, "dbname"))
			snprintf(t->dbname, sizeof(t->dbname), "%s", o->val);
		else if (!strcmp(o->keyword, "user"))
			snprintf(t->user, sizeof(t->user), "%s", o->val);
	}
	PQconninfoFree(opts);
}

static void database_row(struct sluice *ctx, struct admin_reply *r, const char *name,
			 const struct config_db *db)
{
	const struct config *cfg = ctx->cfg;
	struct db_flags *f = sluice_db_flags(ctx, name, false);
	struct conn_target t;

	conninfo_target(db ? db->conninfo : NULL, &t);
	admin_row_begin(r);
	admin_val_text(r, name);
	admin_val_text(r, t.host[0] ? t.host : NULL);
	admin_val_int(r, t.port[0] ? atoi(t.port) : db ? 5432 : cfg->listen_port);
	admin_val_text(r, t.dbname[0] ? t.dbname : name);
	admin_val_text(r, db && db->user ? db->user : t.user[0] ? t.user : NULL);
	admin_val_int(r, db && db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size);
	admin_val_int(r, cfg->min_pool_size);
	admin_val_int(r, cfg->reserve_pool_size);
	admin_val_int(r, (long long)cfg->server_lifetime);
	admin_val_text(r, !db ? "statement" : db->pool_mode >= 0 ? config_pool_mode_name(db->pool_mode)
								 : NULL);
	admin_val_text(r, strchr(t.host, ',') ? "disable" : NULL);
	admin_val_int(r, cfg->max_db_connections);
	admin_val_int(r, db ? pool_servers_of(ctx, name, false) : 0);
	admin_val_int(r, cfg->max_db_client_connections);
	admin_val_int(r, pool_client_count_where(ctx, name, NULL));
	admin_val_int(r, db && (ctx->pause_all || (f && f->paused)));
	admin_val_int(r, f && f->disabled);
	admin_row_end(r);
}

static void show_databases(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {
		{"name", ADMIN_TEXT}, {"host", ADMIN_TEXT}, {"port", ADMIN_INT4},
		{"database", ADMIN_TEXT}, {"force_user", ADMIN_TEXT}, {"pool_size", ADMIN_INT4},
		{"min_pool_size", ADMIN_INT4}, {"reserve_pool_size", ADMIN_INT4},
		{"server_lifetime", ADMIN_INT4}, {"pool_mode", ADMIN_TEXT},
		{"load_balance_hosts", ADMIN_TEXT}, {"max_connections", ADMIN_INT4},
		{"current_connections", ADMIN_INT4}, {"max_client_connections", ADMIN_INT4},
		{"current_client_connections", ADMIN_INT4}, {"paused", ADMIN_INT4},
		{"disabled", ADMIN_INT4},
	};
	const struct config *cfg = ctx->cfg;
	const struct list *it;
	int n = 0, cap = cfg->n_dbs + 1;
	const char **names;

	for (it = ctx->pools.next; it != &ctx->pools; it = it->next)
		cap++;
	names = xmalloc(sizeof(*names) * (size_t)cap);
	/* Configured entries, databases made through "*" while they have
	 * pools, and the console itself. */
	for (int i = 0; i < cfg->n_dbs; i++)
		if (strcmp(cfg->dbs[i].name, "*") != 0)
			names[n++] = cfg->dbs[i].name;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		if (p->autodb && pool_first_of_db(ctx, p))
			names[n++] = p->dbname;
	}
	names[n++] = "sluice";
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	COLS(r, cols);
	for (int i = 0; i < n; i++) {
		if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
			continue;
		database_row(ctx, r, names[i],
			     admin_is_console_db(names[i]) ? NULL : config_find_db(cfg, names[i]));
	}
	free(names);
}

static void show_users(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {
		{"name", ADMIN_TEXT}, {"pool_size", ADMIN_TEXT}, {"reserve_pool_size", ADMIN_TEXT},
		{"pool_mode", ADMIN_TEXT}, {"max_user_connections", ADMIN_INT4},
		{"current_connections", ADMIN_INT4}, {"max_user_client_connections", ADMIN_INT4},
		{"current_client_connections", ADMIN_INT4},
	};
	const struct config *cfg = ctx->cfg;
	const struct list *it;
	int n = 0, cap = cfg->n_users + 1;
	const char **names;

	for (it = ctx->pools.next; it != &ctx->pools; it = it->next)
		cap += 2;
	names = xmalloc(sizeof(*names) * (size_t)cap);
	for (int i = 0; i < cfg->n_users; i++)
		names[n++] = cfg->users[i].name;
	/* Backend users of pools and client users alike. */
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		names[n++] = p->user;
	}
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	COLS(r, cols);
	for (int i = 0; i < n; i++) {
		if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
			continue;
		const struct config_user *u = config_find_user(cfg, names[i]);
		char size[16] = "";
		if (u && u->pool_size >= 0)
			snprintf(size, sizeof(size), "%9d", u->pool_size);
		admin_row_begin(r);
		admin_val_text(r, names[i]);
		admin_val_text(r, size);
		admin_val_text(r, "");
		admin_val_text(r, u && u->pool_mode >= 0 ? config_pool_mode_name(u->pool_mode) : NULL);
		admin_val_int(r, cfg->max_user_connections);
		admin_val_int(r, pool_servers_where(ctx, NULL, names[i]));
		admin_val_int(r, cfg->max_user_client_connections);
		admin_val_int(r, pool_client_count_where(ctx, NULL, names[i]));
		admin_row_end(r);
	}
	free(names);
}

/* ---- SHOW CONFIG / LISTS / MEM / STATE / VERSION ------------------------------------- */

static void show_config(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {
		{"key", ADMIN_TEXT}, {"value", ADMIN_TEXT}, {"default", ADMIN_TEXT},
		{"changeable", ADMIN_TEXT},
	};
	size_t n;
	const struct config_param *p = config_params(&n);
	struct config *defaults = config_defaults();
	char *value = xmalloc(8192), *def = xmalloc(8192);

	COLS(r, cols);
	for (size_t i = 0; i < n; i++) {
		config_format_value(ctx->cfg, &p[i], value, 8192);
		config_format_value(defaults, &p[i], def, 8192);
		admin_row_begin(r);
		admin_val_text(r, p[i].name);
		admin_val_text(r, value);
		admin_val_text(r, def);
		admin_val_text(r, p[i].reloadable ? "yes" : "no");
		admin_row_end(r);
	}
	free(value);
	free(def);
	config_free(defaults);
}

static void name_int_row(struct admin_reply *r, const char *name, long long v)
{
	admin_row_begin(r);
	admin_val_text(r, name);
	admin_val_int(r, v);
	admin_row_end(r);
}

static void show_lists(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {{"list", ADMIN_TEXT}, {"items", ADMIN_INT4}};
	struct admin_reply users;
	const struct list *it;
	int pools = 0, dbs = 0;

	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		pools++;
		dbs += p->autodb && pool_first_of_db(ctx, p);
	}
	for (int i = 0; i < ctx->cfg->n_dbs; i++)
		dbs += strcmp(ctx->cfg->dbs[i].name, "*") != 0;
	admin_reply_init(&users);
	show_users(ctx, &users);
	COLS(r, cols);
	name_int_row(r, "databases", dbs + 1);
	name_int_row(r, "users", users.nrows);
	name_int_row(r, "peers", 0);
	name_int_row(r, "pools", pools);
	name_int_row(r, "peer_pools", 0);
	name_int_row(r, "free_clients", 0);
	name_int_row(r, "used_clients", ctx->n_clients);
	name_int_row(r, "login_clients", statlist_count(&ctx->login_clients));
	name_int_row(r, "free_servers", 0);
	name_int_row(r, "used_servers", ctx->n_servers);
	name_int_row(r, "dns_names", 0);
	name_int_row(r, "dns_zones", 0);
	name_int_row(r, "dns_queries", 0);
	name_int_row(r, "dns_pending", 0);
	admin_reply_free(&users);
}

static void count_buffers(const struct conn *c, long long *n, long long *bytes)
{
	*n += c->rbuf != NULL;
	*bytes += c->rcap + (long long)c->out.cap;
}

/* Input buffers held right now, and their bytes (idle connections hold none). */
static void buffers_in_use(const struct sluice *ctx, long long *n, long long *bytes)
{
	const struct list *it, *e;
	*n = *bytes = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		const struct statlist *cl[] = {&p->cl_login, &p->cl_active, &p->cl_waiting};
		const struct statlist *sv[] = {&p->sv_login, &p->sv_idle, &p->sv_active,
					       &p->sv_used, &p->sv_tested};
		for (size_t i = 0; i < ARRAY_SIZE(cl); i++)
			for (e = cl[i]->head.next; e != &cl[i]->head; e = e->next)
				count_buffers(&container_of(e, struct client, node)->conn, n, bytes);
		for (size_t i = 0; i < ARRAY_SIZE(sv); i++)
			for (e = sv[i]->head.next; e != &sv[i]->head; e = e->next)
				count_buffers(&container_of(e, struct server, node)->conn, n, bytes);
	}
}

static void mem_row(struct admin_reply *r, const char *name, long long size, long long used,
		    long long free_n, long long total)
{
	admin_row_begin(r);
	admin_val_text(r, name);
	admin_val_int(r, size);
	admin_val_int(r, used);
	admin_val_int(r, free_n);
	admin_val_int(r, total);
	admin_row_end(r);
}

static void show_mem(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {
		{"name", ADMIN_TEXT}, {"size", ADMIN_INT4}, {"used", ADMIN_INT4},
		{"free", ADMIN_INT4}, {"memtotal", ADMIN_INT4},
	};
	const struct list *it;
	long long pools = 0, nbuf, bytes;

	for (it = ctx->pools.next; it != &ctx->pools; it = it->next)
		pools++;
	buffers_in_use(ctx, &nbuf, &bytes);
	COLS(r, cols);
	/* Objects are allocated when needed and freed when done (`free` 0);
	 * only input buffers keep a few spares (conn.h, struct conn_poller). */
	mem_row(r, "pool_cache", (long long)sizeof(struct pool), pools, 0,
		pools * (long long)sizeof(struct pool));
	mem_row(r, "server_cache", (long long)sizeof(struct server), ctx->n_servers, 0,
		ctx->n_servers * (long long)sizeof(struct server));
	mem_row(r, "client_cache", (long long)sizeof(struct client), ctx->n_clients, 0,
		ctx->n_clients * (long long)sizeof(struct client));
	long long spare = ctx->poller.nspare;
	mem_row(r, "iobuf_cache", ctx->cfg->pkt_buf, nbuf, spare,
		bytes + spare * (long long)ctx->poller.spare_size);
}

static void key_value_row(struct admin_reply *r, const char *k, const char *v)
{
	admin_row_begin(r);
	admin_val_text(r, k);
	admin_val_text(r, v);
	admin_row_end(r);
}

static void show_state(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {{"key", ADMIN_TEXT}, {"value", ADMIN_TEXT}};
	COLS(r, cols);
	key_value_row(r, "active", ctx->pause_all ? "no" : "yes");
	key_value_row(r, "paused", ctx->pause_all ? "yes" : "no");
	key_value_row(r, "suspended", "no");
}

static void show_version(struct sluice *ctx, struct admin_reply *r)
{
	static const struct admin_col cols[] = {{"version", ADMIN_TEXT}};
	(void)ctx;
	COLS(r, cols);
	admin_row_begin(r);
	admin_val_text(r, ADMIN_VERSION);
	admin_row_end(r);
}

/* Driver settings a console answers like PgBouncer (SHOW client_encoding, ...). */
static const char *const fake_params[][2] = {
	{"client_encoding", "UTF-8"},   {"default_transaction_isolation", "read committed"},
	{"standard_conforming_strings", "on"}, {"datestyle", "ISO"},
	{"timezone", "GMT"},             {"extra_float_digits", "2"},
};

static bool show_fake_param(const char *what, struct admin_reply *r)
{
	for (size_t i = 0; i < ARRAY_SIZE(fake_params); i++) {
		if (strcasecmp(what, fake_params[i][0]) != 0)
			continue;
		struct admin_col col = {fake_params[i][0], ADMIN_TEXT};
		admin_columns(r, &col, 1);
		admin_row_begin(r);
		admin_val_text(r, fake_params[i][1]);
		admin_row_end(r);
		return true;
	}
	return false;
}

bool admin_show(struct sluice *ctx, const char *what, struct admin_reply *r)
{
	if (show_fake_param(what, r))
		return true;
	if (!strcasecmp(what, "help")) {
		admin_notice(r, "Console usage", admin_help_text);
		snprintf(r->tag, sizeof(r->tag), "SHOW");
	} else if (!strcasecmp(what, "pools")) {
		show_pools(ctx, r);
	} else if (!strcasecmp(what, "stats")) {
		show_stats(ctx, r, STATS_BOTH);
	} else if (!strcasecmp(what, "stats_totals")) {
		show_stats(ctx, r, STATS_TOTALS_ONLY);
	} else if (!strcasecmp(what, "stats_averages")) {
		show_stats(ctx, r, STATS_AVERAGES_ONLY);
	} else if (!strcasecmp(what, "totals")) {
		show_totals(ctx, r);
	} else if (!strcasecmp(what, "servers")) {
		show_servers(ctx, r);
	} else if (!strcasecmp(what, "clients")) {
		show_clients(ctx, r);
	} else if (!strcasecmp(what, "sockets")) {
		show_sockets(ctx, r, LIST_ALL);
	} else if (!strcasecmp(what, "active_sockets")) {
		show_sockets(ctx, r, LIST_ACTIVE);
	} else if (!strcasecmp(what, "databases")) {
		show_databases(ctx, r);
	} else if (!strcasecmp(what, "users")) {
		show_users(ctx, r);
	} else if (!strcasecmp(what, "config")) {
		show_config(ctx, r);
	} else if (!strcasecmp(what, "lists")) {
		show_lists(ctx, r);
	} else if (!strcasecmp(what, "mem")) {
		show_mem(ctx, r);
	} else if (!strcasecmp(what, "state")) {
		show_state(ctx, r);
	} else if (!strcasecmp(what, "version")) {
		show_version(ctx, r);
	} else if (!strcasecmp(what, "latency")) {
		show_latency(ctx, r);
	} else {
		return false;
	}
	return true;
}
