/*
 * deadlines.h — the live programs with a deadline, by deadline (a binary min-heap), so that
 * a dispatch pass finds the programs whose deadline has passed without walking every live
 * program.
 *
 * A program is in the heap from when it is live (core_order_add, via dispatch_ready) while
 * its deadline lies ahead or it waits to be ended for it; dispatch_expire takes out each one
 * whose deadline has passed and ends it, or, when it cannot be decided now (a step in flight,
 * a write not yet committed), leaves it out until dispatch_ready puts it back (a step's
 * commit landed, a step failed): then its deadline, passed, is first.  core_forget takes it
 * out.  Loop thread only.
 */
#ifndef CERTA_DAEMON_DEADLINES_H
#define CERTA_DAEMON_DEADLINES_H

struct core;
struct program;

/* Puts p in the heap when it has a deadline, is not ended and is not in it already.  Returns
 * 0 or -ENOMEM (then the once-a-second walk of dispatch_ready_check tries again). */
int deadlines_add(struct core *c, struct program *p);
/* Takes p out (nothing when it is not in). */
void deadlines_del(struct core *c, struct program *p);
/* The program with the earliest deadline, or NULL. */
struct program *deadlines_first(const struct core *c);
/* Frees the heap's array (core_free). */
void deadlines_fini(struct core *c);

#endif
