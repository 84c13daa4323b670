/*
 * conn.c - the I/O engine under client and server sockets (see conn.h).
 *
 * This is the only file that reads from or writes to a connection's socket,
 * starts or stops its poll handle, or closes it.  The rules:
 *
 *  - error takes precedence over write, write over read (a writable peer
 *    may unblock the reader we are about to serve);
 *  - bytes in [sent, scan) of a buffer are owed to the peer and must not
 *    move; the buffer is compacted only when nothing is owed;
 *  - generated output (conn.out) goes before relayed bytes to the same
 *    socket, and is only produced at message boundaries;
 *  - a connection with bytes it cannot deliver stops reading ("blocked")
 *    until the peer drains: a slow reader slows its writer, memory stays
 *    bounded.
 */
#include "sluice/conn.h"
#include "sluice/log.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/proto.h"

/* Largest message the protocol callbacks may ask to see whole. */
#define CONN_MAX_INSPECT (1024u * 1024u)
/* Relayed bytes appended to pending generated output to share one write. */
#define COALESCE_MAX (16u * 1024u)

static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void apply_poll(struct conn *c);
static void conn_process(struct conn *c);

/* ---- socket I/O: plain or TLS --------------------------------------- */

/* Returns >0 bytes, 0 on EOF, -EAGAIN when nothing is there, -errno. */
static ssize_t io_recv(struct conn *c, void *buf, size_t n)
{
	if (c->ssl) {
		ERR_clear_error();
		int r = SSL_read(c->ssl, buf, (int)MIN(n, (size_t)INT32_MAX));
		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return -EAGAIN;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		case SSL_ERROR_SYSCALL:
			return errno ? -errno : 0;
		default:
			return -EPROTO;
		}
	}
	for (;;) {
		ssize_t r = recv(c->fd, buf, n, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			return -EAGAIN;
		return -errno;
	}
}

/* Returns bytes written (0 = would block) or -errno. */
static ssize_t io_send(struct conn *c, const void *buf, size_t n)
{
	if (c->ssl) {
		/* After WANT_WRITE OpenSSL wants the same length again. */
		int len = c->ssl_retry_len ? c->ssl_retry_len : (int)MIN(n, (size_t)INT32_MAX);
		ERR_clear_error();
		int r = SSL_write(c->ssl, buf, len);
		if (r > 0) {
			c->ssl_retry_len = 0;
			return r;
		}
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			c->ssl_retry_len = len;
			return 0;
		case SSL_ERROR_SYSCALL:
			return errno ? -errno : -EPIPE;
		default:
			return -EPROTO;
		}
	}
	for (;;) {
		ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			return 0;
		return -errno;
	}
}

/* ---- poll mask ------------------------------------------------------- */

void conn_update_poll(struct conn *c)
{
	if (c->closing || !c->poll)
		return;
	int ev = 0;
	if (c->tls_handshake) {
		/* Nothing but the handshake moves until it is done: pending
		 * output would make an always-writable socket spin the loop. */
		ev = c->tls_want;
	} else if (!c->stopped && !c->blocked && !c->close_after_flush)
		ev |= UV_READABLE;
	else if (c->stopped && !c->close_after_flush)
		/* Not reading (e.g. a client queued for a server), yet a peer
		 * that hangs up must be noticed now, not when it is served.
		 * Usually nothing arrives meanwhile, so the readable mask stays
		 * (no epoll_ctl for a short wait); once bytes do arrive, only
		 * hang-ups are polled for until the connection resumes. */
		ev |= c->hold_read ? UV_DISCONNECT : UV_READABLE;
	if (!c->tls_handshake && (pktbuf_pending(&c->out) || (c->peer && c->peer->blocked)))
		ev |= UV_WRITABLE;
	c->want = ev;
	if (ev == c->events || !list_unlinked(&c->dirty))
		return;
	struct conn_poller *p = c->poll->loop->data;
	if (p)
		list_insert_before(&p->dirty, &c->dirty);
	else
		apply_poll(c);
}

static void apply_poll(struct conn *c)
{
	c->events = c->want;
	if (c->want)
		uv_poll_start(c->poll, c->want, conn_poll_cb);
	else
		uv_poll_stop(c->poll);
}

