/* deadlines.c — the live programs with a deadline, as a binary min-heap by deadline. */
#include "daemon/deadlines.h"

#include <errno.h>
#include <stdlib.h>

#include "daemon/core_impl.h"
#include "daemon/program.h"
#include "lib/array.h"

/* p->dl_pos is its index in c->dl plus one (0: not in the heap). */
static void
deadlines_set(struct core *c, size_t i, struct program *p)
{
	c->dl[i] = p;
	p->dl_pos = i + 1;
}

static void
deadlines_up(struct core *c, size_t i)
{
	struct program *p = c->dl[i];

	while (i > 0 && p->deadline_ms < c->dl[(i - 1) / 2]->deadline_ms) {
		deadlines_set(c, i, c->dl[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	deadlines_set(c, i, p);
}

static void
deadlines_down(struct core *c, size_t i)
{
	struct program *p = c->dl[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = l;
		if (l >= c->ndl)
			break;
		if (r < c->ndl && c->dl[r]->deadline_ms < c->dl[l]->deadline_ms)
			m = r;
		if (c->dl[m]->deadline_ms >= p->deadline_ms)
			break;
		deadlines_set(c, i, c->dl[m]);
		i = m;
	}
	deadlines_set(c, i, p);
}

int
deadlines_add(struct core *c, struct program *p)
{
	if (p->deadline_ms == 0 || p->dl_pos != 0 || program_is_terminal(p))
		return 0;
	if (ARRAY_GROW(c->dl, c->dl_cap, c->ndl + 1) != 0)
		return -ENOMEM;
	c->dl[c->ndl++] = p;
	deadlines_up(c, c->ndl - 1);
	return 0;
}

void
deadlines_del(struct core *c, struct program *p)
{
	size_t i;

	if (p->dl_pos == 0)
		return;
	i = p->dl_pos - 1;
	p->dl_pos = 0;
	if (--c->ndl == i)
		return;
	/* The last one takes the hole and moves whichever way its deadline says. */
	deadlines_set(c, i, c->dl[c->ndl]);
	if (i > 0 && c->dl[i]->deadline_ms < c->dl[(i - 1) / 2]->deadline_ms)
		deadlines_up(c, i);
	else
		deadlines_down(c, i);
}

struct program *
deadlines_first(const struct core *c)
{
	return c->ndl > 0 ? c->dl[0] : NULL;
}

void
deadlines_fini(struct core *c)
{
	free(c->dl);
	c->dl = NULL;
	c->ndl = c->dl_cap = 0;
}
