/*
 * http.h - a tiny HTTP/1.1 server on the event loop, for /metrics, /healthz
 * and /readyz.
 *
 * GET and HEAD only, no request bodies, no TLS.  The handler runs on the
 * loop thread, once per complete request, and fills in a response; the
 * server frames it (status line, Content-Type, Content-Length, Connection)
 * and writes it without blocking.  See http.c for the limits.  Like the
 * rest of the pooler it expects SIGPIPE to be ignored.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <uv.h>

#include "sluice/common.h"
#include "sluice/pktbuf.h"

struct http_server;

struct http_response {
	int status;               /* 200 unless the handler changes it */
	const char *content_type; /* static string; NULL = text/plain */
	struct pktbuf body;       /* the handler appends the body here */
};

/*
 * Called once per complete GET or HEAD request with the method ("GET" or
 * "HEAD") and the path, query string and fragment stripped and not
 * percent-decoded.  For HEAD the body is measured for Content-Length and
 * then dropped, so a handler does not need to care about the method.
 */
typedef void (*http_handler_fn)(void *arg, const char *method, const char *path,
				struct http_response *resp);

/*
 * Listen on addr:port (an IPv4 or IPv6 literal, or "*" for all IPv4
 * addresses; port 0 picks a free port).  Returns 0 and sets *out, or a
 * negative UV error with a message in err; nothing needs freeing then.
 */
int http_start(struct http_server **out, uv_loop_t *loop, const char *addr, int port,
	       http_handler_fn fn, void *arg, char *err, size_t errlen) MUST_CHECK;

/* The port actually bound (useful when port 0 was given). */
int http_port(const struct http_server *srv);

/*
 * Close the listener and every connection.  Memory is freed by the close
 * callbacks, so the loop has to run afterwards until the handles are gone.
 * srv must not be used after this.
 */
void http_stop(struct http_server *srv);

/*
 * Request framing without sockets, for tests and fuzzing.  Runs len bytes of
 * one connection's input, delivered in reads of at most `chunk` bytes (0: as
 * many as the connection's input buffer takes), through the parser and
 * limits the server uses, answering each request at once.  Calls fn for
 * every request the server would hand to its handler, with the method
 * ("GET" or "HEAD"), the path as the handler gets it and whether the
 * connection stays open after it; after one that does not, the rest of the
 * input is ignored, as the server does.  Returns 0, or the error status the
 * server would answer with before closing (400, 405, 413, 431).
 */
typedef void (*http_request_fn)(void *arg, const char *method, const char *path,
				bool keep_alive);
int http_parse_input(const char *data, size_t len, size_t chunk, http_request_fn fn, void *arg);

#endif /* SLUICE_HTTP_H */
