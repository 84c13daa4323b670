/*
 * config.c - the parameter table, libconfig parsing and validation.
 *
 * Owns: params[] (one row per setting of struct config, sorted by name), the
 * two small tables for the entries of `databases` and `users`, reading a file
 * with libconfig, checking types, ranges, enum names and the conninfo rules,
 * and formatting values for SHOW CONFIG.
 *
 * Does not own: applying a config (listeners, pools, TLS) or deciding what a
 * reload may change.  A reload loads a fresh struct config and the caller
 * compares it with the running one, using `reloadable` from the table.
 *
 * Each type has one text parser.  A default is a string and goes through
 * that parser, like a string value from the file, so no default can bypass
 * validation.  Typed libconfig values (integers, floats, booleans, lists)
 * go through the type's setting parser, which accepts only the libconfig
 * types listed in type_ops[] below; anything else is a "wrong type" error.
 *
 * Octal (unix_socket_mode): libconfig 1.5 has no octal literals, it reads
 * `0777` as decimal 777.  So a decimal integer is taken digit by digit as
 * octal (0777 and 777 both mean 0777, 0789 is an error), a hex literal
 * (0x1ff) is taken at its value, and a string ("0777") is parsed as octal.
 *
 * libconfig 1.5 keeps integer literals without an `L` suffix in an int and
 * silently wraps those beyond 32 bits; nothing after parsing can detect that.
 */
#include "sluice/config.h"
#include "sluice/common.h"

#include <errno.h>
#include <libconfig.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes. */
#define NAME_MAX_LEN 63

/* ---------------------------------------------------------------------- */
/* Enum names: index = enum value. */

static const char *const pool_mode_names[] = { "session", "transaction", "statement", NULL };
static const char *const log_format_names[] = { "text", "json", NULL };
static const char *const client_sslmode_names[] = { "disable", "allow", "prefer", "require",
						    "verify-ca", "verify-full", NULL };
static const char *const server_sslmode_names[] = { "disable", "require", "verify-ca",
						    "verify-full", NULL };
