/* unit.h - the suites collected by check_main.c. */
#ifndef SLUICE_TEST_UNIT_H
#define SLUICE_TEST_UNIT_H

#include <check.h>

Suite *proto_suite(void);
Suite *config_suite(void);
Suite *vars_suite(void);
Suite *conn_suite(void);

Suite *hba_suite(void);

Suite *scram_suite(void);
Suite *authfile_suite(void);
Suite *http_suite(void);
Suite *stats_suite(void);
Suite *pqtrace_suite(void);

/* Shared helpers (unit_util.c). */
char *unit_write_temp(const char *data, size_t len);  /* malloc'd path */
char *unit_write_temp_str(const char *text);
char *unit_read_all(const char *path);                 /* malloc'd contents */
int unit_count_lines(const char *s);

#endif
