/*
 * test_http.c - the metrics HTTP server on a real uv_loop_t.
 *
 * The server listens on 127.0.0.1 with port 0; the test talks to it through
 * plain non-blocking client sockets in the same thread, spinning the loop
 * with UV_RUN_NOWAIT between reads, so a broken server fails a test after
 * a deadline instead of hanging it.  Every test ends with http_stop(), the
 * loop run until no handle is left and uv_loop_close() == 0; under the ASan
 * build the leak checker then proves that the close callbacks freed all.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "sluice/common.h"
#include "sluice/http.h"
#include "sluice/pktbuf.h"
#include "unit.h"

#define DEADLINE_MS 5000
#define BIG_BODY    (8u << 20)   /* more than loopback socket buffers hold */

static struct {
	uv_loop_t loop;
	struct http_server *srv;
	int port;
	int calls;
	char method[16];
	char path[256];
	bool stop_in_handler;
} h;

/* One parsed response; body points into the client's buffer. */
struct tresp {
	int status;
	long clen;               /* -1: no Content-Length */
	char ctype[128];
	char conn[32];
	char allow[64];
	const char *body;
	size_t body_len;
	size_t head_len;
};

struct client {
	int fd;
	struct pktbuf got;
	size_t used;             /* bytes taken by the responses parsed */
	bool eof;
	bool reset;
};

/* ---------------------------------------------------------------------- */
/* Server side */

static void handler(void *arg, const char *method, const char *path,
		    struct http_response *resp)
{
	(void)arg;
	h.calls++;
	snprintf(h.method, sizeof(h.method), "%s", method);
	snprintf(h.path, sizeof(h.path), "%s", path);
	if (h.stop_in_handler) {
		http_stop(h.srv);
		return;
	}
	if (strcmp(path, "/x") == 0) {
		resp->content_type = "text/plain; version=0.0.4";
		pktbuf_put_bytes(&resp->body, "hello x\n", 8);
	} else if (strcmp(path, "/big") == 0) {
		for (size_t i = 0; i < BIG_BODY; i += 64)
			pktbuf_put_bytes(&resp->body,
					 "0123456789abcdef0123456789abcdef"
					 "0123456789abcdef0123456789abcde\n", 64);
	} else if (strcmp(path, "/empty") == 0) {
		resp->status = 503;
	} else {
		resp->status = 404;
		pktbuf_put_bytes(&resp->body, "nope\n", 5);
	}
}

static void h_start(void)
{
	char err[256] = "";

	memset(&h, 0, sizeof(h));
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(uv_loop_init(&h.loop), 0);
	ck_assert_msg(http_start(&h.srv, &h.loop, "127.0.0.1", 0, handler, NULL,
				 err, sizeof(err)) == 0, "http_start: %s", err);
	h.port = http_port(h.srv);
	ck_assert_int_gt(h.port, 0);
}

/* Stop the server, let the close callbacks run, and check nothing is left. */
static void h_stop(void)
{
	http_stop(h.srv);
	h.srv = NULL;
	uv_run(&h.loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&h.loop), 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop for about ms milliseconds. */
static void spin(int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end) {
		uv_run(&h.loop, UV_RUN_NOWAIT);
		poll(NULL, 0, 1);
	}
}

/* ---------------------------------------------------------------------- */
/* Client side */

static void c_open(struct client *c)
{
	struct sockaddr_in sin;

	memset(c, 0, sizeof(*c));
	pktbuf_init(&c->got);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)h.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c->fd, 0);
	/* Completes in the kernel's backlog; the loop accepts later. */
	ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
}

static void c_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	pktbuf_free(&c->got);
}

/* Send everything, spinning the loop while the socket buffer is full. */
static void c_send_n(struct client *c, const char *data, size_t len)
{
	uint64_t end = now_ms() + DEADLINE_MS;

	while (len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);

		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		ck_assert_msg(n < 0 && errno == EAGAIN, "send: %s", strerror(errno));
		ck_assert_msg(now_ms() < end, "send timed out");
		uv_run(&h.loop, UV_RUN_NOWAIT);
		poll(NULL, 0, 1);
	}
}

static void c_send(struct client *c, const char *data)
{
	c_send_n(c, data, strlen(data));
}

static void header_value(char *dst, size_t dlen, const char *v, size_t vlen)
{
	while (vlen > 0 && *v == ' ') {
		v++;
		vlen--;
	}
	snprintf(dst, dlen, "%.*s", (int)vlen, v);
}

