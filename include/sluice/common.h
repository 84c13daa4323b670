/*
 * common.h - small definitions every module uses: integer types, bool,
 * container_of, ARRAY_SIZE, branch hints and the MUST_CHECK marker.
 *
 * Nothing here allocates or owns anything.
 */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLUICE_VERSION "0.1.0"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define MUST_CHECK __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/* Allocation helpers: abort on out-of-memory (a pooler that cannot allocate a
 * few bytes cannot recover meaningfully, and every caller checking NULL would
 * hide the real error paths). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif /* SLUICE_COMMON_H */
