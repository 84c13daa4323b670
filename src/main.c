/*
 * main.c - command line, start-up order, signals, reload and shutdown.
 *
 * Start-up: parse arguments, load and validate the config (--check stops
 * here), open the log, raise the descriptor limit, bind every listener
 * (refusing to start when a port is taken), then run the loop.  SIGHUP
 * reloads the config (parse -> validate -> swap; a bad file keeps the old
 * one running); SIGINT and SIGTERM shut down: clients are told, servers
 * closed, every handle closed, everything freed, exit 0.
 */
#include "sluice/auth.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/sluice.h"
#include "sluice/tls.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define JANITOR_INTERVAL_MS 250
#define ERRBUF 8192

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sluice [OPTIONS] [-c] CONFIG_FILE\n"
		"PostgreSQL connection pooler.\n\n"
		"Options:\n"
		"  -c, --config FILE  configuration file (libconfig syntax)\n"
		"      --check        validate the configuration and exit\n"
		"  -v, --verbose      more log output (repeat for more)\n"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         show this help and exit\n");
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
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

static void close_server_list(struct statlist *l)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, l) {
		server_close(container_of(it, struct server, node), "shutting down");
	}
}

static void walk_close_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void shutdown_now(struct sluice *ctx, const char *why)
{
	const char *msg = "terminating connection due to administrator command";
	struct list *it, *tmp;

	if (ctx->shutting_down)
		return;
	log_info("shutting down (%s)", why);
	ctx->shutting_down = true;
	listener_close_all(ctx);
	close_client_list(&ctx->login_clients, msg);
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		close_client_list(&p->cl_login, msg);
		close_client_list(&p->cl_waiting, msg);
		close_client_list(&p->cl_active, msg);
		close_server_list(&p->sv_login);
		close_server_list(&p->sv_idle);
		close_server_list(&p->sv_active);
		close_server_list(&p->sv_used);
		close_server_list(&p->sv_tested);
	}
	cancel_close_all(ctx);
	uv_timer_stop(&ctx->janitor);
	uv_close((uv_handle_t *)&ctx->janitor, NULL);
	uv_close((uv_handle_t *)&ctx->sig_int, NULL);
	uv_close((uv_handle_t *)&ctx->sig_term, NULL);
	uv_close((uv_handle_t *)&ctx->sig_hup, NULL);
}

/* ---- reload -------------------------------------------------------------- */

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

static void reload(struct sluice *ctx)
{
	static char err[ERRBUF];
	struct config *old = ctx->cfg;
	struct config *new = config_load(old->filename, err, sizeof(err));
	struct auth_files files;
	struct list *it, *tmp;

	if (!new) {
		log_error("reload failed, keeping the running configuration:\n%s", err);
		return;
	}
	if (auth_files_load(new, &files, err, sizeof(err)) < 0) {
		log_error("reload failed, keeping the running configuration:\n%s", err);
		config_free(new);
		return;
	}
	SSL_CTX *tls;
	if (tls_client_ctx_build(new, &tls, err, sizeof(err)) < 0) {
		log_error("reload failed, keeping the running configuration:\n%s", err);
		auth_files_free(&files);
		config_free(new);
		return;
	}
	SSL_CTX_free(ctx->client_tls);   /* live sessions keep their reference */
	ctx->client_tls = tls;
	auth_files_free(&ctx->auth);
	ctx->auth = files;
	warn_restart_only(old, new);
	/* Restart-only settings keep their running values. */
	new->listen_port = old->listen_port;
	new->pkt_buf = old->pkt_buf;
	ctx->cfg = new;
	if (log_open(new->logfile, new->log_format == LOG_FORMAT_JSON, new->verbose) < 0)
		log_error("could not open logfile %s", new->logfile);
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		const struct config_db *db = config_find_db(new, p->dbname);
		if (db)
			pool_apply_config(p, db);
	}
	config_free(old);
	log_info("configuration reloaded");
}

/* ---- loop callbacks ------------------------------------------------------ */