static const char *const syslog_facility_names[] = { "auth", "authpriv", "daemon", "user",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7", NULL };
static const char *const auth_type_names[] = { "trust", "any", "plain", "md5", "scram-sha-256",
						 "cert", "hba", NULL };

_Static_assert(ARRAY_SIZE(pool_mode_names) == POOL_MODE_STATEMENT + 2, "pool_mode_names");
_Static_assert(ARRAY_SIZE(log_format_names) == LOG_FORMAT_JSON + 2, "log_format_names");
_Static_assert(ARRAY_SIZE(auth_type_names) == AUTH_TYPE_HBA + 2, "auth_type_names");

static const char *const bool_true_names[] = { "1", "true", "yes", "on", NULL };
static const char *const bool_false_names[] = { "0", "false", "no", "off", NULL };

/* The only sslmode values a backend conninfo may use (see doc/config.md). */
static const char *const sslmode_allowed[] = {
	"disable", "require", "verify-ca", "verify-full", NULL
};

/* ---------------------------------------------------------------------- */
/* The parameter table: one line per setting, sorted by name. */

#define RELOAD  true
#define RESTART false

#define ROW(field, type, names, min, max, def, reload, help) \
	{ #field, type, offsetof(struct config, field), names, min, max, def, reload, help }

#define INT_P(f, min, max, def, rl, help)   ROW(f, CFG_INT, NULL, min, max, def, rl, help)
#define BOOL_P(f, def, rl, help)            ROW(f, CFG_BOOL, NULL, 0, 0, def, rl, help)
#define STR_P(f, def, rl, help)             ROW(f, CFG_STRING, NULL, 0, 0, def, rl, help)
#define ENUM_P(f, names, def, rl, help)     ROW(f, CFG_ENUM, names, 0, 0, def, rl, help)
#define TIME_P(f, min, max, def, rl, help)  ROW(f, CFG_TIME, NULL, min, max, def, rl, help)
#define LIST_P(f, def, rl, help)            ROW(f, CFG_STRLIST, NULL, 0, 0, def, rl, help)
#define OCT_P(f, min, max, def, rl, help)   ROW(f, CFG_OCTAL, NULL, min, max, def, rl, help)

static const struct config_param params[] = {
	LIST_P(admin_users, "", RELOAD,
	       "Users allowed every admin console command (database sluice or pgbouncer)."),
	STR_P(auth_dbname, "", RELOAD,
	      "Database (a name from `databases`) whose backend runs auth_query; empty = the "
	      "database the client asked for."),
	STR_P(auth_file, "", RELOAD,
	      "File with user names and secrets (PgBouncer's userlist.txt format: plain, "
	      "md5 or SCRAM-SHA-256 secrets); empty = none."),
	STR_P(auth_hba_file, "", RELOAD,
	      "pg_hba.conf-style rules used when auth_type is hba; empty = none."),
	STR_P(auth_query,
	      "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END "
	      "FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin",
	      RELOAD,
	      "Query that returns (user name, secret) for $1; run as auth_user for users not "
	      "in auth_file."),
	ENUM_P(auth_type, auth_type_names, "trust", RELOAD,
	       "How clients authenticate: trust, any (trust, user name ignored), plain, md5 "
	       "(md5, or SCRAM when the stored secret is SCRAM), scram-sha-256, cert, or hba."),
	STR_P(auth_user, "", RELOAD,
	      "User whose pooled backend connection runs auth_query to fetch secrets of users "
	      "not in auth_file; empty = no lookups."),
	TIME_P(autodb_idle_timeout, 0, 86400 * 365, "3600", RELOAD,
	       "Pools created through the \"*\" database entry are closed and forgotten "
	       "after this many seconds without clients; 0 = never."),
	TIME_P(cancel_wait_timeout, 0.1, 86400, "10", RELOAD,
	       "Seconds a forwarded cancel request may take before it is abandoned (its "
	       "server is held back from other clients meanwhile)."),
	TIME_P(client_idle_timeout, 0, 86400 * 365, "0", RELOAD,
	       "Close client connections idle (no query, no server) longer than this many "
	       "seconds; 0 = never."),
	TIME_P(client_login_timeout, 0, 86400, "60", RELOAD,
	       "Close clients that have not finished logging in within this many seconds; 0 = never."),
	STR_P(client_tls13_ciphers, "", RELOAD,
	      "TLS 1.3 cipher suites offered to clients (OpenSSL syntax); empty = OpenSSL's default."),
	STR_P(client_tls_ca_file, "", RELOAD,
	      "CA certificates that client certificates must chain to (verify-ca, verify-full, cert)."),
	STR_P(client_tls_cert_file, "", RELOAD,
	      "Certificate presented to clients; required unless client_tls_sslmode is disable."),
	STR_P(client_tls_ciphers, "HIGH:!aNULL:!MD5", RELOAD,
	      "TLS 1.2 cipher list offered to clients (OpenSSL syntax)."),
	STR_P(client_tls_key_file, "", RELOAD,
	      "Private key of client_tls_cert_file."),
	STR_P(client_tls_protocols, "secure", RELOAD,
	      "TLS versions accepted from clients: secure (TLS 1.2 and 1.3), all, or a list "
	      "such as tlsv1.2,tlsv1.3."),
	ENUM_P(client_tls_sslmode, client_sslmode_names, "disable", RELOAD,
	       "TLS towards clients: disable, allow, prefer, require, verify-ca or verify-full."),
	INT_P(default_pool_size, 0, 100000, "20", RELOAD,
	      "Server connections allowed per database/user pair; 0 = unlimited."),
	STR_P(http_listen_addr, "127.0.0.1", RELOAD,
	      "Address of the HTTP endpoint (/metrics, /healthz, /readyz); \"*\" = all IPv4 addresses."),
	INT_P(http_port, 0, 65535, "0", RELOAD,
	      "TCP port of the HTTP endpoint; 0 = no HTTP endpoint."),
	TIME_P(idle_transaction_timeout, 0, 86400 * 365, "0", RELOAD,
	       "Close clients idle inside a transaction longer than this many seconds (the "
	       "transaction is rolled back); 0 = never."),
	LIST_P(ignore_startup_parameters, "", RELOAD,
	       "Startup parameters that clients may send and that are ignored instead of refused."),
	LIST_P(listen_addr, "127.0.0.1", RESTART,
	       "Addresses to listen on for TCP connections; \"*\" = all IPv4 and IPv6 "
	       "addresses, empty = no TCP."),
	INT_P(listen_backlog, 1, 65535, "128", RESTART,
	      "Backlog for listen(2): how many connections the kernel queues before they are accepted."),
	INT_P(listen_port, 1, 65535, "6432", RESTART,
	      "TCP port to listen on; also names the unix socket (.s.PGSQL.<port>)."),
	BOOL_P(log_connections, "1", RELOAD,
	       "Log successful client logins."),
	BOOL_P(log_disconnections, "1", RELOAD,
	       "Log client disconnections with the reason."),
	ENUM_P(log_format, log_format_names, "text", RELOAD,
	       "Log line format: text or json (one JSON object per line)."),
	BOOL_P(log_pooler_errors, "1", RELOAD,
	       "Log the errors the pooler itself sends to clients."),
	BOOL_P(log_stats, "1", RELOAD,
	       "Log one line per database every stats_period with the period's averages."),
	STR_P(logfile, "", RELOAD,
	      "File the log is appended to; empty = standard error."),
	INT_P(max_client_conn, 1, 1000000, "100", RELOAD,
	      "Maximum number of client connections; further clients are refused."),
	INT_P(max_db_client_connections, 0, 1000000, "0", RELOAD,
	      "Client connections allowed per database (all users); 0 = unlimited."),
	INT_P(max_db_connections, 0, 100000, "0", RELOAD,
	      "Server connections allowed per database (all users); 0 = unlimited."),
	INT_P(max_prepared_statements, 0, 100000, "200", RELOAD,
	      "Named prepared statements kept per server connection in transaction and "
	      "statement mode (LRU); 0 = relay them untouched."),
	INT_P(max_user_client_connections, 0, 1000000, "0", RELOAD,
	      "Client connections allowed per user (all databases); 0 = unlimited."),
	INT_P(max_user_connections, 0, 100000, "0", RELOAD,
	      "Server connections allowed per user (all databases); 0 = unlimited."),
	INT_P(min_pool_size, 0, 100000, "0", RELOAD,
	      "Server connections kept open per pool even when idle (within the pool size)."),
	INT_P(pkt_buf, 1024, 1048576, "4096", RESTART,
	      "Size of each connection's packet buffer, in bytes."),
	ENUM_P(pool_mode, pool_mode_names, "session", RELOAD,
	       "When a server returns to the pool: session (client leaves), transaction "
	       "(transaction ends) or statement (statement ends)."),
	TIME_P(query_timeout, 0, 86400 * 365, "0", RELOAD,
	       "Cancel-and-close queries running longer than this many seconds (the client "
	       "gets an error, the server is closed); 0 = never."),
	TIME_P(query_wait_timeout, 0, 86400 * 365, "120", RELOAD,
	       "Fail clients that waited longer than this many seconds for a server; 0 = never."),
	INT_P(reserve_pool_size, 0, 100000, "0", RELOAD,
	      "Extra server connections a pool may open when a client has waited "
	      "reserve_pool_timeout; 0 = none."),
	TIME_P(reserve_pool_timeout, 0, 86400, "5", RELOAD,
	       "Seconds a client waits before the reserve pool may be used."),
	TIME_P(server_check_delay, 0, 86400, "30", RELOAD,
	       "Idle seconds after which a server is health-checked with server_check_query "
	       "before a client gets it; 0 = check every time."),
	STR_P(server_check_query, "", RELOAD,
	      "Health-check query; empty = an empty query (the cheapest round trip)."),
	TIME_P(server_connect_timeout, 0.1, 86400, "15", RELOAD,
	       "Seconds a backend connect and login may take before it is abandoned."),
	TIME_P(server_idle_timeout, 0, 86400 * 365, "600", RELOAD,
	       "Close server connections idle in the pool longer than this many seconds; 0 = never."),
	TIME_P(server_lifetime, 0, 86400 * 365, "3600", RELOAD,
	       "Close server connections older than this many seconds once they are idle; 0 = never."),
	TIME_P(server_login_retry, 0, 86400, "15", RELOAD,
	       "Seconds to wait after a failed backend connect or login before trying again."),
	STR_P(server_passfile, "", RELOAD,
	      "libpq password file (host:port:db:user:password) for backend logins of "
	      "databases that configure no password; empty = none."),
	STR_P(server_reset_query, "DISCARD ALL", RELOAD,
	      "Query run on a server before another client may use it (session pooling); empty = none."),
	BOOL_P(server_reset_query_always, "0", RELOAD,
	       "Run server_reset_query in every pooling mode, not only in session pooling."),
	BOOL_P(server_round_robin, "0", RELOAD,
	       "Hand out idle servers in turn (FIFO) instead of the most recently used (LIFO)."),
	STR_P(server_tls_ca_file, "", RELOAD,
	      "CA certificates for verifying servers (libpq sslrootcert), for databases whose "
	      "conninfo sets none."),
	STR_P(server_tls_cert_file, "", RELOAD,
	      "Client certificate presented to servers (libpq sslcert)."),
	STR_P(server_tls_key_file, "", RELOAD,
	      "Private key of server_tls_cert_file (libpq sslkey)."),
	ENUM_P(server_tls_sslmode, server_sslmode_names, "disable", RELOAD,
	       "TLS towards servers for databases whose conninfo sets no sslmode: disable, "
	       "require, verify-ca or verify-full."),
	BOOL_P(so_reuseport, "0", RESTART,
	       "Set SO_REUSEPORT on TCP listen sockets so several processes can share the port."),
	INT_P(stats_period, 1, 86400, "60", RELOAD,
	      "Seconds per statistics period: SHOW STATS averages, log_stats lines and the "
	      "SHOW LATENCY window."),
	LIST_P(stats_users, "", RELOAD,
	       "Users allowed the read-only admin console commands (SHOW)."),
	BOOL_P(syslog, "0", RELOAD,
	       "Also send log lines to syslog."),
	ENUM_P(syslog_facility, syslog_facility_names, "daemon", RELOAD,
	       "Syslog facility: auth, authpriv, daemon, user or local0 to local7."),
	STR_P(syslog_ident, "sluice", RELOAD,
	      "Program name in syslog lines."),
	BOOL_P(tcp_keepalive, "1", RELOAD,
	       "Enable TCP keepalive on client and server sockets."),
	INT_P(tcp_keepcnt, 0, 1000, "0", RELOAD,
	      "Keepalive probes before a connection is dropped; 0 = system default."),
	INT_P(tcp_keepidle, 0, 86400, "0", RELOAD,
	      "Seconds of idleness before keepalive probes start; 0 = system default."),
	INT_P(tcp_keepintvl, 0, 86400, "0", RELOAD,
	      "Seconds between keepalive probes; 0 = system default."),
	INT_P(tcp_user_timeout, 0, 3600000, "0", RELOAD,
	      "Milliseconds unacknowledged data may stay in flight before the connection "
	      "is dropped (TCP_USER_TIMEOUT); 0 = system default."),
	LIST_P(track_extra_parameters, "IntervalStyle", RELOAD,
	       "Startup parameters tracked per client and synced to the server, beyond the "
	       "ones always tracked."),
	TIME_P(transaction_timeout, 0, 86400 * 365, "0", RELOAD,
	       "Close clients whose transaction has been open longer than this many seconds "
	       "(its query is cancelled, the transaction rolled back); 0 = never."),
	STR_P(unix_socket_dir, "/tmp", RESTART,
	      "Directory for the unix socket .s.PGSQL.<port>; empty = no unix socket."),
	OCT_P(unix_socket_mode, 0, 0777, "0777", RESTART,
	      "File mode of the unix socket, in octal."),
	INT_P(verbose, 0, 3, "0", RELOAD,
	      "Extra log detail: 0 = normal, 1 = debug, 2 and 3 = noise (like -v, -vv)."),
};

/* ---------------------------------------------------------------------- */
/* Problems found while parsing one value. */

struct problem {
	char text[512];
};

static bool fail(struct problem *pb, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Record a problem; always returns false so parsers can `return fail(...)`. */
static bool fail(struct problem *pb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pb->text, sizeof(pb->text), fmt, ap);
	va_end(ap);
	return false;
}

/* Index of name in a NULL-terminated list (case-insensitive), or -1. */
static int name_index(const char *const *names, const char *name)
{
	for (int i = 0; names[i]; i++)
		if (strcasecmp(names[i], name) == 0)
			return i;
	return -1;
}

/* "a, b, c" from a NULL-terminated list, for messages. */
static void join_names(const char *const *names, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; names[i] && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
}

static const char *setting_type_name(const config_setting_t *s)
{
	static const char *const names[] = {
		[CONFIG_TYPE_NONE] = "nothing",
		[CONFIG_TYPE_GROUP] = "a group",
		[CONFIG_TYPE_INT] = "an integer",
		[CONFIG_TYPE_INT64] = "an integer",
		[CONFIG_TYPE_FLOAT] = "a float",
		[CONFIG_TYPE_STRING] = "a string",
		[CONFIG_TYPE_BOOL] = "a boolean",
		[CONFIG_TYPE_ARRAY] = "an array",
		[CONFIG_TYPE_LIST] = "a list",
	};
	int t = config_setting_type(s);

	return t >= 0 && (size_t)t < ARRAY_SIZE(names) ? names[t] : "an unknown type";
}

/* What each type accepts, for "wrong type" messages. */
static const char *const type_expected[] = {
	[CFG_INT] = "an integer",
	[CFG_BOOL] = "a boolean (true/false or 1/0)",
	[CFG_STRING] = "a string",
	[CFG_ENUM] = "a string",
	[CFG_TIME] = "a number of seconds",
	[CFG_STRLIST] = "a string or a list of strings",
	[CFG_OCTAL] = "an octal mode (0777 or \"0777\")",
};

static bool wrong_type(const struct config_param *p, const config_setting_t *s,
		       struct problem *pb)
{
	char names[256], choices[280] = "";

	if (p->type == CFG_ENUM) {
		join_names(p->enum_names, names, sizeof(names));
		snprintf(choices, sizeof(choices), " (one of: %s)", names);
	}
	return fail(pb, "wrong type: expected %s%s, got %s", type_expected[p->type], choices,
		    setting_type_name(s));
}

/* True, with the value, for libconfig integers (plain or 64-bit). */
static bool setting_int(const config_setting_t *s, long long *v)
{
	int t = config_setting_type(s);

	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
		return false;
	*v = config_setting_get_int64(s);
	return true;
}

/* Seconds as the shortest decimal that reads back exactly: "15", "0.5". */
static void format_seconds(double v, char *buf, size_t len)
{
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(buf, len, "%.0f", v);
		return;
	}
	for (int prec = 1; prec <= 9; prec++) {
		snprintf(buf, len, "%.*f", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
	snprintf(buf, len, "%.17g", v);
}

static void format_number(enum config_type type, double v, char *buf, size_t len)
{
	if (type == CFG_OCTAL && v >= 0 && v <= 07777777)
		snprintf(buf, len, "0%03o", (unsigned)v);
	else if (type == CFG_TIME)
		format_seconds(v, buf, len);
	else
		snprintf(buf, len, "%.0f", v);
}

static bool check_range(const struct config_param *p, double v, struct problem *pb)
{
	char val[40], lo[40], hi[40];

	if (v >= p->min && v <= p->max)
		return true;
	format_number(p->type, v, val, sizeof(val));
	format_number(p->type, p->min, lo, sizeof(lo));
	format_number(p->type, p->max, hi, sizeof(hi));
	return fail(pb, "%s is out of range (%s..%s)", val, lo, hi);
}

/* ---------------------------------------------------------------------- */
/* CFG_INT */

static bool int_store(const struct config_param *p, long long v, void *dst,
		      struct problem *pb)
{
	if (!check_range(p, (double)v, pb))
		return false;
	*(int *)dst = (int)v;
	return true;
}

static bool int_from_text(const struct config_param *p, const char *text, void *dst,
			  struct problem *pb)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (end == text || *end != '\0' || errno != 0)
		return fail(pb, "\"%s\" is not an integer", text);
	return int_store(p, v, dst, pb);
}

static bool int_from_setting(const struct config_param *p, const config_setting_t *s,
			     void *dst, struct problem *pb)
{
	long long v;

	if (!setting_int(s, &v))
		return wrong_type(p, s, pb);
	return int_store(p, v, dst, pb);
}

static void int_format(const struct config_param *p, const void *src, char *buf, size_t len)
{
	(void)p;
	snprintf(buf, len, "%d", *(const int *)src);
}

/* ---------------------------------------------------------------------- */
/* CFG_BOOL */

static bool bool_from_text(const struct config_param *p, const char *text, void *dst,
			   struct problem *pb)
{
	(void)p;
	if (name_index(bool_true_names, text) >= 0)
		*(bool *)dst = true;
	else if (name_index(bool_false_names, text) >= 0)
		*(bool *)dst = false;
	else
		return fail(pb, "\"%s\" is not a boolean (use true/false or 1/0)", text);
	return true;
}

static bool bool_from_setting(const struct config_param *p, const config_setting_t *s,
			      void *dst, struct problem *pb)
{
	long long v;

	if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
		*(bool *)dst = config_setting_get_bool(s) != 0;
		return true;
	}
	if (!setting_int(s, &v))
		return wrong_type(p, s, pb);
	if (v != 0 && v != 1)
		return fail(pb, "%lld is not a boolean (use true/false or 1/0)", v);
	*(bool *)dst = v == 1;
	return true;
}

static void bool_format(const struct config_param *p, const void *src, char *buf, size_t len)
{
	(void)p;
	snprintf(buf, len, "%s", *(const bool *)src ? "1" : "0");
}

/* ---------------------------------------------------------------------- */
/* CFG_STRING */

static bool string_from_text(const struct config_param *p, const char *text, void *dst,
			     struct problem *pb)
{
	char **field = dst;

	(void)p;
	(void)pb;
	free(*field);
	*field = xstrdup(text);
	return true;
}

static bool string_from_setting(const struct config_param *p, const config_setting_t *s,
				void *dst, struct problem *pb)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return wrong_type(p, s, pb);
	return string_from_text(p, config_setting_get_string(s), dst, pb);
}

