/*
 * proto.h - pure PostgreSQL wire-format code: header sanity, the startup
 * packet, and field readers for the few messages the pooler inspects.
 *
 * No sockets and no allocation: bytes in, verdict out, so everything here is
 * unit-tested directly.  Message type names follow the protocol
 * documentation ("Frontend/Backend Protocol", message formats).
 */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include "sluice/common.h"

/* Special request codes sent in place of a protocol version. */
#define PROTO_VERSION_3_0     196608u   /* 3 << 16 */
#define PROTO_CANCEL_REQUEST  80877102u
#define PROTO_SSL_REQUEST     80877103u
#define PROTO_GSSENC_REQUEST  80877104u

/* PostgreSQL accepts startup packets of up to 10,000 bytes (MAX_STARTUP_PACKET_LENGTH). */
#define PROTO_MAX_STARTUP     10000u
/* ...and anything else up to 1 GB - 1 (PQ_LARGE_MESSAGE_LIMIT). */
#define PROTO_MAX_MESSAGE     (0x40000000u - 1u)
/* Messages that are always small; PostgreSQL caps them at 10,000 bytes too. */
#define PROTO_MAX_SMALL       10000u

#define PROTO_MAX_STARTUP_PARAMS 64

/* Frontend (client -> server) message types. */
#define PQ_MSG_BIND            'B'
#define PQ_MSG_CLOSE           'C'
#define PQ_MSG_COPY_DATA       'd'
#define PQ_MSG_COPY_DONE       'c'
#define PQ_MSG_COPY_FAIL       'f'
#define PQ_MSG_DESCRIBE        'D'
#define PQ_MSG_EXECUTE         'E'
#define PQ_MSG_FLUSH           'H'
#define PQ_MSG_FUNCTION_CALL   'F'
#define PQ_MSG_PARSE           'P'
#define PQ_MSG_PASSWORD        'p'
#define PQ_MSG_QUERY           'Q'
#define PQ_MSG_SYNC            'S'
#define PQ_MSG_TERMINATE       'X'

/* Backend (server -> client) message types. */
#define PQ_MSG_AUTH                'R'
#define PQ_MSG_BACKEND_KEY_DATA    'K'
#define PQ_MSG_COMMAND_COMPLETE    'C'
#define PQ_MSG_COPY_IN_RESPONSE    'G'
#define PQ_MSG_COPY_OUT_RESPONSE   'H'
#define PQ_MSG_COPY_BOTH_RESPONSE  'W'
#define PQ_MSG_DATA_ROW            'D'
#define PQ_MSG_EMPTY_QUERY         'I'
#define PQ_MSG_ERROR_RESPONSE      'E'
#define PQ_MSG_NEGOTIATE_PROTOCOL  'v'
#define PQ_MSG_NOTICE_RESPONSE     'N'
#define PQ_MSG_NOTIFICATION        'A'
#define PQ_MSG_PARAMETER_STATUS    'S'
#define PQ_MSG_READY_FOR_QUERY     'Z'
#define PQ_MSG_ROW_DESCRIPTION     'T'

static inline uint32_t proto_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t proto_get16(const uint8_t *p)
{
	return (uint16_t)(((uint32_t)p[0] << 8) | p[1]);
}

static inline void proto_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Check a regular message header: type byte and the length field (which
 * counts itself but not the type byte).  Returns NULL when plausible, or a
 * short description of what is wrong ("don't believe nonsense").
 */
const char *proto_check_header(uint8_t type, uint32_t len, bool from_client);

enum startup_kind {
	STARTUP_BAD = 0,
	STARTUP_SSL,
	STARTUP_GSSENC,
	STARTUP_CANCEL,
	STARTUP_MESSAGE,
};

struct startup_param {
	const char *name;       /* points into the packet */
	const char *value;
};

/* A parsed startup packet.  Strings point into the packet bytes. */
struct startup {
	enum startup_kind kind;
	uint32_t version;       /* STARTUP_MESSAGE: the requested protocol */
	uint32_t cancel_pid;    /* STARTUP_CANCEL */
	uint32_t cancel_key;
	int nparams;
	struct startup_param params[PROTO_MAX_STARTUP_PARAMS];
	const char *error;      /* STARTUP_BAD: why */
};

/*
 * Length of the startup packet that starts at buf, once 4 bytes are there.
 * Returns 0 while fewer than 4 bytes are available.
 */
static inline uint32_t proto_startup_len(const uint8_t *buf, size_t avail)
{
	return avail < 4 ? 0 : proto_get32(buf);
}

/* Check a startup length: NULL if acceptable, else the reason. */
const char *proto_check_startup_len(uint32_t len);

/*
 * Parse a complete startup packet of len bytes (len includes the 4-byte
 * length field).  Never reads outside [pkt, pkt + len).
 */
void proto_parse_startup(const uint8_t *pkt, uint32_t len, struct startup *out);

/* Value of a startup parameter, or NULL. */
const char *proto_startup_get(const struct startup *s, const char *name);

/*
 * Parse a ParameterStatus body (two NUL-terminated strings).  Returns false
 * when malformed.
 */
bool proto_parse_param_status(const uint8_t *body, uint32_t len,
			      const char **name, const char **value);

/* A body that is exactly one NUL-terminated string (PasswordMessage), or NULL. */
const char *proto_body_string(const uint8_t *body, uint32_t len);

/*
 * A SASLInitialResponse body: the mechanism name (NUL-terminated), then a
 * 32-bit length and that many bytes of data (-1: no data).  Returns false
 * when malformed; never reads outside [body, body + len).
 */
bool proto_parse_sasl_initial(const uint8_t *body, uint32_t len, const char **mech,
			      const uint8_t **data, uint32_t *dlen);

/* Fields of an ErrorResponse/NoticeResponse body that the pooler uses. */
struct proto_error {
	const char *severity;   /* 'S' (localized) or 'V' */
	const char *sqlstate;   /* 'C' */
	const char *message;    /* 'M' */
};

/* Parse an ErrorResponse/NoticeResponse body; missing fields are "". */
bool proto_parse_error(const uint8_t *body, uint32_t len, struct proto_error *out);

#endif /* SLUICE_PROTO_H */
