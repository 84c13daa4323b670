/*
 * fuzz_framing.c - message framing in the I/O engine (src/conn.c): how a
 * connection cuts what a client sends into startup packets and typed
 * messages (header checks, buffer growth and compaction in make_room(),
 * partial bodies, PKT_NEED_BODY with and without need_bytes, waits, skips,
 * FORWARD_STOP/SKIP_STOP) and relays the forwarded ones to its peer.
 *
 * The harness sets up what test/unit/test_conn.c does, on one libuv loop:
 *
 *   input --> a_far ==[socketpair]== conn A --relays to--> conn B ==[socketpair]== b_far --> got
 *
 * Input layout: byte 0 picks A's pkt_buf (64, 256, 1024 or 8192 bytes),
 * byte 1 how many startup packets come first (0, 1 or 2, as after an
 * SSLRequest; bit 7: A has an on_bad_length callback that holds a bad
 * header once, then closes), byte 2 the number D of decision bytes that
 * follow; the rest
 * is what the client sends (then it half-closes).  A's protocol callback
 * answers each message with the next decision byte: forward, skip, need the
 * body (all of it or need_bytes more), wait, forward-stop or skip-stop; it
 * resumes A on the next loop turn after a wait or a stop.
 *
 * Checks besides "no crash, no leak": every message presented has the type,
 * length and body bytes the harness finds by framing the input itself, and
 * avail never exceeds the body; PKT_NEED_BODY is only answered with more
 * bytes; an error is one the engine documents; what B's socket received is
 * exactly the forwarded messages, in order (a prefix of them when A failed
 * on a bad header); both connections close, and the loop ends with no
 * handle left.
 *
 * Global state: one uv_loop_t, empty between runs.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "sluice/conn.h"
#include "sluice/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WIRE   (128u * 1024u)
#define SPIN_CAP   100000

struct tconn {
	struct conn conn;
	int closed;
	char error[128];
};

static uv_loop_t loop;
static bool loop_ok;

/* Everything else is reset at the start of each run. */
static struct {
	struct tconn a, b;
	int a_far, b_far;

	const uint8_t *wire;      /* what the client sends */
	size_t wire_len;
	size_t off;               /* start of the next message in wire */
	int startups;             /* startup packets still expected */
	const uint8_t *dec;       /* decision bytes */
	size_t ndec, idec;
	bool waited;              /* this message got its one PKT_WAIT */
	bool resume;              /* resume A on the next turn */
	bool bad_header;          /* A refused a header */
	struct pktbuf expect;     /* forwarded messages, clipped at the input's end */
	struct pktbuf got;        /* what b_far read */
} h;

static uint8_t next_decision(void)
{
	if (h.ndec == 0)
		return 0;
	return h.dec[h.idec++ % h.ndec];
}

/* The message at h.off as the harness frames it: header size, total size. */
static void frame(uint32_t *hdr, uint64_t *total, uint8_t *type, uint32_t *len)
{
	const uint8_t *p = h.wire + h.off;
	size_t left = h.wire_len - h.off;

	if (h.startups > 0) {
		if (left < 4)
			abort();
		*hdr = 0;
		*type = 0;
		*len = proto_get32(p);
		*total = *len;
	} else {
		if (left < 5)
			abort();
		*hdr = 5;
		*type = p[0];
		*len = proto_get32(p + 1) - 4;
		*total = 5 + (uint64_t)*len;
	}
}

static void decided(bool forward, uint64_t total)
{
	if (forward) {
		size_t n = (size_t)MIN(total, (uint64_t)(h.wire_len - h.off));
		pktbuf_put_bytes(&h.expect, h.wire + h.off, n);
	}
	h.off = (size_t)MIN((uint64_t)h.wire_len, h.off + total);
	if (h.startups > 0 && --h.startups == 0)
		h.a.conn.startup = false;
	h.waited = false;
}

static enum pkt_action a_on_packet(struct conn *c, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	uint32_t hdr, flen;
	uint64_t total;
	uint8_t ftype;

	if (c->closing || h.off >= h.wire_len)
		abort();
	frame(&hdr, &total, &ftype, &flen);
	if (type != ftype || len != flen || avail > len || avail > h.wire_len - h.off - hdr ||
	    memcmp(body, h.wire + h.off + hdr, avail) != 0) {
		fprintf(stderr, "presented type %u len %u avail %u; framed type %u len %u\n",
			type, len, avail, ftype, flen);
		abort();
	}
	uint8_t d = next_decision();
	switch (d % 8) {
	case 3:
		decided(false, total);
		return PKT_SKIP;
	case 4:
		/* As client.c: a startup packet is only buffered up to 10,000. */
		if (avail < len && (hdr || len <= PROTO_MAX_STARTUP)) {
			uint32_t more = d >> 3;
			c->need_bytes = more ? MIN(len, avail + more) : 0;
			return PKT_NEED_BODY;
		}
		decided(true, total);
		return PKT_FORWARD;
	case 5:
		if (!h.waited) {
			h.waited = true;
			h.resume = true;
			return PKT_WAIT;
		}
		decided(true, total);
		return PKT_FORWARD;
	case 6:
		decided(true, total);
		return PKT_FORWARD_STOP;
	case 7:
		decided(false, total);
		return PKT_SKIP_STOP;
	default:
		decided(true, total);
		return PKT_FORWARD;
	}
}

static enum pkt_action b_on_packet(struct conn *c, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	(void)c, (void)type, (void)len, (void)body, (void)avail;
	abort();   /* b_far never writes */
}

