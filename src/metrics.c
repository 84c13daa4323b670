/*
 * metrics.c - Prometheus exposition, liveness and readiness.
 *
 * Families are written one at a time (HELP, TYPE, then every series), as
 * the text format requires.  Pool figures carry `database` and `user`
 * labels, database figures `database`; counters end in `_total`, times are
 * in seconds.  The tables below are the single list of what is exported
 * (doc/metrics.md documents them in the same order).
 */
#include "sluice/metrics.h"
#include "sluice/admin.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/sluice.h"
#include "sluice/stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void put(struct pktbuf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void put(struct pktbuf *b, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		pktbuf_put_bytes(b, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* A label value with \, " and newline escaped. */
static void put_label(struct pktbuf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			pktbuf_put_byte(b, '\\');
		if (*v == '\n') {
			pktbuf_put_bytes(b, "\\n", 2);
			continue;
		}
		pktbuf_put_byte(b, (uint8_t)*v);
	}
}

static void family(struct pktbuf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void pool_labels(struct pktbuf *b, const struct pool *p)
{
	pktbuf_put_bytes(b, "{database=\"", 11);
	put_label(b, p->dbname);
	pktbuf_put_bytes(b, "\",user=\"", 8);
	put_label(b, p->user);
	pktbuf_put_byte(b, '"');
}

static void sample(struct pktbuf *b, const char *name, const struct pool *p, double v)
{
	put(b, "%s", name);
	if (p) {
		pool_labels(b, p);
		pktbuf_put_byte(b, '}');
	}
	put(b, " %.15g\n", v);
}

/* ---- pool gauges (SHOW POOLS) ------------------------------------------------ */

static double maxwait_seconds(const struct pool *p)
{
	const struct list *first = statlist_first(&p->cl_waiting);
	if (!first)
		return 0;
	const struct client *c = container_of(first, struct client, node);
	return c->wait_start_us ? (double)(stats_now_us() - c->wait_start_us) / 1e6 : 0;
}

struct pool_gauge {
	const char *name;
	const char *help;
	double (*get)(const struct pool *p);
};

#define LIST_GAUGE(fn, expr) \
	static double fn(const struct pool *p) { return (double)(expr); }
LIST_GAUGE(g_cl_active, statlist_count(&p->cl_active))
LIST_GAUGE(g_cl_waiting, statlist_count(&p->cl_waiting) + statlist_count(&p->cl_login))
LIST_GAUGE(g_sv_active, statlist_count(&p->sv_active))
LIST_GAUGE(g_sv_idle, statlist_count(&p->sv_idle))
LIST_GAUGE(g_sv_used, statlist_count(&p->sv_used) - pool_parked_servers(p))
LIST_GAUGE(g_sv_tested, statlist_count(&p->sv_tested))
LIST_GAUGE(g_sv_login, statlist_count(&p->sv_login))
LIST_GAUGE(g_sv_canceled, pool_parked_servers(p))
LIST_GAUGE(g_maxwait, maxwait_seconds(p))
LIST_GAUGE(g_pool_size, p->pool_size)
LIST_GAUGE(g_paused, p->paused)

static const struct pool_gauge pool_gauges[] = {
	{"sluice_pool_client_active_connections", "Clients linked to a server or idle (cl_active).", g_cl_active},
	{"sluice_pool_client_waiting_connections", "Clients waiting for a server (cl_waiting).", g_cl_waiting},
	{"sluice_pool_server_active_connections", "Servers linked to a client (sv_active).", g_sv_active},
	{"sluice_pool_server_idle_connections", "Servers ready for a client (sv_idle).", g_sv_idle},
	{"sluice_pool_server_used_connections", "Servers released, not yet reset (sv_used).", g_sv_used},
	{"sluice_pool_server_tested_connections", "Servers running a reset or check query (sv_tested).", g_sv_tested},
	{"sluice_pool_server_login_connections", "Servers logging in (sv_login).", g_sv_login},
	{"sluice_pool_server_being_canceled_connections", "Servers held back until their cancels finish (sv_being_canceled).", g_sv_canceled},
	{"sluice_pool_maxwait_seconds", "How long the oldest waiting client has waited (maxwait).", g_maxwait},
	{"sluice_pool_size", "Server connections the pool may open (0 = unlimited).", g_pool_size},
	{"sluice_pool_paused", "1 while the pool's database is paused.", g_paused},
};

/* ---- counters (SHOW STATS totals) and averages ----------------------------------- */

struct stat_metric {
	const char *name;
	const char *help;
	size_t offset;        /* in struct stats_counters */
	double scale;         /* 1e-6 turns microseconds into seconds */
};

#define CNT(f) offsetof(struct stats_counters, f)

static const struct stat_metric counters[] = {
	{"sluice_transactions_total", "SQL transactions pooled (total_xact_count).", CNT(xact_count), 1},
	{"sluice_queries_total", "SQL commands pooled (total_query_count).", CNT(query_count), 1},
	{"sluice_server_assignments_total", "Times a server was assigned to a client.", CNT(server_assignment_count), 1},
	{"sluice_servers_closed_total", "Server connections closed.", CNT(server_closed_count), 1},
	{"sluice_received_bytes_total", "Bytes received from clients (total_received).", CNT(received), 1},
	{"sluice_sent_bytes_total", "Bytes sent to clients (total_sent).", CNT(sent), 1},
	{"sluice_transaction_time_seconds_total", "Time spent in transactions on servers (total_xact_time).", CNT(xact_time), 1e-6},
	{"sluice_query_time_seconds_total", "Time spent running queries on servers (total_query_time).", CNT(query_time), 1e-6},
	{"sluice_wait_time_seconds_total", "Time clients waited for a server (total_wait_time).", CNT(wait_time), 1e-6},
	{"sluice_server_lifetime_seconds_total", "Summed lifetime of closed server connections.", CNT(server_lifetime), 1e-6},
	{"sluice_client_parses_total", "Prepared statements created by clients.", CNT(client_parse_count), 1},
	{"sluice_server_parses_total", "Prepared statements created by the pooler on servers.", CNT(server_parse_count), 1},
	{"sluice_binds_total", "Prepared statements readied for execution by clients.", CNT(bind_count), 1},
};

static const struct stat_metric averages[] = {
	{"sluice_avg_transactions_per_second", "Transactions per second in the last stats period (avg_xact_count).", CNT(xact_count), 1},
	{"sluice_avg_queries_per_second", "Queries per second in the last stats period (avg_query_count).", CNT(query_count), 1},
	{"sluice_avg_server_assignments_per_second", "Server assignments per second in the last stats period.", CNT(server_assignment_count), 1},
	{"sluice_avg_received_bytes_per_second", "Bytes per second received from clients in the last stats period (avg_recv).", CNT(received), 1},
	{"sluice_avg_sent_bytes_per_second", "Bytes per second sent to clients in the last stats period (avg_sent).", CNT(sent), 1},
	{"sluice_avg_transaction_time_seconds", "Average transaction duration in the last stats period (avg_xact_time).", CNT(xact_time), 1e-6},
	{"sluice_avg_query_time_seconds", "Average query duration in the last stats period (avg_query_time).", CNT(query_time), 1e-6},
	{"sluice_avg_wait_time_seconds", "Average wait for a server in the last stats period (avg_wait_time).", CNT(wait_time), 1e-6},
};

static double field(const struct stats_counters *s, size_t off)
{
	return (double)*(const uint64_t *)(const void *)((const char *)s + off);
}

/* ---- histograms ----------------------------------------------------------------------- */

static const char *const hist_names[LAT_KINDS][2] = {
	{"sluice_query_duration_seconds", "Query duration on a server, from the first message to ReadyForQuery."},
	{"sluice_transaction_duration_seconds", "Transaction duration on a server."},
	{"sluice_wait_duration_seconds", "Time a client waited for a server, per server assignment."},
};

static void histogram(struct pktbuf *b, struct sluice *ctx, enum lat_kind k)
{
	const struct list *it;

	family(b, hist_names[k][0], "histogram", hist_names[k][1]);
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		const struct prom_hist *h = &p->stats.lat.prom[k];
		uint64_t cum = 0;
		if (p->admin)
			continue;
		for (int i = 0; i <= PROM_BUCKETS; i++) {
			cum += h->bucket[i];
			put(b, "%s_bucket", hist_names[k][0]);
			pool_labels(b, p);
			if (i < PROM_BUCKETS)
				put(b, ",le=\"%g\"} %llu\n", (double)prom_bucket_us[i] / 1e6,
				    (unsigned long long)cum);
			else
				put(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
		}
		put(b, "%s_sum", hist_names[k][0]);
		pool_labels(b, p);
		put(b, "} %.15g\n", (double)h->sum_us / 1e6);
		put(b, "%s_count", hist_names[k][0]);
		pool_labels(b, p);
		put(b, "} %llu\n", (unsigned long long)h->count);
	}
}

/* ---- process ---------------------------------------------------------------------------- */

static double rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void process_metrics(struct pktbuf *b, struct sluice *ctx)
{
	double up = (double)(sluice_now(ctx) - ctx->start_ms) / 1000.0;

	family(b, "sluice_info", "gauge", "Version of the running Sluice (always 1).");
	put(b, "sluice_info{version=\"%s\"} 1\n", SLUICE_VERSION);
	family(b, "sluice_uptime_seconds", "gauge", "Seconds since Sluice started.");
	sample(b, "sluice_uptime_seconds", NULL, up);
	family(b, "sluice_start_time_seconds", "gauge", "Start time, seconds since the Unix epoch.");
	sample(b, "sluice_start_time_seconds", NULL, (double)ctx->wall_start_ms / 1000.0);
	family(b, "sluice_client_connections", "gauge", "Client connections, every state.");
	sample(b, "sluice_client_connections", NULL, ctx->n_clients);
	family(b, "sluice_server_connections", "gauge", "Server connections, every state.");
	sample(b, "sluice_server_connections", NULL, ctx->n_servers);
	family(b, "sluice_login_client_connections", "gauge", "Clients still sending their startup packet.");
	sample(b, "sluice_login_client_connections", NULL, statlist_count(&ctx->login_clients));
	family(b, "sluice_max_client_connections", "gauge", "The max_client_conn setting.");
	sample(b, "sluice_max_client_connections", NULL, ctx->cfg->max_client_conn);
	family(b, "sluice_paused", "gauge", "1 while every database is paused (PAUSE, SIGUSR1).");
	sample(b, "sluice_paused", NULL, ctx->pause_all);
	family(b, "sluice_shutting_down", "gauge", "1 once a shutdown was requested.");
	sample(b, "sluice_shutting_down", NULL,
	       ctx->shutting_down || ctx->shutdown_mode != SHUTDOWN_NONE);
	family(b, "sluice_process_resident_memory_bytes", "gauge", "Resident memory of the process.");
	sample(b, "sluice_process_resident_memory_bytes", NULL, rss_bytes());
	family(b, "sluice_process_cpu_seconds_total", "counter", "User and system CPU time of the process.");
	sample(b, "sluice_process_cpu_seconds_total", NULL, cpu_seconds());
}

void metrics_render(struct sluice *ctx, struct pktbuf *b)
{
	const struct list *it;

	process_metrics(b, ctx);
	for (size_t g = 0; g < ARRAY_SIZE(pool_gauges); g++) {
		family(b, pool_gauges[g].name, "gauge", pool_gauges[g].help);
		for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
			const struct pool *p = container_of(it, struct pool, node);
			sample(b, pool_gauges[g].name, p, pool_gauges[g].get(p));
		}
	}
	for (size_t m = 0; m < ARRAY_SIZE(counters); m++) {
		family(b, counters[m].name, "counter", counters[m].help);
		for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
			const struct pool *p = container_of(it, struct pool, node);
			struct stats_counters cur;
			pool_stats_current(p, &cur);
			sample(b, counters[m].name, p, field(&cur, counters[m].offset) * counters[m].scale);
		}
	}
	for (size_t m = 0; m < ARRAY_SIZE(averages); m++) {
		family(b, averages[m].name, "gauge", averages[m].help);
		for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
			const struct pool *p = container_of(it, struct pool, node);
			struct stats_averages avg;
			stats_averages(&p->stats.period, ctx->stats_last_period_s, &avg);
			sample(b, averages[m].name, p,
			       field((const struct stats_counters *)(const void *)&avg, averages[m].offset) *
				       averages[m].scale);
		}
	}
	for (int k = 0; k < LAT_KINDS; k++)
		histogram(b, ctx, (enum lat_kind)k);
}

