/*
 * pool.c - pools, their state lists, linking and the server hand-off.
 *
 * Herding clients and servers between lists happens here and nowhere else:
 * pool_client_set_state() and pool_server_set_state() remove an object from
 * the list of its old state and append it to the list of the new one, and
 * pool_link()/pool_unlink() change both sides of a link together.
 *
 *   client wants a server --idle?--> link (LIFO: warmest server first)
 *            |                         |
 *            +--no--> CL_WAITING ---> launch (<= pool_size) ... login done
 *                                      |
 *   server released --> waiting client? --yes--> link, resume the client
 *                              +--no--> SV_IDLE
 */
#include "sluice/pool.h"
#include "sluice/admin.h"
#include "sluice/cancel.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/sluice.h"

#include <stdlib.h>
#include <string.h>

static struct statlist *client_list(struct client *c, enum client_state st)
{
	switch (st) {
	case CL_LOGIN:
		return &c->ctx->login_clients;
	case CL_LOGIN_WAIT:
		return &c->pool->cl_login;
	case CL_ACTIVE:
		return &c->pool->cl_active;
	case CL_WAITING:
		return &c->pool->cl_waiting;
	case CL_CLOSED:
		return NULL;
	}
	log_error("client %llu in bad state %d", (unsigned long long)c->id, (int)st);
	abort();
}

void pool_client_attach(struct client *c, struct pool *p)
{
	pool_client_release(c);
	c->pool = p;
	p->client_refs++;
}

void pool_client_release(struct client *c)
{
	if (!c->pool)
		return;
	c->pool->client_refs--;
	c->pool = NULL;
}

void pool_client_set_state(struct client *c, enum client_state st)
{
	struct statlist *from = client_list(c, c->state);
	struct statlist *to = client_list(c, st);

	if (from)
		statlist_remove(from, &c->node);
	if (st == CL_LOGIN_WAIT)
		c->wait_start_ms = sluice_now(c->ctx);
	if (st == CL_WAITING) {
		c->wait_start_ms = sluice_now(c->ctx);
		if (!c->wait_start_us)
			c->wait_start_us = stats_now_us();
	}
	c->state = st;
	if (to)
		statlist_append(to, &c->node);
}

static struct statlist *server_list(struct server *s, enum server_state st)
{
	struct pool *p = s->pool;
	switch (st) {
	case SV_LOGIN:
		return &p->sv_login;
	case SV_IDLE:
		return &p->sv_idle;
	case SV_ACTIVE:
		return &p->sv_active;
	case SV_USED:
		return &p->sv_used;
	case SV_TESTED:
		return &p->sv_tested;
	case SV_CLOSED:
		return NULL;
	}
	log_error("server %llu in bad state %d", (unsigned long long)s->id, (int)st);
	abort();
}

void pool_server_set_state(struct server *s, enum server_state st)
{
	struct statlist *from = server_list(s, s->state);
	struct statlist *to = server_list(s, st);

	if (from)
		statlist_remove(from, &s->node);
	s->state = st;
	if (to)
		statlist_append(to, &s->node);
}

int pool_parked_servers(const struct pool *p)
{
	const struct list *it;
	int n = 0;
	for (it = p->sv_used.head.next; it != &p->sv_used.head; it = it->next)
		n += container_of(it, struct server, node)->parked;
	return n;
}

int pool_server_count(const struct pool *p)
{
	return statlist_count(&p->sv_login) + statlist_count(&p->sv_idle) +
	       statlist_count(&p->sv_active) + statlist_count(&p->sv_used) +
	       statlist_count(&p->sv_tested);
}

/* ---- pool registry ---------------------------------------------------- */

static void set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? xstrdup(src) : NULL;
}

void pool_apply_config(struct pool *pool, const struct config_db *db)
{
	const struct config *cfg = pool->ctx->cfg;
	const struct config_user *u = config_find_user(cfg, pool->user);

	/* A changed destination: existing servers go once released (PgBouncer). */
	if (pool->conninfo && strcmp(pool->conninfo, db->conninfo) != 0)
		pool_reconnect(pool);

	set_str(&pool->conninfo, db->conninfo);
	set_str(&pool->password, db->password_env ? getenv(db->password_env) : db->password);
	/* A user's pool_size wins over the database's, then default_pool_size. */
	pool->pool_size = u && u->pool_size >= 0 ? u->pool_size
			  : db->pool_size >= 0   ? db->pool_size
						 : cfg->default_pool_size;
	/* A user's pool_mode wins over the database's, as in PgBouncer. */
	if (u && u->pool_mode >= 0)
		pool->pool_mode = u->pool_mode;
	else if (db->pool_mode >= 0)
		pool->pool_mode = db->pool_mode;
	else
		pool->pool_mode = cfg->pool_mode;
}

static struct pool *pool_alloc(struct sluice *ctx, const char *dbname, const char *user);

