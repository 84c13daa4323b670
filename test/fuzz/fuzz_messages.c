/*
 * fuzz_messages.c - typed protocol messages after the startup phase: the
 * header checks and the body readers of src/proto.c.
 *
 *   - proto_check_header(type, len, true): the check client.c's
 *     work_packet() applies to every client message (type byte, length
 *     bounds, bodiless and small messages);
 *   - proto_body_string() and proto_parse_sasl_initial(): how auth.c reads
 *     a client's PasswordMessage / SASLInitialResponse ('p') bodies;
 *   - proto_check_header(type, len, false), proto_parse_param_status() and
 *     proto_parse_error(): what server.c and prepare.c read from backend
 *     messages (ParameterStatus, ErrorResponse, NoticeResponse).
 *
 * Input: one direction byte (even: client to server, odd: server to
 * client), then a stream of messages framed as on the wire (type, Int32
 * length counting itself, body), read the way conn.c frames them.  Each
 * body is copied into a buffer of exactly its length so AddressSanitizer
 * sees any read past it.  Besides "no crash" the harness checks that every
 * string a reader returns lies inside the body and is NUL-terminated there.
 * No state survives a run.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, const uint8_t *body, uint32_t len)
{
	/* "" for a missing field is a static string, not in the body. */
	if (s[0] == '\0')
		return;
	if ((const uint8_t *)s < body || (const uint8_t *)s >= body + len ||
	    !memchr(s, '\0', (size_t)(body + len - (const uint8_t *)s)))
		abort();
}

static void server_message(uint8_t type, const uint8_t *body, uint32_t len)
{
	const char *name, *value;
	struct proto_error e;

	switch (type) {
	case PQ_MSG_PARAMETER_STATUS:
		if (proto_parse_param_status(body, len, &name, &value)) {
			check_string(name, body, len);
			check_string(value, body, len);
		}
		break;
	case PQ_MSG_ERROR_RESPONSE:
	case PQ_MSG_NOTICE_RESPONSE:
		if (proto_parse_error(body, len, &e)) {
			check_string(e.severity, body, len);
			check_string(e.sqlstate, body, len);
			check_string(e.message, body, len);
		}
		break;
	default:
		break;
	}
}

/* A 'p' body read both ways auth.c may read it. */
static void password_message(const uint8_t *body, uint32_t len)
{
	const char *s = proto_body_string(body, len), *mech;
	const uint8_t *d;
	uint32_t dlen;

	if (s && ((const uint8_t *)s != body || strlen(s) != len - 1))
		abort();
	if (proto_parse_sasl_initial(body, len, &mech, &d, &dlen)) {
		check_string(mech, body, len);
		if (d < body || d + dlen != body + len)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool from_client = (data[0] & 1) == 0;
	data++;
	size--;

	while (size >= 5) {
		uint8_t type = data[0];
		uint32_t len = proto_get32(data + 1);

		/* conn.c's own bounds, then the protocol's. */
		if (len < 4 || len > PROTO_MAX_MESSAGE)
			break;
		const char *why = proto_check_header(type, len, from_client);
		if (why)
			break;
		if (from_client && len > PROTO_MAX_SMALL &&
		    (type == PQ_MSG_CLOSE || type == PQ_MSG_DESCRIBE))
			abort();   /* the small-message cap must hold */
		uint32_t blen = len - 4;
		if (blen > size - 5)
			break;
		uint8_t *body = malloc(blen ? blen : 1);
		memcpy(body, data + 5, blen);
		if (!from_client)
			server_message(type, body, blen);
		else if (type == PQ_MSG_PASSWORD)
			password_message(body, blen);
		free(body);
		data += 5 + blen;
		size -= 5 + blen;
	}
	return 0;
}
