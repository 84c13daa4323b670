/*
 * test_config.c - the config module: loading, defaults, every error class,
 * value formatting and lookups.
 *
 * Files under test/unit/data/config/ are named relative to the repository
 * root, where the runner is started.  Small one-line cases are written to a
 * temporary file instead, so each row of a table stays one line.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "unit.h"

#define DATA "test/unit/data/config/"

/* ---------------------------------------------------------------------- */
/* Helpers */

static const struct config_param *param(const char *name)
{
	size_t n;
	const struct config_param *p = config_params(&n);

	for (size_t i = 0; i < n; i++)
		if (strcmp(p[i].name, name) == 0)
			return &p[i];
	ck_abort_msg("no parameter %s", name);
	return NULL;
}

static const char *value(const struct config *cfg, const char *name)
{
	static char buf[512];

	config_format_value(cfg, param(name), buf, sizeof(buf));
	return buf;
}

/* Load text as a config file; the path is returned for error prefixes. */
static struct config *load_text(const char *text, char **path, char *err, size_t errlen)
{
	struct config *cfg;

	*path = unit_write_temp_str(text);
	cfg = config_load(*path, err, errlen);
	unlink(*path);
	return cfg;
}

/* ---------------------------------------------------------------------- */
/* The table itself */

START_TEST(test_table_sorted_and_complete)
{
	size_t n;
	const struct config_param *p = config_params(&n);

	ck_assert_uint_eq(n, 75);
	for (size_t i = 0; i < n; i++) {
		ck_assert_ptr_nonnull(p[i].def);
		ck_assert_msg(p[i].help && strlen(p[i].help) > 10, "%s has no help", p[i].name);
		ck_assert_msg(!strchr(p[i].help, '\n'), "%s: help is one line", p[i].name);
		ck_assert_msg(p[i].min <= p[i].max, "%s: min > max", p[i].name);
		ck_assert_msg((p[i].type == CFG_ENUM) == (p[i].enum_names != NULL),
			      "%s: enum_names only for enums", p[i].name);
		if (i > 0)
			ck_assert_msg(strcmp(p[i - 1].name, p[i].name) < 0,
				      "%s is not sorted after %s", p[i].name, p[i - 1].name);
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(p[i].offset != p[j].offset, "%s shares a field", p[i].name);
	}
	ck_assert(!param("listen_port")->reloadable);
	ck_assert(!param("unix_socket_mode")->reloadable);
	ck_assert(param("pool_mode")->reloadable);
	ck_assert(param("logfile")->reloadable);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Defaults */

START_TEST(test_defaults_values)
{
	struct config *cfg = config_defaults();

	ck_assert_int_eq(cfg->auth_type, AUTH_TYPE_TRUST);
	ck_assert_int_eq(cfg->default_pool_size, 20);
	ck_assert_int_eq(cfg->ignore_startup_parameters.count, 0);
	ck_assert_int_eq(cfg->listen_addr.count, 1);
	ck_assert_str_eq(cfg->listen_addr.items[0], "127.0.0.1");
	ck_assert_int_eq(cfg->listen_backlog, 128);
	ck_assert_int_eq(cfg->listen_port, 6432);
	ck_assert(cfg->log_connections);
	ck_assert(cfg->log_disconnections);
	ck_assert_int_eq(cfg->log_format, LOG_FORMAT_TEXT);
	ck_assert_str_eq(cfg->logfile, "");
	ck_assert_int_eq(cfg->max_client_conn, 100);
	ck_assert_int_eq(cfg->pkt_buf, 4096);
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_SESSION);
	ck_assert_double_eq(cfg->server_connect_timeout, 15.0);
	ck_assert_double_eq(cfg->server_login_retry, 15.0);
	ck_assert_str_eq(cfg->server_reset_query, "DISCARD ALL");
	ck_assert(!cfg->server_reset_query_always);
	ck_assert(!cfg->so_reuseport);
	ck_assert_int_eq(cfg->track_extra_parameters.count, 1);
	ck_assert_str_eq(cfg->track_extra_parameters.items[0], "IntervalStyle");
	ck_assert_str_eq(cfg->unix_socket_dir, "/tmp");
	ck_assert_int_eq(cfg->unix_socket_mode, 0777);
	ck_assert_int_eq(cfg->verbose, 0);
	ck_assert_ptr_null(cfg->filename);
	ck_assert_int_eq(cfg->n_dbs, 0);
	ck_assert_int_eq(cfg->n_users, 0);
	config_free(cfg);
}
END_TEST