/* Parse one response at p; 0 if it is not complete yet. */
static size_t parse_response(const char *p, size_t len, bool head, struct tresp *r)
{
	const char *end = len ? memmem(p, len, "\r\n\r\n", 4) : NULL;
	const char *line, *hend;
	size_t hlen, blen;

	if (!end)
		return 0;
	hlen = (size_t)(end - p) + 4;
	hend = p + hlen - 2;
	memset(r, 0, sizeof(*r));
	r->clen = -1;
	ck_assert_msg(sscanf(p, "HTTP/1.1 %d ", &r->status) == 1,
		      "bad status line: %.40s", p);
	line = memchr(p, '\n', hlen) + 1;
	while (line < hend) {
		const char *eol = memmem(line, (size_t)(hend - line) + 2, "\r\n", 2);
		const char *colon = memchr(line, ':', (size_t)(eol - line));
		size_t nlen, vlen;

		ck_assert_ptr_nonnull(colon);
		nlen = (size_t)(colon - line);
		vlen = (size_t)(eol - colon - 1);
		if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0)
			r->clen = strtol(colon + 1, NULL, 10);
		else if (nlen == 12 && strncasecmp(line, "Content-Type", 12) == 0)
			header_value(r->ctype, sizeof(r->ctype), colon + 1, vlen);
		else if (nlen == 10 && strncasecmp(line, "Connection", 10) == 0)
			header_value(r->conn, sizeof(r->conn), colon + 1, vlen);
		else if (nlen == 5 && strncasecmp(line, "Allow", 5) == 0)
			header_value(r->allow, sizeof(r->allow), colon + 1, vlen);
		line = eol + 2;
	}
	blen = head || r->clen < 0 ? 0 : (size_t)r->clen;
	if (len - hlen < blen)
		return 0;
	r->head_len = hlen;
	r->body = p + hlen;
	r->body_len = blen;
	return hlen + blen;
}

/*
 * Read until the responses described by kinds ('G' with a body, 'H' for a
 * HEAD answer) have arrived, and EOF as well if want_eof, or the deadline
 * passes.  Returns how many responses were parsed into r.
 */
static int c_read(struct client *c, const char *kinds, struct tresp *r, bool want_eof)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	int want = (int)strlen(kinds);
	int have = 0;

	for (;;) {
		char buf[65536];
		ssize_t n;
		size_t off = 0;

		uv_run(&h.loop, UV_RUN_NOWAIT);
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n > 0)
			pktbuf_put_bytes(&c->got, buf, (size_t)n);
		else if (n == 0)
			c->eof = true;
		else if (errno == ECONNRESET)
			c->eof = c->reset = true;
		else
			ck_assert_msg(errno == EAGAIN, "recv: %s", strerror(errno));

		for (have = 0; have < want; have++) {
			size_t used = parse_response(c->got.len ? (const char *)c->got.data + off : "",
						     c->got.len - off, kinds[have] == 'H',
						     &r[have]);
			if (!used)
				break;
			off += used;
		}
		c->used = off;
		if ((have == want && (!want_eof || c->eof)) || c->eof || now_ms() > end)
			return have;
		if (n <= 0) {
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			poll(&pfd, 1, 1);
		}
	}
}

static bool body_is(const struct tresp *r, const char *s)
{
	return r->body_len == strlen(s) && memcmp(r->body, s, r->body_len) == 0;
}

/* ---------------------------------------------------------------------- */
/* Tests */