/* ---- health ------------------------------------------------------------------------------- */

bool metrics_ready(const struct sluice *ctx, char *why, size_t len)
{
	const struct list *it;

	if (ctx->shutting_down || ctx->shutdown_mode != SHUTDOWN_NONE) {
		snprintf(why, len, "shutting down");
		return false;
	}
	if (ctx->n_listeners == 0) {
		snprintf(why, len, "not listening");
		return false;
	}
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		if (!p->admin && p->unreachable) {
			snprintf(why, len, "database %s unreachable: %s", p->dbname,
				 p->last_error ? p->last_error : "server connection lost");
			for (char *ch = why; *ch; ch++)   /* one line: libpq's messages have two */
				if (*ch == '\n' || *ch == '\t')
					*ch = ' ';
			return false;
		}
	}
	snprintf(why, len, "ready");
	return true;
}

void metrics_http_handler(void *arg, const char *method, const char *path,
			  struct http_response *resp)
{
	struct sluice *ctx = arg;
	char why[600];

	(void)method;
	resp->content_type = "text/plain; charset=utf-8";
	if (!strcmp(path, "/metrics")) {
		resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
		metrics_render(ctx, &resp->body);
	} else if (!strcmp(path, "/healthz")) {
		pktbuf_put_bytes(&resp->body, "ok\n", 3);
	} else if (!strcmp(path, "/readyz")) {
		if (!metrics_ready(ctx, why, sizeof(why)))
			resp->status = 503;
		put(&resp->body, "%s\n", why);
	} else {
		resp->status = 404;
		pktbuf_put_bytes(&resp->body, "not found: try /metrics, /healthz or /readyz\n", 45);
	}
}
