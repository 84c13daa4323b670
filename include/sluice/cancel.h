/*
 * cancel.h - fake cancel keys for clients and asynchronous CancelRequests to
 * the backend that runs the client's query (DESIGN.md §5 rule 10).
 *
 * Each logged-in client is registered under its fake (pid, key).  A
 * CancelRequest carrying them is forwarded only when that client is linked
 * to a server that is running its query: a new connection to the exact
 * address libpq used sends the 16-byte request and waits for the server to
 * close it, under a deadline checked by the janitor.  While a cancel is in
 * flight its server is not released to another client (the cancel could
 * otherwise hit the next client's query).  A request with an unknown pid, a
 * wrong key or an idle client does nothing and reveals nothing; keys are
 * compared in constant time.
 */
#ifndef SLUICE_CANCEL_H
#define SLUICE_CANCEL_H

#include "sluice/common.h"
#include "sluice/list.h"

struct sluice;
struct client;
struct server;

/* The registry of fake keys and the cancels in flight (part of the context). */
struct cancel_registry {
	struct client **buckets;   /* chained through client.cancel_next */
	size_t nbuckets;           /* power of two, or 0 before first use */
	size_t count;
	struct statlist inflight;  /* struct cancel_req.node */
	uint32_t rnd[64];          /* random words for new keys, used from the end */
	uint32_t rnd_left;
};

void cancel_registry_init(struct cancel_registry *r);
void cancel_registry_free(struct cancel_registry *r);

/* Give a client a fresh random key and register it. */
void cancel_register(struct sluice *ctx, struct client *c);
void cancel_unregister(struct sluice *ctx, struct client *c);

/* Handle a CancelRequest's pid and key (the requesting connection is closed by the caller). */
void cancel_request(struct sluice *ctx, uint32_t pid, uint32_t key);

/* Cancel whatever the server is running (query_timeout). */
void cancel_server_query(struct sluice *ctx, struct server *s);

/* A server goes away: forget it in cancels in flight. */
void cancel_server_gone(struct sluice *ctx, struct server *s);

/* Close cancels past their deadline; called by the janitor. */
void cancel_janitor(struct sluice *ctx, uint64_t now);

/* Close every cancel in flight (shutdown). */
void cancel_close_all(struct sluice *ctx);

#endif /* SLUICE_CANCEL_H */
