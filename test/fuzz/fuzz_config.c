/*
 * fuzz_config.c - the configuration loader (src/config.c): config_load() on
 * the input as the file's contents (libconfig's parser, then every setting
 * through the parameter table, the databases and users sections, the
 * conninfo checks through libpq), and the text forms the admin console's
 * SET and SHOW CONFIG use: config_format_value(), config_set() and
 * config_keep_restart_only().
 *
 * config_load() reads a path, so each input is written to a scratch
 * directory under $TMPDIR next to one file it may include (inc.conf).
 * libconfig follows @include itself, so an input whose @include names
 * anything but "inc.conf" is skipped: the fuzzer must not read the machine.
 *
 * Besides "no crash, no leak": every value of a loaded config, formatted as
 * SHOW CONFIG shows it, must parse back (config_set() for reloadable
 * settings, config_keep_restart_only() for the others, which aborts itself
 * when one does not), and a refused file must say why.
 *
 * Global state: the scratch directory, made once (removed at exit);
 * config.c's generation counter (only ever incremented).
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"
#include "sluice/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char main_path[300];

static void setup(void)
{
	static const char inc[] = "listen_port = 7000;\nusers = ( { name = \"inc\"; } );\n";

	scratch_init("fuzz_config");
	snprintf(main_path, sizeof(main_path), "%s/sluice.conf", scratch_dir);
	scratch_write("inc.conf", inc, strlen(inc));
}

/* Every "@include" must be followed by blanks and "inc.conf" in quotes. */
static bool includes_are_safe(const uint8_t *data, size_t size)
{
	static const char kw[] = "@include";
	static const char ok[] = "\"inc.conf\"";
	const uint8_t *p = data, *end = data + size;

	while ((p = memmem(p, (size_t)(end - p), kw, strlen(kw))) != NULL) {
		p += strlen(kw);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if ((size_t)(end - p) < strlen(ok) || memcmp(p, ok, strlen(ok)) != 0)
			return false;
	}
	return true;
}

static void check_roundtrip(const struct config *cfg)
{
	size_t n;
	const struct config_param *params = config_params(&n);
	struct config *copy = config_defaults();
	char buf[8192], err[512];

	for (size_t i = 0; i < n; i++) {
		const struct config_param *p = &params[i];

		config_format_value(cfg, p, buf, sizeof(buf));
		if (p->reloadable && config_set(copy, p->name, buf, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s = '%s' does not parse back: %s\n", p->name, buf, err);
			abort();
		}
	}
	config_keep_restart_only(copy, cfg);
	config_free(copy);

	(void)config_find_db(cfg, "app");
	(void)config_find_db(cfg, "nosuchdb");
	(void)config_find_user(cfg, "inc");
	config_resolve_path(cfg, "userlist.txt", buf, sizeof(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[4096];

	if (!scratch_dir[0])
		setup();
	if (!includes_are_safe(data, size))
		return -1;   /* keep it out of the corpus */
	scratch_write("sluice.conf", data, size);
	struct config *cfg = config_load(main_path, err, sizeof(err));
	if (cfg) {
		check_roundtrip(cfg);
		config_free(cfg);
	} else if (err[0] == '\0') {
		abort();   /* a refused file always says why */
	}
	return 0;
}