static void string_format(const struct config_param *p, const void *src, char *buf, size_t len)
{
	const char *v = *(char *const *)src;

	(void)p;
	snprintf(buf, len, "%s", v ? v : "");
}

static void string_release(void *dst)
{
	char **field = dst;

	free(*field);
	*field = NULL;
}

/* ---------------------------------------------------------------------- */
/* CFG_ENUM: stored as the index into p->enum_names. */

static bool enum_from_text(const struct config_param *p, const char *text, void *dst,
			   struct problem *pb)
{
	char names[256];
	int i = name_index(p->enum_names, text);

	if (i < 0) {
		join_names(p->enum_names, names, sizeof(names));
		return fail(pb, "\"%s\" is not one of: %s", text, names);
	}
	*(int *)dst = i;
	return true;
}

static bool enum_from_setting(const struct config_param *p, const config_setting_t *s,
			      void *dst, struct problem *pb)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return wrong_type(p, s, pb);
	return enum_from_text(p, config_setting_get_string(s), dst, pb);
}

static const char *enum_name(const char *const *names, int v)
{
	for (int i = 0; names[i]; i++)
		if (i == v)
			return names[i];
	return "unknown";
}

static void enum_format(const struct config_param *p, const void *src, char *buf, size_t len)
{
	snprintf(buf, len, "%s", enum_name(p->enum_names, *(const int *)src));
}

