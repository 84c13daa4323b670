/*
 * fuzz_prepare.c - prepared statements in transaction pooling
 * (src/prepare.c): prep_client_needs() and prep_client_packet() on the
 * client's Parse, Bind, Describe, Close, Execute, Sync and Query messages
 * (registry, per-client names, per-server LRU sets, rewriting and
 * injection), prep_server_needs() and prep_server_packet() on the backend's
 * answers, prep_server_forget(), prep_client_free() and prep_server_free(),
 * called the way client.c's work_packet() and server.c's server_on_packet()
 * call them.
 *
 * The harness plays three clients and three servers of one transaction-mode
 * pool on zeroed structs (no sockets, no loop: conn_update_poll() and
 * conn_pending_to_peer_out() do nothing without a poll handle or a peer;
 * client_fail() does nothing because the fake clients are marked as closing
 * after flush, so a refused message just ends the run).
 *
 * Input: byte 0 sets max_prepared_statements (1..8, or 100 with bit 4),
 * then operations, each an opcode byte and its operands:
 *
 *   op % 6 = 0..2  a client message: a type byte (index into a table of
 *                  frontend types), a length byte (255: two more bytes,
 *                  big-endian), the body; bit 3 of op: the body arrives
 *                  only as far as prep_client_needs() asks
 *   op % 6 = 3     a server answer: a type byte (index into a table of
 *                  backend types); for ErrorResponse a byte picking the
 *                  SQLSTATE
 *   op % 6 = 4     between transactions: another client (bit 0 of the
 *                  operand set) or another server for this client
 *   op % 6 = 5     DISCARD ALL on the server, the server closing, or the
 *                  client leaving
 *
 * Checks besides "no crash, no leak": PKT_NEED_BODY comes before any side
 * effect; the bytes that reach each backend (generated output, then the
 * forwarded part of the client's message) frame into whole messages whose
 * length fields are right (so every Bind rewrite adds up); every named
 * Parse a backend gets uses a pooler name ("_sluice_..."); and once every
 * client and server is gone the statement registry is empty (no reference
 * is leaked or dropped twice).
 *
 * Global state: one config (defaults) made once; everything else is made
 * and freed in each run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/prepare.h"
#include "sluice/proto.h"
#include "sluice/server.h"
#include "sluice/sluice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NCLIENTS 3
#define NSERVERS 3

static const uint8_t client_types[] = {
	PQ_MSG_PARSE, PQ_MSG_BIND, PQ_MSG_DESCRIBE, PQ_MSG_CLOSE, PQ_MSG_EXECUTE,
	PQ_MSG_SYNC, PQ_MSG_QUERY, PQ_MSG_FUNCTION_CALL, PQ_MSG_FLUSH, PQ_MSG_COPY_DATA,
};
static const uint8_t server_types[] = {
	'1', '2', '3', 'Z', 'T', 'n', 'C', 'I', 's', 'E', 'D', 't', 'N', 'S',
};
static const char *const sqlstates[] = { "0A000", "26000", "42P05", "42601", NULL };

struct harness {
	struct sluice *ctx;
	struct pool *pool;
	struct client *clients[NCLIENTS];
	struct server *servers[NSERVERS];
	struct pktbuf wire[NSERVERS];    /* what each backend received */
	int ci, si;                      /* the linked pair */
	int pending_rfq;                 /* ReadyForQuery still to come */
	bool ext_pending;                /* extended protocol until Sync */
	struct pktbuf msg;
};

static struct config *cfg;

/* A cursor over the input. */
struct in {
	const uint8_t *p;
	size_t n;
};

static bool take(struct in *in, uint8_t *b)
{
	if (!in->n)
		return false;
	*b = *in->p++;
	in->n--;
	return true;
}

static bool idle(const struct harness *h)
{
	return h->pending_rfq == 0 && !h->ext_pending;
}

/* Every message on a backend's wire is whole, and named Parses use our names. */
static void check_wire(const struct pktbuf *w)
{
	size_t off = 0;

	while (off < w->len) {
		if (w->len - off < 5)
			abort();
		uint8_t type = w->data[off];
		uint32_t len = proto_get32(w->data + off + 1);
		if (len < 4 || len - 4 > w->len - off - 5) {
			fprintf(stderr, "bad frame on a backend's wire: '%c' len %u\n", type, len);
			abort();
		}
		const uint8_t *body = w->data + off + 5;
		uint32_t blen = len - 4;
		if (type == PQ_MSG_PARSE && blen > 0 && body[0] != '\0' &&
		    (blen < 8 || memcmp(body, "_sluice_", 8) != 0))
			abort();
		off += 1 + len;
	}
}

