/*
 * test_stats.c - histogram geometry, percentiles, Prometheus buckets and
 * PgBouncer's averages (stats.c).
 */
#include "sluice/stats.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* Every value lands in a bucket whose range holds it, and buckets are in order. */
START_TEST(test_index_covers_values)
{
	int last = -1;
	for (uint64_t v = 0; v < 200000; v += (v < 4096 ? 1 : 97)) {
		int i = hist_index(v);
		ck_assert_int_ge(i, last);
		ck_assert_int_lt(i, HIST_BUCKETS);
		ck_assert_uint_ge(hist_bucket_max(i), v);
		if (i > 0)
			ck_assert_uint_lt(hist_bucket_max(i - 1), v);
		last = i;
	}
	ck_assert_int_eq(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
	ck_assert_int_eq(hist_index((uint64_t)1 << 40), HIST_BUCKETS - 1);
}
END_TEST

/* Bucket width is at most 1/16 of its lower bound above 32. */
START_TEST(test_relative_error)
{
	for (int i = 2 * HIST_SUB; i < HIST_BUCKETS; i++) {
		uint64_t lo = hist_bucket_max(i - 1) + 1, hi = hist_bucket_max(i);
		ck_assert_uint_le((hi - lo + 1) * HIST_SUB, lo);
	}
}
END_TEST

START_TEST(test_quantiles)
{
	struct hist *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	const struct hist *both[2] = {a, b};

	ck_assert_uint_eq(hist_quantile(both, 2, 0.5), 0);
	/* 1..1000 us spread over two windows. */
	for (uint64_t v = 1; v <= 1000; v++)
		hist_add(v % 2 ? a : b, v);
	uint64_t p50 = hist_quantile(both, 2, 0.50);
	uint64_t p99 = hist_quantile(both, 2, 0.99);
	uint64_t max = hist_quantile(both, 2, 1.0);
	ck_assert_uint_ge(p50, 500);
	ck_assert_uint_le(p50, 500 + 500 / HIST_SUB);
	ck_assert_uint_ge(p99, 990);
	ck_assert_uint_le(p99, 1000);
	ck_assert_uint_eq(max, 1000);   /* capped at the largest value seen */
	/* One window alone: only odd values. */
	ck_assert_uint_eq(hist_quantile(both, 1, 1.0), 999);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_rotate_forgets_old_window)
{
	struct latency *l = calloc(1, sizeof(*l));
	stats_latency_add(l, LAT_QUERY, 100);
	stats_latency_rotate(l);
	stats_latency_add(l, LAT_QUERY, 200);
	const struct hist *hs[2] = {&l->window[0][LAT_QUERY], &l->window[1][LAT_QUERY]};
	ck_assert_uint_eq(hs[0]->n + hs[1]->n, 2);
	stats_latency_rotate(l);   /* the window with 100 is cleared */
	ck_assert_uint_eq(hs[0]->n + hs[1]->n, 1);
	ck_assert_uint_eq(hist_quantile(hs, 2, 1.0), 200);
	/* The Prometheus histogram keeps everything. */
	ck_assert_uint_eq(l->prom[LAT_QUERY].count, 2);
	ck_assert_uint_eq(l->prom[LAT_QUERY].sum_us, 300);
	free(l);
}
END_TEST

START_TEST(test_prom_buckets)
{
	struct prom_hist h;
	memset(&h, 0, sizeof(h));
	prom_hist_add(&h, 100);        /* le 0.0001: bounds are inclusive */
	prom_hist_add(&h, 101);        /* le 0.00025 */
	prom_hist_add(&h, 99999999);   /* +Inf */
	ck_assert_uint_eq(h.bucket[0], 1);
	ck_assert_uint_eq(h.bucket[1], 1);
	ck_assert_uint_eq(h.bucket[PROM_BUCKETS], 1);
	ck_assert_uint_eq(h.count, 3);
	for (int i = 1; i < PROM_BUCKETS; i++)
		ck_assert_uint_gt(prom_bucket_us[i], prom_bucket_us[i - 1]);
}
END_TEST

START_TEST(test_averages)
{
	struct stats_counters d;
	struct stats_averages a;
	memset(&d, 0, sizeof(d));
	d.xact_count = 120;
	d.query_count = 240;
	d.xact_time = 120 * 500;
	d.query_time = 240 * 100;
	d.server_assignment_count = 60;
	d.wait_time = 60 * 7;
	d.received = 6000;
	stats_averages(&d, 60.0, &a);
	ck_assert_uint_eq(a.xact_count, 2);      /* per second */
	ck_assert_uint_eq(a.query_count, 4);
	ck_assert_uint_eq(a.received, 100);
	ck_assert_uint_eq(a.xact_time, 500);     /* per transaction */
	ck_assert_uint_eq(a.query_time, 100);    /* per query */
	ck_assert_uint_eq(a.wait_time, 7);       /* per assignment */
	memset(&d, 0, sizeof(d));
	stats_averages(&d, 0, &a);               /* nothing happened: no division by 0 */
	ck_assert_uint_eq(a.xact_time, 0);

	struct stats_counters x, y, z;
	memset(&x, 0, sizeof(x));
	memset(&y, 0, sizeof(y));
	x.query_count = 5;
	y.query_count = 7;                       /* shrank (pool recreated): never wraps */
	stats_counters_sub(&z, &x, &y);
	ck_assert_uint_eq(z.query_count, 0);
	stats_counters_add(&x, &y);
	ck_assert_uint_eq(x.query_count, 12);
}
END_TEST

Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("stats");
	tcase_add_test(tc, test_index_covers_values);
	tcase_add_test(tc, test_relative_error);
	tcase_add_test(tc, test_quantiles);
	tcase_add_test(tc, test_rotate_forgets_old_window);
	tcase_add_test(tc, test_prom_buckets);
	tcase_add_test(tc, test_averages);
	suite_add_tcase(s, tc);
	return s;
}