/* ---------------------------------------------------------------------- */
/* CFG_TIME: seconds in a double. */

static bool time_store(const struct config_param *p, double v, void *dst, struct problem *pb)
{
	if (!check_range(p, v, pb))
		return false;
	*(double *)dst = v;
	return true;
}

static bool time_from_text(const struct config_param *p, const char *text, void *dst,
			   struct problem *pb)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (end == text || *end != '\0' || errno != 0 || !isfinite(v))
		return fail(pb, "\"%s\" is not a number of seconds", text);
	return time_store(p, v, dst, pb);
}

static bool time_from_setting(const struct config_param *p, const config_setting_t *s,
			      void *dst, struct problem *pb)
{
	long long iv;

	if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
		return time_store(p, config_setting_get_float(s), dst, pb);
	if (!setting_int(s, &iv))
		return wrong_type(p, s, pb);
	return time_store(p, (double)iv, dst, pb);
}

static void time_format(const struct config_param *p, const void *src, char *buf, size_t len)
{
	(void)p;
	format_seconds(*(const double *)src, buf, len);
}

/* ---------------------------------------------------------------------- */
/* CFG_STRLIST */

static void strlist_push(struct config_strlist *l, const char *item, size_t n)
{
	char *copy = xmalloc(n + 1);

	memcpy(copy, item, n);
	copy[n] = '\0';
	l->items = xrealloc(l->items, sizeof(*l->items) * (size_t)(l->count + 1));
	l->items[l->count++] = copy;
}

static void strlist_release(void *dst)
{
	struct config_strlist *l = dst;

	for (int i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

static void strlist_replace(void *dst, struct config_strlist *l)
{
	strlist_release(dst);
	*(struct config_strlist *)dst = *l;
}

/* Comma-separated; blanks around items and empty items are dropped. */
static bool strlist_from_text(const struct config_param *p, const char *text, void *dst,
			      struct problem *pb)
{
	static const char blanks[] = " \t\r\n";
	struct config_strlist l = { NULL, 0 };

	(void)p;
	(void)pb;
	while (*text) {
		size_t n = strcspn(text, ",");
		const char *start = text;
		const char *end = text + n;

		text = *end ? end + 1 : end;
		start += strspn(start, blanks);
		while (end > start && strchr(blanks, end[-1]))
			end--;
		if (end > start)
			strlist_push(&l, start, (size_t)(end - start));
	}
	strlist_replace(dst, &l);
	return true;
}

static bool strlist_from_aggregate(const config_setting_t *s, void *dst, struct problem *pb)
{
	struct config_strlist l = { NULL, 0 };

	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			strlist_release(&l);
			return fail(pb, "item %d: expected a string, got %s", i,
				    setting_type_name(e));
		}
		if (!*config_setting_get_string(e)) {
			strlist_release(&l);
			return fail(pb, "item %d is empty", i);
		}
		strlist_push(&l, config_setting_get_string(e), strlen(config_setting_get_string(e)));
	}
	strlist_replace(dst, &l);
	return true;
}