static struct pool *pool_find(struct sluice *ctx, const char *dbname, const char *user)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		if (strcmp(p->dbname, dbname) == 0 && strcmp(p->user, user) == 0)
			return p;
	}
	return NULL;
}

struct pool *pool_get(struct sluice *ctx, const char *dbname, const char *user,
		      const struct config_db *db)
{
	struct pool *found = pool_find(ctx, dbname, user);
	if (found)
		return found;

	struct pool *p = pool_alloc(ctx, dbname, user);
	pool_apply_config(p, db);
	p->paused = sluice_db_paused(ctx, dbname);
	p->autodb = strcmp(db->name, "*") == 0;
	log_debug("new pool %s/%s (size %d, %s mode)", dbname, user, p->pool_size,
		  config_pool_mode_name(p->pool_mode));
	return p;
}

struct pool *pool_get_admin(struct sluice *ctx, const char *dbname, const char *user)
{
	struct pool *p = pool_find(ctx, dbname, user);
	if (p)
		return p;
	p = pool_alloc(ctx, dbname, user);
	p->admin = true;
	p->pool_mode = POOL_MODE_STATEMENT;
	return p;
}

static struct pool *pool_alloc(struct sluice *ctx, const char *dbname, const char *user)
{
	struct pool *p = xcalloc(1, sizeof(*p));
	p->ctx = ctx;
	p->dbname = xstrdup(dbname);
	p->user = xstrdup(user);
	statlist_init(&p->cl_login);
	statlist_init(&p->cl_active);
	statlist_init(&p->cl_waiting);
	statlist_init(&p->sv_login);
	statlist_init(&p->sv_idle);
	statlist_init(&p->sv_active);
	statlist_init(&p->sv_used);
	statlist_init(&p->sv_tested);
	statlist_init(&p->auth_waiting);
	p->last_client_ms = sluice_now(ctx);
	list_insert_before(&ctx->pools, &p->node);
	return p;
}

static void pool_free(struct pool *p)
{
	list_del(&p->node);
	free(p->dbname);
		free(p->user);
		free(p->conninfo);
		free(p->password);
		free(p->last_error);
	pool_welcome_reset(p);
	vars_free(&p->welcome);
	free(p);
}

void pool_free_all(struct sluice *ctx)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &ctx->pools) {
		pool_free(container_of(it, struct pool, node));
	}
}

/*
 * autodb_idle_timeout: a pool made for a database name matched only by "*"
 * is closed once it had no clients for that long, and freed when the last
 * of its servers has been freed (closed servers still point at it).
 */
static bool expired(double t, uint64_t since, uint64_t now);

/* No client points at the pool (in whatever state, logging in included)
 * and none waits for it to run an auth_query. */
static bool pool_unused(const struct pool *p)
{
	return p->client_refs == 0 && !statlist_count(&p->auth_waiting);
}

static void autodb_janitor(struct pool *p, const struct config *cfg, uint64_t now)
{
	struct list *it, *tmp;

	if (!pool_unused(p)) {
		p->last_client_ms = now;
		return;
	}
	/* A console pool has no servers and nothing worth keeping once its
	 * clients left (with auth_type any, every user name makes one). */
	if (p->admin) {
		pool_free(p);
		return;
	}
	if (!p->autodb || !expired(cfg->autodb_idle_timeout, p->last_client_ms, now))
		return;
	statlist_for_each_safe(it, tmp, &p->sv_idle) {
		server_close(container_of(it, struct server, node), "autodb_idle_timeout");
	}
	if (pool_server_count(p) == 0 && p->closing_servers == 0) {
		log_debug("closing pool %s/%s (autodb_idle_timeout)", p->dbname, p->user);
		pool_free(p);
	}
}

const char *pool_reset_query(const struct pool *pool)
{
	const struct config *cfg = pool->ctx->cfg;
	const char *q = cfg->server_reset_query;

	if (!q || !q[0])
		return NULL;
	if (pool->pool_mode != POOL_MODE_SESSION && !cfg->server_reset_query_always)
		return NULL;
	return q;
}

/* ---- links ------------------------------------------------------------ */

void pool_link(struct client *c, struct server *s)
{
	c->server = s;
	s->client = c;
	c->conn.peer = &s->conn;
	s->conn.peer = &c->conn;
	s->pending_rfq = 0;
	s->ext_pending = false;
	s->last_used_ms = sluice_now(c->ctx);
	pool_server_set_state(s, SV_ACTIVE);

	struct pool_stats *st = &s->pool->stats;
	uint64_t waited = c->wait_start_us ? stats_now_us() - c->wait_start_us : 0;
	c->wait_start_us = 0;
	st->total.server_assignment_count++;
	st->total.wait_time += waited;
	stats_latency_add(&st->lat, LAT_WAIT, waited);
}

