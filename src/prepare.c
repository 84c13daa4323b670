/*
 * prepare.c - named prepared statements across backends (see prepare.h).
 *
 * Owns the statement registry, the per-client name maps, the per-server
 * statement sets and outstanding-message queues.  It writes rewritten and
 * injected messages to the server's output after moving the client's
 * already-relayed bytes there (conn_pending_to_peer_out), so the backend
 * sees every message in the client's order.  Parse messages must fit in
 * the I/O engine's inspection limit (1 MB); Bind messages are rewritten in
 * place and may be of any size.
 */
#include "sluice/prepare.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/proto.h"
#include "sluice/server.h"
#include "sluice/sluice.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A distinct statement: Parse's body after the name (query, parameter types). */
struct pstmt {
	struct pstmt *next;      /* registry hash chain */
	uint64_t id;
	uint32_t hash;
	int refs;                /* client names and server sets holding it */
	uint32_t blob_len;
	char name[32];           /* the name on backends */
	uint8_t blob[];
};

/* Open-addressing map: a client's names (string keys) or a server's set
 * (statement keys). */
struct slot {
	char *name;              /* client map key; NULL in server sets */
	struct pstmt *ps;        /* NULL = empty slot */
	uint64_t used;           /* LRU tick */
};

struct smap {
	struct slot *slots;
	uint32_t cap, count;
};

/* A message sent to the server and not answered yet. */
enum op_kind {
	OP_CLIENT,        /* the client's (maybe rewritten): the answer goes to it */
	OP_INJ_PARSE,     /* ours: swallow ParseComplete; undo the mark if not answered */
	OP_INJ_CLOSE,     /* ours: swallow CloseComplete; ps (if any) was evicted */
};

struct op {
	uint8_t kind;
	uint8_t done_by;         /* class of the answer that completes it: '1', '2',
				  * '3', 'D' (T or n), 'E' (C, I, s), 'Z' */
	struct pstmt *ps;        /* a Parse of ps was sent (kind CLIENT or INJ_PARSE) */
};

struct prep_client {
	struct smap names;
	uint64_t tick;
};

struct prep_server {
	struct smap set;
	struct op *ops;
	uint32_t head, n, cap;
	uint64_t tick;
	bool error;              /* an error answer: the rest until Sync is skipped */
};

#define NOP_NAME "_sluice_nop"

static void pop_op(struct server *s);

/* ---- registry ---------------------------------------------------------------- */

static uint32_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

static struct pstmt *registry_get(struct sluice *ctx, const uint8_t *blob, uint32_t len)
{
	struct pstmt_registry *r = &ctx->pstmts;
	uint32_t h = hash_bytes(blob, len);

	if (!r->buckets) {
		r->nbuckets = 1024;
		r->buckets = xcalloc(r->nbuckets, sizeof(*r->buckets));
	}
	for (struct pstmt *p = r->buckets[h % r->nbuckets]; p; p = p->next)
		if (p->hash == h && p->blob_len == len && memcmp(p->blob, blob, len) == 0)
			return p;
	struct pstmt *p = xmalloc(sizeof(*p) + len);
	p->id = ++r->next_id;
	p->hash = h;
	p->refs = 0;
	p->blob_len = len;
	snprintf(p->name, sizeof(p->name), "_sluice_%llu", (unsigned long long)p->id);
	memcpy(p->blob, blob, len);
	p->next = r->buckets[h % r->nbuckets];
	r->buckets[h % r->nbuckets] = p;
	r->count++;
	return p;
}

static void pstmt_unref(struct sluice *ctx, struct pstmt *p)
{
	struct pstmt_registry *r = &ctx->pstmts;
	if (--p->refs > 0)
		return;
	struct pstmt **pp = &r->buckets[p->hash % r->nbuckets];
	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	r->count--;
	free(p);
}

void pstmt_registry_free(struct pstmt_registry *r)
{
	for (uint32_t i = 0; r->buckets && i < r->nbuckets; i++)
		while (r->buckets[i]) {
			struct pstmt *p = r->buckets[i];
			r->buckets[i] = p->next;
			free(p);
		}
	free(r->buckets);
	memset(r, 0, sizeof(*r));
}