static bool strlist_from_setting(const struct config_param *p, const config_setting_t *s,
				 void *dst, struct problem *pb)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return strlist_from_text(p, config_setting_get_string(s), dst, pb);
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
		return strlist_from_aggregate(s, dst, pb);
	default:
		return wrong_type(p, s, pb);
	}
}

static void strlist_format(const struct config_param *p, const void *src, char *buf, size_t len)
{
	const struct config_strlist *l = src;
	size_t used = 0;

	(void)p;
	for (int i = 0; i < l->count && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "",
					 l->items[i]);
}

/* ---------------------------------------------------------------------- */
/* CFG_OCTAL (see the file comment for why decimal digits are read as octal) */

static bool octal_from_text(const struct config_param *p, const char *text, void *dst,
			    struct problem *pb)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 8);
	if (end == text || *end != '\0' || errno != 0)
		return fail(pb, "\"%s\" is not an octal number", text);
	return int_store(p, v, dst, pb);
}

/* 777 -> 0777; false when a digit is 8 or 9. */
static bool decimal_digits_as_octal(long long dec, long long *oct)
{
	long long v = 0, scale = 1;

	for (; dec > 0; dec /= 10, scale *= 8) {
		if (dec % 10 > 7)
			return false;
		v += (dec % 10) * scale;
	}
	*oct = v;
	return true;
}

static bool octal_from_setting(const struct config_param *p, const config_setting_t *s,
			       void *dst, struct problem *pb)
{
	long long v, oct;

	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return octal_from_text(p, config_setting_get_string(s), dst, pb);
	if (!setting_int(s, &v))
		return wrong_type(p, s, pb);
	if (config_setting_get_format(s) == CONFIG_FORMAT_HEX || v < 0)
		return int_store(p, v, dst, pb);
	if (!decimal_digits_as_octal(v, &oct))
		return fail(pb, "%lld is not an octal number (write it like 0777)", v);
	return int_store(p, oct, dst, pb);
}

static void octal_format(const struct config_param *p, const void *src, char *buf, size_t len)
{
	format_number(p->type, *(const int *)src, buf, len);
}

/* ---------------------------------------------------------------------- */
/* One row per enum config_type. */

struct type_ops {
	bool (*from_text)(const struct config_param *p, const char *text, void *dst,
			  struct problem *pb);
	bool (*from_setting)(const struct config_param *p, const config_setting_t *s,
			     void *dst, struct problem *pb);
	void (*format)(const struct config_param *p, const void *src, char *buf, size_t len);
	void (*release)(void *dst);   /* frees what the field owns; NULL if nothing */
};

static const struct type_ops type_ops[] = {
	[CFG_INT] = { int_from_text, int_from_setting, int_format, NULL },
	[CFG_BOOL] = { bool_from_text, bool_from_setting, bool_format, NULL },
	[CFG_STRING] = { string_from_text, string_from_setting, string_format, string_release },
	[CFG_ENUM] = { enum_from_text, enum_from_setting, enum_format, NULL },
	[CFG_TIME] = { time_from_text, time_from_setting, time_format, NULL },
	[CFG_STRLIST] = { strlist_from_text, strlist_from_setting, strlist_format, strlist_release },
	[CFG_OCTAL] = { octal_from_text, octal_from_setting, octal_format, NULL },
};

_Static_assert(ARRAY_SIZE(type_ops) == CFG_OCTAL + 1, "type_ops covers every config_type");

static void *field_ptr(void *base, const struct config_param *p)
{
	return (char *)base + p->offset;
}

/* ---------------------------------------------------------------------- */
/* Error collection for config_load(). */

struct loadctx {
	const char *path;   /* the file given to config_load() */
	char *dir;          /* its directory, for @include; NULL = none in path */
	char *err;          /* caller's buffer: one problem per line */
	size_t errlen;
	size_t used;
	int n_errors;
};

