/*
 * hba.c - loading and matching host-based authentication rules.
 *
 * Owns: reading an hba file (and the @files it names) into a struct hba,
 * checking every record, and the first-match search done per login.
 *
 * Does not own: what a method means (auth.c runs md5, SCRAM, cert, peer) or
 * when the file is read again (a reload loads a new struct hba and swaps it).
 *
 * Loading goes in three steps, each a small function:
 *
 *   read_line()   one logical line: physical lines joined at a trailing
 *                 backslash, numbered by the first of them
 *   tokenize()    a line -> fields (split at blanks) -> tokens (split at
 *                 commas); quotes are removed but remembered, because a
 *                 quoted keyword is an ordinary name
 *   parse_rule()  the fields of one record -> a struct hba_rule, with @file
 *                 names expanded and every value checked
 *
 * A problem in one record is reported and the next record is still read, so
 * one run of hba_load() lists every bad line.  Within a record the first
 * problem ends it; the later fields would only produce follow-up noise.
 */
#include "sluice/hba.h"
#include "sluice/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* @file may name files that name files; this bounds a cycle (a.list naming
 * itself) without tracking which files are open. */
#define INCLUDE_DEPTH_MAX 8

/* IPv6 addresses are 16 bytes; IPv4 ones use the first 4 of the arrays. */
#define ADDR_MAX_BYTES 16

/* ---------------------------------------------------------------------- */
/* Rules */

enum conn_type {
	CT_LOCAL,       /* Unix-domain socket */
	CT_HOST,        /* TCP, with or without TLS */
	CT_HOSTSSL,     /* TCP with TLS */
	CT_HOSTNOSSL,   /* TCP without TLS */
};

enum name_kind {
	NAME_LITERAL,      /* compare with text */
	NAME_ALL,          /* any name */
	NAME_SAMEUSER,     /* database: the database name equals the user name */
	NAME_REPLICATION,  /* database: replication connections, never made here */
};

struct hba_name {
	enum name_kind kind;
	char *text;         /* NAME_LITERAL only, else NULL */
};

struct name_list {
	struct hba_name *items;
	size_t n, cap;
};

/* One record of the file.  Owned by its struct hba. */
struct hba_rule {
	int line;                          /* first physical line of the record */
	enum conn_type type;
	struct name_list dbs;
	struct name_list users;
	bool any_addr;                     /* address `all`, or a local rule */
	int family;                        /* AF_INET or AF_INET6 unless any_addr */
	unsigned char addr[ADDR_MAX_BYTES];  /* already masked */
	unsigned char mask[ADDR_MAX_BYTES];
	enum hba_method method;
	enum hba_clientcert clientcert;
};

struct hba {
	struct hba_rule *rules;            /* file order */
	size_t n, cap;
};

static const char *const method_names[] = {
	[HBA_REJECT] = "reject",
	[HBA_TRUST] = "trust",
	[HBA_PASSWORD] = "password",
	[HBA_MD5] = "md5",
	[HBA_SCRAM] = "scram-sha-256",
	[HBA_CERT] = "cert",
	[HBA_PEER] = "peer",
};

_Static_assert(ARRAY_SIZE(method_names) == HBA_PEER + 1, "method_names covers hba_method");

/* PostgreSQL methods we know but do not implement: named in the message. */
static const char *const unsupported_methods[] = {
	"ident", "gss", "sspi", "ldap", "radius", "pam", "bsd", "oauth",
};

static const struct {
	const char *name;
	enum conn_type type;
} conn_types[] = {
	{ "local", CT_LOCAL },
	{ "host", CT_HOST },
	{ "hostssl", CT_HOSTSSL },
	{ "hostnossl", CT_HOSTNOSSL },
};

static void names_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i].text);
	free(l->items);
}

static void names_add(struct name_list *l, enum name_kind kind, const char *text)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4;
		l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
	}
	l->items[l->n].kind = kind;
	l->items[l->n].text = text ? xstrdup(text) : NULL;
	l->n++;
}

