/*
 * test_conn.c - loop tests for the I/O engine on a real uv_loop_t.
 *
 * Layout of every test:
 *
 *     test --a_far==[pair 1]==A.fd  conn A  --relays to-->  conn B  B.fd==[pair 2]==b_far-- test
 *
 * The test writes client bytes into a_far and reads what A relayed from
 * b_far.  A.peer = B and B.peer = A are set directly, as pool_link does.
 * A's on_packet records every decision and acts as the test's row says
 * (forward, skip, stop, wait, close); B forwards everything.
 *
 * The loop is only ever run with UV_RUN_NOWAIT inside capped loops, so a
 * broken engine fails a test instead of hanging it.  Every test ends with
 * both conns closed through conn_close(), on_closed seen exactly once each,
 * and uv_loop_close() == 0 (libuv's MAKE_VALGRIND_HAPPY).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "sluice/common.h"
#include "sluice/conn.h"
#include "sluice/pktbuf.h"
#include "sluice/proto.h"
#include "unit.h"

#define MAX_REC   2048       /* messages recorded per conn */
#define SPIN_CAP  200000     /* NOWAIT iterations before a test gives up */

/* A conn plus what the test wants it to do and what it saw. */
struct tconn {
	struct conn conn;

	/* behaviour */
	bool want_body;          /* PKT_NEED_BODY until the whole body is there */
	bool leave_startup;      /* after the startup packet, expect typed messages */
	int skip_index;          /* message index to PKT_SKIP, -1 = none */
	uint8_t skip_type;       /* PKT_SKIP every message of this type, 0 = none */
	int stop_index;          /* message index to PKT_FORWARD_STOP, -1 = none */
	int wait_index;          /* message index to PKT_WAIT once, -1 = none */
	int close_index;         /* message index at which to conn_close, -1 = none */
	int max_calls;           /* on_packet calls before the test bails out */
	bool close_on_error;     /* the owner's usual reaction */

	/* record */
	int calls;               /* on_packet calls */
	int need_body;           /* ... of which answered PKT_NEED_BODY */
	bool waited;
	int nmsg;                /* messages decided (not NEED_BODY / WAIT) */
	uint8_t types[MAX_REC];
	uint32_t lens[MAX_REC];
	uint32_t avails[MAX_REC];
	uint8_t startup_copy[256]; /* the startup packet as on_packet saw it */
	uint32_t startup_len;
	int errors;
	char error[128];
	int flushed;
	int closed;
};

static struct {
	uv_loop_t loop;
	struct tconn a, b;
	int a_far, b_far;
	struct pktbuf got;       /* bytes read from b_far */
} h;

/* ---------------------------------------------------------------------- */
/* Callbacks */

static enum pkt_action t_on_packet(struct conn *c, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	struct tconn *t = container_of(c, struct tconn, conn);

	ck_assert_msg(!c->closing, "on_packet on a closing conn");
	ck_assert_uint_le(avail, len);
	if (++t->calls > t->max_calls) {
		/* The engine keeps presenting messages: stop it from spinning. */
		conn_close(c);
		return PKT_CLOSED;
	}
	if (t->want_body && avail < len) {
		t->need_body++;
		return PKT_NEED_BODY;
	}
	int idx = t->nmsg;
	if (idx == t->wait_index && !t->waited) {
		t->waited = true;
		return PKT_WAIT;
	}
	if (idx < MAX_REC) {
		t->types[idx] = type;
		t->lens[idx] = len;
		t->avails[idx] = avail;
	}
	t->nmsg++;
	if (c->startup) {
		if (avail == len && len <= sizeof(t->startup_copy)) {
			memcpy(t->startup_copy, body, len);
			t->startup_len = len;
		}
		if (t->leave_startup)
			c->startup = false;
	}
	if (idx == t->close_index) {
		conn_close(c);
		return PKT_CLOSED;
	}
	if (idx == t->skip_index || (t->skip_type && type == t->skip_type))
		return PKT_SKIP;
	if (idx == t->stop_index)
		return PKT_FORWARD_STOP;
	return PKT_FORWARD;
}

static void t_on_flushed(struct conn *c)
{
	struct tconn *t = container_of(c, struct tconn, conn);

	t->flushed++;
}

static void t_on_error(struct conn *c, const char *reason)
{
	struct tconn *t = container_of(c, struct tconn, conn);

	t->errors++;
	snprintf(t->error, sizeof(t->error), "%s", reason);
	if (t->close_on_error)
		conn_close(c);
}

/* The conns are in static storage: nothing to free here. */
static void t_on_closed(struct conn *c)
{
	struct tconn *t = container_of(c, struct tconn, conn);

	t->closed++;
	ck_assert_ptr_null(c->poll);
	ck_assert_ptr_null(c->rbuf);
}

static const struct conn_ops t_ops = {
	.on_packet = t_on_packet,
	.on_flushed = t_on_flushed,
	.on_error = t_on_error,
	.on_closed = t_on_closed,
};