static void poller_prepare_cb(uv_prepare_t *h)
{
	struct conn_poller *p = h->data;
	while (!list_empty(&p->dirty)) {
		struct conn *c = container_of(p->dirty.next, struct conn, dirty);
		list_del(&c->dirty);
		if (!c->closing && c->poll && c->want != c->events)
			apply_poll(c);
	}
}

void conn_poller_init(struct conn_poller *p, uv_loop_t *loop)
{
	list_init(&p->dirty);
	p->nspare = 0;
	p->spare_size = 0;
	uv_prepare_init(loop, &p->prepare);
	p->prepare.data = p;
	uv_prepare_start(&p->prepare, poller_prepare_cb);
	uv_unref((uv_handle_t *)&p->prepare);
	loop->data = p;
}

void conn_poller_free(struct conn_poller *p)
{
	while (p->nspare)
		free(p->spare[--p->nspare]);
}

/* ---- input buffers --------------------------------------------------- */

static struct conn_poller *poller_of(const struct conn *c)
{
	return c->poll ? c->poll->loop->data : NULL;
}

/* A buffer of cap bytes for c: a spare one when the size matches. */
static uint8_t *rbuf_get(struct conn *c, uint32_t cap)
{
	struct conn_poller *p = poller_of(c);
	if (p && p->nspare && cap == p->spare_size)
		return p->spare[--p->nspare];
	return xmalloc(cap);
}

/* Give c's input buffer back (kept as a spare if it has the normal size). */
static void rbuf_release(struct conn *c)
{
	struct conn_poller *p = poller_of(c);
	if (!c->rbuf)
		return;
	if (p && c->rcap == c->pkt_buf && p->nspare < CONN_SPARE_BUFS &&
	    (!p->nspare || p->spare_size == c->rcap)) {
		p->spare_size = c->rcap;
		p->spare[p->nspare++] = c->rbuf;
	} else {
		free(c->rbuf);
	}
	c->rbuf = NULL;
	c->rcap = 0;
}

/* ---- set-up and close ------------------------------------------------ */

static void conn_setup(struct conn *c, const struct conn_ops *ops, uint32_t pkt_buf)
{
	c->ops = ops;
	c->pkt_buf = pkt_buf;
	c->events = 0;
	c->want = 0;
	list_init(&c->dirty);
	pktbuf_init(&c->out);
}

int conn_init(struct conn *c, uv_loop_t *loop, int fd, const struct conn_ops *ops,
	      uint32_t pkt_buf, bool startup)
{
	conn_setup(c, ops, pkt_buf);
	c->fd = fd;
	c->startup = startup;
	c->poll = xmalloc(sizeof(*c->poll));
	int rc = uv_poll_init(loop, c->poll, fd);
	if (rc < 0) {
		free(c->poll);
		c->poll = NULL;
		return rc;
	}
	c->poll->data = c;
	conn_update_poll(c);
	return 0;
}

void conn_adopt_poll(struct conn *c, uv_poll_t *poll, int fd,
		     const struct conn_ops *ops, uint32_t pkt_buf)
{
	conn_setup(c, ops, pkt_buf);
	/* Server connections: few and busy, so their buffers are kept rather
	 * than freed and allocated again for every transaction. */
	c->keep_buffers = true;
	c->fd = fd;
	c->poll = poll;
	poll->data = c;
	uv_poll_stop(poll);
	conn_update_poll(c);
}

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	rbuf_release(c);
	free(h);
	c->poll = NULL;
	pktbuf_free(&c->out);
	c->ops->on_closed(c);
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->dirty.next && !list_unlinked(&c->dirty))   /* (never set up: zeroed) */
		list_del(&c->dirty);
	if (!c->poll) {
		/* Never got a handle: the owner frees right away. */
		free(c->rbuf);
		c->rbuf = NULL;
		pktbuf_free(&c->out);
		c->ops->on_closed(c);
		return;
	}
	/* uv_close() stops the poll itself (a uv_poll_stop() first would be a
	 * second epoll_ctl call). */
	uv_close((uv_handle_t *)c->poll, conn_close_cb);
}

/* ---- output ---------------------------------------------------------- */

/* Write c->out; true when it is empty afterwards (or was). */
static bool flush_out(struct conn *c)
{
	while (pktbuf_pending(&c->out)) {
		ssize_t n = io_send(c, c->out.data + c->out.off, pktbuf_pending(&c->out));
		if (n < 0) {
			c->ops->on_error(c, strerror((int)-n));
			return false;
		}
		if (n == 0)
			return false;
		c->out.off += (size_t)n;
		c->bytes_out += (uint64_t)n;
	}
	pktbuf_reset(&c->out);
	return true;
}

