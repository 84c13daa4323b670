/*
 * stats.h - PgBouncer's counters and Sluice's latency histograms.
 *
 * Every pool carries a struct pool_stats: running totals (what SHOW
 * STATS_TOTALS and the Prometheus counters report), the totals as they were
 * at the last stats_period tick, and the difference over the last complete
 * period (what SHOW STATS_AVERAGES and log_stats report).  Totals are only
 * ever added to; the averages are derived from one period's difference.
 *
 * Latency histograms (query, transaction, wait) have fixed memory and no
 * allocation per sample:
 *   - a log-linear histogram (16 sub-buckets per power of two, 528
 *     buckets, at most 1/16 relative error) per period window; the current
 *     and the previous window together give SHOW LATENCY's percentiles,
 *     so they cover the last one to two stats periods;
 *   - a cumulative histogram with Prometheus' usual bucket bounds, which
 *     /metrics exports.
 *
 * This module is pure: times come in as microseconds, nothing here reads a
 * clock or a socket.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include "sluice/common.h"

/* The counters of SHOW STATS, in its column order.  Times in microseconds. */
#define STATS_COUNTERS(X)                                                            \
	X(xact_count, "SQL transactions pooled")                                     \
	X(query_count, "SQL commands pooled")                                        \
	X(server_assignment_count, "times a server was assigned to a client")        \
	X(server_closed_count, "server connections closed")                          \
	X(received, "bytes received from clients")                                   \
	X(sent, "bytes sent to clients")                                             \
	X(xact_time, "microseconds spent in transactions on a server")               \
	X(query_time, "microseconds spent running queries on a server")              \
	X(wait_time, "microseconds clients waited for a server")                     \
	X(server_lifetime, "microseconds of lifetime of closed server connections")  \
	X(client_parse_count, "prepared statements created by clients")              \
	X(server_parse_count, "prepared statements created by the pooler on servers") \
	X(bind_count, "prepared statements readied for execution by clients")

struct stats_counters {
#define X(name, help) uint64_t name;
	STATS_COUNTERS(X)
#undef X
};

/* Log-linear histogram geometry. */
#define HIST_SUB_BITS 4
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_MAX_MSB 35   /* values of 2^36 us (19 hours) and more share the last bucket */
#define HIST_BUCKETS ((HIST_MAX_MSB - HIST_SUB_BITS + 2) * HIST_SUB)

struct hist {
	uint32_t count[HIST_BUCKETS];
	uint64_t n;
	uint64_t max;
};

/* Prometheus bucket upper bounds, in microseconds (the +Inf bucket is extra). */
#define PROM_BUCKETS 16
extern const uint64_t prom_bucket_us[PROM_BUCKETS];

struct prom_hist {
	uint64_t bucket[PROM_BUCKETS + 1];   /* not cumulative; last = over all bounds */
	uint64_t count;
	uint64_t sum_us;
};

enum lat_kind {
	LAT_QUERY = 0,
	LAT_XACT,
	LAT_WAIT,
	LAT_KINDS,
};

extern const char *const lat_kind_names[LAT_KINDS];  /* "query", "xact", "wait" */

struct latency {
	struct hist window[2][LAT_KINDS];    /* [cur] fills, [!cur] is the previous period */
	int cur;
	struct prom_hist prom[LAT_KINDS];    /* since start, for /metrics */
};

struct pool_stats {
	struct stats_counters total;   /* since start (bytes of live clients excluded) */
	struct stats_counters snap;    /* totals (with live bytes) at the last tick */
	struct stats_counters period;  /* difference over the last complete period */
	struct latency lat;
};

/* Bucket of a value, and the largest value that falls into a bucket. */
int hist_index(uint64_t v);
uint64_t hist_bucket_max(int idx);

void hist_add(struct hist *h, uint64_t v);

/*
 * The q-quantile (0 < q <= 1) of the union of n histograms: the upper bound
 * of the bucket holding it, capped at the largest value seen.  0 when empty.
 */
uint64_t hist_quantile(const struct hist *const *hs, int n, double q);

void prom_hist_add(struct prom_hist *h, uint64_t v);

/* Record one latency sample (microseconds) in both histograms. */
void stats_latency_add(struct latency *l, enum lat_kind kind, uint64_t us);

/* Start a new window: the current one becomes the previous one. */
void stats_latency_rotate(struct latency *l);

/* a += b, field by field; d = a - b. */
void stats_counters_add(struct stats_counters *a, const struct stats_counters *b);
void stats_counters_sub(struct stats_counters *d, const struct stats_counters *a,
			const struct stats_counters *b);

/*
 * PgBouncer's averages of one period's difference d over `seconds`:
 * counts and bytes per second, times per transaction / query / assignment /
 * closed server.
 */
struct stats_averages {
#define X(name, help) uint64_t name;
	STATS_COUNTERS(X)
#undef X
};
void stats_averages(const struct stats_counters *d, double seconds, struct stats_averages *out);

/* Microseconds on a monotonic clock. */
uint64_t stats_now_us(void);

#endif /* SLUICE_STATS_H */
