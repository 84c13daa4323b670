/*
 * metrics.h - what the HTTP endpoint serves: /metrics (Prometheus text
 * format 0.0.4), /healthz and /readyz.
 *
 * Every figure is read from the live state when scraped (list lengths,
 * counters, histograms); nothing is kept per scrape.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include "sluice/http.h"
#include "sluice/pktbuf.h"

struct sluice;

/* The http_handler_fn for the endpoint; arg is the struct sluice. */
void metrics_http_handler(void *arg, const char *method, const char *path,
			  struct http_response *resp);

/* Append the Prometheus exposition of ctx to body. */
void metrics_render(struct sluice *ctx, struct pktbuf *body);

/* True when ready; otherwise why (a short sentence) in why. */
bool metrics_ready(const struct sluice *ctx, char *why, size_t len);

#endif /* SLUICE_METRICS_H */
