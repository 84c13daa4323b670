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

#endif