static void on_flushed(struct conn *c)
{
	if (c != &h.a.conn)
		abort();
	h.resume = true;
}

static void on_error(struct conn *c, const char *reason)
{
	struct tconn *t = container_of(c, struct tconn, conn);
	static const char *const known[] = {
		"EOF", "invalid message length", "invalid startup packet length",
		"message too large to inspect",
	};
	bool ok = false;

	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		ok = ok || strcmp(reason, known[i]) == 0;
	if (!ok || c != &h.a.conn) {
		fprintf(stderr, "unexpected error on %s: %s\n", c == &h.a.conn ? "A" : "B", reason);
		abort();
	}
	snprintf(t->error, sizeof(t->error), "%s", reason);
	h.bad_header = strcmp(reason, "EOF") != 0;
	conn_close(&h.a.conn);
	conn_close(&h.b.conn);
}

static void on_closed(struct conn *c)
{
	struct tconn *t = container_of(c, struct tconn, conn);

	t->closed++;
	close(c->fd);
}

/* A bad length word: hold it once (as a client waiting for its server to
 * flush before the error goes out), then close. */
static enum pkt_action a_on_bad_length(struct conn *c, uint8_t type, uint32_t len)
{
	uint32_t l = proto_get32(h.wire + h.off + 1);

	if (c != &h.a.conn || h.startups > 0 || h.wire_len - h.off < 5 || type != h.wire[h.off] ||
	    len != l || (len >= 4 && len <= PROTO_MAX_MESSAGE))
		abort();
	h.bad_header = true;
	if (!h.waited) {
		h.waited = true;
		h.resume = true;
		return PKT_WAIT;
	}
	conn_close(&h.a.conn);
	conn_close(&h.b.conn);
	return PKT_CLOSED;
}

static const struct conn_ops a_ops = {
	.on_packet = a_on_packet,
	.on_flushed = on_flushed,
	.on_error = on_error,
	.on_closed = on_closed,
};
static const struct conn_ops a_ops_bad_length = {
	.on_packet = a_on_packet,
	.on_flushed = on_flushed,
	.on_error = on_error,
	.on_bad_length = a_on_bad_length,
	.on_closed = on_closed,
};
static const struct conn_ops b_ops = {
	.on_packet = b_on_packet,
	.on_flushed = on_flushed,
	.on_error = on_error,
	.on_closed = on_closed,
};

static void drain_b(void)
{
	uint8_t buf[4096];
	ssize_t n;

	while ((n = recv(h.b_far, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		pktbuf_put_bytes(&h.got, buf, (size_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t bufs[] = { 64, 256, 1024, 8192 };
	int p1[2], p2[2];

	if (!loop_ok) {
		if (uv_loop_init(&loop) != 0)
			abort();
		loop_ok = true;
	}
	if (size < 3)
		return 0;
	memset(&h, 0, sizeof(h));

	uint32_t pkt_buf = bufs[data[0] & 3];
	h.startups = data[1] % 3;
	h.ndec = MIN((size_t)data[2], size - 3);
	h.dec = data + 3;
	h.wire = data + 3 + h.ndec;
	h.wire_len = MIN(size - 3 - h.ndec, (size_t)MAX_WIRE);
	pktbuf_init(&h.expect);
	pktbuf_init(&h.got);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p1) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p2) != 0)
		abort();
	h.a_far = p1[0];
	h.b_far = p2[0];
	fcntl(p1[1], F_SETFL, O_NONBLOCK);
	fcntl(p2[1], F_SETFL, O_NONBLOCK);
	int sz = (int)MAX_WIRE * 2;
	setsockopt(h.a_far, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (h.wire_len && write(h.a_far, h.wire, h.wire_len) != (ssize_t)h.wire_len)
		abort();
	shutdown(h.a_far, SHUT_WR);

	if (conn_init(&h.a.conn, &loop, p1[1], (data[1] & 0x80) ? &a_ops_bad_length : &a_ops,
		      pkt_buf, h.startups > 0) != 0 ||
	    conn_init(&h.b.conn, &loop, p2[1], &b_ops, 4096, false) != 0)
		abort();
	h.a.conn.peer = &h.b.conn;
	h.b.conn.peer = &h.a.conn;

	int spins = 0;
	while (!(h.a.closed && h.b.closed)) {
		if (++spins > SPIN_CAP) {
			fprintf(stderr, "no progress: A %s%s%s, off %zu of %zu\n",
				h.a.conn.stopped ? "stopped " : "", h.a.conn.blocked ? "blocked " : "",
				h.a.conn.closing ? "closing" : "", h.off, h.wire_len);
			abort();
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		drain_b();
		if (h.resume && !h.a.conn.closing) {
			h.resume = false;
			conn_resume(&h.a.conn);
		}
	}
	drain_b();
	close(h.a_far);
	close(h.b_far);
	if (uv_run(&loop, UV_RUN_NOWAIT) != 0 || uv_loop_alive(&loop))
		abort();

	/* B received the forwarded messages, nothing else, in order. */
	if (h.got.len > h.expect.len ||
	    (h.got.len && memcmp(h.got.data, h.expect.data, h.got.len) != 0) ||
	    (!h.bad_header && h.got.len != h.expect.len)) {
		fprintf(stderr, "relayed %zu bytes, %zu forwarded (%s)\n", h.got.len, h.expect.len,
			h.a.error);
		abort();
	}
	pktbuf_free(&h.expect);
	pktbuf_free(&h.got);
	return 0;
}
