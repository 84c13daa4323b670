/*
 * listener.c - listening sockets and accept (see listener.h).
 */
#include "sluice/listener.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/sluice.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Accepts per wakeup, so a connection flood cannot starve established traffic. */
#define ACCEPTS_PER_WAKEUP 64
/* How long accepting pauses after the process ran out of descriptors. */
#define EMFILE_PAUSE_MS 1000

void listener_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%d", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%d", ip, port);
	} else {
		snprintf(buf, len, "unix");
	}
}

/* tcp_keepalive & co. on an accepted client socket (0 = system default). */
static void set_keepalive(const struct config *cfg, int fd)
{
	int on = cfg->tcp_keepalive ? 1 : 0;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	if (on && cfg->tcp_keepidle)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &cfg->tcp_keepidle, sizeof(int));
	if (on && cfg->tcp_keepintvl)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &cfg->tcp_keepintvl, sizeof(int));
	if (on && cfg->tcp_keepcnt)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cfg->tcp_keepcnt, sizeof(int));
	if (cfg->tcp_user_timeout)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &cfg->tcp_user_timeout, sizeof(int));
}

static void pause_all(struct sluice *ctx)
{
	for (int i = 0; i < ctx->n_listeners; i++)
		uv_poll_stop(&ctx->listeners[i].poll);
	ctx->accept_paused_until_ms = sluice_now(ctx) + EMFILE_PAUSE_MS;
}

static void accept_cb(uv_poll_t *h, int status, int events)
{
	struct listener *l = h->data;
	(void)events;

	if (status < 0) {
		log_warning("listener %s: %s", l->name, uv_strerror(status));
		return;
	}
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				log_warning("out of file descriptors, pausing accept for %d ms "
					    "(raise the open files limit)", EMFILE_PAUSE_MS);
				pause_all(l->ctx);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_warning("accept on %s: %s", l->name, strerror(errno));
			}
			return;
		}
		if (!l->is_unix) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			set_keepalive(l->ctx->cfg, fd);
		}
		client_accept(l->ctx, fd, (const struct sockaddr *)&ss, l->is_unix);
	}
}

void listener_resume_all(struct sluice *ctx, uint64_t now)
{
	if (!ctx->accept_paused_until_ms || now < ctx->accept_paused_until_ms || ctx->shutting_down)
		return;
	ctx->accept_paused_until_ms = 0;
	for (int i = 0; i < ctx->n_listeners; i++)
		uv_poll_start(&ctx->listeners[i].poll, UV_READABLE, accept_cb);
}

static struct listener *add_listener(struct sluice *ctx)
{
	ctx->listeners = xrealloc(ctx->listeners, sizeof(*ctx->listeners) * (size_t)(ctx->n_listeners + 1));
	struct listener *l = &ctx->listeners[ctx->n_listeners++];
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->ctx = ctx;
	return l;
}

static int bind_tcp(struct sluice *ctx, const struct sockaddr *sa, socklen_t sl, bool quiet_v6,
		    char *err, size_t errlen)
{
	const struct config *cfg = ctx->cfg;
	char name[96];
	int one = 1;

	listener_format_addr(sa, name, sizeof(name));
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		if (quiet_v6)
			return 0;
		snprintf(err, errlen, "could not create socket for %s: %s", name, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (cfg->so_reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, sl) < 0 || listen(fd, cfg->listen_backlog) < 0) {
		int e = errno;
		close(fd);
		if (quiet_v6 && (e == EADDRNOTAVAIL || e == EAFNOSUPPORT))
			return 0;
		snprintf(err, errlen, "could not listen on %s: %s%s", name, strerror(e),
			 e == EADDRINUSE ? " (is another pooler or server using this port?)" : "");
		return -1;
	}
	struct listener *l = add_listener(ctx);
	l->fd = fd;
	snprintf(l->name, sizeof(l->name), "%s", name);
	return 0;
}

