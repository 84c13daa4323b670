/*
 * main.c - command line, start-up order and signals.
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

/* ---- signals ------------------------------------------------------------- */

static void walk_close_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/*
 * SIGHUP reloads; SIGINT, SIGTERM and SIGQUIT shut down at once (clients
 * are told why); SIGUSR1 pauses every database and SIGUSR2 resumes them,
 * as PgBouncer's do.  Waiting shutdowns are on the admin console.
 */
static void signal_cb(uv_signal_t *h, int signum)
{
	struct sluice *ctx = h->data;
	char err[8192];

	switch (signum) {
	case SIGHUP:
		sluice_reload(ctx, err, sizeof(err));
		break;
	case SIGUSR1:
		log_info("SIGUSR1: pausing every database");
		pool_pause(ctx, NULL);
		break;
	case SIGUSR2:
		if (ctx->shutdown_mode != SHUTDOWN_NONE) {
			log_warning("SIGUSR2 ignored: a shutdown is in progress");
			break;
		}
		log_info("SIGUSR2: resuming every database");
		pool_resume(ctx, NULL);
		break;
	default:
		sluice_shutdown(ctx, signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "SIGQUIT");
		break;
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

	if (auth_files_load(cfg, &ctx->auth, err, sizeof(err)) < 0 ||
	    tls_client_ctx_build(cfg, &ctx->client_tls, err, sizeof(err)) < 0 ||
	    sluice_start(ctx, err, sizeof(err)) < 0) {
		log_error("%s", err);
		fprintf(stderr, "sluice: %s\n", err);
		uv_run(&loop, UV_RUN_DEFAULT);   /* let closed listeners finish */
		uv_loop_close(&loop);
		auth_files_free(&ctx->auth);
		SSL_CTX_free(ctx->client_tls);
		config_free(cfg);
		return 1;
	}
	start_signal(ctx, &ctx->sig_int, SIGINT);
	start_signal(ctx, &ctx->sig_term, SIGTERM);
	start_signal(ctx, &ctx->sig_hup, SIGHUP);
	start_signal(ctx, &ctx->sig_quit, SIGQUIT);
	start_signal(ctx, &ctx->sig_usr1, SIGUSR1);
	start_signal(ctx, &ctx->sig_usr2, SIGUSR2);
	log_info("sluice %s started, pool_mode=%s", SLUICE_VERSION, config_pool_mode_name(cfg->pool_mode));

	uv_run(&loop, UV_RUN_DEFAULT);

	/* Everything was asked to close; let the close callbacks run. */
	sluice_reap(ctx);
	uv_close((uv_handle_t *)&ctx->reaper, NULL);
	uv_walk(&loop, walk_close_cb, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	sluice_reap(ctx);
	if (uv_loop_close(&loop) != 0)
		log_warning("event loop closed with handles still open");
	pool_free_all(ctx);
	pstmt_registry_free(&ctx->pstmts);
	var_intern_free(&ctx->var_intern);
	cancel_registry_free(&ctx->cancels);
	log_info("shutdown complete");
	auth_files_free(&ctx->auth);
	SSL_CTX_free(ctx->client_tls);
	config_free(ctx->cfg);
	log_close();
	return 0;
}
