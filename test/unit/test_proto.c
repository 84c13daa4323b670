/*
 * test_proto.c - the pure wire-format code: header sanity, startup packets,
 * ParameterStatus and ErrorResponse readers, and the pktbuf message builders.
 *
 * Most cases are rows of static tables run with tcase_add_loop_test(), so a
 * failure names the row.  Packet bodies are written as C string literals
 * with their embedded NULs; BODY() passes such a literal with its exact
 * length (without the literal's own final NUL).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/common.h"
#include "sluice/pktbuf.h"
#include "sluice/proto.h"
#include "unit.h"

#define BODY(lit) (lit), (sizeof(lit) - 1)

/* ---------------------------------------------------------------------- */
/* Helpers */

/*
 * Build a startup packet: length field, code, then body.  delta is added to
 * the length field only (to fake a mismatch).  Returns the packet length.
 */
static uint32_t make_startup(uint8_t *buf, size_t cap, uint32_t code, const char *body,
			     size_t body_len, int32_t delta)
{
	uint32_t len = (uint32_t)(8 + body_len);

	ck_assert_uint_le(len, cap);
	proto_put32(buf, (uint32_t)((int64_t)len + delta));
	proto_put32(buf + 4, code);
	if (body_len)
		memcpy(buf + 8, body, body_len);
	return len;
}

/* Append "name\0value\0" to buf at *pos. */
static void put_param(uint8_t *buf, size_t cap, size_t *pos, const char *name,
		      const char *value)
{
	size_t n = strlen(name) + 1, v = strlen(value) + 1;

	ck_assert_uint_le(*pos + n + v, cap);
	memcpy(buf + *pos, name, n);
	memcpy(buf + *pos + n, value, v);
	*pos += n + v;
}

/* Check one message at b->data + *off: type, length field, and return its
 * body (advancing *off past the message). */
static const uint8_t *expect_msg(const struct pktbuf *b, size_t *off, uint8_t type,
				 uint32_t body_len)
{
	ck_assert_uint_ge(b->len, *off + 5);
	ck_assert_int_eq(b->data[*off], type);
	ck_assert_uint_eq(proto_get32(b->data + *off + 1), body_len + 4);
	ck_assert_uint_ge(b->len, *off + 5 + body_len);
	const uint8_t *body = b->data + *off + 5;
	*off += 5 + body_len;
	return body;
}

/* ---------------------------------------------------------------------- */
/* proto_check_header */

struct header_case {
	uint8_t type;
	uint32_t len;          /* the length field (counts itself) */
	bool from_client;
	const char *error;     /* NULL = accepted, else a substring of the reason */
};

#define TOO_SHORT "less than 4"
#define TOO_BIG   "1 GB"
#define NO_BODY   "without body"
#define TOO_LONG  "too long"
#define BAD_TYPE  "invalid frontend message type"

static const struct header_case header_cases[] = {
	/* Messages without body: Sync, Flush, Terminate, CopyDone. */
	{'S', 4, true, NULL},
	{'S', 5, true, NO_BODY},
	{'S', 10001, true, NO_BODY},
	{'S', 3, true, TOO_SHORT},
	{'H', 4, true, NULL},
	{'H', 8, true, NO_BODY},
	{'X', 4, true, NULL},
	{'X', 5, true, NO_BODY},
	{'X', 0, true, TOO_SHORT},
	{'c', 4, true, NULL},
	{'c', 5, true, NO_BODY},
	{'c', 0x40000000u, true, TOO_BIG},
	/* Small messages: Close, Describe, Execute, CopyFail. */
	{'C', 4, true, NULL},
	{'C', 10, true, NULL},
	{'C', 10000, true, NULL},
	{'C', 10001, true, TOO_LONG},
	{'D', 6, true, NULL},
	{'D', 10000, true, NULL},
	{'D', 10001, true, TOO_LONG},
	{'D', 2, true, TOO_SHORT},
	{'E', 9, true, NULL},
	{'E', 10000, true, NULL},
	{'E', 10001, true, TOO_LONG},
	{'E', 0x3FFFFFFFu, true, TOO_LONG},
	{'f', 5, true, NULL},
	{'f', 10000, true, NULL},
	{'f', 10001, true, TOO_LONG},
	/* Messages sized by user data: Bind, CopyData, FunctionCall, Parse,
	 * PasswordMessage, Query. */
	{'B', 4, true, NULL},
	{'B', 10001, true, NULL},
	{'B', 0x3FFFFFFFu, true, NULL},
	{'B', 0x40000000u, true, TOO_BIG},
	{'d', 4, true, NULL},
	{'d', 1u << 20, true, NULL},
	{'d', 0x3FFFFFFFu, true, NULL},
	{'d', 0xFFFFFFFFu, true, TOO_BIG},
	{'F', 20, true, NULL},
	{'F', 0x3FFFFFFFu, true, NULL},
	{'F', 1, true, TOO_SHORT},
	{'P', 12, true, NULL},
	{'P', 10001, true, NULL},
	{'P', 0x40000000u, true, TOO_BIG},
	{'p', 9, true, NULL},
	{'p', 10001, true, NULL},
	{'p', 3, true, TOO_SHORT},
	{'Q', 5, true, NULL},
	{'Q', 0x3FFFFFFFu, true, NULL},
	{'Q', 0x80000000u, true, TOO_BIG},
	{'Q', 0, true, TOO_SHORT},
	/* Not frontend message types. */
	{'Z', 5, true, BAD_TYPE},
	{0, 4, true, BAD_TYPE},
	{0, 8, true, BAD_TYPE},
	{'x', 4, true, BAD_TYPE},
	{'T', 6, true, BAD_TYPE},
	{'R', 8, true, BAD_TYPE},
	{'K', 12, true, BAD_TYPE},
	{'v', 12, true, BAD_TYPE},
	{'q', 5, true, BAD_TYPE},
	{0xFF, 4, true, BAD_TYPE},
	/* Length checks come before the type check. */
	{'Z', 3, true, TOO_SHORT},
	{'x', 0x40000000u, true, TOO_BIG},
	/* Backend direction: any type byte, only the length is checked. */
	{'Z', 5, false, NULL},
	{'R', 8, false, NULL},
	{'S', 30, false, NULL},
	{'C', 20000, false, NULL},
	{'D', 0x3FFFFFFFu, false, NULL},
	{'x', 4, false, NULL},
	{0, 4, false, NULL},
	{0xFF, 100, false, NULL},
	{'D', 3, false, TOO_SHORT},
	{'Z', 0, false, TOO_SHORT},
	{'D', 0x40000000u, false, TOO_BIG},
	{'T', 0xFFFFFFFFu, false, TOO_BIG},
};

