/*
 * admin.c - the admin console's login, protocol and commands.
 *
 * Access: users in admin_users may run everything, users in stats_users
 * only SHOW (and harmless driver SETs); with auth_type any everyone is a
 * stats user; over the unix socket a client running as the same OS user as
 * Sluice is an admin without a password.  Anyone else is refused before any
 * password is asked.
 *
 * Protocol: simple queries (several commands separated by ';' allowed) and
 * the extended protocol that psycopg 3 and JDBC use: Parse keeps the text,
 * Describe of a portal runs a SHOW and keeps its result for the Execute
 * that follows, Sync ends the exchange; after an error, messages are
 * skipped until Sync, as PostgreSQL does.  There are no parameters.
 *
 * Commands that wait (PAUSE, WAIT_CLOSE) pause reading the client and are
 * finished by admin_janitor() once their condition holds; nothing blocks.
 */
#include "sluice/admin.h"
#include "sluice/auth.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/proto.h"
#include "sluice/server.h"
#include "sluice/sluice.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/* Largest console message accepted (a query text). */
#define ADMIN_MAX_MESSAGE (64u * 1024)
/* Named statements and portals a console client may keep. */
#define ADMIN_MAX_NAMED 64

enum admin_wait {
	WAIT_NONE = 0,
	WAIT_PAUSE,       /* PAUSE [db]: servers of the database(s) gone */
	WAIT_CLOSE,       /* WAIT_CLOSE [db]: no server with close_needed left */
};

struct named_sql {
	char *name;
	char *sql;
};

struct admin_state {
	bool can_control;             /* admin_users: every command */
	bool ext_error;               /* extended exchange failed: skip until Sync */
	struct named_sql stmts[ADMIN_MAX_NAMED];
	struct named_sql portals[ADMIN_MAX_NAMED];
	int n_stmts, n_portals;
	/* Result of a described portal, sent by its Execute. */
	char *described_portal;
	struct admin_reply described;
	bool have_described;
	/* A command waiting for its condition. */
	enum admin_wait wait;
	char *wait_db;                /* NULL = every database */
	bool wait_simple;             /* simple query: ReadyForQuery after it */
	char *wait_rest;              /* statements of the same query still to run */
};

bool admin_is_console_db(const char *dbname)
{
	return strcmp(dbname, "sluice") == 0 || strcmp(dbname, "pgbouncer") == 0;
}

/* ---- login ------------------------------------------------------------------- */

