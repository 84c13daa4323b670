/*
 * config.h - the parameter table, libconfig parsing and validation.
 *
 * One table in config.c defines every setting: name, type, default (a string
 * parsed exactly like user input), bounds and whether a reload may change it.
 * The same table drives parsing, validation, SHOW CONFIG and the docs.
 *
 * A struct config owns all of its strings (they are copied out of libconfig's
 * config_t, which is destroyed before config_load() returns).  A reload builds
 * a new struct config and swaps it in; nothing keeps pointers into an old one.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

enum pool_mode {
	POOL_MODE_SESSION = 0,
	POOL_MODE_TRANSACTION = 1,
	POOL_MODE_STATEMENT = 2,
};

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON = 1,
};

enum auth_type {
	AUTH_TYPE_TRUST = 0, /* any password accepted, user name used as given */
	AUTH_TYPE_ANY = 1,   /* like trust, but the user name is ignored: every
			      * database must name a forced user */
	AUTH_TYPE_PLAIN = 2, /* cleartext password checked against auth_file */
	AUTH_TYPE_MD5 = 3,   /* md5, or SCRAM when the stored secret is SCRAM */
	AUTH_TYPE_SCRAM = 4, /* SCRAM-SHA-256 */
	AUTH_TYPE_CERT = 5,  /* TLS client certificate (needs client TLS) */
	AUTH_TYPE_HBA = 6,   /* per connection, from auth_hba_file */
};

/* client_tls_sslmode values (PgBouncer's client-side meanings). */
enum client_sslmode {
	CLIENT_SSL_DISABLE = 0,  /* plain only; SSLRequest answered 'N' */
	CLIENT_SSL_ALLOW,        /* TLS when the client asks */
	CLIENT_SSL_PREFER,       /* same as allow on the server side */
	CLIENT_SSL_REQUIRE,      /* plain clients refused */
	CLIENT_SSL_VERIFY_CA,    /* TLS with a client certificate signed by client_tls_ca_file */
	CLIENT_SSL_VERIFY_FULL,  /* same as verify-ca (the certificate names the user for cert auth) */
};

/* server_tls_sslmode values, passed to libpq (no prefer/allow: DESIGN §5.3). */
enum server_sslmode {
	SERVER_SSL_DISABLE = 0,
	SERVER_SSL_REQUIRE,
	SERVER_SSL_VERIFY_CA,
	SERVER_SSL_VERIFY_FULL,
};

/* A list of strings (listen_addr, ignore_startup_parameters, ...). */
struct config_strlist {
	char **items;
	int count;
};

/* One entry of the `databases` list. */
struct config_db {
	char *name;         /* client-visible database name; "*" = wildcard */
	char *conninfo;     /* libpq connection string to the backend */
	int pool_size;      /* -1 = use default_pool_size */
	int pool_mode;      /* -1 = use the user's or the global pool_mode */
	char *user;         /* forced backend user, NULL = client's user */
	char *password;     /* password for the forced user, NULL = none */
	char *password_env; /* environment variable holding that password, or NULL */
	int line;           /* line in the config file, for messages */
	char *conninfo_user; /* user= of conninfo, or NULL (derived at load) */
};

/* One entry of the `users` list. */
struct config_user {
	char *name;
	int pool_mode;      /* -1 = use the global pool_mode */
	int pool_size;      /* -1 = use the database's or default_pool_size */
	int line;
};

/*
 * The whole configuration.  Field names are the setting names, so grep finds
 * both.  Times are in seconds (fractions allowed), as in PgBouncer.
 */
struct config {
	char *filename;
	/* Different for every loaded configuration and after every SET, so
	 * that values derived from settings can tell they are stale. */
	uint64_t generation;

	/* listeners */
	struct config_strlist listen_addr;   /* "*" = all IPv4 and IPv6 */
	int listen_port;
	int listen_backlog;
	char *unix_socket_dir;               /* "" = no unix socket */
	int unix_socket_mode;
	bool so_reuseport;

	/* pooling */
	int pool_mode;                       /* enum pool_mode */
	int default_pool_size;               /* 0 = unlimited */
	int max_client_conn;
	char *server_reset_query;            /* "" = none */
	bool server_reset_query_always;
	double server_connect_timeout;
	double cancel_wait_timeout;
	double client_login_timeout;
	double query_wait_timeout;
	double client_idle_timeout;
	double idle_transaction_timeout;
	double query_timeout;
	double transaction_timeout;
	double server_check_delay;
	char *server_check_query;
	double server_idle_timeout;
	double server_lifetime;
	double autodb_idle_timeout;
	int min_pool_size;
	int reserve_pool_size;
	double reserve_pool_timeout;
	int max_db_connections;
	int max_user_connections;
	int max_db_client_connections;
	int max_user_client_connections;
	bool server_round_robin;
	bool tcp_keepalive;
	int tcp_keepidle;
	int tcp_keepintvl;
	int tcp_keepcnt;
	int tcp_user_timeout;
	double server_login_retry;
	int pkt_buf;
	int max_prepared_statements;         /* per server; 0 = no tracking */
	struct config_strlist ignore_startup_parameters;
	struct config_strlist track_extra_parameters;