START_TEST(test_check_header)
{
	const struct header_case *tc = &header_cases[_i];
	const char *why = proto_check_header(tc->type, tc->len, tc->from_client);

	if (!tc->error) {
		ck_assert_msg(why == NULL, "row %d: type 0x%02x len %u (%s): refused: %s", _i,
			      tc->type, tc->len, tc->from_client ? "frontend" : "backend", why);
	} else {
		ck_assert_msg(why != NULL, "row %d: type 0x%02x len %u (%s): accepted", _i,
			      tc->type, tc->len, tc->from_client ? "frontend" : "backend");
		ck_assert_msg(strstr(why, tc->error) != NULL,
			      "row %d: type 0x%02x len %u: \"%s\" does not say \"%s\"", _i,
			      tc->type, tc->len, why, tc->error);
	}
}
END_TEST

/* Every valid frontend type accepts its smallest legal message. */
START_TEST(test_check_header_all_frontend_types)
{
	static const char types[] = "BCdcfDEHFPpQSX";

	for (const char *t = types; *t; t++) {
		ck_assert_msg(proto_check_header((uint8_t)*t, 4, true) == NULL, "%c", *t);
		ck_assert_msg(proto_check_header((uint8_t)*t, 3, true) != NULL, "%c", *t);
	}
	/* Every other byte is refused from a client, accepted from a server. */
	for (int t = 0; t < 256; t++) {
		bool frontend = t != 0 && strchr(types, t) != NULL;
		const char *why = proto_check_header((uint8_t)t, 4, true);

		ck_assert_msg((why == NULL) == frontend, "type 0x%02x", t);
		ck_assert_msg(proto_check_header((uint8_t)t, 4, false) == NULL, "type 0x%02x", t);
	}
}
END_TEST

/* ---------------------------------------------------------------------- */
/* proto_parse_startup: packet layouts */

struct startup_case {
	const char *name;
	uint32_t code;
	const char *body;
	size_t body_len;
	int32_t delta;               /* added to the length field */
	enum startup_kind kind;
	const char *error;           /* STARTUP_BAD: substring of the reason */
	uint32_t version;            /* STARTUP_MESSAGE */
	uint32_t pid, key;           /* STARTUP_CANCEL */
	int nparams;
	const char *kv[6];           /* first name/value pairs to check */
};

#define V30 PROTO_VERSION_3_0
#define V31 (PROTO_VERSION_3_0 | 1u)