void pool_unlink(struct client *c, struct server *s)
{
	/* Relayed bytes owed to a side that goes away are dropped. */
	conn_drop_pending(&c->conn);
	conn_drop_pending(&s->conn);
	c->server = NULL;
	s->client = NULL;
	s->wake_client = false;
	c->conn.peer = NULL;
	s->conn.peer = NULL;
	conn_update_poll(&c->conn);
	conn_update_poll(&s->conn);
}

/* ---- hand-off ---------------------------------------------------------- */

/*
 * A database that just refused a login is not retried before
 * server_login_retry; clients asking meanwhile get the error at once
 * instead of waiting for nothing (fail fast).
 */
static bool pool_in_retry_backoff(const struct pool *pool)
{
	const struct config *cfg = pool->ctx->cfg;
	if (!pool->last_error || pool_server_count(pool) > 0)
		return false;
	return sluice_now(pool->ctx) - pool->last_error_ms <
	       (uint64_t)(cfg->server_login_retry * 1000.0);
}

/*
 * Clients asking while a permanent login error is fresh get it at once;
 * during an outage they queue (see pool_server_login_failed).
 */
static bool pool_fail_fast(const struct pool *pool)
{
	return pool->last_error_permanent && pool_in_retry_backoff(pool);
}

static void fail_with_last_error(struct client *c)
{
	struct pool *p = c->pool;
	client_fail(c, p->last_sqlstate[0] ? p->last_sqlstate : "08006", "%s",
		    p->last_error ? p->last_error : "server login failed");
}

int pool_servers_where(const struct sluice *ctx, const char *dbname, const char *user)
{
	const struct list *it;
	int n = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		if ((dbname && strcmp(p->dbname, dbname) == 0) || (user && strcmp(p->user, user) == 0))
			n += pool_server_count(p);
	}
	return n;
}

enum launch_verdict {
	LAUNCH_OK,
	LAUNCH_POOL_FULL,   /* pool_size (and reserve) reached */
	LAUNCH_DB_FULL,     /* max_db_connections reached */
	LAUNCH_USER_FULL,   /* max_user_connections reached */
};

/*
 * May the pool open one more server?  Within pool_size, plus
 * reserve_pool_size once a client has waited reserve_pool_timeout, and
 * within max_db_connections / max_user_connections across pools.
 */
static enum launch_verdict launch_verdict(const struct pool *pool)
{
	const struct config *cfg = pool->ctx->cfg;
	int n = pool_server_count(pool), limit = pool->pool_size;
	const struct list *first = statlist_first(&pool->cl_waiting);

	if (limit && first && cfg->reserve_pool_size > 0) {
		const struct client *c = container_of(first, struct client, node);
		if (sluice_now(pool->ctx) - c->wait_start_ms >=
		    (uint64_t)(cfg->reserve_pool_timeout * 1000.0))
			limit += cfg->reserve_pool_size;
	}
	if (limit && n >= limit)
		return LAUNCH_POOL_FULL;
	if (cfg->max_db_connections &&
	    pool_servers_where(pool->ctx, pool->dbname, NULL) >= cfg->max_db_connections)
		return LAUNCH_DB_FULL;
	if (cfg->max_user_connections &&
	    pool_servers_where(pool->ctx, NULL, pool->user) >= cfg->max_user_connections)
		return LAUNCH_USER_FULL;
	return LAUNCH_OK;
}

static bool can_launch(const struct pool *pool)
{
	return launch_verdict(pool) == LAUNCH_OK;
}

/*
 * A database or user limit is reached while this pool has clients waiting:
 * close the longest idle server of another pool sharing the limit, as
 * PgBouncer does, so one pool's idle servers cannot starve another.
 */
static bool evict_for(struct pool *pool, enum launch_verdict why)
{
	struct list *it;
	for (it = pool->ctx->pools.next; it != &pool->ctx->pools; it = it->next) {
		struct pool *other = container_of(it, struct pool, node);
		bool shares = why == LAUNCH_DB_FULL ? strcmp(other->dbname, pool->dbname) == 0
						    : strcmp(other->user, pool->user) == 0;
		struct list *idle = statlist_first(&other->sv_idle);
		if (other == pool || !shares || !idle)
			continue;
		server_close(container_of(idle, struct server, node),
			     why == LAUNCH_DB_FULL ? "evicted for max_db_connections"
						   : "evicted for max_user_connections");
		return true;
	}
	return false;
}

