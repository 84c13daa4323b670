/*
 * it_concurrent.c - concurrency driver for the Sluice integration tests.
 *
 * Worker mode: N threads, one blocking libpq connection each (through the
 * pooler), each running M transactions whose answers it can check on its
 * own: a single SELECT that echoes the thread and transaction number, a
 * multi-statement transaction that sets a transaction-local setting and
 * reads it back on the same backend, an extended-protocol query with
 * parameters, and a libpq pipeline holding a whole transaction plus a second
 * implicit one (two Syncs sent before any answer is read).  Meanwhile a monitor thread polls pg_stat_activity directly
 * (not through the pooler) every ~10 ms and records the largest number of
 * client backends of the pool's database and user.
 *
 * Monitor-only mode (-n 0): just the monitor, until the stop file (-x)
 * appears or -s seconds have passed.
 *
 * Output (stdout), one line:
 *   max_backends=K errors=E tx=T distinct_pids=P
 * Exit status: 0 when every answer was right, 1 otherwise, 2 on bad usage.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PIDS 4096
#define MAX_REPORTED_ERRORS 20

struct options {
	const char *pooler;   /* conninfo through the pooler */
	const char *monitor;  /* conninfo straight to PostgreSQL */
	const char *db;       /* pool to watch: database ... */
	const char *user;     /* ... and user */
	const char *stopfile; /* monitor-only: stop when this exists */
	int threads;
	int tx;
	double seconds;
};

static struct options opt;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start_barrier;
static int n_errors;
static long n_tx;
static int pids[MAX_PIDS];
static int n_pids;
static atomic_int workers_done;
static int max_backends = -1;
static int monitor_errors;

static void record_error(int tid, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void record_error(int tid, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&mu);
	n_errors++;
	if (n_errors <= MAX_REPORTED_ERRORS) {
		fprintf(stderr, "thread %d: ", tid);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&mu);
}

static void note_pid(int pid)
{
	pthread_mutex_lock(&mu);
	int i;
	for (i = 0; i < n_pids; i++)
		if (pids[i] == pid)
			break;
	if (i == n_pids && n_pids < MAX_PIDS)
		pids[n_pids++] = pid;
	pthread_mutex_unlock(&mu);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run one command that returns no rows; false (and an error) on failure. */
static int exec_ok(PGconn *c, int tid, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		record_error(tid, "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return ok;
}

/* Run a query expected to return exactly one row of `cols` columns. */
static PGresult *one_row(PGconn *c, int tid, const char *sql, int cols)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != cols) {
		record_error(tid, "%s: status %s, %d rows: %s", sql, PQresStatus(PQresultStatus(r)),
			     PQntuples(r), PQerrorMessage(c));
		PQclear(r);
		return NULL;
	}
	return r;
}

/* A single statement echoing who asked. */
static int tx_echo(PGconn *c, int tid, int i)
{
	char sql[128], want_t[16], want_i[16];
	snprintf(sql, sizeof(sql), "SELECT %d, %d, pg_backend_pid()", tid, i);
	snprintf(want_t, sizeof(want_t), "%d", tid);
	snprintf(want_i, sizeof(want_i), "%d", i);
	PGresult *r = one_row(c, tid, sql, 3);
	if (!r)
		return 0;
	int ok = strcmp(PQgetvalue(r, 0, 0), want_t) == 0 && strcmp(PQgetvalue(r, 0, 1), want_i) == 0;
	if (!ok)
		record_error(tid, "tx %d: got (%s, %s), expected (%s, %s)", i, PQgetvalue(r, 0, 0),
			     PQgetvalue(r, 0, 1), want_t, want_i);
	note_pid(atoi(PQgetvalue(r, 0, 2)));
	PQclear(r);
	return ok;
}

/* A transaction of several statements: its state must stay on one backend. */
static int tx_multi(PGconn *c, int tid, int i)
{
	char sql[160], want[32];
	int ok = 0;
	PGresult *r1 = NULL, *r2 = NULL;

	snprintf(want, sizeof(want), "%d-%d", tid, i);
	if (!exec_ok(c, tid, "BEGIN"))
		return 0;
	snprintf(sql, sizeof(sql), "SELECT set_config('it.owner', '%s', true), pg_backend_pid()", want);
	if (!(r1 = one_row(c, tid, sql, 2)))
		goto out;
	if (!(r2 = one_row(c, tid, "SELECT current_setting('it.owner'), pg_backend_pid(), "
				    "now() = statement_timestamp()", 3)))
		goto out;
	ok = 1;
	if (strcmp(PQgetvalue(r2, 0, 0), want) != 0) {
		record_error(tid, "tx %d: it.owner is %s inside the transaction, expected %s", i,
			     PQgetvalue(r2, 0, 0), want);
		ok = 0;
	}
	if (strcmp(PQgetvalue(r1, 0, 1), PQgetvalue(r2, 0, 1)) != 0) {
		record_error(tid, "tx %d: backend changed inside a transaction (%s then %s)", i,
			     PQgetvalue(r1, 0, 1), PQgetvalue(r2, 0, 1));
		ok = 0;
	}
	note_pid(atoi(PQgetvalue(r2, 0, 1)));
out:
	PQclear(r1);
	PQclear(r2);
	if (!exec_ok(c, tid, ok ? "COMMIT" : "ROLLBACK"))
		ok = 0;
	return ok;
}