static const struct startup_case startup_cases[] = {
	{"v3.0 user+database", V30, BODY("user\0alice\0database\0db1\0\0"), 0,
	 STARTUP_MESSAGE, NULL, V30, 0, 0, 2, {"user", "alice", "database", "db1"}},
	{"v3.0 three params", V30,
	 BODY("user\0bob\0application_name\0psql\0client_encoding\0UTF8\0\0"), 0,
	 STARTUP_MESSAGE, NULL, V30, 0, 0, 3,
	 {"user", "bob", "application_name", "psql", "client_encoding", "UTF8"}},
	{"v3.0 empty value", V30, BODY("user\0carol\0options\0\0\0"), 0, STARTUP_MESSAGE, NULL,
	 V30, 0, 0, 2, {"user", "carol", "options", ""}},
	{"v3.0 empty param list", V30, BODY("\0"), 0, STARTUP_MESSAGE, NULL, V30, 0, 0, 0, {0}},
	{"v3.1 accepted", V31, BODY("user\0dave\0\0"), 0, STARTUP_MESSAGE, NULL, V31, 0, 0, 1,
	 {"user", "dave"}},
	{"v3.2 accepted", PROTO_VERSION_3_0 | 2u, BODY("user\0eve\0\0"), 0, STARTUP_MESSAGE,
	 NULL, PROTO_VERSION_3_0 | 2u, 0, 0, 1, {"user", "eve"}},
	{"SSLRequest", PROTO_SSL_REQUEST, BODY(""), 0, STARTUP_SSL, NULL, 0, 0, 0, 0, {0}},
	{"GSSENCRequest", PROTO_GSSENC_REQUEST, BODY(""), 0, STARTUP_GSSENC, NULL, 0, 0, 0, 0,
	 {0}},
	{"CancelRequest", PROTO_CANCEL_REQUEST, BODY("\x00\x00\x30\x39\xde\xad\xbe\xef"), 0,
	 STARTUP_CANCEL, NULL, 0, 12345, 0xdeadbeefu, 0, {0}},
	{"CancelRequest high pid", PROTO_CANCEL_REQUEST,
	 BODY("\x7f\xff\xff\xff\x00\x00\x00\x01"), 0, STARTUP_CANCEL, NULL, 0, 0x7fffffffu, 1,
	 0, {0}},
	{"SSLRequest with body", PROTO_SSL_REQUEST, BODY("\0\0\0\0"), 0, STARTUP_BAD,
	 "SSL request", 0, 0, 0, 0, {0}},
	{"GSSENCRequest with body", PROTO_GSSENC_REQUEST, BODY("x"), 0, STARTUP_BAD,
	 "GSSENC request", 0, 0, 0, 0, {0}},
	{"CancelRequest short", PROTO_CANCEL_REQUEST, BODY("\0\0\0\1\0\0\0"), 0, STARTUP_BAD,
	 "cancel request", 0, 0, 0, 0, {0}},
	{"CancelRequest long", PROTO_CANCEL_REQUEST, BODY("\0\0\0\1\0\0\0\2\0"), 0,
	 STARTUP_BAD, "cancel request", 0, 0, 0, 0, {0}},
	{"CancelRequest no body", PROTO_CANCEL_REQUEST, BODY(""), 0, STARTUP_BAD,
	 "cancel request", 0, 0, 0, 0, {0}},
	{"protocol 2.0", 2u << 16, BODY("user\0alice\0\0"), 0, STARTUP_BAD,
	 "unsupported frontend protocol", 0, 0, 0, 0, {0}},
	{"protocol 4.0", 4u << 16, BODY("user\0alice\0\0"), 0, STARTUP_BAD,
	 "unsupported frontend protocol", 0, 0, 0, 0, {0}},
	{"protocol 0.0", 0, BODY("user\0alice\0\0"), 0, STARTUP_BAD,
	 "unsupported frontend protocol", 0, 0, 0, 0, {0}},
	{"unknown request code", 80877105u, BODY(""), 0, STARTUP_BAD,
	 "unsupported frontend protocol", 0, 0, 0, 0, {0}},
	{"length field too big", V30, BODY("user\0alice\0\0"), 1, STARTUP_BAD, "mismatch", 0,
	 0, 0, 0, {0}},
	{"length field too small", V30, BODY("user\0alice\0\0"), -1, STARTUP_BAD, "mismatch",
	 0, 0, 0, 0, {0}},
	{"SSLRequest length mismatch", PROTO_SSL_REQUEST, BODY(""), 8, STARTUP_BAD,
	 "mismatch", 0, 0, 0, 0, {0}},
	{"no parameters, no terminator", V30, BODY(""), 0, STARTUP_BAD, "not terminated", 0, 0,
	 0, 0, {0}},
	{"unterminated value", V30, BODY("user\0alice"), 0, STARTUP_BAD, "not terminated", 0,
	 0, 0, 0, {0}},
	{"unterminated name", V30, BODY("user"), 0, STARTUP_BAD, "not terminated", 0, 0, 0, 0,
	 {0}},
	{"missing final NUL", V30, BODY("user\0alice\0"), 0, STARTUP_BAD, "not terminated", 0,
	 0, 0, 0, {0}},
	{"missing final NUL, two params", V30, BODY("user\0alice\0database\0db\0"), 0,
	 STARTUP_BAD, "not terminated", 0, 0, 0, 0, {0}},
	{"name without value", V30, BODY("user\0alice\0database\0"), 0, STARTUP_BAD,
	 "no value", 0, 0, 0, 0, {0}},
	{"only a name", V30, BODY("user\0"), 0, STARTUP_BAD, "no value", 0, 0, 0, 0, {0}},
	{"trailing data", V30, BODY("user\0alice\0\0junk\0"), 0, STARTUP_BAD, "trailing data",
	 0, 0, 0, 0, {0}},
	{"trailing NUL", V30, BODY("user\0alice\0\0\0"), 0, STARTUP_BAD, "trailing data", 0, 0,
	 0, 0, {0}},
	{"empty list, trailing NUL", V30, BODY("\0\0"), 0, STARTUP_BAD, "trailing data", 0, 0,
	 0, 0, {0}},
};

