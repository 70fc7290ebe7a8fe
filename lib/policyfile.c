/* policyfile.c — the file edge of scheduling policies. */
#include "lib/policyfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "scheduler/policy.h"

int
policyfile_load(const char *path, struct sched_policy *p, char *err, size_t errlen)
{
	struct stat st;
	FILE *f;
	char *buf;
	size_t n;
	int rc;

	f = fopen(path, "rb");
	if (f == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto fail_file;
	}
	if (st.st_size > (off_t)POLICYFILE_MAX) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s: larger than %u bytes", path, POLICYFILE_MAX);
		goto fail_file;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail_file;
	}
	n = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		rc = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto fail_buf;
	}
	buf[n] = '\0';
	rc = policy_parse(buf, n, path, p, err, errlen);
fail_buf:
	free(buf);
fail_file:
	fclose(f);
	return rc;
}

int
policyfile_save(const char *path, const struct sched_policy *p, const char *comment)
{
	size_t need = policy_format(p, NULL, 0);
	char *buf = malloc(need + 1);
	FILE *f;
	int rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	policy_format(p, buf, need + 1);
	f = fopen(path, "w");
	if (f == NULL) {
		rc = -errno;
		free(buf);
		return rc;
	}
	while (comment != NULL && *comment != '\0') {
		const char *e = strchr(comment, '\n');
		size_t l = e != NULL ? (size_t)(e - comment) : strlen(comment);
		fprintf(f, "# %.*s\n", (int)l, comment);
		comment += l + (e != NULL);
	}
	fputs(buf, f);
	if (fclose(f) != 0)
		rc = -errno;
	free(buf);
	return rc;
}
