/*
 * fuzz_http.c - HTTP request framing of the /metrics endpoint (src/http.c):
 * http_parse_input(), which runs a connection's input through the same
 * parser callbacks, URL-to-path reduction and limits (8 KiB of request
 * head, GET and HEAD only, no bodies) as the server's read path.
 *
 * Input: byte 0 picks the size of the reads the input arrives in (0: as
 * large as the buffer), the rest is what the client sends.
 *
 * Besides "no crash, no leak": every request handed on is GET or HEAD with
 * a NUL-terminated path of at most 8 KiB, an error status is one the
 * server sends (400, 405, 413, 431), and the outcome does not depend on how
 * the input was split into reads: the same requests, in the same order,
 * and the same status, whatever the read size.  No state survives a run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEN 64

struct seen {
	int n;                  /* requests handed on (may exceed MAX_SEEN) */
	unsigned long hash[MAX_SEEN];
};

static void on_request(void *arg, const char *method, const char *path, bool keep_alive)
{
	struct seen *s = arg;
	unsigned long h = 5381;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		abort();
	size_t len = strnlen(path, 8193);
	if (len > 8192)
		abort();
	for (const char *p = method; *p; p++)
		h = h * 33 + (unsigned char)*p;
	for (size_t i = 0; i < len; i++)
		h = h * 33 + (unsigned char)path[i];
	h = h * 33 + keep_alive;
	if (s->n < MAX_SEEN)
		s->hash[s->n] = h;
	s->n++;
}

static int run(const char *data, size_t size, size_t chunk, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	int st = http_parse_input(data, size, chunk, on_request, s);
	if (st != 0 && st != 400 && st != 405 && st != 413 && st != 431)
		abort();
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen whole, split;

	if (size < 1)
		return 0;
	size_t chunk = data[0];
	data++;
	size--;

	int a = run((const char *)data, size, 0, &whole);
	int b = run((const char *)data, size, chunk ? chunk : 1, &split);
	if (a != b || whole.n != split.n ||
	    memcmp(whole.hash, split.hash, sizeof(whole.hash)) != 0) {
		fprintf(stderr, "reads of %zu bytes: status %d, %d requests; one read: %d, %d\n",
			chunk ? chunk : 1, b, split.n, a, whole.n);
		abort();
	}
	return 0;
}
