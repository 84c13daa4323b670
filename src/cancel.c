/*
 * cancel.c - fake cancel keys and asynchronous CancelRequests (see cancel.h).
 *
 *   CancelRequest(pid, key) --lookup--> client --linked, query running?--> server
 *        |                                                    |
 *      close                        connect to the server's address (TCP or unix)
 *                                   write 16 bytes, wait for EOF (or the deadline)
 *                                   server held back from release meanwhile
 */
#include "sluice/cancel.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/proto.h"
#include "sluice/server.h"
#include "sluice/sluice.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* One forwarded cancel: a short-lived connection to the backend. */
struct cancel_req {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	uv_connect_t connect;
	uv_write_t write;
	uint8_t pkt[16];
	char buf[64];              /* the server sends nothing; EOF is the answer */
	struct sluice *ctx;
	struct server *server;     /* NULL once the server went away */
	uint64_t deadline_ms;
	struct list node;          /* on ctx->cancels.inflight */
	bool closing;
};

void cancel_registry_init(struct cancel_registry *r)
{
	memset(r, 0, sizeof(*r));
	statlist_init(&r->inflight);
}

void cancel_registry_free(struct cancel_registry *r)
{
	free(r->buckets);
	r->buckets = NULL;
	r->nbuckets = r->count = 0;
}

static size_t bucket_of(const struct cancel_registry *r, uint32_t pid)
{
	return (pid * 2654435761u) & (r->nbuckets - 1);
}

static void grow(struct cancel_registry *r)
{
	size_t n = r->nbuckets ? r->nbuckets * 2 : 256;
	struct client **old = r->buckets;
	size_t oldn = r->nbuckets;

	r->buckets = xcalloc(n, sizeof(*r->buckets));
	r->nbuckets = n;
	for (size_t i = 0; i < oldn; i++) {
		struct client *c = old[i], *next;
		for (; c; c = next) {
			next = c->cancel_next;
			size_t b = bucket_of(r, c->cancel_pid);
			c->cancel_next = r->buckets[b];
			r->buckets[b] = c;
		}
	}
	free(old);
}

/*
 * Two random words for a cancel key.  The kernel's generator, read in
 * batches: a getrandom() call per login would be a system call more per
 * connection (OpenSSL's RAND_bytes() costs more instructions than that).
 */
static bool random_words(struct cancel_registry *r, uint32_t out[2])
{
	if (r->rnd_left < 2) {
		if (getrandom(r->rnd, sizeof(r->rnd), 0) != (ssize_t)sizeof(r->rnd))
			return false;
		r->rnd_left = ARRAY_SIZE(r->rnd);
	}
	for (int i = 0; i < 2; i++) {
		out[i] = r->rnd[--r->rnd_left];
		r->rnd[r->rnd_left] = 0;   /* each word is used once */
	}
	return true;
}

void cancel_register(struct sluice *ctx, struct client *c)
{
	struct cancel_registry *r = &ctx->cancels;
	uint32_t rnd[2] = {0, 0};

	if (!random_words(r, rnd))
		rnd[0] = (uint32_t)c->id;   /* never reached on Linux >= 3.17 */
	c->cancel_pid = rnd[0] & 0x7fffffff;   /* a pid is positive */
	c->cancel_key = rnd[1];
	if (r->count + 1 > r->nbuckets)
		grow(r);
	size_t b = bucket_of(r, c->cancel_pid);
	c->cancel_next = r->buckets[b];
	r->buckets[b] = c;
	r->count++;
	c->cancel_registered = true;
}

void cancel_unregister(struct sluice *ctx, struct client *c)
{
	struct cancel_registry *r = &ctx->cancels;

	if (!c->cancel_registered)
		return;
	for (struct client **p = &r->buckets[bucket_of(r, c->cancel_pid)]; *p; p = &(*p)->cancel_next) {
		if (*p == c) {
			*p = c->cancel_next;
			r->count--;
			break;
		}
	}
	c->cancel_registered = false;
	c->cancel_next = NULL;
}

static struct client *lookup(struct cancel_registry *r, uint32_t pid, uint32_t key)
{
	struct client *found = NULL;
	uint8_t want[4];

	if (!r->nbuckets)
		return NULL;
	proto_put32(want, key);
	for (struct client *c = r->buckets[bucket_of(r, pid)]; c; c = c->cancel_next) {
		uint8_t have[4];
		proto_put32(have, c->cancel_key);
		/* Every candidate with this pid is compared, in constant time. */
		if (c->cancel_pid == pid && CRYPTO_memcmp(have, want, 4) == 0)
			found = c;
	}
	return found;
}