static bool same_os_user(const struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return c->is_unix && getsockopt(c->conn.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
	       cred.uid == geteuid();
}

bool admin_client_startup(struct client *c, bool *trusted)
{
	const struct config *cfg = c->ctx->cfg;
	bool admin = config_strlist_has(&cfg->admin_users, c->username);
	bool stats = config_strlist_has(&cfg->stats_users, c->username);

	*trusted = same_os_user(c);
	if (*trusted)
		admin = true;
	else if (cfg->auth_type == AUTH_TYPE_ANY)
		stats = true;
	if (!admin && !stats) {
		client_fail(c, "28000", "not allowed: user \"%s\" is in neither admin_users nor "
					"stats_users", c->username);
		return false;
	}
	c->admin = xcalloc(1, sizeof(*c->admin));
	c->admin->can_control = admin;
	admin_reply_init(&c->admin->described);
	pool_client_attach(c, pool_get_admin(c->ctx, c->dbname, c->username));
	return true;
}

void admin_client_login(struct client *c)
{
	static const char *const params[][2] = {
		{"server_version", SLUICE_VERSION "/sluice"}, {"client_encoding", "UTF8"},
		{"server_encoding", "UTF8"}, {"DateStyle", "ISO"}, {"TimeZone", "GMT"},
		{"standard_conforming_strings", "on"}, {"integer_datetimes", "on"},
		{"is_superuser", "on"},
	};
	struct pktbuf *out = &c->conn.out;
	uint32_t key[2];

	if (getrandom(key, sizeof(key), 0) != sizeof(key))
		key[0] = key[1] = 0;
	pktbuf_write_AuthenticationOk(out);
	for (size_t i = 0; i < ARRAY_SIZE(params); i++)
		pktbuf_write_ParameterStatus(out, params[i][0], params[i][1]);
	/* Not registered: a cancel request for the console has nothing to stop. */
	pktbuf_write_BackendKeyData(out, key[0], key[1]);
	pktbuf_write_ReadyForQuery(out, 'I');
	pool_client_set_state(c, CL_ACTIVE);
	conn_send_out(&c->conn);
	if (c->ctx->cfg->log_connections)
		log_info("C-%llu: admin console login: user=%s (%s)", (unsigned long long)c->id,
			 c->username, c->admin->can_control ? "admin" : "stats only");
}

static void free_named(struct named_sql *v, int *n)
{
	for (int i = 0; i < *n; i++) {
		free(v[i].name);
		free(v[i].sql);
	}
	*n = 0;
}

void admin_client_free(struct client *c)
{
	struct admin_state *a = c->admin;
	if (!a)
		return;
	free_named(a->stmts, &a->n_stmts);
	free_named(a->portals, &a->n_portals);
	free(a->described_portal);
	admin_reply_free(&a->described);
	free(a->wait_db);
	free(a->wait_rest);
	free(a);
	c->admin = NULL;
}

/* ---- replies ------------------------------------------------------------------ */

static void write_error(struct client *c, const char *sqlstate, const char *msg,
			const char *detail)
{
	pktbuf_write_Report(&c->conn.out, PQ_MSG_ERROR_RESPONSE, "ERROR", sqlstate, msg, detail);
}

static void write_tag(struct client *c, const char *tag)
{
	pktbuf_start(&c->conn.out, PQ_MSG_COMMAND_COMPLETE);
	pktbuf_put_string(&c->conn.out, tag);
	pktbuf_finish(&c->conn.out);
}

static void write_simple(struct client *c, uint8_t type)
{
	pktbuf_start(&c->conn.out, type);
	pktbuf_finish(&c->conn.out);
}

static void append(struct pktbuf *dst, const struct pktbuf *src)
{
	if (src->len)
		pktbuf_put_bytes(dst, src->data, src->len);
}

/* ---- command parsing -------------------------------------------------------------- */

/*
 * A command is words: bare words ([A-Za-z0-9_.-]), "quoted identifiers"
 * ("" escapes a quote) and 'strings' ('' escapes a quote).  SET's value may
 * also be any text up to the end.
 */
#define MAX_WORDS 8
#define MAX_WORD 256

struct command {
	char words[MAX_WORDS][MAX_WORD];
	int n;
	char set_value[MAX_WORD];   /* SET key = value: the value, unquoted */
	bool is_set;
};

/* One word at *p; returns false on a syntax error. */
static bool next_word(const char **p, char *out)
{
	const char *s = *p;
	size_t n = 0;

	if (*s == '"' || *s == '\'') {
		char q = *s++;
		for (;;) {
			if (!*s)
				return false;
			if (*s == q) {
				if (s[1] != q)
					break;
				s++;
			}
			if (n + 1 >= MAX_WORD)
				return false;
			out[n++] = *s++;
		}
		s++;
	} else {
		while (*s && (isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-')) {
			if (n + 1 >= MAX_WORD)
				return false;
			out[n++] = *s++;
		}
		if (n == 0)
			return false;
	}
	out[n] = 0;
	*p = s;
	return true;
}

static const char *skip_ws(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

static bool parse_set(const char *s, struct command *cmd)
{
	s = skip_ws(s);
	if (!next_word(&s, cmd->words[1]))
		return false;
	s = skip_ws(s);
	if (*s == '=')
		s++;
	else if (!strncasecmp(s, "to", 2) && isspace((unsigned char)s[2]))
		s += 2;
	else
		return false;
	s = skip_ws(s);
	if (*s == '\'' || *s == '"') {
		if (!next_word(&s, cmd->set_value))
			return false;
		s = skip_ws(s);
		if (*s)
			return false;
	} else {
		size_t n = strlen(s);
		while (n && isspace((unsigned char)s[n - 1]))
			n--;
		if (n == 0 || n >= MAX_WORD)
			return false;
		memcpy(cmd->set_value, s, n);
		cmd->set_value[n] = 0;
	}
	cmd->n = 2;
	cmd->is_set = true;
	return true;
}

/* Parse one statement (no ';').  Returns false on a syntax error. */
static bool parse_command(const char *sql, struct command *cmd)
{
	const char *s = skip_ws(sql);

	memset(cmd, 0, sizeof(*cmd));
	if (!strncasecmp(s, "set", 3) && isspace((unsigned char)s[3])) {
		snprintf(cmd->words[0], MAX_WORD, "set");
		return parse_set(s + 3, cmd);
	}
	while (*(s = skip_ws(s))) {
		if (cmd->n >= MAX_WORDS || !next_word(&s, cmd->words[cmd->n]))
			return false;
		cmd->n++;
	}
	return true;
}

/*
 * Split a query at ';' outside quotes.  Returns the first statement (in
 * buf) and advances *rest past it; false when nothing is left.
 */
static bool next_statement(const char **rest, char *buf, size_t len)
{
	const char *s = *rest, *start;
	char q = 0;

	while (*s && (isspace((unsigned char)*s) || *s == ';'))
		s++;
	if (!*s)
		return false;
	start = s;
	for (; *s; s++) {
		if (q) {
			if (*s == q)
				q = 0;
		} else if (*s == '"' || *s == '\'') {
			q = *s;
		} else if (*s == ';') {
			break;
		}
	}
	size_t n = (size_t)(s - start);
	if (n >= len)
		n = len - 1;
	memcpy(buf, start, n);
	buf[n] = 0;
	*rest = *s ? s + 1 : s;
	return true;
}

/* ---- commands ------------------------------------------------------------------------ */

/* How a command went. */
enum run_result {
	RUN_DONE,     /* reply complete */
	RUN_ERROR,    /* an ErrorResponse was written */
	RUN_WAIT,     /* finishes later (admin_janitor) */
	RUN_CLOSED,   /* the connection is going away (SHUTDOWN) */
};

/* Settings drivers send that a console accepts and ignores (PgBouncer's list,
 * plus application_name, which JDBC sets). */
static const char *const ignored_sets[] = {
	"client_encoding", "default_transaction_isolation", "standard_conforming_strings",
	"datestyle", "timezone", "extra_float_digits", "application_name",
};

static enum run_result fail(struct client *c, const char *sqlstate, const char *msg)
{
	write_error(c, sqlstate, msg, NULL);
	return RUN_ERROR;
}

static enum run_result invalid(struct client *c, const char *sql)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "invalid command '%.500s', use SHOW HELP;", sql);
	write_error(c, "42601", msg, admin_help_text);
	return RUN_ERROR;
}

/* The database argument of a control command, checked; NULL = all. */
static bool db_argument(struct client *c, const struct command *cmd, bool required,
			const char **db, enum run_result *res)
{
	char msg[700];

	*db = cmd->n > 1 ? cmd->words[1] : NULL;
	if (!*db && required) {
		*res = fail(c, "42601", "a database is required");
		return false;
	}
	if (!*db)
		return true;
	if (admin_is_console_db(*db)) {
		snprintf(msg, sizeof(msg), "cannot %s the admin database: %s", cmd->words[0], *db);
		*res = fail(c, "55000", msg);
		return false;
	}
	if (!config_find_db(c->ctx->cfg, *db)) {
		snprintf(msg, sizeof(msg), "no such database: %s", *db);
		*res = fail(c, "3D000", msg);
		return false;
	}
	return true;
}

static bool wait_done(const struct sluice *ctx, enum admin_wait w, const char *db)
{
	switch (w) {
	case WAIT_PAUSE:
		/* Done when the servers are gone, or when a RESUME (from another
		 * session or SIGUSR2) made the wait pointless. */
		return pool_servers_of(ctx, db, false) == 0 ||
		       !(db ? sluice_db_paused(ctx, db) : ctx->pause_all);
	case WAIT_CLOSE:
		return pool_servers_of(ctx, db, true) == 0;
	default:
		return true;
	}
}

static enum run_result start_wait(struct client *c, enum admin_wait w, const char *db)
{
	if (wait_done(c->ctx, w, db))
		return RUN_DONE;
	c->admin->wait = w;
	free(c->admin->wait_db);
	c->admin->wait_db = db ? xstrdup(db) : NULL;
	return RUN_WAIT;
}

static enum run_result run_set(struct client *c, const struct command *cmd, char *tag, size_t taglen)
{
	char err[512];

	for (size_t i = 0; i < ARRAY_SIZE(ignored_sets); i++)
		if (!strcasecmp(cmd->words[1], ignored_sets[i])) {
			pktbuf_write_Report(&c->conn.out, PQ_MSG_NOTICE_RESPONSE, "NOTICE", "00000",
					    "SET ignored", NULL);
			snprintf(tag, taglen, "SET");
			return RUN_DONE;
		}
	if (!c->admin->can_control)
		return fail(c, "42501", "admin access needed");
	if (sluice_set(c->ctx, cmd->words[1], cmd->set_value, err, sizeof(err)) < 0)
		return fail(c, config_find_param(cmd->words[1]) ? "22023" : "42704", err);
	snprintf(tag, taglen, "SET %.60s=%.60s", cmd->words[1], cmd->set_value);
	return RUN_DONE;
}

static enum run_result run_control(struct client *c, const struct command *cmd, const char *verb,
				   char *tag, size_t taglen)
{
	struct sluice *ctx = c->ctx;
	enum run_result res = RUN_DONE;
	const char *db;
	char msg[400], err[8192];

	snprintf(tag, taglen, "%s", verb);
	if (!strcmp(verb, "RELOAD")) {
		if (cmd->n != 1)
			return invalid(c, "RELOAD with an argument");
		if (sluice_reload(ctx, err, sizeof(err)) < 0)
			return fail(c, "F0000", "RELOAD failed, see the log for details");
		return RUN_DONE;
	}
	if (!strcmp(verb, "SHUTDOWN")) {
		if (cmd->n == 1) {
			sluice_shutdown(ctx, "SHUTDOWN from the admin console");
			return RUN_CLOSED;
		}
		if (cmd->n == 2 && !strcasecmp(cmd->words[1], "wait_for_servers"))
			sluice_shutdown_wait(ctx, SHUTDOWN_WAIT_SERVERS);
		else if (cmd->n == 2 && !strcasecmp(cmd->words[1], "wait_for_clients"))
			sluice_shutdown_wait(ctx, SHUTDOWN_WAIT_CLIENTS);
		else
			return fail(c, "42601", "SHUTDOWN takes WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS");
		return RUN_DONE;
	}
	if (!strcmp(verb, "KILL_CLIENT")) {
		char *end;
		errno = 0;
		unsigned long long id = cmd->n == 2 ? strtoull(cmd->words[1], &end, 10) : 0;
		if (cmd->n != 2 || errno || *end || !cmd->words[1][0])
			return fail(c, "22023", "KILL_CLIENT needs a client id (SHOW CLIENTS, column id)");
		struct client *victim = pool_find_client(ctx, id);
		if (!victim)
			return fail(c, "42704", "client not found");
		if (victim == c)
			return fail(c, "55000", "cannot kill the connection running the command");
		client_fail(victim, "57P01", "terminating connection due to administrator command "
					     "(KILL_CLIENT)");
		return RUN_DONE;
	}
	bool required = !strcmp(verb, "DISABLE") || !strcmp(verb, "ENABLE");
	if (cmd->n > 2)
		return fail(c, "42601", "too many arguments");
	if (!db_argument(c, cmd, required, &db, &res))
		return res;
	if (!strcmp(verb, "PAUSE")) {
		if (db ? sluice_db_paused(ctx, db) : ctx->pause_all)
			return fail(c, "55000", "already paused");
		pool_pause(ctx, db);
		return start_wait(c, WAIT_PAUSE, db);
	}
	if (!strcmp(verb, "RESUME")) {
		if (ctx->shutdown_mode != SHUTDOWN_NONE)
			return fail(c, "55000", "the pooler is shutting down");
		if (db && !sluice_db_paused(ctx, db)) {
			snprintf(msg, sizeof(msg), "database %s is not paused", db);
			return fail(c, "55000", msg);
		}
		if (db && ctx->pause_all)
			return fail(c, "55000", "every database is paused: RESUME without a database");
		pool_resume(ctx, db);
		return RUN_DONE;
	}
	if (!strcmp(verb, "DISABLE") || !strcmp(verb, "ENABLE")) {
		sluice_db_flags(ctx, db, true)->disabled = !strcmp(verb, "DISABLE");
		return RUN_DONE;
	}
	if (!strcmp(verb, "RECONNECT")) {
		pool_reconnect_db(ctx, db);
		return RUN_DONE;
	}
	if (!strcmp(verb, "KILL")) {
		pool_kill(ctx, db);
		return RUN_DONE;
	}
	if (!strcmp(verb, "WAIT_CLOSE"))
		return start_wait(c, WAIT_CLOSE, db);
	return invalid(c, verb);
}

static const char *const control_verbs[] = {
	"PAUSE", "RESUME", "DISABLE", "ENABLE", "RECONNECT", "KILL", "KILL_CLIENT",
	"WAIT_CLOSE", "RELOAD", "SHUTDOWN",
};

/*
 * Run one statement.  For SHOW, r receives the result set (the caller sends
 * it); other commands write their replies to the client directly and put
 * their tag in r->tag.
 */
static enum run_result run_statement(struct client *c, const char *sql, struct admin_reply *r)
{
	struct command *cmd = xmalloc(sizeof(*cmd));
	enum run_result res;

	if (!parse_command(sql, cmd) || cmd->n == 0) {
		res = invalid(c, sql);
		goto out;
	}
	if (cmd->is_set) {
		res = run_set(c, cmd, r->tag, sizeof(r->tag));
		goto out;
	}
	if (!strcasecmp(cmd->words[0], "show")) {
		if (cmd->n != 2 || !admin_show(c->ctx, cmd->words[1], r))
			res = invalid(c, sql);
		else
			res = RUN_DONE;
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(control_verbs); i++) {
		if (strcasecmp(cmd->words[0], control_verbs[i]) != 0)
			continue;
		if (!c->admin->can_control) {
			res = fail(c, "42501", "admin access needed");
			goto out;
		}
		log_info("C-%llu: admin command: %s", (unsigned long long)c->id, sql);
		res = run_control(c, cmd, control_verbs[i], r->tag, sizeof(r->tag));
		goto out;
	}
	res = invalid(c, sql);
out:
	free(cmd);
	return res;
}

/* Send a finished statement's reply: notices, rows (with or without their
 * description), tag. */
static void send_reply(struct client *c, const struct admin_reply *r, bool with_desc)
{
	struct pktbuf *out = &c->conn.out;
	append(out, &r->notices);
	if (with_desc)
		append(out, &r->desc);
	append(out, &r->rows);
	if (r->tag[0])
		write_tag(c, r->tag);
}

/* ---- simple query ---------------------------------------------------------------------- */

/* Run the statements of a simple query from *rest on.  Returns false when
 * it stopped to wait (the rest is kept) or the connection is closing. */
static bool run_simple(struct client *c, const char *text, bool continuing)
{
	const char *rest = text;
	char *stmt = xmalloc(ADMIN_MAX_MESSAGE + 1);
	bool any = continuing;   /* the rest of a query that had statements */

	while (next_statement(&rest, stmt, ADMIN_MAX_MESSAGE + 1)) {
		struct admin_reply r;
		enum run_result res;
		any = true;
		admin_reply_init(&r);
		res = run_statement(c, stmt, &r);
		if (res == RUN_DONE)
			send_reply(c, &r, true);
		admin_reply_free(&r);
		if (res == RUN_ERROR)
			break;
		if (res == RUN_CLOSED) {
			free(stmt);
			return false;
		}
		if (res == RUN_WAIT) {
			c->admin->wait_simple = true;
			c->admin->wait_rest = xstrdup(rest);
			free(stmt);
			return false;
		}
	}
	free(stmt);
	if (!any)
		write_simple(c, PQ_MSG_EMPTY_QUERY);
	pktbuf_write_ReadyForQuery(&c->conn.out, 'I');
	return true;
}

/* ---- extended protocol ----------------------------------------------------------------- */

static struct named_sql *find_named(struct named_sql *v, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

/* Store name -> sql (replacing; the unnamed one may always be replaced). */
static bool put_named(struct named_sql *v, int *n, const char *name, const char *sql)
{
	struct named_sql *e = find_named(v, *n, name);
	if (!e) {
		if (*n >= ADMIN_MAX_NAMED)
			return false;
		e = &v[(*n)++];
		e->name = xstrdup(name);
		e->sql = NULL;
	}
	free(e->sql);
	e->sql = xstrdup(sql);
	return true;
}

static void drop_named(struct named_sql *v, int *n, const char *name)
{
	struct named_sql *e = find_named(v, *n, name);
	if (!e)
		return;
	free(e->name);
	free(e->sql);
	*e = v[--(*n)];
}

/* A NUL-terminated string at *off in body; NULL when malformed. */
static const char *get_string(const uint8_t *body, uint32_t len, uint32_t *off)
{
	if (*off >= len)
		return NULL;
	const uint8_t *end = memchr(body + *off, 0, len - *off);
	if (!end)
		return NULL;
	const char *s = (const char *)body + *off;
	*off = (uint32_t)(end - body) + 1;
	return s;
}

static void forget_described(struct admin_state *a)
{
	free(a->described_portal);
	a->described_portal = NULL;
	admin_reply_free(&a->described);
	admin_reply_init(&a->described);
	a->have_described = false;
}

/* Is this statement a SHOW (safe to run when described)? */
static bool is_show(const char *sql)
{
	const char *s = skip_ws(sql);
	return !strncasecmp(s, "show", 4) && (isspace((unsigned char)s[4]) || !s[4]);
}

/* The one statement of an extended-protocol query text. */
static bool single_statement(const char *sql, char *buf, size_t len)
{
	const char *rest = sql;
	if (!next_statement(&rest, buf, len)) {
		buf[0] = 0;
		return true;
	}
	char extra[8];
	return !next_statement(&rest, extra, sizeof(extra));
}

static enum run_result ext_execute(struct client *c, const char *portal)
{
	struct admin_state *a = c->admin;
	struct named_sql *p = find_named(a->portals, a->n_portals, portal);
	struct admin_reply r;
	enum run_result res;
	char *stmt;

	if (!p)
		return fail(c, "34000", "portal does not exist");
	if (a->have_described && a->described_portal && !strcmp(a->described_portal, portal)) {
		send_reply(c, &a->described, false);
		forget_described(a);
		return RUN_DONE;
	}
	stmt = xmalloc(ADMIN_MAX_MESSAGE + 1);
	if (!single_statement(p->sql, stmt, ADMIN_MAX_MESSAGE + 1)) {
		free(stmt);
		return fail(c, "42601", "cannot insert multiple commands into a prepared statement");
	}
	if (!stmt[0]) {
		free(stmt);
		write_simple(c, PQ_MSG_EMPTY_QUERY);
		return RUN_DONE;
	}
	admin_reply_init(&r);
	res = run_statement(c, stmt, &r);
	if (res == RUN_DONE)
		send_reply(c, &r, false);
	admin_reply_free(&r);
	free(stmt);
	return res;
}

/* Describe: a SHOW runs now and its result waits for the Execute. */
static enum run_result ext_describe(struct client *c, char kind, const char *name)
{
	struct admin_state *a = c->admin;
	struct named_sql *e = kind == 'S' ? find_named(a->stmts, a->n_stmts, name)
					  : find_named(a->portals, a->n_portals, name);
	char *stmt;
	enum run_result res = RUN_DONE;

	if (!e)
		return fail(c, kind == 'S' ? "26000" : "34000",
			    kind == 'S' ? "prepared statement does not exist" : "portal does not exist");
	if (kind == 'S') {
		pktbuf_start(&c->conn.out, 't');    /* ParameterDescription: none */
		pktbuf_put_int16(&c->conn.out, 0);
		pktbuf_finish(&c->conn.out);
	}
	stmt = xmalloc(ADMIN_MAX_MESSAGE + 1);
	if (!single_statement(e->sql, stmt, ADMIN_MAX_MESSAGE + 1) || !is_show(stmt)) {
		write_simple(c, 'n');   /* NoData */
		free(stmt);
		return RUN_DONE;
	}
	forget_described(a);
	res = run_statement(c, stmt, &a->described);
	free(stmt);
	if (res != RUN_DONE) {
		forget_described(a);
		return res;
	}
	if (a->described.desc.len)
		append(&c->conn.out, &a->described.desc);
	else
		write_simple(c, 'n');
	if (kind == 'P') {
		a->described_portal = xstrdup(name);
		a->have_described = true;
	} else {
		forget_described(a);
	}
	return RUN_DONE;
}

/* One extended-protocol message (not Sync). */
static enum run_result ext_message(struct client *c, uint8_t type, const uint8_t *body,
				   uint32_t len)
{
	struct admin_state *a = c->admin;
	uint32_t off = 0;
	const char *name, *sql;

	switch (type) {
	case PQ_MSG_PARSE:
		if (!(name = get_string(body, len, &off)) || !(sql = get_string(body, len, &off)))
			return fail(c, "08P01", "malformed Parse message");
		if (len - off >= 2 && proto_get16(body + off) != 0)
			return fail(c, "42P02", "the admin console takes no parameters");
		if (!put_named(a->stmts, &a->n_stmts, name, sql))
			return fail(c, "53000", "too many prepared statements on the admin console");
		write_simple(c, '1');   /* ParseComplete */
		return RUN_DONE;
	case PQ_MSG_BIND: {
		const char *portal = get_string(body, len, &off);
		const char *stmt = portal ? get_string(body, len, &off) : NULL;
		struct named_sql *e = stmt ? find_named(a->stmts, a->n_stmts, stmt) : NULL;
		if (!stmt)
			return fail(c, "08P01", "malformed Bind message");
		if (!e)
			return fail(c, "26000", "prepared statement does not exist");
		if (!put_named(a->portals, &a->n_portals, portal, e->sql))
			return fail(c, "53000", "too many portals on the admin console");
		if (a->described_portal && !strcmp(a->described_portal, portal))
			forget_described(a);
		write_simple(c, '2');   /* BindComplete */
		return RUN_DONE;
	}
	case PQ_MSG_DESCRIBE:
		if (len < 2 || !(name = get_string(body, len, &(uint32_t){1})) ||
		    (body[0] != 'S' && body[0] != 'P'))
			return fail(c, "08P01", "malformed Describe message");
		return ext_describe(c, (char)body[0], name);
	case PQ_MSG_EXECUTE:
		if (!(name = get_string(body, len, &off)))
			return fail(c, "08P01", "malformed Execute message");
		return ext_execute(c, name);
	case PQ_MSG_CLOSE:
		if (len < 2 || !(name = get_string(body, len, &(uint32_t){1})))
			return fail(c, "08P01", "malformed Close message");
		if (body[0] == 'S')
			drop_named(a->stmts, &a->n_stmts, name);
		else
			drop_named(a->portals, &a->n_portals, name);
		write_simple(c, '3');   /* CloseComplete */
		return RUN_DONE;
	case PQ_MSG_FLUSH:
		return RUN_DONE;
	default:
		/* Not of the extended protocol: a stray password ends the session,
		 * as in PostgreSQL; the client of anything else would wait for an
		 * answer no Sync follows. */
		client_fail(c, "08P01", "unexpected message type '%c' on the admin console",
			    type >= 0x20 && type < 0x7f ? type : '?');
		return RUN_CLOSED;
	}
}

/* ---- dispatch ------------------------------------------------------------------------- */

enum pkt_action admin_packet(struct client *c, uint8_t type, uint32_t len,
			     const uint8_t *body, uint32_t avail)
{
	struct admin_state *a = c->admin;
	const char *why = proto_check_header(type, len + 4, true);

	if (why || len > ADMIN_MAX_MESSAGE) {
		client_fail(c, "08P01", "invalid message for the admin console: %s",
			    why ? why : "message too long");
		return PKT_CLOSED;
	}
	if (type == PQ_MSG_TERMINATE) {
		client_close(c, "client close request");
		return PKT_CLOSED;
	}
	if (avail < len)
		return PKT_NEED_BODY;
	c->last_activity_ms = sluice_now(c->ctx);

	enum run_result res = RUN_DONE;
	switch (type) {
	case PQ_MSG_QUERY: {
		char *sql = xmalloc(len + 1);
		memcpy(sql, body, len);
		sql[len] = 0;   /* the message's own NUL ends it earlier */
		a->ext_error = false;
		if (!run_simple(c, sql, false))
			res = a->wait ? RUN_WAIT : RUN_CLOSED;
		free(sql);
		break;
	}
	case PQ_MSG_SYNC:
		a->ext_error = false;
		pktbuf_write_ReadyForQuery(&c->conn.out, 'I');
		break;
	case PQ_MSG_COPY_DATA:
	case PQ_MSG_COPY_DONE:
	case PQ_MSG_COPY_FAIL:
		/* Ignored outside COPY, as PostgreSQL does (a client may still
		 * be sending the rest of a COPY that failed). */
		return PKT_SKIP;
	case PQ_MSG_FUNCTION_CALL:
		/* A simple-protocol exchange: its error ends with ReadyForQuery. */
		write_error(c, "0A000", "function calls are not supported on the admin console", NULL);
		pktbuf_write_ReadyForQuery(&c->conn.out, 'I');
		break;
	default:
		if (a->ext_error)
			return PKT_SKIP;
		res = ext_message(c, type, body, len);
		if (res == RUN_ERROR)
			a->ext_error = true;
		else if (res == RUN_WAIT)
			a->wait_simple = false;
		break;
	}
	if (res == RUN_CLOSED)
		return c->conn.closing ? PKT_CLOSED : PKT_SKIP;
	conn_send_out(&c->conn);
	if (c->conn.closing)
		return PKT_CLOSED;
	if (res == RUN_WAIT)
		conn_pause(&c->conn);   /* resumed by admin_janitor */
	return PKT_SKIP;
}

/* A waiting command finished: its tag, the statements after it, resume. */
static void finish_wait(struct client *c)
{
	struct admin_state *a = c->admin;
	const char *tag = a->wait == WAIT_PAUSE ? "PAUSE" : "WAIT_CLOSE";
	char *rest = a->wait_rest;

	a->wait = WAIT_NONE;
	a->wait_rest = NULL;
	free(a->wait_db);
	a->wait_db = NULL;
	write_tag(c, tag);
	if (a->wait_simple && !run_simple(c, rest ? rest : "", true)) {
		free(rest);
		conn_send_out(&c->conn);
		return;   /* waits again, or closing */
	}
	free(rest);
	conn_send_out(&c->conn);
	conn_resume(&c->conn);
}

void admin_janitor(struct sluice *ctx)
{
	struct list *it, *tmp;

	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		struct list *ci, *ctmp;
		if (!p->admin)
			continue;
		statlist_for_each_safe(ci, ctmp, &p->cl_active) {
			struct client *c = container_of(ci, struct client, node);
			if (c->admin && c->admin->wait && !c->conn.closing &&
			    wait_done(ctx, c->admin->wait, c->admin->wait_db))
				finish_wait(c);
		}
	}
}