START_TEST(test_parse_startup)
{
	const struct startup_case *tc = &startup_cases[_i];
	uint8_t pkt[256];
	struct startup st;
	uint32_t len = make_startup(pkt, sizeof(pkt), tc->code, tc->body, tc->body_len,
				    tc->delta);

	memset(&st, 0x5a, sizeof(st)); /* the parser must reset everything */
	proto_parse_startup(pkt, len, &st);
	ck_assert_msg(st.kind == tc->kind, "%s: kind %d, want %d (%s)", tc->name, st.kind,
		      tc->kind, st.kind == STARTUP_BAD ? st.error : "");
	if (tc->kind == STARTUP_BAD) {
		ck_assert_ptr_nonnull(st.error);
		ck_assert_msg(strstr(st.error, tc->error) != NULL, "%s: \"%s\" does not say \"%s\"",
			      tc->name, st.error, tc->error);
		return;
	}
	ck_assert_msg(st.error == NULL, "%s: error set on success", tc->name);
	ck_assert_uint_eq(st.version, tc->version);
	ck_assert_uint_eq(st.cancel_pid, tc->pid);
	ck_assert_uint_eq(st.cancel_key, tc->key);
	ck_assert_int_eq(st.nparams, tc->nparams);
	for (int i = 0; i < tc->nparams && i < 3; i++) {
		ck_assert_str_eq(st.params[i].name, tc->kv[2 * i]);
		ck_assert_str_eq(st.params[i].value, tc->kv[2 * i + 1]);
		/* Strings point into the packet, not into copies. */
		ck_assert((const uint8_t *)st.params[i].name > pkt &&
			  (const uint8_t *)st.params[i].value < pkt + len);
	}
}
END_TEST

/* Packets shorter than the 8-byte minimum, with a matching length field. */
START_TEST(test_parse_startup_too_short)
{
	uint8_t pkt[8] = {0};
	struct startup st;
	uint32_t len = (uint32_t)_i;

	if (len >= 4)
		proto_put32(pkt, len);
	proto_parse_startup(pkt, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_BAD);
	ck_assert_ptr_nonnull(st.error);
	ck_assert_ptr_nonnull(strstr(st.error, "invalid length"));
	ck_assert_ptr_nonnull(proto_check_startup_len(len));
}
END_TEST

/* Fill a v3.0 packet of exactly total bytes: user=<padding>, terminator. */
static uint32_t make_padded_startup(uint8_t *buf, uint32_t total)
{
	const size_t fixed = 8 + sizeof("user") + 1 + 1; /* "user\0" + value NUL + final NUL */
	size_t pad = total - fixed;

	proto_put32(buf, total);
	proto_put32(buf + 4, PROTO_VERSION_3_0);
	memcpy(buf + 8, "user", 5);
	memset(buf + 13, 'u', pad);
	buf[13 + pad] = '\0';
	buf[14 + pad] = '\0';
	ck_assert_uint_eq(15 + pad, total);
	return total;
}

START_TEST(test_parse_startup_size_limit)
{
	uint8_t *buf = malloc(PROTO_MAX_STARTUP + 16);
	struct startup st;

	ck_assert_ptr_nonnull(buf);

	/* Exactly 10,000 bytes is accepted. */
	uint32_t len = make_padded_startup(buf, PROTO_MAX_STARTUP);
	ck_assert_ptr_null(proto_check_startup_len(len));
	proto_parse_startup(buf, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_MESSAGE);
	ck_assert_int_eq(st.nparams, 1);
	ck_assert_uint_eq(strlen(proto_startup_get(&st, "user")), PROTO_MAX_STARTUP - 15);

	/* One byte more is not. */
	len = make_padded_startup(buf, PROTO_MAX_STARTUP + 1);
	ck_assert_ptr_nonnull(proto_check_startup_len(len));
	proto_parse_startup(buf, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_BAD);
	ck_assert_ptr_nonnull(strstr(st.error, "too long"));

	/* The check looks at the length only, whatever the size. */
	ck_assert_ptr_nonnull(proto_check_startup_len(0xFFFFFFFFu));
	ck_assert_ptr_nonnull(proto_check_startup_len(7));
	ck_assert_ptr_null(proto_check_startup_len(8));
	free(buf);
}
END_TEST

/* Fill a packet with n params p0=v0 ... */
static uint32_t make_n_params(uint8_t *buf, size_t cap, int n)
{
	size_t pos = 8;
	char name[16], value[16];

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		snprintf(value, sizeof(value), "v%d", i);
		put_param(buf, cap, &pos, name, value);
	}
	ck_assert_uint_lt(pos, cap);
	buf[pos++] = '\0';
	proto_put32(buf, (uint32_t)pos);
	proto_put32(buf + 4, PROTO_VERSION_3_0);
	return (uint32_t)pos;
}

START_TEST(test_parse_startup_param_count)
{
	uint8_t buf[2048];
	struct startup st;
	uint32_t len;

	len = make_n_params(buf, sizeof(buf), PROTO_MAX_STARTUP_PARAMS);
	proto_parse_startup(buf, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_MESSAGE);
	ck_assert_int_eq(st.nparams, PROTO_MAX_STARTUP_PARAMS);
	ck_assert_str_eq(st.params[0].name, "p0");
	ck_assert_str_eq(st.params[63].name, "p63");
	ck_assert_str_eq(st.params[63].value, "v63");

	len = make_n_params(buf, sizeof(buf), PROTO_MAX_STARTUP_PARAMS + 1);
	proto_parse_startup(buf, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_BAD);
	ck_assert_ptr_nonnull(strstr(st.error, "too many"));
}
END_TEST

/* The parser never reads past len: the bytes after the packet are poison. */
START_TEST(test_parse_startup_stays_in_bounds)
{
	static const char body[] = "user\0alice\0database\0db1\0";
	uint8_t *buf;
	struct startup st;

	/* Every prefix of a good packet, each in an exactly sized allocation so
	 * ASan catches an overread. */
	for (size_t cut = 0; cut <= sizeof(body); cut++) {
		uint32_t len = (uint32_t)(8 + cut);

		buf = malloc(len);
		ck_assert_ptr_nonnull(buf);
		proto_put32(buf, len);
		proto_put32(buf + 4, PROTO_VERSION_3_0);
		memcpy(buf + 8, body, cut);
		proto_parse_startup(buf, len, &st);
		if (cut == sizeof(body))
			ck_assert_int_eq(st.kind, STARTUP_MESSAGE);
		else
			ck_assert_msg(st.kind == STARTUP_BAD, "prefix %zu accepted", cut);
		free(buf);
	}
}
END_TEST