/* Extended protocol with parameters (unnamed statement). */
static int tx_extended(PGconn *c, int tid, int i)
{
	char a[16], b[32], want_a[16], want_b[40];
	const char *vals[2] = {a, b};
	snprintf(a, sizeof(a), "%d", i);
	snprintf(b, sizeof(b), "t%d", tid);
	snprintf(want_a, sizeof(want_a), "%d", i + 1);
	snprintf(want_b, sizeof(want_b), "t%d!", tid);
	PGresult *r = PQexecParams(c, "SELECT $1::int + 1, $2::text || '!'", 2, NULL, vals, NULL,
				   NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		record_error(tid, "tx %d extended: %s", i, PQerrorMessage(c));
		PQclear(r);
		return 0;
	}
	int ok = strcmp(PQgetvalue(r, 0, 0), want_a) == 0 && strcmp(PQgetvalue(r, 0, 1), want_b) == 0;
	if (!ok)
		record_error(tid, "tx %d extended: got (%s, %s), expected (%s, %s)", i,
			     PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), want_a, want_b);
	PQclear(r);
	return ok;
}

/* Fetch one pipelined query's result: one PGresult of `want`, then NULL. */
static PGresult *pipe_result(PGconn *c, int tid, ExecStatusType want, const char *what)
{
	PGresult *r = PQgetResult(c), *extra;
	if (!r || PQresultStatus(r) != want) {
		record_error(tid, "pipeline %s: %s (%s)", what,
			     r ? PQresStatus(PQresultStatus(r)) : "no result", PQerrorMessage(c));
		PQclear(r);
		return NULL;
	}
	if (want != PGRES_PIPELINE_SYNC && (extra = PQgetResult(c)) != NULL) {
		record_error(tid, "pipeline %s: unexpected extra result", what);
		PQclear(extra);
	}
	return r;
}

/*
 * libpq pipeline mode: a whole transaction (BEGIN .. COMMIT) sent before any
 * answer is read, then a second implicit transaction, each ended by a Sync.
 */
static int tx_pipeline(PGconn *c, int tid, int i)
{
	char owner[32], num[16], want_num[16];
	const char *p1[1] = {owner}, *p2[1] = {num};
	int ok = 1;
	PGresult *r;

	snprintf(owner, sizeof(owner), "p%d-%d", tid, i);
	snprintf(num, sizeof(num), "%d", i);
	snprintf(want_num, sizeof(want_num), "%d", i * 2);
	if (!PQenterPipelineMode(c)) {
		record_error(tid, "cannot enter pipeline mode: %s", PQerrorMessage(c));
		return 0;
	}
	if (!PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
	    !PQsendQueryParams(c, "SELECT set_config('it.owner', $1, true)", 1, NULL, p1, NULL, NULL, 0) ||
	    !PQsendQueryParams(c, "SELECT current_setting('it.owner'), pg_backend_pid()", 0, NULL, NULL,
			       NULL, NULL, 0) ||
	    !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c) ||
	    !PQsendQueryParams(c, "SELECT $1::int * 2", 1, NULL, p2, NULL, NULL, 0) ||
	    !PQpipelineSync(c)) {
		record_error(tid, "pipeline send: %s", PQerrorMessage(c));
		PQexitPipelineMode(c);
		return 0;
	}
	if ((r = pipe_result(c, tid, PGRES_COMMAND_OK, "BEGIN")))
		PQclear(r);
	else
		ok = 0;
	if ((r = pipe_result(c, tid, PGRES_TUPLES_OK, "set_config")))
		PQclear(r);
	else
		ok = 0;
	if ((r = pipe_result(c, tid, PGRES_TUPLES_OK, "current_setting"))) {
		if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), owner) != 0) {
			record_error(tid, "tx %d pipeline: it.owner is %s, expected %s", i,
				     PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "(no row)", owner);
			ok = 0;
		} else {
			note_pid(atoi(PQgetvalue(r, 0, 1)));
		}
		PQclear(r);
	} else {
		ok = 0;
	}
	if ((r = pipe_result(c, tid, PGRES_COMMAND_OK, "COMMIT")))
		PQclear(r);
	else
		ok = 0;
	if ((r = pipe_result(c, tid, PGRES_PIPELINE_SYNC, "first sync")))
		PQclear(r);
	else
		ok = 0;
	if ((r = pipe_result(c, tid, PGRES_TUPLES_OK, "second query"))) {
		if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), want_num) != 0) {
			record_error(tid, "tx %d pipeline: got %s, expected %s", i,
				     PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "(no row)", want_num);
			ok = 0;
		}
		PQclear(r);
	} else {
		ok = 0;
	}
	if ((r = pipe_result(c, tid, PGRES_PIPELINE_SYNC, "second sync")))
		PQclear(r);
	else
		ok = 0;
	if (!PQexitPipelineMode(c)) {
		record_error(tid, "cannot leave pipeline mode: %s", PQerrorMessage(c));
		ok = 0;
	}
	return ok;
}

