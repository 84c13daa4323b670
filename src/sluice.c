/*
 * sluice.c - the life of a pooler context: start, configuration changes
 * (SIGHUP, RELOAD, SET), the periodic janitor and the statistics period,
 * and shutdown, immediate or waiting for servers or clients to go.
 *
 * main.c owns the command line and the signals; everything a running
 * pooler does to itself on an operator's request is here, so the signal
 * handlers and the admin console share one implementation.
 */
#include "sluice/admin.h"
#include "sluice/auth.h"
#include "sluice/cancel.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/sluice.h"
#include "sluice/tls.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define JANITOR_INTERVAL_MS 250

/* ---- per-database flags ----------------------------------------------- */

struct db_flags *sluice_db_flags(struct sluice *ctx, const char *name, bool create)
{
	for (int i = 0; i < ctx->n_db_flags; i++)
		if (strcmp(ctx->db_flags[i].name, name) == 0)
			return &ctx->db_flags[i];
	if (!create)
		return NULL;
	ctx->db_flags = xrealloc(ctx->db_flags, sizeof(*ctx->db_flags) * (size_t)(ctx->n_db_flags + 1));
	struct db_flags *f = &ctx->db_flags[ctx->n_db_flags++];
	f->name = xstrdup(name);
	f->paused = f->disabled = false;
	return f;
}

bool sluice_db_paused(const struct sluice *ctx, const char *name)
{
	if (ctx->pause_all)
		return true;
	for (int i = 0; i < ctx->n_db_flags; i++)
		if (strcmp(ctx->db_flags[i].name, name) == 0)
			return ctx->db_flags[i].paused;
	return false;
}

static void free_db_flags(struct sluice *ctx)
{
	for (int i = 0; i < ctx->n_db_flags; i++)
		free(ctx->db_flags[i].name);
	free(ctx->db_flags);
	ctx->db_flags = NULL;
	ctx->n_db_flags = 0;
}

/* ---- shutdown ------------------------------------------------------------ */

static void close_client_list(struct statlist *l, const char *msg)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, l) {
		struct client *c = container_of(it, struct client, node);
		client_fail(c, "57P01", "%s", msg);
		conn_close(&c->conn);
	}
}

static void close_server_list(struct statlist *l, const char *why)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, l) {
		server_close(container_of(it, struct server, node), why);
	}
}

static void http_stop_if_running(struct sluice *ctx)
{
	if (ctx->http) {
		http_stop(ctx->http);
		ctx->http = NULL;
		ctx->http_bound[0] = 0;
	}
}

void sluice_shutdown(struct sluice *ctx, const char *why)
{
	const char *msg = "terminating connection due to administrator command";
	struct list *it, *tmp;

	if (ctx->shutting_down)
		return;
	log_info("shutting down (%s)", why);
	ctx->shutting_down = true;
	listener_close_all(ctx);
	http_stop_if_running(ctx);
	close_client_list(&ctx->login_clients, msg);
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		close_client_list(&p->cl_login, msg);
		close_client_list(&p->cl_waiting, msg);
		close_client_list(&p->cl_active, msg);
		close_server_list(&p->sv_login, "shutting down");
		close_server_list(&p->sv_idle, "shutting down");
		close_server_list(&p->sv_active, "shutting down");
		close_server_list(&p->sv_used, "shutting down");
		close_server_list(&p->sv_tested, "shutting down");
	}
	cancel_close_all(ctx);
	free_db_flags(ctx);
	uv_timer_stop(&ctx->janitor);
	uv_close((uv_handle_t *)&ctx->janitor, NULL);
	uv_close((uv_handle_t *)&ctx->sig_int, NULL);
	uv_close((uv_handle_t *)&ctx->sig_term, NULL);
	uv_close((uv_handle_t *)&ctx->sig_hup, NULL);
	uv_close((uv_handle_t *)&ctx->sig_quit, NULL);
	uv_close((uv_handle_t *)&ctx->sig_usr1, NULL);
	uv_close((uv_handle_t *)&ctx->sig_usr2, NULL);
	uv_close((uv_handle_t *)&ctx->poller.prepare, NULL);
	ctx->loop->data = NULL;   /* closing conns apply masks at once from now on */
	conn_poller_free(&ctx->poller);   /* and free their buffers themselves */
}

/* Connections that keep a waiting shutdown from finishing (the admin
 * console's own clients do not count). */
