/*
 * conn.h - the I/O engine under every client and server socket.
 *
 *    client socket                                   server socket
 *   +-----------+  recv   +--------+  send    +-----------+
 *   |  conn C   | ------> | C.rbuf | -------> |  conn S   |
 *   |           | <------ | S.rbuf | <------- |           |
 *   +-----------+  send   +--------+  recv    +-----------+
 *
 * Each connection reads into its own buffer; a protocol callback sees every
 * message header and decides (forward, skip, need the whole body, wait);
 * forwarded bytes are sent straight from that buffer to the peer socket,
 * without copying.  When the peer cannot take them all, reading stops on the
 * source until the peer drains (backpressure), so memory per connection is
 * bounded by its buffer.
 *
 * Every socket is a non-blocking fd driven by one uv_poll_t: client sockets
 * come from accept(2) on a polled listener, server sockets belong to libpq,
 * which forbids wrapping them in a uv_tcp_t (DESIGN.md §5.6).  Using the same
 * engine for both keeps one relay path and one close path.  Server sockets
 * may carry libpq's TLS session (conn.ssl); client-side TLS comes later
 * behind the same two I/O helpers.
 *
 * Lifetime: conn_close() stops the poll and calls uv_close(); the owner's
 * on_closed runs from the close callback and frees the object.  Nothing is
 * freed synchronously, so after any call a handler may test conn.closing and
 * return.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <openssl/ssl.h>
#include <uv.h>

#include "sluice/common.h"
#include "sluice/list.h"
#include "sluice/pktbuf.h"

struct conn;

/* What the protocol callback wants done with the message at the scan point. */
enum pkt_action {
	PKT_FORWARD,      /* send the whole message to the peer */
	PKT_FORWARD_STOP, /* forward it, then stop until conn_resume();
			   * ops->on_flushed runs once it is all written */
	PKT_SKIP,         /* drop the whole message */
	PKT_SKIP_STOP,    /* drop it, then stop as after PKT_FORWARD_STOP */
	PKT_NEED_BODY,    /* call again once the whole body is buffered;
			   * must be returned before any side effect */
	PKT_WAIT,         /* leave it in place; call again after conn_resume() */
	PKT_CLOSED,       /* the callback closed the connection */
};

/*
 * Callbacks of a connection's owner.  on_packet gets the message type (0 for
 * a startup packet, whose "body" is then the whole packet), the body length,
 * and the avail bytes of the body that are buffered.
 */
struct conn_ops {
	enum pkt_action (*on_packet)(struct conn *c, uint8_t type, uint32_t len,
				     const uint8_t *body, uint32_t avail);
	/* After PKT_FORWARD_STOP: every forwarded byte reached the peer. */
	void (*on_flushed)(struct conn *c);
	/* EOF or a socket error; the owner decides how to close. */
	void (*on_error)(struct conn *c, const char *reason);
	/* Optional: a message header whose length word is impossible (< 4 or
	 * over 1 GB).  PKT_WAIT holds it (call again after conn_resume());
	 * anything else means the owner closed.  Without it: on_error. */
	enum pkt_action (*on_bad_length)(struct conn *c, uint8_t type, uint32_t len);
	/* From the close callback: the owner frees itself (and the fd). */
	void (*on_closed)(struct conn *c);
};

struct conn {
	uv_poll_t *poll;          /* heap handle; poll->data = this conn */
	int fd;
	int events;               /* mask the poll is started with, 0 = stopped */
	int want;                 /* mask wanted; applied before the next poll */
	struct list dirty;        /* on the poller's list while want != events */
	const struct conn_ops *ops;
	struct conn *peer;        /* linked peer; written by pool_link/unlink only */
	SSL *ssl;                 /* TLS session: libpq's on a server, ours on a
				   * client (freed by the client's owner) */
	bool tls_handshake;       /* TLS handshake in progress (client side) */
	int tls_want;             /* poll events the handshake waits for */
	int ssl_retry_len;        /* SSL_write length to repeat after WANT_WRITE */

