/*
 * pktbuf.c - growable buffer and protocol message builders (see pktbuf.h).
 */
#include "sluice/pktbuf.h"
#include "sluice/proto.h"

#include <stdlib.h>
#include <string.h>

void pktbuf_init(struct pktbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void pktbuf_free(struct pktbuf *b)
{
	free(b->data);
	pktbuf_init(b);
}

static void reserve(struct pktbuf *b, size_t n)
{
	if (b->len + n <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void pktbuf_put_bytes(struct pktbuf *b, const void *p, size_t n)
{
	reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void pktbuf_put_byte(struct pktbuf *b, uint8_t v)
{
	pktbuf_put_bytes(b, &v, 1);
}

void pktbuf_put_int32(struct pktbuf *b, uint32_t v)
{
	uint8_t tmp[4];
	proto_put32(tmp, v);
	pktbuf_put_bytes(b, tmp, 4);
}

void pktbuf_put_int16(struct pktbuf *b, uint16_t v)
{
	uint8_t tmp[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	pktbuf_put_bytes(b, tmp, 2);
}

void pktbuf_put_string(struct pktbuf *b, const char *s)
{
	pktbuf_put_bytes(b, s, strlen(s) + 1);
}

void pktbuf_start(struct pktbuf *b, uint8_t type)
{
	b->msg_start = b->len;
	pktbuf_put_byte(b, type);
	pktbuf_put_int32(b, 0); /* length, patched by pktbuf_finish */
}

void pktbuf_finish(struct pktbuf *b)
{
	proto_put32(b->data + b->msg_start + 1, (uint32_t)(b->len - b->msg_start - 1));
}

void pktbuf_write_AuthenticationOk(struct pktbuf *b)
{
	pktbuf_start(b, PQ_MSG_AUTH);
	pktbuf_put_int32(b, 0);
	pktbuf_finish(b);
}

void pktbuf_write_ParameterStatus(struct pktbuf *b, const char *name, const char *value)
{
	pktbuf_start(b, PQ_MSG_PARAMETER_STATUS);
	pktbuf_put_string(b, name);
	pktbuf_put_string(b, value);
	pktbuf_finish(b);
}

void pktbuf_write_BackendKeyData(struct pktbuf *b, uint32_t pid, uint32_t key)
{
	pktbuf_start(b, PQ_MSG_BACKEND_KEY_DATA);
	pktbuf_put_int32(b, pid);
	pktbuf_put_int32(b, key);
	pktbuf_finish(b);
}

void pktbuf_write_ReadyForQuery(struct pktbuf *b, char status)
{
	pktbuf_start(b, PQ_MSG_READY_FOR_QUERY);
	pktbuf_put_byte(b, (uint8_t)status);
	pktbuf_finish(b);
}

void pktbuf_write_Query(struct pktbuf *b, const char *sql)
{
	pktbuf_start(b, PQ_MSG_QUERY);
	pktbuf_put_string(b, sql);
	pktbuf_finish(b);
}

void pktbuf_write_Report(struct pktbuf *b, uint8_t type, const char *severity,
			 const char *sqlstate, const char *message, const char *detail)
{
	pktbuf_start(b, type);
	pktbuf_put_byte(b, 'S');
	pktbuf_put_string(b, severity);
	pktbuf_put_byte(b, 'V');
	pktbuf_put_string(b, severity);
	pktbuf_put_byte(b, 'C');
	pktbuf_put_string(b, sqlstate);
	pktbuf_put_byte(b, 'M');
	pktbuf_put_string(b, message);
	if (detail) {
		pktbuf_put_byte(b, 'D');
		pktbuf_put_string(b, detail);
	}
	pktbuf_put_byte(b, 0);
	pktbuf_finish(b);
}

void pktbuf_write_ErrorResponse(struct pktbuf *b, const char *severity,
				const char *sqlstate, const char *message)
{
	pktbuf_write_Report(b, PQ_MSG_ERROR_RESPONSE, severity, sqlstate, message, NULL);
}

void pktbuf_write_NegotiateProtocolVersion(struct pktbuf *b, uint32_t newest_minor,
					   const char *const *unknown, int nunknown)
{
	pktbuf_start(b, PQ_MSG_NEGOTIATE_PROTOCOL);
	pktbuf_put_int32(b, newest_minor);
	pktbuf_put_int32(b, (uint32_t)nunknown);
	for (int i = 0; i < nunknown; i++)
		pktbuf_put_string(b, unknown[i]);
	pktbuf_finish(b);
}