START_TEST(get_returns_handler_response)
{
	struct client c;
	struct tresp r;

	h_start();
	c_open(&c);
	c_send(&c, "GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.clen, 8);
	ck_assert(body_is(&r, "hello x\n"));
	ck_assert_str_eq(r.ctype, "text/plain; version=0.0.4");
	ck_assert_str_eq(r.conn, "keep-alive");
	ck_assert_str_eq(h.method, "GET");
	ck_assert_str_eq(h.path, "/x");
	ck_assert_int_eq(h.calls, 1);
	ck_assert(!c.eof);

	/* Status and default content type from the handler. */
	c_send(&c, "GET /nothing HTTP/1.1\r\n\r\nGET /empty HTTP/1.1\r\n\r\n");
	pktbuf_reset(&c.got);
	struct tresp r2[2];
	ck_assert_int_eq(c_read(&c, "GG", r2, false), 2);
	ck_assert_int_eq(r2[0].status, 404);
	ck_assert(body_is(&r2[0], "nope\n"));
	ck_assert_str_eq(r2[0].ctype, "text/plain; charset=utf-8");
	ck_assert_int_eq(r2[1].status, 503);
	ck_assert_int_eq(r2[1].clen, 0);
	c_close(&c);
	h_stop();
}
END_TEST

START_TEST(head_has_no_body)
{
	struct client c;
	struct tresp r;

	h_start();
	c_open(&c);
	c_send(&c, "HEAD /x HTTP/1.1\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "H", &r, true), 1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.clen, 8);
	ck_assert_str_eq(r.conn, "close");
	ck_assert_str_eq(h.method, "HEAD");
	ck_assert(c.eof && !c.reset);
	ck_assert_uint_eq(c.got.len, r.head_len);   /* nothing after the headers */
	c_close(&c);
	h_stop();
}
END_TEST

START_TEST(query_string_stripped)
{
	struct client c;
	struct tresp r;

	h_start();
	c_open(&c);
	c_send(&c, "GET /x?name[]=a&b=%20c#frag HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(h.path, "/x");

	/* absolute-form request target */
	pktbuf_reset(&c.got);
	c_send(&c, "GET http://localhost:9/x?y=1 HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(h.path, "/x");
	c_close(&c);
	h_stop();
}
END_TEST

START_TEST(post_gets_405)
{
	struct client c;
	struct tresp r;

	h_start();
	c_open(&c);
	c_send(&c, "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
	ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
	ck_assert_int_eq(r.status, 405);
	ck_assert_str_eq(r.allow, "GET, HEAD");
	ck_assert_str_eq(r.conn, "close");
	ck_assert(c.eof && !c.reset);
	ck_assert_int_eq(h.calls, 0);
	c_close(&c);

	c_open(&c);
	c_send(&c, "DELETE /x HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
	ck_assert_int_eq(r.status, 405);
	c_close(&c);
	h_stop();
}
END_TEST

START_TEST(body_gets_413)
{
	struct client c;
	struct tresp r;

	h_start();
	c_open(&c);
	c_send(&c, "GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
	ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
	ck_assert_int_eq(r.status, 413);
	ck_assert(c.eof && !c.reset);
	c_close(&c);

	c_open(&c);
	c_send(&c, "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
	ck_assert_int_eq(r.status, 413);
	c_close(&c);
	ck_assert_int_eq(h.calls, 0);
	h_stop();
}
END_TEST

START_TEST(garbage_gets_400)
{
	static const char *const bad[] = {
		"\x01\x02\x03 garbage\r\n\r\n",
		"GET /x HTTP/9.Z\r\n\r\n",
		"GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
		"GET x y z\r\n\r\n",
	};
	struct client c;
	struct tresp r;

	h_start();
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		c_open(&c);
		c_send(&c, bad[i]);
		ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
		ck_assert_msg(r.status == 400, "case %zu: status %d", i, r.status);
		ck_assert_str_eq(r.conn, "close");
		ck_assert(c.eof && !c.reset);
		c_close(&c);
	}
	ck_assert_int_eq(h.calls, 0);
	h_stop();
}
END_TEST

START_TEST(oversize_request_rejected)
{
	struct client c;
	struct tresp r;
	struct pktbuf req;

	h_start();
	/* Many headers, more than 8 KiB in total. */
	pktbuf_init(&req);
	pktbuf_put_bytes(&req, "GET /x HTTP/1.1\r\n", 17);
	for (int i = 0; i < 400; i++) {
		char line[64];
		int n = snprintf(line, sizeof(line), "X-Filler-%03d: 0123456789\r\n", i);
		pktbuf_put_bytes(&req, line, (size_t)n);
	}
	pktbuf_put_bytes(&req, "\r\n", 2);
	c_open(&c);
	c_send_n(&c, (const char *)req.data, req.len);
	ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
	ck_assert_msg(r.status == 431 || r.status == 400, "status %d", r.status);
	ck_assert_str_eq(r.conn, "close");
	ck_assert(c.eof);
	c_close(&c);

	/* One huge URL, sent in one go. */
	pktbuf_reset(&req);
	pktbuf_put_bytes(&req, "GET /", 5);
	for (int i = 0; i < 9000; i++)
		pktbuf_put_byte(&req, 'a');
	pktbuf_put_bytes(&req, " HTTP/1.1\r\n\r\n", 13);
	c_open(&c);
	c_send_n(&c, (const char *)req.data, req.len);
	ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
	ck_assert_msg(r.status == 431 || r.status == 400, "status %d", r.status);
	ck_assert(c.eof);
	c_close(&c);
	ck_assert_int_eq(h.calls, 0);

	/* Just under the limit still works. */
	pktbuf_reset(&req);
	pktbuf_put_bytes(&req, "GET /x HTTP/1.1\r\nX-Pad: ", 24);
	while (req.len < 8192 - 4)
		pktbuf_put_byte(&req, 'p');
	pktbuf_put_bytes(&req, "\r\n\r\n", 4);
	ck_assert_uint_eq(req.len, 8192);
	c_open(&c);
	c_send_n(&c, (const char *)req.data, req.len);
	ck_assert_int_eq(c_read(&c, "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	c_close(&c);
	pktbuf_free(&req);
	h_stop();
}
END_TEST

START_TEST(pipelined_in_order)
{
	struct client c;
	struct tresp r[4];

	h_start();
	c_open(&c);
	c_send(&c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
		   "HEAD /x HTTP/1.1\r\n\r\n"
		   "GET /missing?q HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "GHG", r, false), 3);
	ck_assert_int_eq(r[0].status, 200);
	ck_assert(body_is(&r[0], "hello x\n"));
	ck_assert_int_eq(r[1].status, 200);
	ck_assert_int_eq(r[1].clen, 8);
	ck_assert_int_eq(r[2].status, 404);
	ck_assert(body_is(&r[2], "nope\n"));
	ck_assert_str_eq(h.path, "/missing");
	ck_assert_int_eq(h.calls, 3);
	ck_assert_uint_eq(c.used, c.got.len);
	ck_assert(!c.eof);

	/* The connection stays usable; the last request asks to close it. */
	pktbuf_reset(&c.got);
	c_send(&c, "GET /x HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nConnection: close\r\n\r\n"
		   "GET /never HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "GG", r, true), 2);
	ck_assert_str_eq(r[0].conn, "keep-alive");
	ck_assert_str_eq(r[1].conn, "close");
	ck_assert(c.eof);
	ck_assert_uint_eq(c.used, c.got.len);
	ck_assert_int_eq(h.calls, 5);
	c_close(&c);
	h_stop();
}
END_TEST

START_TEST(split_request_and_http10)
{
	struct client c;
	struct tresp r;

	h_start();
	c_open(&c);
	c_send(&c, "GE");
	spin(20);
	c_send(&c, "T /x HTTP/1.1\r\nHo");
	spin(20);
	ck_assert_int_eq(h.calls, 0);
	c_send(&c, "st: a\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	c_close(&c);

	/* HTTP/1.0 closes unless it asks for keep-alive. */
	c_open(&c);
	c_send(&c, "GET /x HTTP/1.0\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, true), 1);
	ck_assert_str_eq(r.conn, "close");
	ck_assert(c.eof && !c.reset);
	c_close(&c);

	c_open(&c);
	c_send(&c, "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, false), 1);
	ck_assert_str_eq(r.conn, "keep-alive");
	ck_assert(!c.eof);
	c_close(&c);
	h_stop();
}
END_TEST

/* A client that does not read holds only its own response. */
START_TEST(slow_reader_does_not_block)
{
	struct client slow, fast;
	struct tresp r;

	h_start();
	c_open(&slow);
	c_send(&slow, "GET /big HTTP/1.1\r\n\r\n");
	spin(50);
	ck_assert_int_eq(h.calls, 1);

	c_open(&fast);
	c_send(&fast, "GET /x HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&fast, "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	c_close(&fast);

	ck_assert_int_eq(c_read(&slow, "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, BIG_BODY);
	ck_assert_int_eq(r.body[BIG_BODY - 1], '\n');
	c_close(&slow);
	h_stop();
}
END_TEST

START_TEST(connection_limit)
{
	struct client c[65];
	struct tresp r;

	h_start();
	for (int i = 0; i < 64; i++) {
		c_open(&c[i]);
		c_send(&c[i], "GET /x HTTP/1.1\r\n\r\n");
		ck_assert_int_eq(c_read(&c[i], "G", &r, false), 1);
		ck_assert_int_eq(r.status, 200);
	}
	/* The 65th is accepted and closed without an answer. */
	c_open(&c[64]);
	c_send(&c[64], "GET /x HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c[64], "G", &r, true), 0);
	ck_assert(c[64].eof);
	ck_assert_uint_eq(c[64].got.len, 0);
	c_close(&c[64]);
	ck_assert_int_eq(h.calls, 64);

	/* Freeing a slot lets a new client in. */
	c_close(&c[0]);
	spin(50);
	c_open(&c[0]);
	c_send(&c[0], "GET /x HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c[0], "G", &r, false), 1);
	ck_assert_int_eq(r.status, 200);
	for (int i = 0; i < 64; i++)
		c_close(&c[i]);
	h_stop();
}
END_TEST

/* http_stop with connections in every state; ASan checks nothing leaks. */
START_TEST(stop_frees_everything)
{
	struct client idle, partial, writing, done;
	struct tresp r;

	h_start();
	c_open(&done);
	c_send(&done, "GET /x HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&done, "G", &r, false), 1);
	c_open(&idle);
	c_open(&partial);
	c_send(&partial, "GET /x HTTP/1.1\r\nHost:");
	c_open(&writing);
	c_send(&writing, "GET /big HTTP/1.1\r\n\r\n");
	spin(50);
	ck_assert_int_eq(h.calls, 2);

	h_stop();
	c_close(&idle);
	c_close(&partial);
	c_close(&writing);
	c_close(&done);
}
END_TEST

START_TEST(stop_from_handler)
{
	struct client c;
	struct tresp r;

	h_start();
	h.stop_in_handler = true;
	c_open(&c);
	c_send(&c, "GET /x HTTP/1.1\r\n\r\n");
	ck_assert_int_eq(c_read(&c, "G", &r, true), 0);
	ck_assert(c.eof);
	ck_assert_int_eq(h.calls, 1);
	c_close(&c);
	uv_run(&h.loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&h.loop), 0);
}
END_TEST

START_TEST(start_errors)
{
	struct http_server *srv = NULL, *srv2 = NULL;
	char err[256] = "";
	int rc;

	ck_assert_int_eq(uv_loop_init(&h.loop), 0);
	rc = http_start(&srv, &h.loop, "not-an-address", 0, handler, NULL, err, sizeof(err));
	ck_assert_int_eq(rc, UV_EINVAL);
	ck_assert_ptr_null(srv);
	ck_assert_ptr_nonnull(strstr(err, "not-an-address"));
	rc = http_start(&srv, &h.loop, "127.0.0.1", 70000, handler, NULL, err, sizeof(err));
	ck_assert_int_eq(rc, UV_EINVAL);

	/* Port already taken. */
	rc = http_start(&srv, &h.loop, "127.0.0.1", 0, handler, NULL, err, sizeof(err));
	ck_assert_int_eq(rc, 0);
	rc = http_start(&srv2, &h.loop, "127.0.0.1", http_port(srv), handler, NULL,
			err, sizeof(err));
	ck_assert_int_eq(rc, UV_EADDRINUSE);
	ck_assert_ptr_null(srv2);
	ck_assert_ptr_nonnull(strstr(err, "bind"));

	/* "*" and IPv6 (skipped where the host has no IPv6). */
	rc = http_start(&srv2, &h.loop, "*", 0, handler, NULL, err, sizeof(err));
	ck_assert_int_eq(rc, 0);
	http_stop(srv2);
	rc = http_start(&srv2, &h.loop, "[::1]", 0, handler, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0 || rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT,
		      "::1: %s", err);
	if (rc == 0)
		http_stop(srv2);
	http_stop(srv);
	uv_run(&h.loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&h.loop), 0);
}
END_TEST

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("server");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, get_returns_handler_response);
	tcase_add_test(tc, head_has_no_body);
	tcase_add_test(tc, query_string_stripped);
	tcase_add_test(tc, post_gets_405);
	tcase_add_test(tc, body_gets_413);
	tcase_add_test(tc, garbage_gets_400);
	tcase_add_test(tc, oversize_request_rejected);
	tcase_add_test(tc, pipelined_in_order);
	tcase_add_test(tc, split_request_and_http10);
	tcase_add_test(tc, slow_reader_does_not_block);
	tcase_add_test(tc, connection_limit);
	tcase_add_test(tc, stop_frees_everything);
	tcase_add_test(tc, stop_from_handler);
	tcase_add_test(tc, start_errors);
	suite_add_tcase(s, tc);
	return s;
}