void conn_send_out(struct conn *c)
{
	if (c->closing)
		return;
	if (flush_out(c) && c->close_after_flush) {
		conn_close(c);
		return;
	}
	conn_update_poll(c);
}

void conn_close_after_flush(struct conn *c)
{
	if (c->closing)
		return;
	c->close_after_flush = true;
	/* In the middle of a TLS handshake no message can reach the peer (and
	 * it may never finish the handshake): close now. */
	if (c->tls_handshake) {
		pktbuf_reset(&c->out);
		conn_close(c);
		return;
	}
	conn_send_out(c);
}

/*
 * Deliver src's owed bytes [sent, scan) to its peer.  Returns true when all
 * are written; otherwise src is blocked until the peer becomes writable (or
 * the peer failed and its owner is closing things).
 */
static bool push_pending(struct conn *src)
{
	struct conn *dst = src->peer;

	if (!dst || dst->closing) {
		conn_drop_pending(src);
		return true;
	}
	if (pktbuf_pending(&dst->out)) {
		/* Generated bytes go first; small relayed bytes ride along in
		 * the same write (one syscall instead of two), unless a TLS
		 * write must be repeated with the same length. */
		uint32_t n = src->scan - src->sent;
		if (n && n <= COALESCE_MAX && pktbuf_pending(&dst->out) <= COALESCE_MAX &&
		    !dst->ssl_retry_len) {
			pktbuf_put_bytes(&dst->out, src->rbuf + src->sent, n);
			src->sent = src->scan;
		}
		if (!flush_out(dst))
			goto blocked;
	}
	while (src->sent < src->scan) {
		ssize_t n = io_send(dst, src->rbuf + src->sent, src->scan - src->sent);
		if (n < 0) {
			dst->ops->on_error(dst, strerror((int)-n));
			return false;
		}
		if (n == 0)
			goto blocked;
		src->sent += (uint32_t)n;
		dst->bytes_out += (uint64_t)n;
	}
	/* Generated bytes put into dst->out asked for a writable mask; they
	 * are gone now, and a stale mask would cost two epoll_ctl calls. */
	if (dst->want & UV_WRITABLE)
		conn_update_poll(dst);
	return true;
blocked:
	if (dst->closing || src->closing)
		return false;
	src->blocked = true;
	conn_update_poll(src);
	conn_update_poll(dst);
	return false;
}

void conn_pending_to_peer_out(struct conn *c)
{
	struct conn *dst = c->peer;

	if (!dst || c->sent == c->scan)
		return;
	pktbuf_put_bytes(&dst->out, c->rbuf + c->sent, c->scan - c->sent);
	c->sent = c->scan;
	if (c->blocked) {
		c->blocked = false;
		conn_update_poll(c);
	}
	conn_update_poll(dst);
}

void conn_drop_pending(struct conn *c)
{
	c->sent = c->scan;
	if (c->remaining && !c->skip)
		c->skip = true;  /* the rest of a half-relayed message is dropped */
	if (c->blocked) {
		c->blocked = false;
		conn_update_poll(c);
	}
}

/* ---- input ----------------------------------------------------------- */

/*
 * Make room so that n bytes starting at scan fit in the buffer.  Bytes owed
 * to the peer pin the buffer: then nothing moves, and the caller waits for
 * the flush (conn_process runs again once the peer drained).
 */
static bool make_room(struct conn *c, uint32_t n)
{
	if (n > CONN_MAX_INSPECT && !c->startup) {
		c->ops->on_error(c, "message too large to inspect");
		return false;
	}
	if (c->rbuf && c->scan + n <= c->rcap)
		return true;
	if (c->sent != c->scan)
		return true;
	uint32_t live = c->end - c->scan;
	if (c->rbuf && c->scan > 0) {
		memmove(c->rbuf, c->rbuf + c->scan, live);
		c->end = live;
		c->sent = c->scan = 0;
	}
	if (!c->rbuf || n > c->rcap) {
		/* Startup packets are small: a login does not need a full buffer. */
		uint32_t cap = MAX(c->startup ? 512u : c->pkt_buf, n);
		c->rbuf = c->rbuf ? xrealloc(c->rbuf, cap) : rbuf_get(c, cap);
		c->rcap = cap;
	}
	return true;
}

