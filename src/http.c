/*
 * http.c - the small HTTP/1.1 server behind /metrics, /healthz and /readyz
 * (see http.h).
 *
 * Owns: the listening uv_tcp_t, one struct http_conn per accepted socket
 * (its uv_tcp_t, its uv_timer_t, a fixed input buffer and the response
 * being written), and request framing with http_parser.  Requests on a
 * connection are answered strictly in order, one at a time: while a
 * response is being written the connection stops reading, so a pipelining
 * client or a slow reader only ever holds one buffered response and the
 * kernel's socket buffers.
 *
 * Limits: 8 KiB for the request line plus headers (431 and close beyond
 * that), 64 connections at a time (the 65th is accepted and closed at
 * once), 10 s to deliver a complete request on an idle connection and 30 s
 * to take a response, after which the connection is closed.  Every error
 * response carries Connection: close; the server then shuts down its
 * sending side and drains input for a moment so the client reads the
 * error instead of a reset.
 *
 * Deliberately not here: TLS, request bodies (Content-Length > 0 or
 * Transfer-Encoding gets 413 and close), methods other than GET and HEAD
 * (405 with Allow), Expect/100-continue, Upgrade (answered, then closed),
 * percent-decoding of the path, authentication.  Nothing here logs: the
 * endpoints are polled and a noisy scraper must not flood the log.
 *
 * Memory: a connection is freed when both of its handles have closed; the
 * server is freed after http_stop() once the listener and the last
 * connection have closed.
 */
#include "sluice/http.h"
#include "sluice/list.h"

#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_MAX_HEAD   8192    /* request line + headers */
#define HTTP_IN_BUF     8192    /* input buffer per connection */
#define HTTP_MAX_CONNS  64
#define HTTP_IDLE_MS    10000   /* waiting for a complete request */
#define HTTP_WRITE_MS   30000   /* waiting for the client to take a response */
#define HTTP_LINGER_MS  2000    /* draining input before closing after an error */
#define HTTP_BACKLOG    64
#define HTTP_KEEP_BODY  65536   /* body buffer capacity kept between requests */
#define HTTP_DEFAULT_CT "text/plain; charset=utf-8"

struct http_server {
	uv_tcp_t tcp;
	uv_loop_t *loop;
	http_handler_fn fn;
	void *arg;
	int port;
	bool stopping;
	bool listener_closed;
	struct statlist conns;   /* every connection not yet freed */
	int active;              /* of which count towards HTTP_MAX_CONNS */
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	struct list link;
	struct http_server *srv;
	http_parser parser;
	int open_handles;        /* tcp and timer until their close callbacks */
	bool counted;            /* counts towards srv->active */
	bool closing;
	bool reading;
	bool writing;
	bool close_after_write;
	bool lingering;          /* response sent, draining input until EOF */
	bool keep_alive;         /* of the request just completed */
	int err_status;          /* set by a callback that rejects the request */
	size_t req_bytes;        /* bytes of the current request parsed so far */
	size_t in_off, in_len;
	size_t url_len;
	struct pktbuf body;
	char head[512];
	char url[HTTP_MAX_HEAD + 1];
	char in[HTTP_IN_BUF];
};

static void conn_process(struct http_conn *c);

/* ---------------------------------------------------------------------- */
/* Teardown */

static void server_maybe_free(struct http_server *srv)
{
	if (srv->stopping && srv->listener_closed && statlist_count(&srv->conns) == 0)
		free(srv);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	struct http_server *srv = c->srv;

	if (--c->open_handles > 0)
		return;
	statlist_remove(&srv->conns, &c->link);
	pktbuf_free(&c->body);
	free(c);
	server_maybe_free(srv);
}

/* Idempotent; a pending write or shutdown is cancelled by libuv. */
static void conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->counted) {
		c->counted = false;
		c->srv->active--;
	}
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
	conn_close(t->data);
}

/* ---------------------------------------------------------------------- */
/* Reading */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct http_conn *c = h->data;
	(void)hint;

	if (c->lingering || c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
	} else if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	/* A zero-length buffer makes libuv report UV_ENOBUFS: the conn closes. */
	*buf = uv_buf_init(c->in + c->in_len, (unsigned int)(sizeof(c->in) - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *c = s->data;
	(void)buf;

	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		/* EOF mid-request or after the last response; nobody to answer. */
		conn_close(c);
		return;
	}
	if (c->lingering)
		return;        /* discarded: the next on_alloc reuses the buffer */
	c->in_len += (size_t)nread;
	conn_process(c);
}