START_TEST(test_startup_get)
{
	uint8_t pkt[128];
	struct startup st;
	uint32_t len = make_startup(pkt, sizeof(pkt), PROTO_VERSION_3_0,
				    BODY("user\0alice\0database\0db1\0options\0\0\0"), 0);

	proto_parse_startup(pkt, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_MESSAGE);
	ck_assert_str_eq(proto_startup_get(&st, "user"), "alice");
	ck_assert_str_eq(proto_startup_get(&st, "database"), "db1");
	ck_assert_str_eq(proto_startup_get(&st, "options"), "");
	ck_assert_ptr_null(proto_startup_get(&st, "application_name"));
	ck_assert_ptr_null(proto_startup_get(&st, "alice"));   /* values are not names */
	ck_assert_ptr_null(proto_startup_get(&st, ""));

	/* First occurrence wins when a name repeats. */
	len = make_startup(pkt, sizeof(pkt), PROTO_VERSION_3_0,
			   BODY("user\0first\0user\0second\0\0"), 0);
	proto_parse_startup(pkt, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_MESSAGE);
	ck_assert_str_eq(proto_startup_get(&st, "user"), "first");

	/* A request without parameters has none to find. */
	len = make_startup(pkt, sizeof(pkt), PROTO_SSL_REQUEST, BODY(""), 0);
	proto_parse_startup(pkt, len, &st);
	ck_assert_int_eq(st.kind, STARTUP_SSL);
	ck_assert_ptr_null(proto_startup_get(&st, "user"));
}
END_TEST

