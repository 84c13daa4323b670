/*
 * pqtrace.c - parser of libpq's PQtrace() output (see pqtrace.h).
 *
 * One line of the trace (timestamps suppressed) reads
 *   B<TAB>len<TAB>MessageName<TAB> field field ...
 * for a message from the backend.  Strings are printed as ` "text"` without
 * escaping, so a ParameterStatus value is cut by the message's length field
 * rather than by its closing quote, and an error field ends where the next
 * ` X "` field or the ` \x00` terminator begins.
 */
#include "sluice/pqtrace.h"

#include <string.h>

/* A decimal length at p (bounded by eol); -1 if there is none. */
static long read_len(const char *p, const char *eol, const char **after)
{
	long v = 0;
	const char *q = p;
	while (q < eol && *q >= '0' && *q <= '9' && q - p < 10)
		v = v * 10 + (*q++ - '0');
	*after = q;
	return q == p ? -1 : v;
}

/* " %u" at *p, advancing it; false if there is no number. */
static bool read_u32(const char **p, const char *eol, uint32_t *out)
{
	const char *q = *p;
	uint64_t v = 0;
	while (q < eol && *q == ' ')
		q++;
	bool neg = q < eol && *q == '-';
	if (neg)
		q++;
	const char *digits = q;
	while (q < eol && *q >= '0' && *q <= '9' && q - digits < 11)
		v = v * 10 + (uint64_t)(*q++ - '0');
	if (q == digits)
		return false;
	*out = neg ? (uint32_t)-(int64_t)v : (uint32_t)v;
	*p = q;
	return true;
}

/* ParameterStatus: len counts 4 (length) + name + NUL + value + NUL. */
static void param_status(long len, const char *f, const char *eol, pqtrace_param_fn fn, void *arg)
{
	if (!fn || len < 6 || eol - f < 2 || f[0] != ' ' || f[1] != '"')
		return;
	const char *name = f + 2;
	const char *q = memchr(name, '"', (size_t)(eol - name));
	if (!q)
		return;
	size_t nlen = (size_t)(q - name);
	long vlen = len - 6 - (long)nlen;
	if (vlen < 0 || eol - q < 3 || memcmp(q, "\" \"", 3) != 0)
		return;
	const char *value = q + 3;
	if (eol - value < vlen)
		return;
	fn(arg, name, nlen, value, (size_t)vlen);
}

/* Copy the text of error field `code` ('C', 'M') out of a trace line. */
static void error_field(const char *f, const char *eol, char code, char *out, size_t outlen)
{
	const char pat[4] = {' ', code, ' ', '"'};
	const char *p = memmem(f, (size_t)(eol - f), pat, sizeof(pat));
	if (!p || !outlen)
		return;
	p += sizeof(pat);
	/* The value ends at `" X "` (next field) or `" \x00` (terminator). */
	const char *end = p;
	while (end < eol) {
		if (end[0] == '"' && eol - end >= 2 && end[1] == ' ' &&
		    ((eol - end >= 5 && end[3] == ' ' && end[4] == '"') ||
		     (eol - end >= 6 && memcmp(end + 1, " \\x00", 5) == 0)))
			break;
		end++;
	}
	size_t n = MIN((size_t)(end - p), outlen - 1);
	memcpy(out, p, n);
	out[n] = 0;
}

void pqtrace_parse(const char *buf, size_t len, struct pqtrace_info *out, pqtrace_param_fn param,
		   void *arg)
{
	const char *p = buf, *end = buf + len;

	memset(out, 0, sizeof(*out));
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		const char *after;
		long mlen;
		if (eol - p >= 2 && p[0] == 'B' && p[1] == '\t' &&
		    (mlen = read_len(p + 2, eol, &after)) >= 0 && after < eol && *after == '\t') {
			const char *name = after + 1;
			const char *tab = memchr(name, '\t', (size_t)(eol - name));
			const char *fields = tab ? tab + 1 : eol;
			size_t nlen = (size_t)((tab ? tab : eol) - name);
			if (nlen == 15 && memcmp(name, "ParameterStatus", 15) == 0) {
				param_status(mlen, fields, eol, param, arg);
			} else if (nlen == 14 && memcmp(name, "BackendKeyData", 14) == 0) {
				const char *q = fields;
				uint32_t pid, key;
				if (read_u32(&q, eol, &pid) && read_u32(&q, eol, &key)) {
					out->backend_pid = pid;
					out->cancel_key = key;
					out->have_key = true;
				}
			} else if (nlen == 13 && memcmp(name, "ErrorResponse", 13) == 0) {
				/* An error ends a login, and libpq prints its text
				 * unescaped: a newline in it (a client-chosen database
				 * name) would start fake lines.  Nothing after it counts. */
				error_field(fields, eol, 'C', out->sqlstate, sizeof(out->sqlstate));
				error_field(fields, eol, 'M', out->message, sizeof(out->message));
				return;
			}
		}
		p = eol + 1;
	}
}
