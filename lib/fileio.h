/*
 * fileio.h — whole-file reads and writes for the text files certa reads at startup and reload
 * (configuration, policies, token files) and writes from its tools (calibrated policies).
 *
 * Parsers stay pure: callers read the whole file here, then parse the buffer.  Any thread.
 */
#ifndef CERTA_LIB_FILEIO_H
#define CERTA_LIB_FILEIO_H

#include <stddef.h>

/*
 * Reads the regular file at path, at most max bytes, into *out (malloc'd, NUL-terminated,
 * caller frees) and its length into *len; both written only on success.  Returns 0, or
 * -errno: -ENOENT, -EACCES (cannot open), -EISDIR, -EFBIG (larger than max), -ENOMEM, -EIO.
 * err (may be NULL) gets a one-line message that starts with the path.
 */
int fileio_read(const char *path, size_t max, char **out, size_t *len, char *err,
    size_t errlen);

/*
 * Replaces path with data[0..len) atomically: writes "path.tmp", fsyncs it, renames it over
 * path.  Returns 0 or -errno (the temporary file is removed on failure).
 */
int fileio_write(const char *path, const char *data, size_t len);

#endif