/* Every default, parsed and formatted again, reads as written in the table. */
START_TEST(test_defaults_round_trip)
{
	struct config *cfg = config_defaults();
	size_t n;
	const struct config_param *p = config_params(&n);

	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strcmp(value(cfg, p[i].name), p[i].def) == 0,
			      "%s: formatted \"%s\", default \"%s\"", p[i].name,
			      value(cfg, p[i].name), p[i].def);
	config_free(cfg);
}
END_TEST

START_TEST(test_empty_file_is_defaults)
{
	char err[1024];
	struct config *def = config_defaults();
	struct config *cfg = config_load(DATA "empty.conf", err, sizeof(err));
	size_t n;
	const struct config_param *p = config_params(&n);

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(cfg->filename, DATA "empty.conf");
	for (size_t i = 0; i < n; i++) {
		char a[512], b[512];

		config_format_value(cfg, &p[i], a, sizeof(a));
		config_format_value(def, &p[i], b, sizeof(b));
		ck_assert_msg(strcmp(a, b) == 0, "%s: %s != %s", p[i].name, a, b);
	}
	ck_assert_int_eq(cfg->n_dbs, 0);
	ck_assert_int_eq(cfg->n_users, 0);
	config_free(cfg);
	config_free(def);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* A full, valid file */

START_TEST(test_good_file)
{
	char err[1024];
	struct config *cfg = config_load(DATA "good.conf", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->filename, DATA "good.conf");
	ck_assert_int_eq(cfg->listen_addr.count, 2);
	ck_assert_str_eq(cfg->listen_addr.items[1], "::1");
	ck_assert_int_eq(cfg->listen_port, 6433);
	ck_assert_int_eq(cfg->listen_backlog, 256);
	ck_assert_str_eq(cfg->unix_socket_dir, "/var/run/sluice");
	ck_assert_int_eq(cfg->unix_socket_mode, 0700);
	ck_assert(cfg->so_reuseport);
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_TRANSACTION);
	ck_assert_int_eq(cfg->default_pool_size, 30);
	ck_assert_int_eq(cfg->max_client_conn, 500);
	ck_assert_str_eq(cfg->server_reset_query, "DISCARD ALL; SELECT 1");
	ck_assert(cfg->server_reset_query_always);
	ck_assert_double_eq(cfg->server_connect_timeout, 2.5);
	ck_assert_double_eq(cfg->server_login_retry, 0.0);
	ck_assert_int_eq(cfg->pkt_buf, 8192);
	ck_assert_str_eq(value(cfg, "ignore_startup_parameters"), "extra_float_digits,options");
	ck_assert_str_eq(value(cfg, "track_extra_parameters"), "IntervalStyle,search_path");
	ck_assert_int_eq(cfg->auth_type, AUTH_TYPE_ANY);
	ck_assert_str_eq(cfg->logfile, "/var/log/sluice.log");
	ck_assert_int_eq(cfg->log_format, LOG_FORMAT_JSON);
	ck_assert_int_eq(cfg->verbose, 2);
	ck_assert(!cfg->log_connections);
	ck_assert(!cfg->log_disconnections);

	ck_assert_int_eq(cfg->n_dbs, 3);
	ck_assert_str_eq(cfg->dbs[0].name, "app");
	ck_assert_str_eq(cfg->dbs[0].conninfo,
			 "host=127.0.0.1 port=5432 dbname=app sslmode=require");
	ck_assert_int_eq(cfg->dbs[0].pool_size, 40);
	ck_assert_int_eq(cfg->dbs[0].pool_mode, -1);
	ck_assert_str_eq(cfg->dbs[0].user, "app_owner");
	ck_assert_str_eq(cfg->dbs[0].password, "secret");
	ck_assert_int_eq(cfg->dbs[0].line, 29);
	ck_assert_str_eq(cfg->dbs[1].name, "reports");
	ck_assert_int_eq(cfg->dbs[1].pool_size, -1);
	ck_assert_int_eq(cfg->dbs[1].pool_mode, POOL_MODE_SESSION);
	ck_assert_ptr_null(cfg->dbs[1].password);
	ck_assert_str_eq(cfg->dbs[2].name, "*");

	ck_assert_int_eq(cfg->n_users, 2);
	ck_assert_str_eq(cfg->users[0].name, "batch");
	ck_assert_int_eq(cfg->users[0].pool_mode, POOL_MODE_STATEMENT);
	ck_assert_str_eq(cfg->users[1].name, "web");
	ck_assert_int_eq(cfg->users[1].pool_mode, -1);
	ck_assert_int_eq(cfg->users[1].line, 45);
	config_free(cfg);
}
END_TEST