static void add_error(struct loadctx *ctx, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void add_error(struct loadctx *ctx, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	ctx->n_errors++;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (!ctx->err || ctx->used + 1 >= ctx->errlen)
		return;
	ctx->used += (size_t)snprintf(ctx->err + ctx->used, ctx->errlen - ctx->used, "%s%s",
				      ctx->used ? "\n" : "", line);
	ctx->used = MIN(ctx->used, ctx->errlen - 1);
}

/*
 * The file name to show for a setting or a syntax error.  libconfig records an
 * included file's name as written in @include, while it opened it relative to
 * the include directory, so show that directory too.
 */
static void shown_file(const struct loadctx *ctx, const char *file, char *buf, size_t len)
{
	if (!file || !ctx->dir || file[0] == '/' || strcmp(file, ctx->path) == 0)
		snprintf(buf, len, "%s", file ? file : ctx->path);
	else
		snprintf(buf, len, "%s%s%s", ctx->dir,
			 ctx->dir[strlen(ctx->dir) - 1] == '/' ? "" : "/", file);
}

/* "FILE:LINE: KEY: PROBLEM", placed at setting s. */
static void report(struct loadctx *ctx, const config_setting_t *s, const char *key,
		   const char *problem)
{
	char file[512];

	shown_file(ctx, config_setting_source_file(s), file, sizeof(file));
	add_error(ctx, "%s:%u: %s: %s", file, config_setting_source_line(s), key, problem);
}

/* ---------------------------------------------------------------------- */
/* `databases` and `users`: lists of groups, each through a small table. */

struct field {
	struct config_param p;   /* offset is into the entry struct */
	bool required;
};

#define FIELD(entry, f, type, names, min, max, required, help) \
	{ { #f, type, offsetof(struct entry, f), names, min, max, NULL, true, help }, required }

/* Sorted by name. */
static const struct field db_fields[] = {
	FIELD(config_db, conninfo, CFG_STRING, NULL, 0, 0, true,
	      "libpq connection string for the backend."),
	FIELD(config_db, name, CFG_STRING, NULL, 0, 0, true,
	      "Database name clients connect to; \"*\" matches any name not listed."),
	FIELD(config_db, password, CFG_STRING, NULL, 0, 0, false,
	      "Password for the forced user."),
	FIELD(config_db, password_env, CFG_STRING, NULL, 0, 0, false,
	      "Environment variable holding the backend password (keeps it out of the file)."),
	FIELD(config_db, pool_mode, CFG_ENUM, pool_mode_names, 0, 0, false,
	      "Pool mode for this database, overriding the user's and the global one."),
	FIELD(config_db, pool_size, CFG_INT, NULL, 0, 100000, false,
	      "Pool size for this database, overriding default_pool_size."),
	FIELD(config_db, user, CFG_STRING, NULL, 0, 0, false,
	      "Backend user for every client of this database (forced user)."),
};

static const struct field user_fields[] = {
	FIELD(config_user, name, CFG_STRING, NULL, 0, 0, true,
	      "User name, as sent by clients."),
	FIELD(config_user, pool_mode, CFG_ENUM, pool_mode_names, 0, 0, false,
	      "Pool mode for this user, overriding the global one."),
	FIELD(config_user, pool_size, CFG_INT, NULL, 0, 100000, false,
	      "Pool size for this user's pools, overriding the database's and default_pool_size."),
};

struct section {
	const char *name;             /* key in the file */
	const char *what;             /* one entry, for messages */
	const struct field *fields;
	size_t n_fields;
	size_t entry_size;
	size_t name_off;              /* offsetof(entry, name) */
	size_t line_off;              /* offsetof(entry, line) */
	void (*init)(void *entry);    /* the "not set" markers */
	void (*check)(struct loadctx *ctx, void *entry, int idx, const config_setting_t *grp);
	void (*store)(struct config *cfg, void *entries, int n);
	void (*release)(void *entry);  /* fields not in the table, or NULL */
};

static void db_init(void *entry)
{
	struct config_db *db = entry;

	db->pool_size = -1;
	db->pool_mode = -1;
}

static void user_init(void *entry)
{
	struct config_user *u = entry;

	u->pool_mode = -1;
	u->pool_size = -1;
}

static void db_store(struct config *cfg, void *entries, int n)
{
	cfg->dbs = entries;
	cfg->n_dbs = n;
}

static void user_store(struct config *cfg, void *entries, int n)
{
	cfg->users = entries;
	cfg->n_users = n;
}

static void db_check(struct loadctx *ctx, void *entry, int idx, const config_setting_t *grp);

static void db_release(void *entry)
{
	struct config_db *db = entry;

	free(db->conninfo_user);
}

static const struct section db_section = {
	"databases", "database", db_fields, ARRAY_SIZE(db_fields), sizeof(struct config_db),
	offsetof(struct config_db, name), offsetof(struct config_db, line),
	db_init, db_check, db_store, db_release,
};

static const struct section user_section = {
	"users", "user", user_fields, ARRAY_SIZE(user_fields), sizeof(struct config_user),
	offsetof(struct config_user, name), offsetof(struct config_user, line),
	user_init, NULL, user_store, NULL,
};

static const struct section *const sections[] = { &db_section, &user_section };

/* "databases[2].conninfo" */
static void entry_key(const struct section *sec, int idx, const char *field, char *buf,
		      size_t len)
{
	snprintf(buf, len, "%s[%d]%s%s", sec->name, idx, field ? "." : "", field ? field : "");
}

/* The member if present, else the group itself, to place a message. */
static const config_setting_t *member_or(const config_setting_t *grp, const char *name)
{
	const config_setting_t *m = config_setting_get_member(grp, name);

	return m ? m : grp;
}

static void report_entry(struct loadctx *ctx, const struct section *sec, int idx,
			 const config_setting_t *grp, const char *field, const char *problem)
{
	char key[128];

	entry_key(sec, idx, field, key, sizeof(key));
	report(ctx, field ? member_or(grp, field) : grp, key, problem);
}

static const struct field *find_field(const struct section *sec, const char *name)
{
	for (size_t i = 0; i < sec->n_fields; i++)
		if (strcmp(sec->fields[i].p.name, name) == 0)
			return &sec->fields[i];
	return NULL;
}

static void load_entry(struct loadctx *ctx, const struct section *sec, int idx,
		       const config_setting_t *grp, void *entry)
{
	struct problem pb;

	for (int i = 0; i < config_setting_length(grp); i++) {
		const config_setting_t *m = config_setting_get_elem(grp, (unsigned)i);
		const struct field *f = find_field(sec, config_setting_name(m));

		if (!f)
			report_entry(ctx, sec, idx, grp, config_setting_name(m), "unknown setting");
		else if (!type_ops[f->p.type].from_setting(&f->p, m, field_ptr(entry, &f->p), &pb))
			report_entry(ctx, sec, idx, grp, f->p.name, pb.text);
	}
	for (size_t i = 0; i < sec->n_fields; i++)
		if (sec->fields[i].required && !config_setting_get_member(grp, sec->fields[i].p.name))
			report_entry(ctx, sec, idx, grp, sec->fields[i].p.name,
				     "required setting is missing");
}

static const char *entry_name(const struct section *sec, const void *entry)
{
	return *(char *const *)((const char *)entry + sec->name_off);
}

static int entry_line(const struct section *sec, const void *entry)
{
	return *(const int *)((const char *)entry + sec->line_off);
}

/* Names: non-empty, at most NAME_MAX_LEN bytes, unique, one "*" at most. */
static void check_name(struct loadctx *ctx, const struct section *sec, const char *entries,
		       int idx, const config_setting_t *grp)
{
	char msg[256];
	const char *name = entry_name(sec, entries + (size_t)idx * sec->entry_size);

	if (!name)
		return;
	if (!*name || strlen(name) > NAME_MAX_LEN) {
		snprintf(msg, sizeof(msg), "must be 1 to %d bytes long", NAME_MAX_LEN);
		report_entry(ctx, sec, idx, grp, "name", msg);
		return;
	}
	for (int j = 0; j < idx; j++) {
		const char *prev = entries + (size_t)j * sec->entry_size;

		if (!entry_name(sec, prev) || strcmp(entry_name(sec, prev), name) != 0)
			continue;
		if (strcmp(name, "*") == 0)
			snprintf(msg, sizeof(msg), "only one \"*\" (wildcard) %s is allowed "
				 "(first at line %d)", sec->what, entry_line(sec, prev));
		else
			snprintf(msg, sizeof(msg), "duplicate %s \"%s\" (first at line %d)",
				 sec->what, name, entry_line(sec, prev));
		report_entry(ctx, sec, idx, grp, "name", msg);
		return;
	}
}

static bool is_list_of_groups(const config_setting_t *s)
{
	int t = config_setting_type(s);

	/* `()` and `[]` both read as an empty list of entries. */
	return t == CONFIG_TYPE_LIST || (t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0);
}

static void load_section(struct loadctx *ctx, struct config *cfg, const struct section *sec,
			 const config_setting_t *list)
{
	char msg[256];
	int n = config_setting_length(list);
	char *entries;

	if (!is_list_of_groups(list)) {
		snprintf(msg, sizeof(msg), "wrong type: expected a list of groups ( { ... }, ... ), "
			 "got %s", setting_type_name(list));
		report(ctx, list, sec->name, msg);
		return;
	}
	entries = xcalloc(n ? (size_t)n : 1, sec->entry_size);
	sec->store(cfg, entries, n);
	for (int i = 0; i < n; i++) {
		const config_setting_t *grp = config_setting_get_elem(list, (unsigned)i);
		char *entry = entries + (size_t)i * sec->entry_size;

		sec->init(entry);
		*(int *)(entry + sec->line_off) = (int)config_setting_source_line(grp);
		if (config_setting_type(grp) != CONFIG_TYPE_GROUP) {
			snprintf(msg, sizeof(msg), "wrong type: expected a group { ... }, got %s",
				 setting_type_name(grp));
			report_entry(ctx, sec, i, grp, NULL, msg);
			continue;
		}
		load_entry(ctx, sec, i, grp, entry);
		check_name(ctx, sec, entries, i, grp);
		if (sec->check)
			sec->check(ctx, entry, i, grp);
	}
}

/* ---------------------------------------------------------------------- */
/* conninfo rules (DESIGN §5): libpq must parse it; sslmode only as listed in
 * sslmode_allowed (prefer/allow swap sockets during connect); gssencmode only
 * "disable" (GSS encryption cannot be relayed as raw bytes). */

/* libpq compares option values case-sensitively, so we do too. */
static bool in_list(const char *const *names, const char *val)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(names[i], val) == 0)
			return true;
	return false;
}

static bool check_conn_option(const char *keyword, const char *val, struct problem *pb)
{
	if (strcmp(keyword, "sslmode") == 0 && !in_list(sslmode_allowed, val))
		return fail(pb, "sslmode=%s is not allowed: use sslmode disable, require, "
			    "verify-ca or verify-full", val);
	if (strcmp(keyword, "gssencmode") == 0 && strcmp(val, "disable") != 0)
		return fail(pb, "gssencmode=%s is not allowed: GSS encryption cannot be "
			    "relayed; leave gssencmode out or set it to disable", val);
	return true;
}

static bool check_conninfo(const char *conninfo, struct problem *pb)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
	bool ok = true;

	if (!opts) {
		if (!errmsg)
			return fail(pb, "cannot parse conninfo: out of memory");
		errmsg[strcspn(errmsg, "\n")] = '\0';
		fail(pb, "libpq cannot parse it: %s", errmsg);
		PQfreemem(errmsg);
		return false;
	}
	for (const PQconninfoOption *o = opts; o->keyword && ok; o++)
		if (o->val)
			ok = check_conn_option(o->keyword, o->val, pb);
	PQconninfoFree(opts);
	return ok;
}