void pool_launch_if_needed(struct pool *pool)
{
	if (pool->ctx->shutting_down || pool->paused || pool->admin || pool_in_retry_backoff(pool))
		return;
	int want = statlist_count(&pool->cl_waiting) + statlist_count(&pool->cl_login) +
		   statlist_count(&pool->auth_waiting);
	/* The first login teaches the pool its parameters: one is enough.
	 * While the database is unreachable, one login probes at a time. */
	if ((!pool->have_welcome || pool->unreachable) && want > 0)
		want = 1;
	/*
	 * Launch at most what is missing at the start of this turn.  A login
	 * can fail before server_launch returns (a missing unix socket): that
	 * failure sets the retry backoff like any other, so it is checked
	 * again before each launch; the bound holds even when it does not
	 * apply (the pool still has other servers).
	 */
	int missing = want - statlist_count(&pool->sv_login);
	for (int turn = 0; turn < 2 * missing && statlist_count(&pool->sv_login) < want &&
			   !pool_in_retry_backoff(pool); turn++) {
		enum launch_verdict v = launch_verdict(pool);
		if (v == LAUNCH_OK)
			server_launch(pool);
		else if (v == LAUNCH_POOL_FULL || !evict_for(pool, v))
			break;
	}
}

int pool_client_count_where(const struct sluice *ctx, const char *dbname, const char *user)
{
	const struct list *it, *ci;
	int n = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		const struct statlist *lists[] = {&p->cl_login, &p->cl_active, &p->cl_waiting};
		if (dbname && strcmp(p->dbname, dbname) == 0) {
			for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
				n += statlist_count(lists[i]);
			continue;
		}
		if (!user)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
			for (ci = lists[i]->head.next; ci != &lists[i]->head; ci = ci->next)
				n += strcmp(container_of(ci, struct client, node)->username, user) == 0;
	}
	return n;
}

/* An idle server: the most recently used (warm caches), or the longest idle
 * with server_round_robin (spreads load over replicas behind one address). */
static struct list *idle_pick(const struct pool *p)
{
	return p->ctx->cfg->server_round_robin ? statlist_first(&p->sv_idle)
					       : statlist_last(&p->sv_idle);
}

bool pool_request_server(struct client *c)
{
	struct pool *p = c->pool;
	struct list *e = idle_pick(p);

	if (unlikely(p->paused)) {
		pool_client_set_state(c, CL_WAITING);
		return false;
	}
	if (e) {
		struct server *s = container_of(e, struct server, node);
		const struct config *cfg = p->ctx->cfg;
		/* Long idle: check it first; the client queues and gets it (or
		 * another) once the check passed. */
		if (sluice_now(p->ctx) - s->idle_since_ms >= (uint64_t)(cfg->server_check_delay * 1000.0)) {
			pool_client_set_state(c, CL_WAITING);
			server_start_check(s);
			return false;
		}
		pool_link(c, s);
		server_prepare_for_client(s);
		return true;
	}
	if (pool_fail_fast(p)) {
		fail_with_last_error(c);
		return false;
	}
	pool_client_set_state(c, CL_WAITING);
	pool_launch_if_needed(p);
	return false;
}

void pool_request_lookup(struct pool *pool, struct client *c)
{
	struct list *e = idle_pick(pool);

	c->auth_pool = pool;
	if (e) {
		server_start_auth_query(container_of(e, struct server, node), c);
		return;
	}
	if (pool_fail_fast(pool)) {
		client_fail(c, "08006", "authentication lookup failed: %s",
			    pool->last_error ? pool->last_error : "server login failed");
		return;
	}
	statlist_append(&pool->auth_waiting, &c->auth_node);
	pool_launch_if_needed(pool);
}

void pool_cancel_lookup(struct client *c)
{
	if (c->auth_server) {
		c->auth_server->auth_client = NULL;
		c->auth_server = NULL;
	} else if (c->auth_pool && !list_unlinked(&c->auth_node)) {
		statlist_remove(&c->auth_pool->auth_waiting, &c->auth_node);
	}
	c->auth_pool = NULL;
}

void pool_client_login(struct client *c)
{
	struct pool *p = c->pool;

	if (c->admin) {
		admin_client_login(c);
		return;
	}
	if (p->have_welcome) {
		client_finish_login(c);
		return;
	}
	if (pool_fail_fast(p)) {
		fail_with_last_error(c);
		return;
	}
	pool_client_set_state(c, CL_LOGIN_WAIT);
	pool_launch_if_needed(p);
}

void pool_server_ready(struct server *s)
{
	struct pool *p = s->pool;
	struct list *e;

	s->release_pending = false;
	s->step = STEP_NONE;
	/* A cancel still on its way must not hit the next client's query. */
	if (s->cancels_inflight > 0 && !s->dirty && !s->close_needed && !p->ctx->shutting_down) {
		s->parked = true;
		pool_server_set_state(s, SV_USED);
		return;
	}
	if (s->dirty || s->close_needed || p->ctx->shutting_down || p->paused) {
		server_close(s, s->dirty	  ? "server is not clean"
				: s->close_needed ? "close needed (RECONNECT or changed database entry)"
				: p->paused	  ? "database paused"
						  : "shutting down");
		pool_launch_if_needed(p);
		return;
	}
	/* Secret lookups first: they hold up a whole login. */
	e = statlist_first(&p->auth_waiting);
	if (e) {
		struct client *c = container_of(e, struct client, auth_node);
		statlist_remove(&p->auth_waiting, e);
		conn_resume(&s->conn);
		server_start_auth_query(s, c);
		return;
	}
	e = statlist_first(&p->cl_waiting);
	if (e) {
		struct client *c = container_of(e, struct client, node);
		pool_client_set_state(c, CL_ACTIVE);
		pool_link(c, s);
		conn_resume(&s->conn);
		if (!server_prepare_for_client(s))
			conn_resume(&c->conn);
		return;
	}
	pool_server_set_state(s, SV_IDLE);
	s->idle_since_ms = sluice_now(p->ctx);
	conn_resume(&s->conn);
}

