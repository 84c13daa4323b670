/*
 * min_relay.c - a minimal relay, the reference for what relaying PostgreSQL
 * traffic costs on the machine (scripts/bench.sh, target "relay").
 *
 * Usage: min_relay LISTEN_PORT BACKEND_PORT
 *
 * A 1:1 TCP forwarder on 127.0.0.1: every accepted client gets its own
 * backend connection, and bytes go through unchanged with one recv() and one
 * send() per readable event, from one epoll loop.  It does nothing a pooler
 * must do (no parsing, no pooling, no state), so its CPU time per
 * transaction is what the system calls, the loopback TCP delivery and the
 * wake-ups of the processes on either side cost on this machine: the part
 * of a pooler's cost that no pooler code can remove.  A pooler's distance
 * from it is roughly its own overhead (the scheduling around it differs: a
 * pool keeps fewer backends busy).
 *
 * Needs one backend per client (like direct connections).  A send that
 * would block waits with poll() on that socket: slow, but never taken by
 * pgbench's small request/response traffic.  Stops on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536

static int peer_of[MAX_FDS];

static int loopback_addr(struct sockaddr_in *a, int port)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((unsigned short)port);
	return inet_pton(AF_INET, "127.0.0.1", &a->sin_addr) == 1 ? 0 : -1;
}

static void watch(int ep, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		perror("min_relay: epoll_ctl");
}

static void drop_pair(int fd)
{
	int p = peer_of[fd];
	close(fd);
	if (p >= 0)
		close(p);
	peer_of[fd] = -1;
	if (p >= 0)
		peer_of[p] = -1;
}

static void accept_one(int ep, int ls, int backend_port)
{
	int one = 1;
	int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	struct sockaddr_in b;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || c >= MAX_FDS || s >= MAX_FDS || loopback_addr(&b, backend_port) < 0 ||
	    connect(s, (struct sockaddr *)&b, sizeof(b)) < 0) {
		perror("min_relay: backend connect");
		close(c);
		if (s >= 0)
			close(s);
		return;
	}
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	peer_of[c] = s;
	peer_of[s] = c;
	watch(ep, c);
	watch(ep, s);
}

/* Write all n bytes to fd; false when the socket failed. */
static bool send_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w > 0) {
			buf += w;
			n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			poll(&p, 1, -1);
		} else {
			return false;
		}
	}
	return true;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: min_relay LISTEN_PORT BACKEND_PORT\n");
		return 2;
	}
	int listen_port = atoi(argv[1]), backend_port = atoi(argv[2]);
	int one = 1;
	struct sockaddr_in a;
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || loopback_addr(&a, listen_port) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4096) < 0) {
		perror("min_relay: listen");
		return 1;
	}
	for (int i = 0; i < MAX_FDS; i++)
		peer_of[i] = -1;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	watch(ep, ls);

	static char buf[65536];
	struct epoll_event evs[512];
	for (;;) {
		int n = epoll_wait(ep, evs, 512, -1);
		if (n < 0 && errno != EINTR) {
			perror("min_relay: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				accept_one(ep, ls, backend_port);
				continue;
			}
			if (peer_of[fd] < 0)
				continue;   /* closed earlier in this batch */
			ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0 || !send_all(peer_of[fd], buf, (size_t)r))
				drop_pair(fd);
		}
	}
}
