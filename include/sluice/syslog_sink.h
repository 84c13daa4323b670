/*
 * syslog_sink.h - the optional syslog copy of the log (log.c calls it).
 *
 * Kept apart from log.h because <syslog.h> defines LOG_INFO and friends as
 * macros, which would clash with log.h's level names.
 */
#ifndef SLUICE_SYSLOG_SINK_H
#define SLUICE_SYSLOG_SINK_H

/* Open (or re-open) with an identity and a facility index: auth, authpriv,
 * daemon, user, local0 .. local7, in that order. */
void syslog_sink_open(const char *ident, int facility_index);
void syslog_sink_close(void);

/* level: 0 error, 1 warning, 2 info, 3 debug, 4 noise (log.h's order). */
void syslog_sink_write(int level, const char *line);

#endif /* SLUICE_SYSLOG_SINK_H */