void pool_client_gone(struct client *c)
{
	struct server *s = c->server;

	if (!s)
		return;
	/* A half-sent client message or an unanswered query leaves the backend
	 * in a state nobody else may inherit. */
	bool broken = (c->conn.remaining && !c->conn.skip) || conn_has_pending(&c->conn) ||
		      s->pending_rfq > 0 || s->ext_pending || s->step != STEP_NONE ||
		      (s->conn.remaining && !s->release_pending);
	bool release = s->release_pending;
	pool_unlink(c, s);
	if (broken && !release) {
		server_close(s, "client disconnected while the server was busy");
		return;
	}
	pool_server_set_state(s, SV_USED);
	if (s->tx_status != 'I')
		server_start_step(s, STEP_ROLLBACK);
	else if (pool_reset_query(s->pool))
		server_start_step(s, STEP_RESET);
	else
		pool_server_ready(s);
}

const struct welcome_cache *pool_welcome(struct pool *p, const struct config *cfg)
{
	struct welcome_cache *w = &p->wcache;

	if (w->items || !p->welcome.count)
		return w;
	w->items = xcalloc((size_t)p->welcome.count, sizeof(*w->items));
	for (const char *name = vars_next(&p->welcome, NULL); name;
	     name = vars_next(&p->welcome, name)) {
		struct welcome_item *it = &w->items[w->n++];
		it->name = name;
		it->value = vars_value_of(name);
		it->tracked = vars_tracked_name(cfg, name) != NULL;
		if (it->tracked)
			vars_set(&w->tracked, name, it->value);
		it->off = (uint32_t)w->ps.len;
		pktbuf_write_ParameterStatus(&w->ps, name, it->value);
		it->len = (uint32_t)w->ps.len - it->off;
	}
	return w;
}

void pool_welcome_reset(struct pool *p)
{
	free(p->wcache.items);
	p->wcache.items = NULL;
	p->wcache.n = 0;
	pktbuf_free(&p->wcache.ps);
	vars_free(&p->wcache.tracked);
}

void pool_server_login_done(struct server *s)
{
	struct pool *p = s->pool;
	struct list *it, *tmp;

	free(p->last_error);
	p->last_error = NULL;
	p->last_sqlstate[0] = 0;
	p->unreachable = false;
	if (!p->have_welcome) {
		vars_copy(&p->welcome, &s->vars);
		p->have_welcome = true;
		pool_welcome_reset(p);
	}
	statlist_for_each_safe(it, tmp, &p->cl_login) {
		struct client *c = container_of(it, struct client, node);
		client_finish_login(c);
		if (!c->conn.closing)
			conn_resume(&c->conn);
	}
	pool_server_ready(s);
	pool_launch_if_needed(p);
}

void pool_server_login_failed(struct server *s, const char *sqlstate, const char *msg,
			      bool permanent)
{
	struct pool *p = s->pool;
	struct list *it, *tmp;

	free(p->last_error);
	p->last_error = xstrdup(msg);
	snprintf(p->last_sqlstate, sizeof(p->last_sqlstate), "%s", sqlstate ? sqlstate : "");
	p->last_error_ms = sluice_now(p->ctx);
	p->last_error_permanent = permanent;
	p->unreachable = true;
	p->probe_at_ms = p->last_error_ms + (uint64_t)(p->ctx->cfg->server_login_retry * 1000.0);
	server_close(s, "login failed");
	if (!p->last_error_permanent)
		return;   /* an outage: waiting clients stay queued; the janitor retries */

	statlist_for_each_safe(it, tmp, &p->cl_login) {
		struct client *c = container_of(it, struct client, node);
		fail_with_last_error(c);
	}
	statlist_for_each_safe(it, tmp, &p->auth_waiting) {
		struct client *c = container_of(it, struct client, auth_node);
		client_fail(c, "08006", "authentication lookup failed: %s", msg);
	}
	/* Waiting clients can only be served by a server that exists. */
	if (pool_server_count(p) == 0) {
		statlist_for_each_safe(it, tmp, &p->cl_waiting) {
			struct client *c = container_of(it, struct client, node);
			fail_with_last_error(c);
		}
	}
}

