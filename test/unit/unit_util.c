/*
 * unit_util.c - small helpers shared by the unit-test suites: temporary
 * files with given contents, reading a whole file, counting lines.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

char *unit_write_temp(const char *data, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	char *path;
	int fd;

	ck_assert_int_gt(asprintf(&path, "%s/sluice-unit-XXXXXX", tmp && *tmp ? tmp : "/tmp"), 0);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

char *unit_write_temp_str(const char *text)
{
	return unit_write_temp(text, strlen(text));
}

char *unit_read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

int unit_count_lines(const char *s)
{
	int n = *s ? 1 : 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}
