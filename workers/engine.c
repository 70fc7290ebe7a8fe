/* engine.c — the engine table and dispatch. */
#include "workers/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/log.h"

extern const struct engine_ops replay_engine_ops;

static const struct engine_ops *const engine_table[] = {
	&replay_engine_ops,
};

struct engine {
	const struct engine_ops *ops;
	void *state;
};

int
engine_open(const char *name, const struct engine_options *opt, struct engine **out)
{
	struct engine *e;
	size_t i;
	int rc;

	for (i = 0; i < sizeof engine_table / sizeof engine_table[0]; i++) {
		if (strcmp(engine_table[i]->name, name) != 0)
			continue;
		e = calloc(1, sizeof *e);
		if (e == NULL)
			return -ENOMEM;
		e->ops = engine_table[i];
		rc = e->ops->open(opt, &e->state);
		if (rc != 0) {
			free(e);
			return rc;
		}
		*out = e;
		return 0;
	}
	log_err(LOG_ENGINE, "unknown engine '%s' (built in: %s)", name, engine_names());
	return CERTA_EINVAL;
}

void
engine_close(struct engine *e)
{
	if (e == NULL)
		return;
	e->ops->close(e->state);
	free(e);
}

int
engine_step(struct engine *e, const struct engine_item *items, size_t n,
    struct engine_result *out, char *err, size_t errlen)
{
	return e->ops->step(e->state, items, n, out, err, errlen);
}

int
engine_release(struct engine *e, const char *request_id)
{
	return e->ops->release(e->state, request_id);
}

void
engine_info(struct engine *e, struct engine_info *out)
{
	memset(out, 0, sizeof *out);
	e->ops->info(e->state, out);
}

void
engine_result_clear(struct engine_result *r)
{
	free(r->text);
	free(r->probe_answer);
	free(r->final_answer);
	memset(r, 0, sizeof *r);
}

const char *
engine_names(void)
{
	return "replay";
}