/* ---------------------------------------------------------------------- */
/* Harness */

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	ck_assert_int_ge(fl, 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void tconn_defaults(struct tconn *t)
{
	memset(t, 0, sizeof(*t));
	t->skip_index = t->stop_index = t->wait_index = t->close_index = -1;
	t->max_calls = 1000000;
	t->close_on_error = true;
}

/* Create the loop, both socket pairs and both conns, linked to each other
 * as pool_link does.  Nothing runs before the test spins the loop, so the
 * test sets each conn's behaviour after this. */
static void h_init(uint32_t a_pkt_buf, bool a_startup)
{
	int p1[2], p2[2];

	memset(&h, 0, sizeof(h));
	tconn_defaults(&h.a);
	tconn_defaults(&h.b);
	pktbuf_init(&h.got);
	ck_assert_int_eq(uv_loop_init(&h.loop), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, p1), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, p2), 0);
	h.a_far = p1[0];
	h.b_far = p2[0];
	set_nonblock(p1[0]);
	set_nonblock(p1[1]);
	set_nonblock(p2[0]);
	set_nonblock(p2[1]);
	ck_assert_int_eq(conn_init(&h.a.conn, &h.loop, p1[1], &t_ops, a_pkt_buf, a_startup), 0);
	ck_assert_int_eq(conn_init(&h.b.conn, &h.loop, p2[1], &t_ops, 4096, false), 0);
	h.a.conn.peer = &h.b.conn;
	h.b.conn.peer = &h.a.conn;
	ck_assert(h.a.conn.events & UV_READABLE);
	ck_assert(h.b.conn.events & UV_READABLE);
}

static void spin(int n)
{
	for (int i = 0; i < n; i++)
		uv_run(&h.loop, UV_RUN_NOWAIT);
}

/* Send what the socket takes; returns bytes written (0 when full). */
static size_t far_write(int fd, const uint8_t *p, size_t n)
{
	ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (w < 0) {
		ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "send: %s",
			      strerror(errno));
		return 0;
	}
	return (size_t)w;
}

/* Append whatever b_far has to h.got; returns the number of bytes read. */
static size_t drain_b(void)
{
	uint8_t buf[65536];
	size_t total = 0;

	for (;;) {
		ssize_t r = recv(h.b_far, buf, sizeof(buf), MSG_DONTWAIT);
		if (r <= 0) {
			ck_assert_msg(r == 0 || errno == EAGAIN || errno == EWOULDBLOCK,
				      "recv: %s", strerror(errno));
			return total;
		}
		pktbuf_put_bytes(&h.got, buf, (size_t)r);
		total += (size_t)r;
	}
}

/*
 * Write p into a_far in pieces of frag bytes, the next piece only once A has
 * read the previous one (or A has stopped reading), collecting B's output.
 * Returns once everything is written, at least want bytes arrived at b_far
 * and the loop has gone quiet; or when nothing moves any more.  The caller
 * checks what arrived.
 */
static void feed(const uint8_t *p, size_t n, size_t frag, size_t want)
{
	uint64_t base = h.a.conn.bytes_in;
	size_t off = 0;
	int idle = 0;

	for (int spins = 0; spins < SPIN_CAP; spins++) {
		bool caught_up = h.a.conn.bytes_in >= base + off;
		if (off < n && (caught_up || idle > 20)) {
			off += far_write(h.a_far, p + off, MIN(frag, n - off));
			idle = 0;
		}
		uint64_t in = h.a.conn.bytes_in;
		size_t got = h.got.len;
		uv_run(&h.loop, UV_RUN_NOWAIT);
		drain_b();
		if (h.a.conn.bytes_in == in && h.got.len == got)
			idle++;
		else
			idle = 0;
		if (off >= n && ((h.got.len >= want && idle > 10) || idle > 200))
			break;
	}
}