/* ---- maps --------------------------------------------------------------------- */

static uint32_t slot_hash(const char *name, const struct pstmt *ps)
{
	return name ? hash_bytes(name, strlen(name)) : (uint32_t)(ps->id * 2654435761u);
}

static bool slot_is(const struct slot *s, const char *name, const struct pstmt *ps)
{
	return name ? strcmp(s->name, name) == 0 : s->ps == ps;
}

static struct slot *smap_find(const struct smap *m, const char *name, const struct pstmt *ps)
{
	if (!m->cap)
		return NULL;
	for (uint32_t i = slot_hash(name, ps) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct slot *s = &m->slots[i];
		if (!s->ps)
			return NULL;
		if (slot_is(s, name, ps))
			return s;
	}
}

static void smap_insert_slot(struct smap *m, struct slot v)
{
	uint32_t i = slot_hash(v.name, v.ps) & (m->cap - 1);
	while (m->slots[i].ps)
		i = (i + 1) & (m->cap - 1);
	m->slots[i] = v;
	m->count++;
}

static void smap_grow(struct smap *m)
{
	struct smap old = *m;
	m->cap = old.cap ? old.cap * 2 : 16;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	m->count = 0;
	for (uint32_t i = 0; i < old.cap; i++)
		if (old.slots[i].ps)
			smap_insert_slot(m, old.slots[i]);
	free(old.slots);
}

static struct slot *smap_add(struct smap *m, char *name, struct pstmt *ps, uint64_t tick)
{
	if ((m->count + 1) * 4 > m->cap * 3)
		smap_grow(m);
	smap_insert_slot(m, (struct slot){ name, ps, tick });
	return smap_find(m, name, ps);
}

/* Remove a slot (backward-shift deletion keeps probe chains intact). */
static void smap_remove(struct smap *m, struct slot *s)
{
	uint32_t i = (uint32_t)(s - m->slots), j = i;
	m->slots[i].ps = NULL;
	m->slots[i].name = NULL;
	m->count--;
	for (;;) {
		j = (j + 1) & (m->cap - 1);
		if (!m->slots[j].ps)
			return;
		uint32_t k = slot_hash(m->slots[j].name, m->slots[j].ps) & (m->cap - 1);
		/* Move j back to i unless its home k lies cyclically in (i, j]. */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			m->slots[i] = m->slots[j];
			m->slots[j].ps = NULL;
			m->slots[j].name = NULL;
			i = j;
		}
	}
}

static struct slot *smap_lru(const struct smap *m)
{
	struct slot *best = NULL;
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->slots[i].ps && (!best || m->slots[i].used < best->used))
			best = &m->slots[i];
	return best;
}

/* ---- per-connection state ------------------------------------------------------- */

static struct prep_client *client_state(struct client *c)
{
	if (!c->prep)
		c->prep = xcalloc(1, sizeof(*c->prep));
	return c->prep;
}

static struct prep_server *server_state(struct server *s)
{
	if (!s->prep)
		s->prep = xcalloc(1, sizeof(*s->prep));
	return s->prep;
}

static struct sluice *sctx(const struct server *s)
{
	return s->pool->ctx;
}

int prep_server_count(const struct server *s)
{
	return s->prep ? (int)s->prep->set.count : 0;
}

int prep_client_count(const struct client *c)
{
	return c->prep ? (int)c->prep->names.count : 0;
}

static void forget_client_names(struct client *c);

void prep_client_free(struct client *c)
{
	struct prep_client *pc = c->prep;
	if (!pc)
		return;
	forget_client_names(c);
	free(pc->names.slots);
	free(pc);
	c->prep = NULL;
}

static void server_set_clear(struct server *s)
{
	struct prep_server *ps = s->prep;
	for (uint32_t i = 0; i < ps->set.cap; i++)
		if (ps->set.slots[i].ps) {
			pstmt_unref(sctx(s), ps->set.slots[i].ps);
			ps->set.slots[i].ps = NULL;
		}
	ps->set.count = 0;
}

void prep_server_forget(struct server *s)
{
	if (s->prep)
		server_set_clear(s);
}