START_TEST(test_include_relative_to_file)
{
	char err[1024];
	struct config *cfg = config_load(DATA "include_main.conf", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->listen_port, 7000);
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_STATEMENT);
	config_free(cfg);
}
END_TEST

/* The shipped example file loads, sets every setting, and only to defaults. */
START_TEST(test_etc_sluice_conf)
{
	char err[2048];
	struct config *cfg = config_load("etc/sluice.conf", err, sizeof(err));
	struct config *def = config_defaults();
	char *text = unit_read_all("etc/sluice.conf");
	size_t n;
	const struct config_param *p = config_params(&n);

	ck_assert_msg(cfg != NULL, "%s", err);
	for (size_t i = 0; i < n; i++) {
		char line[128], a[512], b[512];

		snprintf(line, sizeof(line), "\n%s = ", p[i].name);
		ck_assert_msg(strstr(text, line) != NULL, "%s is not set in etc/sluice.conf",
			      p[i].name);
		config_format_value(cfg, &p[i], a, sizeof(a));
		config_format_value(def, &p[i], b, sizeof(b));
		ck_assert_msg(strcmp(a, b) == 0, "%s: %s is not the default %s", p[i].name, a, b);
	}
	ck_assert_ptr_nonnull(config_find_db(cfg, "app"));
	free(text);
	config_free(def);
	config_free(cfg);
}
END_TEST

/* doc/config.md has a section, a default and a reload note for every setting. */
START_TEST(test_doc_covers_every_setting)
{
	char *text = unit_read_all("doc/config.md");
	size_t n;
	const struct config_param *p = config_params(&n);

	for (size_t i = 0; i < n; i++) {
		char heading[128];
		const char *sec, *next;

		snprintf(heading, sizeof(heading), "\n### %s\n", p[i].name);
		sec = strstr(text, heading);
		ck_assert_msg(sec != NULL, "doc/config.md has no section for %s", p[i].name);
		next = strstr(sec + 1, "\n#");
		ck_assert_ptr_nonnull(next);
		ck_assert_msg(memmem(sec, (size_t)(next - sec), "Default:", 8) != NULL,
			      "%s: no Default:", p[i].name);
		ck_assert_msg(memmem(sec, (size_t)(next - sec), p[i].reloadable ?
				     "Reload: yes" : "Reload: no", p[i].reloadable ? 11 : 10),
			      "%s: wrong reload note", p[i].name);
	}
	free(text);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Bad files: each fails with one exact "file:line: key:" prefix. */

static const struct {
	const char *file;
	const char *prefix;   /* after "DATA file:" */
	int lines;            /* problems reported */
} bad_files[] = {
	{ "bad_unknown_key.conf", "3: listn_port: unknown setting", 1 },
	{ "bad_wrong_type.conf", "3: listen_port: wrong type: expected an integer, got a string", 1 },
	{ "bad_range.conf", "3: listen_port: 70000 is out of range (1..65535)", 1 },
	{ "bad_enum.conf", "3: pool_mode: \"sessions\" is not one of: session, transaction, "
	  "statement", 1 },
	{ "bad_syntax.conf", "4: syntax error", 1 },
	{ "bad_dup_db.conf", "4: databases[2].name: duplicate database \"app\" (first at line 2)", 1 },
	{ "bad_conninfo.conf", "3: databases[0].conninfo: libpq cannot parse it: invalid "
	  "connection option \"bogus\"", 1 },
	{ "bad_sslmode.conf", "7: databases[1].conninfo: sslmode=prefer is not allowed: use "
	  "sslmode disable, require, verify-ca or verify-full", 1 },
	{ "bad_gssencmode.conf", "3: databases[0].conninfo: gssencmode=prefer is not allowed:", 1 },
	{ "bad_missing_conninfo.conf", "3: databases[0].conninfo: required setting is missing", 1 },
	{ "bad_db_unknown_key.conf", "4: databases[0].pool_sise: unknown setting", 1 },
	{ "bad_two_wildcards.conf", "4: databases[2].name: only one \"*\" (wildcard) database is "
	  "allowed (first at line 2)", 1 },
	{ "bad_auth_any.conf", "4: databases[1].user: auth_type \"any\" requires a forced user", 1 },
	{ "bad_dup_user.conf", "3: users[1].name: duplicate user \"web\" (first at line 2)", 1 },
	{ "bad_user_enum.conf", "3: users[0].pool_mode: \"batch\" is not one of:", 1 },
	{ "bad_databases_type.conf", "2: databases: wrong type: expected a list of groups", 1 },
	{ "bad_db_not_group.conf", "4: databases[1]: wrong type: expected a group", 1 },
	{ "bad_multi.conf", "2: listen_port: 0 is out of range (1..65535)", 9 },
};

START_TEST(test_bad_file)
{
	char err[4096], want[512], path[256];
	struct config *cfg;

	snprintf(path, sizeof(path), DATA "%s", bad_files[_i].file);
	cfg = config_load(path, err, sizeof(err));
	ck_assert_msg(cfg == NULL, "%s loaded", path);
	snprintf(want, sizeof(want), "%s:%s", path, bad_files[_i].prefix);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got:\n%s\nwant prefix:\n%s", err,
		      want);
	ck_assert_int_eq(unit_count_lines(err), bad_files[_i].lines);
}
END_TEST