static int remaining(const struct sluice *ctx, bool servers)
{
	const struct list *it;
	int n = servers ? 0 : statlist_count(&ctx->login_clients);
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		if (p->admin)
			continue;
		n += servers ? pool_server_count(p)
			     : statlist_count(&p->cl_login) + statlist_count(&p->cl_active) +
				       statlist_count(&p->cl_waiting);
	}
	return n;
}

static void shutdown_progress(struct sluice *ctx)
{
	if (ctx->shutting_down || ctx->shutdown_mode == SHUTDOWN_NONE)
		return;
	if (ctx->shutdown_mode == SHUTDOWN_WAIT_SERVERS && remaining(ctx, true) == 0)
		sluice_shutdown(ctx, "SHUTDOWN WAIT_FOR_SERVERS: no server connection left");
	else if (ctx->shutdown_mode == SHUTDOWN_WAIT_CLIENTS && remaining(ctx, false) == 0)
		sluice_shutdown(ctx, "SHUTDOWN WAIT_FOR_CLIENTS: no client connection left");
}

void sluice_shutdown_wait(struct sluice *ctx, enum shutdown_mode mode)
{
	struct list *it, *tmp;

	if (ctx->shutting_down)
		return;
	ctx->shutdown_mode = mode;
	log_info("shutdown requested: waiting for %s to finish",
		 mode == SHUTDOWN_WAIT_SERVERS ? "server connections" : "client connections");
	listener_close_all(ctx);
	if (mode == SHUTDOWN_WAIT_SERVERS) {
		/* PAUSE everything; clients still waiting for a server would
		 * never get one: tell them now. */
		ctx->pause_all = true;
		pool_refresh_paused(ctx);
		list_for_each_safe(it, tmp, &ctx->pools) {
			struct pool *p = container_of(it, struct pool, node);
			struct list *ci, *ctmp;
			statlist_for_each_safe(ci, ctmp, &p->cl_waiting) {
				client_fail(container_of(ci, struct client, node), "57P01",
					    "the pooler is shutting down");
			}
		}
	}
	shutdown_progress(ctx);
}

/* ---- configuration --------------------------------------------------------- */

static void warn_restart_only(const struct config *old, const struct config *new)
{
	size_t n;
	const struct config_param *p = config_params(&n);
	for (size_t i = 0; i < n; i++) {
		char a[1024], b[1024];
		if (p[i].reloadable)
			continue;
		config_format_value(old, &p[i], a, sizeof(a));
		config_format_value(new, &p[i], b, sizeof(b));
		if (strcmp(a, b) != 0)
			log_warning("reload: %s changed from \"%s\" to \"%s\"; it takes effect after a restart",
				    p[i].name, a, b);
	}
}

/* (Re)start the HTTP endpoint when its address changed. */
static int http_apply(struct sluice *ctx, char *err, size_t errlen)
{
	const struct config *cfg = ctx->cfg;
	char want[sizeof(ctx->http_bound)];

	if (ctx->shutting_down || cfg->http_port == 0) {
		http_stop_if_running(ctx);
		return 0;
	}
	snprintf(want, sizeof(want), "%s:%d", cfg->http_listen_addr, cfg->http_port);
	if (ctx->http && strcmp(want, ctx->http_bound) == 0)
		return 0;
	http_stop_if_running(ctx);
	if (http_start(&ctx->http, ctx->loop, cfg->http_listen_addr, cfg->http_port,
		       metrics_http_handler, ctx, err, errlen) < 0) {
		ctx->http = NULL;
		return -1;
	}
	snprintf(ctx->http_bound, sizeof(ctx->http_bound), "%s", want);
	log_info("HTTP endpoint listening on %s", want);
	return 0;
}

/* Apply settings that live outside struct config: log sink, pools, HTTP. */
static void apply_runtime(struct sluice *ctx)
{
	const struct config *cfg = ctx->cfg;
	struct list *it, *tmp;
	char err[512];

	if (log_open(cfg->logfile, cfg->log_format == LOG_FORMAT_JSON, cfg->verbose) < 0)
		log_error("could not open logfile %s", cfg->logfile);
	log_syslog(cfg->syslog, cfg->syslog_ident, cfg->syslog_facility);
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		pool_welcome_reset(p);   /* tracked settings may have changed */
		const struct config_db *db = p->admin ? NULL : config_find_db(cfg, p->dbname);
		if (db)
			pool_apply_config(p, db);
	}
	if (http_apply(ctx, err, sizeof(err)) < 0)
		log_error("HTTP endpoint: %s", err);
}

