/*
 * proto.c - pure wire-format helpers (see proto.h).  No I/O, no allocation.
 */
#include "sluice/proto.h"

#include <string.h>
#include <strings.h>

const char *proto_check_header(uint8_t type, uint32_t len, bool from_client)
{
	if (len < 4)
		return "message length is less than 4";
	if (len > PROTO_MAX_MESSAGE)
		return "message length exceeds 1 GB";
	if (!from_client)
		return NULL;
	switch (type) {
	/* Messages with no body. */
	case PQ_MSG_SYNC:
	case PQ_MSG_FLUSH:
	case PQ_MSG_TERMINATE:
	case PQ_MSG_COPY_DONE:
		return len == 4 ? NULL : "unexpected length for a message without body";
	/* Small messages: PostgreSQL caps them too. */
	case PQ_MSG_CLOSE:
	case PQ_MSG_DESCRIBE:
	case PQ_MSG_EXECUTE:
	case PQ_MSG_COPY_FAIL:
		return len <= PROTO_MAX_SMALL ? NULL : "message too long";
	/* Messages whose size depends on user data. */
	case PQ_MSG_BIND:
	case PQ_MSG_COPY_DATA:
	case PQ_MSG_FUNCTION_CALL:
	case PQ_MSG_PARSE:
	case PQ_MSG_PASSWORD:
	case PQ_MSG_QUERY:
		return NULL;
	default:
		return "invalid frontend message type";
	}
}

const char *proto_check_startup_len(uint32_t len)
{
	if (len < 8)
		return "invalid length of startup packet";
	if (len > PROTO_MAX_STARTUP)
		return "startup packet too long";
	return NULL;
}

/* Mark the packet bad and leave the parser. */
#define BAD(why)                                                               \
	do {                                                                   \
		out->kind = STARTUP_BAD;                                       \
		out->error = (why);                                            \
		return;                                                        \
	} while (0)

void proto_parse_startup(const uint8_t *pkt, uint32_t len, struct startup *out)
{
	memset(out, 0, sizeof(*out));
	const char *why = proto_check_startup_len(len);
	if (why || proto_get32(pkt) != len) {
		BAD(why ? why : "startup packet length mismatch");
	}
	uint32_t code = proto_get32(pkt + 4);
	switch (code) {
	case PROTO_SSL_REQUEST:
		if (len != 8)
			BAD("invalid length of SSL request");
		out->kind = STARTUP_SSL;
		return;
	case PROTO_GSSENC_REQUEST:
		if (len != 8)
			BAD("invalid length of GSSENC request");
		out->kind = STARTUP_GSSENC;
		return;
	case PROTO_CANCEL_REQUEST:
		if (len != 16)
			BAD("invalid length of cancel request");
		out->kind = STARTUP_CANCEL;
		out->cancel_pid = proto_get32(pkt + 8);
		out->cancel_key = proto_get32(pkt + 12);
		return;
	default:
		break;
	}
	if ((code >> 16) != 3)
		BAD("unsupported frontend protocol");
	out->version = code;

	/* name\0value\0 ... \0 ; the packet must end with the final NUL. */
	const char *p = (const char *)pkt + 8;
	const char *end = (const char *)pkt + len;
	if (end[-1] != '\0')
		BAD("startup packet is not terminated");
	for (;;) {
		if (p >= end)
			BAD("startup packet is not terminated");
		if (*p == '\0') {
			if (p + 1 != end)
				BAD("trailing data after startup packet");
			break;
		}
		const char *name = p;
		p += strnlen(p, (size_t)(end - p)) + 1;
		if (p >= end)
			BAD("startup parameter has no value");
		const char *value = p;
		p += strnlen(p, (size_t)(end - p)) + 1;
		if (p > end)
			BAD("startup parameter value is not terminated");
		if (out->nparams == PROTO_MAX_STARTUP_PARAMS)
			BAD("too many startup parameters");
		out->params[out->nparams].name = name;
		out->params[out->nparams].value = value;
		out->nparams++;
	}
	out->kind = STARTUP_MESSAGE;
}

const char *proto_startup_get(const struct startup *s, const char *name)
{
	for (int i = 0; i < s->nparams; i++)
		if (strcmp(s->params[i].name, name) == 0)
			return s->params[i].value;
	return NULL;
}

/* Read a NUL-terminated string at *pos; false if it runs past len. */
static bool get_cstring(const uint8_t *body, uint32_t len, uint32_t *pos, const char **s)
{
	if (*pos >= len)
		return false;
	const char *start = (const char *)body + *pos;
	size_t n = strnlen(start, len - *pos);
	if (*pos + n >= len)
		return false;
	*s = start;
	*pos += (uint32_t)n + 1;
	return true;
}

bool proto_parse_param_status(const uint8_t *body, uint32_t len,
			      const char **name, const char **value)
{
	uint32_t pos = 0;
	return get_cstring(body, len, &pos, name) && get_cstring(body, len, &pos, value) &&
	       pos == len;
}

const char *proto_body_string(const uint8_t *body, uint32_t len)
{
	if (len == 0 || body[len - 1] != 0 || memchr(body, 0, len) != body + len - 1)
		return NULL;
	return (const char *)body;
}

bool proto_parse_sasl_initial(const uint8_t *body, uint32_t len, const char **mech,
			      const uint8_t **data, uint32_t *dlen)
{
	uint32_t pos = 0;
	if (!get_cstring(body, len, &pos, mech) || len - pos < 4)
		return false;
	int32_t n = (int32_t)proto_get32(body + pos);
	pos += 4;
	if (n == -1 && pos == len) {
		*data = body + pos;
		*dlen = 0;
		return true;
	}
	if (n < 0 || (uint32_t)n != len - pos)
		return false;
	*data = body + pos;
	*dlen = (uint32_t)n;
	return true;
}

bool proto_parse_error(const uint8_t *body, uint32_t len, struct proto_error *out)
{
	uint32_t pos = 0;

	out->severity = out->sqlstate = out->message = "";
	while (pos < len) {
		uint8_t field = body[pos++];
		const char *s;
		if (field == 0)
			return pos == len;
		if (!get_cstring(body, len, &pos, &s))
			return false;
		switch (field) {
		case 'V':
			out->severity = s;
			break;
		case 'S':
			if (!out->severity[0])
				out->severity = s;
			break;
		case 'C':
			out->sqlstate = s;
			break;
		case 'M':
			out->message = s;
			break;
		default:
			break;
		}
	}
	return false;
}