static int listen_tcp(struct sluice *ctx, const char *addr, char *err, size_t errlen)
{
	char port[16];
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	bool wildcard = strcmp(addr, "*") == 0;

	snprintf(port, sizeof(port), "%d", ctx->cfg->listen_port);
	int rc = getaddrinfo(wildcard ? NULL : addr, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen_addr \"%s\": %s", addr, gai_strerror(rc));
		return -1;
	}
	int bound = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		/* With several addresses (e.g. localhost, *), a missing IPv6
		 * stack is not an error as long as something was bound. */
		bool quiet = ai->ai_family == AF_INET6 && (wildcard || ai != res);
		int before = ctx->n_listeners;
		if (bind_tcp(ctx, ai->ai_addr, ai->ai_addrlen, quiet, err, errlen) < 0) {
			freeaddrinfo(res);
			return -1;
		}
		bound += ctx->n_listeners - before;
	}
	freeaddrinfo(res);
	if (!bound) {
		snprintf(err, errlen, "listen_addr \"%s\": no usable address", addr);
		return -1;
	}
	return 0;
}

static int listen_unix(struct sluice *ctx, char *err, size_t errlen)
{
	const struct config *cfg = ctx->cfg;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d",
			 cfg->unix_socket_dir, cfg->listen_port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "unix_socket_dir \"%s\" is too long", cfg->unix_socket_dir);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "could not create unix socket: %s", strerror(errno));
		return -1;
	}
	/* A socket file that accepts connections belongs to a running server;
	 * one that does not is left over from a crash and is removed. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(probe);
		close(fd);
		snprintf(err, errlen, "could not listen on %s: another server is listening there",
			 sun.sun_path);
		return -1;
	}
	if (probe >= 0)
		close(probe);
	unlink(sun.sun_path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(sun.sun_path, (mode_t)cfg->unix_socket_mode) < 0 ||
	    listen(fd, cfg->listen_backlog) < 0) {
		snprintf(err, errlen, "could not listen on %s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	struct listener *l = add_listener(ctx);
	l->fd = fd;
	l->is_unix = true;
	l->path = xstrdup(sun.sun_path);
	snprintf(l->name, sizeof(l->name), "%s", sun.sun_path);
	return 0;
}

static void close_fds(struct sluice *ctx)
{
	for (int i = 0; i < ctx->n_listeners; i++) {
		close(ctx->listeners[i].fd);
		if (ctx->listeners[i].path) {
			unlink(ctx->listeners[i].path);
			free(ctx->listeners[i].path);
		}
	}
	free(ctx->listeners);
	ctx->listeners = NULL;
	ctx->n_listeners = 0;
}

int listener_start_all(struct sluice *ctx, char *err, size_t errlen)
{
	const struct config *cfg = ctx->cfg;

	for (int i = 0; i < cfg->listen_addr.count; i++)
		if (listen_tcp(ctx, cfg->listen_addr.items[i], err, errlen) < 0)
			goto fail;
	if (cfg->unix_socket_dir && cfg->unix_socket_dir[0] && listen_unix(ctx, err, errlen) < 0)
		goto fail;
	if (ctx->n_listeners == 0) {
		snprintf(err, errlen, "nothing to listen on (listen_addr and unix_socket_dir are empty)");
		goto fail;
	}
	for (int i = 0; i < ctx->n_listeners; i++) {
		struct listener *l = &ctx->listeners[i];
		uv_poll_init(ctx->loop, &l->poll, l->fd);
		l->poll.data = l;
		uv_poll_start(&l->poll, UV_READABLE, accept_cb);
		log_info("listening on %s", l->name);
	}
	return 0;
fail:
	close_fds(ctx);
	return -1;
}

static void listener_close_cb(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct sluice *ctx = l->ctx;
	close(l->fd);
	l->fd = -1;
	for (int i = 0; i < ctx->n_listeners; i++)
		if (ctx->listeners[i].fd >= 0)
			return;
	for (int i = 0; i < ctx->n_listeners; i++)
		free(ctx->listeners[i].path);
	free(ctx->listeners);
	ctx->listeners = NULL;
	ctx->n_listeners = 0;
}

void listener_close_all(struct sluice *ctx)
{
	for (int i = 0; i < ctx->n_listeners; i++) {
		struct listener *l = &ctx->listeners[i];
		if (uv_is_closing((uv_handle_t *)&l->poll))
			continue;
		if (l->path)
			unlink(l->path);
		uv_poll_stop(&l->poll);
		uv_close((uv_handle_t *)&l->poll, listener_close_cb);
	}
}
