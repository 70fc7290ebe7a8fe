/*
 * cred.h — secrets and TLS credentials read from files: PEM certificates and keys, shared
 * bearer tokens, and the gRPC credentials built from them.
 *
 * Used by certad (its mTLS listener, the admin token, the credentials it presents to workers)
 * and certa-worker (its TLS listener and the worker token).  Files are read once, at startup or
 * on a reload; nothing here keeps a path.  Secrets (keys, tokens) are wiped before they are
 * freed: release them with cred_free_secret().
 *
 * Errors: functions return 0 or CERTA_ECONFIG with a one-line message in err naming the option
 * (`what`) and the path, e.g. "workers.token_file /etc/certa/worker.token: No such file or
 * directory"; -ENOMEM.  Out-parameters are written only on success.
 *
 * Threads: any; nothing is shared.
 */
#ifndef CERTA_LIB_CRED_H
#define CERTA_LIB_CRED_H

#include <stddef.h>
#include <grpc/grpc_security.h>

/* Shortest token accepted (bytes). */
#define CRED_TOKEN_MIN 16

/* Reads the PEM file at path (under 1 MiB, containing "-----BEGIN") into a new NUL-terminated
 * string (caller frees; cred_free_secret for a key).  A NULL or empty path is an error
 * ("what is not set"). */
int cred_read_pem(const char *what, const char *path, char **out, char *err, size_t errlen);

/* Reads a token file: its first line with trailing spaces, CR and LF removed.  The token must
 * be at least CRED_TOKEN_MIN characters of printable ASCII without spaces (it travels in a
 * gRPC metadata value).  The new string belongs to the caller (cred_free_secret). */
int cred_read_token(const char *what, const char *path, char **out, char *err, size_t errlen);

/* Wipes and frees s; NULL is a no-op. */
void cred_free_secret(char *s);

/* Whether the value of an authorization header is "Bearer TOKEN" (scheme case-insensitive).
 * The token comparison takes the same time wherever the first difference is.  0 when authz or
 * token is NULL. */
int cred_bearer_matches(const char *authz, const char *token);

/* Server credentials for a TLS listener with certificate cert and key key (PEM text).  With
 * client_ca (PEM) every client must present a certificate signed by it (mTLS); without, client
 * certificates are not requested.  Returns NULL when cert or key is NULL or gRPC refuses; the
 * caller releases the result (grpc_server_credentials_release). */
grpc_server_credentials *cred_server_tls(const char *cert, const char *key,
    const char *client_ca);

/* Channel credentials that verify the server's certificate against ca (PEM; NULL: the system
 * roots) and, when cert and key are both set, present that client certificate.  Returns NULL
 * when only one of cert and key is set or gRPC refuses; the caller releases the result
 * (grpc_channel_credentials_release). */
grpc_channel_credentials *cred_channel_tls(const char *ca, const char *cert, const char *key);

#endif