static void rule_free(struct hba_rule *r)
{
	names_free(&r->dbs);
	names_free(&r->users);
}

/* ---------------------------------------------------------------------- */
/* Tokens */

struct token {
	char *text;         /* quotes removed */
	bool quoted;        /* some part was in double quotes */
	char *file;         /* the @file it was read from, NULL = the record's */
	int line;           /* its line there (0 with file == NULL) */
};

/* One blank-separated field: one token, or several joined by commas. */
struct field {
	struct token *toks;
	size_t n, cap;
};

struct record {
	struct field *fields;
	size_t n, cap;
};

static void field_add(struct field *f, char *text, bool quoted, const char *file, int line)
{
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 4;
		f->toks = xrealloc(f->toks, f->cap * sizeof(*f->toks));
	}
	f->toks[f->n].text = text;
	f->toks[f->n].quoted = quoted;
	f->toks[f->n].file = file ? xstrdup(file) : NULL;
	f->toks[f->n].line = line;
	f->n++;
}

static void field_free(struct field *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->toks[i].text);
		free(f->toks[i].file);
	}
	free(f->toks);
	memset(f, 0, sizeof(*f));
}

static struct field *record_new_field(struct record *rec)
{
	if (rec->n == rec->cap) {
		rec->cap = rec->cap ? rec->cap * 2 : 8;
		rec->fields = xrealloc(rec->fields, rec->cap * sizeof(*rec->fields));
	}
	memset(&rec->fields[rec->n], 0, sizeof(rec->fields[0]));
	return &rec->fields[rec->n++];
}

static void record_free(struct record *rec)
{
	for (size_t i = 0; i < rec->n; i++)
		field_free(&rec->fields[i]);
	free(rec->fields);
	memset(rec, 0, sizeof(*rec));
}

/* pg_hba.conf's blanks: what separates fields. */
static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * Split one logical line into fields of tokens.  Outside quotes a blank ends
 * the field, a comma ends the token (the list goes on after blanks), and `#`
 * ends the line.  Inside quotes everything is literal and "" is one quote.
 * Returns NULL, or a problem (a constant string) after which rec may hold
 * part of the line.
 */
static const char *tokenize(const char *s, struct record *rec)
{
	size_t len = strlen(s);
	char *buf = xmalloc(len + 1);
	const char *problem = NULL;

	for (;;) {
		struct field *f;

		while (is_blank(*s))
			s++;
		if (*s == '\0' || *s == '#')
			break;
		f = record_new_field(rec);
		for (;;) {
			size_t n = 0;
			bool quoted = false, in_quotes = false;

			for (; *s; s++) {
				if (*s == '"') {
					if (in_quotes && s[1] == '"')
						buf[n++] = *++s;
					else
						in_quotes = !in_quotes;
					quoted = true;
				} else if (!in_quotes && (is_blank(*s) || *s == ',' || *s == '#')) {
					break;
				} else {
					buf[n++] = *s;
				}
			}
			if (in_quotes) {
				problem = "unterminated quoted string";
				goto out;
			}
			if (n == 0 && !quoted) {
				problem = "empty item in a comma-separated list";
				goto out;
			}
			buf[n] = '\0';
			field_add(f, xstrdup(buf), quoted, NULL, 0);
			if (*s != ',')
				break;
			s++;
			while (is_blank(*s))
				s++;
		}
	}
out:
	free(buf);
	return problem;
}

/*
 * Read one logical line from f into *line (malloc'd, no newline).  Lines
 * ending in a backslash are joined to the next, as PostgreSQL does; *first
 * is the number of the first physical line.  Returns false at end of file
 * or on a read error (ferror(f) tells which).
 */