/* True when a timeout of t seconds (0 = off) has passed since `since`. */
static bool expired(double t, uint64_t since, uint64_t now)
{
	return t > 0 && now > since && now - since >= (uint64_t)(t * 1000.0);
}

static void login_timeouts(struct statlist *l, const struct config *cfg, uint64_t now)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, l) {
		struct client *c = container_of(it, struct client, node);
		if (expired(cfg->client_login_timeout, c->connect_ms, now))
			client_fail(c, "08P01", "client_login_timeout: login not completed within %g s",
				    cfg->client_login_timeout);
	}
}

/* query_wait_timeout; the message carries the last login error, if any. */
static void wait_timeouts(struct pool *p, struct statlist *l, const struct config *cfg,
			  uint64_t now)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, l) {
		struct client *c = container_of(it, struct client, node);
		if (!expired(cfg->query_wait_timeout, c->wait_start_ms, now))
			continue;
		if (p->last_error)
			client_fail(c, "57P03", "query_wait_timeout: no server connection available "
				    "within %g s; last server login error: %s",
				    cfg->query_wait_timeout, p->last_error);
		else
			client_fail(c, "57P03", "query_wait_timeout: no server connection available "
				    "within %g s", cfg->query_wait_timeout);
	}
}

/* Timeouts of clients: waiting, idle, idle in transaction, running too long. */
static void client_timeouts(struct pool *p, const struct config *cfg, uint64_t now)
{
	struct list *it, *tmp;

	login_timeouts(&p->cl_login, cfg, now);
	/* Waiting for the pool's first server is waiting for a server too. */
	wait_timeouts(p, &p->cl_login, cfg, now);
	wait_timeouts(p, &p->cl_waiting, cfg, now);
	statlist_for_each_safe(it, tmp, &p->cl_active) {
		struct client *c = container_of(it, struct client, node);
		struct server *s = c->server;
		bool busy = s && (s->pending_rfq > 0 || s->ext_pending);
		if (s && s->tx_status != 'I' &&
		    expired(cfg->transaction_timeout, s->xact_start_ms, now)) {
			if (busy)
				cancel_server_query(p->ctx, s);
			client_fail(c, "25P04", "transaction_timeout: transaction open longer than %g s",
				    cfg->transaction_timeout);
		} else if (busy && expired(cfg->query_timeout, s->query_start_ms, now)) {
			/* Stop the backend's work too: the server is closed, but
			 * without a cancel PostgreSQL would finish the query for
			 * nobody. */
			cancel_server_query(p->ctx, s);
			client_fail(c, "57014", "query_timeout: query ran longer than %g s",
				    cfg->query_timeout);
		}
		else if (s && !busy && s->tx_status != 'I' &&
			 expired(cfg->idle_transaction_timeout, s->idle_tx_since_ms, now))
			client_fail(c, "25P03", "idle_transaction_timeout: idle in transaction for "
				    "more than %g s", cfg->idle_transaction_timeout);
		else if (!busy && (!s || s->tx_status == 'I') &&
			 expired(cfg->client_idle_timeout, c->last_activity_ms, now))
			client_fail(c, "57P05", "client_idle_timeout: idle for more than %g s",
				    cfg->client_idle_timeout);
	}
}

/* Idle servers past server_idle_timeout (above min_pool_size) or server_lifetime. */
static void server_timeouts(struct pool *p, const struct config *cfg, uint64_t now)
{
	struct list *it, *tmp;

	statlist_for_each_safe(it, tmp, &p->sv_login) {
		server_check_login_timeout(container_of(it, struct server, node), now);
	}
	/* An internal query (health check, reset, ROLLBACK, auth_query) over a
	 * path that died silently is never answered: as PgBouncer does for
	 * servers in their check, the idle and life timeouts apply, and no
	 * step outlasts server_connect_timeout. */
	statlist_for_each_safe(it, tmp, &p->sv_tested) {
		struct server *s = container_of(it, struct server, node);
		if (expired(cfg->server_lifetime, s->connect_ms, now))
			server_close(s, "server_lifetime");
		else if (s->step == STEP_CHECK && expired(cfg->server_idle_timeout, s->idle_since_ms, now))
			server_close(s, "server_idle_timeout: health check not answered");
		else if (expired(cfg->server_connect_timeout, s->step_start_ms, now))
			server_close(s, "server_connect_timeout: internal query not answered");
	}
	statlist_for_each_safe(it, tmp, &p->sv_idle) {
		struct server *s = container_of(it, struct server, node);
		if (expired(cfg->server_lifetime, s->connect_ms, now))
			server_close(s, "server_lifetime");
		else if (pool_server_count(p) > cfg->min_pool_size &&
			 expired(cfg->server_idle_timeout, s->idle_since_ms, now))
			server_close(s, "server_idle_timeout");
	}
}