/* Walk the messages at the scan point and apply the callback's decisions. */
static void process_loop(struct conn *c)
{
	while (!c->closing && !c->stopped && !c->tls_handshake) {
		if (c->remaining) {
			if (c->skip && c->sent != c->scan && !push_pending(c))
				return;
			uint32_t n = MIN(c->remaining, c->end - c->scan);
			if (n == 0)
				return;
			c->scan += n;
			c->remaining -= n;
			if (c->skip)
				c->sent = c->scan;
			if (c->remaining)
				return;
			if (c->notify_flushed) {
				c->stopped = true;
				return;
			}
			continue;
		}

		uint32_t avail = c->end - c->scan;
		uint32_t hdr = c->startup ? 0 : 5;
		if (avail < (c->startup ? 4u : 5u)) {
			make_room(c, c->startup ? 4 : 5);
			return;
		}
		const uint8_t *p = c->rbuf + c->scan;
		uint8_t type = 0;
		uint32_t body;
		if (c->startup) {
			/* The length counts itself; the callback checks the upper
			 * bound (PostgreSQL's 10,000 bytes). */
			body = proto_get32(p);
			if (body < 4) {
				c->ops->on_error(c, "invalid startup packet length");
				return;
			}
		} else {
			type = p[0];
			uint32_t len = proto_get32(p + 1);
			/* Both bounds matter: hdr + body must not wrap around. */
			if (len < 4 || len > PROTO_MAX_MESSAGE) {
				if (!c->ops->on_bad_length)
					c->ops->on_error(c, "invalid message length");
				else if (c->ops->on_bad_length(c, type, len) == PKT_WAIT)
					c->stopped = true;
				return;
			}
			body = len - 4;
		}
		uint32_t have = MIN(avail - hdr, body);
		enum pkt_action a = c->ops->on_packet(c, type, body, p + hdr, have);
		switch (a) {
		case PKT_FORWARD:
			c->remaining = hdr + body;
			c->skip = false;
			if (c->skip_prefix) {
				/* The caller wrote its own version of these bytes. */
				uint32_t n = MIN(c->skip_prefix, hdr + have);
				c->skip_prefix = 0;
				c->scan += n;
				c->sent = c->scan;
				c->remaining -= n;
			}
			break;
		case PKT_FORWARD_STOP:
			c->remaining = hdr + body;
			c->skip = false;
			c->notify_flushed = true;
			break;
		case PKT_SKIP:
		case PKT_SKIP_STOP:
			c->remaining = hdr + body;
			c->skip = true;
			c->notify_flushed = c->notify_flushed || a == PKT_SKIP_STOP;
			break;
		case PKT_NEED_BODY: {
			uint32_t want = c->need_bytes ? MIN(c->need_bytes, body) : body;
			c->need_bytes = 0;
			if (have >= want) {
				c->ops->on_error(c, "protocol handler asked for a buffered body");
				return;
			}
			make_room(c, hdr + want);
			return;
		}
		case PKT_WAIT:
			c->stopped = true;
			return;
		case PKT_CLOSED:
			return;
		}
	}
}

/* Idle connections give their buffer back. */
static void maybe_release_buffer(struct conn *c)
{
	if (c->scan != c->end || c->sent != c->scan)
		return;
	c->sent = c->scan = c->end = 0;
	if (c->rbuf && ((!c->peer && !c->keep_buffers) || c->rcap > c->pkt_buf))
		rbuf_release(c);
	/* The output buffer too (a client's greeting, a console answer). */
	if (!c->peer && !c->keep_buffers && c->out.data && !pktbuf_pending(&c->out))
		pktbuf_free(&c->out);
}

static void conn_process(struct conn *c)
{
	process_loop(c);
	if (c->closing)
		return;
	if (conn_has_pending(c) && !push_pending(c))
		return;
	if (c->closing)
		return;
	if (c->notify_flushed && c->stopped) {
		c->notify_flushed = false;
		c->ops->on_flushed(c);
		if (c->closing)
			return;
	}
	maybe_release_buffer(c);
	conn_update_poll(c);
}