void prep_server_free(struct server *s)
{
	struct prep_server *ps = s->prep;
	if (!ps)
		return;
	server_set_clear(s);
	while (ps->n)
		pop_op(s);   /* outstanding messages hold statements too */
	free(ps->set.slots);
	free(ps->ops);
	free(ps);
	s->prep = NULL;
}

static void forget_client_names(struct client *c)
{
	struct prep_client *pc = c->prep;
	if (!pc)
		return;
	for (uint32_t i = 0; i < pc->names.cap; i++)
		if (pc->names.slots[i].ps) {
			free(pc->names.slots[i].name);
			pstmt_unref(c->ctx, pc->names.slots[i].ps);
			pc->names.slots[i].ps = NULL;
			pc->names.slots[i].name = NULL;
		}
	pc->names.count = 0;
}

/* ---- server set ---------------------------------------------------------------------- */

static bool server_has(struct server *s, struct pstmt *p)
{
	struct prep_server *ps = server_state(s);
	struct slot *sl = smap_find(&ps->set, NULL, p);
	if (sl)
		sl->used = ++ps->tick;
	return sl != NULL;
}

static void server_mark(struct server *s, struct pstmt *p)
{
	struct prep_server *ps = server_state(s);
	if (smap_find(&ps->set, NULL, p))
		return;
	p->refs++;
	smap_add(&ps->set, NULL, p, ++ps->tick);
}

static void server_unmark(struct server *s, struct pstmt *p)
{
	struct prep_server *ps = server_state(s);
	struct slot *sl = smap_find(&ps->set, NULL, p);
	if (!sl)
		return;
	smap_remove(&ps->set, sl);
	pstmt_unref(sctx(s), p);
}

/* ---- output ------------------------------------------------------------------------------- */

static void push_op(struct server *s, enum op_kind kind, uint8_t done_by, struct pstmt *p)
{
	struct prep_server *ps = server_state(s);
	if (ps->n == ps->cap) {
		uint32_t cap = ps->cap ? ps->cap * 2 : 16;
		struct op *v = xmalloc(sizeof(*v) * cap);
		for (uint32_t i = 0; i < ps->n; i++)
			v[i] = ps->ops[(ps->head + i) % ps->cap];
		free(ps->ops);
		ps->ops = v;
		ps->cap = cap;
		ps->head = 0;
	}
	struct op *o = &ps->ops[(ps->head + ps->n++) % ps->cap];
	o->kind = (uint8_t)kind;
	o->done_by = done_by;
	o->ps = p;
	if (p)
		p->refs++;   /* the op keeps it alive until answered */
}

static struct op *front_op(struct server *s)
{
	struct prep_server *ps = s->prep;
	return ps && ps->n ? &ps->ops[ps->head] : NULL;
}

static void pop_op(struct server *s)
{
	struct prep_server *ps = s->prep;
	struct op *o = &ps->ops[ps->head];
	if (o->ps)
		pstmt_unref(sctx(s), o->ps);
	ps->head = (ps->head + 1) % ps->cap;
	ps->n--;
}

static void write_parse(struct pktbuf *b, const char *name, const uint8_t *blob, uint32_t len)
{
	pktbuf_start(b, PQ_MSG_PARSE);
	pktbuf_put_string(b, name);
	pktbuf_put_bytes(b, blob, len);
	pktbuf_finish(b);
}

static void write_close(struct pktbuf *b, const char *name)
{
	pktbuf_start(b, PQ_MSG_CLOSE);
	pktbuf_put_byte(b, 'S');
	pktbuf_put_string(b, name);
	pktbuf_finish(b);
}

/* Make room in the server's set for one more, closing the least recently
 * used statement there. */
static void evict_if_full(struct server *s)
{
	struct prep_server *ps = server_state(s);
	int max = sctx(s)->cfg->max_prepared_statements;

	while (max > 0 && ps->set.count >= (uint32_t)max) {
		struct slot *victim = smap_lru(&ps->set);
		struct pstmt *p = victim->ps;
		write_close(&s->conn.out, p->name);
		push_op(s, OP_INJ_CLOSE, '3', p);
		server_unmark(s, p);
	}
}

