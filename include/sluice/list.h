/*
 * list.h - intrusive doubly linked list with an element count.
 *
 * A struct list is both the head of a list and the link embedded in each
 * element.  The head carries the count so that "how many clients wait" is
 * O(1): SHOW POOLS and the metrics read list_count() and therefore cannot
 * drift from the real state.  Header-only.
 */
#ifndef SLUICE_LIST_H
#define SLUICE_LIST_H

#include "sluice/common.h"

struct list {
	struct list *next;
	struct list *prev;
};

/* A list head with its element count. */
struct statlist {
	struct list head;
	int count;
};

static inline void list_init(struct list *l)
{
	l->next = l;
	l->prev = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* True when the element is not on any list (after list_init/list_del). */
static inline bool list_unlinked(const struct list *e)
{
	return e->next == e;
}

static inline void list_insert_before(struct list *pos, struct list *e)
{
	e->next = pos;
	e->prev = pos->prev;
	pos->prev->next = e;
	pos->prev = e;
}

static inline void list_del(struct list *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	list_init(e);
}

static inline void statlist_init(struct statlist *s)
{
	list_init(&s->head);
	s->count = 0;
}

static inline int statlist_count(const struct statlist *s)
{
	return s->count;
}

static inline void statlist_append(struct statlist *s, struct list *e)
{
	list_insert_before(&s->head, e);
	s->count++;
}

static inline void statlist_prepend(struct statlist *s, struct list *e)
{
	list_insert_before(s->head.next, e);
	s->count++;
}

static inline void statlist_remove(struct statlist *s, struct list *e)
{
	list_del(e);
	s->count--;
}

static inline struct list *statlist_first(const struct statlist *s)
{
	return s->count ? s->head.next : NULL;
}

static inline struct list *statlist_last(const struct statlist *s)
{
	return s->count ? s->head.prev : NULL;
}

/* Iterate safely (the current element may be removed). */
#define statlist_for_each_safe(it, tmp, s)                                     \
	for ((it) = (s)->head.next, (tmp) = (it)->next; (it) != &(s)->head;   \
	     (it) = (tmp), (tmp) = (it)->next)

#define list_for_each_safe(it, tmp, h)                                         \
	for ((it) = (h)->next, (tmp) = (it)->next; (it) != (h);               \
	     (it) = (tmp), (tmp) = (it)->next)

#endif /* SLUICE_LIST_H */
