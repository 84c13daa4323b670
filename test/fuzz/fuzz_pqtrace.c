/*
 * fuzz_pqtrace.c - the parser of libpq's PQtrace() output that server.c
 * reads after every backend login (src/pqtrace.c: pqtrace_parse()): the
 * ParameterStatus lines, the BackendKeyData and a failed login's
 * ErrorResponse.  The trace echoes what the server sent, and an error
 * message can quote what a client sent (a database name), so its bytes are
 * not trusted.
 *
 * Input: the captured trace, copied into a buffer of exactly its length
 * (not NUL-terminated, as server.c's trace buffer is), so AddressSanitizer
 * sees any read past it.
 *
 * Besides "no crash": every name and value handed to the callback lies
 * inside the buffer and on one line, a name has no quote; sqlstate and
 * message are NUL-terminated and sqlstate is at most 5 bytes; and the
 * parser is line-local: parsing the whole trace gives the same parameters
 * (in order), key and error as parsing it line by line up to the first
 * ErrorResponse line (where parsing ends: libpq prints error text
 * unescaped, so what follows may be forged) and keeping the last key.  No
 * state survives a run.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/pqtrace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	const char *lo, *hi;     /* the buffer */
	size_t n;
	unsigned long hash;      /* of every (name, value), in order */
};

static void on_param(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct seen *s = arg;

	if (name < s->lo || name + nlen > s->hi || value < s->lo || value + vlen > s->hi ||
	    memchr(name, '"', nlen) || memchr(name, '\n', nlen) || memchr(value, '\n', vlen))
		abort();
	for (size_t i = 0; i < nlen; i++)
		s->hash = s->hash * 33 + (unsigned char)name[i];
	s->hash = s->hash * 33 + 256;
	for (size_t i = 0; i < vlen; i++)
		s->hash = s->hash * 33 + (unsigned char)value[i];
	s->hash = s->hash * 33 + 257;
	s->n++;
}

/* "B<TAB>digits<TAB>ErrorResponse" then a tab or the end of the line: the
 * lines pqtrace.h reads an error from (at most 10 digits). */
static bool is_error_line(const char *l, size_t n)
{
	size_t i = 2, d = 0;

	if (n < 2 || l[0] != 'B' || l[1] != '\t')
		return false;
	while (i < n && l[i] >= '0' && l[i] <= '9' && d < 10)
		i++, d++;
	if (d == 0 || i >= n || l[i] != '\t' || n - i - 1 < 13 ||
	    memcmp(l + i + 1, "ErrorResponse", 13) != 0)
		return false;
	i += 14;
	return i == n || l[i] == '\t' || l[i] == '\n';
}

static void check_info(const struct pqtrace_info *info)
{
	if (!memchr(info->sqlstate, '\0', sizeof(info->sqlstate)) ||
	    !memchr(info->message, '\0', sizeof(info->message)))
		abort();
	if (!info->have_key && (info->backend_pid || info->cancel_key))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	struct pqtrace_info whole, line, merged;
	struct seen a = { 0 }, b = { 0 };

	memcpy(buf, data, size);
	a.lo = b.lo = buf;
	a.hi = b.hi = buf + size;

	pqtrace_parse(buf, size, &whole, on_param, &a);
	check_info(&whole);

	/* Line by line: each line in a buffer of its own length. */
	memset(&merged, 0, sizeof(merged));
	for (size_t off = 0; off < size;) {
		const char *nl = memchr(buf + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (buf + off)) + 1 : size - off;
		char *one = malloc(n);
		struct seen c = { one, one + n, 0, b.hash };

		memcpy(one, buf + off, n);
		pqtrace_parse(one, n, &line, on_param, &c);
		check_info(&line);
		b.n += c.n;
		b.hash = c.hash;
		if (line.have_key) {
			merged.have_key = true;
			merged.backend_pid = line.backend_pid;
			merged.cancel_key = line.cancel_key;
		}
		/* The first ErrorResponse line is the last line read. */
		bool error = is_error_line(one, n);
		if (error) {
			memcpy(merged.sqlstate, line.sqlstate, sizeof(line.sqlstate));
			memcpy(merged.message, line.message, sizeof(line.message));
		}
		free(one);
		off += n;
		if (error)
			break;
	}
	/* pqtrace_parse() with a NULL callback must not mind. */
	pqtrace_parse(buf, size, &line, NULL, NULL);

	if (a.n != b.n || a.hash != b.hash || whole.have_key != merged.have_key ||
	    whole.backend_pid != merged.backend_pid || whole.cancel_key != merged.cancel_key ||
	    strcmp(whole.sqlstate, merged.sqlstate) != 0 || strcmp(whole.message, merged.message) != 0)
		abort();
	free(buf);
	return 0;
}