/* user= of a conninfo that parses, or NULL: looked up at every login. */
static char *conninfo_user(const char *conninfo)
{
	char *found = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "user") && o->val && o->val[0])
			found = xstrdup(o->val);
	PQconninfoFree(opts);
	return found;
}

static void db_check(struct loadctx *ctx, void *entry, int idx, const config_setting_t *grp)
{
	struct config_db *db = entry;
	struct problem pb;

	if (db->conninfo && !check_conninfo(db->conninfo, &pb))
		report_entry(ctx, &db_section, idx, grp, "conninfo", pb.text);
	else if (db->conninfo && !db->conninfo_user)
		db->conninfo_user = conninfo_user(db->conninfo);
	if (db->user && !*db->user)
		report_entry(ctx, &db_section, idx, grp, "user",
			     "must not be empty (leave it out to use the client's user name)");
	if (db->password_env && !getenv(db->password_env))
		report_entry(ctx, &db_section, idx, grp, "password_env",
			     "names an environment variable that is not set");
	if (db->password_env && db->password)
		report_entry(ctx, &db_section, idx, grp, "password_env",
			     "give either password or password_env, not both");
}

/* auth_type "any" ignores the client's user name, so each database must say
 * which backend user to log in as. */
static void check_auth_any(struct loadctx *ctx, const struct config *cfg,
			   const config_setting_t *root)
{
	const config_setting_t *list = config_setting_get_member(root, "databases");

	if (cfg->auth_type != AUTH_TYPE_ANY || !list)
		return;
	for (int i = 0; i < cfg->n_dbs; i++)
		if (!cfg->dbs[i].user)
			report_entry(ctx, &db_section, i,
				     config_setting_get_elem(list, (unsigned)i), "user",
				     "auth_type \"any\" requires a forced user for every database");
}

/* Password methods need secrets, hba needs its rules. */
static void check_auth_files(struct loadctx *ctx, const struct config *cfg,
			     const config_setting_t *root)
{
	const config_setting_t *at = config_setting_get_member(root, "auth_type");
	int t = cfg->auth_type;

	if (!at)
		return;
	if (t == AUTH_TYPE_HBA && !cfg->auth_hba_file[0])
		report(ctx, at, "auth_type", "auth_type \"hba\" requires auth_hba_file");
	if ((t == AUTH_TYPE_PLAIN || t == AUTH_TYPE_MD5 || t == AUTH_TYPE_SCRAM) &&
	    !cfg->auth_file[0] && !cfg->auth_user[0])
		report(ctx, at, "auth_type", "password authentication requires auth_file or auth_user");
}

/* Offering TLS needs a certificate and its key; verifying clients needs a CA. */
static void check_tls(struct loadctx *ctx, const struct config *cfg, const config_setting_t *root)
{
	const config_setting_t *m = config_setting_get_member(root, "client_tls_sslmode");

	if (!m || cfg->client_tls_sslmode == CLIENT_SSL_DISABLE)
		return;
	if (!cfg->client_tls_cert_file[0] || !cfg->client_tls_key_file[0])
		report(ctx, m, "client_tls_sslmode",
		       "TLS needs client_tls_cert_file and client_tls_key_file");
	if (cfg->client_tls_sslmode >= CLIENT_SSL_VERIFY_CA && !cfg->client_tls_ca_file[0])
		report(ctx, m, "client_tls_sslmode",
		       "verify-ca and verify-full need client_tls_ca_file");
}

/* ---------------------------------------------------------------------- */
/* The root group. */

static int param_cmp(const void *key, const void *row)
{
	return strcmp(key, ((const struct config_param *)row)->name);
}

static const struct config_param *find_param(const char *name)
{
	return bsearch(name, params, ARRAY_SIZE(params), sizeof(params[0]), param_cmp);
}

static const struct section *find_section(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		if (strcmp(sections[i]->name, name) == 0)
			return sections[i];
	return NULL;
}

