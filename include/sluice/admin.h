/*
 * admin.h - the admin console: the virtual database `sluice` (and
 * `pgbouncer`, so PgBouncer's tools work unchanged).
 *
 * admin.c owns the console's protocol (login, simple and extended query),
 * the command parser and the control commands; admin_show.c builds the
 * SHOW result sets with PgBouncer 1.25's column names, order and types.
 * Results are built whole in memory (struct admin_reply) and then written
 * to the client's output buffer; a slow console client only holds its own
 * buffer, never the loop.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "sluice/conn.h"
#include "sluice/pktbuf.h"

struct sluice;
struct client;

/* True for the console's database names. */
bool admin_is_console_db(const char *dbname);

/*
 * A StartupMessage for the console: decide access (admin_users,
 * stats_users, auth_type any, the OS user over the unix socket) and set up
 * the client's pool.  Returns false when the client was refused.  *trusted
 * is set when no password is needed (same OS user over the unix socket).
 */
bool admin_client_startup(struct client *c, bool *trusted);

/* Authentication passed: greet the client. */
void admin_client_login(struct client *c);

/* A message from a logged-in console client. */
enum pkt_action admin_packet(struct client *c, uint8_t type, uint32_t len,
			     const uint8_t *body, uint32_t avail);

void admin_client_free(struct client *c);

/* Finish PAUSE / WAIT_CLOSE commands whose condition now holds. */
void admin_janitor(struct sluice *ctx);

/* ---- result sets (shared by admin.c and admin_show.c) ---- */

enum admin_type {
	ADMIN_TEXT = 25,
	ADMIN_INT4 = 23,
	ADMIN_INT8 = 20,
	ADMIN_NUMERIC = 1700,
};

struct admin_col {
	const char *name;
	enum admin_type type;
};

struct admin_reply {
	struct pktbuf desc;     /* RowDescription; empty when the command has no rows */
	struct pktbuf rows;     /* DataRow messages */
	struct pktbuf notices;  /* NoticeResponse messages, sent first */
	char tag[128];          /* CommandComplete tag */
	int ncols, nrows;
	int row_cols;           /* values written in the current row */
};

void admin_reply_init(struct admin_reply *r);
void admin_reply_free(struct admin_reply *r);
void admin_columns(struct admin_reply *r, const struct admin_col *cols, int n);
void admin_row_begin(struct admin_reply *r);
void admin_val_text(struct admin_reply *r, const char *s);   /* NULL = SQL NULL */
void admin_val_int(struct admin_reply *r, long long v);
void admin_val_uint(struct admin_reply *r, unsigned long long v);
void admin_row_end(struct admin_reply *r);
void admin_notice(struct admin_reply *r, const char *msg, const char *detail);

/*
 * Build `SHOW what` (case-insensitive) into r.  Returns false when `what`
 * names no SHOW command.
 */
bool admin_show(struct sluice *ctx, const char *what, struct admin_reply *r);

/* The SHOW HELP text (also the detail of "invalid command" errors). */
extern const char admin_help_text[];

#endif /* SLUICE_ADMIN_H */