static void conn_on_readable(struct conn *c)
{
	for (;;) {
		if (c->closing || c->stopped || c->blocked || c->close_after_flush)
			return;
		if (!c->rbuf || c->end == c->rcap) {
			make_room(c, c->end - c->scan + 1);
			if (c->closing || c->end == c->rcap)
				return;
		}
		ssize_t n = io_recv(c, c->rbuf + c->end, c->rcap - c->end);
		if (n == -EAGAIN) {
			maybe_release_buffer(c);
			return;
		}
		if (n <= 0) {
			c->ops->on_error(c, n == 0 ? "EOF" : strerror((int)-n));
			return;
		}
		c->end += (uint32_t)n;
		c->bytes_in += (uint64_t)n;
		conn_process(c);
		/* TLS may hold decrypted bytes the socket will not signal again. */
		if (!c->ssl || !SSL_has_pending(c->ssl))
			return;
	}
}

void conn_resume(struct conn *c)
{
	if (c->closing)
		return;
	c->stopped = false;
	c->hold_read = false;
	c->notify_flushed = false;
	conn_process(c);
	if (!c->closing && c->ssl && SSL_has_pending(c->ssl))
		conn_on_readable(c);
}

void conn_pause(struct conn *c)
{
	c->stopped = true;
	conn_update_poll(c);
}

/* The peer of dst may have been waiting for dst to drain. */
static void conn_on_writable(struct conn *dst)
{
	if (!flush_out(dst)) {
		conn_update_poll(dst);
		return;
	}
	if (dst->close_after_flush) {
		conn_close(dst);
		return;
	}
	struct conn *src = dst->peer;
	if (src && src->blocked) {
		if (!push_pending(src))
			return;
		src->blocked = false;
		conn_update_poll(dst);
		conn_process(src);
		if (!src->closing && src->ssl && SSL_has_pending(src->ssl))
			conn_on_readable(src);
		return;
	}
	conn_update_poll(dst);
}

/* One step of the server side of a TLS handshake. */
static void tls_handshake_step(struct conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls_handshake = false;
		conn_update_poll(c);
		/* The client may already have sent its startup packet. */
		if (SSL_has_pending(c->ssl) || SSL_pending(c->ssl) > 0)
			conn_on_readable(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->tls_want = UV_READABLE;
		break;
	case SSL_ERROR_WANT_WRITE:
		c->tls_want = UV_WRITABLE;
		break;
	default: {
		char buf[160];
		unsigned long e = ERR_get_error();
		snprintf(buf, sizeof(buf), "TLS handshake failed: %s",
			 e ? ERR_reason_error_string(e) : "connection closed");
		ERR_clear_error();
		c->ops->on_error(c, buf);
		return;
	}
	}
	conn_update_poll(c);
}

void conn_start_tls(struct conn *c, SSL *ssl)
{
	c->ssl = ssl;
	c->tls_handshake = true;
	c->tls_want = UV_READABLE;
	conn_update_poll(c);
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;

	if (c->closing)
		return;
	if (status < 0) {
		/* libuv reports POLLERR as UV_EBADF: the socket's own error
		 * (a reset, usually) is the one to tell. */
		int err = 0;
		socklen_t elen = sizeof(err);
		if (status == UV_EBADF && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0)
			c->ops->on_error(c, err ? strerror(err) : "EOF");
		else
			c->ops->on_error(c, uv_strerror(status));
		return;
	}
	/* Events of a mask that changed since (it is applied before the next
	 * poll) are not wanted any more. */
	events &= c->want | (c->tls_handshake ? c->tls_want : 0);
	if (c->tls_handshake) {
		tls_handshake_step(c);
		return;
	}
	if (events & UV_WRITABLE) {
		conn_on_writable(c);
		if (c->closing)
			return;
	}
	if ((events & UV_READABLE) && c->stopped && !c->tls_handshake) {
		/* Readable while processing is paused: a hang-up, or more
		 * bytes that must wait (then stop polling for them). */
		char byte;
		ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			c->ops->on_error(c, n == 0 ? "EOF" : strerror(errno));
			return;
		}
		if (n > 0)
			c->hold_read = true;
	} else if (events & UV_READABLE) {
		conn_on_readable(c);
	} else if ((events & UV_DISCONNECT) && c->stopped) {
		c->ops->on_error(c, "EOF");
		return;
	}
	if (!c->closing)
		conn_update_poll(c);
}