static void signal_cb(uv_signal_t *h, int signum)
{
	struct sluice *ctx = h->data;
	if (signum == SIGHUP)
		reload(ctx);
	else
		shutdown_now(ctx, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void janitor_cb(uv_timer_t *t)
{
	struct sluice *ctx = t->data;
	pool_janitor(ctx);
	cancel_janitor(ctx, sluice_now(ctx));
	listener_resume_all(ctx, sluice_now(ctx));
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

static void start_signal(struct sluice *ctx, uv_signal_t *h, int signum)
{
	uv_signal_init(ctx->loop, h);
	h->data = ctx;
	uv_signal_start(h, signal_cb, signum);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'k'},
		{"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool check = false;
	int verbose = 0, opt;
	static char err[ERRBUF];

	while ((opt = getopt_long(argc, argv, "c:vVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'V':
			printf("sluice %s\n", SLUICE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path && optind < argc)
		path = argv[optind++];
	if (!path || optind < argc) {
		usage(stderr);
		return 2;
	}

	struct config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: configuration is valid\n", path);
		config_free(cfg);
		return 0;
	}
	if (log_open(cfg->logfile, cfg->log_format == LOG_FORMAT_JSON, cfg->verbose + verbose) < 0) {
		fprintf(stderr, "sluice: cannot open logfile %s\n", cfg->logfile);
		config_free(cfg);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	struct sluice ctx_storage, *ctx = &ctx_storage;
	uv_loop_t loop;
	memset(ctx, 0, sizeof(*ctx));
	uv_loop_init(&loop);
	ctx->loop = &loop;
	ctx->cfg = cfg;
	statlist_init(&ctx->login_clients);
	statlist_init(&ctx->dead_servers);
	cancel_registry_init(&ctx->cancels);
	list_init(&ctx->pools);
	ctx->start_ms = uv_now(&loop);

	if (auth_files_load(cfg, &ctx->auth, err, sizeof(err)) < 0 ||
	    tls_client_ctx_build(cfg, &ctx->client_tls, err, sizeof(err)) < 0) {
		log_error("%s", err);
		fprintf(stderr, "sluice: %s\n", err);
		uv_loop_close(&loop);
		auth_files_free(&ctx->auth);
		config_free(cfg);
		return 1;
	}
	if (listener_start_all(ctx, err, sizeof(err)) < 0) {
		log_error("%s", err);
		fprintf(stderr, "sluice: %s\n", err);
		uv_loop_close(&loop);
		auth_files_free(&ctx->auth);
		SSL_CTX_free(ctx->client_tls);
		config_free(cfg);
		return 1;
	}
	uv_timer_init(&loop, &ctx->janitor);
	ctx->janitor.data = ctx;
	uv_timer_start(&ctx->janitor, janitor_cb, JANITOR_INTERVAL_MS, JANITOR_INTERVAL_MS);
	uv_check_init(&loop, &ctx->reaper);
	ctx->reaper.data = ctx;
	uv_check_start(&ctx->reaper, reaper_cb);
	uv_unref((uv_handle_t *)&ctx->reaper);
	start_signal(ctx, &ctx->sig_int, SIGINT);
	start_signal(ctx, &ctx->sig_term, SIGTERM);
	start_signal(ctx, &ctx->sig_hup, SIGHUP);
	log_info("sluice %s started, pool_mode=%s", SLUICE_VERSION, config_pool_mode_name(cfg->pool_mode));

	uv_run(&loop, UV_RUN_DEFAULT);

	/* Everything was asked to close; let the close callbacks run. */
	reaper_cb(&ctx->reaper);
	uv_close((uv_handle_t *)&ctx->reaper, NULL);
	uv_walk(&loop, walk_close_cb, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	reaper_cb(&ctx->reaper);
	if (uv_loop_close(&loop) != 0)
		log_warning("event loop closed with handles still open");
	pool_free_all(ctx);
	cancel_registry_free(&ctx->cancels);
	log_info("shutdown complete");
	auth_files_free(&ctx->auth);
	SSL_CTX_free(ctx->client_tls);
	config_free(ctx->cfg);
	log_close();
	return 0;
}
