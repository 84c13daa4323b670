/*
 * hba.h - host-based authentication rules: the subset of PostgreSQL's
 * pg_hba.conf that PgBouncer's auth_hba_file accepts.
 *
 * A file is loaded once into a struct hba (a list of rules, in file order)
 * and asked, per client login, which authentication method applies.  The
 * first rule whose connection type, database, user and address all match
 * decides; when none matches the answer is HBA_REJECT.
 *
 * Accepted syntax, one record per line:
 *
 *   local      DATABASE USER          METHOD [OPTION=VALUE ...]
 *   host       DATABASE USER ADDRESS  METHOD [OPTION=VALUE ...]
 *   hostssl    DATABASE USER ADDRESS  METHOD [OPTION=VALUE ...]
 *   hostnossl  DATABASE USER ADDRESS  METHOD [OPTION=VALUE ...]
 *
 *   DATABASE   all | sameuser | replication | NAME | @FILE, or a
 *              comma-separated list of those.  `replication` never matches:
 *              Sluice does not pool replication connections.
 *   USER       all | NAME | @FILE, or a comma-separated list.
 *   ADDRESS    all | IP/PREFIXLEN | IP NETMASK (two columns); IPv4 or IPv6.
 *   METHOD     trust | reject | md5 | password | scram-sha-256 | cert | peer
 *   OPTION     clientcert=verify-ca | clientcert=verify-full (hostssl only)
 *
 * As in PostgreSQL: `#` starts a comment, a backslash at the very end of a
 * line joins the next line to it (a record spread over lines reports its
 * first line), double quotes keep spaces, commas and `#` in a name ("" is a
 * quote), and a quoted keyword ("all") is an ordinary name.  Names and
 * keywords are case-sensitive.  @FILE reads more names (whitespace or comma
 * separated, comments allowed, nesting allowed) from a file named relative
 * to the directory of the file that mentions it.
 *
 * Not supported, each an error naming the line: host names and
 * samehost/samenet, +group (role membership), samerole/samegroup, /regex
 * names, methods other than those above, options other than clientcert,
 * `peer` on non-local lines and `cert` on non-hostssl lines.
 *
 * Addresses: an IPv4-mapped IPv6 client (::ffff:10.1.2.3) is an IPv6 client
 * and matches only IPv6 rules (e.g. ::ffff:10.0.0.0/104), never IPv4 rules.
 * This is what PostgreSQL does.
 *
 * A struct hba is immutable after hba_load() and owns all of its memory, so
 * it can be shared by every login until a reload swaps in a new one.
 */
#ifndef SLUICE_HBA_H
#define SLUICE_HBA_H

#include "sluice/common.h"

struct sockaddr;

/*
 * The outcome of a match.  HBA_MD5 has PostgreSQL's meaning of "a password
 * check, MD5 or SCRAM depending on the stored secret"; the auth code decides.
 */
enum hba_method {
	HBA_REJECT,
	HBA_TRUST,
	HBA_PASSWORD,
	HBA_MD5,
	HBA_SCRAM,
	HBA_CERT,
	HBA_PEER,
};

/* The clientcert option of a rule.  A `cert` rule implies VERIFY_FULL. */
enum hba_clientcert {
	HBA_CLIENTCERT_NONE,
	HBA_CLIENTCERT_VERIFY_CA,
	HBA_CLIENTCERT_VERIFY_FULL,
};

/* One login to be checked.  Every pointer is borrowed for the call only. */
struct hba_request {
	bool is_unix;                 /* arrived on a Unix-domain socket */
	bool is_tls;                  /* TLS was negotiated (TCP only) */
	const struct sockaddr *addr;  /* peer address for TCP (AF_INET or
				       * AF_INET6); NULL for unix */
	const char *database;         /* as sent in the startup packet; */
	const char *user;             /* neither may be NULL */
};

struct hba;

/*
 * Read and check the file at path.  Returns the rules, or NULL when the file
 * cannot be read or has any problem; err then holds every problem found, one
 * per line, as "FILE:LINE: problem" ("FILE: problem" when the file itself
 * cannot be read), truncated to errlen - 1 bytes.  err may be NULL.  An empty
 * file (or one of only comments) is valid and rejects every login.
 */
struct hba *hba_load(const char *path, char *err, size_t errlen) MUST_CHECK;

/* Free everything hba_load() returned.  NULL is allowed. */
void hba_free(struct hba *h);

/*
 * The method of the first rule matching req, and its line number in
 * *line_out (line_out may be NULL).  No matching rule gives HBA_REJECT and
 * line 0.  A TCP request with a NULL or non-IP addr matches only rules whose
 * address is `all`.
 */
enum hba_method hba_match(const struct hba *h, const struct hba_request *req, int *line_out);

/*
 * The clientcert setting of the rule at line (as reported by hba_match()).
 * HBA_CLIENTCERT_NONE when no rule starts at that line.
 */
enum hba_clientcert hba_clientcert(const struct hba *h, int line);

/* The method's keyword as written in the file ("scram-sha-256"); "?" if
 * m is not an enum hba_method value. */
const char *hba_method_name(enum hba_method m);

#endif /* SLUICE_HBA_H */