/* The statement must exist on the server before a Bind or Describe uses it. */
static void ensure_on_server(struct server *s, struct pstmt *p)
{
	if (server_has(s, p))
		return;
	evict_if_full(s);
	write_parse(&s->conn.out, p->name, p->blob, p->blob_len);
	push_op(s, OP_INJ_PARSE, '1', p);
	server_mark(s, p);
	s->pool->stats.total.server_parse_count++;
}

/* ---- client side ---------------------------------------------------------------------------- */

bool prep_active(const struct client *c)
{
	const struct pool *p = c->pool;
	return c->server && p->pool_mode != POOL_MODE_SESSION && c->ctx->cfg->max_prepared_statements > 0;
}

/* Bytes of body holding Bind's portal and statement names, or 0 when they
 * are not complete within avail. */
static uint32_t bind_names_end(const uint8_t *body, uint32_t avail)
{
	const uint8_t *a = memchr(body, 0, avail);
	if (!a)
		return 0;
	const uint8_t *b = memchr(a + 1, 0, avail - (uint32_t)(a + 1 - body));
	return b ? (uint32_t)(b + 1 - body) : 0;
}

uint32_t prep_client_needs(const struct client *c, uint8_t type, uint32_t len)
{
	(void)c;
	switch (type) {
	case PQ_MSG_PARSE:
	case PQ_MSG_DESCRIBE:
	case PQ_MSG_CLOSE:
		return len;
	case PQ_MSG_BIND:
		return MIN(len, 1024u);   /* the two names; more is asked when needed */
	case PQ_MSG_QUERY:
		return len <= 64 ? len : 0;   /* DEALLOCATE ALL / DISCARD ALL */
	default:
		return 0;
	}
}

static struct pstmt *client_lookup(struct client *c, const char *name)
{
	struct prep_client *pc = client_state(c);
	struct slot *sl = smap_find(&pc->names, name, NULL);
	if (!sl)
		return NULL;
	sl->used = ++pc->tick;
	return sl->ps;
}

/* Bound a client's names: its own LRU name is forgotten beyond the limit. */
static void client_name(struct client *c, const char *name, struct pstmt *p)
{
	struct prep_client *pc = client_state(c);
	struct slot *sl = smap_find(&pc->names, name, NULL);
	uint32_t limit = (uint32_t)MAX(100, 4 * c->ctx->cfg->max_prepared_statements);

	p->refs++;
	if (sl) {
		pstmt_unref(c->ctx, sl->ps);
		sl->ps = p;
		sl->used = ++pc->tick;
		return;
	}
	if (pc->names.count >= limit) {
		struct slot *victim = smap_lru(&pc->names);
		free(victim->name);
		pstmt_unref(c->ctx, victim->ps);
		smap_remove(&pc->names, victim);
	}
	smap_add(&pc->names, xstrdup(name), p, ++pc->tick);
}

static void client_unname(struct client *c, const char *name)
{
	struct prep_client *pc = client_state(c);
	struct slot *sl = smap_find(&pc->names, name, NULL);
	if (!sl)
		return;
	free(sl->name);
	pstmt_unref(c->ctx, sl->ps);
	smap_remove(&pc->names, sl);
}

static bool is_word_query(const uint8_t *body, uint32_t len, const char *word)
{
	uint32_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\t' || body[i] == '\r'))
		i++;
	/* Almost every query fails on its first letter: check that first. */
	if (i == len || (body[i] | 0x20) != word[0])
		return false;
	size_t n = strlen(word);
	if (len - i < n || strncasecmp((const char *)body + i, word, n) != 0)
		return false;
	for (i += (uint32_t)n; i < len && body[i]; i++)
		if (body[i] != ' ' && body[i] != ';' && body[i] != '\n' && body[i] != '\t' &&
		    body[i] != '\r')
			return false;
	return true;
}

