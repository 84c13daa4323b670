/*
 * fuzz_startup.c - the startup phase of a client connection: the length
 * check and the parser of SSLRequest, GSSENCRequest, CancelRequest and
 * StartupMessage packets (proto_startup_len(), proto_check_startup_len(),
 * proto_parse_startup(), proto_startup_get() in src/proto.c), in the order
 * client.c's login_packet() applies them.
 *
 * Input: what a client sends before its first typed message, as a sequence
 * of startup packets (an SSLRequest followed by a StartupMessage, say).  Each
 * packet the length check accepts is copied into a buffer of exactly its
 * length, so AddressSanitizer sees any read past it.  Besides "no crash",
 * the harness checks what the parser promises: every parameter name and
 * value lies inside the packet and is NUL-terminated there, and lookups find
 * the first parameter of a name.  No state survives a run.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when s is a NUL-terminated string inside [lo, hi). */
static bool inside(const char *s, const uint8_t *lo, const uint8_t *hi)
{
	if ((const uint8_t *)s < lo || (const uint8_t *)s >= hi)
		return false;
	return memchr(s, '\0', (size_t)(hi - (const uint8_t *)s)) != NULL;
}

static void check_packet(const uint8_t *pkt, uint32_t len)
{
	struct startup st;

	proto_parse_startup(pkt, len, &st);
	switch (st.kind) {
	case STARTUP_BAD:
		if (!st.error)
			abort();
		break;
	case STARTUP_SSL:
	case STARTUP_GSSENC:
		if (len != 8)
			abort();
		break;
	case STARTUP_CANCEL:
		if (len != 16 || st.cancel_pid != proto_get32(pkt + 8))
			abort();
		break;
	case STARTUP_MESSAGE:
		if ((st.version >> 16) != 3 || st.nparams < 0 ||
		    st.nparams > PROTO_MAX_STARTUP_PARAMS)
			abort();
		for (int i = 0; i < st.nparams; i++) {
			const char *name = st.params[i].name, *value = st.params[i].value;
			if (!inside(name, pkt + 8, pkt + len) || !inside(value, pkt + 8, pkt + len))
				abort();
			/* A lookup returns the first parameter with that name. */
			const char *got = proto_startup_get(&st, name);
			int first = 0;
			while (strcmp(st.params[first].name, name) != 0)
				first++;
			if (got != st.params[first].value)
				abort();
		}
		(void)proto_startup_get(&st, "user");
		(void)proto_startup_get(&st, "database");
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The whole input as one packet too: a length field that lies. */
	if (size >= 8 && size <= PROTO_MAX_STARTUP) {
		uint8_t *copy = malloc(size);
		memcpy(copy, data, size);
		check_packet(copy, (uint32_t)size);
		free(copy);
	}

	/* Packets one after the other, as the I/O engine presents them. */
	while (size >= 4) {
		uint32_t len = proto_startup_len(data, size);
		if (len < 4 || proto_check_startup_len(len) != NULL || len > size)
			break;
		uint8_t *pkt = malloc(len);
		memcpy(pkt, data, len);
		check_packet(pkt, len);
		free(pkt);
		data += len;
		size -= len;
	}
	return 0;
}