static void link_pair(struct harness *h)
{
	struct client *c = h->clients[h->ci];
	c->server = h->servers[h->si];
}

static bool client_message(struct harness *h, uint8_t op, struct in *in)
{
	struct client *c = h->clients[h->ci];
	struct server *s = h->servers[h->si];
	uint8_t t, l, hi, lo;

	if (!take(in, &t) || !take(in, &l))
		return false;
	uint8_t type = client_types[t % sizeof(client_types)];
	uint32_t len = l;
	if (l == 255) {
		if (!take(in, &hi) || !take(in, &lo))
			return false;
		len = ((uint32_t)hi << 8) | lo;
	}
	len = (uint32_t)MIN(len, in->n);

	/* The whole message as the client sent it. */
	pktbuf_reset(&h->msg);
	pktbuf_put_byte(&h->msg, type);
	pktbuf_put_int32(&h->msg, len + 4);
	if (len)
		pktbuf_put_bytes(&h->msg, in->p, len);
	in->p += len;
	in->n -= len;
	if (proto_check_header(type, len + 4, true))
		return true;   /* work_packet() fails the client before prepare.c */

	switch (type) {
	case PQ_MSG_QUERY:
	case PQ_MSG_FUNCTION_CALL:
	case PQ_MSG_SYNC:
		h->pending_rfq++;
		h->ext_pending = false;
		break;
	case PQ_MSG_PARSE:
	case PQ_MSG_BIND:
	case PQ_MSG_DESCRIBE:
	case PQ_MSG_EXECUTE:
	case PQ_MSG_CLOSE:
		h->ext_pending = true;
		break;
	default:
		break;
	}
	if (!prep_active(c))
		abort();

	const uint8_t *body = h->msg.data + 5;
	uint32_t need = prep_client_needs(c, type, len);
	uint32_t avail = (op & 8) ? need : len;
	enum pkt_action a;
	for (int tries = 0;; tries++) {
		size_t before = s->conn.out.len;
		a = prep_client_packet(c, type, len, body, avail);
		if (a != PKT_NEED_BODY)
			break;
		if (s->conn.out.len != before || tries > 100 || avail >= len)
			abort();   /* NEED_BODY after a side effect, or for nothing */
		/* conn.c: the handler's need_bytes, else the whole body. */
		uint32_t want = c->conn.need_bytes ? MIN(c->conn.need_bytes, len) : len;
		c->conn.need_bytes = 0;
		if (want <= avail)
			abort();
		avail = want;
	}

	/* What reaches the backend: the generated bytes, then the message. */
	struct pktbuf *w = &h->wire[h->si];
	if (s->conn.out.len)
		pktbuf_put_bytes(w, s->conn.out.data, s->conn.out.len);
	pktbuf_reset(&s->conn.out);
	switch (a) {
	case PKT_FORWARD: {
		uint32_t skip = MIN(c->conn.skip_prefix, 5 + avail);
		c->conn.skip_prefix = 0;
		if (h->msg.len > skip)
			pktbuf_put_bytes(w, h->msg.data + skip, h->msg.len - skip);
		break;
	}
	case PKT_SKIP:
		if (c->conn.skip_prefix)
			abort();
		break;
	case PKT_CLOSED:
		return false;   /* client_fail(): the client is gone */
	default:
		abort();
	}
	check_wire(w);
	return true;
}

static bool server_answer(struct harness *h, struct in *in)
{
	struct server *s = h->servers[h->si];
	uint8_t t, e;

	if (!take(in, &t))
		return false;
	uint8_t type = server_types[t % sizeof(server_types)];
	pktbuf_reset(&h->msg);
	switch (type) {
	case 'E':
	case 'N': {
		if (!take(in, &e))
			return false;
		const char *st = sqlstates[e % ARRAY_SIZE(sqlstates)];
		pktbuf_put_byte(&h->msg, 'S');
		pktbuf_put_string(&h->msg, "ERROR");
		if (st) {
			pktbuf_put_byte(&h->msg, 'C');
			pktbuf_put_string(&h->msg, st);
		}
		pktbuf_put_byte(&h->msg, 'M');
		pktbuf_put_string(&h->msg, "fuzz");
		pktbuf_put_byte(&h->msg, 0);
		break;
	}
	case 'Z':
		pktbuf_put_byte(&h->msg, 'I');
		if (h->pending_rfq > 0)
			h->pending_rfq--;
		break;
	case 'C':
		pktbuf_put_string(&h->msg, "SELECT 1");
		break;
	default:
		break;
	}
	uint32_t len = (uint32_t)h->msg.len;
	if (s->prep) {
		uint32_t need = prep_server_needs(s, type, len);
		if (need > len)
			abort();
		(void)prep_server_packet(s, type, len, h->msg.data, len);
	}
	return true;
}