static enum pkt_action client_parse(struct client *c, struct server *s, const uint8_t *body,
				    uint32_t len)
{
	const uint8_t *nul = memchr(body, 0, len);
	if (!nul) {
		client_fail(c, "08P01", "invalid Parse message");
		return PKT_CLOSED;
	}
	const char *name = (const char *)body;
	if (!name[0]) {
		push_op(s, OP_CLIENT, '1', NULL);
		return PKT_FORWARD;
	}
	const uint8_t *blob = nul + 1;
	uint32_t blob_len = len - (uint32_t)(blob - body);
	struct pstmt *p = registry_get(c->ctx, blob, blob_len);

	client_name(c, name, p);
	s->pool->stats.total.client_parse_count++;
	conn_pending_to_peer_out(&c->conn);
	if (server_has(s, p)) {
		/* Already there: a real ParseComplete from a scratch statement. */
		write_close(&s->conn.out, NOP_NAME);
		push_op(s, OP_INJ_CLOSE, '3', NULL);
		write_parse(&s->conn.out, NOP_NAME, (const uint8_t *)"\0\0\0", 3);
		push_op(s, OP_CLIENT, '1', NULL);
	} else {
		evict_if_full(s);
		write_parse(&s->conn.out, p->name, p->blob, p->blob_len);
		push_op(s, OP_CLIENT, '1', p);
		server_mark(s, p);
		s->pool->stats.total.server_parse_count++;
	}
	return PKT_SKIP;
}

static enum pkt_action client_bind(struct client *c, struct server *s, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	uint32_t end = bind_names_end(body, MIN(avail, len));
	if (!end) {
		if (avail >= len || avail >= 65536) {
			client_fail(c, "08P01", "invalid Bind message");
			return PKT_CLOSED;
		}
		c->conn.need_bytes = MIN(len, avail + 4096);
		return PKT_NEED_BODY;
	}
	const char *portal = (const char *)body;
	const char *stmt = portal + strlen(portal) + 1;
	struct pstmt *p = stmt[0] ? client_lookup(c, stmt) : NULL;

	if (!p) {
		/* Unnamed, or unknown: the backend answers (26000 for unknown). */
		push_op(s, OP_CLIENT, '2', NULL);
		return PKT_FORWARD;
	}
	s->pool->stats.total.bind_count++;
	conn_pending_to_peer_out(&c->conn);
	ensure_on_server(s, p);
	/* New header and names; the rest of the message is relayed as is. */
	size_t plen = strlen(portal) + 1, slen = strlen(stmt) + 1, nlen = strlen(p->name) + 1;
	uint32_t newlen = len - (uint32_t)slen + (uint32_t)nlen + 4;
	pktbuf_put_byte(&s->conn.out, PQ_MSG_BIND);
	pktbuf_put_int32(&s->conn.out, newlen);
	pktbuf_put_bytes(&s->conn.out, portal, plen);
	pktbuf_put_bytes(&s->conn.out, p->name, nlen);
	conn_update_poll(&s->conn);
	push_op(s, OP_CLIENT, '2', NULL);
	c->conn.skip_prefix = 5 + (uint32_t)(plen + slen);
	return PKT_FORWARD;
}

static enum pkt_action client_describe_close(struct client *c, struct server *s, uint8_t type,
					     const uint8_t *body, uint32_t len)
{
	const char *name = len >= 2 ? (const char *)body + 1 : "";
	if (len < 2 || !memchr(body + 1, 0, len - 1)) {
		client_fail(c, "08P01", "invalid %s message", type == PQ_MSG_DESCRIBE ? "Describe" : "Close");
		return PKT_CLOSED;
	}
	struct pstmt *p = body[0] == 'S' && name[0] ? client_lookup(c, name) : NULL;
	if (!p) {
		push_op(s, OP_CLIENT, type == PQ_MSG_DESCRIBE ? 'D' : '3', NULL);
		return PKT_FORWARD;
	}
	conn_pending_to_peer_out(&c->conn);
	if (type == PQ_MSG_DESCRIBE) {
		ensure_on_server(s, p);
		pktbuf_start(&s->conn.out, PQ_MSG_DESCRIBE);
		pktbuf_put_byte(&s->conn.out, 'S');
		pktbuf_put_string(&s->conn.out, p->name);
		pktbuf_finish(&s->conn.out);
		push_op(s, OP_CLIENT, 'D', NULL);
	} else {
		/* Other clients may use it on this backend: only the client's
		 * name goes; the CloseComplete comes from a name that does not
		 * exist. */
		client_unname(c, name);
		write_close(&s->conn.out, NOP_NAME "_none");
		push_op(s, OP_CLIENT, '3', NULL);
	}
	conn_update_poll(&s->conn);
	return PKT_SKIP;
}