/* Close both conns, check on_closed ran once each and the loop is empty. */
static void h_finish(void)
{
	conn_close(&h.a.conn);
	conn_close(&h.b.conn);
	for (int i = 0; i < 100 && (!h.a.closed || !h.b.closed); i++)
		uv_run(&h.loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(h.a.closed, 1);
	ck_assert_int_eq(h.b.closed, 1);
	close(h.a.conn.fd);
	close(h.b.conn.fd);
	if (h.a_far >= 0)
		close(h.a_far);
	if (h.b_far >= 0)
		close(h.b_far);
	pktbuf_free(&h.got);
	ck_assert_int_eq(uv_loop_close(&h.loop), 0);
}

/* ---------------------------------------------------------------------- */
/* Message builders */

/* Append a message: type, length, body of blen bytes derived from seed. */
static void put_msg(struct pktbuf *s, uint8_t type, uint32_t blen, uint32_t seed)
{
	pktbuf_put_byte(s, type);
	pktbuf_put_int32(s, blen + 4);
	for (uint32_t i = 0; i < blen; i++)
		pktbuf_put_byte(s, (uint8_t)(seed * 31u + i * 7u + (i >> 8)));
}

/* The mixed stream the relay tests use; types/lens of each message. */
static const uint8_t mix_types[] = {'Q', 'S', 'd', 'P', 'B', 'H', 'd', 'X'};
static const uint32_t mix_lens[] = {9, 0, 3000, 40, 1, 0, 5000, 0};

static void build_mix(struct pktbuf *s, size_t *ends)
{
	for (size_t i = 0; i < ARRAY_SIZE(mix_types); i++) {
		put_msg(s, mix_types[i], mix_lens[i], (uint32_t)i);
		ends[i] = s->len;
	}
}

/* ---------------------------------------------------------------------- */
/* (a) a startup packet, one byte at a time */

START_TEST(test_startup_byte_by_byte)
{
	struct pktbuf s;
	uint32_t plen;

	h_init(1024, true);
	h.a.want_body = true;
	h.a.leave_startup = true;

	pktbuf_init(&s);
	pktbuf_put_int32(&s, 0);
	pktbuf_put_int32(&s, PROTO_VERSION_3_0);
	pktbuf_put_string(&s, "user");
	pktbuf_put_string(&s, "alice");
	pktbuf_put_string(&s, "database");
	pktbuf_put_string(&s, "db1");
	pktbuf_put_byte(&s, 0);
	plen = (uint32_t)s.len;
	proto_put32(s.data, plen);
	/* Then a regular message: the conn has left startup mode. */
	pktbuf_write_Query(&s, "SELECT 1");

	feed(s.data, s.len, 1, s.len);

	/* on_packet saw the length once 4 bytes were there, and was asked
	 * again for every further byte until the packet was whole; the same
	 * for the Query after it (9 body bytes: 9 calls before it is whole). */
	ck_assert_int_eq(h.a.need_body, (int)plen - 4 + 9);
	ck_assert_int_eq(h.a.nmsg, 2);
	ck_assert_int_eq(h.a.types[0], 0);
	ck_assert_uint_eq(h.a.lens[0], plen);
	ck_assert_uint_eq(h.a.avails[0], plen);
	ck_assert_uint_eq(h.a.startup_len, plen);
	ck_assert_mem_eq(h.a.startup_copy, s.data, plen);
	ck_assert_int_eq(h.a.types[1], 'Q');
	ck_assert_uint_eq(h.a.lens[1], 9);
	ck_assert(!h.a.conn.startup);

	/* What A saw is a valid startup packet. */
	struct startup st;
	proto_parse_startup(h.a.startup_copy, plen, &st);
	ck_assert_int_eq(st.kind, STARTUP_MESSAGE);
	ck_assert_str_eq(proto_startup_get(&st, "user"), "alice");
	ck_assert_str_eq(proto_startup_get(&st, "database"), "db1");

	/* Both went through intact. */
	ck_assert_uint_eq(h.got.len, s.len);
	ck_assert_mem_eq(h.got.data, s.data, s.len);
	ck_assert_uint_eq(h.a.conn.bytes_in, s.len);
	ck_assert_uint_eq(h.b.conn.bytes_out, s.len);
	ck_assert_int_eq(h.a.errors, 0);
	ck_assert_int_eq(h.b.errors, 0);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* A startup packet larger than pkt_buf: NEED_BODY grows the buffer. */
START_TEST(test_startup_larger_than_buffer)
{
	struct pktbuf s;
	char big[3000];

	h_init(1024, true);
	h.a.want_body = true;
	h.a.leave_startup = true;
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';

	pktbuf_init(&s);
	pktbuf_put_int32(&s, 0);
	pktbuf_put_int32(&s, PROTO_VERSION_3_0);
	pktbuf_put_string(&s, "user");
	pktbuf_put_string(&s, "bob");
	pktbuf_put_string(&s, "options");
	pktbuf_put_string(&s, big);
	pktbuf_put_byte(&s, 0);
	proto_put32(s.data, (uint32_t)s.len);
	uint32_t plen = (uint32_t)s.len;
	pktbuf_write_ReadyForQuery(&s, 'I'); /* any typed message will do */

	feed(s.data, s.len, 700, s.len);
	ck_assert_int_eq(h.a.nmsg, 2);
	ck_assert_uint_eq(h.a.lens[0], plen);
	ck_assert_uint_eq(h.a.avails[0], plen);
	ck_assert_int_ge(h.a.need_body, 1);
	ck_assert_uint_eq(h.got.len, s.len);
	ck_assert_mem_eq(h.got.data, s.data, s.len);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* ---------------------------------------------------------------------- */
/* (b) fragments and (c) PKT_SKIP, over a table of fragment sizes */

struct relay_case {
	size_t frag;         /* bytes per write into a_far */
	int skip;            /* message index to skip, -1 = none */
	bool want_body;      /* the callback wants whole bodies */
};

static const struct relay_case relay_cases[] = {
	{1, -1, false},      {2, -1, false},     {3, -1, false},    {5, -1, false},
	{7, -1, false},      {64, -1, false},    {1000, -1, false}, {1 << 20, -1, false},
	{1, -1, true},       {3, -1, true},      {333, -1, true},   {1 << 20, -1, true},
	{1, 0, false},       {4, 1, false},      {5, 2, false},     {1 << 20, 2, false},
	{13, 3, false},      {1000, 6, false},   {1 << 20, 7, false}, {2, 2, true},
	{1 << 20, 0, true},  {9, 6, true},
};

START_TEST(test_relay)
{
	const struct relay_case *tc = &relay_cases[_i];
	struct pktbuf s, want;
	size_t ends[ARRAY_SIZE(mix_types)];

	h_init(1024, false);
	h.a.skip_index = tc->skip;
	h.a.want_body = tc->want_body;

	pktbuf_init(&s);
	build_mix(&s, ends);
	/* What B should pass on: the stream minus the skipped message. */
	pktbuf_init(&want);
	for (size_t i = 0; i < ARRAY_SIZE(mix_types); i++) {
		size_t start = i ? ends[i - 1] : 0;
		if ((int)i != tc->skip)
			pktbuf_put_bytes(&want, s.data + start, ends[i] - start);
	}

	feed(s.data, s.len, tc->frag, want.len);

	ck_assert_int_eq(h.a.nmsg, (int)ARRAY_SIZE(mix_types));
	for (size_t i = 0; i < ARRAY_SIZE(mix_types); i++) {
		ck_assert_int_eq(h.a.types[i], mix_types[i]);
		ck_assert_uint_eq(h.a.lens[i], mix_lens[i]);
		if (tc->want_body)
			ck_assert_uint_eq(h.a.avails[i], mix_lens[i]);
	}
	ck_assert_uint_eq(h.got.len, want.len);
	ck_assert_mem_eq(h.got.data, want.data, want.len);
	ck_assert_uint_eq(h.a.conn.bytes_in, s.len);
	ck_assert_uint_eq(h.b.conn.bytes_out, want.len);
	ck_assert_int_eq(h.a.errors + h.b.errors, 0);
	ck_assert(!h.a.conn.blocked);
	ck_assert(!conn_has_pending(&h.a.conn));
	/* Idle again: reading, and back to (at most) the normal buffer. */
	ck_assert_int_eq(h.a.conn.events, UV_READABLE);
	ck_assert_uint_le(h.a.conn.rcap, h.a.conn.pkt_buf);
	pktbuf_free(&s);
	pktbuf_free(&want);
	h_finish();
}
END_TEST

/* Both directions at once: B relays to A's socket as well. */
START_TEST(test_relay_both_directions)
{
	struct pktbuf up, down, back;
	uint8_t buf[65536];

	h_init(1024, false);
	pktbuf_init(&up);
	pktbuf_init(&down);
	pktbuf_init(&back);
	for (uint32_t i = 0; i < 50; i++)
		put_msg(&up, 'Q', 100 + i * 13, i);
	for (uint32_t i = 0; i < 50; i++)
		put_msg(&down, 'D', 50 + i * 29, i + 1000);

	size_t uoff = 0, doff = 0;
	for (int i = 0; i < SPIN_CAP && (h.got.len < up.len || back.len < down.len); i++) {
		if (uoff < up.len)
			uoff += far_write(h.a_far, up.data + uoff, MIN(up.len - uoff, 777));
		if (doff < down.len)
			doff += far_write(h.b_far, down.data + doff, MIN(down.len - doff, 555));
		uv_run(&h.loop, UV_RUN_NOWAIT);
		drain_b();
		ssize_t r = recv(h.a_far, buf, sizeof(buf), MSG_DONTWAIT);
		if (r > 0)
			pktbuf_put_bytes(&back, buf, (size_t)r);
	}
	ck_assert_uint_eq(h.got.len, up.len);
	ck_assert_mem_eq(h.got.data, up.data, up.len);
	ck_assert_uint_eq(back.len, down.len);
	ck_assert_mem_eq(back.data, down.data, down.len);
	ck_assert_int_eq(h.a.nmsg, 50);
	ck_assert_int_eq(h.b.nmsg, 50);
	ck_assert_int_eq(h.b.types[49], 'D');
	ck_assert_uint_eq(h.b.lens[49], 50 + 49 * 29);
	pktbuf_free(&up);
	pktbuf_free(&down);
	pktbuf_free(&back);
	h_finish();
}
END_TEST

/* ---------------------------------------------------------------------- */
/* (d) backpressure */

START_TEST(test_backpressure)
{
	const uint32_t pkt_buf = 4096, nmsg = 512, blen = 1019;
	int small = 4096;
	struct pktbuf s;

	h_init(pkt_buf, false);
	/* Small kernel buffers between A and the test, and between B and the
	 * test, so the stall comes quickly. */
	ck_assert_int_eq(setsockopt(h.b.conn.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	ck_assert_int_eq(setsockopt(h.b_far, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	ck_assert_int_eq(setsockopt(h.a_far, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	ck_assert_int_eq(setsockopt(h.a.conn.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);

	pktbuf_init(&s);
	for (uint32_t i = 0; i < nmsg; i++)
		put_msg(&s, 'd', blen, i);

	/* Phase 1: write as much as goes in and never read b_far.  A must stop
	 * reading once B cannot take more. */
	size_t off = 0;
	int stable = 0, i;
	uint32_t max_rcap = 0;
	for (i = 0; i < SPIN_CAP && stable < 50; i++) {
		size_t w = off < s.len ? far_write(h.a_far, s.data + off, s.len - off) : 0;
		off += w;
		uv_run(&h.loop, UV_RUN_NOWAIT);
		max_rcap = MAX(max_rcap, h.a.conn.rcap);
		stable = (h.a.conn.blocked && w == 0) ? stable + 1 : 0;
	}
	ck_assert_msg(stable >= 50, "A never stalled (wrote %zu of %zu)", off, s.len);
	ck_assert_msg(off < s.len, "everything went in: buffers too large for this test");
	ck_assert(h.a.conn.blocked);
	ck_assert_msg(!(h.a.conn.events & UV_READABLE), "A still reading while blocked");
	ck_assert_msg(h.b.conn.events & UV_WRITABLE, "B not waiting for writability");
	ck_assert(conn_has_pending(&h.a.conn));
	ck_assert_uint_le(max_rcap, pkt_buf);
	ck_assert_uint_le(h.a.conn.end, h.a.conn.rcap);
	uint64_t stalled_in = h.a.conn.bytes_in;
	ck_assert_uint_lt(stalled_in, s.len);

	/* Still stalled after more loop turns: nothing more is read. */
	spin(20);
	ck_assert_uint_eq(h.a.conn.bytes_in, stalled_in);
	ck_assert(h.a.conn.blocked);

	/* Phase 2: drain b_far; everything arrives in order and A resumes. */
	int resumed = 0;
	for (i = 0; i < SPIN_CAP && h.got.len < s.len; i++) {
		if (off < s.len)
			off += far_write(h.a_far, s.data + off, s.len - off);
		drain_b();
		uv_run(&h.loop, UV_RUN_NOWAIT);
		max_rcap = MAX(max_rcap, h.a.conn.rcap);
		if (h.a.conn.bytes_in > stalled_in)
			resumed = 1;
	}
	spin(3);
	drain_b();
	ck_assert(resumed);
	ck_assert_uint_eq(h.got.len, s.len);
	ck_assert_mem_eq(h.got.data, s.data, s.len);
	ck_assert_uint_le(max_rcap, pkt_buf);
	ck_assert_int_eq(h.a.nmsg, (int)nmsg);
	for (uint32_t k = 0; k < nmsg; k++) {
		ck_assert_int_eq(h.a.types[k], 'd');
		ck_assert_uint_eq(h.a.lens[k], blen);
	}
	ck_assert(!h.a.conn.blocked);
	ck_assert(!conn_has_pending(&h.a.conn));
	ck_assert_int_eq(h.a.conn.events, UV_READABLE);
	ck_assert_int_eq(h.b.conn.events, UV_READABLE);
	ck_assert_int_eq(h.a.errors + h.b.errors, 0);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* Backpressure in the middle of a skip: bytes forwarded before a skipped
 * message are still delivered, and the skipped one never is. */
START_TEST(test_backpressure_then_skip)
{
	int small = 4096;
	struct pktbuf s, want;

	h_init(4096, false);
	ck_assert_int_eq(setsockopt(h.b.conn.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	ck_assert_int_eq(setsockopt(h.a_far, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	pktbuf_init(&s);
	pktbuf_init(&want);
	for (uint32_t i = 0; i < 200; i++) {
		size_t start = s.len;
		put_msg(&s, i % 3 == 1 ? 'p' : 'd', 700 + i, i);
		if (i % 3 != 1)
			pktbuf_put_bytes(&want, s.data + start, s.len - start);
	}
	h.a.skip_type = 'p';
	size_t off = 0;
	bool saw_blocked = false;
	for (int i = 0; i < SPIN_CAP && h.got.len < want.len; i++) {
		if (off < s.len)
			off += far_write(h.a_far, s.data + off, s.len - off);
		uv_run(&h.loop, UV_RUN_NOWAIT);
		saw_blocked = saw_blocked || h.a.conn.blocked;
		/* A stall first, then drain slowly. */
		if (i > 200 && i % 2 == 0)
			drain_b();
	}
	spin(3);
	drain_b();
	ck_assert(saw_blocked);
	ck_assert_int_eq(h.a.nmsg, 200);
	ck_assert_uint_eq(h.got.len, want.len);
	ck_assert_mem_eq(h.got.data, want.data, want.len);
	pktbuf_free(&s);
	pktbuf_free(&want);
	h_finish();
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Stop, wait and generated output */

START_TEST(test_forward_stop)
{
	struct pktbuf s;
	size_t ends[ARRAY_SIZE(mix_types)];

	h_init(1024, false);
	h.a.stop_index = 1;
	pktbuf_init(&s);
	build_mix(&s, ends);

	feed(s.data, s.len, s.len, ends[1]);
	/* Messages 0 and 1 went out, on_flushed ran once, nothing after. */
	ck_assert_int_eq(h.a.flushed, 1);
	ck_assert_int_eq(h.a.nmsg, 2);
	ck_assert_uint_eq(h.got.len, ends[1]);
	ck_assert_mem_eq(h.got.data, s.data, ends[1]);
	ck_assert(h.a.conn.stopped);
	ck_assert(!(h.a.conn.events & UV_READABLE));
	spin(10);
	ck_assert_int_eq(h.a.nmsg, 2);

	conn_resume(&h.a.conn);
	feed(NULL, 0, 1, s.len);
	ck_assert_int_eq(h.a.flushed, 1);
	ck_assert_int_eq(h.a.nmsg, (int)ARRAY_SIZE(mix_types));
	ck_assert_uint_eq(h.got.len, s.len);
	ck_assert_mem_eq(h.got.data, s.data, s.len);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* on_flushed waits until a stopped message is really written: the stop
 * message is far larger than the socket buffers, and B's far end is not
 * read at first. */
START_TEST(test_forward_stop_after_drain)
{
	int small = 4096;
	struct pktbuf s, after;

	h_init(4096, false);
	ck_assert_int_eq(setsockopt(h.b.conn.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	pktbuf_init(&s);
	pktbuf_init(&after);
	put_msg(&s, 'd', 200000, 7);
	pktbuf_write_Query(&after, "SELECT 2");
	h.a.stop_index = 0;

	/* Phase 1: nothing read from b_far; A decides the message, stalls. */
	size_t off = 0;
	for (int i = 0; i < 200; i++) {
		if (off < s.len)
			off += far_write(h.a_far, s.data + off, s.len - off);
		uv_run(&h.loop, UV_RUN_NOWAIT);
	}
	ck_assert_int_eq(h.a.nmsg, 1);
	ck_assert(h.a.conn.blocked);
	ck_assert_int_eq(h.a.flushed, 0);

	/* Phase 2: drain.  on_flushed never runs while A still owes bytes. */
	int flushed_at_pending = 0;
	for (int i = 0; i < SPIN_CAP && h.got.len < s.len; i++) {
		if (off < s.len)
			off += far_write(h.a_far, s.data + off, s.len - off);
		else if (after.off < after.len)
			after.off += far_write(h.a_far, after.data + after.off, after.len - after.off);
		if (conn_has_pending(&h.a.conn) || h.a.conn.remaining)
			flushed_at_pending += h.a.flushed;
		drain_b();
		uv_run(&h.loop, UV_RUN_NOWAIT);
	}
	spin(3);
	drain_b();
	ck_assert_int_eq(flushed_at_pending, 0);
	ck_assert_uint_eq(h.got.len, s.len);
	ck_assert_mem_eq(h.got.data, s.data, s.len);
	ck_assert_int_eq(h.a.flushed, 1);

	/* Stopped: the Query behind it waits for conn_resume(). */
	ck_assert_int_eq(h.a.nmsg, 1);
	ck_assert(h.a.conn.stopped);
	conn_resume(&h.a.conn);
	feed(NULL, 0, 1, s.len + after.len);
	ck_assert_int_eq(h.a.nmsg, 2);
	ck_assert_int_eq(h.a.types[1], 'Q');
	ck_assert_uint_eq(h.got.len, s.len + after.len);
	ck_assert_mem_eq(h.got.data + s.len, after.data, after.len);
	ck_assert_int_eq(h.a.flushed, 1);
	pktbuf_free(&s);
	pktbuf_free(&after);
	h_finish();
}
END_TEST

START_TEST(test_wait_and_resume)
{
	struct pktbuf s;
	size_t ends[ARRAY_SIZE(mix_types)];

	h_init(1024, false);
	h.a.wait_index = 2;
	pktbuf_init(&s);
	build_mix(&s, ends);

	feed(s.data, s.len, s.len, ends[1]);
	ck_assert(h.a.waited);
	ck_assert_int_eq(h.a.nmsg, 2);
	ck_assert_uint_eq(h.got.len, ends[1]);
	ck_assert(!(h.a.conn.events & UV_READABLE));
	int calls = h.a.calls;
	spin(10);
	ck_assert_int_eq(h.a.calls, calls); /* not asked again before resume */

	conn_resume(&h.a.conn);
	feed(NULL, 0, 1, s.len);
	ck_assert_int_eq(h.a.nmsg, (int)ARRAY_SIZE(mix_types));
	ck_assert_int_eq(h.a.types[2], mix_types[2]);
	ck_assert_uint_eq(h.got.len, s.len);
	ck_assert_mem_eq(h.got.data, s.data, s.len);
	ck_assert_int_eq(h.a.flushed, 0);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* Generated output for B's socket goes before bytes relayed to it. */
START_TEST(test_generated_output_first)
{
	struct pktbuf s, want;

	h_init(1024, false);
	pktbuf_init(&s);
	pktbuf_init(&want);
	pktbuf_write_Query(&s, "SELECT 1");
	pktbuf_write_ReadyForQuery(&want, 'I');
	pktbuf_put_bytes(&want, s.data, s.len);

	pktbuf_write_ReadyForQuery(&h.b.conn.out, 'I');
	feed(s.data, s.len, s.len, want.len);
	ck_assert_uint_eq(h.got.len, want.len);
	ck_assert_mem_eq(h.got.data, want.data, want.len);
	ck_assert_uint_eq(pktbuf_pending(&h.b.conn.out), 0);

	/* conn_send_out writes on its own too. */
	pktbuf_write_ParameterStatus(&h.b.conn.out, "TimeZone", "UTC");
	size_t n = h.b.conn.out.len;
	conn_send_out(&h.b.conn);
	spin(2);
	drain_b();
	ck_assert_uint_eq(h.got.len, want.len + n);
	ck_assert_int_eq(h.got.data[want.len], 'S');
	pktbuf_free(&s);
	pktbuf_free(&want);
	h_finish();
}
END_TEST

/* conn_close_after_flush: the generated bytes arrive, then EOF. */
START_TEST(test_close_after_flush)
{
	h_init(1024, false);
	pktbuf_write_ErrorResponse(&h.b.conn.out, "FATAL", "08P01", "bye");
	size_t n = h.b.conn.out.len;
	conn_close_after_flush(&h.b.conn);
	for (int i = 0; i < 100 && !h.b.closed; i++)
		uv_run(&h.loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(h.b.closed, 1);
	drain_b();
	ck_assert_uint_eq(h.got.len, n);
	ck_assert_int_eq(h.got.data[0], 'E');
	h_finish();
	ck_assert_int_eq(h.b.closed, 1);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* (e) errors and (f) close */

START_TEST(test_eof_calls_on_error)
{
	struct pktbuf s;

	h_init(1024, false);
	pktbuf_init(&s);
	pktbuf_write_Query(&s, "SELECT 1");
	feed(s.data, s.len, s.len, s.len);
	ck_assert_int_eq(h.a.errors, 0);

	shutdown(h.a_far, SHUT_WR);
	for (int i = 0; i < 100 && !h.a.errors; i++)
		uv_run(&h.loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(h.a.errors, 1);
	ck_assert_str_eq(h.a.error, "EOF");
	ck_assert(h.a.conn.closing); /* our on_error closed it */
	spin(5);
	ck_assert_int_eq(h.a.errors, 1);
	ck_assert_int_eq(h.a.closed, 1);
	ck_assert_int_eq(h.b.errors, 0);
	ck_assert_uint_eq(h.got.len, s.len);
	ck_assert_mem_eq(h.got.data, s.data, s.len);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* EOF in the middle of a message: the part already there is relayed, then
 * on_error. */
START_TEST(test_eof_mid_message)
{
	struct pktbuf s;

	h_init(1024, false);
	pktbuf_init(&s);
	put_msg(&s, 'd', 500, 1);
	feed(s.data, 200, 200, 200);
	ck_assert_int_eq(h.a.nmsg, 1);
	ck_assert_uint_eq(h.got.len, 200);
	close(h.a_far);
	h.a_far = -1;
	for (int i = 0; i < 100 && !h.a.errors; i++)
		uv_run(&h.loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(h.a.errors, 1);
	ck_assert_str_eq(h.a.error, "EOF");
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* The destination is gone: the error is reported on the destination. */
START_TEST(test_peer_socket_error)
{
	struct pktbuf s;

	h_init(1024, false);
	/* The test's end stops reading: sends into B's socket fail (EPIPE),
	 * while B's own reading side stays open. */
	ck_assert_int_eq(shutdown(h.b_far, SHUT_RD), 0);
	pktbuf_init(&s);
	pktbuf_write_Query(&s, "SELECT 1");
	ck_assert_uint_eq(far_write(h.a_far, s.data, s.len), s.len);
	for (int i = 0; i < 100 && !h.b.errors; i++)
		uv_run(&h.loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(h.b.errors, 1);
	ck_assert_str_eq(h.b.error, strerror(EPIPE));
	ck_assert(h.b.conn.closing);
	ck_assert_int_eq(h.a.errors, 0);
	/* A keeps working; what it relays to the closing B is dropped. */
	ck_assert_uint_eq(far_write(h.a_far, s.data, s.len), s.len);
	spin(5);
	ck_assert_int_eq(h.a.nmsg, 2);
	ck_assert(!h.a.conn.blocked);
	ck_assert(!conn_has_pending(&h.a.conn));
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* A header with a length below 4 is reported, not relayed. */
START_TEST(test_bad_length_reported)
{
	static const uint8_t bad[] = {'Q', 0, 0, 0, 3, 'x'};

	h_init(1024, false);
	ck_assert_uint_eq(far_write(h.a_far, bad, sizeof(bad)), sizeof(bad));
	for (int i = 0; i < 100 && !h.a.errors; i++)
		uv_run(&h.loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(h.a.errors, 1);
	ck_assert_int_eq(h.a.calls, 0);
	spin(3);
	drain_b();
	ck_assert_uint_eq(h.got.len, 0);
	h_finish();
}
END_TEST

START_TEST(test_close_once)
{
	h_init(1024, false);
	conn_close(&h.a.conn);
	ck_assert(h.a.conn.closing);
	ck_assert_int_eq(h.a.closed, 0); /* from the close callback only */
	conn_close(&h.a.conn);
	/* Calls on a closing conn do nothing. */
	conn_send_out(&h.a.conn);
	conn_resume(&h.a.conn);
	conn_close_after_flush(&h.a.conn);
	spin(5);
	ck_assert_int_eq(h.a.closed, 1);
	conn_close(&h.a.conn);
	spin(5);
	ck_assert_int_eq(h.a.closed, 1);
	ck_assert_int_eq(h.b.closed, 0);
	h_finish(); /* closes B, checks both once, uv_loop_close() == 0 */
}
END_TEST

/* Closing from inside on_packet: the rest of the input is not presented
 * or relayed, and on_closed runs once. */
START_TEST(test_close_in_on_packet)
{
	struct pktbuf s;
	size_t ends[ARRAY_SIZE(mix_types)];

	h_init(1024, false);
	h.a.close_index = 2;
	pktbuf_init(&s);
	build_mix(&s, ends);
	feed(s.data, s.len, s.len, ends[1]);
	ck_assert_int_eq(h.a.nmsg, 3);
	ck_assert_int_eq(h.a.closed, 1);
	/* conn_close drops what was not written yet; nothing of message 2 or
	 * later is relayed, and what arrived is a prefix of the stream. */
	ck_assert_uint_le(h.got.len, ends[1]);
	if (h.got.len)
		ck_assert_mem_eq(h.got.data, s.data, h.got.len);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* Closing B while A has bytes for it: A drops them and is not left blocked. */
START_TEST(test_close_peer_while_blocked)
{
	int small = 4096;
	struct pktbuf s;

	h_init(4096, false);
	ck_assert_int_eq(setsockopt(h.b.conn.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	pktbuf_init(&s);
	for (uint32_t i = 0; i < 300; i++)
		put_msg(&s, 'd', 1000, i);
	size_t off = 0;
	for (int i = 0; i < SPIN_CAP && !h.a.conn.blocked; i++) {
		off += far_write(h.a_far, s.data + off, s.len - off);
		uv_run(&h.loop, UV_RUN_NOWAIT);
	}
	ck_assert(h.a.conn.blocked);

	/* What pool_unlink does: close B, unlink, drop what A owed. */
	conn_close(&h.b.conn);
	h.a.conn.peer = NULL;
	conn_drop_pending(&h.a.conn);
	ck_assert(!h.a.conn.blocked);
	ck_assert(!conn_has_pending(&h.a.conn));
	ck_assert(h.a.conn.events & UV_READABLE);
	spin(5);
	ck_assert_int_eq(h.b.closed, 1);
	ck_assert_int_eq(h.a.errors, 0);
	pktbuf_free(&s);
	h_finish();
}
END_TEST

/* A conn that never got a handle: on_closed runs at once, once. */
static int bare_closed;

static void bare_on_closed(struct conn *c)
{
	(void)c;
	bare_closed++;
}

START_TEST(test_close_without_handle)
{
	static const struct conn_ops ops = {.on_closed = bare_on_closed};
	struct conn c;

	memset(&c, 0, sizeof(c));
	c.ops = &ops;
	c.fd = -1;
	pktbuf_init(&c.out);
	bare_closed = 0;
	conn_close(&c);
	ck_assert_int_eq(bare_closed, 1);
	conn_close(&c);
	ck_assert_int_eq(bare_closed, 1);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Length fields at the edges of uint32 */

/*
 * A message whose length field is 0xFFFFFFFF: if the callback forwards it,
 * the engine must relay its body, not present the same header again (the
 * message size hdr + len - 4 does not fit in 32 bits).
 */
START_TEST(test_max_length_forward_presented_once)
{
	static const uint8_t msg[] = {'D', 0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c'};

	h_init(1024, false);
	h.a.max_calls = 3;
	ck_assert_uint_eq(far_write(h.a_far, msg, sizeof(msg)), sizeof(msg));
	spin(5);
	drain_b();
	int calls = h.a.calls, errors = h.a.errors;
	bool relayed = h.got.len == sizeof(msg) && memcmp(h.got.data, msg, sizeof(msg)) == 0;
	h_finish(); /* first, so that a failure leaves nothing open */
	ck_assert_msg(calls == 1 || errors == 1, "the same header was presented %d times", calls);
	if (errors == 0)
		ck_assert_msg(relayed, "the start of the message was not relayed");
}
END_TEST

/*
 * Startup mode, where the length counts itself: a length field below 4 is
 * as impossible as a typed message's length below 4, and is reported the
 * same way (on_error, nothing presented) rather than relayed as a message of
 * 0..3 bytes (length 0 would then be presented forever).
 */
START_TEST(test_startup_short_length_reported)
{
	uint8_t pkt[8] = {0, 0, 0, (uint8_t)_i, 0, 3, 0, 0};

	h_init(1024, true);
	h.a.max_calls = 3;
	ck_assert_uint_eq(far_write(h.a_far, pkt, sizeof(pkt)), sizeof(pkt));
	spin(5);
	int calls = h.a.calls, errors = h.a.errors;
	h_finish(); /* first, so that a failure leaves nothing open */
	ck_assert_msg(calls == 0, "startup length %d presented %d times", _i, calls);
	ck_assert_int_eq(errors, 1);
}
END_TEST

/* ---------------------------------------------------------------------- */

Suite *conn_suite(void)
{
	Suite *s = suite_create("conn");
	TCase *tc = tcase_create("relay");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_startup_byte_by_byte);
	tcase_add_test(tc, test_startup_larger_than_buffer);
	tcase_add_loop_test(tc, test_relay, 0, (int)ARRAY_SIZE(relay_cases));
	tcase_add_test(tc, test_relay_both_directions);
	suite_add_tcase(s, tc);

	tc = tcase_create("backpressure");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_backpressure);
	tcase_add_test(tc, test_backpressure_then_skip);
	tcase_add_test(tc, test_forward_stop_after_drain);
	tcase_add_test(tc, test_close_peer_while_blocked);
	suite_add_tcase(s, tc);

	tc = tcase_create("control");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_forward_stop);
	tcase_add_test(tc, test_wait_and_resume);
	tcase_add_test(tc, test_generated_output_first);
	tcase_add_test(tc, test_close_after_flush);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_eof_calls_on_error);
	tcase_add_test(tc, test_eof_mid_message);
	tcase_add_test(tc, test_peer_socket_error);
	tcase_add_test(tc, test_bad_length_reported);
	tcase_add_test(tc, test_close_once);
	tcase_add_test(tc, test_close_in_on_packet);
	tcase_add_test(tc, test_close_without_handle);
	tcase_add_test(tc, test_max_length_forward_presented_once);
	tcase_add_loop_test(tc, test_startup_short_length_reported, 0, 4);
	suite_add_tcase(s, tc);
	return s;
}
