/*
 * check_main.c - runs every unit-test suite (one Suite per module).
 *
 * Each test/unit/test_<module>.c exports a `Suite *<module>_suite(void)`.
 * Fork mode stays on so one crashing test fails only itself; set CK_FORK=no
 * to run under gdb or valgrind.
 */
#include <check.h>
#include <stdlib.h>

#include "unit.h"

int main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, vars_suite());
	srunner_add_suite(sr, conn_suite());
	srunner_add_suite(sr, hba_suite());
	srunner_add_suite(sr, scram_suite());
	srunner_add_suite(sr, authfile_suite());
	srunner_add_suite(sr, http_suite());
	srunner_add_suite(sr, stats_suite());
	srunner_add_suite(sr, pqtrace_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
