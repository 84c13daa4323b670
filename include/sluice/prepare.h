/*
 * prepare.h - protocol-level named prepared statements in transaction and
 * statement pooling (max_prepared_statements > 0).
 *
 * A client's next transaction may run on a backend that never saw its
 * Parse.  So the pooler keeps:
 *   - a registry of distinct statements (query text + parameter types),
 *     each with a pooler-wide name "_sluice_<n>";
 *   - per client, its statement names -> registry entries;
 *   - per server, which entries exist on that backend (an LRU set of at
 *     most max_prepared_statements; evicted ones are closed there);
 *   - per server, the queue of messages sent and not answered yet, so that
 *     the answers to messages the pooler injected are recognised and
 *     swallowed, and nothing else is reordered.
 *
 * The pooler never invents an answer: when a client's Parse names a
 * statement the backend already has, the Parse becomes a Parse of an empty
 * scratch statement (whose real ParseComplete the client gets); a client's
 * Close of a statement becomes a Close of a name that does not exist (a real
 * CloseComplete).  Only answers to injected messages are dropped.
 */
#ifndef SLUICE_PREPARE_H
#define SLUICE_PREPARE_H

#include "sluice/conn.h"

struct sluice;
struct client;
struct server;
struct pstmt;

/* The registry of distinct statements (one per loop). */
struct pstmt_registry {
	struct pstmt **buckets;
	uint32_t nbuckets;
	uint32_t count;
	uint64_t next_id;
};

void pstmt_registry_free(struct pstmt_registry *r);

/* Is tracking on for this client's current link? */
bool prep_active(const struct client *c);

/* Body bytes a client message needs before prep_client_packet() can
 * decide (0 = none); len is the body length. */
uint32_t prep_client_needs(const struct client *c, uint8_t type, uint32_t len);

/* A client message on a tracked link: forward, rewrite or inject. */
enum pkt_action prep_client_packet(struct client *c, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail);

/* Body bytes a server message needs (0 = none). */
uint32_t prep_server_needs(const struct server *s, uint8_t type, uint32_t len);

/*
 * A server message while messages are outstanding: returns PKT_SKIP for
 * answers to injected messages, PKT_FORWARD otherwise (the caller then does
 * its usual handling).
 */
enum pkt_action prep_server_packet(struct server *s, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail);

/* The backend forgot its statements (DISCARD ALL, DEALLOCATE ALL). */
void prep_server_forget(struct server *s);

/* Statements known to exist on the server / named by the client. */
int prep_server_count(const struct server *s);
int prep_client_count(const struct client *c);

void prep_client_free(struct client *c);
void prep_server_free(struct server *s);

#endif /* SLUICE_PREPARE_H */