	/* auth */
	int auth_type;                       /* enum auth_type */
	char *auth_file;                     /* "" = none */
	char *auth_hba_file;                 /* "" = none */
	char *server_passfile;               /* libpq passfile for backends; "" = none */
	char *auth_user;                     /* user running auth_query; "" = off */
	char *auth_query;                    /* $1 = user name; returns name, secret */
	char *auth_dbname;                   /* database entry for the lookup; "" = client's */

	/* TLS towards clients */
	int client_tls_sslmode;              /* enum client_sslmode */
	char *client_tls_cert_file;
	char *client_tls_key_file;
	char *client_tls_ca_file;
	char *client_tls_protocols;
	char *client_tls_ciphers;
	char *client_tls13_ciphers;

	/* TLS towards servers (defaults for conninfo strings without sslmode) */
	int server_tls_sslmode;              /* enum server_sslmode */
	char *server_tls_ca_file;
	char *server_tls_cert_file;
	char *server_tls_key_file;

	/* logging */
	char *logfile;                       /* "" = stderr */
	int log_format;                      /* enum log_format */
	int verbose;
	bool log_connections;
	bool log_disconnections;
	bool log_pooler_errors;
	bool log_stats;
	bool syslog;
	char *syslog_ident;
	int syslog_facility;                 /* index: auth, authpriv, daemon, user, local0.. */

	/* admin console, statistics, HTTP endpoint */
	struct config_strlist admin_users;
	struct config_strlist stats_users;
	int stats_period;                    /* seconds */
	char *http_listen_addr;
	int http_port;                       /* 0 = off */

	struct config_db *dbs;
	int n_dbs;
	struct config_user *users;
	int n_users;
};

/* Parameter types in the table. */
enum config_type {
	CFG_INT,
	CFG_BOOL,
	CFG_STRING,
	CFG_ENUM,
	CFG_TIME,     /* seconds, double */
	CFG_STRLIST,  /* a string or a list of strings */
	CFG_OCTAL,    /* integer, shown in octal (unix_socket_mode) */
};

/* One row of the parameter table (read-only; exported for SHOW CONFIG). */
struct config_param {
	const char *name;
	enum config_type type;
	size_t offset;               /* offsetof(struct config, field) */
	const char *const *enum_names; /* CFG_ENUM: NULL-terminated names */
	double min, max;             /* CFG_INT/CFG_TIME/CFG_OCTAL bounds */
	const char *def;             /* default, parsed like user input */
	bool reloadable;
	const char *help;            /* one line, used by docs and SHOW CONFIG */
};

/*
 * Load and validate a file.  Returns NULL on failure and writes every problem
 * found into err, one per line, as "file:line: key: problem".
 */
struct config *config_load(const char *path, char *err, size_t errlen);

/* A config with every setting at its default and no databases. */
struct config *config_defaults(void);

void config_free(struct config *cfg);

/* The parameter table and its size. */
const struct config_param *config_params(size_t *count);

/* Write a setting's current value as text (as SHOW CONFIG shows it). */
void config_format_value(const struct config *cfg, const struct config_param *p,
			 char *buf, size_t len);

/* Exact name match first, then the "*" entry; NULL when neither exists. */
const struct config_db *config_find_db(const struct config *cfg, const char *name);

/* After a reload: restart-only settings keep their running values. */
void config_keep_restart_only(struct config *new, const struct config *old);

/* A setting by name (case-insensitive), or NULL. */
const struct config_param *config_find_param(const char *name);

/*
 * SET name = value on a live config, for reloadable settings only: the value
 * is parsed exactly like the file's text.  Returns 0, or -1 with err filled.
 */
int config_set(struct config *cfg, const char *name, const char *value, char *err,
	       size_t errlen);

/* Exact name match, or NULL. */
const struct config_user *config_find_user(const struct config *cfg, const char *name);

/* Names of enum values, for messages and SHOW output. */
const char *config_pool_mode_name(int mode);
const char *config_server_sslmode_name(int mode);

/* A file setting's path: absolute as given, relative to the config file's directory. */
void config_resolve_path(const struct config *cfg, const char *path, char *out, size_t len);

/* True when name is in the list (case-insensitive, as GUC names are). */
bool config_strlist_has(const struct config_strlist *l, const char *name);

#endif /* SLUICE_CONFIG_H */