void pool_server_lost(struct pool *p)
{
	if (p->unreachable)
		return;
	p->unreachable = true;
	p->probe_at_ms = sluice_now(p->ctx);   /* find out at once */
}

/* An unreachable database is probed with a login now and then, so that
 * readiness (and the pool) recovers without waiting for a client. */
static void probe_unreachable(struct pool *p, const struct config *cfg, uint64_t now)
{
	if (!p->unreachable || p->admin || p->paused || p->ctx->shutting_down || now < p->probe_at_ms ||
	    statlist_count(&p->sv_login) > 0 || !can_launch(p))
		return;
	p->probe_at_ms = now + (uint64_t)(cfg->server_login_retry * 1000.0);
	server_launch(p);
}

/* Keep min_pool_size servers open (within the pool size). */
static void keep_min_pool(struct pool *p, const struct config *cfg)
{
	if (p->ctx->shutting_down || p->paused || p->admin)
		return;
	/* One launch at a time; one that failed at once sets the backoff. */
	int missing = cfg->min_pool_size - pool_server_count(p);
	for (int i = 0; i < missing && statlist_count(&p->sv_login) == 0 &&
			!pool_in_retry_backoff(p) && can_launch(p); i++)
		server_launch(p);
}

void pool_janitor(struct sluice *ctx)
{
	const struct config *cfg = ctx->cfg;
	uint64_t now = sluice_now(ctx);
	struct list *it, *tmp;

	login_timeouts(&ctx->login_clients, cfg, now);
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		client_timeouts(p, cfg, now);
		server_timeouts(p, cfg, now);
		pool_launch_if_needed(p);
		keep_min_pool(p, cfg);
		probe_unreachable(p, cfg, now);
		autodb_janitor(p, cfg, now);
	}
}

/* ---- admin commands ------------------------------------------------------ */

static bool pool_matches(const struct pool *p, const char *dbname)
{
	return !p->admin && (!dbname || strcmp(p->dbname, dbname) == 0);
}

void pool_refresh_paused(struct sluice *ctx)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		bool was = p->paused;
		p->paused = !p->admin && sluice_db_paused(ctx, p->dbname);
		if (p->paused && !was) {
			struct list *si, *stmp;
			statlist_for_each_safe(si, stmp, &p->sv_idle) {
				server_close(container_of(si, struct server, node), "database paused");
			}
		} else if (was && !p->paused) {
			pool_launch_if_needed(p);
		}
	}
}

void pool_pause(struct sluice *ctx, const char *dbname)
{
	if (dbname)
		sluice_db_flags(ctx, dbname, true)->paused = true;
	else
		ctx->pause_all = true;
	pool_refresh_paused(ctx);
}

void pool_resume(struct sluice *ctx, const char *dbname)
{
	if (dbname) {
		struct db_flags *f = sluice_db_flags(ctx, dbname, false);
		if (f)
			f->paused = false;
	} else {
		ctx->pause_all = false;
		for (int i = 0; i < ctx->n_db_flags; i++)
			ctx->db_flags[i].paused = false;
	}
	pool_refresh_paused(ctx);
}

int pool_servers_of(const struct sluice *ctx, const char *dbname, bool close_needed_only)
{
	const struct list *it, *si;
	int n = 0;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		const struct statlist *lists[] = {&p->sv_login, &p->sv_idle, &p->sv_active,
						  &p->sv_used, &p->sv_tested};
		if (!pool_matches(p, dbname))
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
			if (!close_needed_only) {
				n += statlist_count(lists[i]);
				continue;
			}
			for (si = lists[i]->head.next; si != &lists[i]->head; si = si->next)
				n += container_of(si, struct server, node)->close_needed;
		}
	}
	return n;
}

void pool_reconnect(struct pool *p)
{
	const struct statlist *lists[] = {&p->sv_login, &p->sv_active, &p->sv_used, &p->sv_tested};
	struct list *it, *tmp;

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
		for (it = lists[i]->head.next; it != &lists[i]->head; it = it->next)
			container_of(it, struct server, node)->close_needed = true;
	statlist_for_each_safe(it, tmp, &p->sv_idle) {
		server_close(container_of(it, struct server, node), "RECONNECT");
	}
	pool_launch_if_needed(p);
}

void pool_reconnect_db(struct sluice *ctx, const char *dbname)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		if (pool_matches(p, dbname))
			pool_reconnect(p);
	}
}

static void fail_client_list(struct statlist *l, const char *msg)
{
	struct list *it, *tmp;
	statlist_for_each_safe(it, tmp, l) {
		client_fail(container_of(it, struct client, node), "57P01", "%s", msg);
	}
}

