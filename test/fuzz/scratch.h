/*
 * scratch.h - a scratch directory for harnesses whose parser reads files
 * (config, hba): made once under $TMPDIR (run.sh points it at /dev/shm),
 * its real path kept in scratch_dir, removed when the fuzzer exits.
 * Header-only: each harness is one translation unit.
 */
#ifndef SLUICE_FUZZ_SCRATCH_H
#define SLUICE_FUZZ_SCRATCH_H

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch_dir[256];

/* Write (replace) one file of the scratch directory. */
static void scratch_write(const char *name, const void *text, size_t len)
{
	char path[400];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", scratch_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (len && write(fd, text, len) != (ssize_t)len)) {
		perror(path);
		abort();
	}
	close(fd);
}

static int scratch_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void scratch_cleanup(void)
{
	nftw(scratch_dir, scratch_remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Make the directory (name: prefix.XXXXXX) once; later calls do nothing. */
static void scratch_init(const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	char real[PATH_MAX];

	if (scratch_dir[0])
		return;
	snprintf(scratch_dir, sizeof(scratch_dir), "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
	if (!mkdtemp(scratch_dir) || !realpath(scratch_dir, real) || strlen(real) >= sizeof(scratch_dir)) {
		perror("mkdtemp");
		abort();
	}
	strcpy(scratch_dir, real);
	atexit(scratch_cleanup);
}

#endif