enum pkt_action prep_client_packet(struct client *c, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	struct server *s = c->server;

	switch (type) {
	case PQ_MSG_PARSE:
		return client_parse(c, s, body, len);
	case PQ_MSG_BIND:
		return client_bind(c, s, len, body, avail);
	case PQ_MSG_DESCRIBE:
	case PQ_MSG_CLOSE:
		return client_describe_close(c, s, type, body, len);
	case PQ_MSG_EXECUTE:
		push_op(s, OP_CLIENT, 'E', NULL);
		return PKT_FORWARD;
	case PQ_MSG_SYNC:
	case PQ_MSG_FUNCTION_CALL:
		push_op(s, OP_CLIENT, 'Z', NULL);
		return PKT_FORWARD;
	case PQ_MSG_QUERY:
		if (len <= 64 && avail >= len &&
		    (is_word_query(body, len, "deallocate all") || is_word_query(body, len, "discard all"))) {
			forget_client_names(c);
			prep_server_forget(s);
		}
		push_op(s, OP_CLIENT, 'Z', NULL);
		return PKT_FORWARD;
	default:
		return PKT_FORWARD;
	}
}

/* ---- server side --------------------------------------------------------------------------------- */

uint32_t prep_server_needs(const struct server *s, uint8_t type, uint32_t len)
{
	if (!s->prep || !s->prep->n)
		return 0;
	return type == PQ_MSG_ERROR_RESPONSE ? len : 0;
}

/* The answer class of a server message, or 0 for others. */
static uint8_t answer_class(uint8_t type)
{
	switch (type) {
	case '1': case '2': case '3': case 'Z':
		return type;
	case 'T': case 'n':
		return 'D';
	case 'C': case 'I': case 's':
		return 'E';
	default:
		return 0;
	}
}

/* An op ended without its answer (skipped after an error): undo its mark. */
static void op_unanswered(struct server *s, const struct op *o)
{
	if (!o->ps)
		return;
	if (o->kind == OP_INJ_CLOSE)
		server_mark(s, o->ps);      /* the Close was skipped: it is still there */
	else
		server_unmark(s, o->ps);    /* the Parse failed or was skipped */
}

enum pkt_action prep_server_packet(struct server *s, uint8_t type, uint32_t len,
				   const uint8_t *body, uint32_t avail)
{
	struct op *o = front_op(s);
	uint8_t cls = answer_class(type);

	if (!o)
		return PKT_FORWARD;
	if (type == PQ_MSG_ERROR_RESPONSE) {
		struct proto_error e;
		if (avail >= len && proto_parse_error(body, len, &e) &&
		    (!strcmp(e.sqlstate, "0A000") || !strcmp(e.sqlstate, "26000") ||
		     !strcmp(e.sqlstate, "42P05"))) {
			/* A stale plan or statement bookkeeping that does not
			 * match the backend: the next client gets a fresh one. */
			s->close_needed = true;
		}
		if (o->done_by != 'Z') {
			op_unanswered(s, o);
			pop_op(s);
			s->prep->error = true;
		}
		return PKT_FORWARD;
	}
	if (!cls)
		return PKT_FORWARD;
	if (cls == 'Z') {
		/* Sync / Query answered: everything before it is finished. */
		while ((o = front_op(s)) && o->done_by != 'Z') {
			op_unanswered(s, o);
			pop_op(s);
		}
		if (o)
			pop_op(s);
		s->prep->error = false;
		return PKT_FORWARD;
	}
	if (o->done_by != cls) {
		if (o->done_by == 'Z')
			return PKT_FORWARD;   /* inside a simple query's answers */
		log_warning("S-%llu: unexpected answer '%c' for a prepared-statement exchange",
			    (unsigned long long)s->id, type);
		s->close_needed = true;
		return PKT_FORWARD;
	}
	bool swallow = o->kind != OP_CLIENT;
	pop_op(s);
	return swallow ? PKT_SKIP : PKT_FORWARD;
}
