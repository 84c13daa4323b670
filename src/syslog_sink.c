/*
 * syslog_sink.c - a copy of every log line to syslog(3), when `syslog` is on.
 *
 * Owns the identity string openlog() keeps a pointer to.  The lines carry
 * no timestamp of their own (syslog adds one).
 */
#include "sluice/syslog_sink.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>

static char *ident_copy;

void syslog_sink_open(const char *ident, int facility_index)
{
	static const int facilities[] = {
		LOG_AUTH, LOG_AUTHPRIV, LOG_DAEMON, LOG_USER, LOG_LOCAL0, LOG_LOCAL1,
		LOG_LOCAL2, LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7,
	};
	int n = (int)(sizeof(facilities) / sizeof(facilities[0]));
	char *copy = strdup(ident && ident[0] ? ident : "sluice");

	closelog();
	openlog(copy, LOG_PID | LOG_NDELAY,
		facility_index >= 0 && facility_index < n ? facilities[facility_index] : LOG_DAEMON);
	free(ident_copy);   /* after openlog: the old identity is no longer used */
	ident_copy = copy;
}

void syslog_sink_close(void)
{
	closelog();
	free(ident_copy);
	ident_copy = NULL;
}

void syslog_sink_write(int level, const char *line)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_DEBUG };
	syslog(level >= 0 && level <= 4 ? prio[level] : LOG_INFO, "%s", line);
}