static bool switch_pair(struct harness *h, struct in *in)
{
	uint8_t b;

	if (!take(in, &b))
		return false;
	if (!idle(h))
		return true;
	h->clients[h->ci]->server = NULL;
	if (b & 1)
		h->ci = (b >> 1) % NCLIENTS;
	else
		h->si = (b >> 1) % NSERVERS;
	link_pair(h);
	return true;
}

static bool lifecycle(struct harness *h, struct in *in)
{
	uint8_t b;

	if (!take(in, &b))
		return false;
	switch (b % 3) {
	case 0:
		if (idle(h))
			prep_server_forget(h->servers[h->si]);   /* server_reset_query */
		break;
	case 1:
		/* The backend connection is lost: a fresh one takes its place. */
		prep_server_free(h->servers[h->si]);
		pktbuf_reset(&h->wire[h->si]);
		h->pending_rfq = 0;
		h->ext_pending = false;
		break;
	case 2:
		if (idle(h))
			prep_client_free(h->clients[h->ci]);   /* disconnect, reconnect */
		break;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct harness h;
	struct in in = { data, size };
	uint8_t b, op;

	if (!cfg) {
		cfg = config_defaults();
		log_threshold = -1;   /* prepare.c warns about odd answers */
	}
	if (!take(&in, &b))
		return 0;
	cfg->max_prepared_statements = (b & 16) ? 100 : 1 + (b & 7);

	memset(&h, 0, sizeof(h));
	h.ctx = xcalloc(1, sizeof(*h.ctx));
	h.ctx->cfg = cfg;
	h.pool = xcalloc(1, sizeof(*h.pool));
	h.pool->ctx = h.ctx;
	h.pool->pool_mode = POOL_MODE_TRANSACTION;
	for (int i = 0; i < NCLIENTS; i++) {
		struct client *c = xcalloc(1, sizeof(*c));
		c->ctx = h.ctx;
		c->pool = h.pool;
		c->id = (uint64_t)i + 1;
		c->conn.close_after_flush = true;   /* client_fail() does nothing */
		pktbuf_init(&c->conn.out);
		h.clients[i] = c;
	}
	for (int i = 0; i < NSERVERS; i++) {
		struct server *s = xcalloc(1, sizeof(*s));
		s->pool = h.pool;
		s->id = (uint64_t)i + 1;
		pktbuf_init(&s->conn.out);
		pktbuf_init(&h.wire[i]);
		h.servers[i] = s;
	}
	pktbuf_init(&h.msg);
	link_pair(&h);

	for (bool go = true; go && take(&in, &op);) {
		switch (op % 6) {
		case 0:
		case 1:
		case 2:
			go = client_message(&h, op, &in);
			break;
		case 3:
			go = server_answer(&h, &in);
			break;
		case 4:
			go = switch_pair(&h, &in);
			break;
		case 5:
			go = lifecycle(&h, &in);
			break;
		}
	}

	for (int i = 0; i < NCLIENTS; i++) {
		prep_client_free(h.clients[i]);
		pktbuf_free(&h.clients[i]->conn.out);
		free(h.clients[i]);
	}
	for (int i = 0; i < NSERVERS; i++) {
		prep_server_free(h.servers[i]);
		pktbuf_free(&h.servers[i]->conn.out);
		pktbuf_free(&h.wire[i]);
		free(h.servers[i]);
	}
	if (h.ctx->pstmts.count != 0) {
		fprintf(stderr, "%u statements left in the registry with no user\n",
			h.ctx->pstmts.count);
		abort();
	}
	pstmt_registry_free(&h.ctx->pstmts);
	pktbuf_free(&h.msg);
	free(h.pool);
	free(h.ctx);
	return 0;
}