	/* Input.  [sent, scan) is decided and waits for the peer; [scan, end)
	 * is not inspected yet.  remaining counts bytes of the current message
	 * beyond scan, to be forwarded or (skip) dropped. */
	uint8_t *rbuf;
	uint32_t rcap, sent, scan, end;
	uint32_t remaining;
	uint32_t pkt_buf;         /* normal buffer size */
	bool skip;
	uint32_t need_bytes;      /* PKT_NEED_BODY: body bytes wanted (0 = all) */
	uint32_t skip_prefix;     /* PKT_FORWARD: leading bytes of the message to
				   * drop (the caller rewrote them); needs
				   * conn_has_pending() false */
	bool startup;             /* messages have no type byte yet */
	bool keep_buffers;        /* keep rbuf/out while idle (servers: few, busy) */
	bool stopped;             /* processing paused (WAIT / FORWARD_STOP) */
	bool hold_read;           /* stopped and the peer sent more: poll for
				   * hang-ups only until resumed */
	bool notify_flushed;      /* call on_flushed once pending is written */
	bool blocked;             /* pending bytes wait for the peer to drain */
	bool close_after_flush;   /* close once out is written */
	bool closing;

	/* Output the pooler generates for this socket. */
	struct pktbuf out;

	uint64_t bytes_in, bytes_out;
};

/*
 * Poll masks change several times while one event is handled (a server
 * stopped for a release and resumed right after, ...).  Each change through
 * uv_poll_start() costs epoll_ctl calls, so changes are collected and only
 * the final mask is applied, once, right before the loop polls again.  One
 * poller per loop (loop->data); without one, changes apply at once.
 */
#define CONN_SPARE_BUFS 32

struct conn_poller {
	uv_prepare_t prepare;
	struct list dirty;        /* conns whose wanted mask is not applied yet */
	/* Input buffers of the normal size that connections gave back.  A
	 * client frees its buffer after each transaction (idle clients hold
	 * none) and needs one again for its next query; these few spares
	 * save a malloc/free pair per transaction. */
	uint8_t *spare[CONN_SPARE_BUFS];
	uint32_t nspare;
	uint32_t spare_size;
};

void conn_poller_init(struct conn_poller *p, uv_loop_t *loop);
/* Free the spare buffers (after the loop is closed). */
void conn_poller_free(struct conn_poller *p);

/* Set up a connection on an fd; starts reading.  Returns 0 or a UV error. */
int conn_init(struct conn *c, uv_loop_t *loop, int fd, const struct conn_ops *ops,
	      uint32_t pkt_buf, bool startup);

/* Take over an already initialised poll handle (server after libpq login). */
void conn_adopt_poll(struct conn *c, uv_poll_t *poll, int fd,
		     const struct conn_ops *ops, uint32_t pkt_buf);

/*
 * Switch a connection to TLS as the server side of the handshake; the
 * connection must have no unread input.  Processing resumes once the
 * handshake completed; a failed handshake calls on_error.
 */
void conn_start_tls(struct conn *c, SSL *ssl);

/* Write the generated output (c->out) as far as the socket takes it. */
void conn_send_out(struct conn *c);

/* Resume processing after PKT_WAIT / PKT_FORWARD_STOP. */
void conn_resume(struct conn *c);

/* Pause reading and processing (e.g. a client waiting for a server). */
void conn_pause(struct conn *c);

/* Close now (pending output is dropped). */
void conn_close(struct conn *c);

/* Send c->out, then close. */
void conn_close_after_flush(struct conn *c);

/* True while c is relaying a message to its peer that it has not read to
 * its end: the peer may hold the first part of it. */
static inline bool conn_mid_message(const struct conn *c)
{
	return c->remaining > 0 && !c->skip;
}

/* True when c has input decided for the peer but not yet written. */
static inline bool conn_has_pending(const struct conn *c)
{
	return c->sent != c->scan;
}

/*
 * Move c's decided-but-unsent relayed bytes into the peer's generated
 * output, so that messages the caller writes to peer->out next follow them
 * in order.
 */
void conn_pending_to_peer_out(struct conn *c);

/* Drop undelivered relayed bytes (the peer is going away). */
void conn_drop_pending(struct conn *c);

/* Re-evaluate the poll mask (after link/unlink changes). */
void conn_update_poll(struct conn *c);

#endif /* SLUICE_CONN_H */