void pool_kill(struct sluice *ctx, const char *dbname)
{
	struct list *it, *tmp;

	pool_pause(ctx, dbname);
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		struct statlist *servers[] = {&p->sv_login, &p->sv_idle, &p->sv_active, &p->sv_used,
					      &p->sv_tested};
		if (!pool_matches(p, dbname))
			continue;
		fail_client_list(&p->cl_login, "database killed by the administrator (KILL)");
		fail_client_list(&p->cl_waiting, "database killed by the administrator (KILL)");
		fail_client_list(&p->cl_active, "database killed by the administrator (KILL)");
		for (size_t i = 0; i < ARRAY_SIZE(servers); i++) {
			struct list *si, *stmp;
			statlist_for_each_safe(si, stmp, servers[i]) {
				server_close(container_of(si, struct server, node), "KILL");
			}
		}
	}
}

struct client *pool_find_client(const struct sluice *ctx, uint64_t id)
{
	const struct list *it, *ci;
	for (ci = ctx->login_clients.head.next; ci != &ctx->login_clients.head; ci = ci->next)
		if (container_of(ci, struct client, node)->id == id)
			return container_of(ci, struct client, node);
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		const struct statlist *lists[] = {&p->cl_login, &p->cl_active, &p->cl_waiting};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
			for (ci = lists[i]->head.next; ci != &lists[i]->head; ci = ci->next)
				if (container_of(ci, struct client, node)->id == id)
					return container_of(ci, struct client, node);
	}
	return NULL;
}

/* ---- statistics -------------------------------------------------------------- */

void pool_stats_current(const struct pool *p, struct stats_counters *out)
{
	const struct statlist *lists[] = {&p->cl_login, &p->cl_active, &p->cl_waiting};
	const struct list *ci;

	*out = p->stats.total;
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
		for (ci = lists[i]->head.next; ci != &lists[i]->head; ci = ci->next) {
			const struct client *c = container_of(ci, struct client, node);
			out->received += c->conn.bytes_in;
			out->sent += c->conn.bytes_out;
		}
}

void pool_stats_tick(struct sluice *ctx)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &ctx->pools) {
		struct pool *p = container_of(it, struct pool, node);
		struct stats_counters cur;
		pool_stats_current(p, &cur);
		stats_counters_sub(&p->stats.period, &cur, &p->stats.snap);
		p->stats.snap = cur;
		stats_latency_rotate(&p->stats.lat);
	}
}

bool pool_stats_db(const struct sluice *ctx, const char *dbname, struct stats_counters *total,
		   struct stats_counters *period)
{
	const struct list *it;
	bool found = false;

	memset(total, 0, sizeof(*total));
	memset(period, 0, sizeof(*period));
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		struct stats_counters cur;
		if (strcmp(p->dbname, dbname) != 0)
			continue;
		found = true;
		pool_stats_current(p, &cur);
		stats_counters_add(total, &cur);
		stats_counters_add(period, &p->stats.period);
	}
	return found;
}

/* True for the first pool of its database name (one row per database). */
bool pool_first_of_db(const struct sluice *ctx, const struct pool *p)
{
	const struct list *it;
	for (it = ctx->pools.next; it != &p->node; it = it->next)
		if (strcmp(container_of(it, struct pool, node)->dbname, p->dbname) == 0)
			return false;
	return true;
}

void pool_log_stats(struct sluice *ctx, double seconds)
{
	const struct list *it;
	for (it = ctx->pools.next; it != &ctx->pools; it = it->next) {
		const struct pool *p = container_of(it, struct pool, node);
		struct stats_counters total, period;
		struct stats_averages avg;
		if (p->admin || !pool_first_of_db(ctx, p))
			continue;
		pool_stats_db(ctx, p->dbname, &total, &period);
		stats_averages(&period, seconds, &avg);

		char v[10][24];
		const uint64_t nums[10] = {avg.xact_count, avg.query_count, avg.client_parse_count,
					   avg.server_parse_count, avg.bind_count, avg.received,
					   avg.sent, avg.xact_time, avg.query_time, avg.wait_time};
		for (int i = 0; i < 10; i++)
			snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)nums[i]);
		struct log_kv kv[] = {
			{"database", p->dbname}, {"xacts_per_s", v[0]}, {"queries_per_s", v[1]},
			{"client_parses_per_s", v[2]}, {"server_parses_per_s", v[3]},
			{"binds_per_s", v[4]}, {"in_bytes_per_s", v[5]}, {"out_bytes_per_s", v[6]},
			{"xact_us", v[7]}, {"query_us", v[8]}, {"wait_us", v[9]},
		};
		/* JSON lines carry the figures as keys; text lines in the message. */
		bool json = log_json_enabled();
		log_write(LOG_INFO, NULL, kv, json ? ARRAY_SIZE(kv) : 1,
			  "stats: %s xacts/s, %s queries/s, %s client parses/s, %s server parses/s, "
			  "%s binds/s, in %s B/s, out %s B/s, xact %s us, query %s us, wait %s us",
			  v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]);
	}
}