static bool read_line(FILE *f, int *lineno, int *first, char **line)
{
	char *buf = NULL, *acc = NULL;
	size_t cap = 0, acc_len = 0;
	ssize_t got;

	*first = *lineno + 1;
	while ((got = getline(&buf, &cap, f)) >= 0) {
		size_t n = (size_t)got;

		(*lineno)++;
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		bool more = n > 0 && buf[n - 1] == '\\';
		if (more)
			n--;
		acc = xrealloc(acc, acc_len + n + 1);
		memcpy(acc + acc_len, buf, n);
		acc_len += n;
		acc[acc_len] = '\0';
		if (!more)
			break;
	}
	free(buf);
	if (!acc)
		return false;
	*line = acc;
	return true;
}

/* ---------------------------------------------------------------------- */
/* Error collection */

struct loadctx {
	char *err;          /* caller's buffer: one problem per line */
	size_t errlen;
	size_t used;
	int n_errors;
};

static void add_error(struct loadctx *ctx, const char *file, int line, const char *fmt, ...)
	PRINTF_LIKE(4, 5);

static void add_error(struct loadctx *ctx, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	ctx->n_errors++;
	if (!ctx->err || ctx->used + 1 >= ctx->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		n = snprintf(ctx->err + ctx->used, ctx->errlen - ctx->used, "%s%s:%d: %s",
			     ctx->used ? "\n" : "", file, line, msg);
	else
		n = snprintf(ctx->err + ctx->used, ctx->errlen - ctx->used, "%s%s: %s",
			     ctx->used ? "\n" : "", file, msg);
	if (n > 0)
		ctx->used = MIN(ctx->used + (size_t)n, ctx->errlen - 1);
}

/* Report a problem with a token where the token was read from. */
#define token_error(ctx, file, line, tok, ...) \
	add_error((ctx), (tok)->file ? (tok)->file : (file), \
		  (tok)->file ? (tok)->line : (line), __VA_ARGS__)

/* ---------------------------------------------------------------------- */
/* @file */

/* name resolved against the directory of from; malloc'd. */
static char *relative_path(const char *from, const char *name)
{
	const char *slash = strrchr(from, '/');
	size_t dirlen = slash ? (size_t)(slash - from) + 1 : 0;
	size_t namelen = strlen(name);
	char *p;

	if (name[0] == '/' || dirlen == 0)
		return xstrdup(name);
	p = xmalloc(dirlen + namelen + 1);
	memcpy(p, from, dirlen);
	memcpy(p + dirlen, name, namelen + 1);
	return p;
}

static bool expand_field(struct loadctx *ctx, const char *file, int line,
			 const struct field *f, int depth, struct field *out);

/*
 * Append the names in the file that token "@name" (in file at line) refers
 * to.  Each token there keeps its own file and line, for messages.
 */
static bool expand_include(struct loadctx *ctx, const char *file, int line,
			   const struct token *tok, int depth, struct field *out)
{
	const char *name = tok->text + 1;
	char *path, *text;
	int lineno = 0, first;
	bool ok = true;
	FILE *f;

	if (*name == '\0') {
		token_error(ctx, file, line, tok, "\"@\" must be followed by a file name");
		return false;
	}
	if (depth >= INCLUDE_DEPTH_MAX) {
		token_error(ctx, file, line, tok, "@%s: @files nested more than %d deep "
			    "(does one include itself?)", name, INCLUDE_DEPTH_MAX);
		return false;
	}
	path = relative_path(tok->file ? tok->file : file, name);
	f = fopen(path, "r");
	if (!f) {
		token_error(ctx, file, line, tok, "cannot open @%s (%s): %s", name, path,
			    strerror(errno));
		free(path);
		return false;
	}
	while (read_line(f, &lineno, &first, &text)) {
		struct record rec = { 0 };
		const char *problem = tokenize(text, &rec);

		free(text);
		if (problem) {
			add_error(ctx, path, first, "%s", problem);
			ok = false;
		}
		for (size_t i = 0; !problem && i < rec.n; i++) {
			/* Give each token its origin before expanding it, so
			 * a nested @file resolves against this file. */
			for (size_t j = 0; j < rec.fields[i].n; j++) {
				rec.fields[i].toks[j].file = xstrdup(path);
				rec.fields[i].toks[j].line = first;
			}
			ok = expand_field(ctx, path, first, &rec.fields[i], depth + 1, out) && ok;
		}
		record_free(&rec);
	}
	if (ferror(f)) {
		token_error(ctx, file, line, tok, "cannot read @%s (%s): %s", name, path,
			    strerror(errno));
		ok = false;
	}
	fclose(f);
	free(path);
	return ok;
}

/*
 * Copy the tokens of f to out, replacing each unquoted "@name" by the names
 * in that file.  A quoted "@name" is a name.
 */
static bool expand_field(struct loadctx *ctx, const char *file, int line,
			 const struct field *f, int depth, struct field *out)
{
	bool ok = true;

	for (size_t i = 0; i < f->n; i++) {
		const struct token *t = &f->toks[i];

		if (!t->quoted && t->text[0] == '@')
			ok = expand_include(ctx, file, line, t, depth, out) && ok;
		else
			field_add(out, xstrdup(t->text), t->quoted, t->file, t->line);
	}
	return ok;
}

/* ---------------------------------------------------------------------- */
/* Fields */

static bool is_single(struct loadctx *ctx, const char *file, int line,
		      const struct field *f, const char *what)
{
	if (f->n == 1)
		return true;
	add_error(ctx, file, line, "%s must be a single value, not a list", what);
	return false;
}

/* The database or user column: keywords, names and @files. */
static bool parse_names(struct loadctx *ctx, const char *file, int line,
			const struct field *f, bool is_db, struct name_list *out)
{
	struct field all = { 0 };
	bool ok = expand_field(ctx, file, line, f, 0, &all);

	for (size_t i = 0; ok && i < all.n; i++) {
		const struct token *t = &all.toks[i];
		const char *s = t->text;

		if (t->quoted) {
			names_add(out, NAME_LITERAL, s);
		} else if (strcmp(s, "all") == 0) {
			names_add(out, NAME_ALL, NULL);
		} else if (is_db && strcmp(s, "sameuser") == 0) {
			names_add(out, NAME_SAMEUSER, NULL);
		} else if (is_db && strcmp(s, "replication") == 0) {
			names_add(out, NAME_REPLICATION, NULL);
		} else if (is_db && (strcmp(s, "samerole") == 0 || strcmp(s, "samegroup") == 0)) {
			token_error(ctx, file, line, t, "database \"%s\" is not supported "
				    "(role membership is not known here)", s);
			ok = false;
		} else if (!is_db && s[0] == '+') {
			token_error(ctx, file, line, t, "user \"%s\": group membership (+role) is "
				    "not supported; list the users or use an @file", s);
			ok = false;
		} else if (s[0] == '/') {
			token_error(ctx, file, line, t, "%s \"%s\": regular expressions are not "
				    "supported", is_db ? "database" : "user", s);
			ok = false;
		} else {
			names_add(out, NAME_LITERAL, s);
		}
	}
	field_free(&all);
	return ok;
}

/* Parse an IPv4 or IPv6 literal into bytes; returns the family or 0. */
static int parse_ip(const char *s, unsigned char *bytes)
{
	if (inet_pton(AF_INET, s, bytes) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, bytes) == 1)
		return AF_INET6;
	return 0;
}