static void start_reading(struct http_conn *c)
{
	if (c->reading || c->closing)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		conn_close(c);
		return;
	}
	c->reading = true;
}

static void stop_reading(struct http_conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

/* ---------------------------------------------------------------------- */
/* Writing */

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct http_conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0)
		conn_close(c);
	/* Otherwise wait for the client's EOF or the linger timer. */
}

static void on_write(uv_write_t *req, int status)
{
	struct http_conn *c = req->data;

	c->writing = false;
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->body.cap > HTTP_KEEP_BODY)
		pktbuf_free(&c->body);
	else
		pktbuf_reset(&c->body);

	if (c->close_after_write) {
		c->lingering = true;
		c->sreq.data = c;
		if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
			conn_close(c);
			return;
		}
		uv_timer_start(&c->timer, on_timer, HTTP_LINGER_MS, 0);
		start_reading(c);
		return;
	}
	uv_timer_start(&c->timer, on_timer, HTTP_IDLE_MS, 0);
	conn_process(c);        /* a pipelined request may be waiting */
}

static const char *reason_phrase(int status)
{
	const char *s = http_status_str((enum http_status)status);

	return strcmp(s, "<unknown>") == 0 ? "Unknown" : s;
}

/*
 * Frame and send c->body with the given status.  head_only sends the
 * headers of the would-be response (HEAD); extra is added verbatim after
 * the standard headers and must end in CRLF.
 */
static void send_response(struct http_conn *c, int status, const char *ctype,
			  bool head_only, bool keep, const char *extra)
{
	uv_buf_t bufs[2];
	unsigned int nbufs = 1;
	char length[64] = "";
	bool no_body = status == 204 || status == 304;
	int n;

	if (!no_body)
		snprintf(length, sizeof(length), "Content-Length: %zu\r\n", c->body.len);
	if (!ctype)
		ctype = HTTP_DEFAULT_CT;
	n = snprintf(c->head, sizeof(c->head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sConnection: %s\r\n%s\r\n",
		     status, reason_phrase(status), ctype, length,
		     keep ? "keep-alive" : "close", extra ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(c->head)) {
		/* Only an absurd content type gets here. */
		n = snprintf(c->head, sizeof(c->head),
			     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sConnection: %s\r\n\r\n",
			     status, reason_phrase(status), HTTP_DEFAULT_CT, length,
			     keep ? "keep-alive" : "close");
	}
	bufs[0] = uv_buf_init(c->head, (unsigned int)n);
	if (!head_only && !no_body && c->body.len > 0)
		bufs[nbufs++] = uv_buf_init((char *)c->body.data, (unsigned int)c->body.len);

	stop_reading(c);
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write) != 0) {
		conn_close(c);
		return;
	}
	c->writing = true;
	c->close_after_write = !keep;
	uv_timer_start(&c->timer, on_timer, HTTP_WRITE_MS, 0);
}

static void send_error(struct http_conn *c, int status)
{
	const char *reason = reason_phrase(status);

	pktbuf_reset(&c->body);
	pktbuf_put_bytes(&c->body, reason, strlen(reason));
	pktbuf_put_byte(&c->body, '\n');
	send_response(c, status, NULL, false, false,
		      status == 405 ? "Allow: GET, HEAD\r\n" : NULL);
}

/* ---------------------------------------------------------------------- */
/* Requests */

static int on_message_begin(http_parser *p)
{
	struct http_conn *c = p->data;

	c->url_len = 0;
	c->err_status = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;

	/* Cannot trigger while req_bytes is bounded, but never overflow. */
	if (len > sizeof(c->url) - 1 - c->url_len) {
		c->err_status = 431;
		return -1;
	}
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = p->data;

	if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
		c->err_status = 405;
		return -1;
	}
	if ((p->flags & F_CHUNKED) || p->uses_transfer_encoding ||
	    ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)) {
		c->err_status = 413;
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	(void)at;
	(void)len;

	c->err_status = 413;
	return -1;
}

