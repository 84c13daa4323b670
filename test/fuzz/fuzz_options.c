/*
 * fuzz_options.c - the client's `options` startup parameter, which client.c
 * hands to vars_apply_options() (src/vars.c): words split on whitespace with
 * backslash escapes, each "-c name=value", "-cname=value" or
 * "--name=value" naming a tracked setting.
 *
 * Input: the options string (cut at its first NUL, as a startup parameter
 * is).  The config is the built-in defaults, so the tracked settings are the
 * default ones.  Besides "no crash": a refusal always has a reason, an
 * accepted value only sets tracked settings, and every reason is a
 * NUL-terminated string.  No state survives a run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/vars.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config *cfg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!cfg) {
		/* Built once: the defaults never change between runs. */
		char path[] = "/tmp/fuzz_options.XXXXXX";
		int fd = mkstemp(path);
		FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
		if (!f)
			abort();
		fputs("listen_port = 6432;\ndatabases = ( { name = \"app\"; conninfo = \"dbname=app\"; } );\n", f);
		fclose(f);
		char err[512];
		cfg = config_load(path, err, sizeof(err));
		unlink(path);
		if (!cfg)
			abort();
	}
	char *opts = malloc(size + 1);
	memcpy(opts, data, size);
	opts[size] = 0;
	struct varlist vars = {0};
	char why[512];
	const char *err = vars_apply_options(&vars, cfg, opts, why, sizeof(why));
	if (err && !memchr(err, '\0', 512))
		abort();
	vars_free(&vars);
	free(opts);
	return 0;
}
