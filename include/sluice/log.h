/*
 * log.h - levels, text and JSON line formats, per-connection prefixes.
 *
 * The logger is process-wide (one sink for every loop) and is configured
 * once at start-up and on reload; each line is written with one write(2) so
 * lines from different threads never interleave.  Never log secrets:
 * passwords, SCRAM proofs and raw startup packets stay out at every level.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "sluice/common.h"

enum log_level {
	LOG_ERROR = 0,
	LOG_WARNING,
	LOG_INFO,
	LOG_DEBUG,
	LOG_NOISE,
};

/* Who a line is about: a client ("C") or server ("S") connection. */
struct log_conn {
	char kind;           /* 'C' or 'S' */
	uint64_t id;
	const char *db;
	const char *user;
	const char *addr;    /* peer address, "host:port" or "unix" */
	char addr_buf[64];   /* room for formatting addr */
};

/* An extra key/value pair: JSON lines carry it as a key, text lines as k=v. */
struct log_kv {
	const char *key;
	const char *value;
};

/* Configure the sink; path NULL or "" means stderr.  Returns 0 or -errno. */
int log_open(const char *path, bool json, int verbose);
void log_close(void);

/* Copy lines to syslog(3) too (the `syslog` setting); facility as in
 * syslog_sink.h.  Re-opening with another identity is allowed. */
void log_syslog(bool on, const char *ident, int facility_index);

/* True when lines are JSON (callers then pass fields as key/values only). */
bool log_json_enabled(void);

/* Current threshold: messages above it are dropped cheaply. */
extern int log_threshold;

static inline bool log_enabled(enum log_level level)
{
	return (int)level <= log_threshold;
}

void log_write(enum log_level level, const struct log_conn *who,
	       const struct log_kv *kv, size_t nkv, const char *fmt, ...)
	PRINTF_LIKE(5, 6);

#define log_msg(level, ...)                                                  \
	do {                                                                 \
		if (log_enabled(level))                                      \
			log_write((level), NULL, NULL, 0, __VA_ARGS__);      \
	} while (0)

#define log_error(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_noise(...)   log_msg(LOG_NOISE, __VA_ARGS__)

#endif /* SLUICE_LOG_H */
