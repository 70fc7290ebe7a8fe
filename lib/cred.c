/* cred.c — PEM files, token files and the gRPC TLS credentials built from them. */
#include "lib/cred.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>

#include "lib/array.h"
#include "lib/error.h"

#define CRED_MAX_FILE (1 << 20)

/* Reads a whole small file into a new NUL-terminated string; -errno or -EFBIG. */
static int
cred_slurp(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n = 0, cap = 4096;
	int rc = 0;

	if (f == NULL)
		return -errno;
	buf = malloc(cap);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto fail_file;
	}
	for (;;) {
		size_t got;
		if (n + 1 >= cap) {
			if (cap >= CRED_MAX_FILE) {
				rc = -EFBIG;
				goto fail_buf;
			}
			if (ARRAY_GROW(buf, cap, cap * 2) != 0) {
				rc = -ENOMEM;
				goto fail_buf;
			}
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		rc = -EIO;
		goto fail_buf;
	}
	buf[n] = '\0';
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
fail_buf:
	explicit_bzero(buf, cap);
	free(buf);
fail_file:
	fclose(f);
	return rc;
}

/* cred_slurp() of the file that setting `what` names, with the errors of cred_read_pem(). */
static int
cred_load(const char *what, const char *path, char **buf, size_t *n, char *err, size_t errlen)
{
	int rc;

	if (path == NULL || path[0] == '\0') {
		snprintf(err, errlen, "%s is not set", what);
		return CERTA_ECONFIG;
	}
	rc = cred_slurp(path, buf, n);
	if (rc == -ENOMEM)
		return rc;
	if (rc != 0) {
		snprintf(err, errlen, "%s %s: %s", what, path,
		    rc == -EFBIG ? "file too large" : strerror(-rc));
		return CERTA_ECONFIG;
	}
	return 0;
}

int
cred_read_pem(const char *what, const char *path, char **out, char *err, size_t errlen)
{
	char *buf;
	size_t n;
	int rc = cred_load(what, path, &buf, &n, err, errlen);

	if (rc != 0)
		return rc;
	if (strlen(buf) != n || strstr(buf, "-----BEGIN") == NULL) {
		snprintf(err, errlen, "%s %s is not a PEM file", what, path);
		cred_free_secret(buf);
		return CERTA_ECONFIG;
	}
	*out = buf;
	return 0;
}

int
cred_read_token(const char *what, const char *path, char **out, char *err, size_t errlen)
{
	char *buf;
	size_t n, i;
	int rc = cred_load(what, path, &buf, &n, err, errlen);

	if (rc != 0)
		return rc;
	buf[strcspn(buf, "\n")] = '\0';
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	rc = 0;
	if (n < CRED_TOKEN_MIN) {
		snprintf(err, errlen, "%s %s: the token must be at least %d characters", what,
		    path, CRED_TOKEN_MIN);
		rc = CERTA_ECONFIG;
	}
	for (i = 0; rc == 0 && i < n; i++) {
		if (buf[i] <= ' ' || buf[i] > '~') {
			snprintf(err, errlen, "%s %s: the token must be printable ASCII without "
			    "spaces", what, path);
			rc = CERTA_ECONFIG;
		}
	}
	if (rc != 0) {
		cred_free_secret(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

void
cred_free_secret(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

int
cred_bearer_matches(const char *authz, const char *token)
{
	size_t n;

	if (authz == NULL || token == NULL || strncasecmp(authz, "Bearer ", 7) != 0)
		return 0;
	n = strlen(token);
	/* The length is not secret (it is at least CRED_TOKEN_MIN); the bytes are. */
	return strlen(authz + 7) == n && CRYPTO_memcmp(authz + 7, token, n) == 0;
}

grpc_server_credentials *
cred_server_tls(const char *cert, const char *key, const char *client_ca)
{
	grpc_ssl_pem_key_cert_pair pair;

	/* gRPC aborts the process on a NULL key: refuse here instead. */
	if (cert == NULL || key == NULL)
		return NULL;
	pair.private_key = key;
	pair.cert_chain = cert;
	return grpc_ssl_server_credentials_create_ex(client_ca, &pair, 1,
	    client_ca != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY :
	    GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
}

grpc_channel_credentials *
cred_channel_tls(const char *ca, const char *cert, const char *key)
{
	grpc_ssl_pem_key_cert_pair pair;

	if ((cert == NULL) != (key == NULL))
		return NULL;
	pair.private_key = key;
	pair.cert_chain = cert;
	return grpc_ssl_credentials_create(ca, cert != NULL ? &pair : NULL, NULL, NULL);
}
