/* tcore.c — a certad core on a temporary state directory, for tests and benches. */
#include "tests/support/tcore.h"

#include <errno.h>
#include <string.h>
#include <event2/event.h>

#include "lib/cqbridge.h"
#include "scheduler/sched.h"
#include "tests/support/tmpstore.h"

int
tcore_init(struct tcore *t, const char *name)
{
	int rc;

	memset(t, 0, sizeof *t);
	if ((rc = tmpstore_new(name, &t->tmp)) != 0)
		return rc;
	tmpstore_close(t->tmp);   /* the core opens the environment itself */
	if ((t->base = event_base_new()) == NULL)
		return -ENOMEM;
	if ((rc = cqbridge_new(t->base, &t->br)) != 0)
		return rc;
	t->opt.state_dir = tmpstore_dir(t->tmp);
	sched_policy_default(&t->opt.policy);
	t->opt.pool.health_interval_ms = 1000;
	t->opt.pool.info_timeout_ms = 1000;
	t->opt.pool.step_timeout_ms = 1000;
	t->opt.max_prompt_bytes = 4096;
	t->opt.max_attempts = 3;
	t->opt.retry_backoff_ms = 100;
	t->opt.tick_ms = 1000;
	t->opt.starvation_ms = 3600000;
	return 0;
}

int
tcore_open(struct tcore *t)
{
	return core_new(t->base, t->br, &t->opt, &t->c);
}

static void
tcore_set_flag(void *arg)
{
	*(int *)arg = 1;
}

int
tcore_fini(struct tcore *t)
{
	int done = 0, i, rc = 0;

	core_free(t->c);
	t->c = NULL;
	if (t->br != NULL) {
		cqbridge_shutdown(t->br, tcore_set_flag, &done);
		for (i = 0; i < 500 && !done; i++) {
			struct timeval tv = { 0, 10000 };
			event_base_loopexit(t->base, &tv);
			event_base_dispatch(t->base);
		}
		if (!done)
			rc = -ETIMEDOUT;
		cqbridge_free(t->br);
		t->br = NULL;
	}
	if (t->base != NULL)
		event_base_free(t->base);
	t->base = NULL;
	tmpstore_free(t->tmp);
	t->tmp = NULL;
	return rc;
}