/* ---- the forwarded request ---------------------------------------------- */

static void req_close_cb(uv_handle_t *h)
{
	free(container_of(h, struct cancel_req, h.handle));
}

static void req_finish(struct cancel_req *req, const char *why)
{
	struct server *s = req->server;

	if (req->closing)
		return;
	req->closing = true;
	statlist_remove(&req->ctx->cancels.inflight, &req->node);
	log_debug("cancel request to backend %u finished: %s", s ? s->backend_pid : 0, why);
	if (s) {
		req->server = NULL;
		server_cancel_done(s);
	}
	uv_close(&req->h.handle, req_close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct cancel_req *req = container_of(h, struct cancel_req, h.handle);
	(void)suggested;
	*buf = uv_buf_init(req->buf, sizeof(req->buf));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	(void)buf;
	if (n < 0)
		req_finish(container_of(st, struct cancel_req, h.stream), "server closed");
}

static void write_cb(uv_write_t *w, int status)
{
	struct cancel_req *req = container_of(w, struct cancel_req, write);
	if (req->closing)
		return;
	if (status < 0 || uv_read_start(&req->h.stream, alloc_cb, read_cb) < 0)
		req_finish(req, status < 0 ? uv_strerror(status) : "read failed");
}

static void connect_cb(uv_connect_t *cr, int status)
{
	struct cancel_req *req = container_of(cr, struct cancel_req, connect);
	if (req->closing)
		return;
	uv_buf_t b = uv_buf_init((char *)req->pkt, sizeof(req->pkt));
	if (status < 0 || uv_write(&req->write, &req->h.stream, &b, 1, write_cb) < 0)
		req_finish(req, status < 0 ? uv_strerror(status) : "write failed");
}

static void forward(struct sluice *ctx, struct server *s)
{
	struct cancel_req *req = xcalloc(1, sizeof(*req));
	int rc;

	req->ctx = ctx;
	req->server = s;
	req->deadline_ms = sluice_now(ctx) + (uint64_t)(ctx->cfg->cancel_wait_timeout * 1000.0);
	proto_put32(req->pkt, 16);
	proto_put32(req->pkt + 4, PROTO_CANCEL_REQUEST);
	proto_put32(req->pkt + 8, s->backend_pid);
	proto_put32(req->pkt + 12, s->cancel_key);
	if (s->cancel_unix) {
		uv_pipe_init(ctx->loop, &req->h.pipe, 0);
		uv_pipe_connect(&req->connect, &req->h.pipe, s->cancel_addr, connect_cb);
		rc = 0;
	} else {
		struct sockaddr_storage ss;
		uv_tcp_init(ctx->loop, &req->h.tcp);
		rc = strchr(s->cancel_addr, ':')
			     ? uv_ip6_addr(s->cancel_addr, s->cancel_port, (struct sockaddr_in6 *)&ss)
			     : uv_ip4_addr(s->cancel_addr, s->cancel_port, (struct sockaddr_in *)&ss);
		if (rc == 0)
			rc = uv_tcp_connect(&req->connect, &req->h.tcp, (struct sockaddr *)&ss, connect_cb);
	}
	s->cancels_inflight++;
	statlist_append(&ctx->cancels.inflight, &req->node);
	if (rc < 0)
		req_finish(req, uv_strerror(rc));
}

void cancel_request(struct sluice *ctx, uint32_t pid, uint32_t key)
{
	struct client *c = lookup(&ctx->cancels, pid, key);
	struct server *s = c ? c->server : NULL;

	/* Only a query that is running can be cancelled; anything else is
	 * ignored without a word, as PostgreSQL does. */
	if (!s || !s->cancel_addr || (s->pending_rfq == 0 && !s->ext_pending))
		return;
	forward(ctx, s);
}

void cancel_server_query(struct sluice *ctx, struct server *s)
{
	if (s->cancel_addr)
		forward(ctx, s);
}

void cancel_server_gone(struct sluice *ctx, struct server *s)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, &ctx->cancels.inflight) {
		struct cancel_req *req = container_of(it, struct cancel_req, node);
		if (req->server == s)
			req->server = NULL;
	}
	s->cancels_inflight = 0;
}

void cancel_janitor(struct sluice *ctx, uint64_t now)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, &ctx->cancels.inflight) {
		struct cancel_req *req = container_of(it, struct cancel_req, node);
		if (now >= req->deadline_ms)
			req_finish(req, "cancel_wait_timeout");
	}
}

void cancel_close_all(struct sluice *ctx)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, &ctx->cancels.inflight) {
		req_finish(container_of(it, struct cancel_req, node), "shutting down");
	}
}