static size_t family_bytes(int family)
{
	return family == AF_INET ? 4 : 16;
}

/*
 * The address column of a host* record at fields[*idx]: `all`, IP/LEN, or
 * IP followed by a netmask column (then *idx moves past both).
 */
static bool parse_address(struct loadctx *ctx, const char *file, int line,
			  const struct record *rec, size_t *idx, struct hba_rule *r)
{
	const struct field *f = &rec->fields[*idx];
	const char *s = f->toks[0].text;
	char ip[INET6_ADDRSTRLEN + 1];
	const char *slash;
	size_t nbytes;

	if (!is_single(ctx, file, line, f, "the address"))
		return false;
	(*idx)++;
	if (!f->toks[0].quoted && strcmp(s, "all") == 0) {
		r->any_addr = true;
		return true;
	}
	if (!f->toks[0].quoted && (strcmp(s, "samehost") == 0 || strcmp(s, "samenet") == 0)) {
		add_error(ctx, file, line, "address \"%s\" is not supported", s);
		return false;
	}
	slash = strchr(s, '/');
	if (slash) {
		size_t iplen = (size_t)(slash - s);
		const char *p = slash + 1;
		unsigned long bits = 0;

		if (iplen >= sizeof(ip)) {
			add_error(ctx, file, line, "invalid IP address in \"%s\"", s);
			return false;
		}
		memcpy(ip, s, iplen);
		ip[iplen] = '\0';
		r->family = parse_ip(ip, r->addr);
		if (!r->family) {
			add_error(ctx, file, line, "invalid IP address \"%s\" in \"%s\" "
				  "(host names are not supported)", ip, s);
			return false;
		}
		nbytes = family_bytes(r->family);
		if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || strlen(p) > 3 ||
		    (bits = strtoul(p, NULL, 10)) > nbytes * 8) {
			add_error(ctx, file, line, "invalid CIDR mask \"/%s\" in \"%s\" "
				  "(use 0 to %zu)", p, s, nbytes * 8);
			return false;
		}
		for (size_t i = 0; i < nbytes; i++) {
			size_t left = bits > i * 8 ? bits - i * 8 : 0;

			r->mask[i] = left >= 8 ? 0xff : (unsigned char)(0xff << (8 - left));
		}
	} else {
		int mask_family = 0;

		r->family = parse_ip(s, r->addr);
		if (!r->family) {
			add_error(ctx, file, line, "\"%s\" is not an IP address "
				  "(host names are not supported)", s);
			return false;
		}
		if (*idx < rec->n && rec->fields[*idx].n == 1)
			mask_family = parse_ip(rec->fields[*idx].toks[0].text, r->mask);
		if (mask_family == 0) {
			add_error(ctx, file, line, "IP address \"%s\" has no mask: write "
				  "%s/%d or add a netmask column", s, s,
				  r->family == AF_INET ? 32 : 128);
			return false;
		}
		if (mask_family != r->family) {
			add_error(ctx, file, line, "netmask \"%s\" is not of the same family "
				  "as address \"%s\"", rec->fields[*idx].toks[0].text, s);
			return false;
		}
		(*idx)++;
		nbytes = family_bytes(r->family);
	}
	for (size_t i = 0; i < nbytes; i++)
		r->addr[i] &= r->mask[i];
	return true;
}