int sluice_reload(struct sluice *ctx, char *err, size_t errlen)
{
	struct config *old = ctx->cfg;
	struct config *new = config_load(old->filename, err, errlen);
	struct auth_files files;
	SSL_CTX *tls;

	if (!new)
		goto failed;
	if (auth_files_load(new, &files, err, errlen) < 0) {
		config_free(new);
		goto failed;
	}
	if (tls_client_ctx_build(new, &tls, err, errlen) < 0) {
		auth_files_free(&files);
		config_free(new);
		goto failed;
	}
	SSL_CTX_free(ctx->client_tls);   /* live sessions keep their reference */
	ctx->client_tls = tls;
	auth_files_free(&ctx->auth);
	ctx->auth = files;
	warn_restart_only(old, new);
	/* Restart-only settings keep their running values (SHOW CONFIG then
	 * shows what is in effect). */
	config_keep_restart_only(new, old);
	ctx->cfg = new;
	config_free(old);
	apply_runtime(ctx);
	log_info("configuration reloaded");
	return 0;
failed:
	log_error("reload failed, keeping the running configuration:\n%s", err);
	return -1;
}

int sluice_set(struct sluice *ctx, const char *name, const char *value, char *err,
	       size_t errlen)
{
	struct config *cfg = ctx->cfg;
	const struct config_param *p = config_find_param(name);
	char old[4096];
	struct auth_files files;
	SSL_CTX *tls;

	if (p)
		config_format_value(cfg, p, old, sizeof(old));
	if (config_set(cfg, name, value, err, errlen) < 0)
		return -1;
	/* Settings naming files take effect only when the files load. */
	if (auth_files_load(cfg, &files, err, errlen) < 0)
		goto revert;
	if (tls_client_ctx_build(cfg, &tls, err, errlen) < 0) {
		auth_files_free(&files);
		goto revert;
	}
	auth_files_free(&ctx->auth);
	ctx->auth = files;
	SSL_CTX_free(ctx->client_tls);
	ctx->client_tls = tls;
	apply_runtime(ctx);
	log_info("SET %s = '%s'", p->name, value);
	return 0;
revert: {
		char ignore[8];
		config_set(cfg, p->name, old, ignore, sizeof(ignore));
		return -1;
	}
}

/* ---- janitor and statistics period ------------------------------------------ */

static void stats_tick(struct sluice *ctx, uint64_t now)
{
	uint64_t period_ms = (uint64_t)ctx->cfg->stats_period * 1000;

	if (now - ctx->stats_tick_ms < period_ms)
		return;
	ctx->stats_last_period_s = (double)(now - ctx->stats_tick_ms) / 1000.0;
	ctx->stats_tick_ms = now;
	pool_stats_tick(ctx);
	if (ctx->cfg->log_stats)
		pool_log_stats(ctx, ctx->stats_last_period_s);
}

static void janitor_cb(uv_timer_t *t)
{
	struct sluice *ctx = t->data;
	uint64_t now = sluice_now(ctx);

	pool_janitor(ctx);
	cancel_janitor(ctx, now);
	listener_resume_all(ctx, now);
	stats_tick(ctx, now);
	admin_janitor(ctx);
	shutdown_progress(ctx);
}

static void reaper_cb(uv_check_t *h)
{
	struct sluice *ctx = h->data;
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, &ctx->dead_servers) {
		statlist_remove(&ctx->dead_servers, it);
		server_reap(container_of(it, struct server, node));
	}
}

void sluice_reap(struct sluice *ctx)
{
	reaper_cb(&ctx->reaper);
}

int sluice_start(struct sluice *ctx, char *err, size_t errlen)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	ctx->start_ms = uv_now(ctx->loop);
	ctx->wall_start_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	ctx->stats_tick_ms = ctx->start_ms;
	log_syslog(ctx->cfg->syslog, ctx->cfg->syslog_ident, ctx->cfg->syslog_facility);
	conn_poller_init(&ctx->poller, ctx->loop);
	if (listener_start_all(ctx, err, errlen) < 0)
		return -1;
	if (http_apply(ctx, err, errlen) < 0) {
		listener_close_all(ctx);
		return -1;
	}
	uv_timer_init(ctx->loop, &ctx->janitor);
	ctx->janitor.data = ctx;
	uv_timer_start(&ctx->janitor, janitor_cb, JANITOR_INTERVAL_MS, JANITOR_INTERVAL_MS);
	uv_check_init(ctx->loop, &ctx->reaper);
	ctx->reaper.data = ctx;
	uv_check_start(&ctx->reaper, reaper_cb);
	uv_unref((uv_handle_t *)&ctx->reaper);
	return 0;
}