START_TEST(test_startup_len)
{
	uint8_t b[4] = {0, 0, 0x01, 0x02};

	for (size_t i = 0; i < 4; i++)
		ck_assert_uint_eq(proto_startup_len(b, i), 0);
	ck_assert_uint_eq(proto_startup_len(b, 4), 0x102);
	ck_assert_uint_eq(proto_get16(b + 2), 0x102);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* ParameterStatus and ErrorResponse bodies */

struct param_status_case {
	const char *name;
	const char *body;
	size_t len;
	bool ok;
	const char *pname, *pvalue;
};

static const struct param_status_case param_status_cases[] = {
	{"good", BODY("client_encoding\0UTF8\0"), true, "client_encoding", "UTF8"},
	{"empty value", BODY("application_name\0\0"), true, "application_name", ""},
	{"empty name and value", BODY("\0\0"), true, "", ""},
	{"value not terminated", BODY("TimeZone\0UTC"), false, NULL, NULL},
	{"name only", BODY("TimeZone\0"), false, NULL, NULL},
	{"name not terminated", BODY("TimeZone"), false, NULL, NULL},
	{"one NUL", BODY("\0"), false, NULL, NULL},
	{"empty body", BODY(""), false, NULL, NULL},
	{"extra NUL", BODY("DateStyle\0ISO, MDY\0\0"), false, NULL, NULL},
	{"extra string", BODY("DateStyle\0ISO\0extra\0"), false, NULL, NULL},
	{"extra byte", BODY("DateStyle\0ISO\0x"), false, NULL, NULL},
};

START_TEST(test_parse_param_status)
{
	const struct param_status_case *tc = &param_status_cases[_i];
	/* An exact copy on the heap so ASan sees any overread. */
	uint8_t *body = malloc(tc->len ? tc->len : 1);
	const char *name = NULL, *value = NULL;

	ck_assert_ptr_nonnull(body);
	memcpy(body, tc->body, tc->len);
	bool ok = proto_parse_param_status(body, (uint32_t)tc->len, &name, &value);
	ck_assert_msg(ok == tc->ok, "%s: got %d", tc->name, ok);
	if (tc->ok) {
		ck_assert_str_eq(name, tc->pname);
		ck_assert_str_eq(value, tc->pvalue);
	}
	free(body);
}
END_TEST

struct error_case {
	const char *name;
	const char *body;
	size_t len;
	bool ok;
	const char *severity, *sqlstate, *message;
};

static const struct error_case error_cases[] = {
	{"all fields", BODY("SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0\0"), true,
	 "ERROR", "42P01", "relation \"t\" does not exist"},
	{"localized S, V wins", BODY("SFEHLER\0VERROR\0C22012\0Mdivision by zero\0\0"), true,
	 "ERROR", "22012", "division by zero"},
	{"V before S", BODY("VFATAL\0SFATAL-LOC\0C57P01\0Mbye\0\0"), true, "FATAL", "57P01",
	 "bye"},
	{"S only", BODY("SNOTICE\0C00000\0Mhello\0\0"), true, "NOTICE", "00000", "hello"},
	{"other fields ignored",
	 BODY("SERROR\0VERROR\0C42601\0Msyntax error\0P8\0Fscan.l\0L1188\0Rscanner_yyerror\0\0"),
	 true, "ERROR", "42601", "syntax error"},
	{"missing fields are empty", BODY("Monly a message\0\0"), true, "", "", "only a message"},
	{"no fields", BODY("\0"), true, "", "", ""},
	{"missing terminator", BODY("SERROR\0C42P01\0Mmsg\0"), false, NULL, NULL, NULL},
	{"empty body", BODY(""), false, NULL, NULL, NULL},
	{"truncated field value", BODY("SERROR\0C42P0"), false, NULL, NULL, NULL},
	{"field type without value", BODY("SERROR\0C"), false, NULL, NULL, NULL},
	{"bytes after terminator", BODY("SERROR\0\0junk"), false, NULL, NULL, NULL},
	{"NUL after terminator", BODY("SERROR\0\0\0"), false, NULL, NULL, NULL},
};

START_TEST(test_parse_error)
{
	const struct error_case *tc = &error_cases[_i];
	uint8_t *body = malloc(tc->len ? tc->len : 1);
	struct proto_error e;

	ck_assert_ptr_nonnull(body);
	memcpy(body, tc->body, tc->len);
	bool ok = proto_parse_error(body, (uint32_t)tc->len, &e);
	ck_assert_msg(ok == tc->ok, "%s: got %d", tc->name, ok);
	if (tc->ok) {
		ck_assert_str_eq(e.severity, tc->severity);
		ck_assert_str_eq(e.sqlstate, tc->sqlstate);
		ck_assert_str_eq(e.message, tc->message);
	}
	free(body);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* pktbuf builders */

START_TEST(test_build_AuthenticationOk)
{
	static const uint8_t want[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0};
	struct pktbuf b;

	pktbuf_init(&b);
	pktbuf_write_AuthenticationOk(&b);
	ck_assert_uint_eq(b.len, sizeof(want));
	ck_assert_mem_eq(b.data, want, sizeof(want));
	ck_assert_uint_eq(pktbuf_pending(&b), sizeof(want));
	pktbuf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_build_ParameterStatus)
{
	static const uint8_t want[] = "S\0\0\0\x19" "client_encoding\0UTF8\0";
	struct pktbuf b;
	const char *name, *value;

	pktbuf_init(&b);
	pktbuf_write_ParameterStatus(&b, "client_encoding", "UTF8");
	ck_assert_uint_eq(b.len, sizeof(want) - 1);
	ck_assert_mem_eq(b.data, want, sizeof(want) - 1);
	ck_assert(proto_parse_param_status(b.data + 5, proto_get32(b.data + 1) - 4, &name,
					   &value));
	ck_assert_str_eq(name, "client_encoding");
	ck_assert_str_eq(value, "UTF8");

	/* Empty value round-trips too. */
	pktbuf_reset(&b);
	pktbuf_write_ParameterStatus(&b, "application_name", "");
	ck_assert_uint_eq(b.len, 1 + 4 + 17 + 1);
	ck_assert(proto_parse_param_status(b.data + 5, proto_get32(b.data + 1) - 4, &name,
					   &value));
	ck_assert_str_eq(name, "application_name");
	ck_assert_str_eq(value, "");
	pktbuf_free(&b);
}
END_TEST

START_TEST(test_build_BackendKeyData)
{
	static const uint8_t want[] = {'K', 0, 0, 0, 12, 0x00, 0x00, 0x30, 0x39,
				       0xde, 0xad, 0xbe, 0xef};
	struct pktbuf b;

	pktbuf_init(&b);
	pktbuf_write_BackendKeyData(&b, 12345, 0xdeadbeefu);
	ck_assert_uint_eq(b.len, sizeof(want));
	ck_assert_mem_eq(b.data, want, sizeof(want));
	pktbuf_free(&b);
}
END_TEST

START_TEST(test_build_ReadyForQuery)
{
	static const char states[] = "ITE";
	struct pktbuf b;

	pktbuf_init(&b);
	for (int i = 0; i < 3; i++) {
		uint8_t want[] = {'Z', 0, 0, 0, 5, (uint8_t)states[i]};

		pktbuf_reset(&b);
		pktbuf_write_ReadyForQuery(&b, states[i]);
		ck_assert_uint_eq(b.len, sizeof(want));
		ck_assert_mem_eq(b.data, want, sizeof(want));
	}
	pktbuf_free(&b);
}
END_TEST

START_TEST(test_build_Query)
{
	static const uint8_t want[] = "Q\0\0\0\x0d" "SELECT 1\0";
	struct pktbuf b;

	pktbuf_init(&b);
	pktbuf_write_Query(&b, "SELECT 1");
	ck_assert_uint_eq(b.len, sizeof(want) - 1);
	ck_assert_mem_eq(b.data, want, sizeof(want) - 1);
	ck_assert_ptr_null(proto_check_header(b.data[0], proto_get32(b.data + 1), true));

	/* Empty query: only the NUL. */
	pktbuf_reset(&b);
	pktbuf_write_Query(&b, "");
	ck_assert_uint_eq(b.len, 6);
	ck_assert_uint_eq(proto_get32(b.data + 1), 5);
	ck_assert_int_eq(b.data[5], 0);
	pktbuf_free(&b);
}
END_TEST

/* A query larger than the initial allocation: the buffer grows, the length
 * field covers all of it. */
START_TEST(test_build_Query_large)
{
	size_t n = 100000;
	char *sql = malloc(n + 1);
	struct pktbuf b;

	ck_assert_ptr_nonnull(sql);
	memset(sql, 'a', n);
	sql[n] = '\0';
	pktbuf_init(&b);
	pktbuf_write_Query(&b, sql);
	ck_assert_uint_eq(b.len, 1 + 4 + n + 1);
	ck_assert_uint_ge(b.cap, b.len);
	ck_assert_uint_eq(proto_get32(b.data + 1), 4 + n + 1);
	ck_assert_mem_eq(b.data + 5, sql, n + 1);
	pktbuf_free(&b);
	free(sql);
}
END_TEST

START_TEST(test_build_ErrorResponse)
{
	static const uint8_t want[] = "E\0\0\0\x2e"
				      "SFATAL\0VFATAL\0C08P01\0Mprotocol violation\0\0";
	struct pktbuf b;
	struct proto_error e;

	pktbuf_init(&b);
	pktbuf_write_ErrorResponse(&b, "FATAL", "08P01", "protocol violation");
	ck_assert_uint_eq(b.len, sizeof(want) - 1);
	ck_assert_mem_eq(b.data, want, sizeof(want) - 1);
	ck_assert(proto_parse_error(b.data + 5, proto_get32(b.data + 1) - 4, &e));
	ck_assert_str_eq(e.severity, "FATAL");
	ck_assert_str_eq(e.sqlstate, "08P01");
	ck_assert_str_eq(e.message, "protocol violation");
	pktbuf_free(&b);
}
END_TEST

/* Round trip with awkward but legal contents. */
START_TEST(test_build_ErrorResponse_round_trip)
{
	static const char *const msgs[] = {
		"", "x", "quote ' and \"double\" and \\backslash",
		"no such database: \"d\xc3\xa9j\xc3\xa0\"",
	};
	struct pktbuf b;
	struct proto_error e;

	pktbuf_init(&b);
	for (size_t i = 0; i < ARRAY_SIZE(msgs); i++) {
		pktbuf_reset(&b);
		pktbuf_write_ErrorResponse(&b, "ERROR", "3D000", msgs[i]);
		ck_assert_int_eq(b.data[0], 'E');
		ck_assert_uint_eq(proto_get32(b.data + 1), b.len - 1);
		ck_assert(proto_parse_error(b.data + 5, (uint32_t)b.len - 5, &e));
		ck_assert_str_eq(e.severity, "ERROR");
		ck_assert_str_eq(e.sqlstate, "3D000");
		ck_assert_str_eq(e.message, msgs[i]);
	}
	pktbuf_free(&b);
}
END_TEST

START_TEST(test_build_NegotiateProtocolVersion)
{
	static const char *const unknown[] = {"_pq_.foo", "_pq_.bar"};
	static const uint8_t want2[] = "v\0\0\0\x1e"
				       "\0\0\0\0" "\0\0\0\x02" "_pq_.foo\0_pq_.bar\0";
	static const uint8_t want0[] = {'v', 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0};
	struct pktbuf b;

	pktbuf_init(&b);
	pktbuf_write_NegotiateProtocolVersion(&b, 0, unknown, 2);
	ck_assert_uint_eq(b.len, sizeof(want2) - 1);
	ck_assert_mem_eq(b.data, want2, sizeof(want2) - 1);

	pktbuf_reset(&b);
	pktbuf_write_NegotiateProtocolVersion(&b, 1, NULL, 0);
	ck_assert_uint_eq(b.len, sizeof(want0));
	ck_assert_mem_eq(b.data, want0, sizeof(want0));
	pktbuf_free(&b);
}
END_TEST

/* Several messages in one buffer: each length field covers only its own
 * message (pktbuf_finish patches the message being built, not the first). */
START_TEST(test_build_sequence)
{
	struct pktbuf b;
	size_t off = 0;
	const uint8_t *body;
	const char *name, *value;
	struct proto_error e;

	pktbuf_init(&b);
	pktbuf_write_AuthenticationOk(&b);
	pktbuf_write_ParameterStatus(&b, "TimeZone", "UTC");
	pktbuf_write_ParameterStatus(&b, "DateStyle", "ISO, MDY");
	pktbuf_write_BackendKeyData(&b, 1, 2);
	pktbuf_write_ErrorResponse(&b, "WARNING", "01000", "careful");
	pktbuf_write_ReadyForQuery(&b, 'I');

	body = expect_msg(&b, &off, 'R', 4);
	ck_assert_uint_eq(proto_get32(body), 0);
	body = expect_msg(&b, &off, 'S', 13);
	ck_assert(proto_parse_param_status(body, 13, &name, &value));
	ck_assert_str_eq(name, "TimeZone");
	ck_assert_str_eq(value, "UTC");
	body = expect_msg(&b, &off, 'S', 19);
	ck_assert(proto_parse_param_status(body, 19, &name, &value));
	ck_assert_str_eq(value, "ISO, MDY");
	body = expect_msg(&b, &off, 'K', 8);
	ck_assert_uint_eq(proto_get32(body), 1);
	ck_assert_uint_eq(proto_get32(body + 4), 2);
	body = expect_msg(&b, &off, 'E', 2 * 9 + 7 + 9 + 1);
	ck_assert(proto_parse_error(body, 2 * 9 + 7 + 9 + 1, &e));
	ck_assert_str_eq(e.severity, "WARNING");
	ck_assert_str_eq(e.message, "careful");
	body = expect_msg(&b, &off, 'Z', 1);
	ck_assert_int_eq(body[0], 'I');
	ck_assert_uint_eq(off, b.len);
	pktbuf_free(&b);
}
END_TEST

/* The generic builder and the primitive writers. */
START_TEST(test_build_generic)
{
	static const uint8_t want[] = {'T', 0, 0, 0, 15, 0x12, 0x34, 0xca, 0xfe, 0xba, 0xbe,
				       'i', 'd', 0, 0x7f, 0x01};
	struct pktbuf b;

	pktbuf_init(&b);
	pktbuf_start(&b, 'T');
	pktbuf_put_int16(&b, 0x1234);
	pktbuf_put_int32(&b, 0xcafebabeu);
	pktbuf_put_string(&b, "id");
	pktbuf_put_byte(&b, 0x7f);
	pktbuf_put_bytes(&b, "\x01", 1);
	pktbuf_finish(&b);
	ck_assert_uint_eq(b.len, sizeof(want));
	ck_assert_mem_eq(b.data, want, sizeof(want));

	/* reset keeps the memory, and off/pending follow len. */
	uint8_t *mem = b.data;
	b.off = 3;
	ck_assert_uint_eq(pktbuf_pending(&b), sizeof(want) - 3);
	pktbuf_reset(&b);
	ck_assert_ptr_eq(b.data, mem);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(pktbuf_pending(&b), 0);
	pktbuf_free(&b);
}
END_TEST

/* ---------------------------------------------------------------------- */

/* PasswordMessage and SASLInitialResponse bodies (auth.c reads them). */
START_TEST(test_password_bodies)
{
	ck_assert_str_eq(proto_body_string((const uint8_t *)BODY("secret\0")), "secret");
	ck_assert_ptr_null(proto_body_string((const uint8_t *)BODY("secret")));
	ck_assert_ptr_null(proto_body_string((const uint8_t *)BODY("sec\0ret\0")));
	ck_assert_ptr_null(proto_body_string((const uint8_t *)"", 0));

	const char *mech;
	const uint8_t *data;
	uint32_t dlen;
	static const char ok[] = "SCRAM-SHA-256\0\0\0\0\3abc";
	ck_assert(proto_parse_sasl_initial((const uint8_t *)ok, sizeof(ok) - 1, &mech, &data, &dlen));
	ck_assert_str_eq(mech, "SCRAM-SHA-256");
	ck_assert_uint_eq(dlen, 3);
	ck_assert(memcmp(data, "abc", 3) == 0);
	static const char none[] = "SCRAM-SHA-256\0\xff\xff\xff\xff";
	ck_assert(proto_parse_sasl_initial((const uint8_t *)none, sizeof(none) - 1, &mech, &data, &dlen));
	ck_assert_uint_eq(dlen, 0);
	static const char *const bad[] = {
		"SCRAM-SHA-256\0\0\0\0\4abc",      /* length past the end */
		"SCRAM-SHA-256\0\0\0\0\2abc",      /* bytes after the data */
		"SCRAM-SHA-256\0\0\0",               /* no length word */
		"SCRAM-SHA-256",                      /* no NUL */
		"SCRAM-SHA-256\0\xff\xff\xff\xfex", /* negative length */
	};
	static const uint32_t bad_len[] = {21, 21, 16, 13, 19};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		ck_assert_msg(!proto_parse_sasl_initial((const uint8_t *)bad[i], bad_len[i], &mech,
							&data, &dlen), "case %zu", i);
}
END_TEST

Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("header");

	tcase_add_loop_test(tc, test_check_header, 0, (int)ARRAY_SIZE(header_cases));
	tcase_add_test(tc, test_check_header_all_frontend_types);
	suite_add_tcase(s, tc);

	tc = tcase_create("startup");
	tcase_add_loop_test(tc, test_parse_startup, 0, (int)ARRAY_SIZE(startup_cases));
	tcase_add_loop_test(tc, test_parse_startup_too_short, 0, 8);
	tcase_add_test(tc, test_parse_startup_size_limit);
	tcase_add_test(tc, test_parse_startup_param_count);
	tcase_add_test(tc, test_parse_startup_stays_in_bounds);
	tcase_add_test(tc, test_startup_get);
	tcase_add_test(tc, test_startup_len);
	suite_add_tcase(s, tc);

	tc = tcase_create("fields");
	tcase_add_loop_test(tc, test_parse_param_status, 0, (int)ARRAY_SIZE(param_status_cases));
	tcase_add_loop_test(tc, test_parse_error, 0, (int)ARRAY_SIZE(error_cases));
	tcase_add_test(tc, test_password_bodies);
	suite_add_tcase(s, tc);

	tc = tcase_create("pktbuf");
	tcase_add_test(tc, test_build_AuthenticationOk);
	tcase_add_test(tc, test_build_ParameterStatus);
	tcase_add_test(tc, test_build_BackendKeyData);
	tcase_add_test(tc, test_build_ReadyForQuery);
	tcase_add_test(tc, test_build_Query);
	tcase_add_test(tc, test_build_Query_large);
	tcase_add_test(tc, test_build_ErrorResponse);
	tcase_add_test(tc, test_build_ErrorResponse_round_trip);
	tcase_add_test(tc, test_build_NegotiateProtocolVersion);
	tcase_add_test(tc, test_build_sequence);
	tcase_add_test(tc, test_build_generic);
	suite_add_tcase(s, tc);
	return s;
}