static void *worker(void *arg)
{
	int tid = (int)(long)arg;
	PGconn *c = PQconnectdb(opt.pooler);
	int connected = PQstatus(c) == CONNECTION_OK;

	if (!connected)
		record_error(tid, "connect: %s", PQerrorMessage(c));
	/* Everybody starts together, so the pool really is contended. */
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; connected && i < opt.tx; i++) {
		int ok;
		switch (i % 4) {
		case 0:
			ok = tx_echo(c, tid, i);
			break;
		case 1:
			ok = tx_multi(c, tid, i);
			break;
		case 2:
			ok = tx_extended(c, tid, i);
			break;
		default:
			ok = tx_pipeline(c, tid, i);
			break;
		}
		if (ok) {
			pthread_mutex_lock(&mu);
			n_tx++;
			pthread_mutex_unlock(&mu);
		}
		if (PQstatus(c) != CONNECTION_OK) {
			record_error(tid, "connection lost after tx %d: %s", i, PQerrorMessage(c));
			break;
		}
	}
	PQfinish(c);
	return NULL;
}

static void *monitor(void *arg)
{
	(void)arg;
	PGconn *c = PQconnectdb(opt.monitor);
	const char *sql = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
			  " AND datname = $1 AND usename = $2";
	const char *params[2] = {opt.db, opt.user};
	double end = opt.seconds > 0 ? now_s() + opt.seconds : 0;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "monitor: connect: %s", PQerrorMessage(c));
		monitor_errors++;
		PQfinish(c);
		return NULL;
	}
	max_backends = 0;
	for (;;) {
		PGresult *r = PQexecParams(c, sql, 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
			int n = atoi(PQgetvalue(r, 0, 0));
			if (n > max_backends)
				max_backends = n;
		} else {
			fprintf(stderr, "monitor: %s", PQerrorMessage(c));
			monitor_errors++;
		}
		PQclear(r);
		if (workers_done || (end > 0 && now_s() >= end) ||
		    (opt.stopfile && access(opt.stopfile, F_OK) == 0))
			break;
		sleep_ms(10);
	}
	PQfinish(c);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: it_concurrent -m MONITOR_CONNINFO -d DB -u USER\n"
		"                     (-c POOLER_CONNINFO -n THREADS -t TX | -n 0 [-s SECS] [-x STOPFILE])\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "c:m:d:u:n:t:s:x:")) != -1) {
		switch (ch) {
		case 'c':
			opt.pooler = optarg;
			break;
		case 'm':
			opt.monitor = optarg;
			break;
		case 'd':
			opt.db = optarg;
			break;
		case 'u':
			opt.user = optarg;
			break;
		case 'n':
			opt.threads = atoi(optarg);
			break;
		case 't':
			opt.tx = atoi(optarg);
			break;
		case 's':
			opt.seconds = atof(optarg);
			break;
		case 'x':
			opt.stopfile = optarg;
			break;
		default:
			usage();
		}
	}
	if (!opt.monitor || !opt.db || !opt.user || opt.threads < 0 ||
	    (opt.threads > 0 && (!opt.pooler || opt.tx <= 0)) ||
	    (opt.threads == 0 && opt.seconds <= 0 && !opt.stopfile))
		usage();

	pthread_t mon;
	pthread_t *th = calloc((size_t)(opt.threads > 0 ? opt.threads : 1), sizeof(*th));
	if (!th)
		return 2;
	if (pthread_create(&mon, NULL, monitor, NULL) != 0) {
		perror("pthread_create");
		return 2;
	}
	if (opt.threads > 0) {
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		pthread_barrier_init(&start_barrier, NULL, (unsigned)opt.threads);
		for (int i = 0; i < opt.threads; i++) {
			if (pthread_create(&th[i], &attr, worker, (void *)(long)(i + 1)) != 0) {
				perror("pthread_create");
				return 2;
			}
		}
		for (int i = 0; i < opt.threads; i++)
			pthread_join(th[i], NULL);
		pthread_attr_destroy(&attr);
		pthread_barrier_destroy(&start_barrier);
		workers_done = 1;
	}
	pthread_join(mon, NULL);
	free(th);

	printf("max_backends=%d errors=%d tx=%ld distinct_pids=%d\n", max_backends,
	       n_errors + monitor_errors, n_tx, n_pids);
	return n_errors + monitor_errors ? 1 : 0;
}