static void load_root(struct loadctx *ctx, struct config *cfg, const config_setting_t *root)
{
	struct problem pb;

	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct config_param *p = find_param(name);
		const struct section *sec = p ? NULL : find_section(name);

		if (p) {
			if (!type_ops[p->type].from_setting(p, s, field_ptr(cfg, p), &pb))
				report(ctx, s, name, pb.text);
		} else if (sec) {
			load_section(ctx, cfg, sec, s);
		} else {
			report(ctx, s, name, "unknown setting");
		}
	}
	check_auth_any(ctx, cfg, root);
	check_auth_files(ctx, cfg, root);
	check_tls(ctx, cfg, root);
}

/* The directory part of path ("/" for "/x"), or NULL when there is none. */
static char *path_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t n;
	char *dir;

	if (!slash)
		return NULL;
	n = slash == path ? 1 : (size_t)(slash - path);
	dir = xmalloc(n + 1);
	memcpy(dir, path, n);
	dir[n] = '\0';
	return dir;
}

/* Read with libconfig; on failure adds the one error libconfig reports. */
static bool read_file(struct loadctx *ctx, config_t *lc)
{
	char file[512];

	/* @include paths are relative to the directory of the main file. */
	if (ctx->dir)
		config_set_include_dir(lc, ctx->dir);   /* libconfig keeps a copy */
	errno = 0;
	if (config_read_file(lc, ctx->path))
		return true;
	if (config_error_type(lc) == CONFIG_ERR_FILE_IO) {
		add_error(ctx, "%s: cannot read file: %s", ctx->path,
			  errno ? strerror(errno) : config_error_text(lc));
		return false;
	}
	shown_file(ctx, config_error_file(lc), file, sizeof(file));
	add_error(ctx, "%s:%d: %s", file, config_error_line(lc), config_error_text(lc));
	return false;
}

/* ---------------------------------------------------------------------- */
/* Public API */

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct loadctx ctx = { path, path_dir(path), err, errlen, 0, 0 };
	struct config *cfg = NULL;
	config_t lc;

	if (err && errlen)
		err[0] = '\0';
	config_init(&lc);
	if (read_file(&ctx, &lc)) {
		cfg = config_defaults();
		cfg->filename = xstrdup(path);
		load_root(&ctx, cfg, config_root_setting(&lc));
	}
	config_destroy(&lc);
	free(ctx.dir);
	if (ctx.n_errors) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static uint64_t last_generation;

struct config *config_defaults(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	struct problem pb;

	cfg->generation = ++last_generation;
	for (size_t i = 0; i < ARRAY_SIZE(params); i++) {
		const struct config_param *p = &params[i];

		if (!type_ops[p->type].from_text(p, p->def, field_ptr(cfg, p), &pb)) {
			/* A broken built-in default is a bug in this file. */
			fprintf(stderr, "sluice: bad default for %s: %s\n", p->name, pb.text);
			abort();
		}
	}
	return cfg;
}

static void free_entries(const struct section *sec, void *entries, int n)
{
	for (int i = 0; i < n; i++) {
		char *entry = (char *)entries + (size_t)i * sec->entry_size;

		for (size_t j = 0; j < sec->n_fields; j++) {
			const struct config_param *p = &sec->fields[j].p;

			if (type_ops[p->type].release)
				type_ops[p->type].release(field_ptr(entry, p));
		}
		if (sec->release)
			sec->release(entry);
	}
	free(entries);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(params); i++)
		if (type_ops[params[i].type].release)
			type_ops[params[i].type].release(field_ptr(cfg, &params[i]));
	free_entries(&db_section, cfg->dbs, cfg->n_dbs);
	free_entries(&user_section, cfg->users, cfg->n_users);
	free(cfg->filename);
	free(cfg);
}

const struct config_param *config_params(size_t *count)
{
	if (count)
		*count = ARRAY_SIZE(params);
	return params;
}

void config_format_value(const struct config *cfg, const struct config_param *p,
			 char *buf, size_t len)
{
	if (!buf || !len)
		return;
	buf[0] = '\0';
	type_ops[p->type].format(p, (const char *)cfg + p->offset, buf, len);
}

const struct config_db *config_find_db(const struct config *cfg, const char *name)
{
	const struct config_db *wildcard = NULL;

	for (int i = 0; i < cfg->n_dbs; i++) {
		const char *n = cfg->dbs[i].name;

		if (n && strcmp(n, name) == 0)
			return &cfg->dbs[i];
		if (n && strcmp(n, "*") == 0)
			wildcard = &cfg->dbs[i];
	}
	return wildcard;
}

const struct config_param *config_find_param(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(params); i++)
		if (strcasecmp(params[i].name, name) == 0)
			return &params[i];
	return NULL;
}

void config_keep_restart_only(struct config *new, const struct config *old)
{
	char *buf = xmalloc(8192);
	struct problem pb;

	for (size_t i = 0; i < ARRAY_SIZE(params); i++) {
		const struct config_param *p = &params[i];
		if (p->reloadable)
			continue;
		config_format_value(old, p, buf, 8192);
		if (!type_ops[p->type].from_text(p, buf, field_ptr(new, p), &pb))
			abort();   /* a formatted value must parse back: a bug here */
	}
	free(buf);
}

int config_set(struct config *cfg, const char *name, const char *value, char *err,
	       size_t errlen)
{
	const struct config_param *p = config_find_param(name);
	struct problem pb;

	if (!p) {
		snprintf(err, errlen, "unknown setting: %s", name);
		return -1;
	}
	if (!p->reloadable) {
		snprintf(err, errlen, "%s cannot be changed while running; change the file and restart",
			 p->name);
		return -1;
	}
	if (!type_ops[p->type].from_text(p, value, field_ptr(cfg, p), &pb)) {
		snprintf(err, errlen, "%s: %s", p->name, pb.text);
		return -1;
	}
	cfg->generation = ++last_generation;
	return 0;
}

const struct config_user *config_find_user(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->n_users; i++)
		if (cfg->users[i].name && strcmp(cfg->users[i].name, name) == 0)
			return &cfg->users[i];
	return NULL;
}

const char *config_pool_mode_name(int mode)
{
	return enum_name(pool_mode_names, mode);
}

void config_resolve_path(const struct config *cfg, const char *path, char *out, size_t len)
{
	const char *slash = cfg->filename ? strrchr(cfg->filename, '/') : NULL;
	if (path[0] == '/' || !slash)
		snprintf(out, len, "%s", path);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - cfg->filename), cfg->filename, path);
}

const char *config_server_sslmode_name(int mode)
{
	return enum_name(server_sslmode_names, mode);
}

bool config_strlist_has(const struct config_strlist *l, const char *name)
{
	for (int i = 0; l && i < l->count; i++)
		if (strcasecmp(l->items[i], name) == 0)
			return true;
	return false;
}
