/*
 * stats.c - counter arithmetic and fixed-size latency histograms.
 *
 * Owns no state of its own: pools embed struct pool_stats, and the pooler
 * decides when samples happen and when a period ends (pool.c / sluice.c).
 */
#include "sluice/stats.h"

#include <string.h>
#include <uv.h>

const uint64_t prom_bucket_us[PROM_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

const char *const lat_kind_names[LAT_KINDS] = { "query", "xact", "wait" };

/*
 * Values below 2 * HIST_SUB have a bucket each; above, every power of two
 * is split into HIST_SUB equal sub-buckets.
 */
int hist_index(uint64_t v)
{
	if (v < 2 * HIST_SUB)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	if (msb > HIST_MAX_MSB)
		return HIST_BUCKETS - 1;
	int shift = msb - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (int)((v >> shift) - HIST_SUB);
}

uint64_t hist_bucket_max(int idx)
{
	if (idx < 2 * HIST_SUB)
		return (uint64_t)idx;
	int shift = idx / HIST_SUB - 1;
	uint64_t low = (uint64_t)(idx % HIST_SUB + HIST_SUB) << shift;
	return low + ((uint64_t)1 << shift) - 1;
}

void hist_add(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

uint64_t hist_quantile(const struct hist *const *hs, int n, double q)
{
	uint64_t total = 0, max = 0;

	for (int i = 0; i < n; i++) {
		total += hs[i]->n;
		if (hs[i]->max > max)
			max = hs[i]->max;
	}
	if (total == 0)
		return 0;
	/* The rank of the sample at quantile q, 1-based (nearest rank). */
	uint64_t rank = (uint64_t)(q * (double)total + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > total)
		rank = total;
	uint64_t seen = 0;
	for (int b = 0; b < HIST_BUCKETS; b++) {
		for (int i = 0; i < n; i++)
			seen += hs[i]->count[b];
		if (seen >= rank) {
			uint64_t v = hist_bucket_max(b);
			return v < max ? v : max;
		}
	}
	return max;
}

void prom_hist_add(struct prom_hist *h, uint64_t v)
{
	int i = 0;
	while (i < PROM_BUCKETS && v > prom_bucket_us[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum_us += v;
}

void stats_latency_add(struct latency *l, enum lat_kind kind, uint64_t us)
{
	hist_add(&l->window[l->cur][kind], us);
	prom_hist_add(&l->prom[kind], us);
}

void stats_latency_rotate(struct latency *l)
{
	l->cur = !l->cur;
	for (int k = 0; k < LAT_KINDS; k++) {
		struct hist *h = &l->window[l->cur][k];
		memset(h, 0, sizeof(*h));
	}
}

void stats_counters_add(struct stats_counters *a, const struct stats_counters *b)
{
#define X(name, help) a->name += b->name;
	STATS_COUNTERS(X)
#undef X
}

void stats_counters_sub(struct stats_counters *d, const struct stats_counters *a,
			const struct stats_counters *b)
{
	/* A counter can only shrink when a pool was recreated; never wrap. */
#define X(name, help) d->name = a->name >= b->name ? a->name - b->name : 0;
	STATS_COUNTERS(X)
#undef X
}

static uint64_t per(uint64_t v, uint64_t n)
{
	return n ? v / n : 0;
}

void stats_averages(const struct stats_counters *d, double seconds, struct stats_averages *out)
{
	double s = seconds > 0 ? seconds : 1;

	memset(out, 0, sizeof(*out));
	out->xact_count = (uint64_t)((double)d->xact_count / s);
	out->query_count = (uint64_t)((double)d->query_count / s);
	out->server_assignment_count = (uint64_t)((double)d->server_assignment_count / s);
	out->server_closed_count = (uint64_t)((double)d->server_closed_count / s);
	out->received = (uint64_t)((double)d->received / s);
	out->sent = (uint64_t)((double)d->sent / s);
	out->xact_time = per(d->xact_time, d->xact_count);
	out->query_time = per(d->query_time, d->query_count);
	out->wait_time = per(d->wait_time, d->server_assignment_count);
	out->server_lifetime = per(d->server_lifetime, d->server_closed_count);
	out->client_parse_count = (uint64_t)((double)d->client_parse_count / s);
	out->server_parse_count = (uint64_t)((double)d->server_parse_count / s);
	out->bind_count = (uint64_t)((double)d->bind_count / s);
}

uint64_t stats_now_us(void)
{
	return uv_hrtime() / 1000;
}