static bool parse_method(struct loadctx *ctx, const char *file, int line,
			 const struct field *f, struct hba_rule *r)
{
	const char *s;

	if (!is_single(ctx, file, line, f, "the authentication method"))
		return false;
	s = f->toks[0].text;
	for (size_t i = 0; i < ARRAY_SIZE(method_names); i++) {
		if (strcmp(s, method_names[i]) == 0) {
			r->method = (enum hba_method)i;
			goto found;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(unsupported_methods); i++) {
		if (strcmp(s, unsupported_methods[i]) == 0) {
			add_error(ctx, file, line, "authentication method \"%s\" is not "
				  "supported", s);
			return false;
		}
	}
	add_error(ctx, file, line, "unknown authentication method \"%s\"", s);
	return false;
found:
	if (r->method == HBA_PEER && r->type != CT_LOCAL) {
		add_error(ctx, file, line, "authentication method \"peer\" is only valid on "
			  "local lines");
		return false;
	}
	if (r->method == HBA_CERT && r->type != CT_HOSTSSL) {
		add_error(ctx, file, line, "authentication method \"cert\" is only valid on "
			  "hostssl lines");
		return false;
	}
	if (r->method == HBA_CERT)
		r->clientcert = HBA_CLIENTCERT_VERIFY_FULL;
	return true;
}

/* One NAME=VALUE column after the method. */
static bool parse_option(struct loadctx *ctx, const char *file, int line,
			 const struct field *f, bool *seen_clientcert, struct hba_rule *r)
{
	const char *s = f->toks[0].text, *eq, *value;

	if (f->n > 1) {
		add_error(ctx, file, line, "authentication option \"%s\": lists are not "
			  "supported", s);
		return false;
	}
	eq = strchr(s, '=');
	if (!eq || eq == s) {
		add_error(ctx, file, line, "authentication option not in name=value format: "
			  "\"%s\"", s);
		return false;
	}
	if ((size_t)(eq - s) != strlen("clientcert") || strncmp(s, "clientcert", (size_t)(eq - s))) {
		add_error(ctx, file, line, "unknown authentication option \"%.*s\" (only "
			  "clientcert is supported)", (int)(eq - s), s);
		return false;
	}
	value = eq + 1;
	if (r->type != CT_HOSTSSL) {
		add_error(ctx, file, line, "clientcert is only valid on hostssl lines");
		return false;
	}
	if (*seen_clientcert) {
		add_error(ctx, file, line, "clientcert is given more than once");
		return false;
	}
	*seen_clientcert = true;
	if (strcmp(value, "verify-full") == 0) {
		r->clientcert = HBA_CLIENTCERT_VERIFY_FULL;
	} else if (strcmp(value, "verify-ca") == 0) {
		if (r->method == HBA_CERT) {
			add_error(ctx, file, line, "clientcert=verify-ca cannot be used with "
				  "cert, which always checks the user name (verify-full)");
			return false;
		}
		r->clientcert = HBA_CLIENTCERT_VERIFY_CA;
	} else {
		add_error(ctx, file, line, "clientcert must be verify-ca or verify-full, not "
			  "\"%s\"", value);
		return false;
	}
	return true;
}

/* Fill r from the fields of one record; false after reporting a problem. */
static bool parse_rule(struct loadctx *ctx, const char *file, int line,
		       const struct record *rec, struct hba_rule *r)
{
	static const char *const missing[] = {
		"missing database field", "missing user field",
	};
	bool seen_clientcert = false;
	size_t idx;

	r->line = line;
	if (!is_single(ctx, file, line, &rec->fields[0], "the connection type"))
		return false;
	for (idx = 0; idx < ARRAY_SIZE(conn_types); idx++)
		if (strcmp(rec->fields[0].toks[0].text, conn_types[idx].name) == 0)
			break;
	if (idx == ARRAY_SIZE(conn_types)) {
		add_error(ctx, file, line, "unknown connection type \"%s\" (use local, host, "
			  "hostssl or hostnossl)", rec->fields[0].toks[0].text);
		return false;
	}
	r->type = conn_types[idx].type;
	for (idx = 1; idx <= 2; idx++) {
		if (idx >= rec->n) {
			add_error(ctx, file, line, "%s", missing[idx - 1]);
			return false;
		}
	}
	if (!parse_names(ctx, file, line, &rec->fields[1], /* is_db= */ true, &r->dbs) ||
	    !parse_names(ctx, file, line, &rec->fields[2], /* is_db= */ false, &r->users))
		return false;
	idx = 3;
	if (r->type == CT_LOCAL) {
		r->any_addr = true;
	} else {
		if (idx >= rec->n) {
			add_error(ctx, file, line, "missing address field");
			return false;
		}
		if (!parse_address(ctx, file, line, rec, &idx, r))
			return false;
	}
	if (idx >= rec->n) {
		add_error(ctx, file, line, "missing authentication method");
		return false;
	}
	if (!parse_method(ctx, file, line, &rec->fields[idx++], r))
		return false;
	for (; idx < rec->n; idx++)
		if (!parse_option(ctx, file, line, &rec->fields[idx], &seen_clientcert, r))
			return false;
	return true;
}

/* ---------------------------------------------------------------------- */
/* Public API */

struct hba *hba_load(const char *path, char *err, size_t errlen)
{
	struct loadctx ctx = { err, errlen, 0, 0 };
	struct hba *h;
	int lineno = 0, first;
	char *text;
	FILE *f;

	if (err && errlen)
		err[0] = '\0';
	f = fopen(path, "r");
	if (!f) {
		add_error(&ctx, path, 0, "cannot read file: %s", strerror(errno));
		return NULL;
	}
	h = xcalloc(1, sizeof(*h));
	while (read_line(f, &lineno, &first, &text)) {
		struct record rec = { 0 };
		const char *problem = tokenize(text, &rec);
		struct hba_rule r = { 0 };

		free(text);
		if (problem) {
			add_error(&ctx, path, first, "%s", problem);
		} else if (rec.n > 0) {
			if (parse_rule(&ctx, path, first, &rec, &r)) {
				if (h->n == h->cap) {
					h->cap = h->cap ? h->cap * 2 : 16;
					h->rules = xrealloc(h->rules, h->cap * sizeof(*h->rules));
				}
				h->rules[h->n++] = r;
			} else {
				rule_free(&r);
			}
		}
		record_free(&rec);
	}
	if (ferror(f))
		add_error(&ctx, path, 0, "cannot read file: %s", strerror(errno));
	fclose(f);
	if (ctx.n_errors) {
		hba_free(h);
		return NULL;
	}
	return h;
}

void hba_free(struct hba *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		rule_free(&h->rules[i]);
	free(h->rules);
	free(h);
}

static bool type_matches(const struct hba_rule *r, const struct hba_request *req)
{
	switch (r->type) {
	case CT_LOCAL:
		return req->is_unix;
	case CT_HOST:
		return !req->is_unix;
	case CT_HOSTSSL:
		return !req->is_unix && req->is_tls;
	case CT_HOSTNOSSL:
		return !req->is_unix && !req->is_tls;
	}
	return false;
}

static bool names_match(const struct name_list *l, const char *name, const char *user)
{
	for (size_t i = 0; i < l->n; i++) {
		switch (l->items[i].kind) {
		case NAME_ALL:
			return true;
		case NAME_SAMEUSER:
			if (strcmp(name, user) == 0)
				return true;
			break;
		case NAME_REPLICATION:
			break;      /* only replication connections; we have none */
		case NAME_LITERAL:
			if (strcmp(name, l->items[i].text) == 0)
				return true;
			break;
		}
	}
	return false;
}

/*
 * Compare the client address with the rule's network.  The family must be
 * the same: an IPv4-mapped IPv6 client is not tried against IPv4 rules,
 * which is what PostgreSQL does.
 */
static bool addr_matches(const struct hba_rule *r, const struct sockaddr *sa)
{
	unsigned char bytes[ADDR_MAX_BYTES];

	if (r->any_addr)
		return true;
	if (!sa || sa->sa_family != r->family)
		return false;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, sa, sizeof(sin));
		memcpy(bytes, &sin.sin_addr, 4);
	} else {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, sa, sizeof(sin6));
		memcpy(bytes, &sin6.sin6_addr, 16);
	}
	for (size_t i = 0; i < family_bytes(r->family); i++)
		if ((bytes[i] & r->mask[i]) != r->addr[i])
			return false;
	return true;
}

enum hba_method hba_match(const struct hba *h, const struct hba_request *req, int *line_out)
{
	for (size_t i = 0; i < h->n; i++) {
		const struct hba_rule *r = &h->rules[i];

		if (type_matches(r, req) &&
		    names_match(&r->dbs, req->database, req->user) &&
		    names_match(&r->users, req->user, req->user) &&
		    (req->is_unix || addr_matches(r, req->addr))) {
			if (line_out)
				*line_out = r->line;
			return r->method;
		}
	}
	if (line_out)
		*line_out = 0;
	return HBA_REJECT;
}

enum hba_clientcert hba_clientcert(const struct hba *h, int line)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->rules[i].line == line)
			return h->rules[i].clientcert;
	return HBA_CLIENTCERT_NONE;
}

const char *hba_method_name(enum hba_method m)
{
	if ((unsigned)m >= ARRAY_SIZE(method_names))
		return "?";
	return method_names[m];
}