/* Every problem in a file is reported, in file order, one per line. */
START_TEST(test_bad_multi_lists_all)
{
	char err[4096];
	struct config *cfg = config_load(DATA "bad_multi.conf", err, sizeof(err));

	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err,
		DATA "bad_multi.conf:2: listen_port: 0 is out of range (1..65535)\n"
		DATA "bad_multi.conf:3: pool_mode: wrong type: expected a string (one of: "
		"session, transaction, statement), got an integer\n"
		DATA "bad_multi.conf:4: verbose: 9 is out of range (0..3)\n"
		DATA "bad_multi.conf:5: bogus: unknown setting\n"
		DATA "bad_multi.conf:6: so_reuseport: 2 is not a boolean (use true/false or 1/0)\n"
		DATA "bad_multi.conf:7: unix_socket_mode: 789 is not an octal number "
		"(write it like 0777)\n"
		DATA "bad_multi.conf:8: server_connect_timeout: 0.05 is out of range (0.1..86400)\n"
		DATA "bad_multi.conf:9: listen_addr: item 1 is empty\n"
		DATA "bad_multi.conf:11: databases[0].name: must be 1 to 63 bytes long");
}
END_TEST

/* Problems inside an @include'd file name that file, relative to ours. */
START_TEST(test_bad_include)
{
	char err[1024];

	ck_assert_ptr_null(config_load(DATA "bad_include.conf", err, sizeof(err)));
	ck_assert_str_eq(err, DATA "include_bad_part.conf:2: nope: unknown setting");
	ck_assert_ptr_null(config_load(DATA "bad_include_syntax.conf", err, sizeof(err)));
	ck_assert_str_eq(err, DATA "include_syntax_part.conf:3: syntax error");
}
END_TEST

START_TEST(test_missing_file)
{
	char err[1024];

	ck_assert_ptr_null(config_load(DATA "no-such-file.conf", err, sizeof(err)));
	ck_assert_str_eq(err, DATA "no-such-file.conf: cannot read file: No such file or directory");
}
END_TEST

