/* fileio.c — bounded whole-file reads and atomic whole-file writes. */
#include "lib/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Formats "path: reason" into err when the caller wants a message. */
static int
fileio_fail(int rc, const char *path, const char *what, char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", path, what != NULL ? what : strerror(-rc));
	return rc;
}

/* Grows buf to hold at most max bytes plus the NUL; -EFBIG once it is full at max. */
static int
fileio_grow(char **buf, size_t *cap, size_t max)
{
	size_t ncap;
	char *nbuf;

	if (*cap >= max + 1)
		return -EFBIG;
	ncap = *cap * 2 > max + 1 ? max + 1 : *cap * 2;
	nbuf = realloc(*buf, ncap);
	if (nbuf == NULL)
		return -ENOMEM;
	*buf = nbuf;
	*cap = ncap;
	return 0;
}

int
fileio_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf, msg[64];
	size_t n = 0, cap;
	ssize_t got;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fileio_fail(-errno, path, NULL, err, errlen);
	if (fstat(fd, &st) != 0) {
		rc = fileio_fail(-errno, path, NULL, err, errlen);
		goto fail_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = fileio_fail(-EISDIR, path, NULL, err, errlen);
		goto fail_fd;
	}
	/* The size is a hint (the file may change under us); the loop enforces max. */
	cap = S_ISREG(st.st_mode) && (unsigned long long)st.st_size < max ?
	    (size_t)st.st_size + 2 : 4096;
	if (cap > max + 1)
		cap = max + 1;
	buf = malloc(cap);
	if (buf == NULL) {
		rc = fileio_fail(-ENOMEM, path, NULL, err, errlen);
		goto fail_fd;
	}
	for (;;) {
		if (n + 1 == cap && cap == max + 1) {
			char probe;
			/* Exactly max bytes is fine; one more is not. */
			while ((got = read(fd, &probe, 1)) < 0 && errno == EINTR)
				;
			if (got == 0)
				break;
		}
		if (n + 1 == cap && (rc = fileio_grow(&buf, &cap, max)) != 0) {
			snprintf(msg, sizeof msg, "larger than %zu bytes", max);
			rc = fileio_fail(rc, path, rc == -EFBIG ? msg : NULL, err, errlen);
			goto fail_buf;
		}
		got = read(fd, buf + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = fileio_fail(-errno, path, NULL, err, errlen);
			goto fail_buf;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	buf[n] = '\0';
	close(fd);
	*out = buf;
	*len = n;
	return 0;

fail_buf:
	free(buf);
fail_fd:
	close(fd);
	return rc;
}

int
fileio_write(const char *path, const char *data, size_t len)
{
	size_t plen = strlen(path), off = 0;
	char *tmp;
	int fd, rc = 0;

	tmp = malloc(plen + 5);
	if (tmp == NULL)
		return -ENOMEM;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto fail_tmp;
	}
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			goto fail_fd;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		goto fail_fd;
	}
	if (close(fd) != 0) {
		rc = -errno;
		goto fail_file;
	}
	if (rename(tmp, path) != 0) {
		rc = -errno;
		goto fail_file;
	}
	free(tmp);
	return 0;

fail_fd:
	close(fd);
fail_file:
	unlink(tmp);
fail_tmp:
	free(tmp);
	return rc;
}
