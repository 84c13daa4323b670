/*
 * pqtrace.h - reads what libpq's PQtrace() printed during a backend login
 * (DESIGN.md section 5, rule 4): the BackendKeyData, every ParameterStatus
 * and the ErrorResponse of a failed login, none of which libpq 15 exposes.
 *
 * Pure: bytes in, facts out, no allocation.  The input is untrusted in the
 * sense that it echoes what a server sent, so every read is bounded by len
 * (the buffer need not be NUL-terminated).
 */
#ifndef SLUICE_PQTRACE_H
#define SLUICE_PQTRACE_H

#include "sluice/common.h"

struct pqtrace_info {
	bool have_key;             /* a BackendKeyData was seen */
	uint32_t backend_pid;
	uint32_t cancel_key;
	char sqlstate[6];          /* of the ErrorResponse (parsing ends there), or "" */
	char message[512];         /* its primary message, or "" */
};

/* Called for each ParameterStatus; name and value are not NUL-terminated. */
typedef void (*pqtrace_param_fn)(void *arg, const char *name, size_t nlen, const char *value,
				 size_t vlen);

/* Parse a whole trace; `param` may be NULL.  `out` is cleared first. */
void pqtrace_parse(const char *buf, size_t len, struct pqtrace_info *out, pqtrace_param_fn param,
		   void *arg);

#endif