/* A short or absent error buffer still fails cleanly and stays terminated. */
START_TEST(test_small_error_buffer)
{
	char err[16];

	memset(err, 'x', sizeof(err));
	ck_assert_ptr_null(config_load(DATA "bad_multi.conf", err, sizeof(err)));
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	ck_assert(strncmp(err, DATA, sizeof(err) - 1) == 0);
	ck_assert_ptr_null(config_load(DATA "bad_multi.conf", NULL, 0));
	ck_assert_ptr_null(config_load(DATA "bad_multi.conf", err, 0));
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Accepted values and how config_format_value shows them, per type. */

static const struct {
	const char *text;
	const char *name;
	const char *shown;
} accepted[] = {
	/* CFG_INT */
	{ "listen_port = 1;", "listen_port", "1" },
	{ "listen_port = 65535;", "listen_port", "65535" },
	{ "listen_port = 0x1F90;", "listen_port", "8080" },
	{ "listen_port = 6433L;", "listen_port", "6433" },
	{ "default_pool_size = 0;", "default_pool_size", "0" },
	/* CFG_BOOL */
	{ "so_reuseport = true;", "so_reuseport", "1" },
	{ "so_reuseport = TRUE;", "so_reuseport", "1" },
	{ "so_reuseport = 1;", "so_reuseport", "1" },
	{ "log_connections = false;", "log_connections", "0" },
	{ "log_connections = 0;", "log_connections", "0" },
	/* CFG_STRING */
	{ "server_reset_query = \"\";", "server_reset_query", "" },
	{ "logfile = \"/var/log/\" \"sluice.log\";", "logfile", "/var/log/sluice.log" },
	{ "unix_socket_dir = \"\";", "unix_socket_dir", "" },
	/* CFG_ENUM */
	{ "pool_mode = \"statement\";", "pool_mode", "statement" },
	{ "pool_mode = \"TRANSACTION\";", "pool_mode", "transaction" },
	{ "log_format = \"Json\";", "log_format", "json" },
	{ "auth_type = \"any\";", "auth_type", "any" },
	/* CFG_TIME */
	{ "server_connect_timeout = 0.5;", "server_connect_timeout", "0.5" },
	{ "server_connect_timeout = 0.1;", "server_connect_timeout", "0.1" },
	{ "server_connect_timeout = 86400;", "server_connect_timeout", "86400" },
	{ "server_login_retry = 2.25;", "server_login_retry", "2.25" },
	{ "server_login_retry = 0;", "server_login_retry", "0" },
	{ "server_login_retry = 1e2;", "server_login_retry", "100" },
	/* CFG_STRLIST */
	{ "listen_addr = \"*\";", "listen_addr", "*" },
	{ "listen_addr = \" 127.0.0.1 ,, ::1 \";", "listen_addr", "127.0.0.1,::1" },
	{ "listen_addr = [\"10.0.0.1\", \"10.0.0.2\"];", "listen_addr", "10.0.0.1,10.0.0.2" },
	{ "listen_addr = (\"10.0.0.1\");", "listen_addr", "10.0.0.1" },
	{ "listen_addr = [];", "listen_addr", "" },
	{ "listen_addr = \"\";", "listen_addr", "" },
	{ "ignore_startup_parameters = \"extra_float_digits\";", "ignore_startup_parameters",
	  "extra_float_digits" },
	/* CFG_OCTAL */
	{ "unix_socket_mode = 0700;", "unix_socket_mode", "0700" },
	{ "unix_socket_mode = 777;", "unix_socket_mode", "0777" },
	{ "unix_socket_mode = 0;", "unix_socket_mode", "0000" },
	{ "unix_socket_mode = 0x1ed;", "unix_socket_mode", "0755" },
	{ "unix_socket_mode = \"0750\";", "unix_socket_mode", "0750" },
	{ "unix_socket_mode = \"660\";", "unix_socket_mode", "0660" },
};

START_TEST(test_accepted_value)
{
	char err[1024], *path;
	struct config *cfg = load_text(accepted[_i].text, &path, err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s: %s", accepted[_i].text, err);
	ck_assert_str_eq(value(cfg, accepted[_i].name), accepted[_i].shown);
	config_free(cfg);
	free(path);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Rejected values: the whole message after "FILE:1: ". */

static const struct {
	const char *text;
	const char *message;
} rejected[] = {
	{ "listen_port = 6432.5;", "listen_port: wrong type: expected an integer, got a float" },
	{ "listen_port = 70000L;", "listen_port: 70000 is out of range (1..65535)" },
	{ "listen_port = true;", "listen_port: wrong type: expected an integer, got a boolean" },
	{ "max_client_conn = 0;", "max_client_conn: 0 is out of range (1..1000000)" },
	{ "pkt_buf = 512;", "pkt_buf: 512 is out of range (1024..1048576)" },
	{ "default_pool_size = 100001;", "default_pool_size: 100001 is out of range (0..100000)" },
	{ "log_connections = \"yes\";", "log_connections: wrong type: expected a boolean "
	  "(true/false or 1/0), got a string" },
	{ "log_connections = -1;", "log_connections: -1 is not a boolean (use true/false or 1/0)" },
	{ "logfile = 1;", "logfile: wrong type: expected a string, got an integer" },
	{ "logfile = [\"a\"];", "logfile: wrong type: expected a string, got an array" },
	{ "auth_type = \"pam\";", "auth_type: \"pam\" is not one of: trust, any, plain, md5, scram-sha-256, cert, hba" },
	{ "auth_type = \"md5\";", "auth_type: password authentication requires auth_file or auth_user" },
	{ "auth_type = \"hba\";", "auth_type: auth_type \"hba\" requires auth_hba_file" },
	{ "client_tls_sslmode = \"require\";", "client_tls_sslmode: TLS needs client_tls_cert_file and client_tls_key_file" },
	{ "client_tls_sslmode = \"bogus\";", "client_tls_sslmode: \"bogus\" is not one of: disable, allow, prefer, require, verify-ca, verify-full" },
	{ "server_tls_sslmode = \"prefer\";", "server_tls_sslmode: \"prefer\" is not one of: disable, require, verify-ca, verify-full" },
	{ "log_format = \"xml\";", "log_format: \"xml\" is not one of: text, json" },
	{ "server_login_retry = \"15\";", "server_login_retry: wrong type: expected a number of "
	  "seconds, got a string" },
	{ "server_login_retry = -1;", "server_login_retry: -1 is out of range (0..86400)" },
	{ "server_connect_timeout = 86400.5;", "server_connect_timeout: 86400.5 is out of range "
	  "(0.1..86400)" },
	{ "listen_addr = 5;", "listen_addr: wrong type: expected a string or a list of strings, "
	  "got an integer" },
	{ "listen_addr = (\"a\", 1);", "listen_addr: item 1: expected a string, got an integer" },
	{ "listen_addr = { a = 1; };", "listen_addr: wrong type: expected a string or a list of "
	  "strings, got a group" },
	{ "unix_socket_mode = 1000;", "unix_socket_mode: 01000 is out of range (0000..0777)" },
	{ "unix_socket_mode = -1;", "unix_socket_mode: -1 is out of range (0000..0777)" },
	{ "unix_socket_mode = 0778;", "unix_socket_mode: 778 is not an octal number "
	  "(write it like 0777)" },
	{ "unix_socket_mode = \"0x1ff\";", "unix_socket_mode: \"0x1ff\" is not an octal number" },
	{ "unix_socket_mode = 0.5;", "unix_socket_mode: wrong type: expected an octal mode "
	  "(0777 or \"0777\"), got a float" },
	{ "users = ( { pool_mode = \"session\"; } );", "users[0].name: required setting is missing" },
	{ "users = ( { name = \"u\"; max_conns = 3; } );", "users[0].max_conns: unknown setting" },
	{ "databases = ( { name = 5; conninfo = \"host=x\"; } );",
	  "databases[0].name: wrong type: expected a string, got an integer" },
	{ "databases = ( { name = \"a\"; conninfo = \"host=x\"; user = \"\"; } );",
	  "databases[0].user: must not be empty (leave it out to use the client's user name)" },
	{ "databases = ( { name = \"a\"; conninfo = \"host=x\"; pool_size = -1; } );",
	  "databases[0].pool_size: -1 is out of range (0..100000)" },
	{ "databases = ( { name = \"a\"; conninfo = \"host='x\"; } );",
	  "databases[0].conninfo: libpq cannot parse it: unterminated quoted string in "
	  "connection info string" },
	{ "databases = ( { name = \"a\"; conninfo = \"host=x sslmode=allow\"; } );",
	  "databases[0].conninfo: sslmode=allow is not allowed: use sslmode disable, require, "
	  "verify-ca or verify-full" },
	{ "databases = ( { name = \"a\"; conninfo = \"postgresql://x/db?sslmode=Require\"; } );",
	  "databases[0].conninfo: sslmode=Require is not allowed: use sslmode disable, require, "
	  "verify-ca or verify-full" },
	{ "databases = ( { name = \"a\"; conninfo = \"host=x gssencmode=require\"; } );",
	  "databases[0].conninfo: gssencmode=require is not allowed: GSS encryption cannot be "
	  "relayed; leave gssencmode out or set it to disable" },
	{ "databases = ( { name = \"0123456789012345678901234567890123456789012345678901234567"
	  "890123\"; conninfo = \"\"; } );", "databases[0].name: must be 1 to 63 bytes long" },
};

START_TEST(test_rejected_value)
{
	char err[1024], want[1024], *path;
	struct config *cfg = load_text(rejected[_i].text, &path, err, sizeof(err));

	ck_assert_msg(cfg == NULL, "%s was accepted", rejected[_i].text);
	snprintf(want, sizeof(want), "%s:1: %s", path, rejected[_i].message);
	ck_assert_str_eq(err, want);
	free(path);
}
END_TEST

/* Accepted entries that look close to the rejected ones. */
START_TEST(test_conninfo_accepted)
{
	static const char *const ok[] = {
		"host=x sslmode=disable gssencmode=disable",
		"host=x sslmode=require",
		"host=x sslmode=verify-ca",
		"postgresql://u@x:5433/db?sslmode=verify-full",
		"",
	};
	char text[512], err[1024], *path;

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct config *cfg;

		snprintf(text, sizeof(text), "databases = ( { name = \"a\"; conninfo = \"%s\"; } );",
			 ok[i]);
		cfg = load_text(text, &path, err, sizeof(err));
		ck_assert_msg(cfg != NULL, "%s: %s", ok[i], err);
		ck_assert_str_eq(cfg->dbs[0].conninfo, ok[i]);
		config_free(cfg);
		free(path);
	}
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Formatting and lookups */

START_TEST(test_format_truncates)
{
	struct config *cfg = config_defaults();
	char buf[6];

	memset(buf, 'x', sizeof(buf));
	config_format_value(cfg, param("server_reset_query"), buf, sizeof(buf));
	ck_assert_str_eq(buf, "DISCA");
	config_format_value(cfg, param("listen_addr"), buf, sizeof(buf));
	ck_assert_str_eq(buf, "127.0");
	config_format_value(cfg, param("listen_port"), buf, 0);
	ck_assert_str_eq(buf, "127.0");
	config_free(cfg);
}
END_TEST

START_TEST(test_format_strlist_many)
{
	char err[1024], *path;
	struct config *cfg = load_text("track_extra_parameters = [\"a\", \"bb\", \"ccc\"];",
				       &path, err, sizeof(err));
	char buf[5];

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(value(cfg, "track_extra_parameters"), "a,bb,ccc");
	config_format_value(cfg, param("track_extra_parameters"), buf, sizeof(buf));
	ck_assert_str_eq(buf, "a,bb");
	config_free(cfg);
	free(path);
}
END_TEST

START_TEST(test_find_db_wildcard)
{
	char err[1024], *path;
	struct config *cfg = config_load(DATA "good.conf", err, sizeof(err));
	const struct config_db *db;

	ck_assert_msg(cfg != NULL, "%s", err);
	db = config_find_db(cfg, "app");
	ck_assert_ptr_eq(db, &cfg->dbs[0]);
	ck_assert_ptr_eq(config_find_db(cfg, "reports"), &cfg->dbs[1]);
	/* Names are case-sensitive, as in PostgreSQL: "App" falls to "*". */
	ck_assert_ptr_eq(config_find_db(cfg, "App"), &cfg->dbs[2]);
	ck_assert_ptr_eq(config_find_db(cfg, "anything"), &cfg->dbs[2]);
	config_free(cfg);

	/* The wildcard is a fallback wherever it sits in the list. */
	cfg = load_text("databases = ( { name = \"*\"; conninfo = \"host=a\"; },\n"
			"  { name = \"app\"; conninfo = \"host=b\"; } );", &path, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(config_find_db(cfg, "app")->conninfo, "host=b");
	ck_assert_str_eq(config_find_db(cfg, "other")->conninfo, "host=a");
	config_free(cfg);
	free(path);

	cfg = load_text("databases = ( { name = \"app\"; conninfo = \"host=b\"; } );", &path,
			err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_ptr_nonnull(config_find_db(cfg, "app"));
	ck_assert_ptr_null(config_find_db(cfg, "other"));
	config_free(cfg);
	free(path);

	cfg = config_defaults();
	ck_assert_ptr_null(config_find_db(cfg, "app"));
	config_free(cfg);
}
END_TEST

START_TEST(test_find_user)
{
	char err[1024];
	struct config *cfg = config_load(DATA "good.conf", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_ptr_eq(config_find_user(cfg, "batch"), &cfg->users[0]);
	ck_assert_ptr_eq(config_find_user(cfg, "web"), &cfg->users[1]);
	ck_assert_ptr_null(config_find_user(cfg, "Web"));
	ck_assert_ptr_null(config_find_user(cfg, "nobody"));
	config_free(cfg);
}
END_TEST

START_TEST(test_pool_mode_name)
{
	ck_assert_str_eq(config_pool_mode_name(POOL_MODE_SESSION), "session");
	ck_assert_str_eq(config_pool_mode_name(POOL_MODE_TRANSACTION), "transaction");
	ck_assert_str_eq(config_pool_mode_name(POOL_MODE_STATEMENT), "statement");
	ck_assert_str_eq(config_pool_mode_name(-1), "unknown");
	ck_assert_str_eq(config_pool_mode_name(3), "unknown");
}
END_TEST

START_TEST(test_strlist_has)
{
	struct config *cfg = config_defaults();
	struct config_strlist empty = { NULL, 0 };

	ck_assert(config_strlist_has(&cfg->track_extra_parameters, "IntervalStyle"));
	ck_assert(config_strlist_has(&cfg->track_extra_parameters, "intervalstyle"));
	ck_assert(!config_strlist_has(&cfg->track_extra_parameters, "IntervalStyleX"));
	ck_assert(!config_strlist_has(&cfg->ignore_startup_parameters, "options"));
	ck_assert(!config_strlist_has(&empty, "x"));
	ck_assert(!config_strlist_has(NULL, "x"));
	config_free(cfg);
	config_free(NULL);
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("table");

	tcase_add_test(tc, test_table_sorted_and_complete);
	tcase_add_test(tc, test_defaults_values);
	tcase_add_test(tc, test_defaults_round_trip);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_test(tc, test_empty_file_is_defaults);
	tcase_add_test(tc, test_good_file);
	tcase_add_test(tc, test_include_relative_to_file);
	tcase_add_test(tc, test_etc_sluice_conf);
	tcase_add_test(tc, test_doc_covers_every_setting);
	tcase_add_loop_test(tc, test_bad_file, 0, (int)ARRAY_SIZE(bad_files));
	tcase_add_test(tc, test_bad_multi_lists_all);
	tcase_add_test(tc, test_bad_include);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_small_error_buffer);
	suite_add_tcase(s, tc);

	tc = tcase_create("values");
	tcase_add_loop_test(tc, test_accepted_value, 0,
			    (int)ARRAY_SIZE(accepted));
	tcase_add_loop_test(tc, test_rejected_value, 0,
			    (int)ARRAY_SIZE(rejected));
	tcase_add_test(tc, test_conninfo_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("lookups");
	tcase_add_test(tc, test_format_truncates);
	tcase_add_test(tc, test_format_strlist_many);
	tcase_add_test(tc, test_find_db_wildcard);
	tcase_add_test(tc, test_find_user);
	tcase_add_test(tc, test_pool_mode_name);
	tcase_add_test(tc, test_strlist_has);
	suite_add_tcase(s, tc);
	return s;
}
