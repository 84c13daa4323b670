/*
 * it_extended.c - run statements with libpq's extended query protocol, for
 * the integration tests (the admin console and prepared statements).
 *
 * Usage: it_extended CONNINFO STEP...
 *   x:SQL          PQexecParams without parameters (Parse/Bind/Describe/
 *                  Execute/Sync)
 *   s:SQL          PQexec (simple query protocol)
 *   prep:NAME:SQL  PQprepare
 *   exec:NAME      PQexecPrepared without parameters
 *   desc:NAME      PQdescribePrepared: prints the column names
 *
 * For each step it prints the rows ("a|b"), then "TAG <command status>",
 * or "ERROR <sqlstate> <message>".  Exit status 0 when the connection
 * worked (errors of single steps are output, not failures), 1 otherwise.
 */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_result(PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) {
		const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		printf("ERROR %s %s\n", code ? code : "?", msg ? msg : "?");
		return;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		for (int c = 0; c < PQnfields(res); c++)
			printf("%s%s", c ? "|" : "", PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c));
		printf("\n");
	}
	printf("TAG %s\n", PQcmdStatus(res));
}

static void print_columns(PGresult *res)
{
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		print_result(res);
		return;
	}
	printf("COLUMNS");
	for (int c = 0; c < PQnfields(res); c++)
		printf(" %s:%u", PQfname(res, c), PQftype(res, c));
	printf("\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CONNINFO STEP...\n", argv[0]);
		return 2;
	}
	PGconn *conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK) {
		printf("CONNECT FAILED %s", PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		const char *step = argv[i];
		PGresult *res = NULL;
		bool describe = false;

		if (!strncmp(step, "x:", 2)) {
			res = PQexecParams(conn, step + 2, 0, NULL, NULL, NULL, NULL, 0);
		} else if (!strncmp(step, "s:", 2)) {
			res = PQexec(conn, step + 2);
		} else if (!strncmp(step, "prep:", 5)) {
			const char *name = step + 5, *colon = strchr(name, ':');
			if (!colon) {
				fprintf(stderr, "bad step: %s\n", step);
				return 2;
			}
			char *n = strndup(name, (size_t)(colon - name));
			res = PQprepare(conn, n, colon + 1, 0, NULL);
			free(n);
		} else if (!strncmp(step, "exec:", 5)) {
			res = PQexecPrepared(conn, step + 5, 0, NULL, NULL, NULL, 0);
		} else if (!strncmp(step, "desc:", 5)) {
			res = PQdescribePrepared(conn, step + 5);
			describe = true;
		} else {
			fprintf(stderr, "bad step: %s\n", step);
			return 2;
		}
		if (!res) {
			printf("CONNECTION LOST %s", PQerrorMessage(conn));
			PQfinish(conn);
			return 1;
		}
		if (describe)
			print_columns(res);
		else
			print_result(res);
		PQclear(res);
		fflush(stdout);
	}
	PQfinish(conn);
	return 0;
}