/* Pause so that http_parser_execute returns right after this request. */
static int on_message_complete(http_parser *p)
{
	struct http_conn *c = p->data;

	c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* Reduce c->url to the NUL-terminated path; false if the URL is unusable. */
static bool url_to_path(struct http_conn *c)
{
	struct http_parser_url u;
	size_t off, len;

	http_parser_url_init(&u);
	if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0)
		return false;
	if (!(u.field_set & (1 << UF_PATH))) {
		strcpy(c->url, "/");      /* "http://host" without a path */
		c->url_len = 1;
		return true;
	}
	off = u.field_data[UF_PATH].off;
	len = u.field_data[UF_PATH].len;
	memmove(c->url, c->url + off, len);
	c->url[len] = '\0';
	c->url_len = len;
	return true;
}

/* The handler's answer to the complete request whose path is in c->url. */
static void handle_request(struct http_conn *c)
{
	struct http_server *srv = c->srv;
	bool head = c->parser.method == HTTP_HEAD;
	struct http_response resp;

	resp.status = 200;
	resp.content_type = NULL;
	resp.body = c->body;
	pktbuf_reset(&resp.body);
	srv->fn(srv->arg, head ? "HEAD" : "GET", c->url, &resp);
	c->body = resp.body;
	if (c->closing)
		return;         /* the handler stopped the server */
	if (resp.status < 200 || resp.status > 599) {
		send_error(c, 500);
		return;
	}
	send_response(c, resp.status, resp.content_type, head, c->keep_alive, NULL);
}

/* parse_step() found a complete request. */
#define REQUEST_READY 1

/*
 * Feed c's buffered input to the parser up to the end of one request.  The
 * parser is never given more than what is left of HTTP_MAX_HEAD for the
 * current request, so the bound is exact.  Returns 0 when all of the input
 * was taken and more is needed, REQUEST_READY when a complete request's
 * path is in c->url, or the error status to answer with (then close).
 */
static int parse_step(struct http_conn *c)
{
	size_t n = MIN(c->in_len - c->in_off, HTTP_MAX_HEAD - c->req_bytes);
	size_t done = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_off, n);
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

	c->in_off += done;
	c->req_bytes += done;
	if (e == HPE_PAUSED) {
		http_parser_pause(&c->parser, 0);
		c->req_bytes = 0;
		return url_to_path(c) ? REQUEST_READY : 400;
	}
	if (e != HPE_OK || done != n)
		return c->err_status ? c->err_status : 400;
	if (c->req_bytes >= HTTP_MAX_HEAD)
		return 431;
	return 0;
}

/* Parse buffered input, at most one request at a time, and answer each
 * complete request. */
static void conn_process(struct http_conn *c)
{
	while (!c->closing && !c->writing && !c->lingering && c->in_off < c->in_len) {
		int st = parse_step(c);

		if (st == REQUEST_READY)
			handle_request(c);
		else if (st)
			send_error(c, st);
	}
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	if (!c->closing && !c->writing)
		start_reading(c);
}

/* ---------------------------------------------------------------------- */
/* Accepting */

static void on_connection(uv_stream_t *ls, int status)
{
	struct http_server *srv = ls->data;
	struct http_conn *c;

	if (status < 0 || srv->stopping)
		return;
	c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
		free(c);
		return;
	}
	uv_timer_init(srv->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->open_handles = 2;
	pktbuf_init(&c->body);
	statlist_append(&srv->conns, &c->link);

	if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0 || srv->active >= HTTP_MAX_CONNS) {
		conn_close(c);
		return;
	}
	c->counted = true;
	srv->active++;
	uv_tcp_nodelay(&c->tcp, 1);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	uv_timer_start(&c->timer, on_timer, HTTP_IDLE_MS, 0);
	start_reading(c);
}

/* ---------------------------------------------------------------------- */
/* Public */

static void set_err(char *err, size_t errlen, const char *addr, int port,
		    const char *what, int uverr)
{
	if (err && errlen)
		snprintf(err, errlen, "http listener %s:%d: %s: %s", addr, port, what,
			 uv_strerror(uverr));
}

static void free_handle_server(uv_handle_t *h)
{
	free(h->data);
}

static void on_listener_closed(uv_handle_t *h)
{
	struct http_server *srv = h->data;

	srv->listener_closed = true;
	server_maybe_free(srv);
}

/*
 * The socket is created, bound and put into listening state by hand before
 * any handle exists, so the usual failures (bad address, port in use) leave
 * nothing behind that needs the loop to run.
 */
