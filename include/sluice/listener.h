/*
 * listener.h - TCP (IPv4/IPv6) and unix-socket listeners.
 *
 * Each listening socket is owned here and driven by a uv_poll_t, and the
 * pooler calls accept(2) itself: that way accepting can be paused (fd
 * exhaustion, shutdown) simply by stopping the poll, which a libuv
 * uv_tcp_t listener does not allow.
 */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include <sys/socket.h>
#include <uv.h>

#include "sluice/common.h"

struct sluice;

struct listener {
	uv_poll_t poll;
	int fd;
	bool is_unix;
	char *path;          /* unix socket path, removed on close */
	char name[128];      /* "127.0.0.1:6432" or the socket path */
	struct sluice *ctx;
};

/* Open every configured listener; on failure close them and fill err. */
int listener_start_all(struct sluice *ctx, char *err, size_t errlen);

/* Close all listeners (asynchronous; the array is freed when all closed). */
void listener_close_all(struct sluice *ctx);

/* "ip:port", "[ip6]:port" or "unix" for an address (AF_UNIX or family 0). */
void listener_format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* Resume accepting after a pause caused by running out of descriptors. */
void listener_resume_all(struct sluice *ctx, uint64_t now);

#endif /* SLUICE_LISTENER_H */
