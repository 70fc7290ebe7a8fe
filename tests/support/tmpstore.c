/* tmpstore.c — a real LMDB store in a temporary directory for unit tests. */
#include "tests/support/tmpstore.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "store/store.h"

struct tmpstore {
	char dir[512];        /* mkdtemp directory */
	char env[600];        /* dir/env: the LMDB environment */
	struct store *st;
};

static int
tmpstore_rm(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int
tmpstore_open(struct tmpstore *ts)
{
	struct store_options o = { .nosync = 1 };

	return store_open(ts->env, &o, &ts->st);
}

int
tmpstore_new(const char *name, struct tmpstore **out)
{
	const char *base = getenv("TMPDIR");
	struct tmpstore *ts = calloc(1, sizeof *ts);
	int rc;

	if (ts == NULL)
		return -ENOMEM;
	if (base == NULL || *base == '\0')
		base = "/tmp";
	snprintf(ts->dir, sizeof ts->dir, "%s/certa-%s-XXXXXX", base, name);
	if (mkdtemp(ts->dir) == NULL) {
		rc = -errno;
		goto fail_ts;
	}
	snprintf(ts->env, sizeof ts->env, "%s/env", ts->dir);
	rc = tmpstore_open(ts);
	if (rc != 0)
		goto fail_dir;
	*out = ts;
	return 0;

fail_dir:
	nftw(ts->dir, tmpstore_rm, 16, FTW_DEPTH | FTW_PHYS);
fail_ts:
	free(ts);
	return rc;
}

struct store *
tmpstore_store(struct tmpstore *ts)
{
	return ts->st;
}

const char *
tmpstore_dir(const struct tmpstore *ts)
{
	return ts->env;
}

int
tmpstore_reopen(struct tmpstore *ts)
{
	tmpstore_close(ts);
	return tmpstore_open(ts);
}

void
tmpstore_close(struct tmpstore *ts)
{
	store_close(ts->st);
	ts->st = NULL;
}

void
tmpstore_free(struct tmpstore *ts)
{
	if (ts == NULL)
		return;
	store_close(ts->st);
	nftw(ts->dir, tmpstore_rm, 16, FTW_DEPTH | FTW_PHYS);
	free(ts);
}