int http_start(struct http_server **out, uv_loop_t *loop, const char *addr, int port,
	       http_handler_fn fn, void *arg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct http_server *srv;
	char host[64];
	size_t alen;
	int fd, rc, one = 1;

	*out = NULL;
	if (!addr || !addr[0] || strcmp(addr, "*") == 0)
		addr = "0.0.0.0";
	alen = strlen(addr);
	if (addr[0] == '[' && alen >= 2 && addr[alen - 1] == ']' && alen - 2 < sizeof(host)) {
		memcpy(host, addr + 1, alen - 2);       /* "[::1]" */
		host[alen - 2] = '\0';
	} else {
		snprintf(host, sizeof(host), "%s", addr);
	}
	memset(&ss, 0, sizeof(ss));
	if (port < 0 || port > 65535 || !fn ||
	    (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	     uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)) {
		set_err(err, errlen, addr, port, "invalid address or port", UV_EINVAL);
		return UV_EINVAL;
	}

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = uv_translate_sys_error(errno);
		set_err(err, errlen, addr, port, "socket", rc);
		return rc;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, ss.ss_family == AF_INET6 ?
		 sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) != 0) {
		rc = uv_translate_sys_error(errno);
		set_err(err, errlen, addr, port, "bind", rc);
		close(fd);
		return rc;
	}
	if (listen(fd, HTTP_BACKLOG) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
		rc = uv_translate_sys_error(errno);
		set_err(err, errlen, addr, port, "listen", rc);
		close(fd);
		return rc;
	}

	srv = xcalloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->fn = fn;
	srv->arg = arg;
	srv->port = ntohs(ss.ss_family == AF_INET6 ?
			  ((struct sockaddr_in6 *)&ss)->sin6_port :
			  ((struct sockaddr_in *)&ss)->sin_port);
	statlist_init(&srv->conns);
	rc = uv_tcp_init(loop, &srv->tcp);
	if (rc != 0) {
		set_err(err, errlen, addr, port, "uv_tcp_init", rc);
		close(fd);
		free(srv);
		return rc;
	}
	srv->tcp.data = srv;
	/* Neither failure is expected after listen(2) worked; the loop frees srv. */
	rc = uv_tcp_open(&srv->tcp, fd);
	if (rc != 0) {
		close(fd);
		set_err(err, errlen, addr, port, "uv_tcp_open", rc);
		uv_close((uv_handle_t *)&srv->tcp, free_handle_server);
		return rc;
	}
	rc = uv_listen((uv_stream_t *)&srv->tcp, HTTP_BACKLOG, on_connection);
	if (rc != 0) {
		set_err(err, errlen, addr, port, "uv_listen", rc);
		uv_close((uv_handle_t *)&srv->tcp, free_handle_server);
		return rc;
	}
	*out = srv;
	return 0;
}

int http_port(const struct http_server *srv)
{
	return srv->port;
}

int http_parse_input(const char *data, size_t len, size_t chunk, http_request_fn fn, void *arg)
{
	struct http_conn *c = xcalloc(1, sizeof(*c));
	int status = 0;

	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	while (len > 0) {
		/* One read, as on_alloc() and on_read() take it: conn_process()
		 * always consumes the whole buffer before reading again. */
		size_t n = MIN(len, sizeof(c->in));
		if (chunk)
			n = MIN(n, chunk);
		memcpy(c->in, data, n);
		c->in_off = 0;
		c->in_len = n;
		data += n;
		len -= n;
		/* conn_process(), with each response written at once. */
		while (c->in_off < c->in_len) {
			int st = parse_step(c);

			if (st == REQUEST_READY) {
				fn(arg, c->parser.method == HTTP_HEAD ? "HEAD" : "GET", c->url,
				   c->keep_alive);
				if (!c->keep_alive)
					goto out;   /* closed after the response */
			} else if (st) {
				status = st;
				goto out;
			}
		}
	}
out:
	free(c);
	return status;
}

void http_stop(struct http_server *srv)
{
	struct list *e, *tmp;

	if (!srv || srv->stopping)
		return;
	srv->stopping = true;
	uv_close((uv_handle_t *)&srv->tcp, on_listener_closed);
	statlist_for_each_safe(e, tmp, &srv->conns)
		conn_close(container_of(e, struct http_conn, link));
}
